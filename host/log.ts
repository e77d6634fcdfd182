// PmLog: a write-ahead log of named buffers with a key index, in a pool's metadata region.
// The mechanism is in the core (assembly/pm/log.ts); this class stages keys and names in the
// core's memory, turns error codes into typed errors, and runs the group commit pipeline: the
// core seals a group into a flush table (u32 memOffset/length pairs), the pool makes the table
// durable (at once on PM, or as a journal entry another thread writes on a block device), and
// the core is told when, so it can release what the group superseded. Format, recovery and
// durability: docs/api/log.md and docs/persistence.md.

import { BUF_SIZE, E_BOUNDS, E_FREE, E_RANGE, E_REFMAX } from "./abi.js";
import type { CoreExports, CoreInstance } from "./core.js";
import { BufferNameError, PmstackError, PoolClosedError } from "./errors.js";
import { ObjectCursor, ObjectWriter, itemLow, itemOf, objectLength, type Item, type ObjectRef } from "./object.js";
import { Pool, type BufferName, type CreateOptions } from "./pool.js";

// Mirrors assembly/pm/log.ts (test/log-api.test.mjs checks the values).
export const E_LOG_FULL = -40;
export const E_LOG_KEY = -41;
export const E_LOG_NAMES = -42;
export const E_LOG_GROUP = -43;
export const E_LOG_INDEX_FULL = -44;
export const E_LOG_NOTFOUND = -45;
export const E_LOG_BAD = -46;
export const E_LOG_BUSY = -47;
export const E_LOG_NOLOG = -48;
export const E_LOG_SMALL = -49;
/** Longest key in bytes. */
export const LOG_MAX_KEY = 1024;
/** Most names (extents) per record. */
export const LOG_MAX_NAMES = 64;
const RESERVE = 2 * (32 + LOG_MAX_NAMES * 8 + LOG_MAX_KEY) + 8192; // what puts leave free

/** A log error: full, bad key, too many names, damaged or foreign metadata region... */
export class LogError extends PmstackError {}
/** The log has no room for the record even after compaction: live data fills it. */
export class LogFullError extends LogError {}

/** What recovery found when the log was opened. */
export interface LogRecovery {
  /** True if the metadata region was empty and a new log was formatted. */
  formatted: boolean;
  /** Records (puts, deletes, pads) read and verified. */
  records: number;
  /** Live keys after replay. */
  liveKeys: number;
  /** Bytes after the last valid record up to the persisted tail that were discarded (damage). */
  discardedBytes: number;
  /** Why the scan stopped early: "" (it did not), or which check failed. */
  damage: string;
  /** Buffers claimed (kept) because live records name them (extent trees included). */
  claimedBuffers: number;
  /** Keys dropped because their object's extent tree was damaged (a failing medium). */
  damagedKeys: number;
}

export interface LogStats {
  capacity: number;
  head: number;
  tail: number;
  freeBytes: number;
  liveBytes: number;
  liveKeys: number;
  maxKeys: number;
  /** Index slots in use: the table doubles as keys come (at most half full), up to maxKeys' region. */
  indexSlots: number;
  nextSeq: number;
  /** Records appended and not sealed yet. */
  pendingRecords: number;
  /** Groups sealed and not known durable yet. */
  inFlight: number;
  /** Every record with a sequence number up to this one is durable. */
  durableSeq: number;
  commits: number;
  compactions: number;
}

export interface LogEntry {
  key: Uint8Array;
  seq: number;
  /** The object's items: data ranges, and extent nodes (`height` >= 1) over more of them. */
  names: Item[];
  tag: number;
}

/** A live record's object: what `object(key)` returns. */
export interface LogObject extends ObjectRef {
  seq: number;
  /** The app's 16-bit tag, stored with the record. */
  tag: number;
  /** Data bytes. */
  length: number;
}

export interface AppendOptions {
  /** 16 bits the app stores with the record (the log never reads it). */
  tag?: number;
}

export interface LogOptions {
  /** When an append does not fit: commit, compact, retry once (default true). */
  autoCompact?: boolean;
}

const DAMAGE = ["", "length", "position", "type", "counts", "crc", "sequence", "name", "index full"];
const enc = new TextEncoder();

export type LogKey = Uint8Array | string;

export class PmLog {
  readonly pool: Pool;
  readonly recovery: Readonly<LogRecovery>;
  readonly maxKey = LOG_MAX_KEY;
  readonly maxNames = LOG_MAX_NAMES;
  #e: CoreExports;
  #u8: Uint8Array;
  #u32: Uint32Array;
  #dv: DataView;
  #key: number;
  /** The key buffer's bytes (a string key is encoded straight into them). */
  #keyView: Uint8Array;
  #names: number;
  /** A shared pool's keys are encoded here first (#stageKey). */
  #keyCopy: Uint8Array | null = null;
  #table: number;
  #base: number;
  #cap: number;
  #autoCompact: boolean;
  #commits = 0;
  #compactions = 0;
  /** Sealed groups not yet known durable, oldest first: core group number, pool seq, last record seq. */
  #flight: { group: number; seq: number; last: number }[] = [];
  #durableSeq = 0;
  #failed: Error | null = null;
  /** Called (outside any turn) when records became durable asynchronously, or the journal failed. */
  onDurable: ((durableSeq: number, err?: Error) => void) | null = null;

  /** Reserves the log's working memory: pass as (or call from) the pool's `configure` hook. */
  static configure(core: CoreInstance): void {
    const e = core.exports;
    const r = e.logReserve();
    if (r < 0) throw new LogError("ECORE", `pmstack: core error ${r} while reserving the log's memory`);
  }

  /** Opens (creating if absent) a pool file with a log: `{ pool, log }` in one call. */
  static openFile(path: string, opts: CreateOptions & LogOptions): PmLog {
    const user = opts.configure;
    const pool = Pool.openOrCreate(path, {
      ...opts,
      configure: (core) => {
        PmLog.configure(core);
        user?.(core);
      },
    });
    try {
      return PmLog.open(pool, opts);
    } catch (e) {
      pool.close();
      throw e;
    }
  }

  /**
   * Opens the log in `pool`'s metadata region and recovers it: formats an empty region, else
   * verifies the log up to its persisted tail (discarding a damaged end), rebuilds the index and
   * claims every buffer the live records name (owner kept). Call right after opening the pool,
   * before anything allocates buffers. The pool must have been set up with PmLog.configure.
   */
  static open(pool: Pool, opts: LogOptions = {}): PmLog {
    return new PmLog(pool, opts);
  }

  private constructor(pool: Pool, opts: LogOptions) {
    this.pool = pool;
    const e = pool.core.exports;
    if (typeof e.logAttach !== "function") throw new LogError("ENOLOG", "pmstack: this core has no log");
    this.#e = e;
    this.#autoCompact = opts.autoCompact ?? true;
    const mem = pool.core.memory.buffer;
    this.#u8 = new Uint8Array(mem);
    this.#u32 = new Uint32Array(mem);
    this.#dv = new DataView(mem);
    this.#table = e.logTable();
    this.#key = e.logKeyBuf();
    this.#keyView = this.#u8.subarray(this.#key, this.#key + LOG_MAX_KEY);
    this.#names = e.logNamesBuf();
    const sb = pool.superblock;
    let r = e.logAttach(pool.memOffset + sb.metaOffset, sb.metaBytes);
    this.#check(r, "opening the log");
    const formatted = r === 1;
    if (formatted) {
      // slots first, header second: a crash in between leaves a region that formats again
      this.#check(e.logFormat(0), "formatting the log");
      pool.submitSync(this.#table, 1, 0, 0);
      this.#check(e.logFormat(1), "formatting the log");
      pool.submitSync(this.#table, 1, 0, 0);
    }
    // a journal's replay knows the last durable generation: a later tail slot may have reached
    // the pool file from memory without being durable, and recovery must not trust it
    r = e.logRecover(pool.journal?.replay.lastGen ?? 0);
    this.#check(r, "recovering the log");
    if (r > 0) pool.submitSync(this.#table, r, 0, 0); // repaired or erased slots, the upgraded header
    // a journal that starts (or restarts) under this log learns the durable generation and its
    // tail slot's bytes: its checkpoints can then tell a later slot copied from memory apart
    if (pool.persistMode === "journal" && e.logSlotPair() === 1) pool.submitSync(this.#table, 1, 0, e.logInfo(16));
    this.#base = e.logInfo(0);
    this.#cap = e.logInfo(1);
    this.#durableSeq = e.logInfo(6);
    this.recovery = Object.freeze({
      formatted,
      records: e.logInfo(11),
      liveKeys: e.logInfo(7),
      discardedBytes: e.logInfo(12),
      damage: DAMAGE[e.logInfo(13)] ?? "unknown",
      claimedBuffers: e.logInfo(14),
      damagedKeys: e.logInfo(22),
    });
    pool.onDurable = (_seq, err) => {
      if (err) this.#failed ??= err;
      const before = this.#durableSeq;
      if (!err) this.poll();
      if (err || this.#durableSeq !== before) this.onDurable?.(this.#durableSeq, err);
    };
  }

  /**
   * Appends a record `key -> names` and returns its sequence number. The names are the
   * object's items: data ranges of held buffers, or sealed extent nodes an ObjectWriter made
   * (validated). The log takes one reference per item and marks the buffers kept, so the caller
   * may free its own reference. Durable once its group is (commit(), or flush() and
   * durableSeq); get() sees it at once. A later append or delete of the key releases these
   * references once that record is durable.
   */
  append(key: LogKey, names: readonly Item[], opts: AppendOptions = {}): number {
    const k = this.#stageKey(key);
    const n = names.length;
    if (n > LOG_MAX_NAMES)
      throw new LogError("ENAMES", `pmstack: a record holds at most ${LOG_MAX_NAMES} names, got ${n}`);
    const u32 = this.#u32;
    const w = this.#names >>> 2;
    for (let i = 0; i < n; i++) {
      const nm = names[i]!;
      if (nm.height) {
        if (!Number.isInteger(nm.height) || nm.height > 15 || !Number.isInteger(nm.index) || nm.index < 0)
          throw new BufferNameError("EBOUNDS", `pmstack: append: item ${i} is not a node (height ${nm.height})`);
        u32[w + 2 * i] = itemLow(nm);
        u32[w + 2 * i + 1] = nm.index;
        continue;
      }
      if (
        !Number.isInteger(nm.index) ||
        nm.index < 0 ||
        nm.index > 0xffffffff ||
        !Number.isInteger(nm.offset) ||
        !Number.isInteger(nm.length) ||
        nm.offset < 0 ||
        nm.length < 0 ||
        nm.offset > BUF_SIZE ||
        nm.length > BUF_SIZE
      )
        throw new BufferNameError(
          "EBOUNDS",
          `pmstack: append: name ${i} (${nm.index}, ${nm.offset}, ${nm.length}) is not a buffer name`,
        );
      u32[w + 2 * i] = (nm.offset << 16) | nm.length;
      u32[w + 2 * i + 1] = nm.index;
    }
    const tag = opts.tag ?? 0;
    if (!Number.isInteger(tag) || tag < 0 || tag > 0xffff)
      throw new LogError("EARG", `pmstack: append: a tag is 0..65535, got ${tag}`);
    return this.#append(k, n, 1, tag, "append");
  }

  /**
   * Appends `key -> the object an ObjectWriter built`, then drops the writer's references (the
   * record holds its own). Returns the record's sequence number. On error the writer is
   * untouched (abort it, or try again).
   */
  put(key: LogKey, writer: ObjectWriter, tag = 0): number {
    const obj = writer.finish();
    const seq = this.append(key, obj.names, { tag });
    writer.release();
    return seq;
  }

  /**
   * An ObjectWriter whose groups this log commits (its data becomes durable as it arrives);
   * `room`: items the record leaves for it (default 64).
   */
  writer(room?: number): ObjectWriter {
    return new ObjectWriter(this, room);
  }

  /** Appends a delete record (tombstone). Returns its sequence number, or null if the key is absent. */
  delete(key: LogKey): number | null {
    const r = this.#append(this.#stageKey(key), 0, 2, 0, "delete");
    return r === E_LOG_NOTFOUND ? null : r;
  }

  #append(k: number, n: number, type: number, tag: number, what: string): number {
    if (this.#failed) throw this.#failed;
    const e = this.#e;
    let r = e.logAppend(k, n, type, tag);
    if (r === E_LOG_GROUP) {
      // the open group is at its size limit: seal it and go on in a new one (the key and names
      // are still staged)
      this.flush();
      r = e.logAppend(k, n, type, tag);
    }
    if (r === E_LOG_FULL && this.#autoCompact) {
      this.commit();
      // room for this record and a quarter of the usable log, if the live data allows
      this.compact(32 + n * 8 + k + 8 + ((this.#cap - RESERVE) >>> 2));
      r = e.logAppend(k, n, type, tag);
    }
    if (r !== E_LOG_NOTFOUND) this.#check(r, what);
    return r;
  }

  /**
   * The data ranges of the live record for `key`, in order, or undefined. For an object with an
   * extent tree this lists every range (one object per range): stream large objects with
   * object() and an ObjectCursor instead.
   */
  get(key: LogKey): BufferName[] | undefined {
    const off = this.#find(key);
    if (off < 0) return undefined;
    const names = this.#namesAt(off);
    if (!names.some((n) => n.height)) return names;
    const out: BufferName[] = [];
    const cur = new ObjectCursor(this.pool, { names });
    for (let r = cur.next(); r; r = cur.next()) out.push(r);
    return out;
  }

  /** The live record's object for `key` (items, tag, length, seq), or undefined. */
  object(key: LogKey): LogObject | undefined {
    const off = this.#find(key);
    if (off < 0) return undefined;
    const at = this.#base + off;
    const names = this.#namesAt(off);
    return {
      names,
      seq: this.#seqAt(at),
      tag: this.recordTag(off),
      length: objectLength(this.pool, { names }),
    };
  }

  /**
   * The live record of `key` as a handle for recordItems(), recordTag(), itemIndex() and
   * itemLow(), or -1: a lookup that allocates nothing (a store's read path). A handle is valid
   * until the next append, delete, commit or compaction.
   */
  find(key: LogKey): number {
    return this.#find(key);
  }

  /** find() of the key `src[at, at + len)`, read where it is. */
  findIn(src: Uint8Array, at: number, len: number): number {
    if (this.pool.closed) throw new PoolClosedError("ECLOSED", "pmstack: the log's pool is closed");
    if (len <= 0 || len > LOG_MAX_KEY || at < 0 || at + len > src.length)
      throw new LogError("EKEY", `pmstack: a key must be 1 to ${LOG_MAX_KEY} bytes`);
    const u8 = this.#u8;
    const to = this.#key;
    if (len <= 64) for (let i = 0; i < len; i++) u8[to + i] = src[at + i]!;
    else u8.set(src.subarray(at, at + len), to);
    return this.#lookup(len);
  }

  /** The number of items of the record `h` (a find() handle). */
  recordItems(h: number): number {
    return this.#dv.getUint16(this.#base + h + 28, true);
  }

  /** The app's tag of the record `h`. */
  recordTag(h: number): number {
    return this.#dv.getUint16(this.#base + h + 30, true);
  }

  /** Item `k` of the record `h`: its buffer index. */
  itemIndex(h: number, k: number): number {
    return this.#dv.getUint32(this.#base + h + 36 + 8 * k, true);
  }

  /** Item `k` of the record `h`: its low word (itemOf() decodes it: offset << 16 | length, or a node's mark and height). */
  itemLow(h: number, k: number): number {
    return this.#dv.getUint32(this.#base + h + 32 + 8 * k, true);
  }

  /**
   * Keeps an object's buffers alive (one reference on each top-level name: a node keeps its
   * whole tree) while a reply streams it, whatever later writes do to its key. unpin() after.
   */
  pin(obj: ObjectRef): void {
    for (const n of obj.names) this.pool.ref(n.index);
  }

  unpin(obj: ObjectRef): void {
    for (const n of obj.names) this.pool.free(n.index);
  }

  /** Zero-copy views (pool.viewName) of the live record's data ranges for `key`, or undefined. */
  views(key: LogKey): Uint8Array[] | undefined {
    return this.get(key)?.map((n) => this.pool.viewName(n));
  }

  has(key: LogKey): boolean {
    return this.#find(key) >= 0;
  }

  /** The sequence number of the live record for `key`, or undefined. */
  seqOf(key: LogKey): number | undefined {
    const off = this.#find(key);
    return off < 0 ? undefined : this.#seqAt(this.#base + off);
  }

  /**
   * Makes every record appended so far durable before it returns: seals the open group and
   * waits for it (and for every group before it). On PM that is one persist of the group's
   * payload ranges and records, then one of the tail slot; on a block device, one journal entry
   * and one fdatasync. Returns how many buffers became free (of superseded and deleted records).
   */
  commit(): number {
    if (this.#failed) throw this.#failed;
    if (this.#seal("commit", true) > 0) this.#commits++;
    return this.drain();
  }

  /**
   * Seals the open group and starts making it durable: asynchronously on a block device
   * (durableSeq advances, and onDurable is called, when it is), at once on PM. Call it at the
   * end of every turn that appended; replies that need durability wait for durableSeq.
   * Returns whether a group was sealed.
   */
  flush(): boolean {
    if (this.#failed) throw this.#failed;
    const sealed = this.#seal("flush", false) > 0;
    if (sealed) this.#commits++;
    if (this.#flight.length) this.poll();
    return sealed;
  }

  /**
   * Applies the groups the pool made durable since the last call: durableSeq advances and the
   * buffers of superseded records are released. Cheap when nothing completed (one read of the
   * pool's counter). Returns how many buffers became free.
   */
  poll(): number {
    const f = this.#flight;
    if (f.length === 0) return 0;
    const done = this.pool.durableSeq;
    let k = 0;
    while (k < f.length && f[k]!.seq <= done) k++;
    if (k === 0) return 0;
    const g = f[k - 1]!;
    this.#durableSeq = Math.max(this.#durableSeq, g.last);
    f.splice(0, k);
    return this.#e.logDurable(g.group);
  }

  /** Waits (blocking) until every sealed group is durable, then applies them. */
  drain(): number {
    const last = this.#flight[this.#flight.length - 1];
    if (last) this.pool.waitDurable(last.seq);
    return this.poll();
  }

  /** Every record with a sequence number up to this one is durable. */
  get durableSeq(): number {
    return this.#durableSeq;
  }

  /** The newest record's sequence number (durable or not). */
  get lastSeq(): number {
    return this.#e.logInfo(6);
  }

  /** Groups sealed and not yet known durable. */
  get inFlight(): number {
    return this.#flight.length;
  }

  /** The error that stopped the log (the journal failed), or null. */
  get failed(): Error | null {
    return this.#failed;
  }

  /**
   * Seals the open group and hands it to the pool, synchronously or not. Returns the table's
   * pair count (0: nothing was open; every record is durable or in flight).
   */
  #seal(what: string, sync: boolean): number {
    const e = this.#e;
    let n = e.logSeal();
    if (n === E_LOG_BUSY) {
      this.drain(); // every slot for a group in flight is taken: wait for them
      n = e.logSeal();
    }
    this.#check(n, what);
    if (n === 0) return 0;
    const payload = e.logInfo(19);
    const gen = e.logInfo(20);
    const group = e.logInfo(21);
    const last = e.logInfo(6);
    const pool = this.pool;
    const seq = sync ? pool.submitSync(this.#table, n, payload, gen) : pool.submit(this.#table, n, payload, gen);
    this.#flight.push({ group, seq, last });
    return n;
  }

  /**
   * Commits, then moves the head over dead records (relocating live ones to the tail, payloads
   * untouched), one committed pass at a time, until `target` bytes are free for appends
   * (`stats().freeBytes`; default half the usable log) or the whole log was visited. Returns
   * the bytes reclaimed.
   */
  compact(target = (this.#cap - RESERVE) >>> 1): number {
    this.commit();
    const e = this.#e;
    target = Math.min(this.#cap, target + RESERVE); // in the core's terms: bytes not in use
    const occupied = e.logInfo(3) - e.logInfo(2);
    let total = 0;
    for (let pass = 0; pass < 100000; pass++) {
      const r = e.logCompact(target);
      this.#check(r, "compact");
      if (r === 0) break;
      this.commit();
      this.#compactions++;
      total += r;
      if (total >= occupied || this.#cap - (e.logInfo(3) - e.logInfo(2)) >= target) break;
    }
    return total;
  }

  /**
   * Compaction without waiting: when less than a quarter of the log is free, moves the head
   * over dead records and relocates live ones into the open group (which the next flush()
   * seals). Call it at the end of a turn, before flush(). Returns the bytes the head moved.
   */
  maintain(): number {
    const e = this.#e;
    if (e.logInfo(9) >= (this.#cap - RESERVE) >>> 2) return 0;
    const r = e.logCompact(Math.min(this.#cap, ((this.#cap - RESERVE) >>> 1) + RESERVE));
    this.#check(r, "compact");
    if (r > 0) this.#compactions++;
    return r;
  }

  /** Live entries in log order (a snapshot taken when called). */
  entries(): LogEntry[] {
    const e = this.#e;
    const out: LogEntry[] = [];
    e.logIterStart();
    for (;;) {
      const off = e.logIterNext();
      if (off === -1) break;
      this.#check(off, "iterate");
      const at = this.#base + off;
      const n = this.recordItems(off);
      const kl = this.#dv.getUint16(at + 26, true);
      const k0 = at + 32 + n * 8;
      out.push({
        key: this.#u8.slice(k0, k0 + kl),
        seq: this.#seqAt(at),
        names: this.#namesAt(off),
        tag: this.recordTag(off),
      });
    }
    return out;
  }

  [Symbol.iterator](): Iterator<LogEntry> {
    return this.entries()[Symbol.iterator]();
  }

  /** Number of live keys. */
  get size(): number {
    return this.#e.logInfo(7);
  }

  stats(): LogStats {
    const i = (c: number) => this.#e.logInfo(c);
    return {
      capacity: i(1),
      head: i(2),
      tail: i(4),
      freeBytes: i(9),
      liveBytes: i(8),
      liveKeys: i(7),
      maxKeys: i(10),
      indexSlots: i(26),
      nextSeq: i(5),
      pendingRecords: i(15),
      inFlight: this.#flight.length,
      durableSeq: this.#durableSeq,
      commits: this.#commits,
      compactions: this.#compactions,
    };
  }

  #find(key: LogKey): number {
    return this.#lookup(this.#stageKey(key));
  }

  /** The record of the key staged (keyLen bytes), or -1. */
  #lookup(keyLen: number): number {
    const r = this.#e.logFind(keyLen);
    if (r === E_LOG_NOTFOUND) return -1;
    this.#check(r, "get");
    return r;
  }

  #seqAt(at: number): number {
    return this.#dv.getUint32(at + 16, true) + this.#dv.getUint32(at + 20, true) * 2 ** 32;
  }

  #namesAt(off: number): Item[] {
    const n = this.recordItems(off);
    const out: Item[] = [];
    for (let k = 0; k < n; k++) out.push(itemOf(this.itemIndex(off, k), this.itemLow(off, k)));
    return out;
  }

  #stageKey(key: LogKey): number {
    if (this.pool.closed) throw new PoolClosedError("ECLOSED", "pmstack: the log's pool is closed");
    if (typeof key === "string") {
      // browsers' encodeInto refuses a view of a SharedArrayBuffer: a shared pool's key goes
      // through a private buffer
      const shared = this.pool.core.shared;
      const into = shared ? (this.#keyCopy ??= new Uint8Array(LOG_MAX_KEY)) : this.#keyView;
      const r = enc.encodeInto(key, into);
      if (r.read !== key.length || r.written === 0)
        throw new LogError("EKEY", `pmstack: a key must be 1 to ${LOG_MAX_KEY} bytes (UTF-8)`);
      if (shared) this.#u8.set(into.subarray(0, r.written), this.#key);
      return r.written;
    }
    const k = key;
    if (!(k instanceof Uint8Array) || k.length === 0 || k.length > LOG_MAX_KEY)
      throw new LogError("EKEY", `pmstack: a key must be a string or Uint8Array of 1 to ${LOG_MAX_KEY} bytes`);
    this.#u8.set(k, this.#key);
    return k.length;
  }

  #check(rc: number, what: string): void {
    if (rc >= 0) return;
    switch (rc) {
      case E_LOG_FULL: {
        const st = this.stats();
        throw new LogFullError(
          "ELOGFULL",
          `pmstack: ${what}: the log is full (${st.liveBytes} of ${st.capacity} bytes live, ${st.liveKeys} keys); ` +
            "delete keys or use a larger metaBytes",
        );
      }
      case E_LOG_KEY:
        throw new LogError("EKEY", `pmstack: ${what}: a key must be 1 to ${LOG_MAX_KEY} bytes`);
      case E_LOG_NAMES:
        throw new LogError("ENAMES", `pmstack: ${what}: at most ${LOG_MAX_NAMES} names per record`);
      case E_LOG_GROUP:
        throw new LogError("EGROUP", `pmstack: ${what}: the pending group is at its size limit`);
      case E_LOG_INDEX_FULL:
        throw new LogFullError("EINDEXFULL", `pmstack: ${what}: the index holds its maximum of live keys`);
      case E_LOG_BAD:
        throw new LogError(
          "EBADLOG",
          `pmstack: ${what}: the metadata region of ${this.pool.path ?? "(volatile)"} is not a valid log ` +
            "(damaged header or tail slots, or used for something else); nothing was changed",
        );
      case E_LOG_BUSY:
        throw new LogError(
          "EBUSY",
          `pmstack: ${what}: not now (the log is open already, the pool has handed out buffers, or a group is pending)`,
        );
      case E_LOG_NOLOG:
        throw new LogError(
          "ENOLOG",
          `pmstack: ${what}: the pool was not set up for a log: open it with { configure: PmLog.configure }`,
        );
      case E_LOG_SMALL:
        throw new LogError("ESMALL", `pmstack: ${what}: the metadata region is too small for a log`);
      case E_RANGE:
        throw new BufferNameError("ERANGE", `pmstack: ${what}: a name's buffer is not in this pool`);
      case E_BOUNDS:
        throw new BufferNameError("EBOUNDS", `pmstack: ${what}: a name lies outside its ${BUF_SIZE}-byte buffer`);
      case E_FREE:
        throw new BufferNameError("EFREE", `pmstack: ${what}: a name's buffer is free (stale name)`);
      case E_REFMAX:
        throw new BufferNameError("EREFMAX", `pmstack: ${what}: a buffer has too many references`);
      default:
        throw new LogError("ECORE", `pmstack: ${what}: core error ${rc}`);
    }
  }
}

// PmLog: a write-ahead log of named buffers with a key index, in a pool's metadata region.
// The mechanism is in the core (assembly/pm/log.ts); this class stages keys and names in the
// core's memory, turns error codes into typed errors, and runs the group commit: the core
// writes flush lists (u32 memOffset/length pairs) and the pool persists each list with one call.
// Format, recovery and durability: docs/api/log.md and docs/persistence.md.

import { BUF_SIZE, E_BOUNDS, E_FREE, E_RANGE, E_REFMAX } from "./abi.js";
import type { CoreInstance } from "./core.js";
import { BufferNameError, PmstackError, PoolClosedError } from "./errors.js";
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

interface LogExports {
  logReserve(): number;
  logAttach(at: number, bytes: number): number;
  logFormat(step: number): number;
  logRecover(): number;
  logAppend(keyLen: number, nNames: number, type: number): number;
  logFind(keyLen: number): number;
  logCommitBegin(): number;
  logCommitTail(): number;
  logCommitEnd(): number;
  logCompact(target: number): number;
  logIterStart(): void;
  logIterNext(): number;
  logKeyBuf(): number;
  logNamesBuf(): number;
  logTable(): number;
  logInfo(code: number): number;
}

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
  /** Buffers claimed (kept) because live records name them. */
  claimedBuffers: number;
}

export interface LogStats {
  capacity: number;
  head: number;
  tail: number;
  freeBytes: number;
  liveBytes: number;
  liveKeys: number;
  maxKeys: number;
  nextSeq: number;
  pendingRecords: number;
  commits: number;
  compactions: number;
}

export interface LogEntry {
  key: Uint8Array;
  seq: number;
  names: BufferName[];
}

export interface LogOptions {
  /** When an append does not fit: commit, compact, retry once (default true). */
  autoCompact?: boolean;
  /**
   * Persist a commit's payloads and records as one range covering them all (one msync) rather
   * than one msync per run of pages. Default: true in msync mode (any medium), else false.
   */
  coalesce?: boolean;
}

const DAMAGE = ["", "length", "position", "type", "counts", "crc", "sequence", "name", "index full"];
const enc = new TextEncoder();

export type LogKey = Uint8Array | string;

export class PmLog {
  readonly pool: Pool;
  readonly recovery: Readonly<LogRecovery>;
  readonly maxKey = LOG_MAX_KEY;
  readonly maxNames = LOG_MAX_NAMES;
  #e: LogExports;
  #u8: Uint8Array;
  #u32: Uint32Array;
  #dv: DataView;
  #key: number;
  #names: number;
  #table: number;
  #base: number;
  #cap: number;
  #autoCompact: boolean;
  #coalesce: boolean;
  #commits = 0;
  #compactions = 0;

  /** Reserves the log's working memory: pass as (or call from) the pool's `configure` hook. */
  static configure(core: CoreInstance): void {
    const e = core.exports as unknown as LogExports;
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
    const e = pool.core.exports as unknown as LogExports;
    if (typeof e.logAttach !== "function") throw new LogError("ENOLOG", "pmstack: this core has no log");
    this.#e = e;
    this.#autoCompact = opts.autoCompact ?? true;
    // msync: one call per commit step (see #union), on a block device (each call is a device
    // flush) and on tmpfs alike (each call is a syscall that writes nothing back); with
    // cache-line flushes (DAX) and in strict mode per-range flushing is exact and syscall-free.
    this.#coalesce = opts.coalesce ?? pool.persistMode === "msync";
    const mem = pool.core.memory.buffer;
    this.#u8 = new Uint8Array(mem);
    this.#u32 = new Uint32Array(mem);
    this.#dv = new DataView(mem);
    this.#table = e.logTable();
    this.#key = e.logKeyBuf();
    this.#names = e.logNamesBuf();
    const sb = pool.superblock;
    let r = e.logAttach(pool.memOffset + sb.metaOffset, sb.metaBytes);
    this.#check(r, "opening the log");
    const formatted = r === 1;
    if (formatted) {
      // slots first, header second: a crash in between leaves a region that formats again
      this.#check(e.logFormat(0), "formatting the log");
      pool.persistTable(this.#table, 1);
      this.#check(e.logFormat(1), "formatting the log");
      pool.persistTable(this.#table, 1);
    }
    r = e.logRecover();
    this.#check(r, "recovering the log");
    if (r === 1) pool.persistTable(this.#table, 1); // the repaired tail slot
    this.#base = e.logInfo(0);
    this.#cap = e.logInfo(1);
    this.recovery = Object.freeze({
      formatted,
      records: e.logInfo(11),
      liveKeys: e.logInfo(7),
      discardedBytes: e.logInfo(12),
      damage: DAMAGE[e.logInfo(13)] ?? "unknown",
      claimedBuffers: e.logInfo(14),
    });
  }

  /**
   * Appends a record `key -> names` and returns its sequence number. The names must be of held
   * buffers (validated); the log takes one reference per name and marks the buffers kept, so
   * the caller may free its own reference. Durable only after commit(); get() sees it at once.
   * A later append or delete of the key releases these references once that record commits.
   */
  append(key: LogKey, names: readonly BufferName[]): number {
    const k = this.#stageKey(key);
    const n = names.length;
    if (n > LOG_MAX_NAMES)
      throw new LogError("ENAMES", `pmstack: a record holds at most ${LOG_MAX_NAMES} names, got ${n}`);
    const u32 = this.#u32;
    const w = this.#names >>> 2;
    for (let i = 0; i < n; i++) {
      const nm = names[i]!;
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
    return this.#append(k, n, 1, "append");
  }

  /** Appends a delete record (tombstone). Returns its sequence number, or null if the key is absent. */
  delete(key: LogKey): number | null {
    const r = this.#append(this.#stageKey(key), 0, 2, "delete");
    return r === E_LOG_NOTFOUND ? null : r;
  }

  #append(k: number, n: number, type: number, what: string): number {
    let r = this.#e.logAppend(k, n, type);
    if (r === E_LOG_GROUP) {
      this.commit(); // the group is at its size limit: commit it and go on
      r = this.#e.logAppend(k, n, type); // the key and names are still staged
    }
    if (r === E_LOG_FULL && this.#autoCompact) {
      this.commit();
      // room for this record and a quarter of the usable log, if the live data allows
      this.compact(32 + n * 8 + k + 8 + ((this.#cap - RESERVE) >>> 2));
      r = this.#e.logAppend(k, n, type);
    }
    if (r !== E_LOG_NOTFOUND) this.#check(r, what);
    return r;
  }

  /** The names of the live record for `key`, or undefined. */
  get(key: LogKey): BufferName[] | undefined {
    const off = this.#find(key);
    return off < 0 ? undefined : this.#namesAt(off);
  }

  /** Zero-copy views (pool.viewName) of the live record's buffers for `key`, or undefined. */
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
   * Group commit: one persist of every pending payload range and record, then one of the tail
   * slot. When it returns, every record appended before it is durable (see persistence.md).
   * Returns how many buffers became free (of superseded and deleted records).
   */
  commit(): number {
    const e = this.#e;
    let n = e.logCommitBegin();
    this.#check(n, "commit");
    if (n > 1 && this.#coalesce) n = this.#union(n);
    if (n > 0) this.pool.persistTable(this.#table, n);
    const t = e.logCommitTail();
    this.#check(t, "commit");
    if (t > 0) this.pool.persistTable(this.#table, 1);
    this.#commits++;
    return e.logCommitEnd();
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
      const n = this.#dv.getUint16(at + 28, true);
      const kl = this.#dv.getUint16(at + 26, true);
      const k0 = at + 32 + n * 8;
      out.push({ key: this.#u8.slice(k0, k0 + kl), seq: this.#seqAt(at), names: this.#namesAt(off) });
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
      nextSeq: i(5),
      pendingRecords: i(15),
      commits: this.#commits,
      compactions: this.#compactions,
    };
  }

  /**
   * Replaces the flush list's n pairs by the one range that covers them all (returns 1). On a
   * block device msync costs a device flush per call, so one call over the union (writing back
   * only the dirty pages in it, and possibly some the app dirtied but did not persist yet:
   * never less than asked) beats one call per run of pages; on tmpfs msync writes nothing back
   * and costs its syscall, whatever the range's size.
   */
  #union(n: number): number {
    const dv = this.#dv;
    let lo = Infinity;
    let hi = 0;
    for (let k = 0; k < n; k++) {
      const a = dv.getUint32(this.#table + 8 * k, true);
      const len = dv.getUint32(this.#table + 8 * k + 4, true);
      if (len === 0) continue;
      lo = Math.min(lo, a);
      hi = Math.max(hi, a + len);
    }
    if (hi === 0) return 0;
    dv.setUint32(this.#table, lo, true);
    dv.setUint32(this.#table + 4, hi - lo, true);
    return 1;
  }

  #find(key: LogKey): number {
    const r = this.#e.logFind(this.#stageKey(key));
    if (r === E_LOG_NOTFOUND) return -1;
    this.#check(r, "get");
    return r;
  }

  #seqAt(at: number): number {
    return this.#dv.getUint32(at + 16, true) + this.#dv.getUint32(at + 20, true) * 2 ** 32;
  }

  #namesAt(off: number): BufferName[] {
    const at = this.#base + off;
    const n = this.#dv.getUint16(at + 28, true);
    const out: BufferName[] = [];
    for (let k = 0; k < n; k++) {
      const lo = this.#dv.getUint32(at + 32 + 8 * k, true);
      const index = this.#dv.getUint32(at + 36 + 8 * k, true);
      out.push({ index, offset: lo >>> 16, length: lo & 0xffff });
    }
    return out;
  }

  #stageKey(key: LogKey): number {
    if (this.pool.closed) throw new PoolClosedError("ECLOSED", "pmstack: the log's pool is closed");
    if (typeof key === "string") {
      const r = enc.encodeInto(key, this.#u8.subarray(this.#key, this.#key + LOG_MAX_KEY));
      if (r.read !== key.length || r.written === 0)
        throw new LogError("EKEY", `pmstack: a key must be 1 to ${LOG_MAX_KEY} bytes (UTF-8)`);
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

// The key-value store's records over the PM log: values of any size, zero copy, with Redis's
// expiry. A record (tag KV_TAG) is the value's items followed by a 16-byte trailer:
//   0 "pmKV"   4 u8 version 2   5..7 0   8 f64 expiry, unix ms (0: none)
// The trailer is the last 16 bytes of the record's last item, a range of the app's arena (a
// short value is copied in front of it, in the same range); a long value stays in the receive
// buffers it arrived in, as data ranges or an extent tree (ObjectWriter). The trailer is written
// last, when the command knows the expiry (SET's options follow the value), and sits outside
// the value's tree, so a command that keeps the value and changes the expiry (EXPIRE, PERSIST,
// GETEX, SET KEEPTTL), or one that extends it (APPEND), reuses the value's items as they are.
// Records of the first release (tag 0) put a 16-byte header (version 1) first instead; they are
// read as they are.
//
// Sharded over workers (kv/shard.ts), a value a client of another worker sent stays in that
// worker's pool, where its NIC wrote it: that worker keeps it under a loan record (tag
// KV_LOAN_TAG, its key one this worker can never own), and the owner's record is a remote one:
// trailer version 3, after a descriptor that names the lender, the loan and the value's
// ranges in the lender's pool (below). A remote value is read from the lender's memory (the
// pools of one server's workers are shared memories) into buffers of this pool, for the
// command that reads it; the loan goes when the owner's record that names it is superseded
// and that is durable.

import type { LogObject, PmLog } from "../../log.js";
import { ObjectCursor, walkPeerItem, type Item, type ObjectRef, type ObjectWriter } from "../../object.js";
import type { BufferName, Pool } from "../../pool.js";
import { MetaArena } from "../arena.js";
import type { SlotKeys } from "./cluster.js";
import { BUF_SIZE, ITEM_NODE } from "../../abi.js";
import { PmstackError } from "../../errors.js";
import { REMOTE_HEAD, decodeRemote, encodeRemote, type RemoteValue } from "../loan.js";

/** Bytes of a record's trailer (and of a first-release record's header). */
export const KV_TRAILER = 16;
/** Record tag of this format. */
export const KV_TAG = 2;
/** Record tag of a loan: a value this worker keeps for a record of another worker's. */
export const KV_LOAN_TAG = 3;
/** Values up to this many bytes are copied into the arena beside their trailer. */
export const KV_SMALL = 64;
/** Items a value may have in a record (one is the trailer). */
export const KV_VALUE_ITEMS = 63;
const MAGIC = Uint8Array.of(0x70, 0x6d, 0x4b, 0x56); // "pmKV"
/** The append options of every record of this format. */
const TAGGED = Object.freeze({ tag: KV_TAG });
const LOAN = Object.freeze({ tag: KV_LOAN_TAG });
/** read()'s ranges of a remote value's copy (#fetchInto's output: a count, then three numbers each). */
const FETCHED = new Uint32Array(1 + 3 * KV_VALUE_ITEMS);

/** A live value: its bytes as an object (trailer excluded), length and expiry. */
export interface Value {
  obj: ObjectRef;
  len: number;
  /** Unix ms, 0 = none. */
  expireAt: number;
  /**
   * The bytes are a copy this command's read made (of a remote value): data ranges not yet
   * persisted, so a record that names them must persist them with it (pushValue), where a live
   * value's own items are durable already.
   */
  copied?: boolean;
}

/** How the store reaches the other workers' pools (the sharded store's; kv/shard.ts). */
export interface PeerPools {
  /** Worker `w`'s pool memory and its buffer 0's address in it, or null when not known. */
  memory(w: number): { bytes: Uint8Array; base: number } | null;
  /** A record that named loan `id` of worker `w` was superseded by the record of sequence `seq`. */
  released(w: number, id: number, seq: number): void;
}

export class KvStore {
  readonly log: PmLog;
  readonly pool: Pool;
  readonly arena: MetaArena;
  /** Keys removed because they expired (Redis's expired_keys). */
  expired = 0;
  #now: () => number;
  /** The core's memory, for ranges()'s trailer check (the pool's memory never moves). */
  #mem: Uint8Array;
  #dv: DataView;
  /** Buffer 0's address: buffer i's is this + i * BUF_SIZE (the pool's buffers are one array). */
  #bufBase: number;
  /** Keys with an expiry (latin1 of the key bytes -> unix ms), for DBSIZE, INFO and sweeps. */
  #expires = new Map<string, number>();
  #sweepAt: Iterator<[string, number]> | null = null;
  /** In cluster mode: which keys each hash slot holds, told of every key that appears or goes. */
  #slots: SlotKeys | null = null;
  /** Sharded: the other workers' pools (remote values are read there; loans are released). */
  #peers: PeerPools | null = null;
  /** Loan records in this log (not keys of this store's). */
  #loans = 0;
  /** Buffers a command's read of a remote value filled: this store's reference goes at the turn's end. */
  #temps: number[] = [];
  /** Remote values read into this pool (their bytes copied from the lender's). */
  remoteReads = 0;

  constructor(log: PmLog, now: () => number) {
    this.log = log;
    this.pool = log.pool;
    this.#now = now;
    this.arena = new MetaArena(log.pool);
    this.#mem = new Uint8Array(log.pool.core.memory.buffer);
    this.#dv = new DataView(log.pool.core.memory.buffer);
    this.#bufBase = log.pool.address(0);
    // keys with an expiry, from the recovered log; and its loans, and the loans its records
    // name, for a sharded store's check after a restart (atStart)
    for (const e of log.entries()) {
      if (e.tag === KV_LOAN_TAG) {
        this.#loans++;
        this.#atStart!.loans.push(e.key);
        continue;
      }
      const r = this.#remoteOf(e);
      if (r) this.#atStart!.remote.push(r);
      const t = this.#decode({ names: e.names, tag: e.tag, seq: e.seq, length: 0 })?.expireAt ?? 0;
      if (t > 0) this.#expires.set(latin1(e.key), t);
    }
  }

  /** Tracks the keys of each hash slot from now on (the live keys are added first). */
  trackSlots(slots: SlotKeys): void {
    this.#slots = slots;
    for (const e of this.log.entries()) slots.add(e.key);
  }

  /** Keys (expired ones not yet removed included). */
  get size(): number {
    return this.log.size - this.#loans;
  }

  /** Sharded: reads remote values from, and releases loans to, the other workers' pools. */
  setPeers(p: PeerPools): void {
    this.#peers = p;
  }

  /** Loan records this worker keeps for other workers' records. */
  get loans(): number {
    return this.#loans;
  }

  /**
   * Keeps the value `items` (this pool's, zero copy) under the loan record `key` (a key of
   * another worker's, so never one of this store's). Returns the record's sequence number: the
   * loan may be named once it is durable.
   */
  lend(key: Uint8Array, items: readonly Item[]): number {
    const seq = this.log.append(key, items, LOAN);
    this.#loans++;
    return seq;
  }

  /** Ends the loan record `key` (its value's buffers go once that is durable). */
  unlend(key: Uint8Array): boolean {
    const h = this.log.find(key);
    if (h < 0 || this.log.recordTag(h) !== KV_LOAN_TAG) return false;
    this.log.delete(key);
    this.#loans--;
    return true;
  }

  /**
   * What the recovered log held, found in the constructor's pass over it: the loan records'
   * keys and the remote values its records named (after a restart: which loans are still
   * named). Once; null after.
   */
  atStart(): { loans: Uint8Array[]; remote: RemoteValue[] } | null {
    const s = this.#atStart;
    this.#atStart = null;
    return s;
  }

  #atStart: { loans: Uint8Array[]; remote: RemoteValue[] } | null = { loans: [], remote: [] };

  /** The loan records' keys now. */
  loanEntries(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const e of this.log.entries()) if (e.tag === KV_LOAN_TAG) out.push(e.key);
    return out;
  }

  /** The remote values this store's records name now. */
  remoteEntries(): RemoteValue[] {
    const out: RemoteValue[] = [];
    for (const e of this.log.entries()) {
      const r = this.#remoteOf(e);
      if (r) out.push(r);
    }
    return out;
  }

  /** The remote value a record names, or null. */
  #remoteOf(e: { tag: number; names: readonly Item[] }): RemoteValue | null {
    if (e.tag !== KV_TAG) return null;
    const last = e.names[e.names.length - 1];
    if (!last || last.height || last.length < KV_TRAILER + REMOTE_HEAD) return null;
    return this.#remoteIn(last.index, last.offset, last.length);
  }

  /** Writes `key -> a value another worker keeps` (its loan, which the record now names). */
  putRemote(key: Uint8Array, r: RemoteValue, expireAt: number): number {
    return this.#put(key, [], encodeRemote(r), expireAt, 3);
  }

  /** The turn's end: buffers filled for reads of remote values are let go (replies hold their own). */
  endTurn(): void {
    const t = this.#temps;
    while (t.length) this.pool.free(t.pop()!);
  }

  /** Keys with an expiry set. */
  get expiring(): number {
    return this.#expires.size;
  }

  /** The live, unexpired value of `key` (an expired one is deleted), or null. */
  read(key: Uint8Array): Value | null {
    const o = this.log.object(key);
    if (!o) return null;
    const v = this.#decode(o);
    if (!v) return null;
    if (v.expireAt && this.#now() > v.expireAt) {
      this.delete(key);
      this.expired++;
      return null;
    }
    if (v.len > 0 && v.obj.names.length === 0) return this.#fetch(v, o);
    return v;
  }

  /**
   * A remote value's bytes, copied from the lender's pool into buffers of this one (kept until
   * the turn's end; a reply or a record that names them takes its own references).
   */
  #fetch(v: Value, o: LogObject): Value {
    const d = o.names[0]!;
    const at = this.#addr(d.index, d.offset);
    // one range per buffer of the copy: a long value's are more than a record's items (a reply
    // streams them; a record that names them puts them in a tree: #put)
    const need = Math.ceil(this.#dv.getUint32(at + 4, true) / BUF_SIZE);
    const out = need <= KV_VALUE_ITEMS ? FETCHED : new Uint32Array(1 + 3 * need);
    const len = this.#fetchInto(at, d.length - KV_TRAILER, out, Math.max(need, KV_VALUE_ITEMS));
    if (len < 0) throw this.#unreadable(this.#mem[at + 1]!);
    const items: BufferName[] = new Array(out[0]!);
    for (let k = 0; k < items.length; k++)
      items[k] = { index: out[1 + 3 * k]!, offset: out[2 + 3 * k]!, length: out[3 + 3 * k]! };
    return { obj: { names: items }, len, expireAt: v.expireAt, copied: true };
  }

  /**
   * ranges() for a remote value whose descriptor is the `len` bytes at `at` in this memory:
   * its bytes copied from the lender's pool into buffers of this one (kept until the turn's
   * end), their ranges written into `out`; -2 when they would be more than `max` ranges, or
   * the lender's pool is not reachable, or the descriptor or the lender's tree is damaged.
   */
  #fetchInto(at: number, len: number, out: Uint32Array, max: number): number {
    const m = this.#mem;
    const dv = this.#dv;
    if (len < REMOTE_HEAD || m[at] !== 1) return -2;
    const n = dv.getUint16(at + 2, true);
    const total = dv.getUint32(at + 4, true);
    if (len !== REMOTE_HEAD + 8 * n || Math.ceil(total / BUF_SIZE) > max) return -2;
    const peer = this.#peers!.memory(m[at + 1]!);
    if (!peer) return -2;
    const f = this.#fill;
    f.src = peer.bytes;
    f.out = out;
    f.max = max;
    f.count = 0;
    f.i = -1;
    f.at = BUF_SIZE;
    f.over = false;
    let got = 0;
    for (let j = 0; j < n; j++) {
      const d = at + REMOTE_HEAD + 8 * j;
      const lo = ((dv.getUint16(d + 4, true) << 16) | dv.getUint16(d + 6, true)) >>> 0;
      const k = walkPeerItem(peer, dv.getUint32(d, true), lo, this.#copyIn);
      if (f.over) return -2;
      got += k;
    }
    if (got !== total) return -2;
    out[0] = f.count;
    this.remoteReads++;
    return total;
  }

  /** #fetchInto's copy state: the lender's memory, the output, the buffer being filled and its fill point. */
  #fill: { src: Uint8Array; out: Uint32Array; max: number; count: number; i: number; at: number; over: boolean } = {
    src: new Uint8Array(0),
    out: FETCHED,
    max: 0,
    count: 0,
    i: -1,
    at: BUF_SIZE,
    over: false,
  };

  /** Copies `len` bytes at `from` in the lender's memory into the copy's buffers (#fill). */
  #copyIn = (from: number, len: number): void => {
    const f = this.#fill;
    const out = f.out;
    while (len > 0) {
      if (f.at === BUF_SIZE) {
        if (f.count === f.max) {
          f.over = true;
          return;
        }
        // kept, as a record's buffers are: a reply sends it by reference (an app buffer
        // would be handed to the stack with the send, under this store's reference)
        f.i = this.pool.alloc("kept");
        this.#temps.push(f.i);
        out[1 + 3 * f.count] = f.i;
        out[2 + 3 * f.count] = 0;
        out[3 + 3 * f.count] = 0;
        f.count++;
        f.at = 0;
      }
      const k = Math.min(len, BUF_SIZE - f.at);
      this.#mem.set(f.src.subarray(from, from + k), this.#addr(f.i, f.at));
      out[3 * f.count] = out[3 * f.count]! + k;
      f.at += k;
      from += k;
      len -= k;
    }
  };

  /** Why a remote value of worker `w` could not be read: its pool is not reachable, or what names it is damaged. */
  #unreadable(w: number): Error {
    if (!this.#peers?.memory(w))
      return new RangeError("pmstack: a value kept by another worker, whose pool is not reachable");
    return new PmstackError(
      "ECORRUPT",
      `pmstack: a value kept by worker ${w}: its descriptor, or its tree in that worker's pool, is damaged`,
    );
  }

  /** A remote value's bytes, copied out of the lender's pool (an argument used as text). */
  remoteBytes(r: RemoteValue): Uint8Array {
    const peer = this.#peers?.memory(r.worker);
    if (!peer) throw this.#unreadable(r.worker);
    const out = new Uint8Array(r.len);
    let at = 0;
    const copy = (from: number, len: number): void => {
      if (at + len <= out.length) out.set(peer.bytes.subarray(from, from + len), at);
      at += len;
    };
    for (let j = 0; j < r.ranges.length; j += 3) {
      const lo = ((r.ranges[j + 1]! << 16) | r.ranges[j + 2]!) >>> 0;
      walkPeerItem(peer, r.ranges[j]!, lo, copy);
    }
    if (at !== r.len) throw this.#unreadable(r.worker);
    return out;
  }

  /** The remote value whose descriptor and trailer are the range (index, offset, length), or null. */
  #remoteIn(index: number, offset: number, length: number): RemoteValue | null {
    if (length < KV_TRAILER + REMOTE_HEAD) return null;
    const at = this.#addr(index, offset);
    if (!this.#isTrailer(at + length - KV_TRAILER, 3)) return null;
    return decodeRemote(this.#mem, at, length - KV_TRAILER);
  }

  /** The remote value the live record of `key` names, or null (sharded stores check before they supersede one). */
  #remoteAt(key: Uint8Array): RemoteValue | null {
    const log = this.log;
    const h = log.find(key);
    if (h < 0 || log.recordTag(h) !== KV_TAG) return null;
    const n = log.recordItems(h);
    if (n !== 1) return null;
    const lo = log.itemLow(h, 0);
    if ((lo >>> 16) & ITEM_NODE) return null;
    return this.#remoteIn(log.itemIndex(h, 0), lo >>> 16, lo & 0xffff);
  }

  /**
   * GET's read, allocating nothing: when the live value of the key `src[at, at + len)` is at
   * most `max` data ranges
   * (no tree) under no expiry that has passed, writes their buffer index, offset and length
   * into `out` (three numbers each; out[0] holds their count) and returns the value's length.
   * Returns -1 when there is no such key, and -2 for anything else (an expiry that has passed,
   * a tree, a first-release record, a record that is not the store's): read() answers those.
   */
  ranges(src: Uint8Array, at: number, len: number, out: Uint32Array, max: number): number {
    const log = this.log;
    const h = log.findIn(src, at, len);
    if (h < 0) return -1;
    const n = log.recordItems(h);
    if (n === 0 || n - 1 > max || log.recordTag(h) !== KV_TAG) return -2;
    let count = 0;
    let total = 0;
    for (let k = 0; k < n; k++) {
      const lo = log.itemLow(h, k);
      if ((lo >>> 16) & ITEM_NODE) return -2;
      const index = log.itemIndex(h, k);
      const off = lo >>> 16;
      let l = lo & 0xffff;
      if (k === n - 1) {
        // the trailer, behind a short value's bytes
        if (l < KV_TRAILER) return -2;
        const t = this.#addr(index, off + l - KV_TRAILER);
        const remote = !this.#isTrailer(t, 2);
        if (remote && (n !== 1 || !this.#peers || !this.#isTrailer(t, 3))) return -2;
        const due = this.#expiry(t);
        if (due && this.#now() > due) return -2; // read() deletes it
        // a remote value: copied from the lender's pool straight into the ranges
        if (remote) return this.#fetchInto(this.#addr(index, off), l - KV_TRAILER, out, max);
        l -= KV_TRAILER;
        if (l === 0) break;
        if (count === max) return -2;
      }
      out[1 + 3 * count] = index;
      out[2 + 3 * count] = off;
      out[3 + 3 * count] = l;
      count++;
      total += l;
    }
    out[0] = count;
    return total;
  }

  /**
   * Whether a GET's reply framing still lies around the value that ranges() wrote into `out`:
   * bit 1 when the `head` bytes (`$<len>\r\n`) lie just before its first range in the same
   * buffer, bit 2 when `\r\n` lies just after its last. A value a SET sent whole keeps the
   * request's own framing there, so the reply can go out as its ranges widened, all by name,
   * with no text copied. Bytes are only read where they can no longer change while the value
   * lives: a received buffer is never written again, and of the arena's buffers only the one
   * being filled still takes writes (after its fill point), so a range there is not widened
   * forward.
   */
  framing(out: Uint32Array, head: Uint8Array): number {
    const n = out[0]!;
    if (n === 0) return 0;
    const m = this.#mem;
    let bits = 0;
    const first = out[1]!;
    const off = out[2]!;
    const h = head.length;
    if (off >= h) {
      const at = this.#addr(first, off - h);
      let k = 0;
      while (k < h && m[at + k] === head[k]) k++;
      if (k === h) bits |= 1;
    }
    const last = out[3 * n - 2]!;
    const end = out[3 * n - 1]! + out[3 * n]!;
    if (end + 2 <= BUF_SIZE && last !== this.arena.current) {
      const at = this.#addr(last, end);
      if (m[at] === 13 && m[at + 1] === 10) bits |= 2;
    }
    return bits;
  }

  /**
   * Writes `key -> value items (then the short value `small`, copied) + trailer`. The items are
   * data ranges and nodes the caller holds (an ObjectWriter's finish(), or a live value's
   * items: the log takes its own references). Past KV_VALUE_ITEMS items (a remote value's copy)
   * they go into a tree first.
   */
  put(key: Uint8Array, items: readonly Item[], small: Uint8Array | null, expireAt: number): number {
    return this.#put(key, items, small, expireAt, 2);
  }

  #put(key: Uint8Array, items: readonly Item[], small: Uint8Array | null, expireAt: number, version: number): number {
    if (items.length > KV_VALUE_ITEMS) {
      // more items than a record holds (a remote value's copy, one range per buffer): a tree
      const w = this.log.writer(KV_VALUE_ITEMS);
      try {
        for (const it of items)
          if (it.height) w.pushObject({ names: [it] });
          else w.push(it);
        return this.#put(key, w.finish().names, small, expireAt, version);
      } finally {
        w.release();
      }
    }
    const old = this.#peers ? this.#remoteAt(key) : null;
    const n = small ? small.length : 0;
    const t = this.arena.take(n + KV_TRAILER);
    // the short value and the trailer, written in place (the arena's range is the store's own)
    const m = this.#mem;
    const at = this.#addr(t.index, t.offset);
    if (small) m.set(small, at);
    const tr = at + n;
    m.set(MAGIC, tr);
    m[tr + 4] = version;
    m[tr + 5] = m[tr + 6] = m[tr + 7] = 0;
    if (expireAt === 0) for (let i = 8; i < 16; i++) m[tr + i] = 0;
    else this.#dv.setFloat64(tr + 8, expireAt, true);
    const names: Item[] = new Array(items.length + 1);
    for (let i = 0; i < items.length; i++) names[i] = items[i]!;
    names[items.length] = t;
    const before = this.#slots ? this.log.size : 0;
    const seq = this.log.append(key, names, TAGGED);
    if (this.#slots && this.log.size > before) this.#slots.add(key);
    if (expireAt) this.#expires.set(latin1(key), expireAt);
    else this.#forget(key);
    if (old) this.#peers!.released(old.worker, old.id, seq);
    return seq;
  }

  /** Writes `key -> bytes` (copied: short values, INCR results, SETRANGE's small writes). */
  putBytes(key: Uint8Array, bytes: Uint8Array, expireAt: number): number {
    if (bytes.length <= KV_SMALL) return this.put(key, [], bytes, expireAt);
    // longer copies go into buffers of their own, at most a buffer's worth each
    const items: BufferName[] = [];
    const pool = this.pool;
    try {
      for (let at = 0; at < bytes.length; at += 2048) {
        const i = pool.alloc();
        const len = Math.min(2048, bytes.length - at);
        pool.view(i, 0, len).set(bytes.subarray(at, at + len));
        items.push({ index: i, offset: 0, length: len });
      }
      if (items.length > KV_VALUE_ITEMS) {
        const w = this.log.writer(KV_VALUE_ITEMS);
        try {
          for (const it of items) w.push(it);
          const seq = this.put(key, w.finish().names, null, expireAt);
          return seq;
        } finally {
          w.release();
        }
      }
      return this.put(key, items, null, expireAt);
    } finally {
      for (const it of items) pool.free(it.index); // the record (or the writer's tree) holds its own
    }
  }

  /** Deletes `key` if present. */
  delete(key: Uint8Array): boolean {
    this.#forget(key);
    if (this.#drop(key) === null) return false;
    this.#slots?.remove(key);
    return true;
  }

  /** The log's delete of `key` (its sequence number, or null): a loan the record named is released. */
  #drop(key: Uint8Array): number | null {
    const old = this.#peers ? this.#remoteAt(key) : null;
    const seq = this.log.delete(key);
    if (old && seq !== null) this.#peers!.released(old.worker, old.id, seq);
    return seq;
  }

  /** The value's bytes, copied (short values, numbers, keys: never a value streamed to a client). */
  bytes(v: Value): Uint8Array {
    const out = new Uint8Array(v.len);
    let at = 0;
    const cur = new ObjectCursor(this.pool, v.obj);
    for (let r = cur.next(); r; r = cur.next()) {
      out.set(this.pool.viewName(r), at);
      at += r.length;
    }
    return out;
  }

  /** Removes expired keys: checks up to `max` entries, resuming where the last sweep stopped. */
  sweep(now: number, max: number): void {
    let n = 0;
    let wrapped = false;
    while (n < max && this.#expires.size) {
      const r = (this.#sweepAt ??= this.#expires.entries()).next();
      if (r.done) {
        this.#sweepAt = null;
        if (wrapped) break;
        wrapped = true;
        continue;
      }
      n++;
      const [k, t] = r.value;
      if (now > t) {
        const key = Uint8Array.from(k, (ch) => ch.charCodeAt(0));
        const o = this.log.object(key);
        if (o && this.#decode(o)?.expireAt === t) {
          this.#drop(key);
          this.#slots?.remove(key);
          this.expired++;
        }
        this.#expires.delete(k);
      }
    }
  }

  /** Every key with an expiry that has passed is removed (DBSIZE counts live keys). */
  sweepAll(): void {
    this.#sweepAt = null;
    this.sweep(this.#now(), this.#expires.size);
  }

  /** Deletes every key. */
  clear(): number {
    let n = 0;
    for (const e of this.log.entries()) {
      if (e.tag === KV_LOAN_TAG) continue; // other workers' values
      this.#drop(e.key);
      n++;
    }
    this.#slots?.clear();
    this.#expires.clear();
    this.#sweepAt = null;
    return n;
  }

  #forget(key: Uint8Array): void {
    if (this.#expires.size) this.#expires.delete(latin1(key));
  }

  /** A record's value and expiry, or null when it is not a kv record. */
  #decode(o: LogObject): Value | null {
    const names = o.names;
    const pool = this.pool;
    if (o.tag === KV_LOAN_TAG) return null;
    if (o.tag === KV_TAG) {
      const last = names[names.length - 1];
      if (!last || last.height || last.length < KV_TRAILER) return null;
      // (a checked name; the view's offset is its address in the core's memory)
      const t = pool.view(last.index, last.offset + last.length - KV_TRAILER, KV_TRAILER).byteOffset;
      if (!this.#isTrailer(t, 2)) {
        // a remote value (no items here: read() fetches it)
        const r = names.length === 1 ? this.#remoteIn(last.index, last.offset, last.length) : null;
        return r ? { obj: { names: [] }, len: r.len, expireAt: this.#expiry(t) } : null;
      }
      const items = names.slice(0, -1);
      if (last.length > KV_TRAILER)
        items.push({ index: last.index, offset: last.offset, length: last.length - KV_TRAILER });
      const len = o.length ? o.length - KV_TRAILER : lengthOf(pool, items);
      return { obj: { names: items }, len, expireAt: this.#expiry(t) };
    }
    // a first-release record: [header (+ a short value), ...value ranges]
    const h = names[0];
    if (!h || h.height || h.length < KV_TRAILER) return null;
    const t = pool.view(h.index, h.offset, KV_TRAILER).byteOffset;
    if (!this.#isTrailer(t, 1)) return null;
    const items: Item[] = names.slice(1);
    if (h.length > KV_TRAILER)
      items.unshift({ index: h.index, offset: h.offset + KV_TRAILER, length: h.length - KV_TRAILER });
    const len = o.length ? o.length - KV_TRAILER : lengthOf(pool, items);
    return { obj: { names: items }, len, expireAt: this.#expiry(t) };
  }

  /** The core-memory address of byte `offset` of buffer `index`. */
  #addr(index: number, offset: number): number {
    return this.#bufBase + index * BUF_SIZE + offset;
  }

  /** Whether the 16 bytes at `at` are a trailer (or first-release header) of `version`. */
  #isTrailer(at: number, version: number): boolean {
    const m = this.#mem;
    return (
      m[at] === MAGIC[0] &&
      m[at + 1] === MAGIC[1] &&
      m[at + 2] === MAGIC[2] &&
      m[at + 3] === MAGIC[3] &&
      m[at + 4] === version
    );
  }

  /** The trailer's expiry at `at` (bytes 8..15, f64; eight zero bytes, no expiry: read without the float). */
  #expiry(at: number): number {
    const m = this.#mem;
    let z = 0;
    for (let i = 8; i < 16; i++) z |= m[at + i]!;
    return z === 0 ? 0 : this.#dv.getFloat64(at + 8, true);
  }
}

function lengthOf(pool: Pool, items: readonly Item[]): number {
  const e = pool.core.exports;
  let n = 0;
  for (const x of items) n += x.height ? e.extInfo(x.index, 2) : x.length;
  return n;
}

export function latin1(b: Uint8Array): string {
  let s = "";
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode(...b.subarray(i, i + 4096));
  return s;
}

/**
 * Pushes items of the live value `v` onto `w`: by name and not persisted again when they are
 * the value's own (durable already), persisted with the record when they are a copy a read made
 * (Value.copied: one data range per buffer).
 */
export function pushValue(w: ObjectWriter, v: Value, items: readonly Item[]): void {
  if (v.copied) for (const it of items) w.push(it);
  else w.pushObject({ names: items as Item[] });
}

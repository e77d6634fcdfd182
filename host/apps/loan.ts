// Loans between the workers of a sharded server (docs/scaling.md): a value or body that a
// client of one worker (the lender) wrote for a key another worker owns stays in the lender's
// pool, where its NIC wrote it, under a loan record of the lender's log; the owner's record
// names it with a descriptor. This module holds what kv and httpd share: the descriptor's
// format, the loan records' keys, and a worker's loan bookkeeping (LoanBook).

import { BUF_SIZE, ITEM_NODE, NODE_MAX_HEIGHT } from "../abi.js";
import { LogFullError } from "../log.js";
import { keyHashSlot } from "./kv/cluster.js";
import type { Item, PeerPool } from "../object.js";

/** Bytes of a remote value's descriptor before its items (8 bytes each follow). */
export const REMOTE_HEAD = 16;
/**
 * A value that lives in another worker's pool, as a record names it:
 *   0 u8 1   1 u8 lender   2 u16 ranges   4 u32 length   8 u32 loan id (high)   12 u32 (low)
 *   16 per item: u32 buffer index, u16 offset, u16 length (in the lender's pool)
 * An item is a data range, or the root of an extent tree (a value of more than 63 ranges): its
 * offset is then ITEM_NODE | the node's height and its length 0, as in an item's 64-bit form.
 */
export interface RemoteValue {
  /** The lender: the worker whose pool holds the bytes. */
  worker: number;
  /** The loan's id, unique per lender (below 2^53). */
  id: number;
  len: number;
  /** Buffer index, offset, length per item, in the lender's pool (a node: ITEM_NODE | height, 0). */
  ranges: number[];
}

/** A remote value's descriptor bytes (the record's, and the request's between workers). */
export function encodeRemote(r: RemoteValue): Uint8Array {
  const n = r.ranges.length / 3;
  const out = new Uint8Array(REMOTE_HEAD + 8 * n);
  const v = new DataView(out.buffer);
  out[0] = 1;
  out[1] = r.worker;
  v.setUint16(2, n, true);
  v.setUint32(4, r.len, true);
  v.setUint32(8, Math.floor(r.id / 0x1_0000_0000), true);
  v.setUint32(12, r.id >>> 0, true);
  for (let i = 0; i < n; i++) {
    v.setUint32(REMOTE_HEAD + 8 * i, r.ranges[3 * i]!, true);
    v.setUint16(REMOTE_HEAD + 8 * i + 4, r.ranges[3 * i + 1]!, true);
    v.setUint16(REMOTE_HEAD + 8 * i + 6, r.ranges[3 * i + 2]!, true);
  }
  return out;
}

/** The descriptor at `b[at, at + len)`, or null when it is not one. */
export function decodeRemote(b: Uint8Array, at: number, len: number): RemoteValue | null {
  if (len < REMOTE_HEAD || b[at] !== 1) return null;
  const v = new DataView(b.buffer, b.byteOffset + at, len);
  const n = v.getUint16(2, true);
  if (len !== REMOTE_HEAD + 8 * n) return null;
  const ranges: number[] = new Array(3 * n);
  let total = 0;
  let nodes = false;
  for (let i = 0; i < n; i++) {
    const off = v.getUint16(REMOTE_HEAD + 8 * i + 4, true);
    const l = v.getUint16(REMOTE_HEAD + 8 * i + 6, true);
    if (off & ITEM_NODE) {
      // a tree's root: its bytes are counted where the tree is read
      const height = off & 0x7fff;
      if (l !== 0 || height < 1 || height > NODE_MAX_HEIGHT) return null;
      nodes = true;
    } else if (off + l > BUF_SIZE) return null;
    ranges[3 * i] = v.getUint32(REMOTE_HEAD + 8 * i, true);
    ranges[3 * i + 1] = off;
    ranges[3 * i + 2] = l;
    total += l;
  }
  const len2 = v.getUint32(4, true);
  if (nodes ? total > len2 : total !== len2) return null;
  return { worker: b[at + 1]!, id: v.getUint32(8, true) * 0x1_0000_0000 + v.getUint32(12, true), len: len2, ranges };
}

/** The loan key of loan `id` kept for the worker whose hash tag `prefix` is: the tag, then the id (8 bytes, big-endian). */
export function loanKey(prefix: Uint8Array, id: number): Uint8Array {
  const k = new Uint8Array(prefix.length + 8);
  k.set(prefix);
  const v = new DataView(k.buffer);
  v.setUint32(prefix.length, Math.floor(id / 0x1_0000_0000));
  v.setUint32(prefix.length + 4, id >>> 0);
  return k;
}

/** A loan key's id, or -1 when it is not one. */
export function loanId(key: Uint8Array): number {
  if (key.length < 11 || key[0] !== 0x7b) return -1;
  const v = new DataView(key.buffer, key.byteOffset + key.length - 8, 8);
  return v.getUint32(0) * 0x1_0000_0000 + v.getUint32(4);
}

/**
 * Per worker of `count`, the hash tag its loans' keys start with on worker `index`: `{j}` for
 * the first j (base 36) whose hash slot the worker owns, so a loan's key is a key of the
 * borrower's, never one of the lender's own (its own, `index`'s, is empty: it lends to no one).
 */
export function loanPrefixes(index: number, count: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    let p = new Uint8Array(0);
    for (let j = 0; i !== index; j++) {
      p = new TextEncoder().encode(`{${j.toString(36)}}`);
      if (keyHashSlot(p) % count === i) break;
    }
    out.push(p);
  }
  return out;
}

/** A descriptor's ranges for a value's items (data ranges, or a tree's root: ITEM_NODE | height, 0). */
export function remoteRanges(items: readonly Item[]): number[] {
  const ranges: number[] = [];
  for (const it of items)
    if (it.height) ranges.push(it.index, ITEM_NODE | it.height, 0);
    else if (it.length) ranges.push(it.index, it.offset, it.length);
  return ranges;
}

/** A loan's items as a descriptor lists them (ranges, or a tree's root), for a cursor. */
export function remoteItems(r: RemoteValue): Item[] {
  const out: Item[] = [];
  for (let j = 0; j < r.ranges.length; j += 3) {
    const off = r.ranges[j + 1]!;
    out.push(
      off & ITEM_NODE
        ? { index: r.ranges[j]!, offset: 0, length: 0, height: off & 0x7fff }
        : { index: r.ranges[j]!, offset: off, length: r.ranges[j + 2]! },
    );
  }
  return out;
}

/**
 * A worker's loan bookkeeping, the same in kv and httpd (their messages between workers differ,
 * not this): the other workers' pool memories, where the loans this worker's records name lie
 * (attachPeer); the next loan id and the keys of the loans kept here for each borrower; and
 * after a restart, per borrower, the loans recovered here until it says which its records still
 * name (named()), and per lender, the loans of its that this worker's records name, told to it
 * once (live()).
 */
export class LoanBook {
  readonly #prefix: Uint8Array[];
  readonly #peers: (PeerPool | null)[];
  #next = 1;
  readonly #recovered: (Map<number, Uint8Array> | null)[];
  #live: number[][] | null;

  constructor(
    readonly index: number,
    readonly count: number,
  ) {
    this.#prefix = loanPrefixes(index, count);
    this.#peers = Array.from({ length: count }, () => null);
    this.#recovered = Array.from({ length: count }, () => null);
    this.#live = Array.from({ length: count }, () => []);
  }

  /** At start: a loan record of this log, `key` (kept for the worker its hash tag names). */
  recovered(key: Uint8Array): void {
    const w = keyHashSlot(key) % this.count;
    const id = loanId(key);
    if (w === this.index || id < 0) return;
    (this.#recovered[w] ??= new Map()).set(id, key);
    if (id >= this.#next) this.#next = id + 1;
  }

  /** At start: a record of this worker's names loan `id` of worker `w`. */
  names(w: number, id: number): void {
    if (w < this.count) this.#live?.[w]!.push(id);
  }

  /** Worker `w`'s pool memory (its core's memory, shared with this thread) and buffer 0's address there. */
  attachPeer(w: number, memory: ArrayBufferLike, base: number): void {
    this.#peers[w] = { bytes: new Uint8Array(memory), base };
  }

  /** Worker `w`'s pool, once attached. */
  peer(w: number): PeerPool | null {
    return this.#peers[w] ?? null;
  }

  /**
   * Lends `items` (a value or body of `len` bytes) to worker `to`: `append(key, items)` writes
   * the loan record under the next loan's key and returns its sequence number. Returns the
   * loan's key, its descriptor and that number; null when the log has no room for the record
   * (LogFullError: the bytes are copied over instead), with no id taken.
   */
  lend(
    to: number,
    items: readonly Item[],
    len: number,
    append: (key: Uint8Array, items: readonly Item[]) => number,
  ): { key: Uint8Array; desc: Uint8Array; seq: number } | null {
    const id = this.#next;
    const key = loanKey(this.#prefix[to]!, id);
    let seq: number;
    try {
      seq = append(key, items);
    } catch (e) {
      if (e instanceof LogFullError) return null;
      throw e;
    }
    this.#next++;
    return { key, desc: encodeRemote({ worker: this.index, id, len, ranges: remoteRanges(items) }), seq };
  }

  /** The key of loan `id` kept here for worker `w`. */
  key(w: number, id: number): Uint8Array {
    return loanKey(this.#prefix[w]!, id);
  }

  /**
   * Once after a start: per worker, the ids of its loans that this worker's records name (to
   * tell it), or null after the first call.
   */
  live(): number[][] | null {
    const l = this.#live;
    this.#live = null;
    return l;
  }

  /**
   * After a restart, worker `w` said which of the loans kept here for it its records name
   * (`ids`): the ids of the others, which nothing names any more, to end. Empty after the first
   * call for `w`, or where nothing was recovered for it.
   */
  named(w: number, ids: Iterable<number>): number[] {
    const kept = this.#recovered[w];
    this.#recovered[w] = null;
    if (!kept) return [];
    for (const id of ids) kept.delete(id);
    return [...kept.keys()];
  }
}

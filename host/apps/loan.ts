// Loans between the workers of a sharded server (docs/scaling.md): a value or body that a
// client of one worker (the lender) wrote for a key another worker owns stays in the lender's
// pool, where its NIC wrote it, under a loan record of the lender's log; the owner's record
// names it with a descriptor. This module holds what kv and httpd share: the descriptor's
// format and the loan records' keys.

import { BUF_SIZE, ITEM_NODE, NODE_MAX_HEIGHT } from "../abi.js";
import { keyHashSlot } from "./kv/cluster.js";
import type { Item } from "../object.js";

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

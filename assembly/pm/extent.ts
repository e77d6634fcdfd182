// Extent nodes: objects of any size as trees of named buffers. A log record names at most
// LOG_MAX_NAMES items; an item is a data range of a buffer, or an extent node: a pool buffer
// of its own holding up to NODE_MAX items (layout in ../layout.ts). A node's height is above
// every child's (data counts as 0), so trees are finite and a walk is at most NODE_MAX_HEIGHT
// deep; a writer that builds a balanced tree from a stream gives every node children of one
// height, and an append may put an old object's nodes beside new ones.
//
// Ownership: a node holds one reference on every buffer it names (the pool drops them when
// the node is freed: bufUnref in ../pool.ts), so an object is kept alive by references on its
// items alone, and objects may share nodes (an APPEND reuses the old value's). Persistence: a
// data range pushed into a node is queued in the flush table at once (it is immutable from
// then on), unless the caller says it is durable already (an old value's range); a node is
// queued when it is sealed (complete, never written again). So by the time a record naming
// a sealed node commits, every byte under it was in this or an earlier group: the group's
// commit orders it before the record.

import { BUF_SIZE, E_ARG, E_RANGE, E_REFMAX, ITEM_NODE, NODE_HDR, NODE_MAGIC, NODE_MAX, NODE_MAX_HEIGHT, OWNER_FREE, OWNER_KEPT, REF_MAX } from "../layout";
import {
  F_NODE,
  F_SEALED,
  bufAddr,
  bufAlloc,
  bufClaim,
  bufFlags,
  bufFlagsSet,
  bufOwner,
  bufRef,
  bufRefCount,
  bufSetOwner,
  nameCheck,
  poolCount,
} from "../pool";
import { flushAdd, flushRoom } from "./flush";

export const E_EXT_FULL: i32 = -50; // the node has NODE_MAX children
export const E_EXT_NODE: i32 = -51; // not an open node, or a child that is not a sealed lower node
export const E_EXT_GROUP: i32 = -52; // the flush table is full: seal the group first

/** extPush flag: the data range is durable already (an old object's): do not queue it again. */
export const PUSH_DURABLE: u32 = 1;

@inline function hdr(i: u32): usize {
  return bufAddr(i);
}
@inline export function nodeHeight(i: u32): u32 {
  return <u32>load<u8>(hdr(i) + 4);
}
@inline export function nodeCount(i: u32): u32 {
  return <u32>load<u16>(hdr(i) + 6);
}
@inline export function nodeBytes(i: u32): u64 {
  return load<u64>(hdr(i) + 8);
}
@inline export function nodeItem(i: u32, k: u32): u64 {
  return load<u64>(hdr(i) + NODE_HDR + (<usize>k << 3));
}

/** The item naming node `i` of height `h`. */
@inline export function nodeRef(i: u32, h: u32): u64 {
  return (<u64>i << 32) | (<u64>(ITEM_NODE | h) << 16);
}
/** 0 for a data item, else the node's height as the item says it. */
@inline export function itemHeight(nm: u64): u32 {
  const o = <u32>(nm >>> 16) & 0xffff;
  return (o & ITEM_NODE) != 0 ? o & 0x7fff : 0;
}

/** Whether `i` is a sealed node whose header says height `h`. */
export function isSealedNode(i: u32, h: u32): bool {
  return (bufFlags(i) & (F_NODE | F_SEALED)) == (F_NODE | F_SEALED) && nodeHeight(i) == h;
}

/**
 * Checks an item a record or node is about to hold (not from the pool file: recovery uses
 * treeCheck): a data range of a held buffer that is no node, or a sealed node whose height
 * matches the item's and is below `below`. Returns 0 or an error.
 */
export function itemCheck(nm: u64, below: u32): i32 {
  const i = <u32>(nm >>> 32);
  const h = itemHeight(nm);
  if (h == 0) {
    const rc = nameCheck(i, <u32>(nm >>> 16) & 0xffff, <u32>nm & 0xffff);
    if (rc < 0) return rc;
    return (bufFlags(i) & F_NODE) != 0 ? E_EXT_NODE : 0;
  }
  if (i >= poolCount()) return E_RANGE;
  if ((<u32>nm & 0xffff) != 0 || h >= below || !isSealedNode(i, h)) return E_EXT_NODE;
  return 0;
}

/**
 * A new, empty node of height `h` (1..NODE_MAX_HEIGHT): a free buffer, owner kept, one
 * reference (the caller's). Returns its index or an error (E_EMPTY when the pool is empty).
 */
export function extNew(h: u32): i32 {
  if (h == 0 || h > NODE_MAX_HEIGHT) return E_ARG;
  const i = bufAlloc(OWNER_KEPT);
  if (i < 0) return i;
  const a = hdr(<u32>i);
  store<u32>(a, NODE_MAGIC);
  store<u8>(a + 4, <u8>h);
  store<u8>(a + 5, 0);
  store<u16>(a + 6, 0);
  store<u64>(a + 8, 0);
  bufFlagsSet(<u32>i, F_NODE, F_SEALED);
  return i;
}

/**
 * Appends a child to open node `node`: the data range (index, off, len) of a held buffer, or,
 * with `off` = ITEM_NODE | h and `len` 0, the sealed node `index` of height h below the node's.
 * The node takes a reference on the child and marks it kept. A data range is queued in the
 * flush table unless `flags` has PUSH_DURABLE. Returns the node's new child count, or an error,
 * and then nothing changed.
 */
export function extPush(node: u32, index: u32, off: u32, len: u32, flags: u32): i32 {
  if (node >= poolCount() || (bufFlags(node) & (F_NODE | F_SEALED)) != F_NODE) return E_EXT_NODE;
  const n = nodeCount(node);
  if (n >= NODE_MAX) return E_EXT_FULL;
  if (index == node || off > 0xffff || len > 0xffff) return E_ARG;
  const nm = (<u64>index << 32) | (<u64>off << 16) | <u64>len;
  const rc = itemCheck(nm, nodeHeight(node));
  if (rc < 0) return rc;
  const data = itemHeight(nm) == 0;
  if (data && len == 0) return E_ARG;
  const queue = data && (flags & PUSH_DURABLE) == 0;
  if (queue && flushRoom() == 0) return E_EXT_GROUP;
  if (<u32>bufRefCount(index) >= REF_MAX) return E_REFMAX;
  bufRef(index);
  if (<u32>bufOwner(index) != OWNER_KEPT) bufSetOwner(index, OWNER_KEPT);
  const a = hdr(node);
  store<u64>(a + NODE_HDR + (<usize>n << 3), nm);
  store<u16>(a + 6, <u16>(n + 1));
  store<u64>(a + 8, load<u64>(a + 8) + (data ? <u64>len : nodeBytes(index)));
  if (queue) flushAdd(bufAddr(index) + <usize>off, len);
  return <i32>(n + 1);
}

/**
 * Seals open node `node`: no more children; its header and items are queued in the flush
 * table. An empty node cannot be sealed. Returns its data bytes (as f64), or an error.
 */
export function extSeal(node: u32): f64 {
  if (node >= poolCount() || (bufFlags(node) & (F_NODE | F_SEALED)) != F_NODE) return E_EXT_NODE;
  const n = nodeCount(node);
  if (n == 0) return E_ARG;
  if (flushRoom() == 0) return E_EXT_GROUP;
  bufFlagsSet(node, F_SEALED, 0);
  flushAdd(hdr(node), NODE_HDR + (n << 3));
  return <f64>nodeBytes(node);
}

/**
 * Information about node `i`, by code: 0 height, 1 child count, 2 data bytes, 3 flags (1 node,
 * 3 sealed node), 4 memory offset of its items. -1 if `i` is not a node.
 */
export function extInfo(i: u32, code: u32): f64 {
  if (i >= poolCount() || (bufFlags(i) & F_NODE) == 0) return -1;
  switch (code) {
    case 0:
      return <f64>nodeHeight(i);
    case 1:
      return <f64>nodeCount(i);
    case 2:
      return <f64>nodeBytes(i);
    case 3:
      return (bufFlags(i) & F_SEALED) != 0 ? 3 : 1;
    case 4:
      return <f64>(hdr(i) + NODE_HDR);
  }
  return -1;
}

// ---------- recovery ----------

/**
 * Checks the tree under item `nm` as recovery reads it from the pool: a data range inside its
 * buffer, or a node whose magic, height (the item's, and below `below`), count and byte total
 * hold, recursively. Nothing is claimed. Returns the data bytes under it, or -1.
 */
export function treeCheck(nm: u64, below: u32): i64 {
  const i = <u32>(nm >>> 32);
  const h = itemHeight(nm);
  if (i >= poolCount()) return -1;
  if (h == 0) {
    const o = <u32>(nm >>> 16) & 0xffff;
    const l = <u32>nm & 0xffff;
    return o > BUF_SIZE || l > BUF_SIZE - o ? -1 : <i64>l;
  }
  if ((<u32>nm & 0xffff) != 0 || h >= below) return -1;
  const a = hdr(i);
  const n = nodeCount(i);
  if (load<u32>(a) != NODE_MAGIC || nodeHeight(i) != h || n == 0 || n > NODE_MAX) return -1;
  let total: i64 = 0;
  for (let k: u32 = 0; k < n; k++) {
    const b = treeCheck(nodeItem(i, k), h);
    if (b < 0) return -1;
    total += b;
  }
  return total == <i64>nodeBytes(i) ? total : -1;
}

/**
 * Claims the tree under item `nm` (checked by treeCheck) for a live record: the buffer gets
 * one reference (claimed as kept if it was free); a node claimed for the first time is marked
 * a sealed node and claims its children, while a node already claimed (shared by two objects)
 * only gains the reference: its children were claimed with it. Returns the buffers newly
 * claimed, E_REFMAX, or E_EXT_NODE when a buffer is named both as data and as a node (a
 * damaged pool: no consistent log state does that).
 */
export function treeClaim(nm: u64): i32 {
  const i = <u32>(nm >>> 32);
  const h = itemHeight(nm);
  if (bufOwner(i) == <i32>OWNER_FREE) {
    bufClaim(i, OWNER_KEPT);
    if (h == 0) return 1;
    bufFlagsSet(i, F_NODE | F_SEALED, 0);
    let claimed: i32 = 1;
    const n = nodeCount(i);
    for (let k: u32 = 0; k < n; k++) {
      const r = treeClaim(nodeItem(i, k));
      if (r < 0) return r;
      claimed += r;
    }
    return claimed;
  }
  if (((bufFlags(i) & F_NODE) != 0) != (h > 0)) return E_EXT_NODE;
  return bufRef(i) < 0 ? E_REFMAX : 0;
}

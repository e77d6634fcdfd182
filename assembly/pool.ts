// The packet buffer pool: fixed 2 KiB buffers in the PM region, addressed by index.
//
// Per buffer the core keeps (in its arena, volatile) one u32 of metadata: the owner state in
// bits 0-7, a scratch mark in bit 8 (used only by poolCheck), the node flag in bit 9 (the
// buffer is an extent node: it holds one reference on each buffer it names, dropped when the
// node is freed), the sealed flag in bit 10 (a complete node: immutable, persisted) and the
// reference count in bits 16-31. Free buffers sit on a LIFO stack (recently freed buffers are warm in cache); freePos
// maps a free buffer to its stack slot so that a specific buffer can be claimed in O(1)
// (recovery hands back buffers the log still references).
//
// Invariant, checked by poolCheck(): held[FREE] + held[NIC] + ... + held[KEPT] == count, the
// free stack holds exactly the FREE buffers once each, and every non-free buffer has ref >= 1.

import { arenaAlloc, arenaEnd } from "./arena";
import {
  BUF_SHIFT,
  BUF_SIZE,
  E_ARG,
  E_BOUNDS,
  E_CORRUPT,
  E_EMPTY,
  E_FREE,
  E_NOTFREE,
  E_RANGE,
  E_REFMAX,
  E_STATE,
  NODE_COUNT_AT,
  NODE_HDR,
  OWNER_COUNT,
  OWNER_FREE,
  REF_MAX,
} from "./layout";

let count: u32 = 0;
let base: usize = 0; // memory offset of buffer 0
let meta: usize = 0; // u32[count]
let freeStack: usize = 0; // u32[count]
let freePos: usize = 0; // u32[count]
let freeTop: u32 = 0;
let held: usize = 0; // u32[OWNER_COUNT]

const MARK: u32 = 0x100;
/** The buffer is an extent node (see layout.ts). */
export const F_NODE: u32 = 0x200;
/** The node is complete: no more children, its range was queued for persistence. */
export const F_SEALED: u32 = 0x400;

@inline function metaAt(i: u32): usize {
  return meta + (<usize>i << 2);
}
@inline function stateOf(m: u32): u32 {
  return m & 0xff;
}
@inline function refOf(m: u32): u32 {
  return m >>> 16;
}
@inline function heldAdd(owner: u32, d: i32): void {
  const p = held + (<usize>owner << 2);
  store<u32>(p, load<u32>(p) + d);
}
@inline function push(i: u32): void {
  store<u32>(freeStack + (<usize>freeTop << 2), i);
  store<u32>(freePos + (<usize>i << 2), freeTop);
  freeTop++;
}

/** Reserves the pool's metadata for `n` buffers in the arena. Call once, before poolAttach. */
export function poolReserve(n: u32): i32 {
  if (n == 0 || count != 0) return E_ARG;
  const bytes = <usize>n << 2;
  const a = arenaAlloc(bytes, 64);
  if (a < 0) return <i32>a;
  const b = arenaAlloc(bytes, 64);
  if (b < 0) return <i32>b;
  const c = arenaAlloc(bytes, 64);
  if (c < 0) return <i32>c;
  const h = arenaAlloc(OWNER_COUNT << 2, 64);
  if (h < 0) return <i32>h;
  meta = <usize>a;
  freeStack = <usize>b;
  freePos = <usize>c;
  held = <usize>h;
  count = n;
  return 0;
}

/**
 * Places buffer 0 at memory offset `at` (the PM buffer region, mapped by the host above the
 * arena) and marks every buffer free. Buffer 0 ends up on top of the free stack.
 */
export function poolAttach(at: usize): i32 {
  if (count == 0 || base != 0) return E_ARG;
  if (at < arenaEnd() || (at & 63) != 0) return E_ARG;
  const end = at + (<usize>count << BUF_SHIFT);
  if (end < at || end > (<usize>memory.size() << 16)) return E_BOUNDS;
  base = at;
  freeTop = 0;
  for (let i = count; i > 0; i--) {
    store<u32>(metaAt(i - 1), OWNER_FREE);
    push(i - 1);
  }
  store<u32>(held, count);
  return 0;
}

export function poolCount(): u32 {
  return count;
}
export function poolBase(): usize {
  return base;
}
export function poolFreeCount(): u32 {
  return freeTop;
}
/** Number of buffers in owner state `owner` (FREE included). */
export function poolHeld(owner: u32): i32 {
  if (owner >= OWNER_COUNT) return E_ARG;
  return <i32>load<u32>(held + (<usize>owner << 2));
}

/** Memory offset of buffer `i`'s first byte (no check: callers validate `i`). */
@inline export function bufAddr(i: u32): usize {
  return base + (<usize>i << BUF_SHIFT);
}

/** Takes one free buffer for `owner` with reference count 1. Returns its index or E_EMPTY. */
export function bufAlloc(owner: u32): i32 {
  if (owner == OWNER_FREE || owner >= OWNER_COUNT) return E_ARG;
  if (freeTop == 0) return E_EMPTY;
  freeTop--;
  const i = load<u32>(freeStack + (<usize>freeTop << 2));
  store<u32>(metaAt(i), owner | (1 << 16));
  heldAdd(OWNER_FREE, -1);
  heldAdd(owner, 1);
  return <i32>i;
}

/**
 * Takes `n` free buffers for `owner`, writing their indices as u32 at memory offset `out`.
 * All or nothing: returns n, or E_EMPTY (and takes none) if fewer than n are free.
 */
export function bufAllocBatch(owner: u32, n: u32, out: usize): i32 {
  if (owner == OWNER_FREE || owner >= OWNER_COUNT) return E_ARG;
  if (n > freeTop) return E_EMPTY;
  const word = owner | (1 << 16);
  for (let k: u32 = 0; k < n; k++) {
    freeTop--;
    const i = load<u32>(freeStack + (<usize>freeTop << 2));
    store<u32>(metaAt(i), word);
    store<u32>(out + (<usize>k << 2), i);
  }
  heldAdd(OWNER_FREE, -<i32>n);
  heldAdd(owner, <i32>n);
  return <i32>n;
}

/** Adds a reference to a held buffer. Returns the new count. */
export function bufRef(i: u32): i32 {
  if (i >= count) return E_RANGE;
  const p = metaAt(i);
  const m = load<u32>(p);
  if (stateOf(m) == OWNER_FREE) return E_FREE;
  if (refOf(m) >= REF_MAX) return E_REFMAX;
  store<u32>(p, m + (1 << 16));
  return <i32>refOf(m) + 1;
}

/**
 * Drops a reference. At zero the buffer returns to the free stack (a node first drops the
 * references it holds on its children). Returns the remaining count.
 */
export function bufUnref(i: u32): i32 {
  if (i >= count) return E_RANGE;
  const p = metaAt(i);
  const m = load<u32>(p);
  const s = stateOf(m);
  if (s == OWNER_FREE) return E_FREE;
  const r = refOf(m) - 1;
  if (r == 0) release(i, m);
  else store<u32>(p, m - (1 << 16));
  return <i32>r;
}

/** Frees buffer `i` (metadata `m`, count now zero); a node releases its children first. */
function release(i: u32, m: u32): void {
  if ((m & F_NODE) != 0) {
    // children hold one reference each from this node; heights are bounded (NODE_MAX_HEIGHT),
    // so the recursion is at most that deep
    const a = bufAddr(i);
    const n = <u32>load<u16>(a + NODE_COUNT_AT);
    for (let k: u32 = 0; k < n; k++) {
      const c = <u32>(load<u64>(a + NODE_HDR + (<usize>k << 3)) >>> 32);
      // a child whose count is already zero is being freed by the batch that freed this node
      if (c < count && refOf(load<u32>(metaAt(c))) > 0) bufUnref(c);
    }
  }
  store<u32>(metaAt(i), OWNER_FREE);
  heldAdd(stateOf(m), -1);
  heldAdd(OWNER_FREE, 1);
  push(i);
}

/** Sets or clears flag bits (F_NODE, F_SEALED) of a held buffer. */
export function bufFlagsSet(i: u32, set: u32, clear: u32): void {
  const p = metaAt(i);
  store<u32>(p, (load<u32>(p) & ~clear) | set);
}

/** The flag bits (F_NODE, F_SEALED) of buffer `i` (no range check: callers validate `i`). */
@inline export function bufFlags(i: u32): u32 {
  return load<u32>(metaAt(i)) & (F_NODE | F_SEALED);
}

/** 1 if buffer `i` is an extent node, 0 if not, or E_RANGE. */
export function bufIsNode(i: u32): i32 {
  if (i >= count) return E_RANGE;
  return (load<u32>(metaAt(i)) & F_NODE) != 0 ? 1 : 0;
}

/**
 * Drops one reference from each of the `n` buffers whose u32 indices are at memory offset
 * `ptr` (an index may repeat). Atomic: if any entry is out of range or would drop below zero,
 * nothing changes and the error is returned. Otherwise returns how many buffers became free.
 */
export function bufUnrefBatch(ptr: usize, n: u32): i32 {
  // Pass 1: take the references, undoing them if an entry is bad.
  for (let k: u32 = 0; k < n; k++) {
    const i = load<u32>(ptr + (<usize>k << 2));
    let err: i32 = 0;
    if (i >= count) err = E_RANGE;
    else {
      const m = load<u32>(metaAt(i));
      if (stateOf(m) == OWNER_FREE || refOf(m) == 0) err = E_FREE;
      else store<u32>(metaAt(i), m - (1 << 16));
    }
    if (err != 0) {
      for (let j: u32 = 0; j < k; j++) {
        const q = metaAt(load<u32>(ptr + (<usize>j << 2)));
        store<u32>(q, load<u32>(q) + (1 << 16));
      }
      return err;
    }
  }
  // Pass 2: buffers whose count reached zero go back to the free stack (once each).
  let freed: i32 = 0;
  for (let k: u32 = 0; k < n; k++) {
    const i = load<u32>(ptr + (<usize>k << 2));
    const p = metaAt(i);
    const m = load<u32>(p);
    if (stateOf(m) != OWNER_FREE && refOf(m) == 0) {
      release(i, m);
      freed++;
    }
  }
  return freed;
}

/** Moves a held buffer to another owner state (its references stay). Returns the old owner. */
export function bufSetOwner(i: u32, owner: u32): i32 {
  if (owner == OWNER_FREE || owner >= OWNER_COUNT) return E_ARG;
  if (i >= count) return E_RANGE;
  const p = metaAt(i);
  const m = load<u32>(p);
  const s = stateOf(m);
  if (s == OWNER_FREE) return E_FREE;
  store<u32>(p, (m & ~0xff) | owner);
  heldAdd(s, -1);
  heldAdd(owner, 1);
  return <i32>s;
}

/** Like bufSetOwner, but only if the buffer is currently held by `from`. */
export function bufMove(i: u32, from: u32, to: u32): i32 {
  if (i >= count) return E_RANGE;
  const s = stateOf(load<u32>(metaAt(i)));
  if (s == OWNER_FREE) return E_FREE;
  if (s != from) return E_STATE;
  return bufSetOwner(i, to);
}

/** Owner state of buffer `i`, or E_RANGE. */
export function bufOwner(i: u32): i32 {
  if (i >= count) return E_RANGE;
  return <i32>stateOf(load<u32>(metaAt(i)));
}

/** Reference count of buffer `i` (0 when free), or E_RANGE. */
export function bufRefCount(i: u32): i32 {
  if (i >= count) return E_RANGE;
  return <i32>refOf(load<u32>(metaAt(i)));
}

/**
 * Takes the specific free buffer `i` for `owner` (recovery: a buffer that persistent data
 * still names must never be handed out). E_NOTFREE if it is held already.
 */
export function bufClaim(i: u32, owner: u32): i32 {
  if (owner == OWNER_FREE || owner >= OWNER_COUNT) return E_ARG;
  if (i >= count) return E_RANGE;
  if (stateOf(load<u32>(metaAt(i))) != OWNER_FREE) return E_NOTFREE;
  // Swap-remove i from the free stack.
  const pos = load<u32>(freePos + (<usize>i << 2));
  freeTop--;
  const last = load<u32>(freeStack + (<usize>freeTop << 2));
  store<u32>(freeStack + (<usize>pos << 2), last);
  store<u32>(freePos + (<usize>last << 2), pos);
  store<u32>(metaAt(i), owner | (1 << 16));
  heldAdd(OWNER_FREE, -1);
  heldAdd(owner, 1);
  return 0;
}

/** 0 if (i, off, len) names bytes inside a held buffer; else E_RANGE, E_BOUNDS or E_FREE. */
export function nameCheck(i: u32, off: u32, len: u32): i32 {
  if (i >= count) return E_RANGE;
  if (off > BUF_SIZE || len > BUF_SIZE - off) return E_BOUNDS;
  if (stateOf(load<u32>(metaAt(i))) == OWNER_FREE) return E_FREE;
  return 0;
}

let checkDetail: i32 = 0;

/** Which check failed in the last poolCheck() (0 = none); the host names it in its error. */
export function poolCheckDetail(): i32 {
  return checkDetail;
}

/** Recounts everything and checks the pool invariant. Returns 0 or E_CORRUPT. O(count). */
export function poolCheck(): i32 {
  checkDetail = 0;
  // 1. per-state counts and reference counts
  let c0: u32 = 0,
    c1: u32 = 0,
    c2: u32 = 0,
    c3: u32 = 0,
    c4: u32 = 0;
  for (let i: u32 = 0; i < count; i++) {
    const m = load<u32>(metaAt(i));
    const s = stateOf(m);
    if ((m & MARK) != 0) return fail(1);
    if (s >= OWNER_COUNT) return fail(2);
    if (s == OWNER_FREE) {
      if (refOf(m) != 0 || (m & (F_NODE | F_SEALED)) != 0) return fail(3);
      c0++;
    } else {
      if (refOf(m) == 0) return fail(4);
      if (s == 1) c1++;
      else if (s == 2) c2++;
      else if (s == 3) c3++;
      else c4++;
    }
  }
  if (c0 != load<u32>(held)) return fail(5);
  if (c1 != load<u32>(held + 4)) return fail(6);
  if (c2 != load<u32>(held + 8)) return fail(7);
  if (c3 != load<u32>(held + 12)) return fail(8);
  if (c4 != load<u32>(held + 16)) return fail(9);
  if (c0 + c1 + c2 + c3 + c4 != count) return fail(10);
  if (freeTop != c0) return fail(11);
  // 2. the free stack holds each FREE buffer exactly once, and freePos agrees
  let bad: i32 = 0;
  for (let k: u32 = 0; k < freeTop; k++) {
    const i = load<u32>(freeStack + (<usize>k << 2));
    if (i >= count) {
      bad = 12;
      break;
    }
    const p = metaAt(i);
    const m = load<u32>(p);
    if (stateOf(m) != OWNER_FREE) {
      bad = 13;
      break;
    }
    if ((m & MARK) != 0) {
      bad = 14;
      break;
    }
    if (load<u32>(freePos + (<usize>i << 2)) != k) {
      bad = 15;
      break;
    }
    store<u32>(p, m | MARK);
  }
  // clear marks
  for (let k: u32 = 0; k < freeTop; k++) {
    const i = load<u32>(freeStack + (<usize>k << 2));
    if (i < count) {
      const p = metaAt(i);
      store<u32>(p, load<u32>(p) & ~MARK);
    }
  }
  if (bad != 0) return fail(bad);
  return 0;
}
function fail(d: i32): i32 {
  checkDetail = d;
  return E_CORRUPT;
}

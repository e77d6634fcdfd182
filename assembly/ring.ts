// netmap-style rings of slots shared by host and core. A ring lives in the arena: a 16-byte
// header {mask, head, tail, lane} then 2^k slots {u32 buf, u16 off, u16 len, u32 conn,
// u32 flags}; the app's rings have an address lane beside them (16 bytes per slot). One side produces (writes slot[tail & mask], then tail++), the other consumes
// (reads slot[head & mask], then head++); head and tail run free and wrap at 2^32, so
// tail - head is the number of filled slots.

import { arenaAlloc } from "./arena";
import {
  E_ARG,
  E_RING_EMPTY,
  E_RING_FULL,
  E_RANGE,
  E_STATE,
  OWNER_KEPT,
  RING_HDR,
  RING_HEAD,
  RING_MASK,
  RING_TAIL,
  RING_LANE,
  LANE_ROW,
  SLOT_BUF,
  SLOT_CONN,
  SLOT_FLAGS,
  SLOT_LEN,
  SLOT_OFF,
  SLOT_SIZE,
} from "./layout";
import { bufAlloc, bufOwner, bufSetOwner, poolCount } from "./pool";

/** Creates a ring of 2^log2 slots in the arena (set-up phase only). Returns its offset or an error. */
export function ringCreate(log2: u32): isize {
  return ringCreateWith(log2, false);
}
/** Creates a ring as ringCreate does, with an address lane if `lane` (APP-IN, APP-OUT). */
export function ringCreateWith(log2: u32, lane: bool): isize {
  if (log2 == 0 || log2 > 16) return E_ARG;
  const n: usize = <usize>1 << log2;
  const r = arenaAlloc(<usize>RING_HDR + n * <usize>SLOT_SIZE, 64);
  if (r < 0) return r;
  store<u32>(<usize>r + RING_MASK, <u32>n - 1);
  if (lane) {
    const l = arenaAlloc(n * <usize>LANE_ROW, 64);
    if (l < 0) return l;
    store<u32>(<usize>r + RING_LANE, <u32>l);
  }
  return r;
}
/** The lane row of the slot at free-running position `pos` (0 if the ring has no lane). */
@inline export function ringLaneRow(r: usize, pos: u32): usize {
  const l = <usize>load<u32>(r + RING_LANE);
  return l == 0 ? 0 : l + (<usize>(pos & load<u32>(r + RING_MASK)) << 4);
}
/** The lane row of slot address `s` of ring `r` (as ringShift returned it). */
@inline export function ringLaneOfSlot(r: usize, s: usize): usize {
  const l = <usize>load<u32>(r + RING_LANE);
  return l == 0 ? 0 : l + (s - r - RING_HDR);
}

@inline export function ringSize(r: usize): u32 {
  return load<u32>(r + RING_MASK) + 1;
}
@inline export function ringHead(r: usize): u32 {
  return load<u32>(r + RING_HEAD);
}
@inline export function ringTail(r: usize): u32 {
  return load<u32>(r + RING_TAIL);
}
/** Filled slots. */
@inline export function ringCount(r: usize): u32 {
  return load<u32>(r + RING_TAIL) - load<u32>(r + RING_HEAD);
}
/** Empty slots. */
@inline export function ringSpace(r: usize): u32 {
  return ringSize(r) - ringCount(r);
}
/** Address of the slot at free-running position `pos`. */
@inline export function ringSlot(r: usize, pos: u32): usize {
  return r + RING_HDR + (<usize>(pos & load<u32>(r + RING_MASK)) << 4);
}

/** Appends a slot. Returns 0 or E_RING_FULL. */
export function ringPush(r: usize, buf: u32, off: u32, len: u32, conn: u32, flags: u32): i32 {
  const tail = load<u32>(r + RING_TAIL);
  if (tail - load<u32>(r + RING_HEAD) > load<u32>(r + RING_MASK)) return E_RING_FULL;
  const s = ringSlot(r, tail);
  store<u32>(s + SLOT_BUF, buf);
  store<u16>(s + SLOT_OFF, <u16>off);
  store<u16>(s + SLOT_LEN, <u16>len);
  store<u32>(s + SLOT_CONN, conn);
  store<u32>(s + SLOT_FLAGS, flags);
  store<u32>(r + RING_TAIL, tail + 1);
  return 0;
}

/**
 * Removes the oldest slot, returning the address of its (still readable) contents, valid until
 * the producer wraps round to it; or 0 if the ring is empty.
 */
export function ringShift(r: usize): usize {
  const head = load<u32>(r + RING_HEAD);
  if (head == load<u32>(r + RING_TAIL)) return 0;
  store<u32>(r + RING_HEAD, head + 1);
  return ringSlot(r, head);
}

/** Advances head by n filled slots (a consumer that read them in place). */
export function ringAdvance(r: usize, n: u32): i32 {
  if (n > ringCount(r)) return E_RING_EMPTY;
  store<u32>(r + RING_HEAD, load<u32>(r + RING_HEAD) + n);
  return 0;
}

@inline export function slotBuf(s: usize): u32 {
  return load<u32>(s + SLOT_BUF);
}
@inline export function slotOff(s: usize): u32 {
  return <u32>load<u16>(s + SLOT_OFF);
}
@inline export function slotLen(s: usize): u32 {
  return <u32>load<u16>(s + SLOT_LEN);
}
@inline export function slotConn(s: usize): u32 {
  return load<u32>(s + SLOT_CONN);
}
@inline export function slotFlags(s: usize): u32 {
  return load<u32>(s + SLOT_FLAGS);
}

/**
 * Buffer swap (PASTE): the buffer in the filled slot at free-running position `pos` becomes
 * KEPT by the application, and a fresh buffer with the same owner takes its place in the slot
 * (offset 0, length 0), so the ring never loses capacity. Returns the kept buffer's index, or
 * an error (nothing changes on error).
 */
export function ringSwap(r: usize, pos: u32): i32 {
  if (pos - load<u32>(r + RING_HEAD) >= ringCount(r)) return E_RANGE;
  const s = ringSlot(r, pos);
  const old = load<u32>(s + SLOT_BUF);
  if (old >= poolCount()) return E_RANGE;
  const owner = bufOwner(old);
  if (owner <= 0 || <u32>owner == OWNER_KEPT) return owner < 0 ? owner : E_STATE;
  const fresh = bufAlloc(<u32>owner);
  if (fresh < 0) return fresh;
  bufSetOwner(old, OWNER_KEPT);
  store<u32>(s + SLOT_BUF, <u32>fresh);
  store<u16>(s + SLOT_OFF, 0);
  store<u16>(s + SLOT_LEN, 0);
  return <i32>old;
}

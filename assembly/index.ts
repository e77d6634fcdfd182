// pmstack core: the Wasm module's exports. The core is pure: no clock, no I/O. The host owns
// the memory, maps the PM file into it and calls these functions.

export { arenaAlloc, arenaBase, arenaEnd, arenaSeal, arenaSealed } from "./arena";
export {
  poolReserve,
  poolAttach,
  poolCount,
  poolBase,
  poolFreeCount,
  poolHeld,
  poolCheck,
  poolCheckDetail,
  bufAlloc,
  bufAllocBatch,
  bufRef,
  bufUnref,
  bufUnrefBatch,
  bufSetOwner,
  bufMove,
  bufOwner,
  bufRefCount,
  bufClaim,
  nameCheck,
} from "./pool";
export { ringCreate, ringPush, ringShift, ringAdvance, ringSwap } from "./ring";
import { bufAddr as _bufAddr, poolCount as _count } from "./pool";
import { namePack, nameIndex, nameOffset, nameLength } from "./names";

/** Memory offset of buffer i, or 0 if i is out of range. */
export function bufAddress(i: u32): usize {
  return i < _count() ? _bufAddr(i) : 0;
}

/** Packs a name (checked by the caller). Exposed for tests of the 64-bit name format. */
export function namePack64(index: u32, off: u32, len: u32): u64 {
  return namePack(index, off, len);
}
export function nameUnpackIndex(n: u64): u32 {
  return nameIndex(n);
}
export function nameUnpackOffset(n: u64): u32 {
  return nameOffset(n);
}
export function nameUnpackLength(n: u64): u32 {
  return nameLength(n);
}

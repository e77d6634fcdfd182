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
  bufIsNode,
} from "./pool";
export { ringCreate, ringPush, ringShift, ringAdvance, ringSwap } from "./ring";
import { bufAddr as _bufAddr, poolCount as _count } from "./pool";
import { namePack, nameIndex, nameOffset, nameLength } from "./names";

/**
 * Memory offset of buffer i, or 0 if i is out of range. An f64, so that an offset above 2 GiB
 * (a large pool) reaches JavaScript as the positive number it is, not as a negative i32.
 */
export function bufAddress(i: u32): f64 {
  return i < _count() ? <f64>_bufAddr(i) : 0;
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

// --- stack exports ---
export {
  stackConfig, stackConfigDefault, stackConfigMin, stackConfigMax, stackConfigValue, stackScratch, stackInit, stackRing, stackStats, stackStatCount, stackSetAddr, stackAnnounce,
  stackArpAdd, stackArpLookup, stackPoll, stackFragHeld, stackNeighAdd, stackNeighLookup, stackIp6Addr, stackIp6State,
} from "./stack";
export { csumTest } from "./net/csum";
export { tcpState, tcpInfo, tcpConnCount, tcpNodesUsed, tcpAddr } from "./tcp/info";

// --- pm log exports ---
// The write-ahead log and index in the metadata region (assembly/pm/log.ts, docs/api/log.md).
export {
  logReserve,
  logAttach,
  logFormat,
  logRecover,
  logAppend,
  logFind,
  logSeal,
  logDurable,
  logSlotPair,
  logCompact,
  logIterStart,
  logIterNext,
  logKeyBuf,
  logNamesBuf,
  logTable,
  logInfo,
} from "./pm/log";
// Extent nodes: objects larger than one record's names (assembly/pm/extent.ts).
export { extNew, extPush, extSeal, extInfo } from "./pm/extent";
import { crc32c as _crc32c } from "./pm/crc32c";

/** CRC-32C of memory [p, p+n) (exposed to test the core's checksum against the host's). */
export function pmCrc32c(p: usize, n: usize): u32 {
  return _crc32c(p, n);
}

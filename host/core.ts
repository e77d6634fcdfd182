// Loads the Wasm core. One compiled module per memory kind is cached; each Pool gets its own
// instance and memory. The core imports its memory (env.memory) and may call env.abort when an
// internal assertion fails, which the host turns into a CoreTrapError. Its bytes come from
// host/core-bytes.ts: the files beside the bundle in Node and Deno, embedded in the browser's.

import { MAX_PAGES } from "./abi.js";
import { corePath, readCore } from "./core-bytes.js";
import { CoreTrapError } from "./errors.js";
import { countCalls, countingCalls } from "./calls.js";

// The core's exports, typed once here and grouped as assembly/index.ts exports them (numeric
// ABI: indices and memory offsets in, counts or negative E_* errors out). How values cross the
// boundary: i32/u32 arrive as a JS number that is a signed i32, so a u32 that can exceed 2^31
// (an address, a configuration value) needs `>>> 0`; u64 arrives as a bigint; f64 as a number
// (the core returns f64 where a value may be large or fractional: addresses, times, sizes).
// Memory offsets (`usize`) below the arena's end are small positive numbers.

/** The set-up arena (assembly/arena.ts): the core's tables, below the PM mapping. */
export interface ArenaExports {
  /** Offset of `size` bytes aligned to `align`, or E_SEALED / E_NOMEM. */
  arenaAlloc(size: number, align: number): number;
  arenaBase(): number;
  arenaEnd(): number;
  arenaSeal(): void;
  /** 1 once sealed, else 0. */
  arenaSealed(): number;
}

/** The buffer pool (assembly/pool.ts): owners, references, the free stack, names. */
export interface PoolExports {
  poolReserve(n: number): number;
  poolAttach(at: number): number;
  poolCount(): number;
  poolBase(): number;
  poolFreeCount(): number;
  poolHeld(owner: number): number;
  poolCheck(): number;
  poolCheckDetail(): number;
  bufAlloc(owner: number): number;
  bufAllocBatch(owner: number, n: number, out: number): number;
  bufRef(i: number): number;
  bufUnref(i: number): number;
  bufUnrefBatch(ptr: number, n: number): number;
  bufSetOwner(i: number, owner: number): number;
  bufMove(i: number, from: number, to: number): number;
  bufOwner(i: number): number;
  bufRefCount(i: number): number;
  bufClaim(i: number, owner: number): number;
  bufIsNode(i: number): number;
  /** Memory offset of buffer i (an f64: it may exceed 2 GiB), or 0 if out of range. */
  bufAddress(i: number): number;
  nameCheck(i: number, off: number, len: number): number;
}

/** Rings (assembly/ring.ts); the host reads and writes slots directly through host/ring.ts. */
export interface RingExports {
  ringCreate(log2: number): number;
  ringPush(r: number, buf: number, off: number, len: number, conn: number, flags: number): number;
  ringShift(r: number): number;
  ringAdvance(r: number, n: number): number;
  ringSwap(r: number, pos: number): number;
}

/** The 64-bit name form (assembly/names.ts), for tests. */
export interface NameExports {
  namePack64(index: number, off: number, len: number): bigint;
  nameUnpackIndex(n: bigint): number;
  nameUnpackOffset(n: bigint): number;
  nameUnpackLength(n: bigint): number;
}

/** The network stack (assembly/stack.ts, net/, tcp/; docs/core-abi.md). */
export interface StackExports {
  /** The 256-byte configuration block (offsets: CFG in host/stack-abi.ts). */
  stackConfig(): number;
  /** A configuration field's default (0: none), bound and value as the core reads it (u32: `>>> 0`). */
  stackConfigDefault(off: number): number;
  stackConfigMin(off: number): number;
  stackConfigMax(off: number): number;
  stackConfigValue(off: number): number;
  stackScratch(): number;
  /** 0, E_ARG (called a second time), or E_NOMEM / E_SEALED (the tables do not fit the arena). */
  stackInit(): number;
  /** Ring address: 0 RX, 1 TX, 2 APP-IN, 3 APP-OUT. */
  stackRing(which: number): number;
  stackStats(): number;
  stackStatCount(): number;
  stackSetAddr(ip: number, mask: number, gw: number): void;
  stackAnnounce(): void;
  stackArpAdd(ip: number, mac: number): void;
  stackArpLookup(ip: number): number;
  /** One turn at `nowMs`; the next deadline (ms) or Infinity. */
  stackPoll(nowMs: number): number;
  stackFragHeld(): number;
  csumTest(p: number, len: number): number;
  tcpState(id: number): number;
  /** One field (INFO in host/stack-abi.ts) of a connection, -1 for a bad id or field. */
  tcpInfo(id: number, field: number): number;
  tcpConnCount(): number;
  tcpNodesUsed(): number;
  /** Memory offset of our k-th IPv6 address (16 bytes; 0 link-local, 1 the configured one), 0 if none. */
  stackIp6Addr(k: number): number;
  /** That address's state: 0 none, 1 tentative (DAD running), 2 preferred, 3 duplicate (not used). */
  stackIp6State(k: number): number;
  /** A static neighbour entry: 16-byte address (IPv4-mapped for IPv4) at `addr`, 6-byte MAC at `mac`. */
  stackNeighAdd(addr: number, mac: number): void;
  /** 1 if the 16-byte address at `addr` is resolved. */
  stackNeighLookup(addr: number): number;
  /** Copies a connection's local (which 0) or remote (1) 16-byte address to `out`: 4 or 6, 0 for an unknown id. */
  tcpAddr(id: number, which: number, out: number): number;
}

/** The write-ahead log and index in the metadata region (assembly/pm/log.ts). */
export interface LogExports {
  logReserve(): number;
  logAttach(at: number, bytes: number): number;
  logFormat(step: number): number;
  logRecover(maxGen: number): number;
  logAppend(keyLen: number, nNames: number, type: number, tag: number): number;
  logFind(keyLen: number): number;
  logSeal(): number;
  logDurable(upTo: number): number;
  logSlotPair(): number;
  logCompact(target: number): number;
  logIterStart(): void;
  logIterNext(): number;
  logKeyBuf(): number;
  logNamesBuf(): number;
  logTable(): number;
  logInfo(code: number): number;
}

/** Extent nodes: objects larger than one record's names (assembly/pm/extent.ts). */
export interface ExtentExports {
  extNew(height: number): number;
  extPush(node: number, index: number, off: number, len: number, flags: number): number;
  extSeal(node: number): number;
  extInfo(node: number, code: number): number;
}

/**
 * Every export of the core (assembly/index.ts). The stack and the log are always compiled in;
 * Stack and PmLog still check that a core loaded from elsewhere (`instantiateCore({ wasmPath })`)
 * has them before using them.
 */
export interface CoreExports
  extends ArenaExports, PoolExports, RingExports, NameExports, StackExports, LogExports, ExtentExports {
  /** CRC-32C of memory [p, p+n) (u32: `>>> 0`). */
  pmCrc32c(p: number, n: number): number;
}

export interface CoreInstance {
  memory: WebAssembly.Memory;
  exports: CoreExports;
  shared: boolean;
}

const modules = new Map<string, WebAssembly.Module>();

/** Instantiates the core over a fresh memory (2 pages, growable to 4 GiB). */
export function instantiateCore(opts: { shared?: boolean; wasmPath?: string } = {}): CoreInstance {
  const shared = opts.shared ?? false;
  const file = opts.wasmPath ?? corePath(shared);
  let mod = modules.get(file);
  if (!mod) {
    mod = new WebAssembly.Module(readCore(file));
    modules.set(file, mod);
  }
  const memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared } as WebAssembly.MemoryDescriptor);
  const abort = (msg: number, file: number, line: number, col: number) => {
    throw new CoreTrapError(
      "ECORE",
      `pmstack core aborted: ${readAsString(memory, msg)} at ${readAsString(memory, file)}:${line}:${col}`,
    );
  };
  const inst = new WebAssembly.Instance(mod, { env: { memory, abort } });
  const exports = inst.exports as unknown as CoreExports;
  return { memory, exports: countingCalls() ? countCalls("wasm", exports) : exports, shared };
}

/** Reads an AssemblyScript string (UTF-16LE, byte length in the header word before it). */
function readAsString(memory: WebAssembly.Memory, ptr: number): string {
  if (!ptr) return "?";
  const u8 = new Uint8Array(memory.buffer);
  if (ptr < 4 || ptr > u8.length) return "?";
  const len = new DataView(memory.buffer).getUint32(ptr - 4, true);
  if (ptr + len > u8.length) return "?";
  let s = "";
  for (let i = 0; i + 1 < len; i += 2) s += String.fromCharCode(u8[ptr + i]! | (u8[ptr + i + 1]! << 8));
  return s;
}

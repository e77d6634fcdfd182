// Loads the Wasm core. One compiled module per memory kind is cached; each Pool gets its own
// instance and memory. The core imports its memory (env.memory) and may call env.abort when an
// internal assertion fails, which the host turns into a CoreTrapError.

import { readFileSync } from "node:fs";
import { MAX_PAGES } from "./abi.js";
import { CoreTrapError } from "./errors.js";

/** The core's exports (numeric ABI: indices and memory offsets in, counts or -errors out). */
export interface CoreExports {
  arenaAlloc(size: number, align: number): number;
  arenaBase(): number;
  arenaEnd(): number;
  arenaSeal(): void;
  arenaSealed(): number;
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
  bufAddress(i: number): number;
  nameCheck(i: number, off: number, len: number): number;
  ringCreate(log2: number): number;
  ringPush(r: number, buf: number, off: number, len: number, conn: number, flags: number): number;
  ringShift(r: number): number;
  ringAdvance(r: number, n: number): number;
  ringSwap(r: number, pos: number): number;
  namePack64(index: number, off: number, len: number): bigint;
  nameUnpackIndex(n: bigint): number;
  nameUnpackOffset(n: bigint): number;
  nameUnpackLength(n: bigint): number;
  [name: string]: unknown;
}

export interface CoreInstance {
  memory: WebAssembly.Memory;
  exports: CoreExports;
  shared: boolean;
}

const modules = new Map<string, WebAssembly.Module>();

function wasmPath(shared: boolean): string {
  return new URL(shared ? "./core-shared.wasm" : "./core.wasm", import.meta.url).pathname;
}

/** Instantiates the core over a fresh memory (2 pages, growable to 4 GiB). */
export function instantiateCore(opts: { shared?: boolean; wasmPath?: string } = {}): CoreInstance {
  const shared = opts.shared ?? false;
  const file = opts.wasmPath ?? wasmPath(shared);
  let mod = modules.get(file);
  if (!mod) {
    mod = new WebAssembly.Module(readFileSync(file));
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
  return { memory, exports: inst.exports as unknown as CoreExports, shared };
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

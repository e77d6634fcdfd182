// Loads the Node-API addon (native-host/, built to build/pmstack_native.node). Node loads it
// with require(); Deno loads the same file through node:module's createRequire when run with
// -A or --allow-ffi.

import { createRequire } from "node:module";
import { PmstackError } from "./errors.js";

export type PersistMode = "clwb" | "clflushopt" | "clflush" | "msync" | "strict";
/** "strict" (tests): MAP_PRIVATE, stores reach the file only through persist (pwrite). */
export type MapMode = "auto" | "msync" | "clwb" | "clflushopt" | "strict";

export interface FileInfo {
  fd: number;
  size: number;
  medium: string;
  dax?: boolean;
}
export interface MapResult {
  handle: object;
  persistMode: PersistMode;
  dax: boolean;
}
export interface Native {
  create(path: string, size: number, header: Uint8Array): FileInfo;
  open(path: string): FileInfo;
  pread(fd: number, into: Uint8Array, offset: number): number;
  close(fd: number): void;
  map(
    memory: WebAssembly.Memory,
    view: Uint8Array,
    memOffset: number,
    fd: number,
    length: number,
    mode: MapMode,
  ): MapResult;
  persist(handle: object, memOffset: number, length: number): void;
  persistBatch(handle: object, ranges: Uint32Array, count: number): number;
  persistRanges(handle: object, tableMemOffset: number, count: number): number;
  unmap(handle: object): void;
  cpuFeatures(): { clwb: boolean; clflushopt: boolean; clflush: boolean };
}

let cached: Native | undefined;

/** The addon, loaded once. `path` overrides where it is looked for. */
export function native(path?: string): Native {
  if (cached && !path) return cached;
  const file = path ?? new URL("./pmstack_native.node", import.meta.url).pathname;
  try {
    const mod = createRequire(import.meta.url)(file) as Native;
    if (!path) cached = mod;
    return mod;
  } catch (e) {
    throw new PmstackError(
      "ENATIVE",
      `pmstack: cannot load the native addon ${file}: ${(e as Error).message}. ` +
        "Run `npm install` (it builds the addon); under Deno, run with -A or --allow-ffi.",
      { cause: e },
    );
  }
}

// Where the core's bytes come from in Node and Deno: the .wasm files beside the bundle, read
// synchronously, so that a pool opens without waiting. The browser build swaps this module for
// host/browser/core-bytes.ts, which has them embedded in the bundle.

import { readFileSync } from "node:fs";

/** The path of the core beside the bundle: core.wasm, or core-shared.wasm for a shared memory. */
export function corePath(shared: boolean): string {
  return new URL(shared ? "./core-shared.wasm" : "./core.wasm", import.meta.url).pathname;
}

/** The bytes of the core at `file` (corePath(), or a caller's wasmPath). */
export function readCore(file: string): Uint8Array<ArrayBuffer> {
  return readFileSync(file);
}

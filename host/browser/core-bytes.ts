// host/core-bytes.ts in the browser build: the core is embedded in the bundle (esbuild's binary
// loader: base64 in the bundle, decoded once at load), both kinds, so that a pool instantiates
// synchronously as in Node, with no fetch and no URL to configure. The core is small (about
// 75 KB each), well under what browsers compile synchronously on a page's main thread.

import { PmstackError } from "../errors.js";
import plain from "../../build/core.wasm";
import shared from "../../build/core-shared.wasm";

const EMBEDDED: Record<string, Uint8Array<ArrayBuffer>> = { "core.wasm": plain, "core-shared.wasm": shared };

/** The embedded core's name: core.wasm, or core-shared.wasm for a shared memory. */
export function corePath(shared: boolean): string {
  return shared ? "core-shared.wasm" : "core.wasm";
}

/** The embedded core's bytes; a browser has no file to read another (a wasmPath) from. */
export function readCore(file: string): Uint8Array<ArrayBuffer> {
  const bytes = EMBEDDED[file];
  if (!bytes)
    throw new PmstackError(
      "EINVAL",
      `pmstack: cannot load the core from ${file}: the browser build has only its embedded core.wasm and core-shared.wasm`,
    );
  return bytes;
}

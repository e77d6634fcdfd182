// Runs build/pmstack-replay.wasm under the runtime's built-in WASI (node:wasi; Deno 2 provides
// the same module): `node wasi/run.mjs [options] INPUT.pcap OUTPUT.pcap`, or
// `deno run --allow-read --allow-write wasi/run.mjs ...`. The current directory is the module's
// one pre-opened directory ("."), so file names are relative to it (as with `wasmtime --dir .`).
// Exits with the module's exit status. docs/wasi.md.
import { WASI } from "node:wasi";
import { readFileSync } from "node:fs";
import process from "node:process";

const wasm = process.env.PMSTACK_REPLAY_WASM ?? new URL("../build/pmstack-replay.wasm", import.meta.url);
const wasi = new WASI({
  version: "preview1",
  args: ["pmstack-replay", ...process.argv.slice(2)],
  env: {},
  preopens: { ".": process.cwd() },
  returnOnExit: true,
});
const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(wasm)), wasi.getImportObject());
process.exitCode = wasi.start(instance);

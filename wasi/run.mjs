// Runs build/pmstack-replay.wasm under the runtime's built-in WASI (node:wasi; Deno 2 provides
// the same module): `node wasi/run.mjs [options] INPUT.pcap OUTPUT.pcap`, or
// `deno run --allow-read --allow-write --allow-env wasi/run.mjs ...`. The module gets two
// pre-opened directories: the current one as "." (relative names) and the root as "/" (absolute
// names). Exits with the module's exit status. docs/wasi.md.
import { WASI } from "node:wasi";
import { readFileSync } from "node:fs";
import process from "node:process";

const wasm = process.env.PMSTACK_REPLAY_WASM ?? new URL("../build/pmstack-replay.wasm", import.meta.url);
const wasi = new WASI({
  version: "preview1",
  args: ["pmstack-replay", ...process.argv.slice(2)],
  env: {},
  preopens: { ".": process.cwd(), "/": "/" },
  returnOnExit: true,
});
const instance = new WebAssembly.Instance(new WebAssembly.Module(readFileSync(wasm)), wasi.getImportObject());
process.exitCode = wasi.start(instance);

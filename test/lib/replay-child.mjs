// One run of build/pmstack-replay.wasm under node:wasi, in a process of its own:
// `node replay-child.mjs JSON` with JSON = { args, preopens, stdin? (a file for fd 0) }. stdout and
// stderr are this process's; the exit status is the module's, or 99 with "TRAP:" on stderr if
// the module trapped instead of exiting. One instance per process: Node 20's node:wasi aborts
// or crashes when the garbage collector destroys WASI instances while another one runs a call
// (uv_mutex_destroy of a held lock in uvwasi_fd_table_free), so a test never makes many in one
// process.
import { WASI } from "node:wasi";
import { openSync, readFileSync } from "node:fs";

const WASM = new URL("../../build/pmstack-replay.wasm", import.meta.url);
const o = JSON.parse(process.argv[2]);
const wasi = new WASI({
  version: "preview1",
  args: ["pmstack-replay", ...o.args],
  env: {},
  preopens: o.preopens ?? {},
  returnOnExit: true,
  stdin: o.stdin ? openSync(o.stdin, "r") : 0,
});
try {
  process.exitCode = wasi.start(
    new WebAssembly.Instance(new WebAssembly.Module(readFileSync(WASM)), wasi.getImportObject()),
  );
} catch (e) {
  process.stderr.write(`TRAP: ${e?.stack ?? e}\n`);
  process.exitCode = 99;
}

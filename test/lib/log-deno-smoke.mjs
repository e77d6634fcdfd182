// The log under Deno (and Node): append, commit, reopen, in strict mode, with plain and shared
// memory. Run: deno run -A test/lib/log-deno-smoke.mjs <dir>   (or node ... <dir>; or deno
// without --allow-ffi, on the file adapter: deno run --allow-read --allow-write ... <disk dir>)
import { PmLog } from "../../build/index.js";

const dir = globalThis.Deno ? globalThis.Deno.args[0] : process.argv[2];
const runtime = globalThis.Deno ? "deno" : "node";
const out = {};
for (const shared of [false, true]) {
  const path = `${dir}/log-${runtime}-${shared ? "shared" : "plain"}.pm`;
  const opts = { buffers: 64, shared, mode: "strict" };
  const log = PmLog.openFile(path, opts);
  const pool = log.pool;
  for (let k = 0; k < 10; k++) {
    const i = pool.alloc();
    const bytes = new TextEncoder().encode(`${runtime} ${shared} ${k}`);
    pool.view(i, 5, bytes.length).set(bytes);
    log.append(`key${k}`, [pool.name(i, 5, bytes.length)]);
    pool.free(i);
  }
  log.delete("key3");
  log.commit();
  log.append("lost", [pool.name(pool.alloc(), 0, 1)]); // never committed
  pool.close();
  const again = PmLog.openFile(path, opts);
  const text = new TextDecoder().decode(again.views("key7")[0].slice());
  if (text !== `${runtime} ${shared} 7`) throw new Error(`read back ${JSON.stringify(text)}`);
  if (again.has("key3") || again.has("lost")) throw new Error("a deleted or uncommitted key came back");
  out[shared ? "shared" : "plain"] = {
    size: again.size,
    kept: again.pool.check().kept,
    text,
    persistence: again.pool.persistence,
  };
  again.pool.close();
}
console.log("LOG SMOKE OK " + JSON.stringify(out));

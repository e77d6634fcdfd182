// Deno smoke test: the same build (Wasm core, Node-API addon, host bundle) under Deno.
// Run: deno run -A test/deno/smoke.mjs <dir>
import { Pool } from "../../build/index.js";

const dir = Deno.args[0];
const out = {};
for (const shared of [false, true]) {
  const path = `${dir}/deno-${shared ? "shared" : "plain"}.pm`;
  const pool = Pool.create(path, { buffers: 256, shared });
  const i = pool.alloc();
  const bytes = new TextEncoder().encode(`deno ${shared}`);
  pool.view(i, 10, bytes.length).set(bytes);
  pool.keep(i);
  pool.persist(i, 10, bytes.length);
  pool.check();
  pool.close();
  const again = Pool.open(path, { shared });
  again.claim(i);
  const text = new TextDecoder().decode(again.view(i, 10, bytes.length).slice());
  if (text !== `deno ${shared}`) throw new Error(`read back ${JSON.stringify(text)}`);
  out[shared ? "shared" : "plain"] = { medium: again.medium, persistMode: again.persistMode, text };
  again.close();
}
const v = Pool.volatile({ buffers: 64 });
v.freeBatch(v.allocBatch(64));
v.check();
console.log("DENO SMOKE OK " + JSON.stringify(out));

// The example from docs/api/pool.md: write named buffers, persist them in one batch, reopen
// and read them back by name. Run: node examples/pool.mjs [path]
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Pool, packName, unpackName } from "pmstack";

const path = process.argv[2] ?? "data/example.pm";
mkdirSync(dirname(path), { recursive: true });

const pool = Pool.openOrCreate(path, { buffers: 4096 });
const names = [];
for (const text of ["one", "two"]) {
  const i = pool.alloc();
  const bytes = new TextEncoder().encode(text);
  pool.view(i, 0, bytes.length).set(bytes);
  pool.keep(i);
  names.push(pool.name(i, 0, bytes.length));
}
pool.persistBatch(names); // one fence (or msync run) for both
const stored = names.map(packName); // what a log record would hold
console.log(`persisted ${names.length} buffers with ${pool.persistMode} on ${pool.medium}`);
pool.close();

// after a crash or restart
const again = Pool.open(path);
for (const n of stored.map(unpackName)) {
  again.claim(n.index); // recovery: reserve what the log names
  console.log(`(${n.index}, ${n.offset}, ${n.length}) = ${new TextDecoder().decode(again.viewName(n))}`);
  again.free(n.index); // done with the example's data
}
again.close();

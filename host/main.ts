// The pool demo (`node build/main.js [PATH]`): opens (or creates) the pool at
// ./data/pmstack.pm, writes named buffers, persists them, reads them back, and says what the
// pool is and which persistence step it uses.

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { Pool, PmstackError, type BufferName } from "./index.js";

const DEFAULT_PATH = "data/pmstack.pm";
const DEFAULT_BUFFERS = 4096;

function main(argv: string[]): number {
  const path = argv[0] ?? process.env.PMSTACK_POOL ?? DEFAULT_PATH;
  mkdirSync(dirname(path), { recursive: true });
  const pool = Pool.openOrCreate(path, { buffers: DEFAULT_BUFFERS });
  try {
    console.log(pool.describe());
    const records = [
      "hello, persistent memory",
      "named buffers survive restarts",
      `written at ${new Date().toISOString()}`,
    ];
    const names: BufferName[] = [];
    const enc = new TextEncoder();
    for (const r of records) {
      const i = pool.alloc();
      const bytes = enc.encode(r);
      pool.view(i, 0, bytes.length).set(bytes);
      pool.keep(i);
      names.push(pool.name(i, 0, bytes.length));
    }
    const t0 = performance.now();
    pool.persistBatch(names);
    const us = ((performance.now() - t0) * 1000).toFixed(1);
    const dec = new TextDecoder();
    for (const n of names)
      console.log(`  (${n.index}, ${n.offset}, ${n.length}) -> ${JSON.stringify(dec.decode(pool.viewName(n)))}`);
    console.log(
      `persisted ${names.length} named buffers in one batch (${us} us, ${pool.stats.msyncCalls} msync calls)`,
    );
    for (const n of names) pool.free(n.index);
    pool.check();
    console.log(pool.describe());
    return 0;
  } finally {
    pool.close();
  }
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  if (e instanceof PmstackError) {
    console.error(e.message);
    process.exitCode = 1;
  } else throw e;
}

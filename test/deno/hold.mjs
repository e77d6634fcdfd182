// Opens (creating) a pool, prints "HOLD <persistence>" and keeps it open until stdin closes, then
// writes a byte pattern to buffer 0 (persisted) and closes. test/deno.test.mjs runs it under Deno
// without --allow-ffi (the file adapter) to show that its flock keeps the addon out, and that
// Node reads what it wrote. Run: deno run --allow-read --allow-write test/deno/hold.mjs <path>
import { Pool } from "../../build/index.js";

const pool = Pool.openOrCreate(Deno.args[0], { buffers: 16 });
console.log(`HOLD ${pool.persistence}`);
for await (const _ of Deno.stdin.readable); // the parent ends stdin when it has checked the lock
const i = pool.alloc();
pool.view(i, 0, 4).set([0xde, 0x40, 0x0f, 0xf1]);
pool.keep(i);
pool.persist(i, 0, 4);
pool.close();
console.log(`DONE ${i}`);

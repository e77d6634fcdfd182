// Child process for the crash test: appends named buffers to a pool as fast as it can, and
// after each persistBatch returns prints the names it made durable ("P idx off len seq").
// Names it wrote but did not persist are printed as "U ...". The parent kills it with SIGKILL.
// A 4th argument picks the pool's persistence adapter ("mmap", "file").
import { Pool } from "../../build/index.js";
import { fill } from "./pattern.mjs";

const [path, buffers, persistEvery] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4] ?? 1)];
const pool = Pool.openOrCreate(path, { buffers, persistence: process.argv[5] });
let seq = 0;
const out = (s) => process.stdout.write(s);
out(`READY ${pool.persistMode}\n`);
for (;;) {
  const batch = [];
  for (let k = 0; k < 8; k++) {
    let i;
    try {
      i = pool.alloc();
    } catch {
      out("FULL\n");
      setInterval(() => {}, 1000); // wait to be killed
      await new Promise(() => {});
    }
    seq++;
    const len = 1 + ((seq * 131) % 2000);
    const off = (seq * 7) % (2048 - len);
    fill(pool.view(i, off, len), seq);
    pool.keep(i);
    batch.push({ index: i, offset: off, length: len, seq });
  }
  // persist every other batch only: the rest stays unpersisted, as a crash would leave it
  if (seq % (16 * persistEvery) === 0 || persistEvery === 1) {
    pool.persistBatch(batch);
    out(batch.map((n) => `P ${n.index} ${n.offset} ${n.length} ${n.seq}\n`).join(""));
  } else {
    out(batch.map((n) => `U ${n.index} ${n.offset} ${n.length} ${n.seq}\n`).join(""));
  }
}

// Child process for the power-loss test (test/journal-powerloss.test.mjs): opens the log in
// journal mode (the journal traces every write and fdatasync to PMSTACK_JOURNAL_TRACE) and
// writes objects of random sizes (small ones direct, large ones extent trees), overwrites and
// deletes them, in groups sealed with the pipelined flush(), until it is killed. It records in
// an ops file, one write(2) per line, in this order:
//   "P key ver size" / "D key" before an operation (ver: its pattern seed),
//   "G n"  when group n is sealed (every op above it, since the last G, is in group n),
//   "A n"  once group n is durable (log.durableSeq covers it).
import { openSync, writeSync } from "node:fs";
import { PmLog } from "../../build/index.js";
import { fill } from "./pattern.mjs";
import { rng } from "./rng.mjs";

const [path, opsPath, seed, keys] = process.argv.slice(2).map((v, i) => (i < 2 ? v : Number(v)));
const log = PmLog.openFile(path, { buffers: 8192, mode: "journal", journalBytes: 1 << 20 });
const pool = log.pool;
const r = rng(seed);
const fd = openSync(opsPath, "w");
const out = (s) => writeSync(fd, s);
out(`READY ${log.size}\n`);
process.stdout.write("READY\n");
let ver = seed * 1_000_000;
let group = 0;
const groups = []; // [group, last seq]
const live = new Set();

const ack = () => {
  log.poll();
  while (groups.length && groups[0][1] <= log.durableSeq) out(`A ${groups.shift()[0]}\n`);
};

for (;;) {
  // backpressure, as an app gives it: while the journal's thread lags (a slow or busy disk),
  // groups in flight hold their superseded buffers; wait for them rather than run the pool dry
  while (pool.freeCount < 2048 && groups.length) ack();
  const ops = 1 + r.int(6);
  for (let k = 0; k < ops; k++) {
    const key = `k${r.int(keys)}`;
    if (live.has(key) && r() < 0.2) {
      out(`D ${key}\n`);
      log.delete(key);
      live.delete(key);
      continue;
    }
    // mostly small, some spanning many buffers (an extent tree past 64 ranges)
    const size = r() < 0.8 ? 1 + r.int(3000) : 100_000 + r.int(300_000);
    const v = ++ver;
    out(`P ${key} ${v} ${size}\n`);
    const w = log.writer();
    const bytes = new Uint8Array(size);
    fill(bytes, v);
    for (let at = 0; at < size;) {
      const len = Math.min(size - at, 1 + r.int(2048));
      const i = pool.alloc();
      pool.view(i, 0, len).set(bytes.subarray(at, at + len));
      w.push({ index: i, offset: 0, length: len });
      pool.free(i);
      at += len;
    }
    log.put(key, w);
    live.add(key);
  }
  group++;
  groups.push([group, log.lastSeq]);
  out(`G ${group}\n`);
  log.flush();
  ack();
  // now and then a pause, so that the journal's thread completes groups while nothing is sealed
  if (r() < 0.3) {
    const until = Date.now() + r.int(3);
    while (Date.now() < until) ack();
  }
}

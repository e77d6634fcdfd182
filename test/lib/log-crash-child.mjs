// Child process for the log crash test: opens (recovering) the log in strict mode and appends
// under load until it is killed. Before each operation takes effect it writes it to a journal
// file (one write(2) per line, so a line is in the file before the next step; stdout to a pipe
// may be queued by Node, which would lose that order):
//   "A key seq nNames totalBytes" (a put whose payload parts are filled with fill(view, seq*8+k)),
//   "D key seq" (a delete), and after each commit() returns: "C". Implicit commits inside
// append would break that order, so the child compacts explicitly (printing "C" for the commit
// that precedes it) and dies if an append ever commits implicitly.
// With a 7th argument killAt > 0 the child kills itself inside its killAt-th persist call, at
// a seeded point: before the call, after a part of its flush list (a prefix, or a suffix: the
// records without their payloads), or after it; it journals "X point tail|data" first.
import { openSync, writeSync } from "node:fs";
import { PmLog } from "../../build/index.js";
import { fill } from "./pattern.mjs";
import { rng } from "./rng.mjs";

const [path, journal, buffers, metaBytes, seed, keys, killAt = 0] = process.argv
  .slice(2)
  .map((v, i) => (i < 2 ? v : Number(v)));
const log = PmLog.openFile(path, { buffers, metaBytes, mode: "strict" });
const pool = log.pool;
const r = rng(seed);
const jfd = openSync(journal, "w");
const out = (s) => writeSync(jfd, s);
const SIZES = [64, 1024, 4096];
out(`READY ${log.stats().nextSeq} ${log.size}\n`);
process.stdout.write("READY\n"); // the parent's cue to arm its kill timer
if (killAt > 0) {
  // a log commit is pool.submit(): in strict mode two persist calls, the flush list but its
  // last pair (payloads and records), then the last pair (the tail slot); the child counts
  // those calls and dies inside the killAt-th one, having persisted what the point says
  const persist = pool.persistTable.bind(pool);
  const rk = rng(killAt * 7919);
  let calls = 0;
  const wrap = (orig) => (table, n, payload, gen) => {
    const steps = [];
    const first = gen ? n - 1 : n;
    if (first > 0) steps.push([table, first, false]);
    if (gen) steps.push([table + 8 * (n - 1), 1, true]);
    for (let s = 0; s < steps.length; s++) {
      if (++calls !== killAt) continue;
      for (let q = 0; q < s; q++) persist(steps[q][0], steps[q][1]);
      const [t, m, tail] = steps[s];
      const point = ["before", "after", "prefix", "suffix"][tail ? rk.int(2) : rk.int(4)]; // tail: before|after
      out(`X ${point === "prefix" && tail ? "before" : point} ${tail ? "tail" : "data"}\n`);
      if (point === "after") persist(t, m);
      const k = m > 1 ? 1 + rk.int(m - 1) : 0;
      if (point === "prefix" && k) persist(t, k);
      if (point === "suffix" && k) persist(t + 8 * (m - k), k);
      process.kill(process.pid, "SIGKILL");
    }
    return orig(table, n, payload, gen);
  };
  pool.submit = wrap(pool.submit.bind(pool));
  pool.submitSync = wrap(pool.submitSync.bind(pool));
}
let commits = log.stats().commits;
const implicit = () => {
  if (log.stats().commits !== commits) throw new Error("an append committed implicitly");
};
for (;;) {
  const group = 1 + r.int(r() < 0.5 ? 4 : 64);
  if (log.stats().freeBytes < 4096) {
    log.commit();
    out("C\n");
    out("K\n"); // compaction starts ("k" when it ends): the parent counts kills inside it
    log.compact(); // relocation and head moves: the same logical state, crash or not
    out("k\n");
    commits = log.stats().commits;
  }
  for (let g = 0; g < group; g++) {
    const key = `key-${r.int(keys)}`;
    if (r() < 0.15) {
      if (!log.has(key)) continue;
      const seq = log.stats().nextSeq;
      out(`D ${key} ${seq}\n`);
      const got = log.delete(key);
      implicit();
      if (got !== seq) throw new Error(`delete seq ${got}, expected ${seq}`);
      continue;
    }
    const total = r() < 0.75 ? SIZES[r.int(3)] : 1 + r.int(4096);
    const seq = log.stats().nextSeq;
    const names = [];
    for (let left = total, k = 0; left > 0; k++) {
      const len = Math.min(left, 1 + r.int(2048));
      const i = pool.alloc();
      const offset = r.int(2048 - len + 1);
      fill(pool.view(i, offset, len), seq * 8 + k);
      names.push(pool.name(i, offset, len));
      left -= len;
    }
    out(`A ${key} ${seq} ${names.length} ${total}\n`);
    const got = log.append(key, names);
    implicit();
    pool.freeBatch(names.map((n) => n.index));
    if (got !== seq) throw new Error(`append seq ${got}, expected ${seq}`);
  }
  log.commit();
  commits = log.stats().commits;
  out("C\n");
}

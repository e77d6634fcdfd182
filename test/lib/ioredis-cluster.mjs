// ioredis's cluster client against a cluster (run inside a test's namespace): writes N keys
// io:<i> through Cluster (auto-pipelined per node, in batches), reads every one back, and prints
// { written, read, mismatches, nodes, ms } as JSON. Args: host port N.
import { Cluster } from "ioredis";

const [host, port, count] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const t0 = Date.now();
const c = new Cluster([{ host, port }], { enableAutoPipelining: true, redisOptions: { maxRetriesPerRequest: 3 } });
c.on("error", (e) => console.error(`ioredis: ${e.message}`));
const BATCH = 5000;
try {
  let written = 0;
  for (let i = 0; i < count; i += BATCH) {
    const ops = [];
    for (let k = i; k < Math.min(count, i + BATCH); k++) ops.push(c.set(`io:${k}`, `value-${k}`));
    for (const r of await Promise.all(ops)) if (r === "OK") written++;
  }
  let read = 0;
  let mismatches = 0;
  for (let i = 0; i < count; i += BATCH) {
    const ops = [];
    for (let k = i; k < Math.min(count, i + BATCH); k++) ops.push(c.get(`io:${k}`));
    const got = await Promise.all(ops);
    got.forEach((v, j) => {
      read++;
      if (v !== `value-${i + j}`) mismatches++;
    });
  }
  console.log(JSON.stringify({ written, read, mismatches, nodes: c.nodes("master").length, ms: Date.now() - t0 }));
} finally {
  c.disconnect();
}

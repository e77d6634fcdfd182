// Two in-process stacks with the Node-idiom layer (MemoryPair + createMemoryNet) for the socket
// tests, and the end-of-test check that both pools are whole once the GC has returned every
// lent view. Shared by api-net.test.mjs and api-net-compat.test.mjs.
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { MemoryPair, createMemoryNet } from "../../build/index.js";

setFlagsFromString("--expose-gc");
export const gc = runInNewContext("gc");
export const sha = (b) => createHash("sha256").update(b).digest("hex");
export const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms));

/** A MemoryPair (198.18.0.1 a, 198.18.0.2 b) and a NetStack on each side, started. */
export function setup(opts = {}, netOpts = {}) {
  const pair = MemoryPair.create({ buffers: 4096, ...opts });
  const { a, b } = createMemoryNet(pair, netOpts);
  return { pair, a, b };
}

/** GC until every lent view came back, then both pools must be whole; closes both stacks. */
export async function assertNoLeak({ pair, a, b }) {
  const quiet = (st) => st.connectionIds.size === 0 && st.pool.counts().nic === 0 && st.pool.counts().stack === 0;
  for (let k = 0; k < 4000 && !(quiet(pair.a.stack) && quiet(pair.b.stack)); k++) await tick();
  for (let k = 0; k < 50; k++) {
    gc();
    await tick();
    if (a.stats.viewsFinalized === a.stats.viewChunks && b.stats.viewsFinalized === b.stats.viewChunks) break;
  }
  assert.is(a.stats.viewsFinalized, a.stats.viewChunks, "a: every view chunk came back");
  assert.is(b.stats.viewsFinalized, b.stats.viewChunks, "b: every view chunk came back");
  for (const side of ["a", "b"]) {
    const c = pair[side].stack.pool.check();
    assert.is(c.free, c.total, `${side}: ${JSON.stringify(c)}`);
  }
  a.close();
  b.close();
  pair.shutdown();
}

/** Reads to 'end' with events (for-await destroys the stream when the loop ends, as in node:net). */
export function readAll(stream) {
  return new Promise((resolve, reject) => {
    const parts = [];
    stream.on("data", (d) => parts.push(Buffer.from(d)));
    stream.on("end", () => resolve(Buffer.concat(parts)));
    stream.on("error", reject);
    stream.resume(); // a 'data' listener alone does not restart a paused stream
  });
}

/** Reads with async iteration, copying each chunk (we hold the bytes, not the views). */
export async function collect(stream) {
  const parts = [];
  for await (const d of stream) parts.push(Buffer.from(d));
  return Buffer.concat(parts);
}

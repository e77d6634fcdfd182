// Both application interfaces under Deno (and Node: the same script), over two in-process
// stacks (MemoryPair): the batch API keeps, persists, logs (one group commit per turn) and
// replies straight from kept buffers; the Node-idiom API runs a pipe() echo server and a client
// reading with async iteration. Prints "API SMOKE OK <json>", which says which persistence
// adapter the pool file got: under Deno without --allow-ffi the addon cannot load, and the file
// adapter takes over (and the features that need the addons say so).
// Run: deno run -A test/deno/api-smoke.mjs <dir>   or   node test/deno/api-smoke.mjs <dir>
//  or: deno run --allow-read --allow-write test/deno/api-smoke.mjs <dir on a disk, not /dev/shm>
import { MemoryPair, PasteServer, PmLog, Pool, Stack, createMemoryNet, nic } from "../../build/index.js";

const dir = globalThis.Deno ? Deno.args[0] : process.argv[2];
const runtime = globalThis.Deno ? "deno" : "node";
const fail = (msg) => {
  throw new Error(`api smoke (${runtime}): ${msg}`);
};

function pattern(n, seed) {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
async function sha(bytes) {
  const d = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(d)].map((x) => x.toString(16).padStart(2, "0")).join("");
}
function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---- the batch API: keep, persist, log, reply from PM ----
async function batch() {
  const a = Stack.create({ mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24", pool: { buffers: 2048 } });
  const b = Stack.create({
    mac: "02:00:00:00:00:0b",
    ip: "198.18.0.2/24",
    pool: { path: `${dir}/api-${runtime}.pm`, buffers: 2048 },
    configure: PmLog.configure,
  });
  const log = PmLog.open(b.pool);
  const pair = new MemoryPair(a, b);
  let n = 0;
  const srv = new PasteServer(
    pair.b,
    (batch) => {
      for (const c of batch.chunks) {
        const name = batch.keep(c);
        batch.persist([c]);
        batch.append(`k${n++}`, [c]);
        batch.reply(c.conn, name); // no copy
        srv.release(name); // the log keeps it
      }
      for (const conn of batch.ended) batch.close(conn);
    },
    { log },
  );
  srv.listen(7);
  const data = pattern(200_000, 7);
  const got = [];
  let conn = -1;
  let closed = false;
  let sent = 0;
  const cli = new PasteServer(pair.a, (batch) => {
    for (const c of batch.connected) conn = c.conn;
    for (const c of batch.chunks) got.push(c.view.slice());
    if (conn >= 0 && sent < data.length && cli.queued(conn) === 0) {
      batch.reply(conn, data.subarray(sent, Math.min(data.length, sent + 65536)));
      sent = Math.min(data.length, sent + 65536);
      if (sent === data.length) batch.close(conn);
    }
    if (batch.closed.length) closed = true;
  });
  cli.connect("198.18.0.2", 7);
  if (!pair.runUntil(() => closed && b.connectionIds.size === 0)) fail("batch echo did not finish");
  const echoed = concat(got);
  if ((await sha(echoed)) !== (await sha(data))) fail("batch echo differs");
  if (srv.stats.replyCopiedBytes !== 0) fail("the batch echo copied");
  if (srv.stats.logCommits !== srv.stats.persistFences) fail("one commit and one fence per turn");
  const counts = b.pool.check();
  if (counts.kept !== n || counts.free !== counts.total - n) fail(`pool ${JSON.stringify(counts)}`);
  pair.shutdown();
  const again = PmLog.openFile(`${dir}/api-${runtime}.pm`, { buffers: 2048 });
  const back = concat([...Array(n).keys()].map((k) => again.views(`k${k}`)[0].slice()));
  if ((await sha(back)) !== (await sha(data))) fail("logged records differ after reopening");
  if (again.pool.persistence !== b.pool.persistence) fail("the reopened pool has another adapter");
  again.pool.close();
  return {
    chunks: n,
    bytes: data.length,
    zeroCopyBytes: srv.stats.zeroCopyBytes,
    commits: srv.stats.logCommits,
    persistence: b.pool.persistence,
    persistMode: b.pool.persistMode,
    fallback: b.pool.fallback,
    syncCalls: b.pool.stats.syncCalls,
  };
}

// ---- what needs an addon says which, when asked for ----
function addonErrors() {
  const error = (fn) => {
    try {
      fn();
      return null;
    } catch (e) {
      return `${e.code} ${e.message}`;
    }
  };
  return {
    journal: error(() => Pool.create(`${dir}/journal-${runtime}.pm`, { buffers: 8, mode: "journal" }).close()),
    nic: error(() => nic.nicNative()),
  };
}

// ---- the Node-idiom API: pipe() echo, async iteration ----
async function netApi() {
  const pair = MemoryPair.create({ buffers: 4096 });
  const { a, b } = createMemoryNet(pair);
  const srv = b.createServer({}, (s) => s.pipe(s));
  await new Promise((r) => srv.listen(7, r));
  const data = pattern(300_000, 9);
  const c = a.connect({ host: "198.18.0.2", port: 7 });
  await new Promise((r) => c.once("connect", r));
  c.end(data);
  const parts = [];
  for await (const chunk of c) parts.push(new Uint8Array(chunk)); // a copy of each zero-copy view
  if ((await sha(concat(parts))) !== (await sha(data))) fail("net echo differs");
  const refused = a.connect({ host: "198.18.0.2", port: 8 });
  const code = await new Promise((r) => refused.once("error", (e) => r(e.code)));
  if (code !== "ECONNREFUSED") fail(`refused connect gave ${code}`);
  await new Promise((r) => srv.close(r));
  const stats = { ...b.stats };
  for (let k = 0; k < 200 && (pair.a.stack.connectionIds.size || pair.b.stack.connectionIds.size); k++)
    await new Promise((r) => setTimeout(r, 5));
  a.close();
  b.close();
  pair.a.stack.pool.check();
  pair.b.stack.pool.check();
  pair.shutdown();
  return { bytes: data.length, viewChunks: stats.viewChunks, refused: code };
}

// only as a program (not when a test runner imports every file under test/)
const main = globalThis.Deno ? import.meta.main : process.argv[1] === new URL(import.meta.url).pathname;
if (main) {
  if (!dir) throw new Error("usage: api-smoke.mjs <scratch dir>");
  const out = { runtime, batch: await batch(), net: await netApi(), addons: addonErrors() };
  console.log("API SMOKE OK " + JSON.stringify(out));
}

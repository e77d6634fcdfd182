// End to end: `pmstack httpd --workers 2` (build/cli.js, a second process) in a namespace: two
// worker threads on the two queues of one multi-queue TAP device, each with its own pool and
// shard of the keys (host/apps/httpd-shard.ts). 40 connections pipeline 1,000 PUTs over both
// queues; every key is read back and deleted over other connections, pipelined (replies in
// order, bodies and Content-Types byte-exact); 8 MiB objects written through one worker's queue
// for keys the other owns are read back whole, by Range and by HEAD, through either; kill -9
// under load loses no acknowledged PUT.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { keyHashSlot, tapQueueOf } from "../build/index.js";
import { Netns, netnsUnavailable } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { startCli, waitFor, writeRandomFile } from "./lib/appserver.mjs";

const why = netnsUnavailable();
if (why) console.warn(`\n!!! e2e-httpd-workers: SKIPPED: ${why}\n`);
const it = why ? test.skip : test;
const US = "198.18.13.2";
const PEER = "198.18.13.1";
const DEV = "pmtaph0";
const lib = (f) => fileURLToPath(new URL(`./lib/${f}`, import.meta.url));
const cfg = (pm, args = []) => ({ dev: DEV, us: US, peer: PEER, pm, args: ["--workers", "2", ...args] });
const owner = (key) => keyHashSlot(Buffer.from(key)) % 2;

/** Runs test/lib/httpd-load.mjs in the namespace: its JSON answer. */
async function load(ns, args, timeoutMs = 120_000) {
  const p = ns.node(lib("httpd-load.mjs"), [args[0], US, "80", ...args.slice(1).map(String)]);
  p.stdin.end();
  const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const r = await p.done;
  clearTimeout(t);
  assert.is(r.status, 0, `httpd-load ${args[0]}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop());
}

/** curl in the namespace from a chosen local port: {status, stdout (Buffer), stderr}. */
async function curl(ns, port, args) {
  const p = ns.spawn("curl", ["-s", "--local-port", String(port), ...args], {});
  p.stdin.end();
  const chunks = [];
  p.stdout.on("data", (d) => chunks.push(d));
  const r = await p.done;
  return { status: r.status, out: Buffer.concat(chunks), stderr: r.stderr };
}

it("httpd --workers 2: 1,000 pipelined PUTs over both queues read back and deleted over others; 8 MiB objects across workers", async () => {
  const ns = new Netns("httpdw");
  const dir = scratchDir("tmpfs");
  const pm = join(dir, "h.pm");
  let srv;
  try {
    srv = await startCli(ns, "httpd", cfg(pm, ["--size", "256M"]));
    assert.match(
      srv.out(),
      /workers: 2 threads, one queue of pmtaph0 each, the keys sharded over them by hash slot \(a request runs on the worker that owns its key\)/,
    );
    const w = await load(ns, ["put", 40, 25, "p", 40000]);
    assert.equal(w.acked, new Array(40).fill(25), "every PUT answered 201, in order");
    let st = await srv.stats();
    assert.is(st.workers.length, 2);
    for (const x of st.workers) {
      assert.ok(x.app.connections > 0, `worker ${x.worker}: ${x.app.connections} connections`);
      assert.ok(x.app.forwarded > 0 && x.app.served > 0, `worker ${x.worker}: forwarded and served`);
      assert.ok(x.log.liveKeys - x.app.loans > 300, `worker ${x.worker}: ${x.log.liveKeys - x.app.loans} keys`);
      // the bodies for the other worker's keys stayed here, in the buffers the NIC wrote: lent
      assert.ok(
        x.app.lent > 0 && x.app.loans === x.app.lent,
        `worker ${x.worker}: ${x.app.lent} lent, ${x.app.loans} loans`,
      );
    }
    // about half the keys are the other worker's, whichever queue a connection landed on
    assert.ok(st.app.lent > 300 && st.app.lent < 700, `${st.app.lent} of 1000 bodies lent`);
    assert.is(st.log.liveKeys - st.app.loans, 1000, "1000 keys (the loans are records, not keys)");
    const r = await load(ns, ["check", 40, "p", 40000, JSON.stringify(w.acked), "del"]);
    assert.equal(r, { checked: 1000, missing: 0, wrong: 0, deleted: 1000 });
    // every loan goes back once the owners' deletions are durable
    st = await waitFor(async () => {
      const x = await srv.stats();
      return x.app.loans === 0 ? x : null;
    }, "no loan left");
    assert.is(st.log.liveKeys, 0);
    const before = st.workers.map((x) => x.app.served);

    // 8 MiB bodies through one worker's queue for keys the other owns, and back
    const file = join(dir, "big");
    const v = writeRandomFile(file, 8 << 20, 5);
    const data = readFileSync(file);
    const portOn = (wk, from) => {
      for (let p = from; ; p++)
        if (tapQueueOf({ localAddress: US, localPort: 80, remoteAddress: PEER, remotePort: p }, 2) === wk) return p;
    };
    const keyOf = (wk, tag) => {
      for (let i = 0; ; i++) if (owner(`${tag}${i}`) === wk) return `${tag}${i}`;
    };
    let lp = 41000;
    for (const [via, own] of [
      [0, 1],
      [1, 0],
      [0, 0],
    ]) {
      const key = keyOf(own, `big${via}${own}-`);
      const put = await curl(ns, (lp = portOn(via, lp + 1)), [
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-T",
        file,
        `http://${US}/${key}`,
      ]);
      assert.is(put.out.toString(), "201", `PUT ${key} via worker ${via}: ${put.stderr}`);
      for (const reader of [0, 1]) {
        const get = await curl(ns, (lp = portOn(reader, lp + 1)), [`http://${US}/${key}`]);
        assert.is(createHash("sha256").update(get.out).digest("hex"), v.sha, `GET ${key} via worker ${reader}`);
        const rg = await curl(ns, (lp = portOn(reader, lp + 1)), ["-r", "3000000-3999999", `http://${US}/${key}`]);
        assert.ok(rg.out.equals(data.subarray(3000000, 4000000)), `Range of ${key} via worker ${reader}`);
        const hd = await curl(ns, (lp = portOn(reader, lp + 1)), ["-I", `http://${US}/${key}`]);
        assert.match(hd.out.toString(), new RegExp(`Content-Length: ${8 << 20}`));
      }
    }
    st = await srv.stats();
    // each worker stored a body that came through the other's queue, and served it to reads there
    for (const x of st.workers) {
      assert.ok(x.app.served - before[x.worker] >= 4, `worker ${x.worker} served the other's PUT and reads`);
      // the 8 MiB body for the other's key stayed here, and the other read it from this pool
      assert.is(x.app.loans, 1, `worker ${x.worker} keeps the body it received for the other's key`);
      assert.ok(x.app.remoteReads >= 6, `worker ${x.worker} resolved the reads of the other's loan`);
      // and the reads through its own queue of the body it lent went out from its pool, by name
      assert.ok(x.app.ownReads >= 2, `worker ${x.worker}: ${x.app.ownReads} reads of its own loans`);
    }
    // a 3 MiB PUT pipelined with a GET, DELETE and GET of its key, on a connection of the worker
    // that does not own it: each sees the one before (the body goes out in pieces first)
    for (const size of [3 << 20, 1000]) {
      const pk = keyOf(1, `pipe${size}-`);
      const pr = await load(ns, ["pipe", portOn(0, lp + 1), pk, size]);
      lp = portOn(0, lp + 1);
      assert.equal(pr, { statuses: [201, 200, 204, 404], same: true }, `pipelined on ${pk}`);
    }
    // a reader that goes away in the middle of another worker's object: both let go of it
    const far = keyOf(1, "big01-");
    const cutter = ns.spawn(process.execPath, [
      "-e",
      `const s = require("node:net").connect({ host: "${US}", port: 80, localPort: ${portOn(0, lp + 1)} }, () =>
         s.write("GET /${far} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"));
       let n = 0;
       s.on("data", (d) => { n += d.length; if (n > 300000) { console.log("GOT " + n); s.destroy(); } });`,
    ]);
    cutter.stdin.end();
    const cut = await cutter.done;
    const got = Number(/GOT (\d+)/.exec(cut.stdout)?.[1]);
    assert.ok(got > 300000 && got < 8 << 20, `the reader left after ${got} bytes`);
    const idle = await srv.idle();
    assert.is(idle.pool.app, 0, "no buffer left held by a reply");
    await waitFor(async () => {
      const a = (await srv.stats()).app;
      return a.inFlight === 0 && a.serving === 0;
    }, "no request left in flight between the workers (the cut read's object unpinned)");
  } finally {
    await srv?.kill("SIGTERM");
    ns.cleanup();
  }
});

it("httpd --workers 2: kill -9 under load loses no acknowledged PUT; a restart with the same count reads them all", async () => {
  const ns = new Netns("httpdwcrash");
  const dir = scratchDir("disk");
  const pm = join(dir, "h.pm");
  let srv;
  try {
    srv = await startCli(ns, "httpd", cfg(pm, ["--size", "64M"]));
    const writer = ns.node(lib("httpd-load.mjs"), ["stream", US, "80", "16", "c", "6000"]);
    writer.stdin.end();
    await waitFor(async () => (await srv.stats()).app.puts > 2000, "2000 PUTs");
    await srv.kill("SIGKILL");
    writer.kill("SIGTERM");
    const acked = JSON.parse((await writer.done).stdout.trim()).acked;
    const total = acked.reduce((a, b) => a + b, 0);
    assert.ok(total > 1000, `${total} acknowledged before the kill`);
    srv = await startCli(ns, "httpd", cfg(pm, ["--size", "64M"]));
    assert.match(srv.out(), /worker 1: pool/);
    // the bodies each worker received for the other's keys came back as loans, not keys
    assert.match(srv.out(), /log: \d+ keys recovered \(\d+ records, \d+ loans kept for other workers' keys\)/);
    const r = await load(ns, ["check", 16, "c", 6000, JSON.stringify(acked)]);
    assert.equal(r, { checked: total, missing: 0, wrong: 0, deleted: 0 });
  } finally {
    await srv?.kill("SIGTERM");
    ns.cleanup();
  }
});

test.run();

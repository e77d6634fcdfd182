// End to end: `pmstack kv --workers 2` (build/cli.js, a second process) in a namespace: two
// worker threads on the two queues of one multi-queue TAP device, each with its own pool and
// shard of the keys. 200 connections land on both queues (both workers' counters move); keys
// written on some connections are read and deleted on others; redis-benchmark with 50 clients;
// 256 MiB each way through each queue, byte-exact; kill -9 under load loses no acknowledged
// SET, and a restart with another worker count is refused. Through the API: a worker that dies
// stops the whole server (serveWorkers' onFailure), and a worker that cannot start fails the
// start naming it. The same spread and crossing over AF_XDP: `--nic xdp` on the two queues of a
// veth pair, the kernel's end steered (`--veth-peer`), then kill -9 and recovery there too.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { existsSync, openSync, writeSync, closeSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { serveWorkers, tapQueueOf } from "../build/index.js";
import { Netns, netnsUnavailable } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { startCli, control, runCli, waitFor, sleep, writeRandomFile } from "./lib/appserver.mjs";

const hasCli = spawnSync("sh", ["-c", "command -v redis-cli && command -v redis-benchmark"]).status === 0;
const why = netnsUnavailable() ?? (hasCli ? null : "redis-cli/redis-benchmark not installed (package redis-tools)");
if (why) console.warn(`\n!!! e2e-kv-workers: SKIPPED: ${why}\n`);
const it = why ? test.skip : test;
const US = "198.18.12.2";
const PEER = "198.18.12.1";
const DEV = "pmtapw0";
const lib = (f) => fileURLToPath(new URL(`./lib/${f}`, import.meta.url));

const cfg = (pm, args = []) => ({ dev: DEV, us: US, peer: PEER, pm, args: ["--workers", "2", ...args] });

/** Runs a load client mode (test/lib/kv-load.mjs) in the namespace; its JSON answer. */
async function load(ns, args, timeoutMs = 120_000) {
  const p = ns.node(lib("kv-load.mjs"), [args[0], US, "6379", ...args.slice(1).map(String)]);
  p.stdin.end();
  const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const r = await p.done;
  clearTimeout(t);
  assert.is(r.status, 0, `kv-load ${args[0]}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop());
}

const redisCli = async (ns, ...args) => {
  const p = ns.spawn("redis-cli", ["-h", US, ...args]);
  p.stdin.end();
  const r = await p.done;
  assert.is(r.status, 0, r.stderr);
  return r.stdout.trim();
};

it("kv --workers 2: 200 connections over both queues, keys crossing workers, redis-benchmark, ss and stats", async () => {
  const ns = new Netns("kvw");
  const dir = scratchDir("tmpfs");
  const pm = join(dir, "kv.pm");
  let srv;
  try {
    srv = await startCli(ns, "kv", cfg(pm, ["--size", "256M", "--protected-mode", "no"]));
    assert.match(srv.out(), /workers: 2 threads, one queue of pmtapw0 each, the keys sharded/);
    assert.match(ns.ip(["-d", "link", "show", DEV]), /multi_queue numqueues 2/);
    assert.match(srv.out(), /queues picked by a hash of addresses and ports, the same both ways \(eBPF steering\)/);
    await spreadAndCross(ns, srv, pm);
  } finally {
    await srv?.kill("SIGTERM");
    ns.cleanup();
  }
});

/** A veth pair of two queues in `ns`: the kernel's end pmxwk0, pmstack's pmxwp0 (AF_XDP). */
function veth2(ns) {
  const two = ["numrxqueues", "2", "numtxqueues", "2"];
  ns.ip(["link", "add", "pmxwk0", ...two, "type", "veth", "peer", "name", "pmxwp0", ...two]);
  ns.ip(["link", "set", "pmxwp0", "address", "02:50:4d:00:00:02"]);
  ns.ip(["link", "set", "pmxwp0", "up"]);
  // AF_XDP gives the receiver no checksum metadata: the kernel's end sends complete checksums
  const k = ns.run("ethtool", ["-K", "pmxwk0", "tx", "off"]);
  assert.is(k.status, 0, `ethtool -K pmxwk0 tx off: ${k.stderr}`);
}
const xcfg = (pm, args = []) => ({
  ...cfg(pm, ["--nic", "xdp", "--veth-peer", "pmxwk0", ...args]),
  dev: "pmxwk0",
  ifname: "pmxwp0",
});

it("kv --workers 2 --nic xdp: the same over two AF_XDP queues of a veth pair (the kernel's end steered); kill -9 and recovery", async () => {
  const ns = new Netns("kvwx");
  const dir = scratchDir("tmpfs");
  const pm = join(dir, "kv.pm");
  let srv;
  try {
    veth2(ns);
    srv = await startCli(ns, "kv", xcfg(pm, ["--size", "256M", "--protected-mode", "no"]));
    assert.match(srv.out(), /listening on 198\.18\.12\.2:6379 \(AF_XDP pmxwp0\)/);
    assert.match(srv.out(), /workers: 2 threads, one queue of pmxwp0 each, the keys sharded/);
    assert.match(
      srv.out(),
      /queues picked by a hash of addresses and ports, the same both ways \(eBPF on pmxwk0's egress, 2 queues\)/,
    );
    // one XDP program on the device, shared by both workers' sockets
    assert.is(ns.ip(["link", "show", "pmxwp0"]).match(/pmstack_xsk/g)?.length, 1);
    await spreadAndCross(ns, srv, pm);
    // kill -9 under load, then a restart over the same pools reads every acknowledged SET
    const writer = ns.node(lib("kv-load.mjs"), ["write", US, "6379", "32", "10", "x"]);
    writer.stdin.end();
    const c0 = (await srv.stats()).app.commands;
    await waitFor(async () => (await srv.stats()).app.commands > c0 + 3000, "3000 SETs");
    await srv.kill("SIGKILL");
    writer.kill("SIGTERM");
    const acked = JSON.parse((await writer.done).stdout.trim()).acked;
    const total = acked.reduce((a, b) => a + b, 0);
    assert.ok(total > 1000, `${total} acknowledged before the kill`);
    // the dead process's sockets and program went with it: the device takes the new ones
    srv = await startCli(ns, "kv", xcfg(pm, ["--size", "256M", "--protected-mode", "no"]));
    // each worker kept the values its clients wrote for the other's keys: loans, not keys
    assert.match(
      srv.out(),
      /worker 0: [^\n]*\nlog: \d+ keys recovered \(\d+ records, \d+ loans kept for other workers' keys\)/,
    );
    const r = await load(ns, ["check", 8, "x", JSON.stringify(acked)]);
    assert.equal(r, { checked: total, missing: 0, wrong: 0, deleted: 0 });
  } finally {
    await srv?.kill("SIGTERM");
    ns.cleanup();
  }
});

/**
 * Through a server of two workers: 200 connections spread over both; keys written on some read
 * and deleted on others; redis-benchmark with 50 clients; `ss` names each connection's worker,
 * which is its steering hash's queue.
 */
async function spreadAndCross(ns, srv, pm) {
  {
    // 200 connections writing for a second
    const w = await load(ns, ["write", 200, 1, "w"]);
    const total = w.acked.reduce((a, b) => a + b, 0);
    assert.is(w.errors, 0);
    assert.ok(total > 1000, `${total} SETs acknowledged`);
    let st = await srv.stats();
    assert.is(st.workers.length, 2);
    for (const x of st.workers) {
      assert.ok(x.app.connections > 20, `worker ${x.worker}: ${x.app.connections} of 200 connections`);
      assert.ok(x.app.commands > 100, `worker ${x.worker}: ${x.app.commands} commands`);
      assert.ok(x.app.forwarded > 0 && x.app.served > 0, `worker ${x.worker}: forwarded and served`);
      // the values (past 64 bytes) written for the other worker's keys stayed here, lent
      assert.ok(x.app.lent > 100 && x.app.loans > 100, `worker ${x.worker}: ${x.app.lent} lent, ${x.app.loans} loans`);
    }
    assert.is(st.app.connections, st.workers[0].app.connections + st.workers[1].app.connections, "totals");
    assert.is(st.app.commands, total + 0, "every SET counted once, where it arrived");
    assert.is(Number(await redisCli(ns, "DBSIZE")), total);
    // read and delete every key over 16 other connections
    const r = await load(ns, ["check", 16, "w", JSON.stringify(w.acked), "del"]);
    assert.equal(r, { checked: total, missing: 0, wrong: 0, deleted: total });
    assert.is(Number(await redisCli(ns, "DBSIZE")), 0);
    // every loan went back once the owners' deletions were durable
    await waitFor(async () => (await srv.stats()).workers.every((x) => x.app.loans === 0), "no loan left");
    // values past 63 ranges (extent trees in the receiving worker's pool) cross as loans too
    const lentBefore = (await srv.stats()).workers.map((x) => x.app.lent);
    const env = { ...process.env, KV_LOAD_PAD: "200000" };
    const big = async (args) => {
      const x = await ns.node(lib("kv-load.mjs"), [args[0], US, "6379", ...args.slice(1).map(String)], { env }).done;
      assert.is(x.status, 0, `kv-load ${args[0]}: ${x.stderr}`);
      return JSON.parse(x.stdout.trim().split("\n").pop());
    };
    const wb = await big(["write", 16, 0.25, "big"]);
    const tb = wb.acked.reduce((a, b) => a + b, 0);
    assert.is(wb.errors, 0);
    assert.ok(tb >= 16, `${tb} SETs of 200 KB acknowledged`);
    // (the connections may all land on one queue: their ports are picked one after the other)
    const lent = (await srv.stats()).workers.reduce((n, x, i) => n + x.app.lent - lentBefore[i], 0);
    assert.ok(lent >= 1 && lent <= tb, `${lent} of ${tb} values lent, trees and all`);
    const rb = await big(["check", 16, "big", JSON.stringify(wb.acked), "del"]);
    assert.equal(rb, { checked: tb, missing: 0, wrong: 0, deleted: tb });
    await waitFor(async () => (await srv.stats()).workers.every((x) => x.app.loans === 0), "no tree's loan left");
    // redis-benchmark, 50 clients, pipelined
    const b = ns.spawn("redis-benchmark", [
      "-h",
      US,
      "-c",
      "50",
      "-n",
      "20000",
      "-P",
      "8",
      "-t",
      "set,get",
      "-r",
      "5000",
      "-q",
    ]);
    b.stdin.end();
    const br = await b.done;
    assert.is(br.status, 0, br.stderr);
    assert.match(br.stdout, /SET: [\d.]+ requests per second/);
    assert.match(br.stdout, /GET: [\d.]+ requests per second/);
    st = await srv.stats();
    assert.ok(
      st.workers.every((x) => x.log.liveKeys > 0),
      "both workers hold keys",
    );
    // ss names each connection's worker
    const held = ns.node(lib("kv-load.mjs"), ["write", US, "6379", "40", "1", "ss"]);
    held.stdin.end();
    const ss = await waitFor(async () => {
      const list = await control(`${pm}.ctl`, "ss");
      return list.filter((c) => c.localPort === 6379 && c.state === "ESTABLISHED").length >= 30 ? list : null;
    }, "40 connections in ss");
    const mine = ss.filter((c) => c.localPort === 6379);
    const on = new Set(mine.map((c) => c.worker));
    assert.equal([...on].sort(), [0, 1], "connections on both workers");
    // each on the queue the steering program's hash names (the worker index is the queue's)
    for (const c of mine) assert.is(c.worker, tapQueueOf(c, 2), `${c.remoteAddress}:${c.remotePort}`);
    const text = await runCli(["ss", "--control", `${pm}.ctl`]);
    assert.match(text.stdout.split("\n")[0], /^\s*worker\s+id\s+state/);
    const stx = await runCli(["stats", "--control", `${pm}.ctl`]);
    assert.match(stx.stdout, /Workers \(2\):\n\s+worker 0: \d+ commands, \d+ forwarded/);
    await held.done;
  }
}

it("kv --workers 2: 256 MiB each way through each queue (client ports picked by the steering hash), byte-exact", async () => {
  const ns = new Netns("kvwbig");
  const dir = scratchDir("tmpfs");
  const pm = join(dir, "kv.pm");
  const file = join(dir, "v64");
  const v = writeRandomFile(file, 64 << 20, 11);
  let srv;
  try {
    srv = await startCli(ns, "kv", cfg(pm, ["--size", "400M", "--protected-mode", "no"]));
    const base = await srv.stats();
    // client ports whose connections the steering hash gives to worker 0 and to worker 1
    const ports = [[], []];
    for (let p = 40000; ports[0].length < 8 || ports[1].length < 8; p++) {
      const w = tapQueueOf({ localAddress: US, localPort: 6379, remoteAddress: PEER, remotePort: p }, 2);
      if (ports[w].length < 8) ports[w].push(p);
    }
    // per worker, 4 uploads and 4 downloads of 64 MiB through its own queue, both workers at once
    const run = async (script, args) => {
      const p = ns.node(lib(script), [US, "6379", ...args]);
      p.stdin.end();
      const r = await p.done;
      return r.stdout.trim() || r.stderr;
    };
    await Promise.all(
      [0, 1].map(async (w) => {
        for (let k = 0; k < 4; k++) {
          const key = `big${w}${k % 2}`;
          assert.is(await run("kv-upload.mjs", [key, file, ports[w][2 * k]]), "+OK", `worker ${w} upload ${k}`);
          const got = await run("kv-get.mjs", [key, ports[w][2 * k + 1]]);
          assert.equal(JSON.parse(got), { len: v.size, sha256: v.sha }, `worker ${w} download ${k}`);
        }
      }),
    );
    const st = await srv.stats();
    for (const x of st.workers) {
      const b = base.workers[x.worker].stack;
      assert.ok(x.stack.RX_BYTES - b.RX_BYTES >= 256 << 20, `worker ${x.worker} in: ${x.stack.RX_BYTES - b.RX_BYTES}`);
      assert.ok(x.stack.TX_BYTES - b.TX_BYTES >= 256 << 20, `worker ${x.worker} out: ${x.stack.TX_BYTES - b.TX_BYTES}`);
    }
    const idle = await srv.idle();
    assert.is(idle.pool.app, 0);
  } finally {
    await srv?.kill("SIGTERM");
    ns.cleanup();
  }
});

it("kv --workers 2: kill -9 under load loses no acknowledged SET; another worker count is refused", async () => {
  const ns = new Netns("kvwcrash");
  const dir = scratchDir("disk");
  const pm = join(dir, "kv.pm");
  let srv;
  try {
    srv = await startCli(ns, "kv", cfg(pm, ["--size", "64M", "--protected-mode", "no"]));
    const writer = ns.node(lib("kv-load.mjs"), ["write", US, "6379", "32", "10", "c"]);
    writer.stdin.end();
    await waitFor(async () => (await srv.stats()).app.commands > 3000, "3000 SETs");
    await srv.kill("SIGKILL");
    writer.kill("SIGTERM");
    const wr = await writer.done;
    const acked = JSON.parse(wr.stdout.trim()).acked;
    const total = acked.reduce((a, b) => a + b, 0);
    assert.ok(total > 1000, `${total} acknowledged before the kill`);
    // another count: refused, naming the pools' count
    const bad = await runCli(["kv", "--pm", pm, "--workers", "3", "--ifname", DEV, "--quiet"]);
    assert.is.not(bad.status, 0);
    assert.match(bad.stderr, /sharded over 2 workers .*start with --workers 2/);
    const one = await runCli(["kv", "--pm", pm, "--ifname", DEV, "--quiet"]);
    assert.match(one.stderr, /sharded over 2 workers/);
    srv = await startCli(ns, "kv", cfg(pm, ["--size", "64M", "--protected-mode", "no"]));
    assert.match(srv.out(), /worker 1: pool/);
    const r = await load(ns, ["check", 8, "c", JSON.stringify(acked)]);
    assert.equal(r, { checked: total, missing: 0, wrong: 0, deleted: 0 });
  } finally {
    await srv?.kill("SIGTERM");
    ns.cleanup();
  }
});

it("serveWorkers: a worker that dies stops every worker (onFailure); one that cannot start fails the start, named", async () => {
  const ns = new Netns("kvwfail");
  const dir = scratchDir("tmpfs");
  const path = join(dir, "api.pm");
  const opts = {
    path,
    buffers: 8192,
    workers: 2,
    ip: `${US}/24`,
    mac: "02:50:4d:00:00:12",
    app: { app: "kv" },
    tap: { name: DEV, netns: ns.path },
  };
  try {
    const ws = await serveWorkers(opts);
    assert.is(ws.count, 2);
    assert.equal(ws.paths, [`${path}.w0`, `${path}.w1`]);
    const failed = new Promise((r) => (ws.onFailure = (i, e) => r({ i, e })));
    await ws.killWorker(1);
    const f = await failed;
    assert.is(f.i, 1);
    assert.match(f.e.message, /worker 1 ended/);
    await waitFor(() => !ns.ip(["link", "show"]).includes(DEV), "the device to go with the workers");
    // worker 1's pool damaged: the start fails, naming the worker; worker 0 is stopped again
    const fd = openSync(`${path}.w1`, "r+");
    writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 0);
    closeSync(fd);
    let err;
    try {
      await serveWorkers(opts);
    } catch (e) {
      err = e;
    }
    assert.ok(err, "the start failed");
    assert.match(err.message, /^pmstack: worker 1: /);
    await waitFor(() => !ns.ip(["link", "show"]).includes(DEV), "worker 0 to be stopped");
    assert.ok(existsSync(`${path}.w0`));
  } finally {
    ns.cleanup();
  }
});

test.run();

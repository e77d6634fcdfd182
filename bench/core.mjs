// bench/core: two pmstack stacks in one process over the in-memory link (one copy per frame,
// as a NIC's DMA would make; MSS 1460, checksums computed and verified), beside Debian's native
// lwIP 2.1.3 (bench/lwip, raw API, two netifs over an in-memory wire) measured in the same run.
// Each pass of the loop is one host turn of each stack as NicLoop makes it (poll, the app's
// events, poll again if the app queued commands: its sends leave in the same turn).
// Metrics: bulk_gbps (payload untouched), bulk_gbps_checked (written and compared, as lwIP does),
// rr_tps_1conn (64-byte buffers sent unwritten, freed unread), rr_tps_1conn_checked (every
// request and response byte written and checked, the work lwIP's harness does), rr_tps_1conn_idle100k (the same beside 100,000 idle established connections),
// rr_tps_100conn, conn_per_s, conn_per_s_tw100k (conn_per_s with 100,000 connections in
// TIME_WAIT on the server's side, every new one recycling the oldest). System pmstack-v6: the same two stacks speaking IPv6 (dual-stack
// stacks, the connections over 2001:2:0:63::/64), measured in the same rounds for bulk_gbps,
// rr_tps_1conn and rr_tps_100conn, its ratio to pmstack's IPv4 shown. System pmstack-2workers
// (rr_tps_100conn only): the same 100 connections split over two worker_threads
// (bench/_core-worker.mjs), each running the same rr code on a pair of stacks and a MemoryLink
// of its own with 50 of them, sharing nothing (a stack per core); both warm up, start on one
// Atomics flag and run --seconds, and their transactions add up over that one window; its ratio
// to pmstack's one thread shown (ceiling 2x on this 2-CPU machine, target 1.7x). Args:
// --seconds N (default 2), --rounds N (default 3: pmstack, pmstack-2workers, pmstack-v6 and
// lwIP in turn, medians), --metrics M[,M] (only those; for profiling one), --prof (after the
// rounds, rr_tps_1conn, rr_tps_1conn_checked and conn_per_s once more each: per exchange the
// polls, events, frames, heap bytes allocated, calls into the Wasm core, and a CPU profile).
// --baseline REV: also builds git revision REV in a temporary worktree and measures its stacks in
// the same run, the two builds alternating over --rounds N (default 3) rounds, medians compared
// (bench/results/core-baseline.json): what a change to the core or the host costs, apart from
// the machine's drift between runs.
import { spawnSync } from "node:child_process";
import { Worker } from "node:worker_threads";
import { existsSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import os from "node:os";
import * as current from "../build/index.js";
import { cpuProfile, heapRecord, ratios } from "./_lib.mjs";
import { profileTimes, summarizeProfile } from "./_durable-report.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const repo = fileURLToPath(new URL("..", import.meta.url));

/**
 * What every run so far did (--prof reads them per exchange, zeroing them before each pass):
 * exchanges (transactions or connections completed), the loop's polls and events, frames moved.
 */
const counts = { exchanges: 0, polls: 0, events: 0, frames: 0 };

/** The build under test (this tree's, or the baseline's). */
let lib = current;
/** The family the pairs speak: 4, or 6 (system pmstack-v6). */
let family = 4;
/** Where b connects to a. */
const serverAddr = () => (family === 6 ? "2001:2:0:63::1" : "198.18.0.1");

function pair(cfg = {}) {
  const { Stack, MemoryLink } = lib;
  const base = { pool: { buffers: 32768 }, rcvBuf: 1 << 20, sndBuf: 1 << 20, maxConnections: 4096, ...cfg };
  const six = (n) => (family === 6 ? { ip6: `2001:2:0:63::${n}/64` } : {});
  const a = Stack.create({ ...base, mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24", ...six(1) });
  const b = Stack.create({ ...base, mac: "02:00:00:00:00:0b", ip: "198.18.0.2/24", ...six(2) });
  const p = { a, b, link: new MemoryLink(a.port, b.port) };
  // IPv6 addresses are usable once duplicate address detection is over (1 s)
  if (family === 6)
    spin(
      p,
      () => {},
      () => {},
      1050,
    );
  return p;
}

/**
 * Runs the pair on the wall clock for `ms`, calling the handlers; returns the seconds elapsed.
 * Each pass is a host turn of a, the link, a turn of b, the link: frames a sends reach b in the
 * same pass, and b's answer reaches a in the next.
 */
function spin({ a, b, link }, ha, hb, ms, onTurn = () => {}) {
  const t0 = performance.now();
  const end = t0 + ms;
  let t = t0;
  while (t < end) {
    turn(a, ha, t);
    counts.frames += link.step(t);
    turn(b, hb, t);
    counts.frames += link.step(t);
    onTurn();
    t = performance.now();
  }
  return (t - t0) / 1000;
}

/**
 * One host turn of stack `s` at `t`, as NicLoop makes it: the core over the frames in, the app
 * over its events, and the core again if the app queued commands (or the first poll left work),
 * so that its sends leave in this turn (run to completion, as lwIP's harness sends from inside
 * its receive callback).
 */
function turn(s, h, t) {
  const next = s.poll(t);
  counts.polls++;
  counts.events += s.drainEvents(h);
  // (a build without commandsQueued, measured by --baseline, polls twice as its loop did)
  if (!s.commandsQueued || s.commandsQueued() > 0 || next <= t) {
    s.poll(t);
    counts.polls++;
    counts.events += s.drainEvents(h);
  }
}

/**
 * Opens `n` connections from b to a: the first to `port`, the rest spread over `ports` more
 * listening ports from port + 1000 on (one port pair holds at most 16,384: b's ephemeral range).
 */
function connectPair(p, port, n, opts = {}) {
  const conns = { a: [], b: [] };
  const spread = opts.ports ?? 0;
  p.a.listen(port, { backlog: Math.max(128, n) });
  for (let k = 1; k <= spread; k++) p.a.listen(port + 1000 + k, { backlog: 1024 });
  const ha = (ev) => ev.type === "ACCEPTED" && conns.a.push(ev.conn);
  const hb = (ev) => ev.type === "CONNECTED" && conns.b.push(ev.conn);
  // in batches the command ring takes
  for (let k = 0; k < n; k += 500) {
    for (let j = k; j < Math.min(k + 500, n); j++)
      p.b.connect(serverAddr(), j === 0 || spread === 0 ? port : port + 1000 + 1 + (j % spread));
    spin(p, ha, hb, 50);
  }
  // SYNs beyond the ARP queue wait for their retransmission: give set-up a few seconds
  for (let k = 0; k < 100 && (conns.a.length < n || conns.b.length < n); k++) spin(p, ha, hb, 100);
  if (conns.a.length !== n || conns.b.length !== n) throw new Error(`connected ${conns.b.length}/${n}`);
  if (opts.nodelay) for (const c of conns.b) p.b.setNoDelay(c);
  if (opts.nodelay) for (const c of conns.a) p.a.setNoDelay(c);
  return conns;
}

/** The byte stream of the checked runs: byte k is PAT[k % PERIOD] (PAT holds two periods). */
const PERIOD = 65521; // prime, not a multiple of the MSS (as lwIP's harness)
const PAT = Buffer.from(Array.from({ length: 2 * PERIOD }, (_, i) => ((i % PERIOD) * 7 + 13) & 255));

/**
 * Bulk goodput. `checked`: the sender writes the stream's bytes into each buffer it sends and the
 * receiver compares every byte it gets, the work lwIP's harness does; otherwise neither touches
 * the payload (what a zero-copy app moving named buffers costs).
 */
function bulk(seconds, checked = false) {
  const seg = family === 6 ? 1428 : 1448; // one segment's payload: MSS less the timestamp option
  const p = pair();
  const {
    b: [cb],
  } = connectPair(p, 5001, 1);
  let bytes = 0;
  let blocked = false;
  let rcvd = 0; // stream offset of the next received byte (checked runs)
  let sent = 0;
  let bad = 0;
  const ha = (ev) => {
    if (ev.type === "DATA") {
      if (checked) {
        const o = rcvd % PERIOD;
        if (PAT.compare(p.a.pool.view(ev.buf, ev.off, ev.len), 0, ev.len, o, o + ev.len) !== 0) bad++;
        rcvd += ev.len;
      }
      bytes += ev.len;
      p.a.pool.free(ev.buf);
      p.a.recvd(ev.conn, ev.len);
    }
  };
  const hb = (ev) => {
    if (ev.type === "SEND_REFUSED") {
      // refused sends are the last ones made (every later one is refused too): the stream
      // goes on from the first of them
      p.b.pool.free(ev.buf);
      sent -= ev.len;
      blocked = true;
    } else if (ev.type === "WRITABLE") blocked = false;
  };
  const pump = () => {
    while (!blocked && p.b.commandSpace() > 16) {
      const i = p.b.pool.alloc();
      if (checked) {
        const o = sent % PERIOD;
        p.b.pool.view(i, 128, seg).set(PAT.subarray(o, o + seg));
        sent += seg;
      }
      p.b.send(cb, { index: i, offset: 128, length: seg });
    }
  };
  spin(p, ha, hb, 300, pump); // warm up: slow start, JIT
  bytes = 0;
  const s = spin(p, ha, hb, seconds * 1000, pump);
  if (bad) throw new Error(`bulk: ${bad} received chunks differ from what was sent`);
  return (bytes * 8) / s / 1e9;
}

/** rr over `n` connections on a fresh pair: transactions per second. */
function rr(seconds, n) {
  const { tx, ms } = rrRun(seconds, n);
  return tx / (ms / 1000);
}

/**
 * The rr workload: a fresh pair, `n` connections, `exchange` on them; {tx, start, ms}. `hold`
 * (bench/_core-worker.mjs, system pmstack-2workers): see `exchange`.
 */
export function rrRun(seconds, n, hold = null) {
  const p = pair({ nodelay: true });
  const { b: cb } = connectPair(p, 7, n, { nodelay: true });
  return exchange(p, cb, seconds, hold);
}

/**
 * 64 B requests from b on each of `conns` (one in flight each), answered by a, for `seconds`
 * after a warm-up: {tx (transactions), start (when the measured window began, ms on the
 * process-wide clock performance.timeOrigin + performance.now()), ms (its length)}. With `hold`
 * ({ready(), go()}), after the warm-up it calls ready() and keeps the exchange going until go()
 * is true, then measures: how several threads start their windows together.
 */
function exchange(p, conns, seconds, hold = null) {
  let tx = 0;
  const send = (s, conn) => {
    const i = s.pool.alloc();
    s.send(conn, { index: i, offset: 128, length: 64 });
  };
  const ha = (ev) => {
    if (ev.type === "DATA") {
      p.a.pool.free(ev.buf);
      p.a.recvd(ev.conn, ev.len);
      send(p.a, ev.conn); // the response
    }
  };
  const hb = (ev) => {
    if (ev.type === "DATA") {
      p.b.pool.free(ev.buf);
      p.b.recvd(ev.conn, ev.len);
      tx++;
      counts.exchanges++;
      send(p.b, ev.conn); // the next request
    }
  };
  for (const c of conns) send(p.b, c);
  spin(p, ha, hb, 300);
  if (hold) {
    hold.ready();
    while (!hold.go()) spin(p, ha, hb, 1);
  }
  tx = 0;
  const start = performance.timeOrigin + performance.now();
  const s = spin(p, ha, hb, seconds * 1000);
  return { tx, start, ms: s * 1000 };
}

/** Byte k of request `seq` in the checked rr (response byte k: this xor 0xA5), as lwIP's harness. */
const reqByte = (seq, k) => (seq * 31 + k * 7 + 13) & 255;

/**
 * rr_tps_1conn_checked: rr on one connection doing the work lwIP's harness does. b writes each
 * 64-byte request (a pattern of its sequence number) into the buffer it sends; a reads every
 * byte of it and writes the response (each byte xor 0xA5) into a fresh buffer; b compares every
 * byte of the response with what it expects. Requests and responses may arrive in pieces.
 */
function rrChecked(seconds) {
  const p = pair({ nodelay: true });
  const {
    b: [cb],
  } = connectPair(p, 7, 1, { nodelay: true });
  let tx = 0;
  let seq = 0; // the request in flight
  let got = 0; // bytes of its response b has
  let bad = 0;
  let srvHave = 0; // bytes of the request a has
  let resp = -1; // a's response buffer being filled
  let out = null; // its bytes
  const request = () => {
    const i = p.b.pool.alloc();
    const v = p.b.pool.view(i, 128, 64);
    for (let k = 0; k < 64; k++) v[k] = reqByte(seq, k);
    p.b.send(cb, { index: i, offset: 128, length: 64 });
  };
  const ha = (ev) => {
    if (ev.type !== "DATA") return;
    const v = p.a.pool.view(ev.buf, ev.off, ev.len);
    for (let k = 0; k < ev.len; k++) {
      if (resp < 0) {
        resp = p.a.pool.alloc();
        out = p.a.pool.view(resp, 128, 64);
      }
      out[srvHave] = v[k] ^ 0xa5;
      if (++srvHave === 64) {
        p.a.send(ev.conn, { index: resp, offset: 128, length: 64 });
        resp = -1;
        srvHave = 0;
      }
    }
    p.a.pool.free(ev.buf);
    p.a.recvd(ev.conn, ev.len);
  };
  const hb = (ev) => {
    if (ev.type !== "DATA") return;
    const v = p.b.pool.view(ev.buf, ev.off, ev.len);
    for (let k = 0; k < ev.len; k++) if (v[k] !== (reqByte(seq, got + k) ^ 0xa5)) bad++;
    got += ev.len;
    p.b.pool.free(ev.buf);
    p.b.recvd(ev.conn, ev.len);
    if (got === 64) {
      got = 0;
      seq++;
      tx++;
      counts.exchanges++;
      request();
    }
  };
  request();
  spin(p, ha, hb, 300);
  tx = 0;
  const s = spin(p, ha, hb, seconds * 1000);
  if (bad) throw new Error(`rr checked: ${bad} response bytes differ from what was expected`);
  return tx / s;
}

/**
 * rr on one connection while `idle` more established connections sit in both stacks' tables
 * (opened first, in batches the command ring takes, then left alone): what an idle crowd costs
 * the one connection that works.
 */
function rrIdle(seconds, idle) {
  const p = pair({ nodelay: true, maxConnections: idle + 64, synQueue: 4096 });
  const { b: cb } = connectPair(p, 7, idle + 1, { ports: Math.ceil(idle / 15000) });
  const { tx, ms } = exchange(p, [cb[0]], seconds);
  return tx / (ms / 1000);
}

function connections(seconds) {
  // TIME_WAIT kept short so that connection blocks and ports recycle (the lwIP harness aborts
  // its TIME_WAIT connections for the same reason).
  const p = pair({ mslMs: 1 });
  p.a.listen(80, { backlog: 1024 });
  let done = 0;
  const hb = (ev) => {
    if (ev.type === "CONNECTED") p.b.close(ev.conn);
    else if (ev.type === "CLOSED") {
      done++;
      counts.exchanges++;
      p.b.connect(serverAddr(), 80);
    } else if (ev.type === "RESET") p.b.connect(serverAddr(), 80);
  };
  const ha = (ev) => {
    if (ev.type === "PEER_CLOSED") p.a.close(ev.conn);
  };
  p.b.connect(serverAddr(), 80);
  spin(p, ha, hb, 300);
  done = 0;
  const s = spin(p, ha, hb, seconds * 1000);
  return done / s;
}

/**
 * System pmstack-2workers: the rr workload over `n` connections in all, split evenly over
 * `workers` worker_threads (bench/_core-worker.mjs), each running rrRun on a pair of stacks and a
 * MemoryLink of its own, sharing nothing (as a stack per core would). Each warms up and keeps
 * exchanging until every one is ready, then all start on one Atomics flag and run `seconds`.
 * {tps: all transactions over the window from the first start to the last end, per: each
 * worker's own tx/s, cpu: the share of a CPU each worker had over its window}.
 */
async function rrWorkers(seconds, n, workers) {
  const go = new SharedArrayBuffer(4);
  const threads = [];
  for (let k = 0; k < workers; k++) {
    const w = new Worker(new URL("./_core-worker.mjs", import.meta.url), {
      workerData: { n: n / workers, seconds, go },
    });
    const t = { w };
    t.done = new Promise((resolve, reject) => {
      t.ready = new Promise((ready) => w.on("message", (m) => (m.ready ? ready() : resolve(m))));
      w.on("error", reject);
      w.on("exit", (code) => reject(new Error(`pmstack-2workers: worker ${k} exited (${code}) before its result`)));
    });
    t.ready = Promise.race([t.ready, t.done]); // a worker that fails before it is ready fails the wait
    t.exited = new Promise((r) => w.once("exit", r));
    threads.push(t);
  }
  try {
    await Promise.all(threads.map((t) => t.ready));
    Atomics.store(new Int32Array(go), 0, 1);
    const res = await Promise.all(threads.map((t) => t.done));
    await Promise.all(threads.map((t) => t.exited)); // gone before the next run takes the CPUs
    const start = Math.min(...res.map((r) => r.start));
    const end = Math.max(...res.map((r) => r.start + r.ms));
    const tx = res.reduce((a, r) => a + r.tx, 0);
    return {
      tps: tx / ((end - start) / 1000),
      per: res.map((r) => r.tx / (r.ms / 1000)),
      cpu: res.map((r) => r.cpuMs / r.ms),
    };
  } finally {
    for (const t of threads) await t.w.terminate();
  }
}

/** The metrics --prof profiles (those where the fixed cost per exchange shows). */
const PROFILED = ["rr_tps_1conn", "rr_tps_1conn_checked", "conn_per_s"];

/** The metrics pmstack-v6 runs beside pmstack's IPv4 (target: 0.9x of IPv4 or better). */
const V6_METRICS = ["bulk_gbps", "rr_tps_1conn", "rr_tps_100conn"];

/**
 * conn_per_s with `tw` connections in TIME_WAIT on the server's side (a closes first, MSL 10
 * minutes): once its table is full, every new connection takes the block longest in TIME_WAIT.
 * Seven listening ports (odd: b's 16,384 ephemeral ports and the ports it rotates over repeat
 * together only every 114,688 connections), 64 connections in flight.
 */
function connectionsTw(seconds, tw) {
  const ports = [1081, 1082, 1083, 1084, 1085, 1086, 1087];
  const p = pair({ mslMs: 600_000, maxConnections: tw + 64, synQueue: 4096 });
  for (const port of ports) p.a.listen(port, { backlog: 1024 });
  let done = 0;
  let k = 0;
  const next = () => p.b.connect(serverAddr(), ports[k++ % ports.length]);
  const ha = (ev) => {
    if (ev.type === "ACCEPTED") p.a.close(ev.conn);
  };
  const hb = (ev) => {
    if (ev.type === "PEER_CLOSED") p.b.close(ev.conn);
    else if (ev.type === "CLOSED") {
      done++;
      next();
    } else if (ev.type === "RESET" || ev.type === "ERROR") next();
  };
  for (let i = 0; i < 64; i++) next();
  for (let r = 0; r < 900 && p.a.connectionCount() < tw; r++) spin(p, ha, hb, 100);
  if (p.a.connectionCount() < tw) throw new Error(`TIME_WAIT fill: ${p.a.connectionCount()} of ${tw}`);
  done = 0;
  const s = spin(p, ha, hb, seconds * 1000);
  return done / s;
}

const METRICS = [
  ["bulk_gbps", "Gbit/s", (s) => bulk(s)],
  ["bulk_gbps_checked", "Gbit/s", (s) => bulk(s, true)],
  ["rr_tps_1conn", "tx/s", (s) => rr(s, 1)],
  ["rr_tps_1conn_checked", "tx/s", (s) => rrChecked(s)],
  ["rr_tps_1conn_idle100k", "tx/s", (s) => rrIdle(s, 100_000)],
  ["rr_tps_100conn", "tx/s", (s) => rr(s, 100)],
  ["conn_per_s", "conn/s", (s) => connections(s)],
  ["conn_per_s_tw100k", "conn/s", (s) => connectionsTw(s, 100_000)],
];

/** Builds git revision `rev` in a temporary worktree; returns its directory. */
function buildBaseline(rev) {
  const git = (...a) => spawnSync("git", ["-C", repo, ...a], { encoding: "utf8" });
  const sha = git("rev-parse", "--verify", `${rev}^{commit}`).stdout.trim();
  if (!sha) throw new Error(`--baseline: no commit ${rev}`);
  const dir = `${os.tmpdir()}/pmstack-baseline-${sha.slice(0, 12)}`;
  if (!existsSync(`${dir}/build/index.js`)) {
    const w = git("worktree", "add", "--force", "--detach", dir, sha);
    if (w.status !== 0 && !existsSync(dir)) throw new Error(`git worktree add: ${w.stderr}`);
    if (!existsSync(`${dir}/node_modules`)) symlinkSync(`${repo}node_modules`, `${dir}/node_modules`);
    const b = spawnSync("npm", ["run", "build"], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    if (b.status !== 0) throw new Error(`building ${rev}: ${b.stderr.slice(-2000)}`);
  }
  return { dir, sha, remove: () => git("worktree", "remove", "--force", dir) };
}

/**
 * --prof: `metric` run three more times, each pass measuring one thing per exchange (a
 * transaction, or a connection opened and closed): the loop's polls, events and frames, and the
 * bytes the JavaScript heap took (v8.GCProfiler: what every GC found allocated since the last);
 * a V8 CPU profile (node:inspector, sampled every 100 µs); the calls into the Wasm core
 * (PMSTACK_COUNT_CALLS=1 while the pair is made: counted, so slowed). Each pass counts its
 * warm-up and set-up too. Returns a sentence for the notes.
 */
async function profile(metric, f, seconds) {
  const zero = () => {
    for (const k of Object.keys(counts)) counts[k] = 0;
  };
  // pass 1: counters and the heap
  zero();
  const heap = heapRecord();
  const rate = f(seconds);
  const rec = heap.stop();
  const ex = counts.exchanges;
  const per = { polls: counts.polls / ex, events: counts.events / ex, frames: counts.frames / ex };
  // pass 2: the CPU profile
  zero();
  const cpu = await cpuProfile();
  const profRate = f(seconds);
  const prof = await cpu.stop();
  const profEx = counts.exchanges;
  const keep = join(os.tmpdir(), `pmstack-core-${metric}.cpuprofile`);
  writeFileSync(keep, JSON.stringify(prof));
  console.error(`core: profile kept at ${keep}`);
  // pass 3: crossings
  zero();
  const c0 = lib.boundaryCalls();
  process.env.PMSTACK_COUNT_CALLS = "1";
  try {
    f(seconds);
  } finally {
    delete process.env.PMSTACK_COUNT_CALLS;
  }
  const c1 = lib.boundaryCalls();
  const wasm = (c1.wasm - c0.wasm) / counts.exchanges;
  const top = Object.entries(c1.byName)
    .map(([k, v]) => [k.replace(/^wasm:/, ""), (v - (c0.byName[k] ?? 0)) / counts.exchanges])
    .filter(([, v]) => v >= 0.05)
    .sort((x, y) => y[1] - x[1])
    .slice(0, 10);
  const g = (v) => v.toPrecision(3);
  const core = profileTimes(prof).wasm / profEx;
  return (
    `profile of ${metric} (${g(rate)} a second unprofiled): per exchange ${g(per.polls)} polls, ${g(per.events)} events, ` +
    `${g(per.frames)} frames, ${Math.round(rec.allocated / ex)} bytes allocated on the JavaScript heap (${rec.gcs} GCs), ` +
    `${g(wasm)} calls into the Wasm cores (${top.map(([k, v]) => `${k} ${g(v)}`).join(", ")}); ` +
    `the Wasm cores alone ${g(core)} µs per exchange in the profiled pass: ${g(1e6 / core)} exchanges a second if the host cost nothing; ` +
    `profiled pass (${g(profRate)} a second): ${summarizeProfile(prof, profEx, "exchange")}`
  );
}

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

export async function run(args) {
  const opt = (name, d) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : d;
  };
  const seconds = Number(opt("--seconds", 2));
  const only = opt("--metrics", null)?.split(",");
  if (only) for (let k = METRICS.length - 1; k >= 0; k--) if (!only.includes(METRICS[k][0])) METRICS.splice(k, 1);
  const baselineRev = opt("--baseline", null);
  const rows = [];
  const add = (system, metric, value, unit) => rows.push({ system, metric, value, unit });
  const notes = [
    "pmstack: two stacks and the link in one Node process on one core; each frame copied once (the wire), checksums on, MSS 1460 (1448 payload with timestamps), 1 MiB windows",
  ];
  if (baselineRev) {
    const base = buildBaseline(baselineRev);
    const builds = {
      pmstack: current,
      "pmstack-baseline": await import(pathToFileURL(`${base.dir}/build/index.js`).href),
    };
    const rounds = Number(opt("--rounds", 3));
    for (const [metric, unit, f] of METRICS) {
      const got = { pmstack: [], "pmstack-baseline": [] };
      for (let r = 0; r < rounds; r++) {
        // alternate which build goes first, so that neither always runs on a warmer or cooler machine
        const order = r % 2 ? ["pmstack-baseline", "pmstack"] : ["pmstack", "pmstack-baseline"];
        for (const system of order) {
          lib = builds[system];
          got[system].push(f(seconds));
        }
      }
      lib = current;
      for (const system of Object.keys(got)) add(system, metric, median(got[system]), unit);
      notes.push(
        `${metric} by round: pmstack ${got.pmstack.map((v) => v.toPrecision(3)).join(", ")}; baseline ${got["pmstack-baseline"].map((v) => v.toPrecision(3)).join(", ")}`,
      );
    }
    base.remove();
    notes.unshift(
      `pmstack: this tree (${spawnSync("git", ["-C", repo, "describe", "--always", "--dirty"], { encoding: "utf8" }).stdout.trim()}); pmstack-baseline: ${baselineRev} (${base.sha.slice(0, 12)}), built in a temporary worktree; ${rounds} rounds of ${seconds} s per metric, the builds alternating, medians shown`,
    );
    return { rows, ratios: ratios(rows, "pmstack", "pmstack-baseline"), notes, writeAs: "core-baseline" };
  }
  // rounds: pmstack's metrics and lwIP's harness in turn, medians kept (this machine drifts by
  // tens of percent between runs; a round of each side sees the same drift)
  const rounds = Number(opt("--rounds", 3));
  const LWIP = { bulk_gbps: "bulk_gbps", bulk_gbps_checked: "bulk_gbps", rr_tps_1conn: "rr_tps_1conn" };
  LWIP.rr_tps_1conn_checked = "rr_tps_1conn";
  Object.assign(LWIP, { rr_tps_100conn: "rr_tps_100conn", conn_per_s: "conn_per_s" });
  const got = { pmstack: {}, "pmstack-v6": {}, "pmstack-2workers": {}, lwip: {}, "lwip-wasm": {} };
  const perWorker = []; // pmstack-2workers: each round's figures of each worker (rrWorkers)
  let lwipConfig = null;
  let lwipError = null;
  // lwip-wasm: the same harness and lwIP's own sources compiled to Wasm (bench/lwip/wasm.mjs),
  // built once here; a machine without the toolchain gets a note saying what to install
  let wasmError = null;
  const wb = spawnSync(process.execPath, [`${here}lwip/build.mjs`, "--wasm"], { encoding: "utf8", timeout: 600_000 });
  if (wb.status !== 0) {
    wasmError = (wb.stderr || wb.stdout || "").trim().split("\n").pop();
    console.error(`core: no lwip-wasm in this run: ${wasmError}`);
  }
  // one run of lwIP's harness (native, or with --wasm) into got[system]: null, or why it failed
  const harness = (system, flags) => {
    const r = spawnSync(process.execPath, [`${here}lwip/build.mjs`, ...flags, "--run", "--seconds", String(seconds)], {
      encoding: "utf8",
      timeout: 120_000,
    });
    const line = (r.stdout ?? "").split("\n").find((l) => l.startsWith("{"));
    if (r.status !== 0 || !line) return (r.stderr || r.stdout || "").trim().split("\n").pop();
    const l = JSON.parse(line);
    lwipConfig = l.config;
    // its harness always writes and checks the bytes: its one bulk figure stands in both bulk rows
    for (const [metric, from] of Object.entries(LWIP)) (got[system][metric] ??= []).push(l[from]);
    return null;
  };
  for (let round = 0; round < rounds; round++) {
    for (const [metric, , f] of METRICS) {
      (got.pmstack[metric] ??= []).push(f(seconds));
      if (metric === "rr_tps_100conn") {
        const w = await rrWorkers(seconds, 100, 2);
        (got["pmstack-2workers"][metric] ??= []).push(w.tps);
        perWorker.push(w);
      }
      if (!V6_METRICS.includes(metric)) continue;
      family = 6;
      try {
        (got["pmstack-v6"][metric] ??= []).push(f(seconds));
      } finally {
        family = 4;
      }
    }
    lwipError = harness("lwip", []) ?? lwipError;
    if (!wasmError) wasmError = harness("lwip-wasm", ["--wasm"]);
  }
  for (const system of ["pmstack", "pmstack-v6", "pmstack-2workers", "lwip", "lwip-wasm"])
    for (const [metric, unit] of METRICS)
      if (got[system][metric]) add(system, metric, median(got[system][metric]), unit);
  notes.push(
    `${rounds} rounds, each pmstack's runs then lwIP's harness; medians shown. rr_tps_1conn_idle100k: pmstack's rr_tps_1conn with 100,000 more established connections idle in both stacks' tables (lwIP's harness has no such cell: compare it with pmstack's rr_tps_1conn)`,
  );
  for (const [metric] of METRICS)
    notes.push(
      `${metric} by round: pmstack ${got.pmstack[metric].map((v) => v.toPrecision(3)).join(", ")}` +
        (got["pmstack-v6"][metric]
          ? `; pmstack-v6 ${got["pmstack-v6"][metric].map((v) => v.toPrecision(3)).join(", ")}`
          : "") +
        (got["pmstack-2workers"][metric]
          ? `; pmstack-2workers ${got["pmstack-2workers"][metric].map((v) => v.toPrecision(3)).join(", ")} (each worker's: ${perWorker.map((w) => w.per.map((v, k) => `${v.toPrecision(3)} at ${Math.round(w.cpu[k] * 100)}%`).join(" + ")).join(", ")} of a CPU)`
          : "") +
        `; lwip ${(got.lwip[metric] ?? []).map((v) => v.toPrecision(3)).join(", ")}` +
        (got["lwip-wasm"][metric]
          ? `; lwip-wasm ${got["lwip-wasm"][metric].map((v) => v.toPrecision(3)).join(", ")}`
          : ""),
    );
  notes.push(
    "pmstack-v6: the same stacks and app over IPv6 (40-byte headers: MSS 1440, 1428 payload with timestamps), measured right after pmstack's IPv4 run of the same metric in each round; the app sends one segment's payload per buffer (1,428 bytes); its ratio row compares it with pmstack over IPv4 (target 0.9x or better)",
  );
  if (got["pmstack-2workers"].rr_tps_100conn)
    notes.push(
      `pmstack-2workers: rr_tps_100conn's workload on two threads (worker_threads), each with its own pair of stacks and MemoryLink and 50 of the 100 connections, sharing nothing (as a stack per core would); both warm up, start on one Atomics flag and run the same ${seconds} s; the figure is both threads' transactions over the window from the first start to the last end; measured right after pmstack's run of rr_tps_100conn in each round; each worker's share of a CPU over its window is in the by-round note (below 100%: something else ran on the machine then). This machine has ${os.cpus().length} CPUs, so the ratio to pmstack's one thread has a ceiling of ${os.cpus().length}x (target 1.7x)`,
    );
  if (lwipConfig) {
    const l = { config: lwipConfig };
    notes.push(
      `lwip ${l.config.lwip_version} (Debian liblwip-dev), native -O2, raw API, ${l.config.link}, MSS ${l.config.tcp_mss}, window ${l.config.tcp_wnd} (the largest its build allows), checksums ${l.config.checksums}; its sender copies the stream's bytes in (TCP_WRITE_FLAG_COPY) and its receiver compares every byte, so its one bulk figure stands in both bulk rows`,
      "rr: pmstack's messages are 64-byte buffers sent unwritten and freed unread; lwIP's harness writes and compares its 64 bytes",
      "bulk_gbps: pmstack's app neither writes nor reads the payload (buffers moved by name); bulk_gbps_checked: its sender writes each buffer's 1,448 bytes of the stream and its receiver compares every byte (Buffer.compare on the PM view), the work lwIP's harness does",
    );
  }
  if (lwipError) notes.push(`lwip harness failed in a round: ${lwipError}`);
  if (wasmError) notes.push(`lwip-wasm: not measured in this run (${wasmError})`);
  else
    notes.push(
      "lwip-wasm: lwIP's harness and lwIP's own C sources (Debian's source package of the installed liblwip-dev: same version, patches and lwipopts.h) compiled by clang 19 -O2 for wasm32-wasi and run under node:wasi on the V8 that runs pmstack's cores, right after the native harness in each round; stack, app and wire are all Wasm, with no host code between them; its port (bench/lwip/wasm-port.c) makes SYS_ARCH_PROTECT and the core-lock check no-ops where the native build takes a pthread mutex. Its ratio to lwip is what the Wasm engine costs lwIP's own code on this machine; pmstack's ratio to it compares two Wasm stacks",
    );
  if (args.includes("--prof"))
    for (const [metric, , f] of METRICS) if (PROFILED.includes(metric)) notes.push(await profile(metric, f, seconds));
  return {
    rows,
    ratios: [
      ...ratios(rows, "pmstack", "lwip"),
      ...ratios(rows, "pmstack-v6", "pmstack"),
      ...ratios(rows, "pmstack-2workers", "pmstack"),
      ...ratios(rows, "lwip-wasm", "lwip"),
      ...ratios(rows, "pmstack", "lwip-wasm"),
    ],
    notes,
  };
}

// bench/durable: the headline benchmark. Durable writes over the network: pmstack's HTTP server
// and key-value store (PM log, one group commit per loop turn) beside Node servers that append to
// a file with fdatasync per request and redis-server with appendfsync always, all in one run, on
// the same medium, everything inside two network namespaces this benchmark makes. It runs twice,
// once per medium: tmpfs (/dev/shm: PM emulated by DRAM, as PASTE's evaluation) and the disk
// (/var/tmp, or --disk DIR: ext4 here), every system's files on that medium in its run (the
// pmstack pools, the Node logs, redis' AOF); results go to bench/results/durable.json (tmpfs)
// and bench/results/durable-disk.json (the disk), same systems and metric names. --dir DIR runs
// one medium only (the file it writes follows DIR's medium).
//   client ns  wrk / redis-benchmark (pinned to CPU 0 unless --no-pin)
//   server ns  the servers, each its own process (pinned to the last CPU)
// Links (addresses in 198.18.9.0/24 and 198.18.10.0/24 only):
//   veth pmdk0 (client ns, 198.18.9.1) <-> pmds0 (server ns, 198.18.9.2): node-http, node-net, redis
//   TAP pmdt0 / pmdt1 in the client ns (198.18.10.1/28, .17/28): pmstack httpd at .2, kv at .18
//   veth pmdxk0 / pmdxk1 (client ns, 198.18.10.33/28, .49/28) <-> pmdxp0 / pmdxp1 (server ns,
//   an AF_XDP socket each): pmstack httpd at .34, kv at .50
//   httpd with two workers: multi-queue TAP pmdt3 (198.18.10.97/28, httpd at .98)
//   kv with two workers: multi-queue TAP pmdt2 (198.18.10.65/28, kv at .66) and a veth pair of
//   two queues pmdxk2 <-> pmdxp2 (198.18.10.81/28, kv at .82, an AF_XDP socket per queue, pmdxk2
//   steered by the addon's egress program)
// Systems: pmstack-httpd-tap, pmstack-httpd-xdp, pmstack-httpd-tap-2workers, node-http, node-net
//          (HTTP POST, wrk),
//          pmstack-kv-tap, pmstack-kv-xdp, pmstack-kv-tap-2workers, pmstack-kv-xdp-2workers,
//          redis-aof-always (RESP SET/GET, redis-benchmark).
// All servers of a kind run at once; each cell (connections x size) runs every system back to
// back, in an order that rotates, `reps` times; the best repetition (req/s) of each system is
// kept, with its latency and CPU: noise from the shared machine hits every system alike.
// HTTP metrics per cell (c = connections 1/10/50/100, body 64 B or 1 KiB): req_s_c50_1k,
// p50_us_c50_1k, p99_us_c50_1k (wrk --latency, via bench/durable-post.lua), cpu_us_per_req_c50_1k
// (server process utime+stime from /proc/PID/stat over the cell / requests), client_cpu_us_per_req_c50_1k
// (the pinned client CPU's busy time from /proc/stat over the cell / requests), and
// syscalls_per_req_c50_1k (a separate short run under `strace -c -f -p PID`); pmstack also
// nic_syscalls_per_req (its NIC syscall counter in the measured cells). RESP metrics:
// set_req_s_c50_p1, set_p50_us_c50_p1, set_p99_us_c50_p1, set_cpu_us_per_req_c50_p1,
// set_client_cpu_us_per_req_c50_p1 and get_*
// (redis-benchmark -d 1024 -r 10000, clients 1/10/50, pipeline 1/16), set_syscalls_per_req_c50_p1.
// Objects (bodies of 64 KiB, 1 MiB, 16 MiB; PUT through wrk with bench/durable-put.lua to a
// few keys in turn, then GET of them; pmstack-httpd-* against node-http, which streams a large
// body to its log as it arrives and fdatasyncs once, and streams a GET from the file):
// put_mb_s_1m, put_p50_us_1m, put_p99_us_1m, put_cpu_us_per_mb_1m, get_* likewise; RESP SET and
// GET of 1 MiB values at 4 clients against redis: set_mb_s_1m, set_p50_us_1m, ... The device's
// floor on the medium: fdatasync_us and seq_write_mb_s (system `device`).
// TLS cells (after the others; --no-tls leaves them out): pmstack-httpd-tls (httpd's TLS port
// over TAP, node:tls under the connection layer) against node-https (node:https, the same
// fdatasync-per-request server), 1 KiB POST at 50 connections (wrk over https): req_s_c50_1k, p50,
// p99, cpu_us_per_req; and pmstack-kv-tls against redis-tls (redis-server --tls-port, appendfsync
// always), SET 1 KiB at 50 clients (redis-benchmark --tls): set_req_s_c50_p1, p50, p99, cpu. A
// throwaway CA and server certificate (ECDSA P-256) are made with openssl for the run.
// Writes docs/durable-cdf.svg and docs/durable-disk-cdf.svg (latency CDFs at 50 connections).
//
// `npm run bench -- durable [quick] [--no-pin] [--only a,b] [--conns 50] [--sizes 1k] [--reps N]
// [--dir DIR | --disk DIR] [--media tmpfs,disk] [--no-objects] [--no-tls] [--node-io sync|async] [--prof]
// [--as NAME]`; --as writes the (first medium's) results as bench/results/NAME.json and no CDF plot
// (a run of a few systems kept apart from the headline files, e.g. durable-workers);
// PMSTACK_BENCH_QUICK=1 is the same as "quick"
// (short cells, one repetition: a smoke run). --prof runs pmstack-httpd-tap (POST 1 KiB, 50
// connections) and pmstack-kv-tap (SET 1 KiB at one client; GET 1 KiB at 50 clients, pipeline
// 16, over the cells' 10,000 keys and over 100) once more, with redis and resp-floor through the
// kv cells after it, each cell in a server of its own that profiles itself over the measured
// requests (V8 CPU profile, heap allocation, loop counters; then a pass counting calls into the
// core and the addon), and adds what each request costs to the notes (the profiles stay in
// os.tmpdir()).
import { execFileSync, spawn } from "node:child_process";
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Netns, netnsUnavailable } from "../test/lib/netns.mjs";
import { cdfSvg, formatDurable, durableRatios, profileTimes, summarizeProfile } from "./_durable-report.mjs";
import { cpuBusyUs, cpuSplitUs, cpuUs, threadCpuUs, deviceFloor, durableWrkResult, straceCount } from "./_lib.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const SERVER = join(here, "_durable-server.mjs");
const NODE = join(here, "_durable-node.mjs");
const LUA = join(here, "durable-post.lua");
const FS_NAMES = { 0x01021994: "tmpfs", 0xef53: "ext4", 0x58465342: "xfs", 0x9123683e: "btrfs" };

const KERNEL = { client: "198.18.9.1", server: "198.18.9.2" };
/** pmstack's links: the kernel end in the client ns, pmstack's address and MAC. */
const LINKS = {
  "httpd-tap": { dev: "pmdt0", client: "198.18.10.1", server: "198.18.10.2", mac: "02:00:00:00:0a:02" },
  "kv-tap": { dev: "pmdt1", client: "198.18.10.17", server: "198.18.10.18", mac: "02:00:00:00:0a:12" },
  "httpd-xdp": {
    dev: "pmdxk0",
    peer: "pmdxp0",
    client: "198.18.10.33",
    server: "198.18.10.34",
    mac: "02:00:00:00:0a:22",
  },
  "kv-xdp": { dev: "pmdxk1", peer: "pmdxp1", client: "198.18.10.49", server: "198.18.10.50", mac: "02:00:00:00:0a:32" },
  // pmstack kv with two workers: a multi-queue TAP device, one queue per worker thread
  "kv-tap2w": { dev: "pmdt2", client: "198.18.10.65", server: "198.18.10.66", mac: "02:00:00:00:0a:42", mq: true },
  // pmstack httpd with two workers, likewise on a multi-queue TAP device
  "httpd-tap2w": { dev: "pmdt3", client: "198.18.10.97", server: "198.18.10.98", mac: "02:00:00:00:0a:62", mq: true },
  // and on two AF_XDP queues of a veth pair, its kernel end steered
  "kv-xdp2w": {
    dev: "pmdxk2",
    peer: "pmdxp2",
    client: "198.18.10.81",
    server: "198.18.10.82",
    mac: "02:00:00:00:0a:52",
    queues: 2,
  },
};
const HTTP_CONNS = [1, 10, 50, 100];
const BODIES = [
  [64, "64"],
  [1024, "1k"],
];
const RESP_CLIENTS = [1, 10, 50];
const PIPELINES = [1, 16];
const WRK_KEYS = 16384; // per wrk thread: keys wrap, the stores stay bounded
const RESP_KEYS = 10000;
/** The profile's hot GET cell: few enough keys that every server keeps them in the CPU's caches. */
const HOT_KEYS = 100;
/** Object cells: body size, tag, keys written in turn, connections. */
const OBJECTS = [
  [65536, "64k", 256, 4],
  [1 << 20, "1m", 32, 4],
  [16 << 20, "16m", 4, 2],
];
const OBJ_PUT = join(here, "durable-put.lua");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function parseArgs(args) {
  const quick = args.includes("quick") || process.env.PMSTACK_BENCH_QUICK === "1";
  const o = {
    quick,
    pin: !args.includes("--no-pin"),
    prof: args.includes("--prof"),
    only: null,
    dir: null,
    disk: "/var/tmp",
    media: ["tmpfs", "disk"],
    objects: !args.includes("--no-objects"),
    tls: !args.includes("--no-tls"),
    nodeIo: "async",
    reps: quick ? 1 : 3,
    conns: null,
    sizes: null,
  };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--only") o.only = new Set(args[++i].split(","));
    else if (args[i] === "--dir") o.dir = args[++i];
    else if (args[i] === "--as") o.as = args[++i];
    else if (args[i] === "--disk") o.disk = args[++i];
    else if (args[i] === "--media") o.media = args[++i].split(",");
    else if (args[i] === "--node-io") o.nodeIo = args[++i];
    else if (args[i] === "--reps") o.reps = Number(args[++i]);
    else if (args[i] === "--conns") o.conns = args[++i].split(",").map(Number);
    else if (args[i] === "--sizes") o.sizes = args[++i].split(",");
  }
  return o;
}

/** Packets the kernel dropped because a CPU's backlog queue was full (all CPUs, read-only). */
function backlogDrops() {
  return readFileSync("/proc/net/softnet_stat", "utf8")
    .trim()
    .split("\n")
    .reduce((n, l) => n + parseInt(l.split(/\s+/)[1], 16), 0);
}

/** pmstack's TCP retransmission counters between two STATS, as text, or "" if none moved. */
function tcpDelta(a, b) {
  const d = (k) => (b.tcp?.[k] ?? 0) - (a.tcp?.[k] ?? 0);
  const rto = d("TCP_RTO");
  const rtx = d("TCP_RETRANSMITS");
  const fast = d("TCP_FAST_RTX");
  const zwp = d("TCP_ZWP");
  const n = (k) => (b.nicStats?.[k] ?? 0) - (a.nicStats?.[k] ?? 0);
  const k = (f) => (b.nicStats?.xdpKernel?.[f] ?? 0) - (a.nicStats?.xdpKernel?.[f] ?? 0);
  const nic =
    `NIC tx dropped ${n("txDropped")}, tx errors ${n("txErrors")}, rx no room ${n("rxNoRoom")}` +
    (b.nicStats?.xdpKernel
      ? `; AF_XDP kernel drops ${k("rxDropped")} (FILL ring empty ${k("rxFillRingEmpty")}, RX ring full ${k("rxRingFull")})`
      : "");
  return rto || rtx || fast || zwp
    ? `${rtx} retransmitted (${rto} RTO, ${fast} fast), ${zwp} zero-window probes; ${nic}`
    : "";
}

/** Keeps the last 4 KB a child wrote to stderr in p.err (for error messages). */
function watchErr(p) {
  p.err = "";
  p.stderr?.on("data", (d) => (p.err = (p.err + d).slice(-4096)));
}

/** Throws if a server has exited, with what it printed. */
function checkAlive(srv) {
  const p = srv.p;
  if (p.exitCode !== null || p.signalCode !== null)
    throw new Error(`${srv.system} exited (${p.exitCode ?? p.signalCode}): ${p.err}`);
}

async function waitOut(p, re, ms = 15000) {
  const end = Date.now() + ms;
  while (!re.test(p.out)) {
    if (p.exitCode !== null || p.signalCode !== null)
      throw new Error(`process exited (${p.exitCode ?? p.signalCode}) before ${re}: ${p.out}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${re}: ${p.out}`);
    await sleep(10);
  }
  return re.exec(p.out);
}

async function stopProc(p, ms = 5000) {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill("SIGTERM");
  const t = setTimeout(() => p.kill("SIGKILL"), ms);
  await p.done;
  clearTimeout(t);
}

export async function run(args = []) {
  const o = parseArgs(args);
  const why = netnsUnavailable();
  if (why) throw new Error(`bench/durable needs network namespaces: ${why}`);
  const bases = o.dir ? [o.dir] : o.media.map((m) => (m === "tmpfs" ? "/dev/shm" : o.disk));
  const results = [];
  for (const base of bases) {
    const r = await runMedium(o, base);
    console.log(formatDurable(r));
    results.push(r);
  }
  // tmpfs is durable.json (as bench/run.mjs writes the returned result); a disk is durable-disk.json
  const main = results.find((r) => r.medium === "tmpfs") ?? results[0];
  // a run of some systems kept apart (--as NAME: bench/results/NAME.json, one medium)
  if (o.as) return { ...main, extra: [], writeAs: o.as };
  const extra = results.filter((r) => r !== main).map((r) => ({ name: r.bench, result: r }));
  if (main.medium !== "tmpfs") {
    // one medium, a disk: written as durable-disk.json only
    return { ...main, extra: [], writeAs: main.bench };
  }
  return { ...main, extra };
}

async function runMedium(o, base) {
  const T = o.quick
    ? { wrkS: 1, warmS: 1, straceS: 1, respS: 0.5, probeN: 1000, objS: 1 }
    : { wrkS: 3, warmS: 2, straceS: 2, respS: 1.5, probeN: 3000, objS: 4 };
  const rows = [];
  const notes = [];
  const cdf = { http: {}, resp: {} };
  const drops = [];
  const timers = []; // pmstack's TCP retransmissions / zero-window probes in the kept repetitions
  const add = (system, metric, value, unit) => {
    if (Number.isFinite(value)) rows.push({ system, metric, value, unit });
  };
  const want = (s) => !o.only || o.only.has(s);
  const CPU = o.pin ? { client: "0", server: String(os.cpus().length - 1) } : null;
  const wrap = (side, cmd, a) => (CPU ? ["taskset", ["-c", CPU[side], cmd, ...a]] : [cmd, a]);
  const load0 = os.loadavg();
  const t0 = Date.now();

  const tmp = mkdtempSync(join(base, "pmstack-bench-durable-"));
  const medium = FS_NAMES[statfsSync(tmp).type] ?? "disk";
  const bench = medium === "tmpfs" ? "durable" : "durable-disk";
  console.error(`durable: medium ${base} (${medium})`);
  {
    const f = deviceFloor(tmp, o.quick ? 0.2 : 1);
    add("device", "fdatasync_us", f.fdatasyncUs, "us");
    add("device", "seq_write_mb_s", f.seqMBs, "MB/s");
  }
  const C = new Netns("durc");
  const S = new Netns("durs");
  const servers = new Set();
  try {
    // kernel veth for the baselines
    C.ip(["link", "add", "pmdk0", "type", "veth", "peer", "name", "pmds0", "netns", S.name]);
    C.ip(["addr", "add", `${KERNEL.client}/24`, "dev", "pmdk0"]);
    C.ip(["link", "set", "pmdk0", "up"]);
    S.ip(["addr", "add", `${KERNEL.server}/24`, "dev", "pmds0"]);
    S.ip(["link", "set", "pmds0", "up"]);
    for (const l of Object.values(LINKS)) {
      if (l.peer) {
        // veth for AF_XDP: one queue each way (one per worker), pmstack's MAC on its end
        const q = String(l.queues ?? 1);
        const qs = ["numtxqueues", q, "numrxqueues", q];
        C.ip(["link", "add", l.dev, ...qs, "type", "veth", "peer", "name", l.peer, "netns", S.name, ...qs]);
        // AF_XDP gives the receiver no checksum metadata: the kernel side must send complete
        // checksums (tx off also turns TSO off; an XDP socket takes no superframes), as in bench/nic
        const eth = C.run("ethtool", ["-K", l.dev, "tx", "off"]);
        if (eth.status !== 0) throw new Error(`ethtool -K ${l.dev} tx off: ${eth.stderr || eth.error}`);
        S.ip(["link", "set", l.peer, "address", l.mac]);
        S.ip(["link", "set", l.peer, "up"]);
      } else {
        // a persistent TAP device, up before pmstack attaches (a write to a TAP that is down fails with EIO)
        C.ip(["tuntap", "add", "dev", l.dev, "mode", "tap", ...(l.mq ? ["multi_queue"] : [])]);
      }
      C.ip(["addr", "add", `${l.client}/28`, "dev", l.dev]);
      C.ip(["link", "set", l.dev, "up"]);
    }

    // ---------- clients ----------
    /** wrk in the client namespace with a script that prints a DURABLE line: that line, parsed. */
    async function runWrk(args) {
      const [cmd, a] = wrap("client", "wrk", args);
      const p = C.spawn(cmd, a);
      p.stdin.end();
      const r = await p.done;
      return durableWrkResult(r);
    }

    function wrk(url, conns, size, secs) {
      const threads = CPU ? 1 : Math.min(2, conns);
      return runWrk([
        ...["-t", String(threads), "-c", String(conns), "-d", `${secs}s`, "--timeout", "5s", "--latency"],
        ...["-s", LUA, url, "--", String(size), String(WRK_KEYS)],
      ]);
    }

    async function redisBench(host, port, cmd, clients, pipeline, n, size = 1024, keys = RESP_KEYS, tls = false) {
      const [c, a] = wrap("client", "redis-benchmark", [
        ...(tls ? ["--tls", "--cacert", certs().ca] : []),
        ...["-h", host, "-p", String(port), "-t", cmd, "-d", String(size), "-c", String(clients)],
        ...["-P", String(pipeline), "-n", String(n), "-r", String(keys), "--precision", "3"],
      ]);
      const p = C.spawn(c, a);
      p.stdin.end();
      const r = await p.done;
      const text = r.stdout.replace(/\r/g, "\n");
      const tp = /throughput summary:\s*([\d.]+) requests per second/.exec(text);
      const lat = /latency summary \(msec\):\s*\n\s*avg\s+min\s+p50\s+p95\s+p99\s+max\s*\n\s*([\d.\s]+)\n/.exec(text);
      if (!tp || !lat)
        throw new Error(`redis-benchmark failed (${r.status ?? r.signal}): ${text.slice(-800)} ${r.stderr}`);
      const [, , p50, , p99] = lat[1].trim().split(/\s+/).map(Number);
      const pct = [...text.matchAll(/^\s*([\d.]+)% <= ([\d.]+) milliseconds/gm)].map((m) => [+m[1], +m[2] * 1000]);
      return { rps: +tp[1], p50: p50 * 1000, p99: p99 * 1000, requests: n, pct };
    }

    /** wrk with bench/durable-put.lua: PUT (or GET) of `size`-byte objects to `keys` keys in turn. */
    async function wrkObj(url, method, size, keys, conns, secs) {
      const j = await runWrk([
        ...["-t", "1", "-c", String(conns), "-d", `${secs}s`, "--timeout", "30s", "--latency"],
        ...["-s", OBJ_PUT, url, "--", method, String(size), String(keys)],
      ]);
      j.mbs = (j.requests * size) / 1048576 / (j.duration_us / 1e6);
      return j;
    }

    // ---------- servers ----------
    async function startPmstack(app, nic, tls = null, workers = 1, env = null) {
      const l = LINKS[`${app}-${nic}${workers > 1 ? `${workers}w` : ""}`];
      const path = join(tmp, `${app}-${nic}${workers > 1 ? `-${workers}w` : ""}.pm`);
      // a fresh pool (the TLS cells restart each server): its journal goes too, or the new
      // pool would refuse a journal left without its pool (EJOURNAL); a worker set's pools and
      // its count too
      for (const f of [path, `${path}.workers`, ...Array.from({ length: workers }, (_, i) => `${path}.w${i}`)]) {
        rmSync(f, { force: true });
        rmSync(`${f}.journal`, { force: true });
      }
      const cfg = {
        app,
        nic,
        path,
        buffers: 262144, // 512 MiB: the object cells hold a few 16 MiB bodies and their uploads
        metaBytes: 32 << 20,
        mac: l.mac,
        ip: `${l.server}/28`,
        tap: { name: l.dev, netns: C.path },
        xdp: { ifname: l.peer, netns: S.path, ...(workers > 1 ? { peer: l.dev, peerNetns: C.path } : {}) },
        ...(tls ? { tls } : {}),
        ...(workers > 1 ? { workers } : {}),
      };
      for (let attempt = 0; ; attempt++) {
        // several workers run on every CPU (the client's pinned one included): pinned to the
        // server's CPU, they would share one
        const [cmd, a] =
          workers > 1
            ? [process.execPath, [SERVER, JSON.stringify(cfg)]]
            : wrap("server", process.execPath, [SERVER, JSON.stringify(cfg)]);
        const p = S.spawn(cmd, a, env ? { env: { ...process.env, ...env } } : {});
        servers.add(p);
        watchErr(p);
        try {
          await waitOut(p, /READY (\S+) (\d+)/, 20000);
        } catch (e) {
          servers.delete(p);
          await stopProc(p);
          const r = await p.done;
          if (/UNAVAILABLE/.test(r.stdout)) return { unavailable: r.stdout.trim() };
          if (nic === "xdp" && /EBUSY|busy/i.test(r.stderr) && attempt < 4) {
            await sleep(1200);
            continue;
          }
          throw new Error(`${app}-${nic} did not start: ${e.message} ${r.stderr}`);
        }
        const port = tls ? tls.port : app === "kv" ? 6379 : 80;
        return { p, pid: p.pid, host: l.server, port, pmstack: true, tls: !!tls };
      }
    }

    /**
     * Sends a command line to a pmstack server and waits up to `ms` for its answer, a new line
     * matching `re` (a regular expression with the g flag): the match, or null in time.
     */
    async function ask(srv, line, re, ms) {
      const count = () => (srv.p.out.match(re) ?? []).length;
      const before = count();
      srv.p.stdin.write(`${line}\n`);
      for (const end = Date.now() + ms; count() <= before;) {
        if (Date.now() > end) return null;
        await sleep(5);
      }
      const all = [...srv.p.out.matchAll(re)];
      return all[all.length - 1];
    }

    async function stats(srv) {
      const m = await ask(srv, "stats", /STATS (\{.*\})\n/g, 5000);
      return m && JSON.parse(m[1]);
    }

    async function stopServer(srv) {
      if (!srv?.p) return;
      if (srv.pmstack) {
        srv.p.stdin.write("quit\n");
        const t = setTimeout(() => srv.p.kill("SIGKILL"), 5000);
        await srv.p.done;
        clearTimeout(t);
      } else await stopProc(srv.p);
      servers.delete(srv.p);
    }

    async function startNode(kind) {
      const port = { http: 8080, net: 8081, https: 8443, "resp-floor": 6381 }[kind];
      const logfile = join(tmp, `${kind}.log`);
      const [cmd, a] = wrap("server", process.execPath, [NODE, kind, KERNEL.server, String(port), logfile, o.nodeIo]);
      const env =
        kind === "https" ? { ...process.env, PMSTACK_TLS_CERT: certs().cert, PMSTACK_TLS_KEY: certs().key } : undefined;
      const p = S.spawn(cmd, a, env ? { env } : {});
      servers.add(p);
      watchErr(p);
      await waitOut(p, /LISTENING (\d+)/);
      return { p, pid: p.pid, host: KERNEL.server, port, tls: kind === "https" };
    }

    /** A throwaway CA and a server certificate for every address the TLS servers use (made once). */
    let certFiles = null;
    function certs() {
      if (certFiles) return certFiles;
      const d = join(tmp, "tls");
      mkdirSync(d);
      const ssl = (a) => execFileSync("openssl", a, { cwd: d, stdio: ["ignore", "pipe", "pipe"] });
      const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
      ssl(["req", "-x509", ...ec, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench CA"]);
      ssl(["req", ...ec, "-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=bench"]);
      const ips = [KERNEL.server, ...Object.values(LINKS).map((l) => l.server)];
      writeFileSync(join(d, "san.ext"), `subjectAltName=${ips.map((x) => `IP:${x}`).join(",")}\n`);
      ssl(
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial"].concat([
          "-out",
          "cert.pem",
          "-days",
          "2",
          "-extfile",
          "san.ext",
        ]),
      );
      chmodSync(join(d, "key.pem"), 0o600);
      certFiles = { ca: join(d, "ca.pem"), cert: join(d, "cert.pem"), key: join(d, "key.pem") };
      return certFiles;
    }

    async function startRedisTls() {
      const dir = join(tmp, "redis-tls");
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      const c = certs();
      const [cmd, a] = wrap("server", "redis-server", [
        ...["--bind", KERNEL.server, "--port", "0", "--tls-port", "6380", "--tls-cert-file", c.cert],
        ...["--tls-key-file", c.key, "--tls-ca-cert-file", c.ca, "--tls-auth-clients", "no"],
        ...["--appendonly", "yes", "--appendfsync", "always"],
        ...["--save", "", "--dir", dir, "--protected-mode", "no", "--daemonize", "no", "--logfile", ""],
      ]);
      const p = S.spawn(cmd, a);
      servers.add(p);
      watchErr(p);
      await waitOut(p, /Ready to accept connections/);
      return { p, pid: p.pid, host: KERNEL.server, port: 6380, tls: true };
    }

    async function startRedis() {
      const dir = join(tmp, "redis");
      rmSync(dir, { recursive: true, force: true });
      mkdirSync(dir);
      const [cmd, a] = wrap("server", "redis-server", [
        ...["--bind", KERNEL.server, "--port", "6379", "--appendonly", "yes", "--appendfsync", "always"],
        ...["--save", "", "--dir", dir, "--protected-mode", "no", "--daemonize", "no", "--logfile", ""],
      ]);
      const p = S.spawn(cmd, a);
      servers.add(p);
      watchErr(p);
      await waitOut(p, /Ready to accept connections/);
      return { p, pid: p.pid, host: KERNEL.server, port: 6379 };
    }

    /** Waits until the server answers (pmstack: ARP, then the first request). */
    async function ready(srv, http) {
      for (let k = 0; k < 50; k++) {
        const tls = srv.tls ? ["--cacert", certs().ca] : [];
        const r = http
          ? await C.spawn("curl", [
              ...["-sS", "--max-time", "1", "-o", "/dev/null", "-w", "%{http_code}", ...tls],
              `http${srv.tls ? "s" : ""}://${srv.host}:${srv.port}/`,
            ]).done
          : await C.spawn("redis-cli", [
              ...(srv.tls ? ["--tls", ...tls] : []),
              "-h",
              srv.host,
              "-p",
              String(srv.port),
              "ping",
            ]).done;
        if (http ? /^(200|404|405)$/.test(r.stdout.trim()) : /PONG/.test(r.stdout)) return;
        await sleep(100);
      }
      throw new Error(`server at ${srv.host}:${srv.port} does not answer`);
    }

    /** Starts the systems of one kind (those wanted and available), each checked to answer. */
    async function startAll(list, http) {
      const live = [];
      for (const [system, start] of list) {
        if (!want(system)) continue;
        const srv = await start();
        if (srv.unavailable) {
          notes.push(`${system}: not run (${srv.unavailable})`);
          continue;
        }
        srv.system = system;
        live.push(srv);
        await ready(srv, http);
      }
      return live;
    }

    /**
     * Runs `cell(srv)` for every live server, `reps` times in rotating order; keeps the best
     * repetition per server (highest rps). Returns Map(system -> result).
     */
    async function interleave(live, cell, k) {
      const best = new Map();
      for (let rep = 0; rep < o.reps; rep++) {
        for (let j = 0; j < live.length; j++) {
          const srv = live[(j + rep + k) % live.length];
          let r;
          try {
            r = await cell(srv);
          } catch (e) {
            checkAlive(srv);
            throw new Error(`${srv.system}: ${e.message} (server alive; stderr: ${srv.p.err})`);
          }
          checkAlive(srv);
          const b = best.get(srv.system);
          if (!b || r.rps > b.rps) best.set(srv.system, r);
        }
      }
      return best;
    }

    // ---------- HTTP ----------
    const httpLive = await startAll(
      [
        ["node-http", () => startNode("http")],
        ["node-net", () => startNode("net")],
        ["pmstack-httpd-tap", () => startPmstack("httpd", "tap")],
        ["pmstack-httpd-xdp", () => startPmstack("httpd", "xdp")],
        ["pmstack-httpd-tap-2workers", () => startPmstack("httpd", "tap", null, 2)],
      ],
      true,
    );
    if (httpLive.some((s) => s.system === "pmstack-httpd-tap-2workers"))
      notes.push(
        `pmstack-httpd-tap-2workers: pmstack httpd --workers 2 (two worker threads, each its own queue of one multi-queue TAP device, pool and shard of the keys; a request for another worker's key runs there: its body stays in the receiving worker's pool, lent to the owner, and a GET's object comes back in copied pieces unless the asking worker lent it), unpinned: its threads share the machine's ${os.cpus().length} CPUs with the client pinned to CPU ${CPU?.client ?? "(none)"}`,
      );
    try {
      for (const srv of httpLive) await wrk(`http://${srv.host}:${srv.port}/`, 10, 1024, T.warmS); // JIT, ARP
      let k = 0;
      for (const [size, tag] of BODIES.filter(([, t]) => !o.sizes || o.sizes.includes(t))) {
        for (const c of HTTP_CONNS.filter((x) => !o.conns || o.conns.includes(x))) {
          const m = `c${c}_${tag}`;
          const best = await interleave(
            httpLive,
            async (srv) => {
              const s0 = srv.pmstack ? await stats(srv) : null;
              const cpu0 = cpuUs(srv.pid);
              const cc0 = cpuBusyUs(CPU?.client ?? null);
              const d0 = backlogDrops();
              const w = await wrk(`http://${srv.host}:${srv.port}/`, c, size, T.wrkS);
              w.cpu = cpuUs(srv.pid) - cpu0;
              w.clientCpu = cpuBusyUs(CPU?.client ?? null) - cc0;
              w.drops = backlogDrops() - d0;
              const s1 = srv.pmstack ? await stats(srv) : null;
              if (s0 && s1) w.tcp = tcpDelta(s0, s1);
              if (s0 && s1) {
                const reqs = s1.app.puts - s0.app.puts;
                w.nic = (s1.loop.syscalls - s0.loop.syscalls) / reqs;
                w.turns = (s1.loop.turns - s0.loop.turns) / reqs;
                w.perCommit = reqs / (s1.app.commits - s0.app.commits);
              }
              return w;
            },
            k++,
          );
          for (const [system, w] of best) {
            add(system, `req_s_${m}`, w.rps, "1/s");
            add(system, `p50_us_${m}`, w.pct.find((x) => x[0] === 50)[1], "us");
            add(system, `p99_us_${m}`, w.pct.find((x) => x[0] === 99)[1], "us");
            add(system, `cpu_us_per_req_${m}`, w.cpu / w.requests, "us");
            if (Number.isFinite(w.clientCpu)) add(system, `client_cpu_us_per_req_${m}`, w.clientCpu / w.requests, "us");
            if (w.nic !== undefined) add(system, `nic_syscalls_per_req_${m}`, w.nic, "calls");
            if (w.drops) drops.push(`${system} ${m}: ${w.drops}`);
            if (w.tcp) timers.push(`${system} ${m}: ${w.tcp}`);
            if (w.errCount) notes.push(`${system} ${m}: wrk errors ${JSON.stringify(w.errors)} of ${w.requests}`);
            if (c === 50) cdf.http[`${system} ${tag}`] = w.pct;
            if (c === 50 && size === 1024 && w.turns !== undefined)
              notes.push(
                `${system} c50_1k: ${w.turns.toFixed(3)} loop turns per request, ${w.perCommit.toFixed(1)} POSTs per group commit`,
              );
          }
          console.error(`durable: http ${m} done (${Math.round((Date.now() - t0) / 1000)} s)`);
        }
      }
      for (const srv of httpLive) {
        const st = await straceCount(srv.pid, () => wrk(`http://${srv.host}:${srv.port}/`, 50, 1024, T.straceS));
        add(srv.system, "syscalls_per_req_c50_1k", st.calls / st.res.requests, "calls");
        notes.push(
          `${srv.system} strace -c -f c50_1k: ${st.calls} syscalls for ${st.res.requests} requests; top ` +
            st.top
              .slice(0, 5)
              .map(([n, x]) => `${n} ${(x / st.res.requests).toFixed(2)}`)
              .join(", ") +
            " per request",
        );
      }
      // objects: PUT then GET of 64 KiB, 1 MiB and 16 MiB bodies (node-http streams them; node-net,
      // a minimal parser that buffers whole requests, is left out)
      const objLive = httpLive.filter((srv) => srv.system !== "node-net");
      for (const [size, tag, keys, conns] of o.objects ? OBJECTS : []) {
        for (const method of ["PUT", "GET"]) {
          const verb = method === "PUT" ? "put" : "get";
          const best = await interleave(
            objLive,
            async (srv) => {
              const cpu0 = cpuUs(srv.pid);
              const w = await wrkObj(`http://${srv.host}:${srv.port}/`, method, size, keys, conns, T.objS);
              w.cpu = cpuUs(srv.pid) - cpu0;
              return w;
            },
            k++,
          );
          for (const [system, w] of best) {
            add(system, `${verb}_mb_s_${tag}`, w.mbs, "MB/s");
            add(system, `${verb}_p50_us_${tag}`, w.pct.find((x) => x[0] === 50)[1], "us");
            add(system, `${verb}_p99_us_${tag}`, w.pct.find((x) => x[0] === 99)[1], "us");
            add(system, `${verb}_cpu_us_per_mb_${tag}`, w.cpu / ((w.requests * size) / 1048576), "us");
            if (w.errCount)
              notes.push(`${system} ${verb} ${tag}: wrk errors ${JSON.stringify(w.errors)} of ${w.requests}`);
          }
          console.error(`durable: http ${verb} ${tag} done (${Math.round((Date.now() - t0) / 1000)} s)`);
        }
      }
      for (const srv of httpLive) if (srv.pmstack) notes.push(`${srv.system}: ${(await stats(srv)).describe}`);
    } finally {
      for (const srv of httpLive) await stopServer(srv);
    }

    // ---------- RESP ----------
    const respLive = await startAll(
      [
        ["redis-aof-always", startRedis],
        ["pmstack-kv-tap", () => startPmstack("kv", "tap")],
        ["pmstack-kv-xdp", () => startPmstack("kv", "xdp")],
        ["pmstack-kv-tap-2workers", () => startPmstack("kv", "tap", null, 2)],
        ["pmstack-kv-xdp-2workers", () => startPmstack("kv", "xdp", null, 2)],
      ],
      false,
    );
    if (respLive.some((s) => s.system === "pmstack-kv-tap-2workers"))
      notes.push(
        `pmstack-kv-tap-2workers: pmstack kv --workers 2 (two worker threads, each its own queue of one multi-queue TAP device, pool and shard of the keys; a command on another worker's key runs there), unpinned: its threads share the machine's ${os.cpus().length} CPUs with the client pinned to CPU ${CPU?.client ?? "(none)"}`,
      );
    if (respLive.some((s) => s.system === "pmstack-kv-xdp-2workers"))
      notes.push(
        "pmstack-kv-xdp-2workers: the same two workers over AF_XDP, each bound to its own queue of a veth pair with two queues; the kernel's end of the pair steered by the addon's egress program (each flow to the queue of its addresses' and ports' hash), unpinned as above",
      );
    try {
      for (const srv of respLive) await redisBench(srv.host, srv.port, "set", 10, 1, T.probeN * 3); // warm-up, fills keys
      let k = 0;
      for (const cmd of ["set", "get"]) {
        for (const c of RESP_CLIENTS.filter((x) => !o.conns || o.conns.includes(x))) {
          for (const P of PIPELINES) {
            const m = `c${c}_p${P}`;
            const best = await interleave(
              respLive,
              async (srv) => {
                const probe = await redisBench(srv.host, srv.port, cmd, c, P, Math.max(T.probeN, c * P * 20));
                const n = Math.max(c * P * 20, Math.round(probe.rps * T.respS));
                const s0 = srv.pmstack ? await stats(srv) : null;
                const cpu0 = cpuUs(srv.pid);
                const cc0 = cpuBusyUs(CPU?.client ?? null);
                const d0 = backlogDrops();
                const r = await redisBench(srv.host, srv.port, cmd, c, P, n);
                r.cpu = cpuUs(srv.pid) - cpu0;
                r.clientCpu = cpuBusyUs(CPU?.client ?? null) - cc0;
                r.drops = backlogDrops() - d0;
                const s1 = srv.pmstack ? await stats(srv) : null;
                if (s0 && s1) r.tcp = tcpDelta(s0, s1);
                return r;
              },
              k++,
            );
            for (const [system, r] of best) {
              add(system, `${cmd}_req_s_${m}`, r.rps, "1/s");
              add(system, `${cmd}_p50_us_${m}`, r.p50, "us");
              add(system, `${cmd}_p99_us_${m}`, r.p99, "us");
              add(system, `${cmd}_cpu_us_per_req_${m}`, r.cpu / r.requests, "us");
              if (Number.isFinite(r.clientCpu))
                add(system, `${cmd}_client_cpu_us_per_req_${m}`, r.clientCpu / r.requests, "us");
              if (r.drops) drops.push(`${system} ${cmd}_${m}: ${r.drops}`);
              if (r.tcp) timers.push(`${system} ${cmd}_${m}: ${r.tcp}`);
              if (c === 50 && P === 1) cdf.resp[`${system} ${cmd}`] = r.pct;
            }
            console.error(`durable: resp ${cmd} ${m} done (${Math.round((Date.now() - t0) / 1000)} s)`);
          }
        }
      }
      // 1 MiB values at 4 clients, SET then GET (32 keys in turn)
      if (o.objects)
        for (const cmd of ["set", "get"]) {
          const best = await interleave(
            respLive,
            async (srv) => {
              const probe = await redisBench(srv.host, srv.port, cmd, 4, 1, 40, 1 << 20, 32);
              const n = Math.max(40, Math.round(probe.rps * T.respS));
              const cpu0 = cpuUs(srv.pid);
              const r = await redisBench(srv.host, srv.port, cmd, 4, 1, n, 1 << 20, 32);
              r.cpu = cpuUs(srv.pid) - cpu0;
              return r;
            },
            k++,
          );
          for (const [system, r] of best) {
            add(system, `${cmd}_mb_s_1m`, r.rps, "MB/s"); // 1 MiB values: req/s is MiB/s
            add(system, `${cmd}_p50_us_1m`, r.p50, "us");
            add(system, `${cmd}_p99_us_1m`, r.p99, "us");
            add(system, `${cmd}_cpu_us_per_mb_1m`, r.cpu / r.requests, "us");
          }
          console.error(`durable: resp ${cmd} 1m done (${Math.round((Date.now() - t0) / 1000)} s)`);
        }
      const n = o.quick ? 5000 : 20000;
      for (const srv of respLive) {
        const st = await straceCount(srv.pid, () => redisBench(srv.host, srv.port, "set", 50, 1, n));
        add(srv.system, "set_syscalls_per_req_c50_p1", st.calls / n, "calls");
        notes.push(
          `${srv.system} strace -c -f set c50_p1: ${st.calls} syscalls for ${n} requests; top ` +
            st.top
              .slice(0, 5)
              .map(([nm, x]) => `${nm} ${(x / n).toFixed(2)}`)
              .join(", ") +
            " per request",
        );
      }
    } finally {
      for (const srv of respLive) await stopServer(srv);
    }

    // ---------- TLS ----------
    if (o.tls) {
      const httpTls = await startAll(
        [
          ["node-https", () => startNode("https")],
          ["pmstack-httpd-tls", () => startPmstack("httpd", "tap", { ...certs(), port: 443 })],
        ],
        true,
      );
      try {
        for (const srv of httpTls) await wrk(`https://${srv.host}:${srv.port}/`, 10, 1024, T.warmS);
        const best = await interleave(
          httpTls,
          async (srv) => {
            const cpu0 = cpuUs(srv.pid);
            const cc0 = cpuBusyUs(CPU?.client ?? null);
            const w = await wrk(`https://${srv.host}:${srv.port}/`, 50, 1024, T.wrkS);
            w.cpu = cpuUs(srv.pid) - cpu0;
            w.clientCpu = cpuBusyUs(CPU?.client ?? null) - cc0;
            return w;
          },
          0,
        );
        for (const [system, w] of best) {
          add(system, "req_s_c50_1k", w.rps, "1/s");
          add(system, "p50_us_c50_1k", w.pct.find((x) => x[0] === 50)[1], "us");
          add(system, "p99_us_c50_1k", w.pct.find((x) => x[0] === 99)[1], "us");
          add(system, "cpu_us_per_req_c50_1k", w.cpu / w.requests, "us");
          if (Number.isFinite(w.clientCpu)) add(system, "client_cpu_us_per_req_c50_1k", w.clientCpu / w.requests, "us");
          if (w.errCount) notes.push(`${system} c50_1k: wrk errors ${JSON.stringify(w.errors)} of ${w.requests}`);
        }
        for (const srv of httpTls)
          if (srv.pmstack) notes.push(`pmstack-httpd-tls: ${JSON.stringify((await stats(srv)).tls ?? {})}`);
        console.error(`durable: tls http c50_1k done (${Math.round((Date.now() - t0) / 1000)} s)`);
      } finally {
        for (const srv of httpTls) await stopServer(srv);
      }
      const respTls = await startAll(
        [
          ["redis-tls", startRedisTls],
          ["pmstack-kv-tls", () => startPmstack("kv", "tap", { ...certs(), port: 6380 })],
        ],
        false,
      );
      try {
        for (const srv of respTls)
          await redisBench(srv.host, srv.port, "set", 10, 1, T.probeN * 3, 1024, RESP_KEYS, true);
        const best = await interleave(
          respTls,
          async (srv) => {
            const probe = await redisBench(
              srv.host,
              srv.port,
              "set",
              50,
              1,
              Math.max(T.probeN, 1000),
              1024,
              RESP_KEYS,
              true,
            );
            const n = Math.max(1000, Math.round(probe.rps * T.respS));
            const cpu0 = cpuUs(srv.pid);
            const cc0 = cpuBusyUs(CPU?.client ?? null);
            const r = await redisBench(srv.host, srv.port, "set", 50, 1, n, 1024, RESP_KEYS, true);
            r.cpu = cpuUs(srv.pid) - cpu0;
            r.clientCpu = cpuBusyUs(CPU?.client ?? null) - cc0;
            return r;
          },
          0,
        );
        for (const [system, r] of best) {
          add(system, "set_req_s_c50_p1", r.rps, "1/s");
          add(system, "set_p50_us_c50_p1", r.p50, "us");
          add(system, "set_p99_us_c50_p1", r.p99, "us");
          add(system, "set_cpu_us_per_req_c50_p1", r.cpu / r.requests, "us");
          if (Number.isFinite(r.clientCpu))
            add(system, "set_client_cpu_us_per_req_c50_p1", r.clientCpu / r.requests, "us");
        }
        console.error(`durable: tls resp set c50_p1 done (${Math.round((Date.now() - t0) / 1000)} s)`);
      } finally {
        for (const srv of respTls) await stopServer(srv);
      }
      notes.push(
        `TLS cells: TLS 1.3 (OpenSSL ${process.versions.openssl} in Node for pmstack and node-https; redis-server's own OpenSSL), an ECDSA P-256 certificate; pmstack-httpd-tls and pmstack-kv-tls run over TAP, decrypting with node:tls under the connection layer (plaintext copied into PM buffers), node-https and redis-tls on the kernel's TCP; clients wrk (https) and redis-benchmark --tls, one handshake per connection`,
      );
    }

    if (o.prof) {
      // pmstack over TAP once more per profiled cell, in a server of its own: the cells where the
      // fixed cost per exchange shows (HTTP POST 1 KiB at 50 connections, SET 1 KiB at one
      // client, GET 1 KiB at 50 clients pipelining 16). After a warm-up the server profiles
      // itself over the measured requests only (prof-start, prof-stop: a V8 CPU profile and the
      // bytes its heap took), and its loop's counters give turns, frames, events and NIC
      // syscalls per request. A second pass with PMSTACK_COUNT_CALLS=1 (every call into the
      // core and the addon counted, which slows them) gives the crossings per request.
      // The last cell is the same GET over HOT_KEYS keys: every lookup's index slot, record and
      // value then stay in the CPU's caches, for pmstack and its peers alike, so beside the cell
      // before it, it tells what reaching values scattered over a large pool costs each server.
      const cells = [
        ["httpd", "post_c50_1k"],
        ["kv", "set_c1_p1"],
        ["kv", "get_c50_p16"],
        ["kv", "get_c50_p16_hot"],
      ];
      const measure = async (srv, app, cell) => {
        if (app === "httpd") {
          const url = `http://${srv.host}:${srv.port}/`;
          await wrk(url, 10, 1024, T.warmS);
          return async () => {
            const w = await wrk(url, 50, 1024, T.wrkS);
            const at = (q) => w.pct.find(([p]) => p >= q)?.[1];
            return {
              requests: w.requests,
              rps: w.rps,
              what: `pmstack-httpd-tap, POST 1 KiB c50`,
              pct: { p50: at(50), p97: at(97), p99: at(99), p999: at(99.9) },
            };
          };
        }
        const keys = cell.endsWith("_hot") ? HOT_KEYS : RESP_KEYS;
        await redisBench(srv.host, srv.port, "set", 10, 1, T.probeN * 3, 1024, keys); // warm-up, fills keys
        const [cmd, c, P] = cell === "set_c1_p1" ? ["set", 1, 1] : ["get", 50, 16];
        const probe = await redisBench(srv.host, srv.port, cmd, c, P, Math.max(T.probeN, c * P * 20), 1024, keys);
        return async () => {
          const n = Math.max(5000, Math.round(probe.rps * T.wrkS));
          const r = await redisBench(srv.host, srv.port, cmd, c, P, n, 1024, keys);
          return {
            requests: r.requests,
            rps: r.rps,
            what: `pmstack-kv-tap, ${cmd.toUpperCase()} 1 KiB c${c} pipeline ${P}, ${keys} keys`,
          };
        };
      };
      // a profiling command's answer (prof-start, prof-stop), or an error
      const profAsk = async (srv, line, re) => {
        const m = await ask(srv, line, re, 30000);
        if (!m) throw new Error(`${line}: no answer`);
        return m;
      };
      for (const [app, cell] of cells) {
        // pass 1: CPU, heap and the loop's counters, unprofiled
        let srv = await startPmstack(app, "tap");
        let res;
        let per;
        try {
          await ready(srv, app === "httpd");
          const go = await measure(srv, app, cell);
          const s0 = await stats(srv);
          const t0 = threadCpuUs(srv.pid);
          await profAsk(srv, "prof-start", /PROF-STARTED/g);
          res = await go();
          const done = JSON.parse((await profAsk(srv, "prof-stop", /PROFILED (\{.*\})\n/g))[1]);
          const t1 = threadCpuUs(srv.pid);
          const s1 = await stats(srv);
          const d = (k) => (s1.loop[k] - s0.loop[k]) / res.requests;
          per = {
            turns: d("turns"),
            rxFrames: d("rxFrames"),
            txFrames: d("txFrames"),
            events: d("events"),
            nicSyscalls: d("syscalls"),
            allocated: done.allocated / res.requests,
            // the pauses a latency tail is made of, over the measured requests: GCs on the
            // loop's thread, and turns of 1 ms or more (NicLoop.stats.slowTurns)
            gcs: done.gcs,
            gcMs: done.gcMs,
            gcMaxMs: done.gcMaxMs,
            gcsOver1ms: done.gcsOver1ms,
            slowTurns: (s1.loop.slowTurns ?? 0) - (s0.loop.slowTurns ?? 0),
            allTurns: s1.loop.turns - s0.loop.turns,
            user: (s1.cpu.user - s0.cpu.user) / res.requests,
            system: (s1.cpu.system - s0.cpu.system) / res.requests,
            threads: Object.entries(t1)
              .map(([k, v]) => [k, (v - (t0[k] ?? 0)) / res.requests])
              .filter(([, v]) => v > 0)
              .sort((x, y) => y[1] - x[1]),
          };
        } finally {
          await stopServer(srv);
        }
        // pass 2: the CPU profile
        const keep = join(os.tmpdir(), `pmstack-durable-${app}-${cell}.cpuprofile`);
        srv = await startPmstack(app, "tap");
        let profiled;
        try {
          await ready(srv, app === "httpd");
          const go = await measure(srv, app, cell);
          await profAsk(srv, "prof-start cpu", /PROF-STARTED/g);
          profiled = await go();
          await profAsk(srv, `prof-stop ${keep}`, /PROFILED (\{.*\})\n/g);
        } finally {
          await stopServer(srv);
        }
        // pass 3: crossings counted
        srv = await startPmstack(app, "tap", null, 1, { PMSTACK_COUNT_CALLS: "1" });
        let calls;
        try {
          await ready(srv, app === "httpd");
          const go = await measure(srv, app, cell);
          const c0 = (await stats(srv)).calls;
          const r = await go();
          const c1 = (await stats(srv)).calls;
          calls = { wasm: (c1.wasm - c0.wasm) / r.requests, addon: (c1.addon - c0.addon) / r.requests };
          const top = Object.entries(c1.byName)
            .map(([k, v]) => [k, (v - (c0.byName[k] ?? 0)) / r.requests])
            .filter(([, v]) => v >= 0.05)
            .sort((x, y) => y[1] - x[1])
            .slice(0, 10);
          calls.top = top.map(([k, v]) => `${k} ${v.toPrecision(3)}`).join(", ");
        } finally {
          await stopServer(srv);
        }
        // the peer (node-http, redis-aof-always) through the same cell: its CPU split
        srv = app === "httpd" ? await startNode("http") : await startRedis();
        let peer;
        try {
          await ready(srv, app === "httpd");
          const go = await measure(srv, app, cell);
          const c0 = cpuSplitUs(srv.pid);
          const r = await go();
          const c1 = cpuSplitUs(srv.pid);
          peer = {
            name: app === "httpd" ? "node-http" : "redis-aof-always",
            rps: r.rps,
            user: (c1.user - c0.user) / r.requests,
            system: (c1.system - c0.system) / r.requests,
          };
        } finally {
          await stopServer(srv);
        }
        // the floor of a server hosted in Node: one that does nothing but answer (resp-floor:
        // +OK, or a fixed 1 KiB value, per command on the kernel's TCP; nothing looked up or
        // stored) through the same cell, for its user and system CPU
        let nodeFloor = null;
        if (app === "kv") {
          srv = await startNode("resp-floor");
          try {
            const go = await measure(srv, app, cell);
            const c0 = cpuSplitUs(srv.pid);
            const r = await go();
            const c1 = cpuSplitUs(srv.pid);
            nodeFloor = {
              rps: r.rps,
              user: (c1.user - c0.user) / r.requests,
              system: (c1.system - c0.system) / r.requests,
            };
          } finally {
            await stopServer(srv);
          }
        }
        const prof = JSON.parse(readFileSync(keep, "utf8"));
        console.error(`durable: profile kept at ${keep}`);
        // the NIC's floor: the addon's send and receive calls (the system calls, and the
        // kernel's TAP and TCP work they run: for a send, the client's TCP input and wake-up),
        // per frame, from the profiled pass's busy time and pass 1's frames per request
        const pt = profileTimes(prof);
        const perReq = (k) => (pt.self.get(k) ?? 0) / profiled.requests;
        const floor = {
          tx: perReq("native under #flushRing") / per.txFrames,
          rx: perReq("native under receive") / per.rxFrames,
          wasm: pt.wasm / profiled.requests,
        };
        const f = (v) => (v >= 100 ? v.toFixed(0) : v.toPrecision(3));
        notes.push(
          `profile (${res.what}, ${Math.round(res.rps)} req/s): per request ${f(per.user)} µs user + ${f(per.system)} µs system CPU ` +
            `(${peer.name} through the same cell right after: ${f(peer.user)} + ${f(peer.system)} µs at ${Math.round(peer.rps)} req/s` +
            (nodeFloor
              ? `; a Node server that only answers, resp-floor: ${f(nodeFloor.user)} + ${f(nodeFloor.system)} µs at ${Math.round(nodeFloor.rps)} req/s`
              : "") +
            `); ` +
            `by thread: ${per.threads.map(([k, v]) => `${k} ${f(v)} µs`).join(", ")}; ` +
            `${f(per.turns)} loop turns, ${f(per.rxFrames)} frames in, ${f(per.txFrames)} out, ${f(per.events)} core events, ` +
            `${f(per.nicSyscalls)} NIC syscalls, ${Math.round(per.allocated)} bytes allocated on the JavaScript heap, ` +
            `pauses over the measured requests: ${per.gcs} GCs on the loop's thread (${f(per.gcMs)} ms in all, ` +
            `${per.gcsOver1ms} of 1 ms or more, the longest ${f(per.gcMaxMs)} ms), ${per.slowTurns} of ${per.allTurns} loop turns took 1 ms or more` +
            (res.pct
              ? ` (latency p50 ${res.pct.p50}, p97 ${res.pct.p97}, p99 ${res.pct.p99}, p99.9 ${res.pct.p999} µs)`
              : "") +
            `, ` +
            `${f(calls.wasm)} calls into the Wasm core and ${f(calls.addon)} into the addon (most: ${calls.top}); ` +
            `the NIC's native calls (system calls and the kernel's TAP work in them) ${f(floor.tx)} µs per frame sent and ` +
            `${f(floor.rx)} µs per frame received (profiled pass), the Wasm core ${f(floor.wasm)} µs per request; ` +
            `profiled pass (${Math.round(profiled.rps)} req/s): ` +
            summarizeProfile(prof, profiled.requests),
        );
      }
    }

    notes.push(
      drops.length
        ? `kernel backlog drops (/proc/net/softnet_stat, every CPU, during the kept repetition; a drop costs its flow a retransmission timeout, >= 200 ms): ${drops.join("; ")}`
        : "no kernel backlog drops (/proc/net/softnet_stat) during the kept repetitions",
      timers.length
        ? `pmstack TCP retransmissions (RTO = by timeout, fast, zero-window probes) in the kept repetitions: ${timers.join("; ")}`
        : "pmstack sent no retransmissions or zero-window probes in the kept repetitions",
      `medium: ${base} (${medium}) for every system: pmstack pool files (262144 x 2 KiB buffers, 32 MiB log${medium === "tmpfs" ? "" : ", and each pool's write-ahead journal"}), the Node servers' logs, redis' AOF`,
      `node-http/node-net persist with ${o.nodeIo === "sync" ? "writeSync + fdatasyncSync" : "fs.write + fs.fdatasync (libuv thread pool)"} per request; pmstack persists once per loop turn (group commit: ${medium === "tmpfs" ? "msync on tmpfs" : "one journal entry and one fdatasync, written by the journal's thread while the loop goes on"}), redis once per event-loop iteration (appendfsync always: write + fdatasync)`,
      CPU
        ? `pinned: clients (wrk -t 1, redis-benchmark) on CPU ${CPU.client}, every server on CPU ${CPU.server}`
        : "not pinned; wrk -t min(2, connections)",
      `cells: wrk ${T.wrkS} s each after a ${T.warmS} s warm-up per server, keys /t<thread>-<n mod ${WRK_KEYS}>; redis-benchmark -d 1024 -r ${RESP_KEYS}, -n sized from a probe to run about ${T.respS} s; ` +
        `${o.reps} repetition(s) per cell, systems interleaved in rotating order, the best repetition (req/s) of each kept with its latency and CPU`,
      ...(CPU
        ? [
            `client_cpu_us_per_req: CPU ${CPU.client}'s busy time (/proc/stat user+nice+system+irq+softirq) over the cell / requests, with the client pinned alone there: the client's own cost, plus what the kernel runs on that CPU for the server (for the kernel servers their TCP receive, for AF_XDP the veth XDP redirect and copy into the UMEM); when it nears 1e6 / req_s the client, not the server, sets the rate`,
          ]
        : []),
      "cpu_us_per_req: the server process' utime+stime (/proc/PID/stat, 10 ms ticks) over the cell / requests; kernel work done in the server's syscalls counts, including the client TCP's receive of replies (veth and TAP deliver in the sender's context)",
      "syscalls_per_req: a separate run (HTTP c50 1 KiB, RESP SET c50 P1) under strace -c -f -p PID (strace slows the server, so batches grow: a lower bound at full speed); nic_syscalls_per_req: pmstack's own NIC syscall counter in the measured cells",
      `conditions: 2 vCPUs shared with other engineers' work; load average ${load0.map((x) => x.toFixed(2)).join(" ")} at start, ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(" ")} at end; run took ${Math.round((Date.now() - t0) / 1000)} s`,
    );
  } finally {
    for (const p of servers) await stopProc(p).catch(() => {});
    C.cleanup();
    S.cleanup();
    rmSync(tmp, { recursive: true, force: true });
  }
  const ratios = durableRatios(rows);
  const svg = o.as ? null : cdfSvg(cdf, medium);
  if (svg)
    writeFileSync(join(here, "..", "docs", medium === "tmpfs" ? "durable-cdf.svg" : "durable-disk-cdf.svg"), svg);
  return { bench, medium, rows, ratios, notes };
}

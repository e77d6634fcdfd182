// bench/flood: pmstack httpd serving wrk (1 KiB POSTs at 50 connections, bench/durable-post.lua)
// while a second namespace floods it with spoofed TCP segments: SYNs (the SYN queue overflows
// and pmstack answers with SYN cookies), bare ACKs (cookie checks that fail, answered with RSTs)
// and RSTs guessing at the receive windows of wrk's live connections (RFC 5961: only an exact
// sequence number resets, one in the window gets a rate-limited challenge ACK). Each flood runs
// beside wrk in the same run as wrk alone, on the same server. Two systems, the same httpd on two
// NIC queues: pmstack-httpd-tap (a TAP: a readv and a writev per frame, up to 32 of them per
// io_uring_enter) and pmstack-httpd-xdp (AF_XDP on a veth: frames through shared rings in
// batches).
//
//   flood ns   bench/_flood-sender.c (compiled into os.tmpdir() with cc at run time): a raw IPv4
//              socket bound to pmfv0 (198.18.12.18/28), spoofed segments at --rate per second,
//              bounded in count and time (it stops by itself; an alarm ends it regardless); routes
//              to pmstack's two subnets through the router, nothing else
//   client ns  the router and the client: pmfv1 (198.18.12.17/28) the veth's other end,
//              ip_forward=1 (here only), rp_filter 0 and accept_local 1 on pmfv1 (the RST flood
//              spoofs the client's own address), a blackhole route for 198.18.128.0/17; wrk;
//              local ports 40000-41023; and pmstack's two links:
//              tap: the TAP pmft0 (198.18.12.1/28) with pmstack at 198.18.12.2, MAC
//                   02:00:00:00:0c:02
//              xdp: the veth end pmfxk0 (198.18.12.33/28, ethtool -K tx off: AF_XDP gives the
//                   receiver no checksum metadata, so the kernel sends complete checksums, and no
//                   TSO), one queue each way, its peer pmfxp0 in the server ns with pmstack at
//                   198.18.12.34, MAC 02:00:00:00:0c:22 (as bench/durable's pmstack-httpd-xdp)
//              (a permanent neighbor entry for each: no ARP in the measurement)
//   server ns  (xdp only) pmfxp0 and pmstack-httpd-xdp's process, its AF_XDP socket on queue 0
//   pmstack    httpd (HttpdApp, the CLI's defaults: --max-conns 4096, --at-max-conns drop, a SYN
//              queue of 1024) in a child process (this file with --serve), pool on /dev/shm,
//              gateway the client ns' end of its link (198.18.12.1 on the TAP, 198.18.12.33 on the
//              veth): its answers to the spoofed sources (SYN-ACKs carrying cookies, RSTs) go to
//              the router, whose blackhole route drops them without an ICMP error. Without a
//              gateway pmstack would take 198.18.128.0/17 as on-link and ARP for every spoofed
//              source (nobody answers; the ARP queue and neighbor cache bound that).
// Addresses: 198.18.12.0/27, 198.18.12.32/28 and the spoofed 198.18.128.0/17 only, all inside
// 198.18.0.0/15. Nothing is made outside the namespaces, which are removed at the end, also on
// failure.
//
// Cells, each system on a fresh server per repetition, in this order (the SYN flood last: its
// half-open connections stay in the SYN queue for about a minute, and every connection wrk opens
// after it gets a cookie): base (wrk alone), ackflood, rstflood, synflood. Within a repetition
// the systems run one after the other, tap then xdp. A flood starts 0.5 s before wrk and ends
// after it. Then each flood runs alone for 1 s (2 s without quick): what it costs CPU 0 and
// pmstack's process with no wrk beside it goes into the notes. Metrics (systems
// pmstack-httpd-tap and pmstack-httpd-xdp, the same for each):
//   req_s_base, p99_us_base            wrk alone (p99 from wrk --latency)
//   req_s_synflood, p99_us_synflood    wrk during the SYN flood
//   synflood_pps                       SYNs offered at pmstack's link: the router's forwarded
//                                      datagrams (/proc/net/snmp Ip ForwDatagrams in the client
//                                      ns: only the flood is forwarded) over the sender's own run
//                                      time
//   syn_cookies_sent                   TCP_SYNQ_OVERFLOW over the SYN-flood cell
//   req_s_ackflood, p99_us_ackflood, ackflood_pps   the same for random ACKs to port 80
//   req_s_rstflood, p99_us_rstflood, rstflood_pps   the same for RSTs from the client's address
//                                      (on the system's link) to port 80 from ports 40000-41023
//                                      (the client ns' whole local port range: wrk's 50
//                                      connections live there), random sequence numbers
//   challenge_acks, challenge_acks_limited   TCP_CHALLENGE_ACK, TCP_CHALLENGE_LIMITED over the
//                                      RST-flood cell
//   leaked_buffers                     after the floods, once wrk is done and the server idle:
//                                      total - kept - nic - free (buffers held by the stack or
//                                      the app), the largest of the repetitions; 0 expected
// Ratios, per system: req_s_<flood> / req_s_base of the same repetition (target >= 0.5 for the
// SYN flood). Repetitions: per system, the one with the best req_s_base is kept whole (its floods
// beside it). Notes per system (prefixed with its name): for xdp the veth's drops and the AF_XDP
// socket's kernel drop counters where tap has the TAP queue's drops.
// Pinning (as bench/durable): pmstack on the last CPU, wrk and the sender on CPU 0 (for xdp the
// veth's XDP redirect and copy into the UMEM run there too, in the sender's softirq).
//
// `npm run bench -- flood [quick] [--rate PPS] [--secs S] [--reps N] [--systems tap,xdp]
// [--no-pin]`; quick (or PMSTACK_BENCH_QUICK=1): 3 s cells, one repetition (a smoke run, about
// 20 s a system); default 10 s cells, 3 repetitions; --rate 100000; --systems tap,xdp (both).
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Netns, netnsUnavailable } from "../test/lib/netns.mjs";
import { cpuBusyUs, cpuUs, durableWrkResult } from "./_lib.mjs";

const SELF = fileURLToPath(import.meta.url);
const here = fileURLToPath(new URL(".", import.meta.url));
const LUA = join(here, "durable-post.lua");
const SENDER_C = join(here, "_flood-sender.c");
const NET = {
  tap: "pmft0",
  tapNet: "198.18.12.0/28",
  client: "198.18.12.1",
  server: "198.18.12.2",
  mac: "02:00:00:00:0c:02",
  vethC: "pmfv1",
  vethCMac: "02:00:00:00:0c:11",
  router: "198.18.12.17",
  vethF: "pmfv0",
  flood: "198.18.12.18",
  spoofed: "198.18.128.0/17",
  // pmstack-httpd-xdp: the veth pmfxk0 (client ns) <-> pmfxp0 (server ns, pmstack's AF_XDP socket)
  xdpNet: "198.18.12.32/28",
  xdpK: "pmfxk0",
  xdpP: "pmfxp0",
  xdpClient: "198.18.12.33",
  xdpServer: "198.18.12.34",
  xdpMac: "02:00:00:00:0c:22",
};
/** The systems: where pmstack's link is, as seen from the client namespace. */
const LINKS = {
  tap: {
    system: "pmstack-httpd-tap",
    kind: "tap",
    dev: NET.tap,
    net: NET.tapNet,
    client: NET.client,
    server: NET.server,
    mac: NET.mac,
    link: "the TAP",
  },
  xdp: {
    system: "pmstack-httpd-xdp",
    kind: "xdp",
    dev: NET.xdpK,
    peer: NET.xdpP,
    net: NET.xdpNet,
    client: NET.xdpClient,
    server: NET.xdpServer,
    mac: NET.xdpMac,
    link: "the veth",
  },
};
const LOCAL_PORTS = [40000, 41023];
const WRK_KEYS = 16384;
const CONNS = 50;
const BODY = 1024;
const LEAD_S = 0.5; // the flood starts this long before wrk
const TAIL_S = 0.5; // and runs this long past wrk's end (wrk's own start-up included)
const CELLS = ["base", "ackflood", "rstflood", "synflood"];
const MODE = { synflood: "syn", ackflood: "ack", rstflood: "rst" };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- the server (a child process)

/** `node bench/flood.mjs --serve JSON`: pmstack httpd on the TAP or AF_XDP; "stats" and "quit" on stdin. */
async function serveChild(cfg) {
  const pm = await import("../build/index.js");
  const srv = pm.serve(
    {
      path: cfg.path,
      buffers: cfg.buffers,
      metaBytes: 32 << 20,
      mac: cfg.mac,
      ip: cfg.ip,
      gateway: cfg.gateway,
      // the CLI's defaults (host/cli.ts)
      maxConnections: 4096,
      atMaxConnections: "drop",
      synQueue: 1024,
      nic:
        cfg.kind === "xdp"
          ? { kind: "xdp", ifname: cfg.ifname, queue: 0, netns: cfg.netns }
          : { kind: "tap", name: cfg.tap, netns: cfg.netns },
    },
    (stack, log) => new pm.HttpdApp(stack, log, 80),
  );
  let closed = false;
  const quit = () => {
    if (closed) return;
    closed = true;
    try {
      srv.close();
    } finally {
      process.exit(0);
    }
  };
  for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, quit);
  const rl = createInterface({ input: process.stdin });
  rl.on("line", (l) => {
    const cmd = l.trim();
    if (cmd === "stats") {
      const states = {};
      for (const c of srv.stack.connections()) states[c.state] = (states[c.state] ?? 0) + 1;
      let check = "ok";
      try {
        srv.stack.pool.check();
      } catch (e) {
        check = e.message;
      }
      const st = {
        tcp: srv.stack.stats(),
        pool: srv.stack.pool.counts(),
        check,
        states,
        loop: { ...srv.loop.stats },
        nic: srv.nic.stats(),
        app: { ...srv.app.stats },
        info: srv.nic.info,
      };
      console.log(`STATS ${JSON.stringify(st)}`);
    } else if (cmd === "quit") quit();
  });
  rl.on("close", quit);
  console.log(`READY ${srv.ifname} ${process.pid}`);
}

if (process.argv[1] === SELF && process.argv[2] === "--serve") await serveChild(JSON.parse(process.argv[3]));

// ---------------------------------------------------------------- helpers

function parseArgs(args) {
  const quick = args.includes("quick") || process.env.PMSTACK_BENCH_QUICK === "1";
  const o = {
    quick,
    pin: !args.includes("--no-pin"),
    rate: 100000,
    secs: quick ? 3 : 10,
    reps: quick ? 1 : 3,
    systems: ["tap", "xdp"],
  };
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--rate") o.rate = Number(args[++i]);
    else if (args[i] === "--systems") o.systems = String(args[++i] ?? "").split(",");
    else if (args[i] === "--secs") o.secs = Number(args[++i]);
    else if (args[i] === "--reps") o.reps = Number(args[++i]);
  }
  if (!(o.rate > 0 && o.rate <= 2e6)) throw new Error("bench/flood: --rate must be in (0, 2000000]");
  if (!(o.secs >= 1 && o.secs + LEAD_S + TAIL_S <= 60)) throw new Error("bench/flood: --secs must be in [1, 59]");
  if (!(o.reps >= 1 && o.reps <= 10)) throw new Error("bench/flood: --reps must be in [1, 10]");
  if (!o.systems.length || o.systems.some((x) => !LINKS[x]) || new Set(o.systems).size !== o.systems.length)
    throw new Error("bench/flood: --systems is a comma-separated list of tap, xdp");
  o.systems = Object.keys(LINKS).filter((x) => o.systems.includes(x)); // tap first, then xdp
  return o;
}

/** The `Ip:` counters of /proc/net/snmp inside a namespace. */
function ipCounters(ns) {
  const r = ns.run("cat", ["/proc/net/snmp"]);
  const [k, v] = r.stdout
    .split("\n")
    .filter((l) => l.startsWith("Ip:"))
    .map((l) => l.trim().split(/\s+/));
  if (!k || !v) throw new Error(`no Ip counters in ${ns.name}: ${r.stderr}`);
  return Object.fromEntries(k.slice(1).map((name, i) => [name, Number(v[i + 1])]));
}

/** A device's kernel counters in a namespace: {rx: {packets, dropped, ...}, tx: {...}}. */
function linkStats(ns, dev) {
  return JSON.parse(ns.ip(["-s", "-j", "link", "show", "dev", dev]))[0].stats64;
}

/** Compiles bench/_flood-sender.c into os.tmpdir(): the binary's path. */
function buildSender(dir) {
  const bin = join(dir, "flood-sender");
  const r = spawnSync("cc", ["-O2", "-Wall", "-o", bin, SENDER_C], { encoding: "utf8" });
  if (r.error || r.status !== 0)
    throw new Error(`bench/flood: cc ${SENDER_C} failed: ${r.error?.message ?? ""} ${r.stderr}`);
  return bin;
}

async function waitOut(p, re, ms = 15000) {
  const end = Date.now() + ms;
  while (!re.test(p.out)) {
    if (p.exitCode !== null || p.signalCode !== null)
      throw new Error(`process exited (${p.exitCode ?? p.signalCode}) before ${re}: ${p.out} ${p.err ?? ""}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${re}: ${p.out}`);
    await sleep(10);
  }
  return re.exec(p.out);
}

/** Keeps the last 4 KB a child wrote to stderr in p.err. */
function watchErr(p) {
  p.err = "";
  p.stderr?.on("data", (d) => (p.err = (p.err + d).slice(-4096)));
}

const pct = (w, p) => w.pct.find((x) => x[0] === p)[1];

// ---------------------------------------------------------------- the benchmark

export async function run(args = []) {
  const o = parseArgs(args);
  const why = netnsUnavailable();
  if (why) throw new Error(`bench/flood needs network namespaces: ${why}`);
  const CPU = o.pin ? { client: "0", server: String(os.cpus().length - 1) } : null;
  const wrap = (side, cmd, a) => (CPU ? ["taskset", ["-c", CPU[side], cmd, ...a]] : [cmd, a]);
  const load0 = os.loadavg();
  const t0 = Date.now();
  const notes = [];
  const tmp = mkdtempSync(join(os.tmpdir(), "pmstack-bench-flood-"));
  const shm = mkdtempSync(join("/dev/shm", "pmstack-bench-flood-"));
  const removeDirs = () => {
    rmSync(tmp, { recursive: true, force: true });
    rmSync(shm, { recursive: true, force: true });
  };
  // an interrupted run cleans up too: the namespaces (test/lib/netns.mjs kills the processes
  // started in them, by PID, and deletes them at exit) and the directories
  const onSignal = (sig) => () => process.exit(128 + os.constants.signals[sig]);
  const handlers = ["SIGINT", "SIGTERM", "SIGHUP"].map((sig) => [sig, onSignal(sig)]);
  for (const [sig, h] of handlers) process.once(sig, h);
  process.once("exit", removeDirs);
  let C = null;
  let F = null;
  let S = null;
  let srv = null;
  let seed = 1;
  try {
    const bin = buildSender(tmp);
    const has = (x) => o.systems.includes(x);
    C = new Netns("floc");
    F = new Netns("flof");
    if (has("xdp")) S = new Netns("flos");
    // ---------- the namespaces ----------
    if (has("tap")) {
      C.ip(["tuntap", "add", "dev", NET.tap, "mode", "tap"]);
      C.ip(["addr", "add", `${NET.client}/28`, "dev", NET.tap]);
      C.ip(["link", "set", NET.tap, "up"]);
    }
    C.ip(["link", "add", NET.vethC, "type", "veth", "peer", "name", NET.vethF, "netns", F.name]);
    C.ip(["link", "set", NET.vethC, "address", NET.vethCMac]);
    C.ip(["addr", "add", `${NET.router}/28`, "dev", NET.vethC]);
    C.ip(["link", "set", NET.vethC, "up"]);
    F.ip(["addr", "add", `${NET.flood}/28`, "dev", NET.vethF]);
    F.ip(["link", "set", NET.vethF, "up"]);
    F.ip(["neigh", "replace", NET.router, "lladdr", NET.vethCMac, "dev", NET.vethF, "nud", "permanent"]);
    if (has("tap")) {
      // the flood namespace reaches pmstack's subnet through the router, nothing else
      F.ip(["route", "add", `${NET.tapNet}`, "via", NET.router, "dev", NET.vethF]);
      C.ip(["neigh", "replace", NET.server, "lladdr", NET.mac, "dev", NET.tap, "nud", "permanent"]);
    }
    if (has("xdp")) {
      // a veth for AF_XDP (as bench/durable's pmstack-httpd-xdp): one queue each way, pmstack's
      // MAC on its end in the server namespace, the kernel end in the client namespace
      const one = ["numtxqueues", "1", "numrxqueues", "1"];
      C.ip(["link", "add", NET.xdpK, ...one, "type", "veth", "peer", "name", NET.xdpP, "netns", S.name, ...one]);
      // AF_XDP gives the receiver no checksum metadata: the kernel side must send complete
      // checksums (tx off also turns TSO off; an XDP socket takes no superframes)
      const eth = C.run("ethtool", ["-K", NET.xdpK, "tx", "off"]);
      if (eth.status !== 0) throw new Error(`ethtool -K ${NET.xdpK} tx off: ${eth.stderr || eth.error}`);
      S.ip(["link", "set", NET.xdpP, "address", NET.xdpMac]);
      S.ip(["link", "set", NET.xdpP, "up"]);
      C.ip(["addr", "add", `${NET.xdpClient}/28`, "dev", NET.xdpK]);
      C.ip(["link", "set", NET.xdpK, "up"]);
      F.ip(["route", "add", NET.xdpNet, "via", NET.router, "dev", NET.vethF]);
      C.ip(["neigh", "replace", NET.xdpServer, "lladdr", NET.xdpMac, "dev", NET.xdpK, "nud", "permanent"]);
    }
    // pmstack's answers to the spoofed sources end here, silently
    C.ip(["route", "add", "blackhole", NET.spoofed]);
    const sysctl = (ns, kv) => {
      const r = ns.run("sysctl", ["-qw", ...kv]);
      if (r.status !== 0) throw new Error(`sysctl ${kv.join(" ")} in ${ns.name}: ${r.stderr}`);
    };
    sysctl(F, ["net.ipv4.ip_forward=0"]);
    if (S) sysctl(S, ["net.ipv4.ip_forward=0"]);
    sysctl(C, [
      "net.ipv4.ip_forward=1",
      "net.ipv4.conf.all.rp_filter=0",
      "net.ipv4.conf.default.rp_filter=0",
      `net.ipv4.conf.${NET.vethC}.rp_filter=0`,
      `net.ipv4.conf.${NET.vethC}.accept_local=1`,
      `net.ipv4.ip_local_port_range=${LOCAL_PORTS[0]} ${LOCAL_PORTS[1]}`,
      "net.ipv4.tcp_tw_reuse=1",
    ]);
    const tapQueue = has("tap") ? C.run("cat", [`/sys/class/net/${NET.tap}/tx_queue_len`]).stdout.trim() : "";

    // ---------- the server ----------
    async function startServer(L) {
      const path = join(shm, L.kind === "tap" ? "httpd.pm" : `httpd-${L.kind}.pm`);
      const cfg = {
        path,
        buffers: 131072,
        mac: L.mac,
        ip: `${L.server}/28`,
        gateway: L.client,
        kind: L.kind,
        ...(L.kind === "xdp" ? { ifname: L.peer, netns: S.path } : { tap: L.dev, netns: C.path }),
      };
      // pmstack-httpd-tap runs in the client namespace (its TAP lives there), pmstack-httpd-xdp in
      // the server namespace (the veth end its socket binds)
      const ns = L.kind === "xdp" ? S : C;
      let p;
      for (let attempt = 0; ; attempt++) {
        rmSync(path, { force: true });
        const [cmd, a] = wrap("server", process.execPath, [SELF, "--serve", JSON.stringify(cfg)]);
        p = ns.spawn(cmd, a);
        watchErr(p);
        try {
          await waitOut(p, /READY (\S+) (\d+)/, 20000);
          break;
        } catch (e) {
          if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
          await p.done;
          // the previous repetition's AF_XDP socket on the same queue may not be gone yet
          if (L.kind === "xdp" && /EBUSY|busy/i.test(p.err) && attempt < 4) {
            await sleep(1200);
            continue;
          }
          throw new Error(`${L.system} did not start: ${e.message} ${p.err}`);
        }
      }
      const m = /READY (\S+) (\d+)/.exec(p.out);
      const s = { p, pid: Number(m[2]) };
      for (let k = 0; ; k++) {
        const r = await C.spawn("curl", [
          ...["-sS", "--max-time", "1", "-o", "/dev/null", "-w", "%{http_code}"],
          `http://${L.server}/`,
        ]).done;
        if (/^(200|404|405)$/.test(r.stdout.trim())) break;
        if (k > 50) throw new Error(`pmstack at ${L.server} does not answer: ${p.err}`);
        await sleep(100);
      }
      return s;
    }
    async function stats(s) {
      const before = (s.p.out.match(/STATS /g) ?? []).length;
      s.p.stdin.write("stats\n");
      const end = Date.now() + 5000;
      while ((s.p.out.match(/STATS /g) ?? []).length <= before) {
        if (Date.now() > end) throw new Error(`no stats from pmstack: ${s.p.err}`);
        await sleep(5);
      }
      const all = [...s.p.out.matchAll(/STATS (\{.*\})/g)];
      return JSON.parse(all[all.length - 1][1]);
    }
    async function stopServer(s) {
      if (!s) return;
      if (s.p.exitCode === null && s.p.signalCode === null) {
        s.p.stdin.write("quit\n");
        const t = setTimeout(() => s.p.kill("SIGKILL"), 5000);
        await s.p.done;
        clearTimeout(t);
      }
    }

    // ---------- clients ----------
    async function wrk(L, secs) {
      const [cmd, a] = wrap("client", "wrk", [
        ...["-t", "1", "-c", String(CONNS), "-d", `${secs}s`, "--timeout", "5s", "--latency"],
        ...["-s", LUA, `http://${L.server}/`, "--", String(BODY), String(WRK_KEYS)],
      ]);
      const p = C.spawn(cmd, a);
      p.stdin.end();
      const r = await p.done;
      return durableWrkResult(r);
    }
    function flood(L, mode, secs) {
      const rstArgs = ["--src", L.client, "--sports", `${LOCAL_PORTS[0]}-${LOCAL_PORTS[1]}`];
      const [cmd, a] = wrap("client", bin, [
        ...["--mode", mode, "--dst", L.server, "--dport", "80", "--rate", String(o.rate)],
        ...["--seconds", String(secs), "--count", String(Math.ceil(o.rate * secs)), "--dev", NET.vethF],
        ...["--seed", String(seed++)],
        ...(mode === "rst" ? rstArgs : ["--src", "rand", "--sports", "1024-65535"]),
      ]);
      const p = F.spawn(cmd, a);
      p.stdin.end();
      return p.done.then((r) => {
        const m = /FLOOD (\{.*\})/.exec(r.stdout);
        if (!m) throw new Error(`flood-sender ${mode} failed (${r.status ?? r.signal}): ${r.stdout} ${r.stderr}`);
        return JSON.parse(m[1]);
      });
    }

    /** The AF_XDP socket's kernel drop counters (zeros for the TAP). */
    const xdpDrops = (st) => st.nic?.xdpKernel ?? {};

    /** One cell: wrk for o.secs, with the flood `cell` around it (none for base). */
    async function runCell(L, s, cell) {
      const s0 = await stats(s);
      const ip0 = ipCounters(C);
      const tap0 = linkStats(C, L.dev);
      const cpu0 = cpuUs(s.pid);
      const cc0 = cpuBusyUs(CPU?.client ?? null);
      const sc0 = cpuBusyUs(CPU?.server ?? null);
      const t = performance.now();
      let fl = null;
      if (MODE[cell]) {
        fl = flood(L, MODE[cell], LEAD_S + o.secs + TAIL_S);
        await sleep(LEAD_S * 1000);
      }
      const w = await wrk(L, o.secs);
      const f = fl ? await fl : null;
      const wall = (performance.now() - t) / 1000;
      const s1 = await stats(s);
      const ip1 = ipCounters(C);
      const tap1 = linkStats(C, L.dev);
      const d = (k) => (s1.tcp[k] - s0.tcp[k]) >>> 0;
      w.cell = cell;
      w.tcp = Object.fromEntries(Object.keys(s1.tcp).map((k) => [k, d(k)]));
      w.flood = f;
      w.forwarded = ip1.ForwDatagrams - ip0.ForwDatagrams;
      w.pps = f ? w.forwarded / f.seconds : 0;
      w.tapDropped = tap1.tx.dropped - tap0.tx.dropped;
      w.tapTx = tap1.tx.packets - tap0.tx.packets;
      const x0 = xdpDrops(s0);
      w.xdp = Object.fromEntries(Object.entries(xdpDrops(s1)).map(([k, v]) => [k, v - (x0[k] ?? 0)]));
      w.rxFrames = s1.loop.rxFrames - s0.loop.rxFrames;
      w.txFrames = s1.loop.txFrames - s0.loop.txFrames;
      w.turns = s1.loop.turns - s0.loop.turns;
      w.syscalls = s1.nic.syscalls - s0.nic.syscalls;
      w.polls = s1.nic.polls - s0.nic.polls;
      w.rxEagain = s1.nic.rxEagain - s0.nic.rxEagain;
      w.serverCpu = (cpuUs(s.pid) - cpu0) / 1e6 / wall;
      w.clientCpu = (cpuBusyUs(CPU?.client ?? null) - cc0) / 1e6 / wall;
      w.serverCpuAll = (cpuBusyUs(CPU?.server ?? null) - sc0) / 1e6 / wall;
      w.wall = wall;
      console.error(
        `flood: ${L.system} ${cell}: ${Math.round(w.rps)} req/s, p99 ${pct(w, 99)} us` +
          (f ? `, ${Math.round(w.pps)} pps offered (${f.sent} sent, ${f.failed} refused by the sender's kernel)` : "") +
          `; ${w.turns} turns, ${w.syscalls} NIC syscalls (${w.rxEagain} reads found the queue empty), ${w.polls} wake-ups for ${w.rxFrames + w.txFrames} frames` +
          ` (${Math.round((Date.now() - t0) / 1000)} s)`,
      );
      return w;
    }

    /**
     * A flood with no wrk beside it: what it costs CPU 0 (the sender and the router's forwarding
     * into pmstack's link, which runs in the sender's syscalls) and pmstack's process, as busy
     * fractions.
     */
    async function floodAlone(L, s, cell, secs) {
      const cpu0 = cpuUs(s.pid);
      const cc0 = cpuBusyUs(CPU?.client ?? null);
      const t = performance.now();
      const f = await flood(L, MODE[cell], secs);
      const wall = (performance.now() - t) / 1000;
      return {
        pps: f.sent / f.seconds,
        serverCpu: (cpuUs(s.pid) - cpu0) / 1e6 / wall,
        clientCpu: (cpuBusyUs(CPU?.client ?? null) - cc0) / 1e6 / wall,
        senderCpu: f.cpu_s / f.seconds,
      };
    }

    /** Waits (up to ms) until no buffer is held by the stack or the app: the last stats. */
    async function idle(s, ms) {
      const end = Date.now() + ms;
      let st;
      for (;;) {
        st = await stats(s);
        const c = st.pool;
        if (c.total - c.kept - c.nic - c.free === 0 || Date.now() > end) return st;
        await sleep(200);
      }
    }

    // ---------- repetitions ----------
    // each repetition runs the systems one after the other (tap, then xdp), each on a fresh server
    const reps = Object.fromEntries(o.systems.map((x) => [x, []]));
    const info = {};
    for (let rep = 0; rep < o.reps; rep++) {
      for (const x of o.systems) {
        const L = LINKS[x];
        srv = await startServer(L);
        try {
          await wrk(L, o.quick ? 1 : 3); // warm-up: JIT, the stack's neighbor entry, the pool's first pages
          const cells = {};
          for (const cell of CELLS) cells[cell] = await runCell(L, srv, cell);
          // the floods alone (after the cells: the SYN flood leaves its half-open blocks behind)
          const alone = {};
          for (const cell of CELLS.filter((c) => MODE[c]))
            alone[cell] = await floodAlone(L, srv, cell, o.quick ? 1 : 2);
          const st = await idle(srv, o.quick ? 5000 : 10000);
          info[x] = st.info;
          const c = st.pool;
          const open = Object.values(st.states).reduce((x, y) => x + y, 0);
          reps[x].push({ cells, alone, pool: c, leaked: c.total - c.kept - c.nic - c.free, check: st.check, open });
          if (srv.p.exitCode !== null || srv.p.signalCode !== null) throw new Error(`pmstack exited: ${srv.p.err}`);
        } finally {
          await stopServer(srv);
          srv = null;
        }
      }
    }

    // ---------- results ----------
    const rows = [];
    const ratios = [];
    for (const x of o.systems) {
      const L = LINKS[x];
      const SYSTEM = L.system;
      const sysReps = reps[x];
      const best = sysReps.reduce((a, b) => (b.cells.base.rps > a.cells.base.rps ? b : a));
      const add = (metric, value, unit) => {
        if (Number.isFinite(value)) rows.push({ system: SYSTEM, metric, value, unit });
      };
      const { base, synflood, ackflood, rstflood } = best.cells;
      add("req_s_base", base.rps, "1/s");
      add("p99_us_base", pct(base, 99), "us");
      add("req_s_synflood", synflood.rps, "1/s");
      add("p99_us_synflood", pct(synflood, 99), "us");
      add("synflood_pps", synflood.pps, "1/s");
      add("syn_cookies_sent", synflood.tcp.TCP_SYNQ_OVERFLOW, "segments");
      add("req_s_ackflood", ackflood.rps, "1/s");
      add("p99_us_ackflood", pct(ackflood, 99), "us");
      add("ackflood_pps", ackflood.pps, "1/s");
      add("req_s_rstflood", rstflood.rps, "1/s");
      add("p99_us_rstflood", pct(rstflood, 99), "us");
      add("rstflood_pps", rstflood.pps, "1/s");
      add("challenge_acks", rstflood.tcp.TCP_CHALLENGE_ACK, "segments");
      add("challenge_acks_limited", rstflood.tcp.TCP_CHALLENGE_LIMITED, "segments");
      add("leaked_buffers", Math.max(...sysReps.map((r) => r.leaked)), "buffers");
      ratios.push(
        ...["synflood", "ackflood", "rstflood"].map((cell) => ({
          metric: `req_s_${cell} / req_s_base`,
          system: `${SYSTEM} (${cell})`,
          peer: `${SYSTEM} (wrk alone)`,
          ratio: best.cells[cell].rps / base.rps,
          better: "higher",
        })),
      );

      const tap = L.kind === "tap";
      const synRatio = synflood.rps / base.rps;
      const xdpLine = (w) =>
        Object.keys(w.xdp).length
          ? `; the AF_XDP socket's kernel drops ${w.xdp.rxDropped} (FILL ring empty ${w.xdp.rxFillRingEmpty}, RX ring full ${w.xdp.rxRingFull}), invalid descriptors rx ${w.xdp.rxInvalidDescs} / tx ${w.xdp.txInvalidDescs}`
          : "";
      const cellLine = (w) =>
        `${w.cell}: ${Math.round(w.rps)} req/s, p50 ${pct(w, 50)} us, p99 ${pct(w, 99)} us, ` +
        (w.flood
          ? `sender ${w.flood.sent} sent + ${w.flood.failed} refused in ${w.flood.seconds.toFixed(2)} s, router forwarded ${w.forwarded} to ${L.link} (${Math.round(w.pps)}/s), `
          : "") +
        (tap
          ? `the TAP queue dropped ${w.tapDropped} frames (pmstack read ${w.tapTx}), `
          : `the veth's kernel end ${L.dev} sent ${w.tapTx} frames and dropped ${w.tapDropped}${xdpLine(w)}, `) +
        `pmstack rx ${w.rxFrames} / tx ${w.txFrames} frames in ${w.turns} loop turns with ${w.syscalls} NIC syscalls` +
        (tap ? ` (${w.rxEagain} reads found the TAP queue empty)` : "") +
        `, over the cell (the flood's lead and tail included) pmstack's process ${(w.serverCpu * 100).toFixed(0)}% of a CPU` +
        (CPU ? ` (CPU ${CPU.server} ${(w.serverCpuAll * 100).toFixed(0)}% busy in all)` : "") +
        `, client CPU ${Number.isFinite(w.clientCpu) ? (w.clientCpu * 100).toFixed(0) + "%" : "n/a"}` +
        (w.errCount ? `, wrk errors ${JSON.stringify(w.errors)}` : "");
      const n = [
        `req_s_synflood / req_s_base = ${synRatio.toFixed(2)} (target >= 0.5: ${synRatio >= 0.5 ? "met" : "NOT met"}); offered SYN rate ${Math.round(synflood.pps)}/s against --rate ${o.rate}${synflood.pps < 0.95 * o.rate ? " (BELOW the target rate: the sender or the router on CPU 0 could not keep up)" : ""}`,
        ...CELLS.map((c) => cellLine(best.cells[c])),
        `the floods alone (no wrk, ${o.quick ? 1 : 2} s each, after the cells): ` +
          Object.entries(best.alone)
            .map(
              ([c, a]) =>
                `${c} ${Math.round(a.pps)}/s: the sender's process ${(a.senderCpu * 100).toFixed(0)}% of a CPU (its syscalls, the forwarding into ${L.link} in them${tap ? "" : ", and the veth's XDP redirect and copy into the UMEM"}), CPU ${CPU?.client ?? "0"} ${Number.isFinite(a.clientCpu) ? (a.clientCpu * 100).toFixed(0) + "%" : "n/a"} busy in all (anything else running there included), pmstack's process ${(a.serverCpu * 100).toFixed(0)}%`,
            )
            .join("; ") +
          (CPU
            ? `; wrk alone keeps CPU ${CPU.client} ${(base.clientCpu * 100).toFixed(0)}% busy, so what the flood takes there it takes from wrk: compare pmstack's CPU and ${tap ? "the TAP's drops" : "the AF_XDP drops"} to see whether pmstack or the client set the rate`
            : ""),
        `SYN flood: TCP_SYNQ_OVERFLOW ${synflood.tcp.TCP_SYNQ_OVERFLOW} (SYN-ACKs with cookies), TCP_COOKIE_OK ${synflood.tcp.TCP_COOKIE_OK} (wrk's own connections, opened by cookie while the queue was full), TCP_COOKIE_BAD ${synflood.tcp.TCP_COOKIE_BAD}, TCP_CONN_EXHAUSTED ${synflood.tcp.TCP_CONN_EXHAUSTED}, TX_RING_FULL ${synflood.tcp.TX_RING_FULL}, BUF_EXHAUSTED ${synflood.tcp.BUF_EXHAUSTED}; the first 1024 SYNs filled the SYN queue with half-open blocks, which stay until their 5 SYN-ACK retries run out`,
        `ACK flood: TCP_COOKIE_BAD ${ackflood.tcp.TCP_COOKIE_BAD} (each answered with an RST), TCP_NO_CONN ${ackflood.tcp.TCP_NO_CONN}, TX_RING_FULL ${ackflood.tcp.TX_RING_FULL}`,
        `RST flood (src ${L.client}, ports ${LOCAL_PORTS[0]}-${LOCAL_PORTS[1]}, ${CONNS} of them wrk's): TCP_RST_IN ${rstflood.tcp.TCP_RST_IN} (RSTs with the exact sequence number, the ones wrk's kernel sends when wrk closes its connections at the end included; wrk alone: ${base.tcp.TCP_RST_IN}), TCP_CHALLENGE_ACK ${rstflood.tcp.TCP_CHALLENGE_ACK}, TCP_CHALLENGE_LIMITED ${rstflood.tcp.TCP_CHALLENGE_LIMITED}; ${rstflood.errCount ? `wrk errors ${JSON.stringify(rstflood.errors)}` : "wrk saw no error (no connection of its was reset during its run)"}; a random sequence number falls in a 256 KiB window with probability 2^-14 and is exact with 2^-32`,
        `buffers after the floods (server idle, wrk done): ` +
          sysReps
            .map(
              (r, i) =>
                `rep ${i + 1}: total ${r.pool.total}, free ${r.pool.free}, kept ${r.pool.kept}, nic ${r.pool.nic}, stack ${r.pool.stack}, app ${r.pool.app}: leaked ${r.leaked} (free ${r.leaked === 0 ? "==" : "!="} total - kept - nic); pool check ${r.check}; ${r.open} connections open (half-open blocks are not listed)`,
            )
            .join("; "),
        `TCP_BAD_CSUM over the floods: ${["synflood", "ackflood", "rstflood"].map((c) => best.cells[c].tcp.TCP_BAD_CSUM).join(", ")} (the sender's checksums are right)`,
        tap
          ? `SYN-ACKs and RSTs to the spoofed sources: pmstack sends them to its gateway (the router, ${NET.client} on the TAP), which drops them on its blackhole route for ${NET.spoofed} (no ICMP); the TAP write and that drop run on pmstack's CPU, inside its write syscall`
          : `SYN-ACKs and RSTs to the spoofed sources: pmstack sends them to its gateway (the router, ${L.client} on the veth), which drops them on its blackhole route for ${NET.spoofed} (no ICMP); the veth transmit and that drop run in pmstack's AF_XDP TX kick (sendto), on pmstack's CPU`,
        tap
          ? `set-up: pmstack httpd (the CLI's defaults: --max-conns 4096, --at-max-conns drop, SYN queue 1024), pool of 131072 x 2 KiB buffers on /dev/shm, TAP queue ${tapQueue} frames, frames batched: ${info[x]?.batch}; wrk -t 1 -c ${CONNS} ${o.secs} s, 1 KiB POSTs (bench/durable-post.lua); floods at --rate ${o.rate}/s from a second namespace through the client namespace (ip_forward there only), starting ${LEAD_S} s before wrk, ending about ${TAIL_S} s after; cells per repetition in the order ${CELLS.join(", ")} on a fresh server; ${o.reps} repetition(s), the one with the best req_s_base kept whole`
          : `set-up: pmstack httpd (the CLI's defaults: --max-conns 4096, --at-max-conns drop, SYN queue 1024), pool of 131072 x 2 KiB buffers on /dev/shm, AF_XDP on queue 0 of ${L.peer} in a server namespace (the veth's kernel end ${L.dev} in the client namespace, ethtool tx off there: complete checksums), the socket in ${info[x]?.mode} mode, ${info[x]?.bind} bind, rings of ${info[x]?.ringSize}, UMEM ${info[x]?.umem}; wrk -t 1 -c ${CONNS} ${o.secs} s, 1 KiB POSTs (bench/durable-post.lua); floods at --rate ${o.rate}/s from a second namespace through the client namespace (ip_forward there only), starting ${LEAD_S} s before wrk, ending about ${TAIL_S} s after; cells per repetition in the order ${CELLS.join(", ")} on a fresh server, after pmstack-httpd-tap's in the same repetition when both run; ${o.reps} repetition(s), the one with the best req_s_base kept whole`,
      ];
      notes.push(...n.map((t) => `${SYSTEM}: ${t}`));
    }
    notes.push(
      CPU
        ? `pinned: wrk and the flood sender on CPU ${CPU.client} (its kernel work, forwarding the flood into pmstack's link, there too), pmstack on CPU ${CPU.server}`
        : "not pinned",
      `conditions: ${os.cpus().length} vCPUs shared with other engineers' work; load average ${load0.map((x) => x.toFixed(2)).join(" ")} at start, ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(" ")} at end; run took ${Math.round((Date.now() - t0) / 1000)} s`,
    );
    return { rows, ratios, notes };
  } finally {
    if (srv) srv.p.kill("SIGKILL");
    C?.cleanup();
    F?.cleanup();
    S?.cleanup();
    removeDirs();
    process.off("exit", removeDirs);
    for (const [sig, h] of handlers) process.off(sig, h);
  }
}

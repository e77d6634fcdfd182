// bench/nic: pmstack on a NIC queue against a kernel peer, beside kernel-to-kernel TCP over the
// same kind of veth, all in one run. Everything happens inside network namespaces this
// benchmark makes (a TAP device and veth pairs made there, addresses in 198.18.6.0/24 and
// 198.18.7.0/24 only), removed at the end, also on error. Systems:
//   pmstack-tap   Stack + TapPort (offloads on) + NicLoop in this process; pmtapb0 in its
//                 namespace (kernel 198.18.6.1/25, pmstack 198.18.6.2)
//   pmstack-xdp   Stack + XdpPort + NicLoop; a veth pair (one queue) in its namespace, the
//                 kernel on pmvkb0 (198.18.7.1/24), pmstack's XSK on pmvpb0 (198.18.7.2);
//                 the pool file is on /dev/shm and is the UMEM
//   kernel-veth   a Node `net` server (the kernel's TCP) in a second namespace behind the
//                 same kind of veth pair (pmvkb1 198.18.6.129/25 <-> pmvpb1 198.18.6.130)
//   pmstack-v6    pmstack-tap's set-up speaking IPv6 (pmtapb6: kernel 2001:2:0:6::1/64,
//                 pmstack 2001:2:0:6::2; dual stack, the connections over IPv6)
//   kernel-veth-v6 kernel-veth over IPv6 (pmvkb7 2001:2:0:7::1/64 <-> pmvpb7 2001:2:0:7::2)
// The client is bench/_nic-peer.mjs (Node `net`, the kernel's TCP), the same program for all
// three, in the namespace of the kernel end. The pmstack app is the same as the kernel one: a
// bulk sink that meters and spot-checks the stream, a bulk source, a 64 B echo. Metrics
// (medians of REPS runs, the systems interleaved so that background load hits all alike):
//   bulk_gbps          one connection, kernel client -> server, rate metered by the receiver
//                      over MEASURE_MS after WARM_MS; bytes received = bytes sent
//   bulk_tx_gbps       one connection, server -> kernel client, metered by the client
//   rr_tps             64 B request / 64 B response ping-pong on 1 connection, every response
//                      checked against its request
//   rr_tps_16conn      the same over 16 connections, one request outstanding on each
//   syscalls_per_req   every syscall of the server process (all threads: epoll_wait, futex,
//                      timers included) per transaction, `strace -c -f` attached to the
//                      server in a separate 1-connection rr pass (strace slows the process;
//                      the counts, not the rate, are used)
//   nic_syscalls_per_req  pmstack only: the NIC's own syscalls (readv/writev on the TAP fd,
//                      sendto/recvfrom on the XSK) from the addon's counter (NicLoop
//                      stats.syscalls) in the unstraced rr run
//   cpu_us_per_req     CPU time (user + system, all threads) of the server process
//                      (/proc/PID/stat) and of the client (its process.cpuUsage()) per
//                      transaction in the 1-connection rr run. Both, because kernel TCP work
//                      is charged to whichever process's syscall or softirq ran it: a write
//                      to a TAP or veth runs the receiver's kernel TCP input in the writer's
//                      context, so pmstack's process pays for the kernel client's receive
//                      work and the kernel client pays for the kernel server's
// Args: --reps N (default 5), --only SYSTEM[,SYSTEM], --tests bulk,bulktx,rr,rrn (default: all;
// for profiling one), --no-strace. The IPv6 systems take part in the rounds like the others;
// their ratios compare pmstack-v6 with kernel-veth-v6 and with pmstack-tap (IPv4).
import { spawn, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import os from "node:os";
import { Stack, TapPort, XdpPort, NicLoop, reserveNicQueues } from "../build/index.js";
import { Netns, netnsUnavailable } from "../test/lib/netns.mjs";
import { cpuUs, median, ratios, straceCount } from "./_lib.mjs";
import { BULK_PORT, BULK_TX_PORT, RR_PORT, MEASURE_MS, WARM_MS, TX_MS, BulkMeter, fillStream } from "./_nic-peer.mjs";

const peer = new URL("./_nic-peer.mjs", import.meta.url).pathname;
const SYSTEMS = ["pmstack-tap", "pmstack-xdp", "kernel-veth", "pmstack-v6", "kernel-veth-v6"];
const RR_CONNS = 16;
const STRACE_RR_MS = 1000;
const PAYLOAD = 1448; // MSS 1460 less the timestamp option
const PAYLOAD_V6 = 1428; // IPv6: MSS 1440 less the timestamp option

// pool files go at exit too, even when a failure ends the process
const poolFiles = new Set();
process.on("exit", () => {
  for (const f of poolFiles) rmSync(f, { force: true });
});
// an interrupted run still cleans up (the namespaces, our clients and pool files go in "exit")
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"])
  process.once(sig, () => process.exit(128 + os.constants.signals[sig]));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(p, re, ms = 15000) {
  const end = Date.now() + ms;
  while (!re.test(p.out)) {
    if (p.exitCode !== null) throw new Error(`exited (${p.exitCode}) before ${re}: ${p.out}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${re}: ${p.out}`);
    await sleep(5);
  }
  return re.exec(p.out);
}

/** Runs the client in `ns`; returns its RESULT JSON. `onReady(p, pid)`: with PEER_PAUSE_MS. */
async function client(ns, args, { pauseMs, onReady, limit = 20000 } = {}) {
  const opts = pauseMs ? { env: { ...process.env, PEER_PAUSE_MS: String(pauseMs) } } : {};
  const p = ns.node(peer, ["client", ...args.map(String)], opts);
  const timer = setTimeout(() => p.kill("SIGKILL"), limit);
  try {
    if (onReady) await onReady(p, +(await waitFor(p, /READY (\d+)/))[1]);
    const r = await p.done;
    const m = /RESULT (.*)/.exec(r.stdout);
    if (!m) throw new Error(`client ${args.join(" ")} failed (${r.status ?? r.signal}): ${r.stdout} ${r.stderr}`);
    return JSON.parse(m[1]);
  } finally {
    clearTimeout(timer);
  }
}

/** pmstack's server app: bulk sink (report after the peer's FIN), bulk source, echo. */
function pmstackApp(stack, payload = PAYLOAD) {
  const enc = new TextEncoder();
  const meters = new Map(); // sink connections
  const sources = new Map(); // source connections: {end, sent, blocked, closed}
  const st = { echoed: 0, refused: 0 };
  const reply = (conn, bytes) => {
    const i = stack.pool.alloc();
    stack.pool.view(i, 128, bytes.length).set(bytes);
    stack.send(conn, { index: i, offset: 128, length: bytes.length });
  };
  const onEvent = (ev) => {
    switch (ev.type) {
      case "ACCEPTED": // len: the local port
        if (ev.len === BULK_PORT) meters.set(ev.conn, new BulkMeter());
        else if (ev.len === BULK_TX_PORT)
          sources.set(ev.conn, { end: performance.now() + TX_MS, sent: 0, blocked: false, closed: false });
        break;
      case "DATA": {
        const v = stack.pool.view(ev.buf, ev.off, ev.len);
        const m = meters.get(ev.conn);
        if (m) m.chunk(v, performance.now());
        else if (!sources.has(ev.conn)) {
          reply(ev.conn, v); // echo: the response is the request's bytes
          st.echoed++;
        }
        stack.pool.free(ev.buf);
        stack.recvd(ev.conn, ev.len);
        break;
      }
      case "PEER_CLOSED": {
        const m = meters.get(ev.conn);
        if (m) reply(ev.conn, enc.encode(JSON.stringify(m.report()) + "\n"));
        if (!sources.has(ev.conn)) stack.close(ev.conn);
        break;
      }
      case "SEND_REFUSED": {
        const s = sources.get(ev.conn);
        if (s) {
          s.blocked = true;
          s.sent -= ev.len; // these bytes go again, in order, after WRITABLE
        }
        stack.pool.free(ev.buf);
        st.refused++;
        break;
      }
      case "WRITABLE": {
        const s = sources.get(ev.conn);
        if (s) s.blocked = false;
        break;
      }
      case "CLOSED":
      case "RESET":
        meters.delete(ev.conn);
        sources.delete(ev.conn);
        break;
    }
  };
  // at the end of each turn: keep every source's send queue full (one buffer per segment)
  const onTurnEnd = () => {
    if (!sources.size) return;
    const now = performance.now();
    for (const [conn, s] of sources) {
      if (s.closed || s.blocked) continue;
      if (now >= s.end) {
        stack.close(conn);
        s.closed = true;
        continue;
      }
      while (!s.blocked && stack.commandSpace() > 16) {
        const i = stack.pool.alloc();
        fillStream(stack.pool.view(i, 128, payload), s.sent);
        s.sent += payload;
        stack.send(conn, { index: i, offset: 128, length: payload });
        // a refusal arrives as an event at the next poll; stop after a send queue's worth
        if (stack.commandSpace() <= 16) break;
      }
    }
  };
  return { onEvent, onTurnEnd, st };
}

/**
 * pmstack on a NIC port made by `open(stack, queues, ns)`, which also sets up the namespace.
 * With `host6` ("ADDR/LEN") the stack is dual-stack and clients reach it over IPv6.
 */
async function pmstackSystem(name, tag, host, prefix, open, host6 = null) {
  const ns = new Netns(tag);
  if (host6) ns.enableIpv6();
  const poolPath = `/dev/shm/pmstack-bench-nic-${tag}-${process.pid}.pm`;
  poolFiles.add(poolPath);
  let stack;
  let port;
  let loop;
  const close = () => {
    try {
      loop?.stop();
      port?.close();
    } finally {
      ns.cleanup();
      try {
        stack?.shutdown();
      } finally {
        rmSync(poolPath, { force: true });
      }
    }
  };
  try {
    let queues;
    stack = Stack.create({
      mac: "02:00:00:00:00:02",
      ip: `${host}/${prefix}`,
      ...(host6 ? { ip6: host6 } : {}),
      pool: { path: poolPath, buffers: 16384 },
      rcvBuf: 1 << 20,
      sndBuf: 1 << 20,
      nodelay: true,
      configure: (core) => (queues = reserveNicQueues(core)),
    });
    port = open(stack, queues, ns);
    // TSO as the NIC allows (Stack.configureOffloads decides)
    stack.configureOffloads(port.caps);
    const app = pmstackApp(stack, host6 ? PAYLOAD_V6 : PAYLOAD);
    loop = new NicLoop(stack, port, app);
    loop.start();
    stack.listen(BULK_PORT);
    stack.listen(BULK_TX_PORT);
    stack.listen(RR_PORT);
    // IPv6 addresses are usable once duplicate address detection is over (1 s)
    for (let k = 0; host6 && k < 100 && !stack.ip6Addresses().every((a) => a.state === "preferred"); k++)
      await sleep(50);
  } catch (e) {
    close();
    throw e;
  }
  return {
    name,
    ns,
    host: host6 ? host6.split("/")[0] : host,
    pid: process.pid,
    loop: () => ({ ...loop.stats, ...pick(port.stats(), ["kicks", "txEagain", "rxEagain", "txCopiedBytes"]) }),
    copies: port.copies,
    health: () => {
      const s = stack.stats();
      return `TCP_BAD_CSUM ${s.TCP_BAD_CSUM ?? 0}, RX ring full ${loop.stats.rxRingFull}`;
    },
    close,
  };
}

function tapSystem() {
  return pmstackSystem("pmstack-tap", "nicbtap", "198.18.6.2", 25, (stack, q, ns) => {
    const tap = TapPort.open(stack.pool, q, { name: "pmtapb0", netns: ns.path });
    ns.ip(["link", "set", "pmtapb0", "up"]);
    ns.ip(["addr", "add", "198.18.6.1/25", "dev", "pmtapb0"]);
    return tap;
  });
}

function tap6System() {
  return pmstackSystem(
    "pmstack-v6",
    "nicbtap6",
    "198.18.6.2",
    25,
    (stack, q, ns) => {
      const tap = TapPort.open(stack.pool, q, { name: "pmtapb6", netns: ns.path });
      ns.ip(["link", "set", "pmtapb6", "up"]);
      ns.ip(["addr", "add", "198.18.6.1/25", "dev", "pmtapb6"]);
      ns.ip(["-6", "addr", "add", "2001:2:0:6::1/64", "dev", "pmtapb6", "nodad"]);
      return tap;
    },
    "2001:2:0:6::2/64",
  );
}

function xdpSystem() {
  return pmstackSystem("pmstack-xdp", "nicbxdp", "198.18.7.2", 24, (stack, q, ns) => {
    const one = ["numtxqueues", "1", "numrxqueues", "1"];
    ns.ip(["link", "add", "pmvkb0", ...one, "type", "veth", "peer", "name", "pmvpb0", ...one]);
    ns.ip(["link", "set", "pmvpb0", "address", "02:00:00:00:00:02"]);
    ns.ip(["addr", "add", "198.18.7.1/24", "dev", "pmvkb0"]);
    ns.ip(["link", "set", "pmvkb0", "up"]);
    ns.ip(["link", "set", "pmvpb0", "up"]);
    // AF_XDP gives the receiver no checksum metadata: the kernel side must send complete
    // checksums (tx off also turns TSO off; an XDP socket takes no superframes)
    const r = ns.run("ethtool", ["-K", "pmvkb0", "tx", "off"]);
    if (r.status !== 0) throw new Error(`ethtool -K pmvkb0 tx off: ${r.stderr || r.error} (install ethtool: .ci/deps)`);
    // BPF_PROG_LOAD fails now and then here (a signal during verification, e.g. the
    // profiler's SIGPROF, gives EAGAIN; libbpf retries it): try again
    for (let k = 0; ; k++) {
      try {
        return XdpPort.open(stack.pool, q, { ifname: "pmvpb0", netns: ns.path });
      } catch (e) {
        if (k >= 3 || !/cannot load the XDP program/.test(e.message)) throw e;
      }
    }
  });
}

async function kernelSystem(v6 = false) {
  const a = new Netns(v6 ? "nicbka6" : "nicbka");
  const b = new Netns(v6 ? "nicbkb6" : "nicbkb");
  const close = () => {
    a.cleanup();
    b.cleanup();
  };
  try {
    const one = ["numtxqueues", "1", "numrxqueues", "1"];
    const [ka, kb] = v6 ? ["pmvkb7", "pmvpb7"] : ["pmvkb1", "pmvpb1"];
    if (v6) {
      a.enableIpv6();
      b.enableIpv6();
    }
    a.ip(["link", "add", ka, ...one, "type", "veth", "peer", "name", kb, ...one, "netns", b.name]);
    if (v6) {
      a.ip(["-6", "addr", "add", "2001:2:0:7::1/64", "dev", ka, "nodad"]);
      b.ip(["-6", "addr", "add", "2001:2:0:7::2/64", "dev", kb, "nodad"]);
    } else {
      a.ip(["addr", "add", "198.18.6.129/25", "dev", ka]);
      b.ip(["addr", "add", "198.18.6.130/25", "dev", kb]);
    }
    a.ip(["link", "set", ka, "up"]);
    b.ip(["link", "set", kb, "up"]);
    const host = v6 ? "2001:2:0:7::2" : "198.18.6.130";
    const srv = b.node(peer, ["server", host]); // `ip netns exec` execs node: same pid
    await waitFor(srv, /LISTENING/);
    return { name: v6 ? "kernel-veth-v6" : "kernel-veth", ns: a, host, pid: srv.pid, loop: null, close };
  } catch (e) {
    close();
    throw e;
  }
}

/** One round of the `tests` on `sys`: {bulk, bulkTx, rr, rrN, cpuPerReq, nicPerReq, ...Loop}. */
async function round(sys, tests) {
  const { ns, host } = sys;
  const out = {};
  let l0;
  if (tests.has("bulk")) {
    // bulk, kernel -> server
    l0 = sys.loop?.();
    const b = await client(ns, ["bulk", host, TX_MS]);
    const rep = JSON.parse(b.reply || "{}");
    if (rep.bytes !== b.sent || rep.bad !== 0 || !(rep.gbps > 0))
      throw new Error(`${sys.name} bulk: sent ${b.sent}, server ${b.reply}`);
    out.bulk = rep.gbps;
    out.bulkBytes = rep.bytes;
    if (l0) out.bulkLoop = delta(sys.loop(), l0);
  }
  if (tests.has("bulktx")) {
    // bulk, server -> kernel
    l0 = sys.loop?.();
    const t = await client(ns, ["bulktx", host]);
    if (t.bad !== 0 || !(t.gbps > 0)) throw new Error(`${sys.name} bulk tx: ${JSON.stringify(t)}`);
    out.bulkTx = t.gbps;
    out.bulkTxBytes = t.bytes;
    if (l0) out.bulkTxLoop = delta(sys.loop(), l0);
  }
  if (tests.has("rr")) {
    // rr, 1 connection, with the server's CPU time and (pmstack) NIC syscalls
    l0 = sys.loop?.();
    const c0 = cpuUs(sys.pid);
    const rr = await client(ns, ["rr", host, MEASURE_MS, 1]);
    const cpu = cpuUs(sys.pid) - c0;
    if (rr.mismatches !== 0 || !(rr.measured > 0)) throw new Error(`${sys.name} rr: ${JSON.stringify(rr)}`);
    out.rr = rr.tps;
    out.rrTotal = rr.total;
    out.cpuPerReq = (cpu + rr.cpuUs) / rr.total;
    out.serverCpuPerReq = cpu / rr.total;
    if (l0) {
      out.rrLoop = delta(sys.loop(), l0);
      out.nicPerReq = out.rrLoop.syscalls / rr.total;
    }
  }
  if (tests.has("rrn")) {
    // rr, RR_CONNS connections
    l0 = sys.loop?.();
    const rn = await client(ns, ["rr", host, MEASURE_MS, RR_CONNS]);
    if (rn.mismatches !== 0 || !(rn.measured > 0))
      throw new Error(`${sys.name} rr x${RR_CONNS}: ${JSON.stringify(rn)}`);
    out.rrN = rn.tps;
    if (l0) out.rrNLoop = delta(sys.loop(), l0);
  }
  return out;
}

function pick(o, keys) {
  const r = {};
  for (const k of keys) r[k] = o[k] ?? 0;
  return r;
}

function delta(a, b) {
  const d = {};
  for (const k of Object.keys(a)) d[k] = a[k] - b[k];
  return d;
}

/** The strace pass: the client connects and pauses, strace attaches to the server, then 1 s of rr. */
async function stracePass(sys) {
  let sv = null;
  const r = await client(sys.ns, ["rr", sys.host, STRACE_RR_MS, 1], {
    pauseMs: 1500,
    onReady: (p) => {
      // attach now; the count ends when the client has exited
      sv = straceCount(sys.pid, () => p.done);
    },
  });
  const s = await sv;
  if (r.mismatches !== 0) throw new Error(`${sys.name} strace rr: ${JSON.stringify(r)}`);
  const per = (n) => (n / r.total).toFixed(2);
  return {
    perReq: s.calls / r.total,
    tps: r.tps,
    total: r.total,
    top: s.top
      .slice(0, 5)
      .map(([n, k]) => `${n} ${per(k)}`)
      .join(", "),
  };
}

const fmt = (x, d = 2) => (Math.abs(x) >= 100 ? Math.round(x).toLocaleString("en-US") : x.toFixed(d));
const spread = (xs, d) => `${xs.map((x) => fmt(x, d)).join(" / ")}`;
const perTurn = (l) => ((l.rxFrames + l.txFrames) / l.turns).toFixed(2);

export async function run(args) {
  const why = netnsUnavailable();
  if (why) throw new Error(`bench/nic needs network namespaces: ${why}`);
  const ri = args.indexOf("--reps");
  const reps = ri >= 0 ? +args[ri + 1] : 5;
  const useStrace = !args.includes("--no-strace") && spawnSync("strace", ["-V"]).status === 0;
  const oi = args.indexOf("--only");
  const only = oi >= 0 ? args[oi + 1].split(",") : SYSTEMS;
  const ti = args.indexOf("--tests");
  const tests = new Set(ti >= 0 ? args[ti + 1].split(",") : ["bulk", "bulktx", "rr", "rrn"]);
  const open = {
    "pmstack-tap": tapSystem,
    "pmstack-xdp": xdpSystem,
    "kernel-veth": () => kernelSystem(false),
    "pmstack-v6": tap6System,
    "kernel-veth-v6": () => kernelSystem(true),
  };
  const systems = [];
  const rows = [];
  const notes = [];
  const t0 = Date.now();
  try {
    for (const s of SYSTEMS) if (only.includes(s)) systems.push(await open[s]());
    await sleep(100);
    const res = new Map(systems.map((s) => [s.name, []]));
    // interleaved: each round measures every system once, so load from elsewhere hits all alike
    for (let k = 0; k < reps; k++) for (const s of systems) res.get(s.name).push(await round(s, tests));
    const straced = new Map();
    if (useStrace) for (const s of systems) straced.set(s.name, await stracePass(s));
    for (const s of systems) {
      const rs = res.get(s.name);
      const col = (k) => rs.map((r) => r[k]);
      const add = (metric, key, unit) =>
        rs[0][key] !== undefined && rows.push({ system: s.name, metric, value: median(col(key)), unit });
      add("bulk_gbps", "bulk", "Gbit/s");
      add("bulk_tx_gbps", "bulkTx", "Gbit/s");
      add("rr_tps", "rr", "req/s");
      add(`rr_tps_${RR_CONNS}conn`, "rrN", "req/s");
      const st = straced.get(s.name);
      if (st) rows.push({ system: s.name, metric: "syscalls_per_req", value: st.perReq, unit: "syscalls/req" });
      if (s.loop) add("nic_syscalls_per_req", "nicPerReq", "syscalls/req");
      add("cpu_us_per_req", "cpuPerReq", "us/req");
      const last = rs[rs.length - 1];
      const parts = [];
      const ratio = (l) => (l.syscalls / (l.rxFrames + l.txFrames)).toFixed(2);
      if (last.bulkLoop !== undefined || last.bulk !== undefined)
        parts.push(
          `bulk ${spread(col("bulk"))} Gbit/s (${(last.bulkBytes / 2 ** 20).toFixed(0)} MiB in the last, ` +
            `received = sent, stream checked)` +
            (s.loop
              ? ` at ${perTurn(last.bulkLoop)} frames per loop turn, ${ratio(last.bulkLoop)} NIC syscalls per frame`
              : ""),
        );
      if (last.bulkTx !== undefined)
        parts.push(
          `bulk tx ${spread(col("bulkTx"))} Gbit/s` +
            (s.loop
              ? ` at ${perTurn(last.bulkTxLoop)} frames per turn, ${ratio(last.bulkTxLoop)} NIC syscalls per frame` +
                (last.bulkTxLoop.kicks
                  ? ` (${last.bulkTxLoop.kicks} TX kicks, ${last.bulkTxLoop.txEagain} of them EAGAIN: ` +
                    `the kernel sends at most 32 frames per kick in copy mode)`
                  : "")
              : ""),
        );
      if (last.rr !== undefined)
        parts.push(
          `rr ${spread(col("rr"))} req/s (every response equal to its request), CPU client + server ` +
            `${spread(col("cpuPerReq"), 1)} us/req (server alone ${spread(col("serverCpuPerReq"), 1)})` +
            (s.loop ? `, ${perTurn(last.rrLoop)} frames per turn` : ""),
        );
      if (last.rrN !== undefined)
        parts.push(
          `rr x${RR_CONNS} ${spread(col("rrN"))} req/s` + (s.loop ? `, ${perTurn(last.rrNLoop)} frames per turn` : ""),
        );
      if (s.health) parts.push(s.health());
      if (st)
        parts.push(
          `strace pass (${st.total} transactions, ${fmt(st.tps)} req/s while traced): ${st.perReq.toFixed(2)} ` +
            `syscalls/req, most: ${st.top}`,
        );
      notes.push(`${s.name}, per round (${reps} rounds): ${parts.join("; ")}`);
      if (s.copies) notes.push(`${s.name}: ${s.copies}`);
    }
  } finally {
    let err = null;
    for (const s of systems.reverse()) {
      try {
        s.close();
      } catch (e) {
        err ??= e;
      }
    }
    if (err) throw err;
  }
  const perf = rows.filter((r) => !/syscalls|cpu_us/.test(r.metric));
  const costs = rows.filter((r) => /syscalls|cpu_us/.test(r.metric));
  const rat = [];
  for (const s of ["pmstack-tap", "pmstack-xdp"])
    rat.push(...ratios(perf, s, "kernel-veth"), ...ratios(costs, s, "kernel-veth", true));
  rat.push(...ratios(perf, "pmstack-v6", "kernel-veth-v6"), ...ratios(costs, "pmstack-v6", "kernel-veth-v6", true));
  // IPv6 against IPv4 on the same NIC path (target: 0.9x or better)
  rat.push(...ratios(perf, "pmstack-v6", "pmstack-tap"));
  const la = os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(" ");
  notes.unshift(
    `What: pmstack in this Node process (Stack + NicLoop on one queue: TAP with offloads, or AF_XDP on a veth) ` +
      `serving the Linux kernel's TCP (a Node \`net\` client in a namespace), beside the same client against a ` +
      `Node \`net\` server over a veth pair (kernel to kernel), in one run. The app is the same on both stacks: ` +
      `bulk sink and source (one connection, ${MEASURE_MS} ms metered after ${WARM_MS} ms, the stream checked), ` +
      `64 B echo (1 and ${RR_CONNS} connections, one request outstanding on each, every response checked). ` +
      `Higher is better, except syscalls_per_req and cpu_us_per_req.`,
    `Conditions: ${reps} rounds, the systems interleaved in each (tap, xdp, kernel, tap over IPv6, kernel over IPv6), medians shown, every round in ` +
      `the notes; ${((Date.now() - t0) / 1000).toFixed(0)} s in all. ${os.cpus().length} cores shared with other ` +
      `work (load average ${la} at the end): client, server and the kernel's softirq work compete for them, ` +
      `and 1-connection rr is bound by cross-core wake-up latency in this VM.`,
    `syscalls_per_req: every syscall of the server process (all threads: epoll, futex, timers included) per ` +
      `transaction, counted by strace -c -f attached in a separate ${STRACE_RR_MS / 1000} s rr pass on 1 ` +
      `connection (strace slows the process; only the counts are used); pmstack's process is this benchmark's. ` +
      `nic_syscalls_per_req: pmstack's NIC syscalls alone (io_uring_enter, or readv/writev where io_uring is unavailable, on the TAP fd; sendto/recvfrom on the XSK), ` +
      `from the addon's counter (NicLoop stats) in the unstraced rr runs. cpu_us_per_req: CPU time of client and ` +
      `server processes together (all threads, user + system) per transaction in the 1-connection rr run: a write ` +
      `into a TAP or a veth runs the receiving kernel's TCP in the writer's context, so only the sum is like for like.`,
  );
  return { rows, ratios: rat, notes };
}

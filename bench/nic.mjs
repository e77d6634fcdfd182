// bench/nic: pmstack on a NIC queue against a kernel peer, beside kernel-to-kernel TCP over the
// same kind of veth, all in one run. Everything happens inside network namespaces this
// benchmark makes (TAP / veth devices there, addresses in 198.18.0.0/15 only), removed at the
// end. Systems:
//   pmstack-tap   Stack + TapPort + NicLoop in this process; the kernel client in a namespace
//   pmstack-xdp   Stack + XdpPort (veth, pool file on /dev/shm as UMEM) + NicLoop
//   kernel-veth   the same client against a Node `net` server in a second namespace
// The client is bench/_nic-peer.mjs (Node `net`), the same program for all three. Metrics:
//   bulk_gbps         one connection, kernel client -> server (into pmstack), rate measured by
//                     the receiver over 2.5 s after 0.5 s of warm-up; bytes received = bytes sent
//   rr_tps            64 B request / 64 B response ping-pong, --conns connections (default 1),
//                     2.5 s after 0.5 s warm-up, every response checked against its request
//   syscalls_per_req  server side per transaction: pmstack's NIC syscalls (loop.stats.syscalls)
//                     in the rr run; kernel-veth: every syscall of the server process counted by
//                     `strace -c -f -p` in a separate 1 s rr pass. Whole-process strace counts
//                     for all three servers and for the client go in the notes.
// Args: --conns N (rr connections, default 1), --no-strace, --only SYSTEM[,SYSTEM].
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, mkdtempSync } from "node:fs";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { Stack, TapPort, XdpPort, NicLoop, reserveNicQueues } from "../build/index.js";
import { Netns, netnsUnavailable } from "../test/lib/netns.mjs";
import { ratios } from "./_lib.mjs";
import { BULK_PORT, RR_PORT, WARM_MS, MEASURE_MS, BulkMeter } from "./_nic-peer.mjs";

const peer = fileURLToPath(new URL("./_nic-peer.mjs", import.meta.url));
const BULK_CLIENT_MS = WARM_MS + MEASURE_MS + 500;
const STRACE_RR_MS = 1000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(p, re, ms = 15000) {
  const end = Date.now() + ms;
  while (!re.test(p.out)) {
    if (p.exitCode !== null) throw new Error(`peer exited (${p.exitCode}) before ${re}: ${p.out}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${re}: ${p.out}`);
    await sleep(5);
  }
  return re.exec(p.out);
}

/** Runs the client in `ns` and returns its RESULT JSON (killed after `limit` ms). */
async function client(ns, args, { env, onReady, limit = 20000 } = {}) {
  const p = ns.node(peer, ["client", ...args.map(String)], env ? { env: { ...process.env, ...env } } : {});
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

/** `strace -c -f -p pid` while `during()` runs: total syscalls and the top calls. */
async function straceCount(pid, during) {
  const dir = mkdtempSync(`${os.tmpdir()}/pmstack-nic-strace-`);
  const out = `${dir}/c.txt`;
  const st = spawn("strace", ["-c", "-f", "-p", String(pid), "-o", out], { stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  st.stderr.on("data", (d) => (err += d));
  const closed = new Promise((r) => st.on("close", r));
  try {
    const end = Date.now() + 3000;
    while (!/attached/.test(err) && Date.now() < end && st.exitCode === null) await sleep(5);
    await sleep(100); // every thread attached
    const res = await during();
    if (st.exitCode === null) st.kill("SIGINT");
    await Promise.race([closed, sleep(3000)]);
    if (st.exitCode === null) st.kill("SIGKILL");
    const text = existsSync(out) ? readFileSync(out, "utf8") : "";
    const total = /^\s*100\.00\s.*?\s(\d+)\s+(?:\d+\s+)?total$/m.exec(text);
    const calls = [...text.matchAll(/^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$/gm)]
      .map((m) => [m[2], +m[1]])
      .filter(([n]) => n !== "total")
      .slice(0, 4);
    return { res, calls: total ? +total[1] : NaN, top: calls };
  } finally {
    if (st.exitCode === null) st.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

/** pmstack's server app: a bulk sink (BulkMeter, report after the peer's FIN) and an echo. */
function pmstackApp(stack) {
  const meters = new Map();
  const enc = new TextEncoder();
  const st = { echoed: 0, refused: 0 };
  const reply = (conn, bytes) => {
    const i = stack.pool.alloc();
    stack.pool.view(i, 128, bytes.length).set(bytes);
    stack.send(conn, { index: i, offset: 128, length: bytes.length });
  };
  const onEvent = (ev) => {
    switch (ev.type) {
      case "ACCEPTED":
        meters.set(ev.conn, ev.len === BULK_PORT ? new BulkMeter() : null);
        break;
      case "DATA": {
        const v = stack.pool.view(ev.buf, ev.off, ev.len);
        const m = meters.get(ev.conn);
        if (m) m.chunk(v, performance.now());
        else {
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
        stack.close(ev.conn);
        break;
      }
      case "SEND_REFUSED":
        stack.pool.free(ev.buf);
        st.refused++;
        break;
      case "CLOSED":
      case "RESET":
        meters.delete(ev.conn);
        break;
    }
  };
  return { onEvent, st };
}

function checkBulk(system, r) {
  const rep = JSON.parse(r.reply || "{}");
  if (rep.bytes !== r.sent || rep.bad !== 0 || !(rep.gbps > 0))
    throw new Error(`${system} bulk: sent ${r.sent}, server ${r.reply}`);
  return rep;
}

function checkRr(system, r) {
  if (r.mismatches !== 0 || !(r.measured > 0)) throw new Error(`${system} rr: ${JSON.stringify(r)}`);
}

/** The three measurements against a server at `host` (client in `ns`); `server` describes it. */
async function measure(system, ns, host, conns, server, useStrace, rows, notes) {
  // bulk, kernel -> server
  const b = await client(ns, ["bulk", host, BULK_PORT, BULK_CLIENT_MS]);
  const rep = checkBulk(system, b);
  rows.push({ system, metric: "bulk_gbps", value: rep.gbps, unit: "Gbit/s" });
  // rr
  const s0 = server.syscalls?.();
  const rr = await client(ns, ["rr", host, RR_PORT, MEASURE_MS, conns]);
  checkRr(system, rr);
  const s1 = server.syscalls?.();
  rows.push({ system, metric: "rr_tps", value: rr.tps, unit: "req/s" });
  let nicPerReq = s0 === undefined ? NaN : (s1 - s0) / rr.total;
  // strace pass: the server process and the client, 1 s of rr
  let strace = null;
  if (useStrace) {
    let cl = null;
    const sv = await straceCount(server.pid, async () => {
      const r = await client(ns, ["rr", host, RR_PORT, STRACE_RR_MS, conns], {
        env: { PEER_PAUSE_MS: "600" },
        // attaches during the client's pause; ends when the client exits
        onReady: async (p, pid) => void (cl = straceCount(pid, () => p.done)),
      });
      return r;
    });
    checkRr(system, sv.res);
    const c = cl ? await cl : null;
    strace = {
      serverPerReq: sv.calls / sv.res.total,
      serverTop: sv.top.map(([n, k]) => `${n} ${(k / sv.res.total).toFixed(2)}`).join(", "),
      clientPerReq: c ? c.calls / sv.res.total : NaN,
      tps: sv.res.tps,
    };
  }
  const value = Number.isFinite(nicPerReq) ? nicPerReq : (strace?.serverPerReq ?? NaN);
  rows.push({ system, metric: "syscalls_per_req", value, unit: "syscalls/req" });
  notes.push(
    `${system}: bulk ${(rep.bytes / 2 ** 20).toFixed(0)} MiB received = sent, pattern checked; ` +
      `rr ${rr.measured} transactions measured over ${rr.seconds.toFixed(2)} s on ${conns} connection(s), ` +
      `${rr.total} in all, every response equal to its request` +
      (server.extra ? `; ${server.extra()}` : "") +
      (strace
        ? `; strace pass (${(strace.tps / 1000).toFixed(1)} k req/s under strace): server process ` +
          `${strace.serverPerReq.toFixed(2)} syscalls/req (${strace.serverTop}), ` +
          `client ${strace.clientPerReq.toFixed(2)}`
        : ""),
  );
}

/** pmstack on a NIC port made by `open(stack, queues, ns)` (the namespace is set up by it). */
async function pmstackSystem(system, tag, host, { poolPath, open }, conns, useStrace, rows, notes) {
  const ns = new Netns(tag);
  let queues;
  let stack;
  let port;
  let loop;
  try {
    stack = Stack.create({
      mac: "02:00:00:00:00:02",
      ip: `${host}/24`,
      pool: poolPath ? { path: poolPath, buffers: 16384 } : { buffers: 16384 },
      rcvBuf: 1 << 20,
      sndBuf: 1 << 20,
      nodelay: true,
      configure: (core) => (queues = reserveNicQueues(core)),
    });
    port = open(stack, queues, ns);
    const app = pmstackApp(stack);
    loop = new NicLoop(stack, port, { onEvent: app.onEvent });
    loop.start();
    stack.listen(BULK_PORT);
    stack.listen(RR_PORT);
    await sleep(50);
    let t0 = null;
    await measure(
      system,
      ns,
      host,
      conns,
      {
        pid: process.pid,
        syscalls: () => {
          const s = loop.stats;
          if (t0 === null) t0 = { ...s };
          else t0 = { turns: s.turns - t0.turns, rx: s.rxFrames - t0.rxFrames, tx: s.txFrames - t0.txFrames };
          return s.syscalls;
        },
        extra: () =>
          `${port.copies.split(/[.;]/)[0]}; rr run: ${t0.turns} loop turns, ${t0.rx} frames in, ${t0.tx} out; ` +
          `${app.st.refused} sends refused; TCP_BAD_CSUM ${stack.stats().TCP_BAD_CSUM ?? 0}`,
      },
      useStrace,
      rows,
      notes,
    );
  } finally {
    loop?.stop();
    port?.close();
    ns.cleanup();
    stack?.shutdown();
    if (poolPath) rmSync(poolPath, { force: true });
  }
}

async function kernelSystem(conns, useStrace, rows, notes) {
  const a = new Netns("nicka");
  const b = new Netns("nickb");
  try {
    const one = ["numtxqueues", "1", "numrxqueues", "1"];
    a.ip(["link", "add", "pmvk1", ...one, "type", "veth", "peer", "name", "pmvp1", ...one, "netns", b.name]);
    a.ip(["addr", "add", "198.18.2.1/24", "dev", "pmvk1"]);
    b.ip(["addr", "add", "198.18.2.2/24", "dev", "pmvp1"]);
    a.ip(["link", "set", "pmvk1", "up"]);
    b.ip(["link", "set", "pmvp1", "up"]);
    const srv = b.node(peer, ["server", "198.18.2.2"]);
    await waitFor(srv, /LISTENING/);
    await measure("kernel-veth", a, "198.18.2.2", conns, { pid: srv.pid }, useStrace, rows, notes);
  } finally {
    a.cleanup();
    b.cleanup();
  }
}

export async function run(args) {
  const why = netnsUnavailable();
  if (why) throw new Error(`bench/nic needs network namespaces: ${why}`);
  const ci = args.indexOf("--conns");
  const conns = ci >= 0 ? +args[ci + 1] : 1;
  const useStrace = !args.includes("--no-strace") && spawnSync("strace", ["-V"]).status === 0;
  const oi = args.indexOf("--only");
  const only = oi >= 0 ? args[oi + 1].split(",") : null;
  const want = (s) => !only || only.includes(s);
  const rows = [];
  const notes = [];
  if (want("pmstack-tap"))
    await pmstackSystem(
      "pmstack-tap",
      "nictap",
      "198.18.0.2",
      {
        open: (stack, q, ns) => {
          const tap = TapPort.open(stack.pool, q, { name: "pmtap0", netns: ns.path });
          ns.ip(["link", "set", "pmtap0", "up"]);
          ns.ip(["addr", "add", "198.18.0.1/24", "dev", "pmtap0"]);
          return tap;
        },
      },
      conns,
      useStrace,
      rows,
      notes,
    );
  if (want("pmstack-xdp"))
    await pmstackSystem(
      "pmstack-xdp",
      "nicxdp",
      "198.18.1.2",
      {
        poolPath: `/dev/shm/pmstack-bench-nic-${process.pid}.pm`,
        open: (stack, q, ns) => {
          const one = ["numtxqueues", "1", "numrxqueues", "1"];
          ns.ip(["link", "add", "pmvk0", ...one, "type", "veth", "peer", "name", "pmvp0", ...one]);
          ns.ip(["link", "set", "pmvp0", "address", "02:00:00:00:00:02"]);
          ns.ip(["addr", "add", "198.18.1.1/24", "dev", "pmvk0"]);
          ns.ip(["link", "set", "pmvk0", "up"]);
          ns.ip(["link", "set", "pmvp0", "up"]);
          // AF_XDP gives the receiver no checksum metadata: the kernel side must send complete
          // checksums (tx off also turns TSO off, which an XDP-attached veth peer drops anyway)
          const r = ns.run("ethtool", ["-K", "pmvk0", "tx", "off"]);
          if (r.status !== 0)
            throw new Error(`ethtool -K pmvk0 tx off: ${r.stderr || r.error} (install ethtool: .ci/deps)`);
          return XdpPort.open(stack.pool, q, { ifname: "pmvp0", netns: ns.path });
        },
      },
      conns,
      useStrace,
      rows,
      notes,
    );
  if (want("kernel-veth")) await kernelSystem(conns, useStrace, rows, notes);
  const perf = rows.filter((r) => r.metric !== "syscalls_per_req");
  const sys = rows.filter((r) => r.metric === "syscalls_per_req");
  const rat = [];
  for (const s of ["pmstack-tap", "pmstack-xdp"])
    rat.push(...ratios(perf, s, "kernel-veth"), ...ratios(sys, s, "kernel-veth", true));
  notes.unshift(
    `syscalls_per_req: pmstack rows count the NIC's syscalls (readv/writev on the TAP fd, recvfrom/sendto on the XSK) ` +
      `per transaction from the addon's counter over the rr run; kernel-veth counts every syscall of the Node server ` +
      `process (strace -c -f -p, separate 1 s pass). The whole-process strace figures of all three servers ` +
      `(epoll_wait and timers included) are in the per-system notes: compare those for like with like.`,
  );
  return { rows, ratios: rat, notes };
}

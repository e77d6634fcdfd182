// TAP backend against the Linux kernel, inside a network namespace the test makes (198.18.0.0/24:
// kernel 198.18.0.1, pmstack's frame-level JS responder 198.18.0.2). Needs root; skips loudly
// otherwise. Build first: node native-host/build.mjs && npm run build:host
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import { Pool, TapPort, TAP_OFFLOADS, reserveNicQueues, nic } from "../build/index.js";
import { Netns, leftovers, netnsUnavailable } from "./lib/netns.mjs";
import {
  Responder,
  completeCsum,
  csum,
  frameBytes,
  ipBytes,
  l4CsumOk,
  macBytes,
  parse,
  patternByte,
  serve,
  sum16,
} from "./lib/frames.mjs";
import { scratchDir } from "./lib/tmp.mjs";

const why = netnsUnavailable();
if (why) console.warn(`\n*** nic-tap tests SKIPPED: ${why} ***\n`);
const it = why ? test.skip : test;
const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
const KERNEL = "198.18.0.1";
const US = "198.18.0.2";
const MAC = "02:00:00:00:00:02";

/** A pool (tmpfs file or volatile), a namespace and a TAP made in it, kernel side addressed. */
function setup(tag, { file = false, batch = true } = {}) {
  let q;
  const configure = (c) => (q = reserveNicQueues(c));
  const pool = file
    ? Pool.create(`${scratchDir("tmpfs")}/tap.pm`, { buffers: 2048, configure })
    : Pool.volatile({ buffers: 2048, configure });
  const ns = new Netns(tag);
  let tap;
  try {
    tap = TapPort.open(pool, q, { name: "pmtap0", netns: ns.path, batch });
    ns.ip(["addr", "add", `${KERNEL}/24`, "dev", "pmtap0"]);
    ns.ip(["link", "set", "pmtap0", "up"]);
  } catch (e) {
    tap?.close();
    ns.cleanup();
    pool.close();
    throw e;
  }
  const responder = new Responder({ ip: US, mac: MAC });
  return { pool, ns, tap, responder };
}

function teardown({ pool, ns, tap }) {
  tap.close();
  ns.cleanup();
  const c = pool.check();
  pool.close();
  return c;
}

/** Sends UDP from the kernel side: `count` datagrams of `size` bytes, optionally with UDP_SEGMENT. */
function udpSend(ns, { size, seed = 1, gso = 0, port = 9000 }) {
  const script = [
    "import socket",
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
    gso ? `s.setsockopt(17, 103, ${gso})` : "",
    `data = bytes(((i * 31 + ${seed} * 7 + (i >> 8)) & 255) for i in range(${size}))`,
    `s.sendto(data, ('${US}', ${port}))`,
  ].join("\n");
  const r = ns.run(python, ["-c", script]);
  if (r.status !== 0) throw new Error(`python sender failed: ${r.stderr}`);
}

/** What a spawned helper has printed so far. */
function rxOut(p) {
  return p.out ?? "";
}

async function until(cond, ms = 3000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

it("TAP: says which copies its path has; vnet header and offloads on", () => {
  const s = setup("tapinfo");
  try {
    assert.is(s.tap.info.kind, "tap");
    assert.is(s.tap.info.vnetHdrSize, 10);
    assert.ok(s.tap.info.offload);
    assert.is(s.tap.caps, TAP_OFFLOADS, "it reports segmentation and checksum offloads");
    assert.match(s.tap.copies, /kernel copies each received frame into its PM buffers/);
    assert.match(s.tap.copies, /no copy after that/);
    const link = s.ns.ip(["-d", "link", "show", "pmtap0"]);
    assert.match(link, /tun type tap/);
  } finally {
    teardown(s);
  }
});

// The frame paths, batched through io_uring (the default) and one system call per frame.
for (const batch of [true, false]) {
  const M = batch ? "" : " (one syscall per frame)";
  const T = batch ? "" : "1";
  it(`TAP${M}: frames from the kernel land in PM buffers named by ring slots (NEEDS_CSUM metadata; busy poll)`, async () => {
    const s = setup(`taprx${T}`, { file: true, batch });
    const got = [];
    const stop = serve(s.tap, s.responder, {
      busy: true,
      onFrame: (f) => {
        const p = parse(frameBytes(s.pool, f));
        if (p.ip?.proto === 17) {
          got.push(f);
          return true; // keep the buffers to inspect them
        }
        return false;
      },
    });
    try {
      for (let k = 0; k < 5; k++) udpSend(s.ns, { size: 100 + k * 200, seed: k });
      assert.ok(await until(() => got.length === 5), `5 UDP frames, got ${got.length}`);
      for (let k = 0; k < 5; k++) {
        const f = got[k];
        assert.is(f.bufs.length, 1);
        for (const b of f.bufs) assert.is(s.pool.owner(b.index), "nic", "the ring slot names a held buffer");
        const bytes = frameBytes(s.pool, f);
        const p = parse(bytes);
        assert.is(p.dst, MAC);
        assert.is(p.ip.src, KERNEL);
        assert.is(p.ip.dst, US);
        assert.ok(p.ip.csumOk, "IPv4 header checksum");
        assert.is(f.length, 14 + 20 + 8 + 100 + k * 200);
        for (let i = 0; i < 100 + k * 200; i++)
          if (bytes[42 + i] !== patternByte(k, i)) assert.unreachable(`payload byte ${i} of datagram ${k}`);
        // The kernel leaves the UDP checksum to us (NEEDS_CSUM), with where to put it.
        assert.ok(f.flags & nic.SF_NEEDS_CSUM, "NEEDS_CSUM");
        assert.is(f.csumStart, 34);
        assert.is(f.csumOffset, 6);
        assert.ok(l4CsumOk(completeCsum(bytes, f.csumStart, f.csumOffset)), "completed UDP checksum verifies");
      }
      s.tap.release(got);
      const st = s.tap.stats();
      assert.ok(st.rxFrames >= 6 && st.syscalls > 0, "syscalls are counted");
    } finally {
      stop();
      const c = teardown(s);
      assert.is(c.free, c.total, "no buffer leaked");
    }
  });

  it(`TAP${M}: ping -c 20 from the kernel gets 20 replies from the JS responder (libuv poll)`, async () => {
    const s = setup(`tapping${T}`, { batch });
    const stop = serve(s.tap, s.responder);
    try {
      const r = await s.ns.spawn("ping", ["-c", "20", "-i", "0.02", "-W", "2", US]).done;
      assert.match(r.stdout, /20 packets transmitted, 20 received/, r.stdout + r.stderr);
      assert.is(s.responder.stats.echo, 20);
      assert.ok(s.responder.stats.arp >= 1);
      const st = s.tap.stats();
      assert.ok(st.polls >= 20, `woken by the event loop (${st.polls} polls)`);
      assert.ok(st.txFrames >= 21);
    } finally {
      stop();
      const c = teardown(s);
      assert.is(c.free, c.total, "no buffer leaked");
    }
  });

  it(`TAP${M}: a GSO superframe (UDP_SEGMENT, 14000 bytes) arrives as one chain with its virtio-net metadata`, async () => {
    const s = setup(`tapgso${T}`, { batch });
    const got = [];
    const stop = serve(s.tap, s.responder, {
      onFrame: (f) => {
        const p = parse(frameBytes(s.pool, f));
        if (p.ip?.proto === 17 || p.ip?.proto === 6) {
          got.push(f);
          return true;
        }
        return false;
      },
    });
    try {
      const size = 14000;
      udpSend(s.ns, { size, seed: 9, gso: 1400 });
      assert.ok(await until(() => got.length >= 1), "the superframe arrived");
      const f = got.shift();
      assert.is(f.length, 14 + 20 + 8 + size);
      assert.is(f.bufs.length, Math.ceil(f.length / 2048), "a chain of 2 KiB buffers (SF_MORE)");
      for (const b of f.bufs.slice(0, -1)) assert.is(b.length, 2048);
      assert.is(f.gsoType, nic.GSO_UDP_L4);
      assert.is(f.gsoSize, 1400);
      assert.ok(f.flags & nic.SF_NEEDS_CSUM);
      assert.is(f.csumStart, 34);
      assert.is(f.csumOffset, 6);
      const bytes = frameBytes(s.pool, f);
      for (let i = 0; i < size; i++) if (bytes[42 + i] !== patternByte(9, i)) assert.unreachable(`payload byte ${i}`);
      s.tap.release([f]);

      // A TCP SYN from the kernel: NEEDS_CSUM with the TCP checksum's offset.
      const r = s.ns.run(python, [
        "-c",
        `import socket\ns=socket.socket()\ns.settimeout(0.3)\ntry: s.connect(('${US}', 7))\nexcept Exception: pass`,
      ]);
      assert.is(r.status, 0, r.stderr);
      assert.ok(await until(() => got.some((g) => parse(frameBytes(s.pool, g)).ip.proto === 6)), "a SYN arrived");
      const syn = got.find((g) => parse(frameBytes(s.pool, g)).ip.proto === 6);
      const sb = frameBytes(s.pool, syn);
      assert.is(sb[47] & 0x12, 0x02, "SYN flag");
      assert.ok(syn.flags & nic.SF_NEEDS_CSUM);
      assert.is(syn.csumOffset, 16);
      assert.ok(l4CsumOk(completeCsum(sb, syn.csumStart, syn.csumOffset)));
      s.tap.release(got);
    } finally {
      stop();
      const c = teardown(s);
      assert.is(c.free, c.total, "no buffer leaked");
    }
  });

  it(`TAP${M}: a TCP TSO superframe (after a JS SYN-ACK) arrives as a chain with gso TCPv4, MSS and NEEDS_CSUM`, async () => {
    const s = setup(`taptso${T}`, { batch });
    const responder = new Responder({ ip: US, mac: MAC, synAck: true });
    const tcp = [];
    const stop = serve(s.tap, responder, {
      onFrame: (f) => {
        if (parse(frameBytes(s.pool, f)).ip?.proto !== 6) return false;
        tcp.push(f);
        return true;
      },
    });
    try {
      const script = `import socket, time\ns = socket.create_connection(('${US}', 80), timeout=2)\ns.sendall(b'x' * 60000)\ntime.sleep(0.1)`;
      const r = await s.ns.spawn(python, ["-c", script]).done;
      assert.is(r.status, 0, r.stderr);
      assert.ok(await until(() => tcp.some((f) => f.gsoType === nic.GSO_TCPV4)), "a TSO superframe arrived");
      assert.is(responder.stats.synack, 1);
      const f = tcp.find((g) => g.gsoType === nic.GSO_TCPV4);
      assert.ok(f.length > 1514, `longer than one segment (${f.length})`);
      assert.is(f.bufs.length, Math.ceil(f.length / 2048));
      assert.is(f.gsoSize, 1460, "the MSS the SYN-ACK announced");
      assert.is(f.hdrLen, 54);
      assert.ok(f.flags & nic.SF_NEEDS_CSUM);
      assert.is(f.csumStart, 34);
      assert.is(f.csumOffset, 16);
      const bytes = frameBytes(s.pool, f);
      for (let i = f.hdrLen; i < f.length; i++) if (bytes[i] !== 0x78) assert.unreachable(`payload byte ${i}`);
      s.tap.release(tcp);
    } finally {
      stop();
      const c = teardown(s);
      assert.is(c.free, c.total, "no buffer leaked");
    }
  });

  it(`TAP${M}: sends a UDP GSO superframe (NEEDS_CSUM, gso 1000) that the kernel splits into 3 datagrams`, async () => {
    const s = setup(`taptxgso${T}`, { batch });
    const stop = serve(s.tap, s.responder);
    const rx = s.ns.spawn(python, [
      "-c",
      [
        "import socket, sys",
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        `s.bind(('${KERNEL}', 9100))`,
        "s.settimeout(3)",
        "print('ready', flush=True)",
        "for k in range(3):",
        "    d = s.recv(65535)",
        "    print(len(d), d[0], d[-1], flush=True)",
      ].join("\n"),
    ]);
    try {
      const ready = await until(() => rx.exitCode !== null || /ready/.test(rxOut(rx)));
      assert.ok(ready && rx.exitCode === null, "the kernel-side receiver is listening");
      const kernelMac = /link\/ether ([0-9a-f:]{17})/.exec(s.ns.ip(["link", "show", "pmtap0"]))[1];
      const seg = 1000;
      const payload = 3 * seg;
      const total = 42 + payload;
      const frame = new Uint8Array(total);
      frame.set(macBytes(kernelMac), 0);
      frame.set(macBytes(MAC), 6);
      frame.set([8, 0, 0x45, 0, (20 + 8 + payload) >> 8, (20 + 8 + payload) & 255, 0, 1, 0x40, 0, 64, 17, 0, 0], 12);
      frame.set(ipBytes(US), 26);
      frame.set(ipBytes(KERNEL), 30);
      const h = csum(frame, 14, 34);
      frame[24] = h >> 8;
      frame[25] = h & 255;
      frame.set([0x23, 0x28, 0x23, 0x8c, (8 + payload) >> 8, (8 + payload) & 255, 0, 0], 34); // 9000 -> 9100
      for (let i = 0; i < payload; i++) frame[42 + i] = Math.floor(i / seg) + 1;
      // NEEDS_CSUM: the checksum field holds the folded pseudo-header sum, not inverted.
      const pseudo = new Uint8Array([...frame.subarray(26, 34), 0, 17, (8 + payload) >> 8, (8 + payload) & 255]);
      const ps = sum16(pseudo, 0, 12);
      frame[40] = ps >> 8;
      frame[41] = ps & 255;
      const bufs = [];
      for (let at = 0; at < total; at += 2048) {
        const i = s.pool.alloc("nic");
        const len = Math.min(2048, total - at);
        s.pool.view(i, 0, len).set(frame.subarray(at, at + len));
        bufs.push({ index: i, length: len });
      }
      const sent = s.tap.send([
        {
          bufs,
          flags: nic.SF_NEEDS_CSUM | (nic.GSO_UDP_L4 << nic.SF_GSO_SHIFT),
          csumStart: 34,
          csumOffset: 6,
          gsoSize: seg,
          hdrLen: 42,
        },
      ]);
      assert.is(sent, 1);
      const r = await rx.done;
      assert.is(r.status, 0, r.stderr);
      assert.equal(r.stdout.trim().split("\n").slice(1), ["1000 1 1", "1000 2 2", "1000 3 3"]);
    } finally {
      stop();
      const c = teardown(s);
      assert.is(c.free, c.total, "no buffer leaked");
    }
  });
}

it("TAP: says how it batches: io_uring by default, one syscall per frame when asked", () => {
  const a = setup("tapbatch");
  const b = setup("tapnobatch", { batch: false });
  try {
    // Where the kernel refuses io_uring, the port falls back and says why.
    assert.match(
      a.tap.info.batch,
      /^(io_uring: up to 32 readv or writev per system call|none: .*io_uring unavailable: E[A-Z]+\))$/,
    );
    assert.is(b.tap.info.batch, "none: one readv or writev per frame (asked for)");
  } finally {
    teardown(a);
    teardown(b);
  }
});

for (const batch of [true, false]) {
  it(`TAP ${batch ? "batched" : "one syscall per frame"}: 256 queued datagrams come in and 200 go out in order, ${batch ? "up to 32" : "one"} per system call`, async () => {
    const s = setup(batch ? "tapmany" : "tapmany1", { batch });
    if (batch && !/^io_uring/.test(s.tap.info.batch)) {
      teardown(s);
      assert.unreachable(`io_uring is unavailable here (${s.tap.info.batch}): the batched path cannot be tested`);
    }
    const N = 256;
    const M = 200;
    const rx = s.ns.spawn(python, [
      "-c",
      [
        "import socket",
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)",
        `s.bind(('${KERNEL}', 9101))`,
        "s.settimeout(3)",
        "print('ready', flush=True)",
        `seen = [int.from_bytes(s.recv(2048)[:4], 'big') for k in range(${M})]`,
        "print('seqs', ','.join(map(str, seen)), flush=True)",
      ].join("\n"),
    ]);
    try {
      // The kernel queues N datagrams on the TAP while nobody reads it (a static neighbor
      // entry: no ARP exchange, nothing held back by the kernel; the TAP queue holds 1000).
      s.ns.ip(["neigh", "replace", US, "lladdr", MAC, "dev", "pmtap0", "nud", "permanent"]);
      const send = s.ns.run(python, [
        "-c",
        [
          "import socket",
          "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
          `for k in range(${N}): s.sendto(k.to_bytes(4, 'big') + bytes(60), ('${US}', 9000))`,
        ].join("\n"),
      ]);
      assert.is(send.status, 0, send.stderr);
      // (sendto returned once its frame was on the TAP's queue: all N are there now)
      const before = s.tap.stats();
      const seqs = [];
      for (let round = 0; round < 100 && seqs.length < N; round++) {
        s.tap.receive();
        const frames = s.tap.drain();
        for (const f of frames) {
          const p = parse(frameBytes(s.pool, f));
          if (p.ip?.proto === 17 && f.length === 14 + 20 + 8 + 64) {
            const v = s.pool.view(f.bufs[0].index, 42, 4);
            seqs.push((v[0] << 24) | (v[1] << 16) | (v[2] << 8) | v[3]);
          }
        }
        s.tap.release(frames);
      }
      const after = s.tap.stats();
      assert.equal(
        seqs,
        Array.from({ length: N }, (_, k) => k),
        "every datagram, in the order sent",
      );
      const rxCalls = after.syscalls - before.syscalls;
      if (batch) assert.ok(rxCalls <= N / 4, `${N} frames in ${rxCalls} system calls (batched)`);
      else assert.ok(rxCalls > N, `${N} frames in ${rxCalls} system calls (one each, and one that found none)`);

      const ready = await until(() => rx.exitCode !== null || /ready/.test(rxOut(rx)));
      assert.ok(ready && rx.exitCode === null, "the kernel-side receiver is listening");
      const kernelMac = /link\/ether ([0-9a-f:]{17})/.exec(s.ns.ip(["link", "show", "pmtap0"]))[1];
      const frames = [];
      for (let k = 0; k < M; k++) {
        const f = new Uint8Array(42 + 64);
        f.set(macBytes(kernelMac), 0);
        f.set(macBytes(MAC), 6);
        f.set([8, 0, 0x45, 0, 0, 20 + 8 + 64, 0, 1, 0x40, 0, 64, 17, 0, 0], 12);
        f.set(ipBytes(US), 26);
        f.set(ipBytes(KERNEL), 30);
        const h = csum(f, 14, 34);
        f[24] = h >> 8;
        f[25] = h & 255;
        f.set([0x23, 0x28, 0x23, 0x8d, 0, 8 + 64, 0, 0], 34); // 9000 -> 9101, no UDP checksum
        f.set([k >>> 24, (k >>> 16) & 255, (k >>> 8) & 255, k & 255], 42);
        const i = s.pool.alloc("nic");
        s.pool.view(i, 0, f.length).set(f);
        frames.push({ bufs: [{ index: i, length: f.length }] });
      }
      const t0 = s.tap.stats().syscalls;
      assert.is(s.tap.send(frames), M, "every frame written in the one call");
      const txCalls = s.tap.stats().syscalls - t0;
      if (batch) assert.ok(txCalls <= Math.ceil(M / 32), `${M} frames in ${txCalls} system calls (batched)`);
      else assert.is(txCalls, M, "one writev per frame");
      const r = await rx.done;
      assert.is(r.status, 0, r.stderr);
      const got = /seqs (.*)/.exec(r.stdout)[1].split(",").map(Number);
      assert.equal(
        got,
        Array.from({ length: M }, (_, k) => k),
        "the kernel got them in order",
      );
    } finally {
      const c = teardown(s);
      assert.is(c.free, c.total, "no buffer leaked");
    }
  });
}

it("TAP: a worker thread terminated with its queue open and polled: no crash, and the device goes with it", async () => {
  const { Worker } = await import("node:worker_threads");
  const ns = new Netns("tapterm");
  try {
    const index = new URL("../build/index.js", import.meta.url).href;
    const w = new Worker(
      `const { workerData, parentPort } = require("node:worker_threads");
import(workerData.index).then(({ Pool, TapPort, reserveNicQueues }) => {
  let q;
  const pool = Pool.volatile({ buffers: 1024, configure: (c) => (q = reserveNicQueues(c)) });
  const t = TapPort.open(pool, q, { name: "pmtapterm", netns: workerData.ns });
  t.poll(() => {});
  parentPort.postMessage("up");
});`,
      { eval: true, workerData: { index, ns: ns.path } },
    );
    await new Promise((r, j) => (w.once("message", r), w.once("error", j)));
    assert.ok(ns.ip(["link", "show"]).includes("pmtapterm"));
    // the addon's cleanup hook closes the poll handle and the queue (libuv aborts on a loop
    // closed with a handle open); the library stays loaded for the handle's close callback
    assert.is(await w.terminate(), 1);
    assert.not.ok(ns.ip(["link", "show"]).includes("pmtapterm"), "the queue's fd closed: the device is gone");
  } finally {
    ns.cleanup();
  }
});

it("TAP: multi-queue: a second queue of the same device", () => {
  let q1, q2;
  const pool = Pool.volatile({
    buffers: 1024,
    configure: (c) => {
      q1 = reserveNicQueues(c);
      q2 = reserveNicQueues(c);
    },
  });
  const ns = new Netns("tapmq");
  try {
    const a = TapPort.open(pool, q1, { name: "pmtapmq", netns: ns.path, multiQueue: true });
    const b = TapPort.open(pool, q2, { name: "pmtapmq", netns: ns.path, multiQueue: true });
    assert.is(a.info.ifname, "pmtapmq");
    assert.is(b.info.ifname, "pmtapmq");
    assert.match(ns.ip(["-d", "link", "show", "pmtapmq"]), /multi_queue/);
    a.close();
    b.close();
  } finally {
    ns.cleanup();
    assert.is(pool.check().free, 1024);
    pool.close();
  }
});

it("TAP under Deno: the same addon, woken through Deno's event loop, answers ping -c 5", () => {
  const deno = new URL("../node_modules/.bin/deno", import.meta.url).pathname;
  if (!fs.existsSync(deno)) assert.unreachable("deno is installed by npm install (devDependency)");
  const ns = new Netns("tapdeno");
  try {
    const at = (rel) => JSON.stringify(new URL(rel, import.meta.url).href);
    const script = `${scratchDir("tmpfs")}/deno-tap.mjs`;
    fs.writeFileSync(
      script,
      `import { Pool, TapPort, reserveNicQueues } from ${at("../build/index.js")};
import { Responder, serve } from ${at("./lib/frames.mjs")};
import { spawnSync } from "node:child_process";
const [ns, path] = Deno.args;
let q;
const pool = Pool.volatile({ buffers: 1024, configure: (c) => (q = reserveNicQueues(c)) });
const tap = TapPort.open(pool, q, { name: "pmtap0", netns: path });
spawnSync("ip", ["-n", ns, "addr", "add", "${KERNEL}/24", "dev", "pmtap0"]);
spawnSync("ip", ["-n", ns, "link", "set", "pmtap0", "up"]);
const stop = serve(tap, new Responder({ ip: "${US}", mac: "${MAC}" }));
const ping = new Deno.Command("ip", { args: ["netns", "exec", ns, "ping", "-c", "5", "-i", "0.05", "-W", "2", "${US}"] });
const out = new TextDecoder().decode((await ping.output()).stdout);
stop();
const polls = tap.stats().polls;
tap.close();
console.log("RESULT " + JSON.stringify({ out, polls, counts: pool.check() }));
`,
    );
    const r = spawnSync(deno, ["run", "-A", "--no-prompt", script, ns.name, ns.path], {
      encoding: "utf8",
      env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
      timeout: 60_000,
    });
    assert.is(r.status, 0, `deno exited ${r.status}: ${r.stderr}`);
    const res = JSON.parse(r.stdout.split("RESULT ")[1]);
    assert.match(res.out, /5 packets transmitted, 5 received/);
    assert.ok(res.polls >= 5, `woken ${res.polls} times`);
    assert.is(res.counts.free, res.counts.total);
  } finally {
    ns.cleanup();
  }
});

it("NIC addon: refuses bad arguments and bad ring entries instead of following them", () => {
  const n = nic.nicNative();
  const throwsCode = (fn, code) => {
    let err;
    try {
      fn();
    } catch (e) {
      err = e;
    }
    assert.ok(err, `expected ${code}`);
    assert.is(err.code, code, err.message);
  };
  const fake = { buffer: new ArrayBuffer(65536) };
  throwsCode(() => n.tapOpen(fake, new Uint8Array(fake.buffer), 0, 1, "x", 1, null), "ERR_INVALID_ARG_TYPE");
  const mem = new WebAssembly.Memory({ initial: 2 });
  throwsCode(() => n.tapOpen(mem, new Uint8Array(65536), 0, 1, "x", 1, null), "EINVAL"); // not its buffer
  throwsCode(() => n.tapOpen(mem, new Uint8Array(mem.buffer), 4096, 64, "x", 1, null), "EINVAL"); // region too big
  throwsCode(() => n.tapOpen(mem, new Uint8Array(mem.buffer), 100, 1, "x", 1, null), "EINVAL"); // not page-aligned
  throwsCode(() => n.rx({}, 0, 0, 0), "ERR_INVALID_ARG_TYPE");

  const s = setup("tapbad");
  try {
    const h = s.tap.handle;
    const q = s.tap.queues;
    throwsCode(() => n.rx(h, 1 << 30, 0, q.fill), "EINVAL"); // ring outside the memory
    throwsCode(() => n.rx(h, q.rxRing, 0, 1 << 30), "EINVAL"); // fill table outside
    // A fill table naming a buffer past the pool: refused, nothing read.
    const u32 = new Uint32Array(s.pool.core.memory.buffer);
    u32[q.fill >>> 2] = 40;
    u32.fill(s.pool.bufferCount + 5, (q.fill >>> 2) + 2, (q.fill >>> 2) + 42);
    throwsCode(() => n.rx(h, q.rxRing, 0, q.fill), "EINVAL");
    u32[q.fill >>> 2] = 0;
    // A TX slot naming a buffer past the pool, or bytes past its end: dropped and counted.
    const t = q.txRing >>> 2;
    const slot = (q.txRing + 16 + (u32[t + 2] & u32[t]) * 16) >>> 2;
    u32[slot] = s.pool.bufferCount + 1;
    u32[slot + 1] = 60 << 16;
    u32[slot + 2] = 0;
    u32[slot + 3] = 0;
    u32[t + 2]++;
    assert.is(n.tx(h, q.txRing, 0, q.done), 0);
    assert.is(s.tap.stats().txDropped, 1);
    assert.is(u32[t + 1], u32[t + 2], "the bad slot was consumed");
    assert.is(u32[q.done >>> 2], 0, "nothing to free for an index outside the pool");
  } finally {
    teardown(s);
  }
  throwsCode(() => s.tap.receive(), "ECLOSED");
  throwsCode(() => n.rx(s.tap.handle, 0, 0, 0), "EBADF");
});

it("TAP: clean-up leaves no namespace, device or buffer behind", () => {
  const s = setup("tapclean");
  s.tap.receive(); // posts buffers
  assert.ok(s.tap.fillCount > 0);
  assert.is(s.pool.counts().nic, s.tap.fillCount);
  s.tap.close();
  assert.is(s.pool.counts().nic, 0, "close() returns the fill table's buffers");
  s.tap.close(); // idempotent
  s.ns.cleanup();
  const c = s.pool.check();
  assert.is(c.free, c.total);
  s.pool.close();
  const left = leftovers();
  assert.equal(left, { netns: [], links: [] });
});

test.run();

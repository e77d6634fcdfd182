// AF_XDP backend against the Linux kernel: a veth pair with one rx/tx queue inside a network
// namespace the test makes; the kernel end pmvk0 has 198.18.1.1/24, pmstack's socket sits on
// pmvp0 and its frame-level JS responder answers for 198.18.1.2. The UMEM is the pool's buffer
// region. Needs root; skips loudly otherwise.
import { test } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Pool, XdpPort, NO_OFFLOADS, reserveNicQueues } from "../build/index.js";
import { Netns, leftovers, netnsUnavailable } from "./lib/netns.mjs";
import { Responder, frameBytes, parse, patternByte, serve, splitInTwo } from "./lib/frames.mjs";
import { scratchDir } from "./lib/tmp.mjs";

const why = netnsUnavailable();
if (why) console.warn(`\n*** nic-xdp tests SKIPPED: ${why} ***\n`);
const it = why ? test.skip : test;
const python = fs.existsSync("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
const KERNEL = "198.18.1.1";
const US = "198.18.1.2";
const MAC = "02:00:00:00:01:02";

function makeVeth(ns) {
  const one = ["numtxqueues", "1", "numrxqueues", "1"];
  ns.ip(["link", "add", "pmvk0", ...one, "type", "veth", "peer", "name", "pmvp0", ...one]);
  ns.ip(["link", "set", "pmvp0", "address", MAC]);
  ns.ip(["addr", "add", `${KERNEL}/24`, "dev", "pmvk0"]);
  ns.ip(["link", "set", "pmvk0", "up"]);
  ns.ip(["link", "set", "pmvp0", "up"]);
}

function setup(tag, { file = true, skbMode = false, fill } = {}) {
  let q;
  const configure = (c) => (q = reserveNicQueues(c));
  const pool = file
    ? Pool.create(`${scratchDir("tmpfs")}/xdp.pm`, { buffers: 4096, configure })
    : Pool.volatile({ buffers: 4096, configure });
  const ns = new Netns(tag);
  let port;
  try {
    makeVeth(ns);
    port = XdpPort.open(pool, q, { ifname: "pmvp0", netns: ns.path, skbMode, fill });
  } catch (e) {
    port?.close();
    ns.cleanup();
    pool.close();
    throw e;
  }
  return { pool, ns, port, q, responder: new Responder({ ip: US, mac: MAC }) };
}

function teardown({ pool, ns, port }) {
  port.close();
  const after = ns.ip(["link", "show", "pmvp0"]);
  ns.cleanup();
  const c = pool.check();
  pool.close();
  return { counts: c, link: after };
}

async function until(cond, ms = 3000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 5));
  }
  return true;
}

it("AF_XDP: the UMEM is the pool (tmpfs), native mode on veth, copy mode named", () => {
  const s = setup("xdpinfo");
  try {
    assert.is(s.port.info.kind, "xdp");
    assert.is(s.port.caps, NO_OFFLOADS, "it reports no offloads");
    assert.is(s.port.info.mode, "drv");
    assert.is(s.port.info.bind, "copy", "veth has no zero copy");
    assert.match(s.port.copies, /copy mode: the kernel copies each frame into its PM buffer/);
    assert.match(s.port.copies, /linearized/);
    assert.match(s.ns.ip(["link", "show", "pmvp0"]), /prog\/xdp .*pmstack_xsk/);
  } finally {
    const t = teardown(s);
    assert.not.match(t.link, /xdp/, "the program is detached at close");
    assert.is(t.counts.free, t.counts.total);
  }
});

it("AF_XDP: frames from the kernel land in PM buffers named by ring slots (UMEM address = index * 2048)", async () => {
  const s = setup("xdprx");
  const got = [];
  const stop = serve(s.port, s.responder, {
    onFrame: (f) => {
      if (parse(frameBytes(s.pool, f)).ip?.proto === 17) {
        got.push(f);
        return true;
      }
      return false;
    },
  });
  try {
    const script = [
      "import socket",
      "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
      "for k in range(5):",
      "    n = 100 + k * 300",
      "    s.sendto(bytes(((i * 31 + k * 7 + (i >> 8)) & 255) for i in range(n)), ('198.18.1.2', 9000))",
    ].join("\n");
    const r = s.ns.run(python, ["-c", script]);
    assert.is(r.status, 0, r.stderr);
    assert.ok(await until(() => got.length === 5), `5 UDP frames, got ${got.length}`);
    for (let k = 0; k < 5; k++) {
      const f = got[k];
      assert.is(f.bufs.length, 1);
      const b = f.bufs[0];
      assert.is(s.pool.owner(b.index), "nic");
      assert.is(b.offset, 256, "copy mode puts the frame after XDP_PACKET_HEADROOM");
      const bytes = frameBytes(s.pool, f);
      const p = parse(bytes);
      assert.is(p.ip.dst, US);
      assert.ok(p.ip.csumOk);
      assert.is(f.length, 42 + 100 + k * 300);
      for (let i = 0; i < 100 + k * 300; i++)
        if (bytes[42 + i] !== patternByte(k, i)) assert.unreachable(`payload byte ${i} of datagram ${k}`);
    }
    // A second process sees the frame in the pool file (the UMEM is the file's pages).
    const b = got[4].bufs[0];
    const fileOff = s.pool.superblock.bufOffset + b.index * 2048 + b.offset + 42;
    const peek = s.ns.run(python, ["-c", `f=open('${s.pool.path}','rb'); f.seek(${fileOff}); print(list(f.read(8)))`]);
    assert.is(
      peek.stdout.trim(),
      JSON.stringify(Array.from({ length: 8 }, (_, i) => patternByte(4, i))).replaceAll(",", ", "),
    );
    s.port.release(got);
  } finally {
    stop();
    const t = teardown(s);
    assert.is(t.counts.free, t.counts.total, "no buffer leaked");
  }
});

it("AF_XDP: ping -c 20 gets 20 replies; half of them sent as 2-buffer chains (linearized: a copy)", async () => {
  const s = setup("xdpping");
  let n = 0;
  const stop = serve(s.port, s.responder, {
    split: (pool, r) => (r.bufs[0].length > 42 && n++ % 2 ? splitInTwo(pool, r) : r),
  });
  try {
    const r = await s.ns.spawn("ping", ["-c", "20", "-i", "0.02", "-W", "2", US]).done;
    assert.match(r.stdout, /20 packets transmitted, 20 received/, r.stdout + r.stderr);
    assert.is(s.responder.stats.echo, 20);
    const st = s.port.stats();
    assert.ok(st.txCopiedBytes > 0, "chains were linearized");
    assert.ok(st.kicks > 0 && st.syscalls >= st.kicks);
    assert.ok(st.polls >= 20);
  } finally {
    stop();
    const t = teardown(s);
    assert.is(t.counts.free, t.counts.total, "no buffer leaked");
  }
});

it("AF_XDP: frames the kernel drops for an empty FILL ring show in stats().xdpKernel", async () => {
  // no buffer posted to receive into: every frame is lost before the RX ring, and the kernel counts it
  const s = setup("xdpfill", { fill: 0 });
  try {
    const before = s.port.stats().xdpKernel;
    assert.ok(before, "an AF_XDP port reports the kernel's counters");
    for (const k of ["rxDropped", "rxInvalidDescs", "txInvalidDescs", "rxRingFull", "rxFillRingEmpty", "txRingEmpty"])
      assert.type(before[k], "number", k);
    const r = await s.ns.spawn("ping", ["-c", "3", "-i", "0.05", "-W", "1", US]).done;
    assert.match(r.stdout, /3 packets transmitted, 0 received/, r.stdout + r.stderr);
    const after = s.port.stats().xdpKernel;
    // what arrived are the kernel's ARP requests (unanswered, so no echo request ever leaves)
    assert.ok(after.rxFillRingEmpty > before.rxFillRingEmpty, JSON.stringify(after));
    assert.is(after.rxDropped - before.rxDropped, after.rxFillRingEmpty - before.rxFillRingEmpty);
    assert.is(s.port.receive(), 0, "nothing reached the RX ring");
  } finally {
    const t = teardown(s);
    assert.is(t.counts.free, t.counts.total, "no buffer leaked");
  }
});

it("AF_XDP: skb (generic) mode and a volatile pool; busy poll", async () => {
  const s = setup("xdpskb", { file: false, skbMode: true });
  const stop = serve(s.port, s.responder, { busy: true });
  try {
    assert.is(s.port.info.mode, "skb");
    const r = await s.ns.spawn("ping", ["-c", "5", "-i", "0.02", "-W", "2", US]).done;
    assert.match(r.stdout, /5 packets transmitted, 5 received/, r.stdout + r.stderr);
  } finally {
    stop();
    const t = teardown(s);
    assert.is(t.counts.free, t.counts.total);
  }
});

it("AF_XDP: re-bind right after close (EBUSY retried); a disk pool in place (msync) refused with a clear reason, in journal mode its UMEM", async () => {
  const s = setup("xdprebind");
  try {
    s.port.close();
    const again = XdpPort.open(s.pool, s.q, { ifname: "pmvp0", netns: s.ns.path });
    s.port = again;
    assert.type(again.info.bindRetries, "number");
    const stop = serve(again, s.responder);
    const r = await s.ns.spawn("ping", ["-c", "3", "-i", "0.02", "-W", "2", US]).done;
    stop();
    assert.match(r.stdout, /3 received/);
    again.close();

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmstack-xdp-"));
    try {
      let q2;
      // MAP_SHARED pages of a file on a block device cannot be pinned for the kernel to write
      const disk = Pool.create(`${dir}/p.pm`, {
        buffers: 256,
        mode: "msync",
        configure: (c) => (q2 = reserveNicQueues(c)),
      });
      try {
        if (disk.medium === "tmpfs") return; // tmpdir on tmpfs here: nothing to refuse
        let err;
        try {
          XdpPort.open(disk, q2, { ifname: "pmvp0", netns: s.ns.path }).close();
        } catch (e) {
          err = e;
        }
        assert.ok(err, `AF_XDP on ${disk.medium} should be refused`);
        assert.is(err.code, "EUMEM");
        assert.match(err.message, new RegExp(`PM pool on ${disk.medium}`));
        assert.match(err.message, /tmpfs|devdax/);
        assert.is(disk.check().free, 256);
      } finally {
        disk.close();
      }
      // in journal mode (the default on a disk) the file is mapped MAP_PRIVATE: its pages are
      // the process's own once written, and the pool itself is the UMEM (no copy)
      let q3;
      const jdisk = Pool.create(`${dir}/j.pm`, { buffers: 256, configure: (c) => (q3 = reserveNicQueues(c)) });
      try {
        if (jdisk.persistMode === "journal") {
          const zc = XdpPort.open(jdisk, q3, { ifname: "pmvp0", netns: s.ns.path });
          assert.is(zc.info.umem, "pool");
          zc.close();
        }
      } finally {
        jdisk.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    const t = teardown(s);
    assert.is(t.counts.free, t.counts.total);
  }
});

it("AF_XDP: a disk pool in place (msync) through the anonymous-UMEM copy path: ping -c 10, copies counted", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmstack-xdp-"));
  const ns = new Netns("xdpanon");
  let pool;
  let port;
  try {
    let q;
    pool = Pool.create(`${dir}/p.pm`, { buffers: 2048, mode: "msync", configure: (c) => (q = reserveNicQueues(c)) });
    makeVeth(ns);
    // On ext4 in place (MAP_SHARED) the pool cannot be the UMEM: "fallback" copies; on a tmpfs
    // tmpdir force the copy path.
    const copyUmem = pool.medium === "tmpfs" ? "always" : "fallback";
    port = XdpPort.open(pool, q, { ifname: "pmvp0", netns: ns.path, copyUmem });
    assert.is(port.info.umem, "anonymous");
    assert.match(port.copies, /anonymous UMEM/);
    assert.match(port.copies, /2 copies/);
    const responder = new Responder({ ip: US, mac: MAC });
    let n = 0;
    const stop = serve(port, responder, { split: (p, r) => (r.bufs[0].length > 42 && n++ % 2 ? splitInTwo(p, r) : r) });
    const r = await ns.spawn("ping", ["-c", "10", "-i", "0.02", "-W", "2", US]).done;
    stop();
    assert.match(r.stdout, /10 packets transmitted, 10 received/, r.stdout + r.stderr);
    const st = port.stats();
    assert.ok(st.rxCopiedBytes >= 10 * 98, `received frames were copied into PM (${st.rxCopiedBytes} bytes)`);
    assert.ok(st.txCopiedBytes >= 10 * 98, `sent frames were copied out of PM (${st.txCopiedBytes} bytes)`);
  } finally {
    port?.close();
    ns.cleanup();
    if (pool) {
      const c = pool.check();
      pool.close();
      assert.is(c.free, c.total, "no buffer leaked");
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

it("AF_XDP: clean-up leaves no namespace, device, program or buffer behind", () => {
  assert.equal(leftovers(), { netns: [], links: [] });
});

test.run();

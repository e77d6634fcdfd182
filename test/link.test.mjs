// Links for tests and tools: the seeded fault-injecting wire, ring ports (the NIC end of a
// core's rings), the in-memory link between two cores, and pcap capture.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { FaultyWire, RingPort, MemoryLink, PcapWriter, Pool } from "../build/index.js";
import { scratchDir } from "./lib/tmp.mjs";

const frame = (n, tag) => {
  const f = new Uint8Array(n);
  for (let i = 0; i < n; i++) f[i] = (i * 7 + tag) & 0xff;
  f[0] = f[2] = tag & 0xff;
  f[1] = f[3] = tag >> 8;
  return f;
};
const tagOf = (f) => f[0] | (f[1] << 8);

function run(wire, n, size = 100, step = 0.01) {
  const out = [];
  let t = 0;
  for (let k = 0; k < n; k++, t += step) {
    wire.send(frame(size, k), t);
    out.push(...wire.receive(t));
  }
  out.push(...wire.receive(Infinity));
  return out;
}

test("a wire without faults delivers every frame, in order, byte-exact", () => {
  const w = new FaultyWire(1);
  const out = run(w, 1000);
  assert.is(out.length, 1000);
  out.forEach((f, k) => assert.equal(f, frame(100, k)));
  assert.is(w.stats.delivered, 1000);
});

test("the same seed gives the same faults; another seed, others", () => {
  const cfg = { drop: 0.05, duplicate: 0.05, reorder: 0.1, reorderMs: 5, corrupt: 0.01, jitterMs: 1 };
  const a = run(new FaultyWire(42, cfg), 2000).map(tagOf);
  const b = run(new FaultyWire(42, cfg), 2000).map(tagOf);
  const c = run(new FaultyWire(43, cfg), 2000).map(tagOf);
  assert.equal(a, b);
  assert.not.equal(a, c);
});

test("fault rates match their configuration", () => {
  const n = 50000;
  const w = new FaultyWire(7, { drop: 0.02, duplicate: 0.01, reorder: 0.05, reorderMs: 2, corrupt: 0.001 });
  const out = run(w, n);
  const within = (x, p, what) =>
    assert.ok(Math.abs(x / n - p) < 4 * Math.sqrt((p * (1 - p)) / n) + 1e-4, `${what}: ${x}`);
  within(w.stats.dropped, 0.02, "drops");
  within(w.stats.duplicated, 0.01 * 0.98, "duplicates");
  within(w.stats.corrupted, 0.001 * 0.99, "corruptions");
  assert.is(out.length, n - w.stats.dropped + w.stats.duplicated);
  // reordering: some frame arrives after a later one
  let inversions = 0;
  for (let k = 1; k < out.length; k++) if (tagOf(out[k]) < tagOf(out[k - 1])) inversions++;
  assert.ok(inversions > 100, `${inversions} inversions`);
  // corruption flips exactly one bit of a frame (the tag is stored twice: one copy survives)
  const bitsOff = (f, tag) => {
    const want = frame(100, tag);
    let bits = 0;
    for (let i = 0; i < 100; i++) for (let x = f[i] ^ want[i]; x; x &= x - 1) bits++;
    return bits;
  };
  let flipped = 0;
  for (const f of out) {
    const bits = Math.min(bitsOff(f, f[0] | (f[1] << 8)), bitsOff(f, f[2] | (f[3] << 8)));
    assert.ok(bits <= 1, `a corrupted frame differs in ${bits} bits`);
    flipped += bits;
  }
  assert.is(flipped, w.stats.corrupted);
});

test("delay, bandwidth, MTU and queue limit", () => {
  const w = new FaultyWire(1, { delayMs: 10 });
  w.send(frame(100, 1), 0);
  assert.is(w.receive(9.99).length, 0);
  assert.is(w.nextDeadline(), 10);
  assert.is(w.receive(10).length, 1);
  assert.is(w.nextDeadline(), Infinity);
  // 1000-byte frames at 8 Mbit/s take 1 ms each on the wire
  const bw = new FaultyWire(1, { bandwidthBps: 8e6 });
  for (let k = 0; k < 5; k++) bw.send(frame(1000, k), 0);
  assert.is(bw.receive(2.5).length, 2);
  assert.is(bw.receive(5).length, 3);
  const mtu = new FaultyWire(1, { mtu: 1514 });
  mtu.send(frame(1515, 1), 0);
  mtu.send(frame(1514, 2), 0);
  assert.is(mtu.receive(0).length, 1);
  assert.is(mtu.stats.oversize, 1);
  const q = new FaultyWire(1, { delayMs: 1, queueLimit: 3 });
  for (let k = 0; k < 5; k++) q.send(frame(10, k), 0);
  assert.is(q.receive(1).length, 3);
  assert.is(q.stats.queueDrops, 2);
  assert.throws(() => new FaultyWire(1, { drop: 1.5 }), /probability/);
  assert.throws(() => new FaultyWire(1, { delayMs: -1 }), />= 0/);
});

function portPool(buffers = 64) {
  let rings;
  const pool = Pool.volatile({
    buffers,
    configure: (core) => (rings = { rx: core.exports.ringCreate(4), tx: core.exports.ringCreate(4) }),
  });
  return { pool, port: new RingPort(pool, rings) };
}

function rxSlots(pool, ring) {
  const u32 = new Uint32Array(pool.core.memory.buffer);
  const u16 = new Uint16Array(pool.core.memory.buffer);
  const mask = u32[ring >> 2];
  const out = [];
  for (let p = u32[(ring >> 2) + 1]; p !== u32[(ring >> 2) + 2]; p = (p + 1) >>> 0) {
    const s = ring + 16 + (p & mask) * 16;
    out.push({ buf: u32[s >> 2], off: u16[(s + 4) >> 1], len: u16[(s + 6) >> 1], flags: u32[(s >> 2) + 3] });
  }
  return out;
}

test("ring port: delivered frames land in NIC-owned PM buffers, chained past 2 KiB", () => {
  const { pool, port } = portPool();
  assert.ok(port.deliver(frame(60, 1)));
  assert.ok(port.deliver([frame(3000, 2).subarray(0, 1000), frame(3000, 2).subarray(1000)]));
  const s = rxSlots(pool, port.rx);
  assert.equal(
    s.map((x) => [x.len, x.flags]),
    [
      [60, 0],
      [2048, 1],
      [952, 0],
    ],
  );
  assert.equal(pool.view(s[0].buf, 0, 60), frame(60, 1));
  const whole = new Uint8Array([...pool.view(s[1].buf, 0, 2048), ...pool.view(s[2].buf, 0, 952)]);
  assert.equal(whole, frame(3000, 2));
  for (const x of s) assert.is(pool.owner(x.buf), "nic");
  assert.is(pool.counts().nic, 3);
  pool.check();
});

test("ring port: full ring, no buffers, oversize frames are dropped and counted, nothing leaks", () => {
  const { pool, port } = portPool(8);
  for (let k = 0; k < 8; k++) assert.ok(port.deliver(frame(100, k)));
  assert.not.ok(port.deliver(frame(100, 9)), "no buffer left");
  assert.is(port.stats.rxDropNoBuffer, 1);
  const { pool: p2, port: q } = portPool(64);
  for (let k = 0; k < 16; k++) assert.ok(q.deliver(frame(100, k)));
  assert.not.ok(q.deliver(frame(100, 16)), "ring full");
  assert.is(q.stats.rxDropRingFull, 1);
  assert.not.ok(q.deliver(frame(70000, 1)));
  assert.not.ok(q.deliver(new Uint8Array(0)));
  assert.is(q.stats.rxDropTooLong, 2);
  assert.is(p2.counts().nic, 16);
  pool.check();
  p2.check();
});

test("ring port: TX chains are handed out as views, then the NIC's references are dropped", () => {
  const { pool, port } = portPool();
  const c = pool.core.exports;
  const [h, p] = pool.allocBatch(2, "stack");
  pool.view(h, 100, 54).set(frame(54, 5));
  pool.view(p, 0, 500).fill(9);
  pool.ref(p); // the retransmit queue keeps the payload; the NIC's reference goes with the send
  c.ringPush(port.tx, h, 100, 54, 0, 1);
  c.ringPush(port.tx, p, 0, 500, 0, 0);
  const sent = [];
  assert.is(
    port.drainTx((segs, len) => sent.push([segs.map((x) => x.length), len, [...segs[0].subarray(0, 2)]])),
    1,
  );
  assert.equal(sent, [[[54, 500], 554, [5, 0]]]);
  assert.is(pool.owner(h), "free");
  assert.is(pool.refCount(p), 1);
  // a slot naming a free buffer is skipped and counted; an unfinished chain waits
  c.ringPush(port.tx, h, 0, 10, 0, 0);
  assert.is(
    port.drainTx(() => {}),
    0,
  );
  assert.is(port.stats.txBadSlots, 1);
  c.ringPush(port.tx, p, 0, 10, 0, 1);
  assert.is(
    port.drainTx(() => assert.unreachable()),
    0,
  );
  pool.check();
});

test("memory link: frames cross between two cores, with faults and a pcap tap", () => {
  const A = portPool();
  const B = portPool();
  const dir = scratchDir();
  const pcap = new PcapWriter(join(dir, "t.pcap"));
  const link = new MemoryLink(A.port, B.port, { ab: { delayMs: 1, seed: 3 }, pcap });
  const c = A.pool.core.exports;
  for (let k = 0; k < 4; k++) {
    const b = A.pool.alloc("stack");
    A.pool.view(b, 0, 64).set(frame(64, k));
    c.ringPush(A.port.tx, b, 0, 64, 0, 0);
  }
  link.step(0);
  assert.is(rxSlots(B.pool, B.port.rx).length, 0, "still on the wire");
  assert.is(link.nextDeadline(), 1);
  link.step(1);
  const got = rxSlots(B.pool, B.port.rx);
  assert.equal(
    got.map((s) => tagOf(B.pool.view(s.buf, 0, 64))),
    [0, 1, 2, 3],
  );
  assert.is(A.pool.counts().free, 64, "sender's buffers released");
  pcap.close();
  const raw = readFileSync(join(dir, "t.pcap"));
  const v = new DataView(raw.buffer, raw.byteOffset);
  assert.is(v.getUint32(0, true), 0xa1b2c3d4);
  assert.is(v.getUint32(20, true), 1);
  assert.is(raw.length, 24 + 4 * (16 + 64));
  assert.is(v.getUint32(24 + 8, true), 64);
  const tshark = spawnSync("tshark", ["-r", join(dir, "t.pcap"), "-T", "fields", "-e", "frame.len"], {
    encoding: "utf8",
  });
  if (tshark.status === 0) assert.is(tshark.stdout.trim().split("\n").length, 4);
  A.pool.check();
  B.pool.check();
});

test.run();

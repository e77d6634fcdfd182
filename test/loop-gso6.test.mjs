// NicLoop's TX path and the GSO type of a superframe (docs/core-abi.md, TX first-slot flags):
// type 4 (TCPv6) reaches the NIC unchanged with its checksum offsets, gso_size and hdr_len,
// exactly as type 1 (TCPv4) does (the TAP backend writes the type into the virtio-net header
// as it comes); the TX fault injector, which keeps plain frames, loses a corrupted superframe
// of either type instead of sending it with a flipped bit, and passes an untouched one on
// with its metadata. The frames are put on the core's TX ring by the test (no IPv6 core needed).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { NicLoop, Stack, nic } from "../build/index.js";

const TXF_NEEDS_CSUM = 2;

class FakeNic {
  constructor(pool) {
    this.pool = pool;
    this.sent = [];
    this.closed = false;
    this.txPending = 0;
  }
  receive() {
    return 0;
  }
  drain() {
    return [];
  }
  send(frames) {
    const idx = [];
    for (const f of frames) {
      this.sent.push({ ...f, bufs: f.bufs.map((b) => ({ ...b })) });
      for (const b of f.bufs) idx.push(b.index);
    }
    if (idx.length) this.pool.freeBatch(idx);
    return frames.length;
  }
  flush() {
    return 0;
  }
  stats() {
    return { syscalls: 0 };
  }
  poll() {}
  stopPolling() {}
  close() {
    this.closed = true;
  }
}

/**
 * Puts one superframe of GSO type `gso` on the stack's TX ring as the core would: a header
 * slot (csum_start = 14 + the IP header, csum_offset 16) and two payload slots.
 */
function pushSuperframe(stack, gso) {
  const e = stack.pool.core.exports;
  const ipHdr = gso === 4 ? 40 : 20;
  const hdrLen = 14 + ipHdr + 20;
  const flags0 = (TXF_NEEDS_CSUM | (gso << 4) | ((14 + ipHdr) << 8) | (16 << 16)) >>> 0;
  const bufs = [stack.pool.alloc("nic"), stack.pool.alloc("nic"), stack.pool.alloc("nic")];
  const lens = [hdrLen, 1440, 1000];
  for (let k = 0; k < 3; k++) {
    stack.pool.view(bufs[k], 128, lens[k]).fill(k + 1);
    const fl = k === 0 ? flags0 | 1 : k < 2 ? 1 : 0;
    const conn = k === 0 ? (1440 | (hdrLen << 16)) >>> 0 : 0;
    assert.ok(e.ringPush(stack.rings.tx, bufs[k], 128, lens[k], conn, fl) >= 0);
  }
  return { hdrLen, csumStart: 14 + ipHdr };
}

function setup() {
  const stack = Stack.create({ mac: "02:00:00:00:06:0a", ip: "198.18.6.10/24", pool: { buffers: 1024 } });
  const idle = stack.pool.counts();
  return { stack, nic: new FakeNic(stack.pool), idle };
}

test("a TCPv6 superframe (GSO type 4) reaches the NIC unchanged, like a TCPv4 one (type 1)", () => {
  for (const gso of [nic.GSO_TCPV4, nic.GSO_TCPV6]) {
    const s = setup();
    const loop = new NicLoop(s.stack, s.nic, { onEvent: () => {} });
    const want = pushSuperframe(s.stack, gso);
    loop.turn(0);
    const f = s.nic.sent.find((x) => x.bufs.length === 3);
    assert.ok(f, JSON.stringify(s.nic.sent.map((x) => x.bufs.length)));
    assert.is((f.flags & nic.SF_GSO_MASK) >>> nic.SF_GSO_SHIFT, gso, `type ${gso}`);
    assert.ok(f.flags & nic.SF_NEEDS_CSUM, "NEEDS_CSUM");
    assert.equal(
      [f.csumStart, f.csumOffset, f.gsoSize, f.hdrLen],
      [want.csumStart, 16, 1440, want.hdrLen],
      `type ${gso}`,
    );
    assert.equal(
      f.bufs.map((b) => b.length),
      [want.hdrLen, 1440, 1000],
    );
    s.stack.shutdown();
  }
});

test("the TX fault injector: a corrupted superframe of either type is lost, an untouched one keeps its metadata", () => {
  for (const gso of [nic.GSO_TCPV4, nic.GSO_TCPV6]) {
    // corrupt everything: the superframe is lost (counted as corrupted), never sent
    let s = setup();
    let loop = new NicLoop(s.stack, s.nic, { onEvent: () => {}, faults: { tx: { corrupt: 1, seed: 3 } } });
    pushSuperframe(s.stack, gso);
    loop.turn(0);
    loop.turn(1);
    assert.is(
      s.nic.sent.filter((x) => x.bufs.length === 3).length,
      0,
      `type ${gso}: a corrupted superframe is not sent`,
    );
    const ft = loop.faultStats.tx;
    assert.ok(ft.corrupted >= 1 && ft.corrupted === ft.frames, JSON.stringify(ft)); // the ARP the first poll sends too
    loop.stop();
    assert.equal(s.stack.pool.counts(), s.idle, "its buffers are freed");
    s.stack.shutdown();
    // a delay only: it goes out later with its GSO type and offsets
    s = setup();
    loop = new NicLoop(s.stack, s.nic, { onEvent: () => {}, faults: { tx: { delayMs: 5, seed: 4 } } });
    const want = pushSuperframe(s.stack, gso);
    loop.turn(0);
    assert.is(s.nic.sent.filter((x) => x.bufs.length === 3).length, 0, "held");
    loop.turn(10);
    const f = s.nic.sent.find((x) => x.bufs.length === 3);
    assert.ok(f, "delivered");
    assert.is((f.flags & nic.SF_GSO_MASK) >>> nic.SF_GSO_SHIFT, gso);
    assert.equal([f.csumStart, f.csumOffset, f.gsoSize, f.hdrLen], [want.csumStart, 16, 1440, want.hdrLen]);
    loop.stop();
    s.stack.shutdown();
  }
});

test.run();

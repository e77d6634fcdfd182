// NicPort's slot-to-slot paths (drainInto, sendFrom: what NicLoop's turns use) against a fake
// addon, no device needed: frames cross from a core's ring to a NIC queue's and back with their
// order, bytes and offload fields intact; a TX ring that fills holds the rest in its backlog
// until the NIC takes them; a core RX ring that fills drops whole frames and frees their
// buffers; no buffer is leaked.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Pool, NicPort, NO_OFFLOADS, reserveNicQueues, nic } from "../build/index.js";

const SF_MORE = 1;
const TXF_NEEDS_CSUM = 2;
const TXF_GSO_SHIFT = 4;
const RXF_CSUM_VALID = 2;
const RXF_NEEDS_CSUM = 4;

/** A ring in the core's memory as docs/core-abi.md lays it out: {mask, head, tail, lane}, 16-byte slots. */
class RingView {
  constructor(memory, at) {
    this.u32 = new Uint32Array(memory.buffer);
    this.u16 = new Uint16Array(memory.buffer);
    this.h = at >>> 2;
    this.mask = this.u32[this.h];
    this.s0 = (at + 16) >>> 2;
  }
  get head() {
    return this.u32[this.h + 1];
  }
  set head(v) {
    this.u32[this.h + 1] = v >>> 0;
  }
  get tail() {
    return this.u32[this.h + 2];
  }
  set tail(v) {
    this.u32[this.h + 2] = v >>> 0;
  }
  put(pos, buf, off, len, conn, flags) {
    const s = this.s0 + (pos & this.mask) * 4;
    this.u32[s] = buf;
    this.u16[2 * s + 2] = off;
    this.u16[2 * s + 3] = len;
    this.u32[s + 2] = conn;
    this.u32[s + 3] = flags;
  }
  get(pos) {
    const s = this.s0 + (pos & this.mask) * 4;
    return {
      buf: this.u32[s],
      off: this.u16[2 * s + 2],
      len: this.u16[2 * s + 3],
      conn: this.u32[s + 2],
      flags: this.u32[s + 3],
    };
  }
}

/**
 * A NIC queue whose addon is a fake: each tx() call takes at most `ctl.perCall` frames off the
 * TX ring (as a kernel with room for only so many; 0: none, as on EAGAIN), records them and
 * completes their buffers.
 */
class FakePort extends NicPort {
  constructor(pool, q, perCall) {
    const sent = [];
    const ctl = { perCall };
    const nat = {
      info: () => ({ kind: "fake", fd: -1, ifname: "fake0", copies: "none" }),
      rx: () => 0,
      stats: () => ({ syscalls: 0 }),
      close: () => new Uint32Array(0),
      pollStart() {},
      pollStop() {},
      pollRef() {},
      tx: (_h, txRing, txMeta, done) => {
        const r = new RingView(pool.core.memory, txRing);
        const u16 = new Uint16Array(pool.core.memory.buffer);
        const u32 = new Uint32Array(pool.core.memory.buffer);
        let frames = 0;
        while (r.head !== r.tail && frames < ctl.perCall) {
          const first = r.head;
          const f0 = r.get(first);
          const m = (txMeta + (first & r.mask) * nic.META_SIZE) >>> 1;
          const parts = [];
          let p = first;
          for (;;) {
            const s = r.get(p);
            parts.push(Buffer.from(pool.view(s.buf, s.off, s.len)));
            const d = done >>> 2;
            u32[d + 2 + u32[d]] = s.buf; // the completion
            u32[d]++;
            p = (p + 1) >>> 0;
            if (!(s.flags & SF_MORE)) break;
          }
          sent.push({
            bytes: Buffer.concat(parts),
            flags: f0.flags,
            meta: [u16[m], u16[m + 1], u16[m + 2], u16[m + 3]],
          });
          r.head = p;
          frames++;
        }
        return frames;
      },
    };
    super(pool, q, nat, {}, 0);
    this.sent = sent;
    this.ctl = ctl;
  }
  get caps() {
    return NO_OFFLOADS;
  }
}

const pattern = (k, n) => Buffer.from(Array.from({ length: n }, (_, i) => (k * 37 + i * 11) & 255));

/**
 * A volatile pool with a 64-slot NIC queue and a core ring of 2^coreLog2 slots, and a FakePort
 * on it taking `perCall` frames a call; done() closes both and checks every buffer is back.
 */
function setup({ buffers, coreLog2, perCall }) {
  let q;
  let coreRing;
  const pool = Pool.volatile({
    buffers,
    configure: (core) => {
      q = reserveNicQueues(core, { ringLog2: 6 });
      coreRing = core.exports.ringCreate(coreLog2);
    },
  });
  const idle = pool.counts();
  const port = new FakePort(pool, q, perCall);
  const done = () => {
    port.close();
    assert.equal(pool.counts(), idle, "every buffer is back in the pool");
    pool.close();
  };
  return { pool, q, port, coreRing, core: new RingView(pool.core.memory, coreRing), done };
}

test("sendFrom: a TX ring that fills sends what it holds, the rest waits in the backlog; order, bytes and offloads kept", () => {
  const { pool, port, coreRing: coreTx, core, done } = setup({ buffers: 1024, coreLog2: 8, perCall: 0 });
  // 90 frames (every third of two buffers, every fifth a TSO superframe's request): 120 slots
  // against a 64-slot NIC ring, while the NIC takes none (its kernel queue full), then 3 frames
  // per call
  const want = [];
  let tail = core.tail;
  for (let k = 0; k < 90; k++) {
    const two = k % 3 === 0;
    const len0 = 100 + k;
    const len1 = two ? 700 : 0;
    const bytes = pattern(k, len0 + len1);
    const gso = k % 5 === 0;
    const bufs = [pool.alloc("stack")];
    if (two) bufs.push(pool.alloc("stack"));
    pool.view(bufs[0], 64, len0).set(bytes.subarray(0, len0));
    if (two) pool.view(bufs[1], 0, len1).set(bytes.subarray(len0));
    const first = gso ? TXF_NEEDS_CSUM | (1 << TXF_GSO_SHIFT) | (34 << 8) | (16 << 16) : 0;
    core.put(tail, bufs[0], 64, len0, gso ? (1448 | (66 << 16)) >>> 0 : 0, first | (two ? SF_MORE : 0));
    tail++;
    if (two) core.put(tail++, bufs[1], 0, len1, 0, 0);
    want.push({ bytes, gso });
  }
  core.tail = tail;
  assert.is(port.sendFrom(coreTx), 90, "every frame taken from the core's ring");
  assert.is(core.head, core.tail);
  assert.is(port.sent.length, 0);
  assert.is(port.txBacklogged, 90 - 48, "what the ring had no room for waits (48 frames fill its 64 slots)");
  port.ctl.perCall = 3;
  for (let n = 0; port.txPending > 0 && n < 1000; n++) port.flush();
  assert.is(port.txPending, 0);
  assert.is(port.sent.length, 90);
  for (let k = 0; k < 90; k++) {
    const f = port.sent[k];
    assert.ok(f.bytes.equals(want[k].bytes), `frame ${k}'s bytes`);
    if (want[k].gso) {
      assert.is(f.flags & ~SF_MORE, nic.SF_NEEDS_CSUM | (nic.GSO_TCPV4 << nic.SF_GSO_SHIFT), `frame ${k}'s flags`);
      assert.equal(f.meta, [34, 16, 1448, 66], `frame ${k}'s metadata`);
    } else assert.is(f.flags & ~SF_MORE, 0, `frame ${k}'s flags`);
  }
  done();
});

test("sendFrom: a frame no NIC can send is a RangeError; its buffers are freed, the frames before it sent, those after it left for the next call", () => {
  const { pool, port, coreRing: coreTx, core, done } = setup({ buffers: 256, coreLog2: 5, perCall: 100 });
  let tail = core.tail;
  const bufs = [];
  for (let k = 0; k < 4; k++) {
    const b = pool.alloc("stack");
    bufs.push(b);
    pool.view(b, 0, 60).set(pattern(k, 60));
    if (k === 2) {
      // a chain whose second slot names no bytes
      const c = pool.alloc("stack");
      bufs.push(c);
      core.put(tail++, b, 0, 60, 0, SF_MORE);
      core.put(tail++, c, 100, 0, 0, 0);
    } else core.put(tail++, b, 0, 60, 0, 0);
  }
  core.tail = tail;
  assert.throws(
    () => port.sendFrom(coreTx),
    (e) => e instanceof RangeError && /bad TX buffer/.test(e.message),
  );
  assert.equal(
    port.sent.map((f) => f.bytes),
    [pattern(0, 60), pattern(1, 60)],
    "the frames before it were sent",
  );
  assert.is(pool.owner(bufs[2]), "free");
  assert.is(pool.owner(bufs[3]), "free");
  assert.is(port.sendFrom(coreTx), 1, "the frame after it goes at the next call");
  assert.ok(port.sent[2].bytes.equals(pattern(3, 60)));
  assert.is(core.head, core.tail);
  done();
});

test("drainInto: frames move onto the core's RX ring with its checksum flags; those it has no room for are dropped and freed", () => {
  const { pool, q, port, coreRing: coreRx, core, done } = setup({ buffers: 1024, coreLog2: 4, perCall: 1 }); // 16 slots
  const rx = new RingView(pool.core.memory, q.rxRing);
  const u16 = new Uint16Array(pool.core.memory.buffer);
  // as the addon writes them: 12 frames of two slots; even ones with a partial checksum
  // (NEEDS_CSUM, start and offset in the metadata table), odd ones verified (CSUM_VALID)
  let tail = rx.tail;
  const frames = [];
  for (let k = 0; k < 12; k++) {
    const a = pool.alloc("nic");
    const b = pool.alloc("nic");
    const flags = k % 2 === 0 ? nic.SF_NEEDS_CSUM : nic.SF_CSUM_VALID;
    const m = (q.rxMeta + (tail & rx.mask) * nic.META_SIZE) >>> 1;
    u16[m] = 34 + k;
    u16[m + 1] = 16;
    rx.put(tail++, a, 2, 2046, 0, flags | SF_MORE);
    rx.put(tail++, b, 0, 100 + k, 0, 0);
    frames.push({ a, b, k });
  }
  rx.tail = tail;
  const counts = { rxFrames: 0, rxRingFull: 0 };
  port.drainInto(coreRx, counts);
  assert.is(rx.head, rx.tail, "the NIC's RX ring is drained");
  assert.equal(counts, { rxFrames: 8, rxRingFull: 4 }, "8 frames fit 16 slots; 4 dropped");
  assert.is(core.tail - core.head, 16);
  for (let k = 0; k < 8; k++) {
    const s0 = core.get(core.head + 2 * k);
    const s1 = core.get(core.head + 2 * k + 1);
    assert.equal([s0.buf, s0.off, s0.len], [frames[k].a, 2, 2046], `frame ${k}'s first slot`);
    assert.equal(
      [s1.buf, s1.off, s1.len, s1.flags, s1.conn],
      [frames[k].b, 0, 100 + k, 0, 0],
      `frame ${k}'s last slot`,
    );
    if (k % 2 === 0) {
      assert.is(s0.flags, RXF_NEEDS_CSUM | SF_MORE);
      assert.is(s0.conn, ((34 + k) | (16 << 16)) >>> 0, "checksum start and offset");
    } else {
      assert.is(s0.flags, RXF_CSUM_VALID | SF_MORE);
      assert.is(s0.conn, 0);
    }
  }
  // the dropped frames' buffers went back to the pool; the moved ones' are the core's to free
  for (const f of frames.slice(8)) assert.is(pool.owner(f.a), "free");
  for (const f of frames.slice(0, 8)) {
    pool.free(f.a);
    pool.free(f.b);
  }
  core.head = core.tail;
  done();
});

test.run();

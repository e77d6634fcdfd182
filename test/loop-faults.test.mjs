// NicLoop's test-only fault injector (host/loop.ts `faults: {rx, tx}`), over an in-memory fake
// NIC queue and a virtual clock (loop.turn(now) driven by the test; no devices, no root):
// drop, duplicate, reorder and corrupt happen at their configured rates in each direction and
// do what they say to the frames the core (RX) or the wire (TX) sees, seeded and repeatable;
// TCP between two stacks through two faulted loops is byte-exact; no buffer is leaked.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { Stack, NicLoop } from "../build/index.js";
import { eth, arpPkt, ipv4, icmpEcho, udpPkt, mac, ip, csum, rd16 } from "./lib/corehost.mjs";
import { FAULTS, streamSender, streamPiece } from "./lib/interop.mjs";

const SF_NEEDS_CSUM = 1 << 8;
const US = { mac: "02:00:00:00:03:0a", ip: "198.18.3.10" };
const PEER = { mac: "02:00:00:00:03:0b", ip: "198.18.3.11" };
const N = 50_000;

/** A NIC queue in memory: the test injects received frames; sent frames are captured (or wired on). */
class FakeNic {
  constructor(pool) {
    this.pool = pool;
    this.rx = [];
    this.sent = [];
    this.meta = [];
    this.onSend = null;
    this.closed = false;
    this.txPending = 0;
  }
  /** A received frame in fresh buffers (owner nic, chained past 2 KiB), as a backend hands it over. */
  inject(bytes, { offset = 0, flags = 0, csumStart = 0, csumOffset = 0 } = {}) {
    const bufs = [];
    for (let at = 0, off = offset; at < bytes.length; off = 0) {
      const n = Math.min(2048 - off, bytes.length - at);
      const i = this.pool.alloc("nic");
      this.pool.view(i, off, n).set(bytes.subarray(at, at + n));
      bufs.push({ index: i, offset: off, length: n });
      at += n;
    }
    this.rx.push({
      bufs,
      length: bytes.length,
      flags,
      gsoType: 0,
      csumStart,
      csumOffset,
      gsoSize: 0,
      hdrLen: 0,
    });
  }
  receive() {
    return this.rx.length;
  }
  drain() {
    const r = this.rx;
    this.rx = [];
    return r;
  }
  send(frames) {
    const idx = [];
    for (const f of frames) {
      const bytes = Buffer.concat(f.bufs.map((b) => this.pool.view(b.index, b.offset ?? 0, b.length)));
      this.meta.push({ length: bytes.length, flags: f.flags ?? 0, gsoSize: f.gsoSize ?? 0 });
      if (this.onSend) this.onSend(bytes, f);
      else this.sent.push(bytes);
      for (const b of f.bufs) idx.push(b.index);
    }
    // transmission complete: the NIC's reference on each buffer goes
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
  /** What a closing NIC does: frees the frames it still held. */
  close() {
    this.closed = true;
    const idx = this.rx.flatMap((f) => f.bufs.map((b) => b.index));
    this.rx = [];
    if (idx.length) this.pool.freeBatch(idx);
  }
}

function makeStack(who, more = {}) {
  const stack = Stack.create({ mac: who.mac, ip: `${who.ip}/24`, pool: { buffers: 4096 }, ...more });
  return { stack, nic: new FakeNic(stack.pool), idle: stack.pool.counts() };
}

const macB = (s) => mac(s);
/** An ICMP echo request from PEER with a payload that names its sequence number. */
function echo(seq) {
  const payload = new Uint8Array(56);
  for (let k = 0; k < 56; k++) payload[k] = (seq * 7 + k * 13) & 255;
  const p = icmpEcho({ id: 0x77, seq: seq & 0xffff, payload });
  return {
    payload,
    frame: eth(
      macB(US.mac),
      macB(PEER.mac),
      0x0800,
      ipv4({ src: ip(PEER.ip), dst: ip(US.ip), proto: 1, payload: p, id: seq & 0xffff }),
    ),
  };
}

/** Teaches the stack PEER's address (an ARP request from PEER) through a loop without faults. */
function arpFirst(s) {
  s.nic.inject(
    eth(
      macB("ff:ff:ff:ff:ff:ff"),
      macB(PEER.mac),
      0x0806,
      arpPkt({ op: 1, sha: macB(PEER.mac), spa: ip(PEER.ip), tpa: ip(US.ip) }),
    ),
  );
  new NicLoop(s.stack, s.nic, { onEvent: () => {} }).turn(0);
  s.nic.sent.length = 0; // the ARP reply
}

/** Whether a captured echo reply is intact; returns its sequence number and payload, or null. */
function intactReply(f, { anyDst = false } = {}) {
  if (f.length !== 98) return null;
  if (!anyDst && Buffer.compare(f.subarray(0, 6), Buffer.from(macB(PEER.mac))) !== 0) return null;
  if (Buffer.compare(f.subarray(6, 12), Buffer.from(macB(US.mac))) !== 0) return null;
  if (rd16(f, 12) !== 0x0800) return null;
  if (csum(f.subarray(14, 34)) !== 0xffff) return null;
  if (f[14] !== 0x45 || f[23] !== 1 || rd16(f, 16) !== 84) return null;
  if (Buffer.compare(f.subarray(26, 30), Buffer.from(ip(US.ip).toString(16).padStart(8, "0"), "hex")) !== 0)
    return null;
  if (Buffer.compare(f.subarray(30, 34), Buffer.from(ip(PEER.ip).toString(16).padStart(8, "0"), "hex")) !== 0)
    return null;
  if (csum(f.subarray(34)) !== 0xffff || f[34] !== 0 || rd16(f, 38) !== 0x77) return null;
  return { seq: rd16(f, 40), payload: f.subarray(42) };
}

/** Sends N echo requests through a loop, `perTurn` a turn, 0.1 ms of virtual time apart. */
function runEchoes(s, loop, perTurn = 10) {
  let t = 0;
  const sent = [];
  for (let seq = 0; seq < N;) {
    for (let k = 0; k < perTurn && seq < N; k++, seq++) {
      const e = echo(seq);
      sent.push(e.payload);
      s.nic.inject(e.frame);
    }
    loop.turn(t);
    t += 0.1;
  }
  // let every held (reordered) frame come out
  for (let k = 0; k < 50; k++, t += 0.1) loop.turn(t);
  return sent;
}

test("RX faults: drop, duplicate, reorder and corrupt at their rates on the frames the core gets", () => {
  const s = makeStack(US);
  const loop = new NicLoop(s.stack, s.nic, { onEvent: () => {}, faults: { rx: { ...FAULTS, seed: 5 } } });
  arpFirst(s);
  const base = s.stack.stats();
  const sent = runEchoes(s, loop);
  const f = loop.faultStats.rx;
  assert.is(loop.faultStats.tx, null);
  assert.is(f.frames, N);
  // rates: within 5 standard deviations of the configured probabilities
  const near = (got, p, n, what) => {
    const sd = Math.sqrt(n * p * (1 - p));
    assert.ok(Math.abs(got - n * p) <= 5 * sd + 1, `${what}: ${got} of ${n}, expected ${n * p} +- ${5 * sd}`);
  };
  near(f.dropped, FAULTS.drop, N, "dropped");
  near(f.duplicated, FAULTS.duplicate, N - f.dropped, "duplicated");
  near(f.reordered, FAULTS.reorder, N - f.dropped + f.duplicated, "reordered");
  near(f.corrupted, FAULTS.corrupt, N - f.dropped + f.duplicated, "corrupted");
  assert.is(f.held, 0);
  assert.is(f.delivered, f.frames - f.dropped + f.duplicated);
  const st = s.stack.stats();
  // the core got exactly what the injector delivered
  assert.is(st.RX_FRAMES - base.RX_FRAMES, f.delivered);
  // every reply is intact and carries its request's payload; count replies per sequence number
  const per = new Uint8Array(N);
  let late = 0;
  let maxSeq = -1;
  let srcFlipped = 0;
  for (const r of s.nic.sent) {
    // the core answers to the request's source address, which no checksum covers: a request
    // whose flipped bit is there gets an answer to that address (one bit off PEER's)
    const x = intactReply(r, { anyDst: true });
    assert.ok(x, "the core only answers requests that pass its checks, with intact replies");
    if (!intactReply(r)) {
      const d = Buffer.from(r.subarray(0, 6));
      const p = Buffer.from(macB(PEER.mac));
      let bits = 0;
      for (let k = 0; k < 6; k++) bits += [...(d[k] ^ p[k]).toString(2)].filter((c) => c === "1").length;
      assert.is(bits, 1, "only the flipped source address bit shows in the reply");
      srcFlipped++;
    }
    assert.ok(Buffer.from(sent[x.seq]).equals(Buffer.from(x.payload)), `payload of ${x.seq}`);
    per[x.seq]++;
    if (x.seq < maxSeq) late++;
    maxSeq = Math.max(maxSeq, x.seq);
  }
  const replied = s.nic.sent.length;
  assert.is(st.ICMP_ECHO_REPLIED - base.ICMP_ECHO_REPLIED, replied);
  // the core rejected (checksum, address, type) what was corrupted, except a flip in the
  // Ethernet source address, which no check covers (6 of 98 bytes)
  const rejected = f.delivered - replied;
  assert.ok(
    rejected + srcFlipped <= f.corrupted,
    `rejected ${rejected}, source flips ${srcFlipped}, corrupted ${f.corrupted}`,
  );
  assert.ok(rejected >= f.corrupted * 0.8, `rejected ${rejected} of ${f.corrupted} corrupted`);
  assert.ok(st.IP_BAD_CSUM + st.ICMP_BAD + st.ETH_NOT_US + st.ETH_TYPE + st.IP_BAD_HDR + st.IP_BAD_LEN > 0);
  const missing = per.filter((n) => n === 0).length;
  const twice = per.filter((n) => n === 2).length;
  assert.ok(per.every((n) => n <= 2));
  assert.ok(missing >= f.dropped && missing <= f.dropped + f.corrupted, `missing ${missing}, dropped ${f.dropped}`);
  assert.ok(twice <= f.duplicated && twice >= f.duplicated - f.corrupted, `twice ${twice}, duplicated ${f.duplicated}`);
  // a held frame is overtaken by the frames after it
  assert.ok(late <= f.reordered && late >= 0.8 * f.reordered, `late ${late}, reordered ${f.reordered}`);
  loop.stop();
  s.nic.close();
  assert.equal(s.stack.pool.check(), s.idle, "no buffer leaked");
});

test("TX faults: drop, duplicate, reorder and corrupt at their rates on the frames the wire gets", () => {
  const s = makeStack(US);
  const loop = new NicLoop(s.stack, s.nic, { onEvent: () => {}, faults: { tx: { ...FAULTS, seed: 6 } } });
  arpFirst(s);
  const sent = runEchoes(s, loop);
  const f = loop.faultStats.tx;
  assert.is(loop.faultStats.rx, null);
  assert.is(f.frames, N, "every reply went through the injector");
  const near = (got, p, n, what) => {
    const sd = Math.sqrt(n * p * (1 - p));
    assert.ok(Math.abs(got - n * p) <= 5 * sd + 1, `${what}: ${got} of ${n}, expected ${n * p} +- ${5 * sd}`);
  };
  near(f.dropped, FAULTS.drop, N, "dropped");
  near(f.duplicated, FAULTS.duplicate, N - f.dropped, "duplicated");
  near(f.reordered, FAULTS.reorder, N - f.dropped + f.duplicated, "reordered");
  near(f.corrupted, FAULTS.corrupt, N - f.dropped + f.duplicated, "corrupted");
  assert.is(f.held, 0);
  const wire = s.nic.sent;
  assert.is(wire.length, f.delivered);
  // a corrupted frame differs by one bit: exactly `corrupted` frames fail the checks
  let bad = 0;
  let late = 0;
  let maxSeq = -1;
  const per = new Uint8Array(N);
  for (const r of wire) {
    const x = intactReply(r);
    if (!x) {
      bad++;
      continue;
    }
    assert.ok(Buffer.from(sent[x.seq]).equals(Buffer.from(x.payload)), `payload of ${x.seq}`);
    per[x.seq]++;
    if (x.seq < maxSeq) late++;
    maxSeq = Math.max(maxSeq, x.seq);
  }
  assert.is(bad, f.corrupted, "every corrupted frame (one bit flipped) fails a check; no other does");
  const missing = per.filter((n) => n === 0).length;
  assert.ok(missing >= f.dropped && missing <= f.dropped + f.corrupted);
  assert.ok(late <= f.reordered && late >= 0.8 * f.reordered, `late ${late}, reordered ${f.reordered}`);
  loop.stop();
  s.nic.close();
  assert.equal(s.stack.pool.check(), s.idle, "no buffer leaked");
});

test("the same seed gives the same faults; another seed other ones", () => {
  const run = (seed) => {
    const s = makeStack(US);
    const loop = new NicLoop(s.stack, s.nic, {
      onEvent: () => {},
      faults: { rx: { ...FAULTS, seed }, tx: { ...FAULTS, seed: seed + 1 } },
    });
    arpFirst(s);
    let t = 0.1;
    for (let seq = 0; seq < 5000; seq++) {
      s.nic.inject(echo(seq).frame);
      if (seq % 10 === 9) loop.turn((t += 0.1));
    }
    for (let k = 0; k < 50; k++) loop.turn((t += 0.1));
    const h = createHash("sha256");
    for (const b of s.nic.sent) h.update(b);
    const out = { faults: loop.faultStats, wire: h.digest("hex") };
    loop.stop();
    s.nic.close();
    assert.equal(s.stack.pool.check(), s.idle);
    return out;
  };
  const a = run(21);
  const b = run(21);
  const c = run(99);
  assert.equal(a, b);
  assert.is.not(a.wire, c.wire);
});

test("RX corrupt on a NEEDS_CSUM frame: the flip is caught (the core is not left to complete the checksum over it)", () => {
  const s = makeStack(US);
  const got = [];
  const loop = new NicLoop(s.stack, s.nic, {
    onEvent: (ev) => {
      if (ev.type === "UDP") {
        got.push(Buffer.from(s.stack.pool.view(ev.buf, ev.off, ev.len)));
        s.stack.pool.free(ev.buf);
      }
    },
    faults: { rx: { corrupt: 1, seed: 3 } },
  });
  s.stack.udpBind(5000);
  loop.turn(0);
  const base = s.stack.stats();
  for (let k = 0; k < 200; k++) {
    // a datagram with a partial checksum (the pseudo-header sum only), as a kernel with
    // offloads hands it over: the receiver must sum the rest
    const payload = Buffer.alloc(200, k);
    const u = udpPkt({ src: ip(PEER.ip), dst: ip(US.ip), sport: 4000, dport: 5000, payload, noCsum: true });
    const ph = new Uint8Array(12);
    ph.set([198, 18, 3, 11, 198, 18, 3, 10, 0, 17, 0, u.length]);
    const pseudo = csum(ph); // the folded sum, not complemented
    u[6] = pseudo >> 8;
    u[7] = pseudo & 255;
    const frame = eth(
      macB(US.mac),
      macB(PEER.mac),
      0x0800,
      ipv4({ src: ip(PEER.ip), dst: ip(US.ip), proto: 17, payload: u }),
    );
    s.nic.inject(frame, { flags: SF_NEEDS_CSUM, csumStart: 34, csumOffset: 6 });
    loop.turn(0.1 + k * 0.1);
  }
  const st = s.stack.stats();
  const f = loop.faultStats.rx;
  assert.is(f.corrupted, 200);
  // none of the 200 datagrams, each with one bit flipped, reaches the app with wrong bytes
  for (const d of got) assert.ok(d.length === 200 && d.every((x) => x === d[0]), "only intact datagrams are delivered");
  const caught =
    st.UDP_BAD_CSUM +
    st.IP_BAD_CSUM +
    st.ETH_NOT_US +
    st.ETH_TYPE +
    st.IP_BAD_HDR +
    st.IP_BAD_LEN +
    st.UDP_BAD_LEN +
    st.UDP_NO_PORT +
    st.IP_NOT_US -
    (base.UDP_BAD_CSUM +
      base.IP_BAD_CSUM +
      base.ETH_NOT_US +
      base.ETH_TYPE +
      base.IP_BAD_HDR +
      base.IP_BAD_LEN +
      base.UDP_BAD_LEN +
      base.UDP_NO_PORT +
      base.IP_NOT_US);
  // a flip in the Ethernet source address or in a field nothing checks may pass: those datagrams are intact
  assert.ok(caught + got.length >= 190, `caught ${caught}, delivered ${got.length}`);
  assert.ok(st.UDP_BAD_CSUM - base.UDP_BAD_CSUM > 100, "most flips are caught by the completed UDP checksum");
  loop.stop();
  s.nic.close();
  assert.equal(s.stack.pool.check(), s.idle, "no buffer leaked");
});

/**
 * Two stacks joined by two fake NICs (what one sends, the other receives), each behind a
 * NicLoop with `faultsA`/`faultsB`, on a virtual clock. A connects to B; each sends `bytes`
 * of the seeded stream and closes. Returns both sides once both saw CLOSED (or time ran out),
 * after TIME_WAIT ended, the loops stopped and the NICs closed.
 */
function tcpPair(bytes, faultsA, faultsB, moreA = {}) {
  const A = makeStack(US, { mslMs: 500, ...moreA });
  const B = makeStack(PEER, { mslMs: 500 });
  const side = (S, faults) => {
    const st = { S, tx: streamSender(S.stack, bytes), got: 0, ok: true, closed: null };
    st.loop = new NicLoop(S.stack, S.nic, {
      faults,
      onTurnEnd: () => st.tx.pump(),
      onEvent: (ev) => {
        if (ev.type === "CONNECTED" || ev.type === "ACCEPTED") {
          st.tx.state.conn = ev.conn;
          st.tx.pump();
        } else if (ev.type === "DATA") {
          const v = S.stack.pool.view(ev.buf, ev.off, ev.len);
          if (!streamPiece(st.got, ev.len).equals(Buffer.from(v))) st.ok = false;
          st.got += ev.len;
          S.stack.pool.free(ev.buf);
          S.stack.recvd(ev.conn, ev.len);
        } else if (ev.type === "CLOSED" || ev.type === "RESET") st.closed = `${ev.type} ${ev.aux}`;
        else st.tx.onEvent(ev);
      },
    });
    return st;
  };
  const a = side(A, faultsA);
  const b = side(B, faultsB);
  // a partial checksum travels as the metadata a TAP would pass (a superframe as the kernel's
  // TSO would: one frame, NEEDS_CSUM)
  const wire = (to) => (bytes, f) =>
    to.nic.inject(
      bytes,
      (f.flags ?? 0) & SF_NEEDS_CSUM ? { flags: SF_NEEDS_CSUM, csumStart: f.csumStart, csumOffset: f.csumOffset } : {},
    );
  A.nic.onSend = wire(B);
  B.nic.onSend = wire(A);
  B.stack.listen(80);
  A.stack.connect(PEER.ip, 80);
  let t = 0;
  while (!(a.closed && b.closed) && t < 600_000) {
    const na = a.loop.turn(t);
    const nb = b.loop.turn(t);
    // frames on the wire arrive 0.05 ms later; an idle wire jumps to the next timer
    t = A.nic.rx.length || B.nic.rx.length ? t + 0.05 : Math.max(t + 0.05, Math.min(na, nb));
  }
  a.faults = a.loop.faultStats;
  a.wire = A.nic.meta;
  b.faults = b.loop.faultStats;
  // TIME_WAIT ends (2 MSL), then every block and buffer must be back
  for (const end = t + 1200; t < end; t += 10) {
    a.loop.turn(t);
    b.loop.turn(t);
  }
  for (const s of [a, b]) {
    s.blocks = s.S.stack.connectionCount();
    s.loop.stop();
    s.S.nic.close();
    s.counts = s.S.stack.pool.check();
    s.idle = s.S.idle;
  }
  a.ms = t;
  return { a, b };
}

test("TCP between two stacks through two faulted loops: 2 MiB each way byte-exact, nothing leaked", () => {
  const bytes = 2 << 20;
  const faults = (seed) => ({ rx: { ...FAULTS, seed }, tx: { ...FAULTS, seed: seed + 1 } });
  const { a, b } = tcpPair(bytes, faults(31), faults(41));
  assert.is(a.got, bytes, `A got ${a.got}; ${a.closed} ${b.closed} at ${a.ms} ms`);
  assert.is(b.got, bytes);
  assert.ok(a.ok && b.ok, "byte-exact");
  assert.is(a.closed, "CLOSED 0");
  assert.is(b.closed, "CLOSED 0");
  for (const s of [a, b])
    for (const d of ["rx", "tx"])
      for (const k of ["dropped", "duplicated", "reordered"]) assert.ok(s.faults[d][k] > 0, `${d} ${k}`);
  const corrupted = [a, b].reduce((n, s) => n + s.faults.rx.corrupted + s.faults.tx.corrupted, 0);
  assert.ok(corrupted > 0, "some frames were corrupted");
  for (const s of [a, b]) {
    assert.is(s.blocks, 0, "every connection block is free after TIME_WAIT");
    assert.equal(s.counts, s.idle, "no buffer leaked");
  }
});

test("TX corrupt flips a copy when the stack still holds the buffer (retransmit queue): 30% corrupted, byte-exact", () => {
  // If the injector flipped the bit in place, the retransmission of that segment would carry
  // the flipped bit under a freshly computed (valid) checksum, and B would get a wrong byte.
  const bytes = 512 << 10;
  const { a, b } = tcpPair(bytes, { tx: { corrupt: 0.3, seed: 7 } }, {});
  assert.is(b.got, bytes);
  assert.is(a.got, bytes);
  assert.ok(a.ok && b.ok, "byte-exact both ways");
  const f = a.faults.tx;
  assert.ok(f.corrupted > 100, `corrupted ${f.corrupted}`);
  assert.ok(f.copiedBytes > 100 * 1000, `corrupted data segments were copies: ${f.copiedBytes} bytes copied`);
  assert.is(f.duplicated, 0);
  for (const s of [a, b]) assert.equal(s.counts, s.idle, "no buffer leaked");
});

test("TX faults keep a TSO superframe's offload request; a corrupted superframe is lost, never sent with a flipped bit under NEEDS_CSUM", () => {
  // A sends with TSO (superframes of several MSS, NEEDS_CSUM + GSO TCPv4); B takes them whole
  // as a TAP with offloads would hand them over. Without the metadata B could not check them.
  const bytes = 4 << 20;
  const { a, b } = tcpPair(bytes, { tx: { ...FAULTS, corrupt: 0.02, seed: 17 } }, {}, { tso: true });
  assert.is(b.got, bytes);
  assert.is(a.got, bytes);
  assert.ok(a.ok && b.ok, "byte-exact both ways");
  const gso = a.wire.filter((m) => m.gsoSize > 0);
  assert.ok(gso.length > 50, `superframes on the wire: ${gso.length}`);
  assert.ok(
    gso.every((m) => m.flags & SF_NEEDS_CSUM && m.length > 1514),
    "each superframe went out with its offload request",
  );
  const f = a.faults.tx;
  for (const k of ["dropped", "duplicated", "reordered", "corrupted"])
    assert.ok(f[k] > 0, `${k}: ${JSON.stringify(f)}`);
  for (const s of [a, b]) assert.equal(s.counts, s.idle, "no buffer leaked");
});

test.run();

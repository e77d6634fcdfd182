// SACK sender side: scoreboard (RFC 2018) and scoreboard-driven loss recovery (RFC 6675).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createCore, Peer, handshake, appSend, CMD, TH, OWNER, checkCores } from "./lib/corehost.mjs";
import { TCP_INFO as INFO } from "../build/index.js";

const MSS = 1460;
function setup(opts = {}) {
  const core = createCore({ msl: 1000, sndbuf: 1 << 20, ...opts });
  core.poll(0);
  core.tx();
  const peer = new Peer(core);
  const h = handshake(core, peer, { opts: { mss: MSS, sackOk: true }, t: 0 });
  return { core, peer, h };
}
/** Sends n full segments from the core and returns them. */
function burst(core, peer, h, n) {
  for (let k = 0; k < n; k++) appSend(core, h.conn, new Uint8Array(MSS).fill(k + 1), { off: 200 });
  core.poll(core.now + 1);
  return peer.segs();
}
const ackWith = (peer, h, ack, sack) => peer.tcp({ seq: h.seq, ack, opts: { sack } });
function clean(core, conn) {
  core.cmd(CMD.ABORT, { conn });
  core.poll();
  core.tx();
  assert.is(core.check(), 0);
  assert.is(core.held(OWNER.STACK), 0);
  assert.is(core.held(OWNER.NIC), 0);
  assert.is(core.x.tcpNodesUsed(), 0);
}
const seqOf = (s, k) => (s[0].seq + k * MSS) >>> 0;

test("SACK blocks fill the scoreboard; the cumulative ACK prunes it", () => {
  const { core, peer, h } = setup();
  const s = burst(core, peer, h, 6);
  ackWith(peer, h, seqOf(s, 0), [
    [seqOf(s, 2), seqOf(s, 3)],
    [seqOf(s, 4), seqOf(s, 5)],
  ]);
  core.poll(2);
  assert.is(core.x.tcpInfo(h.conn, INFO.sackBlocks), 2);
  assert.is(core.x.tcpInfo(h.conn, INFO.sacked), 2 * MSS);
  ackWith(peer, h, seqOf(s, 3), [[seqOf(s, 4), seqOf(s, 5)]]);
  core.poll(3);
  assert.is(core.x.tcpInfo(h.conn, INFO.sackBlocks), 1);
  assert.is(core.x.tcpInfo(h.conn, INFO.sacked), MSS);
  clean(core, h.conn);
});

test("adjacent and overlapping SACK blocks merge", () => {
  const { core, peer, h } = setup();
  const s = burst(core, peer, h, 8);
  ackWith(peer, h, seqOf(s, 0), [[seqOf(s, 2), seqOf(s, 3)]]);
  ackWith(peer, h, seqOf(s, 0), [
    [seqOf(s, 3), seqOf(s, 5)],
    [seqOf(s, 6), seqOf(s, 7)],
  ]);
  ackWith(peer, h, seqOf(s, 0), [[seqOf(s, 4), seqOf(s, 7)]]);
  core.poll(2);
  assert.is(core.x.tcpInfo(h.conn, INFO.sackBlocks), 1);
  assert.is(core.x.tcpInfo(h.conn, INFO.sacked), 5 * MSS);
  clean(core, h.conn);
});

test("SACK blocks outside SND.UNA..SND.MAX or inverted are ignored", () => {
  const { core, peer, h } = setup();
  const s = burst(core, peer, h, 4);
  ackWith(peer, h, seqOf(s, 0), [
    [seqOf(s, 5), seqOf(s, 6)],
    [seqOf(s, 0) - 100, seqOf(s, 0)],
    [seqOf(s, 3), seqOf(s, 2)],
  ]);
  core.poll(2);
  assert.is(core.x.tcpInfo(h.conn, INFO.sackBlocks), 0);
  clean(core, h.conn);
});

test("more SACKed than 2 MSS above SND.UNA starts recovery at the first duplicate ACK", () => {
  const { core, peer, h } = setup();
  const s = burst(core, peer, h, 8);
  ackWith(peer, h, seqOf(s, 0), [[seqOf(s, 1), seqOf(s, 4)]]);
  core.poll(2);
  const r = peer.segs();
  assert.is(r[0].seq, seqOf(s, 0), "the hole is retransmitted at once");
  assert.is(core.stat("TCP_FAST_RTX"), 1);
  assert.is(core.stat("TCP_SACK_RTX"), 1);
  assert.is(core.x.tcpInfo(h.conn, INFO.flags) & 0x8000, 0x8000, "in recovery");
  clean(core, h.conn);
});

test("several holes are repaired in one round trip, never the SACKed data", () => {
  const { core, peer, h } = setup();
  const s = burst(core, peer, h, 10);
  // segments 0 and 3 lost: the receiver SACKs 1-2 and 4-9
  ackWith(peer, h, seqOf(s, 0), [
    [seqOf(s, 4), seqOf(s, 10)],
    [seqOf(s, 1), seqOf(s, 3)],
  ]);
  core.poll(2);
  const r = peer.segs().filter((x) => x.payload.length > 0);
  const seqs = r.map((x) => x.seq);
  assert.ok(seqs.includes(seqOf(s, 0)) && seqs.includes(seqOf(s, 3)), "both holes");
  for (const q of seqs) {
    const k = ((q - s[0].seq) >>> 0) / MSS;
    assert.ok(k === 0 || k === 3 || k >= 10, `segment ${k} was SACKed and must not be resent`);
  }
  // all repaired: the full ACK ends recovery with cwnd = ssthresh
  ackWith(peer, h, seqOf(s, 10), []);
  core.poll(3);
  assert.is(core.x.tcpInfo(h.conn, INFO.flags) & 0x8000, 0);
  assert.is(core.x.tcpInfo(h.conn, INFO.cwnd), core.x.tcpInfo(h.conn, INFO.ssthresh));
  clean(core, h.conn);
});

test("after a retransmission timeout, SACKed ranges are skipped", () => {
  const { core, peer, h } = setup({ initRto: 1000, minRto: 1000 });
  const s = burst(core, peer, h, 4);
  // SACK segment 2 only (not enough to trigger recovery), then let the RTO fire
  ackWith(peer, h, seqOf(s, 0), [[seqOf(s, 2), seqOf(s, 3)]]);
  core.poll(2);
  peer.segs();
  core.poll(1001);
  const r1 = peer.segs();
  assert.is(r1.length, 1);
  assert.is(r1[0].seq, seqOf(s, 0));
  ackWith(peer, h, seqOf(s, 1), [[seqOf(s, 2), seqOf(s, 3)]]);
  core.poll(1010);
  const r2 = peer.segs().map((x) => x.seq);
  assert.ok(r2.includes(seqOf(s, 1)));
  assert.ok(!r2.includes(seqOf(s, 2)), "SACKed segment skipped");
  assert.ok(r2.includes(seqOf(s, 3)));
  clean(core, h.conn);
});

test("without SACK the same loss waits for three duplicate ACKs", () => {
  const core = createCore({ msl: 1000, sndbuf: 1 << 20 });
  core.poll(0);
  core.tx();
  const peer = new Peer(core);
  const h = handshake(core, peer, { opts: { mss: MSS }, t: 0 });
  const s = burst(core, peer, h, 8);
  for (let k = 0; k < 2; k++) ackWith(peer, h, seqOf(s, 0), [[seqOf(s, 1), seqOf(s, 4)]]);
  core.poll(2);
  assert.is(peer.segs().length, 0, "two duplicates are not enough");
  ackWith(peer, h, seqOf(s, 0), []);
  core.poll(3);
  assert.is(peer.segs()[0].seq, seqOf(s, 0));
  clean(core, h.conn);
});

// after every test: the pool invariant holds in every core the test created
test.after.each(() => {
  for (const r of checkCores()) assert.equal(r, { check: 0, detail: 0 }, "pool invariant after the test");
});

test.run();

// TCP data transfer: zero-copy delivery, reassembly, ACK policy, windows, Nagle, options,
// retransmission, congestion control, persist and keepalive timers.
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  createCore,
  Peer,
  handshake,
  appSend,
  tcpSeg,
  csum,
  RXF_NEEDS_CSUM,
  CMD,
  EV,
  TH,
  ST,
  OWNER,
  OPT,
  TF,
  PEER_IP,
  ip,
  text,
  str,
  checkCores,
} from "./lib/corehost.mjs";
import { TCP_INFO as INFO, TCP_REASONS as R } from "../build/index.js";

function setup(opts = {}) {
  const core = createCore({ msl: 1000, ...opts });
  core.poll(0);
  core.tx();
  const peer = new Peer(core);
  return { core, peer };
}
function clean(core) {
  core.tx();
  assert.is(core.check(), 0, "pool invariant");
  assert.is(core.held(OWNER.NIC), 0, "NIC leak");
  assert.is(core.held(OWNER.STACK), 0, "STACK leak");
  assert.is(core.held(OWNER.APP), 0, "APP leak");
  assert.is(core.x.tcpNodesUsed(), 0, "node leak");
}
function abort(core, conn) {
  core.cmd(CMD.ABORT, { conn });
  core.poll();
  core.tx();
  core.takeEvents();
}
const data = (ev) =>
  ev
    .filter((e) => e.name === "DATA")
    .map((e) => str(e.data))
    .join("");
const bytes = (n, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);

test("in-order data is delivered by reference where it landed", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  core.keepBuffers = true;
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "zero copy", flags: TH.ACK | TH.PSH });
  core.poll(1);
  const [ev] = core.takeEvents();
  assert.is(ev.name, "DATA");
  assert.is(ev.off, 64 + 14 + 20 + 20, "named in the received buffer after the headers");
  assert.is(ev.owner, OWNER.APP);
  assert.is(core.x.bufRefCount(ev.buf), 1);
  core.x.bufUnref(ev.buf);
  abort(core, h.conn);
  clean(core);
});

test("a single segment is ACKed after the delayed-ACK timeout", () => {
  const { core, peer } = setup({ delack: 40 });
  const h = handshake(core, peer, { t: 100 });
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "one" });
  const dl = core.poll(100);
  assert.is(peer.segs().length, 0);
  assert.is(dl, 140);
  core.poll(139);
  assert.is(peer.segs().length, 0);
  core.poll(140);
  const [a] = peer.segs();
  assert.is(a.ack, h.seq + 3);
});

test("every second segment is ACKed at once", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "aaaa" });
  core.poll(1);
  peer.tcp({ seq: h.seq + 4, ack: h.snd, payload: "bbbb" });
  core.poll(2);
  const [a] = peer.segs();
  assert.is(a.ack, h.seq + 8);
});

test("segments arriving in one batch are acknowledged by one ACK", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  for (let k = 0; k < 6; k++) peer.tcp({ seq: h.seq + k * 100, ack: h.snd, payload: bytes(100) });
  core.poll(1);
  const acks = peer.segs();
  assert.is(acks.length, 1);
  assert.is(acks[0].ack, h.seq + 600);
});

test("out-of-order data is held by reference, dup-ACKed with SACK, delivered when the hole fills", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { opts: { mss: 1460, sackOk: true } });
  peer.tcp({ seq: h.seq + 5, ack: h.snd, payload: "world" });
  core.poll(1);
  const [d] = peer.segs();
  assert.is(d.ack, h.seq, "duplicate ACK");
  assert.equal(d.opts.sack, [[h.seq + 5, h.seq + 10]]);
  assert.is(core.takeEvents().length, 0);
  assert.is(core.held(OWNER.STACK), 1, "held in reassembly");
  assert.is(core.stat("TCP_OOO"), 1);
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "hello" });
  core.poll(2);
  assert.is(data(core.takeEvents()), "helloworld");
  const [a] = peer.segs();
  assert.is(a.ack, h.seq + 10);
  assert.is(a.opts.sack, undefined);
  abort(core, h.conn);
  clean(core);
});

test("SACK reports several blocks, most recent first", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { opts: { mss: 1460, sackOk: true } });
  peer.tcp({ seq: h.seq + 10, ack: h.snd, payload: "bb" });
  core.poll(1);
  peer.tcp({ seq: h.seq + 20, ack: h.snd, payload: "cc" });
  core.poll(2);
  peer.segs();
  peer.tcp({ seq: h.seq + 30, ack: h.snd, payload: "dd" });
  core.poll(3);
  const [d] = peer.segs();
  assert.equal(d.opts.sack, [
    [h.seq + 30, h.seq + 32],
    [h.seq + 10, h.seq + 12],
    [h.seq + 20, h.seq + 22],
  ]);
  abort(core, h.conn);
  clean(core);
});

test("no SACK blocks when SACK was not negotiated", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { opts: { mss: 1460 } });
  peer.tcp({ seq: h.seq + 10, ack: h.snd, payload: "bb" });
  core.poll(1);
  const [d] = peer.segs();
  assert.is(d.opts.sack, undefined);
  abort(core, h.conn);
  clean(core);
});

test("overlapping and duplicate segments are delivered once", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq + 4, ack: h.snd, payload: "efgh" });
  peer.tcp({ seq: h.seq + 2, ack: h.snd, payload: "cdefghij" });
  peer.tcp({ seq: h.seq + 6, ack: h.snd, payload: "gh" });
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "abcd" });
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "abcdefghijkl" });
  core.poll(1);
  assert.is(data(core.takeEvents()), "abcdefghijkl");
  abort(core, h.conn);
  clean(core);
});

test("a segment starting before RCV.NXT is trimmed", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "abc" });
  peer.tcp({ seq: h.seq + 1, ack: h.snd, payload: "bcdef" });
  core.poll(1);
  assert.is(data(core.takeEvents()), "abcdef");
});

test("a fully duplicate segment is ACKed at once and counted", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "abc" });
  core.poll(1);
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "abc" });
  core.poll(2);
  const s = peer.segs();
  assert.is(s[s.length - 1].ack, h.seq + 3);
  assert.ok(core.stat("TCP_DUP") >= 1);
  assert.is(data(core.takeEvents()), "abc");
});

test("data beyond the advertised window is trimmed", () => {
  const { core, peer } = setup({ rcvbuf: 1000 });
  const h = handshake(core, peer);
  assert.is(h.synack.win, 1000);
  core.autoRecvd = false;
  peer.tcp({ seq: h.seq, ack: h.snd, payload: bytes(1200) });
  core.poll(1);
  const ev = core.takeEvents();
  assert.is(
    ev.reduce((a, e) => a + e.len, 0),
    1000,
  );
  const [a] = peer.segs();
  assert.is(a.ack, h.seq + 1000);
  assert.is(a.win, 0, "window closed until the app consumes");
});

test("zero receive window: segments refused, window update after the app consumes", () => {
  const { core, peer } = setup({ rcvbuf: 4000 });
  const h = handshake(core, peer);
  core.autoRecvd = false;
  peer.tcp({ seq: h.seq, ack: h.snd, payload: bytes(4000) });
  core.poll(1);
  const [a] = peer.segs();
  assert.is(a.win, 0);
  peer.tcp({ seq: h.seq + 4000, ack: h.snd, payload: "x" });
  core.poll(2);
  const [b] = peer.segs();
  assert.is(b.ack, h.seq + 4000, "probe byte not accepted");
  assert.is(b.win, 0);
  const evs = core.takeEvents();
  assert.is(
    evs.reduce((a, e) => a + e.len, 0),
    4000,
    "exactly the window was delivered (in 3 pieces of a chained frame)",
  );
  core.cmd(CMD.RECVD, { conn: h.conn, buf: 4000 });
  core.poll(3);
  const [u] = peer.segs();
  assert.is(u.win, 4000, "window update");
  assert.is(u.ack, h.seq + 4000);
});

test("small window increases are not advertised (receiver SWS avoidance)", () => {
  const { core, peer } = setup({ rcvbuf: 10000 });
  const h = handshake(core, peer);
  core.autoRecvd = false;
  peer.tcp({ seq: h.seq, ack: h.snd, payload: bytes(1460) });
  peer.tcp({ seq: h.seq + 1460, ack: h.snd, payload: bytes(1460) });
  core.poll(1);
  const [a] = peer.segs();
  assert.is(a.win, 10000 - 2920);
  core.cmd(CMD.RECVD, { conn: h.conn, buf: 100 });
  peer.tcp({ seq: h.seq + 2920, ack: h.snd, payload: bytes(10) });
  peer.tcp({ seq: h.seq + 2930, ack: h.snd, payload: bytes(10) });
  core.poll(2);
  const [b] = peer.segs();
  assert.is(b.win, 10000 - 2940, "right edge did not move for 100 bytes");
});

test("bad TCP checksum, bad data offset and illegal flag mixes are dropped", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "bad", badCsum: true });
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "bad", doff: 16 });
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "bad", doff: 60 });
  peer.tcp({ seq: h.seq, ack: h.snd, flags: TH.SYN | TH.FIN });
  peer.tcp({ seq: h.seq, ack: h.snd, flags: TH.SYN | TH.RST });
  peer.tcp({ seq: h.seq, ack: h.snd, sport: 0 });
  core.poll(1);
  assert.is(core.stat("TCP_BAD_CSUM"), 1);
  assert.is(core.stat("TCP_BAD_HDR"), 2);
  assert.is(core.stat("TCP_BAD_SEG"), 3);
  assert.is(core.takeEvents().length, 0);
  assert.is(core.x.tcpState(h.conn), ST.ESTABLISHED);
  abort(core, h.conn);
  clean(core);
});

test("malformed options end parsing without harm", () => {
  const { core, peer } = setup();
  core.cmd(CMD.LISTEN, { off: 80, len: 8 });
  core.poll(0);
  peer.tcp({ seq: 1, flags: TH.SYN, opts: Uint8Array.from([2, 4, 5, 0xb4, 8, 0, 1, 1, 3, 9, 0, 0]) });
  peer.tcp({ seq: 1, flags: TH.SYN, sport: 2, opts: Uint8Array.from([3, 3, 99, 0]) });
  peer.tcp({ seq: 1, flags: TH.SYN, sport: 3, opts: Uint8Array.from([2, 4, 0, 1]) });
  core.poll(1);
  const s = peer.segs();
  assert.is(s.length, 3);
  assert.is(s[1].opts.ws, 3, "shift over 14 is clamped, we still answer");
  core.takeEvents();
});

test("a segment chained over several buffers is delivered piece by piece", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const p = bytes(1400);
  peer.tcp({ seq: h.seq, ack: h.snd, payload: p, inject: { split: 512 } });
  core.poll(1);
  const ev = core.takeEvents().filter((e) => e.name === "DATA");
  assert.is(ev.length, 3);
  const all = Uint8Array.from(ev.flatMap((e) => [...e.data]));
  assert.equal([...all], [...p]);
  abort(core, h.conn);
  clean(core);
});

test("urgent data is delivered in line; the pointer is ignored", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "urgent!", flags: TH.ACK | TH.URG, urp: 3 });
  peer.tcp({ seq: h.seq + 7, ack: h.snd, payload: "x", flags: TH.ACK | TH.URG, urp: 60000 });
  core.poll(1);
  assert.is(data(core.takeEvents()), "urgent!x");
});

test("sent data uses the buffer headroom for headers: one slot per segment", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const b = appSend(core, h.conn, "reply body");
  core.poll(1);
  const f = core.tx();
  assert.is(f.length, 1);
  assert.is(f[0].slots, 1);
  assert.is(core.x.bufOwner(b.buf), OWNER.STACK, "held for retransmission");
  assert.is(core.x.bufRefCount(b.buf), 1, "NIC reference released by the host");
  peer.tcp({ seq: h.seq, ack: h.snd + 10 });
  core.poll(2);
  assert.is(core.x.bufOwner(b.buf), OWNER.FREE, "freed once ACKed and sent");
  clean(core);
});

test("ACK before the NIC has sent: the buffer waits for the NIC (two-level release)", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const b = appSend(core, h.conn, "race");
  core.poll(1);
  assert.is(core.x.bufRefCount(b.buf), 2, "TCP and NIC");
  peer.tcp({ seq: h.seq, ack: h.snd + 4 });
  core.poll(2);
  assert.is(core.x.bufRefCount(b.buf), 1, "only the NIC left");
  const f = core.tx();
  assert.is(f.length, 1);
  assert.is(core.x.bufOwner(b.buf), OWNER.FREE);
  clean(core);
});

test("kept buffers are sent behind a header buffer and never written", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const b = appSend(core, h.conn, "persisted record", { owner: OWNER.KEPT });
  const before = core.u8.slice(core.bufAddr(b.buf), core.bufAddr(b.buf) + 2048);
  core.poll(1);
  const [f] = core.tx();
  assert.is(f.slots, 2);
  peer.tcp({ seq: h.seq, ack: h.snd + 16 });
  core.poll(2);
  assert.is(core.x.bufOwner(b.buf), OWNER.KEPT);
  assert.is(core.x.bufRefCount(b.buf), 1);
  assert.equal([...core.u8.slice(core.bufAddr(b.buf), core.bufAddr(b.buf) + 2048)], [...before]);
  core.x.bufUnref(b.buf);
  clean(core);
});

test("a retransmission while the NIC still holds the first copy uses a header buffer", () => {
  const { core, peer } = setup({ initRto: 100, minRto: 100 });
  const h = handshake(core, peer);
  const b = appSend(core, h.conn, "twice");
  core.poll(1);
  const addr = core.bufAddr(b.buf) + b.off - 54;
  const hdr1 = core.u8.slice(addr, addr + 54);
  core.poll(1000);
  assert.equal([...core.u8.slice(addr, addr + 54)], [...hdr1], "first copy untouched");
  const f = core.tx();
  assert.equal(
    f.map((x) => x.slots),
    [1, 2],
  );
  abort(core, h.conn);
  clean(core);
});

test("a large send is cut into MSS segments with PSH on the last", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const p = bytes(1900);
  appSend(core, h.conn, p, { off: 100 });
  core.poll(1);
  const s = peer.segs();
  assert.equal(
    s.map((x) => x.payload.length),
    [1460, 440],
  );
  assert.equal(
    s.map((x) => x.flags),
    [TH.ACK, TH.ACK | TH.PSH],
  );
  assert.equal([...s[0].payload, ...s[1].payload], [...p]);
  assert.is(s[1].seq, s[0].seq + 1460);
  abort(core, h.conn);
  clean(core);
});

test("small sends are coalesced into one segment across buffers", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  appSend(core, h.conn, "first ");
  core.poll(1);
  peer.segs();
  appSend(core, h.conn, "second ");
  appSend(core, h.conn, "third");
  core.poll(2);
  assert.is(peer.segs().length, 0, "Nagle: data in flight");
  peer.tcp({ seq: h.seq, ack: h.snd + 6 });
  core.poll(3);
  const [s] = peer.segs();
  assert.is(str(s.payload), "second third");
  abort(core, h.conn);
  clean(core);
});

test("NODELAY sends small segments at once", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  core.cmd(CMD.SETOPT, { conn: h.conn, off: OPT.NODELAY, buf: 1 });
  appSend(core, h.conn, "a");
  core.poll(1);
  appSend(core, h.conn, "b");
  core.poll(2);
  assert.equal(
    peer.segs().map((s) => str(s.payload)),
    ["a", "b"],
  );
});

test("the peer window limits what is sent", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { win: 1000 });
  core.cmd(CMD.SETOPT, { conn: h.conn, off: OPT.NODELAY, buf: 1 });
  appSend(core, h.conn, bytes(1500), { off: 200 });
  core.poll(1);
  const s = peer.segs();
  assert.is(
    s.reduce((a, x) => a + x.payload.length, 0),
    1000,
  );
  peer.tcp({ seq: h.seq, ack: h.snd + 1000, win: 1000 });
  core.poll(2);
  assert.is(peer.segs()[0].payload.length, 500);
});

test("initial congestion window is 10 segments (RFC 6928) and grows in slow start", () => {
  const { core, peer } = setup({ sndbuf: 1 << 20 });
  const h = handshake(core, peer);
  for (let k = 0; k < 30; k++) appSend(core, h.conn, bytes(1460), { off: 200 });
  core.poll(1);
  const s = peer.segs();
  assert.is(s.length, 10);
  peer.tcp({ seq: h.seq, ack: s[1].seq + 1460 });
  core.poll(2);
  assert.is(peer.segs().length, 4, "two acked segments open four (RFC 3465 L=2)");
  abort(core, h.conn);
  clean(core);
});

test("send queue limit refuses sends and reports WRITABLE once drained", () => {
  const { core, peer } = setup({ sndbuf: 3000 });
  const h = handshake(core, peer);
  appSend(core, h.conn, bytes(1460), { off: 200 });
  appSend(core, h.conn, bytes(1460), { off: 200 });
  appSend(core, h.conn, bytes(1460), { off: 200 });
  core.poll(1);
  const refused = core.takeEvents().filter((e) => e.name === "SEND_REFUSED");
  assert.is(refused.length, 1);
  const s = peer.segs();
  peer.tcp({ seq: h.seq, ack: s[1].seq + 1460 });
  core.poll(2);
  assert.ok(core.takeEvents().find((e) => e.name === "WRITABLE"));
  clean(core);
});

test("window scaling: the peer window is scaled by its shift, ours by our shift", () => {
  const { core, peer } = setup({ rcvbuf: 1 << 20 });
  const h = handshake(core, peer, { opts: { mss: 1460, ws: 4 }, win: 100 });
  assert.is(h.synack.opts.ws, 5, "1 MiB needs shift 5");
  assert.is(core.x.tcpInfo(h.conn, INFO.sndWnd), 1600, "peer window 100 << 4");
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "x", win: 100 });
  peer.tcp({ seq: h.seq + 1, ack: h.snd, payload: "y", win: 100 });
  core.poll(1);
  const [a] = peer.segs();
  assert.is(a.win, Math.floor(((1 << 20) - 2) / 32), "window field is scaled (2 bytes unread)");
});

test("no window scaling unless both SYNs carry the option", () => {
  const { core, peer } = setup({ rcvbuf: 1 << 20 });
  const h = handshake(core, peer, { opts: { mss: 1460 } });
  assert.is(h.synack.opts.ws, undefined);
  assert.is(h.synack.win, 65535);
  assert.is(core.x.tcpInfo(h.conn, INFO.rcvWs), 0);
});

test("timestamps: every segment carries TSval and echoes TS.Recent", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { opts: { mss: 1460, ts: [100, 0] }, t: 50 });
  assert.is(core.x.tcpInfo(h.conn, INFO.mss), 1448, "MSS minus 12 bytes of timestamp");
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "ts", opts: { ts: [200, h.synack.opts.ts[0]] } });
  peer.tcp({ seq: h.seq + 2, ack: h.snd, payload: "ts", opts: { ts: [201, h.synack.opts.ts[0]] } });
  core.poll(60);
  const [a] = peer.segs();
  assert.is(a.opts.ts[1], 201);
  assert.is((a.opts.ts[0] - h.synack.opts.ts[0]) >>> 0, 10, "ms clock");
});

test("PAWS drops a segment with an old timestamp and ACKs", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { opts: { mss: 1460, ts: [1000, 0] } });
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "new", opts: { ts: [2000, 0] } });
  core.poll(1);
  peer.tcp({ seq: h.seq + 3, ack: h.snd, payload: "old", opts: { ts: [1500, 0] } });
  core.poll(2);
  assert.is(data(core.takeEvents()), "new");
  assert.is(core.stat("TCP_PAWS_DROP"), 1);
  const s = peer.segs();
  assert.is(s[s.length - 1].ack, h.seq + 3);
});

test("RTT from timestamp echoes sets SRTT and RTO (RFC 6298)", () => {
  const { core, peer } = setup({ minRto: 200 });
  const h = handshake(core, peer, { opts: { mss: 1460, ts: [1, 0] }, t: 0 });
  appSend(core, h.conn, "ping");
  core.poll(1000);
  const [s] = peer.segs();
  // the handshake gave a first sample of 0 ms (SRTT floored at 0.5, RTTVAR 0)
  assert.is(core.x.tcpInfo(h.conn, INFO.srtt), 0.5);
  peer.tcp({ seq: h.seq, ack: h.snd + 4, opts: { ts: [2, s.opts.ts[0]] } });
  core.poll(1080);
  const rttvar = 0.25 * Math.abs(0.5 - 80);
  const srtt = 0.875 * 0.5 + 0.125 * 80;
  assert.is(core.x.tcpInfo(h.conn, INFO.srtt), srtt, "SRTT = 7/8 SRTT + 1/8 R");
  assert.is(core.x.tcpInfo(h.conn, INFO.rto), Math.max(200, srtt + 4 * rttvar), "RTO = SRTT + 4 RTTVAR, floored");
  peer.tcp({ seq: h.seq, ack: h.snd + 4, opts: { ts: [3, s.opts.ts[0]] } });
  core.poll(1100);
  assert.is(core.x.tcpInfo(h.conn, INFO.srtt), srtt, "no sample from an ACK that acknowledges nothing new");
});

test("RTT without timestamps is timed on one segment (Karn: never a retransmitted one)", () => {
  const { core, peer } = setup({ minRto: 200, initRto: 1000 });
  const h = handshake(core, peer, { t: 0 });
  appSend(core, h.conn, "a");
  core.poll(0);
  peer.segs();
  core.poll(1000); // RTO: retransmission
  assert.is(peer.segs().length, 1);
  peer.tcp({ seq: h.seq, ack: h.snd + 1 });
  core.poll(1010);
  assert.is(core.x.tcpInfo(h.conn, INFO.srtt), 0.5, "only the handshake sample: none from the ambiguous ACK");
  assert.is(core.x.tcpInfo(h.conn, INFO.backoff), 1, "backoff kept until a valid sample");
  appSend(core, h.conn, "b");
  core.poll(1020);
  peer.segs();
  peer.tcp({ seq: h.seq, ack: h.snd + 2 });
  core.poll(1050);
  assert.is(core.x.tcpInfo(h.conn, INFO.srtt), 0.875 * 0.5 + 0.125 * 30);
  assert.is(core.x.tcpInfo(h.conn, INFO.backoff), 0);
});

test("RTO retransmits with exponential backoff", () => {
  const { core, peer } = setup({ initRto: 1000, minRto: 1000 });
  const h = handshake(core, peer, { t: 0 });
  appSend(core, h.conn, "lost");
  core.poll(0);
  peer.segs();
  const times = [];
  for (let t = 0; t <= 16000; t += 50) {
    core.poll(t);
    if (peer.segs().length) times.push(t);
  }
  assert.equal(times, [1000, 3000, 7000, 15000]);
  assert.is(core.stat("TCP_RTO"), 4);
});

test("after RTO the window collapses to one segment and data goes back to SND.UNA", () => {
  const { core, peer } = setup({ initRto: 1000 });
  const h = handshake(core, peer, { t: 0 });
  for (let k = 0; k < 4; k++) appSend(core, h.conn, bytes(1460), { off: 200 });
  core.poll(0);
  assert.is(peer.segs().length, 4);
  core.poll(1000);
  const s = peer.segs();
  assert.is(s.length, 1);
  assert.is(s[0].seq, h.snd);
  assert.is(core.x.tcpInfo(h.conn, INFO.cwnd), 1460, "cwnd = 1 MSS");
  assert.is(core.x.tcpInfo(h.conn, INFO.ssthresh), 2920, "ssthresh = flight / 2");
});

test("after a go-back to SND.UNA a bare ACK carries SND.MAX: in the window of a peer that received more than we know", () => {
  const { core, peer } = setup({ initRto: 1000 });
  const h = handshake(core, peer, { t: 0 });
  for (let k = 0; k < 4; k++) appSend(core, h.conn, bytes(1460), { off: 200 });
  core.poll(0);
  const sent = peer.segs();
  const sndMax = sent[3].seq + 1460;
  core.poll(1000); // RTO: SND.NXT back to SND.UNA, the first segment again
  assert.is(peer.segs()[0].seq, h.snd);
  // the peer's data, acknowledging nothing (its ACKs of our data were lost): we acknowledge it
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "from the peer" });
  core.poll(1000);
  core.poll(1200); // past the delayed ACK
  const acks = peer.segs().filter((x) => x.payload.length === 0);
  assert.is(acks.length, 1);
  assert.is(acks[0].seq, sndMax, "at SND.MAX (the peer has RCV.NXT there), not at the rewound SND.NXT");
  assert.is(acks[0].ack, h.seq + 13);
  core.takeEvents();
  // the peer acknowledges everything: taken, nothing left in flight
  peer.tcp({ seq: h.seq + 13, ack: sndMax });
  core.poll(1201);
  assert.is(core.x.tcpInfo(h.conn, INFO.inFlight), 0);
  abort(core, h.conn);
  clean(core);
});

test("retransmission limit resets the connection", () => {
  const { core, peer } = setup({ initRto: 200, minRto: 200 });
  const h = handshake(core, peer, { t: 0 });
  appSend(core, h.conn, "void");
  core.poll(0);
  for (let t = 0; t < 2e6 && core.x.tcpConnCount(); t += 1000) core.poll(t);
  const ev = core.takeEvents().find((e) => e.name === "RESET");
  assert.ok(ev);
  assert.is(ev.aux, R.TIMEOUT);
  const s = peer.segs();
  assert.is(s[s.length - 1].flags, TH.RST);
  clean(core);
});

test("three duplicate ACKs trigger fast retransmit (NewReno)", () => {
  const { core, peer } = setup({ sndbuf: 1 << 20 });
  const h = handshake(core, peer, { t: 0 });
  for (let k = 0; k < 8; k++) appSend(core, h.conn, bytes(1460), { off: 200 });
  core.poll(1);
  const s = peer.segs();
  assert.is(s.length, 8);
  for (let k = 0; k < 4; k++) peer.tcp({ seq: h.seq, ack: s[1].seq }); // one new ACK, three duplicates
  core.poll(2);
  const r = peer.segs();
  assert.is(r[0].seq, s[1].seq, "the lost segment again");
  assert.is(core.stat("TCP_FAST_RTX"), 1);
  assert.is(core.x.tcpInfo(h.conn, INFO.ssthresh), Math.floor((7 * 1460) / 2), "ssthresh = flight/2");
  assert.is(core.x.tcpInfo(h.conn, INFO.flags) & 0x8000, 0x8000, "in recovery");
  // partial ACK: retransmit the next hole
  peer.tcp({ seq: h.seq, ack: s[3].seq });
  core.poll(3);
  const p = peer.segs();
  assert.is(p[0].seq, s[3].seq);
  // full ACK ends recovery
  peer.tcp({ seq: h.seq, ack: s[7].seq + 1460 });
  core.poll(4);
  assert.is(core.x.tcpInfo(h.conn, INFO.flags) & 0x8000, 0, "out of recovery");
  assert.is(core.x.tcpInfo(h.conn, INFO.cwnd), core.x.tcpInfo(h.conn, INFO.ssthresh), "cwnd = ssthresh");
  abort(core, h.conn);
  clean(core);
});

test("CUBIC reduces the window by beta = 0.7 on loss, NewReno by half", () => {
  const run = (cubic) => {
    const { core, peer } = setup({ sndbuf: 1 << 20 });
    const h = handshake(core, peer, { t: 0 });
    core.cmd(CMD.SETOPT, { conn: h.conn, off: OPT.CC, buf: cubic ? 1 : 0 });
    for (let k = 0; k < 10; k++) appSend(core, h.conn, bytes(1460), { off: 200 });
    core.poll(1);
    const s = peer.segs();
    for (let k = 0; k < 3; k++) peer.tcp({ seq: h.seq, ack: s[0].seq });
    core.poll(2);
    return core.x.tcpInfo(h.conn, INFO.ssthresh);
  };
  assert.is(run(true), Math.floor(14600 * 0.7));
  assert.is(run(false), 7300);
});

test("CUBIC grows toward W_max along the cubic curve after a loss", () => {
  const { core, peer } = setup({ sndbuf: 4 << 20, flags: TF.CUBIC });
  const h = handshake(core, peer, { t: 0 });
  for (let k = 0; k < 600; k++) appSend(core, h.conn, bytes(1460), { off: 200 });
  let t = 1,
    una = h.snd;
  core.poll(t);
  // ack everything for a while (slow start), then a loss, then steady ACKs each 10 ms
  const cw = [];
  for (let r = 0; r < 40; r++) {
    const s = peer.segs();
    if (!s.length) break;
    const last = s[s.length - 1];
    if (r === 3) {
      for (let k = 0; k < 3; k++) peer.tcp({ seq: h.seq, ack: una });
      core.poll((t += 1));
      peer.segs();
    }
    una = (last.seq + last.payload.length) >>> 0;
    peer.tcp({ seq: h.seq, ack: una, win: 65535 });
    core.poll((t += 10));
    cw.push(core.x.tcpInfo(h.conn, INFO.cwnd));
  }
  const after = cw.slice(5);
  assert.ok(after.length > 5);
  for (let k = 1; k < after.length; k++) assert.ok(after[k] >= after[k - 1], "monotone growth");
});

test("zero window: persist probes with backoff, data resumes when the window opens", () => {
  const { core, peer } = setup({ initRto: 1000, minRto: 1000 });
  const h = handshake(core, peer, { t: 0, win: 0 });
  core.cmd(CMD.SETOPT, { conn: h.conn, off: OPT.NODELAY, buf: 1 });
  appSend(core, h.conn, "waiting");
  core.poll(0);
  assert.is(peer.segs().length, 0);
  const probes = [];
  for (let t = 0; t <= 8000; t += 100) {
    core.poll(t);
    for (const s of peer.segs()) {
      probes.push(t);
      assert.is(s.payload.length, 1);
      peer.tcp({ seq: h.seq, ack: h.snd, win: 0 });
    }
  }
  assert.equal(probes, [1000, 3000, 7000]);
  assert.ok(core.stat("TCP_ZWP") >= 1);
  peer.tcp({ seq: h.seq, ack: h.snd, win: 65535 });
  core.poll(8100);
  const s = peer.segs();
  assert.is(s.map((x) => str(x.payload)).join(""), "waiting", "the refused probe byte goes again with the rest");
  assert.is(s[0].seq, h.snd);
  assert.is(core.x.tcpState(h.conn), ST.ESTABLISHED, "probing never gives up while the peer answers");
});

test("a bare ACK sent while a zero-window probe is out carries the window's edge, where the peer takes it (not SND.MAX, one past)", () => {
  const { core, peer } = setup({ initRto: 1000, minRto: 1000 });
  const h = handshake(core, peer, { t: 0, win: 0 });
  core.cmd(CMD.SETOPT, { conn: h.conn, off: OPT.NODELAY, buf: 1 });
  appSend(core, h.conn, "waiting");
  core.poll(0);
  core.poll(1000); // the persist timer: a one-byte probe, SND.MAX = SND.UNA + 1
  const probe = peer.segs();
  assert.is(probe.length, 1);
  assert.is(probe[0].payload.length, 1);
  // the peer, its window still closed, sends data that waits for our ACK
  peer.tcp({ seq: h.seq, ack: h.snd, win: 0, payload: "data for you" });
  core.poll(1001);
  core.poll(1300); // past the delayed ACK
  const acks = peer.segs().filter((x) => x.payload.length === 0);
  assert.ok(acks.length >= 1, "the data is acknowledged");
  for (const a of acks) {
    assert.is(a.seq, h.snd, "at SND.UNA + SND.WND = RCV.NXT of a peer whose window is zero: acceptable there");
    assert.is(a.ack, h.seq + 12);
  }
  abort(core, h.conn);
  clean(core);
});

test("sender SWS avoidance: a window below one segment, nothing in flight, is filled only by the persist timer; full segments once it opens", () => {
  const { core, peer } = setup({ initRto: 1000, minRto: 1000 });
  const h = handshake(core, peer, { t: 0, win: 65535 });
  peer.tcp({ seq: h.seq, ack: h.snd, win: 500 }); // the peer's buffer fills: 500 bytes left
  core.poll(1);
  const data = bytes(3000, 5);
  appSend(core, h.conn, data.subarray(0, 1500));
  appSend(core, h.conn, data.subarray(1500));
  core.poll(2);
  assert.is(
    peer.segs().length,
    0,
    "no 500-byte segment: more is queued and 500 < MSS, < half the peer's largest window",
  );
  core.poll(1001);
  assert.is(peer.segs().length, 0);
  core.poll(1002);
  const [p] = peer.segs();
  assert.ok(p, "the persist timer sends what fits");
  assert.is(p.seq, h.snd);
  assert.equal(Array.from(p.payload), Array.from(data.subarray(0, 500)), "one window-sized segment");
  peer.tcp({ seq: h.seq, ack: (h.snd + 500) >>> 0, win: 65535 });
  core.poll(1003);
  const rest = peer.segs();
  assert.equal(
    rest.map((x) => x.payload.length),
    [1460, 1040],
    "the window open: a full segment, then the end of the queue",
  );
  assert.is(rest[0].seq, (h.snd + 500) >>> 0);
});

test("keepalive probes an idle connection and resets it when unanswered", () => {
  const { core, peer } = setup({ keepalive: 10000 });
  const h = handshake(core, peer, { t: 0 });
  core.poll(9999);
  assert.is(peer.segs().length, 0);
  core.poll(10000);
  const [k] = peer.segs();
  assert.is(k.seq, h.snd - 1, "probe one byte below SND.UNA");
  assert.is(k.payload.length, 0);
  peer.tcp({ seq: h.seq, ack: h.snd });
  core.poll(10001);
  core.poll(19999);
  assert.is(peer.segs().length, 0, "answer restarted the idle timer");
  let t = 20000;
  for (; t < 200000 && core.x.tcpConnCount(); t += 1000) core.poll(t);
  const ev = core.takeEvents().find((e) => e.name === "RESET");
  assert.ok(ev);
  assert.is(ev.aux, R.KEEPALIVE);
  assert.is(core.stat("TCP_KEEPALIVE_DROP"), 1);
  clean(core);
});

test("the timer queue overflows and is rebuilt without losing a deadline: 100 earlier keepalives on a one-block table", () => {
  // one block: the queue holds 4 entries per block + 64; each earlier deadline adds an entry
  const { core, peer } = setup({ maxConns: 1 });
  const h = handshake(core, peer, { t: 0 });
  for (let k = 0; k < 100; k++) {
    core.cmd(CMD.SETOPT, { conn: h.conn, off: OPT.KEEPALIVE, buf: 10000 - k * 10 });
    core.poll(1);
  }
  core.poll(9010);
  assert.is(peer.segs().length, 0, "no probe before the last deadline set (1 + 9010 ms)");
  core.poll(9011);
  const [k] = peer.segs();
  assert.ok(k, "the probe at the last deadline set");
  assert.is(k.seq, h.snd - 1);
});

test("bulk transfer both ways through a scripted peer is byte-exact", () => {
  const { core, peer } = setup({ sndbuf: 1 << 20 });
  const h = handshake(core, peer, { t: 0, opts: { mss: 1460, sackOk: true, ts: [1, 0], ws: 2 } });
  const out = bytes(50000, 3);
  for (let o = 0; o < out.length; o += 1000) appSend(core, h.conn, out.subarray(o, o + 1000), { off: 300 });
  let got = [];
  let t = 1,
    ack = h.snd;
  for (let r = 0; r < 200 && got.length < out.length; r++) {
    core.poll((t += 5));
    for (const s of peer.segs()) {
      if ((s.seq - h.snd) >>> 0 === got.length) got.push(...s.payload);
    }
    ack = (h.snd + got.length) >>> 0;
    peer.tcp({ seq: h.seq, ack, opts: { ts: [t, 0] }, win: 65535 });
  }
  assert.equal(got.length, out.length);
  assert.ok(got.every((v, i) => v === out[i]));
  core.poll(t + 5);
  assert.is(core.held(OWNER.STACK), 0);
});

test("a GSO superframe (20 000 bytes over 11 buffers, partial checksum) is taken whole", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const p = bytes(20000, 9);
  // build the segment with a correct checksum, then replace it by the pseudo-header sum only
  const frame = peer.ipFrame(
    6,
    tcpSeg({ src: PEER_IP, dst: core.ip, sport: 40000, dport: 80, seq: h.seq, ack: h.snd, payload: p }),
  );
  const l4 = 14 + 20;
  const ph = csum(
    Uint8Array.from([198, 18, 0, 2, 198, 18, 0, 1, 0, 6, (frame.length - l4) >> 8, (frame.length - l4) & 255]),
  );
  frame[l4 + 16] = ph >> 8;
  frame[l4 + 17] = ph & 255;
  core.inject(frame, { split: 1900, flags: RXF_NEEDS_CSUM, info: l4 | (16 << 16) });
  core.poll(1);
  const ev = core.takeEvents().filter((e) => e.name === "DATA");
  assert.is(ev.length, 11);
  assert.equal(Uint8Array.from(ev.flatMap((e) => [...e.data])), p);
  assert.is(core.stat("CSUM_COMPLETED"), 1);
  const s = peer.segs();
  assert.is(s[s.length - 1].ack, (h.seq + 20000) >>> 0);
  abort(core, h.conn);
  clean(core);
});

test("a TCP segment that arrives in IPv4 fragments is reassembled and delivered", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const p = bytes(1400, 5);
  const seg = tcpSeg({ src: PEER_IP, dst: core.ip, sport: 40000, dport: 80, seq: h.seq, ack: h.snd, payload: p });
  for (let o = 0; o < seg.length; o += 512) {
    const more = o + 512 < seg.length;
    core.inject(peer.ipFrame(6, seg.subarray(o, o + 512), { id: 900, frag: (more ? 0x2000 : 0) | (o >> 3) }));
  }
  core.poll(1);
  const ev = core.takeEvents().filter((e) => e.name === "DATA");
  assert.equal(Uint8Array.from(ev.flatMap((e) => [...e.data])), p);
  assert.is(core.stat("IP_REASM_OK"), 1);
  abort(core, h.conn);
  clean(core);
});

test("cwnd does not grow while the application leaves it unused (RFC 7661)", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { t: 0 });
  const iw = core.x.tcpInfo(h.conn, INFO.cwnd);
  let t = 1;
  let ack = h.snd;
  for (let k = 0; k < 50; k++) {
    appSend(core, h.conn, "request/response " + k);
    core.poll((t += 1));
    const [s] = peer.segs();
    ack = (s.seq + s.payload.length) >>> 0;
    peer.tcp({ seq: h.seq, ack });
    core.poll((t += 1));
  }
  assert.is(core.x.tcpInfo(h.conn, INFO.cwnd), iw, "50 one-segment exchanges leave cwnd at the initial window");
  abort(core, h.conn);
  clean(core);
});

test("after an idle period longer than the RTO the window restarts from the initial window (RFC 5681 4.1)", () => {
  const { core, peer } = setup({ sndbuf: 1 << 20 });
  const h = handshake(core, peer, { t: 0 });
  let t = 1;
  let una = h.snd;
  // grow cwnd with a bulk phase
  for (let r = 0; r < 6; r++) {
    for (let k = 0; k < 20; k++) appSend(core, h.conn, bytes(1460), { off: 200 });
    core.poll((t += 1));
    const s = peer.segs();
    if (s.length) una = (s[s.length - 1].seq + 1460) >>> 0;
    peer.tcp({ seq: h.seq, ack: una });
    core.poll((t += 1));
    peer.segs();
  }
  // drain what is left
  for (let r = 0; r < 20 && core.x.tcpInfo(h.conn, INFO.sndQueued) > 0; r++) {
    const s = peer.segs();
    if (s.length) una = (s[s.length - 1].seq + 1460) >>> 0;
    peer.tcp({ seq: h.seq, ack: una });
    core.poll((t += 1));
  }
  const grown = core.x.tcpInfo(h.conn, INFO.cwnd);
  assert.ok(grown > 14600, "cwnd grew during the bulk phase");
  core.poll((t += 5000)); // idle for longer than the RTO
  for (let k = 0; k < 30; k++) appSend(core, h.conn, bytes(1460), { off: 200 });
  core.poll((t += 1));
  assert.is(peer.segs().length, 10, "a burst of the initial window, not of the old cwnd");
  abort(core, h.conn);
  clean(core);
});

// after every test: the pool invariant holds in every core the test created
test.after.each(() => {
  for (const r of checkCores()) assert.equal(r, { check: 0, detail: 0 }, "pool invariant after the test");
});

test.run();

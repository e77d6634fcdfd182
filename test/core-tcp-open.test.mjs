// TCP connection establishment, reset handling and teardown (RFC 9293, 5961, 6528).
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  createCore,
  Peer,
  handshake,
  appSend,
  CMD,
  EV,
  TH,
  ST,
  OWNER,
  PEER_IP,
  ip,
  text,
  str,
  checkCores,
} from "./lib/corehost.mjs";
import { TCP_INFO as INFO, TCP_REASONS as R, tapQueueOf } from "../build/index.js";

const ME = ip("198.18.0.1");
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
const listen = (core, port = 80, backlog = 16) => {
  core.cmd(CMD.LISTEN, { off: port, len: backlog, conn: 1 });
  core.poll();
  return core.takeEvents();
};
const state = (core, conn) => core.x.tcpState(conn);
function connect(core, { port = 80, lport = 0, tag = 9 } = {}) {
  core.cmd(CMD.CONNECT, { buf: PEER_IP, off: port, len: lport, conn: tag });
  core.poll();
}

test("SYN to a listener gets SYN-ACK with MSS, window scale, SACK-permitted and timestamps echoing the offer", () => {
  const { core, peer } = setup();
  listen(core);
  peer.tcp({ seq: 100, flags: TH.SYN, opts: { mss: 1400, ws: 7, sackOk: true, ts: [5000, 0] } });
  core.poll(1);
  const [s] = peer.segs();
  assert.is(s.flags, TH.SYN | TH.ACK);
  assert.is(s.ack, 101);
  assert.is(s.opts.mss, 1460);
  assert.ok(s.opts.ws >= 2, "scale for a 256 KiB window");
  assert.ok(s.opts.sackOk);
  assert.is(s.opts.ts[1], 5000);
  assert.is(s.dport, 40000);
  assert.is(s.sport, 80);
});

test("SYN without options gets a SYN-ACK with only MSS; MSS defaults to 536", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { opts: {} });
  assert.equal(Object.keys(h.synack.opts), ["mss"]);
  assert.is(core.x.tcpInfo(h.conn, INFO.mss), 536);
  appSend(core, h.conn, new Uint8Array(1200), { off: 200 });
  core.poll();
  const segs = peer.segs();
  assert.equal(
    segs.map((s) => s.payload.length),
    [536, 536, 128],
  );
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll();
  clean(core);
});

test("handshake completes with ACCEPTED naming the remote endpoint", () => {
  const { core, peer } = setup();
  core.cmd(CMD.LISTEN, { off: 80, len: 16, conn: 1 });
  core.poll(1);
  peer.tcp({ seq: 1000, flags: TH.SYN, opts: { mss: 1460 } });
  core.poll(2);
  const [sa] = peer.segs();
  assert.equal(
    core.takeEvents().map((e) => e.name),
    ["LISTENING"],
  );
  peer.tcp({ seq: 1001, ack: sa.seq + 1 });
  core.poll(3);
  const [ev] = core.takeEvents();
  assert.is(ev.name, "ACCEPTED");
  assert.is(ev.buf, PEER_IP);
  assert.is(ev.off, 40000);
  assert.is(ev.len, 80);
  assert.is(state(core, ev.conn), ST.ESTABLISHED);
  assert.is(peer.segs().length, 0, "no reply to the final ACK");
});

test("SYN to a closed port is answered by RST|ACK acknowledging the SYN", () => {
  const { core, peer } = setup();
  peer.tcp({ seq: 555, flags: TH.SYN, dport: 81 });
  core.poll(1);
  const [r] = peer.segs();
  assert.is(r.flags, TH.RST | TH.ACK);
  assert.is(r.seq, 0);
  assert.is(r.ack, 556);
  assert.is(core.stat("TCP_NO_CONN"), 1);
  clean(core);
});

test("ACK to a closed port gets RST with seq = SEG.ACK; data+FIN counted in the RST ack", () => {
  const { core, peer } = setup();
  peer.tcp({ seq: 1, ack: 777, dport: 81 });
  peer.tcp({ seq: 10, flags: TH.FIN | TH.PSH, payload: "abc", dport: 81 });
  core.poll(1);
  const [a, b] = peer.segs();
  assert.is(a.flags, TH.RST);
  assert.is(a.seq, 777);
  assert.is(b.flags, TH.RST | TH.ACK);
  assert.is(b.ack, 14);
  clean(core);
});

test("RST to a closed port is never answered", () => {
  const { core, peer } = setup();
  peer.tcp({ seq: 1, flags: TH.RST, dport: 81 });
  peer.tcp({ seq: 1, ack: 5, flags: TH.RST | TH.ACK, dport: 81 });
  core.poll(1);
  assert.is(peer.segs().length, 0);
  clean(core);
});

test("active open: SYN with our options, SYN-ACK completes, CONNECTED", () => {
  const { core, peer } = setup();
  connect(core, { tag: 42 });
  const [syn] = peer.segs();
  assert.is(syn.flags, TH.SYN);
  assert.is(syn.opts.mss, 1460);
  assert.ok(syn.opts.sackOk && syn.opts.ts && syn.opts.ws !== undefined);
  assert.ok(syn.sport >= 49152, "ephemeral port");
  assert.is(syn.dport, 80);
  peer.tcp({
    seq: 9000,
    ack: syn.seq + 1,
    flags: TH.SYN | TH.ACK,
    sport: 80,
    dport: syn.sport,
    opts: { mss: 1200, sackOk: true, ws: 3, ts: [1, syn.opts.ts[0]] },
  });
  core.poll(5);
  core.poll(5); // the app's turn (it sends nothing): the held ACK goes alone
  const [ack] = peer.segs();
  assert.is(ack.flags, TH.ACK);
  assert.is(ack.seq, syn.seq + 1);
  assert.is(ack.ack, 9001);
  const [ev] = core.takeEvents();
  assert.is(ev.name, "CONNECTED");
  assert.is(ev.buf, 42, "tag");
  assert.is(state(core, ev.conn), ST.ESTABLISHED);
  assert.is(core.x.tcpInfo(ev.conn, INFO.mss), 1200 - 12, "MSS minus timestamp option");
  assert.is(core.x.tcpInfo(ev.conn, INFO.sndWs), 3, "send scale");
});

test("active open refused by RST|ACK reports RESET", () => {
  const { core, peer } = setup();
  connect(core);
  const [syn] = peer.segs();
  peer.tcp({ seq: 0, ack: syn.seq + 1, flags: TH.RST | TH.ACK, sport: 80, dport: syn.sport });
  core.poll(1);
  const [ev] = core.takeEvents();
  assert.is(ev.name, "RESET");
  assert.is(ev.aux, R.REFUSED);
  assert.is(core.x.tcpConnCount(), 0);
  clean(core);
});

test("SYN_SENT: unacceptable ACK draws a RST, RST without ACK is ignored", () => {
  const { core, peer } = setup();
  connect(core);
  const [syn] = peer.segs();
  peer.tcp({ seq: 5, ack: syn.seq + 100, flags: TH.SYN | TH.ACK, sport: 80, dport: syn.sport });
  core.poll(1);
  const [r] = peer.segs();
  assert.is(r.flags, TH.RST);
  assert.is(r.seq, syn.seq + 100);
  peer.tcp({ seq: 5, flags: TH.RST, sport: 80, dport: syn.sport });
  core.poll(2);
  assert.is(core.takeEvents().length, 0);
  assert.is(core.x.tcpConnCount(), 1);
});

test("SYN is retransmitted with exponential backoff and the connect times out", () => {
  const { core, peer } = setup({ initRto: 1000 });
  connect(core);
  assert.is(peer.segs().length, 1);
  const times = [];
  let t = 0;
  for (let k = 0; k < 200 && core.x.tcpConnCount() > 0; k++) {
    t = core.poll(Math.max(t, core.deadline));
    const s = peer.segs();
    if (s.length) times.push(core.now);
    if (!isFinite(t)) break;
  }
  assert.equal(times, [1000, 3000, 7000, 15000, 31000, 63000, 123000], "1, 2, 4 ... 32 s, then the 60 s RTO cap");
  assert.ok(core.now >= 180000, "the SYN was retried for at least 3 minutes (RFC 9293 R2)");
  const ev = core.takeEvents().find((e) => e.name === "RESET");
  assert.ok(ev);
  assert.is(ev.aux, R.TIMEOUT, "timeout");
  clean(core);
});

test("simultaneous open: SYN crosses SYN, both sides reach ESTABLISHED", () => {
  const { core, peer } = setup();
  connect(core, { lport: 5555 });
  const [syn] = peer.segs();
  peer.tcp({ seq: 7000, flags: TH.SYN, sport: 80, dport: 5555, opts: { mss: 1460 } });
  core.poll(1);
  const [sa] = peer.segs();
  assert.is(sa.flags, TH.SYN | TH.ACK);
  assert.is(sa.seq, syn.seq);
  assert.is(sa.ack, 7001);
  assert.is(core.x.tcpConnCount(), 1, "one block, now in SYN_RCVD");
  assert.is(core.takeEvents().length, 0, "not connected yet");
  peer.tcp({ seq: 7000, ack: syn.seq + 1, flags: TH.SYN | TH.ACK, sport: 80, dport: 5555, opts: { mss: 1460 } });
  core.poll(2);
  // the SYN-ACK repeats the SYN (seq below RCV.NXT): answered by an ACK; then the plain ACK completes it
  peer.segs();
  peer.tcp({ seq: 7001, ack: syn.seq + 1, sport: 80, dport: 5555 });
  core.poll(3);
  const ev = core.takeEvents().find((e) => e.name === "CONNECTED");
  assert.ok(ev);
  assert.is(state(core, ev.conn), ST.ESTABLISHED);
});

test("SYN-ACK is retransmitted from SYN_RCVD, and a repeated SYN gets it again", () => {
  const { core, peer } = setup({ initRto: 1000 });
  listen(core);
  peer.tcp({ seq: 10, flags: TH.SYN });
  core.poll(1);
  const [a] = peer.segs();
  peer.tcp({ seq: 10, flags: TH.SYN });
  core.poll(2);
  const [b] = peer.segs();
  assert.is(b.flags, TH.SYN | TH.ACK);
  assert.is(b.seq, a.seq);
  core.poll(1001);
  const [c] = peer.segs();
  assert.is(c.flags, TH.SYN | TH.ACK);
  assert.is(c.seq, a.seq);
  assert.is(core.stat("TCP_RETRANSMITS"), 1);
});

test("half-open connections expire silently after SYN-ACK retries", () => {
  const { core, peer } = setup({ initRto: 100 });
  listen(core);
  peer.tcp({ seq: 10, flags: TH.SYN });
  core.poll(0);
  assert.is(core.x.tcpConnCount(), 1);
  for (let t = 0; t < 100000 && core.x.tcpConnCount() > 0; t += 100) core.poll(t);
  assert.is(core.x.tcpConnCount(), 0);
  assert.is(core.takeEvents().filter((e) => e.name !== "LISTENING").length, 0, "the app never heard of it");
  clean(core);
});

test("SYN queue overflow answers with SYN cookies; a valid cookie ACK is accepted", () => {
  const { core, peer } = setup();
  listen(core, 80, 1);
  peer.tcp({ seq: 100, flags: TH.SYN, sport: 1001, opts: { mss: 1460 } });
  peer.tcp({ seq: 200, flags: TH.SYN, sport: 1002, opts: { mss: 1460 } });
  core.poll(1);
  const [s1, s2] = peer.segs();
  assert.is(s1.flags, TH.SYN | TH.ACK);
  assert.is(s2.flags, TH.SYN | TH.ACK);
  assert.is(s2.opts.mss, 1460, "MSS encoded in the cookie");
  assert.is(core.stat("TCP_SYNQ_OVERFLOW"), 1);
  assert.is(core.x.tcpConnCount(), 1, "no state for the cookie");
  peer.tcp({ seq: 201, ack: s2.seq + 1, sport: 1002, payload: "cookie data", flags: TH.ACK | TH.PSH });
  core.poll(2);
  const ev = core.takeEvents();
  assert.is(ev[0].name, "ACCEPTED");
  assert.is(ev[0].off, 1002);
  assert.is(ev[1].name, "DATA");
  assert.is(str(ev[1].data), "cookie data");
  assert.is(core.stat("TCP_COOKIE_OK"), 1);
  assert.is(core.x.tcpInfo(ev[0].conn, INFO.mss), 1460);
});

test("a forged cookie ACK is refused with RST", () => {
  const { core, peer } = setup();
  listen(core, 80, 1);
  peer.tcp({ seq: 100, flags: TH.SYN, sport: 1001 });
  peer.tcp({ seq: 200, flags: TH.SYN, sport: 1002 });
  core.poll(1);
  const [, s2] = peer.segs();
  peer.tcp({ seq: 201, ack: s2.seq + 2, sport: 1002 });
  peer.tcp({ seq: 999, ack: s2.seq + 1, sport: 1002 });
  core.poll(2);
  const r = peer.segs();
  assert.is(r.length, 2);
  assert.ok(r.every((s) => s.flags === TH.RST));
  assert.is(core.stat("TCP_COOKIE_BAD"), 2);
});

test("a cookie expires after two 64 s slots", () => {
  const { core, peer } = setup();
  listen(core, 80, 1);
  peer.tcp({ seq: 100, flags: TH.SYN, sport: 1001 });
  peer.tcp({ seq: 200, flags: TH.SYN, sport: 1002 });
  core.poll(1);
  const [, s2] = peer.segs();
  peer.tcp({ seq: 201, ack: s2.seq + 1, sport: 1002 });
  core.poll(200000);
  assert.is(core.stat("TCP_COOKIE_BAD"), 1);
});

test("listening twice on a port fails; unlisten makes SYNs draw RST", () => {
  const { core, peer } = setup();
  listen(core);
  const ev = listen(core);
  assert.is(ev[0].name, "ERROR");
  core.cmd(CMD.UNLISTEN, { off: 80 });
  core.poll(1);
  peer.tcp({ seq: 1, flags: TH.SYN });
  core.poll(2);
  assert.is(peer.segs()[0].flags, TH.RST | TH.ACK);
  clean(core);
});

test("ISNs differ per 4-tuple and advance with the clock (RFC 6528)", () => {
  const { core, peer } = setup();
  listen(core);
  peer.tcp({ seq: 1, flags: TH.SYN, sport: 2001 });
  peer.tcp({ seq: 1, flags: TH.SYN, sport: 2002 });
  core.poll(0);
  const [a, b] = peer.segs();
  assert.is.not(a.seq, b.seq);
  const core2 = createCore();
  core2.poll(0);
  core2.tx();
  const peer2 = new Peer(core2);
  listen(core2);
  peer2.tcp({ seq: 1, flags: TH.SYN, sport: 2001 });
  core2.poll(1000);
  const [c] = peer2.segs();
  assert.is((c.seq - a.seq) >>> 0, 250000, "same tuple and secret: M advances 250 per ms");
  const core3 = createCore({ secret: new Uint8Array(32).fill(1) });
  core3.poll(0);
  core3.tx();
  const peer3 = new Peer(core3);
  listen(core3);
  peer3.tcp({ seq: 1, flags: TH.SYN, sport: 2001 });
  core3.poll(0);
  assert.is.not(peer3.segs()[0].seq, a.seq, "the secret matters");
});

test("connection table exhaustion is counted; SYN gets no answer", () => {
  const { core, peer } = setup({ maxConns: 2 });
  listen(core);
  for (const sport of [1, 2, 3]) peer.tcp({ seq: 1, flags: TH.SYN, sport });
  core.poll(1);
  assert.is(peer.segs().length, 2);
  assert.is(core.stat("TCP_CONN_EXHAUSTED"), 1);
});

test("CFG_FULL=1: a SYN past the table's limit is answered with an RST; the connections in it are untouched", () => {
  const { core, peer } = setup({ maxConns: 2, full: 1 });
  listen(core);
  for (const sport of [1, 2, 3]) peer.tcp({ seq: 1000 * sport, flags: TH.SYN, sport });
  core.poll(1);
  const segs = peer.segs();
  assert.equal(
    segs.map((s) => [s.dport, s.flags]),
    [
      [1, TH.SYN | TH.ACK],
      [2, TH.SYN | TH.ACK],
      [3, TH.RST | TH.ACK],
    ],
  );
  assert.is(segs[2].ack, 3001, "the RST acknowledges the SYN (RFC 9293 3.10.7.1)");
  assert.is(core.stat("TCP_CONN_EXHAUSTED"), 1);
  // the two half-open connections complete as if nothing happened
  for (const s of segs.slice(0, 2)) peer.tcp({ seq: s.ack, ack: s.seq + 1, flags: TH.ACK, sport: s.dport });
  core.poll(2);
  assert.is(core.takeEvents().filter((e) => e.name === "ACCEPTED").length, 2);
  assert.is(peer.segs().length, 0, "no RST for them");
});

test("connect to a tuple in use fails; bad arguments fail", () => {
  const { core, peer } = setup();
  connect(core, { lport: 4000, tag: 1 });
  connect(core, { lport: 4000, tag: 2 });
  core.cmd(CMD.CONNECT, { buf: 0, off: 80, conn: 3 });
  core.cmd(CMD.CONNECT, { buf: PEER_IP, off: 0, conn: 4 });
  core.poll(1);
  const ev = core.takeEvents();
  assert.equal(
    ev.map((e) => [e.name, e.conn]),
    [
      ["ERROR", 2],
      ["ERROR", 3],
      ["ERROR", 4],
    ],
  );
  peer.segs();
});

test("CFG_STEER: connect's ephemeral ports are those the TAP steering hash sends to our queue", () => {
  // one stack per queue of a multi-queue TAP device: a connection it opens must get its replies
  // on its own queue, so its local port is chosen by the device's hash (tapQueueOf)
  const queueOf = (s) =>
    tapQueueOf({ localAddress: "198.18.0.1", localPort: s.sport, remoteAddress: "198.18.0.2", remotePort: s.dport }, 3);
  for (const [steer, want] of [
    [(3 << 16) | 2, [2]],
    [(3 << 16) | 0, [0]],
    [0, [0, 1, 2]],
  ]) {
    const { core, peer } = setup({ steer, maxConns: 400 });
    for (let k = 0; k < 300; k++) connect(core, { port: 1000 + (k % 7), tag: k });
    const syns = peer.segs();
    assert.is(syns.length, 300);
    assert.ok(syns.every((s) => s.flags === TH.SYN));
    assert.equal([...new Set(syns.map(queueOf))].sort(), want, `steer ${steer.toString(16)}`);
    assert.is(new Set(syns.map((s) => `${s.sport}:${s.dport}`)).size, 300, "distinct 4-tuples");
    assert.is(core.takeEvents().filter((e) => e.name === "ERROR").length, 0);
  }
  // an explicit local port is taken as it is
  const { core, peer } = setup({ steer: (2 << 16) | 1 });
  for (let p = 4000; p < 4004; p++) connect(core, { lport: p, tag: p });
  assert.equal(
    peer.segs().map((s) => s.sport),
    [4000, 4001, 4002, 4003],
  );
});

test("RST with exactly RCV.NXT resets the connection", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq, flags: TH.RST });
  core.poll(1);
  const [ev] = core.takeEvents();
  assert.is(ev.name, "RESET");
  assert.is(ev.conn, h.conn);
  assert.is(core.x.tcpConnCount(), 0);
  clean(core);
});

test("RST in window but not exact draws a challenge ACK (RFC 5961 3.2)", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq + 100, flags: TH.RST });
  core.poll(1);
  const [c] = peer.segs();
  assert.is(c.flags, TH.ACK);
  assert.is(c.ack, h.seq);
  assert.is(c.seq, h.snd);
  assert.is(state(core, h.conn), ST.ESTABLISHED);
  assert.is(core.stat("TCP_CHALLENGE_ACK"), 1);
});

test("RST outside the window is ignored silently", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq + 10000000, flags: TH.RST });
  peer.tcp({ seq: h.seq - 10, flags: TH.RST });
  core.poll(1);
  assert.is(peer.segs().length, 0);
  assert.is(state(core, h.conn), ST.ESTABLISHED);
});

test("SYN on an established connection draws a challenge ACK (RFC 5961 4)", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq + 5, flags: TH.SYN });
  peer.tcp({ seq: 12345, flags: TH.SYN });
  core.poll(1);
  const segs = peer.segs();
  assert.is(segs.length, 2);
  assert.ok(segs.every((s) => s.flags === TH.ACK && s.ack === h.seq));
  assert.is(state(core, h.conn), ST.ESTABLISHED);
});

test("ACK of data never sent is answered with an ACK and ignored (RFC 5961 5)", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq, ack: h.snd + 5000, payload: "x" });
  core.poll(1);
  const [a] = peer.segs();
  assert.is(a.ack, h.seq, "the data was not accepted");
  assert.is(core.takeEvents().length, 0);
});

test("too-old ACK draws a challenge ACK", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { win: 1000 });
  peer.tcp({ seq: h.seq, ack: h.snd - 100000, payload: "x" });
  core.poll(1);
  assert.is(core.stat("TCP_CHALLENGE_ACK"), 1);
  assert.is(core.takeEvents().length, 0);
});

test("segments without ACK on a synchronized connection are dropped", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq, flags: TH.PSH, payload: "noack" });
  core.poll(1);
  assert.is(core.takeEvents().length, 0);
});

test("active close: FIN_WAIT_1, FIN_WAIT_2, TIME_WAIT for 2 MSL, CLOSED on entry", () => {
  const { core, peer } = setup({ msl: 1000 });
  const h = handshake(core, peer);
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(10);
  const [fin] = peer.segs();
  assert.is(fin.flags, TH.FIN | TH.ACK);
  assert.is(fin.seq, h.snd);
  assert.is(state(core, h.conn), ST.FIN_WAIT_1);
  peer.tcp({ seq: h.seq, ack: h.snd + 1 });
  core.poll(20);
  assert.is(state(core, h.conn), ST.FIN_WAIT_2);
  peer.tcp({ seq: h.seq, ack: h.snd + 1, flags: TH.FIN | TH.ACK });
  core.poll(30);
  const [ack] = peer.segs();
  assert.is(ack.ack, h.seq + 1);
  assert.is(state(core, h.conn), ST.TIME_WAIT);
  assert.equal(
    core.takeEvents().map((e) => e.name),
    ["PEER_CLOSED", "CLOSED"],
  );
  core.poll(2029);
  assert.is(state(core, h.conn), ST.TIME_WAIT);
  core.poll(2030);
  assert.is(state(core, h.conn), -1);
  clean(core);
});

test("passive close: CLOSE_WAIT then LAST_ACK, CLOSED when our FIN is acked", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq, ack: h.snd, flags: TH.FIN | TH.ACK });
  core.poll(1);
  core.poll(1); // the app's turn passes without an answer: the held ACK goes alone
  const [a] = peer.segs();
  assert.is(a.ack, h.seq + 1);
  assert.is(state(core, h.conn), ST.CLOSE_WAIT);
  assert.equal(
    core.takeEvents().map((e) => e.name),
    ["PEER_CLOSED"],
  );
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(2);
  const [f] = peer.segs();
  assert.is(f.flags, TH.FIN | TH.ACK);
  assert.is(state(core, h.conn), ST.LAST_ACK);
  peer.tcp({ seq: h.seq + 1, ack: h.snd + 1 });
  core.poll(3);
  assert.equal(
    core.takeEvents().map((e) => e.name),
    ["CLOSED"],
  );
  assert.is(core.x.tcpConnCount(), 0);
  clean(core);
});

// An ACK owed for a segment that also gave the app an event it may answer at once (CONNECTED,
// PEER_CLOSED) waits for the app's turn, the next poll: the answer carries it, as a delayed ACK
// would, and a silent app's next poll sends it alone. The first poll says so by its deadline.
function activeOpen(core, peer, t = 5) {
  connect(core, { tag: 42 });
  const [syn] = peer.segs();
  peer.tcp({ seq: 9000, ack: syn.seq + 1, flags: TH.SYN | TH.ACK, sport: 80, dport: syn.sport, opts: { mss: 1460 } });
  const next = core.poll(t);
  const [ev] = core.takeEvents();
  assert.is(ev.name, "CONNECTED");
  return { syn, conn: ev.conn, next };
}

test("active open: the handshake's last ACK waits for the app's turn and rides on its first request", () => {
  const { core, peer } = setup();
  const { syn, conn, next } = activeOpen(core, peer);
  assert.is(peer.segs().length, 0, "no bare ACK before the app has had its turn");
  assert.is(next, 5, "the poll's deadline is now: the host polls again at once");
  assert.is(state(core, conn), ST.ESTABLISHED);
  appSend(core, conn, "GET / HTTP/1.1\r\n\r\n");
  core.poll(5);
  const segs = peer.segs();
  assert.is(segs.length, 1, "one segment: the request, carrying the ACK");
  assert.is(segs[0].flags & TH.ACK, TH.ACK);
  assert.is(segs[0].ack, 9001);
  assert.is(segs[0].seq, syn.seq + 1);
  assert.is(str(segs[0].payload), "GET / HTTP/1.1\r\n\r\n");
  core.cmd(CMD.ABORT, { conn });
  core.poll(6);
  clean(core);
});

test("active open, the app silent in its turn: the next poll sends the ACK alone, and then nothing more is owed", () => {
  const { core, peer } = setup();
  const { syn, conn } = activeOpen(core, peer);
  assert.is(peer.segs().length, 0);
  const next = core.poll(5);
  const [ack] = peer.segs();
  assert.is(ack.flags, TH.ACK);
  assert.is(ack.seq, syn.seq + 1);
  assert.is(ack.ack, 9001);
  assert.ok(next > 5, "nothing held any more");
  core.poll(6);
  assert.is(peer.segs().length, 0);
  core.cmd(CMD.ABORT, { conn });
  core.poll(7);
  clean(core);
});

test("active open, aborted in the app's turn: the held ACK goes first, then the RST (the peer's handshake completes)", () => {
  const { core, peer } = setup();
  const { syn, conn } = activeOpen(core, peer);
  core.cmd(CMD.ABORT, { conn });
  core.poll(5);
  const segs = peer.segs();
  assert.equal(
    segs.map((s) => s.flags & (TH.ACK | TH.RST)),
    [TH.ACK, TH.RST],
  );
  assert.is(segs[0].ack, 9001);
  assert.is(segs[1].seq, syn.seq + 1);
  clean(core);
});

test("passive close: the ACK of the peer's FIN waits for the app's turn; the app's close sends FIN|ACK, one segment", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq, ack: h.snd, flags: TH.FIN | TH.ACK });
  const next = core.poll(1);
  assert.is(peer.segs().length, 0, "no bare ACK before the app has had its turn");
  assert.is(next, 1, "deadline now");
  assert.equal(
    core.takeEvents().map((e) => e.name),
    ["PEER_CLOSED"],
  );
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(1);
  const segs = peer.segs();
  assert.is(segs.length, 1);
  assert.is(segs[0].flags, TH.FIN | TH.ACK);
  assert.is(segs[0].ack, h.seq + 1);
  assert.is(state(core, h.conn), ST.LAST_ACK);
  peer.tcp({ seq: h.seq + 1, ack: h.snd + 1 });
  core.poll(2);
  assert.equal(
    core.takeEvents().map((e) => e.name),
    ["CLOSED"],
  );
  clean(core);
});

test("the peer's FIN while we are closing (FIN_WAIT_2) is acknowledged at once: the app has nothing to answer with", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(1);
  peer.segs();
  peer.tcp({ seq: h.seq, ack: h.snd + 1 });
  core.poll(2);
  peer.tcp({ seq: h.seq, ack: h.snd + 1, flags: TH.FIN | TH.ACK });
  core.poll(3);
  const [ack] = peer.segs();
  assert.is(ack.flags, TH.ACK);
  assert.is(ack.ack, h.seq + 1);
  assert.is(state(core, h.conn), ST.TIME_WAIT);
});

test("simultaneous close goes through CLOSING to TIME_WAIT", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(1);
  peer.segs();
  peer.tcp({ seq: h.seq, ack: h.snd, flags: TH.FIN | TH.ACK });
  core.poll(2);
  assert.is(state(core, h.conn), ST.CLOSING);
  peer.segs();
  peer.tcp({ seq: h.seq + 1, ack: h.snd + 1 });
  core.poll(3);
  assert.is(state(core, h.conn), ST.TIME_WAIT);
});

test("FIN with data: data delivered, then PEER_CLOSED", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq, ack: h.snd, flags: TH.FIN | TH.ACK | TH.PSH, payload: "bye" });
  core.poll(1);
  const ev = core.takeEvents();
  assert.equal(
    ev.map((e) => e.name),
    ["DATA", "PEER_CLOSED"],
  );
  core.poll(1);
  assert.is(peer.segs()[0].ack, h.seq + 4);
});

test("out-of-order FIN waits for the missing data", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  peer.tcp({ seq: h.seq + 3, ack: h.snd, flags: TH.FIN | TH.ACK, payload: "def" });
  core.poll(1);
  assert.is(core.takeEvents().length, 0);
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "abc" });
  core.poll(2);
  const ev = core.takeEvents();
  assert.equal(
    ev.map((e) => e.name),
    ["DATA", "DATA", "PEER_CLOSED"],
  );
  assert.is(
    ev
      .slice(0, 2)
      .map((e) => str(e.data))
      .join(""),
    "abcdef",
  );
  const segs = peer.segs();
  assert.is(segs[segs.length - 1].ack, h.seq + 7);
});

test("data sent before CLOSE goes out before the FIN", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  appSend(core, h.conn, "last words");
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(1);
  const [s] = peer.segs();
  assert.is(str(s.payload), "last words");
  assert.is(s.flags, TH.FIN | TH.ACK | TH.PSH);
  peer.tcp({ seq: h.seq, ack: h.snd + 11 });
  core.poll(2);
  assert.is(state(core, h.conn), ST.FIN_WAIT_2);
  assert.is(core.held(OWNER.STACK), 0, "acked data released");
});

test("send after CLOSE is refused", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  core.cmd(CMD.CLOSE, { conn: h.conn });
  appSend(core, h.conn, "late");
  core.poll(1);
  const ev = core.takeEvents().find((e) => e.name === "SEND_REFUSED");
  assert.ok(ev);
  assert.is(str(ev.data), "late");
});

test("abort sends RST, reports CLOSED and releases queued buffers", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { win: 0 });
  appSend(core, h.conn, "never sent");
  core.poll(1);
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(2);
  const segs = peer.segs();
  assert.is(segs[segs.length - 1].flags, TH.RST);
  assert.equal(
    core.takeEvents().map((e) => e.name),
    ["CLOSED"],
  );
  clean(core);
});

test("TIME_WAIT answers a retransmitted FIN and restarts its timer", () => {
  const { core, peer } = setup({ msl: 1000 });
  const h = handshake(core, peer);
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(0);
  peer.tcp({ seq: h.seq, ack: h.snd + 1, flags: TH.FIN | TH.ACK });
  core.poll(0);
  peer.segs();
  peer.tcp({ seq: h.seq, ack: h.snd + 1, flags: TH.FIN | TH.ACK });
  core.poll(1500);
  const [a] = peer.segs();
  assert.is(a.ack, h.seq + 1);
  core.poll(2100);
  assert.is(state(core, h.conn), ST.TIME_WAIT, "timer restarted at 1500");
  core.poll(3500);
  assert.is(state(core, h.conn), -1);
});

test("FIN_WAIT_2 times out after 60 s without a segment", () => {
  const { core, peer } = setup({ msl: 1000 });
  const h = handshake(core, peer);
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(0);
  peer.tcp({ seq: h.seq, ack: h.snd + 1 });
  core.poll(0);
  assert.is(state(core, h.conn), ST.FIN_WAIT_2);
  peer.tcp({ seq: h.seq, ack: h.snd + 1, payload: "still here" });
  core.poll(30000);
  core.poll(89999);
  assert.is(state(core, h.conn), ST.FIN_WAIT_2, "the segment at 30 s restarted the idle timer");
  core.poll(90000);
  assert.is(state(core, h.conn), -1);
  assert.ok(core.takeEvents().find((e) => e.name === "CLOSED"));
  clean(core);
});

test("half-close: data still arrives in FIN_WAIT_2", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(0);
  peer.tcp({ seq: h.seq, ack: h.snd + 1 });
  peer.tcp({ seq: h.seq, ack: h.snd + 1, payload: "still talking" });
  core.poll(1);
  const ev = core.takeEvents().find((e) => e.name === "DATA");
  assert.is(str(ev.data), "still talking");
});

test("TIME_WAIT blocks are recycled when the table is full", () => {
  const { core, peer } = setup({ maxConns: 1, msl: 60000 });
  const h = handshake(core, peer);
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(0);
  peer.tcp({ seq: h.seq, ack: h.snd + 1, flags: TH.FIN | TH.ACK });
  core.poll(0);
  assert.is(state(core, h.conn), ST.TIME_WAIT);
  peer.segs();
  peer.tcp({ seq: 5, flags: TH.SYN, sport: 777 });
  core.poll(1);
  const [sa] = peer.segs();
  assert.is(sa.flags, TH.SYN | TH.ACK);
  assert.is(state(core, h.conn), -1);
});

test("TIME_WAIT recycling takes the block longest in TIME_WAIT (a renewed one goes last)", () => {
  const { core, peer } = setup({ maxConns: 3, msl: 60000 });
  listen(core);
  const conns = [];
  for (const sport of [1001, 1002, 1003]) {
    peer.tcp({ seq: 100, flags: TH.SYN, sport });
    core.poll();
    const [sa] = peer.segs();
    peer.tcp({ seq: 101, ack: sa.seq + 1, sport });
    core.poll();
    const acc = core.takeEvents().find((e) => e.name === "ACCEPTED");
    core.cmd(CMD.CLOSE, { conn: acc.conn });
    core.poll();
    peer.tcp({ seq: 101, ack: sa.seq + 2, sport, flags: TH.FIN | TH.ACK });
    core.poll();
    assert.is(state(core, acc.conn), ST.TIME_WAIT);
    conns.push({ conn: acc.conn, sport, snd: sa.seq + 2 });
    peer.segs();
  }
  // the first one's FIN again: its TIME_WAIT starts over, so the second is now the oldest
  peer.tcp({ seq: 101, ack: conns[0].snd, sport: 1001, flags: TH.FIN | TH.ACK });
  core.poll();
  peer.tcp({ seq: 5, flags: TH.SYN, sport: 2001 });
  core.poll(1);
  assert.is(peer.segs().find((x) => x.dport === 2001).flags, TH.SYN | TH.ACK);
  assert.is(state(core, conns[1].conn), -1, "the oldest went");
  assert.is(state(core, conns[0].conn), ST.TIME_WAIT);
  assert.is(state(core, conns[2].conn), ST.TIME_WAIT);
  assert.is(core.x.tcpConnCount(), 3);
});

test("more than 65,535 connection blocks: ids carry a 20-bit index, every connection works", () => {
  const N = 66000;
  const { core, peer } = setup({ maxConns: N, synq: N, buffers: 4096, nodes: 1024 });
  listen(core, 80, 65535);
  // 66,000 handshakes from 16 source addresses x 4,125 ports, in batches the rings take
  const srcs = Array.from({ length: 16 }, (_, k) => ip(`198.18.1.${k + 1}`));
  for (const s of srcs) core.arpAdd(s, peer.mac);
  const accepted = [];
  for (let k = 0; k < N; k += 200) {
    const batch = [];
    for (let j = k; j < Math.min(k + 200, N); j++) {
      const p = new Peer(core, { ipAddr: srcs[j % 16], resolve: false, port: 10000 + Math.floor(j / 16) });
      p.tcp({ seq: 7, flags: TH.SYN, opts: { mss: 1460 } });
      batch.push(p);
    }
    core.poll();
    const sas = new Map(peer.frames().map((f) => [`${f.ip.dst}:${f.tcp.dport}`, f.tcp]));
    for (const p of batch) p.tcp({ seq: 8, ack: sas.get(`${p.ip}:${p.port}`).seq + 1 });
    core.poll();
    for (const e of core.takeEvents()) if (e.name === "ACCEPTED") accepted.push(e.conn);
    peer.segs();
  }
  assert.is(accepted.length, N);
  assert.is(core.x.tcpConnCount(), N);
  const high = accepted.filter((c) => (c & 0xfffff) > 65535);
  assert.is(high.length, N - 65536, "blocks past 65,535 are in use");
  assert.is(new Set(accepted).size, N, "every id distinct");
  // the last connection (index 65,999) carries data both ways
  const last = accepted[N - 1];
  assert.is(last & 0xfffff, N - 1);
  appSend(core, last, "far");
  core.poll();
  const [d] = peer.segs().filter((x) => x.payload.length);
  assert.is(str(d.payload), "far");
  accepted.forEach((c, k) => {
    core.cmd(CMD.ABORT, { conn: c });
    if (k % 500 === 499) core.poll(); // in batches the command ring takes
  });
  for (let k = 0; k < 200 && core.x.tcpConnCount() > 0; k++) {
    core.poll();
    core.takeEvents();
    peer.segs();
  }
  assert.is(core.x.tcpConnCount(), 0);
});

test("stale connection ids are refused after reuse (generation)", () => {
  const { core, peer } = setup({ maxConns: 1 });
  const h = handshake(core, peer);
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(1);
  peer.segs();
  core.takeEvents();
  const h2 = handshake(core, peer, { isn: 50000 });
  assert.is(h2.conn & 0xffff, h.conn & 0xffff, "same block");
  assert.is.not(h2.conn, h.conn);
  appSend(core, h.conn, "stale");
  core.poll(2);
  assert.ok(core.takeEvents().find((e) => e.name === "SEND_REFUSED"));
  assert.is(peer.segs().length, 0);
});

test("many connections opened and closed leave nothing behind", () => {
  const { core, peer } = setup({ msl: 10, maxConns: 8 });
  listen(core);
  let t = 0;
  for (let k = 0; k < 100; k++) {
    const sport = 10000 + k;
    peer.tcp({ seq: 1000, flags: TH.SYN, sport, opts: { mss: 1460 } });
    core.poll(++t);
    const [sa] = peer.segs();
    peer.tcp({ seq: 1001, ack: sa.seq + 1, sport, payload: "req", flags: TH.ACK | TH.PSH });
    core.poll(++t);
    const ev = core.takeEvents();
    const conn = ev.find((e) => e.name === "ACCEPTED").conn;
    appSend(core, conn, "resp");
    core.cmd(CMD.CLOSE, { conn });
    core.poll(++t);
    const [d] = peer.segs();
    assert.is(str(d.payload), "resp");
    peer.tcp({ seq: 1004, ack: d.seq + 5, sport, flags: TH.FIN | TH.ACK });
    core.poll(++t);
    peer.segs();
  }
  core.poll(t + 100);
  assert.is(core.x.tcpConnCount(), 0);
  clean(core);
});

test("a new SYN above the old sequence space reopens a TIME_WAIT tuple (RFC 6191)", () => {
  const { core, peer } = setup({ msl: 60000 });
  const h = handshake(core, peer);
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(1);
  peer.tcp({ seq: h.seq, ack: h.snd + 1, flags: TH.FIN | TH.ACK });
  core.poll(2);
  peer.segs();
  assert.is(state(core, h.conn), ST.TIME_WAIT);
  peer.tcp({ seq: h.seq - 10, flags: TH.SYN });
  core.poll(3);
  assert.is(peer.segs()[0].flags, TH.ACK, "an old SYN only gets a challenge ACK");
  peer.tcp({ seq: h.seq + 100000, flags: TH.SYN });
  core.poll(4);
  const [sa] = peer.segs();
  assert.is(sa.flags, TH.SYN | TH.ACK);
  assert.is(sa.ack, h.seq + 100001);
  assert.is(state(core, h.conn), -1);
});

// after every test: the pool invariant holds in every core the test created
test.after.each(() => {
  for (const r of checkCores()) assert.equal(r, { check: 0, detail: 0 }, "pool invariant after the test");
});

test.run();

// Bad input and exhaustion: counted, never a trap, never a leak.
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  createCore,
  Peer,
  handshake,
  appSend,
  parseFrame,
  eth,
  arpPkt,
  ipv4,
  tcpSeg,
  CMD,
  EV,
  TH,
  ST,
  OWNER,
  PEER_IP,
  PEER_MAC,
  BCAST,
  csum,
  ip,
  str,
  checkCores,
} from "./lib/corehost.mjs";
import { TCP_INFO as INFO, TCP_REASONS as R } from "../build/index.js";

function setup(opts = {}) {
  const core = createCore({ msl: 1000, ...opts });
  core.poll(0);
  core.tx();
  return { core, peer: new Peer(core) };
}
function clean(core) {
  core.tx();
  core.takeEvents();
  assert.is(core.check(), 0, "pool invariant");
  assert.is(core.held(OWNER.NIC), 0, "NIC leak");
  assert.is(core.held(OWNER.STACK), 0, "STACK leak");
  assert.is(core.held(OWNER.APP), 0, "APP leak");
  assert.is(core.x.tcpNodesUsed(), 0, "node leak");
}

test("random TCP segments against a listener and an established connection: no trap, no leak", () => {
  const { core, peer } = setup({ keepalive: 5000 });
  const h = handshake(core, peer, { opts: { mss: 1460, sackOk: true, ts: [1, 0], ws: 3 } });
  let seed = 4242;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 8;
  const near = (base, spread) => (base + (rnd() % (2 * spread)) - spread) >>> 0;
  for (let k = 0; k < 4000; k++) {
    const flags = [TH.ACK, TH.ACK | TH.PSH, TH.SYN, TH.RST, TH.FIN | TH.ACK, TH.ACK | TH.URG, rnd() & 63][rnd() % 7];
    const opts =
      rnd() % 3 === 0
        ? Uint8Array.from({ length: (rnd() % 10) * 4 }, () => rnd() & 255)
        : { ts: [rnd(), rnd()], sack: rnd() % 2 ? [[near(h.snd, 5000), near(h.snd, 9000)]] : undefined };
    peer.tcp({
      seq: rnd() % 4 ? near(h.seq, 70000) : rnd(),
      ack: rnd() % 4 ? near(h.snd, 3000) : rnd(),
      flags,
      win: rnd() & 0xffff,
      opts,
      payload: new Uint8Array(rnd() % 300),
      sport: rnd() % 5 ? 40000 : 40000 + (rnd() % 4),
      dport: rnd() % 6 ? 80 : rnd() & 0xffff,
      urp: rnd() & 0xffff,
    });
    if (k % 7 === 0) appSend(core, h.conn, new Uint8Array((rnd() % 1500) + 1), { off: 200 });
    if (k % 16 === 0) {
      core.poll(k * 3);
      core.tx();
      core.takeEvents();
    }
  }
  core.poll(20000);
  for (let t = 20000; t < 400000; t += 5000) core.poll(t);
  core.cmd(CMD.UNLISTEN, { off: 80 });
  for (const e of core.takeEvents())
    if (e.name === "ACCEPTED" || e.name === "CONNECTED") core.cmd(CMD.ABORT, { conn: e.conn });
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(400001);
  for (let t = 400001; t < 800000 && core.x.tcpConnCount(); t += 10000) core.poll(t);
  assert.is(core.x.tcpConnCount(), 0);
  clean(core);
});

test("a full APP-OUT ring stalls RX processing without losing data", () => {
  const { core, peer } = setup({ aoutLog2: 7 });
  const h = handshake(core, peer);
  core.autoRecvd = true;
  for (let k = 0; k < 200; k++) peer.tcp({ seq: h.seq + k * 10, ack: h.snd, payload: String(k).padStart(10, ".") });
  // poll without draining APP-OUT: the core must stop before the ring overflows
  const dl = core.x.stackPoll(1);
  assert.is(dl, 1, "work left: deadline is now");
  assert.ok(core.stat("RX_STALL") >= 1);
  assert.is(core.stat("APPOUT_FULL"), 0, "no event was lost");
  let got = "";
  for (let t = 2; t < 50; t++) {
    core.collectEvents();
    got += core
      .takeEvents()
      .filter((e) => e.name === "DATA")
      .map((e) => str(e.data))
      .join("");
    core.poll(t);
  }
  got += core
    .takeEvents()
    .filter((e) => e.name === "DATA")
    .map((e) => str(e.data))
    .join("");
  assert.is(got, Array.from({ length: 200 }, (_, k) => String(k).padStart(10, ".")).join(""));
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(60);
  clean(core);
});

test("TX ring overflow drops frames with a count; retransmission recovers them", () => {
  const { core, peer } = setup({ txLog2: 7, sndbuf: 1 << 20, initRto: 200, minRto: 200 });
  const h = handshake(core, peer, { opts: { mss: 1460 }, t: 0 });
  core.cmd(CMD.SETOPT, { conn: h.conn, off: 1, buf: 1 });
  for (let k = 0; k < 300; k++) appSend(core, h.conn, new Uint8Array(100).fill(k & 255), { off: 200 });
  core.poll(1);
  const sent = core.tx().length;
  assert.ok(sent <= 128);
  let ack = h.snd,
    t = 1;
  const recv = [];
  for (let r = 0; r < 400 && recv.length < 30000; r++) {
    for (const s of peer.segs())
      if (s.seq === ack) {
        recv.push(...s.payload);
        ack = (ack + s.payload.length) >>> 0;
      }
    peer.tcp({ seq: h.seq, ack });
    core.poll((t += 50));
  }
  assert.is(recv.length, 30000);
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(t + 1);
  clean(core);
});

test("buffer exhaustion is counted; the connection recovers when buffers return", () => {
  const { core, peer } = setup({ buffers: 64, initRto: 200, minRto: 200 });
  const h = handshake(core, peer, { t: 0 });
  const hog = [];
  for (let b; (b = core.x.bufAlloc(OWNER.KEPT)) >= 0;) hog.push(b);
  const b = hog.pop();
  core.x.bufSetOwner(b, OWNER.APP);
  core.cmd(CMD.SEND, { conn: h.conn, buf: b, off: 10, len: 5 }); // needs a header buffer: none left
  core.poll(1);
  assert.ok(core.stat("BUF_EXHAUSTED") >= 1);
  assert.is(core.tx().length, 0);
  for (const k of hog) core.x.bufUnref(k);
  core.poll(1000);
  const s = peer.segs();
  assert.is(s.length, 1, "retransmitted once buffers were free");
  assert.is(s[0].payload.length, 5);
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(1001);
  clean(core);
});

test("segment-node exhaustion refuses sends and drops out-of-order data, both counted", () => {
  const { core, peer } = setup({ nodes: 3 });
  const h = handshake(core, peer, { win: 0 });
  for (let k = 0; k < 4; k++) appSend(core, h.conn, "x");
  core.poll(1);
  const ev = core.takeEvents();
  assert.is(ev.filter((e) => e.name === "SEND_REFUSED").length, 1);
  assert.is(core.stat("TCP_NODES_EXHAUSTED"), 1);
  peer.tcp({ seq: h.seq + 100, ack: h.snd, payload: "ooo" });
  core.poll(2);
  assert.is(core.stat("TCP_NODES_EXHAUSTED"), 2);
  assert.is(core.held(OWNER.STACK), 3, "only the three queued sends are held");
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(2);
  clean(core);
});

test("connect resolves the peer by ARP first, then sends the SYN", () => {
  const core = createCore();
  core.poll(0);
  core.tx();
  core.cmd(CMD.CONNECT, { buf: PEER_IP, off: 80, conn: 5 });
  core.poll(1);
  const [req] = core.tx().map(parseFrame);
  assert.is(req.arp.op, 1);
  assert.is(req.arp.tpa, PEER_IP);
  core.inject(
    eth(core.mac, PEER_MAC, 0x0806, arpPkt({ op: 2, sha: PEER_MAC, spa: PEER_IP, tha: core.mac, tpa: core.ip })),
  );
  core.poll(2);
  const [syn] = core.tx().map(parseFrame);
  assert.is(syn.tcp.flags, TH.SYN);
  assert.equal([...syn.eth.dst], [...PEER_MAC]);
});

test("TCP to a broadcast address is dropped", () => {
  const { core } = setup();
  core.cmd(CMD.LISTEN, { off: 80, len: 4 });
  core.poll(0);
  const seg = tcpSeg({ src: PEER_IP, dst: 0xffffffff, sport: 1, dport: 80, seq: 1, flags: TH.SYN });
  core.inject(eth(BCAST, PEER_MAC, 0x0800, ipv4({ src: PEER_IP, dst: 0xffffffff, proto: 6, payload: seg })));
  core.poll(1);
  assert.is(core.tx().length, 0);
  assert.is(core.stat("TCP_BAD_SEG"), 1);
  clean(core);
});

test("commands with bogus connection ids, buffers or codes do not trap", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const b = core.appBuf(new Uint8Array(10), 100);
  core.cmd(CMD.SEND, { conn: 0xdeadbeef, ...b });
  core.cmd(CMD.SEND, { conn: h.conn, buf: 999999, off: 0, len: 10 });
  core.cmd(CMD.SEND, { conn: h.conn, buf: b.buf, off: 2040, len: 100 });
  core.cmd(CMD.CLOSE, { conn: 0xffff });
  core.cmd(CMD.ABORT, { conn: 12345678 });
  core.cmd(CMD.RECVD, { conn: 77, buf: 5 });
  core.cmd(CMD.SETOPT, { conn: 77, off: 9, buf: 1 });
  core.cmd(CMD.UDP_SEND, { conn: PEER_IP, buf: 5, off: 0, len: 10, handle: 127 });
  core.cmd(200, { conn: 1 });
  core.poll(1);
  const ev = core.takeEvents();
  assert.is(ev.filter((e) => e.name === "SEND_REFUSED").length, 4);
  assert.is(core.stat("APPIN_BAD"), 1);
  assert.is(core.x.tcpState(h.conn), ST.ESTABLISHED);
  core.x.bufUnref(b.buf);
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(2);
  clean(core);
});

/** ICMP destination unreachable (code) quoting the IP header + 8 bytes of a frame the core sent. */
function unreach(code, sentFrame) {
  const ipq = sentFrame.subarray(14, 14 + 28);
  const m = new Uint8Array(8 + 28);
  m[0] = 3;
  m[1] = code;
  m.set(ipq, 8);
  const c = ~csum(m) & 0xffff;
  m[2] = c >> 8;
  m[3] = c & 255;
  return m;
}

test("ICMP port unreachable quoting our SYN aborts the connect (RFC 1122 hard error)", () => {
  const { core, peer } = setup();
  core.cmd(CMD.CONNECT, { buf: PEER_IP, off: 80, conn: 3 });
  core.poll(1);
  const [syn] = core.tx();
  const forged = syn.slice();
  forged[14 + 20 + 7] ^= 1; // another sequence number: ignored
  core.inject(peer.ipFrame(1, unreach(3, forged)));
  core.poll(2);
  assert.is(core.x.tcpConnCount(), 1);
  core.inject(peer.ipFrame(1, unreach(3, syn)));
  core.poll(3);
  const ev = core.takeEvents().find((e) => e.name === "RESET");
  assert.ok(ev);
  assert.is(ev.aux, R.REFUSED);
  assert.is(core.stat("TCP_ICMP_ABORT"), 1);
  clean(core);
});

test("ICMP unreachable for an established connection is a soft error (ignored)", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  appSend(core, h.conn, "x");
  core.poll(1);
  const [seg] = core.tx();
  for (const code of [0, 1, 3, 4]) core.inject(peer.ipFrame(1, unreach(code, seg)));
  core.poll(2);
  assert.is(core.stat("ICMP_IN"), 4);
  assert.is(core.x.tcpState(h.conn), ST.ESTABLISHED, "RFC 5927: no reset from ICMP on a synchronized connection");
  assert.is(core.stat("TCP_ICMP_ABORT"), 0);
});

test("challenge ACKs are rate limited (RFC 5961 7): 100 burst, 1 per ms", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { t: 10 });
  for (let k = 0; k < 150; k++) peer.tcp({ seq: h.seq + 1 + k, flags: TH.RST });
  core.poll(10);
  assert.is(peer.segs().length, 100);
  assert.is(core.stat("TCP_CHALLENGE_LIMITED"), 50);
  for (let k = 0; k < 20; k++) peer.tcp({ seq: h.seq + 1 + k, flags: TH.RST });
  core.poll(20);
  assert.is(peer.segs().length, 10, "ten tokens after 10 ms");
  assert.is(core.x.tcpState(h.conn), ST.ESTABLISHED);
});

test("out-of-order data one peer can pin is bounded per connection", () => {
  const { core, peer } = setup({ rcvbuf: 16384 });
  const h = handshake(core, peer);
  for (let k = 0; k < 40; k++) peer.tcp({ seq: h.seq + 2 + 100 * k, ack: h.snd, payload: "x" });
  core.poll(1);
  assert.is(core.x.tcpInfo(h.conn, INFO.reasmSegs), 16, "one node per KiB of window");
  assert.is(core.held(OWNER.STACK), 16);
  assert.ok(core.stat("TCP_NODES_EXHAUSTED") > 0);
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(2);
  clean(core);
});

// after every test: the pool invariant holds in every core the test created
test.after.each(() => {
  for (const r of checkCores()) assert.equal(r, { check: 0, detail: 0 }, "pool invariant after the test");
});

test.run();

// IPv6 in the core, packet by packet: addresses and duplicate address detection (RFC 4862),
// neighbor discovery (RFC 4861), ICMPv6 (RFC 4443), the extension header chain and fragments
// (RFC 8200, 5722, 6946, 7112), TCP and UDP over IPv6 with one connection table for both
// families, and path MTU discovery for both families (RFC 1191, 8201, 4821).
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  createCore,
  Peer,
  handshake,
  appSend,
  eth,
  ipv6,
  ipv4,
  icmp6Msg,
  ndMsg,
  tcpSeg,
  tcpOpts,
  udpPkt,
  parseFrame,
  parseIp6,
  CMD,
  EV,
  TH,
  ST,
  OWNER,
  ip,
  ip6,
  mac,
  mapped,
  sameAddr,
  text,
  str,
  rd16,
  rd32,
  CORE_IP6,
  PEER_IP6,
  PEER_MAC,
  PEER_IP,
  checkCores,
} from "./lib/corehost.mjs";
import { TCP_INFO as INFO, TCP_REASONS as R, tapQueueOf } from "../build/index.js";

const CORE_MAC = mac("02:00:00:00:00:01");
const LL = ip6("fe80::ff:fe00:1"); // fe80:: + modified EUI-64 of 02:00:00:00:00:01
const ALL_NODES = ip6("ff02::1");
const SNM = (a) => Uint8Array.from([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, a[13], a[14], a[15]]);
const UNSPEC = new Uint8Array(16);
const hex = (a) => [...a].map((x) => x.toString(16).padStart(2, "0")).join("");

/** A dual-stack core, its duplicate address detection run to the end (1 s), and a peer of `v6`. */
function setup(opts = {}, { v6 = true, resolve = true } = {}) {
  const core = createCore({ msl: 1000, ip6: CORE_IP6, ...opts });
  core.poll(0);
  core.poll(1000);
  core.tx();
  const peer = new Peer(core, { v6, resolve });
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
/** Injects an IPv6 packet from the peer (src, dst default to the peer's and the core's). */
function inject6(core, o, inj = {}) {
  core.inject(eth(o.dmac ?? core.mac, o.smac ?? PEER_MAC, 0x86dd, ipv6({ src: PEER_IP6, dst: CORE_IP6, ...o })), inj);
}
/** A UDP datagram from the peer to the core over IPv6. */
const udp6 = (dport, payload, o = {}) =>
  udpPkt({ src: o.src ?? PEER_IP6, dst: o.dst ?? CORE_IP6, sport: 5000, dport, payload, ...o });
const bindUdp = (core, port) => {
  core.cmd(CMD.UDP_BIND, { off: port, conn: port });
  core.poll();
  return core.takeEvents().find((e) => e.name === "UDP_BOUND").conn;
};

// ---------------------------------------------------------------- addresses, DAD, NDP

test("addresses: link-local from the MAC (modified EUI-64) and the configured one, tentative until DAD ends", () => {
  const core = createCore({ ip6: CORE_IP6 });
  assert.equal(core.addr6(0), { addr: LL, state: 1 });
  assert.equal(core.addr6(1), { addr: CORE_IP6, state: 1 });
  core.poll(0);
  const probes = core
    .tx()
    .map(parseFrame)
    .filter((f) => f.nd);
  assert.is(probes.length, 2, "one DAD probe per address");
  for (const [k, f] of probes.entries()) {
    const a = k === 0 ? LL : CORE_IP6;
    assert.is(f.icmp6.type, 135);
    assert.ok(sameAddr(f.ip6.src, UNSPEC), "from the unspecified address");
    assert.ok(sameAddr(f.ip6.dst, SNM(a)), "to the solicited-node group");
    assert.equal([...f.eth.dst], [0x33, 0x33, 0xff, a[13], a[14], a[15]]);
    assert.ok(sameAddr(f.nd.target, a));
    assert.is(f.nd.lla, null, "no SLLA from the unspecified address");
    assert.is(f.ip6.hlim, 255);
    assert.ok(f.icmp6.csumOk);
  }
  core.poll(999);
  assert.is(core.addr6(1).state, 1, "still tentative before the second is up");
  core.poll(1000);
  assert.is(core.addr6(0).state, 2);
  assert.is(core.addr6(1).state, 2);
  const na = core
    .tx()
    .map(parseFrame)
    .filter((f) => f.nd);
  assert.is(na.length, 2, "one unsolicited advertisement per address");
  for (const f of na) {
    assert.is(f.icmp6.type, 136);
    assert.ok(sameAddr(f.ip6.dst, ALL_NODES));
    assert.is(f.nd.flags & 0xe0, 0x20, "override, not solicited");
    assert.equal([...f.nd.lla], [...CORE_MAC]);
  }
  clean(core);
});

test("DAD: an advertisement or another probe for a tentative address makes it duplicate, never used", () => {
  for (const how of ["na", "ns"]) {
    const core = createCore({ ip6: CORE_IP6 });
    core.poll(0);
    core.tx();
    const msg =
      how === "na"
        ? ndMsg({ src: PEER_IP6, dst: ALL_NODES, type: 136, target: CORE_IP6, lla: PEER_MAC, flags: 0x20 })
        : ndMsg({ src: UNSPEC, dst: SNM(CORE_IP6), type: 135, target: CORE_IP6 });
    const src = how === "na" ? PEER_IP6 : UNSPEC;
    const dst = how === "na" ? ALL_NODES : SNM(CORE_IP6);
    core.inject(
      eth([0x33, 0x33, ...dst.slice(12)], PEER_MAC, 0x86dd, ipv6({ src, dst, nh: 58, payload: msg, hlim: 255 })),
    );
    core.poll(10);
    assert.is(core.stat("ND_DAD_FAIL"), 1, how);
    core.poll(1000);
    assert.is(core.addr6(1).state, 3, "duplicate");
    assert.is(core.addr6(0).state, 2, "the link-local address was not contested");
    const out = core
      .tx()
      .map(parseFrame)
      .filter((f) => f.nd);
    assert.is(out.length, 1, "only the link-local address is announced");
    assert.ok(sameAddr(out[0].nd.target, LL));
    // nothing is answered on the duplicate address
    const peer = new Peer(core, { v6: true });
    listen(core);
    peer.tcp({ seq: 1, flags: TH.SYN, opts: { mss: 1440 } });
    core.poll(1100);
    assert.is(peer.segs().length, 0);
    assert.ok(core.stat("IP6_NOT_US") >= 1);
    // and no connection can be opened from it
    core.cmdAddr(CMD.CONNECT, PEER_IP6, { off: 80, conn: 5 });
    core.poll(1200);
    const err = core.takeEvents().find((e) => e.name === "ERROR");
    assert.is(err.aux, R.NOADDR);
    clean(core);
  }
});

test("NS for our address: a solicited advertisement to the solicitor, whose address is learned", () => {
  const { core } = setup({}, { resolve: false });
  const ns = ndMsg({ src: PEER_IP6, dst: SNM(CORE_IP6), type: 135, target: CORE_IP6, lla: PEER_MAC });
  core.inject(
    eth(
      [0x33, 0x33, 0xff, 0, 0, 2],
      PEER_MAC,
      0x86dd,
      ipv6({ src: PEER_IP6, dst: SNM(CORE_IP6), nh: 58, payload: ns, hlim: 255 }),
    ),
  );
  core.poll(1100);
  const [f] = core.tx().map(parseFrame);
  assert.is(f.icmp6.type, 136);
  assert.ok(f.icmp6.csumOk);
  assert.equal([...f.eth.dst], [...PEER_MAC], "unicast to the SLLA");
  assert.ok(sameAddr(f.ip6.src, CORE_IP6));
  assert.ok(sameAddr(f.ip6.dst, PEER_IP6));
  assert.is(f.nd.flags & 0xe0, 0x60, "solicited and override");
  assert.ok(sameAddr(f.nd.target, CORE_IP6));
  assert.equal([...f.nd.lla], [...CORE_MAC]);
  const s = core.x.stackScratch();
  core.u8.set(PEER_IP6, s);
  assert.is(core.x.stackNeighLookup(s), 1, "the solicitor is in the neighbor cache");
  assert.is(core.stat("ND_NS_IN"), 1);
  clean(core);
});

test("NDP: messages failing RFC 4861's checks are counted and dropped", () => {
  const { core } = setup({}, { resolve: false });
  const cases = [
    // hop limit not 255 (sent from off-link)
    { hlim: 64, msg: ndMsg({ src: PEER_IP6, dst: CORE_IP6, type: 135, target: CORE_IP6, lla: PEER_MAC }) },
    // a DAD probe (unspecified source) carrying an SLLA
    {
      src: UNSPEC,
      dst: SNM(CORE_IP6),
      msg: ndMsg({ src: UNSPEC, dst: SNM(CORE_IP6), type: 135, target: CORE_IP6, lla: PEER_MAC }),
    },
    // a multicast target
    { msg: ndMsg({ src: PEER_IP6, dst: CORE_IP6, type: 135, target: ALL_NODES }) },
    // a solicited advertisement to a multicast group
    {
      dst: ALL_NODES,
      msg: ndMsg({ src: PEER_IP6, dst: ALL_NODES, type: 136, target: PEER_IP6, lla: PEER_MAC, flags: 0x60 }),
    },
    // a bad checksum
    { msg: ndMsg({ src: PEER_IP6, dst: CORE_IP6, type: 135, target: CORE_IP6, lla: PEER_MAC, badCsum: true }) },
    // an option of length 0
    {
      msg: icmp6Msg({
        src: PEER_IP6,
        dst: CORE_IP6,
        type: 135,
        body: Uint8Array.from([...CORE_IP6, 1, 0, 0, 0, 0, 0, 0, 0]),
      }),
    },
  ];
  for (const c of cases) {
    const dst = c.dst ?? CORE_IP6;
    const dmac = dst[0] === 0xff ? [0x33, 0x33, ...dst.slice(12)] : core.mac;
    core.inject(
      eth(dmac, PEER_MAC, 0x86dd, ipv6({ src: c.src ?? PEER_IP6, dst, nh: 58, payload: c.msg, hlim: c.hlim ?? 255 })),
    );
  }
  core.poll(1100);
  assert.is(core.tx().length, 0, "nothing answered");
  assert.is(core.stat("ICMP6_BAD"), cases.length);
  clean(core);
});

test("NDP spoofing: an advertisement claiming our address changes nothing; our own source address is refused", () => {
  const { core, peer } = setup();
  const na = ndMsg({ src: PEER_IP6, dst: ALL_NODES, type: 136, target: CORE_IP6, lla: PEER_MAC, flags: 0x20 });
  core.inject(
    eth(
      [0x33, 0x33, 0, 0, 0, 1],
      PEER_MAC,
      0x86dd,
      ipv6({ src: PEER_IP6, dst: ALL_NODES, nh: 58, payload: na, hlim: 255 }),
    ),
  );
  core.poll(1100);
  assert.is(core.stat("ND_SPOOF"), 1);
  assert.is(core.addr6(1).state, 2, "still ours");
  const ns = ndMsg({ src: CORE_IP6, dst: CORE_IP6, type: 135, target: CORE_IP6, lla: PEER_MAC });
  inject6(core, { src: CORE_IP6, nh: 58, payload: ns, hlim: 255 });
  core.poll(1101);
  assert.is(core.stat("IP6_BAD_SRC"), 1);
  assert.is(core.tx().length, 0);
  // the address still works
  const echo = icmp6Msg({ src: PEER_IP6, dst: CORE_IP6, type: 128, param: 0x00010001 });
  inject6(core, { nh: 58, payload: echo });
  core.poll(1102);
  assert.is(peer.frames()[0].icmp6.type, 129);
  clean(core);
});

test("CFG_STEER over IPv6: connect's ephemeral ports hash to our queue with both addresses' words", () => {
  const { core, peer } = setup({ steer: (4 << 16) | 3, maxConns: 300 });
  for (let k = 0; k < 200; k++) {
    core.cmdAddr(CMD.CONNECT, PEER_IP6, { off: 443 + (k % 5), conn: k });
    core.poll(1100);
  }
  const syns = peer.segs();
  assert.is(syns.length, 200);
  const queues = syns.map((s) =>
    tapQueueOf(
      { localAddress: "2001:2:0:63::2", localPort: s.sport, remoteAddress: "2001:2:0:63::1", remotePort: s.dport },
      4,
    ),
  );
  assert.equal([...new Set(queues)], [3]);
  assert.is(core.takeEvents().filter((e) => e.name === "ERROR").length, 0);
});

test("resolution: a packet to an unknown neighbor waits for its advertisement, solicited at its solicited-node group", () => {
  const { core } = setup({}, { resolve: false });
  core.cmdAddr(CMD.CONNECT, PEER_IP6, { off: 80, conn: 3 });
  core.poll(1100);
  const [ns] = core.tx().map(parseFrame);
  assert.is(ns.icmp6.type, 135);
  assert.ok(sameAddr(ns.ip6.dst, SNM(PEER_IP6)));
  assert.equal([...ns.eth.dst], [0x33, 0x33, 0xff, 0, 0, 1]);
  assert.ok(sameAddr(ns.ip6.src, CORE_IP6));
  assert.ok(sameAddr(ns.nd.target, PEER_IP6));
  assert.equal([...ns.nd.lla], [...CORE_MAC], "with our SLLA");
  const na = ndMsg({ src: PEER_IP6, dst: CORE_IP6, type: 136, target: PEER_IP6, lla: PEER_MAC, flags: 0x60 });
  inject6(core, { nh: 58, payload: na, hlim: 255 });
  core.poll(1101);
  const [syn] = core.tx().map(parseFrame);
  assert.ok(syn.tcp, "the queued SYN goes");
  assert.is(syn.tcp.flags, TH.SYN);
  assert.equal([...syn.eth.dst], [...PEER_MAC]);
  assert.is(syn.tcp.opts.mss, 1500 - 60, "MSS for IPv6: MTU less 40 + 20");
  assert.ok(syn.tcp.csumOk);
  core.cmd(CMD.ABORT, { conn: core.takeEvents()[0]?.conn ?? 0 });
  core.x.stackPoll(1102);
  clean(core);
});

test("ICMPv6 echo: answered in place to either of our addresses, id, sequence and data kept", () => {
  const { core, peer } = setup();
  const data = text("ping over six");
  for (const [src, dst] of [
    [PEER_IP6, CORE_IP6],
    [ip6("fe80::1"), LL],
  ]) {
    core.neighAdd(src, PEER_MAC);
    const m = icmp6Msg({ src, dst, type: 128, param: 0x12340007, body: data });
    inject6(core, { src, dst, nh: 58, payload: m });
    core.poll(1100);
    const [f] = peer.frames();
    assert.is(f.icmp6.type, 129);
    assert.ok(f.icmp6.csumOk);
    assert.is(f.icmp6.param, 0x12340007);
    assert.is(str(f.icmp6.body), "ping over six");
    assert.ok(sameAddr(f.ip6.src, dst));
    assert.ok(sameAddr(f.ip6.dst, src));
  }
  assert.is(core.stat("ICMP_ECHO_REPLIED"), 2);
  clean(core);
});

// ---------------------------------------------------------------- TCP over IPv6

test("TCP over IPv6: handshake with every option, data both ways, the peer's address in the event's lane", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { opts: { mss: 1440, ws: 7, sackOk: true, ts: [100, 0] }, t: 1100 });
  assert.is(h.synack.opts.mss, 1440, "ours: 1500 - 60");
  assert.ok(h.synack.opts.sackOk && h.synack.opts.ts && h.synack.opts.ws !== undefined);
  const acc = core.events.find((e) => e.name === "ACCEPTED") ?? null;
  const out = core.x.stackScratch();
  assert.is(core.x.tcpAddr(h.conn, 1, out), 6);
  assert.ok(sameAddr(core.u8.slice(out, out + 16), PEER_IP6), "remote");
  assert.is(core.x.tcpAddr(h.conn, 0, out), 6);
  assert.ok(sameAddr(core.u8.slice(out, out + 16), CORE_IP6), "local");
  assert.is(acc, null, "handshake consumed the event");
  peer.tcp({ seq: h.seq, ack: h.snd, payload: "hello six", opts: { ts: [101, h.synack.opts.ts[0]] } });
  core.poll(1101);
  const data = core.takeEvents().find((e) => e.name === "DATA");
  assert.is(str(data.data), "hello six");
  appSend(core, h.conn, "and back");
  core.poll(1102);
  const seg = peer.segs().find((s) => s.payload.length);
  assert.is(str(seg.payload), "and back");
  assert.is(core.x.tcpInfo(h.conn, INFO.mss), 1440 - 12, "MSS less the timestamp option");
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(1103);
  clean(core);
});

test("one table, both families: a listener takes IPv4 and IPv6 peers, the lane tells them apart", () => {
  const { core } = setup();
  const p6 = new Peer(core, { v6: true });
  const p4 = new Peer(core);
  listen(core);
  p6.tcp({ seq: 10, flags: TH.SYN, opts: { mss: 1440 } });
  p4.tcp({ seq: 20, flags: TH.SYN, opts: { mss: 1460 } });
  core.poll(1100);
  const segs = core.tx().map(parseFrame);
  const sa6 = segs.find((f) => f.ip6).tcp;
  const sa4 = segs.find((f) => f.ip).tcp;
  assert.is(sa6.opts.mss, 1440);
  assert.is(sa4.opts.mss, 1460);
  p6.tcp({ seq: 11, ack: sa6.seq + 1 });
  p4.tcp({ seq: 21, ack: sa4.seq + 1 });
  core.poll(1101);
  const acc = core.takeEvents().filter((e) => e.name === "ACCEPTED");
  assert.is(acc.length, 2);
  const [a6, a4] = [acc.find((e) => e.buf === 0), acc.find((e) => e.buf !== 0)];
  assert.ok(sameAddr(a6.addr, PEER_IP6), "IPv6 peer: 0 in buf, the address in the lane");
  assert.is(a4.buf, PEER_IP);
  assert.ok(sameAddr(a4.addr, mapped(PEER_IP)), "IPv4 peer: mapped in the lane");
  assert.is(core.x.tcpConnCount(), 2);
  for (const e of acc) core.cmd(CMD.ABORT, { conn: e.conn });
  core.poll(1102);
  clean(core);
});

test("RST for a closed port over IPv6, checksum right", () => {
  const { core, peer } = setup();
  peer.tcp({ seq: 5, flags: TH.SYN, dport: 81 });
  core.poll(1100);
  const [f] = peer.frames();
  assert.ok(f.ip6 && f.tcp.csumOk);
  assert.is(f.tcp.flags, TH.RST | TH.ACK);
  assert.is(f.tcp.ack, 6);
  clean(core);
});

// ---------------------------------------------------------------- UDP over IPv6

test("UDP over IPv6: received with the source in the lane, sent with a mandatory checksum; a zero checksum is refused", () => {
  const { core, peer } = setup();
  const h = bindUdp(core, 53);
  inject6(core, { nh: 17, payload: udp6(53, text("q6")) });
  inject6(core, { nh: 17, payload: udp6(53, text("nocsum"), { noCsum: true }) });
  core.poll(1100);
  const ev = core.takeEvents().filter((e) => e.name === "UDP");
  assert.is(ev.length, 1);
  assert.is(str(ev[0].data), "q6");
  assert.is(ev[0].conn, 0, "no IPv4 source");
  assert.ok(sameAddr(ev[0].addr, PEER_IP6));
  assert.is(core.stat("UDP_BAD_CSUM"), 1);
  const b = core.appBuf(text("a6"));
  core.u8.set(PEER_IP6, core.laneRow(core.rings.ain));
  core.cmd(CMD.UDP_SEND, { ...b, conn: 0, aux: 5000, handle: h });
  core.poll(1101);
  const [f] = peer.frames();
  assert.ok(f.ip6 && f.udp);
  assert.ok(f.udp.csumOk && f.udp.csum !== 0);
  assert.is(str(f.udp.payload), "a6");
  assert.ok(sameAddr(f.ip6.src, CORE_IP6));
  assert.is(f.udp.dport, 5000);
  clean(core);
});

test("UDP to a closed port: ICMPv6 port unreachable quoting the datagram; none for a multicast destination", () => {
  const { core, peer } = setup();
  inject6(core, { nh: 17, payload: udp6(9999, text("x")) });
  inject6(core, {
    dst: ALL_NODES,
    dmac: [0x33, 0x33, 0, 0, 0, 1],
    nh: 17,
    payload: udp6(9999, text("y"), { dst: ALL_NODES }),
  });
  core.poll(1100);
  const fs = peer.frames();
  assert.is(fs.length, 1);
  const [f] = fs;
  assert.is(f.icmp6.type, 1);
  assert.is(f.icmp6.code, 4);
  assert.ok(f.icmp6.csumOk);
  const q = parseIp6(f.icmp6.body);
  assert.ok(sameAddr(q.src, PEER_IP6), "the quote is the offending packet");
  assert.is(rd16(f.icmp6.body, 42), 9999);
  assert.is(core.stat("UDP_NO_PORT"), 2);
  clean(core);
});

// ---------------------------------------------------------------- extension headers

/** Extension header `type` (0 hop-by-hop, 60 destination options, 43 routing) of 8 * (1 + len) bytes. */
const ext = (type, body) => {
  const n = Math.ceil((body.length + 2) / 8) * 8;
  const b = new Uint8Array(n);
  b[1] = n / 8 - 1;
  b.set(body, 2);
  return { type, bytes: b };
};
const padN = (n) => [1, n - 2, ...new Array(n - 2).fill(0)];

test("hop-by-hop and destination options are skipped by their rules; a SYN behind them is answered", () => {
  const { core, peer } = setup();
  listen(core);
  const syn = tcpSeg({
    src: PEER_IP6,
    dst: CORE_IP6,
    sport: 40000,
    dport: 80,
    seq: 1,
    flags: TH.SYN,
    opts: tcpOpts({ mss: 1440 }),
  });
  // Router Alert (5) in hop-by-hop, PadN and an unknown "skip" option (type 0x1e) in destination options
  inject6(core, { nh: 6, payload: syn, ext: [ext(0, [5, 2, 0, 0, 1, 0]), ext(60, [0x1e, 2, 7, 7, ...padN(2)])] });
  core.poll(1100);
  const [s] = peer.segs();
  assert.is(s.flags, TH.SYN | TH.ACK);
  clean(core);
});

test("options that say discard: silently (01), with a parameter problem pointing at them (10, and 11 unless multicast)", () => {
  const { core, peer } = setup();
  const h = bindUdp(core, 53);
  const u = udp6(53, text("opt"));
  inject6(core, { nh: 17, payload: u, ext: [ext(60, [0x41, 0, ...padN(4)])] }); // 01: discard
  inject6(core, { nh: 17, payload: u, ext: [ext(60, [0x81, 0, ...padN(4)])] }); // 10: discard + ICMP
  inject6(core, { nh: 17, payload: u, ext: [ext(60, [0xc1, 0, ...padN(4)])] }); // 11: discard + ICMP (unicast)
  inject6(core, {
    dst: ALL_NODES,
    dmac: [0x33, 0x33, 0, 0, 0, 1],
    nh: 17,
    payload: udp6(53, text("m"), { dst: ALL_NODES }),
    ext: [ext(60, [0xc1, 0, ...padN(4)])],
  });
  core.poll(1100);
  assert.is(core.takeEvents().filter((e) => e.name === "UDP").length, 0);
  assert.is(core.stat("IP6_EXTHDR_DROP"), 4);
  const pp = peer.frames().filter((f) => f.icmp6);
  assert.is(pp.length, 2, "10 and unicast 11");
  for (const f of pp) {
    assert.is(f.icmp6.type, 4);
    assert.is(f.icmp6.code, 2);
    assert.is(f.icmp6.param, 42, "pointer: the option, after the 40-byte header and the extension header's 2");
  }
  core.cmd(CMD.UDP_UNBIND, { conn: h });
  core.poll(1101);
  clean(core);
});

test("a routing header with segments left is refused (type 0 included); with none left it is skipped", () => {
  const { core, peer } = setup();
  bindUdp(core, 53);
  const u = udp6(53, text("rh"));
  inject6(core, { nh: 17, payload: u, ext: [ext(43, [0, 1, 0, 0, 0, 0, ...PEER_IP6])] }); // type 0, 1 left
  inject6(core, { nh: 17, payload: u, ext: [ext(43, [4, 0, 0, 0, 0, 0])] }); // segments left 0
  core.poll(1100);
  const ev = core.takeEvents().filter((e) => e.name === "UDP");
  assert.is(ev.length, 1);
  assert.is(str(ev[0].data), "rh");
  const [f] = peer.frames();
  assert.is(f.icmp6.type, 4);
  assert.is(f.icmp6.code, 0);
  assert.is(f.icmp6.param, 42, "pointer: the routing type field");
  clean(core);
});

test("bad chains: hop-by-hop not first, unknown next header, too many headers, truncated headers; never a trap", () => {
  const { core, peer } = setup();
  bindUdp(core, 53);
  const u = udp6(53, text("x"));
  inject6(core, { nh: 17, payload: u, ext: [ext(60, padN(6)), ext(0, padN(6))] }); // HbH second
  inject6(core, { nh: 253, payload: u }); // unknown upper layer
  inject6(core, { nh: 17, payload: u, ext: Array.from({ length: 9 }, () => ext(60, padN(6))) }); // 9 headers
  inject6(core, { nh: 59, payload: new Uint8Array(0) }); // no next header
  const trunc = ipv6({ src: PEER_IP6, dst: CORE_IP6, nh: 17, payload: u, ext: [ext(60, padN(14))] });
  core.inject(eth(core.mac, PEER_MAC, 0x86dd, trunc.subarray(0, 40 + 8))); // extension header cut short
  const lying = ipv6({ src: PEER_IP6, dst: CORE_IP6, nh: 17, payload: u, ext: [ext(60, padN(6))] });
  lying[41] = 200; // its length runs past the packet
  core.inject(eth(core.mac, PEER_MAC, 0x86dd, lying));
  const long = ipv6({ src: PEER_IP6, dst: CORE_IP6, nh: 17, payload: u, plen: 500 }); // payload length past the frame
  core.inject(eth(core.mac, PEER_MAC, 0x86dd, long));
  const v4 = ipv6({ src: PEER_IP6, dst: CORE_IP6, nh: 17, payload: u });
  v4[0] = 0x45;
  core.inject(eth(core.mac, PEER_MAC, 0x86dd, v4));
  core.poll(1100);
  assert.is(core.takeEvents().filter((e) => e.name === "UDP").length, 0);
  assert.is(core.stat("IP6_EXTHDR_DROP"), 4);
  assert.is(core.stat("IP6_BAD_HDR"), 4);
  const pp = peer.frames().filter((f) => f.icmp6);
  assert.equal(
    pp.map((f) => [f.icmp6.type, f.icmp6.code, f.icmp6.param]),
    [
      [4, 1, 40], // the next-header field naming hop-by-hop: the destination options header's first byte
      [4, 1, 6], // the IPv6 header's next-header field
    ],
  );
  clean(core);
});

// ---------------------------------------------------------------- fragments

/** Fragment headers for `payload` (the fragmentable part: an upper-layer header and data) cut at `size`. */
function frags6(nh, payload, size, { id = 0x1234, order } = {}) {
  const out = [];
  for (let o = 0; o < payload.length; o += size) {
    const more = o + size < payload.length;
    const fh = new Uint8Array(8);
    fh[2] = (o >> 8) & 0xff;
    fh[3] = (o & 0xf8) | (more ? 1 : 0);
    fh[4] = id >>> 24;
    fh[5] = (id >>> 16) & 255;
    fh[6] = (id >>> 8) & 255;
    fh[7] = id & 255;
    out.push({ nh, payload: payload.subarray(o, o + size), ext: [{ type: 44, bytes: fh }] });
  }
  return order ? order.map((k) => out[k]) : out;
}
const bigUdp = (n, dport = 53) =>
  udp6(
    dport,
    Uint8Array.from({ length: n }, (_, i) => (i * 13) & 255),
  );

test("IPv6 fragments in any order are reassembled by reference; the datagram is one chain of events", () => {
  const { core } = setup();
  bindUdp(core, 53);
  const u = bigUdp(3000);
  for (const f of frags6(17, u, 1232, { order: [2, 1, 1, 0] })) inject6(core, f);
  core.poll(1100);
  const ev = core.takeEvents().filter((e) => e.name === "UDP");
  assert.is(ev.length, 3);
  assert.equal(Uint8Array.from(ev.flatMap((e) => [...e.data])), u.subarray(8));
  assert.ok(sameAddr(ev[0].addr, PEER_IP6));
  assert.is(core.stat("IP_REASM_OK"), 1);
  assert.is(core.x.stackFragHeld(), 0);
  clean(core);
});

test("IPv6 fragments: overlaps drop the datagram, a first fragment without the upper-layer header is dropped, an atomic fragment is whole", () => {
  const { core } = setup();
  bindUdp(core, 53);
  const u = bigUdp(2000);
  const [a, b] = frags6(17, u, 1000);
  inject6(core, a);
  const ov = frags6(17, u.subarray(992), 600, { id: 0x1234 })[0];
  ov.ext[0].bytes[2] = (992 >> 8) & 255;
  ov.ext[0].bytes[3] = (992 & 0xf8) | 1;
  inject6(core, ov);
  inject6(core, b);
  core.poll(1100);
  assert.is(core.takeEvents().filter((e) => e.name === "UDP").length, 0, "overlap");
  assert.ok(core.stat("IP_REASM_DROP") >= 1);
  const tiny = frags6(17, u, 8, { id: 9 })[0]; // 8 bytes: the UDP header alone is fine
  const tcpTiny = frags6(6, new Uint8Array(64), 16, { id: 10 })[0]; // 16 bytes of a TCP header: too short
  inject6(core, tcpTiny);
  assert.ok(tiny);
  const atomic = { nh: 17, payload: udp6(53, text("whole")), ext: [{ type: 44, bytes: new Uint8Array(8) }] };
  inject6(core, atomic);
  core.poll(1101);
  assert.is(core.stat("IP_FRAG_DROP"), 1, "RFC 7112");
  const ev = core.takeEvents().filter((e) => e.name === "UDP");
  assert.is(str(ev[0].data), "whole", "RFC 6946");
  core.poll(70000);
  assert.is(core.x.stackFragHeld(), 0, "held fragments time out (60 s)");
  clean(core);
});

// ---------------------------------------------------------------- path MTU

test("packet too big: a quoted in-flight segment lowers the path MTU (never below 1280) and what no longer fits goes again", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { opts: { mss: 1440 }, t: 1100 });
  appSend(core, h.conn, new Uint8Array(1440).fill(1), { off: 256 });
  appSend(core, h.conn, new Uint8Array(1440).fill(2), { off: 256 });
  core.poll(1101);
  const sent = peer.frames().filter((f) => f.tcp && f.tcp.payload.length);
  assert.is(sent.length, 2);
  assert.is(sent[0].tcp.payload.length, 1440);
  const quote = (f, len = 48) => new Uint8Array(f.eth.payload.buffer, f.eth.payload.byteOffset, len);
  // a PTB whose quote is outside the window changes nothing
  const stale = quote(sent[0]).slice();
  stale[44] ^= 0x80; // sequence number far away
  const ptb = (q, mtu) => icmp6Msg({ src: PEER_IP6, dst: CORE_IP6, type: 2, param: mtu, body: q });
  inject6(core, { nh: 58, payload: ptb(stale, 1300) });
  core.poll(1102);
  assert.is(core.x.tcpInfo(h.conn, INFO.pmtu), 1500);
  inject6(core, { nh: 58, payload: ptb(quote(sent[0]), 1000) });
  core.poll(1103);
  assert.is(core.x.tcpInfo(h.conn, INFO.pmtu), 1280, "clamped to IPv6's minimum");
  assert.is(core.x.tcpInfo(h.conn, INFO.mss), 1280 - 60);
  assert.is(core.stat("ICMP_PTB"), 1);
  const again = peer.frames().filter((f) => f.tcp && f.tcp.payload.length);
  assert.ok(again.length >= 3, "2880 bytes in 1220-byte segments");
  assert.ok(again.every((f) => f.eth.payload.length <= 1280));
  assert.is(again[0].tcp.seq, h.snd, "from SND.UNA");
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(1104);
  clean(core);
});

test("fragmentation needed (IPv4): the next-hop MTU lowers the path MTU, floored at 576", () => {
  const { core, peer } = setup({}, { v6: false });
  const h = handshake(core, peer, { opts: { mss: 1460 }, t: 1100 });
  appSend(core, h.conn, new Uint8Array(1460).fill(3), { off: 256 });
  core.poll(1101);
  const [d] = peer.frames().filter((f) => f.tcp && f.tcp.payload.length);
  const q = new Uint8Array(d.eth.payload.buffer, d.eth.payload.byteOffset, 28).slice();
  const icmp = (mtu) => {
    const m = new Uint8Array(8 + q.length);
    m[0] = 3;
    m[1] = 4;
    m[6] = mtu >> 8;
    m[7] = mtu & 255;
    m.set(q, 8);
    let s = 0;
    for (let i = 0; i < m.length; i += 2) s += (m[i] << 8) | (m[i + 1] ?? 0);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    const c = ~s & 0xffff;
    m[2] = c >> 8;
    m[3] = c & 255;
    return m;
  };
  core.inject(peer.ipFrame(1, icmp(1400)));
  core.poll(1102);
  assert.is(core.x.tcpInfo(h.conn, INFO.pmtu), 1400);
  assert.is(core.x.tcpInfo(h.conn, INFO.mss), 1360);
  const re = peer.frames().filter((f) => f.tcp && f.tcp.payload.length);
  assert.equal(
    re.map((f) => f.tcp.payload.length),
    [1360, 100],
  );
  core.inject(peer.ipFrame(1, icmp(300)));
  core.poll(1103);
  assert.is(core.x.tcpInfo(h.conn, INFO.pmtu), 576);
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(1104);
  clean(core);
});

test("black hole: three timeouts in a row at full size halve the path MTU (RFC 4821), and smaller segments get through", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { opts: { mss: 1440 }, t: 1100 });
  for (let k = 0; k < 4; k++) appSend(core, h.conn, new Uint8Array(1000).fill(4), { off: 256 });
  let t = 1101;
  core.poll(t);
  peer.frames();
  for (let k = 0; k < 20 && core.stat("TCP_RTO") < 3; k++) {
    t = core.deadline;
    core.poll(t);
    peer.frames(); // lost: nothing comes back
  }
  assert.is(core.stat("TCP_MTU_PROBE"), 1);
  assert.is(core.x.tcpInfo(h.conn, INFO.pmtu), 1280, "half of 1500, floored at 1280");
  t = core.deadline;
  core.poll(t);
  const segs = peer.segs().filter((s) => s.payload.length);
  assert.ok(segs.length > 0 && segs.every((s) => s.payload.length <= 1280 - 60));
  peer.tcp({ seq: h.seq, ack: h.snd + 4000 });
  core.poll(t + 1);
  assert.is(core.x.tcpInfo(h.conn, INFO.inFlight), 0);
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(t + 2);
  clean(core);
});

// ---------------------------------------------------------------- SYN cookies, TSO

test("SYN cookies over IPv6: a full queue answers statelessly and the cookie's ACK opens the connection", () => {
  const { core, peer } = setup({ synq: 1 });
  listen(core, 80, 1);
  peer.tcp({ seq: 1, flags: TH.SYN, sport: 1111, opts: { mss: 1440 } });
  peer.tcp({ seq: 500, flags: TH.SYN, sport: 2222, opts: { mss: 1440 } });
  core.poll(1100);
  const sa = peer.segs().find((s) => s.dport === 2222);
  assert.is(core.stat("TCP_SYNQ_OVERFLOW"), 1);
  assert.is(core.x.tcpConnCount(), 1);
  peer.tcp({ seq: 501, ack: sa.seq + 1, sport: 2222 });
  core.poll(1101);
  assert.is(core.stat("TCP_COOKIE_OK"), 1);
  const acc = core.takeEvents().find((e) => e.name === "ACCEPTED");
  assert.ok(sameAddr(acc.addr, PEER_IP6));
  assert.is(acc.off, 2222);
  const bad = tcpSeg({ src: PEER_IP6, dst: CORE_IP6, sport: 3333, dport: 80, seq: 9, ack: sa.seq + 1, flags: TH.ACK });
  inject6(core, { nh: 6, payload: bad });
  core.poll(1102);
  assert.is(core.stat("TCP_COOKIE_BAD"), 1, "a cookie is bound to the addresses and ports");
  core.cmd(CMD.ABORT, { conn: acc.conn });
  core.poll(1103);
  core.x.stackPoll(1104);
  core.tx();
});

test("TSO over IPv6: a superframe of whole segments asks for GSO TCPv6 with the IPv6 offsets", () => {
  const { core, peer } = setup({ tso: 65535 });
  const h = handshake(core, peer, { opts: { mss: 1440, ws: 7 }, t: 1100, win: 65535 });
  for (let k = 0; k < 3; k++) appSend(core, h.conn, new Uint8Array(1200).fill(5 + k), { off: 256 });
  const slots = [];
  core.poll(1101);
  for (let s; (s = core.shift(core.rings.tx));) {
    slots.push(s);
    core.x.bufUnref(s.buf);
  }
  const first = slots[0];
  assert.is((first.flags >>> 4) & 15, 4, "GSO TCPv6");
  assert.is((first.flags >>> 8) & 255, 54, "csum_start: 14 + 40");
  assert.is((first.flags >>> 16) & 255, 16, "csum_offset");
  assert.is(first.conn & 0xffff, 1440, "gso_size");
  assert.is(first.conn >>> 16, 74, "hdr_len: 14 + 40 + 20");
  core.cmd(CMD.ABORT, { conn: h.conn });
  core.poll(1102);
  clean(core);
});

test.after.each(() => {
  for (const c of checkCores()) assert.is(c.check, 0, c.detail);
});

test.run();

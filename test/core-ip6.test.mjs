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
import { TCP_INFO as INFO, TCP_REASONS as R } from "../build/index.js";

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

test.after.each(() => {
  for (const c of checkCores()) assert.is(c.check, 0, c.detail);
});

test.run();

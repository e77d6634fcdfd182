// Link, ARP, IPv4, ICMP and UDP behaviour of the Wasm core, packet by packet.
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  createCore,
  Peer,
  eth,
  arpPkt,
  ipv4,
  udpPkt,
  icmpEcho,
  parseFrame,
  csum,
  ip,
  mac,
  BCAST,
  OWNER,
  SF_MORE,
  CMD,
  EV,
  RXF_CSUM_VALID,
  RXF_NEEDS_CSUM,
  PEER_IP,
  PEER_MAC,
  text,
  str,
  rd16,
  be16,
  checkCores,
} from "./lib/corehost.mjs";

const ME = ip("198.18.0.1");
const OTHER = ip("198.18.0.9");
const OTHER_MAC = mac("02:00:00:00:00:09");

function fresh(opts = {}) {
  const core = createCore(opts);
  core.poll(0);
  core.tx(); // gratuitous ARP
  return core;
}
/** Pool invariant, nothing left with the NIC or the stack. */
function clean(core) {
  core.tx();
  assert.is(core.check(), 0, "pool invariant");
  assert.is(core.held(OWNER.NIC), 0, "NIC buffers leaked");
  assert.is(core.held(OWNER.STACK), 0, "STACK buffers leaked");
  assert.is(core.held(OWNER.APP), 0, "APP buffers leaked");
}
function bindUdp(core, port) {
  core.cmd(CMD.UDP_BIND, { off: port, conn: 5 });
  core.poll();
  const ev = core.takeEvents().find((e) => e.code === EV.UDP_BOUND);
  assert.ok(ev, "bound");
  return ev.conn;
}
function udpSendCmd(core, h, dst, dport, bytes, { off = 128, owner = OWNER.APP } = {}) {
  const b = core.appBuf(bytes, off, owner);
  core.cmd(CMD.UDP_SEND, { ...b, conn: dst, aux: dport, handle: h });
  return b;
}

// ---------------------------------------------------------------- Ethernet

test("first poll sends a gratuitous ARP announcing our address", () => {
  const core = createCore();
  core.poll(0);
  const f = core.tx().map(parseFrame);
  assert.is(f.length, 1);
  assert.equal([...f[0].eth.dst], [...BCAST]);
  assert.is(f[0].arp.op, 1);
  assert.is(f[0].arp.spa, ME);
  assert.is(f[0].arp.tpa, ME);
  assert.equal([...f[0].arp.sha], [...core.mac]);
  clean(core);
});

test("runt frame is counted and its buffer freed", () => {
  const core = fresh();
  core.inject(new Uint8Array(10));
  core.poll(1);
  assert.is(core.stat("ETH_SHORT"), 1);
  clean(core);
});

test("unknown ethertype and VLAN tag are counted", () => {
  const core = fresh();
  core.inject(eth(core.mac, PEER_MAC, 0x88b5, new Uint8Array(46)));
  core.inject(eth(core.mac, PEER_MAC, 0x8100, new Uint8Array(46)));
  core.poll(1);
  assert.is(core.stat("ETH_TYPE"), 2);
  clean(core);
});

test("frame for another MAC is dropped", () => {
  const core = fresh();
  const p = new Peer(core);
  core.inject(eth(OTHER_MAC, PEER_MAC, 0x0800, ipv4({ src: PEER_IP, dst: ME, proto: 1, payload: icmpEcho({}) })));
  core.poll(1);
  assert.is(core.stat("ETH_NOT_US"), 1);
  assert.is(core.tx().length, 0);
  clean(core);
  p;
});

test("RX slot naming a buffer the NIC does not own is refused and left alone", () => {
  const core = fresh();
  const b = core.appBuf(new Uint8Array(60), 0);
  core.push(core.rings.rx, b.buf, 0, 60, 0, 0);
  core.poll(1);
  assert.is(core.stat("RX_BAD_SLOT"), 1);
  assert.is(core.x.bufOwner(b.buf), OWNER.APP);
  core.x.bufUnref(b.buf);
  clean(core);
});

test("RX slot with out-of-range index or bounds does not trap", () => {
  const core = fresh();
  core.push(core.rings.rx, 999999, 0, 60, 0, 0);
  const b = core.x.bufAlloc(OWNER.NIC);
  core.push(core.rings.rx, b, 2000, 100, 0, 0);
  core.poll(1);
  assert.is(core.stat("RX_BAD_SLOT"), 2);
  assert.is(core.x.bufOwner(b), OWNER.NIC);
  core.x.bufUnref(b);
  clean(core);
});

test("chain cut short by the producer is dropped and freed", () => {
  const core = fresh();
  const b = core.x.bufAlloc(OWNER.NIC);
  core.push(core.rings.rx, b, 0, 60, 0, 1); // SF_MORE with nothing after
  core.poll(1);
  assert.is(core.stat("RX_CHAIN_BAD"), 1);
  clean(core);
});

test("idle core reports no deadline", () => {
  const core = fresh();
  assert.is(core.poll(5), Infinity);
  clean(core);
});

// ---------------------------------------------------------------- ARP

function arpFrame(core, o, dst = BCAST) {
  return eth(dst, o.sha, 0x0806, arpPkt(o));
}

test("ARP request for our address gets a reply from our MAC", () => {
  const core = fresh();
  core.inject(arpFrame(core, { op: 1, sha: PEER_MAC, spa: PEER_IP, tpa: ME }));
  core.poll(1);
  const [f] = core.tx().map(parseFrame);
  assert.is(f.arp.op, 2);
  assert.equal([...f.eth.dst], [...PEER_MAC]);
  assert.equal([...f.arp.sha], [...core.mac]);
  assert.is(f.arp.spa, ME);
  assert.is(f.arp.tpa, PEER_IP);
  assert.equal([...f.arp.tha], [...PEER_MAC]);
  assert.is(core.stat("ARP_REQ_IN"), 1);
  clean(core);
});

test("ARP request for us caches the requester", () => {
  const core = fresh();
  assert.is(core.x.stackArpLookup(PEER_IP), 0);
  core.inject(arpFrame(core, { op: 1, sha: PEER_MAC, spa: PEER_IP, tpa: ME }));
  core.poll(1);
  assert.is(core.x.stackArpLookup(PEER_IP), 1);
  clean(core);
});

test("ARP request for another host is not answered and not cached", () => {
  const core = fresh();
  core.inject(arpFrame(core, { op: 1, sha: PEER_MAC, spa: PEER_IP, tpa: OTHER }));
  core.poll(1);
  assert.is(core.tx().length, 0);
  assert.is(core.x.stackArpLookup(PEER_IP), 0);
  clean(core);
});

test("malformed ARP packets are counted", () => {
  const core = fresh();
  core.inject(eth(BCAST, PEER_MAC, 0x0806, new Uint8Array(20)));
  const bad = arpPkt({ op: 1, sha: PEER_MAC, spa: PEER_IP, tpa: ME });
  bad[4] = 8; // hlen
  core.inject(eth(BCAST, PEER_MAC, 0x0806, bad));
  const badOp = arpPkt({ op: 9, sha: PEER_MAC, spa: PEER_IP, tpa: ME });
  core.inject(eth(BCAST, PEER_MAC, 0x0806, badOp));
  const mcastSha = arpPkt({ op: 1, sha: mac("01:00:5e:00:00:01"), spa: PEER_IP, tpa: ME });
  core.inject(eth(BCAST, PEER_MAC, 0x0806, mcastSha));
  core.poll(1);
  assert.is(core.stat("ARP_BAD"), 4);
  assert.is(core.tx().length, 0);
  clean(core);
});

test("ARP claiming our own address is counted as a conflict", () => {
  const core = fresh();
  core.inject(arpFrame(core, { op: 2, sha: OTHER_MAC, spa: ME, tpa: ME }));
  core.poll(1);
  assert.is(core.stat("ARP_CONFLICT"), 1);
  clean(core);
});

test("unresolved destination: request sent, frame queued, flushed by the reply", () => {
  const core = fresh();
  const h = bindUdp(core, 7000);
  udpSendCmd(core, h, OTHER, 9, text("queued"));
  const dl = core.poll(10);
  const req = core.tx().map(parseFrame);
  assert.is(req.length, 1);
  assert.is(req[0].arp.op, 1);
  assert.is(req[0].arp.tpa, OTHER);
  assert.ok(dl > 10 && dl <= 1010, "deadline for the retry");
  assert.is(core.held(OWNER.NIC), 1, "queued frame holds its buffer");
  core.inject(arpFrame(core, { op: 2, sha: OTHER_MAC, spa: OTHER, tha: core.mac, tpa: ME }, core.mac));
  core.poll(20);
  const out = core.tx().map(parseFrame);
  assert.is(out.length, 1);
  assert.equal([...out[0].eth.dst], [...OTHER_MAC]);
  assert.is(str(out[0].udp.payload), "queued");
  clean(core);
});

test("ARP retries once a second and drops queued frames after 3 s", () => {
  const core = fresh();
  const h = bindUdp(core, 7000);
  udpSendCmd(core, h, OTHER, 9, text("x"));
  core.poll(0);
  assert.is(core.tx().length, 1);
  core.poll(999);
  assert.is(core.tx().length, 0);
  core.poll(1000);
  const r2 = core.tx().map(parseFrame);
  assert.is(r2.length, 1);
  assert.is(r2[0].arp.tpa, OTHER);
  core.poll(2000);
  assert.is(core.tx().length, 1);
  core.poll(3001);
  assert.is(core.stat("ARP_TIMEOUT"), 1);
  clean(core);
});

test("ARP pending queue is bounded", () => {
  const core = fresh({ arpq: 2 });
  const h = bindUdp(core, 7000);
  for (let k = 0; k < 3; k++) udpSendCmd(core, h, ip("198.18.0." + (20 + k)), 9, text("q" + k));
  core.poll(1);
  assert.is(core.stat("ARP_QUEUE_FULL"), 1);
  assert.is(core.tx().length, 3, "three ARP requests");
  assert.is(core.held(OWNER.NIC), 2, "two queued frames hold buffers");
  core.poll(5000);
  assert.is(core.stat("ARP_TIMEOUT"), 2);
  clean(core);
});

test("ARP cache entries expire", () => {
  const core = fresh({ arpTtl: 1000 });
  core.inject(arpFrame(core, { op: 1, sha: PEER_MAC, spa: PEER_IP, tpa: ME }));
  core.poll(0);
  core.tx();
  assert.is(core.x.stackArpLookup(PEER_IP), 1);
  core.poll(1001);
  assert.is(core.x.stackArpLookup(PEER_IP), 0);
  const h = bindUdp(core, 7000);
  udpSendCmd(core, h, PEER_IP, 9, text("x"));
  core.poll(1002);
  const f = core.tx().map(parseFrame);
  assert.is(f[0].arp?.op, 1, "resolves again");
  core.poll(9000);
  clean(core);
});

test("an entry in use is refreshed by a unicast request before it expires, without queuing", () => {
  const core = fresh({ arpTtl: 10000 });
  core.inject(arpFrame(core, { op: 1, sha: PEER_MAC, spa: PEER_IP, tpa: ME }));
  core.poll(0);
  core.tx();
  const h = bindUdp(core, 7000);
  udpSendCmd(core, h, PEER_IP, 9, text("early"));
  core.poll(4000);
  assert.equal(
    core.tx().map((f) => parseFrame(f).udp?.dport),
    [9],
    "far from expiry: no request",
  );
  udpSendCmd(core, h, PEER_IP, 9, text("late"));
  core.poll(6000);
  const f = core.tx().map(parseFrame);
  assert.is(f.length, 2);
  assert.is(str(f[0].udp.payload), "late", "sent at once with the old entry");
  assert.is(f[1].arp.op, 1);
  assert.equal([...f[1].eth.dst], [...PEER_MAC], "unicast refresh");
  core.inject(arpFrame(core, { op: 2, sha: PEER_MAC, spa: PEER_IP, tha: core.mac, tpa: ME }, core.mac));
  core.poll(6010);
  core.poll(12000);
  assert.is(core.x.stackArpLookup(PEER_IP), 1, "the reply extended the entry to 16 s");
  core.poll(16011);
  assert.is(core.x.stackArpLookup(PEER_IP), 0);
  clean(core);
});

test("gratuitous ARP updates an existing entry (merge) but creates none", () => {
  const core = fresh();
  const NEW = mac("02:00:00:00:00:aa");
  core.arpAdd(PEER_IP, PEER_MAC);
  core.inject(arpFrame(core, { op: 1, sha: NEW, spa: PEER_IP, tpa: PEER_IP }));
  core.inject(arpFrame(core, { op: 1, sha: OTHER_MAC, spa: OTHER, tpa: OTHER }));
  core.poll(1);
  assert.is(core.x.stackArpLookup(OTHER), 0);
  const h = bindUdp(core, 7000);
  udpSendCmd(core, h, PEER_IP, 9, text("x"));
  core.poll(2);
  const [f] = core.tx().map(parseFrame);
  assert.equal([...f.eth.dst], [...NEW]);
  clean(core);
});

test("off-link destination resolves the gateway", () => {
  const core = fresh({ gw: ip("198.18.0.254") });
  const h = bindUdp(core, 7000);
  udpSendCmd(core, h, ip("10.1.2.3"), 9, text("x"));
  core.poll(1);
  const [f] = core.tx().map(parseFrame);
  assert.is(f.arp.tpa, ip("198.18.0.254"));
  core.poll(9000);
  clean(core);
});

test("broadcast datagrams need no resolution", () => {
  const core = fresh();
  const h = bindUdp(core, 7000);
  udpSendCmd(core, h, 0xffffffff, 9, text("all"));
  udpSendCmd(core, h, ip("198.18.0.255"), 9, text("subnet"));
  core.poll(1);
  const f = core.tx().map(parseFrame);
  assert.is(f.length, 2);
  for (const x of f) assert.equal([...x.eth.dst], [...BCAST]);
  clean(core);
});

// ---------------------------------------------------------------- IPv4

function ipFrame(core, o) {
  return eth(core.mac, PEER_MAC, 0x0800, ipv4({ src: PEER_IP, dst: ME, ...o }));
}

test("IPv4 header errors are counted by reason", () => {
  const core = fresh();
  const good = ipv4({ src: PEER_IP, dst: ME, proto: 1, payload: icmpEcho({}) });
  const v6 = good.slice();
  v6[0] = 0x65;
  const ihl4 = good.slice();
  ihl4[0] = 0x44;
  const ihlBig = good.slice();
  ihlBig[0] = 0x4f;
  core.inject(eth(core.mac, PEER_MAC, 0x0800, v6));
  core.inject(eth(core.mac, PEER_MAC, 0x0800, ihl4));
  core.inject(eth(core.mac, PEER_MAC, 0x0800, ihlBig));
  core.inject(eth(core.mac, PEER_MAC, 0x0800, new Uint8Array(12)));
  core.poll(1);
  assert.is(core.stat("IP_BAD_HDR"), 4);
  assert.is(core.tx().length, 0);
  clean(core);
});

test("IPv4 bad header checksum is dropped", () => {
  const core = fresh();
  core.inject(ipFrame(core, { proto: 1, payload: icmpEcho({}), badCsum: true }));
  core.poll(1);
  assert.is(core.stat("IP_BAD_CSUM"), 1);
  assert.is(core.tx().length, 0);
  clean(core);
});

test("IPv4 total length beyond the frame or below the header is dropped", () => {
  const core = fresh();
  core.inject(ipFrame(core, { proto: 1, payload: icmpEcho({}), totalLen: 200 }));
  core.inject(ipFrame(core, { proto: 1, payload: icmpEcho({}), totalLen: 12 }));
  core.poll(1);
  assert.is(core.stat("IP_BAD_LEN"), 2);
  clean(core);
});

test("Ethernet padding after the IPv4 datagram is ignored", () => {
  const core = fresh();
  const h = bindUdp(core, 53);
  const pkt = ipv4({
    src: PEER_IP,
    dst: ME,
    proto: 17,
    payload: udpPkt({ src: PEER_IP, dst: ME, sport: 1, dport: 53, payload: text("ab") }),
  });
  const f = new Uint8Array(60);
  f.set(eth(core.mac, PEER_MAC, 0x0800, pkt));
  f.fill(0xee, 14 + pkt.length);
  core.inject(f);
  core.poll(1);
  const ev = core.takeEvents().filter((e) => e.code === EV.UDP);
  assert.is(ev.length, 1);
  assert.is(str(ev[0].data), "ab");
  assert.is(ev[0].handle, h);
  clean(core);
});

test("IPv4 options are skipped", () => {
  const core = fresh();
  bindUdp(core, 53);
  const u = udpPkt({ src: PEER_IP, dst: ME, sport: 1, dport: 53, payload: text("opt") });
  core.inject(ipFrame(core, { proto: 17, payload: u, options: Uint8Array.from([0x94, 4, 0, 0, 1, 1, 1, 0]) }));
  core.poll(1);
  const ev = core.takeEvents().filter((e) => e.code === EV.UDP);
  assert.is(str(ev[0].data), "opt");
  clean(core);
});

/** Splits an IPv4 datagram's payload into fragments of `size` bytes (multiple of 8). */
function fragments(core, proto, payload, size, { id = 77, order } = {}) {
  const frames = [];
  for (let o = 0; o < payload.length; o += size) {
    const more = o + size < payload.length;
    frames.push(
      ipFrame(core, { proto, payload: payload.subarray(o, o + size), id, frag: (more ? 0x2000 : 0) | (o >> 3) }),
    );
  }
  return order ? order.map((k) => frames[k]) : frames;
}
const udpDatagram = (n, dport = 53) =>
  udpPkt({ src: PEER_IP, dst: ME, sport: 1, dport, payload: Uint8Array.from({ length: n }, (_, i) => (i * 7) & 255) });

test("fragments are reassembled by reference and delivered as one datagram", () => {
  const core = fresh();
  bindUdp(core, 53);
  const u = udpDatagram(3000);
  core.keepBuffers = true;
  for (const f of fragments(core, 17, u, 1200)) core.inject(f);
  core.poll(1);
  const ev = core.takeEvents().filter((e) => e.code === EV.UDP);
  assert.is(ev.length, 3, "one event per fragment, no copy");
  assert.equal(
    ev.map((e) => e.more),
    [true, true, false],
  );
  assert.equal(Uint8Array.from(ev.flatMap((e) => [...e.data])), u.subarray(8));
  assert.is(core.stat("IP_REASM_OK"), 1);
  for (const e of ev) core.x.bufUnref(e.buf);
  assert.is(core.x.stackFragHeld(), 0);
  clean(core);
});

test("fragments in any order are reassembled; an exact duplicate is ignored", () => {
  const core = fresh();
  bindUdp(core, 53);
  const u = udpDatagram(2500);
  for (const f of fragments(core, 17, u, 800, { order: [3, 1, 1, 0, 2] })) core.inject(f);
  core.poll(1);
  const ev = core.takeEvents().filter((e) => e.code === EV.UDP);
  assert.equal(Uint8Array.from(ev.flatMap((e) => [...e.data])), u.subarray(8));
  clean(core);
});

test("overlapping fragments drop the whole datagram", () => {
  const core = fresh();
  bindUdp(core, 53);
  const u = udpDatagram(2000);
  const [a, b] = fragments(core, 17, u, 1000);
  core.inject(a);
  core.inject(ipFrame(core, { proto: 17, payload: u.subarray(992, 1496), id: 77, frag: 0x2000 | (992 >> 3) }));
  core.inject(b);
  core.poll(1);
  assert.is(core.takeEvents().filter((e) => e.code === EV.UDP).length, 0);
  assert.is(core.stat("IP_REASM_DROP"), 1);
  assert.is(core.x.stackFragHeld(), 1, "only the fragment after the drop is held");
  core.poll(40000);
  assert.is(core.stat("IP_REASM_TIMEOUT"), 1);
  clean(core);
});

test("an incomplete datagram times out after 30 s and its buffers are freed", () => {
  const core = fresh();
  bindUdp(core, 53);
  const [a] = fragments(core, 17, udpDatagram(2000), 1000);
  core.inject(a);
  const dl = core.poll(5);
  assert.is(dl, 30005);
  assert.is(core.held(OWNER.STACK), 1);
  core.poll(30004);
  assert.is(core.stat("IP_REASM_TIMEOUT"), 0);
  core.poll(30005);
  assert.is(core.stat("IP_REASM_TIMEOUT"), 1);
  clean(core);
});

test("reassembly limits: busy slots, too many fragments, bad lengths, beyond 64 KiB", () => {
  const core = fresh({ fragSlots: 2 });
  bindUdp(core, 53);
  for (const id of [1, 2, 3]) core.inject(fragments(core, 17, udpDatagram(2000), 1000, { id })[0]);
  core.poll(1);
  assert.is(core.stat("IP_REASM_DROP"), 1, "third datagram: no slot");
  core.poll(40000);
  const many = fragments(core, 17, udpDatagram(17 * 64), 64, { id: 9 });
  assert.is(many.length, 18);
  for (const f of many) core.inject(f);
  core.inject(ipFrame(core, { proto: 17, payload: new Uint8Array(100), id: 10, frag: 0x2000 })); // MF, not a multiple of 8
  core.inject(ipFrame(core, { proto: 17, payload: new Uint8Array(600), id: 11, frag: 0x1fff })); // past 65535
  core.poll(40001);
  assert.is(core.stat("IP_REASM_DROP"), 2, "seventeenth fragment");
  assert.is(core.stat("IP_FRAG_DROP"), 2);
  assert.is(core.takeEvents().filter((e) => e.code === EV.UDP).length, 0);
  core.poll(90000);
  clean(core);
});

test("random fragment streams never trap and never leak", () => {
  const core = fresh({ fragSlots: 3 });
  bindUdp(core, 53);
  new Peer(core);
  let seed = 31337;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  let delivered = 0;
  for (let k = 0; k < 2000; k++) {
    const id = rnd() % 6;
    const off = (rnd() % 40) * 8;
    const len = rnd() % 4 === 0 ? rnd() % 300 : 8 * (1 + (rnd() % 30));
    const frag = (rnd() % 3 ? 0x2000 : 0) | (off >> 3);
    core.inject(
      ipFrame(core, { proto: [17, 6, 1, 50][rnd() % 4], payload: new Uint8Array(len).fill(k & 255), id, frag }),
    );
    if (k % 20 === 0) {
      core.poll(k * 10);
      core.tx();
      delivered += core.takeEvents().length;
    }
  }
  core.poll(30000); // the last batch enters reassembly
  core.poll(100000); // and expires
  assert.ok(core.stat("IP_REASM_DROP") + core.stat("IP_REASM_TIMEOUT") > 0);
  assert.is(core.x.stackFragHeld(), 0);
  clean(core);
  delivered;
});

test("a fragmented echo request is not answered; other protocols get their ICMP error", () => {
  const core = fresh();
  new Peer(core);
  for (const f of fragments(core, 1, icmpEcho({ payload: new Uint8Array(2000) }), 1000)) core.inject(f);
  core.poll(1);
  assert.is(core.tx().length, 0);
  for (const f of fragments(core, 17, udpDatagram(2000, 999), 1000, { id: 5 })) core.inject(f);
  core.poll(2);
  const [e] = core.tx().map(parseFrame);
  assert.is(e.icmp.type, 3);
  assert.is(e.icmp.code, 3);
  clean(core);
});

test("datagrams for other addresses are not ours", () => {
  const core = fresh();
  core.inject(eth(core.mac, PEER_MAC, 0x0800, ipv4({ src: PEER_IP, dst: OTHER, proto: 1, payload: icmpEcho({}) })));
  core.poll(1);
  assert.is(core.stat("IP_NOT_US"), 1);
  assert.is(core.tx().length, 0);
  clean(core);
});

test("broadcast, multicast and own source addresses are refused", () => {
  const core = fresh();
  for (const src of [0xffffffff, ip("224.0.0.1"), ME, ip("198.18.0.255")]) {
    core.inject(eth(core.mac, PEER_MAC, 0x0800, ipv4({ src, dst: ME, proto: 1, payload: icmpEcho({}) })));
  }
  core.poll(1);
  assert.is(core.stat("IP_BAD_SRC"), 4);
  assert.is(core.tx().length, 0);
  clean(core);
});

test("unknown protocol gets ICMP protocol unreachable quoting the header", () => {
  const core = fresh();
  new Peer(core);
  const pkt = ipv4({ src: PEER_IP, dst: ME, proto: 99, payload: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]) });
  core.inject(eth(core.mac, PEER_MAC, 0x0800, pkt));
  core.poll(1);
  const [f] = core.tx().map(parseFrame);
  assert.is(f.icmp.type, 3);
  assert.is(f.icmp.code, 2);
  assert.ok(f.icmp.csumOk && f.ip.csumOk);
  assert.is(f.ip.dst, PEER_IP);
  assert.equal([...f.icmp.body.subarray(4, 4 + 28)], [...pkt.subarray(0, 28)]);
  assert.is(core.stat("IP_PROTO_UNREACH"), 1);
  clean(core);
});

test("no ICMP error for a broadcast datagram", () => {
  const core = fresh();
  core.inject(
    eth(BCAST, PEER_MAC, 0x0800, ipv4({ src: PEER_IP, dst: 0xffffffff, proto: 99, payload: new Uint8Array(8) })),
  );
  core.poll(1);
  assert.is(core.tx().length, 0);
  assert.is(core.stat("IP_PROTO_UNREACH"), 1);
  clean(core);
});

test("ICMP errors are rate limited by a token bucket", () => {
  const core = fresh({ icmpRate: 10 }); // burst 2, 10/s
  new Peer(core);
  for (let k = 0; k < 5; k++) core.inject(ipFrame(core, { proto: 99, payload: new Uint8Array(8), id: k }));
  core.poll(1);
  assert.is(core.tx().length, 2);
  assert.is(core.stat("ICMP_RATELIMITED"), 3);
  core.inject(ipFrame(core, { proto: 99, payload: new Uint8Array(8) }));
  core.poll(50); // half a token
  assert.is(core.tx().length, 0);
  core.inject(ipFrame(core, { proto: 99, payload: new Uint8Array(8) }));
  core.poll(200);
  assert.is(core.tx().length, 1);
  clean(core);
});

// ---------------------------------------------------------------- ICMP echo

test("echo request is answered in place (zero copy)", () => {
  const core = fresh();
  const payload = Uint8Array.from({ length: 56 }, (_, i) => i);
  core.inject(ipFrame(core, { proto: 1, payload: icmpEcho({ id: 0x1234, seq: 7, payload }) }));
  const before = core.x.poolFreeCount();
  core.poll(1);
  assert.is(core.x.poolFreeCount(), before, "no buffer allocated for the reply");
  const [f] = core.tx().map(parseFrame);
  assert.is(f.icmp.type, 0);
  assert.ok(f.icmp.csumOk && f.ip.csumOk);
  assert.equal([...f.eth.dst], [...PEER_MAC]);
  assert.is(f.ip.src, ME);
  assert.is(f.ip.dst, PEER_IP);
  assert.is(rd16(f.icmp.body, 0), 0x1234);
  assert.is(rd16(f.icmp.body, 2), 7);
  assert.equal([...f.icmp.body.subarray(4)], [...payload]);
  assert.is(core.stat("ICMP_ECHO_REPLIED"), 1);
  clean(core);
});

test("RX slots at every length and offset limit: a frame ending on the buffer's last byte is served; past it, empty, or chained too long is refused and counted; nothing leaks", () => {
  const core = fresh();
  new Peer(core);
  const echo = ipFrame(core, { proto: 1, payload: icmpEcho({ id: 9, seq: 1, payload: new Uint8Array(56) }) });
  const post = (off, len, bytes = echo) => {
    const b = core.x.bufAlloc(OWNER.NIC);
    core.u8.set(bytes.subarray(0, Math.max(0, Math.min(len, 2048 - off))), core.bufAddr(b) + Math.min(off, 2048));
    core.push(core.rings.rx, b, off, len, 0, 0);
    return b;
  };
  const stat = (k) => core.stat(k);
  // the frame's last byte is the buffer's last byte: served
  post(2048 - echo.length, echo.length);
  core.poll(1);
  let out = core.tx().map(parseFrame);
  assert.is(out.length, 1);
  assert.is(out[0].icmp.type, 0);
  // one byte past the buffer's end, an offset past it, lengths at the u16 limit: bad slots, the
  // buffer left with the host (the core never touched it)
  const refused = [
    [2048 - echo.length + 1, echo.length],
    [2049, 0],
    [0, 2049],
    [0, 65535],
    [65535, 65535],
  ].map(([o, l]) => post(o, l));
  core.poll(2);
  assert.is(stat("RX_BAD_SLOT"), refused.length);
  assert.is(core.tx().length, 0);
  for (const b of refused) core.x.bufUnref(b);
  // empty frames (offset 0 and offset 2048), one byte at the last offset: too short, dropped
  const before = stat("RX_CHAIN_BAD") + stat("ETH_SHORT");
  post(0, 0);
  post(2048, 0);
  post(2047, 1);
  core.poll(3);
  assert.is(stat("RX_CHAIN_BAD") + stat("ETH_SHORT") - before, 3);
  assert.is(core.tx().length, 0);
  // the echo in chains of 64 pieces (the most a frame may have) and of 65 (one too many)
  for (const pieces of [64, 65]) {
    const cuts = Array.from({ length: pieces }, (_, k) => Math.round((k * echo.length) / pieces));
    cuts.forEach((at, k) => {
      const end = k + 1 < pieces ? cuts[k + 1] : echo.length;
      const b = core.x.bufAlloc(OWNER.NIC);
      core.u8.set(echo.subarray(at, end), core.bufAddr(b));
      core.push(core.rings.rx, b, 0, end - at, 0, k + 1 < pieces ? SF_MORE : 0);
    });
    const bad = stat("RX_CHAIN_BAD");
    core.poll(4 + pieces);
    out = core.tx().map(parseFrame);
    if (pieces === 64) assert.is(stat("RX_CHAIN_BAD"), bad, "64 pieces are a frame");
    else {
      assert.is(stat("RX_CHAIN_BAD"), bad + 1, "65 pieces are refused");
      assert.is(out.length, 0);
    }
  }
  clean(core);
});

test("echo request with a bad checksum or too short is dropped", () => {
  const core = fresh();
  core.inject(ipFrame(core, { proto: 1, payload: icmpEcho({ badCsum: true }) }));
  core.inject(ipFrame(core, { proto: 1, payload: new Uint8Array(4) }));
  core.poll(1);
  assert.is(core.stat("ICMP_BAD"), 2);
  assert.is(core.tx().length, 0);
  clean(core);
});

test("echo to broadcast is not answered", () => {
  const core = fresh();
  core.inject(eth(BCAST, PEER_MAC, 0x0800, ipv4({ src: PEER_IP, dst: 0xffffffff, proto: 1, payload: icmpEcho({}) })));
  core.poll(1);
  assert.is(core.tx().length, 0);
  clean(core);
});

test("echo request with IP options gets a reply without options", () => {
  const core = fresh();
  core.inject(
    ipFrame(core, { proto: 1, payload: icmpEcho({ payload: text("opts") }), options: Uint8Array.from([1, 1, 1, 0]) }),
  );
  core.poll(1);
  const [f] = core.tx().map(parseFrame);
  assert.is(f.ip.hl, 20);
  assert.ok(f.icmp.csumOk && f.ip.csumOk);
  assert.is(str(f.icmp.body.subarray(4)), "opts");
  clean(core);
});

test("echo request chained over several buffers is answered over the same chain", () => {
  const core = fresh();
  const payload = Uint8Array.from({ length: 1400 }, (_, i) => (i * 7) & 255);
  core.inject(ipFrame(core, { proto: 1, payload: icmpEcho({ payload }) }), { split: 501 });
  core.poll(1);
  const [f] = core.tx();
  assert.is(f.slots, 3);
  const p = parseFrame(f);
  assert.ok(p.icmp.csumOk);
  assert.equal([...p.icmp.body.subarray(4)], [...payload]);
  clean(core);
});

test("odd-length echo payload split at odd boundaries keeps a valid checksum", () => {
  const core = fresh();
  const payload = Uint8Array.from({ length: 333 }, (_, i) => (i * 13 + 1) & 255);
  core.inject(ipFrame(core, { proto: 1, payload: icmpEcho({ payload }) }), { split: 77 });
  core.poll(1);
  const [p] = core.tx().map(parseFrame);
  assert.ok(p.icmp.csumOk);
  assert.equal([...p.icmp.body.subarray(4)], [...payload]);
  clean(core);
});

// ---------------------------------------------------------------- UDP

test("UDP datagram is delivered by reference to the bound handle", () => {
  const core = fresh();
  const h = bindUdp(core, 53);
  const p = new Peer(core);
  core.keepBuffers = true;
  p.udp({ dport: 53, sport: 4444, payload: "query" });
  core.poll(1);
  const [ev] = core.takeEvents().filter((e) => e.code === EV.UDP);
  assert.is(str(ev.data), "query");
  assert.is(ev.conn, PEER_IP);
  assert.is(ev.aux, 4444);
  assert.is(ev.handle, h);
  assert.is(ev.owner, OWNER.APP);
  assert.is(ev.off, 64 + 14 + 20 + 8, "payload named where it landed (no copy)");
  core.x.bufUnref(ev.buf);
  assert.is(core.stat("UDP_IN"), 1);
  clean(core);
});

test("UDP bad checksum is dropped; zero checksum is accepted", () => {
  const core = fresh();
  bindUdp(core, 53);
  const p = new Peer(core);
  p.udp({ dport: 53, payload: "bad", badCsum: true });
  p.udp({ dport: 53, payload: "none", noCsum: true });
  core.poll(1);
  const ev = core.takeEvents().filter((e) => e.code === EV.UDP);
  assert.is(ev.length, 1);
  assert.is(str(ev[0].data), "none");
  assert.is(core.stat("UDP_BAD_CSUM"), 1);
  clean(core);
});

test("UDP length field larger than the datagram or below 8 is dropped", () => {
  const core = fresh();
  bindUdp(core, 53);
  const p = new Peer(core);
  p.udp({ dport: 53, payload: "x", lenField: 100, noCsum: true });
  p.udp({ dport: 53, payload: "x", lenField: 4, noCsum: true });
  core.poll(1);
  assert.is(core.stat("UDP_BAD_LEN"), 2);
  clean(core);
});

test("UDP length shorter than the IP payload trims the datagram", () => {
  const core = fresh();
  bindUdp(core, 53);
  const p = new Peer(core);
  p.udp({ dport: 53, payload: "abcdef", lenField: 11, noCsum: true });
  core.poll(1);
  const [ev] = core.takeEvents().filter((e) => e.code === EV.UDP);
  assert.is(str(ev.data), "abc");
  clean(core);
});

test("closed UDP port answers ICMP port unreachable", () => {
  const core = fresh();
  const p = new Peer(core);
  p.udp({ dport: 9999, payload: "hello?" });
  core.poll(1);
  const [f] = core.tx().map(parseFrame);
  assert.is(f.icmp.type, 3);
  assert.is(f.icmp.code, 3);
  assert.is(core.stat("UDP_NO_PORT"), 1);
  clean(core);
});

test("closed UDP port and broadcast: no ICMP", () => {
  const core = fresh();
  const u = udpPkt({ src: PEER_IP, dst: 0xffffffff, sport: 1, dport: 9999, payload: text("x") });
  core.inject(eth(BCAST, PEER_MAC, 0x0800, ipv4({ src: PEER_IP, dst: 0xffffffff, proto: 17, payload: u })));
  core.poll(1);
  assert.is(core.tx().length, 0);
  clean(core);
});

test("UDP send from an app buffer writes headers into its headroom (one slot)", () => {
  const core = fresh();
  const h = bindUdp(core, 7000);
  new Peer(core);
  const b = udpSendCmd(core, h, PEER_IP, 9000, text("response"));
  core.poll(1);
  assert.is(core.x.bufOwner(b.buf), OWNER.NIC, "lent to the NIC");
  const [f] = core.tx();
  assert.is(f.slots, 1);
  const p = parseFrame(f);
  assert.ok(p.udp.csumOk && p.ip.csumOk);
  assert.is(p.udp.sport, 7000);
  assert.is(p.udp.dport, 9000);
  assert.is(str(p.udp.payload), "response");
  assert.is(p.ip.frag, 0x4000, "DF set");
  assert.is(core.x.bufOwner(b.buf), OWNER.FREE, "freed after the NIC released it");
  clean(core);
});

test("UDP send of a kept buffer chains a header buffer and leaves the data intact", () => {
  const core = fresh();
  const h = bindUdp(core, 7000);
  new Peer(core);
  const b = udpSendCmd(core, h, PEER_IP, 9000, text("persisted"), { owner: OWNER.KEPT });
  const before = core.u8.slice(core.bufAddr(b.buf), core.bufAddr(b.buf) + 2048);
  core.poll(1);
  const [f] = core.tx();
  assert.is(f.slots, 2);
  assert.ok(parseFrame(f).udp.csumOk);
  assert.is(core.x.bufOwner(b.buf), OWNER.KEPT);
  assert.is(core.x.bufRefCount(b.buf), 1);
  assert.equal([...core.u8.slice(core.bufAddr(b.buf), core.bufAddr(b.buf) + 2048)], [...before]);
  core.x.bufUnref(b.buf);
  clean(core);
});

test("UDP send without headroom uses a header buffer", () => {
  const core = fresh();
  const h = bindUdp(core, 7000);
  new Peer(core);
  udpSendCmd(core, h, PEER_IP, 9000, text("tight"), { off: 10 });
  core.poll(1);
  const [f] = core.tx();
  assert.is(f.slots, 2);
  assert.is(str(parseFrame(f).udp.payload), "tight");
  clean(core);
});

test("UDP odd-length payload at an odd offset has a valid checksum", () => {
  const core = fresh();
  const h = bindUdp(core, 7000);
  new Peer(core);
  udpSendCmd(
    core,
    h,
    PEER_IP,
    9000,
    Uint8Array.from({ length: 101 }, (_, i) => 255 - i),
    { off: 13 },
  );
  core.poll(1);
  assert.ok(parseFrame(core.tx()[0]).udp.csumOk);
  clean(core);
});

test("UDP send larger than the MTU or on a bad handle is refused and the buffer returned", () => {
  const core = fresh();
  const h = bindUdp(core, 7000);
  new Peer(core);
  udpSendCmd(core, h, PEER_IP, 9000, new Uint8Array(1473), { off: 64 });
  udpSendCmd(core, 77, PEER_IP, 9000, text("x"));
  core.poll(1);
  const ev = core.takeEvents().filter((e) => e.code === EV.SEND_REFUSED);
  assert.is(ev.length, 2);
  assert.is(ev[0].owner, OWNER.APP);
  assert.is(core.tx().length, 0);
  clean(core);
});

test("binding a bound port fails; unbinding closes it", () => {
  const core = fresh();
  const h = bindUdp(core, 53);
  core.cmd(CMD.UDP_BIND, { off: 53, conn: 9 });
  core.poll(1);
  assert.ok(core.takeEvents().find((e) => e.code === EV.ERROR && e.conn === 9));
  core.cmd(CMD.UDP_UNBIND, { conn: h });
  core.poll(2);
  const p = new Peer(core);
  p.udp({ dport: 53, payload: "x" });
  core.poll(3);
  assert.is(core.stat("UDP_NO_PORT"), 1);
  clean(core);
});

test("UDP bind table is bounded", () => {
  const core = fresh({ udp: 2 });
  for (const port of [1, 2, 3]) core.cmd(CMD.UDP_BIND, { off: port, conn: port });
  core.poll(1);
  const ev = core.takeEvents();
  assert.is(ev.filter((e) => e.code === EV.UDP_BOUND).length, 2);
  assert.is(ev.filter((e) => e.code === EV.ERROR).length, 1);
  assert.is(core.stat("UDP_BIND_FULL"), 1);
  clean(core);
});

test("UDP datagram chained over buffers arrives as a chain of events", () => {
  const core = fresh();
  bindUdp(core, 53);
  const p = new Peer(core);
  const payload = Uint8Array.from({ length: 1200 }, (_, i) => i & 255);
  p.udp({ dport: 53, payload, inject: { split: 500 } });
  core.poll(1);
  const ev = core.takeEvents().filter((e) => e.code === EV.UDP);
  assert.is(ev.length, 3);
  assert.equal(
    ev.map((e) => e.more),
    [true, true, false],
  );
  const all = new Uint8Array(ev.reduce((a, e) => a + e.len, 0));
  let o = 0;
  for (const e of ev) {
    all.set(e.data, o);
    o += e.len;
  }
  assert.equal([...all], [...payload]);
  clean(core);
});

test("NEEDS_CSUM frames get their checksum completed", () => {
  const core = fresh();
  bindUdp(core, 53);
  // a partial checksum: the field holds the pseudo-header sum only (virtio-net semantics)
  const payload = text("partial checksum!");
  const u = udpPkt({ src: PEER_IP, dst: ME, sport: 1, dport: 53, payload, noCsum: true });
  const ph = new Uint8Array(12);
  ph.set([198, 18, 0, 2, 198, 18, 0, 1, 0, 17]);
  be16(ph, 10, u.length);
  be16(u, 6, csum(ph));
  const f = eth(core.mac, PEER_MAC, 0x0800, ipv4({ src: PEER_IP, dst: ME, proto: 17, payload: u }));
  const start = 14 + 20;
  core.inject(f, { flags: RXF_NEEDS_CSUM, info: start | (6 << 16) });
  core.poll(1);
  const ev = core.takeEvents().filter((e) => e.code === EV.UDP);
  assert.is(ev.length, 1);
  assert.is(core.stat("CSUM_COMPLETED"), 1);
  clean(core);
});

test("NEEDS_CSUM with offsets outside the frame is dropped", () => {
  const core = fresh();
  bindUdp(core, 53);
  const p = new Peer(core);
  p.udp({ dport: 53, payload: "x", inject: { flags: RXF_NEEDS_CSUM, info: 4 | (6 << 16) } });
  p.udp({ dport: 53, payload: "x", inject: { flags: RXF_NEEDS_CSUM, info: 34 | (4000 << 16) } });
  core.poll(1);
  assert.is(core.stat("RX_CHAIN_BAD"), 2);
  assert.is(core.takeEvents().filter((e) => e.code === EV.UDP).length, 0);
  clean(core);
});

test("CSUM_VALID frames skip L4 verification", () => {
  const core = fresh();
  bindUdp(core, 53);
  const p = new Peer(core);
  p.udp({ dport: 53, payload: "trusted", badCsum: true, inject: { flags: RXF_CSUM_VALID } });
  core.poll(1);
  assert.is(core.takeEvents().filter((e) => e.code === EV.UDP).length, 1);
  clean(core);
});

test("SIMD checksum agrees with a scalar reference on random data", () => {
  const core = fresh();
  const s = core.x.stackScratch();
  let seed = 1;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
  for (let n = 0; n < 256; n++) {
    const len = n < 200 ? n : 200;
    const off = n % 7;
    const data = Uint8Array.from({ length: len }, rnd);
    core.u8.set(data, s + off);
    assert.is(core.x.csumTest(s + off, len), ~csum(data) & 0xffff, `len ${len}`);
  }
  clean(core);
});

test("random garbage frames never trap and never leak", () => {
  const core = fresh();
  bindUdp(core, 53);
  core.cmd(CMD.LISTEN, { off: 80, len: 8 });
  core.poll(1);
  let seed = 99;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  for (let k = 0; k < 3000; k++) {
    const len = rnd() % 200;
    const f = Uint8Array.from({ length: len }, () => rnd() & 255);
    if (len >= 14 && k % 2 === 0) {
      f.set(core.mac, 0);
      f[12] = 8;
      f[13] = k % 4 === 0 ? 0 : 6;
    }
    if (len >= 34 && k % 4 === 0) {
      f[14] = 0x45;
      f[23] = [1, 6, 17][k % 3];
      f.set([198, 18, 0, 1], 30);
    }
    core.inject(f);
    if (k % 64 === 0) {
      core.poll(k);
      core.tx();
      core.takeEvents();
    }
  }
  core.poll(100000);
  core.tx();
  core.takeEvents();
  assert.is(core.check(), 0);
  assert.is(core.held(OWNER.STACK), 0);
  assert.is(core.held(OWNER.NIC), 0);
  assert.is(core.held(OWNER.APP), 0);
});

test("mutated valid frames never trap and never leak", () => {
  const core = fresh();
  bindUdp(core, 53);
  const p = new Peer(core);
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  const bases = [
    p.ipFrame(17, udpPkt({ src: PEER_IP, dst: ME, sport: 1, dport: 53, payload: text("hello world") })),
    p.ipFrame(1, icmpEcho({ payload: text("ping") })),
    eth(BCAST, PEER_MAC, 0x0806, arpPkt({ op: 1, sha: PEER_MAC, spa: PEER_IP, tpa: ME })),
  ];
  for (let k = 0; k < 3000; k++) {
    const f = bases[k % 3].slice(0, bases[k % 3].length - (rnd() % 3 === 0 ? rnd() % 20 : 0));
    for (let j = rnd() % 4; j >= 0; j--) f[rnd() % f.length] = rnd() & 255;
    core.inject(f, { split: k % 5 === 0 ? 17 : 0 });
    if (k % 50 === 0) {
      core.poll(k);
      core.tx();
      core.takeEvents();
    }
  }
  core.poll(100000);
  clean(core);
});

// after every test: the pool invariant holds in every core the test created
test.after.each(() => {
  for (const r of checkCores()) assert.equal(r, { check: 0, detail: 0 }, "pool invariant after the test");
});

test.run();

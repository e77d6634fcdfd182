// The frame fuzzer: seeded, deterministic. Random, structured (every layer and option of both IP
// families: IPv6 extension header chains, fragments, neighbor discovery; chains, RX offload
// flags, bogus ring slots) and mutated frames go into one core (the victim, 198.18.0.1 and
// 2001:2:0:63::1) while a second core (the peer, 198.18.0.2) keeps a live TCP connection with
// it whose byte streams are checked end to end both ways, and blind-attacker frames hit that
// connection (its 4-tuple, sequence and acknowledgment numbers an off-path attacker cannot know).
// Every `quiesceEvery` frames simulated time jumps ahead until every half-open connection, TIME_WAIT,
// fragment and ARP wait has expired; then the victim must hold exactly the live connection, no
// segment node, no fragment, and every buffer free, and the pool invariant must hold.
// A failure throws a FuzzError naming the seed, the frame number and the last frames.

import { writeFileSync } from "node:fs";
import {
  createCore,
  forgetCore,
  ip,
  OWNER,
  CMD,
  EV,
  SF_MORE,
  eth,
  arpPkt,
  ipv4,
  udpPkt,
  icmpEcho,
  tcpOpts,
  tcpSeg,
  csum,
  ip6,
  ipv6,
  icmp6Msg,
  ndMsg,
} from "./corehost.mjs";

const V_MAC = Uint8Array.from([2, 0, 0, 0, 0xf, 1]);
const P_MAC = Uint8Array.from([2, 0, 0, 0, 0xf, 2]);
const V_IP = ip("198.18.0.1");
const V_IP6 = ip6("2001:2:0:63::1");
const V_LL = ip6("fe80::ff:fe00:f01"); // fe80:: + the modified EUI-64 of V_MAC
const P_IP = ip("198.18.0.2");
const BCAST = new Uint8Array(6).fill(255);
const LIVE_PORT = 7000;
const LISTEN_PORT = 80;
const UDP_PORT = 53;
const RXF_CSUM_VALID = 2;
const RXF_NEEDS_CSUM = 4;
const TH = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16, URG: 32 };
/** Bytes each side of the live connection sends between quiesces. */
const STREAM_CHUNK = 1000;

export class FuzzError extends Error {
  constructor(msg, info) {
    super(`${msg} (seed ${info.seed}, frame ${info.frame})`);
    this.info = info;
  }
}

/** Writes the reproducer of a failed run into `dir`; returns its path. */
export function writeReproducer(dir, e, frames) {
  const file = `${dir}/fuzz-repro-${e.info.seed}.json`;
  writeFileSync(file, JSON.stringify({ message: e.message, frames, ...e.info }, null, 2) + "\n");
  return file;
}

/** xorshift32: deterministic, seedable. */
function rng(seed) {
  let s = seed >>> 0 || 0x9e3779b9;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
  const r = {
    u32: next,
    int: (n) => next() % n,
    chance: (p) => next() / 4294967296 < p,
    pick: (a) => a[next() % a.length],
    bytes: (n) => Uint8Array.from({ length: n }, () => next() & 255),
  };
  return r;
}

/** Byte k of the stream from `dir` (0: victim to peer, 1: peer to victim). */
const streamByte = (seed, dir, k) => (Math.imul(k + 1, 2654435761) ^ Math.imul(seed + dir, 40503) ^ (k >>> 11)) & 255;

/**
 * Runs `frames` fuzz frames with `seed`. Returns counts; throws FuzzError on a broken invariant,
 * a trap, or a corrupted or broken live connection.
 */
export function fuzz({ frames = 100_000, seed = 1, quiesceEvery = 50_000, keep = 32 } = {}) {
  const r = rng(seed);
  const opts = { buffers: 8192, msl: 500, initRto: 200, minRto: 200, synq: 64, fragSlots: 4, arpTtl: 60_000 };
  const V = createCore({ ...opts, mac: V_MAC, ip: V_IP, ip6: V_IP6 });
  const P = createCore({ ...opts, mac: P_MAC, ip: P_IP });
  forgetCore(V);
  forgetCore(P);
  V.arpAdd(P_IP, P_MAC);
  P.arpAdd(V_IP, V_MAC);
  const recent = [];
  const counts = { frames: 0, random: 0, structured: 0, mutated: 0, blind: 0, slots: 0, quiesces: 0 };
  const info = () => ({ seed, frame: counts.frames, recent: recent.map((f) => Buffer.from(f).toString("hex")) });
  const fail = (msg) => {
    throw new FuzzError(msg, info());
  };
  let now = 1;

  // ---- the live connection: P connects to V; both stream checked bytes ----
  V.cmd(CMD.LISTEN, { off: LIVE_PORT, len: 4 });
  V.cmd(CMD.LISTEN, { off: LISTEN_PORT, len: 16 });
  V.cmd(CMD.UDP_BIND, { off: UDP_PORT });
  P.cmd(CMD.CONNECT, { buf: V_IP, off: LIVE_PORT, len: 0 });
  const live = { v: -1, p: -1, sent: [0, 0], got: [0, 0], target: [0, 0], refused: [[], []] };
  /** The peer's port of the live connection (from the victim's ACCEPTED). */
  let pPort = 0;
  const side = (dir) => (dir === 0 ? V : P);
  const conn = (dir) => (dir === 0 ? live.v : live.p);

  const pump = (dir) => {
    const c = side(dir);
    if (conn(dir) < 0 || live.refused[dir].length) return;
    while (live.sent[dir] < live.target[dir]) {
      const n = Math.min(1400, live.target[dir] - live.sent[dir]);
      const bytes = Uint8Array.from({ length: n }, (_, i) => streamByte(seed, dir, live.sent[dir] + i));
      const b = c.appBuf(bytes);
      c.cmd(CMD.SEND, { conn: conn(dir), ...b });
      live.sent[dir] += n;
    }
  };
  /** The victim's app: takes the live connection, closes every other, checks and frees data. */
  const onEvents = (dir) => {
    const c = side(dir);
    for (const ev of c.takeEvents()) {
      if (ev.code === EV.ACCEPTED) {
        // ACCEPTED: buf = remote address, off = remote port, len = local port
        if (dir === 0 && live.v < 0 && ev.len === LIVE_PORT && ev.buf >>> 0 === P_IP) {
          live.v = ev.conn;
          pPort = ev.off;
        } else c.cmd(CMD.CLOSE, { conn: ev.conn });
      } else if (ev.code === EV.CONNECTED && dir === 1) live.p = ev.conn;
      else if (ev.code === EV.DATA) {
        if (ev.conn === conn(dir)) {
          const from = 1 - dir;
          for (let i = 0; i < ev.data.length; i++)
            if (ev.data[i] !== streamByte(seed, from, live.got[from] + i))
              fail(`live stream ${from ? "peer->victim" : "victim->peer"} corrupted at byte ${live.got[from] + i}`);
          live.got[from] += ev.data.length;
        }
      } else if (ev.code === EV.SEND_REFUSED) {
        if (ev.conn !== conn(dir)) c.x.bufUnref(ev.buf);
        else fail(`the live connection refused a send (${dir ? "peer" : "victim"})`);
      } else if ((ev.code === EV.RESET || ev.code === EV.CLOSED) && ev.conn === conn(dir))
        fail(`the live connection ended: ${ev.name} aux ${ev.aux} on the ${dir ? "peer" : "victim"}`);
      else if (ev.code === EV.PEER_CLOSED && ev.conn !== conn(dir)) c.cmd(CMD.CLOSE, { conn: ev.conn });
      else if (ev.code === EV.UDP) c.x.bufUnref(ev.buf);
    }
  };
  /** One poll of both cores; frames between them cross the wire, the victim's others go nowhere. */
  const turn = () => {
    for (const [c, dir] of [
      [V, 0],
      [P, 1],
    ]) {
      try {
        c.poll(now);
      } catch (e) {
        fail(`${dir ? "peer" : "victim"} trapped: ${e.message}`);
      }
      onEvents(dir);
      pump(dir);
    }
    // the wire: the victim's frames for the peer (or broadcast: ARP) reach it, the rest go nowhere
    for (const f of V.tx()) if (f.subarray(0, 6).every((b, i) => b === P_MAC[i] || b === 255)) P.inject(f);
    for (const f of P.tx()) V.inject(f);
  };
  for (let k = 0; k < 50 && (live.v < 0 || live.p < 0); k++, now += 1) turn();
  if (live.v < 0 || live.p < 0) fail("the live connection did not open");
  // the victim's IPv6 addresses are usable once duplicate address detection is over (1 s)
  for (const end = now + 1001; now < end; now += 100) turn();

  // ---- frame makers ----
  const someIp = () =>
    r.pick([
      V_IP,
      P_IP,
      ip("198.18.7.77"),
      ip("198.18.9.9"),
      0xffffffff,
      0,
      ip("224.0.0.1"),
      ip("198.19.3.4"),
      r.u32(),
    ]);
  /** A source address that is not the peer's (only blind frames speak for the peer). */
  const srcIp = () => {
    const a = someIp();
    return a === P_IP ? ip("198.18.7.9") : a;
  };
  const srcMac = () => r.pick([Uint8Array.from([2, 0, 0, 0, 9, 9]), r.bytes(6), BCAST]);
  const dstMac = () => (r.chance(0.9) ? V_MAC : r.pick([BCAST, r.bytes(6)]));
  const port = () => r.pick([LISTEN_PORT, UDP_PORT, LIVE_PORT, 0, 1 + r.int(65535)]);
  const payload = () => r.bytes(r.pick([0, 1, 7, r.int(64), r.int(1500)]));
  const tcpOptions = () => {
    const o = {};
    if (r.chance(0.5)) o.mss = r.pick([0, 1, 536, 1460, 65535, r.int(65536)]);
    if (r.chance(0.4)) o.ws = r.pick([0, 7, 14, 15, 255]);
    if (r.chance(0.4)) o.sackOk = true;
    if (r.chance(0.4)) o.ts = [r.u32(), r.pick([0, r.u32()])];
    if (r.chance(0.3)) o.sack = Array.from({ length: 1 + r.int(4) }, () => [r.u32(), r.u32()]);
    if (r.chance(0.3)) o.raw = Array.from(r.bytes(r.int(12))); // malformed kinds and lengths
    const b = tcpOpts(o);
    return b.length > 40 ? b.subarray(0, 40) : b;
  };
  const tcpFrame = (src, dst, { sport, dport, seq, ack, flags } = {}) => {
    const seg = tcpSeg({
      src,
      dst,
      sport: sport ?? port(),
      dport: dport ?? port(),
      seq: seq ?? r.u32(),
      ack: ack ?? r.u32(),
      flags: flags ?? r.int(64),
      win: r.pick([0, 1, 65535, r.int(65536)]),
      opts: tcpOptions(),
      payload: payload(),
      urp: r.chance(0.1) ? r.int(65536) : 0,
      badCsum: r.chance(0.05),
      doff: r.chance(0.03) ? r.int(64) * 4 : undefined,
    });
    return seg;
  };
  const ipOptions = () => (r.chance(0.1) ? r.bytes(4 * (1 + r.int(10))) : new Uint8Array(0));
  const ipFrame = (proto, l4, src = srcIp(), frag = r.chance(0.1) ? r.u32() & 0xffff : 0x4000) =>
    eth(
      dstMac(),
      srcMac(),
      0x0800,
      ipv4({
        src,
        dst: r.chance(0.9) ? V_IP : someIp(),
        proto,
        payload: l4,
        ttl: r.int(256),
        id: r.int(65536),
        frag,
        options: ipOptions(),
        badCsum: r.chance(0.03),
        totalLen: r.chance(0.05) ? r.int(65536) : undefined,
      }),
    );
  /** The pieces of one datagram cut into fragments (offsets in 8-byte units, shuffled). */
  const fragments = () => {
    const src = srcIp();
    const l4 = r.chance(0.5)
      ? udpPkt({ src, dst: V_IP, sport: port(), dport: UDP_PORT, payload: payload() })
      : icmpEcho({ payload: payload() });
    const id = r.int(65536);
    const out = [];
    const unit = 8 * (1 + r.int(40));
    for (let o = 0; o < l4.length; o += unit) {
      const last = o + unit >= l4.length;
      const fo = r.chance(0.1) ? r.int(8192) : o >> 3;
      const mf = last && !r.chance(0.1) ? 0 : 0x2000;
      out.push(ipFrame(r.chance(0.5) ? 17 : 1, l4.subarray(o, o + unit), src, mf | fo));
      if (out.length > 20) break;
    }
    for (let i = out.length - 1; i > 0; i--) {
      const j = r.int(i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  };
  // ---- IPv6 ----
  const someIp6 = () =>
    r.pick([
      V_IP6,
      V_LL,
      ip6("2001:2:0:63::9"),
      ip6("fe80::9"),
      ip6("ff02::1"),
      Uint8Array.from([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1]), // our solicited-node group
      new Uint8Array(16),
      r.bytes(16),
    ]);
  const srcIp6 = () => r.pick([ip6("2001:2:0:63::9"), ip6("fe80::9"), new Uint8Array(16), someIp6()]);
  const dstIp6 = () => (r.chance(0.8) ? r.pick([V_IP6, V_LL]) : someIp6());
  const mac6 = (dst) => (dst[0] === 0xff ? Uint8Array.from([0x33, 0x33, ...dst.subarray(12)]) : dstMac());
  /** A random extension header: hop-by-hop, routing, destination options, fragment, or one we do not take. */
  const extHdr = () => {
    const type = r.pick([0, 0, 60, 60, 43, 44, 51, 50, 135, r.int(256)]);
    if (type === 44) {
      const b = r.bytes(8);
      if (r.chance(0.5)) b[2] = b[3] = 0; // often an atomic fragment
      return { type, bytes: b };
    }
    const n = 8 * (1 + r.int(r.chance(0.9) ? 3 : 40));
    const b = new Uint8Array(n);
    b[1] = r.chance(0.9) ? n / 8 - 1 : r.int(256);
    if (type === 43) {
      b[2] = r.pick([0, 2, 4, r.int(256)]);
      b[3] = r.pick([0, 0, 1, r.int(256)]);
    } else {
      // options: pad, router alert, jumbo, or any type with any length
      for (let o = 2; o < n;) {
        const t = r.pick([0, 1, 5, 0xc2, 0x1e, 0x41, 0x81, 0xc1, r.int(256)]);
        b[o++] = t;
        if (t === 0 || o >= n) continue;
        const l = r.chance(0.9) ? r.int(Math.max(1, n - o - 1)) : r.int(256);
        b[o++] = l;
        o += l;
      }
    }
    return { type, bytes: b };
  };
  const ip6Frame = (nh, l4, src = srcIp6(), dst = dstIp6(), ext = []) =>
    eth(
      mac6(dst),
      srcMac(),
      0x86dd,
      ipv6({
        src,
        dst,
        nh,
        payload: l4,
        hlim: r.pick([255, 64, 1, r.int(256)]),
        ext,
        plen: r.chance(0.05) ? r.int(65536) : undefined,
      }),
    );
  const structured6 = () => {
    const src = srcIp6();
    const dst = dstIp6();
    const exts = () => (r.chance(0.4) ? Array.from({ length: 1 + r.int(r.chance(0.9) ? 3 : 12) }, extHdr) : []);
    switch (r.int(5)) {
      case 0: {
        // neighbor discovery, sometimes claiming our own addresses
        const type = r.pick([135, 136, 133, 134, 137]);
        const target = r.pick([V_IP6, V_LL, ip6("2001:2:0:63::9"), ip6("ff02::1"), r.bytes(16)]);
        const lla = r.chance(0.7) ? r.pick([Uint8Array.from([2, 0, 0, 0, 9, 9]), r.bytes(6)]) : null;
        const m = ndMsg({ src, dst, type, target, lla, flags: r.int(256), badCsum: r.chance(0.05) });
        if (r.chance(0.1)) m[r.int(m.length)] = r.int(256);
        return [ip6Frame(58, m, src, dst)];
      }
      case 1: {
        // echo, errors quoting a TCP header (packet too big included), anything else
        const type = r.pick([128, 129, 1, 2, 3, 4, r.int(256)]);
        const q = ipv6({
          src: V_IP6,
          dst: someIp6(),
          nh: 6,
          payload: tcpSeg({ src: V_IP6, dst: V_IP6, sport: LISTEN_PORT, dport: r.int(65536), seq: r.u32() }).subarray(
            0,
            20,
          ),
        });
        const body = type < 128 ? q : payload();
        return [
          ip6Frame(
            58,
            icmp6Msg({ src, dst, type, code: r.int(8), param: r.u32(), body, badCsum: r.chance(0.05) }),
            src,
            dst,
            exts(),
          ),
        ];
      }
      case 2:
        return [
          ip6Frame(
            17,
            udpPkt({
              src,
              dst,
              sport: port(),
              dport: port(),
              payload: payload(),
              noCsum: r.chance(0.1),
              badCsum: r.chance(0.05),
            }),
            src,
            dst,
            exts(),
          ),
        ];
      case 3:
        return [ip6Frame(6, tcpFrame(src, dst), src, dst, exts())];
      default: {
        // fragments: tiny, overlapping, out of range, shuffled
        const nh = r.pick([17, 58, 6]);
        const l4 =
          nh === 17
            ? udpPkt({ src, dst, sport: port(), dport: UDP_PORT, payload: payload() })
            : nh === 58
              ? icmp6Msg({ src, dst, type: 128, body: payload() })
              : tcpFrame(src, dst);
        const id = r.u32();
        const unit = 8 * (1 + r.int(r.chance(0.3) ? 2 : 100));
        const out = [];
        for (let o = 0; o < l4.length && out.length < 20; o += unit) {
          const fh = new Uint8Array(8);
          const fo = r.chance(0.1) ? r.int(8192) << 3 : o;
          const more = o + unit < l4.length || r.chance(0.1);
          fh[2] = (fo >> 8) & 0xff;
          fh[3] = (fo & 0xf8) | (more ? 1 : 0);
          fh.set([id >>> 24, (id >>> 16) & 255, (id >>> 8) & 255, id & 255], 4);
          out.push(
            ip6Frame(nh, l4.subarray(o, o + unit + (r.chance(0.1) ? 8 : 0)), src, dst, [{ type: 44, bytes: fh }]),
          );
        }
        for (let i = out.length - 1; i > 0; i--) {
          const j = r.int(i + 1);
          [out[i], out[j]] = [out[j], out[i]];
        }
        return out;
      }
    }
  };
  const structured = () => {
    if (r.chance(0.3)) return structured6();
    switch (r.int(7)) {
      case 0: {
        // never the peer's address, nor one a few mutated bytes away from it (ARP may rebind it:
        // anyone on the link can, which is not what this fuzzer asks)
        const spa = r.pick([ip("198.18.7.9"), ip("198.18.77.7"), V_IP, 0, r.u32() | 0x01010000]);
        const tpa = r.pick([V_IP, ip("198.18.7.9"), spa, r.u32()]);
        const a = arpPkt({ op: r.pick([1, 2, 3, r.int(65536)]), sha: srcMac(), spa, tha: r.bytes(6), tpa });
        if (r.chance(0.1)) a[r.int(8)] = r.int(256); // htype, ptype, hlen, plen
        return [eth(r.pick([BCAST, V_MAC, r.bytes(6)]), srcMac(), 0x0806, a)];
      }
      case 1:
        return [
          ipFrame(
            1,
            icmpEcho({ type: r.pick([0, 3, 8, 11, r.int(256)]), payload: payload(), badCsum: r.chance(0.05) }),
          ),
        ];
      case 2: {
        // an unreachable quoting a TCP header, sometimes the live connection's (soft error: ignored)
        const q = ipv4({
          src: V_IP,
          dst: r.chance(0.5) ? P_IP : someIp(),
          proto: 6,
          payload: tcpSeg({ src: V_IP, dst: P_IP, sport: LIVE_PORT, dport: r.int(65536), seq: r.u32() }).subarray(0, 8),
        });
        const m = new Uint8Array(8 + q.length);
        m[0] = 3;
        m[1] = r.int(16);
        m.set(q, 8);
        const c = ~csum(m) & 0xffff;
        m[2] = c >> 8;
        m[3] = c & 255;
        return [ipFrame(1, m)];
      }
      case 3: {
        const src = srcIp();
        return [
          ipFrame(
            17,
            udpPkt({
              src,
              dst: V_IP,
              sport: port(),
              dport: port(),
              payload: payload(),
              noCsum: r.chance(0.2),
              badCsum: r.chance(0.05),
              lenField: r.chance(0.05) ? r.int(65536) : undefined,
            }),
            src,
          ),
        ];
      }
      case 4: {
        const src = srcIp();
        return [ipFrame(6, tcpFrame(src, V_IP), src)];
      }
      case 5:
        return fragments();
      default:
        return [ipFrame(r.pick([2, 17, 41, 58, 132, r.int(256)]), payload())];
    }
  };
  const randomFrame = () => {
    const f = r.bytes(r.int(r.chance(0.9) ? 200 : 3000));
    if (f.length >= 14 && r.chance(0.5)) {
      f.set(V_MAC, 0);
      f[12] = 8;
      f[13] = r.pick([0, 6]);
    }
    if (f.length >= 34 && r.chance(0.3)) {
      f[14] = 0x45;
      f[23] = r.pick([1, 6, 17]);
      f.set([198, 18, 0, 1], 30);
    }
    return f;
  };
  const mutate = (f) => {
    let g = f.slice();
    for (let k = 1 + r.int(4); k > 0; k--) if (g.length) g[r.int(g.length)] = r.int(256);
    if (r.chance(0.2)) g = g.subarray(0, r.int(g.length + 1));
    if (r.chance(0.1)) {
      const h = new Uint8Array(g.length + r.int(64));
      h.set(g);
      g = h;
    }
    return g;
  };
  /**
   * A segment on the live connection's 4-tuple from someone who cannot see it: sequence and
   * acknowledgment numbers drawn at random, and drawn again while the victim would accept them.
   */
  const blind = () => {
    const rcvNxt = V.x.tcpInfo(live.v, 20) >>> 0; // INFO_RCV_NXT
    const sndUna = V.x.tcpInfo(live.v, 21) >>> 0; // INFO_SND_UNA
    const near = (a, b) => Math.abs((a - b) | 0) < 1 << 22;
    let seq, ack;
    do {
      seq = r.u32();
      ack = r.u32();
    } while (near(seq, rcvNxt) || near(ack, sndUna));
    const flags = r.pick([TH.RST, TH.SYN, TH.ACK, TH.ACK | TH.PSH, TH.FIN | TH.ACK, TH.RST | TH.ACK, r.int(64)]);
    const seg = tcpSeg({
      src: P_IP,
      dst: V_IP,
      sport: pPort,
      dport: LIVE_PORT,
      seq,
      ack,
      flags,
      win: r.int(65536),
      opts: tcpOptions(),
      payload: payload(),
    });
    return eth(V_MAC, P_MAC, 0x0800, ipv4({ src: P_IP, dst: V_IP, proto: 6, payload: seg }));
  };

  /** Bogus RX slots: a buffer the NIC does not own, out of range, past its end, a chain that is never ended. */
  const bogusSlots = () => {
    const rx = V.rings.rx;
    const k = r.int(5);
    const n = V.x.poolCount();
    if (k === 0) {
      // an index out of range or a buffer the NIC does not own (never one in flight: that would
      // be the host handing over a buffer twice)
      const b = r.u32() % (n * 2);
      if (b >= n || V.x.bufOwner(b) !== OWNER.NIC) V.push(rx, b, r.int(2048), r.int(2048), 0, 0);
    } else if (k === 1) {
      // a NIC buffer with bounds past its end: refused untouched, so the host still holds it
      const b = V.x.bufAlloc(OWNER.NIC);
      if (b >= 0) {
        V.push(rx, b, 2000 + r.int(48), 100 + r.int(100), 0, 0);
        appHeld.push(b);
      }
    } else if (k === 2) {
      const b = V.x.bufAlloc(OWNER.APP); // not the NIC's: refused, and still the app's
      if (b >= 0) {
        V.push(rx, b, 0, 60, 0, 0);
        appHeld.push(b);
      }
    } else if (k === 3) {
      // a chain longer than a frame may be
      const len = 66 + r.int(10);
      for (let i = 0; i < len; i++) {
        const b = V.x.bufAlloc(OWNER.NIC);
        if (b < 0) break;
        V.push(rx, b, 0, 1 + r.int(100), 0, i + 1 < len ? SF_MORE : 0);
      }
    } else {
      const f = structured()[0];
      V.inject(f, {
        split: Math.max(1 + r.int(40), Math.ceil(f.length / 100)),
        flags: r.pick([0, RXF_CSUM_VALID, RXF_NEEDS_CSUM]),
        info: r.u32(),
      });
    }
  };
  const appHeld = [];

  /** Time jumps ahead (the live connection kept busy) until everything transient has expired. */
  const quiesce = () => {
    counts.quiesces++;
    for (const b of appHeld.splice(0)) V.x.bufUnref(b);
    live.target[0] += STREAM_CHUNK;
    live.target[1] += STREAM_CHUNK;
    const end = now + 400_000; // > SYN-ACK retries (63 x initRto/1000 s), 2 MSL, fragment and ARP timeouts
    while (now < end) {
      turn();
      const next = Math.min(V.deadline, P.deadline);
      now = Math.max(now + 1, Math.min(end, Number.isFinite(next) ? Math.ceil(next) : end));
    }
    for (let k = 0; k < 20; k++, now += 50) turn();
    if (live.got[0] !== live.target[0] || live.got[1] !== live.target[1])
      fail(`live stream stalled: got ${live.got} of ${live.target}`);
    const x = V.x;
    const problems = [];
    if (x.poolCheck() !== 0) problems.push(`pool invariant ${x.poolCheck()}`);
    if (x.tcpConnCount() !== 1) problems.push(`${x.tcpConnCount()} connection blocks (want the live one)`);
    if (x.tcpNodesUsed() !== 0) problems.push(`${x.tcpNodesUsed()} segment nodes held`);
    if (x.stackFragHeld() !== 0) problems.push(`${x.stackFragHeld()} fragments held`);
    if (x.poolFreeCount() !== x.poolCount()) {
      const held = [1, 2, 3, 4].map((o) => `${o}:${x.poolHeld(o)}`).join(" ");
      problems.push(`${x.poolCount() - x.poolFreeCount()} buffers not free (owner:count ${held})`);
    }
    if (problems.length) fail(`after quiesce: ${problems.join("; ")}`);
  };

  live.target[0] = live.target[1] = STREAM_CHUNK;
  let slots = 0; // RX slots posted since the last turn
  for (let i = 0; i < frames; i++) {
    counts.frames++;
    const kind = r.int(100);
    let batch;
    if (kind < 25) {
      counts.random++;
      batch = [randomFrame()];
    } else if (kind < 60) {
      counts.structured++;
      batch = structured();
    } else if (kind < 85) {
      counts.mutated++;
      batch = structured().map(mutate);
    } else if (kind < 95) {
      counts.blind++;
      batch = [blind()];
    } else {
      counts.slots++;
      bogusSlots();
      slots += 80;
      batch = [];
    }
    for (const f of batch) {
      // no frame may claim the peer's address in ARP: that rebinds it (anyone on the link can),
      // an attack this fuzzer leaves out; a mutation can make one (the victim's own address, in
      // a conflict probe, is one byte from the peer's)
      if (
        f.length >= 32 &&
        f[12] === 8 &&
        f[13] === 6 &&
        ((f[28] << 24) | (f[29] << 16) | (f[30] << 8) | f[31]) >>> 0 === P_IP
      )
        continue;
      recent.push(f);
      if (recent.length > keep) recent.shift();
      // pieces of at least len/100 bytes (a chain may exceed a frame's 64, not the RX ring)
      const split = r.chance(0.2) ? Math.max(1 + r.int(300), Math.ceil(f.length / 100)) : 0;
      slots += split ? Math.ceil(f.length / split) : 2;
      if (slots > 600 || V.x.poolFreeCount() < 512) {
        turn();
        slots = 0;
      }
      V.inject(f, {
        split,
        flags: r.chance(0.05) ? r.pick([RXF_CSUM_VALID, RXF_NEEDS_CSUM]) : 0,
        info: r.chance(0.05) ? r.u32() : 0,
      });
    }
    if (i % 64 === 63) {
      // the live connection carries data all along, both ways
      live.target[0] += STREAM_CHUNK;
      live.target[1] += STREAM_CHUNK;
    }
    if (i % 8 === 7 || slots > 600) {
      now += r.int(3);
      turn();
      slots = 0;
    }
    if ((i + 1) % quiesceEvery === 0 || i + 1 === frames) quiesce();
  }
  counts.streamed = [...live.got];
  counts.victim = V.stats();
  return counts;
}

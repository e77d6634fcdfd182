// Test harness for the Wasm core: instantiates build/core.wasm over a fresh memory, reserves a
// volatile pool, initialises the stack and offers helpers to inject frames, drain TX frames,
// issue app commands and read app events. Packet builders/parsers for Ethernet, ARP, IPv4,
// ICMP, UDP and TCP live here too.

import { readFileSync } from "node:fs";

const root = new URL("../../", import.meta.url);
const wasmBytes = readFileSync(new URL("build/core.wasm", root));
const wasmModule = new WebAssembly.Module(wasmBytes);

// counter names, parsed from the core's source so both sides never disagree
const gsrc = readFileSync(new URL("assembly/net/g.ts", root), "utf8");
export const COUNTERS = {};
for (const m of gsrc.matchAll(/export const C_(\w+) = (\d+);/g)) if (m[1] !== "COUNT") COUNTERS[m[1]] = +m[2];

export const OWNER = { FREE: 0, NIC: 1, STACK: 2, APP: 3, KEPT: 4 };
export const SF_MORE = 1;
export const RXF_CSUM_VALID = 2;
export const RXF_NEEDS_CSUM = 4;
export const CMD = {
  SEND: 1,
  CLOSE: 2,
  ABORT: 3,
  LISTEN: 4,
  CONNECT: 5,
  UNLISTEN: 6,
  UDP_BIND: 7,
  UDP_SEND: 8,
  UDP_UNBIND: 9,
  RECVD: 10,
  SETOPT: 11,
};
export const EV = {
  DATA: 1,
  ACCEPTED: 2,
  CONNECTED: 3,
  PEER_CLOSED: 4,
  CLOSED: 5,
  RESET: 6,
  WRITABLE: 7,
  SEND_REFUSED: 8,
  UDP: 9,
  LISTENING: 10,
  UDP_BOUND: 11,
  ERROR: 12,
};
export const EVNAME = Object.fromEntries(Object.entries(EV).map(([k, v]) => [v, k]));
export const ST = {
  CLOSED: 0,
  LISTEN: 1,
  SYN_SENT: 2,
  SYN_RCVD: 3,
  ESTABLISHED: 4,
  FIN_WAIT_1: 5,
  FIN_WAIT_2: 6,
  CLOSE_WAIT: 7,
  CLOSING: 8,
  LAST_ACK: 9,
  TIME_WAIT: 10,
};
export const TF = { NODELAY: 1, CUBIC: 2, NOSACK: 4, NOTS: 8, NOWS: 16, TS_OK: 0x100, WS_OK: 0x200, SACK_OK: 0x400 };
export const OPT = { NODELAY: 1, CC: 2, KEEPALIVE: 3, SNDBUF: 4 };
export const TH = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16, URG: 32 };

export const ip = (s) => s.split(".").reduce((a, b) => ((a << 8) | +b) >>> 0, 0);
/** IPv6 text (any RFC 4291 form without an embedded IPv4 part) to 16 bytes. */
export function ip6(s) {
  const [head, tail] = s.includes("::") ? s.split("::") : [s, null];
  const words = (x) => (x ? x.split(":").map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = tail === null ? [] : words(tail);
  const all = tail === null ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  if (all.length !== 8 || all.some((w) => !(w >= 0 && w <= 0xffff))) throw new Error("bad IPv6 address " + s);
  const b = new Uint8Array(16);
  all.forEach((w, i) => {
    b[2 * i] = w >> 8;
    b[2 * i + 1] = w & 255;
  });
  return b;
}
/** 16 bytes to IPv6 text (uncompressed groups, for messages). */
export const ip6Str = (b) =>
  Array.from({ length: 8 }, (_, i) => ((b[2 * i] << 8) | b[2 * i + 1]).toString(16)).join(":");
/** IPv4 number as the 16-byte IPv4-mapped address. */
export function mapped(n) {
  const b = new Uint8Array(16);
  b[10] = b[11] = 255;
  b[12] = n >>> 24;
  b[13] = (n >>> 16) & 255;
  b[14] = (n >>> 8) & 255;
  b[15] = n & 255;
  return b;
}
export const sameAddr = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
export const ipStr = (n) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
export const mac = (s) => Uint8Array.from(s.split(":").map((h) => parseInt(h, 16)));
export const BCAST = mac("ff:ff:ff:ff:ff:ff");

export const CFG = {
  MAC: 0,
  IP: 8,
  MASK: 12,
  GW: 16,
  MTU: 20,
  MAX_CONNS: 24,
  SYNQ: 28,
  NODES: 32,
  ARP: 36,
  ARPQ: 40,
  UDP: 44,
  LISTEN: 48,
  RX_LOG2: 52,
  TX_LOG2: 56,
  AIN_LOG2: 60,
  AOUT_LOG2: 64,
  RCVBUF: 68,
  SNDBUF: 72,
  FLAGS: 76,
  ICMP_RATE: 80,
  ARP_TTL: 84,
  MSL: 88,
  KEEPALIVE: 92,
  DELACK: 96,
  MIN_RTO: 100,
  INIT_RTO: 104,
  FRAG_SLOTS: 108,
  TSO: 112,
  TSO_PIECES: 116,
  FULL: 120,
  STEER: 124,
  SECRET: 128,
  IP6: 160,
  IP6_PREFIX: 176,
  GW6: 180,
};

/**
 * Creates a core. opts: mac, ip, mask, gw, mtu, buffers, and any CFG key in lower case
 * (maxConns, synq, nodes, arp, arpq, udp, listen, rcvbuf, sndbuf, flags, icmpRate, arpTtl, msl,
 * keepalive, delack, minRto, initRto), secret (Uint8Array(32)).
 */
export function createCore(opts = {}) {
  const memory = new WebAssembly.Memory({ initial: 2, maximum: 65536 });
  const inst = new WebAssembly.Instance(wasmModule, importsFor(memory));
  return setUp(memory, inst.exports, opts);
}

/** The same through `WebAssembly.instantiate(bytes, imports)`, as an embedding host does it. */
export async function createCoreAsync(opts = {}) {
  const memory = new WebAssembly.Memory({ initial: 2, maximum: 65536 });
  const { instance } = await WebAssembly.instantiate(wasmBytes, importsFor(memory));
  return setUp(memory, instance.exports, opts);
}

function importsFor(memory) {
  return {
    env: {
      memory,
      abort() {
        throw new Error("core abort");
      },
    },
  };
}

function setUp(memory, x, opts) {
  const nbuf = opts.buffers ?? 1024;
  if (x.poolReserve(nbuf) !== 0) throw new Error("poolReserve");
  const c = x.stackConfig();
  const dv = () => new DataView(memory.buffer);
  const u8 = () => new Uint8Array(memory.buffer);
  const myMac = opts.mac ?? mac("02:00:00:00:00:01");
  u8().set(myMac, c + CFG.MAC);
  const set = (k, v) => dv().setUint32(c + CFG[k], v >>> 0, true);
  set("IP", opts.ip ?? ip("198.18.0.1"));
  set("MASK", opts.mask ?? ip("255.255.255.0"));
  set("GW", opts.gw ?? 0);
  const map = {
    mtu: "MTU",
    maxConns: "MAX_CONNS",
    synq: "SYNQ",
    nodes: "NODES",
    arp: "ARP",
    arpq: "ARPQ",
    udp: "UDP",
    listen: "LISTEN",
    rcvbuf: "RCVBUF",
    sndbuf: "SNDBUF",
    flags: "FLAGS",
    icmpRate: "ICMP_RATE",
    arpTtl: "ARP_TTL",
    msl: "MSL",
    keepalive: "KEEPALIVE",
    delack: "DELACK",
    minRto: "MIN_RTO",
    initRto: "INIT_RTO",
    fragSlots: "FRAG_SLOTS",
    tso: "TSO",
    tsoPieces: "TSO_PIECES",
    full: "FULL",
    steer: "STEER",
    rxLog2: "RX_LOG2",
    txLog2: "TX_LOG2",
    ainLog2: "AIN_LOG2",
    aoutLog2: "AOUT_LOG2",
  };
  for (const [k, v] of Object.entries(map)) if (opts[k] !== undefined) set(v, opts[k]);
  const secret = opts.secret ?? Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 255);
  u8().set(secret, c + CFG.SECRET);
  if (opts.ip6) u8().set(opts.ip6, c + CFG.IP6);
  if (opts.ip6Prefix) set("IP6_PREFIX", opts.ip6Prefix);
  if (opts.gw6) u8().set(opts.gw6, c + CFG.GW6);
  const r = x.stackInit();
  if (r !== 0) throw new Error("stackInit " + r);
  x.arenaSeal();
  const at = (x.arenaEnd() + 65535) & ~65535;
  const need = at + nbuf * 2048;
  const have = memory.buffer.byteLength;
  if (need > have) memory.grow(Math.ceil((need - have) / 65536));
  if (x.poolAttach(at) !== 0) throw new Error("poolAttach");
  const core = new Core(memory, x, myMac, opts.ip ?? ip("198.18.0.1"));
  core.ip6 = opts.ip6 ?? null;
  liveCores.push(core);
  return core;
}

const liveCores = [];
/** Stops tracking a core (the simulator checks its own pools and makes many cores). */
export function forgetCore(core) {
  const i = liveCores.indexOf(core);
  if (i >= 0) liveCores.splice(i, 1);
}
/**
 * Pool invariant of every core created since the last call (for `test.after.each`): drains
 * TX like a host would, then returns [{ check, detail }] and forgets the cores.
 */
export function checkCores() {
  const out = liveCores.map((c) => {
    c.tx();
    return { check: c.check(), detail: c.x.poolCheckDetail() };
  });
  liveCores.length = 0;
  return out;
}

export class Core {
  constructor(memory, x, myMac, myIp) {
    this.memory = memory;
    this.x = x;
    this.mac = myMac;
    this.ip = myIp;
    this.rings = { rx: x.stackRing(0), tx: x.stackRing(1), ain: x.stackRing(2), aout: x.stackRing(3) };
    this.now = 0;
    this.deadline = Infinity;
    this.events = [];
    this.autoRecvd = true;
  }
  get u8() {
    return new Uint8Array(this.memory.buffer);
  }
  get dv() {
    return new DataView(this.memory.buffer);
  }
  bufAddr(b) {
    return this.x.bufAddress(b);
  }
  push(r, buf, off, len, conn, flags) {
    const res = this.x.ringPush(r, buf, off, len, conn >>> 0, flags >>> 0);
    if (res !== 0) throw new Error("ring full");
  }
  shift(r) {
    const s = this.x.ringShift(r);
    if (s === 0) return null;
    const d = this.dv;
    return {
      buf: d.getUint32(s, true),
      off: d.getUint16(s + 4, true),
      len: d.getUint16(s + 6, true),
      conn: d.getUint32(s + 8, true),
      flags: d.getUint32(s + 12, true),
      at: s,
    };
  }
  /** The 16-byte lane row of ring r's slot at address s (or at the ring's tail when s is omitted). */
  laneRow(r, s) {
    const d = this.dv;
    const lane = d.getUint32(r + 12, true);
    if (lane === 0) throw new Error("ring without a lane");
    if (s === undefined) s = r + 16 + ((d.getUint32(r + 8, true) & d.getUint32(r, true)) << 4);
    return lane + (s - r - 16);
  }
  /** A command whose address (16 bytes: IPv6 or mapped IPv4) goes in the lane row; its IPv4 field is 0. */
  cmdAddr(code, addr, o = {}) {
    this.u8.set(addr, this.laneRow(this.rings.ain));
    this.cmd(code, o);
  }
  /** Static neighbor entry (16-byte address, IPv4 mapped or IPv6). */
  neighAdd(addr, m) {
    const s = this.x.stackScratch();
    this.u8.set(addr, s);
    this.u8.set(m, s + 16);
    this.x.stackNeighAdd(s, s + 16);
  }
  /** Our IPv6 address k (0 link-local, 1 configured) and its state (0 none, 1 tentative, 2 preferred, 3 duplicate). */
  addr6(k) {
    const p = this.x.stackIp6Addr(k);
    return { addr: p ? this.u8.slice(p, p + 16) : null, state: this.x.stackIp6State(k) };
  }
  /** Writes a frame into NIC buffers (one per piece, split at `split` bytes) and posts RX slots. */
  inject(frame, { off = 64, flags = 0, info = 0, split = 0 } = {}) {
    const pieces = [];
    if (split === 0 && frame.length + off > 2048) split = 1900;
    if (split > 0) for (let i = 0; i < frame.length; i += split) pieces.push(frame.subarray(i, i + split));
    else pieces.push(frame);
    pieces.forEach((p, k) => {
      const b = this.x.bufAlloc(OWNER.NIC);
      if (b < 0) throw new Error("no buffer");
      const o = k === 0 ? off : 0;
      this.u8.set(p, this.bufAddr(b) + o);
      this.push(
        this.rings.rx,
        b,
        o,
        p.length,
        k === 0 ? info : 0,
        (k === 0 ? flags : 0) | (k + 1 < pieces.length ? SF_MORE : 0),
      );
    });
  }
  /** Runs one poll at time t (ms). */
  poll(t = this.now) {
    this.now = t;
    this.deadline = this.x.stackPoll(t);
    this.collectEvents();
    return this.deadline;
  }
  /** Drains TX: returns frames (copied); releases the NIC's references like a host does. */
  tx() {
    const out = [];
    let cur = [];
    for (let s; (s = this.shift(this.rings.tx));) {
      cur.push(this.u8.slice(this.bufAddr(s.buf) + s.off, this.bufAddr(s.buf) + s.off + s.len));
      this.x.bufUnref(s.buf);
      if (!(s.flags & SF_MORE)) {
        const len = cur.reduce((a, p) => a + p.length, 0);
        const f = new Uint8Array(len);
        let o = 0;
        for (const p of cur) {
          f.set(p, o);
          o += p.length;
        }
        f.slots = cur.length;
        out.push(f);
        cur = [];
      }
    }
    return out;
  }
  /** Reads APP-OUT into this.events (data copied; buffers released unless keep). */
  collectEvents() {
    for (let s; (s = this.shift(this.rings.aout));) {
      const code = (s.flags >>> 8) & 255;
      const ev = {
        code,
        name: EVNAME[code],
        conn: s.conn,
        buf: s.buf,
        off: s.off,
        len: s.len,
        aux: s.flags >>> 16,
        more: !!(s.flags & SF_MORE),
        handle: (s.flags >>> 1) & 127,
      };
      if (code === EV.ACCEPTED || code === EV.UDP) {
        const row = this.laneRow(this.rings.aout, s.at);
        ev.addr = this.u8.slice(row, row + 16);
      }
      if (code === EV.DATA || code === EV.UDP || code === EV.SEND_REFUSED) {
        ev.data = this.u8.slice(this.bufAddr(s.buf) + s.off, this.bufAddr(s.buf) + s.off + s.len);
        ev.owner = this.x.bufOwner(s.buf);
        if (!this.keepBuffers) this.x.bufUnref(s.buf);
        if (code === EV.DATA && this.autoRecvd) this.cmd(CMD.RECVD, { conn: s.conn, buf: s.len });
      }
      this.events.push(ev);
    }
  }
  takeEvents() {
    const e = this.events;
    this.events = [];
    return e;
  }
  cmd(code, { buf = 0, off = 0, len = 0, conn = 0, aux = 0, handle = 0 } = {}) {
    this.push(this.rings.ain, buf, off, len, conn, (code << 8) | (aux << 16) | ((handle & 127) << 1));
  }
  /** A buffer owned by the app holding `bytes` at `off`. */
  appBuf(bytes, off = 128, owner = OWNER.APP) {
    const b = this.x.bufAlloc(owner);
    if (b < 0) throw new Error("no buffer");
    this.u8.set(bytes, this.bufAddr(b) + off);
    return { buf: b, off, len: bytes.length };
  }
  stats() {
    const p = this.x.stackStats();
    const d = this.dv;
    const o = {};
    for (const [k, i] of Object.entries(COUNTERS)) o[k] = d.getUint32(p + i * 4, true);
    return o;
  }
  stat(name) {
    return this.stats()[name];
  }
  arpAdd(ipn, m) {
    const s = this.x.stackScratch();
    this.u8.set(m, s);
    this.x.stackArpAdd(ipn, s);
  }
  held(owner) {
    return this.x.poolHeld(owner);
  }
  check() {
    return this.x.poolCheck();
  }
}

// ---------------------------------------------------------------- checksums and builders

export function csum(bytes, init = 0) {
  let s = init;
  for (let i = 0; i + 1 < bytes.length; i += 2) s += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length & 1) s += bytes[bytes.length - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
const be16 = (a, o, v) => {
  a[o] = v >>> 8;
  a[o + 1] = v & 255;
};
const be32 = (a, o, v) => {
  a[o] = v >>> 24;
  a[o + 1] = (v >>> 16) & 255;
  a[o + 2] = (v >>> 8) & 255;
  a[o + 3] = v & 255;
};
const rd16 = (a, o) => (a[o] << 8) | a[o + 1];
const rd32 = (a, o) => ((a[o] << 24) | (a[o + 1] << 16) | (a[o + 2] << 8) | a[o + 3]) >>> 0;
export { rd16, rd32, be16, be32 };

export function eth(dst, src, type, payload) {
  const f = new Uint8Array(14 + payload.length);
  f.set(dst, 0);
  f.set(src, 6);
  be16(f, 12, type);
  f.set(payload, 14);
  return f;
}
export function arpPkt({ op, sha, spa, tha = new Uint8Array(6), tpa }) {
  const a = new Uint8Array(28);
  be16(a, 0, 1);
  be16(a, 2, 0x0800);
  a[4] = 6;
  a[5] = 4;
  be16(a, 6, op);
  a.set(sha, 8);
  be32(a, 14, spa);
  a.set(tha, 18);
  be32(a, 24, tpa);
  return a;
}
export function ipv4({
  src,
  dst,
  proto,
  payload,
  ttl = 64,
  id = 1,
  frag = 0x4000,
  options = new Uint8Array(0),
  badCsum = false,
  totalLen,
}) {
  const hl = 20 + options.length;
  const p = new Uint8Array(hl + payload.length);
  p[0] = 0x40 | (hl >> 2);
  be16(p, 2, totalLen ?? hl + payload.length);
  be16(p, 4, id);
  be16(p, 6, frag);
  p[8] = ttl;
  p[9] = proto;
  be32(p, 12, src);
  be32(p, 16, dst);
  p.set(options, 20);
  be16(p, 10, (~csum(p.subarray(0, hl)) & 0xffff) ^ (badCsum ? 1 : 0));
  p.set(payload, hl);
  return p;
}
/** Pseudo-header sum: IPv4 (src, dst numbers) or IPv6 (16-byte addresses, RFC 8200 8.1). */
function pseudo(src, dst, proto, len) {
  if (src instanceof Uint8Array) {
    const b = new Uint8Array(40);
    b.set(src, 0);
    b.set(dst, 16);
    be32(b, 32, len);
    b[39] = proto;
    return csum(b);
  }
  const b = new Uint8Array(12);
  be32(b, 0, src);
  be32(b, 4, dst);
  b[9] = proto;
  be16(b, 10, len);
  return csum(b);
}
/**
 * An IPv6 packet: header, extension headers `ext` (raw bytes, each starting with its own
 * next-header byte, which is filled in), then `payload` of next header `nh`.
 */
export function ipv6({ src, dst, nh, payload, hlim = 64, ext = [], plen }) {
  const extLen = ext.reduce((a, e) => a + e.bytes.length, 0);
  const p = new Uint8Array(40 + extLen + payload.length);
  p[0] = 0x60;
  be16(p, 4, plen ?? extLen + payload.length);
  p[6] = ext.length ? ext[0].type : nh;
  p[7] = hlim;
  p.set(src, 8);
  p.set(dst, 24);
  let o = 40;
  ext.forEach((e, i) => {
    const b = e.bytes.slice();
    b[0] = i + 1 < ext.length ? ext[i + 1].type : nh;
    p.set(b, o);
    o += b.length;
  });
  p.set(payload, o);
  return p;
}
/** An ICMPv6 message (type, code, 4 bytes of `param`, body) with its checksum over src/dst. */
export function icmp6Msg({ src, dst, type, code = 0, param = 0, body = new Uint8Array(0), badCsum = false }) {
  const m = new Uint8Array(8 + body.length);
  m[0] = type;
  m[1] = code;
  be32(m, 4, param >>> 0);
  m.set(body, 8);
  be16(m, 2, (~csum(m, pseudo(src, dst, 58, m.length)) & 0xffff) ^ (badCsum ? 1 : 0));
  return m;
}
/** A whole NS or NA message: ICMPv6 header with R/S/O flags in the first param byte, target and options. */
export function ndMsg({ src, dst, type, target, lla = null, flags = 0, badCsum = false }) {
  const body = new Uint8Array(16 + (lla ? 8 : 0));
  body.set(target, 0);
  if (lla) {
    body[16] = type === 135 ? 1 : 2;
    body[17] = 1;
    body.set(lla, 18);
  }
  return icmp6Msg({ src, dst, type, param: (flags << 24) >>> 0, body, badCsum });
}
export function l4csum(src, dst, proto, seg) {
  return ~csum(seg, pseudo(src, dst, proto, seg.length)) & 0xffff;
}
export function udpPkt({ src, dst, sport, dport, payload, noCsum = false, badCsum = false, lenField }) {
  const u = new Uint8Array(8 + payload.length);
  be16(u, 0, sport);
  be16(u, 2, dport);
  be16(u, 4, lenField ?? u.length);
  u.set(payload, 8);
  if (!noCsum) {
    let c = l4csum(src, dst, 17, u);
    if (c === 0) c = 0xffff;
    be16(u, 6, c ^ (badCsum ? 0x100 : 0));
  }
  return u;
}
export function icmpEcho({ type = 8, id = 1, seq = 1, payload = new Uint8Array(0), badCsum = false }) {
  const m = new Uint8Array(8 + payload.length);
  m[0] = type;
  be16(m, 4, id);
  be16(m, 6, seq);
  m.set(payload, 8);
  be16(m, 2, (~csum(m) & 0xffff) ^ (badCsum ? 1 : 0));
  return m;
}
/** TCP options: {mss, ws, sackOk, ts: [val, ecr], sack: [[l, r], ...], raw} */
export function tcpOpts(o = {}) {
  const b = [];
  if (o.mss !== undefined) b.push(2, 4, o.mss >> 8, o.mss & 255);
  if (o.ws !== undefined) b.push(1, 3, 3, o.ws);
  if (o.sackOk) b.push(1, 1, 4, 2);
  if (o.ts) {
    b.push(1, 1, 8, 10);
    for (const v of o.ts) b.push(v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
  }
  if (o.sack) {
    b.push(1, 1, 5, 2 + 8 * o.sack.length);
    for (const [l, r] of o.sack) for (const v of [l, r]) b.push(v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255);
  }
  if (o.raw) b.push(...o.raw);
  while (b.length % 4) b.push(0);
  return Uint8Array.from(b);
}
export function tcpSeg({
  src,
  dst,
  sport,
  dport,
  seq = 0,
  ack = 0,
  flags = TH.ACK,
  win = 65535,
  opts = new Uint8Array(0),
  payload = new Uint8Array(0),
  urp = 0,
  badCsum = false,
  doff,
}) {
  const hl = 20 + opts.length;
  const t = new Uint8Array(hl + payload.length);
  be16(t, 0, sport);
  be16(t, 2, dport);
  be32(t, 4, seq >>> 0);
  be32(t, 8, ack >>> 0);
  t[12] = ((doff ?? hl) >> 2) << 4;
  t[13] = flags;
  be16(t, 14, win);
  be16(t, 18, urp);
  t.set(opts, 20);
  t.set(payload, hl);
  be16(t, 16, l4csum(src, dst, 6, t) ^ (badCsum ? 1 : 0));
  return t;
}

// ---------------------------------------------------------------- parsers

export function parseEth(f) {
  return { dst: f.subarray(0, 6), src: f.subarray(6, 12), type: rd16(f, 12), payload: f.subarray(14) };
}
export function parseArp(a) {
  return { op: rd16(a, 6), sha: a.subarray(8, 14), spa: rd32(a, 14), tha: a.subarray(18, 24), tpa: rd32(a, 24) };
}
export function parseIp(p) {
  const hl = (p[0] & 15) * 4;
  const tot = rd16(p, 2);
  return {
    v: p[0] >> 4,
    hl,
    tot,
    id: rd16(p, 4),
    frag: rd16(p, 6),
    ttl: p[8],
    proto: p[9],
    src: rd32(p, 12),
    dst: rd32(p, 16),
    csumOk: csum(p.subarray(0, hl)) === 0xffff,
    payload: p.subarray(hl, tot),
  };
}
export function parseTcpOpts(o) {
  const r = {};
  for (let k = 0; k < o.length;) {
    const kind = o[k];
    if (kind === 0) break;
    if (kind === 1) {
      k++;
      continue;
    }
    const l = o[k + 1];
    if (kind === 2) r.mss = rd16(o, k + 2);
    if (kind === 3) r.ws = o[k + 2];
    if (kind === 4) r.sackOk = true;
    if (kind === 8) r.ts = [rd32(o, k + 2), rd32(o, k + 6)];
    if (kind === 5) {
      r.sack = [];
      for (let j = k + 2; j < k + l; j += 8) r.sack.push([rd32(o, j), rd32(o, j + 4)]);
    }
    k += l;
  }
  return r;
}
export function parseTcp(t, ipHdr) {
  const hl = (t[12] >> 4) * 4;
  const r = {
    sport: rd16(t, 0),
    dport: rd16(t, 2),
    seq: rd32(t, 4),
    ack: rd32(t, 8),
    hl,
    flags: t[13],
    win: rd16(t, 14),
    opts: parseTcpOpts(t.subarray(20, hl)),
    payload: t.subarray(hl),
  };
  if (ipHdr) r.csumOk = csum(t, pseudo(ipHdr.src, ipHdr.dst, 6, t.length)) === 0xffff;
  return r;
}
export function parseIp6(p) {
  const plen = rd16(p, 4);
  return {
    v: p[0] >> 4,
    plen,
    nh: p[6],
    hlim: p[7],
    src: p.slice(8, 24),
    dst: p.slice(24, 40),
    payload: p.subarray(40, 40 + plen),
  };
}
function parseUdp(u, src, dst) {
  return {
    sport: rd16(u, 0),
    dport: rd16(u, 2),
    len: rd16(u, 4),
    csum: rd16(u, 6),
    payload: u.subarray(8, rd16(u, 4)),
    csumOk:
      rd16(u, 6) === 0
        ? !(src instanceof Uint8Array)
        : csum(u.subarray(0, rd16(u, 4)), pseudo(src, dst, 17, rd16(u, 4))) === 0xffff,
  };
}
/** Parses an Ethernet frame (ARP, IPv4, IPv6 without extension headers) down to L4, verifying checksums. */
export function parseFrame(f) {
  const e = parseEth(f);
  const r = { eth: e };
  if (e.type === 0x0806) {
    r.arp = parseArp(e.payload);
    return r;
  }
  if (e.type === 0x86dd) {
    const i = parseIp6(e.payload);
    r.ip6 = i;
    if (i.nh === 6) r.tcp = parseTcp(i.payload, i);
    else if (i.nh === 17) r.udp = parseUdp(i.payload, i.src, i.dst);
    else if (i.nh === 58) {
      const m = i.payload;
      r.icmp6 = {
        type: m[0],
        code: m[1],
        param: rd32(m, 4),
        csumOk: csum(m, pseudo(i.src, i.dst, 58, m.length)) === 0xffff,
        body: m.subarray(8),
      };
      if (m[0] === 135 || m[0] === 136) {
        r.nd = {
          flags: m[4],
          target: m.slice(8, 24),
          lla: m.length >= 32 && m[25] === 1 ? m.slice(26, 32) : null,
          optType: m[24],
        };
      }
    }
    return r;
  }
  if (e.type !== 0x0800) return r;
  const i = parseIp(e.payload);
  r.ip = i;
  if (i.proto === 6) r.tcp = parseTcp(i.payload, i);
  else if (i.proto === 17) r.udp = parseUdp(i.payload, i.src, i.dst);
  else if (i.proto === 1) {
    r.icmp = {
      type: i.payload[0],
      code: i.payload[1],
      csumOk: csum(i.payload) === 0xffff,
      body: i.payload.subarray(4),
    };
  }
  return r;
}

/** Asserts the pool invariant and returns held counts. */
export function poolState(core) {
  return {
    check: core.check(),
    free: core.held(0),
    nic: core.held(1),
    stack: core.held(2),
    app: core.held(3),
    kept: core.held(4),
  };
}

// ---------------------------------------------------------------- a scripted remote host

export const PEER_IP = ip("198.18.0.2");
export const PEER_MAC = mac("02:00:00:00:00:02");
export const CORE_IP6 = ip6("2001:2:0:63::2");
export const PEER_IP6 = ip6("2001:2:0:63::1");

/** A remote endpoint that writes raw segments into the core and parses what comes out. */
export class Peer {
  /** v6: speak IPv6 (addresses are then 16-byte arrays; the core's is core.ip6). */
  constructor(core, { ipAddr, macAddr = PEER_MAC, port = 40000, resolve = true, v6 = false } = {}) {
    this.core = core;
    this.v6 = v6;
    this.ip = ipAddr ?? (v6 ? PEER_IP6 : PEER_IP);
    this.mac = macAddr;
    this.port = port;
    if (resolve) {
      if (v6) core.neighAdd(this.ip, macAddr);
      else core.arpAdd(this.ip, macAddr);
    }
  }
  /** The core's address as this peer sends to it. */
  get dst() {
    return this.v6 ? this.core.ip6 : this.core.ip;
  }
  ipFrame(proto, l4, ipOpts = {}) {
    if (this.v6) {
      return eth(
        this.core.mac,
        this.mac,
        0x86dd,
        ipv6({ src: this.ip, dst: this.dst, nh: proto, payload: l4, ...ipOpts }),
      );
    }
    return eth(
      this.core.mac,
      this.mac,
      0x0800,
      ipv4({ src: this.ip, dst: this.core.ip, proto, payload: l4, ...ipOpts }),
    );
  }
  /** Injects a TCP segment. o: seq, ack, flags, win, opts (object or bytes), payload, sport, dport, badCsum, inject opts */
  tcp(o) {
    const opts = o.opts instanceof Uint8Array ? o.opts : tcpOpts(o.opts ?? {});
    const payload = typeof o.payload === "string" ? new TextEncoder().encode(o.payload) : o.payload;
    const seg = tcpSeg({
      src: this.ip,
      dst: this.dst,
      sport: o.sport ?? this.port,
      dport: o.dport ?? 80,
      seq: o.seq,
      ack: o.ack,
      flags: o.flags ?? TH.ACK,
      win: o.win ?? 65535,
      opts,
      payload,
      badCsum: o.badCsum,
      urp: o.urp ?? 0,
      doff: o.doff,
    });
    this.core.inject(this.ipFrame(6, seg, o.ip ?? {}), o.inject ?? {});
    return seg;
  }
  udp(o) {
    const payload =
      typeof o.payload === "string" ? new TextEncoder().encode(o.payload) : (o.payload ?? new Uint8Array(0));
    const u = udpPkt({
      src: this.ip,
      dst: this.dst,
      sport: o.sport ?? 5000,
      dport: o.dport,
      payload,
      noCsum: o.noCsum,
      badCsum: o.badCsum,
      lenField: o.lenField,
    });
    this.core.inject(this.ipFrame(17, u, o.ip ?? {}), o.inject ?? {});
  }
  /** Parsed frames the core sent (all kinds). */
  frames() {
    return this.core.tx().map(parseFrame);
  }
  /** TCP segments the core sent (asserts they are well formed). */
  segs() {
    return this.frames()
      .filter((f) => f.tcp)
      .map((f) => {
        if ((f.ip && !f.ip.csumOk) || !f.tcp.csumOk) throw new Error("bad checksum from core");
        return f.tcp;
      });
  }
}

/**
 * Opens a connection from the peer to a listening core (3-way handshake) and returns
 * { conn, iss (core's), seq (peer's next), synack }.
 */
export function handshake(core, peer, { port = 80, opts = { mss: 1460 }, isn = 1000, t = core.now, win = 65535 } = {}) {
  core.cmd(CMD.LISTEN, { off: port, len: 16, conn: 77 });
  core.poll(t);
  peer.tcp({ seq: isn, flags: TH.SYN, opts, dport: port, win });
  core.poll(t);
  const [synack] = peer.segs();
  if (!synack || synack.flags !== (TH.SYN | TH.ACK)) throw new Error("no SYN-ACK");
  const ackOpts = synack.opts.ts && opts.ts ? { ts: [opts.ts[0] + 1, synack.opts.ts[0]] } : {};
  peer.tcp({ seq: isn + 1, ack: synack.seq + 1, flags: TH.ACK, dport: port, opts: ackOpts, win });
  core.poll(t);
  const acc = core.takeEvents().find((e) => e.code === EV.ACCEPTED);
  if (!acc) throw new Error("no ACCEPTED");
  return { conn: acc.conn, iss: synack.seq, seq: isn + 1, snd: synack.seq + 1, synack, port };
}

/** Sends bytes from the core's app on conn (one app buffer per call). */
export function appSend(core, conn, bytes, { off = 128, owner = OWNER.APP } = {}) {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  const b = core.appBuf(data, off, owner);
  core.cmd(CMD.SEND, { conn, ...b });
  return b;
}
export const text = (s) => new TextEncoder().encode(s);
export const str = (u) => new TextDecoder().decode(u);

// A seeded, deterministic network simulator: two Wasm cores joined by an in-memory Ethernet
// link with configurable loss, duplication, reordering, corruption, delay, jitter, bandwidth,
// queue limit and MTU. One core's app streams pseudo-random bytes to the other over TCP; the
// receiver hashes what it gets, and both hashes must match. Time is simulated: the loop jumps
// to the earliest of the cores' deadlines and the link's next delivery.

import { createHash } from "node:crypto";
import { createCore, forgetCore, ip, ip6, mac, OWNER, CMD, EV, SF_MORE, TF } from "./corehost.mjs";
import { TCP_INFO } from "../../build/index.js";

export function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

class Heap {
  constructor() {
    this.a = [];
  }
  get size() {
    return this.a.length;
  }
  peek() {
    return this.a[0];
  }
  push(x) {
    const a = this.a;
    a.push(x);
    for (let i = a.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (less(a[i], a[p])) {
        [a[i], a[p]] = [a[p], a[i]];
        i = p;
      } else break;
    }
  }
  pop() {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length) {
      a[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1,
          r = l + 1;
        let m = i;
        if (l < a.length && less(a[l], a[m])) m = l;
        if (r < a.length && less(a[r], a[m])) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m], a[i]];
        i = m;
      }
    }
    return top;
  }
}
const less = (x, y) => x.at < y.at || (x.at === y.at && x.id < y.id);

const PATTERN_LEN = (1 << 20) + 13;
let pattern = null;
function patternBytes() {
  if (!pattern) {
    const r = rng(12345);
    pattern = new Uint8Array(PATTERN_LEN + 4096);
    for (let i = 0; i < pattern.length; i++) pattern[i] = (r() * 256) | 0;
    pattern.set(pattern.subarray(0, 4096), PATTERN_LEN);
  }
  return pattern;
}

/** Drains a core's TX ring into whole frames (copied), releasing the NIC references. */
function drainTx(core) {
  const out = [];
  const x = core.x;
  const r = core.rings.tx;
  let cur = null;
  for (;;) {
    const s = x.ringShift(r);
    if (s === 0) break;
    const dv = core.dv;
    const buf = dv.getUint32(s, true),
      off = dv.getUint16(s + 4, true),
      len = dv.getUint16(s + 6, true),
      fl = dv.getUint32(s + 12, true);
    const a = x.bufAddress(buf) + off;
    const piece = core.u8.slice(a, a + len);
    x.bufUnref(buf);
    cur = cur ? concat(cur, piece) : piece;
    if (!(fl & SF_MORE)) {
      out.push(cur);
      cur = null;
    }
  }
  return out;
}
function concat(a, b) {
  const c = new Uint8Array(a.length + b.length);
  c.set(a);
  c.set(b, a.length);
  return c;
}

/**
 * Runs one transfer. Returns a result object; `ok` is true when the receiver got exactly the
 * bytes sent, both connections closed cleanly and both pools are back to all-free.
 */
export function runTransfer(o = {}) {
  const cfg = {
    seed: 1,
    bytes: 1 << 20,
    loss: 0,
    dup: 0,
    reorder: 0,
    corrupt: 0,
    delay: 1,
    jitter: 0,
    bandwidth: 0,
    queue: 1 << 20,
    mtu: 1500,
    rcvbuf: 262144,
    sndbuf: 262144,
    cubic: false,
    chunk: 1900,
    buffers: 4096,
    nodelay: false,
    maxSimMs: 36e5,
    sack: true,
    ts: true,
    ws: true,
    ...o,
  };
  const r = rng(cfg.seed * 2654435761);
  const flags =
    (cfg.cubic ? TF.CUBIC : 0) |
    (cfg.sack ? 0 : TF.NOSACK) |
    (cfg.ts ? 0 : TF.NOTS) |
    (cfg.ws ? 0 : TF.NOWS) |
    (cfg.nodelay ? TF.NODELAY : 0);
  const common = {
    mtu: cfg.mtu,
    rcvbuf: cfg.rcvbuf,
    sndbuf: cfg.sndbuf,
    buffers: cfg.buffers,
    msl: 1000,
    flags,
    nodes: 16384,
    minRto: 200,
    initRto: 1000,
    mask: ip("255.255.255.0"),
  };
  // v6: the connections run over IPv6 (both cores dual-stack; neighbors found by NDP on the link)
  if (cfg.v6) common.ip6Prefix = 64;
  const A = createCore({
    ...common,
    mac: mac("02:00:00:00:00:0a"),
    ip: ip("198.18.0.10"),
    ip6: cfg.v6 ? ip6("2001:2:0:63::a") : undefined,
    secret: Uint8Array.from({ length: 32 }, (_, i) => i + cfg.seed),
  });
  const B = createCore({
    ...common,
    mac: mac("02:00:00:00:00:0b"),
    ip: ip("198.18.0.11"),
    ip6: cfg.v6 ? ip6("2001:2:0:63::b") : undefined,
    secret: Uint8Array.from({ length: 32 }, (_, i) => 7 * i + cfg.seed),
  });
  const link = new Heap();
  let fid = 0;
  const stats = { frames: 0, lost: 0, duped: 0, reordered: 0, corrupted: 0, queueDrops: 0, tooBig: 0 };
  const linkFree = [0, 0];
  const send = (from, frames, t) => {
    const dir = from === A ? 0 : 1;
    for (const f0 of frames) {
      stats.frames++;
      if (cfg.trace && f0.length >= 54 && f0[23] === 6) {
        const rd32 = (o) => ((f0[o] << 24) | (f0[o + 1] << 16) | (f0[o + 2] << 8) | f0[o + 3]) >>> 0;
        cfg.trace.push(
          `${t.toFixed(1)} ${from === A ? "A>B" : "B>A"} fl=${f0[47].toString(16)} seq=${rd32(38)} ack=${rd32(42)} len=${f0.length - 34 - (f0[46] >> 4) * 4}`,
        );
        if (cfg.trace.length > 60) cfg.trace.shift();
      }
      if (f0.length > cfg.mtu + 14) {
        stats.tooBig++;
        continue;
      }
      if (r() < cfg.loss) {
        stats.lost++;
        continue;
      }
      const copies = r() < cfg.dup ? 2 : 1;
      if (copies === 2) stats.duped++;
      for (let c = 0; c < copies; c++) {
        let f = f0;
        if (r() < cfg.corrupt) {
          f = f0.slice();
          const i = 14 + Math.floor(r() * (f.length - 14));
          f[i] ^= 1 << Math.floor(r() * 8);
          stats.corrupted++;
        }
        let at = t;
        if (cfg.bandwidth > 0) {
          const start = Math.max(t, linkFree[dir]);
          if ((start - t) * cfg.bandwidth > cfg.queue) {
            stats.queueDrops++;
            continue;
          }
          linkFree[dir] = start + f.length / cfg.bandwidth;
          at = linkFree[dir];
        }
        at += cfg.delay + (cfg.jitter ? r() * cfg.jitter : 0);
        if (r() < cfg.reorder) {
          at += cfg.delay * 2 + 1 + r() * 3;
          stats.reordered++;
        }
        link.push({ at, id: fid++, to: from === A ? B : A, f });
      }
    }
  };

  const pat = patternBytes();
  const errors = [];
  // One endpoint's app: streams `toSend` pattern bytes (from stream offset `base`), hashes what it receives.
  const side = (core, name, toSend, base) => ({
    core,
    name,
    toSend,
    base,
    conn: -1,
    sendOff: 0,
    refused: [],
    blocked: false,
    closing: false,
    closed: false,
    peerClosed: false,
    quiet: 0,
    recvBytes: 0,
    recvdPending: 0,
    hashOut: createHash("sha256"),
    hashIn: createHash("sha256"),
  });
  // flows: one per connection and side; A's are made up front, B's on ACCEPTED
  const nconn = cfg.conns ?? 1;
  const flowsA = Array.from({ length: nconn }, (_, k) => side(A, "A" + k, cfg.bytes, 0));
  const flowsB = [];
  const byConn = [new Map(), new Map()];
  const SA = flowsA[0];
  let SB = null;

  B.cmd(CMD.LISTEN, { off: 5001, len: Math.max(64, nconn), conn: 1 });
  // IPv6 addresses are usable once duplicate address detection is over (1 s): connect then
  const connectAll = () => {
    for (let k = 0; k < nconn; k++) {
      if (cfg.v6) A.cmdAddr(CMD.CONNECT, B.ip6, { off: 5001, len: 0, conn: k });
      else A.cmd(CMD.CONNECT, { buf: B.ip, off: 5001, len: 0, conn: k });
    }
  };
  let connectAt = cfg.v6 ? 1001 : 0;
  if (!cfg.v6) connectAll();

  const fill = (S) => {
    const C = S.core;
    S.quiet++;
    if (S.conn < 0 || S.blocked || S.closing) return;
    while (S.refused.length && ringSpace(C, C.rings.ain) > 4) {
      const b = S.refused.shift();
      C.cmd(CMD.SEND, { conn: S.conn, buf: b.buf, off: b.off, len: b.len });
      S.quiet = 0;
    }
    let budget = 256;
    while (S.sendOff < S.toSend && budget-- > 0) {
      if (ringSpace(C, C.rings.ain) < 4) break;
      // the app leaves a quarter of the pool to the stack (headers, ARP, received frames)
      if (C.x.poolFreeCount() < C.x.poolCount() >> 2) break;
      const b = C.x.bufAlloc(OWNER.APP);
      if (b < 0) break;
      const len = Math.min(cfg.chunk, S.toSend - S.sendOff);
      const off = 2048 - len >= 128 ? 128 : 2048 - len;
      const p = (S.base + S.sendOff) % PATTERN_LEN;
      const src =
        p + len <= pat.length
          ? pat.subarray(p, p + len)
          : concat(pat.subarray(p), pat.subarray(0, len - (pat.length - p)));
      C.u8.set(src, C.x.bufAddress(b) + off);
      S.hashOut.update(src);
      S.sendOff += len;
      C.cmd(CMD.SEND, { conn: S.conn, buf: b, off, len });
      S.quiet = 0;
    }
    // close once every send has been seen through a poll without being refused (a pure
    // receiver closes when its peer has)
    const done = S.sendOff >= S.toSend && !S.refused.length && S.quiet >= 2;
    if (done && !S.closing && (S.toSend > 0 || S.peerClosed)) {
      S.closing = true;
      C.cmd(CMD.CLOSE, { conn: S.conn });
    }
  };

  const events = (C) => {
    const isA = C === A;
    const map = byConn[isA ? 0 : 1];
    const touched = new Set();
    for (let s; (s = C.x.ringShift(C.rings.aout));) {
      const dv = C.dv;
      const code = (dv.getUint32(s + 12, true) >>> 8) & 255,
        conn = dv.getUint32(s + 8, true);
      let S = map.get(conn);
      if (code === EV.CONNECTED && isA) {
        S = flowsA[dv.getUint32(s, true)];
        S.conn = conn;
        S.port = dv.getUint16(s + 6, true);
        S.base = S.port * 7919;
        map.set(conn, S);
      } else if (code === EV.ACCEPTED && !isA) {
        S = side(B, "B" + flowsB.length, cfg.bidir ? cfg.bytes : 0, 0);
        S.conn = conn;
        S.port = dv.getUint16(s + 4, true);
        S.base = S.port * 104729;
        flowsB.push(S);
        if (!SB) SB = S;
        map.set(conn, S);
      } else if (!S) {
        if (code === EV.LISTENING) continue;
        errors.push((isA ? "A" : "B") + " event " + code + " for unknown conn " + conn);
        continue;
      } else if (code === EV.SEND_REFUSED) {
        S.blocked = true;
        S.refused.push({ buf: dv.getUint32(s, true), off: dv.getUint16(s + 4, true), len: dv.getUint16(s + 6, true) });
      } else if (code === EV.WRITABLE) S.blocked = false;
      else if (code === EV.DATA) {
        const buf = dv.getUint32(s, true),
          off = dv.getUint16(s + 4, true),
          len = dv.getUint16(s + 6, true);
        const a = C.x.bufAddress(buf) + off;
        S.hashIn.update(C.u8.subarray(a, a + len));
        S.recvBytes += len;
        S.recvdPending += len;
        C.x.bufUnref(buf);
      } else if (code === EV.PEER_CLOSED) S.peerClosed = true;
      else if (code === EV.CLOSED) S.closed = true;
      else if (code === EV.RESET || code === EV.ERROR) errors.push(S.name + " event " + code);
      touched.add(S);
    }
    for (const S of touched) {
      if (S.refused.length && S.closing) errors.push(S.name + " refused after close");
      if (S.recvdPending > 0 && S.conn >= 0) {
        C.cmd(CMD.RECVD, { conn: S.conn, buf: S.recvdPending });
        S.recvdPending = 0;
      }
    }
  };
  const allClosed = () => flowsA.every((f) => f.closed) && flowsB.length === nconn && flowsB.every((f) => f.closed);

  let t = 0,
    iter = 0,
    idleUntil = -1;
  const wall = Date.now();
  while (iter++ < 5e7) {
    while (link.size && link.peek().at <= t) {
      const m = link.pop();
      if (ringSpace(m.to, m.to.rings.rx) < 2) {
        stats.queueDrops++;
        continue;
      }
      const b = m.to.x.bufAlloc(OWNER.NIC);
      if (b < 0) {
        stats.queueDrops++;
        continue;
      }
      m.to.u8.set(m.f.subarray(0, 2048), m.to.x.bufAddress(b));
      if (m.f.length > 2048) {
        const b2 = m.to.x.bufAlloc(OWNER.NIC);
        if (b2 < 0) {
          m.to.x.bufUnref(b);
          continue;
        }
        m.to.u8.set(m.f.subarray(2048), m.to.x.bufAddress(b2));
        m.to.push(m.to.rings.rx, b, 0, 2048, 0, SF_MORE);
        m.to.push(m.to.rings.rx, b2, 0, m.f.length - 2048, 0, 0);
      } else m.to.push(m.to.rings.rx, b, 0, m.f.length, 0, 0);
    }
    if (t >= connectAt && connectAt > 0) {
      connectAll();
      connectAt = 0;
    }
    const da = A.x.stackPoll(t);
    const db = B.x.stackPoll(t);
    send(A, drainTx(A), t);
    send(B, drainTx(B), t);
    events(A);
    events(B);
    for (const f of flowsA) fill(f);
    for (const f of flowsB) fill(f);
    if (allClosed() && idleUntil < 0) idleUntil = t + 3000;
    if (idleUntil >= 0 && t >= idleUntil) break;
    if (t > cfg.maxSimMs) {
      errors.push("simulated time limit");
      break;
    }
    const pendingCmds =
      ringCount(A, A.rings.ain) + ringCount(B, B.rings.ain) + ringCount(A, A.rings.rx) + ringCount(B, B.rings.rx);
    let next = Math.min(
      da,
      db,
      link.size ? link.peek().at : Infinity,
      idleUntil >= 0 ? idleUntil : Infinity,
      connectAt > 0 ? connectAt : Infinity,
    );
    if (pendingCmds > 0 || ringCount(A, A.rings.tx) || ringCount(B, B.rings.tx)) next = t;
    if (!isFinite(next)) {
      const info = (c, id) =>
        id < 0 ? null : Object.fromEntries(Object.entries(TCP_INFO).map(([k, f]) => [k, c.x.tcpInfo(id, f)]));
      errors.push(
        "stuck: nothing scheduled " +
          JSON.stringify({
            a: info(A, SA.conn),
            b: SB && info(B, SB.conn),
            sentA: SA.sendOff,
            sentB: SB && SB.sendOff,
          }),
      );
      break;
    }
    t = Math.max(t, next);
  }
  // match flows by A's local port and compare both directions
  let flowsOk = flowsB.length === nconn;
  const perFlow = [];
  for (const fa of flowsA) {
    const fb = flowsB.find((f) => f.port === fa.port);
    if (!fb) {
      flowsOk = false;
      continue;
    }
    const ab = [fa.hashOut.digest("hex"), fb.hashIn.digest("hex")];
    const ba = [fb.hashOut.digest("hex"), fa.hashIn.digest("hex")];
    const ok = ab[0] === ab[1] && ba[0] === ba[1] && fb.recvBytes === cfg.bytes && fa.recvBytes === fb.toSend;
    if (!ok) flowsOk = false;
    perFlow.push({
      port: fa.port,
      ok,
      sentHash: ab[0],
      recvHash: ab[1],
      recvBytes: fb.recvBytes,
      reverse: { sentHash: ba[0], recvHash: ba[1], sentBytes: fb.sendOff, recvBytes: fa.recvBytes },
    });
  }
  const f0 = perFlow[0] ?? {
    sentHash: "",
    recvHash: "-",
    recvBytes: 0,
    reverse: { sentHash: "", recvHash: "-", sentBytes: 0, recvBytes: 0 },
  };
  const recvTotal = flowsB.reduce((a, f) => a + f.recvBytes, 0);
  const res = {
    ok: false,
    cfg,
    sentBytes: SA.sendOff,
    recvBytes: f0.recvBytes,
    sentHash: f0.sentHash,
    recvHash: f0.recvHash,
    reverse: f0.reverse,
    flows: perFlow.length,
    flowsOk,
    simMs: t,
    wallMs: Date.now() - wall,
    link: stats,
    errors,
    closed: allClosed(),
    statsA: A.stats(),
    statsB: B.stats(),
    poolA: { check: A.check(), free: A.held(0), count: A.x.poolCount() },
    poolB: { check: B.check(), free: B.held(0), count: B.x.poolCount() },
    connsLeft: A.x.tcpConnCount() + B.x.tcpConnCount(),
  };
  res.goodputMbps = (recvTotal * 8) / (t * 1000);
  forgetCore(A);
  forgetCore(B);
  res.ok =
    flowsOk &&
    res.closed &&
    !errors.length &&
    res.poolA.check === 0 &&
    res.poolB.check === 0 &&
    res.poolA.free === res.poolA.count &&
    res.poolB.free === res.poolB.count &&
    res.connsLeft === 0;
  return res;
}

function ringCount(core, r) {
  const dv = core.dv;
  return (dv.getUint32(r + 8, true) - dv.getUint32(r + 4, true)) >>> 0;
}
function ringSpace(core, r) {
  return core.dv.getUint32(r, true) + 1 - ringCount(core, r);
}

/**
 * Rough wall-clock bulk transfer between two cores with a minimal host loop (frames copied
 * straight from one memory into the other, no faults, no hashing; the payload is whatever
 * the app buffers hold). Returns { bytes, wallMs, pollMs, gbpsWall, gbpsCore } where pollMs
 * is the time spent inside stackPoll of both cores. For bench authors; not a test.
 */
export function bulkWall({ bytes = 1 << 30, seg = 1448, rcvbuf = 1 << 20, sndbuf = 1 << 20 } = {}) {
  const common = { buffers: 8192, rcvbuf, sndbuf, nodes: 16384, mask: ip("255.255.255.0") };
  const A = createCore({ ...common, mac: mac("02:00:00:00:00:0a"), ip: ip("198.18.0.10") });
  const B = createCore({ ...common, mac: mac("02:00:00:00:00:0b"), ip: ip("198.18.0.11") });
  A.arpAdd(B.ip, B.mac);
  B.arpAdd(A.ip, A.mac);
  const move = (from, to) => {
    const x = from.x;
    const fu8 = new Uint8Array(from.memory.buffer);
    const tu8 = new Uint8Array(to.memory.buffer);
    const fdv = new DataView(from.memory.buffer);
    for (let s; (s = x.ringShift(from.rings.tx));) {
      const buf = fdv.getUint32(s, true),
        off = fdv.getUint16(s + 4, true),
        len = fdv.getUint16(s + 6, true),
        fl = fdv.getUint32(s + 12, true);
      const b = to.x.bufAlloc(OWNER.NIC);
      const a = x.bufAddress(buf) + off;
      tu8.set(fu8.subarray(a, a + len), to.x.bufAddress(b) + 64);
      to.x.ringPush(to.rings.rx, b, 64, len, 0, fl);
      x.bufUnref(buf);
    }
  };
  B.cmd(CMD.LISTEN, { off: 5001, len: 64 });
  A.cmd(CMD.CONNECT, { buf: B.ip, off: 5001, conn: 1 });
  let connA = -1,
    connB = -1,
    sent = 0,
    recv = 0,
    blocked = false,
    t = 0,
    poll = 0;
  const refused = [];
  const t0 = performance.now();
  while (recv < bytes && t < 1e7) {
    t += 0.01;
    const p0 = performance.now();
    A.x.stackPoll(t);
    B.x.stackPoll(t);
    poll += performance.now() - p0;
    move(A, B);
    move(B, A);
    const adv = A.dv;
    for (let s; (s = A.x.ringShift(A.rings.aout));) {
      const code = (adv.getUint32(s + 12, true) >>> 8) & 255;
      if (code === EV.CONNECTED) connA = adv.getUint32(s + 8, true);
      else if (code === EV.SEND_REFUSED) {
        blocked = true;
        refused.push([adv.getUint32(s, true), adv.getUint16(s + 4, true), adv.getUint16(s + 6, true)]);
      } else if (code === EV.WRITABLE) blocked = false;
    }
    const bdv = B.dv;
    let got = 0;
    for (let s; (s = B.x.ringShift(B.rings.aout));) {
      const code = (bdv.getUint32(s + 12, true) >>> 8) & 255;
      if (code === EV.ACCEPTED) connB = bdv.getUint32(s + 8, true);
      else if (code === EV.DATA) {
        got += bdv.getUint16(s + 6, true);
        B.x.bufUnref(bdv.getUint32(s, true));
      }
    }
    recv += got;
    if (got) B.cmd(CMD.RECVD, { conn: connB, buf: got });
    if (connA >= 0 && !blocked) {
      while (refused.length) {
        const [b, o, l] = refused.shift();
        A.cmd(CMD.SEND, { conn: connA, buf: b, off: o, len: l });
      }
      for (let k = 0; k < 200 && sent < bytes; k++) {
        const b = A.x.bufAlloc(OWNER.APP);
        if (b < 0) break;
        A.cmd(CMD.SEND, { conn: connA, buf: b, off: 128, len: seg });
        sent += seg;
      }
    }
  }
  const wallMs = performance.now() - t0;
  forgetCore(A);
  forgetCore(B);
  return { bytes: recv, wallMs, pollMs: poll, gbpsWall: (recv * 8) / wallMs / 1e6, gbpsCore: (recv * 8) / poll / 1e6 };
}

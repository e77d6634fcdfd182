// A seeded, deterministic network simulator: two Wasm cores joined by an in-memory Ethernet
// link with configurable loss, duplication, reordering, corruption, delay, jitter, bandwidth,
// queue limit and MTU. One core's app streams pseudo-random bytes to the other over TCP; the
// receiver hashes what it gets, and both hashes must match. Time is simulated: the loop jumps
// to the earliest of the cores' deadlines and the link's next delivery.

import { createHash } from "node:crypto";
import { createCore, ip, mac, OWNER, CMD, EV, SF_MORE, TF } from "./corehost.mjs";

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
    msl: 500,
    flags,
    nodes: 16384,
    minRto: 200,
    initRto: 1000,
    mask: ip("255.255.255.0"),
  };
  const A = createCore({
    ...common,
    mac: mac("02:00:00:00:00:0a"),
    ip: ip("198.18.0.10"),
    secret: Uint8Array.from({ length: 32 }, (_, i) => i + cfg.seed),
  });
  const B = createCore({
    ...common,
    mac: mac("02:00:00:00:00:0b"),
    ip: ip("198.18.0.11"),
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
  const hashOut = createHash("sha256");
  const hashIn = createHash("sha256");
  let sendOff = 0,
    recvBytes = 0;
  let connA = -1,
    connB = -1,
    blocked = false;
  const refused = [];
  let closedA = false,
    closedB = false,
    aClosing = false,
    errors = [];

  B.cmd(CMD.LISTEN, { off: 5001, len: 64, conn: 1 });
  A.cmd(CMD.CONNECT, { buf: B.ip, off: 5001, len: 0, conn: 2 });

  let quiet = 0;
  const fill = () => {
    quiet++;
    if (connA < 0 || blocked || aClosing) return;
    while (refused.length && ringSpace(A, A.rings.ain) > 4) {
      const b = refused.shift();
      A.cmd(CMD.SEND, { conn: connA, buf: b.buf, off: b.off, len: b.len });
      quiet = 0;
    }
    let budget = 256;
    while (sendOff < cfg.bytes && budget-- > 0) {
      const space = ringSpace(A, A.rings.ain);
      if (space < 4) break;
      const b = A.x.bufAlloc(OWNER.APP);
      if (b < 0) break;
      const len = Math.min(cfg.chunk, cfg.bytes - sendOff);
      const off = 2048 - len >= 128 ? 128 : 2048 - len;
      const p = sendOff % PATTERN_LEN;
      const src =
        p + len <= pat.length
          ? pat.subarray(p, p + len)
          : concat(pat.subarray(p), pat.subarray(0, len - (pat.length - p)));
      A.u8.set(src, A.x.bufAddress(b) + off);
      hashOut.update(src);
      sendOff += len;
      A.cmd(CMD.SEND, { conn: connA, buf: b, off, len });
      quiet = 0;
    }
    // close once every send has been seen through a poll without being refused
    if (sendOff >= cfg.bytes && !refused.length && !aClosing && quiet >= 2) {
      aClosing = true;
      A.cmd(CMD.CLOSE, { conn: connA });
    }
  };

  const eventsA = () => {
    for (let s; (s = A.x.ringShift(A.rings.aout));) {
      const dv = A.dv;
      const code = (dv.getUint32(s + 12, true) >>> 8) & 255,
        conn = dv.getUint32(s + 8, true);
      if (code === EV.CONNECTED) connA = conn;
      else if (code === EV.SEND_REFUSED) {
        blocked = true;
        refused.push({ buf: dv.getUint32(s, true), off: dv.getUint16(s + 4, true), len: dv.getUint16(s + 6, true) });
      } else if (code === EV.WRITABLE) blocked = false;
      else if (code === EV.CLOSED) closedA = true;
      else if (code === EV.RESET || code === EV.ERROR) errors.push("A " + code);
      else if (code === EV.DATA) A.x.bufUnref(dv.getUint32(s, true));
    }
    if (refused.length && aClosing) errors.push("refused after close");
  };
  let recvdPending = 0;
  const eventsB = () => {
    for (let s; (s = B.x.ringShift(B.rings.aout));) {
      const dv = B.dv;
      const code = (dv.getUint32(s + 12, true) >>> 8) & 255,
        conn = dv.getUint32(s + 8, true);
      if (code === EV.ACCEPTED) connB = conn;
      else if (code === EV.DATA) {
        const buf = dv.getUint32(s, true),
          off = dv.getUint16(s + 4, true),
          len = dv.getUint16(s + 6, true);
        const a = B.x.bufAddress(buf) + off;
        hashIn.update(B.u8.subarray(a, a + len));
        recvBytes += len;
        recvdPending += len;
        B.x.bufUnref(buf);
      } else if (code === EV.PEER_CLOSED) B.cmd(CMD.CLOSE, { conn });
      else if (code === EV.CLOSED) closedB = true;
      else if (code === EV.RESET || code === EV.ERROR) errors.push("B " + code);
    }
    if (recvdPending > 0 && connB >= 0) {
      B.cmd(CMD.RECVD, { conn: connB, buf: recvdPending });
      recvdPending = 0;
    }
  };

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
    const da = A.x.stackPoll(t);
    const db = B.x.stackPoll(t);
    send(A, drainTx(A), t);
    send(B, drainTx(B), t);
    eventsA();
    eventsB();
    fill();
    if (closedA && closedB && idleUntil < 0) idleUntil = t + 3000;
    if (idleUntil >= 0 && t >= idleUntil) break;
    if (t > cfg.maxSimMs) {
      errors.push("simulated time limit");
      break;
    }
    const pendingCmds =
      ringCount(A, A.rings.ain) + ringCount(B, B.rings.ain) + ringCount(A, A.rings.rx) + ringCount(B, B.rings.rx);
    let next = Math.min(da, db, link.size ? link.peek().at : Infinity, idleUntil >= 0 ? idleUntil : Infinity);
    if (pendingCmds > 0 || ringCount(A, A.rings.tx) || ringCount(B, B.rings.tx)) next = t;
    if (!isFinite(next)) {
      const info = (c, id) => (id < 0 ? null : Array.from({ length: 22 }, (_, k) => c.x.tcpInfo(id, k)));
      errors.push(
        "stuck: nothing scheduled " +
          JSON.stringify({ a: info(A, connA), b: info(B, connB), blocked, refused: refused.length, sendOff, aClosing }),
      );
      break;
    }
    t = Math.max(t, next);
  }
  const sent = hashOut.digest("hex");
  const got = hashIn.digest("hex");
  const res = {
    ok: false,
    cfg,
    sentBytes: sendOff,
    recvBytes,
    sentHash: sent,
    recvHash: got,
    simMs: t,
    wallMs: Date.now() - wall,
    link: stats,
    errors,
    closed: closedA && closedB,
    statsA: A.stats(),
    statsB: B.stats(),
    poolA: { check: A.check(), free: A.held(0), count: A.x.poolCount() },
    poolB: { check: B.check(), free: B.held(0), count: B.x.poolCount() },
    connsLeft: A.x.tcpConnCount() + B.x.tcpConnCount(),
  };
  res.goodputMbps = (recvBytes * 8) / (t * 1000);
  res.ok =
    sent === got &&
    recvBytes === cfg.bytes &&
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

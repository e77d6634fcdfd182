// Frame-level responder and frame helpers for NIC tests: ARP replies and ICMP echo replies
// crafted in JavaScript from and to PM buffers, with correct checksums. Not a network stack:
// just enough to answer the kernel's ARP and ping.

export const ETH_P_ARP = 0x0806;
export const ETH_P_IP = 0x0800;

export function ipBytes(s) {
  return Uint8Array.from(s.split(".").map(Number));
}
export function ipString(b, at = 0) {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}
export function macString(b, at = 0) {
  return Array.from(b.subarray(at, at + 6), (x) => x.toString(16).padStart(2, "0")).join(":");
}
export function macBytes(s) {
  return Uint8Array.from(s.split(":").map((x) => parseInt(x, 16)));
}

/** RFC 1071 ones' complement sum of bytes [start, end), folded, not inverted. */
export function sum16(b, start, end, init = 0) {
  let s = init;
  let i = start;
  for (; i + 1 < end; i += 2) s += (b[i] << 8) | b[i + 1];
  if (i < end) s += b[i] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
export const csum = (b, start, end, init = 0) => ~sum16(b, start, end, init) & 0xffff;

/** The frame's bytes as one array (copies a chain: for tests only). */
export function frameBytes(pool, frame) {
  const out = new Uint8Array(frame.length);
  let at = 0;
  for (const b of frame.bufs) {
    out.set(pool.view(b.index, b.offset, b.length), at);
    at += b.length;
  }
  return out;
}

/** Parses the Ethernet/IPv4 headers of a frame (bytes): a small summary for assertions. */
export function parse(f) {
  const type = (f[12] << 8) | f[13];
  const r = { dst: macString(f, 0), src: macString(f, 6), type };
  if (type === ETH_P_ARP && f.length >= 42) {
    r.arp = { op: (f[20] << 8) | f[21], sha: macString(f, 22), spa: ipString(f, 28), tpa: ipString(f, 38) };
  } else if (type === ETH_P_IP && f.length >= 34) {
    const ihl = (f[14] & 15) * 4;
    r.ip = {
      ihl,
      totalLength: (f[16] << 8) | f[17],
      proto: f[23],
      src: ipString(f, 26),
      dst: ipString(f, 30),
      csumOk: sum16(f, 14, 14 + ihl) === 0xffff,
    };
    r.l4 = 14 + ihl;
  }
  return r;
}

/**
 * A responder for one IPv4 address and MAC: answers ARP requests for the address and ICMP
 * echo requests to it. respond(pool, frame) returns a reply frame in a fresh PM buffer (owner
 * "nic", ready for NicPort.send) or null; the request's buffers are left to the caller.
 */
export class Responder {
  /** synAck: also answer TCP SYNs with a SYN-ACK (MSS 1460, window 65535) so the kernel sends data. */
  constructor({ ip, mac, synAck = false }) {
    this.ip = ipBytes(ip);
    this.mac = macBytes(mac);
    this.synAck = synAck;
    this.stats = { arp: 0, echo: 0, synack: 0, ignored: 0, bad: 0 };
  }

  respond(pool, frame) {
    if (frame.bufs.length !== 1) {
      this.stats.ignored++;
      return null;
    }
    const b = frame.bufs[0];
    const f = pool.view(b.index, b.offset, b.length);
    if (f.length < 42) return this.#ignore();
    const type = (f[12] << 8) | f[13];
    if (type === ETH_P_ARP) return this.#arp(pool, f);
    if (type === ETH_P_IP) return this.#icmp(pool, f);
    return this.#ignore();
  }

  #ignore() {
    this.stats.ignored++;
    return null;
  }

  #mine(f, at) {
    return f[at] === this.ip[0] && f[at + 1] === this.ip[1] && f[at + 2] === this.ip[2] && f[at + 3] === this.ip[3];
  }

  #arp(pool, f) {
    // htype 1, ptype IPv4, hlen 6, plen 4, op 1 (request), target = us
    if (f[14] !== 0 || f[15] !== 1 || f[16] !== 8 || f[17] !== 0 || f[18] !== 6 || f[19] !== 4) return this.#ignore();
    if (f[20] !== 0 || f[21] !== 1 || !this.#mine(f, 38)) return this.#ignore();
    const i = pool.alloc("nic");
    const o = pool.view(i, 0, 42);
    o.set(f.subarray(6, 12), 0); // to the asker
    o.set(this.mac, 6);
    o.set([0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 2], 12);
    o.set(this.mac, 22); // sender: us
    o.set(this.ip, 28);
    o.set(f.subarray(22, 28), 32); // target: the asker
    o.set(f.subarray(28, 32), 38);
    this.stats.arp++;
    return { bufs: [{ index: i, length: 42 }] };
  }

  #icmp(pool, f) {
    const ihl = (f[14] & 15) * 4;
    if (this.synAck && f[23] === 6 && f[14] >> 4 === 4 && this.#mine(f, 30)) return this.#syn(pool, f, ihl);
    if (f[14] >> 4 !== 4 || ihl < 20 || f[23] !== 1 || !this.#mine(f, 30)) return this.#ignore();
    const total = (f[16] << 8) | f[17];
    if (total < ihl + 8 || 14 + total > f.length) return this.#bad();
    if (sum16(f, 14, 14 + ihl) !== 0xffff) return this.#bad();
    const l4 = 14 + ihl;
    if (f[l4] !== 8 || sum16(f, l4, 14 + total) !== 0xffff) return this.#bad(); // echo request, checksum ok
    const i = pool.alloc("nic");
    const len = 14 + 20 + (total - ihl);
    const o = pool.view(i, 0, len);
    o.set(f.subarray(6, 12), 0);
    o.set(this.mac, 6);
    o[12] = 8;
    o[13] = 0;
    // IPv4 header without options
    o.set([0x45, 0, (20 + total - ihl) >> 8, (20 + total - ihl) & 255, 0, 0, 0x40, 0, 64, 1, 0, 0], 14);
    o.set(this.ip, 26);
    o.set(f.subarray(26, 30), 30);
    const h = csum(o, 14, 34);
    o[24] = h >> 8;
    o[25] = h & 255;
    o.set(f.subarray(l4, 14 + total), 34); // the echo's id, sequence and data
    o[34] = 0; // echo reply
    o[36] = 0;
    o[37] = 0;
    const c = csum(o, 34, len);
    o[36] = c >> 8;
    o[37] = c & 255;
    this.stats.echo++;
    return { bufs: [{ index: i, length: len }] };
  }

  #syn(pool, f, ihl) {
    const t = 14 + ihl;
    if (f.length < t + 20 || (f[t + 13] & 0x17) !== 0x02) return this.#ignore(); // a bare SYN only
    const seq = ((f[t + 4] << 24) | (f[t + 5] << 16) | (f[t + 6] << 8) | f[t + 7]) >>> 0;
    const ack = (seq + 1) >>> 0;
    const i = pool.alloc("nic");
    const o = pool.view(i, 0, 58);
    o.set(f.subarray(6, 12), 0);
    o.set(this.mac, 6);
    o.set([8, 0, 0x45, 0, 0, 44, 0, 0, 0x40, 0, 64, 6, 0, 0], 12);
    o.set(this.ip, 26);
    o.set(f.subarray(26, 30), 30);
    const h = csum(o, 14, 34);
    o[24] = h >> 8;
    o[25] = h & 255;
    o.set(f.subarray(t + 2, t + 4), 34); // our port: their destination
    o.set(f.subarray(t, t + 2), 36);
    o.set([0x10, 0x00, 0x00, 0x01], 38); // ISN 0x10000001
    o.set([ack >>> 24, (ack >>> 16) & 255, (ack >>> 8) & 255, ack & 255], 42);
    o.set([0x60, 0x12, 0xff, 0xff, 0, 0, 0, 0, 2, 4, 0x05, 0xb4], 46); // SYN|ACK, window 65535, MSS 1460
    const pseudo = new Uint8Array([...o.subarray(26, 34), 0, 6, 0, 24]);
    const c = csum(o, 34, 58, sum16(pseudo, 0, 12));
    o[50] = c >> 8;
    o[51] = c & 255;
    this.stats.synack++;
    return { bufs: [{ index: i, length: 58 }] };
  }

  #bad() {
    this.stats.bad++;
    return null;
  }
}

/**
 * Completes a NEEDS_CSUM frame's checksum as the core will (the sum from csumStart to the end,
 * stored at csumStart + csumOffset; the kernel has put the pseudo-header sum there) and checks
 * the L4 checksum then verifies. Works on a copy (frameBytes). Returns the completed bytes.
 */
export function completeCsum(bytes, csumStart, csumOffset) {
  const at = csumStart + csumOffset;
  const c = csum(bytes, csumStart, bytes.length);
  bytes[at] = c >> 8;
  bytes[at + 1] = c & 255;
  return bytes;
}

/** Verifies a UDP or TCP checksum over IPv4 (pseudo-header included) for an unsegmented frame. */
export function l4CsumOk(bytes) {
  const p = parse(bytes);
  if (!p.ip) return false;
  const len = p.ip.totalLength - p.ip.ihl;
  const pseudo = new Uint8Array(12);
  pseudo.set(bytes.subarray(26, 34), 0);
  pseudo[9] = p.ip.proto;
  pseudo[10] = len >> 8;
  pseudo[11] = len & 255;
  return sum16(bytes, p.l4, p.l4 + len, sum16(pseudo, 0, 12)) === 0xffff;
}

/**
 * Serves a NIC port: on every readiness event (libuv poll) or, with busy: true, on every
 * event-loop turn (setImmediate, a non-blocking busy poll), pulls every ready frame, answers
 * what the responder answers with one send, hands other frames to onFrame(frame) (which may
 * return true to keep the buffers itself) and frees the rest. Returns stop().
 */
export function serve(port, responder, { onFrame, busy = false, split = null } = {}) {
  const pool = port.pool;
  let stopped = false;
  const turn = () => {
    if (stopped || port.closed) return;
    port.receive();
    const frames = port.drain();
    const out = [];
    const free = [];
    for (const f of frames) {
      let r = responder.respond(pool, f);
      if (r && split) r = split(pool, r);
      if (r) out.push(r);
      else if (onFrame && onFrame(f)) continue;
      free.push(f);
    }
    port.release(free);
    if (out.length) port.send(out);
    else if (port.txPending || port.info.kind === "xdp") port.flush();
    if (busy) setImmediate(turn);
  };
  if (busy) setImmediate(turn);
  else port.poll(turn);
  return () => {
    stopped = true;
    if (!busy && !port.closed) port.stopPolling();
  };
}

/** Splits a one-buffer frame into a two-buffer chain (the second part copied to a new buffer). */
export function splitInTwo(pool, frame) {
  const b = frame.bufs[0];
  if (frame.bufs.length !== 1 || b.length < 60) return frame;
  const cut = 34;
  const j = pool.alloc("nic");
  pool.view(j, 0, b.length - cut).set(pool.view(b.index, (b.offset ?? 0) + cut, b.length - cut));
  return {
    bufs: [
      { index: b.index, offset: b.offset ?? 0, length: cut },
      { index: j, length: b.length - cut },
    ],
  };
}

/** A byte pattern for payloads: byte i of message `seed`. */
export const patternByte = (seed, i) => (i * 31 + seed * 7 + (i >> 8)) & 255;

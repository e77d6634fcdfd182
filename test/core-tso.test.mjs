// TCP segmentation offload (TSO) in the core: with CFG_TSO set, TCP sends more than one MSS of
// new data as one superframe (one header, the payload as a chain of the app's buffers) whose
// first TX slot asks the NIC for NEEDS_CSUM + GSO TCPv4 (docs/core-abi.md). The scripted NIC
// here checks the superframe's fields and cuts it into segments the way Linux's
// tcp_gso_segment does (the partial checksum adjusted by each segment's length, FIN and PSH
// on the last segment only, the IP ID counting up), so the peer sees what the wire would carry.
import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  createCore,
  Peer,
  handshake,
  appSend,
  parseFrame,
  csum,
  CMD,
  EV,
  TH,
  ST,
  OWNER,
  OPT,
  SF_MORE,
  checkCores,
} from "./lib/corehost.mjs";
import { Stack, TCP_INFO as INFO, NO_OFFLOADS, TAP_OFFLOADS } from "../build/index.js";

const CFG_TSO = 112;
const CFG_TSO_PIECES = 116;
const TXF_NEEDS_CSUM = 2;
const TXF_GSO_SHIFT = 4;
const GSO_TCPV4 = 1;

test.after.each(() => {
  for (const r of checkCores()) assert.is(r.check, 0, r.detail);
});

function setup(opts = {}, tso = 65535, pieces = 0) {
  const core = createCore({ msl: 1000, ...opts });
  setTso(core, tso, pieces);
  core.poll(0);
  core.tx();
  const peer = new Peer(core);
  return { core, peer };
}
function setTso(core, bytes, pieces = 0) {
  const c = core.x.stackConfig();
  core.dv.setUint32(c + CFG_TSO, bytes, true);
  core.dv.setUint32(c + CFG_TSO_PIECES, pieces, true);
}
function clean(core) {
  core.tx();
  assert.is(core.check(), 0, "pool invariant");
  assert.is(core.held(OWNER.NIC), 0, "NIC leak");
  assert.is(core.held(OWNER.STACK), 0, "STACK leak");
  assert.is(core.held(OWNER.APP), 0, "APP leak");
  assert.is(core.x.tcpNodesUsed(), 0, "node leak");
}
function abort(core, conn) {
  core.cmd(CMD.ABORT, { conn });
  core.poll();
  nic(core);
  core.takeEvents();
}
const bytes = (n, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed + (i >>> 8)) & 255);
const rd16 = (a, o) => (a[o] << 8) | a[o + 1];
const rd32 = (a, o) => ((a[o] << 24) | (a[o + 1] << 16) | (a[o + 2] << 8) | a[o + 3]) >>> 0;
const wr16 = (a, o, v) => {
  a[o] = (v >>> 8) & 255;
  a[o + 1] = v & 255;
};
const wr32 = (a, o, v) => {
  wr16(a, o, v >>> 16);
  wr16(a, o + 2, v & 0xffff);
};
const fold = (s) => {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
};
function pseudo(ipHdr, len) {
  const b = new Uint8Array(12);
  b.set(ipHdr.subarray(12, 20), 0);
  b[9] = 6;
  wr16(b, 10, len);
  return csum(b);
}

/**
 * The NIC: drains TX like a host (one bufUnref per slot) and returns every frame with its
 * first slot's flags and conn word; a GSO frame is checked and cut into segments (`segs`).
 */
function nic(core) {
  const out = [];
  let cur = null;
  for (let s; (s = core.shift(core.rings.tx));) {
    if (!cur) cur = { flags: s.flags & ~SF_MORE, conn: s.conn, pieces: [], slots: 0 };
    cur.pieces.push(core.u8.slice(core.bufAddr(s.buf) + s.off, core.bufAddr(s.buf) + s.off + s.len));
    cur.slots++;
    core.x.bufUnref(s.buf);
    if (!(s.flags & SF_MORE)) {
      const len = cur.pieces.reduce((a, p) => a + p.length, 0);
      const f = new Uint8Array(len);
      let o = 0;
      for (const p of cur.pieces) {
        f.set(p, o);
        o += p.length;
      }
      cur.bytes = f;
      delete cur.pieces;
      out.push(cur);
      cur = null;
    }
  }
  for (const fr of out) {
    const gso = (fr.flags >>> TXF_GSO_SHIFT) & 15;
    fr.gso = gso;
    if (!gso) {
      assert.is(fr.flags & TXF_NEEDS_CSUM, 0, "no NEEDS_CSUM without GSO");
      fr.segs = [fr.bytes];
      continue;
    }
    assert.is(gso, GSO_TCPV4);
    assert.ok(fr.flags & TXF_NEEDS_CSUM, "GSO frames ask for NEEDS_CSUM");
    fr.csumStart = (fr.flags >>> 8) & 255;
    fr.csumOffset = (fr.flags >>> 16) & 255;
    fr.gsoSize = fr.conn & 0xffff;
    fr.hdrLen = fr.conn >>> 16;
    fr.segs = segment(fr);
  }
  return out;
}

/** Linux tcp_gso_segment on a superframe: checks the header, returns wire frames. */
function segment(fr) {
  const f = fr.bytes;
  const ip = f.subarray(14, 34);
  assert.is(fr.csumStart, 34, "csum_start = Ethernet + IP header");
  assert.is(fr.csumOffset, 16, "csum_offset = TCP checksum field");
  const thl = (f[34 + 12] >>> 4) * 4;
  assert.is(fr.hdrLen, 34 + thl, "hdr_len = headers up to the payload");
  assert.is(rd16(ip, 2), f.length - 14, "IP total length of the whole superframe");
  assert.is(fold(csum(ip)), 0xffff, "IP header checksum");
  const tcpLen = f.length - 34;
  const partial = rd16(f, 34 + 16);
  assert.is(partial, pseudo(ip, tcpLen), "TCP checksum field = pseudo-header sum over the superframe's length");
  const payload = f.subarray(fr.hdrLen);
  assert.ok(payload.length > fr.gsoSize, "a superframe carries more than one segment");
  const segs = [];
  const seq0 = rd32(f, 34 + 4);
  const id0 = rd16(ip, 4);
  for (let off = 0, k = 0; off < payload.length; off += fr.gsoSize, k++) {
    const n = Math.min(fr.gsoSize, payload.length - off);
    const last = off + n === payload.length;
    const s = new Uint8Array(fr.hdrLen + n);
    s.set(f.subarray(0, fr.hdrLen), 0);
    s.set(payload.subarray(off, off + n), fr.hdrLen);
    wr16(s, 14 + 2, 20 + thl + n);
    wr16(s, 14 + 4, (id0 + k) & 0xffff);
    wr16(s, 14 + 10, 0);
    wr16(s, 14 + 10, ~csum(s.subarray(14, 34)) & 0xffff);
    wr32(s, 34 + 4, (seq0 + off) >>> 0);
    if (!last) s[34 + 13] &= ~(TH.FIN | TH.PSH);
    // the field's pseudo sum moves from the superframe's TCP length to this segment's
    const segPseudo = fold(partial + (~tcpLen & 0xffff) + (thl + n));
    wr16(s, 34 + 16, segPseudo);
    wr16(s, 34 + 16, ~csum(s.subarray(34)) & 0xffff);
    segs.push(s);
  }
  return segs;
}
/** The wire's TCP segments of a batch of frames (every checksum verified by parseFrame). */
function wire(frames) {
  const out = [];
  for (const fr of frames)
    for (const s of fr.segs) {
      const p = parseFrame(s);
      if (!p.tcp) continue;
      assert.ok(p.ip.csumOk && p.tcp.csumOk, "segment checksums");
      out.push(p.tcp);
    }
  return out;
}
const tsoFrames = (frames) => frames.filter((f) => f.gso);

test("a large send goes as one superframe: header fields, checksum partial, GSO metadata", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const p = bytes(1900 * 20);
  for (let k = 0; k < 20; k++) appSend(core, h.conn, p.subarray(k * 1900, (k + 1) * 1900));
  core.poll(1);
  const frames = nic(core);
  // initial window: 10 segments of 1460; one superframe carries them all
  assert.is(frames.length, 1, "one frame");
  const fr = frames[0];
  assert.is(fr.gso, GSO_TCPV4);
  assert.is(fr.gsoSize, 1460);
  assert.is(fr.hdrLen, 54);
  assert.is(fr.bytes.length, 54 + 14600);
  assert.ok(fr.slots <= 40 && fr.slots >= 8, `payload as a chain of app buffers (${fr.slots} slots)`);
  const segs = wire(frames);
  assert.is(segs.length, 10);
  segs.forEach((s, k) => {
    assert.is(s.seq, h.snd + k * 1460);
    assert.is(s.flags, TH.ACK, "no PSH: more data is queued");
    assert.equal([...s.payload], [...p.subarray(k * 1460, (k + 1) * 1460)]);
  });
  assert.is(core.stat("TCP_TSO_FRAMES"), 1);
  assert.is(core.stat("TCP_TSO_SEGS"), 10);
  // the ACK grows cwnd (slow start, L = 2): the next superframe is 12 segments
  peer.tcp({ seq: h.seq, ack: h.snd + 14600 });
  core.poll(2);
  const f2 = nic(core);
  assert.is(f2.length, 1);
  const s2 = wire(f2);
  assert.is(s2.length, 12);
  assert.is(s2[0].seq, h.snd + 14600);
  assert.equal([...s2[11].payload], [...p.subarray(14600 + 11 * 1460, 14600 + 12 * 1460)]);
  abort(core, h.conn);
  clean(core);
});

test("tso off (the default): one frame per segment, complete checksums", () => {
  const { core, peer } = setup({}, 0);
  const h = handshake(core, peer);
  appSend(core, h.conn, bytes(1900));
  appSend(core, h.conn, bytes(1900));
  core.poll(1);
  const frames = nic(core);
  assert.is(frames.length, 3);
  assert.is(tsoFrames(frames).length, 0);
  assert.equal(
    wire(frames).map((s) => s.payload.length),
    [1460, 1460, 880],
  );
  abort(core, h.conn);
  clean(core);
});

test("the peer's window limits the superframe; a sub-MSS remainder waits (sender SWS)", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { win: 5000 });
  appSend(core, h.conn, bytes(1900));
  appSend(core, h.conn, bytes(1900));
  appSend(core, h.conn, bytes(1900));
  appSend(core, h.conn, bytes(1900));
  core.poll(1);
  const frames = nic(core);
  const segs = wire(frames);
  // 5000 bytes of window: 3 full segments as one superframe, the last 620 bytes would be a
  // small segment while data is in flight and the usable window is small: held
  assert.is(frames.length, 1);
  assert.is(frames[0].gsoSize, 1460);
  assert.equal(
    segs.map((s) => s.payload.length),
    [1460, 1460, 1460],
  );
  assert.ok(segs.reduce((a, s) => a + s.payload.length, 0) <= 5000, "within the window");
  abort(core, h.conn);
  clean(core);
});

test("cwnd limits the superframe and a window of one MSS sends plain segments", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { win: 1460 });
  appSend(core, h.conn, bytes(1900));
  appSend(core, h.conn, bytes(1900));
  core.poll(1);
  let frames = nic(core);
  assert.is(frames.length, 1);
  assert.is(frames[0].gso, 0, "one MSS: no GSO");
  assert.is(wire(frames)[0].payload.length, 1460);
  // the window opens wide: the rest (2340 bytes, the end of the queue) goes as one superframe with PSH
  peer.tcp({ seq: h.seq, ack: h.snd + 1460, win: 65535 });
  core.poll(2);
  frames = nic(core);
  assert.is(frames.length, 1);
  assert.is(frames[0].gso, GSO_TCPV4);
  const segs = wire(frames);
  assert.equal(
    segs.map((s) => [s.payload.length, s.flags]),
    [
      [1460, TH.ACK],
      [880, TH.ACK | TH.PSH],
    ],
  );
  abort(core, h.conn);
  clean(core);

  // cwnd: 10 segments at first, whatever the window
  const b = setup();
  const h2 = handshake(b.core, b.peer);
  for (let k = 0; k < 40; k++) appSend(b.core, h2.conn, bytes(1900, k));
  b.core.poll(1);
  const f = nic(b.core);
  assert.is(wire(f).length, 10);
  assert.is(b.core.x.tcpInfo(h2.conn, INFO.sndOut), 14600, "in flight = cwnd");
  abort(b.core, h2.conn);
  clean(b.core);
});

test("timestamps: gso_size is the MSS less the option, the same TSval on every segment", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { opts: { mss: 1460, ts: [5000, 0], sackOk: true, ws: 7 } });
  for (let k = 0; k < 10; k++) appSend(core, h.conn, bytes(1900, k));
  core.poll(3);
  const frames = nic(core);
  assert.is(frames.length, 1);
  assert.is(frames[0].gsoSize, 1448);
  assert.is(frames[0].hdrLen, 66);
  const segs = wire(frames);
  assert.is(segs.length, 10);
  const tsv = segs[0].opts.ts[0];
  for (const s of segs) assert.equal(s.opts.ts, [tsv, 5001]);
  abort(core, h.conn);
  clean(core);
});

test("FIN with data: FIN and PSH on the last segment only", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const p = bytes(5000);
  appSend(core, h.conn, p.subarray(0, 1900));
  appSend(core, h.conn, p.subarray(1900, 3800));
  appSend(core, h.conn, p.subarray(3800));
  core.cmd(CMD.CLOSE, { conn: h.conn });
  core.poll(1);
  const frames = nic(core);
  assert.is(frames.length, 1);
  const segs = wire(frames);
  assert.equal(
    segs.map((s) => [s.payload.length, s.flags]),
    [
      [1460, TH.ACK],
      [1460, TH.ACK],
      [1460, TH.ACK],
      [620, TH.ACK | TH.PSH | TH.FIN],
    ],
  );
  assert.equal([...segs.flatMap((s) => [...s.payload])], [...p]);
  // the peer ACKs data and FIN and closes: the connection finishes cleanly
  peer.tcp({ seq: h.seq, ack: h.snd + 5001, flags: TH.ACK | TH.FIN });
  core.poll(2);
  const [ack] = wire(nic(core));
  assert.is(ack.ack, h.seq + 1);
  assert.ok(core.takeEvents().some((e) => e.code === EV.CLOSED));
  core.poll(5000);
  nic(core);
  clean(core);
});

test("retransmission after an RTO re-sends MSS segments, never a superframe", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const p = bytes(1900 * 10);
  for (let k = 0; k < 10; k++) appSend(core, h.conn, p.subarray(k * 1900, (k + 1) * 1900));
  core.poll(1);
  assert.is(tsoFrames(nic(core)).length, 1);
  // all lost: the RTO fires (1 s initial), cwnd collapses to one MSS
  core.poll(1100);
  let frames = nic(core);
  assert.is(frames.length, 1);
  assert.is(frames[0].gso, 0);
  let s = wire(frames);
  assert.is(s[0].seq, h.snd);
  assert.is(s[0].payload.length, 1460);
  assert.is(core.stat("TCP_RTO"), 1);
  // each ACK lets slow start send more of the lost range: still plain segments up to sndMax
  let acked = 1460;
  let sawTso = false;
  let t = 1101;
  while (acked < p.length) {
    peer.tcp({ seq: h.seq, ack: h.snd + acked });
    core.poll(t++);
    frames = nic(core);
    for (const fr of frames) {
      const first = rd32(fr.bytes, 34 + 4);
      if (fr.gso) {
        sawTso = true;
        assert.ok(first - h.snd >= 14600, "superframes only for data never sent before");
      }
    }
    s = wire(frames);
    for (const x of s) if (x.seq - h.snd < 14600) assert.ok(x.payload.length <= 1460);
    acked = Math.max(acked, ...s.map((x) => x.seq - h.snd + x.payload.length));
  }
  assert.ok(sawTso, "new data after the retransmitted range goes as superframes again");
  assert.ok(core.stat("TCP_RETRANSMITS") >= 9);
  abort(core, h.conn);
  clean(core);
});

test("SACK loss recovery: the hole is re-sent as one MSS segment", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer, { opts: { mss: 1460, sackOk: true } });
  for (let k = 0; k < 10; k++) appSend(core, h.conn, bytes(1900, k));
  core.poll(1);
  const segs = wire(nic(core));
  assert.is(segs.length, 10);
  // segment 0 lost; the peer SACKs 1..4 in four duplicate ACKs
  for (let k = 1; k <= 4; k++) {
    peer.tcp({ seq: h.seq, ack: h.snd, opts: { sack: [[h.snd + 1460, h.snd + 1460 * (k + 1)]] } });
    core.poll(2);
  }
  const frames = nic(core);
  const rtx = wire(frames).filter((x) => x.seq === h.snd);
  assert.is(rtx.length, 1, "the hole once");
  assert.is(rtx[0].payload.length, 1460);
  for (const fr of frames) if (fr.gso) assert.ok(rd32(fr.bytes, 38) - h.snd >= 14600, "no superframe below sndMax");
  assert.ok(core.stat("TCP_SACK_RTX") + core.stat("TCP_FAST_RTX") >= 1);
  abort(core, h.conn);
  clean(core);
});

test("maxPieces and maxBytes bound the superframe; it is always whole segments", () => {
  // 100-byte app buffers: 12 pieces at most -> 11 payload pieces = 1100 bytes, less than 2 MSS
  const a = setup({}, 65535, 12);
  const h = handshake(a.core, a.peer);
  a.core.cmd(CMD.SETOPT, { conn: h.conn, off: OPT.NODELAY, buf: 1 });
  for (let k = 0; k < 200; k++) appSend(a.core, h.conn, bytes(100, k));
  a.core.poll(1);
  let frames = nic(a.core);
  assert.is(tsoFrames(frames).length, 0, "not enough pieces for two segments: plain segments");
  abort(a.core, h.conn);
  clean(a.core);

  const b = setup({}, 65535, 40);
  const h2 = handshake(b.core, b.peer);
  for (let k = 0; k < 200; k++) appSend(b.core, h2.conn, bytes(500, k));
  b.core.poll(1);
  frames = nic(b.core);
  for (const fr of tsoFrames(frames)) {
    assert.ok(fr.slots <= 40, `${fr.slots} slots`);
    assert.is((fr.bytes.length - 54) % 1460, 0, "whole segments");
  }
  assert.ok(tsoFrames(frames).length >= 1);
  assert.is(
    wire(frames).reduce((x, s) => x + s.payload.length, 0),
    14600,
  );
  abort(b.core, h2.conn);
  clean(b.core);

  const c = setup({}, 54 + 4 * 1460 + 100);
  const h3 = handshake(c.core, c.peer);
  for (let k = 0; k < 10; k++) appSend(c.core, h3.conn, bytes(1900, k));
  c.core.poll(1);
  frames = nic(c.core);
  for (const fr of frames) assert.ok(fr.bytes.length <= 54 + 4 * 1460 + 100);
  assert.equal(
    tsoFrames(frames).map((f) => f.bytes.length - 54),
    [5840, 5840, 2920],
  );
  abort(c.core, h3.conn);
  clean(c.core);
});

test("kept buffers: the header goes in its own buffer before the chain", () => {
  const { core, peer } = setup();
  const h = handshake(core, peer);
  const p = bytes(1900 * 4);
  const names = [];
  for (let k = 0; k < 4; k++)
    names.push(appSend(core, h.conn, p.subarray(k * 1900, (k + 1) * 1900), { owner: OWNER.KEPT }));
  core.poll(1);
  const frames = nic(core);
  assert.is(frames.length, 1);
  assert.is(frames[0].slots, 5, "header buffer + 4 kept buffers");
  const segs = wire(frames);
  assert.equal([...segs.flatMap((s) => [...s.payload])], [...p]);
  peer.tcp({ seq: h.seq, ack: h.snd + p.length });
  core.poll(2);
  nic(core);
  for (const n of names) {
    assert.equal(
      [...core.u8.slice(core.bufAddr(n.buf) + n.off, core.bufAddr(n.buf) + n.off + n.len)],
      [...p.subarray(names.indexOf(n) * 1900, (names.indexOf(n) + 1) * 1900)],
    );
    assert.is(core.x.bufOwner(n.buf), OWNER.KEPT, "kept buffers are the app's again, never written");
    core.x.bufUnref(n.buf);
  }
  abort(core, h.conn);
  clean(core);
});

test("a 4 MiB transfer through a lossy segmenting NIC arrives byte-exact", () => {
  const { core, peer } = setup({ sndbuf: 1 << 20, buffers: 4096 });
  const h = handshake(core, peer, { opts: { mss: 1460, sackOk: true, ws: 7 }, win: 65535 });
  const total = 4 << 20;
  const src = bytes(total, 7);
  let queued = 0;
  const got = new Uint8Array(total);
  let rcvNxt = h.snd;
  const ooo = new Map();
  let rnd = 12345;
  const rand = () => ((rnd = (rnd * 1103515245 + 12345) >>> 0) >>> 8) / (1 << 24);
  let t = 1;
  let closed = false;
  let superframes = 0;
  let segments = 0;
  while (!closed && t < 600000) {
    let room = (1 << 20) - core.x.tcpInfo(h.conn, INFO.sndQueued);
    for (let k = 0; k < 256 && queued < total && room >= 1900; k++, room -= 1900) {
      const n = Math.min(1900, total - queued);
      appSend(core, h.conn, src.subarray(queued, queued + n));
      queued += n;
      if (queued === total) core.cmd(CMD.CLOSE, { conn: h.conn });
    }
    core.poll(t);
    const frames = nic(core);
    superframes += tsoFrames(frames).length;
    let any = false;
    for (const s of wire(frames)) {
      segments++;
      if (rand() < 0.02) continue; // lost on the wire
      any = true;
      if (s.payload.length) ooo.set(s.seq, s.payload);
      if (s.flags & TH.FIN) ooo.set(s.seq + s.payload.length, "FIN");
    }
    let fin = false;
    for (let again = true; again;) {
      again = false;
      for (const [seq, pl] of ooo) {
        if (pl === "FIN" && seq === rcvNxt) {
          fin = true;
          ooo.delete(seq);
          continue;
        }
        if (pl === "FIN") continue;
        const end = seq + pl.length;
        if (end - rcvNxt <= 0) {
          ooo.delete(seq);
        } else if (seq - rcvNxt <= 0) {
          got.set(pl.subarray(rcvNxt - seq), rcvNxt - h.snd);
          rcvNxt = end >>> 0;
          ooo.delete(seq);
          again = true;
        }
      }
    }
    if (any) {
      peer.tcp({ seq: h.seq, ack: (rcvNxt + (fin ? 1 : 0)) >>> 0, win: 65535, flags: TH.ACK | (fin ? TH.FIN : 0) });
      if (fin) closed = true;
    }
    const dl = core.deadline;
    t = any ? t + 1 : Math.max(t + 1, Number.isFinite(dl) ? Math.ceil(dl) : t + 1);
  }
  assert.ok(closed, "the transfer finished");
  core.poll(t);
  nic(core);
  assert.ok(
    got.every((v, i) => v === src[i]),
    "byte-exact",
  );
  assert.ok(superframes > 0 && segments > superframes * 5, `${superframes} superframes for ${segments} segments`);
  assert.ok(core.stat("TCP_RETRANSMITS") > 0, "losses were repaired");
  if (process.env.TSO_DEBUG)
    console.log({ superframes, segments, rtx: core.stat("TCP_RETRANSMITS"), rto: core.stat("TCP_RTO"), t });
  core.poll(t + 5000);
  nic(core);
  clean(core);
});

test("Stack: tso option, setTso, and configureOffloads per NIC kind", () => {
  // the capabilities each port type reports: AF_XDP and TAP without offloads NO_OFFLOADS, TAP
  // with offloads TAP_OFFLOADS (checked on real queues in nic-tap and nic-xdp)
  const XDP = NO_OFFLOADS;
  const TAP_PLAIN = NO_OFFLOADS;
  const mk = (tso) => Stack.create({ mac: "02:00:00:00:00:01", ip: "198.18.0.1/24", pool: { buffers: 64 }, tso });
  const a = mk(undefined);
  assert.is(a.tso, null, "unset: off");
  assert.is(a.configureOffloads(XDP), false, "AF_XDP: off");
  assert.is(a.configureOffloads(TAP_PLAIN), false, "TAP without offloads: off");
  assert.is(a.configureOffloads(TAP_OFFLOADS), true, "TAP with offloads: on");
  assert.equal(a.tso, { maxBytes: 65535, maxPieces: 40 });
  assert.is(a.configureOffloads(XDP), false, "and off again on a NIC that cannot segment");
  a.shutdown();
  const b = mk(false);
  assert.is(b.configureOffloads(TAP_OFFLOADS), false, "tso: false is kept");
  b.setTso({ maxBytes: 30000, maxPieces: 20 });
  assert.equal(b.tso, { maxBytes: 30000, maxPieces: 20 });
  b.setTso(false);
  assert.is(b.tso, null);
  b.shutdown();
  const c = mk(true);
  assert.equal(c.tso, { maxBytes: 65535, maxPieces: 40 }, "tso: true from the start");
  assert.is(c.configureOffloads(XDP), false, "even when asked, never on AF_XDP");
  c.shutdown();
  assert.throws(() => mk({ maxBytes: 70000 }), RangeError);
  assert.throws(() => mk({ maxPieces: 65 }), RangeError);
});

test.run();

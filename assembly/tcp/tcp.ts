// TCP (RFC 9293) over named buffers. Received payload is delivered to the app by reference;
// out-of-order payload is held by reference in a per-connection reassembly list; sent payload
// stays in the app's buffers (held STACK or referenced when KEPT) until acknowledged, and each
// transmitted copy holds its own reference until the host has sent it. See docs/tcp.md.

import { arenaAlloc } from "../arena";
import { bufAddr, bufAlloc, bufOwner, bufRef, bufRefCount, bufSetOwner, bufUnref, nameCheck } from "../pool";
import { OWNER_APP, OWNER_KEPT, OWNER_NIC, OWNER_STACK } from "../layout";
import { csumAddAt, csumFinish, csumFold16, csumRaw } from "../net/csum";
import {
  cfg, cfgGet, CFG_MAX_CONNS, CFG_SYNQ, CFG_NODES, CFG_LISTEN, CFG_RCVBUF, CFG_SNDBUF, CFG_FLAGS, CFG_MSL,
  CFG_KEEPALIVE, CFG_DELACK, CFG_MIN_RTO, CFG_INIT_RTO, CFG_SECRET, CFG_TSO, CFG_TSO_PIECES, MAXP,
  C_TCP_TSO_FRAMES, C_TCP_TSO_SEGS, txSetMeta, TXF_NEEDS_CSUM, TXF_GSO_SHIFT, TXF_GSO_TCPV4,
  count, countN, C_TCP_BAD_CSUM, C_TCP_BAD_HDR, C_TCP_NO_CONN, C_TCP_CONN_EXHAUSTED, C_TCP_SYNQ_OVERFLOW, C_TCP_COOKIE_OK,
  C_TCP_COOKIE_BAD, C_TCP_NODES_EXHAUSTED, C_TCP_RETRANSMITS, C_TCP_RTO, C_TCP_FAST_RTX, C_TCP_CHALLENGE_ACK,
  C_TCP_PAWS_DROP, C_BUF_EXHAUSTED, C_TCP_OOO, C_TCP_IN, C_TCP_OUT, C_TCP_KEEPALIVE_DROP, C_TCP_DUP, C_TCP_BAD_SEG,
  C_TCP_RST_IN, C_TCP_SYN_RTX_DROP, C_TCP_ZWP, C_TCP_SACK_RTX, C_TCP_CHALLENGE_LIMITED, C_TCP_ICMP_ABORT,
  emit, aoutSpace, EV_DATA, EV_ACCEPTED, EV_CONNECTED, EV_PEER_CLOSED, EV_CLOSED, EV_RESET, EV_WRITABLE,
  EV_SEND_REFUSED, EV_LISTENING, EV_ERROR,
  ld16, ld32, st16, st32, now, nowMs, ourIp, ourMtu, pb, po, pl, setP, txAdd, txReset, txDiscard,
  tN, tb, to, tl as tlen, txRing, C_TX_STALL,
} from "../net/g";
import { ringSpace } from "../ring";
import { ETH_HLEN } from "../net/eth";
import {
  rxSrc, rxDst, rxL4Len, rxNp, rxBcast, rxL4Avail0, rxL4CsumValid, pseudo4, ip4WriteHdr, netOutput, netHdrLen,
  FAM_IP4, PROTO_TCP, IP4_HLEN,
} from "../net/ip4";
import {
  Tcb, NIL, nodesInit, nodeAlloc, nodeRelease, nBuf, nOff, nLen, nSeq, nNext, nSetNext, nSet,
  seqLt, seqLe, seqGt, seqGe,
  ST_CLOSED, ST_SYN_SENT, ST_SYN_RCVD, ST_ESTABLISHED, ST_FIN_WAIT_1, ST_FIN_WAIT_2, ST_CLOSE_WAIT, ST_CLOSING,
  ST_LAST_ACK, ST_TIME_WAIT,
  TF_NODELAY, TF_CUBIC, TF_NOSACK, TF_NOTS, TF_NOWS, TF_TS_OK, TF_WS_OK, TF_SACK_OK, TF_FIN_QUEUED, TF_ACK_NOW,
  TF_PEER_FIN, TF_RECOVERY, TF_WANT_WRITABLE, TF_USED, TF_PASSIVE, TF_RTT, TF_SYNQ, TF_FIN_PENDING, TF_APP_DONE,
  TF_PEND,
} from "./tcb";
import { sip24 } from "./siphash";

const TH_FIN: u32 = 1;
const TH_SYN: u32 = 2;
const TH_RST: u32 = 4;
const TH_PSH: u32 = 8;
const TH_ACK: u32 = 16;
const TH_URG: u32 = 32;
const TCP_HLEN: u32 = 20;
const MAX_RTO: f64 = 60000;
const MAX_RETRIES: u32 = 15;
const MAX_SYN_RETRIES: u32 = 7; // SYN: retransmitted for more than 3 minutes (RFC 9293 3.8.3 R2)
const MAX_SYNACK_RETRIES: u32 = 5; // half-open passive connections give up sooner
const KA_PROBES: u32 = 9;
const KA_INTVL: f64 = 75000;

// reasons carried in EV_RESET / EV_ERROR aux
export const R_RESET: u32 = 1; // peer sent RST
export const R_TIMEOUT: u32 = 2; // retransmission limit
export const R_REFUSED: u32 = 3; // RST in answer to our SYN
export const R_KEEPALIVE: u32 = 4;
export const R_NOCONN: u32 = 5; // no connection block free
export const R_BADARG: u32 = 6;
export const R_INUSE: u32 = 7;

let tcbs: usize = 0;
let tcbSize: u32 = 0;
let maxConns: u32 = 0;
let hiwater: u32 = 0; // highest used index + 1
let freeHead: u32 = NIL;
let hashTab: usize = 0;
let hashMask: u32 = 0;
let synLimit: u32 = 0;
let synUsed: u32 = 0;
let k0: u64 = 0;
let k1: u64 = 0;
let dflags: u32 = 0;
let defRcvBuf: u32 = 0;
let defSndBuf: u32 = 0;
let msl: f64 = 30000;
let delack: f64 = 40;
let minRto: f64 = 200;
let initRto: f64 = 1000;
let defKeepalive: f64 = 0;
let ephemeral: u32 = 0;

// listeners: u32 port | used<<16, u32 backlog, u32 synCount, u32 tag
let lst: usize = 0;
let nLst: u32 = 0;

@inline function tcb(i: u32): Tcb {
  return changetype<Tcb>(tcbs + <usize>i * tcbSize);
}
@inline function connId(i: u32): u32 {
  return (tcb(i).gen << 16) | i;
}

export function tcpInit(): i32 {
  maxConns = cfgGet(CFG_MAX_CONNS);
  tcbSize = (offsetof<Tcb>() + 15) & ~15;
  const a = arenaAlloc(<usize>maxConns * tcbSize, 64);
  if (a < 0) return <i32>a;
  tcbs = <usize>a;
  let hs: u32 = 16;
  while (hs < maxConns * 2) hs <<= 1;
  hashMask = hs - 1;
  const h = arenaAlloc(<usize>hs << 2, 64);
  if (h < 0) return <i32>h;
  hashTab = <usize>h;
  memory.fill(hashTab, 0xff, <usize>hs << 2);
  for (let i: u32 = maxConns; i > 0; i--) {
    const t = tcb(i - 1);
    t.hnext = freeHead;
    t.gen = 1;
    freeHead = i - 1;
  }
  let r = nodesInit(cfgGet(CFG_NODES));
  if (r < 0) return r;
  nLst = cfgGet(CFG_LISTEN);
  const l = arenaAlloc(<usize>nLst << 4, 16);
  if (l < 0) return <i32>l;
  lst = <usize>l;
  synLimit = cfgGet(CFG_SYNQ);
  k0 = load<u64>(cfg + CFG_SECRET);
  k1 = load<u64>(cfg + CFG_SECRET + 8);
  dflags = load<u32>(cfg + CFG_FLAGS) & 0xff;
  defRcvBuf = cfgGet(CFG_RCVBUF);
  defSndBuf = cfgGet(CFG_SNDBUF);
  msl = <f64>cfgGet(CFG_MSL);
  delack = <f64>cfgGet(CFG_DELACK);
  minRto = <f64>cfgGet(CFG_MIN_RTO);
  initRto = <f64>cfgGet(CFG_INIT_RTO);
  defKeepalive = <f64>cfgGet(CFG_KEEPALIVE);
  ephemeral = <u32>(sip24(k0, k1, 7, 7) & 0x3fff);
  return 0;
}

// ---------------------------------------------------------------- lookup

@inline function hashOf(rip: u32, rport: u32, lport: u32): u32 {
  let x = rip * 0x9e3779b1 ^ ((rport << 16) | lport) * 0x85ebca6b;
  x ^= x >>> 15;
  return x & hashMask;
}
function lookup(rip: u32, rport: u32, lport: u32): u32 {
  let i = load<u32>(hashTab + (<usize>hashOf(rip, rport, lport) << 2));
  while (i != NIL) {
    const t = tcb(i);
    if (t.rip == rip && t.rport == rport && t.lport == lport) return i;
    i = t.hnext;
  }
  return NIL;
}
function hashInsert(i: u32): void {
  const t = tcb(i);
  const p = hashTab + (<usize>hashOf(t.rip, t.rport, t.lport) << 2);
  t.hnext = load<u32>(p);
  store<u32>(p, i);
}
function hashRemove(i: u32): void {
  const t = tcb(i);
  const p = hashTab + (<usize>hashOf(t.rip, t.rport, t.lport) << 2);
  let j = load<u32>(p);
  if (j == i) {
    store<u32>(p, t.hnext);
    return;
  }
  while (j != NIL) {
    const u = tcb(j);
    if (u.hnext == i) {
      u.hnext = t.hnext;
      return;
    }
    j = u.hnext;
  }
}
function findListener(port: u32): i32 {
  for (let i: u32 = 0; i < nLst; i++) {
    if (load<u32>(lst + (<usize>i << 4)) == (port | 0x10000)) return <i32>i;
  }
  return -1;
}

/** Resolves an app conn id to an index (checks the generation), or NIL. */
function fromId(id: u32): u32 {
  const i = id & 0xffff;
  if (i >= maxConns) return NIL;
  const t = tcb(i);
  if ((t.flags & TF_USED) == 0 || t.gen != (id >>> 16) || (t.flags & TF_APP_DONE) != 0) return NIL;
  return i;
}

// ---------------------------------------------------------------- allocation

function isnFor(lip: u32, lport: u32, rip: u32, rport: u32): u32 {
  // RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, secretkey), M a 4 us clock.
  const f = sip24(k0, k1, (<u64>lip << 32) | rip, (<u64>lport << 16) | rport);
  return <u32>(<u64>(now * 250)) + <u32>f;
}

function tcbAlloc(rip: u32, rport: u32, lport: u32): u32 {
  let i = freeHead;
  if (i == NIL) {
    // recycle the TIME_WAIT block that expires first
    let best: u32 = NIL;
    let bt: f64 = Infinity;
    for (let k: u32 = 0; k < hiwater; k++) {
      const t = tcb(k);
      if ((t.flags & TF_USED) != 0 && t.state == ST_TIME_WAIT && t.twAt < bt) {
        bt = t.twAt;
        best = k;
      }
    }
    if (best == NIL) {
      count(C_TCP_CONN_EXHAUSTED);
      return NIL;
    }
    tcbFree(best);
    i = freeHead;
  }
  const t = tcb(i);
  freeHead = t.hnext;
  const gen = t.gen;
  memory.fill(changetype<usize>(t), 0, tcbSize);
  t.gen = gen;
  t.flags = TF_USED | dflags;
  t.fam = FAM_IP4;
  t.lip = ourIp;
  t.rip = rip;
  t.rport = rport;
  t.lport = lport;
  t.qHead = NIL;
  t.qTail = NIL;
  t.qCur = NIL;
  t.rHead = NIL;
  t.listener = NIL;
  t.rcvBuf = defRcvBuf;
  t.sndBufMax = defSndBuf;
  t.rto = initRto;
  t.rtxAt = Infinity;
  t.ackAt = Infinity;
  t.twAt = Infinity;
  t.kaAt = Infinity;
  t.persistAt = Infinity;
  t.kaIdle = defKeepalive;
  t.mss = 536;
  t.ssthresh = 0x7fffffff;
  t.tsOff = <u32>sip24(k0, k1, (<u64>rip << 32) | ourIp, (<u64>lport << 16) | rport | (<u64>1 << 40));
  if (i >= hiwater) hiwater = i + 1;
  hashInsert(i);
  return i;
}

function tcbFree(i: u32): void {
  const t = tcb(i);
  if ((t.flags & TF_USED) == 0) return;
  let n = t.qHead;
  while (n != NIL) {
    const nx = nNext(n);
    bufUnref(nBuf(n));
    nodeRelease(n);
    n = nx;
  }
  n = t.rHead;
  while (n != NIL) {
    const nx = nNext(n);
    bufUnref(nBuf(n));
    nodeRelease(n);
    n = nx;
  }
  if ((t.flags & TF_SYNQ) != 0) synDone(t);
  hashRemove(i);
  t.flags = 0;
  t.state = ST_CLOSED;
  t.gen = (t.gen + 1) & 0xffff;
  if (t.gen == 0) t.gen = 1;
  t.hnext = freeHead;
  freeHead = i;
}

function synDone(t: Tcb): void {
  t.flags &= ~TF_SYNQ;
  synUsed--;
  if (t.listener != NIL) {
    const p = lst + (<usize>t.listener << 4) + 8;
    const v = load<u32>(p);
    if (v > 0) store<u32>(p, v - 1);
  }
}

/** Ends a connection: tells the app (once) and frees or keeps the block (TIME_WAIT keeps it). */
function finish(i: u32, ev: u32, reason: u32): void {
  const t = tcb(i);
  // a half-open passive connection was never shown to the app
  const hidden = (t.flags & TF_PASSIVE) != 0 && t.state == ST_SYN_RCVD;
  if ((t.flags & TF_APP_DONE) == 0 && !hidden) emit(ev, connId(i), t.tag, 0, 0, reason, false);
  t.flags |= TF_APP_DONE;
  if (t.state != ST_TIME_WAIT) tcbFree(i);
}

// ---------------------------------------------------------------- options and windows

let oMss: u32 = 0;
let oWs: i32 = -1;
let oSackOk = false;
let oTs = false;
let oTsVal: u32 = 0;
let oTsEcr: u32 = 0;
let oSackN: u32 = 0;
const oSack: usize = memory.data(32, 8); // up to 4 blocks {u32 L, u32 R}

/** Parses options in [p, p+len). Malformed options end parsing (the segment is still used). */
function parseOptions(p: usize, len: u32): void {
  oMss = 0;
  oWs = -1;
  oSackOk = false;
  oTs = false;
  oSackN = 0;
  let k: u32 = 0;
  while (k < len) {
    const kind = <u32>load<u8>(p + k);
    if (kind == 0) break;
    if (kind == 1) {
      k++;
      continue;
    }
    if (k + 1 >= len) break;
    const ol = <u32>load<u8>(p + k + 1);
    if (ol < 2 || k + ol > len) break;
    if (kind == 2 && ol == 4) oMss = ld16(p + k + 2);
    else if (kind == 3 && ol == 3) oWs = <i32>min<u32>(<u32>load<u8>(p + k + 2), 14);
    else if (kind == 4 && ol == 2) oSackOk = true;
    else if (kind == 5 && ol >= 10 && ((ol - 2) & 7) == 0) {
      for (let j: u32 = k + 2; j + 8 <= k + ol && oSackN < 4; j += 8) {
        store<u32>(oSack + (oSackN << 3), ld32(p + j));
        store<u32>(oSack + (oSackN << 3) + 4, ld32(p + j + 4));
        oSackN++;
      }
    } else if (kind == 8 && ol == 10) {
      oTs = true;
      oTsVal = ld32(p + k + 2);
      oTsEcr = ld32(p + k + 6);
    }
    k += ol;
  }
}

function ourMss(): u32 {
  return ourMtu - IP4_HLEN - TCP_HLEN;
}

function rcvWsFor(buf: u32): u32 {
  let s: u32 = 0;
  while (s < 14 && (buf >>> s) > 65535) s++;
  return s;
}

/** Window to advertise (unscaled bytes), never shrinking the right edge. */
function rcvWindow(t: Tcb): u32 {
  const buf = t.rcvBuf;
  let free: u32 = t.unread >= buf ? 0 : buf - t.unread;
  const maxw: u32 = (t.flags & TF_WS_OK) != 0 ? 65535 << t.rcvWs : 65535;
  if (free > maxw) free = maxw;
  const right = t.rcvNxt + free;
  // receiver SWS avoidance (RFC 9293 3.8.6.2.2): move the edge by at least min(buf/2, mss)
  if (seqGt(right, t.rcvAdv)) {
    const inc = right - t.rcvAdv;
    if (inc >= min<u32>(buf >>> 1, t.mss) || seqLe(t.rcvAdv, t.rcvNxt) && free >= t.mss) t.rcvAdv = right;
  }
  if (seqLt(t.rcvAdv, t.rcvNxt)) t.rcvAdv = t.rcvNxt;
  return t.rcvAdv - t.rcvNxt;
}

// ---------------------------------------------------------------- output

/** Finds the send-queue node holding sequence number `seq` (NIL if none). */
function nodeAt(t: Tcb, seq: u32): u32 {
  let n = t.qCur;
  if (n == NIL || seqLt(seq, nSeq(n))) n = t.qHead;
  while (n != NIL) {
    const s = nSeq(n);
    if (seqGe(seq, s) && seqLt(seq, s + nLen(n))) {
      t.qCur = n;
      return n;
    }
    n = nNext(n);
  }
  return NIL;
}

/**
 * Builds and sends one segment: `len` payload bytes from the send queue at `seq`, with flags
 * `fl`. Headers go into the payload buffer's headroom when that buffer is ours alone, else into
 * a fresh header buffer chained before the payload. Returns false if it could not be sent.
 * With `gso` (a segment size, TSO) the frame is a superframe of `len` > `gso` bytes that the
 * NIC cuts into `gso`-byte segments: the TCP checksum field holds the pseudo-header sum over the
 * superframe's TCP length (Linux CHECKSUM_PARTIAL, what `tcp_gso_segment` adjusts per segment)
 * and the first TX slot asks for NEEDS_CSUM + GSO TCPv4 (docs/core-abi.md).
 */
function xmit(i: u32, seq: u32, len: u32, fl: u32, gso: u32 = 0): bool {
  const t = tcb(i);
  // options
  let olen: u32 = 0;
  const syn = (fl & TH_SYN) != 0;
  if (syn) {
    olen = 4; // MSS
    if ((t.flags & TF_NOWS) == 0 && (!(t.flags & TF_PASSIVE) || (t.flags & TF_WS_OK) != 0)) olen += 4;
    if ((t.flags & TF_NOSACK) == 0 && (!(t.flags & TF_PASSIVE) || (t.flags & TF_SACK_OK) != 0)) olen += 4;
    if ((t.flags & TF_NOTS) == 0 && (!(t.flags & TF_PASSIVE) || (t.flags & TF_TS_OK) != 0)) olen += 12;
  } else if ((t.flags & TF_TS_OK) != 0 && (fl & TH_RST) == 0) olen = 12;
  let nsack: u32 = 0;
  if (!syn && (t.flags & TF_SACK_OK) != 0 && t.rHead != NIL && (fl & TH_RST) == 0) {
    nsack = min<u32>(t.rCount, olen == 12 ? 3 : 4);
    olen += 4 + nsack * 8;
  }
  const HL = ETH_HLEN + IP4_HLEN + TCP_HLEN + olen;
  txReset();
  let h: usize = 0;
  let n: u32 = NIL;
  let noff: u32 = 0;
  if (len > 0) {
    n = nodeAt(t, seq);
    if (n == NIL) return false;
    noff = seq - nSeq(n);
  }
  if (len > 0 && noff == 0 && nOff(n) >= HL && bufOwner(nBuf(n)) == <i32>OWNER_STACK && bufRefCount(nBuf(n)) == 1) {
    // headers in the headroom: one slot for the whole first piece
    const b = nBuf(n);
    bufRef(b);
    const l0 = min<u32>(nLen(n), len);
    txAdd(b, nOff(n) - HL, HL + l0);
    h = bufAddr(b) + nOff(n) - HL;
    let left = len - l0;
    n = nNext(n);
    while (left > 0 && n != NIL) {
      const l = min<u32>(nLen(n), left);
      bufRef(nBuf(n));
      if (!txAdd(nBuf(n), nOff(n), l)) {
        bufUnref(nBuf(n));
        txDiscard();
        return false;
      }
      left -= l;
      n = nNext(n);
    }
  } else {
    const hb = bufAlloc(OWNER_NIC);
    if (hb < 0) {
      count(C_BUF_EXHAUSTED);
      return false;
    }
    txAdd(<u32>hb, 0, HL);
    h = bufAddr(<u32>hb);
    let left = len;
    while (left > 0 && n != NIL) {
      const l = min<u32>(nLen(n) - noff, left);
      bufRef(nBuf(n));
      if (!txAdd(nBuf(n), nOff(n) + noff, l)) {
        bufUnref(nBuf(n));
        txDiscard();
        return false;
      }
      left -= l;
      noff = 0;
      n = nNext(n);
    }
  }
  // TCP header
  const th = h + ETH_HLEN + IP4_HLEN;
  st16(th, t.lport);
  st16(th + 2, t.rport);
  st32(th + 4, seq);
  let wnd: u32 = 0;
  let ack: u32 = 0;
  if ((fl & TH_ACK) != 0) ack = t.rcvNxt;
  if ((fl & TH_RST) == 0) {
    wnd = rcvWindow(t);
    wnd = syn ? min<u32>(wnd, 65535) : min<u32>(wnd >>> t.rcvWs, 65535);
  }
  st32(th + 8, ack);
  store<u8>(th + 12, <u8>(((TCP_HLEN + olen) >> 2) << 4));
  store<u8>(th + 13, <u8>fl);
  st16(th + 14, wnd);
  store<u32>(th + 16, 0);
  let o = th + TCP_HLEN;
  if (syn) {
    store<u8>(o, 2);
    store<u8>(o + 1, 4);
    st16(o + 2, ourMss());
    o += 4;
    if ((t.flags & TF_NOWS) == 0 && (!(t.flags & TF_PASSIVE) || (t.flags & TF_WS_OK) != 0)) {
      st32(o, 0x01030300 | t.rcvWs);
      o += 4;
    }
    if ((t.flags & TF_NOSACK) == 0 && (!(t.flags & TF_PASSIVE) || (t.flags & TF_SACK_OK) != 0)) {
      st32(o, 0x01010402);
      o += 4;
    }
  }
  if (olen >= 12 && (syn ? (t.flags & TF_NOTS) == 0 && (!(t.flags & TF_PASSIVE) || (t.flags & TF_TS_OK) != 0) : (t.flags & TF_TS_OK) != 0 && (fl & TH_RST) == 0)) {
    st32(o, 0x0101080a);
    st32(o + 4, nowMs + t.tsOff);
    st32(o + 8, t.tsRecent);
    o += 12;
  }
  if (nsack > 0) {
    st16(o, 0x0101);
    store<u8>(o + 2, 5);
    store<u8>(o + 3, <u8>(2 + nsack * 8));
    o += 4;
    // the block holding the most recent segment first (RFC 2018), then the others in order
    let r = t.rHead;
    let first: u32 = NIL;
    while (r != NIL) {
      if (seqLe(nSeq(r), t.lastSackSeq) && seqLt(t.lastSackSeq, nSeq(r) + nLen(r))) first = r;
      r = nNext(r);
    }
    let k: u32 = 0;
    if (first != NIL) {
      o = sackBlock(o, first);
      k++;
    }
    r = t.rHead;
    while (r != NIL && k < nsack) {
      if (r != first) {
        o = sackBlock(o, r);
        k++;
      }
      r = nNext(r);
    }
    while (k < nsack) {
      // fewer distinct blocks than reserved: pad with NOPs
      store<u64>(o, 0x0101010101010101);
      o += 8;
      k++;
    }
  }
  const tl = TCP_HLEN + olen + len;
  if (gso != 0) {
    // the NIC completes the checksum of every segment it cuts: leave the pseudo-header sum
    store<u16>(th + 16, <u16>csumFold16(pseudo4(t.lip, t.rip, PROTO_TCP, tl)));
    ip4WriteHdr(th - IP4_HLEN, t.lip, t.rip, PROTO_TCP, tl, 64);
    count(C_TCP_OUT);
    count(C_TCP_TSO_FRAMES);
    countN(C_TCP_TSO_SEGS, (len + gso - 1) / gso);
    if ((fl & TH_ACK) != 0) {
      t.ackPending = 0;
      t.ackAt = Infinity;
      t.flags &= ~TF_ACK_NOW;
    }
    const cs: u32 = ETH_HLEN + IP4_HLEN;
    txSetMeta(TXF_NEEDS_CSUM | (TXF_GSO_TCPV4 << TXF_GSO_SHIFT) | (cs << 8) | (16 << 16));
    netOutput(t.fam, t.rip, gso | (HL << 16));
    return true;
  }
  // checksum: pseudo header + TCP header + payload pieces
  let acc = pseudo4(t.lip, t.rip, PROTO_TCP, tl);
  acc += <u64>csumFold16(csumRaw(th, TCP_HLEN + olen));
  let pos: u32 = TCP_HLEN + olen;
  const l0 = tlen(0) - HL;
  if (l0 > 0) {
    acc = csumAddAt(acc, bufAddr(tb(0)) + to(0) + HL, l0, pos);
    pos += l0;
  }
  for (let k: u32 = 1; k < tN; k++) {
    acc = csumAddAt(acc, bufAddr(tb(k)) + to(k), tlen(k), pos);
    pos += tlen(k);
  }
  store<u16>(th + 16, csumFinish(acc));
  ip4WriteHdr(th - IP4_HLEN, t.lip, t.rip, PROTO_TCP, tl, 64);
  count(C_TCP_OUT);
  if ((fl & TH_ACK) != 0) {
    t.ackPending = 0;
    t.ackAt = Infinity;
    t.flags &= ~TF_ACK_NOW;
  }
  netOutput(t.fam, t.rip, connId(i));
  return true;
}

function sackBlock(o: usize, r: u32): usize {
  // merge adjacent nodes into one block
  let s = nSeq(r);
  let e = s + nLen(r);
  let x = nNext(r);
  while (x != NIL && nSeq(x) == e) {
    e += nLen(x);
    x = nNext(x);
  }
  st32(o, s);
  st32(o + 4, e);
  return o + 8;
}


/** Sends a segment without a connection block (RST replies, SYN cookie SYN-ACKs). */
function rawSeg(lport: u32, rport: u32, dst: u32, seq: u32, ack: u32, fl: u32, mss: u32): void {
  const b = bufAlloc(OWNER_NIC);
  if (b < 0) {
    count(C_BUF_EXHAUSTED);
    return;
  }
  const olen: u32 = mss != 0 ? 4 : 0;
  const p = bufAddr(<u32>b);
  const th = p + ETH_HLEN + IP4_HLEN;
  st16(th, lport);
  st16(th + 2, rport);
  st32(th + 4, seq);
  st32(th + 8, ack);
  store<u8>(th + 12, <u8>(((TCP_HLEN + olen) >> 2) << 4));
  store<u8>(th + 13, <u8>fl);
  st16(th + 14, (fl & TH_RST) != 0 ? 0 : 65535);
  store<u32>(th + 16, 0);
  if (mss != 0) {
    store<u8>(th + 20, 2);
    store<u8>(th + 21, 4);
    st16(th + 22, mss);
  }
  const tl = TCP_HLEN + olen;
  const acc = pseudo4(ourIp, dst, PROTO_TCP, tl) + <u64>csumFold16(csumRaw(th, tl));
  store<u16>(th + 16, csumFinish(acc));
  ip4WriteHdr(th - IP4_HLEN, ourIp, dst, PROTO_TCP, tl, 64);
  txReset();
  txAdd(<u32>b, 0, ETH_HLEN + IP4_HLEN + tl);
  count(C_TCP_OUT);
  netOutput(FAM_IP4, dst, 0);
}

// ---------------------------------------------------------------- send logic

@inline function rtoEff(t: Tcb): f64 {
  return min(t.rto * <f64>(1 << min<u32>(t.backoff, 16)), MAX_RTO);
}

function sendAck(i: u32): void {
  const t = tcb(i);
  if (t.state == ST_SYN_RCVD) xmit(i, t.iss, 0, TH_SYN | TH_ACK);
  else if (t.state == ST_SYN_SENT) xmit(i, t.iss, 0, TH_SYN);
  else xmit(i, t.sndNxt, 0, TH_ACK);
}

// RFC 5961 7: challenge ACKs are rate limited (all connections together), 1000 per second
let chTokens: f64 = 100;
let chLast: f64 = -1;
function challengeAck(i: u32): void {
  if (chLast >= 0) chTokens = min(100.0, chTokens + (now - chLast));
  chLast = now;
  if (chTokens < 1) {
    count(C_TCP_CHALLENGE_LIMITED);
    return;
  }
  chTokens -= 1;
  count(C_TCP_CHALLENGE_ACK);
  sendAck(i);
}

function sackBytes(t: Tcb): u32 {
  if ((t.flags & TF_SACK_OK) == 0 || t.rHead == NIL) return 0;
  return 4 + min<u32>(t.rCount, (t.flags & TF_TS_OK) != 0 ? 3 : 4) * 8;
}

/**
 * Payload bytes from `seq` (at most `want`) that fit in `pieces` TX slots after the header: a
 * frame holds at most MAXP pieces, so a run of tiny sends goes as several frames (TSO, and
 * every plain segment: a segment needing more pieces was never sent and stalled the connection).
 */
function fitPieces(t: Tcb, seq: u32, want: u32, pieces: u32): u32 {
  let n = nodeAt(t, seq);
  if (n == NIL) return 0;
  let off = seq - nSeq(n);
  let got: u32 = 0;
  let k: u32 = 0;
  while (n != NIL && got < want && k < pieces) {
    got += nLen(n) - off;
    off = 0;
    k++;
    n = nNext(n);
  }
  return min<u32>(got, want);
}

/** Sends whatever the windows, Nagle and the state allow; then the ACK if one is owed. */
function tcpOutput(i: u32): void {
  const t = tcb(i);
  const st = t.state;
  if (st == ST_SYN_SENT || st == ST_SYN_RCVD || st == ST_CLOSED) {
    if ((t.flags & TF_ACK_NOW) != 0) {
      t.flags &= ~TF_ACK_NOW;
      if (st != ST_CLOSED) sendAck(i);
    }
    return;
  }
  const canData = st == ST_ESTABLISHED || st == ST_CLOSE_WAIT || st == ST_FIN_WAIT_1 || st == ST_CLOSING ||
    st == ST_LAST_ACK;
  let sent = false;
  // RFC 5681 4.1: after an idle period longer than the RTO, restart from the initial window
  if (canData && t.sndNxt == t.sndUna && seqLt(t.sndNxt, t.sndEnd) && t.lastSend > 0 && now - t.lastSend > t.rto) {
    const iw = min<u32>(10 * t.mss, max<u32>(2 * t.mss, 14600));
    if (t.cwnd > iw) t.cwnd = iw;
    t.epoch = -1;
  }
  while (canData) {
    // the TX ring is nearly full (a turn's output to many connections): stop here and go on at
    // the next poll, once the host has drained it, rather than build frames it would drop
    if (ringSpace(txRing) < MAXP + 8) {
      count(C_TX_STALL);
      t.flags |= TF_PEND;
      break;
    }
    // skip data the peer already holds (SACKed), e.g. after a retransmission timeout
    for (let k: u32 = 0; k < t.sbN; k++) {
      if (seqGe(t.sndNxt, sbL(t, k)) && seqLt(t.sndNxt, sbR(t, k))) t.sndNxt = sbR(t, k);
    }
    let inflight = t.sndNxt - t.sndUna;
    if (t.sbN > 0) {
      inflight = (t.flags & TF_RECOVERY) != 0 ? sbPipe(t) : inflight - sbSackedBelow(t, t.sndNxt);
    }
    const win = min<u32>(t.sndWnd, t.cwnd);
    const usable: u32 = win > inflight ? win - inflight : 0;
    const remain: u32 = seqLt(t.sndNxt, t.sndEnd) ? t.sndEnd - t.sndNxt : 0;
    const segMax = t.mss - sackBytes(t);
    let len = min<u32>(min<u32>(remain, segMax), usable);
    if (len > 0) len = fitPieces(t, t.sndNxt, len, MAXP - 1); // a frame holds at most MAXP pieces
    const finQ = (t.flags & TF_FIN_QUEUED) != 0;
    if (len > 0 && len < segMax && len < remain && inflight > 0 && usable < (t.maxSndWnd >>> 1)) len = 0; // sender SWS
    // Nagle with Minshall's refinement: hold a small segment only while another small one is unacknowledged
    if (len > 0 && len < segMax && inflight > 0 && (t.flags & TF_NODELAY) == 0 && !(finQ && len == remain) &&
        seqGt(t.smlEnd, t.sndUna)) len = 0;
    const rtx = seqLt(t.sndNxt, t.sndMax);
    // TSO: new data worth more than one full segment goes as one superframe of full segments
    // (plus the end of the queue when Nagle would send it now); retransmissions stay <= MSS
    let gso: u32 = 0;
    const tsoMax = cfgGet(CFG_TSO);
    if (tsoMax != 0 && !rtx && len == segMax && remain > segMax && usable > segMax) {
      const hl = ETH_HLEN + IP4_HLEN + TCP_HLEN + ((t.flags & TF_TS_OK) != 0 ? 12 : 0) + sackBytes(t);
      if (tsoMax > hl + 2 * segMax) {
        const pieces = cfgGet(CFG_TSO_PIECES) - 1;
        const big = fitPieces(t, t.sndNxt, min<u32>(min<u32>(remain, usable), tsoMax - hl), pieces);
        let tso = (big / segMax) * segMax;
        if (big == remain && big > tso && ((t.flags & TF_NODELAY) != 0 || finQ || !seqGt(t.smlEnd, t.sndUna))) tso = big;
        if (tso > segMax) {
          len = tso;
          gso = segMax;
        }
      }
    }
    const fin = finQ && t.sndNxt + len == t.sndEnd;
    if (len == 0 && !fin) break;
    let fl = TH_ACK;
    if (fin) fl |= TH_FIN;
    if (len > 0 && t.sndNxt + len == t.sndEnd) fl |= TH_PSH;
    if (rtx) {
      count(C_TCP_RETRANSMITS);
      t.flags &= ~TF_RTT;
    }
    if (!xmit(i, t.sndNxt, len, fl, gso)) {
      if (t.rtxAt == Infinity) t.rtxAt = now + rtoEff(t); // out of buffers: try again later
      break;
    }
    if (!rtx && len > 0 && (t.flags & (TF_RTT | TF_TS_OK)) == 0) {
      t.flags |= TF_RTT;
      t.rttSeq = t.sndNxt + len;
      t.rttTime = now;
    }
    t.sndNxt += len + (fin ? 1 : 0);
    if (len > 0 && len % segMax != 0) t.smlEnd = t.sndNxt; // ends with a sub-MSS segment
    if (len > 0) t.lastSend = now;
    if (seqGt(t.sndNxt, t.sndMax)) t.sndMax = t.sndNxt;
    if (t.rtxAt == Infinity) t.rtxAt = now + rtoEff(t);
    t.persistAt = Infinity;
    sent = true;
    if (fin) break;
  }
  if (!sent && (t.flags & TF_ACK_NOW) != 0) sendAck(i);
  t.flags &= ~TF_ACK_NOW;
  // zero window with data waiting and nothing in flight: persist
  if (canData && t.sndWnd == 0 && seqLt(t.sndNxt, t.sndEnd) && t.sndNxt == t.sndUna && t.rtxAt == Infinity &&
      t.persistAt == Infinity) {
    t.persistAt = now + rtoEff(t);
  }
}

// ---------------------------------------------------------------- congestion control

function ccInit(t: Tcb): void {
  t.cwnd = min<u32>(10 * t.mss, max<u32>(2 * t.mss, 14600));
  t.ssthresh = 0x7fffffff;
  t.wMax = 0;
  t.epoch = -1;
}

const CUBIC_C: f64 = 0.4;
const CUBIC_BETA: f64 = 0.7;

function ccOnAck(t: Tcb, acked: u32): void {
  const mss = <f64>t.mss;
  if (t.cwnd < t.ssthresh) {
    t.cwnd += min<u32>(acked, 2 * t.mss); // slow start, RFC 3465 with L = 2
    return;
  }
  if ((t.flags & TF_CUBIC) == 0) {
    // NewReno congestion avoidance: about one MSS per RTT
    t.cwnd += max<u32>(1, <u32>((<u64>t.mss * acked) / max<u32>(t.cwnd, 1)));
    return;
  }
  // CUBIC (RFC 9438), windows in segments, time in seconds
  const cw = <f64>t.cwnd / mss;
  if (t.epoch < 0) {
    t.epoch = now;
    if (t.wMax < cw) {
      t.cubK = 0;
      t.wMax = cw;
    } else t.cubK = Math.cbrt((t.wMax - cw) / CUBIC_C);
    t.wEst = cw;
  }
  const rtt = t.srtt > 0 ? t.srtt : 100;
  const tt = (now - t.epoch + rtt) / 1000;
  const d = tt - t.cubK;
  const target = CUBIC_C * d * d * d + t.wMax;
  // Reno-friendly estimate (RFC 9438 4.3)
  const alpha = 3 * (1 - CUBIC_BETA) / (1 + CUBIC_BETA);
  t.wEst += alpha * (<f64>acked / mss) / cw;
  // Reno-friendly region: cwnd follows W_est; else grow toward W_cubic(t + RTT), at most 1.5x per RTT
  if (t.wEst > cw && t.wEst > target) {
    t.cwnd = <u32>(t.wEst * mss);
    return;
  }
  if (target > cw) t.cwnd += <u32>(min((target - cw) / cw, 0.5) * <f64>acked);
}

function ccOnLoss(t: Tcb, timeout: bool): void {
  const flight = t.sndMax - t.sndUna;
  if ((t.flags & TF_CUBIC) != 0) {
    const cw = <f64>t.cwnd / <f64>t.mss;
    t.wMax = cw < t.wMax ? cw * (1 + CUBIC_BETA) / 2 : cw; // fast convergence
    t.ssthresh = max<u32>(<u32>(<f64>t.cwnd * CUBIC_BETA), 2 * t.mss);
    t.cubK = Math.cbrt(t.wMax * (1 - CUBIC_BETA) / CUBIC_C);
    t.epoch = -1;
  } else {
    t.ssthresh = max<u32>(flight >>> 1, 2 * t.mss);
  }
  if (timeout) t.cwnd = t.mss;
}

function rttSample(t: Tcb, r: f64): void {
  if (r < 0 || r > 600000) return;
  if (t.srtt == 0) {
    t.srtt = max(r, 0.5);
    t.rttvar = r / 2;
  } else {
    t.rttvar = 0.75 * t.rttvar + 0.25 * Math.abs(t.srtt - r);
    t.srtt = 0.875 * t.srtt + 0.125 * r;
  }
  t.rto = min(max(minRto, t.srtt + max(1.0, 4 * t.rttvar)), MAX_RTO);
  t.backoff = 0; // Karn: a valid sample ends the backoff
}

// ---------------------------------------------------------------- input

let sSeq: u32 = 0;
let sAck: u32 = 0;
let sFl: u32 = 0;
let sWnd: u32 = 0;
let sLen: u32 = 0;
let sSport: u32 = 0;
let sDport: u32 = 0;

function rstReply(): void {
  if ((sFl & TH_RST) != 0) return;
  if ((sFl & TH_ACK) != 0) rawSeg(sDport, sSport, rxSrc, sAck, 0, TH_RST, 0);
  else {
    const sl = sLen + ((sFl & TH_SYN) != 0 ? 1 : 0) + ((sFl & TH_FIN) != 0 ? 1 : 0);
    rawSeg(sDport, sSport, rxSrc, 0, sSeq + sl, TH_RST | TH_ACK, 0);
  }
}

export function tcpInput(): void {
  count(C_TCP_IN);
  if (rxBcast) {
    count(C_TCP_BAD_SEG);
    return;
  }
  if (rxL4Len < TCP_HLEN || rxL4Avail0 < TCP_HLEN) {
    count(C_TCP_BAD_HDR);
    return;
  }
  const th = bufAddr(pb(0)) + po(0);
  const doff = (<u32>load<u8>(th + 12) >> 4) << 2;
  if (doff < TCP_HLEN || doff > rxL4Avail0 || doff > rxL4Len) {
    count(C_TCP_BAD_HDR);
    return;
  }
  if (!rxL4CsumValid(PROTO_TCP)) {
    count(C_TCP_BAD_CSUM);
    return;
  }
  sSport = ld16(th);
  sDport = ld16(th + 2);
  sSeq = ld32(th + 4);
  sAck = ld32(th + 8);
  sFl = <u32>load<u8>(th + 13) & 0x3f;
  sWnd = ld16(th + 14);
  sLen = rxL4Len - doff;
  if (sSport == 0 || sDport == 0 || (sFl & (TH_SYN | TH_FIN)) == (TH_SYN | TH_FIN) ||
      (sFl & (TH_SYN | TH_RST)) == (TH_SYN | TH_RST)) {
    count(C_TCP_BAD_SEG);
    return;
  }
  parseOptions(th + TCP_HLEN, doff - TCP_HLEN);
  setP(0, pb(0), po(0) + doff, pl(0) - doff);
  const i = lookup(rxSrc, sSport, sDport);
  if (i != NIL && tcb(i).state == ST_TIME_WAIT && (sFl & (TH_SYN | TH_ACK | TH_RST)) == TH_SYN &&
      seqGt(sSeq, tcb(i).rcvNxt) && (!oTs || (tcb(i).flags & TF_TS_OK) == 0 || seqGt(oTsVal, tcb(i).tsRecent))) {
    // a new incarnation (RFC 9293 3.6.1 / RFC 6191): its SYN is above the old sequence space
    tcbFree(i);
    noConn();
    return;
  }
  if (i == NIL || tcb(i).lip != rxDst) noConn();
  else process(i);
}

const cookieMss: StaticArray<u16> = [536, 1024, 1200, 1360, 1400, 1440, 1452, 1460];

function cookieHash(rip: u32, rport: u32, lport: u32, irs: u32, slot: u32): u32 {
  return <u32>sip24(k0 ^ <u64>slot, k1, (<u64>rip << 32) | ourIp, (<u64>irs << 32) | (rport << 16) | lport) & 0xffffff;
}

function noConn(): void {
  if ((sFl & TH_RST) != 0) return;
  const L = findListener(sDport);
  if (L < 0 || rxDst != ourIp) {
    count(C_TCP_NO_CONN);
    rstReply();
    return;
  }
  if ((sFl & (TH_SYN | TH_ACK)) == TH_SYN) passiveOpen(<u32>L);
  else if ((sFl & (TH_SYN | TH_ACK)) == TH_ACK) cookieCheck(<u32>L);
  else {
    count(C_TCP_NO_CONN);
    rstReply();
  }
}

function applySynOptions(t: Tcb): void {
  let mss = oMss != 0 ? oMss : 536;
  if (mss > ourMss()) mss = ourMss();
  if (mss < 64) mss = 64;
  if (oWs >= 0 && (t.flags & TF_NOWS) == 0) {
    t.flags |= TF_WS_OK;
    t.sndWs = <u32>oWs;
    t.rcvWs = rcvWsFor(t.rcvBuf);
  } else {
    t.sndWs = 0;
    t.rcvWs = 0;
    if (t.rcvBuf > 65535) t.rcvBuf = 65535;
  }
  if (oSackOk && (t.flags & TF_NOSACK) == 0) t.flags |= TF_SACK_OK;
  if (oTs && (t.flags & TF_NOTS) == 0) {
    t.flags |= TF_TS_OK;
    t.tsRecent = oTsVal;
    mss -= 12;
  }
  t.mss = mss;
  ccInit(t);
}

function passiveOpen(L: u32): void {
  const lp = lst + (<usize>L << 4);
  if (load<u32>(lp + 8) >= load<u32>(lp + 4) || synUsed >= synLimit) {
    // SYN queue full: answer with a SYN cookie, keep no state
    count(C_TCP_SYNQ_OVERFLOW);
    const slot = (nowMs / 64000) & 31;
    let want = oMss != 0 ? oMss : 536;
    if (want > ourMss()) want = ourMss();
    let mi: u32 = 0;
    for (let k: u32 = 0; k < 8; k++) if (<u32>cookieMss[k] <= want) mi = k;
    const c = (slot << 27) | (mi << 24) | cookieHash(rxSrc, sSport, sDport, sSeq, slot);
    rawSeg(sDport, sSport, rxSrc, c, sSeq + 1, TH_SYN | TH_ACK, <u32>cookieMss[mi]);
    return;
  }
  const i = tcbAlloc(rxSrc, sSport, sDport);
  if (i == NIL) return; // counted; the peer's SYN retransmission may find room
  const t = tcb(i);
  t.flags |= TF_PASSIVE | TF_SYNQ;
  synUsed++;
  store<u32>(lp + 8, load<u32>(lp + 8) + 1);
  t.listener = L;
  t.tag = load<u32>(lp + 12);
  t.state = ST_SYN_RCVD;
  t.irs = sSeq;
  t.rcvNxt = sSeq + 1;
  t.rcvAdv = t.rcvNxt;
  applySynOptions(t);
  t.iss = isnFor(ourIp, sDport, rxSrc, sSport);
  t.sndUna = t.iss;
  t.sndNxt = t.iss + 1;
  t.sndMax = t.iss + 1;
  t.sndEnd = t.iss + 1;
  t.recover = t.iss;
  t.smlEnd = t.iss;
  t.sndWnd = sWnd;
  t.maxSndWnd = sWnd;
  t.sndWl1 = sSeq;
  t.sndWl2 = t.iss;
  t.flags |= TF_RTT;
  t.rttSeq = t.iss + 1;
  t.rttTime = now;
  xmit(i, t.iss, 0, TH_SYN | TH_ACK);
  t.rtxAt = now + rtoEff(t);
}

function cookieCheck(L: u32): void {
  const c = sAck - 1;
  const slot = c >>> 27;
  const cur = (nowMs / 64000) & 31;
  const irs = sSeq - 1;
  if (((cur - slot) & 31) > 1 || (c & 0xffffff) != cookieHash(rxSrc, sSport, sDport, irs, slot)) {
    count(C_TCP_COOKIE_BAD);
    count(C_TCP_NO_CONN);
    rstReply();
    return;
  }
  const i = tcbAlloc(rxSrc, sSport, sDport);
  if (i == NIL) return;
  count(C_TCP_COOKIE_OK);
  const t = tcb(i);
  t.flags |= TF_PASSIVE;
  t.flags &= ~(TF_TS_OK | TF_WS_OK | TF_SACK_OK);
  t.listener = L;
  t.tag = load<u32>(lst + (<usize>L << 4) + 12);
  t.state = ST_ESTABLISHED;
  t.irs = irs;
  t.rcvNxt = sSeq;
  if (t.rcvBuf > 65535) t.rcvBuf = 65535;
  t.rcvAdv = sSeq + t.rcvBuf; // the cookie SYN-ACK advertised 65535
  t.mss = min<u32>(<u32>cookieMss[(c >>> 24) & 7], ourMss());
  ccInit(t);
  t.iss = c;
  t.sndUna = sAck;
  t.sndNxt = sAck;
  t.sndMax = sAck;
  t.sndEnd = sAck;
  t.recover = c;
  t.smlEnd = c;
  t.sndWnd = sWnd;
  t.maxSndWnd = sWnd;
  t.sndWl1 = sSeq;
  t.sndWl2 = sAck;
  if (t.kaIdle > 0) t.kaAt = now + t.kaIdle;
  emit(EV_ACCEPTED, connId(i), t.rip, t.rport, t.lport, L, false);
  process(i);
}

function synSentInput(i: u32): void {
  const t = tcb(i);
  const fl = sFl;
  if ((fl & TH_ACK) != 0 && (seqLe(sAck, t.iss) || seqGt(sAck, t.sndMax))) {
    if ((fl & TH_RST) == 0) rawSeg(t.lport, t.rport, t.rip, sAck, 0, TH_RST, 0);
    return;
  }
  if ((fl & TH_RST) != 0) {
    if ((fl & TH_ACK) != 0) {
      count(C_TCP_RST_IN);
      finish(i, EV_RESET, R_REFUSED);
    }
    return;
  }
  if ((fl & TH_SYN) == 0) return;
  t.irs = sSeq;
  t.rcvNxt = sSeq + 1;
  t.rcvAdv = t.rcvNxt;
  applySynOptions(t);
  t.sndWnd = sWnd; // never scaled in a SYN (RFC 7323 2.2)
  t.maxSndWnd = sWnd;
  t.sndWl1 = sSeq;
  t.sndWl2 = sAck;
  if ((fl & TH_ACK) != 0) {
    t.sndUna = sAck;
    if (seqLt(t.sndNxt, t.sndUna)) t.sndNxt = t.sndUna;
    if ((t.flags & TF_TS_OK) != 0 && oTs && oTsEcr != 0) rttSample(t, <f64>(nowMs + t.tsOff - oTsEcr));
    else if ((t.flags & TF_RTT) != 0 && t.backoff == 0) rttSample(t, now - t.rttTime);
    t.flags &= ~TF_RTT;
    t.backoff = 0;
    t.retries = 0;
    t.rtxAt = Infinity;
    t.state = ST_ESTABLISHED;
    if (t.kaIdle > 0) t.kaAt = now + t.kaIdle;
    emit(EV_CONNECTED, connId(i), t.tag, t.rport, t.lport, 0, false);
    t.flags |= TF_ACK_NOW | TF_PEND;
  } else {
    // simultaneous open
    t.state = ST_SYN_RCVD;
    xmit(i, t.iss, 0, TH_SYN | TH_ACK);
    t.rtxAt = now + rtoEff(t);
  }
}

/** FIN_WAIT_2 gives up after this long without a segment from the peer (Linux: 60 s). */
@inline function fw2Timeout(): f64 {
  return max(2 * msl, 60000);
}

function enterTimeWait(i: u32): void {
  const t = tcb(i);
  t.state = ST_TIME_WAIT;
  t.twAt = now + 2 * msl;
  t.rtxAt = Infinity;
  t.persistAt = Infinity;
  t.kaAt = Infinity;
  finish(i, EV_CLOSED, 0);
}

function doFin(i: u32): void {
  const t = tcb(i);
  t.rcvNxt++;
  t.flags &= ~TF_FIN_PENDING;
  t.flags |= TF_ACK_NOW | TF_PEND;
  if ((t.flags & TF_PEER_FIN) == 0) {
    t.flags |= TF_PEER_FIN;
    if ((t.flags & TF_APP_DONE) == 0) emit(EV_PEER_CLOSED, connId(i), t.tag, 0, 0, 0, false);
  }
  const st = t.state;
  if (st == ST_SYN_RCVD || st == ST_ESTABLISHED) t.state = ST_CLOSE_WAIT;
  else if (st == ST_FIN_WAIT_1) {
    if ((t.flags & TF_FIN_QUEUED) != 0 && t.sndUna == t.sndEnd + 1) enterTimeWait(i);
    else t.state = ST_CLOSING;
  } else if (st == ST_FIN_WAIT_2) enterTimeWait(i);
  else if (st == ST_TIME_WAIT) t.twAt = now + 2 * msl;
}

/** Delivers [b+off, len) at rcvNxt to the app (one event; the app gets one reference). */
function deliver(i: u32, b: u32, off: u32, len: u32, takeRef: bool): bool {
  const t = tcb(i);
  // never lose an event: if APP-OUT is full the bytes stay unacknowledged (the peer resends)
  if (!emit(EV_DATA, connId(i), b, off, len, 0, false)) return false;
  if (takeRef) bufRef(b);
  bufSetOwner(b, OWNER_APP);
  t.rcvNxt += len;
  t.unread += len;
  return true;
}

/** Moves in-order data from the reassembly list to the app. */
function pull(i: u32): void {
  const t = tcb(i);
  while (t.rHead != NIL && seqLe(nSeq(t.rHead), t.rcvNxt)) {
    const n = t.rHead;
    const s = nSeq(n);
    const e = s + nLen(n);
    if (seqGt(e, t.rcvNxt)) {
      if (aoutSpace() < 4) {
        t.flags |= TF_PEND;
        return;
      }
      const d = t.rcvNxt - s;
      if (!deliver(i, nBuf(n), nOff(n) + d, e - t.rcvNxt, false)) {
        t.flags |= TF_PEND;
        return;
      }
    } else bufUnref(nBuf(n));
    t.rHead = nNext(n);
    t.rCount--;
    nodeRelease(n);
    t.flags |= TF_ACK_NOW;
  }
  if ((t.flags & TF_FIN_PENDING) != 0 && t.rfinSeq == t.rcvNxt) doFin(i);
}

/** Holds [s, e) of a received piece (b, off at sequence pseq) by reference, around existing nodes. */
function reasmInsert(i: u32, b: u32, off: u32, pseq: u32, s: u32, e: u32): void {
  const t = tcb(i);
  // each held segment pins a 2 KiB buffer: at most one node per KiB of window (at least 8)
  const cap = max<u32>(8, t.rcvBuf >>> 10);
  let prev: u32 = NIL;
  let n = t.rHead;
  while (seqLt(s, e)) {
    if (n != NIL && seqLe(nSeq(n) + nLen(n), s)) {
      prev = n;
      n = nNext(n);
      continue;
    }
    // the part of [s, e) before node n (or all of it)
    let pe = e;
    if (n != NIL && seqLt(nSeq(n), pe)) pe = nSeq(n);
    if (seqLt(s, pe)) {
      const m = t.rCount < cap ? nodeAlloc() : NIL;
      if (m == NIL) {
        count(C_TCP_NODES_EXHAUSTED);
        return;
      }
      let l = pe - s;
      if (l > 0xffff) l = 0xffff;
      nSet(m, b, off + (s - pseq), l, s);
      bufRef(b);
      bufSetOwner(b, OWNER_STACK);
      nSetNext(m, n);
      if (prev == NIL) t.rHead = m;
      else nSetNext(prev, m);
      t.rCount++;
      prev = m;
      s = pe;
    }
    if (n == NIL) break;
    // skip over node n
    const ne = nSeq(n) + nLen(n);
    if (seqLt(s, ne)) s = ne;
    prev = n;
    n = nNext(n);
  }
}

function process(i: u32): void {
  const t = tcb(i);
  if (t.state == ST_SYN_SENT) {
    synSentInput(i);
    return;
  }
  const fl = sFl;
  const segLen = sLen + ((fl & TH_SYN) != 0 ? 1 : 0) + ((fl & TH_FIN) != 0 ? 1 : 0);
  // PAWS (RFC 7323 5.3)
  if ((t.flags & TF_TS_OK) != 0 && oTs && (fl & TH_RST) == 0 && seqLt(oTsVal, t.tsRecent)) {
    count(C_TCP_PAWS_DROP);
    t.flags |= TF_ACK_NOW | TF_PEND;
    return;
  }
  // acceptability (RFC 9293 3.10.7.4)
  const wnd = seqGt(t.rcvAdv, t.rcvNxt) ? t.rcvAdv - t.rcvNxt : 0;
  let ok: bool;
  if (segLen == 0) ok = wnd == 0 ? sSeq == t.rcvNxt : seqGe(sSeq, t.rcvNxt) && seqLt(sSeq, t.rcvNxt + wnd);
  else if (wnd == 0) ok = sSeq == t.rcvNxt; // ACK/RST/FIN processing continues; the data is trimmed away
  else {
    const last = sSeq + segLen - 1;
    ok = (seqGe(sSeq, t.rcvNxt) && seqLt(sSeq, t.rcvNxt + wnd)) || (seqGe(last, t.rcvNxt) && seqLt(last, t.rcvNxt + wnd));
  }
  if (!ok) {
    if ((fl & TH_RST) == 0) {
      count(C_TCP_DUP);
      if (t.state == ST_TIME_WAIT && (fl & TH_FIN) != 0) t.twAt = now + 2 * msl;
      t.flags |= TF_ACK_NOW | TF_PEND;
    }
    return;
  }
  if (t.state == ST_FIN_WAIT_2) t.twAt = now + fw2Timeout(); // half-closed, the peer still talks
  if (t.kaIdle > 0 && (t.state == ST_ESTABLISHED || t.state == ST_CLOSE_WAIT)) {
    t.kaAt = now + t.kaIdle;
    t.kaProbes = 0;
  }
  // RST (RFC 5961 3.2): exact match resets, in-window gets a challenge ACK
  if ((fl & TH_RST) != 0) {
    if (sSeq == t.rcvNxt) {
      count(C_TCP_RST_IN);
      if (t.state == ST_TIME_WAIT) {
        tcbFree(i);
        return;
      }
      const passiveHalf = t.state == ST_SYN_RCVD && (t.flags & TF_PASSIVE) != 0;
      finish(i, passiveHalf ? EV_CLOSED : EV_RESET, R_RESET);
    } else challengeAck(i);
    return;
  }
  // SYN in a synchronized state (RFC 5961 4.2): challenge ACK
  if ((fl & TH_SYN) != 0) {
    challengeAck(i);
    return;
  }
  if ((fl & TH_ACK) == 0) return;
  // TS.Recent update (RFC 7323 4.3)
  // only from a segment covering Last.ACK.sent (= RCV.NXT here), so that a reordered older
  // segment is not then rejected by PAWS
  if ((t.flags & TF_TS_OK) != 0 && oTs && seqLe(sSeq, t.rcvNxt) && seqGe(sSeq + segLen, t.rcvNxt) &&
      seqGe(oTsVal, t.tsRecent)) t.tsRecent = oTsVal;
  // ACK
  if (t.state == ST_SYN_RCVD) {
    if (seqGt(sAck, t.sndUna) && seqLe(sAck, t.sndMax)) {
      if ((t.flags & TF_SYNQ) != 0) synDone(t);
      t.state = (t.flags & TF_FIN_QUEUED) != 0 ? ST_FIN_WAIT_1 : ST_ESTABLISHED;
      t.sndWnd = sWnd << t.sndWs;
      t.maxSndWnd = t.sndWnd;
      t.sndWl1 = sSeq;
      t.sndWl2 = sAck;
      if (t.kaIdle > 0) t.kaAt = now + t.kaIdle;
      if ((t.flags & TF_PASSIVE) != 0) emit(EV_ACCEPTED, connId(i), t.rip, t.rport, t.lport, t.listener, false);
      else emit(EV_CONNECTED, connId(i), t.tag, t.rport, t.lport, 0, false);
    } else {
      rawSeg(t.lport, t.rport, t.rip, sAck, 0, TH_RST, 0);
      return;
    }
  }
  if (seqGt(sAck, t.sndMax)) {
    t.flags |= TF_ACK_NOW | TF_PEND;
    return;
  }
  if (seqLt(sAck, t.sndUna - t.maxSndWnd)) {
    // RFC 5961 5.2: too old to be acceptable
    challengeAck(i);
    return;
  }
  const nw = sWnd << t.sndWs;
  if ((t.flags & TF_SACK_OK) != 0 && oSackN > 0) sbUpdate(t);
  if (seqGt(sAck, t.sndUna)) newAck(i);
  else if (sAck == t.sndUna && sLen == 0 && (fl & TH_FIN) == 0 && nw == t.sndWnd && nw != 0 && t.sndMax != t.sndUna) {
    dupAck(i); // RFC 5681 duplicate ACK (a zero window is flow control, not loss)
  }
  if (t.state == ST_CLOSED) return;
  // RFC 6675 loss detection: more than (DupThresh - 1) * SMSS bytes SACKed above SND.UNA
  if ((t.flags & (TF_SACK_OK | TF_RECOVERY)) == TF_SACK_OK && t.sbN > 0 && sbSacked(t) > 2 * t.mss &&
      seqGe(t.sndUna, t.recover)) enterRecovery(i);
  if (seqLt(t.sndWl1, sSeq) || (t.sndWl1 == sSeq && seqLe(t.sndWl2, sAck))) {
    if (nw > t.sndWnd) t.flags |= TF_PEND;
    // the window reopens: a refused zero-window probe byte goes out again with the rest
    if (t.sndWnd == 0 && nw > 0 && seqGt(t.sndNxt, t.sndUna)) t.sndNxt = t.sndUna;
    t.sndWnd = nw;
    t.sndWl1 = sSeq;
    t.sndWl2 = sAck;
    if (nw > t.maxSndWnd) t.maxSndWnd = nw;
    if (nw > 0) t.persistAt = Infinity;
    else t.retries = 0; // the peer answers while its window is closed: it is alive
  }
  const finAcked = (t.flags & TF_FIN_QUEUED) != 0 && t.sndUna == t.sndEnd + 1;
  if (finAcked) {
    if (t.state == ST_FIN_WAIT_1) {
      t.state = ST_FIN_WAIT_2;
      t.twAt = now + fw2Timeout(); // FIN_WAIT_2 idle timeout, refreshed by every segment
    } else if (t.state == ST_CLOSING) {
      enterTimeWait(i);
    } else if (t.state == ST_LAST_ACK) {
      t.state = ST_CLOSED;
      finish(i, EV_CLOSED, 0);
      return;
    }
  }
  // URG: urgent data is delivered in line; the pointer is ignored (RFC 6093 advice).
  // segment text
  const st = t.state;
  let finOk = (fl & TH_FIN) != 0;
  if (sLen > 0) {
    if (st == ST_ESTABLISHED || st == ST_FIN_WAIT_1 || st == ST_FIN_WAIT_2) {
      let s = sSeq;
      let e = sSeq + sLen;
      if (seqLt(s, t.rcvNxt)) s = t.rcvNxt;
      const right = t.rcvNxt + wnd;
      if (seqGt(e, right)) {
        e = right;
        finOk = false;
        t.flags |= TF_ACK_NOW; // tell the peer at once where the window ends
      }
      if (seqLt(s, e)) {
        if (s == t.rcvNxt) {
          let pseq = sSeq;
          for (let k: u32 = 0; k < rxNp; k++) {
            const l = pl(k);
            const a = seqGt(s, pseq) ? s : pseq;
            const z = seqLt(pseq + l, e) ? pseq + l : e;
            if (seqLt(a, z) && !deliver(i, pb(k), po(k) + (a - pseq), z - a, true)) break;
            pseq += l;
          }
          const hadOoo = t.rHead != NIL;
          if (hadOoo) pull(i);
          t.ackPending += max<u32>(1, (e - s) / t.mss); // a GRO/GSO superframe counts as its segments
          if (t.ackPending >= 2 || hadOoo || t.unread >= t.rcvBuf) t.flags |= TF_ACK_NOW;
          else if (t.ackAt == Infinity) t.ackAt = now + delack;
        } else {
          count(C_TCP_OOO);
          let pseq = sSeq;
          for (let k: u32 = 0; k < rxNp; k++) {
            const l = pl(k);
            const a = seqGt(s, pseq) ? s : pseq;
            const z = seqLt(pseq + l, e) ? pseq + l : e;
            if (seqLt(a, z)) reasmInsert(i, pb(k), po(k), pseq, a, z);
            pseq += l;
          }
          t.lastSackSeq = s;
          t.flags |= TF_ACK_NOW;
        }
      } else {
        count(C_TCP_DUP);
        t.flags |= TF_ACK_NOW;
      }
    } else finOk = false;
  }
  if (finOk && st != ST_CLOSED) {
    const fs = sSeq + sLen;
    if (fs == t.rcvNxt) doFin(i);
    else if (seqGt(fs, t.rcvNxt)) {
      t.flags |= TF_FIN_PENDING;
      t.rfinSeq = fs;
      t.flags |= TF_ACK_NOW;
    }
  }
  t.flags |= TF_PEND;
}


// ---------------------------------------------------------------- SACK scoreboard (RFC 2018, RFC 6675)

const SB_MAX: u32 = 4;
@inline function sbL(t: Tcb, k: u32): u32 {
  return load<u32>(changetype<usize>(t) + offsetof<Tcb>("sb0") + (<usize>k << 3));
}
@inline function sbR(t: Tcb, k: u32): u32 {
  return load<u32>(changetype<usize>(t) + offsetof<Tcb>("sb0") + (<usize>k << 3) + 4);
}
@inline function sbSet(t: Tcb, k: u32, l: u32, r: u32): void {
  const p = changetype<usize>(t) + offsetof<Tcb>("sb0") + (<usize>k << 3);
  store<u32>(p, l);
  store<u32>(p + 4, r);
}

/** Drops scoreboard blocks at or below SND.UNA. */
function sbPrune(t: Tcb): void {
  let w: u32 = 0;
  for (let k: u32 = 0; k < t.sbN; k++) {
    let l = sbL(t, k);
    const r = sbR(t, k);
    if (seqLe(r, t.sndUna)) continue;
    if (seqLt(l, t.sndUna)) l = t.sndUna;
    sbSet(t, w++, l, r);
  }
  t.sbN = w;
}

/** Merges the received SACK blocks into the scoreboard (invalid blocks are ignored). */
function sbUpdate(t: Tcb): void {
  for (let j: u32 = 0; j < oSackN; j++) {
    let l = load<u32>(oSack + (j << 3));
    let r = load<u32>(oSack + (j << 3) + 4);
    if (!seqLt(l, r) || seqLe(r, t.sndUna) || seqGt(r, t.sndMax) || r - l > 0x40000000) continue; // D-SACK or bogus
    if (seqLt(l, t.sndUna)) l = t.sndUna;
    // insert in order, merging overlaps
    let n = t.sbN;
    let k: u32 = 0;
    while (k < n && seqLt(sbR(t, k), l)) k++;
    // blocks k.. that touch [l, r) merge into it
    let m = k;
    while (m < n && seqLe(sbL(t, m), r)) {
      if (seqLt(sbL(t, m), l)) l = sbL(t, m);
      if (seqGt(sbR(t, m), r)) r = sbR(t, m);
      m++;
    }
    const removed = m - k;
    if (removed == 0) {
      if (n == SB_MAX) {
        // full: forget the highest block (the peer reports it again)
        if (k == n) continue;
        n--;
      }
      for (let q = n; q > k; q--) sbSet(t, q, sbL(t, q - 1), sbR(t, q - 1));
      sbSet(t, k, l, r);
      t.sbN = n + 1;
    } else {
      sbSet(t, k, l, r);
      for (let q = m; q < n; q++) sbSet(t, q - removed + 1, sbL(t, q), sbR(t, q));
      t.sbN = n - removed + 1;
    }
  }
}

/** SACKed bytes below `seq`. */
function sbSackedBelow(t: Tcb, seq: u32): u32 {
  let s: u32 = 0;
  for (let k: u32 = 0; k < t.sbN; k++) {
    const l = sbL(t, k);
    if (!seqLt(l, seq)) break;
    const r = seqLt(sbR(t, k), seq) ? sbR(t, k) : seq;
    s += r - l;
  }
  return s;
}

function sbSacked(t: Tcb): u32 {
  let s: u32 = 0;
  for (let k: u32 = 0; k < t.sbN; k++) s += sbR(t, k) - sbL(t, k);
  return s;
}

/** RFC 6675 SetPipe, with IsLost(seq) = "some SACKed byte lies above seq". */
function sbPipe(t: Tcb): u32 {
  const out = t.sndMax - t.sndUna;
  if (t.sbN == 0) return t.sndNxt - t.sndUna;
  const sacked = sbSacked(t);
  // holes below the highest SACKed byte are lost; those above HighRxt are not yet retransmitted
  let lostNotRtx: u32 = 0;
  let from = seqGt(t.highRxt, t.sndUna) ? t.highRxt : t.sndUna;
  for (let k: u32 = 0; k < t.sbN; k++) {
    const l = sbL(t, k);
    if (seqGt(l, from)) lostNotRtx += l - from;
    if (seqGt(sbR(t, k), from)) from = sbR(t, k);
  }
  const p = out - sacked - lostNotRtx;
  return <u32>max<i32>(<i32>p, 0);
}

/** RFC 6675 NextSeg (rule 1): the first lost, not yet retransmitted byte, and the hole's end. */
let holeEnd: u32 = 0;
function sbNextHole(t: Tcb): u32 {
  let from = seqGt(t.highRxt, t.sndUna) ? t.highRxt : t.sndUna;
  for (let k: u32 = 0; k < t.sbN; k++) {
    const l = sbL(t, k);
    if (seqLt(from, l)) {
      holeEnd = l;
      return from;
    }
    if (seqGt(sbR(t, k), from)) from = sbR(t, k);
  }
  return NIL;
}

/** Loss recovery step: retransmit holes while the congestion window allows (RFC 6675 5). */
function sackRecover(i: u32): void {
  const t = tcb(i);
  let pipe = sbPipe(t);
  for (let guard = 0; guard < 64; guard++) {
    if (pipe + t.mss > t.cwnd) break;
    const s = sbNextHole(t);
    if (s == NIL) break;
    let len = holeEnd - s;
    const cap = t.mss - sackBytes(t);
    if (len > cap) len = cap;
    if (seqGt(s + len, t.sndEnd)) len = t.sndEnd - s;
    if (len > 0) len = fitPieces(t, s, len, MAXP - 1);
    if (len == 0) break;
    count(C_TCP_SACK_RTX);
    count(C_TCP_RETRANSMITS);
    t.flags &= ~TF_RTT;
    if (!xmit(i, s, len, TH_ACK)) break;
    t.highRxt = s + len;
    pipe += len;
  }
  t.flags |= TF_PEND; // new data may follow if the window still has room
}

function enterRecovery(i: u32): void {
  const t = tcb(i);
  count(C_TCP_FAST_RTX);
  ccOnLoss(t, false);
  t.recover = t.sndMax;
  t.highRxt = t.sndUna;
  t.flags |= TF_RECOVERY;
  if ((t.flags & TF_SACK_OK) != 0) {
    t.cwnd = t.ssthresh;
    // RFC 6675 4.3: the first presumed-lost segment goes out at once, then NextSeg under cwnd - pipe
    const h0 = sbNextHole(t);
    if (h0 != NIL) {
      let len = min<u32>(holeEnd - h0, t.mss - sackBytes(t));
      if (seqGt(h0 + len, t.sndEnd)) len = t.sndEnd - h0;
      if (len > 0) len = fitPieces(t, h0, len, MAXP - 1);
      if (len > 0) {
        count(C_TCP_SACK_RTX);
        count(C_TCP_RETRANSMITS);
        t.flags &= ~TF_RTT;
        if (xmit(i, h0, len, TH_ACK)) t.highRxt = h0 + len;
      }
    } else retransmitHead(i);
    sackRecover(i);
  } else {
    t.cwnd = t.ssthresh + 3 * t.mss;
    retransmitHead(i);
  }
  t.rtxAt = now + rtoEff(t);
}

function newAck(i: u32): void {
  const t = tcb(i);
  const ack = sAck;
  const acked = ack - t.sndUna;
  if ((t.flags & TF_TS_OK) != 0 && oTs && oTsEcr != 0) rttSample(t, <f64>(nowMs + t.tsOff - oTsEcr));
  else if ((t.flags & TF_RTT) != 0 && seqGe(ack, t.rttSeq)) {
    t.flags &= ~TF_RTT;
    rttSample(t, now - t.rttTime);
  }
  // release acknowledged send chunks (the NIC may still hold its own references)
  let n = t.qHead;
  while (n != NIL && seqLe(nSeq(n) + nLen(n), ack)) {
    const nx = nNext(n);
    if (n == t.qCur) t.qCur = NIL;
    bufUnref(nBuf(n));
    nodeRelease(n);
    n = nx;
  }
  t.qHead = n;
  if (n == NIL) t.qTail = NIL;
  t.sndUna = ack;
  if (seqLt(t.sndNxt, ack)) t.sndNxt = ack;
  t.retries = 0;
  sbPrune(t);
  if ((t.flags & TF_RECOVERY) != 0) {
    if (seqGe(ack, t.recover)) {
      t.cwnd = t.ssthresh;
      t.flags &= ~TF_RECOVERY;
      t.dupAcks = 0;
    } else if ((t.flags & TF_SACK_OK) != 0) {
      sackRecover(i); // RFC 6675: the scoreboard, not partial ACKs, drives retransmission
    } else {
      // NewReno partial ACK (RFC 6582): retransmit the next hole, deflate
      retransmitHead(i);
      t.cwnd = t.cwnd > acked ? t.cwnd - acked + t.mss : t.mss;
    }
  } else {
    t.dupAcks = 0;
    // RFC 7661 in spirit: grow cwnd only while it is used (flight before this ACK >= cwnd / 2)
    if ((t.sndMax - t.sndUna) + acked >= (t.cwnd >>> 1)) ccOnAck(t, acked);
    if (t.cwnd > 0x3fffffff) t.cwnd = 0x3fffffff; // never wraps, however long the transfer
  }
  t.rtxAt = t.sndUna == t.sndMax ? Infinity : now + rtoEff(t);
  t.flags |= TF_PEND;
  if ((t.flags & TF_WANT_WRITABLE) != 0 && t.sndEnd - t.sndUna <= (t.sndBufMax >>> 1)) {
    t.flags &= ~TF_WANT_WRITABLE;
    emit(EV_WRITABLE, connId(i), t.tag, 0, 0, 0, false);
  }
}

function retransmitHead(i: u32): void {
  const t = tcb(i);
  const remain: u32 = seqLt(t.sndUna, t.sndEnd) ? t.sndEnd - t.sndUna : 0;
  let len = min<u32>(remain, t.mss - sackBytes(t));
  if (len > 0) len = fitPieces(t, t.sndUna, len, MAXP - 1); // a frame holds at most MAXP pieces
  let fl = TH_ACK;
  if ((t.flags & TF_FIN_QUEUED) != 0 && t.sndUna + len == t.sndEnd && seqGt(t.sndMax, t.sndEnd)) fl |= TH_FIN;
  if (len == 0 && (fl & TH_FIN) == 0) return;
  count(C_TCP_RETRANSMITS);
  t.flags &= ~TF_RTT;
  xmit(i, t.sndUna, len, fl);
}

function dupAck(i: u32): void {
  const t = tcb(i);
  t.dupAcks++;
  if ((t.flags & TF_RECOVERY) != 0) {
    if ((t.flags & TF_SACK_OK) != 0) sackRecover(i);
    else {
      t.cwnd += t.mss; // NewReno inflation
      t.flags |= TF_PEND;
    }
    return;
  }
  if (t.dupAcks == 3 && seqGe(t.sndUna, t.recover)) enterRecovery(i);
}

// ---------------------------------------------------------------- timers

function onRto(i: u32): void {
  const t = tcb(i);
  t.rtxAt = Infinity;
  if (t.state != ST_SYN_SENT && t.state != ST_SYN_RCVD && t.sndUna == t.sndMax) {
    t.flags |= TF_PEND; // nothing in flight: a send that failed for lack of buffers is retried
    return;
  }
  count(C_TCP_RTO);
  t.retries++;
  if (t.state == ST_SYN_SENT || t.state == ST_SYN_RCVD) {
    if (t.retries > (t.state == ST_SYN_SENT ? MAX_SYN_RETRIES : MAX_SYNACK_RETRIES)) {
      count(C_TCP_SYN_RTX_DROP);
      finish(i, EV_RESET, R_TIMEOUT);
      return;
    }
    t.backoff++;
    t.flags &= ~TF_RTT;
    count(C_TCP_RETRANSMITS);
    sendAck(i); // SYN or SYN-ACK again
    t.rtxAt = now + rtoEff(t);
    return;
  }
  if (t.state == ST_TIME_WAIT || t.state == ST_CLOSED) return;
  if (t.retries > MAX_RETRIES) {
    rawSeg(t.lport, t.rport, t.rip, t.sndNxt, 0, TH_RST, 0);
    t.state = ST_CLOSED;
    finish(i, EV_RESET, R_TIMEOUT);
    return;
  }
  if (t.sndWnd == 0) {
    // the probe went unanswered or was refused: probe again (onPersist backs off), no congestion signal
    t.sndNxt = t.sndUna;
    t.persistAt = now;
    return;
  }
  ccOnLoss(t, true);
  t.highRxt = t.sndUna;
  t.flags &= ~(TF_RECOVERY | TF_RTT);
  t.dupAcks = 0;
  t.recover = t.sndMax;
  t.backoff++;
  t.sndNxt = t.sndUna; // go back N
  t.flags |= TF_PEND;
}

function onPersist(i: u32): void {
  const t = tcb(i);
  t.persistAt = Infinity;
  if (t.sndWnd != 0 || !seqLt(t.sndNxt, t.sndEnd) || t.sndNxt != t.sndUna) return;
  count(C_TCP_ZWP);
  // one byte beyond the window; the RTO then repeats it with backoff
  if (!xmit(i, t.sndNxt, 1, TH_ACK)) return;
  t.sndNxt += 1;
  if (seqGt(t.sndNxt, t.sndMax)) t.sndMax = t.sndNxt;
  t.backoff++;
  t.rtxAt = now + rtoEff(t);
}

function onKeepalive(i: u32): void {
  const t = tcb(i);
  if (t.state != ST_ESTABLISHED && t.state != ST_CLOSE_WAIT) {
    t.kaAt = Infinity;
    return;
  }
  if (t.kaProbes >= KA_PROBES) {
    count(C_TCP_KEEPALIVE_DROP);
    t.state = ST_CLOSED;
    finish(i, EV_RESET, R_KEEPALIVE);
    return;
  }
  t.kaProbes++;
  xmit(i, t.sndUna - 1, 0, TH_ACK);
  t.kaAt = now + min(t.kaIdle, KA_INTVL);
}

/** Runs every due timer; returns the earliest remaining deadline (Infinity if none). */
export function tcpTimers(): f64 {
  let next: f64 = Infinity;
  for (let i: u32 = 0; i < hiwater; i++) {
    const t = tcb(i);
    if ((t.flags & TF_USED) == 0) continue;
    if (t.twAt <= now) {
      if (t.state == ST_TIME_WAIT) {
        tcbFree(i);
        continue;
      }
      if (t.state == ST_FIN_WAIT_2) {
        t.state = ST_CLOSED;
        finish(i, EV_CLOSED, 0);
        continue;
      }
      t.twAt = Infinity;
    }
    if (t.rtxAt <= now) {
      onRto(i);
      if ((t.flags & TF_USED) == 0) continue;
    }
    if (t.persistAt <= now) onPersist(i);
    if (t.kaAt <= now) {
      onKeepalive(i);
      if ((t.flags & TF_USED) == 0) continue;
    }
    if (t.ackAt <= now) {
      t.ackAt = Infinity;
      t.flags |= TF_ACK_NOW | TF_PEND;
    }
    next = min(next, min(min(t.rtxAt, t.ackAt), min(min(t.twAt, t.kaAt), t.persistAt)));
  }
  return next;
}

/** Output and deferred delivery for every connection with pending work. */
export function tcpFlush(): f64 {
  let next: f64 = Infinity;
  for (let i: u32 = 0; i < hiwater; i++) {
    const t = tcb(i);
    if ((t.flags & (TF_USED | TF_PEND)) != (TF_USED | TF_PEND)) continue;
    t.flags &= ~TF_PEND;
    if (t.rHead != NIL) pull(i);
    tcpOutput(i);
    next = min(next, min(min(t.rtxAt, t.ackAt), t.persistAt));
    if ((t.flags & TF_PEND) != 0) next = now; // stalled on a full TX ring: again at once
  }
  return next;
}

// ---------------------------------------------------------------- app commands

export function tcpListen(port: u32, backlog: u32, tag: u32): void {
  if (port == 0 || port > 0xffff) {
    emit(EV_ERROR, tag, 0, port, 0, R_BADARG, false);
    return;
  }
  if (findListener(port) >= 0) {
    emit(EV_ERROR, tag, 0, port, 0, R_INUSE, false);
    return;
  }
  for (let i: u32 = 0; i < nLst; i++) {
    const p = lst + (<usize>i << 4);
    if (load<u32>(p) == 0) {
      store<u32>(p, port | 0x10000);
      store<u32>(p + 4, backlog == 0 ? 128 : backlog);
      store<u32>(p + 8, 0);
      store<u32>(p + 12, tag);
      emit(EV_LISTENING, i, tag, port, 0, 0, false);
      return;
    }
  }
  emit(EV_ERROR, tag, 0, port, 0, R_NOCONN, false);
}

export function tcpUnlisten(port: u32): void {
  const L = findListener(port);
  if (L < 0) return;
  store<u32>(lst + (<usize>L << 4), 0);
  // half-open connections of this listener go away silently
  for (let i: u32 = 0; i < hiwater; i++) {
    const t = tcb(i);
    if ((t.flags & TF_USED) != 0 && t.state == ST_SYN_RCVD && t.listener == <u32>L && (t.flags & TF_PASSIVE) != 0) {
      tcbFree(i);
    }
  }
}

export function tcpConnect(rip: u32, rport: u32, lport: u32, tag: u32): void {
  if (rip == 0 || rip == 0xffffffff || rport == 0 || rport > 0xffff || lport > 0xffff || ourIp == 0) {
    emit(EV_ERROR, tag, 0, rport, 0, R_BADARG, false);
    return;
  }
  if (lport == 0) {
    for (let k: u32 = 0; k < 16384; k++) {
      const p = 49152 + (ephemeral++ & 0x3fff);
      if (lookup(rip, rport, p) == NIL && findListener(p) < 0) {
        lport = p;
        break;
      }
    }
    if (lport == 0) {
      emit(EV_ERROR, tag, 0, rport, 0, R_INUSE, false);
      return;
    }
  } else if (lookup(rip, rport, lport) != NIL) {
    emit(EV_ERROR, tag, 0, rport, 0, R_INUSE, false);
    return;
  }
  const i = tcbAlloc(rip, rport, lport);
  if (i == NIL) {
    emit(EV_ERROR, tag, 0, rport, 0, R_NOCONN, false);
    return;
  }
  const t = tcb(i);
  t.tag = tag;
  t.state = ST_SYN_SENT;
  t.iss = isnFor(ourIp, lport, rip, rport);
  t.sndUna = t.iss;
  t.sndNxt = t.iss + 1;
  t.sndMax = t.iss + 1;
  t.sndEnd = t.iss + 1;
  t.recover = t.iss;
  t.smlEnd = t.iss;
  if ((t.flags & TF_NOWS) == 0) t.rcvWs = rcvWsFor(t.rcvBuf);
  t.flags |= TF_RTT;
  t.rttSeq = t.iss + 1;
  t.rttTime = now;
  xmit(i, t.iss, 0, TH_SYN);
  t.rtxAt = now + rtoEff(t);
}

export function tcpSend(id: u32, b: u32, off: u32, len: u32): void {
  const i = fromId(id);
  const owner = bufOwner(b);
  let ok = i != NIL && len > 0 && nameCheck(b, off, len) == 0 && (owner == <i32>OWNER_APP || owner == <i32>OWNER_KEPT);
  if (ok) {
    const t = tcb(i);
    const st = t.state;
    // once a send was refused, later ones are refused too until WRITABLE: the stream keeps its order
    ok = (st == ST_SYN_SENT || st == ST_SYN_RCVD || st == ST_ESTABLISHED || st == ST_CLOSE_WAIT) &&
      (t.flags & (TF_FIN_QUEUED | TF_WANT_WRITABLE)) == 0;
    if (ok && t.sndEnd - t.sndUna + len > t.sndBufMax) {
      t.flags |= TF_WANT_WRITABLE;
      ok = false;
    }
  }
  const n = ok ? nodeAlloc() : NIL;
  if (ok && n == NIL) {
    count(C_TCP_NODES_EXHAUSTED);
    tcb(i).flags |= TF_WANT_WRITABLE;
    ok = false;
  }
  if (!ok) {
    emit(EV_SEND_REFUSED, id, b, off, len, 0, false);
    return;
  }
  const t = tcb(i);
  if (owner == <i32>OWNER_APP) bufSetOwner(b, OWNER_STACK);
  else bufRef(b);
  nSet(n, b, off, len, t.sndEnd);
  if (t.qTail == NIL) t.qHead = n;
  else nSetNext(t.qTail, n);
  t.qTail = n;
  t.sndEnd += len;
  t.flags |= TF_PEND;
}

export function tcpClose(id: u32): void {
  const i = fromId(id);
  if (i == NIL) return;
  const t = tcb(i);
  const st = t.state;
  if (st == ST_SYN_SENT) {
    t.state = ST_CLOSED;
    finish(i, EV_CLOSED, 0);
  } else if (st == ST_SYN_RCVD) {
    t.flags |= TF_FIN_QUEUED;
  } else if (st == ST_ESTABLISHED) {
    t.state = ST_FIN_WAIT_1;
    t.flags |= TF_FIN_QUEUED | TF_PEND;
  } else if (st == ST_CLOSE_WAIT) {
    t.state = ST_LAST_ACK;
    t.flags |= TF_FIN_QUEUED | TF_PEND;
  }
}

export function tcpAbort(id: u32): void {
  const i = fromId(id);
  if (i == NIL) return;
  const t = tcb(i);
  if (t.state != ST_SYN_SENT && t.state != ST_CLOSED) rawSeg(t.lport, t.rport, t.rip, t.sndNxt, 0, TH_RST, 0);
  t.state = ST_CLOSED;
  finish(i, EV_CLOSED, 1);
}

export function tcpRecvd(id: u32, n: u32): void {
  const i = fromId(id);
  if (i == NIL) return;
  const t = tcb(i);
  const before = seqGt(t.rcvAdv, t.rcvNxt) ? t.rcvAdv - t.rcvNxt : 0;
  t.unread = n >= t.unread ? 0 : t.unread - n;
  const free = t.rcvBuf - t.unread;
  if (free > before && free - before >= min<u32>(t.rcvBuf >>> 1, 2 * t.mss)) t.flags |= TF_ACK_NOW | TF_PEND;
}

export const OPT_NODELAY: u32 = 1;
export const OPT_CC: u32 = 2; // 0 NewReno, 1 CUBIC
export const OPT_KEEPALIVE: u32 = 3; // idle ms, 0 = off
export const OPT_SNDBUF: u32 = 4;

export function tcpSetopt(id: u32, opt: u32, val: u32): void {
  const i = fromId(id);
  if (i == NIL) return;
  const t = tcb(i);
  if (opt == OPT_NODELAY) {
    if (val != 0) t.flags |= TF_NODELAY;
    else t.flags &= ~TF_NODELAY;
    t.flags |= TF_PEND;
  } else if (opt == OPT_CC) {
    if (val != 0) t.flags |= TF_CUBIC;
    else t.flags &= ~TF_CUBIC;
    t.epoch = -1;
  } else if (opt == OPT_KEEPALIVE) {
    t.kaIdle = <f64>val;
    t.kaAt = val != 0 && (t.state == ST_ESTABLISHED || t.state == ST_CLOSE_WAIT) ? now + t.kaIdle : Infinity;
    t.kaProbes = 0;
  } else if (opt == OPT_SNDBUF) {
    if (val > 0) t.sndBufMax = val;
  }
}

/**
 * ICMP destination unreachable quoting one of our segments (`rip` the quoted destination,
 * ports as we sent them, `seq` its sequence number). Protocol/port unreachable (codes 2, 3)
 * aborts a connection attempt in SYN_SENT when the quoted sequence number is the one of our
 * SYN (RFC 1122 4.2.3.9 hard errors; RFC 5927 validation). Everything else is a soft error:
 * counted and ignored.
 */
export function tcpIcmpUnreach(code: u32, rip: u32, lport: u32, rport: u32, seq: u32): void {
  const i = lookup(rip, rport, lport);
  if (i == NIL) return;
  const t = tcb(i);
  if (t.state != ST_SYN_SENT || (code != 2 && code != 3) || seq != t.iss) return;
  count(C_TCP_ICMP_ABORT);
  t.state = ST_CLOSED;
  finish(i, EV_RESET, R_REFUSED);
}

/** Debug/test accessor: state of connection id (or -1). */
export function tcpState(id: u32): i32 {
  const i = id & 0xffff;
  if (i >= maxConns) return -1;
  const t = tcb(i);
  if ((t.flags & TF_USED) == 0 || t.gen != (id >>> 16)) return -1;
  return <i32>t.state;
}
// tcpInfo fields (mirrored by INFO in host/stack-abi.ts)
export const INFO_STATE: u32 = 0;
export const INFO_CWND: u32 = 1;
export const INFO_SSTHRESH: u32 = 2;
export const INFO_RTO: u32 = 3;
export const INFO_SRTT: u32 = 4;
export const INFO_SND_WND: u32 = 5;
export const INFO_MSS: u32 = 6;
export const INFO_FLAGS: u32 = 7;
export const INFO_REASM_SEGS: u32 = 8;
export const INFO_UNREAD: u32 = 9;
export const INFO_SND_QUEUED: u32 = 10;
export const INFO_BACKOFF: u32 = 11;
export const INFO_SND_WS: u32 = 12;
export const INFO_RCV_WS: u32 = 13;
export const INFO_IN_FLIGHT: u32 = 14;
export const INFO_SND_OUT: u32 = 15;
export const INFO_RTX_AT: u32 = 16;
export const INFO_PERSIST_AT: u32 = 17;
export const INFO_DUP_ACKS: u32 = 18;
export const INFO_RETRIES: u32 = 19;
export const INFO_RCV_NXT: u32 = 20;
export const INFO_SND_UNA: u32 = 21;
export const INFO_SACK_BLOCKS: u32 = 22;
export const INFO_SACKED: u32 = 23;

/** Test and diagnostics accessor: one TCB field (INFO_*), -1 for a bad id or field. */
export function tcpInfo(id: u32, field: u32): f64 {
  const i = id & 0xffff;
  if (i >= maxConns) return -1;
  const t = tcb(i);
  if (field == INFO_STATE) return <f64>t.state;
  if (field == INFO_CWND) return <f64>t.cwnd;
  if (field == INFO_SSTHRESH) return <f64>t.ssthresh;
  if (field == INFO_RTO) return t.rto;
  if (field == INFO_SRTT) return t.srtt;
  if (field == INFO_SND_WND) return <f64>t.sndWnd;
  if (field == INFO_MSS) return <f64>t.mss;
  if (field == INFO_FLAGS) return <f64>t.flags;
  if (field == INFO_REASM_SEGS) return <f64>t.rCount;
  if (field == INFO_UNREAD) return <f64>t.unread;
  if (field == INFO_SND_QUEUED) return <f64>(t.sndEnd - t.sndUna);
  if (field == INFO_BACKOFF) return <f64>t.backoff;
  if (field == INFO_SND_WS) return <f64>t.sndWs;
  if (field == INFO_RCV_WS) return <f64>t.rcvWs;
  if (field == INFO_IN_FLIGHT) return <f64>(t.sndNxt - t.sndUna);
  if (field == INFO_SND_OUT) return <f64>(t.sndMax - t.sndUna);
  if (field == INFO_RTX_AT) return t.rtxAt;
  if (field == INFO_PERSIST_AT) return t.persistAt;
  if (field == INFO_DUP_ACKS) return <f64>t.dupAcks;
  if (field == INFO_RETRIES) return <f64>t.retries;
  if (field == INFO_RCV_NXT) return <f64>t.rcvNxt;
  if (field == INFO_SND_UNA) return <f64>t.sndUna;
  if (field == INFO_SACK_BLOCKS) return <f64>t.sbN;
  if (field == INFO_SACKED) return <f64>sbSacked(t);
  return -1;
}
/** Count of TCBs in use (including TIME_WAIT). */
export function tcpConnCount(): u32 {
  let n: u32 = 0;
  for (let i: u32 = 0; i < hiwater; i++) if ((tcb(i).flags & TF_USED) != 0) n++;
  return n;
}
export function tcpNodesUsed(): u32 {
  return nodesUsedGet();
}
import { nodesUsed } from "./tcb";
function nodesUsedGet(): u32 {
  return nodesUsed;
}

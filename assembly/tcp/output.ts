// Output: what to send and how it is built. tcpOutput decides (windows, Nagle, sender SWS
// avoidance, idle restart, TSO superframes, FIN); xmit builds one segment from the send queue by
// reference (headers in the payload buffer's headroom, or in a header buffer chained before it);
// rawSeg answers without a connection (RSTs, SYN-cookie SYN-ACKs); the receive window we
// advertise is computed here.

import { bufAddr, bufAlloc, bufOwner, bufRef, bufRefCount, bufUnref } from "../pool";
import { OWNER_NIC, OWNER_STACK } from "../layout";
import { csumAddAt, csumFinish, csumFold16, csumRaw } from "../net/csum";
import {
  cfgGet, CFG_TSO, CFG_TSO_PIECES, MAXP, C_TCP_TSO_FRAMES, C_TCP_TSO_SEGS, txSetMeta, TXF_NEEDS_CSUM,
  TXF_GSO_SHIFT, TXF_GSO_TCPV4, TXF_GSO_TCPV6, count, countN, C_TCP_CHALLENGE_ACK, C_TCP_CHALLENGE_LIMITED, C_BUF_EXHAUSTED,
  C_TCP_OUT, C_TCP_RETRANSMITS, C_TX_STALL, now, nowMs, ourMtu, txAdd, txReset, txDiscard, tN, tb, to,
  tl as tlen, txRing,
} from "../net/g";
import { ringSpace } from "../ring";
import { ETH_HLEN } from "../net/eth";
import { FAM_IP4 } from "../net/addr";
import { pseudoSum, netWriteHdr, netOutput, netHdrLen, PROTO_TCP } from "../net/ip";
import {
  Tcb, NIL, tLip, tRip, nBuf, nOff, nLen, nSeq, nNext, seqLt, seqLe, seqGt, seqGe, ST_CLOSED, ST_SYN_SENT, ST_SYN_RCVD,
  ST_ESTABLISHED, ST_FIN_WAIT_1, ST_CLOSE_WAIT, ST_CLOSING, ST_LAST_ACK, TF_NODELAY, TF_NOSACK, TF_NOTS, TF_NOWS,
  TF_TS_OK, TF_WS_OK, TF_SACK_OK, TF_FIN_QUEUED, TF_ACK_NOW, TF_ACK_HELD, TF_RECOVERY, TF_PASSIVE, TF_RTT, TF_PEND, TF_SWS_OVERRIDE,
} from "./tcb";
import { tcb, connId } from "./table";
import {
  TCP_HLEN, TCP_CHECKSUM, TH_SYN, TH_RST, TH_PSH, TH_ACK, TH_FIN, MAX_WSCALE, OPTW_MSS, OPTW_WSCALE, OPTW_SACK_PERM,
  OPTW_TIMESTAMP, OPTW_SACK_BASE, TCPOLEN_SACK_BLOCK, thWrite, thChecksum, optMss, optWscale, optSackPerm,
  optTimestamp, optSackHeader, optSackBlock, optNopBlock,
} from "./wire";
import { rtoEff } from "./cc";
import { sbSkip, sbPipe, sbSackedBelow } from "./sack";
import { CHALLENGE_BURST, TCP_TTL, initialWindow } from "./config";

/** The MSS we announce to a peer of family `fam`: what fits our MTU. */
export function ourMss(fam: u32): u32 {
  return ourMtu - netHdrLen(fam) - TCP_HLEN;
}

/**
 * Sets t's segment size from what the peer announced (peerMss) and what its path carries
 * (pmtu), less the timestamp option every segment then carries.
 */
export function mssUpdate(t: Tcb): void {
  let m = min<u32>(t.peerMss, t.pmtu - netHdrLen(t.fam) - TCP_HLEN);
  if ((t.flags & TF_TS_OK) != 0) m -= OPTW_TIMESTAMP;
  t.mss = m;
}

/** The window shift that lets a receive buffer of `buf` bytes be advertised. */
export function rcvWsFor(buf: u32): u32 {
  let s: u32 = 0;
  while (s < MAX_WSCALE && (buf >>> s) > 65535) s++;
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

// ---------------------------------------------------------------- options we send

/**
 * Options of our SYN or SYN-ACK, as TF_*_OK bits: each one the connection allows and, when
 * answering a SYN, the peer offered (MSS always goes).
 */
function synOptions(t: Tcb): u32 {
  const answering = (t.flags & TF_PASSIVE) != 0;
  let o: u32 = 0;
  if ((t.flags & TF_NOWS) == 0 && (!answering || (t.flags & TF_WS_OK) != 0)) o |= TF_WS_OK;
  if ((t.flags & TF_NOSACK) == 0 && (!answering || (t.flags & TF_SACK_OK) != 0)) o |= TF_SACK_OK;
  if ((t.flags & TF_NOTS) == 0 && (!answering || (t.flags & TF_TS_OK) != 0)) o |= TF_TS_OK;
  return o;
}

/** SACK blocks a data segment or ACK carries: the reassembly list's, as many as fit beside a timestamp. */
function sackBlocksOut(t: Tcb): u32 {
  if ((t.flags & TF_SACK_OK) == 0 || t.rHead == NIL) return 0;
  return min<u32>(t.rCount, (t.flags & TF_TS_OK) != 0 ? 3 : 4);
}

/** Bytes of a SACK option of `n` blocks, NOPs included (0 for none). */
@inline function sackOptLen(n: u32): u32 {
  return n > 0 ? OPTW_SACK_BASE + n * TCPOLEN_SACK_BLOCK : 0;
}

/** Option bytes of a data segment or ACK (timestamps and SACK). */
function dataOptLen(t: Tcb): u32 {
  return ((t.flags & TF_TS_OK) != 0 ? OPTW_TIMESTAMP : 0) + sackOptLen(sackBlocksOut(t));
}

/** Writes one SACK block covering reassembly node r and the nodes adjacent to it; returns the end. */
function sackBlockAt(o: usize, r: u32): usize {
  const s = nSeq(r);
  let e = s + nLen(r);
  let x = nNext(r);
  while (x != NIL && nSeq(x) == e) {
    e += nLen(x);
    x = nNext(x);
  }
  return optSackBlock(o, s, e);
}

/** Writes `n` SACK blocks at o: the one holding the most recent segment first (RFC 2018), then the others in order. */
function writeSack(t: Tcb, o: usize, n: u32): usize {
  o = optSackHeader(o, n);
  let r = t.rHead;
  let first: u32 = NIL;
  while (r != NIL) {
    if (seqLe(nSeq(r), t.lastSackSeq) && seqLt(t.lastSackSeq, nSeq(r) + nLen(r))) first = r;
    r = nNext(r);
  }
  let k: u32 = 0;
  if (first != NIL) {
    o = sackBlockAt(o, first);
    k++;
  }
  r = t.rHead;
  while (r != NIL && k < n) {
    if (r != first) {
      o = sackBlockAt(o, r);
      k++;
    }
    r = nNext(r);
  }
  while (k < n) {
    o = optNopBlock(o); // fewer distinct blocks than reserved
    k++;
  }
  return o;
}

// ---------------------------------------------------------------- building segments

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
 * Adds send-queue pieces from node n (starting `noff` bytes in) to the frame, `left` bytes in
 * all, each with its own reference. False (the frame discarded) if the frame ran out of slots.
 */
function addPieces(n: u32, noff: u32, left: u32): bool {
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
  return true;
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
export function xmit(i: u32, seq: u32, len: u32, fl: u32, gso: u32 = 0): bool {
  const t = tcb(i);
  const syn = (fl & TH_SYN) != 0;
  const rst = (fl & TH_RST) != 0;
  // options: a SYN's, or timestamps and SACK
  const sopt = syn ? synOptions(t) : 0;
  const ts = syn ? (sopt & TF_TS_OK) != 0 : (t.flags & TF_TS_OK) != 0 && !rst;
  const nsack = syn || rst ? 0 : sackBlocksOut(t);
  let olen: u32 = ts ? OPTW_TIMESTAMP : 0;
  if (syn) {
    olen += OPTW_MSS;
    if ((sopt & TF_WS_OK) != 0) olen += OPTW_WSCALE;
    if ((sopt & TF_SACK_OK) != 0) olen += OPTW_SACK_PERM;
  }
  olen += sackOptLen(nsack);
  const NL = netHdrLen(t.fam);
  const HL = ETH_HLEN + NL + TCP_HLEN + olen;
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
    if (!addPieces(nNext(n), 0, len - l0)) return false;
  } else {
    const hb = bufAlloc(OWNER_NIC);
    if (hb < 0) {
      count(C_BUF_EXHAUSTED);
      return false;
    }
    txAdd(<u32>hb, 0, HL);
    h = bufAddr(<u32>hb);
    if (!addPieces(n, noff, len)) return false;
  }
  // TCP header
  const th = h + ETH_HLEN + NL;
  let wnd: u32 = 0;
  if (!rst) {
    wnd = rcvWindow(t);
    wnd = syn ? min<u32>(wnd, 65535) : min<u32>(wnd >>> t.rcvWs, 65535);
  }
  thWrite(th, t.lport, t.rport, seq, (fl & TH_ACK) != 0 ? t.rcvNxt : 0, TCP_HLEN + olen, fl, wnd);
  let o = th + TCP_HLEN;
  if (syn) {
    o = optMss(o, ourMss(t.fam));
    if ((sopt & TF_WS_OK) != 0) o = optWscale(o, t.rcvWs);
    if ((sopt & TF_SACK_OK) != 0) o = optSackPerm(o);
  }
  if (ts) o = optTimestamp(o, nowMs + t.tsOff, t.tsRecent);
  if (nsack > 0) o = writeSack(t, o, nsack);
  const tl = TCP_HLEN + olen + len;
  if ((fl & TH_ACK) != 0) {
    t.ackPending = 0;
    t.ackAt = Infinity;
    t.flags &= ~(TF_ACK_NOW | TF_ACK_HELD);
  }
  if (gso != 0) {
    // the NIC completes the checksum of every segment it cuts: leave the pseudo-header sum
    store<u16>(thChecksum(th), <u16>csumFold16(pseudoSum(t.fam, tLip(t), tRip(t), PROTO_TCP, tl)));
    netWriteHdr(t.fam, th - NL, tLip(t), tRip(t), PROTO_TCP, tl, TCP_TTL);
    count(C_TCP_OUT);
    count(C_TCP_TSO_FRAMES);
    countN(C_TCP_TSO_SEGS, (len + gso - 1) / gso);
    const cs: u32 = ETH_HLEN + NL;
    const gt = t.fam == FAM_IP4 ? TXF_GSO_TCPV4 : TXF_GSO_TCPV6;
    txSetMeta(TXF_NEEDS_CSUM | (gt << TXF_GSO_SHIFT) | (cs << 8) | (TCP_CHECKSUM << 16));
    netOutput(t.fam, tRip(t), gso | (HL << 16));
    return true;
  }
  // checksum: pseudo header + TCP header + payload pieces
  let acc = pseudoSum(t.fam, tLip(t), tRip(t), PROTO_TCP, tl);
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
  store<u16>(thChecksum(th), csumFinish(acc));
  netWriteHdr(t.fam, th - NL, tLip(t), tRip(t), PROTO_TCP, tl, TCP_TTL);
  count(C_TCP_OUT);
  netOutput(t.fam, tRip(t), connId(i));
  return true;
}

/**
 * Sends a segment without a connection block (RST replies, SYN cookie SYN-ACKs with an MSS
 * option) from src to dst (16 bytes each, family `fam`).
 */
export function rawSeg(fam: u32, src: usize, dst: usize, lport: u32, rport: u32, seq: u32, ack: u32, fl: u32, mss: u32): void {
  const b = bufAlloc(OWNER_NIC);
  if (b < 0) {
    count(C_BUF_EXHAUSTED);
    return;
  }
  const NL = netHdrLen(fam);
  const olen: u32 = mss != 0 ? OPTW_MSS : 0;
  const th = bufAddr(<u32>b) + ETH_HLEN + NL;
  thWrite(th, lport, rport, seq, ack, TCP_HLEN + olen, fl, (fl & TH_RST) != 0 ? 0 : 65535);
  if (mss != 0) optMss(th + TCP_HLEN, mss);
  const tl = TCP_HLEN + olen;
  const acc = pseudoSum(fam, src, dst, PROTO_TCP, tl) + <u64>csumFold16(csumRaw(th, tl));
  store<u16>(thChecksum(th), csumFinish(acc));
  netWriteHdr(fam, th - NL, src, dst, PROTO_TCP, tl, TCP_TTL);
  txReset();
  txAdd(<u32>b, 0, ETH_HLEN + NL + tl);
  count(C_TCP_OUT);
  netOutput(fam, dst, 0);
}

/** Sends an RST for connection block t at SND.NXT. */
export function sendRst(t: Tcb): void {
  rawSeg(t.fam, tLip(t), tRip(t), t.lport, t.rport, t.sndNxt, 0, TH_RST, 0);
}

// ---------------------------------------------------------------- send logic

/**
 * Sends the segment that acknowledges: a SYN or SYN-ACK again during the handshake, else an ACK.
 * A bare ACK carries SND.MAX, the first octet never sent, as BSD's tcp_output does: after a
 * retransmission timeout SND.NXT goes back to SND.UNA, and an ACK at that old sequence number is
 * outside the window of a peer that received more than we know (our ACKs of its data were lost),
 * so the peer would drop it unread. With data in flight both ways (a partition, then repair),
 * each side would then drop the other's ACKs and answer them with its own, for ever. But SND.MAX
 * can lie beyond the peer's window: after a zero-window probe it is one octet past a window of
 * zero, where the peer takes nothing but SEQ = RCV.NXT, and would drop every ACK we send while
 * its own data waits for them. Then the ACK carries the window's right edge, SND.UNA + SND.WND
 * (as Linux's tcp_acceptable_seq), which the peer accepts.
 */
export function sendAck(i: u32): void {
  const t = tcb(i);
  if (t.state == ST_SYN_RCVD) xmit(i, t.iss, 0, TH_SYN | TH_ACK);
  else if (t.state == ST_SYN_SENT) xmit(i, t.iss, 0, TH_SYN);
  else {
    const edge = t.sndUna + t.sndWnd;
    xmit(i, seqLe(t.sndMax, edge) ? t.sndMax : edge, 0, TH_ACK);
  }
}

let chTokens: f64 = CHALLENGE_BURST;
let chLast: f64 = -1;
/** A challenge ACK (RFC 5961), rate limited for all connections together. */
export function challengeAck(i: u32): void {
  if (chLast >= 0) chTokens = min(CHALLENGE_BURST, chTokens + (now - chLast));
  chLast = now;
  if (chTokens < 1) {
    count(C_TCP_CHALLENGE_LIMITED);
    return;
  }
  chTokens -= 1;
  count(C_TCP_CHALLENGE_ACK);
  sendAck(i);
}

/** Payload bytes per segment: the MSS less the SACK option an ACK now carries. */
export function segMaxOf(t: Tcb): u32 {
  return t.mss - sackOptLen(sackBlocksOut(t));
}

/**
 * Payload bytes from `seq` (at most `want`) that fit in `pieces` TX slots after the header: a
 * frame holds at most MAXP pieces, so a run of tiny sends goes as several frames (TSO, and
 * every plain segment: a segment needing more pieces was never sent and stalled the connection).
 */
export function fitPieces(t: Tcb, seq: u32, want: u32, pieces: u32): u32 {
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

/**
 * The length of one retransmission at `seq`: at most `want` bytes and one segment, within the
 * queued data, in as many pieces as a frame holds (0: nothing to send).
 */
export function rtxLen(t: Tcb, seq: u32, want: u32): u32 {
  let len = min<u32>(want, segMaxOf(t));
  if (seqGt(seq + len, t.sndEnd)) len = seqLt(seq, t.sndEnd) ? t.sndEnd - seq : 0;
  return len > 0 ? fitPieces(t, seq, len, MAXP - 1) : 0;
}

/** Sends whatever the windows, Nagle and the state allow; then the ACK if one is owed. */
export function tcpOutput(i: u32): void {
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
  let swsHeld = false;
  // RFC 5681 4.1: after an idle period longer than the RTO, restart from the initial window
  if (canData && t.sndNxt == t.sndUna && seqLt(t.sndNxt, t.sndEnd) && t.lastSend > 0 && now - t.lastSend > t.rto) {
    const iw = initialWindow(t.mss);
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
    t.sndNxt = sbSkip(t, t.sndNxt);
    let inflight = t.sndNxt - t.sndUna;
    if (t.sbN > 0) {
      inflight = (t.flags & TF_RECOVERY) != 0 ? sbPipe(t) : inflight - sbSackedBelow(t, t.sndNxt);
    }
    const win = min<u32>(t.sndWnd, t.cwnd);
    const usable: u32 = win > inflight ? win - inflight : 0;
    const remain: u32 = seqLt(t.sndNxt, t.sndEnd) ? t.sndEnd - t.sndNxt : 0;
    const segMax = segMaxOf(t);
    let len = min<u32>(min<u32>(remain, segMax), usable);
    if (len > 0) len = fitPieces(t, t.sndNxt, len, MAXP - 1); // a frame holds at most MAXP pieces
    const finQ = (t.flags & TF_FIN_QUEUED) != 0;
    // sender SWS avoidance (RFC 9293 3.8.6.2.1): a segment the usable window cuts below the MSS,
    // with more data queued, waits until it is at least half the largest window the peer
    // offered; with nothing in flight the persist timer lets it go (onPersist)
    if (len > 0 && len < segMax && len < remain && usable < (t.maxSndWnd >>> 1) &&
        (inflight > 0 || len == usable) && (t.flags & TF_SWS_OVERRIDE) == 0) {
      swsHeld = inflight == 0;
      len = 0;
    }
    // Nagle with Minshall's refinement: hold a small segment only while another small one is unacknowledged
    if (len > 0 && len < segMax && inflight > 0 && (t.flags & TF_NODELAY) == 0 && !(finQ && len == remain) &&
        seqGt(t.smlEnd, t.sndUna)) len = 0;
    const rtx = seqLt(t.sndNxt, t.sndMax);
    // TSO: new data worth more than one full segment goes as one superframe of full segments
    // (plus the end of the queue when Nagle would send it now); retransmissions stay <= MSS
    let gso: u32 = 0;
    const tsoMax = cfgGet(CFG_TSO);
    if (tsoMax != 0 && !rtx && len == segMax && remain > segMax && usable > segMax) {
      const hl = ETH_HLEN + netHdrLen(t.fam) + TCP_HLEN + dataOptLen(t);
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
  t.flags &= ~(TF_ACK_NOW | TF_SWS_OVERRIDE);
  // a zero window, or one SWS avoidance will not fill, with data waiting and nothing in flight: persist
  if (canData && (t.sndWnd == 0 || swsHeld) && seqLt(t.sndNxt, t.sndEnd) && t.sndNxt == t.sndUna && t.rtxAt == Infinity &&
      t.persistAt == Infinity) {
    t.persistAt = now + rtoEff(t);
  }
}

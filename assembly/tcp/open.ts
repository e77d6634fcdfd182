// Opening handshakes (RFC 9293 3.5): a segment that finds no connection (answered with an RST,
// or taken by a listener: a SYN opens a half-open connection, or a stateless SYN cookie when the
// SYN queue is full, and a cookie's ACK opens the connection), the SYN options agreed, and the
// active opener's SYN_SENT state.

import {
  count, C_TCP_NO_CONN, C_TCP_SYNQ_OVERFLOW, C_TCP_COOKIE_OK, C_TCP_COOKIE_BAD, C_TCP_RST_IN, emit, emitAddr, EV_ACCEPTED,
  EV_CONNECTED, EV_RESET, now, nowMs,
} from "../net/g";
import { rxFam, rxSrcA, rxDstA, rxSrc, rxToUs } from "../net/ip";
import {
  Tcb, NIL, tLip, tRip, seqLt, seqLe, seqGt, ST_SYN_SENT, ST_SYN_RCVD, ST_ESTABLISHED, TF_NOWS, TF_NOSACK, TF_NOTS, TF_TS_OK, TF_WS_OK,
  TF_SACK_OK, TF_ACK_NOW, TF_ACK_TURN, TF_PASSIVE, TF_RTT, TF_PEND,
} from "./tcb";
import {
  tcb, connId, listener, findListener, synRoom, synAdd, tcbAlloc, isnFor, finish, k0, k1, R_REFUSED, addrPairKey,
} from "./table";
import { sSport, sDport, sSeq, sAck, sFl, sWnd, oMss, oWs, oSackOk, oTs, oTsVal, oTsEcr, segSpace } from "./segment";
import { TH_SYN, TH_RST, TH_ACK, OPTW_TIMESTAMP } from "./wire";
import { ccInit, rttSample, rtoEff } from "./cc";
import { xmit, rawSeg, ourMss, rcvWsFor, mssUpdate } from "./output";
import { process } from "./input";
import { sip24 } from "./siphash";
import { DEFAULT_MSS, MIN_MSS, COOKIE_SLOT_MS, resetWhenFull } from "./config";

/** Answers the received segment with an RST (RFC 9293 3.10.7.1), unless it is one. */
export function rstReply(): void {
  if ((sFl & TH_RST) != 0) return;
  if ((sFl & TH_ACK) != 0) rawSeg(rxFam, rxDstA, rxSrcA, sDport, sSport, sAck, 0, TH_RST, 0);
  else rawSeg(rxFam, rxDstA, rxSrcA, sDport, sSport, 0, sSeq + segSpace(), TH_RST | TH_ACK, 0);
}

/** A segment for no connection: a listener's SYN or cookie ACK, else an RST. */
export function noConn(): void {
  if ((sFl & TH_RST) != 0) return;
  const L = findListener(sDport);
  if (L < 0 || !rxToUs) {
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

/** Takes the options of the peer's SYN: MSS, window scaling, SACK, timestamps (each if we allow it). */
function applySynOptions(t: Tcb): void {
  let mss = oMss != 0 ? oMss : DEFAULT_MSS;
  if (mss < MIN_MSS) mss = MIN_MSS;
  t.peerMss = mss;
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
  }
  mssUpdate(t);
  ccInit(t);
}

/**
 * Our side of a handshake: the send sequence variables from `iss`, then our SYN (or SYN-ACK,
 * `fl`) out, its round trip timed and its retransmission timer armed.
 */
function sendSyn(i: u32, iss: u32, fl: u32): void {
  const t = tcb(i);
  t.iss = iss;
  t.sndUna = iss;
  t.sndNxt = iss + 1;
  t.sndMax = iss + 1;
  t.sndEnd = iss + 1;
  t.recover = iss;
  t.smlEnd = iss;
  t.flags |= TF_RTT;
  t.rttSeq = iss + 1;
  t.rttTime = now;
  xmit(i, iss, 0, fl);
  t.rtxAt = now + rtoEff(t);
}

/** An active open (CMD_CONNECT) on a fresh block: SYN_SENT and our SYN. */
export function activeOpen(i: u32, tag: u32): void {
  const t = tcb(i);
  t.tag = tag;
  t.state = ST_SYN_SENT;
  if ((t.flags & TF_NOWS) == 0) t.rcvWs = rcvWsFor(t.rcvBuf);
  sendSyn(i, isnFor(tLip(t), t.lport, tRip(t), t.rport), TH_SYN);
}

// ---------------------------------------------------------------- SYN cookies

/** MSS values a cookie can encode (3 bits). */
const cookieMss: StaticArray<u16> = [536, 1024, 1200, 1360, 1400, 1440, 1452, 1460];

/** Cookie layout (the SYN-ACK's ISN): time slot (5 bits) | MSS index (3 bits) | 24-bit MAC over the received segment's addresses and ports. */
function cookieHash(rport: u32, lport: u32, irs: u32, slot: u32): u32 {
  return <u32>sip24(k0 ^ <u64>slot, k1, addrPairKey(rxSrcA, rxDstA), (<u64>irs << 32) | (rport << 16) | lport) & 0xffffff;
}
@inline function cookieSlot(): u32 {
  return (nowMs / COOKIE_SLOT_MS) & 31;
}

/** A SYN for listener L: a half-open connection and its SYN-ACK, or a SYN cookie when the queue is full. */
function passiveOpen(L: u32): void {
  if (!synRoom(L)) {
    // SYN queue full: answer with a SYN cookie, keep no state
    count(C_TCP_SYNQ_OVERFLOW);
    const slot = cookieSlot();
    let want = oMss != 0 ? oMss : DEFAULT_MSS;
    if (want > ourMss(rxFam)) want = ourMss(rxFam);
    let mi: u32 = 0;
    for (let k: u32 = 0; k < 8; k++) if (<u32>cookieMss[k] <= want) mi = k;
    const c = (slot << 27) | (mi << 24) | cookieHash(sSport, sDport, sSeq, slot);
    rawSeg(rxFam, rxDstA, rxSrcA, sDport, sSport, c, sSeq + 1, TH_SYN | TH_ACK, <u32>cookieMss[mi]);
    return;
  }
  const i = tcbAlloc(rxFam, rxSrcA, sSport, rxDstA, sDport);
  if (i == NIL) {
    // the table is full (counted): dropped, the peer's SYN retransmission may find room; or
    // refused at once (CFG_FULL)
    if (resetWhenFull) rstReply();
    return;
  }
  const t = tcb(i);
  t.flags |= TF_PASSIVE;
  synAdd(t, L);
  t.tag = listener(L).tag;
  t.state = ST_SYN_RCVD;
  t.irs = sSeq;
  t.rcvNxt = sSeq + 1;
  t.rcvAdv = t.rcvNxt;
  applySynOptions(t);
  const iss = isnFor(rxDstA, sDport, rxSrcA, sSport);
  t.sndWnd = sWnd;
  t.maxSndWnd = sWnd;
  t.sndWl1 = sSeq;
  t.sndWl2 = iss;
  sendSyn(i, iss, TH_SYN | TH_ACK);
}

/** An ACK for listener L with no connection: opens one if it carries a valid cookie, else an RST. */
function cookieCheck(L: u32): void {
  const c = sAck - 1;
  const slot = c >>> 27;
  const irs = sSeq - 1;
  if (((cookieSlot() - slot) & 31) > 1 || (c & 0xffffff) != cookieHash(sSport, sDport, irs, slot)) {
    count(C_TCP_COOKIE_BAD);
    count(C_TCP_NO_CONN);
    rstReply();
    return;
  }
  const i = tcbAlloc(rxFam, rxSrcA, sSport, rxDstA, sDport);
  if (i == NIL) {
    // the table is full: dropped (the peer's retransmission may find room) or refused
    if (resetWhenFull) rstReply();
    return;
  }
  count(C_TCP_COOKIE_OK);
  const t = tcb(i);
  t.flags |= TF_PASSIVE;
  t.flags &= ~(TF_TS_OK | TF_WS_OK | TF_SACK_OK);
  t.listener = L;
  t.tag = listener(L).tag;
  t.state = ST_ESTABLISHED;
  t.irs = irs;
  t.rcvNxt = sSeq;
  if (t.rcvBuf > 65535) t.rcvBuf = 65535;
  t.rcvAdv = sSeq + t.rcvBuf; // the cookie SYN-ACK advertised 65535
  t.peerMss = <u32>cookieMss[(c >>> 24) & 7];
  mssUpdate(t);
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
  emitAddr(EV_ACCEPTED, connId(i), rxSrc, t.rport, t.lport, L, tRip(t));
  process(i);
}

// ---------------------------------------------------------------- active open

/** A segment for a connection in SYN_SENT (RFC 9293 3.10.7.3). */
export function synSentInput(i: u32): void {
  const t = tcb(i);
  const fl = sFl;
  if ((fl & TH_ACK) != 0 && (seqLe(sAck, t.iss) || seqGt(sAck, t.sndMax))) {
    if ((fl & TH_RST) == 0) rawSeg(t.fam, tLip(t), tRip(t), t.lport, t.rport, sAck, 0, TH_RST, 0);
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
    t.flags |= TF_ACK_TURN | TF_PEND; // the app's first request (or FIN) may carry it
  } else {
    // simultaneous open
    t.state = ST_SYN_RCVD;
    xmit(i, t.iss, 0, TH_SYN | TH_ACK);
    t.rtxAt = now + rtoEff(t);
  }
}

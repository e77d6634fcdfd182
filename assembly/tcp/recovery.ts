// What an acknowledgment does to the sender: a new ACK releases acknowledged send-queue pieces,
// samples the RTT, grows the window and may end recovery; duplicate ACKs and the SACK
// scoreboard start fast retransmit and drive loss recovery (RFC 5681, RFC 6582 NewReno,
// RFC 6675 SACK-based recovery).

import { bufUnref } from "../pool";
import { count, C_TCP_FAST_RTX, C_TCP_RETRANSMITS, C_TCP_SACK_RTX, emit, EV_WRITABLE, now, nowMs } from "../net/g";
import {
  NIL, nodeRelease, nBuf, nLen, nSeq, nNext, seqLt, seqLe, seqGt, seqGe, TF_SACK_OK, TF_TS_OK, TF_FIN_QUEUED,
  TF_RECOVERY, TF_WANT_WRITABLE, TF_RTT, TF_PEND, tRip,
} from "./tcb";
import { netConfirm } from "../net/ip";
import { NEIGH_CONFIRM_MS } from "./config";
import { tcb, connId } from "./table";
import { sAck, oTs, oTsEcr } from "./segment";
import { TH_ACK, TH_FIN } from "./wire";
import { ccOnAck, ccOnLoss, rttSample, rtoEff } from "./cc";
import { sbPrune, sbPipe, sbNextHole, holeEnd } from "./sack";
import { xmit, rtxLen } from "./output";

/** Retransmits `len` bytes at `seq` during recovery; counted as a SACK retransmission. */
function rtxHole(i: u32, seq: u32, len: u32): bool {
  count(C_TCP_SACK_RTX);
  count(C_TCP_RETRANSMITS);
  tcb(i).flags &= ~TF_RTT;
  return xmit(i, seq, len, TH_ACK);
}

/** Loss recovery step: retransmit holes while the congestion window allows (RFC 6675 5). */
function sackRecover(i: u32): void {
  const t = tcb(i);
  let pipe = sbPipe(t);
  for (let guard = 0; guard < 64; guard++) {
    if (pipe + t.mss > t.cwnd) break;
    const s = sbNextHole(t);
    if (s == NIL) break;
    const len = rtxLen(t, s, holeEnd - s);
    if (len == 0) break;
    if (!rtxHole(i, s, len)) break;
    t.highRxt = s + len;
    pipe += len;
  }
  t.flags |= TF_PEND; // new data may follow if the window still has room
}

/** Fast retransmit: enters recovery (RFC 6675 with SACK, else RFC 6582 NewReno). */
export function enterRecovery(i: u32): void {
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
      const len = rtxLen(t, h0, holeEnd - h0);
      if (len > 0 && rtxHole(i, h0, len)) t.highRxt = h0 + len;
    } else retransmitHead(i);
    sackRecover(i);
  } else {
    t.cwnd = t.ssthresh + 3 * t.mss;
    retransmitHead(i);
  }
  t.rtxAt = now + rtoEff(t);
}

/** The received segment acknowledges new data (SEG.ACK > SND.UNA). */
export function newAck(i: u32): void {
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
  if (now - t.confirmAt >= NEIGH_CONFIRM_MS) {
    // forward progress: the next hop is reachable (RFC 4861 7.3.1), no need to ask it again
    t.confirmAt = now;
    netConfirm(t.fam, tRip(t));
  }
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

/** Retransmits the first unacknowledged segment (with the FIN if it ends the queue and was sent). */
function retransmitHead(i: u32): void {
  const t = tcb(i);
  const len = rtxLen(t, t.sndUna, 0xffffffff);
  let fl = TH_ACK;
  if ((t.flags & TF_FIN_QUEUED) != 0 && t.sndUna + len == t.sndEnd && seqGt(t.sndMax, t.sndEnd)) fl |= TH_FIN;
  if (len == 0 && (fl & TH_FIN) == 0) return;
  count(C_TCP_RETRANSMITS);
  t.flags &= ~TF_RTT;
  xmit(i, t.sndUna, len, fl);
}

/** A duplicate ACK (RFC 5681 definition): the third starts fast retransmit. */
export function dupAck(i: u32): void {
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

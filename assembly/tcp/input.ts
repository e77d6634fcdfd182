// Input: a received segment from its first check to its last effect. tcpInput validates the
// header, parses it (segment.ts) and finds the connection; process is the state machine for a
// connection past SYN_SENT (RFC 9293 3.10.7.4: PAWS, acceptability, RST and SYN, the ACK, the
// text, the FIN); the peer's FIN and TIME_WAIT; ICMP errors for our segments. Handshakes are
// open.ts's, what an ACK does to the sender recovery.ts's, where the text goes reasm.ts's.

import { bufAddr } from "../pool";
import {
  count, C_TCP_BAD_CSUM, C_TCP_BAD_HDR, C_TCP_PAWS_DROP, C_TCP_OOO, C_TCP_IN, C_TCP_DUP, C_TCP_BAD_SEG,
  C_TCP_RST_IN, C_TCP_ICMP_ABORT, C_ICMP_PTB, emit, emitAddr, EV_ACCEPTED, EV_CONNECTED, EV_PEER_CLOSED, EV_CLOSED, EV_RESET, now, pb,
  po, pl, setP,
} from "../net/g";
import { rxSrcA, rxDstA, rxL4Len, rxNp, rxBcast, rxL4Avail0, rxL4CsumValid, PROTO_TCP, netMinMtu } from "../net/ip";
import { addrEq, addrIs4, addrGet4 } from "../net/addr";
import {
  seqLt, seqLe, seqGt, seqGe, ST_CLOSED, ST_SYN_SENT, ST_SYN_RCVD, ST_ESTABLISHED, ST_FIN_WAIT_1, ST_FIN_WAIT_2,
  ST_CLOSE_WAIT, ST_CLOSING, ST_LAST_ACK, ST_TIME_WAIT, NIL, tLip, tRip, TF_TS_OK, TF_SACK_OK, TF_FIN_QUEUED, TF_ACK_NOW,
  TF_ACK_TURN, TF_PEER_FIN, TF_RECOVERY, TF_PASSIVE, TF_SYNQ, TF_FIN_PENDING, TF_APP_DONE, TF_PEND, TF_RTT,
} from "./tcb";
import { tcb, connId, lookup, tcbFree, synDone, finish, touch, twEnter, twRenew, R_RESET, R_REFUSED } from "./table";
import {
  parseSegment, segSpace, sSport, sDport, sSeq, sAck, sFl, sWnd, sLen, oTs, oTsVal, oSackN,
} from "./segment";
import { TCP_HLEN, TH_SYN, TH_RST, TH_ACK, TH_FIN, thLen } from "./wire";
import { rawSeg, challengeAck, mssUpdate } from "./output";
import { sbUpdate, sbSacked } from "./sack";
import { newAck, dupAck, enterRecovery } from "./recovery";
import { deliver, pull, reasmInsert } from "./reasm";
import { noConn, synSentInput } from "./open";
import { msl, delack, FW2_MIN } from "./config";

/** The transport's input: one TCP segment, its pieces described by the IP layer (rx*, pb/po/pl). */
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
  const doff = thLen(th);
  if (doff < TCP_HLEN || doff > rxL4Avail0 || doff > rxL4Len) {
    count(C_TCP_BAD_HDR);
    return;
  }
  if (!rxL4CsumValid(PROTO_TCP)) {
    count(C_TCP_BAD_CSUM);
    return;
  }
  parseSegment(th, doff, rxL4Len - doff);
  if (sSport == 0 || sDport == 0 || (sFl & (TH_SYN | TH_FIN)) == (TH_SYN | TH_FIN) ||
      (sFl & (TH_SYN | TH_RST)) == (TH_SYN | TH_RST)) {
    count(C_TCP_BAD_SEG);
    return;
  }
  setP(0, pb(0), po(0) + doff, pl(0) - doff);
  const i = lookup(rxSrcA, sSport, sDport);
  if (i != NIL && tcb(i).state == ST_TIME_WAIT && (sFl & (TH_SYN | TH_ACK | TH_RST)) == TH_SYN &&
      seqGt(sSeq, tcb(i).rcvNxt) && (!oTs || (tcb(i).flags & TF_TS_OK) == 0 || seqGt(oTsVal, tcb(i).tsRecent))) {
    // a new incarnation (RFC 9293 3.6.1 / RFC 6191): its SYN is above the old sequence space
    tcbFree(i);
    noConn();
    return;
  }
  if (i == NIL || !addrEq(tLip(tcb(i)), rxDstA)) noConn();
  else {
    process(i);
    touch(i);
  }
}

/** A segment for connection i in any state but SYN_SENT's (RFC 9293 3.10.7.4). */
export function process(i: u32): void {
  const t = tcb(i);
  if (t.state == ST_SYN_SENT) {
    synSentInput(i);
    return;
  }
  const fl = sFl;
  const segLen = segSpace();
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
      if (t.state == ST_TIME_WAIT && (fl & TH_FIN) != 0) {
        t.twAt = now + 2 * msl;
        twRenew(i);
      }
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
      if ((t.flags & TF_PASSIVE) != 0) {
        emitAddr(EV_ACCEPTED, connId(i), addrIs4(tRip(t)) ? addrGet4(tRip(t)) : 0, t.rport, t.lport, t.listener, tRip(t));
      }
      else emit(EV_CONNECTED, connId(i), t.tag, t.rport, t.lport, 0, false);
    } else {
      rawSeg(t.fam, tLip(t), tRip(t), t.lport, t.rport, sAck, 0, TH_RST, 0);
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

/** FIN_WAIT_2 gives up after this long without a segment from the peer. */
@inline export function fw2Timeout(): f64 {
  return max(2 * msl, FW2_MIN);
}

function enterTimeWait(i: u32): void {
  const t = tcb(i);
  t.state = ST_TIME_WAIT;
  twEnter(i);
  t.twAt = now + 2 * msl;
  t.rtxAt = Infinity;
  t.persistAt = Infinity;
  t.kaAt = Infinity;
  finish(i, EV_CLOSED, 0);
}

/** The peer's FIN, in order: CLOSE_WAIT, CLOSING or TIME_WAIT. */
export function doFin(i: u32): void {
  const t = tcb(i);
  t.rcvNxt++;
  t.flags &= ~TF_FIN_PENDING;
  t.flags |= TF_PEND;
  const st = t.state;
  let told = false;
  if ((t.flags & TF_PEER_FIN) == 0) {
    t.flags |= TF_PEER_FIN;
    if ((t.flags & TF_APP_DONE) == 0) {
      emit(EV_PEER_CLOSED, connId(i), t.tag, 0, 0, 0, false);
      told = true;
    }
  }
  // told while it may still send: its answer (most often its own FIN) can carry the ACK
  t.flags |= told && (st == ST_SYN_RCVD || st == ST_ESTABLISHED) ? TF_ACK_TURN : TF_ACK_NOW;
  if (st == ST_SYN_RCVD || st == ST_ESTABLISHED) t.state = ST_CLOSE_WAIT;
  else if (st == ST_FIN_WAIT_1) {
    if ((t.flags & TF_FIN_QUEUED) != 0 && t.sndUna == t.sndEnd + 1) enterTimeWait(i);
    else t.state = ST_CLOSING;
  } else if (st == ST_FIN_WAIT_2) enterTimeWait(i);
  else if (st == ST_TIME_WAIT) {
    t.twAt = now + 2 * msl;
    twRenew(i);
  }
}

/**
 * An ICMP or ICMPv6 error quoting one of our segments (`rip` the quoted destination, 16 bytes;
 * ports as we sent them; `seq` its sequence number). A hard error (protocol or port
 * unreachable, an unrecognized next header) aborts a connection attempt in SYN_SENT when the
 * quoted sequence number is the one of our SYN (RFC 1122 4.2.3.9; RFC 5927 validation).
 * Everything else is a soft error: counted and ignored.
 */
export function tcpIcmpUnreach(hard: bool, rip: usize, lport: u32, rport: u32, seq: u32): void {
  const i = lookup(rip, rport, lport);
  if (i == NIL) return;
  const t = tcb(i);
  if (t.state != ST_SYN_SENT || !hard || seq != t.iss) return;
  count(C_TCP_ICMP_ABORT);
  t.state = ST_CLOSED;
  finish(i, EV_RESET, R_REFUSED);
}

/**
 * "Fragmentation needed" (RFC 1191) or "packet too big" (RFC 8201) quoting one of our segments:
 * a quoted sequence number in flight (RFC 5927 4.1) and an MTU below the connection's path MTU
 * (never below the family's minimum) lower it, and the segments in flight that no longer fit
 * go again at the new size now, not a retransmission timeout later.
 */
export function tcpIcmpPtb(rip: usize, lport: u32, rport: u32, seq: u32, mtu: u32): void {
  const i = lookup(rip, rport, lport);
  if (i == NIL) return;
  const t = tcb(i);
  if (seqLt(seq, t.sndUna) || seqGe(seq, t.sndMax)) return;
  const floor = netMinMtu(t.fam);
  if (mtu < floor) mtu = floor;
  if (mtu >= t.pmtu) return;
  count(C_ICMP_PTB);
  t.pmtu = mtu;
  mssUpdate(t);
  // what was sent at the old size is lost: send it again in smaller segments
  if (t.state != ST_SYN_SENT && t.state != ST_SYN_RCVD && seqLt(t.sndUna, t.sndNxt)) {
    t.flags &= ~TF_RTT; // Karn: no sample from what goes again
    t.sndNxt = t.sndUna;
    t.flags |= TF_PEND;
  }
  touch(i);
}

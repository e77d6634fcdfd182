// Time-driven and per-turn work: the retransmission, persist, keepalive, delayed-ACK,
// TIME_WAIT and FIN_WAIT_2 timers of every connection (tcpTimers), and the turn's deferred
// output and delivery for every connection marked pending (tcpFlush). Both run once per poll.

import { count, C_TCP_RTO, C_TCP_RETRANSMITS, C_TCP_SYN_RTX_DROP, C_TCP_ZWP, C_TCP_KEEPALIVE_DROP, EV_CLOSED, EV_RESET, now } from "../net/g";
import {
  NIL, seqLt, seqGt, ST_CLOSED, ST_SYN_SENT, ST_SYN_RCVD, ST_ESTABLISHED, ST_FIN_WAIT_2, ST_CLOSE_WAIT,
  ST_TIME_WAIT, TF_ACK_NOW, TF_RECOVERY, TF_USED, TF_RTT, TF_PEND, TF_SWS_OVERRIDE,
} from "./tcb";
import { tcb, hiwater, tcbFree, finish, R_TIMEOUT, R_KEEPALIVE } from "./table";
import { TH_ACK } from "./wire";
import { ccOnLoss, rtoEff } from "./cc";
import { xmit, sendAck, sendRst, tcpOutput } from "./output";
import { pull } from "./reasm";
import { MAX_RETRIES, MAX_SYN_RETRIES, MAX_SYNACK_RETRIES, KA_PROBES, KA_INTVL } from "./config";

/** Retransmission timeout (RFC 6298 5.4-5.7): SYN again, or go back N with a collapsed window. */
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
    sendRst(t);
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

/**
 * Persist timer, with data waiting and nothing in flight: a zero-window probe (RFC 9293
 * 3.8.6.1), or, for a window smaller than a segment, the segment that fits it (the override of
 * sender SWS avoidance, RFC 9293 3.8.6.2.1; Linux's tcp_write_wakeup does the same).
 */
function onPersist(i: u32): void {
  const t = tcb(i);
  t.persistAt = Infinity;
  if (!seqLt(t.sndNxt, t.sndEnd) || t.sndNxt != t.sndUna) return;
  if (t.sndWnd != 0) {
    t.flags |= TF_SWS_OVERRIDE | TF_PEND;
    return;
  }
  count(C_TCP_ZWP);
  // one byte beyond the window; the RTO then repeats it with backoff
  if (!xmit(i, t.sndNxt, 1, TH_ACK)) return;
  t.sndNxt += 1;
  if (seqGt(t.sndNxt, t.sndMax)) t.sndMax = t.sndNxt;
  t.backoff++;
  t.rtxAt = now + rtoEff(t);
}

/** Keepalive probe (RFC 9293 3.8.4, RFC 1122 4.2.3.6): an old sequence number the peer must ACK. */
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

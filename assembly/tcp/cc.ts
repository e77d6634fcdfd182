// Congestion control and round-trip timing: the congestion window's start, growth (slow start,
// NewReno, CUBIC) and reduction on loss (RFC 5681, RFC 3465, RFC 9438), RTT samples and the
// retransmission timeout (RFC 6298). Pure arithmetic on one Tcb; loss detection and what to
// retransmit are recovery.ts's.

import { now } from "../net/g";
import { Tcb, TF_CUBIC } from "./tcb";
import { MAX_RTO, CUBIC_C, CUBIC_BETA, initialWindow, minRto } from "./config";

/** The retransmission timeout with the current backoff applied. */
@inline export function rtoEff(t: Tcb): f64 {
  return min(t.rto * <f64>(1 << min<u32>(t.backoff, 16)), MAX_RTO);
}

export function ccInit(t: Tcb): void {
  t.cwnd = initialWindow(t.mss);
  t.ssthresh = 0x7fffffff;
  t.wMax = 0;
  t.epoch = -1;
}

/** Grows the window for `acked` newly acknowledged bytes. */
export function ccOnAck(t: Tcb, acked: u32): void {
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

/** Reduces the window on loss: fast retransmit (`timeout` false) or a retransmission timeout. */
export function ccOnLoss(t: Tcb, timeout: bool): void {
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

/** Takes an RTT sample `r` ms into SRTT, RTTVAR and the RTO (RFC 6298 2). */
export function rttSample(t: Tcb, r: f64): void {
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

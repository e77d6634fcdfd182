// Time-driven and per-turn work: the retransmission, persist, keepalive, delayed-ACK,
// TIME_WAIT and FIN_WAIT_2 timers (tcpTimers, driven by a queue of deadlines, so blocks with
// nothing due cost nothing), and the turn's deferred output, delivery and rescheduling for every
// block touched since the last turn (tcpFlush). Both run once per poll.

import {
  count, C_TCP_RTO, C_TCP_RETRANSMITS, C_TCP_SYN_RTX_DROP, C_TCP_ZWP, C_TCP_KEEPALIVE_DROP, C_TCP_MTU_PROBE, EV_CLOSED,
  EV_RESET, now,
} from "../net/g";
import { netMinMtu } from "../net/ip";
import {
  NIL, seqLt, seqGt, ST_CLOSED, ST_SYN_SENT, ST_SYN_RCVD, ST_ESTABLISHED, ST_FIN_WAIT_2, ST_CLOSE_WAIT,
  ST_TIME_WAIT, TF_ACK_NOW, TF_RECOVERY, TF_USED, TF_RTT, TF_PEND, TF_SWS_OVERRIDE, TF_ACK_TURN, TF_ACK_HELD,
} from "./tcb";
import { arenaAlloc } from "../arena";
import { tcb, hiwater, tcbFree, finish, touch, touched, setBit, eachBit, bitmapBytes, R_TIMEOUT, R_KEEPALIVE } from "./table";
import { TH_ACK } from "./wire";
import { ccOnLoss, rtoEff } from "./cc";
import { xmit, sendAck, sendRst, tcpOutput, mssUpdate } from "./output";
import { pull } from "./reasm";
import { MAX_RETRIES, MAX_SYN_RETRIES, MAX_SYNACK_RETRIES, KA_PROBES, KA_INTVL, MTU_PROBE_RETRIES } from "./config";

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
  if (t.retries == MTU_PROBE_RETRIES && t.pmtu > netMinMtu(t.fam) && t.sndMax - t.sndUna > t.mss) {
    // a black hole (RFC 4821 5.4, Linux's tcp_mtu_probing): full-size segments keep vanishing
    // and no ICMP says why, so try smaller ones: half the path MTU, not below the minimum
    t.pmtu = max<u32>(t.pmtu >>> 1, netMinMtu(t.fam));
    mssUpdate(t);
    count(C_TCP_MTU_PROBE);
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

// ---------------------------------------------------------------- the timer queue

// A binary min-heap of (time, block) entries in the arena. A block's Tcb.schedAt is the entry
// that counts; an entry whose time differs from it is stale and skipped when it comes up (a
// deadline moved later is thus free; one moved earlier gets a new entry when the block is next
// flushed, and every change to a block ends with a flush). The heap holds at most HEAP_PER_CONN
// entries per block; when full it is rebuilt from the live schedAt values.
const HEAP_PER_CONN: u32 = 4;
let heapAt: usize = 0; // f64[cap]
let heapIx: usize = 0; // u32[cap]
let heapN: u32 = 0;
let heapCap: u32 = 0;
let due: usize = 0; // one bit per block: its entry came up this turn

@inline function hAt(k: u32): f64 {
  return load<f64>(heapAt + (<usize>k << 3));
}
@inline function hIx(k: u32): u32 {
  return load<u32>(heapIx + (<usize>k << 2));
}
@inline function hSet(k: u32, at: f64, i: u32): void {
  store<f64>(heapAt + (<usize>k << 3), at);
  store<u32>(heapIx + (<usize>k << 2), i);
}

/** Set-up: the heap and the due bits for `conns` blocks. */
export function timersInit(conns: u32): i32 {
  heapCap = conns * HEAP_PER_CONN + 64;
  const a = arenaAlloc(<usize>heapCap << 3, 64);
  if (a < 0) return <i32>a;
  heapAt = <usize>a;
  const b = arenaAlloc(<usize>heapCap << 2, 64);
  if (b < 0) return <i32>b;
  heapIx = <usize>b;
  const d = arenaAlloc(bitmapBytes(), 64);
  if (d < 0) return <i32>d;
  due = <usize>d;
  return 0;
}

function heapPush(at: f64, i: u32): void {
  if (heapN == heapCap) heapRebuild();
  siftUp(at, i);
}

/** Adds (at, i) at the end and moves it up to its place. */
function siftUp(at: f64, i: u32): void {
  let k = heapN++;
  while (k > 0) {
    const up = (k - 1) >>> 1;
    if (hAt(up) <= at) break;
    hSet(k, hAt(up), hIx(up));
    k = up;
  }
  hSet(k, at, i);
}

function heapPop(): void {
  const at = hAt(--heapN);
  const i = hIx(heapN);
  let k: u32 = 0;
  while (true) {
    let c: u32 = 2 * k + 1;
    if (c >= heapN) break;
    if (c + 1 < heapN && hAt(c + 1) < hAt(c)) c++;
    if (hAt(c) >= at) break;
    hSet(k, hAt(c), hIx(c));
    k = c;
  }
  if (heapN > 0) hSet(k, at, i);
}

/** Drops every stale entry: one entry per queued block. */
function heapRebuild(): void {
  heapN = 0;
  for (let i: u32 = 0; i < hiwater; i++) {
    const t = tcb(i);
    if ((t.flags & TF_USED) != 0 && t.schedAt != Infinity) siftUp(t.schedAt, i);
  }
}

/** Queues block i for its earliest deadline, if that is earlier than where it is queued. */
function schedule(i: u32): void {
  const t = tcb(i);
  const at = min(min(min(t.rtxAt, t.ackAt), min(t.twAt, t.kaAt)), t.persistAt);
  if (at < t.schedAt) {
    t.schedAt = at;
    heapPush(at, i);
  }
}

/** The timers of block i that are due (the queue said so): TIME_WAIT, FIN_WAIT_2, RTO, persist, keepalive, delayed ACK. */
function runTimers(i: u32): void {
  const t = tcb(i);
  if ((t.flags & TF_USED) == 0) return;
  if (t.twAt <= now) {
    if (t.state == ST_TIME_WAIT) {
      tcbFree(i);
      return;
    }
    if (t.state == ST_FIN_WAIT_2) {
      t.state = ST_CLOSED;
      finish(i, EV_CLOSED, 0);
      return;
    }
    t.twAt = Infinity;
  }
  if (t.rtxAt <= now) {
    onRto(i);
    if ((t.flags & TF_USED) == 0) return;
  }
  if (t.persistAt <= now) onPersist(i);
  if (t.kaAt <= now) {
    onKeepalive(i);
    if ((t.flags & TF_USED) == 0) return;
  }
  if (t.ackAt <= now) {
    t.ackAt = Infinity;
    t.flags |= TF_ACK_NOW | TF_PEND;
  }
  touch(i); // rescheduled (and its output sent) by this turn's flush
}

/** Runs every due timer (only the blocks whose queue entry came up). Returns the earliest entry left. */
export function tcpTimers(): f64 {
  while (heapN > 0 && hAt(0) <= now) {
    const at = hAt(0);
    const i = hIx(0);
    heapPop();
    const t = tcb(i);
    if ((t.flags & TF_USED) != 0 && t.schedAt == at) {
      t.schedAt = Infinity;
      setBit(due, i);
    }
  }
  eachBit(due, hiwater, (i: u32): void => runTimers(i));
  return heapN > 0 ? hAt(0) : Infinity;
}

/**
 * Output, deferred delivery and timer rescheduling for every block touched since the last
 * flush, in index order. Returns the earliest queued deadline (now if a block stalled on a full
 * TX ring and must go on at once).
 */
export function tcpFlush(): f64 {
  stalled = false;
  eachBit(touched, hiwater, (i: u32): void => flushOne(i));
  if (stalled) return now;
  return heapN > 0 ? hAt(0) : Infinity;
}
let stalled = false;

function flushOne(i: u32): void {
  const t = tcb(i);
  if ((t.flags & TF_USED) == 0) return;
  if ((t.flags & TF_PEND) != 0) {
    t.flags &= ~TF_PEND;
    if (t.rHead != NIL) pull(i);
    // an ACK held for the app's turn: the app has had it, so it goes now (alone if nothing carried it)
    if ((t.flags & TF_ACK_HELD) != 0) t.flags = (t.flags & ~TF_ACK_HELD) | TF_ACK_NOW;
    else if ((t.flags & (TF_ACK_TURN | TF_ACK_NOW)) == TF_ACK_TURN) t.flags |= TF_ACK_HELD;
    t.flags &= ~TF_ACK_TURN;
    tcpOutput(i); // a segment that carries an ACK clears TF_ACK_HELD
    if ((t.flags & TF_ACK_HELD) != 0) t.flags |= TF_PEND; // the next poll, at once, sends it
    if ((t.flags & TF_PEND) != 0) {
      // an ACK still held, or stalled on a full TX ring: again at the next poll, at once
      stalled = true;
      touch(i);
    }
  }
  if ((t.flags & TF_USED) != 0) schedule(i);
}

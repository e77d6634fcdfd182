// The app's commands (APP-IN ring, dispatched by assembly/stack.ts): listen, connect, send by
// reference, close, abort, consume, set an option; and tcpInit, which sets TCP up.

import { bufOwner, bufRef, bufSetOwner, nameCheck } from "../pool";
import { OWNER_APP, OWNER_KEPT, OWNER_STACK } from "../layout";
import {
  count, C_TCP_NODES_EXHAUSTED, emit, EV_SEND_REFUSED, EV_LISTENING, EV_ERROR, EV_CLOSED, now,
} from "../net/g";
import { addrFam } from "../net/addr";
import { netDstOk, netSrcFor } from "../net/ip";
import {
  NIL, nodeAlloc, nSetNext, nSet, seqGt, ST_CLOSED, ST_SYN_SENT, ST_SYN_RCVD, ST_ESTABLISHED, ST_FIN_WAIT_1,
  ST_CLOSE_WAIT, ST_LAST_ACK, TF_NODELAY, TF_CUBIC, TF_FIN_QUEUED, TF_ACK_NOW, TF_WANT_WRITABLE, TF_USED,
  TF_PASSIVE, TF_PEND, TF_ACK_TURN, TF_ACK_HELD,
} from "./tcb";
import {
  tableInit, tcb, hiwater, maxConns, touch, lookup, listener, findListener, freeListener, setListenerPort, fromId, ephemeralPort, tcbAlloc, tcbFree,
  finish, R_NOCONN, R_BADARG, R_INUSE, R_NOADDR, CLOSED_ABORTED,
} from "./table";
import { sendAck, sendRst } from "./output";
import { activeOpen } from "./open";
import { tcpConfigure } from "./config";
import { timersInit } from "./timers";

/** Half-open connections a listener holds when the app asks for backlog 0. */
const DEFAULT_BACKLOG: u32 = 128;

// CMD_SETOPT options
export const OPT_NODELAY: u32 = 1;
export const OPT_CC: u32 = 2; // 0 NewReno, 1 CUBIC
export const OPT_KEEPALIVE: u32 = 3; // idle ms, 0 = off
export const OPT_SNDBUF: u32 = 4;

/** Set-up: the connection table, segment nodes and listeners (tableInit), and the configured values. */
export function tcpInit(): i32 {
  let r = tableInit();
  if (r < 0) return r;
  r = timersInit(maxConns);
  if (r < 0) return r;
  tcpConfigure();
  return 0;
}

/** CMD_LISTEN: listens on `port` with room for `backlog` half-open connections (0: DEFAULT_BACKLOG). */
export function tcpListen(port: u32, backlog: u32, tag: u32): void {
  if (port == 0 || port > 0xffff) {
    emit(EV_ERROR, tag, 0, port, 0, R_BADARG, false);
    return;
  }
  if (findListener(port) >= 0) {
    emit(EV_ERROR, tag, 0, port, 0, R_INUSE, false);
    return;
  }
  const L = freeListener();
  if (L < 0) {
    emit(EV_ERROR, tag, 0, port, 0, R_NOCONN, false);
    return;
  }
  setListenerPort(<u32>L, port);
  const l = listener(<u32>L);
  l.backlog = backlog == 0 ? DEFAULT_BACKLOG : backlog;
  l.synCount = 0;
  l.tag = tag;
  emit(EV_LISTENING, <u32>L, tag, port, 0, 0, false);
}

/** CMD_UNLISTEN: stops listening; the port's half-open connections go. */
export function tcpUnlisten(port: u32): void {
  const L = findListener(port);
  if (L < 0) return;
  setListenerPort(<u32>L, 0);
  // half-open connections of this listener go away silently
  for (let i: u32 = 0; i < hiwater; i++) {
    const t = tcb(i);
    if ((t.flags & TF_USED) != 0 && t.state == ST_SYN_RCVD && t.listener == <u32>L && (t.flags & TF_PASSIVE) != 0) {
      tcbFree(i);
    }
  }
}

const lipA: usize = memory.data(16, 16);

/**
 * CMD_CONNECT: opens a connection to rip:rport (rip: 16 bytes, IPv6 or IPv4 mapped) from lport
 * (0: an ephemeral port) and our address of that family for it; sends the SYN.
 */
export function tcpConnect(rip: usize, rport: u32, lport: u32, tag: u32): void {
  if (!netDstOk(rip) || rport == 0 || rport > 0xffff || lport > 0xffff) {
    emit(EV_ERROR, tag, 0, rport, 0, R_BADARG, false);
    return;
  }
  const fam = addrFam(rip);
  if (!netSrcFor(fam, rip, lipA)) {
    emit(EV_ERROR, tag, 0, rport, 0, R_NOADDR, false);
    return;
  }
  if (lport == 0) {
    lport = ephemeralPort(lipA, rip, rport);
    if (lport == 0) {
      emit(EV_ERROR, tag, 0, rport, 0, R_INUSE, false);
      return;
    }
  } else if (lookup(rip, rport, lport) != NIL) {
    emit(EV_ERROR, tag, 0, rport, 0, R_INUSE, false);
    return;
  }
  const i = tcbAlloc(fam, rip, rport, lipA, lport);
  if (i == NIL) {
    emit(EV_ERROR, tag, 0, rport, 0, R_NOCONN, false);
    return;
  }
  activeOpen(i, tag);
}

/** CMD_SEND: queues [off, off+len) of buffer b (APP or KEPT) by reference, or refuses it (EV_SEND_REFUSED). */
export function tcpSend(id: u32, b: u32, off: u32, len: u32): void {
  const i = fromId(id);
  if (i != NIL) touch(i);
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

/** CMD_CLOSE: a FIN after the queued data. */
export function tcpClose(id: u32): void {
  const i = fromId(id);
  if (i == NIL) return;
  touch(i);
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

/** CMD_ABORT: an RST, and the connection is gone. */
export function tcpAbort(id: u32): void {
  const i = fromId(id);
  if (i == NIL) return;
  const t = tcb(i);
  if (t.state != ST_SYN_SENT && t.state != ST_CLOSED) {
    // an ACK held for the app's turn goes first: the peer's handshake completes (it learns of
    // the connection it then sees reset), its FIN is acknowledged
    if ((t.flags & (TF_ACK_TURN | TF_ACK_HELD)) != 0) sendAck(i);
    sendRst(t);
  }
  t.state = ST_CLOSED;
  finish(i, EV_CLOSED, CLOSED_ABORTED);
}

/** CMD_RECVD: the app consumed `n` delivered bytes; the window reopens. */
export function tcpRecvd(id: u32, n: u32): void {
  const i = fromId(id);
  if (i == NIL) return;
  touch(i);
  const t = tcb(i);
  const before = seqGt(t.rcvAdv, t.rcvNxt) ? t.rcvAdv - t.rcvNxt : 0;
  t.unread = n >= t.unread ? 0 : t.unread - n;
  const free = t.rcvBuf - t.unread;
  if (free > before && free - before >= min<u32>(t.rcvBuf >>> 1, 2 * t.mss)) t.flags |= TF_ACK_NOW | TF_PEND;
}

/** CMD_SETOPT: sets option `opt` (OPT_*) of a connection. */
export function tcpSetopt(id: u32, opt: u32, val: u32): void {
  const i = fromId(id);
  if (i == NIL) return;
  touch(i);
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

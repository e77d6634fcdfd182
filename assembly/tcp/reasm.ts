// The receive side's data path: in-order payload goes to the app as DATA events naming the bytes
// where they landed (deliver); out-of-order payload waits by reference in the connection's
// reassembly list (reasmInsert) until the gap fills (pull).

import { bufRef, bufSetOwner, bufUnref } from "../pool";
import { OWNER_APP, OWNER_STACK } from "../layout";
import { count, C_TCP_NODES_EXHAUSTED, emit, aoutSpace, EV_DATA } from "../net/g";
import {
  NIL, nodeAlloc, nodeRelease, nBuf, nOff, nLen, nSeq, nNext, nSetNext, nSet, seqLt, seqLe, seqGt,
  TF_ACK_NOW, TF_FIN_PENDING, TF_PEND,
} from "./tcb";
import { tcb, connId } from "./table";
import { REASM_MIN_NODES } from "./config";
import { doFin } from "./input";

/** Delivers [b+off, len) at rcvNxt to the app (one event; the app gets one reference). */
export function deliver(i: u32, b: u32, off: u32, len: u32, takeRef: bool): bool {
  const t = tcb(i);
  // never lose an event: if APP-OUT is full the bytes stay unacknowledged (the peer resends)
  if (!emit(EV_DATA, connId(i), b, off, len, 0, false)) return false;
  if (takeRef) bufRef(b);
  bufSetOwner(b, OWNER_APP);
  t.rcvNxt += len;
  t.unread += len;
  return true;
}

/** Moves in-order data from the reassembly list to the app, then a FIN that was waiting for it. */
export function pull(i: u32): void {
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
export function reasmInsert(i: u32, b: u32, off: u32, pseq: u32, s: u32, e: u32): void {
  const t = tcb(i);
  // each held segment pins a 2 KiB buffer: at most one node per KiB of window
  const cap = max<u32>(REASM_MIN_NODES, t.rcvBuf >>> 10);
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

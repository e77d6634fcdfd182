// The connection table: connection blocks at fixed arena addresses, the 4-tuple hash that finds
// them, connection ids (index + generation), the listener table and SYN-queue accounting, the
// secret behind ISNs, cookies and timestamp offsets, and the one place a connection ends
// (finish). Set up once by tableInit.

import { arenaAlloc } from "../arena";
import { bufUnref } from "../pool";
import { cfg, cfgGet, CFG_MAX_CONNS, CFG_SYNQ, CFG_NODES, CFG_LISTEN, CFG_SECRET, count, C_TCP_CONN_EXHAUSTED, emit, now, ourMtu } from "../net/g";
import { addrCopy, addrIs4, addrGet4, addrMix, addrFold } from "../net/addr";
import {
  Tcb, TCB_BYTES, NIL, tLip, tRip, nodesInit, nodeRelease, nBuf, nNext, ST_CLOSED, ST_SYN_RCVD, ST_TIME_WAIT, TF_USED,
  TF_PASSIVE, TF_SYNQ, TF_APP_DONE,
} from "./tcb";
import { sip24 } from "./siphash";
import { defaultFlags, defRcvBuf, defSndBuf, defKeepalive, initRto, DEFAULT_MSS, steerQueues, steerQueue } from "./config";

// reasons carried in EV_RESET / EV_ERROR aux (mirrored by R in host/stack-abi.ts)
export const R_RESET: u32 = 1; // peer sent RST
export const R_TIMEOUT: u32 = 2; // retransmission limit
export const R_REFUSED: u32 = 3; // RST in answer to our SYN
export const R_KEEPALIVE: u32 = 4;
export const R_NOCONN: u32 = 5; // no connection block free
export const R_BADARG: u32 = 6;
export const R_INUSE: u32 = 7;
export const R_NOADDR: u32 = 8; // no usable source address of the destination's family (none configured, or still tentative)
/** EV_CLOSED aux: the app aborted the connection (an RST went to the peer); 0 for every other close. */
export const CLOSED_ABORTED: u32 = 1;

/**
 * A connection id is `generation << ID_INDEX_BITS | index`: up to 2^20 - 1 blocks, a 12-bit
 * generation (never 0) that makes an id stale once its block is reused.
 */
export const ID_INDEX_BITS: u32 = 20;
const ID_INDEX_MASK: u32 = (1 << ID_INDEX_BITS) - 1;
const GEN_MASK: u32 = (1 << (32 - ID_INDEX_BITS)) - 1;

let tcbs: usize = 0;
export let maxConns: u32 = 0;
/** Blocks in use (TIME_WAIT included). */
export let connsInUse: u32 = 0;
/** Highest index ever used + 1: loops over connections stop here. */
export let hiwater: u32 = 0;
let freeHead: u32 = NIL;
let hashTab: usize = 0;
let hashMask: u32 = 0;
let synLimit: u32 = 0;
let synUsed: u32 = 0;
/** The host's secret (CFG_SECRET), the SipHash key of ISNs, SYN cookies and timestamp offsets. */
export let k0: u64 = 0;
export let k1: u64 = 0;
let ephemeral: u32 = 0;

/** A listening port. A row with port 0 is free. */
@unmanaged export class Listener {
  port: u32;
  backlog: u32; // half-open connections it may hold
  synCount: u32; // half-open connections it holds
  tag: u32; // the app's tag, given to accepted connections
}
let lst: usize = 0;
let nLst: u32 = 0;
/** Port -> listener index + 1 (0: none), one u32 per port: a listener is found in one load. */
let lstByPort: usize = 0;
/** TIME_WAIT blocks in the order they entered it (head: the oldest). */
let twHead: u32 = NIL;
let twTail: u32 = NIL;

/**
 * Blocks touched since the last flush, one bit per index: what tcpFlush visits (in index order)
 * to send, deliver and reschedule timers, so a turn costs nothing per idle connection. Every
 * entry point that changes a block (a segment for it, an app command, a timer) touches it.
 */
export let touched: usize = 0;
@inline export function touch(i: u32): void {
  setBit(touched, i);
}

// Block bitmaps (touched, and the timers' due bits) have two levels, so that finding the set
// bits costs the set bits and not the table: `sumWords` summary words (bit w: base word w may be
// non-zero), then the base words (bit i: block i).
let sumWords: u32 = 0;
/** Bytes of a block bitmap for the table (set up by tableInit). */
export function bitmapBytes(): usize {
  const words = (maxConns + 63) >>> 6;
  return (<usize>((words + 63) >>> 6) + <usize>words) << 3;
}
/** Sets bit i of the block bitmap at `bits`. */
@inline export function setBit(bits: usize, i: u32): void {
  const w = i >>> 6;
  const s = bits + (<usize>(w >>> 6) << 3);
  store<u64>(s, load<u64>(s) | (<u64>1 << <u64>(w & 63)));
  const p = bits + (<usize>(sumWords + w) << 3);
  store<u64>(p, load<u64>(p) | (<u64>1 << <u64>(i & 63)));
}
/**
 * Calls f(i) for every set bit of the block bitmap at `bits` below `end`, in index order,
 * clearing each word before its bits are visited (a bit f sets again stays for the next call).
 */
@inline export function eachBit(bits: usize, end: u32, f: (i: u32) => void): void {
  const sEnd = (((end + 63) >>> 6) + 63) >>> 6;
  for (let sw: u32 = 0; sw < sEnd; sw++) {
    const sp = bits + (<usize>sw << 3);
    let sv = load<u64>(sp);
    if (sv == 0) continue;
    store<u64>(sp, 0);
    while (sv != 0) {
      const w = (sw << 6) | <u32>ctz<u64>(sv);
      sv &= sv - 1;
      const p = bits + (<usize>(sumWords + w) << 3);
      let v = load<u64>(p);
      if (v == 0) continue;
      store<u64>(p, 0);
      while (v != 0) {
        const b = <u32>ctz<u64>(v);
        v &= v - 1;
        f((w << 6) | b);
      }
    }
  }
}

@inline export function tcb(i: u32): Tcb {
  return changetype<Tcb>(tcbs + <usize>i * TCB_BYTES);
}
@inline export function connId(i: u32): u32 {
  return (tcb(i).gen << ID_INDEX_BITS) | i;
}
/** The block index an id names (its generation not checked). */
@inline export function idIndex(id: u32): u32 {
  return id & ID_INDEX_MASK;
}
@inline export function listener(L: u32): Listener {
  return changetype<Listener>(lst + <usize>L * offsetof<Listener>());
}

export function tableInit(): i32 {
  maxConns = cfgGet(CFG_MAX_CONNS);
  const a = arenaAlloc(<usize>maxConns * TCB_BYTES, 64);
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
  const l = arenaAlloc(<usize>nLst * offsetof<Listener>(), 16);
  if (l < 0) return <i32>l;
  lst = <usize>l;
  const lp = arenaAlloc(65536 << 2, 64);
  if (lp < 0) return <i32>lp;
  lstByPort = <usize>lp;
  memory.fill(lstByPort, 0, 65536 << 2);
  sumWords = (((maxConns + 63) >>> 6) + 63) >>> 6;
  const tb = arenaAlloc(bitmapBytes(), 64);
  if (tb < 0) return <i32>tb;
  touched = <usize>tb;
  synLimit = cfgGet(CFG_SYNQ);
  k0 = load<u64>(cfg + CFG_SECRET);
  k1 = load<u64>(cfg + CFG_SECRET + 8);
  ephemeral = <u32>(sip24(k0, k1, 7, 7) & 0x3fff);
  return 0;
}

// ---------------------------------------------------------------- lookup

/** Hash chain of a connection: its remote address (16 bytes at `rip`) and both ports. */
@inline function hashOf(rip: usize, rport: u32, lport: u32): u32 {
  let x = addrMix(rip) ^ ((rport << 16) | lport) * 0x85ebca6b;
  x ^= x >>> 15;
  return x & hashMask;
}
/** The connection from rip:rport to our lport (rip: 16 bytes, either family), or NIL. */
export function lookup(rip: usize, rport: u32, lport: u32): u32 {
  const r0 = load<u64>(rip);
  const r1 = load<u64>(rip, 8);
  let i = load<u32>(hashTab + (<usize>hashOf(rip, rport, lport) << 2));
  while (i != NIL) {
    const t = tcb(i);
    if (t.rip1 == r1 && t.rport == rport && t.lport == lport && t.rip0 == r0) return i;
    i = t.hnext;
  }
  return NIL;
}
function hashInsert(i: u32): void {
  const t = tcb(i);
  const p = hashTab + (<usize>hashOf(tRip(t), t.rport, t.lport) << 2);
  t.hnext = load<u32>(p);
  store<u32>(p, i);
}
function hashRemove(i: u32): void {
  const t = tcb(i);
  const p = hashTab + (<usize>hashOf(tRip(t), t.rport, t.lport) << 2);
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

/** The listener on `port`, or -1: one load. */
export function findListener(port: u32): i32 {
  if (port == 0 || port > 0xffff) return -1;
  return <i32>load<u32>(lstByPort + (<usize>port << 2)) - 1;
}
/** A free listener row, or -1 if all are taken (only CMD_LISTEN looks). */
export function freeListener(): i32 {
  for (let i: u32 = 0; i < nLst; i++) if (listener(i).port == 0) return <i32>i;
  return -1;
}
/** Listener row L now listens on `port` (1..65535), or (port 0) on none. */
export function setListenerPort(L: u32, port: u32): void {
  const l = listener(L);
  if (l.port != 0) store<u32>(lstByPort + (<usize>l.port << 2), 0);
  l.port = port;
  if (port != 0) store<u32>(lstByPort + (<usize>port << 2), L + 1);
}

/** Resolves an app conn id to an index (checks the generation), or NIL. */
export function fromId(id: u32): u32 {
  const i = idIndex(id);
  if (i >= maxConns) return NIL;
  const t = tcb(i);
  if ((t.flags & TF_USED) == 0 || t.gen != (id >>> ID_INDEX_BITS) || (t.flags & TF_APP_DONE) != 0) return NIL;
  return i;
}

/**
 * A free local port in the dynamic range for a connection from lip to rip:rport, or 0 if none;
 * with steering (config.ts steerQueues), one whose replies the device sends to our queue (as
 * F-Stack's ff_rss_check picks ports for the NIC's RSS).
 */
export function ephemeralPort(lip: usize, rip: usize, rport: u32): u32 {
  for (let k: u32 = 0; k < 16384; k++) {
    const p = 49152 + (ephemeral++ & 0x3fff);
    if (steerQueues > 1 && steerQueueOf(lip, p, rip, rport, steerQueues) != steerQueue) continue;
    if (lookup(rip, rport, p) == NIL && findListener(p) < 0) return p;
  }
  return 0;
}

/**
 * The queue a steered device (a multi-queue TAP device, a veth pair served with AF_XDP) sends a
 * connection's frames to: the hash the addon's steering programs compute (native-host/nic/
 * steer.h; host/nic/tap.ts tapQueueOf), the same both ways: the ports as one word, xor both addresses (IPv4: their 32 bits; IPv6: their four words),
 * folded to 16 and then to 8 bits, modulo the queue count.
 */
export function steerQueueOf(lip: usize, lport: u32, rip: usize, rport: u32, queues: u32): u32 {
  let h = (lport << 16) | rport;
  if (addrIs4(lip)) h ^= addrGet4(lip) ^ addrGet4(rip);
  else
    for (let i: usize = 0; i < 16; i += 4) h ^= bswap<u32>(load<u32>(lip + i)) ^ bswap<u32>(load<u32>(rip + i));
  h = (h ^ (h >>> 16)) & 0xffff;
  return (h ^ (h >>> 8)) % queues;
}

// ---------------------------------------------------------------- allocation

/**
 * The first SipHash word over a pair of addresses (16 bytes each): for IPv4 the two 32-bit
 * addresses side by side, for IPv6 both folded (then `salt` keeps the families apart).
 */
export function addrPairKey(a: usize, b: usize): u64 {
  if (addrIs4(a) && addrIs4(b)) return (<u64>addrGet4(a) << 32) | addrGet4(b);
  return addrFold(a) ^ rotl<u64>(addrFold(b), 32) ^ 0x6a09e667f3bcc908;
}

export function isnFor(lip: usize, lport: u32, rip: usize, rport: u32): u32 {
  // RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, secretkey), M a 4 us clock.
  const f = sip24(k0, k1, addrPairKey(lip, rip), (<u64>lport << 16) | rport);
  return <u32>(<u64>(now * 250)) + <u32>f;
}

/**
 * Takes a block for fam rip:rport -> lip:lport (addresses 16 bytes each; recycling the
 * TIME_WAIT block that expires first if none is free), or NIL.
 */
export function tcbAlloc(fam: u32, rip: usize, rport: u32, lip: usize, lport: u32): u32 {
  let i = freeHead;
  if (i == NIL) {
    // none free: the block longest in TIME_WAIT is recycled (RFC 6191 lets a new connection
    // take its place; the peer's late segments then find no connection), in O(1)
    if (twHead == NIL) {
      count(C_TCP_CONN_EXHAUSTED);
      return NIL;
    }
    tcbFree(twHead);
    i = freeHead;
  }
  const t = tcb(i);
  freeHead = t.hnext;
  const gen = t.gen;
  memory.fill(changetype<usize>(t), 0, TCB_BYTES);
  t.gen = gen;
  t.flags = TF_USED | defaultFlags;
  t.fam = fam;
  t.pmtu = ourMtu;
  addrCopy(tLip(t), lip);
  addrCopy(tRip(t), rip);
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
  t.schedAt = Infinity;
  t.twPrev = NIL;
  t.twNext = NIL;
  t.kaIdle = defKeepalive;
  t.mss = DEFAULT_MSS;
  t.peerMss = DEFAULT_MSS;
  t.ssthresh = 0x7fffffff;
  t.tsOff = <u32>sip24(k0, k1, addrPairKey(rip, lip), (<u64>lport << 16) | rport | (<u64>1 << 40));
  if (i >= hiwater) hiwater = i + 1;
  connsInUse++;
  hashInsert(i);
  touch(i);
  return i;
}

/** Releases a block: its queued and held segments, its SYN-queue place, its hash entry. */
export function tcbFree(i: u32): void {
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
  if (t.state == ST_TIME_WAIT) twUnlink(i);
  hashRemove(i);
  connsInUse--;
  t.flags = 0;
  t.state = ST_CLOSED;
  t.gen = (t.gen + 1) & GEN_MASK;
  if (t.gen == 0) t.gen = 1;
  t.hnext = freeHead;
  freeHead = i;
}

// ---------------------------------------------------------------- TIME_WAIT

/** Block i enters TIME_WAIT now: last in the recycling order. */
export function twEnter(i: u32): void {
  const t = tcb(i);
  t.twPrev = twTail;
  t.twNext = NIL;
  if (twTail != NIL) tcb(twTail).twNext = i;
  else twHead = i;
  twTail = i;
}
/** Block i's TIME_WAIT starts over (a retransmitted FIN): last in the recycling order again. */
export function twRenew(i: u32): void {
  twUnlink(i);
  twEnter(i);
}
function twUnlink(i: u32): void {
  const t = tcb(i);
  if (t.twPrev != NIL) tcb(t.twPrev).twNext = t.twNext;
  else if (twHead == i) twHead = t.twNext;
  if (t.twNext != NIL) tcb(t.twNext).twPrev = t.twPrev;
  else if (twTail == i) twTail = t.twPrev;
  t.twPrev = NIL;
  t.twNext = NIL;
}

// ---------------------------------------------------------------- SYN queue

/** Whether listener L may take another half-open connection (else: answer with a SYN cookie). */
export function synRoom(L: u32): bool {
  const l = listener(L);
  return l.synCount < l.backlog && synUsed < synLimit;
}
/** Counts t as half-open under listener L. */
export function synAdd(t: Tcb, L: u32): void {
  t.flags |= TF_SYNQ;
  t.listener = L;
  synUsed++;
  listener(L).synCount++;
}
/** t is half-open no more (established, or gone). */
export function synDone(t: Tcb): void {
  t.flags &= ~TF_SYNQ;
  synUsed--;
  if (t.listener != NIL) {
    const l = listener(t.listener);
    if (l.synCount > 0) l.synCount--;
  }
}

/** Ends a connection: tells the app (once) and frees or keeps the block (TIME_WAIT keeps it). */
export function finish(i: u32, ev: u32, reason: u32): void {
  const t = tcb(i);
  // a half-open passive connection was never shown to the app
  const hidden = (t.flags & TF_PASSIVE) != 0 && t.state == ST_SYN_RCVD;
  if ((t.flags & TF_APP_DONE) == 0 && !hidden) emit(ev, connId(i), t.tag, 0, 0, reason, false);
  t.flags |= TF_APP_DONE;
  if (t.state != ST_TIME_WAIT) tcbFree(i);
}

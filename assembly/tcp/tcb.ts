// The TCP control block (state, flags, the Tcb's fields and its SACK scoreboard), placed at fixed
// arena addresses (no managed allocation); the segment node pool shared by send queues and
// reassembly lists; sequence-number arithmetic.

import { arenaAlloc } from "../arena";

export const ST_CLOSED: u32 = 0;
export const ST_LISTEN: u32 = 1;
export const ST_SYN_SENT: u32 = 2;
export const ST_SYN_RCVD: u32 = 3;
export const ST_ESTABLISHED: u32 = 4;
export const ST_FIN_WAIT_1: u32 = 5;
export const ST_FIN_WAIT_2: u32 = 6;
export const ST_CLOSE_WAIT: u32 = 7;
export const ST_CLOSING: u32 = 8;
export const ST_LAST_ACK: u32 = 9;
export const ST_TIME_WAIT: u32 = 10;

// option bits (the low byte can be set per connection or as defaults in CFG_FLAGS)
export const TF_NODELAY: u32 = 1;
export const TF_CUBIC: u32 = 2;
export const TF_NOSACK: u32 = 4;
export const TF_NOTS: u32 = 8;
export const TF_NOWS: u32 = 16;
// state bits
export const TF_TS_OK: u32 = 0x100;
export const TF_WS_OK: u32 = 0x200;
export const TF_SACK_OK: u32 = 0x400;
export const TF_FIN_QUEUED: u32 = 0x800;
export const TF_ACK_NOW: u32 = 0x2000;
export const TF_PEER_FIN: u32 = 0x4000;
export const TF_RECOVERY: u32 = 0x8000;
export const TF_WANT_WRITABLE: u32 = 0x10000;
export const TF_USED: u32 = 0x20000;
export const TF_PASSIVE: u32 = 0x40000;
export const TF_RTT: u32 = 0x80000;
export const TF_SWS_OVERRIDE: u32 = 0x100000; // the persist timer lets a segment the window cuts below the MSS go
export const TF_SYNQ: u32 = 0x200000;
export const TF_FIN_PENDING: u32 = 0x400000; // FIN received out of order, seq in rfinSeq
export const TF_APP_DONE: u32 = 0x800000; // the app was told the connection is over
export const TF_PEND: u32 = 0x1000000; // has output or delivery work for tcpFlush
// An ACK owed for a segment that also gave the app an event it may answer at once (CONNECTED
// after our SYN was answered, PEER_CLOSED): it waits for the app's turn, the next poll, so that
// the answer (a request, our FIN) carries it, as a delayed ACK would; tcpFlush holds it
// (TF_ACK_HELD) and makes the poll return now, and the next poll sends it if nothing did.
export const TF_ACK_TURN: u32 = 0x2000000;
export const TF_ACK_HELD: u32 = 0x4000000;

@unmanaged export class Tcb {
  state: u32;
  flags: u32;
  fam: u32; // FAM_IP4 or FAM_IP6
  pmtu: u32; // path MTU: our MTU, lowered by ICMP (RFC 1191, RFC 8201) or a black hole probe
  lip0: u64; // local address, 16 bytes (net/addr.ts; IPv4 mapped): tLip(t)
  lip1: u64;
  rip0: u64; // remote address: tRip(t)
  rip1: u64;
  lport: u32;
  rport: u32;
  tag: u32;
  gen: u32;
  hnext: u32;
  twPrev: u32; // TIME_WAIT blocks, oldest first (table.ts): the one recycled when none is free
  twNext: u32;
  listener: u32;
  iss: u32;
  irs: u32;
  sndUna: u32;
  sndNxt: u32;
  sndMax: u32;
  sndEnd: u32; // sequence number after the last queued data byte
  sndWnd: u32;
  maxSndWnd: u32;
  sndWl1: u32;
  sndWl2: u32;
  sndWs: u32;
  rcvWs: u32;
  rcvNxt: u32;
  rcvAdv: u32; // right edge of the window we advertised
  rcvBuf: u32;
  unread: u32; // delivered to the app, not yet acknowledged by CMD_RECVD
  mss: u32; // payload bytes per segment (options excluded): min(peerMss, what pmtu carries)
  peerMss: u32; // the MSS the peer announced (or the default), options not deducted
  sndBufMax: u32;
  qHead: u32;
  qTail: u32;
  qCur: u32; // cursor node for sndNxt lookups
  rHead: u32; // reassembly list, sorted by seq
  rCount: u32;
  rfinSeq: u32;
  tsRecent: u32;
  tsOff: u32;
  rttSeq: u32;
  backoff: u32;
  retries: u32;
  cwnd: u32;
  ssthresh: u32;
  dupAcks: u32;
  recover: u32;
  ackPending: u32;
  kaProbes: u32;
  lastSackSeq: u32;
  smlEnd: u32; // end of the last sub-MSS segment sent (Minshall's Nagle)
  highRxt: u32; // RFC 6675 HighRxt: end of the highest retransmitted range during recovery
  sbN: u32; // SACK scoreboard: blocks in use (the blocks follow the Tcb, see sackBlock)
  srtt: f64;
  rttvar: f64;
  rto: f64;
  rttTime: f64;
  rtxAt: f64;
  ackAt: f64;
  twAt: f64;
  kaAt: f64;
  persistAt: f64;
  kaIdle: f64;
  // CUBIC (RFC 9438), in bytes and ms
  wMax: f64;
  cubK: f64;
  epoch: f64;
  wEst: f64;
  lastSend: f64; // when data was last sent (RFC 5681 4.1 restart after idle)
  schedAt: f64; // when the timer queue will next look at this block (Infinity: not queued); timers.ts
  confirmAt: f64; // when new data acknowledged last confirmed the next hop reachable (neighbor cache)
}

/** Address of t's 16-byte local address. */
@inline export function tLip(t: Tcb): usize {
  return changetype<usize>(t) + offsetof<Tcb>("lip0");
}
/** Address of t's 16-byte remote address. */
@inline export function tRip(t: Tcb): usize {
  return changetype<usize>(t) + offsetof<Tcb>("rip0");
}

/** A SACK block [l, r) in host order: one row of a scoreboard or of a received SACK option. */
@unmanaged export class SackBlock {
  l: u32;
  r: u32;
}
/** Scoreboard rows per connection (RFC 6675 needs no more than a received option carries). */
export const SB_MAX: u32 = 4;
/** Bytes of one connection block: the Tcb's fields, then its scoreboard, rounded to 16. */
export const TCB_BYTES: u32 = (offsetof<Tcb>() + SB_MAX * offsetof<SackBlock>() + 15) & ~15;

/**
 * Row k of t's SACK scoreboard: sorted, disjoint blocks above SND.UNA, t.sbN of them in use.
 * They live right after the Tcb's fields, inside its TCB_BYTES.
 */
@inline export function sackBlock(t: Tcb, k: u32): SackBlock {
  return changetype<SackBlock>(changetype<usize>(t) + offsetof<Tcb>() + <usize>k * offsetof<SackBlock>());
}

export const NIL: u32 = 0xffffffff;

// ---- segment nodes ----
/** One piece of a send queue or reassembly list: `len` bytes at `off` in buffer `buf`, sequence `seq`. */
@unmanaged class SegNode {
  buf: u32;
  off: u16;
  len: u16;
  seq: u32;
  next: u32; // next node in the list, or the free list (NIL ends it)
}
const NODE_BYTES: u32 = 16;
export let nodes: usize = 0;
export let nodeFree: u32 = NIL;
export let nodeCount: u32 = 0;
export let nodesUsed: u32 = 0;

@inline function node(i: u32): SegNode {
  return changetype<SegNode>(nodes + <usize>i * NODE_BYTES);
}

export function nodesInit(n: u32): i32 {
  const a = arenaAlloc(<usize>n * NODE_BYTES, 64);
  if (a < 0) return <i32>a;
  nodes = <usize>a;
  nodeCount = n;
  for (let i: u32 = 0; i < n; i++) node(i).next = i + 1 < n ? i + 1 : NIL;
  nodeFree = n > 0 ? 0 : NIL;
  return 0;
}
@inline export function nBuf(i: u32): u32 {
  return node(i).buf;
}
@inline export function nOff(i: u32): u32 {
  return <u32>node(i).off;
}
@inline export function nLen(i: u32): u32 {
  return <u32>node(i).len;
}
@inline export function nSeq(i: u32): u32 {
  return node(i).seq;
}
@inline export function nNext(i: u32): u32 {
  return node(i).next;
}
@inline export function nSetNext(i: u32, n: u32): void {
  node(i).next = n;
}
@inline export function nSet(i: u32, buf: u32, off: u32, len: u32, seq: u32): void {
  const p = node(i);
  p.buf = buf;
  p.off = <u16>off;
  p.len = <u16>len;
  p.seq = seq;
}
export function nodeAlloc(): u32 {
  const i = nodeFree;
  if (i == NIL) return NIL;
  nodeFree = nNext(i);
  nSetNext(i, NIL);
  nodesUsed++;
  return i;
}
export function nodeRelease(i: u32): void {
  nSetNext(i, nodeFree);
  nodeFree = i;
  nodesUsed--;
}

// ---- sequence arithmetic ----
@inline export function seqLt(a: u32, b: u32): bool {
  return <i32>(a - b) < 0;
}
@inline export function seqLe(a: u32, b: u32): bool {
  return <i32>(a - b) <= 0;
}
@inline export function seqGt(a: u32, b: u32): bool {
  return <i32>(a - b) > 0;
}
@inline export function seqGe(a: u32, b: u32): bool {
  return <i32>(a - b) >= 0;
}

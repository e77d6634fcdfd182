// Diagnostics and test accessors: a connection's state and TCB fields by name (INFO_*), the
// blocks and segment nodes in use. Nothing here changes state.

import { TF_USED, nodesUsed, tLip, tRip } from "./tcb";
import { tcb, maxConns, connsInUse, idIndex, ID_INDEX_BITS } from "./table";
import { addrCopy } from "../net/addr";
import { sbSacked } from "./sack";

/** State of connection id (ST_*), or -1. */
export function tcpState(id: u32): i32 {
  const i = idIndex(id);
  if (i >= maxConns) return -1;
  const t = tcb(i);
  if ((t.flags & TF_USED) == 0 || t.gen != (id >>> ID_INDEX_BITS)) return -1;
  return <i32>t.state;
}

// tcpInfo fields (mirrored by INFO in host/stack-abi.ts)
export const INFO_STATE: u32 = 0;
export const INFO_CWND: u32 = 1;
export const INFO_SSTHRESH: u32 = 2;
export const INFO_RTO: u32 = 3;
export const INFO_SRTT: u32 = 4;
export const INFO_SND_WND: u32 = 5;
export const INFO_MSS: u32 = 6;
export const INFO_FLAGS: u32 = 7;
export const INFO_REASM_SEGS: u32 = 8;
export const INFO_UNREAD: u32 = 9;
export const INFO_SND_QUEUED: u32 = 10;
export const INFO_BACKOFF: u32 = 11;
export const INFO_SND_WS: u32 = 12;
export const INFO_RCV_WS: u32 = 13;
export const INFO_IN_FLIGHT: u32 = 14;
export const INFO_SND_OUT: u32 = 15;
export const INFO_RTX_AT: u32 = 16;
export const INFO_PERSIST_AT: u32 = 17;
export const INFO_DUP_ACKS: u32 = 18;
export const INFO_RETRIES: u32 = 19;
export const INFO_RCV_NXT: u32 = 20;
export const INFO_SND_UNA: u32 = 21;
export const INFO_SACK_BLOCKS: u32 = 22;
export const INFO_SACKED: u32 = 23;
export const INFO_PMTU: u32 = 24;

/** Test and diagnostics accessor: one TCB field (INFO_*), -1 for a bad id or field. */
export function tcpInfo(id: u32, field: u32): f64 {
  const i = idIndex(id);
  if (i >= maxConns) return -1;
  const t = tcb(i);
  if (field == INFO_STATE) return <f64>t.state;
  if (field == INFO_CWND) return <f64>t.cwnd;
  if (field == INFO_SSTHRESH) return <f64>t.ssthresh;
  if (field == INFO_RTO) return t.rto;
  if (field == INFO_SRTT) return t.srtt;
  if (field == INFO_SND_WND) return <f64>t.sndWnd;
  if (field == INFO_MSS) return <f64>t.mss;
  if (field == INFO_FLAGS) return <f64>t.flags;
  if (field == INFO_REASM_SEGS) return <f64>t.rCount;
  if (field == INFO_UNREAD) return <f64>t.unread;
  if (field == INFO_SND_QUEUED) return <f64>(t.sndEnd - t.sndUna);
  if (field == INFO_BACKOFF) return <f64>t.backoff;
  if (field == INFO_SND_WS) return <f64>t.sndWs;
  if (field == INFO_RCV_WS) return <f64>t.rcvWs;
  if (field == INFO_IN_FLIGHT) return <f64>(t.sndNxt - t.sndUna);
  if (field == INFO_SND_OUT) return <f64>(t.sndMax - t.sndUna);
  if (field == INFO_RTX_AT) return t.rtxAt;
  if (field == INFO_PERSIST_AT) return t.persistAt;
  if (field == INFO_DUP_ACKS) return <f64>t.dupAcks;
  if (field == INFO_RETRIES) return <f64>t.retries;
  if (field == INFO_RCV_NXT) return <f64>t.rcvNxt;
  if (field == INFO_SND_UNA) return <f64>t.sndUna;
  if (field == INFO_SACK_BLOCKS) return <f64>t.sbN;
  if (field == INFO_SACKED) return <f64>sbSacked(t);
  if (field == INFO_PMTU) return <f64>t.pmtu;
  return -1;
}

/**
 * Copies connection id's local (which = 0) or remote (1) address, 16 bytes (IPv4 mapped), to
 * `out`; returns its family (4 or 6), or 0 for an unknown id.
 */
export function tcpAddr(id: u32, which: u32, out: usize): u32 {
  if (tcpState(id) < 0) return 0;
  const t = tcb(idIndex(id));
  addrCopy(out, which == 0 ? tLip(t) : tRip(t));
  return t.fam;
}
/** Count of TCBs in use (including TIME_WAIT). */
export function tcpConnCount(): u32 {
  return connsInUse;
}
/** Segment nodes in use (send queues and reassembly lists). */
export function tcpNodesUsed(): u32 {
  return nodesUsed;
}

// The TCP header and its options on the wire (RFC 9293 3.1, RFC 7323, RFC 2018): every field's
// byte offset and every option kind named once, the flag bits, and the writers that lay a header
// and its options into a frame. Reading a received segment is segment.ts's; deciding what to
// send is output.ts's.

import { ld16, st16, st32 } from "../net/g";

// ---- header fields: byte offsets ----
export const TCP_SRC_PORT: u32 = 0; // u16
export const TCP_DST_PORT: u32 = 2; // u16
export const TCP_SEQ: u32 = 4; // u32
export const TCP_ACK: u32 = 8; // u32
export const TCP_DATA_OFF: u32 = 12; // u8: header length in 32-bit words, high nibble
export const TCP_FLAGS: u32 = 13; // u8
export const TCP_WINDOW: u32 = 14; // u16
export const TCP_CHECKSUM: u32 = 16; // u16
export const TCP_URGENT: u32 = 18; // u16
/** Header length without options. */
export const TCP_HLEN: u32 = 20;

// ---- flags (TCP_FLAGS) ----
export const TH_FIN: u32 = 1;
export const TH_SYN: u32 = 2;
export const TH_RST: u32 = 4;
export const TH_PSH: u32 = 8;
export const TH_ACK: u32 = 16;
export const TH_URG: u32 = 32;
/** The flags this stack reads (ECE and CWR are ignored: no ECN). */
export const TH_MASK: u32 = 0x3f;

// ---- options: kinds and lengths ----
export const TCPOPT_EOL: u32 = 0;
export const TCPOPT_NOP: u32 = 1;
export const TCPOPT_MSS: u32 = 2;
export const TCPOPT_WSCALE: u32 = 3;
export const TCPOPT_SACK_PERM: u32 = 4;
export const TCPOPT_SACK: u32 = 5;
export const TCPOPT_TIMESTAMP: u32 = 8;
export const TCPOLEN_MSS: u32 = 4;
export const TCPOLEN_WSCALE: u32 = 3;
export const TCPOLEN_SACK_PERM: u32 = 2;
export const TCPOLEN_TIMESTAMP: u32 = 10;
// inside an option: byte offsets from its kind byte
export const OPT_KIND: u32 = 0;
export const OPT_LEN: u32 = 1;
export const OPT_DATA: u32 = 2; // MSS (u16), window shift (u8), SACK blocks, TSval
export const OPT_TS_ECR: u32 = 6; // TSecr (u32)
export const SACK_LEFT: u32 = 0; // in a block: left edge (u32)
export const SACK_RIGHT: u32 = 4; // right edge (u32)
/** A SACK option: kind, length, then blocks of two 32-bit edges. */
export const TCPOLEN_SACK_BASE: u32 = 2;
export const TCPOLEN_SACK_BLOCK: u32 = 8;
/** Largest window shift (RFC 7323 2.3). */
export const MAX_WSCALE: u32 = 14;

// Options are written as 32-bit words, padded in front with NOPs (the layout Linux sends).
/** MSS option: 4 bytes. */
export const OPTW_MSS: u32 = 4;
/** NOP + window scale: 4 bytes. */
export const OPTW_WSCALE: u32 = 4;
/** NOP NOP + SACK permitted: 4 bytes. */
export const OPTW_SACK_PERM: u32 = 4;
/** NOP NOP + timestamps: 12 bytes. */
export const OPTW_TIMESTAMP: u32 = 12;
/** NOP NOP + SACK header: 4 bytes, then 8 per block. */
export const OPTW_SACK_BASE: u32 = 4;

@inline export function thSrcPort(th: usize): u32 {
  return ld16(th + TCP_SRC_PORT);
}
@inline export function thDstPort(th: usize): u32 {
  return ld16(th + TCP_DST_PORT);
}
/** Header length in bytes, options included. */
@inline export function thLen(th: usize): u32 {
  return (<u32>load<u8>(th + TCP_DATA_OFF) >> 4) << 2;
}
@inline export function thFlags(th: usize): u32 {
  return <u32>load<u8>(th + TCP_FLAGS) & TH_MASK;
}

/** Writes the fixed header with a zero checksum and urgent pointer; options follow at th + TCP_HLEN. */
export function thWrite(th: usize, sport: u32, dport: u32, seq: u32, ack: u32, hlen: u32, flags: u32, wnd: u32): void {
  st16(th + TCP_SRC_PORT, sport);
  st16(th + TCP_DST_PORT, dport);
  st32(th + TCP_SEQ, seq);
  st32(th + TCP_ACK, ack);
  store<u8>(th + TCP_DATA_OFF, <u8>((hlen >> 2) << 4));
  store<u8>(th + TCP_FLAGS, <u8>flags);
  st16(th + TCP_WINDOW, wnd);
  store<u32>(th + TCP_CHECKSUM, 0); // checksum and urgent pointer
}

/** The checksum field's address in a header at th. */
@inline export function thChecksum(th: usize): usize {
  return th + TCP_CHECKSUM;
}

/** Writes an MSS option at o; returns the end. */
export function optMss(o: usize, mss: u32): usize {
  store<u8>(o + OPT_KIND, <u8>TCPOPT_MSS);
  store<u8>(o + OPT_LEN, <u8>TCPOLEN_MSS);
  st16(o + OPT_DATA, mss);
  return o + OPTW_MSS;
}
/** Writes NOP + window scale `shift` at o; returns the end. */
export function optWscale(o: usize, shift: u32): usize {
  st32(o, (TCPOPT_NOP << 24) | (TCPOPT_WSCALE << 16) | (TCPOLEN_WSCALE << 8) | shift);
  return o + OPTW_WSCALE;
}
/** Writes NOP NOP + SACK permitted at o; returns the end. */
export function optSackPerm(o: usize): usize {
  st32(o, (TCPOPT_NOP << 24) | (TCPOPT_NOP << 16) | (TCPOPT_SACK_PERM << 8) | TCPOLEN_SACK_PERM);
  return o + OPTW_SACK_PERM;
}
/** Writes NOP NOP + timestamps (TSval, TSecr) at o; returns the end. */
export function optTimestamp(o: usize, val: u32, ecr: u32): usize {
  st32(o, (TCPOPT_NOP << 24) | (TCPOPT_NOP << 16) | (TCPOPT_TIMESTAMP << 8) | TCPOLEN_TIMESTAMP);
  st32(o + 4, val);
  st32(o + 8, ecr);
  return o + OPTW_TIMESTAMP;
}
/** Writes NOP NOP + the header of a SACK option of `n` blocks at o; the blocks follow. */
export function optSackHeader(o: usize, n: u32): usize {
  st32(o, (TCPOPT_NOP << 24) | (TCPOPT_NOP << 16) | (TCPOPT_SACK << 8) | (TCPOLEN_SACK_BASE + n * TCPOLEN_SACK_BLOCK));
  return o + OPTW_SACK_BASE;
}
/** Writes one SACK block [l, r) at o; returns the end. */
export function optSackBlock(o: usize, l: u32, r: u32): usize {
  st32(o + SACK_LEFT, l);
  st32(o + SACK_RIGHT, r);
  return o + TCPOLEN_SACK_BLOCK;
}
/** Eight NOPs: fills a reserved SACK block slot with nothing. */
export function optNopBlock(o: usize): usize {
  store<u64>(o, 0x0101010101010101);
  return o + TCPOLEN_SACK_BLOCK;
}

// IPv4 (RFC 791, RFC 1122 host rules) and ICMP (RFC 792: echo reply, destination unreachable
// with a token-bucket rate limit, unreachables quoting our TCP segments handed to TCP). Owns the
// IPv4 and ICMP header layouts, the received datagram as L4 sees it (rx*), and the network-layer
// seam that TCP and UDP use (family-tagged pseudo-header sums, header writers and output), so
// that IPv6 can be added beside it.
//
// Fragments are reassembled by frag.ts. We never fragment: DF is set and TCP's MSS and UDP's
// payload limit follow the MTU.

import { bufAddr, bufAlloc, bufRef } from "../pool";
import { OWNER_NIC } from "../layout";
import { csumRaw, csumFold16, csumAddAt, csumFinish, csumU32, csumWord } from "./csum";
import {
  cfgGet, CFG_ICMP_RATE,
  count, C_IP_BAD_HDR, C_IP_BAD_CSUM, C_IP_BAD_LEN, C_IP_NOT_US, C_IP_BAD_SRC, C_IP_PROTO_UNREACH,
  C_ICMP_IN, C_ICMP_BAD, C_ICMP_ECHO_REPLIED, C_ICMP_RATELIMITED, C_ICMP_UNREACH_SENT, C_BUF_EXHAUSTED,
  ld16, ld32, st16, st32, now, ourIp, ourMask,
  pN, pb, po, pl, setP, txAdd, txReset, txPush, cfg, CFG_MAC, setPN,
} from "./g";
import { ETH_DST, ETH_SRC, ETH_ALEN, ETH_HLEN, ETHERTYPE_IP4, ethOutput, nextHop } from "./eth";
import { udpInput } from "./udp";
import { tcpInput, tcpIcmpUnreach } from "../tcp/input";
import { fragInput, fragDone, reasmHdrBuf, reasmHdrOff, reasmHl } from "./frag";

// ---- IPv4 header (RFC 791 3.1): byte offsets ----
const IP4_VER_IHL: u32 = 0; // version (high nibble), header length in 32-bit words (low nibble)
const IP4_TOS: u32 = 1; // type of service (DSCP/ECN)
const IP4_TOTAL_LEN: u32 = 2; // header and data
const IP4_ID: u32 = 4; // identification
const IP4_FRAG: u32 = 6; // flags (3 bits) and fragment offset (13 bits, in 8-byte units)
const IP4_TTL: u32 = 8;
const IP4_PROTO: u32 = 9; // PROTO_*
const IP4_CSUM: u32 = 10; // header checksum
const IP4_SRC: u32 = 12;
const IP4_DST: u32 = 16;
export const IP4_HLEN: u32 = 20; // header without options
const IP4_VERSION: u32 = 4;
const IP4_DF: u32 = 0x4000; // IP4_FRAG: don't fragment
export const IP4_MF: u32 = 0x2000; // IP4_FRAG: more fragments
export const IP4_FRAG_OFF: u32 = 0x1fff; // IP4_FRAG: fragment offset mask
export const IP4_TTL_DEFAULT: u32 = 64; // of the datagrams ICMP and UDP send

export const FAM_IP4: u32 = 4;
export const PROTO_ICMP: u32 = 1;
export const PROTO_TCP: u32 = 6;
export const PROTO_UDP: u32 = 17;

/** Header length in bytes (IHL * 4) of the IPv4 header at `h`. */
@inline function ip4Hl(h: usize): u32 {
  return (<u32>load<u8>(h + IP4_VER_IHL) & 15) << 2;
}
@inline function ip4Version(h: usize): u32 {
  return <u32>load<u8>(h + IP4_VER_IHL) >> 4;
}
@inline function ip4Proto(h: usize): u32 {
  return <u32>load<u8>(h + IP4_PROTO);
}

// ---- ICMP header (RFC 792): byte offsets ----
const ICMP_TYPE: u32 = 0; // ICMP_ECHO_*, ICMP_DEST_UNREACH
const ICMP_CODE: u32 = 1;
const ICMP_CSUM: u32 = 2; // over the ICMP message
const ICMP_REST: u32 = 4; // 4 bytes by type: echo identifier and sequence number, 0 in an unreachable
const ICMP_ID: u32 = 4; // echo: identifier
const ICMP_SEQ: u32 = 6; // echo: sequence number
const ICMP_HLEN: u32 = 8;
const ICMP_QUOTE: u32 = 8; // an error's quote of the offending datagram: its IP header, then
const ICMP_QUOTE_L4: u32 = 8; // this many bytes of its data (RFC 792: 64 bits), for TCP:
const QUOTE_SPORT: u32 = 0; // source port
const QUOTE_DPORT: u32 = 2; // destination port
const QUOTE_SEQ: u32 = 4; // sequence number
const ICMP_ECHO_REPLY: u32 = 0;
export const ICMP_DEST_UNREACH: u32 = 3;
const ICMP_ECHO_REQUEST: u32 = 8;
const ICMP_UNREACH_PROTO: u32 = 2; // ICMP_DEST_UNREACH codes
export const ICMP_UNREACH_PORT: u32 = 3;

// ---- the received datagram, as seen by L4 ----
export let rxFam: u32 = 0;
export let rxSrc: u32 = 0;
export let rxDst: u32 = 0;
export let rxBcast: bool = false;
export let rxL4Len: u32 = 0; // bytes of L4 data across pieces 0..pN-1 (piece 0 starts at the L4 header)
export let rxCsumOk: bool = false; // the L4 checksum was verified or completed by the NIC/host
export let rxIpHdr: usize = 0;
export let rxIpHl: u32 = 0;
export let rxFrame: usize = 0; // address of the Ethernet header
export let rxL4Avail0: u32 = 0;
export function setRxCsumOk(v: bool): void {
  rxCsumOk = v;
}

let ipId: u32 = 0;

/** Sum of the IPv4 pseudo header (unfolded, little-endian contributions). */
@inline export function pseudo4(src: u32, dst: u32, proto: u32, len: u32): u64 {
  return csumU32(src) + csumU32(dst) + csumWord(proto) + csumWord(len);
}

/** L4 checksum over the received pieces plus pseudo header: true if valid. */
export function rxL4CsumValid(proto: u32): bool {
  if (rxCsumOk) return true;
  let acc = pseudo4(rxSrc, rxDst, proto, rxL4Len);
  let pos: u32 = 0;
  for (let i: u32 = 0; i < pN; i++) {
    acc = csumAddAt(acc, bufAddr(pb(i)) + po(i), pl(i), pos);
    pos += pl(i);
  }
  return csumFold16(acc) == 0xffff;
}

/** Network header length for a family (the seam for IPv6). */
@inline export function netHdrLen(fam: u32): u32 {
  return IP4_HLEN;
}

/** Writes an IPv4 header at `p` (20 bytes, DF set). */
export function ip4WriteHdr(p: usize, src: u32, dst: u32, proto: u32, l4len: u32, ttl: u32): void {
  store<u8>(p + IP4_VER_IHL, <u8>((IP4_VERSION << 4) | (IP4_HLEN >> 2)));
  store<u8>(p + IP4_TOS, 0);
  st16(p + IP4_TOTAL_LEN, IP4_HLEN + l4len);
  st16(p + IP4_ID, ipId++ & 0xffff);
  st16(p + IP4_FRAG, IP4_DF);
  store<u8>(p + IP4_TTL, <u8>ttl);
  store<u8>(p + IP4_PROTO, <u8>proto);
  store<u16>(p + IP4_CSUM, 0);
  st32(p + IP4_SRC, src);
  st32(p + IP4_DST, dst);
  store<u16>(p + IP4_CSUM, csumFinish(csumRaw(p, IP4_HLEN)));
}

/** Sends the frame under construction (first piece: Ethernet + network header space). */
export function netOutput(fam: u32, dst: u32, conn: u32): void {
  ethOutput(nextHop(dst), ETHERTYPE_IP4, conn);
}

/** Handles an IPv4 frame; pieces hold the whole frame, piece 0 from the Ethernet header. */
export function ip4Input(frameLen: u32): void {
  const f = bufAddr(pb(0)) + po(0);
  rxFrame = f;
  const l0 = pl(0);
  if (l0 < ETH_HLEN + IP4_HLEN) {
    count(C_IP_BAD_HDR);
    return;
  }
  const ip = f + ETH_HLEN;
  const hl = ip4Hl(ip);
  if (ip4Version(ip) != IP4_VERSION || hl < IP4_HLEN || ETH_HLEN + hl > l0) {
    count(C_IP_BAD_HDR);
    return;
  }
  const tot = ld16(ip + IP4_TOTAL_LEN);
  if (tot < hl || tot > frameLen - ETH_HLEN) {
    count(C_IP_BAD_LEN);
    return;
  }
  if (csumFold16(csumRaw(ip, hl)) != 0xffff) {
    count(C_IP_BAD_CSUM);
    return;
  }
  const fragField = ld16(ip + IP4_FRAG) & (IP4_MF | IP4_FRAG_OFF);
  const src = ld32(ip + IP4_SRC);
  const dst = ld32(ip + IP4_DST);
  const subBcast = ourMask != 0xffffffff && dst == (ourIp | ~ourMask);
  const bcast = dst == 0xffffffff || subBcast;
  if (dst != ourIp && !bcast) {
    count(C_IP_NOT_US);
    return;
  }
  if (src == 0xffffffff || (src >>> 28) == 0xe || (src == ourIp && ourIp != 0) ||
      (ourMask != 0xffffffff && src == (ourIp | ~ourMask))) {
    count(C_IP_BAD_SRC);
    return;
  }
  rxFam = FAM_IP4;
  rxSrc = src;
  rxDst = dst;
  rxBcast = bcast;
  rxIpHdr = ip;
  rxIpHl = hl;
  // L4 view: piece 0 starts after the IP header (options skipped), total trimmed to tot - hl.
  const l4 = tot - hl;
  rxL4Len = l4;
  setP(0, pb(0), po(0) + ETH_HLEN + hl, l0 - ETH_HLEN - hl);
  let left = l4;
  let n: u32 = 0;
  for (let i: u32 = 0; i < pN; i++) {
    let l = pl(i);
    if (l > left) l = left;
    setP(i, pb(i), po(i), l);
    left -= l;
    n = i + 1;
    if (left == 0) break;
  }
  // drop empty trailing pieces (padding); keep piece 0 even when empty
  rxNp = n;
  rxL4Avail0 = pl(0);
  const proto = ip4Proto(ip);
  rxReasm = false;
  if (fragField != 0) {
    const id = ld16(ip + IP4_ID);
    const m = fragInput(src, dst, id, proto, fragField, l4, n, <u32>(ip - bufAddr(pb(0))), hl);
    if (m == 0) return;
    // the datagram is whole: its fragments are now the pieces
    rxReasm = true;
    rxNp = m;
    setPN(m);
    let total: u32 = 0;
    for (let k: u32 = 0; k < m; k++) total += pl(k);
    rxL4Len = total;
    rxL4Avail0 = pl(0);
    rxIpHdr = bufAddr(reasmHdrBuf) + reasmHdrOff;
    rxIpHl = reasmHl;
    dispatch(proto, bcast);
    fragDone(src, dst, id, proto);
    return;
  }
  dispatch(proto, bcast);
}

/** True while the datagram being handled was reassembled from fragments. */
export let rxReasm: bool = false;

function dispatch(proto: u32, bcast: bool): void {
  if (proto == PROTO_TCP) tcpInput();
  else if (proto == PROTO_UDP) udpInput();
  else if (proto == PROTO_ICMP) icmpInput();
  else {
    count(C_IP_PROTO_UNREACH);
    if (!bcast) icmpError(ICMP_DEST_UNREACH, ICMP_UNREACH_PROTO);
  }
}

/** Number of L4 pieces in use (after trimming). */
export let rxNp: u32 = 0;

// ---- ICMP ----
let icmpTokens: f64 = 0;
let icmpLast: f64 = -1;

function icmpAllow(): bool {
  const rate = <f64>cfgGet(CFG_ICMP_RATE);
  const burst = Math.floor(rate / 10) + 1;
  if (icmpLast < 0) icmpTokens = burst;
  else icmpTokens = min(burst, icmpTokens + (now - icmpLast) * rate / 1000);
  icmpLast = now;
  if (icmpTokens >= 1) {
    icmpTokens -= 1;
    return true;
  }
  count(C_ICMP_RATELIMITED);
  return false;
}

function icmpInput(): void {
  count(C_ICMP_IN);
  if (rxL4Len < ICMP_HLEN || rxL4Avail0 < ICMP_HLEN) {
    count(C_ICMP_BAD);
    return;
  }
  let acc: u64 = 0;
  let pos: u32 = 0;
  for (let i: u32 = 0; i < rxNp; i++) {
    acc = csumAddAt(acc, bufAddr(pb(i)) + po(i), pl(i), pos);
    pos += pl(i);
  }
  if (csumFold16(acc) != 0xffff) {
    count(C_ICMP_BAD);
    return;
  }
  const ic = bufAddr(pb(0)) + po(0);
  const type = <u32>load<u8>(ic + ICMP_TYPE);
  if (type == ICMP_DEST_UNREACH && !rxBcast) {
    // destination unreachable quoting one of our TCP segments: hand it to TCP (RFC 5927 checks there)
    const q = ic + ICMP_QUOTE;
    const avail = rxL4Avail0 - ICMP_QUOTE;
    if (avail >= IP4_HLEN + ICMP_QUOTE_L4) {
      const qhl = ip4Hl(q);
      if (ip4Version(q) == IP4_VERSION && qhl >= IP4_HLEN && avail >= qhl + ICMP_QUOTE_L4 &&
          ip4Proto(q) == PROTO_TCP && ld32(q + IP4_SRC) == ourIp) {
        const l4 = q + qhl;
        tcpIcmpUnreach(<u32>load<u8>(ic + ICMP_CODE), ld32(q + IP4_DST), ld16(l4 + QUOTE_SPORT), ld16(l4 + QUOTE_DPORT),
          ld32(l4 + QUOTE_SEQ));
      }
    }
    return;
  }
  // no echo reply to a broadcast, nor to a reassembled request (the reply would exceed the MTU)
  if (type != ICMP_ECHO_REQUEST || load<u8>(ic + ICMP_CODE) != 0 || rxBcast || rxReasm) return;
  // Echo reply in place: the request's buffers become the reply (no copy).
  const f = rxFrame;
  memory.copy(f + ETH_DST, f + ETH_SRC, ETH_ALEN);
  memory.copy(f + ETH_SRC, cfg + CFG_MAC, ETH_ALEN);
  const ip = rxIpHdr;
  // rewrite the IP header without options
  if (rxIpHl != IP4_HLEN) {
    // move the ICMP start: header sits right before the L4 data in piece 0
    const nip = ic - IP4_HLEN;
    memory.copy(nip - ETH_HLEN, f, ETH_HLEN);
    ip4WriteHdr(nip, ourIp, rxSrc, PROTO_ICMP, rxL4Len, IP4_TTL_DEFAULT);
  } else {
    ip4WriteHdr(ip, rxDst, rxSrc, PROTO_ICMP, rxL4Len, IP4_TTL_DEFAULT);
  }
  // identifier, sequence number and data stay as they came
  store<u8>(ic + ICMP_TYPE, <u8>ICMP_ECHO_REPLY);
  store<u16>(ic + ICMP_CSUM, 0);
  acc = 0;
  pos = 0;
  for (let i: u32 = 0; i < rxNp; i++) {
    acc = csumAddAt(acc, bufAddr(pb(i)) + po(i), pl(i), pos);
    pos += pl(i);
  }
  store<u16>(ic + ICMP_CSUM, csumFinish(acc));
  txReset();
  const start = po(0) - IP4_HLEN - ETH_HLEN;
  for (let i: u32 = 0; i < rxNp; i++) {
    if (bufRef(pb(i)) < 0) return;
    if (i == 0) txAdd(pb(0), start, pl(0) + IP4_HLEN + ETH_HLEN);
    else txAdd(pb(i), po(i), pl(i));
  }
  txPush(0);
  count(C_ICMP_ECHO_REPLIED);
}

/** Sends ICMP destination unreachable (type, code) quoting the received datagram. */
export function icmpError(type: u32, code: u32): void {
  if (rxBcast) return;
  if (!icmpAllow()) return;
  const b = bufAlloc(OWNER_NIC);
  if (b < 0) {
    count(C_BUF_EXHAUSTED);
    return;
  }
  const p = bufAddr(<u32>b);
  let q = rxIpHl + ICMP_QUOTE_L4;
  if (q > rxIpHl + rxL4Avail0) q = rxIpHl + rxL4Avail0;
  const ic = p + ETH_HLEN + IP4_HLEN;
  store<u8>(ic + ICMP_TYPE, <u8>type);
  store<u8>(ic + ICMP_CODE, <u8>code);
  store<u16>(ic + ICMP_CSUM, 0);
  store<u32>(ic + ICMP_REST, 0);
  memory.copy(ic + ICMP_QUOTE, rxIpHdr, q); // the quote: the offending header + 8 bytes (copy by RFC 792)
  store<u16>(ic + ICMP_CSUM, csumFinish(csumRaw(ic, ICMP_HLEN + q)));
  ip4WriteHdr(p + ETH_HLEN, ourIp, rxSrc, PROTO_ICMP, ICMP_HLEN + q, IP4_TTL_DEFAULT);
  txReset();
  txAdd(<u32>b, 0, ETH_HLEN + IP4_HLEN + ICMP_HLEN + q);
  count(C_ICMP_UNREACH_SENT);
  netOutput(FAM_IP4, rxSrc, 0);
}

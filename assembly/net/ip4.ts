// IPv4 (RFC 791/1122 host rules), ICMP (RFC 792: echo reply, destination unreachable with a
// token-bucket rate limit) and the network-layer seam that TCP and UDP use (family-tagged
// pseudo-header sums, header writers and output), so that IPv6 can be added beside it.
//
// Fragments are not reassembled: any datagram with MF set or a non-zero fragment offset is
// dropped and counted (C_IP_FRAG_DROP). We never fragment either: DF is set and TCP's MSS and
// UDP's payload limit follow the MTU.

import { bufAddr, bufAlloc, bufRef } from "../pool";
import { OWNER_NIC } from "../layout";
import { csumRaw, csumFold16, csumAddAt, csumFinish, csumU32, csumWord } from "./csum";
import {
  cfgGet, CFG_ICMP_RATE,
  count, C_IP_BAD_HDR, C_IP_BAD_CSUM, C_IP_BAD_LEN, C_IP_NOT_US, C_IP_FRAG_DROP, C_IP_BAD_SRC, C_IP_PROTO_UNREACH,
  C_ICMP_IN, C_ICMP_BAD, C_ICMP_ECHO_REPLIED, C_ICMP_RATELIMITED, C_ICMP_UNREACH_SENT, C_BUF_EXHAUSTED,
  ld16, ld32, st16, st32, now, ourIp, ourMask,
  pN, pb, po, pl, setP, txAdd, txReset, txPush, cfg, CFG_MAC, setPN,
} from "./g";
import { ETH_HLEN, ETHERTYPE_IP4, ethOutput, nextHop } from "./eth";
import { udpInput } from "./udp";
import { tcpInput, tcpIcmpUnreach } from "../tcp/input";
import { fragInput, fragDone, reasmHdrBuf, reasmHdrOff, reasmHl } from "./frag";

export const FAM_IP4: u32 = 4;
export const PROTO_ICMP: u32 = 1;
export const PROTO_TCP: u32 = 6;
export const PROTO_UDP: u32 = 17;
export const IP4_HLEN: u32 = 20;

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
  store<u8>(p, 0x45);
  store<u8>(p + 1, 0);
  st16(p + 2, IP4_HLEN + l4len);
  st16(p + 4, ipId++ & 0xffff);
  st16(p + 6, 0x4000);
  store<u8>(p + 8, <u8>ttl);
  store<u8>(p + 9, <u8>proto);
  store<u16>(p + 10, 0);
  st32(p + 12, src);
  st32(p + 16, dst);
  store<u16>(p + 10, csumFinish(csumRaw(p, 20)));
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
  if (l0 < ETH_HLEN + 20) {
    count(C_IP_BAD_HDR);
    return;
  }
  const ip = f + ETH_HLEN;
  const vh = <u32>load<u8>(ip);
  const hl = (vh & 15) << 2;
  if ((vh >> 4) != 4 || hl < 20 || ETH_HLEN + hl > l0) {
    count(C_IP_BAD_HDR);
    return;
  }
  const tot = ld16(ip + 2);
  if (tot < hl || tot > frameLen - ETH_HLEN) {
    count(C_IP_BAD_LEN);
    return;
  }
  if (csumFold16(csumRaw(ip, hl)) != 0xffff) {
    count(C_IP_BAD_CSUM);
    return;
  }
  const fragField = ld16(ip + 6) & 0x3fff;
  const src = ld32(ip + 12);
  const dst = ld32(ip + 16);
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
  const proto = <u32>load<u8>(ip + 9);
  rxReasm = false;
  if (fragField != 0) {
    const id = ld16(ip + 4);
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
    if (!bcast) icmpError(3, 2);
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
  if (rxL4Len < 8 || rxL4Avail0 < 8) {
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
  const type = <u32>load<u8>(ic);
  if (type == 3 && !rxBcast) {
    // destination unreachable quoting one of our TCP segments: hand it to TCP (RFC 5927 checks there)
    const q = ic + 8;
    const avail = rxL4Avail0 - 8;
    if (avail >= 28) {
      const qhl = (<u32>load<u8>(q) & 15) << 2;
      if ((load<u8>(q) >> 4) == 4 && qhl >= 20 && avail >= qhl + 8 && load<u8>(q + 9) == PROTO_TCP &&
          ld32(q + 12) == ourIp) {
        tcpIcmpUnreach(<u32>load<u8>(ic + 1), ld32(q + 16), ld16(q + qhl), ld16(q + qhl + 2), ld32(q + qhl + 4));
      }
    }
    return;
  }
  // no echo reply to a broadcast, nor to a reassembled request (the reply would exceed the MTU)
  if (type != 8 || load<u8>(ic + 1) != 0 || rxBcast || rxReasm) return;
  // Echo reply in place: the request's buffers become the reply (no copy).
  const f = rxFrame;
  memory.copy(f, f + 6, 6);
  memory.copy(f + 6, cfg + CFG_MAC, 6);
  const ip = rxIpHdr;
  // rewrite the IP header without options
  const tot = IP4_HLEN + rxL4Len;
  if (rxIpHl != IP4_HLEN) {
    // move the ICMP start: header sits right before the L4 data in piece 0
    const nip = ic - IP4_HLEN;
    memory.copy(nip - ETH_HLEN, f, ETH_HLEN);
    ip4WriteHdr(nip, ourIp, rxSrc, PROTO_ICMP, rxL4Len, 64);
  } else {
    ip4WriteHdr(ip, rxDst, rxSrc, PROTO_ICMP, rxL4Len, 64);
  }
  store<u8>(ic, 0);
  store<u16>(ic + 2, 0);
  acc = 0;
  pos = 0;
  for (let i: u32 = 0; i < rxNp; i++) {
    acc = csumAddAt(acc, bufAddr(pb(i)) + po(i), pl(i), pos);
    pos += pl(i);
  }
  store<u16>(ic + 2, csumFinish(acc));
  txReset();
  const start = po(0) - IP4_HLEN - ETH_HLEN;
  for (let i: u32 = 0; i < rxNp; i++) {
    if (bufRef(pb(i)) < 0) return;
    if (i == 0) txAdd(pb(0), start, pl(0) + IP4_HLEN + ETH_HLEN);
    else txAdd(pb(i), po(i), pl(i));
  }
  txPush(0);
  count(C_ICMP_ECHO_REPLIED);
  // tot is the IP length: kept for clarity of the header rewrite above
  tot;
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
  let q = rxIpHl + 8;
  if (q > rxIpHl + rxL4Avail0) q = rxIpHl + rxL4Avail0;
  const ic = p + ETH_HLEN + IP4_HLEN;
  store<u8>(ic, <u8>type);
  store<u8>(ic + 1, <u8>code);
  store<u16>(ic + 2, 0);
  store<u32>(ic + 4, 0);
  memory.copy(ic + 8, rxIpHdr, q); // the quote: the offending header + 8 bytes (copy by RFC 792)
  store<u16>(ic + 2, csumFinish(csumRaw(ic, 8 + q)));
  ip4WriteHdr(p + ETH_HLEN, ourIp, rxSrc, PROTO_ICMP, 8 + q, 64);
  txReset();
  txAdd(<u32>b, 0, ETH_HLEN + IP4_HLEN + 8 + q);
  count(C_ICMP_UNREACH_SENT);
  netOutput(FAM_IP4, rxSrc, 0);
}

// IPv4 (RFC 791, RFC 1122 host rules) and ICMP (RFC 792: echo reply, destination unreachable
// with a token-bucket rate limit shared with ICMPv6, unreachables quoting our TCP segments handed
// to TCP, "fragmentation needed" lowering a path MTU: RFC 1191). Owns the IPv4 and ICMP header
// layouts; fills the received datagram's view (rx* in ip.ts) that L4 reads.
//
// Fragments are reassembled by frag.ts. We never fragment: DF is set and TCP's MSS and UDP's
// payload limit follow the MTU.

import { bufAddr, bufAlloc, bufRef } from "../pool";
import { OWNER_NIC } from "../layout";
import { csumRaw, csumFold16, csumFinish } from "./csum";
import {
  cfgGet, CFG_ICMP_RATE,
  count, C_IP_BAD_HDR, C_IP_BAD_CSUM, C_IP_BAD_LEN, C_IP_NOT_US, C_IP_BAD_SRC, C_IP_PROTO_UNREACH,
  C_ICMP_IN, C_ICMP_BAD, C_ICMP_ECHO_REPLIED, C_ICMP_RATELIMITED, C_ICMP_UNREACH_SENT, C_BUF_EXHAUSTED,
  ld16, ld32, st16, st32, now, ourIp, ourMask,
  pN, pb, po, pl, setP, txAdd, txReset, txPush, cfg, CFG_MAC, setPN,
} from "./g";
import { ETH_DST, ETH_SRC, ETH_ALEN, ETH_HLEN, ETHERTYPE_IP4, nextHop } from "./eth";
import { ethOutput } from "./neigh";
import { FAM_IP4, addrSet4 } from "./addr";
import {
  PROTO_ICMP, PROTO_TCP, PROTO_UDP, rxSrcA, rxDstA, rxSrc, rxDst, rxBcast, rxL4Len, rxNp, rxIpHdr, rxIpHl, rxFrame,
  rxL4Avail0, rxReasm, setRx, setRxL4, setRxFrame, l4View, reasmView, sumPieces,
} from "./ip";
import { udpInput } from "./udp";
import { tcpInput, tcpIcmpUnreach, tcpIcmpPtb } from "../tcp/input";
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
const ICMP_NEXT_MTU: u32 = 6; // fragmentation needed: the next hop's MTU (RFC 1191 4)
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
const ICMP_UNREACH_NEEDFRAG: u32 = 4;

let ipId: u32 = 0;
const hopA: usize = memory.data(16, 16);
const quoteA: usize = memory.data(16, 16);

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

/** Sends the frame under construction (first piece: Ethernet + IPv4 header) to `dst`. */
export function ip4Output(dst: u32, conn: u32): void {
  ethOutput(ip4NextHop(dst), ETHERTYPE_IP4, conn);
}

/** Next hop for `dst` as a 16-byte address (the twin of ip6NextHop), or 0 for a broadcast. */
export function ip4NextHop(dst: u32): usize {
  const hop = nextHop(dst);
  if (hop == 0) return 0;
  addrSet4(hopA, hop);
  return hopA;
}

/** Handles an IPv4 frame; pieces hold the whole frame, piece 0 from the Ethernet header. */
export function ip4Input(frameLen: u32): void {
  const f = bufAddr(pb(0)) + po(0);
  setRxFrame(f);
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
  setRx(FAM_IP4, src, dst, bcast, !bcast);
  addrSet4(rxSrcA, src);
  addrSet4(rxDstA, dst);
  // L4 view: piece 0 starts after the IP header (options skipped), total trimmed to tot - hl.
  const l4 = tot - hl;
  const n = l4View(ETH_HLEN + hl, l4);
  setRxL4(ip, hl, l4, n, false);
  const proto = ip4Proto(ip);
  if (fragField != 0) {
    const id = ld16(ip + IP4_ID);
    const m = fragInput(FAM_IP4, rxSrcA, rxDstA, id, proto, (fragField & IP4_FRAG_OFF) << 3, (fragField & IP4_MF) != 0,
      l4, n, <u32>(ip - bufAddr(pb(0))), hl);
    if (m == 0) return;
    // the datagram is whole: its fragments are now the pieces
    reasmView(m, bufAddr(reasmHdrBuf) + reasmHdrOff, reasmHl);
    dispatch(proto, bcast);
    fragDone(FAM_IP4, rxSrcA, rxDstA, id, proto);
    return;
  }
  dispatch(proto, bcast);
}

function dispatch(proto: u32, bcast: bool): void {
  if (proto == PROTO_TCP) tcpInput();
  else if (proto == PROTO_UDP) udpInput();
  else if (proto == PROTO_ICMP) icmpInput();
  else {
    count(C_IP_PROTO_UNREACH);
    if (!bcast) icmpError(ICMP_DEST_UNREACH, ICMP_UNREACH_PROTO);
  }
}

// ---- ICMP ----
let icmpTokens: f64 = 0;
let icmpLast: f64 = -1;

/** The ICMP error token bucket (CFG_ICMP_RATE a second), shared by ICMP and ICMPv6. */
export function icmpAllow(): bool {
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
  if (csumFold16(sumPieces(0, rxNp)) != 0xffff) {
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
        const code = <u32>load<u8>(ic + ICMP_CODE);
        addrSet4(quoteA, ld32(q + IP4_DST));
        if (code == ICMP_UNREACH_NEEDFRAG) {
          // RFC 1191: the next hop's MTU, or (an old router that leaves it 0) the smallest we use
          tcpIcmpPtb(quoteA, ld16(l4 + QUOTE_SPORT), ld16(l4 + QUOTE_DPORT), ld32(l4 + QUOTE_SEQ), ld16(ic + ICMP_NEXT_MTU));
        } else {
          tcpIcmpUnreach(code == ICMP_UNREACH_PROTO || code == ICMP_UNREACH_PORT, quoteA, ld16(l4 + QUOTE_SPORT),
            ld16(l4 + QUOTE_DPORT), ld32(l4 + QUOTE_SEQ));
        }
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
  store<u16>(ic + ICMP_CSUM, csumFinish(sumPieces(0, rxNp)));
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
  ip4Output(rxSrc, 0);
}

// ICMPv6 (RFC 4443): echo replies (in place, like ICMP's), the errors we send (destination
// unreachable for a closed UDP port, parameter problem for a header chain we refuse: rate-limited
// by ICMP's token bucket, never about an error or to a multicast group but for RFC 4443 2.4 (e.3)),
// and the errors we receive that quote our TCP segments: destination unreachable and parameter
// problem (hard errors abort a connection attempt), packet too big (the path MTU, RFC 8201).
// Neighbor discovery's messages go to nd.ts.

import { bufAddr, bufAlloc, bufRef } from "../pool";
import { OWNER_NIC } from "../layout";
import { csumRaw, csumFold16, csumFinish } from "./csum";
import {
  count, C_ICMP6_IN, C_ICMP6_BAD, C_ICMP_ECHO_REPLIED, C_ICMP_UNREACH_SENT, C_BUF_EXHAUSTED, cfg, CFG_MAC,
  ld16, ld32, st32, pb, po, pl, txAdd, txReset, txPush,
} from "./g";
import { ETH_DST, ETH_SRC, ETH_ALEN, ETH_HLEN } from "./eth";
import { FAM_IP6, addrCopy, addr6IsMulticast, addrIsZero } from "./addr";
import {
  PROTO_TCP, PROTO_ICMP6, pseudoSum, rxSrcA, rxDstA, rxBcast, rxToUs, rxL4Len, rxNp, rxIpHdr, rxIpHl, rxFrame,
  rxL4Avail0, rxReasm, sumPieces,
} from "./ip";
import { IP6_HLEN, IP6_NXT, IP6_SRC, IP6_DST, IP6_MIN_MTU, IP6_HLIM_DEFAULT, ip6WriteHdr, ip6Output, ip6Src, ip6IsOurs } from "./ip6";
import { icmpAllow } from "./ip4";
import { ndInput, ND_NS, ND_NA } from "./nd";
import { tcpIcmpUnreach, tcpIcmpPtb } from "../tcp/input";

// ---- ICMPv6 header (RFC 4443 2.1): byte offsets ----
export const ICMP6_TYPE: u32 = 0;
export const ICMP6_CODE: u32 = 1;
export const ICMP6_CSUM: u32 = 2;
const ICMP6_PARAM: u32 = 4; // by type: echo id/seq, packet too big's MTU, parameter problem's pointer
export const ICMP6_HLEN: u32 = 8;
const QUOTE_SPORT: u32 = 0; // in a quoted TCP header: source port,
const QUOTE_DPORT: u32 = 2; // destination port,
const QUOTE_SEQ: u32 = 4; // sequence number

export const ICMP6_DEST_UNREACH: u32 = 1;
const ICMP6_PACKET_TOO_BIG: u32 = 2;
export const ICMP6_PARAM_PROB: u32 = 4;
const ICMP6_ECHO_REQUEST: u32 = 128;
const ICMP6_ECHO_REPLY: u32 = 129;
export const UNREACH6_PORT: u32 = 4; // ICMP6_DEST_UNREACH codes
export const PP_HEADER: u32 = 0; // ICMP6_PARAM_PROB codes: erroneous header field,
export const PP_NEXT_HEADER: u32 = 1; // unrecognized next header,
export const PP_OPTION: u32 = 2; // unrecognized option
const quoteA: usize = memory.data(16, 16);
const srcA: usize = memory.data(16, 16);

/** Checksum of the ICMPv6 message in the pieces: true if valid. */
function csumValid(): bool {
  return csumFold16(sumPieces(pseudoSum(FAM_IP6, rxSrcA, rxDstA, PROTO_ICMP6, rxL4Len), rxNp)) == 0xffff;
}

export function icmp6Input(): void {
  count(C_ICMP6_IN);
  if (rxL4Len < ICMP6_HLEN || rxL4Avail0 < ICMP6_HLEN || !csumValid()) {
    count(C_ICMP6_BAD);
    return;
  }
  const ic = bufAddr(pb(0)) + po(0);
  const type = <u32>load<u8>(ic + ICMP6_TYPE);
  const code = <u32>load<u8>(ic + ICMP6_CODE);
  if (type == ND_NS || type == ND_NA) {
    ndInput(type, ic, rxL4Avail0);
    return;
  }
  if (addrIsZero(rxSrcA)) return; // only NDP may come from the unspecified address
  if (type == ICMP6_DEST_UNREACH || type == ICMP6_PACKET_TOO_BIG || type == ICMP6_PARAM_PROB) {
    if (!rxToUs) return;
    // an error quoting one of our TCP segments (the quote: its IPv6 header, then its TCP header)
    const q = ic + ICMP6_HLEN;
    if (rxL4Avail0 < ICMP6_HLEN + IP6_HLEN + 8 || <u32>load<u8>(q + IP6_NXT) != PROTO_TCP || !ip6IsOurs(q + IP6_SRC)) return;
    const th = q + IP6_HLEN;
    addrCopy(quoteA, q + IP6_DST);
    const sport = ld16(th + QUOTE_SPORT);
    const dport = ld16(th + QUOTE_DPORT);
    const seq = ld32(th + QUOTE_SEQ);
    if (type == ICMP6_PACKET_TOO_BIG) tcpIcmpPtb(quoteA, sport, dport, seq, ld32(ic + ICMP6_PARAM));
    else tcpIcmpUnreach((type == ICMP6_DEST_UNREACH && code == UNREACH6_PORT) || (type == ICMP6_PARAM_PROB && code == PP_NEXT_HEADER),
      quoteA, sport, dport, seq);
    return;
  }
  // echo: answer requests to our unicast addresses (not reassembled ones: the reply would need fragmenting)
  if (type != ICMP6_ECHO_REQUEST || code != 0 || !rxToUs || rxReasm) return;
  const f = rxFrame;
  memory.copy(f + ETH_DST, f + ETH_SRC, ETH_ALEN);
  memory.copy(f + ETH_SRC, cfg + CFG_MAC, ETH_ALEN);
  // the reply's IPv6 header sits right before the ICMPv6 message (extension headers dropped)
  const nip = ic - IP6_HLEN;
  if (rxIpHl != IP6_HLEN) memory.copy(nip - ETH_HLEN, f, ETH_HLEN);
  addrCopy(srcA, rxDstA);
  addrCopy(quoteA, rxSrcA);
  ip6WriteHdr(nip, srcA, quoteA, PROTO_ICMP6, rxL4Len, IP6_HLIM_DEFAULT);
  // identifier, sequence number and data stay as they came; the pseudo header's sum is the
  // same with source and destination swapped, so only the type changes the checksum
  store<u8>(ic + ICMP6_TYPE, <u8>ICMP6_ECHO_REPLY);
  store<u16>(ic + ICMP6_CSUM, 0);
  store<u16>(ic + ICMP6_CSUM, csumFinish(sumPieces(pseudoSum(FAM_IP6, srcA, quoteA, PROTO_ICMP6, rxL4Len), rxNp)));
  txReset();
  const start = po(0) - IP6_HLEN - ETH_HLEN;
  for (let i: u32 = 0; i < rxNp; i++) {
    if (bufRef(pb(i)) < 0) return;
    if (i == 0) txAdd(pb(0), start, pl(0) + IP6_HLEN + ETH_HLEN);
    else txAdd(pb(i), po(i), pl(i));
  }
  txPush(0);
  count(C_ICMP_ECHO_REPLIED);
}

/**
 * Sends an ICMPv6 error (type, code, its 32-bit parameter) about the datagram being handled,
 * quoting as much of it as fits in the minimum MTU (RFC 4443 2.4 (c)); from piece 0 only.
 */
export function icmp6Error(type: u32, code: u32, param: u32): void {
  if (addrIsZero(rxSrcA) || addr6IsMulticast(rxSrcA)) return;
  if (rxBcast && !(type == ICMP6_PARAM_PROB && code == PP_OPTION)) return;
  if (!icmpAllow()) return;
  if (rxToUs) addrCopy(srcA, rxDstA);
  else if (!ip6Src(rxSrcA, srcA)) return;
  const b = bufAlloc(OWNER_NIC);
  if (b < 0) {
    count(C_BUF_EXHAUSTED);
    return;
  }
  const p = bufAddr(<u32>b);
  let q = rxIpHl + rxL4Avail0;
  const room = IP6_MIN_MTU - IP6_HLEN - ICMP6_HLEN;
  if (q > room) q = room;
  const ic = p + ETH_HLEN + IP6_HLEN;
  store<u8>(ic + ICMP6_TYPE, <u8>type);
  store<u8>(ic + ICMP6_CODE, <u8>code);
  store<u16>(ic + ICMP6_CSUM, 0);
  st32(ic + ICMP6_PARAM, param);
  memory.copy(ic + ICMP6_HLEN, rxIpHdr, q); // the quote (a copy by RFC 4443)
  addrCopy(quoteA, rxSrcA);
  const acc = pseudoSum(FAM_IP6, srcA, quoteA, PROTO_ICMP6, ICMP6_HLEN + q) + <u64>csumFold16(csumRaw(ic, ICMP6_HLEN + q));
  store<u16>(ic + ICMP6_CSUM, csumFinish(acc));
  ip6WriteHdr(p + ETH_HLEN, srcA, quoteA, PROTO_ICMP6, ICMP6_HLEN + q, IP6_HLIM_DEFAULT);
  txReset();
  txAdd(<u32>b, 0, ETH_HLEN + IP6_HLEN + ICMP6_HLEN + q);
  count(C_ICMP_UNREACH_SENT);
  ip6Output(quoteA, 0);
}

// IPv6 (RFC 8200) for a host: our addresses (the link-local one made from our Ethernet address,
// RFC 4291 2.5.6 / modified EUI-64, and the configured one) with their duplicate address
// detection state (nd.ts runs it); the IPv6 header's layout, its writer and output (next hop:
// on-link or the configured router; multicast to its group MAC, RFC 2464 7); input: header
// checks, the extension header chain (hop-by-hop and destination options skipped by their
// options' rules, a routing header with segments left refused, the fragment header handed to
// frag.ts), then TCP, UDP or ICMPv6 (icmp6.ts).

import { bufAddr } from "../pool";
import {
  cfg, CFG_MAC, CFG_IP6, CFG_IP6_PREFIX, CFG_GW6, count, C_IP6_BAD_HDR, C_IP6_NOT_US, C_IP6_BAD_SRC,
  C_IP6_EXTHDR_DROP, C_IP_FRAG_DROP, ld16, ld32, st16, st32, pb, po, pl,
} from "./g";
import { ETH_HLEN, ETHERTYPE_IP6 } from "./eth";
import { ethOutput } from "./neigh";
import {
  ADDR_LEN, FAM_IP6, addrEq, addrCopy, addrIsZero, addr6IsMulticast, addr6IsLinkLocal, addrPrefixEq, addrIs4,
} from "./addr";
import { PROTO_TCP, PROTO_UDP, PROTO_ICMP6, rxSrcA, rxDstA, setRx, setRxL4, setRxFrame, l4View, reasmView } from "./ip";
import { fragInput, fragDone, reasmHdrBuf, reasmHdrOff, reasmHl } from "./frag";
import { udpInput } from "./udp";
import { tcpInput } from "../tcp/input";
import { icmp6Input, icmp6Error, ICMP6_PARAM_PROB, PP_HEADER, PP_NEXT_HEADER, PP_OPTION } from "./icmp6";

// ---- IPv6 header (RFC 8200 3): byte offsets ----
const IP6_VER_TC_FL: u32 = 0; // version (4 bits), traffic class (8), flow label (20)
const IP6_PLEN: u32 = 4; // payload length: the bytes after this header (extension headers included)
export const IP6_NXT: u32 = 6; // next header
const IP6_HLIM: u32 = 7; // hop limit
export const IP6_SRC: u32 = 8;
export const IP6_DST: u32 = 24;
export const IP6_HLEN: u32 = 40;
const IP6_VERSION: u32 = 6;
export const IP6_MIN_MTU: u32 = 1280; // RFC 8200 5
export const IP6_HLIM_DEFAULT: u32 = 64;

// ---- extension headers (RFC 8200 4) ----
const NH_HOPOPTS: u32 = 0;
const NH_ROUTING: u32 = 43;
const NH_FRAGMENT: u32 = 44;
const NH_NONE: u32 = 59;
const NH_DSTOPTS: u32 = 60;
const EXT_NXT: u32 = 0; // every extension header but the fragment header: next header,
const EXT_LEN: u32 = 1; // then its length in 8-byte units, not counting the first 8
const RH_SEGLEFT: u32 = 3; // routing header: segments left
const FH_OFFLG: u32 = 2; // fragment header: offset (13 bits, 8-byte units) << 3 | M
const FH_ID: u32 = 4; // identification
const FH_LEN: u32 = 8;
const FH_M: u32 = 1;
const OPT_PAD1: u32 = 0;
/** Extension headers one datagram may carry before its upper layer (a chain longer than this is refused). */
const MAX_EXT: u32 = 8;

// ---- our addresses: k = 0 link-local, 1 the configured one ----
export const A6_NONE: u32 = 0;
export const A6_TENTATIVE: u32 = 1; // duplicate address detection running: not ours to use yet (RFC 4862 5.4)
export const A6_PREFERRED: u32 = 2;
export const A6_DUPLICATE: u32 = 3; // another node has it: never used
export const A6_COUNT: u32 = 2;
const addrs: usize = memory.data(<i32>(A6_COUNT * ADDR_LEN), 16);
const states: usize = memory.data(<i32>(A6_COUNT * 4), 4);
let prefixLen: u32 = 64;
export let ip6On: bool = false;
const hopA: usize = memory.data(16, 16);
const groupMac: usize = memory.data(8, 8);

@inline export function ip6Addr(k: u32): usize {
  return addrs + <usize>k * ADDR_LEN;
}
@inline export function ip6State(k: u32): u32 {
  return load<u32>(states + (<usize>k << 2));
}
export function ip6SetState(k: u32, s: u32): void {
  store<u32>(states + (<usize>k << 2), s);
}

/** Set-up from the configuration block: IPv6 is on when CFG_IP6 holds an address. */
export function ip6Init(): void {
  memory.fill(addrs, 0, A6_COUNT * ADDR_LEN);
  memory.fill(states, 0, A6_COUNT * 4);
  const g = cfg + CFG_IP6;
  ip6On = !addrIsZero(g) && !addr6IsMulticast(g) && !addrIs4(g);
  if (!ip6On) return;
  const pl6 = load<u32>(cfg + CFG_IP6_PREFIX);
  prefixLen = pl6 == 0 || pl6 > 128 ? 64 : pl6;
  // fe80::/64 with the interface identifier from our MAC (modified EUI-64: U/L bit flipped, ff:fe in the middle)
  const ll = ip6Addr(0);
  store<u16>(ll, 0x80fe);
  const m = cfg + CFG_MAC;
  store<u8>(ll + 8, load<u8>(m) ^ 2);
  store<u8>(ll + 9, load<u8>(m + 1));
  store<u8>(ll + 10, load<u8>(m + 2));
  store<u8>(ll + 11, 0xff);
  store<u8>(ll + 12, 0xfe);
  store<u8>(ll + 13, load<u8>(m + 3));
  store<u8>(ll + 14, load<u8>(m + 4));
  store<u8>(ll + 15, load<u8>(m + 5));
  addrCopy(ip6Addr(1), g);
  ip6SetState(0, A6_TENTATIVE);
  ip6SetState(1, addrEq(g, ll) ? A6_NONE : A6_TENTATIVE);
}

/** Which of our addresses `a` is (any state), or -1. */
export function ip6Which(a: usize): i32 {
  for (let k: u32 = 0; k < A6_COUNT; k++) {
    if (ip6State(k) != A6_NONE && addrEq(ip6Addr(k), a)) return <i32>k;
  }
  return -1;
}
/** True if `a` is one of our addresses in use (preferred). */
export function ip6IsOurs(a: usize): bool {
  const k = ip6Which(a);
  return k >= 0 && ip6State(<u32>k) == A6_PREFERRED;
}

/**
 * Our source address for `dst` at `out` (RFC 6724 rule 2, scope): the link-local one for a
 * link-local or link-scope multicast destination, the configured one for any other. False if
 * that one is not usable (tentative or duplicate): a link-local source never goes beyond the link.
 */
export function ip6Src(dst: usize, out: usize): bool {
  const linkScope = addr6IsLinkLocal(dst) || (addr6IsMulticast(dst) && (load<u8>(dst + 1) & 15) <= 2);
  const k: u32 = linkScope ? 0 : 1;
  if (ip6State(k) != A6_PREFERRED) return false;
  addrCopy(out, ip6Addr(k));
  return true;
}

/** True if `a` is on our link: link-local, or inside the configured prefix. */
function onLink(a: usize): bool {
  return addr6IsLinkLocal(a) || addrPrefixEq(a, ip6Addr(1), prefixLen);
}

/** Writes an IPv6 header at `p` (40 bytes, no extension headers). */
export function ip6WriteHdr(p: usize, src: usize, dst: usize, proto: u32, l4len: u32, hlim: u32): void {
  st32(p + IP6_VER_TC_FL, IP6_VERSION << 28);
  st16(p + IP6_PLEN, l4len);
  store<u8>(p + IP6_NXT, <u8>proto);
  store<u8>(p + IP6_HLIM, <u8>hlim);
  addrCopy(p + IP6_SRC, src);
  addrCopy(p + IP6_DST, dst);
}

/** Sends the frame under construction (first piece: Ethernet + IPv6 header) to `dst`. */
export function ip6Output(dst: usize, conn: u32): void {
  if (addr6IsMulticast(dst)) {
    // RFC 2464 7: 33:33 and the address's last four bytes
    store<u16>(groupMac, 0x3333);
    store<u32>(groupMac + 2, load<u32>(dst + 12));
    ethOutput(dst, ETHERTYPE_IP6, conn, groupMac);
    return;
  }
  ethOutput(ip6NextHop(dst), ETHERTYPE_IP6, conn);
}

/** Next hop for unicast `dst`: itself on-link (or with no router configured), else the router (CFG_GW6). */
export function ip6NextHop(dst: usize): usize {
  if (onLink(dst) || addrIsZero(cfg + CFG_GW6)) return dst;
  addrCopy(hopA, cfg + CFG_GW6);
  return hopA;
}

/** True for the multicast groups we listen to: all-nodes (ff02::1) and our solicited-node groups. */
function ourGroup(a: usize): bool {
  if (load<u64>(a) != 0x02ff) return false; // ff02:0000:0000:0000
  if (load<u64>(a, 8) == 0x0100000000000000) return true; // ::1
  if ((load<u32>(a, 8) & 0xffffff) != 0 || load<u8>(a + 11) != 1 || load<u8>(a + 12) != 0xff) return false; // ff02::1:ff00:0/104
  for (let k: u32 = 0; k < A6_COUNT; k++) {
    const o = ip6Addr(k);
    if (ip6State(k) != A6_NONE && ip6State(k) != A6_DUPLICATE && load<u8>(o + 13) == load<u8>(a + 13) &&
        load<u16>(o + 14) == load<u16>(a + 14)) return true;
  }
  return false;
}

/**
 * Skips the options of a hop-by-hop or destination options header at h (len bytes) by their
 * type's two high bits (RFC 8200 4.2). Returns -1 to go on, else the offset (from h) of an
 * option that says to discard the datagram, with bit 31 set when an ICMP error is owed.
 */
function skipOptions(h: usize, len: u32, mcast: bool): i32 {
  let k: u32 = 2;
  while (k < len) {
    const type = <u32>load<u8>(h + k);
    if (type == OPT_PAD1) {
      k++;
      continue;
    }
    if (k + 2 > len) return <i32>k;
    const ol = <u32>load<u8>(h + k + 1);
    if (k + 2 + ol > len) return <i32>k;
    if (type != 1 && type != 5) { // PadN and Router Alert (RFC 2711) are known; others act by their high bits
      const act = type >>> 6;
      if (act == 1) return <i32>k;
      if (act == 2 || (act == 3 && !mcast)) return <i32>(k | 0x80000000);
      if (act == 3) return <i32>k;
    }
    k += 2 + ol;
  }
  return -1;
}

/** Handles an IPv6 frame; pieces hold the whole frame, piece 0 from the Ethernet header. */
export function ip6Input(frameLen: u32): void {
  if (!ip6On) {
    count(C_IP6_NOT_US);
    return;
  }
  const f = bufAddr(pb(0)) + po(0);
  setRxFrame(f);
  const l0 = pl(0);
  if (l0 < ETH_HLEN + IP6_HLEN) {
    count(C_IP6_BAD_HDR);
    return;
  }
  const ip = f + ETH_HLEN;
  const plen = ld16(ip + IP6_PLEN);
  if ((ld32(ip + IP6_VER_TC_FL) >>> 28) != IP6_VERSION || plen > frameLen - ETH_HLEN - IP6_HLEN) {
    count(C_IP6_BAD_HDR);
    return;
  }
  const src = ip + IP6_SRC;
  const dst = ip + IP6_DST;
  const mcast = addr6IsMulticast(dst);
  let toUs = false;
  if (mcast) {
    if (!ourGroup(dst)) {
      count(C_IP6_NOT_US);
      return;
    }
  } else {
    const k = ip6Which(dst);
    if (k < 0) {
      count(C_IP6_NOT_US);
      return;
    }
    toUs = ip6State(<u32>k) == A6_PREFERRED;
  }
  if (addr6IsMulticast(src) || ip6IsOurs(src)) {
    count(C_IP6_BAD_SRC);
    return;
  }
  setRx(FAM_IP6, 0, 0, mcast, toUs);
  addrCopy(rxSrcA, src);
  addrCopy(rxDstA, dst);
  // the extension header chain, all of it in piece 0
  const avail = min<u32>(l0 - ETH_HLEN, IP6_HLEN + plen);
  let nh = <u32>load<u8>(ip + IP6_NXT);
  let nhAt: u32 = IP6_NXT; // where the current next-header value sits (an ICMP pointer)
  let off: u32 = IP6_HLEN;
  let fragAt: u32 = 0; // offset of a fragment header, 0 if none
  for (let n: u32 = 0; ; n++) {
    if (nh == PROTO_TCP || nh == PROTO_UDP || nh == PROTO_ICMP6) break;
    if (n == MAX_EXT || nh == NH_NONE) {
      count(C_IP6_EXTHDR_DROP);
      return;
    }
    if (nh == NH_FRAGMENT) {
      if (off + FH_LEN > avail || fragAt != 0) {
        count(C_IP6_BAD_HDR);
        return;
      }
      fragAt = off;
      nhAt = off + EXT_NXT;
      nh = <u32>load<u8>(ip + off + EXT_NXT);
      off += FH_LEN;
      continue;
    }
    if (nh != NH_HOPOPTS && nh != NH_DSTOPTS && nh != NH_ROUTING) {
      // ESP, AH, a header we do not know, or an upper layer we do not speak
      count(C_IP6_EXTHDR_DROP);
      if (toUs) ip6ParamProblem(PP_NEXT_HEADER, nhAt);
      return;
    }
    if (nh == NH_HOPOPTS && off != IP6_HLEN) {
      // hop-by-hop options only right after the IPv6 header (RFC 8200 4.3)
      count(C_IP6_EXTHDR_DROP);
      if (toUs) ip6ParamProblem(PP_NEXT_HEADER, nhAt);
      return;
    }
    if (off + 8 > avail) {
      count(C_IP6_BAD_HDR);
      return;
    }
    const h = ip + off;
    const len = (<u32>load<u8>(h + EXT_LEN) + 1) << 3;
    if (off + len > avail) {
      count(C_IP6_BAD_HDR);
      return;
    }
    if (nh == NH_ROUTING) {
      // we forward nothing: a routing header with segments left is refused (RFC 8200 4.4; type 0: RFC 5095)
      if (load<u8>(h + RH_SEGLEFT) != 0) {
        count(C_IP6_EXTHDR_DROP);
        if (toUs) ip6ParamProblem(PP_HEADER, off + 2);
        return;
      }
    } else {
      const r = skipOptions(h, len, mcast);
      if (r != -1) {
        count(C_IP6_EXTHDR_DROP);
        if ((r & 0x80000000) != 0) ip6ParamProblem(PP_OPTION, off + (<u32>r & 0x7fffffff));
        return;
      }
    }
    nhAt = off + EXT_NXT;
    nh = <u32>load<u8>(h + EXT_NXT);
    off += len;
  }
  if (off > IP6_HLEN + plen || ETH_HLEN + off > l0) {
    count(C_IP6_BAD_HDR);
    return;
  }
  if (addrIsZero(src) && nh != PROTO_ICMP6) {
    count(C_IP6_BAD_SRC); // the unspecified source is for duplicate address detection only
    return;
  }
  if (!mcast && !toUs && nh != PROTO_ICMP6) {
    count(C_IP6_NOT_US); // to an address still tentative (or found duplicate): only NDP may use it
    return;
  }
  const l4 = IP6_HLEN + plen - off;
  const np = l4View(ETH_HLEN + off, l4);
  setRxL4(ip, off, l4, np, false);
  if (fragAt != 0) {
    const fh = ip + fragAt;
    const fo = ld16(fh + FH_OFFLG);
    const foff = fo & 0xfff8;
    const more = (fo & FH_M) != 0;
    if (foff != 0 || more) {
      const id = ld32(fh + FH_ID);
      // RFC 7112: the first fragment holds the upper-layer header
      if (foff == 0 && l4 < (nh == PROTO_TCP ? 20 : 8)) {
        count(C_IP_FRAG_DROP);
        return;
      }
      const m = fragInput(FAM_IP6, rxSrcA, rxDstA, id, nh, foff, more, l4, np, <u32>(ip - bufAddr(pb(0))), off);
      if (m == 0) return;
      reasmView(m, bufAddr(reasmHdrBuf) + reasmHdrOff, reasmHl);
      dispatch(nh);
      fragDone(FAM_IP6, rxSrcA, rxDstA, id, nh);
      return;
    }
    // an atomic fragment (offset 0, M clear: RFC 6946) is a whole datagram
  }
  dispatch(nh);
}

function dispatch(nh: u32): void {
  if (nh == PROTO_TCP) tcpInput();
  else if (nh == PROTO_UDP) udpInput();
  else icmp6Input();
}

/** ICMPv6 parameter problem (RFC 4443 3.4) about the datagram being handled, `ptr` bytes into it. */
function ip6ParamProblem(code: u32, ptr: u32): void {
  icmp6Error(ICMP6_PARAM_PROB, code, ptr);
}

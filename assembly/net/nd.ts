// Neighbor discovery for IPv6 (RFC 4861) on an on-link host, and duplicate address detection
// (RFC 4862 5.4): neighbor solicitations (to resolve or refresh a neighbor for neigh.ts, and
// with the unspecified source to probe our own addresses at start) and advertisements (solicited
// answers, and one unsolicited to all nodes when an address comes into use). Received messages
// pass RFC 4861's validity checks (hop limit 255, lengths, options) or are counted and dropped;
// a message claiming one of our addresses fails our tentative address (DAD) or is counted as a
// spoof and changes nothing. Router discovery is not done: routes are configured (CFG_GW6).

import { bufAddr, bufAlloc } from "../pool";
import { OWNER_NIC } from "../layout";
import { csumRaw, csumFold16, csumFinish } from "./csum";
import {
  cfg, CFG_MAC, count, C_ICMP6_BAD, C_ND_NS_IN, C_ND_NA_IN, C_ND_DAD_FAIL, C_ND_SPOOF, C_BUF_EXHAUSTED, now,
  txAdd, txReset,
} from "./g";
import { ETH_HLEN, ETH_ALEN, ETH_GROUP } from "./eth";
import { neighKnown, neighStore } from "./neigh";
import { FAM_IP6, addrCopy, addrZero, addrIsZero, addr6IsMulticast, addr6SolicitedNode } from "./addr";
import { PROTO_ICMP6, pseudoSum, rxSrcA, rxDstA, rxIpHdr } from "./ip";
import {
  IP6_HLEN, ip6WriteHdr, ip6Output, ip6Src, ip6Which, ip6Addr, ip6State, ip6SetState, ip6On, A6_COUNT, A6_TENTATIVE,
  A6_PREFERRED, A6_DUPLICATE,
} from "./ip6";

export const ND_NS: u32 = 135;
export const ND_NA: u32 = 136;
const ND_HLIM: u32 = 255; // every NDP message is sent with, and must arrive with, hop limit 255

// ---- NS and NA (RFC 4861 4.3, 4.4): byte offsets in the ICMPv6 message ----
const ND_FLAGS: u32 = 4; // NA: R S O flags in the first byte; NS: reserved
const ND_TARGET: u32 = 8; // target address
const ND_OPTS: u32 = 24; // options follow
const NA_SOLICITED: u32 = 0x40;
const NA_OVERRIDE: u32 = 0x20;
// ---- options (RFC 4861 4.6): type, length in 8-byte units ----
const OPT_SLLA: u32 = 1; // source link-layer address
const OPT_TLLA: u32 = 2; // target link-layer address
const OPT_LLA_LEN: u32 = 8; // an Ethernet link-layer address option

/** Wait for an answer to our DAD probe before an address is ours (RFC 4861 RETRANS_TIMER; DupAddrDetectTransmits 1). */
const DAD_MS: f64 = 1000;

const dst6: usize = memory.data(16, 16);
const src6: usize = memory.data(16, 16);
const allNodes: usize = memory.data<u8>([0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
let dadAt: f64 = Infinity;

/** Starts duplicate address detection of our tentative addresses: one probe each (stackPoll's first turn). */
export function ndStart(): void {
  if (!ip6On) return;
  for (let k: u32 = 0; k < A6_COUNT; k++) {
    if (ip6State(k) != A6_TENTATIVE) continue;
    addr6SolicitedNode(dst6, ip6Addr(k));
    addrZero(src6);
    send(ND_NS, 0, ip6Addr(k), false, src6, dst6);
  }
  dadAt = now + DAD_MS;
}

/** DAD's end: addresses nobody else claimed are ours; each is announced once (RFC 4861 7.2.6). */
export function ndTimers(): f64 {
  if (dadAt > now) return dadAt;
  dadAt = Infinity;
  for (let k: u32 = 0; k < A6_COUNT; k++) {
    if (ip6State(k) != A6_TENTATIVE) continue;
    ip6SetState(k, A6_PREFERRED);
    addrCopy(src6, ip6Addr(k));
    send(ND_NA, NA_OVERRIDE, ip6Addr(k), true, src6, allNodes);
  }
  return Infinity;
}

/** Solicits `target`'s link-layer address: to its solicited-node group, or to `mac` (a refresh, neigh.ts). */
export function ndSolicit(target: usize, mac: usize): void {
  if (!ip6Src(target, src6)) return;
  if (mac == 0) addr6SolicitedNode(dst6, target);
  else addrCopy(dst6, target);
  send(ND_NS, 0, target, true, src6, dst6);
}

/**
 * Builds and sends an NS or NA about `target` from `src` to `dst`, with our link-layer address
 * as option `lla` (SLLA in an NS, TLLA in an NA) unless `lla` is false.
 */
function send(type: u32, flags: u32, target: usize, lla: bool, src: usize, dst: usize): void {
  const b = bufAlloc(OWNER_NIC);
  if (b < 0) {
    count(C_BUF_EXHAUSTED);
    return;
  }
  const p = bufAddr(<u32>b);
  const ic = p + ETH_HLEN + IP6_HLEN;
  const len = ND_OPTS + (lla ? OPT_LLA_LEN : 0);
  store<u8>(ic, <u8>type);
  store<u8>(ic + 1, 0);
  store<u16>(ic + 2, 0);
  store<u32>(ic + ND_FLAGS, 0);
  store<u8>(ic + ND_FLAGS, <u8>flags);
  addrCopy(ic + ND_TARGET, target);
  if (lla) {
    store<u8>(ic + ND_OPTS, <u8>(type == ND_NS ? OPT_SLLA : OPT_TLLA));
    store<u8>(ic + ND_OPTS + 1, 1);
    memory.copy(ic + ND_OPTS + 2, cfg + CFG_MAC, ETH_ALEN);
  }
  const acc = pseudoSum(FAM_IP6, src, dst, PROTO_ICMP6, len) + <u64>csumFold16(csumRaw(ic, len));
  store<u16>(ic + 2, csumFinish(acc));
  ip6WriteHdr(p + ETH_HLEN, src, dst, PROTO_ICMP6, len, ND_HLIM);
  txReset();
  txAdd(<u32>b, 0, ETH_HLEN + IP6_HLEN + len);
  ip6Output(dst, 0);
}

/**
 * Reads the options of an NS or NA (`len` bytes of message at ic): the link-layer address of
 * kind `want`, or 0 if absent. -1 if the options are malformed (RFC 4861 7.1: a zero length).
 */
function optLla(ic: usize, len: u32, want: u32): isize {
  let k: u32 = ND_OPTS;
  let found: isize = 0;
  while (k + 2 <= len) {
    const ol = <u32>load<u8>(ic + k + 1) << 3;
    if (ol == 0 || k + ol > len) return -1;
    if (<u32>load<u8>(ic + k) == want && ol >= 2 + ETH_ALEN) found = <isize>(ic + k + 2);
    k += ol;
  }
  return found;
}

/** An NS or NA (`avail` bytes of it at `ic` in piece 0; its checksum already checked). */
export function ndInput(type: u32, ic: usize, avail: u32): void {
  if (type == ND_NS) count(C_ND_NS_IN);
  else count(C_ND_NA_IN);
  const target = ic + ND_TARGET;
  if (<u32>load<u8>(rxIpHdr + 7) != ND_HLIM || load<u8>(ic + 1) != 0 || avail < ND_OPTS || addr6IsMulticast(target)) {
    count(C_ICMP6_BAD);
    return;
  }
  const lla = optLla(ic, avail, type == ND_NS ? OPT_SLLA : OPT_TLLA);
  if (lla < 0 || (lla != 0 && (load<u8>(<usize>lla) & <u8>ETH_GROUP) != 0)) {
    count(C_ICMP6_BAD);
    return;
  }
  const unspec = addrIsZero(rxSrcA);
  const k = ip6Which(target);
  if (type == ND_NS) {
    // from the unspecified address: a DAD probe, sent to a solicited-node group without SLLA
    if (unspec && (!addr6IsMulticast(rxDstA) || lla != 0)) {
      count(C_ICMP6_BAD);
      return;
    }
    if (k < 0) return; // not for us
    const st = ip6State(<u32>k);
    if (st == A6_TENTATIVE) {
      // someone else probing the address we are probing: neither may have it (RFC 4862 5.4.3)
      if (unspec) dadFail(<u32>k);
      return;
    }
    if (st != A6_PREFERRED) return;
    if (unspec) {
      // answer a DAD probe for our address to all nodes (RFC 4861 7.2.4)
      addrCopy(src6, target);
      send(ND_NA, NA_OVERRIDE, target, true, src6, allNodes);
      return;
    }
    if (lla != 0) neighStore(rxSrcA, <usize>lla); // the solicitor's address is worth keeping (RFC 4861 7.2.3)
    addrCopy(src6, target);
    addrCopy(dst6, rxSrcA);
    send(ND_NA, NA_SOLICITED | NA_OVERRIDE, target, true, src6, dst6);
    return;
  }
  // NA: solicited ones are unicast (RFC 4861 7.1.2)
  const fl = <u32>load<u8>(ic + ND_FLAGS);
  if ((fl & NA_SOLICITED) != 0 && addr6IsMulticast(rxDstA)) {
    count(C_ICMP6_BAD);
    return;
  }
  if (k >= 0) {
    if (ip6State(<u32>k) == A6_TENTATIVE) dadFail(<u32>k);
    else count(C_ND_SPOOF); // another node claims an address we hold: we keep it, and keep answering for it
    return;
  }
  // update an entry we have (resolving or resolved); never create one from an advertisement (RFC 4861 7.2.5)
  // (the router flag means nothing to a host without router lists)
  if (lla != 0 && neighKnown(target) && ((fl & NA_OVERRIDE) != 0 || (fl & NA_SOLICITED) != 0)) neighStore(target, <usize>lla);
}

function dadFail(k: u32): void {
  count(C_ND_DAD_FAIL);
  ip6SetState(k, A6_DUPLICATE);
}

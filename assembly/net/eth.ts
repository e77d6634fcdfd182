// Ethernet II (RFC 894) and ARP for IPv4 over Ethernet (RFC 826). Owns the Ethernet header's
// layout and ARP's packets: requests (for neigh.ts's resolution and refresh), replies, gratuitous
// ARP sent by stackAnnounce, and received packets merged into the neighbor cache (neigh.ts, which
// also completes every frame we send: ethOutput). Received frames are checked and dispatched on
// their EtherType by frameInput in ../stack.ts.

import { bufAddr, bufAlloc } from "../pool";
import { OWNER_NIC } from "../layout";
import {
  cfg, CFG_MAC, CFG_GW, count, C_ARP_BAD, C_ARP_REQ_IN, C_ARP_REPLY_IN, C_BUF_EXHAUSTED, C_ARP_CONFLICT,
  ld16, ld32, st16, st32, ourIp, ourMask, txAdd, txReset, txPush,
} from "./g";
import { addrSet4 } from "./addr";
import { neighKnown, neighStore, macSetBroadcast } from "./neigh";

// ---- Ethernet II header: byte offsets ----
export const ETH_DST: u32 = 0; // destination address
export const ETH_SRC: u32 = 6; // source address
export const ETH_TYPE: u32 = 12; // EtherType
export const ETH_HLEN: u32 = 14;
export const ETH_ALEN: u32 = 6; // bytes of an Ethernet address
export const ETH_ZLEN: u32 = 60; // shortest frame (FCS not counted): shorter ones are padded
export const ETH_GROUP: u32 = 1; // I/G bit of an address's first byte: a group (multicast or broadcast) address

export const ETHERTYPE_IP4: u32 = 0x0800;
export const ETHERTYPE_ARP: u32 = 0x0806;
export const ETHERTYPE_IP6: u32 = 0x86dd;

// ---- ARP packet (RFC 826; names as there, ar$hrd..ar$tpa): byte offsets after the Ethernet header ----
const ARP_HRD: u32 = 0; // hardware type (ARP_HRD_ETHER)
const ARP_PRO: u32 = 2; // protocol type (ETHERTYPE_IP4)
const ARP_HLN: u32 = 4; // hardware address length (ETH_ALEN)
const ARP_PLN: u32 = 5; // protocol address length (IP4_ALEN)
const ARP_OP: u32 = 6; // operation (ARP_OP_*)
const ARP_SHA: u32 = 8; // sender hardware address
const ARP_SPA: u32 = 14; // sender protocol address
const ARP_THA: u32 = 18; // target hardware address
const ARP_TPA: u32 = 24; // target protocol address
const ARP_LEN: u32 = 28; // the packet for Ethernet and IPv4
const ARP_HRD_ETHER: u32 = 1;
const IP4_ALEN: u32 = 4;
const ARP_OP_REQUEST: u32 = 1;
const ARP_OP_REPLY: u32 = 2;

/** Writes an ARP packet (op) into a new buffer and sends it. */
function arpSend(op: u32, tha: usize, tpa: u32, dstMac: usize): void {
  const b = bufAlloc(OWNER_NIC);
  if (b < 0) {
    count(C_BUF_EXHAUSTED);
    return;
  }
  const p = bufAddr(<u32>b);
  if (dstMac == 0) macSetBroadcast(p + ETH_DST);
  else memory.copy(p + ETH_DST, dstMac, ETH_ALEN);
  memory.copy(p + ETH_SRC, cfg + CFG_MAC, ETH_ALEN);
  st16(p + ETH_TYPE, ETHERTYPE_ARP);
  const a = p + ETH_HLEN;
  st16(a + ARP_HRD, ARP_HRD_ETHER);
  st16(a + ARP_PRO, ETHERTYPE_IP4);
  store<u8>(a + ARP_HLN, <u8>ETH_ALEN);
  store<u8>(a + ARP_PLN, <u8>IP4_ALEN);
  st16(a + ARP_OP, op);
  memory.copy(a + ARP_SHA, cfg + CFG_MAC, ETH_ALEN);
  st32(a + ARP_SPA, ourIp);
  if (tha == 0) memory.fill(a + ARP_THA, 0, ETH_ALEN);
  else memory.copy(a + ARP_THA, tha, ETH_ALEN);
  st32(a + ARP_TPA, tpa);
  memory.fill(a + ARP_LEN, 0, ETH_ZLEN - ETH_HLEN - ARP_LEN); // pad to the shortest frame
  txReset();
  txAdd(<u32>b, 0, ETH_ZLEN);
  txPush(0);
}

/** Sends a gratuitous ARP request announcing our address. */
export function arpAnnounce(): void {
  if (ourIp != 0) arpSend(ARP_OP_REQUEST, 0, ourIp, 0);
}

/** Asks who has IPv4 address `ip`: broadcast, or unicast to `mac` when refreshing (neigh.ts). */
export function arpRequest(ip: u32, mac: usize): void {
  arpSend(ARP_OP_REQUEST, 0, ip, mac);
}

/**
 * Handles an ARP packet at `a` (`len` bytes after the Ethernet header).
 */
export function arpInput(a: usize, len: u32): void {
  if (len < ARP_LEN) {
    count(C_ARP_BAD);
    return;
  }
  if (ld16(a + ARP_HRD) != ARP_HRD_ETHER || ld16(a + ARP_PRO) != ETHERTYPE_IP4 ||
      load<u8>(a + ARP_HLN) != ETH_ALEN || load<u8>(a + ARP_PLN) != IP4_ALEN) {
    count(C_ARP_BAD);
    return;
  }
  const op = ld16(a + ARP_OP);
  const spa = ld32(a + ARP_SPA);
  const tpa = ld32(a + ARP_TPA);
  const sha = a + ARP_SHA;
  if ((load<u8>(sha) & ETH_GROUP) != 0 || spa == 0xffffffff) {
    count(C_ARP_BAD);
    return;
  }
  if (op == ARP_OP_REQUEST) count(C_ARP_REQ_IN);
  else if (op == ARP_OP_REPLY) count(C_ARP_REPLY_IN);
  else {
    count(C_ARP_BAD);
    return;
  }
  if (spa == ourIp && ourIp != 0) {
    count(C_ARP_CONFLICT);
    return;
  }
  // RFC 826 merge: update an existing entry; create one if the packet is for us.
  const forUs = tpa == ourIp && ourIp != 0;
  if (spa != 0) {
    addrSet4(sa, spa);
    if (forUs || neighKnown(sa)) neighStore(sa, sha);
  }
  if (op == ARP_OP_REQUEST && forUs) arpSend(ARP_OP_REPLY, sha, spa, sha);
}
const sa: usize = memory.data(16, 16);

/** Next hop for IPv4 `dst`: itself on-link, else the gateway; 0 for a broadcast. */
export function nextHop(dst: u32): u32 {
  if (dst == 0xffffffff || (ourMask != 0xffffffff && dst == (ourIp | ~ourMask))) return 0;
  if (((dst ^ ourIp) & ourMask) == 0) return dst;
  const gw = load<u32>(cfg + CFG_GW);
  return gw != 0 ? gw : dst;
}

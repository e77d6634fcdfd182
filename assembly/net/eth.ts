// Ethernet II (RFC 894) and ARP for IPv4 over Ethernet (RFC 826). Owns the Ethernet header's
// layout and its output (ethOutput: our source address, the EtherType, the destination from the
// ARP cache or broadcast), the ARP cache (a fixed table with expiry, requests with retry,
// replies, gratuitous ARP sent by stackAnnounce and merged on receipt) and the bounded queue of
// frames waiting for resolution. Received frames are checked and dispatched on their EtherType
// by frameInput in ../stack.ts.

import { arenaAlloc } from "../arena";
import { bufAddr, bufAlloc, bufUnref } from "../pool";
import { OWNER_NIC } from "../layout";
import {
  cfg, CFG_MAC, CFG_GW, cfgGet, CFG_ARP, CFG_ARPQ, CFG_ARP_TTL,
  count, C_ARP_BAD, C_ARP_REQ_IN, C_ARP_REPLY_IN, C_ARP_QUEUE_FULL, C_ARP_TIMEOUT, C_BUF_EXHAUSTED, C_ARP_CONFLICT,
  ld16, ld32, st16, st32, now, ourIp, ourMask,
  tN, tb, to, tl, txAdd, txReset, txPush, txDiscard, tFlags, txSetMeta,
} from "./g";

// ---- Ethernet II header: byte offsets ----
export const ETH_DST: u32 = 0; // destination address
export const ETH_SRC: u32 = 6; // source address
export const ETH_TYPE: u32 = 12; // EtherType
export const ETH_HLEN: u32 = 14;
export const ETH_ALEN: u32 = 6; // bytes of an Ethernet address
const ETH_ZLEN: u32 = 60; // shortest frame (FCS not counted): shorter ones are padded
const ETH_GROUP: u32 = 1; // I/G bit of an address's first byte: a group (multicast or broadcast) address

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

// ---- ARP cache: arpN entries from arpTab ----
const AS_FREE: u8 = 0;
const AS_PENDING: u8 = 1;
const AS_OK: u8 = 2;
@unmanaged class ArpEntry {
  ip: u32; // the IPv4 address (host number)
  mac: u32; // its Ethernet address: 6 bytes from here (this word and mac4), see arpMac
  mac4: u16;
  state: u8; // AS_*
  tries: u8; // requests sent for the current resolution
  expires: f64; // ms: AS_OK until then; AS_PENDING: resolution deadline
  nextReq: f64; // ms: no request for this address before then
}
const AE_SIZE: u32 = offsetof<ArpEntry>(); // 32
let arpTab: usize = 0;
let arpN: u32 = 0;
let arpTtl: f64 = 60000;

// ---- frames waiting for resolution: pqN rows from pq, each a PendingFrame and its pieces ----
@unmanaged class PendingFrame {
  hop: u32; // the next hop being resolved
  n: u32; // pieces held; 0 = free row
  conn: u32; // the frame's TX conn word
  flags: u32; // its first-slot TX flags (offload request: GSO/NEEDS_CSUM) travel with it
  deadline: f64; // ms: dropped (C_ARP_TIMEOUT) unless resolved by then
}
@unmanaged class PendingPiece {
  buf: u32;
  off: u32;
  len: u32;
}
const PQ_PIECES: u32 = 8;
const PQ_SIZE: u32 = offsetof<PendingFrame>() + PQ_PIECES * offsetof<PendingPiece>() + 8; // 24 + 96 + 8 unused: 128
let pq: usize = 0;
let pqN: u32 = 0;

export function ethInit(): i32 {
  arpN = cfgGet(CFG_ARP);
  pqN = cfgGet(CFG_ARPQ);
  arpTtl = <f64>cfgGet(CFG_ARP_TTL);
  const a = arenaAlloc(arpN * AE_SIZE, 64);
  if (a < 0) return <i32>a;
  arpTab = <usize>a;
  const b = arenaAlloc(pqN * PQ_SIZE, 64);
  if (b < 0) return <i32>b;
  pq = <usize>b;
  return 0;
}

@inline function ae(i: u32): ArpEntry {
  return changetype<ArpEntry>(arpTab + <usize>i * AE_SIZE);
}
/** Address of the entry's 6-byte Ethernet address. */
@inline function arpMac(e: ArpEntry): usize {
  return changetype<usize>(e) + offsetof<ArpEntry>("mac");
}
@inline function pqe(i: u32): PendingFrame {
  return changetype<PendingFrame>(pq + <usize>i * PQ_SIZE);
}
@inline function pqPiece(e: PendingFrame, k: u32): PendingPiece {
  return changetype<PendingPiece>(changetype<usize>(e) + offsetof<PendingFrame>() + k * offsetof<PendingPiece>());
}

/** Writes the broadcast address ff:ff:ff:ff:ff:ff at `p`. */
@inline function macSetBroadcast(p: usize): void {
  store<u32>(p, 0xffffffff);
  store<u16>(p + 4, 0xffff);
}

function arpFind(ip: u32): i32 {
  for (let i: u32 = 0; i < arpN; i++) {
    const e = ae(i);
    if (e.state != AS_FREE && e.ip == ip) return <i32>i;
  }
  return -1;
}

/** Takes a free entry, or the one that expires first. */
function arpNew(ip: u32): u32 {
  let best: u32 = 0;
  let bestT: f64 = Infinity;
  for (let i: u32 = 0; i < arpN; i++) {
    const e = ae(i);
    if (e.state == AS_FREE) {
      best = i;
      break;
    }
    const t = e.expires;
    if (t < bestT) {
      bestT = t;
      best = i;
    }
  }
  const e = ae(best);
  memory.fill(changetype<usize>(e), 0, AE_SIZE);
  e.ip = ip;
  return best;
}

function arpStore(ip: u32, mac: usize): void {
  let i = arpFind(ip);
  if (i < 0) i = <i32>arpNew(ip);
  const e = ae(<u32>i);
  memory.copy(arpMac(e), mac, ETH_ALEN);
  e.state = AS_OK;
  e.tries = 0;
  e.expires = now + arpTtl;
  flushPending(ip, arpMac(e));
}

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
  if (spa != 0 && (arpFind(spa) >= 0 || forUs)) arpStore(spa, sha);
  if (op == ARP_OP_REQUEST && forUs) arpSend(ARP_OP_REPLY, sha, spa, sha);
}

/** Next hop for `dst`: itself on-link, else the gateway. */
export function nextHop(dst: u32): u32 {
  if (dst == 0xffffffff) return dst;
  if (((dst ^ ourIp) & ourMask) == 0) return dst;
  const gw = load<u32>(cfg + CFG_GW);
  return gw != 0 ? gw : dst;
}

/**
 * Completes and sends the TX frame being built (its first piece starts with room for the
 * Ethernet header). Resolves `hop` through the cache or queues the frame.
 */
export function ethOutput(hop: u32, type: u32, conn: u32): void {
  if (tN == 0) return;
  const h = bufAddr(tb(0)) + to(0);
  memory.copy(h + ETH_SRC, cfg + CFG_MAC, ETH_ALEN);
  st16(h + ETH_TYPE, type);
  if (hop == 0xffffffff || (ourMask != 0xffffffff && hop == (ourIp | ~ourMask))) {
    macSetBroadcast(h + ETH_DST);
    txPush(conn);
    return;
  }
  let i = arpFind(hop);
  if (i >= 0 && ae(<u32>i).state == AS_OK) {
    const e = ae(<u32>i);
    const exp = e.expires;
    if (exp > now) {
      memory.copy(h + ETH_DST, arpMac(e), ETH_ALEN);
      // an entry in use and about to expire is refreshed by a unicast request while it is
      // still used, so traffic never stalls behind a new resolution (at most one a second)
      const refreshAt = exp - 5000;
      if (now >= refreshAt && e.nextReq <= now) {
        e.nextReq = now + 1000;
        txPush(conn);
        arpSend(ARP_OP_REQUEST, 0, hop, arpMac(e));
        return;
      }
      txPush(conn);
      return;
    }
    e.state = AS_PENDING; // expired: refresh
    e.tries = 0;
    e.nextReq = 0;
  }
  if (i < 0) {
    i = <i32>arpNew(hop);
    ae(<u32>i).state = AS_PENDING;
  }
  // queue the frame
  let q: i32 = -1;
  for (let k: u32 = 0; k < pqN; k++) {
    if (pqe(k).n == 0) {
      q = <i32>k;
      break;
    }
  }
  if (q < 0 || tN > PQ_PIECES) {
    count(C_ARP_QUEUE_FULL);
    txDiscard();
  } else {
    const e = pqe(<u32>q);
    e.hop = hop;
    e.n = tN;
    e.conn = conn;
    e.flags = tFlags;
    e.deadline = now + 3000;
    for (let k: u32 = 0; k < tN; k++) {
      const s = pqPiece(e, k);
      s.buf = tb(k);
      s.off = to(k);
      s.len = tl(k);
    }
    txReset();
  }
  const e = ae(<u32>i);
  if (e.nextReq <= now) {
    e.nextReq = now + 1000;
    e.expires = now + 3000;
    e.tries = e.tries + 1;
    arpSend(ARP_OP_REQUEST, 0, hop, 0);
  }
}

function flushPending(ip: u32, mac: usize): void {
  for (let k: u32 = 0; k < pqN; k++) {
    const e = pqe(k);
    const n = e.n;
    if (n == 0 || e.hop != ip) continue;
    txReset();
    for (let j: u32 = 0; j < n; j++) {
      const s = pqPiece(e, j);
      txAdd(s.buf, s.off, s.len);
    }
    e.n = 0;
    memory.copy(bufAddr(tb(0)) + to(0) + ETH_DST, mac, ETH_ALEN);
    txSetMeta(e.flags);
    txPush(e.conn);
  }
}

/** Runs ARP timers: retries, expiry of pending frames. Returns the next deadline. */
export function arpTimers(): f64 {
  let next: f64 = Infinity;
  for (let k: u32 = 0; k < pqN; k++) {
    const e = pqe(k);
    const n = e.n;
    if (n == 0) continue;
    const d = e.deadline;
    if (d <= now) {
      for (let j: u32 = 0; j < n; j++) bufUnref(pqPiece(e, j).buf);
      e.n = 0;
      count(C_ARP_TIMEOUT);
    } else if (d < next) next = d;
  }
  for (let i: u32 = 0; i < arpN; i++) {
    const e = ae(i);
    const st = e.state;
    if (st == AS_PENDING) {
      if (e.expires <= now) {
        e.state = AS_FREE; // resolution failed
        continue;
      }
      const r = e.nextReq;
      if (r <= now && e.tries < 3) {
        e.nextReq = now + 1000;
        e.tries = e.tries + 1;
        arpSend(ARP_OP_REQUEST, 0, e.ip, 0);
      }
      const t = min(e.nextReq, e.expires);
      if (t < next) next = t;
    } else if (st == AS_OK && e.expires <= now) {
      e.state = AS_FREE;
    }
  }
  return next;
}

/** Host/test hook: inserts a static cache entry (mac at memory offset `mac`). */
export function arpAdd(ip: u32, mac: usize): void {
  arpStore(ip, mac);
  ae(<u32>arpFind(ip)).expires = Infinity;
}

/** 1 if `ip` is resolved in the cache. */
export function arpLookup(ip: u32): i32 {
  const i = arpFind(ip);
  return i >= 0 && ae(<u32>i).state == AS_OK ? 1 : 0;
}

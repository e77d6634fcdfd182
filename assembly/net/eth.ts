// Ethernet II and ARP (RFC 826): a fixed cache with expiry, requests with retry, replies,
// gratuitous ARP (sent by stackAnnounce, merged on receipt), and a bounded queue of frames
// waiting for resolution.

import { arenaAlloc } from "../arena";
import { bufAddr, bufAlloc, bufRef, bufUnref } from "../pool";
import { OWNER_NIC } from "../layout";
import {
  cfg, CFG_MAC, cfgGet, CFG_ARP, CFG_ARPQ, CFG_ARP_TTL,
  count, C_ARP_BAD, C_ARP_REQ_IN, C_ARP_REPLY_IN, C_ARP_QUEUE_FULL, C_ARP_TIMEOUT, C_BUF_EXHAUSTED, C_ARP_CONFLICT,
  ld16, ld32, st16, st32, now, ourIp, ourMask,
  tN, tb, to, tl, txAdd, txReset, txPush, txDiscard, MAXP, tFlags, txSetMeta,
} from "./g";

export const ETH_HLEN: u32 = 14;
export const ETHERTYPE_IP4: u32 = 0x0800;
export const ETHERTYPE_ARP: u32 = 0x0806;
export const ETHERTYPE_IP6: u32 = 0x86dd;

// cache entry: u32 ip, u8[6] mac, u8 state, u8 tries, f64 expires, f64 nextReq  (32 bytes)
const AE_SIZE: u32 = 32;
const AS_FREE: u8 = 0;
const AS_PENDING: u8 = 1;
const AS_OK: u8 = 2;
let arpTab: usize = 0;
let arpN: u32 = 0;
let arpTtl: f64 = 60000;

// pending frame: u32 ip, u32 n, u32 conn, u32 pad, f64 deadline, then n x {u32 buf, u32 off, u32 len}
const PQ_PIECES: u32 = 8;
const PQ_SIZE: u32 = 24 + PQ_PIECES * 12 + 8;
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

@inline function ae(i: u32): usize {
  return arpTab + <usize>i * AE_SIZE;
}
@inline function pqe(i: u32): usize {
  return pq + <usize>i * PQ_SIZE;
}

function arpFind(ip: u32): i32 {
  for (let i: u32 = 0; i < arpN; i++) {
    const e = ae(i);
    if (load<u8>(e + 10) != AS_FREE && load<u32>(e) == ip) return <i32>i;
  }
  return -1;
}

/** Takes a free entry, or the one that expires first. */
function arpNew(ip: u32): u32 {
  let best: u32 = 0;
  let bestT: f64 = Infinity;
  for (let i: u32 = 0; i < arpN; i++) {
    const e = ae(i);
    if (load<u8>(e + 10) == AS_FREE) {
      best = i;
      break;
    }
    const t = load<f64>(e + 16);
    if (t < bestT) {
      bestT = t;
      best = i;
    }
  }
  const e = ae(best);
  memory.fill(e, 0, AE_SIZE);
  store<u32>(e, ip);
  return best;
}

function arpStore(ip: u32, mac: usize): void {
  let i = arpFind(ip);
  if (i < 0) i = <i32>arpNew(ip);
  const e = ae(<u32>i);
  memory.copy(e + 4, mac, 6);
  store<u8>(e + 10, AS_OK);
  store<u8>(e + 11, 0);
  store<f64>(e + 16, now + arpTtl);
  flushPending(ip, e + 4);
}

/** Writes an ARP packet (op) into a new buffer and sends it. */
function arpSend(op: u32, tha: usize, tpa: u32, dstMac: usize): void {
  const b = bufAlloc(OWNER_NIC);
  if (b < 0) {
    count(C_BUF_EXHAUSTED);
    return;
  }
  const p = bufAddr(<u32>b);
  if (dstMac == 0) {
    store<u32>(p, 0xffffffff);
    store<u16>(p + 4, 0xffff);
  } else memory.copy(p, dstMac, 6);
  memory.copy(p + 6, cfg + CFG_MAC, 6);
  st16(p + 12, ETHERTYPE_ARP);
  const a = p + 14;
  st16(a, 1);
  st16(a + 2, ETHERTYPE_IP4);
  store<u8>(a + 4, 6);
  store<u8>(a + 5, 4);
  st16(a + 6, op);
  memory.copy(a + 8, cfg + CFG_MAC, 6);
  st32(a + 14, ourIp);
  if (tha == 0) memory.fill(a + 18, 0, 6);
  else memory.copy(a + 18, tha, 6);
  st32(a + 24, tpa);
  memory.fill(a + 28, 0, 18); // pad to 60 bytes
  txReset();
  txAdd(<u32>b, 0, 60);
  txPush(0);
}

/** Sends a gratuitous ARP request announcing our address. */
export function arpAnnounce(): void {
  if (ourIp != 0) arpSend(1, 0, ourIp, 0);
}

/**
 * Handles an ARP packet at `a` (`len` bytes after the Ethernet header) in received buffer `b`.
 */
export function arpInput(a: usize, len: u32): void {
  if (len < 28) {
    count(C_ARP_BAD);
    return;
  }
  if (ld16(a) != 1 || ld16(a + 2) != ETHERTYPE_IP4 || load<u8>(a + 4) != 6 || load<u8>(a + 5) != 4) {
    count(C_ARP_BAD);
    return;
  }
  const op = ld16(a + 6);
  const spa = ld32(a + 14);
  const tpa = ld32(a + 24);
  const sha = a + 8;
  if ((load<u8>(sha) & 1) != 0 || spa == 0xffffffff) {
    count(C_ARP_BAD);
    return;
  }
  if (op == 1) count(C_ARP_REQ_IN);
  else if (op == 2) count(C_ARP_REPLY_IN);
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
  if (op == 1 && forUs) arpSend(2, sha, spa, sha);
}

/** Next hop for `dst`: itself on-link, else the gateway. */
export function nextHop(dst: u32): u32 {
  if (dst == 0xffffffff) return dst;
  if (((dst ^ ourIp) & ourMask) == 0) return dst;
  const gw = load<u32>(cfg + 16);
  return gw != 0 ? gw : dst;
}

/**
 * Completes and sends the TX frame being built (its first piece starts with room for the
 * Ethernet header). Resolves `hop` through the cache or queues the frame.
 */
export function ethOutput(hop: u32, type: u32, conn: u32): void {
  if (tN == 0) return;
  const h = bufAddr(tb(0)) + to(0);
  memory.copy(h + 6, cfg + CFG_MAC, 6);
  st16(h + 12, type);
  if (hop == 0xffffffff || (ourMask != 0xffffffff && hop == (ourIp | ~ourMask))) {
    store<u32>(h, 0xffffffff);
    store<u16>(h + 4, 0xffff);
    txPush(conn);
    return;
  }
  let i = arpFind(hop);
  if (i >= 0 && load<u8>(ae(<u32>i) + 10) == AS_OK) {
    const e = ae(<u32>i);
    const exp = load<f64>(e + 16);
    if (exp > now) {
      memory.copy(h, e + 4, 6);
      // an entry in use and about to expire is refreshed by a unicast request while it is
      // still used, so traffic never stalls behind a new resolution (at most one a second)
      const refreshAt = exp - 5000;
      if (now >= refreshAt && load<f64>(e + 24) <= now) {
        store<f64>(e + 24, now + 1000);
        txPush(conn);
        arpSend(1, 0, hop, e + 4);
        return;
      }
      txPush(conn);
      return;
    }
    store<u8>(ae(<u32>i) + 10, AS_PENDING); // expired: refresh
    store<u8>(ae(<u32>i) + 11, 0);
    store<f64>(ae(<u32>i) + 24, 0);
  }
  if (i < 0) {
    i = <i32>arpNew(hop);
    store<u8>(ae(<u32>i) + 10, AS_PENDING);
  }
  // queue the frame
  let q: i32 = -1;
  for (let k: u32 = 0; k < pqN; k++) {
    if (load<u32>(pqe(k) + 4) == 0) {
      q = <i32>k;
      break;
    }
  }
  if (q < 0 || tN > PQ_PIECES) {
    count(C_ARP_QUEUE_FULL);
    txDiscard();
  } else {
    const e = pqe(<u32>q);
    store<u32>(e, hop);
    store<u32>(e + 4, tN);
    store<u32>(e + 8, conn);
    store<u32>(e + 12, tFlags); // offload request (GSO/NEEDS_CSUM) travels with the frame
    store<f64>(e + 16, now + 3000);
    for (let k: u32 = 0; k < tN; k++) {
      const s = e + 24 + k * 12;
      store<u32>(s, tb(k));
      store<u32>(s + 4, to(k));
      store<u32>(s + 8, tl(k));
    }
    txReset();
  }
  const e = ae(<u32>i);
  if (load<f64>(e + 24) <= now) {
    store<f64>(e + 24, now + 1000);
    store<f64>(e + 16, now + 3000);
    store<u8>(e + 11, load<u8>(e + 11) + 1);
    arpSend(1, 0, hop, 0);
  }
}

function flushPending(ip: u32, mac: usize): void {
  for (let k: u32 = 0; k < pqN; k++) {
    const e = pqe(k);
    const n = load<u32>(e + 4);
    if (n == 0 || load<u32>(e) != ip) continue;
    txReset();
    for (let j: u32 = 0; j < n; j++) {
      const s = e + 24 + j * 12;
      txAdd(load<u32>(s), load<u32>(s + 4), load<u32>(s + 8));
    }
    store<u32>(e + 4, 0);
    memory.copy(bufAddr(tb(0)) + to(0), mac, 6);
    txSetMeta(load<u32>(e + 12));
    txPush(load<u32>(e + 8));
  }
}

/** Runs ARP timers: retries, expiry of pending frames. Returns the next deadline. */
export function arpTimers(): f64 {
  let next: f64 = Infinity;
  for (let k: u32 = 0; k < pqN; k++) {
    const e = pqe(k);
    const n = load<u32>(e + 4);
    if (n == 0) continue;
    const d = load<f64>(e + 16);
    if (d <= now) {
      for (let j: u32 = 0; j < n; j++) bufUnref(load<u32>(e + 24 + j * 12));
      store<u32>(e + 4, 0);
      count(C_ARP_TIMEOUT);
    } else if (d < next) next = d;
  }
  for (let i: u32 = 0; i < arpN; i++) {
    const e = ae(i);
    const st = load<u8>(e + 10);
    if (st == AS_PENDING) {
      if (load<f64>(e + 16) <= now) {
        store<u8>(e + 10, AS_FREE); // resolution failed
        continue;
      }
      const r = load<f64>(e + 24);
      if (r <= now && load<u8>(e + 11) < 3) {
        store<f64>(e + 24, now + 1000);
        store<u8>(e + 11, load<u8>(e + 11) + 1);
        arpSend(1, 0, load<u32>(e), 0);
      }
      const t = min(load<f64>(e + 24), load<f64>(e + 16));
      if (t < next) next = t;
    } else if (st == AS_OK && load<f64>(e + 16) <= now) {
      store<u8>(e + 10, AS_FREE);
    }
  }
  return next;
}

/** Host/test hook: inserts a static cache entry (mac at memory offset `mac`). */
export function arpAdd(ip: u32, mac: usize): void {
  arpStore(ip, mac);
  store<f64>(ae(<u32>arpFind(ip)) + 16, Infinity);
}

/** 1 if `ip` is resolved in the cache. */
export function arpLookup(ip: u32): i32 {
  const i = arpFind(ip);
  return i >= 0 && load<u8>(ae(<u32>i) + 10) == AS_OK ? 1 : 0;
}

// The neighbor cache of both families (RFC 826 for IPv4, RFC 4861 7.3 for IPv6): a fixed table
// of next hops (16-byte addresses) and their Ethernet addresses with expiry, resolution with
// retries (an ARP request or a neighbor solicitation, sent by eth.ts or nd.ts), refresh of an
// entry in use before it expires (a unicast request; upper-layer progress, neighConfirm, makes
// it unnecessary: RFC 4861 7.3.1), and the bounded queue of frames waiting for resolution.
// ethOutput completes every frame we send.

import { arenaAlloc } from "../arena";
import { bufAddr, bufUnref } from "../pool";
import {
  cfg, CFG_MAC, cfgGet, CFG_ARP, CFG_ARPQ, CFG_ARP_TTL, count, C_ARP_QUEUE_FULL, C_ARP_TIMEOUT, st16, now,
  tN, tb, to, tl, txAdd, txReset, txPush, txDiscard, tFlags, txSetMeta,
} from "./g";
import { addrCopy, addrIs4, addrGet4 } from "./addr";
import { ETH_DST, ETH_SRC, ETH_TYPE, ETH_ALEN, arpRequest } from "./eth";
import { ndSolicit } from "./nd";

const NS_FREE: u8 = 0;
const NS_PENDING: u8 = 1;
const NS_OK: u8 = 2;
/** Resolution requests per attempt (RFC 4861 MAX_MULTICAST_SOLICIT), one a second (RETRANS_TIMER). */
const MAX_SOLICIT: u8 = 3;
const RETRANS_MS: f64 = 1000;
/** A frame waits this long for its next hop to resolve. */
const QUEUE_MS: f64 = 3000;
/** An entry in use is refreshed (unicast request) this long before it expires. */
const REFRESH_MS: f64 = 5000;

@unmanaged class Neighbor {
  a0: u64; // the next hop's address (16 bytes, IPv4 mapped): a0, a1
  a1: u64;
  mac: u32; // its Ethernet address: 6 bytes from here (this word and mac4), see nMac
  mac4: u16;
  state: u8; // NS_*
  tries: u8; // requests sent for the current resolution
  expires: f64; // ms: NS_OK until then; NS_PENDING: resolution deadline
  nextReq: f64; // ms: no request for this address before then
}
const NE_SIZE: u32 = offsetof<Neighbor>(); // 48
let tab: usize = 0;
let nN: u32 = 0;
let ttl: f64 = 60000;

// ---- frames waiting for resolution: pqN rows from pq, each a PendingFrame and its pieces ----
@unmanaged class PendingFrame {
  h0: u64; // the next hop being resolved: h0, h1
  h1: u64;
  n: u32; // pieces held; 0 = free row
  conn: u32; // the frame's TX conn word
  flags: u32; // its first-slot TX flags (offload request: GSO/NEEDS_CSUM) travel with it
  pad: u32;
  deadline: f64; // ms: dropped (C_ARP_TIMEOUT) unless resolved by then
}
@unmanaged class PendingPiece {
  buf: u32;
  off: u32;
  len: u32;
}
const PQ_PIECES: u32 = 8;
const PQ_SIZE: u32 = offsetof<PendingFrame>() + PQ_PIECES * offsetof<PendingPiece>(); // 40 + 96
let pq: usize = 0;
let pqN: u32 = 0;

// neighTimers scans both tables only when something may be due: `dirty` is set by every change
// to a pending entry or a queued frame (and by every entry taken or resolved), `due` is the
// earliest deadline the last scan saw (resolved entries' expiry included; neighConfirm only ever
// moves an expiry later, so it never makes `due` late), and `next` is what that scan returned.
let dirty = true;
let due: f64 = 0;
let next: f64 = Infinity;

export function neighInit(): i32 {
  nN = cfgGet(CFG_ARP);
  pqN = cfgGet(CFG_ARPQ);
  ttl = <f64>cfgGet(CFG_ARP_TTL);
  dirty = true;
  due = 0;
  next = Infinity;
  const a = arenaAlloc(nN * NE_SIZE, 64);
  if (a < 0) return <i32>a;
  tab = <usize>a;
  const b = arenaAlloc(pqN * PQ_SIZE, 64);
  if (b < 0) return <i32>b;
  pq = <usize>b;
  return 0;
}

@inline function ne(i: u32): Neighbor {
  return changetype<Neighbor>(tab + <usize>i * NE_SIZE);
}
@inline function nAddr(e: Neighbor): usize {
  return changetype<usize>(e);
}
/** Address of the entry's 6-byte Ethernet address. */
@inline function nMac(e: Neighbor): usize {
  return changetype<usize>(e) + offsetof<Neighbor>("mac");
}
@inline function pqe(i: u32): PendingFrame {
  return changetype<PendingFrame>(pq + <usize>i * PQ_SIZE);
}
@inline function pqPiece(e: PendingFrame, k: u32): PendingPiece {
  return changetype<PendingPiece>(changetype<usize>(e) + offsetof<PendingFrame>() + k * offsetof<PendingPiece>());
}

function find(a: usize): i32 {
  const w0 = load<u64>(a);
  const w1 = load<u64>(a, 8);
  for (let i: u32 = 0; i < nN; i++) {
    const e = ne(i);
    if (e.a1 == w1 && e.a0 == w0 && e.state != NS_FREE) return <i32>i;
  }
  return -1;
}

/** Takes a free entry, or the one that expires first. */
function take(a: usize): u32 {
  let best: u32 = 0;
  let bestT: f64 = Infinity;
  for (let i: u32 = 0; i < nN; i++) {
    const e = ne(i);
    if (e.state == NS_FREE) {
      best = i;
      break;
    }
    const t = e.expires;
    if (t < bestT) {
      bestT = t;
      best = i;
    }
  }
  const e = ne(best);
  memory.fill(changetype<usize>(e), 0, NE_SIZE);
  addrCopy(nAddr(e), a);
  dirty = true;
  return best;
}

/** Sends a resolution request for `a`: to `mac` (a refresh), or to the family's group address. */
function request(a: usize, mac: usize): void {
  if (addrIs4(a)) arpRequest(addrGet4(a), mac);
  else ndSolicit(a, mac);
}

/** True if `a` has an entry (resolved or being resolved): RFC 826's merge and RFC 4861 7.2.5 update only those. */
export function neighKnown(a: usize): bool {
  return find(a) >= 0;
}

/** Records that `a` is at `mac` (valid for the cache's TTL) and sends the frames waiting for it. */
export function neighStore(a: usize, mac: usize): void {
  let i = find(a);
  if (i < 0) i = <i32>take(a);
  const e = ne(<u32>i);
  memory.copy(nMac(e), mac, ETH_ALEN);
  e.state = NS_OK;
  e.tries = 0;
  if (e.expires != Infinity) e.expires = now + ttl;
  dirty = true;
  flushPending(a, nMac(e));
}

/** Upper-layer progress (new data acknowledged) confirms that `a` is reachable: its entry stays valid. */
export function neighConfirm(a: usize): void {
  const i = find(a);
  if (i >= 0) {
    const e = ne(<u32>i);
    if (e.state == NS_OK && e.expires != Infinity) e.expires = now + ttl;
  }
}

/** Writes the broadcast address ff:ff:ff:ff:ff:ff at `p`. */
@inline export function macSetBroadcast(p: usize): void {
  store<u32>(p, 0xffffffff);
  store<u16>(p + 4, 0xffff);
}

/**
 * Completes and sends the TX frame being built (its first piece starts with room for the
 * Ethernet header) to next hop `hop` (0 = broadcast, or the 6-byte group MAC `group` when given):
 * the destination from the cache, or the frame waits while the hop is resolved.
 */
export function ethOutput(hop: usize, type: u32, conn: u32, group: usize = 0): void {
  if (tN == 0) return;
  const h = bufAddr(tb(0)) + to(0);
  memory.copy(h + ETH_SRC, cfg + CFG_MAC, ETH_ALEN);
  st16(h + ETH_TYPE, type);
  if (hop == 0 || group != 0) {
    if (group != 0) memory.copy(h + ETH_DST, group, ETH_ALEN);
    else macSetBroadcast(h + ETH_DST);
    txPush(conn);
    return;
  }
  let i = find(hop);
  if (i >= 0 && ne(<u32>i).state == NS_OK) {
    const e = ne(<u32>i);
    const exp = e.expires;
    if (exp > now) {
      memory.copy(h + ETH_DST, nMac(e), ETH_ALEN);
      txPush(conn);
      // an entry in use and about to expire is refreshed by a unicast request while it is
      // still used, so traffic never stalls behind a new resolution (at most one a second)
      if (now >= exp - REFRESH_MS && e.nextReq <= now) {
        e.nextReq = now + RETRANS_MS;
        request(hop, nMac(e));
      }
      return;
    }
    e.state = NS_PENDING; // expired: resolve again
    e.tries = 0;
    e.nextReq = 0;
  }
  dirty = true;
  if (i < 0) {
    i = <i32>take(hop);
    ne(<u32>i).state = NS_PENDING;
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
    e.h0 = load<u64>(hop);
    e.h1 = load<u64>(hop, 8);
    e.n = tN;
    e.conn = conn;
    e.flags = tFlags;
    e.deadline = now + QUEUE_MS;
    for (let k: u32 = 0; k < tN; k++) {
      const s = pqPiece(e, k);
      s.buf = tb(k);
      s.off = to(k);
      s.len = tl(k);
    }
    txReset();
  }
  const e = ne(<u32>i);
  if (e.nextReq <= now) {
    e.nextReq = now + RETRANS_MS;
    e.expires = now + QUEUE_MS;
    e.tries = e.tries + 1;
    request(hop, 0);
  }
}

function flushPending(a: usize, mac: usize): void {
  const w0 = load<u64>(a);
  const w1 = load<u64>(a, 8);
  for (let k: u32 = 0; k < pqN; k++) {
    const e = pqe(k);
    const n = e.n;
    if (n == 0 || e.h0 != w0 || e.h1 != w1) continue;
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

/** Runs the cache's timers: retries, expiry of pending frames. Returns the next deadline. */
export function neighTimers(): f64 {
  if (!dirty && now < due) return next;
  dirty = false;
  next = Infinity;
  let soonest: f64 = Infinity;
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
  for (let i: u32 = 0; i < nN; i++) {
    const e = ne(i);
    const st = e.state;
    if (st == NS_PENDING) {
      if (e.expires <= now) {
        e.state = NS_FREE; // resolution failed
        continue;
      }
      const r = e.nextReq;
      if (r <= now && e.tries < MAX_SOLICIT) {
        e.nextReq = now + RETRANS_MS;
        e.tries = e.tries + 1;
        request(nAddr(e), 0);
      }
      const t = min(e.nextReq, e.expires);
      if (t < next) next = t;
    } else if (st == NS_OK) {
      const x = e.expires;
      if (x <= now) e.state = NS_FREE;
      else if (x < soonest) soonest = x;
    }
  }
  due = min(next, soonest);
  return next;
}

/** Host/test hook: a static entry (never expires) for `a` at the 6-byte `mac`. */
export function neighAdd(a: usize, mac: usize): void {
  let i = find(a);
  if (i < 0) i = <i32>take(a);
  const e = ne(<u32>i);
  e.state = NS_OK;
  e.expires = Infinity;
  neighStore(a, mac);
}

/** 1 if `a` is resolved in the cache. */
export function neighLookup(a: usize): i32 {
  const i = find(a);
  return i >= 0 && ne(<u32>i).state == NS_OK ? 1 : 0;
}

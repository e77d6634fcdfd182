// IPv4 reassembly within fixed limits: CFG_FRAG_SLOTS datagrams at once, at most 16
// fragments each, 65535 bytes, 30 s. Fragments are held by reference (no copy) and handed to
// TCP/UDP/ICMP as the pieces of one datagram. Overlapping fragments drop the whole datagram
// (as RFC 5722 requires for IPv6: overlaps only serve attacks); an exact duplicate is ignored.
// A fragment must sit in one buffer (no chained fragments).

import { arenaAlloc } from "../arena";
import { bufRef, bufSetOwner, bufUnref } from "../pool";
import { OWNER_STACK } from "../layout";
import {
  cfgGet, CFG_FRAG_SLOTS, count, C_IP_FRAG_DROP, C_IP_REASM_OK, C_IP_REASM_DROP, C_IP_REASM_TIMEOUT,
  ld16, now, pb, po, pl, setP, MAXP,
} from "./g";

const MAXF: u32 = 16;
const TIMEOUT: f64 = 30000;
// slot: u32 src, u32 dst, u32 key (id | proto << 16 | used << 24), u32 n, u32 total, u32 have,
//       f64 deadline, u32 hdrOff (offset of the first fragment's IP header in its buffer), u32 hl,
//       then MAXF x {u32 buf, u32 off, u32 len, u32 foff}
const F_HDR: u32 = 40;
const F_SIZE: u32 = F_HDR + MAXF * 16;
let slots: usize = 0;
let nSlots: u32 = 0;

export function fragInit(): i32 {
  nSlots = cfgGet(CFG_FRAG_SLOTS);
  if (nSlots > 64) nSlots = 64;
  const a = arenaAlloc(nSlots * F_SIZE, 64);
  if (a < 0) return <i32>a;
  slots = <usize>a;
  return 0;
}

@inline function slot(i: u32): usize {
  return slots + <usize>i * F_SIZE;
}
@inline function fr(s: usize, k: u32): usize {
  return s + F_HDR + (<usize>k << 4);
}

function release(s: usize): void {
  const n = load<u32>(s + 12);
  for (let k: u32 = 0; k < n; k++) bufUnref(load<u32>(fr(s, k)));
  memory.fill(s, 0, F_HDR);
}

/** Set by fragInput when a datagram completed: offset of its first IP header and length. */
export let reasmHdrBuf: u32 = 0;
export let reasmHdrOff: u32 = 0;
export let reasmHl: u32 = 0;

/**
 * Takes the fragment in piece 0 (L4 bytes already isolated: pb/po/pl(0), `l` bytes, `np`
 * pieces). Returns the number of pieces of the completed datagram (now in the piece arrays),
 * or 0 if it is not complete yet or was dropped.
 */
export function fragInput(src: u32, dst: u32, id: u32, proto: u32, fragField: u32, l: u32, np: u32, hdrOff: u32, hl: u32): u32 {
  const foff = (fragField & 0x1fff) << 3;
  const mf = (fragField & 0x2000) != 0;
  if (np != 1 || (mf && (l & 7) != 0) || (mf && l == 0) || foff + l + hl > 65535) {
    count(C_IP_FRAG_DROP);
    return 0;
  }
  const key = (id & 0xffff) | (proto << 16) | (1 << 24);
  let s: usize = 0;
  let free: usize = 0;
  for (let i: u32 = 0; i < nSlots; i++) {
    const x = slot(i);
    const k = load<u32>(x + 8);
    if (k == 0) {
      if (free == 0) free = x;
    } else if (k == key && load<u32>(x) == src && load<u32>(x + 4) == dst) {
      s = x;
      break;
    }
  }
  if (s == 0) {
    if (free == 0) {
      count(C_IP_REASM_DROP); // every slot busy
      return 0;
    }
    s = free;
    store<u32>(s, src);
    store<u32>(s + 4, dst);
    store<u32>(s + 8, key);
    store<f64>(s + 24, now + TIMEOUT);
  }
  const n = load<u32>(s + 12);
  // overlap check and sorted position
  let at: u32 = n;
  for (let k: u32 = 0; k < n; k++) {
    const f = fr(s, k);
    const o = load<u32>(f + 12);
    const fl = load<u32>(f + 8);
    if (o == foff && fl == l) return 0; // exact duplicate: already held
    if (foff < o + fl && o < foff + l) {
      count(C_IP_REASM_DROP);
      release(s);
      return 0;
    }
    if (o > foff && at == n) at = k;
  }
  if (n >= MAXF) {
    count(C_IP_REASM_DROP);
    release(s);
    return 0;
  }
  if (!mf) {
    const t = load<u32>(s + 16);
    if ((t != 0 && t != foff + l) || foff + l < load<u32>(s + 20)) {
      count(C_IP_REASM_DROP);
      release(s);
      return 0;
    }
    store<u32>(s + 16, foff + l);
  } else if (load<u32>(s + 16) != 0 && foff + l > load<u32>(s + 16)) {
    count(C_IP_REASM_DROP);
    release(s);
    return 0;
  }
  for (let k = n; k > at; k--) memory.copy(fr(s, k), fr(s, k - 1), 16);
  const f = fr(s, at);
  store<u32>(f, pb(0));
  store<u32>(f + 4, po(0));
  store<u32>(f + 8, l);
  store<u32>(f + 12, foff);
  bufRef(pb(0));
  bufSetOwner(pb(0), OWNER_STACK);
  store<u32>(s + 12, n + 1);
  store<u32>(s + 20, load<u32>(s + 20) + l);
  if (foff == 0) {
    store<u32>(s + 32, hdrOff);
    store<u32>(s + 36, hl);
  }
  const total = load<u32>(s + 16);
  if (total == 0 || load<u32>(s + 20) != total) return 0;
  // complete: no overlaps and the byte count matches, so the fragments tile [0, total)
  const m = n + 1;
  if (m > MAXP) {
    count(C_IP_REASM_DROP);
    release(s);
    return 0;
  }
  for (let k: u32 = 0; k < m; k++) {
    const g = fr(s, k);
    setP(k, load<u32>(g), load<u32>(g + 4), load<u32>(g + 8));
  }
  reasmHdrBuf = load<u32>(fr(s, 0));
  reasmHdrOff = load<u32>(s + 32);
  reasmHl = load<u32>(s + 36);
  count(C_IP_REASM_OK);
  return m;
}

/** Releases the slot of the datagram just delivered (its pieces' references). */
export function fragDone(src: u32, dst: u32, id: u32, proto: u32): void {
  const key = (id & 0xffff) | (proto << 16) | (1 << 24);
  for (let i: u32 = 0; i < nSlots; i++) {
    const x = slot(i);
    if (load<u32>(x + 8) == key && load<u32>(x) == src && load<u32>(x + 4) == dst) {
      release(x);
      return;
    }
  }
}

/** Drops datagrams older than 30 s; returns the next deadline. */
export function fragTimers(): f64 {
  let next: f64 = Infinity;
  for (let i: u32 = 0; i < nSlots; i++) {
    const x = slot(i);
    if (load<u32>(x + 8) == 0) continue;
    const d = load<f64>(x + 24);
    if (d <= now) {
      count(C_IP_REASM_TIMEOUT);
      release(x);
    } else if (d < next) next = d;
  }
  return next;
}

/** Pieces held in reassembly (tests). */
export function fragHeld(): u32 {
  let n: u32 = 0;
  for (let i: u32 = 0; i < nSlots; i++) n += load<u32>(slot(i) + 12);
  return n;
}

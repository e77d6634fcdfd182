// IPv4 reassembly (RFC 791) within fixed limits: CFG_FRAG_SLOTS datagrams at once, at most 16
// fragments each, 65535 bytes, 30 s. Owns the reassembly slots. Fragments are held by reference
// (no copy) and handed to TCP/UDP/ICMP as the pieces of one datagram. Overlapping fragments drop
// the whole datagram (as RFC 5722 requires for IPv6: overlaps only serve attacks); an exact
// duplicate is ignored. A fragment must sit in one buffer (no chained fragments).

import { arenaAlloc } from "../arena";
import { bufRef, bufSetOwner, bufUnref } from "../pool";
import { OWNER_STACK } from "../layout";
import {
  cfgGet, CFG_FRAG_SLOTS, count, C_IP_FRAG_DROP, C_IP_REASM_OK, C_IP_REASM_DROP, C_IP_REASM_TIMEOUT,
  now, pb, po, pl, setP, MAXP,
} from "./g";
import { IP4_MF, IP4_FRAG_OFF } from "./ip4";

const MAXF: u32 = 16;
const TIMEOUT: f64 = 30000;
const MAX_DATAGRAM: u32 = 65535; // IPv4 total length is 16 bits

// ---- slots: nSlots rows from `slots`, each a FragSlot and MAXF FragPiece sorted by offset ----
@unmanaged class FragSlot {
  src: u32;
  dst: u32;
  key: u32; // fragKey(id, proto); 0 = free slot
  n: u32; // fragments held
  total: u32; // the datagram's data length, known from its last fragment (MF clear); 0 = not yet
  have: u32; // data bytes held
  deadline: f64; // ms: dropped (C_IP_REASM_TIMEOUT) unless complete by then
  hdrOff: u32; // offset of the first fragment's IP header in its buffer
  hl: u32; // and its length
}
@unmanaged class FragPiece {
  buf: u32;
  off: u32; // of the fragment's data in buf
  len: u32;
  foff: u32; // its place in the datagram's data
}
const F_HDR: u32 = offsetof<FragSlot>(); // 40
const F_SIZE: u32 = F_HDR + MAXF * offsetof<FragPiece>();
let slots: usize = 0;
let nSlots: u32 = 0;

/** A datagram's slot is found by src, dst and this key: id | proto << 16 | 1 << 24 (never 0). */
@inline function fragKey(id: u32, proto: u32): u32 {
  return (id & 0xffff) | (proto << 16) | (1 << 24);
}

export function fragInit(): i32 {
  nSlots = cfgGet(CFG_FRAG_SLOTS);
  const a = arenaAlloc(nSlots * F_SIZE, 64);
  if (a < 0) return <i32>a;
  slots = <usize>a;
  return 0;
}

@inline function slot(i: u32): FragSlot {
  return changetype<FragSlot>(slots + <usize>i * F_SIZE);
}
@inline function fr(s: FragSlot, k: u32): FragPiece {
  return changetype<FragPiece>(changetype<usize>(s) + F_HDR + <usize>k * offsetof<FragPiece>());
}

function release(s: FragSlot): void {
  const n = s.n;
  for (let k: u32 = 0; k < n; k++) bufUnref(fr(s, k).buf);
  memory.fill(changetype<usize>(s), 0, F_HDR);
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
  const foff = (fragField & IP4_FRAG_OFF) << 3;
  const mf = (fragField & IP4_MF) != 0;
  if (np != 1 || (mf && (l & 7) != 0) || (mf && l == 0) || foff + l + hl > MAX_DATAGRAM) {
    count(C_IP_FRAG_DROP);
    return 0;
  }
  const key = fragKey(id, proto);
  let s: FragSlot | null = null;
  let free: FragSlot | null = null;
  for (let i: u32 = 0; i < nSlots; i++) {
    const x = slot(i);
    const k = x.key;
    if (k == 0) {
      if (free === null) free = x;
    } else if (k == key && x.src == src && x.dst == dst) {
      s = x;
      break;
    }
  }
  if (s === null) {
    if (free === null) {
      count(C_IP_REASM_DROP); // every slot busy
      return 0;
    }
    s = free;
    s.src = src;
    s.dst = dst;
    s.key = key;
    s.deadline = now + TIMEOUT;
  }
  const n = s.n;
  // overlap check and sorted position
  let at: u32 = n;
  for (let k: u32 = 0; k < n; k++) {
    const f = fr(s, k);
    const o = f.foff;
    const fl = f.len;
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
    const t = s.total;
    if ((t != 0 && t != foff + l) || foff + l < s.have) {
      count(C_IP_REASM_DROP);
      release(s);
      return 0;
    }
    s.total = foff + l;
  } else if (s.total != 0 && foff + l > s.total) {
    count(C_IP_REASM_DROP);
    release(s);
    return 0;
  }
  for (let k = n; k > at; k--) {
    memory.copy(changetype<usize>(fr(s, k)), changetype<usize>(fr(s, k - 1)), offsetof<FragPiece>());
  }
  const f = fr(s, at);
  f.buf = pb(0);
  f.off = po(0);
  f.len = l;
  f.foff = foff;
  bufRef(pb(0));
  bufSetOwner(pb(0), OWNER_STACK);
  s.n = n + 1;
  s.have = s.have + l;
  if (foff == 0) {
    s.hdrOff = hdrOff;
    s.hl = hl;
  }
  const total = s.total;
  if (total == 0 || s.have != total) return 0;
  // complete: no overlaps and the byte count matches, so the fragments tile [0, total)
  const m = n + 1;
  if (m > MAXP) {
    count(C_IP_REASM_DROP);
    release(s);
    return 0;
  }
  for (let k: u32 = 0; k < m; k++) {
    const g = fr(s, k);
    setP(k, g.buf, g.off, g.len);
  }
  reasmHdrBuf = fr(s, 0).buf;
  reasmHdrOff = s.hdrOff;
  reasmHl = s.hl;
  count(C_IP_REASM_OK);
  return m;
}

/** Releases the slot of the datagram just delivered (its pieces' references). */
export function fragDone(src: u32, dst: u32, id: u32, proto: u32): void {
  const key = fragKey(id, proto);
  for (let i: u32 = 0; i < nSlots; i++) {
    const x = slot(i);
    if (x.key == key && x.src == src && x.dst == dst) {
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
    if (x.key == 0) continue;
    const d = x.deadline;
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
  for (let i: u32 = 0; i < nSlots; i++) n += slot(i).n;
  return n;
}

// Reassembly of IPv4 (RFC 791) and IPv6 (RFC 8200 4.5) datagrams within fixed limits:
// CFG_FRAG_SLOTS datagrams at once (both families together), at most 16 fragments each, 65535
// bytes, 30 s (IPv6: 60 s, RFC 8200). Owns the reassembly slots. Fragments are held by reference
// (no copy) and handed to TCP/UDP/ICMP as the pieces of one datagram. Overlapping fragments drop
// the whole datagram (RFC 5722: overlaps only serve attacks); an exact duplicate is ignored. A
// fragment must sit in one buffer (no chained fragments).

import { arenaAlloc } from "../arena";
import { bufRef, bufSetOwner, bufUnref } from "../pool";
import { OWNER_STACK } from "../layout";
import {
  cfgGet, CFG_FRAG_SLOTS, count, C_IP_FRAG_DROP, C_IP_REASM_OK, C_IP_REASM_DROP, C_IP_REASM_TIMEOUT,
  now, pb, po, pl, setP, MAXP,
} from "./g";
import { FAM_IP4 } from "./addr";

const MAXF: u32 = 16;
const TIMEOUT4: f64 = 30000;
const TIMEOUT6: f64 = 60000;
const MAX_DATAGRAM: u32 = 65535; // IPv4 total length and IPv6 payload length are 16 bits

// ---- slots: nSlots rows from `slots`, each a FragSlot and MAXF FragPiece sorted by offset ----
@unmanaged class FragSlot {
  s0: u64; // source address (16 bytes, IPv4 mapped): s0, s1
  s1: u64;
  d0: u64; // destination: d0, d1
  d1: u64;
  id: u32; // identification (IPv4: 16 bits, IPv6: 32)
  key: u32; // fragKey(fam, proto); 0 = free slot
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
const F_HDR: u32 = offsetof<FragSlot>(); // 72
const F_SIZE: u32 = F_HDR + MAXF * offsetof<FragPiece>();
let slots: usize = 0;
let nSlots: u32 = 0;

/** A datagram's slot is found by src, dst, id and this key: proto | fam << 8 (never 0). */
@inline function fragKey(fam: u32, proto: u32): u32 {
  return (proto & 0xff) | (fam << 8);
}
@inline function matches(x: FragSlot, key: u32, id: u32, src: usize, dst: usize): bool {
  return x.key == key && x.id == id && x.s0 == load<u64>(src) && x.s1 == load<u64>(src, 8) &&
    x.d0 == load<u64>(dst) && x.d1 == load<u64>(dst, 8);
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
 * Takes the fragment in piece 0 (its data already isolated: pb/po/pl(0), `l` bytes, `np`
 * pieces) of datagram (fam, src, dst, id, proto) at data offset `foff`, `mf` if more follow;
 * `hdrOff`/`hl`: its IP header's offset in its buffer and the length of the headers before
 * the data. Returns the number of pieces of the completed datagram (now in the piece arrays),
 * or 0 if it is not complete yet or was dropped.
 */
export function fragInput(fam: u32, src: usize, dst: usize, id: u32, proto: u32, foff: u32, mf: bool, l: u32, np: u32,
                          hdrOff: u32, hl: u32): u32 {
  if (np != 1 || (mf && (l & 7) != 0) || (mf && l == 0) || foff + l + (fam == FAM_IP4 ? hl : 0) > MAX_DATAGRAM) {
    count(C_IP_FRAG_DROP);
    return 0;
  }
  const key = fragKey(fam, proto);
  let s: FragSlot | null = null;
  let free: FragSlot | null = null;
  for (let i: u32 = 0; i < nSlots; i++) {
    const x = slot(i);
    const k = x.key;
    if (k == 0) {
      if (free === null) free = x;
    } else if (matches(x, key, id, src, dst)) {
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
    s.s0 = load<u64>(src);
    s.s1 = load<u64>(src, 8);
    s.d0 = load<u64>(dst);
    s.d1 = load<u64>(dst, 8);
    s.id = id;
    s.key = key;
    s.deadline = now + (fam == FAM_IP4 ? TIMEOUT4 : TIMEOUT6);
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
export function fragDone(fam: u32, src: usize, dst: usize, id: u32, proto: u32): void {
  const key = fragKey(fam, proto);
  for (let i: u32 = 0; i < nSlots; i++) {
    const x = slot(i);
    if (matches(x, key, id, src, dst)) {
      release(x);
      return;
    }
  }
}

/** Drops datagrams whose time is up; returns the next deadline. */
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

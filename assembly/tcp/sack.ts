// The sender's SACK scoreboard (RFC 2018, RFC 6675): what the peer reported holding above
// SND.UNA, kept as up to SB_MAX sorted, disjoint blocks per connection (sackBlock rows), and the
// questions loss recovery asks of it: bytes SACKed, the pipe, the next hole to retransmit.

import { Tcb, NIL, SB_MAX, sackBlock, seqLt, seqLe, seqGt } from "./tcb";
import { oSackN, rxSack } from "./segment";

@inline function sbL(t: Tcb, k: u32): u32 {
  return sackBlock(t, k).l;
}
@inline function sbR(t: Tcb, k: u32): u32 {
  return sackBlock(t, k).r;
}
@inline function sbSet(t: Tcb, k: u32, l: u32, r: u32): void {
  const b = sackBlock(t, k);
  b.l = l;
  b.r = r;
}

/** If `seq` lies in a SACKed block, the block's end; else `seq`. */
export function sbSkip(t: Tcb, seq: u32): u32 {
  for (let k: u32 = 0; k < t.sbN; k++) {
    if (seqLe(sbL(t, k), seq) && seqLt(seq, sbR(t, k))) seq = sbR(t, k);
  }
  return seq;
}

/** Drops scoreboard blocks at or below SND.UNA. */
export function sbPrune(t: Tcb): void {
  let w: u32 = 0;
  for (let k: u32 = 0; k < t.sbN; k++) {
    let l = sbL(t, k);
    const r = sbR(t, k);
    if (seqLe(r, t.sndUna)) continue;
    if (seqLt(l, t.sndUna)) l = t.sndUna;
    sbSet(t, w++, l, r);
  }
  t.sbN = w;
}

/** Merges the received segment's SACK blocks into the scoreboard (invalid blocks are ignored). */
export function sbUpdate(t: Tcb): void {
  for (let j: u32 = 0; j < oSackN; j++) {
    let l = rxSack(j).l;
    let r = rxSack(j).r;
    if (!seqLt(l, r) || seqLe(r, t.sndUna) || seqGt(r, t.sndMax) || r - l > 0x40000000) continue; // D-SACK or bogus
    if (seqLt(l, t.sndUna)) l = t.sndUna;
    // insert in order, merging overlaps
    let n = t.sbN;
    let k: u32 = 0;
    while (k < n && seqLt(sbR(t, k), l)) k++;
    // blocks k.. that touch [l, r) merge into it
    let m = k;
    while (m < n && seqLe(sbL(t, m), r)) {
      if (seqLt(sbL(t, m), l)) l = sbL(t, m);
      if (seqGt(sbR(t, m), r)) r = sbR(t, m);
      m++;
    }
    const removed = m - k;
    if (removed == 0) {
      if (n == SB_MAX) {
        // full: forget the highest block (the peer reports it again)
        if (k == n) continue;
        n--;
      }
      for (let q = n; q > k; q--) sbSet(t, q, sbL(t, q - 1), sbR(t, q - 1));
      sbSet(t, k, l, r);
      t.sbN = n + 1;
    } else {
      sbSet(t, k, l, r);
      for (let q = m; q < n; q++) sbSet(t, q - removed + 1, sbL(t, q), sbR(t, q));
      t.sbN = n - removed + 1;
    }
  }
}

/** SACKed bytes below `seq`. */
export function sbSackedBelow(t: Tcb, seq: u32): u32 {
  let s: u32 = 0;
  for (let k: u32 = 0; k < t.sbN; k++) {
    const l = sbL(t, k);
    if (!seqLt(l, seq)) break;
    const r = seqLt(sbR(t, k), seq) ? sbR(t, k) : seq;
    s += r - l;
  }
  return s;
}

/** SACKed bytes in all. */
export function sbSacked(t: Tcb): u32 {
  let s: u32 = 0;
  for (let k: u32 = 0; k < t.sbN; k++) s += sbR(t, k) - sbL(t, k);
  return s;
}

/** RFC 6675 SetPipe, with IsLost(seq) = "some SACKed byte lies above seq". */
export function sbPipe(t: Tcb): u32 {
  const out = t.sndMax - t.sndUna;
  if (t.sbN == 0) return t.sndNxt - t.sndUna;
  const sacked = sbSacked(t);
  // holes below the highest SACKed byte are lost; those above HighRxt are not yet retransmitted
  let lostNotRtx: u32 = 0;
  let from = seqGt(t.highRxt, t.sndUna) ? t.highRxt : t.sndUna;
  for (let k: u32 = 0; k < t.sbN; k++) {
    const l = sbL(t, k);
    if (seqGt(l, from)) lostNotRtx += l - from;
    if (seqGt(sbR(t, k), from)) from = sbR(t, k);
  }
  const p = out - sacked - lostNotRtx;
  return <u32>max<i32>(<i32>p, 0);
}

/** End of the hole sbNextHole found last. */
export let holeEnd: u32 = 0;

/** RFC 6675 NextSeg (rule 1): the first lost, not yet retransmitted byte (NIL if none); its hole ends at holeEnd. */
export function sbNextHole(t: Tcb): u32 {
  let from = seqGt(t.highRxt, t.sndUna) ? t.highRxt : t.sndUna;
  for (let k: u32 = 0; k < t.sbN; k++) {
    const l = sbL(t, k);
    if (seqLt(from, l)) {
      holeEnd = l;
      return from;
    }
    if (seqGt(sbR(t, k), from)) from = sbR(t, k);
  }
  return NIL;
}

// RFC 1071 Internet checksum with SIMD. Sums are kept as 32-bit accumulations of 16-bit words
// read little-endian; csumFold() folds them and swaps to network order. A byte string that
// starts at an odd position of the checksummed stream contributes its folded sum byte-swapped
// (csumAddAt), which is how a checksum runs across a chain of buffers.

/** Unfolded sum of `len` bytes at `p`, read as little-endian u16 words (odd tail padded). */
export function csumRaw(p: usize, len: u32): u64 {
  let acc = i64x2.splat(0);
  let n = len;
  // 64 bytes per turn: four extadd pairs into 32-bit lanes, widened to 64 bits each turn.
  while (n >= 64) {
    let a = i32x4.extadd_pairwise_i16x8_u(v128.load(p));
    a = i32x4.add(a, i32x4.extadd_pairwise_i16x8_u(v128.load(p, 16)));
    a = i32x4.add(a, i32x4.extadd_pairwise_i16x8_u(v128.load(p, 32)));
    a = i32x4.add(a, i32x4.extadd_pairwise_i16x8_u(v128.load(p, 48)));
    acc = i64x2.add(acc, i64x2.extend_low_i32x4_u(a));
    acc = i64x2.add(acc, i64x2.extend_high_i32x4_u(a));
    p += 64;
    n -= 64;
  }
  while (n >= 16) {
    const a = i32x4.extadd_pairwise_i16x8_u(v128.load(p));
    acc = i64x2.add(acc, i64x2.extend_low_i32x4_u(a));
    acc = i64x2.add(acc, i64x2.extend_high_i32x4_u(a));
    p += 16;
    n -= 16;
  }
  let s: u64 = <u64>i64x2.extract_lane(acc, 0) + <u64>i64x2.extract_lane(acc, 1);
  while (n >= 2) {
    s += <u64>load<u16>(p);
    p += 2;
    n -= 2;
  }
  if (n != 0) s += <u64>load<u8>(p);
  return s;
}

/** Folds an unfolded little-endian sum to 16 bits (still little-endian order). */
@inline export function csumFold16(s: u64): u32 {
  s = (s & 0xffffffff) + (s >>> 32);
  s = (s & 0xffffffff) + (s >>> 32);
  let x = <u32>s;
  x = (x & 0xffff) + (x >>> 16);
  x = (x & 0xffff) + (x >>> 16);
  return x;
}

/** Adds the sum of `len` bytes at `p` that start at stream position `pos` to `acc`. */
@inline export function csumAddAt(acc: u64, p: usize, len: u32, pos: u32): u64 {
  const s = csumFold16(csumRaw(p, len));
  return acc + <u64>((pos & 1) != 0 ? (((s & 0xff) << 8) | (s >>> 8)) : s);
}

/** Final checksum field value (network order u16 as it is to be stored with store<u16>). */
@inline export function csumFinish(acc: u64): u16 {
  return <u16>(~csumFold16(acc) & 0xffff);
}

/** Little-endian sum contribution of a big-endian 16-bit value v (host number). */
@inline export function csumWord(v: u32): u64 {
  return <u64>(((v & 0xff) << 8) | ((v >>> 8) & 0xff));
}

/** Contribution of a host-order 32-bit value stored big-endian on the wire. */
@inline export function csumU32(v: u32): u64 {
  return csumWord(v >>> 16) + csumWord(v & 0xffff);
}

/** Exported for tests and the host: checksum of `len` bytes at `p` as a host number. */
export function csumTest(p: usize, len: u32): u32 {
  const f = csumFinish(<u64>csumFold16(csumRaw(p, len)));
  return ((f & 0xff) << 8) | (f >>> 8);
}

// Addresses of both families as one 16-byte value in network byte order (RFC 4291): an IPv6
// address as it is on the wire, an IPv4 address IPv4-mapped (::ffff:a.b.c.d, RFC 4291 2.5.5.2).
// The connection table, the neighbor cache, fragment reassembly and the app's address lanes all
// hold addresses this way, so one table serves both families. Helpers here read, write, compare,
// classify and hash them; nothing here holds state.

/** Bytes of an address. */
export const ADDR_LEN: u32 = 16;

export const FAM_IP4: u32 = 4;
export const FAM_IP6: u32 = 6;

/** Word 2 of an IPv4-mapped address as loaded little-endian (bytes 00 00 ff ff). */
const MAPPED_W2: u32 = 0xffff0000;

@inline export function addrEq(a: usize, b: usize): bool {
  return load<u64>(a) == load<u64>(b) && load<u64>(a, 8) == load<u64>(b, 8);
}
@inline export function addrCopy(dst: usize, src: usize): void {
  store<u64>(dst, load<u64>(src));
  store<u64>(dst, load<u64>(src, 8), 8);
}
@inline export function addrZero(p: usize): void {
  store<u64>(p, 0);
  store<u64>(p, 0, 8);
}
@inline export function addrIsZero(p: usize): bool {
  return (load<u64>(p) | load<u64>(p, 8)) == 0;
}
/** Writes IPv4 address `v4` (a host number) as ::ffff:v4. */
@inline export function addrSet4(p: usize, v4: u32): void {
  store<u64>(p, 0);
  store<u32>(p, MAPPED_W2, 8);
  store<u32>(p, bswap<u32>(v4), 12);
}
/** True for an IPv4-mapped address. */
@inline export function addrIs4(p: usize): bool {
  return load<u64>(p) == 0 && load<u32>(p, 8) == MAPPED_W2;
}
/** The IPv4 address (host number) of a mapped address. */
@inline export function addrGet4(p: usize): u32 {
  return bswap<u32>(load<u32>(p, 12));
}
@inline export function addrFam(p: usize): u32 {
  return addrIs4(p) ? FAM_IP4 : FAM_IP6;
}
/** ff00::/8 */
@inline export function addr6IsMulticast(p: usize): bool {
  return load<u8>(p) == 0xff;
}
/** fe80::/10 */
@inline export function addr6IsLinkLocal(p: usize): bool {
  return load<u8>(p) == 0xfe && (load<u8>(p, 1) & 0xc0) == 0x80;
}
/** ::1 */
@inline export function addr6IsLoopback(p: usize): bool {
  return load<u64>(p) == 0 && load<u64>(p, 8) == 0x0100000000000000;
}
/** True if a and b agree in their first `bits` bits. */
export function addrPrefixEq(a: usize, b: usize, bits: u32): bool {
  let k: u32 = 0;
  while (bits >= 8) {
    if (load<u8>(a + k) != load<u8>(b + k)) return false;
    k++;
    bits -= 8;
  }
  if (bits == 0) return true;
  const m = <u8>((<u32>0xff << (8 - bits)) & 0xff);
  return ((load<u8>(a + k) ^ load<u8>(b + k)) & m) == 0;
}
/** Solicited-node multicast address of `a` (ff02::1:ffXX:XXXX, RFC 4291 2.7.1) written at p. */
export function addr6SolicitedNode(p: usize, a: usize): void {
  store<u64>(p, 0x02ff); // ff02:0000:0000:0000
  store<u32>(p, 0, 8);
  store<u8>(p + 11, 1);
  store<u8>(p + 12, 0xff);
  store<u8>(p + 13, load<u8>(a + 13));
  store<u16>(p + 14, load<u16>(a + 14));
}
/** 32-bit mix of an address (for hash tables). */
@inline export function addrMix(p: usize): u32 {
  const x = load<u64>(p) ^ (load<u64>(p, 8) * 0x9e3779b97f4a7c15);
  return <u32>(x ^ (x >>> 29)) * 0x9e3779b1;
}
/** The address as two 64-bit words folded to one (for SipHash inputs). */
@inline export function addrFold(p: usize): u64 {
  return load<u64>(p) ^ (load<u64>(p, 8) * 0x9e3779b97f4a7c15);
}

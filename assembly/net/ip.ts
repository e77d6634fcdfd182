// The network layer's seam between the two IP families and L4 (TCP, UDP): the received datagram
// as L4 sees it (rx*: family, 16-byte source and destination, L4 pieces), the pseudo-header sums,
// header sizes, header writers, source address selection and output, each chosen by family.
// ip4.ts and ip6.ts fill rx* on input and implement the family-specific halves.

import { bufAddr } from "../pool";
import { csumAddAt, csumFold16, csumWord, csumU32 } from "./csum";
import { pN, pb, po, pl, setP, setPN, ourIp } from "./g";
import { ADDR_LEN, FAM_IP4, addrGet4, addrSet4, addrIs4, addrIsZero, addr6IsMulticast, addr6IsLoopback } from "./addr";
import { IP4_HLEN, ip4WriteHdr, ip4Output, ip4NextHop } from "./ip4";
import { IP6_HLEN, ip6WriteHdr, ip6Output, ip6Src, ip6NextHop, IP6_MIN_MTU } from "./ip6";
import { neighConfirm } from "./neigh";

export const PROTO_ICMP: u32 = 1;
export const PROTO_TCP: u32 = 6;
export const PROTO_UDP: u32 = 17;
export const PROTO_ICMP6: u32 = 58;

// ---- the received datagram, as seen by L4 ----
export let rxFam: u32 = 0;
/** Source and destination of the datagram being handled (16 bytes each; IPv4 mapped). */
export const rxSrcA: usize = memory.data(<i32>ADDR_LEN, 16);
export const rxDstA: usize = memory.data(<i32>ADDR_LEN, 16);
/** IPv4 only: source and destination as host numbers (0 for IPv6). */
export let rxSrc: u32 = 0;
export let rxDst: u32 = 0;
/** The destination is a broadcast or multicast address (no RST, no ICMP error in answer). */
export let rxBcast: bool = false;
/** The destination is one of our unicast addresses (what a listener accepts). */
export let rxToUs: bool = false;
export let rxL4Len: u32 = 0; // bytes of L4 data across pieces 0..rxNp-1 (piece 0 starts at the L4 header)
export let rxNp: u32 = 0; // L4 pieces in use (after trimming)
export let rxCsumOk: bool = false; // the L4 checksum was verified or completed by the NIC/host
export let rxIpHdr: usize = 0; // the IP header (the first fragment's when reassembled)
export let rxIpHl: u32 = 0; // its length (IPv6: with the extension headers before L4)
export let rxFrame: usize = 0; // address of the Ethernet header
export let rxL4Avail0: u32 = 0; // L4 bytes in piece 0
/** True while the datagram being handled was reassembled from fragments. */
export let rxReasm: bool = false;

export function setRxCsumOk(v: bool): void {
  rxCsumOk = v;
}
export function setRx(fam: u32, src4: u32, dst4: u32, bcast: bool, toUs: bool): void {
  rxFam = fam;
  rxSrc = src4;
  rxDst = dst4;
  rxBcast = bcast;
  rxToUs = toUs;
}
export function setRxL4(hdr: usize, hl: u32, l4len: u32, np: u32, reasm: bool): void {
  rxIpHdr = hdr;
  rxIpHl = hl;
  rxL4Len = l4len;
  rxNp = np;
  rxL4Avail0 = pl(0);
  rxReasm = reasm;
}
export function setRxFrame(f: usize): void {
  rxFrame = f;
}

/**
 * Cuts the frame's pieces down to its L4 datagram: piece 0 starts `hoff` bytes in (after the
 * Ethernet and IP headers), `l4` bytes in all (link padding dropped). Returns the pieces used.
 */
export function l4View(hoff: u32, l4: u32): u32 {
  setP(0, pb(0), po(0) + hoff, pl(0) - hoff);
  return trimPieces(pN, l4);
}

/** Cuts the first `n` pieces down to `len` bytes in all; returns the pieces used (piece 0 stays even when empty). */
export function trimPieces(n: u32, len: u32): u32 {
  let left = len;
  let used: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    let l = pl(i);
    if (l > left) l = left;
    setP(i, pb(i), po(i), l);
    left -= l;
    used = i + 1;
    if (left == 0) break;
  }
  return used;
}

/** `acc` plus the sum of the first `n` pieces as one byte stream (odd-position pieces swapped). */
export function sumPieces(acc: u64, n: u32): u64 {
  let pos: u32 = 0;
  for (let i: u32 = 0; i < n; i++) {
    acc = csumAddAt(acc, bufAddr(pb(i)) + po(i), pl(i), pos);
    pos += pl(i);
  }
  return acc;
}

/** After reassembly: the `m` fragments in the piece arrays are the datagram; `hdr`/`hl` its first header. */
export function reasmView(m: u32, hdr: usize, hl: u32): void {
  setPN(m);
  let total: u32 = 0;
  for (let k: u32 = 0; k < m; k++) total += pl(k);
  setRxL4(hdr, hl, total, m, true);
}

/** Sum of the pseudo header of `fam` (RFC 793 / RFC 8200 8.1), unfolded little-endian contributions. */
export function pseudoSum(fam: u32, src: usize, dst: usize, proto: u32, len: u32): u64 {
  if (fam == FAM_IP4) return csumU32(addrGet4(src)) + csumU32(addrGet4(dst)) + csumWord(proto) + csumWord(len);
  let s: u64 = 0;
  for (let k: usize = 0; k < ADDR_LEN; k += 4) s += <u64>load<u16>(src + k) + <u64>load<u16>(src + k + 2);
  for (let k: usize = 0; k < ADDR_LEN; k += 4) s += <u64>load<u16>(dst + k) + <u64>load<u16>(dst + k + 2);
  return s + csumU32(len) + csumWord(proto);
}

/** L4 checksum over the received pieces plus pseudo header: true if valid. */
export function rxL4CsumValid(proto: u32): bool {
  if (rxCsumOk) return true;
  return csumFold16(sumPieces(pseudoSum(rxFam, rxSrcA, rxDstA, proto, rxL4Len), rxNp)) == 0xffff;
}

/** Bytes of the network header we write for `fam` (no options, no extension headers). */
@inline export function netHdrLen(fam: u32): u32 {
  return fam == FAM_IP4 ? IP4_HLEN : IP6_HLEN;
}
/** The smallest MTU a path of `fam` may have (RFC 791: 68, though we floor at 576 like RFC 1122's reassembly minimum; RFC 8200: 1280). */
@inline export function netMinMtu(fam: u32): u32 {
  return fam == FAM_IP4 ? 576 : IP6_MIN_MTU;
}

/** Writes a network header at `p` for an L4 datagram of `l4len` bytes. */
export function netWriteHdr(fam: u32, p: usize, src: usize, dst: usize, proto: u32, l4len: u32, ttl: u32): void {
  if (fam == FAM_IP4) ip4WriteHdr(p, addrGet4(src), addrGet4(dst), proto, l4len, ttl);
  else ip6WriteHdr(p, src, dst, proto, l4len, ttl);
}

/**
 * Our source address for a datagram to `dst` written at `out` (RFC 6724 in short: a link-local
 * destination gets our link-local address, any other our configured one). False if we have
 * no usable address of that family.
 */
export function netSrcFor(fam: u32, dst: usize, out: usize): bool {
  if (fam == FAM_IP4) {
    addrSet4(out, ourIp);
    return ourIp != 0;
  }
  return ip6Src(dst, out);
}

/** Upper-layer progress with `dst`: its next hop's neighbor entry is confirmed reachable. */
export function netConfirm(fam: u32, dst: usize): void {
  const hop = fam == FAM_IP4 ? ip4NextHop(addrGet4(dst)) : ip6NextHop(dst);
  if (hop != 0) neighConfirm(hop);
}

/** Sends the frame under construction (first piece: Ethernet + network header) to `dst`. */
export function netOutput(fam: u32, dst: usize, conn: u32): void {
  if (fam == FAM_IP4) ip4Output(addrGet4(dst), conn);
  else ip6Output(dst, conn);
}

/** True if `a` is a unicast destination we may open a connection to or send to (not zero, broadcast, multicast or loopback). */
export function netDstOk(a: usize): bool {
  if (addrIs4(a)) {
    const v = addrGet4(a);
    return v != 0 && v != 0xffffffff && (v >>> 28) != 0xe;
  }
  return !addrIsZero(a) && !addr6IsMulticast(a) && !addr6IsLoopback(a);
}

// UDP (RFC 768) over both families: the header's layout, the bind table, receive (checksum
// verified; zero = none on IPv4, refused on IPv6 as RFC 8200 8.1 says; payload delivered to the
// app by reference, the source address in each event's lane row) and send (headers in the
// payload buffer's headroom when the app lends it, else in a header buffer).

import { arenaAlloc } from "../arena";
import { bufAddr, bufAlloc, bufOwner, bufRef, bufSetOwner, bufUnref, nameCheck } from "../pool";
import { OWNER_APP, OWNER_KEPT, OWNER_NIC, SF_MORE } from "../layout";
import { ringPush, ringSpace, ringTail, ringLaneRow } from "../ring";
import { csumAddAt, csumFinish, csumRaw, csumFold16 } from "./csum";
import {
  cfgGet, CFG_UDP, count, C_UDP_BAD_CSUM, C_UDP_BAD_LEN, C_UDP_NO_PORT, C_UDP_IN, C_UDP_OUT, C_APPOUT_FULL,
  C_BUF_EXHAUSTED, C_UDP_BIND_FULL, ld16, st16, aoutRing, emit, EV_UDP, EV_UDP_BOUND, EV_ERROR, EV_SEND_REFUSED,
  pb, po, pl, setP, txAdd, txReset, ourMtu,
} from "./g";
import { ETH_HLEN } from "./eth";
import { FAM_IP4, addrCopy, addrFam, addrIsZero, addrGet4 } from "./addr";
import {
  rxFam, rxSrc, rxSrcA, rxDstA, rxL4Len, rxNp, rxBcast, rxL4Avail0, rxL4CsumValid, pseudoSum, netWriteHdr, netOutput,
  netHdrLen, netSrcFor, trimPieces, sumPieces, PROTO_UDP,
} from "./ip";
import { icmpError, IP4_TTL_DEFAULT, ICMP_DEST_UNREACH, ICMP_UNREACH_PORT } from "./ip4";
import { icmp6Error, ICMP6_DEST_UNREACH, UNREACH6_PORT } from "./icmp6";

// ---- UDP header (RFC 768): byte offsets ----
const UDP_SPORT: u32 = 0; // source port
const UDP_DPORT: u32 = 2; // destination port
const UDP_LEN: u32 = 4; // header and data
const UDP_CSUM: u32 = 6; // over pseudo header, header and data; 0 = none (IPv4)
const UDP_HLEN: u32 = 8;

// ---- binds: nBinds rows from `binds`; a bind's handle is its row ----
@unmanaged class UdpBind {
  port: u16; // local port
  used: u16; // 1 = bound, 0 = free row (then port is 0 too)
}
let binds: usize = 0;
let nBinds: u32 = 0;
/** Port -> bind handle + 1 (0: none), one byte per port: a datagram finds its bind in one load. */
let bindByPort: usize = 0;

export function udpInit(): i32 {
  nBinds = cfgGet(CFG_UDP);
  const a = arenaAlloc(nBinds * offsetof<UdpBind>(), 16);
  if (a < 0) return <i32>a;
  binds = <usize>a;
  const m = arenaAlloc(65536, 64);
  if (m < 0) return <i32>m;
  bindByPort = <usize>m;
  memory.fill(bindByPort, 0, 65536);
  return 0;
}

@inline function bind(i: u32): UdpBind {
  return changetype<UdpBind>(binds + <usize>i * offsetof<UdpBind>());
}

function findBind(port: u32): i32 {
  if (port > 0xffff) return -1;
  return <i32>load<u8>(bindByPort + port) - 1;
}

export function udpInput(): void {
  if (rxL4Len < UDP_HLEN || rxL4Avail0 < UDP_HLEN) {
    count(C_UDP_BAD_LEN);
    return;
  }
  const u = bufAddr(pb(0)) + po(0);
  const ulen = ld16(u + UDP_LEN);
  if (ulen < UDP_HLEN || ulen > rxL4Len) {
    count(C_UDP_BAD_LEN);
    return;
  }
  const n = trimPieces(rxNp, ulen); // to the UDP length
  if (load<u16>(u + UDP_CSUM) == 0 && rxFam != FAM_IP4) {
    count(C_UDP_BAD_CSUM); // IPv6 has no header checksum: UDP's is not optional
    return;
  }
  if (load<u16>(u + UDP_CSUM) != 0) {
    // verify over exactly ulen bytes
    const acc = sumPieces(pseudoSum(rxFam, rxSrcA, rxDstA, PROTO_UDP, ulen), n);
    if (csumFold16(acc) != 0xffff && !(ulen == rxL4Len && rxL4CsumValid(PROTO_UDP))) {
      count(C_UDP_BAD_CSUM);
      return;
    }
  }
  const dport = ld16(u + UDP_DPORT);
  const sport = ld16(u + UDP_SPORT);
  const h = findBind(dport);
  if (h < 0) {
    count(C_UDP_NO_PORT);
    if (!rxBcast) {
      if (rxFam == FAM_IP4) icmpError(ICMP_DEST_UNREACH, ICMP_UNREACH_PORT);
      else icmp6Error(ICMP6_DEST_UNREACH, UNREACH6_PORT, 0);
    }
    return;
  }
  // deliver the payload pieces by reference, one event per piece (SF_MORE chains them)
  if (ringSpace(aoutRing) < n) {
    count(C_APPOUT_FULL);
    return;
  }
  count(C_UDP_IN);
  setP(0, pb(0), po(0) + UDP_HLEN, pl(0) - UDP_HLEN);
  for (let i: u32 = 0; i < n; i++) {
    bufRef(pb(i));
    bufSetOwner(pb(i), OWNER_APP);
    const fl = (EV_UDP << 8) | (sport << 16) | (<u32>h << 1) | (i + 1 < n ? SF_MORE : 0);
    const row = ringLaneRow(aoutRing, ringTail(aoutRing));
    if (row != 0) addrCopy(row, rxSrcA);
    ringPush(aoutRing, pb(i), po(i), pl(i), rxSrc, fl);
  }
}

/** APP-IN: bind UDP port. */
export function udpBind(port: u32, tag: u32): void {
  if (port == 0 || port > 0xffff || findBind(port) >= 0) {
    emit(EV_ERROR, tag, 0, port, 0, 0, false);
    return;
  }
  for (let i: u32 = 0; i < nBinds; i++) {
    const b = bind(i);
    if (b.used == 0) {
      b.port = <u16>port;
      b.used = 1;
      store<u8>(bindByPort + port, <u8>(i + 1));
      emit(EV_UDP_BOUND, i, tag, port, 0, port, false);
      return;
    }
  }
  count(C_UDP_BIND_FULL);
  emit(EV_ERROR, tag, 0, port, 0, 0, false);
}

export function udpUnbind(h: u32): void {
  if (h < nBinds) {
    const b = bind(h);
    if (b.used != 0) store<u8>(bindByPort + <u32>b.port, 0);
    b.port = 0;
    b.used = 0;
  }
}

const srcA: usize = memory.data(16, 16);

/**
 * APP-IN: send one datagram to dst (16 bytes, IPv6 or IPv4 mapped). Ownership of an APP buffer
 * passes to the NIC; KEPT ones are referenced.
 */
export function udpSend(h: u32, dst: usize, dport: u32, b: u32, off: u32, len: u32): void {
  const fam = addrFam(dst);
  const NL = netHdrLen(fam);
  // broadcast and multicast destinations are fine for UDP; the unspecified address is not
  const ok = h < nBinds && bind(h).used != 0 && dport != 0 && !addrIsZero(dst) && !(fam == FAM_IP4 && addrGet4(dst) == 0) &&
    netSrcFor(fam, dst, srcA) &&
    nameCheck(b, off, len) == 0 && len + UDP_HLEN + NL <= ourMtu;
  const owner = b < 0xffffffff ? bufOwner(b) : -1;
  if (!ok || (owner != <i32>OWNER_APP && owner != <i32>OWNER_KEPT)) {
    emit(EV_SEND_REFUSED, h, b, off, len, 0, false);
    return;
  }
  const sport = <u32>bind(h).port;
  const HL = ETH_HLEN + NL + UDP_HLEN;
  txReset();
  let u: usize;
  if (owner == <i32>OWNER_APP && off >= HL) {
    bufSetOwner(b, OWNER_NIC);
    txAdd(b, off - HL, HL + len);
    u = bufAddr(b) + off - UDP_HLEN;
  } else {
    const hb = bufAlloc(OWNER_NIC);
    if (hb < 0) {
      count(C_BUF_EXHAUSTED);
      emit(EV_SEND_REFUSED, h, b, off, len, 0, false);
      return;
    }
    if (owner == <i32>OWNER_APP) bufSetOwner(b, OWNER_NIC);
    else bufRef(b);
    txAdd(<u32>hb, 0, HL);
    if (len > 0) txAdd(b, off, len);
    else bufUnref(b);
    u = bufAddr(<u32>hb) + ETH_HLEN + NL;
  }
  st16(u + UDP_SPORT, sport);
  st16(u + UDP_DPORT, dport);
  st16(u + UDP_LEN, UDP_HLEN + len);
  store<u16>(u + UDP_CSUM, 0);
  let acc = pseudoSum(fam, srcA, dst, PROTO_UDP, UDP_HLEN + len);
  acc += <u64>csumFold16(csumRaw(u, UDP_HLEN));
  acc = csumAddAt(acc, bufAddr(b) + off, len, UDP_HLEN);
  let c = csumFinish(acc);
  if (c == 0) c = 0xffff;
  store<u16>(u + UDP_CSUM, c);
  netWriteHdr(fam, u - NL, srcA, dst, PROTO_UDP, UDP_HLEN + len, IP4_TTL_DEFAULT);
  count(C_UDP_OUT);
  netOutput(fam, dst, 0);
}

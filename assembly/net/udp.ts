// UDP (RFC 768): binds, receive with checksum verification (zero = none on IPv4), send with
// headers in the payload buffer's headroom when the app lends it (else a header buffer).

import { arenaAlloc } from "../arena";
import { bufAddr, bufAlloc, bufOwner, bufRef, bufSetOwner, bufUnref, nameCheck } from "../pool";
import { OWNER_APP, OWNER_KEPT, OWNER_NIC, SF_MORE } from "../layout";
import { ringPush, ringSpace } from "../ring";
import { csumAddAt, csumFinish, csumRaw, csumFold16 } from "./csum";
import {
  cfgGet, CFG_UDP, count, C_UDP_BAD_CSUM, C_UDP_BAD_LEN, C_UDP_NO_PORT, C_UDP_IN, C_UDP_OUT, C_APPOUT_FULL,
  C_BUF_EXHAUSTED, C_UDP_BIND_FULL, ld16, st16, aoutRing, emit, EV_UDP, EV_UDP_BOUND, EV_ERROR, EV_SEND_REFUSED,
  pb, po, pl, setP, txAdd, txReset, ourIp, ourMtu,
} from "./g";
import { ETH_HLEN } from "./eth";
import {
  rxSrc, rxDst, rxL4Len, rxNp, rxBcast, rxL4Avail0, rxL4CsumValid, pseudo4, ip4WriteHdr, netOutput, icmpError,
  FAM_IP4, PROTO_UDP, IP4_HLEN,
} from "./ip4";

const UDP_HLEN: u32 = 8;
let binds: usize = 0; // u32 per bind: port | (used << 16)
let nBinds: u32 = 0;

export function udpInit(): i32 {
  nBinds = cfgGet(CFG_UDP);
  const a = arenaAlloc(nBinds * 4, 16);
  if (a < 0) return <i32>a;
  binds = <usize>a;
  return 0;
}

function findBind(port: u32): i32 {
  for (let i: u32 = 0; i < nBinds; i++) {
    if (load<u32>(binds + (<usize>i << 2)) == (port | 0x10000)) return <i32>i;
  }
  return -1;
}

export function udpInput(): void {
  if (rxL4Len < UDP_HLEN || rxL4Avail0 < UDP_HLEN) {
    count(C_UDP_BAD_LEN);
    return;
  }
  const u = bufAddr(pb(0)) + po(0);
  const ulen = ld16(u + 4);
  if (ulen < UDP_HLEN || ulen > rxL4Len) {
    count(C_UDP_BAD_LEN);
    return;
  }
  // trim to the UDP length
  let left = ulen;
  let n: u32 = 0;
  for (let i: u32 = 0; i < rxNp; i++) {
    let l = pl(i);
    if (l > left) l = left;
    setP(i, pb(i), po(i), l);
    left -= l;
    n = i + 1;
    if (left == 0) break;
  }
  if (load<u16>(u + 6) != 0) {
    // verify over exactly ulen bytes
    let acc = pseudo4(rxSrc, rxDst, PROTO_UDP, ulen);
    let pos: u32 = 0;
    for (let i: u32 = 0; i < n; i++) {
      acc = csumAddAt(acc, bufAddr(pb(i)) + po(i), pl(i), pos);
      pos += pl(i);
    }
    if (csumFold16(acc) != 0xffff && !(ulen == rxL4Len && rxL4CsumValid(PROTO_UDP))) {
      count(C_UDP_BAD_CSUM);
      return;
    }
  }
  const dport = ld16(u + 2);
  const sport = ld16(u);
  const h = findBind(dport);
  if (h < 0) {
    count(C_UDP_NO_PORT);
    if (!rxBcast) icmpError(3, 3);
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
    const p = binds + (<usize>i << 2);
    if (load<u32>(p) == 0) {
      store<u32>(p, port | 0x10000);
      emit(EV_UDP_BOUND, i, tag, port, 0, port, false);
      return;
    }
  }
  count(C_UDP_BIND_FULL);
  emit(EV_ERROR, tag, 0, port, 0, 0, false);
}

export function udpUnbind(h: u32): void {
  if (h < nBinds) store<u32>(binds + (<usize>h << 2), 0);
}

/** APP-IN: send one datagram. Ownership of an APP buffer passes to the NIC; KEPT ones are referenced. */
export function udpSend(h: u32, dst: u32, dport: u32, b: u32, off: u32, len: u32): void {
  const ok = h < nBinds && load<u32>(binds + (<usize>h << 2)) != 0 && dport != 0 && dst != 0 &&
    nameCheck(b, off, len) == 0 && len + UDP_HLEN + IP4_HLEN <= ourMtu;
  const owner = b < 0xffffffff ? bufOwner(b) : -1;
  if (!ok || (owner != <i32>OWNER_APP && owner != <i32>OWNER_KEPT)) {
    emit(EV_SEND_REFUSED, h, b, off, len, 0, false);
    return;
  }
  const sport = load<u32>(binds + (<usize>h << 2)) & 0xffff;
  const HL = ETH_HLEN + IP4_HLEN + UDP_HLEN;
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
    u = bufAddr(<u32>hb) + ETH_HLEN + IP4_HLEN;
  }
  st16(u, sport);
  st16(u + 2, dport);
  st16(u + 4, UDP_HLEN + len);
  store<u16>(u + 6, 0);
  let acc = pseudo4(ourIp, dst, PROTO_UDP, UDP_HLEN + len);
  acc += <u64>csumFold16(csumRaw(u, UDP_HLEN));
  acc = csumAddAt(acc, bufAddr(b) + off, len, UDP_HLEN);
  let c = csumFinish(acc);
  if (c == 0) c = 0xffff;
  store<u16>(u + 6, c);
  ip4WriteHdr(u - IP4_HLEN, ourIp, dst, PROTO_UDP, UDP_HLEN + len, 64);
  count(C_UDP_OUT);
  netOutput(FAM_IP4, dst, 0);
}

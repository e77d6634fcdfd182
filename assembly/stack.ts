// The network stack's entry points: stackInit (set-up), stackPoll (one deterministic turn: RX
// frames gathered from their slots, checked against our Ethernet address and dispatched on their
// EtherType by frameInput; APP-IN commands; timers), and accessors for the rings, configuration
// block and counters. See docs/core-abi.md.

import { ringCreate, ringCreateWith, ringCount, ringShift, ringSpace, ringLaneOfSlot, slotBuf, slotOff, slotLen, slotConn, slotFlags } from "./ring";
import { arenaAlloc } from "./arena";
import { bufAddr, bufOwner, bufUnref, poolCount } from "./pool";
import { BUF_SIZE, OWNER_NIC, SF_MORE, E_ARG } from "./layout";
import { csumAddAt, csumFinish } from "./net/csum";
import {
  cfg, cfgGet, cfgDefault, cfgMin, cfgMax, CFG_IP, CFG_MASK, CFG_GW, CFG_MTU, CFG_RX_LOG2, CFG_TX_LOG2, CFG_AIN_LOG2, CFG_AOUT_LOG2,
  counters, C_COUNT, count, countN, C_RX_FRAMES, C_RX_BYTES, C_RX_BAD_SLOT, C_RX_CHAIN_BAD, C_ETH_SHORT,
  C_ETH_TYPE, C_ETH_NOT_US, C_RX_STALL, C_CSUM_COMPLETED, C_APPIN_BAD, CFG_MAC,
  gInit, setIdentity, setNow, setRings, rxRing, txRing, ainRing, aoutRing, aoutSpace,
  MAXP, pN, pb, po, pl, setP, ld16, ourIp,
} from "./net/g";
import { arpInput, arpAnnounce, ETH_DST, ETH_TYPE, ETH_HLEN, ETHERTYPE_ARP, ETHERTYPE_IP4, ETHERTYPE_IP6 } from "./net/eth";
import { neighInit, neighTimers, neighAdd, neighLookup } from "./net/neigh";
import { addrSet4, addrZero } from "./net/addr";
import { ip4Input } from "./net/ip4";
import { setRxCsumOk } from "./net/ip";
import { ip6Init, ip6Input, ip6On, ip6Addr, ip6State, A6_COUNT } from "./net/ip6";
import { ndStart, ndTimers } from "./net/nd";
import { udpInit, udpBind, udpUnbind, udpSend } from "./net/udp";
import { fragInit, fragTimers, fragHeld } from "./net/frag";
import { tcpInit, tcpSend, tcpClose, tcpAbort, tcpListen, tcpUnlisten, tcpConnect, tcpRecvd, tcpSetopt } from "./tcp/api";
import { tcpTimers, tcpFlush } from "./tcp/timers";

/** RX slot flags (besides SF_MORE). */
export const RXF_CSUM_VALID: u32 = 2; // the L4 checksum was verified by the NIC/host
export const RXF_NEEDS_CSUM: u32 = 4; // partial checksum: conn = csum_start | csum_offset << 16

// APP-IN command codes (flags bits 8-15)
export const CMD_SEND: u32 = 1;
export const CMD_CLOSE: u32 = 2;
export const CMD_ABORT: u32 = 3;
export const CMD_LISTEN: u32 = 4;
export const CMD_CONNECT: u32 = 5;
export const CMD_UNLISTEN: u32 = 6;
export const CMD_UDP_BIND: u32 = 7;
export const CMD_UDP_SEND: u32 = 8;
export const CMD_UDP_UNBIND: u32 = 9;
export const CMD_RECVD: u32 = 10;
export const CMD_SETOPT: u32 = 11;

let inited = false;
let announced = false;
let dadStarted = false;
let fbuf: usize = 0; // u32[MAXP]: buffers of the current frame (the NIC's references)
export const scratch: usize = memory.data(256, 16);

/** Address of the 256-byte configuration block the host fills before stackInit. */
export function stackConfig(): usize {
  return cfg;
}
/** Default of the configuration field at byte offset `off` (0: none); see CFG_TABLE in net/g.ts. */
export function stackConfigDefault(off: u32): u32 {
  return cfgDefault(off);
}
/** The configuration field at byte offset `off` as the core reads it (default, clamped). */
export function stackConfigValue(off: u32): u32 {
  return cfgGet(off);
}
/** Smallest value the configuration field at byte offset `off` takes (smaller ones are raised to it). */
export function stackConfigMin(off: u32): u32 {
  return cfgMin(off);
}
/** Largest value the configuration field at byte offset `off` accepts. */
export function stackConfigMax(off: u32): u32 {
  return cfgMax(off);
}
/** Address of a 256-byte scratch area for host/test arguments (e.g. MAC addresses). */
export function stackScratch(): usize {
  return scratch;
}

/**
 * Set-up: allocates every table and the four rings. After poolReserve, before arenaSeal. Returns 0,
 * E_ARG when called a second time, or an arena error (E_NOMEM, E_SEALED) when the configuration
 * does not fit.
 */
export function stackInit(): i32 {
  if (inited) return E_ARG;
  let r = gInit();
  if (r < 0) return r;
  setIdentity(load<u32>(cfg + CFG_IP), load<u32>(cfg + CFG_MASK), load<u32>(cfg + CFG_GW), cfgGet(CFG_MTU));
  const a = arenaAlloc(MAXP * 4, 16);
  if (a < 0) return <i32>a;
  fbuf = <usize>a;
  r = neighInit();
  if (r < 0) return r;
  ip6Init();
  r = udpInit();
  if (r < 0) return r;
  r = fragInit();
  if (r < 0) return r;
  r = tcpInit();
  if (r < 0) return r;
  const rx = ringCreate(cfgGet(CFG_RX_LOG2));
  if (rx < 0) return <i32>rx;
  const tx = ringCreate(cfgGet(CFG_TX_LOG2));
  if (tx < 0) return <i32>tx;
  const ai = ringCreateWith(cfgGet(CFG_AIN_LOG2), true);
  if (ai < 0) return <i32>ai;
  const ao = ringCreateWith(cfgGet(CFG_AOUT_LOG2), true);
  if (ao < 0) return <i32>ao;
  setRings(<usize>rx, <usize>tx, <usize>ai, <usize>ao);
  inited = true;
  return 0;
}

/** Ring addresses: 0 RX (host->core frames), 1 TX (core->host frames), 2 APP-IN, 3 APP-OUT. */
export function stackRing(which: u32): usize {
  if (which == 0) return rxRing;
  if (which == 1) return txRing;
  if (which == 2) return ainRing;
  if (which == 3) return aoutRing;
  return 0;
}
export function stackStats(): usize {
  return counters;
}
export function stackStatCount(): u32 {
  return C_COUNT;
}
/** Changes our IPv4 identity at run time. */
export function stackSetAddr(ip: u32, mask: u32, gw: u32): void {
  store<u32>(cfg + CFG_IP, ip);
  store<u32>(cfg + CFG_MASK, mask);
  store<u32>(cfg + CFG_GW, gw);
  setIdentity(ip, mask, gw, cfgGet(CFG_MTU));
  announced = false;
}
/** Queues a gratuitous ARP at the next poll. */
export function stackAnnounce(): void {
  announced = false;
}
const hookA: usize = memory.data(16, 16);
/** Static ARP entry; the MAC is 6 bytes at memory offset `mac` (e.g. in the scratch area). */
export function stackArpAdd(ip: u32, mac: usize): void {
  addrSet4(hookA, ip);
  neighAdd(hookA, mac);
}
/** Static neighbor entry of either family: the 16-byte address at `addr` (IPv4 mapped), the 6-byte MAC at `mac`. */
export function stackNeighAdd(addr: usize, mac: usize): void {
  neighAdd(addr, mac);
}
/** 1 if the 16-byte address at `addr` is resolved in the neighbor cache. */
export function stackNeighLookup(addr: usize): i32 {
  return neighLookup(addr);
}
/** Address of our k-th IPv6 address (16 bytes; 0 link-local, 1 the configured one), or 0 if none. */
export function stackIp6Addr(k: u32): usize {
  return k < A6_COUNT && ip6State(k) != 0 ? ip6Addr(k) : 0;
}
/** State of our k-th IPv6 address: 0 none, 1 tentative (DAD running), 2 preferred, 3 duplicate. */
export function stackIp6State(k: u32): u32 {
  return k < A6_COUNT ? ip6State(k) : 0;
}
/** Fragments held in IPv4 reassembly (tests). */
export function stackFragHeld(): u32 {
  return fragHeld();
}
export function stackArpLookup(ip: u32): i32 {
  addrSet4(hookA, ip);
  return neighLookup(hookA);
}

@inline function fb(i: u32): u32 {
  return load<u32>(fbuf + (<usize>i << 2));
}

function frameInput(n: u32, frameLen: u32, flags: u32, csumInfo: u32): void {
  count(C_RX_FRAMES);
  countN(C_RX_BYTES, frameLen);
  const l0 = pl(0);
  if (l0 < ETH_HLEN) {
    count(C_ETH_SHORT);
    return;
  }
  const f = bufAddr(pb(0)) + po(0);
  // destination: us, broadcast, or with IPv6 on an IPv6 multicast MAC (33:33:..., RFC 2464 7;
  // ip6Input keeps the groups we are in)
  const b0 = load<u32>(f + ETH_DST);
  const b1 = <u32>load<u16>(f + ETH_DST + 4);
  const bcast = b0 == 0xffffffff && b1 == 0xffff;
  const mcast6 = ip6On && (b0 & 0xffff) == 0x3333;
  if (!bcast && !mcast6 && (b0 != load<u32>(cfg + CFG_MAC) || b1 != <u32>load<u16>(cfg + CFG_MAC + 4))) {
    count(C_ETH_NOT_US);
    return;
  }
  const type = ld16(f + ETH_TYPE);
  setRxCsumOk((flags & RXF_CSUM_VALID) != 0);
  if (type == ETHERTYPE_IP4 || type == ETHERTYPE_IP6) {
    if ((flags & RXF_NEEDS_CSUM) != 0) {
      const start = csumInfo & 0xffff;
      const off = csumInfo >>> 16;
      if (start < ETH_HLEN || start + off + 2 > l0 || start >= frameLen) {
        count(C_RX_CHAIN_BAD);
        return;
      }
      // the field holds the pseudo-header sum; sum from csum_start to the end and store it
      let acc: u64 = 0;
      let pos: u32 = 0;
      for (let i: u32 = 0; i < n; i++) {
        let a = bufAddr(pb(i)) + po(i);
        let l = pl(i);
        if (i == 0) {
          a += start;
          l -= start;
        }
        acc = csumAddAt(acc, a, l, pos);
        pos += l;
      }
      store<u16>(f + start + off, csumFinish(acc));
      count(C_CSUM_COMPLETED);
      setRxCsumOk(true);
    }
    if (type == ETHERTYPE_IP4) ip4Input(frameLen);
    else ip6Input(frameLen);
  } else if (type == ETHERTYPE_ARP) {
    arpInput(f + ETH_HLEN, l0 - ETH_HLEN);
  } else {
    count(C_ETH_TYPE);
  }
}

function rxRun(): bool {
  const rx = rxRing;
  const np = poolCount();
  while (ringCount(rx) > 0) {
    if (aoutSpace() < MAXP + 8 || ringSpace(txRing) < MAXP + 8) {
      count(C_RX_STALL);
      return false;
    }
    let n: u32 = 0;
    let frameLen: u32 = 0;
    let bad = false;
    let flags0: u32 = 0;
    let info0: u32 = 0;
    let first = true;
    while (true) {
      const s = ringShift(rx);
      if (s == 0) {
        bad = true; // chain cut short by the producer
        break;
      }
      const b = slotBuf(s);
      const o = slotOff(s);
      const l = slotLen(s);
      const fl = slotFlags(s);
      if (first) {
        flags0 = fl;
        info0 = slotConn(s);
        first = false;
      }
      if (b >= np || bufOwner(b) != <i32>OWNER_NIC || o + l > BUF_SIZE) {
        count(C_RX_BAD_SLOT);
        bad = true;
      } else if (n >= MAXP) {
        bufUnref(b);
        bad = true;
      } else {
        store<u32>(fbuf + (<usize>n << 2), b);
        setP(n, b, o, l);
        n++;
        frameLen += l;
      }
      if ((fl & SF_MORE) == 0) break;
    }
    if (bad || n == 0) {
      count(C_RX_CHAIN_BAD);
    } else {
      pN = n;
      frameInput(n, frameLen, flags0, info0);
    }
    for (let i: u32 = 0; i < n; i++) bufUnref(fb(i));
  }
  return true;
}

const cmdA: usize = memory.data(16, 16);
/** A command's address: IPv4 `v4` when not 0, else the slot's lane row (IPv6, or IPv4 mapped). */
function cmdAddr(r: usize, s: usize, v4: u32): usize {
  if (v4 != 0) {
    addrSet4(cmdA, v4);
    return cmdA;
  }
  const row = ringLaneOfSlot(r, s);
  if (row == 0) {
    addrZero(cmdA);
    return cmdA;
  }
  return row;
}

function appRun(): void {
  const r = ainRing;
  while (true) {
    if (aoutSpace() < 8) return;
    const s = ringShift(r);
    if (s == 0) return;
    const b = slotBuf(s);
    const o = slotOff(s);
    const l = slotLen(s);
    const c = slotConn(s);
    const fl = slotFlags(s);
    const code = (fl >>> 8) & 0xff;
    if (code == CMD_SEND) tcpSend(c, b, o, l);
    else if (code == CMD_CLOSE) tcpClose(c);
    else if (code == CMD_ABORT) tcpAbort(c);
    else if (code == CMD_LISTEN) tcpListen(o, l, c);
    else if (code == CMD_CONNECT) tcpConnect(cmdAddr(r, s, b), o, l, c);
    else if (code == CMD_UNLISTEN) tcpUnlisten(o);
    else if (code == CMD_UDP_BIND) udpBind(o, c);
    else if (code == CMD_UDP_SEND) udpSend((fl >>> 1) & 0x7f, cmdAddr(r, s, c), fl >>> 16, b, o, l);
    else if (code == CMD_UDP_UNBIND) udpUnbind(c);
    else if (code == CMD_RECVD) tcpRecvd(c, b);
    else if (code == CMD_SETOPT) tcpSetopt(c, o, b);
    else count(C_APPIN_BAD);
  }
}

/**
 * One turn: consumes RX and APP-IN, runs due timers, fills TX and APP-OUT. Returns the next
 * deadline in ms (Infinity if none; `nowMs` itself if work was left for lack of ring space).
 */
export function stackPoll(t: f64): f64 {
  if (!inited) return Infinity;
  setNow(t);
  if (!announced) {
    announced = true;
    if (ourIp != 0) arpAnnounce();
    if (!dadStarted) {
      dadStarted = true;
      ndStart();
    }
  }
  const done = rxRun();
  appRun();
  let next = tcpTimers();
  const f = tcpFlush(); // output arms retransmission and persist timers
  if (f < next) next = f;
  const a = neighTimers();
  if (a < next) next = a;
  const d = ndTimers();
  if (d < next) next = d;
  const fr = fragTimers();
  if (fr < next) next = fr;
  if (!done || ringCount(ainRing) > 0) next = t;
  return next;
}

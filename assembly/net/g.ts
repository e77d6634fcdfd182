// Shared state of the network core: the configuration block and its table, counters, our
// identity and clock, the rings and the events pushed to APP-OUT, network byte-order loads and
// stores (ld16..st32), the current frame's pieces (RX) and the frame being built (TX) with its
// offload flags. Protocol header layouts live in their protocol's file (eth, ip4, udp, tcp).
// Everything lives in the arena or in static data; nothing is allocated after stackInit().

import { arenaAlloc } from "../arena";
import { ringPush, ringSpace, ringTail, ringLaneRow } from "../ring";
import { bufUnref } from "../pool";
import { SF_MORE } from "../layout";

// ---- configuration block ----
// 256 bytes of static data the host fills before stackInit(). Each field is declared here once:
// its offset below, and its default and bounds in CFG_TABLE. A u32 field left 0 takes its default;
// the core clamps a value into [min, max] where it reads it (cfgGet), and the host, reading the
// same table through stackConfigDefault/stackConfigMax, refuses a value above max and reports
// the defaults it did not override (docs/core-abi.md).
export const CFG_MAC: u32 = 0; // 6 bytes: our Ethernet address
export const CFG_IP: u32 = 8; // IPv4 address as a host number (198.18.0.1 = 0xc6120001); 0 = none yet
export const CFG_MASK: u32 = 12; // IPv4 netmask
export const CFG_GW: u32 = 16; // IPv4 gateway, 0 = none
export const CFG_MTU: u32 = 20; // IP MTU in bytes
export const CFG_MAX_CONNS: u32 = 24; // TCP connection blocks
export const CFG_SYNQ: u32 = 28; // half-open connections in all SYN queues together (beyond: SYN cookies)
export const CFG_NODES: u32 = 32; // segment nodes shared by send queues and reassembly
export const CFG_ARP: u32 = 36; // ARP cache entries
export const CFG_ARPQ: u32 = 40; // frames waiting for ARP resolution
export const CFG_UDP: u32 = 44; // UDP binds
export const CFG_LISTEN: u32 = 48; // TCP listeners
export const CFG_RX_LOG2: u32 = 52; // ring sizes, log2 of the slot count
export const CFG_TX_LOG2: u32 = 56;
export const CFG_AIN_LOG2: u32 = 60;
export const CFG_AOUT_LOG2: u32 = 64;
export const CFG_RCVBUF: u32 = 68; // per-connection receive window in bytes
export const CFG_SNDBUF: u32 = 72; // per-connection send queue limit in bytes
export const CFG_FLAGS: u32 = 76; // default connection option bits (TF_NODELAY..TF_NOWS of tcp/tcb.ts)
export const CFG_ICMP_RATE: u32 = 80; // ICMP errors per second (burst = rate/10 + 1)
export const CFG_ARP_TTL: u32 = 84; // ms an ARP entry stays valid
export const CFG_MSL: u32 = 88; // ms; TIME_WAIT lasts 2*MSL
export const CFG_KEEPALIVE: u32 = 92; // ms idle before keepalive probes, 0 = off
export const CFG_DELACK: u32 = 96; // ms delayed-ACK timeout
export const CFG_MIN_RTO: u32 = 100; // ms (RFC 6298 says 1000, Linux uses 200)
export const CFG_INIT_RTO: u32 = 104; // ms
export const CFG_FRAG_SLOTS: u32 = 108; // IPv4 datagrams in reassembly at once
export const CFG_TSO: u32 = 112; // TCP segmentation offload: largest superframe, headers included; 0 = off (read at each send)
export const CFG_TSO_PIECES: u32 = 116; // TSO: TX slots per superframe
export const CFG_FULL: u32 = 120; // a new connection finding every block in use (none in TIME_WAIT): 0 = dropped, 1 = RST
export const CFG_STEER: u32 = 124; // connect()'s ports: only those steered to queue (low 16 bits) of (high 16 bits) queues (tcp/table.ts steerQueueOf); 0 = any
export const CFG_SECRET: u32 = 128; // 32 bytes of host randomness (ISN, SYN cookies, TS offset)
export const CFG_IP6: u32 = 160; // 16 bytes: our IPv6 unicast address; all zero = IPv6 off
export const CFG_IP6_PREFIX: u32 = 176; // its on-link prefix length (0 = 64)
export const CFG_GW6: u32 = 180; // 16 bytes: next hop for off-link IPv6 destinations; zero = none
export const CFG_SIZE: u32 = 256;

/** Frame pieces (TX or RX slots) one frame may span. */
export const MAXP: u32 = 64;

// {default, min, max} per u32 word of the block below CFG_SECRET, indexed by offset / 4. Words
// that are addresses or bit sets (MAC, IP, MASK, GW, FLAGS) have no default and no bounds.
const CFG_ROWS: u32 = 32;
const CFG_TABLE: usize = memory.data<u32>([
  // default  min      max
  0,          0,       0xffffffff, // 0   MAC (bytes 0-3)
  0,          0,       0xffffffff, // 4   MAC (bytes 4-5)
  0,          0,       0xffffffff, // 8   IP
  0,          0,       0xffffffff, // 12  MASK
  0,          0,       0xffffffff, // 16  GW
  1500,       68,      65535,      // 20  MTU
  256,        1,       1048575,    // 24  MAX_CONNS (connection ids carry a 20-bit index)
  64,         1,       0xffffffff, // 28  SYNQ
  8192,       1,       0xffffffff, // 32  NODES
  64,         1,       0xffffffff, // 36  ARP
  32,         1,       0xffffffff, // 40  ARPQ
  16,         1,       128,        // 44  UDP
  16,         1,       0xffffffff, // 48  LISTEN
  10,         7,       16,         // 52  RX_LOG2 (at least 2^7: a frame may need MAXP + 8 free slots)
  10,         7,       16,         // 56  TX_LOG2
  10,         7,       16,         // 60  AIN_LOG2
  10,         7,       16,         // 64  AOUT_LOG2
  262144,     1,       1 << 30,    // 68  RCVBUF (window scale 14 reaches 2^30)
  262144,     1,       0xffffffff, // 72  SNDBUF
  0,          0,       0xffffffff, // 76  FLAGS
  100,        1,       0xffffffff, // 80  ICMP_RATE
  60000,      1,       0xffffffff, // 84  ARP_TTL
  30000,      1,       0xffffffff, // 88  MSL
  0,          0,       0xffffffff, // 92  KEEPALIVE
  40,         1,       0xffffffff, // 96  DELACK
  200,        1,       0xffffffff, // 100 MIN_RTO
  1000,       1,       0xffffffff, // 104 INIT_RTO
  4,          1,       64,         // 108 FRAG_SLOTS
  0,          0,       65535,      // 112 TSO (a superframe's IP total length is 16 bits)
  40,         2,       MAXP,       // 116 TSO_PIECES
  0,          0,       0xffffffff, // 120 (unused)
  0,          0,       0xffffffff, // 124 STEER (queues << 16 | queue)
]);

export const cfg: usize = memory.data(256, 16);

/** Default of the u32 field at `off` (0 for none). */
export function cfgDefault(off: u32): u32 {
  return off < CFG_ROWS * 4 ? load<u32>(CFG_TABLE + <usize>(off >>> 2) * 12) : 0;
}
/** Smallest value of the u32 field at `off` the core takes (0 itself means the default). */
export function cfgMin(off: u32): u32 {
  return off < CFG_ROWS * 4 ? load<u32>(CFG_TABLE + <usize>(off >>> 2) * 12 + 4) : 0;
}
/** Largest accepted value of the u32 field at `off`. */
export function cfgMax(off: u32): u32 {
  return off < CFG_ROWS * 4 ? load<u32>(CFG_TABLE + <usize>(off >>> 2) * 12 + 8) : 0xffffffff;
}

/** The u32 field at `off`: its default when 0, clamped into its bounds. */
export function cfgGet(off: u32): u32 {
  const row = CFG_TABLE + <usize>(off >>> 2) * 12;
  let v = load<u32>(cfg + off);
  if (v == 0) v = load<u32>(row);
  const lo = load<u32>(row + 4);
  const hi = load<u32>(row + 8);
  return v < lo ? lo : v > hi ? hi : v;
}

// ---- counters ----
export const C_RX_FRAMES = 0;
export const C_RX_BYTES = 1;
export const C_TX_FRAMES = 2;
export const C_TX_BYTES = 3;
export const C_RX_BAD_SLOT = 4;
export const C_ETH_SHORT = 5;
export const C_ETH_TYPE = 6;
export const C_ETH_NOT_US = 7;
export const C_ARP_BAD = 8;
export const C_ARP_REQ_IN = 9;
export const C_ARP_REPLY_IN = 10;
export const C_ARP_QUEUE_FULL = 11;
export const C_ARP_TIMEOUT = 12;
export const C_IP_BAD_HDR = 13;
export const C_IP_BAD_CSUM = 14;
export const C_IP_BAD_LEN = 15;
export const C_IP_NOT_US = 16;
export const C_IP_FRAG_DROP = 17;
export const C_IP_BAD_SRC = 18;
export const C_IP_PROTO_UNREACH = 19;
export const C_ICMP_IN = 20;
export const C_ICMP_BAD = 21;
export const C_ICMP_ECHO_REPLIED = 22;
export const C_ICMP_RATELIMITED = 23;
export const C_UDP_BAD_CSUM = 24;
export const C_UDP_BAD_LEN = 25;
export const C_UDP_NO_PORT = 26;
export const C_UDP_IN = 27;
export const C_TCP_BAD_CSUM = 28;
export const C_TCP_BAD_HDR = 29;
export const C_TCP_NO_CONN = 30;
export const C_TCP_CONN_EXHAUSTED = 31;
export const C_TCP_SYNQ_OVERFLOW = 32;
export const C_TCP_COOKIE_OK = 33;
export const C_TCP_COOKIE_BAD = 34;
export const C_TCP_NODES_EXHAUSTED = 35;
export const C_TCP_RETRANSMITS = 36;
export const C_TCP_RTO = 37;
export const C_TCP_FAST_RTX = 38;
export const C_TCP_CHALLENGE_ACK = 39;
export const C_TCP_PAWS_DROP = 40;
export const C_BUF_EXHAUSTED = 41;
export const C_TX_RING_FULL = 42;
export const C_APPOUT_FULL = 43;
export const C_APPIN_BAD = 44;
export const C_RX_CHAIN_BAD = 45;
export const C_CSUM_COMPLETED = 46;
export const C_TCP_OOO = 47;
export const C_TCP_IN = 48;
export const C_TCP_OUT = 49;
export const C_TCP_KEEPALIVE_DROP = 50;
export const C_TCP_DUP = 51;
export const C_RX_STALL = 52;
export const C_ICMP_UNREACH_SENT = 53;
export const C_ARP_CONFLICT = 54;
export const C_UDP_OUT = 55;
export const C_TCP_BAD_SEG = 56;
export const C_TCP_RST_IN = 57;
export const C_TCP_SYN_RTX_DROP = 58;
export const C_UDP_BIND_FULL = 59;
export const C_TCP_ZWP = 60;
export const C_TCP_SACK_RTX = 61;
export const C_TCP_CHALLENGE_LIMITED = 62;
export const C_IP_REASM_OK = 63;
export const C_IP_REASM_DROP = 64;
export const C_IP_REASM_TIMEOUT = 65;
export const C_TCP_ICMP_ABORT = 66;
export const C_TCP_TSO_FRAMES = 67;
export const C_TCP_TSO_SEGS = 68;
/** TCP output stopped for a nearly full TX ring (resumed at the next poll; nothing dropped). */
export const C_TX_STALL = 69;
export const C_IP6_BAD_HDR = 70; // IPv6: bad version, length, or a header chain that is truncated, too long or misplaced
export const C_IP6_NOT_US = 71;
export const C_IP6_BAD_SRC = 72; // multicast or our own source
export const C_IP6_EXTHDR_DROP = 73; // routing header with segments left, an option that says discard, unknown next header
export const C_ICMP6_IN = 74;
export const C_ICMP6_BAD = 75; // bad checksum, length, or an NDP message failing RFC 4861's validity checks
export const C_ND_NS_IN = 76;
export const C_ND_NA_IN = 77;
export const C_ND_DAD_FAIL = 78; // another node holds one of our IPv6 addresses
export const C_ICMP_PTB = 79; // fragmentation needed / packet too big that lowered a path MTU
export const C_TCP_MTU_PROBE = 80; // a retransmission timeout at full size lowered the segment size (black hole)
export const C_ND_SPOOF = 81; // an NDP message claiming one of our addresses as its sender's
export const C_COUNT = 96;

export let counters: usize = 0;

@inline export function count(c: i32): void {
  const p = counters + (<usize>c << 2);
  store<u32>(p, load<u32>(p) + 1);
}
@inline export function countN(c: i32, n: u32): void {
  const p = counters + (<usize>c << 2);
  store<u32>(p, load<u32>(p) + n);
}

// ---- identity and time ----
export let ourIp: u32 = 0;
export let ourMask: u32 = 0;
export let ourGw: u32 = 0;
export let ourMtu: u32 = 1500;
export let now: f64 = 0;
export let nowMs: u32 = 0;
/** The turn's time. The core's clock never goes back: an earlier time (or NaN) than the last keeps the last. */
export function setNow(t: f64): void {
  if (!(t > now)) return;
  now = t;
  nowMs = <u32>(<u64>t);
}
export function setIdentity(ip: u32, mask: u32, gw: u32, mtu: u32): void {
  ourIp = ip;
  ourMask = mask;
  ourGw = gw;
  ourMtu = mtu;
}

// ---- rings ----
export let rxRing: usize = 0;
export let txRing: usize = 0;
export let ainRing: usize = 0;
export let aoutRing: usize = 0;
export function setRings(rx: usize, tx: usize, ain: usize, aout: usize): void {
  rxRing = rx;
  txRing = tx;
  ainRing = ain;
  aoutRing = aout;
}

// ---- events to the app ----
export const EV_DATA: u32 = 1;
export const EV_ACCEPTED: u32 = 2;
export const EV_CONNECTED: u32 = 3;
export const EV_PEER_CLOSED: u32 = 4;
export const EV_CLOSED: u32 = 5;
export const EV_RESET: u32 = 6;
export const EV_WRITABLE: u32 = 7;
export const EV_SEND_REFUSED: u32 = 8;
export const EV_UDP: u32 = 9;
export const EV_LISTENING: u32 = 10;
export const EV_UDP_BOUND: u32 = 11;
export const EV_ERROR: u32 = 12;

/** Pushes an event; returns false (and counts) if APP-OUT is full. */
export function emit(code: u32, conn: u32, buf: u32, off: u32, len: u32, aux: u32, more: bool): bool {
  const r = ringPush(aoutRing, buf, off, len, conn, (code << 8) | (aux << 16) | (more ? SF_MORE : 0));
  if (r < 0) {
    count(C_APPOUT_FULL);
    return false;
  }
  return true;
}
/** Pushes an event whose lane row carries the 16-byte address at `addr` (EV_ACCEPTED: the peer). */
export function emitAddr(code: u32, conn: u32, buf: u32, off: u32, len: u32, aux: u32, addr: usize): bool {
  const row = ringLaneRow(aoutRing, ringTail(aoutRing));
  if (row != 0) {
    store<u64>(row, load<u64>(addr));
    store<u64>(row, load<u64>(addr, 8), 8);
  }
  return emit(code, conn, buf, off, len, aux, false);
}
@inline export function aoutSpace(): u32 {
  return ringSpace(aoutRing);
}

// ---- byte order ----
@inline export function ld16(p: usize): u32 {
  return <u32>bswap<u16>(load<u16>(p));
}
@inline export function ld32(p: usize): u32 {
  return bswap<u32>(load<u32>(p));
}
@inline export function st16(p: usize, v: u32): void {
  store<u16>(p, bswap<u16>(<u16>v));
}
@inline export function st32(p: usize, v: u32): void {
  store<u32>(p, bswap<u32>(v));
}

// ---- pieces of the current received frame / L4 datagram ----
export let pBuf: usize = 0; // u32[MAXP] buffer index
export let pOff: usize = 0; // u32[MAXP] offset in buffer
export let pLen: usize = 0; // u32[MAXP] length
export let pN: u32 = 0;
export function setPN(n: u32): void {
  pN = n;
}

// ---- frame under construction (TX) ----
export let tBuf: usize = 0;
export let tOff: usize = 0;
export let tLen: usize = 0;
export let tN: u32 = 0;

export function gInit(): i32 {
  const a = arenaAlloc(C_COUNT * 4, 64);
  if (a < 0) return <i32>a;
  counters = <usize>a;
  const b = arenaAlloc(MAXP * 4 * 6, 64);
  if (b < 0) return <i32>b;
  pBuf = <usize>b;
  pOff = pBuf + MAXP * 4;
  pLen = pOff + MAXP * 4;
  tBuf = pLen + MAXP * 4;
  tOff = tBuf + MAXP * 4;
  tLen = tOff + MAXP * 4;
  return 0;
}

@inline export function pb(i: u32): u32 {
  return load<u32>(pBuf + (<usize>i << 2));
}
@inline export function po(i: u32): u32 {
  return load<u32>(pOff + (<usize>i << 2));
}
@inline export function pl(i: u32): u32 {
  return load<u32>(pLen + (<usize>i << 2));
}
@inline export function setP(i: u32, b: u32, o: u32, l: u32): void {
  store<u32>(pBuf + (<usize>i << 2), b);
  store<u32>(pOff + (<usize>i << 2), o);
  store<u32>(pLen + (<usize>i << 2), l);
}
@inline export function tb(i: u32): u32 {
  return load<u32>(tBuf + (<usize>i << 2));
}
@inline export function to(i: u32): u32 {
  return load<u32>(tOff + (<usize>i << 2));
}
@inline export function tl(i: u32): u32 {
  return load<u32>(tLen + (<usize>i << 2));
}

/** First-slot TX flags of the frame under construction (offload request, see TXF_* below). */
export let tFlags: u32 = 0;
/** TX slot flags (first slot of a frame) asking the host/NIC for offloads; docs/core-abi.md. */
export const TXF_NEEDS_CSUM: u32 = 2; // L4 checksum field holds the pseudo-header sum; csum_start/offset in bits 8-15/16-23
export const TXF_GSO_SHIFT: u32 = 4; // bits 4-7: virtio-net GSO type (1 TCPv4, 4 TCPv6); conn = gso_size | hdr_len << 16
export const TXF_GSO_TCPV4: u32 = 1;
export const TXF_GSO_TCPV6: u32 = 4;
/** Marks the frame under construction for checksum offload and GSO (reset by txReset/txPush). */
export function txSetMeta(flags: u32): void {
  tFlags = flags;
}

/** Starts a TX frame. */
@inline export function txReset(): void {
  tN = 0;
  tFlags = 0;
}
/** Appends a piece holding one reference that the frame now owns. False if the frame is full. */
export function txAdd(b: u32, o: u32, l: u32): bool {
  if (tN >= MAXP) return false;
  store<u32>(tBuf + (<usize>tN << 2), b);
  store<u32>(tOff + (<usize>tN << 2), o);
  store<u32>(tLen + (<usize>tN << 2), l);
  tN++;
  return true;
}
/** Drops the frame under construction, releasing its references. */
export function txDiscard(): void {
  for (let i: u32 = 0; i < tN; i++) bufUnref(tb(i));
  tN = 0;
  tFlags = 0;
}
/** Pushes the built frame to the TX ring (the NIC now owns each piece's reference). */
export function txPush(conn: u32): bool {
  if (ringSpace(txRing) < tN) {
    count(C_TX_RING_FULL);
    txDiscard();
    return false;
  }
  let bytes: u32 = 0;
  for (let i: u32 = 0; i < tN; i++) {
    ringPush(txRing, tb(i), to(i), tl(i), conn, (i == 0 ? tFlags : 0) | (i + 1 < tN ? SF_MORE : 0));
    bytes += tl(i);
  }
  count(C_TX_FRAMES);
  countN(C_TX_BYTES, bytes);
  tN = 0;
  tFlags = 0;
  return true;
}

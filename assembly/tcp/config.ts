// TCP's tunables, each defined once: the protocol limits fixed at compile time (with their
// source), and the values the host configures per stack, read once by tcpConfigure at set-up
// (their defaults and bounds are in CFG_TABLE, assembly/net/g.ts).

import {
  cfg, cfgGet, CFG_FLAGS, CFG_RCVBUF, CFG_SNDBUF, CFG_MSL, CFG_DELACK, CFG_MIN_RTO, CFG_INIT_RTO, CFG_KEEPALIVE, CFG_FULL,
  CFG_STEER,
} from "../net/g";

// ---- fixed limits ----

/** Largest retransmission timeout, ms (RFC 6298 2.5: a maximum of at least 60 s). */
export const MAX_RTO: f64 = 60000;
/** Retransmissions of one segment before the connection is reset (Linux: tcp_retries2). */
export const MAX_RETRIES: u32 = 15;
/**
 * Consecutive retransmission timeouts of data after which the path is suspected to be a black
 * hole for our segment size and the path MTU is halved (RFC 4821 5.4; Linux: tcp_retries1).
 */
export const MTU_PROBE_RETRIES: u32 = 3;
/** New data acknowledged confirms the next hop reachable in the neighbor cache at most this often, ms. */
export const NEIGH_CONFIRM_MS: f64 = 1000;
/** SYN retransmissions: more than 3 minutes in all (RFC 9293 3.8.3 R2). */
export const MAX_SYN_RETRIES: u32 = 7;
/** SYN-ACK retransmissions: half-open passive connections give up sooner (Linux: tcp_synack_retries). */
export const MAX_SYNACK_RETRIES: u32 = 5;
/** Unanswered keepalive probes before the connection is dropped (Linux: tcp_keepalive_probes). */
export const KA_PROBES: u32 = 9;
/** Interval between keepalive probes, ms (Linux: tcp_keepalive_intvl). */
export const KA_INTVL: f64 = 75000;
/** FIN_WAIT_2 gives up after max(2 MSL, this) without a segment from the peer, ms (Linux: 60 s). */
export const FW2_MIN: f64 = 60000;
/** MSS assumed when the peer announces none (RFC 9293 3.7.1). */
export const DEFAULT_MSS: u32 = 536;
/** Smallest MSS taken from a peer; a smaller announcement is raised to it. */
export const MIN_MSS: u32 = 64;
/** Challenge ACKs, all connections together (RFC 5961 7): a bucket of this many, refilled at one per ms. */
export const CHALLENGE_BURST: f64 = 100;
/** SYN cookies: the secret rotates every this many ms; a cookie is valid in its slot and the next. */
export const COOKIE_SLOT_MS: u32 = 64000;
/** IP TTL of every segment we send. */
export const TCP_TTL: u32 = 64;
/** Held out-of-order segments per connection: one per KiB of receive window, at least this many. */
export const REASM_MIN_NODES: u32 = 8;
/** CUBIC (RFC 9438 4.1, 4.6): the scaling constant and the multiplicative decrease factor. */
export const CUBIC_C: f64 = 0.4;
export const CUBIC_BETA: f64 = 0.7;

/** Initial congestion window (RFC 6928): min(10 MSS, max(2 MSS, 14600 bytes)). */
@inline export function initialWindow(mss: u32): u32 {
  return min<u32>(10 * mss, max<u32>(2 * mss, 14600));
}

// ---- configured per stack ----

/** Option bits every new connection starts with (TF_NODELAY..TF_NOWS). */
export let defaultFlags: u32 = 0;
export let defRcvBuf: u32 = 0;
export let defSndBuf: u32 = 0;
export let defKeepalive: f64 = 0;
export let msl: f64 = 0;
export let delack: f64 = 0;
export let minRto: f64 = 0;
export let initRto: f64 = 0;
/** A SYN (or cookie ACK) finding the connection table full is answered with an RST, not dropped. */
export let resetWhenFull = false;
/**
 * The NIC queue this stack reads, of how many, when the device steers each connection's frames
 * to a queue by a hash of its addresses and ports (a multi-queue TAP device, or a veth pair
 * served with AF_XDP, with the addon's steering programs: one stack per queue). An ephemeral port is then one whose replies come to
 * this queue (tcp/table.ts). steerQueues 0: any port.
 */
export let steerQueues: u32 = 0;
export let steerQueue: u32 = 0;

export function tcpConfigure(): void {
  defaultFlags = load<u32>(cfg + CFG_FLAGS) & 0xff;
  defRcvBuf = cfgGet(CFG_RCVBUF);
  defSndBuf = cfgGet(CFG_SNDBUF);
  msl = <f64>cfgGet(CFG_MSL);
  delack = <f64>cfgGet(CFG_DELACK);
  minRto = <f64>cfgGet(CFG_MIN_RTO);
  initRto = <f64>cfgGet(CFG_INIT_RTO);
  defKeepalive = <f64>cfgGet(CFG_KEEPALIVE);
  resetWhenFull = load<u32>(cfg + CFG_FULL) == 1;
  const steer = load<u32>(cfg + CFG_STEER);
  steerQueues = steer >>> 16;
  steerQueue = steer & 0xffff;
  if (steerQueue >= steerQueues) steerQueues = 0; // the host refuses this; the core ignores it
}

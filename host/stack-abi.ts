// Mirrors the network core's ABI (docs/core-abi.md; assembly/stack.ts, assembly/net/g.ts,
// assembly/tcp/tcb.ts). test/stack.test.mjs parses the core's sources and checks these.

export const CFG = {
  MAC: 0,
  IP: 8,
  MASK: 12,
  GW: 16,
  MTU: 20,
  MAX_CONNS: 24,
  SYNQ: 28,
  NODES: 32,
  ARP: 36,
  ARPQ: 40,
  UDP: 44,
  LISTEN: 48,
  RX_LOG2: 52,
  TX_LOG2: 56,
  AIN_LOG2: 60,
  AOUT_LOG2: 64,
  RCVBUF: 68,
  SNDBUF: 72,
  FLAGS: 76,
  ICMP_RATE: 80,
  ARP_TTL: 84,
  MSL: 88,
  KEEPALIVE: 92,
  DELACK: 96,
  MIN_RTO: 100,
  INIT_RTO: 104,
  FRAG_SLOTS: 108,
  TSO: 112,
  TSO_PIECES: 116,
  /** A new connection finding every block in use: 0 drops it, 1 answers RST. */
  FULL: 120,
  /** connect()'s ephemeral ports: only those steered to queue (low 16 bits) of (high 16 bits) queues; 0: any. */
  STEER: 124,
  SECRET: 128,
  /** 16 bytes: our IPv6 unicast address (all zero: IPv6 off). */
  IP6: 160,
  /** Its on-link prefix length (0 means 64). */
  IP6_PREFIX: 176,
  /** 16 bytes: the IPv6 next hop for off-link destinations (zero: none). */
  GW6: 180,
} as const;

/** stackIp6State values: an IPv6 address's duplicate address detection (RFC 4862). */
export const IP6_STATES = ["none", "tentative", "preferred", "duplicate"] as const;

export const CMD = {
  SEND: 1,
  CLOSE: 2,
  ABORT: 3,
  LISTEN: 4,
  CONNECT: 5,
  UNLISTEN: 6,
  UDP_BIND: 7,
  UDP_SEND: 8,
  UDP_UNBIND: 9,
  RECVD: 10,
  SETOPT: 11,
} as const;

export const EV = {
  DATA: 1,
  ACCEPTED: 2,
  CONNECTED: 3,
  PEER_CLOSED: 4,
  CLOSED: 5,
  RESET: 6,
  WRITABLE: 7,
  SEND_REFUSED: 8,
  UDP: 9,
  LISTENING: 10,
  UDP_BOUND: 11,
  ERROR: 12,
} as const;
export type EventName = keyof typeof EV;
export const EV_NAMES: Record<number, EventName> = Object.fromEntries(
  Object.entries(EV).map(([k, v]) => [v, k as EventName]),
);

/** Default connection option bits (CFG.FLAGS). */
export const TF = { NODELAY: 1, CUBIC: 2, NOSACK: 4, NOTS: 8, NOWS: 16 } as const;
export const OPT = { NODELAY: 1, CC: 2, KEEPALIVE: 3, SNDBUF: 4 } as const;

export const TCP_STATES = [
  "CLOSED",
  "LISTEN",
  "SYN_SENT",
  "SYN_RCVD",
  "ESTABLISHED",
  "FIN_WAIT_1",
  "FIN_WAIT_2",
  "CLOSE_WAIT",
  "CLOSING",
  "LAST_ACK",
  "TIME_WAIT",
] as const;

/** Counter names by index (the core's C_* constants). */
export const COUNTERS = [
  "RX_FRAMES",
  "RX_BYTES",
  "TX_FRAMES",
  "TX_BYTES",
  "RX_BAD_SLOT",
  "ETH_SHORT",
  "ETH_TYPE",
  "ETH_NOT_US",
  "ARP_BAD",
  "ARP_REQ_IN",
  "ARP_REPLY_IN",
  "ARP_QUEUE_FULL",
  "ARP_TIMEOUT",
  "IP_BAD_HDR",
  "IP_BAD_CSUM",
  "IP_BAD_LEN",
  "IP_NOT_US",
  "IP_FRAG_DROP",
  "IP_BAD_SRC",
  "IP_PROTO_UNREACH",
  "ICMP_IN",
  "ICMP_BAD",
  "ICMP_ECHO_REPLIED",
  "ICMP_RATELIMITED",
  "UDP_BAD_CSUM",
  "UDP_BAD_LEN",
  "UDP_NO_PORT",
  "UDP_IN",
  "TCP_BAD_CSUM",
  "TCP_BAD_HDR",
  "TCP_NO_CONN",
  "TCP_CONN_EXHAUSTED",
  "TCP_SYNQ_OVERFLOW",
  "TCP_COOKIE_OK",
  "TCP_COOKIE_BAD",
  "TCP_NODES_EXHAUSTED",
  "TCP_RETRANSMITS",
  "TCP_RTO",
  "TCP_FAST_RTX",
  "TCP_CHALLENGE_ACK",
  "TCP_PAWS_DROP",
  "BUF_EXHAUSTED",
  "TX_RING_FULL",
  "APPOUT_FULL",
  "APPIN_BAD",
  "RX_CHAIN_BAD",
  "CSUM_COMPLETED",
  "TCP_OOO",
  "TCP_IN",
  "TCP_OUT",
  "TCP_KEEPALIVE_DROP",
  "TCP_DUP",
  "RX_STALL",
  "ICMP_UNREACH_SENT",
  "ARP_CONFLICT",
  "UDP_OUT",
  "TCP_BAD_SEG",
  "TCP_RST_IN",
  "TCP_SYN_RTX_DROP",
  "UDP_BIND_FULL",
  "TCP_ZWP",
  "TCP_SACK_RTX",
  "TCP_CHALLENGE_LIMITED",
  "IP_REASM_OK",
  "IP_REASM_DROP",
  "IP_REASM_TIMEOUT",
  "TCP_ICMP_ABORT",
  "TCP_TSO_FRAMES",
  "TCP_TSO_SEGS",
  "TX_STALL",
  "IP6_BAD_HDR",
  "IP6_NOT_US",
  "IP6_BAD_SRC",
  "IP6_EXTHDR_DROP",
  "ICMP6_IN",
  "ICMP6_BAD",
  "ND_NS_IN",
  "ND_NA_IN",
  "ND_DAD_FAIL",
  "ICMP_PTB",
  "TCP_MTU_PROBE",
  "ND_SPOOF",
] as const;

/** tcpInfo fields (the core's INFO_*: INFO_SND_WND is `sndWnd`). */
export const INFO = {
  state: 0,
  cwnd: 1,
  ssthresh: 2,
  rto: 3,
  srtt: 4,
  sndWnd: 5,
  mss: 6,
  flags: 7,
  reasmSegs: 8,
  unread: 9,
  sndQueued: 10,
  backoff: 11,
  sndWs: 12,
  rcvWs: 13,
  inFlight: 14,
  sndOut: 15,
  rtxAt: 16,
  persistAt: 17,
  dupAcks: 18,
  retries: 19,
  rcvNxt: 20,
  sndUna: 21,
  sackBlocks: 22,
  sacked: 23,
  pmtu: 24,
} as const;

/** Reasons carried in the `aux` of RESET and ERROR events (the core's R_*). */
export const R = {
  /** RESET: the peer sent RST. */
  RESET: 1,
  /** RESET: the retransmission limit (or the connect timeout) was reached. */
  TIMEOUT: 2,
  /** RESET: refused (RST, or ICMP unreachable, in answer to our SYN). */
  REFUSED: 3,
  /** RESET: the peer stopped answering keepalive probes. */
  KEEPALIVE: 4,
  /** ERROR: no free connection block. */
  NOCONN: 5,
  /** ERROR: a bad argument. */
  BADARG: 6,
  /** ERROR: the address (port) is in use. */
  INUSE: 7,
  /** ERROR: no usable source address of the destination's family (none configured, or still tentative). */
  NOADDR: 8,
} as const;

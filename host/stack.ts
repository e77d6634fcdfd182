// Stack: the TCP/IP core over a Pool, from the host's side. It writes the core's
// configuration, keeps views of its four rings, turns calls into APP-IN commands and APP-OUT
// slots into events, and exposes counters and a connection table. It does no I/O: a NIC
// backend (TAP, AF_XDP, or an in-memory link through `port`) moves frames, and a loop calls
// poll(now). See docs/core-abi.md for the contract and docs/api/stack.md for this API.

import { E_ARG, E_NOMEM, E_SEALED, SF_MORE } from "./abi.js";
import {
  familyOf,
  formatAddr,
  formatIPv4,
  formatIPv6,
  isLinkLocal,
  isMapped,
  mapIPv4,
  mappedIPv4,
  parseCidr,
  parseIPv4,
  parseIPv6,
  type Family,
} from "./addr.js";
import type { CoreExports, CoreInstance } from "./core.js";
import { PmstackError } from "./errors.js";
import { RingPort } from "./link/port.js";
import type { NicCaps } from "./nic/port.js";
import { Pool, type BufferName, type CreateOptions } from "./pool.js";
import { Ring } from "./ring.js";
import {
  CFG,
  CMD,
  COUNTERS,
  EV,
  EV_NAMES,
  INFO,
  IP6_STATES,
  OPT,
  TCP_STATES,
  TF,
  type EventName,
} from "./stack-abi.js";

export { parseIPv4, formatIPv4 } from "./addr.js";

export interface StackConfig {
  /** Our Ethernet address, "02:00:00:00:00:01" or 6 bytes. */
  mac: string | Uint8Array;
  /** Our IPv4 address and prefix, e.g. "198.18.0.2/24". */
  ip?: string;
  gateway?: string;
  /**
   * Our IPv6 address and on-link prefix, e.g. "2001:2:0:63::2/64" (no "/LEN": /64). Unset:
   * IPv6 off. The core also takes the link-local address fe80::/64 + modified EUI-64 of `mac`
   * and runs duplicate address detection on both (`ip6Addresses()`).
   */
  ip6?: string;
  /** The IPv6 next hop for off-link destinations (a link-local or on-link router address). */
  gw6?: string;
  mtu?: number;
  /**
   * Connection blocks: established, half-open and closing connections, and TIME_WAIT (recycled
   * oldest first when a new connection needs a block).
   */
  maxConnections?: number;
  /**
   * A new connection (a SYN, or the ACK of a SYN cookie) finding every block in use and none in
   * TIME_WAIT: "drop" (default: no answer, the client retries its SYN with backoff and gets in
   * once a connection closes) or "reset" (an RST: the client's connect fails at once).
   * Established connections are never disturbed either way; `stats().TCP_CONN_EXHAUSTED` counts
   * them.
   */
  atMaxConnections?: "drop" | "reset";
  /**
   * This stack reads queue `queue` of a device with `queues` queues that steers each
   * connection's frames by a hash of its addresses and ports (a multi-queue TAP device, or a
   * veth pair served with AF_XDP, with the addon's steering programs: tapQueueOf): connect() then takes only local ports whose replies
   * come to this queue, as F-Stack's ff_rss_check does. An explicit `localPort` is taken as it
   * is. Unset: any port.
   */
  steerPorts?: { queue: number; queues: number };
  synQueue?: number;
  segmentNodes?: number;
  arpEntries?: number;
  arpQueue?: number;
  udpBinds?: number;
  listeners?: number;
  /** log2 of the ring sizes (7..16). */
  rings?: { rx?: number; tx?: number; appIn?: number; appOut?: number };
  /** Per-connection receive window and send queue limit, bytes. */
  rcvBuf?: number;
  sndBuf?: number;
  nodelay?: boolean;
  congestion?: "newreno" | "cubic";
  sack?: boolean;
  timestamps?: boolean;
  windowScaling?: boolean;
  icmpRate?: number;
  arpTtlMs?: number;
  mslMs?: number;
  keepaliveMs?: number;
  delayedAckMs?: number;
  minRtoMs?: number;
  initialRtoMs?: number;
  /** IPv4 datagrams reassembled at once (default 4). */
  fragmentSlots?: number;
  /**
   * TCP segmentation offload: TCP sends more than one MSS of new data as one superframe (one
   * header, the payload as a chain of the app's buffers) that the NIC cuts into segments
   * (virtio-net GSO on TAP). Only for a NIC that segments: `true` = 65,535-byte superframes of
   * at most 40 buffers (TAP's chain limit). Unset: off, unless a composition that knows the NIC
   * turns it on (`configureOffloads`: NicDriver, `serve`, for TAP with offloads). Never over
   * AF_XDP or in-memory links (they send the superframe as one oversized frame).
   */
  tso?: boolean | TsoConfig;
  /** 32 random bytes for ISNs and SYN cookies (default: crypto.getRandomValues). */
  secret?: Uint8Array;
}

export interface TsoConfig {
  /** Largest superframe in bytes, Ethernet, IP and TCP headers included (<= 65535; default 65535). */
  maxBytes?: number;
  /** Most TX slots (buffers) per superframe (2..64; default 40, the TAP backend's chain limit). */
  maxPieces?: number;
}

export interface StackOptions extends StackConfig {
  /** Where the buffers live: a PM file (created if missing) or, without a path, volatile memory. */
  pool: {
    path?: string;
    buffers: number;
    /**
     * The pool's adapter (Pool options, docs/persistence.md): "auto" (default), "mmap",
     * "file", "opfs" (with `opfs`), or "memory" (volatile: no path).
     */
    persistence?: CreateOptions["persistence"];
    /** The OPFS directory holding `path` (browsers: `await openOpfs(dir, names)`). */
    opfs?: CreateOptions["opfs"];
    mode?: CreateOptions["mode"];
    shared?: boolean;
    metaBytes?: number;
    /** An existing pool file with fewer buffers grows to `buffers` (data kept). */
    grow?: boolean;
  };
  /** Runs after the stack's set-up, before the arena is sealed: reserve NIC queues here. */
  configure?: (core: CoreInstance) => void;
}

/**
 * One APP-OUT event. drainEvents() reuses a single object for every event (no allocation per
 * event): copy what you keep. For DATA and UDP, `name` is valid until you free or keep it.
 */
export interface StackEvent {
  type: EventName;
  code: number;
  conn: number;
  buf: number;
  off: number;
  len: number;
  aux: number;
  handle: number;
  /** More slots of the same datagram follow (UDP chains). */
  more: boolean;
  /**
   * ACCEPTED: the peer's address; UDP: the datagram's source. Dotted IPv4 or RFC 5952 IPv6
   * text; "" for every other event (only these two are decoded).
   */
  addr: string;
  /** The family of `addr`: 4 or 6 (0 for other events). */
  family: 0 | Family;
}

/** One of our IPv6 addresses (`stack.ip6Addresses()`). */
export interface Ip6Address {
  address: string;
  /** "link" (fe80::/64, from the MAC) or "global" (the configured `ip6`). */
  scope: "link" | "global";
  prefix: number;
  /** Duplicate address detection: tentative while it runs; a duplicate address is not used. */
  state: (typeof IP6_STATES)[number];
}

export interface ConnectionInfo {
  id: number;
  state: (typeof TCP_STATES)[number];
  family: Family;
  /** Addresses as text (dotted IPv4, RFC 5952 IPv6) and ports; "" / 0 where the core does not say. */
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  cwnd: number;
  ssthresh: number;
  srttMs: number;
  rtoMs: number;
  sndWnd: number;
  mss: number;
  unread: number;
  sndQueued: number;
  inFlight: number;
  retries: number;
  /** The connection's path MTU (bytes). */
  pmtu: number;
}

const parseMac = (m: string | Uint8Array): Uint8Array => {
  if (m instanceof Uint8Array && m.length === 6) return m;
  if (typeof m === "string" && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(m))
    return Uint8Array.from(m.split(":").map((h) => parseInt(h, 16)));
  throw new TypeError(`pmstack: not a MAC address: ${String(m)}`);
};

export class Stack {
  readonly pool: Pool;
  /** The NIC end of the RX/TX rings, for byte-moving links (in-memory, pcap, tests). */
  readonly port: RingPort;
  readonly rings: { rx: number; tx: number; appIn: number; appOut: number };
  readonly mac: Uint8Array;
  readonly ip: number;
  /** Our configured IPv6 address (16 bytes) and prefix, or null when IPv6 is off. */
  readonly ip6: { bytes: Uint8Array; prefix: number } | null;
  #e: CoreExports;
  #u8: Uint8Array;
  /** 16 bytes for an address passing through a lane or tcpAddr. */
  #a16 = new Uint8Array(16);
  /** Core scratch memory for tcpAddr's output. */
  #scratch: number;
  /** Live connections and their ports (local << 16 | remote), from ACCEPTED, CONNECTED, CLOSED and RESET. */
  #live = new LiveConns();
  #u32: Uint32Array;
  /** The command ring (we produce) and the event ring (we consume). */
  #appIn: Ring;
  #appOut: Ring;
  #stats: number;
  #ev: StackEvent = {
    type: "DATA",
    code: 0,
    conn: 0,
    buf: 0,
    off: 0,
    len: 0,
    aux: 0,
    handle: 0,
    more: false,
    addr: "",
    family: 0,
  };
  #cfg: DataView;
  /** The per-connection send queue limit the core was configured with (bytes). */
  #sndBuf: number;
  /** The `tso` option as configured (undefined: left to the composition). */
  #tsoAsked: boolean | TsoConfig | undefined;

  private constructor(
    pool: Pool,
    mac: Uint8Array,
    ip: number,
    ip6: { bytes: Uint8Array; prefix: number } | null,
    tso: boolean | TsoConfig | undefined,
  ) {
    this.pool = pool;
    this.#tsoAsked = tso;
    this.mac = mac;
    this.ip = ip;
    this.ip6 = ip6;
    const e = pool.core.exports;
    this.#e = e;
    this.#u8 = new Uint8Array(pool.core.memory.buffer);
    this.#scratch = e.stackScratch();
    this.rings = { rx: e.stackRing(0), tx: e.stackRing(1), appIn: e.stackRing(2), appOut: e.stackRing(3) };
    this.port = new RingPort(pool, { rx: this.rings.rx, tx: this.rings.tx });
    this.#u32 = new Uint32Array(pool.core.memory.buffer);
    this.#appIn = new Ring(pool.core.memory, this.rings.appIn);
    this.#appOut = new Ring(pool.core.memory, this.rings.appOut);
    this.#stats = e.stackStats();
    this.#cfg = new DataView(pool.core.memory.buffer, e.stackConfig(), 256);
    this.#sndBuf = this.config("SNDBUF");
  }

  /**
   * A configuration field as the core reads it: the value set, or the core's default when it
   * was left 0, clamped into the core's bounds (the table in assembly/net/g.ts).
   */
  config(field: Exclude<keyof typeof CFG, "MAC" | "SECRET" | "IP6" | "GW6">): number {
    return this.#e.stackConfigValue(CFG[field]) >>> 0;
  }

  /** TCP segmentation offload now in force (the core reads it at every send), or null if off. */
  get tso(): { maxBytes: number; maxPieces: number } | null {
    const maxBytes = this.#cfg.getUint32(CFG.TSO, true);
    if (!maxBytes) return null;
    return { maxBytes, maxPieces: this.config("TSO_PIECES") };
  }

  /**
   * Turns TCP segmentation offload on or off at run time (next send). Only for a NIC that
   * segments superframes (TAP with offloads); see StackConfig.tso.
   */
  setTso(on: boolean | TsoConfig): void {
    Stack.#writeTso(this.#e, this.#cfg, on);
  }

  /**
   * Fits the offloads to the NIC the stack runs on (`nic.caps`): the one place the TSO policy is
   * decided. TSO goes on where the NIC segments superframes (TAP with offloads) when the
   * configuration left `tso` unset, and off where it cannot (AF_XDP, TAP without offloads)
   * whatever was asked; with a loop's TX fault injector (`txFaults`) it is off too, since the
   * injector carries no GSO metadata and keeps plain frames. Returns whether TSO is on.
   */
  configureOffloads(caps: NicCaps, opts: { txFaults?: boolean } = {}): boolean {
    if (!caps.segmentation || opts.txFaults) this.setTso(false);
    else if (this.#tsoAsked === undefined) this.setTso(true);
    return this.tso !== null;
  }

  static #writeTso(e: CoreExports, dv: DataView, on: boolean | TsoConfig | undefined): void {
    if (!on) {
      dv.setUint32(CFG.TSO, 0, true);
      return;
    }
    // defaults and bounds from the core's table: the largest superframe, the pieces' default
    const bytesMax = e.stackConfigMax(CFG.TSO) >>> 0;
    const [piecesMin, piecesMax] = [e.stackConfigMin(CFG.TSO_PIECES) >>> 0, e.stackConfigMax(CFG.TSO_PIECES) >>> 0];
    const c: TsoConfig = on === true ? {} : on;
    const maxBytes = c.maxBytes ?? bytesMax;
    const maxPieces = c.maxPieces ?? e.stackConfigDefault(CFG.TSO_PIECES) >>> 0;
    if (!Number.isInteger(maxBytes) || maxBytes < 1 || maxBytes > bytesMax)
      throw new RangeError(`pmstack: tso.maxBytes must be an integer in [1, ${bytesMax}], got ${maxBytes}`);
    if (!Number.isInteger(maxPieces) || maxPieces < piecesMin || maxPieces > piecesMax)
      throw new RangeError(
        `pmstack: tso.maxPieces must be an integer in [${piecesMin}, ${piecesMax}], got ${maxPieces}`,
      );
    dv.setUint32(CFG.TSO_PIECES, maxPieces, true);
    dv.setUint32(CFG.TSO, maxBytes, true);
  }

  /** Opens (or creates) the pool and starts a stack on it. */
  static create(opts: StackOptions): Stack {
    const mac = parseMac(opts.mac);
    const [addr, prefix] = (opts.ip ?? "0.0.0.0/0").split("/");
    const ip = parseIPv4(addr!);
    let ip6: { bytes: Uint8Array; prefix: number } | null = null;
    if (opts.ip6) {
      const c = parseCidr(opts.ip6, { family: 6, defaultPrefix: 64 });
      if (c.prefix < 1) throw new RangeError(`pmstack: ip6 ${opts.ip6}: the prefix length must be 1..128`);
      if (isMapped(c.bytes) || c.bytes.every((b) => b === 0) || c.bytes[0] === 0xff || isLinkLocal(c.bytes))
        throw new TypeError(
          `pmstack: ip6 ${opts.ip6} is not a unicast address to configure (the link-local one comes from the MAC)`,
        );
      ip6 = { bytes: c.bytes, prefix: c.prefix };
    }
    let gw6: Uint8Array | null = null;
    if (opts.gw6) {
      gw6 = parseIPv6(opts.gw6);
      if (isMapped(gw6) || gw6.every((b) => b === 0) || gw6[0] === 0xff)
        throw new TypeError(`pmstack: gw6 ${opts.gw6} is not a unicast IPv6 address`);
    }
    const configure = (core: CoreInstance) => {
      Stack.#configure(core, opts, mac, ip, Number(prefix ?? 32), ip6, gw6);
      opts.configure?.(core);
    };
    const p = opts.pool;
    if (p.path && p.persistence === "memory")
      throw new TypeError('pmstack: pool.persistence "memory" keeps no file: leave out pool.path');
    const pool = p.path
      ? Pool.openOrCreate(p.path, {
          buffers: p.buffers,
          persistence: p.persistence,
          opfs: p.opfs,
          mode: p.mode,
          shared: p.shared,
          metaBytes: p.metaBytes,
          growTo: p.grow ? p.buffers : undefined,
          configure,
        })
      : Pool.volatile({ buffers: p.buffers, shared: p.shared, metaBytes: p.metaBytes, configure });
    return new Stack(pool, mac, ip, ip6, opts.tso);
  }

  static #configure(
    core: CoreInstance,
    c: StackConfig,
    mac: Uint8Array,
    ip: number,
    prefix: number,
    ip6: { bytes: Uint8Array; prefix: number } | null,
    gw6: Uint8Array | null,
  ): void {
    const e = core.exports;
    if (typeof e.stackInit !== "function") throw new PmstackError("ECORE", "pmstack: this core has no network stack");
    if ((ip6 || gw6) && typeof e.stackIp6Addr !== "function")
      throw new PmstackError("ECORE", "pmstack: this core has no IPv6 (options ip6 and gw6 need it)");
    if (!(prefix >= 0 && prefix <= 32)) throw new RangeError(`pmstack: bad prefix length /${prefix}`);
    const base = e.stackConfig();
    const u8 = new Uint8Array(core.memory.buffer, base, 256);
    const dv = new DataView(core.memory.buffer, base, 256);
    u8.fill(0);
    u8.set(mac, CFG.MAC);
    const put = (off: number, v: number | undefined, what: string) => {
      if (v === undefined) return;
      const max = e.stackConfigMax(off) >>> 0;
      if (!Number.isInteger(v) || v < 0 || v > max)
        throw new RangeError(`pmstack: ${what} must be an integer in [0, ${max}], got ${v}`);
      dv.setUint32(off, v, true);
    };
    dv.setUint32(CFG.IP, ip, true);
    dv.setUint32(CFG.MASK, prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0, true);
    if (c.gateway) dv.setUint32(CFG.GW, parseIPv4(c.gateway), true);
    if (ip6) {
      u8.set(ip6.bytes, CFG.IP6);
      dv.setUint32(CFG.IP6_PREFIX, ip6.prefix, true);
    }
    if (gw6) u8.set(gw6, CFG.GW6);
    put(CFG.MTU, c.mtu, "mtu");
    put(CFG.MAX_CONNS, c.maxConnections, "maxConnections");
    if (c.atMaxConnections !== undefined && c.atMaxConnections !== "drop" && c.atMaxConnections !== "reset")
      throw new RangeError(`pmstack: atMaxConnections must be "drop" or "reset", got ${String(c.atMaxConnections)}`);
    dv.setUint32(CFG.FULL, c.atMaxConnections === "reset" ? 1 : 0, true);
    if (c.steerPorts) {
      const { queue, queues } = c.steerPorts;
      if (
        !Number.isInteger(queues) ||
        queues < 1 ||
        queues > 0xffff ||
        !Number.isInteger(queue) ||
        queue < 0 ||
        queue >= queues
      )
        throw new RangeError(`pmstack: steerPorts needs 0 <= queue < queues <= 65535, got queue ${queue} of ${queues}`);
      dv.setUint32(CFG.STEER, ((queues << 16) | queue) >>> 0, true);
    }
    put(CFG.SYNQ, c.synQueue, "synQueue");
    put(CFG.NODES, c.segmentNodes, "segmentNodes");
    put(CFG.ARP, c.arpEntries, "arpEntries");
    put(CFG.ARPQ, c.arpQueue, "arpQueue");
    put(CFG.UDP, c.udpBinds, "udpBinds");
    put(CFG.LISTEN, c.listeners, "listeners");
    put(CFG.RX_LOG2, c.rings?.rx, "rings.rx");
    put(CFG.TX_LOG2, c.rings?.tx, "rings.tx");
    put(CFG.AIN_LOG2, c.rings?.appIn, "rings.appIn");
    put(CFG.AOUT_LOG2, c.rings?.appOut, "rings.appOut");
    put(CFG.RCVBUF, c.rcvBuf, "rcvBuf");
    put(CFG.SNDBUF, c.sndBuf, "sndBuf");
    const flags =
      (c.nodelay ? TF.NODELAY : 0) |
      (c.congestion === "cubic" ? TF.CUBIC : 0) |
      (c.sack === false ? TF.NOSACK : 0) |
      (c.timestamps === false ? TF.NOTS : 0) |
      (c.windowScaling === false ? TF.NOWS : 0);
    dv.setUint32(CFG.FLAGS, flags, true);
    put(CFG.ICMP_RATE, c.icmpRate, "icmpRate");
    put(CFG.ARP_TTL, c.arpTtlMs, "arpTtlMs");
    put(CFG.MSL, c.mslMs, "mslMs");
    put(CFG.KEEPALIVE, c.keepaliveMs, "keepaliveMs");
    put(CFG.DELACK, c.delayedAckMs, "delayedAckMs");
    put(CFG.MIN_RTO, c.minRtoMs, "minRtoMs");
    put(CFG.INIT_RTO, c.initialRtoMs, "initialRtoMs");
    put(CFG.FRAG_SLOTS, c.fragmentSlots, "fragmentSlots");
    Stack.#writeTso(e, dv, c.tso);
    const secret = c.secret ?? globalThis.crypto.getRandomValues(new Uint8Array(32));
    if (secret.length !== 32) throw new RangeError("pmstack: secret must be 32 bytes");
    u8.set(secret, CFG.SECRET);
    const r = e.stackInit();
    if (r < 0) throw stackInitError(e, r);
  }

  /**
   * Polls run so far. A command issued while this reads N has been taken (or refused, with its
   * event in APP-OUT) once it reads more than N.
   */
  polls = 0;

  /** One turn of the core at time `nowMs`: consumes RX and APP-IN, runs timers. Returns the next deadline. */
  poll(nowMs: number): number {
    this.polls++;
    this.#commandPending = false;
    if (this.#recvdLater.size > 0) this.#flushRecvd();
    return this.#e.stackPoll(nowMs);
  }

  /** Window updates that found the command ring full: they go at the next poll (a window may open late, never be lost). */
  #recvdLater = new Map<number, number>();
  #flushRecvd(): void {
    for (const [conn, bytes] of this.#recvdLater) {
      if (this.#appIn.space() === 0) return;
      this.#recvdLater.delete(conn);
      this.#cmd(CMD.RECVD, conn, bytes);
    }
  }

  // ---- commands (APP-IN) -------------------------------------------------------------------

  /**
   * Called after a command is queued (at most once until the next poll), so that a loop can
   * schedule a turn for commands issued outside one. NicLoop sets it.
   */
  onCommand: (() => void) | null = null;
  #commandPending = false;

  #cmd(code: number, conn: number, buf = 0, off = 0, len = 0, aux = 0, handle = 0): void {
    this.#wake();
    const flags = ((code << 8) | ((aux & 0xffff) << 16) | ((handle & 0x7f) << 1)) >>> 0;
    if (!this.#appIn.push(buf >>> 0, off, len, conn >>> 0, flags))
      throw new PmstackError("EAGAIN", "pmstack: the command ring is full: poll() the stack and retry");
  }

  /** Tells onCommand, once until the next poll, that a command waits for a turn. */
  #wake(): void {
    if (!this.#commandPending && this.onCommand) {
      this.#commandPending = true;
      this.onCommand();
    }
  }

  /** Free slots in the command ring (APP-IN): how many commands fit before the next poll(). */
  commandSpace(): number {
    return this.#appIn.space();
  }

  /** Commands waiting for the next poll(): those in APP-IN, and window updates held back. */
  commandsQueued(): number {
    return this.#appIn.count() + this.#recvdLater.size;
  }

  listen(port: number, opts: { backlog?: number; tag?: number } = {}): void {
    checkPort(port);
    this.#cmd(CMD.LISTEN, opts.tag ?? port, 0, port, opts.backlog ?? 0);
  }
  unlisten(port: number): void {
    checkPort(port);
    this.#cmd(CMD.UNLISTEN, 0, 0, port);
  }
  /**
   * Opens a connection to `ip` (dotted IPv4, a host number, or IPv6 text; an IPv4-mapped IPv6
   * address is IPv4). CONNECTED (with the tag), RESET or ERROR follows.
   */
  connect(ip: string | number, port: number, opts: { localPort?: number; tag?: number } = {}): void {
    checkPort(port);
    const addr = this.#dest(ip);
    this.#cmd(CMD.CONNECT, opts.tag ?? 0, addr, port, opts.localPort ?? 0);
  }
  /** Sends bytes of a buffer the app holds (owner app: passes to the stack; kept: referenced). */
  send(conn: number, name: BufferName): void {
    this.pool.name(name.index, name.offset, name.length);
    this.#cmd(CMD.SEND, conn, name.index, name.offset, name.length);
  }
  close(conn: number): void {
    this.#cmd(CMD.CLOSE, conn);
  }
  abort(conn: number): void {
    this.#cmd(CMD.ABORT, conn);
  }
  /** Reopens the receive window by `bytes` the app has consumed. */
  recvd(conn: number, bytes: number): void {
    if (bytes <= 0) return;
    if (this.#appIn.space() === 0 || this.#recvdLater.size > 0) {
      // the ring is full (or earlier updates wait): add it to this connection's deferred update
      this.#recvdLater.set(conn, (this.#recvdLater.get(conn) ?? 0) + bytes);
      this.#wake();
      return;
    }
    this.#cmd(CMD.RECVD, conn, bytes);
  }
  setNoDelay(conn: number, on = true): void {
    this.#cmd(CMD.SETOPT, conn, on ? 1 : 0, OPT.NODELAY);
  }
  setCongestion(conn: number, cc: "newreno" | "cubic"): void {
    this.#cmd(CMD.SETOPT, conn, cc === "cubic" ? 1 : 0, OPT.CC);
  }
  setKeepalive(conn: number, idleMs: number): void {
    this.#cmd(CMD.SETOPT, conn, idleMs, OPT.KEEPALIVE);
  }
  udpBind(port: number, tag = port): void {
    checkPort(port);
    this.#cmd(CMD.UDP_BIND, tag, 0, port);
  }
  /** Sends a datagram to `ip` (IPv4 or IPv6, as for connect) and `port` from bind `handle`. */
  udpSend(handle: number, ip: string | number, port: number, name: BufferName): void {
    this.pool.name(name.index, name.offset, name.length);
    const addr = this.#dest(ip);
    this.#cmd(CMD.UDP_SEND, addr, name.index, name.offset, name.length, port, handle);
  }

  /**
   * The IPv4 field of a CONNECT or UDP_SEND about to be pushed: the IPv4 host number (the fast
   * path: no lane), or 0 with the destination's 16 bytes in the lane row of the slot the
   * command takes (APP-IN's tail).
   */
  #dest(ip: string | number): number {
    // a full ring's tail row is the oldest pending command's: never write it (#cmd refuses anyway)
    if (this.#appIn.space() === 0)
      throw new PmstackError("EAGAIN", "pmstack: the command ring is full: poll() the stack and retry");
    if (typeof ip === "number") {
      if (ip !== 0 || !this.#appIn.lane) return ip;
    } else if (!ip.includes(":")) {
      const n = parseIPv4(ip);
      if (n !== 0 || !this.#appIn.lane) return n;
    } else {
      const a = parseIPv6(ip, this.#a16);
      if (isMapped(a) && mappedIPv4(a) !== 0) return mappedIPv4(a);
      if (!this.#appIn.lane)
        throw new PmstackError("ENOTSUP", `pmstack: this core has no IPv6 (no address lane for ${ip})`);
      this.#appIn.putAddr(this.#appIn.tail, a);
      return 0;
    }
    // 0.0.0.0: the lane says so too, so that the core never reads a stale row
    this.#appIn.putAddr(this.#appIn.tail, mapIPv4(0, this.#a16));
    return 0;
  }
  udpUnbind(handle: number): void {
    this.#cmd(CMD.UDP_UNBIND, handle);
  }

  // ---- events (APP-OUT) --------------------------------------------------------------------

  /**
   * Calls `fn` for every pending event, in order, with one reused event object. DATA and UDP
   * events lend a buffer reference (owner app): free it (pool.free) or keep it (pool.keep)
   * and call recvd() for DATA. Returns the number of events.
   */
  drainEvents(fn: (ev: StackEvent) => void): number {
    const ring = this.#appOut;
    let head = ring.head;
    const tail = ring.tail;
    const ev = this.#ev;
    let n = 0;
    while (head !== tail) {
      const s = ring.slot(head);
      const flags = ring.flags(s);
      ev.code = (flags >>> 8) & 0xff;
      ev.type = EV_NAMES[ev.code] ?? ("ERROR" as EventName);
      ev.buf = ring.buf(s);
      ev.off = ring.off(s);
      ev.len = ring.len(s);
      ev.conn = ring.conn(s);
      ev.aux = flags >>> 16;
      ev.handle = (flags >>> 1) & 0x7f;
      ev.more = (flags & SF_MORE) !== 0;
      ev.addr = "";
      ev.family = 0;
      if (ev.code === EV.ACCEPTED || ev.code === EV.UDP) {
        // the peer: its IPv4 number in buf (ACCEPTED) or conn (UDP), or 0 and the lane row
        const v4 = ev.code === EV.ACCEPTED ? ev.buf : ev.conn;
        if (v4 !== 0 || !ring.lane) {
          ev.addr = formatIPv4(v4);
          ev.family = 4;
        } else {
          const a = ring.getAddr(head, this.#a16);
          ev.addr = formatAddr(a);
          ev.family = familyOf(a);
        }
      }
      head = (head + 1) >>> 0;
      ring.head = head; // consumed before the callback: it may issue commands
      n++;
      if (ev.code === EV.ACCEPTED || ev.code === EV.CONNECTED) {
        this.#live.add(ev.conn, ((ev.len << 16) | ev.off) >>> 0);
      } else if (ev.code === EV.CLOSED || ev.code === EV.RESET) {
        this.#live.delete(ev.conn);
      }
      fn(ev);
    }
    return n;
  }

  // ---- observability -------------------------------------------------------------------------

  /** Counters like `netstat -s`: segments, retransmissions, drops by reason, checksum errors. */
  stats(): Record<(typeof COUNTERS)[number], number> {
    const out = {} as Record<(typeof COUNTERS)[number], number>;
    const base = this.#stats >>> 2;
    COUNTERS.forEach((name, i) => (out[name] = this.#u32[base + i]!));
    return out;
  }

  /** State and windows of one connection (like one line of `ss -ti`), or null if the id is unknown. */
  connection(id: number): ConnectionInfo | null {
    const info = this.#e.tcpInfo;
    const state = info(id, INFO.state);
    if (state < 0 || state === 0) return null;
    const ports = this.#live.ports(id) ?? 0;
    const local = this.#addrOf(id, 0);
    return {
      id,
      state: TCP_STATES[state] ?? "CLOSED",
      family: local.family,
      localAddress: local.addr,
      localPort: ports >>> 16,
      remoteAddress: this.#addrOf(id, 1).addr,
      remotePort: ports & 0xffff,
      cwnd: info(id, INFO.cwnd),
      ssthresh: info(id, INFO.ssthresh),
      srttMs: info(id, INFO.srtt),
      rtoMs: info(id, INFO.rto),
      sndWnd: info(id, INFO.sndWnd),
      mss: info(id, INFO.mss),
      unread: info(id, INFO.unread),
      sndQueued: info(id, INFO.sndQueued),
      inFlight: info(id, INFO.inFlight),
      retries: info(id, INFO.retries),
      pmtu: info(id, INFO.pmtu),
    };
  }

  /** A connection's TCP state alone (one core call), or null if the id is unknown. */
  connectionState(id: number): (typeof TCP_STATES)[number] | null {
    const state = this.#e.tcpInfo(id, INFO.state);
    return state > 0 ? (TCP_STATES[state] ?? null) : null;
  }

  /**
   * A connection's local (which 0) or remote (1) address as text and its family, from the core
   * (tcpAddr). A core without tcpAddr: our IPv4 address for the local side, "" for the remote.
   */
  #addrOf(id: number, which: 0 | 1): { addr: string; family: Family } {
    const e = this.#e;
    if (typeof e.tcpAddr !== "function") return { addr: which === 0 ? formatIPv4(this.ip) : "", family: 4 };
    const fam = e.tcpAddr(id, which, this.#scratch);
    if (fam !== 4 && fam !== 6) return { addr: "", family: 4 };
    return { addr: formatAddr(this.#u8, this.#scratch), family: fam };
  }

  /** A live connection's local and remote address and port (a subset of connection()), or null. */
  endpoints(
    id: number,
  ): { family: Family; localAddress: string; localPort: number; remoteAddress: string; remotePort: number } | null {
    const ports = this.#live.ports(id);
    if (ports === undefined) return null;
    const local = this.#addrOf(id, 0);
    return {
      family: local.family,
      localAddress: local.addr,
      localPort: ports >>> 16,
      remoteAddress: this.#addrOf(id, 1).addr,
      remotePort: ports & 0xffff,
    };
  }

  /**
   * Our IPv6 addresses and their duplicate address detection state: the link-local one (from
   * the MAC) and the configured `ip6`. Empty when IPv6 is off.
   */
  ip6Addresses(): Ip6Address[] {
    const e = this.#e;
    if (!this.ip6 || typeof e.stackIp6Addr !== "function") return [];
    const out: Ip6Address[] = [];
    for (let k = 0; k < 2; k++) {
      const at = e.stackIp6Addr(k);
      if (!at) continue;
      out.push({
        address: formatIPv6(this.#u8, at),
        scope: k === 0 ? "link" : "global",
        prefix: k === 0 ? 64 : this.ip6.prefix,
        state: IP6_STATES[e.stackIp6State(k)] ?? "none",
      });
    }
    return out;
  }

  /**
   * Bytes the connection's send queue still takes before the core refuses sends (its sndBuf
   * minus what is queued and unacknowledged); 0 for an unknown connection. One core call.
   */
  sendRoom(id: number): number {
    const queued = this.#e.tcpInfo(id, INFO.sndQueued);
    return queued < 0 ? 0 : Math.max(0, this.#sndBuf - queued);
  }

  /** Connection blocks in use (TIME_WAIT included). */
  connectionCount(): number {
    return this.#e.tcpConnCount();
  }

  /** Live connection ids, tracked from the events drained so far. */
  get connectionIds(): ReadonlySet<number> {
    return this.#live;
  }

  /** The connection table (like `ss -ti`): every live connection's addresses, state and windows. */
  connections(): ConnectionInfo[] {
    const out: ConnectionInfo[] = [];
    for (const id of this.#live) {
      const c = this.connection(id);
      if (c) out.push(c);
    }
    return out;
  }

  /** Closes the pool under the stack (unmaps PM, releases the file lock). */
  shutdown(): void {
    this.pool.close();
  }
}

/** What a failed stackInit (a negative E_* code) means, with the configuration it failed on. */
function stackInitError(e: CoreExports, r: number): PmstackError {
  const at = "pmstack: stack set-up failed";
  switch (r) {
    case E_NOMEM: {
      const v = (off: number) => e.stackConfigValue(off) >>> 0;
      const rings = [CFG.RX_LOG2, CFG.TX_LOG2, CFG.AIN_LOG2, CFG.AOUT_LOG2].map(v).join("/");
      return new PmstackError(
        "ECORE",
        `${at}: the configured tables do not fit the core's arena below the 4 GiB Wasm32 limit ` +
          `(E_NOMEM; the pool's metadata, 16 bytes per buffer, takes its share): lower maxConnections ` +
          `(${v(CFG.MAX_CONNS)}), segmentNodes (${v(CFG.NODES)}) or the ring sizes (rings.rx/tx/appIn/appOut, ` +
          `log2 ${rings})`,
      );
    }
    case E_SEALED:
      return new PmstackError(
        "ECORE",
        `${at}: the core's arena is sealed already (E_SEALED): set the stack up in the pool's configure hook`,
      );
    case E_ARG:
      return new PmstackError("ECORE", `${at}: the core's stack is set up already (E_ARG: stackInit called twice)`);
    default:
      return new PmstackError("ECORE", `${at}: core error ${r}`);
  }
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new RangeError(`pmstack: port must be an integer in [0, 65535], got ${port}`);
}

/** A connection id is generation << 20 | the index of its block in the core's table (tcp/table.ts). */
const ID_INDEX_MASK = (1 << 20) - 1;

/**
 * The live connection ids, by their connection block's index (an id is generation << 20 |
 * index), with their ports: typed arrays, so a connection opened and closed costs no hashing and
 * no allocation (a Set and a Map of ever-new ids rehashed every few connections). Iteration
 * walks the indexes used so far, in index order.
 */
class LiveConns implements ReadonlySet<number> {
  #ids = new Uint32Array(64);
  #ports = new Uint32Array(64);
  #used = new Uint8Array(64);
  #n = 0;
  /** One past the highest index used so far. */
  #hi = 0;

  add(id: number, ports: number): void {
    const i = id & ID_INDEX_MASK;
    if (i >= this.#used.length) this.#grow(i + 1);
    if (!this.#used[i]) {
      this.#used[i] = 1;
      this.#n++;
    }
    this.#ids[i] = id;
    this.#ports[i] = ports;
    if (i >= this.#hi) this.#hi = i + 1;
  }

  delete(id: number): boolean {
    const i = id & ID_INDEX_MASK;
    if (!this.has(id)) return false;
    this.#used[i] = 0;
    this.#n--;
    return true;
  }

  /** The ports of a live connection (local << 16 | remote), or undefined. */
  ports(id: number): number | undefined {
    return this.has(id) ? this.#ports[id & ID_INDEX_MASK] : undefined;
  }

  has(id: number): boolean {
    const i = id & ID_INDEX_MASK;
    return i < this.#hi && this.#used[i] === 1 && this.#ids[i] === id >>> 0;
  }

  get size(): number {
    return this.#n;
  }

  *[Symbol.iterator](): SetIterator<number> {
    for (let i = 0; i < this.#hi; i++) if (this.#used[i]) yield this.#ids[i]!;
  }

  keys(): SetIterator<number> {
    return this[Symbol.iterator]();
  }

  values(): SetIterator<number> {
    return this[Symbol.iterator]();
  }

  *entries(): SetIterator<[number, number]> {
    for (const id of this) yield [id, id];
  }

  forEach(fn: (value: number, key: number, set: ReadonlySet<number>) => void, thisArg?: unknown): void {
    for (const id of this) fn.call(thisArg, id, id, this);
  }

  #grow(min: number): void {
    let n = this.#used.length * 2;
    while (n < min) n *= 2;
    const ids = new Uint32Array(n);
    ids.set(this.#ids);
    const ports = new Uint32Array(n);
    ports.set(this.#ports);
    const used = new Uint8Array(n);
    used.set(this.#used);
    this.#ids = ids;
    this.#ports = ports;
    this.#used = used;
  }
}

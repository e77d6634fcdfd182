// The Redis Cluster bus (port + 10000) over pmstack's own TCP: Redis's binary messages (a
// 2256-byte header: "RCmb", length, version 1, the sender's id, ports, epochs and slot bitmap;
// then gossip entries of 104 bytes, or an UPDATE's node and slots), the MEET handshake, PING and
// PONG with gossip, slot claims settled by config epoch, config-epoch collisions, UPDATE. What
// is left out (failure detection, failover, pub/sub, manual failover) is listed in
// docs/cluster.md. The logic follows Redis's cluster_legacy.c (clusterProcessPacket,
// clusterProcessGossipSection, clusterUpdateSlotsConfigWith, clusterCron), so that Redis's
// tools (redis-cli --cluster create) and Redis nodes can talk to it.
//
// A node has one outbound link to each node it knows (this node connects to it and sends PING
// or MEET, and receives PONGs), and takes inbound links from the others (PING and MEET come in,
// PONG goes back). Messages are small and infrequent: they are copied out of the receive
// buffers, and a message the send queue has no room for is dropped (the next PING repeats it).

import type { Stack, StackEvent } from "../../stack.js";
import { RxBytes } from "./rx.js";
import { CLUSTER_NAMELEN, CLUSTER_SLOTS, newNode, type ClusterNode, type ClusterState } from "./cluster.js";

/** Bytes of a bus message's header, of one gossip entry, of an UPDATE's body. */
export const BUS_HEADER = 2256;
export const BUS_GOSSIP = 104;
export const BUS_UPDATE = 8 + CLUSTER_NAMELEN + CLUSTER_SLOTS / 8;
const SLOTS_BYTES = CLUSTER_SLOTS / 8;
const IP_LEN = 46;
/** The largest message taken (a PING gossiping about 1000 nodes is about 100 KiB). */
const MAX_MESSAGE = 1 << 20;

/** Message types (CLUSTERMSG_TYPE_*). */
export const BUS_TYPE = {
  PING: 0,
  PONG: 1,
  MEET: 2,
  FAIL: 3,
  PUBLISH: 4,
  FAILOVER_AUTH_REQUEST: 5,
  FAILOVER_AUTH_ACK: 6,
  UPDATE: 7,
  MFSTART: 8,
  MODULE: 9,
  PUBLISHSHARD: 10,
} as const;
const TYPE_NAMES = Object.keys(BUS_TYPE);

/** Node flags on the wire (CLUSTER_NODE_*), and their names in CLUSTER NODES. */
const FLAG_BITS: [number, string][] = [
  [1, "master"],
  [2, "slave"],
  [4, "fail?"],
  [8, "fail"],
  [16, "myself"],
  [32, "handshake"],
  [64, "noaddr"],
  [512, "nofailover"],
];
const F_MASTER = 1;
const F_SLAVE = 2;
const F_PFAIL = 4;
const F_FAIL = 8;
const F_NOADDR = 64;
const EXT_DATA = 4; // mflags[0]: the message carries ping extensions

const enc = new TextEncoder();
const dec = new TextDecoder("latin1");

/** A decoded header (the fields this node uses). */
export interface BusHeader {
  totlen: number;
  ver: number;
  port: number;
  type: number;
  count: number;
  currentEpoch: number;
  configEpoch: number;
  sender: string;
  myslots: Uint8Array;
  slaveof: string | null;
  myip: string;
  extensions: number;
  cport: number;
  flags: number;
  state: number;
  mflags0: number;
}

export interface Gossip {
  id: string;
  pingSent: number;
  pongReceived: number;
  ip: string;
  port: number;
  cport: number;
  flags: number;
}

const text = (b: Uint8Array, at: number, n: number): string => {
  let end = at;
  while (end < at + n && b[at + (end - at)] !== 0) end++;
  return dec.decode(b.subarray(at, end));
};
const isZero = (b: Uint8Array, at: number, n: number): boolean => {
  for (let i = at; i < at + n; i++) if (b[i] !== 0) return false;
  return true;
};
const u64 = (v: DataView, at: number): number => Number(v.getBigUint64(at));

export function decodeHeader(b: Uint8Array): BusHeader {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    totlen: v.getUint32(4),
    ver: v.getUint16(8),
    port: v.getUint16(10),
    type: v.getUint16(12),
    count: v.getUint16(14),
    currentEpoch: u64(v, 16),
    configEpoch: u64(v, 24),
    sender: dec.decode(b.subarray(40, 80)),
    myslots: b.subarray(80, 80 + SLOTS_BYTES),
    slaveof: isZero(b, 2128, CLUSTER_NAMELEN) ? null : dec.decode(b.subarray(2128, 2168)),
    myip: text(b, 2168, IP_LEN),
    extensions: v.getUint16(2214),
    cport: v.getUint16(2248),
    flags: v.getUint16(2250),
    state: b[2252]!,
    mflags0: b[2253]!,
  };
}

export function decodeGossip(b: Uint8Array, at: number): Gossip {
  const v = new DataView(b.buffer, b.byteOffset + at, BUS_GOSSIP);
  return {
    id: dec.decode(b.subarray(at, at + CLUSTER_NAMELEN)),
    pingSent: v.getUint32(40),
    pongReceived: v.getUint32(44),
    ip: text(b, at + 48, IP_LEN),
    port: v.getUint16(94),
    cport: v.getUint16(96),
    flags: v.getUint16(98),
  };
}

/** What a message's length must be, from its header (Redis's explen), or -1 when its type has no fixed form. */
export function expectedLength(b: Uint8Array, h: BusHeader): number {
  if (h.type === BUS_TYPE.PING || h.type === BUS_TYPE.PONG || h.type === BUS_TYPE.MEET) {
    let n = BUS_HEADER + h.count * BUS_GOSSIP;
    if (h.mflags0 & EXT_DATA) {
      const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
      for (let k = 0; k < h.extensions; k++) {
        if (n + 8 > h.totlen) return -2;
        const len = v.getUint32(n);
        if (len % 8 !== 0 || len < 8 || h.totlen - n < len) return -2;
        n += len;
      }
    }
    return n;
  }
  if (h.type === BUS_TYPE.FAIL) return BUS_HEADER + CLUSTER_NAMELEN;
  if (h.type === BUS_TYPE.UPDATE) return BUS_HEADER + BUS_UPDATE;
  return -1;
}

export function flagBits(n: ClusterNode): number {
  let f = 0;
  for (const [bit, name] of FLAG_BITS) if (n.flags.has(name)) f |= bit;
  return f;
}

function setRole(n: ClusterNode, bits: number): void {
  for (const [bit, name] of FLAG_BITS)
    if (bit === F_MASTER || bit === F_SLAVE) {
      if (bits & bit) n.flags.add(name);
      else n.flags.delete(name);
    }
}

interface Link {
  conn: number;
  /** The connect's tag while it opens (outbound), else 0. */
  tag: number;
  inbound: boolean;
  /** The node an outbound link goes to. */
  node: ClusterNode | null;
  rx: RxBytes;
  ctime: number;
  /** Its connection is established (outbound: CONNECTED came). */
  up: boolean;
}

export interface BusOptions {
  /** The clock (ms). */
  now: () => number;
  /** Redis's cluster-node-timeout (default 15000 ms): handshakes and stuck links time out from it. */
  nodeTimeoutMs?: number;
  /** Slots this node lost to another node's newer claim while it still had keys in them. */
  onLostSlots?: (slots: number[]) => void;
}

export interface BusStats {
  sent: number;
  received: number;
  /** Messages not sent: the link's send queue had no room (the next PING repeats what they said). */
  dropped: number;
  /** Messages refused: a bad signature, version or length. */
  bad: number;
  /** Per type: sent and received. */
  sentByType: number[];
  receivedByType: number[];
}

/** Connect tags of the bus: far above anything else on the stack uses. */
const TAG_BASE = 0x5c000000;

export class ClusterBus {
  readonly stack: Stack;
  readonly cluster: ClusterState;
  readonly stats: BusStats = {
    sent: 0,
    received: 0,
    dropped: 0,
    bad: 0,
    sentByType: new Array(TYPE_NAMES.length).fill(0),
    receivedByType: new Array(TYPE_NAMES.length).fill(0),
  };
  #now: () => number;
  #timeout: number;
  #onLost: (slots: number[]) => void;
  #links = new Map<number, Link>(); // conn id -> link
  #opening = new Map<number, Link>(); // tag -> outbound link not connected yet
  #out = new Map<ClusterNode, Link>(); // a node's outbound link
  #nextTag = 1;
  #iteration = 0;
  #closed = false;

  constructor(stack: Stack, cluster: ClusterState, opts: BusOptions) {
    this.stack = stack;
    this.cluster = cluster;
    this.#now = opts.now;
    this.#timeout = opts.nodeTimeoutMs ?? 15_000;
    this.#onLost = opts.onLostSlots ?? (() => {});
    stack.listen(cluster.myself.cport, { backlog: 128 });
  }

  /** The bus port. */
  get port(): number {
    return this.cluster.myself.cport;
  }

  /** Links open now (inbound and outbound). */
  get links(): number {
    return this.#links.size + this.#opening.size;
  }

  /**
   * CLUSTER MEET: a handshake node with a random id at that address; the next cron connects and
   * sends MEET. Returns an error text or null.
   */
  meet(ip: string, port: number, cport: number): string | null {
    if (!(port > 0 && port <= 65535) || !(cport > 0 && cport <= 65535))
      return `ERR Invalid node address specified: ${ip}:${port}`;
    // a handshake already under way with the same address is not started again
    for (const n of this.cluster.nodes.values())
      if (n.flags.has("handshake") && n.ip === ip && n.port === port && n.cport === cport) return null;
    const n = newNode(this.cluster.randomId(), ip, port, cport, ["handshake"]);
    n.ctime = this.#now();
    n.meet = true;
    this.cluster.addNode(n);
    this.cluster.saveIfDirty();
    return null;
  }

  /** Takes the stack's event if it is the bus's; returns whether it was. */
  onEvent(ev: StackEvent): boolean {
    switch (ev.type) {
      case "ACCEPTED":
        if (ev.len !== this.port) return false;
        this.#links.set(ev.conn, this.#newLink(ev.conn, 0, true, null, true));
        return true;
      case "CONNECTED": {
        const l = this.#opening.get(ev.buf);
        if (!l) return false;
        this.#opening.delete(ev.buf);
        if (this.#closed || this.#out.get(l.node!) !== l) {
          this.stack.abort(ev.conn);
          return true;
        }
        l.conn = ev.conn;
        l.up = true;
        this.#links.set(ev.conn, l);
        const n = l.node!;
        n.connected = true;
        // a MEET for a node CLUSTER MEET named, else a PING (keeping an older unanswered ping's time)
        const pending = n.pingSent;
        this.#sendPing(l, n.meet ? BUS_TYPE.MEET : BUS_TYPE.PING);
        if (pending) n.pingSent = pending;
        n.meet = false;
        return true;
      }
      case "ERROR":
      case "RESET":
      case "CLOSED": {
        // a connect that failed: ERROR names its tag in conn, RESET in buf
        const tag = ev.type === "ERROR" ? ev.conn : ev.buf;
        const opening = tag >= TAG_BASE ? this.#opening.get(tag) : undefined;
        if (opening && !this.#links.has(ev.conn)) {
          this.#opening.delete(tag);
          this.#drop(opening);
          return true;
        }
        const l = this.#links.get(ev.conn);
        if (!l || ev.type === "ERROR") return false;
        this.#links.delete(ev.conn);
        this.#drop(l);
        return true;
      }
      case "PEER_CLOSED": {
        const l = this.#links.get(ev.conn);
        if (!l) return false;
        this.stack.close(ev.conn);
        return true;
      }
      case "DATA": {
        const l = this.#links.get(ev.conn);
        if (!l) return false;
        const pool = this.stack.pool;
        l.rx.push(pool.view(ev.buf, ev.off, ev.len));
        pool.free(ev.buf);
        this.stack.recvd(ev.conn, ev.len);
        this.#input(l);
        this.cluster.saveIfDirty();
        return true;
      }
      case "SEND_REFUSED": {
        const l = this.#links.get(ev.conn);
        if (!l) return false;
        // the send queue overflowed despite the room check: the link goes, the next cron reconnects
        this.stack.pool.free(ev.buf);
        this.stats.dropped++;
        this.#free(l);
        return true;
      }
      case "WRITABLE":
        return this.#links.has(ev.conn);
    }
    return false;
  }

  /**
   * Redis's clusterCron, to be called about every 100 ms: handshakes that timed out are
   * forgotten, nodes without an outbound link get one, a node or two are pinged, stuck links are
   * dropped. Saves the configuration if it changed.
   */
  cron(): void {
    if (this.#closed) return;
    const now = this.#now();
    const cl = this.cluster;
    const handshakeTimeout = Math.max(this.#timeout, 1000);
    this.#iteration++;
    for (const n of [...cl.nodes.values()]) {
      if (n === cl.myself || n.flags.has("noaddr")) continue;
      if (n.flags.has("handshake") && now - n.ctime > handshakeTimeout) {
        this.#forget(n);
        continue;
      }
      if (!this.#out.has(n) && n.ip && n.cport) this.#connect(n, now);
    }
    // every 10th call: ping the node (of five sampled) whose last PONG is oldest
    if (this.#iteration % 10 === 0) {
      let best: ClusterNode | null = null;
      const candidates = [...this.#out.keys()].filter(
        (n) => this.#out.get(n)!.up && n.pingSent === 0 && !n.flags.has("handshake"),
      );
      for (let k = 0; k < 5 && candidates.length; k++) {
        const n = candidates.splice(Math.floor(Math.random() * candidates.length), 1)[0]!;
        if (!best || n.pongReceived < best.pongReceived) best = n;
      }
      if (best) this.#sendPing(this.#out.get(best)!, BUS_TYPE.PING);
    }
    for (const [n, l] of this.#out) {
      if (!l.up || n.flags.has("handshake")) continue;
      // a link whose ping stays unanswered for half the node timeout is dropped and reopened
      if (n.pingSent && now - l.ctime > this.#timeout && now - n.pingSent > this.#timeout / 2) {
        this.#free(l);
        continue;
      }
      if (n.pingSent === 0 && now - n.pongReceived > this.#timeout / 2) this.#sendPing(l, BUS_TYPE.PING);
    }
    cl.saveIfDirty();
  }

  /** Tells every node at once what this node serves now (a PONG on each outbound link), as after SETSLOT NODE. */
  broadcastPong(): void {
    for (const [n, l] of this.#out) if (l.up && !n.flags.has("handshake")) this.#sendPing(l, BUS_TYPE.PONG);
  }

  /** Closes every link and stops listening. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const l of [...this.#links.values()]) this.stack.abort(l.conn);
    this.#links.clear();
    this.#opening.clear();
    this.#out.clear();
    this.stack.unlisten(this.port);
  }

  // ---- links --------------------------------------------------------------------------------

  #newLink(conn: number, tag: number, inbound: boolean, node: ClusterNode | null, up: boolean): Link {
    return { conn, tag, inbound, node, rx: new RxBytes(), ctime: this.#now(), up };
  }

  #connect(n: ClusterNode, now: number): void {
    const tag = TAG_BASE + (this.#nextTag++ % 0x1000000);
    const l = this.#newLink(-1, tag, false, n, false);
    l.ctime = now;
    this.#opening.set(tag, l);
    this.#out.set(n, l);
    // as Redis: a node whose link exists (opening or open) is "connected" in CLUSTER NODES
    n.connected = true;
    try {
      this.stack.connect(n.ip, n.cport, { tag });
    } catch {
      // an address the stack cannot reach (a family it has no address of): try again later
      this.#opening.delete(tag);
      this.#out.delete(n);
      n.connected = false;
    }
  }

  /** A link that closed or failed: its node loses it (the next cron reconnects). */
  #drop(l: Link): void {
    if (l.node && this.#out.get(l.node) === l) {
      this.#out.delete(l.node);
      l.node.connected = false;
    }
  }

  /** Closes a link now (RST): its node gets a new one at the next cron. */
  #free(l: Link): void {
    if (l.conn >= 0 && this.#links.delete(l.conn)) this.stack.abort(l.conn);
    if (l.tag) this.#opening.delete(l.tag);
    this.#drop(l);
  }

  #forget(n: ClusterNode): void {
    const l = this.#out.get(n);
    if (l) this.#free(l);
    this.cluster.deleteNode(n);
  }

  #input(l: Link): void {
    let at = 0;
    while (l.rx.length - at >= 8) {
      const b = l.rx.bytes;
      if (b[at] !== 0x52 || b[at + 1] !== 0x43 || b[at + 2] !== 0x6d || b[at + 3] !== 0x62) {
        // not "RCmb": not a cluster bus peer
        this.stats.bad++;
        this.#free(l);
        return;
      }
      const totlen = new DataView(b.buffer, b.byteOffset + at + 4, 4).getUint32(0);
      if (totlen < BUS_HEADER || totlen > MAX_MESSAGE) {
        this.stats.bad++;
        this.#free(l);
        return;
      }
      if (l.rx.length - at < totlen) break;
      const msg = b.slice(at, at + totlen);
      at += totlen;
      if (!this.#links.has(l.conn)) return;
      this.#process(l, msg);
    }
    l.rx.consume(at);
  }

  // ---- messages in --------------------------------------------------------------------------

  #process(l: Link, msg: Uint8Array): void {
    const cl = this.cluster;
    const h = decodeHeader(msg);
    const now = this.#now();
    this.stats.received++;
    if (h.type < TYPE_NAMES.length) this.stats.receivedByType[h.type]!++;
    const explen = expectedLength(msg, h);
    if (h.ver !== 1 || explen === -2 || (explen >= 0 && explen !== h.totlen)) {
      this.stats.bad++;
      return;
    }
    const known = cl.nodes.get(h.sender);
    const sender = l.node && !l.node.flags.has("handshake") && !l.inbound ? l.node : (known ?? null);
    const ping = h.type === BUS_TYPE.PING;
    const meet = h.type === BUS_TYPE.MEET;
    const pong = h.type === BUS_TYPE.PONG;
    if (sender && !sender.flags.has("handshake")) {
      if (h.currentEpoch > cl.currentEpoch) {
        cl.currentEpoch = h.currentEpoch;
        cl.markDirty();
      }
      if (h.configEpoch > sender.configEpoch) {
        sender.configEpoch = h.configEpoch;
        cl.markDirty();
      }
    }
    if (ping || meet) {
      if (meet) {
        // a MEET names our address as the peer reached it
        const ep = this.stack.endpoints(l.conn);
        if (ep && ep.localAddress && ep.localAddress !== cl.myself.ip) {
          cl.myself.ip = ep.localAddress;
          cl.markDirty();
        }
      }
      if (!sender && meet) {
        const ip = h.myip || this.stack.endpoints(l.conn)?.remoteAddress || "";
        const n = newNode(cl.randomId(), ip, h.port, h.cport, ["handshake"]);
        n.ctime = now;
        cl.addNode(n);
        this.#gossip(msg, h, null, now);
      }
      this.#sendPing(l, BUS_TYPE.PONG);
    }
    if (ping || pong || meet) {
      if (!l.inbound) {
        const n = l.node!;
        if (n.flags.has("handshake")) {
          if (sender) {
            // we knew it under its real id already: the address is updated, the handshake node goes
            this.#updateAddress(sender, l, h);
            this.#forget(n);
            return;
          }
          if (!/^[0-9a-f]{40}$/.test(h.sender)) return;
          cl.renameNode(n, h.sender);
          n.flags.delete("handshake");
          setRole(n, h.flags);
          cl.markDirty();
        } else if (n.id !== h.sender) {
          // another node answers at this address: it has no address for now
          n.flags.add("noaddr");
          n.ip = "";
          n.port = n.cport = 0;
          this.#free(l);
          cl.markDirty();
          return;
        }
      }
      const from = l.inbound ? sender : l.node!;
      if (from && ping && !from.flags.has("handshake")) this.#updateAddress(from, l, h);
      if (!l.inbound && pong) {
        const n = l.node!;
        n.pongReceived = now;
        n.pingSent = 0;
      }
      const s = l.inbound ? sender : l.node!;
      if (!s) return;
      // the role it announces (replicas are not served here: a replica is recorded as one)
      const wasMaster = s.flags.has("master");
      if (h.slaveof === null) {
        if (!wasMaster || s.flags.has("slave")) {
          s.flags.delete("slave");
          s.flags.add("master");
          s.master = null;
          cl.markDirty();
        }
      } else if (s.master !== h.slaveof || wasMaster) {
        s.flags.delete("master");
        s.flags.add("slave");
        s.master = h.slaveof;
        cl.markDirty();
      }
      // the slots it claims
      const mine = cl.bitmap(s);
      let dirty = false;
      for (let i = 0; i < SLOTS_BYTES; i++)
        if (mine[i] !== h.myslots[i]) {
          dirty = true;
          break;
        }
      if (dirty && s.flags.has("master")) this.#claim(s, h.configEpoch, h.myslots);
      if (dirty) {
        // it claims a slot a node with a newer config epoch serves: tell it (UPDATE)
        for (let j = 0; j < CLUSTER_SLOTS; j++) {
          if (!(h.myslots[j >> 3]! & (1 << (j & 7)))) continue;
          const o = cl.owner(j);
          if (!o || o === s) continue;
          if (o.configEpoch > h.configEpoch) {
            const out = this.#out.get(s);
            if (out?.up) this.#sendUpdate(out, o);
            break;
          }
        }
      }
      // two masters with one config epoch: the one with the smaller id takes a new one
      if (s.flags.has("master") && cl.myself.flags.has("master") && h.configEpoch === cl.myself.configEpoch)
        this.#epochCollision(s);
      this.#gossip(msg, h, s, now);
    } else if (h.type === BUS_TYPE.UPDATE) {
      if (!sender) return;
      const v = new DataView(msg.buffer, msg.byteOffset + BUS_HEADER, 8);
      const epoch = Number(v.getBigUint64(0));
      const id = dec.decode(msg.subarray(BUS_HEADER + 8, BUS_HEADER + 8 + CLUSTER_NAMELEN));
      const n = cl.nodes.get(id);
      if (!n || n.configEpoch >= epoch) return;
      if (n.flags.has("slave")) {
        n.flags.delete("slave");
        n.flags.add("master");
        n.master = null;
      }
      n.configEpoch = epoch;
      cl.markDirty();
      this.#claim(n, epoch, msg.subarray(BUS_HEADER + 8 + CLUSTER_NAMELEN, BUS_HEADER + BUS_UPDATE));
    }
    // FAIL, PUBLISH, failover votes, MFSTART, MODULE: not handled (docs/cluster.md)
  }

  /** Redis's nodeUpdateAddressIfNeeded: a node that PINGs us from a new address has moved. */
  #updateAddress(n: ClusterNode, l: Link, h: BusHeader): void {
    if (n === this.cluster.myself || this.#out.get(n) === l) return;
    const ip = h.myip || this.stack.endpoints(l.conn)?.remoteAddress || "";
    if (!ip || (ip === n.ip && h.port === n.port && h.cport === n.cport)) return;
    n.ip = ip;
    n.port = h.port;
    n.cport = h.cport;
    n.flags.delete("noaddr");
    const out = this.#out.get(n);
    if (out) this.#free(out);
    this.cluster.markDirty();
  }

  /** Redis's clusterUpdateSlotsConfigWith (for a node without replicas). */
  #claim(sender: ClusterNode, epoch: number, slots: Uint8Array): void {
    const cl = this.cluster;
    if (sender === cl.myself) return;
    const lost: number[] = [];
    for (let j = 0; j < CLUSTER_SLOTS; j++) {
      if (!(slots[j >> 3]! & (1 << (j & 7)))) continue;
      const o = cl.owner(j);
      if (o === sender || cl.importing.has(j)) continue;
      if (o === null || o.configEpoch < epoch) {
        if (o === cl.myself) lost.push(j);
        cl.setOwner(j, sender);
      }
    }
    if (lost.length) this.#onLost(lost);
  }

  /** Redis's clusterHandleConfigEpochCollision. */
  #epochCollision(sender: ClusterNode): void {
    const cl = this.cluster;
    if (sender.configEpoch !== cl.myself.configEpoch) return;
    // the node with the smaller id keeps the epoch
    if (sender.id <= cl.myself.id) return;
    cl.currentEpoch++;
    cl.myself.configEpoch = cl.currentEpoch;
    cl.save();
  }

  /** Redis's clusterProcessGossipSection, without failure reports. */
  #gossip(msg: Uint8Array, h: BusHeader, sender: ClusterNode | null, now: number): void {
    const cl = this.cluster;
    const entries: Gossip[] = [];
    for (let k = 0; k < h.count; k++) {
      const g = decodeGossip(msg, BUS_HEADER + k * BUS_GOSSIP);
      if (!/^[0-9a-f]{40}$/.test(g.id)) return; // a damaged section is not used at all
      entries.push(g);
    }
    for (const g of entries) {
      const n = cl.nodes.get(g.id);
      if (n && n !== cl.myself) {
        if (!(g.flags & (F_FAIL | F_PFAIL)) && n.pingSent === 0) {
          const pong = g.pongReceived * 1000;
          if (pong <= now + 500 && pong > n.pongReceived) n.pongReceived = pong;
        }
      } else if (!n && sender && !(g.flags & F_NOADDR) && g.ip) {
        const flags: string[] = [];
        for (const [bit, name] of FLAG_BITS) if (g.flags & bit && name !== "myself") flags.push(name);
        const x = newNode(g.id, g.ip, g.port, g.cport, flags);
        x.ctime = now;
        cl.addNode(x);
      }
    }
  }

  // ---- messages out -------------------------------------------------------------------------

  #header(type: number, totlen: number, count: number): Uint8Array {
    const cl = this.cluster;
    const me = cl.myself;
    const b = new Uint8Array(totlen);
    const v = new DataView(b.buffer);
    b.set([0x52, 0x43, 0x6d, 0x62]); // "RCmb"
    v.setUint32(4, totlen);
    v.setUint16(8, 1);
    v.setUint16(10, me.port);
    v.setUint16(12, type);
    v.setUint16(14, count);
    v.setBigUint64(16, BigInt(cl.currentEpoch));
    v.setBigUint64(24, BigInt(me.configEpoch));
    b.set(enc.encode(me.id), 40);
    b.set(cl.bitmap(me), 80);
    // slaveof: zeros (a master); myip: zeros (the peer takes the address it sees)
    v.setUint16(2248, me.cport);
    v.setUint16(2250, flagBits(me));
    b[2252] = cl.state === "ok" ? 0 : 1;
    return b;
  }

  #sendPing(l: Link, type: number): void {
    const cl = this.cluster;
    const me = cl.myself;
    // Redis's choice: a tenth of the nodes, at least 3, at most all but us and the receiver
    const others = [...cl.nodes.values()].filter(
      (n) =>
        n !== me &&
        n !== l.node &&
        !n.flags.has("handshake") &&
        !n.flags.has("noaddr") &&
        (this.#out.get(n)?.up || n.slots > 0),
    );
    const wanted = Math.min(Math.max(3, Math.floor(cl.nodes.size / 10)), others.length);
    const pick: ClusterNode[] = [];
    while (pick.length < wanted) pick.push(others.splice(Math.floor(Math.random() * others.length), 1)[0]!);
    const b = this.#header(type, BUS_HEADER + pick.length * BUS_GOSSIP, pick.length);
    const v = new DataView(b.buffer);
    pick.forEach((n, k) => {
      const at = BUS_HEADER + k * BUS_GOSSIP;
      b.set(enc.encode(n.id), at);
      v.setUint32(at + 40, Math.floor(n.pingSent / 1000));
      v.setUint32(at + 44, Math.floor(n.pongReceived / 1000));
      b.set(enc.encode(n.ip).subarray(0, IP_LEN - 1), at + 48);
      v.setUint16(at + 94, n.port);
      v.setUint16(at + 96, n.cport);
      v.setUint16(at + 98, flagBits(n) & ~16);
    });
    if (type === BUS_TYPE.PING && !l.inbound && l.node) l.node.pingSent = this.#now();
    this.#send(l, b, type);
  }

  #sendUpdate(l: Link, about: ClusterNode): void {
    const b = this.#header(BUS_TYPE.UPDATE, BUS_HEADER + BUS_UPDATE, 0);
    const v = new DataView(b.buffer);
    v.setBigUint64(BUS_HEADER, BigInt(about.configEpoch));
    b.set(enc.encode(about.id), BUS_HEADER + 8);
    b.set(this.cluster.bitmap(about), BUS_HEADER + 8 + CLUSTER_NAMELEN);
    this.#send(l, b, BUS_TYPE.UPDATE);
  }

  /** Hands a message to the stack in buffer-sized pieces, or drops it when the send queue has no room. */
  #send(l: Link, b: Uint8Array, type: number): void {
    if (!l.up || l.conn < 0) return;
    const stack = this.stack;
    const pool = stack.pool;
    const PIECE = 1400;
    const pieces = Math.ceil(b.length / PIECE);
    if (stack.sendRoom(l.conn) < b.length || stack.commandSpace() < pieces + 8 || pool.freeCount < pieces + 64) {
      this.stats.dropped++;
      return;
    }
    for (let at = 0; at < b.length; at += PIECE) {
      const n = Math.min(PIECE, b.length - at);
      const i = pool.alloc();
      pool.view(i, 128, n).set(b.subarray(at, at + n));
      stack.send(l.conn, { index: i, offset: 128, length: n });
    }
    this.stats.sent++;
    this.stats.sentByType[type]!++;
  }
}

/** A message type's name (Redis's clusterGetMessageTypeString). */
export function busTypeName(t: number): string {
  return TYPE_NAMES[t]?.toLowerCase() ?? "unknown";
}

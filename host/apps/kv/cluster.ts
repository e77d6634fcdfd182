// Redis Cluster's model for the key-value store: 16,384 hash slots (CRC16 of the key, or of its
// {hash tag}), the nodes this node knows and the slots each serves, the epochs, and the node's
// configuration as Redis writes it (nodes.conf: one CLUSTER NODES line per node, then
// "vars currentEpoch N lastVoteEpoch N"). Pure: the configuration is read and written through
// a ClusterConfigStore (a file beside the pool: cluster-file.ts), the node id comes from an
// injected random source. docs/cluster.md says what of Redis Cluster is implemented.

import { latin1 } from "./store.js";

/** Hash slots of Redis Cluster. */
export const CLUSTER_SLOTS = 16384;
/** Bytes of a node id (hex digits). */
export const CLUSTER_NAMELEN = 40;
/** The cluster bus port is the client port plus this, unless given. */
export const CLUSTER_PORT_INCR = 10000;

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), as Redis's crc16.c.
const CRC16_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let k = 0; k < 8; k++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** CRC16 (XMODEM) of bytes [start, end) of `b`. crc16("123456789") is 0x31c3. */
export function crc16(b: Uint8Array, start = 0, end = b.length): number {
  let crc = 0;
  for (let i = start; i < end; i++) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >>> 8) ^ b[i]!) & 0xff]!;
  return crc;
}

/**
 * The hash slot of a key: CRC16 of the key mod 16384, or of its hash tag, the bytes between the
 * first "{" and the first "}" after it when there is at least one byte between them.
 */
export function keyHashSlot(key: Uint8Array): number {
  const n = key.length;
  let s = 0;
  while (s < n && key[s] !== 0x7b) s++;
  if (s === n) return crc16(key) & 0x3fff;
  let e = s + 1;
  while (e < n && key[e] !== 0x7d) e++;
  if (e === n || e === s + 1) return crc16(key) & 0x3fff;
  return crc16(key, s + 1, e) & 0x3fff;
}

/** Where the configuration lives (atomically replaced and durable on save). */
export interface ClusterConfigStore {
  /** A name for messages (the file's path). */
  readonly name: string;
  /** The saved text, or null when there is none yet. */
  load(): string | null;
  /** Replaces the saved text; durable when it returns. */
  save(text: string): void;
}

/** A node of the cluster as this node knows it. */
export interface ClusterNode {
  id: string;
  ip: string;
  port: number;
  cport: number;
  /** Redis's flags: "myself", "master", "slave", "handshake", "noaddr", "fail?", "fail"... */
  flags: Set<string>;
  /** The id of the master this node replicates, or null. */
  master: string | null;
  configEpoch: number;
  pingSent: number;
  pongReceived: number;
  connected: boolean;
  /** Slots served. */
  slots: number;
  /** When this node was added (ms; handshakes time out from it). */
  ctime: number;
  /** A MEET is to be sent to it (a node CLUSTER MEET named), rather than a PING. */
  meet: boolean;
}

export interface ClusterOptions {
  /** The address clients are redirected to for this node (its IPv4 or IPv6 address). */
  ip: string;
  /** The client port. */
  port: number;
  /** The bus port (default port + 10000). */
  cport?: number;
  /** The saved configuration (none: the node starts fresh and keeps nothing). */
  config?: ClusterConfigStore | null;
  /** Random bytes for a new node id (default crypto.getRandomValues). */
  random?: (n: number) => Uint8Array;
}

/** A malformed configuration: the node refuses to start rather than guess its slots. */
export class ClusterConfigError extends Error {}

export class ClusterState {
  readonly myself: ClusterNode;
  readonly nodes = new Map<string, ClusterNode>();
  currentEpoch = 0;
  lastVoteEpoch = 0;
  /** Whether the configuration existed (a restart) or was made now. */
  readonly loaded: boolean;
  #owner: (ClusterNode | null)[] = new Array(CLUSTER_SLOTS).fill(null);
  /** Slots this node is moving to another node (SETSLOT MIGRATING), and taking from one (IMPORTING). */
  readonly migrating = new Map<number, ClusterNode>();
  readonly importing = new Map<number, ClusterNode>();
  #assigned = 0;
  #config: ClusterConfigStore | null;
  #random: (n: number) => Uint8Array;
  #dirty = false;

  constructor(opts: ClusterOptions) {
    if (!(Number.isInteger(opts.port) && opts.port > 0 && opts.port <= 55535))
      throw new RangeError(
        `pmstack: cluster: the client port must be 1 to 55535 (bus port = port + 10000), not ${opts.port}`,
      );
    const cport = opts.cport ?? opts.port + CLUSTER_PORT_INCR;
    this.#config = opts.config ?? null;
    this.#random = opts.random ?? ((n: number) => globalThis.crypto.getRandomValues(new Uint8Array(n)));
    const text = this.#config?.load() ?? null;
    if (text !== null) {
      this.#parse(text);
      const me = [...this.nodes.values()].find((n) => n.flags.has("myself"));
      if (!me)
        throw new ClusterConfigError(`pmstack: cluster config ${this.#config!.name}: no line has the "myself" flag`);
      this.myself = me;
      // the addresses are this run's: the saved ones may be from another address or port
      me.ip = opts.ip;
      me.port = opts.port;
      me.cport = cport;
      this.loaded = true;
    } else {
      const id = this.randomId();
      this.myself = newNode(id, opts.ip, opts.port, cport, ["myself", "master"]);
      this.nodes.set(id, this.myself);
      this.loaded = false;
      this.save();
    }
  }

  /** A new node id: 40 hex digits from 20 random bytes. */
  randomId(): string {
    return [...this.#random(20)].map((x) => x.toString(16).padStart(2, "0")).join("");
  }

  /** Adds a node (the bus: a handshake, or one gossip named). */
  addNode(n: ClusterNode): void {
    if (this.nodes.has(n.id)) throw new Error(`pmstack: cluster: node ${n.id} is known already`);
    this.nodes.set(n.id, n);
    this.#dirty = true;
  }

  /** Forgets a node and unassigns its slots. */
  deleteNode(n: ClusterNode): void {
    if (n === this.myself) throw new Error("pmstack: cluster: a node cannot delete itself");
    if (n.slots) for (let s = 0; s < CLUSTER_SLOTS; s++) if (this.#owner[s] === n) this.#set(s, null);
    for (const m of [this.migrating, this.importing]) for (const [s, x] of m) if (x === n) m.delete(s);
    this.nodes.delete(n.id);
    this.#dirty = true;
  }

  /** Gives a handshake node its real id. */
  renameNode(n: ClusterNode, id: string): void {
    this.nodes.delete(n.id);
    n.id = id;
    this.nodes.set(id, n);
    this.#dirty = true;
  }

  /** Sets the owner of a slot (the bus, applying another node's claim). */
  setOwner(slot: number, n: ClusterNode | null): void {
    this.#set(slot, n);
    this.#dirty = true;
  }

  /** The slots a node serves, as the bus's bitmap (bit s: byte s >> 3, bit s & 7). */
  bitmap(n: ClusterNode): Uint8Array {
    const b = new Uint8Array(CLUSTER_SLOTS / 8);
    if (n.slots) for (let s = 0; s < CLUSTER_SLOTS; s++) if (this.#owner[s] === n) b[s >> 3]! |= 1 << (s & 7);
    return b;
  }

  /** The configuration changed: save() at the end of this step (saveIfDirty). */
  markDirty(): void {
    this.#dirty = true;
  }

  /** Saves the configuration if anything changed since the last save. */
  saveIfDirty(): void {
    if (this.#dirty) this.save();
  }

  /** The node serving `slot`, or null. */
  owner(slot: number): ClusterNode | null {
    return this.#owner[slot]!;
  }

  /** Slots assigned to some node. */
  get assigned(): number {
    return this.#assigned;
  }

  /** "ok" when every slot is served (Redis's cluster-require-full-coverage yes), else "fail". */
  get state(): "ok" | "fail" {
    return this.#assigned === CLUSTER_SLOTS ? "ok" : "fail";
  }

  /** Masters serving at least one slot (Redis's cluster_size). */
  get size(): number {
    let n = 0;
    for (const x of this.nodes.values()) if (x.slots > 0 && !x.flags.has("slave")) n++;
    return n;
  }

  /**
   * Assigns (del: unassigns) the slots to this node, all or none: Redis's ADDSLOTS/DELSLOTS
   * checks and errors. Saves the configuration before it returns. Returns an error or null.
   */
  assign(slots: readonly number[], del: boolean): string | null {
    const seen = new Uint8Array(CLUSTER_SLOTS);
    for (const s of slots) {
      if (del && this.#owner[s] === null) return `ERR Slot ${s} is already unassigned`;
      if (!del && this.#owner[s] !== null) return `ERR Slot ${s} is already busy`;
      if (seen[s] === 1) return `ERR Slot ${s} specified multiple times`;
      seen[s] = 1;
    }
    for (const s of slots) this.#set(s, del ? null : this.myself);
    this.save();
    return null;
  }

  /** CLUSTER FLUSHSLOTS: this node serves no slot. */
  flushSlots(): void {
    for (let s = 0; s < CLUSTER_SLOTS; s++) if (this.#owner[s] === this.myself) this.#set(s, null);
    this.save();
  }

  /** CLUSTER SET-CONFIG-EPOCH: only on a fresh node. Returns an error or null. */
  setConfigEpoch(epoch: number): string | null {
    if (epoch < 0) return `ERR Invalid config epoch specified: ${epoch}`;
    if (this.nodes.size > 1)
      return "ERR The user can assign a config epoch only when the node does not know any other node.";
    if (this.myself.configEpoch !== 0) return "ERR Node config epoch is already non-zero";
    this.myself.configEpoch = epoch;
    if (this.currentEpoch < epoch) this.currentEpoch = epoch;
    this.save();
    return null;
  }

  /**
   * CLUSTER BUMPEPOCH (Redis's clusterBumpConfigEpochWithoutConsensus): a new config epoch for
   * this node unless it already has the greatest epoch known. Returns whether it bumped.
   */
  bumpEpoch(): boolean {
    let max = this.currentEpoch;
    for (const n of this.nodes.values()) if (n.configEpoch > max) max = n.configEpoch;
    if (this.myself.configEpoch !== 0 && this.myself.configEpoch === max) return false;
    this.currentEpoch++;
    this.myself.configEpoch = this.currentEpoch;
    this.save();
    return true;
  }

  /**
   * CLUSTER SETSLOT <slot> MIGRATING|IMPORTING|NODE <id> | STABLE, with Redis's checks. `keys`:
   * how many keys this node holds in the slot. Returns an error text or null; saves.
   */
  setSlot(slot: number, action: string, id: string | null, keys: number): string | null {
    const me = this.myself;
    if (me.flags.has("slave")) return "ERR Please use SETSLOT only with masters.";
    const node = id === null ? null : (this.nodes.get(id) ?? null);
    switch (action) {
      case "migrating":
        if (this.#owner[slot] !== me) return `ERR I'm not the owner of hash slot ${slot}`;
        if (!node) return `ERR I don't know about node ${id}`;
        if (node.flags.has("slave")) return "ERR Target node is not a master";
        this.migrating.set(slot, node);
        break;
      case "importing":
        if (this.#owner[slot] === me) return `ERR I'm already the owner of hash slot ${slot}`;
        if (!node) return `ERR I don't know about node ${id}`;
        if (node.flags.has("slave")) return "ERR Target node is not a master";
        this.importing.set(slot, node);
        break;
      case "stable":
        this.migrating.delete(slot);
        this.importing.delete(slot);
        break;
      case "node":
        if (!node) return `ERR Unknown node ${id}`;
        if (node.flags.has("slave")) return "ERR Target node is not a master";
        if (this.#owner[slot] === me && node !== me && keys !== 0)
          return `ERR Can't assign hashslot ${slot} to a different node while I still hold keys for this hash slot.`;
        if (keys === 0) this.migrating.delete(slot);
        if (node === me && this.importing.has(slot)) {
          // the slot is ours now: a new epoch without consensus makes our claim win (as Redis)
          this.importing.delete(slot);
          this.#set(slot, node);
          if (!this.bumpEpoch()) this.save();
          return null;
        }
        this.#set(slot, node);
        break;
      default:
        return "ERR Invalid CLUSTER SETSLOT action or number of arguments. Try CLUSTER HELP";
    }
    this.save();
    return null;
  }

  /** Writes the configuration (a no-op without a store). */
  save(): void {
    this.#dirty = false;
    this.#config?.save(this.configText());
  }

  /** The configuration as Redis's nodes.conf. */
  configText(): string {
    const lines = [...this.nodes.values()].map((n) => this.describe(n));
    lines.push(`vars currentEpoch ${this.currentEpoch} lastVoteEpoch ${this.lastVoteEpoch}`);
    return lines.join("\n") + "\n";
  }

  /** CLUSTER NODES's text. */
  nodesText(): string {
    return [...this.nodes.values()].map((n) => this.describe(n) + "\n").join("");
  }

  /** One CLUSTER NODES line (Redis's clusterGenNodeDescription; nodes.conf holds the same lines). */
  describe(n: ClusterNode): string {
    let s = `${n.id} ${n.ip}:${n.port}@${n.cport} ${flagsText(n)} ${n.master ?? "-"}`;
    s += ` ${n.pingSent} ${n.pongReceived} ${n.configEpoch} ${n.connected || n === this.myself ? "connected" : "disconnected"}`;
    for (const [a, b] of this.ranges(n)) s += a === b ? ` ${a}` : ` ${a}-${b}`;
    if (n === this.myself) {
      for (const [slot, to] of [...this.migrating].sort((x, y) => x[0] - y[0])) s += ` [${slot}->-${to.id}]`;
      for (const [slot, from] of [...this.importing].sort((x, y) => x[0] - y[0])) s += ` [${slot}-<-${from.id}]`;
    }
    return s;
  }

  /** The slot ranges a node serves, ascending: [first, last] pairs. */
  ranges(n: ClusterNode): [number, number][] {
    const out: [number, number][] = [];
    if (n.slots === 0) return out;
    let start = -1;
    for (let s = 0; s <= CLUSTER_SLOTS; s++) {
      const mine = s < CLUSTER_SLOTS && this.#owner[s] === n;
      if (mine && start < 0) start = s;
      else if (!mine && start >= 0) {
        out.push([start, s - 1]);
        start = -1;
      }
    }
    return out;
  }

  /**
   * CLUSTER INFO's text. `stats`: the bus's messages sent and received, in total and by type
   * (the per-type lines are printed for types that have any, as Redis does).
   */
  infoText(
    stats: { sent: number; received: number; sentByType?: number[]; receivedByType?: number[] },
    typeName = (t: number) => String(t),
  ): string {
    const lines: [string, string | number][] = [
      ["cluster_state", this.state],
      ["cluster_slots_assigned", this.#assigned],
      ["cluster_slots_ok", this.#assigned],
      ["cluster_slots_pfail", 0],
      ["cluster_slots_fail", 0],
      ["cluster_known_nodes", this.nodes.size],
      ["cluster_size", this.size],
      ["cluster_current_epoch", this.currentEpoch],
      ["cluster_my_epoch", this.myself.configEpoch],
    ];
    stats.sentByType?.forEach((n, t) => n && lines.push([`cluster_stats_messages_${typeName(t)}_sent`, n]));
    lines.push(["cluster_stats_messages_sent", stats.sent]);
    stats.receivedByType?.forEach((n, t) => n && lines.push([`cluster_stats_messages_${typeName(t)}_received`, n]));
    lines.push(["cluster_stats_messages_received", stats.received]);
    lines.push(["total_cluster_links_buffer_limit_exceeded", 0]);
    return lines.map(([k, v]) => `${k}:${v}\r\n`).join("");
  }

  #set(slot: number, n: ClusterNode | null): void {
    const old = this.#owner[slot]!;
    if (old === n) return;
    if (old) old.slots--;
    else this.#assigned++;
    if (n) n.slots++;
    else this.#assigned--;
    this.#owner[slot] = n;
  }

  #parse(text: string): void {
    const where = (i: number) => `pmstack: cluster config ${this.#config!.name}, line ${i + 1}`;
    const lines = text.split("\n");
    let sawVars = false;
    const marks: [number, string, string, number][] = []; // slot, "->-" or "-<-", node id, line
    lines.forEach((line, i) => {
      if (line.trim() === "") return;
      const f = line.split(" ");
      if (f[0] === "vars") {
        for (let k = 1; k + 1 < f.length; k += 2) {
          const v = Number(f[k + 1]);
          if (!Number.isSafeInteger(v) || v < 0) throw new ClusterConfigError(`${where(i)}: bad ${f[k]} "${f[k + 1]}"`);
          if (f[k] === "currentEpoch") this.currentEpoch = v;
          else if (f[k] === "lastVoteEpoch") this.lastVoteEpoch = v;
        }
        sawVars = true;
        return;
      }
      if (f.length < 8) throw new ClusterConfigError(`${where(i)}: a node line has at least 8 fields, not ${f.length}`);
      const [id, addr, flags, master, ping, pong, epoch] = f as [
        string,
        string,
        string,
        string,
        string,
        string,
        string,
      ];
      if (!/^[0-9a-f]{40}$/.test(id)) throw new ClusterConfigError(`${where(i)}: bad node id "${id}"`);
      const m = /^(.*):(\d+)@(\d+)(,.*)?$/.exec(addr);
      if (!m) throw new ClusterConfigError(`${where(i)}: bad address "${addr}" (ip:port@cport)`);
      const n = newNode(id, m[1]!, Number(m[2]), Number(m[3]), flags === "noflags" ? [] : flags.split(","));
      n.master = master === "-" ? null : master;
      n.pingSent = Number(ping) || 0;
      n.pongReceived = Number(pong) || 0;
      n.configEpoch = Number(epoch);
      if (!Number.isSafeInteger(n.configEpoch) || n.configEpoch < 0)
        throw new ClusterConfigError(`${where(i)}: bad config epoch "${epoch}"`);
      if (this.nodes.has(id)) throw new ClusterConfigError(`${where(i)}: node ${id} appears twice`);
      this.nodes.set(id, n);
      for (const r of f.slice(8)) {
        if (r.startsWith("[")) {
          const mm = /^\[(\d+)(->-|-<-)([0-9a-f]{40})\]$/.exec(r);
          if (!mm || Number(mm[1]) >= CLUSTER_SLOTS) throw new ClusterConfigError(`${where(i)}: bad slot mark "${r}"`);
          marks.push([Number(mm[1]), mm[2]!, mm[3]!, i]);
          continue;
        }
        const rm = /^(\d+)(?:-(\d+))?$/.exec(r);
        const a = rm ? Number(rm[1]) : NaN;
        const b = rm ? Number(rm[2] ?? rm[1]) : NaN;
        if (!(a >= 0 && b >= a && b < CLUSTER_SLOTS))
          throw new ClusterConfigError(`${where(i)}: bad slot range "${r}"`);
        for (let s = a; s <= b; s++) {
          if (this.#owner[s] !== null) throw new ClusterConfigError(`${where(i)}: slot ${s} is served by two nodes`);
          this.#set(s, n);
        }
      }
    });
    if (!sawVars)
      throw new ClusterConfigError(`pmstack: cluster config ${this.#config!.name}: no "vars" line (truncated?)`);
  }
}

export function newNode(id: string, ip: string, port: number, cport: number, flags: string[]): ClusterNode {
  return {
    id,
    ip,
    port,
    cport,
    flags: new Set(flags),
    master: null,
    configEpoch: 0,
    pingSent: 0,
    pongReceived: 0,
    connected: false,
    slots: 0,
    ctime: 0,
    meet: false,
  };
}

const FLAG_ORDER = ["myself", "master", "slave", "fail?", "fail", "handshake", "noaddr", "nofailover"];

function flagsText(n: ClusterNode): string {
  const f = FLAG_ORDER.filter((x) => n.flags.has(x));
  return f.length ? f.join(",") : "noflags";
}

/**
 * Which keys each slot holds (CLUSTER COUNTKEYSINSLOT, GETKEYSINSLOT): the store tells it of
 * every key that appears or goes. Keys are kept as latin1 strings of their bytes.
 */
export class SlotKeys {
  #bySlot = new Map<number, Set<string>>();

  add(key: Uint8Array): void {
    const s = keyHashSlot(key);
    let set = this.#bySlot.get(s);
    if (!set) this.#bySlot.set(s, (set = new Set()));
    set.add(latin1(key));
  }

  remove(key: Uint8Array): void {
    const s = keyHashSlot(key);
    const set = this.#bySlot.get(s);
    if (!set) return;
    set.delete(latin1(key));
    if (set.size === 0) this.#bySlot.delete(s);
  }

  clear(): void {
    this.#bySlot.clear();
  }

  count(slot: number): number {
    return this.#bySlot.get(slot)?.size ?? 0;
  }

  /** Up to `max` keys of the slot, as bytes. */
  keys(slot: number, max: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    const set = this.#bySlot.get(slot);
    if (!set) return out;
    for (const k of set) {
      if (out.length >= max) break;
      out.push(Uint8Array.from(k, (ch) => ch.charCodeAt(0)));
    }
    return out;
  }
}

// createSimNet: a deterministic network simulator for tests of code written for Node's sockets.
// N hosts, each a pmstack Stack with a NetStack on it, hang off a virtual Ethernet switch; every
// ordered pair of hosts has its own seeded FaultyWire (latency, jitter, loss, duplication,
// reordering, bandwidth). The simulator owns the clock: run() turns every host's stack at
// virtual time t in a fixed order, lets user callbacks settle (one macrotask), repeats while
// anything moves, and then jumps t to the next deadline (a stack's timer, a wire's delivery, a
// virtual timer). Partitions cut pairs of hosts; crash() stops a host as kill -9 would (its
// pool keeps what was persisted, nothing else) and restart() boots it again on the same pool
// file. One pcap records every frame with virtual timestamps; with the same seed and the same
// user code, the pcap and the event trace are byte-identical. See docs/simulator.md.

import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setImmediate } from "node:timers";
import { formatEndpoint, inPrefix, parseIP, parseIPv6 } from "./addr.js";
import type { CoreInstance } from "./core.js";
import { JOURNAL_SUFFIX } from "./format.js";
import { FaultyWire, prng, zeroWireStats, type FaultConfig, type WireStats } from "./link/fault.js";
import { concat } from "./link/memory.js";
import { TimeQueue } from "./link/timeq.js";
import { NetStack, type NetStackOptions } from "./net.js";
import type { Driver, DriverTimers, TurnHooks } from "./paste.js";
import { PcapWriter } from "./pcap.js";
import { Stack, type StackConfig, type StackEvent } from "./stack.js";
import { R } from "./stack-abi.js";

/** One direction of a link between two hosts: FaultyWire's faults (host/link/fault.ts). */
export type SimLinkOptions = FaultConfig;

export interface SimNetOptions {
  /** Seeds every wire, every host's TCP secret (ISNs, ports): same seed, same run. */
  seed: number;
  /** Faults of every link (both directions of every pair of hosts) unless sim.link() says otherwise. */
  link?: SimLinkOptions;
  /** Records every frame a host sends (before the link's faults), with virtual timestamps. */
  pcap?: string;
  /**
   * Where the pool files of persistent hosts go (default: a fresh directory under /dev/shm, or
   * the OS temp dir, removed by close()). close() removes the pool files either way.
   */
  dir?: string;
  /** Buffers of each host's pool (default 4096 x 2 KiB). */
  buffers?: number;
  /** Called with every trace line as it is added. */
  onTrace?: (line: string) => void;
}

export interface SimHostOptions {
  /** IPv4 address in 198.18.0.0/15 (default 198.18.0.N, N the host's number from 1). */
  ip?: string;
  /** IPv6 address in 2001:2::/48 (default: none, IPv6 off). */
  ip6?: string;
  /**
   * Where the host's pool lives: "memory" (default: a crash loses everything), "file" (the file
   * adapter: a crash keeps exactly what was persisted) or "mmap" (the addon, strict mode: the
   * same).
   */
  persistence?: "memory" | "file" | "mmap";
  /** Buffers of the pool (default: the simulator's `buffers`). */
  buffers?: number;
  /** More stack options (rcvBuf, congestion, mslMs, keepaliveMs, ...); not mac/ip/ip6/secret. */
  stack?: Partial<Omit<StackConfig, "mac" | "ip" | "ip6" | "secret">> & { configure?: (core: CoreInstance) => void };
  /** NetStack options (default copyChunks: true, see docs/simulator.md). */
  net?: NetStackOptions;
  /** Runs at every boot (the first one, and each restart) with the host up: start its servers here. */
  boot?: (host: SimHost) => unknown;
}

export interface SimStats {
  /** Frames the hosts sent, and their bytes. */
  frames: number;
  bytes: number;
  /** Frames put into a host's receive ring. */
  delivered: number;
  /** The links' faults. */
  dropped: number;
  duplicated: number;
  reordered: number;
  corrupted: number;
  /** Frames a partition cut. */
  partitioned: number;
  /** Frames that arrived at a crashed host. */
  hostDown: number;
  /** Frames to a MAC no host has, or too short for an Ethernet header. */
  undeliverable: number;
  /** Frames a host's receive ring or pool had no room for. */
  rxDropped: number;
}

const FAULT_KEYS = [
  "drop",
  "duplicate",
  "reorder",
  "reorderMs",
  "corrupt",
  "delayMs",
  "jitterMs",
  "bandwidthBps",
  "mtu",
  "queueLimit",
] as const;
const HOST_KEYS = ["ip", "ip6", "persistence", "buffers", "stack", "net", "boot"];
const SIM_KEYS = ["seed", "link", "pcap", "dir", "buffers", "onTrace"];
/** Rounds at one instant before the simulator gives up on user code that never goes idle. */
const MAX_ROUNDS_PER_INSTANT = 100_000;
const V4_NET = parseIP("198.18.0.0").ipv4;
const V6_NET = parseIPv6("2001:2::");
const REASONS: Record<number, string> = Object.fromEntries(Object.entries(R).map(([k, v]) => [v, k]));

/** FNV-1a over the text, then a murmur3 finish: a well-mixed 32-bit seed from a label. */
function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

const macrotask = () => new Promise<void>((r) => setImmediate(r));

function checkKeys(what: string, o: object, allowed: readonly string[]): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k))
      throw new TypeError(`pmstack: unknown ${what} option ${JSON.stringify(k)} (known: ${allowed.join(", ")})`);
}

/** Validates link options the way the wire will take them; returns a copy. */
function linkOptions(what: string, o: SimLinkOptions | undefined): SimLinkOptions {
  if (o === undefined) return {};
  if (typeof o !== "object" || o === null) throw new TypeError(`pmstack: ${what} must be an object of link faults`);
  checkKeys(what, o, FAULT_KEYS);
  try {
    new FaultyWire(0, o);
  } catch (e) {
    throw new RangeError(`pmstack: ${what}: ${(e as Error).message.replace(/^pmstack: /, "")}`);
  }
  return { ...o };
}

/** A virtual timer (sim.setTimeout); `unref`/`ref` are accepted and mean nothing here. */
export class SimTimeout {
  /** @internal */ cancelled = false;
  constructor(
    /** @internal */ readonly at: number,
    /** @internal */ readonly fn: () => void,
    /** @internal */ readonly host: SimHost | null,
    /** @internal */ readonly boot: number,
  ) {}
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }
  hasRef(): boolean {
    return true;
  }
}

/** The driver of a simulated host's stack: the simulator turns it; its timers are virtual. */
class SimDriver implements Driver {
  hooks: TurnHooks | null = null;
  constructor(
    readonly stack: Stack,
    readonly timers: DriverTimers,
  ) {}
  attach(hooks: TurnHooks): void {
    if (this.hooks) throw new Error("pmstack: this driver already runs an app layer");
    this.hooks = hooks;
  }
  start(): void {}
  stop(): void {
    this.hooks = null;
  }
}

/** One ordered pair of hosts: the wire frames take now, and older ones still delivering. */
class Path {
  wires: FaultyWire[] = [];
  configs = 0;
  constructor(
    readonly label: string,
    readonly seed: number,
    config: SimLinkOptions,
  ) {
    this.configure(config);
  }
  configure(config: SimLinkOptions): void {
    this.wires.push(new FaultyWire(hash32(`${this.seed}/${this.label}/${this.configs++}`), config));
  }
  get current(): FaultyWire {
    return this.wires[this.wires.length - 1]!;
  }
  next(): number {
    let n = Infinity;
    for (const w of this.wires) n = Math.min(n, w.nextDeadline());
    return n;
  }
}

/** A simulated host: a name, addresses, a pool, and while it is up a Stack and a NetStack. */
export class SimHost {
  readonly sim: SimNet;
  readonly name: string;
  /** Its number from 0, in the order hosts were added: the order hosts turn in. */
  readonly index: number;
  readonly ip: string;
  readonly ip6: string | null;
  readonly mac: string;
  readonly persistence: "memory" | "file" | "mmap";
  /** The pool file of a persistent host (null for "memory"). */
  readonly poolPath: string | null;
  /** @internal */ _up = false;
  /** @internal */ _boots = 0;
  /** @internal */ _stack: Stack | null = null;
  /** @internal */ _net: NetStack | null = null;
  /** @internal */ _driver: SimDriver | null = null;
  /** @internal */ _next = Infinity;
  /** @internal */ _crashPending = false;
  /** @internal */ _macKey: number;
  /** @internal */ readonly _opts: SimHostOptions;
  /** @internal connection id -> its endpoints as traced, and bytes received */
  _conns = new Map<number, { text: string; rx: number }>();

  /** @internal */
  constructor(
    sim: SimNet,
    name: string,
    index: number,
    ip: string,
    ip6: string | null,
    poolPath: string | null,
    opts: SimHostOptions,
  ) {
    this.sim = sim;
    this.name = name;
    this.index = index;
    this.ip = ip;
    this.ip6 = ip6;
    const n = index + 1;
    this.mac = `02:00:00:00:${((n >> 8) & 255).toString(16).padStart(2, "0")}:${(n & 255).toString(16).padStart(2, "0")}`;
    this._macKey = macKey(Uint8Array.from(this.mac.split(":").map((h) => parseInt(h, 16))), 0);
    this.persistence = opts.persistence ?? "memory";
    this.poolPath = poolPath;
    this._opts = opts;
  }

  /** Whether the host runs (false from crash() until restart()). */
  get up(): boolean {
    return this._up;
  }

  /** Boots so far: 1 after the first, one more per restart. */
  get boots(): number {
    return this._boots;
  }

  /** The Node-idiom layer of the running stack (createServer, connect). After a crash: the dead one, closed. */
  get net(): NetStack {
    if (!this._net) throw new Error(`pmstack: sim host ${this.name} has not booted`);
    return this._net;
  }

  /** The running stack (after a crash: the dead one, its pool closed). */
  get stack(): Stack {
    if (!this._stack) throw new Error(`pmstack: sim host ${this.name} has not booted`);
    return this._stack;
  }

  /** The host's pool (reopened from its file at each restart of a persistent host). */
  get pool(): Stack["pool"] {
    return this.stack.pool;
  }

  /** A virtual timer of this host: cancelled by its crash (the process is gone), as setTimeout. */
  setTimeout<A extends unknown[]>(fn: (...args: A) => void, ms?: number, ...args: A): SimTimeout {
    return this.sim._timer(fn, ms, args, this);
  }

  clearTimeout(t: SimTimeout | null | undefined): void {
    this.sim.clearTimeout(t);
  }

  /** Resolves after `ms` of virtual time; never, if the host crashes first. */
  sleep(ms: number): Promise<void> {
    return new Promise((r) => this.setTimeout(r, ms));
  }

  /** Adds a line to the simulator's trace, under this host's name. */
  note(message: string): void {
    this.sim._trace(this.name, message);
  }
}

/** The Ethernet address at `at` as a number (48 bits fit a double exactly). */
function macKey(b: Uint8Array, at: number): number {
  return (
    (b[at]! * 0x10000 + b[at + 1]! * 0x100 + b[at + 2]!) * 0x1000000 +
    b[at + 3]! * 0x10000 +
    b[at + 4]! * 0x100 +
    b[at + 5]!
  );
}

/** A simulated network: see createSimNet. */
export class SimNet {
  readonly seed: number;
  /** The event trace: one line per event, "<virtual ms> <host> <event>". */
  readonly trace: string[] = [];
  readonly hosts: readonly SimHost[];
  #hosts: SimHost[] = [];
  #byName = new Map<string, SimHost>();
  #byMac = new Map<number, SimHost>();
  #link: SimLinkOptions;
  /** Per-pair overrides, by "i|j" with i < j. */
  #pairLink = new Map<string, SimLinkOptions>();
  /** paths[src][dst], made at a pair's first frame. */
  #paths: (Path | undefined)[][] = [];
  #allWires: FaultyWire[] = [];
  /** Cut directions "i>j". */
  #cuts = new Set<string>();
  #timers = new TimeQueue<SimTimeout>();
  #now = 0;
  #pending = false;
  #running = false;
  #restarting = 0;
  #inTurn: SimHost | null = null;
  #failure: { error: unknown } | null = null;
  #pcap: PcapWriter | null;
  #dir: string;
  #ownDir: boolean;
  #buffers: number;
  #onTrace: ((line: string) => void) | null;
  #closed = false;
  #stats = { frames: 0, bytes: 0, delivered: 0, partitioned: 0, hostDown: 0, undeliverable: 0, rxDropped: 0 };

  constructor(opts: SimNetOptions) {
    if (typeof opts !== "object" || opts === null)
      throw new TypeError("pmstack: createSimNet needs options ({ seed })");
    checkKeys("createSimNet", opts, SIM_KEYS);
    const seed = opts.seed;
    if (typeof seed !== "number" || !Number.isSafeInteger(seed) || seed < 0)
      throw new RangeError(`pmstack: seed must be an integer >= 0, got ${String(seed)}`);
    this.seed = seed;
    this.#link = linkOptions("link", opts.link);
    const buffers = opts.buffers ?? 4096;
    if (!Number.isInteger(buffers) || buffers < 256)
      throw new RangeError(`pmstack: buffers must be an integer >= 256, got ${String(buffers)}`);
    this.#buffers = buffers;
    if (opts.onTrace !== undefined && typeof opts.onTrace !== "function")
      throw new TypeError("pmstack: onTrace must be a function");
    this.#onTrace = opts.onTrace ?? null;
    if (opts.dir !== undefined) {
      if (typeof opts.dir !== "string" || !existsSync(opts.dir))
        throw new TypeError(`pmstack: dir must be an existing directory, got ${String(opts.dir)}`);
      this.#dir = opts.dir;
      this.#ownDir = false;
    } else {
      this.#dir = "";
      this.#ownDir = true;
    }
    this.#pcap = opts.pcap !== undefined ? new PcapWriter(opts.pcap, { epochMs: 0 }) : null;
    this.hosts = this.#hosts;
  }

  /** Virtual time in ms since the simulation began. */
  now(): number {
    return this.#now;
  }

  /** Counters of the switch and the links so far. */
  stats(): SimStats {
    const w: WireStats = zeroWireStats();
    for (const x of this.#allWires) for (const k of Object.keys(w) as (keyof WireStats)[]) w[k] += x.stats[k];
    const s = this.#stats;
    return {
      frames: s.frames,
      bytes: s.bytes,
      delivered: s.delivered,
      dropped: w.dropped + w.oversize + w.queueDrops,
      duplicated: w.duplicated,
      reordered: w.reordered,
      corrupted: w.corrupted,
      partitioned: s.partitioned,
      hostDown: s.hostDown,
      undeliverable: s.undeliverable,
      rxDropped: s.rxDropped,
    };
  }

  // ---- hosts -----------------------------------------------------------------------------------

  /** Adds a host and boots it (its `boot` runs now). Names are unique; hosts turn in the order added. */
  host(name: string, opts: SimHostOptions = {}): SimHost {
    this.#live();
    if (typeof name !== "string" || !/^[A-Za-z0-9_.-]{1,64}$/.test(name))
      throw new TypeError(
        `pmstack: a sim host name is 1-64 letters, digits, '_', '.' or '-', got ${JSON.stringify(name)}`,
      );
    if (this.#byName.has(name)) throw new Error(`pmstack: there is a sim host ${name} already`);
    if (typeof opts !== "object" || opts === null) throw new TypeError("pmstack: sim host options must be an object");
    checkKeys("sim host", opts, HOST_KEYS);
    const index = this.#hosts.length;
    if (index >= 65535) throw new RangeError("pmstack: at most 65535 sim hosts");
    const ip = opts.ip ?? `198.18.${(index + 1) >> 8}.${(index + 1) & 255}`;
    let v4: number;
    try {
      const p = parseIP(ip);
      if (p.family !== 4) throw new Error();
      v4 = p.ipv4;
    } catch {
      throw new RangeError(`pmstack: sim host ip must be an IPv4 address in 198.18.0.0/15, got ${String(ip)}`);
    }
    if (v4 >>> 17 !== V4_NET >>> 17 || (v4 & 0x1ffff) === 0 || (v4 & 0x1ffff) === 0x1ffff)
      throw new RangeError(`pmstack: sim host ip must be a host address in 198.18.0.0/15, got ${ip}`);
    if (this.#hosts.some((h) => h.ip === ip)) throw new RangeError(`pmstack: sim host ip ${ip} is taken`);
    let ip6: string | null = null;
    if (opts.ip6 !== undefined) {
      let b: Uint8Array;
      try {
        b = parseIPv6(String(opts.ip6));
      } catch {
        throw new RangeError(`pmstack: sim host ip6 must be an IPv6 address in 2001:2::/48, got ${String(opts.ip6)}`);
      }
      if (!inPrefix(b, V6_NET, 48) || b.subarray(6).every((x) => x === 0))
        throw new RangeError(`pmstack: sim host ip6 must be a host address in 2001:2::/48, got ${opts.ip6}`);
      ip6 = opts.ip6;
      if (this.#hosts.some((h) => h.ip6 !== null && parseIPv6(h.ip6).every((x, i) => x === b[i])))
        throw new RangeError(`pmstack: sim host ip6 ${ip6} is taken`);
    }
    const persistence = opts.persistence ?? "memory";
    if (!["memory", "file", "mmap"].includes(persistence))
      throw new RangeError(
        `pmstack: sim host persistence must be "memory", "file" or "mmap", got ${String(persistence)}`,
      );
    if (opts.buffers !== undefined && (!Number.isInteger(opts.buffers) || opts.buffers < 256))
      throw new RangeError(`pmstack: sim host buffers must be an integer >= 256, got ${String(opts.buffers)}`);
    if (opts.boot !== undefined && typeof opts.boot !== "function")
      throw new TypeError("pmstack: sim host boot must be a function");
    for (const k of ["mac", "ip", "ip6", "secret", "pool"])
      if (opts.stack && k in opts.stack)
        throw new TypeError(
          `pmstack: sim host stack option ${k} is the simulator's (use the host's ip/ip6/persistence)`,
        );
    const poolPath = persistence === "memory" ? null : join(this.#poolDir(), `${name}.pm`);
    if (poolPath && existsSync(poolPath))
      throw new Error(
        `pmstack: ${poolPath} exists: a simulation starts from fresh pools (remove it, or use another dir)`,
      );
    const h = new SimHost(this, name, index, ip, ip6, poolPath, opts);
    this.#hosts.push(h);
    this.#byName.set(name, h);
    this.#byMac.set(h._macKey, h);
    this.#paths.push([]);
    try {
      this.#boot(h, true);
    } catch (e) {
      // not added after all: a stack that could not start (or a boot that threw) leaves nothing
      if (h.up) {
        h._up = false;
        h._net!._abandon();
        h._stack!.shutdown();
      }
      this.#hosts.pop();
      this.#byName.delete(name);
      this.#byMac.delete(h._macKey);
      this.#paths.pop();
      if (poolPath) {
        rmSync(poolPath, { force: true });
        rmSync(poolPath + JOURNAL_SUFFIX, { force: true });
      }
      throw e;
    }
    return h;
  }

  #poolDir(): string {
    if (!this.#dir) {
      const base = existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
      this.#dir = mkdtempSync(join(base, "pmstack-sim-"));
    }
    return this.#dir;
  }

  #boot(h: SimHost, first: boolean): void {
    const o = h._opts;
    const buffers = o.buffers ?? this.#buffers;
    const secret = new Uint8Array(32);
    const r = prng(hash32(`${this.seed}/secret/${h.name}/${h.boots}`));
    const dv = new DataView(secret.buffer);
    for (let i = 0; i < 8; i++) dv.setUint32(i * 4, Math.floor(r() * 0x100000000));
    const pool = h.poolPath
      ? h.persistence === "mmap"
        ? { path: h.poolPath, buffers, persistence: "mmap" as const, mode: "strict" as const }
        : { path: h.poolPath, buffers, persistence: "file" as const }
      : { buffers };
    const stack = Stack.create({
      ...o.stack,
      mac: h.mac,
      ip: `${h.ip}/15`,
      ip6: h.ip6 ? `${h.ip6}/48` : undefined,
      secret,
      pool,
    });
    h._boots++;
    const boot = h.boots;
    const timers: DriverTimers = {
      setTimeout: (fn, ms) => this._timer(fn, ms, [], h, boot),
      clearTimeout: (t) => this.clearTimeout(t as SimTimeout),
    };
    const driver = new SimDriver(stack, timers);
    stack.onCommand = () => {
      this.#pending = true;
    };
    h._stack = stack;
    h._driver = driver;
    h._conns.clear();
    h._next = this.#now;
    h._up = true;
    this.#pending = true;
    try {
      h._net = new NetStack(driver, { copyChunks: true, ...o.net });
    } catch (e) {
      h._up = false;
      stack.shutdown();
      throw e;
    }
    this._trace(h.name, `${first ? "up" : "restart"} ${h.ip}${h.ip6 ? ` ${h.ip6}` : ""} ${h.mac} boot ${boot}`);
    if (!o.boot) return;
    const r2 = o.boot(h);
    if (r2 && typeof (r2 as PromiseLike<unknown>).then === "function")
      (r2 as PromiseLike<unknown>).then(undefined, (e: unknown) => {
        if (h.boots === boot && h.up) this.#fail(e);
      });
  }

  /**
   * Stops a host abruptly, as kill -9 would: nothing more leaves it (no FIN, no RST; frames not
   * yet on the wire are lost), its sockets are destroyed without an error ('close' only), its
   * timers are cancelled, and its pool is closed without another persist: a "file" or "mmap"
   * pool keeps exactly what was persisted. Frames arriving for it are lost.
   */
  crash(host: SimHost | string): void {
    this.#live();
    const h = this.#host(host);
    if (!h.up || h._crashPending) throw new Error(`pmstack: sim host ${h.name} is down already`);
    if (this.#inTurn === h)
      h._crashPending = true; // at the end of its turn, before its frames leave
    else this.#crashNow(h);
  }

  #crashNow(h: SimHost): void {
    h._crashPending = false;
    h._up = false;
    h._next = Infinity;
    this._trace(h.name, "crash");
    const stack = h._stack!;
    stack.onCommand = null;
    try {
      h._net!._abandon();
    } finally {
      stack.shutdown();
    }
  }

  /**
   * Boots a crashed host again with its name, addresses and pool file (reopened: what was
   * persisted is there; a "memory" pool starts empty), a fresh stack and NetStack, and runs its
   * `boot`. Resolves once it is up; the crash's 'close' events have run before (on the dead
   * host).
   */
  async restart(host: SimHost | string): Promise<SimHost> {
    this.#live();
    const h = this.#host(host);
    if (h.up || h._crashPending) throw new Error(`pmstack: sim host ${h.name} is up: crash() it before restart()`);
    this.#restarting++;
    try {
      await macrotask();
      this.#live();
      if (h.up) throw new Error(`pmstack: sim host ${h.name} was restarted twice at once`);
      this.#boot(h, false);
    } finally {
      this.#restarting--;
    }
    return h;
  }

  #host(x: SimHost | string): SimHost {
    const h = typeof x === "string" ? this.#byName.get(x) : x;
    if (!h || h.sim !== this || this.#byName.get(h.name) !== h)
      throw new TypeError(
        `pmstack: not a host of this simulation: ${typeof x === "string" ? x : String(x?.name ?? x)}`,
      );
    return h;
  }

  // ---- links and partitions --------------------------------------------------------------------

  /**
   * Sets the faults between two hosts (both directions), over the simulator's `link` defaults.
   * Frames already on the wire arrive as they were sent; the next ones take the new settings.
   */
  link(a: SimHost | string, b: SimHost | string, faults: SimLinkOptions): void {
    this.#live();
    const x = this.#host(a);
    const y = this.#host(b);
    if (x === y) throw new RangeError(`pmstack: a link joins two different hosts (${x.name} twice)`);
    const f = linkOptions("link", faults);
    const key = x.index < y.index ? `${x.index}|${y.index}` : `${y.index}|${x.index}`;
    this.#pairLink.set(key, f);
    const cfg = { ...this.#link, ...f };
    for (const [s, d] of [
      [x, y],
      [y, x],
    ] as const) {
      const p = this.#paths[s.index]![d.index];
      if (p) {
        p.configure(cfg);
        this.#allWires.push(p.current);
      }
    }
    this._trace("sim", `link ${x.name} ${y.name} ${JSON.stringify(f)}`);
  }

  /**
   * Cuts every host of each group off from every host of the other groups (both directions):
   * frames between them are lost, those on the wire too. Hosts in no group keep their links.
   * Partitions add up until repair().
   */
  partition(...groups: (SimHost | string | readonly (SimHost | string)[])[]): void {
    this.#live();
    const gs = this.#groups("partition", groups);
    for (const k of crossings(gs)) this.#cuts.add(k);
    this._trace("sim", `partition ${gs.map((g) => g.map((h) => h.name).join(",")).join(" | ")}`);
  }

  /** Heals the partitions between the given groups, or every partition with no arguments. */
  repair(...groups: (SimHost | string | readonly (SimHost | string)[])[]): void {
    this.#live();
    if (groups.length === 0) {
      this.#cuts.clear();
      this._trace("sim", "repair");
      return;
    }
    const gs = this.#groups("repair", groups);
    for (const k of crossings(gs)) this.#cuts.delete(k);
    this._trace("sim", `repair ${gs.map((g) => g.map((h) => h.name).join(",")).join(" | ")}`);
  }

  #groups(what: string, groups: (SimHost | string | readonly (SimHost | string)[])[]): SimHost[][] {
    if (groups.length < 2) throw new RangeError(`pmstack: ${what} takes two or more groups of hosts`);
    const gs = groups.map((g) => (Array.isArray(g) ? g : [g]).map((x: SimHost | string) => this.#host(x)));
    const seen = new Set<SimHost>();
    for (const g of gs) {
      if (g.length === 0) throw new RangeError(`pmstack: ${what}: a group is empty`);
      for (const h of g) {
        if (seen.has(h)) throw new RangeError(`pmstack: ${what}: host ${h.name} is in two groups`);
        seen.add(h);
      }
    }
    return gs;
  }

  // ---- virtual timers and the trace ------------------------------------------------------------

  /** A virtual timer, as setTimeout (at least 1 ms, as Node's). Not tied to a host: see host.setTimeout. */
  setTimeout<A extends unknown[]>(fn: (...args: A) => void, ms?: number, ...args: A): SimTimeout {
    return this._timer(fn, ms, args, null);
  }

  clearTimeout(t: SimTimeout | null | undefined): void {
    if (t instanceof SimTimeout) t.cancelled = true;
  }

  /** Resolves after `ms` of virtual time (while the simulation runs). */
  sleep(ms: number): Promise<void> {
    return new Promise((r) => this.setTimeout(r, ms));
  }

  /** @internal */
  _timer<A extends unknown[]>(
    fn: (...args: A) => void,
    ms: number | undefined,
    args: A,
    host: SimHost | null,
    boot = host?.boots ?? 0,
  ): SimTimeout {
    if (typeof fn !== "function") throw new TypeError("pmstack: setTimeout needs a function");
    let d = Number(ms ?? 1);
    if (!(d >= 1 && d <= 0x7fffffff)) d = 1; // as Node's timers
    const t = new SimTimeout(this.#now + d, args.length ? () => fn(...args) : (fn as () => void), host, boot);
    if (this.#closed)
      t.cancelled = true; // code still running after close() (a socket's 'close'): nothing fires
    else this.#timers.push(t);
    return t;
  }

  /** Adds a line to the trace. */
  note(message: string): void {
    this._trace("sim", message);
  }

  /** @internal */
  _trace(who: string, message: string): void {
    const line = `${this.#now.toFixed(3).padStart(12)} ${who} ${message}`;
    this.trace.push(line);
    this.#onTrace?.(line);
  }

  #fail(e: unknown): void {
    if (!this.#failure) this.#failure = { error: e };
  }

  // ---- running ---------------------------------------------------------------------------------

  /** Runs `ms` of virtual time (every event due by now() + ms). */
  async run(ms: number): Promise<void> {
    if (typeof ms !== "number" || !(ms >= 0) || !Number.isFinite(ms))
      throw new RangeError(`pmstack: run() takes a number of ms >= 0, got ${String(ms)}`);
    await this.#drive(this.#now + ms, null);
  }

  /**
   * Runs until `done()` holds (checked after every round) or `limitMs` of virtual time went by.
   * Returns whether it holds.
   */
  async runUntil(done: () => boolean, limitMs = 60_000): Promise<boolean> {
    if (typeof done !== "function") throw new TypeError("pmstack: runUntil() takes a function");
    if (typeof limitMs !== "number" || !(limitMs >= 0) || !Number.isFinite(limitMs))
      throw new RangeError(`pmstack: runUntil() limitMs must be a number >= 0, got ${String(limitMs)}`);
    return this.#drive(this.#now + limitMs, done);
  }

  /**
   * Runs until `promise` settles, and returns its value (or throws its error). Throws an Error
   * with code ETIMEDOUT if it has not settled within `limitMs` of virtual time.
   */
  async wait<T>(promise: PromiseLike<T>, limitMs = 60_000): Promise<T> {
    let state: { ok: true; value: T } | { ok: false; error: unknown } | null = null;
    Promise.resolve(promise).then(
      (value) => (state = { ok: true, value }),
      (error: unknown) => (state = { ok: false, error }),
    );
    const start = this.#now;
    await this.runUntil(() => state !== null, limitMs);
    const s = state as { ok: true; value: T } | { ok: false; error: unknown } | null;
    if (!s)
      throw Object.assign(new Error(`pmstack: sim.wait: not settled after ${this.#now - start} ms of virtual time`), {
        code: "ETIMEDOUT",
      });
    if (!s.ok) throw s.error;
    return s.value;
  }

  async #drive(end: number, done: (() => boolean) | null): Promise<boolean> {
    this.#live();
    if (this.#running)
      throw new Error("pmstack: the simulation is running already (one run(), runUntil() or wait() at a time)");
    this.#running = true;
    try {
      let rounds = 0;
      for (;;) {
        const t = this.#now;
        this.#pending = false;
        let busy = this.#fireTimers(t);
        busy = this.#round(t) || busy;
        await macrotask(); // user callbacks, nextTicks, promises and stream internals settle
        this.#throwFailure();
        if (this.#closed) return false;
        if (done?.()) return true;
        // something moved, or is due now (a timer, a host not turned since it booted): again at t
        const idle = !busy && !this.#pending && this.#restarting === 0;
        const next = idle ? this.#nextDeadline() : t;
        if (next <= t) {
          if (++rounds > MAX_ROUNDS_PER_INSTANT)
            throw new Error(
              `pmstack: the simulation did not go idle at ${t} ms after ${MAX_ROUNDS_PER_INSTANT} rounds ` +
                "(user code writing or reconnecting without end at one instant?)",
            );
          continue;
        }
        rounds = 0;
        if (next > end) {
          this.#now = Math.max(t, end);
          return done ? done() : false;
        }
        this.#now = next;
      }
    } finally {
      this.#running = false;
    }
  }

  #throwFailure(): void {
    const f = this.#failure;
    if (!f) return;
    this.#failure = null;
    throw f.error;
  }

  #nextDeadline(): number {
    let next = this.#timers.next();
    for (const h of this.#hosts) if (h.up) next = Math.min(next, h._next);
    for (const row of this.#paths) for (const p of row) if (p) next = Math.min(next, p.next());
    return next;
  }

  /** Due virtual timers, in order. Returns whether any ran. */
  #fireTimers(t: number): boolean {
    let fired = false;
    for (let x = this.#timers.popDue(t); x; x = this.#timers.popDue(t)) {
      if (x.cancelled) continue;
      if (x.host && !(x.host.up && x.host.boots === x.boot)) continue;
      fired = true;
      try {
        x.fn();
      } catch (e) {
        this.#fail(e);
      }
    }
    return fired;
  }

  /** One round at `t`: due frames into the hosts, then each host's turn in order. Returns whether anything moved. */
  #round(t: number): boolean {
    let busy = this.#deliver(t) > 0;
    for (const h of this.#hosts) {
      if (!h.up) continue;
      if (this.#turn(h, t)) busy = true;
    }
    return busy;
  }

  #turn(h: SimHost, t: number): boolean {
    const s = h._stack!;
    const d = h._driver!;
    const onEvent = (ev: StackEvent) => this.#event(h, d, ev);
    let events = 0;
    let next: number;
    this.#inTurn = h;
    try {
      next = s.poll(t);
      events += s.drainEvents(onEvent);
      next = s.poll(t);
      events += s.drainEvents(onEvent);
      d.hooks?.onTurnEnd(t);
      next = s.poll(t);
      events += s.drainEvents(onEvent);
    } finally {
      this.#inTurn = null;
      if (h._crashPending) this.#crashNow(h);
    }
    if (!h.up) return true;
    h._next = next;
    const sent = this.#transmit(h, t);
    return events + sent > 0 || next <= t;
  }

  /** A host's event: into the trace if it opens or ends something, then to its NetStack. */
  #event(h: SimHost, d: SimDriver, ev: StackEvent): void {
    const st = h._stack!;
    switch (ev.type) {
      case "DATA": {
        const c = h._conns.get(ev.conn);
        if (c) c.rx += ev.len;
        break;
      }
      case "LISTENING":
        this._trace(h.name, `listen ${ev.off}`);
        break;
      case "ACCEPTED":
      case "CONNECTED": {
        const e = st.endpoints(ev.conn);
        const text = e
          ? `${formatEndpoint(e.localAddress, e.localPort)} ${ev.type === "ACCEPTED" ? "<" : ">"} ${formatEndpoint(e.remoteAddress, e.remotePort)}`
          : `conn ${ev.conn}`;
        h._conns.set(ev.conn, { text, rx: 0 });
        this._trace(h.name, `${ev.type === "ACCEPTED" ? "accept" : "connect"} ${text}`);
        break;
      }
      case "PEER_CLOSED": {
        const c = h._conns.get(ev.conn);
        if (c) this._trace(h.name, `fin ${c.text} rx ${c.rx}`);
        break;
      }
      case "CLOSED":
      case "RESET": {
        const c = h._conns.get(ev.conn);
        h._conns.delete(ev.conn);
        const what = ev.type === "CLOSED" ? "closed" : `reset (${REASONS[ev.aux] ?? ev.aux})`;
        this._trace(h.name, c ? `${what} ${c.text} rx ${c.rx}` : `${what} connect #${ev.buf}`);
        break;
      }
      case "ERROR":
        this._trace(h.name, `error ${REASONS[ev.aux] ?? ev.aux} port ${ev.off}`);
        break;
    }
    if (d.hooks) d.hooks.onEvent(ev);
    else if ((ev.type === "DATA" || ev.type === "UDP") && !st.pool.closed) st.pool.free(ev.buf); // no app layer any more
  }

  /** A host's TX ring onto the wires: by destination MAC, broadcast and multicast to every other host. */
  #transmit(src: SimHost, t: number): number {
    return src._stack!.port.drainTx((segs) => {
      const frame = segs.length === 1 ? segs[0]! : concat(segs);
      this.#stats.frames++;
      this.#stats.bytes += frame.length;
      this.#pcap?.write(frame, t);
      if (frame.length < 14) {
        this.#stats.undeliverable++;
        return;
      }
      if (frame[0]! & 1) {
        for (const dst of this.#hosts) if (dst !== src) this.#send(src, dst, frame, t);
        return;
      }
      const dst = this.#byMac.get(macKey(frame, 0));
      if (!dst || dst === src) this.#stats.undeliverable++;
      else this.#send(src, dst, frame, t);
    });
  }

  #send(src: SimHost, dst: SimHost, frame: Uint8Array, t: number): void {
    if (this.#cuts.has(`${src.index}>${dst.index}`)) {
      this.#stats.partitioned++;
      return;
    }
    let p = this.#paths[src.index]![dst.index];
    if (!p) {
      const key = src.index < dst.index ? `${src.index}|${dst.index}` : `${dst.index}|${src.index}`;
      p = new Path(`${src.name}>${dst.name}`, this.seed, { ...this.#link, ...this.#pairLink.get(key) });
      this.#paths[src.index]![dst.index] = p;
      this.#allWires.push(p.current);
    }
    p.current.send(frame, t);
  }

  /** Frames due by `t` into their hosts' RX rings: by destination, then source, in host order. */
  #deliver(t: number): number {
    let n = 0;
    const hosts = this.#hosts;
    for (const dst of hosts)
      for (const src of hosts) {
        const p = this.#paths[src.index]![dst.index];
        if (!p || p.next() > t) continue;
        for (const w of p.wires)
          for (const f of w.receive(t)) {
            if (!dst.up) this.#stats.hostDown++;
            else if (this.#cuts.has(`${src.index}>${dst.index}`)) this.#stats.partitioned++;
            else if (dst._stack!.port.deliver(f)) {
              this.#stats.delivered++;
              n++;
            } else this.#stats.rxDropped++;
          }
        // wires of an earlier configuration go once they are empty
        if (p.wires.length > 1) p.wires = p.wires.filter((w, i) => i === p.wires.length - 1 || w.inFlight > 0);
      }
    return n;
  }

  // ---- the end ---------------------------------------------------------------------------------

  /**
   * Stops every host, closes their pools and the pcap, and removes the pool files (and the
   * directory the simulator made). Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    let first: unknown = null;
    const step = (f: () => void) => {
      try {
        f();
      } catch (e) {
        first ??= e;
      }
    };
    for (const h of this.#hosts) {
      if (h.up) {
        h._up = false;
        step(() => h._net?._abandon());
        step(() => h._stack?.shutdown());
      }
      if (h.poolPath) {
        const path = h.poolPath;
        step(() => rmSync(path, { force: true }));
        step(() => rmSync(path + JOURNAL_SUFFIX, { force: true }));
      }
    }
    this.#timers.clear();
    step(() => this.#pcap?.close());
    if (this.#ownDir && this.#dir) step(() => rmSync(this.#dir, { recursive: true, force: true }));
    if (first) throw first;
  }

  #live(): void {
    if (this.#closed) throw new Error("pmstack: the simulation is closed");
  }
}

/** The directed links between hosts of different groups, as the cut set keys them ("from>to"). */
function crossings(gs: readonly SimHost[][]): string[] {
  const out: string[] = [];
  for (let i = 0; i < gs.length; i++)
    for (let j = i + 1; j < gs.length; j++)
      for (const x of gs[i]!) for (const y of gs[j]!) out.push(`${x.index}>${y.index}`, `${y.index}>${x.index}`);
  return out;
}

/**
 * A deterministic simulated network of pmstack hosts on one virtual switch, with virtual time:
 *
 *   const sim = createSimNet({ seed: 42, link: { delayMs: 5, drop: 0.01 }, pcap: "sim.pcap" });
 *   const a = sim.host("a"), b = sim.host("b", { persistence: "file" });
 *   b.net.createServer((s) => s.pipe(s)).listen(7);
 *   const c = a.net.connect({ host: b.ip, port: 7 });
 *   await sim.run(1000);
 *
 * See docs/simulator.md.
 */
export function createSimNet(opts: SimNetOptions): SimNet {
  return new SimNet(opts);
}

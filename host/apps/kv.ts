// The durable key-value store (PASTE's second demonstration): a Redis protocol (RESP2) server
// on the connection layer (conn.ts). SET keeps the value in the PM buffers it arrived in, of any
// size up to Redis's 512 MB proto-max-bulk-len (bounded by free pool space), logs their names
// under the key (PmLog) and answers once the record is durable; GET sends the value straight
// from PM by name, a large one streamed under TCP backpressure. The command table and each
// command's semantics are in kv/commands.ts, the record format and expiry in kv/store.ts; this
// file turns RESP input into commands and runs them. Plug it into a NicLoop:
// { onEvent: app.onEvent, onTurnEnd: app.onTurnEnd }. docs/apps.md describes the semantics.

import { BUF_SIZE } from "../abi.js";
import { PmstackError, PoolExhaustedError } from "../errors.js";
import { LOG_MAX_KEY, LogFullError, type PmLog } from "../log.js";
import { ObjectCursor } from "../object.js";
import type { Stack, StackEvent } from "../stack.js";
import { Conn, ConnLayer, type Part } from "./conn.js";
import {
  COMMANDS,
  KV_COMMANDS,
  KV_MAX_BULK,
  parseI64,
  getReply,
  type Arg,
  type CmdSpec,
  type Kv,
  type KvClient,
} from "./kv/commands.js";
import { errorLine } from "./kv/reply.js";
import { KV_SMALL, KV_TRAILER, KV_VALUE_ITEMS, KvStore } from "./kv/store.js";
import { keyHashSlot, SlotKeys, type ClusterState } from "./kv/cluster.js";
import { ClusterBus } from "./kv/bus.js";
import { Migrator } from "./kv/migrate.js";
import { KvShards, SHARD_REFUSED, type ShardTransport } from "./kv/shard.js";
import { latin1 } from "./kv/store.js";
import { RespParser, type RespHandler } from "./resp.js";
import type { TlsTerminator } from "./tls.js";
import { FailureLimiter, NetList, safeEqual, type AuthLimitOptions } from "./auth.js";

export { KV_COMMANDS, KV_MAX_BULK, parseI64, KV_SMALL, KV_TRAILER, KV_VALUE_ITEMS };
/** Value pieces at least this long go out by name (no copy); shorter ones are copied. */
export { MIN_BY_NAME as KV_MIN_BY_NAME } from "./conn.js";

export interface KvOptions {
  /** Wall clock for expiry, unix ms (default Date.now). Expiry times are stored as unix ms. */
  now?: () => number;
  /** Reported by INFO (default "pmstack"). */
  serverName?: string;
  /** Free buffers a write may not take (default max(1024, 1/8 of the pool), at most half). */
  reserveBuffers?: number;
  /** Abort a connection whose command holds buffers after this long without data (default 30 s). */
  idleTimeoutMs?: number;
  /** TLS on `port` too, as Redis's tls-port (tls.ts); the plain `port` may then be 0 (none). */
  tls?: { port: number; terminator: TlsTerminator };
  /**
   * The `default` user's password (Redis's `requirepass`): a client runs nothing but AUTH,
   * HELLO and QUIT until it authenticates. Default: none (every client is the default user).
   */
  requirepass?: string | Uint8Array | null;
  /**
   * Protected mode (Redis's `protected-mode yes`): with no password set, only peers in these
   * networks are served; any other gets -DENIED and is closed. Default: off (null).
   */
  protectedNets?: NetList | null;
  /** How failed AUTHs are slowed down (auth.ts FailureLimiter). */
  authLimits?: AuthLimitOptions;
  /**
   * Cluster mode (Redis Cluster's slots and redirects, docs/cluster.md): this node's view of
   * the cluster. Keys of slots other nodes serve answer -MOVED; keys of two slots, -CROSSSLOT.
   */
  cluster?: ClusterState | null;
  /** Cluster mode: Redis's cluster-node-timeout for the bus (default 15000 ms). */
  clusterNodeTimeoutMs?: number;
  /**
   * The store sharded over workers (kv/shard.ts, docs/scaling.md): this app owns the keys of
   * its index and runs the others' commands on the worker that owns them. Not with `cluster`.
   */
  shards?: ShardTransport | null;
}

/** Redis's replies of authentication (7.0). */
export const KV_NOAUTH = "NOAUTH Authentication required.";
export const KV_WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled.";
export const KV_DENIED =
  "DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. " +
  "In this mode connections are only accepted from the kernel side of pmstack's own link (--peer-ip, --peer-ip6) " +
  "and the --allow-net networks. If you want to connect from other computers you may adopt one of the following " +
  "solutions: 1) Set up an authentication password for the default user: restart with --requirepass-file PATH. " +
  "2) Allow the client's network: restart with --allow-net CIDR. " +
  "3) If you started the server just for testing, restart it with the '--protected-mode no' option. " +
  "NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.";
/** Replies a connection may have waiting behind a held (failed) AUTH answer before it is closed. */
export const KV_MAX_HELD_REPLIES = 64;

export interface KvStats {
  connections: number;
  /** Connections reset for a stalled or trickled command (ConnLayerOptions.idleTimeoutMs). */
  idleAborts: number;
  commands: number;
  reads: number;
  writes: number;
  hits: number;
  misses: number;
  expired: number;
  /** Error replies (Redis's total_error_replies). */
  errors: number;
  /** Writes refused with -OOM because the pool's free buffers were down to the reserve. */
  full: number;
  commits: number;
  /** Sends the stack refused (send queue full), resent in order after WRITABLE. */
  refusedSends: number;
  /** Times replies waited for room in the command ring (APP-IN) until a later turn. */
  ringWaits: number;
  /** Value bytes sent from PM by name (no copy), and bytes copied into replies. */
  bytesByName: number;
  bytesCopied: number;
  /** GETs read where they lay in the receive buffer, ahead of the RESP parser (a pipeline's hot path). */
  inPlaceGets: number;
  /** Successful and failed AUTHs (HELLO ... AUTH too; failed: Redis's acl_access_denied_auth). */
  authOk: number;
  authFailed: number;
  /** AUTHs refused unchecked: they came while the connection's last failure was still held. */
  authThrottled: number;
  /** Commands refused with -NOAUTH. */
  noauth: number;
  /** Connections refused by protected mode (-DENIED). */
  denied: number;
  /** Connections closed for piling up commands behind a held AUTH failure. */
  authDropped: number;
  /** Commands answered -MOVED: their keys are of a slot another node serves (cluster mode). */
  moved: number;
  /** Commands answered -ASK: their keys have moved on to the node this one migrates the slot to. */
  asked: number;
  /** Keys MIGRATE sent to other nodes (and the target acknowledged). */
  migrated: number;
  /** Sharded over workers: commands (or pieces) of this worker's clients run by another worker. */
  forwarded: number;
  /** Sharded over workers: commands this worker ran for another worker's clients. */
  served: number;
  /** Sharded over workers: commands split over several workers (DEL, EXISTS, MGET, MSET). */
  split: number;
  /** Sharded over workers: batches of requests and replies sent to and received from other workers. */
  batchesOut: number;
  batchesIn: number;
  /** Sharded over workers, now: commands of this worker's clients waiting for another worker's answer. */
  inFlight: number;
  /** Sharded over workers, now: answers to other workers waiting for their records to be durable. */
  owed: number;
  /** Sharded over workers: values of this worker's clients written for another worker's keys zero copy, kept here as loans. */
  lent: number;
  /** Sharded over workers, now: loans kept here for other workers' records. */
  loans: number;
  /** Sharded over workers: reads of values kept by another worker (copied from its pool). */
  remoteReads: number;
}

interface KvConn extends KvClient {
  parser: RespParser;
  args: Arg[];
  cur: Arg | null;
  /** Held (block()): commands parsed meanwhile wait here, in order, with their arguments. */
  blocked: boolean;
  queue: Arg[][];
}

const CONFIG: Record<string, string> = {
  save: "",
  appendonly: "yes",
  appendfsync: "always",
  databases: "1",
  maxmemory: "0",
  "maxmemory-policy": "noeviction",
  "proto-max-bulk-len": String(KV_MAX_BULK),
};

const dec = new TextDecoder();

/**
 * A command name's bytes in lower case (ASCII letters only, as Redis compares them), without
 * a TextDecoder call per command; null when it cannot name a command (too long, or not ASCII).
 */
const lowerName = (b: Uint8Array, at = 0, len = b.length): string | null => {
  if (len > 16) return null;
  let s = "";
  for (let i = at; i < at + len; i++) {
    const x = b[i]!;
    if (x > 0x7e) return null;
    s += String.fromCharCode(x >= 0x41 && x <= 0x5a ? x | 0x20 : x);
  }
  return s;
};

/** "set" or "get" in any case (the hot commands) at b[at, at + len), else null: no string built, no lookup. */
const isSetOrGet = (b: Uint8Array, at: number, len: number): "set" | "get" | null => {
  if (len !== 3 || (b[at + 1]! | 0x20) !== 0x65 || (b[at + 2]! | 0x20) !== 0x74) return null;
  const x = b[at]! | 0x20;
  return x === 0x73 ? "set" : x === 0x67 ? "get" : null;
};

/** A command's name in lower case, or null if its first argument cannot name one. */
function commandName(args: Arg[]): string | null {
  const a0 = args[0];
  if (!a0) return null;
  if (a0.src) return isSetOrGet(a0.src, a0.at, a0.len) ?? lowerName(a0.src, a0.at, a0.len);
  return a0.bytes ? (isSetOrGet(a0.bytes, 0, a0.bytes.length) ?? lowerName(a0.bytes)) : null;
}

/** Whether the command has as many arguments as its arity allows (negative: at least). */
const arityOk = (sp: CmdSpec, args: Arg[]): boolean =>
  sp.arity > 0 ? args.length === sp.arity : args.length >= -sp.arity;

export class KvApp implements Kv {
  readonly stack: Stack;
  readonly log: PmLog;
  readonly port: number;
  readonly store: KvStore;
  readonly layer: ConnLayer<KvConn>;
  /** Cluster mode's state, and the keys each slot holds (null: a standalone server). */
  readonly cluster: ClusterState | null;
  readonly slots: SlotKeys | null;
  /** Cluster mode's bus (port + 10000): the other nodes are learned and kept in step through it. */
  readonly bus: ClusterBus | null;
  readonly migrator: Migrator;
  /** The store sharded over workers (null: this app holds every key). */
  readonly shards: KvShards | null;
  /** Keys in flight to another node (MIGRATE): who waits for each. */
  #held = new Map<string, (() => void)[]>();
  #busTimer: ReturnType<typeof setInterval> | null = null;
  readonly config = CONFIG;
  readonly counters = {
    commands: 0,
    inPlaceGets: 0,
    reads: 0,
    writes: 0,
    hits: 0,
    misses: 0,
    errors: 0,
    full: 0,
    authOk: 0,
    authFailed: 0,
    authThrottled: 0,
    noauth: 0,
    denied: 0,
    moved: 0,
    asked: 0,
    migrated: 0,
    authDropped: 0,
  };
  /**
   * Free buffers a write may not take: below this, writes answer -OOM so that the NIC can
   * always receive (GET, DEL) and the server never wedges on a full pool.
   */
  readonly reserveBuffers: number;
  #now: () => number;
  #serverName: string;
  #pass: Uint8Array | null;
  #protectedNets: NetList | null;
  #limiter: FailureLimiter;
  #started: number;
  #nextSweep = 0;
  #nextClientId = 1;
  /** The connection, receive buffer and offset of the chunk being parsed (see #parse). */
  #pc: Conn<KvConn> | null = null;
  #pbuf = 0;
  #poff = 0;
  /**
   * GETs may be read in place (#gets): nothing routes a command elsewhere (no shards, no
   * cluster), so a GET's checks are those of the connection's own state.
   */
  readonly #inPlace: boolean;
  /** The RESP parser's handler: one object for every connection and chunk (no allocation). */
  readonly #parse: RespHandler = {
    begin: () => {
      const s = this.#pc!.state;
      if (s.args.length) s.args = []; // (emptied after every command: see #dropArgs)
      s.cur = null;
    },
    arg: (src, at, len) => {
      this.#pc!.state.args.push({ src, at, bytes: null, writer: null, len, full: false, remote: null });
    },
    part: (offset, length) => {
      const c = this.#pc!;
      const s = c.state;
      const a = (s.cur ??= { src: null, at: 0, bytes: null, writer: null, len: 0, full: false, remote: null });
      a.len += length;
      if (a.full || c.closing) return; // nothing is kept for a command that will not run
      if (this.stack.pool.freeCount <= this.reserveBuffers) {
        // the pool is down to its reserve: nothing of this argument is kept
        a.full = true;
        a.writer?.abort();
        a.writer = null;
        return;
      }
      (a.writer ??= this.log.writer(KV_VALUE_ITEMS)).pushRange(this.#pbuf, this.#poff + offset, length);
    },
    argEnd: () => {
      const s = this.#pc!.state;
      s.args.push(s.cur ?? { src: null, at: 0, bytes: null, writer: null, len: 0, full: false, remote: null });
      s.cur = null;
    },
    end: () => {
      const c = this.#pc!;
      c.requestEnded();
      try {
        // after QUIT (or a protocol error) nothing pipelined behind it runs, as in Redis
        if (!c.closing) this.#command(c);
      } finally {
        this.#dropArgs(c.state);
      }
    },
    error: (message) => {
      const c = this.#pc!;
      this.counters.errors++;
      this.#dropArgs(c.state);
      c.requestEnded();
      c.reply([errorLine(`ERR Protocol error: ${message}`)], true);
    },
  };

  constructor(stack: Stack, log: PmLog, port = 6379, opts: KvOptions = {}) {
    this.stack = stack;
    this.log = log;
    this.port = port;
    this.#now = opts.now ?? Date.now;
    this.#serverName = opts.serverName ?? "pmstack";
    const p = opts.requirepass ?? null;
    this.#pass = p === null ? null : typeof p === "string" ? new TextEncoder().encode(p) : p.slice();
    if (this.#pass && this.#pass.length === 0) throw new RangeError("pmstack: requirepass must not be empty");
    this.#protectedNets = opts.protectedNets ?? null;
    this.#limiter = new FailureLimiter(opts.authLimits);
    const total = stack.pool.bufferCount;
    this.reserveBuffers = Math.min(opts.reserveBuffers ?? Math.max(1024, total >>> 3), total >>> 1);
    this.#started = Date.now();
    this.store = new KvStore(log, this.#now);
    this.cluster = opts.cluster ?? null;
    this.slots = this.cluster ? new SlotKeys() : null;
    if (this.slots) this.store.trackSlots(this.slots);
    this.bus = this.cluster
      ? new ClusterBus(stack, this.cluster, {
          now: this.#now,
          nodeTimeoutMs: opts.clusterNodeTimeoutMs,
          onLostSlots: (slots) => this.#dropSlots(slots),
        })
      : null;
    if (opts.shards && this.cluster)
      throw new RangeError("pmstack: a kv sharded over workers cannot be in cluster mode");
    this.shards = opts.shards
      ? new KvShards(opts.shards, {
          pool: stack.pool,
          store: this.store,
          lastSeq: () => log.lastSeq,
          durableSeq: () => log.durableSeq,
          runServed: (c, args) => this.#runServed(c as unknown as Conn<KvConn>, args),
          key: (a) => this.key(a),
          bytes: (a) => this.bytes(a),
          block: (c) => this.block(c),
          reply: (c, bytes) => c.reply([bytes]),
          wake: () => stack.onCommand?.(),
        })
      : null;
    this.#inPlace = !this.shards && !this.cluster;
    this.migrator = new Migrator(stack, this.#now, () => this.#startCron());
    if (this.bus) this.#startCron();
    this.layer = new ConnLayer<KvConn>(
      stack,
      log,
      {
        open: (c) => this.#open(c),
        data: (c, chunk, buf, off) => this.#data(c, chunk, buf, off),
        partial: (c) => c.state.parser.partial,
        close: (c) => {
          this.#dropArgs(c.state);
          // commands held behind a MIGRATE die with the connection
          for (const q of c.state.queue) for (const a of q) a.writer?.abort();
          c.state.queue = [];
        },
      },
      { idleTimeoutMs: opts.idleTimeoutMs, tls: opts.tls },
    );
    if (port) stack.listen(port, { backlog: 1024 });
    if (opts.tls) stack.listen(opts.tls.port, { backlog: 1024 });
  }

  onEvent = (ev: StackEvent): void => {
    if (this.bus?.onEvent(ev) || this.migrator.onEvent(ev)) return;
    this.layer.onEvent(ev);
  };

  block(c: Conn<KvClient>): () => void {
    const conn = c as unknown as Conn<KvConn>;
    conn.state.blocked = true;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#resume(conn);
    };
  }

  holdKeys(keys: Uint8Array[]): () => void {
    const names = keys.map(latin1);
    for (const n of names) if (!this.#held.has(n)) this.#held.set(n, []);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const waiting: (() => void)[] = [];
      for (const n of names) {
        waiting.push(...(this.#held.get(n) ?? []));
        this.#held.delete(n);
      }
      for (const w of waiting) w();
    };
  }

  /** Runs the commands a held client sent meanwhile, in order, until one holds it again. */
  #resume(c: Conn<KvConn>): void {
    const st = c.state;
    st.blocked = false;
    // a command partly received meanwhile (its arguments so far) stays as the parser left it
    const args = st.args;
    const cur = st.cur;
    st.cur = null;
    while (st.queue.length && !st.blocked && !c.closing && !c.finished) {
      st.args = st.queue.shift()!;
      try {
        this.#command(c);
      } finally {
        this.#dropArgs(st);
      }
    }
    st.args = args;
    st.cur = cur;
  }

  /** The command touches a key in flight to another node: the client waits for it. */
  #waitForHeld(c: Conn<KvConn>, first: number, last: number, step: number): boolean {
    const args = c.state.args;
    const end = last < 0 ? args.length + last : last;
    for (let i = first; i <= end && i < args.length; i += step) {
      const key = this.key(args[i]!);
      const w = key && this.#held.get(latin1(key));
      if (w) {
        const resume = this.block(c as unknown as Conn<KvClient>);
        c.state.queue.unshift(args);
        c.state.args = [];
        w.push(resume);
        return true;
      }
    }
    return false;
  }

  /**
   * Redis's clusterCron and MIGRATE's timeouts, ten times a second, while there is a bus or an
   * open MIGRATE connection (a standalone server with neither runs no timer); the loop is woken
   * for what they send.
   */
  #startCron(): void {
    if (this.#busTimer) return;
    this.#busTimer = setInterval(() => {
      if (this.stack.pool.closed) return;
      this.bus?.cron();
      this.migrator.cron();
      this.stack.onCommand?.();
      if (!this.bus && this.migrator.connections === 0) {
        clearInterval(this.#busTimer!);
        this.#busTimer = null;
      }
    }, 100);
    this.#busTimer.unref?.();
  }

  /** Another node took these slots with a newer configuration: their keys here go, as in Redis. */
  #dropSlots(slots: number[]): void {
    for (const s of slots) for (const key of this.slots!.keys(s, Infinity)) this.store.delete(key);
  }

  /** End of turn: expired keys are swept, then the layer's group commit and replies. */
  onTurnEnd = (): void => {
    // what other workers sent: their answers go to our clients, their requests run here
    this.shards?.beforeCommit();
    if (this.store.expiring) {
      const now = this.#now();
      if (now >= this.#nextSweep) {
        this.#nextSweep = now + 100;
        this.store.sweep(now, 1000);
      }
    }
    this.layer.onTurnEnd();
    // after the group commit: requests out, and the replies whose records are durable
    this.shards?.afterCommit();
    this.store.endTurn();
  };

  get stats(): KvStats {
    const l = this.layer.stats;
    return {
      ...this.counters,
      connections: l.connections,
      idleAborts: l.idleAborts,
      expired: this.store.expired,
      commits: l.commits,
      refusedSends: l.refusedSends,
      ringWaits: l.ringWaits,
      bytesByName: l.bytesByName,
      bytesCopied: l.bytesCopied,
      forwarded: this.shards?.stats.forwarded ?? 0,
      served: this.shards?.stats.served ?? 0,
      split: this.shards?.stats.split ?? 0,
      batchesOut: this.shards?.stats.batchesOut ?? 0,
      batchesIn: this.shards?.stats.batchesIn ?? 0,
      inFlight: this.shards?.inFlight ?? 0,
      owed: this.shards?.owed ?? 0,
      lent: this.shards?.stats.lent ?? 0,
      loans: this.store.loans,
      remoteReads: this.store.remoteReads,
    };
  }

  /** Keys with an expiry set (expired ones included until they are removed). */
  get expiring(): number {
    return this.store.expiring;
  }

  /** Stops the connection layer's timer and releases the arena (the server is closing). */
  close(): void {
    if (this.#busTimer) clearInterval(this.#busTimer);
    this.#busTimer = null;
    this.bus?.close();
    this.migrator.close();
    this.layer.close();
    this.store.arena.close();
  }

  // ---- Kv: what the commands use ------------------------------------------------------------

  now(): number {
    return this.#now();
  }

  reply(c: Conn<KvClient>, parts: Part[], close = false): void {
    c.reply(parts, close);
  }

  error(c: Conn<KvClient>, msg: string): void {
    this.counters.errors++;
    c.reply([errorLine(msg)]);
  }

  bytes(a: Arg): Uint8Array {
    if (a.bytes) return a.bytes;
    if (a.src) return (a.bytes = a.src.slice(a.at, a.at + a.len));
    if (a.remote) return (a.bytes = this.store.remoteBytes(a.remote));
    if (!a.writer) return new Uint8Array(0);
    // a long argument used as text (a key, a number, an option): copied out of PM
    const out = new Uint8Array(a.len);
    const cur = new ObjectCursor(this.stack.pool, { names: a.writer.finish().names });
    let at = 0;
    for (let r = cur.next(); r; r = cur.next()) {
      out.set(this.stack.pool.viewName(r), at);
      at += r.length;
    }
    a.bytes = out;
    return out;
  }

  text(a: Arg): string {
    return dec.decode(this.bytes(a));
  }

  key(a: Arg): Uint8Array | null {
    if (a.len === 0 || a.len > LOG_MAX_KEY || a.full) return null;
    return this.bytes(a);
  }

  clients(): Conn<KvClient>[] {
    return [...this.layer.conns.values()] as unknown as Conn<KvClient>[];
  }

  resetStats(): void {
    const own = this.counters;
    for (const k of Object.keys(own) as (keyof typeof own)[]) own[k] = 0;
    const l = this.layer.stats;
    for (const k of Object.keys(l) as (keyof typeof l)[]) l[k] = 0;
    this.store.expired = 0;
  }

  // ---- authentication -----------------------------------------------------------------------

  /** A new client: authenticated at once when there is no password; protected mode's check. */
  #open(c: Conn<KvConn>): KvConn {
    const st: KvConn = {
      id: this.#nextClientId++,
      name: null,
      parser: new RespParser({ smallMax: KV_SMALL, maxBulk: KV_MAX_BULK }),
      args: [],
      cur: null,
      authed: this.#pass === null,
      authFails: 0,
      heldUntil: 0,
      asking: false,
      readonly: false,
      blocked: false,
      queue: [],
    };
    st.parser.unauthenticated = !st.authed;
    const nets = this.#protectedNets;
    if (this.#pass === null && nets) {
      const peer = this.stack.endpoints(c.id)?.remoteAddress ?? "";
      if (!nets.has(peer)) {
        // as Redis does: the explanation, then close; nothing the client sends is read
        this.counters.denied++;
        c.reply([errorLine(KV_DENIED)], true);
      }
    }
    return st;
  }

  get requiresAuth(): boolean {
    return this.#pass !== null;
  }

  authenticate(c: Conn<KvClient>, user: Arg | null, pass: Arg, ok: () => void): void {
    const s = c.state;
    const now = this.layer.now();
    if (now < s.heldUntil) {
      // the last failure's answer is still held: this attempt is not even checked
      this.counters.authThrottled++;
      return this.error(
        c,
        "ERR pmstack: AUTH refused unchecked: the previous failed AUTH on this connection is still being answered",
      );
    }
    const pw = this.bytes(pass);
    const u = user === null ? "default" : this.text(user);
    if (this.#pass === null) {
      if (user === null)
        return this.error(
          c,
          "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
      if (u === "default") return this.#authOk(c, ok); // the default user is nopass: any password
    } else if (safeEqual(pw, this.#pass) && u === "default") return this.#authOk(c, ok);
    s.authFails++;
    this.counters.authFailed++;
    this.counters.errors++;
    const delay = this.#limiter.failure(s.authFails, now);
    s.heldUntil = now + delay;
    // the answer leaves after the delay; whatever the client sends meanwhile waits behind it
    c.reply([errorLine(KV_WRONGPASS)], false, s.heldUntil);
  }

  #authOk(c: Conn<KvClient>, ok: () => void): void {
    const s = c.state;
    s.authed = true;
    s.authFails = 0;
    (s as KvConn).parser.unauthenticated = false;
    this.counters.authOk++;
    ok();
  }

  // ---- input --------------------------------------------------------------------------------

  #data(c: Conn<KvConn>, chunk: Uint8Array, buf: number, off: number): void {
    const st = c.state;
    const parser = st.parser;
    const n = chunk.length;
    let at = 0;
    while (at < n && !parser.dead && !c.closing) {
      // GETs read in place while they come; any other command (or a GET they leave to the
      // general path) goes to the parser, one command at a time while GETs may follow it
      const inPlace = this.#inPlace && st.authed && !st.blocked && st.heldUntil === 0 && this.#held.size === 0;
      if (inPlace && !parser.partial) {
        at = this.#gets(c, chunk, at);
        if (at === n) break;
      }
      this.#pc = c;
      this.#pbuf = buf;
      this.#poff = off + at;
      try {
        at += parser.parse(at === 0 ? chunk : chunk.subarray(at), this.#parse, inPlace);
      } finally {
        this.#pc = null;
      }
    }
  }

  /**
   * A pipeline's hot path: the GETs at `b[from]` on (`*2 $3 GET $<n> <key>`, each whole in
   * it, the key of 1 to KV_SMALL bytes) are answered as the parser's path would answer them
   * (#command's checks for such a connection, the GET command), without the parser: the key is
   * looked up where it lies in the receive buffer, and no argument or command object is made.
   * It stops at the first bytes that are not such a GET, or at one that read() must answer (an
   * expired key, a long value): the parser takes over from there. Returns where it stopped.
   */
  #gets(c: Conn<KvConn>, b: Uint8Array, from: number): number {
    const n = b.length;
    let i = from;
    // the shortest such GET is 21 bytes: "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    while (i + 21 <= n && !c.closing) {
      if (
        b[i] !== 0x2a /* * */ ||
        b[i + 1] !== 0x32 /* 2 */ ||
        b[i + 2] !== 13 ||
        b[i + 3] !== 10 ||
        b[i + 4] !== 0x24 /* $ */ ||
        b[i + 5] !== 0x33 /* 3 */ ||
        b[i + 6] !== 13 ||
        b[i + 7] !== 10 ||
        isSetOrGet(b, i + 8, 3) !== "get" ||
        b[i + 11] !== 13 ||
        b[i + 12] !== 10 ||
        b[i + 13] !== 0x24 /* $ */
      )
        break;
      // the key's length: one or two digits, no leading zero, at most KV_SMALL
      let j = i + 14;
      let len = b[j++]! - 0x30;
      if (len < 1 || len > 9) break;
      const d = b[j]! - 0x30;
      if (d >= 0 && d <= 9) {
        len = len * 10 + d;
        j++;
      }
      const key = j + 2;
      const end = key + len + 2;
      if (len > KV_SMALL || end > n || b[j] !== 13 || b[j + 1] !== 10 || b[end - 2] !== 13 || b[end - 1] !== 10) break;
      const parts = getReply(this, b, key, len);
      if (!parts) break;
      i = end;
      c.requestEnded();
      this.counters.commands++;
      this.counters.inPlaceGets++;
      c.reply(parts);
    }
    return i;
  }

  /** Releases the writers of arguments no command consumed (a value it stored was taken). */
  #dropArgs(s: KvConn): void {
    const args = s.args;
    for (const a of args) a.writer?.abort();
    s.cur?.writer?.abort();
    // emptied in place, for the next command (one that keeps its arguments, held or queued,
    // took the array and left a new one)
    while (args.length) args.pop();
    s.cur = null;
  }

  #command(c: Conn<KvConn>): void {
    const args = c.state.args;
    if (args.length === 0) return;
    if (c.state.blocked) {
      // held (MIGRATE in flight): it runs after, in order
      c.state.queue.push(args);
      c.state.args = [];
      return;
    }
    const name = commandName(args);
    const sp = name !== null ? COMMANDS.get(name) : undefined;
    const st = c.state;
    const kc = c as unknown as Conn<KvClient>;
    // sharded, with commands of this client in flight on other workers: a command on keys
    // streams on behind them; any other (one on the connection itself, or an error) waits
    // until they are answered, so that every reply leaves in order
    if (
      this.shards?.busy(kc) &&
      !(
        sp &&
        name !== null &&
        arityOk(sp, args) &&
        (st.authed || sp.noauth) &&
        this.shards.pipelines(kc, name, sp.first)
      )
    ) {
      this.shards.waitDrain(kc);
      // first: commands still queued (a held client resuming) came after this one
      st.queue.unshift(args);
      st.args = [];
      return;
    }
    this.counters.commands++;
    if (!sp || name === null) {
      const raw = this.text(args[0]!);
      let list = "";
      for (let i = 1; i < args.length && list.length < 128; i++)
        list += `'${this.text(args[i]!).slice(0, 128 - list.length)}' `;
      return this.error(c, `ERR unknown command '${raw.slice(0, 128)}', with args beginning with: ${list}`);
    }
    if (!arityOk(sp, args)) return this.error(c, `ERR wrong number of arguments for '${name}' command`);
    if (st.heldUntil && c.pending >= KV_MAX_HELD_REPLIES && this.layer.now() < st.heldUntil) {
      // commands piling up behind a held AUTH failure: the connection goes (bounded memory)
      this.counters.authDropped++;
      this.counters.errors++;
      return c.reply([errorLine("ERR pmstack: too many commands sent while a failed AUTH is answered; closing")], true);
    }
    // as Redis 7.0: unknown commands and wrong arity are answered first, then authentication
    if (!st.authed && !sp.noauth) {
      this.counters.noauth++;
      return this.error(c, KV_NOAUTH);
    }
    // sharded over workers: a command whose keys another worker owns runs there
    if (this.shards) {
      if (SHARD_REFUSED.has(name))
        return this.error(c, `ERR pmstack: ${name.toUpperCase()} is not available on a server sharded over workers`);
      const r = this.shards.route(kc, name, sp.first, sp.last, sp.step, args);
      if (r === true) return;
      if (r !== false) {
        this.counters.errors++;
        return this.shards.answer(kc, errorLine(r));
      }
      // this worker's keys, behind commands in flight: run now, the reply queued behind theirs
      if (this.shards.busy(kc)) return this.shards.runBehind(kc, args);
    }
    // cluster mode: keys of another node's slot are redirected (ASKING holds for one command;
    // it changes nothing until this node imports a slot)
    if (this.cluster) {
      const asking = st.asking || sp.asking;
      st.asking = false;
      if (sp.first > 0 && this.#redirect(c, sp.first, sp.last, sp.step, args, asking)) return;
    }
    if (this.#held.size && sp.first > 0 && this.#waitForHeld(c, sp.first, sp.last, sp.step)) return;
    this.#execute(c, sp, args);
  }

  /**
   * Runs a command for another worker's client, or this worker's piece of a split one: routed
   * and checked by the worker that parsed it; its reply is captured by `c`.
   */
  #runServed(c: Conn<KvConn>, args: Arg[]): void {
    const name = commandName(args);
    const sp = name !== null ? COMMANDS.get(name) : undefined;
    if (!sp) return this.error(c, "ERR pmstack: a worker sent an unknown command");
    this.#execute(c, sp, args);
  }

  /** The command's run, once it is known to be this worker's: a full pool refuses writes. */
  #execute(c: Conn<KvConn>, sp: CmdSpec, args: Arg[]): void {
    // a full pool refuses writes while it can still receive: reads and DELs (which free values)
    // keep working, and the NIC always has buffers to receive them into
    if (sp.denyoom && (this.stack.pool.freeCount < this.reserveBuffers || args.some((x) => x.full))) {
      this.counters.full++;
      return this.error(
        c,
        `OOM command not allowed when the PM pool is full (reserve of ${this.reserveBuffers} free buffers reached): DEL keys or grow the pool`,
      );
    }
    try {
      sp.run(this, c as unknown as Conn<KvClient>, args);
    } catch (e) {
      if (e instanceof LogFullError || e instanceof PoolExhaustedError)
        return this.error(c, `OOM command not allowed: ${(e as Error).message}`);
      // a damaged tree (a value's, or one another worker keeps): that command fails, the server goes on
      if (e instanceof PmstackError && e.code === "ECORRUPT") return this.error(c, `ERR ${e.message}`);
      throw e;
    }
  }

  /**
   * Cluster mode (Redis's getNodeByQuery): returns true after answering -CROSSSLOT,
   * -CLUSTERDOWN, -TRYAGAIN, -ASK or -MOVED when the command's keys are not all of one slot this
   * node serves now. A slot this node is migrating is served for the keys still here (a missing
   * key is asked for at the target); a slot it is importing is served after ASKING.
   */
  #redirect(c: Conn<KvConn>, first: number, last: number, step: number, args: Arg[], asking: boolean): boolean {
    const cl = this.cluster!;
    const end = last < 0 ? args.length + last : last;
    let slot = -1;
    let firstKey: Uint8Array | null = null;
    let multiple = false;
    const keys: Uint8Array[] = [];
    for (let i = first; i <= end && i < args.length; i += step) {
      const key = this.key(args[i]!);
      if (!key) return false; // a key longer than any key can be: the command answers as it would
      const s = keyHashSlot(key);
      if (slot === -1) {
        slot = s;
        firstKey = key;
      } else if (s !== slot) {
        this.error(c, "CROSSSLOT Keys in request don't hash to the same slot");
        return true;
      } else if (!multiple && !sameBytes(key, firstKey!)) multiple = true;
      keys.push(key);
    }
    if (slot === -1) return false;
    const n = cl.owner(slot);
    if (n === null) {
      this.error(c, "CLUSTERDOWN Hash slot not served");
      return true;
    }
    if (cl.state !== "ok") {
      this.error(c, "CLUSTERDOWN The cluster is down");
      return true;
    }
    const to = n === cl.myself ? cl.migrating.get(slot) : undefined;
    const from = to ? undefined : cl.importing.get(slot);
    if (to || from) {
      let missing = 0;
      for (const k of keys) if (!this.store.read(k)) missing++;
      if (to && missing) {
        if (missing < keys.length) this.error(c, "TRYAGAIN Multiple keys request during rehashing of slot");
        else {
          this.counters.asked++;
          this.error(c, `ASK ${slot} ${to.ip}:${to.port}`);
        }
        return true;
      }
      if (from && asking) {
        if (multiple && missing) {
          this.error(c, "TRYAGAIN Multiple keys request during rehashing of slot");
          return true;
        }
        return false;
      }
    }
    if (n !== cl.myself) {
      this.counters.moved++;
      this.error(c, `MOVED ${slot} ${n.ip}:${n.port}`);
      return true;
    }
    return false;
  }

  /** INFO's text: the sections asked for (default all). */
  info(sections: string[] = []): string {
    const want = new Set(sections.map((s) => s.toLowerCase()));
    const all = want.size === 0 || want.has("all") || want.has("everything") || want.has("default");
    const pool = this.stack.pool;
    const pc = pool.counts();
    const ls = this.log.stats();
    const st = this.stats;
    const up = Math.floor((Date.now() - this.#started) / 1000);
    const out: string[] = [];
    const section = (title: string, lines: [string, string | number][]) => {
      if (!all && !want.has(title.toLowerCase())) return;
      out.push(`# ${title}\r\n${lines.map(([k, v]) => `${k}:${v}\r\n`).join("")}`);
    };
    section("Server", [
      ["redis_version", "7.0.0"],
      ["server_name", this.#serverName],
      ["redis_mode", this.cluster ? "cluster" : "standalone"],
      ["os", `${typeof process !== "undefined" ? process.platform : "unknown"}`],
      ["arch_bits", 64],
      ["process_id", typeof process !== "undefined" ? process.pid : 0],
      ["tcp_port", this.port],
      ["pmstack_workers", this.shards?.count ?? 1],
      ["pmstack_worker", this.shards?.index ?? 0],
      ["uptime_in_seconds", up],
      ["uptime_in_days", Math.floor(up / 86400)],
    ]);
    let blocked = 0;
    for (const c of this.layer.conns.values()) if (c.state.blocked) blocked++;
    section("Clients", [
      ["connected_clients", this.layer.conns.size],
      ["blocked_clients", blocked],
      ["keys_in_migration", this.#held.size],
      ["maxclients", 65535],
    ]);
    section("Memory", [
      ["used_memory", (pc.total - pc.free) * BUF_SIZE],
      ["used_memory_kept", pc.kept * BUF_SIZE],
      ["pool_buffers", pc.total],
      ["pool_buffers_free", pc.free],
      ["pool_buffers_kept", pc.kept],
      ["pool_buffers_app", pc.app],
      ["pool_buffers_stack", pc.stack],
      ["pool_buffers_nic", pc.nic],
      ["maxmemory", pc.total * BUF_SIZE],
      ["maxmemory_policy", "noeviction"],
    ]);
    section("Persistence", [
      ["loading", 0],
      ["aof_enabled", 1],
      ["appendfsync", "always"],
      ["pm_path", pool.path ?? "(volatile)"],
      ["pm_medium", pool.medium],
      ["pm_persistence", pool.persistence],
      ["pm_persist_mode", pool.persistMode],
      ["pm_durability", pool.durability],
      ["log_capacity", ls.capacity],
      ["log_live_bytes", ls.liveBytes],
      ["log_free_bytes", ls.freeBytes],
      ["log_commits", ls.commits],
      ["log_compactions", ls.compactions],
      ["log_groups_in_flight", ls.inFlight],
      ["log_recovered_keys", this.log.recovery.liveKeys],
      ["log_recovery_damage", this.log.recovery.damage || "none"],
    ]);
    section("Stats", [
      ["total_connections_received", st.connections],
      ["total_commands_processed", st.commands],
      ["total_reads_processed", st.reads],
      ["total_writes_processed", st.writes],
      ["keyspace_hits", st.hits],
      ["keyspace_misses", st.misses],
      ["expired_keys", st.expired],
      ["total_error_replies", st.errors],
      ["acl_access_denied_auth", st.authFailed],
      ["auth_throttled", st.authThrottled],
      ["protected_mode_denied", st.denied],
      ["rejected_writes_pool_full", st.full],
      ["group_commits", st.commits],
      ["command_ring_waits", st.ringWaits],
      ["refused_sends", st.refusedSends],
      ["value_bytes_sent_by_name", st.bytesByName],
      ["value_bytes_copied", st.bytesCopied],
    ]);
    section("Cluster", [["cluster_enabled", this.cluster ? 1 : 0]]);
    const keys = this.store.size;
    section("Keyspace", keys ? [["db0", `keys=${keys},expires=${this.store.expiring},avg_ttl=0`]] : []);
    return out.join("\r\n");
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// The durable key-value store's application logic (PASTE's second demonstration): a Redis
// protocol (RESP2) server whose SET keeps the value's PM buffers where the NIC put them, logs
// their names under the key (PmLog) and answers only once the turn's group commit made the
// record durable; GET sends the value straight from the kept buffers, by name (no copy).
// Commands: PING ECHO SET(EX/PX/EXAT/PXAT/NX/XX/KEEPTTL/GET) GET DEL EXISTS MSET MSETNX MGET
// INCR DECR INCRBY DECRBY STRLEN TTL PTTL DBSIZE FLUSHALL FLUSHDB SELECT INFO COMMAND CONFIG
// CLIENT HELLO QUIT, errors in Redis's own words. Plug it into a NicLoop:
// { onEvent: app.onEvent, onTurnEnd: app.onTurnEnd }. docs/apps.md describes the semantics.
//
// A record is [header, ...value]: names[0] is a range of an app "arena" buffer holding a 16-byte
// header (magic "pmKV", version, expiry as unix ms f64, 0 = none), followed by the value itself
// when it is short (<= 64 bytes, copied there by the parser anyway, or an INCR result); a long
// value follows as names[1..] (ranges of the receive buffers it arrived in).

import { BUF_SIZE } from "../abi.js";
import { PoolExhaustedError } from "../errors.js";
import { LOG_MAX_KEY, LOG_MAX_NAMES, LogFullError, type PmLog } from "../log.js";
import type { BufferName } from "../pool.js";
import { freeRefused, SendQueue } from "../paste.js";
import type { Stack, StackEvent } from "../stack.js";
import { RespParser, type RespHandler } from "./resp.js";

/** Bytes of the record header at the start of names[0]. */
export const KV_HEADER = 16;
/** Most value names per record (the log's limit, less the header's). */
export const KV_MAX_VALUE_NAMES = LOG_MAX_NAMES - 1;
/** Arguments up to this size arrive copied (the parser's smallMax); longer ones as PM ranges. */
export const KV_SMALL = 64;
/**
 * Value pieces at least this long go out by name (no copy); shorter ones are copied into the
 * reply's text. One TCP segment (MSS ~1448) is built from at most 64 buffer pieces (the core's
 * MAXP): with named pieces of >= 64 bytes and the text between them a segment needs <= 46.
 */
export const KV_MIN_BY_NAME = 64;
const MAGIC = Uint8Array.of(0x70, 0x6d, 0x4b, 0x56); // "pmKV"
const VERSION = 1;
const HEADROOM = 128;
const TEXT_CAP = BUF_SIZE - HEADROOM;
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);

export interface KvOptions {
  /** Wall clock for expiry, unix ms (default Date.now). Expiry times are stored as unix ms. */
  now?: () => number;
  /** Reported by INFO (default "pmstack"). */
  serverName?: string;
  /** Free buffers a write may not take (default max(1024, 1/8 of the pool), at most half). */
  reserveBuffers?: number;
}

export interface KvStats {
  connections: number;
  commands: number;
  reads: number;
  writes: number;
  hits: number;
  misses: number;
  expired: number;
  /** Error replies (Redis's total_error_replies). */
  errors: number;
  /** Values refused for needing more than KV_MAX_VALUE_NAMES buffers. */
  tooLarge: number;
  /** Writes refused with -OOM because the pool's free buffers were down to the reserve. */
  full: number;
  commits: number;
  /** Sends the stack refused (send queue full), resent in order after WRITABLE. */
  refusedSends: number;
  /** Times replies waited for room in the command ring (APP-IN) until a later turn. */
  ringWaits: number;
  /** Value bytes sent from PM by name (no copy), and value bytes copied into replies. */
  bytesByName: number;
  bytesCopied: number;
}

interface Arg {
  /** A short argument, copied by the parser. */
  bytes: Uint8Array | null;
  /** A long argument: ranges of the receive buffers it arrived in. */
  names: BufferName[];
  len: number;
}

/** Text (copied into an outgoing buffer) or a kept PM range sent by name. */
type Part = Uint8Array | BufferName;

interface Reply {
  /** Its BufferName parts each hold a reference of ours (see #bulkValue), handed to the send queue. */
  parts: Part[];
  /** Waits for the group commit (a write, or anything after an uncommitted write). */
  durable: boolean;
  close: boolean;
}

interface Conn {
  id: number;
  parser: RespParser;
  args: Arg[];
  cur: Arg | null;
  /** Receive buffers holding parts of the command in progress: one reference each. */
  held: number[];
  tooBig: boolean;
  replies: Reply[];
  /**
   * The connection's sends, in stream order: refused ones again after WRITABLE, ones the
   * command ring had no room for at a later turn's end, the FIN after all of them.
   */
  q: SendQueue;
  /** Bytes consumed but not yet returned to the window (recvd). */
  unrecvd: number;
  /** The outgoing text buffer being filled (HEADROOM + len bytes used), and a view of its text. */
  out: number;
  outLen: number;
  outView: Uint8Array | null;
  peerClosed: boolean;
  closing: boolean;
  closed: boolean;
  name: string | null;
}

interface Value {
  names: BufferName[];
  len: number;
  expireAt: number;
}

interface CmdSpec {
  arity: number;
  flags: string[];
  /** flags has "denyoom" (a write that a full pool refuses): looked up once per command. */
  denyoom: boolean;
  first: number;
  last: number;
  step: number;
  group: string;
  summary: string;
  since: string;
}

const spec = (
  arity: number,
  flags: string,
  keys: [number, number, number],
  group: string,
  since: string,
  summary: string,
): CmdSpec => {
  const f = flags ? flags.split(" ") : [];
  return {
    arity,
    flags: f,
    denyoom: f.includes("denyoom"),
    first: keys[0],
    last: keys[1],
    step: keys[2],
    group,
    since,
    summary,
  };
};

/** The commands, with Redis's arity (negative: at least) and key positions. */
export const KV_COMMANDS: Record<string, CmdSpec> = {
  ping: spec(-1, "fast", [0, 0, 0], "connection", "1.0.0", "Returns the server's liveliness response."),
  echo: spec(2, "fast", [0, 0, 0], "connection", "1.0.0", "Returns the given string."),
  select: spec(2, "loading stale fast", [0, 0, 0], "connection", "2.0.0", "Changes the selected database."),
  quit: spec(-1, "fast", [0, 0, 0], "connection", "1.0.0", "Closes the connection."),
  hello: spec(-1, "noscript loading stale fast", [0, 0, 0], "connection", "6.0.0", "Handshakes with the server."),
  client: spec(-2, "", [0, 0, 0], "connection", "2.4.0", "A container for client connection commands."),
  set: spec(-3, "write denyoom", [1, 1, 1], "string", "1.0.0", "Sets the string value of a key, durably."),
  get: spec(2, "readonly fast", [1, 1, 1], "string", "1.0.0", "Returns the string value of a key."),
  mset: spec(-3, "write denyoom", [1, -1, 2], "string", "1.0.1", "Atomically creates or modifies keys."),
  msetnx: spec(-3, "write denyoom", [1, -1, 2], "string", "1.0.1", "Sets keys only when none of them exist."),
  mget: spec(-2, "readonly fast", [1, -1, 1], "string", "1.0.0", "Atomically returns the values of keys."),
  incr: spec(2, "write denyoom fast", [1, 1, 1], "string", "1.0.0", "Increments the integer value of a key by one."),
  decr: spec(2, "write denyoom fast", [1, 1, 1], "string", "1.0.0", "Decrements the integer value of a key by one."),
  incrby: spec(3, "write denyoom fast", [1, 1, 1], "string", "1.0.0", "Increments the integer value of a key."),
  decrby: spec(3, "write denyoom fast", [1, 1, 1], "string", "1.0.0", "Decrements the integer value of a key."),
  strlen: spec(2, "readonly fast", [1, 1, 1], "string", "2.2.0", "Returns the length of a string value."),
  del: spec(-2, "write", [1, -1, 1], "generic", "1.0.0", "Deletes keys, durably."),
  exists: spec(-2, "readonly fast", [1, -1, 1], "generic", "1.0.0", "Determines whether keys exist."),
  ttl: spec(2, "readonly fast", [1, 1, 1], "generic", "1.0.0", "Returns the expiration time in seconds of a key."),
  pttl: spec(2, "readonly fast", [1, 1, 1], "generic", "2.6.0", "Returns the expiration time in ms of a key."),
  dbsize: spec(1, "readonly fast", [0, 0, 0], "server", "1.0.0", "Returns the number of keys."),
  flushall: spec(-1, "write", [0, 0, 0], "server", "1.0.0", "Removes all keys, durably."),
  flushdb: spec(-1, "write", [0, 0, 0], "server", "1.0.0", "Removes all keys, durably."),
  info: spec(-1, "loading stale", [0, 0, 0], "server", "1.0.0", "Returns information and statistics."),
  command: spec(-1, "loading stale", [0, 0, 0], "server", "2.8.13", "Returns detailed information about commands."),
  config: spec(-2, "", [0, 0, 0], "server", "2.0.0", "A container for server configuration commands."),
};

const COMMANDS = new Map(Object.entries(KV_COMMANDS));

const CONFIG: Record<string, string> = {
  save: "",
  appendonly: "yes",
  appendfsync: "always",
  databases: "1",
  maxmemory: "0",
  "maxmemory-policy": "noeviction",
  "proto-max-bulk-len": String(KV_MAX_VALUE_NAMES * 1400),
};

const enc = new TextEncoder();
const dec = new TextDecoder();
const OK = enc.encode("+OK\r\n");
const PONG = enc.encode("+PONG\r\n");
const NIL = enc.encode("$-1\r\n");
const CRLF = enc.encode("\r\n");
const ZERO = enc.encode(":0\r\n");
const ONE = enc.encode(":1\r\n");

const E_INT = "ERR value is not an integer or out of range";
const E_SYNTAX = "ERR syntax error";

const str = (s: string): Uint8Array => enc.encode(s);
/**
 * "-<message>\r\n". Messages quote the client's own bytes (an unknown command's name and
 * arguments, a bad protocol byte): a CR or LF there would end the line early and desynchronize
 * the client, so each becomes a space, as Redis does.
 */
const errorLine = (msg: string): Uint8Array => enc.encode(`-${msg.replace(/[\r\n]/g, " ")}\r\n`);
const simple = (s: string): Uint8Array => enc.encode(`+${s}\r\n`);
const int = (n: number | bigint): Uint8Array => (n === 0 ? ZERO : n === 1 ? ONE : enc.encode(`:${n}\r\n`));
const bulk = (s: string | Uint8Array): Uint8Array => {
  const b = typeof s === "string" ? enc.encode(s) : s;
  const h = enc.encode(`$${b.length}\r\n`);
  const out = new Uint8Array(h.length + b.length + 2);
  out.set(h);
  out.set(b, h.length);
  out.set(CRLF, h.length + b.length);
  return out;
};
/** `$<len>\r\n`, cached for the lengths values have (a GET's reply head: no encode per GET). */
const BULK_HEADS = new Map<number, Uint8Array>();
const bulkHead = (len: number): Uint8Array => {
  let h = BULK_HEADS.get(len);
  if (!h) {
    h = enc.encode(`$${len}\r\n`);
    if (BULK_HEADS.size < 4096) BULK_HEADS.set(len, h);
  }
  return h;
};
const arrayHead = (n: number): Uint8Array => enc.encode(`*${n}\r\n`);
/** A RESP2 array of nested strings/integers/arrays, encoded whole. */
type Nested = string | number | Nested[];
const nested = (v: Nested): string =>
  typeof v === "number"
    ? `:${v}\r\n`
    : typeof v === "string"
      ? `$${enc.encode(v).length}\r\n${v}\r\n`
      : `*${v.length}\r\n${v.map(nested).join("")}`;

/** Redis's string2ll: an optional '-', no leading zeros or '+', no spaces, within int64. */
export function parseI64(b: Uint8Array): bigint | null {
  const n = b.length;
  if (n === 0 || n > 20) return null;
  if (n === 1 && b[0] === 0x30) return 0n;
  let i = 0;
  if (b[0] === 0x2d) {
    i = 1;
    if (n === 1) return null;
  }
  if (b[i]! < 0x31 || b[i]! > 0x39) return null;
  for (let k = i + 1; k < n; k++) if (b[k]! < 0x30 || b[k]! > 0x39) return null;
  const v = BigInt(dec.decode(b));
  return v > I64_MAX || v < I64_MIN ? null : v;
}

/**
 * A command name's bytes in lower case (ASCII letters only, as Redis compares them), without
 * a TextDecoder call per command; null when it cannot name a command (too long, or not ASCII).
 */
const lowerName = (b: Uint8Array): string | null => {
  if (b.length > 16) return null;
  let s = "";
  for (let i = 0; i < b.length; i++) {
    const x = b[i]!;
    if (x > 0x7e) return null;
    s += String.fromCharCode(x >= 0x41 && x <= 0x5a ? x | 0x20 : x);
  }
  return s;
};

/** "set" or "get" in any case (the hot commands), else null: no string built, no lookup. */
const isSetOrGet = (b: Uint8Array): "set" | "get" | null => {
  if (b.length !== 3 || (b[1]! | 0x20) !== 0x65 || (b[2]! | 0x20) !== 0x74) return null;
  const x = b[0]! | 0x20;
  return x === 0x73 ? "set" : x === 0x67 ? "get" : null;
};

const latin1 = (b: Uint8Array): string => {
  let s = "";
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode(...b.subarray(i, i + 4096));
  return s;
};

export class KvApp {
  readonly stack: Stack;
  readonly log: PmLog;
  readonly port: number;
  readonly stats: KvStats = {
    connections: 0,
    commands: 0,
    reads: 0,
    writes: 0,
    hits: 0,
    misses: 0,
    expired: 0,
    errors: 0,
    tooLarge: 0,
    full: 0,
    commits: 0,
    ringWaits: 0,
    refusedSends: 0,
    bytesByName: 0,
    bytesCopied: 0,
  };
  /**
   * Free buffers a write may not take: below this, SET/MSET/INCR answer -OOM so that the NIC can
   * always receive (GET, DEL) and the server never wedges on a full pool.
   */
  readonly reserveBuffers: number;
  #now: () => number;
  #serverName: string;
  #started: number;
  #conns = new Map<number, Conn>();
  /** Connections with a window update the command ring had no room for. */
  #pending = new Set<Conn>();
  /** Writes (records appended) waiting for this turn's group commit. */
  #waiting = 0;
  /** Tombstones of expired keys not yet committed (no reply waits for them). */
  #dirty = false;
  /** Keys with an expiry (latin1 of the key bytes -> unix ms), for DBSIZE, INFO and sweeps. */
  #expires = new Map<string, number>();
  #nextSweep = 0;
  #sweepAt: Iterator<[string, number]> | null = null;
  /** The arena buffer headers and short values are written to, and its fill. */
  #arena = -1;
  #arenaAt = 0;
  #kickScheduled = false;
  #nextClientId = 1;
  #clientIds = new Map<number, number>();
  /** The connection, receive buffer and offset of the chunk being parsed (see #parse). */
  #pc: Conn | null = null;
  #pbuf = 0;
  #poff = 0;
  /** The RESP parser's handler: one object for every connection and chunk (no allocation). */
  readonly #parse: RespHandler = {
    begin: () => {
      const c = this.#pc!;
      c.args = [];
      c.cur = null;
      c.tooBig = false;
    },
    arg: (bytes) => {
      this.#pc!.args.push({ bytes, names: [], len: bytes.length });
    },
    part: (offset, length) => {
      const c = this.#pc!;
      const a = (c.cur ??= { bytes: null, names: [], len: 0 });
      a.len += length;
      if (c.tooBig) return;
      if (a.names.length >= KV_MAX_VALUE_NAMES) {
        // too many buffers for one record: the command fails, the rest of it is skipped
        c.tooBig = true;
        this.#unhold(c);
        return;
      }
      const buf = this.#pbuf;
      a.names.push({ index: buf, offset: this.#poff + offset, length });
      if (c.held[c.held.length - 1] !== buf) {
        this.stack.pool.ref(buf); // the argument may end in a later chunk: keep this one until then
        c.held.push(buf);
      }
    },
    argEnd: () => {
      const c = this.#pc!;
      c.args.push(c.cur ?? { bytes: null, names: [], len: 0 });
      c.cur = null;
    },
    end: () => {
      const c = this.#pc!;
      this.#command(c);
      this.#unhold(c);
      c.args = [];
    },
    error: (message) => {
      const c = this.#pc!;
      this.stats.errors++;
      this.#push(c, [errorLine(`ERR Protocol error: ${message}`)], true);
    },
  };

  constructor(stack: Stack, log: PmLog, port = 6379, opts: KvOptions = {}) {
    this.stack = stack;
    this.log = log;
    this.port = port;
    this.#now = opts.now ?? Date.now;
    this.#serverName = opts.serverName ?? "pmstack";
    const total = stack.pool.bufferCount;
    this.reserveBuffers = Math.min(opts.reserveBuffers ?? Math.max(1024, total >>> 3), total >>> 1);
    this.#started = Date.now();
    // keys with an expiry, from the recovered log (the expiry lives in each record's header)
    for (const e of log.entries()) {
      const t = this.#headerExpiry(e.names[0]);
      if (t > 0) this.#expires.set(latin1(e.key), t);
    }
    stack.listen(port, { backlog: 1024 });
  }

  /** Keys with an expiry set (expired ones included until they are removed). */
  get expiring(): number {
    return this.#expires.size;
  }

  onEvent = (ev: StackEvent): void => {
    switch (ev.type) {
      case "ACCEPTED":
        this.stats.connections++;
        this.#clientIds.set(ev.conn, this.#nextClientId++);
        this.#conns.set(ev.conn, {
          id: ev.conn,
          parser: new RespParser({ smallMax: KV_SMALL }),
          args: [],
          cur: null,
          held: [],
          tooBig: false,
          replies: [],
          q: new SendQueue(this.stack, ev.conn),
          unrecvd: 0,
          out: -1,
          outLen: 0,
          outView: null,
          peerClosed: false,
          closing: false,
          closed: false,
          name: null,
        });
        break;
      case "DATA":
        this.#data(ev);
        break;
      case "PEER_CLOSED": {
        const c = this.#conns.get(ev.conn);
        if (c) {
          c.peerClosed = true;
          this.#service(c);
        }
        break;
      }
      case "CLOSED":
      case "RESET": {
        const c = this.#conns.get(ev.conn);
        if (c) this.#forget(c);
        break;
      }
      case "SEND_REFUSED": {
        const c = this.#conns.get(ev.conn);
        const name = { index: ev.buf, offset: ev.off, length: ev.len };
        if (c) {
          // the queue keeps it (and our reference, for a value sent by name) until WRITABLE
          c.q.refused(name);
          this.stats.refusedSends++;
        } else freeRefused(this.stack, [name]); // our text buffer, for a connection that is gone
        break;
      }
      case "WRITABLE": {
        const c = this.#conns.get(ev.conn);
        if (c) {
          c.q.writable();
          this.#service(c);
        }
        break;
      }
    }
  };

  /**
   * End of turn: one group commit for every write of the turn, then the replies it held; the
   * send queues settle (references on sends the core has taken go, queued sends and FINs go
   * out), and expired keys are removed.
   */
  onTurnEnd = (): void => {
    if (this.#expires.size) {
      const now = this.#now();
      if (now >= this.#nextSweep) {
        this.#nextSweep = now + 100;
        this.#sweep(now, 1000);
      }
    }
    if (this.#waiting > 0 || this.#dirty) {
      this.log.commit();
      this.stats.commits++;
      this.#waiting = 0;
      this.#dirty = false;
      for (const c of this.#conns.values()) {
        if (!c.replies.length) continue;
        for (const r of c.replies) r.durable = false;
        this.#service(c);
      }
    }
    for (const c of this.#pending) this.#service(c);
    // every send of the turn has been taken or refused by now (see SendQueue.settle)
    for (const c of this.#conns.values()) if (!c.q.quiet) c.q.settle();
    // a ring too full for a window update: come back once the core has taken the commands
    if (this.#pending.size && !this.#kickScheduled) {
      this.#kickScheduled = true;
      setImmediate(() => {
        this.#kickScheduled = false;
        if (this.stack.pool.closed) return;
        for (const c of this.#pending) this.#service(c);
      });
    }
  };

  // ---- input -----------------------------------------------------------------------------

  #data(ev: StackEvent): void {
    const c = this.#conns.get(ev.conn);
    const pool = this.stack.pool;
    if (!c || c.parser.dead || c.closing) {
      pool.free(ev.buf);
      if (c) {
        c.unrecvd += ev.len;
        this.#service(c);
      } else this.stack.recvd(ev.conn, ev.len);
      return;
    }
    const { buf, off, len } = ev;
    this.#pc = c;
    this.#pbuf = buf;
    this.#poff = off;
    c.parser.parse(pool.view(buf, off, len), this.#parse);
    this.#pc = null;
    pool.free(buf); // the log took its own references on the buffers it keeps
    c.unrecvd += len;
    this.#service(c);
  }

  #unhold(c: Conn): void {
    for (const b of c.held) this.stack.pool.free(b);
    c.held = [];
    if (c.tooBig) {
      for (const a of c.args) a.names = [];
      if (c.cur) c.cur.names = [];
    }
  }

  // ---- commands --------------------------------------------------------------------------

  #command(c: Conn): void {
    const args = c.args;
    if (args.length === 0) return;
    this.stats.commands++;
    const a0 = args[0]!.bytes;
    const name = a0 ? (isSetOrGet(a0) ?? lowerName(a0)) : null;
    const sp = name !== null ? COMMANDS.get(name) : undefined;
    if (!sp || name === null) {
      const raw = this.#text(args[0]!);
      let list = "";
      for (let i = 1; i < args.length && list.length < 128; i++)
        list += `'${this.#text(args[i]!).slice(0, 128 - list.length)}' `;
      return this.#error(c, `ERR unknown command '${raw.slice(0, 128)}', with args beginning with: ${list}`);
    }
    if ((sp.arity > 0 && args.length !== sp.arity) || (sp.arity < 0 && args.length < -sp.arity))
      return this.#error(c, `ERR wrong number of arguments for '${name}' command`);
    if (c.tooBig) {
      this.stats.tooLarge++;
      return this.#error(
        c,
        `ERR pmstack: an argument needs more than ${KV_MAX_VALUE_NAMES} buffers (a record's limit); ` +
          "the value was not stored",
      );
    }
    // a full pool refuses writes while it can still receive: reads and DELs (which free values)
    // keep working, and the NIC always has buffers to receive them into
    if (sp.denyoom && this.stack.pool.freeCount < this.reserveBuffers) {
      this.stats.full++;
      return this.#error(
        c,
        `OOM command not allowed when the PM pool is full (reserve of ${this.reserveBuffers} free buffers reached): DEL keys or grow the pool`,
      );
    }
    try {
      this.#dispatch(c, name, args);
    } catch (e) {
      if (e instanceof LogFullError || e instanceof PoolExhaustedError)
        return this.#error(c, `OOM command not allowed: ${(e as Error).message}`);
      throw e;
    }
  }

  #dispatch(c: Conn, name: string, a: Arg[]): void {
    switch (name) {
      case "ping":
        if (a.length > 2) return this.#error(c, "ERR wrong number of arguments for 'ping' command");
        return this.#push(c, [a.length === 2 ? bulk(this.#bytes(a[1]!)) : PONG]);
      case "echo":
        return this.#push(c, [bulk(this.#bytes(a[1]!))]);
      case "select": {
        const db = parseI64(this.#bytes(a[1]!));
        if (db === null) return this.#error(c, E_INT);
        if (db !== 0n) return this.#error(c, "ERR DB index is out of range");
        return this.#push(c, [OK]);
      }
      case "quit":
        return this.#push(c, [OK], true);
      case "hello":
        return this.#hello(c, a);
      case "client":
        return this.#client(c, a);
      case "get":
        return this.#get(c, a[1]!);
      case "set":
        return this.#set(c, a);
      case "mset":
      case "msetnx":
        return this.#mset(c, a, name === "msetnx");
      case "mget": {
        const parts: Part[] = [arrayHead(a.length - 1)];
        for (let i = 1; i < a.length; i++) this.#bulkValue(this.#read(this.#keyOf(a[i]!)), parts);
        return this.#push(c, parts);
      }
      case "incr":
      case "decr":
        return this.#incr(c, a[1]!, name === "incr" ? 1n : -1n);
      case "incrby":
      case "decrby": {
        const by = parseI64(this.#bytes(a[2]!));
        if (by === null) return this.#error(c, E_INT);
        if (name === "decrby" && by === I64_MIN) return this.#error(c, "ERR decrement would overflow");
        return this.#incr(c, a[1]!, name === "incrby" ? by : -by);
      }
      case "strlen": {
        const v = this.#read(this.#keyOf(a[1]!));
        return this.#push(c, [int(v ? v.len : 0)]);
      }
      case "del": {
        let n = 0;
        for (let i = 1; i < a.length; i++) {
          const k = this.#keyOf(a[i]!);
          if (k && this.#read(k)) {
            this.log.delete(k);
            this.#forgetExpiry(k);
            this.#waiting++;
            n++;
          }
        }
        this.stats.writes++;
        return this.#push(c, [int(n)]);
      }
      case "exists": {
        let n = 0;
        for (let i = 1; i < a.length; i++) if (this.#read(this.#keyOf(a[i]!))) n++;
        return this.#push(c, [int(n)]);
      }
      case "ttl":
      case "pttl": {
        const v = this.#read(this.#keyOf(a[1]!));
        if (!v) return this.#push(c, [int(-2)]);
        if (!v.expireAt) return this.#push(c, [int(-1)]);
        const ms = Math.max(0, v.expireAt - this.#now());
        return this.#push(c, [int(name === "pttl" ? ms : Math.floor((ms + 500) / 1000))]);
      }
      case "dbsize":
        this.#sweepAt = null;
        this.#sweep(this.#now(), this.#expires.size);
        return this.#push(c, [int(this.log.size)]);
      case "flushall":
      case "flushdb": {
        if (a.length > 2) return this.#error(c, E_SYNTAX);
        if (a.length === 2 && !/^(sync|async)$/i.test(this.#text(a[1]!))) return this.#error(c, E_SYNTAX);
        for (const e of this.log.entries()) {
          this.log.delete(e.key);
          this.#waiting++;
        }
        this.#expires.clear();
        this.stats.writes++;
        return this.#push(c, [OK]);
      }
      case "info":
        return this.#push(c, [bulk(this.info(a.slice(1).map((x) => this.#text(x))))]);
      case "command":
        return this.#commandCmd(c, a);
      case "config":
        return this.#config(c, a);
    }
  }

  #get(c: Conn, key: Arg): void {
    const parts: Part[] = [];
    this.#bulkValue(this.#read(this.#keyOf(key)), parts);
    this.#push(c, parts);
  }

  #set(c: Conn, a: Arg[]): void {
    let nx = false;
    let xx = false;
    let get = false;
    let keepTtl = false;
    let unit = ""; // EX PX EXAT PXAT
    let when: Arg | null = null;
    for (let i = 3; i < a.length; i++) {
      const o = this.#text(a[i]!).toUpperCase();
      if (o === "NX" && !xx) nx = true;
      else if (o === "XX" && !nx) xx = true;
      else if (o === "GET") get = true;
      else if (o === "KEEPTTL" && !unit) keepTtl = true;
      else if ((o === "EX" || o === "PX" || o === "EXAT" || o === "PXAT") && !unit && !keepTtl && i + 1 < a.length) {
        unit = o;
        when = a[++i]!;
      } else return this.#error(c, E_SYNTAX);
    }
    let expireAt = 0;
    if (when) {
      const t = parseI64(this.#bytes(when));
      if (t === null) return this.#error(c, E_INT);
      const n = Number(t);
      if (n <= 0) return this.#error(c, "ERR invalid expire time in 'set' command");
      const ms = unit === "EX" || unit === "EXAT" ? n * 1000 : n;
      expireAt = unit === "EX" || unit === "PX" ? this.#now() + ms : ms;
      if (!Number.isSafeInteger(expireAt)) return this.#error(c, "ERR invalid expire time in 'set' command");
    }
    const key = this.#keyOf(a[1]!);
    if (!key) return this.#error(c, `ERR pmstack: a key must be 1 to ${LOG_MAX_KEY} bytes`);
    const old = nx || xx || get || keepTtl ? this.#read(key) : null;
    const parts: Part[] = [];
    if (get) this.#bulkValue(old, parts);
    if ((nx && old) || (xx && !old)) {
      if (!get) parts.push(NIL);
      return this.#push(c, parts);
    }
    if (keepTtl && old) expireAt = old.expireAt;
    this.#put(key, a[2]!, expireAt);
    this.stats.writes++;
    if (!get) parts.push(OK);
    this.#push(c, parts);
  }

  #mset(c: Conn, a: Arg[], nx: boolean): void {
    if (a.length % 2 === 0)
      return this.#error(c, `ERR wrong number of arguments for '${nx ? "msetnx" : "mset"}' command`);
    const keys: Uint8Array[] = [];
    for (let i = 1; i < a.length; i += 2) {
      const k = this.#keyOf(a[i]!);
      if (!k) return this.#error(c, `ERR pmstack: a key must be 1 to ${LOG_MAX_KEY} bytes`);
      keys.push(k);
    }
    if (nx && keys.some((k) => this.#read(k))) return this.#push(c, [ZERO]);
    for (let i = 1; i < a.length; i += 2) this.#put(keys[(i - 1) / 2]!, a[i + 1]!, 0);
    this.stats.writes++;
    this.#push(c, [nx ? ONE : OK]);
  }

  #incr(c: Conn, keyArg: Arg, by: bigint): void {
    const key = this.#keyOf(keyArg);
    if (!key) return this.#error(c, `ERR pmstack: a key must be 1 to ${LOG_MAX_KEY} bytes`);
    const old = this.#read(key);
    let cur = 0n;
    if (old) {
      if (old.len > 20) return this.#error(c, E_INT);
      const v = parseI64(this.#concat(old.names, old.len));
      if (v === null) return this.#error(c, E_INT);
      cur = v;
    }
    const next = cur + by;
    if (next > I64_MAX || next < I64_MIN) return this.#error(c, "ERR increment or decrement would overflow");
    this.#put(key, enc.encode(next.toString()), old ? old.expireAt : 0);
    this.stats.writes++;
    this.#push(c, [int(next)]);
  }

  #hello(c: Conn, a: Arg[]): void {
    let i = 1;
    if (a.length > 1) {
      const v = parseI64(this.#bytes(a[1]!));
      if (v === null) return this.#error(c, "ERR Protocol version is not an integer or out of range");
      if (v !== 2n) return this.#error(c, "NOPROTO sorry, this protocol version is not supported");
      i = 2;
    }
    for (; i < a.length; i++) {
      const o = this.#text(a[i]!).toUpperCase();
      if (o === "AUTH" && i + 2 < a.length) i += 2;
      else if (o === "SETNAME" && i + 1 < a.length) c.name = this.#text(a[++i]!);
      else return this.#error(c, `ERR Syntax error in HELLO option '${this.#text(a[i]!)}'`);
    }
    const info: Nested = [
      "server",
      "redis",
      "version",
      "7.0.0",
      "proto",
      2,
      "id",
      this.#clientIds.get(c.id) ?? 0,
      "mode",
      "standalone",
      "role",
      "master",
      "modules",
      [],
    ];
    this.#push(c, [str(nested(info))]);
  }

  #client(c: Conn, a: Arg[]): void {
    const sub = this.#text(a[1]!).toUpperCase();
    const id = this.#clientIds.get(c.id) ?? 0;
    switch (sub) {
      case "SETNAME": {
        if (a.length !== 3) return this.#error(c, "ERR wrong number of arguments for 'client|setname' command");
        const n = this.#text(a[2]!);
        if (/[^!-~]/.test(n))
          return this.#error(c, "ERR Client names cannot contain spaces, newlines or special characters.");
        c.name = n || null;
        return this.#push(c, [OK]);
      }
      case "GETNAME":
        return this.#push(c, [c.name === null ? NIL : bulk(c.name)]);
      case "ID":
        return this.#push(c, [int(id)]);
      case "SETINFO":
        if (a.length !== 4) return this.#error(c, "ERR wrong number of arguments for 'client|setinfo' command");
        if (!/^(lib-name|lib-ver)$/i.test(this.#text(a[2]!)))
          return this.#error(c, `ERR Unrecognized option '${this.#text(a[2]!)}'`);
        return this.#push(c, [OK]);
      case "INFO":
      case "LIST": {
        const line = (cn: Conn) =>
          `id=${this.#clientIds.get(cn.id) ?? 0} conn=${cn.id} name=${cn.name ?? ""} db=0 cmd=client|${sub.toLowerCase()}`;
        const text = sub === "INFO" ? line(c) + "\n" : [...this.#conns.values()].map(line).join("\n") + "\n";
        return this.#push(c, [bulk(text)]);
      }
      default:
        return this.#error(c, `ERR unknown subcommand '${this.#text(a[1]!)}'. Try CLIENT HELP.`);
    }
  }

  #commandCmd(c: Conn, a: Arg[]): void {
    const names = Object.keys(KV_COMMANDS);
    const entry = (n: string): Nested => {
      const s = KV_COMMANDS[n]!;
      return [n, s.arity, s.flags, s.first, s.last, s.step, [`@${s.group}`], [], [], []];
    };
    if (a.length === 1) return this.#push(c, [str(nested(names.map(entry)))]);
    const sub = this.#text(a[1]!).toUpperCase();
    const asked = a.slice(2).map((x) => this.#text(x).toLowerCase());
    switch (sub) {
      case "COUNT":
        return this.#push(c, [int(names.length)]);
      case "LIST":
        return this.#push(c, [str(nested(names))]);
      case "INFO": {
        const list = asked.length ? asked : names;
        const parts = list.map((n) => (KV_COMMANDS[n] ? nested(entry(n)) : "*-1\r\n"));
        return this.#push(c, [str(`*${list.length}\r\n${parts.join("")}`)]);
      }
      case "DOCS": {
        const list = (asked.length ? asked : names).filter((n) => KV_COMMANDS[n]);
        const flat: Nested = [];
        for (const n of list) {
          const s = KV_COMMANDS[n]!;
          flat.push(n, ["summary", s.summary, "since", s.since, "group", s.group]);
        }
        return this.#push(c, [str(nested(flat))]);
      }
      default:
        return this.#error(c, `ERR unknown subcommand '${this.#text(a[1]!)}'. Try COMMAND HELP.`);
    }
  }

  #config(c: Conn, a: Arg[]): void {
    const sub = this.#text(a[1]!).toUpperCase();
    if (sub === "GET") {
      if (a.length < 3) return this.#error(c, "ERR wrong number of arguments for 'config|get' command");
      const out: string[] = [];
      for (let i = 2; i < a.length; i++) {
        const re = globRegExp(this.#text(a[i]!).toLowerCase());
        for (const [k, v] of Object.entries(CONFIG)) if (re.test(k) && !out.includes(k)) out.push(k, v);
      }
      return this.#push(c, [str(nested(out))]);
    }
    if (sub === "RESETSTAT") {
      for (const k of Object.keys(this.stats) as (keyof KvStats)[]) this.stats[k] = 0;
      return this.#push(c, [OK]);
    }
    if (sub === "SET") return this.#error(c, "ERR pmstack: CONFIG SET is not supported (durability is fixed)");
    this.#error(c, `ERR unknown subcommand '${this.#text(a[1]!)}'. Try CONFIG HELP.`);
  }

  /** INFO's text: the sections asked for (default all). */
  info(sections: string[] = []): string {
    const want = new Set(sections.map((s) => s.toLowerCase()));
    const all = want.size === 0 || want.has("all") || want.has("everything") || want.has("default");
    const pool = this.stack.pool;
    const pc = pool.counts();
    const ls = this.log.stats();
    const up = Math.floor((Date.now() - this.#started) / 1000);
    const out: string[] = [];
    const section = (title: string, lines: [string, string | number][]) => {
      if (!all && !want.has(title.toLowerCase())) return;
      out.push(`# ${title}\r\n${lines.map(([k, v]) => `${k}:${v}\r\n`).join("")}`);
    };
    section("Server", [
      ["redis_version", "7.0.0"],
      ["server_name", this.#serverName],
      ["redis_mode", "standalone"],
      ["os", `${typeof process !== "undefined" ? process.platform : "unknown"}`],
      ["arch_bits", 64],
      ["process_id", typeof process !== "undefined" ? process.pid : 0],
      ["tcp_port", this.port],
      ["uptime_in_seconds", up],
      ["uptime_in_days", Math.floor(up / 86400)],
    ]);
    section("Clients", [
      ["connected_clients", this.#conns.size],
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
      ["pm_persist_mode", pool.persistMode],
      ["log_capacity", ls.capacity],
      ["log_live_bytes", ls.liveBytes],
      ["log_free_bytes", ls.freeBytes],
      ["log_commits", ls.commits],
      ["log_compactions", ls.compactions],
      ["log_recovered_keys", this.log.recovery.liveKeys],
      ["log_recovery_damage", this.log.recovery.damage || "none"],
    ]);
    section("Stats", [
      ["total_connections_received", this.stats.connections],
      ["total_commands_processed", this.stats.commands],
      ["total_reads_processed", this.stats.reads],
      ["total_writes_processed", this.stats.writes],
      ["keyspace_hits", this.stats.hits],
      ["keyspace_misses", this.stats.misses],
      ["expired_keys", this.stats.expired],
      ["total_error_replies", this.stats.errors],
      ["rejected_values_too_large", this.stats.tooLarge],
      ["rejected_writes_pool_full", this.stats.full],
      ["group_commits", this.stats.commits],
      ["command_ring_waits", this.stats.ringWaits],
      ["refused_sends", this.stats.refusedSends],
      ["value_bytes_sent_by_name", this.stats.bytesByName],
      ["value_bytes_copied", this.stats.bytesCopied],
    ]);
    const keys = this.log.size;
    section("Keyspace", keys ? [["db0", `keys=${keys},expires=${this.#expires.size},avg_ttl=0`]] : []);
    return out.join("\r\n");
  }

  // ---- records ---------------------------------------------------------------------------

  /** The live, unexpired value of `key` (an expired one is deleted), or null. */
  #read(key: Uint8Array | null): Value | null {
    this.stats.reads++;
    if (!key) {
      this.stats.misses++;
      return null;
    }
    const names = this.log.get(key);
    if (!names || names.length === 0) {
      this.stats.misses++;
      return null;
    }
    const h = names[0]!;
    let expireAt = 0;
    let value = names;
    const t = this.#header(h);
    if (t >= 0) {
      expireAt = t;
      value = names.slice(1);
      if (h.length > KV_HEADER)
        value.unshift({ index: h.index, offset: h.offset + KV_HEADER, length: h.length - KV_HEADER });
    }
    if (expireAt && this.#now() > expireAt) {
      this.#expire(key);
      this.stats.misses++;
      return null;
    }
    let len = 0;
    for (const n of value) len += n.length;
    this.stats.hits++;
    return { names: value, len, expireAt };
  }

  /** A record header's expiry (unix ms, 0 = none), or -1 when `h` is no record header. */
  #header(h: BufferName): number {
    if (h.length < KV_HEADER) return -1;
    const v = this.stack.pool.view(h.index, h.offset, KV_HEADER);
    if (v[0] !== MAGIC[0] || v[1] !== MAGIC[1] || v[2] !== MAGIC[2] || v[3] !== MAGIC[3] || v[4] !== VERSION) return -1;
    // no expiry is eight zero bytes (0.0): the common case needs no DataView
    if ((v[8]! | v[9]! | v[10]! | v[11]! | v[12]! | v[13]! | v[14]! | v[15]!) === 0) return 0;
    return new DataView(v.buffer, v.byteOffset, KV_HEADER).getFloat64(8, true);
  }

  #headerExpiry(h: BufferName | undefined): number {
    return h ? Math.max(0, this.#header(h)) : 0;
  }

  /** Deletes an expired key (the tombstone needs no reply to wait: the key is gone either way). */
  #expire(key: Uint8Array): void {
    this.log.delete(key);
    this.#forgetExpiry(key);
    this.#dirty = true;
    this.stats.expired++;
  }

  /** Removes expired keys: checks up to `max` entries, resuming where the last sweep stopped. */
  #sweep(now: number, max: number): void {
    let n = 0;
    let wrapped = false;
    while (n < max && this.#expires.size) {
      const r = (this.#sweepAt ??= this.#expires.entries()).next();
      if (r.done) {
        this.#sweepAt = null;
        if (wrapped) break;
        wrapped = true;
        continue;
      }
      n++;
      const [k, t] = r.value;
      if (now > t) {
        const key = Uint8Array.from(k, (ch) => ch.charCodeAt(0));
        if (this.#headerExpiry(this.log.get(key)?.[0]) === t) {
          this.log.delete(key);
          this.#dirty = true;
          this.stats.expired++;
        }
        this.#expires.delete(k);
      }
    }
  }

  #forgetExpiry(key: Uint8Array): void {
    if (this.#expires.size) this.#expires.delete(latin1(key));
  }

  /**
   * Appends `key -> [header (+ short value), ...value names]`. A short value is copied into
   * the arena after its header; a long one stays in the receive buffers it arrived in.
   */
  #put(key: Uint8Array, value: Arg | Uint8Array, expireAt: number): void {
    const small = value instanceof Uint8Array ? value : value.bytes;
    const head = this.#arenaTake(KV_HEADER + (small ? small.length : 0));
    const pool = this.stack.pool;
    const v = pool.view(head.index, head.offset, head.length);
    v.set(MAGIC);
    v[4] = VERSION;
    if (expireAt) {
      v[5] = v[6] = v[7] = 0;
      new DataView(v.buffer, v.byteOffset, KV_HEADER).setFloat64(8, expireAt, true);
    } else v.fill(0, 5, KV_HEADER); // 0.0 is eight zero bytes
    if (small) v.set(small, KV_HEADER);
    const names = small ? [head] : [head, ...(value as Arg).names];
    this.log.append(key, names);
    this.#waiting++;
    if (expireAt) this.#expires.set(latin1(key), expireAt);
    else this.#forgetExpiry(key);
  }

  /** A range of `n` bytes of the arena buffer (a fresh one when the current is full). */
  #arenaTake(n: number): BufferName {
    const pool = this.stack.pool;
    if (this.#arena < 0 || this.#arenaAt + n > BUF_SIZE) {
      const fresh = pool.alloc(); // may throw PoolExhaustedError: the command gets -OOM
      if (this.#arena >= 0) pool.free(this.#arena); // the log's references keep it while needed
      this.#arena = fresh;
      this.#arenaAt = 0;
    }
    const at = this.#arenaAt;
    this.#arenaAt += (n + 7) & ~7;
    return { index: this.#arena, offset: at, length: n };
  }

  // ---- arguments -------------------------------------------------------------------------

  #bytes(a: Arg): Uint8Array {
    return a.bytes ?? this.#concat(a.names, a.len);
  }

  #text(a: Arg): string {
    return dec.decode(this.#bytes(a));
  }

  /** The key's bytes, or null if no key of that size can exist (1..LOG_MAX_KEY bytes). */
  #keyOf(a: Arg): Uint8Array | null {
    if (a.len === 0 || a.len > LOG_MAX_KEY) return null;
    return this.#bytes(a);
  }

  #concat(names: BufferName[], len: number): Uint8Array {
    const out = new Uint8Array(len);
    let at = 0;
    for (const n of names) {
      out.set(this.stack.pool.viewName(n), at);
      at += n.length;
    }
    return out;
  }

  // ---- replies ---------------------------------------------------------------------------

  /** `$len\r\n` + the value's PM ranges by name + `\r\n`, or nil. */
  #bulkValue(v: Value | null, parts: Part[]): void {
    if (!v) {
      parts.push(NIL);
      return;
    }
    parts.push(bulkHead(v.len));
    const pool = this.stack.pool;
    for (const n of v.names) {
      if (n.length === 0) continue;
      if (n.length < KV_MIN_BY_NAME) {
        // a short piece is copied into the reply's text: a segment is built from at most 64
        // pieces (the core's limit), so pieces this short would cut the segments short
        parts.push(pool.viewName(n).slice());
        this.stats.bytesCopied += n.length;
        continue;
      }
      this.stats.bytesByName += n.length;
      pool.ref(n.index); // a later write may supersede the record before the reply leaves
      parts.push(n);
    }
    parts.push(CRLF);
  }

  #error(c: Conn, msg: string): void {
    this.stats.errors++;
    this.#push(c, [errorLine(msg)]);
  }

  #push(c: Conn, parts: Part[], close = false): void {
    if (c.closing) {
      this.#release(parts);
      return;
    }
    // a write's reply waits for the turn's commit, and so does any reply after an uncommitted
    // write (any connection's): it may show that write, and on its own connection it must keep
    // its place in line. A write that changed nothing (FLUSHALL of an empty store) appended no
    // record, no commit will come for it, and it is answered at once (it used to wait forever)
    c.replies.push({ parts, durable: this.#waiting > 0, close });
    if (close) c.closing = true;
  }

  /** Our references on a reply's values, for a reply that will not be sent. */
  #release(parts: Part[]): void {
    for (const p of parts) if (!(p instanceof Uint8Array)) this.stack.pool.free(p.index);
  }

  /**
   * Hands the replies that are ready on `c` to its send queue, in order (a durable one holds
   * back the rest), then the FIN if the connection is closing; returns the window.
   */
  #service(c: Conn): void {
    if (c.closed) {
      this.#pending.delete(c);
      return;
    }
    const stack = this.stack;
    if (c.unrecvd > 0 && stack.commandSpace() > 2) {
      stack.recvd(c.id, c.unrecvd);
      c.unrecvd = 0;
    }
    let sent = false;
    while (c.replies.length && !c.replies[0]!.durable) {
      const r = c.replies.shift()!;
      for (const p of r.parts) {
        if (p instanceof Uint8Array) this.#write(c, p);
        else {
          this.#sendOut(c);
          c.q.send(p, true); // the queue drops our reference once the core holds its own
        }
      }
      sent = true;
      if (r.close) {
        for (const x of c.replies) this.#release(x.parts);
        c.replies.length = 0;
      }
    }
    this.#sendOut(c);
    if (sent && !c.q.blocked && !c.q.idle) this.stats.ringWaits++; // the rest at a later turn's end
    if (c.replies.length === 0 && (c.closing || c.peerClosed)) {
      // the FIN follows every queued byte, once the core has taken them all
      c.closed = true;
      c.q.close();
    }
    if (c.unrecvd > 0) this.#pending.add(c);
    else this.#pending.delete(c);
  }

  /** Appends text to the connection's outgoing buffer, sending full ones. */
  #write(c: Conn, bytes: Uint8Array): void {
    const pool = this.stack.pool;
    let at = 0;
    while (at < bytes.length) {
      if (c.out < 0) {
        c.out = pool.alloc();
        c.outLen = 0;
        c.outView = pool.view(c.out, HEADROOM, TEXT_CAP); // one view per buffer, not per reply
      }
      const n = Math.min(TEXT_CAP - c.outLen, bytes.length - at);
      const v = c.outView!;
      if (at === 0 && n === bytes.length) v.set(bytes, c.outLen);
      else v.set(bytes.subarray(at, at + n), c.outLen);
      c.outLen += n;
      at += n;
      if (c.outLen === TEXT_CAP) this.#sendOut(c);
    }
  }

  #sendOut(c: Conn): void {
    if (c.out < 0) return;
    const name = { index: c.out, offset: HEADROOM, length: c.outLen };
    c.out = -1;
    c.outView = null;
    if (name.length === 0) this.stack.pool.free(name.index);
    else c.q.send(name);
  }

  #forget(c: Conn): void {
    const pool = this.stack.pool;
    c.q.drop();
    for (const b of c.held) pool.free(b);
    for (const r of c.replies) this.#release(r.parts);
    if (c.out >= 0) pool.free(c.out);
    c.outView = null;
    c.held = [];
    c.replies = [];
    c.out = -1;
    c.closed = true;
    this.#pending.delete(c);
    this.#conns.delete(c.id);
    this.#clientIds.delete(c.id);
  }
}

function globRegExp(glob: string): RegExp {
  let re = "";
  for (const ch of glob) {
    if (ch === "*") re += ".*";
    else if (ch === "?") re += ".";
    else re += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

// The key-value store's commands: the table (Redis's arity, flags and key positions, which
// COMMAND reports and the dispatcher checks) and one handler per command, with Redis's
// semantics and error replies. Handlers see the store and the connection through `Kv`
// (kv.ts): values are written by items (zero copy for what arrived as PM ranges) and answered
// from PM by name or as streams.

import type { PmLog } from "../../log.js";
import { ObjectCursor } from "../../object.js";
import { heldName } from "../../paste.js";
import type { Conn, Part } from "../conn.js";
import {
  arrayHead,
  bulk,
  bulkHead,
  CRLF,
  E_FLOAT,
  E_INT,
  E_SYNTAX,
  EMPTY_BULK,
  int,
  nested,
  NIL,
  OK,
  ONE,
  PONG,
  str,
  ZERO,
  type Nested,
} from "./reply.js";
import { addLongDouble, formatLongDouble, isInfinite, parseLongDouble, type LongDouble } from "./float.js";
import { KV_SMALL, KV_VALUE_ITEMS, pushValue, type KvStore, type Value } from "./store.js";
import type { RemoteValue } from "../loan.js";
import type { ObjectWriter } from "../../object.js";
import type { ClusterState, SlotKeys } from "./cluster.js";
import type { ClusterBus } from "./bus.js";
import { dumpCommand, migrateCommand, restoreCommand, type Migrator } from "./migrate.js";
import { askingCommand, clusterCommand, readonlyCommand } from "./cluster-commands.js";

/** Redis's proto-max-bulk-len: the largest value (and argument). */
export const KV_MAX_BULK = 512 * 1024 * 1024;

const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);

/** A command argument: a short one copied, a long one kept in PM by an ObjectWriter. */
export interface Arg {
  /**
   * A short argument's bytes: `src[at, at + len)`, a range of the parser's arena (kept as it
   * is; read it through Kv.bytes(), which copies it out once, or in place where no copy is
   * needed: the command's name, GET's key). null for a long one (its bytes are in `writer`).
   */
  src: Uint8Array | null;
  at: number;
  /** The argument's bytes as an array of their own, once Kv.bytes() made them. */
  bytes: Uint8Array | null;
  writer: ObjectWriter | null;
  len: number;
  /** The pool reached its reserve while this argument arrived: nothing of it was kept. */
  full: boolean;
  /**
   * Sharded: a value another worker keeps for this command (its loan): a write names it; an
   * argument no command took is released (kv/shard.ts).
   */
  remote: RemoteValue | null;
}

/** Per-connection state of the store's clients. */
export interface KvClient {
  id: number;
  name: string | null;
  /** Authenticated (always, when the server has no password). */
  authed: boolean;
  /** Failed AUTHs on this connection since its last success (their delay grows). */
  authFails: number;
  /** The answer to its last failed AUTH is held until this time (the connection layer's clock). */
  heldUntil: number;
  /** Cluster mode: ASKING was the last command (it holds for the next one). */
  asking: boolean;
  /** Cluster mode: READONLY (reads from a replica; this node has none yet). */
  readonly: boolean;
}

/** What the handlers use of the app (kv.ts implements it). */
export interface Kv {
  readonly store: KvStore;
  readonly log: PmLog;
  /** The store's counters (INFO's keyspace_hits, total_writes_processed...), updated in place. */
  readonly counters: { reads: number; writes: number; hits: number; misses: number; migrated: number };
  now(): number;
  reply(c: Conn<KvClient>, parts: Part[], close?: boolean): void;
  error(c: Conn<KvClient>, msg: string): void;
  /** An argument's bytes (a long one copied out of PM: keys, numbers, options). */
  bytes(a: Arg): Uint8Array;
  text(a: Arg): string;
  /** The key's bytes, or null if no key of that size can exist. */
  key(a: Arg): Uint8Array | null;
  info(sections: string[]): string;
  clients(): Conn<KvClient>[];
  config: Record<string, string>;
  resetStats(): void;
  /** The server wants a password (AUTH before anything else). */
  readonly requiresAuth: boolean;
  /** Cluster mode's state and the keys of each slot (both null on a standalone server). */
  readonly cluster: ClusterState | null;
  readonly slots: SlotKeys | null;
  /** Cluster mode's bus (null on a standalone server). */
  readonly bus: ClusterBus | null;
  /** MIGRATE's connections to other nodes. */
  readonly migrator: Migrator | null;
  /**
   * Holds the client: its later commands wait until the returned function is called (MIGRATE
   * answers when the target has).
   */
  block(c: Conn<KvClient>): () => void;
  /** Holds these keys: a command of any client touching one waits until the returned function is called. */
  holdKeys(keys: Uint8Array[]): () => void;
  /**
   * Checks a user (null: `default`) and password: calls `ok` on success; answers the failure
   * itself (-WRONGPASS, held by the rate limit, or Redis's error for AUTH with no password set).
   */
  authenticate(c: Conn<KvClient>, user: Arg | null, pass: Arg, ok: () => void): void;
}

export interface CmdSpec {
  arity: number;
  flags: string[];
  /** flags has "denyoom" (a write that a full pool refuses): looked up once per command. */
  denyoom: boolean;
  /** flags has "no_auth": runs before the client authenticated (AUTH, HELLO, QUIT). */
  noauth: boolean;
  /** flags has "asking": runs on an importing slot as if ASKING came first (RESTORE-ASKING). */
  asking: boolean;
  first: number;
  last: number;
  step: number;
  group: string;
  summary: string;
  since: string;
  run: (k: Kv, c: Conn<KvClient>, a: Arg[]) => void;
}

const spec = (
  arity: number,
  flags: string,
  keys: [number, number, number],
  group: string,
  since: string,
  summary: string,
  run: CmdSpec["run"],
): CmdSpec => {
  const f = flags ? flags.split(" ") : [];
  return {
    arity,
    flags: f,
    denyoom: f.includes("denyoom"),
    noauth: f.includes("no_auth"),
    asking: f.includes("asking"),
    first: keys[0],
    last: keys[1],
    step: keys[2],
    group,
    since,
    summary,
    run,
  };
};

const KEY1: [number, number, number] = [1, 1, 1];
const NOKEY: [number, number, number] = [0, 0, 0];

/** The commands, with Redis's arity (negative: at least) and key positions. */
export const KV_COMMANDS: Record<string, CmdSpec> = {
  // connection
  ping: spec(-1, "fast", NOKEY, "connection", "1.0.0", "Returns the server's liveliness response.", (k, c, a) => {
    if (a.length > 2) return k.error(c, "ERR wrong number of arguments for 'ping' command");
    k.reply(c, [a.length === 2 ? bulk(k.bytes(a[1]!)) : PONG]);
  }),
  echo: spec(2, "fast", NOKEY, "connection", "1.0.0", "Returns the given string.", (k, c, a) =>
    k.reply(c, [bulk(k.bytes(a[1]!))]),
  ),
  select: spec(2, "loading stale fast", NOKEY, "connection", "2.0.0", "Changes the selected database.", (k, c, a) => {
    const db = parseI64(k.bytes(a[1]!));
    if (db === null) return k.error(c, E_INT);
    if (db !== 0n)
      return k.error(c, k.cluster ? "ERR SELECT is not allowed in cluster mode" : "ERR DB index is out of range");
    k.reply(c, [OK]);
  }),
  quit: spec(-1, "fast no_auth", NOKEY, "connection", "1.0.0", "Closes the connection.", (k, c) =>
    k.reply(c, [OK], true),
  ),
  hello: spec(
    -1,
    "noscript loading stale fast no_auth",
    NOKEY,
    "connection",
    "6.0.0",
    "Handshakes with the server.",
    hello,
  ),
  auth: spec(
    -2,
    "noscript loading stale fast no_auth",
    NOKEY,
    "connection",
    "1.0.0",
    "Authenticates the connection.",
    (k, c, a) => {
      if (a.length > 3) return k.error(c, E_SYNTAX);
      k.authenticate(c, a.length === 3 ? a[1]! : null, a[a.length - 1]!, () => k.reply(c, [OK]));
    },
  ),
  client: spec(-2, "", NOKEY, "connection", "2.4.0", "A container for client connection commands.", client),
  // strings
  set: spec(-3, "write denyoom", KEY1, "string", "1.0.0", "Sets the string value of a key, durably.", set),
  setnx: spec(
    3,
    "write denyoom fast",
    KEY1,
    "string",
    "1.0.0",
    "Sets a key only when it does not exist.",
    (k, c, a) => {
      const key = keyOr(k, c, a[1]!);
      if (!key) return;
      if (k.store.read(key)) return k.reply(c, [ZERO]);
      write(k, key, a[2]!, 0);
      k.reply(c, [ONE]);
    },
  ),
  setex: spec(4, "write denyoom", KEY1, "string", "2.0.0", "Sets a key and its expiry in seconds.", (k, c, a) =>
    setWithExpiry(k, c, a, 1000, "setex"),
  ),
  psetex: spec(4, "write denyoom", KEY1, "string", "2.6.0", "Sets a key and its expiry in milliseconds.", (k, c, a) =>
    setWithExpiry(k, c, a, 1, "psetex"),
  ),
  get: spec(2, "readonly fast", KEY1, "string", "1.0.0", "Returns the string value of a key.", (k, c, a) => {
    let parts = rangesReply(k, a[1]!);
    if (!parts) valueParts(k, read(k, k.key(a[1]!)), (parts = []));
    k.reply(c, parts);
  }),
  getset: spec(3, "write denyoom fast", KEY1, "string", "1.0.0", "Sets a key and returns its old value.", (k, c, a) => {
    const key = keyOr(k, c, a[1]!);
    if (!key) return;
    const parts: Part[] = [];
    valueParts(k, read(k, key), parts); // the old value's buffers stay referenced by the reply
    write(k, key, a[2]!, 0);
    k.reply(c, parts);
  }),
  getdel: spec(2, "write fast", KEY1, "string", "6.2.0", "Returns a key's value and deletes it.", (k, c, a) => {
    const key = k.key(a[1]!);
    const v = read(k, key);
    const parts: Part[] = [];
    valueParts(k, v, parts);
    if (v && key) {
      k.store.delete(key);
      k.counters.writes++;
    }
    k.reply(c, parts);
  }),
  getex: spec(-2, "write fast", KEY1, "string", "6.2.0", "Returns a key's value and sets its expiry.", getex),
  mset: spec(-3, "write denyoom", [1, -1, 2], "string", "1.0.1", "Atomically creates or modifies keys.", (k, c, a) =>
    mset(k, c, a, false),
  ),
  msetnx: spec(
    -3,
    "write denyoom",
    [1, -1, 2],
    "string",
    "1.0.1",
    "Sets keys only when none of them exist.",
    (k, c, a) => mset(k, c, a, true),
  ),
  mget: spec(
    -2,
    "readonly fast",
    [1, -1, 1],
    "string",
    "1.0.0",
    "Atomically returns the values of keys.",
    (k, c, a) => {
      const parts: Part[] = [arrayHead(a.length - 1)];
      for (let i = 1; i < a.length; i++) valueParts(k, read(k, k.key(a[i]!)), parts);
      k.reply(c, parts);
    },
  ),
  incr: spec(
    2,
    "write denyoom fast",
    KEY1,
    "string",
    "1.0.0",
    "Increments the integer value of a key by one.",
    (k, c, a) => incr(k, c, a[1]!, 1n),
  ),
  decr: spec(
    2,
    "write denyoom fast",
    KEY1,
    "string",
    "1.0.0",
    "Decrements the integer value of a key by one.",
    (k, c, a) => incr(k, c, a[1]!, -1n),
  ),
  incrby: spec(
    3,
    "write denyoom fast",
    KEY1,
    "string",
    "1.0.0",
    "Increments the integer value of a key.",
    (k, c, a) => {
      const by = parseI64(k.bytes(a[2]!));
      if (by === null) return k.error(c, E_INT);
      incr(k, c, a[1]!, by);
    },
  ),
  decrby: spec(
    3,
    "write denyoom fast",
    KEY1,
    "string",
    "1.0.0",
    "Decrements the integer value of a key.",
    (k, c, a) => {
      const by = parseI64(k.bytes(a[2]!));
      if (by === null) return k.error(c, E_INT);
      if (by === I64_MIN) return k.error(c, "ERR decrement would overflow");
      incr(k, c, a[1]!, -by);
    },
  ),
  incrbyfloat: spec(
    3,
    "write denyoom fast",
    KEY1,
    "string",
    "2.6.0",
    "Increments the floating point value of a key.",
    incrbyfloat,
  ),
  append: spec(3, "write denyoom", KEY1, "string", "2.0.0", "Appends a string to the value of a key.", append),
  strlen: spec(2, "readonly fast", KEY1, "string", "2.2.0", "Returns the length of a string value.", (k, c, a) => {
    const v = read(k, k.key(a[1]!));
    k.reply(c, [int(v ? v.len : 0)]);
  }),
  getrange: spec(4, "readonly", KEY1, "string", "2.4.0", "Returns a substring of the string value of a key.", getrange),
  substr: spec(4, "readonly", KEY1, "string", "1.0.0", "Returns a substring of the string value of a key.", getrange),
  setrange: spec(
    4,
    "write denyoom",
    KEY1,
    "string",
    "2.2.0",
    "Overwrites part of a string value from an offset.",
    setrange,
  ),
  // keys
  del: spec(-2, "write", [1, -1, 1], "generic", "1.0.0", "Deletes keys, durably.", (k, c, a) => {
    let n = 0;
    for (let i = 1; i < a.length; i++) {
      const key = k.key(a[i]!);
      if (key && read(k, key)) {
        k.store.delete(key);
        n++;
      }
    }
    k.counters.writes++;
    k.reply(c, [int(n)]);
  }),
  exists: spec(-2, "readonly fast", [1, -1, 1], "generic", "1.0.0", "Determines whether keys exist.", (k, c, a) => {
    let n = 0;
    for (let i = 1; i < a.length; i++) if (read(k, k.key(a[i]!))) n++;
    k.reply(c, [int(n)]);
  }),
  expire: spec(-3, "write fast", KEY1, "generic", "1.0.0", "Sets a key's expiry in seconds.", (k, c, a) =>
    expire(k, c, a, 1000, false, "expire"),
  ),
  pexpire: spec(-3, "write fast", KEY1, "generic", "2.6.0", "Sets a key's expiry in milliseconds.", (k, c, a) =>
    expire(k, c, a, 1, false, "pexpire"),
  ),
  expireat: spec(
    -3,
    "write fast",
    KEY1,
    "generic",
    "1.2.0",
    "Sets a key's expiry to a unix time in seconds.",
    (k, c, a) => expire(k, c, a, 1000, true, "expireat"),
  ),
  pexpireat: spec(-3, "write fast", KEY1, "generic", "2.6.0", "Sets a key's expiry to a unix time in ms.", (k, c, a) =>
    expire(k, c, a, 1, true, "pexpireat"),
  ),
  persist: spec(2, "write fast", KEY1, "generic", "2.2.0", "Removes a key's expiry.", (k, c, a) => {
    const key = k.key(a[1]!);
    const v = read(k, key);
    if (!v || !key || !v.expireAt) return k.reply(c, [ZERO]);
    rewriteExpiry(k, key, v, 0);
    k.reply(c, [ONE]);
  }),
  ttl: spec(
    2,
    "readonly fast",
    KEY1,
    "generic",
    "1.0.0",
    "Returns the expiration time in seconds of a key.",
    (k, c, a) => ttl(k, c, a, false),
  ),
  pttl: spec(2, "readonly fast", KEY1, "generic", "2.6.0", "Returns the expiration time in ms of a key.", (k, c, a) =>
    ttl(k, c, a, true),
  ),
  // server
  dbsize: spec(1, "readonly fast", NOKEY, "server", "1.0.0", "Returns the number of keys.", (k, c) => {
    k.store.sweepAll();
    k.reply(c, [int(k.store.size)]);
  }),
  flushall: spec(-1, "write", NOKEY, "server", "1.0.0", "Removes all keys, durably.", flush),
  flushdb: spec(-1, "write", NOKEY, "server", "1.0.0", "Removes all keys, durably.", flush),
  info: spec(-1, "loading stale", NOKEY, "server", "1.0.0", "Returns information and statistics.", (k, c, a) =>
    k.reply(c, [bulk(k.info(a.slice(1).map((x) => k.text(x))))]),
  ),
  command: spec(
    -1,
    "loading stale",
    NOKEY,
    "server",
    "2.8.13",
    "Returns detailed information about commands.",
    command,
  ),
  config: spec(-2, "", NOKEY, "server", "2.0.0", "A container for server configuration commands.", config),
  // moving keys (kv/migrate.ts)
  dump: spec(
    2,
    "readonly",
    KEY1,
    "generic",
    "2.6.0",
    "Returns a serialized representation of the value of a key.",
    dumpCommand,
  ),
  restore: spec(
    -4,
    "write denyoom",
    KEY1,
    "generic",
    "2.6.0",
    "Creates a key from the serialized representation of a value.",
    restoreCommand,
  ),
  "restore-asking": spec(
    -4,
    "write denyoom asking",
    KEY1,
    "server",
    "3.0.0",
    "An internal command for migrating keys in a cluster.",
    restoreCommand,
  ),
  migrate: spec(
    -6,
    "write",
    NOKEY,
    "generic",
    "2.6.0",
    "Atomically transfers a key from one Redis instance to another.",
    migrateCommand,
  ),
  // cluster (kv/cluster-commands.ts)
  cluster: spec(-2, "", NOKEY, "cluster", "3.0.0", "A container for Redis Cluster commands.", clusterCommand),
  asking: spec(
    1,
    "fast",
    NOKEY,
    "cluster",
    "3.0.0",
    "Signals that a cluster client is following an -ASK redirect.",
    (k, c) => askingCommand(k, c),
  ),
  readonly: spec(
    1,
    "loading stale fast",
    NOKEY,
    "cluster",
    "3.0.0",
    "Enables read-only queries for a connection to a replica.",
    (k, c) => readonlyCommand(k, c, true),
  ),
  readwrite: spec(
    1,
    "loading stale fast",
    NOKEY,
    "cluster",
    "3.0.0",
    "Enables read-write queries for a connection to a replica.",
    (k, c) => readonlyCommand(k, c, false),
  ),
};

export const COMMANDS = new Map(Object.entries(KV_COMMANDS));

// ---- helpers ------------------------------------------------------------------------------------

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
  const v = BigInt(latin(b));
  return v > I64_MAX || v < I64_MIN ? null : v;
}

const latin = (b: Uint8Array): string => {
  let s = "";
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
};

/** The live value of `key` (null key: no such key can exist), counting hits and misses. */
function read(k: Kv, key: Uint8Array | null): Value | null {
  const v = key ? k.store.read(key) : null;
  countRead(k, v !== null);
  return v;
}

/** A read's counters (INFO's total_reads_processed, keyspace_hits, keyspace_misses). */
function countRead(k: Kv, hit: boolean): void {
  k.counters.reads++;
  if (hit) k.counters.hits++;
  else k.counters.misses++;
}

function keyOr(k: Kv, c: Conn<KvClient>, a: Arg): Uint8Array | null {
  const key = k.key(a);
  if (!key) k.error(c, "ERR pmstack: a key must be 1 to 1024 bytes");
  return key;
}

/** KvStore.ranges()'s output: up to RANGES_MAX data ranges. */
const RANGES_MAX = 8;
const RANGES = new Uint32Array(1 + 3 * RANGES_MAX);

/**
 * The parts valueParts(k, read(k, key), parts) makes, for a short key and the common value (a
 * few data ranges), without the objects read() makes: GET's path. null when read() must
 * answer (KvStore.ranges()).
 */
function rangesReply(k: Kv, key: Arg): Part[] | null {
  // a short key, read where the parser put it (a long one, or none: read() answers)
  if (!key.src || key.len === 0) return null;
  return getReply(k, key.src, key.at, key.len);
}

/**
 * GET's reply for the key `src[at, at + len)` (1 byte or more) as rangesReply makes it, with its
 * read counted; null when read() must answer, with nothing counted.
 */
export function getReply(k: Kv, src: Uint8Array, at: number, keyLen: number): Part[] | null {
  const len = k.store.ranges(src, at, keyLen, RANGES, RANGES_MAX);
  if (len === -2) return null;
  countRead(k, len !== -1);
  if (len === -1) return [NIL];
  if (len === 0) return [EMPTY_BULK];
  const pool = k.store.pool;
  const n = RANGES[0]!;
  const head = bulkHead(len);
  // the SET's own framing around the value, where it still lies in PM: the reply is then the
  // value's ranges widened over it, by name (no text copied; one send command less or two)
  const framed = k.store.framing(RANGES, head);
  const parts: Part[] = [];
  if ((framed & 1) === 0) parts.push(head);
  for (let j = 0; j < n; j++) {
    const index = RANGES[1 + 3 * j]!;
    let offset = RANGES[2 + 3 * j]!;
    let length = RANGES[3 + 3 * j]!;
    if (j === 0 && (framed & 1) !== 0) {
      offset -= head.length;
      length += head.length;
    }
    if (j === n - 1 && (framed & 2) !== 0) length += 2;
    if (length === 0) continue;
    pool.ref(index);
    parts.push(heldName(index, offset, length)); // the send queue keeps this object
  }
  if ((framed & 2) === 0) parts.push(CRLF);
  return parts;
}

/**
 * A value's reply: `$len`, its bytes, CRLF; nil for none. A value of a few data ranges goes out
 * by name (each holds a reference of the reply's: a later write may supersede the record
 * before the reply leaves); a longer one streams from PM (pinned while it does).
 */
export function valueParts(k: Kv, v: Value | null, parts: Part[], start = 0, end = v ? v.len : 0): void {
  if (!v) {
    parts.push(NIL);
    return;
  }
  if (end <= start) {
    parts.push(EMPTY_BULK);
    return;
  }
  parts.push(bulkHead(end - start));
  const items = v.obj.names;
  if (start === 0 && end === v.len && items.length <= 8 && !items.some((x) => x.height)) {
    for (const n of items) {
      if (n.length === 0) continue;
      k.store.pool.ref(n.index);
      parts.push(heldName(n.index, n.offset, n.length));
    }
  } else parts.push({ stream: v.obj, start, end });
  parts.push(CRLF);
}

/** Writes `key -> the value argument`, which it consumes (its writer's ranges become the value's). */
function write(k: Kv, key: Uint8Array, value: Arg, expireAt: number): void {
  if (value.remote) {
    // the bytes stay in the lender's pool, where its NIC wrote them: the record names its loan
    k.store.putRemote(key, value.remote, expireAt);
    value.remote = null;
  } else if (value.writer) {
    const w = value.writer;
    value.writer = null;
    try {
      k.store.put(key, w.finish().names, null, expireAt);
    } finally {
      w.release();
    }
  } else k.store.putBytes(key, k.bytes(value), expireAt);
  k.counters.writes++;
}

/** Rewrites a live value's record with a new expiry: the same items (no byte moves), a new trailer. */
function rewriteExpiry(k: Kv, key: Uint8Array, v: Value, expireAt: number): void {
  k.store.put(key, v.obj.names, null, expireAt);
  k.counters.writes++;
}

/**
 * An expiry option's absolute time (unix ms), or an error message: Redis's bounds (the time
 * positive; in ms, and added to now for EX/PX, within a signed 64-bit integer).
 */
function expireTime(k: Kv, unit: string, when: Arg, cmd: string): number | string {
  const t = parseI64(k.bytes(when));
  if (t === null) return E_INT;
  const bad = `ERR invalid expire time in '${cmd}' command`;
  if (t <= 0n) return bad;
  const at = absoluteMs(k, t, unit === "EX" || unit === "EXAT" ? 1000n : 1n, unit === "EX" || unit === "PX");
  return at ?? bad;
}

/** `t` (seconds or ms) as unix ms, relative to now or not; null past Redis's int64 bounds. */
function absoluteMs(k: Kv, t: bigint, unit: bigint, relative: boolean): number | null {
  if (t > I64_MAX / unit || t < I64_MIN / unit) return null;
  let ms = t * unit;
  if (relative) {
    const now = BigInt(Math.floor(k.now()));
    if (ms > I64_MAX - now) return null;
    ms += now;
  }
  return Number(ms);
}

// ---- string commands ------------------------------------------------------------------------------

function set(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  if (a.length === 3) {
    // SET key value: no option to read
    const key = keyOr(k, c, a[1]!);
    if (!key) return;
    write(k, key, a[2]!, 0);
    return k.reply(c, [OK]);
  }
  let nx = false;
  let xx = false;
  let get = false;
  let keepTtl = false;
  let unit = ""; // EX PX EXAT PXAT
  let when: Arg | null = null;
  for (let i = 3; i < a.length; i++) {
    const o = k.text(a[i]!).toUpperCase();
    if (o === "NX" && !xx) nx = true;
    else if (o === "XX" && !nx) xx = true;
    else if (o === "GET") get = true;
    else if (o === "KEEPTTL" && !unit) keepTtl = true;
    else if (
      (o === "EX" || o === "PX" || o === "EXAT" || o === "PXAT") &&
      (!unit || unit === o) && // a repeated option: the last one counts (Redis 7.0)
      !keepTtl &&
      i + 1 < a.length
    ) {
      unit = o;
      when = a[++i]!;
    } else return k.error(c, E_SYNTAX);
  }
  let expireAt = 0;
  if (when) {
    const t = expireTime(k, unit, when, "set");
    if (typeof t === "string") return k.error(c, t);
    expireAt = t;
  }
  const key = keyOr(k, c, a[1]!);
  if (!key) return;
  const old = nx || xx || get || keepTtl ? read(k, key) : null;
  const parts: Part[] = [];
  if (get) valueParts(k, old, parts);
  if ((nx && old) || (xx && !old)) {
    if (!get) parts.push(NIL);
    return k.reply(c, parts);
  }
  if (keepTtl && old) expireAt = old.expireAt;
  write(k, key, a[2]!, expireAt);
  if (!get) parts.push(OK);
  k.reply(c, parts);
}

function setWithExpiry(k: Kv, c: Conn<KvClient>, a: Arg[], unitMs: number, cmd: string): void {
  const key = keyOr(k, c, a[1]!);
  if (!key) return;
  const t = expireTime(k, unitMs === 1000 ? "EX" : "PX", a[2]!, cmd);
  if (typeof t === "string") return k.error(c, t);
  write(k, key, a[3]!, t);
  k.reply(c, [OK]);
}

function getex(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  let unit = "";
  let when: Arg | null = null;
  let persist = false;
  for (let i = 2; i < a.length; i++) {
    const o = k.text(a[i]!).toUpperCase();
    if (
      (o === "EX" || o === "PX" || o === "EXAT" || o === "PXAT") &&
      (!unit || unit === o) &&
      !persist &&
      i + 1 < a.length
    ) {
      unit = o;
      when = a[++i]!;
    } else if (o === "PERSIST" && !unit) persist = true;
    else return k.error(c, E_SYNTAX);
  }
  // the options' syntax first, then the key (a missing one is nil, whatever the time says),
  // then the time, as Redis does
  const key = k.key(a[1]!);
  const v = read(k, key);
  if (!v) return k.reply(c, [NIL]);
  let expireAt = -1;
  if (when) {
    const t = expireTime(k, unit, when, "getex");
    if (typeof t === "string") return k.error(c, t);
    expireAt = t;
  } else if (persist) expireAt = 0;
  const parts: Part[] = [];
  valueParts(k, v, parts);
  if (v && key && expireAt >= 0 && expireAt !== v.expireAt) rewriteExpiry(k, key, v, expireAt);
  k.reply(c, parts);
}

function mset(k: Kv, c: Conn<KvClient>, a: Arg[], nx: boolean): void {
  if (a.length % 2 === 0) return k.error(c, `ERR wrong number of arguments for '${nx ? "msetnx" : "mset"}' command`);
  const keys: Uint8Array[] = [];
  for (let i = 1; i < a.length; i += 2) {
    const key = keyOr(k, c, a[i]!);
    if (!key) return;
    keys.push(key);
  }
  if (nx && keys.some((key) => k.store.read(key))) return k.reply(c, [ZERO]);
  for (let i = 1; i < a.length; i += 2) write(k, keys[(i - 1) / 2]!, a[i + 1]!, 0);
  k.reply(c, [nx ? ONE : OK]);
}

function incr(k: Kv, c: Conn<KvClient>, keyArg: Arg, by: bigint): void {
  const key = keyOr(k, c, keyArg);
  if (!key) return;
  const old = read(k, key);
  let cur = 0n;
  if (old) {
    if (old.len > 20) return k.error(c, E_INT);
    const v = parseI64(k.store.bytes(old));
    if (v === null) return k.error(c, E_INT);
    cur = v;
  }
  const next = cur + by;
  if (next > I64_MAX || next < I64_MIN) return k.error(c, "ERR increment or decrement would overflow");
  k.store.putBytes(key, str(next.toString()), old ? old.expireAt : 0);
  k.counters.writes++;
  k.reply(c, [int(next)]);
}

function incrbyfloat(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  const key = keyOr(k, c, a[1]!);
  if (!key) return;
  // Redis's long double arithmetic (kv/float.ts): the stored value first, then the increment
  const old = read(k, key);
  const cur = old ? (old.len < 5 * 1024 ? parseLongDouble(latin(k.store.bytes(old))) : null) : ZERO_LD;
  if (!cur) return k.error(c, E_FLOAT);
  const by = parseLongDouble(latin(k.bytes(a[2]!)));
  if (!by) return k.error(c, E_FLOAT);
  const next = addLongDouble(cur, by);
  if (!next || isInfinite(next)) return k.error(c, "ERR increment would produce NaN or Infinity");
  const s = formatLongDouble(next);
  k.store.putBytes(key, str(s), old ? old.expireAt : 0);
  k.counters.writes++;
  k.reply(c, [bulk(s)]);
}

const ZERO_LD: LongDouble = { neg: false, m: 0n, e: 0 };

/**
 * APPEND: the new value is the old one's items (shared: no byte moves or is persisted again)
 * and the argument's bytes; answers the new length.
 */
function append(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  const key = keyOr(k, c, a[1]!);
  if (!key) return;
  const arg = a[2]!;
  const old = read(k, key);
  if (!old) {
    write(k, key, arg, 0);
    return k.reply(c, [int(arg.len)]);
  }
  const len = old.len + arg.len;
  if (len > KV_MAX_BULK) return k.error(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
  if (arg.len === 0) return k.reply(c, [int(old.len)]);
  const w = k.log.writer(KV_VALUE_ITEMS);
  try {
    pushValue(w, old, old.obj.names);
    if (arg.writer) {
      const aw = arg.writer;
      arg.writer = null;
      try {
        w.pushObject(aw.finish());
      } finally {
        aw.release();
      }
    } else k.store.arena.pushCopy(w, k.bytes(arg));
    k.store.put(key, w.finish().names, null, old.expireAt);
  } finally {
    w.release();
  }
  k.counters.writes++;
  k.reply(c, [int(len)]);
}

/** Redis's GETRANGE index arithmetic: negative from the end, clamped; empty when start > end. */
function getrange(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  const s = parseI64(k.bytes(a[2]!));
  const e = parseI64(k.bytes(a[3]!));
  if (s === null || e === null) return k.error(c, E_INT);
  const v = read(k, k.key(a[1]!));
  if (!v || v.len === 0) return k.reply(c, [EMPTY_BULK]);
  const n = BigInt(v.len);
  let start = s < 0n ? n + s : s;
  let end = e < 0n ? n + e : e;
  if (start < 0n) start = 0n;
  if (end < 0n) end = 0n;
  if (end >= n) end = n - 1n;
  if (s < 0n && e < 0n && s > e) return k.reply(c, [EMPTY_BULK]);
  if (start > end) return k.reply(c, [EMPTY_BULK]);
  const parts: Part[] = [];
  valueParts(k, v, parts, Number(start), Number(end) + 1);
  k.reply(c, parts);
}

/**
 * SETRANGE: the new value is the old value's ranges before the offset, zeros up to it if the
 * old value is shorter, the argument's bytes, and the old value's ranges after them: the old
 * bytes are shared by name, only the argument and any zero padding are new.
 */
function setrange(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  const key = keyOr(k, c, a[1]!);
  if (!key) return;
  const o = parseI64(k.bytes(a[2]!));
  if (o === null) return k.error(c, E_INT);
  if (o < 0n) return k.error(c, "ERR offset is out of range");
  const arg = a[3]!;
  const old = read(k, key);
  if (arg.len === 0) return k.reply(c, [int(old ? old.len : 0)]);
  const off = Number(o);
  if (off + arg.len > KV_MAX_BULK) return k.error(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
  const oldLen = old ? old.len : 0;
  const len = Math.max(oldLen, off + arg.len);
  if (!old && off === 0) {
    write(k, key, arg, 0);
    return k.reply(c, [int(len)]);
  }
  const pool = k.store.pool;
  if (len <= KV_SMALL) {
    const b = new Uint8Array(len);
    if (old) b.set(k.store.bytes(old));
    b.set(k.bytes(arg), off);
    k.store.putBytes(key, b, old ? old.expireAt : 0);
    k.counters.writes++;
    return k.reply(c, [int(len)]);
  }
  const w = k.log.writer(KV_VALUE_ITEMS);
  const zeros: number[] = [];
  try {
    if (old) pushRange(w, old, 0, Math.min(off, oldLen));
    for (let at = oldLen; at < off;) {
      // zero padding: fresh buffers, zeroed (a free buffer holds whatever it held last)
      const n = Math.min(2048, off - at);
      const i = pool.alloc();
      zeros.push(i);
      pool.view(i, 0, n).fill(0);
      w.push({ index: i, offset: 0, length: n });
      at += n;
    }
    if (arg.writer) {
      const aw = arg.writer;
      arg.writer = null;
      try {
        w.pushObject(aw.finish());
      } finally {
        aw.release();
      }
    } else k.store.arena.pushCopy(w, k.bytes(arg));
    if (old && off + arg.len < oldLen) pushRange(w, old, off + arg.len, oldLen);
    k.store.put(key, w.finish().names, null, old ? old.expireAt : 0);
  } finally {
    w.release();
    for (const i of zeros) pool.free(i); // the value holds its own references
  }
  k.counters.writes++;
  k.reply(c, [int(len)]);
}

/** Pushes bytes [start, end) of a live value by name (its own are durable already: not persisted again). */
function pushRange(w: ObjectWriter, v: Value, start: number, end: number): void {
  if (end <= start) return;
  const cur = new ObjectCursor(w.pool, v.obj, start, end);
  const ranges = [];
  for (let r = cur.next(); r; r = cur.next()) ranges.push(r);
  pushValue(w, v, ranges);
}

// ---- keys -----------------------------------------------------------------------------------------

function expire(k: Kv, c: Conn<KvClient>, a: Arg[], unitMs: number, absolute: boolean, cmd: string): void {
  // the options first, then the time (Redis's order of errors)
  let nx = false;
  let xx = false;
  let gt = false;
  let lt = false;
  for (let i = 3; i < a.length; i++) {
    const o = k.text(a[i]!).toUpperCase();
    if (o === "NX") nx = true;
    else if (o === "XX") xx = true;
    else if (o === "GT") gt = true;
    else if (o === "LT") lt = true;
    else return k.error(c, `ERR Unsupported option ${k.text(a[i]!)}`);
  }
  if (nx && (xx || gt || lt)) return k.error(c, "ERR NX and XX, GT or LT options at the same time are not compatible");
  if (gt && lt) return k.error(c, "ERR GT and LT options at the same time are not compatible");
  const t = parseI64(k.bytes(a[2]!));
  if (t === null) return k.error(c, E_INT);
  const at = absoluteMs(k, t, BigInt(unitMs), !absolute);
  if (at === null) return k.error(c, `ERR invalid expire time in '${cmd}' command`);
  const key = k.key(a[1]!);
  const v = read(k, key);
  if (!v || !key) return k.reply(c, [ZERO]);
  const cur = v.expireAt; // 0: none, an infinite TTL for GT and LT
  if ((nx && cur) || (xx && !cur) || (gt && (!cur || at <= cur)) || (lt && cur && at >= cur)) return k.reply(c, [ZERO]);
  if (at <= k.now()) {
    // a time in the past deletes the key, as Redis does
    k.store.delete(key);
    k.counters.writes++;
    return k.reply(c, [ONE]);
  }
  rewriteExpiry(k, key, v, at);
  k.reply(c, [ONE]);
}

function ttl(k: Kv, c: Conn<KvClient>, a: Arg[], ms: boolean): void {
  const v = read(k, k.key(a[1]!));
  if (!v) return k.reply(c, [int(-2)]);
  if (!v.expireAt) return k.reply(c, [int(-1)]);
  const left = Math.max(0, v.expireAt - k.now());
  k.reply(c, [int(ms ? left : Math.floor((left + 500) / 1000))]);
}

function flush(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  if (a.length > 2) return k.error(c, E_SYNTAX);
  if (a.length === 2 && !/^(sync|async)$/i.test(k.text(a[1]!))) return k.error(c, E_SYNTAX);
  k.store.clear();
  k.counters.writes++;
  k.reply(c, [OK]);
}

// ---- connection and server --------------------------------------------------------------------------

function hello(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  let i = 1;
  if (a.length > 1) {
    const v = parseI64(k.bytes(a[1]!));
    if (v === null) return k.error(c, "ERR Protocol version is not an integer or out of range");
    if (v !== 2n) return k.error(c, "NOPROTO sorry, this protocol version is not supported");
    i = 2;
  }
  let user: Arg | null = null;
  let pass: Arg | null = null;
  let name: string | null = null;
  for (; i < a.length; i++) {
    const o = k.text(a[i]!).toUpperCase();
    if (o === "AUTH" && i + 2 < a.length) {
      user = a[++i]!;
      pass = a[++i]!;
    } else if (o === "SETNAME" && i + 1 < a.length) name = k.text(a[++i]!);
    else return k.error(c, `ERR Syntax error in HELLO option '${k.text(a[i]!)}'`);
  }
  // Redis's order: options, then authentication, then (authenticated) the name and the reply
  if (user && pass) return k.authenticate(c, user, pass, () => helloReply(k, c, name));
  if (!c.state.authed)
    return k.error(
      c,
      "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
    );
  helloReply(k, c, name);
}

function helloReply(k: Kv, c: Conn<KvClient>, name: string | null): void {
  if (name !== null) c.state.name = name;
  const info: Nested = [
    "server",
    "redis",
    "version",
    "7.0.0",
    "proto",
    2,
    "id",
    c.state.id,
    "mode",
    "standalone",
    "role",
    "master",
    "modules",
    [],
  ];
  k.reply(c, [str(nested(info))]);
}

function client(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  const sub = k.text(a[1]!).toUpperCase();
  switch (sub) {
    case "SETNAME": {
      if (a.length !== 3) return k.error(c, "ERR wrong number of arguments for 'client|setname' command");
      const n = k.text(a[2]!);
      if (/[^!-~]/.test(n))
        return k.error(c, "ERR Client names cannot contain spaces, newlines or special characters.");
      c.state.name = n || null;
      return k.reply(c, [OK]);
    }
    case "GETNAME":
      return k.reply(c, [c.state.name === null ? NIL : bulk(c.state.name)]);
    case "ID":
      return k.reply(c, [int(c.state.id)]);
    case "SETINFO":
      if (a.length !== 4) return k.error(c, "ERR wrong number of arguments for 'client|setinfo' command");
      if (!/^(lib-name|lib-ver)$/i.test(k.text(a[2]!))) return k.error(c, `ERR Unrecognized option '${k.text(a[2]!)}'`);
      return k.reply(c, [OK]);
    case "INFO":
    case "LIST": {
      const line = (cn: Conn<KvClient>) =>
        `id=${cn.state.id} conn=${cn.id} name=${cn.state.name ?? ""} db=0 cmd=client|${sub.toLowerCase()}`;
      const text = sub === "INFO" ? line(c) + "\n" : k.clients().map(line).join("\n") + "\n";
      return k.reply(c, [bulk(text)]);
    }
    default:
      return k.error(c, `ERR unknown subcommand '${k.text(a[1]!)}'. Try CLIENT HELP.`);
  }
}

function command(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  const names = Object.keys(KV_COMMANDS);
  const entry = (n: string): Nested => {
    const s = KV_COMMANDS[n]!;
    return [n, s.arity, s.flags, s.first, s.last, s.step, [`@${s.group}`], [], [], []];
  };
  if (a.length === 1) return k.reply(c, [str(nested(names.map(entry)))]);
  const sub = k.text(a[1]!).toUpperCase();
  const asked = a.slice(2).map((x) => k.text(x).toLowerCase());
  switch (sub) {
    case "COUNT":
      return k.reply(c, [int(names.length)]);
    case "LIST":
      return k.reply(c, [str(nested(names))]);
    case "INFO": {
      const list = asked.length ? asked : names;
      const parts = list.map((n) => (KV_COMMANDS[n] ? nested(entry(n)) : "*-1\r\n"));
      return k.reply(c, [str(`*${list.length}\r\n${parts.join("")}`)]);
    }
    case "DOCS": {
      const list = (asked.length ? asked : names).filter((n) => KV_COMMANDS[n]);
      const flat: Nested = [];
      for (const n of list) {
        const s = KV_COMMANDS[n]!;
        flat.push(n, ["summary", s.summary, "since", s.since, "group", s.group]);
      }
      return k.reply(c, [str(nested(flat))]);
    }
    default:
      return k.error(c, `ERR unknown subcommand '${k.text(a[1]!)}'. Try COMMAND HELP.`);
  }
}

function config(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  const sub = k.text(a[1]!).toUpperCase();
  if (sub === "GET") {
    if (a.length < 3) return k.error(c, "ERR wrong number of arguments for 'config|get' command");
    const out: string[] = [];
    for (let i = 2; i < a.length; i++) {
      const pat = k.text(a[i]!).toLowerCase();
      for (const [key, v] of Object.entries(k.config)) if (globMatch(pat, key) && !out.includes(key)) out.push(key, v);
    }
    return k.reply(c, [str(nested(out))]);
  }
  if (sub === "RESETSTAT") {
    k.resetStats();
    return k.reply(c, [OK]);
  }
  if (sub === "SET") return k.error(c, "ERR pmstack: CONFIG SET is not supported (durability is fixed)");
  k.error(c, `ERR unknown subcommand '${k.text(a[1]!)}'. Try CONFIG HELP.`);
}

/**
 * Redis's glob match (util.c stringmatchlen): `*`, `?`, `[...]` with ranges and `^`, and `\` to
 * escape; iterative, without a RegExp (a pattern of any length is fine).
 */
export function globMatch(p: string, s: string): boolean {
  let pi = 0;
  let si = 0;
  let starP = -1;
  let starS = 0;
  while (si < s.length) {
    if (pi < p.length) {
      const c = p[pi]!;
      if (c === "*") {
        starP = ++pi;
        starS = si;
        continue;
      }
      if (c === "?") {
        pi++;
        si++;
        continue;
      }
      if (c === "[") {
        let k = pi + 1;
        const not = p[k] === "^";
        if (not) k++;
        let match = false;
        for (; k < p.length && p[k] !== "]"; k++) {
          if (p[k] === "\\" && k + 1 < p.length) {
            k++;
            if (p[k] === s[si]) match = true;
          } else if (k + 2 < p.length && p[k + 1] === "-" && p[k + 2] !== "]") {
            let lo = p[k]!;
            let hi = p[k + 2]!;
            if (lo > hi) [lo, hi] = [hi, lo];
            if (s[si]! >= lo && s[si]! <= hi) match = true;
            k += 2;
          } else if (p[k] === s[si]) match = true;
        }
        if (not) match = !match;
        if (match) {
          pi = Math.min(k + 1, p.length);
          si++;
          continue;
        }
      } else {
        const lit = c === "\\" && pi + 1 < p.length ? p[pi + 1]! : c;
        if (lit === s[si]) {
          pi += c === "\\" && pi + 1 < p.length ? 2 : 1;
          si++;
          continue;
        }
      }
    }
    if (starP < 0) return false;
    pi = starP;
    si = ++starS;
  }
  while (p[pi] === "*") pi++;
  return pi === p.length;
}

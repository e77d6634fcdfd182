// DUMP, RESTORE (and RESTORE-ASKING) and MIGRATE: moving keys between nodes as Redis does, so
// that `redis-cli --cluster reshard` moves slots between pmstack nodes, and between pmstack and
// Redis nodes. MIGRATE opens (and keeps, 10 s idle) a RESP connection of its own to the target
// over this node's stack, sends one RESTORE-ASKING per key with the key's DUMP payload and
// remaining TTL, and deletes each key the target acknowledged. The client that sent MIGRATE
// waits (its later commands queue behind it), and so does any client touching a key in flight:
// what the target acknowledged and what stays here never differ.

import type { Stack, StackEvent } from "../../stack.js";
import type { Conn } from "../conn.js";
import type { Arg, Kv, KvClient } from "./commands.js";
import { decodeDump, encodeDump } from "./dump.js";
import { RxBytes } from "./rx.js";
import { bulk, NIL, OK, str } from "./reply.js";
import { isIP } from "../../addr.js";

const enc = new TextEncoder();
const dec = new TextDecoder("latin1");

/** A reply of the target: a status, an error, an integer, a bulk string (null: nil) or an array. */
export type RespValue = { ok: string } | { err: string } | number | Uint8Array | null | RespValue[];

/** One RESP reply at `at`, or null when more bytes are needed. Throws on bytes that are not RESP. */
export function parseResp(b: Uint8Array, at: number, end: number): [RespValue, number] | null {
  if (at >= end) return null;
  let eol = at;
  while (eol + 1 < end && !(b[eol] === 13 && b[eol + 1] === 10)) eol++;
  if (eol + 1 >= end) return null;
  const line = dec.decode(b.subarray(at + 1, eol));
  const next = eol + 2;
  switch (b[at]) {
    case 0x2b: // +
      return [{ ok: line }, next];
    case 0x2d: // -
      return [{ err: line }, next];
    case 0x3a: // :
      return [Number(line), next];
    case 0x24: {
      // $
      const n = Number(line);
      if (n < 0) return [null, next];
      if (next + n + 2 > end) return null;
      return [b.slice(next, next + n), next + n + 2];
    }
    case 0x2a: {
      // *
      const n = Number(line);
      if (n < 0) return [null, next];
      const out: RespValue[] = [];
      let p = next;
      for (let k = 0; k < n; k++) {
        const r = parseResp(b, p, end);
        if (!r) return null;
        out.push(r[0]);
        p = r[1];
      }
      return [out, p];
    }
    default:
      throw new Error(`not a RESP reply (first byte 0x${b[at]!.toString(16)})`);
  }
}

/** A command as RESP: an array of bulk strings. */
export function encodeCommand(args: (string | Uint8Array)[]): Uint8Array {
  const parts = args.map((a) => (typeof a === "string" ? enc.encode(a) : a));
  let n = 0;
  const heads = parts.map((p) => enc.encode(`$${p.length}\r\n`));
  const top = enc.encode(`*${parts.length}\r\n`);
  n += top.length;
  parts.forEach((p, i) => (n += heads[i]!.length + p.length + 2));
  const out = new Uint8Array(n);
  let at = 0;
  out.set(top, at);
  at += top.length;
  parts.forEach((p, i) => {
    out.set(heads[i]!, at);
    at += heads[i]!.length;
    out.set(p, at);
    at += p.length;
    out[at++] = 13;
    out[at++] = 10;
  });
  return out;
}

interface Request {
  replies: number;
  got: RespValue[];
  done: (replies: RespValue[] | null, why?: string) => void;
}

interface Target {
  key: string;
  ip: string;
  port: number;
  conn: number;
  tag: number;
  up: boolean;
  out: Uint8Array[];
  outAt: number;
  rx: RxBytes;
  requests: Request[];
  /** Last progress (ms): a request with nothing moving for its timeout fails. */
  active: number;
  timeoutMs: number;
}

const TAG_BASE = 0x5d000000;
const PIECE = 1400;
/** A cached connection to a target closes after this long unused (Redis's MIGRATE_SOCKET_CACHE_TTL). */
const IDLE_MS = 10_000;

/** MIGRATE's connections to target nodes, on this node's own stack. */
export class Migrator {
  readonly stack: Stack;
  #now: () => number;
  #targets = new Map<string, Target>();
  #byConn = new Map<number, Target>();
  #byTag = new Map<number, Target>();
  #nextTag = 1;

  #onBusy: () => void;

  /** `onBusy`: a first connection opens (cron() is owed from then until connections is 0). */
  constructor(stack: Stack, now: () => number, onBusy: () => void = () => {}) {
    this.stack = stack;
    this.#now = now;
    this.#onBusy = onBusy;
  }

  /** Connections open or opening. */
  get connections(): number {
    return this.#targets.size;
  }

  /**
   * Sends `commands` to ip:port (a cached connection, or a new one) and calls `done` with their
   * replies in order, or with null and a reason when the connection fails or `timeoutMs` passes
   * with no progress.
   */
  request(ip: string, port: number, commands: Uint8Array[], timeoutMs: number, done: Request["done"]): void {
    const key = `${ip}:${port}`;
    let t = this.#targets.get(key);
    if (!t) {
      const tag = TAG_BASE + (this.#nextTag++ % 0x1000000);
      t = {
        key,
        ip,
        port,
        conn: -1,
        tag,
        up: false,
        out: [],
        outAt: 0,
        rx: new RxBytes(),
        requests: [],
        active: this.#now(),
        timeoutMs,
      };
      this.#targets.set(key, t);
      this.#onBusy();
      this.#byTag.set(tag, t);
      try {
        this.stack.connect(ip, port, { tag });
      } catch (e) {
        this.#fail(t, `connecting: ${(e as Error).message}`);
        done(null, "error or timeout connecting to the client");
        return;
      }
    }
    t.timeoutMs = timeoutMs;
    t.active = this.#now();
    t.requests.push({ replies: commands.length, got: [], done });
    t.out.push(...commands);
    this.#pump(t);
  }

  /** Takes the stack's event if it is one of MIGRATE's connections. */
  onEvent(ev: StackEvent): boolean {
    switch (ev.type) {
      case "CONNECTED": {
        const t = this.#byTag.get(ev.buf);
        if (!t) return false;
        this.#byTag.delete(ev.buf);
        t.conn = ev.conn;
        t.up = true;
        this.#byConn.set(ev.conn, t);
        this.stack.setNoDelay(ev.conn);
        this.#pump(t);
        return true;
      }
      case "ERROR":
      case "RESET":
      case "CLOSED": {
        const tag = ev.type === "ERROR" ? ev.conn : ev.buf;
        const opening = tag >= TAG_BASE ? this.#byTag.get(tag) : undefined;
        if (opening && !this.#byConn.has(ev.conn)) {
          this.#fail(opening, "error or timeout connecting to the client");
          return true;
        }
        const t = this.#byConn.get(ev.conn);
        if (!t || ev.type === "ERROR") return false;
        this.#fail(t, "error or timeout reading to target instance");
        return true;
      }
      case "PEER_CLOSED": {
        const t = this.#byConn.get(ev.conn);
        if (!t) return false;
        this.stack.close(ev.conn);
        return true;
      }
      case "DATA": {
        const t = this.#byConn.get(ev.conn);
        if (!t) return false;
        const pool = this.stack.pool;
        t.rx.push(pool.view(ev.buf, ev.off, ev.len));
        pool.free(ev.buf);
        this.stack.recvd(ev.conn, ev.len);
        t.active = this.#now();
        this.#input(t);
        return true;
      }
      case "WRITABLE": {
        const t = this.#byConn.get(ev.conn);
        if (!t) return false;
        this.#pump(t);
        return true;
      }
      case "SEND_REFUSED": {
        const t = this.#byConn.get(ev.conn);
        if (!t) return false;
        this.stack.pool.free(ev.buf);
        this.#fail(t, "error or timeout writing to target instance");
        return true;
      }
    }
    return false;
  }

  /** Times out stalled requests and closes idle connections (call every 100 ms or so). */
  cron(): void {
    const now = this.#now();
    for (const t of [...this.#targets.values()]) {
      if (t.requests.length && now - t.active > t.timeoutMs)
        this.#fail(t, "error or timeout reading to target instance");
      else if (!t.requests.length && now - t.active > IDLE_MS) this.#fail(t, "idle");
      else this.#pump(t);
    }
  }

  close(): void {
    for (const t of [...this.#targets.values()]) this.#fail(t, "closing");
  }

  #pump(t: Target): void {
    if (!t.up) return;
    const stack = this.stack;
    const pool = stack.pool;
    let room = stack.sendRoom(t.conn);
    while (t.out.length) {
      const b = t.out[0]!;
      const n = Math.min(PIECE, b.length - t.outAt);
      if (room < n || stack.commandSpace() < 16 || pool.freeCount < 256) break;
      const i = pool.alloc();
      pool.view(i, 128, n).set(b.subarray(t.outAt, t.outAt + n));
      stack.send(t.conn, { index: i, offset: 128, length: n });
      room -= n;
      t.outAt += n;
      t.active = this.#now();
      if (t.outAt === b.length) {
        t.out.shift();
        t.outAt = 0;
      }
    }
  }

  #input(t: Target): void {
    let at = 0;
    try {
      while (t.requests.length) {
        const r = parseResp(t.rx.bytes, at, t.rx.length);
        if (!r) break;
        at = r[1];
        const q = t.requests[0]!;
        q.got.push(r[0]);
        if (q.got.length === q.replies) {
          t.requests.shift();
          q.done(q.got);
        }
      }
    } catch {
      this.#fail(t, "error or timeout reading to target instance");
      return;
    }
    t.rx.consume(at);
  }

  #fail(t: Target, why: string): void {
    this.#targets.delete(t.key);
    this.#byTag.delete(t.tag);
    if (t.conn >= 0 && this.#byConn.delete(t.conn)) this.stack.abort(t.conn);
    const reqs = t.requests;
    t.requests = [];
    for (const q of reqs) q.done(null, why);
  }
}

// ---- the commands ---------------------------------------------------------------------------------

const E_SYNTAX = "ERR syntax error";
const E_INT = "ERR value is not an integer or out of range";

function integer(k: Kv, a: Arg): number | null {
  const t = k.text(a);
  return /^-?(0|[1-9][0-9]{0,17})$/.test(t) ? Number(t) : null;
}

/** DUMP key: the value's payload, or nil. */
export function dumpCommand(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  const key = k.key(a[1]!);
  const v = key && k.store.read(key);
  if (!v) return k.reply(c, [NIL]);
  k.reply(c, [bulk(encodeDump(k.store.bytes(v)))]);
}

/** RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f] (and RESTORE-ASKING). */
export function restoreCommand(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  let replace = false;
  let absttl = false;
  for (let j = 4; j < a.length; j++) {
    const o = k.text(a[j]!).toLowerCase();
    const more = j + 1 < a.length;
    if (o === "replace") replace = true;
    else if (o === "absttl") absttl = true;
    else if (o === "idletime" && more) {
      const v = integer(k, a[++j]!);
      if (v === null) return k.error(c, E_INT);
      if (v < 0) return k.error(c, "ERR Invalid IDLETIME value, must be >= 0");
    } else if (o === "freq" && more) {
      const v = integer(k, a[++j]!);
      if (v === null) return k.error(c, E_INT);
      if (v < 0 || v > 255) return k.error(c, "ERR Invalid FREQ value, must be >= 0 and <= 255");
    } else return k.error(c, E_SYNTAX);
  }
  const key = k.key(a[1]!);
  if (!key) return k.error(c, "ERR pmstack: key too long");
  if (!replace && k.store.read(key)) return k.error(c, "BUSYKEY Target key name already exists.");
  const ttl = integer(k, a[2]!);
  if (ttl === null) return k.error(c, E_INT);
  if (ttl < 0) return k.error(c, "ERR Invalid TTL value, must be >= 0");
  const v = decodeDump(k.bytes(a[3]!));
  if (v === "version") return k.error(c, "ERR DUMP payload version or checksum are wrong");
  if (v === "format") return k.error(c, "ERR Bad data format");
  k.counters.writes++;
  let expireAt = 0;
  if (ttl) {
    expireAt = absttl ? ttl : k.now() + ttl;
    if (expireAt <= k.now()) {
      // already expired: the key is gone (if REPLACE found one), as Redis does
      if (replace) k.store.delete(key);
      return k.reply(c, [OK]);
    }
  }
  k.store.putBytes(key, v, expireAt);
  k.reply(c, [OK]);
}

/**
 * MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw] [AUTH2 user pw] [KEYS key...]:
 * the keys present go to the target; each it acknowledged is deleted here (unless COPY).
 */
export function migrateCommand(k: Kv, c: Conn<KvClient>, a: Arg[]): void {
  let copy = false;
  let replace = false;
  let auth: string[] | null = null;
  let first = 3;
  let count = 1;
  for (let j = 6; j < a.length; j++) {
    const o = k.text(a[j]!).toLowerCase();
    const left = a.length - j - 1;
    if (o === "copy") copy = true;
    else if (o === "replace") replace = true;
    else if (o === "auth") {
      if (!left) return k.error(c, E_SYNTAX);
      auth = ["AUTH", k.text(a[++j]!)];
    } else if (o === "auth2") {
      if (left < 2) return k.error(c, E_SYNTAX);
      auth = ["AUTH", k.text(a[j + 1]!), k.text(a[j + 2]!)];
      j += 2;
    } else if (o === "keys") {
      if (k.bytes(a[3]!).length !== 0)
        return k.error(c, "ERR When using MIGRATE KEYS option, the key argument must be set to the empty string");
      first = j + 1;
      count = a.length - j - 1;
      break;
    } else return k.error(c, E_SYNTAX);
  }
  const host = k.text(a[1]!);
  const port = integer(k, a[2]!);
  const db = integer(k, a[4]!);
  let timeout = integer(k, a[5]!);
  if (port === null || db === null || timeout === null) return k.error(c, E_INT);
  if (db !== 0) return k.error(c, "ERR pmstack: MIGRATE to a database other than 0 (the only one here)");
  if (timeout <= 0) timeout = 1000;
  if (!isIP(host) || !(port > 0 && port < 65536)) return k.error(c, "IOERR error or timeout connecting to the client");
  const mig = k.migrator;
  if (!mig) return k.error(c, "ERR pmstack: MIGRATE is not available on this server");

  // the keys that exist, their payloads and remaining TTLs
  const keys: Uint8Array[] = [];
  const cmds: Uint8Array[] = [];
  if (auth) cmds.push(encodeCommand(auth));
  const now = k.now();
  for (let j = first; j < first + count; j++) {
    const key = k.key(a[j]!);
    const v = key && k.store.read(key);
    if (!key || !v) continue;
    const ttl = v.expireAt ? Math.max(1, Math.ceil(v.expireAt - now)) : 0;
    const args: (string | Uint8Array)[] = ["RESTORE-ASKING", key, String(ttl), encodeDump(k.store.bytes(v))];
    if (replace) args.push("REPLACE");
    cmds.push(encodeCommand(args));
    keys.push(key);
  }
  if (!keys.length) return k.reply(c, [str("+NOKEY\r\n")]);
  const release = k.holdKeys(keys);
  const resume = k.block(c);
  mig.request(host, port, cmds, timeout, (replies, why) => {
    try {
      if (!replies) return k.error(c, `IOERR ${why ?? "error or timeout reading to target instance"}`);
      const restored = replies.slice(auth ? 1 : 0);
      let error: string | null = null;
      if (auth && typeof replies[0] === "object" && replies[0] && "err" in replies[0]) error = replies[0].err;
      restored.forEach((r, i) => {
        if (r && typeof r === "object" && "err" in r) error ??= r.err;
        else if (!copy) k.store.delete(keys[i]!);
      });
      k.counters.migrated += restored.length;
      if (error) k.error(c, `ERR Target instance replied with error: ${error}`);
      else k.reply(c, [OK]);
    } finally {
      release();
      resume();
    }
  });
}

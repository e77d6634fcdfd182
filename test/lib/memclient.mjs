// The client side of the in-memory app tests (test/apps-kv, test/apps-kv-redis, test/apps-httpd):
// a client Stack's connections, sends cut into one-buffer pieces (refused ones resent in order on
// WRITABLE), and what each connection received, handed to `onData` (the bytes are valid during
// the call only). Also: byte helpers (cat, randomBytes, sameBytes), RESP2 encoding and reply parsing, kvPair (a KvApp and a client over a
// MemoryLink), `reachable` (every buffer live log records name, through extent trees) and the
// checks built on it (assertKeptExact, assertAllFreed).
import * as assert from "uvu/assert";
import { Stack, MemoryLink, PmLog, KvApp } from "../../build/index.js";

const enc = (s) => new TextEncoder().encode(s);
const dec = (b) => new TextDecoder().decode(b);
export const SRV_IP = "198.18.8.1";

/**
 * @param cli the client Stack
 * @param opts.state extra fields of a new connection's state
 * @param opts.onData (state, bytes) for every DATA event
 */
export function memClient(cli, { state = () => ({}), onData }) {
  const conns = new Map(); // client conn id -> { closed, refused, ...state() }
  return {
    conns,
    /**
     * Sends bytes in pieces of at most `seg` bytes; `step()` runs a turn between pieces when due.
     * Large sends are throttled: while the connection's refused pieces pile up or the client's
     * pool runs low, turns run until the server has taken some (so a 16 MB value needs no 16 MB
     * of client buffers). Returns false if the connection closed before everything was sent.
     */
    send(conn, bytes, seg, step) {
      // a piece is one buffer's worth after its 128 bytes of headroom (1400: one MSS-sized segment)
      if (!(seg >= 1 && seg <= 1920)) throw new RangeError(`memClient.send: pieces are 1 to 1920 bytes, not ${seg}`);
      const pool = cli.pool;
      const low = Math.min(1024, pool.bufferCount >>> 2);
      for (let at = 0; at < bytes.length; at += seg) {
        const c = conns.get(conn);
        for (let k = 0; c.refused.length >= 64 || pool.freeCount < low; k++) {
          if (c.closed) return false;
          if (k > 100_000) throw new Error("memClient.send: the peer takes nothing");
          step();
        }
        if (c.closed) return false;
        const n = Math.min(seg, bytes.length - at);
        const i = pool.alloc();
        pool.view(i, 128, n).set(bytes.subarray(at, at + n));
        if (c.refused.length) c.refused.push({ index: i, offset: 128, length: n });
        else cli.send(conn, { index: i, offset: 128, length: n });
        // small pieces leave one per turn, so that each is a segment of its own
        if (seg < 1400 || cli.commandSpace() < 64) step();
      }
      return true;
    },
    onClient(ev) {
      const c = conns.get(ev.conn);
      switch (ev.type) {
        case "CONNECTED":
          conns.set(ev.conn, { closed: false, reset: false, refused: [], ...state() });
          cli.setNoDelay(ev.conn);
          break;
        case "DATA":
          onData(c, cli.pool.view(ev.buf, ev.off, ev.len));
          cli.pool.free(ev.buf);
          cli.recvd(ev.conn, ev.len);
          break;
        case "SEND_REFUSED":
          if (c && !c.closed) c.refused.push({ index: ev.buf, offset: ev.off, length: ev.len });
          else cli.pool.free(ev.buf);
          break;
        case "WRITABLE": {
          const again = c.refused;
          c.refused = [];
          for (const n of again) cli.send(ev.conn, n);
          break;
        }
        case "PEER_CLOSED":
          cli.close(ev.conn);
          c.closed = true;
          break;
        case "CLOSED":
        case "RESET":
          if (c) {
            c.closed = true;
            if (ev.type === "RESET") c.reset = true;
            for (const n of c.refused) cli.pool.free(n.index);
            c.refused = [];
          }
          break;
      }
    },
  };
}

/**
 * Received bytes, appended in amortized O(1) (a buffer that doubles) and consumed from the front:
 * what the tests' reply parsers read, without copying everything received on every turn.
 */
export class ByteQueue {
  #buf = new Uint8Array(4096);
  #start = 0;
  #end = 0;

  /** Bytes not yet consumed. */
  get length() {
    return this.#end - this.#start;
  }

  push(bytes) {
    if (this.#end + bytes.length > this.#buf.length) {
      const live = this.#end - this.#start;
      let cap = this.#buf.length;
      while (live + bytes.length > cap) cap *= 2;
      if (cap === this.#buf.length) this.#buf.copyWithin(0, this.#start, this.#end);
      else {
        const next = new Uint8Array(cap);
        next.set(this.#buf.subarray(this.#start, this.#end));
        this.#buf = next;
      }
      this.#start = 0;
      this.#end = live;
    }
    this.#buf.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /** A view of the unconsumed bytes (valid until the next push). */
  view() {
    return this.#buf.subarray(this.#start, this.#end);
  }

  consume(n) {
    this.#start += n;
    if (this.#start === this.#end) this.#start = this.#end = 0;
  }
}

/** A RESP2 command as a client library sends it (an array of bulk strings). */
export function cmd(...args) {
  const parts = args.map((a) => (typeof a === "string" ? enc(a) : a));
  const chunks = [enc(`*${parts.length}\r\n`)];
  for (const p of parts) chunks.push(enc(`$${p.length}\r\n`), p, enc("\r\n"));
  return cat(chunks);
}

/** The chunks (bytes, or strings as UTF-8) one after the other. */
export function cat(chunks) {
  const parts = chunks.map((c) => (typeof c === "string" ? enc(c) : c));
  const out = new Uint8Array(parts.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of parts) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Seeded random bytes (`r`: a generator from test/lib/rng.mjs). */
export function randomBytes(r, n) {
  const v = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const x = (r() * 4294967296) >>> 0;
    v[i] = x;
    v[i + 1] = x >>> 8;
    v[i + 2] = x >>> 16;
    v[i + 3] = x >>> 24;
  }
  return v;
}

/** Byte equality without uvu's diff (which is slow on megabytes); says where they differ. */
export function sameBytes(got, want, msg = "") {
  if (!(got instanceof Uint8Array)) assert.unreachable(`${msg}: not bytes: ${got}`);
  assert.is(got.length, want.length, `${msg}: length`);
  const n = got.length;
  let i = 0;
  // compare 4 bytes at a time where aligned copies allow
  if (got.byteOffset % 4 === 0 && want.byteOffset % 4 === 0) {
    const a = new Uint32Array(got.buffer, got.byteOffset, n >>> 2);
    const b = new Uint32Array(want.buffer, want.byteOffset, n >>> 2);
    while (i < a.length && a[i] === b[i]) i++;
    i *= 4;
  }
  while (i < n && got[i] === want[i]) i++;
  assert.ok(i === n, `${msg}: first difference at byte ${i} of ${n}`);
}

/**
 * Parses whole RESP2 replies from `buf` starting at `at`: simple strings come back as "+OK",
 * errors as "-ERR ...", integers as numbers, bulk strings as Uint8Array, nil as null, arrays as
 * arrays. Returns [value, next] or null when incomplete.
 */
export function parseReply(buf, at = 0) {
  const eol = (i) => {
    for (let k = i; k + 1 < buf.length; k++) if (buf[k] === 13 && buf[k + 1] === 10) return k;
    return -1;
  };
  if (at >= buf.length) return null;
  const e = eol(at);
  if (e < 0) return null;
  const line = dec(buf.subarray(at + 1, e));
  const t = String.fromCharCode(buf[at]);
  if (t === "+" || t === "-") return [t + line, e + 2];
  if (t === ":") return [Number(line), e + 2];
  if (t === "$") {
    const n = Number(line);
    if (n < 0) return [null, e + 2];
    if (buf.length < e + 2 + n + 2) return null;
    return [buf.slice(e + 2, e + 2 + n), e + 2 + n + 2];
  }
  if (t === "*") {
    const n = Number(line);
    if (n < 0) return [null, e + 2];
    const out = [];
    let p = e + 2;
    for (let k = 0; k < n; k++) {
      const r = parseReply(buf, p);
      if (!r) return null;
      out.push(r[0]);
      p = r[1];
    }
    return [out, p];
  }
  throw new Error(`bad reply byte ${t} at ${at}`);
}

/** Bulk strings as text, recursively. */
export const text = (v) => (v instanceof Uint8Array ? dec(v) : Array.isArray(v) ? v.map(text) : v);

/**
 * Every buffer a live record names, directly or through extent nodes (walked in the core's
 * memory: extInfo(node, 1) children at extInfo(node, 4), each item two u32: low word, index).
 */
export function reachable(pool, log) {
  const e = pool.core.exports;
  const seen = new Set();
  const walk = (index, height) => {
    if (seen.has(index) && !height) return;
    seen.add(index);
    if (!height) return;
    if (e.extInfo(index, 0) !== height) throw new Error(`node ${index} is not of the height its parent names`);
    const count = e.extInfo(index, 1);
    const at = e.extInfo(index, 4) >>> 2;
    const u32 = new Uint32Array(pool.core.memory.buffer);
    for (let k = 0; k < count; k++) {
      const lo = u32[at + 2 * k];
      const child = u32[at + 2 * k + 1];
      const o = lo >>> 16;
      walk(child, o & 0x8000 ? o & 0x7fff : 0);
    }
  };
  for (const ent of log.entries()) for (const n of ent.names) walk(n.index, n.height ?? 0);
  return seen;
}

/**
 * A KvApp on its own stack (its log in the pool, a file if `path`), and one client stack. The
 * app's clock is `now`, else `clock.t` (tests move it by hand).
 */
export function kvPair({
  path,
  clock = { t: 1_700_000_000_000 },
  now,
  buffers = 4096,
  metaBytes = 1 << 20,
  rings,
  sndBuf,
  reserveBuffers,
  idleTimeoutMs,
  cluster,
  shards,
} = {}) {
  const srv = Stack.create({
    rings,
    sndBuf,
    mac: "02:00:00:00:08:01",
    ip: `${SRV_IP}/24`,
    pool: { path, buffers, metaBytes },
    configure: (core) => PmLog.configure(core),
  });
  const log = PmLog.open(srv.pool);
  const app = new KvApp(srv, log, 6379, {
    now: now ?? (() => clock.t),
    reserveBuffers,
    idleTimeoutMs,
    cluster,
    shards,
  });
  const cli = Stack.create({ mac: "02:00:00:00:08:02", ip: "198.18.8.2/24", pool: { buffers: 4096 } });
  const link = new MemoryLink(srv.port, cli.port);
  const mc = memClient(cli, {
    state: () => ({ q: new ByteQueue() }),
    onData: (c, bytes) => c.q.push(bytes),
  });
  const h = {
    srv,
    log,
    app,
    cli,
    link,
    clock,
    now: 0,
    /** Whether the server's turns end with onTurnEnd (the group commit). */
    commit: true,
    conns: mc.conns, // client conn id -> { q: ByteQueue, closed, reset, refused }
    connect() {
      const before = new Set(h.conns.keys());
      cli.connect(SRV_IP, 6379);
      h.run(() => [...h.conns.keys()].some((k) => !before.has(k)));
      return [...h.conns.keys()].find((k) => !before.has(k));
    },
    /** Sends bytes on a client connection, in pieces of at most `seg` bytes (one buffer each). */
    send(conn, bytes, seg = 1400) {
      return mc.send(conn, bytes, seg, () => h.step());
    },
    /** One turn of each side, in NicLoop's order on the server. */
    turn() {
      const now = h.now;
      srv.poll(now);
      srv.drainEvents(app.onEvent);
      srv.poll(now);
      srv.drainEvents(app.onEvent);
      if (h.commit) app.onTurnEnd();
      srv.poll(now);
      srv.drainEvents(app.onEvent);
      cli.poll(now);
      cli.drainEvents(h.onClient);
      return link.step(now);
    },
    step() {
      const moved = h.turn();
      h.now += moved ? 0.05 : 1;
    },
    run(done, limit = 20000) {
      for (let k = 0; k < limit; k++) {
        const moved = h.turn();
        if (done()) return;
        h.now += moved ? 0.05 : 1;
      }
      throw new Error("kvPair.run: not done in time");
    },
    /** Turns until nothing moves for a while (replies sent, ACKs in, buffers released). */
    settle(turns = 50) {
      for (let k = 0; k < turns; k++) h.step();
    },
    onClient: mc.onClient,
    /** Replies parsed so far and not yet taken. */
    take(conn) {
      const q = h.conns.get(conn).q;
      const out = [];
      for (;;) {
        const r = parseReply(q.view(), 0);
        if (!r) break;
        out.push(r[0]);
        q.consume(r[1]);
      }
      return out;
    },
    /** Sends commands (pipelined) and waits for as many replies. */
    call(conn, cmds, seg) {
      const bytes = cat(cmds.map((c) => (c instanceof Uint8Array ? c : cmd(...c))));
      h.send(conn, bytes, seg);
      const got = [];
      h.run(() => {
        got.push(...h.take(conn));
        return got.length >= cmds.length;
      }, 200_000);
      if (got.length !== cmds.length) throw new Error(`${got.length} replies to ${cmds.length} commands`);
      return got;
    },
    one(conn, ...args) {
      return h.call(conn, [args])[0];
    },
    close() {
      app.close();
      srv.shutdown();
      cli.shutdown();
    },
  };
  return h;
}

/**
 * The pool's kept buffers are exactly the ones live records reach (their trees walked), plus
 * the app's arena buffer `arena` (held even when no record names it; -1 for none): nothing
 * leaked, nothing freed under a record. Returns the pool's counts.
 */
export function assertKeptExact(pool, log, arena, msg = "") {
  const live = reachable(pool, log);
  for (const i of live) assert.is(pool.owner(i), "kept", `${msg}: buffer ${i} of a live record is kept`);
  const expect = live.size + (arena >= 0 && !live.has(arena) ? 1 : 0);
  const counts = pool.check();
  assert.is(counts.kept, expect, `${msg}: kept buffers (${counts.kept}) are the ${expect} live records reach`);
  return counts;
}

/**
 * The store is empty and so is the pool: no live record, no kept buffer but the arena's, and
 * no more app buffers than at `base` (the counts before the test's values).
 */
export function assertAllFreed(pool, log, arena, base, msg = "") {
  assert.is(log.size, 0, `${msg}: no key left`);
  const after = assertKeptExact(pool, log, arena, msg);
  assert.is(after.kept, arena >= 0 ? 1 : 0, `${msg}: only the arena's buffer stays kept`);
  assert.is(after.app, base.app, `${msg}: no app buffer left`);
  return after;
}

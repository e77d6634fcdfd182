// The durable key-value store (KvApp) over two stacks joined in memory: every command and its
// Redis errors, pipelining, values spanning chunks (kept in place, sent by name), values too
// large for a record, expiry on an injected clock, and durability: no reply before the turn's
// group commit, and a reopen of the pool file finds every acknowledged key.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { Stack, MemoryLink, PmLog, KvApp, KV_HEADER, KV_MAX_VALUE_NAMES, parseI64 } from "../build/index.js";
import { scratchDir } from "./lib/tmp.mjs";
import { rng } from "./lib/rng.mjs";
import { memClient } from "./lib/memclient.mjs";

const enc = (s) => new TextEncoder().encode(s);
const dec = (b) => new TextDecoder().decode(b);
const SRV_IP = "198.18.8.1";

/** A RESP2 command as a client library sends it (an array of bulk strings). */
function cmd(...args) {
  const parts = args.map((a) => (typeof a === "string" ? enc(a) : a));
  const chunks = [enc(`*${parts.length}\r\n`)];
  for (const p of parts) chunks.push(enc(`$${p.length}\r\n`), p, enc("\r\n"));
  return cat(chunks);
}

function cat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Parses whole RESP2 replies from `buf` starting at `at`: simple strings come back as "+OK",
 * errors as "-ERR ...", integers as numbers, bulk strings as Uint8Array, nil as null, arrays as
 * arrays. Returns [value, next] or null when incomplete.
 */
function parseReply(buf, at = 0) {
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
const text = (v) => (v instanceof Uint8Array ? dec(v) : Array.isArray(v) ? v.map(text) : v);

/** A KvApp on its own stack (its log in the pool, a file if `path`), and one client stack. */
function kvPair({ path, clock = { t: 1_700_000_000_000 }, buffers = 4096, rings, sndBuf } = {}) {
  const srv = Stack.create({
    rings,
    sndBuf,
    mac: "02:00:00:00:08:01",
    ip: `${SRV_IP}/24`,
    pool: { path, buffers, metaBytes: 1 << 20 },
    configure: (core) => PmLog.configure(core),
  });
  const log = PmLog.open(srv.pool);
  const app = new KvApp(srv, log, 6379, { now: () => clock.t });
  const cli = Stack.create({ mac: "02:00:00:00:08:02", ip: "198.18.8.2/24", pool: { buffers: 4096 } });
  const link = new MemoryLink(srv.port, cli.port);
  const mc = memClient(cli, {
    state: () => ({ rx: [], len: 0, buf: new Uint8Array(0), at: 0 }),
    onData: (c, bytes) => {
      c.rx.push(bytes.slice());
      c.len += bytes.length;
    },
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
    conns: mc.conns, // client conn id -> { rx: Uint8Array[], len, closed, refused, buf, at }
    connect() {
      const before = new Set(h.conns.keys());
      cli.connect(SRV_IP, 6379);
      h.run(() => [...h.conns.keys()].some((k) => !before.has(k)));
      return [...h.conns.keys()].find((k) => !before.has(k));
    },
    /** Sends bytes on a client connection, in pieces of at most `seg` bytes (one buffer each). */
    send(conn, bytes, seg = 1400) {
      mc.send(conn, bytes, seg, () => h.step());
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
    onClient: mc.onClient,
    /** Replies parsed so far and not yet taken. */
    take(conn) {
      const c = h.conns.get(conn);
      if (c.rx.length) {
        c.buf = cat([c.buf.subarray(c.at), ...c.rx]);
        c.at = 0;
        c.rx = [];
      }
      const out = [];
      for (;;) {
        const r = parseReply(c.buf, c.at);
        if (!r) break;
        out.push(r[0]);
        c.at = r[1];
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
      });
      assert.is(got.length, cmds.length, "one reply per command");
      return got;
    },
    one(conn, ...args) {
      return h.call(conn, [args])[0];
    },
    close() {
      srv.shutdown();
      cli.shutdown();
    },
  };
  return h;
}

test("PING, ECHO, SET, GET, DEL, EXISTS, MSET, MGET, INCR, DBSIZE, FLUSHALL", () => {
  const h = kvPair();
  const c = h.connect();
  assert.is(h.one(c, "PING"), "+PONG");
  assert.is(text(h.one(c, "PING", "hi")), "hi");
  assert.is(text(h.one(c, "ECHO", "hello world")), "hello world");
  assert.is(h.one(c, "SET", "k1", "v1"), "+OK");
  assert.is(text(h.one(c, "GET", "k1")), "v1");
  assert.is(h.one(c, "GET", "nope"), null);
  assert.is(h.one(c, "SET", "k1", "v1b"), "+OK");
  assert.is(text(h.one(c, "GET", "k1")), "v1b");
  assert.is(h.one(c, "SET", "empty", ""), "+OK");
  assert.is(text(h.one(c, "GET", "empty")), "");
  assert.is(h.one(c, "STRLEN", "k1"), 3);
  assert.is(h.one(c, "MSET", "a", "1", "b", "2", "c", "3"), "+OK");
  assert.equal(text(h.one(c, "MGET", "a", "nope", "c", "k1")), ["1", null, "3", "v1b"]);
  assert.is(h.one(c, "EXISTS", "a", "b", "nope", "a"), 3);
  assert.is(h.one(c, "DBSIZE"), 5);
  assert.is(h.one(c, "DEL", "a", "b", "nope"), 2);
  assert.is(h.one(c, "DEL", "a"), 0);
  assert.is(h.one(c, "EXISTS", "a"), 0);
  assert.is(h.one(c, "DBSIZE"), 3);
  assert.is(h.one(c, "INCR", "n"), 1);
  assert.is(h.one(c, "INCR", "n"), 2);
  assert.is(h.one(c, "INCRBY", "n", "40"), 42);
  assert.is(h.one(c, "DECR", "n"), 41);
  assert.is(h.one(c, "DECRBY", "n", "50"), -9);
  assert.is(text(h.one(c, "GET", "n")), "-9");
  assert.is(h.one(c, "SET", "big", "9223372036854775806"), "+OK");
  assert.is(h.one(c, "INCR", "big"), 9223372036854775807);
  assert.is(text(h.one(c, "GET", "big")), "9223372036854775807");
  assert.is(h.one(c, "MSETNX", "n", "x", "fresh", "y"), 0);
  assert.is(h.one(c, "EXISTS", "fresh"), 0);
  assert.is(h.one(c, "MSETNX", "fresh", "y", "fresh2", "z"), 1);
  assert.is(h.one(c, "SELECT", "0"), "+OK");
  assert.is(h.one(c, "FLUSHALL"), "+OK");
  assert.is(h.one(c, "DBSIZE"), 0);
  assert.is(h.log.size, 0);
  assert.is(h.one(c, "GET", "k1"), null);
  // inline commands (telnet style) work too
  h.send(c, enc("PING\r\nSET inline 5\r\nGET inline\r\n"));
  const got = [];
  h.run(() => (got.push(...h.take(c)), got.length >= 3));
  assert.equal(text(got), ["+PONG", "+OK", "5"]);
  assert.ok(h.app.stats.commits > 0);
  h.srv.pool.check();
  h.close();
});

test("errors in Redis's own words; the connection survives them", () => {
  const h = kvPair();
  const c = h.connect();
  assert.is(h.one(c, "FOO", "a", "b"), "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' ");
  assert.is(h.one(c, "nosuch"), "-ERR unknown command 'nosuch', with args beginning with: ");
  assert.is(h.one(c, "GET"), "-ERR wrong number of arguments for 'get' command");
  assert.is(h.one(c, "get", "a", "b"), "-ERR wrong number of arguments for 'get' command");
  assert.is(h.one(c, "SET", "k"), "-ERR wrong number of arguments for 'set' command");
  assert.is(h.one(c, "MSET", "a", "1", "b"), "-ERR wrong number of arguments for 'mset' command");
  assert.is(h.one(c, "SET", "k", "v", "BOGUS"), "-ERR syntax error");
  assert.is(h.one(c, "SET", "k", "v", "NX", "XX"), "-ERR syntax error");
  assert.is(h.one(c, "SET", "k", "v", "EX", "10", "PX", "100"), "-ERR syntax error");
  assert.is(h.one(c, "SET", "k", "v", "EX"), "-ERR syntax error");
  assert.is(h.one(c, "SET", "k", "v", "EX", "ten"), "-ERR value is not an integer or out of range");
  assert.is(h.one(c, "SET", "k", "v", "EX", "0"), "-ERR invalid expire time in 'set' command");
  assert.is(h.one(c, "SET", "k", "v", "PX", "-5"), "-ERR invalid expire time in 'set' command");
  assert.is(h.one(c, "SET", "s", "abc"), "+OK");
  assert.is(h.one(c, "INCR", "s"), "-ERR value is not an integer or out of range");
  assert.is(h.one(c, "SET", "s", " 1"), "+OK");
  assert.is(h.one(c, "INCR", "s"), "-ERR value is not an integer or out of range");
  assert.is(h.one(c, "SET", "s", "01"), "+OK");
  assert.is(h.one(c, "INCR", "s"), "-ERR value is not an integer or out of range");
  assert.is(h.one(c, "SET", "s", "9223372036854775807"), "+OK");
  assert.is(h.one(c, "INCR", "s"), "-ERR increment or decrement would overflow");
  assert.is(text(h.one(c, "GET", "s")), "9223372036854775807", "a failed INCR changes nothing");
  assert.is(h.one(c, "INCRBY", "s", "x"), "-ERR value is not an integer or out of range");
  assert.is(h.one(c, "SELECT", "1"), "-ERR DB index is out of range");
  assert.is(h.one(c, "SET", "", "v"), "-ERR pmstack: a key must be 1 to 1024 bytes");
  assert.is(h.one(c, "GET", "x".repeat(2000)), null);
  assert.is(h.one(c, "CLIENT", "BOGUS"), "-ERR unknown subcommand 'BOGUS'. Try CLIENT HELP.");
  assert.is(h.one(c, "PING"), "+PONG");
  assert.ok(h.app.stats.errors >= 20);
  // a protocol error is answered and the connection closed, as Redis does
  h.send(c, enc("*1\r\nxyz\r\n"));
  const got = [];
  h.run(() => (got.push(...h.take(c)), got.length >= 1 && h.conns.get(c).closed));
  assert.is(got[0], "-ERR Protocol error: expected '$', got 'x'");
  // a negative bulk length is a protocol error too (it was a RangeError that took the server down)
  const c2 = h.connect();
  h.send(c2, enc("*2\r\n$3\r\nGET\r\n$-1\r\n"));
  const got2 = [];
  h.run(() => (got2.push(...h.take(c2)), got2.length >= 1 && h.conns.get(c2).closed));
  assert.is(got2[0], "-ERR Protocol error: invalid bulk length");
  const c3 = h.connect();
  assert.is(h.one(c3, "PING"), "+PONG", "the server goes on");
  h.close();
});

test("INFO, COMMAND, CONFIG, CLIENT and HELLO, as redis-cli and redis-benchmark use them", () => {
  const h = kvPair();
  const c = h.connect();
  h.one(c, "SET", "a", "1");
  h.one(c, "SET", "t", "1", "EX", "100");
  const info = text(h.one(c, "INFO"));
  for (const s of ["Server", "Clients", "Memory", "Persistence", "Stats", "Keyspace"])
    assert.ok(info.includes(`# ${s}\r\n`), s);
  assert.match(info, /redis_version:7\.0\.0\r\n/);
  assert.match(info, /connected_clients:1\r\n/);
  assert.match(info, /aof_enabled:1\r\n/);
  assert.match(info, /db0:keys=2,expires=1,avg_ttl=0\r\n/);
  assert.match(info, /group_commits:\d+\r\n/);
  const mem = text(h.one(c, "INFO", "memory"));
  assert.ok(mem.startsWith("# Memory\r\n") && !mem.includes("# Server"));
  const count = h.one(c, "COMMAND", "COUNT");
  assert.ok(count >= 20);
  const all = text(h.one(c, "COMMAND"));
  assert.is(all.length, count);
  const set = all.find((e) => e[0] === "set");
  assert.equal(set.slice(0, 6), ["set", -3, ["write", "denyoom"], 1, 1, 1]);
  const docs = text(h.one(c, "COMMAND", "DOCS"));
  assert.is(docs.length, 2 * count);
  const getDoc = docs[docs.indexOf("get") + 1];
  assert.equal(getDoc.slice(0, 1), ["summary"]);
  assert.ok(getDoc.includes("group") && getDoc.includes("since"));
  assert.equal(text(h.one(c, "COMMAND", "DOCS", "get")).length, 2);
  assert.equal(text(h.one(c, "COMMAND", "INFO", "get", "nope"))[1], null);
  assert.equal(text(h.one(c, "CONFIG", "GET", "save")), ["save", ""]);
  assert.equal(text(h.one(c, "CONFIG", "GET", "appendonly")), ["appendonly", "yes"]);
  assert.equal(text(h.one(c, "CONFIG", "GET", "append*")), ["appendonly", "yes", "appendfsync", "always"]);
  assert.equal(text(h.one(c, "CONFIG", "GET", "nothing")), []);
  assert.ok(h.one(c, "CONFIG", "SET", "save", "").startsWith("-ERR"));
  assert.is(h.one(c, "CLIENT", "GETNAME"), null);
  assert.is(h.one(c, "CLIENT", "SETNAME", "bench"), "+OK");
  assert.is(text(h.one(c, "CLIENT", "GETNAME")), "bench");
  assert.is(
    h.one(c, "CLIENT", "SETNAME", "a b"),
    "-ERR Client names cannot contain spaces, newlines or special characters.",
  );
  assert.is(h.one(c, "CLIENT", "SETINFO", "lib-name", "redis-py"), "+OK");
  assert.is(typeof h.one(c, "CLIENT", "ID"), "number");
  assert.is(h.one(c, "HELLO", "3"), "-NOPROTO sorry, this protocol version is not supported");
  const hello = text(h.one(c, "HELLO", "2"));
  assert.is(hello[hello.indexOf("proto") + 1], 2);
  assert.is(hello[hello.indexOf("server") + 1], "redis");
  h.close();
});

test("pipelining: replies in request order, reads behind writes wait for the commit; every split point", () => {
  const h = kvPair();
  const c = h.connect();
  const cmds = [];
  const want = [];
  for (let k = 0; k < 40; k++) {
    cmds.push(["SET", `p${k}`, `val-${k}`], ["GET", `p${k}`], ["INCR", "ctr"], ["EXISTS", `p${k}`, "none"]);
    want.push("+OK", `val-${k}`, k + 1, 1);
  }
  assert.equal(text(h.call(c, cmds)), want);
  // the same short pipeline, cut into pieces of every size from 1 byte
  const small = [["SET", "s", "one"], ["GET", "s"], ["DEL", "s"], ["GET", "s"], ["PING"]];
  for (const seg of [1, 2, 3, 5, 7, 11, 13])
    assert.equal(text(h.call(c, small, seg)), ["+OK", "one", 1, null, "+PONG"]);
  h.close();
});

test("long values span chunks, stay in the buffers they arrived in and go out by name", () => {
  const h = kvPair();
  const c = h.connect();
  const r = rng(8);
  const values = new Map();
  for (const size of [65, 1000, 1500, 3000, 20_000, 60_000]) {
    const v = new Uint8Array(size);
    for (let i = 0; i < size; i++) v[i] = r.int(256);
    values.set(`bin${size}`, v);
    for (const seg of size <= 15_000 ? [1400, 333] : [1400])
      assert.is(h.call(c, [["SET", `bin${size}`, v]], seg)[0], "+OK");
    const names = h.log.get(`bin${size}`);
    // the header, then the value's ranges of the receive buffers (no copy into the arena)
    assert.is(names[0].length, KV_HEADER);
    assert.ok(names.length >= 2);
    assert.equal(cat(names.slice(1).map((n) => h.srv.pool.viewName(n))), v);
    for (const n of names) assert.is(h.srv.pool.owner(n.index), "kept");
  }
  const byName = h.app.stats.bytesByName;
  const copied = h.app.stats.bytesCopied;
  for (const [k, v] of values) assert.equal(h.one(c, "GET", k), v, k);
  const total = [...values.values()].reduce((n, v) => n + v.length, 0);
  assert.is(h.app.stats.bytesByName - byName + h.app.stats.bytesCopied - copied, total);
  assert.ok(h.app.stats.bytesByName - byName > total - 64 * 2 * values.size, "long values go out by name");
  // one MGET of all of them, pipelined with GETs, and a value split in 333-byte segments
  const mget = h.one(c, "MGET", ...values.keys());
  assert.equal(mget, [...values.values()]);
  const odd = values.get("bin3000");
  assert.is(h.call(c, [["SET", "odd", odd]], 333)[0], "+OK");
  assert.ok(h.log.get("odd").length >= 10, "a value in many small segments keeps many names");
  assert.equal(h.one(c, "GET", "odd"), odd);
  // short values live in the arena after their header, copied once
  h.one(c, "SET", "short", "x".repeat(64));
  const sn = h.log.get("short");
  assert.is(sn.length, 1);
  assert.is(sn[0].length, KV_HEADER + 64);
  h.srv.pool.check();
  h.close();
});

test("a value needing more buffers than a record holds gets an error; the connection and the pool survive", () => {
  const h = kvPair();
  const c = h.connect();
  h.one(c, "SET", "keep", "me");
  const before = h.srv.pool.counts().kept;
  const big = new Uint8Array(200_000).fill(7);
  const got = h.call(c, [["SET", "huge", big], ["PING"], ["GET", "keep"]]);
  assert.ok(got[0].startsWith("-ERR pmstack: an argument needs more than 63 buffers"), got[0]);
  assert.is(got[1], "+PONG");
  assert.is(text(got[2]), "me");
  assert.is(h.one(c, "EXISTS", "huge"), 0);
  assert.is(h.app.stats.tooLarge, 1);
  // in 1000-byte segments: a value over 63 segments fits exactly; one byte more does not
  const head = enc("*3\r\n$3\r\nSET\r\n$4\r\nfits\r\n$12345\r\n").length;
  const fits = new Uint8Array(KV_MAX_VALUE_NAMES * 1000 - head).fill(1);
  assert.is(h.call(c, [["SET", "fits", fits]], 1000)[0], "+OK");
  assert.is(h.log.get("fits").length, KV_MAX_VALUE_NAMES + 1);
  assert.equal(h.one(c, "GET", "fits"), fits);
  const over = new Uint8Array(KV_MAX_VALUE_NAMES * 1000 - head + 1).fill(2);
  assert.ok(h.call(c, [["SET", "fits", over]], 1000)[0].startsWith("-ERR pmstack"));
  assert.equal(h.one(c, "GET", "fits"), fits, "the refused SET left the old value");
  h.one(c, "DEL", "fits");
  h.run(() => h.srv.pool.counts().kept <= before + 1, 200);
  assert.ok(h.srv.pool.counts().kept <= before + 1, "the refused values' buffers went back to the pool");
  h.srv.pool.check();
  h.close();
});

test("SET options NX, XX, GET, KEEPTTL; expiry on the injected clock, enforced on read", () => {
  const clock = { t: 1_700_000_000_000 };
  const h = kvPair({ clock });
  const c = h.connect();
  assert.is(h.one(c, "SET", "k", "1", "XX"), null);
  assert.is(h.one(c, "SET", "k", "1", "NX"), "+OK");
  assert.is(h.one(c, "SET", "k", "2", "NX"), null);
  assert.is(h.one(c, "SET", "k", "3", "XX"), "+OK");
  assert.is(text(h.one(c, "SET", "k", "4", "GET")), "3");
  assert.is(h.one(c, "SET", "new", "x", "GET"), null);
  assert.is(h.one(c, "TTL", "k"), -1);
  assert.is(h.one(c, "TTL", "missing"), -2);
  assert.is(h.one(c, "SET", "e", "v", "PX", "100"), "+OK");
  assert.is(h.one(c, "PTTL", "e"), 100);
  clock.t += 100;
  assert.is(text(h.one(c, "GET", "e")), "v", "alive at its expiry time");
  clock.t += 1;
  assert.is(h.one(c, "GET", "e"), null, "gone one ms later");
  assert.is(h.log.has("e"), false, "an expired key read is deleted");
  assert.is(h.one(c, "SET", "s", "v", "EX", "10"), "+OK");
  assert.is(h.one(c, "TTL", "s"), 10);
  clock.t += 4_000;
  assert.is(h.one(c, "TTL", "s"), 6);
  assert.is(h.one(c, "SET", "s", "w", "KEEPTTL"), "+OK");
  assert.is(h.one(c, "PTTL", "s"), 6_000);
  assert.is(h.one(c, "SET", "s", "w2"), "+OK");
  assert.is(h.one(c, "TTL", "s"), -1, "a plain SET clears the expiry");
  assert.is(h.one(c, "SET", "cnt", "10", "EXAT", String(Math.floor(clock.t / 1000) + 50)), "+OK");
  assert.is(h.one(c, "INCR", "cnt"), 11);
  assert.ok(h.one(c, "TTL", "cnt") > 45, "INCR keeps the expiry");
  assert.is(h.one(c, "SET", "px", "v", "PXAT", String(clock.t + 20)), "+OK");
  assert.is(h.one(c, "EXISTS", "px", "cnt"), 2);
  assert.is(h.one(c, "DBSIZE"), 5);
  clock.t += 21;
  assert.is(h.one(c, "EXISTS", "px", "cnt"), 1);
  clock.t += 60_000;
  assert.is(h.one(c, "DBSIZE"), 3, "DBSIZE counts no expired key");
  assert.ok(h.app.stats.expired >= 3);
  // the turn's end sweeps expired keys nobody reads
  h.one(c, "SET", "swept", "v", "PX", "5");
  clock.t += 1000;
  h.run(() => !h.log.has("swept"), 50);
  assert.is(h.log.has("swept"), false);
  h.close();
});

test("durability: no reply before the group commit; a reopen of the pool file finds every acknowledged key", () => {
  const path = join(scratchDir("tmpfs"), "kv.pm");
  const clock = { t: 1_700_000_000_000 };
  let h = kvPair({ path, clock });
  const c = h.connect();
  const c2 = h.connect();
  assert.is(h.one(c, "SET", "warm", "up"), "+OK");
  // the server's turns without their end: the write is in the log, uncommitted, unanswered
  h.commit = false;
  const commits = h.app.stats.commits;
  h.send(c, cmd("SET", "held", "value"));
  h.send(c2, cmd("GET", "warm"));
  for (let k = 0; k < 30; k++) {
    h.turn();
    h.now += 1;
  }
  assert.is(h.log.has("held"), true);
  assert.ok(h.log.stats().pendingRecords > 0);
  assert.equal(h.take(c), [], "no reply to an uncommitted SET");
  assert.equal(h.take(c2), [], "a read behind an uncommitted write (another connection's) waits too");
  h.commit = true;
  const got = [];
  h.run(() => (got.push(...h.take(c), ...h.take(c2)), got.length >= 2));
  assert.is(h.app.stats.commits, commits + 1, "one group commit for the turn's writes");
  assert.equal(text(got).sort(), ["+OK", "up"]);
  // many acknowledged keys of every shape, then a reopen of the file
  const r = rng(21);
  const want = new Map([
    ["warm", enc("up")],
    ["held", enc("value")],
  ]);
  const cmds = [];
  for (let k = 0; k < 200; k++) {
    const size = [1, 10, 64, 65, 700, 1400, 5000][k % 7];
    const v = new Uint8Array(size);
    for (let i = 0; i < size; i++) v[i] = r.int(256);
    cmds.push(["SET", `key:${k}`, v]);
    want.set(`key:${k}`, v);
  }
  cmds.push(["INCR", "counter"], ["INCR", "counter"], ["SET", "ttl", "later", "EX", "1000"], ["DEL", "key:7"]);
  want.set("counter", enc("2"));
  want.set("ttl", enc("later"));
  want.delete("key:7");
  const replies = h.call(c, cmds);
  assert.ok(replies.every((x) => x === "+OK" || typeof x === "number"));
  h.close();
  // a new process would do the same: open the file, recover the log, serve
  h = kvPair({ path, clock });
  assert.is(h.log.recovery.liveKeys, want.size);
  assert.is(h.app.expiring, 1, "the expiry came back with the record");
  const c3 = h.connect();
  const keys = [...want.keys()];
  const vals = h.call(
    c3,
    keys.map((k) => ["GET", k]),
  );
  keys.forEach((k, i) => assert.equal(vals[i], want.get(k), k));
  assert.is(h.one(c3, "GET", "key:7"), null);
  assert.ok(h.one(c3, "TTL", "ttl") > 990);
  assert.is(h.one(c3, "INCR", "counter"), 3);
  h.srv.pool.check();
  h.close();
  // and the expiry is enforced across the reopen
  clock.t += 2_000_000;
  h = kvPair({ path, clock });
  const c4 = h.connect();
  assert.is(h.one(c4, "GET", "ttl"), null);
  assert.is(text(h.one(c4, "GET", "counter")), "3");
  h.close();
});

test("a reply larger than the command ring goes out over several turns, in order", () => {
  // APP-IN of 128 slots: an MGET of 80 long values needs about 240 sends
  const h = kvPair({ rings: { appIn: 7 } });
  const c = h.connect();
  const vals = [];
  for (let k = 0; k < 80; k++) {
    const v = new Uint8Array(100 + k).fill(k);
    vals.push(v);
    h.one(c, "SET", `r${k}`, v);
  }
  const keys = vals.map((_, k) => `r${k}`);
  const got = h.call(c, [["MGET", ...keys], ["PING"], ["MGET", ...keys.slice(0, 40)]]);
  assert.equal(got[0], vals);
  assert.is(got[1], "+PONG");
  assert.equal(got[2], vals.slice(0, 40));
  assert.ok(h.app.stats.ringWaits > 0, "the replies waited for room in the ring");
  h.srv.pool.check();
  h.close();
});

test("a full send queue: refused replies are resent in order after WRITABLE", () => {
  for (const rings of [undefined, { appIn: 7 }]) {
    const h = kvPair({ sndBuf: 4096, rings });
    const c = h.connect();
    const vals = [];
    for (let k = 0; k < 60; k++) {
      const v = new Uint8Array(900 + k).fill(k);
      vals.push(v);
      h.one(c, "SET", `q${k}`, v);
    }
    const cmds = [];
    for (let r = 0; r < 3; r++) for (let k = 0; k < 60; k++) cmds.push(k % 7 === 0 ? ["PING"] : ["GET", `q${k}`]);
    const got = h.call(c, cmds);
    cmds.forEach((q, i) => assert.equal(got[i], q[0] === "PING" ? "+PONG" : vals[i % 60], `reply ${i}`));
    assert.ok(h.app.stats.refusedSends > 0, "the send queue filled up");
    h.srv.pool.check();
    h.close();
  }
});

test("QUIT after replies the send queue refuses: every reply arrives before the FIN", () => {
  const h = kvPair({ sndBuf: 4096 });
  const c = h.connect();
  const v = new Uint8Array(1200).fill(7);
  h.one(c, "SET", "big", v);
  const cmds = [];
  for (let k = 0; k < 40; k++) cmds.push(["GET", "big"]);
  cmds.push(["QUIT"]);
  const got = h.call(c, cmds);
  for (let k = 0; k < 40; k++) assert.equal(got[k], v, `reply ${k}`);
  assert.is(got[40], "+OK");
  h.run(() => h.conns.get(c).closed);
  assert.ok(h.app.stats.refusedSends > 0, "the send queue filled up");
  h.srv.pool.check();
  h.close();
});

test("clients that go away mid-pipeline leave no buffer behind", () => {
  const h = kvPair();
  const base = h.srv.pool.counts();
  for (let round = 0; round < 3; round++) {
    const c = h.connect();
    const cmds = [];
    for (let k = 0; k < 30; k++) cmds.push(cmd("SET", `g${k}`, new Uint8Array(700).fill(k)), cmd("GET", `g${k}`));
    h.commit = false; // writes pending, replies held: then the client resets the connection
    h.send(c, cat(cmds));
    for (let k = 0; k < 20; k++) h.step();
    h.cli.abort(c);
    h.commit = true;
    for (let k = 0; k < 20; k++) h.step();
  }
  const c = h.connect();
  assert.is(h.one(c, "DBSIZE"), 30);
  assert.is(h.one(c, "FLUSHALL"), "+OK");
  h.cli.close(c);
  for (let k = 0; k < 50; k++) h.step();
  const after = h.srv.pool.check();
  assert.is(after.app, base.app, "no app buffer left (text, held receive buffers)");
  assert.ok(after.kept <= base.kept + 1, `only the arena buffer stays kept (${after.kept})`);
  assert.is(after.free + after.nic, base.free + base.nic - (after.kept - base.kept));
  h.close();
});

test("a full pool: writes answer -OOM and keep nothing, GET and DEL still work, then SET again", () => {
  const h = kvPair({ buffers: 2048 });
  const c = h.connect();
  const value = "v".repeat(1000); // each value keeps its own receive buffer
  const replies = [];
  for (let k = 0; k < 1600; k += 50) {
    const cmds = [];
    for (let j = k; j < k + 50; j++) cmds.push(["SET", `key${j}`, value]);
    replies.push(...h.call(c, cmds));
  }
  const ok = replies.filter((r) => r === "+OK").length;
  const oom = replies.filter(
    (r) => typeof r === "string" && r.startsWith("-OOM command not allowed when the PM pool is full"),
  );
  assert.is(ok + oom.length, 1600, "SET answers OK or -OOM only");
  assert.ok(oom.length > 0 && ok > 500, `${ok} stored, ${oom.length} refused`);
  assert.is(h.app.stats.full, oom.length);
  assert.ok(h.srv.pool.counts().free >= h.app.reserveBuffers - 64, "the reserve stays free");
  assert.is(text(h.one(c, "GET", "key0")), value, "reads work on a full pool");
  const del = [];
  for (let k = 0; k < 600; k++) del.push(["DEL", `key${k}`]);
  assert.ok(h.call(c, del).every((r) => r === 1 || r === 0));
  assert.is(h.one(c, "SET", "after", value), "+OK", "room again after DEL");
  assert.is(text(h.one(c, "GET", "after")), value);
  h.srv.pool.check();
  h.close();
});

test("parseI64 follows Redis's string2ll", () => {
  for (const [s, v] of [
    ["0", 0n],
    ["-1", -1n],
    ["9223372036854775807", 9223372036854775807n],
    ["-9223372036854775808", -9223372036854775808n],
  ])
    assert.is(parseI64(enc(s)), v, s);
  for (const s of ["", "-", "-0", "01", "+1", " 1", "1 ", "1.5", "9223372036854775808", "abc"])
    assert.is(parseI64(enc(s)), null, s);
});

test("FLUSHALL of an empty store answers at once; error lines never carry the client's CR/LF", () => {
  const h = kvPair();
  const c = h.connect();
  // a write that changes nothing appends no record: its reply used to wait for a commit that never came
  assert.is(h.one(c, "FLUSHALL"), "+OK");
  assert.is(h.one(c, "DEL", "nothing"), 0);
  assert.is(h.one(c, "PING"), "+PONG");
  // an unknown command quotes the client's bytes; a CR or LF there would split the error line
  const got = h.call(c, [["BAD\r\nCMD", "x\ny"], ["PING"]]);
  assert.is(got[0], "-ERR unknown command 'BAD  CMD', with args beginning with: 'x y' ");
  assert.is(got[1], "+PONG");
  h.close();
});

const ABUSE_SEEDS = process.env.PMSTACK_ABUSE_SEEDS
  ? process.env.PMSTACK_ABUSE_SEEDS.split(",").map(Number)
  : [2, 3, 2026];
for (const seed of ABUSE_SEEDS)
  test(`abuse (seed ${seed}): random commands and mangled bytes never take the server down or leak a buffer`, () => {
    const r = rng(seed);
    const h = kvPair({ buffers: 2048 });
    const base = h.srv.pool.counts();
    const pick = (xs) => xs[r.int(xs.length)];
    const names = [
      "SET",
      "GET",
      "DEL",
      "EXISTS",
      "MSET",
      "MSETNX",
      "MGET",
      "INCR",
      "DECR",
      "INCRBY",
      "DECRBY",
      "STRLEN",
      "TTL",
      "PTTL",
      "DBSIZE",
      "PING",
      "ECHO",
      "SELECT",
      "INFO",
      "CONFIG",
      "CLIENT",
      "HELLO",
      "COMMAND",
      "FLUSHALL",
      "set",
      "nope",
    ];
    const words = [
      "k1",
      "k2",
      "k3",
      "EX",
      "PX",
      "EXAT",
      "PXAT",
      "NX",
      "XX",
      "GET",
      "KEEPTTL",
      "0",
      "-1",
      "1",
      "10",
      "9223372036854775807",
      "-9223372036854775808",
      "99999999999999999999",
      "1.5",
      "x",
      "",
      "GET",
      "SETNAME",
      "LIST",
      "*",
    ];
    const arg = () => (r() < 0.1 ? new Uint8Array(r.int(2000)).fill(0x61 + r.int(26)) : pick(words));
    const mangle = (b) => {
      const out = Array.from(b);
      for (let e = r.int(3); e > 0; e--) {
        const at = r.int(out.length + 1);
        const junk = Array.from(
          enc(pick(["\r\n", "*", "$", "-", "$-1\r\n", "*-5\r\n", "x", "\n", "$99999999999\r\n"])),
        );
        out.splice(at, r.int(3), ...junk);
      }
      return Uint8Array.from(out);
    };
    let replies = 0;
    for (let round = 0; round < 30; round++) {
      const conns = [h.connect(), h.connect()];
      for (const c of conns) {
        const cmds = [];
        for (let k = 0; k < 12; k++) {
          const bytes = cmd(pick(names), ...Array.from({ length: r.int(5) }, arg));
          cmds.push(r() < 0.2 ? mangle(bytes) : bytes);
        }
        h.send(c, cat(cmds), pick([97, 1400]));
      }
      for (let k = 0; k < 60; k++) h.step();
      for (const c of conns) {
        replies += h.take(c).length;
        if (!h.conns.get(c).closed) h.cli.close(c);
      }
      for (let k = 0; k < 60; k++) h.step();
    }
    // not vacuous: commands ran, wrote, failed, and some connections ended in protocol errors
    assert.ok(replies > 300, `${replies} replies`);
    assert.ok(h.app.stats.writes > 5 && h.app.stats.errors > 50, JSON.stringify(h.app.stats));
    const c = h.connect();
    assert.is(h.one(c, "PING"), "+PONG", "the server goes on");
    assert.is(h.one(c, "FLUSHALL"), "+OK");
    h.cli.close(c);
    for (let k = 0; k < 100; k++) h.step();
    const after = h.srv.pool.check();
    assert.is(after.app, base.app, "no app buffer left");
    assert.ok(after.kept <= base.kept + 1, `only the arena buffer stays kept (${after.kept})`);
    h.close();
  });

test.run();

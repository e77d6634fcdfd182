// The durable key-value store (KvApp) over two stacks joined in memory: every command and its
// Redis errors (the texts Redis 7 answers), pipelining, values of any size (kept in the buffers
// they arrived in, as extent trees beyond one record's 64 items, streamed back from PM), the
// string family (GETRANGE, SETRANGE, APPEND, GETEX, INCRBYFLOAT...), expiry on an injected clock
// (EXPIRE NX/XX/GT/LT, PERSIST, across a reopen), full pools, and durability: no reply before
// the turn's group commit, and a reopen of the pool file finds every acknowledged key. Leak
// checks walk every live record's tree: the pool's kept buffers are exactly those.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { KV_TRAILER, KV_SMALL, parseI64 } from "../build/index.js";
import { scratchDir } from "./lib/tmp.mjs";
import { rng } from "./lib/rng.mjs";
import {
  cmd,
  cat,
  text,
  reachable,
  kvPair,
  randomBytes,
  sameBytes,
  assertKeptExact as keptExact,
  assertAllFreed as allFreed,
} from "./lib/memclient.mjs";

const enc = (s) => new TextEncoder().encode(s);

/** The pool keeps exactly what live records reach, plus the arena's current buffer. */
const assertKeptExact = (h, msg = "") => keptExact(h.srv.pool, h.log, h.app.store.arena.current, msg);

/** No record left, no kept buffer but the arena's, no more app buffers than at `base`. */
const assertAllFreed = (h, base, msg = "") => allFreed(h.srv.pool, h.log, h.app.store.arena.current, base, msg);

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
  assert.match(info, /pm_persistence:(mmap|file|memory)\r\npm_persist_mode:\w+\r\npm_durability:[\w-]+\r\n/);
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

test("a GET's reply is the SET's own bytes where they lie: its head and CRLF go by name with the value", () => {
  const h = kvPair();
  const c = h.connect();
  const r = rng(21);
  const val = (n) => {
    const v = new Uint8Array(n);
    for (let i = 0; i < n; i++) v[i] = r.int(256);
    return v;
  };
  /** GETs `key`, checks the value, and returns [bytes copied, bytes by name] for the reply. */
  const get = (key, want) => {
    const copied = h.app.stats.bytesCopied;
    const byName = h.app.stats.bytesByName;
    assert.equal(h.one(c, "GET", key), want, key);
    return [h.app.stats.bytesCopied - copied, h.app.stats.bytesByName - byName];
  };
  const setCmd = (key, v) => cmd("SET", key, v);
  // head, value and CRLF in one segment: the whole reply is the request's bytes, by name
  const v1 = val(1000);
  assert.is(h.call(c, [setCmd("whole", v1)])[0], "+OK");
  assert.equal(get("whole", v1), [0, v1.length + 9]);
  // the head ends a segment (the value starts the next buffer): the head is copied, the CRLF not
  const split = setCmd("split", v1);
  const head = split.length - v1.length - 2;
  h.send(c, split.subarray(0, head), head); // (a piece under 1400 bytes leaves as a segment of its own)
  assert.is(h.call(c, [split.subarray(head)])[0], "+OK");
  assert.equal(get("split", v1), [7, v1.length + 2]);
  // the value ends a segment: its CRLF lies in the next buffer and is copied
  assert.is(h.call(c, [setCmd("tail", v1)], setCmd("tail", v1).length - 2)[0], "+OK");
  assert.equal(get("tail", v1), [2, v1.length + 7]);
  // a head that is not the reply's ("$0100" for 100 bytes) is not sent: the reply's is copied
  const v2 = val(100);
  const odd = cat([enc("*3\r\n$3\r\nSET\r\n$3\r\nodd\r\n$0100\r\n"), v2, enc("\r\n")]);
  assert.is(h.call(c, [odd])[0], "+OK");
  assert.equal(get("odd", v2), [6, v2.length + 2]);
  // APPEND: the value is two requests' ranges; the first one's head is the old length's
  const v3 = val(300);
  assert.is(h.call(c, [setCmd("app", v2)])[0], "+OK");
  assert.is(h.one(c, "APPEND", "app", v3), 400);
  assert.equal(get("app", cat([v2, v3])), [6, 400 + 2]);
  // a pipeline of GETs of values written by a pipeline of SETs, in segments of every size
  const vals = Array.from({ length: 24 }, (_, i) => val(70 + 97 * i));
  for (const seg of [1400, 777, 64]) {
    assert.ok(
      h
        .call(
          c,
          vals.map((v, i) => setCmd(`p${i}`, v)),
          seg,
        )
        .every((x) => x === "+OK"),
      `SETs in segments of ${seg}`,
    );
    assert.equal(
      h.call(
        c,
        vals.map((_, i) => ["GET", `p${i}`]),
      ),
      vals,
    );
  }
  // the replies held no reference of their own once sent: only the records keep buffers
  h.settle();
  assertKeptExact(h);
  h.close();
});

test("pipelined GETs read in place answer as the parser's path does, mixed with every other form", () => {
  const clock = { t: 1_700_000_000_000 };
  const h = kvPair({ clock });
  const c = h.connect();
  const r = rng(33);
  const model = new Map();
  const keyOf = () => {
    // 1 to 99 bytes (the in-place path takes up to 64), any byte values, a few shared
    const k = r.int(4) === 0 ? new Uint8Array(1 + r.int(99)) : enc(`key:${r.int(40)}`);
    if (k.length > 10) for (let i = 0; i < k.length; i++) k[i] = r.int(256);
    return k;
  };
  const latin = (k) => String.fromCharCode(...k);
  const mixedCase = (w) => [...w].map((x) => (r.int(2) ? x.toUpperCase() : x.toLowerCase())).join("");
  let general = 0;
  let expiring = false;
  for (let round = 0; round < 30; round++) {
    const cmds = [];
    const want = [];
    if (expiring) {
      cmds.push(["GET", "gone"]);
      want.push(null);
      general++;
      expiring = false;
    }
    for (let k = 0; k < 40; k++) {
      const key = r.int(8) === 0 ? keyOf() : enc(`key:${r.int(40)}`);
      const x = r.int(10);
      if (x < 5) {
        cmds.push([mixedCase("get"), key]);
        want.push(model.get(latin(key)) ?? null);
        if (key.length > 64) general++;
      } else if (x < 8) {
        const v = randomBytes(r, r.int(2) ? r.int(70) : r.int(3000));
        cmds.push(["SET", key, v]);
        want.push("+OK");
        model.set(latin(key), v);
      } else if (x < 9) {
        cmds.push(["DEL", key]);
        want.push(model.delete(latin(key)) ? 1 : 0);
      } else {
        // a key with an expiry, read in the next round once it has passed: the parser's path
        // answers that GET (and deletes the key)
        cmds.push(["SET", "gone", "soon", "PX", "1"], ["PING"]);
        want.push("+OK", "+PONG");
        expiring = true;
      }
    }
    const seg = [1400, 333, 64, 7][round % 4];
    const got = h.call(c, cmds, seg);
    assert.is(got.length, want.length);
    for (let k = 0; k < want.length; k++) assert.equal(got[k], want[k], `round ${round}, reply ${k}`);
    clock.t += 2;
  }
  const st = h.app.stats;
  assert.ok(st.inPlaceGets > 100, `GETs read in place: ${st.inPlaceGets}`);
  assert.ok(general > 10, "GETs the parser's path answered");
  assert.is(st.reads, st.hits + st.misses);
  h.settle();
  assertKeptExact(h);
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
    const names = h.log.object(`bin${size}`).names;
    // the value's ranges of the receive buffers (no copy into the arena), then the trailer
    const trailer = names[names.length - 1];
    assert.is(trailer.length, KV_TRAILER);
    assert.equal(text(h.srv.pool.viewName({ ...trailer, length: 4 })), "pmKV");
    assert.ok(names.length >= 2 && names.length <= 64);
    assert.ok(!names.some((n) => n.height), "under 64 ranges: no extent tree");
    assert.equal(cat(names.slice(0, -1).map((n) => h.srv.pool.viewName(n))), v);
    for (const n of names) assert.is(h.srv.pool.owner(n.index), "kept");
  }
  const byName = h.app.stats.bytesByName;
  const copied = h.app.stats.bytesCopied;
  for (const [k, v] of values) assert.equal(h.one(c, "GET", k), v, k);
  const total = [...values.values()].reduce((n, v) => n + v.length, 0);
  // every value byte went out by name or copied (the replies' heads and CRLFs are copied too)
  const heads = [...values.values()].reduce((n, v) => n + `$${v.length}\r\n\r\n`.length, 0);
  assert.is(h.app.stats.bytesByName - byName + h.app.stats.bytesCopied - copied, total + heads);
  assert.ok(h.app.stats.bytesByName - byName > total - 64 * 2 * values.size, "long values go out by name");
  // one MGET of all of them, pipelined with GETs, and a value split in 333-byte segments
  const mget = h.one(c, "MGET", ...values.keys());
  assert.equal(mget, [...values.values()]);
  const odd = values.get("bin3000");
  assert.is(h.call(c, [["SET", "odd", odd]], 333)[0], "+OK");
  assert.ok(h.log.object("odd").names.length >= 10, "a value in many small segments keeps many names");
  assert.equal(h.one(c, "GET", "odd"), odd);
  // short values live in the arena in front of their trailer, copied once: one name
  h.one(c, "SET", "short", "x".repeat(KV_SMALL));
  const sn = h.log.object("short").names;
  assert.is(sn.length, 1);
  assert.is(sn[0].length, KV_SMALL + KV_TRAILER);
  assert.is(text(h.srv.pool.viewName(sn[0]).subarray(0, KV_SMALL + 4)), "x".repeat(KV_SMALL) + "pmKV");
  assert.is(h.srv.pool.owner(sn[0].index), "kept");
  assert.is(sn[0].index, h.app.store.arena.current, "in the arena's buffer");
  assertKeptExact(h, "after the long values");
  h.close();
});

test("values far beyond one record's 64 items are stored as extent trees, read back byte-exact, and DEL frees every buffer", () => {
  const h = kvPair({ buffers: 8192 });
  const c = h.connect();
  h.one(c, "SET", "keep", "me");
  h.settle();
  const before = h.srv.pool.check();
  const r = rng(64);
  // 200 KB in 1000-byte segments (over 200 ranges), 90 KB in 97-byte ones (about 950 ranges)
  const big = randomBytes(r, 200_000);
  const got = h.call(c, [["SET", "huge", big], ["PING"], ["GET", "keep"]], 1000);
  assert.equal(got.slice(0, 2), ["+OK", "+PONG"]);
  assert.is(text(got[2]), "me");
  const tiny = randomBytes(r, 90_000);
  assert.is(h.call(c, [["SET", "tiny", tiny]], 97)[0], "+OK");
  for (const [k, v] of [
    ["huge", big],
    ["tiny", tiny],
  ]) {
    const o = h.log.object(k);
    assert.ok(o.names.length <= 2, `${k}: a tree and the trailer (${o.names.length} items)`);
    assert.ok(o.names[0].height >= 1, `${k}: its first item is an extent node`);
    assert.is(o.length, v.length + KV_TRAILER);
    assert.ok(h.log.get(k).length > 64, `${k}: more data ranges than a record holds`);
    sameBytes(h.one(c, "GET", k), v, k);
    assert.is(h.one(c, "STRLEN", k), v.length);
  }
  assertKeptExact(h, "with two trees");
  // MGET streams both, in order, beside a short value
  const mget = h.one(c, "MGET", "tiny", "keep", "huge", "none");
  sameBytes(mget[0], tiny, "mget tiny");
  assert.is(text(mget[1]), "me");
  sameBytes(mget[2], big, "mget huge");
  assert.is(mget[3], null);
  assert.is(h.one(c, "DEL", "huge", "tiny"), 2);
  h.settle();
  const after = assertKeptExact(h, "after DEL");
  assert.is(after.kept, before.kept, "every buffer of the trees went back to the pool");
  assert.is(after.free + after.nic, before.free + before.nic);
  assert.is(after.app, before.app);
  h.close();
});

/** Redis 7.0's GETRANGE on `v` (t_string.c getrangeCommand): the bytes it answers. */
function getrangeModel(v, s, e) {
  const n = v.length;
  if (n === 0 || (s < 0 && e < 0 && s > e)) return v.subarray(0, 0);
  if (s < 0) s = n + s;
  if (e < 0) e = n + e;
  if (s < 0) s = 0;
  if (e < 0) e = 0;
  if (e >= n) e = n - 1;
  return s > e ? v.subarray(0, 0) : v.subarray(s, e + 1);
}

/** Redis's SETRANGE on `old` (null: no key): the new value (zeros fill a gap past the end). */
function setrangeModel(old, off, arg) {
  if (arg.length === 0) return old;
  const out = new Uint8Array(Math.max(old ? old.length : 0, off + arg.length));
  if (old) out.set(old);
  out.set(arg, off);
  return out;
}

const concat = (a, b) => {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
};

test("SETNX, GETSET, GETDEL: Redis's replies, values of any size, GETSET clears the expiry", () => {
  const h = kvPair({ buffers: 8192 });
  const c = h.connect();
  const r = rng(5);
  assert.is(h.one(c, "SETNX", "nx", "1"), 1);
  assert.is(h.one(c, "SETNX", "nx", "2"), 0);
  assert.is(text(h.one(c, "GET", "nx")), "1", "SETNX left the value");
  const big = randomBytes(r, 300_000);
  assert.is(h.one(c, "SETNX", "big", big), 1);
  assert.is(h.one(c, "SETNX", "big", "x"), 0);
  sameBytes(h.one(c, "GET", "big"), big, "SETNX of a tree");
  assert.is(h.one(c, "SET", "gs", "old", "EX", "100"), "+OK");
  assert.is(text(h.one(c, "GETSET", "gs", "new")), "old");
  assert.is(text(h.one(c, "GET", "gs")), "new");
  assert.is(h.one(c, "TTL", "gs"), -1, "GETSET clears the expiry");
  assert.is(h.one(c, "GETSET", "fresh", "v"), null, "GETSET of a missing key answers nil");
  assert.is(text(h.one(c, "GET", "fresh")), "v", "and sets it");
  // the old value streams out while the new one replaces it (in the same turn)
  const big2 = randomBytes(r, 250_000);
  sameBytes(h.one(c, "GETSET", "big", big2), big, "GETSET's old value");
  sameBytes(h.one(c, "GET", "big"), big2, "GETSET's new value");
  const got = h.call(c, [
    ["GETSET", "big", "small"],
    ["GET", "big"],
    ["GETSET", "big", big],
    ["GETDEL", "big"],
    ["GET", "big"],
  ]);
  sameBytes(got[0], big2, "pipelined GETSET");
  assert.is(text(got[1]), "small");
  assert.is(text(got[2]), "small");
  sameBytes(got[3], big, "GETDEL of a tree");
  assert.is(got[4], null);
  assert.is(text(h.one(c, "GETDEL", "fresh")), "v");
  assert.is(h.one(c, "GETDEL", "fresh"), null, "GETDEL of a missing key answers nil");
  assert.is(h.one(c, "EXISTS", "fresh", "big"), 0);
  assert.is(h.one(c, "SETNX", "a"), "-ERR wrong number of arguments for 'setnx' command");
  assert.is(h.one(c, "GETSET", "a"), "-ERR wrong number of arguments for 'getset' command");
  assert.is(h.one(c, "GETDEL"), "-ERR wrong number of arguments for 'getdel' command");
  assert.is(h.one(c, "GETDEL", "a", "b"), "-ERR wrong number of arguments for 'getdel' command");
  h.settle();
  assertKeptExact(h, "after GETSET and GETDEL of trees");
  h.close();
});

test("SETEX and PSETEX: expiry in seconds and ms; 0, negatives and non-integers are errors that change nothing", () => {
  const clock = { t: 1_700_000_000_000 };
  const h = kvPair({ clock });
  const c = h.connect();
  assert.is(h.one(c, "SETEX", "se", "10", "v"), "+OK");
  assert.is(h.one(c, "TTL", "se"), 10);
  assert.is(h.one(c, "PTTL", "se"), 10_000);
  assert.is(h.one(c, "PSETEX", "se", "1500", "w"), "+OK");
  assert.is(h.one(c, "PTTL", "se"), 1500);
  assert.is(h.one(c, "TTL", "se"), 2, "TTL rounds to the nearest second, as Redis does");
  for (const [cmdName, t, err] of [
    ["SETEX", "0", "-ERR invalid expire time in 'setex' command"],
    ["SETEX", "-1", "-ERR invalid expire time in 'setex' command"],
    ["PSETEX", "0", "-ERR invalid expire time in 'psetex' command"],
    ["PSETEX", "-100", "-ERR invalid expire time in 'psetex' command"],
    ["SETEX", "abc", "-ERR value is not an integer or out of range"],
    ["SETEX", "1.5", "-ERR value is not an integer or out of range"],
    ["PSETEX", "", "-ERR value is not an integer or out of range"],
    ["SETEX", "9223372036854775808", "-ERR value is not an integer or out of range"],
    ["SETEX", "9223372036854775807", "-ERR invalid expire time in 'setex' command"],
  ])
    assert.is(h.one(c, cmdName, "se", t, "changed"), err, `${cmdName} ${t}`);
  assert.is(text(h.one(c, "GET", "se")), "w", "a refused SETEX changes nothing");
  assert.is(h.one(c, "PTTL", "se"), 1500);
  assert.is(h.one(c, "SETEX", "se", "10"), "-ERR wrong number of arguments for 'setex' command");
  assert.is(h.one(c, "PSETEX", "se"), "-ERR wrong number of arguments for 'psetex' command");
  clock.t += 1500;
  assert.is(text(h.one(c, "GET", "se")), "w", "alive at its expiry time");
  clock.t += 1;
  assert.is(h.one(c, "GET", "se"), null, "gone a ms later");
  const big = randomBytes(rng(6), 100_000);
  assert.is(h.one(c, "SETEX", "big", "100", big), "+OK");
  assert.is(h.one(c, "TTL", "big"), 100);
  sameBytes(h.one(c, "GET", "big"), big, "SETEX of a tree");
  assert.is(h.one(c, "SET", "big", "x"), "+OK");
  assert.is(h.one(c, "TTL", "big"), -1, "a SET clears SETEX's expiry");
  h.settle();
  assertKeptExact(h, "after SETEX");
  h.close();
});

test("GETEX with each option and PERSIST, and its errors; TTL and PTTL after each", () => {
  const clock = { t: 1_700_000_000_000 };
  const h = kvPair({ clock });
  const c = h.connect();
  const sec = () => Math.floor(clock.t / 1000);
  assert.is(h.one(c, "SET", "k", "v", "EX", "100"), "+OK");
  assert.is(text(h.one(c, "GETEX", "k")), "v");
  assert.is(h.one(c, "TTL", "k"), 100, "GETEX without options leaves the expiry");
  assert.is(text(h.one(c, "GETEX", "k", "PERSIST")), "v");
  assert.is(h.one(c, "TTL", "k"), -1, "PERSIST removes it");
  assert.is(text(h.one(c, "GETEX", "k", "PERSIST")), "v");
  assert.is(h.one(c, "TTL", "k"), -1, "PERSIST of a key without expiry");
  assert.is(text(h.one(c, "GETEX", "k", "ex", "50")), "v");
  assert.is(h.one(c, "TTL", "k"), 50);
  assert.is(text(h.one(c, "GETEX", "k", "PX", "1500")), "v");
  assert.is(h.one(c, "PTTL", "k"), 1500);
  assert.is(text(h.one(c, "GETEX", "k", "EXAT", String(sec() + 200))), "v");
  assert.is(h.one(c, "PTTL", "k"), (sec() + 200) * 1000 - clock.t);
  assert.is(text(h.one(c, "GETEX", "k", "PXAT", String(clock.t + 3333))), "v");
  assert.is(h.one(c, "PTTL", "k"), 3333);
  assert.is(text(h.one(c, "GETEX", "k", "persist", "persist")), "v", "PERSIST twice is allowed");
  assert.is(h.one(c, "TTL", "k"), -1);
  for (const [opts, err] of [
    [["EX", "0"], "-ERR invalid expire time in 'getex' command"],
    [["EX", "-5"], "-ERR invalid expire time in 'getex' command"],
    [["PX", "0"], "-ERR invalid expire time in 'getex' command"],
    [["PXAT", "0"], "-ERR invalid expire time in 'getex' command"],
    [["EXAT", "-1"], "-ERR invalid expire time in 'getex' command"],
    [["EX", "abc"], "-ERR value is not an integer or out of range"],
    [["PX", "1.5"], "-ERR value is not an integer or out of range"],
    [["EX", "10", "PERSIST"], "-ERR syntax error"],
    [["PERSIST", "EX", "10"], "-ERR syntax error"],
    [["EX", "10", "PX", "10"], "-ERR syntax error"],
    [["EX"], "-ERR syntax error"],
    [["BOGUS"], "-ERR syntax error"],
    [["KEEPTTL"], "-ERR syntax error"],
    [["NX"], "-ERR syntax error"],
    [["GET"], "-ERR syntax error"],
  ])
    assert.is(h.one(c, "GETEX", "k", ...opts), err, opts.join(" "));
  assert.is(h.one(c, "TTL", "k"), -1, "a refused GETEX changes nothing");
  assert.is(h.one(c, "GETEX", "none"), null);
  assert.is(h.one(c, "GETEX", "none", "EX", "10"), null);
  assert.is(h.one(c, "GETEX", "none", "PERSIST"), null);
  assert.is(h.one(c, "EXISTS", "none"), 0);
  assert.is(h.one(c, "GETEX"), "-ERR wrong number of arguments for 'getex' command");
  // an expiry in the past: the value is answered and the key is gone
  assert.is(text(h.one(c, "GETEX", "k", "EXAT", "1")), "v");
  assert.is(h.one(c, "EXISTS", "k"), 0);
  assert.is(h.one(c, "TTL", "k"), -2);
  // GETEX on a tree: the value streams, only the trailer is new
  const big = randomBytes(rng(7), 200_000);
  h.one(c, "SET", "big", big);
  h.settle();
  const before = h.srv.pool.counts().kept;
  sameBytes(h.one(c, "GETEX", "big", "EX", "60"), big, "GETEX of a tree");
  assert.is(h.one(c, "TTL", "big"), 60);
  sameBytes(h.one(c, "GET", "big"), big, "the value after GETEX");
  h.settle();
  assert.ok(h.srv.pool.counts().kept <= before + 1, "a new expiry shares the value's buffers");
  clock.t += 60_001;
  assert.is(h.one(c, "GETEX", "big"), null, "expired");
  h.settle();
  assertKeptExact(h, "after GETEX");
  h.close();
});

test("EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT with NX, XX, GT, LT and their errors; PERSIST; TTL and PTTL after each", () => {
  const clock = { t: 1_700_000_000_000 };
  const h = kvPair({ clock });
  const c = h.connect();
  const sec = Math.floor(clock.t / 1000);
  h.one(c, "SET", "k", "v");
  // [command, its reply, PTTL after it]
  const steps = [
    [["EXPIRE", "k", "100", "XX"], 0, -1],
    [["EXPIRE", "k", "100", "GT"], 0, -1], // no expiry is an infinite one: nothing is greater
    [["EXPIRE", "k", "100", "LT"], 1, 100_000],
    [["EXPIRE", "k", "50", "NX"], 0, 100_000],
    [["EXPIRE", "k", "200", "GT"], 1, 200_000],
    [["EXPIRE", "k", "100", "GT"], 0, 200_000],
    [["EXPIRE", "k", "200", "GT"], 0, 200_000],
    [["EXPIRE", "k", "300", "LT"], 0, 200_000],
    [["EXPIRE", "k", "200", "LT"], 0, 200_000],
    [["EXPIRE", "k", "150", "lt"], 1, 150_000],
    [["EXPIRE", "k", "160", "XX", "GT"], 1, 160_000],
    [["EXPIRE", "k", "170", "xx", "lt"], 0, 160_000],
    [["PEXPIRE", "k", "12345"], 1, 12_345],
    [["PEXPIRE", "k", "12346", "GT"], 1, 12_346],
    [["EXPIREAT", "k", String(sec + 1000)], 1, (sec + 1000) * 1000 - clock.t],
    [["PEXPIREAT", "k", String(clock.t + 2_000_000), "GT"], 1, 2_000_000],
    [["PEXPIREAT", "k", String(clock.t + 1_000_000), "NX"], 0, 2_000_000],
    [["PERSIST", "k"], 1, -1],
    [["PERSIST", "k"], 0, -1],
    [["EXPIRE", "k", "10", "LT"], 1, 10_000], // less than infinite
    [["PEXPIREAT", "k", String(clock.t + 5000), "XX"], 1, 5000],
    [["EXPIRE", "k", "10", "NX"], 0, 5000],
    [["PERSIST", "k"], 1, -1],
    [["EXPIRE", "k", "-1", "GT"], 0, -1], // a past time, but GT fails first: the key stays
    [["EXPIRE", "k", "10", "NX"], 1, 10_000],
  ];
  for (const [q, reply, pttl] of steps) {
    const what = q.join(" ");
    assert.is(h.one(c, ...q), reply, what);
    assert.is(h.one(c, "PTTL", "k"), pttl, `PTTL after ${what}`);
    assert.is(h.one(c, "TTL", "k"), pttl < 0 ? pttl : Math.floor((pttl + 500) / 1000), `TTL after ${what}`);
  }
  const E_NX = "-ERR NX and XX, GT or LT options at the same time are not compatible";
  for (const [q, err] of [
    [["EXPIRE", "k", "99", "NX", "XX"], E_NX],
    [["EXPIRE", "k", "99", "NX", "GT"], E_NX],
    [["PEXPIRE", "k", "99", "LT", "NX"], E_NX],
    [["EXPIRE", "k", "99", "GT", "LT"], "-ERR GT and LT options at the same time are not compatible"],
    [["EXPIREAT", "k", "99", "BOGUS"], "-ERR Unsupported option BOGUS"],
    [["EXPIRE", "k", "99", "NX", "nx", "maybe"], "-ERR Unsupported option maybe"],
    [["EXPIRE", "k", "abc"], "-ERR value is not an integer or out of range"],
    [["EXPIRE", "k", "1.5"], "-ERR value is not an integer or out of range"],
    [["PEXPIRE", "k", "9223372036854775808"], "-ERR value is not an integer or out of range"],
    [["EXPIRE", "k", "9999999999999999"], "-ERR invalid expire time in 'expire' command"],
    [["PEXPIRE", "k", "9223372036854775807"], "-ERR invalid expire time in 'pexpire' command"],
    [["EXPIRE", "k"], "-ERR wrong number of arguments for 'expire' command"],
    [["PEXPIREAT", "k"], "-ERR wrong number of arguments for 'pexpireat' command"],
    [["PERSIST"], "-ERR wrong number of arguments for 'persist' command"],
    [["PERSIST", "a", "b"], "-ERR wrong number of arguments for 'persist' command"],
    [["TTL"], "-ERR wrong number of arguments for 'ttl' command"],
    [["PTTL", "a", "b"], "-ERR wrong number of arguments for 'pttl' command"],
  ])
    assert.is(h.one(c, ...q), err, q.join(" "));
  assert.is(h.one(c, "PTTL", "k"), 10_000, "a refused EXPIRE changes nothing");
  // missing keys
  assert.is(h.one(c, "EXPIRE", "none", "10"), 0);
  assert.is(h.one(c, "PEXPIRE", "none", "10", "XX", "GT"), 0);
  assert.is(h.one(c, "PERSIST", "none"), 0);
  assert.is(h.one(c, "TTL", "none"), -2);
  assert.is(h.one(c, "PTTL", "none"), -2);
  // a time at or before now deletes the key and answers 1, as Redis does
  for (const q of [
    ["EXPIRE", "k", "-1"],
    ["EXPIRE", "k", "0"],
    ["PEXPIRE", "k", "-100", "LT"],
    ["EXPIREAT", "k", "1"],
    ["PEXPIREAT", "k", "0"],
    ["PEXPIREAT", "k", String(clock.t)],
  ]) {
    assert.is(h.one(c, "SET", "k", "v", "EX", "100"), "+OK");
    assert.is(h.one(c, ...q), 1, q.join(" "));
    assert.is(h.one(c, "EXISTS", "k"), 0, `${q.join(" ")} deleted the key`);
    assert.is(h.log.has("k"), false);
  }
  // the clock: alive at its expiry time, gone a ms later
  h.one(c, "SET", "k", "v");
  assert.is(h.one(c, "PEXPIRE", "k", "1500"), 1);
  clock.t += 1000;
  assert.is(h.one(c, "PTTL", "k"), 500);
  assert.is(h.one(c, "TTL", "k"), 1);
  clock.t += 500;
  assert.is(h.one(c, "PTTL", "k"), 0);
  assert.is(text(h.one(c, "GET", "k")), "v");
  clock.t += 1;
  assert.is(h.one(c, "PTTL", "k"), -2);
  // which writes keep an expiry and which clear it
  h.one(c, "SET", "t", "5", "PX", "60000");
  for (const [q, reply, keeps] of [
    [["INCR", "t"], 6, true],
    [["INCRBYFLOAT", "t", "0.5"], "6.5", true],
    [["APPEND", "t", "1"], 4, true],
    [["SETRANGE", "t", "0", "7"], 4, true],
    [["GET", "t"], "7.51", true],
    [["SET", "t", "v", "KEEPTTL"], "+OK", true],
    [["GETEX", "t"], "v", true],
    [["SET", "t", "v"], "+OK", false],
  ]) {
    assert.is(text(h.one(c, ...q)), reply, q.join(" "));
    assert.is(h.one(c, "PTTL", "t"), keeps ? 60_000 : -1, `PTTL after ${q.join(" ")}`);
  }
  h.one(c, "PEXPIRE", "t", "60000");
  assert.is(text(h.one(c, "GETSET", "t", "w")), "v");
  assert.is(h.one(c, "PTTL", "t"), -1, "GETSET clears the expiry");
  h.settle();
  assertKeptExact(h, "after the expiry commands");
  h.close();
});

test("expiries set by EXPIRE, PEXPIREAT, SETEX, GETEX, kept by APPEND and SETRANGE, removed by PERSIST, survive a reopen of the pool file", () => {
  const path = join(scratchDir("tmpfs"), "kv-expiry.pm");
  const clock = { t: 1_700_000_000_000 };
  let h = kvPair({ path, clock });
  let c = h.connect();
  const big = randomBytes(rng(9), 150_000);
  const replies = h.call(c, [
    ["SET", "e", "v"],
    ["EXPIRE", "e", "100"],
    ["SET", "pa", "v"],
    ["PEXPIREAT", "pa", String(clock.t + 5000)],
    ["SETEX", "se", "300", "v"],
    ["SET", "gx", "v"],
    ["GETEX", "gx", "PX", "7000"],
    ["SET", "p", "v", "EX", "100"],
    ["PERSIST", "p"],
    ["SET", "big", big, "EX", "1000"],
    ["APPEND", "big", "tail"],
    ["SETRANGE", "big", "0", "head"],
    ["SET", "n", "1", "PX", "9000"],
    ["INCRBYFLOAT", "n", "0.5"],
    ["SET", "soon", "v", "PX", "10"],
  ]);
  assert.equal(text(replies.slice(-2)), ["1.5", "+OK"]);
  h.close();
  h = kvPair({ path, clock });
  assert.is(h.app.expiring, 7, "e, pa, se, gx, big, n, soon come back with their expiry");
  c = h.connect();
  const want = { e: 100_000, pa: 5000, se: 300_000, gx: 7000, p: -1, big: 1_000_000, n: 9000, soon: 10 };
  for (const [k, pttl] of Object.entries(want)) assert.is(h.one(c, "PTTL", k), pttl, k);
  const model = concat(concat(enc("head"), big.subarray(4)), enc("tail"));
  sameBytes(h.one(c, "GET", "big"), model, "the value APPEND and SETRANGE made");
  assert.is(text(h.one(c, "GET", "n")), "1.5");
  clock.t += 5001;
  assert.is(h.one(c, "EXISTS", "pa", "soon", "e"), 1);
  assert.is(h.one(c, "DBSIZE"), 6);
  h.settle();
  assertKeptExact(h, "after the reopen");
  h.close();
  clock.t += 1_000_000;
  h = kvPair({ path, clock });
  c = h.connect();
  assert.is(h.one(c, "DBSIZE"), 1, "only the key PERSIST made permanent is left");
  assert.is(h.one(c, "TTL", "p"), -1);
  h.settle();
  assertKeptExact(h, "after the second reopen");
  h.close();
});

test("values of 1 KB to 16 MB round-trip: SET, GET, STRLEN, GETRANGE on random ranges with negative indices", () => {
  const h = kvPair({ buffers: 32768 });
  const c = h.connect();
  const r = rng(16);
  h.settle();
  const base = h.srv.pool.check();
  const keys = [];
  const values = new Map();
  for (const size of [1024, 65_536, 1 << 20, 16 << 20]) {
    const v = randomBytes(r, size);
    const key = `v${size}`;
    keys.push(key);
    values.set(key, v);
    assert.is(h.one(c, "SET", key, v), "+OK");
    assert.is(h.one(c, "STRLEN", key), size);
    sameBytes(h.one(c, "GET", key), v, `GET of ${size} bytes`);
    const ranges = [
      [0, -1],
      [-1, -1],
      [0, 0],
      [-size, -size],
      [-size - 10, 9],
      [size - 1, size + 100],
      [size, size + 5],
      [5, 3],
      [-1, -5],
      [-10, -1],
      [100, -100],
      [0, -size - 1],
      ["-9223372036854775808", "9223372036854775807"],
    ];
    for (let k = 0; k < 40; k++) {
      const start = r.int(size);
      const len = k < 2 ? r.int(size) : r.int(Math.min(size, 70_000));
      const end = Math.min(start + len, size + 100);
      // the same range, written with negative indices half of the time
      ranges.push(r() < 0.5 ? [start, end] : [start - size, end - size]);
    }
    const got = h.call(
      c,
      ranges.map(([s, e]) => ["GETRANGE", key, String(s), String(e)]),
    );
    ranges.forEach(([s, e], i) =>
      sameBytes(got[i], getrangeModel(v, Number(s), Number(e)), `GETRANGE ${s} ${e} of ${size}`),
    );
  }
  assert.is(h.one(c, "STRLEN", "none"), 0);
  assert.equal(text(h.one(c, "GETRANGE", "none", "0", "-1")), "");
  assert.is(h.one(c, "GETRANGE", "v1024", "a", "1"), "-ERR value is not an integer or out of range");
  assert.is(h.one(c, "GETRANGE", "v1024", "1"), "-ERR wrong number of arguments for 'getrange' command");
  sameBytes(h.one(c, "SUBSTR", "v65536", "-1000", "-1"), values.get("v65536").subarray(-1000), "SUBSTR");
  h.settle();
  assertKeptExact(h, "with values of 1 KB to 16 MB");
  assert.is(h.one(c, "DEL", ...keys), keys.length);
  h.settle();
  assertAllFreed(h, base, "after DEL");
  h.close();
});

test("APPEND repeatedly onto a 16 MB value shares its buffers; GET and GETRANGE across the joins are byte-exact", () => {
  const h = kvPair({ buffers: 32768 });
  const c = h.connect();
  const r = rng(17);
  h.settle();
  const base = h.srv.pool.check();
  let model = randomBytes(r, 16 << 20);
  assert.is(h.one(c, "SET", "a", model, "PX", "100000"), "+OK");
  h.settle();
  let kept = h.srv.pool.counts().kept;
  const joins = [];
  for (let k = 0; k < 27; k++) {
    const piece = randomBytes(r, [0, 1, 63, 64, 65, 1400, 3000, 70_000, 200_000][k % 9]);
    joins.push(model.length);
    assert.is(h.one(c, "APPEND", "a", piece), model.length + piece.length, `APPEND ${k}`);
    model = concat(model, piece);
    h.settle(5);
    const now = h.srv.pool.counts().kept;
    assert.ok(
      now - kept <= Math.ceil(piece.length / 1000) + 4,
      `APPEND ${k} kept ${now - kept} buffers for ${piece.length} bytes`,
    );
    kept = now;
  }
  assert.is(h.one(c, "PTTL", "a"), 100_000, "APPEND keeps the expiry");
  assert.is(h.one(c, "STRLEN", "a"), model.length);
  sameBytes(h.one(c, "GET", "a"), model, "the appended value");
  const ranges = joins.map((j) => [j - r.int(3000), j + r.int(300_000)]);
  const got = h.call(
    c,
    ranges.map(([s, e]) => ["GETRANGE", "a", String(s), String(e)]),
  );
  ranges.forEach(([s, e], i) => sameBytes(got[i], getrangeModel(model, s, e), `GETRANGE ${s} ${e}`));
  // APPEND onto a missing key creates it, even empty (Redis does too)
  assert.is(h.one(c, "APPEND", "new", "abc"), 3);
  assert.is(h.one(c, "APPEND", "new", ""), 3);
  assert.is(h.one(c, "APPEND", "empty", ""), 0);
  assert.is(h.one(c, "EXISTS", "empty"), 1);
  assert.is(h.one(c, "STRLEN", "empty"), 0);
  // a short value in the arena grows past the copy limit, then into a tree
  assert.is(h.one(c, "SET", "s", "x".repeat(60)), "+OK");
  assert.is(h.one(c, "APPEND", "s", "y".repeat(10)), 70);
  const tail = randomBytes(r, 120_000);
  assert.is(h.one(c, "APPEND", "s", tail), 120_070);
  sameBytes(h.one(c, "GET", "s"), concat(enc("x".repeat(60) + "y".repeat(10)), tail), "a short value grown");
  assert.is(h.one(c, "APPEND", "s"), "-ERR wrong number of arguments for 'append' command");
  h.settle();
  assertKeptExact(h, "after the APPENDs");
  assert.is(h.one(c, "DEL", "a", "new", "empty", "s"), 4);
  h.settle();
  assertAllFreed(h, base, "after DEL");
  h.close();
});

test("SETRANGE inside, past the end with zero padding, on a missing key and with an empty value; its errors", () => {
  const h = kvPair({ buffers: 32768 });
  const c = h.connect();
  const r = rng(18);
  h.settle();
  const base = h.srv.pool.check();
  const zeros = (n) => "\0".repeat(n);
  assert.is(h.one(c, "SETRANGE", "none", "0", ""), 0);
  assert.is(h.one(c, "SETRANGE", "none", "5", ""), 0);
  assert.is(h.one(c, "EXISTS", "none"), 0, "an empty SETRANGE on a missing key creates nothing");
  assert.is(h.one(c, "SETRANGE", "m", "3", "abc"), 6);
  assert.is(text(h.one(c, "GET", "m")), zeros(3) + "abc");
  assert.is(h.one(c, "SETRANGE", "m", "0", ""), 6);
  assert.is(h.one(c, "SETRANGE", "m", "1", "ZZ"), 6);
  assert.is(text(h.one(c, "GET", "m")), "\0ZZabc");
  assert.is(h.one(c, "SETRANGE", "m", "10", "q"), 11);
  assert.is(text(h.one(c, "GET", "m")), "\0ZZabc" + zeros(4) + "q");
  h.one(c, "SET", "e", "");
  assert.is(h.one(c, "SETRANGE", "e", "0", "x"), 1);
  for (const [q, err] of [
    [["SETRANGE", "m", "-1", "x"], "-ERR offset is out of range"],
    [["SETRANGE", "m", "abc", "x"], "-ERR value is not an integer or out of range"],
    [["SETRANGE", "m", "1.5", "x"], "-ERR value is not an integer or out of range"],
    [["SETRANGE", "m", "536870911", "xy"], "-ERR string exceeds maximum allowed size (proto-max-bulk-len)"],
    [["SETRANGE", "m", "9223372036854775807", "x"], "-ERR string exceeds maximum allowed size (proto-max-bulk-len)"],
    [["SETRANGE", "none", "536870911", "xy"], "-ERR string exceeds maximum allowed size (proto-max-bulk-len)"],
    [["SETRANGE", "m", "1"], "-ERR wrong number of arguments for 'setrange' command"],
  ])
    assert.is(h.one(c, ...q), err, q.join(" "));
  assert.is(text(h.one(c, "GET", "m")), "\0ZZabc" + zeros(4) + "q", "refused SETRANGEs change nothing");
  assert.is(h.one(c, "EXISTS", "none"), 0);
  // a 1 MB value with an expiry: random writes inside it, across its end and past it
  let model = randomBytes(r, 1 << 20);
  h.one(c, "SET", "big", model, "PX", "100000");
  for (let k = 0; k < 30; k++) {
    const arg = randomBytes(r, [1, 63, 64, 65, 1000, 5000, 100_000][k % 7]);
    const off = k % 10 === 9 ? model.length + r.int(3000) : r.int(model.length);
    model = setrangeModel(model, off, arg);
    assert.is(h.one(c, "SETRANGE", "big", String(off), arg), model.length, `SETRANGE ${off} of ${arg.length} bytes`);
  }
  assert.is(h.one(c, "SETRANGE", "big", "7", ""), model.length);
  assert.is(h.one(c, "PTTL", "big"), 100_000, "SETRANGE keeps the expiry");
  sameBytes(h.one(c, "GET", "big"), model, "after the SETRANGEs");
  // a 16 MB value: a write across node boundaries in the middle, then one 100 KB past its end
  let huge = randomBytes(r, 16 << 20);
  h.one(c, "SET", "huge", huge);
  const mid = randomBytes(r, 300_000);
  huge = setrangeModel(huge, (8 << 20) - 1000, mid);
  assert.is(h.one(c, "SETRANGE", "huge", String((8 << 20) - 1000), mid), huge.length);
  huge = setrangeModel(huge, huge.length + 100_000, enc("end"));
  assert.is(h.one(c, "SETRANGE", "huge", String(huge.length - 3), "end"), huge.length);
  sameBytes(h.one(c, "GET", "huge"), huge, "the 16 MB value after SETRANGE");
  // on a missing key: zeros up to the offset
  assert.is(h.one(c, "SETRANGE", "fresh", "5000", "xyz"), 5003);
  sameBytes(h.one(c, "GET", "fresh"), setrangeModel(null, 5000, enc("xyz")), "SETRANGE of a missing key");
  h.settle();
  assertKeptExact(h, "after the SETRANGEs");
  assert.is(h.one(c, "DEL", "m", "e", "big", "huge", "fresh"), 5);
  h.settle();
  assertAllFreed(h, base, "after DEL");
  h.close();
});

test("INCRBYFLOAT: Redis's formatting (10.5 + 0.1 is 10.6, integers without .0, exponents, large exact values), its errors; the expiry stays", () => {
  const h = kvPair();
  const c = h.connect();
  const seq = (key, ...steps) => {
    for (const [inc, want] of steps) assert.equal(text(h.one(c, "INCRBYFLOAT", key, inc)), want, `${key} + ${inc}`);
  };
  h.one(c, "SET", "f", "10.50");
  seq("f", ["0.1", "10.6"], ["-5", "5.6"]);
  assert.is(text(h.one(c, "GET", "f")), "5.6", "the stored value is the reply");
  h.one(c, "SET", "f", "5.0e3");
  seq("f", ["2.0e2", "5200"]);
  seq("g", ["3", "3"], ["-3", "0"], ["-0.5", "-0.5"], ["0.25", "-0.25"], ["1E2", "99.75"], ["+0.25", "100"]);
  seq("s", ["1.5e-10", "0.00000000015"]);
  seq("h", ["1e21", "1000000000000000000000"], ["-1e21", "0"]);
  seq("p", ["1267650600228229401496703205376", "1267650600228229401496703205376"]); // 2^100, exact in any float
  seq("z", ["-0", "0"]);
  for (const [v, want] of [
    ["1.0", "2"],
    ["007", "8"],
    [".5", "1.5"],
    ["5.", "6"],
    ["+5", "6"],
    ["-0", "1"],
    ["1e3", "1001"],
  ]) {
    h.one(c, "SET", "v", v);
    assert.is(text(h.one(c, "INCRBYFLOAT", "v", "1")), want, `${v} + 1`);
  }
  const E_FLOAT = "-ERR value is not a valid float";
  const E_NAN = "-ERR increment would produce NaN or Infinity";
  h.one(c, "SET", "v", "2.5");
  for (const [inc, err] of [
    ["abc", E_FLOAT],
    ["", E_FLOAT],
    [" 1", E_FLOAT],
    ["1 ", E_FLOAT],
    ["1.5e", E_FLOAT],
    ["nan", E_FLOAT],
    ["1,5", E_FLOAT],
    ["inf", E_NAN],
    ["-infinity", E_NAN],
    ["+Inf", E_NAN],
  ])
    assert.is(h.one(c, "INCRBYFLOAT", "v", inc), err, JSON.stringify(inc));
  assert.is(text(h.one(c, "GET", "v")), "2.5", "a refused INCRBYFLOAT changes nothing");
  assert.is(h.one(c, "INCRBYFLOAT", "nokey", "abc"), E_FLOAT);
  assert.is(h.one(c, "EXISTS", "nokey"), 0);
  for (const v of ["abc", "1.5e", " 1", "", "nan", "x".repeat(100)]) {
    h.one(c, "SET", "v", v);
    assert.is(h.one(c, "INCRBYFLOAT", "v", "1"), E_FLOAT, `the key holds ${JSON.stringify(v)}`);
  }
  h.one(c, "SET", "v", "inf");
  assert.is(h.one(c, "INCRBYFLOAT", "v", "1"), E_NAN);
  h.one(c, "SET", "v", "1.5", "EX", "100");
  assert.is(text(h.one(c, "INCRBYFLOAT", "v", "1")), "2.5");
  assert.is(h.one(c, "TTL", "v"), 100, "INCRBYFLOAT keeps the expiry");
  assert.is(h.one(c, "INCRBYFLOAT", "v"), "-ERR wrong number of arguments for 'incrbyfloat' command");
  h.close();
});

test("a bulk length over 512 MB is a protocol error answered at once, without reading the value", () => {
  const h = kvPair();
  h.settle();
  const base = h.srv.pool.check();
  const c = h.connect();
  assert.is(h.one(c, "SET", "k", "v"), "+OK");
  h.send(c, enc("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870913\r\n"));
  const got = [];
  h.run(() => (got.push(...h.take(c)), got.length >= 1 && h.conns.get(c).closed), 2000);
  assert.equal(got, ["-ERR Protocol error: invalid bulk length"]);
  // 512 MB exactly is a valid length: the server waits for the value, and releases what came of
  // it when the client goes away
  const c2 = h.connect();
  h.send(c2, cat([enc("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n"), randomBytes(rng(3), 100_000)]));
  h.settle(100);
  assert.equal(h.take(c2), [], "no reply: the value is not complete");
  assert.is(h.conns.get(c2).closed, false);
  h.cli.close(c2);
  h.settle(100);
  const c3 = h.connect();
  assert.is(text(h.one(c3, "GET", "k")), "v", "the key is as it was");
  assert.is(h.one(c3, "DEL", "k"), 1);
  h.cli.close(c3);
  h.settle(100);
  assertAllFreed(h, base, "after the protocol errors");
  h.close();
});

test("a value that does not fit in the pool answers -OOM and keeps nothing: the pool's counts come back", () => {
  const h = kvPair({ buffers: 4096 });
  const c = h.connect();
  const r = rng(19);
  const old = randomBytes(r, 200_000);
  assert.is(h.one(c, "SET", "keep", "me"), "+OK");
  assert.is(h.one(c, "SET", "old", old), "+OK");
  h.settle();
  const before = h.srv.pool.check();
  const huge = randomBytes(r, 8 << 20); // 4096 buffers of 2 KiB hold at most 5.9 MB of segments
  const oom = `-OOM command not allowed when the PM pool is full (reserve of ${h.app.reserveBuffers} free buffers reached): DEL keys or grow the pool`;
  for (const q of [
    ["SET", "old", huge],
    ["APPEND", "old", huge],
    ["SETNX", "new", huge],
    ["GETSET", "old", huge],
    ["MSET", "a", "1", "b", huge],
    ["SETRANGE", "old", "5", huge],
  ]) {
    const got = h.call(c, [q, ["PING"], ["GET", "keep"]]);
    assert.is(got[0], oom, q[0]);
    assert.is(got[1], "+PONG");
    assert.is(text(got[2]), "me");
    h.settle();
    const now = assertKeptExact(h, `after ${q[0]}`);
    assert.is(now.kept, before.kept, `${q[0]}: nothing of the value is kept`);
    assert.is(now.app, before.app, `${q[0]}: no app buffer held`);
    assert.is(now.free + now.nic + now.stack, before.free + before.nic + before.stack);
  }
  sameBytes(h.one(c, "GET", "old"), old, "the refused writes left the old value");
  assert.is(h.one(c, "EXISTS", "new", "a", "b"), 0);
  // zero padding the pool cannot hold
  const pad = h.one(c, "SETRANGE", "old", "100000000", "x");
  assert.ok(typeof pad === "string" && pad.startsWith("-OOM command not allowed"), pad);
  h.settle();
  assert.is(assertKeptExact(h, "after SETRANGE past the pool").kept, before.kept);
  assert.is(h.one(c, "SET", "after", randomBytes(r, 100_000)), "+OK", "the server goes on");
  assert.ok(h.app.stats.full >= 6);
  h.close();
});

test("a client that stalls in the middle of a value is aborted by the idle timeout and its buffers come back; an idle client between commands is not", async () => {
  const h = kvPair({ idleTimeoutMs: 50 });
  h.settle();
  const base = h.srv.pool.check();
  const idle = h.connect();
  assert.is(h.one(idle, "PING"), "+PONG");
  const c = h.connect();
  h.send(c, cat([enc("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n"), randomBytes(rng(4), 300_000)]));
  h.settle(50);
  assert.is(h.conns.get(c).closed, false);
  assert.ok(
    h.srv.pool.counts().kept + h.srv.pool.counts().app > base.kept + base.app + 100,
    "the partial value holds buffers",
  );
  // the layer's clock is performance.now: wait in real time, then let the turns run
  await new Promise((res) => setTimeout(res, 250));
  h.settle(50);
  assert.is(h.conns.get(c).reset, true, "the stalled client got a RST");
  assert.ok(h.app.layer.stats.idleAborts >= 1);
  assert.is(h.one(idle, "EXISTS", "k"), 0, "the idle client is still served");
  h.cli.close(idle);
  h.settle(100);
  assertAllFreed(h, base, "after the idle abort");
  h.close();
});

test("slowloris: a command trickled a byte at a time is aborted once it overstays the timeout (bytes keep coming); a fast pipelining client is not", async () => {
  const h = kvPair({ idleTimeoutMs: 100 });
  h.settle();
  const base = h.srv.pool.check();
  const slow = h.connect();
  const fast = h.connect();
  const cmd = enc("*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$1\r\nv\r\n");
  const t0 = performance.now();
  let at = 0;
  let done = 0;
  // every 20 ms: one byte of the slow command; ten whole SETs from the fast client, cut anywhere
  while (!h.conns.get(slow).reset && performance.now() - t0 < 2000) {
    if (at < cmd.length - 1) h.send(slow, cmd.subarray(at, ++at));
    const burst = enc(Array.from({ length: 10 }, (_, i) => `*3\r\n$3\r\nSET\r\n$2\r\nf${i}\r\n$1\r\nv\r\n`).join(""));
    h.send(fast, burst.subarray(0, 17));
    h.send(fast, burst.subarray(17));
    h.settle(5);
    done += text(h.take(fast)).filter((r) => r === "+OK").length;
    await new Promise((res) => setTimeout(res, 20));
  }
  const ms = performance.now() - t0;
  assert.is(h.conns.get(slow).reset, true, "the trickling client got a RST");
  assert.ok(ms >= 100 && ms < 1500, `aborted after ${ms.toFixed(0)} ms (limit 100 ms + its bytes at 16 KiB/s)`);
  assert.ok(at > 3, "bytes kept coming until then");
  assert.is(h.app.layer.stats.idleAborts, 1);
  assert.is(h.conns.get(fast).closed, false, "the fast client is served on");
  assert.ok(done > 20, `${done} fast SETs answered`);
  assert.is(h.one(fast, "EXISTS", "slow"), 0);
  assert.is(h.one(fast, "DEL", ...Array.from({ length: 10 }, (_, i) => `f${i}`)), 10);
  h.cli.close(fast);
  h.settle(100);
  assertAllFreed(h, base, "after the slowloris abort");
  h.close();
});

test("after a seeded mix of large SETs, APPENDs, SETRANGEs, GETSETs and DELs every kept buffer is reachable from a live record; DEL of everything frees them all", () => {
  const h = kvPair({ buffers: 16384 });
  const c = h.connect();
  const r = rng(99);
  h.settle();
  const base = h.srv.pool.check();
  const model = new Map();
  const keys = ["m0", "m1", "m2", "m3", "m4", "m5"];
  const sizes = [0, 10, 64, 65, 1000, 5000, 70_000, 300_000, 1_200_000];
  const val = () => randomBytes(r, sizes[r.int(sizes.length)]);
  const empty = new Uint8Array(0);
  for (let round = 0; round < 60; round++) {
    const cmds = [];
    const want = [];
    for (let n = 1 + r.int(5); n > 0; n--) {
      const k = keys[r.int(keys.length)];
      const old = model.get(k) ?? null;
      const op = old && old.length > 2_000_000 ? 4 : r.int(8);
      if (op === 0) {
        const v = val();
        cmds.push(["SET", k, v]);
        want.push("+OK");
        model.set(k, v);
      } else if (op === 1) {
        const v = val();
        const next = concat(old ?? empty, v);
        cmds.push(["APPEND", k, v]);
        want.push(next.length);
        model.set(k, next);
      } else if (op === 2) {
        const v = val();
        const off = r.int((old?.length ?? 0) + 3000);
        const next = setrangeModel(old, off, v);
        cmds.push(["SETRANGE", k, String(off), v]);
        want.push(next ? next.length : 0);
        if (next) model.set(k, next);
      } else if (op === 3) {
        const v = val();
        cmds.push(["GETSET", k, v]);
        want.push(old);
        model.set(k, v);
      } else if (op === 4) {
        cmds.push(["DEL", k]);
        want.push(old ? 1 : 0);
        model.delete(k);
      } else if (op === 5) {
        cmds.push(["GETDEL", k]);
        want.push(old);
        model.delete(k);
      } else {
        const len = old?.length ?? 0;
        const s = r.int(len + 10) - 5;
        const e = s + r.int(200_000);
        cmds.push(["GETRANGE", k, String(s), String(e)]);
        want.push(getrangeModel(old ?? empty, s, e));
      }
    }
    const got = h.call(c, cmds);
    got.forEach((g, i) => {
      const what = `round ${round}: ${cmds[i][0]} ${cmds[i][1]}`;
      if (want[i] instanceof Uint8Array) sameBytes(g, want[i], what);
      else assert.is(g, want[i], what);
    });
    if (round % 6 === 5) {
      h.settle(200);
      assertKeptExact(h, `round ${round}`);
    }
  }
  for (const [k, v] of model) sameBytes(h.one(c, "GET", k), v, k);
  assert.is(h.one(c, "DEL", ...keys), model.size);
  h.settle();
  assertAllFreed(h, base, "after DEL of everything");
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

test("trees across a reopen: acknowledged large values read back byte-exact; a value half received or never committed leaves no buffer", () => {
  const path = join(scratchDir("tmpfs"), "kv-trees.pm");
  const r = rng(31);
  let h = kvPair({ path, buffers: 8192 });
  let c = h.connect();
  const a = randomBytes(r, 3 << 20);
  const b = randomBytes(r, 400_000);
  const tail = randomBytes(r, 100_000);
  assert.equal(
    h.call(c, [
      ["SET", "a", a],
      ["SET", "b", b],
      ["APPEND", "b", tail],
      ["SETRANGE", "a", "1000000", "middle"],
      ["SET", "gone", b],
      ["DEL", "gone"],
    ]),
    ["+OK", "+OK", b.length + tail.length, a.length, "+OK", 1],
  );
  const aModel = setrangeModel(a, 1_000_000, enc("middle"));
  const bModel = concat(b, tail);
  // a second client sends half of a 2 MB value (its data written behind, group by group), and a
  // third a whole one whose record is never committed: then the server stops
  const half = h.connect();
  h.send(half, cmd("SET", "half", randomBytes(r, 2 << 20)).subarray(0, 1 << 20));
  h.settle(20);
  const late = h.connect();
  h.commit = false;
  h.send(late, cmd("SET", "late", randomBytes(r, 500_000)));
  h.settle(50);
  assert.is(h.log.has("late"), true, "appended, not committed");
  h.close();
  h = kvPair({ path, buffers: 8192 });
  assert.is(h.log.recovery.liveKeys, 2);
  assert.is(h.log.recovery.damagedKeys, 0);
  assertKeptExact(h, "after recovery: the buffers claimed are exactly the live trees'");
  c = h.connect();
  sameBytes(h.one(c, "GET", "a"), aModel, "a");
  sameBytes(h.one(c, "GET", "b"), bModel, "b");
  assert.is(h.one(c, "EXISTS", "half", "late", "gone"), 0);
  assert.is(h.one(c, "DEL", "a", "b"), 2);
  h.settle();
  assert.is(h.log.size, 0);
  assert.is(assertKeptExact(h, "after DEL").kept, h.app.store.arena.current >= 0 ? 1 : 0);
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

test("a GET streaming a value another client replaces, then QUIT: the old value arrives whole, then +OK and the FIN", () => {
  const h = kvPair({ buffers: 8192 });
  const r = rng(32);
  const first = randomBytes(r, 4 << 20);
  const old = randomBytes(r, 100_000); // a tree, handed to the core in one turn
  const next = randomBytes(r, 10_000);
  const c = h.connect();
  assert.equal(
    h.call(c, [
      ["SET", "first", first],
      ["SET", "k", old],
    ]),
    ["+OK", "+OK"],
  );
  h.settle();
  const base = h.srv.pool.check();
  // the GET of k (its value pinned for the reply) waits behind the 4 MB one
  const reader = h.connect();
  h.send(reader, cat([cmd("GET", "first"), cmd("GET", "k"), cmd("QUIT")]));
  for (let k = 0; k < 10; k++) h.step();
  assert.is(h.one(c, "SET", "k", next), "+OK", "another client replaces k");
  const got = [];
  h.run(() => (got.push(...h.take(reader)), h.conns.get(reader).closed), 20_000);
  assert.is(got.length, 3);
  sameBytes(got[0], first, "first");
  sameBytes(got[1], old, "k as it was when the GET came");
  assert.is(got[2], "+OK");
  sameBytes(h.one(c, "GET", "k"), next, "k now");
  h.settle();
  assert.is(h.app.layer.conns.size, 1, "the reader's connection is gone");
  assertKeptExact(h, "after the QUIT");
  assert.is(h.srv.pool.counts().app, base.app);
  h.close();
});

test("commands pipelined after QUIT are not run (Redis stops reading at QUIT)", () => {
  const h = kvPair();
  const c = h.connect();
  h.send(c, cat([cmd("SET", "a", "1"), cmd("QUIT"), cmd("SET", "b", "2"), cmd("DEL", "a")]));
  const got = [];
  h.run(() => (got.push(...h.take(c)), h.conns.get(c).closed), 2000);
  assert.equal(got, ["+OK", "+OK"]);
  const c2 = h.connect();
  assert.is(h.one(c2, "EXISTS", "a"), 1, "the DEL after QUIT was not run");
  assert.is(h.one(c2, "EXISTS", "b"), 0, "the SET after QUIT was not run");
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
  // and mid-value: half of a 500 KB SET, then a reset; a GET of a tree streaming, then a reset
  const big = randomBytes(rng(30), 500_000);
  const c1 = h.connect();
  assert.is(h.one(c1, "SET", "tree", big), "+OK");
  h.send(c1, cmd("SET", "g0", big).subarray(0, 250_000));
  h.send(c1, cmd("GET", "tree"));
  for (let k = 0; k < 20; k++) h.step();
  h.cli.abort(c1);
  for (let k = 0; k < 20; k++) h.step();
  const c = h.connect();
  assert.is(h.one(c, "DBSIZE"), 31);
  assert.is(h.one(c, "FLUSHALL"), "+OK");
  h.cli.close(c);
  for (let k = 0; k < 50; k++) h.step();
  const after = assertAllFreed(h, base, "after the aborted pipelines");
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

test("CONFIG GET with a 60 KB pattern answers an empty list and the server goes on (the pattern is no regular expression to build)", () => {
  const h = kvPair();
  const c = h.connect();
  const call = (...args) => {
    try {
      return h.one(c, ...args);
    } catch (e) {
      return assert.unreachable(`the server threw: ${String(e).slice(0, 60)}...`);
    }
  };
  assert.equal(call("CONFIG", "GET", "v".repeat(60_000)), []);
  assert.ok(call("CONFIG", "GET", "*".repeat(60_000)).length > 0, "a pattern of stars matches every parameter");
  assert.is(call("PING"), "+PONG");
  h.close();
});

// ---- differences from Redis 7.0 -------------------------------------------------------------------
// Product bugs, each reply checked against a real redis-server 7.0.15 (test/apps-kv-redis.test.mjs
// leaves these inputs out of its random sequences): these tests fail until host/apps/kv/commands.ts
// is fixed.

test("INCRBYFLOAT answers what Redis answers (long double arithmetic, at most 17 decimals): 0.1 + 0.7 is 0.8", () => {
  const h = kvPair();
  const c = h.connect();
  const seq = (key, ...steps) => {
    for (const [inc, want] of steps) assert.equal(text(h.one(c, "INCRBYFLOAT", key, inc)), want, `${key} + ${inc}`);
  };
  seq("a", ["0.1", "0.1"], ["0.7", "0.8"]);
  seq("b", ["0.1", "0.1"], ["0.2", "0.3"]);
  seq("c", ["0.000000000000000001", "0"]); // %.17Lf: 17 decimals, then trailing zeros dropped
  seq("d", ["123456789012345678", "123456789012345678"]);
  h.close();
});

test("INCRBYFLOAT of a literal beyond the float range (1e5000) is 'not a valid float', as Redis's strtold range check says", () => {
  const h = kvPair();
  const c = h.connect();
  assert.is(h.one(c, "INCRBYFLOAT", "e", "1e5000"), "-ERR value is not a valid float");
  assert.is(h.one(c, "INCRBYFLOAT", "e", "-1e5000"), "-ERR value is not a valid float");
  h.close();
});

test("GETEX of a missing key answers nil whatever its expiry argument (Redis looks the key up first)", () => {
  const h = kvPair();
  const c = h.connect();
  assert.is(h.one(c, "GETEX", "none", "EX", "0"), null);
  assert.is(h.one(c, "GETEX", "none", "EX", "abc"), null);
  assert.is(h.one(c, "GETEX", "none", "PXAT", "-1"), null);
  h.close();
});

test("EXPIRE checks its options before its time argument, as Redis does", () => {
  const h = kvPair();
  const c = h.connect();
  assert.is(h.one(c, "EXPIRE", "k", "abc", "BOGUS"), "-ERR Unsupported option BOGUS");
  assert.is(
    h.one(c, "EXPIRE", "k", "abc", "NX", "XX"),
    "-ERR NX and XX, GT or LT options at the same time are not compatible",
  );
  assert.is(h.one(c, "PEXPIRE", "k", "x", "GT", "LT"), "-ERR GT and LT options at the same time are not compatible");
  h.close();
});

test("SET and GETEX take the last of a repeated EX or PX, as Redis 7.0 does", () => {
  const h = kvPair();
  const c = h.connect();
  assert.is(h.one(c, "SET", "k", "v", "EX", "10", "EX", "20"), "+OK");
  assert.is(h.one(c, "TTL", "k"), 20);
  assert.is(h.one(c, "SET", "k", "v", "PX", "10", "PX", "20000"), "+OK");
  assert.is(h.one(c, "PTTL", "k"), 20000);
  assert.is(text(h.one(c, "GETEX", "k", "EX", "10", "EX", "30")), "v");
  assert.is(h.one(c, "TTL", "k"), 30);
  h.close();
});

test("expiry times Redis accepts (up to 2^63 - 1 ms) are accepted, not 'invalid expire time'", () => {
  const h = kvPair();
  const c = h.connect();
  assert.is(h.one(c, "SETEX", "s", "100000000000000", "v"), "+OK");
  assert.is(h.one(c, "TTL", "s"), 100000000000000);
  assert.is(h.one(c, "SET", "k", "v", "EX", "100000000000000"), "+OK");
  assert.is(h.one(c, "EXPIRE", "k", "1000000000000000"), 1);
  assert.is(h.one(c, "TTL", "k"), 1000000000000000);
  assert.is(h.one(c, "PEXPIREAT", "k", "9223372036854775807"), 1);
  assert.ok(h.one(c, "TTL", "k") > 9e15);
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
      "SETNX",
      "SETEX",
      "PSETEX",
      "GETSET",
      "GETDEL",
      "GETEX",
      "APPEND",
      "GETRANGE",
      "SETRANGE",
      "INCRBYFLOAT",
      "EXPIRE",
      "PEXPIRE",
      "EXPIREAT",
      "PEXPIREAT",
      "PERSIST",
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
      "PERSIST",
      "GT",
      "LT",
      "1e3",
      "-5000",
      "100000",
    ];
    // now and then a long argument: up to 2 KB, or up to 150 KB (an extent tree when it is a value)
    const arg = () =>
      r() < 0.1 ? new Uint8Array(r() < 0.2 ? r.int(150_000) : r.int(2000)).fill(0x61 + r.int(26)) : pick(words);
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
    assert.ok(replies > 250, `${replies} replies`);
    assert.ok(h.app.stats.writes > 5 && h.app.stats.errors > 50, JSON.stringify(h.app.stats));
    const c = h.connect();
    assert.is(h.one(c, "PING"), "+PONG", "the server goes on");
    assert.is(h.one(c, "FLUSHALL"), "+OK");
    h.cli.close(c);
    for (let k = 0; k < 100; k++) h.step();
    assertAllFreed(h, base, "after the abuse");
    h.close();
  });

test.run();

// The store sharded over workers (kv/shard.ts), deterministic: worker 0 (a KvApp its clients
// reach over the in-memory link) and worker 1 (a KvApp on a stack of its own) exchange their
// turn batches through queues this test delivers after each turn. A key lives on the worker its
// hash slot names; a client of worker 0 reads and writes every key; commands over keys of both
// workers are split (DEL, EXISTS, MGET, MSET) or refused (-CROSSSLOT); DBSIZE and FLUSHALL reach
// both; replies keep their order in a pipeline; values of any size cross byte-exact; nothing
// leaks on either pool, even when a client goes with a command in flight. A value written for
// another worker's key stays in the pool it arrived in, as a loan the owner's record names,
// until the owner no longer names it; after a restart the loans no record names go.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { KvApp, keyHashSlot } from "../build/index.js";
import { kvPair, text, cmd, cat, randomBytes, sameBytes, assertKeptExact } from "./lib/memclient.mjs";
import { rng } from "./lib/rng.mjs";
import { shardQueues } from "./lib/shard-pair.mjs";

const enc = (s) => new TextEncoder().encode(s);
const ownerOf = (k) => keyHashSlot(enc(k)) % 2;

/** Worker 0 (kvPair: clients) and worker 1 (no clients of its own), joined by two queues. */
function sharded(opts = {}) {
  const q = shardQueues({ lend: opts.lend ?? true });
  const h = kvPair({ ...opts, shards: q.t0 });
  return q.join(h, {
    buffers: opts.buffers ?? 4096,
    path: opts.path1,
    make: (stack, log, t1) => new KvApp(stack, log, 0, { now: () => h.clock.t, shards: t1 }),
  });
}

/** n keys owned by worker w, named with `prefix`. */
function keysOf(w, n, prefix = "k") {
  const out = [];
  for (let i = 0; out.length < n; i++) if (ownerOf(`${prefix}${i}`) === w) out.push(`${prefix}${i}`);
  return out;
}

const kept = (h) => {
  assertKeptExact(h.srv.pool, h.log, h.app.store.arena.current, "worker 0");
  assertKeptExact(h.peer.stack.pool, h.peer.log, h.peer.app.store.arena.current, "worker 1");
};

for (const lend of [true, false])
  test(`every key is readable and deletable from a client of either worker; each lives on its owner; a pipeline streams to the owner in batches (${lend ? "values lent" : "values copied"})`, () => {
    const h = sharded({ lend });
    const c = h.connect();
    const keys = Array.from({ length: 200 }, (_, i) => `key:${i}`);
    const got = h.call(
      c,
      keys.map((k) => ["SET", k, `v-${k}`]),
    );
    assert.ok(got.every((r) => r === "+OK"));
    const on1 = keys.filter((k) => ownerOf(k) === 1).length;
    assert.ok(on1 > 50 && on1 < 150, `${on1} of 200 keys on worker 1`);
    assert.is(h.peer.log.size, on1, "worker 1 logged its keys");
    assert.is(h.log.size, 200 - on1, "worker 0 logged its own only");
    assert.equal(
      text(
        h.call(
          c,
          keys.map((k) => ["GET", k]),
        ),
      ),
      keys.map((k) => `v-${k}`),
    );
    assert.is(h.app.stats.forwarded, on1 * 2);
    // a pipeline's forwarded commands stream: many per batch, not a round trip each
    assert.ok(h.batches * 4 < h.app.stats.forwarded, `${h.batches} batches for ${h.app.stats.forwarded} commands`);
    assert.is(h.peer.app.stats.served, on1 * 2);
    assert.is(h.app.stats.commands, 400, "client commands are counted where they arrived");
    assert.is(h.peer.app.stats.commands, 0);
    assert.is(h.one(c, "DBSIZE"), 200, "DBSIZE sums both workers");
    // a second client deletes what the first wrote
    const c2 = h.connect();
    assert.is(h.one(c2, "DEL", ...keys.slice(0, 100)), 100);
    assert.is(h.one(c2, "EXISTS", ...keys), 100);
    assert.is(h.one(c, "DBSIZE"), 100);
    h.settle();
    kept(h);
    h.close();
  });

test("split commands: MGET keeps the client's order, MSET lands on both, DEL and EXISTS sum; MSETNX across workers is refused", () => {
  const h = sharded();
  const c = h.connect();
  const [a0, b0] = keysOf(0, 2, "a");
  const [a1, b1] = keysOf(1, 2, "b");
  assert.is(h.one(c, "MSET", a0, "1", a1, "2", b0, "3", b1, "4"), "+OK");
  assert.is(h.app.stats.split, 1);
  assert.equal(text(h.one(c, "MGET", a1, "nope", a0, b1, b0, a1)), ["2", null, "1", "4", "3", "2"]);
  assert.is(h.one(c, "EXISTS", a0, a1, a1, "nope"), 3);
  const e = h.one(c, "MSETNX", a0, "x", a1, "y");
  assert.match(e, /^-CROSSSLOT .*hash tag/);
  // one hash tag: one worker, and MSETNX runs
  assert.is(h.one(c, "MSETNX", "{t}x", "1", "{t}y", "2"), 1);
  assert.is(h.one(c, "DEL", a0, a1, b0, b1, "nope"), 4);
  assert.is(h.one(c, "DBSIZE"), 2);
  assert.is(h.one(c, "FLUSHALL"), "+OK");
  assert.is(h.one(c, "DBSIZE"), 0);
  assert.is(h.log.size + h.peer.log.size, 0, "FLUSHALL emptied both logs");
  const m = h.one(c, "MIGRATE", "198.18.8.3", "6379", a0, "0", "1000");
  assert.match(m, /^-ERR pmstack: MIGRATE is not available on a server sharded/);
  h.settle();
  kept(h);
  h.close();
});

test("a pipeline over both workers gets its replies in order, ECHO between them included (it waits for the commands in flight); INCR on another worker's key counts right", () => {
  const h = sharded({ buffers: 8192 });
  const c = h.connect();
  const r = rng(7);
  const keys = Array.from({ length: 40 }, (_, i) => `p${i}`);
  const model = new Map();
  const cmds = [];
  const want = [];
  for (let i = 0; i < 600; i++) {
    const k = keys[r.int(keys.length)];
    const op = r.int(5);
    if (op === 0) {
      const v = `${i}`;
      cmds.push(["SET", k, v]);
      model.set(k, v);
      want.push("+OK");
    } else if (op === 1) {
      cmds.push(["GET", k]);
      want.push(model.get(k) ?? null);
    } else if (op === 2) {
      const n = /^-?\d+$/.test(model.get(k) ?? "0") ? Number(model.get(k) ?? 0) + 1 : null;
      cmds.push(["INCR", k]);
      if (n === null) want.push("ERR");
      else {
        model.set(k, String(n));
        want.push(n);
      }
    } else if (op === 3) {
      // one on the connection itself: it waits for the commands in flight, then goes on
      cmds.push(["ECHO", `e${i}`]);
      want.push(`e${i}`);
    } else {
      const k2 = keys[r.int(keys.length)];
      cmds.push(["DEL", k, k2]);
      want.push((model.has(k) ? 1 : 0) + (k2 !== k && model.has(k2) ? 1 : 0));
      model.delete(k);
      model.delete(k2);
    }
  }
  const got = h.call(c, cmds).map((x) => (typeof x === "string" && x[0] === "-" ? "ERR" : text(x)));
  assert.equal(got, want);
  assert.ok(h.app.stats.forwarded > 100);
  h.settle();
  kept(h);
  h.close();
});

test("values of any size cross to their owner byte-exact, and come back; a client gone mid-command leaks nothing", () => {
  const h = sharded({ buffers: 8192 });
  const c = h.connect();
  const [far] = keysOf(1, 1, "big");
  const v = randomBytes(rng(3), 300_000);
  assert.is(h.one(c, "SET", far, v), "+OK");
  assert.ok(h.peer.log.size === 1 && h.log.size === 1, "worker 1's record, worker 0's loan");
  const back = h.one(c, "GET", far);
  sameBytes(back, v, "the value read back through worker 0");
  assert.is(h.one(c, "STRLEN", far), v.length);
  h.settle();
  kept(h);
  // a client that sends a forwarded command and goes before the answer
  const c2 = h.connect();
  h.send(c2, cmd("GET", far));
  h.cli.abort(c2);
  h.settle(200);
  assert.is(h.one(c, "DEL", far), 1);
  h.settle();
  kept(h);
  h.close();
});

test("a value of more than 63 ranges crosses as a loan of its extent tree: the owner reads the tree in the lender's pool; GET, GETRANGE, EXPIRE, SETRANGE, APPEND and DEL over it; nothing leaks", () => {
  const h = sharded({ buffers: 8192 });
  const c = h.connect();
  const far = keysOf(1, 4, "tree");
  const r = rng(13);
  const v = randomBytes(r, 250_000);
  h.settle();
  const free1 = h.peer.stack.pool.check().free;
  for (const k of far) assert.is(h.one(c, "SET", k, v), "+OK");
  h.settle();
  assert.is(h.app.shards.stats.lent, 4, "each value lent, tree and all");
  assert.is(h.app.stats.loans, 4);
  const rem = h.peer.app.store.remoteEntries();
  assert.is(rem.length, 4);
  for (const x of rem) {
    assert.is(x.len, v.length);
    assert.ok(x.ranges.length === 3 && x.ranges[1] & 0x8000, "the record names the tree's root");
  }
  assert.ok(free1 - h.peer.stack.pool.check().free <= 1, "worker 1's pool took no buffer for the values");
  // reads: the owner walks the lender's tree and copies it
  sameBytes(h.one(c, "GET", far[0]), v, "GET");
  sameBytes(h.one(c, "GETRANGE", far[0], "100000", "100099"), v.subarray(100_000, 100_100), "GETRANGE");
  assert.is(h.one(c, "STRLEN", far[0]), v.length);
  assert.ok(h.peer.app.stats.remoteReads >= 3, "read in worker 0's pool");
  // a new expiry: the owner writes its copy as its own record (a tree of its own), the loan goes
  assert.is(h.one(c, "EXPIRE", far[1], "1000"), 1);
  assert.is(h.one(c, "SETRANGE", far[2], "5", "HELLO"), v.length);
  assert.is(h.one(c, "APPEND", far[3], "tail"), v.length + 4);
  h.settle();
  assert.is(h.app.stats.loans, 1, "only far[0]'s loan is left");
  sameBytes(h.one(c, "GET", far[1]), v, "after EXPIRE");
  const v2 = v.slice();
  v2.set(enc("HELLO"), 5);
  sameBytes(h.one(c, "GET", far[2]), v2, "after SETRANGE");
  sameBytes(h.one(c, "GET", far[3]), cat([v, enc("tail")]), "after APPEND");
  // a damaged tree in the lender's pool is an error for the command, not a trap or a wrong value
  const root = h.peer.app.store.remoteEntries().find((x) => x.len === v.length).ranges[0];
  const node = h.srv.pool.view(root, 0, 4);
  node[0] ^= 0xff;
  const bad = h.one(c, "GET", far[0]);
  node[0] ^= 0xff;
  assert.match(String(bad), /^-ERR pmstack: .*(damaged|not an extent node)/);
  sameBytes(h.one(c, "GET", far[0]), v, "whole again");
  kept(h);
  assert.is(h.one(c, "DEL", ...far), 4);
  h.settle();
  assert.is(h.app.stats.loans, 0);
  assert.is(h.log.size, 0);
  kept(h);
  h.close();
});

test("a value written for another worker's key stays in the pool it arrived in (a loan the owner's record names); reads copy it; an overwrite, APPEND, DEL, expiry, FLUSHALL or a SET that writes nothing release it; nothing leaks", () => {
  const h = sharded();
  const c = h.connect();
  const far = keysOf(1, 8, "far");
  const [near] = keysOf(0, 1, "near");
  const r = rng(7);
  const v = randomBytes(r, 1000);
  assert.is(h.one(c, "SET", far[7], "short"), "+OK"); // (worker 1's arena buffer, taken once)
  h.settle();
  const free1 = h.peer.stack.pool.check().free;
  assert.is(h.one(c, "SET", far[0], v), "+OK");
  h.settle();
  const st = () => h.app.shards.stats;
  assert.is(st().lent, 1, "worker 0 lent the value");
  assert.is(h.app.stats.loans, 1);
  assert.is(h.log.size, 1, "the loan is a record of worker 0's log");
  assert.is(h.app.store.size, 0, "and not a key of worker 0's");
  const rem = h.peer.app.store.remoteEntries();
  assert.is(rem.length, 1, "worker 1's record names the loan");
  assert.is(rem[0].worker, 0);
  assert.is(rem[0].len, 1000);
  const [lk] = h.app.store.loanEntries();
  sameBytes(cat(h.log.views(lk)), v, "the loan is the value's bytes, in worker 0's pool");
  assert.is(h.peer.stack.pool.check().free, free1, "worker 1's pool took no buffer for the value");
  kept(h);
  // reads (from a client of worker 0: run by worker 1, the bytes read from worker 0's pool)
  sameBytes(h.one(c, "GET", far[0]), v, "GET");
  assert.ok(h.peer.app.stats.remoteReads >= 1);
  assert.is(h.one(c, "STRLEN", far[0]), 1000);
  assert.is(h.one(c, "DBSIZE"), 2, "loans are not keys");
  assert.equal(text(h.one(c, "MGET", far[0], "missing")), [new TextDecoder().decode(v), null]);
  // an overwrite releases the first loan once worker 1's new record is durable
  const v2 = randomBytes(r, 1500);
  assert.is(h.one(c, "SET", far[0], v2), "+OK");
  h.settle();
  assert.is(st().lent, 2);
  assert.is(h.app.stats.loans, 1, "the old loan went");
  assert.is(st().unlent, 1);
  sameBytes(h.one(c, "GET", far[0]), v2);
  // APPEND needs the value here: worker 1 copies it into its pool, and the loan goes
  assert.is(h.one(c, "APPEND", far[0], "tail"), 1504);
  h.settle();
  assert.is(h.app.stats.loans, 0);
  assert.equal(text([h.one(c, "GET", far[0])]), [new TextDecoder().decode(v2) + "tail"]);
  // DEL, and an expiry
  assert.is(h.one(c, "SET", far[1], v), "+OK");
  assert.is(h.one(c, "SET", far[2], v, "PX", "100"), "+OK");
  h.settle();
  assert.is(h.app.stats.loans, 2);
  assert.is(h.one(c, "DEL", far[1]), 1);
  h.clock.t += 200;
  assert.is(h.one(c, "GET", far[2]), null);
  h.settle();
  assert.is(h.app.stats.loans, 0, "DEL and the expiry released theirs");
  // a SET that writes nothing gives its loan back at once
  assert.is(h.one(c, "SET", far[3], v, "NX"), "+OK");
  assert.is(h.one(c, "SET", far[3], v2, "NX"), null);
  assert.is(h.one(c, "SETEX", far[4], "notanumber", v), "-ERR value is not an integer or out of range");
  h.settle();
  assert.is(h.app.stats.loans, 1, "only far[3]'s");
  sameBytes(h.one(c, "GET", far[3]), v);
  // MSET over both workers: worker 1's value lent, worker 0's written in place
  assert.is(h.one(c, "MSET", far[5], v2, near, v), "+OK");
  h.settle();
  assert.is(h.app.stats.loans, 2);
  sameBytes(h.one(c, "GET", far[5]), v2);
  sameBytes(h.one(c, "GET", near), v);
  kept(h);
  // FLUSHALL: worker 1's records go, so do the loans they named; worker 0 deletes only its keys
  assert.is(h.one(c, "FLUSHALL"), "+OK");
  h.settle();
  assert.is(h.app.stats.loans, 0);
  assert.is(h.one(c, "DBSIZE"), 0);
  assert.is(h.log.size, 0);
  kept(h);
  h.close();
});

/** Worker 1 lends `v` to worker 0's key `key` (as for a client of its own): its loan record and worker 0's record naming it. */
function lendTo0(h, key, v, id) {
  let prefix = null;
  for (let j = 0; !prefix; j++) if (ownerOf(`{${j.toString(36)}}`) === 0) prefix = enc(`{${j.toString(36)}}`);
  const loanKey = new Uint8Array(prefix.length + 8);
  loanKey.set(prefix);
  new DataView(loanKey.buffer).setUint32(prefix.length + 4, id);
  const p1 = h.peer.stack.pool;
  const items = [];
  const ranges = [];
  for (let at = 0; at < v.length;) {
    const b = p1.alloc();
    const off = at === 0 ? 100 : 0; // (a value need not start a buffer)
    const n = Math.min(2048 - off, v.length - at);
    p1.view(b, off, n).set(v.subarray(at, at + n));
    items.push({ index: b, offset: off, length: n });
    ranges.push(b, off, n);
    at += n;
  }
  if (items.length > 63) {
    // a tree, as a writer of worker 1's builds one for a long value; the record names its root
    const w = h.peer.log.writer(63);
    for (const it of items) w.push(it);
    const root = w.finish().names;
    h.peer.app.store.lend(loanKey, root);
    w.release();
    ranges.length = 0;
    for (const it of root) ranges.push(it.index, 0x8000 | it.height, 0);
  } else h.peer.app.store.lend(loanKey, items);
  for (const it of items) p1.free(it.index);
  h.app.store.putRemote(enc(key), { worker: 1, id, len: v.length, ranges }, 0);
}

test("values another worker keeps, read by clients of their keys' owner: copied into buffers the replies send by reference, which go back to the pool once sent", () => {
  const h = sharded();
  const [a, b] = keysOf(0, 2, "mine");
  const r = rng(5);
  const va = randomBytes(r, 3000);
  const vb = randomBytes(r, 5000);
  lendTo0(h, a, va, 77);
  lendTo0(h, b, vb, 78);
  // and one of more than 63 ranges: a tree in worker 1's pool, streamed from its copy here
  const [big] = keysOf(0, 1, "big");
  const vbig = randomBytes(r, 400_000);
  lendTo0(h, big, vbig, 79);
  h.settle();
  const base = h.srv.pool.check();
  // pipelines of both over two connections: each turn's copies are reused by the next turn
  // only once the replies that send them are acknowledged
  const c1 = h.connect();
  const c2 = h.connect();
  const cmds = [];
  for (let k = 0; k < 40; k++) cmds.push(cmd("GET", k % 2 ? a : b));
  h.send(c1, cat(cmds));
  h.send(c2, cat(cmds));
  const got = [[], []];
  h.run(() => {
    got[0].push(...h.take(c1));
    got[1].push(...h.take(c2));
    return got[0].length === 40 && got[1].length === 40;
  }, 200_000);
  for (const g of got) for (let k = 0; k < 40; k++) sameBytes(g[k], k % 2 ? va : vb, `GET ${k}`);
  assert.is(h.app.stats.remoteReads, 80);
  for (let k = 0; k < 3; k++) sameBytes(h.one(c1, "GET", big), vbig, "the tree's copy");
  sameBytes(h.one(c2, "GETRANGE", big, "300000", "300009"), vbig.subarray(300_000, 300_010));
  assert.is(h.app.stats.remoteReads, 84);
  h.settle();
  const after = h.srv.pool.check();
  assert.is(after.kept, base.kept, "the copies went back once sent");
  assert.is(after.free, base.free);
  // the owner's DEL releases the loans in worker 1's log
  assert.is(h.peer.app.stats.loans, 3);
  assert.is(h.one(c1, "DEL", a, b, big), 3);
  h.settle();
  assert.is(h.peer.app.stats.loans, 0);
  kept(h);
  h.close();
});

test("after a restart: the owner's records still read the loans they name; a loan whose request was lost in the crash goes", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmstack-kvloans-"));
  const paths = { path: path.join(dir, "w0.pm"), path1: path.join(dir, "w1.pm") };
  try {
    const far = keysOf(1, 4, "far");
    const r = rng(11);
    const v = randomBytes(r, 3000);
    const v2 = randomBytes(r, 700);
    const big = randomBytes(r, 200_000); // a tree
    let h = sharded(paths);
    let c = h.connect();
    assert.is(h.one(c, "SET", far[0], v), "+OK");
    assert.is(h.one(c, "SET", far[1], v2), "+OK");
    assert.is(h.one(c, "SET", far[1], v), "+OK"); // the first loan of far[1] released
    assert.is(h.one(c, "SET", far[3], big), "+OK");
    h.settle();
    assert.is(h.app.stats.loans, 3);
    // the workers' batches are lost from here: this SET's loan is durable, its request never arrives
    h.drop = true;
    h.send(c, cmd("SET", far[2], big));
    h.settle();
    assert.is(h.app.stats.loans, 4);
    h.close();
    h = sharded(paths);
    assert.is(h.app.stats.loans, 4, "every loan record came back");
    c = h.connect();
    h.settle();
    assert.is(h.app.stats.loans, 3, "the loan no record names went (its tree with it)");
    assert.is(h.app.shards.stats.unlent, 1);
    sameBytes(h.one(c, "GET", far[0]), v);
    sameBytes(h.one(c, "GET", far[1]), v);
    sameBytes(h.one(c, "GET", far[3]), big, "a tree named across the restart");
    assert.is(h.one(c, "GET", far[2]), null);
    // new loans after the restart do not reuse an id
    assert.is(h.one(c, "SET", far[2], v2), "+OK");
    h.settle();
    assert.is(h.app.stats.loans, 4);
    sameBytes(h.one(c, "GET", far[2]), v2);
    sameBytes(h.one(c, "GET", far[0]), v);
    kept(h);
    h.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();

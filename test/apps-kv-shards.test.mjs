// The store sharded over workers (kv/shard.ts), deterministic: worker 0 (a KvApp its clients
// reach over the in-memory link) and worker 1 (a KvApp on a stack of its own) exchange their
// turn batches through queues this test delivers after each turn. A key lives on the worker its
// hash slot names; a client of worker 0 reads and writes every key; commands over keys of both
// workers are split (DEL, EXISTS, MGET, MSET) or refused (-CROSSSLOT); DBSIZE and FLUSHALL reach
// both; replies keep their order in a pipeline; values of any size cross byte-exact; nothing
// leaks on either pool, even when a client goes with a command in flight.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { KvApp, keyHashSlot } from "../build/index.js";
import { kvPair, text, cmd, randomBytes, sameBytes, assertKeptExact } from "./lib/memclient.mjs";
import { rng } from "./lib/rng.mjs";
import { shardQueues } from "./lib/shard-pair.mjs";

const enc = (s) => new TextEncoder().encode(s);
const ownerOf = (k) => keyHashSlot(enc(k)) % 2;

/** Worker 0 (kvPair: clients) and worker 1 (no clients of its own), joined by two queues. */
function sharded(opts = {}) {
  const q = shardQueues();
  const h = kvPair({ ...opts, shards: q.t0 });
  return q.join(h, {
    buffers: opts.buffers ?? 4096,
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

test("every key is readable and deletable from a client of either worker; each lives on its owner; a pipeline streams to the owner in batches", () => {
  const h = sharded();
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
  assert.ok(h.peer.log.size === 1 && h.log.size === 0);
  const back = h.one(c, "GET", far);
  sameBytes(back, v, "the value read back through worker 0");
  assert.is(h.one(c, "STRLEN", far), v.length);
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

test.run();

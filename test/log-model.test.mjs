// Property tests of the log and its index against a model (a Map), seeded: thousands of puts,
// overwrites, deletes, gets, commits, compactions and reopens, in a small log so that it wraps,
// compacts and fills up. Pools are files in strict mode (stores reach the file only when
// persisted), so a reopen shows exactly what the commits made durable.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { Pool, PmLog, LogFullError } from "../build/index.js";
import { rng } from "./lib/rng.mjs";
import { scratchDir } from "./lib/tmp.mjs";

const BUFFERS = 4096;

/** Opens (or creates) the pool at path in strict mode with a log. */
let coalesce = false;
const openLog = (path, metaBytes) => PmLog.openFile(path, { buffers: BUFFERS, metaBytes, mode: "strict", coalesce });

/** Random bytes of length n. */
function bytes(r, n) {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = r.int(256);
  return b;
}

/** Checks the log against the model (Map key -> {seq, parts: Uint8Array[]}) and the pool. */
function verify(log, model, where) {
  const pool = log.pool;
  if (log.size !== model.size) {
    const have = new Set(log.entries().map((e) => new TextDecoder().decode(e.key)));
    const missing = [...model.keys()].filter((k) => !have.has(k)).map((k) => k.slice(0, 8));
    const extra = [...have].filter((k) => !model.has(k)).map((k) => k.slice(0, 8));
    assert.unreachable(`${where}: live keys ${log.size} vs ${model.size}; missing ${missing} extra ${extra}`);
  }
  const refs = new Map();
  const entries = log.entries();
  assert.is(entries.length, model.size, `${where}: entries`);
  const dec = new TextDecoder();
  for (const e of entries) {
    const key = dec.decode(e.key);
    const m = model.get(key);
    assert.ok(m, `${where}: entry ${key} is in the model`);
    assert.is(e.seq, m.seq, `${where}: seq of ${key}`);
    assert.is(e.names.length, m.parts.length, `${where}: names of ${key}`);
    e.names.forEach((n, k) => {
      assert.equal(pool.viewName(n), m.parts[k], `${where}: bytes of ${key} part ${k}`);
      refs.set(n.index, (refs.get(n.index) ?? 0) + 1);
    });
  }
  for (const [key, m] of model) {
    assert.is(log.seqOf(key), m.seq, `${where}: get ${key}`);
  }
  const c = pool.check();
  assert.is(c.kept, refs.size, `${where}: kept buffers = buffers named by live records`);
  assert.is(c.free, BUFFERS - refs.size, `${where}: every other buffer is free`);
  for (const [i, n] of refs) assert.is(pool.refCount(i), n, `${where}: references of buffer ${i}`);
}

function run(seed, { ops, keys, metaBytes, maxKey }) {
  const dir = scratchDir("tmpfs");
  const path = join(dir, `model-${seed}.pm`);
  const r = rng(seed);
  let log = openLog(path, metaBytes);
  let current = new Map(); // what get() must see
  let durable = new Map(); // what a reopen must see
  let commits = log.stats().commits;
  const stat = { puts: 0, overwrites: 0, deletes: 0, absentDeletes: 0, full: 0, reopens: 0, compactions: 0 };
  const keyOf = (k) => `k${k}:` + "x".repeat(k % maxKey);
  // Implicit commits (group limit, auto-compaction) happen before the op that triggers them.
  const noteCommits = () => {
    const c = log.stats().commits;
    if (c !== commits) durable = new Map(current);
    commits = c;
  };
  for (let op = 0; op < ops; op++) {
    const x = r();
    const key = keyOf(r.int(keys));
    if (x < 0.55) {
      // put: 1..3 parts, sometimes two parts in one buffer
      const pool = log.pool;
      const nParts = 1 + r.int(3);
      const parts = [];
      const names = [];
      const held = [];
      for (let p = 0; p < nParts; p++) {
        const len = 1 + r.int(p === 0 && r() < 0.3 ? 2048 : 600);
        let index;
        let offset;
        if (p > 0 && names[p - 1].offset + names[p - 1].length + len <= 2048 && r() < 0.3) {
          index = names[p - 1].index; // share the previous part's buffer
          offset = names[p - 1].offset + names[p - 1].length;
        } else {
          index = pool.alloc();
          held.push(index);
          offset = r.int(2048 - len + 1);
        }
        const b = bytes(r, len);
        pool.view(index, offset, len).set(b);
        parts.push(b);
        names.push(pool.name(index, offset, len));
      }
      let seq;
      try {
        seq = log.append(key, names);
      } catch (e) {
        if (!(e instanceof LogFullError)) throw e;
        stat.full++;
        noteCommits();
        pool.freeBatch(held);
        continue;
      }
      pool.freeBatch(held); // the log holds its own references
      noteCommits(); // an implicit commit (auto-compaction) happens before the append itself
      if (current.has(key)) stat.overwrites++;
      else stat.puts++;
      current.set(key, { seq, parts });
    } else if (x < 0.75) {
      let seq;
      try {
        seq = log.delete(key);
      } catch (e) {
        if (!(e instanceof LogFullError)) throw e;
        stat.full++;
        noteCommits();
        continue;
      }
      noteCommits();
      assert.is(seq !== null, current.has(key), `delete ${key} found it`);
      if (seq === null) stat.absentDeletes++;
      else stat.deletes++;
      current.delete(key);
    } else if (x < 0.85) {
      const names = log.get(key);
      const m = current.get(key);
      assert.is(names === undefined, m === undefined, `get ${key}`);
      if (m) names.forEach((n, k) => assert.equal(log.pool.viewName(n), m.parts[k], `bytes of ${key}`));
    } else if (x < 0.95) {
      log.commit();
      noteCommits();
      verify(log, current, `seed ${seed} op ${op} (commit)`);
    } else if (x < 0.97) {
      log.compact();
      stat.compactions++;
      noteCommits();
      verify(log, current, `seed ${seed} op ${op} (compact)`);
    } else {
      // reopen, committing or not: the reopened log holds exactly the durable state
      if (r() < 0.5) {
        log.commit();
        noteCommits();
      }
      log.pool.close();
      log = openLog(path, metaBytes);
      stat.reopens++;
      assert.is(log.recovery.discardedBytes, 0, "a clean reopen discards nothing");
      current = new Map(durable);
      commits = log.stats().commits;
      verify(log, current, `seed ${seed} op ${op} (reopen)`);
    }
  }
  log.commit();
  verify(log, current, `seed ${seed} end`);
  log.pool.close();
  return stat;
}

test("log vs model: small log that wraps and compacts (3 seeds x 2500 operations)", () => {
  for (const seed of [1, 2, 3]) {
    const s = run(seed, { ops: 2500, keys: 120, metaBytes: 65536, maxKey: 40 });
    assert.ok(s.overwrites > 100 && s.deletes > 100 && s.reopens > 20, JSON.stringify(s));
  }
});

test("log vs model: a log that fills up (long keys, many of them): LogFullError, nothing lost", () => {
  let full = 0;
  for (const seed of [4, 5]) {
    const s = run(seed, { ops: 2000, keys: 400, metaBytes: 65536, maxKey: 900 });
    full += s.full;
  }
  assert.ok(full > 10, `log-full errors seen: ${full}`);
});

test("log vs model: default-size log, many keys (1 seed x 4000 operations)", () => {
  const s = run(6, { ops: 4000, keys: 1500, metaBytes: undefined, maxKey: 12 });
  assert.ok(s.puts > 1000, JSON.stringify(s));
});

test("log vs model with coalesced flush lists (one range per commit step, as on block devices)", () => {
  coalesce = true;
  try {
    run(7, { ops: 2000, keys: 120, metaBytes: 65536, maxKey: 40 });
  } finally {
    coalesce = false;
  }
});

test("volatile pool: the log works in plain memory", () => {
  const pool = Pool.volatile({ buffers: 64, configure: PmLog.configure });
  const log = PmLog.open(pool);
  assert.ok(log.recovery.formatted);
  const i = pool.alloc();
  pool.view(i, 0, 3).set([1, 2, 3]);
  const seq = log.append("a", [pool.name(i, 0, 3)]);
  pool.free(i);
  log.commit();
  assert.is(log.seqOf("a"), seq);
  assert.equal([...log.views("a")[0]], [1, 2, 3]);
  assert.is(pool.check().kept, 1);
  pool.close();
});

test.run();

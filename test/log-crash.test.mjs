// Crash trials: a child appends to the log under load in strict mode (stores reach the file
// only when persisted) and is killed with SIGKILL at a seeded random moment; the parent reopens
// the same file after each kill and checks that every record whose commit returned is present
// and byte-exact, that the state is exactly the last acknowledged one or that plus the whole
// group being committed (never part of a group, never a torn record), and that the pool holds
// exactly the buffers the live records name as kept. Each chain of trials runs on one file.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { PmLog } from "../build/index.js";
import { matches } from "./lib/pattern.mjs";
import { rng } from "./lib/rng.mjs";
import { scratchDir } from "./lib/tmp.mjs";

const child = new URL("./lib/log-crash-child.mjs", import.meta.url).pathname;
const BUFFERS = 4096;
const KEYS = 200;

/** Runs the child until `delayMs` after it is ready, then SIGKILLs it. Returns its journal. */
function trial(path, metaBytes, seed, delayMs, killAt = 0) {
  const journal = `${path}.ops`; // the child's record of what it did
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, path, journal, BUFFERS, metaBytes, seed, KEYS, killAt].map(String), {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    let armed = false;
    p.stdout.on("data", () => {
      if (!armed) {
        armed = true;
        setTimeout(() => p.kill("SIGKILL"), delayMs);
      }
    });
    p.stderr.on("data", (d) => (err += d));
    p.on("error", reject);
    p.on("close", (code, sig) => {
      let lines = [];
      try {
        lines = readFileSync(journal, "utf8").split("\n").filter(Boolean);
      } catch {}
      resolve({ lines, sig, code, err });
    });
  });
}

/** Applies ops [from, to) to a copy of state (Map key -> seq). */
function applyOps(state, ops, to) {
  const s = new Map(state);
  for (let j = 0; j < to; j++) {
    const o = ops[j];
    if (o.t === "A") s.set(o.key, o.seq);
    else s.delete(o.key);
  }
  return s;
}

const sameState = (a, b) => a.size === b.size && [...a].every(([k, v]) => b.get(k) === v);

async function chain(medium, trials, metaBytes, seed0, inCommit = false) {
  const dir = scratchDir(medium);
  const path = join(dir, "log-crash.pm");
  let state = new Map(); // key -> seq, verified after the previous restart
  const seqs = new Map(); // seq -> { nNames, total } of every put ever printed
  const r = rng(seed0);
  const stats = {
    trials: 0,
    ops: 0,
    acked: 0,
    inFlightCommitted: 0,
    inFlightLost: 0,
    maxKeys: 0,
    compactions: 0,
    killedInCompaction: 0,
    points: {},
  };
  for (let t = 0; t < trials; t++) {
    const delay = inCommit ? 5000 : t === 0 ? 150 : 5 + r.int(120);
    const killAt = inCommit ? 1 + r.int(300) : 0;
    const { lines, sig, err } = await trial(path, metaBytes, seed0 * 1000 + t, delay, killAt);
    assert.is(sig, "SIGKILL", `trial ${t}: the child was killed (stderr: ${err})`);
    assert.match(lines[0] ?? "", /^READY /, `trial ${t}: the child started`);
    const ops = [];
    let acked = 0;
    for (const l of lines.slice(1)) {
      const f = l.split(" ");
      if (f[0] === "C") acked = ops.length;
      else if (f[0] === "A") {
        ops.push({ t: "A", key: f[1], seq: Number(f[2]) });
        seqs.set(Number(f[2]), { nNames: Number(f[3]), total: Number(f[4]) });
      } else if (f[0] === "D") ops.push({ t: "D", key: f[1], seq: Number(f[2]) });
    }
    const marks = lines.filter((l) => l === "K" || l === "k");
    if (marks.length && marks[marks.length - 1] === "K") stats.killedInCompaction++;
    stats.compactions += marks.filter((l) => l === "K").length;
    const atAck = applyOps(state, ops, acked);
    const atEnd = applyOps(state, ops, ops.length);

    const log = PmLog.openFile(path, { buffers: BUFFERS, metaBytes, mode: "strict" });
    try {
      const pool = log.pool;
      assert.is(log.recovery.discardedBytes, 0, `trial ${t}: nothing up to the tail is torn`);
      const got = new Map();
      const refs = new Map();
      for (const e of log.entries()) {
        const key = new TextDecoder().decode(e.key);
        const info = seqs.get(e.seq);
        assert.ok(info, `trial ${t}: ${key} has seq ${e.seq}, which was appended`);
        assert.is(e.names.length, info.nNames, `trial ${t}: ${key} names`);
        assert.is(
          e.names.reduce((a, n) => a + n.length, 0),
          info.total,
          `trial ${t}: ${key} length`,
        );
        e.names.forEach((n, k) => {
          assert.ok(matches(pool.viewName(n), e.seq * 8 + k), `trial ${t}: ${key} seq ${e.seq} part ${k} byte-exact`);
          refs.set(n.index, (refs.get(n.index) ?? 0) + 1);
        });
        got.set(key, e.seq);
      }
      const isAck = sameState(got, atAck);
      const isEnd = sameState(got, atEnd);
      const x = lines.find((l) => l.startsWith("X "));
      if (inCommit) {
        // killed inside a persist call: the group is in iff the tail slot's persist completed
        assert.ok(x, `trial ${t}: the child killed itself inside persist call ${killAt}`);
        const durable = x === "X after tail";
        assert.ok(durable ? isEnd : isAck, `trial ${t}: ${x}: the in-flight group is ${durable ? "in" : "out"}`);
        stats.points[x] = (stats.points[x] ?? 0) + 1;
      }
      assert.ok(
        isAck || isEnd,
        `trial ${t}: recovered state (${got.size} keys) is the acknowledged one or that plus the whole last group`,
      );
      if (!isAck) stats.inFlightCommitted++;
      else if (ops.length > acked) stats.inFlightLost++;
      const c = pool.check();
      assert.is(c.kept, refs.size, `trial ${t}: kept = buffers named by live records`);
      assert.is(c.free, BUFFERS - refs.size, `trial ${t}: all other buffers free`);
      for (const [i, n] of refs) assert.is(pool.refCount(i), n, `trial ${t}: references of buffer ${i}`);
      state = got;
      stats.trials++;
      stats.ops += ops.length;
      stats.acked += acked;
      stats.maxKeys = Math.max(stats.maxKeys, got.size);
    } finally {
      log.pool.close();
    }
  }
  return stats;
}

test("110 SIGKILL trials while appending in strict mode (tmpfs and disk chains in parallel)", async () => {
  const [a, b] = await Promise.all([chain("tmpfs", 60, 65536, 7), chain("disk", 50, 131072, 8)]);
  const all = [a, b];
  assert.is(a.trials + b.trials, 110);
  for (const s of all) {
    assert.ok(s.acked > 1000, `enough acknowledged operations: ${JSON.stringify(s)}`);
    assert.ok(s.maxKeys > 50, `the keys fill up: ${JSON.stringify(s)}`);
  }
  console.log(`  crash trials: tmpfs ${JSON.stringify(a)}; disk ${JSON.stringify(b)}`);
});

test("60 kills inside persist calls (before, partial prefix or suffix, after; data or tail step)", async () => {
  const [a, b] = await Promise.all([chain("tmpfs", 30, 65536, 9, true), chain("disk", 30, 131072, 10, true)]);
  const points = {};
  for (const s of [a, b]) for (const [k, v] of Object.entries(s.points)) points[k] = (points[k] ?? 0) + v;
  for (const p of ["X before data", "X prefix data", "X suffix data", "X after data", "X before tail", "X after tail"])
    assert.ok(points[p] > 0, `kill point ${p} was exercised: ${JSON.stringify(points)}`);
  console.log(`  kills inside persist: ${JSON.stringify(points)}`);
});

test.run();

// Power loss in journal mode, modelled: a child writes objects of any size through the log
// (pipelined group commits: a committer thread appends journal entries and fdatasyncs them, a
// checkpointer writes pages back to the pool file) with every file write and fdatasync traced
// (PMSTACK_JOURNAL_TRACE), and is killed with SIGKILL at a seeded moment. From the files as they
// were before the child started and the trace, the test builds states a power loss could have
// left on the device: every write a later completed fdatasync of the same file covers is there;
// each later write is kept, dropped, or torn at 512-byte sectors, at random. For each such
// state the pool and its log are opened (replay, recovery) and must hold exactly the objects of
// a prefix of the groups, at least every group the child saw acknowledged, byte for byte; no
// object torn, no key from a group past the prefix, and exactly the buffers the live records
// reach kept. (The trace is written before each write syscall, in issue order across the two
// threads: a write recorded before another thread's fdatasync of the same file may still have
// been in flight, so the model may call it durable. It only ever adds states that could occur.)
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PmLog, ObjectCursor } from "../build/index.js";
import { fill } from "./lib/pattern.mjs";
import { rng } from "./lib/rng.mjs";
import { scratchDir } from "./lib/tmp.mjs";

const child = new URL("./lib/powerloss-child.mjs", import.meta.url).pathname;
const KEYS = 24;
const TRIALS = Number(process.env.PMSTACK_POWERLOSS_TRIALS ?? 6);
const STATES = 6; // power-loss states checked per trial

function runAndKill(dir, seed, delayMs) {
  const path = join(dir, "p.pm");
  const ops = join(dir, "ops");
  const trace = join(dir, "trace");
  writeFileSync(trace, "");
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, path, ops, String(seed), String(KEYS)], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, PMSTACK_JOURNAL_TRACE: trace },
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
    p.on("close", (code, sig) =>
      resolve({ sig, code, err, ops: readFileSync(ops, "utf8"), trace: readFileSync(trace) }),
    );
  });
}

/** The trace's records: {op: 1 write | 2 fdatasync, file: 0 pool | 1 journal, off, data}. A torn last record is dropped. */
function parseTrace(buf) {
  const out = [];
  let at = 0;
  while (at + 24 <= buf.length) {
    const op = buf[at];
    const file = buf[at + 1];
    const off = Number(buf.readBigUInt64LE(at + 8));
    const len = Number(buf.readBigUInt64LE(at + 16));
    if (op === 1 && at + 24 + len > buf.length) break;
    out.push({ op, file, off, data: op === 1 ? buf.subarray(at + 24, at + 24 + len) : null });
    at += 24 + (op === 1 ? len : 0);
  }
  return out;
}

/** One state a power loss could leave: images of both files. */
function powerLoss(base, recs, r) {
  const images = [Buffer.from(base[0]), Buffer.from(base[1])];
  const lastSync = [-1, -1];
  recs.forEach((x, k) => {
    if (x.op === 2) lastSync[x.file] = k;
  });
  recs.forEach((x, k) => {
    if (x.op !== 1) return;
    const img = images[x.file];
    const put = (from, to) => x.data.copy(img, x.off + from, from, to);
    if (k < lastSync[x.file]) return put(0, x.data.length); // a later fdatasync covers it
    const fate = r.int(3);
    if (fate === 0) return; // lost
    if (fate === 1) return put(0, x.data.length);
    // torn: each 512-byte sector of the file, old or new
    for (let s = Math.floor(x.off / 512) * 512; s < x.off + x.data.length; s += 512)
      if (r() < 0.5) put(Math.max(0, s - x.off), Math.min(x.data.length, s + 512 - x.off));
  });
  return images;
}

/** The acknowledged groups and every prefix state from them on, from the child's ops file. */
function history(text, before) {
  const lines = text.split("\n").filter(Boolean);
  const states = [new Map(before)]; // states[g]: after group g
  let cur = new Map(before);
  let acked = 0;
  for (const line of lines.slice(1)) {
    const [t, a, b, c] = line.split(" ");
    if (t === "P") cur.set(a, { ver: Number(b), size: Number(c) });
    else if (t === "D") cur.delete(a);
    else if (t === "G") states[Number(a)] = new Map(cur);
    else if (t === "A") acked = Math.max(acked, Number(a));
  }
  return { states, acked, groups: states.length - 1 };
}

/** The group g (acked <= g <= groups) whose state the recovered log holds exactly, or -1. */
function matchPrefix(log, h) {
  const live = new Set(log.entries().map((e) => new TextDecoder().decode(e.key)));
  for (let g = h.groups; g >= h.acked; g--) {
    const want = h.states[g];
    if (!want || want.size !== live.size) continue;
    let ok = true;
    for (const [k, v] of want) {
      const obj = live.has(k) ? log.object(k) : null;
      if (!obj || !contentOk(log.pool, obj, v)) {
        ok = false;
        break;
      }
    }
    if (ok) return g;
  }
  return -1;
}

function contentOk(pool, obj, v) {
  if (obj.length !== v.size) return false;
  const want = new Uint8Array(v.size);
  fill(want, v.ver);
  let at = 0;
  const cur = new ObjectCursor(pool, obj);
  for (let r = cur.next(); r; r = cur.next()) {
    const got = pool.viewName(r);
    for (let i = 0; i < got.length; i++) if (got[i] !== want[at + i]) return false;
    at += got.length;
  }
  return at === v.size;
}

test(`power loss in journal mode: ${TRIALS} kills x ${STATES} device states, every acknowledged group whole, nothing torn, no leak`, async () => {
  const dir = scratchDir("tmpfs");
  const path = join(dir, "p.pm");
  const r = rng(4242);
  // the pool and its journal exist before the first trial (creation is not traced)
  const first = PmLog.openFile(path, { buffers: 8192, mode: "journal", journalBytes: 1 << 20 });
  first.pool.close();
  let state = new Map(); // what the files hold now (verified after the previous trial)
  const seen = { states: 0, groups: 0, acked: 0, inPrefix: 0 };
  for (let t = 0; t < TRIALS; t++) {
    const base = [readFileSync(path), readFileSync(path + ".journal")];
    const { sig, err, ops, trace } = await runAndKill(dir, 100 + t, 150 + r.int(400));
    assert.is(sig, "SIGKILL", err);
    const h = history(ops, state);
    const recs = parseTrace(trace);
    assert.ok(
      recs.some((x) => x.op === 2),
      "the child made something durable before the kill",
    );
    seen.groups += h.groups;
    seen.acked += h.acked;
    for (let s = 0; s < STATES; s++) {
      const [poolImg, journalImg] = powerLoss(base, recs, r);
      const sdir = scratchDir("tmpfs");
      const spath = join(sdir, "p.pm");
      writeFileSync(spath, poolImg);
      writeFileSync(spath + ".journal", journalImg);
      const log = PmLog.openFile(spath, { buffers: 8192, mode: "journal" });
      const pool = log.pool;
      try {
        // the recovered keys must be exactly the state after some group g >= the last acknowledged one
        const match = matchPrefix(log, h);
        assert.ok(
          match >= h.acked,
          `trial ${t} state ${s}: the recovered ${log.size} keys are no prefix of the groups from ${h.acked} (acknowledged) to ${h.groups}`,
        );
        seen.inPrefix += match - h.acked;
        seen.states++;
        // exactly the buffers the live records reach are kept
        const c = pool.check();
        assert.is(c.kept, log.recovery.claimedBuffers, "kept buffers are the ones recovery claimed");
      } finally {
        pool.close();
      }
    }
    // the next trial starts from the real files as the kill left them (a process crash: the
    // page cache keeps every write, so at least every acknowledged group is there)
    const log = PmLog.openFile(path, { buffers: 8192, mode: "journal" });
    const g = matchPrefix(log, h);
    assert.ok(g >= h.acked, `trial ${t}: after the kill itself the log holds a prefix from the acknowledged groups on`);
    state = h.states[g];
    log.pool.check();
    log.pool.close();
  }
  assert.ok(seen.acked > TRIALS, `groups were acknowledged before the kills (${JSON.stringify(seen)})`);
  console.log(`  power loss: ${JSON.stringify(seen)}`);
});

test("a process killed after an object's ack: its journal entries, each with more ranges than one pwritev takes, replay whole", async () => {
  const bigChild = new URL("./lib/bigentry-child.mjs", import.meta.url).pathname;
  for (let rep = 0; rep < 6; rep++) {
    const path = join(scratchDir(rep % 2 ? "disk" : "tmpfs"), "big.pm");
    const size = 16_000_000 + rep * 5_000_000;
    await new Promise((resolve, reject) => {
      const p = spawn(process.execPath, [bigChild, path, String(size)], { stdio: ["ignore", "pipe", "inherit"] });
      p.stdout.on("data", (d) => {
        if (String(d).includes("ACK")) p.kill("SIGKILL");
      });
      p.on("error", reject);
      p.on("close", resolve);
    });
    const log = PmLog.openFile(path, { buffers: 131072, mode: "journal" });
    try {
      assert.is(log.pool.journal.replay.damage, "", JSON.stringify(log.pool.journal.replay));
      assert.ok(
        contentOk(log.pool, log.object("a"), { ver: 2, size }),
        `rep ${rep}: the acknowledged ${size}-byte value`,
      );
      log.pool.check();
    } finally {
      log.pool.close();
    }
  }
});

test.run();

// The persistence adapters (host/store.ts): the addon's mmap, the file adapter (no addon) and
// memory only. One file format: a pool and its log written through either adapter open under
// the other, a journal the mmap adapter left (even after SIGKILL) is replayed by the file
// adapter, and the file adapter's later commits are not rolled back by that journal. A log
// writer killed while committing through the file adapter loses nothing it committed. Memory
// only persists nothing. Without the addon, "auto" falls back to the file adapter and says so.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { MemoryPair, PasteServer, PmLog, Pool, Stack, PoolFileError } from "../build/index.js";
import { fill, matches } from "./lib/pattern.mjs";
import { scratchDir, MEDIA } from "./lib/tmp.mjs";

const MiB = 1 << 20;
const dirOf = (medium) => scratchDir(medium === "tmpfs" ? "tmpfs" : "disk");

function codeOf(fn) {
  try {
    fn();
  } catch (e) {
    return e.code;
  }
  return "no error";
}

/** Puts `n` keys k<from>.. into `log`, each one buffer filled with fill(seq = key number), and commits. */
function putKeys(log, from, n) {
  const pool = log.pool;
  for (let k = from; k < from + n; k++) {
    const i = pool.alloc();
    const len = 100 + ((k * 37) % 1900);
    fill(pool.view(i, 0, len), k);
    log.append(`k${k}`, [pool.name(i, 0, len)]);
    pool.free(i); // the log holds its own reference
  }
  log.commit();
}

function checkKeys(log, n, what) {
  assert.is(log.size, n, `${what}: ${n} keys`);
  for (let k = 0; k < n; k++) {
    const views = log.views(`k${k}`);
    assert.ok(views, `${what}: k${k} is there`);
    assert.ok(matches(views[0], k), `${what}: k${k} intact`);
  }
  const c = log.pool.check();
  assert.is(c.kept, n, `${what}: one kept buffer per key`);
}

for (const medium of MEDIA)
  test(`one format: a pool and its log go file -> mmap -> file (${medium})`, () => {
    const path = join(dirOf(medium), "cross.pm");
    const open = (persistence) => PmLog.openFile(path, { buffers: 256, persistence, journalBytes: MiB });

    let log = open("file");
    assert.is(log.pool.persistence, "file");
    assert.is(log.pool.persistMode, "file");
    assert.ok(log.recovery.formatted);
    putKeys(log, 0, 20);
    log.delete("k3");
    putKeys(log, 3, 1); // k3 again
    log.pool.close();

    log = open("mmap");
    assert.is(log.pool.persistence, "mmap");
    assert.is(log.pool.persistMode, medium === "tmpfs" ? "msync" : "journal");
    checkKeys(log, 20, "mmap reads the file adapter's pool");
    putKeys(log, 20, 20);
    log.pool.close();

    log = open("file");
    checkKeys(log, 40, "the file adapter reads the mmap adapter's pool");
    if (medium !== "tmpfs") {
      assert.ok(log.pool.journal, "the journal the mmap adapter left was opened");
      assert.is(log.pool.journal.replay.entries, 0, "a clean close left nothing to replay");
    }
    putKeys(log, 40, 10);
    log.pool.close();

    log = open("mmap");
    checkKeys(log, 50, "and back");
    log.pool.close();
  });

test("a pool grows through either adapter and the other reads the grown pool", () => {
  const path = join(dirOf("disk"), "grow.pm");
  let log = PmLog.openFile(path, { buffers: 64, persistence: "file" });
  putKeys(log, 0, 10);
  log.pool.close();
  let sizes = [];
  for (const [persistence, growTo] of [
    ["file", 256],
    ["mmap", 256],
    ["mmap", 512],
    ["file", 512],
    ["file", 1024],
    ["mmap", 1024],
  ]) {
    log = PmLog.openFile(path, { buffers: growTo, persistence, growTo });
    assert.is(log.pool.bufferCount, growTo, `${persistence}: ${growTo} buffers`);
    assert.is(statSync(path).size, log.pool.superblock.fileSize);
    checkKeys(log, 10, `${persistence} after growing to ${growTo}`);
    sizes.push(log.pool.superblock.fileSize);
    log.pool.close();
  }
  assert.ok(sizes[0] < sizes[2] && sizes[2] < sizes[4]);
});

test("after a journal-mode run, the file adapter's commits survive the next journal-mode open", () => {
  // A journal-mode checkpoint saves the log's tail slot and its generation in the journal's
  // header, for replay; the file adapter then commits in place. The next journal-mode open
  // would restore the old slot and distrust the newer ones if the header still said so.
  const path = join(dirOf("disk"), "slot.pm");
  const open = (persistence) => PmLog.openFile(path, { buffers: 256, persistence, journalBytes: MiB });
  let log = open("mmap");
  assert.is(log.pool.persistMode, "journal");
  putKeys(log, 0, 5);
  putKeys(log, 5, 5);
  log.pool.close();
  for (let round = 0; round < 3; round++) {
    log = open("file");
    checkKeys(log, 10 + 6 * round, `file adapter, round ${round}`);
    for (let c = 0; c < 3; c++) putKeys(log, 10 + 6 * round + 2 * c, 2); // several generations
    log.pool.close();
    log = open("mmap");
    assert.is(log.pool.persistMode, "journal");
    checkKeys(log, 16 + 6 * round, `mmap adapter after the file adapter, round ${round}`);
    log.pool.close();
  }
});

/** Runs `code` in a node child (ESM, `argv` and the module's exports in scope); kills it with SIGKILL once `until(lines)`. */
function child(code, args, until) {
  const src = `import * as pm from ${JSON.stringify(new URL("../build/index.js", import.meta.url).href)};
import { fill } from ${JSON.stringify(new URL("./lib/pattern.mjs", import.meta.url).href)};
const argv = process.argv.slice(1);
${code}`;
  const p = spawn(process.execPath, ["--input-type=module", "-e", src, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const lines = [];
  let buf = "";
  return new Promise((resolve, reject) => {
    p.stdout.on("data", (d) => {
      buf += d;
      for (let nl; (nl = buf.indexOf("\n")) >= 0; buf = buf.slice(nl + 1)) lines.push(buf.slice(0, nl));
      if (!p.killed && until(lines)) p.kill("SIGKILL");
    });
    p.on("error", reject);
    p.on("exit", (code, signal) => resolve({ lines, code, signal }));
  });
}

for (const medium of MEDIA)
  test(`a journal-mode writer killed with SIGKILL: the file adapter replays its journal first (${medium})`, async () => {
    const path = join(dirOf(medium), "killed.pm");
    const { lines, signal } = await child(
      `const pool = pm.Pool.create(argv[0], { buffers: 256, journalBytes: ${MiB}, mode: "journal" });
       console.log("MODE " + pool.persistMode);
       for (let k = 0; k < 250; k++) {
         const i = pool.alloc();
         fill(pool.view(i, 0, 64 + k), k);
         pool.keep(i);
         pool.persist(i, 0, 64 + k);
         console.log("P " + i + " " + k);
       }
       setInterval(() => {}, 1000);`,
      [path],
      (ls) => ls.length >= 120,
    );
    assert.is(signal, "SIGKILL");
    assert.is(lines[0], "MODE journal");
    const persisted = lines.filter((l) => l.startsWith("P ")).map((l) => l.split(" ").slice(1).map(Number));
    const p = Pool.open(path, { persistence: "file" });
    assert.is(p.persistMode, "file");
    const r = p.journal.replay;
    assert.ok(r.entries > 0, `${r.entries} entries replayed`);
    assert.is(r.damage, "");
    assert.is(r.nextSeq - r.startSeq, r.entries);
    for (const [i, k] of persisted) {
      p.claim(i);
      assert.ok(matches(p.view(i, 0, 64 + k), k), `buffer ${i} (entry ${k})`);
    }
    p.close();
    // the replay wrote what it applied into the pool file, and marked the journal replayed
    const raw = readFileSync(path);
    const [i, k] = persisted.at(-1);
    assert.ok(matches(raw.subarray(p.superblock.bufOffset + i * 2048, p.superblock.bufOffset + i * 2048 + 64 + k), k));
    const q = Pool.open(path, { persistence: "file" });
    assert.is(q.journal.replay.entries, 0, "nothing left to replay");
    q.close();
    const m = Pool.open(path, { mode: "journal" }); // and the addon agrees
    assert.is(m.journal.replay.entries, 0);
    assert.is(m.journal.replay.damage, "");
    for (const [i, k] of persisted) {
      m.claim(i);
      assert.ok(matches(m.view(i, 0, 64 + k), k), `buffer ${i} (entry ${k}) through mmap`);
    }
    m.close();
  });

test("the file adapter's replay equals the addon's: same result, same pool file, same journal, damaged or not", async () => {
  const path = join(dirOf("disk"), "twin.pm");
  const { signal } = await child(
    `const log = pm.PmLog.openFile(argv[0], { buffers: 512, journalBytes: ${MiB}, mode: "journal" });
     for (let k = 0; ; k++) {
       const pool = log.pool;
       const i = pool.alloc();
       fill(pool.view(i, 0, 300 + k), k);
       log.append("k" + (k % 40), [pool.name(i, 0, 300 + k)]);
       pool.free(i);
       if (k % 3 === 2) {
         log.commit();
         console.log("C " + k);
       }
     }`,
    [path],
    (ls) => ls.length >= 60,
  );
  assert.is(signal, "SIGKILL");
  const journal = readFileSync(path + ".journal");
  const dv = new DataView(journal.buffer, journal.byteOffset, journal.length);
  const u64 = (o) => Number(dv.getBigUint64(o, true));
  // the newer header slot's start; the entries from there (the scan's chain)
  const slot = u64(40) >= u64(512 + 40) ? 0 : 512;
  const cap = u64(32);
  const entries = [];
  for (let pos = u64(slot + 48); u64(4096 + (pos % cap) + 8) === pos;) {
    const at = 4096 + (pos % cap);
    const len = dv.getUint32(at + 24, true);
    entries.push({ at, len });
    pos += dv.getUint32(at, true) === 0x504a4d50 ? len : Math.ceil(len / 512) * 512;
  }
  assert.ok(entries.length > 10, `${entries.length} entries to replay`);
  const variants = {
    clean: () => {},
    crc: (b) => (b[entries[5].at + entries[5].len - 1] ^= 1), // a data byte of the 6th entry
    magic: (b) => b.fill(0, entries[7].at, entries[7].at + 4),
    sequence: (b) => (b[entries[4].at + 16] ^= 1),
  };
  const dir = scratchDir("disk");
  for (const [name, damage] of Object.entries(variants)) {
    const results = {};
    for (const persistence of ["mmap", "file"]) {
      const p = join(dir, `${name}-${persistence}.pm`);
      cpSync(path, p);
      const j = Buffer.from(journal);
      damage(j);
      writeFileSync(p + ".journal", j);
      const pool = Pool.open(p, { persistence, mode: "msync" });
      results[persistence] = { replay: { ...pool.journal.replay }, capacity: pool.journal.capacity };
      pool.close();
      results[persistence].pool = readFileSync(p);
      results[persistence].journal = readFileSync(p + ".journal");
    }
    const { mmap, file } = results;
    assert.equal(file.replay, mmap.replay, `${name}: the same replay`);
    assert.is(file.capacity, mmap.capacity);
    if (name !== "clean") assert.is(mmap.replay.damage, name, `${name}: damage found`);
    else assert.ok(mmap.replay.entries > 10 && mmap.replay.lastGen > 0);
    assert.ok(file.pool.equals(mmap.pool), `${name}: the same pool file`);
    assert.ok(file.journal.equals(mmap.journal), `${name}: the same journal (the replay mark)`);
  }
});

for (const medium of MEDIA)
  test(`a log writer killed with SIGKILL through the file adapter loses no committed key (${medium})`, async () => {
    const path = join(dirOf(medium), "logkill.pm");
    const { lines, signal } = await child(
      `const log = pm.PmLog.openFile(argv[0], { buffers: 2048, persistence: "file" });
       console.log("READY " + log.pool.persistMode);
       for (let k = 0; ; k++) {
         const pool = log.pool;
         const i = pool.alloc();
         const len = 100 + ((k * 37) % 1900);
         fill(pool.view(i, 0, len), k);
         log.append("k" + k, [pool.name(i, 0, len)]);
         pool.free(i);
         if (k % 4 === 3) {
           log.commit();
           console.log("C " + k);
         }
         if (k % 64 === 63) for (let d = k - 63; d < k - 31; d++) log.delete("k" + d);
       }`,
      [path],
      (ls) => ls.filter((l) => l.startsWith("C ")).length >= 150,
    );
    assert.is(signal, "SIGKILL");
    assert.is(lines[0], "READY file");
    // the last commit the parent heard of (the child may have made more before it died)
    const last = Number(
      lines
        .filter((l) => l.startsWith("C "))
        .at(-1)
        .split(" ")[1],
    );
    // keys 64m..64m+31 are deleted after the commit of k = 64m+63, and committed with k = 64m+67
    const block = (k) => 64 * Math.floor(k / 64);
    for (const reader of ["file", "mmap"]) {
      const log = PmLog.openFile(path, { buffers: 2048, persistence: reader });
      assert.is(log.recovery.damage, "", "no torn record before the committed tail");
      for (let k = 0; k <= last; k++) {
        const views = log.views(`k${k}`);
        if (k % 64 < 32 && block(k) + 67 <= last) {
          assert.not.ok(views, `k${k} was deleted and committed`);
          continue;
        }
        if (k % 64 < 32 && block(k) + 63 <= last) continue; // its delete may have been committed or not
        assert.ok(views, `${reader}: committed k${k} is there`);
        assert.ok(matches(views[0], k), `${reader}: k${k} intact`);
      }
      log.pool.check();
      log.pool.close();
    }
  });

test("memory only: persists nothing, says so, and serves the API", () => {
  const p = Pool.volatile({ buffers: 64 });
  assert.is(p.persistence, "memory");
  assert.is(p.persistMode, "none");
  assert.is(p.durability, "none");
  assert.is(p.medium, "memory");
  assert.is(p.fallback, null);
  assert.match(p.describe(), /nothing survives the process/);
  const i = p.alloc();
  p.persist(i, 0, 10);
  p.persistBatch([p.name(i)]);
  assert.equal(
    { ...p.stats, persistCalls: 0, persistRanges: 0 },
    {
      persistCalls: 0,
      persistRanges: 0,
      msyncCalls: 0,
      syncCalls: 0,
    },
  );
  p.close();
  // a stack with persistence "memory" and a log over it: the batch API end to end
  const a = Stack.create({ mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24", pool: { buffers: 512 } });
  const b = Stack.create({
    mac: "02:00:00:00:00:0b",
    ip: "198.18.0.2/24",
    pool: { buffers: 512, persistence: "memory" },
    configure: PmLog.configure,
  });
  assert.is(b.pool.persistence, "memory");
  const log = PmLog.open(b.pool);
  const pair = new MemoryPair(a, b);
  let n = 0;
  const srv = new PasteServer(
    pair.b,
    (batch) => {
      for (const c of batch.chunks) {
        batch.persist([c]);
        batch.append(`k${n++}`, [c]);
        batch.reply(c.conn, batch.keep(c));
      }
      for (const conn of batch.ended) batch.close(conn);
    },
    { log },
  );
  srv.listen(7);
  let got = 0;
  let closed = false;
  const cli = new PasteServer(pair.a, (batch) => {
    for (const c of batch.connected) {
      batch.reply(c.conn, "hello, memory");
      batch.close(c.conn);
    }
    for (const c of batch.chunks) got += c.view.length;
    if (batch.closed.length) closed = true;
  });
  cli.connect("198.18.0.2", 7);
  assert.ok(pair.runUntil(() => closed));
  assert.is(got, "hello, memory".length);
  assert.ok(log.size > 0 && log.durableSeq === log.lastSeq, "committed (to memory)");
  assert.is(b.pool.stats.msyncCalls + b.pool.stats.syncCalls, 0, "no write-back at all");
  pair.shutdown();
  assert.throws(
    () =>
      Stack.create({
        mac: "02:00:00:00:00:0c",
        pool: { path: "/nonexistent/x.pm", buffers: 8, persistence: "memory" },
      }),
    /keeps no file/,
  );
  assert.is(
    codeOf(() => Pool.create("/nonexistent/x.pm", { buffers: 8, persistence: "memory" })),
    "EINVAL",
  );
});

test("options: modes per adapter are checked before the disk is touched; strict writes without syncing", () => {
  const dir = scratchDir("disk");
  const path = join(dir, "m.pm");
  for (const mode of ["journal", "clwb", "clflushopt"]) {
    assert.is(
      codeOf(() => Pool.create(path, { buffers: 8, persistence: "file", mode })),
      "EINVAL",
    );
  }
  assert.throws(() => Pool.create(path, { buffers: 8, persistence: "nvme" }), /persistence must be/);
  assert.equal(readdirSync(dir), [], "nothing created");
  // "msync" on the file adapter is its own step (a write and an fdatasync), "strict" the same without the fdatasync
  const m = Pool.create(path, { buffers: 8, persistence: "file", mode: "msync" });
  assert.is(m.persistMode, "file");
  m.close();
  const s = Pool.open(path, { persistence: "file", mode: "strict" });
  assert.is(s.persistMode, "strict");
  assert.is(s.durability, "process-crash");
  const i = s.alloc();
  s.view(i, 0, 3).set([1, 2, 3]);
  const j = s.alloc();
  s.view(j, 0, 3).set([4, 5, 6]); // never persisted
  s.persist(i, 0, 3);
  assert.is(s.stats.msyncCalls, 1);
  assert.is(s.stats.syncCalls, 0);
  s.close();
  const t = Pool.open(path, { persistence: "file" });
  t.claim(i);
  t.claim(j);
  assert.equal([...t.view(i, 0, 3)], [1, 2, 3]);
  assert.equal([...t.view(j, 0, 3)], [0, 0, 0], "a store never persisted never reached the file");
  t.close();
  // a pool whose journal is gone: EJOURNAL through the file adapter too, "msync" opens it as it is
  const jp = join(dir, "j.pm");
  Pool.create(jp, { buffers: 8, journalBytes: MiB }).close();
  rmSync(jp + ".journal");
  const e = (() => {
    try {
      Pool.open(jp, { persistence: "file" });
    } catch (x) {
      return x;
    }
  })();
  assert.instance(e, PoolFileError);
  assert.is(e.code, "EJOURNAL");
  const q = Pool.open(jp, { persistence: "file", mode: "msync" });
  assert.is(q.superblock.flags & 1, 0, "the file alone is the pool now");
  q.close();
});

test("without the addon, auto falls back to the file adapter and says why (Node)", () => {
  // a copy of the build without the addons: what an install whose addon did not build runs
  const copy = join(scratchDir("disk"), "build");
  mkdirSync(copy);
  const build = new URL("../build/", import.meta.url).pathname;
  for (const f of readdirSync(build))
    if (!f.endsWith(".node") && statSync(join(build, f)).isFile()) cpSync(join(build, f), join(copy, f));
  assert.not.ok(existsSync(join(copy, "pmstack_native.node")));
  const dir = scratchDir("disk");
  const src = `import { Pool, PmLog } from ${JSON.stringify(join(copy, "index.js"))};
const log = PmLog.openFile(process.argv[1] + "/fb.pm", { buffers: 64 });
const pool = log.pool;
const i = pool.alloc();
pool.view(i, 0, 2).set([7, 7]);
log.append("x", [pool.name(i, 0, 2)]);
log.commit();
let journal = "";
try { Pool.create(process.argv[1] + "/j.pm", { buffers: 8, mode: "journal" }); } catch (e) { journal = e.code + " " + e.message; }
console.log(JSON.stringify({ persistence: pool.persistence, mode: pool.persistMode, fallback: pool.fallback,
  describe: pool.describe(), journal }));
pool.close();`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", src, dir], { encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.is(out.persistence, "file");
  assert.is(out.mode, "file");
  assert.match(out.fallback, /cannot load the native addon/);
  assert.match(out.describe, /file adapter \(fallback: cannot load the native addon/);
  assert.match(out.describe, /locked in this process only/);
  assert.match(out.journal, /^ENATIVE [^\n]*Mode "journal" needs it/);
  // the addon reads what the fallback wrote
  const log = PmLog.openFile(join(dir, "fb.pm"), { buffers: 64 });
  assert.is(log.pool.persistence, "mmap");
  assert.equal([...log.views("x")[0]], [7, 7]);
  log.pool.close();
});

test.run();

// The write-ahead journal (native-host/journal.c) and the Pool's journal mode, on tmpfs and on
// the disk: opening and refusing files, submits and completions, checkpoints, replay after
// SIGKILL and after damage, ring wrap-around, payload in place, the trace, failures.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import { transformSync } from "esbuild";
import { Pool } from "../build/index.js";
import { scratchDir, MEDIA } from "./lib/tmp.mjs";
import { rng } from "./lib/rng.mjs";

const addonPath = fileURLToPath(new URL("../build/pmstack_native.node", import.meta.url));
const indexPath = fileURLToPath(new URL("../build/index.js", import.meta.url));
const pm = createRequire(import.meta.url)(addonPath);
// The host's CRC-32C, straight from its source: the journal must compute the same.
const hostCrc = await import(
  "data:text/javascript," +
    encodeURIComponent(
      transformSync(fs.readFileSync(new URL("../host/crc32c.ts", import.meta.url), "utf8"), { loader: "ts" }).code,
    )
);

const MiB = 1 << 20;
const OFF = 65536; // where pool files are mapped in the memories
const TABLE = 1024; // a flush table, below the mapping
const POOL = 4 * MiB;
const UUID = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
const OTHER = Uint8Array.from({ length: 16 }, (_, i) => 100 + i);
const dirs = Object.fromEntries(MEDIA.map((m) => [m, scratchDir(m === "tmpfs" ? "tmpfs" : "disk")]));
let n = 0;
const fresh = (medium) => path.join(dirs[medium], `j${n++}.pm`);
const pattern = (len, seed) => Uint8Array.from({ length: len }, (_, i) => (i * 31 + seed * 7 + 1) & 255);
const sha = (file) => fs.readFileSync(file).toString("base64");
const pick = (o, ...keys) => keys.map((k) => o[k]);

function throwsCode(fn, code, re) {
  let err;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected an error with code ${code}`);
  assert.is(err.code, code, `code of: ${err.message}`);
  if (re) assert.match(err.message, re);
  return err;
}

/** A pool file mapped in journal mode (or `mode`) into a fresh memory. */
function mapPool(file, mode = "journal") {
  if (!fs.existsSync(file)) pm.close(pm.create(file, POOL, new Uint8Array(0)).fd);
  const memory = new WebAssembly.Memory({ initial: (OFF + POOL) / 65536 });
  const f = pm.open(file);
  const m = pm.map(memory, new Uint8Array(memory.buffer), OFF, f.fd, f.size, mode);
  const u8 = new Uint8Array(memory.buffer);
  const dv = new DataView(memory.buffer);
  return {
    memory,
    u8,
    m,
    /** Pool file bytes [off, off+len) as the memory holds them. */
    at: (off, len) => u8.slice(OFF + off, OFF + off + len),
    put: (off, bytes) => u8.set(bytes, OFF + off),
    /** Writes a flush table of [fileOffset, length] pairs; returns its memory offset. */
    table(pairs) {
      pairs.forEach(([o, l], i) => {
        dv.setUint32(TABLE + 8 * i, OFF + o, true);
        dv.setUint32(TABLE + 8 * i + 4, l, true);
      });
      return TABLE;
    },
    close() {
      pm.unmap(m.handle);
      pm.close(f.fd);
    },
  };
}

/** A pool and its journal: created (default) or opened and replayed. */
function setup(file, opts = {}) {
  const p = mapPool(file, opts.mode);
  const create = opts.create ?? !fs.existsSync(file + ".journal");
  const j = pm.journalOpen(p.m.handle, file + ".journal", { bytes: MiB, uuid: UUID, ...opts, create });
  const replay = create ? null : pm.journalReplay(j);
  return { ...p, j, replay, close: (ckpt = true) => (pm.journalClose(j, ckpt), p.close()) };
}

/** The journal file: its valid header slots and the chain of entries from the newer one's start. */
function parseJournal(jpath) {
  const b = fs.readFileSync(jpath);
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const u64 = (o) => Number(dv.getBigUint64(o, true));
  const slots = [0, 512]
    .filter((o) => dv.getUint32(o + 508, true) === hostCrc.crc32c(b.subarray(o, o + 508)))
    .map((o) => ({ at: o, ckptGen: u64(o + 40), start: u64(o + 48), startSeq: u64(o + 56) }));
  const head = slots.reduce((a, s) => (s.ckptGen > a.ckptGen ? s : a), slots[0]);
  const cap = u64(32);
  const entries = [];
  for (let pos = head.start, seq = head.startSeq; ;) {
    const at = 4096 + (pos % cap);
    if (u64(at + 8) !== pos || u64(at + 16) !== seq) break;
    const len = dv.getUint32(at + 24, true);
    if (b.toString("latin1", at, at + 4) === "PMJP") {
      pos += len; // a pad: the entry is at the next lap's start
      continue;
    }
    entries.push({ at, pos, seq, len, crc: dv.getUint32(at + 4, true) });
    pos += Math.ceil(len / 512) * 512;
    seq++;
  }
  return { bytes: b, cap, slots, head, entries };
}

/**
 * A node child running `code` (CommonJS: `pm`, `argv`, `indexPath` defined); resolves with the
 * lines it printed and how it ended. `until(lines)` true: it is killed with SIGKILL.
 */
function child(code, args, { until } = {}) {
  const src = `const pm = require(${JSON.stringify(addonPath)}); const argv = process.argv.slice(1);
const indexPath = ${JSON.stringify(indexPath)};\n${code}`;
  const p = spawn(process.execPath, ["-e", src, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  const lines = [];
  let buf = "";
  return new Promise((resolve, reject) => {
    p.stdout.on("data", (d) => {
      buf += d;
      for (let nl; (nl = buf.indexOf("\n")) >= 0; buf = buf.slice(nl + 1)) lines.push(buf.slice(0, nl));
      if (until && !p.killed && until(lines)) p.kill("SIGKILL");
    });
    p.on("error", reject);
    p.on("exit", (code, signal) => resolve({ lines, code, signal }));
  });
}

test.after(() => {
  delete process.env.PMSTACK_JOURNAL_TRACE;
  delete process.env.PMSTACK_JOURNAL_FAULT;
});

test("CRC-32C: hardware and table forms equal the host's crc32c", () => {
  const r = rng(7);
  for (const len of [0, 1, 3, 7, 8, 9, 63, 64, 65, 511, 4096, 10007]) {
    const d = Uint8Array.from({ length: len }, () => r.int(256));
    const want = hostCrc.crc32c(d);
    assert.is(pm.crc32c(d), want, `length ${len}`);
    assert.is(pm.crc32c(d, true), want, `length ${len}, table`);
    assert.is(pm.crc32c(d.subarray(1)), hostCrc.crc32c(d.subarray(1)), `length ${len}, unaligned`);
  }
  assert.is(pm.crc32c(new TextEncoder().encode("123456789")), 0xe3069283, "the check value");
});

for (const medium of MEDIA) {
  test(`${medium}: create, reopen, refuse (exists, missing, another pool, locked, bad header, bad size) unchanged`, () => {
    const file = fresh(medium);
    const jpath = file + ".journal";
    const s = setup(file);
    assert.is(fs.statSync(jpath).size, 4096 + MiB);
    assert.equal(
      fs.readdirSync(dirs[medium]).filter((x) => x.includes(".tmp.")),
      [],
    );
    throwsCode(() => pm.journalOpen(s.m.handle, jpath, { create: false, uuid: UUID }), "EBUSY", /has a journal/);
    throwsCode(() => pm.unmap(s.m.handle), "EBUSY", /journalClose first/);
    pm.journalSync(s.j, TABLE, 0, 0, 0); // something for the close's checkpoint to record
    s.close();
    const p = mapPool(file);
    const h = p.m.handle;
    const before = sha(jpath);
    throwsCode(() => pm.journalOpen(h, jpath, { create: true, bytes: MiB, uuid: UUID }), "EEXIST", /already exists/);
    throwsCode(() => pm.journalOpen(h, `${file}.none`, { create: false, uuid: UUID }), "ENOENT");
    throwsCode(() => pm.journalOpen(h, dirs[medium], { create: false, uuid: UUID }), "EISDIR");
    throwsCode(() => pm.journalOpen(h, `${file}.x`, { create: true, bytes: 4096, uuid: UUID }), "EINVAL", /bytes/);
    throwsCode(() => pm.journalOpen(h, jpath, { create: false, uuid: OTHER }), "EUUID", /belongs to another pool/);
    throwsCode(() => pm.journalOpen(h, jpath, { create: false, uuid: UUID.subarray(1) }), "EINVAL", /16 bytes/);
    throwsCode(() => pm.journalOpen(h, jpath, { uuid: UUID }), "ERR_INVALID_ARG_TYPE");
    throwsCode(() => pm.journalOpen(h, jpath, { create: false, uuid: UUID, onComplete: 1 }), "ERR_INVALID_ARG_TYPE");
    const holder = pm.open(jpath); // pm.open takes the same flock a journal does
    throwsCode(() => pm.journalOpen(h, jpath, { create: false, uuid: UUID }), "EWOULDBLOCK", /locked/);
    pm.close(holder.fd);
    assert.is(sha(jpath), before, "refused opens change nothing");

    // The close checkpointed: slot B (checkpoint 2) is the newer one, slot A (1) the older.
    const good = fs.readFileSync(jpath);
    assert.equal(
      parseJournal(jpath).slots.map((x) => [x.at, x.ckptGen]),
      [
        [0, 1],
        [512, 2],
      ],
    );
    const flip =
      (...at) =>
      (b) => (at.forEach((i) => (b[i] ^= 0x11)), b);
    for (const [what, damage, re] of [
      ["both checksums", flip(100, 612), /neither header slot is valid/],
      ["both magics", flip(0, 512), /neither header slot is valid/],
      ["a truncated file", (b) => b.subarray(0, b.length - 4096), /the file is .* bytes, its header says/],
      ["an extended file", (b) => Buffer.concat([b, Buffer.alloc(4096)]), /the file is .* bytes, its header says/],
    ]) {
      fs.writeFileSync(jpath, damage(Buffer.from(good)));
      const changed = sha(jpath);
      throwsCode(() => pm.journalOpen(h, jpath, { create: false, uuid: UUID }), "EBADJOURNAL", re);
      assert.is(sha(jpath), changed, `refused (${what}) without a change`);
    }
    // A checksummed slot with impossible contents: its saved tail slot outside the pool.
    const insane = Buffer.from(good);
    insane.writeBigUInt64LE(BigInt(POOL), 512 + 72);
    insane.writeUInt32LE(hostCrc.crc32c(insane.subarray(512, 512 + 508)), 512 + 508);
    fs.writeFileSync(jpath, insane);
    throwsCode(() => pm.journalOpen(h, jpath, { create: false, uuid: UUID }), "EBADJOURNAL", /outside the pool/);
    // A torn write of the newer slot: the older one is used.
    const torn = Buffer.from(good);
    torn[600] ^= 1;
    fs.writeFileSync(jpath, torn);
    const old = pm.journalOpen(h, jpath, { create: false, uuid: UUID });
    assert.equal(pick(pm.journalReplay(old), "startSeq", "entries", "nextSeq"), [1, 1, 2], "entry 1 again");
    pm.journalClose(old, false);
    fs.writeFileSync(jpath, good);
    const j = pm.journalOpen(h, jpath, { create: false, uuid: UUID });
    throwsCode(() => pm.journalSubmit(j, TABLE, 0, 0, 0), "EINVAL", /journalReplay first/);
    assert.equal(pick(pm.journalReplay(j), "startSeq", "entries", "nextSeq"), [2, 0, 2]);
    throwsCode(() => pm.journalReplay(j), "EINVAL", /once/);
    pm.journalClose(j, false);
    pm.journalClose(j, false); // idempotent
    throwsCode(() => pm.journalDone(j), "EBADF", /closed/);
    throwsCode(() => pm.journalDone({}), "ERR_INVALID_ARG_TYPE");
    p.close();
  });

  test(`${medium}: submit, done, wait, onComplete with the latest done, sync; persist routes to the journal`, async () => {
    const file = fresh(medium);
    const calls = [];
    const p = mapPool(file);
    throwsCode(() => pm.persist(p.m.handle, OFF, 8), "EINVAL", /journal mode needs a journal \(journalOpen\)/);
    throwsCode(() => pm.persistBatch(p.m.handle, new Uint32Array([OFF, 8]), 1), "EINVAL", /needs a journal/);
    const j = pm.journalOpen(p.m.handle, file + ".journal", {
      create: true,
      bytes: MiB,
      uuid: UUID,
      onComplete: (done, err) => calls.push([done, err]),
    });
    const seqs = [];
    for (let k = 0; k < 50; k++) {
      p.put(8192 + 64 * k, pattern(64, k));
      seqs.push(pm.journalSubmit(j, p.table([[8192 + 64 * k, 64]]), 1, 1, 0));
    }
    assert.equal(
      seqs,
      Array.from({ length: 50 }, (_, k) => k + 1),
      "seqs count from 1",
    );
    pm.journalWait(j, 50);
    assert.is(pm.journalDone(j), 50);
    assert.is(pm.journalSubmit(j, TABLE, 0, 0, 0), 51, "an entry of no pairs");
    assert.is(pm.journalSync(j, TABLE, 0, 0, 0), 52, "sync returns once durable");
    assert.is(pm.journalDone(j), 52);
    throwsCode(() => pm.journalWait(j, 53), "EINVAL", /not submitted/);
    throwsCode(() => pm.journalSubmit(j, p.table([[POOL - 4, 8]]), 1, 1, 0), "EINVAL", /outside the mapping/);
    throwsCode(() => pm.journalSubmit(j, TABLE, 2, 3, 0), "EINVAL", /payloadCount/);
    throwsCode(() => pm.journalSubmit(j, p.table([[0, 8]]), 1, 0, 5), "EINVAL", /tail slot/);
    throwsCode(() => pm.journalSubmit(j, p.table([[0, MiB]]), 1, 0, 0), "E2BIG", /half the ring/);
    pm.persist(p.m.handle, OFF + 100, 10);
    assert.is(pm.persistBatch(p.m.handle, new Uint32Array([OFF, 10, OFF + 50, 5]), 2), 0);
    assert.is(pm.journalDone(j), 54, "persist and persistBatch were synchronous entries");
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(calls.length >= 1 && calls.length <= 54, `${calls.length} coalesced calls`);
    assert.equal(calls.at(-1), [54, undefined], "the last call has the latest done");
    assert.ok(
      calls.every(([d], i) => i === 0 || d >= calls[i - 1][0]),
      "done never goes back",
    );
    const st = pm.journalStats(j);
    assert.is(st.entries, 54);
    assert.is(st.payloadBytes, 50 * 64 + 10 + 15);
    assert.is(st.queued, 0);
    assert.ok(st.fdatasyncs >= 1 && st.fdatasyncs <= st.batches, "one fdatasync per batch");
    pm.journalClose(j, true);
    p.close();
  });

  test(`${medium}: a durable entry reaches the pool file at a checkpoint, an unpersisted store never`, () => {
    const file = fresh(medium);
    const s = setup(file);
    s.put(20000, pattern(300, 1));
    s.put(90000, pattern(10, 2)); // stored, never persisted
    pm.journalSync(s.j, s.table([[20000, 300]]), 1, 1, 0);
    const inFile = (off, len) => new Uint8Array(fs.readFileSync(file).subarray(off, off + len));
    assert.equal(inFile(20000, 300), new Uint8Array(300), "durable in the journal only");
    pm.journalCheckpoint(s.j, true);
    assert.equal(inFile(20000, 300), pattern(300, 1), "in the pool file after the checkpoint");
    const st = pm.journalStats(s.j);
    assert.is(st.checkpoints, 1);
    assert.is(st.usage, 0);
    assert.is(st.checkpointBytes, 4096);
    s.close();
    assert.equal(inFile(90000, 10), new Uint8Array(10), "MAP_PRIVATE: the store was never persisted");
  });

  test(`${medium}: metadata is copied at submit; replay applies the old bytes`, () => {
    const file = fresh(medium);
    const s = setup(file, { checkpointAt: MiB });
    s.put(4096, pattern(200, 3)); // payload
    s.put(8000, pattern(64, 4)); // the tail slot
    const seq = pm.journalSubmit(
      s.j,
      s.table([
        [4096, 200],
        [8000, 64],
      ]),
      2,
      1,
      9,
    );
    s.put(8000, new Uint8Array(64).fill(0xee)); // the next commit reuses the slot's memory at once
    pm.journalWait(s.j, seq);
    s.close(false); // no checkpoint: the entry stays in the ring
    const r = setup(file);
    assert.equal(r.replay, {
      entries: 1,
      bytes: 512,
      startSeq: 1,
      nextSeq: 2,
      lastGen: 9,
      discardedBytes: 0,
      damage: "",
    });
    assert.equal(r.at(8000, 64), pattern(64, 4), "the bytes of submit time");
    assert.equal(r.at(4096, 200), pattern(200, 3));
    r.close();
  });

  test(`${medium}: a corrupted byte ends replay there ("crc"); the entries after it are discarded`, () => {
    const file = fresh(medium);
    const s = setup(file, { checkpointAt: MiB });
    for (let k = 1; k <= 20; k++) {
      s.put(4096 * k, pattern(1000, k));
      pm.journalSubmit(s.j, s.table([[4096 * k, 1000]]), 1, 1, 0);
    }
    s.close(false);
    const jr = parseJournal(file + ".journal");
    assert.is(jr.entries.length, 20);
    for (const e of jr.entries) assert.is(hostCrc.crc32c(jr.bytes.subarray(e.at + 8, e.at + e.len)), e.crc);
    const tenth = jr.entries[9];
    const b = Buffer.from(jr.bytes);
    b[tenth.at + 48 + 16 + 500] ^= 0x40; // a payload byte of entry 10
    fs.writeFileSync(file + ".journal", b);
    const r = setup(file);
    assert.is(r.replay.entries, 9);
    assert.is(r.replay.damage, "crc");
    assert.is(r.replay.nextSeq, 10);
    assert.is(r.replay.discardedBytes, 11 * 1536, "entries 10..20, 1536 ring bytes each");
    for (let k = 1; k <= 20; k++)
      assert.equal(r.at(4096 * k, 1000), k < 10 ? pattern(1000, k) : new Uint8Array(1000), `entry ${k}`);
    // The next run writes a lap beyond: the stale entries can never be taken for new ones.
    pm.journalCheckpoint(r.j, true);
    r.put(4096, pattern(16, 99));
    assert.is(pm.journalSync(r.j, r.table([[4096, 16]]), 1, 1, 0), 10);
    r.close(false);
    const again = setup(file);
    assert.equal(again.replay, {
      entries: 1,
      bytes: 512,
      startSeq: 10,
      nextSeq: 11,
      lastGen: 0,
      discardedBytes: 0,
      damage: "",
    });
    assert.equal(again.at(4096, 16), pattern(16, 99));
    assert.equal(again.at(4096 * 2, 1000), pattern(1000, 2), "checkpointed before");
    again.close();
  });

  test(`${medium}: replay's damage reasons: a header that claims the expected place but fails a check`, () => {
    const file = fresh(medium);
    const s = setup(file, { checkpointAt: MiB });
    for (let k = 1; k <= 6; k++) {
      s.put(4096 * k, pattern(100, k));
      pm.journalSubmit(s.j, s.table([[4096 * k, 100]]), 1, 1, 0);
    }
    s.close(false);
    const jpath = file + ".journal";
    const good = fs.readFileSync(jpath);
    const { entries, cap } = parseJournal(jpath);
    const fourth = entries[3].at;
    const reseal = (b) => b.writeUInt32LE(hostCrc.crc32c(b.subarray(fourth + 8, fourth + entries[3].len)), fourth + 4);
    for (const [damage, edit] of [
      ["magic", (b) => b.write("PMJX", fourth, "latin1")],
      ["sequence", (b) => b.writeBigUInt64LE(99n, fourth + 16)],
      ["length", (b) => b.writeUInt32LE(40, fourth + 24)],
      ["range", (b) => (b.writeBigUInt64LE(BigInt(POOL - 50), fourth + 48), reseal(b))],
      ["position", (b) => (b.writeBigUInt64LE(BigInt(entries[3].pos + cap), fourth + 8), reseal(b))],
      ["", (b) => b.fill(0, fourth, fourth + 512)], // never written: the normal end
    ]) {
      const b = Buffer.from(good);
      edit(b);
      fs.writeFileSync(jpath, b);
      const r = setup(file);
      assert.equal(pick(r.replay, "entries", "damage", "nextSeq"), [3, damage, 4], `damage "${damage}"`);
      assert.equal(r.at(4096 * 3, 100), pattern(100, 3));
      assert.equal(r.at(4096 * 4, 100), new Uint8Array(100), `entry 4 not applied (${damage})`);
      r.close(false); // no checkpoint: the next round starts from the same file
    }
  });

  test(`${medium}: the ring wraps many times with checkpoints and waits for space; replay ends right`, () => {
    const file = fresh(medium);
    // checkpointAt = capacity: only a full ring triggers a checkpoint (a wait for space);
    // inlineMax above the 4.9 MB submitted: every payload goes through the ring
    const s = setup(file, { checkpointAt: MiB, inlineMax: 64 * MiB });
    const last = new Map();
    for (let k = 1; k <= 300; k++) {
      const slot = k % 8;
      s.put(65536 + slot * 20000, pattern(16384 + k, k));
      pm.journalSubmit(s.j, s.table([[65536 + slot * 20000, 16384 + k]]), 1, 1, 0);
      last.set(slot, k);
    }
    pm.journalWait(s.j, 300);
    const st = pm.journalStats(s.j);
    assert.ok(st.tail > 4 * MiB, `wrapped: tail ${st.tail}`);
    // A full ring is a wait for space, or (when an entry ends exactly at the ring's end) the
    // usage trigger: the two together free the ring once per lap.
    assert.ok(st.waitsForSpace >= 1, `${st.waitsForSpace} waits for space`);
    assert.ok(st.checkpoints >= 4, `${st.checkpoints} checkpoints`);
    assert.ok(st.usage <= MiB);
    s.close(false);
    const jr = parseJournal(file + ".journal");
    assert.ok(jr.entries.length > 0 && jr.entries.length < 64, "the ring holds the entries after the mark");
    const r = setup(file);
    assert.is(r.replay.damage, "");
    assert.is(r.replay.nextSeq, 301);
    assert.is(r.replay.entries, jr.entries.length);
    for (const [slot, k] of last) assert.equal(r.at(65536 + slot * 20000, 16384 + k), pattern(16384 + k, k));
    r.close();
  });

  test(`${medium}: payload in place (over inlineMax) replays right, after inline entries for the same bytes`, () => {
    const file = fresh(medium);
    const s = setup(file, { inlineMax: 1000, checkpointAt: MiB });
    s.put(40960, pattern(100, 1));
    pm.journalSync(s.j, s.table([[40960, 100]]), 1, 1, 0); // inline
    s.put(40960, pattern(8192, 2));
    s.put(300, pattern(40, 3)); // metadata beside it stays in the entry
    pm.journalSync(
      s.j,
      s.table([
        [40960, 8192],
        [300, 40],
      ]),
      2,
      1,
      0,
    ); // payload in place
    for (let k = 0; k < 6; k++) s.put(200000 + 5000 * k, pattern(3000, 10 + k));
    const pairs = Array.from({ length: 6 }, (_, k) => [200000 + 5000 * k, 3000]);
    pm.journalSync(s.j, s.table(pairs), 6, 6, 0); // 18000 bytes: in place
    const st = pm.journalStats(s.j);
    assert.is(st.payloadBytes, 100);
    assert.is(st.inPlaceBytes, 8192 + 18000);
    assert.is(st.poolFdatasyncs, 2);
    const jr = parseJournal(file + ".journal");
    assert.equal(
      jr.entries.map((e) => e.len),
      [48 + 16 + 100, 48 + 32 + 40, 48 + 6 * 16],
    );
    s.close(false);
    const r = setup(file);
    assert.is(r.replay.entries, 3);
    assert.equal(r.at(40960, 8192), pattern(8192, 2), "the in-place bytes win over the older inline entry");
    assert.equal(r.at(300, 40), pattern(40, 3));
    for (let k = 0; k < 6; k++) assert.equal(r.at(200000 + 5000 * k, 3000), pattern(3000, 10 + k));
    r.close();
  });

  test(`${medium}: the trace records every write before it and every fdatasync after it`, () => {
    const file = fresh(medium);
    const tracePath = file + ".trace";
    process.env.PMSTACK_JOURNAL_TRACE = tracePath;
    const s = setup(file);
    delete process.env.PMSTACK_JOURNAL_TRACE;
    s.put(12288, pattern(777, 5));
    pm.journalSync(s.j, s.table([[12288, 777]]), 1, 1, 0);
    pm.journalCheckpoint(s.j, true);
    s.close(false);
    const t = fs.readFileSync(tracePath);
    const recs = [];
    for (let at = 0; at < t.length;) {
      const len = Number(t.readBigUInt64LE(at + 16));
      recs.push({ op: t[at], file: t[at + 1], off: Number(t.readBigUInt64LE(at + 8)), len, at: at + 24 });
      at += 24 + (t[at] === 1 ? len : 0);
    }
    assert.equal(
      recs.map((r) => `${r.op}:${r.file}`),
      ["1:1", "2:1", "1:0", "2:0", "1:1", "2:1"],
      "entry, sync, pool page, sync, header slot B, sync",
    );
    const [entry, , page, , header] = recs;
    assert.is(entry.off, 4096);
    assert.is(entry.len, 1024, "one entry padded to its 512-byte boundary");
    const j = fs.readFileSync(file + ".journal");
    assert.ok(t.subarray(entry.at, entry.at + entry.len).equals(j.subarray(4096, 4096 + 1024)));
    assert.equal([page.off, page.len], [12288, 4096]);
    assert.equal(new Uint8Array(t.subarray(page.at, page.at + 777)), pattern(777, 5));
    assert.equal([header.off, header.len], [512, 512]);
  });

  test(`${medium}: I/O failures: every later call throws, onComplete hears once, close releases`, async () => {
    // The 2nd file operation (the first fdatasync) fails with EIO.
    const file = fresh(medium);
    process.env.PMSTACK_JOURNAL_FAULT = "2";
    const calls = [];
    const s = setup(file, { onComplete: (d, e) => calls.push([d, e?.code]) });
    delete process.env.PMSTACK_JOURNAL_FAULT;
    const failed = /the journal .* failed: fdatasync of the journal: .* \(EIO\): writes are no longer durable/;
    throwsCode(() => pm.journalSync(s.j, TABLE, 0, 0, 0), "EIO", failed);
    throwsCode(() => pm.journalDone(s.j), "EIO", failed);
    throwsCode(() => pm.journalSubmit(s.j, TABLE, 0, 0, 0), "EIO", failed);
    throwsCode(() => pm.journalWait(s.j, 1), "EIO", failed);
    throwsCode(() => pm.journalCheckpoint(s.j, true), "EIO", failed);
    throwsCode(() => pm.persist(s.m.handle, OFF, 1), "EIO", failed);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(calls, [[0, "EIO"]]);
    throwsCode(() => pm.journalClose(s.j, true), "EIO", failed);
    pm.journalClose(s.j, true); // closed now: no second throw
    s.close(false);

    // The 3rd (the checkpoint's pool pwrite) fails: the checkpointer's path.
    const file2 = fresh(medium);
    process.env.PMSTACK_JOURNAL_FAULT = "3";
    const t = setup(file2);
    delete process.env.PMSTACK_JOURNAL_FAULT;
    t.put(4096, pattern(10, 1));
    pm.journalSync(t.j, t.table([[4096, 10]]), 1, 1, 0);
    throwsCode(() => pm.journalCheckpoint(t.j, true), "EIO", /failed: writing the pool file/);
    throwsCode(() => pm.journalClose(t.j, true), "EIO");
    t.close(false);
    const r = setup(file2); // the entry is still in the journal
    assert.is(r.replay.entries, 1);
    assert.equal(r.at(4096, 10), pattern(10, 1));
    r.close();

    // The 1st (payload written in place, before its entry) fails: nothing names it.
    const file4 = fresh(medium);
    process.env.PMSTACK_JOURNAL_FAULT = "1";
    const v = setup(file4, { inlineMax: 0 });
    delete process.env.PMSTACK_JOURNAL_FAULT;
    throwsCode(() => pm.journalSync(v.j, v.table([[4096, 10]]), 1, 1, 0), "EIO", /writing payload in place/);
    throwsCode(() => pm.journalClose(v.j, false), "EIO");
    v.close(false);
    assert.is(parseJournal(file4 + ".journal").entries.length, 0);

    const file3 = fresh(medium);
    const u = mapPool(file3);
    process.env.PMSTACK_JOURNAL_FAULT = "x";
    throwsCode(
      () => pm.journalOpen(u.m.handle, file3 + ".journal", { create: true, bytes: MiB, uuid: UUID }),
      "EINVAL",
      /PMSTACK_JOURNAL_FAULT/,
    );
    delete process.env.PMSTACK_JOURNAL_FAULT;
    assert.not.ok(fs.existsSync(file3 + ".journal"));
    u.close();
  });

  test(`${medium}: SIGKILL: every entry reported durable is there after replay`, async () => {
    const file = fresh(medium);
    pm.close(pm.create(file, POOL, new Uint8Array(0)).fd);
    const { lines, signal } = await child(
      `const f = pm.open(argv[0]);
       const mem = new WebAssembly.Memory({ initial: ${(OFF + POOL) / 65536} });
       const m = pm.map(mem, new Uint8Array(mem.buffer), ${OFF}, f.fd, f.size, "journal");
       // small checkpointAt: checkpoints run before the kill, so replay starts past a mark
       const j = pm.journalOpen(m.handle, argv[0] + ".journal", { create: true, bytes: ${MiB}, checkpointAt: 65536, uuid: new Uint8Array(${JSON.stringify([...UUID])}) });
       const u8 = new Uint8Array(mem.buffer), dv = new DataView(mem.buffer);
       // "C" once a checkpoint is durable: the kill waits for it (on a loaded machine the
       // checkpointer thread may not have run yet when enough entries are durable)
       let c = false;
       const cp = () => { if (!c && pm.journalStats(j).checkpoints > 0) { c = true; console.log("C"); } };
       for (let k = 1; k <= 700; k++) {
         for (let i = 0; i < 100; i++) u8[${OFF} + 4096 * k + i] = (i * 31 + k * 7 + 1) & 255;
         for (let i = 0; i < 16; i++) u8[${OFF} + 3 * ${MiB} + 16 * k + i] = (k + i) & 255;
         dv.setUint32(${TABLE}, ${OFF} + 4096 * k, true); dv.setUint32(${TABLE} + 4, 100, true);
         dv.setUint32(${TABLE} + 8, ${OFF} + 3 * ${MiB} + 16 * k, true); dv.setUint32(${TABLE} + 12, 16, true);
         pm.journalSubmit(j, ${TABLE}, 2, 1, 0);
         if (k % 20 === 0) { // keep a few batches in flight; report what is durable
           pm.journalWait(j, k - 15);
           console.log("D " + pm.journalDone(j));
           cp();
         }
       }
       setInterval(cp, 5);`,
      [file],
      { until: (ls) => ls.filter((l) => l.startsWith("D ")).length >= 15 && ls.includes("C") },
    );
    assert.is(signal, "SIGKILL");
    const durable = Math.max(...lines.filter((l) => l.startsWith("D ")).map((l) => Number(l.split(" ")[1])));
    assert.ok(durable >= 200, `the child reported ${durable} durable entries`);
    const r = setup(file);
    assert.is(r.replay.damage, "");
    assert.ok(r.replay.startSeq > 1, `replay starts at a checkpoint mark (seq ${r.replay.startSeq})`);
    assert.ok(r.replay.nextSeq > durable, `replay reaches past ${durable}: ${r.replay.nextSeq}`);
    for (let k = 1; k <= durable; k++) {
      assert.equal(r.at(4096 * k, 100), pattern(100, k), `payload of entry ${k}`);
      const meta = r.at(3 * MiB + 16 * k, 16);
      assert.ok(
        meta.every((b, i) => b === ((k + i) & 255)),
        `metadata of entry ${k}`,
      );
    }
    r.close();
  });

  test(`${medium}: a process that exits without closing makes its queued entries durable first`, async () => {
    const file = fresh(medium);
    pm.close(pm.create(file, POOL, new Uint8Array(0)).fd);
    const { code, lines } = await child(
      `const f = pm.open(argv[0]);
       const mem = new WebAssembly.Memory({ initial: ${(OFF + POOL) / 65536} });
       const m = pm.map(mem, new Uint8Array(mem.buffer), ${OFF}, f.fd, f.size, "journal");
       const j = pm.journalOpen(m.handle, argv[0] + ".journal", { create: true, bytes: ${MiB}, uuid: new Uint8Array(${JSON.stringify([...UUID])}), onComplete() {} });
       const u8 = new Uint8Array(mem.buffer), dv = new DataView(mem.buffer);
       for (let k = 1; k <= 200; k++) {
         u8.fill(k, ${OFF} + 4096 * k, ${OFF} + 4096 * k + 64);
         dv.setUint32(${TABLE}, ${OFF} + 4096 * k, true); dv.setUint32(${TABLE} + 4, 64, true);
         pm.journalSubmit(j, ${TABLE}, 1, 1, 0);
       }
       console.log("submitted");`,
      [file],
    );
    assert.equal([code, lines], [0, ["submitted"]], "the open journal does not keep the process alive");
    const r = setup(file);
    assert.is(r.replay.nextSeq, 201);
    for (let k = 1; k <= 200; k++)
      assert.ok(
        r.at(4096 * k, 64).every((b) => b === k),
        `entry ${k}`,
      );
    r.close();
  });
}

test("a worker terminated with its journal busy: the cleanup hook drains it and stops the threads", async () => {
  const file = fresh("disk");
  pm.close(pm.create(file, POOL, new Uint8Array(0)).fd);
  const w = new Worker(
    `const { parentPort, workerData: file } = require("node:worker_threads");
     const pm = require(${JSON.stringify(addonPath)});
     const f = pm.open(file);
     const mem = new WebAssembly.Memory({ initial: ${(OFF + POOL) / 65536} });
     const m = pm.map(mem, new Uint8Array(mem.buffer), ${OFF}, f.fd, f.size, "journal");
     pm.close(f.fd);
     const j = pm.journalOpen(m.handle, file + ".journal", { create: true, bytes: ${MiB}, uuid: new Uint8Array(16), onComplete() {} });
     const dv = new DataView(mem.buffer);
     dv.setUint32(${TABLE}, ${OFF} + 8192, true); dv.setUint32(${TABLE} + 4, 3000, true);
     for (let k = 0; k < 2000; k++) pm.journalSubmit(j, ${TABLE}, 1, 1, 0);
     parentPort.postMessage(pm.journalDone(j));
     setInterval(() => {}, 1000);`,
    { eval: true, workerData: file },
  );
  const doneThen = await new Promise((r) => w.once("message", r));
  assert.is(await w.terminate(), 1);
  // The journal's fd is closed (its lock is free) and every submitted entry is in it.
  pm.close(pm.open(file + ".journal").fd);
  const jr = parseJournal(file + ".journal");
  const last = jr.entries.length ? jr.entries.at(-1).seq : jr.head.startSeq - 1;
  assert.is(last, 2000, `all 2000 entries (${doneThen} were durable when terminate was called)`);
});

// ---------- the Pool in journal mode ----------

for (const medium of MEDIA) {
  const mode = medium === "tmpfs" ? "journal" : undefined; // on the disk "auto" is the journal
  const opts = { buffers: 64, journalBytes: MiB, ...(mode && { mode }) };

  test(`${medium}: Pool in journal mode: create, persist, close, reopen`, () => {
    const path = fresh(medium);
    const p = Pool.create(path, opts);
    assert.is(p.persistMode, "journal");
    assert.match(
      p.describe(),
      `journal on ${medium === "tmpfs" ? "tmpfs" : "ext4"} (write-ahead journal ${path}.journal`,
    );
    assert.is(p.journal.path, path + ".journal");
    assert.is(p.journal.capacity, MiB);
    assert.is(p.superblock.flags & 1, 1, "FLAG_JOURNAL");
    const raw = () => fs.readFileSync(path);
    assert.is(raw()[80] & 1, 1, "the flag is in the file before the journal is used");
    const i = p.alloc();
    p.view(i).fill(0xab);
    p.keep(i);
    p.persist(i);
    const at = p.superblock.bufOffset + i * 2048;
    assert.is(raw()[at], 0, "in the journal, not yet in the pool file");
    p.metaView().set([9, 8, 7], 100);
    p.persistMeta(100, 3);
    assert.ok(p.journalStats().entries >= 3);
    p.close();
    assert.is(raw()[at + 2047], 0xab, "close checkpoints");
    assert.equal([...raw().subarray(p.superblock.metaOffset + 100, p.superblock.metaOffset + 103)], [9, 8, 7]);
    const q = Pool.open(path, mode ? { mode } : {});
    assert.is(q.persistMode, "journal");
    assert.is(q.journal.replay.entries, 0, "the close checkpoint left nothing to replay");
    q.claim(i);
    assert.ok(q.view(i).every((b) => b === 0xab));
    q.close();
  });

  test(`${medium}: Pool submit in journal mode: async, durableSeq, waitDurable, onDurable`, async () => {
    const p = Pool.create(fresh(medium), opts);
    const seen = [];
    p.onDurable = (seq, err) => seen.push([seq, err]);
    const t = p.memOffset + p.superblock.metaOffset; // a table in the metadata region
    const dv = new DataView(p.core.memory.buffer);
    const i = p.alloc();
    dv.setUint32(t, p.address(i), true);
    dv.setUint32(t + 4, 2048, true);
    const s1 = p.submit(t, 1, 1, 0);
    const s2 = p.submitSync(t, 1, 1, 0);
    assert.is(s2, s1 + 1);
    assert.ok(p.durableSeq >= s2);
    p.waitDurable(s1);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(seen.at(-1), [s2, undefined]);
    p.close();
  });
}

test("Pool submit in msync mode: synchronous, two ordered steps, one msync for the first", () => {
  const p = Pool.create(fresh("disk"), { buffers: 64, mode: "msync" });
  assert.is(p.journal, null);
  assert.is(p.journalStats(), null);
  const t = p.memOffset + p.superblock.metaOffset;
  const dv = new DataView(p.core.memory.buffer);
  const pairs = [
    [p.address(0), 100],
    [p.address(9), 100],
    [t + 4096, 64],
  ];
  pairs.forEach(([a, l], k) => (dv.setUint32(t + 8 * k, a, true), dv.setUint32(t + 8 * k + 4, l, true)));
  const before = p.stats.msyncCalls;
  assert.is(p.submit(t, 3, 2, 7), 1);
  assert.is(p.stats.msyncCalls - before, 2, "the covering range, then the tail slot");
  assert.is(p.durableSeq, 1);
  assert.is(p.submitSync(t, 3, 2, 0), 2);
  p.waitDurable(2);
  assert.throws(() => p.waitDurable(3), RangeError);
  p.close();
});

test("Pool: a journal-mode pool killed mid-stream, reopened in msync mode: replayed first", async () => {
  const path = fresh("disk");
  const { lines, signal } = await child(
    `import(indexPath).then(({ Pool }) => {
       const pool = Pool.create(argv[0], { buffers: 256, journalBytes: ${MiB} });
       console.log("MODE " + pool.persistMode);
       for (let k = 0; k < 250; k++) {
         const i = pool.alloc();
         pool.view(i, 0, 64).fill(k & 255);
         pool.keep(i);
         pool.persist(i, 0, 64);
         console.log("P " + i + " " + k);
       }
       setInterval(() => {}, 1000);
     });`,
    [path],
    { until: (ls) => ls.length >= 120 },
  );
  assert.is(signal, "SIGKILL");
  assert.is(lines[0], "MODE journal");
  const persisted = lines.filter((l) => l.startsWith("P ")).map((l) => l.split(" ").slice(1).map(Number));
  const p = Pool.open(path, { mode: "msync" });
  assert.is(p.persistMode, "msync");
  assert.ok(p.journal.replay.entries > 0, `${p.journal.replay.entries} entries replayed`);
  for (const [i, k] of persisted) {
    p.claim(i);
    assert.ok(
      p.view(i, 0, 64).every((b) => b === (k & 255)),
      `buffer ${i} (entry ${k})`,
    );
  }
  p.close();
  // The replay's checkpoint put everything in the file: a plain read sees it.
  const raw = fs.readFileSync(path);
  const [i, k] = persisted.at(-1);
  assert.is(raw[p.superblock.bufOffset + i * 2048], k & 255);
});

test("Pool: EJOURNAL when the journal of a journal-mode pool is gone; msync opens it as it is", () => {
  const path = fresh("disk");
  Pool.create(path, { buffers: 64, journalBytes: MiB }).close();
  fs.rmSync(path + ".journal");
  const e = throwsCode(() => Pool.open(path), "EJOURNAL", /journal .*\.journal is missing: .*mode: 'msync'/);
  assert.is(e.path, path);
  throwsCode(() => Pool.open(path, { mode: "journal" }), "EJOURNAL");
  const q = Pool.open(path, { mode: "msync" });
  assert.is(q.superblock.flags & 1, 0, "the file alone is the pool now");
  q.close();
  const r = Pool.open(path, { journalBytes: MiB });
  assert.is(r.persistMode, "journal", "a new journal");
  r.close();
  // A journal left next to a new pool's path would be refused at every open: create refuses.
  const other = fresh("disk");
  fs.copyFileSync(path + ".journal", other + ".journal");
  throwsCode(() => Pool.create(other, { buffers: 64 }), "EJOURNAL", /journal .* is there without its pool/);
  assert.not.ok(fs.existsSync(other));
});

test.run();

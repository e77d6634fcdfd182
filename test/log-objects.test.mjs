// Objects of any size in the log: ObjectWriter (direct items up to a record's room, an extent
// tree beyond), ObjectCursor (ranges from any offset), sharing by APPEND (pushObject), every
// buffer accounted for (written, superseded, aborted, recovered), damaged trees dropped at
// recovery, the pipelined group commit (flush, durableSeq, onDurable) in journal mode, and a
// version 1 log header read as it is and upgraded.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { PmLog, ObjectCursor, ObjectWriter, objectLength } from "../build/index.js";
import { crc32c } from "./lib/log-file.mjs";
import { rng } from "./lib/rng.mjs";
import { MEDIA, scratchDir } from "./lib/tmp.mjs";

const dir = scratchDir("tmpfs");
let n = 0;
const fresh = (opts = {}) =>
  PmLog.openFile(join(dir, `obj-${n++}.pm`), { buffers: 8192, mode: "strict", metaBytes: 1 << 20, ...opts });

/** Writes `bytes` into fresh buffers in pieces of random size at random offsets, pushing each. */
function writeObject(log, w, bytes, r) {
  const pool = log.pool;
  for (let at = 0; at < bytes.length;) {
    const len = Math.min(bytes.length - at, 1 + r.int(2048));
    const off = r.int(2048 - len + 1);
    const i = pool.alloc();
    pool.view(i, off, len).set(bytes.subarray(at, at + len));
    w.push({ index: i, offset: off, length: len });
    pool.free(i); // the writer holds its own reference
    at += len;
  }
}

function readAll(pool, obj, start = 0, end = Infinity) {
  const parts = [];
  const cur = new ObjectCursor(pool, obj, start, end);
  for (let r = cur.next(); r; r = cur.next()) parts.push(pool.viewName(r).slice());
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const random = (r, len) => Uint8Array.from({ length: len }, () => r.int(256));

test("small objects stay direct; large ones become trees; both read back whole and by range", () => {
  const log = fresh();
  const pool = log.pool;
  const r = rng(1);
  const sizes = [1, 1000, 40_000, 64 * 2048, 600_000, 3_000_000];
  const data = new Map();
  for (const size of sizes) {
    const w = log.writer();
    const bytes = random(r, size);
    writeObject(log, w, bytes, r);
    assert.is(w.length, size);
    log.put(`o${size}`, w);
    data.set(`o${size}`, bytes);
  }
  log.commit();
  for (const [key, bytes] of data) {
    const obj = log.object(key);
    assert.is(obj.length, bytes.length, key);
    assert.ok(obj.names.length <= 64);
    const tree = obj.names.some((x) => x.height);
    if (bytes.length > 200_000) assert.ok(tree, `${key} is a tree`);
    if (bytes.length < 2000) assert.ok(!tree, `${key} is direct`);
    assert.equal(readAll(pool, obj), bytes, key);
    assert.is(objectLength(pool, obj), bytes.length);
    for (let k = 0; k < 20; k++) {
      const s = r.int(bytes.length + 1);
      const e = s + r.int(bytes.length - s + 1);
      assert.equal(readAll(pool, obj, s, e), bytes.subarray(s, e), `${key} [${s}, ${e})`);
    }
  }
  assert.equal(log.get("o40000").length > 1, true);
  pool.check();
  pool.close();
});

test("every buffer is accounted for: overwrite, delete and abort free whole trees; reopen claims exactly the live ones", () => {
  const path = join(dir, "accounting.pm");
  const log = PmLog.openFile(path, { buffers: 8192, mode: "strict" });
  const pool = log.pool;
  const r = rng(2);
  const baseline = pool.counts().free;
  const big = random(r, 2_000_000);
  let w = log.writer();
  writeObject(log, w, big, r);
  log.put("big", w);
  log.commit();
  const keptOne = pool.counts().kept;
  assert.ok(keptOne > 1000, `a 2 MB object keeps its buffers and nodes (${keptOne})`);
  // an aborted object leaves nothing
  w = log.writer();
  writeObject(log, w, random(r, 1_000_000), r);
  w.abort();
  assert.is(pool.counts().kept, keptOne);
  // overwrite: the old tree is freed once the new record is durable
  w = log.writer();
  const small = random(r, 5000);
  writeObject(log, w, small, r);
  log.put("big", w);
  assert.is(pool.counts().kept >= keptOne, true, "the old tree stays until the overwrite is durable");
  log.commit();
  const afterOverwrite = pool.counts().kept;
  assert.ok(afterOverwrite < 20, `the old tree went back (${afterOverwrite} kept)`);
  // a big one again, then reopen: recovery claims exactly what the live records reach
  w = log.writer();
  writeObject(log, w, big, r);
  log.put("big2", w);
  log.commit();
  const kept = pool.counts().kept;
  pool.close();
  const again = PmLog.openFile(path, { buffers: 8192, mode: "strict" });
  assert.is(again.pool.counts().kept, kept);
  assert.is(again.recovery.claimedBuffers, kept);
  assert.is(again.recovery.damagedKeys, 0);
  assert.equal(readAll(again.pool, again.object("big2")), big);
  assert.equal(readAll(again.pool, again.object("big")), small);
  again.delete("big");
  again.delete("big2");
  again.commit();
  assert.is(again.pool.counts().free, baseline);
  again.pool.check();
  again.pool.close();
});

test("pushObject shares an old object's nodes: APPEND without copying, both intact, the old one freed alone", () => {
  const log = fresh();
  const pool = log.pool;
  const r = rng(3);
  let value = random(r, 1_500_000);
  let w = log.writer(63);
  writeObject(log, w, value, r);
  log.put("v", w);
  log.commit();
  for (let k = 0; k < 40; k++) {
    const more = random(r, k % 3 === 0 ? 300_000 : 1 + r.int(3000));
    const old = log.object("v");
    w = log.writer(63);
    const nodesBefore = pool.counts().kept;
    w.pushObject(old);
    if (old.names.some((x) => x.height))
      assert.ok(pool.counts().kept - nodesBefore <= 2, "sharing makes at most a node or two");
    writeObject(log, w, more, r);
    log.put("v", w);
    log.commit();
    const next = new Uint8Array(value.length + more.length);
    next.set(value);
    next.set(more, value.length);
    value = next;
    assert.equal(readAll(pool, log.object("v")), value, `append ${k}`);
  }
  log.delete("v");
  log.commit();
  assert.is(pool.counts().kept, 0, "no buffer outlives the value");
  pool.check();
  pool.close();
});

test("a damaged extent node loses its key at recovery, reported; the other keys and the pool are whole", () => {
  const path = join(dir, "damaged.pm");
  const log = PmLog.openFile(path, { buffers: 4096, mode: "strict" });
  const r = rng(4);
  const a = random(r, 900_000);
  let w = log.writer();
  writeObject(log, w, a, r);
  log.put("a", w);
  w = log.writer();
  const b = random(r, 600_000);
  writeObject(log, w, b, r);
  log.put("b", w);
  log.commit();
  const root = log.object("a").names.find((x) => x.height);
  const { pool } = log;
  // flip the node's magic in the pool file (strict mode: write it through persist)
  const v = pool.view(root.index, 0, 4);
  v[0] ^= 0xff;
  pool.persist(root.index, 0, 4);
  pool.close();
  const again = PmLog.openFile(path, { buffers: 4096, mode: "strict" });
  assert.is(again.recovery.damagedKeys, 1);
  assert.is(again.has("a"), false);
  assert.equal(readAll(again.pool, again.object("b")), b);
  again.pool.check();
  again.pool.close();
});

test("a version 1 log header opens as it is and is rewritten as version 2", () => {
  const path = join(dir, "v1.pm");
  const log = PmLog.openFile(path, { buffers: 64, mode: "strict" });
  const i = log.pool.alloc();
  log.pool.view(i, 0, 3).set([7, 8, 9]);
  log.append("k", [log.pool.name(i, 0, 3)]);
  log.pool.free(i);
  log.commit();
  // the header as the first release wrote it: version 1, its CRC
  const meta = log.pool.metaView();
  const dv = new DataView(meta.buffer, meta.byteOffset, 64);
  assert.is(dv.getUint32(4, true), 2);
  dv.setUint32(4, 1, true);
  dv.setUint32(60, crc32c(meta.subarray(0, 60)), true);
  log.pool.persistMeta(0, 64);
  log.pool.close();
  const again = PmLog.openFile(path, { buffers: 64, mode: "strict" });
  assert.equal([...again.views("k")[0]], [7, 8, 9]);
  const m2 = again.pool.metaView();
  assert.is(new DataView(m2.buffer, m2.byteOffset, 64).getUint32(4, true), 2);
  again.pool.close();
  const third = PmLog.openFile(path, { buffers: 64, mode: "strict" });
  assert.equal([...third.views("k")[0]], [7, 8, 9]);
  third.pool.close();
});

for (const medium of MEDIA)
  test(`pipelined group commit in journal mode (${medium}): flush returns at once, durableSeq follows, onDurable fires`, async () => {
    const path = join(scratchDir(medium), "pipe.pm");
    const log = PmLog.openFile(path, { buffers: 4096, mode: "journal" });
    const pool = log.pool;
    assert.is(pool.persistMode, "journal");
    const r = rng(5);
    const acked = [];
    const batches = pool.journalStats().batches;
    for (let g = 0; g < 30; g++) {
      for (let k = 0; k < 5; k++) {
        const w = log.writer();
        writeObject(log, w, random(r, 1 + r.int(20_000)), r);
        acked.push(log.put(`k${g}-${k}`, w));
      }
      log.flush();
      assert.ok(log.durableSeq <= log.lastSeq);
    }
    // the journal's thread completes them; the callback runs on this thread
    for (let t = 0; t < 200 && log.durableSeq < log.lastSeq; t++) await new Promise((res) => setTimeout(res, 5));
    assert.is(log.durableSeq, log.lastSeq);
    assert.is(log.inFlight, 0);
    const st = pool.journalStats();
    assert.ok(
      st.batches - batches <= 30,
      `one journal batch (one fdatasync) per flush at most (${st.batches - batches})`,
    );
    // a group nobody polls for becomes durable through the journal's callback alone (when the
    // flush's own poll did not see it done already: retried until it did not)
    let fired = 0;
    log.onDurable = () => fired++;
    for (let t = 0; t < 50 && fired === 0; t++) {
      const w = log.writer();
      writeObject(log, w, random(r, 100), r);
      log.put("async", w);
      log.flush();
      if (log.durableSeq === log.lastSeq) continue;
      for (let k = 0; k < 200 && log.durableSeq < log.lastSeq; k++) await new Promise((res) => setTimeout(res, 2));
      assert.ok(fired > 0, "onDurable was called");
    }
    pool.close();
    const again = PmLog.openFile(path, { buffers: 4096, mode: "journal" });
    assert.is(again.size, 151);
    again.pool.check();
    again.pool.close();
  });

test("a pool past 2 GiB of Wasm memory: buffers up there are addressed, written, named and read back", () => {
  // 1.2 M buffers: the top of the buffer region lies above 2^31 (where a u32 address would
  // come back to JavaScript as a negative i32)
  const log = PmLog.openFile(join(dir, "big.pm"), { buffers: 1_200_000, mode: "strict" });
  const pool = log.pool;
  try {
    const held = [];
    let top = -1;
    while (top < 0) {
      const i = pool.alloc();
      held.push(i);
      if (pool.address(i) > 2 ** 31 + 2 ** 20) top = i;
    }
    const r = rng(6);
    const data = random(r, 300 * 2048);
    const w = log.writer();
    for (let k = 0; k < 300; k++) {
      const i = held[held.length - 1 - k];
      pool.view(i, 0, 2048).set(data.subarray(k * 2048, (k + 1) * 2048));
      w.push({ index: i, offset: 0, length: 2048 });
    }
    log.put("high", w);
    log.commit();
    const obj = log.object("high");
    assert.ok(
      obj.names.some((x) => x.height),
      "a tree whose nodes sit up there too",
    );
    assert.equal(readAll(pool, obj), data);
    assert.equal(readAll(pool, obj, 1000, 500_000), data.subarray(1000, 500_000));
    pool.freeBatch(held);
    log.delete("high");
    log.commit();
    assert.is(pool.check().kept, 0);
  } finally {
    pool.close();
  }
});

test("ObjectWriter refuses use after finish or release", () => {
  const log = fresh();
  const w = log.writer();
  const i = log.pool.alloc();
  w.push({ index: i, offset: 0, length: 10 });
  log.pool.free(i);
  w.finish();
  let err;
  try {
    w.push({ index: i, offset: 0, length: 10 });
  } catch (e) {
    err = e;
  }
  assert.is(err?.code, "ESTATE");
  w.release();
  assert.is(log.pool.counts().kept, 0);
  assert.ok(w instanceof ObjectWriter);
  log.pool.close();
});

test.run();

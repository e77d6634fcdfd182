// PmLog API: errors (each refusal changes nothing), group commit cost, buffer lifetimes,
// strict persistence mode, the core's CRC-32C, and the constants both sides share.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Pool, PmLog, LogError, LogFullError, BufferNameError, LOG_MAX_KEY, LOG_MAX_NAMES } from "../build/index.js";
import { crc32c } from "./lib/log-file.mjs";
import { rng } from "./lib/rng.mjs";
import { MEDIA, scratchDir } from "./lib/tmp.mjs";

const dir = scratchDir("tmpfs");
let n = 0;
const fresh = (opts = {}) => PmLog.openFile(join(dir, `api-${n++}.pm`), { buffers: 128, mode: "strict", ...opts });

function throws(fn, Cls, code) {
  let err;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof Cls, `expected ${Cls.name}, got ${err}`);
  assert.is(err.code, code, err.message);
  return err;
}

/** A kept-by-log put of `bytes` in a fresh buffer; returns the buffer index. */
function put(log, key, bytes = [1, 2, 3]) {
  const i = log.pool.alloc();
  log.pool.view(i, 0, bytes.length).set(bytes);
  log.append(key, [log.pool.name(i, 0, bytes.length)]);
  log.pool.free(i);
  return i;
}

test("error codes and limits mirror assembly/pm/log.ts", async () => {
  const src = readFileSync(new URL("../assembly/pm/log.ts", import.meta.url), "utf8");
  const host = await import("../build/index.js");
  const hostSrc = readFileSync(new URL("../host/log.ts", import.meta.url), "utf8");
  const consts = [...src.matchAll(/export const (E_LOG_\w+|LOG_MAX_\w+): \w+ = (-?\d+);/g)];
  assert.ok(consts.length >= 12);
  for (const [, name, value] of consts) {
    const m = hostSrc.match(new RegExp(`export const ${name} = (-?\\d+);`));
    assert.ok(m, `host/log.ts defines ${name}`);
    assert.is(Number(m[1]), Number(value), name);
  }
  assert.is(host.LOG_MAX_KEY, LOG_MAX_KEY);
});

test("the core's CRC-32C equals the reference on random data, lengths and alignments", () => {
  const log = fresh();
  const e = log.pool.core.exports;
  const u8 = new Uint8Array(log.pool.core.memory.buffer);
  const at = log.pool.address(log.pool.alloc());
  const r = rng(42);
  for (let k = 0; k < 300; k++) {
    const off = r.int(64);
    const len = r.int(1900);
    for (let i = 0; i < len; i++) u8[at + off + i] = r.int(256);
    assert.is(e.pmCrc32c(at + off, len) >>> 0, crc32c(u8.subarray(at + off, at + off + len)), `len ${len}`);
  }
  assert.is(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
  log.pool.close();
});

test("bad keys and names are refused and change nothing", () => {
  const log = fresh();
  const pool = log.pool;
  const i = pool.alloc();
  const before = { ...log.stats(), counts: pool.counts() };
  throws(() => log.append("", [pool.name(i)]), LogError, "EKEY");
  throws(() => log.append("x".repeat(LOG_MAX_KEY + 1), [pool.name(i)]), LogError, "EKEY");
  throws(() => log.append(new Uint8Array(LOG_MAX_KEY + 1), [pool.name(i)]), LogError, "EKEY");
  throws(() => log.append(42, [pool.name(i)]), LogError, "EKEY");
  const many = Array.from({ length: LOG_MAX_NAMES + 1 }, () => pool.name(i, 0, 1));
  throws(() => log.append("k", many), LogError, "ENAMES");
  throws(() => log.append("k", [{ index: 1000, offset: 0, length: 1 }]), BufferNameError, "ERANGE");
  throws(() => log.append("k", [{ index: i, offset: 2000, length: 100 }]), BufferNameError, "EBOUNDS");
  throws(() => log.append("k", [{ index: i, offset: -1, length: 1 }]), BufferNameError, "EBOUNDS");
  const freeOne = pool.alloc();
  pool.free(freeOne);
  throws(() => log.append("k", [pool.name(i), { index: freeOne, offset: 0, length: 8 }]), BufferNameError, "EFREE");
  assert.equal({ ...log.stats(), counts: pool.counts() }, before);
  assert.is(pool.refCount(i), 1, "no reference was taken");
  // a key of exactly the limit works, as bytes and as a string
  log.append(new Uint8Array(LOG_MAX_KEY).fill(7), [pool.name(i, 0, 4)]);
  log.append("é".repeat(LOG_MAX_KEY / 2), [pool.name(i, 4, 4)]);
  assert.is(log.size, 2);
  pool.close();
});

test("a pool without PmLog.configure, a second open, an open after allocation", () => {
  const path = join(dir, "plain.pm");
  const pool = Pool.create(path, { buffers: 16, mode: "strict" });
  throws(() => PmLog.open(pool), LogError, "ENOLOG");
  pool.close();
  const p2 = Pool.open(path, { configure: PmLog.configure });
  p2.alloc();
  throws(() => PmLog.open(p2), LogError, "EBUSY");
  p2.close();
  const log = PmLog.openFile(path, { buffers: 16 });
  throws(() => PmLog.open(log.pool), LogError, "EBUSY");
  log.pool.close();
  const small = Pool.volatile({ buffers: 4, metaBytes: 8192, configure: PmLog.configure });
  throws(() => PmLog.open(small), LogError, "ESMALL");
  small.close();
});

test("a metadata region used for something else is refused, never reformatted", () => {
  const path = join(dir, "foreign.pm");
  const pool = Pool.create(path, { buffers: 16, mode: "strict" });
  pool.metaView().set([1, 2, 3, 4], 0);
  pool.persistMeta(0, 4);
  pool.close();
  const before = readFileSync(path);
  throws(() => PmLog.openFile(path, { buffers: 16 }), LogError, "EBADLOG");
  assert.ok(Buffer.compare(before, readFileSync(path)) === 0);
});

test("get, has, seqOf, views (zero-copy), delete, entries in log order", () => {
  const log = fresh();
  const i = put(log, "a", [1, 2, 3]);
  put(log, "b", [4]);
  put(log, new Uint8Array([0, 255]), [5]);
  assert.equal(log.get("a"), [{ index: i, offset: 0, length: 3 }]);
  assert.ok(log.has("b") && !log.has("zz"));
  assert.is(log.get("zz"), undefined);
  const v = log.views("a")[0];
  v[0] = 9; // writes PM in place
  assert.is(log.pool.view(i, 0, 1)[0], 9);
  assert.equal(
    log.entries().map((e) => [...e.key]),
    [[97], [98], [0, 255]],
  );
  const seqA = log.seqOf("a");
  put(log, "a", [7]); // overwrite moves "a" to the end
  assert.ok(log.seqOf("a") > seqA);
  assert.equal(
    [...log].map((e) => [...e.key]),
    [[98], [0, 255], [97]],
  );
  assert.is(log.delete("zz"), null);
  assert.type(log.delete("b"), "number");
  assert.is(log.size, 2);
  log.pool.close();
});

test("group commit: two persist calls however many records; superseded buffers free after commit only", () => {
  const log = fresh();
  const pool = log.pool;
  const old = put(log, "k");
  log.commit();
  const calls = pool.stats.persistCalls;
  for (let k = 0; k < 50; k++) put(log, `x${k}`);
  const neu = put(log, "k", [8, 8]);
  assert.is(pool.owner(old), "kept", "the superseded buffer stays until the new record is durable");
  const freed = log.commit();
  assert.is(pool.stats.persistCalls - calls, 2, "payloads + records in one persist, then the tail slot");
  assert.is(freed, 1);
  assert.is(pool.owner(old), "free");
  assert.is(pool.owner(neu), "kept");
  const calls2 = pool.stats.persistCalls;
  log.commit(); // nothing pending: no persist at all
  assert.is(pool.stats.persistCalls, calls2);
  log.delete("k");
  assert.is(pool.owner(neu), "kept");
  log.commit();
  assert.is(pool.owner(neu), "free");
  assert.is(pool.check().kept, 50);
  pool.close();
});

for (const medium of MEDIA)
  test(`coalesced commits on ${medium}: one msync per step, data intact after reopen`, () => {
    const path = join(scratchDir(medium), "coalesce.pm");
    // msync (the default on tmpfs, the in-place candidate on a disk) coalesces by default
    const log = PmLog.openFile(path, { buffers: 64, mode: "msync" });
    const pool = log.pool;
    assert.is(pool.persistMode, "msync");
    for (let k = 0; k < 20; k++) put(log, `k${k}`, [k, k + 1]);
    const calls = pool.stats.msyncCalls;
    log.commit();
    assert.is(pool.stats.msyncCalls - calls, 2);
    pool.close();
    const again = PmLog.openFile(path, { buffers: 64, mode: "msync" });
    assert.is(again.size, 20);
    assert.equal([...again.views("k7")[0]], [7, 8]);
    again.pool.close();
  });

test("log full: a clear LogFullError without auto-compaction; compaction makes room again", () => {
  const log = fresh({ metaBytes: 65536, autoCompact: false });
  const pool = log.pool;
  const i = pool.alloc();
  let k = 0;
  const err = throws(
    () => {
      for (;;) log.append(`key-${k++}-${"p".repeat(200)}`, [pool.name(i, 0, 1)]);
    },
    LogFullError,
    "ELOGFULL",
  );
  assert.match(err.message, /full/);
  const live = log.size;
  assert.is(live, k - 1);
  // Delete most keys: a full log still takes some deletes (puts leave 8 KiB for them); when
  // those fill it too, compaction reclaims the deleted records. Then there is room again.
  log.commit();
  let compactions = 0;
  for (let j = 0; j < live; j++) {
    if (j % 10 === 0) continue;
    const key = `key-${j}-${"p".repeat(200)}`;
    try {
      log.delete(key);
    } catch (e) {
      if (!(e instanceof LogFullError)) throw e;
      assert.ok(log.compact() > 0, "compaction reclaims the deleted records");
      compactions++;
      log.delete(key);
    }
  }
  assert.ok(compactions > 0, "the deletes filled the log too");
  assert.ok(log.compact() > 0);
  for (let j = 0; j < 20; j++) log.append(`new-${j}`, [pool.name(i, 0, 1)]);
  log.commit();
  const size = log.size;
  const path = pool.path;
  pool.close();
  const again = PmLog.openFile(path, { buffers: 128 });
  assert.is(again.size, size);
  assert.is(again.pool.check().kept, 1);
  again.pool.close();
});

test("log full with auto-compaction: dead records are reclaimed without the caller noticing", () => {
  const log = fresh({ metaBytes: 65536 });
  const pool = log.pool;
  const i = pool.alloc();
  for (let k = 0; k < 5000; k++) log.append(`key-${k % 50}`, [pool.name(i, 0, 1 + (k % 100))]);
  log.commit();
  assert.is(log.size, 50);
  assert.ok(log.stats().compactions > 0);
  pool.free(i);
  assert.is(pool.check().kept, 1);
  assert.is(pool.refCount(i), 50);
  pool.close();
});

test("index full: EINDEXFULL (a LogFullError) when the live keys reach the index's limit", () => {
  const log = fresh({ metaBytes: 126976, autoCompact: false });
  const max = log.stats().maxKeys;
  const i = log.pool.alloc();
  for (let k = 0; k < max; k++) log.append(`${k}`, [log.pool.name(i, 0, 1)]);
  throws(() => log.append("one-more", [log.pool.name(i, 0, 1)]), LogFullError, "EINDEXFULL");
  log.append("0", [log.pool.name(i, 0, 2)]); // overwriting an existing key still works
  log.pool.close();
});

test("the index grows with the keys (every doubling, and the last one rebuilt from the log), shrinks to fit at open, and loses nothing", () => {
  // 2 MiB of metadata: 65536 slots; the table starts at 1024 and doubles at half full, so
  // 20,000 keys cross 1024 -> ... -> 32768 (rehashed in place) and 32768 -> 65536 (rebuilt
  // from the records between head and tail, relocated ones among them)
  const path = join(dir, `api-${n++}.pm`);
  let log = PmLog.openFile(path, { buffers: 64, metaBytes: 2 << 20, mode: "strict" });
  const pool = log.pool;
  const full = log.stats().maxKeys;
  assert.is(log.stats().indexSlots, 1024, "a fresh log starts with the smallest table");
  const model = new Map();
  const r = rng(18);
  const i = pool.alloc();
  const seen = new Set();
  for (let k = 0; k < 60000; k++) {
    const id = k < 20000 ? k : Math.floor(r() * 24000);
    const key = `k${id}`;
    if (k >= 20000 && r() < 0.2 && model.has(key)) {
      log.delete(key);
      model.delete(key);
    } else {
      const len = 1 + (k % 200);
      log.append(key, [pool.name(i, 0, len)]);
      model.set(key, len);
    }
    seen.add(log.stats().indexSlots);
    if (k % 1000 === 999) log.commit();
  }
  log.commit();
  const st = log.stats();
  assert.is(st.indexSlots, 65536, "grew to the whole region");
  assert.equal(
    [...seen].sort((a, b) => a - b),
    [1024, 2048, 4096, 8192, 16384, 32768, 65536],
    "one doubling at a time",
  );
  assert.is(full, 49152, "the limit stays 3/4 of the region");
  assert.ok(st.compactions > 0, "records were relocated while the index grew");
  const check = (l, what) => {
    assert.is(l.size, model.size, `${what}: live keys`);
    for (let id = 0; id < 24000; id++) {
      const got = l.get(`k${id}`);
      const want = model.get(`k${id}`);
      if (want === undefined) assert.is(got, undefined, `${what}: k${id} absent`);
      else assert.is(got?.[0]?.length, want, `${what}: k${id}`);
    }
  };
  check(log, "grown");
  pool.free(i);
  pool.close();
  // reopened: rebuilt over the whole region, then the smallest table at most 1/4 full
  log = PmLog.openFile(path, { mode: "strict" });
  const want = 1 << Math.ceil(Math.log2(Math.max(1024, model.size * 4)));
  assert.is(log.stats().indexSlots, Math.min(want, 65536), "fit to the keys at open");
  check(log, "reopened");
  // deleting nearly every key keeps the table (it only grows while open); a reopen shrinks it
  for (const key of [...model.keys()].slice(10)) {
    log.delete(key);
    model.delete(key);
  }
  log.commit();
  check(log, "emptied");
  log.pool.close();
  log = PmLog.openFile(path, { mode: "strict" });
  assert.is(log.stats().indexSlots, 1024, "ten keys: the smallest table");
  check(log, "reopened small");
  log.pool.close();
});

test("strict mode: a store that is not persisted does not reach the file", () => {
  const path = join(dir, "strict.pm");
  const pool = Pool.create(path, { buffers: 8, mode: "strict" });
  assert.is(pool.persistMode, "strict");
  assert.match(pool.describe(), /strict/);
  const [a, b] = pool.allocBatch(2);
  pool.view(a, 0, 4).set([1, 2, 3, 4]);
  pool.view(b, 0, 4).set([5, 6, 7, 8]);
  pool.persist(b, 0, 4);
  pool.close();
  const again = Pool.open(path, { mode: "strict" });
  again.claim(a);
  again.claim(b);
  assert.equal([...again.view(a, 0, 4)], [0, 0, 0, 0], "lost: never persisted");
  assert.equal([...again.view(b, 0, 4)], [5, 6, 7, 8]);
  again.close();
  // the same without strict mode: the store reaches the page cache at once
  const p3 = Pool.open(path);
  p3.claim(a);
  p3.view(a, 0, 1)[0] = 42;
  p3.close();
  const p4 = Pool.open(path, { mode: "strict" });
  p4.claim(a);
  assert.is(p4.view(a, 0, 1)[0], 42);
  p4.close();
});

test.run();

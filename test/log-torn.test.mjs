// Damage on purpose: torn, corrupted and forged records, torn tail slots, a damaged header.
// The log ends at the first record that fails a check; nothing damaged is ever visible, the
// buffers only damaged records name are free again, and a refused file is not changed.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Pool, PmLog, LogError } from "../build/index.js";
import { fill, matches } from "./lib/pattern.mjs";
import { readLog, resealRecord } from "./lib/log-file.mjs";
import { scratchDir, MEDIA } from "./lib/tmp.mjs";

const BUFFERS = 256;
const open = (path) => PmLog.openFile(path, { buffers: BUFFERS, mode: "strict" });

/** A log with `groups` committed groups of 3 puts each (keys g0-0 ...), payload seq-filled. */
function make(dir, name, groups = 4) {
  const path = join(dir, name);
  const log = open(path);
  const pool = log.pool;
  const want = new Map();
  for (let g = 0; g < groups; g++) {
    for (let k = 0; k < 3; k++) {
      const i = pool.alloc();
      const len = 100 + 300 * k;
      const seq = log.stats().nextSeq;
      fill(pool.view(i, 10, len), seq);
      log.append(`g${g}-${k}`, [pool.name(i, 10, len)]);
      pool.free(i);
      want.set(`g${g}-${k}`, seq);
    }
    log.commit();
  }
  pool.close();
  return { path, want };
}

/** Reopens and checks: exactly the keys in `want` (key -> seq), byte-exact; pool invariant. */
function expectState(path, want, where) {
  const log = open(path);
  try {
    const got = new Map(log.entries().map((e) => [new TextDecoder().decode(e.key), e]));
    assert.equal([...got.keys()].sort(), [...want.keys()].sort(), `${where}: keys`);
    for (const [key, e] of got) {
      assert.is(e.seq, want.get(key), `${where}: seq of ${key}`);
      assert.ok(matches(log.pool.viewName(e.names[0]), e.seq), `${where}: bytes of ${key}`);
    }
    const c = log.pool.check();
    assert.is(c.kept, want.size, `${where}: kept buffers`);
    return log.recovery;
  } finally {
    log.pool.close();
  }
}

function damageLast(path, how) {
  const { records, file } = readLog(path);
  const last = records[records.length - 1];
  how(file, last);
  writeFileSync(path, file);
  return last;
}

for (const medium of MEDIA) {
  const dir = scratchDir(medium);

  test(`${medium}: a flipped byte in the last record: it is discarded, the rest intact, its buffer free`, () => {
    const { path, want } = make(dir, "flip.pm");
    const last = damageLast(path, (f, r) => (f[r.at + r.len - 3] ^= 0x40));
    want.delete("g3-2");
    const rec = expectState(path, want, "after the flip");
    assert.is(rec.damage, "crc");
    assert.is(rec.discardedBytes, last.len);
    // the repaired tail was persisted: the next open is clean, and appends go on
    assert.is(expectState(path, want, "second reopen").discardedBytes, 0);
    const log = open(path);
    const i = log.pool.alloc();
    fill(log.pool.view(i, 0, 50), 999);
    log.append("after", [log.pool.name(i, 0, 50)]);
    log.pool.free(i);
    log.commit();
    log.pool.close();
    const log2 = open(path);
    assert.ok(matches(log2.views("after")[0], 999));
    assert.is(log2.size, want.size + 1);
    log2.pool.close();
  });

  test(`${medium}: a torn last record (its tail zero, as a write cut short) is discarded`, () => {
    const { path, want } = make(dir, "torn.pm");
    damageLast(path, (f, r) => f.fill(0, r.at + r.len - 8, r.at + r.len));
    want.delete("g3-2");
    assert.is(expectState(path, want, "torn").damage, "crc");
  });

  test(`${medium}: a last record that never reached the file (all zero) is discarded`, () => {
    const { path, want } = make(dir, "zero.pm");
    damageLast(path, (f, r) => f.fill(0, r.at, r.at + r.len));
    want.delete("g3-2");
    assert.is(expectState(path, want, "zeroed").damage, "length");
  });

  test(`${medium}: a forged record with a valid CRC but a name outside the pool is refused`, () => {
    const { path, want } = make(dir, "forged.pm");
    damageLast(path, (f, r) => {
      new DataView(f.buffer, f.byteOffset).setUint32(r.at + 36, BUFFERS + 5, true); // name 0's index
      resealRecord(f, r.at);
    });
    want.delete("g3-2");
    assert.is(expectState(path, want, "forged").damage, "name");
  });

  test(`${medium}: a record damaged in the middle ends the log there (what follows is discarded)`, () => {
    const { path, want } = make(dir, "middle.pm");
    const { records, file } = readLog(path);
    const victim = records[7]; // g2-1
    file[victim.at + 40] ^= 1;
    writeFileSync(path, file);
    for (const k of ["g2-1", "g2-2", "g3-0", "g3-1", "g3-2"]) want.delete(k);
    const rec = expectState(path, want, "middle");
    assert.is(rec.damage, "crc");
    assert.is(rec.records, 7);
  });

  test(`${medium}: a torn tail slot falls back to the previous one (the last group is not visible)`, () => {
    const { path, want } = make(dir, "slot.pm");
    const { cur, file } = readLog(path);
    file[cur.at + 17] ^= 0xff; // the newest slot's tail field
    writeFileSync(path, file);
    for (const k of ["g3-0", "g3-1", "g3-2"]) want.delete(k);
    const rec = expectState(path, want, "slot");
    assert.is(rec.discardedBytes, 0);
  });

  test(`${medium}: both tail slots or the header damaged: EBADLOG, the file is not changed`, () => {
    for (const [name, how] of [
      [
        "slots.pm",
        (f, l) => {
          f[l.slots[0].at + 3] ^= 1;
          f[l.slots[1].at + 3] ^= 1;
        },
      ],
      ["magic.pm", (f) => (f[4096] ^= 0x20)],
      ["geometry.pm", (f) => (f[4096 + 24] ^= 0x08)],
    ]) {
      const { path } = make(dir, name);
      const l = readLog(path);
      how(l.file, l);
      writeFileSync(path, l.file);
      const before = readFileSync(path);
      let err;
      try {
        open(path);
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof LogError, `${name}: ${err}`);
      assert.is(err.code, "EBADLOG");
      assert.ok(Buffer.compare(before, readFileSync(path)) === 0, `${name}: file unchanged`);
      Pool.open(path).close(); // the refused open released its lock
    }
  });
}

test.run();

// Damaged files never trap: 600 seeded corruptions of a log's metadata region (flipped bytes,
// forged tail slots with valid CRCs, forged records with valid CRCs and random fields). Each
// reopen either refuses the file with EBADLOG (changing nothing) or recovers a log whose
// entries are readable and whose kept buffers are exactly the ones its live records name.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PmLog, LogError } from "../build/index.js";
import { crc32c, readLog, resealRecord } from "./lib/log-file.mjs";
import { rng } from "./lib/rng.mjs";
import { scratchDir } from "./lib/tmp.mjs";

const BUFFERS = 64;
const META = 4096;
const opts = { buffers: BUFFERS, metaBytes: 65536, mode: "strict" };

test("600 corruptions of the metadata region: EBADLOG or a consistent log, never a trap", () => {
  const dir = scratchDir("tmpfs");
  const path = join(dir, "fuzz.pm");
  // a log that has wrapped: overwrites and deletes over a few laps, some pads
  const log = PmLog.openFile(path, opts);
  const pool = log.pool;
  const r0 = rng(99);
  for (let k = 0; k < 3000; k++) {
    const n = r0.int(40);
    const key = `key-${n}-${"x".repeat(n * 3)}`;
    if (r0() < 0.2) log.delete(key);
    else {
      const i = pool.alloc();
      log.append(key, [pool.name(i, r0.int(100), 1 + r0.int(500))]);
      pool.free(i);
    }
    if (k % 7 === 0) log.commit();
  }
  log.commit();
  pool.close();
  const template = readFileSync(path);
  const { logOff, cap, records, cur } = readLog(path);
  assert.ok(cur.head > cap, "the template log has wrapped");
  const r = rng(2024);
  const outcome = { refused: 0, recovered: 0, damaged: 0 };
  for (let t = 0; t < 600; t++) {
    const f = Buffer.from(template);
    const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
    const kind = t % 3;
    if (kind === 0) {
      // flip 1..8 random bytes anywhere in the header, the slots or the log area
      for (let k = 1 + r.int(8); k > 0; k--) {
        const at = r() < 0.3 ? META + r.int(192) : logOff + r.int(cap);
        f[at] ^= 1 << r.int(8);
      }
    } else if (kind === 1) {
      // a forged tail slot with a valid CRC: random head and tail (8-aligned, within a lap)
      const at = META + (r() < 0.5 ? 64 : 128);
      const head = r.int(4 * cap) & ~7;
      dv.setBigUint64(at, BigInt(1e6 + t), true);
      dv.setBigUint64(at + 8, BigInt(head), true);
      dv.setBigUint64(at + 16, BigInt(head + (r.int(cap) & ~7)), true);
      dv.setBigUint64(at + 24, BigInt(1 + r.int(1e6)), true);
      dv.setUint32(at + 32, crc32c(f.subarray(at, at + 32)), true);
    } else {
      // a live record rewritten with random fields, CRC resealed (position kept or not)
      const rec = records[records.length - 1 - r.int(Math.min(records.length, 40))];
      for (let k = 1 + r.int(6); k > 0; k--) {
        const field = [0, 8, 16, 24, 26, 28, 32, 36][r.int(8)];
        if (field === 24) f[rec.at + 24] = r.int(5);
        else if (field === 26 || field === 28) dv.setUint16(rec.at + field, r.int(1100), true);
        else dv.setUint32(rec.at + field, r() < 0.5 ? r.int(1 << 30) : r.int(rec.len + 64), true);
      }
      if (dv.getUint32(rec.at, true) <= cap - ((rec.at - logOff) % cap)) resealRecord(f, rec.at);
    }
    writeFileSync(path, f);
    let lg;
    try {
      lg = PmLog.openFile(path, opts);
    } catch (e) {
      assert.ok(e instanceof LogError && e.code === "EBADLOG", `trial ${t} (kind ${kind}): ${e}`);
      assert.ok(Buffer.compare(readFileSync(path), f) === 0, `trial ${t}: a refused file is unchanged`);
      outcome.refused++;
      continue;
    }
    try {
      const refs = new Map();
      for (const e of lg.entries()) {
        for (const n of e.names) {
          lg.pool.viewName(n); // names of live records are valid names of held buffers
          refs.set(n.index, (refs.get(n.index) ?? 0) + 1);
        }
        assert.ok(lg.get(e.key), `trial ${t}: entries and get agree`);
      }
      const c = lg.pool.check();
      assert.is(c.kept, refs.size, `trial ${t}: kept = buffers named`);
      for (const [i, n] of refs) assert.is(lg.pool.refCount(i), n);
      outcome.recovered++;
      if (lg.recovery.damage) outcome.damaged++;
      // the log goes on working after whatever recovery found
      const i = lg.pool.alloc();
      lg.append("after", [lg.pool.name(i, 0, 8)]);
      lg.commit();
    } finally {
      lg.pool.close();
    }
  }
  console.log(`  fuzz: ${JSON.stringify(outcome)}`);
  assert.ok(outcome.refused > 20 && outcome.damaged > 100, JSON.stringify(outcome));
});

test.run();

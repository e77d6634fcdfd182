// bench/persist: durable appends per second and group-commit latency of the PM log (payload
// written into pool buffers, PmLog.append, PmLog.commit) beside `fs-fdatasync` (the same record
// bytes written with fs.writeSync into a preallocated log file at advancing offsets, then
// fdatasync once per group), for 64 B, 1 KiB and 4 KiB records and group sizes 1..256, on each
// medium in the same run: tmpfs (/dev/shm) and the disk (`--dir`, default /var/tmp).
//
// Systems, per medium: `pmstack-log` is the log with the pool's default commit strategy for
// the medium (msync on tmpfs, the write-ahead journal on a disk); the other strategy runs as a
// candidate beside it (`pmstack-log-journal` on tmpfs, `pmstack-log-msync` on the disk: data
// flushed where it landed, as before the journal existed), so that the choice is measured.
//
// Metrics (the medium is the last part of the name):
//   appends_per_s_<size>_g<group>_<medium>   records made durable per second (higher is better)
//   p50_us_<size>_g<group>_<medium>          median time of one group: first append to commit
//   p99_us_<size>_g<group>_<medium>          returning, i.e. the latency of its first record
//   syscalls_per_commit_<size>_g<group>_<medium>  msync, or journal pwritev+fdatasync, or
//                                            pwrite+fdatasync calls per commit
// and, for 1 KiB records in groups of 16 on each medium, what one commit costs the device,
// each system measured alone on a fresh file (nothing else in the process writing meanwhile):
//   write_bytes_per_commit_1k_g16_<medium>   bytes written (/proc/self/io write_bytes, every
//                                            thread: journal entries, checkpoints including the
//                                            one at close, msync writeback)
//   write_pages_per_commit_1k_g16_<medium>   the same in 4 KiB pages (the kernel counts pages, or
//                                            larger folios: a file written in 1 MiB pieces has
//                                            1 MiB folios, and dirtying one byte counts 1 MiB)
//   device_write_bytes_per_commit_1k_g16_<medium> what the block device took (sectors written,
//                                            /sys/dev/block/*/stat, after a sync: the file
//                                            system's own journal included; not on tmpfs)
//   device_flushes_per_commit_1k_g16_<medium> fdatasync and msync calls (each a device flush)
// and the device's own floor: `device` fdatasync_us_<medium> (a 512-byte pwrite + fdatasync into
// a pre-written file, median) and seq_write_mb_s_<medium> (64 MiB written and fdatasynced).
//
// `npm run bench -- persist [quick] [--dir DIR]`; "quick" runs a tenth as long (a smoke test).
import { spawnSync } from "node:child_process";
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { PmLog } from "../build/index.js";
import { deviceFloor, deviceWrites, median } from "./_lib.mjs";

const SIZES = [
  [64, "64"],
  [1024, "1k"],
  [4096, "4k"],
];
const GROUPS = [1, 4, 16, 64, 256];
const KEYS = 2048; // keys are overwritten in turn: the log stays bounded (compaction runs)
// The fs peer's preallocated log segment, written once in 4 KiB pieces before it is used:
// written in 1 MiB pieces, its page cache holds 1 MiB folios, and each group's fdatasync then
// took ~1.5x as long on ext4 here (and /proc/self/io counted 1 MiB per group)
const SEGMENT = 16 << 20;

const FS_NAMES = { 0x01021994: "tmpfs", 0xef53: "ext4", 0x58465342: "xfs", 0x9123683e: "btrfs" };

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** Runs `group()` (one group, returns nothing) until `ms` have passed; per-group times in µs. */
function timeGroups(group, ms, minGroups) {
  for (let k = 0; k < 3; k++) group(); // warm up
  const lat = [];
  const t0 = process.hrtime.bigint();
  let t = t0;
  const end = t0 + BigInt(ms) * 1000000n;
  while (t < end || lat.length < minGroups) {
    group();
    const t1 = process.hrtime.bigint();
    lat.push(Number(t1 - t) / 1000);
    t = t1;
  }
  return { lat, seconds: Number(t - t0) / 1e9 };
}

/** Bytes this process (all its threads) has written to storage so far. */
const writeBytes = () => Number(/write_bytes: (\d+)/.exec(readFileSync("/proc/self/io", "utf8"))[1]);

/** Device flushes and syscalls the pool made so far (journal or in place). */
function ioCalls(pool) {
  const j = pool.journalStats();
  if (j) return { flushes: j.fdatasyncs + j.poolFdatasyncs, syscalls: j.fdatasyncs + j.poolFdatasyncs + j.pwriteCalls };
  return { flushes: pool.stats.msyncCalls, syscalls: pool.stats.msyncCalls };
}

/**
 * A fresh pool in `mode`, `n` commits of 16 records of 1 KiB (keys in turn), then close (in
 * journal mode: every entry durable and checkpointed into the pool file). Bytes this process
 * wrote (/proc/self/io write_bytes: pages dirtied for the device) and device flushes, per commit.
 */
function deviceCost(file, mode, n, payload) {
  const log = PmLog.openFile(file, { buffers: 8192, mode });
  const pool = log.pool;
  const dw = settledDevice(file);
  const dw0 = dw?.();
  const wb0 = writeBytes();
  const io0 = ioCalls(pool);
  for (let c = 0; c < n; c++) {
    for (let k = 0; k < 16; k++) {
      const i = pool.alloc();
      pool.view(i, 0, 1024).set(payload.subarray(0, 1024));
      log.append(`key-${(c * 16 + k) % KEYS}`, [{ index: i, offset: 0, length: 1024 }]);
      pool.free(i);
    }
    log.commit();
  }
  const io1 = ioCalls(pool);
  pool.close();
  const bytes = (writeBytes() - wb0) / n;
  return { bytes, flushes: (io1.flushes - io0.flushes) / n, device: dw ? (settle(dw) - dw0) / n : null };
}

/** deviceWrites for the device under `file`, once everything dirty so far is written (sync). */
function settledDevice(file) {
  const dw = deviceWrites(dirname(file));
  if (dw) settle(dw);
  return dw;
}

/** Writes back everything dirty (sync(1)) and returns the device's count after it. */
function settle(dw) {
  spawnSync("sync");
  return dw();
}

/** The same for the peer: 16 records of 1 KiB written into a pre-written file, one fdatasync. */
function fsDeviceCost(file, n, payload) {
  const fd = openSync(file, "w+");
  const zero = Buffer.alloc(4096); // in pages: see SEGMENT
  for (let o = 0; o < 4 << 20; o += zero.length) writeSync(fd, zero, 0, zero.length, o);
  fdatasyncSync(fd);
  const rec = Buffer.alloc(32 + 16 + 1024);
  rec.set(payload.subarray(0, 1024), 48);
  const dw = settledDevice(file);
  const dw0 = dw?.();
  const wb0 = writeBytes();
  let pos = 0;
  for (let c = 0; c < n; c++) {
    for (let k = 0; k < 16; k++) {
      rec.writeUInt32LE(rec.length, 0);
      rec.writeUInt32LE(c * 16 + k, 8);
      if (pos + rec.length > 4 << 20) pos = 0;
      writeSync(fd, rec, 0, rec.length, pos);
      pos += rec.length;
    }
    fdatasyncSync(fd);
  }
  const bytes = (writeBytes() - wb0) / n;
  closeSync(fd);
  return { bytes, device: dw ? (settle(dw) - dw0) / n : null };
}

export async function run(args = []) {
  const scale = args.includes("quick") ? 0.1 : 1;
  const di = args.indexOf("--dir");
  const diskBase = di >= 0 ? args[di + 1] : "/var/tmp";
  const rows = [];
  const notes = [];
  const add = (system, metric, value, unit) => rows.push({ system, metric, value, unit });
  const payload = new Uint8Array(4096).map((_, i) => (i * 31 + 7) & 255);
  for (const base of ["/dev/shm", diskBase]) {
    let dir;
    try {
      dir = mkdtempSync(join(base, "pmstack-bench-persist-"));
    } catch {
      notes.push(`${base}: not writable, skipped`);
      continue;
    }
    const medium = FS_NAMES[statfsSync(dir).type] ?? "disk";
    const slow = medium !== "tmpfs";
    const ms = Math.max(40, (slow ? 1500 : 700) * scale);
    try {
      // the device's floor: a small durable write, and sequential bandwidth
      const floor = deviceFloor(dir, scale);
      add("device", `fdatasync_us_${medium}`, floor.fdatasyncUs, "us");
      add("device", `seq_write_mb_s_${medium}`, floor.seqMBs, "MB/s");

      // the candidates, the default strategy first; each in its own pool file
      const modes = slow ? ["journal", "msync"] : ["msync", "journal"];
      const systems = modes.map((mode, k) => {
        const log = PmLog.openFile(join(dir, `bench-${mode}.pm`), { buffers: 8192, mode });
        notes.push(`${k === 0 ? "pmstack-log" : `pmstack-log-${mode}`} on ${medium}: ${log.pool.describe()}`);
        return { name: k === 0 ? "pmstack-log" : `pmstack-log-${mode}`, log, n: 0 };
      });
      const fd = openSync(join(dir, "peer.log"), "w+");
      const zero = Buffer.alloc(4096); // in pages: see SEGMENT
      for (let o = 0; o < SEGMENT; o += zero.length) writeSync(fd, zero, 0, zero.length, o);
      fdatasyncSync(fd);
      let pos = 0;
      let seq = 0;
      for (const [size, tag] of SIZES) {
        // the peer's record as a WAL writes it: 32-byte header (length, crc slot, seq), key, payload
        const rec = Buffer.alloc(32 + 16 + size);
        rec.set(payload.subarray(0, size), 48);
        for (const g of GROUPS) {
          const m = `${tag}_g${g}_${medium}`;
          // Every system side by side, one cell after the other, so that noise hits all alike.
          for (const sys of systems) {
            const { log } = sys;
            const pool = log.pool;
            const names = [];
            const pmGroup = () => {
              for (let k = 0; k < g; k++) {
                names.length = 0;
                for (let left = size; left > 0; left -= 2048) {
                  const len = Math.min(2048, left);
                  const i = pool.alloc();
                  pool.view(i, 0, len).set(payload.subarray(size - left, size - left + len));
                  names.push({ index: i, offset: 0, length: len });
                }
                log.append(`key-${sys.n++ % KEYS}`, names);
                for (const nm of names) pool.free(nm.index); // the log holds its own reference
              }
              log.commit();
            };
            const io0 = ioCalls(pool);
            const c0 = log.stats().commits;
            const a = timeGroups(pmGroup, ms, 5);
            const commits = log.stats().commits - c0;
            const io1 = ioCalls(pool);
            add(sys.name, `appends_per_s_${m}`, (a.lat.length * g) / a.seconds, "1/s");
            add(sys.name, `p50_us_${m}`, median(a.lat), "us");
            add(sys.name, `p99_us_${m}`, pct(a.lat, 99), "us");
            add(sys.name, `syscalls_per_commit_${m}`, (io1.syscalls - io0.syscalls) / commits, "calls");
          }
          // fs-fdatasync: the record written at the next offset of the segment, one fdatasync per group
          const fsGroup = () => {
            for (let k = 0; k < g; k++) {
              rec.writeUInt32LE(rec.length, 0);
              rec.writeUInt32LE(seq++, 8);
              rec.write(`key-${seq % KEYS}`, 32);
              if (pos + rec.length > SEGMENT) pos = 0;
              writeSync(fd, rec, 0, rec.length, pos);
              pos += rec.length;
            }
            fdatasyncSync(fd);
          };
          const b = timeGroups(fsGroup, ms, 5);
          add("fs-fdatasync", `appends_per_s_${m}`, (b.lat.length * g) / b.seconds, "1/s");
          add("fs-fdatasync", `p50_us_${m}`, median(b.lat), "us");
          add("fs-fdatasync", `p99_us_${m}`, pct(b.lat, 99), "us");
          add("fs-fdatasync", `syscalls_per_commit_${m}`, g + 1, "calls");
        }
      }
      for (const { name, log } of systems) {
        const st = log.stats();
        const j = log.pool.journalStats();
        notes.push(
          `${name} on ${medium}: ${st.commits} commits, ${st.compactions} compaction passes, ${st.liveKeys} live keys` +
            (j
              ? `; journal: ${j.batches} batches, ${j.checkpoints} checkpoints (${j.checkpointBytes} bytes written back)`
              : ""),
        );
        log.pool.close();
      }
      closeSync(fd);

      // What one commit (16 records of 1 KiB) costs the device, each system alone: nothing
      // else of this process writes meanwhile (the pools above are closed, and /proc/self/io
      // counts every thread), and a journal's checkpoints are in (its close writes back).
      for (const [k, mode] of modes.entries()) {
        const c = deviceCost(join(dir, `cost-${mode}.pm`), mode, 200 * scale + 20, payload);
        const name = k === 0 ? "pmstack-log" : `pmstack-log-${mode}`;
        add(name, `write_bytes_per_commit_1k_g16_${medium}`, c.bytes, "B");
        add(name, `write_pages_per_commit_1k_g16_${medium}`, c.bytes / 4096, "pages");
        add(name, `device_flushes_per_commit_1k_g16_${medium}`, c.flushes, "calls");
        if (c.device !== null) add(name, `device_write_bytes_per_commit_1k_g16_${medium}`, c.device, "B");
      }
      {
        const c = fsDeviceCost(join(dir, "cost-peer.log"), 200 * scale + 20, payload);
        add("fs-fdatasync", `write_bytes_per_commit_1k_g16_${medium}`, c.bytes, "B");
        add("fs-fdatasync", `write_pages_per_commit_1k_g16_${medium}`, c.bytes / 4096, "pages");
        add("fs-fdatasync", `device_flushes_per_commit_1k_g16_${medium}`, 1, "calls");
        if (c.device !== null) add("fs-fdatasync", `device_write_bytes_per_commit_1k_g16_${medium}`, c.device, "B");
      }

      // recovery: open a default-size log filled with short records (one name each)
      const rpath = join(dir, "recover.pm");
      const rlog = PmLog.openFile(rpath, { buffers: 4096 });
      let ri = rlog.pool.alloc();
      for (let k = 0; rlog.stats().freeBytes > 2000; k++) {
        rlog.append(`key-${k}`, [rlog.pool.name(ri, k % 1024, 16)]);
        if (k % 1000 === 999) {
          rlog.commit();
          ri = rlog.pool.alloc();
        }
      }
      rlog.commit();
      const logBytes = rlog.stats().tail - rlog.stats().head;
      rlog.pool.close();
      const opens = [];
      let records = 0;
      for (let k = 0; k < 7; k++) {
        const t0 = process.hrtime.bigint();
        const again = PmLog.openFile(rpath, { buffers: 4096 });
        opens.push(Number(process.hrtime.bigint() - t0) / 1e6);
        records = again.recovery.records;
        again.pool.close();
      }
      add("pmstack-log", `recover_ms_full_log_${medium}`, median(opens), "ms");
      notes.push(
        `recover_ms_full_log_${medium}: open + recovery of ${records} records (${logBytes} bytes of log, ` +
          "4096 buffers), pool open (and journal replay) included",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const ratios = [];
  for (const r of rows.filter((x) => x.system.startsWith("pmstack-log"))) {
    const p = rows.find((x) => x.system === "fs-fdatasync" && x.metric === r.metric);
    if (!p || !p.value || !r.value || r.metric.startsWith("syscalls") || r.metric.startsWith("device_")) continue;
    if (r.metric.startsWith("write_")) continue;
    const higher = r.metric.startsWith("appends");
    ratios.push({
      metric: r.metric,
      system: r.system,
      peer: "fs-fdatasync",
      ratio: higher ? r.value / p.value : p.value / r.value,
      better: higher ? "higher" : "lower",
    });
  }
  notes.push(
    "latency = one group from its first append to commit() returning (the wait of the group's first record)",
    "fs-fdatasync writes into a preallocated, pre-written 16 MiB segment (no size change to flush): the peer's best case",
    "pmstack-log payloads are copied into pool buffers here (in PASTE they arrive there from the NIC)",
    "journal: the group's payloads and records go into one journal entry (the one copy a block device forces), one fdatasync " +
      "per commit; checkpoints write touched pages back to the pool file in the background (write_bytes counts them); " +
      "msync: payloads and records flushed where they are, one msync per commit step (two per commit)",
  );
  return { rows, ratios, notes };
}

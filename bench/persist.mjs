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
// and, for 1 KiB records in groups of 16 on each medium, what one commit costs the device:
//   write_bytes_per_commit_1k_g16_<medium>   bytes written (/proc/self/io write_bytes, every
//                                            thread: journal entries, checkpoints, msync writeback)
//   device_flushes_per_commit_1k_g16_<medium> fdatasync and msync calls (each a device flush)
// and the device's own floor: `device` fdatasync_us_<medium> (a 512-byte pwrite + fdatasync into
// a pre-written file, median) and seq_write_mb_s_<medium> (64 MiB written and fdatasynced).
//
// `npm run bench -- persist [quick] [--dir DIR]`; "quick" runs a tenth as long (a smoke test).
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, rmSync, statfsSync, writeSync } from "node:fs";
import { join } from "node:path";
import { PmLog } from "../build/index.js";
import { deviceFloor, median } from "./_lib.mjs";

const SIZES = [
  [64, "64"],
  [1024, "1k"],
  [4096, "4k"],
];
const GROUPS = [1, 4, 16, 64, 256];
const KEYS = 2048; // keys are overwritten in turn: the log stays bounded (compaction runs)
const SEGMENT = 16 << 20; // the fs peer's preallocated log segment

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
      const zero = Buffer.alloc(1 << 20);
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
            const wb0 = writeBytes();
            const c0 = log.stats().commits;
            const a = timeGroups(pmGroup, ms, 5);
            const commits = log.stats().commits - c0;
            const io1 = ioCalls(pool);
            add(sys.name, `appends_per_s_${m}`, (a.lat.length * g) / a.seconds, "1/s");
            add(sys.name, `p50_us_${m}`, median(a.lat), "us");
            add(sys.name, `p99_us_${m}`, pct(a.lat, 99), "us");
            add(sys.name, `syscalls_per_commit_${m}`, (io1.syscalls - io0.syscalls) / commits, "calls");
            if (tag === "1k" && g === 16) {
              add(sys.name, `write_bytes_per_commit_1k_g16_${medium}`, (writeBytes() - wb0) / commits, "B");
              add(
                sys.name,
                `device_flushes_per_commit_1k_g16_${medium}`,
                (io1.flushes - io0.flushes) / commits,
                "calls",
              );
            }
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
          const wb0 = writeBytes();
          const b = timeGroups(fsGroup, ms, 5);
          add("fs-fdatasync", `appends_per_s_${m}`, (b.lat.length * g) / b.seconds, "1/s");
          add("fs-fdatasync", `p50_us_${m}`, median(b.lat), "us");
          add("fs-fdatasync", `p99_us_${m}`, pct(b.lat, 99), "us");
          add("fs-fdatasync", `syscalls_per_commit_${m}`, g + 1, "calls");
          if (tag === "1k" && g === 16) {
            add("fs-fdatasync", `write_bytes_per_commit_1k_g16_${medium}`, (writeBytes() - wb0) / b.lat.length, "B");
            add("fs-fdatasync", `device_flushes_per_commit_1k_g16_${medium}`, 1, "calls");
          }
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
    if (r.metric.startsWith("write_bytes")) continue;
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

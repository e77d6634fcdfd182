// bench/persist: durable appends per second and group-commit latency of the PM log
// (`pmstack-log`: payload written into pool buffers, PmLog.append, PmLog.commit) beside
// `fs-fdatasync` (the same record bytes written with fs.writeSync into a preallocated log file
// at advancing offsets, then fdatasync once per group), for 64 B, 1 KiB and 4 KiB records and
// group sizes 1..256, on each medium (a tmpfs file and a file under os.tmpdir()), same run.
//
// Metrics (the medium is the last part of the name):
//   appends_per_s_<size>_g<group>_<medium>   records made durable per second (higher is better)
//   p50_us_<size>_g<group>_<medium>          median time of one group: first append to commit
//   p99_us_<size>_g<group>_<medium>          returning, i.e. the latency of its first record
//   syscalls_per_commit_<size>_g<group>_<medium>  msync (pmstack) or pwrite+fdatasync calls
//
// `npm run bench -- persist [quick]`; "quick" runs a tenth as long (a smoke test).
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PmLog } from "../build/index.js";
import { median } from "./_lib.mjs";

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

export async function run(args = []) {
  const scale = args.includes("quick") ? 0.1 : 1;
  const rows = [];
  const notes = [];
  const add = (system, metric, value, unit) => rows.push({ system, metric, value, unit });
  const payload = new Uint8Array(4096).map((_, i) => (i * 31 + 7) & 255);
  const media = [
    ["/dev/shm", "tmpfs"],
    [tmpdir(), null],
  ];
  for (const [base, fixed] of media) {
    let dir;
    try {
      dir = mkdtempSync(join(base, "pmstack-bench-persist-"));
    } catch {
      notes.push(`${base}: not writable, skipped`);
      continue;
    }
    const medium = fixed ?? FS_NAMES[statfsSync(dir).type] ?? "disk";
    const slow = medium !== "tmpfs";
    const ms = Math.max(40, (slow ? 1500 : 700) * scale);
    try {
      // Both systems side by side, one cell after the other, so that noise hits both alike.
      const log = PmLog.openFile(join(dir, "bench.pm"), { buffers: 8192 });
      const pool = log.pool;
      notes.push(`pmstack-log on ${medium}: ${pool.describe()}`);
      const fd = openSync(join(dir, "peer.log"), "w+");
      const zero = Buffer.alloc(1 << 20);
      for (let o = 0; o < SEGMENT; o += zero.length) writeSync(fd, zero, 0, zero.length, o);
      fdatasyncSync(fd);
      let n = 0;
      let pos = 0;
      let seq = 0;
      for (const [size, tag] of SIZES) {
        // the peer's record as a WAL writes it: 32-byte header (length, crc slot, seq), key, payload
        const rec = Buffer.alloc(32 + 16 + size);
        rec.set(payload.subarray(0, size), 48);
        for (const g of GROUPS) {
          const m = `${tag}_g${g}_${medium}`;
          // pmstack-log: payload into pool buffers, append its names, group commit
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
              log.append(`key-${n++ % KEYS}`, names);
              for (const nm of names) pool.free(nm.index); // the log holds its own reference
            }
            log.commit();
          };
          const sys0 = pool.stats.msyncCalls;
          const c0 = log.stats().commits;
          const a = timeGroups(pmGroup, ms, 5);
          const commits = log.stats().commits - c0;
          add("pmstack-log", `appends_per_s_${m}`, (a.lat.length * g) / a.seconds, "1/s");
          add("pmstack-log", `p50_us_${m}`, median(a.lat), "us");
          add("pmstack-log", `p99_us_${m}`, pct(a.lat, 99), "us");
          add("pmstack-log", `syscalls_per_commit_${m}`, (pool.stats.msyncCalls - sys0) / commits, "calls");
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
      const st = log.stats();
      notes.push(
        `pmstack-log on ${medium}: ${st.commits} commits, ${st.compactions} compaction passes, ` +
          `${st.liveKeys} live keys, log ${st.capacity} bytes`,
      );
      pool.close();
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
          "4096 buffers), pool open included",
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const ratios = [];
  for (const r of rows.filter((x) => x.system === "pmstack-log")) {
    const p = rows.find((x) => x.system === "fs-fdatasync" && x.metric === r.metric);
    if (!p || !p.value || !r.value || r.metric.startsWith("syscalls")) continue;
    const higher = r.metric.startsWith("appends");
    ratios.push({
      metric: r.metric,
      system: "pmstack-log",
      peer: "fs-fdatasync",
      ratio: higher ? r.value / p.value : p.value / r.value,
      better: higher ? "higher" : "lower",
    });
  }
  notes.push(
    "latency = one group from its first append to commit() returning (the wait of the group's first record)",
    "fs-fdatasync writes into a preallocated 16 MiB segment (no size change to flush): the peer's best case",
    "pmstack-log payloads are copied into pool buffers here (in PASTE they arrive there from the NIC)",
    "without DAX pmstack persists with msync: one call per commit step over the union of its ranges (PmLog's coalesce default), " +
      "on tmpfs (no writeback: the syscall is the cost) as on a block device (a device flush per call)",
  );
  return { rows, ratios, notes };
}

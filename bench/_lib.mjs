// Helpers shared by benchmarks.
import { spawn, spawnSync } from "node:child_process";
import { Session } from "node:inspector/promises";
import { GCProfiler, getHeapStatistics } from "node:v8";
import {
  closeSync,
  existsSync,
  fdatasyncSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import os from "node:os";
import { join } from "node:path";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * What a wrk run with bench/durable-post.lua (or durable-put.lua) reported: its `DURABLE {json}`
 * line from `r` ({status, signal, stdout, stderr}), with `rps` and `errCount` added.
 */
export function durableWrkResult(r) {
  const m = /DURABLE (\{.*\})/.exec(r.stdout);
  if (!m) throw new Error(`wrk failed (${r.status ?? r.signal}): ${r.stdout} ${r.stderr}`);
  const j = JSON.parse(m[1]);
  j.rps = j.requests / (j.duration_us / 1e6);
  j.errCount = Object.values(j.errors).reduce((x, y) => x + y, 0);
  return j;
}

/** Microseconds per clock tick of /proc's CPU times (getconf CLK_TCK, 100 on Linux). */
const TICK_US = 1e6 / (+spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).stdout || 100);

/** utime and stime (µs) of a /proc/.../stat line (fields 14 and 15, after the command name). */
function statTimes(text) {
  const f = text.slice(text.lastIndexOf(")") + 2).split(" "); // fields from 3 (state) on
  return { user: Number(f[11]) * TICK_US, system: Number(f[12]) * TICK_US };
}

/** CPU time of process `pid` so far, in µs, split: {user (utime), system (stime)}, all threads. */
export function cpuSplitUs(pid) {
  return statTimes(readFileSync(`/proc/${pid}/stat`, "utf8"));
}

/** CPU time (utime + stime, all threads) of process `pid` so far, in µs. */
export function cpuUs(pid) {
  const t = cpuSplitUs(pid);
  return t.user + t.system;
}

/** CPU time (utime + stime) of each thread of process `pid` so far, in µs, summed by thread name. */
export function threadCpuUs(pid) {
  const out = {};
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    let s;
    try {
      s = readFileSync(`/proc/${pid}/task/${t}/stat`, "utf8");
    } catch {
      continue; // the thread ended meanwhile
    }
    const name = s.slice(s.indexOf("(") + 1, s.lastIndexOf(")"));
    const c = statTimes(s);
    out[name] = (out[name] ?? 0) + c.user + c.system;
  }
  return out;
}

/**
 * Busy time of CPU `cpu` so far in µs (/proc/stat: user, nice, system, irq, softirq; not idle,
 * iowait or steal), or NaN for null. With a client pinned alone on that CPU this is what serving
 * the client costs there: the client and the kernel work done on that CPU for it.
 */
export function cpuBusyUs(cpu) {
  if (cpu === null) return NaN;
  const line = readFileSync("/proc/stat", "utf8")
    .split("\n")
    .find((l) => l.startsWith(`cpu${cpu} `));
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return (f[0] + f[1] + f[2] + f[5] + f[6]) * TICK_US;
}

/**
 * Every syscall of process `pid` (all its threads) while `during()` runs, by `strace -c -f
 * -p`: {res (what during() resolved to), calls (the total), top: [[name, count], ...] by count}.
 * The process must not spawn meanwhile (-f would follow the child).
 */
export async function straceCount(pid, during) {
  const out = join(os.tmpdir(), `pmstack-bench-strace-${process.pid}-${pid}.txt`);
  const st = spawn("strace", ["-c", "-f", "-U", "name,calls", "-S", "calls", "-o", out, "-p", String(pid)], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let err = "";
  st.stderr.on("data", (d) => (err += d));
  const closed = new Promise((r) => st.on("close", r));
  try {
    const end = Date.now() + 3000;
    while (!/attached/.test(err) && Date.now() < end && st.exitCode === null) await sleep(5);
    if (!/attached/.test(err)) throw new Error(`strace did not attach to ${pid}: ${err}`);
    await sleep(200); // every thread attached
    const res = await during();
    if (st.exitCode === null) st.kill("SIGINT");
    await Promise.race([closed, sleep(3000)]);
    const text = readFileSync(out, "utf8");
    const calls = [...text.matchAll(/^(\w+)\s+(\d+)\s*$/gm)].map((m) => [m[1], +m[2]]);
    const total = calls.find(([n]) => n === "total");
    if (!total) throw new Error(`strace -c gave no total: ${text}`);
    return { res, calls: total[1], top: calls.filter(([n]) => n !== "total") };
  } finally {
    if (st.exitCode === null && st.signalCode === null) st.kill("SIGKILL");
    rmSync(out, { force: true });
  }
}

/**
 * The floor a medium sets for durability, measured in directory `dir`: the median time of a
 * 512-byte pwrite + fdatasync into a pre-written file (what one durable commit costs at least),
 * and sequential bandwidth (64 MiB written, then one fdatasync). `scale` shortens the run.
 */
export function deviceFloor(dir, scale = 1) {
  const path = join(dir, "pmstack-floor.dat");
  const fd = openSync(path, "w+");
  try {
    // written in pages: a file written in 1 MiB pieces gets 1 MiB folios in the page cache, and
    // a small write + fdatasync into one costs ~1.5x as long on ext4 here
    const page = Buffer.alloc(4096, 7);
    for (let o = 0; o < 64 << 20; o += 4096) writeSync(fd, page, 0, 4096, o);
    fdatasyncSync(fd);
    const mib = Buffer.alloc(1 << 20, 7);
    const small = Buffer.alloc(512, 1);
    const lat = [];
    for (let k = 0; k < Math.max(20, Math.round(300 * scale)); k++) {
      const t0 = process.hrtime.bigint();
      writeSync(fd, small, 0, 512, (k * 4096) % (64 << 20));
      fdatasyncSync(fd);
      lat.push(Number(process.hrtime.bigint() - t0) / 1000);
    }
    const t0 = process.hrtime.bigint();
    for (let o = 0; o < 64; o++) writeSync(fd, mib, 0, mib.length, o << 20);
    fdatasyncSync(fd);
    const seqMBs = 64 / (Number(process.hrtime.bigint() - t0) / 1e9);
    return { fdatasyncUs: median(lat), seqMBs };
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
}

/**
 * A reader of the bytes written to the block device that holds `dir` so far (sectors written,
 * /sys/dev/block/MAJ:MIN/stat, x 512): everything the device took, the file system's own
 * journal included, from every process (measure on a quiet machine). null where `dir` has no
 * block device (tmpfs).
 */
export function deviceWrites(dir) {
  const dev = statSync(dir).dev;
  const major = (dev >>> 8) & 0xfff; // Linux's old_decode_dev/new_decode_dev for 32-bit numbers
  const minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
  const f = `/sys/dev/block/${major}:${minor}/stat`;
  if (!existsSync(f)) return null;
  return () => Number(readFileSync(f, "utf8").trim().split(/\s+/)[6]) * 512;
}

/** Median of an array of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs fn(iterations) `reps` times and returns the median ns per iteration. */
export function nsPerOp(fn, iterations, reps = 7) {
  fn(Math.min(iterations, 1000)); // warm up
  const t = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    fn(iterations);
    t.push(Number(process.hrtime.bigint() - t0) / iterations);
  }
  return median(t);
}

/** Ratio rows: for each metric both systems have, system / peer (or peer / system when lower is better). */
export function ratios(rows, system, peer, lowerIsBetter = false) {
  const out = [];
  for (const r of rows.filter((x) => x.system === system)) {
    const p = rows.find((x) => x.system === peer && x.metric === r.metric);
    if (!p || !p.value) continue;
    out.push({
      metric: r.metric,
      system,
      peer,
      ratio: lowerIsBetter ? p.value / r.value : r.value / p.value,
      better: lowerIsBetter ? "lower" : "higher",
    });
  }
  return out;
}

/** A markdown table: one line per (system, metric), then the ratios. */
export function formatTable(o) {
  const fmt = (v) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString("en-US") : Number(v.toPrecision(3)).toString());
  const lines = ["| system | metric | value | unit |", "|---|---|---:|---|"];
  for (const r of o.rows) lines.push(`| ${r.system} | ${r.metric} | ${fmt(r.value)} | ${r.unit} |`);
  if (o.ratios.length) {
    lines.push("", "| metric | system | peer | advantage (>1: system better) |", "|---|---|---|---:|");
    for (const q of o.ratios) lines.push(`| ${q.metric} | ${q.system} | ${q.peer} | ${q.ratio.toFixed(2)}x |`);
  }
  for (const n of o.notes) lines.push("", `note: ${n}`);
  return lines.join("\n");
}

/**
 * Starts recording what the JavaScript heap takes (v8.GCProfiler). stop() returns {allocated:
 * bytes, gcs, gcMs, gcMaxMs, gcsOver1ms}: what each GC found in use beyond what the previous one
 * left (the first: beyond what was in use at the start), then what is in use now beyond what the
 * last one left; the number of GCs, their time on the thread in all, the longest, and how many
 * took 1 ms or more.
 */
export function heapRecord() {
  const gc = new GCProfiler();
  const heap0 = getHeapStatistics().used_heap_size;
  gc.start();
  return {
    stop() {
      const rec = gc.stop();
      let allocated = 0;
      let after = heap0;
      let gcMs = 0;
      let gcMaxMs = 0;
      let gcsOver1ms = 0;
      for (const g of rec.statistics) {
        allocated += g.beforeGC.heapStatistics.usedHeapSize - after;
        after = g.afterGC.heapStatistics.usedHeapSize;
        const ms = g.cost / 1000; // µs on the thread, the pause it made
        gcMs += ms;
        if (ms > gcMaxMs) gcMaxMs = ms;
        if (ms >= 1) gcsOver1ms++;
      }
      allocated += getHeapStatistics().used_heap_size - after;
      return { allocated, gcs: rec.statistics.length, gcMs, gcMaxMs, gcsOver1ms };
    },
  };
}

/** Starts a V8 CPU profile of this thread (node:inspector, a sample every 100 µs); stop() resolves to the profile. */
export async function cpuProfile() {
  const session = new Session();
  session.connect();
  await session.post("Profiler.enable");
  await session.post("Profiler.setSamplingInterval", { interval: 100 });
  await session.post("Profiler.start");
  return {
    async stop() {
      const { profile } = await session.post("Profiler.stop");
      session.disconnect();
      return profile;
    },
  };
}

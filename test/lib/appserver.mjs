// The `pmstack` command (build/cli.js) as a second process for end-to-end tests: started inside
// a namespace the test made (test/lib/netns.mjs: `ip netns exec`, so its TAP device appears
// there and nowhere else, and Netns.cleanup() kills it by PID), killed with any signal at any
// moment, restarted over the same pool file. Its control socket (`<pm>.ctl`) answers `stats`
// like `pmstack stats --json`; clients (curl, redis-cli, node) run in the same namespace.
import { createConnection } from "node:net";
import { createHash } from "node:crypto";
import { createReadStream, openSync, readFileSync, writeSync, closeSync } from "node:fs";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { rng } from "./rng.mjs";

const root = fileURLToPath(new URL("../..", import.meta.url));
export const CLI = join(root, "build", "cli.js");

/** The command line startCli gives `pmstack <app>` (after the app's name). */
export function cliArgs({ pm, dev, ifname, us, peer, args = [] }) {
  return ["--pm", pm, "--ifname", ifname ?? dev, "--ip", `${us}/24`, "--peer-ip", `${peer}/24`, "--quiet", ...args];
}

/**
 * Starts `pmstack <app>` in namespace `ns` on a TAP device named `dev` with address `us`, and
 * gives the kernel's side `peer` (both /24 in 198.18.0.0/15). With `ifname` (AF_XDP on a veth
 * pair), pmstack binds `ifname` and `dev` is the kernel's end. Resolves once it listens, with
 * { proc, pid, out(), err(), exited, kill(sig), stats() }; rejects if it exits first.
 */
export async function startCli(ns, app, cfg) {
  const { dev, peer, pm, timeoutMs = 60_000 } = cfg;
  const proc = ns.spawn(process.execPath, [CLI, app, ...cliArgs(cfg)]);
  proc.stdin.end();
  let err = "";
  proc.stderr.on("data", (d) => (err += d));
  const exited = proc.done;
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`pmstack ${app} did not start: ${proc.out} ${err}`)), timeoutMs);
    const check = () => {
      if (proc.out.includes("stats: pmstack stats")) {
        clearTimeout(t);
        proc.stdout.off("data", check);
        resolve();
      }
    };
    proc.stdout.on("data", check);
    exited.then((r) => {
      clearTimeout(t);
      reject(new Error(`pmstack ${app} exited (${r.status ?? r.signal}): ${r.stdout} ${r.stderr}`));
    });
  });
  ns.ip(["link", "set", dev, "up"]);
  ns.ip(["addr", "replace", `${peer}/24`, "dev", dev]);
  return {
    proc,
    pid: proc.pid,
    pm,
    out: () => proc.out,
    err: () => err,
    exited,
    /** Sends `sig` (by PID) and waits for the exit. */
    async kill(sig = "SIGKILL") {
      if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, sig);
      return exited;
    },
    stats: () => control(`${pm}.ctl`, "stats"),
    /** The server's resident memory now, in bytes (the node process `ip netns exec` became). */
    rss: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"))?.[1] ?? 0) * 1024,
    /**
     * Waits until the server holds nothing but kept objects and the NIC's ring (every reply
     * sent and freed); its stats then.
     */
    idle(timeoutMs = 30_000) {
      return waitFor(
        async () => {
          const st = await control(`${pm}.ctl`, "stats");
          return st.pool.app === 0 && st.pool.stack === 0 ? st : null;
        },
        "the server to release its app and stack buffers",
        timeoutMs,
      );
    },
  };
}

/**
 * A slow client, run as `node -e STALL_CLIENT HOST PORT` in a namespace: it connects, sends
 * its stdin's bytes, then nothing; prints "SENT" once they are out, then how the connection
 * ended ("reset", "closed", or "open" if it lasted 15 s) and after how many ms, as JSON.
 */
export const STALL_CLIENT = `
const s = require("net").connect(+process.argv[2], process.argv[1]);
let t0 = 0;
const inp = [];
const done = (how) => { console.log(JSON.stringify({ how, ms: Date.now() - t0 })); process.exit(0); };
process.stdin.on("data", (d) => inp.push(d));
process.stdin.on("end", () => s.write(Buffer.concat(inp), () => { t0 = Date.now(); console.log("SENT"); }));
s.on("error", (e) => done(e.code === "ECONNRESET" ? "reset" : e.code));
s.on("close", () => done("closed"));
s.on("data", (d) => process.stderr.write(d));
setTimeout(() => done("open"), 15000);
`;

/** One request on a server's control socket ("stats" or "ss"): the parsed JSON answer. */
export function control(path, what = "stats", timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    let out = "";
    const t = setTimeout(() => {
      c.destroy();
      reject(new Error(`control socket ${path}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    c.setEncoding("utf8");
    c.on("connect", () => c.write(what + "\n"));
    c.on("data", (d) => (out += d));
    c.on("end", () => {
      clearTimeout(t);
      try {
        resolve(JSON.parse(out));
      } catch (e) {
        reject(e);
      }
    });
    c.on("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/** Runs `pmstack <args>` (stats, ss) to its end: { status, stdout, stderr }. */
export function runCli(args) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d) => (stdout += d));
    p.stderr.on("data", (d) => (stderr += d));
    p.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

/** Polls `pred()` (may be async) every `everyMs` until it is truthy; throws after `timeoutMs`. */
export async function waitFor(pred, what, timeoutMs = 30_000, everyMs = 50) {
  const t0 = Date.now();
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Writes `size` seeded pseudo-random bytes to `path` (1 MiB at a time) and returns their sha256
 * (hex) as { sha, shaNl } (shaNl: of the bytes and a newline after them, what `redis-cli --raw
 * GET` prints). The same seed and size always give the same bytes.
 */
export function writeRandomFile(path, size, seed) {
  const r = rng(seed);
  const h = createHash("sha256");
  const fd = openSync(path, "w");
  const block = Buffer.alloc(1 << 20);
  const w32 = new Uint32Array(block.buffer, block.byteOffset, block.length >>> 2);
  try {
    for (let at = 0; at < size; at += block.length) {
      // one 32-bit word per 4 bytes: cheap, and no two blocks alike
      let x = (r() * 0x100000000) >>> 0 || 1;
      for (let i = 0; i < w32.length; i++) {
        x ^= x << 13;
        x ^= x >>> 17;
        x ^= x << 5;
        w32[i] = x >>> 0;
      }
      const n = Math.min(block.length, size - at);
      const part = n === block.length ? block : block.subarray(0, n);
      writeSync(fd, part);
      h.update(part);
    }
  } finally {
    closeSync(fd);
  }
  const nl = h.copy().update("\n").digest("hex");
  return { sha: h.digest("hex"), shaNl: nl, size };
}

/** sha256 (hex) of a file, or of bytes [start, end) of it. */
export function sha256File(path, start = 0, end = Infinity) {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    const s = createReadStream(path, end === Infinity ? { start } : { start, end: end - 1 });
    s.on("data", (d) => h.update(d));
    s.on("end", () => resolve(h.digest("hex")));
    s.on("error", reject);
  });
}

export const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

/**
 * Runs `cmd args` inside namespace `ns` (registered with it, so its cleanup kills it by PID)
 * without keeping its stdout: the bytes are hashed as they come (sha256, count). stdin: the
 * file `inputFile`, or `input` (bytes or text). Resolves { status, signal, sha256, bytes, stdout (its
 * first 64 KiB, as text), stderr } at exit; `timeoutMs` kills it (SIGKILL, by PID) first.
 * The process is `p` on the returned promise, for a test that kills it itself.
 */
export function spawnIn(ns, cmd, args, { input, inputFile, timeoutMs = 120_000 } = {}) {
  const p = spawn("ip", ["netns", "exec", ns.name, cmd, ...args], { stdio: ["pipe", "pipe", "pipe"] });
  ns.children.add(p);
  const h = createHash("sha256");
  let n = 0;
  let head = "";
  let stderr = "";
  p.stdout.on("data", (d) => {
    h.update(d);
    n += d.length;
    if (head.length < 65536) head += d.toString("latin1");
  });
  p.stderr.on("data", (d) => (stderr += d));
  p.stdin.on("error", () => {}); // the command died before it read everything
  if (inputFile) createReadStream(inputFile).pipe(p.stdin);
  else p.stdin.end(input ?? "");
  let timedOut = false;
  const t = setTimeout(() => {
    timedOut = true;
    kill(p);
  }, timeoutMs);
  const done = new Promise((resolve) =>
    p.on("close", (status, signal) => {
      clearTimeout(t);
      ns.children.delete(p);
      resolve({ status, signal, sha256: h.digest("hex"), bytes: n, stdout: head, stderr, timedOut });
    }),
  );
  done.p = p;
  return done;
}

/** SIGKILL to a process we started, by PID, if it still runs. */
export function kill(p, sig = "SIGKILL") {
  if (p.exitCode === null && p.signalCode === null && p.pid) {
    try {
      process.kill(p.pid, sig);
    } catch {
      // gone already
    }
  }
}

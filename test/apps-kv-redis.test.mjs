// Differential test: the same string-family commands to pmstack's kv (KvApp in memory, two
// stacks over a MemoryLink) and to a real redis-server (Debian's /usr/bin/redis-server, started
// here on a unix socket only: --port 0, so no network traffic), pipelined in the same batches;
// every reply must be identical. Seeded (PMSTACK_DIFF_SEEDS=1,2,... for more). Inputs where
// pmstack differs on purpose (docs/apps.md: keys of 1 to 1024 bytes, DBSIZE never counting an
// expired key, values bounded by the pool) are not generated. The redis-server is killed by its
// PID at the end.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { scratchDir } from "./lib/tmp.mjs";
import { rng } from "./lib/rng.mjs";
import { ByteQueue, cat, cmd, kvPair, parseReply, reachable } from "./lib/memclient.mjs";

const REDIS = "/usr/bin/redis-server";
const SEEDS = process.env.PMSTACK_DIFF_SEEDS ? process.env.PMSTACK_DIFF_SEEDS.split(",").map(Number) : [1, 2, 3, 4];

/** A redis-server of our own on a unix socket in a scratch directory. */
async function startRedis() {
  const dir = scratchDir("tmpfs");
  const sock = join(dir, "redis.sock");
  const args = ["--port", "0", "--unixsocket", sock, "--save", "", "--appendonly", "no", "--dir", dir];
  const child = spawn(REDIS, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (b) => (stderr += b));
  const exited = new Promise((res) => child.once("exit", res));
  const kill = () => {
    try {
      process.kill(child.pid, "SIGKILL");
    } catch {
      /* gone already */
    }
  };
  process.once("exit", kill); // whatever happens to the test, the server goes with it
  for (let k = 0; k < 200 && !existsSync(sock); k++) {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${stderr}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!existsSync(sock)) {
    kill();
    throw new Error(`redis-server did not open ${sock}: ${stderr}`);
  }
  return {
    sock,
    pid: child.pid,
    async stop() {
      process.kill(child.pid, "SIGTERM");
      const t = setTimeout(kill, 5000);
      await exited;
      clearTimeout(t);
      process.removeListener("exit", kill);
    },
  };
}

/** A RESP2 client on a unix socket: call(cmds) pipelines them and resolves with the replies. */
async function redisClient(sock) {
  const s = createConnection(sock);
  await new Promise((res, rej) => (s.once("connect", res), s.once("error", rej)));
  const q = new ByteQueue();
  let wake = null;
  s.on("data", (b) => {
    q.push(b);
    wake?.();
  });
  return {
    async call(cmds) {
      s.write(cat(cmds.map((c) => cmd(...c))));
      const got = [];
      for (;;) {
        for (let r = parseReply(q.view(), 0); r; r = parseReply(q.view(), 0)) {
          got.push(r[0]);
          q.consume(r[1]);
        }
        if (got.length >= cmds.length) return got;
        await new Promise((res) => (wake = res));
        wake = null;
      }
    },
    close() {
      s.destroy();
    },
  };
}

/** A reply as a comparable string (bulk strings by length and content). */
const show = (v) =>
  v === null
    ? "(nil)"
    : v instanceof Uint8Array
      ? v.length > 80
        ? `$${v.length}:${Buffer.from(v).toString("base64").slice(0, 60)}...${hash(v)}`
        : JSON.stringify(Buffer.from(v).toString("latin1"))
      : Array.isArray(v)
        ? `[${v.map(show).join(", ")}]`
        : JSON.stringify(v);

function hash(b) {
  let x = 2166136261;
  for (let i = 0; i < b.length; i++) x = Math.imul(x ^ b[i], 16777619);
  return (x >>> 0).toString(16);
}

/** A command for a message: long arguments shortened. */
const showCmd = (c) =>
  c
    .map((a) =>
      typeof a === "string" ? (a.length > 40 ? `${a.slice(0, 40)}...(${a.length})` : a) : `<${a.length} bytes>`,
    )
    .join(" ");

/** TTL and PTTL run on two clocks a few ms apart: equal within a second. */
function same(c, a, b) {
  const name = String(c[0]).toUpperCase();
  if ((name === "PTTL" || name === "TTL") && typeof a === "number" && typeof b === "number" && a >= 0 && b >= 0)
    return Math.abs(a - b) <= (name === "PTTL" ? 1000 : 1);
  return show(a) === show(b);
}

/** Both servers, and a way to compare a batch of commands on them. */
async function pair() {
  const redis = await startRedis();
  const rc = await redisClient(redis.sock);
  const h = kvPair({ now: Date.now, buffers: 16384 });
  const c = h.connect();
  return {
    h,
    /** Runs a pipelined batch on both; returns the mismatches. */
    async batch(cmds) {
      const want = await rc.call(cmds);
      const got = h.call(c, cmds);
      const bad = [];
      cmds.forEach((q, i) => {
        if (!same(q, got[i], want[i]))
          bad.push(`${showCmd(q)}\n      redis:   ${show(want[i])}\n      pmstack: ${show(got[i])}`);
      });
      return bad;
    },
    async close() {
      rc.close();
      await redis.stop();
      h.close();
    },
  };
}

const hasRedis = existsSync(REDIS);
if (!hasRedis) console.log(`# skipped: ${REDIS} not installed`);

const now = () => Math.floor(Date.now() / 1000);

/** Fixed cases where the two must agree (edges of every command's arguments). */
const FIXED = () => [
  // GETRANGE's index arithmetic
  ["SET", "gr", "hello"],
  ["GETRANGE", "gr", "0", "-1"],
  ["GETRANGE", "gr", "0", "-100"],
  ["GETRANGE", "gr", "-1", "-5"],
  ["GETRANGE", "gr", "-100", "-100"],
  ["GETRANGE", "gr", "-100", "100"],
  ["GETRANGE", "gr", "10", "20"],
  ["GETRANGE", "gr", "3", "1"],
  ["GETRANGE", "gr", "-3", "-1"],
  ["GETRANGE", "gr", "4", "4"],
  ["GETRANGE", "gr", "5", "5"],
  ["GETRANGE", "gr", "0", "9223372036854775807"],
  ["GETRANGE", "gr", "-9223372036854775808", "2"],
  ["GETRANGE", "gr", "a", "1"],
  ["GETRANGE", "gr", "1", "9223372036854775808"],
  ["GETRANGE", "none", "0", "-1"],
  ["GETRANGE", "none", "x", "-1"],
  ["SUBSTR", "gr", "1", "3"],
  ["SET", "empty", ""],
  ["GETRANGE", "empty", "0", "-1"],
  ["GETRANGE", "empty", "-1", "0"],
  // SETRANGE
  ["SETRANGE", "none", "0", ""],
  ["EXISTS", "none"],
  ["SETRANGE", "none", "5", ""],
  ["SETRANGE", "none", "-1", "x"],
  ["SETRANGE", "none", "abc", "x"],
  ["SETRANGE", "none", "536870911", "xy"],
  ["SETRANGE", "gr", "9223372036854775807", "x"],
  ["SETRANGE", "gr", "0", ""],
  ["SETRANGE", "gr", "7", "XY"],
  ["GET", "gr"],
  ["SETRANGE", "gr", "1", "a"],
  ["GET", "gr"],
  ["SETRANGE", "sr", "3", "abc"],
  ["GET", "sr"],
  ["SETRANGE", "empty", "0", "z"],
  ["GET", "empty"],
  // APPEND, STRLEN
  ["APPEND", "ap", ""],
  ["EXISTS", "ap"],
  ["STRLEN", "ap"],
  ["APPEND", "ap", "abc"],
  ["APPEND", "ap", "def"],
  ["GET", "ap"],
  ["STRLEN", "none"],
  // SETNX, GETSET, GETDEL
  ["SETNX", "nx", "1"],
  ["SETNX", "nx", "2"],
  ["GET", "nx"],
  ["GETSET", "nx", "3"],
  ["GETSET", "gs", "1"],
  ["GET", "gs"],
  ["GETDEL", "gs"],
  ["GETDEL", "gs"],
  ["EXISTS", "gs"],
  // SETEX, PSETEX
  ["SETEX", "se", "100", "v"],
  ["TTL", "se"],
  ["SETEX", "se", "0", "v"],
  ["SETEX", "se", "-1", "v"],
  ["SETEX", "se", "abc", "v"],
  ["SETEX", "se", "9223372036854775807", "v"],
  ["PSETEX", "se", "0", "v"],
  ["PSETEX", "se", "-5", "v"],
  ["PSETEX", "se", "100000", "w"],
  ["GET", "se"],
  ["PTTL", "se"],
  ["SETEX", "se", "10"],
  // GETEX
  ["SET", "gx", "v", "EX", "100"],
  ["GETEX", "gx"],
  ["TTL", "gx"],
  ["GETEX", "gx", "PERSIST"],
  ["TTL", "gx"],
  ["GETEX", "gx", "EX", "200"],
  ["TTL", "gx"],
  ["GETEX", "gx", "PX", "300000"],
  ["PTTL", "gx"],
  ["GETEX", "gx", "EXAT", String(now() + 400)],
  ["TTL", "gx"],
  ["GETEX", "gx", "PXAT", String(Date.now() + 500_000)],
  ["TTL", "gx"],
  ["GETEX", "gx", "persist", "persist"],
  ["TTL", "gx"],
  ["GETEX", "gx", "EX", "0"],
  ["GETEX", "gx", "EX", "-5"],
  ["GETEX", "gx", "PX", "abc"],
  ["GETEX", "gx", "PXAT", "0"],
  ["GETEX", "gx", "EX", "10", "PERSIST"],
  ["GETEX", "gx", "PERSIST", "EX", "10"],
  ["GETEX", "gx", "EX"],
  ["GETEX", "gx", "BOGUS"],
  ["GETEX", "gx", "EX", "10", "PX", "10"],
  ["GETEX", "gx", "KEEPTTL"],
  ["GETEX", "gx", "NX"],
  ["GETEX", "none"],
  ["GETEX", "none", "PERSIST"],
  ["GETEX", "gx", "EXAT", "1"],
  ["EXISTS", "gx"],
  // EXPIRE family, options and their errors
  ["SET", "e", "v"],
  ["EXPIRE", "e", "100", "XX"],
  ["EXPIRE", "e", "100", "GT"],
  ["EXPIRE", "e", "100", "LT"],
  ["TTL", "e"],
  ["EXPIRE", "e", "50", "NX"],
  ["EXPIRE", "e", "200", "GT"],
  ["TTL", "e"],
  ["EXPIRE", "e", "100", "GT"],
  ["EXPIRE", "e", "300", "LT"],
  ["EXPIRE", "e", "150", "LT"],
  ["TTL", "e"],
  ["EXPIRE", "e", "140", "XX", "GT"], // not greater whatever the ms between (150 would tie within one ms)
  ["EXPIRE", "e", "160", "xx", "gt"],
  ["TTL", "e"],
  ["EXPIRE", "e", "10", "NX", "XX"],
  ["EXPIRE", "e", "10", "NX", "GT"],
  ["EXPIRE", "e", "10", "NX", "LT"],
  ["EXPIRE", "e", "10", "GT", "LT"],
  ["EXPIRE", "e", "10", "BOGUS"],
  ["EXPIRE", "e", "abc"],
  ["EXPIRE", "e", "1.5"],
  ["EXPIRE", "e", "9999999999999999"],
  ["PEXPIRE", "e", "9223372036854775807"],
  ["PEXPIRE", "e", "123456", "XX"],
  ["PTTL", "e"],
  ["EXPIREAT", "e", String(now() + 1000)],
  ["TTL", "e"],
  ["PEXPIREAT", "e", String(Date.now() + 2_000_000), "GT"],
  ["TTL", "e"],
  ["PERSIST", "e"],
  ["PERSIST", "e"],
  ["TTL", "e"],
  ["EXPIRE", "e", "10", "LT"],
  ["TTL", "e"],
  ["EXPIRE", "none", "10"],
  ["EXPIRE", "none", "10", "XX", "GT"],
  ["PERSIST", "none"],
  ["TTL", "none"],
  ["PTTL", "none"],
  ["EXPIRE", "e", "-1"],
  ["EXISTS", "e"],
  ["SET", "e", "v"],
  ["EXPIREAT", "e", "1"],
  ["EXISTS", "e"],
  ["SET", "e", "v"],
  ["PEXPIREAT", "e", "0"],
  ["EXISTS", "e"],
  ["SET", "e", "v"],
  ["EXPIRE", "e", "0"],
  ["EXISTS", "e"],
  ["EXPIRE", "e"],
  // SET's options
  ["SET", "s", "v", "EX", "10", "PX", "20"],
  ["SET", "s", "v", "KEEPTTL", "KEEPTTL"],
  ["SET", "s", "v", "NX", "NX"],
  ["SET", "s", "v", "GET", "GET"],
  ["SET", "s", "v", "PXAT", "0"],
  ["SET", "s", "v", "EXAT", "-1"],
  ["SET", "s", "v", "EX", "10", "KEEPTTL"],
  ["SET", "s", "v", "KEEPTTL", "EX", "10"],
  ["SET", "s", "v", "NX", "XX"],
  ["SET", "s", "w", "XX", "GET"],
  ["SET", "s2", "w", "NX", "GET"],
  ["SET", "s2", "x", "NX", "GET"],
  ["SET", "s", "v", "PX", "9223372036854775807"],
  // INCRBYFLOAT where a double and a long double agree
  ["SET", "f", "10.50"],
  ["INCRBYFLOAT", "f", "0.1"],
  ["INCRBYFLOAT", "f", "-5"],
  ["SET", "f", "5.0e3"],
  ["INCRBYFLOAT", "f", "2.0e2"],
  ["INCRBYFLOAT", "f2", "3"],
  ["INCRBYFLOAT", "f2", "-3"],
  ["INCRBYFLOAT", "f2", "-0.5"],
  ["INCRBYFLOAT", "f2", "1.5e-10"],
  ["INCRBYFLOAT", "f3", "1e21"],
  ["INCRBYFLOAT", "f3", "-1E21"],
  ["INCRBYFLOAT", "f3", "1E2"],
  ["INCRBYFLOAT", "f4", "-0"],
  ["INCRBYFLOAT", "f4", "+1"],
  ["SET", "f5", "1.0"],
  ["INCRBYFLOAT", "f5", "1"],
  ["SET", "f5", "007"],
  ["INCRBYFLOAT", "f5", "1"],
  ["SET", "f5", ".5"],
  ["INCRBYFLOAT", "f5", "1"],
  ["SET", "f5", "5."],
  ["INCRBYFLOAT", "f5", "1"],
  ["SET", "f5", "+5"],
  ["INCRBYFLOAT", "f5", "1"],
  ["SET", "f5", "-0"],
  ["INCRBYFLOAT", "f5", "0"],
  ["SET", "f5", "1.5e"],
  ["INCRBYFLOAT", "f5", "1"],
  ["SET", "f5", "abc"],
  ["INCRBYFLOAT", "f5", "1"],
  ["INCRBYFLOAT", "f6", "abc"],
  ["INCRBYFLOAT", "f6", " 1"],
  ["INCRBYFLOAT", "f6", "1 "],
  ["INCRBYFLOAT", "f6", ""],
  ["INCRBYFLOAT", "f6", "nan"],
  ["INCRBYFLOAT", "f6", "inf"],
  ["INCRBYFLOAT", "f6", "-infinity"],
  ["EXISTS", "f6"],
  ["SET", "f7", "1", "EX", "100"],
  ["INCRBYFLOAT", "f7", "0.5"],
  ["TTL", "f7"],
  ["APPEND", "f7", "5"],
  ["TTL", "f7"],
  ["SETRANGE", "f7", "0", "2"],
  ["TTL", "f7"],
  ["GET", "f7"],
  ["INCR", "f7"],
  ["GETSET", "f7", "1"],
  ["TTL", "f7"],
  // integers
  ["SET", "n", "-0"],
  ["INCR", "n"],
  ["SET", "n", "9223372036854775807"],
  ["INCR", "n"],
  ["DECRBY", "n", "-9223372036854775808"],
  ["SET", "n", "-9223372036854775808"],
  ["DECR", "n"],
  ["INCRBY", "n", "9223372036854775807"],
  ["INCRBY", "n", "1.0"],
  // arity and unknown commands
  ["GETRANGE", "gr", "1"],
  ["SETRANGE", "gr", "1"],
  ["GETDEL"],
  ["GETEX"],
  ["PERSIST", "a", "b"],
  ["INCRBYFLOAT", "f"],
  ["APPEND", "a"],
  ["SETNX", "a"],
  ["PSETEX", "a", "1"],
  ["PEXPIREAT", "a"],
  // the order of Redis's checks: GETEX looks the key up before the time, EXPIRE parses its
  // options before it
  ["GETEX", "none", "EX", "0"],
  ["GETEX", "none", "EX", "abc"],
  ["SET", "e", "v"],
  ["EXPIRE", "e", "abc", "BOGUS"],
  ["EXPIRE", "e", "abc", "NX", "XX"],
  // a repeated EX or PX: the last one counts (Redis 7.0)
  ["SET", "r", "v", "EX", "10", "EX", "20"],
  ["TTL", "r"],
  ["SET", "r", "v", "EX", "10", "PX", "20"],
  ["GETEX", "r", "EX", "10", "EX", "30"],
  ["TTL", "r"],
  // expiry times far out, up to Redis's int64 bounds
  ["SETEX", "big", "100000000000000", "v"],
  ["EXPIRE", "big", "1000000000000000"],
  ["PEXPIREAT", "big", "9223372036854775807"],
  ["EXISTS", "big"],
  ["EXPIRE", "big", "9223372036854775"],
  ["EXPIRE", "big", "9223372036854776"],
  ["PEXPIRE", "big", "9223372036854775807"],
  ["SET", "big", "v", "EX", "9223372036854775807"],
  // INCRBYFLOAT in long double: decimals that a double cannot hold, huge and tiny values
  ["INCRBYFLOAT", "ld", "0.1"],
  ["INCRBYFLOAT", "ld", "0.2"],
  ["INCRBYFLOAT", "ld", "0.7"],
  ["SET", "ld", "123456789012345678"],
  ["INCRBYFLOAT", "ld", "1"],
  ["INCRBYFLOAT", "ld2", "1e-18"],
  ["INCRBYFLOAT", "ld3", "1e300"],
  ["INCRBYFLOAT", "ld3", "1e300"],
  ["INCRBYFLOAT", "ld4", "1e5000"],
  ["INCRBYFLOAT", "ld4", "1e-5000"],
  ["INCRBYFLOAT", "ld4", "0x1p3"],
  ["INCRBYFLOAT", "ld4", "-0.00000000000000001"],
  ["INCRBYFLOAT", "ld5", "3.14159265358979323846264338327950288"],
  ["INCRBYFLOAT", "ld5", "2.71828182845904523536028747135266249"],
];

/**
 * Random string-family commands over a few keys: values short and long (up to 200 KB, kept as
 * extent trees), every option of SET, GETEX and EXPIRE, valid and not, integer and float
 * arithmetic on keys kept numeric, ranges inside, across and beyond values.
 */
function generator(seed) {
  const r = rng(seed);
  const pick = (xs) => xs[r.int(xs.length)];
  const keys = ["k0", "k1", "k2", "k3"];
  const nums = ["n0", "n1"];
  const floats = ["f0", "f1"];
  const lens = new Map(); // a rough idea of each key's length, for offsets near it
  const int = () =>
    r() < 0.7
      ? String(r.int(4000) - 2000)
      : pick(["0", "-1", "1", "abc", "", "1.5", "+1", "007", " 1", "9223372036854775807", "-9223372036854775808"]);
  const value = () => {
    const x = r();
    if (x < 0.3) return pick(["", "a", "hello", "10", "-3", "1.5", "007", "abc", "9223372036854775806"]);
    const n = x < 0.75 ? r.int(80) : x < 0.95 ? 80 + r.int(4000) : 10_000 + r.int(200_000);
    const v = new Uint8Array(n);
    const b = r.int(256);
    for (let i = 0; i < n; i++) v[i] = (b + i * 7 + (i >> 9)) & 0xff;
    return v;
  };
  const near = (k) => {
    const n = lens.get(k) ?? 0;
    return String(pick([0, 1, n - 1, n, n + 1, n + 10, r.int(n + 1), n + r.int(5000), r.int(3)]));
  };
  const idx = (k) => {
    const n = lens.get(k) ?? 10;
    return String(pick([0, -1, 1, -n, n, n - 1, -n - 5, r.int(2 * n + 10) - n - 5, 9223372036854775807n, -100]));
  };
  const exOpt = () =>
    pick([
      ["EX", String(100 + r.int(5000))],
      ["PX", String(100_000 + r.int(5_000_000))],
      ["EXAT", String(now() + 100 + r.int(5000))],
      ["PXAT", String(Date.now() + 100_000 + r.int(5_000_000))],
      ["EX", pick(["0", "-1", "abc"])],
    ]);
  const setOpts = () => {
    const o = [];
    if (r() < 0.3) o.push(pick(["NX", "XX"]));
    if (r() < 0.2) o.push("GET");
    if (r() < 0.3) o.push(...exOpt());
    else if (r() < 0.1) o.push("KEEPTTL");
    if (r() < 0.05) o.push(pick(["BOGUS", "NX", "EX"]));
    return o;
  };
  const expireArgs = (name) => {
    const abs = name.endsWith("AT");
    const ms = name.startsWith("P");
    let t;
    if (r() < 0.15) t = pick(["-1", "0", "abc", abs ? "1" : "-100"]);
    else if (abs) t = String(ms ? Date.now() + 100_000 + r.int(5_000_000) : now() + 100 + r.int(5000));
    else t = String(ms ? 100_000 + r.int(5_000_000) : 100 + r.int(5000));
    const opts = [];
    if (r() < 0.5) opts.push(pick(["NX", "XX", "GT", "LT"]));
    if (r() < 0.15) opts.push(pick(["NX", "XX", "GT", "LT", "BOGUS"]));
    return [t, ...opts];
  };
  const one = () => {
    const k = pick(keys);
    const x = r.int(100);
    const note = (n) => lens.set(k, n);
    if (x < 12) {
      const v = value();
      note(v.length);
      return [["SET", k, v, ...setOpts()]];
    }
    if (x < 20) return [[pick(["GET", "STRLEN", "EXISTS", "TTL", "PTTL"]), k]];
    if (x < 27) {
      const v = value();
      lens.set(k, (lens.get(k) ?? 0) + v.length);
      return [["APPEND", k, v]];
    }
    if (x < 34) return [["SETRANGE", k, r() < 0.05 ? pick(["-1", "abc"]) : near(k), value()]];
    if (x < 43) return [["GETRANGE", k, idx(k), idx(k)]];
    if (x < 46) return [["SETNX", k, value()]];
    if (x < 49) return [[pick(["SETEX", "PSETEX"]), k, pick(["100", "1000", "123456", "0", "-1", "x"]), value()]];
    if (x < 52) return [["GETSET", k, value()]];
    if (x < 54) return [["GETDEL", k]];
    if (x < 60) {
      const o = r() < 0.2 ? ["PERSIST"] : r() < 0.7 ? exOpt() : r() < 0.5 ? [] : [pick(["BOGUS", "EX", "KEEPTTL"])];
      return [["GETEX", k, ...o]];
    }
    if (x < 68) {
      const name = pick(["EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"]);
      return [[name, k, ...expireArgs(name)]];
    }
    if (x < 71) return [["PERSIST", k]];
    if (x < 74) return [["DEL", k, ...(r() < 0.3 ? [pick(keys)] : [])]];
    if (x < 77) return [["MGET", ...keys.slice(0, 1 + r.int(keys.length))]];
    if (x < 79) return [[pick(["MSET", "MSETNX"]), k, value(), pick(keys), value()]];
    if (x < 88) {
      const n = pick(nums);
      const op = pick(["INCR", "DECR", "INCRBY", "DECRBY", "SET", "GET"]);
      if (op === "INCR" || op === "DECR" || op === "GET") return [[op, n]];
      if (op === "SET") return [["SET", n, int()]];
      return [[op, n, int()]];
    }
    if (x < 96) {
      // decimal increments too (a long double's rounding shows), huge and tiny ones
      const f = pick(floats);
      const inc =
        r() < 0.4
          ? `${r() < 0.5 ? "-" : ""}${r.int(1000)}.${r.int(1e6)}${r() < 0.3 ? `e${r.int(40) - 20}` : ""}`
          : pick(["0.5", "-0.25", "0.1", "0.7", "1", "10", "-3.75", "1e3", "2.5e2", "-1.5E1", "1e4000", "1e-30"]);
      if (r() < 0.15) return [["SET", f, pick(["1.5", "10", "-2.25", "abc", "3e2"])]];
      return [["INCRBYFLOAT", f, inc]];
    }
    return [
      pick([
        ["GETRANGE", k, "1"],
        ["SETRANGE", k, "1"],
        ["GETEX"],
        ["APPEND", k],
        ["SETEX", k, "10"],
        ["INCRBYFLOAT", k],
      ]),
    ];
  };
  return () => {
    const out = [];
    const n = 1 + r.int(r() < 0.5 ? 4 : 20);
    while (out.length < n) out.push(...one());
    return out;
  };
}

if (hasRedis) {
  test("fixed edge cases: every reply as Redis 7 gives it", async () => {
    const p = await pair();
    try {
      const cmds = FIXED();
      const bad = [];
      for (let at = 0; at < cmds.length; at += 25) bad.push(...(await p.batch(cmds.slice(at, at + 25))));
      assert.ok(bad.length === 0, `${bad.length} differences:\n    ${bad.join("\n    ")}`);
    } finally {
      await p.close();
    }
  });

  for (const seed of SEEDS)
    test(`random string commands (seed ${seed}): replies identical to Redis's; no buffer leaked`, async () => {
      const p = await pair();
      try {
        const next = generator(seed);
        const bad = [];
        let n = 0;
        while (n < 400 && bad.length === 0) {
          const cmds = next();
          n += cmds.length;
          bad.push(...(await p.batch(cmds)));
        }
        assert.ok(bad.length === 0, `seed ${seed}, after ${n} commands:\n    ${bad.join("\n    ")}`);
        assert.equal(await p.batch([["FLUSHALL"]]), []);
        const h = p.h;
        h.settle();
        const live = reachable(h.srv.pool, h.log);
        assert.is(live.size, 0);
        const arena = h.app.store.arena.current;
        assert.is(h.srv.pool.check().kept, arena >= 0 ? 1 : 0, "only the arena's buffer stays kept");
      } finally {
        await p.close();
      }
    });
} else test("redis-server not installed: nothing to compare against", () => {});

test.run();

// End to end: the durable key-value store (KvApp) on pmstack over TAP, with redis-cli and
// redis-benchmark in a namespace as the clients. Every supported command through redis-cli,
// redis-benchmark with no errors, then a restart of the server (close, reopen the same PM file)
// and every acknowledged key read back byte-exact. Then `pmstack kv` (build/cli.js, a second
// process) on a 1 GiB pool on the disk: a 48 MiB value through redis-cli -x SET / GET (sha256),
// STRLEN, GETRANGE, APPEND and SETRANGE on it; and a client that stalls inside a value is
// aborted after --idle-timeout with every buffer back. Kill -9 during large SETs: e2e-crash.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { KvApp, serve } from "../build/index.js";
import { Netns, netnsUnavailable, leftovers } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { rng } from "./lib/rng.mjs";
import { startCli, spawnIn, writeRandomFile, waitFor, sleep, STALL_CLIENT } from "./lib/appserver.mjs";

const hasCli = spawnSync("sh", ["-c", "command -v redis-cli && command -v redis-benchmark"]).status === 0;
const why = netnsUnavailable() ?? (hasCli ? null : "redis-cli/redis-benchmark not installed (package redis-tools)");
if (why) console.warn(`\n!!! e2e-kv: SKIPPED: ${why}\n`);
const it = why ? test.skip : test;
const US = "198.18.8.2";
const DEV = "pmtapkv0";

function start(ns, path) {
  const srv = serve(
    {
      path,
      buffers: 8192,
      mac: "02:00:00:00:08:02",
      ip: `${US}/24`,
      tap: { name: DEV, netns: ns.path },
    },
    (stack, log) => new KvApp(stack, log, 6379),
  );
  ns.ip(["link", "set", DEV, "up"]);
  ns.ip(["addr", "replace", "198.18.8.1/24", "dev", DEV]);
  return srv;
}

/** Runs redis-cli in the namespace: stdout as bytes and text, stderr, exit status. */
async function cli(ns, args, input) {
  const p = ns.spawn("redis-cli", ["-h", US, "-p", "6379", ...args]);
  const chunks = [];
  p.stdout.on("data", (d) => chunks.push(d));
  p.stdin.end(input ?? "");
  const t = setTimeout(() => p.kill("SIGKILL"), 20_000);
  const r = await p.done;
  clearTimeout(t);
  const out = Buffer.concat(chunks);
  return { out, text: out.toString("utf8"), err: r.stderr, status: r.status };
}

/** One command, formatted output (--no-raw): `"v"`, `(integer) 3`, `(nil)`, `(error) ERR ...`. */
async function one(ns, ...args) {
  const r = await cli(ns, ["--no-raw", ...args]);
  assert.is(r.status, 0, r.err);
  return r.text.trimEnd();
}

it("every command through redis-cli, redis-benchmark, and a restart that reads every acknowledged key back", async () => {
  const ns = new Netns("kv");
  const path = join(scratchDir("disk"), "kv.pm");
  let srv;
  const acked = new Map(); // key -> Buffer, every SET that was answered OK
  try {
    srv = start(ns, path);
    assert.is(await one(ns, "PING"), "PONG");
    assert.is(await one(ns, "ECHO", "hello pmstack"), '"hello pmstack"');
    assert.is(await one(ns, "SET", "greeting", "hi there"), "OK");
    acked.set("greeting", Buffer.from("hi there"));
    assert.is(await one(ns, "GET", "greeting"), '"hi there"');
    assert.is(await one(ns, "GET", "missing"), "(nil)");
    assert.is(await one(ns, "SET", "greeting", "no", "NX"), "(nil)");
    assert.is(await one(ns, "SET", "other", "no", "XX"), "(nil)");
    assert.is(await one(ns, "SET", "greeting", "hello", "XX"), "OK");
    acked.set("greeting", Buffer.from("hello"));
    assert.is(await one(ns, "SET", "session", "abc", "EX", "1000"), "OK");
    acked.set("session", Buffer.from("abc"));
    assert.is(await one(ns, "TTL", "session"), "(integer) 1000");
    assert.is(await one(ns, "SET", "brief", "x", "PX", "150"), "OK");
    await new Promise((r) => setTimeout(r, 300));
    assert.is(await one(ns, "GET", "brief"), "(nil)", "expired after 150 ms");
    assert.is(await one(ns, "MSET", "m1", "one", "m2", "two", "m3", "three"), "OK");
    for (const [k, v] of [
      ["m1", "one"],
      ["m2", "two"],
      ["m3", "three"],
    ])
      acked.set(k, Buffer.from(v));
    assert.is(await one(ns, "MGET", "m1", "nope", "m3"), '1) "one"\n2) (nil)\n3) "three"');
    assert.is(await one(ns, "EXISTS", "m1", "m2", "nope"), "(integer) 2");
    assert.is(await one(ns, "SET", "gone", "soon"), "OK");
    assert.is(await one(ns, "DEL", "gone", "nope"), "(integer) 1");
    assert.is(await one(ns, "EXISTS", "gone"), "(integer) 0");
    for (let k = 1; k <= 5; k++) assert.is(await one(ns, "INCR", "visits"), `(integer) ${k}`);
    acked.set("visits", Buffer.from("5"));
    assert.is(await one(ns, "INCR", "greeting"), "(error) ERR value is not an integer or out of range");
    assert.is(await one(ns, "DBSIZE"), `(integer) ${acked.size}`);
    assert.match(await one(ns, "FOO", "bar"), "(error) ERR unknown command 'FOO', with args beginning with: 'bar'");
    assert.is(await one(ns, "GET"), "(error) ERR wrong number of arguments for 'get' command");
    assert.is(await one(ns, "SET", "a", "b", "BAD"), "(error) ERR syntax error");
    const info = (await cli(ns, ["INFO"])).text;
    for (const s of ["Server", "Clients", "Memory", "Persistence", "Stats", "Keyspace"])
      assert.ok(info.includes(`# ${s}`), s);
    assert.match(info, `db0:keys=${acked.size},expires=1`);
    assert.match(await one(ns, "COMMAND", "COUNT"), /^\(integer\) \d+$/);
    assert.match(await one(ns, "CONFIG", "GET", "appendonly"), '1) "appendonly"\n2) "yes"');
    assert.is(await one(ns, "HELLO", "3"), "(error) NOPROTO sorry, this protocol version is not supported");
    // interactive mode over one connection: redis-cli asks COMMAND DOCS first, then runs each line
    const repl = await cli(
      ns,
      [],
      "CLIENT SETNAME e2e\nCLIENT GETNAME\nCLIENT ID\nSET lines 42\nINCR lines\nFLUSHALL\nDBSIZE\n",
    );
    assert.is(repl.status, 0, repl.err);
    assert.equal(repl.text.trim().split("\n").slice(0, 2), ["OK", "e2e"]);
    assert.match(repl.text, /OK\n43\nOK\n0\n$/);
    assert.is(await one(ns, "DBSIZE"), "(integer) 0");
    acked.clear();
    // binary values of many sizes, given on stdin (-x) and read back raw
    const r = rng(80);
    for (let k = 0; k < 24; k++) {
      const size = [1, 63, 64, 65, 1000, 1448, 3000, 9000, 20000, 40000][k % 10] + k;
      const v = Buffer.alloc(size);
      for (let i = 0; i < size; i++) v[i] = r.int(256);
      const s = await cli(ns, ["-x", "SET", `bin:${k}`], v);
      assert.is(s.text, "OK\n", s.err);
      acked.set(`bin:${k}`, v);
    }
    for (const k of ["bin:3", "bin:9"]) {
      const g = await cli(ns, ["--raw", "GET", k]);
      assert.ok(g.out.equals(Buffer.concat([acked.get(k), Buffer.from("\n")])), k);
    }
    // redis-benchmark: CONFIG GET at start, then SET and GET with no errors
    for (const extra of [[], ["-c", "50", "-P", "16", "-d", "1024"]]) {
      const b = ns.spawn("redis-benchmark", ["-h", US, "-p", "6379", "-t", "set,get", "-n", "2000", "-q", ...extra]);
      b.stdin.end();
      const t = setTimeout(() => b.kill("SIGKILL"), 60_000);
      const res = await b.done;
      clearTimeout(t);
      const out = res.stdout + res.stderr;
      assert.is(res.status, 0, out);
      assert.match(out, /SET: [\d.]+ requests per second/);
      assert.match(out, /GET: [\d.]+ requests per second/);
      assert.not.match(out, /WARNING|ERR|rror/);
      console.log(`  redis-benchmark ${extra.join(" ") || "(defaults)"}: ${out.trim().replace(/\s+/g, " ")}`);
    }
    const bench = await cli(ns, ["--raw", "GET", "key:__rand_int__"]);
    assert.is(bench.out.length, 1025);
    acked.set("key:__rand_int__", bench.out.subarray(0, 1024));
    assert.is(await one(ns, "DBSIZE"), `(integer) ${acked.size}`);
    // restart: close everything, reopen the file as a new process would
    srv.close();
    srv = start(ns, path);
    assert.is(srv.log.recovery.liveKeys, acked.size);
    for (const [k, v] of acked) {
      const g = await cli(ns, ["--raw", "GET", k]);
      assert.ok(
        g.out.equals(Buffer.concat([v, Buffer.from("\n")])),
        `${k}: ${g.out.length - 1} bytes, want ${v.length}`,
      );
    }
    assert.is(await one(ns, "DBSIZE"), `(integer) ${acked.size}`);
    srv.stack.pool.check();
  } finally {
    srv?.close();
    ns.cleanup();
  }
  assert.ok(srv.stack.pool.closed);
});

// The server in a child process (killed with SIGKILL mid-load): serve() with a KvApp.
const SERVER_CHILD = `
import { serve, KvApp } from ${JSON.stringify(new URL("../build/index.js", import.meta.url).href)};
const [path, netns] = process.argv.slice(-2);
serve({ path, buffers: 8192, mac: "02:00:00:00:08:02", ip: "${US}/24", tap: { name: "${DEV}", netns } },
  (stack, log) => new KvApp(stack, log, 6379));
process.stdout.write("READY\\n");
`;

// A RESP client in the namespace. "write N": SETs crash:0..N-1 (32 in flight), printing each
// index as its +OK arrives (one write(2) each, so what is printed was acknowledged), until the
// server dies. "verify": GETs the indices given on stdin and prints "OK n" or "BAD i".
const CLIENT = `
import net from "node:net";
import { writeSync, readFileSync } from "node:fs";
const [mode, host, n] = process.argv.slice(-3);
const value = (i) => Buffer.from(("v" + i + ":").repeat([2, 20, 200, 600][i % 4]));
const cmd = (...a) => Buffer.concat([Buffer.from("*" + a.length + "\\r\\n"),
  ...a.flatMap((x) => { const b = Buffer.isBuffer(x) ? x : Buffer.from(x); return [Buffer.from("$" + b.length + "\\r\\n"), b, Buffer.from("\\r\\n")]; })]);
const sock = net.connect(6379, host);
let buf = Buffer.alloc(0);
const replies = [];
function parse() {
  for (;;) {
    const e = buf.indexOf("\\r\\n");
    if (e < 0) return;
    const t = String.fromCharCode(buf[0]);
    if (t === "$") {
      const len = Number(buf.subarray(1, e).toString());
      if (len < 0) { replies.push(null); buf = buf.subarray(e + 2); continue; }
      if (buf.length < e + 2 + len + 2) return;
      replies.push(buf.subarray(e + 2, e + 2 + len)); buf = buf.subarray(e + 4 + len);
    } else { replies.push(buf.subarray(0, e).toString()); buf = buf.subarray(e + 2); }
  }
}
sock.on("error", () => process.exit(0));
sock.on("close", () => process.exit(0));
if (mode === "write") {
  let sent = 0, acked = 0;
  const more = () => { while (sent < Number(n) && sent - acked < 32) { sock.write(cmd("SET", "crash:" + sent, value(sent))); sent++; } };
  sock.on("connect", more);
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]); parse();
    while (replies.length) { const r = replies.shift(); if (r !== "+OK") { writeSync(2, "bad reply " + r + "\\n"); process.exit(1); } writeSync(1, acked + "\\n"); acked++; }
    if (acked === Number(n)) process.exit(0);
    more();
  });
} else {
  const ids = readFileSync(0, "utf8").split("\\n").filter(Boolean).map(Number);
  sock.on("connect", () => { for (const i of ids) sock.write(cmd("GET", "crash:" + i)); });
  let got = 0;
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]); parse();
    while (replies.length) {
      const r = replies.shift(); const i = ids[got++];
      if (!Buffer.isBuffer(r) || !r.equals(value(i))) { writeSync(1, "BAD " + i + "\\n"); process.exit(1); }
    }
    if (got === ids.length) { writeSync(1, "OK " + got + "\\n"); process.exit(0); }
  });
}
`;

it("kill -9 under load: a restart finds every acknowledged SET", async () => {
  const ns = new Netns("kvcrash");
  const path = join(scratchDir("disk"), "crash.pm");
  let child;
  let srv;
  try {
    child = spawn(process.execPath, ["--input-type=module", "-e", SERVER_CHILD, path, ns.path], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (d) => (err += d));
    await new Promise((resolve, reject) => {
      child.stdout.on("data", (d) => String(d).includes("READY") && resolve());
      child.on("exit", (code) => reject(new Error(`server child exited (${code}): ${err}`)));
    });
    ns.ip(["link", "set", DEV, "up"]);
    ns.ip(["addr", "replace", "198.18.8.1/24", "dev", DEV]);
    const w = ns.spawn(process.execPath, ["--input-type=module", "-e", CLIENT, "write", US, "1000000"]);
    w.stdin.end();
    // let it write for a while, then kill the server with no warning
    const t0 = Date.now();
    while (Date.now() - t0 < 15_000 && w.out.split("\n").length < 3000) await new Promise((r) => setTimeout(r, 50));
    const gone = new Promise((r) => child.on("exit", (code, sig) => r(sig)));
    child.kill("SIGKILL");
    assert.is(await gone, "SIGKILL");
    // the device went with the server: the client's connection would hang until TCP gives up
    await new Promise((r) => setTimeout(r, 200));
    w.kill("SIGKILL");
    const res = await w.done;
    assert.is(res.stderr, "", "every reply the client got was +OK");
    const acked = res.stdout.split("\n").filter(Boolean);
    assert.ok(acked.length >= 500, `acknowledged SETs before the kill: ${acked.length}`);
    console.log(`  kill -9 after ${acked.length} acknowledged SETs`);
    // restart in this process: recovery, then every acknowledged key is read back byte-exact
    srv = start(ns, path);
    assert.ok(srv.log.recovery.liveKeys >= acked.length, `recovered ${srv.log.recovery.liveKeys} keys`);
    const v = ns.spawn(process.execPath, ["--input-type=module", "-e", CLIENT, "verify", US, "0"]);
    v.stdin.end(acked.join("\n") + "\n");
    const vr = await v.done;
    assert.is(vr.stdout.trim(), `OK ${acked.length}`, vr.stderr);
    srv.stack.pool.check();
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    srv?.close();
    ns.cleanup();
  }
});

const MiB = 1 << 20;
const sha = (...parts) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest("hex");
};

it("pmstack kv --size 1G on the disk: a 48 MiB value through redis-cli -x SET / GET; STRLEN, GETRANGE, APPEND, SETRANGE on it; restart", async () => {
  const ns = new Netns("kvbig");
  const dir = scratchDir("disk");
  const pm = join(dir, "big.pm");
  const us = "198.18.9.2";
  const cfg = { pm, dev: "pmkvbig0", us, peer: "198.18.9.1", args: ["--size", "1G"] };
  let srv;
  try {
    srv = await startCli(ns, "kv", cfg);
    assert.match(srv.out(), /persist: journal on ext4/);
    assert.ok(existsSync(`${pm}.journal`));
    const file = join(dir, "value.bin");
    const up = writeRandomFile(file, 48 * MiB, 48);
    const size = up.size;
    const value = readFileSync(file);
    const rc = (args, opts) => spawnIn(ns, "redis-cli", ["-h", us, ...args], { timeoutMs: 120_000, ...opts });
    const text = async (...args) => {
      const r = await rc(args);
      assert.is(r.status, 0, r.stderr);
      return r.stdout.trimEnd();
    };
    /** GET big: redis-cli --raw prints the value and a newline. */
    const getSha = async (key) => {
      const r = await rc(["--raw", "GET", key]);
      assert.is(r.status, 0, r.stderr);
      return { sha: r.sha256, len: r.bytes - 1 };
    };
    const set = await rc(["-x", "SET", "big"], { inputFile: file });
    assert.is(set.stdout, "OK\n", set.stderr);
    assert.equal(await getSha("big"), { sha: up.shaNl, len: size }, "GET: the 48 MiB value, byte-exact");
    assert.is(await text("STRLEN", "big"), String(size));
    // GETRANGE: the start, a stretch deep inside, the end (negative offsets), past the end
    for (const [a, b] of [
      [0, 99],
      [30_000_000, 30_065_535],
      [-1000, -1],
      [size - 10, size + 1000],
    ]) {
      const r = await rc(["--raw", "GETRANGE", "big", String(a), String(b)]);
      const from = a < 0 ? size + a : a;
      const to = Math.min(b < 0 ? size + b : b, size - 1) + 1;
      assert.is(r.sha256, sha(value.subarray(from, to), "\n"), `GETRANGE big ${a} ${b}`);
    }
    // APPEND shares the old value's nodes: the value is old bytes then the new ones
    const tail = "-appended-tail";
    assert.is(await text("APPEND", "big", tail), String(size + tail.length));
    assert.is(await text("STRLEN", "big"), String(size + tail.length));
    assert.is(await text("GETRANGE", "big", "-14", "-1"), tail);
    assert.equal(await getSha("big"), { sha: sha(value, tail, "\n"), len: size + tail.length });
    // SETRANGE inside the value, and past its end (zero padding)
    assert.is(await text("SETRANGE", "big", "20000000", "PMSTACK"), String(size + tail.length));
    const want = Buffer.concat([value, Buffer.from(tail)]);
    want.write("PMSTACK", 20_000_000, "latin1");
    assert.is(
      await text("GETRANGE", "big", "19999999", "20000007"),
      want.subarray(19_999_999, 20_000_008).toString("latin1"),
    );
    const far = size + tail.length + 100;
    assert.is(await text("SETRANGE", "big", String(far), "END"), String(far + 3));
    const full = Buffer.concat([want, Buffer.alloc(100), Buffer.from("END")]);
    assert.equal(await getSha("big"), { sha: sha(full, "\n"), len: full.length }, "after SETRANGE");
    // a second copy by SET, then a restart (SIGTERM, same pool): both read back
    assert.is((await rc(["-x", "SET", "copy"], { inputFile: file })).stdout, "OK\n");
    assert.is((await srv.kill("SIGTERM")).status, 0, srv.err());
    srv = await startCli(ns, "kv", cfg);
    assert.match(srv.out(), /log: 2 keys recovered/);
    assert.equal(await getSha("big"), { sha: sha(full, "\n"), len: full.length }, "big after the restart");
    assert.equal(await getSha("copy"), { sha: up.shaNl, len: size }, "copy after the restart");
    // every buffer back after DEL
    assert.is(await text("DEL", "big", "copy"), "2");
    const st = await srv.idle();
    assert.equal([st.pool.kept, st.pool.free], [0, st.pool.total - st.pool.nic], JSON.stringify(st.pool));
  } finally {
    await srv?.kill("SIGKILL");
    ns.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

it("slowloris: a SET that stalls inside its value is aborted after --idle-timeout and its buffers come back; an idle client is not", async () => {
  const ns = new Netns("kvslow");
  const dir = scratchDir("tmpfs");
  const us = "198.18.10.2";
  let srv;
  try {
    srv = await startCli(ns, "kv", {
      pm: join(dir, "slow.pm"),
      dev: "pmkvslow0",
      us,
      peer: "198.18.10.1",
      args: ["--size", "64M", "--idle-timeout", "2"],
    });
    const held = (c) => ({ kept: c.kept, app: c.app, stack: c.stack, freeOrRing: c.free + c.nic });
    const before = (await srv.idle()).pool;
    const keep = ns.spawn(process.execPath, ["-e", STALL_CLIENT, us, "6379"]);
    keep.stdin.end("PING\r\n");
    for (const [name, bytes] of [
      ["SET", `*3\r\n$3\r\nSET\r\n$4\r\nslow\r\n$1000000\r\n${"v".repeat(6000)}`],
      ["APPEND", `*3\r\n$6\r\nAPPEND\r\n$4\r\nslow\r\n$200000\r\n${"w".repeat(3000)}`],
    ]) {
      const p = ns.spawn(process.execPath, ["-e", STALL_CLIENT, us, "6379"]);
      p.stdin.end(bytes);
      await waitFor(() => p.out.includes("SENT"), "the slow client's bytes to go out", 10_000);
      await sleep(300);
      const mid = (await srv.stats()).pool;
      assert.ok(
        mid.free + mid.nic < before.free + before.nic,
        `${name}: the partial value holds buffers: ${JSON.stringify({ mid, before })}`,
      );
      const r = await p.done;
      const end = JSON.parse(r.stdout.split("\n").filter(Boolean).pop());
      assert.is(end.how, "reset", `${name}: ${r.stdout}`);
      assert.ok(end.ms >= 1500 && end.ms < 6000, `${name}: aborted after ${end.ms} ms (--idle-timeout 2)`);
      assert.equal(held((await srv.idle()).pool), held(before), `${name}: every buffer back`);
      const ex = await spawnIn(ns, "redis-cli", ["-h", us, "EXISTS", "slow"]);
      assert.is(ex.stdout, "0\n", "nothing of it kept");
    }
    assert.is(keep.exitCode, null, "the idle client is still connected");
    process.kill(keep.pid, "SIGKILL");
    assert.match((await keep.done).stderr, /^\+PONG/);
  } finally {
    await srv?.kill("SIGKILL");
    ns.cleanup();
  }
});

it("nothing is left behind", () => {
  const l = leftovers();
  assert.equal(l.netns, []);
  assert.equal(l.links, []);
});

test.run();

// The `pmstack` command with IPv6 (dual stack): --ip6/--peer-ip6 usage errors; `pmstack httpd
// --netns NAME --ip6 2001:2:0:63::2/64 --peer-ip6 2001:2:0:63::1/64` answers ping -6, curl -g
// GET and a 16 MiB POST over IPv6 that reads back byte-exact over IPv6 and IPv4, `ss` shows
// the IPv6 endpoints in brackets; `pmstack kv` the same with redis-cli -h 2001:2:0:63::2.
// Traffic stays inside the namespaces the command makes (addresses in 198.18.0.0/15 and
// 2001:2::/48 only); servers this file starts are killed by PID and namespaces removed at exit.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { instantiateCore } from "../build/index.js";
import { netnsUnavailable, leftovers } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { CLI, runCli } from "./lib/appserver.mjs";

const US6 = "2001:2:0:63::2";
const PEER6 = "2001:2:0:63::1";
const V6 = ["--ip6", `${US6}/64`, "--peer-ip6", `${PEER6}/64`];

const noNs = netnsUnavailable();
const noCore6 = typeof instantiateCore().exports.stackIp6Addr === "function" ? null : "the core has no IPv6 yet";
const why = noNs ?? noCore6;
if (why) console.warn(`\n!!! cli6: namespace tests SKIPPED: ${why}\n`);
const it = why ? test.skip : test;

function cli(args) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 30_000 });
}

/** Runs a command inside the namespace without blocking the event loop; `input` is written to its stdin. */
function inNs(ns, cmd, args, { input } = {}) {
  return new Promise((resolve) => {
    const p = spawn("ip", ["netns", "exec", ns, cmd, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("close", (status) => resolve({ status, out, err }));
    p.stdin.end(input);
  });
}

const servers = new Set();
const namespaces = new Set();
process.on("exit", () => {
  for (const p of servers) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  for (const ns of namespaces) if (existsSync(`/run/netns/${ns}`)) spawnSync("ip", ["netns", "del", ns]);
});

/** Starts a server in namespace `ns` (which it makes); resolves once it prints its "stats:" line. */
function startServer(ns, args) {
  const p = spawn(process.execPath, [CLI, ...args.slice(0, 1), "--netns", ns, ...args.slice(1)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  servers.add(p);
  namespaces.add(ns);
  p.out = "";
  p.err = "";
  p.stderr.on("data", (d) => (p.err += d));
  p.exited = new Promise((resolve) =>
    p.on("close", (code, signal) => {
      servers.delete(p);
      resolve({ code, signal });
    }),
  );
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start: ${p.out} ${p.err}`)), 30_000);
    p.stdout.on("data", (d) => {
      p.out += d;
      if (p.out.includes("stats: pmstack stats")) {
        clearTimeout(t);
        resolve(p);
      }
    });
    p.on("close", () => {
      clearTimeout(t);
      reject(new Error(`server exited: ${p.out} ${p.err}`));
    });
  });
}

async function stop(srv, ns) {
  srv.kill("SIGINT");
  const ex = await srv.exited;
  assert.is(ex.code, 0, `${JSON.stringify(ex)} ${srv.err}`);
  assert.not.ok(existsSync(`/run/netns/${ns}`), "the namespace is removed");
}

test("--ip6 and --peer-ip6: usage errors name the option and what it expects", () => {
  const h = cli(["--help"]);
  assert.is(h.status, 0);
  for (const w of ["--ip6 ADDR/LEN", "--peer-ip6", "2001:2::/48"]) assert.ok(h.stdout.includes(w), w);
  const ns = ["--netns", "pmstack-cli6-never"];
  const cases = [
    [
      ["httpd", "--ip6", "2001:2::2"],
      /--ip6 must be an IPv6 ADDR\/LEN such as 2001:2:0:63::2\/64; got 2001:2::2 \(.*needs a prefix length/,
    ],
    [["httpd", "--ip6", "198.18.0.2/24"], /--ip6 must be an IPv6 ADDR\/LEN .*an IPv6 ADDR\/LEN expected/],
    [["httpd", "--ip6", "2001:2::g/64"], /--ip6 must be an IPv6 ADDR\/LEN .*bad group "g"/],
    [["httpd", "--ip6", "2001:2::2/129"], /--ip6 must be an IPv6 ADDR\/LEN .*bad prefix length/],
    [["httpd", "--ip6", "2001:2::2/4"], /--ip6: the prefix length must be 8\.\.128/],
    [["httpd", "--ip6", "fe80::2/64"], /--ip6 must be a global unicast address/],
    [["kv", "--ip6", "ff02::1/64"], /--ip6 must be a global unicast address/],
    [["kv", "--ip6", "::ffff:198.18.0.2/120"], /--ip6 must be a global unicast address/],
    [["httpd", ...ns, "--ip6", "2001:db8::2/64", "--peer-ip6", `${PEER6}/64`], /--ip6 must lie inside 2001:2::\/48/],
    [["httpd", ...ns, "--ip6", `${US6}/64`, "--peer-ip6", "2001:db8::1/64"], /--peer-ip6 must lie inside 2001:2::\/48/],
    [["httpd", "--ip6", `${US6}/64`, "--peer-ip6", "2001:db8::1/64"], /--peer-ip6 must lie inside 2001:2::\/48/],
    [["httpd", ...ns, "--ip6", `${US6}/64`], /--ip6 with --netns needs --peer-ip6 too/],
    [["kv", ...ns, "--peer-ip6", `${PEER6}/64`], /--peer-ip6 needs --ip6/],
    [["httpd", ...ns, "--ip6", `${US6}/64`, "--peer-ip6", "2001:2:0:63:0::2/64"], /--ip6 and --peer-ip6 must differ/],
    [["httpd", ...ns, "--ip6", `${US6}/64`, "--peer-ip6", "2001:2:0:64::1/64"], /must be on the link of --ip6/],
  ];
  for (const [args, re] of cases) {
    const r = cli(args);
    assert.is(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(" "));
    assert.match(r.stderr, /pmstack --help/);
  }
  assert.not.ok(existsSync("/run/netns/pmstack-cli6-never"), "a usage error makes no namespace");
});

it("httpd --netns --ip6: ping -6, curl -g GET and a 16 MiB POST over IPv6, read back over both families; ss shows [v6]:port", async () => {
  const dir = scratchDir("tmpfs");
  const pm = join(dir, "web6.pm");
  const ns = `pmstack-cli6-${process.pid}-0`;
  const srv = await startServer(ns, ["httpd", "--pm", pm, "--size", "128M", "--quiet", ...V6]);
  try {
    assert.match(
      srv.out,
      /listening on 198\.18\.0\.2:80 and \[2001:2:0:63::2\]:80 \(TAP pmstack0, namespace pmstack-cli6-/,
    );
    assert.ok(srv.out.includes(`curl -g http://[${US6}]/greeting`), srv.out);
    assert.ok(srv.out.includes(`ping -6 -c 2 ${US6}`), srv.out);
    const ping = await inNs(ns, "ping", ["-6", "-c", "2", "-W", "2", US6]);
    assert.is(ping.status, 0, ping.out + ping.err);
    assert.match(ping.out, /2 packets transmitted, 2 received/);
    const st = await runCli(["stats", "--pm", pm]);
    assert.match(
      st.stdout,
      /IPv6 addresses:\n\s+fe80::50:4dff:fe00:2\/64 link preferred\n\s+2001:2:0:63::2\/64 global preferred/,
    );
    const base6 = `http://[${US6}]`;
    const post = await inNs(ns, "curl", ["-gsS", "-d", "hello, v6", "-w", "%{http_code}", `${base6}/greeting`]);
    assert.is(post.out, "201", post.err);
    assert.is((await inNs(ns, "curl", ["-gsS", `${base6}/greeting`])).out, "hello, v6");
    assert.is((await inNs(ns, "curl", ["-sS", "http://198.18.0.2/greeting"])).out, "hello, v6", "over IPv4 too");
    // 16 MiB of random bytes, POSTed over IPv6
    const body = randomBytes(16 << 20);
    const file = join(dir, "body.bin");
    writeFileSync(file, body);
    const sha = createHash("sha256").update(body).digest("hex");
    const big = await inNs(ns, "curl", [
      "-gsS",
      "--data-binary",
      `@${file}`,
      "-H",
      "Content-Type: application/octet-stream",
      "-w",
      "%{http_code}",
      `${base6}/big`,
    ]);
    assert.is(big.out, "201", big.err);
    for (const url of [`${base6}/big`, "http://198.18.0.2/big"]) {
      const got = await inNs(ns, "sh", ["-c", `curl -gsS '${url}' | sha256sum`]);
      assert.is(got.out.split(" ")[0], sha, url);
    }
    // a connection held open (a chunked upload still sending) shows in ss with its IPv6 ends
    const slow = spawn("ip", ["netns", "exec", ns, "curl", "-gsS", "-T", "-", `${base6}/slow`], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    slow.stdin.write("part one\n");
    let table = "";
    for (let k = 0; k < 50 && !table.includes(`[${PEER6}]:`); k++) {
      await new Promise((r) => setTimeout(r, 100));
      table = (await runCli(["ss", "--pm", pm])).stdout;
    }
    assert.ok(table.includes(`[${US6}]:80`), table);
    assert.match(table, /\[2001:2:0:63::1\]:\d+/);
    assert.match(table, /ESTABLISHED/);
    const js = JSON.parse((await runCli(["ss", "--pm", pm, "--json"])).stdout);
    const c = js.find((r) => r.remoteAddress === PEER6);
    assert.ok(c, JSON.stringify(js));
    assert.equal([c.family, c.localAddress, c.localPort], [6, US6, 80]);
    slow.stdin.end("part two\n");
    await new Promise((r) => slow.on("close", r));
    assert.is((await inNs(ns, "curl", ["-sS", "http://198.18.0.2/slow"])).out, "part one\npart two\n");
  } finally {
    await stop(srv, ns);
  }
});

it("kv --netns --ip6: redis-cli -h 2001:2:0:63::2 SET/GET, read over IPv4 too", async () => {
  const pm = join(scratchDir("tmpfs"), "kv6.pm");
  const ns = `pmstack-cli6kv-${process.pid}-1`;
  const srv = await startServer(ns, ["kv", "--pm", pm, "--buffers", "8192", "--quiet", ...V6]);
  try {
    assert.match(srv.out, /listening on 198\.18\.0\.2:6379 and \[2001:2:0:63::2\]:6379/);
    assert.ok(srv.out.includes(`redis-cli -h ${US6} GET greeting`), srv.out);
    const set = await inNs(ns, "redis-cli", ["-h", US6, "SET", "greeting", "hello, v6"]);
    assert.is(set.out.trim(), "OK", set.err);
    assert.is((await inNs(ns, "redis-cli", ["-h", US6, "GET", "greeting"])).out.trim(), "hello, v6");
    assert.is((await inNs(ns, "redis-cli", ["-h", "198.18.0.2", "GET", "greeting"])).out.trim(), "hello, v6");
    const set4 = await inNs(ns, "redis-cli", ["-h", "198.18.0.2", "SET", "four", "over IPv4"]);
    assert.is(set4.out.trim(), "OK", set4.err);
    assert.is((await inNs(ns, "redis-cli", ["-h", US6, "GET", "four"])).out.trim(), "over IPv4");
    // a larger value (1 MiB) both ways over IPv6
    const v = "x".repeat(1 << 20);
    const big = await inNs(ns, "redis-cli", ["-h", US6, "-x", "SET", "big"], { input: v });
    assert.is(big.out.trim(), "OK", big.err);
    const len = await inNs(ns, "redis-cli", ["-h", US6, "STRLEN", "big"]);
    assert.is(len.out.trim(), String(v.length));
  } finally {
    await stop(srv, ns);
  }
});

it("nothing is left behind", () => {
  const l = leftovers();
  assert.equal(l.netns, []);
  assert.equal(l.links, []);
});

test.run();

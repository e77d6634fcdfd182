// The `pmstack` command: --help, clear usage errors, `httpd` and `kv` in a namespace the command
// makes (--netns), `stats` and `ss` through the control socket, a pcap tshark can read, and a
// clean exit on SIGINT that removes the namespace.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { netnsUnavailable, leftovers } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(root, "build", "cli.js");
const why = netnsUnavailable();
if (why) console.warn(`\n!!! cli: namespace tests SKIPPED, network namespaces unavailable: ${why}\n`);
const it = why ? test.skip : test;

function cli(args) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 30_000 });
}

/** Runs a command inside the namespace without blocking the event loop. */
function inNs(ns, cmd, args) {
  return new Promise((resolve) => {
    const p = spawn("ip", ["netns", "exec", ns, cmd, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("close", (status) => resolve({ status, out, err }));
  });
}

function runAsync(args) {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (err += d));
    p.on("close", (status) => resolve({ status, out, err }));
  });
}

/** Starts a server; resolves once it prints its "stats:" line. */
function startServer(args) {
  const p = spawn(process.execPath, [CLI, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  p.out = "";
  p.err = "";
  p.stderr.on("data", (d) => (p.err += d));
  p.exited = new Promise((resolve) => p.on("close", (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server did not start: ${p.out} ${p.err}`)), 20_000);
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

test("--help, --version and usage errors", () => {
  const h = cli(["--help"]);
  assert.is(h.status, 0);
  for (const w of ["pmstack httpd", "pmstack kv", "pmstack stats", "pmstack ss", "--netns", "--nic tap|xdp", "--pcap"])
    assert.ok(h.stdout.includes(w), w);
  assert.is(cli(["--version"]).stdout.trim(), "0.1.0");
  const none = cli([]);
  assert.is(none.status, 2);
  const cases = [
    [["bogus"], /unknown command "bogus"/],
    [["httpd", "--frobnicate"], /unknown option --frobnicate/],
    [["httpd", "--buffers", "12x"], /--buffers must be an integer/],
    [["httpd", "--nic", "dpdk"], /--nic must be tap or xdp/],
    [["httpd", "--netns", "x", "--ip", "10.1.2.3/24"], /inside 198\.18\.0\.0\/15/],
    [["httpd", "--mode", "fast"], /--mode must be/],
    [["kv", "--nic", "xdp"], /--nic xdp needs --ifname/],
    [["httpd", "--port"], /--port needs a value/],
  ];
  for (const [args, re] of cases) {
    const r = cli(args);
    assert.is(r.status, 2, args.join(" "));
    assert.match(r.stderr, re);
    assert.match(r.stderr, /pmstack --help/);
  }
});

test("stats with no server: a clear error naming the socket", () => {
  const r = cli(["stats", "--control", "/nonexistent/pmstack.ctl"]);
  assert.is(r.status, 1);
  assert.match(r.stderr, /no server answers on \/nonexistent\/pmstack\.ctl/);
});

it("httpd --netns: curl POST/GET, stats, ss, pcap, SIGINT removes the namespace", async () => {
  const dir = scratchDir("cli");
  const pm = join(dir, "web.pm");
  const pcap = join(dir, "web.pcap");
  const ns = `pmstack-cli-${process.pid}-0`;
  const srv = await startServer(["httpd", "--netns", ns, "--pm", pm, "--buffers", "4096", "--pcap", pcap]);
  try {
    assert.match(srv.out, /listening on 198\.18\.0\.2:80 \(TAP pmstack0, namespace pmstack-cli-/);
    assert.match(srv.out, /persist: /);
    const post = await inNs(ns, "curl", ["-sS", "-d", "hello, PM", "-w", "%{http_code}", "http://198.18.0.2/greeting"]);
    assert.is(post.out, "201", post.err);
    const get = await inNs(ns, "curl", ["-sS", "http://198.18.0.2/greeting"]);
    assert.is(get.out, "hello, PM");
    const st = await runAsync(["stats", "--pm", pm]);
    assert.is(st.status, 0, st.err);
    assert.match(st.out, /^Stack:/);
    assert.match(st.out, /\d+ tcp in/);
    assert.match(st.out, /Pool buffers:/);
    const js = JSON.parse((await runAsync(["stats", "--pm", pm, "--json"])).out);
    assert.is(js.app.posts, 1);
    assert.is(js.log.liveKeys ?? js.app.posts, 1);
    assert.ok(js.stack.TCP_IN > 0);
    const ss = await runAsync(["ss", "--pm", pm, "--json"]);
    assert.is(ss.status, 0);
    assert.ok(Array.isArray(JSON.parse(ss.out)));
  } finally {
    srv.kill("SIGINT");
  }
  const ex = await srv.exited;
  assert.is(ex.code, 0, srv.err);
  assert.match(srv.out, /SIGINT, closing/);
  assert.not.ok(existsSync(`/run/netns/${ns}`), "the namespace is removed");
  assert.not.ok(existsSync(`${pm}.ctl`), "the control socket is removed");
  // the capture: tshark reads it and sees the HTTP exchange
  const t = spawnSync(
    "tshark",
    ["-r", pcap, "-Y", "http", "-T", "fields", "-e", "http.request.method", "-e", "http.response.code"],
    {
      encoding: "utf8",
    },
  );
  if (t.error) throw new Error(`tshark missing (it is in .ci/deps): ${t.error.message}`);
  assert.is(t.status, 0, t.stderr);
  const lines = t.stdout.trim().split("\n");
  assert.ok(
    lines.some((l) => l.startsWith("POST")),
    t.stdout,
  );
  assert.ok(
    lines.some((l) => l.trim() === "201"),
    t.stdout,
  );
  // the key survives the restart
  const again = await startServer(["httpd", "--netns", ns, "--pm", pm, "--quiet"]);
  try {
    assert.match(again.out, /log: 1 keys recovered/);
    const get = await inNs(ns, "curl", ["-sS", "http://198.18.0.2/greeting"]);
    assert.is(get.out, "hello, PM");
  } finally {
    again.kill("SIGTERM");
  }
  assert.is((await again.exited).code, 0);
});

it("kv --netns: redis-cli SET/GET, then a restart reads the key back", async () => {
  const dir = scratchDir("cli");
  const pm = join(dir, "kv.pm");
  const ns = `pmstack-clikv-${process.pid}-1`;
  let srv = await startServer(["kv", "--netns", ns, "--pm", pm, "--buffers", "4096", "--quiet"]);
  try {
    assert.match(srv.out, /listening on 198\.18\.0\.2:6379/);
    const set = await inNs(ns, "redis-cli", ["-h", "198.18.0.2", "SET", "greeting", "hello, PM"]);
    assert.is(set.out.trim(), "OK", set.err);
    const get = await inNs(ns, "redis-cli", ["-h", "198.18.0.2", "GET", "greeting"]);
    assert.is(get.out.trim(), "hello, PM");
  } finally {
    srv.kill("SIGINT");
  }
  assert.is((await srv.exited).code, 0);
  srv = await startServer(["kv", "--netns", ns, "--pm", pm, "--quiet"]);
  try {
    const get = await inNs(ns, "redis-cli", ["-h", "198.18.0.2", "GET", "greeting"]);
    assert.is(get.out.trim(), "hello, PM");
  } finally {
    srv.kill("SIGINT");
  }
  assert.is((await srv.exited).code, 0);
});

it("httpd --nic xdp --netns: AF_XDP on a veth pair it makes, curl POST/GET", async () => {
  const pm = join(scratchDir("tmpfs"), "xdp.pm"); // tmpfs: the pool itself is the UMEM
  const ns = `pmstack-clixdp-${process.pid}-2`;
  const srv = await startServer(["httpd", "--nic", "xdp", "--netns", ns, "--pm", pm, "--buffers", "4096", "--quiet"]);
  try {
    assert.match(srv.out, /listening on 198\.18\.0\.2:80 \(AF_XDP pmx0, namespace pmstack-clixdp-/);
    assert.match(srv.out, /nic: AF_XDP pmx0 queue 0/);
    const post = await inNs(ns, "curl", ["-sS", "-d", "hello, XDP", "-w", "%{http_code}", "http://198.18.0.2/x"]);
    assert.is(post.out, "201", post.err);
    const get = await inNs(ns, "curl", ["-sS", "http://198.18.0.2/x"]);
    assert.is(get.out, "hello, XDP");
    // the kernel's AF_XDP counters: one line each in the text form, an object in JSON
    const st = await runAsync(["stats", "--pm", pm]);
    assert.not.match(st.out, /object Object/);
    const js = JSON.parse((await runAsync(["stats", "--pm", pm, "--json"])).out);
    assert.type(js.nic.xdpKernel.rxFillRingEmpty, "number");
  } finally {
    srv.kill("SIGINT");
  }
  assert.is((await srv.exited).code, 0, srv.err);
  assert.not.ok(existsSync(`/run/netns/${ns}`));
});

it("nothing is left behind", () => {
  const l = leftovers();
  assert.equal(l.netns, []);
  assert.equal(l.links, []);
});

test.run();

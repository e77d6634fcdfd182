// End to end: who may use `pmstack kv` and `pmstack httpd` (build/cli.js, a second process in a
// namespace the test makes), with real clients. Files: a new pool, its journal and the control
// socket are owner-only; a pool others may write is refused (or used with --insecure-pool and a
// warning); secret files others may read are refused. kv: redis-cli with and without -a, --pass
// and --user default; AUTH wrong then right; HELLO ... AUTH; NOAUTH; Redis's limits before AUTH;
// a brute force on one connection (held, then refused unchecked, then closed) while another
// client keeps working; protected mode refusing a peer that is not the link's own and serving
// it once it is, or once --allow-net names it. httpd: curl with and without a bearer token for
// GET, HEAD, POST, PUT, DELETE, public and --private; a wrong token; an oversized header (431).
// Addresses: 198.18.21.0/24 and 198.18.22.0/24, inside each test's own namespace.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { Netns, netnsUnavailable, leftovers } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { startCli, runCli } from "./lib/appserver.mjs";

const hasTools = spawnSync("sh", ["-c", "command -v redis-cli && command -v curl"]).status === 0;
const why = netnsUnavailable() ?? (hasTools ? null : "redis-cli or curl not installed");
if (why) console.warn(`\n!!! e2e-auth: SKIPPED: ${why}\n`);
const it = why ? test.skip : test;

const KV = { dev: "pmtapauth0", us: "198.18.21.2", peer: "198.18.21.1" };
const WEB = { dev: "pmtapauth1", us: "198.18.22.2", peer: "198.18.22.1" };
const PASS = "correct horse battery staple";
const TOKEN = "s3cr3t-T0ken_for.pmstack~";
const SMALL = ["--buffers", "8192"];

const secret = (dir, name, text, mode = 0o600) => {
  const p = join(dir, name);
  writeFileSync(p, text + "\n");
  chmodSync(p, mode);
  return p;
};

/** redis-cli in the namespace: its output (formatted, --no-raw) and status. */
function rcli(ns, args, input = "") {
  const r = ns.run("redis-cli", ["-h", KV.us, "--no-raw", ...args], { input, timeout: 30_000 });
  return { text: r.stdout.trimEnd(), err: r.stderr, status: r.status };
}

/** curl in the namespace: status code, headers (lower-cased names) and body. */
function curl(ns, args) {
  const r = ns.run("curl", ["-s", "-i", "--max-time", "20", ...args], { timeout: 30_000 });
  const out = r.stdout;
  const blocks = out.split("\r\n\r\n");
  // skip a 100 Continue head
  let i = 0;
  while (/^HTTP\/1\.1 100/.test(blocks[i] ?? "")) i++;
  const head = blocks[i] ?? "";
  const status = +(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0);
  const headers = new Map();
  for (const l of head.split("\r\n").slice(1)) {
    const c = l.indexOf(":");
    if (c > 0) headers.set(l.slice(0, c).toLowerCase(), l.slice(c + 1).trim());
  }
  return { status, headers, body: blocks.slice(i + 1).join("\r\n\r\n"), code: r.status };
}

/**
 * A node client in the namespace: connection A pipelines `n` wrong AUTHs; connection B, already
 * authenticated, runs SET/GET one at a time meanwhile. Prints what A got and B's slowest answer.
 */
const BRUTE = `
const net = require("net");
const [host, pass, n] = [process.argv[1], process.argv[2], +process.argv[3]];
const enc = (...a) => "*" + a.length + "\\r\\n" + a.map((x) => "$" + Buffer.byteLength(x) + "\\r\\n" + x + "\\r\\n").join("");
const a = net.connect(6379, host);
let aOut = "";
a.on("data", (d) => (aOut += d));
const aDone = new Promise((r) => a.on("close", r));
a.on("error", () => {});
a.write(Array.from({ length: n }, (_, i) => enc("AUTH", "wrong" + i)).join(""));
const b = net.connect(6379, host);
let bBuf = "";
let waiter = null;
b.on("data", (d) => { bBuf += d; if (waiter && bBuf.includes("\\r\\n")) { const line = bBuf.slice(0, bBuf.indexOf("\\r\\n")); bBuf = bBuf.slice(bBuf.indexOf("\\r\\n") + 2); const w = waiter; waiter = null; w(line); } });
const ask = (cmd) => new Promise((r) => { waiter = r; b.write(cmd); });
(async () => {
  if ((await ask(enc("AUTH", pass))) !== "+OK") throw new Error("B: AUTH failed");
  let slowest = 0, ok = 0;
  for (let i = 0; i < 200; i++) {
    const t = Date.now();
    const s = await ask(enc("SET", "k" + i, "v" + i));
    const g = await ask(enc("INCR", "n"));
    slowest = Math.max(slowest, Date.now() - t);
    if (s === "+OK" && g === ":" + (i + 1)) ok++;
  }
  await aDone;
  b.end();
  const lines = aOut.split("\\r\\n").filter((x) => x);
  console.log(JSON.stringify({ ok, slowest, wrongpass: lines.filter((l) => l.startsWith("-WRONGPASS")).length,
    unchecked: lines.filter((l) => l.includes("refused unchecked")).length,
    closing: lines.filter((l) => l.includes("closing")).length, total: lines.length }));
})();
`;

/** One connection, `n` wrong AUTHs one after another (each waits for its answer): ms taken, answers. */
const SERIAL = `
const net = require("net");
const [host, n] = [process.argv[1], +process.argv[2]];
const s = net.connect(6379, host);
let buf = "", got = [], t0 = Date.now();
const next = () => { if (got.length === n) { console.log(JSON.stringify({ ms: Date.now() - t0, got })); s.end(); return; } s.write("*2\\r\\n$4\\r\\nAUTH\\r\\n$5\\r\\nwrong\\r\\n"); };
s.on("data", (d) => { buf += d; let i; while ((i = buf.indexOf("\\r\\n")) >= 0) { got.push(buf.slice(0, i)); buf = buf.slice(i + 2); next(); } });
s.on("connect", next);
`;

const nodeIn = async (ns, code, args) => {
  const p = ns.spawn(process.execPath, ["-e", code, ...args]);
  p.stdin.end();
  const r = await p.done;
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
};

it("files: pool, journal and control socket owner-only; a pool others may write refused or warned", async () => {
  const ns = new Netns("auth");
  const dir = join(scratchDir("disk"), "private");
  const pm = join(dir, "kv.pm");
  let srv;
  try {
    srv = await startCli(ns, "kv", { pm, ...KV, args: [...SMALL, "--mode", "journal"] });
    assert.is(statSync(pm).mode & 0o777, 0o600, "pool file");
    assert.is(statSync(`${pm}.journal`).mode & 0o777, 0o600, "journal");
    const ctl = statSync(`${pm}.ctl`);
    assert.ok(ctl.isSocket());
    assert.is(ctl.mode & 0o077, 0, `control socket mode ${(ctl.mode & 0o777).toString(8)}`);
    assert.is(statSync(dir).mode & 0o077, 0, "a directory the command made");
    await srv.kill("SIGTERM");
    srv = null;

    chmodSync(pm, 0o666);
    const refused = await startCli(ns, "kv", { pm, ...KV, args: SMALL, timeoutMs: 20_000 }).then(
      (s) => s.kill().then(() => ""),
      (e) => e.message,
    );
    assert.match(refused, /kv\.pm is writable by every user \(mode 0666\)/);
    assert.match(refused, /chmod 600 .*--insecure-pool/);
    chmodSync(pm, 0o620);
    chmodSync(`${pm}.journal`, 0o600);
    srv = await startCli(ns, "kv", { pm, ...KV, args: [...SMALL, "--insecure-pool"] });
    assert.match(srv.err(), /WARNING: .*kv\.pm is writable by its group \(mode 0620\)/);
    await srv.kill("SIGTERM");
    srv = null;
  } finally {
    await srv?.kill();
    ns.cleanup();
  }
  // secret files: refused when others may read them (no namespace needed: checked before anything starts)
  const d = scratchDir("disk");
  mkdirSync(join(d, "x"), { recursive: true });
  const wide = secret(d, "pass", PASS, 0o644);
  let r = await runCli(["kv", "--pm", join(d, "x", "kv.pm"), "--requirepass-file", wide]);
  assert.is(r.status, 1, r.stderr);
  assert.match(r.stderr, /the password file .*pass is readable or writable by every user \(mode 0644\).*chmod 600/);
  const grp = secret(d, "token", TOKEN, 0o640);
  r = await runCli(["httpd", "--pm", join(d, "x", "web.pm"), "--token-file", grp]);
  assert.is(r.status, 1, r.stderr);
  assert.match(
    r.stderr,
    /the token file .*token is readable or writable by its group \(mode 0640\); it must be owner-only/,
  );
  r = await runCli(["httpd", "--pm", join(d, "x", "web.pm"), "--private"]);
  assert.is(r.status, 2);
  assert.match(r.stderr, /--private needs --token-file/);
  r = await runCli(["httpd", "--pm", join(d, "x", "web.pm"), "--requirepass", "x"]);
  assert.is(r.status, 2);
  assert.match(r.stderr, /--requirepass is for pmstack kv/);
});

it("kv: requirepass with redis-cli -a/--pass/--user, AUTH, HELLO AUTH, NOAUTH, limits before AUTH, brute force", async () => {
  const ns = new Netns("auth");
  const dir = scratchDir("tmpfs");
  const pm = join(dir, "kv.pm");
  const pf = secret(dir, "pass", PASS);
  let srv;
  try {
    srv = await startCli(ns, "kv", { pm, ...KV, args: [...SMALL, "--requirepass-file", pf] });
    assert.match(srv.out(), /access: clients AUTH with the password first/);
    // nothing before AUTH
    assert.is(rcli(ns, ["PING"]).text, "(error) NOAUTH Authentication required.");
    assert.is(rcli(ns, ["SET", "k", "v"]).text, "(error) NOAUTH Authentication required.");
    assert.match(
      rcli(ns, ["HELLO", "2"]).text,
      /^\(error\) NOAUTH HELLO must be called with the client already authenticated/,
    );
    // redis-cli's ways of giving the password
    assert.is(rcli(ns, ["-a", PASS, "--no-auth-warning", "SET", "k", "v1"]).text, "OK");
    assert.is(rcli(ns, ["--pass", PASS, "--no-auth-warning", "GET", "k"]).text, '"v1"');
    assert.is(rcli(ns, ["--user", "default", "--pass", PASS, "--no-auth-warning", "GET", "k"]).text, '"v1"');
    const bad = rcli(ns, ["-a", "nope", "--no-auth-warning", "GET", "k"]);
    assert.match(bad.text + bad.err, /WRONGPASS invalid username-password pair or user is disabled\./);
    // one session: wrong, then right, then commands; HELLO forms
    let r = rcli(
      ns,
      [],
      `AUTH wrong\nGET k\nAUTH ${JSON.stringify(PASS)}\nGET k\nAUTH alice ${JSON.stringify(PASS)}\nGET k\n`,
    );
    assert.equal(r.text.split("\n"), [
      "(error) WRONGPASS invalid username-password pair or user is disabled.",
      "(error) NOAUTH Authentication required.",
      "OK",
      '"v1"',
      "(error) WRONGPASS invalid username-password pair or user is disabled.",
      '"v1"', // a failed AUTH leaves an authenticated connection as it was (as Redis)
    ]);
    r = rcli(ns, [], `HELLO 2 AUTH default ${JSON.stringify(PASS)} SETNAME me\nCLIENT GETNAME\n`);
    assert.match(r.text, /^ 1\) "server"\n 2\) "redis"[\s\S]* 6\) \(integer\) 2\n[\s\S]*\n"me"$/);
    r = rcli(ns, [], `HELLO 3 AUTH default ${JSON.stringify(PASS)}\nPING\n`);
    // pmstack speaks RESP2 only: HELLO 3 is refused before its AUTH is looked at (Redis's order)
    assert.equal(r.text.split("\n"), [
      "(error) NOPROTO sorry, this protocol version is not supported",
      "(error) NOAUTH Authentication required.",
    ]);
    r = rcli(ns, [], `HELLO 2 AUTH default wrong\nAUTH a b c\nQUIT\n`);
    assert.equal(r.text.split("\n"), [
      "(error) WRONGPASS invalid username-password pair or user is disabled.",
      "(error) ERR syntax error",
    ]);
    // Redis's limits before AUTH: 10 arguments, 16 KiB per argument; then close
    r = ns.run(process.execPath, [
      "-e",
      `const s=require("net").connect(6379,"${KV.us}");let o="";s.on("data",d=>o+=d);s.on("close",()=>console.log(o));` +
        `s.write("*1\\r\\n$20000\\r\\n")`,
    ]);
    assert.is(r.stdout.trim(), "-ERR Protocol error: unauthenticated bulk length");
    r = ns.run(process.execPath, [
      "-e",
      `const s=require("net").connect(6379,"${KV.us}");let o="";s.on("data",d=>o+=d);s.on("close",()=>console.log(o));` +
        `s.write("*11\\r\\n")`,
    ]);
    assert.is(r.stdout.trim(), "-ERR Protocol error: unauthenticated multibulk length");

    // brute force on one connection while another client works: the first guess is checked and
    // its answer held; the next 63 are refused unchecked; then the connection is closed
    const b = await nodeIn(ns, BRUTE, [KV.us, PASS, "500"]);
    assert.is(b.ok, 200, "the other client's 200 SET+INCR all answered right");
    // not held behind the limiter (whose delays are 100 ms and up): a generous bound, not a speed test
    assert.ok(b.slowest < 2000, `slowest answer to the other client: ${b.slowest} ms`);
    assert.is(b.wrongpass, 1);
    assert.is(b.unchecked, 63);
    assert.is(b.closing, 1);
    // one at a time: each guess checked, each answer later than the one before (100, 200, 400, 800 ms)
    const s = await nodeIn(ns, SERIAL, [KV.us, "4"]);
    assert.equal(s.got, Array(4).fill("-WRONGPASS invalid username-password pair or user is disabled."));
    assert.ok(s.ms >= 1400, `4 failures took ${s.ms} ms: the delays grow`);
    const st = (await srv.stats()).app;
    assert.ok(st.authFailed >= 1 + 1 + 1 + 1 + 1 + 4, JSON.stringify(st));
    assert.is(st.authThrottled, 63);
    assert.is(st.authDropped, 1);
    assert.ok(st.noauth >= 3);
    const text = await runCli(["stats", "--control", `${pm}.ctl`]);
    assert.match(text.stdout, /\d+ authFailed/);
    // still serving
    assert.is(rcli(ns, ["-a", PASS, "--no-auth-warning", "INCR", "n"]).text, "(integer) 201");
  } finally {
    await srv?.kill();
    ns.cleanup();
  }
});

it("kv: protected mode serves the link's own peer and --allow-net, refuses others with -DENIED", async () => {
  const ns = new Netns("auth");
  const pm = join(scratchDir("tmpfs"), "kv.pm");
  let srv;
  try {
    // the server's idea of its peer is .9; the kernel side speaks from .1: not local
    srv = await startCli(ns, "kv", { pm, ...KV, args: [...SMALL, "--peer-ip", "198.18.21.9/24"] });
    assert.match(srv.out(), /access: protected mode \(no password\): serving 198\.18\.21\.9\/32 only/);
    let r = rcli(ns, ["PING"]);
    assert.match(
      r.text + r.err,
      /DENIED Redis is running in protected mode because protected mode is enabled and no password is set/,
    );
    assert.match(r.text + r.err, /--allow-net CIDR/);
    assert.is((await srv.stats()).app.denied, 1);
    // from .9 it is served
    ns.ip(["addr", "add", "198.18.21.9/24", "dev", KV.dev]);
    ns.ip(["route", "replace", `${KV.us}/32`, "dev", KV.dev, "src", "198.18.21.9"]);
    assert.is(rcli(ns, ["PING"]).text, "PONG");
    assert.is(rcli(ns, ["SET", "k", "v"]).text, "OK");
    await srv.kill("SIGTERM");
    srv = null;
    // (the TAP device, its address and route went with the process)
    // --allow-net names the network .1 is in
    srv = await startCli(ns, "kv", {
      pm,
      ...KV,
      args: [...SMALL, "--peer-ip", "198.18.21.9/24", "--allow-net", "2001:2::/48", "--allow-net", "198.18.21.0/28"],
    });
    assert.is(rcli(ns, ["GET", "k"]).text, '"v"');
    await srv.kill("SIGTERM");
    srv = null;
    // --protected-mode no: anyone
    srv = await startCli(ns, "kv", {
      pm,
      ...KV,
      args: [...SMALL, "--peer-ip", "198.18.21.9/24", "--protected-mode", "no"],
    });
    assert.is(rcli(ns, ["GET", "k"]).text, '"v"');
    // AUTH with no password set: Redis's answer
    assert.is(
      rcli(ns, ["AUTH", "x"]).text,
      "(error) ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
    );
  } finally {
    await srv?.kill();
    ns.cleanup();
  }
});

it("httpd: bearer token for writes, public or --private reads, 401 with WWW-Authenticate, 431", async () => {
  const ns = new Netns("auth");
  const dir = scratchDir("tmpfs");
  const pm = join(dir, "web.pm");
  const tf = secret(dir, "token", TOKEN);
  const url = `http://${WEB.us}/obj`;
  const auth = ["-H", `Authorization: Bearer ${TOKEN}`];
  let srv;
  try {
    srv = await startCli(ns, "httpd", { pm, ...WEB, args: [...SMALL, "--token-file", tf] });
    assert.match(srv.out(), /access: PUT, POST and DELETE need the bearer token/);
    // writes without a token: 401 and a challenge; the connection goes on
    for (const m of [
      ["-X", "POST", "-d", "x"],
      ["-X", "PUT", "-d", "x"],
      ["-X", "DELETE"],
    ]) {
      const r = curl(ns, [...m, url]);
      assert.is(r.status, 401, m.join(" "));
      assert.is(r.headers.get("www-authenticate"), 'Bearer realm="pmstack"');
    }
    // a wrong token: 401 invalid_token, then close
    let r = curl(ns, ["-H", "Authorization: Bearer wrong", "-d", "x", url]);
    assert.is(r.status, 401);
    assert.is(r.headers.get("www-authenticate"), 'Bearer realm="pmstack", error="invalid_token"');
    assert.is(r.headers.get("connection"), "close");
    r = curl(ns, ["-H", "Authorization: Basic Zm9vOmJhcg==", "-X", "DELETE", url]);
    assert.is(r.status, 401);
    // nothing was stored by them
    assert.is(curl(ns, [url]).status, 404);
    // with the token (the scheme in any case)
    assert.is(curl(ns, [...auth, "-d", "hello", url]).status, 201);
    assert.is(curl(ns, ["-H", `authorization: bearer ${TOKEN}`, "-T", "/dev/null", `${url}2`]).status, 201);
    r = curl(ns, [url]); // public read
    assert.is(r.status, 200);
    assert.is(r.body, "hello");
    assert.is(curl(ns, ["-I", url]).status, 200);
    assert.is(curl(ns, [...auth, "-X", "DELETE", `${url}2`]).status, 204);
    // an oversized header (a 10 KiB token): 431, the connection closes, the server serves on
    r = curl(ns, ["-H", `Authorization: Bearer ${"A".repeat(10 * 1024)}`, "-d", "x", url]);
    assert.is(r.status, 431);
    assert.is(r.headers.get("connection"), "close");
    assert.is(curl(ns, [url]).body, "hello");
    const st = (await srv.stats()).app;
    assert.is(st.authFailed, 2);
    assert.is(st.unauthorized, 5);
    await srv.kill("SIGTERM");
    srv = null;

    // --private: reads need the token too
    srv = await startCli(ns, "httpd", { pm, ...WEB, args: [...SMALL, "--token-file", tf, "--private"] });
    r = curl(ns, [url]);
    assert.is(r.status, 401);
    assert.is(r.headers.get("www-authenticate"), 'Bearer realm="pmstack"');
    assert.is(curl(ns, ["-I", url]).status, 401);
    assert.is(curl(ns, [`http://${WEB.us}/`]).status, 401, "the stats too");
    r = curl(ns, [...auth, url]);
    assert.is(r.status, 200);
    assert.is(r.body, "hello");
    assert.is(curl(ns, [...auth, "-X", "PUT", "-d", "again", url]).status, 201);
    assert.is(curl(ns, [...auth, url]).body, "again");
  } finally {
    await srv?.kill();
    ns.cleanup();
  }
});

test("no namespaces or devices left behind", () => {
  const l = leftovers();
  assert.equal(l.netns, [], `namespaces: ${l.netns}`);
});

test.run();

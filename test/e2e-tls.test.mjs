// End to end: TLS for both apps (`pmstack httpd|kv --tls-cert --tls-key [--tls-ca]`, a second
// process in a namespace this test makes), with a throwaway CA, server and client certificates
// made by `openssl` in a scratch directory:
//
// - httpd: curl --cacert GET/POST over TLS 1.3 and TLS 1.2 (curl --tls-max 1.2), a 4 MiB body
//   POSTed and read back (sha256), the plain port beside it; a key file every user may read is
//   refused with a clear error; plain HTTP on the TLS port is reset, logged and counted.
// - kv: redis-cli --tls --cacert SET/GET, a 3 MiB value through -x SET and GET (sha256).
// - --tls-ca: a client certificate is required (curl and redis-cli refused without one, and with
//   one from another CA), and accepted when signed by the CA.
// - A client trickling a TLS record's bytes after its handshake is reset at --idle-timeout;
//   an idle TLS connection is not.
// - TLS with authentication: redis-cli --tls --pass against --requirepass-file (NOAUTH and
//   WRONGPASS before), curl --cacert with a bearer token against --token-file (401 without).
// - kill -9 during TLS writes (kv pipelined SETs and httpd POSTs, on the disk: the journal):
//   after the restart every acknowledged write reads back over TLS, byte-exact; no leak.
// - A handshake flood (connections sending part of a ClientHello and stalling, more than the
//   handshake cap) and garbage before the ClientHello, while a real client keeps POSTing and
//   GETting over TLS: the client is served throughout, the failures are counted, the server's
//   memory stays bounded, and every buffer comes back once the flood is over.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { chmodSync, copyFileSync, rmSync, writeFileSync } from "node:fs";
import { execFileSync, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Netns, netnsUnavailable, leftovers } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { startCli, spawnIn, runCli, writeRandomFile, sleep, waitFor, kill } from "./lib/appserver.mjs";

const TLS_CLIENT = fileURLToPath(new URL("./lib/tls-client.mjs", import.meta.url));
const hasTools =
  spawnSync("sh", ["-c", "command -v curl && command -v redis-cli && command -v openssl"]).status === 0 &&
  /--tls/.test(spawnSync("sh", ["-c", "redis-cli --help 2>&1"], { encoding: "utf8" }).stdout ?? "");
const why = netnsUnavailable() ?? (hasTools ? null : "curl, redis-cli (with TLS) or openssl missing (bash .ci/deps)");
if (why) console.warn(`\n!!! e2e-tls: SKIPPED: ${why}\n`);
const it = why ? test.skip : test;

const H = { dev: "pmtlsh0", us: "198.18.61.2", peer: "198.18.61.1" };
const K = { dev: "pmtlsk0", us: "198.18.62.2", peer: "198.18.62.1" };
const MiB = 1 << 20;

/** A CA, a server certificate for both test addresses, a client certificate, and a rogue CA's client certificate. */
function makeCerts() {
  const d = scratchDir("disk");
  const ssl = (args) => execFileSync("openssl", args, { cwd: d, stdio: ["ignore", "pipe", "pipe"] });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  for (const ca of ["ca", "rogue"])
    ssl([
      "req",
      "-x509",
      ...ec,
      "-keyout",
      `${ca}-key.pem`,
      "-out",
      `${ca}.pem`,
      "-days",
      "2",
      "-subj",
      `/CN=pmstack ${ca}`,
    ]);
  writeFileSync(join(d, "server.ext"), `subjectAltName=IP:${H.us},IP:${K.us},DNS:pmstack.test\n`);
  writeFileSync(join(d, "client.ext"), "extendedKeyUsage=clientAuth\n");
  const sign = (name, ca, ext) => {
    ssl(["req", ...ec, "-keyout", `${name}-key.pem`, "-out", `${name}.csr`, "-subj", `/CN=${name}`]);
    ssl([
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${ca}.pem`,
      "-CAkey",
      `${ca}-key.pem`,
      "-CAcreateserial",
      "-out",
      `${name}.pem`,
      "-days",
      "2",
      "-extfile",
      ext,
    ]);
  };
  sign("server", "ca", "server.ext");
  sign("client", "ca", "client.ext");
  sign("stranger", "rogue", "client.ext");
  for (const f of ["ca-key.pem", "rogue-key.pem", "server-key.pem", "client-key.pem", "stranger-key.pem"])
    chmodSync(join(d, f), 0o600);
  const p = (f) => join(d, f);
  return {
    dir: d,
    ca: p("ca.pem"),
    cert: p("server.pem"),
    key: p("server-key.pem"),
    client: p("client.pem"),
    clientKey: p("client-key.pem"),
    stranger: p("stranger.pem"),
    strangerKey: p("stranger-key.pem"),
  };
}

let certs;
const tlsArgs = (extra = []) => ["--tls-cert", certs.cert, "--tls-key", certs.key, ...extra];

function curl(ns, args, timeoutMs = 60_000) {
  return spawnIn(ns, "curl", ["-sS", "--max-time", "60", ...args], { timeoutMs });
}

/** Every buffer back: nothing held by the app or the stack, free == total - kept - the NIC's ring. */
async function noLeak(srv) {
  const st = await srv.idle(20_000);
  assert.is(st.pool.free, st.pool.total - st.pool.kept - st.pool.nic, JSON.stringify(st.pool));
  return st;
}

it("httpd over TLS: curl --cacert GET/POST over TLS 1.3 and 1.2, a 4 MiB body (sha256), the plain port beside it; bad key modes and non-TLS bytes", async () => {
  certs ??= makeCerts();
  const ns = new Netns("tlsh");
  const dir = scratchDir("tmpfs");
  const pm = join(dir, "h.pm");
  let srv;
  try {
    // a key every user may read is refused before anything starts
    const open = join(certs.dir, "open-key.pem");
    copyFileSync(certs.key, open);
    chmodSync(open, 0o644);
    const bad = await runCli(["httpd", "--pm", pm, "--tls-cert", certs.cert, "--tls-key", open]);
    assert.is(bad.status, 1, bad.stderr);
    assert.match(bad.stderr, `--tls-key ${open} is readable by every user (mode 644)`);
    assert.match(bad.stderr, `chmod 600 ${open}`);
    const half = await runCli(["kv", "--pm", pm, "--tls-cert", certs.cert]);
    assert.is(half.status, 2);
    assert.match(half.stderr, "--tls-cert and --tls-key go together");

    srv = await startCli(ns, "httpd", { pm, ...H, args: ["--size", "256M", ...tlsArgs()] });
    assert.match(srv.out(), `listening on ${H.us}:80, ${H.us}:443 (TLS)`);
    assert.match(srv.out(), "tls: TLS 1.2 and 1.3");
    const url = `https://${H.us}/greeting`;
    let r = await curl(ns, [
      "--cacert",
      certs.ca,
      "-d",
      "hello over TLS",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      url,
    ]);
    assert.is(r.stdout, "201", r.stderr);
    for (const [flag, version] of [
      ["--tlsv1.3", "TLSv1.3"],
      ["--tls-max 1.2", "TLSv1.2"],
    ]) {
      r = await curl(ns, ["-v", "--cacert", certs.ca, ...flag.split(" "), url]);
      assert.is(r.status, 0, r.stderr);
      assert.is(r.stdout, "hello over TLS");
      assert.match(r.stderr, `SSL connection using ${version}`);
    }
    // TLS 1.1 and below are refused
    r = await curl(ns, ["--cacert", certs.ca, "--tlsv1.0", "--tls-max", "1.1", url]);
    assert.is.not(r.status, 0, "TLS 1.1 refused");
    // the plain port serves the same store
    r = await curl(ns, [`http://${H.us}/greeting`]);
    assert.is(r.stdout, "hello over TLS");
    // a body of a few MiB both ways
    const files = scratchDir("disk");
    const big = writeRandomFile(join(files, "big.bin"), 4 * MiB + 12345, 7);
    r = await curl(ns, [
      "--cacert",
      certs.ca,
      "--data-binary",
      `@${join(files, "big.bin")}`,
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      `https://${H.us}/big`,
    ]);
    assert.is(r.stdout, "201", r.stderr);
    r = await curl(ns, ["--cacert", certs.ca, `https://${H.us}/big`]);
    assert.is(r.bytes, big.size);
    assert.is(r.sha256, big.sha, "the 4 MiB body read back over TLS");
    // plain HTTP to the TLS port: reset, one clear log line, counted
    r = await curl(ns, [`http://${H.us}:443/greeting`]);
    assert.is.not(r.status, 0);
    await waitFor(() => srv.err().includes("not a TLS ClientHello"), "the log line", 5000);
    assert.match(srv.err(), /pmstack: tls: 198\.18\.61\.1:\d+: not a TLS ClientHello: the first bytes are 47 45 54 20/);
    const st = await noLeak(srv);
    assert.is(st.tls.garbage, 1);
    assert.ok(st.tls.tls13 >= 1 && st.tls.tls12 >= 1, JSON.stringify(st.tls));
    assert.is(st.tls.handshaking, 0);
    assert.is((await srv.kill("SIGTERM")).status, 0);
    srv = null;
    rmSync(files, { recursive: true, force: true });
  } finally {
    await srv?.kill("SIGKILL");
    ns.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

it("kv over TLS: redis-cli --tls --cacert SET/GET, a 3 MiB value (sha256); with --tls-ca a client certificate is required (curl and redis-cli)", async () => {
  certs ??= makeCerts();
  const ns = new Netns("tlsk");
  const dir = scratchDir("tmpfs");
  let srv;
  try {
    srv = await startCli(ns, "kv", {
      pm: join(dir, "k.pm"),
      ...K,
      args: ["--size", "256M", "--port", "0", ...tlsArgs()],
    });
    assert.match(srv.out(), `listening on ${K.us}:6380 (TLS)`);
    const rc = (args, opts) =>
      spawnIn(ns, "redis-cli", ["--tls", "--cacert", certs.ca, "-h", K.us, "-p", "6380", ...args], opts);
    let r = await rc(["SET", "greeting", "hello over TLS"]);
    assert.is(r.stdout.trim(), "OK", r.stderr);
    r = await rc(["GET", "greeting"]);
    assert.is(r.stdout.trim(), "hello over TLS");
    const files = scratchDir("disk");
    const big = writeRandomFile(join(files, "v.bin"), 3 * MiB + 7, 9);
    r = await rc(["-x", "SET", "big"], { inputFile: join(files, "v.bin") });
    assert.is(r.stdout.trim(), "OK", r.stderr);
    r = await rc(["--raw", "GET", "big"]);
    assert.is(r.sha256, big.shaNl, "the 3 MiB value read back over TLS");
    // the plain port is off (--port 0)
    r = await spawnIn(ns, "redis-cli", ["-h", K.us, "-p", "6379", "PING"]);
    assert.match(r.stdout + r.stderr, /refused|Could not connect/i);
    await noLeak(srv);
    assert.is((await srv.kill("SIGTERM")).status, 0);
    rmSync(files, { recursive: true, force: true });

    // client certificates required, on both apps
    srv = await startCli(ns, "kv", {
      pm: join(dir, "k.pm"),
      ...K,
      args: ["--size", "256M", ...tlsArgs(["--tls-ca", certs.ca])],
    });
    assert.match(srv.out(), "client certificates required");
    r = await rc(["GET", "greeting"]);
    assert.is.not(r.stdout.trim(), "hello over TLS", "no client certificate: refused");
    r = await rc(["--cert", certs.stranger, "--key", certs.strangerKey, "GET", "greeting"]);
    assert.is.not(r.stdout.trim(), "hello over TLS", "a certificate of another CA: refused");
    r = await rc(["--cert", certs.client, "--key", certs.clientKey, "GET", "greeting"]);
    assert.is(r.stdout.trim(), "hello over TLS", r.stderr);
    const st = await noLeak(srv);
    assert.ok(st.tls.badClientCert >= 2, JSON.stringify(st.tls));
    assert.is((await srv.kill("SIGTERM")).status, 0);
    srv = await startCli(ns, "httpd", {
      pm: join(dir, "h.pm"),
      ...K,
      args: ["--size", "64M", ...tlsArgs(["--tls-ca", certs.ca])],
    });
    const url = `https://${K.us}/x`;
    r = await curl(ns, ["--cacert", certs.ca, "-d", "x", url]);
    assert.is.not(r.status, 0, "curl without a client certificate is refused");
    r = await curl(ns, ["--cacert", certs.ca, "--cert", certs.stranger, "--key", certs.strangerKey, "-d", "x", url]);
    assert.is.not(r.status, 0, "curl with another CA's certificate is refused");
    r = await curl(ns, [
      "--cacert",
      certs.ca,
      "--cert",
      certs.client,
      "--key",
      certs.clientKey,
      "-d",
      "x",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      url,
    ]);
    assert.is(r.stdout, "201", r.stderr);
    await noLeak(srv);
  } finally {
    await srv?.kill("SIGKILL");
    ns.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

it("TLS with a password and a token: redis-cli --tls --pass and curl --cacert -H 'Authorization: Bearer' work; unauthenticated writes are refused with the documented errors", async () => {
  certs ??= makeCerts();
  const ns = new Netns("tlsa");
  const dir = scratchDir("tmpfs");
  const pass = "correct horse battery staple";
  const token = "tok-3f9a1c7e5b2d";
  writeFileSync(join(dir, "pass"), pass + "\n", { mode: 0o600 });
  writeFileSync(join(dir, "token"), token + "\n", { mode: 0o600 });
  let srv;
  try {
    srv = await startCli(ns, "kv", {
      pm: join(dir, "k.pm"),
      ...K,
      args: ["--size", "128M", "--port", "0", "--requirepass-file", join(dir, "pass"), ...tlsArgs()],
    });
    assert.match(srv.out(), `listening on ${K.us}:6380 (TLS)`);
    const rc = (args) => spawnIn(ns, "redis-cli", ["--tls", "--cacert", certs.ca, "-h", K.us, "-p", "6380", ...args]);
    let r = await rc(["SET", "k", "v"]);
    assert.is(r.stdout.trim(), "NOAUTH Authentication required.", r.stderr);
    r = await rc(["--pass", "wrong", "--no-auth-warning", "SET", "k", "v"]);
    assert.match(r.stdout + r.stderr, /WRONGPASS invalid username-password pair or user is disabled\./);
    r = await rc(["--pass", pass, "--no-auth-warning", "SET", "k", "over TLS with a password"]);
    assert.is(r.stdout.trim(), "OK", r.stderr);
    r = await rc(["--user", "default", "--pass", pass, "--no-auth-warning", "GET", "k"]);
    assert.is(r.stdout.trim(), "over TLS with a password");
    let st = await noLeak(srv);
    assert.is(st.log.liveKeys, 1, "the refused SETs stored nothing");
    assert.ok(st.tls.handshakes >= 4, JSON.stringify(st.tls));
    assert.is((await srv.kill("SIGTERM")).status, 0);

    srv = await startCli(ns, "httpd", {
      pm: join(dir, "h.pm"),
      ...H,
      args: ["--size", "128M", "--token-file", join(dir, "token"), ...tlsArgs()],
    });
    const url = `https://${H.us}/obj`;
    const hcurl = (args) => curl(ns, ["--cacert", certs.ca, "-o", "/dev/null", "-w", "%{http_code}", ...args]);
    r = await hcurl(["-d", "no token", url]);
    assert.is(r.stdout, "401", r.stderr);
    r = await hcurl(["-H", "Authorization: Bearer wrong", "-X", "PUT", "-d", "bad token", url]);
    assert.is(r.stdout, "401", r.stderr);
    r = await hcurl(["-H", `Authorization: Bearer ${token}`, "-d", "over TLS with a token", url]);
    assert.is(r.stdout, "201", r.stderr);
    r = await curl(ns, ["--cacert", certs.ca, url]);
    assert.is(r.stdout, "over TLS with a token", "reads stay public without --private");
    r = await curl(ns, ["--cacert", certs.ca, "-i", "-X", "DELETE", url]);
    assert.match(r.stdout, /^HTTP\/1\.1 401/);
    assert.match(r.stdout, /www-authenticate: Bearer realm="pmstack"/i);
    st = await noLeak(srv);
    assert.is(st.app.unauthorized, 3, JSON.stringify(st.app));
    assert.is(st.app.authFailed, 1, "the wrong token");
    assert.is(st.app.puts, 1, "only the write with the token was stored");
    assert.is((await srv.kill("SIGTERM")).status, 0);
    srv = null;
  } finally {
    await srv?.kill("SIGKILL");
    ns.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

it("a client trickling a TLS record's bytes after its handshake is reset at --idle-timeout; an idle TLS connection is not", async () => {
  certs ??= makeCerts();
  const ns = new Netns("tlsl");
  const dir = scratchDir("tmpfs");
  let srv;
  try {
    srv = await startCli(ns, "httpd", {
      pm: join(dir, "l.pm"),
      ...H,
      args: ["--size", "128M", "--idle-timeout", "2", ...tlsArgs()],
    });
    const r = await spawnIn(ns, process.execPath, [TLS_CLIENT, "trickle", H.us, "443", certs.ca, "4000"]);
    assert.is(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout);
    assert.ok(res.trickleEnd !== null, `the trickling connection was never ended: ${r.stdout}`);
    assert.ok(res.trickleEnd >= 1900 && res.trickleEnd < 5000, `ended ${res.trickleEnd} ms after its first byte`);
    assert.ok(res.trickleBytes < 40, "its record never completed");
    assert.is(res.idleStatus, "HTTP/1.1 404 Not Found", "the idle TLS connection is served after 4 s");
    console.log(`  trickle: ${JSON.stringify(res)}`);
    const st = await noLeak(srv);
    assert.is(st.app.idleAborts, 1, JSON.stringify(st.app));
    assert.is((await srv.kill("SIGTERM")).status, 0);
    srv = null;
  } finally {
    await srv?.kill("SIGKILL");
    ns.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

it("kill -9 during TLS writes (kv SETs and httpd POSTs, on the disk): every acknowledged write reads back over TLS, nothing leaks", async () => {
  certs ??= makeCerts();
  const ns = new Netns("tlsc");
  const dir = scratchDir("disk");
  const procs = [];
  let srv;
  try {
    for (const [app, a, port] of [
      ["kv", K, 6380],
      ["httpd", H, 443],
    ]) {
      const cfg = { pm: join(dir, `${app}.pm`), ...a, args: ["--size", "256M", ...tlsArgs()] };
      for (let trial = 0; trial < 2; trial++) {
        srv = await startCli(ns, app, cfg);
        assert.match(srv.out(), /persist: journal/);
        const w = ns.spawn(process.execPath, [
          TLS_CLIENT,
          `${app === "kv" ? "kv" : "http"}-write`,
          a.us,
          String(port),
          certs.ca,
          "8",
          `t${trial}-`,
        ]);
        procs.push(w);
        await waitFor(() => w.out.split("\n").length > 200 + trial * 300, "acknowledged TLS writes", 30_000, 20);
        await sleep(150 + trial * 200);
        const ex = await srv.kill("SIGKILL");
        assert.is(ex.signal, "SIGKILL");
        await sleep(200);
        kill(w);
        const out = (await w.done).stdout;
        const acked = out.split("\n").filter(Boolean);
        srv = await startCli(ns, app, cfg);
        const check = await spawnIn(
          ns,
          process.execPath,
          [TLS_CLIENT, `${app === "kv" ? "kv" : "http"}-check`, a.us, String(port), certs.ca],
          {
            input: acked.join("\n") + "\n",
          },
        );
        assert.is(check.status, 0, check.stderr);
        const res = JSON.parse(check.stdout);
        assert.is(res.checked, acked.length);
        assert.is(
          res.badCount,
          0,
          `${app} trial ${trial}: acknowledged writes lost after kill -9: ${res.bad.join(" ")}`,
        );
        const st = await noLeak(srv);
        assert.ok(st.log.liveKeys >= acked.length, `${st.log.liveKeys} keys, ${acked.length} acknowledged`);
        console.log(
          `  ${app} trial ${trial}: ${acked.length} acknowledged TLS writes, all read back after kill -9; ${st.log.liveKeys} keys live`,
        );
        assert.is((await srv.kill("SIGTERM")).status, 0);
        srv = null;
      }
    }
  } finally {
    for (const p of procs) kill(p);
    await srv?.kill("SIGKILL");
    ns.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

it("a handshake flood and garbage before the ClientHello: a real TLS client is served throughout, failures counted, memory bounded, no buffer leaked", async () => {
  certs ??= makeCerts();
  const ns = new Netns("tlsf");
  const dir = scratchDir("tmpfs");
  let srv;
  try {
    srv = await startCli(ns, "httpd", {
      pm: join(dir, "f.pm"),
      ...H,
      args: ["--size", "128M", ...tlsArgs(["--tls-handshake-timeout", "2"])],
    });
    const rss0 = srv.rss();
    const steady = spawnIn(ns, process.execPath, [TLS_CLIENT, "steady", H.us, "443", certs.ca, "9000"]);
    await sleep(500);
    // 600 stalled partial ClientHellos (over the cap of 256 handshakes) and 300 garbage openings,
    // held for 4 s (beyond the 2 s handshake timeout)
    const flood = spawnIn(ns, process.execPath, [TLS_CLIENT, "flood", H.us, "443", "600", "300", "4000"]);
    const floodRes = await flood;
    assert.is(floodRes.status, 0, floodRes.stderr);
    const f = JSON.parse(floodRes.stdout);
    const rss1 = srv.rss();
    const s = await steady;
    assert.is(s.status, 0, s.stderr);
    const served = JSON.parse(s.stdout);
    assert.is(served.failed, 0, `the real client failed during the flood: ${served.errors.join("; ")}`);
    assert.ok(served.ok > 20, `the real client was served ${served.ok} times in 9 s`);
    const st = await noLeak(srv);
    const t = st.tls;
    // a garbage opening still queued under the handshake cap may be evicted before its bytes
    // are read (counted as evicted, not as garbage); stalled handshakes end at the cap or by
    // the timer, whichever comes first on this run
    assert.ok(t.garbage > 0 && t.garbage <= 300 && t.garbage + t.evicted >= 300, JSON.stringify(t));
    assert.ok(t.evicted + t.timeouts > 0, `stalled handshakes were ended: ${JSON.stringify(t)}`);
    assert.is(t.handshaking, 0);
    assert.is(f.garbageEnded, 300, `every garbage connection was ended by the server: ${floodRes.stdout}`);
    assert.ok(
      rss1 - rss0 < 256 * MiB,
      `the server's memory grew by ${((rss1 - rss0) / MiB).toFixed(0)} MiB under the flood`,
    );
    // the garbage is logged, or summed up by the sweep when ten other failures filled the second
    await waitFor(() => /more failures not shown|not a TLS ClientHello/.test(srv.err()), "the failure log", 5000);
    console.log(
      `  flood: ${JSON.stringify(f)}; real client ${served.ok} POST+GET, 0 failed; tls ${JSON.stringify({ garbage: t.garbage, evicted: t.evicted, timeouts: t.timeouts, handshakes: t.handshakes })}; rss +${((rss1 - rss0) / MiB).toFixed(0)} MiB`,
    );
    assert.is((await srv.kill("SIGTERM")).status, 0);
    srv = null;
  } finally {
    await srv?.kill("SIGKILL");
    ns.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});

it("no namespace or device left behind", () => {
  if (certs) rmSync(certs.dir, { recursive: true, force: true });
  const l = leftovers();
  assert.equal(l.netns, []);
});

test.run();

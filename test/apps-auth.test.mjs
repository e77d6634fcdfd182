// The pieces authentication stands on (host/apps/auth.ts): constant-time comparison, the
// limiter of failed attempts (per connection and server-wide), the networks protected mode
// serves; and RespParser's limits before AUTH. The servers' behaviour is in e2e-auth.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { execFileSync } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { safeEqual, FailureLimiter, NetList, RespParser, TlsTerminator } from "../build/index.js";
import { scratchDir } from "./lib/tmp.mjs";

test("safeEqual: equal only for the same bytes, whatever the lengths", () => {
  assert.ok(safeEqual("secret", "secret"));
  assert.ok(safeEqual(new TextEncoder().encode("päss"), "päss"));
  for (const g of ["", "s", "secre", "secret ", "secreT", "secretsecret", "\0secret"])
    assert.not.ok(safeEqual(g, "secret"), g);
  assert.not.ok(safeEqual("abc", ""));
  assert.ok(safeEqual("", ""));
});

test("FailureLimiter: a connection's delay doubles up to its cap; the server-wide budget adds its own", () => {
  const l = new FailureLimiter({ baseDelayMs: 100, maxDelayMs: 5000, perSecond: 100, maxGlobalDelayMs: 10_000 });
  assert.equal(
    [1, 2, 3, 4, 5, 6, 7, 8].map((n) => l.failure(n, 0)),
    [100, 200, 400, 800, 1600, 3200, 5000, 5000],
  );
  // 100 a second are the budget: 200 failures at once put the 200th 1 s behind
  const g = new FailureLimiter({ perSecond: 100 });
  const d = [];
  for (let i = 0; i < 200; i++) d.push(g.failure(1, 1000));
  assert.is(d[0], 100);
  assert.is(d[99], 100);
  assert.is(d[199], 1000);
  // the deficit is bounded: a flood never holds an answer past maxGlobalDelayMs
  for (let i = 0; i < 100_000; i++) g.failure(1, 1000);
  assert.is(g.failure(1, 1000), 10_000);
  // and recovers with time
  assert.is(g.failure(1, 1000 + 11_000), 100);
});

test("NetList: IPv4 and IPv6 networks and single addresses", () => {
  const n = new NetList().add("198.18.0.1").add("198.19.4.0/22").add("2001:2::/48");
  assert.ok(n.has("198.18.0.1"));
  assert.not.ok(n.has("198.18.0.2"));
  assert.ok(n.has("198.19.7.255"));
  assert.not.ok(n.has("198.19.8.0"));
  assert.ok(n.has("2001:2:0:63::1"));
  assert.not.ok(n.has("2001:2:1::1"));
  assert.not.ok(n.has("::ffff:198.18.0.2"));
  assert.not.ok(n.has("not an address"));
  assert.is(String(n), "198.18.0.1/32, 198.19.4.0/22, 2001:2::/48");
  assert.throws(() => new NetList().add("198.18.0.0/33"));
});

test("RespParser.unauthenticated: Redis's limits before AUTH, then its usual ones", () => {
  const run = (p, s) => {
    const ev = [];
    p.feed(new TextEncoder().encode(s), (e) => ev.push(e.kind === "error" ? `error: ${e.message}` : e.kind));
    return ev;
  };
  const p = new RespParser();
  p.unauthenticated = true;
  assert.equal(run(p, "*11\r\n"), ["error: unauthenticated multibulk length"]);
  const q = new RespParser();
  q.unauthenticated = true;
  assert.equal(run(q, "*2\r\n$4\r\nAUTH\r\n$16385\r\n"), ["begin", "arg", "error: unauthenticated bulk length"]);
  const r = new RespParser();
  r.unauthenticated = true;
  assert.equal(run(r, `*10\r\n${"$1\r\nx\r\n".repeat(10)}`).at(-1), "end");
  r.unauthenticated = false;
  assert.equal(run(r, "*11\r\n").at(0), "begin");
});

test("TlsTerminator's failure log: ten lines a second, the rest summed up by the sweep even when no failure follows", async () => {
  const d = scratchDir("tmpfs");
  try {
    execFileSync(
      "openssl",
      ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"].concat([
        "-keyout",
        join(d, "k.pem"),
        "-out",
        join(d, "c.pem"),
        "-days",
        "1",
        "-subj",
        "/CN=log",
      ]),
      { stdio: "ignore" },
    );
    const lines = [];
    const t = new TlsTerminator({
      cert: readFileSync(join(d, "c.pem")),
      key: readFileSync(join(d, "k.pem")),
      handshakeTimeoutMs: 200,
      log: (l) => lines.push(l),
    });
    try {
      for (let i = 0; i < 25; i++) t.log(`failure ${i}`);
      assert.equal(
        lines,
        Array.from({ length: 10 }, (_, i) => `failure ${i}`),
      );
      await new Promise((r) => setTimeout(r, 1400));
      assert.is(lines.length, 11);
      assert.is(lines[10], "pmstack: tls: 15 more failures not shown");
      t.log("failure 25");
      assert.is(lines.at(-1), "failure 25");
    } finally {
      t.close();
    }
  } finally {
    rmSync(d, { recursive: true, force: true });
  }
});

test.run();

// End to end: the durable HTTP server on pmstack over TAP, curl in a namespace as the client.
// POST keeps bodies in PM and logs their names; GET serves them from PM; the server restarts
// and every acknowledged key reads back byte-exact.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { serveHttpd } from "../build/index.js";
import { Netns, netnsUnavailable, leftovers } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";

const why = netnsUnavailable();
if (why) console.warn(`\n!!! e2e-httpd: SKIPPED, network namespaces unavailable: ${why}\n`);
const it = why ? test.skip : test;
const US = "198.18.2.2";

function start(ns, path, buffers = 8192) {
  const srv = serveHttpd({
    path,
    buffers,
    mac: "02:00:00:00:02:02",
    ip: `${US}/24`,
    tap: { name: "pmweb0", netns: ns.path },
  });
  ns.ip(["link", "set", "pmweb0", "up"]);
  ns.ip(["addr", "replace", "198.18.2.1/24", "dev", "pmweb0"]);
  return srv;
}

async function curl(ns, args, input) {
  const p = ns.spawn("curl", ["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", ...args]);
  if (input !== undefined) p.stdin.end(input);
  else p.stdin.end();
  const r = await p.done;
  const nl = r.stdout.lastIndexOf("\n");
  return { status: Number(r.stdout.slice(nl + 1)), body: r.stdout.slice(0, nl), err: r.stderr, code: r.status };
}

// A raw client in the namespace: writes stdin's bytes in one write, prints everything the
// server sends until it closes (or 5 s pass).
const RAW = `
const s = require("net").connect(+process.argv[2], process.argv[1]);
const out = [];
s.on("data", (d) => out.push(d));
s.on("close", () => process.stdout.write(Buffer.concat(out), () => process.exit(0)));
s.on("error", (e) => { console.error(e.code); process.exit(1); });
const inp = [];
process.stdin.on("data", (d) => inp.push(d));
process.stdin.on("end", () => s.write(Buffer.concat(inp)));
setTimeout(() => process.stdout.write(Buffer.concat(out), () => process.exit(3)), 10000);
`;

async function raw(ns, bytes) {
  const p = ns.spawn(process.execPath, ["-e", RAW, US, "80"]);
  p.stdin.end(bytes);
  const r = await p.done;
  return { text: r.stdout, code: r.status };
}

function statuses(text) {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
}

it("POST, GET, DELETE, errors and a restart: every acknowledged key reads back", async () => {
  const ns = new Netns("web");
  const path = join(scratchDir("disk"), "httpd.pm");
  let srv;
  const bodies = new Map();
  try {
    srv = start(ns, path);
    for (let k = 0; k < 20; k++) {
      const body = `value ${k} `.repeat(1 + k * 37);
      const r = await curl(ns, ["--data-binary", "@-", `http://${US}/key${k}`], body);
      assert.is(r.status, 201, r.err);
      bodies.set(`key${k}`, body);
    }
    const g = await curl(ns, [`http://${US}/key7`]);
    assert.is(g.status, 200);
    assert.is(g.body, bodies.get("key7"));
    assert.is((await curl(ns, [`http://${US}/nope`])).status, 404);
    assert.is((await curl(ns, ["-X", "DELETE", `http://${US}/key3`])).status, 204);
    bodies.delete("key3");
    assert.is((await curl(ns, [`http://${US}/key3`])).status, 404);
    assert.is((await curl(ns, ["-X", "PATCH", `http://${US}/key1`])).status, 405);
    const big = await curl(
      ns,
      ["-H", "Content-Type: application/octet-stream", "--data-binary", "@-", `http://${US}/big`],
      "x".repeat(100_000),
    );
    assert.is(big.status, 413);
    const stats = JSON.parse((await curl(ns, [`http://${US}/`])).body);
    assert.is(stats.keys, 19);
    // keep-alive and pipelining: several requests on one connection, replies in order
    const multi = await curl(ns, [`http://${US}/key1`, `http://${US}/key2`, `http://${US}/nope`]);
    assert.is(multi.body.includes(bodies.get("key1")) && multi.body.includes(bodies.get("key2")), true);
    // restart: a new process would do the same: close everything, reopen the file
    srv.close();
    srv = start(ns, path);
    assert.is(srv.log.recovery.liveKeys, 19);
    for (const [key, body] of bodies) {
      const r = await curl(ns, [`http://${US}/${key}`]);
      assert.is(r.status, 200, key);
      assert.is(
        createHash("sha256").update(r.body).digest("hex"),
        createHash("sha256").update(body).digest("hex"),
        key,
      );
    }
  } finally {
    srv?.close();
    ns.cleanup();
  }
});

it("a GET queued behind a POST's commit still sends its body when a DELETE or overwrite of that key commits first", async () => {
  const ns = new Netns("web");
  const path = join(scratchDir("disk"), "httpd-getdel.pm");
  let srv;
  try {
    srv = start(ns, path);
    const body = "b".repeat(3000) + "end";
    assert.is((await curl(ns, ["--data-binary", "@-", `http://${US}/g`], body)).status, 201);
    assert.is((await curl(ns, ["--data-binary", "@-", `http://${US}/h`], body)).status, 201);
    // one write: the GETs wait for the first POST's group commit, which also commits the
    // DELETE of /g and the overwrite of /h that follow them (and releases their old bodies)
    const req = [
      "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx",
      "GET /g HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /h HTTP/1.1\r\nHost: x\r\n\r\n",
      "DELETE /g HTTP/1.1\r\nHost: x\r\n\r\n",
      "POST /h HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nnew",
      "GET /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ].join("");
    const r = await raw(ns, req);
    assert.equal(statuses(r.text), [201, 200, 200, 204, 201, 200]);
    const parts = r.text.split("\r\n\r\n");
    assert.ok(parts[2].startsWith(body), "GET /g: the body as it was, not a freed buffer's bytes");
    assert.ok(parts[3].startsWith(body), "GET /h: the old body as it was");
    assert.ok(r.text.endsWith("\r\n\r\nnew"), "the last GET sees the overwrite");
    assert.is(srv.stack.pool.counts().app, 0);
    srv.stack.pool.check();
  } finally {
    srv?.close();
    ns.cleanup();
  }
});

it("pipelining: replies in order; 404, 405 and 413 keep the connection, 411 and 400 close it", async () => {
  const ns = new Netns("web");
  const path = join(scratchDir("disk"), "httpd-pipe.pm");
  let srv;
  try {
    srv = start(ns, path);
    const big = "y".repeat(70_000);
    const req = [
      "POST /p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\none",
      "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
      "PATCH /p1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
      `POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: ${big.length}\r\n\r\n${big}`,
      "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n",
      "POST /p2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\ntwo!!",
      "GET /p2 HTTP/1.1\r\nHost: x\r\n\r\n",
      "POST /p3 HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET /p1 HTTP/1.1\r\nHost: x\r\n\r\n",
    ].join("");
    const r = await raw(ns, req);
    assert.is(r.code, 0, "the server closes after the 411");
    assert.equal(statuses(r.text), [201, 404, 405, 413, 200, 201, 200, 411]);
    const bodies = r.text.split(/\r\n\r\n/);
    assert.ok(r.text.includes("\r\n\r\none"), "GET /p1 after the 413 returns its body");
    assert.ok(r.text.includes("\r\n\r\ntwo!!"), "GET /p2 returns the body POSTed on the same connection");
    assert.ok(bodies.length >= 8);
    const bad = await raw(ns, "GARBAGE\r\n\r\nGET /p1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.equal(statuses(bad.text), [400]);
    assert.is(bad.code, 0);
    // every buffer is accounted for: the keys' bodies are kept, nothing else is held by the app
    const counts = srv.stack.pool.counts();
    assert.is(counts.app, 0, JSON.stringify(counts));
    assert.ok(srv.stack.pool.check(), "pool invariant");
  } finally {
    srv?.close();
    ns.cleanup();
  }
});

it("a full pool: POST answers 507 and keeps nothing, GET and DELETE still work, then POST again", async () => {
  const ns = new Netns("web");
  const path = join(scratchDir("disk"), "httpd-full.pm");
  let srv;
  try {
    srv = start(ns, path, 4096);
    const body = "z".repeat(1500);
    const n = 6000;
    let req = "";
    for (let k = 0; k < n; k++)
      req += `POST /f${k} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    req += "GET /f0 HTTP/1.1\r\nHost: x\r\n\r\n";
    req += "DELETE /f1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const r = await raw(ns, req);
    const st = statuses(r.text);
    assert.is(st.length, n + 2, "every request is answered");
    const created = st.slice(0, n).filter((x) => x === 201).length;
    const full = st.slice(0, n).filter((x) => x === 507).length;
    assert.is(created + full, n, "POSTs answer 201 or 507 only");
    assert.ok(full > 0 && created > 1000, `created ${created}, refused ${full}`);
    assert.equal(st.slice(n), [200, 204]);
    assert.is(srv.app.stats.full, full);
    assert.is(srv.log.size, created - 1);
    // a refused body kept nothing: the pool still has its reserve free, and a POST succeeds again
    assert.ok(srv.stack.pool.counts().free >= srv.app.reserveBuffers - 64);
    // still full: one more POST is refused; DELETE frees the bodies' buffers, and POSTs fit again
    assert.is((await curl(ns, ["--data-binary", "@-", `http://${US}/after`], "fits again")).status, 507);
    let del = "";
    for (let k = 2; k < 1200; k++) del += `DELETE /f${k} HTTP/1.1\r\nHost: x\r\n\r\n`;
    const d = await raw(ns, del + "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert.ok(statuses(d.text).every((x) => x === 204 || x === 404 || x === 200));
    const again = await curl(ns, ["--data-binary", "@-", `http://${US}/after`], "fits again");
    assert.is(again.status, 201);
    assert.is((await curl(ns, [`http://${US}/after`])).body, "fits again");
    srv.stack.pool.check();
  } finally {
    srv?.close();
    ns.cleanup();
  }
});

it("nothing is left behind", () => {
  const l = leftovers();
  assert.equal(l.netns, []);
  assert.equal(l.links, []);
});

test.run();

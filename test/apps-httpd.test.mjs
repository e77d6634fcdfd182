// HttpdApp in memory (no NIC, no kernel): a client stack and the server over a MemoryLink, the
// turns driven by hand in NicLoop's order. PUT and POST bodies of 0 bytes to 8 MB (Content-Length
// and chunked), Expect: 100-continue, GET whole and by Range, HEAD, Content-Type, overwrite and
// DELETE, bodies cut short, malformed chunked framing, the idle timeout, a full pool; every test
// checks that the pool's kept buffers are exactly the ones live records reach (through their
// extent trees) plus the arena's current buffer. Abuse: seeded random requests and mangled bytes
// on several connections must never take the server down, lose an acknowledged body or leak a
// buffer.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Stack, MemoryLink, PmLog, HttpdApp, keyHashSlot } from "../build/index.js";
import { rng } from "./lib/rng.mjs";
import { shardQueues } from "./lib/shard-pair.mjs";
import {
  memClient,
  ByteQueue,
  cat,
  randomBytes,
  sameBytes,
  SRV_IP,
  assertKeptExact as keptExact,
  assertAllFreed as allFreed,
} from "./lib/memclient.mjs";

const enc = (s) => new TextEncoder().encode(s);
const latin1 = (b) => Buffer.from(b.buffer, b.byteOffset, b.length).toString("latin1");

/** A chunked body: `body` cut in chunks of random sizes, each `size[;ext] CRLF data CRLF`, then the last chunk. */
function chunked(r, body, { maxChunk = 70_000, trailer = "" } = {}) {
  const parts = [];
  for (let at = 0; at < body.length;) {
    const n = Math.min(body.length - at, 1 + r.int(r() < 0.3 ? 10 : maxChunk));
    parts.push(n.toString(16) + (r() < 0.1 ? ";ext=1" : "") + "\r\n", body.subarray(at, at + n), "\r\n");
    at += n;
  }
  parts.push("0\r\n" + trailer + "\r\n");
  return cat(parts);
}

/** `METHOD /key` with headers (Host added) and a body framed by Content-Length unless `chunked`. */
function req(method, target, { body, headers = [], chunkedBody } = {}) {
  const hs = ["Host: x", ...headers];
  if (chunkedBody) hs.push("Transfer-Encoding: chunked");
  else if (body) hs.push(`Content-Length: ${body.length}`);
  return cat([`${method} ${target} HTTP/1.1\r\n${hs.join("\r\n")}\r\n\r\n`, chunkedBody ?? body ?? new Uint8Array(0)]);
}

/**
 * One response from `buf`: [{ status, reason, headers (lower-cased names), head, body }, next],
 * or null when incomplete. No body for 1xx, 204, 304 or an answer to HEAD.
 */
function parseResponse(buf, method) {
  const end = Buffer.from(buf.buffer, buf.byteOffset, buf.length).indexOf("\r\n\r\n");
  if (end < 0) return null;
  const head = latin1(buf.subarray(0, end));
  const lines = head.split("\r\n");
  const m = /^HTTP\/1\.1 (\d{3}) (.*)$/.exec(lines[0]);
  if (!m) throw new Error(`not a status line: ${JSON.stringify(lines[0])}`);
  const headers = new Map();
  for (const l of lines.slice(1)) {
    const c = l.indexOf(":");
    headers.set(l.slice(0, c).toLowerCase(), l.slice(c + 1).trim());
  }
  const status = Number(m[1]);
  const bodyless = status < 200 || status === 204 || status === 304 || method === "HEAD";
  const len = bodyless ? 0 : Number(headers.get("content-length") ?? 0);
  if (buf.length < end + 4 + len) return null;
  return [{ status, reason: m[2], headers, head, body: buf.slice(end + 4, end + 4 + len) }, end + 4 + len];
}

function httpdPair({ buffers = 4096, maxBody, reserveBuffers, idleTimeoutMs, shards, path } = {}) {
  const srv = Stack.create({
    mac: "02:00:00:00:08:01",
    ip: `${SRV_IP}/24`,
    pool: { buffers, metaBytes: 1 << 20, path },
    configure: (core) => PmLog.configure(core),
  });
  const log = PmLog.open(srv.pool);
  const app = new HttpdApp(srv, log, 80, { maxBody, reserveBuffers, idleTimeoutMs, shards });
  const cli = Stack.create({ mac: "02:00:00:00:08:02", ip: "198.18.8.2/24", pool: { buffers: 4096 } });
  const link = new MemoryLink(srv.port, cli.port);
  // per connection: what arrived (q), the methods of requests not answered yet (pending)
  const mc = memClient(cli, {
    state: () => ({ q: new ByteQueue(), pending: [], total: 0 }),
    onData: (c, bytes) => {
      c.q.push(bytes);
      c.total += bytes.length;
    },
  });
  const conns = mc.conns;
  const h = {
    srv,
    log,
    app,
    cli,
    conns,
    now: 0,
    turn() {
      srv.poll(h.now);
      srv.drainEvents(app.onEvent);
      srv.poll(h.now);
      srv.drainEvents(app.onEvent);
      app.onTurnEnd();
      srv.poll(h.now);
      srv.drainEvents(app.onEvent);
      cli.poll(h.now);
      cli.drainEvents(h.onClient);
      const moved = link.step(h.now);
      h.now += moved ? 0.05 : 1;
    },
    run(done, limit = 50_000) {
      for (let k = 0; k < limit; k++) {
        h.turn();
        if (done()) return;
      }
      throw new Error("httpdPair.run: not done in time");
    },
    settle(turns = 100) {
      for (let k = 0; k < turns; k++) h.turn();
    },
    connect() {
      const before = new Set(conns.keys());
      cli.connect(SRV_IP, 80);
      h.run(() => [...conns.keys()].some((k) => !before.has(k)));
      return [...conns.keys()].find((k) => !before.has(k));
    },
    /** Sends raw bytes (requests whose methods are in `methods`, for the response parser). */
    send(conn, bytes, methods = [], seg = 1400) {
      conns.get(conn).pending.push(...methods);
      return mc.send(conn, bytes, seg, () => h.turn());
    },
    onClient: mc.onClient,
    /** The responses complete so far (interim 1xx ones included), taken off the connection. */
    take(conn) {
      const c = conns.get(conn);
      const out = [];
      for (;;) {
        const r = parseResponse(c.q.view(), c.pending[0]);
        if (!r) break;
        out.push(r[0]);
        c.q.consume(r[1]);
        if (r[0].status >= 200) c.pending.shift();
      }
      return out;
    },
    /** Waits until `n` final responses (and any interim ones before them) arrived. */
    wait(conn, n, limit) {
      const got = [];
      h.run(() => (got.push(...h.take(conn)), got.filter((x) => x.status >= 200).length >= n), limit);
      return got;
    },
    /** Requests on `conn` (pipelined, [method, bytes] each) and their final responses. */
    exchange(conn, reqs, seg) {
      h.send(
        conn,
        cat(reqs.map((r) => r[1])),
        reqs.map((r) => r[0]),
        seg,
      );
      return h.wait(conn, reqs.length).filter((x) => x.status >= 200);
    },
    /** One request on a fresh connection, its response; the connection closed after. */
    request(method, target, opts) {
      const c = h.connect();
      const [res] = h.exchange(c, [[method, req(method, target, opts)]]);
      h.closeConn(c);
      return res;
    },
    closeConn(c) {
      if (!conns.get(c).closed) cli.close(c);
      h.settle(20);
    },
    close() {
      app.close();
      srv.shutdown();
      cli.shutdown();
    },
  };
  return h;
}

/** The pool keeps exactly what live records reach, plus the arena's current buffer. */
const assertKeptExact = (h, msg = "") => keptExact(h.srv.pool, h.log, h.app.arena.current, msg);

/** No record left, no kept buffer but the arena's, no more app buffers than at `base`. */
const assertAllFreed = (h, base, msg = "") => allFreed(h.srv.pool, h.log, h.app.arena.current, base, msg);

const text = (b) => latin1(b);

test("in memory: POST, GET, DELETE and GET / answer as documented", () => {
  const h = httpdPair();
  assert.is(h.request("POST", "/a", { body: enc("hello") }).status, 201);
  const got = h.request("GET", "/a");
  assert.is(got.status, 200);
  assert.is(text(got.body), "hello");
  assert.is(h.request("DELETE", "/a").status, 204);
  assert.is(h.request("GET", "/a").status, 404);
  const stats = h.request("GET", "/");
  assert.is(stats.status, 200);
  assert.is(stats.headers.get("content-type"), "application/json");
  const s = JSON.parse(text(stats.body));
  assert.is(s.keys, 0);
  assert.is(s.puts, 1);
  assert.is(s.deletes, 1);
  assert.ok(s.gets >= 2);
  h.close();
});

test("PUT and POST bodies of 0 bytes to 8 MB, with Content-Length and chunked (random chunk sizes), read back byte-exact", () => {
  const h = httpdPair({ buffers: 16384 });
  const r = rng(1);
  h.settle(10);
  const base = h.srv.pool.check();
  const c = h.connect();
  const keys = [];
  for (const size of [0, 1, 100, 1448, 1449, 65_536, 1 << 20, 8 << 20]) {
    const body = randomBytes(r, size);
    for (const [method, framing] of [
      ["PUT", "length"],
      ["POST", "chunked"],
    ]) {
      const key = `/${method}-${framing}-${size}`;
      keys.push(key);
      const q =
        framing === "length"
          ? req(method, key, { body, headers: ["Content-Type: application/x-test"] })
          : req(method, key, { chunkedBody: chunked(r, body, { trailer: r() < 0.5 ? "X-Sum: 1\r\n" : "" }) });
      const [put] = h.exchange(c, [[method, q]], size < 10_000 ? 97 : 1400);
      assert.is(put.status, 201, `${key}: ${put.head}`);
      assert.is(put.headers.get("content-length"), "0");
      const [get, head] = h.exchange(c, [
        ["GET", req("GET", key)],
        ["HEAD", req("HEAD", key)],
      ]);
      assert.is(get.status, 200, key);
      sameBytes(get.body, body, key);
      assert.is(get.headers.get("content-length"), String(size));
      assert.is(get.headers.get("accept-ranges"), "bytes");
      assert.is(
        get.headers.get("content-type"),
        framing === "length" ? "application/x-test" : "application/octet-stream",
      );
      assert.is(head.status, 200);
      assert.is(head.headers.get("content-length"), String(size), "HEAD has GET's headers");
      assert.is(head.body.length, 0);
    }
  }
  assert.is(h.app.stats.puts, keys.length);
  assert.is(h.log.size, keys.length);
  const big = h.log.object("PUT-length-8388608");
  assert.ok(big.names.length <= 64 && big.names.some((n) => n.height), "an 8 MB body is an extent tree");
  h.settle(50);
  assertKeptExact(h, "with every body stored");
  // GET of them all, pipelined on one connection, the 8 MB ones included
  const all = h.exchange(
    c,
    keys.map((k) => ["GET", req("GET", k)]),
  );
  all.forEach((res, i) => assert.is(res.body.length, Number(keys[i].split("-")[2]), keys[i]));
  const dels = h.exchange(
    c,
    keys.map((k) => ["DELETE", req("DELETE", k)]),
  );
  assert.ok(dels.every((x) => x.status === 204));
  h.closeConn(c);
  assertAllFreed(h, base, "after DELETE of every body");
  h.close();
});

test("Expect: 100-continue: the 100 comes before the body is sent, then 201; a refused size answers 413 or 507 without a 100 and closes", () => {
  const h = httpdPair({ buffers: 4096, maxBody: 1 << 20 });
  const r = rng(2);
  h.settle(10);
  const base = h.srv.pool.check();
  for (const framing of ["length", "chunked"]) {
    const c = h.connect();
    const body = randomBytes(r, 300_000);
    const head =
      framing === "length"
        ? `PUT /e-${framing} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n`
        : `PUT /e-${framing} HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n`;
    h.send(c, enc(head), ["PUT"]);
    const first = [];
    h.run(() => (first.push(...h.take(c)), first.length > 0));
    assert.is(first.length, 1);
    assert.is(first[0].status, 100, "only the interim answer before the body");
    assert.is(first[0].head, "HTTP/1.1 100 Continue");
    assert.is(h.conns.get(c).q.length, 0, "nothing after it");
    h.settle(20);
    assert.is(h.take(c).length, 0, "the server waits for the body");
    h.send(c, framing === "length" ? body : chunked(r, body));
    const [done] = h.wait(c, 1);
    assert.is(done.status, 201);
    const [get] = h.exchange(c, [["GET", req("GET", `/e-${framing}`)]]);
    sameBytes(get.body, body, framing);
    h.closeConn(c);
  }
  // refused from the head: the client waits for a 100 that never comes, gets the final status,
  // and the connection closes (the server cannot know whether the body will follow)
  for (const [cl, status] of [
    [(1 << 20) + 1, 413], // over maxBody
    [100 << 20, 507], // under the default maxBody (1 GiB), over what the pool's free buffers hold
  ]) {
    const h2 = status === 507 ? httpdPair({ buffers: 2048 }) : h;
    const c = h2.connect();
    h2.send(c, enc(`PUT /refused HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: ${cl}\r\n\r\n`), [
      "PUT",
    ]);
    const got = h2.wait(c, 1);
    assert.equal(
      got.map((x) => x.status),
      [status],
      "the final status, no 100",
    );
    assert.is(got[0].headers.get("connection"), "close");
    h2.run(() => h2.conns.get(c).closed, 2000);
    assert.is(h2.log.has("refused"), false);
    if (h2 !== h) h2.close();
  }
  // an expectation other than 100-continue: 417, the Content-Length body skipped, the connection goes on
  const c = h.connect();
  const res = h.exchange(c, [
    ["PUT", req("PUT", "/x", { body: enc("abc"), headers: ["Expect: something-else"] })],
    ["GET", req("GET", "/e-length")],
  ]);
  assert.equal(
    res.map((x) => x.status),
    [417, 200],
  );
  assert.is(h.log.has("x"), false);
  h.exchange(c, [
    ["DELETE", req("DELETE", "/e-length")],
    ["DELETE", req("DELETE", "/e-chunked")],
  ]);
  h.closeConn(c);
  assertAllFreed(h, base, "after the Expect requests");
  h.close();
});

test("GET by Range: 206 with Content-Range, 416 with bytes */size, an invalid or multiple Range is ignored (200); HEAD has no body", () => {
  const h = httpdPair({ buffers: 4096 });
  const r = rng(3);
  const size = 1 << 20;
  const body = randomBytes(r, size);
  assert.is(h.request("PUT", "/r", { body, headers: ["Content-Type: video/mp4"] }).status, 201);
  assert.is(h.request("PUT", "/empty", { body: new Uint8Array(0) }).status, 201);
  const c = h.connect();
  const cases = [
    ["bytes=0-0", 206, 0, 1],
    ["bytes=0-", 206, 0, size],
    ["bytes=100-199", 206, 100, 200],
    [`bytes=${size - 1}-`, 206, size - 1, size],
    [`bytes=${size - 10}-${size + 1000}`, 206, size - 10, size],
    ["bytes=-1", 206, size - 1, size],
    ["bytes=-500000", 206, size - 500_000, size],
    [`bytes=-${size + 5}`, 206, 0, size],
    ["BYTES=5-9", 206, 5, 10],
    [" bytes=5-9 ", 206, 5, 10],
    ["bytes=0000000000000005-000009", 206, 5, 10],
    [`bytes=${size}-`, 416],
    [`bytes=${size + 5}-${size + 10}`, 416],
    ["bytes=-0", 416],
    ["bytes=5-2", 200],
    ["bytes=0-1,3-4", 200],
    ["items=0-1", 200],
    ["bytes=abc", 200],
    ["bytes=-", 200],
    ["bytes", 200],
  ];
  for (let k = 0; k < 20; k++) {
    const s = r.int(size);
    const e = s + r.int(200_000);
    cases.push([`bytes=${s}-${e}`, 206, s, Math.min(e + 1, size)]);
  }
  const res = h.exchange(
    c,
    cases.map(([range]) => ["GET", req("GET", "/r", { headers: [`Range: ${range}`] })]),
  );
  cases.forEach(([range, status, s, e], i) => {
    const got = res[i];
    assert.is(got.status, status, range);
    if (status === 206) {
      assert.is(got.headers.get("content-range"), `bytes ${s}-${e - 1}/${size}`, range);
      assert.is(got.headers.get("content-length"), String(e - s));
      sameBytes(got.body, body.subarray(s, e), range);
      assert.is(got.headers.get("content-type"), "video/mp4");
    } else if (status === 416) {
      assert.is(got.headers.get("content-range"), `bytes */${size}`, range);
    } else sameBytes(got.body, body, range);
  });
  // HEAD: GET's headers, no body, Range included
  const [head, headRange, empty, emptyRange] = h.exchange(c, [
    ["HEAD", req("HEAD", "/r")],
    ["HEAD", req("HEAD", "/r", { headers: ["Range: bytes=10-19"] })],
    ["GET", req("GET", "/empty")],
    ["GET", req("GET", "/empty", { headers: ["Range: bytes=0-"] })],
  ]);
  assert.is(head.status, 200);
  assert.is(head.headers.get("content-length"), String(size));
  assert.is(head.headers.get("content-type"), "video/mp4");
  assert.is(headRange.status, 206);
  assert.is(headRange.headers.get("content-range"), `bytes 10-19/${size}`);
  assert.is(headRange.headers.get("content-length"), "10");
  assert.is(empty.status, 200);
  assert.is(empty.body.length, 0);
  assert.is(emptyRange.status, 416);
  assert.is(emptyRange.headers.get("content-range"), "bytes */0");
  // the connection is in sync after all of them
  const [last] = h.exchange(c, [["GET", req("GET", "/r", { headers: ["Range: bytes=1-2"] })]]);
  assert.equal([...last.body], [...body.subarray(1, 3)]);
  h.closeConn(c);
  assertKeptExact(h, "after the range requests");
  h.close();
});

test("Content-Type is stored with the body and returned; the default is application/octet-stream; over 255 bytes is 400", () => {
  const h = httpdPair();
  for (const [type, want] of [
    ["text/plain; charset=utf-8", "text/plain; charset=utf-8"],
    ["application/json", "application/json"],
    [null, "application/octet-stream"],
    ["x/" + "y".repeat(253), "x/" + "y".repeat(253)],
  ]) {
    const headers = type === null ? [] : [`Content-Type: ${type}`];
    assert.is(h.request("PUT", "/t", { body: enc("{}"), headers }).status, 201);
    const got = h.request("GET", "/t");
    assert.is(got.headers.get("content-type"), want);
    assert.is(text(got.body), "{}");
  }
  const long = h.request("PUT", "/t", { body: enc("new"), headers: [`Content-Type: x/${"y".repeat(254)}`] });
  assert.is(long.status, 400);
  assert.is(text(h.request("GET", "/t").body), "{}", "the refused PUT changed nothing");
  // a type changes with the body that brings it
  h.request("POST", "/t", { body: enc("<p>"), headers: ["Content-Type: text/html"] });
  assert.is(h.request("GET", "/t").headers.get("content-type"), "text/html");
  assertKeptExact(h, "after the Content-Type requests");
  h.close();
});

test("overwrite and DELETE free every buffer; DELETE of a missing key is 404", () => {
  const h = httpdPair({ buffers: 8192 });
  const r = rng(4);
  h.settle(10);
  const base = h.srv.pool.check();
  const a = randomBytes(r, 1 << 20);
  const b = randomBytes(r, 2 << 20);
  assert.is(h.request("PUT", "/o", { body: a }).status, 201);
  h.settle(50);
  const one = assertKeptExact(h, "one body");
  assert.is(h.request("PUT", "/o", { body: b }).status, 201);
  h.settle(50);
  const two = assertKeptExact(h, "after the overwrite");
  assert.ok(two.kept - one.kept > 500 && two.kept - one.kept < 1000, "the old body's buffers went back");
  sameBytes(h.request("GET", "/o").body, b, "the new body");
  assert.is(h.request("POST", "/o", { body: enc("small") }).status, 201);
  h.settle(50);
  assert.ok(assertKeptExact(h, "a small overwrite").kept <= 3);
  assert.is(h.request("DELETE", "/o").status, 204);
  assert.is(h.request("DELETE", "/o").status, 404);
  assert.is(h.request("GET", "/o").status, 404);
  // an overwrite and a DELETE while the old body streams to another client
  assert.is(h.request("PUT", "/s", { body: b }).status, 201);
  const reader = h.connect();
  h.send(reader, req("GET", "/s"), ["GET"]);
  for (let k = 0; k < 5; k++) h.turn();
  assert.is(h.request("PUT", "/s", { body: a }).status, 201);
  assert.is(h.request("DELETE", "/s").status, 204);
  const [streamed] = h.wait(reader, 1);
  sameBytes(streamed.body, b, "the body as it was when the GET came");
  h.closeConn(reader);
  h.settle(50);
  assertAllFreed(h, base, "after DELETE");
  h.close();
});

test("a body shorter than its Content-Length, then the client closes or resets: nothing stored, nothing leaked", () => {
  const h = httpdPair({ buffers: 4096 });
  const r = rng(5);
  h.settle(10);
  const base = h.srv.pool.check();
  for (const [how, size] of [
    ["close", 10],
    ["close", 500_000],
    ["reset", 500_000],
    ["close-chunked", 500_000],
  ]) {
    const c = h.connect();
    const body = randomBytes(r, size);
    const full =
      how === "close-chunked" ? req("PUT", "/cut", { chunkedBody: chunked(r, body) }) : req("PUT", "/cut", { body });
    h.send(c, full.subarray(0, full.length - 5), ["PUT"]);
    h.settle(30);
    assert.is(h.take(c).length, 0, "no answer to an unfinished body");
    if (how === "reset") h.cli.abort(c);
    else h.cli.close(c);
    h.settle(100);
    assert.is(h.log.has("cut"), false, how);
    assertAllFreed(h, base, `after a cut ${how} body of ${size} bytes`);
  }
  h.close();
});

test("malformed chunked framing or an oversized chunk size: 400 (or 413 over maxBody) and close, nothing kept", () => {
  const h = httpdPair({ maxBody: 1 << 20 });
  h.settle(10);
  const base = h.srv.pool.check();
  const data = "a".repeat(3000);
  for (const [framing, status] of [
    ["zz\r\nabc\r\n0\r\n\r\n", 400], // not a hex size
    ["5\r\nabcdefg\r\n0\r\n\r\n", 400], // data longer than its size
    [`${(3000).toString(16)}\r\n${data}XY0\r\n\r\n`, 400], // no CRLF after the data
    ["5\nabcde\r\n0\r\n\r\n", 400], // bare LF after the size
    ["5;=x\r\nabcde\r\n0\r\n\r\n", 400], // a bad chunk extension
    ["1ffffffffffffffff\r\n", 400], // 17 hex digits: overflows 64 bits
    ["ffffffffffffffff\r\n", 413], // fits 64 bits, far over maxBody
    ["100001\r\n", 413], // maxBody + 1
    [`${(3000).toString(16)}\r\n${data}\r\n0\r\nBad Trailer\r\n\r\n`, 400],
    [`5\r\nabcde\r\n${"0".repeat(2000)}\r\n\r\n`, 400], // a size line over 1024 bytes
  ]) {
    const c = h.connect();
    h.send(c, enc(`PUT /ch HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n${framing}`), ["PUT"]);
    const [res] = h.wait(c, 1);
    assert.is(res.status, status, JSON.stringify(framing.slice(0, 30)));
    assert.is(res.headers.get("connection"), "close");
    h.run(() => h.conns.get(c).closed, 2000);
    h.settle(20);
    assert.is(h.log.has("ch"), false);
    assertAllFreed(h, base, JSON.stringify(framing.slice(0, 30)));
  }
  h.close();
});

test("a client that trickles a body, then stalls, is aborted by the idle timeout and its buffers come back", async () => {
  const h = httpdPair({ buffers: 4096, idleTimeoutMs: 100 });
  const r = rng(6);
  h.settle(10);
  const base = h.srv.pool.check();
  const idle = h.connect(); // between requests: no buffer held, never aborted
  assert.is(h.exchange(idle, [["GET", req("GET", "/none")]])[0].status, 404);
  const c = h.connect();
  const body = randomBytes(r, 400_000);
  const full = req("PUT", "/slow", { body });
  // a trickle: a piece every 10 ms of real time keeps it alive well past the timeout
  const t0 = performance.now();
  for (let at = 0; at < 240_000; at += 15_000) {
    h.send(c, full.subarray(at, at + 15_000));
    h.settle(10);
    await new Promise((res) => setTimeout(res, 10));
  }
  h.settle(10);
  assert.ok(performance.now() - t0 > 150, "the trickle lasted longer than the timeout");
  assert.is(h.conns.get(c).closed, false, "alive while bytes keep coming");
  assert.ok(h.srv.pool.counts().kept > 100, "the partial body holds buffers");
  // then nothing: the layer's clock is performance.now, so wait in real time
  await new Promise((res) => setTimeout(res, 400));
  h.settle(50);
  assert.is(h.conns.get(c).reset, true, "the stalled client got a RST");
  assert.ok(h.app.layer.stats.idleAborts >= 1);
  assert.is(h.conns.get(idle).closed, false, "an idle connection between requests stays");
  assert.is(h.exchange(idle, [["GET", req("GET", "/slow")]])[0].status, 404);
  h.closeConn(idle);
  assertAllFreed(h, base, "after the idle abort");
  h.close();
});

test("slowloris: a head trickled a byte every 20 ms is aborted once it overstays the timeout; its bytes never stop coming", async () => {
  const h = httpdPair({ buffers: 4096, idleTimeoutMs: 100 });
  h.settle(10);
  const base = h.srv.pool.check();
  const c = h.connect();
  const head = req("GET", "/slowloris", { headers: [`x-a: ${"b".repeat(200)}`] });
  const t0 = performance.now();
  let at = 0;
  while (!h.conns.get(c).reset && at < head.length - 4 && performance.now() - t0 < 2000) {
    h.send(c, head.subarray(at, ++at));
    h.settle(5);
    await new Promise((res) => setTimeout(res, 20));
  }
  const ms = performance.now() - t0;
  assert.is(h.conns.get(c).reset, true, "the trickling client got a RST");
  assert.ok(ms >= 100 && ms < 1500, `aborted after ${ms.toFixed(0)} ms`);
  assert.is(h.app.layer.stats.idleAborts, 1);
  assert.is(h.request("GET", "/none").status, 404, "others are served");
  assertAllFreed(h, base, "after the slowloris abort");
  h.close();
});

test("a body that does not fit the pool: 507 and nothing partial kept (from the Content-Length, or as a chunked body arrives); the connection goes on", () => {
  const h = httpdPair({ buffers: 4096 }); // a reserve of 1024 free buffers
  const r = rng(7);
  assert.is(h.request("PUT", "/keep", { body: enc("me") }).status, 201);
  h.settle(50);
  const before = h.srv.pool.check();
  const body = randomBytes(r, 8 << 20);
  const c = h.connect();
  for (const q of [req("PUT", "/big", { body }), req("POST", "/big", { chunkedBody: chunked(r, body) })]) {
    const res = h.exchange(c, [
      ["PUT", q],
      ["GET", req("GET", "/keep")],
    ]);
    assert.is(res[0].status, 507);
    assert.match(text(res[0].body), /pool/);
    assert.is(res[0].headers.get("connection"), undefined, "the connection stays open");
    assert.is(res[1].status, 200, "the next request on the connection is served");
    assert.is(text(res[1].body), "me");
    assert.is(h.log.has("big"), false);
    h.settle(50);
    const now = assertKeptExact(h, "after the 507");
    assert.is(now.kept, before.kept, "nothing of the body is kept");
    assert.is(now.app, before.app);
  }
  assert.ok(h.app.stats.full >= 2);
  // the pool is usable again at once
  const fits = randomBytes(r, 1 << 20);
  assert.is(h.exchange(c, [["PUT", req("PUT", "/fits", { body: fits })]])[0].status, 201);
  sameBytes(h.exchange(c, [["GET", req("GET", "/fits")]])[0].body, fits, "after the 507s");
  h.closeConn(c);
  assertKeptExact(h, "at the end");
  h.close();
});

test("pipelined PUT, GET, HEAD, DELETE on one connection: answers in order, each read sees the writes before it", () => {
  const h = httpdPair();
  const c = h.connect();
  const res = h.exchange(
    c,
    [
      ["PUT", req("PUT", "/p", { body: enc("one") })],
      ["GET", req("GET", "/p")],
      ["POST", req("POST", "/p", { chunkedBody: enc("3\r\ntwo\r\n0\r\n\r\n") })],
      ["HEAD", req("HEAD", "/p")],
      ["GET", req("GET", "/p")],
      ["DELETE", req("DELETE", "/p")],
      ["GET", req("GET", "/p")],
      ["PATCH", req("PATCH", "/p")],
    ],
    7,
  );
  assert.equal(
    res.map((x) => x.status),
    [201, 200, 201, 200, 200, 204, 404, 405],
  );
  assert.is(text(res[1].body), "one");
  assert.is(res[3].headers.get("content-length"), "3");
  assert.is(text(res[4].body), "two");
  assert.is(res[7].headers.get("allow"), "GET, HEAD, PUT, POST, DELETE");
  h.close();
});

test("HEAD answered 404, 416 or 400 carries no body, so the next response on the connection is not misread", () => {
  const h = httpdPair();
  assert.is(h.request("PUT", "/there", { body: enc("abc") }).status, 201);
  for (const [head, status] of [
    [req("HEAD", "/missing"), 404],
    [req("HEAD", "/there", { headers: ["Range: bytes=100-"] }), 416],
    [req("HEAD", "/%zz"), 400],
  ]) {
    const c = h.connect();
    h.send(c, cat([head, req("GET", "/there")]), ["HEAD", "GET"]);
    h.settle(50);
    // a HEAD response ends at its blank line (RFC 9110 §9.3.2): the GET's status line comes next
    const raw = latin1(h.conns.get(c).q.view());
    const headEnd = raw.indexOf("\r\n\r\n") + 4;
    assert.ok(raw.startsWith(`HTTP/1.1 ${status} `), raw);
    assert.is(
      raw.slice(headEnd, headEnd + 12),
      "HTTP/1.1 200",
      `after the HEAD's ${status}: ${JSON.stringify(raw.slice(headEnd))}`,
    );
    h.closeConn(c);
  }
  h.close();
});

test("a Content-Type with obs-text bytes (RFC 9110 §5.5) comes back byte for byte", () => {
  const h = httpdPair();
  const type = Buffer.from("text/plain; title=caf\xe9", "latin1");
  const c = h.connect();
  const put = cat([`PUT /t HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Type: `, type, "\r\n\r\nhi"]);
  assert.is(h.exchange(c, [["PUT", put]])[0].status, 201);
  const [get] = h.exchange(c, [["GET", req("GET", "/t")]]);
  assert.is(text(get.body), "hi");
  assert.is(get.headers.get("content-type"), type.toString("latin1"));
  h.closeConn(c);
  h.close();
});

test("requests pipelined after one that closes the connection are not run: a PUT behind a 'Connection: close' stores nothing", () => {
  const h = httpdPair();
  h.settle(10);
  const base = h.srv.pool.check();
  const c = h.connect();
  h.send(
    c,
    cat([
      req("GET", "/x", { headers: ["Connection: close"] }),
      req("PUT", "/sneaky", { body: enc("abc") }),
      req("PUT", "/partial", { body: randomBytes(rng(8), 3000) }).subarray(0, 1000),
    ]),
    ["GET", "PUT", "PUT"],
  );
  h.settle(50);
  const got = h.take(c);
  assert.equal(
    got.map((x) => x.status),
    [404],
  );
  assert.is(got[0].headers.get("connection"), "close");
  assert.is(h.log.has("sneaky"), false, "a request after the close was not run");
  h.closeConn(c);
  h.settle(100);
  assertAllFreed(h, base, "after the close");
  h.close();
});

test("a connection the server closes while the client still sends (a large pipelined body) goes away, and with it every buffer", () => {
  const h = httpdPair({ buffers: 4096 });
  h.settle(10);
  const base = h.srv.pool.check();
  const c = h.connect();
  const body = randomBytes(rng(9), 1 << 20);
  h.send(c, cat([req("GET", "/x", { headers: ["Connection: close"] }), req("PUT", "/big", { body })]), ["GET", "PUT"]);
  h.settle(200);
  assert.is(h.take(c)[0].status, 404);
  h.closeConn(c);
  // five seconds of the stacks' time: far less than any TCP timeout, plenty for FIN and ACK
  for (let k = 0; k < 5000; k++) h.turn();
  assert.is(h.app.layer.conns.size, 0, "the server forgot the connection");
  assertAllFreed(h, base, "after the close");
  h.close();
});

test("the last response before a close streams an object overwritten since its request: it arrives whole, and the connection ends", () => {
  const h = httpdPair({ buffers: 8192 });
  const r = rng(10);
  h.settle(10);
  const base = h.srv.pool.check();
  const first = randomBytes(r, 4 << 20);
  const old = randomBytes(r, 100_000); // handed to the core in one turn: under the send buffer
  const next = randomBytes(r, 10_000);
  assert.is(h.request("PUT", "/first", { body: first }).status, 201);
  assert.is(h.request("PUT", "/k", { body: old }).status, 201);
  // the reader asks for both: /k's answer (the old object, pinned for it) waits behind the 4 MB
  const reader = h.connect();
  h.send(reader, cat([req("GET", "/first"), req("GET", "/k", { headers: ["Connection: close"] })]), ["GET", "GET"]);
  for (let k = 0; k < 10; k++) h.turn();
  // meanwhile another client overwrites /k: the old record goes, only the reply's pin holds it
  const writer = h.connect();
  assert.is(h.exchange(writer, [["PUT", req("PUT", "/k", { body: next })]])[0].status, 201);
  assert.is(h.take(reader).length, 0, "the reader is still receiving /first");
  h.run(() => h.conns.get(reader).closed, 20_000);
  const got = h.take(reader);
  assert.is(got.length, 2);
  sameBytes(got[0].body, first, "/first");
  sameBytes(got[1].body, old, "/k as it was when the GET came");
  assert.is(h.exchange(writer, [["DELETE", req("DELETE", "/k")]])[0].status, 204);
  h.exchange(writer, [["DELETE", req("DELETE", "/first")]]);
  h.closeConn(writer);
  h.settle(100);
  assert.is(h.app.layer.conns.size, 0, "both connections are gone");
  assertAllFreed(h, base, "after the close");
  h.close();
});

const ABUSE_SEEDS = process.env.PMSTACK_ABUSE_SEEDS
  ? process.env.PMSTACK_ABUSE_SEEDS.split(",").map(Number)
  : [1, 2, 2026];
for (const seed of ABUSE_SEEDS)
  test(`abuse (seed ${seed}): random requests and mangled bytes never take httpd down, lose a body or leak a buffer`, () => {
    const r = rng(seed);
    const h = httpdPair({ buffers: 2048 });
    h.settle(10);
    const base = h.srv.pool.counts();
    const pick = (xs) => xs[r.int(xs.length)];
    const methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "get", "OPTIONS"];
    const targets = ["/k1", "/k2", "/k%20x", "/%zz", "/", "", "*", "/" + "x".repeat(1100), "/k1?q=1"];
    const versions = ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1", "HTP/1.1"];
    const headers = () => {
      const hs = [];
      if (r() < 0.9) hs.push("Host: x");
      if (r() < 0.2) hs.push(pick(["Connection: close", "Connection: keep-alive", "Transfer-Encoding: chunked"]));
      if (r() < 0.1) hs.push(pick(["Expect: 100-continue", "Expect: nope", "Range: bytes=0-5", "Range: bytes=9-"]));
      if (r() < 0.1)
        hs.push(
          pick(["Content-Length: -1", "Content-Length: abc", "Content-Length: 99999999", "X: " + "y".repeat(9000)]),
        );
      if (r() < 0.1) hs.push(pick(["bad header", "Bad\tName: 1", ": empty"]));
      return hs;
    };
    // bodies: mostly small, now and then 100 KB (an extent tree), as Content-Length or chunked
    const bodyBytes = () => new Uint8Array(r() < 0.1 ? r.int(100_000) : r.int(3000)).fill(0x61 + r.int(26));
    const valid = () => {
      const m = pick(["GET", "POST", "POST", "DELETE", "PUT", "HEAD", "GET"]);
      const key = pick(["/k1", "/k2", "/k3", "/k%20x"]);
      if (m === "GET" || m === "DELETE" || m === "HEAD") {
        const range = m !== "DELETE" && r() < 0.3 ? [`Range: bytes=${r.int(4000)}-${r.int(4000)}`] : [];
        return req(m, key, { headers: range });
      }
      const body = bodyBytes();
      const extra = [];
      if (r() < 0.2) extra.push(`Content-Type: text/t${r.int(10)}`);
      if (r() < 0.3) return req(m, key, { chunkedBody: chunked(r, body, { maxChunk: 5000 }), headers: extra });
      return req(m, key, { body, headers: extra });
    };
    const request = () => {
      if (r() < 0.7) return valid();
      const m = pick(methods);
      const body = m === "POST" || m === "PUT" ? bodyBytes() : null;
      const hs = headers();
      if (body && r() < 0.9) hs.push(`Content-Length: ${body.length}`);
      return cat([`${m} ${pick(targets)} ${pick(versions)}\r\n${hs.join("\r\n")}\r\n\r\n`, body ?? new Uint8Array(0)]);
    };
    const mangle = (b) => {
      const out = Array.from(b.length > 5000 ? b.subarray(0, 5000) : b);
      for (let e = 1 + r.int(3); e > 0; e--) {
        const at = r.int(out.length + 1);
        out.splice(
          at,
          r.int(4),
          ...enc(
            pick(["\r\n", "\n", "\r", " ", ":", "\0", "\r\n\r\n", "Content-Length: 3\r\n", "zz\r\n", "0\r\n\r\n"]),
          ),
        );
      }
      return Uint8Array.from(out);
    };
    let responses = 0;
    for (let round = 0; round < 25; round++) {
      const conns = [h.connect(), h.connect()];
      for (const c of conns) {
        const reqs = [];
        for (let k = 0; k < 6; k++) reqs.push(r() < 0.1 ? mangle(request()) : request());
        h.send(c, cat(reqs), [], pick([61, 1400]));
      }
      for (let k = 0; k < 60; k++) h.turn();
      for (const c of conns) {
        const st = h.conns.get(c);
        responses += (latin1(st.q.view()).match(/HTTP\/1\.1 \d{3} /g) ?? []).length;
        if (!st.closed) h.cli.close(c);
      }
      for (let k = 0; k < 60; k++) h.turn();
    }
    // not vacuous: requests were answered, some with errors, some bodies kept
    assert.ok(responses > 40, `${responses} responses`);
    assert.ok(h.app.stats.puts > 20 && h.app.stats.gets > 2 && h.app.stats.errors > 10, JSON.stringify(h.app.stats));
    // every body the log names is kept; nothing else is held by the app
    h.settle(100);
    let after = assertKeptExact(h, "after the abuse");
    assert.is(after.app, base.app, "no app buffer left");
    // the server goes on (a body sent in 61-byte segments keeps a buffer per segment: the keys
    // may fill the pool up to its reserve, so they go first): a PUT is acknowledged and reads back
    for (const e of h.log.entries()) {
      const key = encodeURIComponent(Buffer.from(e.key).toString("utf8"));
      assert.is(h.request("DELETE", `/${key}`).status, 204, key);
    }
    assert.is(h.request("PUT", "/after", { body: enc("abc") }).status, 201);
    assert.is(text(h.request("GET", "/after").body), "abc");
    h.settle(100);
    after = assertKeptExact(h, "at the end");
    assert.is(h.log.size, 1);
    assert.is(after.app, base.app, "no app buffer left");
    h.close();
  });

// ---- sharded over two workers (httpd-shard.ts) ---------------------------------------------

const ownerOf = (k) => keyHashSlot(enc(k)) % 2;
/** n keys owned by worker w. */
const keysOf = (w, n, prefix) => {
  const out = [];
  for (let i = 0; out.length < n; i++) if (ownerOf(`${prefix}${i}`) === w) out.push(`${prefix}${i}`);
  return out;
};

/**
 * Worker 0 (httpdPair: the client's) and worker 1 (an HttpdApp on a stack of its own, no clients),
 * their turn batches carried by two queues this test delivers after each of worker 0's turns.
 */
function shardedHttpd({ buffers = 8192, peerBuffers = 8192, peerReserve, lend = false, path, path1 } = {}) {
  const q = shardQueues({ lend });
  return q.join(httpdPair({ buffers, shards: q.t0, path }), {
    buffers: peerBuffers,
    path: path1,
    make: (stack, log, t1) => new HttpdApp(stack, log, 0, { reserveBuffers: peerReserve, shards: t1 }),
  });
}

const keptBoth = (h, msg) => {
  assertKeptExact(h, `${msg}, worker 0`);
  keptExact(h.peer.stack.pool, h.peer.log, h.peer.app.arena.current, `${msg}, worker 1`);
  assert.is(h.app.stats.inFlight + h.app.stats.serving + h.peer.app.stats.inFlight + h.peer.app.stats.serving, 0);
};

for (const lend of [false, true])
  test(`sharded: keys of both workers PUT, read back, Range, HEAD and DELETE through one connection, pipelined, in order (${lend ? "bodies lent" : "bodies copied"})`, () => {
    const h = shardedHttpd({ lend });
    const r = rng(41);
    const keys = [...keysOf(0, 20, "a"), ...keysOf(1, 20, "a")].sort();
    const bodies = new Map(keys.map((k) => [k, randomBytes(r, r.int(30_000))]));
    // one body of three pieces (1 MiB each) on worker 1
    const big = keysOf(1, 1, "big")[0];
    bodies.set(big, randomBytes(r, 3 * 1048576 + 77));
    const all = [...keys, big];
    const c = h.connect();
    const types = (k) => ["Content-Type: text/x-" + k];
    let res = h.exchange(
      c,
      all.map((k) => ["PUT", req("PUT", `/${k}`, { body: bodies.get(k), headers: types(k) })]),
    );
    assert.equal(
      res.map((x) => x.status),
      all.map(() => 201),
    );
    assert.is(h.log.size - h.app.stats.loans, 20, "worker 0 logged its keys");
    assert.is(h.peer.log.size, 21, "worker 1 logged its keys");
    assert.is(h.app.stats.forwarded, 21);
    assert.is(h.peer.app.stats.served, 21);
    if (lend) {
      // the bodies for worker 1's keys stayed in worker 0's pool: loans its records name
      assert.is(h.app.stats.lent, 21);
      assert.is(h.app.stats.loans, 21);
      assert.is(h.peer.app.stats.loans, 0);
    } else assert.is(h.app.stats.loans, 0);
    // GET of every key, the big one between others, and a range and a HEAD of it
    const order = [...keys.slice(0, 10), big, ...keys.slice(10)];
    res = h.exchange(c, [
      ...order.map((k) => ["GET", req("GET", `/${k}`)]),
      ["GET", req("GET", `/${big}`, { headers: ["Range: bytes=1048570-2097160"] })],
      ["HEAD", req("HEAD", `/${big}`)],
    ]);
    order.forEach((k, i) => {
      assert.is(res[i].status, 200, k);
      assert.is(res[i].headers.get("content-type"), `text/x-${k}`);
      sameBytes(res[i].body, bodies.get(k), k);
    });
    const rg = res[order.length];
    assert.is(rg.status, 206);
    assert.is(rg.headers.get("content-range"), `bytes 1048570-2097160/${bodies.get(big).length}`);
    sameBytes(rg.body, bodies.get(big).subarray(1048570, 2097161), "range");
    assert.is(res[order.length + 1].headers.get("content-length"), String(bodies.get(big).length));
    if (lend) {
      assert.is(h.peer.app.stats.remoteReads, 23, "worker 1 resolved the reads of bodies in worker 0's pool");
      // worker 0 lent them: its client's GETs sent them from its own pool, by name
      assert.is(h.app.stats.ownReads, 22);
    }
    // a PUT, GET, DELETE, GET of one key of the other worker, pipelined: each sees the one before
    const k1 = keysOf(1, 1, "p")[0];
    const v = randomBytes(r, 2 * 1048576 + 5);
    res = h.exchange(c, [
      ["PUT", req("PUT", `/${k1}`, { body: v })],
      ["GET", req("GET", `/${k1}`)],
      ["DELETE", req("DELETE", `/${k1}`)],
      ["GET", req("GET", `/${k1}`)],
      ["DELETE", req("DELETE", `/${k1}`)],
    ]);
    assert.equal(
      res.map((x) => x.status),
      [201, 200, 204, 404, 404],
    );
    sameBytes(res[1].body, v, "the GET behind the PUT");
    // every key deleted through the connection, then nothing is left on either worker
    res = h.exchange(
      c,
      all.map((k) => ["DELETE", req("DELETE", `/${k}`)]),
    );
    assert.ok(res.every((x) => x.status === 204));
    h.closeConn(c);
    h.settle(50);
    assert.is(h.log.size + h.peer.log.size, 0, "every key and every loan gone");
    assert.ok(h.batches < 200, `${h.batches} batches`);
    keptBoth(h, "after the deletes");
    h.close();
  });

/**
 * Worker 1 lends `body` to worker 0's key `key`, as it does for a client of its own
 * (HttpdShards.put with a body in its pool); returns where the answer's parts land.
 */
function lendTo0(h, key, body, type = "text/x-lent") {
  const p1 = h.peer.stack.pool;
  const w = h.peer.log.writer(63);
  for (let at = 0; at < body.length;) {
    const b = p1.alloc();
    const n = Math.min(2048, body.length - at);
    p1.view(b, 0, n).set(body.subarray(at, at + n));
    w.push({ index: b, offset: 0, length: n });
    p1.free(b); // the writer holds its own reference
    at += n;
  }
  const got = { parts: null };
  const conn = { gone: false, defer: () => ({ fill: (parts) => (got.parts = parts) }) };
  h.peer.app.shards.put(conn, 0, key, type, w, false);
  return got;
}

test("sharded with loans: bodies another worker keeps are read by the owner's own clients (copied from the lender's pool as TCP takes them), Range and HEAD; a superseded loan goes only once its reads are done; PUT and DELETE release; nothing leaks", () => {
  const h = shardedHttpd({ lend: true, buffers: 16384, peerBuffers: 16384 });
  const r = rng(53);
  const [a, b, big] = keysOf(0, 3, "mine");
  const va = randomBytes(r, 3000);
  const vb = randomBytes(r, 200_000); // a tree in worker 1's pool
  const vbig = randomBytes(r, 6 * 1048576);
  const answers = [lendTo0(h, a, va), lendTo0(h, b, vb), lendTo0(h, big, vbig)];
  h.settle(20);
  for (const x of answers) assert.match(text(x.parts[0]), /^HTTP\/1\.1 201/);
  assert.is(h.peer.app.stats.lent, 3);
  assert.is(h.peer.app.stats.loans, 3);
  assert.is(h.app.stats.loans, 0);
  assert.is(h.log.size, 3, "worker 0's records name them");
  const c = h.connect();
  let res = h.exchange(c, [
    ["GET", req("GET", `/${a}`)],
    ["GET", req("GET", `/${b}`)],
    ["GET", req("GET", `/${b}`, { headers: ["Range: bytes=100000-100099"] })],
    ["HEAD", req("HEAD", `/${b}`)],
    ["GET", req("GET", `/${big}`)],
  ]);
  assert.equal(
    res.map((x) => x.status),
    [200, 200, 206, 200, 200],
  );
  assert.is(res[0].headers.get("content-type"), "text/x-lent");
  sameBytes(res[0].body, va, "a");
  sameBytes(res[1].body, vb, "b");
  sameBytes(res[2].body, vb.subarray(100_000, 100_100), "b's range");
  assert.is(res[3].headers.get("content-length"), "200000");
  sameBytes(res[4].body, vbig, "big");
  assert.is(h.app.stats.remoteReads, 5);
  // a GET of big under way when a PUT supersedes its record: the loan stays until the GET is done
  const base = h.conns.get(c).total;
  h.send(c, req("GET", `/${big}`), ["GET"]);
  h.run(() => h.conns.get(c).total - base > 100_000);
  const nb = randomBytes(r, 5000);
  const again = lendTo0(h, big, nb);
  h.settle(4);
  assert.match(text(again.parts[0]), /^HTTP\/1\.1 201/, "the new record is durable");
  assert.ok(h.conns.get(c).total - base < vbig.length, "the first GET is still streaming");
  assert.is(h.peer.app.stats.loans, 4, "the superseded loan is kept while it is read");
  const [first] = h.wait(c, 1);
  sameBytes(first.body, vbig, "the GET that began before the PUT sends the body it began with");
  h.settle(20);
  assert.is(h.peer.app.stats.loans, 3, "then it goes");
  sameBytes(h.exchange(c, [["GET", req("GET", `/${big}`)]])[0].body, nb);
  // a PUT of this worker's client supersedes a lent body with its own
  const c2 = h.connect();
  assert.is(h.exchange(c2, [["PUT", req("PUT", `/${big}`, { body: nb })]])[0].status, 201);
  h.settle(20);
  assert.is(h.peer.app.stats.loans, 2);
  // a reader that leaves halfway ends its read
  lendTo0(h, big, vbig);
  h.settle(20);
  assert.is(h.peer.app.stats.loans, 3);
  const c3 = h.connect();
  h.send(c3, req("GET", `/${big}`), ["GET"]);
  h.run(() => h.conns.get(c3).total > 500_000);
  h.cli.abort(c3);
  h.settle(20);
  // DELETE releases
  res = h.exchange(c, [
    ["DELETE", req("DELETE", `/${a}`)],
    ["DELETE", req("DELETE", `/${b}`)],
    ["DELETE", req("DELETE", `/${big}`)],
  ]);
  assert.ok(res.every((x) => x.status === 204));
  h.settle(20);
  assert.is(h.peer.app.stats.loans, 0);
  assert.is(h.peer.app.shards.stats.unlent, 5);
  assert.is(h.log.size + h.peer.log.size, 0);
  h.closeConn(c);
  h.closeConn(c2);
  keptBoth(h, "after the deletes");
  h.close();
});

test("sharded with loans, after a restart: the owner's records still read the loans they name; a loan whose request was lost in the crash goes", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "pmstack-httpdloans-"));
  const paths = { path: path.join(dir, "w0.pm"), path1: path.join(dir, "w1.pm"), lend: true };
  try {
    const far = keysOf(1, 3, "far");
    const r = rng(59);
    const v0 = randomBytes(r, 3000);
    const v1 = randomBytes(r, 300_000);
    let h = shardedHttpd(paths);
    assert.is(h.request("PUT", `/${far[0]}`, { body: v0 }).status, 201);
    assert.is(h.request("PUT", `/${far[1]}`, { body: v1 }).status, 201);
    assert.is(h.app.stats.loans, 2);
    // the workers' batches are lost from here: this PUT's loan is durable, its request never arrives
    h.drop = true;
    const c = h.connect();
    h.send(c, req("PUT", `/${far[2]}`, { body: v0 }), ["PUT"]);
    h.settle(50);
    assert.is(h.app.stats.loans, 3);
    h.close();
    h = shardedHttpd(paths);
    assert.is(h.app.stats.loans, 3, "every loan record came back");
    h.settle(5);
    assert.is(h.app.stats.loans, 2, "the loan no record names went");
    assert.is(h.app.shards.stats.unlent, 1);
    sameBytes(h.request("GET", `/${far[0]}`).body, v0);
    sameBytes(h.request("GET", `/${far[1]}`).body, v1, "a tree named across the restart");
    assert.is(h.request("GET", `/${far[2]}`).status, 404);
    assert.is(h.request("PUT", `/${far[2]}`, { body: v1 }).status, 201);
    assert.is(h.app.stats.loans, 3);
    sameBytes(h.request("GET", `/${far[2]}`).body, v1);
    sameBytes(h.request("GET", `/${far[0]}`).body, v0);
    for (const k of far) assert.is(h.request("DELETE", `/${k}`).status, 204);
    h.settle(20);
    assert.is(h.app.stats.loans, 0);
    // (a file's pool commits on the clock, not the turn: the deletions free their buffers once durable)
    const durable = (l) => l.durableSeq >= l.lastSeq;
    h.run(() => durable(h.log) && durable(h.peer.log));
    h.settle(5);
    keptBoth(h, "after the deletes");
    h.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

for (const lend of [false, true])
  test(`sharded: a client that goes away while another worker's object streams to it, or while its body goes out, leaves nothing behind on either worker (${lend ? "bodies lent" : "bodies copied"})`, () => {
    const h = shardedHttpd({ buffers: 16384, peerBuffers: 16384, lend });
    const r = rng(43);
    const far = keysOf(1, 1, "far")[0];
    const body = randomBytes(r, 12 * 1048576);
    assert.is(h.request("PUT", `/${far}`, { body }).status, 201);
    const base = h.srv.pool.counts();
    // a reader that takes a little of it and leaves
    const c = h.connect();
    h.send(c, req("GET", `/${far}`), ["GET"]);
    h.run(() => h.conns.get(c).total > 300_000);
    // copied: worker 1 sends it in pieces; lent: worker 0 sends its own loan, by name
    if (lend) assert.is(h.app.stats.ownReads, 1);
    else assert.is(h.peer.app.stats.serving, 1, "worker 1 still has pieces of it to send");
    h.cli.abort(c); // a reset: the reply is dropped at once
    h.settle(100);
    assert.is(h.srv.pool.counts().app, base.app, "worker 0's copies of the pieces went back");
    if (lend) {
      // the body stayed here, lent: the reader's abort ended worker 1's read of it, so a DELETE releases it
      assert.is(h.app.stats.loans, 1);
      assert.is(h.request("DELETE", `/${far}`).status, 204);
      h.settle(20);
      assert.is(h.app.stats.loans, 0);
      keptBoth(h, "after the reader left and the DELETE");
      return h.close();
    }
    // a writer whose connection resets while its body is still going out to worker 1
    const c2 = h.connect();
    const far2 = keysOf(1, 1, "far2-")[0];
    h.send(c2, req("PUT", `/${far2}`, { body: randomBytes(r, 5 * 1048576) }), ["PUT"]);
    h.run(() => h.app.stats.inFlight > 0 && h.peer.app.stats.serving > 0);
    h.cli.abort(c2);
    h.settle(200);
    assert.is(h.peer.log.has(far2), false, "the body cut short is not stored");
    keptBoth(h, "after both left");
    h.close();
  });

test("sharded: a body another worker's pool cannot hold is answered 507 and kept on neither", () => {
  const h = shardedHttpd({ peerBuffers: 4096, peerReserve: 1024 });
  const r = rng(47);
  const far = keysOf(1, 1, "full")[0];
  const res = h.request("PUT", `/${far}`, { body: randomBytes(r, 7 * 1048576) });
  assert.is(res.status, 507);
  h.settle(50);
  assert.is(h.peer.log.size, 0);
  assert.is(h.log.size, 0);
  keptBoth(h, "after the 507");
  // the connection layer goes on: a small one is stored
  assert.is(h.request("PUT", `/${far}`, { body: enc("small") }).status, 201);
  h.close();
});

test.run();

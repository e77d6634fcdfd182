// The application protocol parsers (HTTP/1.1 and RESP2): fed in every possible split, they
// give the same requests; bodies and long values come out as ranges of the chunks (no copy).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { HttpParser, RespParser, responseHead } from "../build/index.js";
import { rng } from "./lib/rng.mjs";

const enc = (s) => new TextEncoder().encode(s);
const dec = (b) => new TextDecoder().decode(b);

/** Feeds `bytes` split at `cuts`; returns a normalized transcript of the events. */
function http(bytes, cuts = [], opts) {
  const p = new HttpParser(opts);
  const out = [];
  let body = [];
  let at = 0;
  for (const end of [...cuts, bytes.length]) {
    const chunk = bytes.subarray(at, end);
    p.feed(chunk, (ev) => {
      if (ev.kind === "head")
        out.push(["head", ev.head.method, ev.head.target, ev.head.contentLength, ev.head.keepAlive]);
      else if (ev.kind === "body") body.push(...chunk.subarray(ev.offset, ev.offset + ev.length));
      else if (ev.kind === "end") {
        out.push(["end", dec(Uint8Array.from(body))]);
        body = [];
      } else out.push(["error", ev.status, ev.fatal]);
    });
    at = end;
  }
  return out;
}

const PIPE =
  "POST /k1 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world" +
  "GET /k1 HTTP/1.1\r\nHost: x\r\n\r\n" +
  "DELETE /k1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
const PIPE_EVENTS = [
  ["head", "POST", "/k1", 11, true],
  ["end", "hello world"],
  ["head", "GET", "/k1", 0, true],
  ["end", ""],
  ["head", "DELETE", "/k1", 0, false],
  ["end", ""],
];

test("HTTP: pipelined requests parse the same at every split point", () => {
  const b = enc(PIPE);
  assert.equal(http(b), PIPE_EVENTS);
  for (let cut = 1; cut < b.length; cut++) assert.equal(http(b, [cut]), PIPE_EVENTS, `split at ${cut}`);
  const r = rng(9);
  for (let k = 0; k < 300; k++) {
    const cuts = [...new Set(Array.from({ length: 1 + r.int(8) }, () => 1 + r.int(b.length - 1)))].sort(
      (x, y) => x - y,
    );
    assert.equal(http(b, cuts), PIPE_EVENTS, `cuts ${cuts}`);
  }
});

test("HTTP: the body is handed out as ranges of the chunks it arrived in", () => {
  const p = new HttpParser();
  const head = enc("POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: 3000\r\n\r\n");
  const ranges = [];
  p.feed(head, (ev) => ev.kind === "body" && ranges.push(["head", ev.offset, ev.length]));
  const c1 = new Uint8Array(2048);
  const c2 = new Uint8Array(2000);
  p.feed(c1, (ev) => ev.kind === "body" && ranges.push(["c1", ev.offset, ev.length]));
  p.feed(c2, (ev) => ev.kind === "body" && ranges.push(["c2", ev.offset, ev.length]));
  assert.equal(ranges, [
    ["c1", 0, 2048],
    ["c2", 0, 952],
  ]);
});

test("HTTP: bad requests get 400, 411, 413, 431, 501, 505; 413 keeps the connection in sync", () => {
  const one = (s, opts) => http(enc(s), [], opts);
  assert.equal(one("NONSENSE\r\n\r\n"), [["error", 400, true]]);
  assert.equal(one("GET / HTTP/1.1\r\n\r\n"), [["error", 400, true]], "missing Host");
  assert.equal(one("GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n"), [["error", 400, true]]);
  assert.equal(one("POST /k HTTP/1.1\r\nHost: x\r\n\r\n"), [["error", 411, true]]);
  assert.equal(one("POST /k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), [["error", 411, true]]);
  assert.equal(one("POST /k HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"), [["error", 400, true]]);
  assert.equal(one("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), [["error", 505, true]]);
  assert.equal(one(`GET / HTTP/1.1\r\nHost: x\r\nX: ${"a".repeat(9000)}\r\n\r\n`), [["error", 431, true]]);
  // 413: the refused body is skipped, the next request parses
  assert.equal(
    one(
      "POST /k HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n01234567890123456789GET /k HTTP/1.1\r\nHost: x\r\n\r\n",
      { maxBodyBytes: 10 },
    ),
    [
      ["error", 413, false],
      ["head", "GET", "/k", 0, true],
      ["end", ""],
    ],
  );
  assert.ok(responseHead(201, 0).startsWith("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n"));
  assert.match(responseHead(413, 0, { close: true }), /413 Content Too Large\r\n.*Connection: close/s);
});

test("HTTP: HTTP/1.0 and keep-alive defaults, LF-only line ends", () => {
  assert.equal(http(enc("GET / HTTP/1.0\r\n\r\n")), [
    ["head", "GET", "/", 0, false],
    ["end", ""],
  ]);
  assert.equal(http(enc("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")), [
    ["head", "GET", "/", 0, true],
    ["end", ""],
  ]);
  assert.equal(http(enc("GET /x HTTP/1.1\nHost: a\n\n")), [
    ["head", "GET", "/x", 0, true],
    ["end", ""],
  ]);
});

function respRun(bytes, cuts = [], opts) {
  const p = new RespParser(opts);
  const cmds = [];
  let cur = null;
  let big = [];
  let at = 0;
  for (const end of [...cuts, bytes.length]) {
    const chunk = bytes.subarray(at, end);
    p.feed(chunk, (ev) => {
      if (ev.kind === "begin") cur = [];
      else if (ev.kind === "arg") cur.push(dec(ev.bytes));
      else if (ev.kind === "part") big.push(...chunk.subarray(ev.offset, ev.offset + ev.length));
      else if (ev.kind === "argEnd") {
        cur.push(`<${big.length}:${dec(Uint8Array.from(big)).slice(0, 4)}>`);
        big = [];
      } else if (ev.kind === "end") cmds.push(cur);
      else cmds.push(["ERR", ev.message]);
    });
    at = end;
  }
  return cmds;
}

const cmd = (...args) => `*${args.length}\r\n` + args.map((a) => `$${enc(a).length}\r\n${a}\r\n`).join("");

test("RESP: commands parse the same at every split; long values come out as ranges", () => {
  const value = "v".repeat(1000);
  const b = enc(cmd("SET", "key:1", value) + cmd("GET", "key:1") + "PING\r\n" + cmd("MSET", "a", "1", "b", "2"));
  const want = [["SET", "key:1", "<1000:vvvv>"], ["GET", "key:1"], ["PING"], ["MSET", "a", "1", "b", "2"]];
  assert.equal(respRun(b), want);
  for (let cut = 1; cut < b.length; cut += 7) assert.equal(respRun(b, [cut]), want, `split at ${cut}`);
  assert.equal(respRun(enc(cmd("SET", "k", ""))), [["SET", "k", ""]]);
});

test("RESP: protocol errors are reported (and the parser stops)", () => {
  assert.equal(respRun(enc("*2\r\n$3\r\nGET\r\n:5\r\n")), [["ERR", "expected '$', got ':'"]]);
  assert.equal(respRun(enc("*x\r\n")), [["ERR", "invalid multibulk length"]]);
  assert.equal(respRun(enc("*1\r\n$3\r\nGETX\r\n")), [["ERR", "expected CRLF after a bulk string"]]);
  assert.equal(respRun(enc("*1\r\n$99999999999\r\n")), [["ERR", "invalid bulk length"]]);
  assert.equal(respRun(enc("*1\r\n$5\r\nhello\r\n"), [], { maxBulk: 4 }), [["ERR", "invalid bulk length"]]);
  // a negative length was a RangeError out of the parser (a crash), found by the split test below
  assert.equal(respRun(enc("*2\r\n$3\r\nGET\r\n$-3\r\n")), [["ERR", "invalid bulk length"]]);
  assert.equal(respRun(enc("*1\r\n$-1\r\n"), [3, 6]), [["ERR", "invalid bulk length"]]);
});

test("RESP: parse() with a handler object calls back in feed()'s order, at every split", () => {
  const b = enc(cmd("SET", "key:2", "w".repeat(300)) + cmd("PING") + "*1\r\n$4\r\nPING\r\n" + "*1\r\n$x\r\n");
  const run = (cuts) => {
    const p = new RespParser();
    const calls = [];
    let at = 0;
    const h = {
      begin: (n) => calls.push(`begin ${n}`),
      arg: (bytes) => calls.push(`arg ${dec(bytes)}`),
      part: (_o, len, total) => calls.push(`part ${len}/${total}`),
      argEnd: () => calls.push("argEnd"),
      end: () => calls.push("end"),
      error: (m) => calls.push(`error ${m}`),
    };
    for (const end of [...cuts, b.length]) {
      p.parse(b.subarray(at, end), h);
      at = end;
    }
    // parts merge across splits: what matters is their total and the order of the rest
    return calls.join(",").replace(/(part \d+\/300,?)+/g, "parts,");
  };
  const want =
    "begin 3,arg SET,arg key:2,parts,argEnd,end,begin 1,arg PING,end,begin 1,arg PING,end,begin 1,error invalid bulk length";
  assert.is(run([]), want);
  for (let cut = 1; cut < b.length; cut += 5) assert.is(run([cut]), run([]), `split at ${cut}`);
});

test("RESP: whole chunks (header lines read in place) and byte-by-byte chunks agree on mangled input", () => {
  // one-byte chunks never hold a whole header line, so they always take the general path
  const r = rng(61);
  const pieces = ["*", "$", "-", "0", "1", "3", "9", "\r", "\n", "\r\n", "x", " ", "PING", "SET", "k"];
  for (let t = 0; t < 400; t++) {
    let text = cmd("SET", "key", "v".repeat(r.int(80))) + cmd("GET", "key");
    const edits = r.int(4);
    for (let e = 0; e < edits; e++) {
      const at = r.int(text.length + 1);
      text = text.slice(0, at) + pieces[r.int(pieces.length)] + text.slice(at + r.int(2));
    }
    const b = enc(text);
    const cuts = Array.from({ length: b.length - 1 }, (_, k) => k + 1);
    assert.equal(respRun(b), respRun(b, cuts), JSON.stringify(text));
  }
  // twelve digits read in place; thirteen are an invalid length either way
  assert.equal(respRun(enc("*1\r\n$000000000004\r\nPING\r\n")), [["PING"]]);
  assert.equal(respRun(enc("*1\r\n$0000000000004\r\nPING\r\n")), [["ERR", "invalid bulk length"]]);
});

test.run();

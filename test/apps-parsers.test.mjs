// The application protocol parsers (HTTP/1.1 and RESP2): fed in every possible split, they
// give the same requests; bodies and long values come out as ranges of the chunks (no copy).
// HTTP: chunked bodies, the framing checks against request smuggling, Expect, Range, and
// mangled chunked requests that must end in a clean error or in well-formed events.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { HttpParser, RespParser, responseHead, parseRange, CONTINUE } from "../build/index.js";
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
  // a chunked body is parsed now (it was a 411): the head comes, the body waits for its chunks
  assert.equal(one("POST /k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), [
    ["head", "POST", "/k", -1, true],
  ]);
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

const latin1 = (bytes) => Buffer.from(bytes).toString("latin1");

/**
 * Feeds `bytes` split at `cuts` and checks that the events are well formed: a request is "head",
 * non-empty body ranges inside the chunk being fed, "end" (the body adding up to a known
 * Content-Length); or a lone non-fatal error between requests; a fatal error is the last event.
 * Returns the transcript with each request's body reassembled from the ranges (no framing bytes).
 */
function run(bytes, cuts = [], opts = {}) {
  const p = new HttpParser(opts);
  const out = [];
  let state = "idle"; // idle | request | dead
  let head = null;
  let body = [];
  let at = 0;
  for (const end of [...cuts, bytes.length]) {
    const chunk = bytes.subarray(at, end);
    p.feed(chunk, (ev) => {
      assert.ok(state !== "dead", `event after a fatal error: ${JSON.stringify(ev)}`);
      if (ev.kind === "head") {
        assert.is(state, "idle", "head inside a request");
        state = "request";
        head = ev.head;
        body = [];
        const h = ev.head;
        assert.is(h.chunked, h.contentLength === -1);
        out.push(["head", h.method, h.target, h.contentLength, h.chunked, h.expectContinue, h.keepAlive]);
      } else if (ev.kind === "body") {
        assert.is(state, "request", "body outside a request");
        assert.ok(ev.length > 0 && ev.offset >= 0 && ev.offset + ev.length <= chunk.length, "range in the chunk");
        for (let k = ev.offset; k < ev.offset + ev.length; k++) body.push(chunk[k]);
        if (!head.chunked) assert.ok(body.length <= head.contentLength, "body past Content-Length");
        else assert.ok(body.length <= p.maxBodyBytes, "chunked body past maxBodyBytes");
      } else if (ev.kind === "end") {
        assert.is(state, "request", "end outside a request");
        if (!head.chunked) assert.is(body.length, head.contentLength);
        state = "idle";
        out.push(["end", latin1(body)]);
      } else {
        assert.ok(ev.fatal || state === "idle", "a non-fatal error inside a request");
        assert.type(ev.message, "string");
        if (ev.fatal) state = "dead";
        out.push(["error", ev.status, ev.fatal]);
      }
    });
    assert.is(p.dead, state === "dead");
    at = end;
  }
  return out;
}

const everyByte = (b) => Array.from({ length: Math.max(0, b.length - 1) }, (_, k) => k + 1);
const randomCuts = (r, n, most = 8) =>
  n < 2 ? [] : [...new Set(Array.from({ length: 1 + r.int(most) }, () => 1 + r.int(n - 1)))].sort((x, y) => x - y);

/** The same transcript whole, byte by byte, and in `splits` seeded random splits. */
function runAllSplits(bytes, opts, seed = 1, splits = 50) {
  const whole = run(bytes, [], opts);
  assert.equal(run(bytes, everyByte(bytes), opts), whole, "byte by byte");
  const r = rng(seed);
  for (let k = 0; k < splits; k++) {
    const cuts = randomCuts(r, bytes.length);
    assert.equal(run(bytes, cuts, opts), whole, `cuts ${cuts}`);
  }
  return whole;
}

const CHUNKED_HEAD = "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
const chunkedReq = (body, head = CHUNKED_HEAD) => head + body;

test("HTTP heads: request lines and header fields, read byte by byte, match a model at every split", () => {
  // random heads: names of mixed case (some differing only in case, some repeated), values with
  // SP and HTAB around them and obs-text inside, targets with any visible byte; the parser keeps
  // a cache of the strings it made, so the same bytes must give the same strings and different
  // bytes of one length different ones
  const r = rng(17);
  const tchar = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  const pick = (s) => s[r.int(s.length)];
  const word = (chars, min, max) => Array.from({ length: min + r.int(max - min + 1) }, () => pick(chars)).join("");
  const valueChars = Array.from({ length: 256 }, (_, c) => String.fromCharCode(c))
    .filter((c) => (c >= " " && c !== "\x7f") || c === "\t")
    .join("");
  const names = Array.from({ length: 12 }, () => word(tchar, 1, 12));
  const values = Array.from({ length: 12 }, () => word(valueChars, 0, 60).replace(/^[ \t]+|[ \t]+$/g, ""));
  const recase = (s) => [...s].map((c) => (r() < 0.5 ? c.toUpperCase() : c.toLowerCase())).join("");
  const ows = () => pick(["", " ", "\t", "  ", " \t "]);
  for (let n = 0; n < 200; n++) {
    const method = pick(["GET", "PUT", "POST", "HEAD", "DELETE", "OPTIONS", "PATCH", "PROPFIND", "get"]);
    const target = "/" + word(tchar + "/?=:@[]\x80\xa0\xff", 0, 30);
    const model = new Map([["host", "h"]]);
    let head = `${r() < 0.1 ? "\r\n" : ""}${method} ${target} HTTP/1.${r.int(2)}\r\nHost: h\r\n`;
    if (method === "PUT" || method === "POST") {
      head += "content-LENGTH:0\r\n";
      model.set("content-length", "0");
    }
    for (let k = r.int(8); k > 0; k--) {
      const name = recase(r() < 0.3 ? word("abcdefgh", 3, 3) : pick(names));
      if (name.toLowerCase() === "host" || name.toLowerCase() === "content-length") continue;
      // many values of one length: the cache holds a few of them in each of its slots
      const value =
        r() < 0.4
          ? pick(values)
          : r() < 0.5
            ? word("abcdefgh", 3, 3)
            : word(valueChars, 0, 60).replace(/^[ \t]+|[ \t]+$/g, "");
      head += `${name}:${ows()}${value}${ows()}${r() < 0.2 ? "\n" : "\r\n"}`;
      const key = name.toLowerCase();
      model.set(key, model.has(key) ? `${model.get(key)}, ${value}` : value);
    }
    const bytes = Uint8Array.from(head + "\r\n", (c) => c.charCodeAt(0));
    const heads = (cuts) => {
      const p = new HttpParser();
      const got = [];
      let at = 0;
      for (const end of [...cuts, bytes.length]) {
        p.feed(bytes.subarray(at, end), (ev) => {
          assert.is(ev.kind === "error" ? ev.message : ev.kind, ev.kind === "head" ? "head" : "end");
          if (ev.kind === "head") got.push(ev.head);
        });
        at = end;
      }
      return got;
    };
    for (const cuts of [[], randomCuts(r, bytes.length), everyByte(bytes).filter(() => r() < 0.3)]) {
      const [h, extra] = heads(cuts);
      assert.ok(h && !extra, `one head: ${JSON.stringify(head)}`);
      assert.is(h.method, method);
      assert.is(h.target, target);
      assert.equal([...h.headers], [...model], JSON.stringify(head));
    }
  }
});

test("HTTP heads: OWS is SP and HTAB only; control bytes in a value, a name or the target are a 400", () => {
  const head = (s) => {
    const p = new HttpParser();
    const out = [];
    p.feed(
      Uint8Array.from(s, (c) => c.charCodeAt(0)),
      (ev) =>
        out.push(
          ev.kind === "head"
            ? ["head", [...ev.head.headers]]
            : ev.kind === "error"
              ? [ev.status, ev.message]
              : [ev.kind],
        ),
    );
    return out[0];
  };
  assert.equal(head("GET / HTTP/1.1\r\nHost: \t x \t\r\nA:\r\n\r\n"), [
    "head",
    [
      ["host", "x"],
      ["a", ""],
    ],
  ]);
  assert.equal(head("GET / HTTP/1.1\r\nHost: x\r\nA: \xa0v\xa0\r\n\r\n"), [
    "head",
    [
      ["host", "x"],
      ["a", "\xa0v\xa0"],
    ],
  ]);
  for (const v of ["x\x0b", "\x0cx", "x\ry", "x\x00", "x\x7f"])
    assert.equal(head(`GET / HTTP/1.1\r\nHost: x\r\nA: ${v}\r\n\r\n`), [400, "invalid character in a header value"], v);
  assert.equal(head("GET / HTTP/1.1\r\nHost : x\r\n\r\n"), [400, "malformed header name"]);
  assert.equal(head("GET / HTTP/1.1\r\nHost: x\r\n folded: y\r\n\r\n"), [400, "malformed header name"]);
  assert.equal(head("GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n"), [400, "malformed header line"]);
  assert.equal(head("GET / HTTP/1.1\r\nHost: x\r\n: empty name\r\n\r\n"), [400, "malformed header line"]);
  for (const line of [
    "GET /a\x01b HTTP/1.1",
    "GET /a\x7f HTTP/1.1",
    "GET  / HTTP/1.1",
    "G3T / HTTP/1.1",
    "GET / HTTP/1.1 ",
    "GET / HTTP/1.10",
    "GET / HTTP/x.1",
    "GET /",
  ])
    assert.equal(head(`${line}\r\nHost: x\r\n\r\n`), [400, "malformed request line"], JSON.stringify(line));
  assert.equal(head("GET / HTTP/2.0\r\nHost: x\r\n\r\n"), [505, "HTTP version not supported"]);
  assert.equal(head("\r\n\n\r\n\r\n"), [400, "malformed request line"]);
});

test("HTTP chunked: whole, byte by byte and random splits give the same events and body bytes", () => {
  const evil = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"; // data, not a request
  const text =
    chunkedReq("5\r\nhello\r\n1;ext=1\r\n \r\n00005\r\nworld\r\n0\r\n\r\n") +
    "GET /k HTTP/1.1\r\nHost: x\r\n\r\n" +
    chunkedReq(
      `A\r\n0123456789\r\n${evil.length.toString(16)}\r\n${evil}\r\n0;last\r\nX-Sum: 1\r\nY: two words\r\n\r\n`,
      "PUT /p HTTP/1.1\r\nHost: x\r\ntransfer-encoding: Chunked\r\nExpect: 100-Continue\r\n\r\n",
    ) +
    "POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
    chunkedReq("0\r\n\r\n", "DELETE /d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
  const want = [
    ["head", "POST", "/c", -1, true, false, true],
    ["end", "hello world"],
    ["head", "GET", "/k", 0, false, false, true],
    ["end", ""],
    ["head", "PUT", "/p", -1, true, true, true],
    ["end", "0123456789" + evil],
    ["head", "POST", "/l", 3, false, false, true],
    ["end", "abc"],
    ["head", "DELETE", "/d", -1, true, false, false],
    ["end", ""],
  ];
  const b = enc(text);
  assert.equal(runAllSplits(b, {}, 17, 300), want);
  for (let cut = 1; cut < b.length; cut++) assert.equal(run(b, [cut]), want, `split at ${cut}`);
});

test("HTTP chunked: chunk data comes out as ranges of the chunks it arrived in", () => {
  const p = new HttpParser();
  const got = [];
  const feed = (name, s) =>
    p.feed(enc(s), (ev) => got.push(ev.kind === "body" ? [name, ev.offset, ev.length] : ev.kind));
  feed("c1", CHUNKED_HEAD + "10;a=b\r\n0123");
  feed("c2", "456789abcdef\r\n3\r\nxyz\r\n");
  feed("c3", "0\r\nT: 1\r");
  feed("c4", "\n\r\n");
  assert.equal(got, ["head", ["c1", 65, 4], ["c2", 0, 12], ["c2", 17, 3], "end"]);
});

test("HTTP chunked: extensions and trailers are accepted and ignored; trailers count as header bytes", () => {
  const ok = [
    "5;a\r\nhello\r\n0\r\n\r\n",
    "5;a=b;c=d\r\nhello\r\n0\r\n\r\n",
    '5 ; name = "quoted;\\"value\\"" ;x\r\nhello\r\n0\r\n\r\n',
    "5\t;\tn\t=\tv\r\nhello\r\n0;z=9\r\n\r\n",
    "5\r\nhello\r\n0\r\nExpires: never\r\nX-Empty:\r\nX-Tab:\tv\r\n\r\n",
    "2\r\nhe\r\n3\r\nllo\r\n000\r\n\r\n",
    "0000000000000000000000000000005\r\nhello\r\n0\r\n\r\n", // leading zeros are not an overflow
  ];
  for (const body of ok) {
    assert.equal(
      runAllSplits(enc(chunkedReq(body)), {}, 3, 20),
      [
        ["head", "POST", "/c", -1, true, false, true],
        ["end", "hello"],
      ],
      body,
    );
  }
  // maxHeaderBytes bounds the head and the trailer fields together (the empty line is free)
  const head = enc(CHUNKED_HEAD).length;
  const trailer = "X-T: 123\r\n"; // 10 bytes
  const b = enc(chunkedReq(`0\r\n${trailer}\r\n`));
  assert.equal(runAllSplits(b, { maxHeaderBytes: head + 10 }), [
    ["head", "POST", "/c", -1, true, false, true],
    ["end", ""],
  ]);
  assert.equal(runAllSplits(b, { maxHeaderBytes: head + 9 }), [
    ["head", "POST", "/c", -1, true, false, true],
    ["error", 431, true],
  ]);
  assert.equal(runAllSplits(enc(chunkedReq("0\r\n\r\n")), { maxHeaderBytes: head }), [
    ["head", "POST", "/c", -1, true, false, true],
    ["end", ""],
  ]);
  const many = enc(chunkedReq("0\r\n" + "X: y\r\n".repeat(2000) + "\r\n"));
  assert.equal(run(many), [
    ["head", "POST", "/c", -1, true, false, true],
    ["error", 431, true],
  ]);
});

test("HTTP chunked: malformed framing is a fatal 400, a body over maxBodyBytes a fatal 413", () => {
  const H = ["head", "POST", "/c", -1, true, false, true];
  const cases = [
    // [chunked body, events after the head, options]
    ["x\r\n", [["error", 400, true]]],
    ["\r\n", [["error", 400, true]]],
    ["-5\r\nhello\r\n", [["error", 400, true]]],
    ["0x5\r\nhello\r\n", [["error", 400, true]]],
    ["5 \r\nhello\r\n0\r\n\r\n", [["error", 400, true]]], // whitespace without an extension
    [";a\r\n", [["error", 400, true]]],
    ["5;\r\nhello\r\n", [["error", 400, true]]],
    ["5;=b\r\nhello\r\n", [["error", 400, true]]],
    ['5;a="open\r\nhello\r\n', [["error", 400, true]]],
    ["5;a b\r\nhello\r\n", [["error", 400, true]]],
    ["5;a\rb\r\nhello\r\n", [["error", 400, true]]], // a bare CR
    ["5\nhello\r\n0\r\n\r\n", [["error", 400, true]]], // a bare LF
    [`5;${"a".repeat(1021)}\r\nhello\r\n`, [["error", 400, true]]], // a size line past its bound (1025 bytes)
    [`5;${"a".repeat(1020)}\r\nhello\r\n0\r\n\r\n`, [["end", "hello"]]], // within it (1024)
    ["1" + "0".repeat(16) + "\r\n", [["error", 400, true]]], // 17 hex digits: overflows 64 bits
    ["f".repeat(17) + "\r\n", [["error", 400, true]]],
    ["f".repeat(16) + "\r\n", [["error", 413, true]]], // fits 64 bits, but far too large
    ["ffffffff\r\n", [["error", 413, true]]],
    ["5\r\nhello\r\n6\r\nworld!\r\n0\r\n\r\n", [["error", 413, true]], { maxBodyBytes: 10 }],
    ["5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", [["end", "helloworld"]], { maxBodyBytes: 10 }],
    ["5\r\nhelloX\r\n0\r\n\r\n", [["error", 400, true]]], // missing CRLF after the data
    ["5\r\nhello\rX0\r\n\r\n", [["error", 400, true]]],
    ["5\r\nhello\n0\r\n\r\n", [["error", 400, true]]],
    ["5\r\nhell\r\n0\r\n\r\n", [["error", 400, true]]], // a size that lies
    ["0\r\nbad trailer\r\n\r\n", [["error", 400, true]]],
    ["0\r\nX : y\r\n\r\n", [["error", 400, true]]],
    ["0\r\nX: y\r\n folded\r\n\r\n", [["error", 400, true]]],
    ["0\r\nX: a\x00b\r\n\r\n", [["error", 400, true]]],
    ["0\r\nX: y\n\r\n", [["error", 400, true]]],
    ["0\r\n\n", [["error", 400, true]]],
    ["0\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", [["error", 400, true]]], // no empty line after the last-chunk
  ];
  for (const [body, after, opts] of cases) {
    const got = runAllSplits(enc(chunkedReq(body)), opts, 5, 10);
    // the body bytes before a fatal error came out as ranges, but the request never ended
    assert.equal(got, [H, ...after], JSON.stringify(body));
  }
  // the 413 comes as soon as the chunk-size line says so, after the chunks before it
  const p = new HttpParser({ maxBodyBytes: 8 });
  const kinds = [];
  p.feed(enc(chunkedReq("4\r\nabcd\r\n5\r\n")), (ev) => kinds.push(ev.kind === "error" ? ev.status : ev.kind));
  assert.equal(kinds, ["head", "body", 413]);
  assert.ok(p.dead);
});

test("HTTP: request smuggling defences: CL with TE, other codings, differing Content-Lengths", () => {
  const one = (s, opts) => runAllSplits(enc(s), opts, 7, 5);
  const req = (headers, rest = "") => `POST /s HTTP/1.1\r\nHost: x\r\n${headers}\r\n${rest}`;
  const fatal400 = [["error", 400, true]];
  assert.equal(one(req("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n")), fatal400);
  assert.equal(one(req("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n")), fatal400);
  for (const te of ["gzip, chunked", "chunked, gzip", "identity", "chunked, chunked", "gzip", "chunked;q=1", ""])
    assert.equal(one(req(`Transfer-Encoding: ${te}\r\n`, "0\r\n\r\n")), [["error", 501, true]], te);
  assert.equal(
    one(req("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n")),
    [["error", 501, true]],
    "repeated Transfer-Encoding",
  );
  assert.equal(one(req("Transfer-Encoding : chunked\r\n", "0\r\n\r\n")), fatal400, "space before the colon");
  assert.equal(one(req("Transfer-Encoding: chunked\rX: y\r\n", "0\r\n\r\n")), fatal400, "a bare CR in a value");
  assert.equal(one(req("X: 1\r\n Transfer-Encoding: chunked\r\n", "0\r\n\r\n")), fatal400, "obs-fold");
  // Transfer-Encoding in HTTP/1.0 is faulty framing (RFC 9112 §6.1)
  assert.equal(one("POST /s HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), fatal400);
  assert.equal(one("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), fatal400, "two Host headers");
  // Content-Length: the same value repeated is that value; differing ones are fatal
  const five = [
    ["head", "POST", "/s", 5, false, false, true],
    ["end", "hello"],
    ["head", "GET", "/n", 0, false, false, true],
    ["end", ""],
  ];
  const next = "GET /n HTTP/1.1\r\nHost: x\r\n\r\n";
  assert.equal(one(req("Content-Length: 5\r\nContent-Length: 5\r\n", "hello" + next)), five);
  assert.equal(one(req("Content-Length: 5,5\r\n", "hello" + next)), five);
  assert.equal(one(req("Content-Length: 5 , 5, 5\r\n", "hello" + next)), five);
  for (const cl of ["5, 6", "5,", ",5", "5,,5", "05, 5", "+5", "5 5", "0x5", "1".repeat(16)])
    assert.equal(one(req(`Content-Length: ${cl}\r\n`, "hello" + next)), fatal400, cl);
  assert.equal(one(req("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!" + next)), fatal400);
  // still 411 without either; HEAD and GET have no body unless Content-Length says so
  assert.equal(one(req("")), [["error", 411, true]]);
  assert.equal(one("PUT /s HTTP/1.1\r\nHost: x\r\n\r\n"), [["error", 411, true]]);
  assert.equal(one("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n" + next), [
    ["head", "HEAD", "/h", 0, false, false, true],
    ["end", ""],
    ["head", "GET", "/n", 0, false, false, true],
    ["end", ""],
  ]);
  assert.equal(one("HEAD /h HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"), [
    ["head", "HEAD", "/h", 2, false, false, true],
    ["end", "hi"],
  ]);
});

test("HTTP: Expect: 100-continue sets expectContinue; other expectations are a 417", () => {
  const one = (s, opts) => runAllSplits(enc(s), opts, 11, 5);
  const next = "GET /n HTTP/1.1\r\nHost: x\r\n\r\n";
  const NEXT = [
    ["head", "GET", "/n", 0, false, false, true],
    ["end", ""],
  ];
  for (const e of ["100-continue", "100-Continue", "100-CONTINUE"])
    assert.equal(one(`PUT /e HTTP/1.1\r\nHost: x\r\nExpect: ${e}\r\nContent-Length: 2\r\n\r\nhi${next}`), [
      ["head", "PUT", "/e", 2, false, true, true],
      ["end", "hi"],
      ...NEXT,
    ]);
  assert.equal(
    one(chunkedReq("2\r\nhi\r\n0\r\n\r\n", CHUNKED_HEAD.replace("\r\n\r\n", "\r\nExpect: 100-continue\r\n\r\n"))),
    [
      ["head", "POST", "/c", -1, true, true, true],
      ["end", "hi"],
    ],
  );
  // ignored in HTTP/1.0 (RFC 9110 §10.1.1)
  assert.equal(one("PUT /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"), [
    ["head", "PUT", "/e", 2, false, false, false],
    ["end", "hi"],
  ]);
  // 417: the body of known length is skipped and the next request parses
  assert.equal(one(`PUT /e HTTP/1.1\r\nHost: x\r\nExpect: pizza\r\nContent-Length: 5\r\n\r\nhello${next}`), [
    ["error", 417, false],
    ...NEXT,
  ]);
  assert.equal(one(`GET /e HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n${next}`), [["error", 417, false], ...NEXT]);
  // fatal when the body's length is unknown, or the client may wait for 100 Continue
  assert.equal(
    one(chunkedReq("5\r\nhello\r\n0\r\n\r\n", CHUNKED_HEAD.replace("\r\n\r\n", "\r\nExpect: pizza\r\n\r\n"))),
    [["error", 417, true]],
  );
  assert.equal(one(`PUT /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, pizza\r\nContent-Length: 5\r\n\r\nhello`), [
    ["error", 417, true],
  ]);
  // 413: fatal with 100-continue (the body may never come), skipped without
  const big = (e) => `PUT /e HTTP/1.1\r\nHost: x\r\n${e}Content-Length: 20\r\n\r\n${"z".repeat(20)}${next}`;
  assert.equal(one(big("Expect: 100-continue\r\n"), { maxBodyBytes: 10 }), [["error", 413, true]]);
  assert.equal(one(big(""), { maxBodyBytes: 10 }), [["error", 413, false], ...NEXT]);
});

test("HTTP: parseRange reads one byte range (RFC 9110 §14.1.2)", () => {
  const U = "unsatisfiable";
  const r = (start, end) => ({ start, end });
  const cases = [
    // [header value, representation size, result]
    ["bytes=0-0", 10, r(0, 1)],
    ["bytes=0-9", 10, r(0, 10)],
    ["bytes=0-99", 10, r(0, 10)], // last-pos clipped to size - 1
    ["bytes=9-9", 10, r(9, 10)],
    ["bytes=9-", 10, r(9, 10)],
    ["bytes=3-5", 10, r(3, 6)],
    ["bytes=0-", 10, r(0, 10)],
    ["bytes=10-", 10, U],
    ["bytes=10-20", 10, U],
    ["bytes=-1", 10, r(9, 10)],
    ["bytes=-10", 10, r(0, 10)],
    ["bytes=-11", 10, r(0, 10)],
    ["bytes=-0", 10, U],
    ["bytes=0-0", 1, r(0, 1)],
    ["bytes=-1", 1, r(0, 1)],
    ["bytes=1-", 1, U],
    ["bytes=0-", 0, U],
    ["bytes=-5", 0, U],
    ["bytes=0-0", 0, U],
    ["Bytes=2-3", 10, r(2, 4)],
    ["BYTES=2-3", 10, r(2, 4)],
    [" bytes=2-3 ", 10, r(2, 4)],
    ["bytes=2-3,", 10, r(2, 4)], // an empty list element
    ["bytes=007-008", 10, r(7, 9)],
    ["bytes=0-99999999999999999999999", 10, r(0, 10)],
    ["bytes=99999999999999999999999-", 10, U],
    ["bytes=-99999999999999999999999", 10, r(0, 10)],
    ["bytes=5-4", 10, null], // last-pos before first-pos: invalid
    ["bytes=99999999999999999999998-99999999999999999999997", 10, null],
    ["bytes=0-1,3-4", 10, null], // several ranges: the whole representation
    ["bytes=0-1, 0-1", 10, null],
    ["bytes=-", 10, null],
    ["bytes=", 10, null],
    ["bytes=a-b", 10, null],
    ["bytes=1-2-3", 10, null],
    ["bytes=+1-2", 10, null],
    ["bytes=1 - 2", 10, null],
    ["bytes 0-1", 10, null],
    ["items=0-1", 10, null],
    ["", 10, null],
    ["bytes=0x1-2", 10, null],
  ];
  for (const [value, size, want] of cases) assert.equal(parseRange(value, size), want, `${value} of ${size}`);
  assert.throws(() => parseRange("bytes=0-1", -1), RangeError);
  assert.throws(() => parseRange("bytes=0-1", 1.5), RangeError);
});

test("HTTP: responseHead writes extra headers, rejects CR/LF; new reasons; CONTINUE", () => {
  assert.is(
    responseHead(206, 4, {
      type: "application/octet-stream",
      headers: [
        ["Content-Range", "bytes 2-5/10"],
        ["Accept-Ranges", "bytes"],
        ["ETag", '"abc"'],
      ],
      close: true,
    }),
    "HTTP/1.1 206 Partial Content\r\nContent-Length: 4\r\nContent-Type: application/octet-stream\r\n" +
      'Content-Range: bytes 2-5/10\r\nAccept-Ranges: bytes\r\nETag: "abc"\r\nConnection: close\r\n\r\n',
  );
  assert.is(
    responseHead(416, 0, { headers: [["Content-Range", "bytes */10"]] }),
    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nContent-Range: bytes */10\r\n\r\n",
  );
  for (const bad of ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb", "a\0b"]) {
    assert.throws(() => responseHead(200, 0, { headers: [["X", bad]] }), TypeError, JSON.stringify(bad));
    assert.throws(() => responseHead(200, 0, { type: bad }), TypeError, JSON.stringify(bad));
  }
  for (const name of ["X Y", "X:", "", "X\r\nY", "Content-Length", "transfer-encoding"])
    assert.throws(() => responseHead(200, 0, { headers: [[name, "v"]] }), TypeError, JSON.stringify(name));
  const reasons = {
    100: "Continue",
    206: "Partial Content",
    401: "Unauthorized",
    403: "Forbidden",
    408: "Request Timeout",
    416: "Range Not Satisfiable",
    417: "Expectation Failed",
  };
  for (const [status, reason] of Object.entries(reasons))
    assert.ok(responseHead(Number(status), 0).startsWith(`HTTP/1.1 ${status} ${reason}\r\n`), status);
  assert.is(CONTINUE, "HTTP/1.1 100 Continue\r\n\r\n");
  assert.is(responseHead(100, 0), CONTINUE);
  // no Content-Length in a 1xx or 204 response (RFC 9110 §8.6)
  assert.is(responseHead(204, 0, { close: true }), "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
});

test("HTTP: mangled chunked requests end in a clean error or in well-formed events, at every split", () => {
  const r = rng(2024);
  const pieces = ["\r\n", "\r", "\n", "0", "1", "f", "F", ";", "=", '"', " ", "\t", ":", "x", "-", ",", "\x00", "\xff"];
  const fields = ["Expect: 100-continue", "Connection: close", "Trailer: X", "Accept: */*"];
  let errors = 0;
  let ends = 0;
  for (let t = 0; t < 400; t++) {
    // a valid pipeline: a chunked request with random chunks, extensions and trailers, then more
    let body = "";
    for (let n = r.int(4); n > 0; n--) {
      const data = Array.from({ length: 1 + r.int(20) }, () => String.fromCharCode(r.int(256))).join("");
      const hex = data.length.toString(16);
      body += (r.int(2) ? hex.toUpperCase() : hex) + (r.int(3) ? "" : ";e=v") + "\r\n" + data + "\r\n";
    }
    body += "0\r\n" + (r.int(2) ? "X: 1\r\n" : "") + "\r\n";
    let text =
      chunkedReq(body) +
      "POST /l HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd" +
      `GET /g HTTP/1.1\r\nHost: x\r\n${fields[r.int(fields.length)]}\r\n\r\n` +
      chunkedReq("3\r\nabc\r\n0\r\n\r\n");
    const edits = 1 + r.int(2);
    for (let e = 0; e < edits; e++) {
      const at = r.int(text.length + 1);
      const what = r.int(3);
      if (what === 0)
        text = text.slice(0, at) + String.fromCharCode(r.int(256)) + text.slice(at + 1); // flip
      else if (what === 1)
        text = text.slice(0, at) + pieces[r.int(pieces.length)] + text.slice(at); // insert
      else text = text.slice(0, at) + text.slice(at + 1 + r.int(3)); // delete
    }
    const b = Uint8Array.from(text, (c) => c.charCodeAt(0));
    const opts = r.int(4) ? {} : { maxHeaderBytes: 60 + r.int(60), maxBodyBytes: r.int(60) };
    let got;
    try {
      got = runAllSplits(b, opts, t, 3);
    } catch (err) {
      err.message += ` (input ${JSON.stringify(text)}, ${JSON.stringify(opts)})`;
      throw err;
    }
    if (got.some((ev) => ev[0] === "error")) errors++;
    ends += got.filter((ev) => ev[0] === "end").length;
  }
  // the mangling exercised both outcomes
  assert.ok(errors > 100 && errors < 380 && ends > 300, `${errors} errors, ${ends} requests`);
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

/** A RespHandler that writes each call into `calls` as text. */
const logHandler = (calls) => ({
  begin: (n) => calls.push(`begin ${n}`),
  arg: (src, at, len) => calls.push(`arg ${dec(src.subarray(at, at + len))}`),
  part: (_o, len, total) => calls.push(`part ${len}/${total}`),
  argEnd: () => calls.push("argEnd"),
  end: () => calls.push("end"),
  error: (m) => calls.push(`error ${m}`),
});

test("RESP: parse() with a handler object calls back in feed()'s order, at every split", () => {
  const b = enc(cmd("SET", "key:2", "w".repeat(300)) + cmd("PING") + "*1\r\n$4\r\nPING\r\n" + "*1\r\n$x\r\n");
  const run = (cuts) => {
    const p = new RespParser();
    const calls = [];
    let at = 0;
    const h = logHandler(calls);
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

test("RESP: parse(chunk, h, true) stops after each command and returns the bytes it took", () => {
  const cmds = cmd("SET", "key:3", "x".repeat(200)) + cmd("GET", "key:3") + "PING\r\n" + "\r\n" + cmd("DEL", "a");
  const b = enc(cmds + "*1\r\n$4\r\nPI");
  const calls = [];
  const h = logHandler(calls);
  const p = new RespParser();
  const taken = [];
  for (let at = 0; at < b.length;) {
    const n = p.parse(b.subarray(at), h, true);
    assert.ok(n > 0);
    taken.push(n);
    at += n;
  }
  // one command a call (the stray CRLF goes with the next command), the partial one last
  const lens = [cmd("SET", "key:3", "x".repeat(200)), cmd("GET", "key:3"), "PING\r\n", "\r\n" + cmd("DEL", "a")];
  assert.equal(taken, [...lens.map((x) => enc(x).length), 10]);
  assert.ok(p.partial);
  assert.is(
    calls.join(","),
    "begin 3,arg SET,arg key:3,part 200/200,argEnd,end,begin 2,arg GET,arg key:3,end,begin 1,arg PING,end,begin 2,arg DEL,arg a,end,begin 1",
  );
  // an error stops it too, with every byte taken
  const q = new RespParser();
  const bad = enc(cmd("PING") + "*1\r\n$x\r\n" + cmd("PING"));
  assert.is(q.parse(bad, h, true), enc(cmd("PING")).length);
  assert.is(q.parse(bad.subarray(enc(cmd("PING")).length), h, true), bad.length - enc(cmd("PING")).length);
  assert.ok(q.dead);
});

test("RESP: short arguments are ranges of an arena that is never written again: kept ones stay intact", () => {
  // 3000 commands of short arguments (some of smallMax bytes): several arenas' worth
  const p = new RespParser({ smallMax: 64 });
  const kept = [];
  const want = [];
  const h = {
    begin: () => {},
    arg: (src, at, len) => kept.push([src, at, len]),
    part: () => assert.unreachable("no long argument here"),
    argEnd: () => {},
    end: () => {},
    error: (m) => assert.unreachable(m),
  };
  for (let i = 0; i < 3000; i++) {
    const args = [
      "SET",
      `key:${i}`,
      String(i)
        .repeat(1 + (i % 20))
        .slice(0, 64),
    ];
    want.push(...args);
    p.parse(enc(cmd(...args)), h);
  }
  assert.is(kept.length, want.length);
  const arenas = new Set(kept.map(([src]) => src));
  assert.ok(arenas.size > 1, `several arenas (${arenas.size})`);
  kept.forEach(([src, at, len], i) => assert.is(dec(src.subarray(at, at + len)), want[i], `argument ${i}`));
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

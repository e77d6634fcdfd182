// The Node-idiom API (NetStack: createServer/connect, Duplex sockets, async iteration) over two
// in-process stacks (MemoryPair running on the event loop): pipe() echo byte-exact over a
// seeded faulty wire with zero-copy chunks, half-close, destroy/ECONNRESET, ECONNREFUSED,
// write backpressure, a paused reader closing the window, pool pressure (copies instead of
// views), slices keeping their chunk alive. Each test ends with both pools whole after a GC
// (received chunks are views whose PM buffers the FinalizationRegistry frees).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import tls from "node:tls";
import { Writable } from "node:stream";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { MemoryPair, createMemoryNet, createServer, connect } from "../build/index.js";
import { seeded } from "./lib/kernel-peer.mjs";
import { scratchDir } from "./lib/tmp.mjs";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc");
const sha = (b) => createHash("sha256").update(b).digest("hex");
const tick = () => new Promise((r) => setTimeout(r, 5));

function setup(opts = {}, netOpts = {}) {
  const pair = MemoryPair.create({ buffers: 4096, ...opts });
  const { a, b } = createMemoryNet(pair, netOpts);
  return { pair, a, b };
}

/** GC until every lent view came back, then both pools must be whole. */
async function assertNoLeak({ pair, a, b }) {
  const quiet = (st) => st.connectionIds.size === 0 && st.pool.counts().nic === 0 && st.pool.counts().stack === 0;
  for (let k = 0; k < 4000 && !(quiet(pair.a.stack) && quiet(pair.b.stack)); k++) await tick();
  for (let k = 0; k < 50; k++) {
    gc();
    await tick();
    if (a.stats.viewsFinalized === a.stats.viewChunks && b.stats.viewsFinalized === b.stats.viewChunks) break;
  }
  assert.is(a.stats.viewsFinalized, a.stats.viewChunks, "a: every view chunk came back");
  assert.is(b.stats.viewsFinalized, b.stats.viewChunks, "b: every view chunk came back");
  for (const side of ["a", "b"]) {
    const c = pair[side].stack.pool.check();
    assert.is(c.free, c.total, `${side}: ${JSON.stringify(c)}`);
  }
  a.close();
  b.close();
  pair.shutdown();
}

/** Reads to 'end' with events (for-await destroys the stream when the loop ends, as in node:net). */
function readAll(stream) {
  return new Promise((resolve, reject) => {
    const parts = [];
    stream.on("data", (d) => parts.push(Buffer.from(d)));
    stream.on("end", () => resolve(Buffer.concat(parts)));
    stream.on("error", reject);
    stream.resume(); // a 'data' listener alone does not restart a paused stream
  });
}

async function collect(stream) {
  const parts = [];
  for await (const d of stream) parts.push(Buffer.from(d)); // a copy: we hold the bytes, not the views
  return Buffer.concat(parts);
}

test("pipe() echo: 4 connections x 1 MiB byte-exact over a lossy wire; chunks are zero-copy views; async iteration", async () => {
  const env = setup({
    ab: { seed: 21, drop: 0.01, reorder: 0.03, delayMs: 1 },
    ba: { seed: 22, drop: 0.01, reorder: 0.03, delayMs: 1 },
  });
  const srv = createServer({ stack: env.b }, (s) => s.pipe(s));
  srv.listen(7);
  await once(srv, "listening");
  assert.equal(srv.address(), { address: "198.18.0.2", family: "IPv4", port: 7 });
  const data = seeded(1 << 20, 4);
  const results = await Promise.all(
    [0, 1, 2, 3].map(async () => {
      const c = connect({ stack: env.a, host: "198.18.0.2", port: 7 });
      await once(c, "connect");
      const [got] = await Promise.all([collect(c), pipeline(Readable.from([data]), c)]);
      return got;
    }),
  );
  for (const got of results) assert.is(sha(got), sha(data));
  // views until the GC is behind and buffers run low, then copies (pool pressure)
  const st = env.b.stats;
  assert.ok(st.viewChunks > 0 && (st.copiedChunks === 0 || st.pressureEntered > 0), JSON.stringify(st));
  assert.is(env.b.stats.writeCopiedBytes, 4 * data.length);
  assert.ok(env.pair.link.ab.stats.dropped > 0);
  srv.close();
  await once(srv, "close");
  await assertNoLeak(env);
});

test("half-close: the client ends, the server answers after 'end' (allowHalfOpen), then both close", async () => {
  const env = setup();
  const srv = env.b.createServer({ allowHalfOpen: true }, async (s) => {
    const req = await readAll(s); // ends when the client's FIN arrives
    s.end(`got ${req.length} bytes: ${req.toString()}`);
  });
  srv.listen(80);
  await once(srv, "listening");
  const c = env.a.connect({ host: "198.18.0.2", port: 80, allowHalfOpen: true });
  await once(c, "connect");
  c.end("question");
  const reply = await collect(c);
  assert.is(reply.toString(), "got 8 bytes: question");
  if (!c.closed) await once(c, "close");
  assert.is(c.bytesWritten, 8);
  assert.is(c.bytesRead, reply.length);
  srv.close();
  await once(srv, "close");
  await assertNoLeak(env);
});

test("destroy() resets the peer (ECONNRESET); connecting to a closed port fails with ECONNREFUSED", async () => {
  const env = setup();
  const errs = [];
  const closedSrv = new Promise((resolve) => {
    const srv = env.b.createServer({}, (s) => {
      s.on("error", (e) => errs.push(e));
      s.on("close", () => resolve(srv));
      s.write("hello");
    });
    srv.listen(9);
  });
  const c = env.a.connect({ host: "198.18.0.2", port: 9 });
  const first = await once(c, "data").then(([d]) => d.toString()); // hold no view
  assert.is(first, "hello");
  c.destroy();
  assert.is(c.destroyed, true);
  const srv = await closedSrv;
  assert.is(errs.length, 1);
  assert.is(errs[0].code, "ECONNRESET");
  const bad = env.a.connect({ host: "198.18.0.2", port: 10 });
  const [err] = await once(bad, "error");
  assert.is(err.code, "ECONNREFUSED");
  assert.is(err.port, 10);
  if (!bad.closed) await once(bad, "close");
  srv.close();
  await assertNoLeak(env);
});

test("write backpressure: write() returns false, 'drain' follows; a paused reader closes the window, resume completes byte-exact", async () => {
  const env = setup({ b: { rcvBuf: 65536 } });
  let serverSock;
  const accepted = new Promise((r) =>
    env.b
      .createServer({}, (s) => {
        s.pause(); // read nothing yet
        serverSock = s;
        r();
      })
      .listen(5),
  );
  const c = env.a.connect({ host: "198.18.0.2", port: 5 });
  await once(c, "connect");
  await accepted;
  const data = seeded(2 << 20, 6);
  let sawFalse = false;
  let drains = 0;
  c.on("drain", () => drains++);
  const writer = (async () => {
    for (let at = 0; at < data.length; at += 65536) {
      if (!c.write(data.subarray(at, at + 65536))) {
        sawFalse = true;
        await once(c, "drain");
      }
    }
    c.end();
  })();
  // the paused reader: TCP's window closes, the sender's queue backs up
  for (let k = 0; k < 4000; k++) {
    await tick();
    const info = env.pair.a.stack.connection(c.conn);
    if (info && info.sndWnd === 0 && sawFalse) break;
  }
  assert.is(env.pair.a.stack.connection(c.conn).sndWnd, 0, "zero window while the reader is paused");
  assert.ok(sawFalse, "write() said to wait");
  const got = await readAll(serverSock); // resumes the reader
  await writer;
  assert.is(sha(got), sha(data));
  assert.ok(drains > 0);
  assert.is(env.pair.b.stack.port.stats.rxDropNoBuffer, 0);
  await assertNoLeak(env);
});

test("pool pressure: a server holding every chunk gets copies once buffers run low; nothing dropped, byte-exact", async () => {
  const env = setup({ b: { rcvBuf: 65536, pool: { buffers: 1024 } } });
  const held = [];
  const done = new Promise((resolve) =>
    env.b
      .createServer({}, (s) => {
        s.on("data", (d) => held.push(d)); // keeps the views alive: their PM buffers stay lent out
        s.on("end", () => resolve());
      })
      .listen(6),
  );
  const data = seeded(3 << 20, 8);
  const c = env.a.connect({ host: "198.18.0.2", port: 6 });
  await pipeline(Readable.from([data]), c);
  await done;
  assert.is(sha(Buffer.concat(held)), sha(data));
  const st = env.b.stats;
  assert.ok(st.pressureEntered >= 1, JSON.stringify(st));
  assert.ok(st.viewChunks > 0 && st.copiedChunks > 0, JSON.stringify(st));
  assert.is(env.pair.b.stack.port.stats.rxDropNoBuffer, 0);
  assert.is(env.pair.b.stack.pool.counts().app, st.viewChunks - st.viewsFinalized, "views hold their buffers");
  held.length = 0;
  await assertNoLeak(env);
});

test("EADDRINUSE for a second server on a port; the first keeps serving; 100 concurrent connections", async () => {
  const env = setup({ a: { maxConnections: 256 }, b: { maxConnections: 256 } });
  const first = env.b.createServer({}, (s) => {
    s.once("data", (d) => s.end(`RESP ${d.toString().slice(4)}`));
  });
  first.listen(7);
  await once(first, "listening");
  const second = env.b.createServer({}, () => {});
  second.listen(7);
  const [err] = await once(second, "error");
  assert.is(err.code, "EADDRINUSE");
  const answers = await Promise.all(
    Array.from({ length: 100 }, async (_, k) => {
      const c = env.a.connect({ host: "198.18.0.2", port: 7 });
      await once(c, "connect");
      c.write(`REQ ${k}`);
      return (await readAll(c)).toString();
    }),
  );
  answers.forEach((x, k) => assert.is(x, `RESP ${k}`));
  first.close();
  await once(first, "close");
  await assertNoLeak(env);
});

test("a slice keeps its chunk's PM buffer alive; dropping it returns the buffer", async () => {
  const env = setup();
  const slices = [];
  const got = new Promise((resolve) =>
    env.b
      .createServer({}, (s) => {
        s.on("data", (d) => slices.push(d.subarray(1, 4)));
        s.on("end", resolve);
      })
      .listen(4),
  );
  const c = env.a.connect({ host: "198.18.0.2", port: 4 });
  await once(c, "connect");
  c.end("abcdef");
  await got;
  for (let k = 0; k < 5; k++) {
    gc();
    await tick();
  }
  assert.is(env.b.stats.viewChunks, 1);
  assert.is(env.b.stats.viewsFinalized, 0, "the slice holds the chunk");
  assert.is(env.pair.b.stack.pool.counts().app, 1);
  assert.is(Buffer.from(slices[0]).toString(), "bcd");
  slices.length = 0;
  await assertNoLeak(env);
});

test("node:net's socket surface: readyState, pending, ref/unref, setTimeout's 'timeout', destroySoon, resetAndDestroy", async () => {
  const env = setup();
  const serverSide = [];
  const srv = env.b.createServer({}, (s) => {
    serverSide.push(s);
    s.on("error", () => {});
  });
  srv.listen(81);
  await once(srv, "listening");
  const c = env.a.connect({ host: "198.18.0.2", port: 81 });
  assert.is(c.pending, true);
  assert.is(c.readyState, "opening");
  assert.is(c.unref(), c);
  assert.is(c.ref(), c);
  await once(c, "connect");
  assert.is(c.pending, false);
  assert.is(c.readyState, "open");
  // idle: 'timeout' after 60 ms without traffic, the socket still open
  const t0 = performance.now();
  let fired = 0;
  c.setTimeout(60, () => fired++);
  await once(c, "timeout");
  assert.ok(performance.now() - t0 >= 55, "not before the idle time");
  assert.is(fired, 1);
  assert.is(c.destroyed, false);
  c.setTimeout(0);
  // destroySoon: the written bytes go, then FIN; the server reads them and 'end'
  c.write("bye");
  c.destroySoon();
  assert.is(c.writable, false, "destroySoon ends the writable side");
  const got = await readAll(serverSide[0]);
  assert.is(got.toString(), "bye");
  if (!c.closed) await once(c, "close");
  assert.is(c.readyState, "closed");
  // resetAndDestroy after end(): an RST all the same, the peer sees ECONNRESET
  const d = env.a.connect({ host: "198.18.0.2", port: 81 });
  await once(d, "connect");
  while (serverSide.length < 2) await tick();
  const peerErr = once(serverSide[1], "error");
  d.end();
  d.resetAndDestroy();
  const [e] = await peerErr;
  assert.is(e.code, "ECONNRESET");
  srv.close();
  await assertNoLeak(env);
});

test("node:http over pmstack sockets: a server fed through emit('connection'), a keep-alive Agent reusing one socket", async () => {
  const env = setup();
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on("data", (d) => parts.push(Buffer.from(d)));
    req.on("end", () => res.end(`${req.method} ${req.url}: ${Buffer.concat(parts)}`));
  });
  const srv = env.b.createServer({}, (s) => server.emit("connection", s));
  srv.listen(8080);
  await once(srv, "listening");
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  agent.createConnection = () => env.a.connect({ host: "198.18.0.2", port: 8080 });
  const replies = [];
  const reused = [];
  for (let k = 0; k < 5; k++) {
    const body = `hello ${k}`.repeat(k * 200 + 1);
    const res = await new Promise((resolve, reject) => {
      const req = http.request({ agent, host: "198.18.0.2", port: 8080, method: "POST", path: `/r${k}` }, resolve);
      req.on("error", reject);
      reused.push(req.reusedSocket);
      req.end(body);
    });
    replies.push([res.statusCode, (await collect(res)).toString(), body]);
  }
  for (const [code, text, body] of replies) {
    assert.is(code, 200);
    assert.ok(text.endsWith(`: ${body}`), text.slice(0, 80));
  }
  assert.equal(reused, [false, true, true, true, true], "one socket for all five requests");
  agent.destroy();
  server.close();
  srv.close();
  await assertNoLeak(env);
});

test("node:tls both ways over pmstack sockets (TLS 1.3), and stream.pipeline: 1 MiB echoed byte-exact", async () => {
  const dir = scratchDir("tls");
  const mk = spawnSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
      .concat(["-keyout", `${dir}/key.pem`, "-out", `${dir}/cert.pem`, "-subj", "/CN=pmstack.test"])
      .concat(["-addext", "subjectAltName=DNS:pmstack.test"]),
    { encoding: "utf8" },
  );
  assert.is(mk.status, 0, mk.stderr);
  const key = readFileSync(`${dir}/key.pem`);
  const cert = readFileSync(`${dir}/cert.pem`);
  const env = setup();
  const tlsServer = tls.createServer({ key, cert, minVersion: "TLSv1.3" }, (t) => pipeline(t, t).catch(() => {}));
  const srv = env.b.createServer({}, (s) => tlsServer.emit("connection", s));
  srv.listen(443);
  await once(srv, "listening");
  const raw = env.a.connect({ host: "198.18.0.2", port: 443 });
  const t = tls.connect({ socket: raw, ca: cert, servername: "pmstack.test" });
  await once(t, "secureConnect");
  assert.is(t.getProtocol(), "TLSv1.3");
  assert.is(t.authorized, true);
  const data = seeded(1 << 20, 5);
  const h = createHash("sha256");
  let n = 0;
  const sink = new Writable({
    write(chunk, _enc, cb) {
      h.update(chunk);
      n += chunk.length;
      if (n >= data.length) t.end();
      cb();
    },
  });
  await Promise.all([
    pipeline(Readable.from([data.subarray(0, 300_000), data.subarray(300_000)]), t, { end: false }),
    pipeline(t, sink),
  ]);
  assert.is(n, data.length);
  assert.is(h.digest("hex"), sha(data));
  if (!raw.closed) await once(raw, "close");
  tlsServer.close();
  srv.close();
  await assertNoLeak(env);
});

test.run();

// The Node-idiom API (NetStack: createServer/connect, Duplex sockets, async iteration) over two
// in-process stacks (MemoryPair running on the event loop): pipe() echo byte-exact over a
// seeded faulty wire with zero-copy chunks, half-close, destroy/ECONNRESET, ECONNREFUSED,
// write backpressure, a paused reader closing the window, pool pressure (copies instead of
// views), slices keeping their chunk alive. Each test ends with both pools whole after a GC
// (received chunks are views whose PM buffers the FinalizationRegistry frees). node:net
// compatibility (node:http, node:tls, ref/unref, setTimeout, ...) is api-net-compat.test.mjs.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { once } from "node:events";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createServer, connect } from "../build/index.js";
import { seeded } from "./lib/kernel-peer.mjs";
import { setup, assertNoLeak, readAll, collect, gc, sha, tick } from "./lib/net-env.mjs";

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

test.run();

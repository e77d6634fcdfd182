// The batch API (PasteServer) over two in-process stacks (MemoryPair, deterministic clock):
// keep, persist, reply straight from kept buffers (no copy), group commit through a PmLog,
// close/abort, SEND_REFUSED/WRITABLE backpressure, pool pressure turning into a zero window
// and back, many connections, and byte-exact bulk echo over a seeded faulty wire. Every test
// ends with both pools checked: nothing lent out or kept is left behind.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { MemoryPair, PasteServer, PmLog, Stack, PoolExhaustedError, TCP_REASONS } from "../build/index.js";
import { seeded } from "./lib/kernel-peer.mjs";
import { scratchDir } from "./lib/tmp.mjs";

const sha = (b) => createHash("sha256").update(b).digest("hex");
const enc = new TextEncoder();

/** Both pools whole again: the invariant holds and every buffer is free (or `keptB` kept on b). */
function assertNoLeak(pair, keptB = 0) {
  // let the last FINs/ACKs settle: no connection left, nothing on a ring
  const quiet = (st) => st.connectionIds.size === 0 && st.pool.counts().nic === 0 && st.pool.counts().stack === 0;
  assert.ok(
    pair.runUntil(() => quiet(pair.a.stack) && quiet(pair.b.stack), 120_000),
    "both stacks settle",
  );
  for (const [side, kept] of [
    ["a", 0],
    ["b", keptB],
  ]) {
    const c = pair[side].stack.pool.check();
    assert.is(c.kept, kept, `side ${side}: kept buffers ${JSON.stringify(c)}`);
    assert.is(c.free, c.total - kept, `side ${side}: buffers left out ${JSON.stringify(c)}`);
  }
}

/**
 * A client on side a that streams `data` on `conns` connections to port `port` of b with
 * backpressure (sends more only when nothing waits in its queue), half-closes, and collects
 * what comes back per connection.
 */
function streamClient(pair, port, data, conns = 1, step = 65536) {
  const st = new Map(); // conn -> {sent, got: Buffer[], closed, reset}
  const byTag = new Map();
  const cli = new PasteServer(pair.a, (b) => {
    for (const c of b.connected) {
      const s = byTag.get(c.tag);
      s.conn = c.conn;
      st.set(c.conn, s);
    }
    for (const c of b.chunks) st.get(c.conn).got.push(Buffer.from(c.view)); // a copy: views end with the turn
    for (const c of b.closed) {
      const s = st.get(c.conn) ?? byTag.get(c.tag);
      s.closed = true;
      s.reset = c.reset;
      s.reason = c.reason;
    }
    for (const s of st.values()) {
      if (s.closed || s.fin) continue;
      while (s.sent < data.length && cli.queued(s.conn) === 0) {
        const n = Math.min(step, data.length - s.sent);
        b.reply(s.conn, data.subarray(s.sent, s.sent + n));
        s.sent += n;
      }
      if (s.sent === data.length) {
        b.close(s.conn);
        s.fin = true;
      }
    }
  });
  for (let k = 0; k < conns; k++) {
    const tag = cli.connect("198.18.0.2", port);
    byTag.set(tag, { conn: -1, sent: 0, got: [], closed: false, fin: false });
  }
  return { cli, all: () => [...byTag.values()] };
}

test("echo: 8 connections x 512 KiB byte-exact over a lossy, reordering, duplicating wire", () => {
  const pair = MemoryPair.create({
    buffers: 8192,
    ab: { seed: 11, drop: 0.02, reorder: 0.05, duplicate: 0.01, delayMs: 1 },
    ba: { seed: 12, drop: 0.02, reorder: 0.05, duplicate: 0.01, delayMs: 1 },
  });
  const srv = new PasteServer(pair.b, (b) => {
    for (const c of b.chunks) b.reply(c.conn, c.view); // copied into fresh buffers before the turn ends
    for (const conn of b.ended) b.close(conn);
  });
  srv.listen(7);
  const data = seeded(512 * 1024, 3);
  const { all } = streamClient(pair, 7, data, 8);
  assert.ok(
    pair.runUntil(() => all().every((s) => s.closed), 600_000),
    "all connections closed",
  );
  for (const s of all()) {
    assert.is(s.reset, false);
    assert.is(sha(Buffer.concat(s.got)), sha(data));
  }
  assert.ok(pair.link.ab.stats.dropped > 0 && pair.link.ba.stats.dropped > 0, "the wire did drop frames");
  assert.is(srv.stats.bytes, 8 * data.length);
  assert.is(srv.stats.replyCopiedBytes, 8 * data.length);
  assertNoLeak(pair);
  pair.shutdown();
});

test("keep + persist + group commit + reply straight from the kept buffer (no copy), then read back after reopening", () => {
  const dir = scratchDir("tmpfs");
  const path = join(dir, "paste.pm");
  const a = Stack.create({ mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24", pool: { buffers: 1024 } });
  const b = Stack.create({
    mac: "02:00:00:00:00:0b",
    ip: "198.18.0.2/24",
    pool: { path, buffers: 1024 },
    configure: PmLog.configure,
  });
  const log = PmLog.open(b.pool);
  const pair = new MemoryPair(a, b);
  const kept = []; // {name, key, bytes}
  const turnsWithData = [];
  let echoed = null;
  const srv = new PasteServer(
    pair.b,
    (batch) => {
      if (batch.chunks.length) turnsWithData.push(batch.chunks.length);
      for (const c of batch.chunks) {
        const name = batch.keep(c); // the buffer is the app's now; the NIC/stack use fresh ones
        const key = `msg-${kept.length}`;
        batch.persist([c]);
        batch.append(key, [c]);
        kept.push({ name, key, bytes: Buffer.from(c.view) });
        batch.reply(c.conn, name); // zero copy: TCP references the kept buffer
        echoed = name;
      }
      for (const conn of batch.ended) batch.close(conn);
    },
    { log },
  );
  srv.listen(80);
  // one message per turn: the client writes a message, waits for its echo, writes the next
  const msgs = Array.from({ length: 5 }, (_, k) => `record ${k}: ` + "x".repeat(100 + 300 * k));
  let conn = -1;
  let got = "";
  let done = false;
  let k = 0;
  const cli = new PasteServer(pair.a, (batch) => {
    for (const c of batch.connected) {
      conn = c.conn;
      batch.reply(conn, msgs[k++]);
    }
    for (const c of batch.chunks) got += Buffer.from(c.view).toString();
    if (conn >= 0 && got.length === msgs.slice(0, k).join("").length) {
      if (k < msgs.length) batch.reply(conn, msgs[k++]);
      else if (!done) {
        batch.close(conn);
        done = true;
      }
    }
  });
  cli.connect("198.18.0.2", 80);
  // the first echoed buffer's references, turn by turn from the turn that sent it: the app's
  // keep, the log's, the send queue's (until the core took its own) and TCP's (until ACKed)
  let first = null;
  const refs = [];
  assert.ok(
    pair.runUntil(() => {
      first ??= echoed;
      if (first && refs.at(-1)?.[1] !== 2) refs.push([b.pool.owner(first.index), b.pool.refCount(first.index)]);
      return done && srv.stats.turns > 0 && b.connectionIds.size === 0 && a.connectionIds.size === 0;
    }),
  );
  assert.is(got, msgs.join(""));
  assert.equal(refs.slice(0, 2), [
    ["kept", 4], // keep + log + queue + TCP
    ["kept", 3], // the queue's reference went at the next turn's end: TCP holds the buffer itself
  ]);
  assert.equal(refs.at(-1), ["kept", 2], "after the ACK: keep + log");
  assert.is(srv.stats.replyCopiedBytes, 0, "the server copied nothing to reply");
  assert.is(srv.stats.replyBuffers, 0);
  assert.is(srv.stats.zeroCopySends, kept.length);
  assert.is(srv.stats.zeroCopyBytes, msgs.join("").length);
  assert.is(srv.stats.persistFences, turnsWithData.length, "one fence per turn with data");
  assert.is(srv.stats.persistRanges, kept.length);
  assert.is(srv.stats.logCommits, turnsWithData.length, "one group commit per turn");
  assert.is(srv.stats.logAppends, kept.length);
  // the reply bytes are the kept buffer's bytes: same name, same bytes
  for (const x of kept) assert.equal(Buffer.from(b.pool.viewName(x.name)), x.bytes);
  assert.is(kept.map((x) => x.bytes.toString()).join(""), msgs.join(""));
  // the app drops its keeps: the log's references hold the data
  for (const x of kept) srv.release(x.name);
  assertNoLeak(pair, kept.length);
  pair.shutdown();
  // reopen the file: every record is there, by name, byte-exact
  const again = PmLog.openFile(path, { buffers: 1024 });
  assert.is(again.size, kept.length);
  for (const x of kept) assert.equal(Buffer.from(again.views(x.key)[0]), x.bytes);
  assert.is(again.pool.check().kept, kept.length);
  again.pool.close();
});

test("close, abort and a refused connect", () => {
  const pair = MemoryPair.create({ buffers: 1024 });
  const srv = new PasteServer(pair.b, (b) => {
    for (const c of b.chunks) {
      const text = Buffer.from(c.view).toString();
      if (text === "abort") b.abort(c.conn);
      else {
        b.reply(c.conn, `bye ${text}`);
        b.close(c.conn);
      }
    }
  });
  srv.listen(5);
  const res = new Map();
  const tags = {};
  const cli = new PasteServer(pair.a, (b) => {
    for (const c of b.connected) {
      const what = c.tag === tags.abort ? "abort" : "close";
      res.set(c.conn, { what, got: "", ended: false });
      b.reply(c.conn, what);
    }
    for (const c of b.chunks) res.get(c.conn).got += Buffer.from(c.view).toString();
    for (const conn of b.ended) {
      res.get(conn).ended = true;
      b.close(conn);
    }
    for (const c of b.closed) {
      if (c.tag === tags.refused) res.set("refused", c);
      else Object.assign(res.get(c.conn), { closed: true, reset: c.reset, reason: c.reason });
    }
  });
  tags.close = cli.connect("198.18.0.2", 5);
  tags.abort = cli.connect("198.18.0.2", 5);
  tags.refused = cli.connect("198.18.0.2", 6);
  assert.ok(pair.runUntil(() => res.has("refused") && [...res.values()].filter((r) => r.closed).length === 2));
  const byWhat = Object.fromEntries([...res.entries()].map(([k, v]) => [v.what ?? k, v]));
  assert.is(byWhat.close.got, "bye close");
  assert.is(byWhat.close.ended, true);
  assert.is(byWhat.close.reset, false);
  assert.is(byWhat.abort.got, "");
  assert.is(byWhat.abort.reset, true);
  assert.is(byWhat.abort.reason, TCP_REASONS.RESET, "reset by the peer");
  assert.is(byWhat.refused.reset, true);
  assert.is(byWhat.refused.reason, TCP_REASONS.REFUSED, "refused");
  assertNoLeak(pair);
  pair.shutdown();
});

test("backpressure: a 2 MiB reply through a 64 KiB send queue is refused, queued, resent on WRITABLE, byte-exact", () => {
  const pair = MemoryPair.create({ buffers: 4096, b: { sndBuf: 65536 } });
  const big = seeded(2 << 20, 9);
  let writable = 0;
  const srv = new PasteServer(pair.b, (b) => {
    writable += b.writable.length;
    for (const c of b.accepted) {
      b.reply(c.conn, big); // all at once: the core takes 64 KiB, the rest waits in the host
      b.close(c.conn); // the FIN waits for every queued byte
    }
  });
  srv.listen(9);
  const got = [];
  let closed = false;
  const cli = new PasteServer(pair.a, (b) => {
    for (const c of b.chunks) got.push(Buffer.from(c.view));
    for (const conn of b.ended) b.close(conn);
    if (b.closed.length) closed = true;
  });
  cli.connect("198.18.0.2", 9);
  assert.ok(pair.runUntil(() => closed));
  assert.is(sha(Buffer.concat(got)), sha(big));
  assert.ok(srv.stats.sendRefused > 0, `refused ${srv.stats.sendRefused}`);
  assert.ok(writable > 0, "the batch reported the connection writable again");
  assertNoLeak(pair);
  pair.shutdown();
});

test("zero-copy echo from kept buffers released at once, through a small send queue (refused and resent by name), byte-exact", () => {
  const pair = MemoryPair.create({ buffers: 4096, b: { sndBuf: 16384 } });
  const srv = new PasteServer(pair.b, (b) => {
    for (const c of b.chunks) {
      const name = b.keep(c);
      b.reply(c.conn, name); // the send queue holds a reference until TCP took its own
      srv.release(name); // so the app may let go at once, even if the core refuses the send
    }
    for (const conn of b.ended) b.close(conn);
  });
  srv.listen(7);
  const data = seeded(1 << 20, 17);
  const { all } = streamClient(pair, 7, data, 2);
  assert.ok(pair.runUntil(() => all().every((s) => s.closed)));
  for (const s of all()) assert.is(sha(Buffer.concat(s.got)), sha(data));
  assert.ok(srv.stats.sendRefused > 0, "kept buffers were refused and sent again");
  assert.is(srv.stats.replyCopiedBytes, 0);
  assert.is(srv.stats.zeroCopyBytes, 2 * data.length);
  assertNoLeak(pair);
  pair.shutdown();
});

test("a reply that does not fit the pool throws PoolExhaustedError and sends nothing", () => {
  const pair = MemoryPair.create({ buffers: 256 });
  let err = null;
  let counts = null;
  const srv = new PasteServer(pair.b, (b) => {
    for (const c of b.accepted) {
      const before = pair.b.stack.pool.counts().free;
      try {
        b.reply(c.conn, new Uint8Array(1400 * 300));
      } catch (e) {
        err = e;
      }
      counts = { before, after: pair.b.stack.pool.counts().free };
      b.reply(c.conn, "small");
      b.close(c.conn);
    }
  });
  srv.listen(9);
  let got = "";
  let closed = false;
  const cli = new PasteServer(pair.a, (b) => {
    for (const c of b.chunks) got += Buffer.from(c.view).toString();
    for (const conn of b.ended) b.close(conn);
    if (b.closed.length) closed = true;
  });
  cli.connect("198.18.0.2", 9);
  assert.ok(pair.runUntil(() => closed));
  assert.instance(err, PoolExhaustedError);
  assert.is(err.code, "ENOBUFS");
  assert.is(counts.after, counts.before, "the buffers it took were given back");
  assert.is(got, "small");
  assertNoLeak(pair);
  pair.shutdown();
});

test("pool pressure: an app that keeps everything closes the window to zero; the sender stalls with no loss, then resumes byte-exact", () => {
  const pair = MemoryPair.create({ buffers: 4096, b: { rcvBuf: 65536, pool: { buffers: 1024 } } });
  const b = pair.b.stack;
  const data = seeded(4 << 20, 5);
  const h = createHash("sha256");
  let got = 0;
  let holding = true;
  const kept = [];
  const srv = new PasteServer(pair.b, (batch) => {
    for (const c of batch.chunks) {
      h.update(c.view);
      got += c.name.length;
      if (holding) kept.push(batch.keep(c));
    }
    for (const conn of batch.ended) batch.close(conn);
  });
  srv.listen(9);
  assert.is(srv.pressure.low, 128, "default low water: one 64 KiB window + 64, at least 1/8 of the pool");
  const { all } = streamClient(pair, 9, data, 1);
  const conn = () => all()[0].conn;
  // the sender fills what the window allows, then sees a zero window and stops
  assert.ok(
    pair.runUntil(() => srv.pressure.on && conn() >= 0 && pair.a.stack.connection(conn()).sndWnd === 0),
    "the sender sees a zero window",
  );
  const stalledAt = got;
  const counts = b.pool.counts();
  assert.ok(counts.free > 0 && counts.free < srv.pressure.low, `nearly exhausted: ${JSON.stringify(counts)}`);
  assert.is(counts.kept, kept.length);
  assert.ok(srv.withheld > 0, "the app's consumption is withheld from TCP");
  // a long stall (zero-window probes go back and forth): nothing more arrives, nothing dropped
  pair.runUntil(() => false, 20_000);
  assert.is(got, stalledAt, "no byte arrives through a zero window");
  assert.ok(pair.a.stack.connection(conn()).sndQueued > 0, "the sender still holds its data");
  assert.is(b.port.stats.rxDropNoBuffer, 0, "no frame dropped for want of a buffer");
  assert.is(b.port.stats.rxDropRingFull, 0);
  assert.is(b.stats().BUF_EXHAUSTED, 0);
  assert.is(b.stats().APPOUT_FULL, 0);
  assert.ok(pair.a.stack.stats().TCP_ZWP > 0, "the sender probed the zero window");
  // the app gives its buffers back: the window reopens and the stream completes
  holding = false;
  for (const n of kept.splice(0)) srv.release(n);
  assert.ok(
    pair.runUntil(() => all()[0].closed, 300_000),
    "the transfer completes",
  );
  assert.is(got, data.length);
  assert.is(h.digest("hex"), sha(data), "byte-exact after the stall");
  assert.is(b.port.stats.rxDropNoBuffer, 0);
  assert.is(srv.stats.pressureEntered >= 1, true);
  assert.is(srv.pressure.on, false);
  assertNoLeak(pair);
  pair.shutdown();
});

test("many connections: 200 request/response exchanges in parallel, each its own answer", () => {
  const pair = MemoryPair.create({ buffers: 4096, a: { maxConnections: 256 }, b: { maxConnections: 256 } });
  let batches = 0;
  let maxChunksPerBatch = 0;
  const srv = new PasteServer(pair.b, (b) => {
    batches++;
    maxChunksPerBatch = Math.max(maxChunksPerBatch, b.chunks.length);
    for (const c of b.chunks) {
      const req = Buffer.from(c.view).toString();
      b.reply(c.conn, `RESP ${req.slice(4)}`);
      b.close(c.conn);
    }
  });
  srv.listen(8080, 256);
  const N = 200;
  const answers = new Map();
  const tagOf = new Map();
  const cli = new PasteServer(pair.a, (b) => {
    for (const c of b.connected) {
      tagOf.set(c.conn, c.tag);
      b.reply(c.conn, `REQ ${c.tag}`);
    }
    for (const c of b.chunks) answers.set(tagOf.get(c.conn), Buffer.from(c.view).toString());
    for (const conn of b.ended) b.close(conn);
  });
  const tags = [];
  for (let k = 0; k < N; k++) tags.push(cli.connect("198.18.0.2", 8080));
  assert.ok(pair.runUntil(() => answers.size === N && pair.b.stack.connectionIds.size === 0));
  for (const t of tags) assert.is(answers.get(t), `RESP ${t}`);
  assert.ok(maxChunksPerBatch > 1, `one batch carried several connections' data (max ${maxChunksPerBatch})`);
  assertNoLeak(pair);
  pair.shutdown();
});

test("bad use is refused clearly", () => {
  const pair = MemoryPair.create({ buffers: 256 });
  let err1 = null;
  let err2 = null;
  const srv = new PasteServer(pair.b, (b) => {
    for (const c of b.chunks) {
      try {
        b.reply(c.conn, c.name); // not kept: replying by name needs batch.keep first
      } catch (e) {
        err1 = e;
      }
      try {
        b.append("k", [c]); // no log configured
      } catch (e) {
        err2 = e;
      }
      b.close(c.conn);
    }
  });
  srv.listen(1);
  let closed = false;
  const cli = new PasteServer(pair.a, (b) => {
    for (const c of b.connected) b.reply(c.conn, "x");
    for (const conn of b.ended) b.close(conn);
    if (b.closed.length) closed = true;
  });
  cli.connect("198.18.0.2", 1);
  assert.ok(pair.runUntil(() => closed));
  assert.instance(err1, TypeError);
  assert.match(err1.message, /kept buffer/);
  assert.instance(err2, TypeError);
  assert.throws(() => new PasteServer(pair.b, () => {}), /already runs an app layer/);
  assertNoLeak(pair);
  pair.shutdown();
});

test.run();

// A turn's output to many connections can outgrow the core's TX ring. TCP output must pause
// (TX_STALL) and go on at the next poll once the host drained the ring, never build frames the
// ring then drops (which only retransmission timeouts would repair).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { Stack, MemoryLink } from "../build/index.js";

test("40 connections sending at once through a 128-slot TX ring: paused, not dropped", () => {
  const a = Stack.create({ mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24", pool: { buffers: 8192 } });
  const b = Stack.create({
    mac: "02:00:00:00:00:0b",
    ip: "198.18.0.2/24",
    pool: { buffers: 8192 },
    rings: { tx: 7 },
  });
  const link = new MemoryLink(a.port, b.port);
  a.listen(80);
  const N = 40;
  const PER = 16 * 1400;
  const conns = [];
  const got = new Map();
  const want = new Map();
  let connected = 0;
  let opened = false;
  let nextDeadline = 0;
  for (let now = 0; now < 30_000; now += 1) {
    a.poll(now);
    nextDeadline = b.poll(now);
    link.step(now);
    a.drainEvents((ev) => {
      if (ev.type === "DATA") {
        const h = got.get(ev.conn) ?? createHash("sha256");
        h.update(a.pool.view(ev.buf, ev.off, ev.len));
        got.set(ev.conn, h);
        a.pool.free(ev.buf);
        a.recvd(ev.conn, ev.len);
      }
    });
    b.drainEvents((ev) => {
      if (ev.type === "CONNECTED") {
        conns.push(ev.conn);
        connected++;
      }
      if (ev.type === "DATA") b.pool.free(ev.buf);
    });
    // one connection first (ARP resolves), then the rest: SYNs waiting for ARP overflow its queue
    if (now === 0) b.connect("198.18.0.1", 80);
    if (connected === 1 && conns.length === 1 && !opened) {
      opened = true;
      for (let k = 1; k < N; k++) b.connect("198.18.0.1", 80);
    }
    if (connected === N) {
      connected++; // once: every connection queues PER bytes in this same turn
      for (const [k, c] of conns.entries()) {
        const h = createHash("sha256");
        for (let at = 0; at < PER; at += 1400) {
          const i = b.pool.alloc();
          const v = b.pool.view(i, 128, 1400);
          v.fill((k * 31 + at / 1400) & 0xff);
          h.update(v);
          b.send(c, { index: i, offset: 128, length: 1400 });
        }
        want.set(k, h.digest("hex"));
      }
    }
    if (got.size === N && b.connections().every((c) => c.sndQueued === 0 && c.inFlight === 0)) break;
  }
  const st = b.stats();
  assert.ok(st.TX_STALL > 0, "output paused on the full ring");
  assert.is(st.TCP_RTO, 0, "no retransmission timeout: nothing was dropped");
  assert.is(st.TX_RING_FULL, 0, "no data frame was built for a full ring");
  assert.is(got.size, N);
  const digests = [...got.values()].map((h) => h.digest("hex")).sort();
  assert.equal(digests, [...want.values()].sort(), "every stream byte-exact");
  assert.ok(nextDeadline >= 0);
  a.pool.check();
  b.pool.check();
  a.shutdown();
  b.shutdown();
});

test.run();

// A segment is built from at most MAXP (64) buffer pieces. A send queue of many tiny buffers
// (e.g. an app writing 10-byte replies from separate buffers) must go out as several segments,
// each within the limit, in order; before the fix such a segment was never sent and the
// connection stalled for good. Also after a loss: retransmissions obey the same limit.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Stack, MemoryLink } from "../build/index.js";

function run(pieces, size, faults) {
  const a = Stack.create({ mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24", pool: { buffers: 4096 } });
  const b = Stack.create({ mac: "02:00:00:00:00:0b", ip: "198.18.0.2/24", pool: { buffers: 4096 } });
  const link = new MemoryLink(a.port, b.port, faults);
  a.listen(80);
  let conn = -1;
  let sent = false;
  const got = [];
  for (let now = 0; now < 20_000; now += 1) {
    a.poll(now);
    b.poll(now);
    link.step(now);
    a.drainEvents((ev) => {
      if (ev.type === "DATA") {
        got.push(...a.pool.view(ev.buf, ev.off, ev.len));
        a.pool.free(ev.buf);
        a.recvd(ev.conn, ev.len);
      }
    });
    b.drainEvents((ev) => {
      if (ev.type === "CONNECTED") conn = ev.conn;
      if (ev.type === "DATA") b.pool.free(ev.buf);
    });
    if (now === 0) b.connect("198.18.0.1", 80);
    if (conn >= 0 && !sent) {
      sent = true;
      for (let k = 0; k < pieces; k++) {
        const i = b.pool.alloc();
        b.pool.view(i, 128, size).fill(k & 0xff);
        b.send(conn, { index: i, offset: 128, length: size });
      }
    }
    if (got.length === pieces * size) break;
  }
  const stats = b.stats();
  const out = { got, stats, a, b };
  return out;
}

for (const [pieces, size] of [
  [70, 10],
  [300, 1],
  [1000, 7],
]) {
  test(`${pieces} sends of ${size} B from separate buffers all arrive, in order`, () => {
    const { got, a, b } = run(pieces, size);
    assert.is(got.length, pieces * size);
    for (let k = 0; k < pieces; k++) assert.is(got[k * size], k & 0xff, `piece ${k}`);
    a.pool.check();
    b.pool.check();
    a.shutdown();
    b.shutdown();
  });
}

test("with 10% loss: retransmissions of many-piece data arrive byte-exact", () => {
  const { got, stats, a, b } = run(500, 3, { ab: { drop: 0.1, seed: 7 }, ba: { drop: 0.1, seed: 8 } });
  assert.is(got.length, 1500);
  for (let k = 0; k < 500; k++) assert.is(got[k * 3], k & 0xff, `piece ${k}`);
  assert.ok(stats.TCP_RETRANSMITS > 0, "losses were repaired by retransmission");
  a.pool.check();
  b.pool.check();
  a.shutdown();
  b.shutdown();
});

test.run();

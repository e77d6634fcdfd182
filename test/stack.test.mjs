// The host's Stack over the core: configuration, commands, events, counters and the
// connection table, with two stacks joined by the in-memory link (optionally faulty).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdirSync, readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { Stack, MemoryLink, STACK_COUNTERS, TCP_STATES, TCP_INFO, TCP_REASONS } from "../build/index.js";
import { rng } from "./lib/rng.mjs";

const src = (f) => readFileSync(new URL(`../assembly/${f}`, import.meta.url), "utf8");
/** Every .ts file under assembly/tcp/, joined (the TCP core may be split across files). */
function tcpSources() {
  const files = readdirSync(new URL("../assembly/tcp/", import.meta.url), { recursive: true })
    .filter((f) => f.endsWith(".ts"))
    .sort();
  assert.ok(files.length > 0, "assembly/tcp/ holds .ts files");
  return files.map((f) => src(`tcp/${f}`)).join("\n");
}
/** `export const PREFIX_NAME: u32 = N;` of the core as [NAME, N] pairs; at least one. */
function coreConsts(text, prefix) {
  const found = [...text.matchAll(new RegExp(`export const ${prefix}_(\\w+): u32 = (\\d+);`, "g"))];
  assert.ok(found.length > 0, `the core defines ${prefix}_* constants`);
  return found.map((m) => [m[1], +m[2]]);
}
/** The core's SND_WND is the host's sndWnd. */
const camel = (name) => name.toLowerCase().replace(/_([a-z])/g, (_, c) => c.toUpperCase());

test("host/stack-abi.ts mirrors the core's counters, states, events, commands, tcpInfo fields and reasons", () => {
  const g = src("net/g.ts");
  const counters = [...g.matchAll(/export const C_(\w+) = (\d+);/g)].filter((m) => m[1] !== "COUNT");
  assert.ok(counters.length >= 60);
  for (const [, name, i] of counters) assert.is(STACK_COUNTERS[+i], name, `counter ${i}`);
  const states = [...src("tcp/tcb.ts").matchAll(/export const ST_(\w+): u32 = (\d+);/g)];
  for (const [, name, i] of states) assert.is(TCP_STATES[+i], name);
  const stack = src("stack.ts");
  const abi = readFileSync(new URL("../host/stack-abi.ts", import.meta.url), "utf8");
  for (const [, name, v] of stack.matchAll(/export const CMD_(\w+): u32 = (\d+);/g))
    assert.ok(new RegExp(`\\b${name}: ${v},`).test(abi), `CMD ${name} = ${v}`);
  for (const [, name, v] of g.matchAll(/export const EV_(\w+): u32 = (\d+);/g))
    assert.ok(new RegExp(`\\b${name}: ${v},`).test(abi), `EV ${name} = ${v}`);
  for (const [, name, v] of g.matchAll(/export const CFG_(\w+): u32 = (\d+);/g))
    if (name !== "SIZE") assert.ok(new RegExp(`\\b${name}: ${v},`).test(abi), `CFG ${name} = ${v}`);
  // tcpInfo fields and event reasons, both ways: every constant of the core named on the host,
  // nothing on the host the core lacks
  const tcp = tcpSources();
  const info = coreConsts(tcp, "INFO");
  for (const [name, v] of info) assert.is(TCP_INFO[camel(name)], v, `INFO_${name} = ${v}`);
  assert.equal(Object.keys(TCP_INFO).sort(), info.map(([name]) => camel(name)).sort(), "INFO has no extra field");
  const reasons = coreConsts(tcp, "R");
  for (const [name, v] of reasons) assert.is(TCP_REASONS[name], v, `R_${name} = ${v}`);
  assert.equal(Object.keys(TCP_REASONS).sort(), reasons.map(([name]) => name).sort(), "R has no extra reason");
});

function pair(faults = {}, cfg = {}) {
  const a = Stack.create({ mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24", pool: { buffers: 4096 }, ...cfg });
  const b = Stack.create({ mac: "02:00:00:00:00:0b", ip: "198.18.0.2/24", pool: { buffers: 4096 }, ...cfg });
  const link = new MemoryLink(a.port, b.port, faults);
  return { a, b, link };
}

/** Runs both stacks and the link on a simulated clock (from `start`) until `done()` or the time limit; returns the time. */
function run({ a, b, link }, handlers, done, limitMs = 60_000, start = 0) {
  let now = start;
  while (now < limitMs) {
    const da = a.poll(now);
    const db = b.poll(now);
    const moved = link.step(now);
    a.drainEvents(handlers.a);
    b.drainEvents(handlers.b);
    if (done()) return now;
    const next = Math.min(da, db, link.nextDeadline());
    if (moved === 0 && next > now) now = Math.min(next, now + 50);
    else if (moved === 0) now += 0.01;
  }
  return now;
}

function transfer(faults, bytes, seed) {
  const s = pair(faults);
  const { a, b } = s;
  const r = rng(seed);
  const data = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i++) data[i] = r.int(256);
  const got = createHash("sha256");
  let received = 0;
  let sent = 0;
  let conn = -1;
  let server = -1;
  let closed = 0;
  let refused = [];
  const sendMore = () => {
    // refill: whole chunks of up to 1400 bytes at offset 128 (headroom for headers)
    while (sent < bytes && refused.length === 0) {
      const n = Math.min(1400, bytes - sent);
      let i;
      try {
        i = b.pool.alloc();
      } catch {
        return;
      }
      b.pool.view(i, 128, n).set(data.subarray(sent, sent + n));
      b.send(conn, { index: i, offset: 128, length: n });
      sent += n;
      if (sent === bytes) b.close(conn);
      break; // one per event turn keeps APP-IN small; the loop calls again
    }
  };
  a.listen(80);
  const handlers = {
    a: (ev) => {
      if (ev.type === "ACCEPTED") server = ev.conn;
      else if (ev.type === "DATA") {
        got.update(a.pool.view(ev.buf, ev.off, ev.len));
        received += ev.len;
        a.pool.free(ev.buf);
        a.recvd(ev.conn, ev.len);
      } else if (ev.type === "PEER_CLOSED") a.close(ev.conn);
      else if (ev.type === "CLOSED") closed++;
    },
    b: (ev) => {
      if (ev.type === "LISTENING" || ev.type === "UDP_BOUND") return;
      if (ev.type === "CONNECTED") conn = ev.conn;
      else if (ev.type === "SEND_REFUSED") refused.push({ index: ev.buf, offset: ev.off, length: ev.len });
      else if (ev.type === "WRITABLE") {
        const again = refused;
        refused = [];
        for (const n of again) b.send(conn, n);
      } else if (ev.type === "CLOSED") closed++;
      else if (ev.type === "DATA") b.pool.free(ev.buf);
    },
  };
  b.connect("198.18.0.1", 80);
  const t = run(
    s,
    {
      a: handlers.a,
      b: (ev) => {
        handlers.b(ev);
      },
    },
    () => {
      if (conn >= 0) for (let k = 0; k < 8; k++) sendMore();
      return closed >= 2 && received === bytes;
    },
    600_000,
  );
  return { s, received, digest: got.digest("hex"), want: createHash("sha256").update(data).digest("hex"), t, server };
}

test("connectionIds follows opens and closes as a set: size, has, iteration; blocks reused under new ids", () => {
  const s = pair({}, { mslMs: 1 });
  const { a, b } = s;
  a.listen(80, { backlog: 64 });
  const live = { a: new Set(), b: new Set() };
  const seen = new Set();
  const on = (side, st) => (ev) => {
    if (ev.type === "ACCEPTED" || ev.type === "CONNECTED") {
      live[side].add(ev.conn);
      if (side === "b") seen.add(ev.conn);
    } else if (ev.type === "CLOSED" || ev.type === "RESET") live[side].delete(ev.conn);
    else if (ev.type === "PEER_CLOSED") st.close(ev.conn);
  };
  const h = { a: on("a", a), b: on("b", b) };
  const same = (st, want) => {
    const ids = st.connectionIds;
    assert.is(ids.size, want.size);
    assert.equal(new Set(ids), want, "iteration gives the live ids");
    for (const id of want) assert.ok(ids.has(id));
    let n = 0;
    ids.forEach((v, k) => (n += v === k && want.has(v) ? 1 : 0));
    assert.is(n, want.size);
  };
  // one clock across the steps (a stack's time never goes back)
  let clock = 0;
  const go = (cond) => {
    clock = run(s, h, cond, clock + 60_000, clock);
    assert.ok(cond(), `reached by ${clock} ms`);
  };
  for (let k = 0; k < 40; k++) b.connect("198.18.0.1", 80);
  go(() => live.a.size === 40 && live.b.size === 40);
  same(a, live.a);
  same(b, live.b);
  // close every other connection from b's side, then open 20 more in the freed blocks
  const closing = [...live.b].filter((_, i) => i % 2 === 0);
  for (const id of closing) b.close(id);
  go(() => live.a.size === 20 && live.b.size === 20);
  same(a, live.a);
  same(b, live.b);
  for (const id of closing) assert.not.ok(b.connectionIds.has(id), "a closed id is gone");
  for (let k = 0; k < 20; k++) b.connect("198.18.0.1", 80);
  go(() => live.a.size === 40 && live.b.size === 40);
  same(a, live.a);
  same(b, live.b);
  assert.is(seen.size, 60, "every connection got an id of its own");
  for (const id of live.b) b.close(id);
  go(() => live.a.size === 0 && live.b.size === 0);
  assert.is(a.connectionIds.size + b.connectionIds.size, 0);
  assert.equal([...b.connectionIds], []);
  a.shutdown();
  b.shutdown();
});

test("a clock that goes back is held at its last time: no timestamp check fails, no ACK war", () => {
  const s = pair({}, { mslMs: 1 });
  const { a, b, link } = s;
  a.listen(80, { backlog: 8 });
  const live = { a: new Set(), b: new Set() };
  const on = (side, st) => (ev) => {
    if (ev.type === "ACCEPTED" || ev.type === "CONNECTED") live[side].add(ev.conn);
    else if (ev.type === "CLOSED" || ev.type === "RESET") live[side].delete(ev.conn);
    else if (ev.type === "PEER_CLOSED") st.close(ev.conn);
  };
  const h = { a: on("a", a), b: on("b", b) };
  for (let k = 0; k < 4; k++) b.connect("198.18.0.1", 80);
  // connected and talking at 5 s on the host's clock
  run(s, h, () => live.a.size === 4 && live.b.size === 4, 65_000, 5000);
  assert.is(live.a.size + live.b.size, 8);
  for (const id of live.b) b.close(id);
  // then the host's clock restarts at 0 and, as a simulated clock does, stands still while
  // frames move (bounded here: an ACK war would never end)
  let turns = 0;
  for (let now = 0; turns < 10_000 && (live.a.size || live.b.size); turns++) {
    a.poll(now);
    b.poll(now);
    const moved = link.step(now);
    a.drainEvents(h.a);
    b.drainEvents(h.b);
    if (moved === 0) now += 1;
  }
  assert.is(live.a.size + live.b.size, 0, `every connection closed (${turns} turns)`);
  assert.is(a.stats().TCP_PAWS_DROP + b.stats().TCP_PAWS_DROP, 0);
  a.shutdown();
  b.shutdown();
});

test("a TCP transfer between two stacks over the in-memory link, byte-exact", () => {
  const r = transfer({}, 2_000_000, 1);
  assert.is(r.received, 2_000_000);
  assert.is(r.digest, r.want);
  const { a, b } = r.s;
  const sa = a.stats();
  assert.ok(sa.TCP_IN > 1000 && sa.TCP_OUT > 100, JSON.stringify({ in: sa.TCP_IN, out: sa.TCP_OUT }));
  assert.is(sa.TCP_BAD_CSUM, 0);
  assert.is(a.connectionIds.size, 0, "closed connections leave the table");
  for (const st of [a, b]) {
    const c = st.pool.check();
    assert.is(c.app + c.kept, 0, "no buffer lent to the app is left");
    st.shutdown();
  }
});

test("the same transfer through 2% loss, 1% duplication, 5% reordering, 0.1% corruption", () => {
  const f = { drop: 0.02, duplicate: 0.01, reorder: 0.05, reorderMs: 3, corrupt: 0.001, delayMs: 1 };
  const r = transfer({ ab: { ...f, seed: 5 }, ba: { ...f, seed: 6 } }, 1_000_000, 2);
  assert.is(r.received, 1_000_000);
  assert.is(r.digest, r.want);
  const sb = r.s.b.stats();
  assert.ok(sb.TCP_RETRANSMITS > 0, "losses were repaired by retransmission");
  const w = [r.s.link.ab.stats, r.s.link.ba.stats];
  assert.ok(w[0].dropped + w[1].dropped > 10 && w[0].reordered + w[1].reordered > 20, JSON.stringify(w));
  assert.ok(w[0].corrupted + w[1].corrupted > 0, "some frames were corrupted on the wire");
  for (const st of [r.s.a, r.s.b]) st.pool.check();
});

test("connection table and bad arguments", () => {
  const s = pair();
  const { a, b } = s;
  a.listen(7);
  b.connect("198.18.0.1", 7);
  let ids = [];
  run(s, { a: (ev) => ev.type === "ACCEPTED" && ids.push(ev.conn), b: () => {} }, () => ids.length === 1, 5000);
  const t = a.connections();
  assert.is(t.length, 1);
  assert.is(t[0].state, "ESTABLISHED");
  assert.ok(t[0].mss >= 1400 && t[0].cwnd > 0, JSON.stringify(t[0]));
  assert.throws(() => a.listen(70000), /port/);
  assert.throws(() => b.connect("1.2.3", 80), /IPv4/);
  assert.throws(() => Stack.create({ mac: "zz", pool: { buffers: 8 } }), /MAC/);
  for (const steerPorts of [
    { queue: 2, queues: 2 },
    { queue: -1, queues: 2 },
    { queue: 0, queues: 0 },
    { queue: 0.5, queues: 2 },
  ])
    assert.throws(() => Stack.create({ mac: "02:00:00:00:00:0c", pool: { buffers: 8 }, steerPorts }), /steerPorts/);
  const st = Stack.create({ mac: "02:00:00:00:00:0c", pool: { buffers: 8 }, steerPorts: { queue: 3, queues: 4 } });
  assert.is(st.config("STEER"), (4 << 16) | 3, "the core reads queues << 16 | queue");
  st.shutdown();
  assert.throws(() => b.send(t[0].id, { index: 99999, offset: 0, length: 1 }), /not in this pool/);
});

test.run();

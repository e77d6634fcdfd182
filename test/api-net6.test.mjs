// Dual stack over two in-process stacks (MemoryPair): each has 198.18.0.x and 2001:2:0:1::x.
// A Node-style server listening on "::" accepts an IPv6 and an IPv4 client, round-trips data
// both ways byte-exact, and every socket reports its addresses and families as node:net does;
// listen hosts ("0.0.0.0", one of our addresses, one that is not ours) do what they say;
// Stack-level: ip6Addresses (link-local from the MAC, DAD done), connection() endpoints,
// ACCEPTED's addr/family, a UDP datagram each way over IPv6, the PASTE batch's remoteFamily.
// Skipped (with a warning) while the core has no IPv6.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { MemoryPair, PasteServer, Stack, createMemoryNet, instantiateCore } from "../build/index.js";
import { seeded } from "./lib/kernel-peer.mjs";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc");
const sha = (b) => createHash("sha256").update(b).digest("hex");
const tick = () => new Promise((r) => setTimeout(r, 5));

const why = typeof instantiateCore().exports.stackIp6Addr === "function" ? null : "the core has no IPv6 yet";
if (why) console.warn(`\n!!! api-net6: SKIPPED: ${why}\n`);
const it = why ? test.skip : test;

const A6 = "2001:2:0:1::1";
const B6 = "2001:2:0:1::2";

/** Two stacks with both families; returns once duplicate address detection is over on both. */
function pair(opts = {}) {
  const p = MemoryPair.create({
    buffers: 4096,
    ...opts,
    a: { ip6: `${A6}/64`, ...opts.a },
    b: { ip6: `${B6}/64`, ...opts.b },
  });
  const ready = (s) => s.ip6Addresses().length === 2 && s.ip6Addresses().every((x) => x.state === "preferred");
  assert.ok(
    p.runUntil(() => ready(p.a.stack) && ready(p.b.stack), 30_000),
    JSON.stringify([p.a.stack.ip6Addresses(), p.b.stack.ip6Addresses()]),
  );
  return p;
}

async function assertNoLeak(p, nets) {
  const quiet = (st) => st.connectionIds.size === 0 && st.pool.counts().nic === 0 && st.pool.counts().stack === 0;
  for (let k = 0; k < 4000 && !(quiet(p.a.stack) && quiet(p.b.stack)); k++) await tick();
  for (let k = 0; k < 50; k++) {
    gc();
    await tick();
    if (nets.every((n) => n.stats.viewsFinalized === n.stats.viewChunks)) break;
  }
  for (const n of nets) n.close();
  for (const side of ["a", "b"]) {
    const c = p[side].stack.pool.check();
    assert.is(c.free, c.total, `${side}: ${JSON.stringify(c)}`);
  }
  p.shutdown();
}

function readAll(stream) {
  return new Promise((resolve, reject) => {
    const parts = [];
    stream.on("data", (d) => parts.push(Buffer.from(d)));
    stream.on("end", () => resolve(Buffer.concat(parts)));
    stream.on("error", reject);
    stream.resume();
  });
}

it("our IPv6 addresses: the link-local one from the MAC and the configured one, DAD done", () => {
  const p = pair();
  assert.equal(p.a.stack.ip6Addresses(), [
    { address: "fe80::ff:fe00:a", scope: "link", prefix: 64, state: "preferred" },
    { address: A6, scope: "global", prefix: 64, state: "preferred" },
  ]);
  assert.is(p.b.stack.ip6Addresses()[0].address, "fe80::ff:fe00:b");
  // the configuration block holds the address and prefix where the ABI says
  const core = p.a.stack.pool.core;
  const cfg = core.exports.stackConfig();
  const u8 = new Uint8Array(core.memory.buffer, cfg, 256);
  assert.is(Buffer.from(u8.subarray(160, 176)).toString("hex"), "20010002000000010000000000000001");
  assert.is(new DataView(core.memory.buffer, cfg, 256).getUint32(176, true), 64);
  assert.is(Buffer.from(u8.subarray(180, 196)).toString("hex"), "0".repeat(32), "no gw6: zero");
  p.shutdown();
  // gw6, the prefix, and options that are not an address to configure
  const s = Stack.create({
    mac: "02:00:00:00:00:0c",
    ip: "198.18.0.3/24",
    ip6: "2001:2:0:2::3/56",
    gw6: "fe80::1",
    pool: { buffers: 1024 },
  });
  const c2 = s.pool.core;
  const b2 = new Uint8Array(c2.memory.buffer, c2.exports.stackConfig(), 256);
  assert.is(Buffer.from(b2.subarray(180, 196)).toString("hex"), "fe800000000000000000000000000001");
  assert.is(new DataView(c2.memory.buffer, c2.exports.stackConfig(), 256).getUint32(176, true), 56);
  assert.equal(s.ip6.prefix, 56);
  s.shutdown();
  const bad = [
    [{ ip6: "fe80::2/64" }, TypeError, /not a unicast address to configure/],
    [{ ip6: "::ffff:198.18.0.3/120" }, TypeError, /not a unicast address to configure/],
    [{ ip6: "ff02::1/64" }, TypeError, /not a unicast address to configure/],
    [{ ip6: "2001:2::3/0" }, RangeError, /prefix length must be 1\.\.128/],
    [{ ip6: "198.18.0.3/24" }, TypeError, /an IPv6 ADDR\/LEN expected/],
    [{ ip6: "2001:2::3/64", gw6: "ff02::2" }, TypeError, /gw6 ff02::2 is not a unicast IPv6 address/],
    [{ ip6: "2001:2::3/64", gw6: "2001:2::g" }, TypeError, /bad group "g"/],
  ];
  for (const [o, type, re] of bad) {
    let err = null;
    try {
      Stack.create({ mac: "02:00:00:00:00:0d", ip: "198.18.0.4/24", pool: { buffers: 1024 }, ...o }).shutdown();
    } catch (e) {
      err = e;
    }
    assert.instance(err, type, JSON.stringify(o));
    assert.match(err.message, re, JSON.stringify(o));
  }
});

it('a server on "::" takes an IPv6 and an IPv4 client: 256 KiB each way byte-exact, addresses and families as node:net', async () => {
  const p = pair();
  const { a, b } = createMemoryNet(p);
  const seen = [];
  const srv = b.createServer({}, (s) => {
    seen.push({
      remoteAddress: s.remoteAddress,
      remoteFamily: s.remoteFamily,
      localAddress: s.localAddress,
      localFamily: s.localFamily,
      localPort: s.localPort,
      address: s.address(),
    });
    // echo what comes in, then 256 KiB of our own
    const parts = [];
    s.on("data", (d) => parts.push(Buffer.from(d)));
    s.on("end", () => {
      s.write(Buffer.concat(parts));
      s.end(seeded(256 << 10, 99));
    });
  });
  srv.listen(7, "::");
  await once(srv, "listening");
  assert.equal(srv.address(), { address: "::", family: "IPv6", port: 7 });
  const data = seeded(256 << 10, 5);
  const run = async (host) => {
    const c = a.connect({ host, port: 7, allowHalfOpen: true });
    await once(c, "connect");
    const ends = {
      remoteAddress: c.remoteAddress,
      remoteFamily: c.remoteFamily,
      localAddress: c.localAddress,
      localFamily: c.localFamily,
      address: c.address(),
      localPort: c.localPort,
    };
    const got = readAll(c);
    c.end(data);
    const all = await got;
    return { ends, all };
  };
  const [six, four] = await Promise.all([run(B6), run("198.18.0.2")]);
  const want = Buffer.concat([data, seeded(256 << 10, 99)]);
  assert.is(sha(six.all), sha(want), "IPv6 round trip");
  assert.is(sha(four.all), sha(want), "IPv4 round trip");
  assert.equal(
    { ...six.ends, address: undefined, localPort: undefined },
    {
      remoteAddress: B6,
      remoteFamily: "IPv6",
      localAddress: A6,
      localFamily: "IPv6",
      address: undefined,
      localPort: undefined,
    },
  );
  assert.equal(six.ends.address, { address: A6, family: "IPv6", port: six.ends.localPort });
  assert.equal(
    { ...four.ends, address: undefined, localPort: undefined },
    {
      remoteAddress: "198.18.0.2",
      remoteFamily: "IPv4",
      localAddress: "198.18.0.1",
      localFamily: "IPv4",
      address: undefined,
      localPort: undefined,
    },
  );
  const byFam = Object.fromEntries(seen.map((x) => [x.remoteFamily, x]));
  assert.equal(byFam.IPv6, {
    remoteAddress: A6,
    remoteFamily: "IPv6",
    localAddress: B6,
    localFamily: "IPv6",
    localPort: 7,
    address: { address: B6, family: "IPv6", port: 7 },
  });
  assert.equal(byFam.IPv4, {
    remoteAddress: "198.18.0.1",
    remoteFamily: "IPv4",
    localAddress: "198.18.0.2",
    localFamily: "IPv4",
    localPort: 7,
    address: { address: "198.18.0.2", family: "IPv4", port: 7 },
  });
  srv.close();
  await once(srv, "close");
  await assertNoLeak(p, [a, b]);
});

it('listen hosts: default is "::"; "0.0.0.0" takes IPv4 peers only; our IPv6 address IPv6 only; another address EADDRNOTAVAIL', async () => {
  const p = pair();
  const { a, b } = createMemoryNet(p);
  const dflt = b.createServer({}, (s) => s.end("default"));
  dflt.listen(80);
  await once(dflt, "listening");
  assert.equal(dflt.address(), { address: "::", family: "IPv6", port: 80 });
  for (const host of [B6, "198.18.0.2"]) {
    const c = a.connect({ host, port: 80 });
    assert.is((await readAll(c)).toString(), "default", host);
  }
  const v4 = b.createServer({}, (s) => s.end("v4 only"));
  v4.listen(81, "0.0.0.0");
  await once(v4, "listening");
  assert.equal(v4.address(), { address: "0.0.0.0", family: "IPv4", port: 81 });
  assert.is((await readAll(a.connect({ host: "198.18.0.2", port: 81 }))).toString(), "v4 only");
  const refused = a.connect({ host: B6, port: 81 });
  const [err] = await once(refused, "error");
  assert.is(err.code, "ECONNRESET", "an IPv6 peer of an IPv4-only server is reset");
  const v6 = b.createServer({}, (s) => s.end("v6 only"));
  v6.listen(82, B6, () => {});
  await once(v6, "listening");
  assert.equal(v6.address(), { address: B6, family: "IPv6", port: 82 });
  assert.is((await readAll(a.connect({ host: B6, port: 82 }))).toString(), "v6 only");
  const [err4] = await once(a.connect({ host: "198.18.0.2", port: 82 }), "error");
  assert.is(err4.code, "ECONNRESET");
  for (const host of ["2001:2:0:1::9", "198.18.0.9", "localhost"]) {
    const bad = b.createServer({});
    bad.listen({ port: 83, host });
    const [e] = await once(bad, "error");
    assert.is(e.code, "EADDRNOTAVAIL", host);
  }
  // a connect to bad text fails on the socket, not with a throw
  const [ebad] = await once(a.connect({ host: "2001:2::g", port: 80 }), "error");
  assert.match(ebad.message, /not an IP address|not an IPv6 address/);
  for (const s of [dflt, v4, v6]) s.close();
  await assertNoLeak(p, [a, b]);
});

it("Stack: ACCEPTED carries the IPv6 peer, connection() reports both ends, UDP over IPv6 both ways", () => {
  const p = pair();
  const A = p.a.stack;
  const B = p.b.stack;
  const evs = { a: [], b: [] };
  const keep = (side, st) => (ev) => {
    evs[side].push({ type: ev.type, conn: ev.conn, addr: ev.addr, family: ev.family, off: ev.off, aux: ev.aux });
    if (ev.type === "DATA" || ev.type === "UDP") {
      evs[side].at(-1).text = Buffer.from(st.pool.view(ev.buf, ev.off, ev.len)).toString();
      st.pool.free(ev.buf);
    }
  };
  p.a.attach({ onEvent: keep("a", A), onTurnEnd: () => {} });
  p.b.attach({ onEvent: keep("b", B), onTurnEnd: () => {} });
  B.listen(9000);
  A.connect(B6, 9000, { tag: 42 });
  assert.ok(p.runUntil(() => evs.a.some((e) => e.type === "CONNECTED") && evs.b.some((e) => e.type === "ACCEPTED")));
  const acc = evs.b.find((e) => e.type === "ACCEPTED");
  assert.equal([acc.addr, acc.family], [A6, 6]);
  const con = evs.a.find((e) => e.type === "CONNECTED");
  const ca = A.connection(con.conn);
  assert.equal(
    [ca.family, ca.localAddress, ca.remoteAddress, ca.remotePort, ca.state],
    [6, A6, B6, 9000, "ESTABLISHED"],
  );
  const cb = B.connection(acc.conn);
  assert.equal(
    [cb.family, cb.localAddress, cb.localPort, cb.remoteAddress, cb.remotePort],
    [6, B6, 9000, A6, ca.localPort],
  );
  assert.equal(
    B.connections().map((c) => c.remoteAddress),
    [A6],
  );
  // an IPv4 connection beside it
  A.connect("198.18.0.2", 9000, { tag: 43 });
  assert.ok(p.runUntil(() => evs.b.filter((e) => e.type === "ACCEPTED").length === 2));
  const acc4 = evs.b.filter((e) => e.type === "ACCEPTED")[1];
  assert.equal([acc4.addr, acc4.family], ["198.18.0.1", 4]);
  assert.equal(B.connection(acc4.conn).remoteAddress, "198.18.0.1");
  assert.is(B.connection(acc4.conn).family, 4);
  // UDP: a datagram to each family, and the answer to the source it came from
  A.udpBind(5353);
  B.udpBind(5353);
  assert.ok(p.runUntil(() => evs.a.some((e) => e.type === "UDP_BOUND") && evs.b.some((e) => e.type === "UDP_BOUND")));
  const ha = evs.a.find((e) => e.type === "UDP_BOUND").conn;
  const send = (st, h, ip, text) => {
    const i = st.pool.alloc();
    const bytes = Buffer.from(text);
    st.pool.view(i, 128, bytes.length).set(bytes);
    st.udpSend(h, ip, 5353, { index: i, offset: 128, length: bytes.length });
  };
  send(A, ha, B6, "over v6");
  send(A, ha, "198.18.0.2", "over v4");
  assert.ok(p.runUntil(() => evs.b.filter((e) => e.type === "UDP").length === 2));
  const udp = evs.b.filter((e) => e.type === "UDP").map((e) => [e.text, e.addr, e.family, e.aux]);
  assert.equal(udp.sort(), [
    ["over v4", "198.18.0.1", 4, 5353],
    ["over v6", A6, 6, 5353],
  ]);
  const hb = evs.b.find((e) => e.type === "UDP_BOUND").conn;
  send(B, hb, A6, "answer");
  assert.ok(p.runUntil(() => evs.a.some((e) => e.type === "UDP")));
  const back = evs.a.find((e) => e.type === "UDP");
  assert.equal([back.text, back.addr, back.family], ["answer", B6, 6]);
  // the link-local address works as a destination too
  A.connect(p.b.stack.ip6Addresses()[0].address, 9000, { tag: 44 });
  assert.ok(p.runUntil(() => evs.b.filter((e) => e.type === "ACCEPTED").length === 3));
  assert.is(evs.b.filter((e) => e.type === "ACCEPTED")[2].addr, "fe80::ff:fe00:a");
  p.shutdown();
});

it("PASTE batch API: accepted carries remoteAddress and remoteFamily for both families", () => {
  const p = pair();
  const got = [];
  const srv = new PasteServer(p.b, (batch) => {
    for (const x of batch.accepted) got.push([x.remoteAddress, x.remoteFamily, x.localPort]);
    for (const c of batch.chunks) batch.reply(c.conn, "ok");
    for (const c of batch.ended) batch.close(c);
  });
  srv.listen(8080);
  const cli = new PasteServer(p.a, (batch) => {
    for (const c of batch.connected) batch.reply(c.conn, "hi");
    for (const c of batch.ended) batch.close(c);
  });
  cli.connect(B6, 8080);
  cli.connect("198.18.0.2", 8080);
  assert.ok(p.runUntil(() => got.length === 2));
  assert.equal(got.sort(), [
    ["198.18.0.1", "IPv4", 8080],
    [A6, "IPv6", 8080],
  ]);
  p.shutdown();
});

test.run();

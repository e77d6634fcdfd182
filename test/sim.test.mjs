// The network simulator (createSimNet, docs/simulator.md): the same seed gives byte-identical
// pcaps and traces, another seed others; a 4 MiB transfer byte-exact through loss, reordering
// and duplication; a partition stalls a transfer and repair resumes it (TCP retransmits);
// crash keeps exactly what was persisted ("file" and "mmap" pools) or nothing ("memory"), sends
// no FIN or RST, and the restarted host answers old connections with RST; idle timers over ten
// virtual minutes; node:http and node:tls over simulated sockets; IPv6; bad options.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import tls from "node:tls";
import { dirname, join } from "node:path";
import { createSimNet, PmLog } from "../build/index.js";
import { scratchDir } from "./lib/tmp.mjs";
import { testCert } from "./lib/certs.mjs";

const sha = (b) => createHash("sha256").update(b).digest("hex");

/** Pseudo-random bytes from a seed (xorshift32), the same on every run. */
function bytes(n, seed) {
  const out = Buffer.alloc(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = s & 255;
  }
  return out;
}

/** Sends `data` to an echo server; resolves with { n, hex } of what came back, once closed. */
function echoRound(host, to, port, data) {
  return new Promise((resolve, reject) => {
    const s = host.net.connect({ host: to, port });
    const h = createHash("sha256");
    let n = 0;
    s.on("data", (d) => {
      h.update(d);
      n += d.length;
      if (n === data.length) s.end();
    });
    s.on("error", reject);
    s.on("close", () => resolve({ n, hex: h.digest("hex") }));
    s.on("connect", () => s.write(data));
  });
}

/** Calls onLine for every "\n"-terminated line. */
function lines(sock, onLine) {
  let buf = "";
  sock.setEncoding("latin1");
  sock.on("data", (d) => {
    buf += d;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

/** Three hosts, faulty links, two echo transfers, a partition, a crash and a restart. */
async function scenario(seed, pcap) {
  const sim = createSimNet({
    seed,
    pcap,
    dir: scratchDir(), // c's pool file goes there (close() removes it)
    link: { delayMs: 2, jitterMs: 1, drop: 0.02, duplicate: 0.01, reorder: 0.02, reorderMs: 4 },
  });
  const a = sim.host("a");
  const echo = (h) => h.net.createServer((s) => s.pipe(s)).listen(7);
  const b = sim.host("b", { boot: echo });
  const c = sim.host("c", { persistence: "file", boot: echo });
  sim.setTimeout(() => sim.partition([a], [c]), 40);
  sim.setTimeout(() => sim.repair(), 900);
  const [x, y] = await sim.wait(
    Promise.all([echoRound(a, b.ip, 7, bytes(150_000, 1)), echoRound(a, c.ip, 7, bytes(150_000, 2))]),
  );
  assert.is(x.hex, sha(bytes(150_000, 1)));
  assert.is(y.hex, sha(bytes(150_000, 2)));
  sim.crash(c);
  await sim.run(500);
  await sim.restart(c);
  assert.equal((await sim.wait(echoRound(a, c.ip, 7, bytes(10_000, 3)))).hex, sha(bytes(10_000, 3)));
  await sim.run(1000);
  const stats = sim.stats();
  sim.close();
  return { trace: sim.trace.join("\n"), pcap: readFileSync(pcap), stats, now: sim.now() };
}

test("the same seed gives a byte-identical pcap and trace; another seed gives others", async () => {
  const dir = scratchDir();
  const one = await scenario(42, join(dir, "one.pcap"));
  const two = await scenario(42, join(dir, "two.pcap"));
  const other = await scenario(43, join(dir, "other.pcap"));
  assert.ok(one.stats.dropped > 0 && one.stats.partitioned > 0, JSON.stringify(one.stats));
  assert.ok(one.pcap.length > 300_000, `a pcap of everything (${one.pcap.length} bytes)`);
  assert.ok(one.pcap.equals(two.pcap), "seed 42 twice: the same pcap, byte for byte");
  assert.is(one.trace, two.trace, "seed 42 twice: the same trace");
  assert.is(one.now, two.now);
  assert.match(one.trace, /c crash\n/);
  assert.match(one.trace, /c restart 198\.18\.0\.3/);
  assert.match(one.trace, /sim partition a \| c\n/);
  assert.not.ok(one.pcap.equals(other.pcap), "seed 43: another pcap");
  assert.is.not(one.trace, other.trace, "seed 43: another trace");
});

test("4 MiB byte-exact each way through loss, reordering and duplication", async () => {
  const sim = createSimNet({
    seed: 7,
    link: { delayMs: 1, jitterMs: 0.5, drop: 0.02, duplicate: 0.02, reorder: 0.03, reorderMs: 3 },
  });
  const a = sim.host("a");
  const b = sim.host("b");
  const data = bytes(4 << 20, 9);
  const got = [];
  b.net
    .createServer((s) => {
      const h = createHash("sha256");
      let n = 0;
      s.on("data", (d) => {
        h.update(d);
        n += d.length;
      });
      s.on("end", () => {
        got.push({ n, hex: h.digest("hex") });
        s.end(data); // and 4 MiB back
      });
    })
    .listen(9);
  const back = await sim.wait(
    new Promise((resolve, reject) => {
      const s = a.net.connect({ host: b.ip, port: 9 });
      const h = createHash("sha256");
      let n = 0;
      s.on("data", (d) => {
        h.update(d);
        n += d.length;
      });
      s.on("end", () => resolve({ n, hex: h.digest("hex") }));
      s.on("error", reject);
      s.end(data);
    }),
    120_000,
  );
  assert.equal(got, [{ n: data.length, hex: sha(data) }], "a to b");
  assert.equal(back, { n: data.length, hex: sha(data) }, "b to a");
  const st = sim.stats();
  assert.ok(st.dropped > 100 && st.duplicated > 100 && st.reordered > 100, JSON.stringify(st));
  assert.ok(a.stack.stats().TCP_RETRANSMITS > 0, "a retransmitted what was lost");
  sim.close();
});

test("a partition stalls a transfer, hosts outside it still talk; repair resumes it (TCP retransmits)", async () => {
  const sim = createSimNet({ seed: 5, link: { delayMs: 5, bandwidthBps: 8_000_000 } });
  const a = sim.host("a");
  const b = sim.host("b");
  const c = sim.host("c");
  for (const h of [b, c]) h.net.createServer((s) => s.pipe(s)).listen(7);
  const data = bytes(1 << 20, 4);
  const h = createHash("sha256");
  let n = 0;
  const s = a.net.connect({ host: b.ip, port: 7 });
  const closed = once(s, "close");
  s.on("data", (d) => {
    h.update(d);
    n += d.length;
    if (n === data.length) s.end();
  });
  s.write(data);
  await sim.run(300);
  assert.ok(n > 0 && n < data.length, `under way: ${n}`);
  sim.partition([a], [b]);
  const at = n;
  const rtoBefore = a.stack.stats().TCP_RTO;
  await sim.run(5000);
  assert.is(n, at, "nothing crosses the partition");
  assert.ok(a.stack.stats().TCP_RTO > rtoBefore, "a's retransmission timer fired into the partition");
  assert.ok(s.readyState === "open", "the connection survives the partition");
  const other = await sim.wait(echoRound(a, c.ip, 7, bytes(50_000, 5)), 10_000);
  assert.is(other.hex, sha(bytes(50_000, 5)), "a and c, outside the partition, still talk");
  sim.repair();
  await sim.wait(closed, 120_000);
  assert.is(n, data.length);
  assert.is(h.digest("hex"), sha(data), "the transfer finished byte-exact after repair");
  assert.match(sim.trace.join("\n"), /sim partition a \| b\n[^]*sim repair/);
  assert.ok(sim.stats().partitioned > 0);
  sim.close();
});

/** A store on a PmLog: DURABLE (commit), PENDING (appended, not committed), SCRIBBLE (in place, not persisted). */
function storeBoot(seen) {
  return (h) => {
    const log = PmLog.open(h.pool);
    const dec = (v) => new TextDecoder().decode(v);
    seen.push({
      boot: h.boots,
      formatted: log.recovery.formatted,
      keys: Object.fromEntries([...log].map((e) => [dec(e.key), dec(log.views(e.key)[0])])),
    });
    h.net
      .createServer((s) => {
        lines(s, (line) => {
          const [cmd, k, v] = line.split(" ");
          const value = new TextEncoder().encode(v);
          if (cmd === "SCRIBBLE") log.views(k)[0].set(value);
          else {
            const i = h.pool.alloc();
            h.pool.view(i, 0, value.length).set(value);
            log.append(k, [h.pool.name(i, 0, value.length)]);
            h.pool.free(i);
            if (cmd === "DURABLE") log.commit();
          }
          s.write(`ok ${dec(log.views(k)[0])}\n`);
        });
      })
      .listen(7);
  };
}

test("crash: the pool keeps exactly what was persisted (file, mmap) or nothing (memory); no FIN or RST leaves; the restarted host resets old connections", async () => {
  for (const persistence of ["file", "mmap", "memory"]) {
    const sim = createSimNet({ seed: 11, link: { delayMs: 1 } });
    const seen = [];
    const client = sim.host("client");
    let server;
    try {
      server = sim.host("server", { persistence, stack: { configure: PmLog.configure }, boot: storeBoot(seen) });
    } catch (e) {
      if (persistence === "mmap" && e.code === "ENATIVE") {
        console.log(`  (mmap skipped: ${e.message})`);
        sim.close();
        continue;
      }
      throw e;
    }
    const path = server.poolPath;
    assert.is(path !== null, persistence !== "memory", persistence);
    const s = client.net.connect({ host: server.ip, port: 7 });
    const answers = [];
    lines(s, (l) => answers.push(l));
    let error = null;
    s.on("error", (e) => (error = e));
    for (const req of ["DURABLE one 1111", "DURABLE two 2222", "SCRIBBLE one XXXX", "PENDING three 3333"]) {
      s.write(`${req}\n`);
      const want = answers.length + 1;
      assert.ok(await sim.runUntil(() => answers.length === want, 5000), `${persistence}: ${req}`);
    }
    assert.equal(answers, ["ok 1111", "ok 2222", "ok XXXX", "ok 3333"], persistence);
    const traced = sim.trace.length;
    sim.crash(server);
    assert.is(server.up, false);
    await sim.run(5000);
    assert.equal(sim.trace.slice(traced), [sim.trace[traced]], `${persistence}: nothing after the crash line`);
    assert.match(sim.trace[traced], /server crash$/);
    assert.is(client.stack.connectionState(s.conn), "ESTABLISHED", `${persistence}: no FIN, no RST reached the client`);
    assert.is(error, null);
    await sim.restart(server);
    assert.is(server.boots, 2);
    const after = seen[1];
    if (persistence === "memory") assert.equal(after, { boot: 2, formatted: true, keys: {} }, "memory: all gone");
    else
      assert.equal(
        after,
        { boot: 2, formatted: false, keys: { one: "1111", two: "2222" } },
        `${persistence}: the committed keys with their persisted bytes; not the scribble, not the uncommitted key`,
      );
    s.write("DURABLE four 4444\n"); // on the connection the crashed server had
    await sim.wait(new Promise((resolve) => s.once("close", resolve)), 10_000);
    assert.is(error?.code, "ECONNRESET", `${persistence}: the restarted server resets the old connection`);
    sim.close();
    if (path) {
      assert.not.ok(existsSync(path), "close() removes the pool file");
      assert.not.ok(existsSync(dirname(path)), "and the directory it made for it");
    }
  }
});

test("ten virtual minutes of idle timers in a moment: socket.setTimeout and host timers on the virtual clock", async () => {
  const sim = createSimNet({ seed: 3 });
  const a = sim.host("a");
  const b = sim.host("b");
  const timeouts = [];
  b.net
    .createServer((s) => {
      s.setTimeout(30_000);
      s.on("timeout", () => timeouts.push(sim.now()));
      s.resume();
    })
    .listen(7);
  const c = a.net.connect({ host: b.ip, port: 7 });
  const ping = () => {
    c.write("ping");
    a.setTimeout(ping, 60_000);
  };
  a.setTimeout(ping, 60_000);
  await sim.run(600_000);
  assert.is(sim.now(), 600_000);
  assert.equal(
    timeouts,
    Array.from({ length: 10 }, (_, k) => 30_000 + 60_000 * k),
    "30 s after the connection and after every ping, on the virtual clock",
  );
  assert.is(c.readyState, "open");
  sim.close();
});

test("node:http over simulated sockets: a server fed through emit('connection'), a keep-alive Agent; keepAliveTimeout on the virtual clock", async () => {
  const sim = createSimNet({ seed: 4, link: { delayMs: 5, drop: 0.02 } });
  const a = sim.host("client");
  const b = sim.host("server");
  let finished = 0;
  const server = http.createServer((req, res) => {
    const h = createHash("sha256");
    req.on("data", (d) => h.update(d));
    req.on("end", () => res.end(`${req.method} ${req.url} ${h.digest("hex")}`));
    res.on("finish", () => (finished = sim.now()));
  });
  let accepted = null;
  b.net
    .createServer((s) => {
      accepted = s;
      server.emit("connection", s);
    })
    .listen(80);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let created = 0;
  agent.createConnection = (o) => {
    created++;
    return a.net.connect({ host: o.host, port: o.port });
  };
  const request = async (method, path, body) => {
    const req = http.request({ agent, host: b.ip, port: 80, method, path });
    req.end(body);
    const [res] = await once(req, "response");
    let text = "";
    for await (const d of res) text += d;
    return `${res.statusCode} ${text}`;
  };
  const big = bytes(300_000, 6);
  assert.is(await sim.wait(request("GET", "/a")), `200 GET /a ${sha(Buffer.alloc(0))}`);
  assert.is(await sim.wait(request("POST", "/b", big)), `200 POST /b ${sha(big)}`);
  assert.is(created, 1, "one connection for both requests");
  const idle = accepted.timeout; // node:http's keep-alive idle timer, set with socket.setTimeout()
  assert.ok(idle >= server.keepAliveTimeout, `the server set an idle timeout (${idle} ms)`);
  await sim.run(idle - 100);
  assert.not.match(sim.trace.join("\n"), /server (closed|reset)/, "kept alive while idle");
  await sim.run(1000);
  const closed = sim.trace.find((l) => / server closed /.test(l));
  assert.ok(closed, "the server closed the idle connection");
  assert.is(Number(closed.trim().split(" ")[0]), finished + idle, "exactly the idle timeout after the response");
  agent.destroy();
  server.close();
  sim.close();
});

test("node:tls over simulated sockets: TLS 1.3 handshake and a byte-exact echo (bytes not reproducible: TLS's own randomness)", async () => {
  const { key, cert } = testCert();
  const sim = createSimNet({ seed: 8, link: { delayMs: 3, drop: 0.02 } });
  const a = sim.host("client");
  const b = sim.host("server");
  b.net
    .createServer((s) => {
      const t = new tls.TLSSocket(s, { isServer: true, key, cert, minVersion: "TLSv1.3" });
      t.on("error", () => {});
      t.pipe(t);
    })
    .listen(443);
  const c = tls.connect({ socket: a.net.connect({ host: b.ip, port: 443 }), ca: cert, servername: "pmstack.test" });
  await sim.wait(once(c, "secureConnect"));
  assert.is(c.getProtocol(), "TLSv1.3");
  assert.is(c.authorized, true);
  const data = bytes(256 << 10, 12);
  const h = createHash("sha256");
  let n = 0;
  const echoed = new Promise((resolve) =>
    c.on("data", (d) => {
      h.update(d);
      n += d.length;
      if (n === data.length) resolve();
    }),
  );
  c.write(data);
  await sim.wait(echoed);
  assert.is(h.digest("hex"), sha(data));
  c.end();
  await sim.run(1000);
  sim.close();
});

test("IPv6 in 2001:2::/48: duplicate address detection, then a connection across /64s", async () => {
  const sim = createSimNet({ seed: 2, link: { delayMs: 1 } });
  const a = sim.host("a", { ip6: "2001:2::a" });
  const b = sim.host("b", { ip6: "2001:2:0:1::b" });
  b.net.createServer((s) => s.pipe(s)).listen(7);
  await sim.run(3000);
  assert.equal(
    a.stack.ip6Addresses().map((x) => x.state),
    ["preferred", "preferred"],
  );
  const r = await sim.wait(echoRound(a, b.ip6, 7, bytes(20_000, 13)));
  assert.is(r.hex, sha(bytes(20_000, 13)));
  assert.match(sim.trace.join("\n"), /a connect \[2001:2::a\]:\d+ > \[2001:2:0:1::b\]:7/);
  sim.close();
});

test("bad options and misuse: errors that name the option", async () => {
  assert.throws(
    () => createSimNet({}),
    (e) => e instanceof RangeError && /seed/.test(e.message),
  );
  assert.throws(
    () => createSimNet({ seed: 1.5 }),
    (e) => e instanceof RangeError && /seed/.test(e.message),
  );
  assert.throws(
    () => createSimNet({ seed: 1, link: { drop: 2 } }),
    (e) => e instanceof RangeError && /link: fault drop/.test(e.message),
  );
  assert.throws(
    () => createSimNet({ seed: 1, link: { loss: 0.1 } }),
    (e) => e instanceof TypeError && /unknown link option "loss"/.test(e.message),
  );
  assert.throws(() => createSimNet({ seed: 1, colour: 1 }), /unknown createSimNet option "colour"/);
  assert.throws(
    () => createSimNet({ seed: 1, buffers: 10 }),
    (e) => e instanceof RangeError && /buffers/.test(e.message),
  );
  const sim = createSimNet({ seed: 1 });
  const a = sim.host("a");
  assert.throws(() => sim.host("a"), /there is a sim host a already/);
  assert.throws(
    () => sim.host("x", { ip: "10.0.0.1" }),
    (e) => e instanceof RangeError && /198\.18\.0\.0\/15/.test(e.message),
  );
  assert.throws(
    () => sim.host("x", { ip: a.ip }),
    (e) => e instanceof RangeError && /taken/.test(e.message),
  );
  assert.throws(
    () => sim.host("x", { ip6: "fd00::1" }),
    (e) => e instanceof RangeError && /2001:2::\/48/.test(e.message),
  );
  assert.throws(
    () => sim.host("x", { persistence: "disk" }),
    (e) => e instanceof RangeError && /persistence/.test(e.message),
  );
  assert.throws(() => sim.host("x", { stack: { secret: new Uint8Array(32) } }), /stack option secret/);
  assert.throws(
    () =>
      sim.host("bad", {
        boot() {
          throw new Error("boot failed");
        },
      }),
    /boot failed/,
  );
  assert.is(sim.host("bad").index, 1, "a host whose first boot threw was not added");
  assert.throws(
    () => sim.link(a, a, {}),
    (e) => e instanceof RangeError && /two different hosts/.test(e.message),
  );
  assert.throws(
    () => sim.partition([a]),
    (e) => e instanceof RangeError && /two or more groups/.test(e.message),
  );
  assert.throws(() => sim.crash("nobody"), /not a host of this simulation: nobody/);
  let rejected = null;
  await sim.run(-1).catch((e) => (rejected = e));
  assert.ok(rejected instanceof RangeError && /run\(\)/.test(rejected.message));
  const first = sim.run(10);
  await sim.run(10).catch((e) => (rejected = e));
  assert.match(rejected.message, /running already/);
  await first;
  await sim.restart(a).catch((e) => (rejected = e));
  assert.match(rejected.message, /crash\(\) it before restart\(\)/);
  sim.crash(a);
  assert.throws(() => sim.crash(a), /down already/);
  let timedOut = null;
  await sim.wait(new Promise(() => {}), 1000).catch((e) => (timedOut = e));
  assert.is(timedOut?.code, "ETIMEDOUT");
  const c = a.net.connect({ host: "198.18.0.9", port: 1 });
  const [err] = await once(c, "error");
  assert.is(err.code, "ENETDOWN", "the crashed host's NetStack connects nowhere");
  sim.close();
  assert.throws(() => sim.host("y"), /closed/);
});

test.run();

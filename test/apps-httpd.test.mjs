// HttpdApp in memory (no NIC, no kernel): a client stack and the server over a MemoryLink, the
// turns driven by hand in NicLoop's order. Abuse: seeded random requests and mangled bytes on
// several connections must never take the server down, lose an acknowledged body or leak a buffer.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Stack, MemoryLink, PmLog, HttpdApp } from "../build/index.js";
import { rng } from "./lib/rng.mjs";
import { memClient } from "./lib/memclient.mjs";

const enc = (s) => new TextEncoder().encode(s);
const dec = (b) => new TextDecoder("latin1").decode(b);
const SRV_IP = "198.18.8.1";

function httpdPair({ buffers = 4096 } = {}) {
  const srv = Stack.create({
    mac: "02:00:00:00:08:01",
    ip: `${SRV_IP}/24`,
    pool: { buffers, metaBytes: 1 << 20 },
    configure: (core) => PmLog.configure(core),
  });
  const log = PmLog.open(srv.pool);
  const app = new HttpdApp(srv, log, 80);
  const cli = Stack.create({ mac: "02:00:00:00:08:02", ip: "198.18.8.2/24", pool: { buffers: 4096 } });
  const link = new MemoryLink(srv.port, cli.port);
  const mc = memClient(cli, { state: () => ({ rx: "" }), onData: (c, bytes) => (c.rx += dec(bytes)) });
  const conns = mc.conns; // client conn -> { rx: string, closed, refused }
  const h = {
    srv,
    log,
    app,
    cli,
    conns,
    now: 0,
    turn() {
      srv.poll(h.now);
      srv.drainEvents(app.onEvent);
      srv.poll(h.now);
      srv.drainEvents(app.onEvent);
      app.onTurnEnd();
      srv.poll(h.now);
      srv.drainEvents(app.onEvent);
      cli.poll(h.now);
      cli.drainEvents(h.onClient);
      const moved = link.step(h.now);
      h.now += moved ? 0.05 : 1;
    },
    run(done, limit = 20000) {
      for (let k = 0; k < limit; k++) {
        h.turn();
        if (done()) return;
      }
      throw new Error("httpdPair.run: not done in time");
    },
    connect() {
      const before = new Set(conns.keys());
      cli.connect(SRV_IP, 80);
      h.run(() => [...conns.keys()].some((k) => !before.has(k)));
      return [...conns.keys()].find((k) => !before.has(k));
    },
    send(conn, bytes, seg = 1400) {
      mc.send(conn, bytes, seg, () => h.turn());
    },
    onClient: mc.onClient,
    /** One request on a fresh connection, the whole response text once complete. */
    request(text) {
      const c = h.connect();
      h.send(c, enc(text));
      h.run(() => /\r\n\r\n/.test(conns.get(c).rx) && complete(conns.get(c).rx));
      const out = conns.get(c).rx;
      cli.close(c);
      for (let k = 0; k < 20; k++) h.turn();
      return out;
    },
    close() {
      srv.shutdown();
      cli.shutdown();
    },
  };
  return h;
}

/** A response whose body (Content-Length) has fully arrived. */
function complete(rx) {
  const end = rx.indexOf("\r\n\r\n");
  const m = /Content-Length: (\d+)/i.exec(rx.slice(0, end));
  return rx.length >= end + 4 + (m ? Number(m[1]) : 0);
}

test("in memory: POST, GET, DELETE and GET / answer as documented", () => {
  const h = httpdPair();
  assert.match(h.request("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"), /^HTTP\/1\.1 201 /);
  const got = h.request("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.match(got, /^HTTP\/1\.1 200 /);
  assert.ok(got.endsWith("\r\n\r\nhello"), got);
  assert.match(h.request("DELETE /a HTTP/1.1\r\nHost: x\r\n\r\n"), /^HTTP\/1\.1 204 /);
  assert.match(h.request("GET /a HTTP/1.1\r\nHost: x\r\n\r\n"), /^HTTP\/1\.1 404 /);
  assert.match(h.request("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), /^HTTP\/1\.1 200 [^]*"keys":0/);
  h.close();
});

const ABUSE_SEEDS = process.env.PMSTACK_ABUSE_SEEDS
  ? process.env.PMSTACK_ABUSE_SEEDS.split(",").map(Number)
  : [1, 2, 2026];
for (const seed of ABUSE_SEEDS)
  test(`abuse (seed ${seed}): random requests and mangled bytes never take httpd down, lose a body or leak a buffer`, () => {
    const r = rng(seed);
    const h = httpdPair({ buffers: 2048 });
    const base = h.srv.pool.counts();
    const pick = (xs) => xs[r.int(xs.length)];
    const methods = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "get", "OPTIONS"];
    const targets = ["/k1", "/k2", "/k%20x", "/%zz", "/", "", "*", "/" + "x".repeat(1100), "/k1?q=1"];
    const versions = ["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1", "HTP/1.1"];
    const headers = () => {
      const hs = [];
      if (r() < 0.9) hs.push("Host: x");
      if (r() < 0.2) hs.push(pick(["Connection: close", "Connection: keep-alive", "Transfer-Encoding: chunked"]));
      if (r() < 0.1)
        hs.push(
          pick(["Content-Length: -1", "Content-Length: abc", "Content-Length: 99999999", "X: " + "y".repeat(9000)]),
        );
      if (r() < 0.1) hs.push(pick(["bad header", "Bad\tName: 1", ": empty"]));
      return hs;
    };
    const valid = () => {
      const m = pick(["GET", "POST", "POST", "DELETE", "PUT"]);
      const key = pick(["/k1", "/k2", "/k3", "/k%20x"]);
      if (m === "GET" || m === "DELETE") return enc(`${m} ${key} HTTP/1.1\r\nHost: x\r\n\r\n`);
      const body = new Uint8Array(r.int(3000)).fill(0x61 + r.int(26));
      const head = enc(`${m} ${key} HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`);
      const out = new Uint8Array(head.length + body.length);
      out.set(head);
      out.set(body, head.length);
      return out;
    };
    const request = () => {
      if (r() < 0.7) return valid();
      const m = pick(methods);
      const body = m === "POST" || m === "PUT" ? new Uint8Array(r.int(3000)).fill(0x61 + r.int(26)) : null;
      const hs = headers();
      if (body && r() < 0.9) hs.push(`Content-Length: ${body.length}`);
      const head = enc(`${m} ${pick(targets)} ${pick(versions)}\r\n${hs.join("\r\n")}\r\n\r\n`);
      const out = new Uint8Array(head.length + (body?.length ?? 0));
      out.set(head);
      if (body) out.set(body, head.length);
      return out;
    };
    const mangle = (b) => {
      const out = Array.from(b);
      for (let e = 1 + r.int(3); e > 0; e--) {
        const at = r.int(out.length + 1);
        out.splice(
          at,
          r.int(4),
          ...enc(pick(["\r\n", "\n", "\r", " ", ":", "\0", "\r\n\r\n", "Content-Length: 3\r\n"])),
        );
      }
      return Uint8Array.from(out);
    };
    let responses = 0;
    for (let round = 0; round < 25; round++) {
      const conns = [h.connect(), h.connect()];
      for (const c of conns) {
        const reqs = [];
        for (let k = 0; k < 6; k++) reqs.push(r() < 0.1 ? mangle(request()) : request());
        const all = new Uint8Array(reqs.reduce((n, x) => n + x.length, 0));
        let at = 0;
        for (const x of reqs) {
          all.set(x, at);
          at += x.length;
        }
        h.send(c, all, pick([61, 1400]));
      }
      for (let k = 0; k < 60; k++) h.turn();
      for (const c of conns) {
        const st = h.conns.get(c);
        responses += (st.rx.match(/HTTP\/1\.1 \d{3} /g) ?? []).length;
        if (!st.closed) h.cli.close(c);
      }
      for (let k = 0; k < 60; k++) h.turn();
    }
    // not vacuous: requests were answered, some with errors, some bodies kept
    assert.ok(responses > 40, `${responses} responses`);
    assert.ok(h.app.stats.posts > 20 && h.app.stats.gets > 2 && h.app.stats.errors > 10, JSON.stringify(h.app.stats));
    // the server goes on: a POST is acknowledged and reads back
    assert.match(h.request("POST /after HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"), /^HTTP\/1\.1 201 /);
    assert.ok(h.request("GET /after HTTP/1.1\r\nHost: x\r\n\r\n").endsWith("\r\n\r\nabc"));
    // every body the log names is kept; nothing else is held by the app
    for (let k = 0; k < 100; k++) h.turn();
    const after = h.srv.pool.check();
    assert.is(after.app, base.app, "no app buffer left");
    const named = new Set();
    for (const e of h.log.entries()) for (const n of e.names) named.add(n.index);
    assert.is(after.kept, named.size, "kept buffers are exactly the ones the log names");
    h.close();
  });

test.run();

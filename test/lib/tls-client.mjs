// TLS clients for test/e2e-tls.test.mjs, run inside a test namespace (node:tls, the CA given).
//
//   node tls-client.mjs kv-write HOST PORT CA CONNS PREFIX     pipelined SETs (16 in flight per
//       connection) of keys PREFIX<c>-<i>, until killed or the server goes; prints each key
//       whose +OK came, one per line
//   node tls-client.mjs http-write HOST PORT CA CONNS PREFIX   keep-alive POSTs /PREFIX<c>-<i>
//       likewise; prints each key answered 201
//   node tls-client.mjs kv-check HOST PORT CA                  keys on stdin: GETs each, prints
//   node tls-client.mjs http-check HOST PORT CA                { checked, bad: [...] } as JSON
//   node tls-client.mjs flood HOST PORT PARTIAL GARBAGE MS     PARTIAL connections that send the
//       first bytes of a ClientHello and stall, GARBAGE that send non-TLS bytes; holds them MS,
//       prints { partialEnded, garbageEnded } (how many the server ended) as JSON
//   node tls-client.mjs steady HOST PORT CA MS                 one keep-alive client doing
//       POST then GET (1 KiB, checked) for MS; prints { ok, failed, errors } as JSON
//   node tls-client.mjs trickle HOST PORT CA MS                two HTTPS connections: one
//       completes its handshake, then sends a TLS record's bytes one every 250 ms (never the
//       whole record); the other completes its handshake, says nothing for MS, then GETs /;
//       prints { trickleEnd (ms after its first record byte, or null), trickleBytes, idleStatus }
// Values are derived from the key (valueOf), so a checker needs nothing but the keys.
import tls from "node:tls";
import net from "node:net";
import https from "node:https";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";

const [mode, host, portText, a3, a4, a5, a6] = process.argv.slice(2);
const port = Number(portText);

/** 1000 bytes determined by the key. */
export function valueOf(key) {
  const out = Buffer.alloc(1000);
  let h = createHash("sha256").update(key).digest();
  for (let at = 0; at < out.length; at += h.length) {
    h.copy(out, at);
    h = createHash("sha256").update(h).digest();
  }
  return out;
}

const bulk = (b) => Buffer.concat([Buffer.from(`$${b.length}\r\n`), b, Buffer.from("\r\n")]);
const cmd = (...args) =>
  Buffer.concat([
    Buffer.from(`*${args.length}\r\n`),
    ...args.map((x) => bulk(Buffer.isBuffer(x) ? x : Buffer.from(x))),
  ]);

function tlsConnect(ca) {
  return tls.connect({ host, port, ca, servername: undefined });
}

/** Reads RESP replies (simple, error, bulk) off a socket: calls onReply(type, payload) for each. */
function respReader(sock, onReply) {
  let buf = Buffer.alloc(0);
  sock.on("data", (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    for (;;) {
      const e = buf.indexOf("\r\n");
      if (e < 0) return;
      const t = String.fromCharCode(buf[0]);
      if (t === "$") {
        const n = Number(buf.subarray(1, e).toString());
        if (n < 0) {
          buf = buf.subarray(e + 2);
          onReply("$", null);
          continue;
        }
        if (buf.length < e + 2 + n + 2) return;
        const v = buf.subarray(e + 2, e + 2 + n);
        buf = buf.subarray(e + 4 + n);
        onReply("$", Buffer.from(v));
      } else {
        const line = buf.subarray(1, e).toString();
        buf = buf.subarray(e + 2);
        onReply(t, line);
      }
    }
  });
}

function kvWrite(ca, conns, prefix) {
  for (let c = 0; c < conns; c++) {
    const s = tlsConnect(ca);
    const inflight = [];
    let i = 0;
    const more = () => {
      while (inflight.length < 16) {
        const key = `${prefix}${c}-${i++}`;
        inflight.push(key);
        s.write(cmd("SET", key, valueOf(key)));
      }
    };
    s.on("secureConnect", more);
    respReader(s, (t, line) => {
      const key = inflight.shift();
      if (t === "+" && line === "OK") process.stdout.write(key + "\n");
      more();
    });
    s.on("error", () => {});
  }
}

function httpWrite(ca, conns, prefix) {
  const agent = new https.Agent({ keepAlive: true, maxSockets: conns, ca });
  for (let c = 0; c < conns; c++) {
    let i = 0;
    const next = () => {
      const key = `${prefix}${c}-${i++}`;
      const body = valueOf(key);
      const rq = https.request(
        { host, port, agent, method: "POST", path: `/${key}`, headers: { "content-length": body.length } },
        (res) => {
          res.resume();
          res.on("end", () => {
            if (res.statusCode === 201) process.stdout.write(key + "\n");
            next();
          });
        },
      );
      rq.on("error", () => {});
      rq.end(body);
    };
    next();
  }
}

async function readKeys() {
  let s = "";
  for await (const d of process.stdin) s += d;
  return s.split("\n").filter(Boolean);
}

async function kvCheck(ca) {
  const keys = await readKeys();
  const s = tlsConnect(ca);
  const bad = [];
  let k = 0;
  await new Promise((resolve, reject) => {
    s.on("error", reject);
    respReader(s, (t, v) => {
      const key = keys[k++];
      if (t !== "$" || !v || !v.equals(valueOf(key))) bad.push(key);
      if (k === keys.length) resolve();
    });
    s.on("secureConnect", () => {
      for (const key of keys) s.write(cmd("GET", key));
      if (!keys.length) resolve();
    });
  });
  s.end();
  console.log(JSON.stringify({ checked: keys.length, bad: bad.slice(0, 10), badCount: bad.length }));
}

async function httpCheck(ca) {
  const keys = await readKeys();
  const agent = new https.Agent({ keepAlive: true, maxSockets: 8, ca });
  const bad = [];
  const get = (key) =>
    new Promise((resolve) => {
      https
        .get({ host, port, agent, path: `/${key}` }, (res) => {
          const parts = [];
          res.on("data", (d) => parts.push(d));
          res.on("end", () => {
            if (res.statusCode !== 200 || !Buffer.concat(parts).equals(valueOf(key))) bad.push(key);
            resolve();
          });
        })
        .on("error", () => (bad.push(key), resolve()));
    });
  for (let i = 0; i < keys.length; i += 8) await Promise.all(keys.slice(i, i + 8).map(get));
  agent.destroy();
  console.log(JSON.stringify({ checked: keys.length, bad: bad.slice(0, 10), badCount: bad.length }));
}

/** The first 60 bytes of a TLS 1.2/1.3 ClientHello record (its length promises more). */
const PARTIAL_HELLO = Buffer.concat([
  Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]),
  Buffer.alloc(49, 0x5a),
]);

async function flood(partial, garbage, ms) {
  const ended = { partialEnded: 0, garbageEnded: 0, connected: 0, refused: 0 };
  const socks = [];
  let done = false;
  const open = (kind, bytes) =>
    new Promise((resolve) => {
      const s = net.connect(port, host, () => {
        ended.connected++;
        s.write(bytes);
        resolve();
      });
      s.on("error", () => {});
      s.on("close", () => {
        if (done) return; // our own destroy at the end
        if (s.connecting === false && s.bytesWritten > 0) ended[kind === "p" ? "partialEnded" : "garbageEnded"]++;
        else ended.refused++;
        resolve();
      });
      socks.push(s);
    });
  const waits = [];
  for (let k = 0; k < partial; k++) waits.push(open("p", PARTIAL_HELLO));
  for (let k = 0; k < garbage; k++)
    waits.push(open("g", Buffer.from(`GARBAGE ${k} \x00\x01\x02 not a ClientHello\r\n`)));
  await Promise.all(waits);
  await new Promise((r) => setTimeout(r, ms));
  done = true;
  for (const s of socks) s.destroy();
  console.log(JSON.stringify(ended));
}

async function steady(ca, ms) {
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
  const end = Date.now() + ms;
  const res = { ok: 0, failed: 0, errors: [] };
  const req = (method, path, body) =>
    new Promise((resolve) => {
      const rq = https.request(
        { host, port, agent, method, path, timeout: 5000, headers: body ? { "content-length": body.length } : {} },
        (r) => {
          const parts = [];
          r.on("data", (d) => parts.push(d));
          r.on("end", () => resolve({ status: r.statusCode, body: Buffer.concat(parts) }));
        },
      );
      rq.on("timeout", () => rq.destroy(new Error("timeout")));
      rq.on("error", (e) => resolve({ status: 0, error: e.message }));
      rq.end(body);
    });
  for (let i = 0; Date.now() < end; i++) {
    const key = `steady-${i}`;
    const w = await req("POST", `/${key}`, valueOf(key));
    const r = w.status === 201 ? await req("GET", `/${key}`) : w;
    if (r.status === 200 && r.body.equals(valueOf(key))) res.ok++;
    else {
      res.failed++;
      if (res.errors.length < 5) res.errors.push(`${key}: ${w.status} ${r.status} ${r.error ?? ""}`);
    }
  }
  agent.destroy();
  console.log(JSON.stringify(res));
}

async function trickle(ca, idleMs) {
  const handshake = () =>
    new Promise((resolve, reject) => {
      const raw = net.connect({ host, port });
      const t = tls.connect({ socket: raw, ca, servername: "pmstack.test" });
      t.once("secureConnect", () => resolve({ raw, t }));
      t.once("error", reject);
    });
  const a = await handshake();
  const b = await handshake();
  // a record header for 200 bytes of application data, then its body a byte at a time: the
  // raw socket under the TLS one, so that no record ever completes
  const record = Buffer.concat([Buffer.from([23, 3, 3, 0, 200]), Buffer.alloc(195, 7)]);
  let sent = 0;
  let first = 0;
  const ended = new Promise((resolve) => {
    a.raw.once("close", () => resolve(performance.now()));
    a.t.on("error", () => {});
    a.raw.on("error", () => {});
  });
  const timer = setInterval(() => {
    if (sent < record.length && !a.raw.destroyed) {
      first ||= performance.now();
      a.raw.write(record.subarray(sent, sent + 1));
      sent++;
    }
  }, 250);
  const end = await Promise.race([ended, new Promise((r) => setTimeout(() => r(null), idleMs + 10_000))]);
  clearInterval(timer);
  a.raw.destroy();
  await new Promise((r) => setTimeout(r, Math.max(0, idleMs - (performance.now() - first))));
  const idleStatus = await new Promise((resolve) => {
    b.t.once("error", (e) => resolve(`error ${e.code}`));
    b.t.once("close", () => resolve("closed"));
    b.t.write("GET /none HTTP/1.1\r\nHost: pmstack\r\n\r\n");
    b.t.once("data", (d) => resolve(d.toString("latin1").split("\r\n")[0]));
  });
  b.t.destroy();
  console.log(
    JSON.stringify({ trickleEnd: end === null ? null : Math.round(end - first), trickleBytes: sent, idleStatus }),
  );
}

const ca = a3 && mode !== "flood" ? readFileSync(a3) : null;
if (mode === "kv-write") kvWrite(ca, Number(a4), a5);
else if (mode === "http-write") httpWrite(ca, Number(a4), a5);
else if (mode === "kv-check") await kvCheck(ca);
else if (mode === "http-check") await httpCheck(ca);
else if (mode === "flood") await flood(Number(a3), Number(a4), Number(a5));
else if (mode === "steady") await steady(ca, Number(a4));
else if (mode === "trickle") await trickle(ca, Number(a4));
else {
  console.error(`tls-client: unknown mode ${mode}`);
  process.exit(2);
}
void a6;

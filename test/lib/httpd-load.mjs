// An HTTP/1.1 load client for the httpd end-to-end tests, run in the test's namespace: raw
// keep-alive connections with pipelined requests (so replies must come back in request order),
// each key's body and Content-Type made from the key alone, so any other connection can check it.
//   node httpd-load.mjs put    HOST PORT CONNS PER PREFIX MAXLEN
//       each of CONNS connections pipelines PER PUTs of PREFIX-c-i; prints {"acked":[...]}
//   node httpd-load.mjs stream HOST PORT CONNS PREFIX MAXLEN
//       each connection PUTs PREFIX-c-0, -1, ... one at a time until SIGTERM; prints {"acked":[...]}
//   node httpd-load.mjs check  HOST PORT CONNS PREFIX MAXLEN ACKED [del]
//       reads every acknowledged key back, each on another connection than wrote it, pipelined
//       (body and Content-Type compared); with del, deletes them too, pipelined, and reads one
//       back as 404; prints {"checked","missing","wrong","deleted"}
//   node httpd-load.mjs pipe   HOST PORT LOCALPORT KEY SIZE
//       one connection from LOCALPORT pipelines PUT KEY (SIZE bytes), GET, DELETE, GET;
//       prints {"statuses":[...],"same":bool}: the GET must see the PUT sent before it
import net from "node:net";

const [mode, host, portS, ...rest] = process.argv.slice(2);
const port = Number(portS);

/** The body of `key`: up to `max` bytes from a generator seeded by the key. */
export function bodyOf(key, max) {
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619) >>> 0;
  const len = h % (max + 1);
  const out = Buffer.alloc(len);
  let x = h | 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
const typeOf = (key) => `application/x-pm-${key.length % 3}`;

/** A keep-alive connection: requests written at once, responses parsed in order. */
function connect(localPort) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host, ...(localPort ? { localPort } : {}) }, () => resolve(conn(s)));
    s.once("error", reject);
  });
}

function conn(s) {
  let buf = Buffer.alloc(0);
  const waiting = []; // { head: bool, resolve }
  s.on("data", (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    for (;;) {
      const w = waiting[0];
      if (!w) return;
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const head = buf.subarray(0, end).toString("latin1");
      const lines = head.split("\r\n");
      const status = Number(lines[0].split(" ")[1]);
      const headers = {};
      for (const l of lines.slice(1)) {
        const k = l.indexOf(":");
        headers[l.slice(0, k).toLowerCase()] = l.slice(k + 1).trim();
      }
      const len = w.head ? 0 : Number(headers["content-length"] ?? 0);
      if (buf.length < end + 4 + len) return;
      const body = buf.subarray(end + 4, end + 4 + len);
      buf = buf.subarray(end + 4 + len);
      waiting.shift();
      w.resolve({ status, headers, body: Buffer.from(body) });
    }
  });
  s.on("error", (e) => {
    for (const w of waiting.splice(0)) w.resolve({ status: 0, error: e.code });
  });
  s.on("close", () => {
    for (const w of waiting.splice(0)) w.resolve({ status: 0, error: "closed" });
  });
  return {
    s,
    /** Sends requests (each [method, path, body?, type?]) at once; their responses, in order. */
    many(reqs) {
      const out = [];
      const chunks = [];
      for (const [method, path, body, type] of reqs) {
        out.push(new Promise((resolve) => waiting.push({ head: method === "HEAD", resolve })));
        let h = `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n`;
        if (body) h += `Content-Length: ${body.length}\r\nContent-Type: ${type}\r\n`;
        chunks.push(Buffer.from(h + "\r\n", "latin1"));
        if (body?.length) chunks.push(body);
      }
      s.write(Buffer.concat(chunks));
      return Promise.all(out);
    },
  };
}

const key = (prefix, c, i) => `${prefix}-${c}-${i}`;

if (mode === "put") {
  const [conns, per, prefix, max] = [Number(rest[0]), Number(rest[1]), rest[2], Number(rest[3])];
  const acked = await Promise.all(
    Array.from({ length: conns }, async (_, c) => {
      const k = await connect();
      const reqs = Array.from({ length: per }, (_, i) => {
        const kk = key(prefix, c, i);
        return ["PUT", `/${kk}`, bodyOf(kk, max), typeOf(kk)];
      });
      const rs = await k.many(reqs);
      k.s.end();
      let n = 0;
      for (const r of rs) if (r.status === 201) n++;
      return n;
    }),
  );
  console.log(JSON.stringify({ acked }));
} else if (mode === "stream") {
  const [conns, prefix, max] = [Number(rest[0]), rest[1], Number(rest[2])];
  const acked = new Array(conns).fill(0);
  let stop = false;
  process.on("SIGTERM", () => {
    stop = true;
    console.log(JSON.stringify({ acked }));
    process.exit(0);
  });
  await Promise.all(
    Array.from({ length: conns }, async (_, c) => {
      const k = await connect();
      for (let i = 0; !stop; i++) {
        const kk = key(prefix, c, i);
        const [r] = await k.many([["PUT", `/${kk}`, bodyOf(kk, max), typeOf(kk)]]);
        if (r.status !== 201) return;
        acked[c] = i + 1;
      }
    }),
  );
} else if (mode === "check") {
  const [conns, prefix, max, ackedS, del] = [Number(rest[0]), rest[1], Number(rest[2]), rest[3], rest[4] === "del"];
  const acked = JSON.parse(ackedS);
  const out = { checked: 0, missing: 0, wrong: 0, deleted: 0 };
  // the keys written on connection c are read on connection c + 1
  await Promise.all(
    acked.map(async (n, c) => {
      if (!n) return;
      const k = await connect();
      const keys = Array.from({ length: n }, (_, i) => key(prefix, c, i));
      const rs = await k.many(keys.map((kk) => ["GET", `/${kk}`]));
      rs.forEach((r, i) => {
        out.checked++;
        if (r.status === 404) out.missing++;
        else if (
          r.status !== 200 ||
          !r.body.equals(bodyOf(keys[i], max)) ||
          r.headers["content-type"] !== typeOf(keys[i])
        )
          out.wrong++;
      });
      if (del) {
        const ds = await k.many(keys.map((kk) => ["DELETE", `/${kk}`]));
        for (const r of ds) if (r.status === 204) out.deleted++;
        const [gone] = await k.many([["GET", `/${keys[0]}`]]);
        if (gone.status !== 404) out.wrong++;
      }
      k.s.end();
    }),
  );
  console.log(JSON.stringify(out));
} else if (mode === "pipe") {
  const [localPort, kk, size] = [Number(rest[0]), rest[1], Number(rest[2])];
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i++) body[i] = (i * 31 + 7) & 0xff;
  const k = await connect(localPort);
  const rs = await k.many([
    ["PUT", `/${kk}`, body, "application/x-pipe"],
    ["GET", `/${kk}`],
    ["DELETE", `/${kk}`],
    ["GET", `/${kk}`],
  ]);
  k.s.end();
  console.log(JSON.stringify({ statuses: rs.map((r) => r.status), same: rs[1].body.equals(body) }));
} else {
  console.error(`httpd-load: unknown mode ${mode}`);
  process.exit(2);
}

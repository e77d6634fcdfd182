// A small cluster-aware load client (run inside a test's namespace): W workers, each with its own
// connection per node and one command in flight on it, SET keys ld:<i> for SECONDS, following
// -MOVED (the slot's new owner), -ASK (ASKING, then the command, at the node named) and
// -TRYAGAIN (again after 20 ms) as Redis's cluster clients do; then GETs every key whose SET was
// acknowledged, the same way. Prints { acked, errors, moved, asked, tryagain, read, mismatches, ms }.
// Args: host port seconds [workers]. Every redirect it follows is one the cluster gave.
import net from "node:net";

const [host, port, seconds, workers] = [
  process.argv[2],
  Number(process.argv[3]),
  Number(process.argv[4]),
  Number(process.argv[5] ?? 16),
];
const t0 = Date.now();
const stats = { acked: 0, errors: 0, moved: 0, asked: 0, tryagain: 0, read: 0, mismatches: 0 };

const enc = (args) =>
  Buffer.from(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(""));

/** One connection with one command in flight: send(args) resolves its reply. */
function connection(h, p) {
  const s = net.connect(p, h);
  s.setNoDelay(true);
  let buf = Buffer.alloc(0);
  const waiting = [];
  const fail = (e) => {
    for (const w of waiting.splice(0)) w.reject(e);
  };
  s.on("error", fail);
  s.on("close", () => fail(new Error(`connection to ${h}:${p} closed`)));
  s.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      const r = parse(buf, 0);
      if (!r) break;
      buf = buf.subarray(r[1]);
      waiting.shift()?.resolve(r[0]);
    }
  });
  return {
    send: (args) => new Promise((resolve, reject) => (waiting.push({ resolve, reject }), s.write(enc(args)))),
    close: () => s.destroy(),
  };
}

function parse(b, at) {
  const e = b.indexOf("\r\n", at);
  if (e < 0) return null;
  const line = b.toString("latin1", at + 1, e);
  const t = b[at];
  if (t === 0x2b) return [{ ok: line }, e + 2];
  if (t === 0x2d) return [{ err: line }, e + 2];
  if (t === 0x3a) return [Number(line), e + 2];
  if (t === 0x24) {
    const n = Number(line);
    if (n < 0) return [null, e + 2];
    if (b.length < e + 2 + n + 2) return null;
    return [b.toString("latin1", e + 2, e + 2 + n), e + 4 + n];
  }
  if (t === 0x2a) {
    const n = Number(line);
    const out = [];
    let p = e + 2;
    for (let k = 0; k < n; k++) {
      const r = parse(b, p);
      if (!r) return null;
      out.push(r[0]);
      p = r[1];
    }
    return [out, p];
  }
  throw new Error(`bad reply byte ${t}`);
}

// CRC16 (XMODEM) and the hash slot, as Redis
const T = new Uint16Array(256).map((_, i) => {
  let c = i << 8;
  for (let k = 0; k < 8; k++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
  return c;
});
const slotOf = (key) => {
  const b = Buffer.from(key);
  let crc = 0;
  for (const x of b) crc = ((crc << 8) & 0xffff) ^ T[((crc >> 8) ^ x) & 0xff];
  return crc & 16383;
};

const owner = new Array(16384).fill(`${host}:${port}`);
async function loadSlots() {
  const c = connection(host, port);
  try {
    for (const [a, b, [ip, p]] of await c.send(["CLUSTER", "SLOTS"]))
      for (let s = a; s <= b; s++) owner[s] = `${ip}:${p}`;
  } finally {
    c.close();
  }
}

/** Runs one command on its slot's node, following the cluster's redirects. */
async function run(conns, args, key) {
  let addr = owner[slotOf(key)];
  let asking = false;
  for (let hop = 0; hop < 50; hop++) {
    let c = conns.get(addr);
    if (!c) conns.set(addr, (c = connection(...addr.split(":").map((x, i) => (i ? Number(x) : x)))));
    if (asking) await c.send(["ASKING"]);
    const r = await c.send(args);
    asking = false;
    if (r && typeof r === "object" && "err" in r) {
      const [kind, slot, to] = r.err.split(" ");
      if (kind === "MOVED") {
        stats.moved++;
        owner[Number(slot)] = to;
        addr = to;
        continue;
      }
      if (kind === "ASK") {
        stats.asked++;
        addr = to;
        asking = true;
        continue;
      }
      if (kind === "TRYAGAIN") {
        stats.tryagain++;
        await new Promise((res) => setTimeout(res, 20));
        continue;
      }
      throw new Error(`${args[0]} ${key}: ${r.err}`);
    }
    return r;
  }
  throw new Error(`${args[0]} ${key}: too many redirects`);
}

await loadSlots();
let next = 0;
const acked = [];
await Promise.all(
  Array.from({ length: workers }, async () => {
    const conns = new Map();
    while (Date.now() - t0 < seconds * 1000) {
      const k = next++;
      try {
        const r = await run(conns, ["SET", `ld:${k}`, `value-${k}`], `ld:${k}`);
        if (r?.ok === "OK") acked.push(k);
        else stats.errors++;
      } catch (e) {
        if (stats.errors++ < 5) console.error(e.message);
      }
    }
    for (const c of conns.values()) c.close();
  }),
);
stats.acked = acked.length;
// read back every acknowledged key
let at = 0;
await Promise.all(
  Array.from({ length: workers }, async () => {
    const conns = new Map();
    while (at < acked.length) {
      const k = acked[at++];
      const v = await run(conns, ["GET", `ld:${k}`], `ld:${k}`);
      stats.read++;
      if (v !== `value-${k}`) {
        if (stats.mismatches++ < 5) console.error(`GET ld:${k}: ${JSON.stringify(v)}`);
      }
    }
    for (const c of conns.values()) c.close();
  }),
);
console.log(JSON.stringify({ ...stats, ms: Date.now() - t0 }));

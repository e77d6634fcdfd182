// bench/nic's kernel-side programs (Node `net`, i.e. the Linux kernel's TCP), run inside the
// benchmark's own namespaces. The same client runs against every server (pmstack over TAP,
// pmstack over AF_XDP, the kernel server below), so its costs are common to all three.
//   client bulk HOST MS              one connection to BULK_PORT; writes the stream for MS ms,
//                                    then ends; prints "RESULT {sent, reply}" (reply: the
//                                    server's meter report, sent after our FIN)
//   client bulktx HOST               one connection to BULK_TX_PORT; the server writes the
//                                    stream for TX_MS ms and ends; we meter and check it;
//                                    prints "RESULT {bytes, bad, gbps, seconds}"
//   client rr HOST MS CONNS          CONNS connections to RR_PORT, each a 64 B request / 64 B
//                                    response ping-pong; WARM_MS of warm-up, then MS ms
//                                    measured; every response must equal its request; prints
//                                    "RESULT {tps, total, measured, mismatches, seconds, cpuUs}"
//                                    (cpuUs: this process's CPU time from the first request)
//   server HOST                      the kernel baseline: bulk sink on BULK_PORT (same report
//                                    as pmstack's), bulk source on BULK_TX_PORT, echo on
//                                    RR_PORT; prints "LISTENING"
// With env PEER_PAUSE_MS the client prints "READY <pid>" once connected and waits that long
// before its first byte (so that a syscall counter can attach to the server meanwhile).
import net from "node:net";
import { pathToFileURL } from "node:url";

export const BULK_PORT = 5001;
export const RR_PORT = 5002;
export const BULK_TX_PORT = 5003;
/** Bulk: the receiver measures the bytes that arrive in [first + WARM_MS, first + WARM_MS + MEASURE_MS]. */
export const WARM_MS = 300;
export const MEASURE_MS = 1000;
/** How long a bulk sender sends (a margin past the receiver's window). */
export const TX_MS = WARM_MS + MEASURE_MS + 300;
export const REQ = 64;

/** The bulk stream: a 1 MiB xorshift block repeated; position p holds BLOCK[p % BLOCK.length]. */
export const BLOCK = (() => {
  const out = Buffer.allocUnsafe(1 << 20);
  let x = 0x9e3779b9;
  for (let i = 0; i < out.length; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i);
  }
  return out;
})();

/** Writes stream bytes [pos, pos + dst.length) into `dst`. */
export function fillStream(dst, pos) {
  const L = BLOCK.length;
  const at = pos % L;
  const n = Math.min(dst.length, L - at);
  dst.set(BLOCK.subarray(at, at + n));
  if (n < dst.length) dst.set(BLOCK.subarray(0, dst.length - n), n);
}

/**
 * A bulk receiver's bookkeeping, shared by pmstack's servers, the kernel server and the
 * client: counts bytes, spot-checks the stream (first and last byte of every chunk against
 * the pattern) and measures the rate in the fixed window after warm-up.
 */
export class BulkMeter {
  bytes = 0;
  bad = 0;
  first = -1;
  startBytes = -1;
  startAt = 0;
  endBytes = -1;
  endAt = 0;
  /** `bytes` is a Uint8Array view of the chunk just received, at `now` ms. */
  chunk(bytes, now) {
    const n = bytes.length;
    if (n === 0) return;
    const p = this.bytes;
    const L = BLOCK.length;
    if (bytes[0] !== BLOCK[p % L] || bytes[n - 1] !== BLOCK[(p + n - 1) % L]) this.bad++;
    if (this.first < 0) this.first = now;
    if (this.startBytes < 0 && now >= this.first + WARM_MS) {
      this.startBytes = p;
      this.startAt = now;
    }
    if (this.endBytes < 0 && now >= this.first + WARM_MS + MEASURE_MS) {
      this.endBytes = p;
      this.endAt = now;
    }
    this.bytes = p + n;
  }
  report() {
    const ok = this.startBytes >= 0 && this.endBytes > this.startBytes;
    const gbps = ok ? ((this.endBytes - this.startBytes) * 8) / ((this.endAt - this.startAt) * 1e6) : 0;
    return { bytes: this.bytes, bad: this.bad, gbps, seconds: ok ? (this.endAt - this.startAt) / 1000 : 0 };
  }
}

/** Writes the stream to `s` for `ms` ms, then ends it; calls `done(sent)`. */
function pumpStream(s, ms, done = () => {}) {
  const end = Date.now() + ms;
  let sent = 0;
  const pump = () => {
    while (Date.now() < end) {
      const b = BLOCK.subarray(sent % BLOCK.length);
      sent += b.length;
      if (!s.write(b)) return void s.once("drain", pump);
    }
    s.end();
    done(sent);
  };
  pump();
}

function fail(e) {
  console.error("client:", e.message);
  process.exit(1);
}

function client(kind, host, ms, conns) {
  const pause = +(process.env.PEER_PAUSE_MS ?? 0);
  const go = (fn) => {
    if (!pause) return fn();
    console.log(`READY ${process.pid}`);
    setTimeout(fn, pause);
  };
  if (kind === "bulk") {
    const s = net.connect(BULK_PORT, host);
    let sent = 0;
    let reply = "";
    s.on("connect", () => go(() => pumpStream(s, ms, (n) => (sent = n))));
    s.on("data", (d) => (reply += d));
    s.on("end", () => {
      console.log("RESULT " + JSON.stringify({ sent, reply: reply.trim() }));
      process.exit(0);
    });
    s.on("error", fail);
    return;
  }
  if (kind === "bulktx") {
    const s = net.connect(BULK_TX_PORT, host);
    const m = new BulkMeter();
    s.on("data", (d) => m.chunk(d, performance.now()));
    s.on("end", () => {
      console.log("RESULT " + JSON.stringify(m.report()));
      process.exit(0);
    });
    s.on("error", fail);
    return;
  }
  // rr: CONNS connections, one outstanding 64 B request each
  let total = 0;
  let measured = 0;
  let mismatches = 0;
  let phase = 0; // 0 warm-up, 1 measuring, 2 done
  let t0 = 0;
  let cpu0 = null;
  let open = 0;
  const socks = [];
  const finish = () => {
    if (phase === 2) return;
    phase = 2;
    const t1 = performance.now();
    for (const s of socks) s.destroy();
    const tps = measured / ((t1 - t0) / 1000);
    const c = process.cpuUsage(cpu0);
    const cpuUs = c.user + c.system; // this process, from the first request on
    console.log("RESULT " + JSON.stringify({ tps, total, measured, mismatches, seconds: (t1 - t0) / 1000, cpuUs }));
    process.exit(0);
  };
  const start = () => {
    cpu0 = process.cpuUsage();
    setTimeout(() => {
      phase = 1;
      t0 = performance.now();
      setTimeout(finish, ms);
    }, WARM_MS);
    for (const s of socks) s.next();
  };
  for (let c = 0; c < conns; c++) {
    const s = net.connect(RR_PORT, host);
    socks.push(s);
    s.setNoDelay(true);
    const req = Buffer.alloc(REQ);
    const got = Buffer.alloc(REQ);
    let have = 0;
    let seq = 0;
    s.next = () => {
      if (phase === 2) return;
      seq++;
      req.writeUInt32LE(c, 0);
      req.writeUInt32LE(seq, 4);
      for (let i = 8; i < REQ; i++) req[i] = (seq * 7 + i + c) & 255;
      have = 0;
      s.write(req);
    };
    s.on("data", (d) => {
      if (have + d.length > REQ) {
        mismatches++;
        have = 0;
        return void s.next();
      }
      d.copy(got, have);
      have += d.length;
      if (have < REQ) return;
      if (!got.equals(req)) mismatches++;
      total++;
      if (phase === 1) measured++;
      s.next();
    });
    s.on("connect", () => {
      if (++open === conns) go(start);
    });
    s.on("error", (e) => phase !== 2 && fail(e));
  }
}

function server(host) {
  const sink = net.createServer((s) => {
    const m = new BulkMeter();
    s.on("data", (d) => m.chunk(d, performance.now()));
    s.on("end", () => s.end(JSON.stringify(m.report()) + "\n"));
    s.on("error", () => {});
  });
  const source = net.createServer((s) => {
    s.on("error", () => {});
    pumpStream(s, TX_MS);
  });
  const echo = net.createServer((s) => {
    s.setNoDelay(true);
    s.on("data", (d) => s.write(d)); // echo: the response is the request
    s.on("error", () => {});
  });
  sink.listen(BULK_PORT, host, () =>
    source.listen(BULK_TX_PORT, host, () => echo.listen(RR_PORT, host, () => console.log("LISTENING"))),
  );
}

const main = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
if (main) {
  const [role, kind, host, ms, conns] = process.argv.slice(2);
  if (role === "client") client(kind, host, +ms, +(conns ?? 1));
  else if (role === "server") server(kind);
  else {
    console.error("usage: _nic-peer.mjs client bulk|bulktx|rr HOST [MS [CONNS]] | server HOST");
    process.exit(2);
  }
}

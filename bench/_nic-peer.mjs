// bench/nic's kernel-side programs (Node `net`, i.e. the Linux kernel's TCP), run inside the
// benchmark's own namespaces. The same client runs against every server (pmstack over TAP,
// pmstack over AF_XDP, a kernel `net` server); the kernel server is `server` below.
//   client bulk HOST PORT MS         one connection; writes the seeded stream for MS ms, then
//                                    ends; prints "RESULT {sent, reply}" (reply: the server's
//                                    JSON report line, sent after our FIN)
//   client rr HOST PORT MS CONNS     CONNS connections, each a 64 B request / 64 B response
//                                    ping-pong for MS ms (after WARM_MS of warm-up, counted
//                                    apart); checks each response equals its request; prints
//                                    "RESULT {tps, total, measured, mismatches}"
//   server HOST                      the kernel baseline: bulk sink on BULK_PORT (same report
//                                    as pmstack's), echo on RR_PORT; prints "LISTENING"
// With env PEER_PAUSE_MS the client prints "READY <pid>" and waits that long before the first
// byte (so strace can attach), and exits right after its result.
import net from "node:net";
import { pathToFileURL } from "node:url";

export const BULK_PORT = 5001;
export const RR_PORT = 5002;
/** Bulk: the receiver measures bytes that arrive in [first + WARM_MS, first + WARM_MS + MEASURE_MS]. */
export const WARM_MS = 500;
export const MEASURE_MS = 2500;
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

/**
 * A bulk receiver's bookkeeping, shared by pmstack's servers and the kernel server: counts
 * bytes, spot-checks the stream (first and last byte of every chunk against the pattern) and
 * measures the rate in the fixed window after warm-up.
 */
export class BulkMeter {
  bytes = 0;
  bad = 0;
  first = -1;
  startBytes = -1;
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

function client(kind, host, port, ms, conns) {
  const pause = +(process.env.PEER_PAUSE_MS ?? 0);
  const go = (fn) => {
    if (!pause) return fn();
    console.log(`READY ${process.pid}`);
    setTimeout(fn, pause);
  };
  if (kind === "bulk") {
    const s = net.connect(port, host);
    s.setNoDelay(true);
    let sent = 0;
    let reply = "";
    s.on("connect", () =>
      go(() => {
        const end = Date.now() + ms;
        const pump = () => {
          while (Date.now() < end) {
            const at = sent % BLOCK.length;
            const b = BLOCK.subarray(at);
            sent += b.length;
            if (!s.write(b)) return void s.once("drain", pump);
          }
          s.end();
        };
        pump();
      }),
    );
    s.on("data", (d) => (reply += d));
    s.on("end", () => {
      console.log("RESULT " + JSON.stringify({ sent, reply: reply.trim() }));
      process.exit(0);
    });
    s.on("error", (e) => {
      console.error("client:", e.message);
      process.exit(1);
    });
    return;
  }
  // rr: CONNS connections, one outstanding 64 B request each
  let total = 0;
  let measured = 0;
  let mismatches = 0;
  let phase = 0; // 0 warm-up, 1 measuring, 2 done
  let t0 = 0;
  let t1 = 0;
  let open = 0;
  const socks = [];
  const finish = () => {
    if (phase === 2) return;
    phase = 2;
    t1 = performance.now();
    for (const s of socks) s.destroy();
    const tps = measured / ((t1 - t0) / 1000);
    console.log("RESULT " + JSON.stringify({ tps, total, measured, mismatches, seconds: (t1 - t0) / 1000 }));
    process.exit(0);
  };
  const start = () => {
    setTimeout(() => {
      phase = 1;
      t0 = performance.now();
      setTimeout(finish, ms);
    }, WARM_MS);
    for (const s of socks) s.next();
  };
  for (let c = 0; c < conns; c++) {
    const s = net.connect(port, host);
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
      d.copy(got, have);
      have += d.length;
      if (have < REQ) return;
      if (have > REQ || !got.equals(req)) mismatches++;
      total++;
      if (phase === 1) measured++;
      s.next();
    });
    s.on("connect", () => {
      if (++open === conns) go(start);
    });
    s.on("error", (e) => {
      if (phase === 2) return;
      console.error("client:", e.message);
      process.exit(1);
    });
  }
}

function server(host) {
  net
    .createServer((s) => {
      const m = new BulkMeter();
      s.on("data", (d) => m.chunk(d, performance.now()));
      s.on("end", () => s.end(JSON.stringify(m.report()) + "\n"));
      s.on("error", () => {});
    })
    .listen(BULK_PORT, host, () => {
      net
        .createServer((s) => {
          s.setNoDelay(true);
          s.on("data", (d) => s.write(d)); // echo: the response is the request
          s.on("error", () => {});
        })
        .listen(RR_PORT, host, () => console.log("LISTENING"));
    });
}

const main = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
if (main) {
  const [role, a, b, c, d, e] = process.argv.slice(2);
  if (role === "client") client(a, b, +c, +d, +(e ?? 1));
  else if (role === "server") server(a);
  else {
    console.error("usage: _nic-peer.mjs client bulk|rr HOST PORT MS [CONNS] | server HOST");
    process.exit(2);
  }
}

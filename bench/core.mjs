// bench/core: two pmstack stacks in one process over the in-memory link (one copy per frame,
// as a NIC's DMA would make; MSS 1460, checksums computed and verified), beside Debian's native
// lwIP 2.1.3 (bench/lwip, raw API, two netifs over an in-memory wire) measured in the same run.
// Metrics: bulk_gbps, rr_tps_1conn, rr_tps_100conn, conn_per_s. Args: --seconds N (default 2).
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { Stack, MemoryLink } from "../build/index.js";
import { ratios } from "./_lib.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));

function pair(cfg = {}) {
  const base = { pool: { buffers: 32768 }, rcvBuf: 1 << 20, sndBuf: 1 << 20, maxConnections: 4096, ...cfg };
  const a = Stack.create({ ...base, mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24" });
  const b = Stack.create({ ...base, mac: "02:00:00:00:00:0b", ip: "198.18.0.2/24" });
  return { a, b, link: new MemoryLink(a.port, b.port) };
}

/** Runs the pair on the wall clock for `ms`, calling the handlers; returns the seconds elapsed. */
function spin({ a, b, link }, ha, hb, ms, onTurn = () => {}) {
  const t0 = performance.now();
  const end = t0 + ms;
  let t = t0;
  while (t < end) {
    a.poll(t);
    b.poll(t);
    link.step(t);
    a.drainEvents(ha);
    b.drainEvents(hb);
    onTurn();
    t = performance.now();
  }
  return (t - t0) / 1000;
}

function connectPair(p, port, n, opts = {}) {
  const conns = { a: [], b: [] };
  p.a.listen(port, { backlog: Math.max(128, n) });
  for (let k = 0; k < n; k++) p.b.connect("198.18.0.1", port);
  // SYNs beyond the ARP queue wait for their retransmission: give set-up a few seconds
  for (let k = 0; k < 60 && (conns.a.length < n || conns.b.length < n); k++)
    spin(
      p,
      (ev) => ev.type === "ACCEPTED" && conns.a.push(ev.conn),
      (ev) => ev.type === "CONNECTED" && conns.b.push(ev.conn),
      100,
    );
  if (conns.a.length !== n || conns.b.length !== n) throw new Error(`connected ${conns.b.length}/${n}`);
  if (opts.nodelay) for (const c of conns.b) p.b.setNoDelay(c);
  if (opts.nodelay) for (const c of conns.a) p.a.setNoDelay(c);
  return conns;
}

function bulk(seconds) {
  const p = pair();
  const {
    b: [cb],
  } = connectPair(p, 5001, 1);
  let bytes = 0;
  let blocked = false;
  const ha = (ev) => {
    if (ev.type === "DATA") {
      bytes += ev.len;
      p.a.pool.free(ev.buf);
      p.a.recvd(ev.conn, ev.len);
    }
  };
  const hb = (ev) => {
    if (ev.type === "SEND_REFUSED") {
      p.b.pool.free(ev.buf);
      blocked = true;
    } else if (ev.type === "WRITABLE") blocked = false;
  };
  const pump = () => {
    while (!blocked && p.b.commandSpace() > 16) {
      const i = p.b.pool.alloc();
      p.b.send(cb, { index: i, offset: 128, length: 1448 });
    }
  };
  spin(p, ha, hb, 300, pump); // warm up: slow start, JIT
  bytes = 0;
  const s = spin(p, ha, hb, seconds * 1000, pump);
  return (bytes * 8) / s / 1e9;
}

function rr(seconds, n) {
  const p = pair({ nodelay: true });
  const { a: ca, b: cb } = connectPair(p, 7, n, { nodelay: true });
  let tx = 0;
  const send = (s, conn) => {
    const i = s.pool.alloc();
    s.send(conn, { index: i, offset: 128, length: 64 });
  };
  const ha = (ev) => {
    if (ev.type === "DATA") {
      p.a.pool.free(ev.buf);
      p.a.recvd(ev.conn, ev.len);
      send(p.a, ev.conn); // the response
    }
  };
  const hb = (ev) => {
    if (ev.type === "DATA") {
      p.b.pool.free(ev.buf);
      p.b.recvd(ev.conn, ev.len);
      tx++;
      send(p.b, ev.conn); // the next request
    }
  };
  for (const c of cb) send(p.b, c);
  spin(p, ha, hb, 300);
  tx = 0;
  const s = spin(p, ha, hb, seconds * 1000);
  void ca;
  return tx / s;
}

function connections(seconds) {
  // TIME_WAIT kept short so that connection blocks and ports recycle (the lwIP harness aborts
  // its TIME_WAIT connections for the same reason).
  const p = pair({ mslMs: 1 });
  p.a.listen(80, { backlog: 1024 });
  let done = 0;
  const hb = (ev) => {
    if (ev.type === "CONNECTED") p.b.close(ev.conn);
    else if (ev.type === "CLOSED") {
      done++;
      p.b.connect("198.18.0.1", 80);
    } else if (ev.type === "RESET") p.b.connect("198.18.0.1", 80);
  };
  const ha = (ev) => {
    if (ev.type === "PEER_CLOSED") p.a.close(ev.conn);
  };
  p.b.connect("198.18.0.1", 80);
  spin(p, ha, hb, 300);
  done = 0;
  const s = spin(p, ha, hb, seconds * 1000);
  return done / s;
}

export async function run(args) {
  const i = args.indexOf("--seconds");
  const seconds = i >= 0 ? Number(args[i + 1]) : 2;
  const rows = [];
  const add = (system, metric, value, unit) => rows.push({ system, metric, value, unit });
  add("pmstack", "bulk_gbps", bulk(seconds), "Gbit/s");
  add("pmstack", "rr_tps_1conn", rr(seconds, 1), "tx/s");
  add("pmstack", "rr_tps_100conn", rr(seconds, 100), "tx/s");
  add("pmstack", "conn_per_s", connections(seconds), "conn/s");
  const notes = [
    "pmstack: two stacks and the link in one Node process on one core; each frame copied once (the wire), checksums on, MSS 1460 (1448 payload with timestamps), 1 MiB windows; payload bytes not touched by the app",
  ];
  const r = spawnSync(process.execPath, [`${here}lwip/build.mjs`, "--run", "--seconds", String(seconds)], {
    encoding: "utf8",
    timeout: 120_000,
  });
  const line = (r.stdout ?? "").split("\n").find((l) => l.startsWith("{"));
  if (r.status === 0 && line) {
    const l = JSON.parse(line);
    add("lwip", "bulk_gbps", l.bulk_gbps, "Gbit/s");
    add("lwip", "rr_tps_1conn", l.rr_tps_1conn, "tx/s");
    add("lwip", "rr_tps_100conn", l.rr_tps_100conn, "tx/s");
    add("lwip", "conn_per_s", l.conn_per_s, "conn/s");
    notes.push(
      `lwip ${l.config.lwip_version} (Debian liblwip-dev), native -O2, raw API, ${l.config.link}, MSS ${l.config.tcp_mss}, window ${l.config.tcp_wnd} (the largest its build allows), checksums ${l.config.checksums}; it checks every received byte`,
    );
  } else notes.push(`lwip harness not run: ${(r.stderr || r.stdout || "").trim().split("\n").pop()}`);
  return { rows, ratios: ratios(rows, "pmstack", "lwip"), notes };
}

// For the WASI replay test: classic pcap files in JavaScript (read, write, rewrite in another
// byte order or resolution), a reference replay host on the TypeScript Stack (build/index.js)
// that turns the core exactly as wasi/replay.ts does (one frame per turn at its capture time,
// the core's timers in between, a turn polls until no work and no command is left; the echo
// or discard app), and runners of build/pmstack-replay.wasm under node:wasi and under Deno (a
// child process each).

import { spawn, spawnSync } from "node:child_process";
import { Stack } from "../../build/index.js";

const root = new URL("../../", import.meta.url);
export const WASM = new URL("build/pmstack-replay.wasm", root).pathname;
export const RUN = new URL("wasi/run.mjs", root).pathname;
const DENO = new URL("node_modules/.bin/deno", root).pathname;
const CHILD = new URL("test/lib/replay-child.mjs", root).pathname;

export const MAGIC_US = 0xa1b2c3d4;
export const MAGIC_NS = 0xa1b23c4d;

/**
 * A pcap file: { magic, le, link, snaplen, records: [{ units: BigInt (us or ns since the epoch),
 * data: Uint8Array, len }] }.
 */
export function readPcap(file) {
  const bytes = new Uint8Array(file); // a plain copy: its slices compare equal to other Uint8Arrays
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let le = true;
  let magic = dv.getUint32(0, true);
  if (magic !== MAGIC_US && magic !== MAGIC_NS) {
    le = false;
    magic = dv.getUint32(0, false);
  }
  if (magic !== MAGIC_US && magic !== MAGIC_NS) throw new Error("not a pcap file");
  const per = magic === MAGIC_NS ? 1_000_000_000n : 1_000_000n;
  const out = {
    magic,
    le,
    major: dv.getUint16(4, le),
    minor: dv.getUint16(6, le),
    snaplen: dv.getUint32(16, le),
    link: dv.getUint32(20, le),
    records: [],
  };
  for (let at = 24; at < bytes.length;) {
    const cap = dv.getUint32(at + 8, le);
    out.records.push({
      units: BigInt(dv.getUint32(at, le)) * per + BigInt(dv.getUint32(at + 4, le)),
      len: dv.getUint32(at + 12, le),
      data: bytes.slice(at + 16, at + 16 + cap),
    });
    at += 16 + cap;
  }
  return out;
}

/** Writes records ({ units, data, len? }) as a pcap file of the given magic and byte order. */
export function writePcap(records, { magic = MAGIC_US, le = true, link = 1, snaplen = 262144 } = {}) {
  const per = magic === MAGIC_NS ? 1_000_000_000n : 1_000_000n;
  const size = 24 + records.reduce((a, r) => a + 16 + r.data.length, 0);
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, magic, le);
  dv.setUint16(4, 2, le);
  dv.setUint16(6, 4, le);
  dv.setUint32(16, snaplen, le);
  dv.setUint32(20, link, le);
  let at = 24;
  for (const r of records) {
    dv.setUint32(at, Number(r.units / per), le);
    dv.setUint32(at + 4, Number(r.units % per), le);
    dv.setUint32(at + 8, r.data.length, le);
    dv.setUint32(at + 12, r.len ?? r.data.length, le);
    b.set(r.data, at + 16);
    at += 16 + r.data.length;
  }
  return b;
}

/** The same records in another resolution (timestamps scaled) and byte order. */
export function convertPcap(bytes, { magic, le }) {
  const p = readPcap(bytes);
  const scale = (u) =>
    p.magic === magic ? u : magic === MAGIC_NS ? u * 1000n : u / 1000n; /* ns -> us drops the rest */
  return writePcap(
    p.records.map((r) => ({ ...r, units: scale(r.units) })),
    { magic, le, link: p.link, snaplen: p.snaplen },
  );
}

/**
 * The reference host: one Stack configured as pmstack-replay configures its core from the same
 * options ({ mac, ip, ip6, listen: [ports], app: "echo"|"discard", secret, buffers }), and the
 * replay's turn discipline. `out` collects what the core sent: { t (ms), frame }.
 */
export class RefHost {
  constructor(o) {
    this.o = o;
    this.stack = Stack.create({
      mac: o.mac,
      ip: o.ip,
      ip6: o.ip6,
      secret: o.secret ?? new Uint8Array(32),
      pool: { buffers: o.buffers ?? 4096 },
    });
    this.mac = this.stack.mac;
    this.ainSize = 2 ** this.stack.config("AIN_LOG2");
    this.now = 0;
    this.next = Infinity;
    this.out = [];
    for (const p of o.listen ?? []) this.stack.listen(p);
    this.turn(0);
  }
  turn(t) {
    const s = this.stack;
    this.now = t;
    for (let k = 0; ; k++) {
      this.next = s.poll(t);
      s.port.drainTx((segs, len) => {
        const f = new Uint8Array(len);
        let at = 0;
        for (const g of segs) {
          f.set(g, at);
          at += g.length;
        }
        this.out.push({ t, frame: f });
      });
      s.drainEvents((ev) => {
        if (ev.type === "DATA") {
          if (this.o.app === "discard") s.pool.free(ev.buf);
          else s.send(ev.conn, { index: ev.buf, offset: ev.off, length: ev.len });
          s.recvd(ev.conn, ev.len);
        } else if (ev.type === "PEER_CLOSED") s.close(ev.conn);
        else if (ev.type === "SEND_REFUSED") {
          s.pool.free(ev.buf);
          s.abort(ev.conn);
        }
      });
      if (this.next > t && s.commandSpace() === this.ainSize) return;
      if (k > 1000) throw new Error("the reference host made no progress");
    }
  }
  timersUntil(t) {
    while (this.next <= t) this.turn(Math.max(this.next, this.now));
  }
  /** A frame arriving at t ms: the core's answers land in `out` (returned: what this turn sent). */
  feed(t, frame) {
    this.timersUntil(t);
    const from = this.out.length;
    if (!this.stack.port.deliver(frame)) throw new Error("not delivered");
    this.turn(t);
    return this.out.slice(from);
  }
  finish(lingerMs = 1000) {
    this.timersUntil(this.now + lingerMs);
    this.stack.shutdown();
  }
}

/**
 * Runs pmstack-replay under node:wasi (test/lib/replay-child.mjs, one process per run), with `dir`
 * pre-opened as /data. Returns { code, stdout (bytes), stderr }.
 */
export function runNode(args, dir, { stdin } = {}) {
  const r = spawnSync(
    process.execPath,
    ["--no-warnings", CHILD, JSON.stringify({ args, preopens: { "/data": dir }, stdin })],
    {
      maxBuffer: 64 << 20,
      timeout: 60_000,
    },
  );
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
}

/** runNode without waiting: resolves to { code, stdout, stderr } (runs go in parallel). */
export function runNodeAsync(args, dir, { stdin } = {}) {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [
      "--no-warnings",
      CHILD,
      JSON.stringify({ args, preopens: { "/data": dir }, stdin }),
    ]);
    const out = [];
    const err = [];
    c.stdout.on("data", (b) => out.push(b));
    c.stderr.on("data", (b) => err.push(b));
    c.on("error", reject);
    c.on("close", (code) => resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }));
  });
}

/** Runs pmstack-replay under Deno's WASI (wasi/run.mjs) in `dir` (pre-opened as "."). */
export function runDeno(args, dir) {
  const r = spawnSync(DENO, ["run", "--allow-read", "--allow-write", "--allow-env", "--no-prompt", RUN, ...args], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    timeout: 60_000,
  });
  return { code: r.status, stderr: r.stderr, error: r.error };
}

// pmstack's own TCP/IP against the Linux kernel's, over a TAP device (with the kernel's
// checksum and TSO offloads on) inside a namespace the test makes: ping, curl GET and POST to
// a small HTTP responder on pmstack, and a transfer in each direction with matching sha256.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { Stack, TapPort, NicLoop, reserveNicQueues } from "../build/index.js";
import { Netns, netnsUnavailable, leftovers } from "./lib/netns.mjs";

const why = netnsUnavailable();
if (why) console.warn(`\n!!! interop-tap: SKIPPED, network namespaces unavailable: ${why}\n`);
const it = why ? test.skip : test;

const KERNEL = "198.18.0.1";
const US = "198.18.0.2";

async function withStack(fn) {
  const ns = new Netns("itap");
  let queues;
  const stack = Stack.create({
    mac: "02:00:00:00:00:02",
    ip: `${US}/24`,
    pool: { buffers: 8192 },
    configure: (core) => (queues = reserveNicQueues(core)),
  });
  const tap = TapPort.open(stack.pool, queues, { name: "pmtap0", netns: ns.path });
  ns.ip(["link", "set", "pmtap0", "up"]);
  ns.ip(["addr", "add", `${KERNEL}/24`, "dev", "pmtap0"]);
  const handlers = new Set();
  const turnEnd = new Set();
  const loop = new NicLoop(stack, tap, {
    onEvent: (ev) => handlers.forEach((h) => h(ev)),
    onTurnEnd: () => turnEnd.forEach((h) => h()),
  });
  loop.start();
  try {
    await fn({ ns, stack, loop, tap, on: (h) => handlers.add(h), onTurn: (h) => turnEnd.add(h) });
  } finally {
    loop.stop();
    tap.close();
    ns.cleanup();
  }
  // after the NIC is closed, nothing the stack lent out may remain
  const c = stack.pool.check();
  stack.shutdown();
  return c;
}

/** A tiny HTTP/1.1 responder: GET answers `body`; POST answers the sha256 of what it read. */
function httpResponder(stack, on, port, body) {
  const enc = new TextEncoder();
  const conns = new Map();
  stack.listen(port);
  const reply = (conn, text) => {
    const bytes = enc.encode(text);
    for (let at = 0; at < bytes.length; at += 1400) {
      const i = stack.pool.alloc();
      const n = Math.min(1400, bytes.length - at);
      stack.pool.view(i, 128, n).set(bytes.subarray(at, at + n));
      stack.send(conn, { index: i, offset: 128, length: n });
    }
  };
  on((ev) => {
    if (ev.type === "ACCEPTED") conns.set(ev.conn, { head: "", hash: null, want: -1, got: 0 });
    else if (ev.type === "DATA") {
      const c = conns.get(ev.conn);
      const bytes = stack.pool.view(ev.buf, ev.off, ev.len);
      let at = 0;
      if (c.want < 0) {
        c.head += Buffer.from(bytes).toString("latin1");
        const end = c.head.indexOf("\r\n\r\n");
        if (end >= 0) {
          const m = /content-length:\s*(\d+)/i.exec(c.head);
          c.want = m ? +m[1] : 0;
          c.hash = createHash("sha256");
          const extra = Buffer.from(c.head.slice(end + 4), "latin1");
          c.hash.update(extra);
          c.got = extra.length;
          c.method = c.head.slice(0, 4);
        }
        at = bytes.length;
      }
      if (at < bytes.length) {
        c.hash.update(bytes.subarray(at));
        c.got += bytes.length - at;
      }
      stack.pool.free(ev.buf);
      stack.recvd(ev.conn, ev.len);
      if (c.want >= 0 && c.got >= c.want && !c.done) {
        c.done = true;
        const out = c.method === "POST" ? c.hash.digest("hex") : body;
        reply(ev.conn, `HTTP/1.1 200 OK\r\nContent-Length: ${out.length}\r\nConnection: close\r\n\r\n${out}`);
        stack.close(ev.conn);
      }
    } else if (ev.type === "PEER_CLOSED") {
      const c = conns.get(ev.conn);
      if (c && !c.done) stack.close(ev.conn);
    } else if (ev.type === "CLOSED" || ev.type === "RESET") conns.delete(ev.conn);
  });
}

it("ping: the kernel gets 10 echo replies from pmstack over TAP", async () => {
  await withStack(async ({ ns, stack }) => {
    const r = await ns.spawn("ping", ["-c", "10", "-i", "0.05", "-W", "2", US]).done;
    assert.match(r.stdout, /10 received/, r.stdout + r.stderr);
    assert.ok(stack.stats().ICMP_ECHO_REPLIED >= 10);
  });
});

it("curl GET and POST to an HTTP responder on pmstack", async () => {
  const c = await withStack(async ({ ns, stack, on }) => {
    httpResponder(stack, on, 80, "hello from pmstack\n");
    const get = await ns.spawn("curl", ["-sS", "--max-time", "10", `http://${US}/`]).done;
    assert.is(get.status, 0, get.stderr);
    assert.is(get.stdout, "hello from pmstack\n");
    const body = Buffer.alloc(300_000, "pmstack!");
    const post = ns.spawn("curl", ["-sS", "--max-time", "20", "--data-binary", "@-", `http://${US}/upload`]);
    post.stdin.end(body);
    const r = await post.done;
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stdout, createHash("sha256").update(body).digest("hex"));
    assert.is(stack.stats().TCP_BAD_CSUM, 0);
  });
  assert.is(c.app, 0, "no received buffer left with the app");
});

const peer = new URL("./lib/kernel-peer.mjs", import.meta.url).pathname;
const waitFor = async (p, re, ms = 10000) => {
  const end = Date.now() + ms;
  while (!re.test(p.out)) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${re}: ${p.out}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** pmstack connects to a kernel server (active open) and reads or writes `bytes`. */
async function activeTransfer(direction, bytes) {
  let result;
  const c = await withStack(async ({ ns, stack, on, loop, onTurn }) => {
    const srv = ns.node(peer, [direction === "download" ? "source" : "sink", KERNEL, "9000", String(bytes)]);
    await waitFor(srv, /LISTENING/);
    const h = createHash("sha256");
    let got = 0;
    let conn = -1;
    let sent = 0;
    let reply = "";
    let done;
    const finished = new Promise((r) => {
      done = r;
      const t = setTimeout(
        () =>
          r(`timeout: got ${got}, sent ${sent}, ${JSON.stringify(stack.connections())} ${JSON.stringify(loop.stats)}`),
        60_000,
      );
      t.unref();
    });
    const block = (await import("./lib/kernel-peer.mjs")).seeded(1 << 20, 7);
    const sentHash = createHash("sha256");
    let refused = [];
    const pump = () => {
      // keep up to 64 buffers queued; the core refuses (SEND_REFUSED) when its queue is full
      if (conn < 0) return;
      for (let k = 0; k < 64 && sent < bytes && refused.length === 0 && stack.commandSpace() > 8; k++) {
        let i;
        try {
          i = stack.pool.alloc();
        } catch {
          return;
        }
        const n = Math.min(1448, bytes - sent);
        const at = sent % block.length;
        const piece =
          at + n <= block.length
            ? block.subarray(at, at + n)
            : Buffer.concat([block.subarray(at), block.subarray(0, n - (block.length - at))]);
        stack.pool.view(i, 128, n).set(piece);
        sentHash.update(piece);
        stack.send(conn, { index: i, offset: 128, length: n });
        sent += n;
        if (sent === bytes) stack.close(conn);
      }
    };
    on((ev) => {
      if (ev.type === "CONNECTED") {
        conn = ev.conn;
        if (direction === "upload") pump();
      } else if (ev.type === "DATA") {
        const v = stack.pool.view(ev.buf, ev.off, ev.len);
        if (direction === "download") h.update(v);
        else reply += Buffer.from(v).toString();
        got += ev.len;
        stack.pool.free(ev.buf);
        stack.recvd(ev.conn, ev.len);
      } else if (ev.type === "SEND_REFUSED") refused.push({ index: ev.buf, offset: ev.off, length: ev.len });
      else if (ev.type === "WRITABLE") {
        const again = refused;
        refused = [];
        for (const n of again) stack.send(conn, n);
        pump();
      } else if (ev.type === "PEER_CLOSED") {
        if (direction === "download") stack.close(ev.conn);
      } else if (ev.type === "CLOSED" || ev.type === "RESET") done(ev.type);
    });
    if (direction === "upload") onTurn(pump);
    stack.connect(KERNEL, 9000);
    const how = await finished;
    assert.is(how, "CLOSED", how);
    if (direction === "download") {
      await waitFor(srv, /SENT [0-9a-f]{64}/);
      assert.is(got, bytes);
      result = { ours: h.digest("hex"), theirs: /SENT ([0-9a-f]{64})/.exec(srv.out)[1] };
    } else result = { ours: sentHash.digest("hex"), theirs: reply };
    result.loop = { ...loop.stats };
  });
  assert.is(c.app, 0);
  return result;
}

it("active open: pmstack downloads 256 MiB from a kernel server, sha256 matches", async () => {
  const r = await activeTransfer("download", 256 << 20);
  assert.is(r.ours, r.theirs);
});

it("active open: pmstack uploads 256 MiB to a kernel server, sha256 matches", async () => {
  const r = await activeTransfer("upload", 256 << 20);
  assert.is(r.ours, r.theirs);
});

it("no namespace, device or process is left behind", () => {
  const l = leftovers();
  assert.equal(l.netns, []);
  assert.equal(l.links, []);
});

test.run();

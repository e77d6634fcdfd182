// Shared set-up of the interop suite (test/interop-tap.test.mjs, test/interop-xdp.test.mjs):
// pmstack's own TCP/IP on a NIC queue (TAP, or AF_XDP on one end of a veth pair) against the
// Linux kernel's TCP inside a namespace the test makes. Addresses: 198.18.3.0/24 and
// 2001:2:0:3::/64 (TAP), 198.18.4.0/24 and 2001:2:0:4::/64 (AF_XDP); devices pmtap3 (TAP),
// pmvk4 (kernel end) / pmvp4 (pmstack's end).
// Every helper here checks that, after the NIC is closed, the pool is back to its idle counts
// (every buffer free): nothing the test did leaked a buffer.
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { rmSync } from "node:fs";
import { Stack, TapPort, XdpPort, NicLoop, reserveNicQueues, TCP_REASONS } from "../../build/index.js";
import { Netns } from "./netns.mjs";
import { scratchDir } from "./tmp.mjs";
import { seeded } from "./kernel-peer.mjs";

export const BACKENDS = {
  tap: {
    label: "TAP",
    kernel: "198.18.3.1",
    us: "198.18.3.2",
    kernel6: "2001:2:0:3::1",
    us6: "2001:2:0:3::2",
    mac: "02:00:00:00:03:02",
    kdev: "pmtap3",
  },
  xdp: {
    label: "AF_XDP",
    kernel: "198.18.4.1",
    us: "198.18.4.2",
    kernel6: "2001:2:0:4::1",
    us6: "2001:2:0:4::2",
    mac: "02:00:00:00:04:02",
    kdev: "pmvk4",
    udev: "pmvp4",
  },
};

/** The fault-injecting NIC path's rates (each direction, its own seed; docs/nic.md, test 8). */
export const FAULTS = { drop: 0.02, duplicate: 0.01, reorder: 0.05, corrupt: 0.001 };

export const PEER = new URL("./kernel-peer.mjs", import.meta.url).pathname;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until a spawned process has printed something matching `re`; returns the match. */
export async function waitFor(p, re, ms = 15000) {
  const end = Date.now() + ms;
  while (!re.test(p.out)) {
    if (p.exitCode !== null && !re.test(p.out)) throw new Error(`peer exited (${p.exitCode}) before ${re}: ${p.out}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${re}: ${p.out}`);
    await sleep(5);
  }
  return re.exec(p.out);
}

/** Waits until `cond()` holds (polling every 5 ms); false on timeout. */
export async function until(cond, ms = 10000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await sleep(5);
  }
  return true;
}

/** A deadline promise that resolves (never rejects) with `what()` after `ms`; unref'd. */
function deadline(ms, what) {
  let t;
  const p = new Promise((r) => {
    t = setTimeout(() => r(what()), ms);
    t.unref();
  });
  p.cancel = () => clearTimeout(t);
  return p;
}

/** Runs the kernel peer (test/lib/kernel-peer.mjs) in the namespace with a raised fd limit. */
export function kernelPeer(ns, args, nofile = 4096) {
  return ns.spawn("sh", ["-c", `ulimit -n ${nofile} && exec "$0" "$@"`, process.execPath, PEER, ...args.map(String)]);
}

/** Drops `percent`% of the frames pmstack sends, at random, on the kernel device's ingress (nft netdev). */
function nftIngressDrop(ns, dev, percent) {
  const rules = [
    "table netdev pmstack_interop {",
    `  chain ingress { type filter hook ingress device ${dev} priority 0; numgen random mod 100 < ${percent} counter drop; }`,
    "}",
  ].join("\n");
  const r = ns.run("nft", ["-f", "-"], { input: rules });
  if (r.status !== 0) throw new Error(`nft: ${r.stderr || r.error} (install nftables: .ci/deps)`);
}

/** Packets the nft ingress rule dropped so far. */
export function nftDropped(ns) {
  const r = ns.run("nft", ["list", "table", "netdev", "pmstack_interop"]);
  const m = /counter packets (\d+)/.exec(r.stdout);
  if (!m) throw new Error(`nft list: ${r.stdout} ${r.stderr}`);
  return +m[1];
}

function openPort(backend, stack, queues, ns, v6) {
  const b = BACKENDS[backend];
  // IPv6 on the kernel's end (the namespace starts with it off), its address given without DAD
  const addr6 = () => v6 && ns.ip(["-6", "addr", "add", `${b.kernel6}/64`, "dev", b.kdev, "nodad"]);
  if (v6) ns.enableIpv6();
  if (backend === "tap") {
    const tap = TapPort.open(stack.pool, queues, { name: b.kdev, netns: ns.path });
    ns.ip(["link", "set", b.kdev, "up"]);
    ns.ip(["addr", "add", `${b.kernel}/24`, "dev", b.kdev]);
    addr6();
    return tap;
  }
  const one = ["numtxqueues", "1", "numrxqueues", "1"];
  ns.ip(["link", "add", b.kdev, ...one, "type", "veth", "peer", "name", b.udev, ...one]);
  ns.ip(["link", "set", b.udev, "address", b.mac]);
  ns.ip(["addr", "add", `${b.kernel}/24`, "dev", b.kdev]);
  addr6();
  ns.ip(["link", "set", b.kdev, "up"]);
  ns.ip(["link", "set", b.udev, "up"]);
  // AF_XDP hands the receiver no checksum metadata: the kernel end must send complete
  // checksums (tx off also turns TSO off, which an XDP-attached veth peer has off anyway)
  const r = ns.run("ethtool", ["-K", b.kdev, "tx", "off"]);
  if (r.status !== 0)
    throw new Error(`ethtool -K ${b.kdev} tx off: ${r.stderr || r.error} (install ethtool: .ci/deps)`);
  return XdpPort.open(stack.pool, queues, { ifname: b.udev, netns: ns.path });
}

/**
 * Makes a namespace, a stack on a pool file in tmpfs, the backend's NIC queue and a NicLoop,
 * runs `fn(ctx)`, tears everything down and returns `{counts, idle, loop, faults, stats}`
 * after asserting that the pool is back to its idle counts (no buffer leaked).
 * opts: `faults` (NicLoop faults {rx, tx}), `nftDrop` (percent dropped on the kernel
 * device's ingress), `stack` (more Stack.create options), `buffers`, `v6` (pmstack and the
 * kernel's end get IPv6 addresses too; `fn` runs once pmstack's duplicate address detection
 * is over).
 */
export async function withStack(backend, opts, fn) {
  const b = BACKENDS[backend];
  const ns = new Netns(`i${backend}`);
  const dir = scratchDir("tmpfs");
  let queues;
  let stack;
  let port;
  let loop;
  const out = {};
  try {
    stack = Stack.create({
      mac: b.mac,
      ip: `${b.us}/24`,
      ...(opts.v6 ? { ip6: `${b.us6}/64` } : {}),
      pool: { path: `${dir}/interop.pm`, buffers: opts.buffers ?? 8192 },
      configure: (core) => (queues = reserveNicQueues(core)),
      ...opts.stack,
    });
    out.idle = stack.pool.counts();
    port = openPort(backend, stack, queues, ns, opts.v6);
    if (opts.nftDrop) nftIngressDrop(ns, b.kdev, opts.nftDrop);
    const handlers = new Set();
    const turnEnd = new Set();
    loop = new NicLoop(stack, port, {
      onEvent: (ev) => handlers.forEach((h) => h(ev)),
      onTurnEnd: () => turnEnd.forEach((h) => h()),
      faults: opts.faults,
    });
    loop.start();
    if (opts.v6) {
      const ok = await until(() => stack.ip6Addresses().every((a) => a.state === "preferred"), 5000);
      assert.ok(ok, `IPv6 addresses not preferred: ${JSON.stringify(stack.ip6Addresses())}`);
    }
    await fn({ ns, stack, loop, port, b, on: (h) => handlers.add(h), onTurn: (h) => turnEnd.add(h) });
  } catch (e) {
    // a failed test still releases everything it made (the next test starts clean)
    loop?.stop();
    port?.close();
    ns.cleanup();
    stack?.shutdown();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  loop.stop();
  port.close();
  ns.cleanup();
  out.loop = { ...loop.stats };
  out.faults = loop.faultStats;
  out.stats = stack.stats();
  // after the NIC is closed, nothing the stack, the app or the NIC path took may remain
  out.counts = stack.pool.check();
  stack.shutdown();
  rmSync(dir, { recursive: true, force: true });
  assert.equal(out.counts, out.idle, "every buffer is back in the pool (no leak)");
  return out;
}

/** Writes `text` into fresh app buffers (1400 bytes each) and sends them on `conn`. */
export function sendText(stack, conn, text) {
  const bytes = typeof text === "string" ? new TextEncoder().encode(text) : text;
  for (let at = 0; at < bytes.length; at += 1400) {
    const i = stack.pool.alloc();
    const n = Math.min(1400, bytes.length - at);
    stack.pool.view(i, 128, n).set(bytes.subarray(at, at + n));
    stack.send(conn, { index: i, offset: 128, length: n });
  }
}

/**
 * Listens on the `open` ports and runs nmap (`args`: scan type, family, target) over ports
 * 1-1024 from the kernel side: it must find exactly the open ones, and every other port closed
 * (answered with a RST), none filtered.
 */
async function nmapFindsExactly(ns, stack, open, args) {
  for (const p of open) stack.listen(p);
  const r = await ns.spawn("nmap", ["-Pn", "-n", "-p", "1-1024", "-oG", "-", ...args]).done;
  assert.is(r.status, 0, r.stderr);
  const ports = /Ports: (.*?)(\t|$)/m.exec(r.stdout);
  assert.ok(ports, r.stdout);
  const found = ports[1].split(", ").map((e) => e.split("/"));
  assert.equal(
    found.filter((f) => f[1] === "open").map((f) => +f[0]),
    open,
    r.stdout,
  );
  assert.equal(
    found.filter((f) => f[1] !== "open"),
    [],
    "no port other than the open ones is listed",
  );
  assert.match(r.stdout, new RegExp(`Ignored State: closed \\(${1024 - open.length}\\)`), r.stdout);
}

/** A tiny HTTP/1.1 responder: GET answers `body`; POST answers the sha256 of what it read. */
export function httpResponder(stack, on, port, body) {
  const conns = new Map();
  stack.listen(port);
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
        sendText(stack, ev.conn, `HTTP/1.1 200 OK\r\nContent-Length: ${out.length}\r\nConnection: close\r\n\r\n${out}`);
        stack.close(ev.conn);
      }
    } else if (ev.type === "PEER_CLOSED") {
      const c = conns.get(ev.conn);
      if (c && !c.done) stack.close(ev.conn);
    } else if (ev.type === "CLOSED" || ev.type === "RESET") conns.delete(ev.conn);
  });
}

/**
 * The `many` responder: every connection sends "REQ <i>\n" and gets "RESP <i>\n", then pmstack
 * closes. Returns live counters {accepted, answered, closed, reset, live, peak, bad, deferred}.
 * With `barrier` n, no request is answered before n requests are in: n connections are then
 * open at once on pmstack's side.
 * A burst of requests can bring more events in one turn than the command ring has room for
 * replies: those wait in order and go out from the next tick (a command issued outside a turn
 * wakes the loop).
 */
export function manyResponder(stack, on, port, { barrier = 0 } = {}) {
  const st = { accepted: 0, requests: 0, answered: 0, closed: 0, reset: 0, live: 0, peak: 0, bad: 0, deferred: 0 };
  const lines = new Map();
  const waiting = [];
  let scheduled = false;
  const answer = (conn, line, len) => {
    const m = /^REQ (\d+)\n$/.exec(line);
    if (!m) st.bad++;
    stack.recvd(conn, len);
    sendText(stack, conn, `RESP ${m ? m[1] : "?"}\n`);
    stack.close(conn);
    st.answered++;
  };
  const flush = () => {
    scheduled = false;
    if (stack.pool.closed) return; // the test ended (failed) first
    while (waiting.length && stack.commandSpace() >= 4) answer(...waiting.shift());
    if (waiting.length) later();
  };
  const later = () => {
    if (!scheduled) {
      scheduled = true;
      setImmediate(flush);
    }
  };
  stack.listen(port, { backlog: 1024 });
  on((ev) => {
    if (ev.type === "ACCEPTED") {
      st.accepted++;
      st.live++;
      st.peak = Math.max(st.peak, st.live);
      lines.set(ev.conn, { text: "", len: 0 });
    } else if (ev.type === "DATA") {
      const c = lines.get(ev.conn);
      c.text += Buffer.from(stack.pool.view(ev.buf, ev.off, ev.len)).toString("latin1");
      c.len += ev.len;
      stack.pool.free(ev.buf);
      if (c.text.endsWith("\n")) {
        st.requests++;
        if (st.requests < barrier) waiting.push([ev.conn, c.text, c.len]);
        else if (waiting.length || stack.commandSpace() < 4) {
          st.deferred++;
          waiting.push([ev.conn, c.text, c.len]);
          later();
        } else answer(ev.conn, c.text, c.len);
      }
    } else if (ev.type === "PEER_CLOSED") {
      const c = lines.get(ev.conn);
      if (c && !c.text.endsWith("\n")) stack.close(ev.conn);
    } else if (ev.type === "CLOSED" || ev.type === "RESET") {
      if (lines.delete(ev.conn)) {
        st.live--;
        if (ev.type === "CLOSED") st.closed++;
        else st.reset++;
      }
    }
  });
  return st;
}

/** The seeded byte stream both ends use (kernel-peer.mjs `chunks`: a 1 MiB block repeated). */
const BLOCK = seeded(1 << 20, 7);
export function streamPiece(at, n) {
  const o = at % BLOCK.length;
  return o + n <= BLOCK.length
    ? BLOCK.subarray(o, o + n)
    : Buffer.concat([BLOCK.subarray(o), BLOCK.subarray(0, n - (BLOCK.length - o))]);
}

/**
 * Sends `bytes` of the seeded stream on `conn` from app buffers, as fast as the core takes
 * them (SEND_REFUSED buffers are resent in order at WRITABLE). Call `pump` at every turn's end:
 * it closes the connection once every byte was accepted. Returns {pump, onEvent, state}.
 */
export function streamSender(stack, bytes, { closeAtEnd = true } = {}) {
  const st = { conn: -1, sent: 0, hash: createHash("sha256"), refused: [], closed: false };
  let cap = stack.commandSpace();
  const pump = () => {
    if (st.conn < 0 || st.closed) return;
    const space = stack.commandSpace();
    cap = Math.max(cap, space);
    // Close only when no send is in doubt: every command ran (the ring is empty) and every
    // refusal came back (a turn drains the events of each core run before it ends). A close
    // queued behind sends the core then refuses would end the stream before their bytes.
    if (st.sent === bytes) {
      if (closeAtEnd && st.refused.length === 0 && space === cap) {
        stack.close(st.conn);
        st.closed = true;
      }
      return;
    }
    for (let k = 0; k < 64 && st.sent < bytes && st.refused.length === 0 && stack.commandSpace() > 8; k++) {
      let i;
      try {
        i = stack.pool.alloc();
      } catch {
        return;
      }
      const n = Math.min(1448, bytes - st.sent);
      const piece = streamPiece(st.sent, n);
      stack.pool.view(i, 128, n).set(piece);
      st.hash.update(piece);
      stack.send(st.conn, { index: i, offset: 128, length: n });
      st.sent += n;
    }
  };
  const onEvent = (ev) => {
    if (ev.type === "SEND_REFUSED") st.refused.push({ index: ev.buf, offset: ev.off, length: ev.len });
    else if (ev.type === "WRITABLE") {
      const again = st.refused;
      st.refused = [];
      for (const n of again) stack.send(ev.conn, n);
      pump();
    }
  };
  return { pump, onEvent, state: st };
}

/**
 * pmstack connects to a kernel server (active open) and downloads or uploads `bytes` of the
 * seeded stream; both ends hash what they sent and received. Returns {ours, theirs, ms, ...}
 * from withStack (counts checked there). opts: withStack's, plus `timeoutMs`.
 */
export async function activeTransfer(backend, direction, bytes, opts = {}) {
  const res = {};
  const r = await withStack(backend, opts, async ({ ns, stack, on, loop, onTurn, b }) => {
    const server = opts.v6 ? b.kernel6 : b.kernel;
    const srv = kernelPeer(ns, [direction === "download" ? "source" : "sink", server, 9000, bytes]);
    await waitFor(srv, /LISTENING/);
    const h = createHash("sha256");
    let got = 0;
    let consumed = 0;
    let reply = "";
    let done;
    const finished = new Promise((r) => (done = r));
    const limit = deadline(
      opts.timeoutMs ?? 60_000,
      () =>
        `timeout: got ${got}, sent ${tx.state.sent}, ${JSON.stringify(stack.connections())} ` +
        `${JSON.stringify(loop.stats)} ${JSON.stringify(loop.faultStats)}`,
    );
    const tx = streamSender(stack, bytes);
    on((ev) => {
      if (ev.type === "CONNECTED") {
        tx.state.conn = ev.conn;
        if (direction === "upload") tx.pump();
      } else if (ev.type === "DATA") {
        const v = stack.pool.view(ev.buf, ev.off, ev.len);
        if (direction === "download") h.update(v);
        else reply += Buffer.from(v).toString();
        got += ev.len;
        stack.pool.free(ev.buf);
        consumed += ev.len; // the window reopens once per turn (one command, not one per segment)
      } else if (ev.type === "PEER_CLOSED") {
        if (direction === "download") stack.close(ev.conn);
      } else if (ev.type === "CLOSED" || ev.type === "RESET") done(`${ev.type} ${ev.aux}`);
      else tx.onEvent(ev);
    });
    onTurn(() => {
      if (consumed > 0 && tx.state.conn >= 0) stack.recvd(tx.state.conn, consumed);
      consumed = 0;
      if (direction === "upload") tx.pump();
    });
    const t0 = performance.now();
    stack.connect(server, 9000);
    const how = await Promise.race([finished, limit]);
    limit.cancel();
    res.ms = performance.now() - t0;
    assert.is(how, "CLOSED 0", how);
    if (direction === "download") {
      const m = await waitFor(srv, /SENT ([0-9a-f]{64})/);
      assert.is(got, bytes);
      res.ours = h.digest("hex");
      res.theirs = m[1];
    } else {
      assert.is(tx.state.sent, bytes);
      res.ours = tx.state.hash.digest("hex");
      res.theirs = reply;
    }
    res.tcp = stack.stats();
    if (opts.nftDrop) res.nftDropped = nftDropped(ns);
  });
  return { ...r, ...res };
}

/**
 * Registers the interop tests that both backends run, on uvu's `it` (test or test.skip).
 * `sizes`: bytes of the clean transfers and of the faulted ones.
 */
export function defineInteropTests(it, backend, { bulk = 256 << 20, faulted = 256 << 20 } = {}) {
  const B = BACKENDS[backend];
  const L = B.label;

  it(`${L} ping: the kernel gets 10 echo replies from pmstack`, async () => {
    await withStack(backend, {}, async ({ ns, stack }) => {
      const r = await ns.spawn("ping", ["-c", "10", "-i", "0.05", "-W", "2", B.us]).done;
      assert.match(r.stdout, /10 received/, r.stdout + r.stderr);
      assert.ok(stack.stats().ICMP_ECHO_REPLIED >= 10);
    });
  });

  it(`${L} curl GET and POST (300 KB, sha256) to an HTTP responder on pmstack`, async () => {
    await withStack(backend, {}, async ({ ns, stack, on }) => {
      httpResponder(stack, on, 80, "hello from pmstack\n");
      const get = await ns.spawn("curl", ["-sS", "--max-time", "10", `http://${B.us}/`]).done;
      assert.is(get.status, 0, get.stderr);
      assert.is(get.stdout, "hello from pmstack\n");
      const body = Buffer.alloc(300_000, "pmstack!");
      const post = ns.spawn("curl", ["-sS", "--max-time", "20", "--data-binary", "@-", `http://${B.us}/upload`]);
      post.stdin.end(body);
      const r = await post.done;
      assert.is(r.status, 0, r.stderr);
      assert.is(r.stdout, createHash("sha256").update(body).digest("hex"));
      assert.is(stack.stats().TCP_BAD_CSUM, 0);
    });
  });

  it(`${L} active open: pmstack downloads ${bulk >> 20} MiB from a kernel server, sha256 matches`, async () => {
    const r = await activeTransfer(backend, "download", bulk);
    assert.is(r.ours, r.theirs);
    assert.is(r.tcp.TCP_BAD_CSUM, 0);
  });

  it(`${L} active open: pmstack uploads ${bulk >> 20} MiB to a kernel server, sha256 matches`, async () => {
    const r = await activeTransfer(backend, "upload", bulk);
    assert.is(r.ours, r.theirs);
  });
}

/** More of the shared tests: many connections, refused and reset connections, nmap. */
export function defineConnectionTests(it, backend, { conns = 1000 } = {}) {
  const B = BACKENDS[backend];
  const L = B.label;

  it(`${L} ${conns} concurrent connections from the kernel, each answered, none left open`, async () => {
    let st;
    const r = await withStack(
      backend,
      // room for every connection plus those in TIME_WAIT (pmstack closes first); a SYN queue
      // and backlog that take the burst (the rest come back by SYN cookies or SYN retries)
      { stack: { maxConnections: 2 * conns + 64, synQueue: 1024, mslMs: 1000 } },
      async ({ ns, stack, on }) => {
        // every request waits until all are in: `conns` connections open at once on both sides
        st = manyResponder(stack, on, 7000, { barrier: conns });
        const p = kernelPeer(ns, ["many", B.us, 7000, conns], conns + 512);
        const m = await waitFor(p, /DONE (.*)/, 60_000);
        const res = JSON.parse(m[1]);
        assert.equal(res, { ok: conns, failed: 0, errors: {} }, m[1]);
        assert.ok(await until(() => st.live === 0, 10_000), `connections still open: ${JSON.stringify(st)}`);
        assert.is(st.answered, conns);
        assert.is(st.bad, 0);
        // every block comes back once TIME_WAIT (2 MSL = 2 s here) is over
        assert.ok(await until(() => stack.connectionCount() === 0, 10_000), `${stack.connectionCount()} blocks in use`);
      },
    );
    console.log(
      `  ${L} many: ${JSON.stringify(st)}, synq overflow ${r.stats.TCP_SYNQ_OVERFLOW}, cookies ${r.stats.TCP_COOKIE_OK}`,
    );
    assert.is(st.accepted, conns);
    assert.is(st.peak, conns, "all connections were open at once");
    assert.is(r.stats.TCP_CONN_EXHAUSTED, 0);
  });

  it(`${L} refused: the kernel connecting to a closed pmstack port gets ECONNREFUSED; pmstack connecting to a closed kernel port gets RESET (refused)`, async () => {
    await withStack(backend, { stack: { mslMs: 500 } }, async ({ ns, stack, on }) => {
      stack.listen(80);
      const events = [];
      on((ev) => {
        events.push({ type: ev.type, conn: ev.conn, aux: ev.aux, tag: ev.buf });
        if (ev.type === "ACCEPTED") stack.close(ev.conn);
        if (ev.type === "PEER_CLOSED") stack.close(ev.conn);
      });
      const open = await kernelPeer(ns, ["probe", B.us, 80]).done;
      assert.match(open.stdout, /CONNECTED/, "port 80 is open: " + open.stdout);
      const closed = await kernelPeer(ns, ["probe", B.us, 81]).done;
      assert.match(closed.stdout, /ERROR ECONNREFUSED/, closed.stdout + closed.stderr);
      stack.connect(B.kernel, 9999, { tag: 42 });
      assert.ok(await until(() => events.some((e) => e.type === "RESET")), JSON.stringify(events));
      const rst = events.find((e) => e.type === "RESET");
      assert.is(rst.aux, TCP_REASONS.REFUSED, "the reason is: refused");
      assert.is(rst.tag, 42, "the RESET carries the connect's tag (in buf)");
      assert.is(stack.connection(rst.conn), null, "its connection block is freed");
      assert.not.ok(events.some((e) => e.type === "CONNECTED"));
      // and every block comes back (TIME_WAIT is 2 MSL = 1 s here)
      assert.ok(await until(() => stack.connectionCount() === 0), `${stack.connectionCount()} blocks in use`);
    });
  });

  it(`${L} reset: a kernel server aborting with RST mid-transfer; pmstack reports RESET and frees everything`, async () => {
    const total = 8 << 20;
    await withStack(backend, {}, async ({ ns, stack, on, b }) => {
      // the app frees what it gets but reopens no window: the kernel is stuck mid-stream when
      // its timer aborts the connection, 300 ms after the accept
      const srv = kernelPeer(ns, ["rstsource", b.kernel, 9001, total, 300]);
      await waitFor(srv, /LISTENING/);
      let got = 0;
      let prefixOk = true;
      let reset = null;
      let conn = -1;
      on((ev) => {
        if (ev.type === "CONNECTED") conn = ev.conn;
        else if (ev.type === "DATA") {
          const v = stack.pool.view(ev.buf, ev.off, ev.len);
          if (!streamPiece(got, ev.len).equals(v)) prefixOk = false;
          got += ev.len;
          stack.pool.free(ev.buf);
        } else if (ev.type === "RESET" || ev.type === "CLOSED") reset ??= { type: ev.type, aux: ev.aux, conn: ev.conn };
      });
      stack.connect(b.kernel, 9001);
      assert.ok(await until(() => reset !== null), `no RESET; got ${got}: ${srv.out}`);
      // the peer's "RST" line may reach us after its RST reached pmstack: wait for it
      await waitFor(srv, /RST/, 5000);
      assert.equal(reset, { type: "RESET", aux: TCP_REASONS.RESET, conn }, "RESET, reason: reset by the peer");
      assert.ok(got > 0 && got < total, `mid-transfer: ${got} of ${total} bytes`);
      console.log(`  ${L} reset mid-transfer: ${got} of ${total} bytes received before the RST`);
      assert.ok(prefixOk, "the bytes received before the RST are the stream's");
      assert.is(stack.connection(conn), null, "the connection block is freed");
      // frees everything at once: no buffer is left with the stack or the app
      const c = stack.pool.counts();
      assert.is(c.stack, 0, JSON.stringify(c));
      assert.is(c.app, 0, JSON.stringify(c));
      assert.is(c.kept, 0, JSON.stringify(c));
    });
  });

  it(`${L} reset: pmstack aborting mid-upload; the kernel reads ECONNRESET`, async () => {
    await withStack(backend, {}, async ({ ns, stack, on, onTurn, b }) => {
      const srv = kernelPeer(ns, ["sink", b.kernel, 9002]);
      await waitFor(srv, /LISTENING/);
      const tx = streamSender(stack, 64 << 20, { closeAtEnd: false });
      let closed = null;
      on((ev) => {
        if (ev.type === "CONNECTED") {
          tx.state.conn = ev.conn;
          tx.pump();
        } else if (ev.type === "CLOSED" || ev.type === "RESET") closed = { type: ev.type, aux: ev.aux };
        else tx.onEvent(ev);
      });
      onTurn(tx.pump);
      stack.connect(b.kernel, 9002);
      assert.ok(await until(() => tx.state.sent >= 4 << 20), `sent ${tx.state.sent}`);
      stack.abort(tx.state.conn);
      assert.ok(await until(() => closed !== null));
      assert.equal(closed, { type: "CLOSED", aux: 1 }, "an abort ends as CLOSED (aux 1)");
      await waitFor(srv, /ERROR ECONNRESET/);
      tx.state.conn = -1;
      for (const n of tx.state.refused) stack.pool.free(n.index);
      tx.state.refused = [];
      const c = stack.pool.counts();
      assert.is(c.stack, 0, JSON.stringify(c));
      assert.is(c.app, 0, JSON.stringify(c));
    });
  });

  it(`${L} nmap -sS from the kernel side finds exactly the open ports`, async () => {
    const open = [7, 22, 80, 443, 1000];
    await withStack(backend, {}, async ({ ns, stack }) => {
      await nmapFindsExactly(ns, stack, open, ["-sS", B.us]);
      // the half-open connections nmap left are reset by the kernel (it never opened them)
      assert.ok(await until(() => stack.connectionCount() === 0), `${stack.connectionCount()} blocks in use`);
    });
  });
}

/** The fault tests: the same transfers through NicLoop's fault injector and through an nft drop rule. */
export function defineFaultTests(it, backend, { bytes = 256 << 20, timeoutMs = 240_000 } = {}) {
  const L = BACKENDS[backend].label;
  const MiB = `${bytes / (1 << 20)} MiB`;
  const faults = { rx: { ...FAULTS, seed: 11 }, tx: { ...FAULTS, seed: 12 } };
  const show = (what, r) =>
    console.log(
      `  ${L} ${what}: ${(r.ms / 1000).toFixed(1)} s, ${((bytes * 8) / r.ms / 1e6).toFixed(2)} Gbit/s; ` +
        `faults ${JSON.stringify(r.faults)}; nft dropped ${r.nftDropped ?? "-"}; ` +
        `retransmits ${r.tcp.TCP_RETRANSMITS}, rto ${r.tcp.TCP_RTO}, bad csum ${r.tcp.TCP_BAD_CSUM + r.tcp.IP_BAD_CSUM}, ` +
        `dup ${r.tcp.TCP_DUP}, ooo ${r.tcp.TCP_OOO}`,
    );
  const checkFaults = (r) => {
    for (const d of ["rx", "tx"]) {
      const f = r.faults[d];
      // every kind of fault happened in each direction, and nothing is held any more
      for (const k of ["dropped", "duplicated", "reordered", "corrupted"])
        assert.ok(f[k] > 0, `${d} ${k}: ${JSON.stringify(f)}`);
      assert.is(f.held, 0);
    }
  };

  it(`${L} faults (2% drop, 1% dup, 5% reorder, 0.1% corrupt, both directions): ${MiB} download byte-exact`, async () => {
    const r = await activeTransfer(backend, "download", bytes, { faults, timeoutMs });
    show("faulted download", r);
    assert.is(r.ours, r.theirs);
    checkFaults(r);
  });

  it(`${L} faults (2% drop, 1% dup, 5% reorder, 0.1% corrupt, both directions): ${MiB} upload byte-exact`, async () => {
    const r = await activeTransfer(backend, "upload", bytes, { faults, timeoutMs });
    show("faulted upload", r);
    assert.is(r.ours, r.theirs);
    checkFaults(r);
  });

  it(`${L} nft ingress drop (2% of pmstack's frames, kernel side): ${MiB} download byte-exact`, async () => {
    const r = await activeTransfer(backend, "download", bytes, { nftDrop: 2, timeoutMs });
    show("nft-drop download", r);
    assert.is(r.ours, r.theirs);
    assert.ok(r.nftDropped > 0, "the rule dropped frames");
  });

  it(`${L} nft ingress drop (2% of pmstack's frames, kernel side): ${MiB} upload byte-exact`, async () => {
    const r = await activeTransfer(backend, "upload", bytes, { nftDrop: 2, timeoutMs });
    show("nft-drop upload", r);
    assert.is(r.ours, r.theirs);
    assert.ok(r.nftDropped > 0, "the rule dropped frames");
    assert.ok(r.tcp.TCP_RETRANSMITS > 0, "pmstack retransmitted what was dropped");
  });
}

/**
 * IPv6 against the kernel: ping -6, curl over IPv6 beside IPv4 on one listener, refused
 * connections both ways, nmap -6 -sS, `bytes` each way through the fault injector, and path MTU
 * discovery through a kernel router whose next link is narrower (packet too big; fragmentation
 * needed for IPv4 beside it).
 */
export function defineIp6Tests(it, backend, { bytes = 256 << 20, timeoutMs = 240_000 } = {}) {
  const B = BACKENDS[backend];
  const L = `${B.label} IPv6`;
  const MiB = `${bytes / (1 << 20)} MiB`;

  it(`${L} ping -6: the kernel gets 10 echo replies from pmstack`, async () => {
    await withStack(backend, { v6: true }, async ({ ns, stack }) => {
      const r = await ns.spawn("ping", ["-6", "-c", "10", "-i", "0.05", "-W", "2", B.us6]).done;
      assert.match(r.stdout, /10 received/, r.stdout + r.stderr);
      assert.ok(stack.stats().ICMP_ECHO_REPLIED >= 10);
      assert.ok(stack.stats().ND_NS_IN >= 1, "the kernel found pmstack by neighbor solicitation");
    });
  });

  it(`${L} curl GET and POST (300 KB, sha256) over IPv6, and GET over IPv4, to one listener`, async () => {
    await withStack(backend, { v6: true }, async ({ ns, stack, on }) => {
      const families = [];
      on((ev) => ev.type === "ACCEPTED" && families.push([ev.family, ev.addr]));
      httpResponder(stack, on, 80, "hello over six\n");
      const get = await ns.spawn("curl", ["-sS", "-g", "--max-time", "10", `http://[${B.us6}]/`]).done;
      assert.is(get.status, 0, get.stderr);
      assert.is(get.stdout, "hello over six\n");
      const body = Buffer.alloc(300_000, "pmstack6");
      const post = ns.spawn("curl", [
        "-sS",
        "-g",
        "--max-time",
        "20",
        "--data-binary",
        "@-",
        `http://[${B.us6}]/upload`,
      ]);
      post.stdin.end(body);
      const r = await post.done;
      assert.is(r.status, 0, r.stderr);
      assert.is(r.stdout, createHash("sha256").update(body).digest("hex"));
      const get4 = await ns.spawn("curl", ["-sS", "--max-time", "10", `http://${B.us}/`]).done;
      assert.is(get4.stdout, "hello over six\n", get4.stderr);
      assert.equal(families, [
        [6, B.kernel6],
        [6, B.kernel6],
        [4, B.kernel],
      ]);
      assert.is(stack.stats().TCP_BAD_CSUM, 0);
    });
  });

  it(`${L} refused: the kernel gets ECONNREFUSED from a closed pmstack port; pmstack gets RESET (refused) from a closed kernel port`, async () => {
    await withStack(backend, { v6: true, stack: { mslMs: 500 } }, async ({ ns, stack, on }) => {
      stack.listen(80);
      const events = [];
      on((ev) => {
        events.push({ type: ev.type, conn: ev.conn, aux: ev.aux });
        if (ev.type === "ACCEPTED" || ev.type === "PEER_CLOSED") stack.close(ev.conn);
      });
      const open = await kernelPeer(ns, ["probe", B.us6, 80]).done;
      assert.match(open.stdout, /CONNECTED/, open.stdout + open.stderr);
      const closed = await kernelPeer(ns, ["probe", B.us6, 81]).done;
      assert.match(closed.stdout, /ERROR ECONNREFUSED/, closed.stdout + closed.stderr);
      stack.connect(B.kernel6, 9999, { tag: 42 });
      assert.ok(await until(() => events.some((e) => e.type === "RESET")), JSON.stringify(events));
      assert.is(events.find((e) => e.type === "RESET").aux, TCP_REASONS.REFUSED);
      assert.ok(await until(() => stack.connectionCount() === 0), `${stack.connectionCount()} blocks in use`);
    });
  });

  it(`${L} nmap -6 -sS from the kernel side finds exactly the open ports`, async () => {
    const open = [7, 22, 80, 443, 1000];
    await withStack(backend, { v6: true }, async ({ ns, stack }) => {
      await nmapFindsExactly(ns, stack, open, ["-6", "-sS", B.us6]);
      assert.ok(await until(() => stack.connectionCount() === 0), `${stack.connectionCount()} blocks in use`);
    });
  });

  const faults = { rx: { ...FAULTS, seed: 21 }, tx: { ...FAULTS, seed: 22 } };
  for (const direction of ["download", "upload"]) {
    it(`${L} faults (2% drop, 1% dup, 5% reorder, 0.1% corrupt, both directions): ${MiB} ${direction} byte-exact`, async () => {
      const r = await activeTransfer(backend, direction, bytes, { v6: true, faults, timeoutMs });
      console.log(
        `  ${L} faulted ${direction}: ${(r.ms / 1000).toFixed(1)} s, ${((bytes * 8) / r.ms / 1e6).toFixed(2)} Gbit/s; ` +
          `retransmits ${r.tcp.TCP_RETRANSMITS}, bad csum ${r.tcp.TCP_BAD_CSUM}`,
      );
      assert.is(r.ours, r.theirs);
      for (const d of ["rx", "tx"]) {
        for (const k of ["dropped", "duplicated", "reordered", "corrupted"]) assert.ok(r.faults[d][k] > 0, `${d} ${k}`);
        assert.is(r.faults[d].held, 0);
      }
    });
  }

  it(`${L} path MTU: a kernel router whose route to the server has MTU 1280 sends packet too big and fragmentation needed; uploads through it over both families arrive whole`, async () => {
    // pmstack -- kernel (router, this namespace; its route onward: MTU 1280) -- veth -- kernel server (a second namespace)
    await withStack(
      backend,
      { v6: true, stack: { gateway: B.kernel, gw6: B.kernel6 } },
      async ({ ns, stack, on, onTurn }) => {
        const far = new Netns(`f${backend}`);
        try {
          far.enableIpv6();
          const [r4, f4, r6, f6] = ["198.18.5.1", "198.18.5.2", "2001:2:0:5::1", "2001:2:0:5::2"];
          ns.ip(["link", "add", "pmvr5", "type", "veth", "peer", "name", "pmvf5", "netns", far.name]);
          ns.ip(["link", "set", "pmvr5", "up"]);
          far.ip(["link", "set", "pmvf5", "up"]);
          ns.ip(["addr", "add", `${r4}/24`, "dev", "pmvr5"]);
          ns.ip(["-6", "addr", "add", `${r6}/64`, "dev", "pmvr5", "nodad"]);
          far.ip(["addr", "add", `${f4}/24`, "dev", "pmvf5"]);
          far.ip(["-6", "addr", "add", `${f6}/64`, "dev", "pmvf5", "nodad"]);
          far.ip(["route", "add", `${B.us}/32`, "via", r4]);
          far.ip(["-6", "route", "add", `${B.us6}/128`, "via", r6]);
          // both links carry 1500 bytes (the server announces MSS 1460 / 1440), but the router's
          // route to the server's network says 1280: what is bigger it refuses with ICMP
          // (a host route, more specific than the link's; locked: a router takes a route's MTU for
          // forwarded packets only when it is)
          ns.ip(["route", "add", `${f4}/32`, "dev", "pmvr5", "mtu", "lock", "1280"]);
          ns.ip(["-6", "route", "add", `${f6}/128`, "dev", "pmvr5", "mtu", "lock", "1280"]);
          ns.sh("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
          for (const [server, family, mtu] of [
            [f6, 6, 1280],
            [f4, 4, 1280],
          ]) {
            const total = 4 << 20;
            const srv = kernelPeer(far, ["sink", server, 9100, total]);
            await waitFor(srv, /LISTENING/);
            const tx = streamSender(stack, total);
            let end = null;
            let pmtu = 0;
            let reply = "";
            const watch = () => {
              if (tx.state.conn >= 0 && end === null) pmtu = stack.connection(tx.state.conn)?.pmtu ?? pmtu;
            };
            on((ev) => {
              if (end !== null) return; // this family's run is over: the next one has its own handler
              if (ev.type === "CONNECTED") {
                tx.state.conn = ev.conn;
                tx.pump();
              } else if (ev.type === "DATA") {
                reply += Buffer.from(stack.pool.view(ev.buf, ev.off, ev.len)).toString();
                stack.pool.free(ev.buf);
                stack.recvd(ev.conn, ev.len);
              } else if (ev.type === "CLOSED" || ev.type === "RESET") {
                if (ev.conn === tx.state.conn) end ??= `${ev.type} ${ev.aux}`;
              } else tx.onEvent(ev);
              watch();
            });
            onTurn(() => {
              if (end !== null) return;
              tx.pump();
              watch();
            });
            const ptb0 = stack.stats().ICMP_PTB;
            stack.connect(server, 9100);
            assert.ok(
              await until(() => end !== null, 60_000),
              `IPv${family} upload did not end: sent ${tx.state.sent}`,
            );
            assert.is(end, "CLOSED 0");
            assert.is(reply, tx.state.hash.digest("hex"), `IPv${family}: the upload arrived whole`);
            assert.ok(stack.stats().ICMP_PTB > ptb0, `IPv${family}: the router's ICMP lowered the path MTU`);
            assert.is(pmtu, mtu, `IPv${family} path MTU`);
            srv.kill("SIGKILL");
          }
        } finally {
          far.cleanup();
        }
      },
    );
  });
}

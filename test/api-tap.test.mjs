// Both application interfaces on a real NIC queue (TAP, the kernel's offloads on) with the
// Linux kernel's TCP as the peer, inside a namespace the test makes: pmtap5, kernel
// 198.18.5.1, pmstack 198.18.5.2, the pool a file on tmpfs.
//  - batch API (PasteServer on NicDriver): zero-copy echo straight from kept buffers; a server
//    that keeps everything until pool pressure closes the kernel sender's window, then releases
//    and finishes byte-exact;
//  - Node-idiom API (NetStack on NicDriver): pipe() echo server for a kernel client; connect()
//    to a kernel server read with async iteration.
//  - two stacks on the two queues of one multi-queue TAP device (one per worker, as `--workers`
//    runs them): the connections each opens take local ports whose replies the device steers to
//    its own queue (steerPorts).
// Every buffer is back in the pool afterwards. Needs root; skips loudly otherwise.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { Stack, TapPort, reserveNicQueues, NicDriver, PasteServer, NetStack } from "../build/index.js";
import { Netns, netnsUnavailable, leftovers } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { steeredConnects, waitOut as waitFor } from "./lib/steered.mjs";

const why = netnsUnavailable();
if (why) console.warn(`\n!!! api-tap: SKIPPED, network namespaces unavailable: ${why}\n`);
const it = why ? test.skip : test;

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc");
const KERNEL = "198.18.5.1";
const US = "198.18.5.2";
const DEV = "pmtap5";
const PEER = new URL("./lib/kernel-peer.mjs", import.meta.url).pathname;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A kernel client: connects, sends N seeded bytes and half-closes, hashes what comes back.
const echoClient = `
import net from "node:net";
import { createHash } from "node:crypto";
import { seeded } from ${JSON.stringify(PEER)};
const [host, port, n] = process.argv.slice(2);
const data = seeded(+n, 13);
const h = createHash("sha256");
let got = 0;
const s = net.connect(+port, host, () => s.end(data));
s.on("data", (d) => { h.update(d); got += d.length; });
s.on("end", () => console.log("ECHO " + got + " " + h.digest("hex") + " " + createHash("sha256").update(data).digest("hex")));
s.on("error", (e) => console.log("ERROR " + e.code));
`;

/** A namespace, a stack on a tmpfs pool file, its TAP queue and a NicDriver; checks the pool at the end. */
async function withTap(fn, buffers = 8192) {
  const ns = new Netns("api5");
  const dir = scratchDir("tmpfs");
  const client = `${dir}/echo-client.mjs`;
  writeFileSync(client, echoClient);
  let queues;
  const stack = Stack.create({
    mac: "02:00:00:00:05:02",
    ip: `${US}/24`,
    pool: { path: `${dir}/api.pm`, buffers },
    configure: (core) => (queues = reserveNicQueues(core)),
  });
  const idle = stack.pool.counts();
  const tap = TapPort.open(stack.pool, queues, { name: DEV, netns: ns.path });
  ns.ip(["link", "set", DEV, "up"]);
  ns.ip(["addr", "add", `${KERNEL}/24`, "dev", DEV]);
  const driver = new NicDriver(stack, tap);
  try {
    await fn({ ns, stack, driver, client });
  } finally {
    driver.stop();
    tap.close();
    ns.cleanup();
  }
  const counts = stack.pool.check();
  stack.shutdown();
  assert.equal(counts, idle, "every buffer is back in the pool");
}

it("batch API over TAP: zero-copy echo from kept buffers to a kernel client (8 MiB, sha256)", async () => {
  await withTap(async ({ ns, driver, client }) => {
    const srv = new PasteServer(driver, (b) => {
      for (const c of b.chunks) {
        const name = b.keep(c);
        b.reply(c.conn, name); // TCP references the kept buffer: the bytes leave from where they landed
        srv.release(name); // our reference; TCP's goes when the bytes are acknowledged
      }
      for (const conn of b.ended) b.close(conn);
    }).start();
    srv.listen(7);
    const p = ns.spawn(process.execPath, [client, US, "7", String(8 << 20)]);
    const [, got, h, want] = await waitFor(p, /ECHO (\d+) (\w+) (\w+)/);
    assert.is(+got, 8 << 20);
    assert.is(h, want, "the echo is byte-exact");
    assert.is(srv.stats.replyCopiedBytes, 0, "no reply byte was copied");
    assert.is(srv.stats.zeroCopyBytes, 8 << 20);
    assert.is(srv.stats.zeroCopySends, srv.stats.chunks);
    await p.done;
    for (let k = 0; k < 400 && driver.stack.connectionIds.size; k++) await sleep(5);
  });
});

it("batch API over TAP: keeping everything closes the kernel sender's window; releasing reopens it; byte-exact", async () => {
  await withTap(async ({ ns, stack, driver }) => {
    const h = createHash("sha256");
    let got = 0;
    let kept = [];
    let releasedAt = -1;
    let holding = true;
    const srv = new PasteServer(driver, (b) => {
      for (const c of b.chunks) {
        h.update(c.view);
        got += c.name.length;
        if (holding) kept.push(b.keep(c));
      }
      for (const conn of b.ended) b.reply(conn, "OK " + h.digest("hex"));
      for (const conn of b.ended) b.close(conn);
    }).start();
    srv.listen(9);
    const bytes = 24 << 20;
    const p = ns.spawn(process.execPath, [PEER, "send", US, "9", String(bytes)]);
    // wait for pressure, then for a zero window on our side (the kernel stops sending)
    for (let k = 0; k < 6000 && !srv.pressure.on; k++) await sleep(5);
    assert.ok(srv.pressure.on, `pressure: ${JSON.stringify(stack.pool.counts())}`);
    // our advertised window is rcvBuf - unread (assembly/tcp/output.ts rcvWindow): zero once the
    // withheld bytes fill the 256 KiB receive buffer
    const unread = () => stack.connections()[0]?.unread ?? 0;
    for (let k = 0; k < 6000 && unread() < 262144; k++) await sleep(5);
    assert.is(unread(), 262144, "zero window: the whole receive buffer is withheld");
    const stalledAt = got;
    await sleep(300); // the kernel probes the window; nothing gets through
    assert.is(got, stalledAt, "nothing arrives through the closed window");
    assert.ok(stalledAt < bytes, "the sender was held back");
    assert.ok(stack.pool.counts().free > 0, "the pool never ran dry");
    assert.is(stack.port.stats.rxDropNoBuffer, 0);
    // give everything back
    holding = false;
    releasedAt = got;
    for (const n of kept) srv.release(n);
    kept = [];
    const [, sent] = await waitFor(p, /SENT (\w+)/);
    const [, reply] = await waitFor(p, /REPLY OK (\w+)/);
    assert.is(got, bytes);
    assert.is(reply, sent, "byte-exact after the stall");
    assert.ok(releasedAt < bytes);
    assert.ok(srv.stats.pressureEntered >= 1);
    await p.done;
    for (let k = 0; k < 400 && driver.stack.connectionIds.size; k++) await sleep(5);
  });
});

it("Node-idiom API over TAP: pipe() echo server for a kernel client; connect() to a kernel server with async iteration", async () => {
  await withTap(async ({ ns, driver, client }) => {
    const net = new NetStack(driver);
    const srv = net.createServer({}, (s) => s.pipe(s));
    srv.listen(7);
    const p = ns.spawn(process.execPath, [client, US, "7", String(8 << 20)]);
    const [, got, h, want] = await waitFor(p, /ECHO (\d+) (\w+) (\w+)/);
    assert.is(+got, 8 << 20);
    assert.is(h, want);
    await p.done;
    // active open to the kernel: it sends 8 MiB and closes
    const src = ns.spawn(process.execPath, [PEER, "source", KERNEL, "5001", String(8 << 20)]);
    await waitFor(src, /LISTENING/);
    const sock = net.connect({ host: KERNEL, port: 5001 });
    const hash = createHash("sha256");
    let n = 0;
    for await (const chunk of sock) {
      hash.update(chunk);
      n += chunk.length;
    }
    const [, sent] = await waitFor(src, /SENT (\w+)/);
    assert.is(n, 8 << 20);
    assert.is(hash.digest("hex"), sent);
    assert.ok(net.stats.viewChunks > 0);
    srv.close();
    for (let k = 0; k < 400 && driver.stack.connectionIds.size; k++) await sleep(5);
    // the chunks were views: after a GC every one came back
    for (let k = 0; k < 50 && net.stats.viewsFinalized < net.stats.viewChunks; k++) {
      gc();
      await sleep(5);
    }
    assert.is(net.stats.viewsFinalized, net.stats.viewChunks);
  });
});

it("multi-queue TAP: each stack's connect() takes ports whose replies come to its own queue (steerPorts)", async () => {
  const ns = new Netns("apimq");
  const dir = scratchDir("tmpfs");
  const N = 2;
  const MQ = "pmtapmq5";
  const stacks = [];
  const taps = [];
  const drivers = [];
  try {
    for (let i = 0; i < N; i++) {
      let queues;
      const stack = Stack.create({
        mac: "02:00:00:00:05:02",
        ip: `${US}/24`,
        pool: { path: `${dir}/mq${i}.pm`, buffers: 4096 },
        steerPorts: { queue: i, queues: N },
        configure: (core) => (queues = reserveNicQueues(core)),
      });
      stacks.push(stack);
      // the first open makes the device, the second adds queue 1 to it
      taps.push(TapPort.open(stack.pool, queues, { name: MQ, netns: ns.path, multiQueue: true }));
    }
    assert.match(taps[0].info.steering, /eBPF/, "the steering program is attached");
    ns.ip(["link", "set", MQ, "up"]);
    ns.ip(["addr", "add", `${KERNEL}/24`, "dev", MQ]);
    // the kernel's ARP reply to one stack may come on the other's queue: they share them
    for (let i = 0; i < N; i++)
      drivers.push(new NicDriver(stacks[i], taps[i], { onNeighborFrame: (f) => drivers[(i + 1) % N].loop.inject(f) }));
    const nets = drivers.map((d) => new NetStack(d));
    await steeredConnects({ ns, nets, stacks, kernel: KERNEL, us: US, port: 5007 });
  } finally {
    for (const d of drivers) d.stop();
    for (const t of taps) t.close();
    ns.cleanup();
  }
  for (const st of stacks) st.shutdown();
});

it("no namespace, device or process is left behind", () => {
  const l = leftovers();
  assert.equal(l.netns, []);
  assert.equal(l.links, []);
});

test.run();

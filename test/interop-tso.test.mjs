// TCP segmentation offload against the Linux kernel over TAP: pmstack's TCP sends superframes
// (one header, the app's buffers chained, NEEDS_CSUM + GSO TCPv4 in the virtio-net header)
// and the kernel takes them as GSO packets. Inside a namespace the test makes: pmtap11,
// kernel 198.18.11.1, pmstack 198.18.11.2, the pool a file on tmpfs. Proves: the composition
// turns TSO on for TAP with offloads (Stack.configureOffloads) and off where it was refused;
// a 256 MiB upload from pmstack to a kernel server arrives with a matching sha256 while the
// NIC writes far fewer frames than segments (the kernel's RX packet counter on the device
// agrees); a capture on the kernel's side (dumpcap, read by tshark) shows frames larger than
// the MTU. After each transfer every buffer is back in the pool. Needs root; skips loudly.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { rmSync, existsSync } from "node:fs";
import { Stack, TapPort, NicLoop, reserveNicQueues } from "../build/index.js";
import { Netns, netnsUnavailable, leftovers } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { kernelPeer, waitFor, streamSender, sleep } from "./lib/interop.mjs";

const why = netnsUnavailable();
if (why) console.warn(`\n!!! interop-tso: SKIPPED, network namespaces unavailable: ${why}\n`);
const it = why ? test.skip : test;

const KERNEL = "198.18.11.1";
const US = "198.18.11.2";
const DEV = "pmtap11";

/** Kernel-side RX counters of the TAP device (what pmstack wrote into it). */
function kernelRx(ns) {
  const j = JSON.parse(ns.ip(["-s", "-j", "link", "show", DEV]));
  return j[0].stats64.rx;
}

/**
 * pmstack connects to a kernel `sink` and uploads `bytes`; returns hashes, stats and the
 * kernel's RX counters. `tso`: the Stack option (undefined = left to configureOffloads).
 * `capture`: packets dumpcap records on the kernel's side of the device (0 = none).
 */
async function upload(bytes, { tso, capture = 0, nftDrop = 0, timeoutMs = 240_000 } = {}) {
  const ns = new Netns("tso11");
  const dir = scratchDir("tmpfs");
  let queues;
  let stack;
  let port;
  let loop;
  const out = {};
  try {
    stack = Stack.create({
      mac: "02:00:00:00:0b:02",
      ip: `${US}/24`,
      pool: { path: `${dir}/tso.pm`, buffers: 8192 },
      configure: (core) => (queues = reserveNicQueues(core)),
      tso,
    });
    const idle = stack.pool.counts();
    port = TapPort.open(stack.pool, queues, { name: DEV, netns: ns.path });
    out.tsoOn = stack.configureOffloads(port.caps);
    out.tsoConfig = stack.tso;
    ns.ip(["link", "set", DEV, "up"]);
    ns.ip(["addr", "add", `${KERNEL}/24`, "dev", DEV]);
    let cap = null;
    const pcap = `${dir}/tso.pcapng`;
    if (capture) {
      cap = ns.spawn("dumpcap", ["-q", "-i", DEV, "-c", String(capture), "-f", "tcp dst port 9000", "-w", pcap]);
      // dumpcap says nothing on stdout with -q; give it time to open the device
      await sleep(700);
    }
    if (nftDrop) {
      const rules = [
        "table netdev pmstack_tso {",
        `  chain ingress { type filter hook ingress device ${DEV} priority 0; numgen random mod 100 < ${nftDrop} counter drop; }`,
        "}",
      ].join("\n");
      const nr = ns.run("nft", ["-f", "-"], { input: rules });
      assert.is(nr.status, 0, `nft: ${nr.stderr}`);
    }
    const srv = kernelPeer(ns, ["sink", KERNEL, 9000]);
    await waitFor(srv, /LISTENING/);
    const rx0 = kernelRx(ns);
    const tx = streamSender(stack, bytes);
    let reply = "";
    let done;
    const finished = new Promise((r) => (done = r));
    loop = new NicLoop(stack, port, {
      onEvent: (ev) => {
        if (ev.type === "CONNECTED") {
          tx.state.conn = ev.conn;
          tx.pump();
        } else if (ev.type === "DATA") {
          reply += Buffer.from(stack.pool.view(ev.buf, ev.off, ev.len)).toString();
          stack.pool.free(ev.buf);
          stack.recvd(ev.conn, ev.len);
        } else if (ev.type === "CLOSED" || ev.type === "RESET") done(`${ev.type} ${ev.aux}`);
        else tx.onEvent(ev);
      },
      onTurnEnd: () => tx.pump(),
    });
    loop.start();
    const t0 = performance.now();
    stack.connect(KERNEL, 9000);
    let timer;
    const how = await Promise.race([
      finished,
      new Promise((r) => {
        timer = setTimeout(() => r(`timeout: sent ${tx.state.sent} ${JSON.stringify(stack.connections())}`), timeoutMs);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
    out.ms = performance.now() - t0;
    assert.is(how, "CLOSED 0", how);
    assert.is(tx.state.sent, bytes);
    out.ours = tx.state.hash.digest("hex");
    out.theirs = reply;
    const rx1 = kernelRx(ns);
    out.kernelRx = { packets: rx1.packets - rx0.packets, bytes: rx1.bytes - rx0.bytes, dropped: rx1.dropped };
    out.nic = port.stats();
    if (nftDrop) {
      const m = /counter packets (\d+)/.exec(ns.run("nft", ["list", "table", "netdev", "pmstack_tso"]).stdout);
      out.nftDropped = m ? +m[1] : -1;
    }
    out.stats = stack.stats();
    if (cap) {
      const r = await Promise.race([cap.done, sleep(10000).then(() => null)]);
      assert.ok(r, "dumpcap finished");
      assert.ok(existsSync(pcap), `capture written (${r.stderr})`);
      const t = ns.run("tshark", [
        "-r",
        pcap,
        "-T",
        "fields",
        "-e",
        "frame.len",
        "-e",
        "tcp.len",
        "-e",
        "tcp.flags.push",
      ]);
      assert.is(t.status, 0, t.stderr);
      out.captured = t.stdout
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((l) => l.split("\t").map((v) => (v === "True" ? 1 : v === "False" ? 0 : Number(v))));
    }
    loop.stop();
    port.close();
    port = null;
    ns.cleanup();
    out.counts = stack.pool.check();
    assert.equal(out.counts, idle, "every buffer is back in the pool (no leak)");
  } finally {
    loop?.stop();
    port?.close();
    ns.cleanup();
    stack?.shutdown();
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

it("TAP with offloads: TSO goes on by itself; 256 MiB upload to the kernel, sha256 matches, far fewer frames than segments", async () => {
  const bytes = 256 << 20;
  const r = await upload(bytes);
  assert.ok(r.tsoOn, "configureOffloads turned TSO on for TAP with offloads");
  assert.equal(r.tsoConfig, { maxBytes: 65535, maxPieces: 40 });
  assert.is(r.theirs, r.ours, "the kernel's sha256 of what it received equals ours");
  const st = r.stats;
  const segs = Math.ceil(bytes / 1448);
  console.log(
    `  256 MiB in ${(r.ms / 1000).toFixed(2)} s (${((bytes * 8) / r.ms / 1e6).toFixed(2)} Gbit/s): ` +
      `${st.TCP_TSO_FRAMES} superframes carrying ${st.TCP_TSO_SEGS} segments, ` +
      `NIC frames written ${r.nic.txFrames}, kernel RX packets ${r.kernelRx.packets}, ` +
      `retransmits ${st.TCP_RETRANSMITS}`,
  );
  assert.ok(st.TCP_TSO_FRAMES > 0, "superframes were sent");
  assert.ok(st.TCP_TSO_SEGS >= segs * 0.9, "most segments went inside superframes");
  assert.ok(st.TCP_TSO_SEGS / st.TCP_TSO_FRAMES >= 8, "superframes of many segments");
  assert.ok(r.nic.txFrames * 5 < segs, `NIC frames (${r.nic.txFrames}) << segments (${segs})`);
  // the kernel counted what arrived on the device: superframes as one packet each
  assert.ok(r.kernelRx.packets * 5 < segs, `kernel RX packets ${r.kernelRx.packets}`);
  assert.ok(r.kernelRx.bytes >= bytes, "every byte crossed the device");
  assert.is(r.kernelRx.dropped, 0, "the kernel dropped no frame pmstack wrote");
  assert.is(r.nic.txErrors, 0, "every writev was accepted (no EINVAL from a bad virtio-net header)");
});

it("a capture on the kernel's side shows superframes larger than the MTU, cut at whole segments", async () => {
  const r = await upload(16 << 20, { capture: 200 });
  assert.is(r.theirs, r.ours);
  const big = r.captured.filter(([frame]) => frame > 1514);
  assert.ok(big.length > 0, `frames above 1514 bytes in the capture (${r.captured.length} frames)`);
  // The stack's promise (docs/tcp.md, sender SWS avoidance and TSO): a superframe is whole
  // 1448-byte segments, the kernel cutting it at gso_size, but for the one that ends the data
  // queued at that moment, which carries PSH and may end in a short segment (Nagle lets it go)
  for (const [frame, tcp, psh] of big) {
    assert.ok(frame <= 65535, `frame ${frame}`);
    assert.ok(tcp > 1448, `payload ${tcp}: more than one segment`);
    assert.ok(psh === 0 || psh === 1, `tshark gave tcp.flags.push for every frame (${psh})`);
    assert.ok(tcp % 1448 === 0 || psh === 1, `a ${tcp}-byte superframe without PSH ends in a short segment`);
  }
});

it("tso: false is kept by configureOffloads: one frame per segment", async () => {
  const bytes = 16 << 20;
  const r = await upload(bytes, { tso: false });
  assert.is(r.tsoOn, false);
  assert.is(r.theirs, r.ours);
  assert.is(r.stats.TCP_TSO_FRAMES, 0);
  assert.ok(r.nic.txFrames >= Math.ceil(bytes / 1448), "at least one frame per segment");
});

it("nft drops 2% of pmstack's frames on the kernel's ingress (a superframe is lost whole): 64 MiB upload byte-exact", async () => {
  const bytes = 64 << 20;
  const r = await upload(bytes, { nftDrop: 2 });
  assert.ok(r.tsoOn);
  assert.is(r.theirs, r.ours);
  const st = r.stats;
  console.log(
    `  64 MiB with 2% dropped in ${(r.ms / 1000).toFixed(2)} s: nft dropped ${r.nftDropped} frames, ` +
      `${st.TCP_TSO_FRAMES} superframes, retransmits ${st.TCP_RETRANSMITS} (RTO ${st.TCP_RTO}, SACK ${st.TCP_SACK_RTX})`,
  );
  assert.ok(r.nftDropped > 0, "frames were dropped");
  assert.ok(st.TCP_RETRANSMITS > 0, "and repaired");
  assert.ok(st.TCP_TSO_FRAMES > 0);
});

it("no namespace, device or process is left behind", () => {
  const l = leftovers();
  assert.equal(l.netns, []);
  assert.equal(l.links, []);
});

test.run();

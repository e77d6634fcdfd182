// Two stacks on the two queues of one veth pair over AF_XDP (one per worker, as
// `pmstack kv --workers 2 --nic xdp` runs them), with the Linux kernel's TCP as the peer, in two
// namespaces the test makes (as a container's veth pair): the kernel's end pmxk6, in the
// second, has 198.18.6.1; pmstack answers for 198.18.6.2 on pmxp6, in the first. The two sockets share the device's XDP program (one map, a socket per
// queue); the egress program on the kernel's end sends each flow to the queue the steering hash
// of its addresses and ports names (tapQueueOf). Checked:
//  - connections the kernel opens spread over both stacks, each on the stack of its hash;
//  - connections each stack opens (steerPorts) get local ports whose replies come to its queue;
//  - every echo is byte-exact, and neither stack saw a segment of the other's connections.
// Needs root; skips loudly otherwise.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Stack, XdpPort, reserveNicQueues, NicDriver, NetStack, tapQueueOf } from "../build/index.js";
import { Netns, netnsUnavailable, leftovers } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { steeredConnects, waitOut as waitFor } from "./lib/steered.mjs";

const why = netnsUnavailable();
if (why) console.warn(`\n!!! api-xdp: SKIPPED, network namespaces unavailable: ${why}\n`);
const it = why ? test.skip : test;

const KERNEL = "198.18.6.1";
const US = "198.18.6.2";
const MAC = "02:00:00:00:06:02";
const N = 2;

// 40 kernel connections to port 5009, each sending 32 KiB + k bytes and reading the echo;
// prints each one's local port and whether the echo matched
const kernelClients = `
const net = require("node:net");
const { createHash } = require("node:crypto");
let left = 40;
const out = [];
for (let k = 0; k < 40; k++) {
  const data = Buffer.concat(Array.from({ length: 1024 + k }, () => createHash("sha256").update("c" + k).digest()));
  const got = [];
  const s = net.connect(5009, "${US}", () => s.end(data));
  s.on("data", (d) => got.push(d));
  s.on("error", (e) => { console.log("ERROR " + e.code); process.exit(1); });
  s.on("end", () => {
    out.push(s.localPort + ":" + (Buffer.concat(got).equals(data) ? 1 : 0));
    if (--left === 0) console.log("DONE " + out.join(","));
  });
}
`;

it("AF_XDP on a two-queue veth: flows steered both ways, each stack's connections on its own queue", async () => {
  const ns = new Netns("apixdp");
  const kns = new Netns("apixdpk");
  const dir = scratchDir("tmpfs");
  const stacks = [];
  const ports = [];
  const drivers = [];
  try {
    const two = ["numrxqueues", String(N), "numtxqueues", String(N)];
    ns.ip(["link", "add", "pmxk6", ...two, "type", "veth", "peer", "name", "pmxp6", ...two]);
    ns.ip(["link", "set", "pmxk6", "netns", kns.name]);
    ns.ip(["link", "set", "pmxp6", "address", MAC]);
    kns.ip(["addr", "add", `${KERNEL}/24`, "dev", "pmxk6"]);
    // AF_XDP gives the receiver no checksum metadata: the kernel's end sends complete checksums
    const k = kns.run("ethtool", ["-K", "pmxk6", "tx", "off"]);
    assert.is(k.status, 0, `ethtool -K pmxk6 tx off: ${k.stderr}`);
    kns.ip(["link", "set", "pmxk6", "up"]);
    ns.ip(["link", "set", "pmxp6", "up"]);
    for (let i = 0; i < N; i++) {
      let queues;
      const stack = Stack.create({
        mac: MAC,
        ip: `${US}/24`,
        pool: { path: `${dir}/xq${i}.pm`, buffers: 4096 },
        steerPorts: { queue: i, queues: N },
        configure: (core) => (queues = reserveNicQueues(core)),
      });
      stacks.push(stack);
      ports.push(
        XdpPort.open(stack.pool, queues, {
          ifname: "pmxp6",
          queue: i,
          netns: ns.path,
          steer: { peer: "pmxk6", queues: N, netns: kns.path },
        }),
      );
    }
    for (const p of ports) assert.match(p.info.steering, /eBPF on pmxk6's egress, 2 queues/);
    // one program for the device, shared by both sockets
    assert.is(ns.ip(["link", "show", "pmxp6"]).match(/pmstack_xsk/g).length, 1);
    for (let i = 0; i < N; i++)
      drivers.push(new NicDriver(stacks[i], ports[i], { onNeighborFrame: (f) => drivers[(i + 1) % N].loop.inject(f) }));
    const nets = drivers.map((d) => new NetStack(d));
    // both stacks listen on 5009 and echo; each counts what it accepted
    const accepted = [[], []];
    const servers = nets.map((net, i) =>
      net
        .createServer({}, (s) => {
          accepted[i].push(s.remotePort);
          s.pipe(s);
        })
        .listen(5009),
    );
    const clients = kns.spawn(process.execPath, ["-e", kernelClients]);
    const [, list] = await waitFor(clients, /DONE (\S+)/);
    const done = list.split(",").map((x) => x.split(":").map(Number));
    assert.is(done.length, 40);
    for (const [, same] of done) assert.is(same, 1, "echoed byte-exact");
    for (let i = 0; i < N; i++) {
      assert.ok(accepted[i].length > 0, `stack ${i} accepted some of the kernel's connections`);
      for (const port of accepted[i]) {
        const q = tapQueueOf({ localAddress: US, localPort: 5009, remoteAddress: KERNEL, remotePort: port }, N);
        assert.is(q, i, `the kernel's connection from port ${port} came to queue ${q}'s stack`);
      }
    }
    assert.is(accepted[0].length + accepted[1].length, 40);
    for (const s of servers) s.close();

    await steeredConnects({ ns: kns, nets, stacks, kernel: KERNEL, us: US, port: 5010 });
  } finally {
    for (const d of drivers) d.stop();
    for (const p of ports) p.close();
    kns.cleanup();
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

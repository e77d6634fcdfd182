// The check both multi-queue tests (TAP, AF_XDP on a veth pair) make of connections that stacks
// on the queues of one device open: a kernel echo server in `ns`, 24 connections from each
// stack (NetStack) echoing 64 KiB + k seeded bytes byte-exact, every local port one whose
// replies the steering hash (tapQueueOf) gives to the stack's own queue, and no segment answered
// with a reset for no connection (TCP_NO_CONN). Waits for the connections to close.
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { tapQueueOf } from "../../build/index.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until process `p` (a Netns.spawn) has printed a match of `re`: the match. */
export async function waitOut(p, re, ms = 60_000) {
  const end = Date.now() + ms;
  while (!re.test(p.out)) {
    if (p.exitCode !== null) throw new Error(`peer exited (${p.exitCode}) before ${re}: ${p.out}`);
    if (Date.now() > end) throw new Error(`timed out waiting for ${re}: ${p.out}`);
    await sleep(5);
  }
  return re.exec(p.out);
}

export async function steeredConnects({ ns, nets, stacks, kernel, us, port }) {
  const queues = nets.length;
  const echo = ns.spawn(process.execPath, [
    "-e",
    `require("node:net").createServer((s) => s.pipe(s)).listen(${port}, "${kernel}", () => console.log("LISTENING"))`,
  ]);
  await waitOut(echo, /LISTENING/);
  const one = (net, k) =>
    new Promise((resolve, reject) => {
      const data = createHash("sha256").update(String(k)).digest();
      const body = Buffer.concat(Array.from({ length: 2048 + k }, () => data));
      const sock = net.connect({ host: kernel, port }, () => sock.end(body));
      const got = [];
      sock.on("data", (d) => got.push(Buffer.from(d)));
      sock.on("error", reject);
      sock.on("end", () => resolve({ port: sock.localPort, same: Buffer.concat(got).equals(body) }));
    });
  const results = await Promise.all(nets.map((net) => Promise.all(Array.from({ length: 24 }, (_, k) => one(net, k)))));
  results.forEach((rs, i) => {
    for (const r of rs) {
      assert.ok(r.same, "echoed byte-exact");
      const q = tapQueueOf({ localAddress: us, localPort: r.port, remoteAddress: kernel, remotePort: port }, queues);
      assert.is(q, i, `stack ${i}'s port ${r.port} is steered to queue ${q}`);
    }
    assert.is(new Set(rs.map((r) => r.port)).size, 24);
  });
  // nothing came to the wrong stack: neither answered a segment of the other's with a RST
  for (const st of stacks) assert.is(st.stats().TCP_NO_CONN, 0, "a segment for no connection (answered with a RST)");
  for (let k = 0; k < 400 && stacks.some((st) => st.connectionIds.size); k++) await sleep(5);
}

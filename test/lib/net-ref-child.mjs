// A child process for api-net-compat.test.mjs: whether pmstack's sockets and servers keep the
// process alive as node:net's do. Each scenario sets something up, prints what it saw, and then
// leaves it to the event loop: the process either exits by itself (nothing ref'd holds it) or
// lives on until an unref'd timer prints "alive" and exits.
//
//   node net-ref-child.mjs idle-unref         a connection with TCP keepalive probing (core
//       timers) and an idle timeout, both sockets and the server unref'd: exits
//   node net-ref-child.mjs idle-ref           the same, the client socket left ref'd: alive
//   node net-ref-child.mjs agent              node:http server (its sockets unref'd) and a
//       keep-alive Agent client: after the response the Agent's free socket is unref'd: exits
//   node net-ref-child.mjs tap-unref NETNS DIR    a stack on a TAP queue in NETNS (pool in DIR),
//       a server listening, then unref'd: exits (the NIC's poll handle is unref'd)
//   node net-ref-child.mjs tap-ref NETNS DIR      the same, the server left ref'd: alive
import http from "node:http";
import { once } from "node:events";
import {
  MemoryPair,
  NetStack,
  NicDriver,
  Stack,
  TapPort,
  createMemoryNet,
  reserveNicQueues,
} from "../../build/index.js";

const [mode, netns, dir] = process.argv.slice(2);
const ALIVE_MS = 1500;
const say = (s) => process.stdout.write(`${s}\n`);
process.on("exit", (code) => say(`exit ${code}`));

async function idle(unrefClient) {
  const pair = MemoryPair.create({ buffers: 1024 });
  const net = createMemoryNet(pair);
  const srv = net.b.createServer();
  const accepted = once(srv, "connection");
  srv.listen(7);
  const c = net.a.connect({ host: "198.18.0.2", port: 7 });
  await once(c, "connect");
  const [s] = await accepted;
  for (const sock of [c, s]) {
    sock.setKeepAlive(true, 20); // probes every 20 ms: the stacks' timers stay busy
    sock.setTimeout(60_000); // and an idle timer
  }
  say(`connected hasRef a=${net.a.hasRef()} b=${net.b.hasRef()}`);
  srv.unref();
  s.unref();
  if (unrefClient) c.unref();
  say(`after unref hasRef a=${net.a.hasRef()} b=${net.b.hasRef()}`);
}

async function agent() {
  const pair = MemoryPair.create({ buffers: 1024 });
  const net = createMemoryNet(pair);
  const server = http.createServer((req, res) => res.end("ok"));
  server.on("connection", (s) => s.unref()); // as a same-process node:net server's socket would need too
  const srv = net.b.createServer({}, (s) => server.emit("connection", s));
  srv.listen(80);
  srv.unref();
  const ag = new http.Agent({ keepAlive: true }); // keeps the socket, with TCP keepalive probes
  ag.createConnection = () => net.a.connect({ host: "198.18.0.2", port: 80 });
  const [res] = await once(http.get({ agent: ag, host: "198.18.0.2", port: 80, path: "/" }), "response");
  res.resume();
  await once(res, "end");
  await new Promise((r) => setImmediate(r)); // the Agent takes the socket back ('free')
  const free = Object.values(ag.freeSockets).flat().length;
  say(`response ${res.statusCode} free=${free} hasRef a=${net.a.hasRef()}`);
}

async function tap(unref) {
  let queues;
  const stack = Stack.create({
    mac: "02:00:00:00:05:12",
    ip: "198.18.5.18/28",
    pool: { path: `${dir}/ref.pm`, buffers: 1024 },
    configure: (core) => (queues = reserveNicQueues(core)),
  });
  const port = TapPort.open(stack.pool, queues, { name: "pmref5", netns });
  const net = new NetStack(new NicDriver(stack, port));
  const srv = net.createServer();
  srv.listen(7);
  await once(srv, "listening");
  say(`listening hasRef=${net.hasRef()}`);
  if (unref) srv.unref();
  say(`after unref hasRef=${net.hasRef()}`);
}

setTimeout(() => {
  say("alive");
  process.exit(0);
}, ALIVE_MS).unref();

if (mode === "idle-unref") await idle(true);
else if (mode === "idle-ref") await idle(false);
else if (mode === "agent") await agent();
else if (mode === "tap-unref") await tap(true);
else if (mode === "tap-ref") await tap(false);
else throw new Error(`net-ref-child: unknown mode ${mode}`);

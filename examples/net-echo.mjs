// The Node-idiom example from docs/api.md: createServer/connect with Duplex sockets, on two
// in-process stacks (MemoryPair). The server upper-cases lines through a pipeline; the client
// writes, half-closes and reads the answer with async iteration. Data chunks are zero-copy
// views of the PM buffers the bytes landed in. Run: node examples/net-echo.mjs
// (On a NIC: `new NetStack(new NicDriver(stack, tap))` instead of createMemoryNet; docs/api.md.)
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { MemoryPair, createMemoryNet, createServer, connect } from "pmstack";

const pair = MemoryPair.create({ buffers: 4096 }); // 198.18.0.1 (a) and 198.18.0.2 (b)
const net = createMemoryNet(pair); // { a: NetStack, b: NetStack }, running on the event loop

const upper = () =>
  new Transform({
    transform(chunk, _enc, cb) {
      cb(null, chunk.toString("latin1").toUpperCase()); // the chunk is a view of PM: read it here
    },
  });
const server = createServer({ stack: net.b }, (socket) => {
  console.log(`server: connection from ${socket.remoteAddress}:${socket.remotePort}`);
  pipeline(socket, upper(), socket).catch((e) => console.error("server:", e.message));
});
server.listen(7, () => console.log(`server: listening on ${server.address().address}:${server.address().port}`));

const socket = connect({ stack: net.a, host: "198.18.0.2", port: 7 }, () => {
  socket.write("hello, persistent memory\n");
  socket.end("zero-copy views, Node streams\n"); // half-close: the server's pipeline ends its side
});
let answer = "";
for await (const chunk of socket) answer += chunk.toString("latin1");
for (const line of answer.trimEnd().split("\n")) console.log(`client: ${line}`);

// a closed port: the stack's RST turns into the usual error code
const refused = connect({ stack: net.a, host: "198.18.0.2", port: 8 });
refused.on("error", (e) => console.log(`client: connect to port 8: ${e.code}`));
await new Promise((r) => refused.once("close", r));

server.close(() => {
  console.log(`server: closed; ${net.b.stats.viewChunks} chunks lent as views, ${net.b.stats.copiedChunks} copied`);
  net.a.close();
  net.b.close();
  pair.shutdown();
});

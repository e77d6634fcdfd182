// A RESP client for large values (run inside a test namespace): `node kv-upload.mjs HOST PORT
// KEY FILE` sends SET KEY <the file's bytes>, streamed from the file under TCP backpressure (no
// copy of it in memory), and prints the server's reply line ("+OK", "-OOM ...") once it comes.
// Exit 0 with a reply, 1 on a socket error, 2 if the server closed without replying.
import net from "node:net";
import { createReadStream, statSync } from "node:fs";

const [host, port, key, file, localPort] = process.argv.slice(2);
const size = statSync(file).size;
const k = Buffer.from(key);
// LOCALPORT (optional): the connection's own port (a test picks a worker's queue with it)
const s = net.connect({ port: Number(port), host, ...(localPort ? { localPort: Number(localPort) } : {}) }, () => {
  s.write(Buffer.concat([Buffer.from(`*3\r\n$3\r\nSET\r\n$${k.length}\r\n`), k, Buffer.from(`\r\n$${size}\r\n`)]));
  const rs = createReadStream(file, { highWaterMark: 1 << 20 });
  rs.pipe(s, { end: false });
  rs.on("end", () => s.write("\r\n"));
});
let got = "";
s.on("data", (d) => {
  got += d.toString("latin1");
  const e = got.indexOf("\r\n");
  if (e >= 0) process.stdout.write(got.slice(0, e) + "\n", () => process.exit(0));
});
s.on("error", (e) => {
  process.stderr.write(`${e.code}\n`);
  process.exit(1);
});
s.on("close", () => process.exit(2));

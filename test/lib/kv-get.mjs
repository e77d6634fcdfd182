// A RESP client for large values (run inside a test namespace): `node kv-get.mjs HOST PORT KEY`
// sends GET KEY and prints one line of JSON: {"nil":true}, or {"len":N,"sha256":"..."} of the
// value, hashed as it streams in (redis-cli --raw takes seconds per 100 MiB; this does not).
// Exit 0 with an answer, 1 on a socket error or an error reply, 2 if the server closed first.
import net from "node:net";
import { createHash } from "node:crypto";

const [host, port, key, localPort] = process.argv.slice(2);
const k = Buffer.from(key);
// LOCALPORT (optional): the connection's own port (a test picks a worker's queue with it)
const s = net.connect({ port: Number(port), host, ...(localPort ? { localPort: Number(localPort) } : {}) }, () =>
  s.write(Buffer.concat([Buffer.from(`*2\r\n$3\r\nGET\r\n$${k.length}\r\n`), k, Buffer.from("\r\n")])),
);
let head = Buffer.alloc(0);
let left = -1; // value bytes still to come (-1: reading the "$len" line)
let len = 0;
const h = createHash("sha256");
const answer = (o, code = 0) => process.stdout.write(JSON.stringify(o) + "\n", () => process.exit(code));
s.on("data", (d) => {
  if (left < 0) {
    head = Buffer.concat([head, d]);
    const e = head.indexOf("\r\n");
    if (e < 0) return;
    const line = head.subarray(0, e).toString("latin1");
    if (line === "$-1") return answer({ nil: true });
    if (line[0] !== "$") return answer({ error: line }, 1);
    left = len = Number(line.slice(1));
    d = head.subarray(e + 2);
  }
  const take = Math.min(left, d.length);
  h.update(d.subarray(0, take));
  left -= take;
  if (left === 0) answer({ len, sha256: h.digest("hex") });
});
s.on("error", (e) => {
  process.stderr.write(`${e.code}\n`);
  process.exit(1);
});
s.on("close", () => process.exit(2));

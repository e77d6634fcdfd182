// For test/cli.test.mjs (run inside the test's namespace): holds N connections to a RESP server
// at HOST:PORT, each answering PING, then tries one more past the server's --max-conns and
// reports how it ended ("refused" at once, or "timeout": no answer within 1.5 s); checks the N
// still answer, closes one and connects again (the freed place is taken). Prints one JSON line.
//   node conn-limit-client.mjs HOST PORT N
import net from "node:net";

const [host, port, nArg] = process.argv.slice(2);
const n = Number(nArg);

function open(timeoutMs = 5000) {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect({ host, port: Number(port) });
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ how: "timeout", ms: performance.now() - t0 });
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(timer);
      resolve({ how: "connected", s, ms: performance.now() - t0 });
    });
    s.once("error", (e) => {
      clearTimeout(timer);
      resolve({ how: e.code === "ECONNREFUSED" ? "refused" : e.code, ms: performance.now() - t0 });
    });
  });
}

function ping(s) {
  return new Promise((resolve, reject) => {
    let got = "";
    const on = (d) => {
      got += d;
      if (got.includes("\r\n")) {
        s.off("data", on);
        resolve(got);
      }
    };
    s.on("data", on);
    s.once("error", reject);
    s.write("PING\r\n");
  });
}

const held = [];
for (let i = 0; i < n; i++) {
  const r = await open();
  if (r.how !== "connected") throw new Error(`connection ${i}: ${r.how}`);
  held.push(r.s);
  if ((await ping(r.s)) !== "+PONG\r\n") throw new Error(`connection ${i}: no PONG`);
}
const extra = await open(1500);
extra.s?.destroy();
const pongs = (await Promise.all(held.map(ping))).filter((p) => p === "+PONG\r\n").length;
// one closes (we close first: TIME_WAIT is ours, the server's place is free once our FIN is in)
held.pop().destroy();
await new Promise((r) => setTimeout(r, 300));
const again = await open(5000);
const againPong = again.s ? await ping(again.s) : null;
again.s?.destroy();
for (const s of held) s.destroy();
console.log(
  JSON.stringify({
    extra: extra.how,
    extraMs: Math.round(extra.ms),
    pongs,
    again: again.how,
    againPong: againPong === "+PONG\r\n",
  }),
);

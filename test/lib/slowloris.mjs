// For test/e2e-slowloris.test.mjs (run inside the test's namespace): N connections to HOST:PORT,
// each sending one more byte of a request that never ends every EVERY_MS (an HTTP head, or a
// RESP SET whose value never completes), until the server ends the connection or MAX_MS pass.
// Prints one JSON line: how many opened, how many the server ended (RST or FIN), and how long
// they lived (from the first byte to their end).
//   node slowloris.mjs http|resp HOST PORT N EVERY_MS MAX_MS
import net from "node:net";

const [kind, host, portArg, nArg, everyArg, maxArg] = process.argv.slice(2);
const [port, n, every, maxMs] = [portArg, nArg, everyArg, maxArg].map(Number);
const text =
  kind === "http"
    ? "GET /slowloris HTTP/1.1\r\nHost: pmstack\r\nX-Slow: " + "a".repeat(4000)
    : "*3\r\n$3\r\nSET\r\n$8\r\nslowloris\r\n$1000000\r\n" + "x".repeat(4000);
const bytes = Buffer.from(text);

const conns = [];
let refusedOrFailed = 0;
const t0 = performance.now();
// open in batches, so that the opening is not itself a flood
for (let i = 0; i < n; i += 250) {
  await Promise.all(
    Array.from({ length: Math.min(250, n - i) }, () => {
      return new Promise((resolve) => {
        const c = { s: net.connect({ host, port }), at: 0, first: 0, end: 0, how: "" };
        c.s.setNoDelay(true);
        c.s.once("connect", () => {
          conns.push(c);
          resolve();
        });
        c.s.on("error", (e) => {
          if (!c.first) {
            refusedOrFailed++;
            resolve();
          }
          c.how ||= e.code ?? "error";
        });
        c.s.on("data", () => {}); // an error reply before the end is allowed
        c.s.on("close", () => {
          c.end ||= performance.now();
          c.how ||= "fin";
        });
      });
    }),
  );
}
const opened = conns.length;
const openMs = performance.now() - t0;
// one byte each every `every` ms, spread over the interval
await new Promise((resolve) => {
  const tick = () => {
    const now = performance.now();
    let live = 0;
    for (const c of conns) {
      if (c.end || c.s.destroyed) continue;
      live++;
      if (c.at < bytes.length) {
        c.first ||= now;
        c.s.write(bytes.subarray(c.at, c.at + 1));
        c.at++;
      }
    }
    if (live === 0 || now - t0 > maxMs) return resolve();
    setTimeout(tick, every);
  };
  tick();
});
const lives = conns.filter((c) => c.end).map((c) => c.end - c.first);
const stillOpen = conns.filter((c) => !c.end).length;
for (const c of conns) c.s.destroy();
const by = {};
for (const c of conns) if (c.end) by[c.how] = (by[c.how] ?? 0) + 1;
console.log(
  JSON.stringify({
    opened,
    openMs: Math.round(openMs),
    failed: refusedOrFailed,
    ended: lives.length,
    stillOpen,
    by,
    minLifeMs: Math.round(Math.min(...lives)),
    maxLifeMs: Math.round(Math.max(...lives)),
    maxBytesSent: Math.max(...conns.map((c) => c.at)),
  }),
);

// End to end: slowloris at scale. `pmstack httpd` and `pmstack kv` (a second process in a
// namespace this test makes, --idle-timeout 3) take 3,000 kernel connections that each send one
// more byte of a request that never ends every second (an HTTP head; a RESP SET whose value
// never completes), while a real client (curl, redis-cli) keeps being served. Every trickling
// connection is reset once its request overstays the timeout (not before it), the server's
// memory stays bounded, its stats count each reset, and every buffer comes back.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Netns, netnsUnavailable, leftovers } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { startCli, spawnIn } from "./lib/appserver.mjs";

const why = netnsUnavailable();
if (why) console.warn(`\n!!! e2e-slowloris: SKIPPED, network namespaces unavailable: ${why}\n`);
const it = why ? test.skip : test;

const SLOW = fileURLToPath(new URL("./lib/slowloris.mjs", import.meta.url));
const N = 3000;
const TIMEOUT_S = 3;
const MiB = 1 << 20;

for (const [app, net, kind, port] of [
  ["httpd", { dev: "pmslow0", us: "198.18.64.2", peer: "198.18.64.1" }, "http", 80],
  ["kv", { dev: "pmslow1", us: "198.18.65.2", peer: "198.18.65.1" }, "resp", 6379],
]) {
  it(`${app}: ${N} slowloris connections (a byte a second each) are reset after --idle-timeout ${TIMEOUT_S}, memory bounded, a real client served throughout, no buffer leaked`, async () => {
    const ns = new Netns(`slow${app}`);
    const dir = scratchDir("tmpfs");
    let srv;
    try {
      srv = await startCli(ns, app, {
        pm: join(dir, `${app}.pm`),
        ...net,
        args: ["--size", "128M", "--idle-timeout", String(TIMEOUT_S), "--max-conns", "8192"],
      });
      const rss0 = srv.rss();
      const slow = ns.spawn("sh", [
        "-c",
        `ulimit -n 8192 && exec "$0" "$@"`,
        process.execPath,
        SLOW,
        kind,
        net.us,
        String(port),
        String(N),
        "1000",
        "30000",
      ]);
      // a real client meanwhile: a write and a read back, again and again until the slowloris ends
      let served = 0;
      const failures = [];
      let peak = 0;
      let done = false;
      slow.done.then(() => (done = true));
      for (let i = 0; !done; i++) {
        const v = `value ${i}`;
        const [w, r] =
          app === "httpd"
            ? [
                ["curl", ["-sS", "--max-time", "5", "-d", v, `http://${net.us}/k${i}`]],
                ["curl", ["-sS", "--max-time", "5", `http://${net.us}/k${i}`]],
              ]
            : [
                ["redis-cli", ["-h", net.us, "SET", `k${i}`, v]],
                ["redis-cli", ["-h", net.us, "GET", `k${i}`]],
              ];
        const wr = await spawnIn(ns, w[0], w[1], { timeoutMs: 10_000 });
        const rd = await spawnIn(ns, r[0], r[1], { timeoutMs: 10_000 });
        if (wr.status === 0 && rd.status === 0 && rd.stdout.trim() === v) served++;
        else failures.push(`${wr.stdout}${wr.stderr} / ${rd.stdout}${rd.stderr}`);
        peak = Math.max(peak, srv.rss());
        await new Promise((res) => setTimeout(res, 200));
      }
      const res = await slow.done;
      assert.is(res.status, 0, res.stderr);
      const s = JSON.parse(res.stdout);
      assert.is(s.opened, N, res.stdout);
      assert.is(s.failed, 0, res.stdout);
      assert.is(s.stillOpen, 0, `every trickling connection was ended: ${res.stdout}`);
      assert.is(s.ended, N);
      assert.ok(s.minLifeMs >= TIMEOUT_S * 1000 - 100, `none ended before the timeout: ${res.stdout}`);
      // the timeout, the sweep's second, and a loaded machine's slack
      assert.ok(s.maxLifeMs < TIMEOUT_S * 1000 + 5000, `each ended soon after the timeout: ${res.stdout}`);
      assert.is(failures.length, 0, `the real client failed: ${failures.slice(0, 3).join("; ")}`);
      assert.ok(served >= 5, `the real client was served ${served} times`);
      const st = await srv.idle(20_000);
      assert.is(st.app.idleAborts, N, JSON.stringify(st.app));
      assert.is(st.pool.free, st.pool.total - st.pool.kept - st.pool.nic, JSON.stringify(st.pool));
      assert.ok(peak - rss0 < 192 * MiB, `the server's memory grew by ${((peak - rss0) / MiB).toFixed(0)} MiB`);
      console.log(
        `  ${app}: ${N} trickling connections lived ${s.minLifeMs}..${s.maxLifeMs} ms (ended ${JSON.stringify(s.by)}); real client served ${served}x; rss +${((peak - rss0) / MiB).toFixed(0)} MiB`,
      );
      assert.is((await srv.kill("SIGTERM")).status, 0);
      srv = null;
    } finally {
      await srv?.kill("SIGKILL");
      ns.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

it("no namespace or device left behind", () => {
  const l = leftovers();
  assert.equal(l.netns, []);
});

test.run();

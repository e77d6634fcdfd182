// serveWorkers under Deno (its node:worker_threads, the same Node-API addon in every worker
// thread): kv and httpd with two workers each, on a multi-queue TAP device each, in a namespace
// the test makes. 40 redis-cli connections SET keys over both queues, and every key reads back
// over others; curl PUTs objects whose keys the two workers own and reads each back; both
// workers' counters move (forwarded and served); the servers close cleanly. Needs root; skips
// loudly otherwise.
import { test } from "uvu";
import * as assert from "uvu/assert";
import fs from "node:fs";
import { spawnSync } from "node:child_process";
import { Netns, netnsUnavailable } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { waitOut } from "./lib/steered.mjs";

const hasCli = spawnSync("sh", ["-c", "command -v redis-cli && command -v curl"]).status === 0;
const why = netnsUnavailable() ?? (hasCli ? null : "redis-cli or curl not installed");
if (why) console.warn(`\n!!! deno-workers: SKIPPED: ${why}\n`);
const it = why ? test.skip : test;
const deno = new URL("../node_modules/.bin/deno", import.meta.url).pathname;
const KV = { dev: "pmdwk0", us: "198.18.14.2", peer: "198.18.14.1" };
const WEB = { dev: "pmdwh0", us: "198.18.14.18", peer: "198.18.14.17" };

it("serveWorkers under Deno: kv and httpd with two workers each, keys written and read over both queues", async () => {
  if (!fs.existsSync(deno)) assert.unreachable("deno is installed by npm install (devDependency)");
  const ns = new Netns("denow");
  const dir = scratchDir("tmpfs");
  try {
    const at = JSON.stringify(new URL("../build/index.js", import.meta.url).href);
    const script = `${dir}/deno-workers.mjs`;
    fs.writeFileSync(
      script,
      `import { serveWorkers } from ${at};
const base = (name, d) => ({ path: "${dir}/" + name + ".pm", buffers: 16384, workers: 2, mac: d.mac, ip: d.ip });
const kv = await serveWorkers({ ...base("kv", { mac: "02:50:4d:00:0e:02", ip: "${KV.us}/28" }),
  app: { app: "kv", port: 6379, protectedNets: null }, tap: { name: "${KV.dev}" } });
const web = await serveWorkers({ ...base("web", { mac: "02:50:4d:00:0e:12", ip: "${WEB.us}/28" }),
  app: { app: "httpd", port: 80 }, tap: { name: "${WEB.dev}" } });
console.log("READY " + kv.workers[0].steering);
const buf = new Uint8Array(16);
await Deno.stdin.read(buf);
const each = async (s) => (await s.stats()).workers.map((w) => [w.app.commands ?? w.app.requests, w.app.forwarded, w.app.served]);
console.log("STATS " + JSON.stringify({ kv: await each(kv), web: await each(web) }));
await kv.close();
await web.close();
console.log("CLOSED");
`,
    );
    const p = ns.spawn(deno, ["run", "-A", "--no-prompt", script], {
      env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    });
    const [, steering] = await waitOut(p, /READY (.*)\n/, 60_000);
    assert.match(steering, /eBPF steering/);
    for (const d of [KV, WEB]) {
      ns.ip(["link", "set", d.dev, "up"]);
      ns.ip(["addr", "add", `${d.peer}/28`, "dev", d.dev]);
    }
    const sh = (cmd) => {
      const r = ns.sh(cmd, { timeout: 60_000 });
      assert.is(r.status, 0, `${cmd}: ${r.stderr}`);
      return r.stdout;
    };
    // 40 connections (one redis-cli each), then every key read back on a connection of its own
    sh(`for i in $(seq 1 40); do redis-cli -h ${KV.us} SET key:$i v$i >/dev/null & done; wait`);
    const got = sh(`for i in $(seq 1 40); do redis-cli -h ${KV.us} GET key:$i; done`).trim().split("\n");
    assert.equal(
      got,
      Array.from({ length: 40 }, (_, i) => `v${i + 1}`),
    );
    assert.is(sh(`redis-cli -h ${KV.us} DBSIZE`).trim(), "40");
    // 16 objects by curl, each read back by another connection
    sh(`for i in $(seq 1 16); do curl -sf -o /dev/null -d "body-$i" http://${WEB.us}/obj$i & done; wait`);
    const bodies = sh(`for i in $(seq 1 16); do curl -sf http://${WEB.us}/obj$i; echo; done`).trim().split("\n");
    assert.equal(
      bodies,
      Array.from({ length: 16 }, (_, i) => `body-${i + 1}`),
    );
    p.stdin.end("go\n");
    const [, stats] = await waitOut(p, /STATS (.*)\n/, 30_000);
    const st = JSON.parse(stats);
    for (const [app, ws] of Object.entries(st))
      ws.forEach(([n, fwd, served], w) => {
        assert.ok(n > 0, `${app} worker ${w}: ${n} requests`);
        assert.ok(fwd > 0 && served > 0, `${app} worker ${w}: forwarded ${fwd}, served ${served}`);
      });
    await waitOut(p, /CLOSED/, 30_000);
    const r = await p.done;
    assert.is(r.status, 0, r.stderr);
  } finally {
    ns.cleanup();
  }
});

test.run();

// End to end: `pmstack kv --cluster` (build/cli.js) over TAP in a namespace, driven by Redis's
// own tools: redis-cli takes the slots (CLUSTER ADDSLOTSRANGE), redis-cli -c and
// redis-benchmark run on it, CLUSTER KEYSLOT agrees with
// a real redis-server in cluster mode (in the same namespace) on keys with and without hash
// tags, and a kill -9 then a restart keeps the node's id, epoch, slots and every acknowledged key.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { Netns, netnsUnavailable } from "./lib/netns.mjs";
import { scratchDir } from "./lib/tmp.mjs";
import { rng } from "./lib/rng.mjs";
import { keyHashSlot } from "../build/index.js";
import { startCli, spawnIn } from "./lib/appserver.mjs";
import { startRedisClusterNode } from "./lib/redis-node.mjs";

const hasTools =
  spawnSync("sh", ["-c", "command -v redis-cli && command -v redis-benchmark && command -v redis-server"]).status === 0;
const why = netnsUnavailable() ?? (hasTools ? null : "redis-cli/redis-benchmark/redis-server not installed");
if (why) console.warn(`\n!!! e2e-kv-cluster: SKIPPED: ${why}\n`);
const it = why ? test.skip : test;
const IOREDIS = new URL("./lib/ioredis-cluster.mjs", import.meta.url).pathname;
const LOAD = new URL("./lib/cluster-load.mjs", import.meta.url).pathname;

const enc = (x) => new TextEncoder().encode(x);
const KV = { dev: "pmtapcl0", us: "198.18.31.2", peer: "198.18.31.1" };
const ARGS = ["--buffers", "8192", "--cluster"];

/** redis-cli in the namespace; `-c` follows redirects. Resolves its stdout (trimmed). */
async function cli(ns, args, input) {
  const r = await spawnIn(ns, "redis-cli", ["-h", KV.us, "-p", "6379", ...args], { input, timeoutMs: 30_000 });
  assert.is(r.status, 0, `redis-cli ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trimEnd();
}

it("redis-cli gives the node its slots; redis-cli -c and redis-benchmark run on it; KEYSLOT agrees with redis-server; kill -9 keeps id, slots and keys", async () => {
  const ns = new Netns("kvcl");
  const dir = scratchDir("disk");
  const pm = join(dir, "kvcl.pm");
  let srv;
  try {
    srv = await startCli(ns, "kv", { pm, ...KV, args: ARGS });
    assert.match(await cli(ns, ["CLUSTER", "INFO"]), /cluster_state:fail/);
    assert.match(await cli(ns, ["SET", "foo", "1"]), /CLUSTERDOWN Hash slot not served/);
    assert.is(await cli(ns, ["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]), "OK");
    assert.is(await cli(ns, ["CLUSTER", "SET-CONFIG-EPOCH", "1"]), "OK");
    assert.match(await cli(ns, ["CLUSTER", "INFO"]), /cluster_state:ok\r?\ncluster_slots_assigned:16384/);
    assert.match(await cli(ns, ["INFO", "cluster"]), /cluster_enabled:1/);
    const id = await cli(ns, ["CLUSTER", "MYID"]);
    assert.match(id, /^[0-9a-f]{40}$/);
    const conf = readFileSync(`${pm}.nodes.conf`, "latin1");
    assert.match(
      conf,
      new RegExp(`^${id} ${KV.us.replace(/\./g, "\\.")}:6379@16379 myself,master - 0 0 1 connected 0-16383\n`),
    );

    // redis-cli -c: keys of one slot together, keys of two slots refused as Redis does
    assert.is(await cli(ns, ["-c", "SET", "{user1}:name", "ada"]), "OK");
    assert.is(await cli(ns, ["-c", "MSET", "{user1}:a", "1", "{user1}:b", "2"]), "OK");
    assert.is(await cli(ns, ["-c", "MGET", "{user1}:name", "{user1}:b"]), "ada\n2");
    assert.match(await cli(ns, ["-c", "MSET", "a", "1", "b", "2"]), /CROSSSLOT/);
    assert.is(await cli(ns, ["CLUSTER", "COUNTKEYSINSLOT", await cli(ns, ["CLUSTER", "KEYSLOT", "{user1}"])]), "3");

    // redis-benchmark on the node (its --cluster mode wants two masters or more: it says
    // "Invalid cluster: 1 node(s)"), with keys of every slot
    const bench = await spawnIn(
      ns,
      "redis-benchmark",
      ["-h", KV.us, "-p", "6379", "-t", "set,get", "-n", "20000", "-c", "20", "-r", "5000", "-q"],
      { timeoutMs: 120_000 },
    );
    assert.is(bench.status, 0, bench.stderr);
    for (const t of ["SET", "GET"])
      assert.match(bench.stdout, new RegExp(`${t}: [0-9.]+ requests per second`), bench.stdout);
    assert.not.match(bench.stdout + bench.stderr, /error|MOVED|CROSSSLOT|CLUSTERDOWN/i);
    const dbsize = Number(await cli(ns, ["DBSIZE"]));
    assert.ok(dbsize > 3, `redis-benchmark's keys are there (${dbsize})`);

    // CLUSTER KEYSLOT agrees with redis-server in cluster mode, hash tags included
    const redis = await startRedisClusterNode(ns, {
      ip: KV.peer,
      port: 7000,
      dir: scratchDir("tmpfs"),
      args: ["--appendonly", "no"],
    });
    try {
      const r = rng(31);
      const alphabet = "abcxyz019{}:._-";
      const keys = [
        "foo",
        "bar",
        "{user1000}.following",
        "foo{}{bar}",
        "foo{{bar}}zap",
        "foo{bar}{zap}",
        "{",
        "}",
        "{}",
      ];
      while (keys.length < 300) {
        let s = "";
        for (let n = 1 + Math.floor(r() * 12); n > 0; n--) s += alphabet[Math.floor(r() * alphabet.length)];
        keys.push(s);
      }
      const input = keys.map((k) => `CLUSTER KEYSLOT "${k}"\n`).join("");
      const ours = await cli(ns, [], input);
      const rr = await spawnIn(ns, "redis-cli", ["-h", KV.peer, "-p", "7000"], { input, timeoutMs: 30_000 });
      assert.is(rr.status, 0, rr.stderr);
      assert.is(ours.split("\n").length, keys.length);
      assert.is(ours, rr.stdout.trimEnd(), "the same slot for every key");
    } finally {
      await redis.stop();
    }

    // acknowledged keys, then kill -9 and a restart: the same node, slots and keys
    const acked = [];
    for (let i = 0; i < 200; i++) acked.push(`key:${i}`);
    const setInput = acked.map((k, i) => `SET ${k} value-${i}\n`).join("");
    const replies = await cli(ns, ["-c"], setInput);
    assert.is(replies.split("\n").filter((l) => l === "OK").length, acked.length);
    await srv.kill("SIGKILL");
    srv = await startCli(ns, "kv", { pm, ...KV, args: ARGS });
    assert.is(await cli(ns, ["CLUSTER", "MYID"]), id);
    assert.match(await cli(ns, ["CLUSTER", "NODES"]), new RegExp(`^${id} .* myself,master - 0 0 1 connected 0-16383$`));
    assert.match(await cli(ns, ["CLUSTER", "INFO"]), /cluster_state:ok/);
    const got = await cli(ns, ["-c"], acked.map((k) => `GET ${k}\n`).join(""));
    assert.equal(
      got.split("\n"),
      acked.map((_, i) => `value-${i}`),
    );
    assert.is(await cli(ns, ["-c", "GET", "{user1}:name"]), "ada");
  } finally {
    if (srv) await srv.kill("SIGKILL");
    ns.cleanup();
  }
});

const NODES = ["a", "b", "c"].map((x, i) => ({
  dev: `pmtapcl${x}`,
  us: `198.18.${32 + i}.2`,
  peer: `198.18.${32 + i}.1`,
}));

/** redis-cli at one node's client port. */
async function cliAt(ns, node, args, input) {
  const r = await spawnIn(ns, "redis-cli", ["-h", node.us, "-p", "6379", ...args], { input, timeoutMs: 60_000 });
  assert.is(r.status, 0, `redis-cli ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trimEnd();
}

it("three nodes: redis-cli --cluster create builds the cluster over the bus; redis-cli -c reads and writes across it", async () => {
  const ns = new Netns("kvcl3");
  const dir = scratchDir("disk");
  const srvs = [];
  try {
    // three TAP devices in one namespace; the kernel routes between them
    ns.sh("sysctl -qw net.ipv4.ip_forward=1");
    for (const [i, n] of NODES.entries())
      srvs.push(
        await startCli(ns, "kv", {
          pm: join(dir, `node${i}.pm`),
          ...n,
          args: ["--buffers", "65536", "--cluster", "--gateway", n.peer, "--allow-net", "198.18.32.0/22"],
        }),
      );
    const create = await spawnIn(
      ns,
      "redis-cli",
      ["--cluster", "create", ...NODES.map((n) => `${n.us}:6379`), "--cluster-yes"],
      { timeoutMs: 120_000 },
    );
    assert.is(create.status, 0, `${create.stdout}\n${create.stderr}`);
    assert.match(create.stdout, /\[OK\] All nodes agree about slots configuration\./);
    assert.match(create.stdout, /\[OK\] All 16384 slots covered\./);
    // every node sees the same three masters and the whole slot map
    const ids = [];
    for (const n of NODES) {
      ids.push(await cliAt(ns, n, ["CLUSTER", "MYID"]));
      const info = await cliAt(ns, n, ["CLUSTER", "INFO"]);
      assert.match(info, /cluster_state:ok/);
      assert.match(info, /cluster_known_nodes:3/);
      assert.match(info, /cluster_size:3/);
    }
    for (const n of NODES) {
      const nodes = await cliAt(ns, n, ["CLUSTER", "NODES"]);
      for (const id of ids)
        assert.match(nodes, new RegExp(`^${id} .*master - \\d+ \\d+ \\d+ connected \\d+-\\d+$`, "m"));
    }
    // keys across the three nodes, through any of them
    const keys = Array.from({ length: 300 }, (_, i) => `user:${i}`);
    const set = await cliAt(ns, NODES[0], ["-c"], keys.map((k, i) => `SET ${k} v${i}\n`).join(""));
    assert.is(set.split("\n").filter((l) => l === "OK").length, keys.length);
    const got = await cliAt(ns, NODES[2], ["-c"], keys.map((k) => `GET ${k}\n`).join(""));
    const lines = got.split("\n");
    assert.ok(
      lines.some((l) => /^-> Redirected to slot \[\d+\] located at 198\.18\.3[234]\.2:6379$/.test(l)),
      "redirected",
    );
    assert.equal(
      lines.filter((l) => !l.startsWith("-> Redirected")),
      keys.map((_, i) => `v${i}`),
    );
    let total = 0;
    for (const n of NODES) {
      const size = Number(await cliAt(ns, n, ["DBSIZE"]));
      assert.ok(size > 50, `each node holds its share (${size})`);
      total += size;
    }
    assert.is(total, keys.length);
    // ioredis's Cluster client: 100,000 keys written across the nodes and read back
    const io = await spawnIn(ns, process.execPath, [IOREDIS, NODES[0].us, "6379", "100000"], {
      timeoutMs: 180_000,
    });
    assert.is(io.status, 0, io.stderr);
    const ior = JSON.parse(io.stdout);
    assert.equal({ ...ior, ms: 0 }, { written: 100_000, read: 100_000, mismatches: 0, nodes: 3, ms: 0 }, io.stderr);

    // redis-benchmark --cluster: it reads the slot map and sends each key to its node
    const bench = await spawnIn(
      ns,
      "redis-benchmark",
      ["--cluster", "-h", NODES[0].us, "-p", "6379", "-t", "set,get", "-n", "30000", "-c", "30", "-r", "10000", "-q"],
      { timeoutMs: 120_000 },
    );
    assert.is(bench.status, 0, bench.stderr);
    assert.match(bench.stdout, /Cluster has 3 master nodes/);
    for (const t of ["SET", "GET"])
      assert.match(bench.stdout, new RegExp(`${t}: [0-9.]+ requests per second`), bench.stdout);
    assert.not.match(bench.stdout + bench.stderr, /error|MOVED|CROSSSLOT|CLUSTERDOWN/i);

    // a reshard of 1,000 slots (redis-cli: SETSLOT IMPORTING/MIGRATING, GETKEYSINSLOT, MIGRATE,
    // SETSLOT NODE) while a cluster client keeps writing: every acknowledged key reads back afterwards
    const load = spawnIn(ns, process.execPath, [LOAD, NODES[1].us, "6379", "6"], { timeoutMs: 120_000 });
    await new Promise((r) => setTimeout(r, 1000));
    const reshard = await spawnIn(
      ns,
      "redis-cli",
      [
        "--cluster",
        "reshard",
        `${NODES[0].us}:6379`,
        "--cluster-from",
        ids[0],
        "--cluster-to",
        ids[2],
        "--cluster-slots",
        "1000",
        "--cluster-yes",
        "--cluster-pipeline",
        "50",
      ],
      { timeoutMs: 180_000 },
    );
    assert.is(reshard.status, 0, `${reshard.stdout.slice(-3000)}\n${reshard.stderr}`);
    const loaded = await load;
    assert.is(loaded.status, 0, loaded.stderr);
    const lr = JSON.parse(loaded.stdout);
    assert.ok(lr.acked > 1000, `writes went on (${loaded.stdout})`);
    assert.is(lr.read, lr.acked, loaded.stdout);
    assert.is(lr.mismatches, 0, `every acknowledged SET reads back: ${loaded.stdout} ${loaded.stderr.slice(0, 2000)}`);
    const slotsCount = (text, id) =>
      text
        .split("\n")
        .find((l) => l.startsWith(id))
        .split(" ")
        .slice(8)
        .filter((r) => !r.startsWith("["))
        .reduce((n, r) => {
          const [a, b] = r.split("-").map(Number);
          return n + (b === undefined ? 1 : b - a + 1);
        }, 0);
    const after = await cliAt(ns, NODES[0], ["CLUSTER", "NODES"]);
    assert.is(slotsCount(after, ids[0]), 5461 - 1000, after);
    assert.is(slotsCount(after, ids[2]), 5461 + 1000, after);
    for (const id of ids) assert.not.match(after, /\[\d+-[<>]-/, "no slot left migrating or importing");

    // one slot moved by hand, step by step: -ASK for keys already gone, -TRYAGAIN for a
    // multi-key command half here, -MOVED without ASKING at the importing node, MIGRATE's
    // RESTORE-ASKING, SETSLOT NODE everywhere
    let tag = 0;
    while (!(keyHashSlot(enc(`{m${tag}}`)) >= 1000 && keyHashSlot(enc(`{m${tag}}`)) <= 5460)) tag++;
    const S = keyHashSlot(enc(`{m${tag}}`));
    const [A, B, C] = NODES;
    const k = (x) => `{m${tag}}${x}`;
    assert.is(await cliAt(ns, A, ["SET", k("a"), "1"]), "OK");
    assert.is(await cliAt(ns, A, ["SET", k("b"), "2"]), "OK");
    assert.is(await cliAt(ns, C, ["CLUSTER", "SETSLOT", String(S), "IMPORTING", ids[0]]), "OK");
    assert.is(await cliAt(ns, A, ["CLUSTER", "SETSLOT", String(S), "MIGRATING", ids[2]]), "OK");
    assert.match(await cliAt(ns, A, ["CLUSTER", "NODES"]), new RegExp(`myself,master .* \\[${S}->-${ids[2]}\\]$`, "m"));
    assert.match(await cliAt(ns, C, ["CLUSTER", "NODES"]), new RegExp(`myself,master .* \\[${S}-<-${ids[0]}\\]$`, "m"));
    assert.is(await cliAt(ns, A, ["GET", k("a")]), "1", "a key still here is served here");
    assert.is(await cliAt(ns, A, ["GET", k("new")]), `ASK ${S} ${C.us}:6379`);
    assert.is(
      await cliAt(ns, A, ["MGET", k("a"), k("new")]),
      "TRYAGAIN Multiple keys request during rehashing of slot",
    );
    assert.is(await cliAt(ns, C, ["GET", k("a")]), `MOVED ${S} ${A.us}:6379`, "no ASKING: the owner");
    assert.is(await cliAt(ns, C, [], `ASKING\nSET ${k("new")} 3\n`), "OK\nOK", "ASKING: the importing node serves");
    assert.is(await cliAt(ns, A, ["MIGRATE", C.us, "6379", "", "0", "5000", "KEYS", k("a"), k("b"), k("none")]), "OK");
    assert.is(await cliAt(ns, A, ["MIGRATE", C.us, "6379", k("a"), "0", "5000"]), "NOKEY");
    // the slot's other keys (the load's) go the same way, as redis-cli --cluster reshard moves them
    const rest = (await cliAt(ns, A, ["CLUSTER", "GETKEYSINSLOT", String(S), "100000"])).split("\n").filter(Boolean);
    if (rest.length) assert.is(await cliAt(ns, A, ["MIGRATE", C.us, "6379", "", "0", "5000", "KEYS", ...rest]), "OK");
    assert.is(await cliAt(ns, A, ["CLUSTER", "COUNTKEYSINSLOT", String(S)]), "0");
    assert.is(await cliAt(ns, A, ["GET", k("a")]), `ASK ${S} ${C.us}:6379`);
    assert.is(await cliAt(ns, C, [], `ASKING\nMGET ${k("a")} ${k("b")} ${k("new")}\n`), "OK\n1\n2\n3");
    assert.is(await cliAt(ns, C, ["CLUSTER", "SETSLOT", String(S), "NODE", ids[2]]), "OK");
    assert.is(await cliAt(ns, A, ["CLUSTER", "SETSLOT", String(S), "NODE", ids[2]]), "OK");
    assert.is(await cliAt(ns, B, ["CLUSTER", "SETSLOT", String(S), "NODE", ids[2]]), "OK");
    for (const n of NODES) assert.not.match(await cliAt(ns, n, ["CLUSTER", "NODES"]), /\[\d+-[<>]-/);
    assert.is(await cliAt(ns, A, ["GET", k("a")]), `MOVED ${S} ${C.us}:6379`);
    assert.is(await cliAt(ns, A, ["-c", "MGET", k("a"), k("b"), k("new")]), "1\n2\n3");

    // kill -9 of one node, then a restart: it rejoins with its id, slots and keys, and the
    // others take it back (their links to it are reset and reopened)
    const victim = 1;
    const before = await cliAt(ns, NODES[victim], ["CLUSTER", "NODES"]);
    const mine = Number(await cliAt(ns, NODES[victim], ["DBSIZE"]));
    await srvs[victim].kill("SIGKILL");
    srvs[victim] = await startCli(ns, "kv", {
      pm: join(dir, `node${victim}.pm`),
      ...NODES[victim],
      args: ["--buffers", "65536", "--cluster", "--gateway", NODES[victim].peer, "--allow-net", "198.18.32.0/22"],
    });
    assert.is(await cliAt(ns, NODES[victim], ["CLUSTER", "MYID"]), ids[victim]);
    assert.is(Number(await cliAt(ns, NODES[victim], ["DBSIZE"])), mine, "every key it held");
    const slotsOf = (text, id) =>
      text
        .split("\n")
        .find((l) => l.startsWith(id))
        ?.split(" ")
        .slice(8)
        .join(" ");
    assert.is(slotsOf(await cliAt(ns, NODES[victim], ["CLUSTER", "NODES"]), ids[victim]), slotsOf(before, ids[victim]));
    // the cluster is whole again: every node agrees (redis-cli's own check)
    let check;
    for (let k = 0; k < 100; k++) {
      check = await spawnIn(ns, "redis-cli", ["--cluster", "check", `${NODES[0].us}:6379`], { timeoutMs: 60_000 });
      if (check.status === 0 && /All nodes agree/.test(check.stdout) && !/disconnected|fail/.test(check.stdout)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.is(check.status, 0, check.stdout + check.stderr);
    assert.match(check.stdout, /\[OK\] All nodes agree about slots configuration\./);
    assert.match(check.stdout, /\[OK\] All 16384 slots covered\./);
    // each node's link to the restarted one is reopened when it next uses the old one (a RST):
    // within a few cron rounds every node shows every other connected
    for (const n of NODES) {
      let nodes = "";
      for (let k = 0; k < 50; k++) {
        nodes = await cliAt(ns, n, ["CLUSTER", "NODES"]);
        if (!/disconnected|handshake/.test(nodes)) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.not.match(nodes, /disconnected|handshake/, `${n.us}: ${nodes}`);
    }
    const again = await cliAt(ns, NODES[0], ["-c"], keys.map((k) => `GET ${k}\n`).join(""));
    assert.equal(
      again.split("\n").filter((l) => !l.startsWith("-> Redirected")),
      keys.map((_, i) => `v${i}`),
    );
  } finally {
    for (const s of srvs) await s.kill("SIGKILL");
    ns.cleanup();
  }
});

it("a mixed cluster: two pmstack nodes and a redis-server join through redis-cli --cluster create and serve one key space", async () => {
  const ns = new Netns("kvclmix");
  const dir = scratchDir("disk");
  const rdir = scratchDir("tmpfs");
  const srvs = [];
  let redis;
  const R = { us: "198.18.35.1" };
  try {
    ns.sh("sysctl -qw net.ipv4.ip_forward=1");
    ns.ip(["addr", "add", `${R.us}/32`, "dev", "lo"]); // the kernel's own address, reached through the gateways
    for (const [i, n] of NODES.slice(0, 2).entries())
      srvs.push(
        await startCli(ns, "kv", {
          pm: join(dir, `mix${i}.pm`),
          ...n,
          args: ["--buffers", "8192", "--cluster", "--gateway", n.peer],
        }),
      );
    // Redis 7.0 on an address of the namespace's kernel, announcing it on the bus
    redis = await startRedisClusterNode(ns, { ip: R.us, dir: rdir, args: ["--appendonly", "no"] });
    const all = [...NODES.slice(0, 2), R];
    const create = await spawnIn(
      ns,
      "redis-cli",
      ["--cluster", "create", ...all.map((n) => `${n.us}:6379`), "--cluster-yes"],
      {
        timeoutMs: 120_000,
      },
    );
    assert.is(create.status, 0, `${create.stdout}\n${create.stderr}`);
    assert.match(create.stdout, /\[OK\] All nodes agree about slots configuration\./);
    assert.match(create.stdout, /\[OK\] All 16384 slots covered\./);
    const ids = [];
    for (const n of all) ids.push(await cliAt(ns, n, ["CLUSTER", "MYID"]));
    // redis-server sees both pmstack nodes as connected masters with their slots, and they see it
    for (const n of all) {
      let nodes = "";
      for (let k = 0; k < 50; k++) {
        nodes = await cliAt(ns, n, ["CLUSTER", "NODES"]);
        if (!/disconnected|handshake/.test(nodes) && nodes.trim().split("\n").length === 3) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      for (const id of ids)
        assert.match(
          nodes,
          new RegExp(`^${id} [0-9.]+:6379@16379 (myself,)?master - \\d+ \\d+ \\d+ connected \\d+-\\d+$`, "m"),
          nodes,
        );
      // Redis turns its state to ok a while after it joins (its CLUSTER_WRITABLE_DELAY)
      let info = "";
      for (let k = 0; k < 50 && !/cluster_state:ok/.test(info); k++) {
        if (k) await new Promise((r) => setTimeout(r, 100));
        info = await cliAt(ns, n, ["CLUSTER", "INFO"]);
      }
      assert.match(info, /cluster_state:ok/, `${n.us}: ${info}`);
    }
    const keys = Array.from({ length: 300 }, (_, i) => `mix:${i}`);
    const set = await cliAt(ns, R, ["-c"], keys.map((k, i) => `SET ${k} v${i}\n`).join(""));
    assert.is(set.split("\n").filter((l) => l === "OK").length, keys.length);
    const got = await cliAt(ns, NODES[0], ["-c"], keys.map((k) => `GET ${k}\n`).join(""));
    assert.equal(
      got.split("\n").filter((l) => !l.startsWith("-> Redirected")),
      keys.map((_, i) => `v${i}`),
    );
    let total = 0;
    for (const n of all) total += Number(await cliAt(ns, n, ["DBSIZE"]));
    assert.is(total, keys.length);
  } finally {
    await redis?.stop();
    for (const s of srvs) await s.kill("SIGKILL");
    ns.cleanup();
  }
});

test.run();

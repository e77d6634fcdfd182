// bench/cluster: SET and GET throughput of a Redis Cluster of pmstack kv nodes beside one of
// redis-server nodes, 1 node and 3 nodes each, measured in the same run with the same client:
// redis-benchmark (-c 50 -P 16, 128-byte values, 100,000 random keys).
//
//   systems   pmstack-1node, pmstack-3nodes: `pmstack kv --cluster` processes, each on a TAP
//             device of its own (198.18.4x.2/24, the kernel at .1, --gateway .1: the kernel
//             routes between them), pools of 256 MiB on /dev/shm (msync persistence)
//             redis-1node, redis-3nodes: redis-server --cluster-enabled yes --appendonly yes
//             --appendfsync always, its append-only file on /dev/shm too, on addresses of the
//             namespace's loopback (198.18.48.x/32), announced on the bus (--cluster-announce-ip:
//             a connection between two loopback addresses comes from the destination's own)
//   clusters  3 nodes: made by redis-cli --cluster create (the bus joins them); 1 node: the
//             node given every slot (CLUSTER ADDSLOTSRANGE 0 16383); redis-benchmark's --cluster
//             mode wants two masters or more, so a 1-node cluster is benchmarked without it
//             (every key is that node's anyway)
//   metrics   set_rps, get_rps (redis-benchmark's requests per second); per node count the
//             ratio pmstack / redis
//
// This machine has 2 CPUs: the three nodes of a 3-node cluster and redis-benchmark share them,
// so the 3-node figures measure how the systems share two CPUs among four busy processes, not
// how a cluster of three machines scales. Addresses: 198.18.40.0/21 only, inside a namespace the
// run makes and removes (also on failure).
//
// `npm run bench -- cluster [quick] [--requests N] [--reps N]`; quick: 50,000 requests, one rep.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { Netns, netnsUnavailable } from "../test/lib/netns.mjs";
import { startCli, spawnIn } from "../test/lib/appserver.mjs";
import { startRedisClusterNode } from "../test/lib/redis-node.mjs";
import { median, ratios } from "./_lib.mjs";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const PM = (i) => ({ dev: `pmbcl${i}`, us: `198.18.${40 + i}.2`, peer: `198.18.${40 + i}.1` });
const RD = (i) => `198.18.48.${i + 1}`;

function parseArgs(args) {
  const quick = args.includes("quick") || process.env.PMSTACK_BENCH_QUICK === "1";
  const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : dflt;
  };
  return { requests: opt("--requests", quick ? 50_000 : 300_000), reps: opt("--reps", quick ? 1 : 3) };
}

async function cli(ns, ip, args) {
  const r = await spawnIn(ns, "redis-cli", ["-h", ip, "-p", "6379", ...args], { timeoutMs: 60_000 });
  if (r.status !== 0) throw new Error(`redis-cli ${args.join(" ")}: ${r.stderr}`);
  return r.stdout.trim();
}

async function waitOk(ns, ips) {
  for (const ip of ips)
    for (let k = 0; ; k++) {
      if (/cluster_state:ok/.test(await cli(ns, ip, ["CLUSTER", "INFO"]))) break;
      if (k > 200) throw new Error(`${ip}: the cluster is not ok`);
      await sleep(100);
    }
}

async function bench(ns, ips, requests) {
  const args = ["-h", ips[0], "-p", "6379", "-t", "set,get", "-n", String(requests), "-c", "50", "-P", "16"];
  args.push("-d", "128", "-r", "100000", "--csv");
  if (ips.length > 1) args.unshift("--cluster");
  const r = await spawnIn(ns, "redis-benchmark", args, { timeoutMs: 300_000 });
  if (r.status !== 0) throw new Error(`redis-benchmark: ${r.stdout} ${r.stderr}`);
  const rps = {};
  for (const line of r.stdout.split("\n")) {
    const m = /^"(SET|GET)","([0-9.]+)"/.exec(line);
    if (m) rps[m[1]] = Number(m[2]);
  }
  if (!rps.SET || !rps.GET) throw new Error(`redis-benchmark printed no SET/GET figures: ${r.stdout}`);
  return rps;
}

async function startPmstack(ns, shm, n) {
  const nodes = [];
  for (let i = 0; i < n; i++) {
    const p = PM(i);
    nodes.push(
      await startCli(ns, "kv", {
        pm: join(shm, `node${i}.pm`),
        ...p,
        args: ["--size", "256M", "--cluster", "--gateway", p.peer, "--allow-net", "198.18.40.0/21"],
      }),
    );
  }
  return {
    ips: Array.from({ length: n }, (_, i) => PM(i).us),
    stop: async () => Promise.all(nodes.map((s) => s.kill("SIGKILL"))),
  };
}

async function startRedis(ns, dir, n) {
  const nodes = [];
  try {
    for (let i = 0; i < n; i++)
      nodes.push(
        await startRedisClusterNode(ns, {
          ip: RD(i),
          dir: join(dir, `redis${i}`),
          args: ["--appendonly", "yes", "--appendfsync", "always"],
        }),
      );
  } catch (e) {
    await Promise.all(nodes.map((x) => x.stop()));
    throw e;
  }
  return { ips: Array.from({ length: n }, (_, i) => RD(i)), stop: async () => Promise.all(nodes.map((x) => x.stop())) };
}

async function form(ns, ips) {
  if (ips.length === 1) {
    const r = await cli(ns, ips[0], ["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    if (r !== "OK") throw new Error(`ADDSLOTSRANGE: ${r}`);
  } else {
    const r = await spawnIn(
      ns,
      "redis-cli",
      ["--cluster", "create", ...ips.map((ip) => `${ip}:6379`), "--cluster-yes"],
      {
        timeoutMs: 120_000,
      },
    );
    if (r.status !== 0 || !/All 16384 slots covered/.test(r.stdout))
      throw new Error(`cluster create: ${r.stdout} ${r.stderr}`);
  }
  await waitOk(ns, ips);
}

export async function run(args) {
  const o = parseArgs(args);
  const why = netnsUnavailable();
  if (why) throw new Error(`bench/cluster needs network namespaces: ${why}`);
  const shm = mkdtempSync(join("/dev/shm", "pmstack-bench-cluster-"));
  const got = {};
  const ns = new Netns("bcl");
  try {
    ns.sh("sysctl -qw net.ipv4.ip_forward=1");
    for (let i = 0; i < 3; i++) ns.ip(["addr", "add", `${RD(i)}/32`, "dev", "lo"]);
    for (let rep = 0; rep < o.reps; rep++)
      for (const n of [1, 3])
        for (const kind of ["pmstack", "redis"]) {
          const dir = mkdtempSync(join(shm, `${kind}-${n}-`));
          const sys = kind === "pmstack" ? await startPmstack(ns, dir, n) : await startRedis(ns, dir, n);
          try {
            await form(ns, sys.ips);
            const rps = await bench(ns, sys.ips, o.requests);
            const key = `${kind}-${n === 1 ? "1node" : "3nodes"}`;
            (got[key] ??= { set_rps: [], get_rps: [] }).set_rps.push(rps.SET);
            got[key].get_rps.push(rps.GET);
          } finally {
            await sys.stop();
            rmSync(dir, { recursive: true, force: true });
          }
        }
  } finally {
    ns.cleanup();
    rmSync(shm, { recursive: true, force: true });
  }
  const rows = [];
  for (const [system, m] of Object.entries(got))
    for (const [metric, vs] of Object.entries(m)) rows.push({ system, metric, value: median(vs), unit: "req/s" });
  const notes = [
    `redis-benchmark -t set,get -n ${o.requests} -c 50 -P 16 -d 128 -r 100000 (with --cluster for 3 nodes); ${o.reps} repetitions in turn, medians shown; every value: ${JSON.stringify(got)}`,
    "pmstack: pmstack kv --cluster, 256 MiB pools on /dev/shm (msync), each node on its own TAP device; redis: redis-server 7.0 --cluster-enabled yes --appendonly yes --appendfsync always on /dev/shm",
    "the client reaches redis-server over the namespace's loopback and pmstack through each node's TAP device (the kernel's copy and TAP queue per frame, and routing between devices for 3 nodes)",
    `${os.cpus().length} CPUs: the 3 nodes and redis-benchmark share them (the 3-node rows measure sharing ${os.cpus().length} CPUs among 4 busy processes, not a cluster of 3 machines)`,
  ];
  return {
    rows,
    ratios: [...ratios(rows, "pmstack-1node", "redis-1node"), ...ratios(rows, "pmstack-3nodes", "redis-3nodes")],
    notes,
  };
}

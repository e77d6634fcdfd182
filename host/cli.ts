#!/usr/bin/env node
// The `pmstack` command: the durable HTTP server and the Redis-protocol store on a TAP or
// AF_XDP queue, in a network namespace it can make for you; and `stats`/`ss` to look inside a
// running one through its control socket. See docs/cli.md.

import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, unlinkSync } from "node:fs";
import { createConnection, createServer, type Server as CtlServer } from "node:net";
import { dirname, resolve } from "node:path";
import { PmstackError } from "./errors.js";
import { formatEndpoint, inPrefix, isLinkLocal, parseCidr, parseIPv4, parseIPv6 } from "./addr.js";
import { PcapWriter } from "./pcap.js";
import {
  serve,
  serverInfo,
  serverStats,
  type App,
  type AppServer,
  type ServeNic,
  type ServerInfo,
} from "./apps/serve.js";
import { HttpdApp } from "./apps/httpd.js";
import { KvApp } from "./apps/kv.js";
import { ClusterState } from "./apps/kv/cluster.js";
import { clusterConfigFile } from "./apps/kv/cluster-file.js";
import { loadTlsFiles, TlsTerminator } from "./apps/tls.js";
import { COUNTERS } from "./stack-abi.js";
import { serveWorkers, resolveWorkers, workerPoolPath, checkWorkerPools, type WorkersServer } from "./workers.js";
import { BUF_SIZE } from "./abi.js";
import { MAX_POOL_BUFFERS } from "./format.js";
import { checkPoolFiles, listenPrivate, readSecretFile } from "./secure.js";
import { NetList } from "./apps/auth.js";
import type { Stack } from "./stack.js";

const VERSION = "0.1.0";

/** The largest --size: one 32-bit Wasm memory holds the pool beside the core's own state. */
const MAX_SIZE = MAX_POOL_BUFFERS * BUF_SIZE;
const MAX_SIZE_TEXT = `${(MAX_SIZE / 1024 ** 3).toFixed(2)} GiB`;

const HELP = `pmstack ${VERSION}: a network stack for persistent memory (PASTE-style, zero copy)

Usage:
  pmstack httpd [options]   durable HTTP/1.1 server: PUT or POST /<key> keeps the body (any
                            size, chunked too) in PM and answers 201 once durable; GET /<key>
                            streams it from PM (Range, HEAD); DELETE; GET / for stats
  pmstack kv [options]      durable Redis-protocol (RESP2) store: SET/GET/DEL/INCR/APPEND/
                            GETRANGE/SETRANGE/EXPIRE/MSET/... values up to 512 MB
  pmstack stats [--json] [--control PATH | --pm PATH]
                            counters of a running server, like netstat -s
  pmstack ss [--json] [--control PATH | --pm PATH]
                            its connection table, like ss
  pmstack --help | --version

Server options:
  --pm PATH          the PM pool file (default ./data/<command>.pm; created if missing,
                     validated and never reformatted if present)
  --size BYTES       the pool's buffer space, e.g. 512M, 1G, 3G (default 1G); a new pool
                     gets it, an existing smaller one grows to it on this start (data
                     kept); at most ${MAX_SIZE_TEXT} (one 32-bit Wasm memory)
  --buffers N        the same as a count of 2 KiB buffers (instead of --size)
  --nic tap|xdp      the NIC queue: a TAP device, or AF_XDP on a device's queue (default tap)
  --ifname NAME      TAP device name (default pmstack0), or the device AF_XDP binds to
  --queue N          AF_XDP queue index (default 0; with --workers, worker I binds queue I)
  --veth-peer NAME   --nic xdp --workers N on a veth pair made by hand: its kernel end NAME
                     (same namespace) gets a program sending each flow to the queue of its
                     hash (docs/scaling.md); --netns's own pair is steered without it
  --netns [NAME]     make a network namespace NAME (default "pmstack") holding the device:
                     pmstack is 198.18.0.2, the kernel side in it 198.18.0.1;
                     try it with: ip netns exec NAME curl ...  (removed again on exit)
  --ip ADDR/LEN      pmstack's address (default 198.18.0.2/24)
  --peer-ip ADDR/LEN the kernel side's address in --netns (default 198.18.0.1/24)
  --ip6 ADDR/LEN     pmstack's IPv6 address too (dual stack), e.g. 2001:2:0:63::2/64
                     (default: none, IPv4 only; inside 2001:2::/48 with --netns)
  --peer-ip6 ADDR/LEN
                     the kernel side's IPv6 address in --netns, e.g. 2001:2:0:63::1/64
                     (with --ip6, in the same prefix)
  --gateway ADDR     the IPv4 router for clients off --ip's link (default: none, every
                     address is treated as on the link)
  --gateway6 ADDR    the IPv6 router for clients off --ip6's link (its link-local or an
                     on-link address; default none)
  --port N           listening port (default 80 for httpd, 6379 for kv; 0: none, with TLS)
  --tls-cert PATH    serve TLS 1.2 and 1.3 too, with this PEM certificate (chain)...
  --tls-key PATH     ...and this PEM private key (a file no other user may read)
  --tls-port N       the TLS port (default 443 for httpd, 6380 for kv), beside --port
  --tls-ca PATH      require client certificates signed by one of these PEM CAs
  --tls-handshake-timeout S
                     reset a connection whose TLS handshake is not done after S seconds
                     (default 10)
  --mode MODE        persistence: auto, msync, journal, clwb, clflushopt, strict (default
                     auto: cache-line flushes on DAX, msync on tmpfs, journal on a disk)
  --max-body BYTES   httpd: largest request body (default 1G; bounded by free pool space)
  --idle-timeout S   reset a connection whose request is partly received when no byte
                     comes for S seconds, or when it is not complete within S seconds plus
                     1 s per 16 KiB of it (slowloris) (default 30; 0: never)
  --max-conns N      connections at once: established, opening and closing (default 4096,
                     at most 1048575); TIME_WAIT beyond them is recycled oldest first
  --at-max-conns drop|reset
                     a new connection past --max-conns: dropped (default; the client
                     retries its SYN and gets in once one closes) or reset (its connect
                     fails at once); established connections are never disturbed
  --workers N|auto   N worker threads (default 1; auto: one per CPU), each its own stack on
                     its own queue of one multi-queue device (TAP, or with --nic xdp queue I
                     of the device; --netns makes a veth pair of N queues), its own pool
                     (<pm>.wI) and its shard of the keys (docs/scaling.md); a pool set
                     keeps its count
  --busy-poll        busy-poll the queue instead of sleeping (lowest latency, burns a core)
  --pcap FILE        capture every frame to FILE (tshark/tcpdump readable)
  --control PATH     control socket for stats/ss (default <pm>.ctl; owner-only)
  --insecure-pool    use a pool file the group or others may write (refused otherwise)
  --quiet            no status line

Access (docs/apps.md):
  --requirepass PASS kv: the default user's password: clients AUTH (redis-cli -a PASS)
  --requirepass-file PATH
                     kv: the same, read from PATH's first line (not readable by others)
  --protected-mode yes|no
                     kv: with no password, serve only --peer-ip, --peer-ip6 and --allow-net
                     peers; others get -DENIED (default yes)
  --allow-net CIDR   kv: a network protected mode serves too (repeatable, or comma-separated)
  --cluster          kv: a Redis Cluster node (docs/cluster.md): hash slots, redirects, the
                     CLUSTER commands, the bus on port + 10000, MIGRATE; build a cluster with
                     redis-cli --cluster create, reshape it with redis-cli --cluster reshard
  --cluster-config-file PATH
                     kv: the node's cluster configuration, Redis's nodes.conf format
                     (default <pm>.nodes.conf): its id, epochs and slots across restarts
  --token-file PATH  httpd: a bearer token (owner-only file): PUT, POST, DELETE need
                     Authorization: Bearer TOKEN, else 401
  --private          httpd: GET and HEAD need the token too

Exit: Ctrl-C (SIGINT), SIGTERM or SIGHUP (the terminal closing) closes the queue, the pool and the
namespace it made.`;

class UsageError extends Error {}

interface Args {
  cmd: string;
  opts: Map<string, string | true>;
}

const VALUED = new Set([
  "pm",
  "buffers",
  "size",
  "max-body",
  "idle-timeout",
  "max-conns",
  "at-max-conns",
  "nic",
  "ifname",
  "queue",
  "veth-peer",
  "ip",
  "peer-ip",
  "ip6",
  "peer-ip6",
  "gateway",
  "gateway6",
  "port",
  "tls-cert",
  "tls-key",
  "tls-ca",
  "tls-port",
  "tls-handshake-timeout",
  "mode",
  "pcap",
  "control",
  "requirepass",
  "requirepass-file",
  "protected-mode",
  "allow-net",
  "token-file",
  "cluster-config-file",
  "workers",
]);
const FLAGS = new Set(["busy-poll", "quiet", "json", "help", "version", "insecure-pool", "private", "cluster"]);
/** Options that may be given more than once: their values are joined with commas. */
const REPEATABLE = new Set(["allow-net"]);

function parse(argv: string[]): Args {
  const opts = new Map<string, string | true>();
  let cmd = "";
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "-h") {
      opts.set("help", true);
      continue;
    }
    if (!a.startsWith("--")) {
      if (cmd) throw new UsageError(`unexpected argument ${JSON.stringify(a)}`);
      cmd = a;
      continue;
    }
    const eq = a.indexOf("=");
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (name === "netns") {
      // optional value: --netns, --netns NAME, --netns=NAME
      const next = argv[i + 1];
      if (eq >= 0) opts.set(name, a.slice(eq + 1));
      else if (next !== undefined && !next.startsWith("-") && !isCommand(next)) opts.set(name, argv[++i]!);
      else opts.set(name, true);
    } else if (VALUED.has(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined || v === "") throw new UsageError(`--${name} needs a value`);
      const had = opts.get(name);
      opts.set(name, REPEATABLE.has(name) && typeof had === "string" ? `${had},${v}` : v);
    } else if (FLAGS.has(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`);
      opts.set(name, true);
    } else throw new UsageError(`unknown option --${name}`);
  }
  return { cmd, opts };
}

const isCommand = (s: string) => ["httpd", "kv", "stats", "ss"].includes(s);

function str(a: Args, k: string): string | undefined {
  const v = a.opts.get(k);
  return typeof v === "string" ? v : undefined;
}

function int(a: Args, k: string, def: number, min: number, max: number): number {
  const v = str(a, k);
  if (v === undefined) return def;
  if (!/^\d+$/.test(v) || +v < min || +v > max)
    throw new UsageError(`--${k} must be an integer in [${min}, ${max}], got ${v}`);
  return +v;
}

/** A byte count with an optional K/M/G/T suffix (powers of 1024): "1G", "512M", "65536". */
export function parseSize(v: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMGT]?)(i?B)?$/i.exec(v.trim());
  if (!m) throw new UsageError(`${what} must be a size such as 65536, 512M or 1G; got ${v}`);
  const mult = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2]!.toUpperCase() as "" | "K"]!;
  const n = Math.floor(Number(m[1]) * mult);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError(`${what} must be a positive size; got ${v}`);
  return n;
}

/** Whether an IPv4 host number lies in 198.18.0.0/15, the range tests and namespaces may use. */
const inTestNet4 = (n: number): boolean => n >>> 17 === 0xc612 >>> 1;

function address(s: string, what: string, testRange: boolean): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(s);
  if (!m || m.slice(1, 5).some((x) => +x > 255) || +m[5]! < 8 || +m[5]! > 30)
    throw new UsageError(`${what} must be an IPv4 ADDR/LEN such as 198.18.0.2/24; got ${s}`);
  if (testRange && !(inTestNet4(parseIPv4(s.split("/")[0]!)) && +m[5]! >= 15))
    throw new UsageError(`${what} must lie inside 198.18.0.0/15 (the benchmarking range) with --netns; got ${s}`);
  return s;
}

/** The IPv6 range tests and namespaces may use (RFC 5180's benchmarking range, 2001:2::/48). */
const TEST_NET6 = parseIPv6("2001:2::");

/** An IPv6 ADDR/LEN option, canonical; inside 2001:2::/48 when `testRange`. */
function address6(s: string, what: string, testRange: boolean): { text: string; bytes: Uint8Array; prefix: number } {
  let c: ReturnType<typeof parseCidr>;
  try {
    c = parseCidr(s, { family: 6 });
  } catch (e) {
    throw new UsageError(
      `${what} must be an IPv6 ADDR/LEN such as 2001:2:0:63::2/64; got ${s} (${(e as Error).message.replace(/^pmstack: /, "")})`,
    );
  }
  if (c.prefix < 8 || c.prefix > 128)
    throw new UsageError(`${what}: the prefix length must be 8..128 (64 for a link); got ${s}`);
  const b = c.bytes;
  if (b[0] === 0xff || isLinkLocal(b) || b.every((x) => x === 0) || c.address.startsWith("::"))
    throw new UsageError(`${what} must be a global unicast address (not multicast, link-local or ::); got ${s}`);
  if (testRange && !(inPrefix(b, TEST_NET6, 48) && c.prefix >= 48))
    throw new UsageError(`${what} must lie inside 2001:2::/48 (the IPv6 benchmarking range) with --netns; got ${s}`);
  return { text: `${c.address}/${c.prefix}`, bytes: b, prefix: c.prefix };
}

/** --gateway: an IPv4 address on the link of `ip` (ADDR/LEN), not `ip` itself. */
function gateway4(s: string, ip: string, testRange: boolean): string {
  const [addr, len] = ip.split("/") as [string, string];
  let g: number;
  try {
    g = parseIPv4(s);
  } catch {
    throw new UsageError(`--gateway must be an IPv4 address such as 198.18.0.1; got ${s}`);
  }
  if (testRange && !inTestNet4(g))
    throw new UsageError(`--gateway must lie inside 198.18.0.0/15 with --netns; got ${s}`);
  const us = parseIPv4(addr);
  const hostBits = 32 - +len; // 2..24: --ip's prefix is 8..30
  if (g === us || g >>> hostBits !== us >>> hostBits)
    throw new UsageError(`--gateway ${s} must be another address on the link of --ip ${ip}`);
  return s;
}

/** --gateway6: a link-local address, or a global one on --ip6's link. */
function gateway6Of(
  s: string,
  ip6: { text: string; bytes: Uint8Array; prefix: number } | null,
  testRange: boolean,
): string {
  if (!ip6) throw new UsageError("--gateway6 needs --ip6");
  let b: Uint8Array;
  try {
    b = parseIPv6(s);
  } catch (e) {
    throw new UsageError(`--gateway6 must be an IPv6 address such as fe80::1; got ${s} (${(e as Error).message})`);
  }
  const linkLocal = isLinkLocal(b);
  if (!linkLocal && !inPrefix(b, ip6.bytes, ip6.prefix))
    throw new UsageError(`--gateway6 ${s} must be link-local or on the link of --ip6 ${ip6.text}`);
  if (!linkLocal && testRange && !inPrefix(b, TEST_NET6, 48))
    throw new UsageError(`--gateway6 must lie inside 2001:2::/48 (or be link-local) with --netns; got ${s}`);
  return s;
}

function ipCmd(args: string[]): void {
  const r = spawnSync("ip", args, { encoding: "utf8" });
  if (r.error) throw new PmstackError("ENETNS", `pmstack: cannot run \`ip\` (iproute2): ${r.error.message}`);
  if (r.status !== 0) throw new PmstackError("ENETNS", `pmstack: ip ${args.join(" ")}: ${r.stderr.trim()}`);
}

/** A namespace the command made and removes at exit. */
class OwnNetns {
  readonly path: string;
  constructor(readonly name: string) {
    if (!/^[A-Za-z0-9_.-]{1,32}$/.test(name)) throw new UsageError(`bad namespace name ${JSON.stringify(name)}`);
    if (existsSync(`/run/netns/${name}`))
      throw new UsageError(
        `the network namespace ${name} exists already (another pmstack?); pick another with --netns NAME or remove it: ip netns del ${name}`,
      );
    ipCmd(["netns", "add", name]);
    this.path = `/run/netns/${name}`;
    ipCmd(["-n", name, "link", "set", "lo", "up"]);
  }
  ip(args: string[]): void {
    ipCmd(["-n", this.name, ...args]);
  }
  remove(): void {
    spawnSync("ip", ["netns", "del", this.name]);
  }
}

function defaultPm(cmd: string): string {
  return resolve("data", `${cmd}.pm`);
}

/** Who may use the server: kv's password and protected mode, httpd's token (docs/apps.md). */
interface Access {
  requirepass: string | null;
  protectedNets: NetList | null;
  /** The same networks as text (for the workers, which build their own lists). */
  nets: string[] | null;
  token: string | null;
  privateReads: boolean;
}

function access(a: Args, cmd: string, peers: string[]): Access {
  const only = (k: string, app: string) => {
    if (a.opts.has(k) && cmd !== app) throw new UsageError(`--${k} is for pmstack ${app}`);
  };
  for (const k of ["requirepass", "requirepass-file", "protected-mode", "allow-net"]) only(k, "kv");
  for (const k of ["token-file", "private"]) only(k, "httpd");
  for (const k of ["cluster", "cluster-config-file"]) only(k, "kv");
  if (a.opts.has("cluster-config-file") && !a.opts.has("cluster"))
    throw new UsageError("--cluster-config-file goes with --cluster");
  if (a.opts.has("requirepass") && a.opts.has("requirepass-file"))
    throw new UsageError("give --requirepass or --requirepass-file, not both");
  const requirepass = a.opts.has("requirepass-file")
    ? readSecretFile(resolve(str(a, "requirepass-file")!), "the password file", false)
    : (str(a, "requirepass") ?? null);
  const pm = str(a, "protected-mode") ?? "yes";
  if (pm !== "yes" && pm !== "no") throw new UsageError(`--protected-mode must be yes or no, got ${pm}`);
  let protectedNets: NetList | null = null;
  let nets: string[] | null = null;
  if (cmd === "kv" && pm === "yes" && requirepass === null) {
    protectedNets = new NetList();
    nets = [...peers];
    for (const p of peers) protectedNets.add(p);
    for (const n of (str(a, "allow-net") ?? "").split(",").filter((x) => x !== ""))
      try {
        protectedNets.add(n.trim());
        nets.push(n.trim());
      } catch (e) {
        throw new UsageError(
          `--allow-net must be a CIDR such as 198.18.0.0/15 or 2001:2::/48; got ${n} (${(e as Error).message})`,
        );
      }
  }
  const token = a.opts.has("token-file")
    ? readSecretFile(resolve(str(a, "token-file")!), "the token file", true)
    : null;
  if (a.opts.has("private") && token === null) throw new UsageError("--private needs --token-file");
  return { requirepass, protectedNets, nets, token, privateReads: a.opts.has("private") };
}

function makeApp(
  cmd: string,
  port: number | undefined,
  o: {
    maxBody: number;
    idleTimeoutMs: number;
    access: Access;
    tls?: { port: number; terminator: TlsTerminator };
    cluster?: { ip: string; configPath: string } | null;
  },
): (stack: Stack, log: import("./log.js").PmLog) => App {
  const x = o.access;
  if (cmd === "httpd")
    return (s, l) =>
      new HttpdApp(s, l, port ?? 80, {
        maxBody: o.maxBody,
        idleTimeoutMs: o.idleTimeoutMs,
        token: x.token,
        privateReads: x.privateReads,
        tls: o.tls,
      });
  return (s, l) =>
    new KvApp(s, l, port ?? 6379, {
      idleTimeoutMs: o.idleTimeoutMs,
      requirepass: x.requirepass,
      protectedNets: x.protectedNets,
      tls: o.tls,
      cluster: o.cluster
        ? new ClusterState({ ip: o.cluster.ip, port: port ?? 6379, config: clusterConfigFile(o.cluster.configPath) })
        : null,
    });
}

function fmtRate(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)}k` : n.toFixed(0);
}

async function runServer(a: Args): Promise<number> {
  const cmd = a.cmd;
  const pm = resolve(str(a, "pm") ?? defaultPm(cmd));
  if (a.opts.has("buffers") && a.opts.has("size")) throw new UsageError("give --size or --buffers, not both");
  let buffers: number;
  if (a.opts.has("buffers")) buffers = int(a, "buffers", 0, 1024, MAX_POOL_BUFFERS);
  else {
    const size = parseSize(str(a, "size") ?? "1G", "--size");
    if (size > MAX_SIZE)
      throw new UsageError(
        `--size ${str(a, "size")} is more than one 32-bit Wasm memory can map beside the core (at most ${MAX_SIZE_TEXT}); ` +
          "run several pools (one per process) for more",
      );
    buffers = Math.max(1024, Math.ceil(size / BUF_SIZE));
  }
  const maxBody = parseSize(str(a, "max-body") ?? "1G", "--max-body");
  const idleTimeoutMs = int(a, "idle-timeout", 30, 0, 86400) * 1000;
  const maxConns = int(a, "max-conns", 4096, 1, 1048575);
  const atMax = str(a, "at-max-conns") ?? "drop";
  if (atMax !== "drop" && atMax !== "reset") throw new UsageError(`--at-max-conns must be drop or reset, got ${atMax}`);
  const kind = str(a, "nic") ?? "tap";
  if (kind !== "tap" && kind !== "xdp") throw new UsageError(`--nic must be tap or xdp, got ${kind}`);
  let workers = 1;
  if (a.opts.has("workers")) {
    const w = str(a, "workers")!;
    if (w !== "auto" && !/^\d+$/.test(w)) throw new UsageError(`--workers must be a count or auto, got ${w}`);
    try {
      workers = resolveWorkers(w === "auto" ? "auto" : Number(w));
    } catch (e) {
      throw new UsageError(`--workers ${w}: ${(e as Error).message.replace(/^pmstack: /, "")}`);
    }
    if (workers > 1) {
      if (a.opts.has("queue")) throw new UsageError("--queue goes with one worker only (worker I serves queue I)");
      for (const k of ["cluster", "pcap"])
        if (a.opts.has(k)) throw new UsageError(`--${k} goes with one worker only (--workers 1)`);
    }
  }
  const netnsOpt = a.opts.get("netns");
  const nsName = netnsOpt === undefined ? null : netnsOpt === true ? "pmstack" : netnsOpt;
  // in a namespace the command makes, addresses come from the benchmarking range only
  const ip = address(str(a, "ip") ?? "198.18.0.2/24", "--ip", nsName !== null);
  const peerIp = address(str(a, "peer-ip") ?? "198.18.0.1/24", "--peer-ip", true);
  if (ip.split("/")[0] === peerIp.split("/")[0]) throw new UsageError("--ip and --peer-ip must differ");
  const ip6 = str(a, "ip6") !== undefined ? address6(str(a, "ip6")!, "--ip6", nsName !== null) : null;
  const peerIp6 = str(a, "peer-ip6") !== undefined ? address6(str(a, "peer-ip6")!, "--peer-ip6", true) : null;
  if (nsName !== null && (ip6 === null) !== (peerIp6 === null))
    throw new UsageError(
      ip6
        ? "--ip6 with --netns needs --peer-ip6 too (the kernel side's address, e.g. 2001:2:0:63::1/64)"
        : "--peer-ip6 needs --ip6 (pmstack's IPv6 address, e.g. 2001:2:0:63::2/64)",
    );
  if (ip6 && peerIp6) {
    if (ip6.text.split("/")[0] === peerIp6.text.split("/")[0]) throw new UsageError("--ip6 and --peer-ip6 must differ");
    if (!inPrefix(peerIp6.bytes, ip6.bytes, Math.min(ip6.prefix, peerIp6.prefix)))
      throw new UsageError(`--peer-ip6 ${peerIp6.text} must be on the link of --ip6 ${ip6.text} (the same prefix)`);
  }
  const gateway = str(a, "gateway") !== undefined ? gateway4(str(a, "gateway")!, ip, nsName !== null) : undefined;
  const gateway6 = str(a, "gateway6") !== undefined ? gateway6Of(str(a, "gateway6")!, ip6, nsName !== null) : undefined;
  const tlsFiles = { cert: str(a, "tls-cert"), key: str(a, "tls-key"), ca: str(a, "tls-ca") };
  const withTls = tlsFiles.cert !== undefined || tlsFiles.key !== undefined;
  if (withTls && (tlsFiles.cert === undefined || tlsFiles.key === undefined))
    throw new UsageError("--tls-cert and --tls-key go together (a PEM certificate and its private key)");
  for (const k of ["tls-ca", "tls-port", "tls-handshake-timeout"])
    if (!withTls && a.opts.has(k)) throw new UsageError(`--${k} needs --tls-cert and --tls-key`);
  const handshakeTimeoutMs = int(a, "tls-handshake-timeout", 10, 1, 3600) * 1000;
  // with TLS, --port 0 turns the plain port off (as Redis's port 0 beside tls-port)
  const port = a.opts.has("port") ? int(a, "port", 0, withTls ? 0 : 1, 65535) : undefined;
  const tlsPort = withTls ? int(a, "tls-port", cmd === "httpd" ? 443 : 6380, 1, 65535) : 0;
  if (withTls && tlsPort === (port ?? (cmd === "httpd" ? 80 : 6379)))
    throw new UsageError(`--tls-port ${tlsPort} is the plain port too: give them different ports (or --port 0)`);
  // read (and checked) before anything is made: a bad file is an error naming it
  const terminator = withTls
    ? new TlsTerminator({
        ...loadTlsFiles({ cert: tlsFiles.cert!, key: tlsFiles.key!, ca: tlsFiles.ca }),
        handshakeTimeoutMs,
      })
    : null;
  const mode = str(a, "mode") ?? "auto";
  if (!["auto", "msync", "journal", "clwb", "clflushopt", "strict"].includes(mode))
    throw new UsageError(`--mode must be auto, msync, journal, clwb, clflushopt or strict, got ${mode}`);
  let ifname = str(a, "ifname");
  if (kind === "xdp" && !ifname && !nsName)
    throw new UsageError("--nic xdp needs --ifname DEVICE (a real NIC's queue) or --netns (a veth pair made for you)");
  const vethPeer = str(a, "veth-peer") ?? null;
  if (vethPeer !== null && (kind !== "xdp" || workers < 2 || nsName !== null))
    throw new UsageError("--veth-peer is for --nic xdp --workers N (N > 1) on a pair made by hand (not --netns)");
  const control = resolve(str(a, "control") ?? `${pm}.ctl`);
  const peers = [peerIp.split("/")[0]!, ...(peerIp6 ? [peerIp6.text.split("/")[0]!] : [])];
  const acc = access(a, cmd, peers);
  // a new directory for the pool is private too (the pool and its journal are made 0600)
  mkdirSync(dirname(pm), { recursive: true, mode: 0o700 });
  const pools = Array.from({ length: workers }, (_, i) => workerPoolPath(pm, i, workers));
  checkPoolFiles(
    pools.flatMap((p) => [p, `${p}.journal`]),
    a.opts.has("insecure-pool"),
    (m) => console.error(m),
  );
  // a pool set of another worker count is refused before anything is made
  try {
    checkWorkerPools(pm, workers);
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^pmstack: /, ""));
  }

  let ns: OwnNetns | null = null;
  let srv: AppServer | null = null;
  let ws: WorkersServer | null = null;
  let pcap: PcapWriter | null = null;
  let ctl: CtlServer | null = null;
  let timer: ReturnType<typeof setInterval> | null = null;
  let done = false;
  const cleanup = () => {
    if (done) return;
    done = true;
    if (timer) clearInterval(timer);
    ctl?.close();
    try {
      unlinkSync(control);
    } catch {
      // not there
    }
    srv?.close();
    pcap?.close();
    const rm = () => ns?.remove();
    if (ws) return ws.close().then(rm, rm);
    rm();
  };
  // the signal handlers come first: a Ctrl-C, SIGTERM or SIGHUP from here on (one sent the moment a
  // start-up line is read, say) closes everything the command made, the namespace included
  let stopWith: ((sig: string) => void) | null = null;
  let pending: string | null = null;
  const onSignal = (sig: string) => () => (stopWith ? stopWith(sig) : (pending ??= sig));
  // SIGHUP too: the terminal that started the server closing stops it the same way
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  const handlers = signals.map((sig) => [sig, onSignal(sig)] as const);
  for (const [sig, h] of handlers) process.once(sig, h);
  try {
    let nic: ServeNic;
    if (nsName) ns = new OwnNetns(nsName);
    if (kind === "tap") {
      nic = { kind: "tap", name: ifname ?? "pmstack0", netns: ns?.path ?? null };
    } else if (ns) {
      // a veth pair in the namespace: the kernel keeps pmk0, pmstack binds AF_XDP to pmx0 (a
      // queue per worker, the kernel's end steered: workers.ts)
      const qs = ["numrxqueues", String(workers), "numtxqueues", String(workers)];
      ifname = ifname ?? "pmx0";
      ns.ip(["link", "add", "pmk0", ...qs, "type", "veth", "peer", "name", ifname, ...qs]);
      ns.ip(["link", "set", ifname, "address", "02:50:4d:00:00:02"]);
      ns.ip(["link", "set", ifname, "up"]);
      // AF_XDP gives the receiver no checksum metadata: the kernel end must send complete
      // checksums, not the partial ones a veth passes on by default
      const r = spawnSync("ip", ["netns", "exec", ns.name, "ethtool", "-K", "pmk0", "tx", "off"], { encoding: "utf8" });
      if (r.status !== 0)
        throw new PmstackError(
          "ENETNS",
          `pmstack: ethtool -K pmk0 tx off: ${r.stderr?.trim() || r.error} (install ethtool)`,
        );
      nic = { kind: "xdp", ifname, queue: int(a, "queue", 0, 0, 1023), netns: ns.path };
    } else {
      nic = { kind: "xdp", ifname: ifname!, queue: int(a, "queue", 0, 0, 1023) };
    }
    if (str(a, "pcap")) pcap = new PcapWriter(resolve(str(a, "pcap")!), { epochMs: Date.now() - performance.now() });
    // the stack and pool, one server's or each worker's
    const base = {
      path: pm,
      buffers,
      mode: mode as never,
      mac: "02:50:4d:00:00:02",
      ip,
      ...(ip6 ? { ip6: ip6.text } : {}),
      ...(gateway ? { gateway } : {}),
      ...(gateway6 ? { gw6: gateway6 } : {}),
      busyPoll: a.opts.has("busy-poll"),
      maxConnections: maxConns,
      atMaxConnections: atMax as "drop" | "reset",
      synQueue: Math.min(1024, maxConns),
    };
    if (workers > 1) {
      ws = await serveWorkers({
        ...base,
        workers,
        ...(kind === "tap"
          ? { tap: { name: ifname ?? "pmstack0", netns: ns?.path ?? null } }
          : {
              xdp: {
                ifname: ifname!,
                netns: ns?.path ?? null,
                peer: ns ? "pmk0" : vethPeer,
                copyUmem: "fallback" as const,
              },
            }),
        app: {
          ...(cmd === "kv"
            ? { app: "kv" as const, requirepass: acc.requirepass, protectedNets: acc.nets }
            : { app: "httpd" as const, maxBody, token: acc.token, privateReads: acc.privateReads }),
          port,
          idleTimeoutMs,
          ...(withTls
            ? {
                tls: {
                  port: tlsPort,
                  ...loadTlsFiles({ cert: tlsFiles.cert!, key: tlsFiles.key!, ca: tlsFiles.ca }),
                  handshakeTimeoutMs,
                },
              }
            : {}),
        },
      });
    } else
      srv = serve(
        {
          ...base,
          nic,
        },
        makeApp(cmd, port, {
          maxBody,
          idleTimeoutMs,
          access: acc,
          cluster: a.opts.has("cluster")
            ? { ip: ip.split("/")[0]!, configPath: resolve(str(a, "cluster-config-file") ?? `${pm}.nodes.conf`) }
            : null,
          ...(terminator ? { tls: { port: tlsPort, terminator } } : {}),
        }),
        pcap ? { pcap } : {},
      );
    // the kernel side of the namespace
    if (ns) {
      const kdev = kind === "tap" ? (ws?.ifname ?? srv!.ifname) : "pmk0";
      ns.ip(["addr", "add", peerIp, "dev", kdev]);
      if (peerIp6) {
        // IPv6 on the kernel's device (a new namespace may start with it off), its address
        // usable at once (nodad: the namespace holds nobody else)
        ipCmd(["netns", "exec", ns.name, "sysctl", "-qw", `net.ipv6.conf.${kdev}.disable_ipv6=0`]);
        ns.ip(["-6", "addr", "add", peerIp6.text, "dev", kdev, "nodad"]);
      }
      ns.ip(["link", "set", kdev, "up"]);
    }
    // our IPv6 address is usable once duplicate address detection is over (about a second)
    if (ip6 && srv) await dadDone(srv.stack, ip6.text);
    // the workers' duplicate address detection runs in their threads: about a second
    else if (ip6) await new Promise((r) => setTimeout(r, 1100));
  } catch (e) {
    for (const [sig, h] of handlers) process.off(sig, h);
    await cleanup();
    terminator?.close();
    throw e;
  }
  const view = ws ? workersView(ws) : serverView(srv!, terminator);
  const usPort = port ?? (cmd === "httpd" ? 80 : 6379);
  const us = ip.split("/")[0]!;
  const us6 = ip6 ? ip6.text.split("/")[0]! : null;
  const ports = [...(usPort ? [usPort] : []), ...(terminator ? [tlsPort] : [])];
  const where = (host: string) =>
    ports.map((p) => `${formatEndpoint(host, p)}${terminator && p === tlsPort ? " (TLS)" : ""}`).join(", ");
  for (const w of view.workers) {
    const at = view.workers.length > 1 ? ` worker ${w.index}` : "";
    const rec = w.recovered;
    console.log(`pmstack ${cmd}${at}: ${w.pool}`);
    console.log(
      `log: ${rec.keys} keys recovered (${rec.records} records` +
        `${rec.loans ? `, ${rec.loans} loans kept for other workers' keys` : ""}` +
        `${rec.damage ? `, torn tail discarded: ${rec.damage}` : ""})`,
    );
  }
  console.log(`nic: ${view.workers[0]!.copies}`);
  console.log(
    `listening on ${where(us)}${us6 ? ` and ${where(us6)}` : ""} ` +
      `(${kind === "tap" ? "TAP" : "AF_XDP"} ${view.ifname}${ns ? `, namespace ${ns.name}` : ""})`,
  );
  if (ws)
    console.log(
      `workers: ${ws.count} threads, one queue of ${ws.ifname} each, ` +
        `the keys sharded over them by hash slot (a ${cmd === "kv" ? "command runs on the worker that owns its keys" : "request runs on the worker that owns its key"}); ` +
        `queues picked by ${ws.workers[0]!.steering ?? "the device"}`,
    );
  if (terminator)
    console.log(
      `tls: TLS 1.2 and 1.3 (node:tls, OpenSSL ${process.versions.openssl}) on port ${tlsPort}` +
        `${terminator.requestCert ? ", client certificates required (--tls-ca)" : ""}; ` +
        "decrypted bytes are copied into PM buffers (the one copy TLS forces)",
    );
  if (ns && terminator) {
    const ex = `ip netns exec ${ns.name}`;
    const cert = terminator.requestCert ? " --cert client.pem --key client-key.pem" : "";
    if (cmd === "httpd") {
      const p = tlsPort !== 443 ? `:${tlsPort}` : "";
      console.log(`try:  ${ex} curl --cacert ca.pem${cert} -d 'hello, PM' https://${us}${p}/greeting`);
      console.log(`      ${ex} curl --cacert ca.pem${cert} https://${us}${p}/greeting`);
    } else {
      console.log(`try:  ${ex} redis-cli --tls --cacert ca.pem${cert} -h ${us} -p ${tlsPort} SET greeting 'hello, PM'`);
    }
  }
  if (cmd === "kv")
    console.log(
      acc.requirepass !== null
        ? "access: clients AUTH with the password first (redis-cli --askpass, or -a)"
        : acc.protectedNets
          ? `access: protected mode (no password): serving ${acc.protectedNets} only`
          : "access: open to every peer (no password, --protected-mode no)",
    );
  else
    console.log(
      acc.token === null
        ? "access: open to every peer (no --token-file)"
        : `access: ${acc.privateReads ? "every request needs" : "PUT, POST and DELETE need"} the bearer token (curl -H "Authorization: Bearer $(cat ${str(a, "token-file")})")`,
    );
  if (ns && usPort) {
    const ex = `ip netns exec ${ns.name}`;
    const p = usPort !== (cmd === "httpd" ? 80 : 6379) ? `:${usPort}` : "";
    if (cmd === "httpd") {
      // with a token: the header on the writes (and the reads, --private); the secret stays in its file
      const h = acc.token !== null ? `-H "Authorization: Bearer $(cat ${str(a, "token-file")})" ` : "";
      const hr = acc.privateReads ? h : "";
      console.log(`try:  ${ex} curl ${h}-d 'hello, PM' http://${us}${p}/greeting`);
      console.log(`      ${ex} curl ${hr}http://${us}${p}/greeting`);
      console.log(`      ${ex} curl ${h}-T bigfile http://${us}${p}/big   (any size; GET streams it back)`);
      if (us6) {
        console.log(`      ${ex} curl ${hr}-g http://[${us6}]${p}/greeting   (IPv6)`);
        console.log(`      ${ex} ping -6 -c 2 ${us6}`);
      }
    } else {
      const rp = (p ? ` -p ${usPort}` : "") + (acc.requirepass !== null ? " --askpass" : "");
      console.log(`try:  ${ex} redis-cli -h ${us}${rp} SET greeting 'hello, PM'`);
      if (us6) console.log(`      ${ex} redis-cli -h ${us6}${rp} GET greeting   (IPv6)`);
    }
  } else if (kind === "tap") {
    console.log(
      `the device ${view.ifname} is in this namespace and down; give the kernel's side an address in ${ip} and bring it up to reach ${us}`,
    );
  }
  console.log(`stats: pmstack stats --control ${control}   (Ctrl-C stops)`);

  // the control socket: one line in ("stats", "ss", "status"), JSON out
  try {
    unlinkSync(control);
  } catch {
    // none left over
  }
  ctl = createServer((c) => {
    let line = "";
    c.setEncoding("utf8");
    c.on("data", (d) => {
      line += d;
      if (!line.includes("\n")) return;
      const what = line.trim();
      const body =
        what === "stats"
          ? view.stats()
          : what === "ss"
            ? view.ss()
            : Promise.resolve({ error: `unknown request ${JSON.stringify(what)}: stats or ss` });
      void body.then((b) => c.end(JSON.stringify(b) + "\n"));
    });
    c.on("error", () => {});
  });
  ctl.on("error", (e) => console.error(`pmstack: control socket ${control}: ${e.message}`));
  listenPrivate(ctl, control); // owner-only: stats and ss are for the server's owner
  ctl.unref();

  // the live status line
  const tty = process.stderr.isTTY;
  if (!a.opts.has("quiet")) {
    let last = { t: performance.now(), req: 0, turns: 0, frames: 0 };
    timer = setInterval(
      () => {
        void Promise.all([view.stats(), view.ss()]).then(([all, conns]) => {
          const st = all as {
            app?: Record<string, number>;
            loop: { rxFrames: number; txFrames: number; turns: number };
            pool: { free: number };
            log: { liveKeys: number };
          };
          const app = st.app ?? {};
          const req = app.requests ?? app.commands ?? 0;
          const now = performance.now();
          const dt = (now - last.t) / 1000;
          const frames = st.loop.rxFrames + st.loop.txFrames;
          const turns = st.loop.turns;
          const line =
            `${fmtRate((req - last.req) / dt)} req/s  ${req} total  ${conns.length} conns  ` +
            `${st.log.liveKeys} keys  ${st.pool.free} free bufs  ${turns - last.turns > 0 ? ((frames - last.frames) / (turns - last.turns)).toFixed(1) : "0"} frames/turn`;
          last = { t: now, req, turns, frames };
          if (tty) process.stderr.write(`\r\x1b[K${line}`);
          else process.stderr.write(`${new Date().toISOString()} ${line}\n`);
        });
      },
      tty ? 1000 : 10_000,
    );
  }

  return new Promise((resolveExit) => {
    stopWith = (sig: string) => {
      if (tty && !a.opts.has("quiet")) process.stderr.write("\n");
      console.log(`pmstack ${cmd}: ${sig}, closing`);
      void Promise.resolve(cleanup()).then(() => resolveExit(0));
    };
    if (ws)
      ws.onFailure = (i, e) => {
        console.error(
          `pmstack ${cmd}: worker ${i} failed: ${e.message}; stopping every worker ` +
            "(a server missing one would serve only part of its keys)",
        );
        void Promise.resolve(cleanup()).then(() => resolveExit(1));
      };
    process.once("exit", cleanup);
    if (pending) stopWith(pending);
  });
}

/** What the command shows of a running server: one in this thread, or the workers'. */
interface ServerView {
  ifname: string;
  workers: (ServerInfo & { index: number })[];
  /** The control socket's `stats` body. */
  stats(): Promise<unknown>;
  /** Its `ss` body: the connections. */
  ss(): Promise<unknown[]>;
}

function serverView(s: AppServer, terminator: TlsTerminator | null): ServerView {
  return {
    ifname: s.ifname,
    workers: [{ index: 0, ...serverInfo(s) }],
    stats: async () => serverStats(s, terminator),
    ss: async () => s.stack.connections(),
  };
}

function workersView(ws: WorkersServer): ServerView {
  return {
    ifname: ws.ifname,
    workers: ws.workers.map((w, index) => ({ index, ...w })),
    stats: () => ws.stats(),
    ss: () => ws.connections(),
  };
}

/**
 * Waits until duplicate address detection on our IPv6 address is over (the loop runs meanwhile);
 * a duplicate is an error naming the address.
 */
async function dadDone(stack: Stack, want: string): Promise<void> {
  const end = performance.now() + 10_000;
  for (;;) {
    const g = stack.ip6Addresses().find((x) => x.scope === "global");
    if (!g || g.state === "preferred") return;
    if (g.state === "duplicate")
      throw new PmstackError("EADDRINUSE", `pmstack: --ip6 ${want}: another host on the link has this address (DAD)`);
    if (performance.now() > end) {
      console.error(`pmstack: --ip6 ${want}: duplicate address detection still running; going on`);
      return;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function ask(control: string, what: string): Promise<unknown> {
  return new Promise((res, rej) => {
    const c = createConnection(control);
    let out = "";
    c.setEncoding("utf8");
    c.on("connect", () => c.write(what + "\n"));
    c.on("data", (d) => (out += d));
    c.on("end", () => {
      try {
        res(JSON.parse(out));
      } catch {
        rej(new Error(`pmstack: bad answer from ${control}: ${out.slice(0, 200)}`));
      }
    });
    c.on("error", (e: NodeJS.ErrnoException) =>
      rej(
        new PmstackError(
          "ECONTROL",
          `pmstack: no server answers on ${control} (${e.code}): is \`pmstack httpd\` or \`pmstack kv\` running with that pool or --control?`,
        ),
      ),
    );
  });
}

function table(rows: Record<string, unknown>[], cols: string[]): string {
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c]).length)));
  const line = (vals: string[]) => vals.map((v, i) => v.padStart(w[i]!)).join("  ");
  return [line(cols), ...rows.map((r) => line(cols.map((c) => String(r[c]))))].join("\n");
}

async function runQuery(a: Args): Promise<number> {
  const control = resolve(str(a, "control") ?? `${resolve(str(a, "pm") ?? defaultPm("httpd"))}.ctl`);
  const ans = await ask(control, a.cmd);
  if (a.opts.has("json")) {
    console.log(JSON.stringify(ans, null, 2));
    return 0;
  }
  if (a.cmd === "ss") {
    const rows = (ans as Record<string, unknown>[]).map((r) => ({
      ...r,
      local: r.localAddress ? formatEndpoint(String(r.localAddress), Number(r.localPort)) : "*",
      peer: r.remoteAddress ? formatEndpoint(String(r.remoteAddress), Number(r.remotePort)) : "*",
    }));
    if (!rows.length) console.log("no connections");
    else
      console.log(
        table(rows, [
          ...(rows.some((r) => (r as Record<string, unknown>).worker !== undefined) ? ["worker"] : []),
          "id",
          "state",
          "local",
          "peer",
          "mss",
          "cwnd",
          "ssthresh",
          "sndWnd",
          "srttMs",
          "rtoMs",
          "inFlight",
          "sndQueued",
          "unread",
          "retries",
        ]),
      );
    return 0;
  }
  const st = ans as Record<string, Record<string, unknown>>;
  const out: string[] = [];
  const section = (title: string, o: Record<string, unknown> | undefined, skipZero = false) => {
    if (!o) return;
    out.push(`${title}:`);
    const put = (k: string, v: unknown) => {
      if (v !== null && typeof v === "object") {
        // a group of counters (the NIC's xdpKernel): one line each, named group.counter
        for (const [k2, v2] of Object.entries(v)) put(`${k}.${k2}`, v2);
        return;
      }
      if (skipZero && v === 0) return;
      out.push(`    ${String(v).padStart(14)} ${k}`);
    };
    for (const [k, v] of Object.entries(o)) put(k, v);
  };
  // netstat -s style: every non-zero stack counter, in the core's order
  const stack = st.stack ?? {};
  out.push("Stack:");
  for (const k of COUNTERS)
    if (stack[k]) out.push(`    ${String(stack[k]).padStart(14)} ${k.toLowerCase().replaceAll("_", " ")}`);
  const ip6 = (ans as { ip6?: { address: string; prefix: number; scope: string; state: string }[] }).ip6 ?? [];
  if (ip6.length) {
    out.push("IPv6 addresses:");
    for (const x of ip6) out.push(`    ${x.address}/${x.prefix} ${x.scope} ${x.state}`);
  }
  section("Loop", st.loop);
  section("NIC", st.nic, true);
  section("Pool buffers", st.pool);
  section("Log", st.log);
  section("Journal", st.journal ?? undefined);
  section("App", st.app);
  section("TLS", st.tls);
  // a server of several workers: the sections above are their totals; each worker's share here
  const ws = (ans as { workers?: Record<string, Record<string, number>>[] }).workers;
  if (ws) {
    out.push(`Workers (${ws.length}):`);
    for (const w of ws) {
      const app = w.app ?? {};
      out.push(
        `    worker ${w.worker}: ${app.commands ?? app.requests ?? 0} ${app.commands !== undefined ? "commands" : "requests"}, ${app.forwarded ?? 0} forwarded, ` +
          `${app.served ?? 0} served for others, ${w.log?.liveKeys ?? 0} keys, ${w.pool?.free ?? 0} free buffers, ` +
          `${w.loop?.rxFrames ?? 0} frames in`,
      );
    }
  }
  console.log(out.join("\n"));
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  let a: Args;
  try {
    a = parse(argv);
    if (a.opts.has("help") || (!a.cmd && !a.opts.has("version"))) {
      console.log(HELP);
      return a.cmd || a.opts.has("help") ? 0 : 2;
    }
    if (a.opts.has("version")) {
      console.log(VERSION);
      return 0;
    }
    if (a.cmd === "httpd" || a.cmd === "kv") return await runServer(a);
    if (a.cmd === "stats" || a.cmd === "ss") return await runQuery(a);
    throw new UsageError(`unknown command ${JSON.stringify(a.cmd)}`);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`pmstack: ${e.message}\nRun \`pmstack --help\` for the options.`);
      return 2;
    }
    const msg = e instanceof Error ? e.message : String(e);
    console.error(msg.startsWith("pmstack") ? msg : `pmstack: ${msg}`);
    if (e instanceof PmstackError && /EPERM|EACCES|Operation not permitted/.test(msg))
      console.error("pmstack: TAP, AF_XDP and namespaces need root (CAP_NET_ADMIN)");
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    console.error(e);
    process.exitCode = 1;
  },
);

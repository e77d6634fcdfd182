// Writes docs/benchmarks.md from the committed results in bench/results/*.json, so the page
// always shows the tables of the runs that are committed. Run: node bench/report.mjs
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { formatTable } from "./_lib.mjs";
import { formatDurable, DURABLE_INTRO, DURABLE_DISK_INTRO } from "./_durable-report.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const intro = {
  core: [
    "Two pmstack stacks and the in-memory link in one Node process (one core), beside Debian's native lwIP 2.1.3 harness (`bench/lwip`) in the same run: three rounds, each pmstack's runs then lwIP's, medians shown (the rounds are in the notes: this machine drifts by tens of percent within minutes, and both sides drift together). Higher is better.",
    "",
    "Two bulk rows, because lwIP's harness and a zero-copy app do different work per byte: lwIP's sender copies the stream into the stack (`TCP_WRITE_FLAG_COPY`) and its receiver compares every byte. `bulk_gbps` is pmstack moving buffers by name without touching their bytes (what a PASTE app does with payload it only persists or forwards); `bulk_gbps_checked` makes pmstack's app do lwIP's work, writing every byte it sends into PM and comparing every byte it receives (in JavaScript, `Buffer.compare` on the PM view). lwIP's one figure stands in both rows.",
    "",
    "Where the time goes (V8 CPU profile of the bulk run, `node --cpu-prof`): about 40% in the Wasm core (TCP input/output, SIMD checksums, ring and pool work), the rest in the JavaScript glue of the in-memory link (copying each frame into the receiver's PM buffer, ring slot bookkeeping) and the benchmark's event loop. Before the link got a single-buffer fast path, truncating per-frame arrays alone cost 7% and bulk was 0.75x lwIP. Request/response on one connection and connection set-up are bound by the fixed cost of a host turn (two `stackPoll` calls, the link step and two event drains, all crossings of the JS/Wasm boundary) paid for every 64-byte exchange; lwIP's harness is one C loop. Batching many connections per turn amortizes it (rr over 100 connections beats lwIP). Two costs the V8 profiles of rr_tps_1conn and conn_per_s found and removed (a core built with names, `--shrinkLevel 2 --debug`, and line ticks in the host): the neighbor cache's timers scanned both of its tables on every poll (a quarter of rr's pmstack time; they now scan only when a deadline comes or an entry changes), and the host kept live connection ids in a Set and a Map that rehashed every few connections (a quarter of conn_per_s's; now typed arrays by connection block): rr_tps_1conn went from about 300k to 430k tx/s and conn_per_s from about 92k to 160k conn/s. What is left per exchange is about half the Wasm core's TCP input and output for both stacks and half JavaScript: the link's copy and ring bookkeeping, the event drains, and the harness's clock reads.",
    "",
    "`pmstack-v6` is the same pair of stacks and the same app over IPv6 (dual-stack stacks, the connections over 2001:2:0:63::/64; 40-byte network headers, so MSS 1440 and 1,428 bytes of payload per segment with timestamps), run right after pmstack's IPv4 run of the same metric in every round; its ratio rows compare it with IPv4. The per-segment work is the same but for the header's size and a 16-byte address compare in the connection lookup, so IPv6 runs at IPv4's rate within this machine's noise.",
  ].join("\n"),
  cluster:
    "A Redis Cluster of pmstack kv nodes (`pmstack kv --cluster`, each process on a TAP device of its own, pools on /dev/shm) beside one of redis-server 7.0 nodes (`--appendonly yes --appendfsync always`, on /dev/shm), 1 node and 3 nodes each, in the same run with the same client: redis-benchmark, 50 clients, pipelines of 16, 128-byte values, 100,000 random keys (`--cluster` for 3 nodes; it refuses a cluster of one master, which serves every key anyway). The 3-node clusters are made by `redis-cli --cluster create` over each system's own bus. Two things to read the ratios by: redis-benchmark reaches Redis over the namespace's loopback and pmstack through a TAP device (the kernel's copy and TAP queue per frame, routed for 3 nodes), the path bench/durable's kv-tap rows measure; and this machine has 2 CPUs, so the 3-node rows are four busy processes sharing two CPUs, not three machines. Higher is better.",
  "core-baseline":
    "The `core` benchmark's pmstack cells measured for two builds in one run: this tree's (`pmstack`) and an earlier revision's (`pmstack-baseline`, built in a temporary worktree by `npm run bench -- core --baseline REV`), the two alternating over three rounds, medians shown and every round in the notes. It shows what a change to the core or the host costs, apart from the machine's drift between runs; ratios within +-10% are this machine's noise. Higher is better.",
  durable: DURABLE_INTRO,
  "durable-disk": DURABLE_DISK_INTRO,
  persist:
    "The PM log's commit (payload written into pool buffers, `PmLog.append`, `PmLog.commit`) beside a plain `write` + `fdatasync` log (`fs-fdatasync`: the same record bytes into a pre-written file, one `fdatasync` per group), for 64 B, 1 KiB and 4 KiB records in groups of 1 to 256, on tmpfs and on the disk (ext4 under /var/tmp) in the same run: each metric's last part names its medium. `pmstack-log` is the pool's default strategy for the medium (`msync` on tmpfs, the write-ahead journal on the disk); the other strategy runs beside it as the candidate (`pmstack-log-journal` on tmpfs, `pmstack-log-msync` on the disk). On the disk the journal commits 2x (one record at a time) to 10x (groups of 256 small records) as fast as persisting in place (msync: two device flushes per commit, scattered page writebacks), which is why it is the default there. Against the plain log the journal runs at 0.7x to 0.95x one record at a time (the hand-off to the journal's thread and back), at par or ahead for records up to 1 KiB in groups (up to 2.1x for 64-byte records in groups of 256: one entry and one `fdatasync` per group), and at 0.7x to 0.8x for 4 KiB records, where the checkpoint's second write of the payload shows (the device took 42 KB per commit of 16 records of 1 KiB, the plain log 21 KB). On tmpfs the log's `msync` commit runs at 0.65x to 0.95x the plain log one record at a time and 2x to 5x ahead in groups. What one commit costs the device (`write_bytes_per_commit_*` from /proc/self/io, `device_write_bytes_per_commit_*` from the block device's own counter, `device_flushes_per_commit_*`) is measured for each system alone on a fresh file, a journal's checkpoints included; `device` is the medium's floor. Higher appends/s is better, lower latency.",
  flood:
    "pmstack httpd (the CLI's limits: 4096 connections, a SYN queue of 1024) on two NIC queues, run one after the other in each repetition, each on a fresh server: over TAP (`pmstack-httpd-tap`: a readv and a writev per frame, up to 32 of them per system call through io_uring) and over AF_XDP on a veth (`pmstack-httpd-xdp`: the socket on the veth's end in a server namespace, frames through shared rings in batches; the kernel end sends complete checksums, `ethtool -K tx off`, as in bench/durable). Each serves wrk (1 KiB POSTs at 50 connections, bench/durable-post.lua) while a second network namespace floods it through the client's namespace, routed, at `--rate` (100,000) spoofed segments a second from bench/_flood-sender.c (sources in 198.18.128.0/17): SYNs (the SYN queue fills, then every SYN gets a SYN cookie and no state), bare ACKs to port 80 (failed cookie checks, each answered with an RST) and RSTs from the client's own address to its local port range, guessing at the receive windows of wrk's live connections (RFC 5961: only the exact sequence number resets, one in the window gets a challenge ACK, at most 1000 a second). Each flood's wrk run is compared with wrk alone on the same server in the same run, per system (`req_s_<flood> / req_s_base`; the target for the SYN flood is 0.5 or more). `*_pps` is the rate the router forwarded into pmstack's link (the TAP or the veth), `syn_cookies_sent` is `TCP_SYNQ_OVERFLOW`, `challenge_acks*` are the core's challenge-ACK counters over the RST flood, and `leaked_buffers` is total - kept - nic - free once the server is idle after the floods (0: every buffer back). pmstack sends its SYN-ACKs and RSTs for the spoofed sources to its gateway, the router (the client namespace's end of its link), which drops them on a blackhole route. wrk and the sender share CPU 0 (for AF_XDP the veth's XDP redirect and copy into the UMEM run there too), pmstack has CPU 1; the notes, per system, give both sides' CPU, what each flood costs alone and the drops on pmstack's link (the TAP queue's; the veth's and the AF_XDP socket's kernel counters). Higher req/s is better, lower latency.",
  nic: "pmstack on a NIC queue (TAP with offloads, AF_XDP on a veth) serving the Linux kernel's TCP, beside kernel-to-kernel TCP over a veth pair, all in one run (method in `bench/nic.mjs`'s header and the notes). `pmstack-v6` and `kernel-veth-v6` are `pmstack-tap` and `kernel-veth` over IPv6 (the TAP's kernel end and the veth pair with 2001:2:0:6::/64 and 2001:2:0:7::/64 addresses, no DAD); their ratio rows compare pmstack-v6 with the kernel over IPv6 and with pmstack-tap over IPv4. Higher is better, except syscalls_per_req and cpu_us_per_req.",
  pool: "Buffer alloc/free (JS API, and the core called directly) beside a plain JS free list; persist cost per call for 64 B, 1 KiB (one range) and 64 KiB (a batch of 32 whole buffers), on a tmpfs file and an ext4 file, beside `write` + `fdatasync` of the same bytes on the same medium. Lower is better.",
};
const parts = [
  "# Benchmarks",
  "",
  "Every table here is generated by `node bench/report.mjs` from the JSON a benchmark run wrote to",
  "`bench/results/` (committed with the docs). Each benchmark measures pmstack and its peers in the",
  "same run on the same machine; compare only within a table (this machine is shared and noisy,",
  "+-30% between runs). Run one with `npm run bench -- <name>`.",
];
for (const f of readdirSync(`${here}results`)
  .filter((x) => x.endsWith(".json"))
  .map((x) => x.slice(0, -5))
  .sort()
  .map((x) => `${x}.json`)) {
  const r = JSON.parse(readFileSync(`${here}results/${f}`, "utf8"));
  parts.push("", `## ${r.bench}`, "");
  if (intro[r.bench]) parts.push(intro[r.bench], "");
  parts.push(
    `Run ${r.started} on ${r.machine.cpus} x ${r.machine.cpu}, Node ${r.machine.node}, kernel ${r.machine.kernel}.`,
    "",
  );
  parts.push(r.bench.startsWith("durable") ? formatDurable(r) : formatTable(r));
}
writeFileSync(`${here}../docs/benchmarks.md`, parts.join("\n") + "\n");
console.log("wrote docs/benchmarks.md");

// bench/durable's presentation: ratios, the side-by-side tables (used by bench/durable.mjs and by
// bench/report.mjs for docs/benchmarks.md), the latency CDF plot (SVG, no dependencies) and a
// summary of a V8 CPU profile.

/** The durable section's introduction on docs/benchmarks.md (the profile numbers are from the committed run's notes). */
export const DURABLE_INTRO = [
  "The headline benchmark: durable writes over the network. pmstack's HTTP server (`pmstack-httpd-*`, host/apps/httpd.ts: a request body stays in the PM buffers the NIC wrote it to, its names go into the PM log, one group commit per loop turn, 201 only after it) and its key-value store (`pmstack-kv-*`, host/apps/kv.ts, RESP2: SET durable before the reply), each over TAP and AF_XDP in its own process, beside two Node servers that append each body to a log file and call `fdatasync` before answering (`node-http`: `node:http`, which streams bodies over 64 KiB to its log as they arrive and fdatasyncs once, and streams GETs from the file; `node-net`: `node:net` with a minimal HTTP parser; bench/_durable-node.mjs) and `redis-server` 7.0 with `appendonly yes`, `appendfsync always` (`redis-aof-always`). One run measures two media, every system's files on the medium of its section: this one is tmpfs (/dev/shm: pmstack persists with `msync`, the others with `fdatasync`; both cheap there, so it compares the network paths), the next (`durable-disk`) the disk. Clients (wrk with bench/durable-post.lua and bench/durable-put.lua, redis-benchmark) run in a second network namespace on the other CPU. Each cell runs every system back to back, three times in rotating order, and keeps each system's best repetition. Ratios are pmstack's advantage (>1: pmstack better). Object cells: PUT then GET of 64 KiB, 1 MiB and 16 MiB bodies (`put_mb_s_1m`, ...: MB/s, p50, p99, server CPU per MB), and SET/GET of 1 MiB values at 4 clients. TLS cells, after the others (`--no-tls` leaves them out): `pmstack-httpd-tls` (httpd's TLS port over TAP, Node's own TLS under the connection layer, docs/apps.md#tls) against `node-https` (the same fdatasync-per-request server on `node:https`), 1 KiB POST at 50 connections, and `pmstack-kv-tls` against `redis-tls` (`redis-server --tls-port`, `appendfsync always`), SET 1 KiB at 50 clients, all TLS 1.3 with an ECDSA P-256 certificate made for the run; their tables appear for runs that have them. Run it with `npm run bench -- durable` (about 25 minutes for both media; `quick` for a smoke run, `--media tmpfs` or `--dir DIR` for one medium, `--prof` adds the profiles below).",
  "",
  "![Latency CDF at 50 connections on tmpfs: HTTP POST (left), RESP SET/GET (right)](durable-cdf.svg)",
  "",
  "**Reading it.** Over TAP, pmstack answers 1 KiB POSTs at 4.5x node-http's rate with a fifth of its CPU per request (9.8 µs against 44.9), and uses less CPU per MB on uploads (761 µs per MB against 4,129 at 1 MiB: the body is never copied after the kernel's TAP read; node-http copies it into its log). The upload rates themselves are not a settled comparison: in this run pmstack took 1 MiB and 16 MiB uploads at 5.4x and 5.2x node-http's MB/s on tmpfs (4.1x and 6.4x in the previous committed run, 4.95x and 5.11x and 5.3x and 5.2x in the two before that), and at 0.90x and 1.39x on the disk (the committed disk run, from before this tmpfs run; 1.04x both in the one before it), and an earlier short smoke run (`quick`: one 1-second repetition per cell) measured node-http at 1,068 and 540 MB/s against pmstack's 902 and 347 (0.84x and 0.64x). Both servers' upload rates move by up to 3x between runs; why has not been measured (one untested suspect: node-http's log only grows, by gigabytes over the long run, in RAM on tmpfs). GETs stream from PM at 2.1x and 1.9x node-http's rate for 1 MiB and 16 MiB bodies. Over AF_XDP (copy mode on a veth pair here) every 1,448-byte segment is its own frame, where TAP carries 64 KiB TSO superframes, so large transfers cost more per byte: uploads reach 1.7x and 2.0x node-http, GETs 0.31x and 0.28x of it. kv: without pipelining the one-core redis-benchmark is the limit (its CPU was 82% to 100% busy in the cells of 10 and 50 clients, against either server), so the SET ratio stays near the ratio of what one request costs the client (the targets line gives it); with pipeline 16 the servers are the limit: pmstack is level with redis on SET over TAP (1.00x, at 3.69 µs of CPU per SET against redis's 3.52; 0.99x and 1.23x in the two committed runs before) and over AF_XDP (1.01x), behind on GET (0.87x over TAP at 1.23 µs per GET against redis's 1.04; 0.85x, 0.93x and 0.60x in the committed runs before), far behind over AF_XDP (0.34x: a frame per segment). At one client pmstack ran at 14,479 SET/s, redis at 13,763. `pmstack-kv-tap-2workers` is `pmstack kv --workers 2` (docs/scaling.md): on this machine its two workers share the two CPUs with the client, so it shows what sharding costs per request, not what it gains.",
  "",
  "**Where the time goes per request (`--prof`), and what stops the targets.** After the cells, each of four cells runs once more on a fresh pmstack-kv-tap or pmstack-httpd-tap server: unprofiled (user and system CPU per request from the server's own `process.cpuUsage()`, the loop's counters, the bytes its JavaScript heap took and its GCs by `v8.GCProfiler`, the loop turns that took 1 ms or more: `NicLoop.stats.slowTurns`), then with the server profiling itself over the measured requests only (`node:inspector`), then with every call into the core and the addon counted (`PMSTACK_COUNT_CALLS=1`, docs/node.md); the peer (node-http or redis) runs the same cell right after, for its user and system CPU, and for the kv cells so does `resp-floor` (bench/_durable-node.mjs): a Node server on the kernel's TCP that only answers, +OK or one fixed 1 KiB value per command, with nothing parsed, looked up, stored or persisted, the least a server hosted in Node does per request on this machine. The fourth cell is the GET cell over 100 keys instead of 10,000: every server then finds its index, records and values in the CPU's caches. The notes below hold the profiles of each medium; on tmpfs:",
  "",
  "- *httpd POST 1 KiB at 50 connections* (target p99 at most 1 ms; missed, 2.58 ms in this run's cell at 100,934 requests a second; 2.13 ms at 106,736 and 1.87 ms at 112,144 in the two committed runs before): per request 4.7 µs user and 5.8 µs system CPU in the profile pass's fresh server (node-http 14.3 and 23.6), about 29 requests per loop turn and its one group commit, one frame each way, 0.13 NIC system calls, 12.5 calls into the core (18.5 before the host computed buffer addresses and pushed its commands itself) and 0.14 into the addon, 2.0 KB allocated on the JavaScript heap (2.6 KB before a turn moved frames between the NIC's rings and the core's slot by slot). The request head is read byte by byte where it lies in the PM buffer, header names and short values come from a small cache of strings, and the 201 response's bytes are made once (1.1 µs per head in a micro-benchmark of the parser). The addon's send takes 4.7 µs per frame sent: the `writev` into the TAP device runs the kernel's receive of the reply for the client there (its TCP input and wake-up), the kernel's part any server pays for its replies. **The floor:** the server is the bottleneck (busy all the time), so with 50 requests in flight each waits for the others': in the profile pass p50 was 0.40 ms at 10.4 µs per request, p97 1.01 ms, p99 2.10 ms, p99.9 5.6 ms (in the previous committed run's, at 11.3 µs per request: 0.42, 1.37, 3.19 and 5.4 ms). The body of the distribution alone reaches 1 ms near p97: a request that arrives early in a turn waits for that turn and its own. The last 2 to 3% wait for pauses: in the profile pass's 3 seconds, 15 of 9,879 loop turns took 1 ms or more, while the loop's thread spent 59 ms in 257 GCs, none of them 1 ms or longer (the longest 0.54 ms: in the previous run's pass one took 3.4 ms), so most of those slow turns are not the loop's own collections. A scheduler trace of this cell (`perf sched` on the server's CPU, one ad-hoc run) found the server's four V8 helper threads (garbage collection and compilation), which share its pinned CPU, running 96 ms in 3 s, up to 4.7 ms at a time while the loop waited; a run with them turned off (`node --single-threaded`) kept the tail (p99 5.0 ms against 3.2 ms with them, one run each, minutes apart), so they are one cause, not the only one. A p99 under 1 ms needs p50 near 0.3 ms, about 6 µs of CPU per request, of which the kernel's TAP work (the system time, 5.8 µs) leaves almost nothing for the request path, and a run without pauses. The part above the kernel's is the request head (`#request` and what it inlines, 12% of the profiled busy time), the rest of the HTTP path in JavaScript (`#findHeadEnd`, `#write`, `#data`, `#service`, about 2% each) and the core (1.9 µs in this pass, 2.4 in the previous run's).",
  "- *kv SET 1 KiB at one client* (target: server CPU per request at most redis's; missed in this run's cell, 39.4 µs against 34.0): the target sits inside the spread of **the floor of a server hosted in Node**. `resp-floor`, which only answers, took 35.7 µs per request through the same cell in this run's profile pass (10.7 user, 25.0 system) against redis's 42.1 (5.5 and 36.6): 0.85x of redis's; in the committed runs before, 35.1 against 39.6 (0.89x), 34.4 against 32.3 (1.07x) and 41.5 against 42.1 (0.99x). A Node server that waits for each request and does no work costs about what redis does with its work. pmstack took 38.8 µs in this pass (14.1 user, 24.7 system), 3.1 µs above resp-floor and 3.3 below redis; 45.8 in the run before (10.7 above resp-floor), 38.8 and 38.2 in the two before that; its user time 13.1 to 19.6 µs against resp-floor's 8.4 to 11.1. The difference is pmstack's request (its TCP in the core, the parse, the log's append and commit, the reply), and a turn's steps with no single hot spot; redis's own cost moved between 30 and 49 µs over the runs of this cell. The system part is near the same for all three: the read of the request and the write of the reply, the reply's `writev` into the TAP device running the client's TCP receive and wake-up (11.6 µs per frame sent in the profiled pass), the server's own sleep and wake-up in `epoll_wait`. pmstack's user part: one loop turn per request with its wake-up through Node's event loop, 25 calls into the core (1.6 µs in the Wasm core), 4 into the addon, 2.3 KB allocated (3.4 KB before frames moved slot by slot).",
  "- *kv GET 1 KiB at 50 clients, pipeline 16* (target 1.0x redis; missed, 0.87x in this run's cell at 1.23 µs of server CPU per GET against redis's 1.04; 0.85x, 0.93x and 0.60x in the committed runs before). The cell's values were written by the pipelined SET cell before it, whose receive buffers split many of the 1 KiB values in two (a value lies across the end of a 2 KiB buffer wherever the stream puts it there), so many replies are two PM ranges, each with its own reference, send command, TX piece and `iovec`. The profile pass fills its keys with SETs without pipelining (each value one range: 1.16 buffer addresses looked up per GET): 773,443 GET/s at 1.29 µs per GET (0.62 user, 0.68 system) against redis's 859,385 at 1.05 (0.90x) and resp-floor's 770,831 at 1.25. Over 100 keys (the fourth cell) pmstack answered 832,699 GET/s at 1.17 µs, redis 894,259 at 1.06 (0.93x), resp-floor 768,453 at 1.30. **The floor:** a Node server that does nothing but answer reached 0.85x to 1.08x of redis in these GET cells over the committed runs (0.90x and 0.86x in this run, 0.88x and 0.85x in the run before, 0.98x and 0.86x before it, 1.08x in the one before that), so 1.0x is at or above what a server hosted in Node, the host the design card names, reaches with no work at all. pmstack reached 1.00x and 1.08x of resp-floor's rate in this run (10,000 and 100 keys), 0.70x and 0.85x in the run before, 0.88x and 1.08x before it: with the keys in the caches its TCP in the Wasm core (the kernel's work for the others), the index probe and the reply by name cost 0.90x to 1.19x of what resp-floor's Node streams cost per GET (1.17 against 1.30 µs in this run, 1.29 against 1.08 in the run before), and reaching the keys added 0.25 µs of user time per GET from 100 keys to 10,000 in the run before (redis 0.20; in this run the two passes differ by less than their noise): the first touch of the index slot, the record, its trailer and the value's framing in a 512 MiB pool of 4 KiB pages (this machine's tmpfs has no huge pages). Where the time goes (this run's profile over 10,000 keys): the addon's send 31% (7.5 µs per 16-reply superframe: the kernel's TAP write and the client's receive), `framing` 9% (the first read of each value's buffer, a few bytes at each end), the index probe in the core 7%, the record and trailer read (`ranges`) 6%, the in-place GET loop, the reply and the send 11%. What the GET path is: its reply is the SET's own bytes where they still lie in the receive buffers (the value's ranges widened over the request's `$1024\\r\\n` and CRLF, sent by name: docs/apps.md, \"The reply is the request's own bytes\"); a reply with nothing ahead of it goes to the send queue at once, its ranges made in the queue's own shape; the GETs of a pipeline are read in place, ahead of the RESP parser, with no argument or command objects (docs/apps.md, \"GETs read in place\").",
].join("\n");

/** The disk section's introduction (bench/results/durable-disk.json: the same run, on the disk). */
export const DURABLE_DISK_INTRO = [
  "The same benchmark in the same run, on the disk (a directory under /var/tmp: ext4 on a virtio block device here) for every system: pmstack's pools use the write-ahead journal (docs/persistence.md: each group commit is one journal entry and one `fdatasync`, written by the journal's thread while the loop goes on; checkpoints write the pool's pages back in the background), the Node servers and redis `fdatasync` their logs. `device` is the medium's floor measured in the same run: one small durable write (`fdatasync_us`) and sequential bandwidth.",
  "",
  "![Latency CDF at 50 connections on the disk](durable-disk-cdf.svg)",
  "",
  "**Where the targets are missed, and what stops them.** *kv SET at 50 clients* (1.5x redis): both servers take the 50 clients through the same cycle: read what has arrived, make it durable with one `fdatasync`, answer. In the committed run they reached 34,500 (redis) to 51,700 SET/s (pmstack 1.27x, 1.50x over AF_XDP) with a p50 of 0.78 to 1.10 ms; redis's server spent 18.9 µs of CPU per SET, pmstack's 17.5 to 21.0 (the journal's threads included: the hand-off of each group to the committer thread and the wake-up when it is durable cost it what redis's inline `fdatasync` does not). The client was 58 to 77% busy here (the targets line above), so the server's path per SET is the limit: 1.5x over TAP needs a cheaper one. *kv SET at 1 client* (1.0x) is at the device's floor for both: one `fdatasync` per request each (120 µs on the device in this run), 3,100 to 3,200 SET/s: 1.02x in this run, 0.98x over AF_XDP. *Uploads of 1 MiB and 16 MiB* (2x node-http; 0.90x and 1.39x in this run, 1.04x both in the previous one, and see the smoke run above: node-http was faster there on both sizes): the journal writes a body twice, once in its entry and once when a checkpoint writes the pool's pages back, where node-http writes it once. In a separate run of the 1 MiB upload cell (4 connections) the journal took 1.58 GB of payload and its checkpoints wrote 2.0 GB of pool pages in about 126,000 `pwrite` calls. Writing a body in place once instead (a batch's payload straight into the pool file, then the entry with its names only; the journal does this for batches over 4 MiB) needs the pages of a body to lie together, and they do not: bodies arriving at the same time share the NIC's fill ring, so their buffers interleave one TSO superframe (up to 64 KiB) at a time, and as objects are overwritten the free buffers fragment further. With every turn's payload sent in place (`inlineMax` lowered to 128 KiB) the same cells ran at 126 to 170 MB/s (1 MiB) and 195 to 250 MB/s (16 MiB, 2 connections: the same as with the default), at 7 to 13 KB per `pwrite`, no faster than the journal's copy; a single upload into a fresh pool does get runs of 0.6 to 2.3 MiB. Writing bodies once at the device's speed needs a layout that keeps each body's buffers together (a copy into a per-object region, or a receive path that steers each connection's segments into buffers of its own).",
].join("\n");

const HTTP = ["pmstack-httpd-tap", "pmstack-httpd-xdp"];
const HTTP_PEERS = ["node-http", "node-net"];
const KV = ["pmstack-kv-tap", "pmstack-kv-xdp", "pmstack-kv-tap-2workers", "pmstack-kv-xdp-2workers"];
const KV_PEERS = ["redis-aof-always"];
/** kv with two workers (pmstack kv --workers 2) against itself with one, on the same NIC. */
const WORKERS = ["pmstack-kv-tap-2workers"];
const WORKERS_PEERS = ["pmstack-kv-tap"];
const WORKERS_XDP = ["pmstack-kv-xdp-2workers"];
const WORKERS_XDP_PEERS = ["pmstack-kv-xdp"];
/** httpd with two workers against itself with one. */
const WORKERS_HTTP = ["pmstack-httpd-tap-2workers"];
const WORKERS_HTTP_PEERS = ["pmstack-httpd-tap"];
/** The TLS cells: pmstack's apps on their TLS ports against node:https and redis-server --tls-port. */
const TLS_HTTP = ["pmstack-httpd-tls"];
const TLS_HTTP_PEERS = ["node-https"];
const TLS_KV = ["pmstack-kv-tls"];
const TLS_KV_PEERS = ["redis-tls"];

const lowerIsBetter = (metric) => /(^|_)(p50|p99|cpu|syscalls)_/.test(metric) || /syscalls/.test(metric);

/** pmstack systems against their peers on every metric both have (>1: pmstack better). */
export function durableRatios(rows) {
  const out = [];
  const pairs = [
    ...HTTP.flatMap((s) => HTTP_PEERS.map((p) => [s, p])),
    ...KV.flatMap((s) => KV_PEERS.map((p) => [s, p])),
    ...TLS_HTTP.flatMap((s) => TLS_HTTP_PEERS.map((p) => [s, p])),
    ...TLS_KV.flatMap((s) => TLS_KV_PEERS.map((p) => [s, p])),
    ...WORKERS.flatMap((s) => WORKERS_PEERS.map((p) => [s, p])),
    ...WORKERS_XDP.flatMap((s) => WORKERS_XDP_PEERS.map((p) => [s, p])),
    ...WORKERS_HTTP.flatMap((s) => WORKERS_HTTP_PEERS.map((p) => [s, p])),
  ];
  for (const [system, peer] of pairs) {
    for (const r of rows.filter((x) => x.system === system)) {
      const p = rows.find((x) => x.system === peer && x.metric === r.metric);
      if (!p || !p.value || !r.value) continue;
      const lower = lowerIsBetter(r.metric);
      out.push({
        metric: r.metric,
        system,
        peer,
        ratio: lower ? p.value / r.value : r.value / p.value,
        better: lower ? "lower" : "higher",
      });
    }
  }
  return out;
}

const fmt = (v) =>
  v === undefined
    ? ""
    : Math.abs(v) >= 100
      ? Math.round(v).toLocaleString("en-US")
      : Number(v.toPrecision(3)).toString();

function pivot(o, systems, peers) {
  const present = [...systems, ...peers].filter((s) => o.rows.some((r) => r.system === s));
  const mine = systems.filter((s) => present.includes(s));
  const theirs = peers.filter((s) => present.includes(s));
  if (!mine.length && !theirs.length) return [];
  const metrics = [...new Set(o.rows.filter((r) => present.includes(r.system)).map((r) => r.metric))];
  const val = (s, m) => o.rows.find((r) => r.system === s && r.metric === m)?.value;
  const ratioCols = mine.flatMap((s) => theirs.map((p) => [s, p]));
  const short = (s) =>
    s
      .replace(/^pmstack-(httpd|kv)-tls$/, "pmstack")
      .replace(/^pmstack-(httpd|kv)-/, "")
      .replace("redis-aof-always", "redis");
  const head = ["metric", ...present.map((s) => s), ...ratioCols.map(([s, p]) => `${short(s)} vs ${short(p)}`)];
  const lines = [
    `| ${head.join(" | ")} |`,
    `|---|${head
      .slice(1)
      .map(() => "---:")
      .join("|")}|`,
  ];
  for (const m of metrics) {
    const unit = o.rows.find((r) => r.metric === m)?.unit ?? "";
    const cells = present.map((s) => fmt(val(s, m)));
    const rats = ratioCols.map(([s, p]) => {
      const q = o.ratios.find((x) => x.metric === m && x.system === s && x.peer === p);
      return q ? `${q.ratio.toFixed(2)}x` : "";
    });
    lines.push(`| ${m} (${unit}) | ${[...cells, ...rats].join(" | ")} |`);
  }
  return lines;
}

/**
 * Target checks: one line each, with what was measured. On tmpfs (durable.json) the network
 * path's targets (with the fixed cost per exchange: kv-tap GET at 50 clients with pipeline 16 at
 * least redis's rate, kv-tap SET at 1 client at most redis's server CPU per request, httpd-tap's
 * p99 for 1 KiB POSTs at 50 connections at most 1 ms); on a disk (durable-disk.json) the durable path's: kv SET at least 1.5x redis
 * at 50 clients and 1.0x at 1, httpd POST 1 KiB at least 3x node-http at 50 connections and
 * 1.2x at 1; on both, objects: at least 2x node-http's MB/s for 1 MiB and 16 MiB uploads, and at
 * least redis's for 1 MiB SETs. The device's floor is shown beside them.
 */
export function durableTargets(o) {
  const r = (m, s, p) => o.ratios.find((x) => x.metric === m && x.system === s && x.peer === p)?.ratio;
  const val = (sys, m) => o.rows.find((x) => x.system === sys && x.metric === m)?.value;
  const ok = (x, t) => (x === undefined ? "not measured" : `${x.toFixed(2)}x ${x >= t ? "(met)" : "(missed)"}`);
  const disk = o.bench === "durable-disk";
  const out = [];
  // a run of the workers' systems (bench/results/durable-workers.json) has no targets of its own
  if (o.bench === "durable-workers") return out;
  const fl = val("device", "fdatasync_us");
  if (fl !== undefined)
    out.push(
      `the medium's floor, same run: a 512-byte write + fdatasync takes ${Math.round(fl)} µs (at most ${Math.round(1e6 / fl).toLocaleString("en-US")} durable commits/s for one writer that waits for each), sequential writes ${Math.round(val("device", "seq_write_mb_s") ?? 0)} MB/s`,
    );
  for (const s of HTTP) {
    const a = r("req_s_c50_1k", s, "node-http");
    const b = r("req_s_c50_1k", s, "node-net");
    const one = r("req_s_c1_1k", s, "node-http");
    if (a === undefined && b === undefined) continue;
    if (disk)
      out.push(
        `${s}, 1 KiB POST: at 50 connections ${ok(a, 3)} node-http req/s (target 3x), at 1 connection ${ok(one, 1.2)} (target 1.2x); node-net ${b === undefined ? "not measured" : `${b.toFixed(2)}x`} at 50`,
      );
    else {
      const ph = r("p99_us_c50_1k", s, "node-http");
      const pn = r("p99_us_c50_1k", s, "node-net");
      out.push(
        `${s}, 1 KiB POST at 50 connections: ${ok(a, 2)} node-http req/s (target 2x), ${ok(b, 1.8)} node-net (target 1.8x); ` +
          `p99 ${ph === undefined ? "?" : ph >= 1 ? "lower" : "higher"} than node-http, ${pn === undefined ? "?" : pn >= 1 ? "lower" : "higher"} than node-net`,
      );
    }
    const p1 = r("put_mb_s_1m", s, "node-http");
    const p16 = r("put_mb_s_16m", s, "node-http");
    if (p1 !== undefined || p16 !== undefined)
      out.push(`${s}, durable uploads: 1 MiB ${ok(p1, 2)} node-http MB/s, 16 MiB ${ok(p16, 2)} (target 2x)`);
  }
  for (const s of KV) {
    const a = r("set_req_s_c50_p1", s, "redis-aof-always");
    const b = r("set_req_s_c50_p16", s, "redis-aof-always");
    const one = r("set_req_s_c1_p1", s, "redis-aof-always");
    if (a === undefined) continue;
    // how busy the one-core client was (req/s x its CPU per request): near 100% the client, not
    // the server, sets the rate
    const busy = (sys) => {
      const q = val(sys, "set_req_s_c50_p1");
      const c = val(sys, "set_client_cpu_us_per_req_c50_p1");
      return q === undefined || c === undefined ? undefined : Math.round((q * c) / 1e4);
    };
    // the most the client allows: one CPU's worth of its cost per SET against this server
    const ceiling = (sys) => {
      const c = val(sys, "set_client_cpu_us_per_req_c50_p1");
      const q = val("redis-aof-always", "set_req_s_c50_p1");
      return c === undefined || q === undefined
        ? ""
        : `, so this client can send at most ${Math.round(1e6 / c).toLocaleString("en-US")} SET/s to it (${(1e6 / c / q).toFixed(2)}x redis's rate)`;
    };
    const bm = busy(s);
    const br = busy("redis-aof-always");
    out.push(
      `${s}, SET 1 KiB at 50 clients: ${ok(a, 1.5)} redis-aof-always req/s without pipelining (target 1.5x)` +
        (disk ? `, at 1 client ${ok(one, 1)} (target 1.0x)` : "") +
        `, ${b === undefined ? "not measured" : `${b.toFixed(2)}x`} with pipeline 16` +
        (bm === undefined || br === undefined
          ? ""
          : `; without pipelining the one-core client's CPU was ${bm}% busy against pmstack (${br}% against redis)`) +
        ceiling(s),
    );
    const m1 = r("set_mb_s_1m", s, "redis-aof-always");
    if (m1 !== undefined) out.push(`${s}, SET of 1 MiB values at 4 clients: ${ok(m1, 1)} redis MB/s (target 1.0x)`);
    if (!disk && s === "pmstack-kv-tap") {
      // the fixed cost per exchange: pipelined GETs, and the server's CPU for one client's SETs
      const g = r("get_req_s_c50_p16", s, "redis-aof-always");
      const c1 = r("set_cpu_us_per_req_c1_p1", s, "redis-aof-always");
      const us = (m) => val(s, m)?.toFixed(1) ?? "?";
      const ru = (m) => val("redis-aof-always", m)?.toFixed(1) ?? "?";
      out.push(
        `${s}, GET 1 KiB at 50 clients with pipeline 16: ${ok(g, 1)} redis-aof-always req/s (target 1.0x); ` +
          `SET at 1 client, server CPU per request ${us("set_cpu_us_per_req_c1_p1")} µs against redis's ${ru("set_cpu_us_per_req_c1_p1")}: ${ok(c1, 1)} (target: no more than redis, 1.0x)`,
      );
    }
  }
  if (!disk) {
    const p99 = val("pmstack-httpd-tap", "p99_us_c50_1k");
    if (p99 !== undefined)
      out.push(
        `pmstack-httpd-tap, 1 KiB POST at 50 connections: p99 ${Math.round(p99)} µs ${p99 <= 1000 ? "(met)" : "(missed)"} (target at most 1 ms) at ${Math.round(val("pmstack-httpd-tap", "req_s_c50_1k") ?? 0).toLocaleString("en-US")} req/s`,
      );
  }
  const th = r("req_s_c50_1k", "pmstack-httpd-tls", "node-https");
  if (th !== undefined)
    out.push(`pmstack-httpd-tls, 1 KiB HTTPS POST at 50 connections: ${ok(th, 1)} node-https req/s (target: ahead)`);
  const tk = r("set_req_s_c50_p1", "pmstack-kv-tls", "redis-tls");
  if (tk !== undefined)
    out.push(`pmstack-kv-tls, SET 1 KiB over TLS at 50 clients: ${ok(tk, 1)} redis-tls req/s (target: ahead)`);
  return out;
}

/** The durable section: HTTP and RESP side by side, ratios as columns, targets, notes. */
export function formatDurable(o) {
  const lines = [];
  const t = durableTargets(o);
  if (t.length) lines.push("Targets:", "", ...t.map((x) => `- ${x}`), "");
  const on = o.bench === "durable-disk" ? "on the disk" : "on tmpfs";
  const h = pivot(o, HTTP, HTTP_PEERS);
  if (h.length) lines.push(`HTTP POST and objects ${on}, durable before the reply (wrk):`, "", ...h, "");
  const k = pivot(o, KV, KV_PEERS);
  if (k.length)
    lines.push(`RESP SET/GET of 1 KiB and 1 MiB ${on}, durable before the reply (redis-benchmark):`, "", ...k, "");
  const w = pivot(o, WORKERS, WORKERS_PEERS);
  if (w.length) lines.push(`kv with two workers against one, ${on} (ratio: two workers / one):`, "", ...w, "");
  const wh = pivot(o, WORKERS_HTTP, WORKERS_HTTP_PEERS);
  if (wh.length) lines.push(`httpd with two workers against one, ${on} (ratio: two workers / one):`, "", ...wh, "");
  const wx = pivot(o, WORKERS_XDP, WORKERS_XDP_PEERS);
  if (wx.length)
    lines.push(`kv with two workers against one over AF_XDP, ${on} (ratio: two workers / one):`, "", ...wx, "");
  const th = pivot(o, TLS_HTTP, TLS_HTTP_PEERS);
  if (th.length) lines.push(`HTTPS POST of 1 KiB at 50 connections ${on}, TLS 1.3 (wrk):`, "", ...th, "");
  const tk = pivot(o, TLS_KV, TLS_KV_PEERS);
  if (tk.length)
    lines.push(`RESP SET of 1 KiB at 50 clients over TLS 1.3 ${on} (redis-benchmark --tls):`, "", ...tk, "");
  lines.push(
    "Ratios: advantage of the pmstack system (>1: pmstack better; for latency, CPU and syscalls, peer / pmstack).",
  );
  for (const n of o.notes) lines.push("", `note: ${n}`);
  return lines.join("\n");
}

// ---------- CDF plot ----------

const COLORS = {
  "pmstack-httpd-tap": "#1f77b4",
  "pmstack-httpd-xdp": "#17becf",
  "pmstack-httpd-tap-2workers": "#9467bd",
  "node-http": "#d62728",
  "node-net": "#ff7f0e",
  "pmstack-kv-tap": "#1f77b4",
  "pmstack-kv-xdp": "#17becf",
  "pmstack-kv-tap-2workers": "#9467bd",
  "pmstack-kv-xdp-2workers": "#8c564b",
  "redis-aof-always": "#d62728",
};

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;");

function panel(x0, y0, w, h, title, series) {
  // series: [{ name, color, dash, pts: [[pct, us], ...] }]
  const all = series.flatMap((s) => s.pts.map((p) => p[1])).filter((v) => v > 0);
  if (!all.length) return "";
  let lo = Math.pow(10, Math.floor(Math.log10(Math.min(...all))));
  let hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all))));
  if (hi <= lo) hi = lo * 10;
  const X = (us) => x0 + ((Math.log10(Math.max(us, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * w;
  const Y = (p) => y0 + h - (p / 100) * h;
  const out = [];
  out.push(
    `<text x="${x0 + w / 2}" y="${y0 - 12}" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`,
  );
  out.push(`<rect x="${x0}" y="${y0}" width="${w}" height="${h}" fill="none" stroke="#444"/>`);
  for (let d = lo; d <= hi * 1.0001; d *= 10) {
    for (const k of [1, 2, 5]) {
      const v = d * k;
      if (v > hi * 1.0001) break;
      const x = X(v).toFixed(1);
      out.push(`<line x1="${x}" y1="${y0}" x2="${x}" y2="${y0 + h}" stroke="#ddd"/>`);
      const label = v >= 1e6 ? `${v / 1e6} s` : v >= 1000 ? `${v / 1000} ms` : `${v} µs`;
      out.push(`<text x="${x}" y="${y0 + h + 16}" text-anchor="middle" font-size="11">${label}</text>`);
    }
  }
  for (const p of [0, 25, 50, 75, 90, 100]) {
    const y = Y(p).toFixed(1);
    out.push(`<line x1="${x0}" y1="${y}" x2="${x0 + w}" y2="${y}" stroke="#eee"/>`);
    out.push(`<text x="${x0 - 6}" y="${+y + 4}" text-anchor="end" font-size="11">${p}%</text>`);
  }
  out.push(`<text x="${x0 + w / 2}" y="${y0 + h + 34}" text-anchor="middle" font-size="12">latency (log scale)</text>`);
  series.forEach((s, i) => {
    const pts = s.pts
      .filter((p) => p[1] > 0)
      .sort((a, b) => a[0] - b[0])
      .map((p) => `${X(p[1]).toFixed(1)},${Y(p[0]).toFixed(1)}`);
    out.push(
      `<polyline fill="none" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="5,3"' : ""} points="${pts.join(" ")}"/>`,
    );
    const ly = y0 + 14 + i * 16;
    out.push(
      `<line x1="${x0 + 8}" y1="${ly - 4}" x2="${x0 + 28}" y2="${ly - 4}" stroke="${s.color}" stroke-width="2"${s.dash ? ' stroke-dasharray="5,3"' : ""}/>`,
      `<text x="${x0 + 32}" y="${ly}" font-size="11">${esc(s.name)}</text>`,
    );
  });
  return out.join("\n");
}

/** Latency CDFs at 50 connections: HTTP POST (1 KiB solid, 64 B dashed) and RESP SET/GET. */
export function cdfSvg(cdf, medium = "tmpfs") {
  const http = Object.entries(cdf.http).map(([k, pts]) => {
    const [name, tag] = k.split(" ");
    return {
      name: `${name} ${tag === "1k" ? "1 KiB" : "64 B"}`,
      color: COLORS[name] ?? "#555",
      dash: tag !== "1k",
      pts,
    };
  });
  const resp = Object.entries(cdf.resp).map(([k, pts]) => {
    const [name, cmd] = k.split(" ");
    return { name: `${name} ${cmd.toUpperCase()}`, color: COLORS[name] ?? "#555", dash: cmd === "get", pts };
  });
  if (!http.length && !resp.length) return null;
  const W = 520;
  const panels = [];
  if (http.length) panels.push([`HTTP POST, 50 connections (wrk), ${medium}`, http]);
  if (resp.length) panels.push([`RESP 1 KiB, 50 clients, no pipelining, ${medium}`, resp]);
  const width = 70 + panels.length * (W + 80);
  const body = panels.map(([t, s], i) => panel(70 + i * (W + 80), 40, W, 320, t, s)).join("\n");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="420" viewBox="0 0 ${width} 420" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    body,
    `<text x="10" y="410" font-size="10" fill="#666">bench/durable: cumulative share of requests answered within the latency; durable before the reply</text>`,
    "</svg>",
    "",
  ].join("\n");
}

// ---------- profile ----------

/**
 * The busy time of a V8 .cpuprofile by function (self time, µs): {busy, total, wasm (all the
 * core's functions), self: Map key -> µs}. Native code called from JavaScript (the addons, and
 * the system calls they make: a frame with neither name nor script) is keyed "native under F",
 * F the JavaScript function that called it; the core's functions "wasm NAME".
 */
export function profileTimes(prof) {
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const self = new Map();
  let busy = 0;
  let total = 0;
  const dt = prof.timeDeltas ?? [];
  for (let i = 0; i < prof.samples.length; i++) {
    const n = byId.get(prof.samples[i]);
    const us = dt[i + 1] ?? 0;
    total += us;
    const cf = n.callFrame;
    if (cf.functionName === "(idle)") continue;
    busy += us;
    const file = (cf.url || "").split("/").pop();
    const native = !cf.functionName && !cf.url && parent.get(n.id)?.callFrame.url;
    const key = native
      ? `native under ${parent.get(n.id).callFrame.functionName || "(anonymous)"}`
      : cf.url?.startsWith("wasm")
        ? `wasm ${cf.functionName.replace(/^assembly\//, "")}`
        : `${cf.functionName || "(anonymous)"} ${file}`;
    self.set(key, (self.get(key) ?? 0) + us);
  }
  let wasm = 0;
  for (const [k, v] of self) if (k.startsWith("wasm ")) wasm += v;
  return { busy, total, wasm, self };
}

/** Top self-time entries of a V8 .cpuprofile, as a sentence: percent of busy samples. */
export function summarizeProfile(prof, requests, unit = "request") {
  const { busy, total, wasm, self } = profileTimes(prof);
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12);
  const pc = (v) => `${((100 * v) / busy).toFixed(1)}%`;
  return (
    `busy ${((100 * busy) / total).toFixed(0)}% of the profile, ${(busy / requests).toFixed(busy / requests < 10 ? 2 : 1)} µs busy per ${unit}; ` +
    `Wasm core ${pc(wasm)}; top self time: ` +
    top.map(([k, v]) => `${k.trim()} ${pc(v)}`).join(", ")
  );
}

// bench/durable's pmstack server, one per child process so that its CPU time and syscalls can
// be measured per request like the baselines' (the parent reads /proc/PID/stat and runs strace
// on this PID). Usage: node bench/_durable-server.mjs '<json>' with
//   { app: "httpd" | "kv", nic: "tap" | "xdp", path, buffers, metaBytes, mac, ip,
//     tap: { name, netns } | xdp: { ifname, netns, peer?, peerNetns? }, workers?, tls?: { cert, key, port } (PEM files: TLS on
//     port, the plain port off) }
// Prints "READY <ifname> <pid>" once it serves. Reads commands on stdin, one a line:
//   stats  prints "STATS <json>" (NicLoop stats, the app's stats, process.cpuUsage(), the calls
//          into the core and the addon counted so far: all zero unless PMSTACK_COUNT_CALLS=1)
//   quit   closes the server and exits (also on stdin end or SIGTERM)
//   prof-start [cpu]  starts a GC record (v8.GCProfiler) and with `cpu` a V8 CPU profile
//                     (node:inspector, sampling every 100 µs)
//   prof-stop [FILE]  stops them, writes the CPU profile to FILE, prints "PROFILED <json>": the bytes
//                     the JavaScript heap took meanwhile (what every GC found allocated since the
//                     last, plus what is new since) and the number of GCs
import { createInterface } from "node:readline";
import { writeFileSync } from "node:fs";
import { cpuProfile, heapRecord } from "./_lib.mjs";

// PMSTACK_DURABLE_BUILD: another build's index.js (to measure a change before it lands)
const pm = await import(process.env.PMSTACK_DURABLE_BUILD ?? "../build/index.js");

const cfg = JSON.parse(process.argv[2]);
const opts = {
  path: cfg.path,
  buffers: cfg.buffers,
  metaBytes: cfg.metaBytes,
  mac: cfg.mac,
  ip: cfg.ip,
  busyPoll: !!cfg.busyPoll,
  nic:
    cfg.nic === "xdp"
      ? { kind: "xdp", ifname: cfg.xdp.ifname, netns: cfg.xdp.netns ?? null }
      : { kind: "tap", name: cfg.tap.name, netns: cfg.tap.netns ?? null },
};
let srv;
let terminator = null;
if (cfg.workers > 1) {
  if (typeof pm.serveWorkers !== "function") {
    console.log("UNAVAILABLE no serveWorkers in this build");
    process.exit(3);
  }
  const { nic: _nic, ...rest } = opts;
  const ws = await pm.serveWorkers({
    ...rest,
    workers: cfg.workers,
    app: cfg.app === "httpd" ? { app: "httpd", port: 80 } : { app: "kv", port: 6379 },
    ...(cfg.nic === "xdp"
      ? {
          xdp: {
            ifname: cfg.xdp.ifname,
            netns: cfg.xdp.netns ?? null,
            peer: cfg.xdp.peer ?? null,
            peerNetns: cfg.xdp.peerNetns ?? null,
            copyUmem: "fallback",
          },
        }
      : { tap: { name: cfg.tap.name, netns: cfg.tap.netns ?? null } }),
  });
  ws.onFailure = (i, e) => {
    console.error(`worker ${i} failed: ${e.message}`);
    process.exit(1);
  };
  // the shape the bench reads of one server, from the workers' totals
  srv = {
    ifname: ws.ifname,
    close: () => ws.close(),
    async stats() {
      const st = await ws.stats();
      return {
        loop: st.loop,
        app: st.app,
        log: st.log,
        tcp: st.stack,
        nicStats: st.nic,
        cpu: process.cpuUsage(),
        describe: `${ws.count} workers: ${ws.workers.map((w) => w.pool).join("; ")}`,
        nic: { ifname: ws.ifname, workers: ws.count },
      };
    },
  };
} else if (cfg.tls) {
  if (typeof pm.TlsTerminator !== "function") {
    console.log("UNAVAILABLE no TlsTerminator in this build");
    process.exit(3);
  }
  terminator = new pm.TlsTerminator(pm.loadTlsFiles({ cert: cfg.tls.cert, key: cfg.tls.key }));
  const tls = { port: cfg.tls.port, terminator };
  srv = pm.serve(opts, (stack, log) =>
    cfg.app === "kv" ? new pm.KvApp(stack, log, 0, { tls }) : new pm.HttpdApp(stack, log, 0, { tls }),
  );
} else if (cfg.app === "kv") {
  if (typeof pm.serveKv === "function") srv = pm.serveKv(opts);
  else if (typeof pm.KvApp === "function") srv = pm.serve(opts, (stack, log) => new pm.KvApp(stack, log, 6379));
  else {
    console.log("UNAVAILABLE neither serveKv nor KvApp is in this build");
    process.exit(3);
  }
} else {
  srv = pm.serveHttpd(opts);
}

let closed = false;
function quit(code = 0) {
  if (closed) return;
  closed = true;
  Promise.resolve()
    .then(() => srv.close())
    .finally(() => process.exit(code));
}
process.on("SIGTERM", () => quit(0));
process.on("SIGINT", () => quit(0));

const rl = createInterface({ input: process.stdin });
rl.on("line", (l) => {
  const cmd = l.trim();
  if (cmd === "stats" && srv.stats) {
    void srv.stats().then((st) => console.log(`STATS ${JSON.stringify(st)}`));
  } else if (cmd === "stats") {
    const st = {
      loop: { ...srv.loop.stats },
      app: srv.app.stats ? { ...srv.app.stats } : null,
      log: srv.log.stats(),
      tcp: srv.stack.stats(),
      nicStats: srv.nic.stats(),
      cpu: process.cpuUsage(),
      calls: pm.boundaryCalls?.() ?? null,
      describe: srv.stack.pool.describe(),
      nic: srv.nic.info,
      ...(terminator ? { tls: { ...terminator.stats } } : {}),
    };
    console.log(`STATS ${JSON.stringify(st)}`);
  } else if (cmd === "prof-start" || cmd === "prof-start cpu") void profStart(cmd.endsWith("cpu"));
  else if (cmd.startsWith("prof-stop")) void profStop(cmd.slice("prof-stop".length).trim());
  else if (cmd === "quit") quit(0);
});

/** The profiling under way: {cpu (or null), heap}. */
let prof = null;
async function profStart(cpu) {
  prof = { cpu: cpu ? await cpuProfile() : null, heap: heapRecord() };
  console.log("PROF-STARTED");
}
async function profStop(file) {
  const { cpu, heap } = prof;
  prof = null;
  const rec = heap.stop();
  if (cpu) writeFileSync(file, JSON.stringify(await cpu.stop()));
  console.log(`PROFILED ${JSON.stringify(rec)}`);
}
rl.on("close", () => quit(0));
console.log(`READY ${srv.ifname} ${process.pid}`);

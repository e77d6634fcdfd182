// A replicated counter in the network simulator (docs/simulator.md), tested under a partition
// and a crash. Three hosts on one virtual switch with 1 ms links that lose 1% of frames:
//
//   primary  keeps the counter and the id of the last request it applied in its pool (PmLog,
//            file persistence); on "INC <id>" it applies the request once, persists, sends
//            "SET <n> <id>" to the replica and answers "OK <n>" once the replica acknowledged n.
//   replica  keeps the same pair in its own pool, answers "ACK <n>".
//   client   sends INC 1..20 one at a time; no answer within 1 s: it reconnects and sends the same
//            request again (the primary does not apply a request id twice).
//
// At 1 s the primary is cut off from the replica (requests stall, TCP retransmits), at 3 s the
// partition heals; at 5 s the primary crashes (kill -9: what it persisted survives) and at 7 s it
// restarts on the same pool file. Everything runs on virtual time: the run prints its event trace
// and is the same, byte for byte, every time it runs with the same seed.
// Run: node examples/sim-counter.mjs [seed]
import { once } from "node:events";
import { createSimNet, PmLog } from "pmstack";

const seed = Number(process.argv[2] ?? 8);
const sim = createSimNet({ seed, link: { delayMs: 1, jitterMs: 0.5, drop: 0.01 } });
const REQUESTS = 20;

/** Calls onLine for every "\n"-terminated line the socket receives. */
function lines(sock, onLine) {
  let buf = "";
  sock.setEncoding("latin1");
  sock.on("data", (d) => {
    buf += d;
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

/** The counter and the last request id in a host's pool: read at boot, written at each change. */
function durableCounter(host) {
  const log = PmLog.open(host.pool); // recovery: what the last commit before a crash left
  const saved = log.views("counter");
  const [n, last] = saved ? new TextDecoder().decode(saved[0]).split(" ").map(Number) : [0, 0];
  const state = { n, last };
  state.save = () => {
    const pool = host.pool;
    const bytes = new TextEncoder().encode(`${state.n} ${state.last}`);
    const i = pool.alloc();
    pool.view(i, 0, bytes.length).set(bytes);
    log.append("counter", [pool.name(i, 0, bytes.length)]);
    pool.free(i); // the log holds the buffer now
    log.commit(); // durable: a crash from here on keeps it
  };
  return state;
}

function primary(host) {
  const state = durableCounter(host);
  host.note(`counter ${state.n}, last request ${state.last}`);
  let replica = null; // the connection to the replica once it is up
  let acked = 0; // the highest n the replica acknowledged
  const waiting = []; // replies held until the replica has their n
  const release = () => {
    while (waiting.length && waiting[0].n <= acked) waiting.shift().send();
  };
  const connect = () => {
    const s = host.net.connect({ host: "198.18.0.1", port: 9001 });
    s.on("connect", () => {
      replica = s;
      s.write(`SET ${state.n} ${state.last}\n`);
    });
    lines(s, (line) => {
      acked = Math.max(acked, Number(line.split(" ")[1]));
      release();
    });
    s.on("error", () => {});
    s.on("close", () => {
      if (replica === s) replica = null;
      host.setTimeout(connect, 200);
    });
  };
  connect();
  host.net
    .createServer((s) => {
      s.on("error", () => {});
      lines(s, (line) => {
        const id = Number(line.split(" ")[1]);
        if (id !== state.last) {
          state.n++;
          state.last = id;
          state.save();
          replica?.write(`SET ${state.n} ${state.last}\n`);
        }
        const n = state.n;
        waiting.push({ n, send: () => s.writable && s.write(`OK ${n}\n`) });
        release();
      });
    })
    .listen(9000);
}

function replica(host) {
  const state = durableCounter(host);
  host.note(`counter ${state.n}`);
  host.net
    .createServer((s) => {
      s.on("error", () => {});
      lines(s, (line) => {
        const [, n, id] = line.split(" ").map(Number);
        if (n > state.n) {
          state.n = n;
          state.last = id;
          state.save();
        }
        s.write(`ACK ${state.n}\n`);
      });
    })
    .listen(9001);
}

let answers = [];
async function client(host) {
  let sock = null;
  /** Resolves with the socket's next line, or null after `ms` or if it closes. */
  const ask = (line, ms) =>
    new Promise((resolve) => {
      const done = (v) => {
        host.clearTimeout(t);
        sock.off("line", done);
        sock.off("close", fail);
        resolve(v);
      };
      const fail = () => done(null);
      const t = host.setTimeout(fail, ms);
      sock.on("line", done);
      sock.on("close", fail);
      sock.write(`${line}\n`);
    });
  for (let id = 1; id <= REQUESTS; id++) {
    for (;;) {
      if (!sock) {
        const s = host.net.connect({ host: "198.18.0.2", port: 9000 });
        s.on("error", () => {});
        lines(s, (line) => s.emit("line", line));
        const t = host.setTimeout(() => s.destroy(), 1000);
        const [ok] = await Promise.race([once(s, "connect").then(() => [true]), once(s, "close").then(() => [false])]);
        host.clearTimeout(t);
        if (!ok) {
          host.note("connect failed, again");
          continue;
        }
        sock = s;
      }
      const answer = await ask(`INC ${id}`, 1000);
      if (answer) {
        host.note(`INC ${id} -> ${answer}`);
        answers.push(Number(answer.split(" ")[1]));
        break;
      }
      host.note(`INC ${id}: no answer, reconnecting`);
      sock.destroy();
      sock = null;
    }
    await host.sleep(100);
  }
  sock.end();
}

const opts = { persistence: "file", stack: { configure: PmLog.configure } };
sim.host("replica", { ...opts, boot: replica }); // 198.18.0.1
const p = sim.host("primary", { ...opts, boot: primary }); // 198.18.0.2
sim.host("client", { boot: client }); // 198.18.0.3
sim.setTimeout(() => sim.partition(["primary"], ["replica"]), 1000);
sim.setTimeout(() => sim.repair(), 3000);
sim.setTimeout(() => sim.crash(p), 5000);
sim.setTimeout(() => sim.restart(p), 7000);
const finished = await sim.runUntil(() => answers.length === REQUESTS, 120_000);
await sim.run(1000); // the last FINs and ACKs

for (const line of sim.trace) console.log(line);
const inOrder = answers.every((n, k) => n === k + 1);
console.log(
  `${finished ? "done" : "NOT DONE"} at ${sim.now().toFixed(3)} ms virtual: ` +
    `${answers.length} increments acknowledged${inOrder ? ", each once, in order" : `: ${answers.join(",")}`}`,
);
const s = sim.stats();
console.log(
  `frames ${s.frames}, lost ${s.dropped}, cut by the partition ${s.partitioned}, to the crashed host ${s.hostDown}`,
);
sim.close();
process.exitCode = finished && inOrder ? 0 : 1;

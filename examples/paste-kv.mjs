// The batch API example from docs/api.md: a tiny durable key-value server (PasteServer) whose
// values stay in the PM buffers the network put them in. "PUT key value" keeps the value's
// buffer, persists it and logs its name (one fence and one group commit per turn); "GET key"
// replies straight from the kept buffer, with no copy. A client on a second in-process stack
// (MemoryPair) drives it. Run twice: the second run finds the first run's keys after recovery.
// Run: node examples/paste-kv.mjs [path]
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { MemoryPair, PasteServer, PmLog, Stack } from "pmstack";

const path = process.argv[2] ?? "data/paste-kv.pm";
mkdirSync(dirname(path), { recursive: true });

// the server's stack lives on a PM file with a log; the client's is volatile
const server = Stack.create({
  mac: "02:00:00:00:00:0b",
  ip: "198.18.0.2/24",
  pool: { path, buffers: 4096 },
  configure: PmLog.configure,
});
const log = PmLog.open(server.pool); // recovery: claims every buffer the log names
console.log(
  `recovered ${log.recovery.liveKeys} keys: ${[...log].map((e) => new TextDecoder().decode(e.key)).join(", ") || "none"}`,
);
const client = Stack.create({ mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24", pool: { buffers: 1024 } });
const pair = new MemoryPair(client, server);

const text = (view) => new TextDecoder().decode(view);
const kv = new PasteServer(
  pair.b,
  (batch) => {
    for (const chunk of batch.chunks) {
      // one request per chunk in this example (a real server parses a stream: host/apps/)
      const line = text(chunk.view);
      const [verb, key] = line.split(" ", 2);
      if (verb === "PUT") {
        const at = verb.length + key.length + 2; // the value: the rest of the chunk, in place
        const value = { index: chunk.name.index, offset: chunk.name.offset + at, length: chunk.name.length - at };
        batch.persist([value]); // flushed together with every other range this turn: one fence
        batch.append(key, [value]); // the log takes its own reference: the buffer is kept
        batch.reply(chunk.conn, `STORED ${key}\n`);
      } else if (verb === "GET") {
        const names = log.get(key);
        if (names)
          for (const n of names) batch.reply(chunk.conn, n); // straight from PM: no copy
        else batch.reply(chunk.conn, "NOT FOUND");
        batch.reply(chunk.conn, "\n");
      }
    }
    for (const conn of batch.ended) batch.close(conn);
  },
  { log }, // committed once per turn, after the handler: the replies leave after the commit
);
kv.listen(6379);

// the client: one request per turn, waits for each answer
const requests = [
  `PUT run-${log.size} value stored by run ${log.size + 1}`,
  "PUT greeting hello, PM",
  "GET greeting",
  "GET run-0",
  "GET nope",
];
let conn = -1;
let answer = "";
let done = false;
const answers = [];
const cli = new PasteServer(pair.a, (batch) => {
  for (const c of batch.connected) batch.reply((conn = c.conn), requests[0]);
  for (const c of batch.chunks) answer += text(c.view);
  if (answer.endsWith("\n")) {
    answers.push(answer.trim());
    answer = "";
    if (answers.length < requests.length) batch.reply(conn, requests[answers.length]);
    else if (!done) {
      batch.close(conn);
      done = true;
    }
  }
});
cli.connect("198.18.0.2", 6379);
pair.runUntil(() => done && server.connectionIds.size === 0);
requests.forEach((r, k) => console.log(`${r} -> ${answers[k]}`));
console.log(
  `server: ${kv.stats.persistFences} fences, ${kv.stats.logCommits} group commits, ${kv.stats.zeroCopyBytes} bytes replied from PM without a copy`,
);
console.log(`pool: ${JSON.stringify(server.pool.check())}`);
pair.shutdown();

// A many-connection RESP client for the sharded store's tests (run inside a test namespace).
//   write HOST PORT CONNS SECONDS PREFIX: CONNS connections, each with 8 SETs in flight, writing
//     PREFIX:<conn>:<i> = val:PREFIX:<conn>:<i>:<pad> until SECONDS pass or the server goes; prints
//     {"acked":[n per connection]} (a connection's replies come in order: its first n SETs are
//     acknowledged; after an error reply, it stops, and "errors" counts them). SIGTERM: the same
//     report at once.
//   check HOST PORT CONNS PREFIX COUNTS_JSON [del]: reads every acknowledged key back over CONNS
//     new connections (GET; with `del`, DEL after); prints {"checked","missing","wrong","deleted"}.
// Exit 0 once it printed; 1 on a connection it could not make.
import net from "node:net";

const [mode, host, portS] = process.argv.slice(2, 5);
const port = Number(portS);
// (values past 64 bytes: a sharded server's workers lend them to the owners of their keys;
// KV_LOAD_PAD sets the pad's length, for values of many buffers)
const pad = "x".repeat(Number(process.env.KV_LOAD_PAD ?? 160));
const value = (key) => `val:${key}:${pad}`;
const enc = (...args) =>
  Buffer.from(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(""));

/** One connection: send(cmd) queues, onReply(text) for each reply in order. */
function conn(onReply, onEnd) {
  const s = net.connect(port, host);
  let buf = "";
  s.setEncoding("latin1");
  s.on("data", (d) => {
    buf += d;
    for (;;) {
      const r = parse(buf);
      if (!r) break;
      buf = buf.slice(r.used);
      onReply(r.v);
    }
  });
  s.on("error", () => {});
  s.on("close", onEnd);
  return s;
}

/** One RESP2 reply (simple, error, integer, bulk) from the head of `b`, or null if incomplete. */
function parse(b) {
  const nl = b.indexOf("\r\n");
  if (nl < 0) return null;
  const t = b[0];
  const head = b.slice(1, nl);
  if (t === "+" || t === "-" || t === ":") return { v: t === ":" ? Number(head) : b.slice(0, nl), used: nl + 2 };
  if (t === "$") {
    const n = Number(head);
    if (n < 0) return { v: null, used: nl + 2 };
    if (b.length < nl + 2 + n + 2) return null;
    return { v: b.slice(nl + 2, nl + 2 + n), used: nl + 2 + n + 2 };
  }
  throw new Error(`unexpected reply ${JSON.stringify(b.slice(0, 40))}`);
}

if (mode === "write") {
  const [conns, seconds, prefix] = [Number(process.argv[5]), Number(process.argv[6]), process.argv[7]];
  const acked = new Array(conns).fill(0);
  let open = conns;
  let stop = false;
  const end = Date.now() + seconds * 1000;
  const report = () => {
    console.log(JSON.stringify({ acked, errors }));
    process.exit(0);
  };
  const done = () => {
    if (--open === 0) report();
  };
  // the server killed: its connections hang until TCP gives up; SIGTERM reports what was acknowledged
  process.on("SIGTERM", report);
  let errors = 0;
  for (let c = 0; c < conns; c++) {
    let sent = 0;
    let answered = 0;
    let failed = false;
    const s = conn((v) => {
      answered++;
      // after a failed SET, later ones on the connection do not count: acked stays a prefix
      if (v !== "+OK") {
        if (errors++ === 0) console.error(`conn ${c}: ${v}`);
        failed = stop = true;
      } else if (!failed) acked[c]++;
      if (Date.now() >= end) stop = true;
      if (stop) {
        if (answered === sent) s.end();
      } else send();
    }, done);
    const send = () => {
      const key = `${prefix}:${c}:${sent++}`;
      s.write(enc("SET", key, value(key)));
    };
    s.on("connect", () => {
      for (let i = 0; i < 8; i++) send();
    });
  }
} else if (mode === "check") {
  const [conns, prefix, counts, del] = [
    Number(process.argv[5]),
    process.argv[6],
    JSON.parse(process.argv[7]),
    process.argv[8] === "del",
  ];
  const keys = [];
  counts.forEach((n, c) => {
    for (let i = 0; i < n; i++) keys.push(`${prefix}:${c}:${i}`);
  });
  const res = { checked: 0, missing: 0, wrong: 0, deleted: 0 };
  let open = conns;
  let next = 0;
  for (let c = 0; c < conns; c++) {
    let want = null;
    const s = conn(
      (v) => {
        if (want.op === "GET") {
          res.checked++;
          if (v === null) res.missing++;
          else if (v !== value(want.key)) res.wrong++;
          if (del) {
            want = { op: "DEL", key: want.key };
            s.write(enc("DEL", want.key));
            return;
          }
        } else res.deleted += v;
        go();
      },
      () => {
        if (--open === 0) {
          console.log(JSON.stringify(res));
          process.exit(0);
        }
      },
    );
    const go = () => {
      if (next >= keys.length) return s.end();
      want = { op: "GET", key: keys[next++] };
      s.write(enc("GET", want.key));
    };
    s.on("connect", go);
  }
} else {
  console.error(`kv-load: unknown mode ${mode}`);
  process.exit(2);
}

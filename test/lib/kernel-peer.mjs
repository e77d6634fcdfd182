// A kernel-side TCP peer for interop tests, run inside the test's namespace with Node's `net`
// (the Linux kernel's TCP). Modes:
//   sink HOST PORT           listen; for each connection read to EOF, answer the sha256, close
//   source HOST PORT BYTES   listen; for each connection send BYTES seeded bytes, then close;
//                            print the sha256 of what was sent
//   send HOST PORT BYTES     connect; send BYTES seeded bytes; print the sha256 of the reply
//   rstsource HOST PORT BYTES [AFTER_MS]  listen; for each connection send BYTES seeded bytes,
//                            then abort it with a RST (SO_LINGER 0); print "RST". With AFTER_MS:
//                            abort AFTER_MS after the accept whatever was sent by then (mid-
//                            transfer when the receiver holds its window closed)
//   probe HOST PORT          connect; print "CONNECTED" or "ERROR <code>", then close
//   many HOST PORT N         open N connections at once; each sends "REQ <i>\n" and expects
//                            "RESP <i>\n" then EOF; print "DONE <json>" with ok/failed counts
//   hold HOST PORT N HOLD_MS SRC[,SRC...]  open N connections (from the source addresses in
//                            turn, in batches), each sending "REQ <i> <k>\n" when it opens and
//                            again every 10-30 s, expecting "RESP <i> <k>\n"; print "OPEN <json>"
//                            once all are open, keep them HOLD_MS more, close them, and print
//                            "DONE <json>" (opened, requests, answered, bad, errors by code)
// It prints "LISTENING" once listening, and "ERROR <code>" when a connection fails.
import net from "node:net";
import { createHash } from "node:crypto";
import { pathToFileURL } from "node:url";

const [mode, host, port, bytes, afterMs] = process.argv.slice(2);

export function seeded(n, seed = 1) {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.writeUInt32LE(x, i & ~3);
  }
  return out.subarray(0, n);
}

function chunks(total, f) {
  const block = seeded(1 << 20, 7);
  let left = total;
  const h = createHash("sha256");
  const next = () => {
    while (left > 0) {
      const b = block.subarray(0, Math.min(block.length, left));
      left -= b.length;
      h.update(b);
      if (!f(b)) return false;
    }
    return true;
  };
  return { next, digest: () => h.digest("hex") };
}

const main = process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href;
if (!main) {
  // imported for seeded()
} else if (mode === "sink") {
  net
    .createServer((s) => {
      const h = createHash("sha256");
      s.on("data", (d) => h.update(d));
      s.on("end", () => s.end(h.digest("hex")));
      s.on("error", (e) => console.log(`ERROR ${e.code}`));
    })
    .listen(+port, host, () => console.log("LISTENING"));
} else if (mode === "source") {
  net
    .createServer((s) => {
      const c = chunks(+bytes, (b) => s.write(b));
      const pump = () => {
        if (c.next()) {
          s.end();
          console.log("SENT " + c.digest());
        } else s.once("drain", pump);
      };
      pump();
      s.on("error", (e) => console.log(`ERROR ${e.code}`));
    })
    .listen(+port, host, () => console.log("LISTENING"));
} else if (mode === "send") {
  const s = net.connect(+port, host, () => {
    const c = chunks(+bytes, (b) => s.write(b));
    const pump = () => {
      if (c.next()) {
        console.log("SENT " + c.digest());
        s.end();
      } else s.once("drain", pump);
    };
    pump();
  });
  let reply = "";
  s.on("data", (d) => (reply += d));
  s.on("end", () => console.log("REPLY " + reply));
  s.on("error", (e) => {
    console.error("send:", e.message);
    process.exitCode = 1;
  });
} else if (mode === "rstsource") {
  net
    .createServer((s) => {
      s.on("error", (e) => console.log(`ERROR ${e.code}`));
      if (afterMs !== undefined)
        setTimeout(() => {
          s.resetAndDestroy();
          console.log("RST");
        }, +afterMs);
      const c = chunks(+bytes, (b) => !s.destroyed && s.write(b));
      const pump = () => {
        if (s.destroyed) return;
        if (afterMs !== undefined) {
          if (!c.next()) s.once("drain", pump);
        } else if (c.next())
          s.write(Buffer.alloc(0), () =>
            setTimeout(() => {
              s.resetAndDestroy();
              console.log("RST");
            }, 50),
          );
        else s.once("drain", pump);
      };
      pump();
    })
    .listen(+port, host, () => console.log("LISTENING"));
} else if (mode === "probe") {
  const s = net.connect(+port, host, () => {
    console.log("CONNECTED");
    s.end();
  });
  s.on("error", (e) => console.log(`ERROR ${e.code}`));
} else if (mode === "many") {
  const n = +bytes;
  const res = { ok: 0, failed: 0, errors: {} };
  let left = n;
  const finish = () => {
    if (--left === 0) console.log("DONE " + JSON.stringify(res));
  };
  for (let i = 0; i < n; i++) {
    let reply = "";
    let ended = false;
    const s = net.connect(+port, host, () => s.write(`REQ ${i}\n`));
    s.setEncoding("latin1");
    s.on("data", (d) => (reply += d));
    s.on("end", () => {
      ended = true;
      if (reply === `RESP ${i}\n`) res.ok++;
      else {
        res.failed++;
        res.errors.badReply = (res.errors.badReply ?? 0) + 1;
      }
      s.end();
      finish();
    });
    s.on("error", (e) => {
      if (ended) return;
      ended = true;
      res.failed++;
      res.errors[e.code] = (res.errors[e.code] ?? 0) + 1;
      finish();
    });
  }
} else if (mode === "hold") {
  const n = +bytes;
  const holdMs = +afterMs;
  const srcs = process.argv[7].split(",");
  const res = { opened: 0, requests: 0, answered: 0, bad: 0, errors: {} };
  const socks = [];
  const t0 = Date.now();
  const open = (i) => {
    const s = net.connect({ port: +port, host, localAddress: srcs[i % srcs.length] });
    let k = 0;
    let buf = "";
    let timer = null;
    const ask = () => {
      s.write(`REQ ${i} ${k}\n`);
      res.requests++;
      timer = setTimeout(ask, 10_000 + Math.random() * 20_000);
    };
    s.setEncoding("latin1");
    s.on("connect", () => {
      res.opened++;
      ask();
      if (res.opened === n) console.log("OPEN " + JSON.stringify({ ...res, ms: Date.now() - t0 }));
    });
    s.on("data", (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line === `RESP ${i} ${k}`) {
          res.answered++;
          k++;
        } else res.bad++;
      }
    });
    s.on("error", (e) => {
      res.errors[e.code] = (res.errors[e.code] ?? 0) + 1;
      clearTimeout(timer);
    });
    s.on("close", () => clearTimeout(timer));
    s.stop = () => {
      clearTimeout(timer);
      s.end();
    };
    socks.push(s);
  };
  // in batches (200 every 100 ms), so that the SYNs do not all come at once
  let next = 0;
  const batch = () => {
    for (let j = 0; j < 200 && next < n; j++) open(next++);
    if (next < n) setTimeout(batch, 100);
  };
  batch();
  let ticks = 0;
  const waitOpen = setInterval(() => {
    if (res.opened < n) {
      if (++ticks % 50 === 0) console.log("OPENING " + JSON.stringify(res));
      return;
    }
    clearInterval(waitOpen);
    setTimeout(() => {
      for (const s of socks) s.stop();
      setTimeout(() => console.log("DONE " + JSON.stringify(res)), 2000);
    }, holdMs);
  }, 100);
} else {
  console.error("usage: kernel-peer.mjs sink|source|send|rstsource|probe|many|hold HOST PORT [BYTES|N] ...");
  process.exitCode = 2;
}

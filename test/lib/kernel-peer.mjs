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
//   hold HOST PORT N HOLD_MS SRC[,SRC...] [BASE]  open N connections, numbered BASE.. (from the
//                            source addresses in turn, each with its own source port: see below;
//                            at most 64 connects outstanding), each sending "REQ <i> <k>\n" when
//                            it opens and again every 10-30 s, expecting "RESP <i> <k>\n"; print
//                            "OPEN <json>" once all are open; then keep them HOLD_MS more after
//                            a line "GO" on stdin (at once if stdin ends), close them, and print
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
  const base = +(process.argv[8] ?? 0);
  const res = { opened: 0, requests: 0, answered: 0, bad: 0, errors: {} };
  const socks = [];
  const t0 = Date.now();
  const open = (i) => {
    // an explicit source port, unique per address across every process: bind(addr, 0) would
    // make the kernel search the whole ephemeral range for a port free on every address
    // (bind knows nothing of the 4-tuple), which crawls once ~64,000 are taken
    const g = base + i;
    const s = net.connect({
      port: +port,
      host,
      localAddress: srcs[g % srcs.length],
      localPort: 10_000 + Math.floor(g / srcs.length),
    });
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
  // at most WINDOW connects outstanding: the next opens as one completes (or fails), so the
  // opening runs as fast as both sides can take it and never piles up SYNs into retry backoff
  const WINDOW = 64;
  let next = 0;
  let inFlight = 0;
  const more = () => {
    while (inFlight < WINDOW && next < n) {
      const s = (open(next++), socks.at(-1));
      inFlight++;
      let settled = false;
      const settle = () => {
        if (settled) return;
        settled = true;
        inFlight--;
        setImmediate(more);
      };
      s.once("connect", settle);
      s.once("error", settle);
    }
  };
  more();
  let ticks = 0;
  // the hold starts when the test says every process is open (GO), so that all are held at once
  let go = false;
  let lineIn = "";
  process.stdin.setEncoding("latin1");
  process.stdin.on("data", (d) => {
    lineIn += d;
    if (/^GO$/m.test(lineIn)) go = true;
  });
  process.stdin.on("end", () => (go = true));
  const waitOpen = setInterval(() => {
    if (res.opened < n || !go) {
      if (++ticks % 50 === 0 && res.opened < n) console.log("OPENING " + JSON.stringify(res));
      return;
    }
    clearInterval(waitOpen);
    setTimeout(() => {
      // closed 500 at a time every 250 ms: 100,000 FINs in one instant would overflow the TAP's
      // queue, and the kernel's retransmissions, backed off in step, would keep colliding
      for (let j = 0; j < socks.length; j += 500)
        setTimeout(() => socks.slice(j, j + 500).forEach((s) => s.stop()), (j / 500) * 250);
      // the process stays (its stdin open) until the test ends it: the kernel keeps the closing
      // sockets of a live process, where an exit would orphan 100,000 of them at once
      setTimeout(
        () => {
          const states = {};
          for (const s of socks) {
            const k = `${s.readyState}${s.destroyed ? "-destroyed" : ""}${s.writableLength ? "-unsent" : ""}`;
            states[k] = (states[k] ?? 0) + 1;
          }
          console.log("DONE " + JSON.stringify({ ...res, states }));
        },
        (socks.length / 500) * 250 + 2000,
      );
    }, holdMs);
  }, 100);
} else {
  console.error("usage: kernel-peer.mjs sink|source|send|rstsource|probe|many|hold HOST PORT [BYTES|N] ...");
  process.exitCode = 2;
}

// Seeded network simulation: two cores over a faulty in-memory link, 64 MiB byte-exact per
// fault mix (SHA-256 of what was sent == SHA-256 of what was received), clean close, no leak.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync } from "node:fs";
import { runTransfer } from "./lib/netsim.mjs";
import { checkCores } from "./lib/corehost.mjs";

const MiB = 1 << 20;
const BIG = +(process.env.NETSIM_MIB ?? 64) * MiB;

const mixes = {
  clean: {},
  "loss 1%": { loss: 0.01 },
  "loss 5%": { loss: 0.05 },
  "duplication 5%": { dup: 0.05 },
  "reordering 5% + jitter": { reorder: 0.05, jitter: 2, delay: 2 },
  "corruption 2%": { corrupt: 0.02 },
  "bandwidth 100 Mbit/s, 20 ms, 64 KiB queue (NewReno)": { bandwidth: 12500, delay: 10, queue: 65536 },
  "bandwidth 100 Mbit/s, 20 ms, 64 KiB queue (CUBIC)": { bandwidth: 12500, delay: 10, queue: 65536, cubic: true },
  "MTU 576": { mtu: 576 },
  "everything at once (CUBIC)": {
    loss: 0.02,
    dup: 0.02,
    reorder: 0.02,
    corrupt: 0.01,
    jitter: 3,
    delay: 5,
    bandwidth: 25000,
    queue: 200000,
    cubic: true,
  },
  "loss 2% without SACK, timestamps, window scaling": { loss: 0.02, sack: false, ts: false, ws: false },
  "small windows (8 KiB) with loss 1%": { loss: 0.01, rcvbuf: 8192, sndbuf: 8192 },
  "both directions at once, loss 2% + reordering 2%": { bidir: true, loss: 0.02, reorder: 0.02, jitter: 1 },
};

function check(r) {
  assert.is(r.errors.join(";"), "");
  assert.is(r.recvBytes, r.cfg.bytes);
  assert.is(r.recvHash, r.sentHash, "byte-exact");
  assert.is(r.reverse.recvBytes, r.reverse.sentBytes);
  assert.is(r.reverse.recvHash, r.reverse.sentHash, "byte-exact in the reverse direction");
  if (r.cfg.bidir) assert.is(r.reverse.recvBytes, r.cfg.bytes);
  assert.ok(r.closed, "both sides closed");
  assert.is(r.poolA.check, 0);
  assert.is(r.poolB.check, 0);
  assert.is(r.poolA.free, r.poolA.count, "A leaked buffers");
  assert.is(r.poolB.free, r.poolB.count, "B leaked buffers");
  assert.is(r.connsLeft, 0);
  assert.ok(r.ok);
}

for (const [name, mix] of Object.entries(mixes)) {
  test(`netsim ${BIG / MiB} MiB: ${name}`, () => {
    const r = runTransfer({ seed: 1, bytes: BIG, ...mix });
    check(r);
    if (mix.loss) assert.ok(r.link.lost > 0, "faults were injected");
    if (mix.corrupt)
      assert.ok(
        r.statsB.TCP_BAD_CSUM + r.statsB.IP_BAD_CSUM + r.statsA.TCP_BAD_CSUM + r.statsA.IP_BAD_CSUM > 0,
        "corruption caught by checksums",
      );
    if (mix.dup) assert.ok(r.link.duped > 0);
    if (mix.reorder) assert.ok(r.link.reordered > 0);
  });
}

test("netsim: 24 seeds of a heavy fault mix, 1 MiB each", () => {
  for (let seed = 1; seed <= 24; seed++) {
    const r = runTransfer({
      seed,
      bytes: MiB,
      loss: 0.05,
      dup: 0.03,
      reorder: 0.05,
      corrupt: 0.02,
      jitter: 4,
      delay: 3,
      cubic: seed % 2 === 0,
    });
    check(r);
  }
});

test("netsim: 60 seeds of a harsher mix, half of them both ways, timestamps on and off, 256 KiB each", () => {
  for (let seed = 1; seed <= 60; seed++) {
    const r = runTransfer({
      seed,
      bytes: 256 << 10,
      bidir: seed % 2 === 0,
      loss: 0.08,
      dup: 0.05,
      reorder: 0.08,
      corrupt: 0.03,
      jitter: 5,
      delay: 3,
      cubic: seed % 3 === 0,
      ts: seed % 5 !== 0,
    });
    check(r);
  }
});

test("netsim: 50 connections at once, both directions, loss 3% + reordering, 256 KiB each way each", () => {
  const r = runTransfer({ seed: 5, conns: 50, bytes: 256 << 10, bidir: true, loss: 0.03, reorder: 0.03, jitter: 2 });
  assert.is(r.flows, 50);
  assert.ok(r.flowsOk, "every flow byte-exact both ways");
  check(r);
});

test("netsim over IPv6 (neighbors found by NDP on the link): 12 seeds of the heavy mix, 1 MiB each, half of them both ways", () => {
  for (let seed = 1; seed <= 12; seed++) {
    const r = runTransfer({
      v6: true,
      seed,
      bytes: MiB,
      bidir: seed % 2 === 0,
      loss: 0.05,
      dup: 0.03,
      reorder: 0.05,
      corrupt: 0.02,
      jitter: 4,
      delay: 3,
      cubic: seed % 3 === 0,
      mtu: seed % 4 === 0 ? 1280 : 1500,
    });
    check(r);
    assert.ok(r.statsA.ND_NS_IN + r.statsB.ND_NS_IN > 0, "neighbors were solicited");
    assert.ok(r.statsA.TCP_IN > 0 && r.statsA.IP_NOT_US === 0);
  }
});

test("netsim is deterministic: same seed, same outcome", () => {
  const a = runTransfer({ seed: 9, bytes: 2 * MiB, loss: 0.03, reorder: 0.03, jitter: 2 });
  const b = runTransfer({ seed: 9, bytes: 2 * MiB, loss: 0.03, reorder: 0.03, jitter: 2 });
  assert.is(a.simMs, b.simMs);
  assert.equal(a.link, b.link);
  assert.equal(a.statsA, b.statsA);
});

// Throughput versus loss and buffer size, in simulated time (100 Mbit/s link, 10 ms one way,
// 128 KiB queue). The table in docs/tcp.md is the snapshot; NETSIM_UPDATE=1 rewrites it.
test("netsim throughput table matches the snapshot in docs/tcp.md", () => {
  const losses = [0, 0.001, 0.01, 0.05];
  const bufs = [16384, 65536, 262144];
  const rows = [];
  for (const buf of bufs) {
    const cells = [];
    for (const loss of losses) {
      const r = runTransfer({
        seed: 3,
        bytes: 4 * MiB,
        loss,
        rcvbuf: buf,
        sndbuf: buf,
        bandwidth: 12500,
        delay: 10,
        queue: 131072,
      });
      check(r);
      cells.push(((r.recvBytes * 8) / ((r.simMs - 3000) * 1000)).toFixed(1));
    }
    rows.push(`| ${buf / 1024} KiB | ${cells.join(" | ")} |`);
  }
  const table = [
    `| window \\ loss | ${losses.map((l) => l * 100 + "%").join(" | ")} |`,
    `|---|${losses.map(() => "---").join("|")}|`,
    ...rows,
  ].join("\n");
  const path = new URL("../docs/tcp.md", import.meta.url);
  const doc = readFileSync(path, "utf8");
  const re = /(<!-- netsim-table -->\n)([\s\S]*?)(\n<!-- \/netsim-table -->)/;
  assert.ok(re.test(doc), "docs/tcp.md has the table markers");
  if (process.env.NETSIM_UPDATE) writeFileSync(path, doc.replace(re, `$1${table}$3`));
  else
    assert.is(doc.match(re)[2], table, "goodput (Mbit/s, simulated) changed: rerun with NETSIM_UPDATE=1 if intended");
});

// after every test: the pool invariant holds in every core the test created
test.after.each(() => {
  for (const r of checkCores()) assert.equal(r, { check: 0, detail: 0 }, "pool invariant after the test");
});

test.run();

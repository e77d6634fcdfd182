// The browser bundle (build/browser/pmstack.js) in headless Chromium, driven by puppeteer-core
// over a pipe. Each test runs test/lib/browser-run.mjs under `unshare --net`: a network namespace
// of its own with only a loopback device, where a static server on 127.0.0.1 serves the bundle
// and the test page (test/browser/), so nothing can reach any other address. Chromium is
// Debian's (/usr/bin/chromium, or PMSTACK_CHROMIUM); .ci/deps installs it. Without it (or
// without unshare, or root to use it) these tests fail and say why: they never skip.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { PmLog } from "../build/index.js";
import { scratchDir } from "./lib/tmp.mjs";

const CHROMIUM = process.env.PMSTACK_CHROMIUM ?? "/usr/bin/chromium";
const runner = new URL("./lib/browser-run.mjs", import.meta.url).pathname;
const bundle = new URL("../build/browser/pmstack.js", import.meta.url).pathname;

function prerequisites() {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (.ci/deps installs it)`);
  assert.ok(existsSync(bundle), `${bundle} is missing: npm run build:browser`);
  const u = spawnSync("unshare", ["--net", "true"], { encoding: "utf8" });
  assert.is(u.status, 0, `unshare --net does not work here (needs root and util-linux): ${u.error ?? u.stderr}`);
}

/**
 * Runs one scenario in Chromium inside a fresh network namespace; its result and the scratch dir
 * (`prepare(dir)` runs first: files for the runner to pick up).
 */
async function browser(scenario, { timeoutMs = 45_000, prepare } = {}) {
  prerequisites();
  const dir = scratchDir("disk");
  prepare?.(dir);
  const child = spawn("unshare", ["--net", "--", process.execPath, runner, scenario, dir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGTERM"); // the runner kills its Chromium, then exits
    setTimeout(() => child.exitCode === null && child.kill("SIGKILL"), 5000).unref();
  }, timeoutMs);
  const code = await new Promise((resolve) => child.on("exit", (c, s) => resolve(c ?? s)));
  clearTimeout(timer);
  assert.not.ok(timedOut, `the ${scenario} scenario took over ${timeoutMs} ms; stderr: ${err}`);
  assert.is(code, 0, `browser-run ${scenario} exited ${code}: ${err}${out}`);
  const line = out.split("\n").find((l) => l.startsWith("RESULT "));
  assert.ok(line, `no RESULT line: ${out}`);
  const res = JSON.parse(line.slice("RESULT ".length));
  assert.equal(res.outside, [], "the page asked the server only for the bundle and the test files");
  return { ...res, dir };
}

test("browser: the bundle on the page (pools in plain and shared memory; OPFS and the file adapter refuse there) and the OPFS adapter's edges in a Worker", async () => {
  const { result, logs } = await browser("main");
  assert.equal(logs, []);
  const r = result.page;
  assert.ok(r.crossOriginIsolated, "the test server sends COOP and COEP");
  assert.ok(r.shared, "the embedded core-shared.wasm over a SharedArrayBuffer");
  assert.is(r.persistence, "memory");
  assert.is(r.persistMode, "none");
  assert.is(r.sum, 15, "bytes written through a view read back");
  assert.is(r.free, 63);
  assert.is(r.opfsOnPage, "ENOTSUP");
  assert.match(r.opfsOnPageMessage, /only in a dedicated Worker/);
  assert.is(r.autoWithoutOpfs, "ENOTSUP");
  assert.match(r.autoWithoutOpfsMessage, /openOpfs/);
  const e = result.edges;
  assert.equal(e.names, { none: "TypeError", slash: "TypeError", journal: "TypeError", twice: "TypeError" });
  assert.is(e.cutExists, false, "a file whose superblock is zeros (a create cut short) counts as absent");
  assert.equal(e.cutCreated, { buffers: 8, persistence: "opfs" }, "openOrCreate creates the pool over it");
  assert.is(e.damaged, "EBADMAGIC", "a damaged superblock is refused, not created over");
  assert.equal(e.options, {
    journalMode: "EINVAL",
    mmapWithOpfs: "EINVAL",
    opfsWithout: "EINVAL",
    notADirectory: "TypeError",
  });
  assert.is(e.strict, "strict");
  assert.is(e.grown, 24, "growTo extends the OPFS file");
  assert.is(e.grownAgain, 24);
  assert.is(e.whileOpen, "ELOCKED", "one pool at a time per file");
  assert.ok(e.sharedMemory && e.sharedReadBack, "a pool in a shared memory persists to OPFS and reads back");
  assert.is(e.closedOpen, "ECLOSED");
});

test("browser: two stacks in a Worker move 64 MiB byte-exact through Node-style sockets", async () => {
  const { result: r, logs } = await browser("net");
  assert.equal(logs, []);
  assert.is(r.bytes, 64 << 20);
  assert.is(r.overflow, 0);
  assert.is(r.got, r.sent, "the server's SHA-256 of what it read is the client's of what it wrote");
  assert.is(r.stats.a.writeCopiedBytes, 64 << 20);
  assert.ok(r.stats.b.viewChunks + r.stats.b.copiedChunks > 0);
  console.log(`  64 MiB in ${r.ms} ms in the Worker (${r.mibPerS} MiB/s)`);
});

test("browser: a PASTE server logs a value in an OPFS pool; after a reload it is recovered; Node reads the same file, and the browser Node's", async () => {
  // a pool Node writes with the mmap adapter (on the disk: journal mode), for the browser to import
  const fromNode = Buffer.alloc(3000, "node wrote this; ");
  const prepare = (dir) => {
    mkdirSync(join(dir, "import"));
    const log = PmLog.openFile(join(dir, "import/node.pm"), {
      buffers: 64,
      persistence: "mmap",
      journalBytes: 1 << 20,
    });
    assert.is(log.pool.persistMode, "journal");
    const names = [];
    for (let at = 0; at < fromNode.length; at += 2000) {
      const i = log.pool.alloc();
      const part = fromNode.subarray(at, at + 2000);
      log.pool.view(i, 0, part.length).set(part);
      names.push(log.pool.name(i, 0, part.length));
    }
    log.append("from-node", names);
    for (const n of names) log.pool.free(n.index);
    log.commit();
    log.pool.close(); // waits for the journal, checkpoints
  };
  const { result: r, logs, dir } = await browser("opfs", { prepare });
  assert.equal(logs, []);
  const { kept, recovered, exported } = r;
  // before the reload: the batch API kept the chunks and logged them, through the OPFS adapter
  assert.is(kept.reply, "stored 5000");
  assert.ok(kept.created, "a fresh pool and log");
  assert.ok(kept.chunks >= 1);
  assert.ok(kept.durable, "the commit returned: durable in OPFS");
  assert.is(kept.persistence, "opfs");
  assert.is(kept.persistMode, "file");
  assert.is(kept.medium, "opfs");
  assert.is(kept.durability, "process-crash");
  assert.ok(kept.syncCalls > 0, "persists flush the access handle");
  // after it (the worker ended with the pool still open): reopened and read back byte-exact
  assert.is(recovered.got, kept.sent);
  assert.is(recovered.len, 5000);
  assert.is(recovered.keys, 1);
  assert.not.ok(recovered.recovered.formatted);
  assert.is(recovered.recovered.damage, "");
  assert.is(recovered.recovered.claimedBuffers, kept.chunks);
  assert.is(recovered.check.kept, kept.chunks);
  assert.equal(recovered.refusals, {
    lockedElsewhere: "ELOCKED",
    notPreOpened: "EINVAL",
    secondPool: "ELOCKED",
    fileInBrowser: "ENOTSUP",
    mmapInBrowser: "ENATIVE",
    closeWhileOpen: "EBUSY",
  });
  assert.is(recovered.reopenedKeys, 1, "closed and opened again");
  // the same on-disk format: the file OPFS holds opens under Node's file adapter, value intact
  assert.is(exported.status, 204);
  const log = PmLog.openFile(join(dir, "opfs-export.pm"), { buffers: 1024, persistence: "file" });
  try {
    const views = log.views("greeting");
    assert.ok(views, "the record is there");
    const bytes = Buffer.concat(views.map((v) => Buffer.from(v)));
    assert.is(createHash("sha256").update(bytes).digest("hex"), kept.sent);
    assert.is(log.pool.superblock.fileSize, exported.bytes);
  } finally {
    log.pool.close();
  }
  // and the other way: Node's pool (and its journal) opened from OPFS, the value intact
  const imp = r.imported;
  assert.is(imp.persistence, "opfs");
  assert.is(imp.len, fromNode.length);
  assert.is(imp.got, createHash("sha256").update(fromNode).digest("hex"));
  assert.equal(
    imp.journal,
    { path: "node.pm.journal", entries: 0 },
    "its journal pre-opened and replayed (a clean close left nothing)",
  );
});

test.run();

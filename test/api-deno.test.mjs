// Both application interfaces under Deno (installed from npm as a devDependency) and, the same
// script, under Node: test/deno/api-smoke.mjs (batch API keep/persist/log/reply from PM with the
// log read back after reopening; Node-idiom pipe() echo, async iteration, ECONNREFUSED). Under
// Deno twice: with -A (the addon maps the pool), and with only --allow-read and --allow-write
// (no --allow-ffi: no addon; the pool falls back to the file adapter and says so, and what
// needs an addon fails naming --allow-ffi).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { PmLog } from "../build/index.js";
import { scratchDir } from "./lib/tmp.mjs";

// test/deno/api-smoke.mjs's data
function pattern(n, seed) {
  const b = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

const deno = new URL("../node_modules/.bin/deno", import.meta.url).pathname;
const smoke = new URL("./deno/api-smoke.mjs", import.meta.url).pathname;

function check(r, runtime, persistence = "mmap") {
  assert.is(r.status, 0, `${runtime} exited ${r.status}: ${r.stderr}`);
  assert.match(r.stdout, /API SMOKE OK /);
  const res = JSON.parse(r.stdout.split("API SMOKE OK ")[1]);
  assert.is(res.runtime, runtime);
  assert.is(res.batch.persistence, persistence);
  if (persistence === "file") {
    assert.is(res.batch.persistMode, "file");
    assert.match(res.batch.fallback, /cannot load the native addon .*--allow-ffi/);
    assert.ok(res.batch.syncCalls >= res.batch.commits, "each commit fdatasynced");
    assert.match(res.addons.journal, /^ENATIVE .*Mode "journal" needs it/);
    assert.match(res.addons.nic, /^ENATIVE .*NIC addon.*--allow-ffi/);
  } else {
    assert.is(res.batch.fallback, null);
    assert.is(res.addons.journal, null);
    assert.is(res.addons.nic, null);
  }
  assert.is(res.batch.bytes, 200_000);
  assert.is(res.batch.zeroCopyBytes, 200_000, "the batch echo went out of the kept buffers");
  assert.ok(res.batch.chunks > 0 && res.batch.commits > 0 && res.batch.commits <= res.batch.chunks);
  assert.is(res.net.bytes, 300_000);
  assert.ok(res.net.viewChunks > 0, "data chunks were zero-copy views");
  assert.is(res.net.refused, "ECONNREFUSED");
  return res;
}

test("batch API and Node-idiom API under Deno", () => {
  assert.ok(existsSync(deno), "deno is installed by npm install (devDependency)");
  const r = spawnSync(deno, ["run", "-A", "--no-prompt", smoke, scratchDir("tmpfs")], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    timeout: 120_000,
  });
  check(r, "deno");
});

test("batch API and Node-idiom API under Deno without --allow-ffi: the file adapter, no addon", () => {
  // a disk directory: Deno asks for --allow-all to open files under /dev (so /dev/shm)
  const dir = scratchDir("disk");
  const r = spawnSync(deno, ["run", "--allow-read", "--allow-write", "--no-prompt", smoke, dir], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    timeout: 120_000,
  });
  const res = check(r, "deno", "file");
  // the same file format: Node, through the addon, reads the log Deno wrote without it
  const log = PmLog.openFile(join(dir, "api-deno.pm"), { buffers: 2048, persistence: "mmap" });
  assert.is(log.size, res.batch.chunks);
  const back = Buffer.concat([...Array(log.size).keys()].map((k) => log.views(`k${k}`)[0]));
  assert.ok(back.equals(Buffer.from(pattern(200_000, 7))), "the echoed bytes, as logged under Deno");
  log.pool.close();
});

test("the same script under Node", () => {
  check(spawnSync(process.execPath, [smoke, scratchDir("tmpfs")], { encoding: "utf8", timeout: 120_000 }), "node");
});

test.run();

// The examples and the main job run as documented.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { scratchDir } from "./lib/tmp.mjs";

const root = new URL("..", import.meta.url).pathname;

test("examples/pool.mjs: persist, reopen, read back by name", () => {
  const path = join(scratchDir(), "ex.pm");
  const r = spawnSync(process.execPath, ["examples/pool.mjs", path], { cwd: root, encoding: "utf8" });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /persisted 2 buffers with msync on tmpfs/);
  assert.match(r.stdout, /\(\d+, 0, 3\) = one/);
  assert.match(r.stdout, /\(\d+, 0, 3\) = two/);
});

test("the pool demo (build/main.js) on a given pool path, twice", () => {
  const path = join(scratchDir("disk"), "main.pm");
  for (let k = 0; k < 2; k++) {
    const r = spawnSync(process.execPath, ["build/main.js", path], { cwd: root, encoding: "utf8" });
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /on ext4, 4096 x 2048 B buffers/);
    assert.match(r.stdout, /persist: journal on ext4/);
    assert.match(r.stdout, /"hello, persistent memory"/);
    assert.match(r.stdout, /persisted 3 named buffers in one batch/);
  }
});

test("the pool demo reports a bad pool file clearly and exits 1", () => {
  const path = join(scratchDir(), "bad.pm");
  spawnSync("sh", ["-c", `head -c 8192 /dev/zero > ${path}`]);
  const r = spawnSync(process.execPath, ["build/main.js", path], { cwd: root, encoding: "utf8" });
  assert.is(r.status, 1);
  assert.match(r.stderr, new RegExp(`pmstack: ${path}: not a pmstack pool file`));
});

test("examples/paste-kv.mjs: the batch API keeps, persists, logs and replies from PM; a second run recovers the keys", () => {
  const path = join(scratchDir(), "kv.pm");
  const run = () => spawnSync(process.execPath, ["examples/paste-kv.mjs", path], { cwd: root, encoding: "utf8" });
  const r1 = run();
  assert.is(r1.status, 0, r1.stderr);
  assert.match(r1.stdout, /recovered 0 keys: none/);
  assert.match(r1.stdout, /GET greeting -> hello, PM/);
  assert.match(r1.stdout, /GET run-0 -> value stored by run 1/);
  assert.match(r1.stdout, /GET nope -> NOT FOUND/);
  assert.match(r1.stdout, /server: 2 fences, 2 group commits, 30 bytes replied from PM without a copy/);
  assert.match(r1.stdout, /"app":0,"kept":2\}/);
  const r2 = run();
  assert.is(r2.status, 0, r2.stderr);
  assert.match(r2.stdout, /recovered 2 keys: run-0, greeting/);
  assert.match(r2.stdout, /GET run-0 -> value stored by run 1/);
});

test("examples/net-echo.mjs: Duplex sockets, pipeline, async iteration, ECONNREFUSED", () => {
  const r = spawnSync(process.execPath, ["examples/net-echo.mjs"], { cwd: root, encoding: "utf8", timeout: 30_000 });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /server: listening on 198\.18\.0\.2:7/);
  assert.match(r.stdout, /client: HELLO, PERSISTENT MEMORY\nclient: ZERO-COPY VIEWS, NODE STREAMS\n/);
  assert.match(r.stdout, /client: connect to port 8: ECONNREFUSED/);
  assert.match(r.stdout, /server: closed; [1-9]\d* chunks lent as views, 0 copied/);
});

test("examples/sim-counter.mjs: a replicated counter through a partition and a crash, the same trace twice", () => {
  const run = () =>
    spawnSync(process.execPath, ["examples/sim-counter.mjs"], { cwd: root, encoding: "utf8", timeout: 60_000 });
  const r1 = run();
  assert.is(r1.status, 0, r1.stderr);
  assert.match(r1.stdout, /sim partition primary \| replica\n[^]*sim repair\n/);
  assert.match(
    r1.stdout,
    /primary crash\n[^]*primary restart 198\.18\.0\.2 [^\n]* boot 2\n[^\n]* primary counter \d+, last request \d+\n/,
  );
  assert.match(r1.stdout, /client INC 20 -> OK 20\n/);
  assert.match(r1.stdout, /20 increments acknowledged, each once, in order/);
  const r2 = run();
  assert.is(r2.status, 0, r2.stderr);
  assert.is(r2.stdout, r1.stdout, "the same output, byte for byte");
});

test.run();

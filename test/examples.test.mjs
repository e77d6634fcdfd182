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
    assert.match(r.stdout, /persist: msync on ext4/);
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

test.run();

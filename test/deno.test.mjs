// Runs the smoke test under Deno (installed from npm as a devDependency).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { scratchDir } from "./lib/tmp.mjs";

const deno = new URL("../node_modules/.bin/deno", import.meta.url).pathname;

test("the pool works under Deno (plain and shared memory)", () => {
  assert.ok(existsSync(deno), "deno is installed by npm install (devDependency)");
  const dir = scratchDir("tmpfs");
  const r = spawnSync(deno, ["run", "-A", "--no-prompt", new URL("./deno/smoke.mjs", import.meta.url).pathname, dir], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    timeout: 60_000,
  });
  assert.is(r.status, 0, `deno exited ${r.status}: ${r.stderr}`);
  assert.match(r.stdout, /DENO SMOKE OK/);
  const res = JSON.parse(r.stdout.split("DENO SMOKE OK ")[1]);
  assert.is(res.plain.text, "deno false");
  assert.is(res.shared.text, "deno true");
  assert.is(res.plain.medium, "tmpfs");
});

test("the pool works under Deno without --allow-ffi (the file adapter; plain and shared memory)", () => {
  const dir = scratchDir("disk"); // Deno asks for --allow-all to open files under /dev (so /dev/shm)
  const r = spawnSync(
    deno,
    ["run", "--allow-read", "--allow-write", "--no-prompt", new URL("./deno/smoke.mjs", import.meta.url).pathname, dir],
    { encoding: "utf8", env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" }, timeout: 60_000 },
  );
  assert.is(r.status, 0, `deno exited ${r.status}: ${r.stderr}`);
  const res = JSON.parse(r.stdout.split("DENO SMOKE OK ")[1]);
  assert.is(res.plain.text, "deno false");
  assert.is(res.shared.text, "deno true");
  assert.is(res.plain.persistMode, "file");
  assert.is(res.plain.medium, "unknown", "statfs needs --allow-sys");
});

test.run();

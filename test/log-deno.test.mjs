// The log in Deno and in Node, plain and shared memory (test/lib/log-deno-smoke.mjs).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { scratchDir } from "./lib/tmp.mjs";

const deno = new URL("../node_modules/.bin/deno", import.meta.url).pathname;
const smoke = new URL("./lib/log-deno-smoke.mjs", import.meta.url).pathname;

function check(r, runtime) {
  assert.is(r.status, 0, `${runtime} exited ${r.status}: ${r.stderr}`);
  const res = JSON.parse(r.stdout.split("LOG SMOKE OK ")[1]);
  for (const shared of ["plain", "shared"]) {
    assert.is(res[shared].size, 9);
    assert.is(res[shared].kept, 9);
    assert.is(res[shared].text, `${runtime} ${shared === "shared"} 7`);
  }
}

test("the log works under Deno (plain and shared memory, strict mode)", () => {
  assert.ok(existsSync(deno), "deno is installed by npm install (devDependency)");
  const r = spawnSync(deno, ["run", "-A", "--no-prompt", smoke, scratchDir("tmpfs")], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    timeout: 60_000,
  });
  check(r, "deno");
});

test("the log works under Deno without --allow-ffi (the file adapter in strict mode)", () => {
  const r = spawnSync(deno, ["run", "--allow-read", "--allow-write", "--no-prompt", smoke, scratchDir("disk")], {
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
    timeout: 60_000,
  });
  check(r, "deno");
  assert.match(r.stdout, /"persistence":"file"/);
});

test("the same script under Node", () => {
  check(spawnSync(process.execPath, [smoke, scratchDir("disk")], { encoding: "utf8", timeout: 60_000 }), "node");
});

test.run();

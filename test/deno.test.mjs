// Runs the smoke test under Deno (installed from npm as a devDependency).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Pool } from "../build/index.js";
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

test("a pool open under Deno without --allow-ffi is locked against Node's adapters; Node reads what it wrote", async () => {
  const path = join(scratchDir("disk"), "held.pm");
  const p = spawn(
    deno,
    ["run", "--allow-read", "--allow-write", "--no-prompt", new URL("./deno/hold.mjs", import.meta.url).pathname, path],
    { stdio: ["pipe", "pipe", "inherit"], env: { ...process.env, NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" } },
  );
  let out = "";
  p.stdout.on("data", (d) => (out += d));
  const exited = new Promise((r) => p.on("exit", r));
  for (let k = 0; k < 600 && !out.includes("HOLD"); k++) await new Promise((r) => setTimeout(r, 50));
  try {
    assert.match(out, /HOLD file/);
    for (const persistence of ["mmap", "file"]) {
      let code;
      try {
        Pool.open(path, { persistence }).close();
      } catch (e) {
        code = e.code;
      }
      assert.is(code, "ELOCKED", `${persistence} is kept out while Deno holds the pool`);
    }
  } finally {
    p.stdin.end();
  }
  assert.is(await exited, 0);
  const i = Number(out.match(/DONE (\d+)/)[1]);
  const pool = Pool.open(path, { persistence: "mmap" });
  pool.claim(i);
  assert.equal([...pool.view(i, 0, 4)], [0xde, 0x40, 0x0f, 0xf1]);
  pool.close();
});

test.run();

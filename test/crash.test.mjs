// Crash test: a child process writes named buffers and persists about half of them; it is
// killed with SIGKILL mid-stream; a new process reopens the file and finds every buffer whose
// persist returned intact (on tmpfs and on the disk's file system, through the addon's mmap and
// through the file adapter, whose unpersisted stores never reach the file at all).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { Pool } from "../build/index.js";
import { matches } from "./lib/pattern.mjs";
import { scratchDir, MEDIA } from "./lib/tmp.mjs";
import { rng } from "./lib/rng.mjs";

const child = new URL("./lib/crash-child.mjs", import.meta.url).pathname;

function runAndKill(path, buffers, persistEvery, killAfterLines, persistence = "mmap") {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [child, path, String(buffers), String(persistEvery), persistence], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let buf = "";
    const lines = [];
    let killed = false;
    p.stdout.on("data", (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        lines.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      if (!killed && (lines.length >= killAfterLines || lines.includes("FULL"))) {
        killed = true;
        p.kill("SIGKILL");
      }
    });
    p.on("error", reject);
    p.on("exit", (code, sig) => resolve({ lines, sig }));
  });
}

for (const medium of MEDIA)
  for (const persistence of ["mmap", "file"])
    test(`SIGKILL while writing: every persisted buffer survives (${medium}, ${persistence})`, async () => {
      const dir = scratchDir(medium === "tmpfs" ? "tmpfs" : "disk");
      const path = join(dir, "crash.pm");
      const r = rng((medium === "tmpfs" ? 11 : 12) + (persistence === "file" ? 10 : 0));
      const { lines, sig } = await runAndKill(path, 4096, 2, 400 + r.int(1200), persistence);
      assert.is(sig, "SIGKILL");
      assert.match(lines[0], /^READY /);
      if (persistence === "file") assert.is(lines[0], "READY file");
      const persisted = lines.filter((l) => l.startsWith("P ")).map((l) => l.split(" ").slice(1).map(Number));
      const unpersisted = lines.filter((l) => l.startsWith("U ")).length;
      assert.ok(persisted.length >= 8, `child persisted ${persisted.length} buffers before the kill`);
      assert.ok(unpersisted >= 8, `child left ${unpersisted} buffers unpersisted`);
      // read back through the other adapter too: the same file format
      for (const reader of ["mmap", "file"]) {
        const pool = Pool.open(path, { persistence: reader });
        try {
          for (const [index, offset, length, seq] of persisted) {
            pool.claim(index);
            assert.ok(matches(pool.view(index, offset, length), seq), `buffer ${index} (seq ${seq}) intact`);
          }
          const c = pool.check();
          assert.is(c.kept, persisted.length);
          assert.is(c.free, 4096 - persisted.length);
        } finally {
          pool.close();
        }
      }
    });

test.run();

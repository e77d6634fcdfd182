// `npm test`: type check, format check, then every uvu test file; ends with the line
// "N passed, N failed, N skipped" (checks count as one test each).
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const bin = (name) => `${root}node_modules/.bin/${name}`;
const pattern = process.argv[2] ?? "\\.test\\.mjs$";
let passed = 0;
let failed = 0;
let skipped = 0;

function check(label, cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: "inherit" });
  if (r.status === 0) {
    passed++;
    console.log(`ok: ${label}`);
  } else {
    failed++;
    console.log(`FAILED: ${label}`);
  }
}

if (!process.argv[2]) {
  check("type check (tsc --noEmit)", bin("tsc"), ["-p", "tsconfig.json", "--noEmit"]);
  check("format check (prettier --check)", bin("prettier"), ["--check", "--log-level", "warn", "."]);
}

const r = spawnSync(bin("uvu"), ["test", pattern], {
  cwd: root,
  encoding: "utf8",
  stdio: ["ignore", "pipe", "inherit"],
  env: { ...process.env, FORCE_COLOR: "0" },
});
process.stdout.write(r.stdout);
const num = (label) => Number((r.stdout.match(new RegExp(`${label}:\\s+(\\d+)`)) ?? [])[1] ?? NaN);
const total = num("Total");
const ok = num("Passed");
const sk = num("Skipped");
if (Number.isNaN(total) || Number.isNaN(ok)) {
  failed++;
  console.log("FAILED: uvu did not report a summary (a test file crashed?)");
} else {
  passed += ok;
  skipped += sk || 0;
  failed += total - ok - (sk || 0);
  if (r.status !== 0 && total - ok - (sk || 0) === 0) failed++;
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed === 0 ? 0 : 1;

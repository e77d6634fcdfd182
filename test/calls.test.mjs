// Boundary call counting (host/calls.ts): with PMSTACK_COUNT_CALLS=1 every call into the core is
// counted by name; without it nothing is wrapped and every count stays zero. Each case runs in a
// child process, since the variable is read when a core is instantiated.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const index = fileURLToPath(new URL("../build/index.js", import.meta.url));
const script = `
const pm = await import(${JSON.stringify(index)});
const s = pm.Stack.create({ pool: { buffers: 1024 }, mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24" });
const before = pm.boundaryCalls();
for (let i = 0; i < 10; i++) s.poll(i);
const i = s.pool.alloc();
s.pool.free(i);
const after = pm.boundaryCalls();
console.log(JSON.stringify({ before, after }));
`;

function run(env) {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], {
    encoding: "utf8",
    env: { ...process.env, PMSTACK_COUNT_CALLS: undefined, ...env },
  });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split("\n").pop());
}

test("PMSTACK_COUNT_CALLS=1 counts every call into the core by name", () => {
  const { before, after } = run({ PMSTACK_COUNT_CALLS: "1" });
  assert.ok(before.wasm > 0, "making a stack calls into its core");
  assert.is(after.byName["wasm:stackPoll"] - (before.byName["wasm:stackPoll"] ?? 0), 10);
  assert.ok(after.byName["wasm:bufAlloc"] > (before.byName["wasm:bufAlloc"] ?? 0));
  const sum = Object.entries(after.byName)
    .filter(([k]) => k.startsWith("wasm:"))
    .reduce((a, [, v]) => a + v, 0);
  assert.is(after.wasm, sum);
});

test("without it nothing is counted", () => {
  const { before, after } = run({});
  assert.equal(before, { wasm: 0, addon: 0, byName: {} });
  assert.equal(after, { wasm: 0, addon: 0, byName: {} });
});

test.run();

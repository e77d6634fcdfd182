// The core (assembly/layout.ts) and the host (host/abi.ts) must agree on every shared constant.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";

const consts = (file, re) => {
  const out = {};
  for (const m of readFileSync(new URL(file, import.meta.url), "utf8").matchAll(re)) out[m[1]] = Number(m[2]);
  return out;
};

test("host/abi.ts mirrors assembly/layout.ts", () => {
  const core = consts("../assembly/layout.ts", /export const (\w+): [iu]32 = (-?(?:0x)?[0-9a-f]+);/gi);
  const host = consts("../host/abi.ts", /export const (\w+) = (-?(?:0x)?[0-9a-f]+);/gi);
  const names = Object.keys(core).filter((k) => k !== "BUF_SHIFT" && k !== "REF_MAX");
  assert.ok(names.length >= 30, `parsed ${names.length} core constants`);
  for (const k of names) assert.is(host[k], core[k], `${k}: host ${host[k]} vs core ${core[k]}`);
  assert.is(1 << core.BUF_SHIFT, core.BUF_SIZE);
});

test.run();

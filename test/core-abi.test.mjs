// The ABI as documented and as mirrored by the harness agrees with the core's source.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import {
  COUNTERS,
  CFG,
  CMD,
  EV,
  RXF_CSUM_VALID,
  RXF_NEEDS_CSUM,
  createCore,
  createCoreAsync,
  checkCores,
} from "./lib/corehost.mjs";

const root = new URL("../", import.meta.url);
const src = (p) => readFileSync(new URL(p, root), "utf8");
const consts = (text, prefix) => {
  const o = {};
  for (const m of text.matchAll(new RegExp(`export const ${prefix}(\\w+)(?::\\s*\\w+)? = (\\d+);`, "g")))
    o[m[1]] = +m[2];
  return o;
};

test("every counter in assembly/net/g.ts is listed with its index in docs/core-abi.md", () => {
  const doc = src("docs/core-abi.md");
  const n = Object.keys(COUNTERS).length;
  assert.ok(n >= 60);
  for (const [name, i] of Object.entries(COUNTERS)) assert.ok(doc.includes(`${i} ${name}`), `${i} ${name}`);
  const core = createCore();
  assert.ok(core.x.stackStatCount() >= n, "the counter area holds them all");
});

test("configuration offsets in the harness match assembly/net/g.ts and the docs", () => {
  const g = consts(src("assembly/net/g.ts"), "CFG_");
  delete g.SIZE;
  const doc = src("docs/core-abi.md");
  for (const [k, v] of Object.entries(g)) {
    assert.is(CFG[k], v, `CFG_${k}`);
    assert.ok(new RegExp(`^\\| (${v}|[\\d, ]*\\b${v}\\b[\\d, ]*) \\|`, "m").test(doc), `offset ${v} documented`);
  }
});

test("command and event codes match assembly/stack.ts and assembly/net/g.ts", () => {
  const cmd = consts(src("assembly/stack.ts"), "CMD_");
  const ev = consts(src("assembly/net/g.ts"), "EV_");
  assert.equal(cmd, CMD);
  assert.equal(ev, EV);
  const rxf = consts(src("assembly/stack.ts"), "RXF_");
  assert.is(rxf.CSUM_VALID, RXF_CSUM_VALID);
  assert.is(rxf.NEEDS_CSUM, RXF_NEEDS_CSUM);
  const doc = src("docs/core-abi.md");
  for (const [k, v] of Object.entries(CMD)) assert.ok(doc.includes(`| ${v} | \`${k}\``), `command ${k}`);
  for (const [k, v] of Object.entries(EV)) assert.ok(doc.includes(`| ${v} | \`${k}\``), `event ${k}`);
});

test("the stack exports named in docs/core-abi.md exist", () => {
  const core = createCore();
  for (const name of [
    "stackConfig",
    "stackConfigDefault",
    "stackConfigMin",
    "stackConfigMax",
    "stackConfigValue",
    "stackScratch",
    "stackInit",
    "stackRing",
    "stackStats",
    "stackStatCount",
    "stackPoll",
    "stackSetAddr",
    "stackAnnounce",
    "stackArpAdd",
    "stackArpLookup",
    "csumTest",
    "tcpState",
    "tcpInfo",
    "tcpConnCount",
    "tcpNodesUsed",
  ])
    assert.type(core.x[name], "function", name);
  assert.is(core.x.stackInit(), -9, "a second stackInit is refused");
});

test("the core instantiated with WebAssembly.instantiate(bytes, imports) runs the same", async () => {
  const core = await createCoreAsync();
  assert.is(core.poll(0), Infinity);
  const [f] = core.tx();
  assert.is(f[12] * 256 + f[13], 0x0806, "gratuitous ARP");
  assert.is(core.check(), 0);
});

// after every test: the pool invariant holds in every core the test created
test.after.each(() => {
  for (const r of checkCores()) assert.equal(r, { check: 0, detail: 0 }, "pool invariant after the test");
});

test.run();

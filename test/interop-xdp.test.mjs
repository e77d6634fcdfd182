// pmstack's own TCP/IP against the Linux kernel's over AF_XDP: a veth pair inside a namespace
// the test makes, pmstack's XSK on pmvp4 (UMEM = the pool file on tmpfs, copy mode: veth has no
// zero copy), the kernel on pmvk4 (198.18.4.1). The tests are test/lib/interop.mjs's, the same
// as over TAP. Needs root; skips loudly otherwise.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { netnsUnavailable, leftovers } from "./lib/netns.mjs";
import { defineInteropTests, defineConnectionTests, defineFaultTests, defineIp6Tests } from "./lib/interop.mjs";

const why = netnsUnavailable();
if (why) console.warn(`\n!!! interop-xdp: SKIPPED, network namespaces unavailable: ${why}\n`);
const it = why ? test.skip : test;

defineInteropTests(it, "xdp");
defineConnectionTests(it, "xdp");
defineIp6Tests(it, "xdp");
defineFaultTests(it, "xdp");

it("no namespace, device or process is left behind", () => {
  const l = leftovers();
  assert.equal(l.netns, []);
  assert.equal(l.links, []);
});

test.run();

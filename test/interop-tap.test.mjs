// pmstack's own TCP/IP against the Linux kernel's over a TAP device (the kernel's checksum and
// TSO offloads on: it sends up to 64 KiB superframes) inside a namespace the test makes:
// pmtap3, kernel 198.18.3.1, pmstack 198.18.3.2, the pool a file on tmpfs. The tests are
// test/lib/interop.mjs's, the same as over AF_XDP: ping, curl GET and POST, active open, 256 MiB
// each way with matching sha256, 1,000 concurrent connections, refused and reset connections,
// nmap -sS, the transfers through NicLoop's fault injector and through an nft drop rule, and a
// download through a core RX ring too small for a turn's frames; after each test every buffer
// is back in the pool. Needs root; skips loudly otherwise.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { netnsUnavailable, leftovers } from "./lib/netns.mjs";
import {
  activeTransfer,
  defineInteropTests,
  defineConnectionTests,
  defineFaultTests,
  defineIp6Tests,
} from "./lib/interop.mjs";

const why = netnsUnavailable();
if (why) console.warn(`\n!!! interop-tap: SKIPPED, network namespaces unavailable: ${why}\n`);
const it = why ? test.skip : test;

defineInteropTests(it, "tap");
defineConnectionTests(it, "tap");
defineIp6Tests(it, "tap");
defineFaultTests(it, "tap");

// A turn moves received frames from the NIC's ring to the core's slot by slot
// (NicPort.drainInto): where the core's ring is smaller than what the NIC's holds, whole frames
// are dropped, their buffers freed, and TCP resends them (test/nic-rings.test.mjs covers both
// directions against a fake NIC).
it("a 64-slot core RX ring behind a 512-slot NIC ring: superframes it has no room for are dropped and resent (32 MiB download byte-exact)", async () => {
  const r = await activeTransfer("tap", "download", 32 << 20, { stack: { rings: { rx: 6 } }, timeoutMs: 120_000 });
  assert.is(r.ours, r.theirs);
  assert.ok(r.loop.rxRingFull > 0, `frames dropped for a full core RX ring: ${r.loop.rxRingFull}`);
});

it("no namespace, device or process is left behind", () => {
  const l = leftovers();
  assert.equal(l.netns, []);
  assert.equal(l.links, []);
});

test.run();

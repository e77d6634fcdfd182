// The frame fuzzer in CI: a million frames (PMSTACK_FUZZ_FRAMES to change it) with a fresh seed,
// printed, into one core while a second keeps a checked connection with it (test/lib/fuzz.mjs).
// A failure names the seed and frame and the command that replays it; the reproducer (the last
// frames in hex) is written beside the test's temporary files.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { randomInt } from "node:crypto";
import os from "node:os";
import { fuzz, FuzzError, writeReproducer } from "./lib/fuzz.mjs";

const frames = Number(process.env.PMSTACK_FUZZ_FRAMES ?? 1_000_000);
const seed = Number(process.env.PMSTACK_FUZZ_SEED ?? randomInt(1, 2 ** 31));

test(`${frames} fuzzed frames (seed ${seed}): no trap, no leak, the live connection intact both ways`, () => {
  console.log(`  fuzz seed ${seed} (replay: npm run fuzz -- --frames ${frames} --seed ${seed})`);
  let c;
  try {
    c = fuzz({ frames, seed });
  } catch (e) {
    if (!(e instanceof FuzzError)) throw e;
    const file = writeReproducer(os.tmpdir(), e, frames);
    assert.unreachable(
      `${e.message}; reproducer ${file}; replay: npm run fuzz -- --frames ${e.info.frame} --seed ${seed}`,
    );
  }
  assert.is(c.frames, frames);
  assert.ok(c.quiesces >= Math.floor(frames / 50_000), "the invariants were checked after every quiesce");
  assert.ok(c.streamed[0] > 0 && c.streamed[1] > 0, "the live connection carried checked bytes both ways");
  assert.ok(c.victim.RX_BAD_SLOT > 0 && c.victim.TCP_IN > 0 && c.victim.IP_REASM_DROP + c.victim.IP_FRAG_DROP > 0);
});

test.run();

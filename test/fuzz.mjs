// `npm run fuzz -- [--frames N] [--seed S] [--out DIR]`: the frame fuzzer (test/lib/fuzz.mjs)
// against one core while a second keeps a checked connection with it. The run is deterministic
// in its seed: on a failure it writes DIR/fuzz-repro-SEED.json (the seed, the frame count, the
// message, the last frames in hex) and prints the command that replays it. Exit status 1 then.
import { randomInt } from "node:crypto";
import { fuzz, FuzzError, writeReproducer } from "./lib/fuzz.mjs";

const args = process.argv.slice(2);
const opt = (name, d) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : d;
};
const frames = Number(opt("--frames", 1_000_000));
const seed = Number(opt("--seed", randomInt(1, 2 ** 31)));
const out = opt("--out", ".");
if (!Number.isInteger(frames) || frames < 1 || !Number.isInteger(seed) || seed < 1) {
  console.error("usage: npm run fuzz -- [--frames N (>= 1)] [--seed S (>= 1)] [--out DIR]");
  process.exit(2);
}
console.log(`fuzz: ${frames} frames, seed ${seed}`);
const t0 = performance.now();
try {
  const c = fuzz({ frames, seed });
  const s = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(
    `fuzz: ok in ${s} s: ${c.random} random, ${c.structured} structured, ${c.mutated} mutated, ${c.blind} blind, ` +
      `${c.slots} bogus-slot rounds; ${c.quiesces} quiesces; live stream ${c.streamed[0]} + ${c.streamed[1]} bytes checked; ` +
      `victim RX frames ${c.victim.RX_FRAMES}, bad slots ${c.victim.RX_BAD_SLOT}, TCP in ${c.victim.TCP_IN}`,
  );
} catch (e) {
  if (!(e instanceof FuzzError)) throw e;
  const file = writeReproducer(out, e, frames);
  console.error(
    `fuzz: FAILED: ${e.message}\nreproducer: ${file}\nreplay: npm run fuzz -- --frames ${e.info.frame} --seed ${seed}`,
  );
  process.exit(1);
}

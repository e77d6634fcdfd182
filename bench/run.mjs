// `npm run bench -- <name> [args]`: runs bench/<name>.mjs, prints its table (each system beside
// its peer measured in the same run, with the ratio) and writes bench/results/<name>.json as
// {"bench": NAME, "rows": [{"system", "metric", "value", "unit"}, ...], ...}.
import { writeFileSync, mkdirSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import os from "node:os";
import { formatTable } from "./_lib.mjs";

const here = fileURLToPath(new URL(".", import.meta.url));
const [name, ...args] = process.argv.slice(2);
const known = readdirSync(here)
  .filter((f) => f.endsWith(".mjs") && !["run.mjs", "report.mjs"].includes(f) && !f.startsWith("_"))
  .map((f) => f.slice(0, -4));
if (!name || !known.includes(name)) {
  console.error(`usage: npm run bench -- <name> [args]\nbenchmarks: ${known.join(", ")}`);
  process.exit(2);
}

const mod = await import(`./${name}.mjs`);
const started = new Date().toISOString();
const res = await mod.run(args);
const out = {
  bench: name,
  rows: res.rows,
  ratios: res.ratios ?? [],
  machine: { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, kernel: os.release() },
  started,
  notes: res.notes ?? [],
};
console.log(formatTable(out));
mkdirSync(`${here}results`, { recursive: true });
writeFileSync(`${here}results/${name}.json`, JSON.stringify(out, null, 2) + "\n");
console.log(`\nwrote bench/results/${name}.json`);

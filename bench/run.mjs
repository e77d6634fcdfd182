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
const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version, kernel: os.release() };
mkdirSync(`${here}results`, { recursive: true });
// a benchmark may return more than one result (bench/durable: one per medium) as `extra`, and
// name the file of its main one (`writeAs`)
const results = [{ name: res.writeAs ?? name, result: res }, ...(res.extra ?? [])];
for (const { name: file, result } of results) {
  const out = {
    bench: file,
    rows: result.rows,
    ratios: result.ratios ?? [],
    machine,
    started,
    notes: result.notes ?? [],
  };
  if (results.length === 1 || file === name) console.log(formatTable(out));
  writeFileSync(`${here}results/${file}.json`, JSON.stringify(out, null, 2) + "\n");
  console.log(`\nwrote bench/results/${file}.json`);
}

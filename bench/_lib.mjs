// Helpers shared by benchmarks.

/** Median of an array of numbers. */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs fn(iterations) `reps` times and returns the median ns per iteration. */
export function nsPerOp(fn, iterations, reps = 7) {
  fn(Math.min(iterations, 1000)); // warm up
  const t = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    fn(iterations);
    t.push(Number(process.hrtime.bigint() - t0) / iterations);
  }
  return median(t);
}

/** Ratio rows: for each metric both systems have, system / peer (or peer / system when lower is better). */
export function ratios(rows, system, peer, lowerIsBetter = false) {
  const out = [];
  for (const r of rows.filter((x) => x.system === system)) {
    const p = rows.find((x) => x.system === peer && x.metric === r.metric);
    if (!p || !p.value) continue;
    out.push({
      metric: r.metric,
      system,
      peer,
      ratio: lowerIsBetter ? p.value / r.value : r.value / p.value,
      better: lowerIsBetter ? "lower" : "higher",
    });
  }
  return out;
}

/** A markdown table: one line per (system, metric), then the ratios. */
export function formatTable(o) {
  const fmt = (v) => (Math.abs(v) >= 100 ? Math.round(v).toLocaleString("en-US") : Number(v.toPrecision(3)).toString());
  const lines = ["| system | metric | value | unit |", "|---|---|---:|---|"];
  for (const r of o.rows) lines.push(`| ${r.system} | ${r.metric} | ${fmt(r.value)} | ${r.unit} |`);
  if (o.ratios.length) {
    lines.push("", "| metric | system | peer | advantage (>1: system better) |", "|---|---|---|---:|");
    for (const q of o.ratios) lines.push(`| ${q.metric} | ${q.system} | ${q.peer} | ${q.ratio.toFixed(2)}x |`);
  }
  for (const n of o.notes) lines.push("", `note: ${n}`);
  return lines.join("\n");
}

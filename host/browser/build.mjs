// `npm run build:browser`: build/browser/pmstack.js, the browser bundle (ESM; docs/browser.md).
// esbuild bundles host/browser/index.ts for the browser with the Node-only modules swapped:
//   host/native.ts, host/store-node.ts, host/core-bytes.ts -> their versions in host/browser/
//   node:timers -> host/browser/timers.ts (setImmediate over a MessageChannel)
//   node:buffer, node:events, node:stream -> the npm packages buffer, events, readable-stream
//   process (readable-stream's) -> host/browser/process.ts (nextTick as a microtask)
// and the core's .wasm files embedded (binary loader). The build fails if anything Node-only
// is still in the bundle: esbuild refuses node: imports for the browser, and the check below
// refuses the swapped modules and the ones that load addons or files.
import { build } from "esbuild";
import { statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const host = join(root, "host");
const here = join(host, "browser");

/** Node-only modules of host/ and what the browser bundle has instead. */
const swapped = new Map([
  [join(host, "native.ts"), join(here, "native.ts")],
  [join(host, "store-node.ts"), join(here, "store-node.ts")],
  [join(host, "core-bytes.ts"), join(here, "core-bytes.ts")],
]);
/** Builtins and their stand-ins: a file here, or a package resolved from the project. */
const builtins = {
  "node:timers": join(here, "timers.ts"),
  "node:buffer": "buffer",
  "node:events": "events",
  "node:stream": "readable-stream",
  process: join(here, "process.ts"),
  "process/": join(here, "process.ts"),
};
/** Modules that must never be in the bundle (they reach node:fs, addons, node:tls). */
const forbidden = [
  ...swapped.keys(),
  join(host, "nic/native.ts"),
  join(host, "pcap.ts"),
  join(host, "secure.ts"),
  join(host, "apps/tls.ts"),
];

const browserSwap = {
  name: "pmstack-browser",
  setup(b) {
    b.onResolve({ filter: /^\.\.?\/.*\.js$/ }, (args) => {
      const ts = resolve(args.resolveDir, args.path.replace(/\.js$/, ".ts"));
      const to = swapped.get(ts);
      return to && args.importer !== to ? { path: to } : undefined;
    });
    b.onResolve({ filter: /^(node:(timers|buffer|events|stream)|process\/?)$/ }, async (args) => {
      const to = builtins[args.path];
      if (to.startsWith("/")) return { path: to };
      const r = await b.resolve(to, { kind: args.kind, resolveDir: root });
      if (r.errors.length) return { errors: r.errors };
      return { path: r.path };
    });
  },
};

const outfile = join(root, "build/browser/pmstack.js");
const result = await build({
  entryPoints: [join(here, "index.ts")],
  bundle: true,
  platform: "browser",
  format: "esm",
  target: ["es2022"],
  outfile,
  sourcemap: true,
  loader: { ".wasm": "binary" },
  plugins: [browserSwap],
  metafile: true,
  logLevel: "warning",
});

const inputs = Object.keys(result.metafile.inputs).map((p) => resolve(root, p));
const bad = inputs.filter((p) => forbidden.includes(p) || /^node:/.test(relative(root, p)));
if (bad.length) {
  console.error(
    `build:browser: Node-only modules in the browser bundle: ${bad.map((p) => relative(root, p)).join(", ")}`,
  );
  process.exit(1);
}
const kb = (statSync(outfile).size / 1024).toFixed(0);
console.log(`build:browser: ${relative(root, outfile)} (${kb} KiB, ${inputs.length} modules)`);

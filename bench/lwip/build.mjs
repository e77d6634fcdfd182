#!/usr/bin/env node
// Build the lwIP benchmark harness (bench/lwip/harness.c) against Debian's lwIP 2.1.3.
//
//   node bench/lwip/build.mjs                      compile into build/lwip-harness (native)
//   node bench/lwip/build.mjs --run [--seconds N]  compile, run, print the harness's JSON line
//   node bench/lwip/build.mjs --wasm [--run ...]   the same harness and lwIP's own sources
//                                                  compiled to Wasm (build/lwip-harness.wasm),
//                                                  run under node:wasi
//
// Plain Node ESM, no dependencies. Exit codes: 0 ok, 1 compile or run failure, 2 missing
// prerequisites (liblwip-dev, a C compiler, or for --wasm clang-19, lld-19 and wasi-libc), with
// the apt-get line to fix it.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const src = join(here, "harness.c");
const outDir = join(root, "build");
const out = join(outDir, "lwip-harness");

const argv = process.argv.slice(2);
const run = argv.includes("--run");
const wasm = argv.includes("--wasm");
const passArgs = argv.filter((a) => a !== "--run" && a !== "--wasm");

const log = (msg) => process.stderr.write(`lwip build: ${msg}\n`);

// Debian installs the headers under /usr/include/lwip (lwip/, netif/, arch/ and the lwipopts.h
// the library was compiled with) and the library as /usr/lib/<multiarch>/liblwip.so.
const INCLUDE_DIR = "/usr/include/lwip";
const needHeaders = ["lwipopts.h", "lwip/init.h", "lwip/tcp.h", "lwip/priv/tcp_priv.h", "netif/ethernet.h"];

function findLib() {
  for (const base of ["/usr/lib", "/usr/local/lib", "/lib"]) {
    if (existsSync(join(base, "liblwip.so"))) return join(base, "liblwip.so");
    let entries = [];
    try {
      entries = readdirSync(base, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      if (e.isDirectory() && existsSync(join(base, e.name, "liblwip.so"))) return join(base, e.name, "liblwip.so");
    }
  }
  return null;
}

const missing = needHeaders.filter((h) => !existsSync(join(INCLUDE_DIR, h)));
const lib = findLib();
if (missing.length || !lib) {
  log(
    `liblwip-dev is not installed (missing: ${[...missing.map((h) => join(INCLUDE_DIR, h)), ...(lib ? [] : ["liblwip.so"])].join(", ")}).`,
  );
  log("install it with:  apt-get install -y liblwip-dev");
  process.exit(2);
}

if (wasm) {
  const { buildWasm, runWasm } = await import("./wasm.mjs");
  const built = buildWasm({ root, outDir, harness: src, log });
  if (built !== 0) process.exit(built);
  if (run) process.exit(runWasm({ outDir, args: passArgs, log }));
  process.exit(0);
}

const cc = process.env.CC || "cc";
const probe = spawnSync(cc, ["--version"], { stdio: "ignore" });
if (probe.error || probe.status !== 0) {
  log(`no C compiler ("${cc}" not found). Install one with:  apt-get install -y build-essential`);
  process.exit(2);
}

mkdirSync(outDir, { recursive: true });
// Only Debian's include directory: the harness must see exactly the lwipopts.h the library was
// built with, or struct layouts (tcp_pcb, pbuf, netif) would not match the shared library.
const ccArgs = [
  "-O2",
  "-g",
  "-Wall",
  "-Wextra",
  "-std=gnu11",
  `-I${INCLUDE_DIR}`,
  src,
  "-o",
  out,
  `-L${dirname(lib)}`,
  "-llwip",
];
log(`${cc} ${ccArgs.map((a) => (a.startsWith(root) ? relative(root, a) || "." : a)).join(" ")}`);
const r = spawnSync(cc, ccArgs, { stdio: "inherit" });
if (r.error || r.status !== 0) {
  log("compile failed");
  process.exit(1);
}
log(`built ${relative(root, out)}`);

if (run) {
  // stderr (progress, diagnostics) passes through; stdout is the one JSON line.
  const h = spawnSync(out, passArgs, { stdio: ["ignore", "pipe", "inherit"], encoding: "utf8" });
  if (h.error || h.status !== 0) {
    log(`harness failed (${h.error ? h.error.message : `exit ${h.status ?? h.signal}`})`);
    if (h.stdout) process.stderr.write(h.stdout);
    process.exit(1);
  }
  const line = h.stdout.trim().split("\n").filter(Boolean).pop() ?? "";
  try {
    JSON.parse(line);
  } catch {
    log(`harness printed no JSON line: ${JSON.stringify(h.stdout)}`);
    process.exit(1);
  }
  process.stdout.write(line + "\n");
}

// The lwIP harness compiled to WebAssembly: harness.c and lwIP's own C sources (the Debian
// source package of the liblwip-dev installed here: same version, same patches, same
// lwipopts.h) built by clang for wasm32-wasi against wasi-libc, one module run under node:wasi.
// What it measures is lwIP's own code on the Wasm engine pmstack's core runs on: the same
// stack, app and wire as the native harness, every part of them compiled to Wasm, no host code
// between them.
//
// Used by build.mjs --wasm; run as a script (`node wasm.mjs --exec FILE ARGS...`) it
// instantiates FILE under node:wasi with ARGS, one module per process.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** Debian's packages that give the Wasm toolchain (clang 19's wasm32 target, its linker, wasi-libc and builtins). */
export const WASM_PACKAGES = ["clang-19", "lld-19", "wasi-libc", "libclang-rt-19-dev-wasm32"];
const CLANG = "clang-19";
const WASI_INCLUDE = "/usr/include/wasm32-wasi";
const WASI_LIB = "/usr/lib/wasm32-wasi";

/** lwIP's sources the raw-API harness links: the core (IPv4 and IPv6, as Debian's build), Ethernet. */
const LWIP_DIRS = ["src/core", "src/core/ipv4", "src/core/ipv6"];
const LWIP_FILES = ["src/netif/ethernet.c"];

const sh = (cmd, args, opts = {}) => spawnSync(cmd, args, { encoding: "utf8", ...opts });

/**
 * Fetches and unpacks Debian's source package of the installed liblwip-dev (its patches
 * applied) into `dir`, with apt-get source and a source list of its own (the machine's apt
 * configuration is not changed). Returns an error message, or null.
 */
function lwipSource(dir, log) {
  const version = sh("dpkg-query", ["-W", "-f=${Version}", "liblwip-dev"]).stdout?.trim();
  if (!version) return "liblwip-dev is not installed";
  const stamp = join(dir, ".version");
  if (existsSync(stamp) && readFileSync(stamp, "utf8") === version) return null;
  rmSync(dir, { recursive: true, force: true });
  const apt = join(dir, "apt");
  mkdirSync(join(apt, "lists", "partial"), { recursive: true });
  const list = join(apt, "sources.list");
  const suite = sh("sh", ["-c", ". /etc/os-release && echo $VERSION_CODENAME"]).stdout.trim() || "bookworm";
  spawnSync("sh", ["-c", `echo "deb-src http://deb.debian.org/debian ${suite} main" > ${list}`]);
  const o = [
    "-o",
    `Dir::Etc::SourceList=${list}`,
    "-o",
    "Dir::Etc::SourceParts=/dev/null",
    "-o",
    `Dir::State::Lists=${join(apt, "lists")}`,
  ];
  log(`fetching Debian's source of lwip ${version} (apt-get source, into ${dir})`);
  let r = sh("apt-get", [...o, "update", "-qq"], { stdio: ["ignore", "ignore", "pipe"] });
  if (r.status !== 0) return `apt-get update (deb-src): ${r.stderr?.trim().split("\n").pop()}`;
  r = sh("apt-get", [...o, "source", "-qq", `lwip=${version}`], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
  if (r.status !== 0) return `apt-get source lwip=${version}: ${r.stderr?.trim().split("\n").pop()}`;
  const tree = readdirSync(dir).find((d) => d.startsWith("lwip-") && statSync(join(dir, d)).isDirectory());
  if (!tree) return "apt-get source left no lwip-* directory";
  symlinkSync(tree, join(dir, "src"));
  spawnSync("sh", ["-c", `printf %s '${version}' > ${stamp}`]);
  return null;
}

/** Builds build/lwip-harness.wasm (again only if a source is newer). Returns 0, 1 or 2 as build.mjs exits. */
export function buildWasm({ root, outDir, harness, log }) {
  const missing = WASM_PACKAGES.filter(
    (p) => sh("dpkg-query", ["-W", "-f=${Status}", p]).stdout?.includes("ok installed") !== true,
  );
  if (missing.length) {
    log(`the Wasm build needs ${missing.join(", ")}; install with:  apt-get install -y ${missing.join(" ")}`);
    return 2;
  }
  const work = join(outDir, "lwip-wasm");
  const srcDir = join(work, "lwip");
  mkdirSync(work, { recursive: true });
  const err = lwipSource(srcDir, log);
  if (err) {
    log(`no lwIP source: ${err}`);
    return 1;
  }
  // a sysroot of wasi-libc alone: Debian keeps its headers and libraries in multiarch folders
  // beside glibc's, which must not be seen
  const sysroot = join(work, "sysroot");
  if (!existsSync(sysroot)) {
    mkdirSync(join(sysroot, "lib"), { recursive: true });
    symlinkSync(WASI_INCLUDE, join(sysroot, "include"));
    symlinkSync(WASI_LIB, join(sysroot, "lib", "wasm32-wasi"));
  }
  const lw = join(srcDir, "src");
  const sources = [
    ...LWIP_DIRS.flatMap((d) =>
      readdirSync(join(lw, d))
        .filter((f) => f.endsWith(".c"))
        .sort()
        .map((f) => join(lw, d, f)),
    ),
    ...LWIP_FILES.map((f) => join(lw, f)),
    join(here, "wasm-port.c"),
    harness,
  ];
  const out = join(outDir, "lwip-harness.wasm");
  const inputs = [...sources, join(here, "wasm.mjs"), join(here, "wasm-include", "net", "if.h")];
  if (existsSync(out) && inputs.every((f) => statSync(f).mtimeMs <= statSync(out).mtimeMs)) return 0;
  const args = [
    "--target=wasm32-wasi",
    `--sysroot=${sysroot}`,
    "-O2",
    "-std=gnu11",
    "-w", // lwIP's own sources, as Debian compiles them; the native build warns for harness.c
    "-I/usr/include/lwip", // the headers and lwipopts.h liblwip.so was built with
    `-I${join(here, "wasm-include")}`,
    ...sources,
    "-o",
    out,
  ];
  log(
    `${CLANG} --target=wasm32-wasi -O2 (${sources.length} files: lwIP's core, ipv4, ipv6, ethernet; wasm-port.c; harness.c)`,
  );
  const r = spawnSync(CLANG, args, { stdio: "inherit" });
  if (r.error || r.status !== 0) {
    log("Wasm compile failed");
    return 1;
  }
  log(`built ${relative(root, out)}`);
  return 0;
}

/** Runs build/lwip-harness.wasm in a child process; prints its JSON line as build.mjs --run does. Returns the exit code. */
export function runWasm({ outDir, args, log }) {
  const file = join(outDir, "lwip-harness.wasm");
  const h = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--exec", file, ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  });
  if (h.error || h.status !== 0) {
    log(`Wasm harness failed (${h.error ? h.error.message : `exit ${h.status ?? h.signal}`})`);
    if (h.stdout) process.stderr.write(h.stdout);
    return 1;
  }
  const line = h.stdout.trim().split("\n").filter(Boolean).pop() ?? "";
  let j;
  try {
    j = JSON.parse(line);
  } catch {
    log(`Wasm harness printed no JSON line: ${JSON.stringify(h.stdout)}`);
    return 1;
  }
  j.system = "lwip-wasm";
  process.stdout.write(JSON.stringify(j) + "\n");
  return 0;
}

if (process.argv[2] === "--exec") {
  const { WASI } = await import("node:wasi");
  const [, , , file, ...rest] = process.argv;
  const wasi = new WASI({ version: "preview1", args: ["lwip-harness.wasm", ...rest], env: {}, returnOnExit: true });
  const mod = await WebAssembly.compile(readFileSync(file));
  const inst = await WebAssembly.instantiate(mod, wasi.getImportObject());
  process.exitCode = wasi.start(inst);
}

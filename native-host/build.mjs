// Builds the Node-API addons offline with the node-gyp that npm bundles, then copies them to
// build/pmstack_native.node and build/pmstack_nic.node. Usage: node native-host/build.mjs
// It never downloads headers: it uses Node's own (<prefix>/include/node) or npm_config_nodedir.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");

function fail(msg) {
  console.error(`native-host/build.mjs: ${msg}`);
  process.exit(1);
}

const hasHeaders = (dir) => !!dir && fs.existsSync(path.join(dir, "include/node/node_api.h"));

function nodeDir() {
  const own = path.resolve(process.execPath, "../..");
  if (hasHeaders(own)) return own;
  const env = process.env.npm_config_nodedir;
  if (hasHeaders(env)) return env;
  fail(
    `cannot find Node's headers: no include/node/node_api.h under ${own}` +
      (env ? ` nor under npm_config_nodedir=${env}` : " and npm_config_nodedir is not set") +
      ". Install Node with its headers or set npm_config_nodedir; this build never downloads them.",
  );
}

function nodeGyp() {
  const tried = [];
  if (process.env.npm_config_node_gyp) tried.push(process.env.npm_config_node_gyp);
  if (process.env.npm_execpath)
    tried.push(path.resolve(path.dirname(process.env.npm_execpath), "../node_modules/node-gyp/bin/node-gyp.js"));
  try {
    const npmRoot = execFileSync("npm", ["root", "-g"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    }).trim();
    tried.push(path.join(npmRoot, "npm/node_modules/node-gyp/bin/node-gyp.js"));
  } catch {
    // npm not on PATH: only the environment candidates remain.
  }
  const found = tried.find((p) => fs.existsSync(p));
  if (!found) fail(`cannot find npm's bundled node-gyp; looked at: ${tried.join(", ") || "(nothing: npm not found)"}`);
  return found;
}

const gyp = nodeGyp();
const nodedir = nodeDir();
const r = spawnSync(process.execPath, [gyp, "rebuild", `--nodedir=${nodedir}`], { cwd: here, stdio: "inherit" });
if (r.error) fail(`cannot run ${gyp}: ${r.error.message}`);
if (r.status !== 0) fail(`node-gyp failed (exit ${r.status ?? r.signal})`);

for (const name of ["pmstack_native", "pmstack_nic"]) {
  const built = path.join(here, `build/Release/${name}.node`);
  const out = path.join(root, `build/${name}.node`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.copyFileSync(built, out);
  console.log(`native-host/build.mjs: built ${path.relative(root, out)}`);
}

// The browser half of test/browser.test.mjs, run inside a network namespace of its own
// (`unshare --net`: only a loopback device, nothing routes out of it). It brings up that
// loopback, serves build/browser/ and test/browser/ on 127.0.0.1 (a secure context: OPFS works),
// starts headless Chromium through puppeteer-core over a pipe (no debugging port), runs one
// scenario on the test page, prints "RESULT <json>" and closes everything it started.
// Usage: node browser-run.mjs <main|net|opfs> <scratch dir>   (under unshare --net, as root)
// The browser's profile goes to <scratch dir>/profile; the opfs scenario uploads the pool file
// it wrote in OPFS to <scratch dir>/opfs-export.pm, for the test to open with the file adapter,
// and copies the files the test left in <scratch dir>/import/ (a pool Node wrote) into OPFS.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

const CHROMIUM = process.env.PMSTACK_CHROMIUM ?? "/usr/bin/chromium";
const root = fileURLToPath(new URL("../../", import.meta.url));
const [scenario, scratch] = process.argv.slice(2);

/** The network devices of this process's namespace (/proc/self/net/dev is per namespace). */
function devices() {
  return readFileSync("/proc/self/net/dev", "utf8")
    .split("\n")
    .slice(2)
    .map((l) => l.split(":")[0].trim())
    .filter(Boolean);
}

/**
 * Serves /build/* from build/browser/, /test/* from test/browser/ and /import/* from
 * <scratch>/import/, and takes one upload: POST /export, the body written to
 * <scratch>/opfs-export.pm. Nothing else.
 */
function serve() {
  const roots = {
    "/build/": join(root, "build/browser"),
    "/test/": join(root, "test/browser"),
    "/import/": join(scratch, "import"),
  };
  const types = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".map": "application/json",
    ".pm": "application/octet-stream",
    ".journal": "application/octet-stream",
  };
  const requests = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url, "http://127.0.0.1");
    requests.push(url.pathname);
    if (req.method === "POST" && url.pathname === "/export") {
      const parts = [];
      req.on("data", (d) => parts.push(d));
      req.on("end", () => {
        writeFileSync(join(scratch, "opfs-export.pm"), Buffer.concat(parts));
        res.writeHead(204).end();
      });
      return;
    }
    const prefix = Object.keys(roots).find((p) => url.pathname.startsWith(p));
    const rel = prefix && normalize(url.pathname.slice(prefix.length));
    const file = rel && !rel.startsWith("..") ? join(roots[prefix], rel) : null;
    if (!file || !existsSync(file) || !types[extname(file)]) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      "content-type": types[extname(file)],
      "cache-control": "no-store",
      // cross-origin isolated: SharedArrayBuffer, so pools in a shared memory work too
      "cross-origin-opener-policy": "same-origin",
      "cross-origin-embedder-policy": "require-corp",
    });
    res.end(readFileSync(file));
  });
  return new Promise((resolve, reject) => {
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => resolve({ server, port: server.address().port, requests }));
  });
}

async function main() {
  if (!["main", "net", "opfs"].includes(scenario) || !scratch)
    throw new Error("usage: browser-run.mjs <main|net|opfs> <scratch dir>");
  // refuse to run anywhere but in a namespace of our own: the loopback and nothing else
  const devs = devices();
  if (devs.length !== 1 || devs[0] !== "lo")
    throw new Error(`not in a private network namespace (devices: ${devs.join(", ")}): run under unshare --net`);
  execFileSync("ip", ["link", "set", "lo", "up"]);
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (.ci/deps)`);

  const { server, port, requests } = await serve();
  const origin = `http://127.0.0.1:${port}`;
  let browser = null;
  const stop = () => {
    const pid = browser?.process()?.pid;
    if (pid) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    process.exit(1);
  };
  process.once("SIGTERM", stop);
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      pipe: true,
      userDataDir: mkdirSync(join(scratch, "profile"), { recursive: true }) ?? join(scratch, "profile"),
      args: [
        ...(process.getuid?.() === 0 ? ["--no-sandbox"] : []),
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
      ],
    });
    const page = await browser.newPage();
    const logs = [];
    page.on("console", (m) => logs.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => logs.push(`pageerror: ${e.message}`));
    const load = async () => {
      await page.goto(`${origin}/test/index.html`);
      await page.waitForFunction(() => window.ready === true);
    };
    await load();
    const t0 = performance.now();
    let result;
    if (scenario === "main")
      result = {
        page: await page.evaluate(() => window.mainThread()),
        edges: await page.evaluate(() => window.run("opfsEdges", { dir: "pmstack-test/edges" })),
      };
    else if (scenario === "net") result = await page.evaluate(() => window.run("net", { total: 64 << 20 }));
    else {
      const where = { dir: "pmstack-test/pools", name: "paste.pm" };
      // the first page keeps the pool open in its worker: the reload ends them without a close
      const kept = await page.evaluate((w) => window.run("opfsKeep", { ...w, len: 5000 }, { keepAlive: true }), where);
      await page.reload();
      await page.waitForFunction(() => window.ready === true);
      const recovered = await page.evaluate((w) => window.run("opfsRecover", w), where);
      // the pool file as OPFS holds it, for the test to open through the file adapter
      const exported = await page.evaluate((w) => window.exportOpfs(w), where);
      // a pool Node wrote (mmap adapter, journal mode), put into OPFS with its journal
      const imp = { dir: "pmstack-test/imported", name: "node.pm" };
      await page.evaluate((w) => window.importOpfs({ dir: w.dir, names: [w.name, w.name + ".journal"] }), imp);
      const imported = await page.evaluate((w) => window.run("opfsImported", w), imp);
      result = { kept, recovered, exported, imported };
    }
    const outside = requests.filter((p) => !/^\/(build|test|import)\//.test(p) && p !== "/export");
    console.log(
      "RESULT " +
        JSON.stringify({ result, ms: Math.round(performance.now() - t0), requests: requests.length, outside, logs }),
    );
  } finally {
    if (browser) {
      const pid = browser.process()?.pid;
      await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]);
      if (pid) {
        try {
          process.kill(pid, 0);
          process.kill(pid, "SIGKILL"); // still there after 5 s
        } catch {
          // gone, as it should be
        }
      }
    }
    server.close();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`browser-run (${scenario}): ${e?.stack ?? e}`);
    process.exit(1);
  },
);

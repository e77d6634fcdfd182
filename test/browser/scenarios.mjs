// The browser test's scenarios (test/browser.test.mjs): each takes the pmstack module (the
// browser bundle in a Worker; build/index.js when run under Node to compare) and returns a
// plain object for the test to check. No DOM here: they run in a Worker.

/** Deterministic bytes: xorshift32 from `seed`, 4 bytes per step. */
export function pattern(n, seed) {
  const out = new Uint8Array(n);
  const w = new Uint32Array(out.buffer, 0, n >>> 2);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < w.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    w[i] = x >>> 0;
  }
  for (let i = w.length * 4; i < n; i++) out[i] = i & 0xff;
  return out;
}

export async function sha256(bytes) {
  const d = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Two stacks in one MemoryPair, Node-style sockets over them: the client writes `total` bytes
 * (with backpressure) and ends; the server gathers every byte it reads, hashes them, and
 * answers with the hash and the count; the client reads the answer to its end.
 */
export async function net(pm, { total = 64 << 20, chunk = 64 << 10 } = {}) {
  const data = pattern(total, 0x9e3779b9);
  const sent = await sha256(data);
  const pair = pm.MemoryPair.create({ buffers: 4096 });
  const { a, b } = pm.createMemoryNet(pair);
  const t0 = performance.now();
  try {
    const served = new Promise((resolve, reject) => {
      const srv = b.createServer({ allowHalfOpen: true }, (sock) => {
        const got = new Uint8Array(total);
        let n = 0;
        let overflow = 0;
        sock.on("data", (c) => {
          if (n + c.length > total) overflow += c.length;
          else got.set(c, n);
          n += c.length;
        });
        sock.on("end", async () => {
          try {
            const hash = await sha256(got.subarray(0, Math.min(n, total)));
            sock.end(JSON.stringify({ bytes: n, overflow, hash }));
            resolve();
          } catch (e) {
            reject(e);
          }
        });
        sock.on("error", reject);
      });
      srv.listen(9000);
    });
    const answer = await new Promise((resolve, reject) => {
      const sock = a.connect({ host: "198.18.0.2", port: 9000, allowHalfOpen: true });
      const parts = [];
      sock.on("data", (c) => parts.push(new TextDecoder().decode(c)));
      sock.on("end", () => resolve(JSON.parse(parts.join(""))));
      sock.on("error", reject);
      sock.on("connect", async () => {
        try {
          for (let at = 0; at < total; at += chunk) {
            if (!sock.write(data.subarray(at, Math.min(total, at + chunk))))
              await new Promise((r) => sock.once("drain", r));
          }
          sock.end();
        } catch (e) {
          reject(e);
        }
      });
    });
    await served;
    const ms = performance.now() - t0;
    return {
      bytes: answer.bytes,
      overflow: answer.overflow,
      sent,
      got: answer.hash,
      ms: Math.round(ms),
      mibPerS: Math.round((total / (1 << 20) / ms) * 1000),
      stats: { a: { ...a.stats }, b: { ...b.stats } },
    };
  } finally {
    a.close();
    b.close();
    pair.shutdown();
  }
}

/**
 * Opens the OPFS directory, waiting (up to 5 s) while a worker of the page before a reload still
 * holds its files. Returns it and how many times it waited.
 */
async function openDir(pm, dir, names) {
  for (let waits = 0; ; waits++) {
    try {
      return { opfs: await pm.openOpfs(dir, names), waits };
    } catch (e) {
      if (e.code !== "ELOCKED" || waits >= 100) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const VALUE_KEY = "greeting";

/**
 * A PASTE server (the batch API) on a stack whose pool is `name` in OPFS directory `dir`, with a
 * PmLog in it: a client sends `len` bytes and ends; the server keeps every chunk, and at the
 * client's FIN appends one record naming them all (committed at the end of the turn: durable in
 * OPFS), replies "stored <n>" and closes. Returns what was sent (its hash) and what the pool is.
 * The pool and the directory are left open: the page reloads with them open.
 */
export async function opfsKeep(pm, { dir, name, len }) {
  const value = pattern(len, 0x2545f491);
  const { opfs } = await openDir(pm, dir, [name]);
  const a = pm.Stack.create({ mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24", pool: { buffers: 256 } });
  const b = pm.Stack.create({
    mac: "02:00:00:00:00:0b",
    ip: "198.18.0.2/24",
    pool: { path: name, buffers: 1024, opfs },
    configure: pm.PmLog.configure,
  });
  const log = pm.PmLog.open(b.pool);
  const pair = new pm.MemoryPair(a, b);
  const kept = new Map(); // conn -> names kept
  const srv = new pm.PasteServer(
    pair.b,
    (batch) => {
      for (const c of batch.chunks) {
        if (!kept.has(c.conn)) kept.set(c.conn, []);
        kept.get(c.conn).push(batch.keep(c));
      }
      for (const conn of batch.ended) {
        const names = kept.get(conn) ?? [];
        batch.append(VALUE_KEY, names);
        batch.reply(conn, `stored ${names.reduce((n, x) => n + x.length, 0)}`);
        batch.close(conn);
      }
    },
    { log },
  );
  srv.listen(7);
  let reply = "";
  let closed = false;
  const cli = new pm.PasteServer(pair.a, (batch) => {
    for (const c of batch.connected) {
      batch.reply(c.conn, value);
      batch.close(c.conn);
    }
    for (const c of batch.chunks) reply += new TextDecoder().decode(c.view);
    if (batch.closed.length) closed = true;
  });
  cli.connect("198.18.0.2", 7);
  if (!pair.runUntil(() => closed)) throw new Error(`the exchange did not finish (reply so far: ${reply})`);
  const names = log.get(VALUE_KEY);
  return {
    reply,
    sent: await sha256(value),
    len,
    chunks: names?.length ?? 0,
    durable: log.durableSeq === log.lastSeq,
    created: log.recovery.formatted,
    persistence: b.pool.persistence,
    persistMode: b.pool.persistMode,
    durability: b.pool.durability,
    medium: b.pool.medium,
    describe: b.pool.describe(),
    syncCalls: b.pool.stats.syncCalls,
  };
}

/**
 * After the reload: reopens the pool and its log from OPFS (PmLog.openFile: the OPFS adapter
 * through the pool options), reads the value back and hashes it; checks the adapter's refusals
 * while the pool is open (another open of the file, a name not pre-opened, a second pool on the
 * same file); closes the pool and the directory, and opens them once more.
 */
export async function opfsRecover(pm, { dir, name }) {
  const { opfs, waits } = await openDir(pm, dir, [name]);
  const log = pm.PmLog.openFile(name, { buffers: 1024, opfs });
  const views = log.views(VALUE_KEY);
  const bytes = new Uint8Array(views ? views.reduce((n, v) => n + v.length, 0) : 0);
  let at = 0;
  for (const v of views ?? []) {
    bytes.set(v, at);
    at += v.length;
  }
  const codeOf = async (fn) => {
    try {
      await fn();
      return "no error";
    } catch (e) {
      return e.code ?? String(e);
    }
  };
  const refusals = {
    lockedElsewhere: await codeOf(() => pm.openOpfs(dir, [name])),
    notPreOpened: await codeOf(() => pm.Pool.open("other.pm", { opfs })),
    secondPool: await codeOf(() => pm.Pool.open(name, { opfs })),
    fileInBrowser: await codeOf(() => pm.Pool.open("x.pm", { persistence: "file" })),
    mmapInBrowser: await codeOf(() => pm.Pool.open("x.pm", { persistence: "mmap" })),
    closeWhileOpen: await codeOf(() => opfs.close()),
  };
  const out = {
    waits,
    got: await sha256(bytes),
    len: bytes.length,
    keys: log.size,
    recovered: { ...log.recovery },
    persistence: log.pool.persistence,
    medium: log.pool.medium,
    check: log.pool.check(),
    refusals,
  };
  log.pool.close();
  opfs.close();
  // released: the same worker opens it again (and a reader sees the same value)
  const again = await pm.openOpfs(dir, [name]);
  const log2 = pm.PmLog.openFile(name, { buffers: 1024, opfs: again });
  out.reopenedKeys = log2.size;
  log2.pool.close();
  again.close();
  return out;
}

/**
 * The OPFS adapter's edges, in a directory of their own: bad names; a create cut short (a file
 * whose superblock is zeros) counts as absent and is created over, a damaged superblock is
 * refused; the option checks; growing a pool; a pool in a shared memory (a SharedArrayBuffer:
 * the page is cross-origin isolated) written, reopened and read back.
 */
export async function opfsEdges(pm, { dir }) {
  const codeOf = async (fn) => {
    try {
      await fn();
      return "no error";
    } catch (e) {
      return e.code ?? e.name;
    }
  };
  const out = {};
  out.names = {
    none: await codeOf(() => pm.openOpfs(dir, [])),
    slash: await codeOf(() => pm.openOpfs(dir, ["a/b.pm"])),
    journal: await codeOf(() => pm.openOpfs(dir, ["a.pm.journal"])),
    twice: await codeOf(() => pm.openOpfs(dir, ["a.pm", "a.pm"])),
  };
  // files as a create cut short and a damaged pool leave them, written through OPFS directly
  let d = await navigator.storage.getDirectory();
  for (const part of dir.split("/")) d = await d.getDirectoryHandle(part, { create: true });
  const write = async (name, bytes) => {
    const h = await (await d.getFileHandle(name, { create: true })).createSyncAccessHandle();
    h.truncate(0);
    h.write(bytes, { at: 0 });
    h.flush();
    h.close();
  };
  await write("cut.pm", new Uint8Array(64 << 10));
  const damaged = new Uint8Array(64 << 10);
  damaged.set([0x50, 0x4d, 0x53, 0x54, 1, 2, 3, 4], 0);
  await write("damaged.pm", damaged);

  const opfs = await pm.openOpfs(dir, ["cut.pm", "damaged.pm", "grow.pm", "shared.pm"]);
  out.cutExists = opfs.exists("cut.pm");
  const cut = pm.Pool.openOrCreate("cut.pm", { buffers: 8, opfs });
  out.cutCreated = { buffers: cut.bufferCount, persistence: cut.persistence };
  cut.close();
  out.damaged = await codeOf(() => pm.Pool.open("damaged.pm", { opfs }));
  out.options = {
    journalMode: await codeOf(() => pm.Pool.create("grow.pm", { buffers: 8, opfs, mode: "journal" })),
    mmapWithOpfs: await codeOf(() => pm.Pool.create("grow.pm", { buffers: 8, opfs, persistence: "mmap" })),
    opfsWithout: await codeOf(() => pm.Pool.create("grow.pm", { buffers: 8, persistence: "opfs" })),
    notADirectory: await codeOf(() => pm.Pool.create("grow.pm", { buffers: 8, opfs: {} })),
  };
  const small = pm.Pool.create("grow.pm", { buffers: 8, opfs, persistence: "opfs", mode: "strict" });
  out.strict = small.persistMode;
  small.close();
  const grown = pm.Pool.open("grow.pm", { opfs, growTo: 24 });
  out.grown = grown.bufferCount;
  grown.close();
  const again = pm.Pool.open("grow.pm", { opfs });
  out.grownAgain = again.bufferCount;
  out.whileOpen = await codeOf(() => pm.Pool.open("grow.pm", { opfs }));
  again.close();

  // a shared memory: the file is read into, and persisted from, a SharedArrayBuffer
  const value = pattern(3000, 7);
  let log = pm.PmLog.openFile("shared.pm", { buffers: 16, opfs, shared: true });
  out.sharedMemory = log.pool.core.memory.buffer instanceof SharedArrayBuffer;
  const i = log.pool.alloc();
  log.pool.view(i, 0, 2000).set(value.subarray(0, 2000));
  const j = log.pool.alloc();
  log.pool.view(j, 0, 1000).set(value.subarray(2000));
  log.append("v", [log.pool.name(i, 0, 2000), log.pool.name(j, 0, 1000)]);
  log.pool.free(i);
  log.pool.free(j);
  log.commit();
  log.pool.close();
  log = pm.PmLog.openFile("shared.pm", { buffers: 16, opfs, shared: true });
  const back = log.views("v");
  out.sharedReadBack =
    back?.length === 2 && (await sha256(new Uint8Array([...back[0], ...back[1]]))) === (await sha256(value));
  log.pool.close();
  opfs.close();
  out.closedOpen = await codeOf(() => pm.Pool.open("grow.pm", { opfs }));
  return out;
}

/**
 * A pool Node wrote with the mmap adapter in journal mode, copied into OPFS with its journal:
 * opened through the OPFS adapter (its journal pre-opened and replayed), the value read back.
 */
export async function opfsImported(pm, { dir, name }) {
  const opfs = await pm.openOpfs(dir, [name]);
  const log = pm.PmLog.openFile(name, { buffers: 64, opfs });
  const views = log.views("from-node") ?? [];
  const bytes = new Uint8Array(views.reduce((n, v) => n + v.length, 0));
  let at = 0;
  for (const v of views) {
    bytes.set(v, at);
    at += v.length;
  }
  const out = {
    got: await sha256(bytes),
    len: bytes.length,
    journal: log.pool.journal && { path: log.pool.journal.path, entries: log.pool.journal.replay.entries },
    persistence: log.pool.persistence,
  };
  log.pool.close();
  opfs.close();
  return out;
}

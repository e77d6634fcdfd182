// Tests for the Node-API addon (native-host/pm.c). Build first: node native-host/build.mjs
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import fs from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const addonPath = fileURLToPath(new URL("../build/pmstack_native.node", import.meta.url));
const pm = createRequire(import.meta.url)(addonPath);

const MiB = 1 << 20;
const OFF = 65536; // where files are mapped in the memories
const places = [
  { kind: "tmpfs", dir: fs.mkdtempSync("/dev/shm/pmstack-native-") },
  { kind: "disk", dir: fs.mkdtempSync(path.join(os.tmpdir(), "pmstack-native-")) },
];
let seq = 0;
const fresh = (dir) => path.join(dir, `pool-${seq++}.pm`);
const headerOf = (n, seed) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 255);
const leftovers = (dir) => fs.readdirSync(dir).filter((n) => n.includes(".tmp."));

/** Runs fn, expects it to throw an error with this code (and message matching re). */
function throwsCode(fn, code, re) {
  let err;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err, `expected an error with code ${code}`);
  assert.is(err.code, code, `code of: ${err.message}`);
  if (re) assert.match(err.message, re);
  return err;
}

/** A node child running `code` (CommonJS, `pm` and `argv` defined); resolves once it prints "ready". */
function child(code, ...args) {
  const src = `const pm = require(${JSON.stringify(addonPath)}); const argv = process.argv.slice(1);\n${code}`;
  const p = spawn(process.execPath, ["-e", src, ...args], { stdio: ["pipe", "pipe", "inherit"] });
  const exited = new Promise((resolve) => p.on("exit", (code, signal) => resolve({ code, signal })));
  const ready = new Promise((resolve, reject) => {
    let out = "";
    p.stdout.on("data", (d) => {
      out += d;
      if (out.includes("ready")) resolve();
    });
    exited.then((r) => reject(new Error(`child exited early: ${JSON.stringify(r)} ${out}`)));
  });
  return { p, ready, exited };
}

function mapFile(file, memory, mode = "auto") {
  const f = pm.open(file);
  const m = pm.map(memory, new Uint8Array(memory.buffer), OFF, f.fd, f.size, mode);
  return { f, m };
}

test.after(() => {
  for (const { dir } of places) fs.rmSync(dir, { recursive: true, force: true });
});

test("cpuFeatures reports booleans", () => {
  const c = pm.cpuFeatures();
  assert.equal(Object.keys(c).sort(), ["clflush", "clflushopt", "clwb"]);
  for (const v of Object.values(c)) assert.type(v, "boolean");
});

for (const { kind, dir } of places) {
  test(`${kind}: create, then reopen and read the header`, () => {
    const file = fresh(dir);
    const hdr = headerOf(100, 1);
    const c = pm.create(file, MiB, hdr);
    assert.type(c.fd, "number");
    assert.is(c.size, MiB);
    assert.type(c.medium, "string");
    if (kind === "tmpfs") assert.is(c.medium, "tmpfs");
    assert.type(c.dax, "boolean");
    assert.equal(leftovers(dir), []);
    assert.is(fs.statSync(file).size, MiB);
    pm.close(c.fd);

    const o = pm.open(file);
    assert.is(o.size, MiB);
    assert.is(o.medium, c.medium);
    const got = new Uint8Array(200);
    assert.is(pm.pread(o.fd, got, 0), 200);
    assert.equal(got.subarray(0, 100), hdr);
    assert.equal(got.subarray(100), new Uint8Array(100));
    assert.is(pm.pread(o.fd, got, MiB - 50), 50, "short read at EOF");
    pm.close(o.fd);
  });

  test(`${kind}: create over an existing file fails with EEXIST and leaves it untouched`, () => {
    const file = fresh(dir);
    pm.close(pm.create(file, 2 * 4096, headerOf(64, 2)).fd);
    const before = fs.readFileSync(file);
    const e = throwsCode(() => pm.create(file, 4 * 4096, headerOf(64, 3)), "EEXIST", /already exists/);
    assert.ok(e.message.includes(file), e.message);
    assert.equal(fs.readFileSync(file), before);
    assert.equal(leftovers(dir), []);
  });

  test(`${kind}: bad or impossible sizes leave nothing on disk`, () => {
    const file = fresh(dir);
    throwsCode(() => pm.create(file, 1000, new Uint8Array(0)), "EINVAL", /multiple of 4096/);
    throwsCode(() => pm.create(file, 0, new Uint8Array(0)), "EINVAL");
    throwsCode(() => pm.create(file, 4096, new Uint8Array(5000)), "EINVAL", /header/);
    const e = throwsCode(() => pm.create(file, 2 ** 45, new Uint8Array(0)), kind === "tmpfs" ? "ENOSPC" : "EFBIG");
    assert.ok(e.message.includes(file), e.message);
    assert.not.ok(fs.existsSync(file));
    assert.equal(leftovers(dir), []);
    assert.throws(
      () => pm.create(file, "4096", new Uint8Array(0)),
      (err) => err instanceof TypeError,
    );
    assert.throws(
      () => pm.create(file, 4096, [1, 2]),
      (err) => err instanceof TypeError,
    );
  });

  test(`${kind}: a second open in the same process conflicts (flock per open file)`, () => {
    const file = fresh(dir);
    const c = pm.create(file, 4096, new Uint8Array(0));
    const e = throwsCode(() => pm.open(file), "EWOULDBLOCK", /locked by another process/);
    assert.ok(e.message.includes(file), e.message);
    pm.close(c.fd);
    pm.close(pm.open(file).fd);
  });

  test(`${kind}: a mapping keeps the lock after its fd is closed, until unmap`, () => {
    const file = fresh(dir);
    const c = pm.create(file, 65536, new Uint8Array(0));
    const memory = new WebAssembly.Memory({ initial: 4 });
    const m = pm.map(memory, new Uint8Array(memory.buffer), OFF, c.fd, 65536, "auto");
    pm.close(c.fd);
    throwsCode(() => pm.open(file), "EWOULDBLOCK");
    pm.unmap(m.handle);
    pm.close(pm.open(file).fd);
  });

  test(`${kind}: open of a file locked by another process fails with EWOULDBLOCK`, async () => {
    const file = fresh(dir);
    pm.close(pm.create(file, 4096, new Uint8Array(0)).fd);
    const c = child(`pm.open(argv[0]); console.log("ready"); process.stdin.on("data", () => {});`, file);
    await c.ready;
    throwsCode(() => pm.open(file), "EWOULDBLOCK", /cannot lock .* locked by another process/);
    c.p.kill("SIGKILL");
    await c.exited;
    pm.close(pm.open(file).fd); // the lock died with the process
  });

  test(`${kind}: missing files and directories`, () => {
    const e = throwsCode(() => pm.open(path.join(dir, "missing.pm")), "ENOENT", /no such file/);
    assert.ok(e.message.includes("missing.pm"));
    throwsCode(() => pm.open(dir), "EISDIR", /directory/);
    throwsCode(() => pm.create(path.join(dir, "no/such/dir.pm"), 4096, new Uint8Array(0)), "ENOENT");
  });

  for (const shared of [false, true]) {
    const kindMem = shared ? "shared" : "non-shared";
    test(`${kind}: map into a ${kindMem} memory, write, persist, unmap, read back`, () => {
      const file = fresh(dir);
      pm.close(pm.create(file, MiB, headerOf(16, 4)).fd);
      const memory = shared
        ? new WebAssembly.Memory({ initial: 64, maximum: 1024, shared: true })
        : new WebAssembly.Memory({ initial: 64 });
      const { f, m } = mapFile(file, memory);
      assert.type(m.handle, "object");
      assert.type(m.dax, "boolean");
      if (!m.dax) assert.is(m.persistMode, "msync");
      let view = new Uint8Array(memory.buffer);
      assert.equal(view.subarray(OFF, OFF + 16), headerOf(16, 4), "file bytes appear in the memory");
      view.set(headerOf(300, 5), OFF + 4000);
      pm.persist(m.handle, OFF + 4000, 300);

      memory.grow(2);
      view = new Uint8Array(memory.buffer);
      assert.equal(view.subarray(OFF + 4000, OFF + 4300), headerOf(300, 5), "still mapped after grow");
      view[OFF + MiB - 1] = 0xab;
      pm.persist(m.handle, OFF + MiB - 1, 1);

      pm.unmap(m.handle);
      pm.unmap(m.handle); // idempotent
      assert.is(view[OFF + 4000], 0, "fresh zero pages after unmap");
      view[OFF + 4000] = 1; // still writable memory
      throwsCode(() => pm.persist(m.handle, OFF, 1), "EBADF", /mapping is closed/);
      pm.close(f.fd);

      const bytes = fs.readFileSync(file);
      assert.equal(new Uint8Array(bytes.subarray(4000, 4300)), headerOf(300, 5));
      assert.is(bytes[MiB - 1], 0xab);
    });
  }

  test(`${kind}: map argument checks`, () => {
    const file = fresh(dir);
    const c = pm.create(file, 64 * 1024, new Uint8Array(0));
    const memory = new WebAssembly.Memory({ initial: 4 });
    const view = new Uint8Array(memory.buffer);
    const other = new Uint8Array(new WebAssembly.Memory({ initial: 4 }).buffer);
    throwsCode(() => pm.map(memory, other, OFF, c.fd, 4096, "auto"), "EINVAL", /memory\.buffer/);
    throwsCode(() => pm.map(memory, view.subarray(4096), 0, c.fd, 4096, "auto"), "EINVAL");
    throwsCode(() => pm.map(memory, view, 100, c.fd, 4096, "auto"), "EINVAL", /multiples of 4096/);
    throwsCode(() => pm.map(memory, view, 0, c.fd, 128 * 1024, "auto"), "EINVAL", /larger than the file/);
    throwsCode(() => pm.map(memory, view, 4 * 65536 - 4096, c.fd, 8192, "auto"), "EINVAL", /does not fit/);
    throwsCode(() => pm.map(memory, view, 0, c.fd, 4096, "fast"), "EINVAL", /mode must be/);
    throwsCode(() => pm.map({ buffer: memory.buffer }, view, 0, c.fd, 4096, "auto"), "ERR_INVALID_ARG_TYPE");
    const fake = Object.create(memory, { buffer: { value: memory.buffer } });
    throwsCode(() => pm.map(fake, view, 0, c.fd, 4096, "auto"), "ERR_INVALID_ARG_TYPE");
    throwsCode(() => pm.map(memory, view, 0, 1e6, 4096, "auto"), "EBADF");
    for (const bad of [undefined, null, 1, {}, "x"]) throwsCode(() => pm.persist(bad, 0, 0), "ERR_INVALID_ARG_TYPE");
    pm.close(c.fd);
  });

  test(`${kind}: persist and persistBatch validate ranges before flushing`, () => {
    const file = fresh(dir);
    pm.close(pm.create(file, MiB, new Uint8Array(0)).fd);
    const memory = new WebAssembly.Memory({ initial: 64 });
    const { f, m } = mapFile(file, memory, "msync");
    assert.is(m.persistMode, "msync");
    const h = m.handle;
    throwsCode(() => pm.persist(h, OFF - 1, 1), "EINVAL", /outside the mapping/);
    throwsCode(() => pm.persist(h, OFF + MiB - 10, 11), "EINVAL");
    throwsCode(() => pm.persist(h, 2 ** 40, 1), "EINVAL");
    throwsCode(() => pm.persist(h, -1, 1), "EINVAL");
    throwsCode(() => pm.persist(h, 1.5, 1), "EINVAL");
    pm.persist(h, OFF + MiB, 0); // empty range at the end is fine

    // A bad range anywhere fails the whole call.
    const bad = new Uint32Array([OFF, 10, OFF + MiB, 1, OFF, 20]);
    throwsCode(() => pm.persistBatch(h, bad, 3), "EINVAL", /outside the mapping/);
    throwsCode(() => pm.persistBatch(h, bad, 4), "EINVAL", /needs 8 entries/);
    throwsCode(() => pm.persistBatch(h, [OFF, 1], 1), "ERR_INVALID_ARG_TYPE");
    throwsCode(() => pm.persistBatch(h, new Int32Array(2), 1), "ERR_INVALID_ARG_TYPE");
    assert.is(pm.persistBatch(h, bad, 1), 1, "the good prefix alone is fine");

    // Adjacent and overlapping pages merge into one msync; a distant range needs its own.
    const ranges = new Uint32Array([OFF + 8192, 5, OFF + 100, 10, OFF + 4096, 4096, OFF + 5000, 100, OFF + 65536, 1]);
    assert.is(pm.persistBatch(h, ranges, 4), 1);
    assert.is(pm.persistBatch(h, ranges, 5), 2);
    assert.is(pm.persistBatch(h, ranges, 0), 0);
    assert.is(pm.persistBatch(h, new Uint32Array([OFF, 0]), 1), 0, "empty ranges need no msync");
    // More ranges than fit on the stack.
    const many = new Uint32Array(2000);
    for (let i = 0; i < 1000; i++) many.set([OFF + i * 1024, 1024], 2 * i);
    assert.is(pm.persistBatch(h, many, 1000), 1);
    pm.unmap(h);
    throwsCode(() => pm.persistBatch(h, ranges, 1), "EBADF");
    pm.close(f.fd);
  });

  test(`${kind}: persistRanges reads its table from the memory`, () => {
    const file = fresh(dir);
    pm.close(pm.create(file, MiB, new Uint8Array(0)).fd);
    const memory = new WebAssembly.Memory({ initial: 64 });
    const { f, m } = mapFile(file, memory, "msync");
    const dv = new DataView(memory.buffer);
    const table = 1028; // below the mapping, not 8-aligned on purpose
    const pairs = [OFF + 10, 10, OFF + 4100, 100, OFF + 200000, 4096];
    pairs.forEach((v, i) => dv.setUint32(table + 4 * i, v, true));
    assert.is(pm.persistRanges(m.handle, table, 3), 2);
    assert.is(pm.persistRanges(m.handle, table, 0), 0);
    dv.setUint32(table + 4, MiB, true); // range now runs past the mapping
    throwsCode(() => pm.persistRanges(m.handle, table, 3), "EINVAL", /outside the mapping/);
    throwsCode(() => pm.persistRanges(m.handle, 64 * 65536 - 8, 2), "EINVAL", /outside the memory/);
    throwsCode(() => pm.persistRanges(m.handle, 2 ** 50, 1), "EINVAL");
    pm.unmap(m.handle);
    pm.close(f.fd);
  });

  test(`${kind}: data written and persisted by a SIGKILLed process survives`, async () => {
    const file = fresh(dir);
    pm.close(pm.create(file, MiB, new Uint8Array(0)).fd);
    const c = child(
      `const f = pm.open(argv[0]);
       const mem = new WebAssembly.Memory({ initial: 64, maximum: 128, shared: true });
       const m = pm.map(mem, new Uint8Array(mem.buffer), ${OFF}, f.fd, f.size, "auto");
       const v = new Uint8Array(mem.buffer);
       for (let i = 0; i < 4096; i++) v[${OFF} + 8192 + i] = (i * 13) & 255;
       pm.persist(m.handle, ${OFF} + 8192, 4096);
       console.log("ready");
       setInterval(() => {}, 1000);`,
      file,
    );
    await c.ready;
    c.p.kill("SIGKILL");
    assert.is((await c.exited).signal, "SIGKILL");
    const bytes = fs.readFileSync(file);
    for (let i = 0; i < 4096; i++) if (bytes[8192 + i] !== ((i * 13) & 255)) assert.unreachable(`byte ${i} lost`);
    pm.close(pm.open(file).fd); // and the lock is gone
  });

  test(`${kind}: forced cache-line modes`, () => {
    const cpu = pm.cpuFeatures();
    const file = fresh(dir);
    pm.close(pm.create(file, MiB, new Uint8Array(0)).fd);
    const memory = new WebAssembly.Memory({ initial: 64 });
    for (const mode of ["clwb", "clflushopt"]) {
      const f = pm.open(file);
      if (!cpu[mode]) {
        throwsCode(() => pm.map(memory, new Uint8Array(memory.buffer), OFF, f.fd, MiB, mode), "ENOTSUP");
        pm.close(f.fd);
        continue;
      }
      const m = pm.map(memory, new Uint8Array(memory.buffer), OFF, f.fd, MiB, mode);
      assert.is(m.persistMode, mode);
      const v = new Uint8Array(memory.buffer);
      v[OFF + 1] = 77;
      pm.persist(m.handle, OFF + 1, 1);
      pm.persist(m.handle, OFF, MiB);
      assert.is(pm.persistBatch(m.handle, new Uint32Array([OFF, 64, OFF + 100, 3000]), 2), 0);
      throwsCode(() => pm.persist(m.handle, OFF + MiB, 1), "EINVAL");
      pm.unmap(m.handle);
      pm.close(f.fd);
      assert.is(fs.readFileSync(file)[1], 77);
    }
  });
}

test("open of something that is not a regular file", () => {
  throwsCode(() => pm.open("/dev/null"), "EINVAL", /\/dev\/null: it is not a regular file/);
});

test("pread and close report bad fds", () => {
  throwsCode(() => pm.pread(1e6, new Uint8Array(4), 0), "EBADF");
  throwsCode(() => pm.close(1e6), "EBADF");
  throwsCode(() => pm.close(-1), "EINVAL");
  assert.throws(
    () => pm.pread(0, new Uint16Array(4), 0),
    (e) => e instanceof TypeError,
  );
});

// Strict mode (issue 5): MAP_PRIVATE, stores reach the file only through the persist calls.
for (const { kind, dir } of places) {
  test(`${kind}: strict mode: only persisted ranges reach the file`, () => {
    const file = fresh(dir);
    pm.close(pm.create(file, MiB, new Uint8Array(0)).fd);
    const memory = new WebAssembly.Memory({ initial: 64 });
    const { f, m } = mapFile(file, memory, "strict");
    assert.is(m.persistMode, "strict");
    assert.is(m.dax, false);
    const v = new Uint8Array(memory.buffer);
    const at = [10, 5000, 9000, 9010, 70000, 300000];
    at.forEach((o, i) => (v[OFF + o] = 11 + i));
    assert.is(fs.readFileSync(file)[5000], 0, "a store alone does not reach the file");
    pm.persist(m.handle, OFF + 5000, 1);
    // two touching ranges merge into one pwrite; the third is a second one
    assert.is(pm.persistBatch(m.handle, new Uint32Array([OFF + 9000, 5, OFF + 9005, 6, OFF + 70000, 1]), 3), 2);
    const dv = new DataView(memory.buffer);
    dv.setUint32(1024, OFF + 300000, true);
    dv.setUint32(1028, 1, true);
    assert.is(pm.persistRanges(m.handle, 1024, 1), 1);
    throwsCode(() => pm.persist(m.handle, OFF + MiB, 1), "EINVAL");
    pm.unmap(m.handle);
    pm.close(f.fd);
    const d = fs.readFileSync(file);
    assert.equal(
      at.map((o) => d[o]),
      [0, 12, 13, 14, 15, 16],
      "everything but the unpersisted store at 10",
    );
  });
}

test.run();

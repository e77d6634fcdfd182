// The PM file: creation, reopening, and every way a file can be refused, through both file
// adapters (the addon's mmap and the file adapter, which has no addon). A refused open or
// create leaves every byte on disk as it was.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync, statSync, readdirSync, truncateSync, appendFileSync, mkdirSync } from "node:fs";
import { createHash } from "node:crypto";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { Pool, PoolFileError, encodeSuperblock, poolLayout } from "../build/index.js";
import { scratchDir, MEDIA } from "./lib/tmp.mjs";

const sha = (p) => createHash("sha256").update(readFileSync(p)).digest("hex");
const snapshot = (dir) =>
  readdirSync(dir)
    .sort()
    .map((f) => {
      const st = statSync(join(dir, f));
      return `${f}:${st.size}:${st.mtimeMs}:${st.isFile() ? sha(join(dir, f)) : "dir"}`;
    })
    .join("\n");

function refused(fn, code, path) {
  try {
    fn();
  } catch (e) {
    assert.instance(e, PoolFileError, `${e}`);
    assert.is(e.code, code, e.message);
    assert.ok(e.message.includes(path), `message names the file: ${e.message}`);
    return e;
  }
  assert.unreachable(`expected ${code}`);
}

function makePool(dir, name = "p.pm", buffers = 64, persistence = "mmap") {
  const path = join(dir, name);
  Pool.create(path, { buffers, persistence }).close();
  return path;
}

const ADAPTERS = ["mmap", "file"];

for (const medium of MEDIA)
  for (const persistence of ADAPTERS)
    test(`create, write, persist, close, reopen, read back (${medium}, ${persistence})`, () => {
      const dir = scratchDir(medium === "tmpfs" ? "tmpfs" : "disk");
      const path = join(dir, "a.pm");
      const p = Pool.create(path, { buffers: 100, persistence });
      assert.is(p.medium, medium === "tmpfs" ? "tmpfs" : "ext4");
      assert.is(p.persistence, persistence);
      assert.is(p.fallback, null);
      // no DAX on this machine: on tmpfs msync is the durability step, on a disk the journal;
      // the file adapter writes and fdatasyncs
      assert.is(p.persistMode, persistence === "file" ? "file" : medium === "tmpfs" ? "msync" : "journal");
      assert.is(p.durability, medium === "tmpfs" ? "process-crash" : "power-loss");
      assert.is(p.dax, false);
      const sb = p.superblock;
      assert.is(statSync(path).size, sb.fileSize);
      assert.equal(
        readdirSync(dir).sort(),
        medium === "tmpfs" || persistence === "file" ? ["a.pm"] : ["a.pm", "a.pm.journal"],
        "no temporary file left behind",
      );
      assert.is(statSync(path).mode & 0o777, 0o600);
      const idx = p.allocBatch(3);
      p.view(idx[0]).fill(0xab);
      p.view(idx[1], 5, 3).set([1, 2, 3]);
      p.metaView().set([9, 8, 7], 100);
      p.persistBatch([p.name(idx[0]), p.name(idx[1], 5, 3)]);
      p.persistMeta(100, 3);
      if (persistence === "file") assert.is(p.stats.syncCalls, 2, "one fdatasync per persist call");
      const v = p.view(idx[0], 0, 4);
      p.close();
      assert.equal([...v], [0, 0, 0, 0], "after close() views read zeros");
      // the bytes are in the file where the layout says
      const raw = readFileSync(path);
      assert.is(raw[sb.bufOffset + idx[0] * 2048 + 2047], 0xab);
      assert.equal([...raw.subarray(sb.bufOffset + idx[1] * 2048 + 5, sb.bufOffset + idx[1] * 2048 + 8)], [1, 2, 3]);
      assert.equal([...raw.subarray(sb.metaOffset + 100, sb.metaOffset + 103)], [9, 8, 7]);
      const q = Pool.open(path, { persistence });
      assert.equal(q.superblock, sb);
      q.claim(idx[0]);
      assert.ok(q.view(idx[0]).every((b) => b === 0xab));
      assert.equal([...q.metaView().subarray(100, 103)], [9, 8, 7]);
      q.close();
    });

for (const persistence of ADAPTERS)
  test(`a shared-memory pool holds the same file; views are SharedArrayBuffer-backed (${persistence})`, () => {
    const dir = scratchDir();
    const path = join(dir, "shared.pm");
    const p = Pool.create(path, { buffers: 16, shared: true, persistence });
    assert.ok(p.core.memory.buffer instanceof SharedArrayBuffer);
    const i = p.alloc();
    const v = p.view(i, 0, 4);
    assert.ok(v.buffer instanceof SharedArrayBuffer);
    v.set([4, 3, 2, 1]);
    p.keep(i);
    p.persist(i, 0, 4);
    p.close();
    const q = Pool.open(path, { persistence }); // and back in a non-shared memory
    q.claim(i);
    assert.equal([...q.view(i, 0, 4)], [4, 3, 2, 1]);
    q.close();
  });

for (const persistence of ADAPTERS) {
  const opts = { persistence };

  test(`create refuses an existing path and leaves it untouched (${persistence})`, () => {
    const dir = scratchDir();
    const path = makePool(dir, "p.pm", 64, persistence);
    const before = snapshot(dir);
    refused(() => Pool.create(path, { buffers: 8, ...opts }), "EEXIST", path);
    assert.is(snapshot(dir), before);
    writeFileSync(join(dir, "other"), "not a pool");
    const before2 = snapshot(dir);
    refused(() => Pool.create(join(dir, "other"), { buffers: 8, ...opts }), "EEXIST", join(dir, "other"));
    assert.is(snapshot(dir), before2);
  });

  test(`open of a missing file, a directory, an unwritable file (${persistence})`, () => {
    const dir = scratchDir();
    refused(() => Pool.open(join(dir, "nope.pm"), opts), "ENOENT", join(dir, "nope.pm"));
    refused(
      () => Pool.create(join(dir, "no/such/dir.pm"), { buffers: 8, ...opts }),
      "ENOENT",
      join(dir, "no/such/dir.pm"),
    );
    mkdirSync(join(dir, "d"));
    let e;
    try {
      Pool.open(join(dir, "d"), opts);
    } catch (x) {
      e = x;
    }
    assert.instance(e, PoolFileError);
    assert.ok(["EISDIR", "EINVAL"].includes(e.code), e.code);
    assert.ok(e.message.includes(join(dir, "d")) && /directory|regular/i.test(e.message), e.message);
    // read-only sysfs files and directories refuse writers, even root
    const ro = refused(() => Pool.open("/sys/kernel/uevent_seqnum", opts), "EACCES", "/sys/kernel/uevent_seqnum");
    assert.ok(/not writable/i.test(ro.message), ro.message);
    refused(
      () => Pool.create("/sys/kernel/pmstack-test.pm", { buffers: 8, ...opts }),
      "EACCES",
      "/sys/kernel/pmstack-test.pm",
    );
    // an immutable file on the disk (chattr +i) refuses root too
    const disk = scratchDir("disk");
    const imm = join(disk, "immutable.pm");
    makePool(disk, "immutable.pm", 64, persistence);
    if (spawnSync("chattr", ["+i", imm]).status === 0) {
      try {
        const before = sha(imm);
        refused(() => Pool.open(imm, opts), "EPERM", imm);
        assert.is(sha(imm), before);
      } finally {
        spawnSync("chattr", ["-i", imm]);
      }
    } else console.warn("pmfile.test: chattr +i unavailable here; immutable-file case not run");
    assert.is(readdirSync(dir).length, 1);
  });

  test(`a file locked by another open pool is refused, whatever adapter holds it (${persistence})`, () => {
    const dir = scratchDir();
    const path = makePool(dir, "p.pm", 64, persistence);
    const a = Pool.open(path, opts);
    const before = sha(path);
    for (const other of ADAPTERS) {
      const e = refused(() => Pool.open(path, { persistence: other }), "ELOCKED", path);
      assert.match(e.message, /locked/);
    }
    a.close();
    assert.is(sha(path), before);
    Pool.open(path, opts).close(); // the lock went with close()
  });

  test(`openOrCreate creates once, then opens (${persistence})`, () => {
    const dir = scratchDir();
    const path = join(dir, "oc.pm");
    const a = Pool.openOrCreate(path, { buffers: 32, ...opts });
    const uuid = a.superblock.uuid;
    a.close();
    const b = Pool.openOrCreate(path, { buffers: 999, ...opts });
    assert.is(b.superblock.uuid, uuid);
    assert.is(b.bufferCount, 32);
    b.close();
  });
}

function corrupt(name, mutate, code, pattern) {
  for (const persistence of ADAPTERS)
    test(`a pool file with ${name} is refused (${code}) and left as it was (${persistence})`, () => {
      const dir = scratchDir();
      const path = makePool(dir);
      mutate(path);
      const before = snapshot(dir);
      const e = refused(() => Pool.open(path, { persistence }), code, path);
      assert.match(e.message, pattern);
      assert.is(snapshot(dir), before, "nothing on disk changed");
    });
}

const patch = (path, at, bytes) => {
  const b = readFileSync(path);
  b.set(bytes, at);
  writeFileSync(path, b);
};
corrupt("a wrong magic number", (p) => patch(p, 0, [0x58]), "EBADMAGIC", /not a pmstack pool/);
corrupt(
  "an unknown version",
  (p) => {
    const sb = poolLayout(64);
    const h = encodeSuperblock({ ...sb, version: 2 });
    patch(p, 0, h);
  },
  "EBADVERSION",
  /version 2/,
);
corrupt("a damaged header (checksum)", (p) => patch(p, 40, [0x77]), "EBADCHECKSUM", /checksum/);
corrupt("a truncated body", (p) => truncateSync(p, statSync(p).size - 2048), "ETOOSMALL", /truncated/);
corrupt("only part of a superblock", (p) => truncateSync(p, 100), "ETOOSMALL", /too small/);
corrupt("zero length", (p) => truncateSync(p, 0), "ETOOSMALL", /too small/);
corrupt("extra bytes at the end", (p) => appendFileSync(p, Buffer.alloc(4096)), "ETOOLARGE", /extended/);
corrupt(
  "a header from a different pool size",
  (p) => patch(p, 0, encodeSuperblock(poolLayout(65))),
  "ETOOSMALL",
  /truncated/,
);
corrupt(
  "inconsistent layout fields",
  (p) => {
    const sb = poolLayout(64);
    patch(p, 0, encodeSuperblock({ ...sb, bufOffset: 4096 }));
  },
  "EBADLAYOUT",
  /overlaps/,
);

test("impossible sizes are refused before touching the disk", () => {
  const dir = scratchDir();
  assert.throws(() => Pool.create(join(dir, "x.pm"), { buffers: 0 }), /positive integer/);
  assert.throws(() => Pool.create(join(dir, "x.pm"), { buffers: 3e6 }), /Wasm memory/);
  assert.throws(() => Pool.create(join(dir, "x.pm"), { buffers: 8, metaBytes: 100 }), /multiple of 4096/);
  assert.is(readdirSync(dir).length, 0);
});

test.run();

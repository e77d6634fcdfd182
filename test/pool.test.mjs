// Buffer pool: owner states, reference counts, batches, names, swaps and the invariant,
// including a seeded random sequence of over a million operations checked against a model.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Pool, BufferNameError, PoolExhaustedError, PoolClosedError, packName, unpackName } from "../build/index.js";
import { rng } from "./lib/rng.mjs";

const OWNERS = ["nic", "stack", "app", "kept"];
const codeOf = (fn) => {
  try {
    fn();
  } catch (e) {
    return e.code;
  }
  return "no error";
};

test("alloc, view, free and counts", () => {
  const p = Pool.volatile({ buffers: 64 });
  const i = p.alloc();
  assert.is(p.owner(i), "app");
  assert.is(p.refCount(i), 1);
  const v = p.view(i, 100, 4);
  v.set([1, 2, 3, 4]);
  assert.equal([...p.view(i, 100, 4)], [1, 2, 3, 4]);
  assert.is(p.view(i).length, 2048);
  assert.equal(p.counts(), { total: 64, free: 63, nic: 0, stack: 0, app: 1, kept: 0 });
  assert.is(p.free(i), 0);
  assert.is(p.owner(i), "free");
  assert.equal(p.check().free, 64);
});

test("every buffer is distinct memory; exhaustion is an error, not a trap", () => {
  const p = Pool.volatile({ buffers: 32 });
  const got = p.allocBatch(32);
  assert.is(new Set(got).size, 32);
  for (const i of got) p.view(i).fill(i);
  for (const i of got) assert.ok(p.view(i).every((b) => b === i));
  assert.is(
    codeOf(() => p.alloc()),
    "EEMPTY",
  );
  assert.ok(
    (() => {
      try {
        p.alloc();
      } catch (e) {
        return e instanceof PoolExhaustedError;
      }
    })(),
  );
  assert.is(
    codeOf(() => p.allocBatch(1)),
    "EEMPTY",
  );
  assert.is(p.freeBatch(got), 32);
  p.check();
});

test("allocBatch is all or nothing", () => {
  const p = Pool.volatile({ buffers: 16 });
  p.allocBatch(10);
  assert.is(
    codeOf(() => p.allocBatch(7)),
    "EEMPTY",
  );
  assert.is(p.counts().free, 6);
  assert.is(p.allocBatch(6).length, 6);
  p.check();
});

test("double free, out-of-range and foreign names are rejected with errors", () => {
  const p = Pool.volatile({ buffers: 8 });
  const i = p.alloc();
  p.free(i);
  assert.is(
    codeOf(() => p.free(i)),
    "EFREE",
  );
  assert.is(
    codeOf(() => p.view(i)),
    "EFREE",
  );
  assert.is(
    codeOf(() => p.persist(i)),
    "EFREE",
  );
  for (const bad of [-1, 8, 1e9, 1.5, NaN, 2 ** 32]) {
    assert.is(
      codeOf(() => p.free(bad)),
      "ERANGE",
      `free(${bad})`,
    );
    assert.is(
      codeOf(() => p.view(bad)),
      "ERANGE",
      `view(${bad})`,
    );
  }
  const j = p.alloc();
  assert.is(
    codeOf(() => p.view(j, 2000, 100)),
    "EBOUNDS",
  );
  assert.is(
    codeOf(() => p.view(j, 2049, 0)),
    "EBOUNDS",
  );
  assert.is(
    codeOf(() => p.view(j, -1, 4)),
    "EBOUNDS",
  );
  assert.is(
    codeOf(() =>
      p.persistBatch([
        { index: j, offset: 0, length: 10 },
        { index: 99, offset: 0, length: 1 },
      ]),
    ),
    "ERANGE",
  );
  assert.is(p.view(j, 2048, 0).length, 0);
  // a name from another pool: same index space, but the buffer is free here
  const other = Pool.volatile({ buffers: 8 });
  const k = other.allocBatch(3)[2];
  assert.is(
    codeOf(() => p.view(k)),
    "EFREE",
  );
  assert.ok(
    (() => {
      try {
        p.view(k);
      } catch (e) {
        return e instanceof BufferNameError;
      }
    })(),
  );
  p.free(j);
  assert.equal(p.check().free, 8);
});

test("freeBatch is atomic: a bad entry changes nothing", () => {
  const p = Pool.volatile({ buffers: 8 });
  const [a, b, c] = p.allocBatch(3);
  p.ref(b);
  assert.is(
    codeOf(() => p.freeBatch([a, b, 7])),
    "EFREE",
  ); // 7 is free
  assert.is(
    codeOf(() => p.freeBatch([a, a])),
    "EFREE",
  ); // a has one reference
  assert.is(
    codeOf(() => p.freeBatch([a, 99])),
    "ERANGE",
  );
  assert.is(
    codeOf(() => p.freeBatch(Uint32Array.of(a, 99))),
    "ERANGE",
  );
  assert.is(
    codeOf(() => p.freeBatch(Uint32Array.of(b, b, b))),
    "EFREE",
  );
  assert.equal([p.refCount(a), p.refCount(b), p.refCount(c)], [1, 2, 1]);
  p.check();
  assert.is(p.freeBatch([b, a, b, c]), 3);
  p.check();
});

test("reference counts: a buffer on the NIC queue and in the retransmit queue at once", () => {
  const p = Pool.volatile({ buffers: 4 });
  const i = p.alloc("stack");
  assert.is(p.ref(i), 2); // NIC's reference
  assert.is(p.free(i), 1); // NIC done
  assert.is(p.owner(i), "stack");
  assert.is(p.free(i), 0); // ACKed
  assert.is(p.owner(i), "free");
  const j = p.alloc();
  for (let k = 1; k < 0xffff; k++) p.ref(j);
  assert.is(
    codeOf(() => p.ref(j)),
    "EREFMAX",
  );
  p.check();
});

test("owner moves, keep and claim", () => {
  const p = Pool.volatile({ buffers: 8 });
  const i = p.alloc("nic");
  assert.is(p.setOwner(i, "stack"), "nic");
  assert.is(p.setOwner(i, "app"), "stack");
  p.keep(i);
  assert.is(p.owner(i), "kept");
  assert.throws(() => p.setOwner(i, "free"), /owner must be one of/);
  p.claim(5);
  assert.is(p.owner(5), "kept");
  assert.is(
    codeOf(() => p.claim(5)),
    "ENOTFREE",
  );
  // claimed buffers are never handed out
  const rest = p.allocBatch(6);
  assert.not.ok(rest.includes(5) || rest.includes(i));
  assert.equal(p.counts(), { total: 8, free: 0, nic: 0, stack: 0, app: 6, kept: 2 });
  p.check();
});

test("64-bit names round-trip", () => {
  const n = { index: 0xfffffffe, offset: 2047, length: 2048 };
  assert.equal(unpackName(packName(n)), n);
  const p = Pool.volatile({ buffers: 4 });
  const c = p.core.exports;
  const x = c.namePack64(3, 66, 1024);
  assert.is(x, packName({ index: 3, offset: 66, length: 1024 }));
  assert.equal([c.nameUnpackIndex(x), c.nameUnpackOffset(x), c.nameUnpackLength(x)], [3, 66, 1024]);
});

test("ring swap: the app keeps a slot's buffer and a fresh one takes its place", () => {
  let ring = 0;
  const p = Pool.volatile({ buffers: 16, configure: (core) => (ring = core.exports.ringCreate(3)) });
  const c = p.core.exports;
  assert.ok(ring > 0);
  const bufs = p.allocBatch(4, "nic");
  for (const b of bufs) assert.is(c.ringPush(ring, b, 14, 100, 7, 0), 0);
  const u32 = new Uint32Array(p.core.memory.buffer);
  const head = u32[(ring + 4) >>> 2];
  const kept = c.ringSwap(ring, head + 1);
  assert.is(kept, bufs[1]);
  assert.is(p.owner(kept), "kept");
  const slot = (ring + 16 + ((head + 1) & 7) * 16) >>> 2;
  const fresh = u32[slot];
  assert.not.ok(bufs.includes(fresh));
  assert.is(p.owner(fresh), "nic");
  assert.is(c.ringSwap(ring, head + 9), -1, "position outside the filled slots");
  // ring full / empty
  for (let k = 0; k < 4; k++) assert.is(c.ringPush(ring, 0, 0, 0, 0, 0), 0);
  assert.is(c.ringPush(ring, 0, 0, 0, 0, 0), -7);
  assert.equal(p.counts(), { total: 16, free: 11, nic: 4, stack: 0, app: 0, kept: 1 });
  p.check();
});

test("the arena is sealed after open: the core cannot grow memory under views", () => {
  const p = Pool.volatile({ buffers: 4 });
  assert.is(p.core.exports.arenaAlloc(64, 8), -10);
  const before = p.core.memory.buffer.byteLength;
  const v = p.view(p.alloc());
  v[0] = 42;
  assert.is(p.core.memory.buffer.byteLength, before);
  assert.is(v[0], 42);
});

test("closed pools refuse calls", () => {
  const p = Pool.volatile({ buffers: 4 });
  p.close();
  p.close();
  assert.ok(
    (() => {
      try {
        p.alloc();
      } catch (e) {
        return e instanceof PoolClosedError && e.code === "ECLOSED";
      }
    })(),
  );
});

test("invariant under 1,000,000 seeded random operations, checked against a model", () => {
  const N = 512;
  const p = Pool.volatile({ buffers: N });
  const r = rng(0x5eed);
  const owner = new Array(N).fill("free");
  const refs = new Array(N).fill(0);
  const held = () => {
    const h = [];
    for (let i = 0; i < N; i++) if (refs[i] > 0) h.push(i);
    return h;
  };
  let heldList = [];
  let ops = 0,
    errs = 0;
  const pickHeld = () => heldList[r.int(heldList.length)];
  const expectErr = (fn, code) => {
    assert.is(codeOf(fn), code);
    errs++;
  };
  for (let step = 0; ops < 1_000_000; step++) {
    if (step % 64 === 0) heldList = held();
    const op = r.int(100);
    const freeCount = N - heldList.length;
    if (op < 25) {
      const o = OWNERS[r.int(4)];
      if (refs.reduce((a, x) => a + (x === 0), 0) === 0) expectErr(() => p.alloc(o), "EEMPTY");
      else {
        const i = p.alloc(o);
        assert.is(refs[i], 0);
        refs[i] = 1;
        owner[i] = o;
        heldList.push(i);
      }
      ops++;
    } else if (op < 35) {
      const n = r.int(8);
      const free = refs.reduce((a, x) => a + (x === 0), 0);
      if (n > free) expectErr(() => p.allocBatch(n), "EEMPTY");
      else
        for (const i of p.allocBatch(n)) {
          assert.is(refs[i], 0);
          refs[i] = 1;
          owner[i] = "app";
          heldList.push(i);
        }
      ops += n || 1;
    } else if (op < 60 && heldList.length) {
      const i = pickHeld();
      if (refs[i] === 0) expectErr(() => p.free(i), "EFREE");
      else {
        assert.is(p.free(i), refs[i] - 1);
        if (--refs[i] === 0) owner[i] = "free";
      }
      ops++;
    } else if (op < 70 && heldList.length) {
      const batch = Array.from({ length: 1 + r.int(6) }, pickHeld);
      const need = {};
      for (const i of batch) need[i] = (need[i] ?? 0) + 1;
      const ok = Object.entries(need).every(([i, k]) => refs[i] >= k);
      if (!ok) expectErr(() => p.freeBatch(batch), "EFREE");
      else {
        let freed = 0;
        for (const [i, k] of Object.entries(need)) {
          refs[i] -= k;
          if (refs[i] === 0) {
            owner[i] = "free";
            freed++;
          }
        }
        assert.is(p.freeBatch(batch), freed);
      }
      ops += batch.length;
    } else if (op < 78 && heldList.length) {
      const i = pickHeld();
      if (refs[i] === 0) expectErr(() => p.ref(i), "EFREE");
      else {
        assert.is(p.ref(i), refs[i] + 1);
        refs[i]++;
      }
      ops++;
    } else if (op < 88 && heldList.length) {
      const i = pickHeld(),
        o = OWNERS[r.int(4)];
      if (refs[i] === 0) expectErr(() => p.setOwner(i, o), "EFREE");
      else {
        assert.is(p.setOwner(i, o), owner[i]);
        owner[i] = o;
      }
      ops++;
    } else if (op < 93) {
      const i = r.int(N);
      if (refs[i] > 0) expectErr(() => p.claim(i), "ENOTFREE");
      else {
        p.claim(i);
        refs[i] = 1;
        owner[i] = "kept";
        heldList.push(i);
      }
      ops++;
    } else {
      // hostile input: out-of-range and malformed indices and names
      const bad = [N, -1, N + r.int(1e6), 0.5][r.int(4)];
      expectErr(() => p.free(bad), "ERANGE");
      const i = r.int(N);
      if (refs[i] > 0) expectErr(() => p.view(i, 2040, 9), "EBOUNDS");
      else expectErr(() => p.view(i), "EFREE");
      ops++;
    }
    if (step % 20000 === 0) {
      const c = p.check();
      const exp = { total: N, free: 0, nic: 0, stack: 0, app: 0, kept: 0 };
      for (let i = 0; i < N; i++) exp[owner[i]]++;
      assert.equal(c, exp);
      for (let i = 0; i < N; i += 7) {
        assert.is(p.owner(i), owner[i]);
        assert.is(p.refCount(i), refs[i]);
      }
    }
  }
  for (let i = 0; i < N; i++) {
    assert.is(p.owner(i), owner[i], `owner of ${i}`);
    assert.is(p.refCount(i), refs[i]);
  }
  p.check();
  assert.ok(errs > 10000, `exercised ${errs} error paths`);
});

test.run();

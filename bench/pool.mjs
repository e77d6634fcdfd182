// bench/pool: buffer alloc/free cost (single and batched) and persist cost per call for
// 64 B, 1 KiB and 64 KiB ranges on each available medium (a tmpfs file, an ext4 file), with
// the peers measured in the same run: a JS free list for alloc/free, and pwrite + fdatasync
// of the same bytes to a file on the same medium for persist.
import { mkdtempSync, rmSync, openSync, writeSync, fdatasyncSync, closeSync, statfsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "../build/index.js";
import { nsPerOp, ratios } from "./_lib.mjs";

const SIZES = [
  [64, "64"],
  [1024, "1k"],
  [65536, "64k"],
];

export async function run() {
  const rows = [];
  const add = (system, metric, value, unit = "ns") => rows.push({ system, metric, value, unit });

  // --- alloc/free -----------------------------------------------------------------------
  const pool = Pool.volatile({ buffers: 8192 });
  add(
    "pmstack",
    "alloc_free_ns",
    nsPerOp((n) => {
      for (let k = 0; k < n; k++) pool.free(pool.alloc());
    }, 1e6),
  );
  add(
    "pmstack",
    "alloc_free_batch32_ns_per_buf",
    nsPerOp((n) => {
      for (let k = 0; k < n; k += 32) pool.freeBatch(pool.allocBatch(32));
    }, 1e6),
  );
  const core = pool.core.exports;
  add(
    "pmstack-core",
    "alloc_free_ns",
    nsPerOp((n) => {
      for (let k = 0; k < n; k++) core.bufUnref(core.bufAlloc(3));
    }, 1e6),
  );
  // peer: the obvious JS free list (no states, no refcounts, no checks)
  const stack = Array.from({ length: 8192 }, (_, i) => i);
  add(
    "js-array",
    "alloc_free_ns",
    nsPerOp((n) => {
      for (let k = 0; k < n; k++) stack.push(stack.pop());
    }, 1e6),
  );
  pool.close();

  // --- persist per medium -----------------------------------------------------------------
  const media = [
    ["tmpfs", "/dev/shm"],
    ["ext4", tmpdir()],
  ];
  const notes = [];
  for (const [label, base] of media) {
    let dir;
    try {
      dir = mkdtempSync(join(base, "pmstack-bench-"));
    } catch {
      notes.push(`${label}: no writable ${base}, skipped`);
      continue;
    }
    try {
      const fsType = statfsSync(dir).type;
      for (const mode of ["auto", "clwb"]) {
        const p = Pool.create(join(dir, `bench-${mode}.pm`), { buffers: 1024, mode });
        const sys = `pmstack-${p.medium}-${p.persistMode}`;
        const idx = p.allocBatch(64);
        const u8 = new Uint8Array(p.core.memory.buffer);
        for (const [size, tag] of SIZES) {
          // 64 B and 1 KiB: one range in one buffer; 64 KiB: a batch of 32 whole buffers
          // (one fence, or one msync per contiguous run).
          const names = [];
          for (let b = 0; b * 2048 < size; b++) names.push(p.name(idx[b], 0, Math.min(2048, size - b * 2048)));
          const addrs = names.map((nm) => p.address(nm.index));
          const dirty = (k) => {
            for (let b = 0; b < names.length; b++) for (let o = 0; o < names[b].length; o += 64) u8[addrs[b] + o] = k;
          };
          const slow = p.persistMode === "msync" && p.medium !== "tmpfs";
          const iters = slow ? (size >= 65536 ? 200 : 500) : size >= 65536 ? 5000 : 50000;
          const persistOnce =
            names.length === 1 ? () => p.persist(names[0].index, 0, names[0].length) : () => p.persistBatch(names);
          const withDirty = nsPerOp(
            (n) => {
              for (let k = 0; k < n; k++) {
                dirty(k);
                persistOnce();
              }
            },
            iters,
            5,
          );
          const dirtyOnly = nsPerOp(
            (n) => {
              for (let k = 0; k < n; k++) dirty(k);
            },
            iters,
            5,
          );
          add(sys, `persist_ns_${tag}`, Math.max(0, withDirty - dirtyOnly));
        }
        p.close();
      }
      // peer: pwrite + fdatasync of the same size on the same medium
      const fd = openSync(join(dir, "peer.dat"), "w+");
      for (const [size, tag] of SIZES) {
        const b = Buffer.alloc(size, 7);
        const iters = fsType === 0x01021994 ? 20000 : size >= 65536 ? 200 : 500;
        add(
          `fs-fdatasync-${label}`,
          `persist_ns_${tag}`,
          nsPerOp(
            (n) => {
              for (let k = 0; k < n; k++) {
                b[0] = k;
                writeSync(fd, b, 0, size, 0);
                fdatasyncSync(fd);
              }
            },
            iters,
            5,
          ),
        );
      }
      closeSync(fd);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const r = [
    ...ratios(rows, "pmstack", "js-array", true),
    ...ratios(rows, "pmstack-tmpfs-msync", "fs-fdatasync-tmpfs", true),
    ...ratios(rows, "pmstack-ext4-msync", "fs-fdatasync-ext4", true),
  ];
  notes.push("lower is better for every metric; ratio = peer / system, so >1 means pmstack is faster");
  notes.push("clwb rows without DAX measure the flush instructions only: they are not durable on the device");
  return { rows, ratios: r, notes };
}

// The persistence seam: where a pool's bytes live and how persisted ranges become durable
// (docs/persistence.md). A Pool does all its file and durability work through one PoolStore:
//
//   "mmap"    the Node-API addon maps the pool file into the Wasm memory (store-mmap.ts): stores
//             land in the file's pages; persist flushes cache lines, msyncs, pwrites (strict)
//             or journals them. The fastest, and the only one with the journal and DAX.
//   "file"    no addon (store-file.ts, over node:fs in store-node.ts): the file is read into
//             plain Wasm memory at open, and a persist writes exactly the persisted ranges back
//             to the same file at the same offsets, then fdatasyncs it once. Same file format: either adapter opens the
//             other's pools. It works wherever positional file I/O does: Node, and Deno
//             without --allow-ffi.
//   "opfs"    the file adapter's store over a browser's origin private file system
//             (store-opfs.ts): sync access handles pre-opened by `await openOpfs(dir, names)`,
//             written and flushed on persist. Same file format.
//   "memory"  plain Wasm memory, no file: nothing persists (Pool.volatile).
//
// A store's life: opened (or created) and locked; read() the superblock; place() the file in
// the memory; persist*() for the pool's life; openJournal() once after place(); close().

import type { Superblock } from "./format.js";
import type { JournalReplay, JournalStats, MapMode, PersistMode } from "./native.js";

/** Which adapter holds a pool's bytes. */
export type Persistence = "mmap" | "file" | "opfs" | "memory";
/**
 * Pool options: an adapter, or "auto" ("opfs" when the pool is given an OPFS directory, else the
 * addon's mmap when it loads, else the file adapter).
 */
export type PersistenceOption = Persistence | "auto";
/** The durability step persist() performs: the addon's modes, the file adapter's, or none. */
export type PoolPersistMode = PersistMode | "file" | "none";
/**
 * What a persisted range survives once persist() returned: "power-loss" (on the device, or in
 * DAX's persistence domain), "process-crash" (in the kernel's page cache: tmpfs, strict mode,
 * cache-line flushes without DAX, a medium the runtime cannot name), or "none".
 */
export type PoolDurability = "power-loss" | "process-crash" | "none";

/** The journal a pool opened: in journal mode it stays open; in other modes it was replayed and closed. */
export interface PoolJournal {
  readonly path: string;
  readonly capacity: number;
  /** What replay applied when the pool was opened (all zero for a journal just created). */
  readonly replay: Readonly<JournalReplay>;
}

/** An open journal in journal mode (only the mmap adapter has one: native-host/journal.c). */
export interface JournalOps {
  submit(tableMemOffset: number, count: number, payloadCount: number, gen: number): number;
  sync(tableMemOffset: number, count: number, payloadCount: number, gen: number): number;
  wait(seq: number): void;
  done(): number;
  stats(): JournalStats;
  checkpoint(wait: boolean): void;
  close(checkpoint: boolean): void;
}

/** What openJournal needs to know about the pool being opened. */
export interface JournalRequest {
  /** The pool file's path (the journal is `path + JOURNAL_SUFFIX`). */
  path: string;
  sb: Superblock;
  /** The mode asked for (the options' `mode`, "auto" by default). */
  want: MapMode;
  /** The pool file was created by this open. */
  created: boolean;
  /** Ring capacity of a journal this open creates. */
  journalBytes: number | undefined;
  /** Journal mode: completions, on the JS thread. */
  onComplete: (done: number, err?: Error) => void;
}

export interface PoolStore {
  readonly persistence: Persistence;
  /** The file's size when it was opened (0 for memory). */
  readonly size: number;
  /** What the file lives on: "tmpfs", "ext4", ..., "unknown", or "memory". */
  readonly medium: string;
  /** The kernel reports the file as DAX. */
  readonly fileDax: boolean;
  /** One phrase for describe() when the adapter has a limit worth saying (or ""). */
  readonly note: string;
  /** Reads file bytes [at, at + into.length); returns how many (fewer at the end of the file). */
  read(into: Uint8Array, at: number): number;
  /** Grows the file to `size` bytes, allocated and synced; never shrinks. */
  extend(size: number): void;
  /**
   * Puts the file's bytes at memory [memOffset, memOffset + length) of `memory` (grown to hold
   * them already): a mapping, or a copy read in. Once per store.
   */
  place(
    memory: WebAssembly.Memory,
    memOffset: number,
    length: number,
    mode: MapMode,
  ): { persistMode: PoolPersistMode; dax: boolean };
  /** Makes memory [memOffset, memOffset + length) durable. Returns the write-back syscalls made. */
  persist(memOffset: number, length: number): number;
  /**
   * Makes `count` u32 pairs (memory offset, length) read from memory at `tableMemOffset`
   * durable: one durability point for all of them (one fence, one msync or pwrite per merged
   * run, one fdatasync). Returns the write-back syscalls made (msync or pwrite).
   */
  persistRanges(tableMemOffset: number, count: number): number;
  /** persistRanges() of pairs held in `ranges` ([off0, len0, off1, len1, ...]). */
  persistBatch(ranges: Uint32Array, count: number): number;
  /** The pool's journal at open (docs/persistence.md): replayed, and kept open in journal mode. */
  openJournal(req: JournalRequest): { journal: JournalOps | null; info: PoolJournal | null };
  /** Unmaps (the memory reads zeros there), closes the file and releases its lock. Idempotent. */
  close(): void;
}

/** Opens and creates pool files for one adapter (the memory adapter has no files: Pool.volatile). */
export interface StoreAdapter {
  readonly persistence: "mmap" | "file" | "opfs";
  /** Whether anything is at `path`. */
  exists(path: string): boolean;
  /**
   * Creates a pool file atomically (a temporary name, allocated, `header` at offset 0, synced,
   * then linked to `path`: EEXIST if anything is there), locked, mode 0600.
   */
  create(path: string, size: number, header: Uint8Array): PoolStore;
  /** Opens an existing regular file read-write and locks it (ELOCKED-style EWOULDBLOCK). Changes nothing. */
  open(path: string): PoolStore;
}

/** The memory-only store: plain Wasm memory, no file; persisting does nothing. */
export class MemoryStore implements PoolStore {
  readonly persistence = "memory" as const;
  readonly size = 0;
  readonly medium = "memory";
  readonly fileDax = false;
  readonly note = "";
  read(): number {
    return 0;
  }
  extend(): void {}
  place(): { persistMode: PoolPersistMode; dax: boolean } {
    return { persistMode: "none", dax: false };
  }
  persist(): number {
    return 0;
  }
  persistRanges(): number {
    return 0;
  }
  persistBatch(): number {
    return 0;
  }
  openJournal(): { journal: JournalOps | null; info: PoolJournal | null } {
    return { journal: null, info: null };
  }
  close(): void {}
}

/** What a persisted range survives with this step on this medium (PoolDurability). */
export function durabilityOf(mode: PoolPersistMode, medium: string, dax: boolean): PoolDurability {
  switch (mode) {
    case "none":
      return "none";
    case "strict":
      return "process-crash";
    case "msync":
    case "journal":
    case "file":
      // tmpfs has no device; a medium the runtime could not name is not promised more than
      // the page cache gives (Deno without --allow-sys cannot statfs), nor OPFS, whose medium
      // a page cannot see (a private window keeps it in memory)
      return medium === "tmpfs" || medium === "unknown" || medium === "opfs" ? "process-crash" : "power-loss";
    default:
      return dax ? "power-loss" : "process-crash";
  }
}

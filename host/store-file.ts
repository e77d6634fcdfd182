// The file adapter: a pool without the addon. The pool file is read into plain Wasm memory when
// it is opened (positional reads), and persist writes exactly the persisted ranges back to the
// same offsets of the same file (positional writes, sorted and merged into runs), then syncs
// the file once (fdatasync): the durability point of the call, where the mmap adapter flushes
// or msyncs. The on-disk format is the same, so either adapter opens the other's pools; a
// journal the mmap adapter left is replayed here first (host/journal-replay.ts).
//
// Stores that were never persisted never reach the file (as in the mmap adapter's strict
// mode): what a crash, or close(), keeps is exactly what persist returned for.
//
// FileStore needs of its file only RandomAccessFile: read and write at an offset, sync, size;
// and of the runtime a FileSystem that opens and creates such files. This module is the
// runtime-neutral part: the "file" adapter over node:fs (Node, and Deno, which needs
// --allow-read and --allow-write for it, not --allow-ffi) is host/store-node.ts; the "opfs"
// adapter over a browser's origin private file system (FileSystemSyncAccessHandle: read/write
// with { at }, flush, getSize) is host/store-opfs.ts. Nothing here imports a runtime module.

import { FLAG_JOURNAL, JOURNAL_SUFFIX, SUPERBLOCK_BYTES, uuidBytes } from "./format.js";
import { PmstackError, PoolFileError } from "./errors.js";
import { replayJournal } from "./journal-replay.js";
import type { MapMode } from "./native.js";
import type { JournalOps, JournalRequest, PoolJournal, PoolPersistMode, PoolStore, StoreAdapter } from "./store.js";

/** A file with positional I/O: what the file adapter needs of a runtime. */
export interface RandomAccessFile {
  readonly path: string;
  size(): number;
  /** Reads into all of `into` from file offset `at`; returns the bytes read (fewer only at the end). */
  read(into: Uint8Array, at: number): number;
  /** Writes all of `from` at file offset `at`. */
  write(from: Uint8Array, at: number): void;
  /** Makes everything written durable (fdatasync; OPFS: flush). */
  sync(): void;
  /** Closes the file and releases its lock. */
  close(): void;
}

/** Where RandomAccessFiles come from. */
export interface FileSystem {
  exists(path: string): boolean;
  /** Opens an existing regular file read-write, locked (EWOULDBLOCK when another holder has it). */
  open(path: string): RandomAccessFile;
  /** create() of StoreAdapter: atomic, allocated (written), locked, 0600. */
  create(path: string, size: number, header: Uint8Array): RandomAccessFile;
  /** The file system `path` is on ("tmpfs", "ext4", ...), or "unknown". */
  medium(path: string): string;
  /** What locks files against other processes, for describe() ("" when they are). */
  readonly lockNote: string;
}

/** Bytes per read/write call. */
export const CHUNK = 16 << 20;
const ZEROS = new Uint8Array(1 << 20);

/**
 * A StoreAdapter over `files`: the file adapter's FileStore (one format, one persist path) on
 * whatever FileSystem the runtime has. `persistence` names it in Pool.persistence.
 */
export function adapterOver(files: FileSystem, persistence: "file" | "opfs" = "file"): StoreAdapter {
  return {
    persistence,
    exists: (path) => files.exists(path),
    create(path, size, header) {
      const f = files.create(path, size, header);
      return new FileStore(files, f, size, files.medium(path), true, persistence);
    },
    open(path) {
      const f = files.open(path);
      try {
        return new FileStore(files, f, f.size(), files.medium(path), false, persistence);
      } catch (e) {
        f.close();
        throw e;
      }
    },
  };
}

/** The modes the file adapter has: in place with a sync ("auto", "msync"), or without ("strict"). */
export function fileModeOf(mode: MapMode): "file" | "strict" | null {
  return mode === "auto" || mode === "msync" ? "file" : mode === "strict" ? "strict" : null;
}

class FileStore implements PoolStore {
  readonly fileDax = false;
  readonly note: string;
  #files: FileSystem;
  #file: RandomAccessFile | null;
  #created: boolean;
  #u8: Uint8Array | null = null;
  #at = 0;
  #len = 0;
  #sync = true;

  constructor(
    files: FileSystem,
    file: RandomAccessFile,
    readonly size: number,
    readonly medium: string,
    created: boolean,
    readonly persistence: "file" | "opfs",
  ) {
    this.#files = files;
    this.#file = file;
    this.#created = created;
    this.note = files.lockNote;
  }

  read(into: Uint8Array, at: number): number {
    return this.#f().read(into, at);
  }

  extend(size: number): void {
    const f = this.#f();
    const have = f.size();
    if (size % 4096 || size < have)
      throw codeError(
        "EINVAL",
        `pmstack: cannot extend ${f.path} to ${size} bytes: it has ${have} (a pool never shrinks; sizes are multiples of 4096) (EINVAL)`,
      );
    writeZeros(f, have, size);
    f.sync();
  }

  place(memory: WebAssembly.Memory, memOffset: number, length: number, want: MapMode) {
    const mode = fileModeOf(want);
    if (!mode) throw modeError(want);
    const f = this.#f();
    const u8 = new Uint8Array(memory.buffer);
    // a pool just created is zeros past its superblock, as the fresh memory is
    const end = this.#created ? Math.min(SUPERBLOCK_BYTES, length) : length;
    for (let at = 0; at < end; at += CHUNK)
      f.read(u8.subarray(memOffset + at, memOffset + Math.min(end, at + CHUNK)), at);
    this.#u8 = u8;
    this.#at = memOffset;
    this.#len = length;
    this.#sync = mode === "file";
    return { persistMode: mode as PoolPersistMode, dax: false };
  }

  persist(memOffset: number, length: number): number {
    this.#inside(memOffset, length);
    if (length === 0) return 0;
    const f = this.#f();
    f.write(this.#u8!.subarray(memOffset, memOffset + length), memOffset - this.#at);
    if (this.#sync) f.sync();
    return 1;
  }

  persistRanges(tableMemOffset: number, count: number): number {
    const u8 = this.#u8!;
    if (tableMemOffset + count * 8 > u8.length)
      throw codeError(
        "EINVAL",
        `pmstack: persistRanges: table [${tableMemOffset}, ${tableMemOffset + count * 8}) is outside the memory (${u8.length} bytes) (EINVAL)`,
      );
    const le = (at: number) => (u8[at]! | (u8[at + 1]! << 8) | (u8[at + 2]! << 16) | (u8[at + 3]! << 24)) >>> 0;
    const r = new Array<number>(2 * count);
    for (let k = 0; k < count; k++) {
      r[2 * k] = le(tableMemOffset + 8 * k);
      r[2 * k + 1] = le(tableMemOffset + 8 * k + 4);
    }
    return this.#writeRuns(r, count);
  }

  persistBatch(ranges: Uint32Array, count: number): number {
    if (count > ranges.length / 2)
      throw codeError(
        "EINVAL",
        `pmstack: persistBatch: count ${count} needs ${count * 2} entries but ranges has ${ranges.length} (EINVAL)`,
      );
    return this.#writeRuns(ranges, count);
  }

  /** Every pair checked, then sorted and merged; one write per run, one sync for all. */
  #writeRuns(pairs: ArrayLike<number>, count: number): number {
    const runs: [number, number][] = [];
    for (let k = 0; k < count; k++) {
      const at = pairs[2 * k]!;
      const len = pairs[2 * k + 1]!;
      this.#inside(at, len);
      if (len) runs.push([at, at + len]);
    }
    if (runs.length === 0) return 0;
    runs.sort((x, y) => x[0] - y[0]);
    const f = this.#f();
    const u8 = this.#u8!;
    let writes = 0;
    let [a, b] = runs[0]!;
    for (let i = 1; i <= runs.length; i++) {
      const r = runs[i];
      if (r && r[0] <= b) {
        if (r[1] > b) b = r[1];
        continue;
      }
      f.write(u8.subarray(a, b), a - this.#at);
      writes++;
      if (r) [a, b] = r;
    }
    if (this.#sync) f.sync();
    return writes;
  }

  #inside(at: number, len: number): void {
    if (at < this.#at || len > this.#len || at - this.#at > this.#len - len)
      throw codeError(
        "EINVAL",
        `pmstack: cannot persist ${this.#f().path}: range [${at}, ${at + len}) is outside the pool ` +
          `[${this.#at}, ${this.#at + this.#len}) (EINVAL)`,
      );
  }

  /**
   * A journal the mmap adapter left is replayed into memory, written to the pool file and
   * marked replayed (host/journal-replay.ts), then closed: this adapter has no journal mode.
   */
  openJournal(req: JournalRequest): { journal: JournalOps | null; info: PoolJournal | null } {
    const { path, sb, want } = req;
    const jpath = path + JOURNAL_SUFFIX;
    if (req.created) return { journal: null, info: null };
    let j: RandomAccessFile;
    try {
      j = this.#files.open(jpath);
    } catch (e) {
      if ((e as { code?: string }).code !== "ENOENT") throw e;
      if (sb.flags & FLAG_JOURNAL && want === "auto")
        throw new PoolFileError(
          "EJOURNAL",
          path,
          `its journal ${jpath} is missing: writes acknowledged since the last checkpoint would be lost; ` +
            "restore it or pass { mode: 'msync' } to open the pool as it is",
        );
      return { journal: null, info: null };
    }
    try {
      const r = replayJournal(j, jpath, uuidBytes(sb.uuid), {
        u8: this.#u8!,
        memOffset: this.#at,
        length: this.#len,
        pool: this.#f(),
      });
      return { journal: null, info: { path: jpath, capacity: r.capacity, replay: r.replay } };
    } finally {
      j.close();
    }
  }

  close(): void {
    const f = this.#file;
    if (!f) return;
    this.#file = null;
    // as after the mmap adapter's unmap, views read zeros
    this.#u8?.fill(0, this.#at, this.#at + this.#len);
    this.#u8 = null;
    f.close();
  }

  #f(): RandomAccessFile {
    if (!this.#file) throw codeError("ECLOSED", "pmstack: the pool file is closed (ECLOSED)");
    return this.#file;
  }
}

export function modeError(mode: MapMode): PmstackError {
  return new PmstackError(
    "EINVAL",
    `pmstack: mode "${mode}" needs the pool mapped into memory, which only the mmap adapter (the native addon) does; ` +
      `the file adapter persists with "auto" (or "msync": a write and an fdatasync) and "strict" (EINVAL)`,
  );
}

/** Writes zeros over file bytes [from, to). */
export function writeZeros(f: RandomAccessFile, from: number, to: number): void {
  for (let at = from; at < to; at += ZEROS.length) f.write(ZEROS.subarray(0, Math.min(ZEROS.length, to - at)), at);
}

/**
 * An Error with `.code`, as the addon throws them (Pool turns both into PoolFileErrors naming
 * the pool's path: ELOCKED for EWOULDBLOCK, ENOENT that openOrCreate creates on...).
 */
export function codeError(code: string, message: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

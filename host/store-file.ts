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
// FileStore needs of its file only RandomAccessFile: read and write at an offset, sync, size.
// That is node:fs here (Node, and Deno, which needs --allow-read and --allow-write for it, not
// --allow-ffi); a browser's OPFS FileSystemSyncAccessHandle offers the same four
// (read/write with { at }, flush, getSize), so an OPFS adapter is a RandomAccessFile over an
// access handle and a FileSystem over a directory handle.

import {
  closeSync,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  readSync,
  statfsSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import { pid } from "node:process";
import { FLAG_JOURNAL, JOURNAL_SUFFIX, SUPERBLOCK_BYTES, uuidBytes } from "./format.js";
import { PmstackError, PoolFileError } from "./errors.js";
import { replayJournal } from "./journal-replay.js";
import { tryNative, type MapMode } from "./native.js";
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

const CHUNK = 16 << 20; // bytes per read/write call
const ZEROS = new Uint8Array(1 << 20);

/** The file adapter over node:fs (Node and Deno). */
export const fileAdapter: StoreAdapter = adapterOver(nodeFileSystem());

export function adapterOver(files: FileSystem): StoreAdapter {
  return {
    persistence: "file",
    exists: (path) => files.exists(path),
    create(path, size, header) {
      const f = files.create(path, size, header);
      return new FileStore(files, f, size, files.medium(path), true);
    },
    open(path) {
      const f = files.open(path);
      try {
        return new FileStore(files, f, f.size(), files.medium(path), false);
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
  readonly persistence = "file" as const;
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

function writeZeros(f: RandomAccessFile, from: number, to: number): void {
  for (let at = from; at < to; at += ZEROS.length) f.write(ZEROS.subarray(0, Math.min(ZEROS.length, to - at)), at);
}

// ---------- node:fs ----------

interface DenoFile {
  tryLockSync?(exclusive?: boolean): boolean;
  close(): void;
}
interface DenoLike {
  openSync(path: string, opts: { read: boolean; write: boolean }): DenoFile;
  FsFile?: { prototype: DenoFile };
}
const deno = (): DenoLike | undefined => (globalThis as { Deno?: DenoLike }).Deno;
const denoLocks = (d: DenoLike): boolean => typeof d.FsFile?.prototype.tryLockSync === "function";

/** Files open through the file adapter in this process (device:inode): a second open is refused. */
const held = new Set<string>();

/** Words for an errno code in messages, as the addon words them (native-host/pm.c plain()). */
function plain(code: string, e: unknown): string {
  switch (code) {
    case "ENOENT":
      return "no such file or directory";
    case "EEXIST":
      return "it already exists";
    case "EACCES":
    case "EPERM":
      return "it is not writable (permission denied)";
    case "EROFS":
      return "it is not writable (read-only file system)";
    case "EWOULDBLOCK":
      return "it is locked by another process";
    case "ENOSPC":
      return "no space left on the file system";
    case "EISDIR":
      return "it is a directory, not a regular file";
    case "ENOTDIR":
      return "a component of the path is not a directory";
    default:
      return ((e as Error)?.message ?? String(e)).split("\n")[0]!;
  }
}

/**
 * An Error with `.code`, as the addon throws them (Pool turns both into PoolFileErrors naming
 * the pool's path: ELOCKED for EWOULDBLOCK, ENOENT that openOrCreate creates on...).
 */
export function codeError(code: string, message: string, cause?: unknown): Error {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

/**
 * "pmstack: cannot <verb> <path>: <detail><words> (CODE)" with .code, for an error of node:fs
 * (or Deno's NotCapable, a missing permission: EACCES, with Deno's words naming the flag).
 */
function sysError(e: unknown, verb: string, path: string, detail = ""): Error {
  if (isOurs(e)) return e;
  const err = e as { code?: string; name?: string; message?: string };
  const denied = !err?.code && (err?.name === "NotCapable" || err?.name === "PermissionDenied");
  const code = err?.code ?? (denied ? "EACCES" : "EIO");
  const words = denied ? (err.message ?? "").split("\n")[0]! : plain(code, e);
  return codeError(code, `pmstack: cannot ${verb} ${path}: ${detail}${words} (${code})`, e);
}

/** An error this module (or the core of pmstack) made already: its words stand. */
function isOurs(e: unknown): e is Error {
  return e instanceof PmstackError || (e instanceof Error && "code" in e && e.message.startsWith("pmstack: "));
}

function lock(path: string, fd: number): { release: () => void } {
  const st = fstatSync(fd);
  const key = `${st.dev}:${st.ino}`;
  if (held.has(key)) throw sysError({ code: "EWOULDBLOCK" }, "lock", path);
  let release = () => {};
  const d = deno();
  if (d) {
    // flock, the lock the addon takes: pools stay exclusive across both adapters and runtimes
    if (denoLocks(d)) {
      const f = d.openSync(path, { read: true, write: true });
      if (!f.tryLockSync!(true)) {
        f.close();
        throw sysError({ code: "EWOULDBLOCK" }, "lock", path);
      }
      release = () => f.close();
    }
  } else {
    // Node has no flock of its own: the addon's, when it loads
    const nat = tryNative();
    if (!(nat instanceof PmstackError)) {
      const info = nat.open(path);
      release = () => nat.close(info.fd);
    }
  }
  held.add(key);
  return {
    release: () => {
      held.delete(key);
      release();
    },
  };
}

class NodeFile implements RandomAccessFile {
  #fd: number;
  #lock: { release: () => void };
  constructor(
    readonly path: string,
    fd: number,
    l: { release: () => void },
  ) {
    this.#fd = fd;
    this.#lock = l;
  }
  size(): number {
    return fstatSync(this.#fd).size;
  }
  read(into: Uint8Array, at: number): number {
    let done = 0;
    try {
      while (done < into.length) {
        const n = readSync(this.#fd, into, done, Math.min(CHUNK, into.length - done), at + done);
        if (n === 0) break;
        done += n;
      }
    } catch (e) {
      throw sysError(e, "read", this.path);
    }
    return done;
  }
  write(from: Uint8Array, at: number): void {
    try {
      for (let done = 0; done < from.length;)
        done += writeSync(this.#fd, from, done, Math.min(CHUNK, from.length - done), at + done);
    } catch (e) {
      throw sysError(e, "write", this.path);
    }
  }
  sync(): void {
    try {
      fdatasyncSync(this.#fd);
    } catch (e) {
      throw sysError(e, "fdatasync", this.path);
    }
  }
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    try {
      closeSync(fd);
    } finally {
      this.#lock.release();
    }
  }
}

function nodeFileSystem(): FileSystem {
  return {
    get lockNote() {
      const d = deno();
      if (d) return denoLocks(d) ? "" : "locked in this process only: this Deno has no FsFile.tryLockSync";
      return tryNative() instanceof PmstackError
        ? "locked in this process only: Node has no flock without the addon"
        : "";
    },
    exists(path) {
      try {
        lstatSync(path);
        return true;
      } catch (e) {
        return (e as { code?: string }).code !== "ENOENT";
      }
    },
    open(path) {
      let fd: number;
      try {
        fd = openSync(path, "r+");
      } catch (e) {
        throw sysError(e, "open", path);
      }
      try {
        if (!fstatSync(fd).isFile())
          throw codeError("EINVAL", `pmstack: cannot open ${path}: it is not a regular file (EINVAL)`);
        return new NodeFile(path, fd, lock(path, fd));
      } catch (e) {
        closeSync(fd);
        throw sysError(e, "lock", path);
      }
    },
    create(path, size, header) {
      if (size <= 0 || size % 4096 || header.length > size)
        throw codeError("EINVAL", `pmstack: cannot create ${path}: bad size ${size} (EINVAL)`);
      if (this.exists(path)) throw sysError({ code: "EEXIST" }, "create", path);
      const tmp = `${path}.tmp.${pid}`;
      let fd: number;
      try {
        // owner-only: a pool holds every stored value; the umask can only take bits away
        fd = openSync(tmp, "wx+", 0o600);
      } catch (e) {
        if ((e as { code?: string }).code === "EEXIST")
          throw codeError(
            "EEXIST",
            `pmstack: cannot create ${path}: a stale temporary file ${tmp} exists; remove it (EEXIST)`,
          );
        throw sysError(e, "create", path, "making the temporary file: ");
      }
      let l: { release: () => void } | null = null;
      let linked = false;
      let step = "locking the temporary file: ";
      try {
        l = lock(tmp, fd);
        const f = new NodeFile(tmp, fd, { release: () => {} });
        step = `allocating ${size} bytes: `;
        // written, not sparse: no later store can meet a hole (the mmap adapter's SIGBUS on a full disk)
        writeZeros(f, 0, size);
        step = "writing the header: ";
        f.write(header, 0);
        step = "fsync: ";
        fsyncSync(fd);
        step = "linking the temporary file: ";
        linkSync(tmp, path);
        linked = true;
        step = "removing the temporary file: ";
        unlinkSync(tmp);
        step = "fsync of its directory: ";
        syncDir(path);
        return new NodeFile(path, fd, l);
      } catch (e) {
        if (linked) closeQuietly(() => unlinkSync(path));
        closeQuietly(() => unlinkSync(tmp));
        closeQuietly(() => closeSync(fd));
        l?.release();
        const code = (e as { code?: string }).code;
        // reworded for the pool's path, from the system's error under ours
        const raw = isOurs(e) && e.cause !== undefined ? e.cause : e;
        throw sysError(raw, "create", path, code === "EEXIST" ? "" : step);
      }
    },
    medium(path) {
      try {
        return mediumName(Number(statfsSync(path).type));
      } catch {
        return "unknown"; // Deno without --allow-sys
      }
    },
  };
}

function syncDir(path: string): void {
  const d = openSync(dirname(path), "r");
  try {
    fsyncSync(d);
  } finally {
    closeSync(d);
  }
}

function mediumName(type: number): string {
  switch (type) {
    case 0x01021994:
      return "tmpfs";
    case 0xef53:
      return "ext4";
    case 0x58465342:
      return "xfs";
    case 0x9123683e:
      return "btrfs";
    default:
      return `fs-0x${type.toString(16)}`;
  }
}

function closeQuietly(step: () => void): void {
  try {
    step();
  } catch {
    // the error being thrown says what went wrong first
  }
}

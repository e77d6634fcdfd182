// The OPFS adapter: the file adapter (host/store-file.ts: the same FileStore, the same on-disk
// format, the same persist path) over a browser's origin private file system. A pool file is a
// RandomAccessFile over a FileSystemSyncAccessHandle: read and write with { at }, flush as the
// durability point of each persist (where node:fs fdatasyncs), getSize, truncate.
//
// The Pool's file work is synchronous, but OPFS opens are not (getFileHandle and
// createSyncAccessHandle return Promises), and sync access handles exist only in dedicated
// Workers. So `await openOpfs(dir, names)` does every asynchronous step first, in a Worker: it
// opens the directory and each named pool file (created empty when missing: an empty file is
// no pool yet) and its journal if there is one, and takes their sync access handles. The pools
// then open, create and persist synchronously through it (PoolOptions.opfs), as through node:fs.
//
// Locks: a sync access handle is exclusive: while one is open on a file, no other tab, window or
// worker of the origin can open one (openOpfs then fails with ELOCKED). The directory holds its
// handles from openOpfs until its close(), so pools opened on it may close and open again
// meanwhile; one pool at a time per file (EWOULDBLOCK, as with node:fs in one process).

import { PmstackError, PoolFileError } from "./errors.js";
import { JOURNAL_SUFFIX, SUPERBLOCK_BYTES } from "./format.js";
import { codeError, type FileSystem, type RandomAccessFile } from "./store-file.js";

/** What the adapter uses of a FileSystemSyncAccessHandle. */
interface SyncAccessHandle {
  read(into: Uint8Array, opts: { at: number }): number;
  write(from: Uint8Array, opts: { at: number }): number;
  flush(): void;
  getSize(): number;
  truncate(size: number): void;
  close(): void;
}
/** What the adapter uses of a FileSystemFileHandle (createSyncAccessHandle only in Workers). */
interface OpfsFileHandle {
  createSyncAccessHandle?(): Promise<SyncAccessHandle>;
}
/** What the adapter uses of a FileSystemDirectoryHandle. */
export interface OpfsDirectoryHandle {
  readonly kind: "directory";
  readonly name: string;
  getDirectoryHandle(name: string, opts?: { create?: boolean }): Promise<OpfsDirectoryHandle>;
  getFileHandle(name: string, opts?: { create?: boolean }): Promise<unknown>;
}

interface Entry {
  /** The name as the pool sees it: a listed pool file, or its journal. */
  readonly name: string;
  /** null: absent (a journal that is not there). */
  handle: SyncAccessHandle | null;
  /** A pool file that holds no pool yet (empty, or an interrupted create): exists() says no. */
  empty: boolean;
  /** A pool holds it open now. */
  inUse: boolean;
}

/**
 * Opens directory `dir` of the origin private file system (a path under its root, "" for the
 * root, each part created when missing; or a FileSystemDirectoryHandle of it) and pre-opens the
 * pool files `names` in it, plus each one's journal (`<name>.journal`) if there is one, taking
 * their sync access handles. Pass the result as the pools' `opfs` option. Only in a dedicated
 * Worker (where sync access handles exist), in a secure context (https, or localhost).
 *
 * A missing pool file is created empty: an empty file (or one whose superblock is all zeros: a
 * create that did not finish) counts as absent, so Pool.openOrCreate creates the pool in it.
 * Fails with ELOCKED when another tab or worker holds one of the files, and with nothing left
 * open on any failure.
 */
export async function openOpfs(dir: string | OpfsDirectoryHandle, names: readonly string[]): Promise<OpfsDirectory> {
  if (!Array.isArray(names) || names.length === 0)
    throw new TypeError("pmstack: openOpfs(dir, names): names must list the pool files to pre-open, e.g. ['app.pm']");
  const seen = new Set<string>();
  for (const n of names) {
    checkName(n, "a pool file name");
    if (n.endsWith(JOURNAL_SUFFIX))
      throw new TypeError(`pmstack: openOpfs: ${n} is a journal's name: list the pool file, its journal comes with it`);
    if (seen.has(n)) throw new TypeError(`pmstack: openOpfs: ${n} is listed twice`);
    seen.add(n);
  }
  const { handle, label } = await directory(dir);
  const entries = new Map<string, Entry>();
  try {
    for (const name of names) {
      const pool = await fileHandle(handle, label, name, true);
      entries.set(name, { name, handle: await syncHandle(pool!, label, name), empty: false, inUse: false });
      const jname = name + JOURNAL_SUFFIX;
      const journal = await fileHandle(handle, label, jname, false);
      entries.set(jname, {
        name: jname,
        handle: journal ? await syncHandle(journal, label, jname) : null,
        empty: false,
        inUse: false,
      });
    }
    for (const name of names) {
      const e = entries.get(name)!;
      e.empty = holdsNoPool(e.handle!, label, name);
    }
  } catch (e) {
    for (const x of entries.values()) quietly(() => x.handle?.close());
    throw e;
  }
  return new OpfsDirectory(label, names, entries);
}

/** A directory of the origin private file system with its pool files pre-opened (openOpfs). */
export class OpfsDirectory implements FileSystem {
  /** The directory as openOpfs was given it ("/" for the root), for messages. */
  readonly path: string;
  /** The pool files pre-opened, in the order given. */
  readonly names: readonly string[];
  /** A sync access handle is exclusive in the whole browser: nothing to add to describe(). */
  readonly lockNote = "";
  #entries: Map<string, Entry>;
  #closed = false;

  /** @internal openOpfs makes these. */
  constructor(path: string, names: readonly string[], entries: Map<string, Entry>) {
    this.path = path;
    this.names = Object.freeze([...names]);
    this.#entries = entries;
  }

  exists(path: string): boolean {
    const e = this.#entry(path, "open");
    return e.handle !== null && !e.empty;
  }

  open(path: string): RandomAccessFile {
    const e = this.#entry(path, "open");
    if (!e.handle || e.empty)
      throw codeError("ENOENT", `pmstack: cannot open ${this.#where(path)}: no such file or directory (ENOENT)`);
    return this.#take(e, "open");
  }

  create(path: string, size: number, header: Uint8Array): RandomAccessFile {
    const e = this.#entry(path, "create");
    if (!Number.isInteger(size) || size <= 0 || size % 4096 || header.length > size)
      throw codeError("EINVAL", `pmstack: cannot create ${this.#where(path)}: bad size ${size} (EINVAL)`);
    if (!e.handle)
      throw codeError(
        "EINVAL",
        `pmstack: cannot create ${this.#where(path)}: only the pre-opened pool files are created here (EINVAL)`,
      );
    if (!e.empty) throw codeError("EEXIST", `pmstack: cannot create ${this.#where(path)}: it already exists (EEXIST)`);
    const f = this.#take(e, "create");
    const h = e.handle;
    let step = "";
    try {
      // the size first, zeros (truncate pads with zeros) made durable; the superblock last: a
      // create cut short leaves a file whose superblock is zeros, which counts as absent
      step = `allocating ${size} bytes: `;
      h.truncate(0);
      h.truncate(size);
      h.flush();
      step = "writing the header: ";
      f.write(header, 0);
      step = "flush: ";
      h.flush();
    } catch (err) {
      quietly(() => h.truncate(0));
      f.close();
      throw domError(err, "create", this.#where(path), step);
    }
    e.empty = false;
    return f;
  }

  medium(): string {
    return "opfs";
  }

  /**
   * Closes every access handle, releasing the files to other tabs and workers. Fails with
   * EBUSY, closing nothing, while a pool still has one of them open: close the pools first.
   * Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    const busy = [...this.#entries.values()].filter((e) => e.inUse).map((e) => e.name);
    if (busy.length)
      throw new PmstackError(
        "EBUSY",
        `pmstack: cannot close OPFS directory ${this.path}: ${busy.join(", ")} still open in a pool`,
      );
    this.#closed = true;
    for (const e of this.#entries.values()) {
      const h = e.handle;
      e.handle = null;
      if (h) quietly(() => h.close());
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  #entry(path: string, verb: string): Entry {
    if (this.#closed)
      throw codeError(
        "ECLOSED",
        `pmstack: cannot ${verb} ${this.#where(path)}: the OPFS directory is closed (ECLOSED)`,
      );
    const e = this.#entries.get(path);
    if (!e)
      throw codeError(
        "EINVAL",
        `pmstack: cannot ${verb} ${this.#where(path)}: openOpfs pre-opened only ${this.names.join(", ")} ` +
          "(and their journals) there: list it in openOpfs(dir, names) (EINVAL)",
      );
    return e;
  }

  #take(e: Entry, verb: string): RandomAccessFile {
    if (e.inUse)
      throw codeError(
        "EWOULDBLOCK",
        `pmstack: cannot ${verb} ${this.#where(e.name)}: it is open in another pool (EWOULDBLOCK)`,
      );
    e.inUse = true;
    return new OpfsFile(e.name, this.#where(e.name), e.handle!, () => {
      e.inUse = false;
    });
  }

  #where(name: string): string {
    return `${name} in OPFS directory ${this.path}`;
  }
}

/** A pre-opened file: closing it hands it back to its directory, which keeps the handle. */
class OpfsFile implements RandomAccessFile {
  #h: SyncAccessHandle | null;
  #release: () => void;
  readonly #where: string;
  constructor(
    readonly path: string,
    where: string,
    h: SyncAccessHandle,
    release: () => void,
  ) {
    this.#where = where;
    this.#h = h;
    this.#release = release;
  }
  size(): number {
    try {
      return this.#handle().getSize();
    } catch (e) {
      throw domError(e, "stat", this.#where);
    }
  }
  read(into: Uint8Array, at: number): number {
    const h = this.#handle();
    let done = 0;
    try {
      while (done < into.length) {
        const n = h.read(into.subarray(done), { at: at + done });
        if (n === 0) break;
        done += n;
      }
    } catch (e) {
      throw domError(e, "read", this.#where);
    }
    return done;
  }
  write(from: Uint8Array, at: number): void {
    const h = this.#handle();
    try {
      for (let done = 0; done < from.length;) {
        const n = h.write(from.subarray(done), { at: at + done });
        if (n <= 0) throw codeError("EIO", `pmstack: cannot write ${this.#where}: the write made no progress (EIO)`);
        done += n;
      }
    } catch (e) {
      throw domError(e, "write", this.#where);
    }
  }
  sync(): void {
    try {
      this.#handle().flush();
    } catch (e) {
      throw domError(e, "flush", this.#where);
    }
  }
  close(): void {
    if (!this.#h) return;
    this.#h = null;
    this.#release();
  }
  #handle(): SyncAccessHandle {
    if (!this.#h) throw codeError("ECLOSED", `pmstack: ${this.#where} is closed (ECLOSED)`);
    return this.#h;
  }
}

function checkName(n: unknown, what: string): asserts n is string {
  if (typeof n !== "string" || n === "" || n === "." || n === ".." || /[/\\\0]/.test(n))
    throw new TypeError(
      `pmstack: openOpfs: ${what} must be a plain file name (no "/", "\\", "." or ".."), got ${JSON.stringify(n)}`,
    );
}

async function directory(dir: string | OpfsDirectoryHandle): Promise<{ handle: OpfsDirectoryHandle; label: string }> {
  if (typeof dir === "object" && dir !== null && dir.kind === "directory" && typeof dir.getFileHandle === "function")
    return { handle: dir, label: dir.name || "/" };
  if (typeof dir !== "string")
    throw new TypeError(
      "pmstack: openOpfs(dir, names): dir must be a path under the OPFS root or a FileSystemDirectoryHandle",
    );
  const storage = (globalThis as { navigator?: { storage?: { getDirectory?(): Promise<OpfsDirectoryHandle> } } })
    .navigator?.storage;
  if (typeof storage?.getDirectory !== "function")
    throw new PmstackError(
      "ENOTSUP",
      "pmstack: this runtime has no origin private file system (navigator.storage.getDirectory): " +
        "OPFS needs a browser and a secure context (https, or localhost)",
    );
  if (typeof (globalThis as { FileSystemSyncAccessHandle?: unknown }).FileSystemSyncAccessHandle !== "function")
    throw new PmstackError(
      "ENOTSUP",
      "pmstack: OPFS sync access handles exist only in a dedicated Worker: open the pool there (nothing was created)",
    );
  let h: OpfsDirectoryHandle;
  try {
    h = await storage.getDirectory();
  } catch (e) {
    throw domError(e, "open", "the OPFS root");
  }
  const parts = dir.split("/").filter((p) => p !== "");
  for (const [k, part] of parts.entries()) {
    checkName(part, "each part of the directory path");
    try {
      h = await h.getDirectoryHandle(part, { create: true });
    } catch (e) {
      throw domError(e, "open", `OPFS directory /${parts.slice(0, k + 1).join("/")}`);
    }
  }
  return { handle: h, label: "/" + parts.join("/") };
}

/** The file `name` in `dir`, created (empty) if `create`; null if absent and not created. */
async function fileHandle(
  dir: OpfsDirectoryHandle,
  label: string,
  name: string,
  create: boolean,
): Promise<OpfsFileHandle | null> {
  try {
    return (await dir.getFileHandle(name, { create })) as OpfsFileHandle;
  } catch (e) {
    if (!create && (e as { name?: string })?.name === "NotFoundError") return null;
    throw domError(e, "open", `${name} in OPFS directory ${label}`);
  }
}

async function syncHandle(f: OpfsFileHandle, label: string, name: string): Promise<SyncAccessHandle> {
  if (typeof f.createSyncAccessHandle !== "function")
    throw new PmstackError(
      "ENOTSUP",
      `pmstack: cannot open ${name} in OPFS directory ${label}: sync access handles exist only in a dedicated ` +
        "Worker: open the pool there",
    );
  try {
    return await f.createSyncAccessHandle();
  } catch (e) {
    if ((e as { name?: string })?.name === "NoModificationAllowedError")
      throw new PoolFileError(
        "ELOCKED",
        `${name} in OPFS directory ${label}`,
        "it is locked: another tab, window or worker of this origin has it open",
        { cause: e },
      );
    throw domError(e, "open", `${name} in OPFS directory ${label}`);
  }
}

/** True for an empty file, or one whose superblock region is all zeros (a create cut short). */
function holdsNoPool(h: SyncAccessHandle, label: string, name: string): boolean {
  try {
    const size = h.getSize();
    if (size === 0) return true;
    const head = new Uint8Array(Math.min(size, SUPERBLOCK_BYTES));
    let got = 0;
    while (got < head.length) {
      const n = h.read(head.subarray(got), { at: got });
      if (n === 0) break;
      got += n;
    }
    return head.every((b) => b === 0);
  } catch (e) {
    throw domError(e, "read", `${name} in OPFS directory ${label}`);
  }
}

/**
 * "pmstack: cannot <verb> <where>: <detail><words> (CODE)" with .code for a DOMException of the
 * file system (QuotaExceededError: ENOSPC; a closed handle: EBADF; others: EIO).
 */
function domError(e: unknown, verb: string, where: string, detail = ""): Error {
  if (e instanceof PmstackError || (e instanceof Error && "code" in e && e.message.startsWith("pmstack: "))) return e;
  const err = e as { name?: string; message?: string };
  const code =
    err?.name === "QuotaExceededError"
      ? "ENOSPC"
      : err?.name === "InvalidStateError"
        ? "EBADF"
        : err?.name === "TypeMismatchError"
          ? "EISDIR"
          : "EIO";
  const words = `${err?.name ?? "Error"}: ${(err?.message ?? String(e)).split("\n")[0]}`;
  return codeError(code, `pmstack: cannot ${verb} ${where}: ${detail}${words} (${code})`, e);
}

function quietly(step: () => void): void {
  try {
    step();
  } catch {
    // the error being thrown says what went wrong first
  }
}

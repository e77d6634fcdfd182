// The file adapter over node:fs (Node, and Deno with --allow-read and --allow-write): a
// FileSystem of positional reads and writes, fdatasync, and a lock per pool file (the addon's
// flock when it loads, Deno's FsFile.tryLockSync, and always one open per file in this process).
// The store itself, runtime-neutral, is host/store-file.ts.

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
import { PmstackError } from "./errors.js";
import { tryNative } from "./native.js";
import type { StoreAdapter } from "./store.js";
import { adapterOver, CHUNK, codeError, writeZeros, type FileSystem, type RandomAccessFile } from "./store-file.js";

/** The file adapter over node:fs (Node and Deno). */
export const fileAdapter: StoreAdapter = adapterOver(nodeFileSystem());

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

// What the `pmstack` command does to keep its files and secrets private: the checks on pool
// files others may write, secret files others may read, the owner-only control socket, and
// the owner-only, durable replacement of a small file (nodes.conf, the workers' manifest).
// docs/pm-format.md ("Who may read a pool") and docs/cli.md describe them.

import {
  chmodSync,
  closeSync,
  fsyncSync,
  lstatSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname } from "node:path";
import type { Server } from "node:net";
import { PmstackError } from "./errors.js";

const octal = (m: number): string => (m & 0o777).toString(8).padStart(4, "0");

/**
 * Replaces `path` with `data`, atomically and durably, owner-only: a temporary file written and
 * fsynced, renamed over the old one, the directory fsynced. A kill -9 or a power cut at any
 * point leaves the old contents or the new.
 */
export function replaceFileDurably(path: string, data: Uint8Array): void {
  const tmp = `${path}.tmp.${process.pid}`;
  const fd = openSync(tmp, "w", 0o600);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  const dfd = openSync(dirname(path), "r");
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
}

/**
 * The pool file and the files beside it (its journal) must not be writable by the group or
 * others: whoever can write them can change every stored value and what the server runs on.
 * Refuses (EPERM) unless `insecure`, which prints a loud warning instead. Missing files pass.
 */
export function checkPoolFiles(paths: string[], insecure: boolean, warn: (s: string) => void): void {
  for (const p of paths) {
    let mode: number;
    try {
      mode = statSync(p).mode;
    } catch {
      continue; // not there (yet): created owner-only
    }
    if ((mode & 0o022) === 0) continue;
    const who = mode & 0o002 ? "every user" : "its group";
    const msg = `${p} is writable by ${who} (mode ${octal(mode)}): they can change every stored value`;
    if (!insecure)
      throw new PmstackError(
        "EPERM",
        `pmstack: ${msg}. Make it private (chmod 600 ${p}) or start with --insecure-pool to use it anyway`,
      );
    warn(`pmstack: WARNING: ${msg} (--insecure-pool)`);
  }
}

/**
 * A secret from a file (a password, a token): its first line, without the line end. Refused if
 * others may read it (mode & 0o007), or, with `ownerOnly`, anyone but its owner (mode & 0o077);
 * if it is empty; or if it is not a regular file.
 */
export function readSecretFile(path: string, what: string, ownerOnly: boolean): string {
  let st;
  try {
    st = lstatSync(path);
  } catch (e) {
    throw new PmstackError("ENOENT", `pmstack: ${what} ${path}: ${(e as Error).message}`);
  }
  if (!st.isFile()) throw new PmstackError("EINVAL", `pmstack: ${what} ${path} is not a regular file`);
  const bad = ownerOnly ? 0o077 : 0o007;
  if (st.mode & bad)
    throw new PmstackError(
      "EPERM",
      `pmstack: ${what} ${path} is readable or writable by ${st.mode & 0o007 ? "every user" : "its group"} ` +
        `(mode ${octal(st.mode)}); it must be ${ownerOnly ? "owner-only" : "private to its owner and group"}: chmod 600 ${path}`,
    );
  if (st.size > 65536) throw new PmstackError("EINVAL", `pmstack: ${what} ${path} is larger than 64 KiB`);
  const text = readFileSync(path, "utf8").split(/\r?\n/)[0]!;
  if (text === "") throw new PmstackError("EINVAL", `pmstack: ${what} ${path} is empty (the secret is its first line)`);
  return text;
}

/**
 * Listens on a Unix socket only its owner can connect to: made under umask 077 (connecting
 * needs write permission on the socket), then chmod 600 for a umask a worker could not set.
 */
export function listenPrivate(server: Server, path: string): void {
  let old: number | null = null;
  try {
    old = process.umask(0o077);
  } catch {
    // worker threads cannot set the umask: the chmod below still applies
  }
  try {
    server.listen(path); // a pipe binds synchronously, inside the umask
  } finally {
    if (old !== null) process.umask(old);
  }
  try {
    chmodSync(path, 0o600);
  } catch {
    // not bound (the listen error is reported by the server's error handler)
  }
}

// Scratch directories for tests: one on tmpfs (/dev/shm) and one on the disk, removed at exit.
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const made = [];
process.on("exit", () => {
  for (const d of made) rmSync(d, { recursive: true, force: true });
});

export function scratchDir(kind = "tmpfs") {
  const base = kind === "tmpfs" && existsSync("/dev/shm") ? "/dev/shm" : tmpdir();
  const d = mkdtempSync(join(base, "pmstack-test-"));
  made.push(d);
  return d;
}

/** The media the tests run on: tmpfs and the disk's file system. */
export const MEDIA = ["tmpfs", "disk"];

// Loads the Node-API addon (native-host/, built to build/pmstack_native.node). Node loads it
// with require(); Deno loads the same file through node:module's createRequire when run with
// -A or --allow-ffi. Nothing loads it at import: the first pool opened through the mmap
// adapter does (host/store-mmap.ts), so a runtime without it still imports the bundle and
// uses the file adapter (host/store-file.ts over host/store-node.ts).

import { createRequire } from "node:module";
import { PmstackError } from "./errors.js";
import { countCalls, countingCalls } from "./calls.js";

export type PersistMode = "clwb" | "clflushopt" | "clflush" | "msync" | "strict" | "journal";
/**
 * "strict" (tests): MAP_PRIVATE, stores reach the file only through persist (pwrite).
 * "journal" (block devices): MAP_PRIVATE, persists are entries of the journal (journalOpen).
 */
export type MapMode = "auto" | "msync" | "clwb" | "clflushopt" | "strict" | "journal";

export interface FileInfo {
  fd: number;
  size: number;
  medium: string;
  dax?: boolean;
}
export interface MapResult {
  handle: object;
  persistMode: PersistMode;
  dax: boolean;
}
export interface JournalOpenOptions {
  /** true: create the file exclusively (EEXIST if it exists); false: open it (ENOENT). */
  create: boolean;
  /** Ring capacity in bytes when creating: a multiple of 4096, at least 1 MiB. */
  bytes?: number;
  /** The pool's uuid (16 bytes): an opened journal of another pool is refused (EUUID). */
  uuid: Uint8Array;
  /** Payload bytes per batch written into the journal; a larger batch's payload goes in place. */
  inlineMax?: number;
  /** Ring usage in bytes that triggers a checkpoint (default capacity / 4). */
  checkpointAt?: number;
  /** Called on the JS thread after batches become durable, and once with the error if it fails. */
  onComplete?: ((done: number, err?: Error) => void) | null;
}
/** What journalReplay found (docs/pm-format.md). */
export interface JournalReplay {
  entries: number;
  /** Ring bytes from the start mark to the end of the last entry applied. */
  bytes: number;
  startSeq: number;
  nextSeq: number;
  lastGen: number;
  /** Why the scan stopped early ("magic", "position", "sequence", "length", "crc", "range"), or "". */
  damage: string;
  discardedBytes: number;
}
export interface JournalStats {
  capacity: number;
  usage: number;
  start: number;
  tail: number;
  entries: number;
  batches: number;
  payloadBytes: number;
  inPlaceBytes: number;
  metaBytes: number;
  fdatasyncs: number;
  poolFdatasyncs: number;
  pwriteCalls: number;
  checkpoints: number;
  checkpointBytes: number;
  lastCheckpointMs: number;
  waitsForSpace: number;
  queued: number;
}
export interface Native {
  create(path: string, size: number, header: Uint8Array): FileInfo;
  open(path: string): FileInfo;
  pread(fd: number, into: Uint8Array, offset: number): number;
  close(fd: number): void;
  /** Grows an open pool file to `size` bytes (posix_fallocate, fsync); never shrinks. */
  extend(fd: number, size: number): void;
  map(
    memory: WebAssembly.Memory,
    view: Uint8Array,
    memOffset: number,
    fd: number,
    length: number,
    mode: MapMode,
  ): MapResult;
  persist(handle: object, memOffset: number, length: number): void;
  persistBatch(handle: object, ranges: Uint32Array, count: number): number;
  persistRanges(handle: object, tableMemOffset: number, count: number): number;
  unmap(handle: object): void;
  cpuFeatures(): { clwb: boolean; clflushopt: boolean; clflush: boolean };
  journalOpen(map: object, path: string, opts: JournalOpenOptions): object;
  journalReplay(journal: object): JournalReplay;
  journalSubmit(journal: object, tableMemOffset: number, count: number, payloadCount: number, gen: number): number;
  journalSync(journal: object, tableMemOffset: number, count: number, payloadCount: number, gen: number): number;
  journalWait(journal: object, seq: number): void;
  journalDone(journal: object): number;
  journalCheckpoint(journal: object, wait: boolean): void;
  journalStats(journal: object): JournalStats;
  journalClose(journal: object, checkpoint: boolean): void;
  /** The journal's CRC-32C (SSE4.2 when the CPU has it, else a table; tableOnly forces the table). */
  crc32c(data: Uint8Array, tableOnly?: boolean): number;
}

let cached: Native | PmstackError | undefined;

/**
 * The addon, loaded once (the first call tries; later ones return what it found: the module,
 * or throw the same error). `path` overrides where it is looked for, and is never cached.
 */
export function native(path?: string): Native {
  const r = path ? load(path) : (cached ??= load());
  if (r instanceof PmstackError) throw r;
  return r;
}

/** The addon, or the error that says why it cannot load (ENATIVE), without throwing. */
export function tryNative(): Native | PmstackError {
  return (cached ??= load());
}

function load(path?: string): Native | PmstackError {
  const file = path ?? new URL("./pmstack_native.node", import.meta.url).pathname;
  try {
    const addon = createRequire(import.meta.url)(file) as Native;
    return countingCalls() ? countCalls("addon", addon) : addon;
  } catch (e) {
    return new PmstackError(
      "ENATIVE",
      `pmstack: cannot load the native addon ${file}: ${String((e as Error).message)
        .split("\n")[0]!
        .replace(/\.$/, "")}. ` + "Run `npm install` (it builds the addon); under Deno, run with -A or --allow-ffi.",
      { cause: e },
    );
  }
}

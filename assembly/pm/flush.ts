// The flush table: what the next group commit must make durable, as u32 pairs (memory offset,
// length) in the arena. The core never flushes: the log (and the extent builder) append the
// ranges they write here, and the host hands the table to the pool's persistence (cache-line
// flushes, msync, or a journal entry: docs/persistence.md). Payload ranges come first; the
// log's record ranges and its tail slot are appended when the group is sealed (log.ts).

import { arenaAlloc } from "../arena";

let table: usize = 0;
let cap: u32 = 0;
let n: u32 = 0;
/** The pairs were sealed and handed to the host: the next use starts an empty table. */
let handed = false;

@inline function settle(): void {
  if (handed) {
    handed = false;
    n = 0;
  }
}

/** Reserves room for `pairs` pairs. Once, at set-up. */
export function flushReserve(pairs: u32): i32 {
  if (table != 0) return 0;
  const t = arenaAlloc(<usize>pairs << 3, 64);
  if (t < 0) return <i32>t;
  table = <usize>t;
  cap = pairs;
  return 0;
}

/** Address of the table (its pairs start here). */
export function flushTable(): usize {
  return table;
}

/** Pairs in the table now. */
export function flushCount(): u32 {
  settle();
  return n;
}

/** Pairs the log's seal appends after the payload: up to two record runs and the tail slot. */
export const SEAL_PAIRS: u32 = 3;

/** Payload pairs that still fit (room for the seal's own pairs is kept back). */
export function flushRoom(): u32 {
  settle();
  return n + SEAL_PAIRS >= cap ? 0 : cap - n - SEAL_PAIRS;
}

/** Appends one range. Payload callers checked flushRoom(). Zero-length ranges are skipped. */
export function flushAdd(at: usize, len: u32): void {
  settle();
  if (len == 0) return;
  store<u32>(table + (<usize>n << 3), <u32>at);
  store<u32>(table + (<usize>n << 3) + 4, len);
  n++;
}

/** Empties the table now. */
export function flushReset(): void {
  handed = false;
  n = 0;
}

/**
 * The table as it stands is handed to the host (a seal): the host consumes it before it calls
 * into the core again, and the next range added starts a new table.
 */
export function flushHanded(): void {
  handed = true;
}

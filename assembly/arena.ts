// The core's arena: every piece of core state is carved out of Wasm memory here, once, at
// set-up. After seal() nothing is allocated again, so the core never grows memory while the
// host holds views into it, and the PM region mapped above arenaEnd() is never overwritten.
//
// The AssemblyScript runtime is the stub (bump allocator from __heap_base); the core never
// uses managed allocation, and the arena starts 64 KiB above __heap_base as a guard anyway.

import { E_NOMEM, E_SEALED, E_ARG } from "./layout";

const PAGE: usize = 65536;

let arenaStart: usize = 0;
let arenaTop: usize = 0;
let sealed = false;

function ensureInit(): void {
  if (arenaStart == 0) {
    arenaStart = (__heap_base + PAGE + PAGE - 1) & ~(PAGE - 1);
    arenaTop = arenaStart;
  }
}

/**
 * Allocates `size` zeroed bytes aligned to `align` (a power of two). Returns the offset, or a
 * negative error code (as usize it is huge, so callers check `isErr`).
 */
export function arenaAlloc(size: usize, align: usize): isize {
  ensureInit();
  if (sealed) return E_SEALED;
  if (size == 0 || align == 0 || (align & (align - 1)) != 0) return E_ARG;
  const at = (arenaTop + align - 1) & ~(align - 1);
  const end = at + size;
  if (end < at || end > 0xffff0000) return E_NOMEM;
  const have = (<usize>memory.size()) << 16;
  if (end > have) {
    const pages = <i32>((end - have + PAGE - 1) >> 16);
    if (memory.grow(pages) < 0) return E_NOMEM;
  }
  memory.fill(at, 0, size);
  arenaTop = end;
  return <isize>at;
}

/** First byte of the arena. */
export function arenaBase(): usize {
  ensureInit();
  return arenaStart;
}

/** One past the last byte allocated so far. The PM region must start at or above this. */
export function arenaEnd(): usize {
  ensureInit();
  return arenaTop;
}

/** Ends the set-up phase: later arenaAlloc calls fail with E_SEALED. */
export function arenaSeal(): void {
  ensureInit();
  sealed = true;
}

export function arenaSealed(): bool {
  return sealed;
}

// Boundary call counts, for profiling what a request costs (bench/durable --prof, bench/core
// --prof): with PMSTACK_COUNT_CALLS=1 in the environment when a core is instantiated or the
// addon loaded, every call from JavaScript into that core's exports or into the addon is counted
// by function name. Counting wraps each function in a JavaScript one, which slows every call:
// count in a pass of its own, not while timing. Without the variable nothing is wrapped.

const counts = new Map<string, number>();

/**
 * Whether PMSTACK_COUNT_CALLS=1 is set now (read when a core or the addon is loaded). false
 * where the environment cannot be read (Deno without --allow-env, browsers).
 */
export function countingCalls(): boolean {
  try {
    const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
    return env?.PMSTACK_COUNT_CALLS === "1";
  } catch {
    return false;
  }
}

/**
 * A copy of `o` whose functions count their calls under `side`:name and then call the original;
 * other properties (a memory, constants) are copied as they are.
 */
export function countCalls<T extends object>(side: "wasm" | "addon", o: T): T {
  const out: Record<string, unknown> = {};
  for (const [name, v] of Object.entries(o)) {
    if (typeof v !== "function") {
      out[name] = v;
      continue;
    }
    const key = `${side}:${name}`;
    const f = v as (...a: unknown[]) => unknown;
    counts.set(key, counts.get(key) ?? 0);
    out[name] = function (this: unknown, ...a: unknown[]) {
      counts.set(key, counts.get(key)! + 1);
      return f.apply(this === out ? o : this, a);
    };
  }
  return out as T;
}

/**
 * The calls counted so far in this thread: into the Wasm core (every instance), into the addon,
 * and by function ("wasm:stackPoll", "addon:tx", ...). All zero unless PMSTACK_COUNT_CALLS=1.
 */
export function boundaryCalls(): { wasm: number; addon: number; byName: Record<string, number> } {
  let wasm = 0;
  let addon = 0;
  const byName: Record<string, number> = {};
  for (const [k, v] of counts) {
    byName[k] = v;
    if (k.startsWith("wasm:")) wasm += v;
    else addon += v;
  }
  return { wasm, addon, byName };
}

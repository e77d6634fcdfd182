// host/native.ts in the browser build: there is no addon to load in a browser. The mmap adapter,
// the journal and the NIC queues need it; they fail with ENATIVE and these words, and
// persistence "auto" goes on without them (host/pool.ts): a pool there lives in memory
// (Pool.volatile, a stack without a pool path) or in the origin private file system ("opfs").

import { PmstackError } from "../errors.js";
import type { Native } from "../native.js";

export type * from "../native.js";

function unavailable(): PmstackError {
  return new PmstackError(
    "ENATIVE",
    "pmstack: the native addon (the mmap adapter, the journal, NIC queues) does not exist in a browser: " +
      'a pool there is volatile (Pool.volatile, a stack without pool.path) or in OPFS (persistence "opfs", ' +
      "with the directory from `await openOpfs(dir, names)`)",
  );
}

export function native(_path?: string): Native {
  throw unavailable();
}

export function tryNative(): Native | PmstackError {
  return unavailable();
}

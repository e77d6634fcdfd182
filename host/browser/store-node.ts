// host/store-node.ts in the browser build: no node:fs, so no "file" adapter. A pool file in a
// browser lives in the origin private file system (host/store-opfs.ts), whose directory the
// pool is given (PoolOptions.opfs); without one, persistence "auto" lands here, which says so.

import { PmstackError } from "../errors.js";
import type { StoreAdapter } from "../store.js";

function unavailable(): PmstackError {
  return new PmstackError(
    "ENOTSUP",
    'pmstack: a browser has no file system for the "file" adapter: keep the pool file in OPFS ' +
      '(persistence "opfs", { opfs: await openOpfs(dir, names) }, in a Worker) or the pool in memory (Pool.volatile)',
  );
}

export const fileAdapter: StoreAdapter = {
  persistence: "file",
  exists() {
    throw unavailable();
  },
  create() {
    throw unavailable();
  },
  open() {
    throw unavailable();
  },
};

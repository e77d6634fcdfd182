// The cluster configuration's file (Redis's nodes.conf), beside the pool by default: replaced
// atomically and durably (replaceFileDurably), so a kill -9 or a power cut at any point leaves
// the old configuration or the new.

import { readFileSync } from "node:fs";
import { replaceFileDurably } from "../../secure.js";
import type { ClusterConfigStore } from "./cluster.js";

export function clusterConfigFile(path: string): ClusterConfigStore {
  return {
    name: path,
    load() {
      try {
        return readFileSync(path, "latin1");
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw e;
      }
    },
    save(text) {
      replaceFileDurably(path, Buffer.from(text, "latin1"));
    },
  };
}

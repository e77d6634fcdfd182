// The cluster configuration's file (Redis's nodes.conf), beside the pool by default: replaced
// atomically (a temporary file written and fsynced, renamed over the old one, the directory
// fsynced), so a kill -9 or a power cut at any point leaves the old configuration or the new.

import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
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
      const tmp = `${path}.tmp.${process.pid}`;
      const fd = openSync(tmp, "w", 0o600);
      try {
        writeSync(fd, Buffer.from(text, "latin1"));
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
    },
  };
}

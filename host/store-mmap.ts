// The mmap adapter: the Node-API addon (native-host/pm.c, journal.c) maps the pool file into
// the Wasm memory with MAP_FIXED, so Wasm and JS stores land in the file's pages (zero copy),
// and persists are cache-line flushes + one fence (DAX), msync, pwrite (strict) or journal
// entries (block devices). Every call is one call into the addon: nothing is added on the
// persist path but the store's own method call.

import { FLAG_JOURNAL, JOURNAL_SUFFIX, defaultJournalBytes, uuidBytes } from "./format.js";
import { PoolFileError } from "./errors.js";
import { native, type JournalReplay, type MapMode, type Native } from "./native.js";
import type { JournalOps, JournalRequest, PoolJournal, PoolPersistMode, PoolStore, StoreAdapter } from "./store.js";

export const mmapAdapter: StoreAdapter = {
  persistence: "mmap",
  exists(path) {
    const nat = native();
    try {
      nat.close(nat.open(path).fd);
      return true;
    } catch (e) {
      return (e as { code?: string }).code !== "ENOENT";
    }
  },
  create(path, size, header) {
    const nat = native();
    const info = nat.create(path, size, header);
    return new MmapStore(nat, info.fd, info.size, info.medium, info.dax ?? false);
  },
  open(path) {
    const nat = native();
    const info = nat.open(path);
    return new MmapStore(nat, info.fd, info.size, info.medium, info.dax ?? false);
  },
};

class MmapStore implements PoolStore {
  readonly persistence = "mmap" as const;
  readonly note = "";
  #nat: Native;
  #fd: number;
  #handle: object | null = null;
  #mode: PoolPersistMode = "none";

  constructor(
    nat: Native,
    fd: number,
    readonly size: number,
    readonly medium: string,
    readonly fileDax: boolean,
  ) {
    this.#nat = nat;
    this.#fd = fd;
  }

  read(into: Uint8Array, at: number): number {
    return this.#nat.pread(this.#fd, into, at);
  }

  extend(size: number): void {
    this.#nat.extend(this.#fd, size);
  }

  place(memory: WebAssembly.Memory, memOffset: number, length: number, want: MapMode) {
    // "auto" on a block device is the journal; the addon's "auto" picks DAX (MAP_SYNC) or
    // msync. A DAX file the kernel does not report as such (before Linux 5.8) gets the
    // journal too: slower than cache-line flushes, never less durable.
    const mode = want === "auto" && !this.fileDax && this.medium !== "tmpfs" ? "journal" : want;
    const m = this.#nat.map(memory, new Uint8Array(memory.buffer), memOffset, this.#fd, length, mode);
    this.#handle = m.handle;
    this.#mode = m.persistMode;
    return { persistMode: m.persistMode as PoolPersistMode, dax: m.dax };
  }

  persist(memOffset: number, length: number): number {
    this.#nat.persist(this.#handle!, memOffset, length);
    return this.#mode === "msync" ? 1 : 0;
  }

  persistRanges(tableMemOffset: number, count: number): number {
    return this.#nat.persistRanges(this.#handle!, tableMemOffset, count);
  }

  persistBatch(ranges: Uint32Array, count: number): number {
    return this.#nat.persistBatch(this.#handle!, ranges, count);
  }

  /**
   * An existing journal is opened whatever the mode and replayed into the mapping, then
   * checkpointed (journal mode: it stays open) or closed after a final checkpoint (other
   * modes: the pool file alone holds what it acknowledged). Journal mode creates one if there
   * is none. A missing journal that the superblock says was used is EJOURNAL, unless an
   * explicit in-place mode asks to open the pool as it is.
   */
  openJournal(req: JournalRequest): { journal: JournalOps | null; info: PoolJournal | null } {
    const nat = this.#nat;
    const handle = this.#handle!;
    const { path, sb, want, created } = req;
    const jpath = path + JOURNAL_SUFFIX;
    const uuid = uuidBytes(sb.uuid);
    const journaled = this.#mode === "journal";
    let j: object | null = null;
    try {
      if (!created) {
        try {
          j = nat.journalOpen(handle, jpath, { create: false, uuid, onComplete: journaled ? req.onComplete : null });
        } catch (e) {
          if ((e as { code?: string }).code !== "ENOENT") throw e;
        }
      }
      let replay: JournalReplay;
      if (j) {
        replay = nat.journalReplay(j);
        if (!journaled) {
          const capacity = nat.journalStats(j).capacity;
          const idle = j;
          j = null;
          nat.journalClose(idle, true);
          return { journal: null, info: { path: jpath, capacity, replay } };
        }
        nat.journalCheckpoint(j, true);
      } else {
        if (sb.flags & FLAG_JOURNAL && (want === "auto" || want === "journal"))
          throw new PoolFileError(
            "EJOURNAL",
            path,
            `its journal ${jpath} is missing: writes acknowledged since the last checkpoint would be lost; ` +
              "restore it or pass { mode: 'msync' } to open the pool as it is",
          );
        if (!journaled) return { journal: null, info: null };
        const bytes = req.journalBytes ?? defaultJournalBytes(sb.fileSize);
        j = nat.journalOpen(handle, jpath, { create: true, bytes, uuid, onComplete: req.onComplete });
        replay = nat.journalReplay(j);
      }
      const info = { path: jpath, capacity: nat.journalStats(j).capacity, replay };
      return { journal: journalOps(nat, j), info };
    } catch (e) {
      const open = j;
      if (open) closeQuietly(() => nat.journalClose(open, false));
      throw e;
    }
  }

  close(): void {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#fd = -1;
    try {
      if (this.#handle) this.#nat.unmap(this.#handle);
    } finally {
      this.#handle = null;
      this.#nat.close(fd);
    }
  }
}

function journalOps(nat: Native, j: object): JournalOps {
  return {
    submit: (t, n, p, g) => nat.journalSubmit(j, t, n, p, g),
    sync: (t, n, p, g) => nat.journalSync(j, t, n, p, g),
    wait: (seq) => nat.journalWait(j, seq),
    done: () => nat.journalDone(j),
    stats: () => nat.journalStats(j),
    checkpoint: (wait) => nat.journalCheckpoint(j, wait),
    close: (checkpoint) => nat.journalClose(j, checkpoint),
  };
}

/** Runs a clean-up step on a path that is already throwing: the first error is the one to report. */
function closeQuietly(step: () => void): void {
  try {
    step();
  } catch {
    // the error being thrown says what went wrong first
  }
}

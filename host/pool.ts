// Pool: a PM file of packet buffers mapped into the Wasm core's memory, with zero-copy views.
//
// Set-up order (the memory layout in docs/architecture.md):
//   1. pick the persistence adapter (host/store.ts: the addon's mmap, the file adapter, the
//      OPFS adapter in a browser, or memory only), open or create the file through it (locked), validate its superblock;
//   2. instantiate the core over a fresh Memory; reserve the pool's metadata and a scratch
//      array in the core's arena; run the caller's `configure` hook (the stack reserves its
//      tables here);
//   3. grow the memory once, place the file at the first Wasm page above the arena: mapped
//      MAP_FIXED (MAP_SHARED, or MAP_PRIVATE in the strict and journal modes), or read in;
//   4. open the pool's journal if it has one, replaying what it holds into memory, or create
//      one in journal mode (docs/persistence.md);
//   5. attach the buffer region and seal the arena.
// After that the memory never grows, so views handed out stay valid for the pool's life.
// Every durability step goes through the store (one interface, one method call).

import {
  BUF_SIZE,
  E_BOUNDS,
  E_EMPTY,
  E_FREE,
  E_NOTFREE,
  E_RANGE,
  E_REFMAX,
  E_STATE,
  OWNER_COUNT,
  OWNER_NAMES,
  WASM_PAGE,
  type Owner,
} from "./abi.js";
import { instantiateCore, type CoreExports, type CoreInstance } from "./core.js";
import {
  decode,
  encode,
  FLAG_JOURNAL,
  grown,
  HEADER_BYTES,
  JOURNAL_SUFFIX,
  layout,
  MAX_POOL_BUFFERS,
  type Superblock,
} from "./format.js";
import {
  BufferNameError,
  PmstackError,
  PoolClosedError,
  PoolCorruptError,
  PoolExhaustedError,
  PoolFileError,
} from "./errors.js";
import { native, tryNative, type JournalStats, type MapMode } from "./native.js";
import {
  durabilityOf,
  MemoryStore,
  type JournalOps,
  type Persistence,
  type PersistenceOption,
  type PoolDurability,
  type PoolJournal,
  type PoolPersistMode,
  type PoolStore,
  type StoreAdapter,
} from "./store.js";
import { mmapAdapter } from "./store-mmap.js";
import { adapterOver, fileModeOf, modeError } from "./store-file.js";
import { fileAdapter } from "./store-node.js";
import { OpfsDirectory } from "./store-opfs.js";

export type { Persistence, PersistenceOption, PoolDurability, PoolJournal, PoolPersistMode } from "./store.js";

/** A named buffer: bytes [offset, offset + length) of buffer `index`. Stable across restarts. */
export interface BufferName {
  readonly index: number;
  readonly offset: number;
  readonly length: number;
}

export interface PoolOptions {
  /**
   * Where the pool's bytes live (docs/persistence.md): "mmap" (the native addon maps the file
   * into the Wasm memory), "file" (no addon: read in at open, persisted ranges written back
   * and fdatasynced), "opfs" (a browser's origin private file system, through `opfs`), or
   * "auto" (default): "opfs" when `opfs` is given, else "mmap" when the addon loads, else
   * "file", which the pool reports (`persistence`, `fallback`, describe()).
   */
  persistence?: PersistenceOption;
  /**
   * The OPFS directory that holds the pool file, from `await openOpfs(dir, names)` (browsers,
   * in a Worker; docs/browser.md): the pool's path is one of its names.
   */
  opfs?: OpfsDirectory;
  /**
   * Persistence step: "auto" (default) picks the real one for the medium (cache-line flushes
   * on DAX, msync on tmpfs, the journal on any other file system; the file adapter: a write
   * and an fdatasync); others force it. The file adapter has "auto" ("msync" means the same
   * there) and "strict"; the others need the addon.
   */
  mode?: MapMode;
  /** Ring capacity of a journal this open creates (default: defaultJournalBytes(file size)). */
  journalBytes?: number;
  /**
   * An existing pool with fewer buffers grows to this many when opened: the file is extended
   * (fallocated), every buffer keeps its name and content, the superblock is rewritten.
   */
  growTo?: number;
  /**
   * In place (msync, strict): persist the first step of a log commit as the one range covering
   * its pairs (default: true with msync, where each call is a device flush or a syscall).
   */
  coalesce?: boolean;
  /** Use a shared Wasm memory (SharedArrayBuffer), e.g. to hand views to workers. */
  shared?: boolean;
  /** Runs after the pool's arena reservation and before the PM region is mapped. */
  configure?: (core: CoreInstance) => void;
}

export interface CreateOptions extends PoolOptions {
  /** Number of 2 KiB buffers. */
  buffers: number;
  /** Size of the metadata region (logs, indexes); a multiple of 4096. */
  metaBytes?: number;
}

export interface PoolCounts {
  total: number;
  free: number;
  nic: number;
  stack: number;
  app: number;
  kept: number;
}

const OWNER_BY_NAME: Record<string, number> = Object.fromEntries(OWNER_NAMES.map((n, i) => [n, i]));
const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Packs a name into the 64-bit form stored in logs: index << 32 | offset << 16 | length. */
export function packName(n: BufferName): bigint {
  return (BigInt(n.index >>> 0) << 32n) | (BigInt(n.offset & 0xffff) << 16n) | BigInt(n.length & 0xffff);
}
export function unpackName(x: bigint): BufferName {
  return { index: Number(x >> 32n) >>> 0, offset: Number((x >> 16n) & 0xffffn), length: Number(x & 0xffffn) };
}

export class Pool {
  /** File path, or null for a volatile (in-memory) pool. */
  readonly path: string | null;
  /** What the file lives on: "tmpfs", "ext4", ..., "unknown", or "memory" for a volatile pool. */
  readonly medium: string;
  /** The adapter that holds the pool's bytes: "mmap" (the addon), "file" (no addon) or "memory". */
  readonly persistence: Persistence;
  /**
   * Why the adapter is not the one asked for, or null: with `persistence: "auto"`, the addon
   * did not load (Deno without --allow-ffi, an unbuilt addon) and the file adapter took over.
   */
  readonly fallback: string | null;
  /** The durability step persist() performs (see docs/persistence.md). */
  readonly persistMode: PoolPersistMode;
  /** What a persisted range survives once persist() returned (docs/persistence.md). */
  readonly durability: PoolDurability;
  /** True when the file is mapped with MAP_SYNC (DAX): cache-line flushes make stores durable. */
  readonly dax: boolean;
  readonly superblock: Readonly<Superblock>;
  readonly bufferSize = BUF_SIZE;
  readonly bufferCount: number;
  readonly core: CoreInstance;
  /** Memory offset where the file (its superblock) is mapped. */
  readonly memOffset: number;
  /**
   * Memory offset of buffer 0's first byte: buffer i starts at bufferBase + i * BUF_SIZE (the
   * core's layout, fixed once the region is attached), so a host finds a buffer's bytes without
   * a call into the core.
   */
  readonly bufferBase: number;
  /**
   * Counters of persistence work, for benchmarks and stats: persist calls and ranges, write-back
   * syscalls (msync, or the strict mode's and the file adapter's pwrites), and the file
   * adapter's fdatasyncs (one per persist call that wrote anything).
   */
  readonly stats = { persistCalls: 0, persistRanges: 0, msyncCalls: 0, syncCalls: 0 };
  /** The pool's journal, or null (docs/persistence.md). */
  readonly journal: PoolJournal | null;
  /**
   * Journal mode: called on the JS thread (outside any call into the pool) when submitted
   * tables became durable, with durableSeq; once with an Error if the journal failed (then
   * nothing is made durable any more). Never called in the other modes, where submit is
   * synchronous.
   */
  onDurable: ((seq: number, err?: Error) => void) | null = null;

  #e: CoreExports;
  #u8: Uint8Array;
  #u32: Uint32Array;
  #scratch: number;
  #store: PoolStore;
  /** Nothing to do on persist (memory only). */
  #none: boolean;
  /** Each persist that writes ends with an fdatasync (the file adapter). */
  #syncs: boolean;
  #journal: JournalOps | null;
  /** The in-place modes' sequence numbers: the last submit's, durable as soon as it returns. */
  #seq = 0;
  /** In place: the first step of a log commit as one covering range (PoolOptions.coalesce). */
  #coalesce: boolean;
  #closed = false;

  private constructor(p: {
    path: string | null;
    persistMode: PoolPersistMode;
    dax: boolean;
    sb: Superblock;
    core: CoreInstance;
    memOffset: number;
    scratch: number;
    store: PoolStore;
    fallback: string | null;
    journal: JournalOps | null;
    journalInfo: PoolJournal | null;
    coalesce: boolean | undefined;
  }) {
    this.path = p.path;
    this.medium = p.store.medium;
    this.persistence = p.store.persistence;
    this.fallback = p.fallback;
    this.persistMode = p.persistMode;
    this.durability = durabilityOf(p.persistMode, p.store.medium, p.dax);
    this.dax = p.dax;
    this.superblock = Object.freeze({ ...p.sb });
    this.bufferCount = p.sb.bufferCount;
    this.core = p.core;
    this.memOffset = p.memOffset;
    this.#e = p.core.exports;
    this.bufferBase = this.#e.poolBase();
    this.#u8 = new Uint8Array(p.core.memory.buffer);
    this.#u32 = new Uint32Array(p.core.memory.buffer);
    this.#scratch = p.scratch;
    this.#store = p.store;
    this.#none = p.persistMode === "none";
    this.#syncs = p.persistMode === "file";
    this.#journal = p.journal;
    this.#coalesce = p.coalesce ?? p.persistMode === "msync";
    this.journal = p.journalInfo && Object.freeze({ ...p.journalInfo, replay: Object.freeze(p.journalInfo.replay) });
  }

  /**
   * Creates a new pool file at `path`. Fails (changing nothing) if the path exists, or with
   * EJOURNAL if a journal is at `<path>.journal` without its pool (another pool's: it would be
   * refused at every open of this one).
   */
  static create(path: string, opts: CreateOptions): Pool {
    const sb = layout(opts.buffers, opts.metaBytes);
    const { adapter, fallback } = adapterFor(opts);
    const jpath = path + JOURNAL_SUFFIX;
    if (adapter.exists(jpath) && !adapter.exists(path))
      throw new PoolFileError("EJOURNAL", path, `a journal ${jpath} is there without its pool: remove it first`);
    let store;
    try {
      store = adapter.create(path, sb.fileSize, encode(sb));
    } catch (e) {
      throw fileError(path, e);
    }
    return Pool.#attach(path, sb, store, true, opts, fallback);
  }

  /** Opens an existing pool file, validating it. Nothing on disk changes if it is refused. */
  static open(path: string, opts: PoolOptions = {}): Pool {
    const { adapter, fallback } = adapterFor(opts);
    let store;
    try {
      store = adapter.open(path);
    } catch (e) {
      throw fileError(path, e);
    }
    let sb: Superblock;
    try {
      const header = new Uint8Array(HEADER_BYTES);
      const got = store.size >= HEADER_BYTES ? store.read(header, 0) : 0;
      // a file longer than its superblock says is refused, unless it is a growth to `growTo`
      // that was interrupted before the superblock was rewritten: then it is finished
      sb = decode(path, header.subarray(0, got), store.size, opts.growTo !== undefined);
      const want = opts.growTo && opts.growTo > sb.bufferCount ? grown(sb, opts.growTo) : sb;
      if (store.size > want.fileSize)
        throw new PoolFileError(
          "ETOOLARGE",
          path,
          `file is ${store.size} bytes but its superblock says ${sb.fileSize}: it was extended or is not this pool`,
        );
      if (want !== sb) {
        store.extend(want.fileSize); // the superblock follows once the file is in memory (#attach)
        sb = want;
      }
    } catch (e) {
      store.close();
      throw e instanceof PmstackError
        ? e
        : e instanceof RangeError
          ? new PoolFileError("ETOOLARGE", path, e.message)
          : fileError(path, e);
    }
    return Pool.#attach(path, sb, store, false, opts, fallback);
  }

  /** Opens `path` if it exists, else creates it with `opts.buffers` buffers. */
  static openOrCreate(path: string, opts: CreateOptions): Pool {
    try {
      return Pool.open(path, opts);
    } catch (e) {
      if (e instanceof PoolFileError && e.code === "ENOENT") {
        try {
          return Pool.create(path, opts);
        } catch (e2) {
          // Lost a race with another creator: open what it made.
          if (e2 instanceof PoolFileError && e2.code === "EEXIST") return Pool.open(path, opts);
          throw e2;
        }
      }
      throw e;
    }
  }

  /**
   * A pool in plain Wasm memory (the memory adapter): nothing persists, `persistMode` "none".
   * For tests, simulation and sandboxes.
   */
  static volatile(opts: Omit<CreateOptions, "mode" | "persistence">): Pool {
    const sb = layout(opts.buffers, opts.metaBytes);
    return Pool.#attach(null, sb, new MemoryStore(), false, opts, null);
  }

  static #attach(
    path: string | null,
    sb: Superblock,
    store: PoolStore,
    created: boolean,
    opts: PoolOptions,
    fallback: string | null,
  ): Pool {
    let journal: JournalOps | null = null;
    try {
      const core = instantiateCore({ shared: opts.shared ?? false });
      const e = core.exports;
      check(e.poolReserve(sb.bufferCount), "reserving pool metadata");
      const scratch = e.arenaAlloc(sb.bufferCount * 4, 64);
      check(scratch, "reserving the scratch array");
      opts.configure?.(core);
      const memOffset = alignUp(e.arenaEnd(), WASM_PAGE);
      const pages = alignUp(memOffset + sb.fileSize, WASM_PAGE) / WASM_PAGE;
      const have = core.memory.buffer.byteLength / WASM_PAGE;
      if (pages > 65536)
        throw new PmstackError(
          "ENOMEM",
          `pmstack: the pool (${sb.fileSize} bytes) and the core's state (${memOffset} bytes) need more than one ` +
            `32-bit Wasm memory (4 GiB) holds: use a pool of at most about ${MAX_POOL_BUFFERS} buffers ` +
            `(${((MAX_POOL_BUFFERS * BUF_SIZE) / 2 ** 30).toFixed(2)} GiB), or several pools`,
        );
      if (pages > have) core.memory.grow(pages - have);
      let persistMode: PoolPersistMode = "none";
      let dax = false;
      let journalInfo: PoolJournal | null = null;
      let pool: Pool | undefined;
      if (path) {
        const want = opts.mode ?? "auto";
        const m = store.place(core.memory, memOffset, sb.fileSize, want);
        persistMode = m.persistMode;
        dax = m.dax;
        let opened;
        try {
          opened = store.openJournal({
            path,
            sb,
            want,
            created,
            journalBytes: opts.journalBytes,
            onComplete: (done, err) => pool?.onDurable?.(done, err),
          });
        } catch (e) {
          throw fileError(path + JOURNAL_SUFFIX, e);
        }
        journal = opened.journal;
        journalInfo = opened.info;
        const header = new Uint8Array(core.memory.buffer, memOffset, HEADER_BYTES);
        // The superblock as the file has it now: replay may have brought a newer flags word, and
        // a growth (opts.growTo) extended the file but left its size to be written here.
        const onFile = decode(path, header, sb.fileSize, true);
        const flags =
          persistMode === "journal"
            ? onFile.flags | FLAG_JOURNAL
            : opened.info
              ? onFile.flags
              : onFile.flags & ~FLAG_JOURNAL;
        if (flags !== onFile.flags || onFile.bufferCount !== sb.bufferCount || onFile.fileSize !== sb.fileSize) {
          // Journal mode: the flag is in the file before any entry can need it (a synchronous
          // entry, then a checkpoint). An explicit in-place mode on a pool whose journal is
          // gone: the file alone is the pool from now on. A growth: the new size, durable
          // before any buffer beyond the old end is used.
          sb = { ...sb, flags };
          header.set(encode(sb));
          store.persist(memOffset, HEADER_BYTES);
          journal?.checkpoint(true);
        }
      }
      check(e.poolAttach(memOffset + sb.bufOffset), "attaching the buffer region");
      e.arenaSeal();
      pool = new Pool({
        path,
        persistMode,
        dax,
        sb,
        core,
        memOffset,
        scratch,
        store,
        fallback,
        journal,
        journalInfo,
        coalesce: opts.coalesce,
      });
      return pool;
    } catch (err) {
      const open = journal;
      if (open) closeQuietly(() => open.close(false));
      closeQuietly(() => store.close());
      throw err;
    }
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Takes a free buffer for the app (owner "app", one reference). Returns its index. */
  alloc(owner: Owner = "app"): number {
    this.#live();
    const r = this.#e.bufAlloc(ownerCode(owner));
    if (r < 0) this.#fail(r, "alloc");
    return r;
  }

  /** Takes `n` free buffers at once, all or none. Returns their indices. */
  allocBatch(n: number, owner: Owner = "app"): Uint32Array {
    this.#live();
    if (!Number.isInteger(n) || n < 0 || n > this.bufferCount)
      throw new RangeError(`pmstack: batch size must be an integer in [0, ${this.bufferCount}], got ${n}`);
    const r = this.#e.bufAllocBatch(ownerCode(owner), n, this.#scratch);
    if (r < 0) this.#fail(r, `allocBatch(${n})`);
    return this.#u32.slice(this.#scratch >>> 2, (this.#scratch >>> 2) + n);
  }

  /** Drops one reference; at zero the buffer is free again. Returns the remaining count. */
  free(index: number): number {
    this.#index(index);
    const r = this.#e.bufUnref(index);
    if (r < 0) this.#fail(r, `free(${index})`, index);
    return r;
  }

  /**
   * Drops one reference from each listed buffer (an index may repeat). All or nothing: on a
   * bad entry nothing changes. Returns how many buffers became free.
   */
  freeBatch(indices: ArrayLike<number>): number {
    this.#live();
    const n = indices.length;
    if (n > this.bufferCount) throw new RangeError(`pmstack: batch of ${n} exceeds the pool (${this.bufferCount})`);
    const base = this.#scratch >>> 2;
    // A Uint32Array holds unsigned integers already: the core range-checks them (atomically).
    if (indices instanceof Uint32Array) this.#u32.set(indices, base);
    else
      for (let k = 0; k < n; k++) {
        const i = indices[k]!;
        if (!Number.isInteger(i) || i < 0 || i >= this.bufferCount) this.#fail(E_RANGE, `freeBatch entry ${k}`, i);
        this.#u32[base + k] = i;
      }
    const r = this.#e.bufUnrefBatch(this.#scratch, n);
    if (r < 0) this.#fail(r, "freeBatch");
    return r;
  }

  /** Adds a reference (e.g. a buffer both on a NIC queue and in a retransmit queue). */
  ref(index: number): number {
    this.#index(index);
    const r = this.#e.bufRef(index);
    if (r < 0) this.#fail(r, `ref(${index})`, index);
    return r;
  }

  /** Marks a held buffer as kept by the app: persistent data, never handed out until freed. */
  keep(index: number): void {
    this.setOwner(index, "kept");
  }

  /** Moves a held buffer to another owner state. Returns the previous owner. */
  setOwner(index: number, owner: Owner): Owner {
    this.#index(index);
    const r = this.#e.bufSetOwner(index, ownerCode(owner));
    if (r < 0) this.#fail(r, `setOwner(${index}, ${owner})`, index);
    return OWNER_NAMES[r]!;
  }

  /**
   * Takes a specific free buffer (default: as kept). Recovery uses it to reserve the buffers
   * that persistent data names, before anything else allocates.
   */
  claim(index: number, owner: Owner = "kept"): void {
    this.#index(index);
    const r = this.#e.bufClaim(index, ownerCode(owner));
    if (r < 0) this.#fail(r, `claim(${index})`, index);
  }

  owner(index: number): Owner {
    this.#index(index);
    return OWNER_NAMES[this.#e.bufOwner(index)]!;
  }

  refCount(index: number): number {
    this.#index(index);
    return this.#e.bufRefCount(index);
  }

  /** Validates and returns a name for bytes [offset, offset + length) of a held buffer. */
  name(index: number, offset = 0, length = BUF_SIZE - offset): BufferName {
    this.#name(index, offset, length);
    return { index, offset, length };
  }

  /**
   * A zero-copy view of bytes [offset, offset + length) of a held buffer. The view aliases PM:
   * writes land in the file (durable once persisted). It stays valid while the pool is open;
   * after close() it reads zeros (the mapping is replaced by anonymous memory), never faults.
   */
  view(index: number, offset = 0, length = BUF_SIZE - offset): Uint8Array {
    const at = this.#name(index, offset, length);
    return this.#u8.subarray(at, at + length);
  }

  /** view() of a name. */
  viewName(n: BufferName): Uint8Array {
    return this.view(n.index, n.offset, n.length);
  }

  /** Memory offset of a buffer's first byte (for the core and NIC backends). */
  address(index: number): number {
    this.#index(index);
    return this.bufferBase + index * BUF_SIZE;
  }

  /** Makes bytes [offset, offset + length) of a held buffer durable (one step: flush+fence or msync). */
  persist(index: number, offset = 0, length = BUF_SIZE - offset): void {
    const at = this.#name(index, offset, length);
    this.#persistRange(at, length);
  }

  /** Makes every named range durable with one fence (or one msync per contiguous page run). */
  persistBatch(names: readonly BufferName[]): void {
    this.#live();
    const ranges = new Uint32Array(names.length * 2);
    for (let k = 0; k < names.length; k++) {
      const n = names[k]!;
      ranges[2 * k] = this.#name(n.index, n.offset, n.length);
      ranges[2 * k + 1] = n.length;
    }
    this.stats.persistCalls++;
    this.stats.persistRanges += names.length;
    if (!this.#none && names.length > 0) this.#wrote(this.#store.persistBatch(ranges, names.length));
  }

  /**
   * Persists a flush list the core wrote into its own memory: `count` u32 pairs
   * (memOffset, length) at memory offset `tableMemOffset`, with one fence (or one msync /
   * strict-mode pwrite per merged run). The log's group commit uses it (host/log.ts).
   */
  persistTable(tableMemOffset: number, count: number): void {
    this.#live();
    this.stats.persistCalls++;
    this.stats.persistRanges += count;
    if (!this.#none && count > 0) this.#wrote(this.#store.persistRanges(tableMemOffset, count));
  }

  /**
   * Makes a flush table durable: `count` u32 pairs (memOffset, length) at memory offset
   * `tableMemOffset`, the first `payloadCount` of them payload (bytes that stay unchanged until
   * durable), the rest metadata (log records, the tail slot: in journal mode copied before
   * this returns, so the caller may overwrite them at once). `gen` != 0 says the last pair is
   * the log's 64-byte tail slot of generation `gen`. Returns the table's sequence number.
   * Journal mode: queues one journal entry and returns at once; it is durable when durableSeq
   * reaches the number (onDurable says when). Other modes: durable when this returns, persisted
   * in the log's two ordered steps when gen != 0 (every pair but the tail slot, then the tail
   * slot), else in one; with msync, the first step is one msync over the range covering its
   * pairs (host/log.ts #union says why).
   */
  submit(tableMemOffset: number, count: number, payloadCount: number, gen: number): number {
    if (this.#submitted(count)) return this.#journal!.submit(tableMemOffset, count, payloadCount, gen);
    this.#persistInPlace(tableMemOffset, count, gen);
    return ++this.#seq;
  }

  /** submit(), then waits until the table (and every one submitted before it) is durable. */
  submitSync(tableMemOffset: number, count: number, payloadCount: number, gen: number): number {
    if (this.#submitted(count)) return this.#journal!.sync(tableMemOffset, count, payloadCount, gen);
    this.#persistInPlace(tableMemOffset, count, gen);
    return ++this.#seq;
  }

  /** The highest sequence number durable: every table submitted up to it is. */
  get durableSeq(): number {
    this.#live();
    return this.#journal ? this.#journal.done() : this.#seq;
  }

  /** Blocks until table `seq` (and every one before it) is durable. */
  waitDurable(seq: number): void {
    this.#live();
    if (this.#journal) this.#journal.wait(seq);
    else if (!Number.isInteger(seq) || seq < 0 || seq > this.#seq)
      throw new RangeError(`pmstack: waitDurable(${seq}): the last table submitted is ${this.#seq}`);
  }

  /** The journal's counters in journal mode, else null. */
  journalStats(): JournalStats | null {
    this.#live();
    return this.#journal ? this.#journal.stats() : null;
  }

  /** A zero-copy view of the metadata region (reserved for logs and indexes). */
  metaView(): Uint8Array {
    this.#live();
    const at = this.memOffset + this.superblock.metaOffset;
    return this.#u8.subarray(at, at + this.superblock.metaBytes);
  }

  /** Makes bytes [offset, offset + length) of the metadata region durable. */
  persistMeta(offset: number, length: number): void {
    this.#live();
    const sb = this.superblock;
    if (
      !Number.isInteger(offset) ||
      !Number.isInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > sb.metaBytes
    )
      throw new RangeError(`pmstack: metadata range [${offset}, ${offset + length}) is outside [0, ${sb.metaBytes})`);
    this.#persistRange(this.memOffset + sb.metaOffset + offset, length);
  }

  /** Free buffers right now (one call into the core: the hot-path form of `counts().free`). */
  get freeCount(): number {
    this.#live();
    return this.#e.poolHeld(0);
  }

  /** Buffer counts per owner state. */
  counts(): PoolCounts {
    this.#live();
    const h = (o: number) => this.#e.poolHeld(o);
    return { total: this.bufferCount, free: h(0), nic: h(1), stack: h(2), app: h(3), kept: h(4) };
  }

  /** Checks the invariant (free + held in each state = total, free list exact). Throws if broken. */
  check(): PoolCounts {
    this.#live();
    if (this.#e.poolCheck() !== 0)
      throw new PoolCorruptError(
        "ECORRUPT",
        `pmstack: pool invariant broken (check ${this.#e.poolCheckDetail()} failed)`,
      );
    return this.counts();
  }

  /** One line saying what this pool is and how it persists. */
  describe(): string {
    const c = this.counts();
    const where = this.path ? `${this.path} on ${this.medium}` : "volatile memory";
    const note = this.#store.note ? `, ${this.#store.note}` : "";
    const adapter = this.path
      ? `; ${this.persistence} adapter${this.fallback ? ` (fallback: ${this.fallback})` : ""}${note}`
      : "";
    return (
      `pool ${this.superblock.uuid}: ${where}, ${this.bufferCount} x ${BUF_SIZE} B buffers, ` +
      `${this.superblock.metaBytes} B metadata, persist: ` +
      `${describeMode(this.persistMode, this.medium, this.dax, this.journal?.path)}${adapter}; ` +
      `free ${c.free}, app ${c.app}, kept ${c.kept}`
    );
  }

  /**
   * Unmaps the file and releases its lock. Views read zeros afterwards. Idempotent. In journal
   * mode it first waits for every submitted table and checkpoints, so the pool file alone holds
   * the pool; if the journal failed, it throws that error once everything is released.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const journal = this.#journal;
    this.#journal = null;
    try {
      journal?.close(true);
    } finally {
      this.#store.close();
    }
  }

  /** Counts a submitted table; true in journal mode (one entry: one persist call). */
  #submitted(count: number): boolean {
    this.#live();
    this.stats.persistRanges += count;
    if (this.#journal) this.stats.persistCalls++;
    return this.#journal !== null;
  }

  /** submit() outside journal mode: the table's pairs persisted at once, in one or two steps. */
  #persistInPlace(table: number, count: number, gen: number): void {
    if (gen !== 0 && count < 1) throw new RangeError(`pmstack: submit: gen ${gen} needs the tail slot as a pair`);
    const first = gen !== 0 ? count - 1 : count;
    this.stats.persistCalls += (first > 0 ? 1 : 0) + (gen !== 0 ? 1 : 0);
    if (this.#none) return;
    const store = this.#store;
    if (first > 0 && this.#coalesce) {
      let lo = Infinity;
      let hi = 0;
      for (let k = 0; k < first; k++) {
        const len = this.#le32(table + 8 * k + 4);
        if (len === 0) continue;
        const at = this.#le32(table + 8 * k);
        lo = Math.min(lo, at);
        hi = Math.max(hi, at + len);
      }
      if (hi > 0) {
        store.persist(lo, hi - lo);
        this.stats.msyncCalls++;
        if (this.#syncs) this.stats.syncCalls++;
      }
    } else if (first > 0) {
      this.#wrote(store.persistRanges(table, first));
    }
    if (gen !== 0) this.#wrote(store.persistRanges(table + 8 * first, 1));
  }

  /** Counts what one persist call wrote: `n` write-back syscalls, and the fdatasync after them. */
  #wrote(n: number): void {
    this.stats.msyncCalls += n;
    if (n > 0 && this.#syncs) this.stats.syncCalls++;
  }

  /** The little-endian u32 at memory offset `at` (flush tables need not be aligned). */
  #le32(at: number): number {
    const u = this.#u8;
    return (u[at]! | (u[at + 1]! << 8) | (u[at + 2]! << 16) | (u[at + 3]! << 24)) >>> 0;
  }

  #persistRange(at: number, length: number): void {
    this.stats.persistCalls++;
    this.stats.persistRanges++;
    if (this.#none || length === 0) return;
    this.#wrote(this.#store.persist(at, length));
  }

  #live(): void {
    if (this.#closed) throw new PoolClosedError("ECLOSED", `pmstack: pool ${this.path ?? "(volatile)"} is closed`);
  }

  #index(index: number): void {
    this.#live();
    if (!Number.isInteger(index) || index < 0 || index >= this.bufferCount) this.#fail(E_RANGE, "lookup", index);
  }

  /** Validates a name; returns the memory offset of its first byte. */
  #name(index: number, offset: number, length: number): number {
    this.#index(index);
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0)
      this.#fail(E_BOUNDS, `name (${index}, ${offset}, ${length})`, index);
    const r = this.#e.nameCheck(index, offset, length);
    if (r < 0) this.#fail(r, `name (${index}, ${offset}, ${length})`, index);
    return this.bufferBase + index * BUF_SIZE + offset;
  }

  #fail(rc: number, what: string, index?: number): never {
    const b = index === undefined ? "" : ` buffer ${index}`;
    switch (rc) {
      case E_RANGE:
        throw new BufferNameError(
          "ERANGE",
          `pmstack: ${what}:${b} is not in this pool (valid: 0..${this.bufferCount - 1})`,
        );
      case E_BOUNDS:
        throw new BufferNameError("EBOUNDS", `pmstack: ${what}: outside the ${BUF_SIZE}-byte buffer`);
      case E_FREE:
        throw new BufferNameError("EFREE", `pmstack: ${what}:${b} is free (double free, or a stale name)`);
      case E_STATE:
        throw new BufferNameError("ESTATE", `pmstack: ${what}:${b} is not in the required owner state`);
      case E_NOTFREE:
        throw new BufferNameError("ENOTFREE", `pmstack: ${what}:${b} is already held`);
      case E_REFMAX:
        throw new BufferNameError("EREFMAX", `pmstack: ${what}:${b} has too many references`);
      case E_EMPTY:
        throw new PoolExhaustedError(
          "EEMPTY",
          `pmstack: ${what}: no free buffer left (${this.bufferCount} in the pool)`,
        );
      default:
        throw new PmstackError("ECORE", `pmstack: ${what}: core error ${rc}`);
    }
  }
}

function ownerCode(owner: Owner): number {
  const c = OWNER_BY_NAME[owner];
  if (c === undefined || c === 0 || c >= OWNER_COUNT)
    throw new TypeError(`pmstack: owner must be one of nic, stack, app, kept; got ${String(owner)}`);
  return c;
}

function check(rc: number, what: string): void {
  if (rc < 0) throw new PmstackError("ECORE", `pmstack: core error ${rc} while ${what}`);
}

/**
 * The adapter for a pool file (PoolOptions.persistence). A pool given an OPFS directory
 * (PoolOptions.opfs) takes the OPFS adapter. Else "auto" takes the addon's mmap when the addon
 * loads, else the file adapter, saying why (the pool's `fallback`); a mode only the addon has
 * (clwb, clflushopt, journal) does not fall back: it fails with the addon's error.
 */
function adapterFor(opts: PoolOptions): { adapter: StoreAdapter; fallback: string | null } {
  const persistence = opts.persistence ?? "auto";
  const mode = opts.mode ?? "auto";
  if (opts.opfs !== undefined) {
    if (!(opts.opfs instanceof OpfsDirectory))
      throw new TypeError("pmstack: the opfs option takes the directory `await openOpfs(dir, names)` returns");
    if (persistence !== "auto" && persistence !== "opfs")
      throw new PmstackError(
        "EINVAL",
        `pmstack: persistence "${persistence}" and an OPFS directory (the opfs option) contradict each other`,
      );
    if (!fileModeOf(mode)) throw modeError(mode);
    return { adapter: adapterOver(opts.opfs, "opfs"), fallback: null };
  }
  switch (persistence) {
    case "opfs":
      throw new PmstackError(
        "EINVAL",
        'pmstack: persistence "opfs" needs the directory: { opfs: await openOpfs(dir, names) } (in a browser Worker)',
      );
    case "mmap":
      native(); // ENATIVE, saying why, if it cannot load
      return { adapter: mmapAdapter, fallback: null };
    case "file":
      if (!fileModeOf(mode)) throw modeError(mode);
      return { adapter: fileAdapter, fallback: null };
    case "auto": {
      const nat = tryNative();
      if (!(nat instanceof PmstackError)) return { adapter: mmapAdapter, fallback: null };
      if (!fileModeOf(mode))
        throw new PmstackError(
          "ENATIVE",
          `${nat.message} Mode "${mode}" needs it (the file adapter has "auto", "msync" and "strict").`,
          { cause: nat },
        );
      return { adapter: fileAdapter, fallback: nat.message.replace(/^pmstack:\s*/, "") };
    }
    case "memory":
      throw new PmstackError(
        "EINVAL",
        'pmstack: persistence "memory" keeps no file: use Pool.volatile (a stack: a pool without a path)',
      );
    default:
      throw new TypeError(
        `pmstack: persistence must be "auto", "mmap", "file", "opfs" or "memory", got ${String(persistence)}`,
      );
  }
}

/** Runs a clean-up step on a path that is already throwing: the first error is the one to report. */
function closeQuietly(step: () => void): void {
  try {
    step();
  } catch {
    // the error being thrown says what went wrong first
  }
}

function fileError(path: string, e: unknown): PmstackError {
  if (e instanceof PmstackError) return e;
  const err = e as { code?: string; message?: string };
  if (err.code === "EWOULDBLOCK" || err.code === "EAGAIN")
    return new PoolFileError("ELOCKED", path, "it is locked by another process (or another open pool)", { cause: e });
  const msg = (err.message ?? String(e)).replace(/^pmstack:\s*/, "");
  return new PoolFileError(err.code ?? "EIO", path, msg, { cause: e });
}

export function describeMode(mode: PoolPersistMode, medium: string, dax: boolean, journalPath?: string): string {
  switch (mode) {
    case "journal":
      return medium === "tmpfs"
        ? `journal on tmpfs (write-ahead journal ${journalPath}; survives a process crash, not a reboot or power loss)`
        : `journal on ${medium} (write-ahead journal ${journalPath}, one fdatasync per commit batch; ` +
            "durable on the device when the commit completes)";
    case "none":
      return "none (volatile memory: nothing survives the process)";
    case "file":
      if (medium === "opfs")
        return (
          "file in OPFS (each persist writes its ranges and flushes the sync access handle: in the browser's " +
          "storage when it returns; on the device as far as the browser's flush takes it)"
        );
      return medium === "tmpfs"
        ? "file on tmpfs (each persist writes its ranges and fdatasyncs; survives a process crash, not a reboot or power loss)"
        : medium === "unknown"
          ? "file (each persist writes its ranges and fdatasyncs: durable on the device when it returns, " +
            "if the file system has one; the runtime could not name it)"
          : `file on ${medium} (each persist writes its ranges and fdatasyncs: durable on the device when it returns)`;
    case "strict":
      return `strict on ${medium} (test mode: stores reach the file only when persisted, by pwrite)`;
    case "msync":
      return medium === "tmpfs"
        ? "msync on tmpfs (survives a process crash; not a reboot or power loss)"
        : `msync on ${medium} (durable on the device when persist returns)`;
    default:
      return dax
        ? `${mode} + sfence on DAX (durable in the persistence domain when persist returns)`
        : `${mode} + sfence without DAX (measurement only: survives a process crash, NOT durable on the device)`;
  }
}

// Pool: a PM file of packet buffers mapped into the Wasm core's memory, with zero-copy views.
//
// Set-up order (the memory layout in docs/architecture.md):
//   1. open or create the file (locked with flock), validate its superblock;
//   2. instantiate the core over a fresh Memory; reserve the pool's metadata and a scratch
//      array in the core's arena; run the caller's `configure` hook (the stack reserves its
//      tables here);
//   3. grow the memory once, map the file MAP_SHARED|MAP_FIXED at the first Wasm page above
//      the arena, attach the buffer region and seal the arena.
// After that the memory never grows, so views handed out stay valid for the pool's life.

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
import { decode, encode, HEADER_BYTES, layout, type Superblock } from "./format.js";
import {
  BufferNameError,
  PmstackError,
  PoolClosedError,
  PoolCorruptError,
  PoolExhaustedError,
  PoolFileError,
} from "./errors.js";
import { native, type MapMode, type Native, type PersistMode } from "./native.js";

/** A named buffer: bytes [offset, offset + length) of buffer `index`. Stable across restarts. */
export interface BufferName {
  readonly index: number;
  readonly offset: number;
  readonly length: number;
}

export interface PoolOptions {
  /** Persistence step: "auto" (default) picks the real one for the medium; others force it. */
  mode?: MapMode;
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

export type PoolPersistMode = PersistMode | "none";

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
  /** What the file lives on: "tmpfs", "ext4", ..., or "memory" for a volatile pool. */
  readonly medium: string;
  /** The durability step persist() performs (see docs/persistence.md). */
  readonly persistMode: PoolPersistMode;
  /** True when the file is mapped with MAP_SYNC (DAX): cache-line flushes make stores durable. */
  readonly dax: boolean;
  readonly superblock: Readonly<Superblock>;
  readonly bufferSize = BUF_SIZE;
  readonly bufferCount: number;
  readonly core: CoreInstance;
  /** Memory offset where the file (its superblock) is mapped. */
  readonly memOffset: number;
  /** Counters of persistence work, for benchmarks and stats. */
  readonly stats = { persistCalls: 0, persistRanges: 0, msyncCalls: 0 };

  #e: CoreExports;
  #u8: Uint8Array;
  #u32: Uint32Array;
  #scratch: number;
  #native: Native | null;
  #fd: number;
  #handle: object | null;
  #closed = false;

  private constructor(p: {
    path: string | null;
    medium: string;
    persistMode: PoolPersistMode;
    dax: boolean;
    sb: Superblock;
    core: CoreInstance;
    memOffset: number;
    scratch: number;
    native: Native | null;
    fd: number;
    handle: object | null;
  }) {
    this.path = p.path;
    this.medium = p.medium;
    this.persistMode = p.persistMode;
    this.dax = p.dax;
    this.superblock = Object.freeze({ ...p.sb });
    this.bufferCount = p.sb.bufferCount;
    this.core = p.core;
    this.memOffset = p.memOffset;
    this.#e = p.core.exports;
    this.#u8 = new Uint8Array(p.core.memory.buffer);
    this.#u32 = new Uint32Array(p.core.memory.buffer);
    this.#scratch = p.scratch;
    this.#native = p.native;
    this.#fd = p.fd;
    this.#handle = p.handle;
  }

  /** Creates a new pool file at `path`. Fails (changing nothing) if the path exists. */
  static create(path: string, opts: CreateOptions): Pool {
    const sb = layout(opts.buffers, opts.metaBytes);
    const nat = native();
    let info;
    try {
      info = nat.create(path, sb.fileSize, encode(sb));
    } catch (e) {
      throw fileError(path, e);
    }
    return Pool.#attach(path, sb, nat, info.fd, info.medium, opts);
  }

  /** Opens an existing pool file, validating it. Nothing on disk changes if it is refused. */
  static open(path: string, opts: PoolOptions = {}): Pool {
    const nat = native();
    let info;
    try {
      info = nat.open(path);
    } catch (e) {
      throw fileError(path, e);
    }
    let sb: Superblock;
    try {
      const header = new Uint8Array(HEADER_BYTES);
      const got = info.size >= HEADER_BYTES ? nat.pread(info.fd, header, 0) : 0;
      sb = decode(path, header.subarray(0, got), info.size);
    } catch (e) {
      nat.close(info.fd);
      throw e instanceof PmstackError ? e : fileError(path, e);
    }
    return Pool.#attach(path, sb, nat, info.fd, info.medium, opts);
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

  /** A pool in plain Wasm memory: nothing persists. For tests, simulation and sandboxes. */
  static volatile(opts: Omit<CreateOptions, "mode">): Pool {
    const sb = layout(opts.buffers, opts.metaBytes);
    return Pool.#attach(null, sb, null, -1, "memory", opts);
  }

  static #attach(
    path: string | null,
    sb: Superblock,
    nat: Native | null,
    fd: number,
    medium: string,
    opts: PoolOptions,
  ): Pool {
    let handle: object | null = null;
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
        throw new PmstackError("ENOMEM", `pmstack: the pool does not fit in one Wasm memory (${pages} pages needed)`);
      if (pages > have) core.memory.grow(pages - have);
      let persistMode: PoolPersistMode = "none";
      let dax = false;
      if (nat) {
        const m = nat.map(
          core.memory,
          new Uint8Array(core.memory.buffer),
          memOffset,
          fd,
          sb.fileSize,
          opts.mode ?? "auto",
        );
        handle = m.handle;
        persistMode = m.persistMode;
        dax = m.dax;
      }
      check(e.poolAttach(memOffset + sb.bufOffset), "attaching the buffer region");
      e.arenaSeal();
      return new Pool({ path, medium, persistMode, dax, sb, core, memOffset, scratch, native: nat, fd, handle });
    } catch (err) {
      if (nat && handle) nat.unmap(handle);
      if (nat && fd >= 0) nat.close(fd);
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
    return this.#e.bufAddress(index);
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
    if (this.#native && this.#handle && names.length > 0)
      this.stats.msyncCalls += this.#native.persistBatch(this.#handle, ranges, names.length);
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
    if (this.#native && this.#handle && count > 0)
      this.stats.msyncCalls += this.#native.persistRanges(this.#handle, tableMemOffset, count);
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
    return (
      `pool ${this.superblock.uuid}: ${where}, ${this.bufferCount} x ${BUF_SIZE} B buffers, ` +
      `${this.superblock.metaBytes} B metadata, persist: ${describeMode(this.persistMode, this.medium, this.dax)}; ` +
      `free ${c.free}, app ${c.app}, kept ${c.kept}`
    );
  }

  /** Unmaps the file and releases its lock. Views read zeros afterwards. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#native) {
      if (this.#handle) this.#native.unmap(this.#handle);
      this.#native.close(this.#fd);
    }
    this.#handle = null;
  }

  #persistRange(at: number, length: number): void {
    this.stats.persistCalls++;
    this.stats.persistRanges++;
    if (!this.#native || !this.#handle || length === 0) return;
    this.#native.persist(this.#handle, at, length);
    if (this.persistMode === "msync") this.stats.msyncCalls++;
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
    return this.#e.bufAddress(index) + offset;
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

function fileError(path: string, e: unknown): PmstackError {
  if (e instanceof PmstackError) return e;
  const err = e as { code?: string; message?: string };
  if (err.code === "EWOULDBLOCK" || err.code === "EAGAIN")
    return new PoolFileError("ELOCKED", path, "it is locked by another process (or another open pool)", { cause: e });
  const msg = (err.message ?? String(e)).replace(/^pmstack:\s*/, "");
  return new PoolFileError(err.code ?? "EIO", path, msg, { cause: e });
}

export function describeMode(mode: PoolPersistMode, medium: string, dax: boolean): string {
  switch (mode) {
    case "none":
      return "none (volatile memory: nothing survives the process)";
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

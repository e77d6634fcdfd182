// The batch API (PASTE's programming model) and the drivers that run a stack turn by turn.
//
// Each turn the app gets ONE batch: every byte received on every connection, as zero-copy
// views into the PM buffers where the NIC put them, with their names. It may keep chunks
// (the buffer becomes the app's persistent data), persist ranges with one fence, append
// names to a PmLog (one group commit per turn), reply with its own bytes (copied once into
// fresh buffers) or straight from kept buffers (no copy), and close connections. Un-kept
// chunks are freed and their bytes acknowledged (recvd) at the end of the turn. When free
// buffers run low the window updates are withheld, so peers see a shrinking (then zero)
// window instead of the pool running dry. See docs/api.md.

import { setImmediate, clearImmediate } from "node:timers";
import type { PmLog, LogKey } from "./log.js";
import { MemoryLink, type LinkOptions } from "./link/memory.js";
import { NicLoop, refTimer, type LoopOptions } from "./loop.js";
import type { NicPort } from "./nic/port.js";
import { PoolExhaustedError } from "./errors.js";
import type { BufferName } from "./pool.js";
import { Stack, type StackEvent, type StackOptions } from "./stack.js";

// ---- drivers ---------------------------------------------------------------------------------

/** What a driver calls on the app layer (PasteServer, NetStack) of one stack. */
export interface TurnHooks {
  /** Every event of the turn, in order (the event object is reused: copy what you keep). */
  onEvent(ev: StackEvent): void;
  /** After the turn's events. Commands issued here still leave in this turn's kick. */
  onTurnEnd(now: number): void;
}

/**
 * Timers on a driver's clock, for the app layer's own timers (a socket's idle timeout). A
 * handle is whatever setTimeout returns; clearTimeout takes it back.
 */
export interface DriverTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Runs one stack turn by turn for one app layer: over a NIC (NicDriver) or in memory (MemoryPair). */
export interface Driver {
  readonly stack: Stack;
  /**
   * The clock of the app layer's timers when it is not the event loop's (a simulator's virtual
   * clock). Optional: without it they are setTimeout's.
   */
  readonly timers?: DriverTimers;
  attach(hooks: TurnHooks): void;
  start(): void;
  stop(): void;
  /**
   * Whether the driver's loop keeps the process alive (true until told otherwise, as a libuv
   * handle is ref'd). A NetStack calls it with false while none of its sockets and servers is
   * ref'd, and with true again when one is. Optional: a driver without it always holds.
   */
  setRef?(ref: boolean): void;
}

/**
 * A stack on a NIC queue through NicLoop. The app layer's turn end runs inside the loop's
 * onTurnEnd; the driver then runs the core once more so that replies, window updates and
 * closes issued there leave with this turn's kick (events that run produces open the next
 * batch), and wakes the loop at the core's next deadline through `stack.onCommand`.
 */
export class NicDriver implements Driver {
  readonly stack: Stack;
  readonly loop: NicLoop;
  #hooks: TurnHooks | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #now: () => number;

  constructor(stack: Stack, nic: NicPort, opts: Omit<LoopOptions, "onEvent" | "onTurnEnd"> = {}) {
    this.stack = stack;
    this.#now = opts.now ?? (() => performance.now());
    stack.configureOffloads(nic.caps, { txFaults: !!opts.faults?.tx });
    this.loop = new NicLoop(stack, nic, {
      ...opts,
      onEvent: (ev) => this.#hooks?.onEvent(ev),
      onTurnEnd: () => this.#turnEnd(),
    });
  }

  attach(hooks: TurnHooks): void {
    if (this.#hooks) throw new Error("pmstack: this driver already runs an app layer");
    this.#hooks = hooks;
  }

  start(): void {
    this.loop.start();
  }

  stop(): void {
    this.loop.stop();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** The loop's handles (the NIC's poll, its timers) and this driver's timer: see Driver.setRef. */
  setRef(ref: boolean): void {
    this.loop.setRef(ref);
    if (this.#timer) refTimer(this.#timer, ref);
  }

  #turnEnd(): void {
    const h = this.#hooks;
    if (!h) return;
    const s = this.stack;
    const now = this.#now();
    h.onTurnEnd(now);
    const next = s.poll(now); // the app's commands become frames before the loop's kick
    const events = s.drainEvents(h.onEvent);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    // events that run produced (they open the next batch) need a turn even with no new frame
    const wait = events > 0 ? 0 : next - now;
    if (Number.isFinite(wait))
      this.#timer = refTimer(
        setTimeout(() => s.onCommand?.(), Math.max(0, wait)),
        this.loop.refd,
      );
  }
}

/** One side of a MemoryPair. */
class PairSide implements Driver {
  hooks: TurnHooks | null = null;
  /** This side's app wants the pair to keep the process alive (setRef). */
  refd = true;
  constructor(
    readonly stack: Stack,
    readonly pair: MemoryPair,
  ) {}
  attach(hooks: TurnHooks): void {
    if (this.hooks) throw new Error("pmstack: this driver already runs an app layer");
    this.hooks = hooks;
  }
  start(): void {
    this.pair.start();
  }
  stop(): void {
    this.pair.stop();
  }
  /** The pair's timers hold the process while either side's app wants them to. */
  setRef(ref: boolean): void {
    this.refd = ref;
    this.pair._refChanged();
  }
}

export interface MemoryPairOptions extends LinkOptions {
  /** Buffers per pool (default 4096). */
  buffers?: number;
  /** Stack options for each side (mac, ip, rcvBuf, ...). Defaults: 198.18.0.1/24 and 198.18.0.2/24. */
  a?: Partial<StackOptions>;
  b?: Partial<StackOptions>;
}

/**
 * Two stacks in one process joined by a MemoryLink (tests, simulation). `start()` runs them on
 * the event loop in real time; `runUntil(cond)` runs them synchronously on a clock that skips
 * idle time (deterministic tests). `a` and `b` are the two drivers.
 */
export class MemoryPair {
  readonly link: MemoryLink;
  readonly a: Driver;
  readonly b: Driver;
  readonly stats = { turns: 0, frames: 0 };
  #sides: PairSide[];
  #skew = 0;
  #running = false;
  #inTurn = false;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #immediate: ReturnType<typeof setImmediate> | null = null;
  /** Whether the pair's timers keep the process alive: while either side's driver is ref'd. */
  #refd = true;

  constructor(a: Stack, b: Stack, opts: LinkOptions = {}) {
    this.link = new MemoryLink(a.port, b.port, opts);
    this.#sides = [new PairSide(a, this), new PairSide(b, this)];
    this.a = this.#sides[0]!;
    this.b = this.#sides[1]!;
    for (const s of [a, b])
      s.onCommand = () => {
        if (this.#running && !this.#inTurn) this.#soon();
      };
  }

  /** Two volatile stacks, 198.18.0.1 (a) and 198.18.0.2 (b), and the link between them. */
  static create(opts: MemoryPairOptions = {}): MemoryPair {
    const buffers = opts.buffers ?? 4096;
    const a = Stack.create({ mac: "02:00:00:00:00:0a", ip: "198.18.0.1/24", pool: { buffers }, ...opts.a });
    const b = Stack.create({ mac: "02:00:00:00:00:0b", ip: "198.18.0.2/24", pool: { buffers }, ...opts.b });
    return new MemoryPair(a, b, opts);
  }

  now(): number {
    return performance.now() + this.#skew;
  }

  /** One turn of both stacks: returns whether anything moved, and the next deadline. */
  turn(now = this.now()): { busy: boolean; next: number } {
    this.stats.turns++;
    this.#inTurn = true;
    let moved = this.link.step(now);
    let events = 0;
    let next = Infinity;
    for (const side of this.#sides) {
      const s = side.stack;
      const h = side.hooks;
      const drain = (ev: StackEvent) => h?.onEvent(ev);
      next = Math.min(next, s.poll(now));
      events += s.drainEvents(drain);
      next = Math.min(next, s.poll(now));
      events += s.drainEvents(drain);
      h?.onTurnEnd(now);
      next = Math.min(next, s.poll(now));
      events += s.drainEvents(drain);
    }
    moved += this.link.step(now);
    this.stats.frames += moved;
    this.#inTurn = false;
    return { busy: moved + events > 0, next: Math.min(next, this.link.nextDeadline()) };
  }

  /** Runs synchronously until `done()` (checked after each turn) or `limitMs` of stack time. */
  runUntil(done: () => boolean, limitMs = 60_000): boolean {
    const end = this.now() + limitMs;
    while (this.now() < end) {
      const now = this.now();
      const { busy, next } = this.turn(now);
      if (done()) return true;
      if (!busy && next > now) this.#skew += Math.min(next, now + 50) - now;
    }
    return done();
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#soon();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#immediate) clearImmediate(this.#immediate);
    this.#timer = this.#immediate = null;
  }

  /** Stops and closes both pools. */
  shutdown(): void {
    this.stop();
    for (const s of this.#sides) s.stack.shutdown();
  }

  /** @internal a side's setRef: the pair holds the process while either side wants it to. */
  _refChanged(): void {
    const ref = this.#sides.some((s) => s.refd);
    if (ref === this.#refd) return;
    this.#refd = ref;
    if (this.#timer) refTimer(this.#timer, ref);
    if (this.#immediate) refTimer(this.#immediate, ref);
  }

  #soon(): void {
    if (this.#immediate) return;
    this.#immediate = refTimer(
      setImmediate(() => {
        this.#immediate = null;
        this.#wake();
      }),
      this.#refd,
    );
  }

  #wake(): void {
    if (!this.#running) return;
    const now = this.now();
    const { busy, next } = this.turn(now);
    if (!this.#running) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (busy || next <= now) this.#soon();
    else if (Number.isFinite(next))
      this.#timer = refTimer(
        setTimeout(() => this.#wake(), Math.max(1, next - now)),
        this.#refd,
      );
  }
}

// ---- pool pressure ------------------------------------------------------------------------------

/** Hysteresis on the pool's free count: on below `low`, off again at `high`. */
export class PoolPressure {
  on = false;
  entered = 0;
  constructor(
    readonly low: number,
    readonly high: number,
  ) {
    if (!(low >= 0 && high >= low)) throw new RangeError(`pmstack: bad low/high water marks ${low}/${high}`);
  }
  update(free: number): boolean {
    if (!this.on && free < this.low) {
      this.on = true;
      this.entered++;
    } else if (this.on && free >= this.high) this.on = false;
    return this.on;
  }
}

// ---- connections and sending -------------------------------------------------------------------

/** Bytes of the app's own data per fresh buffer (at offset HEADROOM: the headers go in front). */
export const SEGMENT = 1400;
export const HEADROOM = 128;

/** Command-ring slots sends leave free for closes, window updates and other commands. */
export const COMMAND_RESERVE = 32;

/**
 * Per-connection send state shared by the batch API and the Node-idiom API. Buffers the core
 * refused (SEND_REFUSED) wait here, in order, and go again on WRITABLE; sends issued while the
 * command ring is nearly full wait here too and go at the next turn's end (flush()). Later
 * sends queue behind both, so the byte stream keeps its order. A close waits until the core has
 * taken every send (none queued here, none refused, none still unanswered in the command ring):
 * a FIN queued before a send the core then refuses would lose that send's bytes.
 */
type Queued = BufferName & { held?: boolean; polls?: number };

/**
 * A name the caller took a reference on for a send (see SendQueue.send's `held`), made in the
 * shape the queue keeps: send(name, true) keeps this object itself instead of a copy. For a
 * reply's named ranges, which are made fresh for one send (a GET's value), that is one object
 * per range instead of two. The name must not be sent again after.
 */
export function heldName(index: number, offset: number, length: number): BufferName {
  const q: Queued = { index, offset, length, held: true, polls: 0 };
  return q;
}

export class SendQueue {
  /** Refused by the core: first to go again (in stream order). */
  refusedNames: Queued[] = [];
  /** Never handed to the core yet (behind refused ones, or the command ring was full). */
  waiting: Queued[] = [];
  /** Held sends handed to the core since the last settle(): the queue's reference goes once it took its own. */
  #inflight: Queued[] = [];
  /** The core refused a send and has not said WRITABLE since. */
  blocked = false;
  /** stack.polls when the last send was handed to the core (-1: none yet). */
  #handedAt = -1;
  closeAfter = false;
  closed = false;
  #cut = 0; // refusals since the last flush go before what that flush left unsent
  constructor(
    readonly stack: Stack,
    readonly conn: number,
  ) {}

  /** Everything not yet accepted by the core, in stream order. */
  get pending(): readonly BufferName[] {
    return this.refusedNames.length ? [...this.refusedNames, ...this.waiting] : this.waiting;
  }

  /**
   * Queues a send. `held`: the caller took a reference for the queue (a kept buffer sent by
   * name): it is dropped once the core has taken its own, so that the app may release the
   * buffer right after the reply.
   */
  send(name: BufferName, held = false): void {
    const q: Queued = !held
      ? name
      : (name as Queued).held === true
        ? (name as Queued) // made by heldName for this send: kept as it is
        : { index: name.index, offset: name.offset, length: name.length, held, polls: 0 };
    if (this.blocked || this.refusedNames.length || this.waiting.length) this.waiting.push(q);
    else if (this.stack.commandSpace() <= COMMAND_RESERVE) this.waiting.push(q);
    else this.#hand(q);
  }

  #hand(q: Queued): void {
    this.stack.send(this.conn, q);
    this.#handedAt = this.stack.polls;
    if (q.held) {
      q.polls = this.stack.polls;
      this.#inflight.push(q);
    }
  }

  /** Sends were handed to the core and no poll has run since: it may still refuse them. */
  get unconfirmed(): boolean {
    return this.#handedAt >= 0 && this.stack.polls <= this.#handedAt;
  }

  refused(name: BufferName): void {
    this.blocked = true;
    const k = this.#inflight.findIndex(
      (x) => x.index === name.index && x.offset === name.offset && x.length === name.length,
    );
    const held = k >= 0 && this.#inflight.splice(k, 1)[0]!.held === true;
    const q: Queued = { index: name.index, offset: name.offset, length: name.length, held, polls: 0 };
    this.refusedNames.splice(this.#cut++, 0, q);
  }

  writable(): void {
    this.blocked = false;
    this.flush();
  }

  /**
   * At a turn's end, after the turn's events were drained: sends a poll has run over since they
   * were handed are answered (taken or refused) by now; later ones (issued after the turn's
   * last poll) wait for the next settle().
   */
  settle(): void {
    // held sends a poll has seen and that were not refused were taken: the core holds its own
    // reference, ours goes
    const polls = this.stack.polls;
    let keep = 0;
    for (const q of this.#inflight) {
      if (q.polls! < polls) this.stack.pool.free(q.index);
      else this.#inflight[keep++] = q;
    }
    this.#inflight.length = keep;
    if (!this.blocked) this.flush();
  }

  /** Hands queued buffers to the core while it is not blocked and the command ring has room. */
  flush(): void {
    const s = this.stack;
    this.#cut = 0;
    while (!this.blocked && s.commandSpace() > COMMAND_RESERVE) {
      const n = this.refusedNames.length ? this.refusedNames.shift() : this.waiting.shift();
      if (!n) break;
      this.#hand(n);
    }
    this.#maybeClose();
  }

  /** FIN after everything queued: now if the core has taken every send, else at a later turn's end. */
  close(): void {
    this.closeAfter = true;
    this.#maybeClose();
  }

  #maybeClose(): void {
    if (this.closeAfter && !this.closed && this.idle && !this.unconfirmed && !this.blocked) {
      this.closeAfter = false;
      this.closed = true;
      this.stack.close(this.conn);
    }
  }

  /** Bytes waiting here (refused by the core, or not handed to it yet). */
  queuedBytes(): number {
    let n = 0;
    for (const p of this.refusedNames) n += p.length;
    for (const p of this.waiting) n += p.length;
    return n;
  }

  get idle(): boolean {
    return this.refusedNames.length === 0 && this.waiting.length === 0;
  }

  /** Nothing left for settle() to do: nothing queued, no held send unanswered, no FIN waiting. */
  get quiet(): boolean {
    return this.idle && this.#inflight.length === 0 && !this.closeAfter;
  }

  /** The connection is gone: app buffers still queued go back to the pool (kept ones were never referenced). */
  drop(): void {
    const pool = this.stack.pool;
    for (const list of [this.refusedNames, this.waiting, this.#inflight])
      for (const q of list) if (q.held || pool.owner(q.index) === "app") pool.free(q.index);
    this.refusedNames = [];
    this.waiting = [];
    this.#inflight = [];
    this.closeAfter = false;
    this.closed = true;
  }
}

export function freeRefused(stack: Stack, names: readonly BufferName[]): void {
  for (const n of names) if (stack.pool.owner(n.index) === "app") stack.pool.free(n.index);
}

/** The per-connection receive window the core was configured with (bytes). */
export function receiveBuffer(stack: Stack): number {
  return stack.config("RCVBUF");
}

/**
 * Default low-water mark: room for a full receive window of every connection that may be
 * sending (one buffer per 1024 window bytes: segments are at most one MSS, ~1448 bytes, each in
 * its own buffer) plus the NIC's refill, but never more than half the pool; at least 1/8 of it.
 */
export function defaultLowWater(stack: Stack, senders = 1): number {
  const total = stack.pool.bufferCount;
  const window = Math.ceil(receiveBuffer(stack) / 1024) * senders + 64;
  return Math.min(Math.floor(total / 2), Math.max(Math.floor(total / 8), window));
}

/**
 * Copies the app's bytes into fresh PM buffers at offset HEADROOM, up to SEGMENT bytes each
 * (the one copy of a reply: the app's own bytes into PM), appending their names to `out`.
 * Returns the bytes copied: fewer than asked (possibly none) when the pool has no more than
 * `reserve` free buffers left.
 */
export function copyIntoBuffers(stack: Stack, bytes: Uint8Array, reserve = 0, out: BufferName[] = []): number {
  const pool = stack.pool;
  let at = 0;
  while (at < bytes.length) {
    if (pool.freeCount <= reserve) break;
    const n = Math.min(SEGMENT, bytes.length - at);
    const i = pool.alloc();
    pool.view(i, HEADROOM, n).set(bytes.subarray(at, at + n));
    out.push({ index: i, offset: HEADROOM, length: n });
    at += n;
  }
  return at;
}

/**
 * Copies `bytes` into fresh buffers and queues them on `q`, all or nothing: a pool too empty
 * for the whole of it throws PoolExhaustedError (ENOBUFS) and sends nothing, never a truncated
 * reply. Returns the buffers used.
 */
export function sendCopy(q: SendQueue, bytes: Uint8Array): number {
  const names: BufferName[] = [];
  const done = copyIntoBuffers(q.stack, bytes, 0, names);
  if (done < bytes.length) {
    freeRefused(q.stack, names);
    throw new PoolExhaustedError(
      "ENOBUFS",
      `pmstack: reply of ${bytes.length} bytes needs ${Math.ceil(bytes.length / SEGMENT)} free buffers; the pool has ${q.stack.pool.freeCount}`,
    );
  }
  for (const n of names) q.send(n);
  return names.length;
}

// ---- the batch API --------------------------------------------------------------------------

/** Received bytes: a zero-copy view of the PM buffer where they landed, and its name. */
export interface Chunk {
  conn: number;
  name: BufferName;
  /** Valid while the handler runs; if kept, until the app releases the buffer (server.release). */
  view: Uint8Array;
  kept: boolean;
}

export interface Accepted {
  conn: number;
  /** The peer's address: dotted IPv4 or RFC 5952 IPv6. */
  remoteAddress: string;
  remoteFamily: "IPv4" | "IPv6";
  remotePort: number;
  localPort: number;
}

export interface Batch {
  /** Every chunk received this turn, all connections, in arrival order. */
  readonly chunks: readonly Chunk[];
  readonly accepted: readonly Accepted[];
  /** Active opens that completed: the connection and the tag connect() returned. */
  readonly connected: readonly { conn: number; tag: number; remotePort: number; localPort: number }[];
  /** The peer sent FIN: no more data on these. */
  readonly ended: readonly number[];
  /**
   * Closed (both FINs) or reset: the ids are dead. `tag` is connect()'s for active opens (a
   * refused connect shows up here); `reason` for resets (TCP_REASONS): 1 RESET by the peer,
   * 2 TIMEOUT, 3 REFUSED, 4 KEEPALIVE timeout (docs/core-abi.md).
   */
  readonly closed: readonly { conn: number; tag: number; reset: boolean; reason: number }[];
  /** Failed commands: listen/connect errors (`tag`, `port`, `reason`: TCP_REASONS NOCONN, BADARG, INUSE). */
  readonly errors: readonly { tag: number; port: number; reason: number }[];
  /** Connections whose refused sends all went out again after WRITABLE: send more now. */
  readonly writable: readonly number[];
  /** Keeps a chunk's buffer: it becomes the app's persistent data (owner kept). Returns its name. */
  keep(chunk: Chunk): BufferName;
  /** Queues ranges to persist; they are made durable together with one fence when the handler returns. */
  persist(items: readonly (Chunk | BufferName)[]): void;
  /** Appends a record to the server's PmLog (the log takes its own reference; no keep needed). Committed once per turn. */
  append(key: LogKey, items: readonly (Chunk | BufferName)[]): number;
  /**
   * Replies with the app's bytes (copied once into fresh PM buffers; PoolExhaustedError, with
   * nothing sent, if the pool cannot hold them) or a kept buffer's name (no copy: TCP
   * references the kept buffer and sends its bytes as they are in PM).
   */
  reply(conn: number, data: Uint8Array | string | BufferName): void;
  /** Half-closes after everything queued (FIN). */
  close(conn: number): void;
  /** Resets the connection (RST). */
  abort(conn: number): void;
}

export interface PasteOptions {
  /**
   * Withhold window updates while fewer buffers than this are free. Default: one receive
   * window (rcvBuf / 1024 buffers) + 64, at least 1/8 and at most 1/2 of the pool.
   */
  lowWater?: number;
  /** Resume them once this many are free again (default: min(pool, 2 x lowWater)). */
  highWater?: number;
  /** A log for batch.append(); committed once per turn, after the handler. */
  log?: PmLog;
}

export interface PasteStats {
  turns: number;
  batches: number;
  chunks: number;
  bytes: number;
  kept: number;
  /** pool.persistBatch calls made for batch.persist (one per turn at most). */
  persistFences: number;
  persistRanges: number;
  logAppends: number;
  logCommits: number;
  /** The app's own reply bytes copied into fresh PM buffers, and the buffers used. */
  replyCopiedBytes: number;
  replyBuffers: number;
  /** Kept buffers sent as-is (no copy). */
  zeroCopySends: number;
  zeroCopyBytes: number;
  sendRefused: number;
  /** Received bytes not yet acknowledged to TCP because of pool pressure. */
  withheldBytes: number;
  pressureEntered: number;
}

export type PasteHandler = (batch: Batch) => void;

const enc = new TextEncoder();

/**
 * The batch API over a driver. `handler(batch)` runs once per turn that has anything for the
 * app (data, new or finished connections, errors).
 */
export class PasteServer {
  readonly driver: Driver;
  readonly stack: Stack;
  readonly stats: PasteStats = {
    turns: 0,
    batches: 0,
    chunks: 0,
    bytes: 0,
    kept: 0,
    persistFences: 0,
    persistRanges: 0,
    logAppends: 0,
    logCommits: 0,
    replyCopiedBytes: 0,
    replyBuffers: 0,
    zeroCopySends: 0,
    zeroCopyBytes: 0,
    sendRefused: 0,
    withheldBytes: 0,
    pressureEntered: 0,
  };
  readonly pressure: PoolPressure;
  #handler: PasteHandler;
  #log: PmLog | null;
  #conns = new Map<number, SendQueue>();
  #owed = new Map<number, number>();
  #tags = 1;
  // the batch being gathered
  #chunks: Chunk[] = [];
  #accepted: Accepted[] = [];
  #connected: Batch["connected"][number][] = [];
  #ended: number[] = [];
  #closed: Batch["closed"][number][] = [];
  #errors: Batch["errors"][number][] = [];
  #writable: number[] = [];

  constructor(driver: Driver, handler: PasteHandler, opts: PasteOptions = {}) {
    this.driver = driver;
    this.stack = driver.stack;
    this.#handler = handler;
    this.#log = opts.log ?? null;
    const total = this.stack.pool.bufferCount;
    const low = opts.lowWater ?? defaultLowWater(this.stack);
    this.pressure = new PoolPressure(low, opts.highWater ?? Math.min(total, 2 * low));
    driver.attach({ onEvent: (ev) => this.#event(ev), onTurnEnd: () => this.#turnEnd() });
  }

  listen(port: number, backlog?: number): void {
    this.stack.listen(port, { backlog });
  }

  /** Opens a connection; its `connected` (or `errors`/`closed`) entry carries the returned tag. */
  connect(ip: string, port: number): number {
    const tag = this.#tags++;
    this.stack.connect(ip, port, { tag });
    return tag;
  }

  start(): this {
    this.driver.start();
    return this;
  }

  stop(): void {
    this.driver.stop();
  }

  /** Replies (any time, in or out of a turn): see Batch.reply. */
  reply(conn: number, data: Uint8Array | string | BufferName): void {
    const q = this.#conn(conn);
    if (typeof data === "object" && !(data instanceof Uint8Array)) {
      if (this.stack.pool.owner(data.index) !== "kept")
        throw new TypeError("pmstack: reply() with a name needs a kept buffer (batch.keep); pass bytes otherwise");
      this.stats.zeroCopySends++;
      this.stats.zeroCopyBytes += data.length;
      // the queue holds a reference until TCP has taken its own: release() may follow at once
      this.stack.pool.ref(data.index);
      q.send(data, true); // TCP references the buffer; the bytes are sent as they are in PM
      return;
    }
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    this.stats.replyBuffers += sendCopy(q, bytes);
    this.stats.replyCopiedBytes += bytes.length;
  }

  close(conn: number): void {
    this.#conns.get(conn)?.close();
  }

  /** Bytes of `conn` waiting in the host for WRITABLE (0: the core took everything sent so far). */
  queued(conn: number): number {
    return this.#conns.get(conn)?.queuedBytes() ?? 0;
  }

  /** Received bytes not yet acknowledged to TCP (their window is closed) because of pool pressure. */
  get withheld(): number {
    let n = 0;
    for (const b of this.#owed.values()) n += b;
    return n;
  }

  abort(conn: number): void {
    this.stack.abort(conn);
  }

  /** Gives a kept buffer back (one reference) and reopens withheld windows if the pool recovered. */
  release(name: BufferName | number): void {
    this.stack.pool.free(typeof name === "number" ? name : name.index);
    this.#checkPressure();
  }

  #conn(conn: number): SendQueue {
    let q = this.#conns.get(conn);
    if (!q) this.#conns.set(conn, (q = new SendQueue(this.stack, conn)));
    return q;
  }

  #event(ev: StackEvent): void {
    switch (ev.type) {
      case "DATA": {
        const name = { index: ev.buf, offset: ev.off, length: ev.len };
        this.#chunks.push({ conn: ev.conn, name, view: this.stack.pool.view(ev.buf, ev.off, ev.len), kept: false });
        break;
      }
      case "ACCEPTED":
        this.#conn(ev.conn);
        this.#accepted.push({
          conn: ev.conn,
          remoteAddress: ev.addr,
          remoteFamily: ev.family === 6 ? "IPv6" : "IPv4",
          remotePort: ev.off,
          localPort: ev.len,
        });
        break;
      case "CONNECTED":
        this.#conn(ev.conn);
        this.#connected.push({ conn: ev.conn, tag: ev.buf, remotePort: ev.off, localPort: ev.len });
        break;
      case "PEER_CLOSED":
        this.#ended.push(ev.conn);
        break;
      case "CLOSED":
      case "RESET":
        this.#conns.get(ev.conn)?.drop();
        this.#conns.delete(ev.conn);
        this.#owed.delete(ev.conn);
        this.#closed.push({ conn: ev.conn, tag: ev.buf, reset: ev.type === "RESET", reason: ev.aux });
        break;
      case "SEND_REFUSED": {
        this.stats.sendRefused++;
        const q = this.#conns.get(ev.conn);
        const n = { index: ev.buf, offset: ev.off, length: ev.len };
        if (q) q.refused(n);
        else freeRefused(this.stack, [n]);
        break;
      }
      case "WRITABLE": {
        const q = this.#conns.get(ev.conn);
        if (q) {
          q.writable();
          if (q.idle) this.#writable.push(ev.conn);
        }
        break;
      }
      case "ERROR":
        this.#errors.push({ tag: ev.conn, port: ev.off, reason: ev.aux });
        break;
      case "UDP":
        this.stack.pool.free(ev.buf); // the batch API is TCP only
        break;
    }
  }

  #turnEnd(): void {
    this.stats.turns++;
    // sends that waited for room in the command ring go first
    for (const [conn, q] of this.#conns) {
      const waited = !q.idle;
      q.settle();
      if (waited && q.idle && !q.blocked && !this.#writable.includes(conn)) this.#writable.push(conn);
    }
    const chunks = this.#chunks;
    const any =
      chunks.length + this.#accepted.length + this.#connected.length + this.#ended.length + this.#closed.length;
    if (any + this.#errors.length + this.#writable.length === 0) {
      this.#checkPressure();
      return;
    }
    const toPersist: BufferName[] = [];
    let appended = 0;
    const pool = this.stack.pool;
    const nameOf = (x: Chunk | BufferName): BufferName => ("name" in x ? x.name : x);
    const batch: Batch = {
      chunks,
      accepted: this.#accepted,
      connected: this.#connected,
      ended: this.#ended,
      closed: this.#closed,
      errors: this.#errors,
      writable: this.#writable,
      keep: (c) => {
        if (!c.kept) {
          pool.keep(c.name.index);
          c.kept = true;
          this.stats.kept++;
        }
        return c.name;
      },
      persist: (items) => {
        for (const x of items) toPersist.push(nameOf(x));
      },
      append: (key, items) => {
        if (!this.#log) throw new TypeError("pmstack: batch.append() needs a log (PasteServer option `log`)");
        appended++;
        this.stats.logAppends++;
        return this.#log.append(key, items.map(nameOf));
      },
      reply: (conn, data) => this.reply(conn, data),
      close: (conn) => this.close(conn),
      abort: (conn) => this.abort(conn),
    };
    this.#chunks = [];
    this.#accepted = [];
    this.#connected = [];
    this.#ended = [];
    this.#closed = [];
    this.#errors = [];
    this.#writable = [];
    this.stats.batches++;
    try {
      this.#handler(batch);
    } finally {
      // durability first (one fence; one group commit), then the chunks go back, then the
      // window updates: the replies the handler queued leave after this, in the same turn
      if (toPersist.length) {
        pool.persistBatch(toPersist);
        this.stats.persistFences++;
        this.stats.persistRanges += toPersist.length;
      }
      if (appended && this.#log) {
        this.#log.commit();
        this.stats.logCommits++;
      }
      const free: number[] = [];
      for (const c of chunks) {
        this.stats.chunks++;
        this.stats.bytes += c.name.length;
        if (!c.kept) free.push(c.name.index);
        if (this.#conns.has(c.conn)) this.#owed.set(c.conn, (this.#owed.get(c.conn) ?? 0) + c.name.length);
      }
      if (free.length) pool.freeBatch(free);
      this.#checkPressure();
    }
  }

  /** Acknowledges what the app consumed, unless the pool is under pressure. */
  #checkPressure(): void {
    const before = this.pressure.entered;
    const on = this.pressure.update(this.stack.pool.freeCount);
    this.stats.pressureEntered += this.pressure.entered - before;
    let withheld = 0;
    for (const [conn, bytes] of this.#owed) {
      if (on) withheld += bytes;
      else if (this.#conns.has(conn)) this.stack.recvd(conn, bytes);
    }
    if (!on) this.#owed.clear();
    this.stats.withheldBytes = withheld;
  }
}

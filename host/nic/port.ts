// NicPort: one NIC queue (TAP or AF_XDP) moving frames between the kernel and the PM pool's
// buffers through rings in the core's memory. Frames never pass through JavaScript memory:
// the addon reads them into pool buffers and writes ring slots; the host (later the core)
// reads the slots. Formats: docs/nic.md.

import { BUF_SIZE, RXF_NEEDS_CSUM, SF_MORE } from "../abi.js";
import type { CoreInstance } from "../core.js";
import { PmstackError } from "../errors.js";
import type { Pool } from "../pool.js";
import { Ring } from "../ring.js";
import {
  META_SIZE,
  SF_GSO_MASK,
  SF_GSO_SHIFT,
  nicNative,
  type NicInfo,
  type NicNative,
  type NicStats,
} from "./native.js";
import { coreRxFlags, txFrameOf, txOffload, type TxOffload } from "./frames.js";

/** Offsets (in the core's memory) of one queue's rings and tables, reserved before the pool is sealed. */
export interface NicQueues {
  rxRing: number;
  txRing: number;
  rxMeta: number;
  txMeta: number;
  /** Fill table: u32 count, u32 capacity, u32 index[capacity]; the addon pops from the top. */
  fill: number;
  /** Done table: u32 count, u32 capacity, u32 index[capacity]; the addon appends completed buffers. */
  done: number;
  slots: number;
  fillCap: number;
  doneCap: number;
}

export interface ReserveOptions {
  /** log2 of the slots per ring (default 9: 512 slots; at least 64 for TAP's 64 KiB superframes). */
  ringLog2?: number;
  /** Buffers kept posted for receive (default: the ring size). */
  fillCap?: number;
}

function must(r: number, what: string): number {
  if (r < 0) throw new PmstackError("ENOMEM", `pmstack: cannot reserve ${what} in the core's arena (error ${r})`);
  return r;
}

/**
 * Reserves one queue's rings and tables in the core's arena. Call it from the pool's
 * `configure` hook: `Pool.create(path, { buffers, configure: (core) => (q = reserveNicQueues(core)) })`.
 */
export function reserveNicQueues(core: CoreInstance, opts: ReserveOptions = {}): NicQueues {
  const e = core.exports;
  const log2 = opts.ringLog2 ?? 9;
  const slots = 1 << log2;
  const fillCap = opts.fillCap ?? slots;
  const doneCap = 2 * slots;
  const q: NicQueues = {
    rxRing: must(e.ringCreate(log2), "the RX ring"),
    txRing: must(e.ringCreate(log2), "the TX ring"),
    rxMeta: must(e.arenaAlloc(slots * META_SIZE, 64), "the RX metadata table"),
    txMeta: must(e.arenaAlloc(slots * META_SIZE, 64), "the TX metadata table"),
    fill: must(e.arenaAlloc(8 + fillCap * 4, 64), "the fill table"),
    done: must(e.arenaAlloc(8 + doneCap * 4, 64), "the done table"),
    slots,
    fillCap,
    doneCap,
  };
  const u32 = new Uint32Array(core.memory.buffer);
  u32[q.fill >>> 2] = 0;
  u32[(q.fill >>> 2) + 1] = fillCap;
  u32[q.done >>> 2] = 0;
  u32[(q.done >>> 2) + 1] = doneCap;
  return q;
}

/**
 * What a NIC queue does to frames on the stack's behalf (its offloads), as each port type
 * reports it (`NicPort.caps`). Stack.configureOffloads decides TSO from it.
 */
export interface NicCaps {
  /** Cuts TCP superframes into MSS-sized segments (TSO: virtio-net GSO on TAP). */
  readonly segmentation: boolean;
  /** Completes the partial checksums of frames it sends and reports received ones verified. */
  readonly checksum: boolean;
}

/** A NIC that does nothing to frames: AF_XDP, TAP without its virtio-net header. */
export const NO_OFFLOADS: NicCaps = Object.freeze({ segmentation: false, checksum: false });

/** A received frame: its chain of buffer names and the offload metadata of its first slot. */
export interface RxFrame {
  /** Buffers, in order; each still holds the NIC's one reference: free them or keep them. */
  bufs: { index: number; offset: number; length: number }[];
  length: number;
  flags: number;
  /** virtio-net GSO type (0 none, 1 TCPv4, 3 UDP, 4 TCPv6, 5 UDP L4). */
  gsoType: number;
  csumStart: number;
  csumOffset: number;
  gsoSize: number;
  hdrLen: number;
}

/** A frame to send: buffers already written (any owner, one reference each, handed to the NIC). */
export interface TxFrame {
  bufs: { index: number; offset?: number; length: number }[];
  flags?: number;
  csumStart?: number;
  csumOffset?: number;
  gsoSize?: number;
  hdrLen?: number;
}

/** Why a TX slot (buffer `index`, bytes [off, off + len)) names no bytes a NIC can send, or null. */
function badSlot(index: number, off: number, len: number): string | null {
  return len > 0 && off + len <= BUF_SIZE ? null : `pmstack: bad TX buffer ${index} [${off}, +${len})`;
}

/** Deno's libuv emulation fires a poll once per start; Node's stays armed. */
const ONE_SHOT_POLL = typeof (globalThis as { Deno?: unknown }).Deno !== "undefined";

export abstract class NicPort {
  readonly pool: Pool;
  readonly queues: NicQueues;
  readonly info: NicInfo;
  /** Where this path copies bytes (also printed by `describe()`). */
  readonly copies: string;
  protected nat: NicNative;
  protected handle: object;
  #u32: Uint32Array;
  #u16: Uint16Array;
  /** The queue's RX ring (the addon produces, we consume) and TX ring (we produce). */
  #rx: Ring;
  #tx: Ring;
  #fillTarget: number;
  #closed = false;
  /** Frames waiting for room on the TX ring, in order. */
  #backlog: TxFrame[] = [];
  /** Frames that found the TX ring full even after a flush and waited in the backlog (send(), sendFrom()). */
  txBacklogged = 0;
  /** sendFrom()'s decoded offloads of the frame it moves (one object, reused). */
  #off: TxOffload = { flags: 0, csumStart: 0, csumOffset: 0, gsoSize: 0, hdrLen: 0 };

  protected constructor(pool: Pool, queues: NicQueues, nat: NicNative, handle: object, fillTarget: number) {
    this.pool = pool;
    this.queues = queues;
    this.nat = nat;
    this.handle = handle;
    this.info = nat.info(handle);
    this.copies = this.info.copies;
    this.#u32 = new Uint32Array(pool.core.memory.buffer);
    this.#u16 = new Uint16Array(pool.core.memory.buffer);
    this.#rx = new Ring(pool.core.memory, queues.rxRing);
    this.#tx = new Ring(pool.core.memory, queues.txRing);
    this.#fillTarget = Math.min(fillTarget, queues.fillCap);
  }

  protected static memoryArgs(pool: Pool) {
    const memory = pool.core.memory;
    return {
      nat: nicNative(),
      memory,
      view: new Uint8Array(memory.buffer),
      bufBase: pool.bufferBase,
      bufCount: pool.bufferCount,
    };
  }

  /** The offloads this queue performs. */
  abstract get caps(): NicCaps;

  get closed(): boolean {
    return this.#closed;
  }

  get fd(): number {
    return this.info.fd;
  }

  stats(): NicStats {
    return this.nat.stats(this.handle);
  }

  /** Buffers currently posted in the fill table (owner "nic"). */
  get fillCount(): number {
    return this.#u32[this.queues.fill >>> 2]!;
  }

  /** Tops the fill table up with fresh buffers (owner "nic"); as many as the pool can give. */
  refill(): number {
    const at = this.queues.fill >>> 2;
    const have = this.#u32[at]!;
    let want = this.#fillTarget - have;
    if (want <= 0) return 0;
    want = Math.min(want, this.pool.freeCount);
    if (want <= 0) return 0;
    const got = this.pool.allocBatch(want, "nic");
    this.#u32.set(got, at + 2 + have);
    this.#u32[at] = have + want;
    return want;
  }

  /** Refills, then pulls every ready frame into the RX ring (one addon call). Returns frames. */
  receive(): number {
    this.#live();
    this.refill();
    return this.nat.rx(this.handle, this.queues.rxRing, this.queues.rxMeta, this.queues.fill);
  }

  /** Takes every frame out of the RX ring. The caller owns their buffers (owner "nic"). */
  drain(): RxFrame[] {
    const rx = this.#rx;
    let head = rx.head;
    const tail = rx.tail;
    const out: RxFrame[] = [];
    let cur: RxFrame | null = null;
    while (head !== tail) {
      const s = rx.slot(head);
      const flags = rx.flags(s);
      const b = { index: rx.buf(s), offset: rx.off(s), length: rx.len(s) };
      if (!cur) {
        const m = (this.queues.rxMeta + (head & rx.mask) * META_SIZE) >>> 1;
        const hasMeta = (flags & 0xff00) !== 0;
        cur = {
          bufs: [],
          length: 0,
          flags,
          gsoType: (flags & SF_GSO_MASK) >>> SF_GSO_SHIFT,
          csumStart: hasMeta ? this.#u16[m]! : 0,
          csumOffset: hasMeta ? this.#u16[m + 1]! : 0,
          gsoSize: hasMeta ? this.#u16[m + 2]! : 0,
          hdrLen: hasMeta ? this.#u16[m + 3]! : 0,
        };
      }
      cur.bufs.push(b);
      cur.length += b.length;
      head = (head + 1) >>> 0;
      if (!(flags & SF_MORE)) {
        out.push(cur);
        cur = null;
      }
    }
    // A chain is written whole by the addon, so `cur` is always null here.
    rx.head = head;
    return out;
  }

  /**
   * drain() and the hand-over to a core in one, with no object per frame: moves every received
   * frame from this queue's RX ring onto the ring at memory offset `coreRx` (a stack's RX ring:
   * `stack.rings.rx`), slot by slot, its first slot's checksum state in the core's form. A
   * frame that ring has no room for is dropped (its buffers freed). Counts each frame moved in
   * `counts.rxFrames`, each dropped in `counts.rxRingFull`.
   */
  drainInto(coreRx: number, counts: { rxFrames: number; rxRingFull: number }): void {
    const core = this.#coreRing(coreRx);
    const rx = this.#rx;
    let head = rx.head;
    const tail = rx.tail;
    let to = core.tail;
    const room = core.mask + 1;
    while (head !== tail) {
      const end = rx.chainEnd(head);
      if (end < 0) break; // the addon publishes chains whole: not reached
      const n = (end - head) >>> 0;
      if (room - ((to - core.head) >>> 0) < n) {
        for (let p = head; p !== end; p = (p + 1) >>> 0) this.pool.free(rx.buf(rx.slot(p)));
        counts.rxRingFull++;
        head = end;
        continue;
      }
      const flags = rx.flags(rx.slot(head));
      const first = coreRxFlags(flags);
      let conn = 0;
      if (first & RXF_NEEDS_CSUM && flags & 0xff00) {
        // a partial checksum: where it starts and where it goes, from the metadata table
        const m = (this.queues.rxMeta + (head & rx.mask) * META_SIZE) >>> 1;
        conn = (this.#u16[m]! | (this.#u16[m + 1]! << 16)) >>> 0;
      }
      for (let p = head; p !== end;) {
        const s = rx.slot(p);
        const k = p;
        p = (p + 1) >>> 0;
        const more = p !== end ? SF_MORE : 0;
        core.put(
          core.slot(to),
          rx.buf(s),
          rx.off(s),
          rx.len(s),
          k === head ? conn : 0,
          (k === head ? first : 0) | more,
        );
        to = (to + 1) >>> 0;
      }
      counts.rxFrames++;
      head = end;
    }
    rx.head = head;
    core.tail = to; // publish the batch
  }

  /** Frees the buffers of received frames (drops the NIC's reference). */
  release(frames: readonly RxFrame[]): void {
    const idx: number[] = [];
    for (const f of frames) for (const b of f.bufs) idx.push(b.index);
    if (idx.length) this.pool.freeBatch(idx);
  }

  /**
   * Queues frames on the TX ring and sends everything queued with one addon call; completed
   * buffers are freed (their reference is dropped). Returns frames sent by this call. When the
   * ring is full, what it holds is sent first to make room (one more addon call); frames that
   * still do not fit wait, in order, in a backlog that `flush()` moves on as room appears.
   */
  send(frames: readonly TxFrame[]): number {
    this.#live();
    if (this.#backlog.length) {
      // frames already waiting for room go first
      for (const f of frames) this.#backlog.push(f);
      return this.flush();
    }
    let i = this.#enqueue(frames, 0);
    let sent = 0;
    while (i < frames.length) {
      sent += this.#flushRing();
      const j = this.#enqueue(frames, i);
      if (j === i) {
        for (let k = i; k < frames.length; k++) this.#backlog.push(frames[k]!);
        this.txBacklogged += frames.length - i;
        return sent;
      }
      i = j;
    }
    return sent + this.#flushRing();
  }

  /**
   * send() straight from a core, with no object per frame: moves every complete frame queued on
   * the ring at memory offset `coreTx` (a stack's TX ring: `stack.rings.tx`; its first slot's
   * offload request in the core's form) onto this queue's TX ring, making room as send() does,
   * then sends with one addon call. Frames that still do not fit wait in the backlog, in order.
   * Returns the frames taken from the core's ring. A frame no NIC can send (more buffers than
   * the TX ring has slots, or a slot naming no bytes of a buffer) is a RangeError: its buffers
   * are freed and the frames after it stay for the next call.
   */
  sendFrom(coreTx: number): number {
    this.#live();
    const core = this.#coreRing(coreTx);
    const tx = this.#tx;
    let head = core.head;
    const tail = core.tail;
    let taken = 0;
    while (head !== tail) {
      const end = core.chainEnd(head);
      if (end < 0) break; // an unfinished frame stays for the next turn
      const n = (end - head) >>> 0;
      const bad = this.#badFrame(core, head, end, n);
      if (bad) {
        // a frame no NIC can send: its buffers go back, and the frames after it go on later
        for (let p = head; p !== end; p = (p + 1) >>> 0) this.pool.free(core.buf(core.slot(p)));
        core.head = end;
        if (taken) this.flush();
        throw new RangeError(bad);
      }
      if (this.#backlog.length === 0) {
        if (tx.space() < n) this.#flushRing();
        if (tx.space() >= n) {
          this.#putFrame(core, head, n);
          head = end;
          taken++;
          continue;
        }
      }
      this.#backlog.push(txFrameOf(core, head, end));
      this.txBacklogged++;
      head = end;
      taken++;
    }
    core.head = head;
    if (taken || this.txPending) this.flush();
    return taken;
  }

  /** Views of the core's rings drainInto() and sendFrom() were given, by memory offset (made once). */
  #coreRings = new Map<number, Ring>();
  #coreRing(at: number): Ring {
    let r = this.#coreRings.get(at);
    if (!r) this.#coreRings.set(at, (r = new Ring(this.pool.core.memory, at)));
    return r;
  }

  /** Why the core's frame [head, end) of `n` slots cannot be sent, or null. */
  #badFrame(core: Ring, head: number, end: number, n: number): string | null {
    const long = this.#tooLong(n);
    if (long) return long;
    for (let p = head; p !== end; p = (p + 1) >>> 0) {
      const s = core.slot(p);
      const bad = badSlot(core.buf(s), core.off(s), core.len(s));
      if (bad) return bad;
    }
    return null;
  }

  /** Why a frame of `n` buffers cannot go on the TX ring (more than its slots), or null. */
  #tooLong(n: number): string | null {
    const slots = this.#tx.mask + 1;
    return n > slots ? `pmstack: a frame of ${n} buffers cannot fit a ${slots}-slot TX ring` : null;
  }

  /** Writes a frame's offloads into the TX metadata table, at the position of its first slot. */
  #putMeta(tail: number, csumStart: number, csumOffset: number, gsoSize: number, hdrLen: number): void {
    const m = (this.queues.txMeta + (tail & this.#tx.mask) * META_SIZE) >>> 1;
    this.#u16[m] = csumStart;
    this.#u16[m + 1] = csumOffset;
    this.#u16[m + 2] = gsoSize;
    this.#u16[m + 3] = hdrLen;
  }

  /** Writes the `n` slots of the core's frame at `head` onto the TX ring (it has room; its slots checked). */
  #putFrame(core: Ring, head: number, n: number): void {
    const tx = this.#tx;
    let tail = tx.tail;
    const s0 = core.slot(head);
    const o = this.#off;
    txOffload(core.flags(s0), core.conn(s0), o);
    this.#putMeta(tail, o.csumStart, o.csumOffset, o.gsoSize, o.hdrLen);
    for (let k = 0, p = head; k < n; k++, p = (p + 1) >>> 0) {
      const s = core.slot(p);
      tx.put(
        tx.slot(tail),
        core.buf(s),
        core.off(s),
        core.len(s),
        0,
        (k === 0 ? o.flags & ~SF_MORE : 0) | (k + 1 < n ? SF_MORE : 0),
      );
      tail = (tail + 1) >>> 0;
    }
    tx.tail = tail;
  }

  /** Writes frames[from..] on the TX ring while they fit; returns the index of the first left over. */
  #enqueue(frames: readonly TxFrame[], from: number): number {
    const tx = this.#tx;
    const mask = tx.mask;
    let tail = tx.tail;
    let i = from;
    for (; i < frames.length; i++) {
      const f = frames[i]!;
      const n = f.bufs.length;
      if (n === 0) continue;
      const long = this.#tooLong(n);
      if (long) throw new RangeError(long);
      if (((tail - tx.head) >>> 0) + n > mask + 1) break;
      this.#putMeta(tail, f.csumStart ?? 0, f.csumOffset ?? 0, f.gsoSize ?? 0, f.hdrLen ?? 0);
      for (let k = 0; k < n; k++) {
        const b = f.bufs[k]!;
        const off = b.offset ?? 0;
        const bad = badSlot(b.index, off, b.length);
        if (bad) throw new RangeError(bad);
        tx.put(
          tx.slot(tail),
          b.index,
          off,
          b.length,
          0,
          (k === 0 ? (f.flags ?? 0) & ~SF_MORE : 0) | (k + 1 < n ? SF_MORE : 0),
        );
        tail = (tail + 1) >>> 0;
      }
    }
    tx.tail = tail;
    return i;
  }

  /** Sends what is queued (then as much of the backlog as fits) and frees completed buffers. Returns frames sent. */
  flush(): number {
    this.#live();
    let sent = this.#flushRing();
    if (this.#backlog.length) {
      const n = this.#enqueue(this.#backlog, 0);
      if (n) {
        this.#backlog.splice(0, n);
        sent += this.#flushRing();
      }
    }
    return sent;
  }

  #flushRing(): number {
    const sent = this.nat.tx(this.handle, this.queues.txRing, this.queues.txMeta, this.queues.done);
    this.reapDone();
    return sent;
  }

  /** Slots queued on the TX ring but not yet taken by the kernel, plus frames in the backlog. */
  get txPending(): number {
    return this.#tx.count() + this.#backlog.length;
  }

  protected reapDone(): number {
    const at = this.queues.done >>> 2;
    const n = this.#u32[at]!;
    if (n) {
      this.pool.freeBatch(this.#u32.subarray(at + 2, at + 2 + n));
      this.#u32[at] = 0;
    }
    return n;
  }

  /**
   * Calls `onReady(events)` from the Node event loop whenever the queue's fd is readable
   * (libuv poll on the fd; no JavaScript busy loop). The handle keeps the loop alive until
   * `stopPolling()` or `close()`.
   */
  poll(onReady: (events: number) => void): void {
    this.#live();
    this.nat.pollStart(this.handle, onReady, false, ONE_SHOT_POLL);
  }

  stopPolling(): void {
    this.nat.pollStop(this.handle);
  }

  /**
   * Whether the poll keeps the process alive (true, the default, as any libuv handle does);
   * false lets the process exit while nothing else holds it. Holds for later `poll()` calls too.
   */
  pollRef(ref: boolean): void {
    if (!this.#closed) this.nat.pollRef(this.handle, ref);
  }

  /**
   * Closes the queue (detaching an XDP program) and returns every buffer it held to the pool:
   * the fill table, frames left in the RX ring, unsent TX slots, completions, and buffers the
   * kernel still had. Idempotent.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const held = this.nat.close(this.handle);
    const back: number[] = Array.from(held);
    this.reapDone();
    for (const f of this.#backlog) for (const b of f.bufs) back.push(b.index);
    this.#backlog = [];
    const f = this.queues.fill >>> 2;
    for (let k = 0; k < this.#u32[f]!; k++) back.push(this.#u32[f + 2 + k]!);
    this.#u32[f] = 0;
    for (const ring of [this.#rx, this.#tx]) {
      let head = ring.head;
      const tail = ring.tail;
      while (head !== tail) {
        back.push(ring.buf(ring.slot(head)));
        head = (head + 1) >>> 0;
      }
      ring.head = head;
    }
    if (back.length && !this.pool.closed) this.pool.freeBatch(back);
  }

  #live(): void {
    if (this.#closed) throw new PmstackError("ECLOSED", `pmstack: the NIC queue ${this.info.ifname} is closed`);
  }
}

// NicLoop: PASTE's synchronous I/O for one stack on one NIC queue. A turn pulls every ready
// frame from the NIC (one addon call), runs the core once over the batch, hands the app its
// events, and sends everything the core queued with one kick. It wakes on readiness through
// the Node event loop (libuv poll on the queue's fd) or on the core's next timer, or
// busy-polls when asked. It counts turns, frames and syscalls.

import { RING_HDR, SF_MORE, SLOT_SIZE } from "./abi.js";
import type { NicPort, TxFrame } from "./nic/port.js";
import { SF_CSUM_VALID, SF_NEEDS_CSUM } from "./nic/native.js";
import type { Stack, StackEvent } from "./stack.js";

/** The core's RX flags (docs/core-abi.md). */
const RXF_CSUM_VALID = 2;
const RXF_NEEDS_CSUM = 4;

export interface LoopStats {
  turns: number;
  rxFrames: number;
  txFrames: number;
  events: number;
  /** Syscalls the NIC made (read/write/poll/sendto), from the addon's counter. */
  syscalls: number;
  /** Frames dropped because the core's RX ring was full. */
  rxRingFull: number;
}

export interface LoopOptions {
  /** Called once per turn with every event of the turn, before the core runs again. */
  onEvent: (ev: StackEvent) => void;
  /** Called at the end of each turn (after the app's events): persist here, one fence per turn. */
  onTurnEnd?: () => void;
  /** Spin instead of waiting for readiness (lowest latency, one core at 100%). */
  busyPoll?: boolean;
  /** Clock in ms (default performance.now). */
  now?: () => number;
}

export class NicLoop {
  readonly stack: Stack;
  readonly nic: NicPort;
  readonly stats: LoopStats = { turns: 0, rxFrames: 0, txFrames: 0, events: 0, syscalls: 0, rxRingFull: 0 };
  #opts: LoopOptions;
  #now: () => number;
  #u16: Uint16Array;
  #u32: Uint32Array;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #running = false;
  #inTurn = false;
  #tx: TxFrame[] = [];

  constructor(stack: Stack, nic: NicPort, opts: LoopOptions) {
    this.stack = stack;
    this.nic = nic;
    this.#opts = opts;
    this.#now = opts.now ?? (() => performance.now());
    this.#u16 = new Uint16Array(stack.pool.core.memory.buffer);
    this.#u32 = new Uint32Array(stack.pool.core.memory.buffer);
    // commands the app issues outside a turn (a connect from a timer, say) get a turn soon
    stack.onCommand = () => {
      if (this.#running && !this.#inTurn) setImmediate(() => this.#wake());
    };
  }

  /** One turn at time `now`. Returns the core's next deadline. */
  turn(now = this.#now()): number {
    const s = this.stack;
    this.stats.turns++;
    this.#inTurn = true;
    // 1. every ready frame, in one addon call; their slots move to the core's RX ring
    this.nic.receive();
    for (const f of this.nic.drain()) this.#toCore(f.bufs, f.flags, f.csumStart, f.csumOffset);
    // 2. the core over the whole batch, then the app over every event
    let next = s.poll(now);
    this.stats.events += s.drainEvents(this.#opts.onEvent);
    // the app's replies and closes are APP-IN commands: run the core again to turn them into frames
    next = Math.min(next, s.poll(now));
    this.stats.events += s.drainEvents(this.#opts.onEvent);
    if (this.#opts.onTurnEnd) {
      const before = s.commandSpace();
      this.#opts.onTurnEnd();
      // replies released by the turn's end (e.g. after a group commit) leave in this turn
      if (s.commandSpace() < before) {
        next = Math.min(next, s.poll(now));
        this.stats.events += s.drainEvents(this.#opts.onEvent);
      }
    }
    // 3. everything queued goes out with one kick
    this.#sendAll();
    this.stats.syscalls = this.nic.stats().syscalls;
    this.#inTurn = false;
    // commands the last events issued are still queued: come back at once
    if (s.commandSpace() < this.#u32[s.rings.appIn >>> 2]! + 1) next = now;
    return next;
  }

  /** Starts the loop on the event loop; stop() ends it. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    if (this.#opts.busyPoll) {
      const spin = () => {
        if (!this.#running) return;
        const end = this.#now() + 5;
        while (this.#now() < end) this.turn();
        setImmediate(spin); // let timers and I/O of the app run between bursts
      };
      setImmediate(spin);
      return;
    }
    this.nic.poll(() => this.#wake());
    this.#wake();
  }

  stop(): void {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (!this.nic.closed) this.nic.stopPolling();
  }

  #wake(): void {
    if (!this.#running) return;
    const now = this.#now();
    const next = this.turn(now);
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (next <= now) setImmediate(() => this.#wake());
    else if (Number.isFinite(next)) this.#timer = setTimeout(() => this.#wake(), Math.max(0, next - now));
  }

  #toCore(bufs: readonly { index: number; offset: number; length: number }[], flags: number, cs: number, co: number) {
    const rx = this.stack.rings.rx;
    const u32 = this.#u32;
    const r = rx >>> 2;
    const mask = u32[r]!;
    let tail = u32[r + 2]!;
    if (mask + 1 - ((tail - u32[r + 1]!) >>> 0) < bufs.length) {
      this.stats.rxRingFull++;
      this.stack.pool.freeBatch(bufs.map((b) => b.index));
      return;
    }
    const first = (flags & SF_NEEDS_CSUM ? RXF_NEEDS_CSUM : 0) | (flags & SF_CSUM_VALID ? RXF_CSUM_VALID : 0);
    for (let k = 0; k < bufs.length; k++) {
      const b = bufs[k]!;
      const s = rx + RING_HDR + ((tail & mask) >>> 0) * SLOT_SIZE;
      u32[s >>> 2] = b.index;
      this.#u16[(s + 4) >>> 1] = b.offset;
      this.#u16[(s + 6) >>> 1] = b.length;
      u32[(s >>> 2) + 2] = k === 0 && first & RXF_NEEDS_CSUM ? (cs | (co << 16)) >>> 0 : 0;
      u32[(s >>> 2) + 3] = (k === 0 ? first : 0) | (k + 1 < bufs.length ? SF_MORE : 0);
      tail = (tail + 1) >>> 0;
    }
    u32[r + 2] = tail;
    this.stats.rxFrames++;
  }

  #sendAll(): void {
    const tx = this.#tx;
    tx.length = 0;
    const ring = this.stack.rings.tx;
    const u32 = this.#u32;
    const r = ring >>> 2;
    const mask = u32[r]!;
    let head = u32[r + 1]!;
    const tail = u32[r + 2]!;
    let cur: TxFrame | null = null;
    while (head !== tail) {
      const s = ring + RING_HDR + ((head & mask) >>> 0) * SLOT_SIZE;
      const b = { index: u32[s >>> 2]!, offset: this.#u16[(s + 4) >>> 1]!, length: this.#u16[(s + 6) >>> 1]! };
      (cur ??= { bufs: [] }).bufs.push(b);
      head = (head + 1) >>> 0;
      if (!(u32[(s >>> 2) + 3]! & SF_MORE)) {
        tx.push(cur);
        cur = null;
      }
    }
    u32[r + 1] = head;
    if (tx.length) {
      this.stats.txFrames += tx.length;
      this.nic.send(tx);
    } else if (this.nic.txPending) this.nic.flush();
  }
}

// NicLoop: PASTE's synchronous I/O for one stack on one NIC queue. A turn pulls every ready
// frame from the NIC (one addon call), runs the core once over the batch, hands the app its
// events, and sends everything the core queued with one kick. It wakes on readiness through
// the Node event loop (libuv poll on the queue's fd) or on the core's next timer, or
// busy-polls when asked. It counts turns, frames and syscalls. For tests it can inject faults
// (drop, duplicate, reorder/delay, corrupt) between the NIC and the core, each direction seeded.

import { RXF_NEEDS_CSUM, SF_MORE } from "./abi.js";
import { prng, type FaultConfig } from "./link/fault.js";
import { TimeQueue } from "./link/timeq.js";
import { coreRxFlags, txFrameOf } from "./nic/frames.js";
import type { NicPort, TxFrame } from "./nic/port.js";
import { SF_CSUM_VALID, SF_GSO_MASK, SF_GSO_SHIFT, SF_NEEDS_CSUM } from "./nic/abi.js";
import type { PcapWriter } from "./pcap.js";
import type { Pool } from "./pool.js";
import { Ring } from "./ring.js";
import type { Stack, StackEvent } from "./stack.js";

export interface LoopStats {
  turns: number;
  rxFrames: number;
  txFrames: number;
  events: number;
  /** Syscalls the NIC made (read/write/poll/sendto), from the addon's counter. */
  syscalls: number;
  /** Frames dropped because the core's RX ring was full. */
  rxRingFull: number;
  /**
   * Turns that took 1 ms or more on the loop's clock, and the longest one's ms: where a reply
   * waited for something other than its own turn's work (a GC pause, the thread preempted, a
   * compaction), what a latency tail is made of.
   */
  slowTurns: number;
  maxTurnMs: number;
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
  /**
   * Test-only fault injection between the NIC and the core, per direction (`rx`: frames from
   * the NIC to the core, `tx`: frames from the core to the NIC), each with its own seed:
   * `drop`, `duplicate` (a named copy into fresh buffers), `reorder` (+`reorderMs`, default 1),
   * `delayMs`, `jitterMs`, `bandwidthBps` (held frames keep their buffers until due), `corrupt`
   * (one bit flipped in place; see docs/api/stack.md), `mtu`, `queueLimit`.
   */
  faults?: { rx?: LoopFaultConfig; tx?: LoopFaultConfig };
  /**
   * Captures every frame the core receives and every frame handed to the NIC (TX superframes
   * as one record, as tcpdump shows them on an offloading device). A copy per frame: for
   * debugging, not for speed. Timestamps: the loop's clock plus `pcap.epochMs`.
   */
  pcap?: PcapWriter;
  /**
   * Called with a copy of every ARP frame and IPv6 neighbor advertisement received, before the
   * core sees it: workers on queues of one device share them (`inject`), since the answer to
   * one worker's request may be hashed to another's queue.
   */
  onNeighborFrame?: (frame: Uint8Array) => void;
}

export type LoopFaultConfig = FaultConfig & { seed?: number };

export interface LoopFaultStats {
  /** Frames that entered the injector. */
  frames: number;
  /** Frames handed on (duplicates included). */
  delivered: number;
  dropped: number;
  duplicated: number;
  reordered: number;
  corrupted: number;
  oversize: number;
  queueDrops: number;
  /** Bytes copied into fresh buffers (duplicates, and corrupted TX frames whose buffers are shared). */
  copiedBytes: number;
  /** Frames held right now (delayed or reordered). */
  held: number;
}

type Name = { index: number; offset: number; length: number };
interface FaultFrame {
  bufs: Name[];
  /** The NIC slot flags (SF_NEEDS_CSUM, SF_CSUM_VALID, GSO type) and their metadata. */
  flags: number;
  cs: number;
  co: number;
  gs: number;
  hl: number;
}
interface Held {
  at: number;
  f: FaultFrame;
}

/**
 * One direction of the loop's fault injector. Frames travel by name, with their offload
 * metadata: a dropped frame's buffers are freed, a held frame keeps them until it is due, a
 * duplicate is a copy into fresh buffers (owner nic), and a corrupted frame has one bit
 * flipped in place (RX: the NIC's own buffers) or, on TX when a buffer is shared (a
 * retransmit queue holds it too), in a copy, so the stack's own data stays intact. A
 * NEEDS_CSUM frame's checksum is completed first and its offload flags cleared, as if the bit
 * flipped on the wire after the sender's checksum (left partial, the receiver or the NIC would
 * sum over the flipped bit and take it). A TX GSO superframe chosen for corruption is lost
 * instead: the NIC would cut it into segments, each with a valid checksum over the flipped bit.
 */
class FrameFaults {
  readonly stats: LoopFaultStats = {
    frames: 0,
    delivered: 0,
    dropped: 0,
    duplicated: 0,
    reordered: 0,
    corrupted: 0,
    oversize: 0,
    queueDrops: 0,
    copiedBytes: 0,
    held: 0,
  };
  #pool: Pool;
  #c: LoopFaultConfig;
  #rx: boolean;
  #rand: () => number;
  #heap = new TimeQueue<Held>(); // by (at, arrival)
  #linkFree = 0;

  constructor(pool: Pool, c: LoopFaultConfig, rx: boolean) {
    for (const k of ["drop", "duplicate", "reorder", "corrupt"] as const) {
      const p = c[k] ?? 0;
      if (!(p >= 0 && p <= 1)) throw new RangeError(`pmstack: fault ${k} must be a probability in [0, 1], got ${p}`);
    }
    for (const k of ["delayMs", "jitterMs", "reorderMs", "bandwidthBps", "mtu", "queueLimit"] as const) {
      const v = c[k] ?? 0;
      if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`pmstack: fault ${k} must be >= 0, got ${v}`);
    }
    this.#pool = pool;
    this.#c = { ...c };
    this.#rx = rx;
    this.#rand = prng(c.seed ?? (rx ? 1 : 2));
  }

  /** Takes one frame (and its buffer references) at time `now`. */
  push(f: FaultFrame, now: number): void {
    const c = this.#c;
    const st = this.stats;
    st.frames++;
    let len = 0;
    for (const b of f.bufs) len += b.length;
    if (c.mtu && len > c.mtu) {
      st.oversize++;
      this.#free(f);
      return;
    }
    if (c.drop && this.#rand() < c.drop) {
      st.dropped++;
      this.#free(f);
      return;
    }
    const frames = [f];
    if (c.duplicate && this.#rand() < c.duplicate) {
      const d = this.#copy(f);
      if (d) {
        st.duplicated++;
        frames.push(d);
      }
    }
    for (let g of frames) {
      if (c.queueLimit && this.#heap.length >= c.queueLimit) {
        st.queueDrops++;
        this.#free(g);
        continue;
      }
      if (c.corrupt && this.#rand() < c.corrupt) {
        const h = this.#corrupt(g, len);
        if (!h) {
          // no fresh buffer for the copy: lose the frame instead (still a corrupted frame)
          st.corrupted++;
          this.#free(g);
          continue;
        }
        g = h;
        st.corrupted++;
      }
      let at = now;
      if (c.bandwidthBps) {
        this.#linkFree = Math.max(this.#linkFree, now) + (len * 8 * 1000) / c.bandwidthBps;
        at = this.#linkFree;
      }
      at += (c.delayMs ?? 0) + (c.jitterMs ? this.#rand() * c.jitterMs : 0);
      if (c.reorder && this.#rand() < c.reorder) {
        at += this.#rand() * (c.reorderMs ?? 1);
        st.reordered++;
      }
      this.#heap.push({ at, f: g });
    }
    st.held = this.#heap.length;
  }

  /** Frames due by `now`, in delivery order. */
  due(now: number, out: FaultFrame[]): void {
    const q = this.#heap;
    for (let h = q.popDue(now); h; h = q.popDue(now)) {
      out.push(h.f);
      this.stats.delivered++;
    }
    this.stats.held = q.length;
  }

  next(): number {
    return this.#heap.next();
  }

  /** Frees every held frame (the loop stops: what was on the wire is lost). */
  clear(): void {
    const idx: number[] = [];
    for (const h of this.#heap.items()) for (const b of h.f.bufs) idx.push(b.index);
    this.#heap.clear();
    this.stats.held = 0;
    if (idx.length && !this.#pool.closed) this.#pool.freeBatch(idx);
  }

  #free(f: FaultFrame): void {
    this.#pool.freeBatch(f.bufs.map((b) => b.index));
  }

  /** A copy of the frame in fresh buffers (owner nic), or null when the pool has none. */
  #copy(f: FaultFrame): FaultFrame | null {
    const pool = this.#pool;
    if (pool.freeCount < f.bufs.length) return null;
    const fresh = pool.allocBatch(f.bufs.length, "nic");
    const bufs = f.bufs.map((b, k) => {
      pool.view(fresh[k]!, b.offset, b.length).set(pool.view(b.index, b.offset, b.length));
      this.stats.copiedBytes += b.length;
      return { index: fresh[k]!, offset: b.offset, length: b.length };
    });
    return { bufs, flags: f.flags, cs: f.cs, co: f.co, gs: f.gs, hl: f.hl };
  }

  /** Flips one bit of the frame; returns the frame to deliver (maybe a copy), or null. */
  #corrupt(f: FaultFrame, len: number): FaultFrame | null {
    const pool = this.#pool;
    if (!this.#rx && f.flags & SF_GSO_MASK) return null; // lost (see the class comment)
    let g = f;
    if (!this.#rx && f.bufs.some((b) => pool.refCount(b.index) > 1 || pool.owner(b.index) === "kept")) {
      const d = this.#copy(f);
      if (!d) return null;
      this.#free(f);
      g = d;
    }
    if (g.flags & SF_NEEDS_CSUM) this.#completeCsum(g);
    g.flags &= ~(SF_NEEDS_CSUM | SF_CSUM_VALID);
    let bit = Math.floor(this.#rand() * len * 8);
    for (const b of g.bufs) {
      if (bit < b.length * 8) {
        pool.view(b.index, b.offset, b.length)[bit >> 3]! ^= 1 << (bit & 7);
        break;
      }
      bit -= b.length * 8;
    }
    return g;
  }

  /** Completes a partial checksum (virtio NEEDS_CSUM) in place, as the core would. */
  #completeCsum(f: FaultFrame): void {
    const pool = this.#pool;
    let sum = 0;
    let pos = 0; // bytes summed so far: even positions are high bytes
    let skip = f.cs;
    for (const b of f.bufs) {
      const v = pool.view(b.index, b.offset, b.length);
      for (let i = Math.min(skip, v.length); i < v.length; i++) {
        sum += pos++ & 1 ? v[i]! : v[i]! << 8;
        if (sum > 0xffffff) sum = (sum & 0xffff) + (sum >>> 16);
      }
      skip = Math.max(0, skip - v.length);
    }
    while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
    const at = f.cs + f.co;
    const b0 = f.bufs[0]!;
    if (at + 2 > b0.length) return;
    const v = pool.view(b0.index, b0.offset, b0.length);
    const r = ~sum & 0xffff;
    v[at] = r >>> 8;
    v[at + 1] = r & 0xff;
  }
}

/**
 * Refs or unrefs a timer or immediate (Node's objects; Deno's numeric timer ids through
 * Deno.refTimer/unrefTimer) and returns it.
 */
export function refTimer<T>(t: T, ref: boolean): T {
  if (typeof t === "number") {
    const deno = (globalThis as { Deno?: { refTimer?(id: number): void; unrefTimer?(id: number): void } }).Deno;
    if (ref) deno?.refTimer?.(t);
    else deno?.unrefTimer?.(t);
  } else if (t && typeof t === "object") {
    const h = t as { ref?(): unknown; unref?(): unknown };
    if (ref) h.ref?.();
    else h.unref?.();
  }
  return t;
}

export class NicLoop {
  readonly stack: Stack;
  readonly nic: NicPort;
  /** Whether received frames move from the NIC's ring to the core's slot to slot (drainInto), and sent ones back (sendFrom). */
  #rxDirect: boolean;
  #txDirect: boolean;
  readonly stats: LoopStats;
  #opts: LoopOptions;
  #now: () => number;
  /** The core's RX ring (we produce), TX ring (we consume) and command ring (read only). */
  #rx: Ring;
  #tx: Ring;
  #appIn: Ring;
  #timer: ReturnType<typeof setTimeout> | null = null;
  /** When #timer is due (the loop's clock). */
  #timerAt = 0;
  #spin: ReturnType<typeof setImmediate> | null = null;
  #refd = true;
  #running = false;
  #inTurn = false;
  #turnNow = 0;
  #txFrames: TxFrame[] = [];
  #rxFaults: FrameFaults | null;
  #txFaults: FrameFaults | null;
  #due: FaultFrame[] = [];
  /** Frames other workers shared (inject), for the next turn. */
  #injected: Uint8Array[] = [];

  constructor(stack: Stack, nic: NicPort, opts: LoopOptions) {
    this.stack = stack;
    this.nic = nic;
    this.#opts = opts;
    // syscalls come from the addon's counter when read (not every turn: that object costs);
    // after the NIC is closed, the last value read (stop() reads it once more)
    let last = 0;
    this.stats = {
      turns: 0,
      rxFrames: 0,
      txFrames: 0,
      events: 0,
      get syscalls() {
        if (!nic.closed) last = nic.stats().syscalls;
        return last;
      },
      rxRingFull: 0,
      slowTurns: 0,
      maxTurnMs: 0,
    };
    this.#rxFaults = opts.faults?.rx ? new FrameFaults(stack.pool, opts.faults.rx, true) : null;
    this.#txFaults = opts.faults?.tx ? new FrameFaults(stack.pool, opts.faults.tx, false) : null;
    // frames move slot to slot (no object per frame) where the queue can (every NicPort can; a
    // queue of another host's making may offer only drain() and send()) and nothing between
    // the NIC and the core needs them as objects
    const direct = typeof nic.drainInto === "function" && typeof nic.sendFrom === "function";
    this.#rxDirect = direct && !this.#rxFaults && !opts.pcap && !opts.onNeighborFrame;
    this.#txDirect = direct && !this.#txFaults && !opts.pcap;
    this.#now = opts.now ?? (() => performance.now());
    const memory = stack.pool.core.memory;
    this.#rx = new Ring(memory, stack.rings.rx);
    this.#tx = new Ring(memory, stack.rings.tx);
    this.#appIn = new Ring(memory, stack.rings.appIn);
    // commands the app issues outside a turn (a connect from a timer, say) get a turn soon
    stack.onCommand = () => {
      if (this.#running && !this.#inTurn) this.#held(setImmediate(() => this.#wake()));
    };
  }

  /** Fault counters per direction, when the loop was made with `faults`. */
  get faultStats(): { rx: LoopFaultStats | null; tx: LoopFaultStats | null } | null {
    if (!this.#rxFaults && !this.#txFaults) return null;
    return {
      rx: this.#rxFaults ? { ...this.#rxFaults.stats } : null,
      tx: this.#txFaults ? { ...this.#txFaults.stats } : null,
    };
  }

  /** One turn at time `now`. Returns the core's next deadline (or a held frame's, with faults). */
  turn(now = this.#now()): number {
    const s = this.stack;
    this.stats.turns++;
    this.#turnNow = now;
    this.#inTurn = true;
    // 1. every ready frame, in one addon call; their slots move to the core's RX ring
    this.nic.receive();
    const rxf = this.#rxFaults;
    if (rxf) {
      for (const f of this.nic.drain())
        rxf.push({ bufs: f.bufs, flags: f.flags, cs: f.csumStart, co: f.csumOffset, gs: f.gsoSize, hl: f.hdrLen }, now);
      const due = this.#due;
      due.length = 0;
      rxf.due(now, due);
      for (const f of due) this.#toCore(f.bufs, f.flags, f.cs, f.co);
      due.length = 0;
    } else if (this.#rxDirect) this.nic.drainInto(this.stack.rings.rx, this.stats);
    else for (const f of this.nic.drain()) this.#toCore(f.bufs, f.flags, f.csumStart, f.csumOffset);
    // frames another worker shared (injected) join the batch
    if (this.#injected.length) {
      for (const f of this.#injected) if (!s.port.deliver(f)) this.stats.rxRingFull++;
      this.#injected.length = 0;
    }
    // 2. the core over the whole batch, then the app over every event
    let next = s.poll(now);
    this.stats.events += s.drainEvents(this.#opts.onEvent);
    // the app's replies and closes are APP-IN commands: run the core again to turn them into
    // frames (and again if the first poll left frames for lack of event slots); a turn whose
    // app queued nothing is over
    if (s.commandsQueued() > 0 || next <= now) {
      next = Math.min(next, s.poll(now));
      this.stats.events += s.drainEvents(this.#opts.onEvent);
    }
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
    this.#sendAll(now);
    this.#inTurn = false;
    // commands the last events issued are still queued: come back at once
    if (this.#appIn.count() > 0) next = now;
    // frames the fault injector holds are due later: wake for the first
    if (rxf) next = Math.min(next, rxf.next());
    if (this.#txFaults) next = Math.min(next, this.#txFaults.next());
    const took = this.#now() - now;
    if (took >= 1) {
      this.stats.slowTurns++;
      if (took > this.stats.maxTurnMs) this.stats.maxTurnMs = took;
    }
    return next;
  }

  /**
   * Whether the loop keeps the process alive (true, the default: the NIC's poll handle, the
   * timer for the core's next deadline and the busy-poll spin are ref'd, as node:net's handles
   * are). false unrefs them: the loop still runs while something else holds the process (a
   * NetStack does this when no socket or server of its own is ref'd).
   */
  setRef(ref: boolean): void {
    if (ref === this.#refd) return;
    this.#refd = ref;
    if (this.#timer) this.#held(this.#timer);
    if (this.#spin) this.#held(this.#spin);
    if (!this.nic.closed) this.nic.pollRef(ref);
  }

  /** Whether the loop keeps the process alive (setRef). */
  get refd(): boolean {
    return this.#refd;
  }

  /** A timer or immediate of the loop, ref'd or not as the loop is. */
  #held<T>(t: T): T {
    return refTimer(t, this.#refd);
  }

  /** Starts the loop on the event loop; stop() ends it. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    if (this.#opts.busyPoll) {
      const spin = () => {
        this.#spin = null;
        if (!this.#running) return;
        const end = this.#now() + 5;
        while (this.#now() < end) this.turn();
        this.#spin = this.#held(setImmediate(spin)); // let timers and I/O of the app run between bursts
      };
      this.#spin = this.#held(setImmediate(spin));
      return;
    }
    this.nic.poll(() => this.#wake());
    if (!this.#refd) this.nic.pollRef(false);
    this.#wake();
  }

  /** Stops the loop. Frames the fault injector still held are lost (their buffers freed). */
  stop(): void {
    this.#running = false;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#spin) clearImmediate(this.#spin);
    this.#spin = null;
    if (!this.nic.closed) this.nic.stopPolling();
    void this.stats.syscalls; // keep the final count past the NIC's close
    this.#rxFaults?.clear();
    this.#txFaults?.clear();
  }

  #wake(): void {
    if (!this.#running) return;
    const now = this.#now();
    const next = this.turn(now);
    if (next <= now) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = null;
      this.#held(setImmediate(() => this.#wake()));
    } else if (Number.isFinite(next) && !(this.#timer && this.#timerAt <= next)) {
      // a timer due no later than the core's next deadline stays: it may wake the loop a little
      // early (that turn arms the next), which costs less than a new timer on every turn
      if (this.#timer) clearTimeout(this.#timer);
      this.#timerAt = next;
      this.#timer = this.#held(
        setTimeout(
          () => {
            this.#timer = null;
            this.#wake();
          },
          Math.max(0, next - now),
        ),
      );
    }
  }

  #capture(bufs: readonly { index: number; offset?: number; length: number }[]): void {
    const pool = this.stack.pool;
    this.#opts.pcap!.write(
      bufs.map((b) => pool.view(b.index, b.offset ?? 0, b.length)),
      this.#turnNow,
    );
  }

  /**
   * Hands the frame to the app first, copied, if it is an ARP frame (an ARP request becomes a
   * reply in the copy: whoever gets it learns the sender, and only the worker that got the
   * request answers it) or an IPv6 neighbor advertisement.
   */
  #neighbor(bufs: readonly { index: number; offset: number; length: number }[]) {
    const b = bufs[0]!;
    if (bufs.length !== 1 || b.length < 42 || b.length > 1514) return;
    const v = this.stack.pool.viewName(b);
    const type = (v[12]! << 8) | v[13]!;
    const arp = type === 0x0806;
    // IPv6, next header ICMPv6 (58), type 136 (neighbor advertisement)
    if (!arp && !(type === 0x86dd && b.length >= 78 && v[20] === 58 && v[54] === 136)) return;
    const copy = v.slice();
    if (arp && copy[21] === 1) copy[21] = 2; // ARP op (offset 14 + 6, big-endian u16): request -> reply
    this.#opts.onNeighborFrame!(copy);
  }

  /** A frame another worker received (onNeighborFrame): the core gets it in the next turn. */
  inject(frame: Uint8Array): void {
    this.#injected.push(frame);
    this.stack.onCommand?.();
  }

  #toCore(bufs: readonly { index: number; offset: number; length: number }[], flags: number, cs: number, co: number) {
    if (this.#opts.pcap) this.#capture(bufs);
    if (this.#opts.onNeighborFrame) this.#neighbor(bufs);
    const rx = this.#rx;
    if (rx.space() < bufs.length) {
      this.stats.rxRingFull++;
      this.stack.pool.freeBatch(bufs.map((b) => b.index));
      return;
    }
    const first = coreRxFlags(flags);
    let tail = rx.tail;
    for (let k = 0; k < bufs.length; k++) {
      const b = bufs[k]!;
      rx.put(
        rx.slot(tail),
        b.index,
        b.offset,
        b.length,
        k === 0 && first & RXF_NEEDS_CSUM ? (cs | (co << 16)) >>> 0 : 0,
        (k === 0 ? first : 0) | (k + 1 < bufs.length ? SF_MORE : 0),
      );
      tail = (tail + 1) >>> 0;
    }
    rx.tail = tail;
    this.stats.rxFrames++;
  }

  #sendAll(now: number): void {
    const ring = this.#tx;
    const txf = this.#txFaults;
    if (this.#txDirect) {
      this.stats.txFrames += this.nic.sendFrom(this.stack.rings.tx);
      return;
    }
    const tx = this.#txFrames;
    tx.length = 0;
    let head = ring.head;
    while (head !== ring.tail) {
      const end = ring.chainEnd(head);
      if (end < 0) break; // an unfinished frame stays for the next turn
      tx.push(txFrameOf(ring, head, end));
      head = end;
    }
    ring.head = head;
    if (txf) {
      for (const f of tx)
        txf.push(
          {
            bufs: f.bufs as Name[],
            flags: f.flags ?? 0,
            cs: f.csumStart ?? 0,
            co: f.csumOffset ?? 0,
            gs: f.gsoSize ?? 0,
            hl: f.hdrLen ?? 0,
          },
          now,
        );
      tx.length = 0;
      const due = this.#due;
      due.length = 0;
      txf.due(now, due);
      for (const f of due)
        tx.push(
          f.flags
            ? { bufs: f.bufs, flags: f.flags, csumStart: f.cs, csumOffset: f.co, gsoSize: f.gs, hdrLen: f.hl }
            : { bufs: f.bufs },
        );
      due.length = 0;
    }
    if (this.#opts.pcap) for (const f of tx) this.#capture(f.bufs);
    if (tx.length) {
      this.stats.txFrames += tx.length;
      this.nic.send(tx);
    } else if (this.nic.txPending) this.nic.flush();
  }
}

// A seeded, fault-injecting wire: one direction of a link. Frames go in with the sender's
// time and come out, at their delivery time, dropped, duplicated, reordered, corrupted,
// delayed, rate-limited or cut to the MTU as configured. Deterministic: the same seed and the
// same inputs give the same outputs. Linux here has no netem; this is pmstack's (both
// directions, each with its own config and seed).

import { TimeQueue } from "./timeq.js";

export interface FaultConfig {
  /** Probability a frame is lost. */
  drop?: number;
  /** Probability a frame is delivered twice. */
  duplicate?: number;
  /** Probability a frame is held back by up to `reorderMs` extra, so later frames overtake it. */
  reorder?: number;
  reorderMs?: number;
  /** Probability one random bit of a frame is flipped. */
  corrupt?: number;
  /** Fixed one-way delay and uniform extra jitter, in ms. */
  delayMs?: number;
  jitterMs?: number;
  /** Serialization rate in bits per second (0 or absent: infinite). */
  bandwidthBps?: number;
  /** Frames longer than this (bytes, L2 header included) are dropped as oversize. */
  mtu?: number;
  /** Most frames in flight (queued on the wire); beyond it frames are tail-dropped. */
  queueLimit?: number;
}

export interface WireStats {
  sent: number;
  delivered: number;
  dropped: number;
  duplicated: number;
  reordered: number;
  corrupted: number;
  oversize: number;
  queueDrops: number;
  bytesDelivered: number;
}

/** Counters of a wire, all zero. */
export function zeroWireStats(): WireStats {
  return {
    sent: 0,
    delivered: 0,
    dropped: 0,
    duplicated: 0,
    reordered: 0,
    corrupted: 0,
    oversize: 0,
    queueDrops: 0,
    bytesDelivered: 0,
  };
}

/** mulberry32: small, fast, seeded. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface InFlight {
  at: number;
  data: Uint8Array;
}

export class FaultyWire {
  readonly config: Readonly<FaultConfig>;
  readonly stats: WireStats = zeroWireStats();
  #rand: () => number;
  #queue = new TimeQueue<InFlight>(); // by (at, arrival)
  #linkFree = 0; // when the serializer is next idle

  constructor(seed: number, config: FaultConfig = {}) {
    for (const k of ["drop", "duplicate", "reorder", "corrupt"] as const) {
      const p = config[k] ?? 0;
      if (!(p >= 0 && p <= 1)) throw new RangeError(`pmstack: fault ${k} must be a probability in [0, 1], got ${p}`);
    }
    for (const k of ["delayMs", "jitterMs", "reorderMs", "bandwidthBps", "mtu", "queueLimit"] as const) {
      const v = config[k] ?? 0;
      if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`pmstack: fault ${k} must be >= 0, got ${v}`);
    }
    this.config = Object.freeze({ ...config });
    this.#rand = prng(seed);
  }

  /** Puts a frame on the wire at time `now` (ms). The wire keeps its own copy. */
  send(frame: Uint8Array, now: number): void {
    const c = this.config;
    this.stats.sent++;
    if (c.mtu && frame.length > c.mtu) {
      this.stats.oversize++;
      return;
    }
    if (c.drop && this.#rand() < c.drop) {
      this.stats.dropped++;
      return;
    }
    const copies = c.duplicate && this.#rand() < c.duplicate ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let k = 0; k < copies; k++) {
      if (c.queueLimit && this.#queue.length >= c.queueLimit) {
        this.stats.queueDrops++;
        continue;
      }
      const data = frame.slice();
      if (c.corrupt && this.#rand() < c.corrupt) {
        const bit = Math.floor(this.#rand() * data.length * 8);
        data[bit >> 3]! ^= 1 << (bit & 7);
        this.stats.corrupted++;
      }
      let at = now;
      if (c.bandwidthBps) {
        this.#linkFree = Math.max(this.#linkFree, now) + (data.length * 8 * 1000) / c.bandwidthBps;
        at = this.#linkFree;
      }
      at += (c.delayMs ?? 0) + (c.jitterMs ? this.#rand() * c.jitterMs : 0);
      if (c.reorder && this.#rand() < c.reorder) {
        at += this.#rand() * (c.reorderMs ?? 1);
        this.stats.reordered++;
      }
      this.#queue.push({ at, data });
    }
  }

  /** Frames due by `now`, in delivery order. */
  receive(now: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let f = this.#queue.popDue(now); f; f = this.#queue.popDue(now)) {
      this.stats.delivered++;
      this.stats.bytesDelivered += f.data.length;
      out.push(f.data);
    }
    return out;
  }

  /** Time of the next delivery, or Infinity. */
  nextDeadline(): number {
    return this.#queue.next();
  }

  get inFlight(): number {
    return this.#queue.length;
  }
}

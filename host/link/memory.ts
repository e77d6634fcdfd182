// MemoryLink: two cores joined by an in-memory wire, with an optional fault injector in each
// direction and an optional pcap tap. Without faults a frame is copied once, straight from the
// sender's PM buffers into the receiver's (the wire's copy, as a NIC's DMA would make). With
// faults, the wire holds its own copy while the frame is in flight.

import { FaultyWire, type FaultConfig } from "./fault.js";
import type { RingPort } from "./port.js";
import type { PcapWriter } from "../pcap.js";

export interface LinkOptions {
  /** Faults from a to b and from b to a, each with its own seed. */
  ab?: FaultConfig & { seed?: number };
  ba?: FaultConfig & { seed?: number };
  /** Records every frame put on the wire (before faults), with the time given to step(). */
  pcap?: PcapWriter;
}

export class MemoryLink {
  readonly a: RingPort;
  readonly b: RingPort;
  readonly ab: FaultyWire | null;
  readonly ba: FaultyWire | null;
  #pcap: PcapWriter | undefined;

  constructor(a: RingPort, b: RingPort, opts: LinkOptions = {}) {
    this.a = a;
    this.b = b;
    this.ab = opts.ab ? new FaultyWire(opts.ab.seed ?? 1, opts.ab) : null;
    this.ba = opts.ba ? new FaultyWire(opts.ba.seed ?? 2, opts.ba) : null;
    this.#pcap = opts.pcap;
  }

  /** Moves every queued frame at time `now` (ms): TX rings onto the wire, due frames into RX rings. */
  step(now: number): number {
    this.#now = now;
    return this.#move(this.a, this.b, this.ab, this.#toB) + this.#move(this.b, this.a, this.ba, this.#toA);
  }

  /** The time of the step in progress, and what each direction does with a frame (made once: no closure per step). */
  #now = 0;
  #toB = (segs: Uint8Array[]): void => this.#carry(segs, this.b, this.ab);
  #toA = (segs: Uint8Array[]): void => this.#carry(segs, this.a, this.ba);

  #carry(segs: Uint8Array[], to: RingPort, wire: FaultyWire | null): void {
    this.#pcap?.write(segs, this.#now);
    if (wire) wire.send(segs.length === 1 ? segs[0]! : concat(segs), this.#now);
    else to.deliver(segs);
  }

  /** When a delayed frame is next due (Infinity if none). */
  nextDeadline(): number {
    return Math.min(this.ab?.nextDeadline() ?? Infinity, this.ba?.nextDeadline() ?? Infinity);
  }

  #move(from: RingPort, to: RingPort, wire: FaultyWire | null, carry: (segs: Uint8Array[]) => void): number {
    // no faults and no capture: frames go ring to ring
    if (!wire && !this.#pcap) return from.forwardTo(to);
    let n = from.drainTx(carry);
    if (wire) for (const f of wire.receive(this.#now)) if (to.deliver(f)) n++;
    return n;
  }
}

/** The segments of a frame as one array (a copy). */
export function concat(segs: readonly Uint8Array[]): Uint8Array {
  let len = 0;
  for (const s of segs) len += s.length;
  const out = new Uint8Array(len);
  let at = 0;
  for (const s of segs) {
    out.set(s, at);
    at += s.length;
  }
  return out;
}

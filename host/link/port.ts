// RingPort: the NIC end of a core's RX and TX rings, for links that move frames as bytes (the
// in-memory wire, the fault injector, pcap). It plays the part a NIC's DMA engine plays:
// delivering a frame copies its bytes into fresh NIC-owned PM buffers (the copy a NIC would
// make into host memory), and transmitting hands out zero-copy views of the chain and then
// drops the NIC's reference on each buffer (the completion).

import { OWNER_NIC, SF_MORE, BUF_SIZE } from "../abi.js";
import type { Pool } from "../pool.js";
import { Ring } from "../ring.js";

export interface PortStats {
  rxFrames: number;
  rxBytes: number;
  rxDropNoBuffer: number;
  rxDropRingFull: number;
  rxDropTooLong: number;
  txFrames: number;
  txBytes: number;
  txBadSlots: number;
}

/** Longest frame a port accepts: a 64 KiB GSO superframe plus its Ethernet header. */
export const MAX_FRAME = 65536 + 14;

export class RingPort {
  readonly pool: Pool;
  readonly rx: number;
  readonly tx: number;
  readonly stats: PortStats = {
    rxFrames: 0,
    rxBytes: 0,
    rxDropNoBuffer: 0,
    rxDropRingFull: 0,
    rxDropTooLong: 0,
    txFrames: 0,
    txBytes: 0,
    txBadSlots: 0,
  };
  #u8: Uint8Array;
  /** The core's RX ring (we produce) and TX ring (we consume). */
  #rx: Ring;
  #tx: Ring;
  #chain: number[] = [];
  #one: Uint8Array[] = [new Uint8Array(0)];

  /** `rx` and `tx` are the memory offsets of the core's RX ring (we produce) and TX ring (we consume). */
  constructor(pool: Pool, rings: { rx: number; tx: number }) {
    this.pool = pool;
    this.rx = rings.rx;
    this.tx = rings.tx;
    this.#u8 = new Uint8Array(pool.core.memory.buffer);
    this.#rx = new Ring(pool.core.memory, rings.rx);
    this.#tx = new Ring(pool.core.memory, rings.tx);
  }

  /** Free slots in the RX ring. */
  rxSpace(): number {
    return this.#rx.space();
  }

  /**
   * Copies a frame (one array, or several segments to be joined) into fresh NIC-owned buffers,
   * chained with SF_MORE past 2048 bytes, and queues it on the RX ring. Returns false, counting
   * the drop, if the frame is too long or no buffer or slot is left; nothing is queued then.
   */
  deliver(frame: Uint8Array | readonly Uint8Array[]): boolean {
    const one = frame instanceof Uint8Array ? frame : frame.length === 1 ? frame[0]! : null;
    if (one && one.length > 0 && one.length <= BUF_SIZE) return this.#deliverOne(one);
    const segs = frame instanceof Uint8Array ? [frame] : frame;
    let len = 0;
    for (const s of segs) len += s.length;
    if (len === 0 || len > MAX_FRAME) {
      this.stats.rxDropTooLong++;
      return false;
    }
    const nbuf = Math.ceil(len / BUF_SIZE);
    if (this.rxSpace() < nbuf) {
      this.stats.rxDropRingFull++;
      return false;
    }
    const e = this.pool.core.exports;
    const bufs = this.#chain;
    bufs.length = 0;
    for (let k = 0; k < nbuf; k++) {
      const b = e.bufAlloc(OWNER_NIC);
      if (b < 0) {
        for (const x of bufs) e.bufUnref(x);
        this.stats.rxDropNoBuffer++;
        return false;
      }
      bufs.push(b);
    }
    // copy the segments into the chain of buffers
    let k = 0;
    const base = this.pool.bufferBase;
    let at = base + bufs[0]! * BUF_SIZE;
    let room = BUF_SIZE;
    for (const s of segs) {
      let from = 0;
      while (from < s.length) {
        if (room === 0) {
          at = base + bufs[++k]! * BUF_SIZE;
          room = BUF_SIZE;
        }
        const n = Math.min(room, s.length - from);
        this.#u8.set(s.subarray(from, from + n), at);
        at += n;
        room -= n;
        from += n;
      }
    }
    const rx = this.#rx;
    let tail = rx.tail;
    for (let j = 0; j < nbuf; j++) {
      const last = j === nbuf - 1;
      rx.put(rx.slot(tail), bufs[j]!, 0, last ? len - (nbuf - 1) * BUF_SIZE : BUF_SIZE, 0, last ? 0 : SF_MORE);
      tail = (tail + 1) >>> 0;
    }
    rx.tail = tail; // publish the whole chain at once
    this.stats.rxFrames++;
    this.stats.rxBytes += len;
    return true;
  }

  /** deliver() of a frame that fits one buffer: no chain bookkeeping, no allocation. */
  #deliverOne(f: Uint8Array): boolean {
    const rx = this.#rx;
    if (rx.space() < 1) {
      this.stats.rxDropRingFull++;
      return false;
    }
    const e = this.pool.core.exports;
    const b = e.bufAlloc(OWNER_NIC);
    if (b < 0) {
      this.stats.rxDropNoBuffer++;
      return false;
    }
    this.#u8.set(f, this.pool.bufferBase + b * BUF_SIZE);
    const tail = rx.tail;
    rx.put(rx.slot(tail), b, 0, f.length, 0, 0);
    rx.tail = (tail + 1) >>> 0;
    this.stats.rxFrames++;
    this.stats.rxBytes += f.length;
    return true;
  }

  /**
   * Hands each complete frame on the TX ring to `send` as zero-copy views of its segments (valid
   * only during the call), then drops the NIC's reference on every buffer of the frame.
   * Slots naming no held buffer are counted and skipped. Returns the number of frames.
   */
  drainTx(send: (segments: Uint8Array[], length: number) => void): number {
    return this.#drain(send, null);
  }

  /**
   * drainTx() straight into `to`'s RX ring, as `to.deliver()` of each frame would (the in-memory
   * wire with no faults and no capture): a frame of one slot is copied from this pool's buffer
   * into `to`'s with no call in between. Returns the number of frames taken from the TX ring.
   */
  forwardTo(to: RingPort): number {
    return this.#drain(null, to);
  }

  #drain(send: ((segments: Uint8Array[], length: number) => void) | null, to: RingPort | null): number {
    const e = this.pool.core.exports;
    const tx = this.#tx;
    let head = tx.head;
    const tail = tx.tail;
    let frames = 0;
    while (head !== tail) {
      // find the end of the chain; an unfinished chain stays for the next drain
      let end = head;
      let complete = false;
      while (end !== tail) {
        const flags = tx.flags(tx.slot(end));
        end = (end + 1) >>> 0;
        if (!(flags & SF_MORE)) {
          complete = true;
          break;
        }
      }
      if (!complete) break;
      if (end === (head + 1) >>> 0) {
        // one slot: the common case (headers in the payload buffer's headroom)
        const s = tx.slot(head);
        const buf = tx.buf(s);
        const off = tx.off(s);
        const n = tx.len(s);
        if (e.nameCheck(buf, off, n) === 0) {
          if (n > 0) {
            const a = this.pool.bufferBase + buf * BUF_SIZE + off;
            if (to) to.#deliverOne(this.#u8.subarray(a, a + n));
            else {
              this.#one[0] = this.#u8.subarray(a, a + n);
              send!(this.#one, n);
            }
            frames++;
            this.stats.txFrames++;
            this.stats.txBytes += n;
          }
          e.bufUnref(buf);
        } else this.stats.txBadSlots++;
        head = end;
        tx.head = head;
        continue;
      }
      const segs: Uint8Array[] = [];
      const bufs: number[] = [];
      let len = 0;
      for (let p = head; p !== end; p = (p + 1) >>> 0) {
        const s = tx.slot(p);
        const buf = tx.buf(s);
        const off = tx.off(s);
        const n = tx.len(s);
        if (e.nameCheck(buf, off, n) !== 0) {
          this.stats.txBadSlots++;
          continue;
        }
        const a = this.pool.bufferBase + buf * BUF_SIZE + off;
        segs.push(this.#u8.subarray(a, a + n));
        bufs.push(buf);
        len += n;
      }
      if (len > 0) {
        if (to) to.deliver(segs);
        else send!(segs, len);
        frames++;
        this.stats.txFrames++;
        this.stats.txBytes += len;
      }
      for (const b of bufs) e.bufUnref(b);
      head = end;
      tx.head = head;
    }
    return frames;
  }
}

// RingPort: the NIC end of a core's RX and TX rings, for links that move frames as bytes (the
// in-memory wire, the fault injector, pcap). It plays the part a NIC's DMA engine plays:
// delivering a frame copies its bytes into fresh NIC-owned PM buffers (the copy a NIC would
// make into host memory), and transmitting hands out zero-copy views of the chain and then
// drops the NIC's reference on each buffer (the completion).

import { OWNER_NIC, RING_HDR, RING_HEAD, RING_MASK, RING_TAIL, SF_MORE, SLOT_SIZE, BUF_SIZE } from "../abi.js";
import type { Pool } from "../pool.js";

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
  #u16: Uint16Array;
  #u32: Uint32Array;
  #chain: number[] = [];
  #one: Uint8Array[] = [new Uint8Array(0)];

  /** `rx` and `tx` are the memory offsets of the core's RX ring (we produce) and TX ring (we consume). */
  constructor(pool: Pool, rings: { rx: number; tx: number }) {
    this.pool = pool;
    this.rx = rings.rx;
    this.tx = rings.tx;
    const buf = pool.core.memory.buffer;
    this.#u8 = new Uint8Array(buf);
    this.#u16 = new Uint16Array(buf);
    this.#u32 = new Uint32Array(buf);
  }

  /** Free slots in the RX ring. */
  rxSpace(): number {
    const r = this.rx >>> 2;
    const u = this.#u32;
    return u[r + RING_MASK / 4]! + 1 - ((u[r + RING_TAIL / 4]! - u[r + RING_HEAD / 4]!) >>> 0);
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
    let at = e.bufAddress(bufs[0]!);
    let room = BUF_SIZE;
    for (const s of segs) {
      let from = 0;
      while (from < s.length) {
        if (room === 0) {
          at = e.bufAddress(bufs[++k]!);
          room = BUF_SIZE;
        }
        const n = Math.min(room, s.length - from);
        this.#u8.set(s.subarray(from, from + n), at);
        at += n;
        room -= n;
        from += n;
      }
    }
    const r = this.rx >>> 2;
    const mask = this.#u32[r + RING_MASK / 4]!;
    let tail = this.#u32[r + RING_TAIL / 4]!;
    for (let j = 0; j < nbuf; j++) {
      const slot = this.rx + RING_HDR + ((tail & mask) >>> 0) * SLOT_SIZE;
      const s32 = slot >>> 2;
      this.#u32[s32] = bufs[j]!;
      this.#u16[(slot + 4) >>> 1] = 0;
      this.#u16[(slot + 6) >>> 1] = j < nbuf - 1 ? BUF_SIZE : len - (nbuf - 1) * BUF_SIZE;
      this.#u32[s32 + 2] = 0;
      this.#u32[s32 + 3] = j < nbuf - 1 ? SF_MORE : 0;
      tail = (tail + 1) >>> 0;
    }
    this.#u32[r + RING_TAIL / 4] = tail; // publish the whole chain at once
    this.stats.rxFrames++;
    this.stats.rxBytes += len;
    return true;
  }

  /** deliver() of a frame that fits one buffer: no chain bookkeeping, no allocation. */
  #deliverOne(f: Uint8Array): boolean {
    const r = this.rx >>> 2;
    const u32 = this.#u32;
    const mask = u32[r + RING_MASK / 4]!;
    const tail = u32[r + RING_TAIL / 4]!;
    if ((tail - u32[r + RING_HEAD / 4]!) >>> 0 > mask) {
      this.stats.rxDropRingFull++;
      return false;
    }
    const e = this.pool.core.exports;
    const b = e.bufAlloc(OWNER_NIC);
    if (b < 0) {
      this.stats.rxDropNoBuffer++;
      return false;
    }
    this.#u8.set(f, e.bufAddress(b));
    const slot = this.rx + RING_HDR + ((tail & mask) >>> 0) * SLOT_SIZE;
    const s32 = slot >>> 2;
    u32[s32] = b;
    this.#u16[(slot + 4) >>> 1] = 0;
    this.#u16[(slot + 6) >>> 1] = f.length;
    u32[s32 + 2] = 0;
    u32[s32 + 3] = 0;
    u32[r + RING_TAIL / 4] = (tail + 1) >>> 0;
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
    const e = this.pool.core.exports;
    const r = this.tx >>> 2;
    const u32 = this.#u32;
    const mask = u32[r + RING_MASK / 4]!;
    let head = u32[r + RING_HEAD / 4]!;
    const tail = u32[r + RING_TAIL / 4]!;
    let frames = 0;
    while (head !== tail) {
      // find the end of the chain; an unfinished chain stays for the next drain
      let end = head;
      let complete = false;
      while (end !== tail) {
        const flags = u32[((this.tx + RING_HDR + ((end & mask) >>> 0) * SLOT_SIZE) >>> 2) + 3]!;
        end = (end + 1) >>> 0;
        if (!(flags & SF_MORE)) {
          complete = true;
          break;
        }
      }
      if (!complete) break;
      if (end === (head + 1) >>> 0) {
        // one slot: the common case (headers in the payload buffer's headroom)
        const slot = this.tx + RING_HDR + ((head & mask) >>> 0) * SLOT_SIZE;
        const buf = u32[slot >>> 2]!;
        const off = this.#u16[(slot + 4) >>> 1]!;
        const n = this.#u16[(slot + 6) >>> 1]!;
        if (e.nameCheck(buf, off, n) === 0) {
          if (n > 0) {
            const a = e.bufAddress(buf) + off;
            this.#one[0] = this.#u8.subarray(a, a + n);
            send(this.#one, n);
            frames++;
            this.stats.txFrames++;
            this.stats.txBytes += n;
          }
          e.bufUnref(buf);
        } else this.stats.txBadSlots++;
        head = end;
        u32[r + RING_HEAD / 4] = head;
        continue;
      }
      const segs: Uint8Array[] = [];
      const bufs: number[] = [];
      let len = 0;
      for (let p = head; p !== end; p = (p + 1) >>> 0) {
        const slot = this.tx + RING_HDR + ((p & mask) >>> 0) * SLOT_SIZE;
        const buf = u32[slot >>> 2]!;
        const off = this.#u16[(slot + 4) >>> 1]!;
        const n = this.#u16[(slot + 6) >>> 1]!;
        if (e.nameCheck(buf, off, n) !== 0) {
          this.stats.txBadSlots++;
          continue;
        }
        const a = e.bufAddress(buf) + off;
        segs.push(this.#u8.subarray(a, a + n));
        bufs.push(buf);
        len += n;
      }
      if (len > 0) {
        send(segs, len);
        frames++;
        this.stats.txFrames++;
        this.stats.txBytes += len;
      }
      for (const b of bufs) e.bufUnref(b);
      head = end;
      u32[r + RING_HEAD / 4] = head;
    }
    return frames;
  }
}

// Ring: the host's view of one single-producer/single-consumer ring in the core's memory
// (assembly/ring.ts, docs/core-abi.md): a 16-byte header {mask, head, tail, lane} and 2^k
// slots of 16 bytes {u32 buf, u16 off, u16 len, u32 conn, u32 flags}. `head` and `tail` run
// free (wrapping at 2^32); a position's slot is `pos & mask`. The producer writes slots at
// `tail` then publishes by storing `tail`; the consumer reads slots at `head` then stores `head`.
// APP-IN and APP-OUT also have an address lane (`lane`, the header's 4th word; 0 for RX/TX):
// 2^k rows of 16 bytes, row `pos & mask` holding the address (IPv6, or IPv4-mapped) of the
// slot at the same position.
//
// These are hot paths (per frame, per event): no allocation per call. A slot is addressed by
// the number `slot(pos)` returns (its index in the Uint32Array view) and read field by field;
// the views and the mask (fixed when the ring is created) are kept. The arena is sealed before
// any ring is read, so the memory never grows and the views never detach.

import * as abi from "./abi.js";

const HEAD = abi.RING_HEAD >>> 2;
const TAIL = abi.RING_TAIL >>> 2;
const BUF = abi.SLOT_BUF >>> 2;
const CONN = abi.SLOT_CONN >>> 2;
const FLAGS = abi.SLOT_FLAGS >>> 2;
const OFF = abi.SLOT_OFF >>> 1;
const LEN = abi.SLOT_LEN >>> 1;
const SLOT_WORDS = abi.SLOT_SIZE >>> 2;
const LANE = abi.RING_LANE >>> 2;

export class Ring {
  /** The ring's memory offset (what ringCreate/stackRing returned). */
  readonly at: number;
  /** Slots - 1. */
  readonly mask: number;
  /** Memory offset of the address lane (16 bytes per slot), or 0 when the ring has none. */
  readonly lane: number;
  readonly #u8: Uint8Array;
  readonly #u32: Uint32Array;
  readonly #u16: Uint16Array;
  /** Index of the header in the Uint32Array view. */
  readonly #h: number;
  /** Index of slot 0 in the Uint32Array view. */
  readonly #s0: number;

  constructor(memory: WebAssembly.Memory, at: number) {
    this.at = at;
    this.#u32 = new Uint32Array(memory.buffer);
    this.#u16 = new Uint16Array(memory.buffer);
    this.#u8 = new Uint8Array(memory.buffer);
    this.#h = at >>> 2;
    this.#s0 = (at + abi.RING_HDR) >>> 2;
    this.mask = this.#u32[this.#h + (abi.RING_MASK >>> 2)]!;
    this.lane = this.#u32[this.#h + LANE]!;
  }

  /** Slots in the ring. */
  get size(): number {
    return this.mask + 1;
  }
  get head(): number {
    return this.#u32[this.#h + HEAD]!;
  }
  set head(pos: number) {
    this.#u32[this.#h + HEAD] = pos;
  }
  get tail(): number {
    return this.#u32[this.#h + TAIL]!;
  }
  set tail(pos: number) {
    this.#u32[this.#h + TAIL] = pos;
  }
  /** Slots filled (tail - head). */
  count(): number {
    return (this.#u32[this.#h + TAIL]! - this.#u32[this.#h + HEAD]!) >>> 0;
  }
  /** Slots free. */
  space(): number {
    return this.mask + 1 - this.count();
  }

  /** The slot at free-running position `pos`, as the index the field accessors take. */
  slot(pos: number): number {
    return this.#s0 + (pos & this.mask) * SLOT_WORDS;
  }
  buf(s: number): number {
    return this.#u32[s + BUF]!;
  }
  off(s: number): number {
    return this.#u16[2 * s + OFF]!;
  }
  len(s: number): number {
    return this.#u16[2 * s + LEN]!;
  }
  conn(s: number): number {
    return this.#u32[s + CONN]!;
  }
  flags(s: number): number {
    return this.#u32[s + FLAGS]!;
  }
  /** Writes every field of slot `s` (a producer, before it publishes `tail`). */
  put(s: number, buf: number, off: number, len: number, conn: number, flags: number): void {
    const u32 = this.#u32;
    u32[s + BUF] = buf;
    this.#u16[2 * s + OFF] = off;
    this.#u16[2 * s + LEN] = len;
    u32[s + CONN] = conn;
    u32[s + FLAGS] = flags;
  }

  /** Writes a slot at `tail` and publishes it (a producer): false, nothing written, if the ring is full. */
  push(buf: number, off: number, len: number, conn: number, flags: number): boolean {
    if (this.count() > this.mask) return false; // full (or a head past tail: never write)
    const tail = this.tail;
    this.put(this.slot(tail), buf, off, len, conn, flags);
    this.tail = (tail + 1) >>> 0;
    return true;
  }

  /**
   * The position just past the frame whose first slot is at `pos` (its last slot is the first
   * without SF_MORE), or -1 while the frame is not complete (its producer has not published it
   * all).
   */
  chainEnd(pos: number): number {
    const tail = this.#u32[this.#h + TAIL]!;
    while (pos !== tail) {
      const more = this.#u32[this.slot(pos) + FLAGS]! & abi.SF_MORE;
      pos = (pos + 1) >>> 0;
      if (!more) return pos;
    }
    return -1;
  }

  /** Memory offset of the lane row of position `pos` (the ring must have a lane). */
  laneRow(pos: number): number {
    return this.lane + (pos & this.mask) * abi.LANE_ROW;
  }
  /** Copies src[at..at+16) into the lane row of position `pos` (a producer, before `tail`). */
  putAddr(pos: number, src: Uint8Array, at = 0): void {
    const r = this.laneRow(pos);
    const u8 = this.#u8;
    for (let i = 0; i < abi.LANE_ROW; i++) u8[r + i] = src[at + i]!;
  }
  /** Copies the lane row of position `pos` into out[at..at+16); returns `out`. */
  getAddr(pos: number, out: Uint8Array, at = 0): Uint8Array {
    const r = this.laneRow(pos);
    const u8 = this.#u8;
    for (let i = 0; i < abi.LANE_ROW; i++) out[at + i] = u8[r + i]!;
    return out;
  }
}

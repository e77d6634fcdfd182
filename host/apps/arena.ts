// A small-record arena for the apps: the bytes an app writes itself beside the payload it keeps
// by name (a kv record's trailer and short values, an httpd object's header) go into ranges
// of one shared PM buffer, filled front to back, so that a small write costs a few bytes of a
// buffer instead of a whole one. The log references each range it names; the arena holds one
// reference on the buffer it is filling and drops it when it moves on, so a buffer lives as
// long as a live record names any of its ranges.

import { BUF_SIZE } from "../abi.js";
import type { ObjectWriter } from "../object.js";
import type { BufferName, Pool } from "../pool.js";

export class MetaArena {
  readonly pool: Pool;
  #buf = -1;
  #at = 0;

  constructor(pool: Pool) {
    this.pool = pool;
  }

  /** The buffer being filled (the arena holds one reference on it), or -1. */
  get current(): number {
    return this.#buf;
  }

  /**
   * `n` bytes (1..2048) of the arena, 8-byte aligned, for the caller to fill before it names
   * them in a record (a fresh buffer when the current one is full: PoolExhaustedError if the
   * pool has none).
   */
  take(n: number): BufferName {
    if (!(n >= 1 && n <= BUF_SIZE)) throw new RangeError(`pmstack: an arena range is 1..${BUF_SIZE} bytes, got ${n}`);
    const pool = this.pool;
    if (this.#buf < 0 || this.#at + n > BUF_SIZE) {
      const fresh = pool.alloc(); // may throw PoolExhaustedError: the caller answers "full"
      if (this.#buf >= 0) pool.free(this.#buf); // records' references keep it while they need it
      this.#buf = fresh;
      this.#at = 0;
    }
    const at = this.#at;
    this.#at += (n + 7) & ~7;
    return { index: this.#buf, offset: at, length: n };
  }

  /**
   * Copies `bytes` into arena ranges of up to a buffer each and pushes them onto `w`, in order
   * (a value or body that came as bytes, not in PM buffers of its own; the writer takes its own
   * references).
   */
  pushCopy(w: ObjectWriter, bytes: Uint8Array): void {
    for (let at = 0; at < bytes.length; at += BUF_SIZE) {
      const n = Math.min(BUF_SIZE, bytes.length - at);
      const r = this.take(n);
      this.pool.viewName(r).set(bytes.subarray(at, at + n));
      w.push(r);
    }
  }

  /** Drops the arena's own reference (the server is closing). */
  close(): void {
    if (this.#buf >= 0 && !this.pool.closed) this.pool.free(this.#buf);
    this.#buf = -1;
  }
}

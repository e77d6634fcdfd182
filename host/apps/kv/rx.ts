// The bytes received on one of a node's own connections (the cluster bus's links, MIGRATE's
// connections to targets), copied out of the receive buffers until a whole message is there.

export class RxBytes {
  /** The bytes, valid in [0, length). */
  bytes = new Uint8Array(4096);
  length = 0;

  /** Appends `b`, growing the array as needed. */
  push(b: Uint8Array): void {
    if (this.length + b.length > this.bytes.length) {
      const bigger = new Uint8Array(Math.max(this.bytes.length * 2, this.length + b.length));
      bigger.set(this.bytes.subarray(0, this.length));
      this.bytes = bigger;
    }
    this.bytes.set(b, this.length);
    this.length += b.length;
  }

  /** Drops the first `n` bytes (the messages taken). */
  consume(n: number): void {
    if (n <= 0) return;
    this.bytes.copyWithin(0, n, this.length);
    this.length -= n;
  }
}

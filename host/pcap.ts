// PcapWriter: the classic libpcap file format (LINKTYPE_ETHERNET, microsecond timestamps),
// readable by tcpdump, tshark and Wireshark. Frames are buffered and written in large chunks.

import { closeSync, openSync, writeSync } from "node:fs";

const LINKTYPE_ETHERNET = 1;
const SNAPLEN = 262144;

export class PcapWriter {
  readonly path: string;
  frames = 0;
  #fd: number;
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  #used = 0;
  /** Wall-clock ms added to the stack's time (which may start at 0) to make timestamps. */
  readonly epochMs: number;

  constructor(path: string, opts: { epochMs?: number } = {}) {
    this.path = path;
    this.epochMs = opts.epochMs ?? 0;
    this.#fd = openSync(path, "w", 0o600); // owner-only: frames carry stored values
    const h = new DataView(new ArrayBuffer(24));
    h.setUint32(0, 0xa1b2c3d4, true);
    h.setUint16(4, 2, true);
    h.setUint16(6, 4, true);
    h.setUint32(16, SNAPLEN, true);
    h.setUint32(20, LINKTYPE_ETHERNET, true);
    writeSync(this.#fd, new Uint8Array(h.buffer));
  }

  /** Records one frame (or its segments) seen at `timeMs`. */
  write(frame: Uint8Array | readonly Uint8Array[], timeMs: number): void {
    if (this.#fd < 0) throw new Error(`pmstack: pcap ${this.path} is closed`);
    const segs = frame instanceof Uint8Array ? [frame] : frame;
    let len = 0;
    for (const s of segs) len += s.length;
    const cap = Math.min(len, SNAPLEN);
    if (this.#used + 16 + cap > this.#buf.length) this.flush();
    if (16 + cap > this.#buf.length) {
      this.#buf = new Uint8Array(16 + cap);
      this.#view = new DataView(this.#buf.buffer);
    }
    const t = this.epochMs + timeMs;
    const sec = Math.floor(t / 1000);
    const usec = Math.floor((t - sec * 1000) * 1000);
    const v = this.#view;
    v.setUint32(this.#used, sec, true);
    v.setUint32(this.#used + 4, usec, true);
    v.setUint32(this.#used + 8, cap, true);
    v.setUint32(this.#used + 12, len, true);
    let at = this.#used + 16;
    let left = cap;
    for (const s of segs) {
      const n = Math.min(s.length, left);
      this.#buf.set(s.subarray(0, n), at);
      at += n;
      left -= n;
      if (!left) break;
    }
    this.#used = at;
    this.frames++;
  }

  flush(): void {
    if (this.#used && this.#fd >= 0) writeSync(this.#fd, this.#buf, 0, this.#used);
    this.#used = 0;
  }

  close(): void {
    if (this.#fd < 0) return;
    this.flush();
    closeSync(this.#fd);
    this.#fd = -1;
  }
}

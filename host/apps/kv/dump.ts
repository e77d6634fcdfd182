// Redis's DUMP payload of a string value, so that DUMP, RESTORE and MIGRATE move values between
// pmstack and Redis nodes: the RDB encoding of the value (type 0, a string), the RDB version
// (2 bytes, little endian) and a CRC-64 (Jones, as Redis's crc64.c) of everything before it
// (8 bytes, little endian). RESTORE reads what Redis writes: plain, integer-encoded and
// LZF-compressed strings; DUMP writes the plain form, which every Redis reads.

/** The RDB version DUMP writes: Redis 7.0's (a Redis refuses payloads newer than its own). */
export const DUMP_RDB_VERSION = 10;
/** The newest RDB version RESTORE takes (Redis 7.4's is 12; a string is encoded the same way). */
export const RESTORE_MAX_RDB_VERSION = 12;

// CRC-64 Jones: the reflected polynomial 0xad93d23594c935a9, initial 0, no final xor.
const CRC64_TABLE = (() => {
  const poly = 0x95ac9329ac4bc9b5n; // 0xad93d23594c935a9 bit-reversed
  const t = new BigUint64Array(256);
  for (let i = 0n; i < 256n; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1n ? (c >> 1n) ^ poly : c >> 1n;
    t[Number(i)] = c;
  }
  return t;
})();
const CRC64_LO = Uint32Array.from(CRC64_TABLE, (x) => Number(x & 0xffffffffn));
const CRC64_HI = Uint32Array.from(CRC64_TABLE, (x) => Number(x >> 32n));

/** Redis's crc64(0, b): crc64("123456789") is 0xe9c6d914c4b8d9ca. */
export function crc64(b: Uint8Array, end = b.length): bigint {
  // two 32-bit halves: BigInt arithmetic per byte would be slow for large values
  let lo = 0;
  let hi = 0;
  const tl = CRC64_LO;
  const th = CRC64_HI;
  for (let i = 0; i < end; i++) {
    const x = (lo ^ b[i]!) & 0xff;
    lo = ((lo >>> 8) | (hi << 24)) ^ tl[x]!;
    hi = (hi >>> 8) ^ th[x]!;
  }
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

const RDB_TYPE_STRING = 0;

/** RDB's length encoding. */
function lenBytes(n: number): number[] {
  if (n < 64) return [n];
  if (n < 16384) return [0x40 | (n >> 8), n & 0xff];
  if (n <= 0xffffffff) return [0x80, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  const big = BigInt(n);
  const out = [0x81];
  for (let s = 56n; s >= 0n; s -= 8n) out.push(Number((big >> s) & 0xffn));
  return out;
}

/** The DUMP payload of a string value. */
export function encodeDump(value: Uint8Array): Uint8Array {
  const head = [RDB_TYPE_STRING, ...lenBytes(value.length)];
  const out = new Uint8Array(head.length + value.length + 10);
  out.set(head);
  out.set(value, head.length);
  let at = head.length + value.length;
  out[at++] = DUMP_RDB_VERSION & 0xff;
  out[at++] = DUMP_RDB_VERSION >> 8;
  const crc = crc64(out, at);
  new DataView(out.buffer, out.byteOffset + at, 8).setBigUint64(0, crc, true);
  return out;
}

/**
 * The value of a DUMP payload: its bytes, or "version" (a newer RDB version, or a checksum that
 * does not match: Redis's "DUMP payload version or checksum are wrong"), or "format" (not a
 * string, or damaged: Redis's "Bad data format").
 */
export function decodeDump(p: Uint8Array): Uint8Array | "version" | "format" {
  if (p.length < 10) return "version";
  const end = p.length - 10;
  const ver = p[end]! | (p[end + 1]! << 8);
  if (ver > RESTORE_MAX_RDB_VERSION) return "version";
  const crc = new DataView(p.buffer, p.byteOffset + end + 2, 8).getBigUint64(0, true);
  if (crc64(p, end + 2) !== crc) return "version";
  if (p[0] !== RDB_TYPE_STRING) return "format";
  const r = { at: 1 };
  const v = readString(p, r, end);
  if (v === null || r.at !== end) return "format";
  return v;
}

/** RDB's length or special encoding at r.at: [value, isEncoding], or null past `end`. */
function readLen(p: Uint8Array, r: { at: number }, end: number): [number, boolean] | null {
  if (r.at >= end) return null;
  const b = p[r.at++]!;
  const kind = b >> 6;
  if (kind === 0) return [b & 0x3f, false];
  if (kind === 1) {
    if (r.at >= end) return null;
    return [((b & 0x3f) << 8) | p[r.at++]!, false];
  }
  if (kind === 3) return [b & 0x3f, true];
  if (b === 0x80) {
    if (r.at + 4 > end) return null;
    const v = new DataView(p.buffer, p.byteOffset + r.at, 4).getUint32(0);
    r.at += 4;
    return [v, false];
  }
  if (b === 0x81) {
    if (r.at + 8 > end) return null;
    const v = new DataView(p.buffer, p.byteOffset + r.at, 8).getBigUint64(0);
    r.at += 8;
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? null : [Number(v), false];
  }
  return null;
}

function readString(p: Uint8Array, r: { at: number }, end: number): Uint8Array | null {
  const l = readLen(p, r, end);
  if (!l) return null;
  const [n, special] = l;
  if (!special) {
    if (r.at + n > end) return null;
    const v = p.slice(r.at, r.at + n);
    r.at += n;
    return v;
  }
  const dv = new DataView(p.buffer, p.byteOffset);
  if (n === 0 || n === 1 || n === 2) {
    // an integer, little endian, of 1, 2 or 4 bytes: the string is its decimal form
    const w = 1 << n;
    if (r.at + w > end) return null;
    const v = n === 0 ? dv.getInt8(r.at) : n === 1 ? dv.getInt16(r.at, true) : dv.getInt32(r.at, true);
    r.at += w;
    return new TextEncoder().encode(String(v));
  }
  if (n === 3) {
    const cl = readLen(p, r, end);
    const ul = cl && readLen(p, r, end);
    if (!cl || !ul || cl[1] || ul[1] || r.at + cl[0] > end) return null;
    const out = lzfDecompress(p.subarray(r.at, r.at + cl[0]), ul[0]);
    r.at += cl[0];
    return out;
  }
  return null;
}

/** LZF decompression (liblzf's lzf_decompress, which Redis uses); null if the input is damaged. */
export function lzfDecompress(src: Uint8Array, outLen: number): Uint8Array | null {
  const out = new Uint8Array(outLen);
  let ip = 0;
  let op = 0;
  while (ip < src.length) {
    const ctrl = src[ip++]!;
    if (ctrl < 32) {
      const n = ctrl + 1;
      if (op + n > outLen || ip + n > src.length) return null;
      out.set(src.subarray(ip, ip + n), op);
      ip += n;
      op += n;
    } else {
      let len = ctrl >> 5;
      let ref = op - ((ctrl & 0x1f) << 8) - 1;
      if (len === 7) {
        if (ip >= src.length) return null;
        len += src[ip++]!;
      }
      if (ip >= src.length) return null;
      ref -= src[ip++]!;
      len += 2;
      if (op + len > outLen || ref < 0) return null;
      for (let k = 0; k < len; k++) out[op++] = out[ref++]!;
    }
  }
  return op === outLen ? out : null;
}

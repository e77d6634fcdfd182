// Reads a pool file's log from the outside (docs/api/log.md, "On-PM format"), for tests that
// damage it on purpose: header, tail slots, and the chain of records from head to tail.
import { readFileSync } from "node:fs";

const TABLE = Array.from({ length: 256 }, (_, i) => {
  let c = i;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  return c >>> 0;
});

/** CRC-32C of bytes, continuing `crc`. */
export function crc32c(bytes, crc = 0) {
  let c = ~crc >>> 0;
  for (const b of bytes) c = TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

const META = 4096; // file offset of the metadata region

/** Parses the log of the pool file at `path`. Offsets returned are file offsets. */
export function readLog(path) {
  const f = readFileSync(path);
  const dv = new DataView(f.buffer, f.byteOffset, f.byteLength);
  const u32 = (o) => dv.getUint32(o, true);
  const u64 = (o) => Number(dv.getBigUint64(o, true));
  const logOff = META + u32(META + 20);
  const cap = u32(META + 24);
  const slot = (o) => ({
    at: o,
    gen: u64(o),
    head: u64(o + 8),
    tail: u64(o + 16),
    nextSeq: u64(o + 24),
    valid: u32(o + 32) === crc32c(f.subarray(o, o + 32)),
  });
  const slots = [slot(META + 64), slot(META + 128)];
  const cur = slots.filter((s) => s.valid).sort((a, b) => b.gen - a.gen)[0];
  const records = [];
  if (cur)
    for (let p = cur.head; p < cur.tail;) {
      const off = p % cap;
      if (cap - off < 32) {
        p += cap - off;
        continue;
      }
      const at = logOff + off;
      const len = u32(at);
      records.push({
        at,
        pos: p,
        len,
        seq: u64(at + 16),
        type: f[at + 24],
        keyLen: dv.getUint16(at + 26, true),
        nNames: dv.getUint16(at + 28, true),
      });
      if (len < 32) break;
      p += len;
    }
  return { file: f, logOff, cap, slots, cur, records };
}

/** Recomputes the CRC of the record at file offset `at` in `bytes` (after a forged edit). */
export function resealRecord(bytes, at) {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = dv.getUint32(at, true);
  const c = crc32c(bytes.subarray(at + 8, at + len), crc32c(bytes.subarray(at, at + 4)));
  dv.setUint32(at + 4, c, true);
}

// The PM pool file format (docs/pm-format.md). Little-endian throughout.
//
//   [0, 4096)                 superblock: a 128-byte header (below), the rest zero
//   [4096, 4096 + metaBytes)  metadata region, reserved for logs and indexes
//   [bufOffset, fileSize)     buffer region: bufferCount buffers of 2048 bytes
//
// Header fields (offset: type name):
//   0: u8[8] magic "PMSTACK\0"     8: u32 version (1)        12: u32 headerBytes (128)
//  16: u8[16] uuid                 32: u32 bufferSize (2048) 36: u32 bufferCount
//  40: u64 metaOffset (4096)       48: u64 metaBytes         56: u64 bufOffset
//  64: u64 fileSize                72: u64 createdMs         80: u32 flags (bit 0: FLAG_JOURNAL)
//  84..123: reserved, zero        124: u32 CRC-32C of bytes [0, 124)

import { BUF_SIZE, MAX_PAGES, WASM_PAGE } from "./abi.js";
import { crc32c } from "./crc32c.js";
import { PoolFileError } from "./errors.js";

export const MAGIC = "PMSTACK\0";
export const VERSION = 1;
export const HEADER_BYTES = 128;
export const SUPERBLOCK_BYTES = 4096;
export const META_OFFSET = 4096;
/** The buffer region starts on a Wasm page boundary of the file (and so of the mapping). */
export const BUF_ALIGN = WASM_PAGE;
/** The whole file must fit in one 32-bit Wasm memory beside the core's own state. */
export const MAX_FILE_BYTES = (MAX_PAGES - 256) * WASM_PAGE;
/**
 * The most buffers one pool can have: one 32-bit Wasm memory (4 GiB) holds the file (2 KiB of
 * buffer and 64 bytes of metadata region per buffer) and the core's state beside it (about 28
 * bytes per buffer: owner and count, free stack, the log's flush table and deferred frees; and
 * some 64 MiB of fixed tables). About 3.75 GiB of buffers; larger stores run several pools.
 */
export const MAX_POOL_BUFFERS = 1_966_080;
/**
 * Superblock flag: the pool has been written through its journal, `<path>.journal`, which may
 * hold acknowledged writes the file lacks until they are replayed (docs/persistence.md).
 */
export const FLAG_JOURNAL = 1;
/** The journal of the pool at `path` lives at `path + JOURNAL_SUFFIX`. */
export const JOURNAL_SUFFIX = ".journal";

export interface Superblock {
  version: number;
  uuid: string;
  bufferSize: number;
  bufferCount: number;
  metaOffset: number;
  metaBytes: number;
  bufOffset: number;
  fileSize: number;
  createdMs: number;
  flags: number;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Default metadata region: 1 MiB plus 64 bytes per buffer, in whole Wasm pages. */
export function defaultMetaBytes(bufferCount: number): number {
  return alignUp(1 << 20, WASM_PAGE) + alignUp(bufferCount * 64, WASM_PAGE);
}

/** Default journal ring: an eighth of the pool, at least 16 MiB and at most 256 MiB, in whole MiB. */
export function defaultJournalBytes(fileSize: number): number {
  const MiB = 1 << 20;
  return alignUp(Math.min(Math.max(fileSize / 8, 16 * MiB), 256 * MiB), MiB);
}

/**
 * The superblock of `sb` grown to `bufferCount` buffers: the same uuid, metadata region and
 * buffer offset (every buffer keeps its name), a longer file. Throws RangeError past the limit.
 */
export function grown(sb: Superblock, bufferCount: number): Superblock {
  if (!Number.isInteger(bufferCount) || bufferCount < sb.bufferCount)
    throw new RangeError(`pmstack: a pool grows only: ${bufferCount} < ${sb.bufferCount} buffers`);
  if (bufferCount > MAX_POOL_BUFFERS)
    throw new RangeError(
      `pmstack: a pool of ${bufferCount} buffers is more than one 32-bit Wasm memory holds beside the core ` +
        `(at most ${MAX_POOL_BUFFERS} buffers, ${((MAX_POOL_BUFFERS * BUF_SIZE) / 2 ** 30).toFixed(2)} GiB)`,
    );
  return { ...sb, bufferCount, fileSize: alignUp(sb.bufOffset + bufferCount * BUF_SIZE, 4096) };
}

/** Lays out a new pool of `bufferCount` buffers. Throws RangeError for impossible sizes. */
export function layout(bufferCount: number, metaBytes = defaultMetaBytes(bufferCount)): Superblock {
  if (!Number.isInteger(bufferCount) || bufferCount < 1)
    throw new RangeError(`pmstack: buffer count must be a positive integer, got ${bufferCount}`);
  if (!Number.isInteger(metaBytes) || metaBytes < 0 || metaBytes % 4096 !== 0)
    throw new RangeError(`pmstack: metadata size must be a multiple of 4096, got ${metaBytes}`);
  const bufOffset = alignUp(META_OFFSET + metaBytes, BUF_ALIGN);
  const fileSize = bufOffset + bufferCount * BUF_SIZE;
  if (fileSize > MAX_FILE_BYTES || bufferCount > MAX_POOL_BUFFERS)
    throw new RangeError(
      `pmstack: a pool of ${bufferCount} buffers (${fileSize} bytes) is more than one 32-bit Wasm memory holds ` +
        `beside the core (at most ${MAX_POOL_BUFFERS} buffers, ${((MAX_POOL_BUFFERS * BUF_SIZE) / 2 ** 30).toFixed(2)} GiB)`,
    );
  return {
    version: VERSION,
    uuid: randomUuid(),
    bufferSize: BUF_SIZE,
    bufferCount,
    metaOffset: META_OFFSET,
    metaBytes,
    bufOffset,
    fileSize: alignUp(fileSize, 4096),
    createdMs: Date.now(),
    flags: 0,
  };
}

function randomUuid(): string {
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  return formatUuid(b);
}

/** Encodes the 128-byte header, checksum included. */
export function encode(sb: Superblock): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  const v = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) out[i] = MAGIC.charCodeAt(i);
  v.setUint32(8, sb.version, true);
  v.setUint32(12, HEADER_BYTES, true);
  out.set(uuidBytes(sb.uuid), 16);
  v.setUint32(32, sb.bufferSize, true);
  v.setUint32(36, sb.bufferCount, true);
  v.setBigUint64(40, BigInt(sb.metaOffset), true);
  v.setBigUint64(48, BigInt(sb.metaBytes), true);
  v.setBigUint64(56, BigInt(sb.bufOffset), true);
  v.setBigUint64(64, BigInt(sb.fileSize), true);
  v.setBigUint64(72, BigInt(sb.createdMs), true);
  v.setUint32(80, sb.flags, true);
  v.setUint32(124, crc32c(out.subarray(0, 124)), true);
  return out;
}

/**
 * Decodes and validates a header read from `path`, whose actual size is `actualSize`.
 * Throws PoolFileError naming the file and the problem.
 */
export function decode(path: string, header: Uint8Array, actualSize: number, allowLonger = false): Superblock {
  const bad = (code: string, problem: string): never => {
    throw new PoolFileError(code, path, problem);
  };
  if (actualSize < SUPERBLOCK_BYTES || header.length < HEADER_BYTES)
    bad("ETOOSMALL", `file is ${actualSize} bytes, too small to hold a pmstack superblock (${SUPERBLOCK_BYTES})`);
  for (let i = 0; i < 8; i++)
    if (header[i] !== MAGIC.charCodeAt(i)) bad("EBADMAGIC", "not a pmstack pool file (wrong magic number)");
  const v = new DataView(header.buffer, header.byteOffset, HEADER_BYTES);
  const version = v.getUint32(8, true);
  if (version !== VERSION)
    bad("EBADVERSION", `pool format version ${version} is not supported (this pmstack reads version ${VERSION})`);
  const stored = v.getUint32(124, true);
  const computed = crc32c(header.subarray(0, 124));
  if (stored !== computed)
    bad(
      "EBADCHECKSUM",
      `superblock checksum mismatch (stored ${hex32(stored)}, computed ${hex32(computed)}): the header is damaged`,
    );
  if (v.getUint32(12, true) !== HEADER_BYTES)
    bad("EBADLAYOUT", `header size ${v.getUint32(12, true)} is not ${HEADER_BYTES}`);
  const u64 = (o: number) => {
    const x = v.getBigUint64(o, true);
    return x > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(x);
  };
  const sb: Superblock = {
    version,
    uuid: formatUuid(header.subarray(16, 32)),
    bufferSize: v.getUint32(32, true),
    bufferCount: v.getUint32(36, true),
    metaOffset: u64(40),
    metaBytes: u64(48),
    bufOffset: u64(56),
    fileSize: u64(64),
    createdMs: u64(72),
    flags: v.getUint32(80, true),
  };
  if (sb.bufferSize !== BUF_SIZE) bad("EBADLAYOUT", `buffer size ${sb.bufferSize} is not ${BUF_SIZE}`);
  if (sb.bufferCount < 1) bad("EBADLAYOUT", "buffer count is zero");
  if (sb.metaOffset !== META_OFFSET) bad("EBADLAYOUT", `metadata offset ${sb.metaOffset} is not ${META_OFFSET}`);
  if (sb.bufOffset % BUF_ALIGN !== 0 || sb.bufOffset < sb.metaOffset + sb.metaBytes)
    bad("EBADLAYOUT", `buffer region offset ${sb.bufOffset} overlaps the metadata region or is misaligned`);
  const need = sb.bufOffset + sb.bufferCount * BUF_SIZE;
  if (sb.fileSize < need || sb.fileSize % 4096 !== 0)
    bad(
      "EBADLAYOUT",
      `recorded file size ${sb.fileSize} cannot hold ${sb.bufferCount} buffers at offset ${sb.bufOffset}`,
    );
  if (sb.fileSize > MAX_FILE_BYTES)
    bad("ETOOLARGE", `recorded file size ${sb.fileSize} exceeds what one Wasm memory can map (${MAX_FILE_BYTES})`);
  if (actualSize < sb.fileSize)
    bad("ETOOSMALL", `file is ${actualSize} bytes but its superblock says ${sb.fileSize}: it was truncated`);
  if (actualSize > sb.fileSize && !allowLonger)
    bad(
      "ETOOLARGE",
      `file is ${actualSize} bytes but its superblock says ${sb.fileSize}: it was extended or is not this pool`,
    );
  return sb;
}

/** The 16 bytes of a uuid written as text (the superblock's form; the journal's header holds them too). */
export function uuidBytes(uuid: string): Uint8Array {
  const hex = uuid.replace(/-/g, "");
  return Uint8Array.from({ length: 16 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
}

function hex32(x: number): string {
  return "0x" + x.toString(16).padStart(8, "0");
}

function formatUuid(b: Uint8Array): string {
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

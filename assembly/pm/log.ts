// The write-ahead log and its index, in the pool's metadata region (docs/api/log.md has the
// format and the crash-consistency argument; this is the mechanism).
//
// Metadata region (offsets from its start; all little-endian):
//   [0, 64)        header: u32 magic "PLOG", u32 version, u32 headerBytes (4096), u32 indexOff,
//                  u32 indexSlots, u32 logOff, u32 logBytes, u32 metaBytes, zeros, u32 crc @60
//   [64, 128)      tail slot A   } u64 gen, u64 head, u64 tail, u64 nextSeq, u32 crc of [0, 32)
//   [128, 192)     tail slot B   } the valid slot with the larger gen is the log's state
//   [4096, ...)    index: indexSlots u64 entries (hash << 32 | record offset + 1), a cache that
//                  is never persisted: it is rebuilt from the log at every open
//   [logOff, +logBytes)  the circular log; positions are logical (u64, never wrap), the
//                  physical offset is pos % logBytes
//
// Record (8-byte aligned, never straddles the physical end):
//   0 u32 len (total bytes, multiple of 8)   4 u32 crc: CRC-32C of bytes [0,4) then [8,len)
//   8 u64 pos (its own logical position)    16 u64 seq
//  24 u8 type (1 put, 2 delete, 3 pad)      25 u8 0   26 u16 keyLen   28 u16 nNames
//  30 u16 tag (the app's; the log never reads it)
//  32 u64 names[nNames], then the key bytes, zero padding. The names are the object's items
// in order: data ranges (index << 32 | off << 16 | len) and sealed extent nodes (index << 32 |
// (0x8000 | height) << 16: extent.ts), whose leaves are more data ranges. Version 1 logs are
// version 2 logs whose records hold data ranges only and tag 0: they are read as they are and
// the header is rewritten as version 2 at the first open.
// If fewer than 32 bytes are left before the physical end the writer skips them; otherwise a
// pad record fills them.
//
// Group commit, pipelined: appends go into the open group; logSeal() closes it (its records'
// range and the next tail slot join the payload ranges in the flush table, flush.ts) and the
// host makes the table durable, at once (PM: cache-line flushes or msync, in two ordered
// steps) or later (a journal entry written by another thread); several sealed groups may be
// in flight, durable in seal order, and logDurable(k) applies their effects once the host
// says so. The core never flushes and never waits.

import { arenaAlloc } from "../arena";
import { BUF_SIZE, E_ARG, E_REFMAX, ITEM_NODE, NODE_MAX_HEIGHT, OWNER_KEPT, REF_MAX } from "../layout";
import { bufAddr, bufOwner, bufRef, bufRefCount, bufSetOwner, bufUnref, poolCount, poolFreeCount } from "../pool";
import { crc32c, crc32cUpdate } from "./crc32c";
import { itemCheck, itemHeight, treeCheck, treeClaim } from "./extent";
import { flushAdd, flushCount, flushHanded, flushReserve, flushReset, flushRoom, flushTable } from "./flush";

// Error codes (host/log.ts mirrors them).
export const E_LOG_FULL: i32 = -40; // no room for the record even after compaction
export const E_LOG_KEY: i32 = -41; // key length 0 or > LOG_MAX_KEY
export const E_LOG_NAMES: i32 = -42; // more than LOG_MAX_NAMES names
export const E_LOG_GROUP: i32 = -43; // the pending group is at its size limit: commit first
export const E_LOG_INDEX_FULL: i32 = -44; // too many live keys for the index
export const E_LOG_NOTFOUND: i32 = -45; // no such key
export const E_LOG_BAD: i32 = -46; // the metadata region is not a valid log (damaged or foreign)
export const E_LOG_BUSY: i32 = -47; // not allowed now (pending group, pool already in use...)
export const E_LOG_NOLOG: i32 = -48; // logReserve/logAttach were not called
export const E_LOG_SMALL: i32 = -49; // metadata region too small for a log

export const LOG_MAX_KEY: u32 = 1024;
export const LOG_MAX_NAMES: u32 = 64;
/** At least this many payload ranges per group and deferred frees in flight (more in big pools). */
export const LOG_GROUP_MIN: u32 = 8192;
/** Sealed groups that may be in flight (made durable by the host) at once. */
export const LOG_SEALED_MAX: u32 = 256;

const MAGIC: u32 = 0x474f4c50; // "PLOG"
const VERSION: u32 = 2;
const HEADER_BYTES: u32 = 4096;
const SLOT_A: usize = 64;
const SLOT_B: usize = 128;
const SLOT_BYTES: u32 = 64;
const HDR: u32 = 32;
const MAX_REC: u32 = HDR + LOG_MAX_NAMES * 8 + LOG_MAX_KEY;
/**
 * Space a delete leaves free, so that compaction can always relocate a record (and a pad);
 * puts leave 8 KiB more, so that a log full of live records still takes deletes.
 */
const RESERVE_DEL: u64 = <u64>(2 * MAX_REC);
const RESERVE: u64 = RESERVE_DEL + 8192;
const MIN_LOG: u32 = 16384;

const T_PUT: u32 = 1;
const T_DEL: u32 = 2;
const T_PAD: u32 = 3;

// arena state
let deferred: usize = 0; // ring of u32 buffer indices to unref once their group is durable
let defCap: u32 = 0;
let groups: usize = 0; // ring of sealed groups in flight: GROUP_BYTES each
let keyBuf: usize = 0; // staging: the key of the next call
let namesBuf: usize = 0; // staging: u64 names of the next append
const GROUP_BYTES: usize = 32; // u64 head, u64 tail, u32 deferEnd, u32 0, u64 sealSeq

// attached log
let meta: usize = 0;
let metaBytes: u32 = 0;
let idx: usize = 0;
let slots: u32 = 0; // the index region's capacity
let act: u32 = 0; // slots in use: [0, act) is the table, [act, slots) is zero
let mask: u32 = 0; // act - 1
let maxKeys: u32 = 0;
let logBase: usize = 0;
let cap: u32 = 0;
let recovered = false;

let upgrade = false; // a version 1 header: rewritten as version 2 by logRecover
let gen: u64 = 0;
let dHead: u64 = 0; // durable head/tail (what the last durable tail slot says)
let dTail: u64 = 0;
let sHead: u64 = 0; // at the last seal (what the newest sealed group's slot says)
let sTail: u64 = 0;
let pHead: u64 = 0; // pending (after the open group)
let pTail: u64 = 0;
let nextSeq: u64 = 1;
let lastSeq: u64 = 0;

// deferred ring: [defHead, defTail) in flight or open; entries before defSealed belong to
// sealed groups (each group records where its part ends), the rest to the open group
let defHead: u32 = 0;
let defTail: u32 = 0;
let defSealed: u32 = 0;
let gHead: u32 = 0; // sealed groups ring [gHead, gTail)
let gTail: u32 = 0;
let sealSeq: u64 = 0; // groups sealed so far (the number of the newest)
let durableSeal: u64 = 0; // groups made durable so far
let lastPayload: u32 = 0; // the last seal: payload pairs, and the slot gen it wrote (0: none)
let lastGen: u64 = 0;
let pendingRecs: u32 = 0;
let liveKeys: u32 = 0;
let liveBytes: u64 = 0;

// recovery report
let scanned: u32 = 0;
let discarded: u64 = 0;
let stopReason: u32 = 0;
let claimed: u32 = 0;
let damagedKeys: u32 = 0;
let iterPos: u64 = 0;

@inline function align8(n: u32): u32 {
  return (n + 7) & ~7;
}
@inline function phys(p: u64): u32 {
  return <u32>(p % <u64>cap);
}
@inline function rec(off: u32): usize {
  return logBase + <usize>off;
}
@inline function defAt(k: u32): usize {
  return deferred + (<usize>(k % defCap) << 2);
}
@inline function groupAt(k: u32): usize {
  return groups + <usize>(k % LOG_SEALED_MAX) * GROUP_BYTES;
}

/**
 * Reserves the log's working memory in the arena: the flush table and the deferred frees,
 * each with room for the pool's buffer count (at least LOG_GROUP_MIN), so that one group can
 * name every buffer of the pool. Call once at set-up (Pool's configure hook), after the pool's
 * own reservation.
 */
export function logReserve(): i32 {
  if (deferred != 0) return 0;
  const size = max<u32>(LOG_GROUP_MIN, poolCount() + 4096);
  const f = flushReserve(size);
  if (f < 0) return f;
  const d = arenaAlloc(<usize>size << 2, 64);
  if (d < 0) return <i32>d;
  const g = arenaAlloc(<usize>LOG_SEALED_MAX * GROUP_BYTES, 64);
  if (g < 0) return <i32>g;
  const k = arenaAlloc(<usize>LOG_MAX_KEY, 64);
  if (k < 0) return <i32>k;
  const n = arenaAlloc(<usize>LOG_MAX_NAMES << 3, 64);
  if (n < 0) return <i32>n;
  deferred = <usize>d;
  defCap = size;
  groups = <usize>g;
  keyBuf = <usize>k;
  namesBuf = <usize>n;
  return 0;
}

function recCrc(at: usize, len: u32): u32 {
  return crc32cUpdate(crc32c(at, 4), at + 8, <usize>(len - 8));
}

/** Geometry for a region of `bytes`: index = largest power of two of u64 slots in a quarter. */
function geometry(bytes: u32): bool {
  if (bytes < HEADER_BYTES + 512 + MIN_LOG) return false;
  let s: u32 = 64;
  while ((<u64>s << 4) * 4 <= <u64>bytes) s <<= 1; // s*2 entries of 8 B still fit in bytes/4
  const logOff = (HEADER_BYTES + (s << 3) + 4095) & ~4095;
  if (logOff + MIN_LOG > bytes) return false;
  slots = s;
  act = s;
  mask = s - 1;
  maxKeys = s - (s >>> 2);
  cap = min<u32>((bytes - logOff) & ~63, 1 << 30); // offsets stay positive i32
  idx = meta + HEADER_BYTES;
  logBase = meta + logOff;
  return true;
}

function slotValid(at: usize): bool {
  if (load<u32>(at + 32) != crc32c(at, 32)) return false;
  const g = load<u64>(at);
  const h = load<u64>(at + 8);
  const t = load<u64>(at + 16);
  const s = load<u64>(at + 24);
  return g != 0 && h <= t && t - h <= <u64>cap && (h & 7) == 0 && (t & 7) == 0 && s != 0;
}

function writeSlot(at: usize, g: u64, h: u64, t: u64, s: u64): void {
  memory.fill(at, 0, SLOT_BYTES);
  store<u64>(at, g);
  store<u64>(at + 8, h);
  store<u64>(at + 16, t);
  store<u64>(at + 24, s);
  store<u32>(at + 32, crc32c(at, 32));
}

function allZero(at: usize, n: u32): bool {
  for (let i: u32 = 0; i < n; i += 8) if (load<u64>(at + i) != 0) return false;
  return true;
}

/**
 * Attaches the log to the metadata region at memory offset `at` (`bytes` long). Returns 1 if
 * the region is fresh (all zero header: call logFormat(0) and logFormat(1), persisting the
 * table after each), 0 if it holds a log (call logRecover next), or an error.
 */
export function logAttach(at: usize, bytes: u32): i32 {
  if (deferred == 0) return E_LOG_NOLOG;
  if (meta != 0) return E_LOG_BUSY;
  if ((at & 63) != 0) return E_ARG;
  meta = at;
  metaBytes = bytes;
  if (!geometry(bytes)) {
    meta = 0;
    return E_LOG_SMALL;
  }
  if (allZero(meta, 64)) {
    // Fresh, or a format interrupted before its header was persisted (then the slots say the
    // log is empty). A valid slot with records means the header was damaged: refuse.
    if ((slotValid(meta + SLOT_A) && load<u64>(meta + SLOT_A + 16) != 0) ||
        (slotValid(meta + SLOT_B) && load<u64>(meta + SLOT_B + 16) != 0)) {
      meta = 0;
      return E_LOG_BAD;
    }
    return 1;
  }
  const v = load<u32>(meta + 4);
  if (
    load<u32>(meta) != MAGIC ||
    (v != 1 && v != VERSION) ||
    load<u32>(meta + 60) != crc32c(meta, 60) ||
    load<u32>(meta + 8) != HEADER_BYTES ||
    load<u32>(meta + 12) != HEADER_BYTES ||
    load<u32>(meta + 16) != slots ||
    <usize>load<u32>(meta + 20) != logBase - meta ||
    load<u32>(meta + 24) != cap ||
    load<u32>(meta + 28) != bytes
  ) {
    meta = 0;
    return E_LOG_BAD;
  }
  upgrade = v == 1;
  return 0;
}

function writeHeader(): void {
  memory.fill(meta, 0, 64);
  store<u32>(meta, MAGIC);
  store<u32>(meta + 4, VERSION);
  store<u32>(meta + 8, HEADER_BYTES);
  store<u32>(meta + 12, HEADER_BYTES);
  store<u32>(meta + 16, slots);
  store<u32>(meta + 20, <u32>(logBase - meta));
  store<u32>(meta + 24, cap);
  store<u32>(meta + 28, metaBytes);
  store<u32>(meta + 60, crc32c(meta, 60));
}

/**
 * Formats a fresh region in two persisted steps: 0 writes the tail slots, 1 the header. Each
 * leaves one pair in the flush table (persist it before the next step).
 */
export function logFormat(step: u32): i32 {
  if (meta == 0 || recovered) return E_LOG_BUSY;
  flushReset();
  if (step == 0) {
    writeSlot(meta + SLOT_A, 1, 0, 0, 1);
    memory.fill(meta + SLOT_B, 0, SLOT_BYTES);
    flushAdd(meta + SLOT_A, 2 * SLOT_BYTES);
  } else {
    writeHeader();
    flushAdd(meta, 64);
  }
  flushHanded();
  return 1;
}

// ---------- index: open addressing, linear probing, backward-shift deletion ----------
//
// The table uses the first `act` slots of the region (a power of two), at most half full, so
// that a store of few keys probes a table that stays in the cache (10,000 keys: 256 KiB, where
// the whole region of a 32 MiB log area is 8 MiB of scattered misses). It doubles as keys
// come, up to the region's `slots` (then up to 3/4 full, LOG's capacity). A doubling below
// the region's half reinserts the entries from a packed copy at the region's end; the last
// one rebuilds the table from the log (the records from head to tail, replayed as recovery
// does): the region has no spare room then, and it happens once per open, at slots/4 keys.

/** The smallest table used (slots), unless the region is smaller. */
const INDEX_MIN: u32 = 1024;

function keyEq(off: u32, key: usize, keyLen: u32): bool {
  const r = rec(off);
  if (<u32>load<u16>(r + 26) != keyLen) return false;
  const k = r + HDR + (<usize>load<u16>(r + 28) << 3);
  return memory.compare(k, key, keyLen) == 0;
}

/** The slot holding `key`, or the empty slot where it would go. */
function probe(h: u32, key: usize, keyLen: u32): u32 {
  let s = h & mask;
  // Terminates: the index is never more than 3/4 full.
  while (true) {
    const e = load<u64>(idx + (<usize>s << 3));
    if (e == 0) break;
    if (<u32>(e >>> 32) == h && keyEq(<u32>e - 1, key, keyLen)) break;
    s = (s + 1) & mask;
  }
  return s;
}

@inline function entryAt(s: u32): u64 {
  return load<u64>(idx + (<usize>s << 3));
}
@inline function setEntry(s: u32, h: u32, off: u32): void {
  store<u64>(idx + (<usize>s << 3), (<u64>h << 32) | <u64>(off + 1));
}

function unlink(s: u32): void {
  let i = s;
  let j = s;
  while (true) {
    j = (j + 1) & mask;
    const e = entryAt(j);
    if (e == 0) break;
    const k = <u32>(e >>> 32) & mask;
    const stays = i <= j ? i < k && k <= j : i < k || k <= j;
    if (stays) continue;
    store<u64>(idx + (<usize>i << 3), e);
    i = j;
  }
  store<u64>(idx + (<usize>i << 3), 0);
}

/**
 * Resizes the table to `n` slots (a power of two, at least liveKeys * 2, and n + liveKeys at
 * most the region's slots): the entries are packed at the front, moved to the region's end,
 * and reinserted by hash (keys are distinct: no comparisons).
 */
function rehash(n: u32): void {
  let k: u32 = 0;
  for (let s: u32 = 0; s < act; s++) {
    const e = entryAt(s);
    if (e == 0) continue;
    store<u64>(idx + (<usize>k << 3), e);
    k++;
  }
  const tmp = idx + (<usize>(slots - k) << 3);
  memory.copy(tmp, idx, <usize>k << 3);
  memory.fill(idx, 0, <usize>(slots - k) << 3);
  act = n;
  mask = n - 1;
  for (let j: u32 = 0; j < k; j++) {
    const e = load<u64>(tmp + (<usize>j << 3));
    let s = <u32>(e >>> 32) & mask;
    while (entryAt(s) != 0) s = (s + 1) & mask;
    store<u64>(idx + (<usize>s << 3), e);
  }
  memory.fill(tmp, 0, <usize>k << 3);
}

/** The table over the whole region, rebuilt from the records between head and tail. */
function reindexAll(): void {
  memory.fill(idx, 0, <usize>act << 3);
  act = slots;
  mask = slots - 1;
  liveKeys = 0;
  let p = pHead;
  while (p < pTail) {
    const off = phys(p);
    const rem = cap - off;
    if (rem < HDR) {
      p += <u64>rem;
      continue;
    }
    const r = rec(off);
    const len = load<u32>(r);
    if (len < HDR || len > rem) break; // never, in a log this core wrote or verified: no endless walk
    p += <u64>len;
    const type = <u32>load<u8>(r + 24);
    if (type == T_PAD) continue;
    const keyLen = <u32>load<u16>(r + 26);
    const key = r + HDR + (<usize>load<u16>(r + 28) << 3);
    const h = keyHash(key, keyLen);
    const s = probe(h, key, keyLen);
    const e = entryAt(s);
    if (type == T_PUT) {
      setEntry(s, h, off);
      if (e == 0) liveKeys++;
    } else if (e != 0) {
      unlink(s);
      liveKeys--;
    }
  }
}

/** Room for one more key at the table's load limit: doubles it when it would pass half full. */
function indexRoom(): void {
  if (act >= slots || (liveKeys + 1) << 1 <= act) return;
  if (act << 2 <= slots) rehash(act << 1);
  else reindexAll();
}

/** After recovery (built over the whole region): the smallest table that is at most 1/4 full. */
function indexFit(): void {
  let n = min<u32>(INDEX_MIN, slots);
  while (n < slots && liveKeys << 2 > n) n <<= 1;
  if (n << 1 <= slots) rehash(n);
}

function keyHash(key: usize, keyLen: u32): u32 {
  return crc32c(key, keyLen);
}

// ---------- appending ----------

/**
 * Reserves `len` bytes at the pending tail (with a pad record before it if it would straddle
 * the physical end), keeping `reserve` bytes free relative to the durable head. Returns the
 * record's logical position, or -1 when it does not fit.
 */
function place(len: u32, reserve: u64): i64 {
  const p = pTail;
  const rem = cap - phys(p);
  const pad: u64 = rem < len ? <u64>rem : 0;
  if (p + pad + <u64>len - dHead + reserve > <u64>cap) return -1;
  if (pad >= <u64>HDR) {
    const r = rec(phys(p));
    memory.fill(r, 0, HDR);
    store<u32>(r, rem);
    store<u64>(r + 8, p);
    store<u8>(r + 24, <u8>T_PAD);
    store<u32>(r + 4, recCrc(r, HDR));
    // the rest of a pad record is not covered: only its header is read
  }
  pTail = p + pad + <u64>len;
  return <i64>(p + pad);
}

/** Defers the release of a superseded record's names until its superseder is durable. */
function deferNames(off: u32): void {
  const r = rec(off);
  const n = <u32>load<u16>(r + 28);
  for (let k: u32 = 0; k < n; k++) {
    store<u32>(defAt(defTail), <u32>(load<u64>(r + HDR + (<usize>k << 3)) >>> 32));
    defTail++;
  }
}

/**
 * Appends a record for the key staged at logKeyBuf() (keyLen bytes). type 1 (put): the
 * nNames u64 items staged at logNamesBuf() are the object: data ranges of held buffers (not
 * nodes) and sealed extent nodes, in order. The log takes one reference per item and marks
 * the buffers kept; data ranges join the open group's flush table (a node's range joined it
 * when it was sealed). type 2 (delete): nNames = 0; E_LOG_NOTFOUND if the key is absent.
 * `tag` is stored for the app. The record is durable once its group is. Returns its sequence
 * number (>= 1) or a negative error; on error nothing changed.
 */
export function logAppend(keyLen: u32, nNames: u32, type: u32, tag: u32): f64 {
  if (!recovered) return E_LOG_NOLOG;
  if (keyLen == 0 || keyLen > LOG_MAX_KEY) return E_LOG_KEY;
  if (nNames > LOG_MAX_NAMES) return E_LOG_NAMES;
  if (type != T_PUT && type != T_DEL) return E_ARG;
  if ((type == T_DEL && nNames != 0) || tag > 0xffff) return E_ARG;
  let dataItems: u32 = 0;
  for (let k: u32 = 0; k < nNames; k++) {
    const n = load<u64>(namesBuf + (<usize>k << 3));
    const rc = itemCheck(n, NODE_MAX_HEIGHT + 1);
    if (rc < 0) return rc;
    if (itemHeight(n) == 0) dataItems++;
    if (<u32>bufRefCount(<u32>(n >>> 32)) + nNames > REF_MAX) return E_REFMAX;
  }
  const h = keyHash(keyBuf, keyLen);
  let s = probe(h, keyBuf, keyLen);
  const e = entryAt(s);
  const found = e != 0;
  if (type == T_DEL && !found) return E_LOG_NOTFOUND;
  if (!found && liveKeys >= maxKeys) return E_LOG_INDEX_FULL;
  if (!found && act < slots && (liveKeys + 1) << 1 > act) {
    indexRoom(); // the table moved: the key's empty slot with it
    s = probe(h, keyBuf, keyLen);
  }
  const oldOff: u32 = found ? <u32>e - 1 : 0;
  const oldN: u32 = found ? <u32>load<u16>(rec(oldOff) + 28) : 0;
  if (defTail - defHead + oldN > defCap || flushRoom() < dataItems) return E_LOG_GROUP;
  const len = align8(HDR + (nNames << 3) + keyLen);
  const at = place(len, type == T_PUT ? RESERVE : RESERVE_DEL);
  if (at < 0) return E_LOG_FULL;
  const off = phys(<u64>at);
  const r = rec(off);
  const seq = nextSeq++;
  store<u32>(r, len);
  store<u64>(r + 8, <u64>at);
  store<u64>(r + 16, seq);
  store<u8>(r + 24, <u8>type);
  store<u8>(r + 25, 0);
  store<u16>(r + 26, <u16>keyLen);
  store<u16>(r + 28, <u16>nNames);
  store<u16>(r + 30, <u16>tag);
  const namesAt = r + HDR;
  memory.copy(namesAt, namesBuf, <usize>nNames << 3);
  const keyAt = namesAt + (<usize>nNames << 3);
  memory.copy(keyAt, keyBuf, keyLen);
  const end = HDR + (nNames << 3) + keyLen;
  if (end < len) memory.fill(r + end, 0, len - end);
  store<u32>(r + 4, recCrc(r, len));
  // effects (after the record is written: the index compares keys in place)
  if (found) {
    deferNames(oldOff);
    liveBytes -= <u64>load<u32>(rec(oldOff));
  }
  if (type == T_PUT) {
    for (let k: u32 = 0; k < nNames; k++) {
      const n = load<u64>(namesBuf + (<usize>k << 3));
      const i = <u32>(n >>> 32);
      bufRef(i);
      if (<u32>bufOwner(i) != OWNER_KEPT) bufSetOwner(i, OWNER_KEPT);
      if (itemHeight(n) == 0) flushAdd(bufAddr(i) + ((<usize>(n >>> 16)) & 0xffff), <u32>n & 0xffff);
    }
    setEntry(s, h, off);
    if (!found) liveKeys++;
    liveBytes += <u64>len;
  } else {
    unlink(s);
    liveKeys--;
  }
  pendingRecs++;
  lastSeq = seq;
  return <f64>seq;
}

/** The live record of the staged key: its offset in the log area, or E_LOG_NOTFOUND. */
export function logFind(keyLen: u32): i32 {
  if (!recovered) return E_LOG_NOLOG;
  if (keyLen == 0 || keyLen > LOG_MAX_KEY) return E_LOG_KEY;
  const e = entryAt(probe(keyHash(keyBuf, keyLen), keyBuf, keyLen));
  return e == 0 ? E_LOG_NOTFOUND : <i32>(<u32>e - 1);
}

// ---------- group commit ----------

/**
 * Seals the open group: after its payload ranges, the flush table gets the range(s) of the
 * records appended since the last seal and, when the head or tail moved, the next tail slot
 * (written now, generation + 1). Returns the table's pair count (0: nothing to make durable,
 * no group sealed), E_LOG_BUSY when LOG_SEALED_MAX groups are in flight, or an error.
 * logInfo(19) is the number of payload pairs (the table's first ones) and logInfo(20) the
 * slot's generation (0 when the group wrote no slot: then there is no slot pair). The host
 * makes the table durable, in place in two steps (payload and records, then the slot: a slot
 * must never be durable before what it covers) or as one journal entry, and calls
 * logDurable() when it is, groups in seal order.
 */
export function logSeal(): i32 {
  if (!recovered) return E_LOG_NOLOG;
  const payload = flushCount();
  const moved = pTail != sTail || pHead != sHead;
  if (payload == 0 && !moved && defTail == defSealed) return 0;
  if (gTail - gHead >= LOG_SEALED_MAX) return E_LOG_BUSY;
  if (pTail > sTail) {
    const a = phys(sTail);
    const total = pTail - sTail;
    const first = <u32>min<u64>(<u64>(cap - a), total);
    flushAdd(logBase + a, first);
    if (<u64>first < total) flushAdd(logBase, <u32>(total - first));
  }
  lastPayload = payload;
  lastGen = 0;
  if (moved) {
    gen++;
    const at = (gen & 1) != 0 ? meta + SLOT_A : meta + SLOT_B;
    writeSlot(at, gen, pHead, pTail, nextSeq);
    flushAdd(at, SLOT_BYTES);
    lastGen = gen;
  }
  sealSeq++;
  const g = groupAt(gTail);
  store<u64>(g, pHead);
  store<u64>(g + 8, pTail);
  store<u32>(g + 16, defTail);
  store<u64>(g + 24, sealSeq);
  gTail++;
  sHead = pHead;
  sTail = pTail;
  defSealed = defTail;
  pendingRecs = 0;
  const total = flushCount();
  flushHanded(); // the host consumes the table now; the open group starts a new one
  return <i32>total;
}

/**
 * Sealed groups up to number `upTo` (logInfo(21) is the newest's number) are durable: the
 * durable head and tail advance, and the log drops its references to the buffers of records
 * they superseded or deleted. Returns how many buffers became free.
 */
export function logDurable(upTo: f64): i32 {
  if (!recovered) return E_LOG_NOLOG;
  let freed: i32 = 0;
  while (gHead != gTail) {
    const g = groupAt(gHead);
    if (<f64>load<u64>(g + 24) > upTo) break;
    dHead = load<u64>(g);
    dTail = load<u64>(g + 8);
    const end = load<u32>(g + 16);
    for (; defHead != end; defHead++) if (bufUnref(load<u32>(defAt(defHead))) == 0) freed++;
    durableSeal = load<u64>(g + 24);
    gHead++;
  }
  return freed;
}

// ---------- compaction ----------

/**
 * Advances the head over dead records (superseded puts, tombstones, pads) and relocates live
 * ones to the tail (same seq, key, tag and items; no payload moves), until `target`
 * bytes are free, the head reaches the durable tail, or no room is left for a relocation.
 * Only durable records are visited; relocations join the open group like appends, and the
 * head's move takes effect with the group that seals them. Returns the bytes the head
 * advanced (seal and make that group durable for the space to be reusable).
 */
export function logCompact(target: u32): f64 {
  if (!recovered) return E_LOG_NOLOG;
  const start = pHead;
  const stop = dTail;
  let p = pHead;
  while (p < stop) {
    if (<u64>cap - (pTail - pHead) >= <u64>target) break;
    const off = phys(p);
    const rem = cap - off;
    if (rem < HDR) {
      p += <u64>rem;
      pHead = p;
      continue;
    }
    const r = rec(off);
    const len = load<u32>(r);
    if (len < HDR || len > rem || (len & 7) != 0) return E_LOG_BAD; // validated at recovery
    const type = <u32>load<u8>(r + 24);
    if (type == T_PUT) {
      const keyLen = <u32>load<u16>(r + 26);
      const key = r + HDR + (<usize>load<u16>(r + 28) << 3);
      const h = keyHash(key, keyLen);
      const s = probe(h, key, keyLen);
      const e = entryAt(s);
      if (e != 0 && <u32>e - 1 == off) {
        const at = place(len, 0);
        if (at < 0) break;
        const noff = phys(<u64>at);
        const nr = rec(noff);
        if (nr != r) memory.copy(nr, r, len);
        store<u64>(nr + 8, <u64>at);
        store<u32>(nr + 4, recCrc(nr, len));
        setEntry(s, h, noff);
      }
    }
    p += <u64>len;
    pHead = p;
  }
  return <f64>(pHead - start);
}

// ---------- recovery ----------

/** Checks the record at logical `p` (below `tail`); returns its length or 0 (stopReason set). */
function validate(p: u64, tail: u64): u32 {
  const off = phys(p);
  const rem = cap - off;
  const r = rec(off);
  const len = load<u32>(r);
  if (len < HDR || len > rem || (len & 7) != 0 || <u64>len > tail - p) return bad(1);
  if (load<u64>(r + 8) != p) return bad(2);
  const type = <u32>load<u8>(r + 24);
  if (type == T_PAD) {
    if (load<u32>(r + 4) != recCrc(r, HDR)) return bad(5);
    return len;
  }
  if (type != T_PUT && type != T_DEL) return bad(3);
  const keyLen = <u32>load<u16>(r + 26);
  const n = <u32>load<u16>(r + 28);
  if (keyLen == 0 || keyLen > LOG_MAX_KEY || n > LOG_MAX_NAMES) return bad(4);
  if (type == T_DEL && n != 0) return bad(4);
  if (align8(HDR + (n << 3) + keyLen) != len) return bad(4);
  if (load<u32>(r + 4) != recCrc(r, len)) return bad(5);
  const seq = load<u64>(r + 16);
  if (seq == 0 || seq >= nextSeq) return bad(6);
  const count = poolCount();
  for (let k: u32 = 0; k < n; k++) {
    const nm = load<u64>(r + HDR + (<usize>k << 3));
    const o = <u32>(nm >>> 16) & 0xffff;
    const l = <u32>nm & 0xffff;
    if (<u32>(nm >>> 32) >= count) return bad(7);
    if ((o & ITEM_NODE) != 0) {
      const h = o & 0x7fff;
      if (h == 0 || h > NODE_MAX_HEIGHT || l != 0) return bad(7);
    } else if (o > BUF_SIZE || l > BUF_SIZE - o) return bad(7);
  }
  return len;
}
function bad(reason: u32): u32 {
  stopReason = reason;
  return 0;
}

/**
 * Recovery: picks the valid tail slot with the larger generation (ignoring, and erasing, any
 * slot of a generation above `maxGen` when it is not 0: a journal's replay says which
 * generation was the last durable one, and a later slot may have reached the pool file from
 * memory without being durable), scans [head, tail) checking every record (length, position,
 * type, counts, CRC, seq, names), rebuilds the index, checks every live object's extent tree
 * (a record whose tree is damaged loses its key: logInfo(22) counts them), and claims (kept)
 * every buffer a live record names: one reference per name, and the trees under its nodes.
 * The log ends at the first record that fails a check; the rest is discarded (logInfo reports
 * how much and why) and a new tail slot is written. Returns the pairs of the flush table to
 * persist (the repaired slot, an erased slot, the version 2 header), 0 if none, or an error.
 * The pool must not have handed out any buffer yet.
 */
export function logRecover(maxGen: f64): i32 {
  if (meta == 0) return E_LOG_NOLOG;
  if (recovered) return E_LOG_BUSY;
  if (poolFreeCount() != poolCount()) return E_LOG_BUSY;
  flushReset();
  let va = slotValid(meta + SLOT_A);
  let vb = slotValid(meta + SLOT_B);
  if (maxGen > 0) {
    if (va && <f64>load<u64>(meta + SLOT_A) > maxGen) {
      memory.fill(meta + SLOT_A, 0, SLOT_BYTES);
      flushAdd(meta + SLOT_A, SLOT_BYTES);
      va = false;
    }
    if (vb && <f64>load<u64>(meta + SLOT_B) > maxGen) {
      memory.fill(meta + SLOT_B, 0, SLOT_BYTES);
      flushAdd(meta + SLOT_B, SLOT_BYTES);
      vb = false;
    }
  }
  if (!va && !vb) return E_LOG_BAD;
  let at = meta + SLOT_A;
  if (!va || (vb && load<u64>(meta + SLOT_B) > load<u64>(meta + SLOT_A))) at = meta + SLOT_B;
  gen = load<u64>(at);
  const head = load<u64>(at + 8);
  const tail = load<u64>(at + 16);
  nextSeq = load<u64>(at + 24);
  memory.fill(idx, 0, <usize>slots << 3);
  act = slots;
  mask = slots - 1;
  liveKeys = 0;
  liveBytes = 0;
  scanned = 0;
  discarded = 0;
  stopReason = 0;
  let p = head;
  while (p < tail) {
    const rem = cap - phys(p);
    if (rem < HDR) {
      if (<u64>rem > tail - p) {
        stopReason = 1;
        break;
      }
      p += <u64>rem;
      continue;
    }
    const len = validate(p, tail);
    if (len == 0) break;
    const off = phys(p);
    const r = rec(off);
    const type = <u32>load<u8>(r + 24);
    if (type != T_PAD) {
      const keyLen = <u32>load<u16>(r + 26);
      const key = r + HDR + (<usize>load<u16>(r + 28) << 3);
      const h = keyHash(key, keyLen);
      const s = probe(h, key, keyLen);
      const e = entryAt(s);
      if (e != 0) liveBytes -= <u64>load<u32>(rec(<u32>e - 1));
      if (type == T_PUT) {
        if (e == 0 && liveKeys >= maxKeys) {
          stopReason = 8;
          break;
        }
        setEntry(s, h, off);
        if (e == 0) liveKeys++;
        liveBytes += <u64>len;
      } else if (e != 0) {
        unlink(s);
        liveKeys--;
      }
      lastSeq = max<u64>(lastSeq, load<u64>(r + 16));
    }
    scanned++;
    p += <u64>len;
  }
  if (p < tail) {
    discarded = tail - p;
    gen++;
    const slot = (gen & 1) != 0 ? meta + SLOT_A : meta + SLOT_B;
    writeSlot(slot, gen, head, p, nextSeq);
    flushAdd(slot, SLOT_BYTES);
  }
  if (upgrade) {
    writeHeader();
    flushAdd(meta, 64);
    upgrade = false;
  }
  dHead = sHead = pHead = head;
  dTail = sTail = pTail = p;
  // Every live object's tree must be whole before anything is claimed: a damaged one loses its
  // key (only a failing medium or outside writes do that: a tree is durable before its record)
  damagedKeys = 0;
  for (let s: u32 = 0; s < slots; s++) {
    const e = entryAt(s);
    if (e == 0) continue;
    if (objectCheck(rec(<u32>e - 1)) < 0) {
      liveBytes -= <u64>load<u32>(rec(<u32>e - 1));
      unlink(s);
      liveKeys--;
      damagedKeys++;
      s--; // the backward shift may have moved an unchecked entry into slot s
    }
  }
  // Claim every buffer the live records name (one reference per name), and their trees.
  claimed = 0;
  for (let s: u32 = 0; s < slots; s++) {
    const e = entryAt(s);
    if (e == 0) continue;
    const r = rec(<u32>e - 1);
    const n = <u32>load<u16>(r + 28);
    for (let k: u32 = 0; k < n; k++) {
      const c = treeClaim(load<u64>(r + HDR + (<usize>k << 3)));
      if (c < 0) return c == E_REFMAX ? E_REFMAX : E_LOG_BAD;
      claimed += <u32>c;
    }
  }
  indexFit();
  recovered = true;
  const total = flushCount();
  flushHanded();
  return <i32>total;
}

/**
 * Puts the current tail slot (generation logInfo(16)) in the flush table as its only pair, for
 * a journal that starts or restarts under a recovered log: persisted as an entry of that
 * generation, it tells the journal which generation is durable and gives its checkpoints the
 * slot's bytes. Returns 1, or 0 when nothing is pending to say so (before recovery).
 */
export function logSlotPair(): i32 {
  if (!recovered || gen == 0 || flushCount() != 0) return 0;
  flushAdd((gen & 1) != 0 ? meta + SLOT_A : meta + SLOT_B, SLOT_BYTES);
  flushHanded();
  return 1;
}

/** The object bytes of record `r` (a put), or -1 when its extent tree is damaged. */
function objectCheck(r: usize): i64 {
  const n = <u32>load<u16>(r + 28);
  let total: i64 = 0;
  for (let k: u32 = 0; k < n; k++) {
    const b = treeCheck(load<u64>(r + HDR + (<usize>k << 3)), NODE_MAX_HEIGHT + 1);
    if (b < 0) return -1;
    total += b;
  }
  return total;
}

// ---------- iteration (log order) ----------

/** Restarts iteration at the head. */
export function logIterStart(): void {
  iterPos = pHead;
}

/** Offset (in the log area) of the next live put record in log order, or -1 at the end. */
export function logIterNext(): i32 {
  if (!recovered) return E_LOG_NOLOG;
  while (iterPos < pTail) {
    const off = phys(iterPos);
    const rem = cap - off;
    if (rem < HDR) {
      iterPos += <u64>rem;
      continue;
    }
    const r = rec(off);
    const len = load<u32>(r);
    if (len < HDR || len > rem) return E_LOG_BAD;
    iterPos += <u64>len;
    if (<u32>load<u8>(r + 24) != T_PUT) continue;
    const keyLen = <u32>load<u16>(r + 26);
    const key = r + HDR + (<usize>load<u16>(r + 28) << 3);
    const e = entryAt(probe(keyHash(key, keyLen), key, keyLen));
    if (e != 0 && <u32>e - 1 == off) return <i32>off;
  }
  return -1;
}

// ---------- information ----------

export function logKeyBuf(): usize {
  return keyBuf;
}
export function logNamesBuf(): usize {
  return namesBuf;
}
export function logTable(): usize {
  return flushTable();
}

/**
 * Numbers about the log, by code: 0 log area address, 1 capacity, 2 durable head, 3 durable
 * tail, 4 pending tail, 5 next seq, 6 last seq, 7 live keys, 8 live bytes, 9 free bytes for
 * appends, 10 max keys, 11 records scanned at recovery, 12 bytes discarded at recovery,
 * 13 why recovery stopped (0 clean, 1 length, 2 position, 3 type, 4 counts, 5 crc, 6 seq,
 * 7 name, 8 index full), 14 buffers claimed at recovery, 15 pending records (not sealed),
 * 16 tail slot gen, 17 index slots, 18 pending head, 19 the last seal's payload pairs, 20 the
 * last seal's slot gen (0: it wrote none), 21 groups sealed so far (the newest's number),
 * 22 keys lost at recovery to a damaged extent tree, 23 groups durable so far, 24 sealed
 * groups in flight, 25 pairs in the flush table now (the open group's payload), 26 index
 * slots in use (the table grows with the keys, up to 17).
 */
export function logInfo(code: u32): f64 {
  switch (code) {
    case 0:
      return <f64>logBase;
    case 1:
      return <f64>cap;
    case 2:
      return <f64>dHead;
    case 3:
      return <f64>dTail;
    case 4:
      return <f64>pTail;
    case 5:
      return <f64>nextSeq;
    case 6:
      return <f64>lastSeq;
    case 7:
      return <f64>liveKeys;
    case 8:
      return <f64>liveBytes;
    case 9: {
      const used = pTail - dHead + RESERVE;
      return used >= <u64>cap ? 0 : <f64>(<u64>cap - used);
    }
    case 10:
      return <f64>maxKeys;
    case 11:
      return <f64>scanned;
    case 12:
      return <f64>discarded;
    case 13:
      return <f64>stopReason;
    case 14:
      return <f64>claimed;
    case 15:
      return <f64>pendingRecs;
    case 16:
      return <f64>gen;
    case 17:
      return <f64>slots;
    case 18:
      return <f64>pHead;
    case 19:
      return <f64>lastPayload;
    case 20:
      return <f64>lastGen;
    case 21:
      return <f64>sealSeq;
    case 22:
      return <f64>damagedKeys;
    case 23:
      return <f64>durableSeal;
    case 24:
      return <f64>(gTail - gHead);
    case 25:
      return <f64>flushCount();
    case 26:
      return <f64>act;
  }
  return -1;
}

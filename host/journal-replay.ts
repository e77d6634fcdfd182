// Replays a pool's journal (`<pool>.journal`, docs/pm-format.md#the-journal-file) without the
// addon: what native-host/journal.c does when a pool is opened in an in-place mode, here for
// the file adapter (host/store-file.ts), over positional reads and writes only.
//
// The saved tail slot, then every valid entry after the start mark, are applied to the pool's
// bytes in memory, in order; the bytes they touched are written to the pool file and synced;
// then a header slot is written that marks the whole ring as replayed (start one lap later,
// with no saved slot and no generation: the pool file is written in place from now on, and a
// slot recorded here would roll those writes back at the next replay), and synced. The scan's
// rules and results are journal.c's, so either adapter reports the same replay.

import { crc32c } from "./crc32c.js";
import type { JournalReplay } from "./native.js";
import { codeError, type RandomAccessFile } from "./store-file.js";

const RING_OFF = 4096;
const SLOT = 512;
const SLOT_CRC = 508;
const EHDR = 48;
const EPAIR = 16;
const SECTOR = 512;
const TAIL_SLOT = 64;
const MAGIC_ENTRY = 0x454a4d50; // "PMJE" read as a little-endian u32
const MAGIC_PAD = 0x504a4d50; // "PMJP"
const F_INPLACE = 1;
const MIN_CAP = 1 << 20;
const MAX_SAFE = 2 ** 53;
const HDR_MAGIC = [0x50, 0x4d, 0x4a, 0x52, 0x4e, 0x4c, 0, 0]; // "PMJRNL\0\0"

interface Header {
  ckptGen: number;
  start: number;
  startSeq: number;
  lastGen: number;
  slotOff: number;
  slot: Uint8Array;
}

/** The pool being opened: its bytes at memory [memOffset, memOffset + length) of `u8`, and its file. */
export interface ReplayTarget {
  u8: Uint8Array;
  memOffset: number;
  length: number;
  pool: RandomAccessFile;
}

const u32 = (b: Uint8Array, at: number) => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
const u64 = (b: Uint8Array, at: number) => u32(b, at) + u32(b, at + 4) * 2 ** 32;
const put32 = (b: Uint8Array, at: number, v: number) => {
  for (let i = 0; i < 4; i++) b[at + i] = (v >>> (8 * i)) & 255;
};
const put64 = (b: Uint8Array, at: number, v: number) => {
  put32(b, at, v % 2 ** 32);
  put32(b, at + 4, Math.floor(v / 2 ** 32));
};
const alignUp = (x: number, a: number) => Math.ceil(x / a) * a;

function journalError(code: string, path: string, why: string): Error {
  return codeError(code, `pmstack: cannot open journal ${path}: ${why} (${code})`);
}

/** Reads the journal's newer valid header slot for the pool `uuid` (journal.c open_file). */
function readHeader(j: RandomAccessFile, path: string, uuid: Uint8Array, poolLen: number): [Header, number] {
  const buf = new Uint8Array(2 * SLOT);
  const got = j.read(buf, 0);
  let best: Header | null = null;
  let cap = 0;
  let foreign = false;
  for (let i = 0; i < 2; i++) {
    const s = buf.subarray(i * SLOT, (i + 1) * SLOT);
    if (
      got < (i + 1) * SLOT ||
      HDR_MAGIC.some((b, k) => s[k] !== b) ||
      u32(s, 8) !== 1 ||
      u32(s, 12) !== SLOT ||
      u32(s, SLOT_CRC) !== crc32c(s.subarray(0, SLOT_CRC))
    )
      continue;
    if (uuid.some((b, k) => s[16 + k] !== b)) {
      foreign = true;
      continue;
    }
    const h: Header = {
      ckptGen: u64(s, 40),
      start: u64(s, 48),
      startSeq: u64(s, 56),
      lastGen: u64(s, 64),
      slotOff: u64(s, 72),
      slot: s.slice(80, 80 + TAIL_SLOT),
    };
    if (!best || h.ckptGen > best.ckptGen) {
      best = h;
      cap = u64(s, 32);
    }
  }
  if (!best && foreign) throw codeError("EUUID", `pmstack: journal ${path} belongs to another pool (EUUID)`);
  if (!best) throw journalError("EBADJOURNAL", path, "neither header slot is valid");
  const size = j.size();
  if (cap % 4096 || cap < MIN_CAP || cap > MAX_SAFE - RING_OFF)
    throw journalError("EBADJOURNAL", path, `impossible ring capacity ${cap}`);
  if (size !== RING_OFF + cap)
    throw journalError("EBADJOURNAL", path, `the file is ${size} bytes, its header says ${RING_OFF + cap}`);
  if (best.start % SECTOR || best.start > MAX_SAFE / 2 || best.startSeq === 0 || best.startSeq > MAX_SAFE / 2)
    throw journalError(
      "EBADJOURNAL",
      path,
      `impossible start position ${best.start} or sequence number ${best.startSeq}`,
    );
  if (best.slotOff && (best.slotOff > poolLen || poolLen - best.slotOff < TAIL_SLOT))
    throw journalError(
      "EBADJOURNAL",
      path,
      `its saved tail slot at ${best.slotOff} is outside the pool (${poolLen} bytes)`,
    );
  return [best, cap];
}

/**
 * Replays journal `j` (opened and locked by the caller, who closes it) into `t`, makes what it
 * applied durable in the pool file, and marks the ring replayed. Returns what journalReplay
 * returns, and the ring's capacity.
 */
export function replayJournal(
  j: RandomAccessFile,
  path: string,
  uuid: Uint8Array,
  t: ReplayTarget,
): { replay: JournalReplay; capacity: number } {
  const [h, cap] = readHeader(j, path, uuid, t.length);
  const mem = t.u8.subarray(t.memOffset, t.memOffset + t.length);
  const dirty: [number, number][] = [];
  let lastGen = h.lastGen;
  if (h.slotOff) {
    // first: the entries below may move the slot on
    mem.set(h.slot, h.slotOff);
    dirty.push([h.slotOff, TAIL_SLOT]);
  }
  const head = new Uint8Array(EHDR);
  const ringRead = (phys: number, n: number): Uint8Array => {
    const b = n === EHDR ? head : new Uint8Array(n);
    const got = j.read(b, RING_OFF + phys);
    if (got < n) b.fill(0, got);
    return b;
  };
  let pos = h.start;
  let seq = h.startSeq;
  let entries = 0;
  let damage = "";
  for (;;) {
    const phys = pos % cap;
    let e = ringRead(phys, EHDR);
    const magic = u32(e, 0);
    const len = u32(e, 24);
    const n = u32(e, 28);
    const epos = u64(e, 8);
    const gen = u64(e, 32);
    const known = magic === MAGIC_ENTRY || magic === MAGIC_PAD;
    if (epos !== pos) {
      // zeros, old data or an entry of an earlier lap: the normal end (a later lap cannot be there)
      if (known && epos > pos && epos % cap === phys) damage = "position";
      break;
    }
    if (!known) {
      damage = "magic";
      break;
    }
    if (u64(e, 16) !== seq) {
      damage = "sequence";
      break;
    }
    if (magic === MAGIC_PAD) {
      if (len !== cap - phys) {
        damage = "length";
        break;
      }
      if (u32(e, 4) !== crc32c(e.subarray(8, EHDR))) {
        damage = "crc";
        break;
      }
      pos += len;
      continue;
    }
    const hlen = EHDR + n * EPAIR;
    let ok = len >= EHDR && hlen <= len && phys + len <= cap;
    if (ok) e = ringRead(phys, len);
    let data = 0;
    for (let i = 0; ok && i < n; i++) {
      const d = EHDR + i * EPAIR;
      const fl = u32(e, d + 12);
      if (!(fl & F_INPLACE)) data += u32(e, d + 8);
      ok = !(fl & ~F_INPLACE) && data <= len; // no unknown flag; no overflow of the sum
    }
    // a gen != 0 entry ends with the tail slot's 64 bytes
    if (ok && gen) ok = n > 0 && u32(e, hlen - EPAIR + 8) === TAIL_SLOT && !(u32(e, hlen - EPAIR + 12) & F_INPLACE);
    if (!ok || hlen + data !== len) {
      damage = "length";
      break;
    }
    if (u32(e, 4) !== crc32c(e.subarray(8, len))) {
      damage = "crc";
      break;
    }
    for (let i = 0; ok && i < n; i++) {
      const d = EHDR + i * EPAIR;
      const off = u64(e, d);
      const l = u32(e, d + 8);
      ok = off <= t.length && l <= t.length - off;
    }
    if (!ok) {
      damage = "range";
      break;
    }
    let src = hlen;
    for (let i = 0; i < n; i++) {
      const d = EHDR + i * EPAIR;
      const off = u64(e, d);
      const l = u32(e, d + 8);
      if (u32(e, d + 12) & F_INPLACE) {
        // written in place before the entry: an earlier inline entry for these bytes must not win
        if (t.pool.read(mem.subarray(off, off + l), off) < l)
          throw codeError("EIO", `pmstack: cannot replay ${path}: a range written in place is past the pool's end`);
      } else {
        mem.set(e.subarray(src, src + l), off);
        src += l;
        dirty.push([off, l]);
      }
    }
    if (gen > lastGen) lastGen = gen;
    entries++;
    pos += alignUp(len, SECTOR);
    seq++;
  }
  const bytes = pos - h.start;
  // what was thrown away: the chain of headers that claim the next positions
  let discarded = 0;
  for (let p = pos; damage && discarded < cap;) {
    const e = ringRead(p % cap, EHDR);
    const len = u32(e, 24);
    if (u64(e, 8) !== p || len < EHDR || len > cap - (p % cap)) break;
    const step = u32(e, 0) === MAGIC_PAD ? len : alignUp(len, SECTOR);
    discarded += step;
    p += step;
  }

  // The pool file first, then the mark: the ring is free only once what it held is in the file.
  if (dirty.length) {
    dirty.sort((a, b) => a[0] - b[0]);
    let [a, b] = [dirty[0]![0], dirty[0]![0] + dirty[0]![1]];
    for (let i = 1; i <= dirty.length; i++) {
      const r = dirty[i];
      if (r && r[0] <= b) {
        b = Math.max(b, r[0] + r[1]);
        continue;
      }
      t.pool.write(mem.subarray(a, b), a);
      if (r) [a, b] = [r[0], r[0] + r[1]];
    }
    t.pool.sync();
  }
  // One lap after the start mark, with nothing in between: no position the next run writes can
  // hold a stale entry that a replay would take for the expected one, whatever ended this scan.
  const slot = new Uint8Array(SLOT);
  slot.set(HDR_MAGIC, 0);
  put32(slot, 8, 1);
  put32(slot, 12, SLOT);
  slot.set(uuid, 16);
  put64(slot, 32, cap);
  const ckptGen = h.ckptGen + 1;
  put64(slot, 40, ckptGen);
  put64(slot, 48, h.start + cap);
  put64(slot, 56, seq);
  // lastGen 0 and no saved slot: the pool file is written in place after this
  put32(slot, SLOT_CRC, crc32c(slot.subarray(0, SLOT_CRC)));
  j.write(slot, ckptGen % 2 ? 0 : SLOT);
  j.sync();
  return {
    replay: { entries, bytes, startSeq: h.startSeq, nextSeq: seq, lastGen, damage, discardedBytes: discarded },
    capacity: cap,
  };
}

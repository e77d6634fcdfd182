// The classic libpcap file format, read and written in a stream. Reading takes both byte orders
// and both timestamp resolutions (magic 0xa1b2c3d4: microseconds, 0xa1b23c4d: nanoseconds) of
// link type 1 (Ethernet) and refuses anything else with the reason (pcapng, another link type,
// a bad header, a truncated record). Writing uses the input's resolution, little-endian, link
// type 1, snap length 262144. Timestamps are i64 counts of the file's unit since the epoch.

import { say, sayU, sayStart, sayBytes, failEnd, sayErrno, readSome, writeAll, reserve, EXIT_INPUT } from "./io";

export const MAGIC_US: u32 = 0xa1b2c3d4;
export const MAGIC_NS: u32 = 0xa1b23c4d;
const MAGIC_PCAPNG: u32 = 0x0a0d0d0a;
const MAGIC_MODIFIED: u32 = 0xa1b2cd34; // Kuznetzov's modified format
export const LINKTYPE_ETHERNET: u32 = 1;
/** The largest record we accept: libpcap's own limit for the snap length. */
export const MAX_RECORD: u32 = 262144;
const HDR: usize = 24;
const REC: usize = 16;

// ---- reading ----

let wbuf: usize = 0; // the output buffer (below), flushed when the input turns out bad

let inFd: u32 = 0;
let name: usize = 0;
let nameLen: usize = 0;
let rbuf: usize = 0; // the read buffer
const RBUF: usize = 1 << 20; // > MAX_RECORD + REC: one record always fits
let rpos: usize = 0; // next unread byte in rbuf
let rend: usize = 0; // end of the bytes read into rbuf
let eof = false;
let consumed: u64 = 0; // file offset of rbuf[rpos]
let swapped = false;
/** Timestamp units per second of the input (1e6 or 1e9) and its magic as written. */
export let unitsPerSec: u64 = 1000000;
export let magic: u32 = MAGIC_US;
export let records: u64 = 0;

// the record just read
export let recUnits: i64 = 0; // timestamp in the file's unit
export let recCap: u32 = 0; // captured length
export let recLen: u32 = 0; // length on the wire
export let recData: usize = 0; // address of its bytes (valid until the next read)

@inline function rd32(p: usize): u32 {
  const v = load<u32>(p);
  return swapped ? bswap<u32>(v) : v;
}

function inputError(at: u64, what: string): void {
  if (wbuf != 0) flush(); // the answers to the records before this one
  sayStart("");
  sayBytes(name, nameLen);
  say(": ");
  say(what);
  if (at != 0xffffffffffffffff) {
    say(" (at byte ");
    sayU(at);
    say(")");
  }
  failEnd(EXIT_INPUT);
}

/** Makes n bytes available at rbuf + rpos. Returns false if the file ends first. */
function need(n: usize): bool {
  while (rend - rpos < n) {
    if (eof) return false;
    if (rpos > 0) {
      memory.copy(rbuf, rbuf + rpos, rend - rpos);
      rend -= rpos;
      rpos = 0;
    }
    const r = readSome(inFd, rbuf + rend, RBUF - rend);
    if (r < 0) {
      sayStart("reading ");
      sayBytes(name, nameLen);
      say(": ");
      sayErrno(<u32>-r);
      failEnd(EXIT_INPUT);
    }
    if (r == 0) eof = true;
    rend += <usize>r;
  }
  return true;
}

/** Opens the stream on fd and checks the file header. Exits with the reason if it is not ours. */
export function pcapOpen(fd: u32, path: usize, pathLen: usize): void {
  inFd = fd;
  name = path;
  nameLen = pathLen;
  rbuf = reserve(RBUF, 64);
  if (!need(4)) inputError(0xffffffffffffffff, "empty or shorter than a pcap file header");
  const m = load<u32>(rbuf);
  if (m == MAGIC_US || m == MAGIC_NS) swapped = false;
  else if (m == bswap<u32>(MAGIC_US) || m == bswap<u32>(MAGIC_NS)) swapped = true;
  else if (m == MAGIC_PCAPNG)
    inputError(0, "a pcapng file; this tool reads classic pcap (convert with: editcap -F pcap IN OUT)");
  else if (m == MAGIC_MODIFIED || m == bswap<u32>(MAGIC_MODIFIED))
    inputError(0, "a modified-pcap file; this tool reads classic pcap (convert with: editcap -F pcap IN OUT)");
  else inputError(0, "not a pcap file (bad magic number)");
  if (!need(HDR)) inputError(0xffffffffffffffff, "truncated: shorter than a pcap file header (24 bytes)");
  magic = rd32(rbuf);
  unitsPerSec = magic == MAGIC_NS ? 1000000000 : 1000000;
  const major = swapped ? bswap<u16>(load<u16>(rbuf + 4)) : load<u16>(rbuf + 4);
  if (major != 2) inputError(4, "unsupported pcap version (not 2.x)");
  const link = rd32(rbuf + 20) & 0xffff; // the upper bits may carry FCS information
  if (link != LINKTYPE_ETHERNET) {
    sayStart("");
    sayBytes(name, nameLen);
    say(": link type ");
    sayU(link);
    say(" is not Ethernet (1); only Ethernet captures can be replayed");
    failEnd(EXIT_INPUT);
  }
  rpos = HDR;
  consumed = HDR;
}

/** Reads the next record into rec*. Returns false at the end of the file; exits on a bad record. */
export function pcapNext(): bool {
  if (recCap > 0 || recData != 0) {
    rpos += REC + <usize>recCap;
    consumed += REC + <u64>recCap;
    recData = 0;
    recCap = 0;
  }
  if (!need(1)) return false;
  if (!need(REC)) inputError(consumed, "truncated: the file ends inside a record header");
  const p = rbuf + rpos;
  const sec = rd32(p);
  const frac = rd32(p + 4);
  const cap = rd32(p + 8);
  const len = rd32(p + 12);
  if (<u64>frac >= unitsPerSec) inputError(consumed, "corrupt record: its timestamp fraction is not below one second");
  if (cap > MAX_RECORD) inputError(consumed, "corrupt record: captured length above 262144");
  if (!need(REC + <usize>cap)) inputError(consumed, "truncated: the file ends inside a record");
  records++;
  recUnits = <i64>sec * <i64>unitsPerSec + <i64>frac;
  recCap = cap;
  recLen = len;
  recData = rbuf + rpos + REC;
  return true;
}

// ---- writing ----

let outFd: u32 = 1;
let oname: usize = 0;
let onameLen: usize = 0;
const WBUF: usize = 1 << 18;
let wlen: usize = 0;
export let written: u64 = 0;

function flush(): void {
  if (wlen == 0) return;
  const e = writeAll(outFd, wbuf, wlen);
  if (e != 0) {
    sayStart("writing ");
    sayBytes(oname, onameLen);
    say(": ");
    sayErrno(e);
    failEnd(EXIT_INPUT);
  }
  wlen = 0;
}

/** Appends n bytes from p to the output. */
export function pcapPut(p: usize, n: usize): void {
  while (n > 0) {
    if (wlen == WBUF) flush();
    const k = n < WBUF - wlen ? n : WBUF - wlen;
    memory.copy(wbuf + wlen, p, k);
    wlen += k;
    p += k;
    n -= k;
  }
}

/** Starts the output on fd: the file header, with the input's timestamp resolution. */
export function pcapCreate(fd: u32, path: usize, pathLen: usize): void {
  outFd = fd;
  oname = path;
  onameLen = pathLen;
  wbuf = reserve(WBUF, 64);
  const h = memory.data(<i32>HDR, 4);
  store<u32>(h, magic == MAGIC_NS ? MAGIC_NS : MAGIC_US);
  store<u16>(h + 4, 2);
  store<u16>(h + 6, 4);
  store<u32>(h + 8, 0); // thiszone
  store<u32>(h + 12, 0); // sigfigs
  store<u32>(h + 16, MAX_RECORD);
  store<u32>(h + 20, LINKTYPE_ETHERNET);
  pcapPut(h, HDR);
}

/** Starts a record of `len` bytes at `units` (the file's unit since the epoch); pcapPut its bytes next. */
export function pcapRecord(units: i64, len: u32): void {
  const r = memory.data(<i32>REC, 4);
  const t = units < 0 ? 0 : <u64>units;
  store<u32>(r, <u32>(t / unitsPerSec));
  store<u32>(r + 4, <u32>(t % unitsPerSec));
  store<u32>(r + 8, len);
  store<u32>(r + 12, len);
  pcapPut(r, REC);
  written++;
}

export function pcapFinish(): void {
  flush();
}

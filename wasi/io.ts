// The replay host's side of WASI (preview 1): the few wasi_snapshot_preview1 functions it
// imports, messages on stderr, the command line, files found through the pre-opened
// directories, and buffered reading and writing. Nothing here allocates managed memory: the
// runtime is the stub (it never frees, and its heap must stay below the core's arena), so text
// goes out byte by byte from string literals and numbers, and every buffer comes from the
// core's arena during set-up (`arenaAlloc`, before `arenaSeal`).

import { arenaAlloc } from "../assembly/index";

// ---- wasi_snapshot_preview1: the whole list of imports of build/pmstack-replay.wasm ----
// Each returns an errno (0 = success). Signatures as in the preview1 witx.

@external("wasi_snapshot_preview1", "args_sizes_get")
declare function args_sizes_get(argc: usize, argvBufSize: usize): u32;
@external("wasi_snapshot_preview1", "args_get")
declare function args_get(argv: usize, argvBuf: usize): u32;
@external("wasi_snapshot_preview1", "fd_prestat_get")
declare function fd_prestat_get(fd: u32, prestat: usize): u32;
@external("wasi_snapshot_preview1", "fd_prestat_dir_name")
declare function fd_prestat_dir_name(fd: u32, path: usize, pathLen: usize): u32;
@external("wasi_snapshot_preview1", "path_open")
declare function path_open(
  dirfd: u32,
  dirflags: u32,
  path: usize,
  pathLen: usize,
  oflags: u32,
  rightsBase: u64,
  rightsInheriting: u64,
  fdflags: u32,
  fdOut: usize,
): u32;
@external("wasi_snapshot_preview1", "fd_read")
declare function fd_read(fd: u32, iovs: usize, iovsLen: usize, nread: usize): u32;
@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovsLen: usize, nwritten: usize): u32;
@external("wasi_snapshot_preview1", "fd_close")
declare function fd_close(fd: u32): u32;
@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(code: u32): void;

const ERRNO_BADF: u32 = 8;
const ERRNO_INTR: u32 = 27;
const ERRNO_AGAIN: u32 = 6;
const LOOKUP_SYMLINK_FOLLOW: u32 = 1;
const O_CREAT: u32 = 1;
const O_TRUNC: u32 = 8;
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;

/** Exit statuses (0: done). */
export const EXIT_INPUT: u32 = 1; // the input or output file: unreadable, not a pcap we take, truncated
export const EXIT_USAGE: u32 = 2; // the command line
export const EXIT_CORE: u32 = 3; // the core refused the configuration, aborted, or made no progress

// ---- messages on stderr ----

const MSG_CAP: usize = 4096;
const msg: usize = memory.data(<i32>MSG_CAP);
let msgLen: usize = 0;
const iov: usize = memory.data(16, 8);

@inline function putByte(b: u32): void {
  if (msgLen < MSG_CAP) store<u8>(msg + msgLen++, <u8>b);
}
/** Appends an ASCII string (a literal: no allocation) to the pending stderr line. */
export function say(s: string): void {
  for (let i = 0; i < s.length; i++) putByte(<u32>s.charCodeAt(i) & 0x7f);
}
/** Appends bytes from memory (e.g. an argument) to the pending stderr line. */
export function sayBytes(p: usize, n: usize): void {
  for (let i: usize = 0; i < n; i++) putByte(load<u8>(p + i));
}
/** Appends an unsigned decimal number. */
export function sayU(v: u64): void {
  const d = memory.data(24);
  let n = 0;
  do {
    store<u8>(d + n++, <u8>(48 + <u32>(v % 10)));
    v /= 10;
  } while (v != 0);
  while (n > 0) putByte(load<u8>(d + --n));
}
/** Appends a signed decimal number. */
export function sayI(v: i64): void {
  if (v < 0) {
    putByte(45);
    sayU(<u64>-v);
  } else sayU(<u64>v);
}
/** Writes the pending line (a newline added) to stderr. */
export function sayEnd(): void {
  sayEndTo(2);
}
/** Writes the pending text (a newline added) to fd: 1 for --help, 2 for messages. */
export function sayEndTo(fd: u32): void {
  putByte(10);
  writeAll(fd, msg, msgLen);
  msgLen = 0;
}
/** "pmstack-replay: " + s, the start of every line the tool prints. */
export function sayStart(s: string): void {
  msgLen = 0;
  say("pmstack-replay: ");
  say(s);
}
/** Ends the pending line and exits with `code`. */
export function failEnd(code: u32): void {
  sayEnd();
  exit(code);
}
export function exit(code: u32): void {
  proc_exit(code);
  unreachable();
}

// ---- the command line ----

let argc: u32 = 0;
let argv: usize = 0; // u32[argc]: addresses of NUL-terminated arguments

/** Reads the arguments into the arena. Returns their count (the program's name included). */
export function argsLoad(): u32 {
  const sizes = memory.data(8, 4);
  if (args_sizes_get(sizes, sizes + 4) != 0) return 0;
  argc = load<u32>(sizes);
  const bufSize = <usize>load<u32>(sizes + 4);
  if (argc == 0) return 0;
  const a = arenaAlloc(<usize>argc << 2, 4);
  const b = arenaAlloc(bufSize + 1, 1);
  if (a < 0 || b < 0) return 0;
  argv = <usize>a;
  if (args_get(argv, <usize>b) != 0) return 0;
  return argc;
}
/** Address of argument k (NUL-terminated). */
export function arg(k: u32): usize {
  return <usize>load<u32>(argv + (<usize>k << 2));
}
/** Length of the NUL-terminated string at p. */
export function cstrLen(p: usize): usize {
  let n: usize = 0;
  while (load<u8>(p + n) != 0) n++;
  return n;
}
/** Whether bytes [p, p+n) equal the ASCII literal s. */
export function bytesEq(p: usize, n: usize, s: string): bool {
  if (n != <usize>s.length) return false;
  for (let i: usize = 0; i < n; i++) if (<u32>load<u8>(p + i) != <u32>s.charCodeAt(<i32>i)) return false;
  return true;
}

// ---- files: "-" is stdin/stdout, anything else is looked up in the pre-opened directories ----

const prestat = memory.data(8, 4);
const nameBuf = memory.data(1024);
const fdOut = memory.data(4, 4);

/**
 * Opens the file named by [p, p+n) for reading (or, with `write`, creates or truncates it for
 * writing). The name resolves against the pre-opened directory whose name is its longest
 * leading path: "/data" holds "/data/x.pcap", "/" every absolute name, "." every relative one.
 * Returns the fd, or prints why not and exits (EXIT_INPUT).
 */
export function openFile(p: usize, n: usize, write: bool): u32 {
  if (bytesEq(p, n, "-")) return write ? 1 : 0;
  let bestFd: u32 = 0xffffffff;
  let bestSkip: usize = 0;
  let bestLen: i64 = -1;
  for (let fd: u32 = 3; fd < 1024; fd++) {
    const r = fd_prestat_get(fd, prestat);
    if (r == ERRNO_BADF) break;
    if (r != 0 || load<u8>(prestat) != 0) continue; // not a directory pre-open
    let dl = <usize>load<u32>(prestat + 4);
    if (dl > 1024 || fd_prestat_dir_name(fd, nameBuf, dl) != 0) continue;
    while (dl > 0 && load<u8>(nameBuf + dl - 1) == 0) dl--; // some runtimes count a NUL
    while (dl > 1 && load<u8>(nameBuf + dl - 1) == 47) dl--; // "dir/" is "dir"
    let skip: usize = 0; // bytes of the name the directory stands for
    const abs = n > 0 && load<u8>(p) == 47;
    if (dl == 0 || bytesEq(nameBuf, dl, ".")) {
      if (abs) continue;
      skip = 0;
    } else if (dl == 1 && load<u8>(nameBuf) == 47) {
      if (!abs) continue;
      skip = 1;
    } else {
      if (dl > n) continue;
      let same = true;
      for (let i: usize = 0; i < dl; i++)
        if (load<u8>(nameBuf + i) != load<u8>(p + i)) {
          same = false;
          break;
        }
      if (!same || (dl < n && load<u8>(p + dl) != 47)) continue;
      skip = dl < n ? dl + 1 : dl;
    }
    if (<i64>dl > bestLen) {
      bestLen = <i64>dl;
      bestFd = fd;
      bestSkip = skip;
    }
  }
  if (bestLen < 0) {
    sayStart("no pre-opened directory holds ");
    sayBytes(p, n);
    say(" (give the runtime one: wasmtime --dir ., or preopens in node:wasi)");
    failEnd(EXIT_INPUT);
  }
  let rest = p + bestSkip;
  let rn = n - bestSkip;
  while (rn >= 2 && load<u8>(rest) == 46 && load<u8>(rest + 1) == 47) {
    rest += 2; // "./x" is "x"
    rn -= 2;
  }
  if (rn == 0) {
    sayStart("");
    sayBytes(p, n);
    say(" names a directory, not a file");
    failEnd(EXIT_INPUT);
  }
  const e = path_open(
    bestFd,
    LOOKUP_SYMLINK_FOLLOW,
    rest,
    rn,
    write ? O_CREAT | O_TRUNC : 0,
    write ? RIGHT_FD_WRITE : RIGHT_FD_READ,
    0,
    0,
    fdOut,
  );
  if (e != 0) {
    sayStart("cannot open ");
    sayBytes(p, n);
    say(write ? " for writing: " : ": ");
    sayErrno(e);
    failEnd(EXIT_INPUT);
  }
  return load<u32>(fdOut);
}

/** A WASI errno by name where it is a common one. */
export function sayErrno(e: u32): void {
  if (e == 44) say("no such file or directory");
  else if (e == 2) say("permission denied");
  else if (e == 76) say("not permitted by the runtime (capabilities)");
  else if (e == 31) say("is a directory");
  else if (e == 54) say("not a directory");
  else if (e == 20) say("file exists");
  else if (e == 29) say("input/output error");
  else if (e == 51) say("no space left on device");
  else {
    say("WASI errno ");
    sayU(e);
  }
}

export function closeFd(fd: u32): void {
  if (fd > 2) fd_close(fd);
}

/** Writes [p, p+n) to fd, all of it (retrying short writes). Returns 0 or the errno. */
export function writeAll(fd: u32, p: usize, n: usize): u32 {
  while (n > 0) {
    store<u32>(iov, <u32>p);
    store<u32>(iov + 4, <u32>n);
    const e = fd_write(fd, iov, 1, iov + 8);
    if (e == ERRNO_INTR || e == ERRNO_AGAIN) continue;
    if (e != 0) return e;
    const w = <usize>load<u32>(iov + 8);
    if (w == 0) return 29; // EIO: nothing written and no error
    p += w;
    n -= w;
  }
  return 0;
}

/** Reads up to n bytes from fd into p. Returns the count (0 at the end), or -errno. */
export function readSome(fd: u32, p: usize, n: usize): i64 {
  while (true) {
    store<u32>(iov, <u32>p);
    store<u32>(iov + 4, <u32>n);
    const e = fd_read(fd, iov, 1, iov + 8);
    if (e == ERRNO_INTR || e == ERRNO_AGAIN) continue;
    if (e != 0) return -<i64>e;
    return <i64>load<u32>(iov + 8);
  }
}

/** Memory from the arena (set-up only), or exit: the replay host's buffers. */
export function reserve(size: usize, align: usize): usize {
  const a = arenaAlloc(size, align);
  if (a < 0) {
    sayStart("the memory for ");
    sayU(size);
    say(" bytes of buffers could not be reserved (core error ");
    sayI(a);
    say(")");
    failEnd(EXIT_CORE);
  }
  return <usize>a;
}

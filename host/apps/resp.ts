// Incremental RESP2 request parser (the Redis protocol) over zero-copy chunks. Commands are
// arrays of bulk strings (what redis-cli and redis-benchmark send), or inline commands. Short
// arguments (keys, options) come out as small copies, ranges of the parser's own arena (no
// array allocated per argument); long ones (values) as (offset, length) ranges of the chunk
// being fed, so a server can keep the PM buffers they live in and log their names instead of
// copying them.

export type RespEvent =
  /** A command of `argc` arguments begins. */
  | { kind: "begin"; argc: number }
  /** A whole short argument (at most smallMax bytes), copied. */
  | { kind: "arg"; bytes: Uint8Array }
  /** The next piece of a long argument: a range of the current chunk. */
  | { kind: "part"; offset: number; length: number; total: number }
  /** The long argument is complete. */
  | { kind: "argEnd" }
  /** The command is complete. */
  | { kind: "end" }
  /** A protocol error: reply "-ERR Protocol error: ..." and close (as Redis does). */
  | { kind: "error"; message: string };

export interface RespParserOptions {
  /** Arguments up to this size are copied out whole (default 64). */
  smallMax?: number;
  /** Largest bulk string (default 512 MiB, Redis's proto-max-bulk-len). */
  maxBulk?: number;
  /** Most arguments in one command (default 1,048,576, as Redis). */
  maxArgs?: number;
}

/**
 * What parse() calls, in the order of the RespEvent kinds: the allocation-free form of feed()
 * (no event object per argument, no closure per chunk). Offsets are into the chunk being parsed.
 */
export interface RespHandler {
  begin(argc: number): void;
  /**
   * A whole short argument (at most smallMax bytes), copied: `src[at, at + len)`, a range of
   * the parser's arena. An arena is written once (a full one is replaced, never reused), so
   * the handler may keep the range as long as it likes.
   */
  arg(src: Uint8Array, at: number, len: number): void;
  part(offset: number, length: number, total: number): void;
  argEnd(): void;
  end(): void;
  error(message: string): void;
}

const enum S {
  Start,
  ArrayLen,
  BulkHeader,
  Bulk,
  BulkCrlf,
  Inline,
}

/** Bytes of each arena the short arguments are copied into (a longer argument gets its own). */
const ARENA = 4096;
/** Longest "*<n>" / "$<n>" line (sign and 12 digits fit; longer is an invalid length). */
const HEADER_MAX = 32;
const INLINE_MAX = 65536;
/** Redis's limits before AUTH (networking.c): arguments per command, and bytes per argument. */
const UNAUTH_MAX_ARGS = 10;
const UNAUTH_MAX_BULK = 16384;

export class RespParser {
  readonly smallMax: number;
  readonly maxBulk: number;
  readonly maxArgs: number;
  /**
   * The client has not authenticated yet (the server wants a password): Redis's tighter limits
   * apply, at most 10 arguments and bulk strings of 16 KiB ("unauthenticated multibulk length",
   * "unauthenticated bulk length"), so a stranger cannot make the server hold much.
   */
  unauthenticated = false;
  #s = S.Start;
  /** The header line being read ("*3", "$5": without the line end). */
  #line = new Uint8Array(HEADER_MAX);
  #lineLen = 0;
  /** An inline command's line (rare: redis-cli and redis-benchmark send arrays). */
  #inlineLine: number[] = [];
  #argsLeft = 0;
  #bulkLeft = 0;
  #bulkTotal = 0;
  /** The short arguments' arena, and where the next one goes. */
  #arena = new Uint8Array(ARENA);
  #arenaAt = 0;
  /** The short argument being read: where it starts in the arena (-1: a long one). */
  #small = -1;
  #smallAt = 0;
  #crlf = 0;
  #dead = false;
  /** A command ended in the current parse() (where `one` stops it). */
  #ended = false;

  constructor(opts: RespParserOptions = {}) {
    this.smallMax = opts.smallMax ?? 64;
    this.maxBulk = opts.maxBulk ?? 512 * 1024 * 1024;
    this.maxArgs = opts.maxArgs ?? 1024 * 1024;
  }

  get dead(): boolean {
    return this.#dead;
  }

  /** A command is partly read (its first byte came, its end did not). */
  get partial(): boolean {
    return !this.#dead && this.#s !== S.Start;
  }

  /** parse() with one event object per step, for callers that want a single callback. */
  feed(chunk: Uint8Array, emit: (ev: RespEvent) => void): void {
    this.parse(chunk, {
      begin: (argc) => emit({ kind: "begin", argc }),
      arg: (src, at, len) => emit({ kind: "arg", bytes: src.slice(at, at + len) }),
      part: (offset, length, total) => emit({ kind: "part", offset, length, total }),
      argEnd: () => emit({ kind: "argEnd" }),
      end: () => emit({ kind: "end" }),
      error: (message) => emit({ kind: "error", message }),
    });
  }

  /**
   * Parses `chunk`, calling `h` for what it holds. With `one`, stops after the first command that
   * ends in it. Returns the bytes taken: all of them, unless `one` stopped it earlier (after a
   * protocol error, all of them).
   */
  parse(chunk: Uint8Array, h: RespHandler, one = false): number {
    let i = 0;
    const n = chunk.length;
    this.#ended = false;
    while (i < n && !this.#dead && !(one && this.#ended)) {
      switch (this.#s) {
        case S.Start: {
          const c = chunk[i]!;
          if (c === 0x2a /* * */) {
            this.#s = S.ArrayLen;
            this.#lineLen = 0;
            i++;
          } else if (c === 13 || c === 10)
            i++; // stray line ends between commands
          else {
            this.#s = S.Inline;
            this.#inlineLine.length = 0;
          }
          break;
        }
        case S.ArrayLen:
        case S.BulkHeader: {
          if (this.#lineLen === 0) {
            // the common case: the whole line, "*<digits>\r\n" or "$<digits>\r\n", is in this
            // chunk: read the number in place (anything else takes the general path below)
            const bulk = this.#s === S.BulkHeader;
            let j = bulk ? i + 1 : i;
            if (!bulk || chunk[i] === 0x24 /* $ */) {
              const first = j;
              let v = 0;
              while (j < n && j - first < 12) {
                const d = chunk[j]! - 0x30;
                if (d < 0 || d > 9) break;
                v = v * 10 + d;
                j++;
              }
              if (j > first && j + 1 < n && chunk[j] === 13 && chunk[j + 1] === 10) {
                i = j + 2;
                if (!bulk) {
                  this.#arrayCount(h, v);
                  break;
                }
                this.#bulkLen(h, v);
                const at = this.#small;
                if (at >= 0 && i + v + 1 < n && chunk[i + v] === 13 && chunk[i + v + 1] === 10) {
                  // a short argument whole in this chunk, CRLF and all: copied at once
                  const a = this.#arena;
                  for (let x = 0; x < v; x++) a[at + x] = chunk[i + x]!;
                  i += v + 2;
                  this.#argDone(h);
                }
                break;
              }
            }
          }
          // up to the line's end in one tight loop
          const line = this.#line;
          let len = this.#lineLen;
          let c = 0;
          while (i < n && (c = chunk[i++]!) !== 10) {
            if (len >= HEADER_MAX) {
              this.#error(h, "invalid length");
              return n;
            }
            line[len++] = c;
          }
          this.#lineLen = len;
          if (c !== 10) break; // the line goes on in the next chunk
          if (len > 0 && line[len - 1] === 13) this.#lineLen = --len;
          if (this.#s === S.ArrayLen) this.#arrayLen(h);
          else this.#bulkHeader(h);
          this.#lineLen = 0;
          break;
        }
        case S.Inline: {
          const c = chunk[i++]!;
          const l = this.#inlineLine;
          if (c !== 10) {
            if (l.length >= INLINE_MAX) {
              this.#error(h, "too big inline request");
              return n;
            }
            l.push(c);
            break;
          }
          if (l[l.length - 1] === 13) l.pop();
          this.#inline(h);
          l.length = 0;
          break;
        }
        case S.Bulk: {
          const k = Math.min(this.#bulkLeft, n - i);
          if (this.#small >= 0) {
            // at most smallMax bytes: a loop costs less than a subarray object and a set()
            const a = this.#arena;
            let at = this.#smallAt;
            for (let j = i; j < i + k; j++) a[at++] = chunk[j]!;
            this.#smallAt = at;
          } else h.part(i, k, this.#bulkTotal);
          this.#bulkLeft -= k;
          i += k;
          if (this.#bulkLeft === 0) {
            if (i + 1 < n && chunk[i] === 13 && chunk[i + 1] === 10) {
              // the common case: the CRLF is in this chunk too
              i += 2;
              this.#argDone(h);
            } else {
              this.#s = S.BulkCrlf;
              this.#crlf = 0;
            }
          }
          break;
        }
        case S.BulkCrlf: {
          const c = chunk[i++]!;
          if (c !== (this.#crlf === 0 ? 13 : 10)) {
            this.#error(h, "expected CRLF after a bulk string");
            return n;
          }
          if (++this.#crlf === 2) this.#argDone(h);
          break;
        }
      }
    }
    return this.#dead ? n : i; // a protocol error takes the rest: nothing after it is parsed
  }

  /** A bulk string and its CRLF are read: the argument, then the command if it was the last. */
  #argDone(h: RespHandler): void {
    const small = this.#small;
    this.#small = -1;
    if (small >= 0) h.arg(this.#arena, small, this.#bulkTotal);
    else h.argEnd();
    if (--this.#argsLeft > 0) this.#s = S.BulkHeader;
    else {
      this.#s = S.Start;
      this.#ended = true;
      h.end();
    }
  }

  #arrayLen(h: RespHandler): void {
    this.#arrayCount(h, this.#int(0));
  }

  #arrayCount(h: RespHandler, n: number | null): void {
    if (n === null || n > this.maxArgs) return this.#error(h, "invalid multibulk length");
    if (this.unauthenticated && n > UNAUTH_MAX_ARGS) return this.#error(h, "unauthenticated multibulk length");
    if (n <= 0) {
      this.#s = S.Start; // an empty array is no command
      return;
    }
    this.#argsLeft = n;
    this.#s = S.BulkHeader;
    h.begin(n);
  }

  #bulkHeader(h: RespHandler): void {
    if (this.#lineLen === 0 || this.#line[0] !== 0x24 /* $ */)
      return this.#error(h, `expected '$', got '${String.fromCharCode(this.#lineLen ? this.#line[0]! : 32)}'`);
    this.#bulkLen(h, this.#int(1));
  }

  #bulkLen(h: RespHandler, n: number | null): void {
    // a negative length ("$-1" is a null reply, never a request argument) is Redis's protocol error too
    if (n === null || n < 0 || n > this.maxBulk) return this.#error(h, "invalid bulk length");
    if (this.unauthenticated && n > UNAUTH_MAX_BULK) return this.#error(h, "unauthenticated bulk length");
    this.#bulkTotal = n;
    this.#bulkLeft = n;
    if (n <= this.smallMax) {
      if (this.#arenaAt + n > this.#arena.length) {
        this.#arena = new Uint8Array(Math.max(ARENA, n));
        this.#arenaAt = 0;
      }
      this.#small = this.#smallAt = this.#arenaAt;
      this.#arenaAt += n;
    } else this.#small = -1;
    if (n === 0) {
      this.#s = S.BulkCrlf;
      this.#crlf = 0;
    } else this.#s = S.Bulk;
  }

  #inline(h: RespHandler): void {
    const text = String.fromCharCode(...this.#inlineLine).trim();
    this.#s = S.Start;
    if (text === "") return;
    const args = text.split(/\s+/);
    h.begin(args.length);
    for (const a of args) {
      const b = new TextEncoder().encode(a);
      h.arg(b, 0, b.length);
    }
    this.#ended = true;
    h.end();
  }

  /** The line from `from` as an integer (-?[0-9]{1,12}), or null. No strings made: hot path. */
  #int(from: number): number | null {
    const l = this.#line;
    const end = this.#lineLen;
    let i = from;
    const neg = i < end && l[i] === 0x2d; /* - */
    if (neg) i++;
    const digits = end - i;
    if (digits < 1 || digits > 12) return null;
    let v = 0;
    for (; i < end; i++) {
      const d = l[i]! - 0x30;
      if (d < 0 || d > 9) return null;
      v = v * 10 + d;
    }
    return neg ? -v : v;
  }

  #error(h: RespHandler, message: string): void {
    this.#dead = true;
    h.error(message);
  }
}

const enc = new TextEncoder();
/** RESP2 replies. */
export const resp = {
  ok: () => enc.encode("+OK\r\n"),
  simple: (s: string) => enc.encode(`+${s}\r\n`),
  error: (s: string) => enc.encode(`-${s}\r\n`),
  int: (n: number) => enc.encode(`:${n}\r\n`),
  nil: () => enc.encode("$-1\r\n"),
  /** The header of a bulk string whose bytes are sent separately (e.g. from PM), then "\r\n". */
  bulkHead: (len: number) => enc.encode(`$${len}\r\n`),
  bulk: (b: Uint8Array | string) => {
    const bytes = typeof b === "string" ? enc.encode(b) : b;
    const head = enc.encode(`$${bytes.length}\r\n`);
    const out = new Uint8Array(head.length + bytes.length + 2);
    out.set(head);
    out.set(bytes, head.length);
    out.set([13, 10], head.length + bytes.length);
    return out;
  },
  arrayHead: (n: number) => enc.encode(`*${n}\r\n`),
  crlf: () => Uint8Array.of(13, 10),
};

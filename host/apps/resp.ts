// Incremental RESP2 request parser (the Redis protocol) over zero-copy chunks. Commands are
// arrays of bulk strings (what redis-cli and redis-benchmark send), or inline commands. Short
// arguments (keys, options) come out as small copies; long ones (values) as (offset, length)
// ranges of the chunk being fed, so a server can keep the PM buffers they live in and log
// their names instead of copying them.

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

const enum S {
  Start,
  ArrayLen,
  BulkHeader,
  Bulk,
  BulkCrlf,
  Inline,
}

export class RespParser {
  readonly smallMax: number;
  readonly maxBulk: number;
  readonly maxArgs: number;
  #s = S.Start;
  #line: number[] = [];
  #argsLeft = 0;
  #bulkLeft = 0;
  #bulkTotal = 0;
  #small: Uint8Array | null = null;
  #smallAt = 0;
  #crlf = 0;
  #dead = false;

  constructor(opts: RespParserOptions = {}) {
    this.smallMax = opts.smallMax ?? 64;
    this.maxBulk = opts.maxBulk ?? 512 * 1024 * 1024;
    this.maxArgs = opts.maxArgs ?? 1024 * 1024;
  }

  get dead(): boolean {
    return this.#dead;
  }

  feed(chunk: Uint8Array, emit: (ev: RespEvent) => void): void {
    let i = 0;
    while (i < chunk.length && !this.#dead) {
      switch (this.#s) {
        case S.Start: {
          const c = chunk[i]!;
          if (c === 0x2a /* * */) {
            this.#s = S.ArrayLen;
            this.#line.length = 0;
            i++;
          } else if (c === 13 || c === 10)
            i++; // stray line ends between commands
          else {
            this.#s = S.Inline;
            this.#line.length = 0;
          }
          break;
        }
        case S.ArrayLen:
        case S.BulkHeader:
        case S.Inline: {
          const c = chunk[i++]!;
          if (c !== 10) {
            if (this.#line.length >= (this.#s === S.Inline ? 65536 : 32))
              return this.#error(emit, this.#s === S.Inline ? "too big inline request" : "invalid length");
            this.#line.push(c);
            break;
          }
          if (this.#line[this.#line.length - 1] === 13) this.#line.pop();
          if (this.#s === S.Inline) this.#inline(emit);
          else if (this.#s === S.ArrayLen) this.#arrayLen(emit);
          else this.#bulkHeader(emit);
          this.#line.length = 0;
          break;
        }
        case S.Bulk: {
          const n = Math.min(this.#bulkLeft, chunk.length - i);
          if (this.#small) {
            this.#small.set(chunk.subarray(i, i + n), this.#smallAt);
            this.#smallAt += n;
          } else emit({ kind: "part", offset: i, length: n, total: this.#bulkTotal });
          this.#bulkLeft -= n;
          i += n;
          if (this.#bulkLeft === 0) {
            this.#s = S.BulkCrlf;
            this.#crlf = 0;
          }
          break;
        }
        case S.BulkCrlf: {
          const c = chunk[i++]!;
          if (c !== (this.#crlf === 0 ? 13 : 10)) return this.#error(emit, "expected CRLF after a bulk string");
          if (++this.#crlf === 2) {
            if (this.#small) emit({ kind: "arg", bytes: this.#small });
            else emit({ kind: "argEnd" });
            this.#small = null;
            this.#nextArg(emit);
          }
          break;
        }
      }
    }
  }

  #arrayLen(emit: (ev: RespEvent) => void): void {
    const n = this.#int();
    if (n === null || n > this.maxArgs) return this.#error(emit, "invalid multibulk length");
    if (n <= 0) {
      this.#s = S.Start; // an empty array is no command
      return;
    }
    emit({ kind: "begin", argc: n });
    this.#argsLeft = n;
    this.#s = S.BulkHeader;
    this.#line.length = 0;
  }

  #bulkHeader(emit: (ev: RespEvent) => void): void {
    if (this.#line[0] !== 0x24 /* $ */)
      return this.#error(emit, `expected '$', got '${String.fromCharCode(this.#line[0] ?? 32)}'`);
    const n = this.#int(1);
    if (n === null || n > this.maxBulk) return this.#error(emit, "invalid bulk length");
    this.#bulkTotal = n;
    this.#bulkLeft = n;
    this.#small = n <= this.smallMax ? new Uint8Array(n) : null;
    this.#smallAt = 0;
    if (n === 0) {
      this.#s = S.BulkCrlf;
      this.#crlf = 0;
    } else this.#s = S.Bulk;
  }

  #nextArg(emit: (ev: RespEvent) => void): void {
    if (--this.#argsLeft > 0) this.#s = S.BulkHeader;
    else {
      this.#s = S.Start;
      emit({ kind: "end" });
    }
  }

  #inline(emit: (ev: RespEvent) => void): void {
    const text = String.fromCharCode(...this.#line).trim();
    this.#s = S.Start;
    if (text === "") return;
    const args = text.split(/\s+/);
    emit({ kind: "begin", argc: args.length });
    for (const a of args) emit({ kind: "arg", bytes: new TextEncoder().encode(a) });
    emit({ kind: "end" });
  }

  /** The line from `from` as an integer (-?[0-9]{1,12}), or null. No strings made: hot path. */
  #int(from = 0): number | null {
    const l = this.#line;
    let i = from;
    const neg = l[i] === 0x2d; /* - */
    if (neg) i++;
    const digits = l.length - i;
    if (digits < 1 || digits > 12) return null;
    let v = 0;
    for (; i < l.length; i++) {
      const d = l[i]! - 0x30;
      if (d < 0 || d > 9) return null;
      v = v * 10 + d;
    }
    return neg ? -v : v;
  }

  #error(emit: (ev: RespEvent) => void, message: string): void {
    this.#dead = true;
    emit({ kind: "error", message });
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

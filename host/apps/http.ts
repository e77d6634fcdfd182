// Incremental HTTP/1.1 request parser over zero-copy chunks. Request heads are parsed from a
// small copy of the header bytes (at most maxHeaderBytes: a named copy); bodies are never
// copied: they come out as (offset, length) ranges of the chunk being fed, so a server can keep
// the PM buffers they live in and log their names. Keep-alive and pipelining: one parser per
// connection, any number of requests per chunk.
//
// Framing (RFC 9112 §6): a body is Content-Length bytes or a chunked body (§7.1), whose chunk
// data comes out as ranges too (never the size lines, extensions, CRLFs or trailers). Anything
// that could make this parser and another one (a proxy in front) disagree on where a request
// ends is a fatal error, so that no request can be smuggled past the other (§11.2).

export interface HttpHead {
  method: string;
  target: string;
  version: "1.0" | "1.1";
  /** Header names lower-cased; repeated headers joined with ", ". */
  headers: Map<string, string>;
  /** The declared Content-Length (0 when absent); -1 for a chunked body (known at its "end"). */
  contentLength: number;
  /** Transfer-Encoding: chunked. Its body events carry the chunk data only. */
  chunked: boolean;
  /** Expect: 100-continue on an HTTP/1.1 request: the client may wait for CONTINUE (or a final
   * status) before it sends the body (RFC 9110 §10.1.1). */
  expectContinue: boolean;
  keepAlive: boolean;
}

export type HttpErrorStatus = 400 | 411 | 413 | 417 | 431 | 501 | 505;

/**
 * What feed() reports. Per request: "head", any number of "body" (ranges of the chunk being fed,
 * never empty), then "end"; or one non-fatal "error" instead (a refused request whose body, of
 * known length, is skipped: the next request parses); or a fatal "error" at any point, also after
 * a "head" and some "body" events (a malformed or too large chunked body), after which nothing
 * more comes and the connection must close.
 */
export type HttpEvent =
  | { kind: "head"; head: HttpHead }
  | { kind: "body"; offset: number; length: number }
  | { kind: "end" }
  | { kind: "error"; status: HttpErrorStatus; message: string; fatal: boolean };

export interface HttpParserOptions {
  /** Bound on the request head, and on the head and the trailer fields of a chunked body. */
  maxHeaderBytes?: number;
  /** Bound on a body: its Content-Length, or the sum of its chunk sizes. */
  maxBodyBytes?: number;
}

/** The one "end" event (it carries nothing, so every request shares it). */
const END: HttpEvent = Object.freeze({ kind: "end" });

/** The interim response to send when a request's head has expectContinue and its body is wanted. */
export const CONTINUE = "HTTP/1.1 100 Continue\r\n\r\n";

/** Longest chunk-size line, chunk extensions and CRLF included. */
const MAX_CHUNK_LINE = 1024;

const CR = 13;
const LF = 10;
const SP = 32;
const HTAB = 9;
const COLON = 58;
/** tchar (RFC 9110 §5.6.2) as a character class: the one definition the expressions and TCHAR use. */
const TCHAR_CLASS = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]";
const TOKEN = new RegExp(`^${TCHAR_CLASS}+$`);
/** Byte tables: tchar (RFC 9110 §5.6.2); octets a field value may not hold, CTLs but HTAB (RFC
 * 9110 §5.5, RFC 9112 §2.2: a bare CR too); octets of a request-target (no CTL, SP or DEL;
 * obs-text passes here, the app judges the target); A-Z lower-cased. */
const TCHAR = new Uint8Array(256);
const BAD_VALUE = new Uint8Array(256);
const TARGET = new Uint8Array(256);
const LOWER = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  TCHAR[c] = TOKEN.test(String.fromCharCode(c)) ? 1 : 0;
  BAD_VALUE[c] = (c < 0x20 && c !== HTAB) || c === 0x7f ? 1 : 0;
  TARGET[c] = c > SP && c !== 0x7f ? 1 : 0;
  LOWER[c] = c >= 65 && c <= 90 ? c + 32 : c;
}
/** A Content-Length value: 1 to 15 digits (below 2^53). */
const DIGITS = /^\d{1,15}$/;
/** A trailer field line (RFC 9112 §5): no whitespace before the colon, no obs-fold. */
const FIELD_LINE = new RegExp(`^${TCHAR_CLASS}+:[\\t\\x20-\\x7e\\x80-\\xff]*$`);
/** chunk-ext after the chunk-size (RFC 9112 §7.1.1): *( BWS ";" BWS name [ BWS "=" BWS value ] ),
 * a value being a token or a quoted-string (RFC 9110 §5.6.4). */
const CHUNK_EXT = (() => {
  const t = `${TCHAR_CLASS}+`;
  const q = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t\\x20-\\x7e\\x80-\\xff])*"';
  return new RegExp(`^(?:[ \\t]*;[ \\t]*${t}(?:[ \\t]*=[ \\t]*(?:${t}|${q}))?)*$`);
})();

// parser states
const HEAD = 0; // reading a request head
const BODY = 1; // #left bytes of a Content-Length body
const SKIP = 2; // #left bytes of a refused body to discard
const SIZE = 3; // a chunk-size line
const DATA = 4; // #left bytes of chunk data
const DATA_CR = 5; // the CRLF after chunk data
const DATA_LF = 6;
const TRAILER = 7; // the trailer section, line by line, up to its empty line

export class HttpParser {
  readonly maxHeaderBytes: number;
  readonly maxBodyBytes: number;
  #head = new Uint8Array(0);
  #headLen = 0;
  #state = HEAD;
  /** Bytes left in the current BODY, SKIP or DATA. */
  #left = 0;
  /** Chunked: the sum of the chunk sizes so far. */
  #bodyTotal = 0;
  /** Chunked: head and trailer bytes so far, against maxHeaderBytes. */
  #headerBytes = 0;
  /** A chunk-size or trailer line split across chunks (a small copy of framing bytes). */
  #line = new Uint8Array(0);
  #lineLen = 0;
  /** The line #takeLine completed, CRLF included, or null. */
  #lineView: Uint8Array | null = null;
  #dead = false;

  constructor(opts: HttpParserOptions = {}) {
    this.maxHeaderBytes = opts.maxHeaderBytes ?? 8192;
    this.maxBodyBytes = opts.maxBodyBytes ?? 1 << 20;
  }

  /** True after a fatal error: the connection cannot be resynchronised and must close. */
  get dead(): boolean {
    return this.#dead;
  }

  /** A request is partly read: some of its head, or its head and not all of its body. */
  get partial(): boolean {
    return !this.#dead && (this.#state !== HEAD || this.#headLen > 0);
  }

  /** Parses `chunk`, calling `emit` for each event, in order. Body ranges index into `chunk`. */
  feed(chunk: Uint8Array, emit: (ev: HttpEvent) => void): void {
    let at = 0;
    while (at < chunk.length && !this.#dead) {
      switch (this.#state) {
        case SKIP: {
          const n = Math.min(this.#left, chunk.length - at);
          this.#left -= n;
          at += n;
          if (this.#left === 0) this.#state = HEAD;
          break;
        }
        case BODY: {
          const n = Math.min(this.#left, chunk.length - at);
          emit({ kind: "body", offset: at, length: n });
          this.#left -= n;
          at += n;
          if (this.#left === 0) {
            this.#state = HEAD;
            emit(END);
          }
          break;
        }
        case SIZE:
          at = this.#sizeLine(chunk, at, emit);
          break;
        case DATA: {
          const n = Math.min(this.#left, chunk.length - at);
          emit({ kind: "body", offset: at, length: n });
          this.#left -= n;
          at += n;
          if (this.#left === 0) this.#state = DATA_CR;
          break;
        }
        case DATA_CR:
        case DATA_LF:
          // chunk data ends in exactly CRLF (RFC 9112 §7.1): anything else means the size lied
          if (chunk[at] !== (this.#state === DATA_CR ? CR : LF))
            return this.#fatal(emit, 400, "chunk data not followed by CRLF");
          this.#state = this.#state === DATA_CR ? DATA_LF : SIZE;
          at++;
          break;
        case TRAILER:
          at = this.#trailerLine(chunk, at, emit);
          break;
        default: {
          // the head up to its blank line: parsed where it lies if the chunk holds all of it,
          // else accumulated
          const end = this.#findHeadEnd(chunk, at);
          const take = end < 0 ? chunk.length - at : end - at;
          if (this.#headLen + take > this.maxHeaderBytes)
            return this.#fatal(emit, 431, "request header fields too large");
          if (end >= 0 && this.#headLen === 0) {
            const from = at;
            at = end;
            this.#request(chunk, from, end, emit);
            break;
          }
          this.#append(chunk.subarray(at, at + take));
          at += take;
          if (end < 0) return;
          this.#request(this.#head, 0, this.#headLen, emit);
        }
      }
    }
  }

  /** Index just past the blank line ending the head, or -1. It may straddle the saved bytes. */
  #findHeadEnd(chunk: Uint8Array, from: number): number {
    const h = this.#head;
    const hl = this.#headLen;
    if (hl === 0) {
      // nothing saved: the same test on the chunk alone, LFs found by indexOf
      for (let i = chunk.indexOf(LF, from); i >= 0; i = chunk.indexOf(LF, i + 1)) {
        if (i > from && chunk[i - 1] === LF) return i + 1; // LF LF
        if (i - 1 > from && chunk[i - 1] === CR && chunk[i - 2] === LF) return i + 1; // (CR) LF CR LF
      }
      return -1;
    }
    // byte k positions before i in the stream [saved head bytes][chunk from `from`]
    const back = (i: number, k: number) => {
      const j = i - k;
      if (j >= from) return chunk[j]!;
      const s = hl - (from - j);
      return s >= 0 ? h[s]! : -1;
    };
    for (let i = from; i < chunk.length; i++) {
      if (chunk[i] !== LF) continue;
      if (back(i, 1) === LF) return i + 1; // LF LF
      if (back(i, 1) === CR && back(i, 2) === LF) return i + 1; // (CR) LF CR LF
    }
    return -1;
  }

  #append(bytes: Uint8Array): void {
    if (this.#headLen + bytes.length > this.#head.length) {
      const grown = new Uint8Array(Math.min(this.maxHeaderBytes, Math.max(256, (this.#headLen + bytes.length) * 2)));
      grown.set(this.#head.subarray(0, this.#headLen));
      this.#head = grown;
    }
    this.#head.set(bytes, this.#headLen);
    this.#headLen += bytes.length;
  }

  /**
   * Parses the head in b[from, end) (end: just past its blank line), byte by byte: the request
   * line, then each field line into `headers` (names lower-cased, values without their OWS).
   * Names and short values come from a small cache of strings (cachedString), so a head like the last
   * one makes no string but its target.
   */
  #request(b: Uint8Array, from: number, end: number, emit: (ev: HttpEvent) => void): void {
    this.#headerBytes = end - from;
    this.#headLen = 0;
    let i = from;
    // tolerate empty lines before a request line (RFC 9112 §2.2)
    for (;;) {
      if (i < end && b[i] === LF) i++;
      else if (i + 1 < end && b[i] === CR && b[i + 1] === LF) i += 2;
      else break;
    }
    // request-line = method SP request-target SP HTTP-version (RFC 9112 §3)
    let lf = lineEnd(b, i, end);
    let eol = lf > i && b[lf - 1] === CR ? lf - 1 : lf;
    let j = i;
    while (j < eol && ((b[j]! | 0x20) - 97) >>> 0 < 26) j++;
    const sp = j;
    if (sp === i || b[sp] !== SP) return this.#fatal(emit, 400, "malformed request line");
    j = sp + 1;
    while (j < eol && TARGET[b[j]!]) j++;
    const tEnd = j;
    if (tEnd === sp + 1 || tEnd + 9 !== eol || b[tEnd] !== SP || !isVersion(b, tEnd + 1))
      return this.#fatal(emit, 400, "malformed request line");
    if (b[tEnd + 6] !== 0x31) return this.#fatal(emit, 505, "HTTP version not supported");
    const version = b[tEnd + 8] === 0x30 ? "1.0" : "1.1";
    const method = methodName(b, i, sp);
    const target = latin1(b.subarray(sp + 1, tEnd));
    const headers = new Map<string, string>();
    for (i = lf + 1; i < end; i = lf + 1) {
      lf = lineEnd(b, i, end);
      eol = lf > i && b[lf - 1] === CR ? lf - 1 : lf;
      if (eol === i) continue;
      // name: tchar up to the colon; a space before it or a folded line fails here too (RFC 9112
      // §5.1, §5.2); its hash is taken on the way, for the string cache
      let c = i;
      let h = NAME_SEED;
      for (; c < eol; c++) {
        const x = b[c]!;
        if (x === COLON) break;
        if (!TCHAR[x]) {
          const colon = b.indexOf(COLON, c);
          return this.#fatal(emit, 400, colon > i && colon < eol ? "malformed header name" : "malformed header line");
        }
        h = Math.imul(h ^ LOWER[x]!, FNV_PRIME);
      }
      if (c === eol || c === i) return this.#fatal(emit, 400, "malformed header line");
      let vs = c + 1;
      let ve = eol;
      while (vs < ve && (b[vs] === SP || b[vs] === HTAB)) vs++;
      while (ve > vs && (b[ve - 1] === SP || b[ve - 1] === HTAB)) ve--;
      let hv = VALUE_SEED;
      for (let k = vs; k < ve; k++) {
        const x = b[k]!;
        if (BAD_VALUE[x]) return this.#fatal(emit, 400, "invalid character in a header value");
        hv = Math.imul(hv ^ x, FNV_PRIME);
      }
      const name = cachedString(b, i, c, true, h);
      const value = cachedString(b, vs, ve, false, hv);
      const had = headers.get(name);
      // RFC 9112 §3.2: more than one Host is a 400 (which one would a proxy have routed by?)
      if (had !== undefined && name === "host") return this.#fatal(emit, 400, "more than one Host header");
      headers.set(name, had === undefined ? value : `${had}, ${value}`);
    }
    if (version === "1.1" && !headers.has("host")) return this.#fatal(emit, 400, "missing Host header");

    // message body length (RFC 9112 §6.3)
    const te = headers.get("transfer-encoding");
    const cl = headers.get("content-length");
    let chunked = false;
    let contentLength = 0;
    if (te !== undefined) {
      // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing
      if (version === "1.0") return this.#fatal(emit, 400, "Transfer-Encoding in an HTTP/1.0 request");
      // RFC 9112 §6.1, §6.3 item 3, §11.2: both are a smuggling attempt or a broken client
      if (cl !== undefined) return this.#fatal(emit, 400, "both Transfer-Encoding and Content-Length");
      // only chunked alone is understood (RFC 9112 §6.1: 501 for a coding we do not know); a list
      // with chunked not last would be a 400 by §6.3 item 4, but either way the connection closes
      if (te.toLowerCase() !== "chunked")
        return this.#fatal(emit, 501, "transfer codings other than chunked are not implemented");
      chunked = true;
      contentLength = -1;
    } else if (cl !== undefined) {
      // RFC 9110 §8.6: a list of one repeated value may stand for that value; any other list, or
      // differing repeated fields, is invalid framing (RFC 9112 §6.3 item 5)
      const parts = DIGITS.test(cl) ? null : cl.split(",");
      const first = parts ? parts[0]!.trim() : cl;
      if (!DIGITS.test(first)) return this.#fatal(emit, 400, "bad Content-Length");
      for (let k = 1; parts && k < parts.length; k++)
        if (parts[k]!.trim() !== first) return this.#fatal(emit, 400, "differing Content-Length values");
      contentLength = Number(first);
    } else if (method === "POST" || method === "PUT") return this.#fatal(emit, 411, "Content-Length required");

    const conn = (headers.get("connection") ?? "").toLowerCase();
    const keepAlive = version === "1.1" ? !conn.includes("close") : conn.includes("keep-alive");

    // expectations (RFC 9110 §10.1.1): 100-continue, case-insensitive, ignored in HTTP/1.0
    let expectContinue = false;
    let unknown = false;
    const expect = headers.get("expect");
    for (const e of expect === undefined ? [] : expect.split(",")) {
      const x = e.trim();
      if (x.toLowerCase() === "100-continue") expectContinue = version === "1.1";
      else if (x !== "") unknown = true;
    }
    // the body of a refused request is skipped, unless its length is unknown (chunked) or the
    // client may be waiting for 100 Continue before it sends it
    if (unknown) return this.#refuse(emit, 417, "unsupported expectation", chunked || expectContinue, contentLength);

    if (contentLength > this.maxBodyBytes)
      // a client waiting for 100 Continue may never send the body: skipping it could swallow the
      // next request, so the connection closes
      return this.#refuse(
        emit,
        413,
        `body of ${contentLength} bytes exceeds ${this.maxBodyBytes}`,
        expectContinue,
        contentLength,
      );

    emit({
      kind: "head",
      head: { method, target, version, headers, contentLength, chunked, expectContinue, keepAlive },
    });
    if (chunked) {
      this.#state = SIZE;
      this.#bodyTotal = 0;
    } else if (contentLength === 0) emit(END);
    else {
      this.#state = BODY;
      this.#left = contentLength;
    }
  }

  /** Refuses a request: fatal, or its body of known length (`skip` bytes) is skipped. */
  #refuse(emit: (ev: HttpEvent) => void, status: HttpErrorStatus, message: string, fatal: boolean, skip = 0): void {
    if (fatal) return this.#fatal(emit, status, message);
    emit({ kind: "error", status, message, fatal: false });
    if (skip > 0) {
      this.#state = SKIP;
      this.#left = skip;
    }
  }

  /**
   * Collects a line ending in LF: returns the index past the bytes it took, or -1 if the line
   * would exceed `limit` bytes. When the line is complete, #lineView holds it (line ending
   * included): in place in `chunk` if it is all there, else in #line. Otherwise #lineView is null.
   */
  #takeLine(chunk: Uint8Array, at: number, limit: number): number {
    const lf = chunk.indexOf(LF, at);
    const stop = lf < 0 ? chunk.length : lf + 1;
    if (this.#lineLen + stop - at > limit) return -1;
    if (lf >= 0 && this.#lineLen === 0) {
      this.#lineView = chunk.subarray(at, stop);
      return stop;
    }
    const need = this.#lineLen + stop - at;
    if (need > this.#line.length) {
      const grown = new Uint8Array(Math.max(64, need * 2));
      grown.set(this.#line.subarray(0, this.#lineLen));
      this.#line = grown;
    }
    this.#line.set(chunk.subarray(at, stop), this.#lineLen);
    this.#lineLen = need;
    if (lf < 0) this.#lineView = null;
    else {
      this.#lineView = this.#line.subarray(0, need);
      this.#lineLen = 0;
    }
    return stop;
  }

  /** chunk-size [ chunk-ext ] CRLF (RFC 9112 §7.1). */
  #sizeLine(chunk: Uint8Array, at: number, emit: (ev: HttpEvent) => void): number {
    const next = this.#takeLine(chunk, at, MAX_CHUNK_LINE);
    if (next < 0) {
      this.#fatal(emit, 400, `chunk-size line longer than ${MAX_CHUNK_LINE} bytes`);
      return chunk.length;
    }
    const line = this.#lineView;
    if (!line) return next;
    // CRLF only: a bare LF is where lenient parsers disagree (RFC 9112 §7.1 has no bare LF)
    const n = line.length - 2;
    if (n < 0 || line[n] !== CR) {
      this.#fatal(emit, 400, "chunk-size line not ended by CRLF");
      return next;
    }
    const size = chunkSize(line, n);
    if (size === BAD_SIZE) this.#fatal(emit, 400, "malformed chunk-size line");
    else if (size === OVERFLOW) this.#fatal(emit, 400, "chunk size overflows");
    else if (this.#bodyTotal + size > this.maxBodyBytes)
      this.#fatal(emit, 413, `chunked body exceeds ${this.maxBodyBytes} bytes`);
    else if (size === 0)
      this.#state = TRAILER; // the last-chunk
    else {
      this.#bodyTotal += size;
      this.#left = size;
      this.#state = DATA;
    }
    return next;
  }

  /** trailer-section CRLF (RFC 9112 §7.1.2): fields checked for syntax, counted, ignored. */
  #trailerLine(chunk: Uint8Array, at: number, emit: (ev: HttpEvent) => void): number {
    // the empty line ending the section always fits; field lines count against maxHeaderBytes
    const next = this.#takeLine(chunk, at, Math.max(2, this.maxHeaderBytes - this.#headerBytes));
    if (next < 0) {
      this.#fatal(emit, 431, "request header and trailer fields too large");
      return chunk.length;
    }
    const line = this.#lineView;
    if (!line) return next;
    const n = line.length - 2;
    if (n < 0 || line[n] !== CR) this.#fatal(emit, 400, "trailer line not ended by CRLF");
    else if (n === 0) {
      this.#state = HEAD;
      emit(END);
    } else if (!FIELD_LINE.test(latin1(line.subarray(0, n)))) this.#fatal(emit, 400, "malformed trailer field");
    else this.#headerBytes += line.length;
    return next;
  }

  #fatal(emit: (ev: HttpEvent) => void, status: HttpErrorStatus, message: string): void {
    this.#dead = true;
    this.#state = HEAD;
    emit({ kind: "error", status, message, fatal: true });
  }
}

const BAD_SIZE = -1;
const OVERFLOW = -2;

/**
 * The chunk-size at the start of b[0, n) (1*HEXDIG, then chunk extensions, which are checked and
 * ignored), BAD_SIZE, or OVERFLOW for more significant digits than a 64-bit size holds (what other
 * implementations would wrap or truncate). Sizes beyond 2^53 are inexact but above any body limit.
 */
function chunkSize(b: Uint8Array, n: number): number {
  let i = 0;
  let v = 0;
  let digits = 0;
  for (; i < n; i++) {
    const c = b[i]!;
    const l = c | 0x20;
    const d = c >= 48 && c <= 57 ? c - 48 : l >= 97 && l <= 102 ? l - 87 : -1;
    if (d < 0) break;
    if (digits > 0 || d > 0) digits++;
    v = v * 16 + d;
  }
  if (i === 0) return BAD_SIZE;
  if (i < n && !CHUNK_EXT.test(latin1(b.subarray(i, n)))) return BAD_SIZE;
  return digits > 16 ? OVERFLOW : v;
}

/** Index of the LF ending the line from `at`, or `end` if the head has none. */
function lineEnd(b: Uint8Array, at: number, end: number): number {
  const k = b.indexOf(LF, at);
  return k < 0 || k >= end ? end : k;
}

/** "HTTP/" DIGIT "." DIGIT at b[at] (RFC 9112 §2.3). */
function isVersion(b: Uint8Array, at: number): boolean {
  const digit = (c: number) => c >= 48 && c <= 57;
  return (
    b[at] === 0x48 &&
    b[at + 1] === 0x54 &&
    b[at + 2] === 0x54 &&
    b[at + 3] === 0x50 &&
    b[at + 4] === 0x2f &&
    digit(b[at + 5]!) &&
    b[at + 6] === 0x2e &&
    digit(b[at + 7]!)
  );
}

const METHODS = ["GET", "PUT", "POST", "HEAD", "DELETE", "OPTIONS", "PATCH"];

/** The method in b[s, e): one of METHODS' strings where it is one, else a new string. */
function methodName(b: Uint8Array, s: number, e: number): string {
  next: for (const m of METHODS) {
    if (m.length !== e - s) continue;
    for (let k = 0; k < m.length; k++) if (b[s + k] !== m.charCodeAt(k)) continue next;
    return m;
  }
  return latin1(b.subarray(s, e));
}

// Strings of recent field names and short values, in slots by a hash of their bytes (a name's
// lower-cased): heads on a connection, and from one client, repeat the same ones.
const STR_SLOTS = 256;
const STR_MAX = 40;
const strBytes = new Uint8Array(STR_SLOTS * STR_MAX);
const strLen = new Int32Array(STR_SLOTS).fill(-1);
const strName = new Uint8Array(STR_SLOTS);
const strs: string[] = new Array<string>(STR_SLOTS).fill("");

const NAME_SEED = 0x811c9dc5;
const VALUE_SEED = 0x9e3779b9;
const FNV_PRIME = 0x01000193;

/**
 * b[s, e) as a latin1 string, lower-cased (A-Z only) if `name`; from the cache when there. `h`
 * is the bytes' hash (FNV-1a from NAME_SEED over the lower-cased bytes of a name, from
 * VALUE_SEED over a value's), which the caller took while checking them.
 */
function cachedString(b: Uint8Array, s: number, e: number, name: boolean, h: number): string {
  const n = e - s;
  if (n > STR_MAX) {
    const t = latin1(b.subarray(s, e));
    return name ? t.toLowerCase() : t;
  }
  const slot = (h ^ (h >>> 16)) & (STR_SLOTS - 1);
  const at = slot * STR_MAX;
  hit: if (strLen[slot] === n && strName[slot] === (name ? 1 : 0)) {
    if (name) {
      for (let k = 0; k < n; k++) if (strBytes[at + k] !== LOWER[b[s + k]!]) break hit;
    } else for (let k = 0; k < n; k++) if (strBytes[at + k] !== b[s + k]) break hit;
    return strs[slot]!;
  }
  for (let k = 0; k < n; k++) strBytes[at + k] = name ? LOWER[b[s + k]!]! : b[s + k]!;
  const t = latin1(b.subarray(s, e));
  strs[slot] = name ? t.toLowerCase() : t;
  strLen[slot] = n;
  strName[slot] = name ? 1 : 0;
  return strs[slot]!;
}

const ascii = new TextDecoder("ascii"); // WHATWG: windows-1252, equal to latin1 below 0x80

function latin1(b: Uint8Array): string {
  let high = false;
  for (let i = 0; i < b.length; i++) if (b[i]! >= 0x80) high = true;
  if (!high) return ascii.decode(b); // the usual case: one native call
  let s = "";
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
}

/**
 * A Range header for one byte range (RFC 9110 §14.1.2), against a representation of `size`
 * bytes: "bytes=a-b" (b clipped to size - 1), "bytes=a-", "bytes=-n" (the last n bytes). The
 * result's `end` is exclusive. null: ignore the header and send the whole representation (invalid
 * syntax, another unit, or several ranges: RFC 9110 §14.2 lets a server ignore Range).
 * "unsatisfiable": answer 416 (a first-pos at or past size, a suffix of 0, or an empty
 * representation; RFC 9110 §14.1.3 would let a nonzero suffix of an empty one pass, but no 206
 * can carry an empty range).
 */
export function parseRange(value: string, size: number): { start: number; end: number } | "unsatisfiable" | null {
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`bad representation size ${size}`);
  const v = value.trim();
  const eq = v.indexOf("=");
  // range-unit is case-insensitive (RFC 9110 §14.1)
  if (eq < 0 || v.slice(0, eq).toLowerCase() !== "bytes") return null;
  // a range-set is a list: empty elements do not count (RFC 9110 §5.6.1)
  const specs = v
    .slice(eq + 1)
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (specs.length !== 1) return null;
  const m = /^(\d*)-(\d*)$/.exec(specs[0]!);
  if (!m) return null;
  const first = m[1]!;
  const last = m[2]!;
  if (first === "") {
    if (last === "") return null;
    const n = Number(last); // may be inexact past 2^53, but then above any size
    if (n === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - n), end: size };
  }
  // last-pos < first-pos makes the range-spec invalid (RFC 9110 §14.1.1): compare the digits
  if (last !== "" && compareDecimal(last, first) < 0) return null;
  const a = Number(first);
  if (a >= size) return "unsatisfiable";
  return { start: a, end: last === "" ? size : Math.min(Number(last), size - 1) + 1 };
}

function compareDecimal(x: string, y: string): number {
  const a = x.replace(/^0+/, "");
  const b = y.replace(/^0+/, "");
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  201: "Created",
  204: "No Content",
  206: "Partial Content",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  411: "Length Required",
  413: "Content Too Large",
  416: "Range Not Satisfiable",
  417: "Expectation Failed",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
  507: "Insufficient Storage",
};

/**
 * The status line and headers of a response (the body is sent separately, e.g. from PM).
 * `headers` are extra header lines (Content-Range, Accept-Ranges, ETag...) written after
 * Content-Type; a name that is not a token, the framing fields (Content-Length, Transfer-Encoding:
 * this function writes the framing) or a value holding CR, LF or NUL (RFC 9110 §5.5: a response
 * split in two) throw a TypeError. No Content-Length for 1xx and 204 (RFC 9110 §8.6).
 */
export function responseHead(
  status: number,
  bodyLength: number,
  opts: { close?: boolean; type?: string; headers?: [string, string][] } = {},
): string {
  let s = `HTTP/1.1 ${status} ${REASONS[status] ?? "Unknown"}\r\n`;
  if (status >= 200 && status !== 204) s += `Content-Length: ${bodyLength}\r\n`;
  if (opts.type) s += `Content-Type: ${fieldValue(opts.type)}\r\n`;
  for (const [name, value] of opts.headers ?? []) {
    if (!TOKEN.test(name)) throw new TypeError(`bad header name ${JSON.stringify(name)}`);
    const lower = name.toLowerCase();
    if (lower === "content-length" || lower === "transfer-encoding")
      throw new TypeError(`${name} is written by responseHead from bodyLength`);
    s += `${name}: ${fieldValue(value)}\r\n`;
  }
  if (opts.close) s += "Connection: close\r\n";
  return s + "\r\n";
}

function fieldValue(value: string): string {
  if (/[\r\n\0]/.test(value)) throw new TypeError(`header value holds CR, LF or NUL: ${JSON.stringify(value)}`);
  return value;
}

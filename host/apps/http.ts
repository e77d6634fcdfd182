// Incremental HTTP/1.1 request parser over zero-copy chunks. Request heads are parsed from a
// small copy of the header bytes (at most maxHeaderBytes: a named copy); bodies are never
// copied: they come out as (offset, length) ranges of the chunk being fed, so a server can keep
// the PM buffers they live in and log their names. Keep-alive and pipelining: one parser per
// connection, any number of requests per chunk.

export interface HttpHead {
  method: string;
  target: string;
  version: "1.0" | "1.1";
  /** Header names lower-cased; repeated headers joined with ", ". */
  headers: Map<string, string>;
  contentLength: number;
  keepAlive: boolean;
}

export type HttpEvent =
  | { kind: "head"; head: HttpHead }
  | { kind: "body"; offset: number; length: number }
  | { kind: "end" }
  | { kind: "error"; status: 400 | 411 | 413 | 431 | 501 | 505; message: string; fatal: boolean };

export interface HttpParserOptions {
  maxHeaderBytes?: number;
  maxBodyBytes?: number;
}

const CR = 13;
const LF = 10;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export class HttpParser {
  readonly maxHeaderBytes: number;
  readonly maxBodyBytes: number;
  #head = new Uint8Array(0);
  #headLen = 0;
  #bodyLeft = 0;
  /** Body bytes to discard (a refused body whose length is known: the connection survives). */
  #skipLeft = 0;
  #inBody = false;
  #dead = false;

  constructor(opts: HttpParserOptions = {}) {
    this.maxHeaderBytes = opts.maxHeaderBytes ?? 8192;
    this.maxBodyBytes = opts.maxBodyBytes ?? 1 << 20;
  }

  /** True after a fatal error: the connection cannot be resynchronised and must close. */
  get dead(): boolean {
    return this.#dead;
  }

  /** Parses `chunk`, calling `emit` for each event, in order. Body ranges index into `chunk`. */
  feed(chunk: Uint8Array, emit: (ev: HttpEvent) => void): void {
    let at = 0;
    while (at < chunk.length && !this.#dead) {
      if (this.#skipLeft > 0) {
        const n = Math.min(this.#skipLeft, chunk.length - at);
        this.#skipLeft -= n;
        at += n;
        continue;
      }
      if (this.#inBody) {
        const n = Math.min(this.#bodyLeft, chunk.length - at);
        emit({ kind: "body", offset: at, length: n });
        this.#bodyLeft -= n;
        at += n;
        if (this.#bodyLeft === 0) {
          this.#inBody = false;
          emit({ kind: "end" });
        }
        continue;
      }
      // accumulate header bytes up to the blank line
      const end = this.#findHeadEnd(chunk, at);
      const take = end < 0 ? chunk.length - at : end - at;
      if (this.#headLen + take > this.maxHeaderBytes) {
        this.#fatal(emit, 431, "request header fields too large");
        return;
      }
      this.#append(chunk.subarray(at, at + take));
      at += take;
      if (end < 0) return;
      this.#request(emit);
    }
  }

  /** Index just past the blank line ending the head, or -1. It may straddle the saved bytes. */
  #findHeadEnd(chunk: Uint8Array, from: number): number {
    const h = this.#head;
    const hl = this.#headLen;
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

  #request(emit: (ev: HttpEvent) => void): void {
    const text = latin1(this.#head.subarray(0, this.#headLen));
    this.#headLen = 0;
    const lines = text.split(/\r?\n/);
    // tolerate empty lines before a request line (RFC 9112 §2.2)
    while (lines.length && lines[0] === "") lines.shift();
    const m = /^([A-Za-z]+) (\S+) HTTP\/(\d)\.(\d)$/.exec(lines[0] ?? "");
    if (!m) return this.#fatal(emit, 400, "malformed request line");
    if (m[3] !== "1") return this.#fatal(emit, 505, "HTTP version not supported");
    const version = m[4] === "0" ? "1.0" : "1.1";
    const headers = new Map<string, string>();
    for (let k = 1; k < lines.length; k++) {
      const line = lines[k]!;
      if (line === "") continue;
      const c = line.indexOf(":");
      if (c <= 0) return this.#fatal(emit, 400, "malformed header line");
      const name = line.slice(0, c).toLowerCase();
      if (!TOKEN.test(name)) return this.#fatal(emit, 400, "malformed header name");
      const value = line.slice(c + 1).trim();
      headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
    }
    if (version === "1.1" && !headers.has("host")) return this.#fatal(emit, 400, "missing Host header");
    const te = headers.get("transfer-encoding");
    if (te !== undefined)
      return this.#fatal(
        emit,
        te.toLowerCase().includes("chunked") ? 411 : 501,
        "transfer codings are not supported: send Content-Length",
      );
    const cl = headers.get("content-length");
    let contentLength = 0;
    if (cl !== undefined) {
      if (!/^\d{1,15}$/.test(cl)) return this.#fatal(emit, 400, "bad Content-Length");
      contentLength = Number(cl);
    } else if (m[1] === "POST" || m[1] === "PUT") return this.#fatal(emit, 411, "Content-Length required");
    const conn = (headers.get("connection") ?? "").toLowerCase();
    const keepAlive = version === "1.1" ? !conn.includes("close") : conn.includes("keep-alive");
    if (contentLength > this.maxBodyBytes) {
      // refuse the body but stay in sync: its length is known
      emit({
        kind: "error",
        status: 413,
        message: `body of ${contentLength} bytes exceeds ${this.maxBodyBytes}`,
        fatal: false,
      });
      this.#skipLeft = contentLength;
      return;
    }
    emit({ kind: "head", head: { method: m[1]!, target: m[2]!, version, headers, contentLength, keepAlive } });
    if (contentLength === 0) emit({ kind: "end" });
    else {
      this.#inBody = true;
      this.#bodyLeft = contentLength;
    }
  }

  #fatal(emit: (ev: HttpEvent) => void, status: 400 | 411 | 413 | 431 | 501 | 505, message: string): void {
    this.#dead = true;
    emit({ kind: "error", status, message, fatal: true });
  }
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

const REASONS: Record<number, string> = {
  200: "OK",
  201: "Created",
  204: "No Content",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  411: "Length Required",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
  507: "Insufficient Storage",
};

/** The status line and headers of a response (the body is sent separately, e.g. from PM). */
export function responseHead(
  status: number,
  bodyLength: number,
  opts: { close?: boolean; type?: string } = {},
): string {
  return (
    `HTTP/1.1 ${status} ${REASONS[status] ?? "Unknown"}\r\n` +
    `Content-Length: ${bodyLength}\r\n` +
    (opts.type ? `Content-Type: ${opts.type}\r\n` : "") +
    (opts.close ? "Connection: close\r\n" : "") +
    "\r\n"
  );
}

// RESP2 reply encoding for the key-value store: the small replies it copies (status lines,
// integers, errors, short bulk strings, nested arrays). Values themselves go out from PM by name
// (conn.ts), only their `$<len>` head and the CRLF after them are encoded here.

const enc = new TextEncoder();

export const OK = enc.encode("+OK\r\n");
export const PONG = enc.encode("+PONG\r\n");
export const NIL = enc.encode("$-1\r\n");
export const CRLF = enc.encode("\r\n");
export const ZERO = enc.encode(":0\r\n");
export const ONE = enc.encode(":1\r\n");
export const EMPTY_BULK = enc.encode("$0\r\n\r\n");

export const E_INT = "ERR value is not an integer or out of range";
export const E_FLOAT = "ERR value is not a valid float";
export const E_SYNTAX = "ERR syntax error";

export const str = (s: string): Uint8Array => enc.encode(s);

/**
 * "-<message>\r\n". Messages quote the client's own bytes (an unknown command's name and
 * arguments, a bad protocol byte): a CR or LF there would end the line early and desynchronize
 * the client, so each becomes a space, as Redis does.
 */
export const errorLine = (msg: string): Uint8Array => enc.encode(`-${msg.replace(/[\r\n]/g, " ")}\r\n`);
export const simple = (s: string): Uint8Array => enc.encode(`+${s}\r\n`);
export const int = (n: number | bigint): Uint8Array => (n === 0 ? ZERO : n === 1 ? ONE : enc.encode(`:${n}\r\n`));

export const bulk = (s: string | Uint8Array): Uint8Array => {
  const b = typeof s === "string" ? enc.encode(s) : s;
  const h = enc.encode(`$${b.length}\r\n`);
  const out = new Uint8Array(h.length + b.length + 2);
  out.set(h);
  out.set(b, h.length);
  out.set(CRLF, h.length + b.length);
  return out;
};

/** `$<len>\r\n`, cached for the lengths values have (a GET's reply head: no encode per GET). */
const BULK_HEADS = new Map<number, Uint8Array>();
export const bulkHead = (len: number): Uint8Array => {
  let h = BULK_HEADS.get(len);
  if (!h) {
    h = enc.encode(`$${len}\r\n`);
    if (BULK_HEADS.size < 4096) BULK_HEADS.set(len, h);
  }
  return h;
};

export const arrayHead = (n: number): Uint8Array => enc.encode(`*${n}\r\n`);

/** A RESP2 array of nested strings/integers/arrays, encoded whole. */
export type Nested = string | number | Nested[];
export const nested = (v: Nested): string =>
  typeof v === "number"
    ? `:${v}\r\n`
    : typeof v === "string"
      ? `$${enc.encode(v).length}\r\n${v}\r\n`
      : `*${v.length}\r\n${v.map(nested).join("")}`;

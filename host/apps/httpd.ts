// The durable HTTP server (PASTE's demonstration), on the connection layer (conn.ts).
// PUT or POST /<key> keeps the body in the PM buffers it arrived in, of any size (up to
// maxBody, bounded by free pool space), logs their names under the key and answers 201 once the
// record is durable; GET /<key> streams the body straight from PM (no copy, under TCP
// backpressure), single byte ranges included (206, 416); HEAD; DELETE /<key>; GET / answers
// stats. Content-Length and chunked request bodies, Expect: 100-continue, the Content-Type kept
// as sent. HTTP/1.1 keep-alive and pipelining (replies in request order); 400, 404, 405, 411,
// 413, 417, 501, 505 and 507 as HTTP says, and the connection survives where HTTP allows.
// Plug it into a NicLoop: { onEvent: app.onEvent, onTurnEnd: app.onTurnEnd }.
//
// A stored object is [header, ...body]: the header (tag HTTPD_TAG) is a small range in the
// app's arena: "pmHT", u8 version 1, u8 0, u16 content-type length, then the content type.
// Records of earlier versions (tag 0) are the body alone, served as application/octet-stream.
// Sharded with loans (httpd-shard.ts), a body another worker keeps is a record of the header
// alone, version 2, the loan's descriptor (loan.ts) after the content type.

import type { PmLog } from "../log.js";
import type { BufferName } from "../pool.js";
import type { Item, ObjectRef, ObjectWriter } from "../object.js";
import { ITEM_NODE } from "../abi.js";
import type { Stack } from "../stack.js";
import { MetaArena } from "./arena.js";
import type { TlsTerminator } from "./tls.js";
import { Conn, ConnLayer, type Part } from "./conn.js";
import { CONTINUE, HttpParser, parseRange, responseHead, type HttpEvent, type HttpHead } from "./http.js";
import { FailureLimiter, safeEqual, type AuthLimitOptions } from "./auth.js";
import { HttpdShards, type Answer, type HttpdShardTransport, type RemoteHead, type Resolved } from "./httpd-shard.js";
import { decodeRemote, type RemoteValue } from "./loan.js";

/** Default largest body: 1 GiB (a larger one is answered 413). */
export const HTTPD_MAX_BODY = 1 << 30;
/** Record tag of objects with an httpd header. */
export const HTTPD_TAG = 1;
/** Longest Content-Type kept (a longer one is answered 400). */
export const HTTPD_MAX_TYPE = 255;
const HDR_MAGIC = [0x70, 0x6d, 0x48, 0x54]; // "pmHT"
const HDR_FIXED = 8;
/** Payload bytes per received buffer, at least: a TCP segment's worth less its headers (for the 507 estimate). */
const BYTES_PER_BUFFER = 1400;

const enc = new TextEncoder();
/**
 * Heads go out as latin1, byte for byte: the parser reads header values as latin1 (RFC 9110
 * §5.5: obs-text bytes are opaque), and a Content-Type stored and sent back keeps its bytes.
 */
const latin1 = (s: string): Uint8Array => {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
};
/** The heads sent most: 201 (stored) and 204 (deleted), kept open or closing; 100 Continue. */
const CREATED = [latin1(responseHead(201, 0)), latin1(responseHead(201, 0, { close: true }))] as const;
const DELETED = [latin1(responseHead(204, 0)), latin1(responseHead(204, 0, { close: true }))] as const;
const CONTINUE_BYTES = latin1(CONTINUE);
/** The append options of every object record. */
const TAGGED = Object.freeze({ tag: HTTPD_TAG });
const fromLatin1 = (b: Uint8Array): string => {
  let s = "";
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
};

interface Req {
  parser: HttpParser;
  head: HttpHead | null;
  key: string | null;
  /** The body being stored (PUT/POST accepted). */
  writer: ObjectWriter | null;
  type: string;
  /** A status to answer at the end of the request instead of storing (its body is discarded). */
  refuse: Refusal | null;
  /** Requests refused for a wrong token on this connection (their delay grows). */
  authFails: number;
  /** The parser's event handler for this connection (made at its first data). */
  emit: ((ev: HttpEvent) => void) | null;
  /** The buffer, and the chunk's offset in it, of the data being fed. */
  buf: number;
  off: number;
}

interface Refusal {
  status: number;
  text: string;
  headers?: [string, string][];
  /** Close after it (a wrong token: one guess per connection). */
  close?: boolean;
  /** Held until this time (the connection layer's clock): a wrong token's answer. */
  notBefore?: number;
}

/** The characters of a bearer token (RFC 6750 §2.1, b64token). */
export const BEARER_TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

export interface HttpdOptions {
  /** Free buffers a body may not take (default max(1024, 1/8 of the pool), at most half). */
  reserveBuffers?: number;
  /** Largest body in bytes (default HTTPD_MAX_BODY, 1 GiB). */
  maxBody?: number;
  /** Abort a connection whose request holds buffers after this long without data (default 30 s). */
  idleTimeoutMs?: number;
  /** HTTPS on `port` too (tls.ts); the plain `port` argument may then be 0 (none). */
  tls?: { port: number; terminator: TlsTerminator };
  /**
   * A bearer token (RFC 6750): PUT, POST, DELETE and every method but GET and HEAD need
   * `Authorization: Bearer <token>`; without it, 401 with `WWW-Authenticate: Bearer`. Default:
   * none (anyone may write).
   */
  token?: string | null;
  /** Reads (GET, HEAD, the stats at GET /) need the token too (default false: public reads). */
  privateReads?: boolean;
  /** How wrong tokens are slowed down (auth.ts FailureLimiter). */
  authLimits?: AuthLimitOptions;
  /**
   * The store sharded over workers (httpd-shard.ts, docs/scaling.md): this app owns the keys
   * whose hash names its index; requests for the others run on their owners. Default: none.
   */
  shards?: HttpdShardTransport | null;
}

export interface HttpdStats {
  requests: number;
  puts: number;
  gets: number;
  deletes: number;
  errors: number;
  /** Bodies refused with 507 because the pool's free buffers were down to the reserve. */
  full: number;
  /** Body bytes stored, and object bytes sent. */
  bytesIn: number;
  bytesOut: number;
  commits: number;
  connections: number;
  /** Connections reset for a stalled or trickled request (ConnLayerOptions.idleTimeoutMs). */
  idleAborts: number;
  /** Requests answered 401: no token, and a wrong one (wrong ones are delayed, then close). */
  unauthorized: number;
  authFailed: number;
  /** Sharded: requests of this worker's clients run by another worker, and run here for another's. */
  forwarded: number;
  served: number;
  /** Sharded, now: requests of this worker's clients in flight on others, and others' in progress here. */
  inFlight: number;
  serving: number;
  /** Sharded with loans: bodies of this worker's clients lent to their keys' owners (zero copy). */
  lent: number;
  /** Sharded with loans, now: bodies kept here for other workers' records (not keys). */
  loans: number;
  /** Sharded with loans: GETs of this worker's keys whose bodies another worker keeps (copied from its pool). */
  remoteReads: number;
  /** Sharded with loans: GETs of this worker's clients for bodies it lent (sent from its pool, by name). */
  ownReads: number;
}

export class HttpdApp {
  readonly stack: Stack;
  readonly log: PmLog;
  readonly layer: ConnLayer<Req>;
  readonly maxBody: number;
  /**
   * Buffers a body may not take: below this many free buffers, a PUT/POST is answered 507 and
   * nothing of it is kept, so that the NIC can always receive (a DELETE, a GET) and the server
   * never wedges on a full pool.
   */
  readonly reserveBuffers: number;
  readonly #stats = {
    requests: 0,
    puts: 0,
    gets: 0,
    deletes: 0,
    errors: 0,
    full: 0,
    bytesIn: 0,
    bytesOut: 0,
    unauthorized: 0,
    authFailed: 0,
  };
  readonly #token: string | null;
  readonly #privateReads: boolean;
  readonly #limiter: FailureLimiter;
  /** Where object headers are written (its current buffer is held even when no record names it). */
  readonly arena: MetaArena;
  #lastType = "";
  #lastTypeBytes: Uint8Array = new Uint8Array(0);
  /** The store sharded over workers (null: this app holds every key). */
  readonly shards: HttpdShards | null;

  constructor(stack: Stack, log: PmLog, port = 80, opts: HttpdOptions = {}) {
    this.stack = stack;
    this.log = log;
    const total = stack.pool.bufferCount;
    this.reserveBuffers = Math.min(opts.reserveBuffers ?? Math.max(1024, total >>> 3), total >>> 1);
    this.maxBody = opts.maxBody ?? HTTPD_MAX_BODY;
    this.#token = opts.token ?? null;
    if (this.#token !== null && !BEARER_TOKEN.test(this.#token))
      throw new RangeError(
        "pmstack: the token must be 1 or more of A-Z a-z 0-9 - . _ ~ + / (then = signs): RFC 6750's b64token",
      );
    if (opts.privateReads && this.#token === null) throw new RangeError("pmstack: private reads need a token");
    this.#privateReads = !!opts.privateReads;
    this.#limiter = new FailureLimiter(opts.authLimits);
    this.arena = new MetaArena(stack.pool);
    this.layer = new ConnLayer<Req>(
      stack,
      log,
      {
        open: () => ({
          parser: new HttpParser({ maxBodyBytes: this.maxBody }),
          head: null,
          key: null,
          writer: null,
          type: "",
          refuse: null,
          authFails: 0,
          emit: null,
          buf: 0,
          off: 0,
        }),
        data: (c, chunk, buf, off) => this.#data(c, chunk, buf, off),
        partial: (c) => c.state.parser.partial,
        close: (c) => {
          c.state.writer?.abort(); // an unfinished body leaves nothing behind
          c.state.writer = null;
        },
      },
      { idleTimeoutMs: opts.idleTimeoutMs, tls: opts.tls },
    );
    this.shards = opts.shards
      ? new HttpdShards(opts.shards, {
          stack,
          log,
          canHold: (bytes) => this.#canHold(bytes),
          pushCopy: (w, bytes) => this.arena.pushCopy(w, bytes),
          store: (key, type, w) => this.#store(key, type, w),
          storeRemote: (key, type, desc) => this.#storeRemote(key, type, desc),
          remoteOf: (record) => this.#remoteIn(record),
          resolve: (key, range) => this.#resolve(key, range),
          remove: (key) => this.#delete(key),
          answer: (d, a, close, head) => {
            if (a.status >= 400) this.#stats.errors++;
            if (a.status === 201) return d.fill([CREATED[close ? 1 : 0]]);
            if (a.status === 204) return d.fill([DELETED[close ? 1 : 0]]);
            const body = enc.encode(a.text);
            const h = latin1(responseHead(a.status, body.length, { close, type: "text/plain", headers: a.headers }));
            d.fill(head ? [h] : [h, body]);
          },
          head: (h, close) => latin1(responseHead(h.status, h.length, { close, type: h.type, headers: h.headers })),
          wakeConn: (c) => this.layer.wake(c as Conn<Req>),
          wake: () => stack.onCommand?.(),
        })
      : null;
    if (port) stack.listen(port, { backlog: 1024 });
    if (opts.tls) stack.listen(opts.tls.port, { backlog: 1024 });
  }

  onEvent = (ev: Parameters<ConnLayer<Req>["onEvent"]>[0]): void => this.layer.onEvent(ev);
  onTurnEnd = (): void => {
    // what other workers sent: answers go to our clients, requests run here (their writes join
    // this turn's group commit)
    this.shards?.beforeCommit();
    this.layer.onTurnEnd();
    // after the group commit: answers whose records are durable
    this.shards?.afterCommit();
  };

  get stats(): HttpdStats {
    const l = this.layer.stats;
    return {
      ...this.#stats,
      commits: l.commits,
      connections: l.connections,
      idleAborts: l.idleAborts,
      forwarded: this.shards?.stats.forwarded ?? 0,
      served: this.shards?.stats.served ?? 0,
      inFlight: this.shards?.inFlight ?? 0,
      serving: this.shards?.serving ?? 0,
      lent: this.shards?.stats.lent ?? 0,
      loans: this.shards?.loans ?? 0,
      remoteReads: this.shards?.stats.remoteReads ?? 0,
      ownReads: this.shards?.stats.ownReads ?? 0,
    };
  }

  /** Stops the connection layer's timer and releases the arena (the server is closing). */
  close(): void {
    this.layer.close();
    this.arena.close();
  }

  #data(c: Conn<Req>, chunk: Uint8Array, buf: number, off: number): void {
    const r = c.state;
    if (r.parser.dead) return;
    r.buf = buf;
    r.off = off;
    r.parser.feed(chunk, (r.emit ??= (h) => this.#event(c, h)));
  }

  /** One parser event of the data #data is feeding (in buffer r.buf from r.off). */
  #event(c: Conn<Req>, h: HttpEvent): void {
    const r = c.state;
    // a request that closes the connection is the last one: what was pipelined after it is
    // read and dropped, never run (RFC 9112 §9.6)
    if (c.closing) return;
    switch (h.kind) {
      case "head":
        this.#head(c, h.head);
        break;
      case "body":
        if (r.writer) {
          this.#stats.bytesIn += h.length;
          if (this.stack.pool.freeCount <= this.reserveBuffers) {
            // the pool is down to its reserve: nothing of this body is kept
            r.writer.abort();
            r.writer = null;
            this.#stats.full++;
            r.refuse = { status: 507, text: "the PM pool is full: DELETE keys or grow the pool\n" };
          } else r.writer.pushRange(r.buf, r.off + h.offset, h.length);
        }
        break;
      case "end":
        c.requestEnded();
        this.#end(c);
        break;
      case "error":
        c.requestEnded();
        r.writer?.abort();
        r.writer = null;
        this.#stats.errors++;
        this.#reply(c, h.status, h.message + "\n", h.fatal || !(r.head?.keepAlive ?? true), [], "text/plain", r.head);
        break;
    }
  }

  #head(c: Conn<Req>, h: HttpHead): void {
    const r = c.state;
    r.head = h;
    r.key = null;
    r.writer = null;
    r.refuse = null;
    this.#stats.requests++;
    if (this.#token !== null && (this.#privateReads || (h.method !== "GET" && h.method !== "HEAD"))) {
      r.refuse = this.#authorize(c, h);
      if (r.refuse) return this.#early(c);
    }
    if (h.method !== "PUT" && h.method !== "POST") {
      // a body on another method is read and discarded (the parser delivers it; no writer)
      return;
    }
    const key = decodeKey(h.target);
    if (key === null) {
      r.refuse = { status: 400, text: "bad key\n" };
      return this.#early(c);
    }
    const type = h.headers.get("content-type") ?? "application/octet-stream";
    if (type.length > HTTPD_MAX_TYPE) {
      r.refuse = { status: 400, text: `Content-Type longer than ${HTTPD_MAX_TYPE} bytes\n` };
      return this.#early(c);
    }
    if (!this.#canHold(h.contentLength > 0 ? h.contentLength : 0)) {
      this.#stats.full++;
      r.refuse = { status: 507, text: "the PM pool cannot hold this body: DELETE keys or grow the pool\n" };
      return this.#early(c);
    }
    r.key = key;
    r.type = type;
    r.writer = this.log.writer(this.log.maxNames - 1); // one item is the header
    if (h.expectContinue) c.reply([CONTINUE_BYTES]);
  }

  /** Whether a body of `bytes` may be taken, the reserve kept (an estimate: a TCP segment's payload per buffer). */
  #canHold(bytes: number): boolean {
    const need = bytes > 0 ? Math.ceil(bytes / BYTES_PER_BUFFER) * (1 + 1 / 200) + 8 : 8;
    return this.stack.pool.freeCount - need >= this.reserveBuffers;
  }

  /**
   * Checks `Authorization: Bearer <token>` (the scheme in any case, RFC 9110 §11.1): null when it
   * is the token; else the 401 to answer (RFC 6750 §3): no credentials, a challenge alone, and
   * the connection goes on; a wrong or malformed one, `error="invalid_token"`, held by the rate
   * limit and then closed (one guess per connection).
   */
  #authorize(c: Conn<Req>, h: HttpHead): Refusal | null {
    const v = h.headers.get("authorization");
    const realm = 'Bearer realm="pmstack"';
    this.#stats.unauthorized++;
    if (v === undefined)
      return { status: 401, text: "a bearer token is required\n", headers: [["WWW-Authenticate", realm]] };
    const m = /^bearer +(\S+) *$/i.exec(v);
    if (m && safeEqual(m[1]!, this.#token!)) {
      this.#stats.unauthorized--;
      c.state.authFails = 0;
      return null;
    }
    this.#stats.authFailed++;
    const now = this.layer.now();
    const delay = this.#limiter.failure(++c.state.authFails, now);
    return {
      status: 401,
      text: "invalid bearer token\n",
      headers: [["WWW-Authenticate", `${realm}, error="invalid_token"`]],
      close: true,
      notBefore: now + delay,
    };
  }

  /**
   * A refusal known from the head: with Expect: 100-continue the client has not sent the body
   * and may never: answer now and close (the parser cannot skip bytes that may not come);
   * otherwise the body is read and discarded, and the answer goes at its end.
   */
  #early(c: Conn<Req>): void {
    const r = c.state;
    if (!r.head?.expectContinue) return;
    const f = r.refuse!;
    r.refuse = null;
    this.#stats.errors++;
    this.#reply(c, f.status, f.text, true, f.headers, "text/plain", null, f.notBefore);
  }

  #end(c: Conn<Req>): void {
    const r = c.state;
    const h = r.head;
    if (!h) return;
    r.head = null;
    const close = !h.keepAlive;
    if (r.refuse) {
      const f = r.refuse;
      this.#stats.errors++;
      return this.#reply(c, f.status, f.text, close || !!f.close, f.headers, "text/plain", h, f.notBefore);
    }
    if (r.writer) {
      const w = r.writer;
      r.writer = null;
      const sh = this.shards;
      const to = sh ? sh.owner(r.key!) : 0;
      if (sh && to !== sh.index) {
        // another worker owns the key: the body goes there, its answer comes in this reply's place
        this.#stats.puts++;
        return sh.put(c as Conn<unknown>, to, r.key!, r.type, w, close);
      }
      try {
        this.#store(r.key!, r.type, w);
      } catch (e) {
        w.abort();
        this.#stats.errors++;
        return this.#reply(c, 507, `not stored: ${(e as Error).message}\n`, close);
      }
      this.#stats.puts++;
      return c.reply([CREATED[close ? 1 : 0]], close);
    }
    if (h.method === "GET" && (h.target === "/" || h.target === "")) return this.#statsReply(c, close);
    if (h.method === "GET" || h.method === "HEAD") return this.#get(c, h, close);
    if (h.method === "DELETE") {
      const key = decodeKey(h.target);
      if (key === null) return this.#reply(c, 400, "bad key\n", close);
      this.#stats.deletes++;
      const sh = this.shards;
      const to = sh ? sh.owner(key) : 0;
      if (sh && to !== sh.index) return sh.delete(c as Conn<unknown>, to, key, close);
      if (!this.#delete(key)) return this.#reply(c, 404, "not found\n", close);
      return c.reply([DELETED[close ? 1 : 0]], close);
    }
    this.#reply(c, 405, "method not allowed\n", close, [["Allow", "GET, HEAD, PUT, POST, DELETE"]]);
  }

  /** Appends `key -> [header, ...body]` (the header in the arena, the body where it arrived). */
  #store(key: string, type: string, w: ObjectWriter): void {
    const hn = this.#header(type, 1, null);
    const body = w.finish();
    this.#append(key, [hn, ...body.names]);
    w.release();
  }

  /** Appends `key -> [header naming another worker's loan]`: `desc` is the loan's descriptor. */
  #storeRemote(key: string, type: string, desc: Uint8Array): void {
    this.#append(key, [this.#header(type, 2, desc)]);
  }

  /** An object's header in the arena: version 1, or 2 with a loan's descriptor after the type. */
  #header(type: string, version: number, desc: Uint8Array | null): BufferName {
    const tb = this.#typeBytes(type);
    const hn = this.arena.take(HDR_FIXED + tb.length + (desc ? desc.length : 0));
    const v = this.stack.pool.viewName(hn);
    v.set(HDR_MAGIC);
    v[4] = version;
    v[5] = 0;
    v[6] = tb.length & 0xff;
    v[7] = tb.length >>> 8;
    v.set(tb, HDR_FIXED);
    if (desc) v.set(desc, HDR_FIXED + tb.length);
    return hn;
  }

  /** Appends an object record; a loan the old record named is released once this one is durable. */
  #append(key: string, names: BufferName[]): void {
    const old = this.#remoteAt(key);
    const seq = this.log.append(key, names, TAGGED);
    if (old) this.shards!.released(old, seq);
  }

  /** Deletes `key`: whether it was there (a loan its record named is released once that is durable). */
  #delete(key: string): boolean {
    const old = this.#remoteAt(key);
    const seq = this.log.delete(key);
    if (seq === null) return false;
    if (old) this.shards!.released(old, seq);
    return true;
  }

  /**
   * The loan the live record of `key` names, or null (only a sharded store with loans has such
   * records): read in the log's index, no object made (every PUT and DELETE asks).
   */
  #remoteAt(key: string): RemoteValue | null {
    if (!this.shards?.lending) return null;
    const log = this.log;
    const h = log.find(key);
    if (h < 0 || log.recordTag(h) !== HTTPD_TAG || log.recordItems(h) !== 1) return null;
    const lo = log.itemLow(h, 0);
    if ((lo >>> 16) & ITEM_NODE) return null;
    return this.#remoteInHeader(this.stack.pool.view(log.itemIndex(h, 0), lo >>> 16, lo & 0xffff));
  }

  /** The loan a record's object names (a version 2 header alone), or null. */
  #remoteIn(o: { tag: number; names: readonly Item[] }): RemoteValue | null {
    if (o.tag !== HTTPD_TAG || o.names.length !== 1 || o.names[0]!.height) return null;
    return this.#remoteInHeader(this.stack.pool.viewName(o.names[0]!));
  }

  /** The loan an object header names (version 2: the descriptor after the content type), or null. */
  #remoteInHeader(v: Uint8Array): RemoteValue | null {
    if (v.length < HDR_FIXED || v[4] !== 2) return null;
    const tl = v[6]! | (v[7]! << 8);
    return decodeRemote(v, HDR_FIXED + tl, v.length - HDR_FIXED - tl);
  }

  /** A Content-Type's latin1 bytes; the last one's are kept (clients send the same type). */
  #typeBytes(type: string): Uint8Array {
    if (type !== this.#lastType) {
      this.#lastType = type;
      this.#lastTypeBytes = latin1(type);
    }
    return this.#lastTypeBytes;
  }

  #get(c: Conn<Req>, h: HttpHead, close: boolean): void {
    const key = decodeKey(h.target);
    if (key === null) return this.#reply(c, 400, "bad key\n", close, [], "text/plain", h);
    this.#stats.gets++;
    const range = h.headers.get("range") ?? null;
    const sh = this.shards;
    const to = sh ? sh.owner(key) : 0;
    if (sh && to !== sh.index) return sh.get(c as Conn<unknown>, to, key, h.method === "HEAD", range, close);
    const r = this.#resolve(key, range);
    if (!("head" in r)) return this.#reply(c, r.status, r.text, close, r.headers, "text/plain", h);
    const head = latin1(
      responseHead(r.head.status, r.head.length, { close, type: r.head.type, headers: r.head.headers }),
    );
    const parts: Part[] = [head];
    if (h.method === "GET" && r.end > r.start) {
      if (r.remote) {
        // another worker keeps the body: copied from its pool as TCP takes it (the source ends the read)
        parts.push({ pull: this.shards!.source(r.remote, r.start, r.end, c as Conn<unknown>) });
        this.#stats.bytesOut += r.end - r.start;
        return c.reply(parts, close);
      }
      parts.push({ stream: r.obj!, start: r.start, end: r.end });
      this.#stats.bytesOut += r.end - r.start;
    }
    c.reply(parts, close);
    // the reply took its own pin (ConnLayer.reply)
    if (r.remote) this.shards!.endRead(r.remote);
    else if (r.obj) this.log.unpin(r.obj);
  }

  /**
   * A GET's answer for `key` (`range`: the Range header): the head's facts and the object's
   * bytes [start, end), the object pinned (unpin it when done); or the refusal (404, 416).
   */
  #resolve(key: string, range: string | null): Resolved | Answer {
    const obj = this.log.object(key);
    if (!obj) return { status: 404, text: "not found\n", headers: [] };
    let skip = 0;
    let type = "application/octet-stream";
    let remote: RemoteValue | null = null;
    if (obj.tag === HTTPD_TAG) {
      const hn = obj.names[0]!;
      const v = this.stack.pool.viewName(hn);
      const tl = v[6]! | (v[7]! << 8);
      type = fromLatin1(v.subarray(HDR_FIXED, HDR_FIXED + tl));
      skip = hn.length;
      if (v[4] === 2) {
        // the body is another worker's loan
        remote = this.#remoteIn(obj);
        if (!remote) return { status: 500, text: "the object's record is damaged\n", headers: [] };
      }
    }
    const size = remote ? remote.len : obj.length - skip;
    let status = 200;
    let start = 0;
    let end = size;
    const headers: [string, string][] = [["Accept-Ranges", "bytes"]];
    if (range !== null) {
      const r = parseRange(range, size);
      if (r === "unsatisfiable")
        return { status: 416, text: "range not satisfiable\n", headers: [["Content-Range", `bytes */${size}`]] };
      if (r) {
        status = 206;
        start = r.start;
        end = r.end;
        headers.push(["Content-Range", `bytes ${start}-${end - 1}/${size}`]);
      }
    }
    const head = { status, type, length: end - start, headers };
    if (remote) {
      if (!this.shards?.beginRead(remote))
        return { status: 503, text: "the worker that keeps this object is not reachable yet\n", headers: [] };
      return { head, obj: null, remote, start, end };
    }
    this.log.pin(obj);
    return { head, obj, start: skip + start, end: skip + end };
  }

  #statsReply(c: Conn<Req>, close: boolean): void {
    const s = JSON.stringify({
      ...this.stats,
      keys: this.log.size - (this.shards?.loans ?? 0),
      log: this.log.stats(),
      pool: this.stack.pool.counts(),
    });
    this.#reply(c, 200, s + "\n", close, [], "application/json");
  }

  /** A short reply with a text body (none for a HEAD request: its head alone, RFC 9110 §9.3.2). */
  #reply(
    c: Conn<Req>,
    status: number,
    text: string,
    close: boolean,
    headers: [string, string][] = [],
    type = "text/plain",
    req: HttpHead | null = null,
    notBefore = 0,
  ): void {
    const body = enc.encode(text);
    const head = latin1(responseHead(status, body.length, { close, type, headers }));
    c.reply(req?.method === "HEAD" ? [head] : [head, body], close, notBefore);
  }
}

function decodeKey(target: string): string | null {
  if (!target.startsWith("/") || target.length < 2 || target.length > 1025) return null;
  if (!target.includes("%")) return target.slice(1); // nothing to decode (and nothing malformed)
  try {
    return decodeURIComponent(target.slice(1));
  } catch {
    return null;
  }
}

// The durable HTTP server's application logic (PASTE's demonstration): POST /<key> keeps the
// body's PM buffers where the NIC put them, logs their names (PmLog) and answers 201 only once
// the turn's group commit made them durable; GET /<key> sends the body straight from the kept
// buffers (no copy); DELETE /<key>; GET / answers stats. HTTP/1.1 keep-alive and pipelining
// (replies in request order); 400, 404, 405, 411, 413 for bad requests, and the connection
// survives where HTTP allows. Plug it into a NicLoop: { onEvent: app.onEvent, onTurnEnd: app.onTurnEnd }.

import type { BufferName } from "../pool.js";
import type { PmLog } from "../log.js";
import { freeRefused, sendCopy, SendQueue } from "../paste.js";
import type { Stack, StackEvent } from "../stack.js";
import { HttpParser, responseHead, type HttpEvent, type HttpHead } from "./http.js";

/** Largest body: the names of one log record (64 buffers) hold at least 64 * 1400 bytes. */
export const HTTPD_MAX_BODY = 64 * 1024;

interface Reply {
  head: string;
  /** Small body bytes sent in the head's buffer (a copy: stats, error texts). */
  text?: string;
  /** Body parts sent from kept PM buffers, by name (no copy); one reference each is ours until
   * the send queue has them, so that a DELETE or overwrite committing first cannot free them. */
  names?: BufferName[];
  /** Waits for the group commit of this turn. */
  durable: boolean;
  close: boolean;
}

interface Conn {
  id: number;
  parser: HttpParser;
  head: HttpHead | null;
  body: BufferName[];
  bodyLen: number;
  replies: Reply[];
  /** Sends in stream order: refused ones go again on WRITABLE, and the FIN waits for all. */
  q: SendQueue;
  /** Buffers holding the body in progress: one reference each until the request ends. */
  held: number[];
  closing: boolean;
  closed: boolean;
}

export interface HttpdOptions {
  /** Free buffers a POST may not take (default max(1024, 1/8 of the pool), at most half). */
  reserveBuffers?: number;
}

export interface HttpdStats {
  requests: number;
  posts: number;
  gets: number;
  deletes: number;
  errors: number;
  /** POSTs refused with 507 because the pool's free buffers were down to the reserve. */
  full: number;
  commits: number;
  connections: number;
}

export class HttpdApp {
  readonly stack: Stack;
  readonly log: PmLog;
  readonly stats: HttpdStats = {
    requests: 0,
    posts: 0,
    gets: 0,
    deletes: 0,
    errors: 0,
    full: 0,
    commits: 0,
    connections: 0,
  };
  #conns = new Map<number, Conn>();
  #waiting = 0; // replies waiting for the group commit
  #enc = new TextEncoder();

  /**
   * Buffers a POST may not take: below this many free buffers, a POST is answered 507 and its
   * body is not kept, so that the NIC can always receive (a DELETE, a GET) and the server never
   * wedges on a full pool.
   */
  readonly reserveBuffers: number;

  constructor(stack: Stack, log: PmLog, port = 80, opts: HttpdOptions = {}) {
    this.stack = stack;
    this.log = log;
    const total = stack.pool.bufferCount;
    this.reserveBuffers = Math.min(opts.reserveBuffers ?? Math.max(1024, total >>> 3), total >>> 1);
    stack.listen(port, { backlog: 1024 });
  }

  onEvent = (ev: StackEvent): void => {
    switch (ev.type) {
      case "ACCEPTED":
        this.stats.connections++;
        this.#conns.set(ev.conn, {
          id: ev.conn,
          parser: new HttpParser({ maxBodyBytes: HTTPD_MAX_BODY }),
          head: null,
          body: [],
          bodyLen: 0,
          replies: [],
          q: new SendQueue(this.stack, ev.conn),
          held: [],
          closing: false,
          closed: false,
        });
        break;
      case "DATA":
        this.#data(ev);
        break;
      case "PEER_CLOSED": {
        const c = this.#conns.get(ev.conn);
        if (c) {
          c.closing = true;
          this.#flush(c);
        }
        break;
      }
      case "CLOSED":
      case "RESET": {
        const c = this.#conns.get(ev.conn);
        if (c) {
          c.q.drop();
          for (const r of c.replies) this.#release(r);
          for (const b of c.held) this.stack.pool.free(b);
          this.#conns.delete(ev.conn);
        }
        break;
      }
      case "SEND_REFUSED": {
        const c = this.#conns.get(ev.conn);
        // a refused buffer of a connection that is gone: app-owned header buffers go back
        if (c) c.q.refused({ index: ev.buf, offset: ev.off, length: ev.len });
        else freeRefused(this.stack, [{ index: ev.buf, offset: ev.off, length: ev.len }]);
        break;
      }
      case "WRITABLE": {
        const c = this.#conns.get(ev.conn);
        if (c) {
          c.q.writable();
          this.#flush(c);
        }
        break;
      }
    }
  };

  /** End of turn: one group commit for every POST and DELETE of the turn, then their replies. */
  onTurnEnd = (): void => {
    const commit = this.#waiting > 0;
    if (commit) {
      this.log.commit();
      this.stats.commits++;
      this.#waiting = 0;
    }
    for (const c of this.#conns.values()) {
      if (commit) {
        for (const r of c.replies) r.durable = false;
        this.#flush(c);
      }
      // every send of the turn has been taken or refused by now: queued ones and a FIN may go
      c.q.settle();
    }
  };

  #data(ev: StackEvent): void {
    const c = this.#conns.get(ev.conn);
    const pool = this.stack.pool;
    if (!c || c.parser.dead) {
      pool.free(ev.buf);
      return;
    }
    const { buf, off, len } = ev;
    const view = pool.view(buf, off, len);
    c.parser.feed(view, (h: HttpEvent) => {
      if (h.kind === "head") {
        c.head = h.head;
        c.body = [];
        c.bodyLen = 0;
      } else if (h.kind === "body") {
        c.body.push({ index: buf, offset: off + h.offset, length: h.length });
        c.bodyLen += h.length;
        if (c.held[c.held.length - 1] !== buf) {
          pool.ref(buf); // the body may end in a later chunk: keep this one until then
          c.held.push(buf);
        }
      } else if (h.kind === "end") {
        this.#request(c);
        for (const b of c.held) pool.free(b);
        c.held = [];
      } else {
        this.stats.errors++;
        this.#reply(c, h.status, h.message + "\n", h.fatal);
      }
    });
    pool.free(buf); // the log took its own references on body buffers it keeps
    this.stack.recvd(ev.conn, len);
  }

  #request(c: Conn): void {
    const h = c.head!;
    this.stats.requests++;
    const close = !h.keepAlive;
    const key = decodeKey(h.target);
    if (h.method === "GET" && (h.target === "/" || h.target === "")) {
      const s = JSON.stringify({
        ...this.stats,
        keys: this.log.size,
        log: this.log.stats(),
        pool: this.stack.pool.counts(),
      });
      return this.#reply(c, 200, s + "\n", close, "application/json");
    }
    if (key === null) return this.#reply(c, 400, "bad key\n", close);
    if (h.method === "POST" || h.method === "PUT") {
      if (this.stack.pool.freeCount < this.reserveBuffers) {
        this.stats.full++;
        return this.#reply(c, 507, "the PM pool is full: DELETE keys or grow the pool\n", close);
      }
      this.stats.posts++;
      this.log.append(key, c.body);
      this.#waiting++;
      c.replies.push({ head: responseHead(201, 0, { close }), durable: true, close });
      return this.#flush(c);
    }
    if (h.method === "GET") {
      this.stats.gets++;
      const names = this.log.get(key);
      if (!names) return this.#reply(c, 404, "not found\n", close);
      let n = 0;
      for (const x of names) {
        n += x.length;
        this.stack.pool.ref(x.index);
      }
      c.replies.push({
        head: responseHead(200, n, { close, type: "application/octet-stream" }),
        names,
        durable: false,
        close,
      });
      return this.#flush(c);
    }
    if (h.method === "DELETE") {
      this.stats.deletes++;
      if (this.log.delete(key) === null) return this.#reply(c, 404, "not found\n", close);
      this.#waiting++;
      c.replies.push({ head: responseHead(204, 0, { close }), durable: true, close });
      return this.#flush(c);
    }
    this.#reply(c, 405, "method not allowed\n", close);
  }

  #reply(c: Conn, status: number, text: string, close: boolean, type = "text/plain"): void {
    c.replies.push({ head: responseHead(status, text.length, { close, type }), text, durable: false, close });
    this.#flush(c);
  }

  /** Sends the replies that are ready, in request order; a durable one holds back the rest. */
  #flush(c: Conn): void {
    if (c.closed) return;
    while (c.replies.length && !c.replies[0]!.durable) {
      const r = c.replies.shift()!;
      sendCopy(c.q, this.#enc.encode(r.text ? r.head + r.text : r.head));
      for (const n of r.names ?? []) c.q.send(n, true); // the queue drops our reference
      if (r.close) {
        c.closing = true;
        for (const x of c.replies) this.#release(x);
        c.replies.length = 0;
      }
    }
    if (c.closing && c.replies.length === 0) {
      c.closed = true;
      c.q.close(); // the FIN follows every queued byte
    }
  }

  /** A reply that will not be sent: our references on its body's buffers go. */
  #release(r: Reply): void {
    for (const n of r.names ?? []) this.stack.pool.free(n.index);
  }
}

function decodeKey(target: string): string | null {
  if (!target.startsWith("/") || target.length < 2 || target.length > 1025) return null;
  try {
    return decodeURIComponent(target.slice(1));
  } catch {
    return null;
  }
}

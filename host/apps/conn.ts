// The connection layer both applications (httpd, kv) stand on: one place for what every
// durable request/response server over the stack needs, written once.
//
// - The event switch: accepted, data, peer closed, closed/reset, refused sends, writable.
// - Replies in request order, each held until the log records it might show are durable: a
//   reply waits for the log's newest sequence number at the time it was queued (a write's own
//   record, or any other connection's write it may have observed), so nothing is ever shown
//   to a client that a crash could take back.
// - The group commit at the end of every turn (PmLog.flush): on PM the group is durable at
//   once; on a block device it is written by the journal's thread while the loop goes on, and
//   the replies leave in the first turn after it is durable (the log's onDurable wakes the loop).
// - Output: short replies are copied into one text buffer per connection (many replies, one
//   send); kept PM ranges go by name (no copy); objects of any size stream from PM under TCP
//   backpressure (at most the connection's free send space is handed to the core per turn,
//   the object pinned until the core holds every range), with bounded memory.
// - Window updates once the app consumed a chunk; an idle timeout for requests that hold
//   buffers (a client that trickles a body cannot pin the pool forever); release of every
//   reference on close.
// - TLS (tls.ts), on connections to the TLS port: ciphertext is copied out of the DATA event's
//   buffer into the connection's TlsChannel; the plaintext it gives back is copied into fresh PM
//   buffers and parsed at the turn's end (before the group commit) as DATA chunks are; replies
//   are written into the channel, and its ciphertext is copied into PM buffers and sent.

import { BUF_SIZE } from "../abi.js";
import { PmstackError } from "../errors.js";
import type { PmLog } from "../log.js";
import { ObjectCursor, type ObjectRef } from "../object.js";
import type { BufferName, Pool } from "../pool.js";
import { freeRefused, SendQueue, COMMAND_RESERVE } from "../paste.js";
import type { Stack, StackEvent } from "../stack.js";
import type { TlsChannel, TlsTerminator } from "./tls.js";

/** Bytes of headroom before the text of an outgoing buffer (the core writes headers there). */
const HEADROOM = 128;
const TEXT_CAP = BUF_SIZE - HEADROOM;
/**
 * Ranges shorter than this are copied into the text instead of sent by name: a TCP segment is
 * built from at most 64 buffer pieces (the core's limit), so tiny pieces would cut segments
 * short.
 */
export const MIN_BY_NAME = 64;

/** An object streamed from PM: bytes [start, end) of `obj`. The layer pins it while it is sent. */
export interface StreamPart {
  stream: ObjectRef;
  start: number;
  end: number;
}

/**
 * Bytes that arrive while a reply is sent (another worker's object, copied into this pool as it
 * comes): ranges are taken as the connection has room for them.
 */
export interface PullSource {
  /**
   * The next range, in a buffer of its own just written (copyIntoBuffers: the reply takes it
   * over, and the core after it), null at the end, or undefined while the next has not come:
   * the source then calls ConnLayer.wake(c) when it has.
   */
  next(): BufferName | null | undefined;
  /** The reply will not be sent (the connection is gone): drop what is held, stop fetching. */
  cancel(): void;
}

/** Bytes pulled from a source while the reply is sent. */
export interface PullPart {
  pull: PullSource;
}

/**
 * A piece of a reply: bytes to copy, a kept PM range sent by name (the reply owns one
 * reference on its buffer, handed over with it), an object to stream, or a source to pull.
 */
export type Part = Uint8Array | BufferName | StreamPart | PullPart;

/** Drops the references a reply's kept ranges hold, and its sources (a reply that will not be sent). */
export function freeNamedParts(pool: Pool, parts: Part[]): void {
  for (const p of parts) {
    if (p instanceof Uint8Array || "stream" in p) continue;
    if ("pull" in p) p.pull.cancel();
    else pool.free(p.index);
  }
}

/** A reply queued before its parts are known (Conn.defer): they come with fill(). */
export interface DeferredReply {
  /** Gives the reply its parts; it leaves in its place once the replies before it have. */
  fill(parts: Part[]): void;
}

/** A queued reply; once it is the one leaving, it is also the connection's Emitting (`cur`). */
interface Reply extends Emitting {
  /** The log's sequence number this reply waits for (0: none). */
  waitSeq: number;
  close: boolean;
  /** Not sent before this time (the layer's clock; 0: at once): a failed authentication's answer. */
  notBefore: number;
  /** Deferred, its parts not known yet: it and every later reply wait. */
  held: boolean;
}

/** #part's Emitting for parts sent outside a queued reply (plain ones: it is never set). */
const NO_EMITTING: Emitting = { parts: [], at: 0, stream: null, pull: null, close: false };

interface Streaming {
  obj: ObjectRef;
  cursor: ObjectCursor;
}

/** The reply being emitted: its parts go out in order; a stream or pull part holds back the rest. */
interface Emitting {
  parts: Part[];
  at: number;
  stream: Streaming | null;
  pull: PullSource | null;
  close: boolean;
}

export interface ConnStats {
  connections: number;
  /** Group commits started (log.flush with something to seal). */
  commits: number;
  refusedSends: number;
  /** Turns whose replies waited for room in the command ring. */
  ringWaits: number;
  /** Bytes sent from PM by name, and bytes copied into replies. */
  bytesByName: number;
  bytesCopied: number;
  /**
   * Connections aborted because a request stalled: no byte for idleTimeoutMs, or not complete
   * within idleTimeoutMs plus the time its bytes take at MIN_REQUEST_RATE (a slowloris).
   */
  idleAborts: number;
}

/** What an application provides: per-connection state and the handling of its bytes. */
export interface ConnHandlers<S> {
  /** A new connection: returns the app's state for it. */
  open(c: Conn<S>): S;
  /**
   * Received bytes: `chunk` views PM bytes [off, off + chunk.length) of buffer `buf`. The
   * buffer goes back to the pool when this returns: to keep a range, take a reference (an
   * ObjectWriter's push does).
   */
  data(c: Conn<S>, chunk: Uint8Array, buf: number, off: number): void;
  /** The connection is gone (closed, reset or aborted): release what its state holds. */
  close(c: Conn<S>): void;
  /**
   * A request is partly received: its first byte came, its end did not (asked after each
   * `data`). The request timeouts apply to it; an app calls `c.requestEnded()` as each request
   * ends, so that the next one is timed from its own start.
   */
  partial(c: Conn<S>): boolean;
}

export interface ConnLayerOptions {
  /**
   * Abort a connection whose request is partly received after this long without a byte, or
   * when it is not complete within this long plus 1 s per MIN_REQUEST_RATE bytes received of
   * it (a client trickling a request, slowloris) (default 30 s; 0: never).
   */
  idleTimeoutMs?: number;
  /** Clock for the idle timeout (default performance.now). */
  now?: () => number;
  /** TLS on connections accepted on `port` (tls.ts). */
  tls?: { port: number; terminator: TlsTerminator };
}

/**
 * Bytes per second a request must average, beyond its first idleTimeoutMs, to be let finish:
 * slow enough for any real client, far above a slowloris's byte every few seconds.
 */
export const MIN_REQUEST_RATE = 16 * 1024;

/** Ciphertext handed to the send queue and not yet taken by the core, at most, per connection. */
const TLS_QUEUED = 65536;

/** One connection, as the application sees it. */
export class Conn<S = unknown> {
  readonly id: number;
  state!: S;
  /** When the last byte came (the layer's clock). */
  lastData = 0;
  /** @internal When the request now partly received began (0: none), and its bytes so far. */
  reqSince = 0;
  /** @internal */ reqBytes = 0;
  /** @internal */ replies: Reply[] = [];
  /** @internal */ q: SendQueue;
  /** @internal */ unrecvd = 0;
  /** @internal */ out = -1;
  /** @internal */ outLen = 0;
  /** @internal */ outView: Uint8Array | null = null;
  /** @internal */ cur: Emitting | null = null;
  /** @internal */ peerClosed = false;
  /** The app asked to close (a reply with `close`): later replies are dropped. */
  closing = false;
  /** @internal */ finished = false;
  /** The connection is gone (closed or reset): nothing of it is queued any more. */
  gone = false;
  /** @internal */ idleAborted = false;
  /** The connection's TLS session (null: plain TCP). */
  tls: TlsChannel | null = null;
  /** @internal Decrypted bytes waiting for the turn's end, and the client's end of TLS after them. */
  plain: Buffer[] = [];
  /** @internal */ plainEnd = false;
  /** @internal Our close_notify is queued: the FIN follows the ciphertext. */
  tlsFinished = false;
  /** @internal */ holdTimer: ReturnType<typeof setTimeout> | null = null;
  #layer: ConnLayer<S>;

  constructor(layer: ConnLayer<S>, id: number) {
    this.#layer = layer;
    this.id = id;
    this.q = new SendQueue(layer.stack, id);
  }

  /**
   * Queues a reply; it leaves in order, once the log's records up to its newest one at this
   * moment are durable. `close`: the connection closes (FIN) after it, later replies dropped.
   * `notBefore` (the layer's clock, performance.now by default): it leaves no earlier, and
   * every later reply waits behind it (a failed authentication's answer, rate limited).
   */
  reply(parts: Part[], close = false, notBefore = 0): void {
    this.#layer.reply(this, parts, close, notBefore);
  }

  /**
   * Queues a reply whose parts come later (another worker's answer): it holds its place, and
   * every later reply waits behind it until fill(). It waits for no record of this log: the
   * one that answers it has made its own durable. `close` as in reply().
   */
  defer(close = false): DeferredReply {
    return this.#layer.defer(this, close);
  }

  /** A request ended (called by the app as it parses each one's end): see ConnHandlers.partial. */
  requestEnded(): void {
    this.reqSince = 0; // a request that begins in the same data is timed from that data
  }

  /** Resets the connection now (RST); its state is released by the close handler. */
  abort(): void {
    this.#layer.stack.abort(this.id);
  }

  /** Replies waiting (for durability, or for send space). */
  get pending(): number {
    return this.replies.length + (this.cur ? 1 : 0);
  }
}

export class ConnLayer<S> {
  readonly stack: Stack;
  readonly log: PmLog;
  readonly stats: ConnStats = {
    connections: 0,
    commits: 0,
    refusedSends: 0,
    ringWaits: 0,
    bytesByName: 0,
    bytesCopied: 0,
    idleAborts: 0,
  };
  readonly conns = new Map<number, Conn<S>>();
  readonly idleTimeoutMs: number;
  #h: ConnHandlers<S>;
  #now: () => number;
  /** Connections with work left for a later turn (window updates, replies, streams). */
  #pending = new Set<Conn<S>>();
  /**
   * Connections the end of a turn must visit: any that got data, a reply, a refusal or room to
   * send since it last had nothing left to do (no reply waiting, no stream, no window update
   * owed, its send queue settled). A turn costs nothing per idle connection.
   */
  #active = new Set<Conn<S>>();
  #sweep: ReturnType<typeof setInterval> | null = null;
  /** Connections with a request partly received: what the sweep looks at. */
  #partial = new Set<Conn<S>>();
  #kickScheduled = false;
  #tls: { port: number; terminator: TlsTerminator } | null;
  /** TLS connections with plaintext (or its end) waiting for the turn's end. */
  #tlsReady = new Set<Conn<S>>();
  #tlsKick = false;
  /** Objects whose stream ended, pinned until their connection's queue holds none of their ranges. */
  #unpin: { c: Conn<S>; obj: ObjectRef }[] = [];

  constructor(stack: Stack, log: PmLog, handlers: ConnHandlers<S>, opts: ConnLayerOptions = {}) {
    this.stack = stack;
    this.log = log;
    this.#h = handlers;
    this.#now = opts.now ?? (() => performance.now());
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 30_000;
    this.#tls = opts.tls ?? null;
    // records became durable outside a turn (the journal's thread): the replies they hold
    // leave in the next turn, which a command wakes
    log.onDurable = () => stack.onCommand?.();
    if (this.idleTimeoutMs > 0) {
      this.#sweep = setInterval(() => this.#sweepIdle(), Math.min(1000, this.idleTimeoutMs));
      this.#sweep.unref?.();
    }
  }

  /** Stops the idle sweep (the server is closing). */
  close(): void {
    if (this.#sweep) clearInterval(this.#sweep);
    this.#sweep = null;
    if (this.log.onDurable) this.log.onDurable = null;
    this.#tls?.terminator.close();
    for (const c of this.conns.values()) c.tls?.destroy();
  }

  onEvent = (ev: StackEvent): void => {
    switch (ev.type) {
      case "ACCEPTED": {
        this.stats.connections++;
        const c = new Conn<S>(this, ev.conn);
        c.lastData = this.#now();
        this.conns.set(ev.conn, c);
        // ACCEPTED: len is the local port, off the peer's
        if (this.#tls && ev.len === this.#tls.port) c.tls = this.#tlsOpen(c, ev);
        c.state = this.#h.open(c);
        break;
      }
      case "DATA":
        this.#data(ev);
        break;
      case "PEER_CLOSED": {
        const c = this.conns.get(ev.conn);
        if (c?.tls)
          c.tls.inputEnd(); // peerClosed once the channel has given its last plaintext
        else if (c) {
          c.peerClosed = true;
          this.#service(c);
        }
        break;
      }
      case "CLOSED":
      case "RESET": {
        const c = this.conns.get(ev.conn);
        if (c) this.#forget(c);
        break;
      }
      case "SEND_REFUSED": {
        const c = this.conns.get(ev.conn);
        const name = { index: ev.buf, offset: ev.off, length: ev.len };
        if (c) {
          // the queue keeps it (and a reply's reference on a kept range) until WRITABLE
          c.q.refused(name);
          this.#active.add(c);
          this.stats.refusedSends++;
        } else freeRefused(this.stack, [name]); // a text buffer of a connection that is gone
        break;
      }
      case "WRITABLE": {
        const c = this.conns.get(ev.conn);
        if (c) {
          c.q.writable();
          if (c.tls) this.#tlsFlush(c);
          this.#service(c);
        }
        break;
      }
    }
  };

  /**
   * End of turn: compaction if the log needs it and the group commit of the turn's writes;
   * then every connection's ready replies go out, streams are fed, send queues settle.
   */
  onTurnEnd = (): void => {
    // decrypted bytes are parsed here, inside the turn: their writes join this group commit
    if (this.#tlsReady.size) this.#tlsDrain();
    const log = this.log;
    if (log.lastSeq > log.durableSeq) log.maintain();
    // seals whatever the turn appended (records, or an upload's data arriving ahead of its
    // record): durable now on PM, or in flight on a block device
    if (log.flush()) this.stats.commits++;
    for (const c of this.#active) {
      // (c.out: text a reply sent outside a queued one left in its buffer: see reply())
      if (c.replies.length || c.cur || c.unrecvd || c.out >= 0) this.#service(c);
      if (c.tls && c.tls.cipherBytes) this.#tlsFlush(c);
      // every send of the turn has been taken or refused by now (see SendQueue.settle)
      if (!c.q.quiet) c.q.settle();
      if (!c.replies.length && !c.cur && !c.unrecvd && c.q.quiet && !c.tls?.cipherBytes) this.#active.delete(c);
    }
    this.#releasePins();
    // a ring too full for a window update: come back once the core has taken the commands
    if (this.#pending.size && !this.#kickScheduled) {
      this.#kickScheduled = true;
      setImmediate(() => {
        this.#kickScheduled = false;
        if (this.stack.pool.closed) return;
        for (const c of this.#pending) this.#service(c);
        this.stack.onCommand?.();
      });
    }
  };

  /** See Conn.reply. */
  /** The layer's clock (ms): the one `notBefore` is on. */
  now(): number {
    return this.#now();
  }

  reply(c: Conn<S>, parts: Part[], close: boolean, notBefore = 0): void {
    if (c.closing || c.finished) {
      freeNamedParts(this.stack.pool, parts);
      return;
    }
    const seq = this.log.lastSeq;
    // nothing ahead of it and nothing to wait for (the common answer to a read, or to a
    // pipeline of them): its parts go to the send queue now, as #service would at the chunk's end
    if (!close && notBefore === 0 && seq <= this.log.durableSeq && c.cur === null && c.replies.length === 0 && !c.tls) {
      let plain = true;
      for (const p of parts) if (!(p instanceof Uint8Array) && ("stream" in p || "pull" in p)) plain = false;
      if (plain) {
        for (const p of parts) this.#part(c, NO_EMITTING, p);
        this.#active.add(c);
        if (!c.q.blocked && !c.q.idle) this.stats.ringWaits++; // the rest at a later turn's end
        return;
      }
    }
    // an object to stream is pinned now, while it is live: by the time the reply may leave, a
    // later write of its key may have superseded and released it
    for (const p of parts) if (!(p instanceof Uint8Array) && "stream" in p) this.log.pin(p.stream);
    c.replies.push({
      parts,
      at: 0,
      stream: null,
      pull: null,
      waitSeq: seq > this.log.durableSeq ? seq : 0,
      close,
      notBefore,
      held: false,
    });
    this.#active.add(c);
    if (close) c.closing = true;
  }

  /** See Conn.defer. */
  defer(c: Conn<S>, close: boolean): DeferredReply {
    const dropped = c.closing || c.finished;
    const r: Reply = { parts: [], at: 0, stream: null, pull: null, waitSeq: 0, close, notBefore: 0, held: true };
    if (!dropped) {
      c.replies.push(r);
      this.#active.add(c);
      if (close) c.closing = true;
    }
    return {
      fill: (parts: Part[]) => {
        if (!r.held) throw new PmstackError("ESTATE", "pmstack: a deferred reply is filled once");
        r.held = false;
        // gone: #forget released every queued reply (a held one is never behind a closing reply:
        // that one makes later defers `dropped`)
        if (dropped || c.gone) return freeNamedParts(this.stack.pool, parts);
        for (const p of parts) if (!(p instanceof Uint8Array) && "stream" in p) this.log.pin(p.stream);
        r.parts = parts;
        this.wake(c);
      },
    };
  }

  /**
   * Connection `c` has something to send that it did not have at its last service (a deferred
   * reply filled, a pull source's next range): served at the turn's end, or at the next turn
   * (one is asked for) when this comes outside a turn.
   */
  wake(c: Conn<S>): void {
    if (c.gone) return;
    this.#active.add(c);
    this.stack.onCommand?.();
  }

  // ---- input --------------------------------------------------------------------------------

  #data(ev: StackEvent): void {
    const c = this.conns.get(ev.conn);
    const pool = this.stack.pool;
    if (!c || c.closing || c.finished) {
      pool.free(ev.buf);
      if (c) {
        c.unrecvd += ev.len;
        this.#service(c);
      } else this.stack.recvd(ev.conn, ev.len);
      return;
    }
    c.lastData = this.#now();
    if (c.tls) {
      // ciphertext: copied into the channel; its plaintext comes back to #tlsDrain
      try {
        c.tls.input(pool.view(ev.buf, ev.off, ev.len));
      } finally {
        pool.free(ev.buf);
      }
      // after the handshake (timed by the terminator), a record partly received is a request
      // partly received: a client trickling a record's bytes is timed like one trickling text
      // (the bytes counted are the ciphertext's: its plaintext is not counted again)
      if (c.tls.secure && !c.gone) this.#timeRequest(c, c.tls.midRecord || this.#h.partial(c), ev.len);
      c.unrecvd += ev.len;
      this.#service(c);
      return;
    }
    try {
      this.#dispatch(c, pool.view(ev.buf, ev.off, ev.len), ev.buf, ev.off);
    } finally {
      pool.free(ev.buf); // what the app keeps, it took its own references on
    }
    c.unrecvd += ev.len;
    this.#service(c);
  }

  // ---- TLS (tls.ts) ---------------------------------------------------------------------------

  #tlsOpen(c: Conn<S>, ev: StackEvent): TlsChannel {
    const peer = ev.family === 6 ? `[${ev.addr}]:${ev.off}` : `${ev.addr}:${ev.off}`;
    return this.#tls!.terminator.open(peer, {
      plain: (chunk) => {
        c.plain.push(chunk);
        this.#tlsWake(c);
      },
      end: () => {
        c.plainEnd = true;
        this.#tlsWake(c);
      },
      cipher: () => this.#tlsFlush(c),
      finished: () => {
        c.tlsFinished = true;
        this.#tlsFlush(c);
      },
      fail: () => {
        if (!c.gone) {
          c.plain = [];
          c.abort();
          this.stack.onCommand?.();
        }
      },
    });
  }

  /**
   * Plaintext (or its end) is waiting: parsed at the end of this turn, or, when it came outside
   * one (Node's tls answers on nextTick), in a turn the loop is woken for.
   */
  #tlsWake(c: Conn<S>): void {
    this.#tlsReady.add(c);
    if (this.#tlsKick) return;
    this.#tlsKick = true;
    setImmediate(() => {
      this.#tlsKick = false;
      if (this.#tlsReady.size && !this.stack.pool.closed) this.stack.onCommand?.();
    });
  }

  /** Hands waiting plaintext to the app: copied into fresh PM buffers, one DATA chunk each. */
  #tlsDrain(): void {
    const pool = this.stack.pool;
    for (const c of this.#tlsReady) {
      this.#tlsReady.delete(c);
      if (c.gone) continue;
      const chunks = c.plain;
      c.plain = [];
      for (const d of chunks) {
        if (c.closing || c.finished) break; // nothing after a closing reply runs
        c.lastData = this.#now();
        for (let at = 0; at < d.length && !c.gone && !c.tls!.dead;) {
          const n = Math.min(BUF_SIZE, d.length - at);
          if (pool.freeCount === 0) {
            // no buffer for the plaintext (the apps' reserves keep this from happening): the
            // connection cannot go on without losing bytes
            c.tls!.fail("no free PM buffer for the decrypted bytes: connection reset");
            break;
          }
          const buf = pool.alloc();
          const v = pool.view(buf, 0, n);
          v.set(d.subarray(at, at + n));
          at += n;
          try {
            this.#dispatch(c, v, buf, 0);
          } finally {
            pool.free(buf); // what the app keeps, it took its own references on
          }
        }
      }
      if (c.plainEnd && !c.gone) c.peerClosed = true;
      this.#service(c);
    }
  }

  /**
   * Ciphertext into PM buffers and the send queue, while the queue holds less than TLS_QUEUED
   * bytes the core has not taken; then, once our close_notify is out, the FIN.
   */
  #tlsFlush(c: Conn<S>): void {
    const t = c.tls;
    if (!t || c.gone) return;
    const pool = this.stack.pool;
    this.#active.add(c);
    // (with no free buffer, the ciphertext waits in the channel for a later turn's end)
    while (t.cipherBytes > 0 && c.q.queuedBytes() < TLS_QUEUED && pool.freeCount > 0) {
      const buf = pool.alloc();
      const n = t.readCipher(pool.view(buf, HEADROOM, TEXT_CAP));
      c.q.send({ index: buf, offset: HEADROOM, length: n });
    }
    if (c.tlsFinished && t.cipherBytes === 0 && !c.q.closeAfter && !c.q.closed) c.q.close();
  }

  // ---- output -------------------------------------------------------------------------------

  /**
   * Hands the replies that are ready on `c` to its send queue, in order (one waiting for
   * durability holds back the rest; so does a stream until the core has room for all of it),
   * reopens the receive window by what the app consumed (recvd), and closes after the last reply
   * when asked to.
   */
  #service(c: Conn<S>): void {
    if (c.finished) {
      this.#pending.delete(c);
      return;
    }
    this.#active.add(c);
    const stack = this.stack;
    if (c.unrecvd > 0 && stack.commandSpace() > 2) {
      stack.recvd(c.id, c.unrecvd);
      c.unrecvd = 0;
    }
    const durable = this.log.durableSeq;
    let sent = false;
    c.tls?.cork(); // with TLS, the replies of this call go out as few records
    for (;;) {
      const e = c.cur;
      if (e) {
        if (e.stream) {
          if (!this.#feed(c, e.stream.cursor, false)) break; // more when the core has room
          this.#unpin.push({ c, obj: e.stream.obj });
          e.stream = null;
        }
        if (e.pull) {
          if (!this.#feed(c, e.pull, true)) break; // more when the core has room, or the source has more
          e.pull = null;
        }
        while (e.at < e.parts.length && !e.stream && !e.pull) this.#part(c, e, e.parts[e.at++]!);
        if (e.stream || e.pull) continue;
        c.cur = null;
        sent = true;
        if (e.close) {
          for (const x of c.replies) this.#release(x.parts);
          c.replies.length = 0;
        }
      }
      const r = c.replies[0];
      if (!r || r.held || r.waitSeq > durable) break;
      if (r.notBefore > 0 && !this.#due(c, r.notBefore)) break;
      c.replies.shift();
      c.cur = r;
    }
    this.#sendOut(c);
    c.tls?.uncork();
    if (sent && !c.q.blocked && !c.q.idle) this.stats.ringWaits++; // the rest at a later turn's end
    if (c.replies.length === 0 && !c.cur && (c.closing || c.peerClosed) && !c.q.closeAfter && !c.tlsFinished) {
      c.finished = true;
      // the FIN follows every queued byte, once the core has taken them all (with TLS, after
      // our close_notify: #tlsFlush)
      if (c.tls) c.tls.end();
      else c.q.close();
    }
    // a window update the command ring had no room for needs a turn of its own; a stream goes
    // on in the turns its ACKs bring (or the loop's next one, when the ring was the limit)
    if (c.unrecvd > 0) this.#pending.add(c);
    else this.#pending.delete(c);
  }

  /** Whether a reply held until `at` may leave; if not, a timer services `c` then. */
  #due(c: Conn<S>, at: number): boolean {
    const wait = at - this.#now();
    if (wait <= 0) return true;
    if (!c.holdTimer) {
      c.holdTimer = setTimeout(() => {
        c.holdTimer = null;
        if (c.gone || this.stack.pool.closed) return;
        this.#service(c);
        this.stack.onCommand?.(); // a turn takes what it queued
      }, Math.ceil(wait));
      c.holdTimer.unref?.();
    }
    return false;
  }

  #part(c: Conn<S>, e: Emitting, p: Part): void {
    if (p instanceof Uint8Array) {
      this.#write(c, p);
      this.stats.bytesCopied += p.length;
    } else if ("stream" in p) {
      // pinned when the reply was queued (see reply())
      e.stream = { obj: p.stream, cursor: new ObjectCursor(this.stack.pool, p.stream, p.start, p.end) };
    } else if ("pull" in p) {
      e.pull = p.pull;
    } else if (c.tls) {
      this.#tlsPlain(c, this.stack.pool.viewName(p)); // read from PM into the TLS session
      this.stack.pool.free(p.index);
    } else if (p.length < MIN_BY_NAME) {
      this.#write(c, this.stack.pool.viewName(p));
      this.stats.bytesCopied += p.length;
      this.stack.pool.free(p.index);
    } else {
      this.#sendOut(c);
      this.stats.bytesByName += p.length;
      c.q.send(p, true); // the queue drops the reply's reference once the core holds its own
    }
  }

  /**
   * Feeds a stream's ranges (`s.cursor`, pinned with its object: `owned` false) or a pull
   * source's (each in a fresh buffer the reply owns: `owned` true): at most the connection's
   * free send space (the core would refuse the rest), and only while nothing waits in the send
   * queue. Returns true once every range was handed over; false when the core has no room, or
   * a pull source has nothing yet (it wakes the connection when it has).
   */
  #feed(c: Conn<S>, from: { next(): BufferName | null | undefined }, owned: boolean): boolean {
    if (!c.q.idle || c.q.blocked) return false;
    const stack = this.stack;
    const pool = stack.pool;
    let room = stack.sendRoom(c.id) - c.outLen;
    // with TLS, what the session and the send queue hold is on its way to that space
    if (c.tls) room -= c.tls.backlog + c.q.queuedBytes();
    while (room > 0 && stack.commandSpace() > COMMAND_RESERVE + 2) {
      const r = from.next();
      if (r === null) return true;
      if (r === undefined) return false;
      room -= r.length;
      if (c.tls) this.#tlsPlain(c, pool.viewName(r));
      else if (r.length < MIN_BY_NAME) {
        this.#write(c, pool.viewName(r));
        this.stats.bytesCopied += r.length;
      } else {
        this.#sendOut(c);
        this.stats.bytesByName += r.length;
        // a pinned range: the core takes its own reference when it accepts it; a fresh buffer
        // (a pull source's, as sendCopy's): the core takes it over
        c.q.send(r);
        continue;
      }
      if (owned) pool.free(r.index); // copied
    }
    return false;
  }

  /**
   * Unpins streamed objects once the core holds every range their connection sent: nothing of
   * it waits in the send queue (refused or not handed yet) and a poll has run over the last
   * send. A connection that closes with a FIN still has its queue to empty; only one that is
   * gone (closed or reset: its queue dropped, the core's own references released) unpins at once.
   */
  #releasePins(): void {
    if (this.#unpin.length === 0) return;
    let keep = 0;
    for (const f of this.#unpin) {
      const q = f.c.q;
      if (f.c.gone || (q.idle && !q.unconfirmed && !q.blocked)) this.log.unpin(f.obj);
      else this.#unpin[keep++] = f;
    }
    this.#unpin.length = keep;
  }

  /** Appends text to the connection's outgoing buffer, sending full ones. */
  #write(c: Conn<S>, bytes: Uint8Array): void {
    const pool = this.stack.pool;
    let at = 0;
    while (at < bytes.length) {
      if (c.out < 0) {
        c.out = pool.alloc();
        c.outLen = 0;
        c.outView = pool.view(c.out, HEADROOM, TEXT_CAP); // one view per buffer, not per reply
      }
      const n = Math.min(TEXT_CAP - c.outLen, bytes.length - at);
      const v = c.outView!;
      if (at === 0 && n === bytes.length) v.set(bytes, c.outLen);
      else v.set(bytes.subarray(at, at + n), c.outLen);
      c.outLen += n;
      at += n;
      if (c.outLen === TEXT_CAP) this.#sendOut(c);
    }
  }

  #sendOut(c: Conn<S>): void {
    if (c.out < 0) return;
    const name = { index: c.out, offset: HEADROOM, length: c.outLen };
    c.out = -1;
    c.outView = null;
    c.outLen = 0;
    if (name.length === 0) this.stack.pool.free(name.index);
    else if (c.tls) {
      c.tls.write(Buffer.from(this.stack.pool.viewName(name))); // the text, read from PM
      this.stack.pool.free(name.index);
    } else c.q.send(name);
  }

  /** Plaintext from PM into the connection's TLS session (copied), after the text before it. */
  #tlsPlain(c: Conn<S>, v: Uint8Array): void {
    this.#sendOut(c);
    c.tls!.write(Buffer.from(v));
    this.stats.bytesCopied += v.length;
  }

  /** Our references (and pins) in reply parts that will not be sent. */
  #release(parts: Part[]): void {
    const pool = this.stack.pool;
    for (const p of parts) {
      if (p instanceof Uint8Array) continue;
      if ("stream" in p) this.log.unpin(p.stream);
      else if ("pull" in p) p.pull.cancel();
      else pool.free(p.index);
    }
  }

  #forget(c: Conn<S>): void {
    const pool = this.stack.pool;
    c.q.drop();
    for (const r of c.replies) this.#release(r.parts);
    const e = c.cur;
    if (e) {
      if (e.stream) this.log.unpin(e.stream.obj);
      e.pull?.cancel();
      this.#release(e.parts.slice(e.at));
    }
    if (c.out >= 0) pool.free(c.out);
    c.tls?.destroy();
    c.plain = [];
    c.outView = null;
    c.replies = [];
    c.cur = null;
    c.out = -1;
    c.finished = true;
    c.gone = true;
    if (c.holdTimer) clearTimeout(c.holdTimer);
    c.holdTimer = null;
    this.#pending.delete(c);
    this.#active.delete(c);
    this.conns.delete(c.id);
    this.#partial.delete(c);
    this.#releasePins();
    this.#h.close(c);
  }

  /** Bytes to the app, then the request timing: a request partly received is timed from its first chunk. */
  #dispatch(c: Conn<S>, v: Uint8Array, buf: number, off: number): void {
    this.#h.data(c, v, buf, off);
    if (c.gone) return;
    // over TLS, a request already timed had its bytes counted as ciphertext when they came (#data)
    const bytes = c.tls && c.reqSince !== 0 ? 0 : v.length;
    this.#timeRequest(c, this.#h.partial(c) || (c.tls?.midRecord ?? false), bytes);
  }

  /** A request partly received is timed from its first bytes; one complete is not timed. */
  #timeRequest(c: Conn<S>, partial: boolean, bytes: number): void {
    if (partial) {
      if (c.reqSince === 0) {
        c.reqSince = this.#now();
        c.reqBytes = 0;
        this.#partial.add(c);
      }
      c.reqBytes += bytes;
    } else {
      c.reqSince = 0;
      this.#partial.delete(c);
    }
  }

  /** Aborts the connections whose request stalled or trickles (ConnLayerOptions.idleTimeoutMs). */
  #sweepIdle(): void {
    if (this.stack.pool.closed) return;
    const now = this.#now();
    const limit = this.idleTimeoutMs;
    let aborted = 0;
    for (const c of this.#partial) {
      if (c.gone || c.reqSince === 0) {
        this.#partial.delete(c);
        continue;
      }
      if (
        !c.idleAborted &&
        (now - c.lastData > limit || now - c.reqSince > limit + (c.reqBytes / MIN_REQUEST_RATE) * 1000)
      ) {
        c.idleAborted = true; // its RESET comes with the next turn: count it once
        this.stats.idleAborts++;
        c.abort();
        aborted++;
      }
    }
    if (aborted) this.stack.onCommand?.();
  }
}

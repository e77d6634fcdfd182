// httpd's object store sharded over workers (docs/scaling.md): a key belongs to worker
// keyHashSlot(key) % N (the hash kv's shards use). A request on a connection of one worker for
// a key another owns is run by the owner, and its answer goes out on the connection in the
// request's place (Conn.defer), so that pipelined requests are answered in order:
//   PUT/POST: the body is received as with one worker (into this worker's PM buffers, zero
//     copy); at its end it goes to the owner in pieces of SHARD_PIECE bytes, one piece in
//     flight (the owner acks each), so memory stays bounded whatever the body's size; the
//     owner copies each piece into buffers of its own pool and, at the last, logs the object
//     and answers once its record is durable. This worker's copy is then released.
//   GET/HEAD: the owner answers with the head's facts (status, type, length, range) and the
//     first piece; each next piece is asked for as this worker's copy of the one before starts
//     to be sent (at most two pieces held per connection); the pieces are copied into this
//     worker's buffers and sent from there (a PullSource).
//   DELETE: the owner deletes and answers once the deletion is durable.
// Messages are structured-cloned objects over one MessagePort per pair of workers, pieces in
// transferred ArrayBuffers, batched per turn: what a turn has for another worker leaves in one
// message at the turn's end, after the group commit (answers that show a record, a write's own
// or one a read observed, wait for it to be durable). A batch that comes is handled at the next
// turn's end, before the group commit.

import { ObjectCursor, type ObjectRef, type ObjectWriter } from "../object.js";
import { copyIntoBuffers } from "../paste.js";
import type { BufferName, Pool } from "../pool.js";
import type { Stack } from "../stack.js";
import type { PmLog } from "../log.js";
import type { Conn, DeferredReply, PullSource } from "./conn.js";
import { keyHashSlot } from "./kv/cluster.js";

/** Bytes of a body or object per message between workers. */
export const SHARD_PIECE = 1 << 20;

/** How a worker reaches the others (worker_threads MessagePorts in workers.ts; anything in tests). */
export interface HttpdShardTransport {
  readonly index: number;
  readonly count: number;
  send(to: number, msg: HttpdShardBatch, transfer: ArrayBuffer[]): void;
}

/** One turn's messages from one worker to another. */
export interface HttpdShardBatch {
  batch: HttpdShardMessage[];
}

/** What a GET's owner answers before the bytes: the reply's head facts. */
export interface RemoteHead {
  status: number;
  type: string;
  /** Body bytes that follow (the range's). */
  length: number;
  headers: [string, string][];
}

export type HttpdShardMessage =
  | { op: "put"; id: number; key: string; type: string; piece: ArrayBuffer; last: boolean }
  | { op: "get"; id: number; key: string; head: boolean; range: string | null }
  | { op: "delete"; id: number; key: string }
  | { op: "more"; id: number }
  | { op: "cancel"; id: number }
  | { op: "ack"; id: number }
  | { op: "done"; id: number; status: number; text: string; headers: [string, string][] }
  | { op: "meta"; id: number; head: RemoteHead; piece: ArrayBuffer | null; last: boolean }
  | { op: "data"; id: number; piece: ArrayBuffer; last: boolean };

/** A refusal or result the owner gives as status and text (404, 416, 507, 201, 204...). */
export interface Answer {
  status: number;
  text: string;
  headers: [string, string][];
}

/** What the sharded store needs of the app (HttpdApp). */
export interface HttpdShardHost {
  readonly stack: Stack;
  readonly log: PmLog;
  /** Whether a body of `bytes` more may be taken (the pool's reserve kept). */
  canHold(bytes: number): boolean;
  /** Copies `bytes` into buffers of this pool and pushes them onto `w`. */
  pushCopy(w: ObjectWriter, bytes: Uint8Array): void;
  /** Logs `key -> [header, ...w's object]` (the app's #store). */
  store(key: string, type: string, w: ObjectWriter): void;
  /** A GET's object and range (the object pinned), or the refusal to answer. */
  resolve(
    key: string,
    range: string | null,
  ): { head: RemoteHead; obj: ObjectRef | null; start: number; end: number } | Answer;
  /** Deletes `key`: whether it was there. */
  remove(key: string): boolean;
  /** Fills a deferred reply with an answer (a short text reply, as the app's #reply). */
  answer(d: DeferredReply, a: Answer, close: boolean, head: boolean): void;
  /** Builds a GET's reply head. */
  head(h: RemoteHead, close: boolean): Uint8Array;
  /** Connection `c` has more to send (ConnLayer.wake). */
  wakeConn(c: Conn<unknown>): void;
  /** A message came: a turn soon. */
  wake(): void;
}

export interface HttpdShardStats {
  /** Requests of this worker's clients run by another worker. */
  forwarded: number;
  /** Requests this worker ran for another worker's clients. */
  served: number;
}

/** A request of this worker's client in flight on another worker. */
type Outgoing =
  | {
      kind: "put";
      c: Conn<unknown>;
      d: DeferredReply;
      close: boolean;
      to: number;
      w: ObjectWriter;
      cursor: ObjectCursor;
      /** Body bytes not sent yet. */
      left: number;
      key: string;
      type: string;
    }
  | {
      kind: "get";
      c: Conn<unknown>;
      d: DeferredReply;
      close: boolean;
      to: number;
      head: boolean;
      src: RemoteSource | null;
      key: string;
      range: string | null;
    }
  | { kind: "delete"; c: Conn<unknown>; d: DeferredReply; close: boolean; to: number; key: string };

/** A request another worker's client made here, in progress. */
type Incoming =
  | { kind: "put"; w: ObjectWriter | null; key: string; type: string; refused: Answer | null }
  | { kind: "get"; obj: ObjectRef; cursor: ObjectCursor; left: number };

/** An answer owed to another worker once the log is durable up to `waitSeq`. */
interface Owed {
  to: number;
  msg: HttpdShardMessage;
  transfer: ArrayBuffer[];
  waitSeq: number;
}

const enc = new TextEncoder();

/** A worker's side of the sharded store. */
export class HttpdShards {
  readonly index: number;
  readonly count: number;
  readonly stats: HttpdShardStats = { forwarded: 0, served: 0 };
  #t: HttpdShardTransport;
  #h: HttpdShardHost;
  #nextId = 1;
  #out = new Map<number, Outgoing>();
  /** By sender, then its id. */
  #in: Map<number, Incoming>[];
  #inbox: { from: number; msg: HttpdShardMessage }[] = [];
  #owed: Owed[] = [];
  /**
   * Connections whose body is still going out piece by piece: their later requests wait here
   * (their replies' places taken already), so that a pipelined GET or DELETE of the key reaches
   * its owner after the whole PUT, as with one worker.
   */
  #behind = new Map<Conn<unknown>, number[]>();
  /** This turn's messages for each worker, and the buffers they hand over. */
  #outBox: { msgs: HttpdShardMessage[]; transfer: ArrayBuffer[] }[];

  constructor(t: HttpdShardTransport, h: HttpdShardHost) {
    if (!Number.isInteger(t.count) || t.count < 1 || !Number.isInteger(t.index) || t.index < 0 || t.index >= t.count)
      throw new RangeError(`pmstack: shard index ${t.index} of ${t.count}`);
    this.index = t.index;
    this.count = t.count;
    this.#t = t;
    this.#h = h;
    this.#in = Array.from({ length: t.count }, () => new Map());
    this.#outBox = Array.from({ length: t.count }, () => ({ msgs: [], transfer: [] }));
  }

  /** The worker that owns `key`. */
  owner(key: string): number {
    return this.count === 1 ? 0 : keyHashSlot(enc.encode(key)) % this.count;
  }

  /** Requests of this worker's clients in flight elsewhere, and requests run here for others. */
  get inFlight(): number {
    return this.#out.size;
  }
  get serving(): number {
    let n = 0;
    for (const m of this.#in) n += m.size;
    return n;
  }

  /** A batch from worker `from`: kept for the turn's end. */
  receive(from: number, b: HttpdShardBatch): void {
    for (const msg of b.batch) this.#inbox.push({ from, msg });
    this.#h.wake();
  }

  /** Queues a message for worker `to`: it leaves in the turn's batch (a turn is asked for if none runs). */
  #post(to: number, msg: HttpdShardMessage, transfer: ArrayBuffer[] = []): void {
    const b = this.#outBox[to]!;
    b.msgs.push(msg);
    for (const t of transfer) b.transfer.push(t);
    this.#h.wake();
  }

  // ---- this worker's clients ----------------------------------------------------------------

  /** Stores the body `w` (finished here) under `key` on worker `to`; the reply comes in its place. */
  put(c: Conn<unknown>, to: number, key: string, type: string, w: ObjectWriter, close: boolean): void {
    const id = this.#nextId++;
    const obj = w.finish();
    const o: Outgoing = {
      kind: "put",
      c,
      d: c.defer(close),
      close,
      to,
      w,
      cursor: new ObjectCursor(this.#h.stack.pool, obj),
      left: w.length,
      key,
      type,
    };
    this.#start(id, o);
  }

  /** A GET or HEAD of `key` on worker `to`. */
  get(c: Conn<unknown>, to: number, key: string, head: boolean, range: string | null, close: boolean): void {
    const id = this.#nextId++;
    this.#start(id, { kind: "get", c, d: c.defer(close), close, to, head, src: null, key, range });
  }

  /** A DELETE of `key` on worker `to`. */
  delete(c: Conn<unknown>, to: number, key: string, close: boolean): void {
    const id = this.#nextId++;
    this.#start(id, { kind: "delete", c, d: c.defer(close), close, to, key });
  }

  /** Sends a request now, or behind its connection's body still going out. */
  #start(id: number, o: Outgoing): void {
    this.#out.set(id, o);
    this.stats.forwarded++;
    const q = this.#behind.get(o.c);
    if (q) q.push(id);
    else this.#send(id, o);
  }

  #send(id: number, o: Outgoing): void {
    if (o.kind === "put") this.#sendPiece(id, o);
    else if (o.kind === "get") this.#post(o.to, { op: "get", id, key: o.key, head: o.head, range: o.range });
    else this.#post(o.to, { op: "delete", id, key: o.key });
  }

  /** The next piece of a forwarded body (a copy out of this worker's buffers). */
  #sendPiece(id: number, o: Extract<Outgoing, { kind: "put" }>): void {
    const piece = takePiece(this.#h.stack.pool, o);
    const last = o.left === 0;
    this.#post(o.to, { op: "put", id, key: o.key, type: o.type, piece, last }, [piece]);
    if (!last) {
      if (!this.#behind.has(o.c)) this.#behind.set(o.c, []);
      return;
    }
    // the whole body is out: what the connection asked after it goes now, up to the next body
    const q = this.#behind.get(o.c);
    if (!q) return;
    this.#behind.delete(o.c);
    while (q.length) {
      const next = q.shift()!;
      const x = this.#out.get(next);
      if (x) this.#send(next, x);
      const again = this.#behind.get(o.c);
      if (again) {
        again.push(...q);
        return;
      }
    }
  }

  /** A connection gone while its body was going out: it and the requests behind it are dropped. */
  #dropBehind(c: Conn<unknown>): void {
    const q = this.#behind.get(c);
    this.#behind.delete(c);
    for (const id of q ?? []) {
      const x = this.#out.get(id);
      this.#out.delete(id);
      if (x?.kind === "put") x.w.release();
      x?.d.fill([]);
    }
  }

  // ---- the turn -----------------------------------------------------------------------------

  /** The turn's end, before the group commit: what came is handled. */
  beforeCommit(): void {
    if (this.#inbox.length === 0) return;
    const inbox = this.#inbox;
    this.#inbox = [];
    for (const { from, msg } of inbox) this.#handle(from, msg);
  }

  /** After the group commit: answers whose records are durable join the batches, which go out. */
  afterCommit(): void {
    if (this.#owed.length) {
      const durable = this.#h.log.durableSeq;
      let keep = 0;
      for (const o of this.#owed) {
        if (o.waitSeq <= durable) this.#post(o.to, o.msg, o.transfer);
        else this.#owed[keep++] = o;
      }
      this.#owed.length = keep;
    }
    for (let to = 0; to < this.count; to++) {
      const b = this.#outBox[to]!;
      if (b.msgs.length === 0) continue;
      this.#outBox[to] = { msgs: [], transfer: [] };
      this.#t.send(to, { batch: b.msgs }, b.transfer);
    }
  }

  /**
   * An answer that may show a record of this log (a write's own, or one a read observed): it
   * leaves once the log is durable up to the newest record now, as a reply to a client does.
   */
  #owe(to: number, msg: HttpdShardMessage, transfer: ArrayBuffer[] = []): void {
    const log = this.#h.log;
    const seq = log.lastSeq;
    if (seq <= log.durableSeq) this.#post(to, msg, transfer);
    else this.#owed.push({ to, msg, transfer, waitSeq: seq });
  }

  #handle(from: number, m: HttpdShardMessage): void {
    switch (m.op) {
      case "put":
        return this.#servePut(from, m);
      case "get":
        return this.#serveGet(from, m);
      case "delete": {
        this.stats.served++;
        const had = this.#h.remove(m.key);
        return this.#owe(from, {
          op: "done",
          id: m.id,
          status: had ? 204 : 404,
          text: had ? "" : "not found\n",
          headers: [],
        });
      }
      case "more":
        return this.#more(from, m.id);
      case "cancel": {
        const x = this.#in[from]!.get(m.id);
        this.#in[from]!.delete(m.id);
        if (x?.kind === "put") x.w?.abort();
        else if (x?.kind === "get") this.#h.log.unpin(x.obj);
        return;
      }
      case "ack":
        return this.#acked(m.id);
      case "done":
        return this.#done(m.id, m);
      case "meta":
        return this.#meta(m.id, m.head, m.piece, m.last);
      case "data":
        return this.#data(m.id, m.piece, m.last);
    }
  }

  #servePut(from: number, m: Extract<HttpdShardMessage, { op: "put" }>): void {
    const ins = this.#in[from]!;
    let x = ins.get(m.id);
    if (!x) {
      this.stats.served++;
      x = { kind: "put", w: this.#h.log.writer(this.#h.log.maxNames - 1), key: m.key, type: m.type, refused: null };
      ins.set(m.id, x);
    }
    if (x.kind !== "put") return;
    const bytes = new Uint8Array(m.piece);
    if (x.w && !this.#h.canHold(bytes.length)) {
      // this pool is down to its reserve: nothing of this body is kept
      x.w.abort();
      x.w = null;
      x.refused = { status: 507, text: "the PM pool is full: DELETE keys or grow the pool\n", headers: [] };
    }
    if (x.w) this.#h.pushCopy(x.w, bytes);
    if (!m.last) return this.#post(from, { op: "ack", id: m.id });
    ins.delete(m.id);
    let a: Answer = x.refused ?? { status: 201, text: "", headers: [] };
    if (x.w) {
      const w = x.w;
      try {
        this.#h.store(x.key, x.type, w);
      } catch (e) {
        w.abort();
        a = { status: 507, text: `not stored: ${(e as Error).message}\n`, headers: [] };
      }
    }
    this.#owe(from, { op: "done", id: m.id, ...a });
  }

  #serveGet(from: number, m: Extract<HttpdShardMessage, { op: "get" }>): void {
    this.stats.served++;
    const r = this.#h.resolve(m.key, m.range);
    // what a read shows leaves once durable (#owe): an object another connection just wrote
    if (!("head" in r)) return this.#owe(from, { op: "done", id: m.id, ...r });
    const body = !m.head && r.obj !== null && r.end > r.start;
    if (!body) {
      if (r.obj) this.#h.log.unpin(r.obj);
      return this.#owe(from, { op: "meta", id: m.id, head: r.head, piece: null, last: true });
    }
    const x: Incoming = {
      kind: "get",
      obj: r.obj!,
      cursor: new ObjectCursor(this.#h.stack.pool, r.obj!, r.start, r.end),
      left: r.end - r.start,
    };
    const piece = takePiece(this.#h.stack.pool, x);
    const last = x.left === 0;
    if (last) this.#h.log.unpin(x.obj);
    else this.#in[from]!.set(m.id, x);
    this.#owe(from, { op: "meta", id: m.id, head: r.head, piece, last }, [piece]);
  }

  #more(from: number, id: number): void {
    const x = this.#in[from]!.get(id);
    if (!x || x.kind !== "get") return;
    const piece = takePiece(this.#h.stack.pool, x);
    const last = x.left === 0;
    if (last) {
      this.#in[from]!.delete(id);
      this.#h.log.unpin(x.obj);
    }
    this.#post(from, { op: "data", id, piece, last }, [piece]);
  }

  // ---- answers to this worker's requests ----------------------------------------------------

  #acked(id: number): void {
    const o = this.#out.get(id);
    if (!o || o.kind !== "put") return;
    if (o.c.gone) {
      // the client went: the owner drops what it took
      this.#out.delete(id);
      o.w.release();
      this.#post(o.to, { op: "cancel", id });
      this.#dropBehind(o.c);
      return;
    }
    this.#sendPiece(id, o);
  }

  #done(id: number, a: Answer): void {
    const o = this.#out.get(id);
    if (!o) return;
    this.#out.delete(id);
    if (o.kind === "put") o.w.release(); // the owner holds the body now
    this.#h.answer(o.d, a, o.close, o.kind === "get" && o.head);
  }

  #meta(id: number, head: RemoteHead, piece: ArrayBuffer | null, last: boolean): void {
    const o = this.#out.get(id);
    if (!o || o.kind !== "get") return;
    const h = this.#h.head(head, o.close);
    if (!piece) {
      this.#out.delete(id);
      o.d.fill([h]);
      return;
    }
    const src = new RemoteSource(this, id, o.c);
    o.src = src;
    if (last) this.#out.delete(id);
    src.add(new Uint8Array(piece), last);
    o.d.fill([h, { pull: src }]);
  }

  #data(id: number, piece: ArrayBuffer, last: boolean): void {
    const o = this.#out.get(id);
    if (!o || o.kind !== "get" || !o.src) return;
    if (last) this.#out.delete(id);
    o.src.add(new Uint8Array(piece), last);
  }

  /** @internal A pulled GET wants its next piece, or was dropped. */
  ask(id: number, cancel: boolean): void {
    const o = this.#out.get(id);
    if (!o || o.kind !== "get") return;
    if (cancel) this.#out.delete(id);
    this.#post(o.to, { op: cancel ? "cancel" : "more", id });
  }

  /** @internal */
  get host(): HttpdShardHost {
    return this.#h;
  }
}

/** A remote object's bytes for a reply: copied into this worker's buffers as they come. */
class RemoteSource implements PullSource {
  #s: HttpdShards;
  #id: number;
  #c: Conn<unknown>;
  #q: BufferName[] = [];
  #queued = 0;
  #ended = false;
  #asked = false;
  #dead = false;

  constructor(s: HttpdShards, id: number, c: Conn<unknown>) {
    this.#s = s;
    this.#id = id;
    this.#c = c;
  }

  add(bytes: Uint8Array, last: boolean): void {
    if (this.#dead) return;
    this.#asked = false;
    this.#ended = last;
    const h = this.#s.host;
    const names: BufferName[] = [];
    const done = copyIntoBuffers(h.stack, bytes, 64, names);
    if (done < bytes.length) {
      // this pool has no room for the rest: the reply cannot be finished
      for (const n of names) h.stack.pool.free(n.index);
      this.cancel();
      this.#c.abort();
      return;
    }
    for (const n of names) this.#q.push(n);
    this.#queued += bytes.length;
    this.#maybeAsk();
    this.#s.host.wakeConn(this.#c);
  }

  next(): BufferName | null | undefined {
    const r = this.#q.shift();
    if (r) {
      this.#queued -= r.length;
      this.#maybeAsk();
      return r;
    }
    return this.#ended ? null : undefined;
  }

  cancel(): void {
    if (this.#dead) return;
    this.#dead = true;
    const pool = this.#s.host.stack.pool;
    for (const n of this.#q) pool.free(n.index);
    this.#q = [];
    if (!this.#ended) this.#s.ask(this.#id, true);
  }

  /** Asks for the next piece once less than a piece is left here to send. */
  #maybeAsk(): void {
    if (this.#ended || this.#asked || this.#dead || this.#queued >= SHARD_PIECE) return;
    this.#asked = true;
    this.#s.ask(this.#id, false);
  }
}

/**
 * The next piece of an object being read (a body going to its owner, or an object going to
 * the worker that asked for it): up to SHARD_PIECE bytes of `x.cursor`, at most `x.left`, copied
 * out of its buffers into a new ArrayBuffer (the one copy a piece costs here); `x.left` goes
 * down by it (to 0 if the object ends short of it). A range is at most a buffer long, so a
 * piece ends at most one range past SHARD_PIECE.
 */
function takePiece(pool: Pool, x: { cursor: ObjectCursor; left: number }): ArrayBuffer {
  const names: BufferName[] = [];
  let n = 0;
  while (n < SHARD_PIECE && n < x.left) {
    const r = x.cursor.next();
    if (!r) break;
    names.push(r);
    n += r.length;
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const r of names) {
    out.set(pool.viewName(r), at);
    at += r.length;
  }
  x.left = n ? x.left - n : 0;
  return out.buffer;
}

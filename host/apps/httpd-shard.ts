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
// With loans (HttpdShardTransport.lend: the workers' pools are shared memories), a PUT/POST body
// does not travel: it stays in this worker's buffers under a loan record of its log, and the
// owner's record names it (a descriptor, loan.ts); the owner reads it from this worker's memory
// for its GETs (an ObjectCursor over the peer pool: copied into its own buffers as they are
// sent), and releases the loan once that record is superseded and the superseding one durable
// (and no read of it is in progress). After a restart each worker names, once, the loans its
// records name; the lender deletes the others it recovered. docs/scaling.md has the whole.
// Messages are structured-cloned objects over one MessagePort per pair of workers, pieces in
// transferred ArrayBuffers, batched per turn: what a turn has for another worker leaves in one
// message at the turn's end, after the group commit (answers that show a record, a write's own
// or one a read observed, wait for it to be durable). A batch that comes is handled at the next
// turn's end, before the group commit.

import { ObjectCursor, peerView, type Item, type ObjectRef, type ObjectWriter, type PeerPool } from "../object.js";
import { copyIntoBuffers } from "../paste.js";
import type { BufferName } from "../pool.js";
import { decodeRemote, LoanBook, remoteItems, type RemoteValue } from "./loan.js";
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
  /**
   * Bodies cross as loans (zero copy): every worker reads the others' pools (attachPeer, before
   * any batch). Default false: a body is copied to its owner in pieces.
   */
  readonly lend?: boolean;
}

/** Record tag of a loan: a body this worker keeps for another worker's record. */
export const HTTPD_LOAN_TAG = 3;

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
  | { op: "put"; id: number; key: string; type: string; piece: ArrayBuffer | null; last: boolean; loan?: Uint8Array }
  | { op: "get"; id: number; key: string; head: boolean; range: string | null }
  | { op: "delete"; id: number; key: string }
  | { op: "more"; id: number }
  | { op: "cancel"; id: number }
  | { op: "ack"; id: number }
  | { op: "done"; id: number; status: number; text: string; headers: [string, string][] }
  | {
      op: "meta";
      id: number;
      head: RemoteHead;
      piece: ArrayBuffer | null;
      last: boolean;
      /** The body is the asker's own loan `id`: it sends bytes [start, end) of it from its pool. */
      own?: { id: number; start: number; end: number };
    }
  | { op: "data"; id: number; piece: ArrayBuffer; last: boolean }
  /** Loans of the receiver's that the sender's records no longer name. */
  | { op: "rel"; ids: number[] }
  /** Once after a start: the receiver's loans the sender's records name (the others go). */
  | { op: "live"; ids: number[] };

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
  /** Logs `key -> [header naming the body another worker keeps: the descriptor `desc`]`. */
  storeRemote(key: string, type: string, desc: Uint8Array): void;
  /** The loan a record names (a lent body's record), or null (after a restart: which loans are still named). */
  remoteOf(record: { tag: number; names: readonly Item[] }): RemoteValue | null;
  /**
   * A GET's object and range: pinned (unpin it when done), or, `remote`, another worker's loan
   * with a read begun (HttpdShards.endRead when done); or the refusal to answer.
   */
  resolve(key: string, range: string | null): Resolved | Answer;
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

/** A GET's answer as the app finds it: the head's facts and the bytes [start, end) of `obj` or `remote`. */
export interface Resolved {
  head: RemoteHead;
  obj: ObjectRef | null;
  /** The body is another worker's loan (obj null): start and end are offsets in it. */
  remote?: RemoteValue;
  start: number;
  end: number;
}

export interface HttpdShardStats {
  /** Requests of this worker's clients run by another worker. */
  forwarded: number;
  /** Requests this worker ran for another worker's clients. */
  served: number;
  /** Bodies of this worker's clients lent to the owners of their keys, and loans ended. */
  lent: number;
  unlent: number;
  /** Reads of bodies other workers keep (GETs of this worker's keys whose record names a loan). */
  remoteReads: number;
  /** GETs of this worker's clients for bodies it lent: sent from its own pool, by name. */
  ownReads: number;
}

/** A request of this worker's client in flight on another worker. */
type Outgoing =
  | {
      kind: "put";
      c: Conn<unknown>;
      d: DeferredReply;
      close: boolean;
      to: number;
      /** The body, copied out piece by piece (null when lent). */
      w: ObjectWriter | null;
      cursor: ObjectCursor | null;
      /** Body bytes not sent yet. */
      left: number;
      key: string;
      type: string;
      /** Lent: the loan's record key, its descriptor and the loan record's sequence number. */
      loan: { key: Uint8Array; desc: Uint8Array; seq: number } | null;
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
  | {
      kind: "get";
      cursor: ObjectCursor;
      left: number;
      /** The bytes of a range the cursor gives (this pool's, or the lender's). */
      view: (r: BufferName) => Uint8Array;
      /** The read is over: the object unpinned, or the loan's read ended. */
      done: () => void;
    };

/** An answer owed to another worker once the log is durable up to `waitSeq`. */
interface Owed {
  to: number;
  msg: HttpdShardMessage;
  transfer: ArrayBuffer[];
  waitSeq: number;
}

/** A message held back until this log is durable up to `seq` (a request naming a loan), and those after it. */
interface Gated {
  msg: HttpdShardMessage;
  transfer: ArrayBuffer[];
  seq: number;
}

const enc = new TextEncoder();

/** A worker's side of the sharded store. */
export class HttpdShards {
  readonly index: number;
  readonly count: number;
  readonly stats: HttpdShardStats = { forwarded: 0, served: 0, lent: 0, unlent: 0, remoteReads: 0, ownReads: 0 };
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
  /** Per worker: messages behind a request that names a loan not durable yet (in order). */
  #gate: Gated[][];
  /** Bodies cross as loans. */
  readonly #lend: boolean;
  /** The other workers' pools, loan ids and keys, and what a restart recovered (loan.ts). */
  #book: LoanBook;
  /** Loan records in this log. */
  #loans = 0;
  /** Loans whose naming record was superseded by the record of `seq`: released once that is durable. */
  #releases: { w: number; id: number; seq: number }[] = [];
  /** Reads in progress per loan (`w:id`): its release waits for them. */
  #readers = new Map<string, number>();

  constructor(t: HttpdShardTransport, h: HttpdShardHost) {
    if (!Number.isInteger(t.count) || t.count < 1 || !Number.isInteger(t.index) || t.index < 0 || t.index >= t.count)
      throw new RangeError(`pmstack: shard index ${t.index} of ${t.count}`);
    this.index = t.index;
    this.count = t.count;
    this.#t = t;
    this.#h = h;
    this.#in = Array.from({ length: t.count }, () => new Map());
    this.#outBox = Array.from({ length: t.count }, () => ({ msgs: [], transfer: [] }));
    this.#gate = Array.from({ length: t.count }, () => []);
    this.#lend = t.lend === true && t.count > 1;
    const book = (this.#book = new LoanBook(t.index, t.count));
    // after a restart: the loans kept here (each for the worker its key's hash tag names), and
    // the loans of the others that this worker's records name
    for (const e of h.log.entries()) {
      if (e.tag !== HTTPD_LOAN_TAG) {
        const r = this.#lend ? h.remoteOf(e) : null;
        if (r) book.names(r.worker, r.id);
        continue;
      }
      this.#loans++;
      book.recovered(e.key);
    }
    if (!this.#lend) book.live(); // nothing to tell without loans
  }

  /**
   * Another worker's pool memory (its core's memory, shared with this thread, or the same
   * thread's) and the address of its buffer 0 there: the loans this worker's records name are
   * read from it.
   */
  attachPeer(w: number, memory: ArrayBufferLike, base: number): void {
    this.#book.attachPeer(w, memory, base);
  }

  /** Loan records kept here for other workers' records (not keys). */
  get loans(): number {
    return this.#loans;
  }

  /** Whether bodies cross as loans (the records of this app may name other workers' loans). */
  get lending(): boolean {
    return this.#lend;
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
    const g = this.#gate[to]!;
    if (g.length) g.push({ msg, transfer, seq: 0 });
    else {
      const b = this.#outBox[to]!;
      b.msgs.push(msg);
      for (const t of transfer) b.transfer.push(t);
    }
    this.#h.wake();
  }

  /** #post once this log is durable up to `seq` (what is posted to `to` after it waits behind it). */
  #postAt(to: number, msg: HttpdShardMessage, seq: number): void {
    if (seq <= this.#h.log.durableSeq && this.#gate[to]!.length === 0) return this.#post(to, msg);
    this.#gate[to]!.push({ msg, transfer: [], seq });
    this.#h.wake();
  }

  // ---- this worker's clients ----------------------------------------------------------------

  /** Stores the body `w` (finished here) under `key` on worker `to`; the reply comes in its place. */
  put(c: Conn<unknown>, to: number, key: string, type: string, w: ObjectWriter, close: boolean): void {
    const id = this.#nextId++;
    const obj = w.finish();
    // (an empty body has nothing to lend: its piece is empty)
    const loan = this.#lend && w.length > 0 ? this.#lendBody(to, w) : null;
    const o: Outgoing = {
      kind: "put",
      c,
      d: c.defer(close),
      close,
      to,
      w: loan ? null : w,
      cursor: loan ? null : new ObjectCursor(this.#h.stack.pool, obj),
      left: loan ? 0 : w.length,
      key,
      type,
      loan,
    };
    this.#start(id, o);
  }

  /**
   * Keeps the body `w` under a loan record for worker `to` (its buffers, zero copy; the
   * writer is released). Returns the loan, or null when the log has no room for the record
   * (the body is then copied over, as without loans).
   */
  #lendBody(to: number, w: ObjectWriter): { key: Uint8Array; desc: Uint8Array; seq: number } | null {
    const loan = this.#book.lend(to, w.finish().names, w.length, this.#lendRecord);
    if (!loan) return null;
    this.#loans++;
    this.stats.lent++;
    w.release(); // the loan record holds its own references
    return loan;
  }

  /** Writes a loan record (LoanBook.lend's `append`). */
  #lendRecord = (key: Uint8Array, items: readonly Item[]): number =>
    this.#h.log.append(key, items, { tag: HTTPD_LOAN_TAG });

  /** Ends the loan `id` kept here for worker `w` (released, refused, or named by no record of w's). */
  #unlend(w: number, id: number): void {
    this.#unlendKey(this.#book.key(w, id));
  }

  #unlendKey(key: Uint8Array): void {
    const log = this.#h.log;
    const h = log.find(key);
    if (h < 0 || log.recordTag(h) !== HTTPD_LOAN_TAG) return;
    log.delete(key);
    this.#loans--;
    this.stats.unlent++;
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
    if (o.kind === "put" && o.loan) {
      // the loan's name goes once the loan is durable; what follows to that worker waits behind it
      const msg: HttpdShardMessage = {
        op: "put",
        id,
        key: o.key,
        type: o.type,
        piece: null,
        last: true,
        loan: o.loan.desc,
      };
      this.#postAt(o.to, msg, o.loan.seq);
    } else if (o.kind === "put") this.#sendPiece(id, o);
    else if (o.kind === "get") this.#post(o.to, { op: "get", id, key: o.key, head: o.head, range: o.range });
    else this.#post(o.to, { op: "delete", id, key: o.key });
  }

  /** The next piece of a forwarded body (a copy out of this worker's buffers). */
  #sendPiece(id: number, o: Extract<Outgoing, { kind: "put" }>): void {
    const pool = this.#h.stack.pool;
    const piece = takePiece(o as { cursor: ObjectCursor; left: number }, (r) => pool.viewName(r));
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
      if (x?.kind === "put") {
        x.w?.release();
        if (x.loan) this.#unlendKey(x.loan.key); // never sent: no record names it
      }
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
    const durable = this.#h.log.durableSeq;
    const named = this.#book.live();
    if (named) {
      // once after a start: each other worker learns which of its loans this one's records name
      for (let w = 0; w < this.count; w++) if (w !== this.index) this.#post(w, { op: "live", ids: named[w]! });
    }
    if (this.#owed.length) {
      let keep = 0;
      for (const o of this.#owed) {
        if (o.waitSeq <= durable) this.#post(o.to, o.msg, o.transfer);
        else this.#owed[keep++] = o;
      }
      this.#owed.length = keep;
    }
    if (this.#releases.length) {
      // a loan goes once the record that superseded its name is durable and no read of it is left
      let keep = 0;
      const out = new Map<number, number[]>();
      for (const r of this.#releases) {
        if (r.seq <= durable && !this.#readers.has(`${r.w}:${r.id}`)) {
          let l = out.get(r.w);
          if (!l) out.set(r.w, (l = []));
          l.push(r.id);
        } else this.#releases[keep++] = r;
      }
      this.#releases.length = keep;
      for (const [w, ids] of out) this.#post(w, { op: "rel", ids });
    }
    for (let to = 0; to < this.count; to++) {
      const g = this.#gate[to]!;
      let k = 0;
      while (k < g.length && g[k]!.seq <= durable) k++;
      if (k) {
        const b = this.#outBox[to]!;
        for (const x of g.splice(0, k)) {
          b.msgs.push(x.msg);
          for (const t of x.transfer) b.transfer.push(t);
        }
      }
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
        else if (x?.kind === "get") x.done();
        return;
      }
      case "ack":
        return this.#acked(m.id);
      case "done":
        return this.#done(m.id, m);
      case "meta":
        return this.#meta(m.id, m.head, m.piece, m.last, m.own);
      case "data":
        return this.#data(m.id, m.piece, m.last);
      case "rel":
        for (const id of m.ids) this.#unlend(from, id);
        return;
      case "live": {
        // after a restart: the loans recovered here for `from` that its records no longer name go
        for (const id of this.#book.named(from, m.ids)) this.#unlend(from, id);
        return;
      }
    }
  }

  #servePut(from: number, m: Extract<HttpdShardMessage, { op: "put" }>): void {
    if (m.loan) {
      // a lent body: the record names it where it lies, in the lender's pool
      this.stats.served++;
      const r = decodeRemote(m.loan, 0, m.loan.length);
      let a: Answer = { status: 201, text: "", headers: [] };
      if (!r || r.worker !== from) a = { status: 500, text: "pmstack: a worker sent a damaged loan\n", headers: [] };
      else
        try {
          this.#h.storeRemote(m.key, m.type, m.loan);
        } catch (e) {
          a = { status: 507, text: `not stored: ${(e as Error).message}\n`, headers: [] };
        }
      // (an answer but 201 has the lender end the loan)
      return this.#owe(from, { op: "done", id: m.id, ...a });
    }
    const ins = this.#in[from]!;
    let x = ins.get(m.id);
    if (!x) {
      this.stats.served++;
      x = { kind: "put", w: this.#h.log.writer(this.#h.log.maxNames - 1), key: m.key, type: m.type, refused: null };
      ins.set(m.id, x);
    }
    if (x.kind !== "put") return;
    const bytes = new Uint8Array(m.piece!);
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
    const body = !m.head && (r.obj !== null || r.remote) && r.end > r.start;
    if (body && r.remote?.worker === from) {
      // the asker keeps this body (it lent it): it sends it from its own pool, by name. Its loan
      // cannot go before it pins it: a release follows this answer, on the same port
      const own = { id: r.remote.id, start: r.start, end: r.end };
      this.endRead(r.remote);
      return this.#owe(from, { op: "meta", id: m.id, head: r.head, piece: null, last: true, own });
    }
    if (!body) {
      this.finish(r);
      return this.#owe(from, { op: "meta", id: m.id, head: r.head, piece: null, last: true });
    }
    let x: Incoming;
    if (r.remote) {
      const peer = this.#book.peer(r.remote.worker)!;
      x = {
        kind: "get",
        cursor: new ObjectCursor(peer, { names: remoteItems(r.remote) }, r.start, r.end),
        left: r.end - r.start,
        view: (n) => peerView(peer, n),
        done: () => this.endRead(r.remote!),
      };
    } else {
      const pool = this.#h.stack.pool;
      x = {
        kind: "get",
        cursor: new ObjectCursor(pool, r.obj!, r.start, r.end),
        left: r.end - r.start,
        view: (n) => pool.viewName(n),
        done: () => this.#h.log.unpin(r.obj!),
      };
    }
    const piece = takePiece(x, x.view);
    const last = x.left === 0;
    if (last) x.done();
    else this.#in[from]!.set(m.id, x);
    this.#owe(from, { op: "meta", id: m.id, head: r.head, piece, last }, [piece]);
  }

  #more(from: number, id: number): void {
    const x = this.#in[from]!.get(id);
    if (!x || x.kind !== "get") return;
    const piece = takePiece(x, x.view);
    const last = x.left === 0;
    if (last) {
      this.#in[from]!.delete(id);
      x.done();
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
      o.w?.release();
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
    if (o.kind === "put") {
      o.w?.release(); // the owner holds the body now
      if (o.loan && a.status !== 201) this.#unlendKey(o.loan.key); // the owner did not take it
    }
    this.#h.answer(o.d, a, o.close, o.kind === "get" && o.head);
  }

  #meta(
    id: number,
    head: RemoteHead,
    piece: ArrayBuffer | null,
    last: boolean,
    own?: { id: number; start: number; end: number },
  ): void {
    const o = this.#out.get(id);
    if (!o || o.kind !== "get") return;
    const h = this.#h.head(head, o.close);
    if (own) {
      // a body this worker lent: streamed from its own pool by name, zero copy (the reply pins it)
      this.#out.delete(id);
      const obj = this.#h.log.object(this.#book.key(o.to, own.id));
      if (!obj || obj.tag !== HTTPD_LOAN_TAG)
        return this.#h.answer(o.d, { status: 500, text: "the body's loan is gone\n", headers: [] }, o.close, false);
      this.stats.ownReads++;
      return o.d.fill([h, { stream: obj, start: own.start, end: own.end }]);
    }
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

  // ---- loans this worker's records name -------------------------------------------------------

  /**
   * The record naming loan `r` was superseded by the record of sequence `seq` (a PUT, a DELETE):
   * the loan is released once that is durable and no read of it is left.
   */
  released(r: RemoteValue, seq: number): void {
    this.#releases.push({ w: r.worker, id: r.id, seq });
  }

  /**
   * A read of loan `r` begins (resolve): its release waits until endRead. Returns false when
   * the lender's pool is not reachable (not attached yet).
   */
  beginRead(r: RemoteValue): boolean {
    if (!this.#book.peer(r.worker)) return false;
    const k = `${r.worker}:${r.id}`;
    this.#readers.set(k, (this.#readers.get(k) ?? 0) + 1);
    this.stats.remoteReads++;
    return true;
  }

  endRead(r: RemoteValue): void {
    const k = `${r.worker}:${r.id}`;
    const n = (this.#readers.get(k) ?? 1) - 1;
    if (n > 0) this.#readers.set(k, n);
    else {
      this.#readers.delete(k);
      if (this.#releases.length) this.#h.wake(); // a release may have waited for it
    }
  }

  /** A resolved GET's read is over without a body sent (HEAD, an empty range). */
  finish(r: Resolved): void {
    if (r.remote) this.endRead(r.remote);
    else if (r.obj) this.#h.log.unpin(r.obj);
  }

  /**
   * Bytes [start, end) of loan `r` for a reply of connection `c` (a read begun: it ends when
   * the source ends or is dropped): copied from the lender's pool into buffers of this one as
   * TCP takes them.
   */
  source(r: RemoteValue, start: number, end: number, c: Conn<unknown>): PullSource {
    return new LoanSource(this, this.#book.peer(r.worker)!, r, start, end, c);
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
function takePiece(x: { cursor: ObjectCursor; left: number }, view: (r: BufferName) => Uint8Array): ArrayBuffer {
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
    out.set(view(r), at);
    at += r.length;
  }
  x.left = n ? x.left - n : 0;
  return out.buffer;
}

/** Buffers a loan source keeps filled ahead of what TCP has taken. */
const LOAN_AHEAD = 64 * 1024;

/**
 * A GET's body that another worker keeps (a loan a record here names): its bytes copied out of
 * the lender's pool (an ObjectCursor over the peer) into buffers of this one, up to LOAN_AHEAD
 * ahead of what the reply has taken; the read ends (HttpdShards.endRead) at the end or when
 * the reply is dropped.
 */
class LoanSource implements PullSource {
  #s: HttpdShards;
  #peer: PeerPool;
  #r: RemoteValue;
  #c: Conn<unknown>;
  #cursor: ObjectCursor;
  #q: BufferName[] = [];
  #ended = false;
  #dead = false;

  constructor(s: HttpdShards, peer: PeerPool, r: RemoteValue, start: number, end: number, c: Conn<unknown>) {
    this.#s = s;
    this.#peer = peer;
    this.#r = r;
    this.#c = c;
    this.#cursor = new ObjectCursor(peer, { names: remoteItems(r) }, start, end);
  }

  next(): BufferName | null | undefined {
    if (this.#q.length === 0 && !this.#ended && !this.#dead) this.#fill();
    if (this.#dead) return null;
    const n = this.#q.shift();
    if (n) return n;
    if (!this.#ended) return undefined;
    this.#end();
    return null;
  }

  cancel(): void {
    if (this.#dead) return;
    const pool = this.#s.host.stack.pool;
    for (const n of this.#q) pool.free(n.index);
    this.#q = [];
    this.#end();
  }

  /** Copies the next LOAN_AHEAD bytes (or the rest) into fresh buffers. */
  #fill(): void {
    const h = this.#s.host;
    let n = 0;
    while (n < LOAN_AHEAD) {
      const r = this.#cursor.next();
      if (!r) {
        this.#ended = true;
        return;
      }
      const bytes = peerView(this.#peer, r);
      const done = copyIntoBuffers(h.stack, bytes, 64, this.#q);
      if (done < bytes.length) {
        // this pool has no room for the rest: the reply cannot be finished
        this.cancel();
        this.#c.abort();
        return;
      }
      n += bytes.length;
    }
  }

  #end(): void {
    if (this.#dead) return;
    this.#dead = true;
    this.#s.endRead(this.#r);
  }
}

// The store sharded over workers (docs/scaling.md): each worker runs its own stack on its own
// NIC queue, its own pool and log, and owns the keys whose hash slot (Redis Cluster's CRC16,
// hash tags included) is its index modulo the worker count. A command on a connection of one
// worker whose keys another owns is run by the owner: the command's arguments go there in the
// owner's turn-batched message, the owner runs it against its store, and its reply (once the
// record it shows is durable in the owner's log) comes back and goes out in order. A command
// whose keys span workers is split where its meaning allows it (DEL, EXISTS, MGET, MSET: one
// piece per worker, the replies joined), and refused (-CROSSSLOT) where it would not be atomic.
// DBSIZE, FLUSHALL and FLUSHDB go to every worker.
//
// Messages between two workers are batched per turn (one message per direction per turn at
// most), the bytes of every request or reply of the batch in one transferred ArrayBuffer:
//   request: u32 id, u32 argc, then argc times (u32 length, bytes)
//   reply:   u32 id, u32 length, bytes (the RESP reply)
// Nothing here runs outside a turn: messages are queued as they come and handled at the turn's
// end, before the group commit.
//
// Writes cross zero copy. When the pools of the workers are memories they can read of each
// other's (worker threads: shared memories), a value (an argument of SET, SETNX, SETEX, PSETEX,
// GETSET, MSET, MSETNX that arrived in PM buffers) stays in the pool of the worker whose NIC
// wrote it: that worker keeps it under a loan record in its own log, and the request carries
// its name instead of its bytes, as an argument of length 0x8000_0000 | n whose n bytes are the
// descriptor (apps/loan.ts, RemoteValue). The request leaves once the loan is durable; the
// owner's record names the loan. When that record is superseded (and that is durable), or no
// command took the argument, the owner releases the loan: `rel`, the loan ids (u32 high, u32
// low each). After a restart each worker tells each other one which of its loans its records
// still name (`live`, the same form, once); the loans none names (a request lost in the crash,
// a release not yet durable) go.

import { ObjectCursor, type Item } from "../../object.js";
import type { Pool } from "../../pool.js";
import type { KvStore } from "./store.js";
import { decodeRemote, LoanBook } from "../loan.js";
import { freeNamedParts, type Conn, type Part } from "../conn.js";
import { keyHashSlot } from "./cluster.js";
import type { Arg, KvClient } from "./commands.js";
import { arrayHead, int, OK } from "./reply.js";

/** How a worker reaches the others (worker_threads MessagePorts in workers.ts; anything in tests). */
export interface ShardTransport {
  /** This worker's index, 0..count-1. */
  readonly index: number;
  readonly count: number;
  /** Sends a batch to worker `to`; the buffers in `transfer` are handed over. */
  send(to: number, msg: ShardMessage, transfer: ArrayBuffer[]): void;
  /**
   * Whether every other worker reads this worker's pool (attachPeer, before any batch of this
   * worker's reaches it): writes then cross as loans, zero copy. Default false: values are copied.
   */
  readonly lend?: boolean;
}

/** One turn's batch from one worker to another. */
export interface ShardMessage {
  req: ArrayBuffer | null;
  rep: ArrayBuffer | null;
  /** Loans of the receiver's that the sender no longer names. */
  rel?: ArrayBuffer | null;
  /** Once after a start: the receiver's loans that the sender's records name. */
  live?: ArrayBuffer | null;
}

/** Counters of the sharded store (KvStats.shard). */
export interface ShardStats {
  /** Commands of this worker's clients run by another worker (whole, or a piece of a split one). */
  forwarded: number;
  /** Commands this worker ran for another worker's clients. */
  served: number;
  /** Commands split over several workers (DEL, EXISTS, MGET, MSET of keys of more than one). */
  split: number;
  /** Commands sent to every worker (DBSIZE, FLUSHALL, FLUSHDB). */
  broadcast: number;
  /** Batches sent and received. */
  batchesOut: number;
  batchesIn: number;
  /** Values lent to other workers' records (written zero copy across workers). */
  lent: number;
  /** Loans ended (released by the worker whose record named them, or found unnamed after a restart). */
  unlent: number;
}

/** What the sharded store needs of the app (KvApp). */
export interface ShardHost {
  readonly pool: Pool;
  /** The store: loans, and remote values' reads and releases. */
  readonly store: KvStore;
  /** The log's newest and durable sequence numbers: a served reply leaves once its record is durable. */
  lastSeq(): number;
  durableSeq(): number;
  /**
   * Runs a command for another worker's client, or this worker's piece of a split one, on `c`
   * (a capturing client): no routing, no counting as a client's.
   */
  runServed(c: Conn<KvClient>, args: Arg[]): void;
  /** An argument's key bytes (null: no key of that size can exist, which the command answers itself, here). */
  key(a: Arg): Uint8Array | null;
  /** An argument's bytes (a long one copied out of PM), to send in a batch. */
  bytes(a: Arg): Uint8Array;
  /** Holds the connection (later commands wait): the returned function resumes it. */
  block(c: Conn<KvClient>): () => void;
  /** A reply for the client, in command order (an error is counted as the app counts them). */
  reply(c: Conn<KvClient>, bytes: Uint8Array): void;
  /** A message came: a turn soon. */
  wake(): void;
}

/** Joins the pieces' replies into the client's one. */
type Join = "one" | "sum" | "mget" | "ok";

/** A command of a client in flight (or done and waiting behind one that is): its reply's pieces. */
interface Job {
  conn: Conn<KvClient>;
  join: Join;
  /** Each piece's RESP reply, in piece order. */
  replies: (Uint8Array | null)[];
  /** MGET: each piece's positions in the client's key list. */
  positions: number[][];
  left: number;
  /** The client's reply, once every piece answered. */
  out: Uint8Array | null;
}

interface Pending {
  job: Job;
  piece: number;
}

/** A reply this worker owes another, waiting for its record to be durable. */
interface Owed {
  id: number;
  bytes: Uint8Array;
  waitSeq: number;
}

/** Commands whose keys may span workers: split per worker and joined. */
const SPLIT: Record<string, Join> = { del: "sum", exists: "sum", mget: "mget", mset: "ok" };
/** Commands without keys that go to every worker. */
const BROADCAST: Record<string, Join> = { dbsize: "sum", flushall: "ok", flushdb: "ok" };
/**
 * Commands of one client in flight at most: beyond, the client's next command waits for them
 * (a pipeline's commands stream through; memory stays bounded).
 */
export const SHARD_MAX_IN_FLIGHT = 1024;
/** Commands whose values (arguments from the third on, that arrived in PM buffers) cross as loans. */
const LENDS = new Set(["set", "setnx", "setex", "psetex", "getset", "mset", "msetnx"]);
/** The length word of a request's argument that is a loan's descriptor. */
const LOAN_ARG = 0x8000_0000;
/** Commands that cannot run sharded (they act on this worker's keys alone, or on a node's). */
export const SHARD_REFUSED = new Set(["migrate", "cluster", "asking", "readonly", "readwrite"]);

const dec = new TextDecoder();

/** A growable little-endian byte writer (one per destination and direction, reused). */
class Out {
  buf = new Uint8Array(4096);
  view = new DataView(this.buf.buffer);
  len = 0;
  #room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const b = new Uint8Array(cap);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
    this.view = new DataView(b.buffer);
  }
  u32(v: number): void {
    this.#room(4);
    this.view.setUint32(this.len, v, true);
    this.len += 4;
  }
  bytes(b: Uint8Array): void {
    this.#room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  /** The batch's first `n` bytes as a buffer of its own (to transfer); the rest stays. */
  take(n = this.len): ArrayBuffer | null {
    if (n === 0) return null;
    const out = this.buf.buffer.slice(0, n) as ArrayBuffer;
    if (n < this.len) {
      this.buf.copyWithin(0, n, this.len);
      this.len -= n;
      return out;
    }
    this.len = 0;
    if (this.buf.length > 1 << 20) {
      // a large batch passed: do not keep its capacity
      this.buf = new Uint8Array(4096);
      this.view = new DataView(this.buf.buffer);
    }
    return out;
  }
}

export class KvShards {
  readonly index: number;
  readonly count: number;
  readonly stats: ShardStats = {
    forwarded: 0,
    served: 0,
    split: 0,
    broadcast: 0,
    batchesOut: 0,
    batchesIn: 0,
    lent: 0,
    unlent: 0,
  };
  #t: ShardTransport;
  #h: ShardHost;
  #nextId = 1;
  #pending = new Map<number, Pending>();
  /** Per worker: requests to send, replies owed (in order), messages received. */
  #reqOut: Out[] = [];
  #repOut: Out[] = [];
  #owed: Owed[][] = [];
  #inbox: { from: number; msg: ShardMessage }[] = [];
  /** Per client with commands in flight: its jobs in command order (replies leave in it). */
  #fifo = new Map<Conn<KvClient>, Job[]>();
  /** Clients held until their commands in flight are answered (resume functions). */
  #drain = new Map<Conn<KvClient>, () => void>();
  /** Writes cross as loans (ShardTransport.lend). */
  #lend: boolean;
  /** The other workers' pools, loan ids and keys, and what a restart recovered (loan.ts). */
  #loans: LoanBook;
  /** Per worker: where in its request batch a request waits for its loan's record to be durable. */
  #reqWait: { start: number; seq: number }[][] = [];
  /** Per worker: loans of its to release once the record that superseded their names is durable. */
  #releases: { id: number; seq: number }[][] = [];

  constructor(t: ShardTransport, h: ShardHost) {
    if (!Number.isInteger(t.count) || t.count < 1 || !Number.isInteger(t.index) || t.index < 0 || t.index >= t.count)
      throw new RangeError(`pmstack: shard ${t.index} of ${t.count}: not a worker index`);
    this.index = t.index;
    this.count = t.count;
    this.#t = t;
    this.#h = h;
    this.#lend = t.lend === true;
    for (let i = 0; i < t.count; i++) {
      this.#reqOut.push(new Out());
      this.#repOut.push(new Out());
      this.#owed.push([]);
      this.#reqWait.push([]);
      this.#releases.push([]);
    }
    const loans = (this.#loans = new LoanBook(t.index, t.count));
    const store = h.store;
    store.setPeers({
      memory: (w) => loans.peer(w),
      released: (w, id, seq) => this.#releases[w]!.push({ id, seq }),
    });
    // after a restart: the loans kept here (each for the worker its key's hash tag names) and
    // the loans of the others that this worker's records name
    const found = store.atStart();
    for (const key of found?.loans ?? []) loans.recovered(key);
    for (const r of found?.remote ?? []) loans.names(r.worker, r.id);
  }

  /**
   * Another worker's pool memory (its core's memory, shared with this thread, or the same
   * thread's) and the address of its buffer 0 there: its loans' bytes are read from it.
   */
  attachPeer(w: number, memory: ArrayBufferLike, base: number): void {
    this.#loans.attachPeer(w, memory, base);
  }

  /** The worker that owns `key`. */
  owner(key: Uint8Array): number {
    return keyHashSlot(key) % this.count;
  }

  /** Requests forwarded and not yet answered. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Whether the client has commands in flight: its next replies must wait behind theirs. */
  busy(c: Conn<KvClient>): boolean {
    return this.#fifo.has(c);
  }

  /**
   * Whether the client's next command, named `name`, can go on while others are in flight: one
   * on keys (which keep their order per key: each key's commands all go to its owner, in
   * order) or one for every worker. Others (AUTH, CLIENT, QUIT, errors...) act on the
   * connection itself and wait (see waitDrain).
   */
  pipelines(c: Conn<KvClient>, name: string, first: number): boolean {
    const q = this.#fifo.get(c);
    if (q && q.length >= SHARD_MAX_IN_FLIGHT) return false;
    return (first > 0 || BROADCAST[name] !== undefined) && !SHARD_REFUSED.has(name);
  }

  /** Holds the client until its commands in flight are answered (the app queues the next ones). */
  waitDrain(c: Conn<KvClient>): void {
    if (!this.#drain.has(c)) this.#drain.set(c, this.#h.block(c));
  }

  /** A reply made here (an error, or a command run here) that must leave behind those in flight. */
  answer(c: Conn<KvClient>, bytes: Uint8Array): void {
    const q = this.#fifo.get(c);
    if (!q) return this.#h.reply(c, bytes);
    q.push({ conn: c, join: "one", replies: [], positions: [], left: 0, out: bytes });
  }

  /** Runs a command of this worker's keys for a client with commands in flight: its reply queued behind. */
  runBehind(c: Conn<KvClient>, args: Arg[]): void {
    this.#start(c, "one", [{ worker: this.index, args }], []);
  }

  /** A batch from another worker: kept for the next turn's end. */
  receive(from: number, msg: ShardMessage): void {
    this.#inbox.push({ from, msg });
    this.#h.wake();
  }

  /**
   * Routes a client's command (name known, arity and authentication checked): `true` if it was
   * sent elsewhere (whole, split or to every worker; its reply is queued on the client in
   * order when it comes), `false` to run it here, or the error to answer (keys of several
   * workers in a command that cannot be split).
   */
  route(c: Conn<KvClient>, name: string, first: number, last: number, step: number, args: Arg[]): boolean | string {
    const me = this.index;
    if (first <= 0) {
      const join = BROADCAST[name];
      if (!join) return false;
      this.stats.broadcast++;
      const pieces: { worker: number; args: Arg[] }[] = [];
      for (let w = 0; w < this.count; w++) pieces.push({ worker: w, args });
      this.#start(c, join, pieces, []);
      return true;
    }
    const end = last < 0 ? args.length + last : last;
    // owners of the keys, in order: one worker (the common case) or several
    const owners: number[] = [];
    let many = false;
    for (let i = first; i <= end && i < args.length; i += step) {
      const k = this.#h.key(args[i]!);
      owners.push(k ? this.owner(k) : me);
      if (owners[owners.length - 1] !== owners[0]) many = true;
    }
    const lend = this.#lend && LENDS.has(name);
    if (!many) {
      if (owners.length === 0 || owners[0] === me) return false;
      this.#start(c, "one", [{ worker: owners[0]!, args }], [], lend);
      return true;
    }
    const join = SPLIT[name];
    if (!join) return CROSSSLOT;
    // one piece per worker, its keys (and, for MSET, their values) in the client's order
    this.stats.split++;
    const byWorker = new Map<number, { args: Arg[]; pos: number[] }>();
    let pos = 0;
    for (let i = first; i <= end && i < args.length; i += step, pos++) {
      const w = owners[pos]!;
      let p = byWorker.get(w);
      if (!p) byWorker.set(w, (p = { args: [args[0]!], pos: [] }));
      for (let j = 0; j < step; j++) p.args.push(args[i + j]!);
      p.pos.push(pos);
    }
    const list = [...byWorker.entries()];
    this.#start(
      c,
      join,
      list.map(([worker, p]) => ({ worker, args: p.args })),
      list.map(([, p]) => p.pos),
      lend,
    );
    return true;
  }

  /** Queues the job behind the client's others, sends the remote pieces, runs the local one (its reply captured). */
  #start(
    c: Conn<KvClient>,
    join: Join,
    pieces: { worker: number; args: Arg[] }[],
    positions: number[][],
    lend = false,
  ): void {
    const job: Job = {
      conn: c,
      join,
      replies: pieces.map(() => null),
      positions,
      left: pieces.length,
      out: null,
    };
    const q = this.#fifo.get(c);
    if (q) q.push(job);
    else this.#fifo.set(c, [job]);
    for (let p = 0; p < pieces.length; p++) {
      const { worker, args } = pieces[p]!;
      if (worker === this.index) continue;
      const id = this.#nextId++;
      if (this.#nextId > 0xffff_fff0) this.#nextId = 1;
      this.#pending.set(id, { job, piece: p });
      const o = this.#reqOut[worker]!;
      const start = o.len;
      let wait = 0;
      o.u32(id);
      o.u32(args.length);
      for (let i = 0; i < args.length; i++) {
        const a = args[i]!;
        const d = lend && i >= 2 ? this.#loan(worker, a) : null;
        if (d) {
          wait = d.seq;
          o.u32(LOAN_ARG | d.desc.length);
          o.bytes(d.desc);
          continue;
        }
        const b = this.#h.bytes(a);
        o.u32(b.length);
        o.bytes(b);
      }
      // a request naming a loan leaves once the loan is durable (and those after it, in order)
      if (wait > this.#h.durableSeq()) this.#reqWait[worker]!.push({ start, seq: wait });
      this.stats.forwarded++;
    }
    // the local piece last: its reply may finish the job (every other piece is in flight)
    for (let p = 0; p < pieces.length; p++) {
      if (pieces[p]!.worker !== this.index) continue;
      const cap = this.#capture((b) => this.#answered(job, p, b));
      this.#h.runServed(cap, pieces[p]!.args);
    }
  }

  /**
   * Lends the value argument `a` to worker `to`: a loan record keeps its buffers (zero copy),
   * the argument's writer is taken. Returns the loan's descriptor and the record's sequence
   * number, or null when the value is not lent (a short one, a full log: it is copied).
   */
  #loan(to: number, a: Arg): { desc: Uint8Array; seq: number } | null {
    const w = a.writer;
    if (!w || a.full) return null;
    const loan = this.#loans.lend(to, w.finish().names, a.len, this.#lendRecord);
    if (!loan) return null;
    a.writer = null;
    w.release(); // the loan record holds its own references
    this.stats.lent++;
    return loan;
  }

  /** Writes a loan record (LoanBook.lend's `append`). */
  #lendRecord = (key: Uint8Array, items: readonly Item[]): number => this.#h.store.lend(key, items);

  /** A piece's reply: when it is the last, the job's reply is made and the client's leave in order. */
  #answered(job: Job, piece: number, reply: Uint8Array): void {
    job.replies[piece] = reply;
    if (--job.left > 0) return;
    job.out = joinReplies(job);
    job.replies = [];
    this.#flush(job.conn);
  }

  /** Queues the client's finished replies up to the first still in flight; resumes it when none is. */
  #flush(c: Conn<KvClient>): void {
    const q = this.#fifo.get(c);
    if (!q) return;
    let n = 0;
    while (n < q.length && q[n]!.out) this.#h.reply(c, q[n++]!.out!);
    if (n < q.length) {
      if (n) q.splice(0, n);
      return;
    }
    this.#fifo.delete(c);
    const resume = this.#drain.get(c);
    if (resume) {
      this.#drain.delete(c);
      resume();
    }
  }

  /**
   * A client-like object whose replies are captured as bytes (copied out of PM now: a value's
   * buffers may be reused once the next write of its key supersedes it).
   */
  #capture(done: (bytes: Uint8Array) => void): Conn<KvClient> {
    const pool = this.#h.pool;
    const st: KvClient = {
      id: 0,
      name: null,
      authed: true,
      authFails: 0,
      heldUntil: 0,
      asking: false,
      readonly: false,
    };
    let answered = false;
    const c = {
      id: 0,
      state: st,
      closing: false,
      finished: false,
      gone: false,
      pending: 0,
      lastData: 0,
      requestEnded() {},
      abort() {},
      reply(parts: Part[]) {
        if (answered) {
          // a command answers once; a second reply would be a bug: drop its references
          freeNamedParts(pool, parts);
          return;
        }
        answered = true;
        done(partsBytes(pool, parts));
      },
    };
    return c as unknown as Conn<KvClient>;
  }

  /**
   * The turn's end, before the group commit: replies that came are queued on their clients
   * (and those clients resume), requests that came are run.
   */
  beforeCommit(): void {
    if (this.#inbox.length === 0) return;
    const inbox = this.#inbox;
    this.#inbox = [];
    for (const { from, msg } of inbox) {
      this.stats.batchesIn++;
      if (msg.live) this.#named(from, msg.live);
      if (msg.rel) for (const id of ids(msg.rel)) this.#unlend(from, id);
      if (msg.rep) this.#replies(msg.rep);
      if (msg.req) this.#requests(from, msg.req);
    }
  }

  /** Ends the loan `id` kept for worker `w` (released, or named by none of its records). */
  #unlend(w: number, id: number): void {
    if (this.#h.store.unlend(this.#loans.key(w, id))) this.stats.unlent++;
  }

  /** After a restart: worker `w`'s records name these loans of this worker's; the others go. */
  #named(w: number, live: ArrayBuffer): void {
    for (const id of this.#loans.named(w, ids(live))) this.#unlend(w, id);
  }

  #replies(buf: ArrayBuffer): void {
    const v = new DataView(buf);
    const u8 = new Uint8Array(buf);
    let at = 0;
    while (at + 8 <= buf.byteLength) {
      const id = v.getUint32(at, true);
      const len = v.getUint32(at + 4, true);
      at += 8;
      const bytes = u8.subarray(at, at + len);
      at += len;
      const p = this.#pending.get(id);
      if (!p) continue;
      this.#pending.delete(id);
      this.#answered(p.job, p.piece, bytes);
    }
  }

  #requests(from: number, buf: ArrayBuffer): void {
    const v = new DataView(buf);
    const u8 = new Uint8Array(buf);
    let at = 0;
    while (at + 8 <= buf.byteLength) {
      const id = v.getUint32(at, true);
      const argc = v.getUint32(at + 4, true);
      at += 8;
      const args: Arg[] = [];
      for (let i = 0; i < argc; i++) {
        let len = v.getUint32(at, true);
        at += 4;
        if (len & LOAN_ARG) {
          // a value the sender keeps: its name
          len &= ~LOAN_ARG;
          const r = decodeRemote(u8, at, len);
          at += len;
          if (!r) throw new RangeError(`pmstack: worker ${from} sent a loan that is not one`);
          r.worker = from;
          args.push({ src: null, at: 0, bytes: null, writer: null, len: r.len, full: false, remote: r });
          continue;
        }
        const b = u8.subarray(at, at + len);
        at += len;
        args.push({ src: b, at: 0, bytes: b, writer: null, len, full: false, remote: null });
      }
      this.stats.served++;
      const owed = this.#owed[from]!;
      const cap = this.#capture((bytes) => {
        const seq = this.#h.lastSeq();
        owed.push({ id, bytes, waitSeq: seq > this.#h.durableSeq() ? seq : 0 });
      });
      this.#h.runServed(cap, args);
      // a loan no command took (an error, SET NX on a key that exists...) goes back at once
      for (const a of args) {
        if (!a.remote) continue;
        this.#releases[from]!.push({ id: a.remote.id, seq: 0 });
        a.remote = null;
      }
    }
  }

  /** After the group commit: every batch goes out (replies whose records are durable, requests). */
  afterCommit(): void {
    const durable = this.#h.durableSeq();
    const named = this.#loans.live(); // once after a start: the loans of each that this one's records name
    for (let w = 0; w < this.count; w++) {
      if (w === this.index) continue;
      const owed = this.#owed[w]!;
      const ro = this.#repOut[w]!;
      let n = 0;
      while (n < owed.length && owed[n]!.waitSeq <= durable) {
        const o = owed[n++]!;
        ro.u32(o.id);
        ro.u32(o.bytes.length);
        ro.bytes(o.bytes);
      }
      if (n) owed.splice(0, n);
      // requests up to the first whose loan is not durable yet
      const ro2 = this.#reqOut[w]!;
      const marks = this.#reqWait[w]!;
      let upTo = ro2.len;
      let k = 0;
      while (k < marks.length && marks[k]!.seq <= durable) k++;
      if (k < marks.length) upTo = marks[k]!.start;
      if (k) marks.splice(0, k);
      for (const m of marks) m.start -= upTo;
      const req = ro2.take(upTo);
      const rep = ro.take();
      // releases whose superseding records are durable; the loans named, once after a start
      const rels = this.#releases[w]!;
      let r = 0;
      const out: number[] = [];
      for (let i = 0; i < rels.length; i++) {
        if (rels[i]!.seq <= durable) out.push(rels[i]!.id);
        else rels[r++] = rels[i]!;
      }
      rels.length = r;
      const rel = out.length ? idBuffer(out) : null;
      const live = named ? idBuffer(named[w]!) : null;
      if (!req && !rep && !rel && !live) continue;
      const transfer: ArrayBuffer[] = [];
      if (req) transfer.push(req);
      if (rep) transfer.push(rep);
      if (rel) transfer.push(rel);
      if (live) transfer.push(live);
      this.stats.batchesOut++;
      this.#t.send(w, { req, rep, rel, live }, transfer);
    }
  }

  /** Replies owed to other workers that wait for durability (a later turn sends them). */
  get owed(): number {
    let n = 0;
    for (const o of this.#owed) n += o.length;
    return n;
  }
}

/** A reply's parts as one byte string (copies; drops the references a reply holds on kept buffers). */
export function partsBytes(pool: Pool, parts: Part[]): Uint8Array {
  let n = 0;
  for (const p of parts) {
    // kv's replies are whole when made: a pulled part (httpd's remote objects) never comes here
    if (!(p instanceof Uint8Array) && "pull" in p)
      throw new RangeError("pmstack: a pulled reply part has no bytes yet");
    n += p instanceof Uint8Array ? p.length : "stream" in p ? p.end - p.start : p.length;
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    if (p instanceof Uint8Array) {
      out.set(p, at);
      at += p.length;
    } else if ("stream" in p) {
      const cur = new ObjectCursor(pool, p.stream, p.start, p.end);
      for (let r = cur.next(); r; r = cur.next()) {
        out.set(pool.viewName(r), at);
        at += r.length;
      }
    } else if (!("pull" in p)) {
      out.set(pool.viewName(p), at);
      at += p.length;
      pool.free(p.index);
    }
  }
  return out;
}

/** Loan ids as a message's buffer (u32 high, u32 low each). */
function idBuffer(list: number[]): ArrayBuffer {
  const v = new DataView(new ArrayBuffer(8 * list.length));
  for (let i = 0; i < list.length; i++) {
    v.setUint32(8 * i, Math.floor(list[i]! / 0x1_0000_0000), true);
    v.setUint32(8 * i + 4, list[i]! >>> 0, true);
  }
  return v.buffer as ArrayBuffer;
}

function ids(b: ArrayBuffer): number[] {
  const v = new DataView(b);
  const out: number[] = [];
  for (let at = 0; at + 8 <= b.byteLength; at += 8)
    out.push(v.getUint32(at, true) * 0x1_0000_0000 + v.getUint32(at + 4, true));
  return out;
}

/** The client's one reply from its pieces' (each a whole RESP reply). */
function joinReplies(job: Job): Uint8Array {
  const rs = job.replies as Uint8Array[];
  if (job.join === "one") return rs[0]!;
  // an error in any piece is the answer (as the command would have failed on one node)
  for (const r of rs) if (r[0] === 0x2d /* - */) return r;
  if (job.join === "ok") return OK;
  if (job.join === "sum") {
    let n = 0;
    for (const r of rs) n += Number(dec.decode(r.subarray(1, r.length - 2)));
    return int(n);
  }
  // mget: each piece's array of bulk strings, placed back at its keys' positions
  const n = job.positions.reduce((s, p) => s + p.length, 0);
  const items: Uint8Array[] = new Array(n);
  for (let p = 0; p < rs.length; p++) {
    const elems = splitArray(rs[p]!);
    const pos = job.positions[p]!;
    for (let i = 0; i < pos.length; i++) items[pos[i]!] = elems[i]!;
  }
  const head = arrayHead(n);
  let len = head.length;
  for (const it of items) len += it.length;
  const out = new Uint8Array(len);
  out.set(head);
  let at = head.length;
  for (const it of items) {
    out.set(it, at);
    at += it.length;
  }
  return out;
}

/** The elements of a RESP2 array of bulk strings (each as its own bytes, head included). */
function splitArray(r: Uint8Array): Uint8Array[] {
  let at = 0;
  const line = (): number => {
    // the number after the type byte, up to CRLF
    let i = at + 1;
    let neg = false;
    let v = 0;
    if (r[i] === 0x2d) {
      neg = true;
      i++;
    }
    for (; r[i] !== 0x0d; i++) v = v * 10 + (r[i]! - 0x30);
    at = i + 2;
    return neg ? -v : v;
  };
  const n = line();
  const out: Uint8Array[] = [];
  for (let k = 0; k < n; k++) {
    const start = at;
    const len = line();
    if (len >= 0) at += len + 2;
    out.push(r.subarray(start, at));
  }
  return out;
}

/** The error a command whose keys span workers gets (Redis Cluster's, with how to avoid it). */
export const CROSSSLOT =
  "CROSSSLOT Keys in request don't hash to the same slot (this server shards keys over its workers: " +
  "give the keys one hash tag, as in {user1}:a and {user1}:b, to keep them together)";

// Objects of any size, zero copy: the bytes stay in the pool buffers they arrived in, and a
// log record names them. A record holds up to LOG_MAX_NAMES items; an item is a data range or
// an extent node (assembly/pm/extent.ts: a pool buffer holding up to 254 items of lower height),
// so any object is a short list of items over a tree. ObjectWriter builds that list as the
// bytes arrive (bounded memory: no list of every range is kept in JS); ObjectCursor walks an
// object's data ranges from any offset, lazily, for streaming replies and range requests.

import { BUF_SIZE, E_EMPTY, ITEM_NODE, NODE_HDR, NODE_MAGIC, NODE_MAX, NODE_MAX_HEIGHT } from "./abi.js";
import type { CoreExports } from "./core.js";
import { PoolExhaustedError, PmstackError } from "./errors.js";
import type { Pool, BufferName } from "./pool.js";

/** Most items one log record holds (the core's LOG_MAX_NAMES). */
export const OBJECT_ITEMS_MAX = 64;
const E_EXT_FULL = -50;
const E_EXT_GROUP = -52;
const PUSH_DURABLE = 1;

/**
 * An item of an object: a data range (a BufferName), or an extent node (`height` >= 1, offset
 * and length 0) whose leaves are more data ranges.
 */
export type Item = BufferName & { readonly height?: number };

/** An object as a record names it: its items, in order. */
export interface ObjectRef {
  names: Item[];
}

/** What an ObjectWriter needs from its log: seal the group when the flush table is full. */
export interface FlushTarget {
  readonly pool: Pool;
  flush(): boolean;
}

/** The 64-bit form's low word of an item (offset << 16 | length, or the node mark and height). */
export const itemLow = (it: Item): number =>
  it.height ? ((ITEM_NODE | it.height) << 16) >>> 0 : ((it.offset << 16) | it.length) >>> 0;

/** Decodes an item from its 64-bit form's words. */
export const itemOf = (index: number, lo: number): Item => {
  const o = lo >>> 16;
  return o & ITEM_NODE
    ? { index, offset: 0, length: 0, height: o & 0x7fff }
    : { index, offset: o, length: lo & 0xffff };
};

/**
 * Builds an object from items pushed in order: data ranges as they arrive, or whole items of an
 * existing object (an APPEND shares the old value's nodes). While the object is short the
 * writer holds one reference on each item's buffer; beyond `room` items it builds a tree and
 * holds its open nodes. `finish(room)` returns the items to append (at most `room`), and
 * `release()` drops the writer's references (after the log took its own). `abort()` drops
 * everything: an object never appended leaves no buffer behind. Every new data range pushed
 * into a node is queued for persistence at once, so a large object becomes durable as it
 * arrives, group by group (write-behind), and the record that names it waits only for the last
 * of them.
 */
export class ObjectWriter {
  readonly pool: Pool;
  #log: FlushTarget;
  #e: CoreExports;
  #room: number;
  /** The items while there are at most `room` of them; each holds a reference of the writer's. */
  #direct: Item[] = [];
  /** Which direct items are durable already (pushObject's); null while none is. */
  #directDurable: boolean[] | null = null;
  /** open[h - 1]: the open (unsealed) node of height h, or -1; the writer holds each one. */
  #open: number[] = [];
  #tree = false;
  #length = 0;
  #done: ObjectRef | null = null;
  #dead = false;

  /** `room`: the items the record will leave for this object (default all of them). */
  constructor(log: FlushTarget, room = OBJECT_ITEMS_MAX) {
    this.pool = log.pool;
    this.#log = log;
    this.#e = log.pool.core.exports;
    this.#room = Math.max(1, Math.min(OBJECT_ITEMS_MAX, room));
  }

  /** Data bytes pushed so far. */
  get length(): number {
    return this.#length;
  }

  /** Appends the data range `name` (a held buffer's bytes, never written again). */
  push(name: BufferName): void {
    this.pushRange(name.index, name.offset, name.length);
  }

  /** push() of the range (index, offset, length): a receive path's form, no name object needed. */
  pushRange(index: number, offset: number, length: number): void {
    this.#live();
    if (length === 0) return;
    this.#add({ index, offset, length }, false);
    this.#length += length;
  }

  /**
   * Appends every item of an existing object (an old value an APPEND extends), sharing its
   * nodes and data: no byte is copied or queued for persistence again (they are durable, or in
   * an earlier group than the record that will name them). An object that is one root lends
   * the root's children instead of the root, so that appending to a tree does not nest it one
   * level deeper each time: the new tree is as tall as the old one, plus the growth its new
   * data brings.
   */
  pushObject(obj: ObjectRef): void {
    this.#live();
    const e = this.#e;
    const root = obj.names.length === 1 && obj.names[0]!.height ? obj.names[0]! : null;
    let items: readonly Item[] = obj.names;
    if (root) {
      const u32 = new Uint32Array(this.pool.core.memory.buffer);
      const at = e.extInfo(root.index, 4) >>> 2;
      const count = e.extInfo(root.index, 1);
      items = Array.from({ length: count }, (_, k) => itemOf(u32[at + 2 * k + 1]!, u32[at + 2 * k]!));
    }
    for (const it of items) {
      this.#add(it.height ? it : { index: it.index, offset: it.offset, length: it.length }, true);
      this.#length += it.height ? e.extInfo(it.index, 2) : it.length;
    }
  }

  /**
   * The finished object's items (at most the writer's room). The writer still holds its
   * references until release(): append the items, then release.
   */
  finish(): ObjectRef {
    if (this.#done) return this.#done;
    this.#live();
    if (!this.#tree)
      this.#done = { names: this.#direct }; // never changed again (see #live, release)
    else {
      // seal bottom up: every open node goes into the one above (made if need be); the top is the root
      const top = this.#open.length;
      for (let h = 1; h < top; h++) this.#lift(h);
      const root = this.#open[top - 1]!;
      this.#seal(root);
      this.#done = { names: [{ index: root, offset: 0, length: 0, height: top }] };
    }
    return this.#done;
  }

  /** Drops the writer's references (the log took its own on what it appended). */
  release(): void {
    if (this.#dead) return;
    this.#dead = true;
    for (const d of this.#direct) this.pool.free(d.index);
    // an open node is referenced only by the writer (one pushed into its parent left the
    // list): freeing it frees everything under it
    for (const n of this.#open) if (n >= 0) this.pool.free(n);
    this.#direct = [];
    this.#open = [];
  }

  /** Gives up the object: every buffer only it held is free again. */
  abort(): void {
    this.release();
  }

  #live(): void {
    if (this.#dead) throw new PmstackError("ESTATE", "pmstack: this ObjectWriter was released");
    if (this.#done) throw new PmstackError("ESTATE", "pmstack: this ObjectWriter is finished");
  }

  #add(it: Item, durable: boolean): void {
    if (!this.#tree) {
      if (this.#direct.length < this.#room) {
        this.pool.ref(it.index);
        if (durable) (this.#directDurable ??= this.#direct.map(() => false)).push(true);
        else this.#directDurable?.push(false);
        this.#direct.push(it);
        return;
      }
      // the object outgrows the record: its items move into a tree, in order
      this.#tree = true;
      const direct = this.#direct;
      const dur = this.#directDurable;
      this.#direct = [];
      this.#directDurable = null;
      for (let k = 0; k < direct.length; k++) {
        this.#pushAt(direct[k]!, dur?.[k] ?? false);
        this.pool.free(direct[k]!.index); // its node holds its own reference now
      }
    }
    this.#pushAt(it, durable);
  }

  /**
   * Pushes an item into the open node one level above its height, after lifting every lower
   * open node into the levels above (they hold earlier items: order is kept).
   */
  #pushAt(it: Item, durable: boolean): void {
    const level = (it.height ?? 0) + 1;
    for (let h = 1; h < level && h < this.#open.length; h++) if (this.#open[h - 1]! >= 0) this.#lift(h);
    this.#into(level, it, durable);
  }

  /** Pushes `it` into the open node of height `level` (a full one rotates into the level above). */
  #into(level: number, it: Item, durable: boolean): void {
    if (level > NODE_MAX_HEIGHT)
      throw new PmstackError("E2BIG", `pmstack: an object's tree would be taller than ${NODE_MAX_HEIGHT} levels`);
    const e = this.#e;
    const off = it.height ? ITEM_NODE | it.height : it.offset;
    const flags = durable ? PUSH_DURABLE : 0;
    let r = e.extPush(this.#openAt(level), it.index, off, it.length, flags);
    if (r === E_EXT_FULL) {
      this.#lift(level);
      r = e.extPush(this.#openAt(level), it.index, off, it.length, flags);
    }
    if (r === E_EXT_GROUP) {
      this.#log.flush(); // the open group's flush table is full: seal it, go on in a new one
      r = e.extPush(this.#openAt(level), it.index, off, it.length, flags);
    }
    if (r < 0) throw new PmstackError("ECORE", `pmstack: ObjectWriter: core error ${r} adding an item`);
  }

  /** Seals the open node of height h and pushes it into the open node of height h + 1. */
  #lift(h: number): void {
    const node = this.#open[h - 1]!;
    if (node < 0) return;
    this.#seal(node);
    this.#open[h - 1] = -1;
    this.#into(h + 1, { index: node, offset: 0, length: 0, height: h }, true);
    this.pool.free(node); // its parent holds it now
  }

  #openAt(h: number): number {
    while (this.#open.length < h) this.#open.push(-1);
    let n = this.#open[h - 1]!;
    if (n < 0) {
      n = this.#e.extNew(h);
      if (n === E_EMPTY)
        throw new PoolExhaustedError("EEMPTY", "pmstack: no free buffer left for the object's extent node");
      if (n < 0) throw new PmstackError("ECORE", `pmstack: ObjectWriter: core error ${n} making a node`);
      this.#open[h - 1] = n;
    }
    return n;
  }

  #seal(node: number): void {
    let r = this.#e.extSeal(node);
    if (r === E_EXT_GROUP) {
      this.#log.flush();
      r = this.#e.extSeal(node);
    }
    if (r < 0) throw new PmstackError("ECORE", `pmstack: ObjectWriter: core error ${r} sealing a node`);
  }
}

/** Data bytes of an object. */
export function objectLength(pool: Pool, obj: ObjectRef): number {
  const e = pool.core.exports;
  let n = 0;
  for (const x of obj.names) n += x.height ? e.extInfo(x.index, 2) : x.length;
  return n;
}

/**
 * Walks an object's data ranges in order, from byte `start` up to byte `end` (exclusive),
 * trimming the first and last. Lazy: at any time it holds one position per tree level, so a
 * gigabyte object streams with the same memory as a kilobyte one. The object must stay alive
 * while the cursor is used (a reference on its top-level names: see PmLog.pin).
 */
export class ObjectCursor {
  /** This thread's pool (its core answers for nodes), or null for another worker's (#peer). */
  #e: CoreExports | null;
  #peer: PeerPool | null;
  #u32: Uint32Array;
  #top: Item[];
  #topAt = 0;
  /** Per open level (from the top node down): node index and next child. */
  #stack: { node: number; at: number; count: number; names: number; h: number }[] = [];
  #pos = 0; // object offset of the next range's first byte
  #end: number;
  #skip: number;

  /**
   * `pool`: this thread's pool, or another worker's memory (a PeerPool: its nodes are read where
   * they lie and checked, with no call into that worker's core; the ranges returned are that
   * pool's, to read with peerView).
   */
  constructor(pool: Pool | PeerPool, obj: ObjectRef, start = 0, end = Infinity) {
    if ("core" in pool) {
      this.#e = pool.core.exports;
      this.#peer = null;
      this.#u32 = new Uint32Array(pool.core.memory.buffer);
    } else {
      this.#e = null;
      this.#peer = pool;
      this.#u32 = new Uint32Array(pool.bytes.buffer, pool.bytes.byteOffset, pool.bytes.byteLength >>> 2);
    }
    this.#top = obj.names;
    this.#end = end;
    this.#skip = Math.max(0, start);
  }

  /** The next data range (trimmed to [start, end)), or null at the end. */
  next(): BufferName | null {
    for (;;) {
      if (this.#pos >= this.#end) return null;
      const r = this.#nextRaw();
      if (!r) return null;
      const from = this.#pos;
      this.#pos += r.length;
      if (this.#pos <= this.#skip) continue; // wholly before start
      let off = r.offset;
      let len = r.length;
      if (from < this.#skip) {
        off += this.#skip - from;
        len -= this.#skip - from;
      }
      if (this.#pos > this.#end) len -= this.#pos - this.#end;
      if (len <= 0) continue;
      return { index: r.index, offset: off, length: len };
    }
  }

  /** The next untrimmed data range, skipping whole subtrees that end before `start`. */
  #nextRaw(): BufferName | null {
    const u32 = this.#u32;
    for (;;) {
      const top = this.#stack[this.#stack.length - 1];
      let it: Item;
      if (!top) {
        const t = this.#top[this.#topAt];
        if (!t) return null;
        this.#topAt++;
        it = t;
      } else {
        if (top.at >= top.count) {
          this.#stack.pop();
          continue;
        }
        const w = (top.names >>> 2) + 2 * top.at++;
        it = itemOf(u32[w + 1]!, u32[w]!);
      }
      if (this.#peer) this.#peerCheck(it, top ? top.h : NODE_MAX_HEIGHT + 1);
      if (!it.height) return it;
      if (this.#subtreeSkipped(it.index)) continue;
      this.#enter(it.index, it.height);
    }
  }

  /**
   * A peer's item is checked before it is used: a data range inside that pool's memory and its
   * buffer, a node below its parent's height (so a damaged tree cannot loop) whose header has
   * the item's height.
   */
  #peerCheck(it: Item, below: number): void {
    const p = this.#peer!;
    const at = p.base + it.index * BUF_SIZE;
    const ok = it.height
      ? it.height < below && at + BUF_SIZE <= p.bytes.length && p.bytes[at + 4] === it.height
      : it.index >= 0 && it.offset + it.length <= BUF_SIZE && at + BUF_SIZE <= p.bytes.length;
    if (!ok)
      throw new PmstackError("ECORRUPT", `pmstack: an item (buffer ${it.index}) of another worker's object is damaged`);
  }

  /** A node wholly before `start` is stepped over by its byte total. */
  #subtreeSkipped(node: number): boolean {
    const bytes = this.#e ? this.#e.extInfo(node, 2) : this.#peerNode(node, 2);
    if (bytes < 0) throw new PmstackError("ECORRUPT", `pmstack: buffer ${node} is not an extent node`);
    if (this.#pos + bytes <= this.#skip) {
      this.#pos += bytes;
      return true;
    }
    return false;
  }

  #enter(node: number, h: number): void {
    const e = this.#e;
    const count = e ? e.extInfo(node, 1) : this.#peerNode(node, 1);
    const names = (e ? e.bufAddress(node) : this.#peer!.base + node * BUF_SIZE) + NODE_HDR;
    if (count <= 0 || names + count * 8 > this.#u32.byteLength || count > BUF_SIZE / 8)
      throw new PmstackError("ECORRUPT", `pmstack: extent node ${node} is damaged`);
    this.#stack.push({ node, at: 0, count, names, h });
  }

  /**
   * extInfo's count (1) or byte total (2) of node `node` in a peer's pool, read from its header
   * (magic, height, count checked), or -1 when it is not a sealed node there.
   */
  #peerNode(node: number, what: 1 | 2): number {
    const p = this.#peer!;
    const at = p.base + node * BUF_SIZE;
    if (node < 0 || at + BUF_SIZE > p.bytes.length) return -1;
    const dv = new DataView(p.bytes.buffer, p.bytes.byteOffset + at, NODE_HDR);
    const h = dv.getUint8(4);
    const count = dv.getUint16(6, true);
    if (dv.getUint32(0, true) !== NODE_MAGIC || h < 1 || h > NODE_MAX_HEIGHT || count < 1 || count > NODE_MAX)
      return -1;
    return what === 1 ? count : dv.getUint32(8, true) + dv.getUint32(12, true) * 0x1_0000_0000;
  }
}

/** Another worker's pool as this thread reads it: its memory (a shared one) and its buffer 0's address there. */
export interface PeerPool {
  bytes: Uint8Array;
  base: number;
}

/** The bytes of range `r` of a peer's pool (a view of its memory: read, never written). */
export function peerView(p: PeerPool, r: BufferName): Uint8Array {
  const at = p.base + r.index * BUF_SIZE + r.offset;
  if (r.index < 0 || r.offset + r.length > BUF_SIZE || at + r.length > p.bytes.length)
    throw new PmstackError(
      "ECORRUPT",
      `pmstack: range (${r.index}, ${r.offset}, ${r.length}) is not in the peer's pool`,
    );
  return p.bytes.subarray(at, at + r.length);
}

/**
 * Walks the data ranges of the item (`index`, `low`: an item's 64-bit form's words, a data range
 * or an extent node's root) in another worker's pool, in order, calling `f(address, length)`
 * for each, an address in `p.bytes`. It calls nothing in that worker's core (which runs on
 * another thread): an ObjectCursor over the peer reads and checks each node where it lies.
 * Returns the data bytes walked; a damaged item throws ECORRUPT. The object must stay alive
 * meanwhile (the owner of a loan keeps it).
 */
export function walkPeerItem(p: PeerPool, index: number, low: number, f: (at: number, length: number) => void): number {
  const it = itemOf(index, low);
  if (!it.height) {
    // a data range: checked here, no cursor needed (a short value's one range)
    const v = peerView(p, it);
    if (it.length) f(v.byteOffset - p.bytes.byteOffset, it.length);
    return it.length;
  }
  const cur = new ObjectCursor(p, { names: [it] });
  let n = 0;
  for (let r = cur.next(); r; r = cur.next()) {
    f(p.base + r.index * BUF_SIZE + r.offset, r.length);
    n += r.length;
  }
  return n;
}

// A time queue for the fault injectors (FaultyWire, NicLoop's): a binary min-heap of items due
// at a time, ties broken by insertion order so that equal times keep their order.

export interface Timed {
  /** When the item is due. */
  at: number;
}

export class TimeQueue<T extends Timed> {
  #heap: { x: T; seq: number }[] = [];
  #seq = 0;

  get length(): number {
    return this.#heap.length;
  }

  /** When the first item is due, or Infinity. */
  next(): number {
    return this.#heap.length ? this.#heap[0]!.x.at : Infinity;
  }

  push(x: T): void {
    const q = this.#heap;
    q.push({ x, seq: this.#seq++ });
    let i = q.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(i, p)) break;
      [q[i], q[p]] = [q[p]!, q[i]!];
      i = p;
    }
  }

  /** Removes and returns the first item if it is due by `now`. */
  popDue(now: number): T | undefined {
    const q = this.#heap;
    if (!q.length || q[0]!.x.at > now) return undefined;
    const top = q[0]!;
    const last = q.pop()!;
    if (q.length) {
      q[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < q.length && this.#less(l, m)) m = l;
        if (r < q.length && this.#less(r, m)) m = r;
        if (m === i) break;
        [q[i], q[m]] = [q[m]!, q[i]!];
        i = m;
      }
    }
    return top.x;
  }

  /** Every item, in no particular order (for freeing what is held). */
  items(): T[] {
    return this.#heap.map((h) => h.x);
  }

  clear(): void {
    this.#heap = [];
  }

  #less(i: number, j: number): boolean {
    const a = this.#heap[i]!;
    const b = this.#heap[j]!;
    return a.x.at < b.x.at || (a.x.at === b.x.at && a.seq < b.seq);
  }
}

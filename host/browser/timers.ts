// node:timers for the browser build: setImmediate and clearImmediate over a MessageChannel.
// MemoryPair asks for its next turn with setImmediate (host/paste.ts): as soon as the event loop
// is free, after the current task and its microtasks, without the 4 ms a nested setTimeout(0)
// is clamped to. One message runs every callback queued before it was delivered; callbacks
// queued while it runs wait for the next message, as Node runs them on the next iteration.

/** A queued callback, as Node's Immediate: pass it to clearImmediate to cancel it. */
export interface Immediate {
  /** Browsers keep no process alive: ref() and unref() change nothing (loop.ts refTimer calls them). */
  ref(): Immediate;
  unref(): Immediate;
  hasRef(): boolean;
}

class Queued implements Immediate {
  constructor(public run: (() => void) | null) {}
  ref(): Immediate {
    return this;
  }
  unref(): Immediate {
    return this;
  }
  hasRef(): boolean {
    return false;
  }
}

let queue: Queued[] = [];
let channel: MessageChannel | null = null;
let posted = false;

function drain(): void {
  posted = false;
  const batch = queue;
  queue = [];
  for (const q of batch) {
    const run = q.run;
    if (!run) continue;
    q.run = null;
    try {
      run();
    } catch (e) {
      // reported as uncaught, as Node would; the other callbacks still run
      queueMicrotask(() => {
        throw e;
      });
    }
  }
  if (queue.length > 0 && !posted) post();
}

function post(): void {
  if (!channel) {
    if (typeof MessageChannel !== "function")
      throw new Error("pmstack: setImmediate needs MessageChannel (a browser window or worker)");
    channel = new MessageChannel();
    channel.port1.onmessage = drain;
    // outside a browser (the bundle under Node or Deno) a port with a listener would hold the
    // process: a pending callback does not either in a page
    (channel.port1 as { unref?(): void }).unref?.();
  }
  posted = true;
  channel.port2.postMessage(null);
}

export function setImmediate<A extends unknown[]>(fn: (...args: A) => void, ...args: A): Immediate {
  if (typeof fn !== "function") throw new TypeError("pmstack: setImmediate needs a function");
  const q = new Queued(args.length ? () => fn(...args) : (fn as () => void));
  queue.push(q);
  if (!posted) post();
  return q;
}

export function clearImmediate(h: Immediate | null | undefined): void {
  if (h instanceof Queued) h.run = null;
}

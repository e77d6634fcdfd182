// A convenience API in Node's idiom over a pmstack stack: createServer / connect returning
// Duplex sockets like net.Socket. Received chunks are zero-copy Buffers over the PM buffers
// (Buffer.from(memory.buffer, offset, length): a view, not a copy); the PM buffer goes back to
// the pool when the chunk is garbage-collected (FinalizationRegistry). Under pool pressure
// chunks are copied instead (counted: stats.copiedChunks/copiedBytes) and their PM buffers
// freed at once, so GC latency can never exhaust the pool. Writes copy the user's bytes into
// fresh PM buffers (stats.writeCopiedBytes) and honour backpressure. See docs/api.md.

import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";
import { Duplex } from "node:stream";
import { refTimer } from "./loop.js";
import { copyIntoBuffers, freeRefused, PoolPressure, SendQueue, type Driver, type MemoryPair } from "./paste.js";
import type { BufferName } from "./pool.js";
import { formatIPv4, formatIPv6, parseIP } from "./addr.js";
import type { Stack, StackEvent } from "./stack.js";
import { R } from "./stack-abi.js";

export interface NetStackOptions {
  /** Copy received chunks instead of lending views while fewer buffers are free (default 1/4 of the pool). */
  lowWater?: number;
  /** Lend views again from this many free buffers (default min(pool, 2 x lowWater)). */
  highWater?: number;
  /** Always copy received chunks (no views; no GC involvement). */
  copyChunks?: boolean;
}

export interface NetStats {
  /** Chunks handed out as zero-copy views, and how many of those the GC has returned. */
  viewChunks: number;
  viewsFinalized: number;
  /** Chunks copied out of PM because of pool pressure (or copyChunks), and their bytes. */
  copiedChunks: number;
  copiedBytes: number;
  /** The user's written bytes copied into fresh PM buffers. */
  writeCopiedBytes: number;
  pressureEntered: number;
}

/** Node's error code and message for the reason of a RESET event. */
const REFUSE: Record<number, [string, string]> = {
  [R.RESET]: ["ECONNRESET", "connection reset by peer"],
  [R.TIMEOUT]: ["ETIMEDOUT", "connection timed out"],
  [R.REFUSED]: ["ECONNREFUSED", "connection refused"],
  [R.KEEPALIVE]: ["ETIMEDOUT", "keepalive timed out"],
};
/** Node's error code and message for the reason of an ERROR event (a refused listen or connect). */
const CMD_ERR: Record<number, [string, string]> = {
  [R.NOCONN]: ["EMFILE", "no free connection block"],
  [R.BADARG]: ["EINVAL", "invalid argument"],
  [R.INUSE]: ["EADDRINUSE", "address in use"],
  [R.NOADDR]: ["EADDRNOTAVAIL", "no usable source address of that family (none configured, or still tentative)"],
};

// A received chunk is a Buffer over PM, registered with the FinalizationRegistry: its PM buffer
// is freed when the chunk object is collected. Slices of it (subarray/slice, as Readable's
// read(n) makes) hold the chunk they came from, so a slice never outlives its bytes.
const ROOT = Symbol("pmstack.chunk");
const chunkProto: Buffer = Object.create(Buffer.prototype);
function rooted(child: Buffer, parent: Buffer): Buffer {
  Object.defineProperty(child, ROOT, { value: (parent as unknown as Record<symbol, Buffer>)[ROOT] ?? parent });
  Object.setPrototypeOf(child, chunkProto);
  return child;
}
Object.defineProperty(chunkProto, "subarray", {
  value: function (this: Buffer, start?: number, end?: number) {
    return rooted(Buffer.prototype.subarray.call(this, start, end), this);
  },
});
Object.defineProperty(chunkProto, "slice", {
  value: function (this: Buffer, start?: number, end?: number) {
    return rooted(Buffer.prototype.subarray.call(this, start, end), this);
  },
});

function netError(code: string, msg: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`${msg} (${code})`), { code, ...extra });
}

/** The Node-idiom layer of one stack (on a NIC through NicDriver, or one side of a MemoryPair). */
export class NetStack {
  readonly driver: Driver;
  readonly stack: Stack;
  readonly stats: NetStats = {
    viewChunks: 0,
    viewsFinalized: 0,
    copiedChunks: 0,
    copiedBytes: 0,
    writeCopiedBytes: 0,
    pressureEntered: 0,
  };
  readonly pressure: PoolPressure;
  readonly copyChunks: boolean;
  /** @internal */ sockets = new Map<number, Socket>();
  /** @internal a write waits for free buffers */ starved = false;
  /** @internal */ connecting = new Map<number, Socket>();
  #servers = new Map<number, Server>();
  #tag = 0x10000;
  #registry: FinalizationRegistry<number>;
  #closed = false;
  #abandoned = false;
  /** Ref'd sockets and servers: while there is one, the driver's loop holds the process. */
  #holders = new Set<Socket | Server>();
  /** What the driver was last told (drivers start ref'd). */
  #refd = true;

  constructor(driver: Driver, opts: NetStackOptions = {}) {
    this.driver = driver;
    this.stack = driver.stack;
    const total = this.stack.pool.bufferCount;
    const low = opts.lowWater ?? Math.floor(total / 4);
    this.pressure = new PoolPressure(low, opts.highWater ?? Math.min(total, 2 * low));
    this.copyChunks = opts.copyChunks ?? false;
    this.#registry = new FinalizationRegistry((index) => {
      if (this.#closed || this.stack.pool.closed) return;
      this.stats.viewsFinalized++;
      this.stack.pool.free(index);
      // writes waiting for free buffers (and withheld windows) can go on: ask for a turn
      if (this.starved) {
        this.starved = false;
        this.stack.onCommand?.();
      }
    });
    driver.attach({ onEvent: (ev) => this.#event(ev), onTurnEnd: () => this.#turnEnd() });
    driver.start();
    this.#applyRef();
  }

  /**
   * Whether this stack's loop keeps the process alive now: while one of its sockets (from
   * connect() or accept until it has closed, see Socket.ref) or listening servers is ref'd, as
   * node:net's handles do. With none, the loop's handles are unref'd (Driver.setRef).
   */
  hasRef(): boolean {
    return this.#refd;
  }

  /** @internal a socket or server starts or stops holding the process. */
  _hold(h: Socket | Server, on: boolean): void {
    if (this.#closed) return; // the driver is stopped: nothing of it holds the process
    if (on) this.#holders.add(h);
    else this.#holders.delete(h);
    this.#applyRef();
  }

  #applyRef(): void {
    const ref = this.#holders.size > 0;
    if (ref === this.#refd) return;
    this.#refd = ref;
    this.driver.setRef?.(ref);
  }

  /** As node:net's: createServer([options][, connectionListener]). */
  createServer(opts?: ServerOptions | ((s: Socket) => void), onConnection?: (s: Socket) => void): Server {
    if (typeof opts === "function") return new Server(this, {}, opts);
    return new Server(this, opts ?? {}, onConnection);
  }

  connect(opts: ConnectOptions, onConnect?: () => void): Socket {
    const s = new Socket(this, opts);
    const tag = this.#tag++;
    if (this.#tag > 0x7fffffff) this.#tag = 0x10000;
    const host = opts.host ?? "127.0.0.1";
    s.remoteAddress = host;
    s.remotePort = opts.port;
    s.connecting = true;
    if (onConnect) s.once("connect", onConnect);
    s._begin();
    if (this.#closed) {
      // a stopped stack (closed, or its host crashed in a simulation) sends nothing any more
      queueMicrotask(() => s.destroy(netError("ENETDOWN", `connect ${host}:${opts.port}: the stack is closed`)));
      return s;
    }
    this.connecting.set(tag, s);
    try {
      // the peer as node:net shows it: canonical text, IPv6 without brackets
      const ip = parseIP(host);
      s.remoteAddress = ip.family === 4 ? formatIPv4(ip.ipv4) : formatIPv6(ip.bytes);
      s.remoteFamily = ip.family === 4 ? "IPv4" : "IPv6";
      this.stack.connect(host, opts.port, { tag, localPort: opts.localPort });
    } catch (e) {
      this.connecting.delete(tag);
      queueMicrotask(() => s.destroy(e as Error));
    }
    return s;
  }

  /** Whether close() was called: connect() and listen() fail with ENETDOWN from then on. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * @internal The stack is gone at once (a simulated host's crash): every socket, connecting
   * ones too, is destroyed without a command to the core (no FIN, no RST), then as close().
   */
  _abandon(): void {
    this.#abandoned = true;
    for (const s of this.connecting.values()) s.destroy();
    this.connecting.clear();
    this.close();
  }

  /** @internal _abandon() was called: sockets tell the core nothing any more. */
  get _abandoned(): boolean {
    return this.#abandoned;
  }

  /** Stops the driver. Views still held keep reading the PM bytes; nothing is freed after this. */
  close(): void {
    this.#closed = true;
    for (const s of this.sockets.values()) s.destroy();
    this.driver.stop();
  }

  /** @internal Registers a server for a port; false if another one holds it. */
  registerServer(port: number, s: Server): boolean {
    const cur = this.#servers.get(port);
    if (cur && cur !== s) return false;
    this.#servers.set(port, s);
    return true;
  }

  /** @internal */ unregisterServer(port: number, s: Server): void {
    if (this.#servers.get(port) === s) this.#servers.delete(port);
  }

  /** @internal a received chunk as a Buffer: a view (freed by the GC) or, under pressure, a copy. */
  chunk(ev: StackEvent): Buffer {
    const pool = this.stack.pool;
    const v = pool.view(ev.buf, ev.off, ev.len);
    if (this.copyChunks || this.pressure.on) {
      const copy = Buffer.from(v); // the named copy: PM bytes into a JS buffer, PM buffer freed now
      pool.free(ev.buf);
      this.stats.copiedChunks++;
      this.stats.copiedBytes += ev.len;
      return copy;
    }
    const b = Buffer.from(v.buffer as ArrayBuffer, v.byteOffset, v.byteLength);
    Object.setPrototypeOf(b, chunkProto);
    this.#registry.register(b, ev.buf);
    this.stats.viewChunks++;
    return b;
  }

  #updatePressure(): void {
    const before = this.pressure.entered;
    this.pressure.update(this.stack.pool.freeCount);
    this.stats.pressureEntered += this.pressure.entered - before;
  }

  #event(ev: StackEvent): void {
    switch (ev.type) {
      case "DATA": {
        const s = this.sockets.get(ev.conn);
        if (!s) {
          this.stack.pool.free(ev.buf);
          return;
        }
        this.#updatePressure();
        s._data(this.chunk(ev), ev.len);
        return;
      }
      case "ACCEPTED": {
        const srv = this.#servers.get(ev.len);
        if (!srv || !srv._takes(ev.family, ev.conn)) {
          this.stack.abort(ev.conn);
          return;
        }
        const s = new Socket(this, { allowHalfOpen: srv.allowHalfOpen });
        s.remoteAddress = ev.addr;
        s.remoteFamily = ev.family === 6 ? "IPv6" : "IPv4";
        s.remotePort = ev.off;
        s.localPort = ev.len;
        s._begin();
        s._attach(ev.conn);
        srv._accept(s);
        return;
      }
      case "CONNECTED": {
        const s = this.connecting.get(ev.buf);
        this.connecting.delete(ev.buf);
        if (!s || s.destroyed) {
          this.stack.abort(ev.conn);
          return;
        }
        s.localPort = ev.len;
        s._attach(ev.conn);
        s.connecting = false;
        s.emit("connect");
        s.emit("ready");
        return;
      }
      case "PEER_CLOSED":
        this.sockets.get(ev.conn)?._peerEnd();
        return;
      case "CLOSED":
      case "RESET": {
        let s = this.sockets.get(ev.conn);
        if (!s) {
          s = this.connecting.get(ev.buf);
          this.connecting.delete(ev.buf);
        }
        if (!s) return;
        const [code, msg] = REFUSE[ev.aux] ?? ["ECONNRESET", "connection reset"];
        s._gone(
          ev.type === "RESET"
            ? netError(code, `${msg}: ${s.remoteAddress}:${s.remotePort}`, {
                address: s.remoteAddress,
                port: s.remotePort,
              })
            : null,
        );
        return;
      }
      case "SEND_REFUSED": {
        const s = this.sockets.get(ev.conn);
        const n = { index: ev.buf, offset: ev.off, length: ev.len };
        if (s && s._queue) s._queue.refused(n);
        else freeRefused(this.stack, [n]);
        return;
      }
      case "WRITABLE":
        this.sockets.get(ev.conn)?._queue?.writable();
        return;
      case "LISTENING":
        this.#servers.get(ev.off)?._listening();
        return;
      case "ERROR": {
        const [code, msg] = CMD_ERR[ev.aux] ?? ["EINVAL", "command failed"];
        const s = this.connecting.get(ev.conn);
        if (s) {
          this.connecting.delete(ev.conn);
          s.destroy(netError(code, `connect ${s.remoteAddress}:${s.remotePort}: ${msg}`));
          return;
        }
        const srv = this.#servers.get(ev.off);
        if (srv) srv._error(netError(code, `listen ${ev.off}: ${msg}`, { port: ev.off }));
        return;
      }
      case "UDP":
        this.stack.pool.free(ev.buf);
        return;
    }
  }

  #turnEnd(): void {
    this.#updatePressure();
    for (const s of this.sockets.values()) s._turn();
  }
}

export interface ServerOptions {
  /** Keep the writable side open after the peer's FIN (default false, as in node:net). */
  allowHalfOpen?: boolean;
  backlog?: number;
}

/** What listen() takes besides the port (node:net's listen options). */
export interface ListenOptions {
  port: number;
  /**
   * "::" (the default when the stack has IPv6): both families; "0.0.0.0": IPv4 peers only; one
   * of the stack's own addresses: that family only. Unset without IPv6: IPv4, as the stack's address.
   */
  host?: string;
  backlog?: number;
}

/** A listen host resolved: what address() says and the peers' family taken (0: both). */
interface ListenHost {
  address: string;
  family: "IPv4" | "IPv6";
  takes: 0 | 4 | 6;
  /** A specific IPv6 address listened on: connections must be to it. */
  local: string | null;
}

export class Server extends EventEmitter {
  readonly net: NetStack;
  readonly allowHalfOpen: boolean;
  listening = false;
  #port = -1;
  /** The address listened on as address() reports it, and the peers' family it takes (0: both). */
  #host: ListenHost | null = null;
  #backlog: number | undefined;
  #conns = new Set<Socket>();
  #closing = false;
  #refd = true;
  /** listen() was called and neither close() nor an error followed: the server holds the process if ref'd. */
  #active = false;

  constructor(net: NetStack, opts: ServerOptions, onConnection?: (s: Socket) => void) {
    super();
    this.net = net;
    this.allowHalfOpen = opts.allowHalfOpen ?? false;
    this.#backlog = opts.backlog;
    if (onConnection) this.on("connection", onConnection);
  }

  /**
   * As node:net's: listen(port, cb), listen(port, host, cb), listen(port, host, backlog, cb) or
   * listen({ port, host, backlog }, cb). One listener takes both families; `host` decides which
   * peers the server accepts and what address() says (see ListenOptions).
   */
  listen(port: number, cb?: () => void): this;
  listen(port: number, host: string, cb?: () => void): this;
  listen(port: number, host: string, backlog: number, cb?: () => void): this;
  listen(opts: ListenOptions, cb?: () => void): this;
  listen(
    a: number | ListenOptions,
    b?: string | number | (() => void),
    c?: number | (() => void),
    d?: () => void,
  ): this {
    const o: ListenOptions = typeof a === "object" ? { ...a } : { port: a };
    const rest = [b, c, d];
    const cb = rest.find((x) => typeof x === "function") as (() => void) | undefined;
    if (typeof a !== "object") {
      if (typeof b === "string") o.host = b;
      const bl = typeof b === "number" ? b : typeof c === "number" ? c : undefined;
      if (bl !== undefined) o.backlog = bl;
    }
    const port = o.port;
    if (o.backlog !== undefined) this.#backlog = o.backlog;
    this.#port = port;
    if (cb) this.once("listening", cb);
    const host = this.#resolveHost(o.host);
    if (typeof host === "string") {
      queueMicrotask(() =>
        this.emit("error", netError("EADDRNOTAVAIL", `listen ${o.host}:${port}: ${host}`, { port, address: o.host })),
      );
      return this;
    }
    this.#host = host;
    if (this.net.closed) {
      queueMicrotask(() => this.emit("error", netError("ENETDOWN", `listen ${port}: the stack is closed`, { port })));
      return this;
    }
    if (!this.net.registerServer(port, this)) {
      queueMicrotask(() => this.emit("error", netError("EADDRINUSE", `listen ${port}: address in use`, { port })));
      return this;
    }
    this.net.stack.listen(port, { backlog: this.#backlog });
    this.#setActive(true);
    return this;
  }

  /** As node:net's: a listening server keeps the process alive (the default). Returns this. */
  ref(): this {
    this.#refd = true;
    this.#setActive(this.#active);
    return this;
  }

  /** As node:net's: the process may exit while this server is its only ref'd holder. Returns this. */
  unref(): this {
    this.#refd = false;
    this.#setActive(this.#active);
    return this;
  }

  #setActive(on: boolean): void {
    this.#active = on;
    this.net._hold(this, on && this.#refd);
  }

  address(): { address: string; family: string; port: number } | null {
    if (!this.listening || !this.#host) return null;
    return { address: this.#host.address, family: this.#host.family, port: this.#port };
  }

  /** The listen host's meaning, or why the stack cannot listen there. */
  #resolveHost(host: string | undefined): ListenHost | string {
    const stack = this.net.stack;
    if (host === undefined || host === "")
      return stack.ip6
        ? { address: "::", family: "IPv6", takes: 0, local: null }
        : { address: formatIPv4(stack.ip), family: "IPv4", takes: 0, local: null };
    let ip: ReturnType<typeof parseIP>;
    try {
      ip = parseIP(host);
    } catch {
      return "not an IP address (host names are not resolved)";
    }
    if (ip.family === 4) {
      if (ip.ipv4 !== 0 && ip.ipv4 !== stack.ip) return `not this stack's address (${formatIPv4(stack.ip)})`;
      return { address: formatIPv4(ip.ipv4), family: "IPv4", takes: 4, local: null };
    }
    const text = formatIPv6(ip.bytes);
    if (text === "::") return { address: "::", family: "IPv6", takes: 0, local: null };
    const ours = stack.ip6Addresses().map((a) => a.address);
    if (!ours.includes(text)) return `not one of this stack's IPv6 addresses (${ours.join(", ") || "none"})`;
    return { address: text, family: "IPv6", takes: 6, local: text };
  }

  /** @internal whether this server takes a peer of `family` on connection `conn` (its listen host). */
  _takes(family: number, conn: number): boolean {
    const h = this.#host;
    if (!h || h.takes === 0) return true;
    if (h.takes !== family) return false;
    return h.local === null || this.net.stack.endpoints(conn)?.localAddress === h.local;
  }

  /** Stops accepting; 'close' follows once every accepted connection has closed. */
  close(cb?: (err?: Error) => void): this {
    if (cb) this.once("close", cb);
    if (this.#closing) return this;
    this.#closing = true;
    if (this.listening) this.net.stack.unlisten(this.#port);
    this.net.unregisterServer(this.#port, this);
    this.listening = false;
    this.#setActive(false);
    this.#maybeClosed();
    return this;
  }

  #maybeClosed(): void {
    if (this.#closing && this.#conns.size === 0) queueMicrotask(() => this.emit("close"));
  }

  /** @internal */ _listening(): void {
    this.listening = true;
    this.emit("listening");
  }
  /** @internal */ _error(e: Error): void {
    this.net.unregisterServer(this.#port, this);
    this.#setActive(false);
    this.emit("error", e);
  }
  /** @internal */ _accept(s: Socket): void {
    this.#conns.add(s);
    s.once("close", () => {
      this.#conns.delete(s);
      this.#maybeClosed();
    });
    this.emit("connection", s);
  }
}

export interface ConnectOptions {
  port: number;
  host?: string;
  localPort?: number;
  allowHalfOpen?: boolean;
  noDelay?: boolean;
}

/**
 * A TCP connection as a Duplex stream, like net.Socket. 'data' chunks are zero-copy views of PM
 * (valid while you hold the chunk itself: a slice does not keep it alive; see docs/api.md).
 */
export class Socket extends Duplex {
  readonly net: NetStack;
  conn = -1;
  connecting = false;
  /** The peer: dotted IPv4, or IPv6 without brackets (RFC 5952), as node:net shows it. */
  remoteAddress = "";
  remotePort = 0;
  localPort = 0;
  remoteFamily: "IPv4" | "IPv6" = "IPv4";
  #local: string | null = null;
  bytesRead = 0;
  /** @internal */ _queue: SendQueue | null = null;
  #owed = 0; // bytes received but not acknowledged to TCP (the reader is behind)
  #out: Uint8Array[] = []; // written, not yet copied into PM (pool low or not connected)
  #writeCb: ((e?: Error | null) => void) | null = null;
  #finalCb: ((e?: Error | null) => void) | null = null;
  #noDelay: boolean | undefined;
  #keepAlive: number | undefined; // setKeepAlive's idle ms (0: off), for a socket not yet connected
  #peerEnded = false;
  #finQueued = false;
  #gone = false;
  #written = 0;
  #reset = false; // resetAndDestroy: an RST even after end()
  #idleMs = 0; // setTimeout
  #idleTimer: unknown = null; // setTimeout's, or the driver's timers' (Driver.timers)
  #refd = true;
  /** 'close' was emitted. */
  #closeEmitted = false;
  /** Closed with end(): our bytes and FIN are acknowledged (the connection need not hold the process). */
  #finAcked = false;
  /** This socket holds the process now (NetStack._hold). */
  #holding = false;
  /** A connection was asked for or accepted: from now until it has closed, a ref'd socket holds. */
  #begun = false;
  /**
   * The idle timeout set by setTimeout() in ms, as node:net's `socket.timeout` (undefined until
   * set; 0 when turned off).
   */
  timeout: number | undefined = undefined;

  constructor(net: NetStack, opts: { allowHalfOpen?: boolean; noDelay?: boolean } = {}) {
    super({ allowHalfOpen: opts.allowHalfOpen ?? false, writableHighWaterMark: 64 * 1024 });
    this.net = net;
    this.#noDelay = opts.noDelay;
    this.once("close", () => {
      this.#closeEmitted = true;
      this.#updateHold();
    });
  }

  /** @internal connect() asked for the connection, or the server accepted it. */
  _begin(): void {
    this.#begun = true;
    this.#updateHold();
  }

  get bytesWritten(): number {
    return this.#written;
  }

  /** Our end's address (the connection's, from the core), dotted IPv4 or IPv6 text. */
  get localAddress(): string {
    if (this.#local) return this.#local;
    const st = this.net.stack;
    return this.remoteFamily === "IPv6" && st.ip6 ? formatIPv6(st.ip6.bytes) : formatIPv4(st.ip);
  }

  /** The family of both ends: "IPv4" or "IPv6". */
  get localFamily(): "IPv4" | "IPv6" {
    return this.remoteFamily;
  }

  address(): { address: string; family: string; port: number } {
    return { address: this.localAddress, family: this.localFamily, port: this.localPort };
  }

  setNoDelay(noDelay = true): this {
    this.#noDelay = noDelay;
    if (this.conn >= 0 && !this.#gone) this.net.stack.setNoDelay(this.conn, noDelay);
    return this;
  }

  /** As node:net's: opening, open, readOnly, writeOnly or closed. */
  get readyState(): "opening" | "open" | "readOnly" | "writeOnly" | "closed" {
    if (this.connecting) return "opening";
    if (this.readable && this.writable) return "open";
    if (this.readable) return "readOnly";
    if (this.writable) return "writeOnly";
    return "closed";
  }

  /** As node:net's `pending`: true until the connection is established, and again once destroyed. */
  get pending(): boolean {
    return this.conn < 0 || this.connecting || this.destroyed;
  }

  /**
   * As node:net's: a ref'd socket (the default) keeps the process alive, from connect() or
   * accept until it has closed (a socket closed with end() until its bytes and FIN are
   * acknowledged, which the kernel would otherwise finish after the process). The stack's loop
   * is one for all its sockets: it holds the process while any socket or server of the stack is
   * ref'd, and its handles are unref'd when none is (NetStack.hasRef). The idle timer of
   * setTimeout() follows the socket. Returns this.
   */
  ref(): this {
    this.#refd = true;
    if (this.#idleTimer) refTimer(this.#idleTimer, true);
    this.#updateHold();
    return this;
  }

  /** As node:net's: this socket no longer keeps the process alive (see ref()). Returns this. */
  unref(): this {
    this.#refd = false;
    if (this.#idleTimer) refTimer(this.#idleTimer, false);
    this.#updateHold();
    return this;
  }

  /** Whether this socket holds the process now (ref'd and not finished); tells the stack on a change. */
  #updateHold(): void {
    let done = false;
    if (this.#closeEmitted) {
      if (this.conn < 0 || this.#gone || this.net.stack.pool.closed) done = true;
      else if (!this.#finAcked) {
        // closed with end(): done once our FIN is acknowledged (TCP closes the rest by itself)
        const st = this.net.stack.connectionState(this.conn);
        this.#finAcked = st === null || st === "FIN_WAIT_2" || st === "TIME_WAIT" || st === "CLOSED";
        done = this.#finAcked;
      } else done = true;
    }
    const hold = this.#begun && this.#refd && !done;
    if (hold === this.#holding) return;
    this.#holding = hold;
    this.net._hold(this, hold);
  }

  /**
   * As node:net's: after `ms` without bytes read or written, 'timeout' is emitted (the socket
   * stays open; the listener decides). 0 turns it off; `cb` is added as a 'timeout' listener.
   */
  setTimeout(ms: number, cb?: () => void): this {
    if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0)
      throw new RangeError(`pmstack: socket timeout must be a number >= 0 ms, got ${String(ms)}`);
    if (this.destroyed) return this; // as node:net: nothing to time any more
    this.#idleMs = ms;
    this.timeout = ms;
    if (cb) {
      if (ms === 0) this.off("timeout", cb);
      else this.once("timeout", cb);
    }
    this.#active();
    return this;
  }

  /** Bytes moved: the idle timer starts again. */
  #active(): void {
    this.#clearIdle();
    if (this.#idleMs > 0 && !this.destroyed) {
      const fire = () => {
        this.#idleTimer = null;
        this.emit("timeout");
      };
      const timers = this.net.driver.timers;
      this.#idleTimer = timers
        ? timers.setTimeout(fire, this.#idleMs)
        : refTimer(setTimeout(fire, this.#idleMs), this.#refd);
    }
  }

  /** Stops the idle timer, on whichever clock it runs. */
  #clearIdle(): void {
    const t = this.#idleTimer;
    this.#idleTimer = null;
    if (!t) return;
    const timers = this.net.driver.timers;
    if (timers) timers.clearTimeout(t);
    else clearTimeout(t as ReturnType<typeof setTimeout>);
  }

  /** As node:net's: end() once the writes are out, then destroy. */
  destroySoon(): void {
    if (this.writable) this.end();
    if (this.writableFinished) this.destroy();
    else this.once("finish", () => this.destroy());
  }

  /** As node:net's: closes the connection with an RST (even after end()) and destroys the socket. */
  resetAndDestroy(): this {
    this.#reset = true;
    this.destroy();
    return this;
  }

  /**
   * As node:net's: TCP keepalive probes after `initialDelay` ms idle (0: the stack's
   * `keepaliveMs` if configured, else 2 hours, Linux's default), or none. Before the handshake
   * it applies once connected. Returns this.
   */
  setKeepAlive(enable = false, initialDelay = 0): this {
    const ms = enable
      ? initialDelay > 0
        ? Math.floor(initialDelay)
        : this.net.stack.config("KEEPALIVE") || 7_200_000
      : 0;
    this.#keepAlive = ms;
    if (this.conn >= 0 && !this.#gone) this.net.stack.setKeepalive(this.conn, ms);
    return this;
  }

  /** @internal */ _attach(conn: number): void {
    this.conn = conn;
    const ends = this.net.stack.endpoints(conn);
    if (ends?.localAddress) this.#local = ends.localAddress;
    this._queue = new SendQueue(this.net.stack, conn);
    this.net.sockets.set(conn, this);
    if (this.#noDelay !== undefined) this.net.stack.setNoDelay(conn, this.#noDelay);
    if (this.#keepAlive !== undefined) this.net.stack.setKeepalive(conn, this.#keepAlive);
    this.#pump();
  }

  /** @internal */ _data(chunk: Buffer, len: number): void {
    this.bytesRead += len;
    if (this.#idleMs > 0) this.#active();
    if (this.destroyed) {
      // nobody reads any more: the bytes are dropped (a view is freed by the GC like any
      // other) and the window stays open so that the peer can finish
      this.net.stack.recvd(this.conn, len);
      return;
    }
    const more = this.push(chunk);
    if (more && this.#owed === 0) this.net.stack.recvd(this.conn, len);
    else this.#owed += len; // the reader is behind: the window closes until _read
  }

  /** @internal */ _peerEnd(): void {
    this.#peerEnded = true;
    this.push(null);
  }

  /** @internal the connection is gone (CLOSED, or RESET with an error). */
  _gone(err: Error | null): void {
    if (this.#gone) return;
    this.#gone = true;
    this.net.sockets.delete(this.conn);
    this._queue?.drop();
    this.#updateHold();
    if (err) {
      this.destroy(err);
      return;
    }
    if (!this.#peerEnded) this.push(null);
    this.#finishCallbacks(null);
    // both FINs went through: 'close' after the reader saw 'end'
    if (this.readableEnded || this.readableLength === 0) this.destroy();
    else this.once("end", () => this.destroy());
  }

  /** @internal end of a turn: retry copying, complete writes the stack accepted. */
  _turn(): void {
    if (this.#gone || this.conn < 0) return;
    if (this.#holding && this.#closeEmitted) this.#updateHold(); // closed with end(): FIN acknowledged yet?
    const q = this._queue!;
    q.settle();
    this.#pump();
    if (this.#out.length === 0 && q.idle) {
      const cb = this.#writeCb;
      this.#writeCb = null;
      cb?.();
      if (!this.#writeCb && this.#finalCb) {
        const f = this.#finalCb;
        this.#finalCb = null;
        q.close();
        this.#finQueued = true;
        f();
      }
    }
  }

  override _read(): void {
    if (this.#owed > 0 && this.conn >= 0 && !this.#gone) {
      this.net.stack.recvd(this.conn, this.#owed);
      this.#owed = 0;
    }
  }

  override _writev(chunks: { chunk: unknown }[], cb: (e?: Error | null) => void): void {
    for (const { chunk } of chunks) this.#out.push(chunk as Uint8Array);
    if (this.#idleMs > 0) this.#active();
    this.#writeCb = cb;
    this.#pump();
    this.net.stack.onCommand?.(); // get a turn even if the pool had no room yet
  }

  override _write(chunk: unknown, _enc: string, cb: (e?: Error | null) => void): void {
    this._writev([{ chunk }], cb);
  }

  override _final(cb: (e?: Error | null) => void): void {
    if (this.conn < 0 && !this.connecting) return cb();
    this.#finalCb = cb;
    this.net.stack.onCommand?.();
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    this.#clearIdle();
    if (this.conn >= 0 && !this.#gone && !err && this.#finQueued && !this.#reset) {
      // after end(): TCP finishes the close by itself (FIN, ACKs, TIME_WAIT); the CLOSED
      // event takes the connection off the table. Like node:net, no RST for a clean close.
      this.#out = [];
      this.#finishCallbacks(null);
      cb(null);
      return;
    }
    if (this.conn >= 0 && !this.#gone) {
      this.#gone = true;
      this.net.sockets.delete(this.conn);
      if (!this.net._abandoned) this.net.stack.abort(this.conn);
      this._queue?.drop();
    }
    this.#out = [];
    this.#finishCallbacks(err);
    cb(err);
  }

  #finishCallbacks(err: Error | null): void {
    const w = this.#writeCb;
    const f = this.#finalCb;
    this.#writeCb = this.#finalCb = null;
    w?.(err);
    f?.(err);
  }

  /** Copies queued writes into fresh PM buffers (the named write copy) while the pool has room. */
  #pump(): void {
    const q = this._queue;
    if (!q || this.#gone) return;
    const net = this.net;
    // leave the receive side room: never take the pool below its low-water mark for writes
    const reserve = Math.max(8, net.pressure.low >>> 1);
    while (this.#out.length) {
      const bytes = this.#out[0]!;
      const names: BufferName[] = [];
      const done = copyIntoBuffers(net.stack, bytes, reserve, names);
      for (const n of names) q.send(n);
      net.stats.writeCopiedBytes += done;
      this.#written += done;
      if (done < bytes.length) {
        this.#out[0] = bytes.subarray(done);
        net.starved = true;
        return;
      }
      this.#out.shift();
    }
  }
}

// ---- top-level, node:net-like ---------------------------------------------------------------------

/** Makes the Node-idiom layer of a stack from its driver (NicDriver, or `pair.a`/`pair.b` of a MemoryPair). */
export function createStack(driver: Driver, opts: NetStackOptions = {}): NetStack {
  return new NetStack(driver, opts);
}

/** Both sides of an in-process MemoryPair as NetStacks, started. */
export function createMemoryNet(pair: MemoryPair, opts: NetStackOptions = {}): { a: NetStack; b: NetStack } {
  return { a: new NetStack(pair.a, opts), b: new NetStack(pair.b, opts) };
}

export function createServer(opts: ServerOptions & { stack: NetStack }, onConnection?: (s: Socket) => void): Server {
  return opts.stack.createServer(opts, onConnection);
}

export function connect(opts: ConnectOptions & { stack: NetStack }, onConnect?: () => void): Socket {
  return opts.stack.connect(opts, onConnect);
}

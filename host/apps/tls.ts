// TLS for the applications (httpd, kv), under the connection layer (conn.ts): Node's own `tls`
// (OpenSSL; TLS 1.2 and 1.3 only) runs over each connection through a small Duplex.
//
// - In: the layer copies the ciphertext a DATA event names out of its PM buffer, frees the
//   buffer and reopens the window (TlsChannel.input); the TLSSocket decrypts it, and the
//   plaintext comes back to the layer (TlsSink.plain), which copies it into fresh PM buffers
//   and hands those to the app's parser exactly as DATA chunks: the app and its log name PM
//   buffers as without TLS, and recovery is unchanged. That copy is the one decryption forces.
// - Out: the layer writes reply bytes (text, kept ranges, streamed objects, read from PM) into
//   the TLSSocket; the ciphertext it produces (TlsSink.cipher) is copied into PM buffers and
//   sent under the connection's send-space backpressure; close_notify goes before the FIN.
// - Node's tls completes asynchronously (its JS stream wrapper answers on nextTick), so the
//   plaintext may arrive outside a loop turn: the layer queues it and wakes the loop, and
//   parses it at the turn's end, before the group commit (durable-before-reply holds).
// - Bad input: a first byte that cannot start a TLS handshake record (garbage, plain HTTP or
//   RESP on the TLS port) fails the connection at once; a handshake has `handshakeTimeoutMs`
//   (default 10 s) and `maxHandshakeBytes` (default 64 KiB) of input; at most `maxHandshakes`
//   (default 256) run at once (a new one evicts the oldest). Each failure is one log line
//   (rate limited) and a counter; the connection is reset and every buffer comes back.

import { readFileSync, statSync } from "node:fs";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { PmstackError } from "../errors.js";

export interface TlsOptions {
  /** PEM certificate chain and private key (the contents, not paths: see loadTlsFiles). */
  cert: string | Buffer;
  key: string | Buffer;
  /** PEM CA certificates: when given, clients must present a certificate signed by one. */
  ca?: string | Buffer;
  /** A handshake not done after this long fails (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Handshakes in progress at most; a new one evicts the oldest (default 256). */
  maxHandshakes?: number;
  /** Ciphertext a client may send before its handshake is done (default 64 KiB). */
  maxHandshakeBytes?: number;
  /** Where failure lines go (default console.error); at most 10 lines a second are printed. */
  log?: (line: string) => void;
}

export interface TlsStats {
  /** Handshakes completed, and by version. */
  handshakes: number;
  tls13: number;
  tls12: number;
  /** Handshakes in progress now. */
  handshaking: number;
  /** Connections whose first bytes cannot start a TLS handshake (garbage before the ClientHello). */
  garbage: number;
  /** Handshakes OpenSSL refused (bad ClientHello, no common version or cipher, alerts). */
  failed: number;
  /** Client certificates missing or not signed by --tls-ca. */
  badClientCert: number;
  timeouts: number;
  /** Handshakes ended to make room (maxHandshakes) or for sending too much (maxHandshakeBytes). */
  evicted: number;
  tooLarge: number;
  /** Errors on established sessions (bad records, alerts). */
  sessionErrors: number;
  /** Plaintext bytes decrypted and encrypted; ciphertext bytes received and sent. */
  plainIn: number;
  plainOut: number;
  cipherIn: number;
  cipherOut: number;
}

/** What the connection layer gives a channel. */
export interface TlsSink {
  /** Decrypted bytes (the channel does not use the Buffer again). */
  plain(chunk: Buffer): void;
  /** The client's TLS stream ended: no more plaintext. */
  end(): void;
  /** Ciphertext to send is waiting (TlsChannel.readCipher). */
  cipher(): void;
  /** Our TLS stream is finished (close_notify queued): the FIN may follow the ciphertext. */
  finished(): void;
  /** The channel failed (the reason is logged and counted): reset the connection. */
  fail(): void;
}

/** The first byte of a TLS handshake record (RFC 8446 §5.1: ContentType handshake). */
const HANDSHAKE = 0x16;

/**
 * Reads the PEM files of --tls-cert, --tls-key and --tls-ca, refusing a key file that every user
 * may read (a clear error naming the file and the fix).
 */
export function loadTlsFiles(files: { cert: string; key: string; ca?: string }): {
  cert: Buffer;
  key: Buffer;
  ca?: Buffer;
} {
  const read = (path: string, what: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (e) {
      throw new PmstackError("ETLS", `pmstack: ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
  };
  const mode = (() => {
    try {
      return statSync(files.key).mode;
    } catch (e) {
      throw new PmstackError("ETLS", `pmstack: --tls-key ${files.key}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
  })();
  if (mode & 0o004)
    throw new PmstackError(
      "ETLS",
      `pmstack: --tls-key ${files.key} is readable by every user (mode ${(mode & 0o777).toString(8)}): ` +
        `a private key must not be; chmod 600 ${files.key}`,
    );
  return {
    cert: read(files.cert, "--tls-cert"),
    key: read(files.key, "--tls-key"),
    ...(files.ca ? { ca: read(files.ca, "--tls-ca") } : {}),
  };
}

/** One server's TLS: the secure context, the handshake limits, the counters. */
export class TlsTerminator {
  readonly stats: TlsStats = {
    handshakes: 0,
    tls13: 0,
    tls12: 0,
    handshaking: 0,
    garbage: 0,
    failed: 0,
    badClientCert: 0,
    timeouts: 0,
    evicted: 0,
    tooLarge: 0,
    sessionErrors: 0,
    plainIn: 0,
    plainOut: 0,
    cipherIn: 0,
    cipherOut: 0,
  };
  readonly requestCert: boolean;
  readonly handshakeTimeoutMs: number;
  readonly maxHandshakes: number;
  readonly maxHandshakeBytes: number;
  readonly context: tls.SecureContext;
  /** Channels in their handshake, oldest first. */
  #handshaking = new Set<TlsChannel>();
  #sweep: ReturnType<typeof setInterval> | null = null;
  #log: (line: string) => void;
  #logWindow = 0;
  #logged = 0;
  #suppressed = 0;

  constructor(opts: TlsOptions) {
    this.requestCert = opts.ca !== undefined;
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 10_000;
    this.maxHandshakes = opts.maxHandshakes ?? 256;
    this.maxHandshakeBytes = opts.maxHandshakeBytes ?? 65536;
    this.#log = opts.log ?? ((l) => console.error(l));
    try {
      this.context = tls.createSecureContext({
        cert: opts.cert,
        key: opts.key,
        ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
        minVersion: "TLSv1.2",
        maxVersion: "TLSv1.3",
      });
    } catch (e) {
      throw new PmstackError("ETLS", `pmstack: TLS certificate or key: ${(e as Error).message}`);
    }
    this.#sweep = setInterval(() => this.#timeouts(), Math.min(1000, this.handshakeTimeoutMs));
    this.#sweep.unref?.();
  }

  /** A channel for a new connection from `peer` (for log lines). */
  open(peer: string, sink: TlsSink): TlsChannel {
    if (this.#handshaking.size >= this.maxHandshakes) {
      const oldest = this.#handshaking.values().next().value!;
      this.stats.evicted++;
      oldest.fail(`handshake evicted: ${this.maxHandshakes} handshakes in progress`);
    }
    const ch = new TlsChannel(this, peer, sink);
    this.#handshaking.add(ch);
    this.stats.handshaking = this.#handshaking.size;
    return ch;
  }

  /** Stops the handshake timer (the server is closing). */
  close(): void {
    if (this.#sweep) clearInterval(this.#sweep);
    this.#sweep = null;
  }

  /** @internal */ done(ch: TlsChannel): void {
    this.#handshaking.delete(ch);
    this.stats.handshaking = this.#handshaking.size;
  }

  /** @internal A failure line, at most 10 a second (the rest counted and summed up). */
  log(line: string): void {
    this.#window(Date.now());
    if (this.#logged++ < 10) this.#log(line);
    else this.#suppressed++;
  }

  /** Opens a new one-second log window once the last has passed, summing up what it held back. */
  #window(now: number): void {
    if (now - this.#logWindow < 1000) return;
    if (this.#suppressed) this.#log(`pmstack: tls: ${this.#suppressed} more failures not shown`);
    this.#logWindow = now;
    this.#logged = 0;
    this.#suppressed = 0;
  }

  #timeouts(): void {
    // failures held back are summed up within a second or so even if no other failure follows
    if (this.#suppressed) this.#window(Date.now());
    const now = performance.now();
    for (const ch of this.#handshaking) {
      if (now - ch.started < this.handshakeTimeoutMs) break; // oldest first
      this.stats.timeouts++;
      ch.fail(`handshake timed out after ${this.handshakeTimeoutMs} ms`);
    }
  }
}

/**
 * One connection's TLS session: ciphertext in (input), plaintext out to the sink; plaintext in
 * (write), ciphertext out (readCipher).
 */
export class TlsChannel {
  readonly started = performance.now();
  /** The handshake is done. */
  secure = false;
  /** Failed or destroyed: takes nothing more. */
  dead = false;
  /** Ciphertext waiting to be sent, in order. */
  #out: Buffer[] = [];
  #outAt = 0;
  #outBytes = 0;
  #in = 0;
  #t: TlsTerminator;
  #peer: string;
  #sink: TlsSink;
  #raw: Duplex;
  #sock: tls.TLSSocket;

  constructor(t: TlsTerminator, peer: string, sink: TlsSink) {
    this.#t = t;
    this.#peer = peer;
    this.#sink = sink;
    const self = this;
    this.#raw = new Duplex({
      allowHalfOpen: true,
      read() {},
      write(chunk: Buffer, _enc, cb) {
        self.#cipher(chunk);
        cb();
      },
      writev(chunks, cb) {
        // one hand-off for the lot: the layer copies them into PM buffers together
        for (const c of chunks) self.#cipher(c.chunk as Buffer, false);
        if (!self.dead && self.#outBytes) self.#sink.cipher();
        cb();
      },
      final(cb) {
        cb();
        if (!self.dead) self.#sink.finished();
      },
    });
    this.#sock = new tls.TLSSocket(this.#raw as never, {
      isServer: true,
      secureContext: t.context,
      requestCert: t.requestCert,
      rejectUnauthorized: t.requestCert,
    });
    const s = this.#sock;
    s.on("secure", () => this.#secure());
    s.on("data", (d: Buffer) => {
      if (this.dead) return;
      t.stats.plainIn += d.length;
      this.#sink.plain(d);
    });
    s.on("end", () => {
      if (!this.dead) this.#sink.end();
    });
    s.on("error", (e: NodeJS.ErrnoException) => {
      if (this.dead) return;
      if (this.secure) t.stats.sessionErrors++;
      else if (/certificate/i.test(e.message)) t.stats.badClientCert++;
      else t.stats.failed++;
      this.fail(`${this.secure ? "session" : "handshake"} failed: ${e.code ?? "error"}: ${e.message}`);
    });
  }

  /** Ciphertext received (copied here: the caller may free its buffer). */
  input(bytes: Uint8Array): void {
    if (this.dead || bytes.length === 0) return;
    const t = this.#t;
    t.stats.cipherIn += bytes.length;
    if (this.#in === 0 && bytes[0] !== HANDSHAKE) {
      t.stats.garbage++;
      const head = [...bytes.subarray(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join(" ");
      const text = JSON.stringify(String.fromCharCode(...bytes.subarray(0, 8)).replace(/[^\x20-\x7e]/g, "."));
      return this.fail(`not a TLS ClientHello: the first bytes are ${head} (${text}); is the client speaking TLS?`);
    }
    this.#in += bytes.length;
    if (!this.secure && this.#in > t.maxHandshakeBytes) {
      t.stats.tooLarge++;
      return this.fail(`more than ${t.maxHandshakeBytes} bytes before the handshake completed`);
    }
    this.#frame(bytes);
    this.#raw.push(Buffer.from(bytes));
  }

  /** Header bytes of the record now arriving (0..4 seen), and bytes left of its body. */
  #hdr = 0;
  #hdrLen = 0;
  #recLeft = 0;

  /** Follows the TLS record framing (5-byte headers, 16-bit lengths) of the ciphertext in. */
  #frame(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length;) {
      if (this.#recLeft > 0) {
        const k = Math.min(this.#recLeft, bytes.length - i);
        this.#recLeft -= k;
        i += k;
        continue;
      }
      const b = bytes[i++]!;
      if (this.#hdr === 3) this.#hdrLen = b << 8;
      else if (this.#hdr === 4) this.#recLeft = this.#hdrLen | b;
      this.#hdr = this.#hdr === 4 ? 0 : this.#hdr + 1;
    }
  }

  /** A TLS record is partly received: the plaintext it carries cannot reach the app yet. */
  get midRecord(): boolean {
    return this.#hdr > 0 || this.#recLeft > 0;
  }

  /** The client's FIN: the end of the ciphertext. */
  inputEnd(): void {
    if (!this.dead) this.#raw.push(null);
  }

  /** Plaintext to send (copied by the TLSSocket before this returns, or kept as the Buffer given). */
  write(bytes: Buffer): void {
    if (this.dead) return;
    this.#t.stats.plainOut += bytes.length;
    this.#sock.write(bytes);
  }

  /** Several writes as one TLS record where they fit (cork/uncork). */
  cork(): void {
    if (!this.dead) this.#sock.cork();
  }
  uncork(): void {
    if (!this.dead) this.#sock.uncork();
  }

  /** Our side is done: close_notify, then the sink's finished(). */
  end(): void {
    if (!this.dead) this.#sock.end();
  }

  /** Bytes written and not yet sent: plaintext the TLSSocket holds and ciphertext waiting here. */
  get backlog(): number {
    return this.#outBytes + (this.dead ? 0 : this.#sock.writableLength);
  }

  /** Ciphertext waiting to be sent. */
  get cipherBytes(): number {
    return this.#outBytes;
  }

  /** Copies up to `dst.length` bytes of the waiting ciphertext into `dst`; returns how many. */
  readCipher(dst: Uint8Array): number {
    let n = 0;
    while (n < dst.length && this.#out.length) {
      const b = this.#out[0]!;
      const k = Math.min(dst.length - n, b.length - this.#outAt);
      dst.set(k === b.length ? b : b.subarray(this.#outAt, this.#outAt + k), n);
      n += k;
      this.#outAt += k;
      if (this.#outAt === b.length) {
        this.#out.shift();
        this.#outAt = 0;
      }
    }
    this.#outBytes -= n;
    this.#t.stats.cipherOut += n;
    return n;
  }

  /** Logs and counts nothing: the connection is gone. */
  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    this.#t.done(this);
    this.#out = [];
    this.#outBytes = 0;
    this.#sock.destroy();
    this.#raw.destroy();
  }

  /** @internal Fails the channel: one log line, the sink resets the connection. */
  fail(why: string): void {
    if (this.dead) return;
    this.#t.log(`pmstack: tls: ${this.#peer}: ${why}`);
    this.destroy();
    this.#sink.fail();
  }

  #secure(): void {
    if (this.dead) return;
    const t = this.#t;
    if (t.requestCert) {
      // what tls.Server does on 'secure' (a bare TLSSocket leaves it to its owner)
      const err = (this.#sock as unknown as { ssl: { verifyError(): Error | null } }).ssl.verifyError();
      if (err) {
        t.stats.badClientCert++;
        return this.fail(`client certificate refused: ${(err as NodeJS.ErrnoException).code ?? err.message}`);
      }
    }
    this.secure = true;
    t.done(this);
    t.stats.handshakes++;
    if (this.#sock.getProtocol() === "TLSv1.3") t.stats.tls13++;
    else t.stats.tls12++;
  }

  #cipher(chunk: Buffer, tell = true): void {
    if (this.dead || chunk.length === 0) return;
    this.#out.push(chunk);
    this.#outBytes += chunk.length;
    if (tell) this.#sink.cipher();
  }
}

// Who may use the servers: the pieces kv's password (Redis's `requirepass`, the `default` user)
// and protected mode, and httpd's bearer token, stand on. Secrets are compared in constant time;
// failed attempts are rate limited by a growing delay per connection and a budget per second
// across the server, so that guessing is slow while a client with the right secret is never
// delayed; peers are matched against networks for protected mode. No I/O here: the `pmstack`
// command reads the secret files (host/cli.ts) and the apps apply these (kv.ts, httpd.ts).

import { inPrefix, parseCidr, parseIP } from "../addr.js";

const enc = new TextEncoder();

/**
 * Whether `given` equals `secret`, in a time that depends on the secret's length only: every
 * byte of the secret is visited whatever the guess holds, and no branch depends on a byte.
 */
export function safeEqual(given: Uint8Array | string, secret: Uint8Array | string): boolean {
  const g = typeof given === "string" ? enc.encode(given) : given;
  const s = typeof secret === "string" ? enc.encode(secret) : secret;
  let diff = g.length ^ s.length;
  const n = g.length;
  for (let i = 0; i < s.length; i++) diff |= s[i]! ^ (n ? g[i % n]! : 0);
  return diff === 0;
}

export interface AuthLimitOptions {
  /** Delay of a connection's first failed attempt, doubling with each further one (default 100 ms). */
  baseDelayMs?: number;
  /** The most a connection's own failures delay an answer (default 5 s). */
  maxDelayMs?: number;
  /** Failed attempts per second across the server before every failure is delayed longer (default 100). */
  perSecond?: number;
  /** The most the server-wide budget delays an answer (default 10 s). */
  maxGlobalDelayMs?: number;
}

/**
 * The delay of failed attempts: the n-th failure on a connection is answered after
 * min(base * 2^(n-1), max); once failures across the server exceed `perSecond` (a token bucket
 * of that rate and burst), after as long as the budget needs to recover too, up to
 * maxGlobalDelayMs. Successful attempts cost nothing and are never delayed. Memory: two numbers.
 */
export class FailureLimiter {
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly perSecond: number;
  readonly maxGlobalDelayMs: number;
  #tokens: number;
  #at = -Infinity;

  constructor(o: AuthLimitOptions = {}) {
    this.baseDelayMs = o.baseDelayMs ?? 100;
    this.maxDelayMs = o.maxDelayMs ?? 5000;
    this.perSecond = o.perSecond ?? 100;
    this.maxGlobalDelayMs = o.maxGlobalDelayMs ?? 10_000;
    this.#tokens = this.perSecond;
  }

  /** A failure at `now` (ms), the connection's `nth` (1, 2, ...): how long to hold its answer. */
  failure(nth: number, now: number): number {
    const rate = this.perSecond;
    this.#tokens = Math.min(rate, this.#tokens + ((now - this.#at) / 1000) * rate);
    this.#at = now;
    // the deficit is bounded: a flood cannot push the delay past maxGlobalDelayMs
    this.#tokens = Math.max(this.#tokens - 1, (-this.maxGlobalDelayMs / 1000) * rate);
    const global = this.#tokens < 0 ? (-this.#tokens / rate) * 1000 : 0;
    const own = Math.min(this.baseDelayMs * 2 ** Math.min(nth - 1, 30), this.maxDelayMs);
    return Math.ceil(Math.max(own, global));
  }
}

/** A set of networks (IPv4 and IPv6 CIDRs, or single addresses) a peer may be in. */
export class NetList {
  readonly #nets: { bytes: Uint8Array; bits: number; text: string }[] = [];

  /** Adds "198.18.0.0/15", "2001:2::/48", or an address alone (a /32 or /128). */
  add(cidr: string): this {
    const c = parseCidr(cidr, { defaultPrefix: cidr.includes(":") ? 128 : 32 });
    // IPv4 lives in the IPv4-mapped range (::ffff:0:0/96) of the 16-byte form
    this.#nets.push({
      bytes: c.bytes,
      bits: c.family === 4 ? 96 + c.prefix : c.prefix,
      text: `${c.address}/${c.prefix}`,
    });
    return this;
  }

  /** Whether the address (dotted IPv4 or IPv6 text, as the stack reports peers) is in a network. */
  has(addr: string): boolean {
    let b: Uint8Array;
    try {
      b = parseIP(addr).bytes;
    } catch {
      return false;
    }
    return this.#nets.some((n) => inPrefix(b, n.bytes, n.bits));
  }

  get size(): number {
    return this.#nets.length;
  }

  toString(): string {
    return this.#nets.map((n) => n.text).join(", ");
  }
}

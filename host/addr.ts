// IP addresses as text and as the core carries them. IPv4 is a host number (198.18.0.1 is
// 0xc6120001) where the ABI has a u32 field; every other address is 16 bytes in network order,
// IPv4 as IPv4-mapped (::ffff:a.b.c.d), as in the rings' address lanes and tcpAddr
// (docs/core-abi.md). Parsing takes every RFC 4291 text form ("::", compressed, embedded IPv4
// such as "::ffff:198.18.0.1"; no zone); formatting is RFC 5952's canonical form (lowercase,
// no leading zeros, the longest run of two or more zero groups as "::"), and `formatAddr`
// shows an IPv4-mapped address as the dotted IPv4 it stands for. Bad text throws TypeError,
// a bad prefix length RangeError, each naming the input and what is wrong with it.

/** 4 or 6. */
export type Family = 4 | 6;

/** An address with its prefix length ("ADDR/LEN"), as parseCidr returns it. */
export interface Cidr {
  family: Family;
  /** The address in canonical text (dotted IPv4, RFC 5952 IPv6). */
  address: string;
  /** 16 bytes, network order (IPv4-mapped for IPv4). */
  bytes: Uint8Array;
  /** The IPv4 address as a host number (0 for IPv6). */
  ipv4: number;
  prefix: number;
}

const bad = (s: string, family: string, why: string): never => {
  throw new TypeError(`pmstack: not an ${family} address: ${JSON.stringify(s)} (${why})`);
};

/** Dotted IPv4 text to a host number (198.18.0.1 -> 0xc6120001). */
export function parseIPv4(s: string): number {
  if (typeof s !== "string") return bad(String(s), "IPv4", "not a string");
  const n = ipv4OrNaN(s);
  if (Number.isNaN(n)) bad(s, "IPv4", "four decimal numbers 0-255 separated by dots expected");
  return n;
}

/** Four decimal numbers 0-255 of 1 to 3 digits, separated by dots; NaN otherwise (no regex, no allocation: connect() parses one per call). */
function ipv4OrNaN(s: string): number {
  let n = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x30 && c <= 0x39) {
      if (++digits > 3) return NaN;
      part = part * 10 + (c - 0x30);
    } else if (c === 0x2e && digits > 0 && dots < 3) {
      if (part > 255) return NaN;
      n = (n << 8) | part;
      part = 0;
      digits = 0;
      dots++;
    } else return NaN;
  }
  if (dots !== 3 || digits === 0 || part > 255) return NaN;
  return ((n << 8) | part) >>> 0;
}

/** A host number as dotted IPv4 text. */
export const formatIPv4 = (n: number): string => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;

/**
 * IPv6 text to 16 bytes (network order), or into `out` at `at`. Every RFC 4291 form: eight
 * groups of 1-4 hex digits, "::" once for one or more zero groups, dotted IPv4 in the last 32
 * bits. Zones ("%eth0") and brackets are refused.
 */
export function parseIPv6(s: string, out: Uint8Array = new Uint8Array(16), at = 0): Uint8Array {
  if (typeof s !== "string") return bad(String(s), "IPv6", "not a string");
  const why = ipv6Into(s, out, at);
  if (why) bad(s, "IPv6", why);
  return out;
}

/** Parses into out[at..at+16); returns null on success or what is wrong. */
function ipv6Into(s: string, out: Uint8Array, at: number): string | null {
  if (s.includes("%")) return "a zone (%...) is not supported";
  if (s.startsWith("[")) return "no brackets: write the address alone";
  if (s.length < 2 || s.length > 45) return "too short or too long";
  if (!s.includes(":")) return 'no ":" in it';
  const dbl = s.indexOf("::");
  if (dbl >= 0 && s.indexOf("::", dbl + 1) >= 0) return '"::" may appear once';
  const groups: number[] = [];
  let tailAt = -1; // where the groups after "::" start
  // an embedded IPv4 may only end the whole address
  const parts = (t: string, last: boolean): string | null => {
    if (t === "") return null;
    const fields = t.split(":");
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i]!;
      if (last && i === fields.length - 1 && f.includes(".")) {
        const v4 = ipv4OrNaN(f);
        if (Number.isNaN(v4)) return `bad embedded IPv4 ${JSON.stringify(f)}`;
        groups.push(v4 >>> 16, v4 & 0xffff);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(f))
        return f === "" ? "an empty group (a single ':' at an end, or ':::')" : `bad group ${JSON.stringify(f)}`;
      groups.push(parseInt(f, 16));
    }
    return null;
  };
  let why: string | null;
  if (dbl < 0) {
    why = parts(s, true);
    if (why) return why;
    if (groups.length !== 8) return `${groups.length} groups where 8 are needed (or "::")`;
  } else {
    why = parts(s.slice(0, dbl), false);
    if (why) return why;
    tailAt = groups.length;
    why = parts(s.slice(dbl + 2), true);
    if (why) return why;
    if (groups.length > 7) return `${groups.length} groups beside "::" (at most 7)`;
  }
  const zeros = 8 - groups.length;
  let k = 0;
  for (let g = 0; g < 8; g++) {
    const v = tailAt >= 0 && g >= tailAt && g < tailAt + zeros ? 0 : groups[k++]!;
    out[at + 2 * g] = v >>> 8;
    out[at + 2 * g + 1] = v & 255;
  }
  return null;
}

/** Whether b[at..at+16) is IPv4-mapped (::ffff:0:0/96). */
export function isMapped(b: Uint8Array, at = 0): boolean {
  for (let i = 0; i < 10; i++) if (b[at + i] !== 0) return false;
  return b[at + 10] === 0xff && b[at + 11] === 0xff;
}

/** The IPv4 host number of a mapped address at b[at..at+16) (check isMapped first). */
export const mappedIPv4 = (b: Uint8Array, at = 0): number =>
  ((b[at + 12]! << 24) | (b[at + 13]! << 16) | (b[at + 14]! << 8) | b[at + 15]!) >>> 0;

/** Writes IPv4 host number `n` as a mapped address into out[at..at+16). */
export function mapIPv4(n: number, out: Uint8Array = new Uint8Array(16), at = 0): Uint8Array {
  out.fill(0, at, at + 10);
  out[at + 10] = 0xff;
  out[at + 11] = 0xff;
  out[at + 12] = n >>> 24;
  out[at + 13] = (n >>> 16) & 255;
  out[at + 14] = (n >>> 8) & 255;
  out[at + 15] = n & 255;
  return out;
}

/**
 * 16 bytes as canonical IPv6 text (RFC 5952): lowercase hex without leading zeros, the longest
 * run of two or more zero groups (the first of equal runs) as "::", an IPv4-mapped address as
 * "::ffff:a.b.c.d" (section 5).
 */
export function formatIPv6(b: Uint8Array, at = 0): string {
  if (isMapped(b, at)) return `::ffff:${formatIPv4(mappedIPv4(b, at))}`;
  let bestAt = -1;
  let bestLen = 1; // a single zero group is never compressed
  for (let g = 0; g < 8;) {
    if (b[at + 2 * g] === 0 && b[at + 2 * g + 1] === 0) {
      let e = g;
      while (e < 8 && b[at + 2 * e] === 0 && b[at + 2 * e + 1] === 0) e++;
      if (e - g > bestLen) {
        bestAt = g;
        bestLen = e - g;
      }
      g = e;
    } else g++;
  }
  let s = "";
  for (let g = 0; g < 8; g++) {
    if (g === bestAt) {
      s += "::";
      g += bestLen - 1;
      continue;
    }
    if (s !== "" && !s.endsWith(":")) s += ":";
    s += ((b[at + 2 * g]! << 8) | b[at + 2 * g + 1]!).toString(16);
  }
  return s;
}

/** 16 bytes as the API shows an address: dotted IPv4 for an IPv4-mapped one, else RFC 5952 IPv6. */
export function formatAddr(b: Uint8Array, at = 0): string {
  return isMapped(b, at) ? formatIPv4(mappedIPv4(b, at)) : formatIPv6(b, at);
}

/** The family of 16 bytes as the core carries them: 4 for IPv4-mapped, else 6. */
export const familyOf = (b: Uint8Array, at = 0): Family => (isMapped(b, at) ? 4 : 6);

const scratch = new Uint8Array(16);

/** Like node:net's isIP: 4 for dotted IPv4, 6 for IPv6 text (no zone), 0 for anything else. */
export function isIP(s: unknown): 0 | 4 | 6 {
  if (typeof s !== "string") return 0;
  if (!Number.isNaN(ipv4OrNaN(s))) return 4;
  return s.includes(":") && ipv6Into(s, scratch, 0) === null ? 6 : 0;
}

/**
 * Address text of either family: `{family, bytes, ipv4}` with 16 bytes (IPv4-mapped for IPv4)
 * and the IPv4 host number (0 for IPv6). An IPv6 text that is IPv4-mapped counts as IPv4.
 */
export function parseIP(s: string): { family: Family; bytes: Uint8Array; ipv4: number } {
  if (typeof s !== "string") return bad(String(s), "IP", "not a string");
  const v4 = ipv4OrNaN(s);
  if (!Number.isNaN(v4)) return { family: 4, bytes: mapIPv4(v4), ipv4: v4 };
  if (!s.includes(":")) bad(s, "IP", "neither dotted IPv4 nor IPv6");
  const bytes = parseIPv6(s);
  return isMapped(bytes) ? { family: 4, bytes, ipv4: mappedIPv4(bytes) } : { family: 6, bytes, ipv4: 0 };
}

/**
 * "ADDR/LEN" of either family (LEN 0..32 for IPv4, 0..128 for IPv6). Without "/LEN", the
 * prefix is `defaultPrefix` if given, else an error. `family` restricts the family accepted.
 */
export function parseCidr(s: string, opts: { family?: Family; defaultPrefix?: number } = {}): Cidr {
  if (typeof s !== "string") return bad(String(s), "IP", "not a string");
  const slash = s.indexOf("/");
  const text = slash < 0 ? s : s.slice(0, slash);
  const ip = parseIP(text);
  const v6text = text.includes(":");
  if (opts.family && (v6text ? 6 : 4) !== opts.family)
    bad(s, `IPv${opts.family}`, `an IPv${opts.family} ADDR/LEN expected`);
  const max = v6text ? 128 : 32;
  let prefix: number;
  if (slash < 0) {
    if (opts.defaultPrefix === undefined)
      throw new TypeError(`pmstack: ${JSON.stringify(s)} needs a prefix length (ADDR/LEN, LEN 0..${max})`);
    prefix = opts.defaultPrefix;
  } else {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || +p > max)
      throw new RangeError(
        `pmstack: bad prefix length in ${JSON.stringify(s)} (0..${max} for IPv${max === 32 ? 4 : 6})`,
      );
    prefix = +p;
  }
  // an IPv6 text is an IPv6 prefix, even for an IPv4-mapped address
  const family: Family = v6text ? 6 : 4;
  return {
    family,
    address: family === 4 ? formatIPv4(ip.ipv4) : formatIPv6(ip.bytes),
    bytes: ip.bytes,
    ipv4: family === 4 ? ip.ipv4 : 0,
    prefix,
  };
}

/** Whether IPv6 address `b` is link-local (fe80::/10). */
export const isLinkLocal = (b: Uint8Array): boolean => b[0] === 0xfe && (b[1]! & 0xc0) === 0x80;

/** Whether `a` lies in `net`/`len` (16-byte addresses; `len` 0..128 over all 128 bits). */
export function inPrefix(a: Uint8Array, net: Uint8Array, len: number): boolean {
  for (let i = 0; i < 16 && len > 0; i++, len -= 8) {
    const m = len >= 8 ? 0xff : (0xff << (8 - len)) & 0xff;
    if ((a[i]! & m) !== (net[i]! & m)) return false;
  }
  return true;
}

/** "[v6]:port" or "v4:port": an endpoint as ss and URLs write it. */
export const formatEndpoint = (addr: string, port: number): string =>
  addr.includes(":") ? `[${addr}]:${port}` : `${addr}:${port}`;

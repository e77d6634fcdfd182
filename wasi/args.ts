// pmstack-replay's command line: the stack's identity (MAC, IPv4, IPv6), its listening ports and
// app, the secret, the pool and the time the core's timers run after the last record. Parsed
// from the WASI arguments in place (bytes, no strings); a bad argument prints why and exits 2.

import { argsLoad, arg, cstrLen, bytesEq, say, sayBytes, sayStart, sayEndTo, failEnd, exit, EXIT_USAGE } from "./io";

export const APP_ECHO: u32 = 0;
export const APP_DISCARD: u32 = 1;
export const MAX_LISTEN: u32 = 16; // the core's default listener count (configuration offset 48)

// the parsed configuration
export const mac: usize = memory.data(8, 4);
export let hasMac = false;
export let ip4: u32 = 0;
export let prefix4: u32 = 32;
export let gw4: u32 = 0;
export const ip6: usize = memory.data(16, 4);
export let hasIp6 = false;
export let prefix6: u32 = 64;
export const gw6: usize = memory.data(16, 4);
export let hasGw6 = false;
export let mtu: u32 = 0;
export const ports: usize = memory.data(<i32>MAX_LISTEN * 4, 4);
export let nPorts: u32 = 0;
export let app: u32 = APP_ECHO;
export const secret: usize = memory.data(32, 4); // 32 zero bytes unless --secret
export let buffers: u32 = 4096;
export let lingerMs: u32 = 1000;
export let inPath: usize = 0;
export let inLen: usize = 0;
export let outPath: usize = 0;
export let outLen: usize = 0;

export function usage(fd: u32): void {
  sayStart("replays a pcap capture through the pmstack core and writes the core's answers as a pcap.");
  say(`

usage: pmstack-replay [options] INPUT.pcap OUTPUT.pcap     ("-": stdin / stdout)

  --mac MAC             our Ethernet address (required), e.g. 02:00:00:00:00:02
  --ip ADDR[/PREFIX]    our IPv4 address, e.g. 198.18.0.2/24 (no prefix: /32)
  --gateway ADDR        IPv4 default gateway
  --ip6 ADDR[/PREFIX]   our IPv6 address (prefix 1..128, default 64); the link-local one follows from the MAC
  --gw6 ADDR            IPv6 next hop for off-link destinations
  --mtu N               IP MTU (default 1500)
  --listen PORT         a listening TCP port (repeat for more, up to 16)
  --app echo|discard    what accepted connections get (default echo: bytes sent back, FIN answered with FIN)
  --secret HEX          64 hex digits: the core's 32-byte secret (ISNs, SYN cookies, timestamp offsets);
                        default all zero, so a replay is reproducible
  --buffers N           packet buffers of 2 KiB (default 4096)
  --linger MS           the core's timers run this long past the last record (default 1000)
  --help                this text

At least one of --ip and --ip6. Frames whose Ethernet source is --mac (the capture's own answers)
are not fed. Exit status: 0 done, 1 unreadable or bad input, 2 bad arguments, 3 the core refused.`);
  sayEndTo(fd);
}

function bad(what: string, p: usize, n: usize): void {
  sayStart(what);
  if (n > 0) {
    say(": ");
    sayBytes(p, n);
  }
  say(" (pmstack-replay --help)");
  failEnd(EXIT_USAGE);
}

@inline function hexDigit(c: u32): i32 {
  if (c >= 48 && c <= 57) return <i32>c - 48;
  if (c >= 97 && c <= 102) return <i32>c - 87;
  if (c >= 65 && c <= 70) return <i32>c - 55;
  return -1;
}

/** A decimal number in [0, max] from [p, p+n), or -1. */
export function parseDec(p: usize, n: usize, max: u32): i64 {
  if (n == 0 || n > 10) return -1;
  let v: i64 = 0;
  for (let i: usize = 0; i < n; i++) {
    const c = <u32>load<u8>(p + i);
    if (c < 48 || c > 57) return -1;
    v = v * 10 + <i64>(c - 48);
  }
  return v > <i64>max ? -1 : v;
}

/** A dotted IPv4 address from [p, p+n) as a host number, or -1. */
export function parseIPv4(p: usize, n: usize): i64 {
  let v: u32 = 0;
  let part: usize = p;
  let parts = 0;
  for (let i: usize = 0; i <= n; i++) {
    if (i == n || load<u8>(p + i) == 46) {
      const b = parseDec(part, p + i - part, 255);
      if (b < 0) return -1;
      v = (v << 8) | <u32>b;
      parts++;
      part = p + i + 1;
    }
  }
  return parts == 4 ? <i64>v : -1;
}

/** An IPv6 address from [p, p+n) (RFC 4291 2.2 forms 1 and 2) into 16 bytes at out. */
export function parseIPv6(p: usize, n: usize, out: usize): bool {
  const w = memory.data(16, 4); // the 8 groups
  let k: u32 = 0; // groups parsed
  let gap: i32 = -1; // group index where "::" stands
  let i: usize = 0;
  if (n >= 2 && load<u8>(p) == 58 && load<u8>(p + 1) == 58) {
    gap = 0;
    i = 2;
  } else if (n > 0 && load<u8>(p) == 58) return false;
  while (i < n) {
    let v: u32 = 0;
    let d: u32 = 0;
    while (i < n && hexDigit(load<u8>(p + i)) >= 0) {
      v = (v << 4) | <u32>hexDigit(load<u8>(p + i));
      i++;
      if (++d > 4) return false;
    }
    if (d == 0 || k >= 8) return false;
    store<u16>(w + (<usize>k << 1), <u16>v);
    k++;
    if (i == n) break;
    if (load<u8>(p + i) != 58) return false;
    i++;
    if (i < n && load<u8>(p + i) == 58) {
      if (gap >= 0) return false;
      gap = <i32>k;
      i++;
      if (i == n) break;
    } else if (i == n) return false; // a trailing single ':'
  }
  if (gap < 0 ? k != 8 : k > 7) return false;
  memory.fill(out, 0, 16);
  const tail = gap < 0 ? 0 : k - <u32>gap;
  for (let j: u32 = 0; j < k; j++) {
    const at = gap < 0 || j < <u32>gap ? j : 8 - tail + (j - <u32>gap);
    const v = <u32>load<u16>(w + (<usize>j << 1));
    store<u8>(out + (<usize>at << 1), <u8>(v >>> 8));
    store<u8>(out + (<usize>at << 1) + 1, <u8>v);
  }
  return true;
}

function parseMac(p: usize, n: usize, out: usize): bool {
  if (n != 17) return false;
  for (let i: usize = 0; i < 6; i++) {
    const h = hexDigit(load<u8>(p + i * 3));
    const l = hexDigit(load<u8>(p + i * 3 + 1));
    if (h < 0 || l < 0 || (i < 5 && load<u8>(p + i * 3 + 2) != 58)) return false;
    store<u8>(out + i, <u8>((h << 4) | l));
  }
  return true;
}

/** The byte index of '/' in [p, p+n), or n. */
function slash(p: usize, n: usize): usize {
  for (let i: usize = 0; i < n; i++) if (load<u8>(p + i) == 47) return i;
  return n;
}

/** Parses the command line; exits on --help (0) and on a bad argument (2). */
export function parseArgs(): void {
  const argc = argsLoad();
  let k: u32 = 1;
  let positional = 0;
  let hasIp4 = false;
  while (k < argc) {
    const a = arg(k);
    const an = cstrLen(a);
    k++;
    if (an < 2 || load<u8>(a) != 45 || load<u8>(a + 1) != 45) {
      if (positional == 0) {
        inPath = a;
        inLen = an;
      } else if (positional == 1) {
        outPath = a;
        outLen = an;
      } else bad("one input and one output file, not more", a, an);
      positional++;
      continue;
    }
    // --name VALUE or --name=VALUE
    let nl: usize = 0;
    while (nl < an && load<u8>(a + nl) != 61) nl++;
    if (bytesEq(a, nl, "--help")) {
      usage(1);
      exit(0);
    }
    let v: usize = 0;
    let vn: usize = 0;
    if (nl < an) {
      v = a + nl + 1;
      vn = an - nl - 1;
    } else {
      if (k >= argc) bad("this option needs a value", a, an);
      v = arg(k);
      vn = cstrLen(v);
      k++;
    }
    if (bytesEq(a, nl, "--mac")) {
      if (!parseMac(v, vn, mac) || (load<u8>(mac) & 1) != 0) bad("--mac: not a unicast MAC address", v, vn);
      hasMac = true;
    } else if (bytesEq(a, nl, "--ip")) {
      const s = slash(v, vn);
      const x = parseIPv4(v, s);
      if (x <= 0) bad("--ip: not an IPv4 address", v, vn);
      ip4 = <u32>x;
      if (s < vn) {
        const pl = parseDec(v + s + 1, vn - s - 1, 32);
        if (pl < 0) bad("--ip: the prefix length must be 0..32", v, vn);
        prefix4 = <u32>pl;
      }
      hasIp4 = true;
    } else if (bytesEq(a, nl, "--gateway")) {
      const x = parseIPv4(v, vn);
      if (x <= 0) bad("--gateway: not an IPv4 address", v, vn);
      gw4 = <u32>x;
    } else if (bytesEq(a, nl, "--ip6")) {
      const s = slash(v, vn);
      if (!parseIPv6(v, s, ip6)) bad("--ip6: not an IPv6 address", v, vn);
      if (s < vn) {
        const pl = parseDec(v + s + 1, vn - s - 1, 128);
        if (pl < 1) bad("--ip6: the prefix length must be 1..128", v, vn);
        prefix6 = <u32>pl;
      }
      const b0 = load<u8>(ip6);
      const b1 = load<u8>(ip6 + 1);
      let zero = true;
      for (let i: usize = 0; i < 16; i++) if (load<u8>(ip6 + i) != 0) zero = false;
      let mapped = true;
      for (let i: usize = 0; i < 10; i++) if (load<u8>(ip6 + i) != 0) mapped = false;
      mapped = mapped && load<u16>(ip6 + 10) == 0xffff;
      if (zero || mapped || b0 == 0xff || (b0 == 0xfe && (b1 & 0xc0) == 0x80))
        bad("--ip6: not a unicast address to configure (the link-local one comes from the MAC)", v, vn);
      hasIp6 = true;
    } else if (bytesEq(a, nl, "--gw6")) {
      if (!parseIPv6(v, vn, gw6) || load<u8>(gw6) == 0xff) bad("--gw6: not a unicast IPv6 address", v, vn);
      hasGw6 = true;
    } else if (bytesEq(a, nl, "--mtu")) {
      const x = parseDec(v, vn, 65535);
      if (x < 68) bad("--mtu: must be 68..65535", v, vn);
      mtu = <u32>x;
    } else if (bytesEq(a, nl, "--listen")) {
      const x = parseDec(v, vn, 65535);
      if (x < 1) bad("--listen: a port is 1..65535", v, vn);
      if (nPorts >= MAX_LISTEN) bad("--listen: at most 16 ports", v, vn);
      for (let i: u32 = 0; i < nPorts; i++)
        if (load<u32>(ports + (<usize>i << 2)) == <u32>x) bad("--listen: this port is given twice", v, vn);
      store<u32>(ports + (<usize>nPorts << 2), <u32>x);
      nPorts++;
    } else if (bytesEq(a, nl, "--app")) {
      if (bytesEq(v, vn, "echo")) app = APP_ECHO;
      else if (bytesEq(v, vn, "discard")) app = APP_DISCARD;
      else bad("--app: echo or discard", v, vn);
    } else if (bytesEq(a, nl, "--secret")) {
      if (vn != 64) bad("--secret: 64 hex digits (32 bytes)", v, vn);
      for (let i: usize = 0; i < 32; i++) {
        const h = hexDigit(load<u8>(v + 2 * i));
        const l = hexDigit(load<u8>(v + 2 * i + 1));
        if (h < 0 || l < 0) bad("--secret: 64 hex digits (32 bytes)", v, vn);
        store<u8>(secret + i, <u8>((h << 4) | l));
      }
    } else if (bytesEq(a, nl, "--buffers")) {
      const x = parseDec(v, vn, 1 << 20);
      if (x < 64) bad("--buffers: 64..1048576", v, vn);
      buffers = <u32>x;
    } else if (bytesEq(a, nl, "--linger")) {
      const x = parseDec(v, vn, 86400000);
      if (x < 0) bad("--linger: milliseconds, 0..86400000", v, vn);
      lingerMs = <u32>x;
    } else bad("unknown option", a, nl);
  }
  if (positional < 2) bad("an input and an output file are needed", 0, 0);
  if (!hasMac) bad("--mac is required", 0, 0);
  if (!hasIp4 && !hasIp6) bad("give the stack an address: --ip, --ip6 or both", 0, 0);
  if (gw4 != 0 && !hasIp4) bad("--gateway needs --ip", 0, 0);
  if (hasGw6 && !hasIp6) bad("--gw6 needs --ip6", 0, 0);
}

// IP address text (host/addr.ts): every RFC 4291 IPv6 form parses to the right 16 bytes,
// formatting is RFC 5952's canonical form (checked against the WHATWG URL parser's IPv6
// serializer on random addresses, and against the RFC's own examples), IPv4-mapped addresses
// show as the dotted IPv4 where the API means IPv4, CIDR for both families, isIP agreeing
// with node:net's, and clear errors naming the input and the problem.
import { test } from "uvu";
import * as assert from "uvu/assert";
import net from "node:net";
import {
  formatAddr,
  formatEndpoint,
  formatIPv4,
  formatIPv6,
  inPrefix,
  isIP,
  isMapped,
  mapIPv4,
  parseCidr,
  parseIP,
  parseIPv4,
  parseIPv6,
} from "../build/index.js";
import { rng } from "./lib/rng.mjs";

const hex = (b) => Buffer.from(b).toString("hex");

test("parseIPv6: every RFC 4291 text form", () => {
  const cases = [
    ["::", "00000000000000000000000000000000"],
    ["::1", "00000000000000000000000000000001"],
    ["1::", "00010000000000000000000000000000"],
    ["2001:2:0:63::2", "20010002000000630000000000000002"],
    ["2001:DB8:0:0:8:800:200C:417A", "20010db8000000000008080020 0c417a".replace(" ", "")],
    ["2001:db8::8:800:200c:417a", "20010db8000000000008080020 0c417a".replace(" ", "")],
    ["FF01::101", "ff010000000000000000000000000101"],
    ["0:0:0:0:0:0:0:1", "00000000000000000000000000000001"],
    ["1:2:3:4:5:6:7::", "00010002000300040005000600070000"],
    ["::2:3:4:5:6:7:8", "00000002000300040005000600070008"],
    ["::ffff:198.18.0.1", "00000000000000000000ffffc6120001"],
    ["::FFFF:198.18.0.1", "00000000000000000000ffffc6120001"],
    ["0:0:0:0:0:FFFF:129.144.52.38", "00000000000000000000ffff81903426"],
    ["::13.1.68.3", "0000000000000000000000000d014403"],
    ["2001:2:0:63:0:0:198.18.0.1", "20010002000000630000 0000c6120001".replace(" ", "")],
    ["fe80::0001:02:003:0004", "fe800000000000000001000200030004"],
  ];
  for (const [t, h] of cases) assert.is(hex(parseIPv6(t)), h, t);
  // into a caller's array at an offset
  const out = new Uint8Array(20).fill(7);
  parseIPv6("::1", out, 2);
  assert.is(hex(out), "0707" + "00000000000000000000000000000001" + "0707");
});

test("parseIPv6: bad text throws a TypeError naming the input and the problem", () => {
  const bad = [
    ["", /too short/],
    [":", /too short/],
    [":::", /"::" may appear once/],
    ["1::2::3", /"::" may appear once/],
    ["1:2:3:4:5:6:7", /7 groups where 8 are needed/],
    ["1:2:3:4:5:6:7:8:9", /9 groups where 8/],
    ["1:2:3:4::5:6:7:8", /8 groups beside "::"/],
    ["12345::", /bad group "12345"/],
    ["g::1", /bad group "g"/],
    [":1::", /an empty group/],
    ["1::2:", /an empty group/],
    ["1:2:3:4:5:6:7:8:", /an empty group/],
    ["1.2.3.4::", /bad group "1\.2\.3\.4"/],
    ["::1.2.3.4:5", /bad group "1\.2\.3\.4"/],
    ["::ffff:1.2.3.256", /bad embedded IPv4 "1\.2\.3\.256"/],
    ["::ffff:1.2.3", /bad embedded IPv4/],
    ["1:2:3:4:5:6:7:1.2.3.4", /9 groups where 8/],
    ["fe80::1%eth0", /a zone \(%\.\.\.\) is not supported/],
    ["[::1]", /no brackets/],
    ["::1 ", /bad group/],
    ["198.18.0.1", /no ":" in it/],
  ];
  for (const [t, re] of bad) {
    const e = captured(() => parseIPv6(t));
    assert.instance(e, TypeError, t);
    assert.match(e.message, /^pmstack: not an IPv6 address: /, t);
    assert.ok(e.message.includes(JSON.stringify(t)), `${t}: ${e.message}`);
    assert.match(e.message, re, `${t}: ${e.message}`);
    assert.is(isIP(t), net.isIP(t) === 4 ? 4 : 0, t);
  }
  assert.throws(() => parseIPv6(undefined), /not a string/);
});

function captured(fn) {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return null;
}

test("formatIPv6: RFC 5952 canonical text (its examples)", () => {
  const cases = [
    // 4.1 leading zeros suppressed; 4.2.1 "::" as long as possible; 4.2.2 not for one group
    ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:db8:0:0:0:0:2:1", "2001:db8::2:1"],
    ["2001:db8:0000:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    // 4.2.3 the longest run; the first of equal runs
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    // 4.3 lowercase
    ["2001:DB8::ABCD:EF", "2001:db8::abcd:ef"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["1:0:0:0:0:0:0:0", "1::"],
    ["1:2:3:4:5:6:7:0", "1:2:3:4:5:6:7:0"],
    ["0:2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"],
    ["fe80:0:0:0:0250:4dff:fe00:0002", "fe80::250:4dff:fe00:2"],
    // 5: IPv4-mapped keeps its dotted tail
    ["0:0:0:0:0:ffff:c612:1", "::ffff:198.18.0.1"],
  ];
  for (const [t, want] of cases) assert.is(formatIPv6(parseIPv6(t)), want, t);
});

test("formatIPv6 matches the WHATWG URL serializer on 20,000 random addresses; parse(format(x)) = x", () => {
  const r = rng(6);
  const b = new Uint8Array(16);
  for (let k = 0; k < 20000; k++) {
    // mostly zero groups, so that runs of every length and position occur
    for (let g = 0; g < 8; g++) {
      const v = r() < 0.55 ? 0 : r() < 0.5 ? Math.floor(r() * 16) : Math.floor(r() * 65536);
      b[2 * g] = v >>> 8;
      b[2 * g + 1] = v & 255;
    }
    const text = formatIPv6(b);
    assert.is(hex(parseIPv6(text)), hex(b), text);
    assert.is(isIP(text), 6, text);
    assert.is(net.isIP(text), 6, text);
    if (!isMapped(b)) assert.is(`[${text}]`, new URL(`http://[${text}]/`).hostname, text);
    // the fully written form parses to the same bytes and formats the same
    const full = Array.from({ length: 8 }, (_, g) => ((b[2 * g] << 8) | b[2 * g + 1]).toString(16).padStart(4, "0"));
    assert.is(formatIPv6(parseIPv6(full.join(":").toUpperCase())), text);
  }
});

test("isIP agrees with node:net's on valid and broken text", () => {
  const r = rng(7);
  const alphabet = "0123456789abcdefABCDEF:.:::";
  for (let k = 0; k < 20000; k++) {
    let s = "";
    const n = 1 + Math.floor(r() * 24);
    for (let i = 0; i < n; i++) s += alphabet[Math.floor(r() * alphabet.length)];
    // node:net accepts IPv4 octets with leading zeros only in some versions: leave those out
    if (/(^|[.:])0\d/.test(s) && s.includes(".")) continue;
    assert.is(isIP(s), net.isIP(s), s);
  }
  for (const s of ["198.18.0.1", "::", "::ffff:198.18.0.1", "2001:2::1", "x", "", "1.2.3", "[::1]"])
    assert.is(isIP(s), net.isIP(s), s);
  assert.is(isIP(12), 0);
});

test("formatAddr: dotted IPv4 for a mapped address, IPv6 otherwise; parseIP for both families", () => {
  assert.is(formatAddr(mapIPv4(0xc6120001)), "198.18.0.1");
  assert.is(formatAddr(parseIPv6("::ffff:198.18.0.1")), "198.18.0.1");
  assert.is(formatAddr(parseIPv6("2001:2:0:63::2")), "2001:2:0:63::2");
  assert.is(formatAddr(parseIPv6("::")), "::");
  const at = new Uint8Array(40);
  mapIPv4(0x01020304, at, 20);
  assert.is(formatAddr(at, 20), "1.2.3.4");
  assert.is(formatIPv6(at, 20), "::ffff:1.2.3.4");
  assert.equal(
    [parseIP("198.18.0.2"), parseIP("::ffff:198.18.0.2"), parseIP("2001:2::1")].map((p) => [p.family, p.ipv4]),
    [
      [4, 0xc6120002],
      [4, 0xc6120002],
      [6, 0],
    ],
  );
  assert.throws(
    () => parseIP("pmstack.example"),
    /not an IP address: "pmstack\.example" \(neither dotted IPv4 nor IPv6\)/,
  );
  assert.is(parseIPv4("198.18.0.1"), 0xc6120001);
  assert.is(formatIPv4(0xc6120001), "198.18.0.1");
  assert.throws(() => parseIPv4("198.18.0.256"), /not an IPv4 address: "198\.18\.0\.256"/);
  assert.is(formatEndpoint("2001:2::1", 80), "[2001:2::1]:80");
  assert.is(formatEndpoint("198.18.0.2", 6379), "198.18.0.2:6379");
});

test("parseCidr: ADDR/LEN of both families, canonical address, prefix bounds, inPrefix", () => {
  const v6 = parseCidr("2001:0002:0000:0063:0000:0000:0000:0002/64");
  assert.equal([v6.family, v6.address, v6.prefix, v6.ipv4], [6, "2001:2:0:63::2", 64, 0]);
  const v4 = parseCidr("198.18.0.2/24");
  assert.equal([v4.family, v4.address, v4.prefix, v4.ipv4], [4, "198.18.0.2", 24, 0xc6120002]);
  assert.is(parseCidr("2001:2::1", { defaultPrefix: 64 }).prefix, 64);
  assert.is(parseCidr("::/0").prefix, 0);
  assert.is(parseCidr("::1/128").prefix, 128);
  assert.throws(() => parseCidr("2001:2::1"), /needs a prefix length \(ADDR\/LEN, LEN 0\.\.128\)/);
  assert.throws(() => parseCidr("198.18.0.1"), /needs a prefix length \(ADDR\/LEN, LEN 0\.\.32\)/);
  assert.throws(() => parseCidr("2001:2::1/129"), RangeError);
  assert.throws(() => parseCidr("198.18.0.1/33"), /bad prefix length in "198\.18\.0\.1\/33" \(0\.\.32 for IPv4\)/);
  assert.throws(() => parseCidr("2001:2::1/x"), /bad prefix length/);
  assert.throws(() => parseCidr("198.18.0.1/24", { family: 6 }), /not an IPv6 address: .*an IPv6 ADDR\/LEN expected/);
  assert.throws(() => parseCidr("2001:2::1/64", { family: 4 }), /an IPv4 ADDR\/LEN expected/);
  assert.throws(() => parseCidr("2001:2::g/64"), /bad group "g"/);
  const net48 = parseIPv6("2001:2::");
  assert.ok(inPrefix(parseIPv6("2001:2:0:63::2"), net48, 48));
  assert.ok(inPrefix(parseIPv6("2001:2:0:ffff::1"), net48, 48));
  assert.not.ok(inPrefix(parseIPv6("2001:3::1"), net48, 48));
  assert.not.ok(inPrefix(parseIPv6("2001:db8::1"), net48, 48));
  assert.ok(inPrefix(parseIPv6("2001:2:0:63::1"), parseIPv6("2001:2:0:63::2"), 64));
  assert.not.ok(inPrefix(parseIPv6("2001:2:0:64::1"), parseIPv6("2001:2:0:63::2"), 64));
  assert.ok(inPrefix(parseIPv6("2001:3::1"), net48, 15)); // a prefix inside a byte
  assert.not.ok(inPrefix(parseIPv6("2001:2::1"), parseIPv6("2001:0::"), 31));
  assert.ok(inPrefix(parseIPv6("::1"), parseIPv6("ffff::"), 0));
});

test.run();

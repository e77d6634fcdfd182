// pmstack-replay (build/pmstack-replay.wasm, wasi/; docs/wasi.md): the core under WASI. A
// conversation is played between a scripted client and the TypeScript host's Stack (the
// reference: test/lib/replay.mjs turns it exactly as the replay turns its core) and captured
// both ways, as a capture on the link would be; the replay of that capture under node:wasi
// must answer with the reference's frames byte for byte at the same times, and the same under
// Deno's WASI, in every pcap byte order and resolution, run after run. Bad input and bad
// arguments end with a message and an exit status, never a trap.

import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { scratchDir } from "./lib/tmp.mjs";
import {
  RefHost,
  runNode,
  runNodeAsync,
  runDeno,
  readPcap,
  writePcap,
  convertPcap,
  MAGIC_US,
  MAGIC_NS,
  WASM,
} from "./lib/replay.mjs";
import {
  eth,
  arpPkt,
  ipv4,
  ipv6,
  icmpEcho,
  icmp6Msg,
  ndMsg,
  udpPkt,
  tcpSeg,
  tcpOpts,
  parseFrame,
  ip,
  ip6,
  mac,
  TH,
  BCAST,
} from "./lib/corehost.mjs";

const US = { mac: "02:00:00:00:00:02", ip: "198.18.0.2/24", ip6: "2001:2:0:63::2/64" };
const PEER = { mac: mac("02:00:00:00:00:01"), ip: ip("198.18.0.1"), ip6: ip6("2001:2:0:63::1") };
const OUR_MAC = mac(US.mac);
const OUR_IP = ip("198.18.0.2");
const OUR_IP6 = ip6("2001:2:0:63::2");
const BASE_US = 1_700_000_000_000_000n; // the capture's first record, in microseconds since the epoch
const SECRET = Uint8Array.from({ length: 32 }, (_, i) => (i * 29 + 3) & 255);
const text = (s) => new TextEncoder().encode(s);
const pattern = (n, seed) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 255);

/**
 * A capture of a conversation with the reference host: the client's frames and the host's
 * answers in the order they crossed the link. Returns { pcap, ref (its `out`: every frame the
 * host sent, the linger included), facts }.
 */
const played = new Map();
function conversation(o = {}) {
  const key = JSON.stringify(o);
  if (!played.has(key)) played.set(key, play(o));
  return played.get(key);
}
function play({ app = "echo", v6 = false }) {
  const ref = new RefHost({ mac: US.mac, ip: US.ip, ip6: v6 ? US.ip6 : undefined, listen: [80], app, secret: SECRET });
  const log = [];
  let seen = 0;
  const flush = () => {
    for (; seen < ref.out.length; seen++) log.push(ref.out[seen]);
  };
  flush(); // the gratuitous ARP of the first turn
  const send = (t, frame) => {
    ref.timersUntil(t);
    flush();
    log.push({ t, frame });
    const r = ref.feed(t, frame);
    flush();
    return r.map((x) => parseFrame(x.frame));
  };
  const ip4 = (proto, payload) => eth(OUR_MAC, PEER.mac, 0x0800, ipv4({ src: PEER.ip, dst: OUR_IP, proto, payload }));
  const tcp = (o) =>
    ip4(
      6,
      tcpSeg({ src: PEER.ip, dst: OUR_IP, sport: 40000, dport: 80, win: 65535, ...o, opts: tcpOpts(o.opts ?? {}) }),
    );
  const facts = {};
  if (v6) {
    // our addresses are tentative for 1000 ms (duplicate address detection), then the client asks
    send(0, eth(BCAST, PEER.mac, 0x0806, arpPkt({ op: 1, sha: PEER.mac, spa: PEER.ip, tpa: OUR_IP })));
    const solicited = new Uint8Array([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, ...OUR_IP6.slice(13)]);
    const smac = new Uint8Array([0x33, 0x33, 0xff, ...OUR_IP6.slice(13)]);
    const ns = ndMsg({ src: PEER.ip6, dst: solicited, type: 135, target: OUR_IP6, lla: PEER.mac });
    send(1100, eth(smac, PEER.mac, 0x86dd, ipv6({ src: PEER.ip6, dst: solicited, nh: 58, payload: ns, hlim: 255 })));
    const body = pattern(40, 9);
    const echo = icmp6Msg({ src: PEER.ip6, dst: OUR_IP6, type: 128, param: (0x4321 << 16) | 1, body });
    send(1110, eth(OUR_MAC, PEER.mac, 0x86dd, ipv6({ src: PEER.ip6, dst: OUR_IP6, nh: 58, payload: echo })));
    facts.echo6 = body;
    ref.finish();
    return { pcap: capture(log), ref: ref.out, facts };
  }
  send(0, eth(BCAST, PEER.mac, 0x0806, arpPkt({ op: 1, sha: PEER.mac, spa: PEER.ip, tpa: OUR_IP })));
  send(5, ip4(17, udpPkt({ src: PEER.ip, dst: OUR_IP, sport: 5000, dport: 9, payload: text("anyone?") })));
  facts.ping = pattern(56, 1);
  send(10, ip4(1, icmpEcho({ id: 0x1234, seq: 1, payload: facts.ping })));
  send(20, tcp({ dport: 81, seq: 7000, flags: TH.SYN, opts: { mss: 1460 } }));
  const [synack] = send(30, tcp({ seq: 1000, flags: TH.SYN, opts: { mss: 1460, ws: 7, sackOk: true, ts: [500, 0] } }))
    .filter((f) => f.tcp)
    .map((f) => f.tcp);
  assert.ok(synack && synack.flags === (TH.SYN | TH.ACK), "the reference answers the SYN");
  const iss = synack.seq;
  const ecr = () => synack.opts.ts[0];
  let snd = 1001;
  let rcv = iss + 1;
  send(31, tcp({ seq: snd, ack: rcv, flags: TH.ACK, opts: { ts: [501, ecr()] } }));
  facts.data = [text("hello, pmstack under WASI\n"), pattern(1200, 2), pattern(1200, 3)];
  let t = 40;
  for (const d of facts.data) {
    send(t, tcp({ seq: snd, ack: rcv, flags: TH.ACK | TH.PSH, payload: d, opts: { ts: [500 + t, ecr()] } }));
    snd += d.length;
    if (app === "echo") rcv += d.length;
    t += 5;
  }
  send(60, tcp({ seq: snd, ack: rcv, flags: TH.ACK, opts: { ts: [560, ecr()] } }));
  send(70, tcp({ seq: snd, ack: rcv, flags: TH.ACK | TH.FIN, opts: { ts: [570, ecr()] } }));
  snd += 1;
  rcv += 1; // the FIN the echo answers with
  send(71, tcp({ seq: snd, ack: rcv, flags: TH.ACK, opts: { ts: [571, ecr()] } }));
  send(
    72,
    eth(
      mac("02:00:00:00:00:99"),
      PEER.mac,
      0x0800,
      ipv4({ src: PEER.ip, dst: OUR_IP, proto: 17, payload: new Uint8Array(8) }),
    ),
  );
  Object.assign(facts, { iss, clientFin: snd - 1 });
  ref.finish();
  return { pcap: capture(log), ref: ref.out, facts };
}
const capture = (log) =>
  writePcap(log.map((r) => ({ units: BASE_US + BigInt(Math.floor(r.t * 1000 + 0.5)), data: r.frame })));

/** The records the replay must write for the reference's frames, in the unit of `magic`. */
function expected(ref, magic = MAGIC_US) {
  const per = magic === MAGIC_NS ? 1e6 : 1e3;
  const base = magic === MAGIC_NS ? BASE_US * 1000n : BASE_US;
  return ref.map((r) => ({ units: base + BigInt(Math.floor(r.t * per + 0.5)), len: r.frame.length, data: r.frame }));
}

function replay(pcapBytes, args, name = "in.pcap") {
  const dir = scratchDir("disk");
  writeFileSync(join(dir, name), pcapBytes);
  const r = runNode([...args, `/data/${name}`, "/data/out.pcap"], dir);
  const file = join(dir, "out.pcap");
  return { ...r, dir, out: existsSync(file) ? readFileSync(file) : null };
}

async function replayAsync(pcapBytes, args) {
  const dir = scratchDir("disk");
  writeFileSync(join(dir, "in.pcap"), pcapBytes);
  const r = await runNodeAsync([...args, "/data/in.pcap", "/data/out.pcap"], dir);
  const file = join(dir, "out.pcap");
  return { ...r, dir, out: existsSync(file) ? readFileSync(file) : null };
}

const hex = (s) => Array.from(s, (x) => x.toString(16).padStart(2, "0")).join("");
const baseArgs = ["--mac", US.mac, "--ip", US.ip, "--listen", "80", "--secret", hex(SECRET)];

test("the replay answers a capture as the TypeScript host answered it: ARP, ICMP, TCP echo, byte for byte", () => {
  const c = conversation();
  const r = replay(c.pcap, baseArgs);
  assert.is(r.code, 0, r.stderr);
  const own = readPcap(c.pcap).records.filter((x) => x.data.subarray(6, 12).every((b, i) => b === OUR_MAC[i])).length;
  assert.match(r.stderr, new RegExp(`\\b${own} from --mac not fed\\b`), "the capture's own answers are not fed");
  const out = readPcap(r.out);
  assert.equal(
    [out.magic, out.le, out.major, out.minor, out.snaplen, out.link],
    [MAGIC_US, true, 2, 4, 262144, 1],
    "a classic little-endian microsecond Ethernet pcap",
  );
  assert.is(out.records.length, c.ref.length);
  out.records.forEach((x, i) => {
    assert.equal(x, expected(c.ref)[i], `record ${i}`);
  });

  // and they are the right answers
  const f = out.records.map((x) => parseFrame(x.data));
  const t = (x) => Number(x.units - BASE_US) / 1000;
  assert.is(f[0].arp?.op, 1, "the gratuitous ARP of the first turn");
  assert.is(f[0].arp.spa, OUR_IP);
  const arp = f.findIndex((x) => x.arp?.op === 2);
  assert.ok(arp > 0 && f[arp].arp.tpa === PEER.ip && f[arp].arp.spa === OUR_IP, "the ARP reply");
  assert.equal([...f[arp].arp.sha], [...OUR_MAC]);
  const unreach = f.find((x) => x.icmp?.type === 3);
  assert.is(unreach?.icmp.code, 3, "UDP to a closed port: port unreachable");
  const echo = f.findIndex((x) => x.icmp?.type === 0);
  assert.ok(echo > 0 && f[echo].icmp.csumOk, "the echo reply");
  assert.equal([...f[echo].icmp.body.subarray(4)], [...c.facts.ping]);
  assert.is(t(out.records[echo]), 10, "stamped with the core's clock at the request's time");
  const segs = f.filter((x) => x.tcp).map((x) => x.tcp);
  assert.ok(segs.every((s) => s.csumOk));
  const rst = segs.find((s) => s.sport === 81);
  assert.ok(rst && rst.flags & TH.RST && rst.ack === 7001, "a SYN to a closed port is reset");
  const synack = segs.find((s) => s.flags === (TH.SYN | TH.ACK));
  assert.is(synack.ack, 1001, "the SYN-ACK acknowledges the SYN");
  assert.is(synack.seq, c.facts.iss);
  assert.ok(synack.opts.mss > 0 && synack.opts.ts && synack.opts.sackOk, "MSS, timestamps and SACK offered");
  const echoed = segs.filter((s) => s.sport === 80 && s.payload.length > 0);
  const bytes = Buffer.concat(echoed.map((s) => s.payload));
  assert.equal(bytes, Buffer.concat(c.facts.data), "the data echoed back");
  assert.is(echoed[0].seq, c.facts.iss + 1);
  const fin = segs.find((s) => s.sport === 80 && s.flags & TH.FIN);
  assert.ok(fin, "the echo answers FIN with FIN");
  assert.is(fin.ack, c.facts.clientFin + 1, "and acknowledges the client's FIN");
});

test("the same input gives byte-identical output, run after run, and through stdin and stdout", () => {
  const c = conversation();
  const a = replay(c.pcap, baseArgs);
  const b = replay(c.pcap, baseArgs);
  assert.is(a.code, 0, a.stderr);
  assert.ok(a.out.length > 24 && a.out.equals(b.out), "two runs, the same bytes");
  const p = runNode([...baseArgs, "-", "-"], a.dir, { stdin: join(a.dir, "in.pcap") });
  assert.is(p.code, 0, p.stderr);
  assert.ok(p.stdout.equals(a.out), "'-' reads stdin and writes stdout");
});

test("every classic pcap variant: big-endian and nanosecond captures replay to the same frames", () => {
  const c = conversation();
  for (const [magic, le] of [
    [MAGIC_US, false],
    [MAGIC_NS, true],
    [MAGIC_NS, false],
  ]) {
    const r = replay(convertPcap(c.pcap, { magic, le }), baseArgs);
    assert.is(r.code, 0, r.stderr);
    const out = readPcap(r.out);
    assert.is(out.magic, magic, "the output keeps the input's resolution");
    assert.ok(out.le, "little-endian");
    assert.equal(out.records, expected(c.ref, magic), `magic ${magic.toString(16)} ${le ? "LE" : "BE"}`);
  }
});

test("IPv6: duplicate address detection on the capture's clock, neighbor solicitation and echo", () => {
  const c = conversation({ v6: true });
  const r = replay(c.pcap, [...baseArgs, "--ip6", US.ip6]);
  assert.is(r.code, 0, r.stderr);
  const out = readPcap(r.out);
  assert.equal(out.records, expected(c.ref));
  const f = out.records.map((x) => parseFrame(x.data));
  const at = (i) => Number(out.records[i].units - BASE_US) / 1000;
  const dad = f.findIndex((x) => x.nd && x.icmp6.type === 136);
  assert.ok(dad > 0 && at(dad) === 1000, "our addresses announced once DAD ends, 1000 ms in");
  const na = f.findIndex((x) => x.nd && x.icmp6.type === 136 && at(f.indexOf(x)) === 1100);
  assert.ok(na > 0 && f[na].nd.flags & 0x40, "a solicited advertisement answers the client");
  const echo = f.find((x) => x.icmp6?.type === 129);
  assert.ok(echo && echo.icmp6.csumOk, "the ICMPv6 echo reply");
  assert.equal([...echo.icmp6.body], [...c.facts.echo6]);
});

test("--app discard takes the bytes and sends none back", () => {
  const c = conversation({ app: "discard" });
  const r = replay(c.pcap, [...baseArgs, "--app", "discard"]);
  assert.is(r.code, 0, r.stderr);
  const out = readPcap(r.out);
  assert.equal(out.records, expected(c.ref), "as the reference host with the discard app");
  const segs = out.records.map((x) => parseFrame(x.data)).filter((x) => x.tcp && x.tcp.sport === 80);
  assert.ok(segs.some((x) => x.tcp.flags === (TH.SYN | TH.ACK)));
  assert.ok(
    segs.every((x) => x.tcp.payload.length === 0),
    "no payload from the server",
  );
  const bytes = c.facts.data.reduce((a, d) => a + d.length, 0);
  assert.ok(
    segs.some((x) => x.tcp.flags & TH.FIN && x.tcp.ack === 1001 + bytes + 1),
    "every byte and the FIN acknowledged, FIN answered with FIN",
  );
});

test("the same module under Deno's WASI writes the same bytes", () => {
  const c = conversation();
  const n = replay(c.pcap, baseArgs);
  assert.is(n.code, 0, n.stderr);
  const d = runDeno([...baseArgs, "in.pcap", "deno.pcap"], n.dir);
  assert.is(d.error, undefined, String(d.error));
  assert.is(d.code, 0, `deno exited ${d.code}: ${d.stderr}`);
  assert.ok(readFileSync(join(n.dir, "deno.pcap")).equals(n.out), "Deno and Node agree byte for byte");
  const abs = runDeno([...baseArgs, join(n.dir, "in.pcap"), join(n.dir, "abs.pcap")], n.dir);
  assert.is(abs.code, 0, abs.stderr);
  assert.ok(readFileSync(join(n.dir, "abs.pcap")).equals(n.out), "absolute names, through the root pre-opened as /");
  const bad = runDeno([...baseArgs, "missing.pcap", "x.pcap"], n.dir);
  assert.is(bad.code, 1);
  assert.match(bad.stderr, /cannot open missing\.pcap: no such file or directory/);
});

test("an empty capture: the core's own announcement and the linger only", () => {
  const r = replay(writePcap([]), [...baseArgs, "--linger", "0"]);
  assert.is(r.code, 0, r.stderr);
  const out = readPcap(r.out);
  assert.is(out.records.length, 1);
  assert.is(parseFrame(out.records[0].data).arp?.op, 1);
  assert.match(r.stderr, /0 records/);
});

test("records that are not fed, chained frames and a clock that never goes back", () => {
  const c = conversation();
  const recs = readPcap(c.pcap).records;
  const arp = recs.find((r) => r.data[12] === 8 && r.data[13] === 6 && r.data[6 + 5] === 1); // the client's
  const at = (ms) => BASE_US + BigInt(ms * 1000);
  const ping = eth(OUR_MAC, PEER.mac, 0x0800, ipv4({ src: PEER.ip, dst: OUR_IP, proto: 1, payload: icmpEcho({}) }));
  const input = writePcap([
    { units: at(0), data: arp.data },
    { units: at(10), data: ping.subarray(0, 30), len: ping.length }, // cut short by the snap length
    { units: at(20), data: new Uint8Array(0) }, // empty
    { units: at(30), data: new Uint8Array(70000) }, // longer than any frame the core takes
    { units: at(40), data: recs[0].data }, // our own gratuitous ARP, from the capture
    { units: at(50), data: Uint8Array.from({ length: 5000 }, (_, i) => (i < 6 ? OUR_MAC[i] : i & 255)) }, // 3 buffers
    { units: at(45), data: ping }, // 5 ms back in time: fed at the core's present, 50
  ]);
  const r = replay(input, [...baseArgs, "--linger", "0"]);
  assert.is(r.code, 0, r.stderr);
  assert.match(
    r.stderr,
    /7 records: 3 fed, 1 from --mac not fed, 1 cut short by the snap length, 2 empty or too long, 1 out of time order; 3 frames written/,
    r.stderr,
  );
  const out = readPcap(r.out).records;
  const reply = out.findIndex((x) => parseFrame(x.data).icmp?.type === 0);
  assert.ok(reply > 0, "the ping is answered");
  assert.is(out[reply].units, at(50), "at the core's present, not at its own earlier time");
});

test("bad input ends with a message and exit status 1, never a trap", async () => {
  const good = conversation().pcap;
  const le32 = (b, at, v) => new DataView(b.buffer, b.byteOffset).setUint32(at, v, true);
  const withWord = (at, v) => {
    const b = good.slice();
    le32(b, at, v);
    return b;
  };
  const cases = [
    [new Uint8Array(0), /empty or shorter than a pcap file header/],
    [good.slice(0, 10), /truncated: shorter than a pcap file header/],
    [good.slice(0, 24 + 8), /truncated: the file ends inside a record header \(at byte 24\)/],
    [good.slice(0, good.length - 3), /truncated: the file ends inside a record \(at byte \d+\)/],
    [withWord(0, 0x0a0d0d0a), /a pcapng file; this tool reads classic pcap/],
    [withWord(0, 0x12345678), /not a pcap file \(bad magic number\)/],
    [withWord(20, 101), /link type 101 is not Ethernet \(1\)/],
    [withWord(24 + 8, 300000), /corrupt record: captured length above 262144/],
    [withWord(24 + 4, 1_000_000), /corrupt record: its timestamp fraction is not below one second/],
  ];
  const runs = await Promise.all(cases.map(([bytes]) => replayAsync(bytes, baseArgs)));
  for (const [k, [, msg]] of cases.entries()) {
    const r = runs[k];
    assert.not.match(r.stderr, /TRAP/, "an exit status, not a trap");
    assert.is(r.code, 1, `${msg}: ${r.stderr}`);
    assert.match(r.stderr, msg);
    assert.match(r.stderr, /^pmstack-replay: \/data\/in\.pcap: /);
  }
  // a truncated file still gets the answers to the records before the cut
  const r = replay(good.slice(0, good.length - 3), baseArgs);
  assert.ok(readPcap(r.out).records.length > 5);
});

test("bad arguments end with a message and exit status 2; --help prints the usage", async () => {
  const dir = scratchDir("disk");
  writeFileSync(join(dir, "in.pcap"), writePcap([]));
  const files = ["/data/in.pcap", "/data/out.pcap"];
  const cases = [
    [["--ip", US.ip, ...files], /--mac is required/],
    [["--mac", US.mac, ...files], /give the stack an address: --ip, --ip6 or both/],
    [["--mac", "02:00:00:00:00", "--ip", US.ip, ...files], /--mac: not a unicast MAC address: 02:00:00:00:00/],
    [["--mac", "03:00:00:00:00:01", "--ip", US.ip, ...files], /--mac: not a unicast MAC address/],
    [["--mac", US.mac, "--ip", "198.18.0.256/24", ...files], /--ip: not an IPv4 address: 198\.18\.0\.256\/24/],
    [["--mac", US.mac, "--ip", "198.18.0.2/33", ...files], /--ip: the prefix length must be 0\.\.32/],
    [["--mac", US.mac, "--ip6", "2001:db8::1::2", ...files], /--ip6: not an IPv6 address/],
    [["--mac", US.mac, "--ip6", "fe80::1", ...files], /--ip6: not a unicast address to configure/],
    [["--mac", US.mac, "--ip", US.ip, "--listen", "0", ...files], /--listen: a port is 1\.\.65535/],
    [["--mac", US.mac, "--ip", US.ip, "--app", "chargen", ...files], /--app: echo or discard/],
    [["--mac", US.mac, "--ip", US.ip, "--secret", "abc", ...files], /--secret: 64 hex digits/],
    [["--mac", US.mac, "--ip", US.ip, "--frobnicate", "1", ...files], /unknown option: --frobnicate/],
    [["--mac", US.mac, "--ip", US.ip, "/data/in.pcap"], /an input and an output file are needed/],
    [["--mac", US.mac, "--ip", US.ip, ...files, "/data/x"], /one input and one output file, not more/],
    [["--mac", US.mac, "--ip", US.ip, "--linger"], /this option needs a value: --linger/],
  ];
  const runs = await Promise.all(cases.map(([args]) => runNodeAsync(args, dir)));
  for (const [k, [, msg]] of cases.entries()) {
    const r = runs[k];
    assert.is(r.code, 2, `${msg}: ${r.stderr}`);
    assert.match(r.stderr, msg);
  }
  const ok = runNode(["--mac=" + US.mac, "--ip=" + US.ip, "--ip6", "2001:db8:0:1:2:3:4:5/48", ...files], dir);
  assert.is(ok.code, 0, `--name=value and a full IPv6 address: ${ok.stderr}`);
  const h = runNode(["--help"], dir);
  assert.is(h.code, 0);
  assert.match(h.stdout.toString(), /usage: pmstack-replay \[options\] INPUT\.pcap OUTPUT\.pcap/);
  const nf = runNode(["--mac", US.mac, "--ip", US.ip, "/data/nope.pcap", "/data/out.pcap"], dir);
  assert.is(nf.code, 1);
  assert.match(nf.stderr, /cannot open \/data\/nope\.pcap: no such file or directory/);
  const np = runNode(["--mac", US.mac, "--ip", US.ip, "/elsewhere/in.pcap", "/data/out.pcap"], dir);
  assert.is(np.code, 1);
  assert.match(np.stderr, /no pre-opened directory holds \/elsewhere\/in\.pcap/);
});

test("the module imports only wasi_snapshot_preview1 functions and exports _start and its memory", () => {
  const m = new WebAssembly.Module(readFileSync(WASM));
  const imports = WebAssembly.Module.imports(m);
  assert.ok(imports.length > 0 && imports.every((i) => i.module === "wasi_snapshot_preview1" && i.kind === "function"));
  assert.equal(
    WebAssembly.Module.exports(m)
      .map((e) => e.name)
      .sort(),
    ["_start", "memory"],
  );
  // docs/wasi.md lists each import
  const doc = readFileSync(new URL("../docs/wasi.md", import.meta.url), "utf8");
  for (const i of imports) assert.ok(doc.includes(`\`${i.name}\``), `docs/wasi.md names ${i.name}`);
});

test("tshark reads the output (where tshark is installed)", () => {
  const have = spawnSync("tshark", ["--version"], { encoding: "utf8" });
  if (have.error) return; // not installed here: .ci/deps installs it for CI
  const c = conversation();
  const r = replay(c.pcap, baseArgs);
  const t = spawnSync("tshark", ["-r", join(r.dir, "out.pcap"), "-T", "fields", "-e", "_ws.col.Protocol"], {
    encoding: "utf8",
  });
  assert.is(t.status, 0, t.stderr);
  const protos = t.stdout.trim().split("\n");
  assert.is(protos.length, readPcap(r.out).records.length);
  for (const p of ["ARP", "ICMP", "TCP"]) assert.ok(protos.includes(p), `${p} in ${protos.join(",")}`);
});

test.run();

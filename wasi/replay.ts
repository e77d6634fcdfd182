// pmstack-replay: the pmstack core under WASI. Reads a pcap capture, feeds each captured frame
// to the core at its capture time (the core's timers run in between on the capture's clock),
// and writes every frame the core sends as a pcap record stamped with the core's clock at send
// time. Built with the core's sources into one module, build/pmstack-replay.wasm, whose only
// imports are wasi_snapshot_preview1 functions (wasi/io.ts) and which exports `_start` and its
// memory (wasi/asconfig.json; docs/wasi.md).
//
// It is also the worked example of docs/core-abi.md: it uses nothing of the core but the
// exports of assembly/index.ts and the numbers that page documents (configuration offsets,
// ring and slot layout, command and event codes), in the order that page gives. A host in
// another language does the same through its Wasm engine's calls and a view of the memory.

import {
  poolReserve,
  poolAttach,
  bufAlloc,
  bufUnref,
  bufAddress,
  nameCheck,
  ringPush,
  arenaEnd,
  arenaSeal,
  stackConfig,
  stackInit,
  stackRing,
  stackPoll,
} from "../assembly/index";
import { CFG_MAC, CFG_IP, CFG_MASK, CFG_GW, CFG_MTU, CFG_SECRET, CFG_IP6, CFG_IP6_PREFIX, CFG_GW6 } from "../assembly/net/g";
import { EV_DATA, EV_PEER_CLOSED, EV_SEND_REFUSED, EV_ERROR } from "../assembly/net/g";
import { CMD_SEND, CMD_CLOSE, CMD_ABORT, CMD_LISTEN, CMD_RECVD } from "../assembly/stack";
import { OWNER_NIC, SF_MORE, BUF_SIZE, RING_HDR, RING_MASK, RING_HEAD, RING_TAIL } from "../assembly/layout";
import { SLOT_BUF, SLOT_OFF, SLOT_LEN, SLOT_CONN, SLOT_FLAGS } from "../assembly/layout";
import { say, sayU, sayI, sayStart, sayEnd, failEnd, exit, openFile, closeFd, EXIT_CORE } from "./io";
import * as args from "./args";
import { pcapOpen, pcapNext, pcapCreate, pcapRecord, pcapPut, pcapFinish } from "./pcap";
import { recUnits, recCap, recLen, recData, unitsPerSec, records, written } from "./pcap";

/** The longest frame fed to the core: a 64 KiB superframe and its Ethernet header (host/link/port.ts). */
const MAX_FRAME: u32 = 65536 + 14;
/** Polls at one instant before the core is taken to be stuck (it never is: each poll drains rings). */
const MAX_POLLS_PER_TURN: u32 = 100000;

let rx: usize = 0;
let tx: usize = 0;
let ain: usize = 0;
let aout: usize = 0;
let t0: i64 = 0; // the first record's time, in the file's unit
let unitsPerMs: f64 = 1000;
let now: f64 = 0; // the core's clock, ms since the first record
let next: f64 = Infinity; // the core's next deadline
// what happened to the records, for the summary line
let fed: u64 = 0;
let own: u64 = 0;
let cut: u64 = 0;
let tooLong: u64 = 0;
let noBuffer: u64 = 0;
let backwards: u64 = 0;
let refused: u64 = 0;

/** The core's assertion (env.abort in other hosts): a message on stderr and exit status 3. */
function replayAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  sayStart("the core aborted: ");
  sayStr(message);
  say(" at ");
  sayStr(fileName);
  say(":");
  sayU(line);
  say(":");
  sayU(column);
  failEnd(EXIT_CORE);
}
function sayStr(s: string | null): void {
  if (s === null) say("?");
  else say(s);
}

// ---- rings (docs/core-abi.md, "Rings"): header {mask, head, tail, lane}, 16-byte slots ----

@inline function head(r: usize): u32 {
  return load<u32>(r + RING_HEAD);
}
@inline function tail(r: usize): u32 {
  return load<u32>(r + RING_TAIL);
}
@inline function slot(r: usize, pos: u32): usize {
  return r + RING_HDR + (<usize>(pos & load<u32>(r + RING_MASK)) << 4);
}
@inline function space(r: usize): u32 {
  return load<u32>(r + RING_MASK) + 1 - (tail(r) - head(r));
}

function command(code: u32, conn: u32, buf: u32, off: u32, len: u32): void {
  // the caller checked the space: APP-IN is drained at every poll
  ringPush(ain, buf, off, len, conn, code << 8);
}

// ---- one turn of the core ----

/** Copies a captured frame into NIC-owned buffers (2 KiB each, chained) and posts it on RX. */
function deliver(p: usize, n: u32): void {
  const nb = (n + BUF_SIZE - 1) / BUF_SIZE;
  if (space(rx) < nb) {
    noBuffer++; // never: RX is drained at every poll
    return;
  }
  const bufs = memory.data(64 * 4, 4);
  for (let k: u32 = 0; k < nb; k++) {
    const b = bufAlloc(OWNER_NIC);
    if (b < 0) {
      for (let j: u32 = 0; j < k; j++) bufUnref(load<u32>(bufs + (<usize>j << 2)));
      noBuffer++;
      return;
    }
    store<u32>(bufs + (<usize>k << 2), <u32>b);
  }
  let pos = tail(rx);
  for (let k: u32 = 0; k < nb; k++) {
    const b = load<u32>(bufs + (<usize>k << 2));
    const l = k + 1 < nb ? BUF_SIZE : n - k * BUF_SIZE;
    memory.copy(<usize>bufAddress(b), p + <usize>(k * BUF_SIZE), l);
    const s = slot(rx, pos);
    store<u32>(s + SLOT_BUF, b);
    store<u16>(s + SLOT_OFF, 0);
    store<u16>(s + SLOT_LEN, <u16>l);
    store<u32>(s + SLOT_CONN, 0);
    store<u32>(s + SLOT_FLAGS, k + 1 < nb ? SF_MORE : 0);
    pos++;
  }
  store<u32>(rx + RING_TAIL, pos); // the whole chain at once
  fed++;
}

/** The output's timestamp for the core's clock t (ms since the first record). */
function stamp(t: f64): i64 {
  return t0 + <i64>Math.floor(t * unitsPerMs + 0.5);
}

/** Writes every complete frame on TX as a record at time t, then drops the NIC's references. */
function drainTx(t: f64): void {
  let h = head(tx);
  const end = tail(tx);
  while (h != end) {
    // the frame is the chain of slots up to one without SF_MORE
    let e = h;
    let complete = false;
    let len: u32 = 0;
    while (e != end) {
      const s = slot(tx, e);
      e++;
      if (nameCheck(load<u32>(s + SLOT_BUF), load<u16>(s + SLOT_OFF), load<u16>(s + SLOT_LEN)) == 0)
        len += load<u16>(s + SLOT_LEN);
      if ((load<u32>(s + SLOT_FLAGS) & SF_MORE) == 0) {
        complete = true;
        break;
      }
    }
    if (!complete) break;
    if (len > 0) pcapRecord(stamp(t), len);
    for (let q = h; q != e; q++) {
      const s = slot(tx, q);
      const b = load<u32>(s + SLOT_BUF);
      const o = <u32>load<u16>(s + SLOT_OFF);
      const l = <u32>load<u16>(s + SLOT_LEN);
      if (nameCheck(b, o, l) != 0) continue; // not a buffer the host holds: skipped
      if (l > 0) pcapPut(<usize>bufAddress(b) + o, l);
      bufUnref(b);
    }
    h = e;
    store<u32>(tx + RING_HEAD, h);
  }
}

/** The app: echo (or discard) on every accepted connection; FIN answered with FIN. */
function drainEvents(): void {
  let h = head(aout);
  const end = tail(aout);
  while (h != end) {
    if (space(ain) < 2) break; // the rest after the next poll
    const s = slot(aout, h);
    const buf = load<u32>(s + SLOT_BUF);
    const off = <u32>load<u16>(s + SLOT_OFF);
    const len = <u32>load<u16>(s + SLOT_LEN);
    const conn = load<u32>(s + SLOT_CONN);
    const flags = load<u32>(s + SLOT_FLAGS);
    const code = (flags >>> 8) & 0xff;
    h++;
    store<u32>(aout + RING_HEAD, h); // consumed before the commands it causes
    if (code == EV_DATA) {
      // the bytes where they landed (owner app): sent back as they are, or freed
      if (args.app == args.APP_ECHO) command(CMD_SEND, conn, buf, off, len);
      else bufUnref(buf);
      command(CMD_RECVD, conn, len, 0, 0);
    } else if (code == EV_PEER_CLOSED) {
      command(CMD_CLOSE, conn, 0, 0, 0);
    } else if (code == EV_SEND_REFUSED) {
      // the send queue is full: the echo cannot keep the stream whole, so it resets the connection
      bufUnref(buf);
      command(CMD_ABORT, conn, 0, 0, 0);
      refused++;
    } else if (code == EV_ERROR) {
      sayStart("the core refused to listen on port ");
      sayU(off);
      say(" (reason ");
      sayU(flags >>> 16);
      say(")");
      failEnd(EXIT_CORE);
    }
    // ACCEPTED, CLOSED, RESET, WRITABLE, LISTENING: nothing to do
  }
}

/** One instant of the core's clock: polls until it leaves no work and no command pending. */
function turn(t: f64): void {
  now = t;
  for (let k: u32 = 0; ; k++) {
    next = stackPoll(t);
    drainTx(t);
    drainEvents();
    if (next > t && tail(ain) == head(ain)) return;
    if (k == MAX_POLLS_PER_TURN) {
      sayStart("the core made no progress at ");
      sayI(<i64>t);
      say(" ms");
      failEnd(EXIT_CORE);
    }
  }
}

/** Runs the core's timers due up to time t. */
function timersUntil(t: f64): void {
  while (next <= t) turn(next > now ? next : now);
}

// ---- set-up (docs/core-abi.md, "Call sequence") ----

function setUp(): void {
  let r = poolReserve(args.buffers);
  if (r < 0) coreError("reserving the pool's metadata", r);
  const c = stackConfig();
  memory.fill(c, 0, 256); // zero: every field its default
  memory.copy(c + CFG_MAC, args.mac, 6);
  store<u32>(c + CFG_IP, args.ip4);
  store<u32>(c + CFG_MASK, args.prefix4 == 0 ? 0 : 0xffffffff << (32 - args.prefix4));
  store<u32>(c + CFG_GW, args.gw4);
  store<u32>(c + CFG_MTU, args.mtu);
  memory.copy(c + CFG_SECRET, args.secret, 32);
  if (args.hasIp6) {
    memory.copy(c + CFG_IP6, args.ip6, 16);
    store<u32>(c + CFG_IP6_PREFIX, args.prefix6);
  }
  if (args.hasGw6) memory.copy(c + CFG_GW6, args.gw6, 16);
  r = stackInit();
  if (r < 0) coreError("setting the stack up", r);
  arenaSeal();
  // the buffers go above the arena, on a 64 KiB boundary
  const at = (arenaEnd() + 0xffff) & ~(<usize>0xffff);
  const end = <u64>at + (<u64>args.buffers << 11);
  const have = <u64>memory.size() << 16;
  if (end > have && (end > 0xffff0000 || memory.grow(<i32>((end - have + 0xffff) >> 16)) < 0)) {
    sayStart("no memory for ");
    sayU(args.buffers);
    say(" buffers of 2 KiB (--buffers)");
    failEnd(EXIT_CORE);
  }
  r = poolAttach(at);
  if (r < 0) coreError("attaching the buffers", r);
  rx = stackRing(0);
  tx = stackRing(1);
  ain = stackRing(2);
  aout = stackRing(3);
  for (let i: u32 = 0; i < args.nPorts; i++) {
    const port = load<u32>(args.ports + (<usize>i << 2));
    command(CMD_LISTEN, port, 0, port, 0); // tag = port, backlog 0 = 128
  }
}

function coreError(what: string, r: i32): void {
  sayStart("the core failed ");
  say(what);
  say(": error ");
  sayI(r);
  if (r == -11) say(" (E_NOMEM: the tables and buffers do not fit one 4 GiB memory; lower --buffers)");
  failEnd(EXIT_CORE);
}

// ---- main ----

function main(): void {
  args.parseArgs();
  const inFd = openFile(args.inPath, args.inLen, false);
  pcapOpen(inFd, args.inPath, args.inLen); // a bad input is refused before the output is created
  const outFd = openFile(args.outPath, args.outLen, true);
  pcapCreate(outFd, args.outPath, args.outLen);
  setUp();
  unitsPerMs = <f64>unitsPerSec / 1000;
  let have = pcapNext();
  t0 = have ? recUnits : 0;
  turn(0); // LISTEN commands, the gratuitous ARP (and with IPv6 duplicate address detection)
  while (have) {
    let t = <f64>(recUnits - t0) / unitsPerMs;
    if (t < now) {
      t = now; // a record out of time order: fed at the core's present
      backwards++;
    }
    timersUntil(t);
    if (recCap < recLen) cut++;
    else if (recCap == 0 || recCap > MAX_FRAME) tooLong++;
    else if (recCap >= 12 && memory.compare(recData + 6, args.mac, 6) == 0) own++;
    else {
      deliver(recData, recCap);
      turn(t);
    }
    have = pcapNext();
  }
  timersUntil(now + <f64>args.lingerMs);
  pcapFinish();
  closeFd(outFd);
  closeFd(inFd);
  sayStart("");
  sayU(records);
  say(" records: ");
  sayU(fed);
  say(" fed, ");
  sayU(own);
  say(" from --mac not fed, ");
  sayU(cut);
  say(" cut short by the snap length, ");
  sayU(tooLong);
  say(" empty or too long");
  if (noBuffer > 0) {
    say(", ");
    sayU(noBuffer);
    say(" dropped (no free buffer)");
  }
  if (backwards > 0) {
    say(", ");
    sayU(backwards);
    say(" out of time order");
  }
  say("; ");
  sayU(written);
  say(" frames written");
  if (refused > 0) {
    say("; ");
    sayU(refused);
    say(" echo sends refused (connection reset)");
  }
  sayEnd();
  exit(0);
}

main();

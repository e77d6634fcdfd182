// Runs an application (the HTTP server, the key-value store, or your own) on a stack on one NIC
// queue (TAP or AF_XDP), with its log in the same PM pool: the composition `pmstack httpd` and
// `pmstack kv` use. One process, one pool, one queue, one run-to-completion loop.

import { PmLog } from "../log.js";
import { NicLoop, type LoopOptions } from "../loop.js";
import { TapPort } from "../nic/tap.js";
import { XdpPort } from "../nic/xdp.js";
import { reserveNicQueues, type NicPort, type NicQueues } from "../nic/port.js";
import { Stack, type StackConfig, type StackEvent } from "../stack.js";
import { HttpdApp } from "./httpd.js";
import { KvApp } from "./kv.js";

/**
 * log2 of serve()'s AF_XDP ring size: 1024 slots (FILL, RX, TX, COMPLETION, and the fill table
 * behind them) in pools of 32768 buffers or more, else 512. 50 clients pipelining 16 SETs land
 * about 600 frames between two turns: a FILL ring of 512 ran dry, the kernel dropped frames
 * (NicStats.xdpKernel.rxFillRingEmpty) and TCP waited for timeouts. Every slot holds a buffer,
 * so a small pool keeps the smaller ring (16384 buffers holding 10,000 1 KiB values would
 * otherwise run into kv's free-buffer reserve).
 */
const xdpRingLog2 = (buffers: number): number => (buffers >= 32768 ? 10 : 9);

/** Where the frames come from. */
export type ServeNic =
  | {
      kind: "tap";
      /** Device name or pattern (default "pmstack%d"). */
      name?: string;
      /** Make the device in this namespace (a path like /run/netns/NAME). */
      netns?: string | null;
      /** A queue of a multi-queue device (IFF_MULTI_QUEUE): one per worker (workers.ts). */
      multiQueue?: boolean;
    }
  | {
      kind: "xdp";
      /** The device whose queue the AF_XDP socket binds (for tests, one end of a veth pair). */
      ifname: string;
      queue?: number;
      netns?: string | null;
      skbMode?: boolean;
      copyMode?: boolean;
      /** Default "fallback": a pool on a medium whose pages can't be pinned copies through an anonymous UMEM. */
      copyUmem?: "never" | "fallback" | "always";
      /** A veth pair served on several queues: steer the kernel's end (XdpOptions.steer). */
      steer?: { peer: string; queues: number; netns?: string | null };
    };

export interface ServeOptions extends StackConfig {
  /**
   * The PM pool file (created if missing) and its size in 2 KiB buffers: a new pool gets this
   * many; an existing smaller one grows to it (data kept); a larger one keeps its size.
   */
  path: string;
  buffers: number;
  metaBytes?: number;
  mode?: "auto" | "msync" | "clwb" | "clflushopt" | "strict" | "journal";
  /**
   * The pool's core memory is a shared one (SharedArrayBuffer), which other threads may read:
   * a sharded kv's workers read each other's loans there (docs/scaling.md).
   */
  sharedMemory?: boolean;
  /** The NIC queue (default: a TAP device named "pmstack%d" in the current namespace). */
  nic?: ServeNic;
  /** Shorthand for `nic: { kind: "tap", ...tap }`. */
  tap?: { name?: string; netns?: string | null };
  /** The port the app listens on (default: the app's own, 80 for httpd, 6379 for kv). */
  port?: number;
  /** Busy-poll instead of waking on readiness (burns a core; lowest latency). */
  busyPoll?: boolean;
}

/** What an app gives the loop. Both run inside the loop's turn (see NicLoop). */
export interface App {
  onEvent: (ev: StackEvent) => void;
  onTurnEnd: () => void;
  /** The server is closing: stop timers, drop references (optional). */
  close?: () => void;
}

export interface AppServer<A extends App = App> {
  stack: Stack;
  log: PmLog;
  loop: NicLoop;
  nic: NicPort;
  app: A;
  /** The device's name (TAP: the name the kernel gave it). */
  ifname: string;
  /** Stops the loop, closes the NIC queue and the pool. Idempotent. */
  close(): void;
}

/**
 * Opens the pool (recovering the log: kept buffers come back by name, the rest is reclaimed),
 * opens the NIC queue, builds the app with `make(stack, log)` and starts the loop.
 */
export function serve<A extends App>(
  opts: ServeOptions,
  make: (stack: Stack, log: PmLog) => A,
  loopOpts: Omit<LoopOptions, "onEvent" | "onTurnEnd"> = {},
): AppServer<A> {
  const nicOpts: ServeNic = opts.nic ?? { kind: "tap", ...opts.tap };
  let queues: NicQueues | undefined;
  const stack = Stack.create({
    ...opts,
    // a turn's replies across many pipelining connections can outgrow the default 1024-slot TX
    // ring, and the core drops (and later retransmits) what does not fit: give it room; and
    // the app's sends (a GET reply is two or three) can outgrow a 1024-slot APP-IN ring, where
    // the rest of the turn's replies would wait for another turn
    rings: { tx: 14, appIn: 14, appOut: 14, ...opts.rings },
    pool: {
      path: opts.path,
      buffers: opts.buffers,
      metaBytes: opts.metaBytes,
      mode: opts.mode as never,
      grow: true,
      shared: opts.sharedMemory ?? false,
    },
    configure: (core) => {
      PmLog.configure(core);
      queues = reserveNicQueues(core, nicOpts.kind === "xdp" ? { ringLog2: xdpRingLog2(opts.buffers) } : {});
    },
  });
  let log: PmLog | undefined;
  let nic: NicPort | undefined;
  let app: A;
  try {
    log = PmLog.open(stack.pool); // before anything allocates: recovery claims the kept buffers
    if (nicOpts.kind === "xdp") {
      nic = XdpPort.open(stack.pool, queues!, {
        ifname: nicOpts.ifname,
        queue: nicOpts.queue,
        netns: nicOpts.netns ?? null,
        skbMode: nicOpts.skbMode,
        copyMode: nicOpts.copyMode,
        copyUmem: nicOpts.copyUmem ?? "fallback",
        steer: nicOpts.steer,
      });
    } else {
      nic = TapPort.open(stack.pool, queues!, {
        name: nicOpts.name ?? "pmstack%d",
        netns: nicOpts.netns ?? null,
        multiQueue: nicOpts.multiQueue,
      });
    }
    stack.configureOffloads(nic.caps, { txFaults: !!loopOpts.faults?.tx });
    app = make(stack, log);
  } catch (e) {
    nic?.close();
    stack.shutdown();
    throw e;
  }
  const loop = new NicLoop(stack, nic, {
    busyPoll: opts.busyPoll,
    ...loopOpts,
    onEvent: app.onEvent,
    onTurnEnd: app.onTurnEnd,
  });
  loop.start();
  let closed = false;
  return {
    stack,
    log,
    loop,
    nic,
    app,
    ifname: nic.info.ifname,
    close() {
      if (closed) return;
      closed = true;
      loop.stop();
      app.close?.();
      nic!.close();
      log.drain(); // every acknowledged write is durable already; this waits for the rest
      stack.shutdown();
    },
  };
}

/** What a server (or each worker) reports at start. */
export interface ServerInfo {
  /** The device's name (TAP: the name the kernel gave it). */
  ifname: string;
  /** The pool: file, medium, persistence (Pool.describe). */
  pool: string;
  /** Where the NIC path copies bytes. */
  copies: string;
  /** How the kernel picks each frame's queue (null: a TAP device of one queue). */
  steering: string | null;
  /**
   * What the log recovered at open: keys (a sharded kv's loans, values it keeps for other
   * workers' keys, not among them), records, a torn tail's damage.
   */
  recovered: { keys: number; records: number; damage: string | null; loans: number };
}

/** A served app's start-up report (ServerInfo). */
export function serverInfo(s: AppServer): ServerInfo {
  const rec = s.log.recovery;
  const loans = (s.app as { stats?: { loans?: number } }).stats?.loans ?? 0;
  return {
    ifname: s.ifname,
    pool: s.stack.pool.describe(),
    copies: s.nic.copies,
    steering: s.nic.info.steering ?? null,
    recovered: { keys: rec.liveKeys - loans, records: rec.records, damage: rec.damage, loans },
  };
}

/**
 * A served app's counters, the body of `pmstack stats --json` (one worker's, with workers): the
 * stack, loop, NIC, pool, log and journal, IPv6 addresses, the app's stats and TLS's.
 */
export function serverStats(s: AppServer, tls: { stats: unknown } | null = null): Record<string, unknown> {
  return {
    stack: s.stack.stats(),
    loop: s.loop.stats,
    nic: s.nic.stats(),
    pool: s.stack.pool.counts(),
    log: s.log.stats(),
    journal: s.stack.pool.journalStats(),
    ip6: s.stack.ip6Addresses(),
    app: (s.app as { stats?: unknown }).stats,
    ...(tls ? { tls: tls.stats } : {}),
  };
}

/** `pmstack httpd`: the durable HTTP server (HttpdApp) on a NIC queue. */
export function serveHttpd(opts: ServeOptions): AppServer<HttpdApp> {
  return serve(opts, (stack, log) => new HttpdApp(stack, log, opts.port ?? 80));
}

/** `pmstack kv`: the durable Redis-protocol store (KvApp) on a NIC queue. */
export function serveKv(opts: ServeOptions): AppServer<KvApp> {
  return serve(opts, (stack, log) => new KvApp(stack, log, opts.port ?? 6379));
}

// Runs an application (the HTTP server, later the key-value store) on a stack on a NIC queue,
// with its log in the same PM pool: the composition `pmstack httpd` uses.

import { PmLog } from "../log.js";
import { NicLoop } from "../loop.js";
import { TapPort } from "../nic/tap.js";
import { reserveNicQueues, type NicQueues } from "../nic/port.js";
import { Stack, type StackConfig } from "../stack.js";
import { HttpdApp } from "./httpd.js";

export interface ServeOptions extends StackConfig {
  /** The PM pool file (created if missing) and its size. */
  path: string;
  buffers: number;
  metaBytes?: number;
  mode?: "auto" | "msync" | "clwb" | "clflushopt" | "strict";
  /** TAP device name and the namespace to make it in (a path like /run/netns/NAME). */
  tap?: { name?: string; netns?: string | null };
  port?: number;
}

export interface AppServer {
  stack: Stack;
  log: PmLog;
  loop: NicLoop;
  nic: TapPort;
  app: HttpdApp;
  /** Stops the loop, closes the NIC queue and the pool. */
  close(): void;
}

/** Opens the pool (recovering the log), starts the stack on a TAP queue and serves HTTP. */
export function serveHttpd(opts: ServeOptions): AppServer {
  let queues: NicQueues | undefined;
  const stack = Stack.create({
    ...opts,
    pool: { path: opts.path, buffers: opts.buffers, metaBytes: opts.metaBytes, mode: opts.mode as never },
    configure: (core) => {
      PmLog.configure(core);
      queues = reserveNicQueues(core);
    },
  });
  let log: PmLog | undefined;
  let nic: TapPort | undefined;
  try {
    log = PmLog.open(stack.pool); // before anything allocates: recovery claims the kept buffers
    nic = TapPort.open(stack.pool, queues!, { name: opts.tap?.name ?? "pmstack%d", netns: opts.tap?.netns ?? null });
  } catch (e) {
    nic?.close();
    stack.shutdown();
    throw e;
  }
  const app = new HttpdApp(stack, log, opts.port ?? 80);
  const loop = new NicLoop(stack, nic, { onEvent: app.onEvent, onTurnEnd: app.onTurnEnd });
  loop.start();
  return {
    stack,
    log,
    loop,
    nic,
    app,
    close() {
      loop.stop();
      nic!.close();
      stack.shutdown();
    },
  };
}

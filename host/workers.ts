// `pmstack kv --workers N`, `pmstack httpd --workers N` and their API (docs/scaling.md): N
// worker threads, each a whole pmstack of its own (core instance, PM pool file, queue of one
// multi-queue device, shard of the store), share-nothing; the steering hash picks each
// connection's queue, and so its worker. The device is a multi-queue TAP device, or a device
// served with AF_XDP (a socket per queue; on a veth pair, the kernel's end steered). The store is
// sharded (kv/shard.ts, httpd-shard.ts): a key written on any connection is read and deleted
// from every connection. This thread starts the workers one after another (on TAP the first
// makes the device, the others add their queues to it), answers for them (stats, ss), and stops
// them all if one fails: a server missing a worker would serve part of its keys.

import { existsSync, readFileSync, unlinkSync } from "node:fs";
import { availableParallelism } from "node:os";
import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import { PmstackError } from "./errors.js";
import { replaceFileDurably } from "./secure.js";
import type { ServeNic, ServeOptions, ServerInfo } from "./apps/serve.js";

/** TLS on a port of each worker: the certificate, key and (for client certificates) CA, in PEM. */
export interface WorkerTlsSpec {
  port: number;
  cert: Uint8Array;
  key: Uint8Array;
  ca?: Uint8Array;
  handshakeTimeoutMs?: number;
}

/** What each worker's app is made of: plain data (it crosses to the worker threads). */
export type WorkerAppSpec =
  | {
      app: "kv";
      /** The port (default 6379). */
      port?: number;
      idleTimeoutMs?: number;
      requirepass?: string | Uint8Array | null;
      /** Protected mode's networks (CIDRs); null: off. */
      protectedNets?: string[] | null;
      tls?: WorkerTlsSpec;
    }
  | {
      app: "httpd";
      /** The port (default 80). */
      port?: number;
      idleTimeoutMs?: number;
      maxBody?: number;
      /** The bearer token (HttpdOptions.token) and whether reads need it too. */
      token?: string | null;
      privateReads?: boolean;
      tls?: WorkerTlsSpec;
    };

export interface ServeWorkersOptions extends Omit<ServeOptions, "nic" | "tap"> {
  /** Worker threads, each with a pool and a queue (default 1; "auto": the machine's CPUs). */
  workers: number | "auto";
  app: WorkerAppSpec;
  /** The multi-queue TAP device: its name (default "pmstack0") and namespace. The default NIC. */
  tap?: { name?: string; netns?: string | null };
  /**
   * AF_XDP instead: worker I binds queue I of `ifname` (a device with at least that many
   * queues). `peer`: the device is one end of a veth pair whose other end, `peer` (in
   * `peerNetns`, default `netns`), is the kernel's: it is steered by the hash of addresses and
   * ports, as the TAP device is (without it, a real NIC's own RSS picks the queues).
   */
  xdp?: {
    ifname: string;
    netns?: string | null;
    peer?: string | null;
    peerNetns?: string | null;
    skbMode?: boolean;
    copyUmem?: "never" | "fallback" | "always";
  };
}

/** One worker's start-up report. */
export type WorkerInfo = ServerInfo;

export interface WorkersServer {
  readonly count: number;
  /** The device all the workers' queues belong to. */
  readonly ifname: string;
  /** Each worker's start-up report, by index. */
  readonly workers: WorkerInfo[];
  /** Each pool file, by worker. */
  readonly paths: string[];
  /** `pmstack stats --json`'s body: a `workers` array and, at the top level, their totals. */
  stats(): Promise<Record<string, unknown>>;
  /** Every worker's connections, each with its `worker`. */
  connections(): Promise<Record<string, unknown>[]>;
  /** Called once if a worker fails (an uncaught error, or its thread ends): the others are being stopped. */
  onFailure: ((worker: number, err: Error) => void) | null;
  /** Stops every worker (their loops, NIC queues and pools). Idempotent. */
  close(): Promise<void>;
  /**
   * Ends worker `i`'s thread at once, as a crash of it would (fault injection for tests and
   * supervisors): onFailure is called and the others are stopped.
   */
  killWorker(i: number): Promise<void>;
}

/** The file beside the pools that records how many workers they belong to. */
export const workersManifest = (path: string): string => `${path}.workers`;

/** Worker `i`'s pool file (one worker: the path itself). */
export const workerPoolPath = (path: string, i: number, count: number): string =>
  count === 1 ? path : `${path}.w${i}`;

/** The worker count `--workers` means ("auto": the CPUs this process may use). */
export function resolveWorkers(w: number | "auto"): number {
  const n = w === "auto" ? availableParallelism() : w;
  if (!Number.isInteger(n) || n < 1 || n > 64)
    throw new RangeError(`pmstack: workers must be 1 to 64 or "auto", got ${w}`);
  return n;
}

/**
 * Checks that the pools at `path` belong to `count` workers, and records it for a new set:
 * a restart with another count is refused with a message naming the pools' count (the keys of
 * each shard are where their hash put them for that count).
 */
export function checkWorkerPools(path: string, count: number): void {
  const mf = workersManifest(path);
  let had: number | null = null;
  if (existsSync(mf)) {
    let j: { workers?: unknown };
    try {
      j = JSON.parse(readFileSync(mf, "utf8")) as { workers?: unknown };
    } catch (e) {
      throw new PmstackError("EWORKERS", `pmstack: ${mf}: not a workers manifest (${(e as Error).message})`);
    }
    if (typeof j.workers !== "number" || !Number.isInteger(j.workers) || j.workers < 2)
      throw new PmstackError("EWORKERS", `pmstack: ${mf}: no worker count in it`);
    had = j.workers;
  }
  // a manifest whose pools were never made (a start that failed before them) binds nothing
  if (
    had !== null &&
    had !== count &&
    !Array.from({ length: had }, (_, i) => workerPoolPath(path, i, had!)).some(existsSync)
  )
    had = null;
  if (had !== null && had !== count)
    throw new PmstackError(
      "EWORKERS",
      `pmstack: the pools of ${path} are sharded over ${had} workers (${mf}); start with --workers ${had} ` +
        `(a key lives on the worker its hash names for that count: changing it would need a reshard, which pmstack does not do)`,
    );
  if (count === 1) {
    if (existsSync(mf)) unlinkSync(mf); // one without pools (above): a single worker uses none
    return;
  }
  if (had === null) {
    if (existsSync(path))
      throw new PmstackError(
        "EWORKERS",
        `pmstack: ${path} is the pool of one worker; start with --workers 1, or give another --pm for ${count} workers`,
      );
    for (let i = 0; i < 64; i++)
      if (existsSync(workerPoolPath(path, i, 2)))
        throw new PmstackError(
          "EWORKERS",
          `pmstack: ${workerPoolPath(path, i, 2)} exists but ${mf} does not: not starting over pools of unknown worker count`,
        );
    // the manifest first, durably: pools made next are known to be this set's
    const text = JSON.stringify({ format: "pmstack-workers", version: 1, workers: count }) + "\n";
    replaceFileDurably(mf, new TextEncoder().encode(text));
  }
}

const workerUrl = new URL("./worker.js", import.meta.url);

/** Sums numbers field by field (nested objects too); anything else is taken from the first. */
export function sumStats(list: unknown[]): unknown {
  const first = list[0];
  if (typeof first === "number") return list.reduce((s: number, x) => s + (typeof x === "number" ? x : 0), 0);
  if (first && typeof first === "object" && !Array.isArray(first)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(first)) out[k] = sumStats(list.map((x) => (x as Record<string, unknown> | null)?.[k]));
    return out;
  }
  return first;
}

/** Worker `i`'s NIC queue: queue `i` of the one device. */
function workerNic(opts: ServeWorkersOptions, i: number, count: number): ServeNic {
  const x = opts.xdp;
  if (!x) {
    const tap = opts.tap;
    return { kind: "tap", name: tap?.name ?? "pmstack0", netns: tap?.netns ?? null, multiQueue: count > 1 };
  }
  return {
    kind: "xdp",
    ifname: x.ifname,
    queue: i,
    netns: x.netns ?? null,
    skbMode: x.skbMode,
    copyUmem: x.copyUmem,
    ...(x.peer && count > 1 ? { steer: { peer: x.peer, queues: count, netns: x.peerNetns ?? null } } : {}),
  };
}

/**
 * Starts `workers` worker threads serving one address on one multi-queue device, the store
 * sharded over them. Resolves once every worker serves; rejects (having stopped the ones
 * started) if one cannot start.
 */
export async function serveWorkers(opts: ServeWorkersOptions): Promise<WorkersServer> {
  const count = resolveWorkers(opts.workers);
  if (opts.tap && opts.xdp) throw new RangeError("pmstack: serveWorkers takes tap or xdp, not both");
  checkWorkerPools(opts.path, count);
  const { workers: _w, app, tap: _t, xdp: _x, ...serveOpts } = opts;
  // one channel per pair of workers
  const peers: (MessagePort | null)[][] = Array.from({ length: count }, () => new Array(count).fill(null));
  for (let i = 0; i < count; i++)
    for (let j = i + 1; j < count; j++) {
      const ch = new MessageChannel();
      peers[i]![j] = ch.port1;
      peers[j]![i] = ch.port2;
    }
  const threads: Worker[] = [];
  const infos: WorkerInfo[] = [];
  /** Questions in flight to each worker: its answer, by id. */
  const asks: Map<number, (v: unknown) => void>[] = [];
  let nextAsk = 1;
  let closing = false;
  let failed = false;
  const paths = Array.from({ length: count }, (_, i) => workerPoolPath(opts.path, i, count));
  const server: WorkersServer = {
    count,
    ifname: "",
    workers: infos,
    paths,
    onFailure: null,
    async stats() {
      // a worker gone (closing, failed) answers nothing: its entry is empty
      const each = (
        (await Promise.all(threads.map((_, i) => ask(i, "stats")))) as (Record<string, unknown> | null)[]
      ).map((x) => x ?? {});
      const { ip6, ...totals } = sumStats(each) as Record<string, unknown>;
      return { ...totals, ip6, workers: each.map((s, worker) => ({ worker, ...s })) };
    },
    async connections() {
      const each = (await Promise.all(threads.map((_, i) => ask(i, "ss")))) as Record<string, unknown>[][];
      return each.flatMap((list, worker) => (list ?? []).map((c) => ({ worker, ...c })));
    },
    async killWorker(i: number) {
      await threads[i]?.terminate();
    },
    async close() {
      if (closing) return;
      closing = true;
      await Promise.all(
        threads.map(async (w, i) => {
          await Promise.race([ask(i, "close"), new Promise((r) => setTimeout(r, 10_000))]);
          await w.terminate();
        }),
      );
    },
  };
  const alive: boolean[] = [];
  const ask = (i: number, q: string): Promise<unknown> =>
    new Promise((res) => {
      if (!alive[i]) return res(null);
      const id = nextAsk++;
      asks[i]!.set(id, res);
      threads[i]!.postMessage({ id, q });
    });
  const fail = (i: number, err: Error) => {
    if (closing || failed) return;
    failed = true;
    server.onFailure?.(i, err);
    void server.close();
  };
  try {
    for (let i = 0; i < count; i++) {
      const w = new Worker(workerUrl, {
        workerData: {
          index: i,
          count,
          serve: {
            ...serveOpts,
            path: paths[i],
            nic: workerNic(opts, i, count),
            // connections a worker opens take local ports whose replies come to its own queue
            ...(count > 1 ? { steerPorts: { queue: i, queues: count } } : {}),
          },
          app,
          peers: peers[i],
        },
        transferList: peers[i]!.filter((p): p is MessagePort => p !== null),
      });
      threads.push(w);
      alive.push(true);
      asks.push(new Map());
      const info = await new Promise<WorkerInfo>((res, rej) => {
        w.on(
          "message",
          (m: {
            ready?: WorkerInfo;
            failed?: { message: string; code: string | null };
            id?: number;
            result?: unknown;
          }) => {
            if (m.ready) res(m.ready);
            else if (m.failed) {
              const e = new PmstackError(m.failed.code ?? "EWORKER", `pmstack: worker ${i}: ${m.failed.message}`);
              rej(e);
            } else if (m.id !== undefined) {
              const r = asks[i]!.get(m.id);
              asks[i]!.delete(m.id);
              r?.(m.result);
            }
          },
        );
        w.on("error", (e) => {
          rej(e);
          fail(i, e);
        });
        w.on("exit", (code) => {
          alive[i] = false;
          const e = new PmstackError("EWORKER", `pmstack: worker ${i} ended (exit code ${code})`);
          rej(e);
          // its questions go unanswered (another worker's, still running, are not touched)
          for (const r of asks[i]!.values()) r(null);
          asks[i]!.clear();
          fail(i, e);
        });
      });
      infos.push(info);
    }
  } catch (e) {
    closing = true;
    await Promise.all(threads.map((w) => w.terminate()));
    throw e;
  }
  (server as { ifname: string }).ifname = infos[0]!.ifname;
  return server;
}

// One worker of `serveWorkers` (workers.ts), in its own thread: its own core instance, its own
// pool file, its own queue of the multi-queue TAP device, and its shard of the store. It talks
// to the thread that started it (start-up, stats, ss, close) over parentPort and to the other
// workers over one MessagePort each (the store's batches, kv/shard.ts).

import { parentPort, workerData, type MessagePort } from "node:worker_threads";
import { KvApp } from "./apps/kv.js";
import { HttpdApp } from "./apps/httpd.js";
import type { ShardMessage } from "./apps/kv/shard.js";
import type { HttpdShardBatch } from "./apps/httpd-shard.js";
import { NetList } from "./apps/auth.js";
import { TlsTerminator } from "./apps/tls.js";
import { serve, serverInfo, serverStats, type AppServer, type ServeOptions } from "./apps/serve.js";
import type { WorkerAppSpec } from "./workers.js";

interface Start {
  index: number;
  count: number;
  serve: ServeOptions;
  app: WorkerAppSpec;
  /** Ports to the other workers, by index (null at this worker's own). */
  peers: (MessagePort | null)[];
}

/** A worker's pool memory (shared) and the address of its buffer 0 there. */
interface PeerPool {
  memory: ArrayBufferLike;
  base: number;
}

/** A question from the starting thread. */
interface Ask {
  id: number;
  q: "stats" | "ss" | "close";
}

const start = workerData as Start;
const port = parentPort!;
let srv: AppServer<KvApp | HttpdApp> | null = null;
let terminator: TlsTerminator | null = null;

try {
  const spec = start.app;
  const t = spec.tls;
  // PEM bytes arrive as Uint8Arrays (structured clone): Buffers over the same memory
  const pem = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  terminator = t
    ? new TlsTerminator({
        cert: pem(t.cert),
        key: pem(t.key),
        ...(t.ca ? { ca: pem(t.ca) } : {}),
        handshakeTimeoutMs: t.handshakeTimeoutMs,
      })
    : null;
  const tls = terminator ? { port: spec.tls!.port, terminator } : undefined;
  const peers = start.peers;
  // ARP frames and neighbor advertisements go to every other worker (LoopOptions.onNeighborFrame)
  const onNeighborFrame =
    start.count > 1
      ? (frame: Uint8Array) => {
          for (const p of peers) p?.postMessage({ neighbor: frame });
        }
      : undefined;
  // the workers read each other's pools (kv's writes and httpd's bodies cross as loans, zero
  // copy): shared memories
  const lend = start.count > 1;
  const s0 = serve(
    // no Nagle (as Redis sets TCP_NODELAY on its clients): a client's replies leave in pieces
    // when some wait for another worker's answer, and a piece held for the ACK of the one before
    // would wait out the client's delayed ACK (40 ms)
    { nodelay: true, ...start.serve, sharedMemory: lend },
    (s, l) => {
      const send = (to: number, msg: unknown, transfer: ArrayBuffer[]) => peers[to]!.postMessage(msg, transfer);
      const shards = { index: start.index, count: start.count, send, lend };
      if (spec.app === "httpd")
        return new HttpdApp(s, l, spec.port ?? 80, {
          idleTimeoutMs: spec.idleTimeoutMs,
          maxBody: spec.maxBody,
          token: spec.token ?? null,
          privateReads: spec.privateReads,
          tls,
          shards,
        });
      let nets: NetList | null = null;
      if (spec.protectedNets) {
        nets = new NetList();
        for (const n of spec.protectedNets) nets.add(n);
      }
      return new KvApp(s, l, spec.port ?? 6379, {
        idleTimeoutMs: spec.idleTimeoutMs,
        requirepass: spec.requirepass ?? null,
        protectedNets: nets,
        tls,
        shards,
      });
    },
    { onNeighborFrame },
  );
  srv = s0;
  const app = srv.app;
  if (lend) {
    // this pool's memory to every other worker, before any batch of ours (a port keeps order)
    const pool = s0.stack.pool;
    const peerPool = { memory: pool.core.memory.buffer, base: pool.bufferBase };
    for (const p of peers) p?.postMessage({ peerPool });
  }
  peers.forEach((p, from) => {
    if (!p) return;
    p.on("message", (m: ShardMessage | HttpdShardBatch | { neighbor: Uint8Array } | { peerPool: PeerPool }) => {
      if ("peerPool" in m) app.shards!.attachPeer(from, m.peerPool.memory, m.peerPool.base);
      else if ("neighbor" in m) s0.loop.inject(m.neighbor);
      else if (app instanceof HttpdApp) app.shards!.receive(from, m as HttpdShardBatch);
      else app.shards!.receive(from, m as ShardMessage);
    });
  });
  port.postMessage({ ready: serverInfo(srv) });
} catch (e) {
  const err = e as Error & { code?: string };
  port.postMessage({ failed: { message: err.message, code: err.code ?? null } });
  shutdown();
}

/** Closes the server (loop, queue, pool), TLS and the ports to the other workers. */
function shutdown(): void {
  srv?.close();
  terminator?.close();
  for (const p of start.peers) p?.close();
  srv = null;
}

port.on("message", (m: Ask) => {
  const s = srv;
  if (m.q === "close") {
    shutdown();
    port.postMessage({ id: m.id, result: true });
    return;
  }
  if (!s) return port.postMessage({ id: m.id, result: null });
  const result = m.q === "stats" ? serverStats(s, terminator) : s.stack.connections();
  port.postMessage({ id: m.id, result });
});

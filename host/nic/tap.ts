// TAP backend: a Linux TAP device with a virtio-net header and checksum/TSO/USO offloads, read
// and written by the addon straight from and to PM buffers (docs/nic.md).

import { parseIP } from "../addr.js";
import type { Pool } from "../pool.js";
import { TAP_MULTI_QUEUE, TAP_NO_BATCH, TAP_NO_USO, TAP_VNET } from "./native.js";
import { NO_OFFLOADS, NicPort, type NicCaps, type NicQueues } from "./port.js";

export interface TapOptions {
  /** Device name (a pattern like "pm%d" lets the kernel pick); default "pmtap%d". */
  name?: string;
  /** Make the device inside this network namespace (a path such as /run/netns/NAME). */
  netns?: string | null;
  /** virtio-net header with CSUM/TSO4/TSO6 (+USO) offloads: 64 KiB superframes (default true). */
  offload?: boolean;
  /** Ask for UDP segmentation offload too (default true; dropped silently if the kernel lacks it). */
  uso?: boolean;
  /** IFF_MULTI_QUEUE: open the same name again for more queues. */
  multiQueue?: boolean;
  /** Buffers kept posted (default: the fill table's capacity). */
  fill?: number;
  /**
   * Batch the frames' readv and writev calls through io_uring, up to 32 per system call
   * (default true; where the kernel or a seccomp filter refuses io_uring, one call per frame,
   * and `info.batch` says why). false: one readv or writev per frame.
   */
  batch?: boolean;
}

/**
 * TAP with its virtio-net header (`offload`, the default): the kernel segments our TCP
 * superframes and completes checksums both ways.
 */
export const TAP_OFFLOADS: NicCaps = Object.freeze({ segmentation: true, checksum: true });

export class TapPort extends NicPort {
  get caps(): NicCaps {
    return this.info.offload ? TAP_OFFLOADS : NO_OFFLOADS;
  }

  static open(pool: Pool, queues: NicQueues, opts: TapOptions = {}): TapPort {
    const m = NicPort.memoryArgs(pool);
    const flags =
      (opts.offload === false ? 0 : TAP_VNET) |
      (opts.multiQueue ? TAP_MULTI_QUEUE : 0) |
      (opts.uso === false ? TAP_NO_USO : 0) |
      (opts.batch === false ? TAP_NO_BATCH : 0);
    const h = m.nat.tapOpen(m.memory, m.view, m.bufBase, m.bufCount, opts.name ?? "pmtap%d", flags, opts.netns ?? null);
    const port = new TapPort(pool, queues, m.nat, h, opts.fill ?? queues.fillCap);
    if (port.info.rxNeed! > queues.slots || port.info.rxNeed! > queues.fillCap) {
      port.close();
      throw new RangeError(
        `pmstack: TAP with offloads needs rings and fill tables of at least ${port.info.rxNeed} slots ` +
          `(one 64 KiB superframe); reserveNicQueues({ ringLog2: 9 }) gives 512`,
      );
    }
    return port;
  }
}

/**
 * The queue of a multi-queue TAP device (or of a veth pair served with AF_XDP, its kernel end
 * steered) that the kernel sends a connection's frames to (the steering programs the addon
 * attaches, native-host/nic/steer.h): a hash of the two addresses and ports, the same both ways,
 * modulo the queue count. A worker that opens a connection can pick
 * a local port whose replies come to its own queue.
 */
export function tapQueueOf(
  c: { localAddress: string; localPort: number; remoteAddress: string; remotePort: number },
  queues: number,
): number {
  const a = parseIP(c.localAddress);
  const b = parseIP(c.remoteAddress);
  let h = ((c.localPort << 16) | c.remotePort) >>> 0;
  if (a.family === 4) h ^= a.ipv4 ^ b.ipv4;
  else {
    const v = (x: Uint8Array, i: number) => ((x[i]! << 24) | (x[i + 1]! << 16) | (x[i + 2]! << 8) | x[i + 3]!) >>> 0;
    for (let i = 0; i < 16; i += 4) h ^= v(a.bytes, i) ^ v(b.bytes, i);
  }
  h >>>= 0;
  h = (h ^ (h >>> 16)) & 0xffff;
  return (h ^ (h >>> 8)) % queues;
}

// AF_XDP backend: a socket whose UMEM is the PM pool's buffer region, bound to one queue of a
// device, with the addon's 5-instruction XDP program redirecting each queue to its socket
// (docs/nic.md). Sockets on several queues of one device (one per worker, docs/scaling.md)
// share the device's program; on a veth pair, `steer` makes the kernel's end send each flow to
// the queue its addresses and ports hash to.

import type { Pool } from "../pool.js";
import { XDP_FORCE_COPY, XDP_FORCE_SKB, XDP_UMEM_ANON, XDP_UMEM_FALLBACK } from "./native.js";
import { NO_OFFLOADS, NicPort, type NicCaps, type NicQueues } from "./port.js";

export interface XdpOptions {
  /** The device (for tests, one end of a veth pair with one rx/tx queue). */
  ifname: string;
  /** Queue index (default 0). */
  queue?: number;
  /** Open the socket and attach the program inside this network namespace (/run/netns/NAME). */
  netns?: string | null;
  /**
   * Slots per AF_XDP ring (FILL, COMPLETION, RX, TX); a power of two (default: the slots the
   * NIC queues were reserved with, `reserveNicQueues`' ringLog2: 512 unless asked).
   */
  ringSize?: number;
  /** Attach in skb (generic) mode instead of trying native (drv) mode first. */
  skbMode?: boolean;
  /** Bind in copy mode instead of trying zero copy first. */
  copyMode?: boolean;
  /**
   * Where the UMEM is: "never" (default) = the pool itself, and a pool whose pages cannot be
   * pinned (ext4, fsdax) is refused with EUMEM; "fallback" = then copy every frame through an
   * anonymous UMEM (one more copy each way); "always" = always that copy path.
   */
  copyUmem?: "never" | "fallback" | "always";
  /** Buffers kept posted (default: the fill table's capacity). */
  fill?: number;
  /**
   * The device is one end of a veth pair served on `queues` queues (one socket each): an egress
   * program on `peer`, the kernel's end (in namespace `netns`, default the device's), sends every
   * frame to the queue the steering hash of its addresses and ports names (`tapQueueOf`, the
   * core's steerQueueOf), the same both ways. Set up by the first socket of the device in this
   * process; `info.steering` says which choice is in force.
   */
  steer?: { peer: string; queues: number; netns?: string | null };
}

export class XdpPort extends NicPort {
  /** AF_XDP moves raw frames: no segmentation, no checksum offload. */
  get caps(): NicCaps {
    return NO_OFFLOADS;
  }

  static open(pool: Pool, queues: NicQueues, opts: XdpOptions): XdpPort {
    const m = NicPort.memoryArgs(pool);
    const umem = opts.copyUmem ?? "never";
    const flags =
      (opts.skbMode ? XDP_FORCE_SKB : 0) |
      (opts.copyMode ? XDP_FORCE_COPY : 0) |
      (umem === "fallback" ? XDP_UMEM_FALLBACK : umem === "always" ? XDP_UMEM_ANON : 0);
    const h = m.nat.xdpOpen(
      m.memory,
      m.view,
      m.bufBase,
      m.bufCount,
      opts.ifname,
      opts.queue ?? 0,
      flags,
      opts.ringSize ?? queues.slots,
      opts.netns ?? null,
      pool.medium,
      opts.steer?.peer ?? null,
      opts.steer?.queues ?? 0,
      opts.steer?.netns ?? null,
    );
    const port = new XdpPort(pool, queues, m.nat, h, opts.fill ?? queues.fillCap);
    // Post buffers on the FILL ring now: without them the kernel drops every frame, and a
    // poll()-driven loop would never be woken.
    port.receive();
    return port;
  }
}

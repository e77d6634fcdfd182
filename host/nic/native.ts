// Loads the NIC addon (native-host/nic/, built to build/pmstack_nic.node) and describes its
// numeric ABI: rings, fill/done tables and metadata side tables in the core's memory
// (docs/nic.md). Node loads it with require(); Deno through createRequire with -A/--allow-ffi.

import { createRequire } from "node:module";
import { PmstackError } from "../errors.js";
import { countCalls, countingCalls } from "../calls.js";

// The slot flags and metadata side tables (host/nic/abi.ts) are part of this module's ABI too.
export * from "./abi.js";

/** tapOpen flags. */
export const TAP_VNET = 1;
export const TAP_MULTI_QUEUE = 2;
export const TAP_NO_USO = 8;
/** One readv/writev system call per frame even where io_uring could batch them. */
export const TAP_NO_BATCH = 16;
/** xdpOpen flags. */
export const XDP_FORCE_SKB = 1;
export const XDP_FORCE_COPY = 2;
/** If the pool cannot be the UMEM (ext4, fsdax: EFAULT), copy through an anonymous UMEM. */
export const XDP_UMEM_FALLBACK = 4;
/** Always copy through an anonymous UMEM. */
export const XDP_UMEM_ANON = 8;

export interface NicInfo {
  kind: "tap" | "xdp";
  fd: number;
  ifname: string;
  /** Where this path copies bytes, in words. */
  copies: string;
  closed: boolean;
  vnetHdrSize?: number;
  offload?: boolean;
  uso?: boolean;
  rxNeed?: number;
  /**
   * TAP: how frames reach the kernel: "io_uring: up to 32 readv or writev per system call", or
   * "none: ..." with the reason (asked for, or io_uring unavailable and why).
   */
  batch?: string;
  /**
   * How the kernel picks each frame's queue: the steering program's hash of addresses and ports
   * (tapQueueOf), or the device's own and why (TAP: multi-queue devices; AF_XDP: always).
   */
  steering?: string;
  mode?: "drv" | "skb";
  bind?: "copy" | "zerocopy";
  ringSize?: number;
  queue?: number;
  /** How many times bind() met EBUSY (a previous socket's UMEM still being torn down) and retried. */
  bindRetries?: number;
  /** "pool": the UMEM is the pool's buffer region; "anonymous": frames are copied through anonymous memory. */
  umem?: "pool" | "anonymous";
}

export interface NicStats {
  syscalls: number;
  rxCalls: number;
  txCalls: number;
  rxFrames: number;
  rxSlots: number;
  rxBytes: number;
  txFrames: number;
  txSlots: number;
  txBytes: number;
  rxEagain: number;
  rxNoRoom: number;
  rxErrors: number;
  rxBad: number;
  txEagain: number;
  txErrors: number;
  txDropped: number;
  txCopiedBytes: number;
  rxCopiedBytes: number;
  kicks: number;
  wakeups: number;
  polls: number;
  /**
   * AF_XDP only: the kernel's counters for the socket (XDP_STATISTICS), frames lost before
   * they reached the RX ring: rxRingFull (the ring had no room: the app did not keep up),
   * rxFillRingEmpty (no buffer offered to receive into), rxDropped (other reasons).
   */
  xdpKernel?: {
    rxDropped: number;
    rxInvalidDescs: number;
    txInvalidDescs: number;
    rxRingFull: number;
    rxFillRingEmpty: number;
    txRingEmpty: number;
  };
}

export interface NicNative {
  tapOpen(
    memory: WebAssembly.Memory,
    view: Uint8Array,
    bufBase: number,
    bufCount: number,
    name: string,
    flags: number,
    netns: string | null,
  ): object;
  xdpOpen(
    memory: WebAssembly.Memory,
    view: Uint8Array,
    bufBase: number,
    bufCount: number,
    ifname: string,
    queue: number,
    flags: number,
    ringSize: number,
    netns: string | null,
    medium: string,
    steerPeer: string | null,
    steerQueues: number,
    steerNetns: string | null,
  ): object;
  info(handle: object): NicInfo;
  rx(handle: object, ringOff: number, metaOff: number, fillOff: number): number;
  tx(handle: object, ringOff: number, metaOff: number, doneOff: number): number;
  stats(handle: object): NicStats;
  /** `rearm`: the host's poll is one-shot (Deno): the addon starts it again after each callback. */
  pollStart(handle: object, callback: (events: number) => void, writable?: boolean, rearm?: boolean): void;
  pollStop(handle: object): void;
  /** Whether the poll keeps the event loop alive (default true): uv_ref / uv_unref, now and for later pollStart calls. */
  pollRef(handle: object, ref: boolean): void;
  close(handle: object): Uint32Array;
}

let cached: NicNative | undefined;

/** The NIC addon, loaded once. `path` overrides where it is looked for. */
export function nicNative(path?: string): NicNative {
  if (cached && !path) return cached;
  const file = path ?? new URL("./pmstack_nic.node", import.meta.url).pathname;
  try {
    const loaded = createRequire(import.meta.url)(file) as NicNative;
    const mod = countingCalls() ? countCalls("addon", loaded) : loaded;
    if (!path) cached = mod;
    return mod;
  } catch (e) {
    throw new PmstackError(
      "ENATIVE",
      `pmstack: cannot load the NIC addon ${file}: ${(e as Error).message}. ` +
        "Run `npm install` (it builds the addons); under Deno, run with -A or --allow-ffi.",
      { cause: e },
    );
  }
}

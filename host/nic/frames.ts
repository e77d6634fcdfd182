// The first slot of a frame in a core's rings and in a NIC queue's: the offloads in each one's
// form (docs/core-abi.md, docs/nic.md), and a core's TX frame as an object for the paths that
// hold frames (faults, capture, a full TX ring's backlog). No addon behind it, so that the loop
// (host/loop.ts) uses it without loading host/nic/native.ts.

import { RXF_CSUM_VALID, RXF_NEEDS_CSUM, TXF_GSO_SHIFT, TXF_NEEDS_CSUM } from "../abi.js";
import type { Ring } from "../ring.js";
import { SF_CSUM_VALID, SF_GSO_SHIFT, SF_NEEDS_CSUM } from "./abi.js";
import type { TxFrame } from "./port.js";

/** A frame's offloads in the NIC's form: TxFrame's fields but its buffers. */
export type TxOffload = Required<Omit<TxFrame, "bufs">>;

/** The core's first-slot RX flags for a frame whose first NIC slot has `flags`: the checksum's state. */
export function coreRxFlags(flags: number): number {
  return (flags & SF_NEEDS_CSUM ? RXF_NEEDS_CSUM : 0) | (flags & SF_CSUM_VALID ? RXF_CSUM_VALID : 0);
}

/**
 * Decodes the offload request of a core TX frame's first slot (`flags`, and `conn`: GSO size
 * and header length) into the NIC's form, into `out`.
 */
export function txOffload(flags: number, conn: number, out: TxOffload): void {
  out.flags = 0;
  out.csumStart = 0;
  out.csumOffset = 0;
  out.gsoSize = 0;
  out.hdrLen = 0;
  if (!(flags & (TXF_NEEDS_CSUM | (0xf << TXF_GSO_SHIFT)))) return;
  const gso = (flags >>> TXF_GSO_SHIFT) & 0xf;
  out.flags = (flags & TXF_NEEDS_CSUM ? SF_NEEDS_CSUM : 0) | (gso << SF_GSO_SHIFT);
  out.csumStart = (flags >>> 8) & 0xff;
  out.csumOffset = (flags >>> 16) & 0xff;
  if (gso) {
    out.gsoSize = conn & 0xffff;
    out.hdrLen = conn >>> 16;
  }
}

/** The frame at positions [head, end) of a core's TX ring, as an object (for paths that hold frames). */
export function txFrameOf(core: Ring, head: number, end: number): TxFrame {
  const s0 = core.slot(head);
  const f: TxFrame & TxOffload = { bufs: [], flags: 0, csumStart: 0, csumOffset: 0, gsoSize: 0, hdrLen: 0 };
  txOffload(core.flags(s0), core.conn(s0), f);
  for (let p = head; p !== end; p = (p + 1) >>> 0) {
    const s = core.slot(p);
    f.bufs.push({ index: core.buf(s), offset: core.off(s), length: core.len(s) });
  }
  return f;
}

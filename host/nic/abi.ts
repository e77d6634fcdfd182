// The NIC slot ABI (docs/nic.md): the flag bits a NIC backend sets on a frame's first ring slot
// and the metadata side tables beside the rings. Plain numbers with no addon behind them, so that
// the loop (host/loop.ts) reads them without loading host/nic/native.ts, which loads the addon.

/** Slot flag bits the NIC backends set on a frame's first slot (SF_MORE = 1 is the core's). */
export const SF_NEEDS_CSUM = 1 << 8;
export const SF_CSUM_VALID = 1 << 9;
export const SF_GSO_ECN = 1 << 10;
export const SF_GSO_SHIFT = 12;
export const SF_GSO_MASK = 0xf << SF_GSO_SHIFT;
/** virtio-net GSO types as stored in bits 12..15 of the flags word. */
export const GSO_NONE = 0;
export const GSO_TCPV4 = 1;
export const GSO_UDP = 3;
export const GSO_TCPV6 = 4;
export const GSO_UDP_L4 = 5;
/** Bytes per metadata side-table entry: u16 csumStart, csumOffset, gsoSize, hdrLen. */
export const META_SIZE = 8;

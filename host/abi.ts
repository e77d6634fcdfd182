// Mirrors assembly/layout.ts: the constants both sides of the Wasm boundary agree on.
// test/abi.test.mjs parses assembly/layout.ts and checks every value here against it.

export const BUF_SIZE = 2048;

export const OWNER_FREE = 0;
export const OWNER_NIC = 1;
export const OWNER_STACK = 2;
export const OWNER_APP = 3;
export const OWNER_KEPT = 4;
export const OWNER_COUNT = 5;
export const OWNER_NAMES = ["free", "nic", "stack", "app", "kept"] as const;
export type Owner = (typeof OWNER_NAMES)[number];

export const E_RANGE = -1;
export const E_FREE = -2;
export const E_STATE = -3;
export const E_EMPTY = -4;
export const E_REFMAX = -5;
export const E_BOUNDS = -6;
export const E_RING_FULL = -7;
export const E_RING_EMPTY = -8;
export const E_ARG = -9;
export const E_SEALED = -10;
export const E_NOMEM = -11;
export const E_NOTFREE = -12;
export const E_CORRUPT = -13;

export const RING_HDR = 16;
export const RING_MASK = 0;
export const RING_HEAD = 4;
export const RING_TAIL = 8;
/** Header word: memory address of the ring's address lane (APP-IN, APP-OUT), or 0. */
export const RING_LANE = 12;
/** Bytes per address-lane row: one 16-byte address (IPv4-mapped for IPv4). */
export const LANE_ROW = 16;
export const SLOT_SIZE = 16;
export const SLOT_BUF = 0;
export const SLOT_OFF = 4;
export const SLOT_LEN = 6;
export const SLOT_CONN = 8;
export const SLOT_FLAGS = 12;
export const SF_MORE = 1;
/** The core's RX first-slot flags (docs/core-abi.md): the checksum verified, or partial (conn = csum_start | csum_offset << 16). */
export const RXF_CSUM_VALID = 2;
export const RXF_NEEDS_CSUM = 4;
/** The core's TX first-slot flags: checksum offload (start, offset in bits 8-15, 16-23) and GSO type (bits 4-7; conn = gso_size | hdr_len << 16). */
export const TXF_NEEDS_CSUM = 2;
export const TXF_GSO_SHIFT = 4;

/** Wasm page size. The PM file is mapped at a multiple of it. */
export const WASM_PAGE = 65536;
/** Largest Wasm (32-bit) memory, in pages. */
export const MAX_PAGES = 65536;

// Extent nodes (assembly/pm/extent.ts): objects larger than one log record's items.
export const NODE_MAGIC = 0x4e584d50; // "PMXN"
export const NODE_HDR = 16;
export const NODE_COUNT_AT = 6;
/** Children per node. */
export const NODE_MAX = 254;
/** Tallest node. */
export const NODE_MAX_HEIGHT = 15;
/** The offset field's mark of a node item in the 64-bit name form. */
export const ITEM_NODE = 0x8000;

// Shared constants of the core's memory layout and ABI. The TypeScript host mirrors
// these in host/abi.ts; test/abi.test.mjs checks that both sides agree.

/** Size of one packet buffer in bytes. Buffers are addressed by index. */
export const BUF_SIZE: u32 = 2048;
export const BUF_SHIFT: u32 = 11;

/** Owner states of a buffer. A buffer in any state but FREE has a reference count >= 1. */
export const OWNER_FREE: u32 = 0;
/** Held by a NIC queue (posted for receive, or queued for transmit). */
export const OWNER_NIC: u32 = 1;
/** Held by the protocol stack (reassembly, retransmit queue). */
export const OWNER_STACK: u32 = 2;
/** Lent to the application for this turn (a received chunk, or a buffer it is filling). */
export const OWNER_APP: u32 = 3;
/** Kept by the application as persistent data; never handed out again until freed. */
export const OWNER_KEPT: u32 = 4;
export const OWNER_COUNT: u32 = 5;

/** Largest reference count a buffer can carry. */
export const REF_MAX: u32 = 0xffff;

// Extent nodes (assembly/pm/extent.ts): a kept buffer that names other buffers, the building
// block of objects larger than one log record can name. The pool knows just enough of the
// layout to release a node's children when its last reference goes.
//   0 u32 magic "PMXN"   4 u8 height (above every child's: data ranges count as height 0)
//   5 u8 0   6 u16 count   8 u64 bytes (data bytes under the node)   16 u64 items[count]
// An item (in a node, or in a log record) is a 64-bit name: a data range (index << 32 |
// offset << 16 | length, offset <= 2048) or a node (index << 32 | (0x8000 | height) << 16).
export const NODE_MAGIC: u32 = 0x4e584d50; // "PMXN"
export const NODE_HDR: u32 = 16;
export const NODE_COUNT_AT: u32 = 6;
/** Children per node: (2048 - 16) / 8. */
export const NODE_MAX: u32 = 254;
/** Tallest node. A balanced tree of height 4 already holds 254^4 ranges; appends may deepen one. */
export const NODE_MAX_HEIGHT: u32 = 15;
/** The offset field's mark of a node item. */
export const ITEM_NODE: u32 = 0x8000;

// Error codes returned (as negative i32) by core calls. The host turns them into typed errors.
export const E_RANGE: i32 = -1; // buffer index out of range
export const E_FREE: i32 = -2; // buffer is free (double free, or use of a free buffer)
export const E_STATE: i32 = -3; // buffer is not in the owner state the call requires
export const E_EMPTY: i32 = -4; // no free buffer left
export const E_REFMAX: i32 = -5; // reference count would overflow
export const E_BOUNDS: i32 = -6; // offset/length outside the buffer
export const E_RING_FULL: i32 = -7;
export const E_RING_EMPTY: i32 = -8;
export const E_ARG: i32 = -9; // bad argument (zero size, bad owner value...)
export const E_SEALED: i32 = -10; // arena allocation after the layout was sealed
export const E_NOMEM: i32 = -11; // arena exhausted (Wasm memory limit)
export const E_NOTFREE: i32 = -12; // claim of a buffer that is not free
export const E_CORRUPT: i32 = -13; // invariant check failed

// Ring layout: a 16-byte header then 2^k slots of 16 bytes.
//   header: u32 mask (slots - 1), u32 head (consumer, free-running), u32 tail (producer, free-running),
//           u32 lane (address of the ring's address lane, 0 if none)
//   slot:   u32 buf, u16 off, u16 len, u32 conn, u32 flags
// The address lane (APP-IN and APP-OUT) is 2^k rows of 16 bytes: row (pos & mask) holds the
// 16-byte address (IPv6, or IPv4 mapped) that the slot at free-running position pos carries.
export const RING_HDR: u32 = 16;
export const RING_MASK: u32 = 0;
export const RING_HEAD: u32 = 4;
export const RING_TAIL: u32 = 8;
export const RING_LANE: u32 = 12;
export const LANE_ROW: u32 = 16;
export const SLOT_SIZE: u32 = 16;
export const SLOT_BUF: u32 = 0;
export const SLOT_OFF: u32 = 4;
export const SLOT_LEN: u32 = 6;
export const SLOT_CONN: u32 = 8;
export const SLOT_FLAGS: u32 = 12;

/** Slot flag: the frame continues in the next slot (a chain of buffers, e.g. a GSO superframe). */
export const SF_MORE: u32 = 1;

// pmstack for browsers: the entry of build/browser/pmstack.js (browser/build.mjs, docs/browser.md).
// The core (embedded in the bundle), pools in memory or in the origin private file system
// (openOpfs), the stack, the batch API (PasteServer, MemoryPair), the log and objects, and
// Node-style sockets (createMemoryNet, NetStack, Socket, Server). Nothing here reaches a Node
// builtin: the build swaps host/native.ts, host/store-node.ts and host/core-bytes.ts for their
// browser versions in this folder, and node:buffer, node:events, node:stream and node:timers
// for the npm packages buffer, events and readable-stream and for ./timers.ts.

export { Pool, packName, unpackName, describeMode } from "../pool.js";
export type {
  BufferName,
  PoolOptions,
  CreateOptions,
  PoolCounts,
  PoolPersistMode,
  PoolDurability,
  PoolJournal,
  Persistence,
  PersistenceOption,
} from "../pool.js";
export { openOpfs, OpfsDirectory } from "../store-opfs.js";
export type { OpfsDirectoryHandle } from "../store-opfs.js";
export {
  PmstackError,
  PoolFileError,
  BufferNameError,
  PoolExhaustedError,
  PoolCorruptError,
  PoolClosedError,
  CoreTrapError,
} from "../errors.js";
export { BUF_SIZE, OWNER_NAMES } from "../abi.js";
export type { Owner } from "../abi.js";
export { instantiateCore } from "../core.js";
export type { CoreExports, CoreInstance } from "../core.js";
export { layout as poolLayout, decode as decodeSuperblock, encode as encodeSuperblock } from "../format.js";
export type { Superblock } from "../format.js";
export { FaultyWire, prng } from "../link/fault.js";
export type { FaultConfig, WireStats } from "../link/fault.js";
export { RingPort, MAX_FRAME } from "../link/port.js";
export type { PortStats } from "../link/port.js";
export { MemoryLink } from "../link/memory.js";
export type { LinkOptions } from "../link/memory.js";
export { PmLog, LogError, LogFullError, LOG_MAX_KEY, LOG_MAX_NAMES } from "../log.js";
export type { LogRecovery, LogStats, LogEntry, LogOptions, LogKey, LogObject, AppendOptions } from "../log.js";
export { ObjectWriter, ObjectCursor, objectLength, OBJECT_ITEMS_MAX } from "../object.js";
export type { Item, ObjectRef } from "../object.js";
export { Stack } from "../stack.js";
export type { StackConfig, StackOptions, StackEvent, ConnectionInfo, Ip6Address } from "../stack.js";
export {
  parseIPv4,
  formatIPv4,
  parseIPv6,
  formatIPv6,
  formatAddr,
  formatEndpoint,
  parseIP,
  parseCidr,
  isIP,
  isMapped,
  mapIPv4,
  inPrefix,
} from "../addr.js";
export type { Family, Cidr } from "../addr.js";
export { COUNTERS as STACK_COUNTERS, TCP_STATES, INFO as TCP_INFO, R as TCP_REASONS } from "../stack-abi.js";
export { PasteServer, MemoryPair, PoolPressure } from "../paste.js";
export type {
  Batch,
  Chunk,
  Accepted,
  PasteOptions,
  PasteStats,
  PasteHandler,
  Driver,
  TurnHooks,
  MemoryPairOptions,
} from "../paste.js";
export { NetStack, Server, Socket, createStack, createMemoryNet, createServer, connect } from "../net.js";
export type { NetStackOptions, NetStats, ServerOptions, ConnectOptions, ListenOptions } from "../net.js";

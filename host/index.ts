// pmstack: a portable network stack for persistent memory. Public API.

export { Pool, packName, unpackName, describeMode } from "./pool.js";
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
} from "./pool.js";
export {
  PmstackError,
  PoolFileError,
  BufferNameError,
  PoolExhaustedError,
  PoolCorruptError,
  PoolClosedError,
  CoreTrapError,
} from "./errors.js";
export { BUF_SIZE, OWNER_NAMES } from "./abi.js";
export type { Owner } from "./abi.js";
export { instantiateCore } from "./core.js";
export { boundaryCalls } from "./calls.js";
export type { CoreExports, CoreInstance } from "./core.js";
export { layout as poolLayout, decode as decodeSuperblock, encode as encodeSuperblock } from "./format.js";
export type { Superblock } from "./format.js";
export { FaultyWire, prng } from "./link/fault.js";
export type { FaultConfig, WireStats } from "./link/fault.js";
export { RingPort, MAX_FRAME } from "./link/port.js";
export type { PortStats } from "./link/port.js";
export { MemoryLink } from "./link/memory.js";
export type { LinkOptions } from "./link/memory.js";
export { PcapWriter } from "./pcap.js";
export { PmLog, LogError, LogFullError, LOG_MAX_KEY, LOG_MAX_NAMES } from "./log.js";
export type { LogRecovery, LogStats, LogEntry, LogOptions, LogKey, LogObject, AppendOptions } from "./log.js";
export { ObjectWriter, ObjectCursor, objectLength, OBJECT_ITEMS_MAX } from "./object.js";
export type { Item, ObjectRef } from "./object.js";
export { TapPort, TAP_OFFLOADS, tapQueueOf } from "./nic/tap.js";
export type { TapOptions } from "./nic/tap.js";
export { XdpPort } from "./nic/xdp.js";
export type { XdpOptions } from "./nic/xdp.js";
export { NicPort, reserveNicQueues, NO_OFFLOADS } from "./nic/port.js";
export type { NicCaps, NicQueues, ReserveOptions, RxFrame, TxFrame } from "./nic/port.js";
export * as nic from "./nic/native.js";
export { Stack } from "./stack.js";
export type { StackConfig, StackOptions, StackEvent, ConnectionInfo, Ip6Address } from "./stack.js";
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
} from "./addr.js";
export type { Family, Cidr } from "./addr.js";
export { COUNTERS as STACK_COUNTERS, TCP_STATES, INFO as TCP_INFO, R as TCP_REASONS } from "./stack-abi.js";
export { NicLoop } from "./loop.js";
export type { LoopOptions, LoopStats } from "./loop.js";
export { HttpParser, responseHead, parseRange, CONTINUE } from "./apps/http.js";
export type { HttpHead, HttpEvent, HttpErrorStatus, HttpParserOptions } from "./apps/http.js";
export { RespParser, resp } from "./apps/resp.js";
export type { RespEvent, RespHandler, RespParserOptions } from "./apps/resp.js";
export { HttpdApp, HTTPD_MAX_BODY, HTTPD_TAG } from "./apps/httpd.js";
export { ConnLayer, Conn, MIN_BY_NAME, MIN_REQUEST_RATE } from "./apps/conn.js";
export type { ConnHandlers, ConnLayerOptions, ConnStats, Part, StreamPart } from "./apps/conn.js";
export { TlsTerminator, TlsChannel, loadTlsFiles } from "./apps/tls.js";
export type { TlsOptions, TlsStats, TlsSink } from "./apps/tls.js";
export type { HttpdStats, HttpdOptions } from "./apps/httpd.js";
export { serve, serveHttpd, serveKv } from "./apps/serve.js";
export type { ServeOptions, ServeNic, App, AppServer } from "./apps/serve.js";
export {
  serveWorkers,
  checkWorkerPools,
  workerPoolPath,
  workersManifest,
  resolveWorkers,
  sumStats,
} from "./workers.js";
export type { ServeWorkersOptions, WorkersServer, WorkerInfo, WorkerAppSpec } from "./workers.js";
export { KvShards, partsBytes, CROSSSLOT } from "./apps/kv/shard.js";
export type { ShardTransport, ShardMessage, ShardStats } from "./apps/kv/shard.js";
export { PasteServer, MemoryPair, NicDriver, PoolPressure } from "./paste.js";
export type {
  Batch,
  Chunk,
  Accepted,
  PasteOptions,
  PasteStats,
  PasteHandler,
  Driver,
  DriverTimers,
  TurnHooks,
  MemoryPairOptions,
} from "./paste.js";
export { NetStack, Server, Socket, createStack, createMemoryNet, createServer, connect } from "./net.js";
export { SimNet, SimHost, SimTimeout, createSimNet } from "./sim.js";
export type { SimNetOptions, SimHostOptions, SimLinkOptions, SimStats } from "./sim.js";
export type { NetStackOptions, NetStats, ServerOptions, ConnectOptions, ListenOptions } from "./net.js";
export {
  KvApp,
  KV_COMMANDS,
  KV_MAX_BULK,
  KV_MIN_BY_NAME,
  KV_SMALL,
  KV_TRAILER,
  KV_VALUE_ITEMS,
  KV_NOAUTH,
  KV_WRONGPASS,
  KV_DENIED,
  KV_MAX_HELD_REPLIES,
  parseI64,
} from "./apps/kv.js";
export { ClusterState, ClusterConfigError, keyHashSlot, crc16, CLUSTER_SLOTS } from "./apps/kv/cluster.js";
export type { ClusterOptions, ClusterNode, ClusterConfigStore } from "./apps/kv/cluster.js";
export { clusterConfigFile } from "./apps/kv/cluster-file.js";
export { ClusterBus } from "./apps/kv/bus.js";
export type { BusStats, BusOptions } from "./apps/kv/bus.js";
export { encodeDump, decodeDump, crc64 } from "./apps/kv/dump.js";
export { Migrator } from "./apps/kv/migrate.js";
export { safeEqual, FailureLimiter, NetList } from "./apps/auth.js";
export type { AuthLimitOptions } from "./apps/auth.js";
export type { KvOptions, KvStats } from "./apps/kv.js";

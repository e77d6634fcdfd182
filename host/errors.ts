// Typed errors. Every error pmstack throws is a PmstackError with a stable `code`.

export class PmstackError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A problem with a PM pool file: it exists already, is missing, locked by another process,
 * not writable, or not a valid pool (bad magic, version, checksum or size). Nothing on disk was
 * changed by the call that threw it.
 */
export class PoolFileError extends PmstackError {
  readonly path: string;
  constructor(code: string, path: string, problem: string, options?: { cause?: unknown }) {
    super(code, problem.includes(path) ? `pmstack: ${problem}` : `pmstack: ${path}: ${problem}`, options);
    this.path = path;
  }
}

/** A buffer index or name (index, offset, length) that does not name held bytes of the pool. */
export class BufferNameError extends PmstackError {}

/** No free buffer left for an allocation. */
export class PoolExhaustedError extends PmstackError {}

/** The pool's invariant does not hold: a bug in pmstack, reported with what failed. */
export class PoolCorruptError extends PmstackError {}

/** A call on a closed pool. */
export class PoolClosedError extends PmstackError {}

/** The Wasm core trapped or aborted. A bug in pmstack; PM data is untouched by the trap itself. */
export class CoreTrapError extends PmstackError {}

/**
 * Every error a caller or a test may branch on carries a stable `code`. Messages are for people
 * and may change; codes do not. The full list, with who throws each code, is in docs/errors.md.
 */
export type UvmErrorCode =
  /** No free slot: every SCSI LUN, VPMEM device or mapping region is taken. */
  | 'NO_SLOT'
  /** A layer is larger than a VPMEM device (default mode). */
  | 'LAYER_TOO_LARGE'
  /** The same key (e.g. a Plan9 host path) was asked for with a different configuration. */
  | 'CONFIG_CONFLICT'
  /** A caller-chosen guest path is already used by a different mount. */
  | 'MOUNT_CONFLICT'
  /** An object was used after it was released. */
  | 'ALREADY_RELEASED'
  /** A resource's teardown failed earlier; it must be released again (retried) before reuse. */
  | 'TEARDOWN_FAILED'
  /** The operation is not supported for this UVM (wrong OS, option disabled, …). */
  | 'NOT_SUPPORTED'
  /** Bad input caught before any HCS call. */
  | 'INVALID_ARGUMENT'
  /** An OCI runtime spec, layer list or scenario that cannot be honoured. */
  | 'INVALID_SPEC'
  /** Writable shares are denied on this UVM. */
  | 'ACCESS_DENIED'
  /** A native handle was used after close. */
  | 'HANDLE_CLOSED'
  /** HCS reported a failure (see `HcsError`). */
  | 'HCS_ERROR'
  /** An HCS operation exceeded its timeout and was cancelled. */
  | 'TIMEOUT'
  /** The caller's AbortSignal fired. */
  | 'ABORTED'
  /** A named resource, system or mount does not exist. */
  | 'NOT_FOUND'
  /** The object is not in a state that allows this call. */
  | 'INVALID_STATE'
  /** One or more releases failed; see `errors` / `cause`. */
  | 'RELEASE_FAILED'
  /** The HCS library (computecore.dll or the simulator) could not be loaded. */
  | 'LIBRARY_LOAD_FAILED'
  /** A recovery journal could not be read or reconciled. */
  | 'RECOVERY_FAILED'
  /** A device or container call on a UVM whose `terminate()` was requested (11). */
  | 'UVM_TERMINATED'
  /** A container id already allocated (or being allocated) in this UVM (11). */
  | 'CONTAINER_EXISTS'
  /** `createUtilityVm` / `open` with an id that is live in this process (same HcsApi) (11). */
  | 'UVM_EXISTS'
  /** A journal is owned by another live UtilityVm or process, or already exists at create (11). */
  | 'JOURNAL_IN_USE'
  /** A journal written in a format version this library does not read (11). */
  | 'JOURNAL_VERSION'
  /** The UVM exited unexpectedly (crash, kill, guest power-off): calls in flight and later calls. */
  | 'UVM_EXITED'
  /** The GCS bridge failed as a whole (dropped, unknown response id, bad JSON, oversized, deadline): every pending and later guest call. */
  | 'BRIDGE_FAILED'
  /** The guest did not dial the host's hvsocket listener before the accept deadline; the UVM's start failed. */
  | 'GUEST_CONNECT_TIMEOUT'
  /** A Winsock call of the hvsocket transport failed; details carry `call` and `wsaError` (15). */
  | 'HVSOCKET_ERROR';

const BRAND = Symbol.for('uvm-orchestrator.UvmError');

/** Context fields attached to an error for logs and diagnostics. */
export type UvmErrorDetails = Record<string, unknown>;

/** Base class of every error this library throws on purpose. */
export class UvmError extends Error {
  readonly code: UvmErrorCode;
  readonly details: UvmErrorDetails;

  constructor(code: UvmErrorCode, message: string, options: { cause?: unknown; details?: UvmErrorDetails } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UvmError';
    this.code = code;
    this.details = options.details ?? {};
    (this as unknown as Record<symbol, boolean>)[BRAND] = true;
  }

  /**
   * True when `err` is a UvmError (from any copy of this package) with one of `codes`
   * (any code when none is given).
   */
  static is(err: unknown, ...codes: UvmErrorCode[]): err is UvmError | UvmAggregateError {
    if (err === null || typeof err !== 'object' || (err as Record<symbol, unknown>)[BRAND] !== true) return false;
    return codes.length === 0 || codes.includes((err as UvmError).code);
  }
}

/**
 * Several failures, e.g. from a release that kept going past errors. It is both an
 * `AggregateError` (`errors` lists every failure) and a UvmError (it has a `code`).
 */
export class UvmAggregateError extends AggregateError {
  readonly code: UvmErrorCode;
  readonly details: UvmErrorDetails;
  constructor(code: UvmErrorCode, message: string, errors: unknown[], details?: UvmErrorDetails) {
    super(errors, `${message}: ${errors.map((e) => (e instanceof Error ? e.message : String(e))).join('; ')}`, {
      cause: errors[0],
    });
    this.name = 'UvmAggregateError';
    this.code = code;
    this.details = details ?? {};
    (this as unknown as Record<symbol, boolean>)[BRAND] = true;
  }
}

/** Shorthand for the INVALID_ARGUMENT errors raised by input validation. */
export function invalidArgument(message: string, details?: UvmErrorDetails): UvmError {
  return new UvmError('INVALID_ARGUMENT', message, { details });
}

/** What a node:fs failure carries, as a worker thread reports it (plain data, no Error object). */
export interface ErrnoParts {
  message: string;
  code?: string;
  errno?: number;
  syscall?: string;
  path?: string;
}

/**
 * A node:fs failure made again on this thread from what a worker thread reported: an `Error` with
 * the message and whichever of code, errno, syscall and path were reported.
 */
export function errnoException(parts: ErrnoParts): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(parts.message);
  if (parts.code !== undefined) err.code = parts.code;
  if (parts.errno !== undefined) err.errno = parts.errno;
  if (parts.syscall !== undefined) err.syscall = parts.syscall;
  if (parts.path !== undefined) err.path = parts.path;
  return err;
}

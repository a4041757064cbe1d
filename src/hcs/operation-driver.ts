/**
 * Runs HCS operations the asynchronous way: `HcsCreateOperation` with a completion callback, the
 * HCS call, await the callback, `HcsGetOperationResult`, `HcsCloseOperation`. No libuv pool thread
 * is ever parked in `HcsWaitForOperationResult`.
 *
 * - One completion callback is registered per process, forever; its context is a small integer
 *   id looked up in `pending` (never a pointer to a JS object).
 * - Timeouts and AbortSignals call `HcsCancelOperation` and then STILL await the completion
 *   callback before the operation handle, the input strings or the pending entry are released
 *   (freeing what HCS may still read crashed computecore.dll in hcsshim's history). If the
 *   operation nevertheless completed successfully, the call resolves: the change is in effect.
 * - While any operation is pending a ref'd timer keeps the Node process alive (a callback from
 *   a native thread does not).
 * - At most `concurrency` operations are in HCS at once (p-queue), below koffi's limit of
 *   foreign-thread callbacks queued at once.
 */
import PQueue from 'p-queue';
import { UvmError } from '../core/errors.js';
import { pendingPromises } from '../core/pending-promises.js';
import type { HcsCallOptions } from './hcs-api.js';
import { formatHresult, HcsError, HResult, hcsErrorFromResult } from './hcs-error.js';
import type { ComputeCore, OperationHandle } from './computecore.js';

/** Default bound on operations in HCS at once. */
export const DEFAULT_MAX_CONCURRENT_OPERATIONS = 64;

/** One operation to run. */
export interface OperationRequest {
  /** HCS function name, used in errors, e.g. `HcsModifyComputeSystem`. */
  op: string;
  systemId?: string;
  /**
   * Issues the HCS call with the operation handle and returns its HRESULT. Everything it hands
   * to native code must be in `inputs` (or otherwise referenced until the operation completes).
   */
  call: (operation: OperationHandle) => number;
  /** Buffers/strings passed to native code; kept referenced until the operation completes. */
  inputs?: readonly unknown[];
  options?: HcsCallOptions;
}

interface PendingEntry {
  complete: () => void;
  inputs: readonly unknown[] | undefined;
}

// ---- process-wide completion registry -------------------------------------------------------

const pending = new Map<number, PendingEntry>();
let nextContext = 1;
/** The registered completion callback per library (registered once, never unregistered). */
const registeredCallbacks = new WeakMap<ComputeCore, unknown>();
let keepAlive: NodeJS.Timeout | undefined;
/** Captured at load so that fake timers installed later (tests) never replace the keep-alive. */
const realSetInterval = globalThis.setInterval;

function onCompletion(_operation: unknown, context: number | bigint): void {
  // Runs on the main thread while the HCS thread waits for it: do as little as possible, never throw.
  try {
    pending.get(Number(context))?.complete();
  } catch {
    // nothing sensible to do on a native thread's behalf
  }
}

function completionCallback(lib: ComputeCore): unknown {
  let callback = registeredCallbacks.get(lib);
  if (callback === undefined) {
    callback = lib.registerCompletion(onCompletion);
    registeredCallbacks.set(lib, callback);
  }
  return callback;
}

function allocateContext(): number {
  // Small positive integers; wrap long before they lose precision, skipping ids still in use.
  for (;;) {
    const id = nextContext;
    nextContext = nextContext >= 0x7fffffff ? 1 : nextContext + 1;
    if (!pending.has(id)) return id;
  }
}

function track(id: number, entry: PendingEntry): void {
  pending.set(id, entry);
  if (pending.size === 1) {
    // One long timer for the life of the process, ref'd only while operations are pending
    // (ref/unref is cheaper than creating a timer per operation).
    keepAlive ??= realSetInterval(() => undefined, 1 << 30);
    keepAlive.ref();
  }
}

function untrack(id: number): void {
  if (pending.delete(id) && pending.size === 0) keepAlive?.unref();
}

/** Operations created and not yet closed in this process (for leak checks and diagnostics). */
export function pendingOperationCount(): number {
  return pending.size;
}

/** True while the ref'd keep-alive timer is held (some operation is pending). */
export function isKeepingProcessAlive(): boolean {
  return keepAlive?.hasRef() ?? false;
}

// ---- cancellation of one call ---------------------------------------------------------------

type CancelReason = 'timeout' | 'abort';

class CallCancellation {
  reason: CancelReason | undefined;
  /**
   * Aborted only while the call waits in the queue (p-queue would race a running task against
   * it). Only cancellable calls (with a signal or a timeout) pay for an AbortController.
   */
  readonly queued: AbortController | undefined;
  readonly #cancellable: boolean;
  #started = false;
  #timer: NodeJS.Timeout | undefined;
  #onAbort: (() => void) | undefined;
  #listeners: (() => void)[] = [];

  constructor(private readonly options: HcsCallOptions | undefined) {
    const signal = options?.signal;
    this.#cancellable = signal !== undefined || options?.timeoutMs !== undefined;
    this.queued = this.#cancellable ? new AbortController() : undefined;
    if (signal?.aborted) {
      this.fire('abort');
      return;
    }
    if (signal) {
      this.#onAbort = () => this.fire('abort');
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
    const t = options?.timeoutMs;
    if (t !== undefined) {
      this.#timer = setTimeout(() => this.fire('timeout'), Math.max(0, t));
    }
  }

  /** Calls `fn` once when the call is cancelled (at once if it already is). */
  onCancel(fn: () => void): void {
    if (this.reason) fn();
    else if (this.#cancellable) this.#listeners.push(fn);
  }

  /** The task left the queue: from now on cancellation goes to HCS, not to p-queue. */
  markStarted(): void {
    this.#started = true;
  }

  get started(): boolean {
    return this.#started;
  }

  fire(reason: CancelReason): void {
    if (this.reason) return;
    this.reason = reason;
    if (!this.#started) this.queued?.abort();
    for (const fn of this.#listeners.splice(0)) fn();
  }

  dispose(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.#onAbort) this.options?.signal?.removeEventListener('abort', this.#onAbort);
    this.#listeners = [];
  }
}

function cancelledError(req: OperationRequest, reason: CancelReason, cause?: HcsError): HcsError {
  const timeout = reason === 'timeout';
  const what = timeout ? `timed out after ${req.options?.timeoutMs} ms` : 'aborted';
  const outcome = cause
    ? `the operation was cancelled and failed with ${formatHresult(cause.hresult)}${cause.errorMessage ? `: ${cause.errorMessage}` : ''}`
    : 'the operation was not started';
  return new HcsError({
    op: req.op,
    systemId: req.systemId,
    hresult: cause?.hresult ?? (timeout ? HResult.HCS_E_OPERATION_TIMEOUT : HResult.E_ABORT),
    code: timeout ? 'TIMEOUT' : 'ABORTED',
    errorMessage: cause?.errorMessage,
    events: cause?.events,
    cause,
    text: `${what}; ${outcome}`,
  });
}

// ---- the driver -----------------------------------------------------------------------------

export interface OperationDriverOptions {
  /** Operations in HCS at once. Default 64 (koffi's foreign-callback limit is raised to 1024). */
  maxConcurrentOperations?: number;
}

/** Runs HCS operations for one `ComputeCore` library. */
export class OperationDriver {
  readonly #lib: ComputeCore;
  readonly #queue: PQueue;

  constructor(lib: ComputeCore, options: OperationDriverOptions = {}) {
    const concurrency = options.maxConcurrentOperations ?? DEFAULT_MAX_CONCURRENT_OPERATIONS;
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 512) {
      throw new UvmError('INVALID_ARGUMENT', `maxConcurrentOperations must be an integer in 1..512, got ${concurrency}`);
    }
    this.#lib = lib;
    this.#queue = new PQueue({ concurrency });
  }

  get library(): ComputeCore {
    return this.#lib;
  }

  /** Operations started and not finished, plus those waiting for a slot. */
  get size(): number {
    return this.#queue.pending + this.#queue.size;
  }

  /**
   * Runs one operation and resolves with its result document (undefined when empty). Rejects with
   * HcsError HCS_ERROR (HCS failure), TIMEOUT or ABORTED (cancelled; the HCS failure is the cause).
   */
  async run(req: OperationRequest): Promise<string | undefined> {
    const timeoutMs = req.options?.timeoutMs;
    if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs < 0)) {
      throw new UvmError('INVALID_ARGUMENT', `timeoutMs must be a finite number >= 0, got ${timeoutMs}`);
    }
    const settled = pendingPromises.open('hcs-operation');
    const cancellation = new CallCancellation(req.options);
    try {
      if (cancellation.reason) throw cancelledError(req, cancellation.reason);
      try {
        return await this.#queue.add(() => this.#execute(req, cancellation), {
          signal: cancellation.queued?.signal,
        });
      } catch (e) {
        // Cancelled while still queued: nothing reached HCS.
        if (cancellation.reason && !cancellation.started) throw cancelledError(req, cancellation.reason);
        throw e;
      }
    } finally {
      cancellation.dispose();
      settled();
    }
  }

  async #execute(req: OperationRequest, cancellation: CallCancellation): Promise<string | undefined> {
    cancellation.markStarted();
    if (cancellation.reason) throw cancelledError(req, cancellation.reason);
    const lib = this.#lib;
    const callback = completionCallback(lib);
    const id = allocateContext();
    let completed!: () => void;
    const done = new Promise<void>((resolve) => (completed = resolve));
    const entry: PendingEntry = { complete: completed, inputs: req.inputs };
    track(id, entry);
    let op: OperationHandle | null = null;
    let closed = false;
    try {
      op = lib.createOperation(id, callback);
      if (op === null) {
        throw new HcsError({ op: req.op, systemId: req.systemId, hresult: HResult.E_OUTOFMEMORY, text: 'HcsCreateOperation failed' });
      }
      const hr = req.call(op);
      if (hr < 0) {
        // The call itself failed: the operation never started and will not complete. Its result
        // (if any) carries the error document, as hcsshim reads it.
        const result = lib.getOperationResult(op);
        const document = result.hr < 0 ? result.document : undefined;
        throw hcsErrorFromResult(req.op, hr, document, req.systemId);
      }
      const started = op;
      cancellation.onCancel(() => {
        // Best effort: HCS completes the operation either way (E_ABORT if it was not applied yet).
        if (!closed) lib.cancelOperation(started);
      });
      await done;
      const result = lib.getOperationResult(op);
      if (result.hr >= 0) return result.document === '' ? undefined : result.document;
      const error = hcsErrorFromResult(req.op, result.hr, result.document, req.systemId);
      if (cancellation.reason) throw cancelledError(req, cancellation.reason, error);
      throw error;
    } finally {
      closed = true;
      if (op !== null) lib.closeOperation(op);
      // Inputs stay referenced by `entry` until here, after HCS is done with the operation.
      entry.inputs = undefined;
      untrack(id);
    }
  }
}

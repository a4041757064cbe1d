/**
 * The one place native calls that may wait are made: HCS operations (`HcsCreateOperation` with a
 * completion callback, the HCS call, the callback, `HcsGetOperationResult`, `HcsCloseOperation`)
 * and the blocking calls HCS has no operation for (`HcsGrantVmAccess`, `HcsRevokeVmAccess`,
 * `HcsOpenComputeSystem`), run off the main thread. docs/hcs.md describes the rules:
 *
 * - **No cancel.** `HcsCancelOperation` is documented as not implemented (E_NOTIMPL). At a
 *   deadline or abort the caller's promise rejects at once with TIMEOUT / ABORTED; the driver
 *   still calls cancel (best effort, result ignored) but keeps the operation handle, its inputs
 *   and its slot until HCS completes the operation, and only then closes the handle. The error
 *   carries the late outcome (`lateOutcomeOf`) so that its owner can undo a late success.
 * - **Bounded.** Operations outstanding in HCS (abandoned ones included) never exceed
 *   `maxConcurrentOperations`, and blocking calls never exceed `maxConcurrentBlockingCalls`, so
 *   koffi's limit on asynchronous calls / foreign-thread callbacks is never reached. Each compute
 *   system (lane) may use at most `perSystemOperations` of them; `reservedForTeardown` slots are
 *   usable only by terminate / shut down (which also ignore the per-system share), so one UVM's
 *   hung operations never block another UVM, nor its own termination. Lanes are served in turn.
 * - **Completions in batches.** The callback HCS calls (on its own thread, through koffi) only
 *   records the operation and returns; recorded completions are processed in `setImmediate` tasks,
 *   at most `COMPLETION_BATCH` per event-loop turn, so a stream of completions never starves
 *   timers and I/O.
 * - The callback is registered once per process; its context is a small integer looked up in
 *   `pending` (never a pointer to a JS object). While an operation is pending a ref'd timer keeps
 *   Node alive (a callback from a native thread does not).
 */
import { UvmError } from '../core/errors.js';
import { pendingPromises } from '../core/pending-promises.js';
import type { HcsCallOptions } from './hcs-api.js';
import { HcsError, HResult, hcsErrorFromResult } from './hcs-error.js';
import type { ComputeCore, OperationHandle } from './computecore.js';

/** Default bound on HCS operations outstanding at once (abandoned ones included). */
export const DEFAULT_MAX_CONCURRENT_OPERATIONS = 256;
/** Default share of one compute system. */
export const DEFAULT_PER_SYSTEM_OPERATIONS = 64;
/** Default slots only terminate / shut down may use. */
export const DEFAULT_RESERVED_FOR_TEARDOWN = 16;
/** Default bound on blocking calls (grant, revoke, open) at once: libuv's thread pool has 4. */
export const DEFAULT_MAX_CONCURRENT_BLOCKING_CALLS = 4;
/** Default share of one compute system in the blocking calls. */
export const DEFAULT_PER_SYSTEM_BLOCKING_CALLS = 2;

/** How an operation abandoned at its deadline (or abort) finally ended in HCS. */
export type LateOutcome<T = string | undefined> = { applied: true; value: T } | { applied: false; error: unknown };

const LATE = Symbol.for('uvm-orchestrator.lateOutcome');

/**
 * The late outcome of a call that rejected with TIMEOUT / ABORTED while HCS was still working on
 * it; undefined when nothing reached HCS (the call was still queued) or the error is another one.
 */
export function lateOutcomeOf<T = string | undefined>(err: unknown): Promise<LateOutcome<T>> | undefined {
  return err !== null && typeof err === 'object' ? ((err as Record<symbol, unknown>)[LATE] as Promise<LateOutcome<T>> | undefined) : undefined;
}

/**
 * Attaches (or replaces) the late outcome of `err`: e.g. a create replaces it with one that settles
 * after its late success was undone.
 */
export function withLateOutcome<E extends object, T>(err: E, late: Promise<LateOutcome<T>>): E {
  Object.defineProperty(err, LATE, { value: late, enumerable: false, configurable: true });
  return err;
}

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
  /** Terminate / shut down: may use the reserved slots and ignores the per-system share. */
  teardown?: boolean;
}

/** One blocking native call (no HCS operation), run on the libuv pool through koffi `.async`. */
export interface BlockingRequest<T> {
  op: string;
  systemId?: string;
  /** Starts the call; the promise settles when the native call returns. */
  call: () => Promise<T>;
  options?: HcsCallOptions;
  /** Undoes a result that arrives after the caller gave up (e.g. closes a handle, revokes a grant). */
  undoLate?: (value: T) => void;
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
/** Captured at load so that fake timers installed later (tests) never replace them. */
const realSetInterval = globalThis.setInterval;
const realSetImmediate = globalThis.setImmediate;

/** Completions handed over by HCS threads, processed in batches by `drainCompletions`. */
let completed: number[] = [];
let drainScheduled = false;
/**
 * Completions processed per event-loop turn. Each one may start the next call, whose completion
 * then arrives in a later turn: a bounded batch bounds the work between two runs of the timers.
 */
export const COMPLETION_BATCH = 16;

function drainCompletions(): void {
  drainScheduled = false;
  const batch = completed.length <= COMPLETION_BATCH ? completed : completed.slice(0, COMPLETION_BATCH);
  completed = batch === completed ? [] : completed.slice(COMPLETION_BATCH);
  if (completed.length > 0) scheduleDrain();
  for (const id of batch) {
    try {
      pending.get(id)?.complete();
    } catch {
      // a completion never throws; nothing sensible to do otherwise
    }
  }
}

function scheduleDrain(): void {
  if (!drainScheduled) {
    drainScheduled = true;
    realSetImmediate(drainCompletions);
  }
}

function onCompletion(_operation: unknown, context: number | bigint): void {
  // Runs on the main thread while the HCS thread waits for it: record and return, never throw.
  completed.push(Number(context));
  scheduleDrain();
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

let blockingInFlight = 0;

function holdProcess(): void {
  if (pending.size + blockingInFlight === 1) {
    // One long timer for the life of the process, ref'd only while calls are outstanding
    // (ref/unref is cheaper than creating a timer per operation).
    keepAlive ??= realSetInterval(() => undefined, 1 << 30);
    keepAlive.ref();
  }
}

function releaseProcess(): void {
  if (pending.size + blockingInFlight === 0) keepAlive?.unref();
}

function track(id: number, entry: PendingEntry): void {
  pending.set(id, entry);
  holdProcess();
}

function untrack(id: number): void {
  if (pending.delete(id)) releaseProcess();
}

/** Operations created and not yet closed in this process (for leak checks and diagnostics). */
export function pendingOperationCount(): number {
  return pending.size;
}

/** Blocking calls (grant, revoke, open) not returned yet in this process. */
export function pendingBlockingCallCount(): number {
  return blockingInFlight;
}

/** True while the ref'd keep-alive timer is held (some call is outstanding). */
export function isKeepingProcessAlive(): boolean {
  return keepAlive?.hasRef() ?? false;
}

// ---- deadline / abort of one call -----------------------------------------------------------

type CancelReason = 'timeout' | 'abort';

/**
 * Deadlines of at least `SHARED_DEADLINE_MIN_MS` share timers: those of one length started within
 * `DEADLINE_JOIN_MS` of each other fire together from one timer, up to `DEADLINE_JOIN_MS` late,
 * never early (a timer per call cost more than the rest of the call's bookkeeping; every modify has
 * a 4-minute deadline by default). Shorter deadlines get a timer each, exact.
 */
const SHARED_DEADLINE_MIN_MS = 1000;
const DEADLINE_JOIN_MS = 10;

interface DeadlineGroup {
  timer: NodeJS.Timeout | undefined;
  openUntil: number;
  readonly entries: Set<() => void>;
}

/** The group still taking deadlines, per length. */
const openGroups = new Map<number, DeadlineGroup>();

/** Calls `fire` after `ms` (up to DEADLINE_JOIN_MS later when `ms` ≥ 1 s); returns the disarm. */
function armDeadline(ms: number, fire: () => void): () => void {
  if (ms < SHARED_DEADLINE_MIN_MS) {
    const timer = setTimeout(fire, ms);
    return () => clearTimeout(timer);
  }
  const now = performance.now();
  let group = openGroups.get(ms);
  if (group === undefined || group.openUntil < now) {
    const created: DeadlineGroup = { timer: undefined, openUntil: now + DEADLINE_JOIN_MS, entries: new Set() };
    created.timer = setTimeout(() => {
      if (openGroups.get(ms) === created) openGroups.delete(ms);
      created.timer = undefined;
      for (const f of created.entries) f();
      created.entries.clear();
    }, ms + DEADLINE_JOIN_MS);
    openGroups.set(ms, created);
    group = created;
  }
  const joined = group;
  joined.entries.add(fire);
  return () => {
    if (!joined.entries.delete(fire) || joined.entries.size > 0) return;
    if (joined.timer !== undefined) clearTimeout(joined.timer);
    joined.timer = undefined;
    if (openGroups.get(ms) === joined) openGroups.delete(ms);
  };
}

class Deadline {
  reason: CancelReason | undefined;
  #disarm: (() => void) | undefined;
  #onAbort: (() => void) | undefined;
  #listeners: (() => void)[] = [];

  constructor(private readonly options: HcsCallOptions | undefined) {
    const signal = options?.signal;
    if (signal?.aborted) {
      this.reason = 'abort';
      return;
    }
    if (signal) {
      this.#onAbort = () => this.fire('abort');
      signal.addEventListener('abort', this.#onAbort, { once: true });
    }
    const t = options?.timeoutMs;
    if (t !== undefined) this.#disarm = armDeadline(Math.max(0, t), () => this.fire('timeout'));
  }

  /** Calls `fn` once when the call is cancelled (at once if it already is). */
  onFire(fn: () => void): void {
    if (this.reason) fn();
    else this.#listeners.push(fn);
  }

  fire(reason: CancelReason): void {
    if (this.reason) return;
    this.reason = reason;
    for (const fn of this.#listeners.splice(0)) fn();
  }

  dispose(): void {
    this.#disarm?.();
    this.#disarm = undefined;
    if (this.#onAbort) this.options?.signal?.removeEventListener('abort', this.#onAbort);
    this.#listeners = [];
  }
}

function cancelledError(req: { op: string; systemId?: string; options?: HcsCallOptions }, reason: CancelReason, started: boolean): HcsError {
  const timeout = reason === 'timeout';
  const what = timeout ? `timed out after ${req.options?.timeoutMs} ms` : 'aborted';
  const outcome = started
    ? 'the call is still running in HCS (HCS cannot cancel it); its outcome is handled when it completes'
    : 'the call was not started';
  return new HcsError({
    op: req.op,
    systemId: req.systemId,
    hresult: timeout ? HResult.HCS_E_OPERATION_TIMEOUT : HResult.E_ABORT,
    code: timeout ? 'TIMEOUT' : 'ABORTED',
    text: `${what}; ${outcome}`,
  });
}

function checkTimeout(options: HcsCallOptions | undefined): void {
  const timeoutMs = options?.timeoutMs;
  if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs < 0)) {
    throw new UvmError('INVALID_ARGUMENT', `timeoutMs must be a finite number >= 0, got ${timeoutMs}`);
  }
}

// ---- the scheduler --------------------------------------------------------------------------

interface Task {
  readonly lane: string;
  readonly teardown: boolean;
  /** Starts the task; the returned promise settles when its slot may be given back. */
  readonly start: () => Promise<unknown>;
  /** Set while queued: removes the task from its queue. */
  queued: boolean;
}

interface Lane {
  normal: Task[];
  teardown: Task[];
  active: number;
}

/** Slots shared by lanes: a global bound, a per-lane share and a reserve for teardown tasks. */
class SlotScheduler {
  #active = 0;
  readonly #lanes = new Map<string, Lane>();
  /** Lanes with queued tasks, in the order they are served. */
  #turns: string[] = [];

  constructor(
    private readonly max: number,
    private readonly perLane: number,
    private readonly reserve: number,
  ) {}

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    let n = 0;
    for (const lane of this.#lanes.values()) n += lane.normal.length + lane.teardown.length;
    return n;
  }

  /**
   * Starts `start` at once when its lane has nothing queued and a slot is free (the common case:
   * no task object, no queue); false otherwise.
   */
  startNow(laneName: string, teardown: boolean, start: () => Promise<unknown>): boolean {
    const lane = this.#lanes.get(laneName);
    if (lane !== undefined && (teardown ? lane.teardown : lane.normal).length > 0) return false;
    if (teardown ? this.#active >= this.max : this.#active >= this.max - this.reserve || (lane?.active ?? 0) >= this.perLane) return false;
    this.#start({ lane: laneName, teardown, start, queued: false }, lane ?? this.#lane(laneName));
    return true;
  }

  submit(task: Task): void {
    const lane = this.#lane(task.lane);
    const queue = task.teardown ? lane.teardown : lane.normal;
    if (queue.length === 0 && this.#canStart(task, lane)) {
      this.#start(task, lane);
      return;
    }
    task.queued = true;
    queue.push(task);
    if (!this.#turns.includes(task.lane)) this.#turns.push(task.lane);
  }

  /** Removes a queued task; false if it already started. */
  withdraw(task: Task): boolean {
    if (!task.queued) return false;
    task.queued = false;
    const lane = this.#lanes.get(task.lane);
    if (lane) {
      const list = task.teardown ? lane.teardown : lane.normal;
      const i = list.indexOf(task);
      if (i >= 0) list.splice(i, 1);
      this.#forgetIfIdle(task.lane, lane);
    }
    return true;
  }

  #lane(name: string): Lane {
    let lane = this.#lanes.get(name);
    if (!lane) {
      lane = { normal: [], teardown: [], active: 0 };
      this.#lanes.set(name, lane);
    }
    return lane;
  }

  #canStart(task: Task, lane: Lane): boolean {
    if (task.teardown) return this.#active < this.max;
    return this.#active < this.max - this.reserve && lane.active < this.perLane;
  }

  #start(task: Task, lane: Lane): void {
    task.queued = false;
    this.#active++;
    lane.active++;
    const done = (): void => {
      this.#active--;
      lane.active--;
      this.#forgetIfIdle(task.lane, lane);
      this.#pump();
    };
    task.start().then(done, done);
  }

  #pump(): void {
    let progress = true;
    while (progress && this.#turns.length > 0) {
      progress = false;
      for (const name of [...this.#turns]) {
        const lane = this.#lanes.get(name);
        const next = lane && (lane.teardown[0] ?? lane.normal[0]);
        if (!lane || !next) {
          this.#turns = this.#turns.filter((n) => n !== name);
          continue;
        }
        if (!this.#canStart(next, lane)) continue;
        (next.teardown ? lane.teardown : lane.normal).shift();
        // Served: to the back of the line.
        this.#turns = this.#turns.filter((n) => n !== name);
        if (lane.teardown.length + lane.normal.length > 0) this.#turns.push(name);
        this.#start(next, lane);
        progress = true;
      }
    }
  }

  #forgetIfIdle(name: string, lane: Lane): void {
    if (lane.active === 0 && lane.normal.length === 0 && lane.teardown.length === 0) {
      this.#lanes.delete(name);
      this.#turns = this.#turns.filter((n) => n !== name);
    }
  }
}

// ---- the driver -----------------------------------------------------------------------------

export interface OperationDriverOptions {
  /** HCS operations outstanding at once, abandoned ones included. @default 256 */
  maxConcurrentOperations?: number;
  /** Share of one compute system. @default 64 */
  perSystemOperations?: number;
  /** Slots only terminate / shut down may use. @default 16 */
  reservedForTeardown?: number;
  /** Blocking calls (grant, revoke, open) at once. @default 4 */
  maxConcurrentBlockingCalls?: number;
  /** Share of one compute system in the blocking calls. @default 2 */
  perSystemBlockingCalls?: number;
}

function intOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new UvmError('INVALID_ARGUMENT', `${name} must be an integer in ${min}..${max}, got ${value}`);
  }
  return v;
}

/** Runs the native calls of one `ComputeCore` library. */
export class OperationDriver {
  readonly #lib: ComputeCore;
  readonly #operations: SlotScheduler;
  readonly #blocking: SlotScheduler;
  readonly limits: Readonly<Required<OperationDriverOptions>>;

  constructor(lib: ComputeCore, options: OperationDriverOptions = {}) {
    const blocking = intOption('maxConcurrentBlockingCalls', options.maxConcurrentBlockingCalls, DEFAULT_MAX_CONCURRENT_BLOCKING_CALLS, 1, 64);
    // koffi refuses (or crashes on) more asynchronous calls / queued foreign-thread callbacks
    // than its configured limit: every call that may wait counts against it.
    const koffiLimit = lib.maxAsyncCalls;
    const fits = (n: number): boolean => koffiLimit === undefined || n + blocking <= koffiLimit - 8;
    const defaultMax = fits(DEFAULT_MAX_CONCURRENT_OPERATIONS) ? DEFAULT_MAX_CONCURRENT_OPERATIONS : Math.max(1, koffiLimit! - blocking - 8);
    const max = intOption('maxConcurrentOperations', options.maxConcurrentOperations, defaultMax, 1, 900);
    if (!fits(max)) {
      throw new UvmError(
        'INVALID_ARGUMENT',
        `maxConcurrentOperations + maxConcurrentBlockingCalls (${max + blocking}) must stay below koffi's limit of ${koffiLimit} asynchronous calls`,
      );
    }
    const reserve = intOption('reservedForTeardown', options.reservedForTeardown, Math.min(DEFAULT_RESERVED_FOR_TEARDOWN, Math.floor(max / 16)), 0, max - 1);
    const perSystem = intOption('perSystemOperations', options.perSystemOperations, Math.min(DEFAULT_PER_SYSTEM_OPERATIONS, max - reserve), 1, max - reserve);
    const perSystemBlocking = intOption(
      'perSystemBlockingCalls',
      options.perSystemBlockingCalls,
      Math.min(DEFAULT_PER_SYSTEM_BLOCKING_CALLS, blocking),
      1,
      blocking,
    );
    this.#lib = lib;
    this.limits = Object.freeze({
      maxConcurrentOperations: max,
      perSystemOperations: perSystem,
      reservedForTeardown: reserve,
      maxConcurrentBlockingCalls: blocking,
      perSystemBlockingCalls: perSystemBlocking,
    });
    this.#operations = new SlotScheduler(max, perSystem, reserve);
    this.#blocking = new SlotScheduler(blocking, perSystemBlocking, 0);
  }

  get library(): ComputeCore {
    return this.#lib;
  }

  /** Operations outstanding in HCS (abandoned ones included) plus those waiting for a slot. */
  get size(): number {
    return this.#operations.active + this.#operations.queued;
  }

  /** Operations outstanding in HCS, abandoned ones included. */
  get active(): number {
    return this.#operations.active;
  }

  /**
   * Runs one operation and resolves with its result document (undefined when empty). Rejects with
   * HcsError HCS_ERROR (HCS failure), TIMEOUT or ABORTED (at the deadline / abort, at once; see
   * `lateOutcomeOf` for the outcome of a call that had reached HCS).
   */
  run(req: OperationRequest): Promise<string | undefined> {
    const options = req.options;
    if (options === undefined || (options.signal === undefined && options.timeoutMs === undefined)) {
      // Fast path: nothing can cancel the call, so no deadline; with a free slot, no queue either.
      let started: Started<string | undefined> | undefined;
      const begun = this.#operations.startNow(req.systemId ?? '', req.teardown === true, () => {
        started = this.#execute(req);
        return started.settled;
      });
      if (begun) return pendingPromises.track('hcs-operation', started!.result);
    } else {
      try {
        checkTimeout(options);
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return pendingPromises.track('hcs-operation', this.#schedule(this.#operations, req, req.teardown === true, () => this.#execute(req)));
  }

  /** Runs one blocking call (grant, revoke, open) under the same rules as `run`. */
  async runBlocking<T>(req: BlockingRequest<T>): Promise<T> {
    checkTimeout(req.options);
    return pendingPromises.track('hcs-blocking-call', this.#schedule(this.#blocking, req, false, () => {
      blockingInFlight++;
      holdProcess();
      const call = (async () => req.call())();
      const settled = call.then(
        (value): LateOutcome<T> => ({ applied: true, value }),
        (error: unknown): LateOutcome<T> => ({ applied: false, error }),
      );
      void settled.then(() => {
        blockingInFlight--;
        releaseProcess();
      });
      return { result: call, settled, undoLate: req.undoLate };
    }));
  }

  /**
   * Queues a task on `scheduler`; the caller's promise settles with the task's result, or at the
   * deadline / abort: before the start without anything reaching native code, after it with the
   * late outcome attached while the slot stays taken until the native call is done.
   */
  #schedule<T>(
    scheduler: SlotScheduler,
    req: { op: string; systemId?: string; options?: HcsCallOptions },
    teardown: boolean,
    begin: () => Started<T>,
  ): Promise<T> {
    const deadline = new Deadline(req.options);
    if (deadline.reason) {
      deadline.dispose();
      return Promise.reject(cancelledError(req, deadline.reason, false));
    }
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        deadline.dispose();
        fn();
      };
      const start = (): Promise<unknown> => {
        if (deadline.reason) {
          finish(() => reject(cancelledError(req, deadline.reason!, false)));
          return Promise.resolve();
        }
        const started = begin();
        started.result.then(
          (v) => finish(() => resolve(v)),
          (e: unknown) => finish(() => reject(e)),
        );
        deadline.onFire(() =>
          finish(() => {
            started.onAbandon?.();
            if (started.undoLate) {
              const undo = started.undoLate;
              void started.settled.then((o) => {
                if (o.applied) undo(o.value);
              });
            }
            reject(withLateOutcome(cancelledError(req, deadline.reason!, true), started.settled));
          }),
        );
        return started.settled;
      };
      const lane = req.systemId ?? '';
      if (scheduler.startNow(lane, teardown, start)) return;
      const task: Task = { lane, teardown, queued: false, start };
      deadline.onFire(() => {
        if (scheduler.withdraw(task)) finish(() => reject(cancelledError(req, deadline.reason!, false)));
      });
      scheduler.submit(task);
    });
  }

  #execute(req: OperationRequest): Started<string | undefined> {
    const lib = this.#lib;
    const callback = completionCallback(lib);
    const id = allocateContext();
    let op: OperationHandle | null = null;
    let closed = false;
    let resolveResult!: (value: string | undefined) => void;
    let rejectResult!: (error: unknown) => void;
    const result = new Promise<string | undefined>((resolve, reject) => {
      resolveResult = resolve;
      rejectResult = reject;
    });
    const close = (): void => {
      closed = true;
      if (op !== null) lib.closeOperation(op);
      // Inputs stay referenced by `entry` until here, after HCS is done with the operation.
      entry.inputs = undefined;
      untrack(id);
    };
    const entry: PendingEntry = {
      // HCS completed the operation (drained on the main thread): read its result, then close it.
      complete: () => {
        let failure: { error: unknown } | undefined;
        let value: string | undefined;
        try {
          const r = lib.getOperationResult(op!);
          if (r.hr >= 0) value = r.document === '' ? undefined : r.document;
          else failure = { error: hcsErrorFromResult(req.op, r.hr, r.document, req.systemId) };
        } catch (err) {
          failure = { error: err };
        }
        close();
        if (failure) rejectResult(failure.error);
        else resolveResult(value);
      },
      inputs: req.inputs,
    };
    track(id, entry);
    try {
      op = lib.createOperation(id, callback);
      if (op === null) {
        throw new HcsError({ op: req.op, systemId: req.systemId, hresult: HResult.E_OUTOFMEMORY, text: 'HcsCreateOperation failed' });
      }
      const hr = req.call(op);
      if (hr < 0) {
        // The call itself failed: the operation never started and will not complete. Its result
        // (if any) carries the error document, as hcsshim reads it.
        const r = lib.getOperationResult(op);
        throw hcsErrorFromResult(req.op, hr, r.hr < 0 ? r.document : undefined, req.systemId);
      }
    } catch (err) {
      close();
      rejectResult(err);
    }
    const settled = result.then(
      (value): LateOutcome => ({ applied: true, value }),
      (error: unknown): LateOutcome => ({ applied: false, error }),
    );
    return {
      result,
      settled,
      onAbandon: () => {
        // Best effort and documented as E_NOTIMPL: HCS completes the operation either way.
        if (!closed && op !== null) {
          try {
            lib.cancelOperation(op);
          } catch {
            // ignored, like its result
          }
        }
      },
    };
  }
}

interface Started<T> {
  /** The caller's result. */
  result: Promise<T>;
  /** Settles (never rejects) when the native call is done and its slot may be reused. */
  settled: Promise<LateOutcome<T>>;
  /** Called when the caller gives up while the call runs. */
  onAbandon?: () => void;
  undoLate?: (value: T) => void;
}

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
import { performance } from 'node:perf_hooks';
import { UvmError } from '../core/errors.js';
import { pendingPromises } from '../core/pending-promises.js';
import { retainShape } from '../core/retained-shapes.js';
import { invalidPriority, type HcsCallOptions } from './hcs-api.js';
import { HcsError, HResult, hcsErrorFromResult } from './hcs-error.js';
import { recycleWide, type ComputeCore, type OperationHandle, type WideString } from './computecore.js';

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
  /** Buffers/strings passed to native code (one or an array); kept referenced until the operation completes. */
  inputs?: unknown;
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
  complete(): void;
}

// ---- process-wide completion registry -------------------------------------------------------

/**
 * Operations created and not yet closed, by context id. A context id is `generation ×
 * CONTEXT_SLOTS + slot + 1`: `slots[slot]` holds the operation (an array and a free list cost less
 * per call than a Map), and the generation, bumped each time the slot is reused, keeps the id of a
 * closed operation from naming its successor. Ids stay below 2^30.
 */
const CONTEXT_SLOTS = 1 << 20;
const CONTEXT_GENERATIONS = 1 << 10;
const slots: (PendingEntry | undefined)[] = [];
/** The id each slot last had. */
const slotIds: number[] = [];
const freeSlots: number[] = [];
/** The registered completion callback per library (registered once, never unregistered). */
const registeredCallbacks = new WeakMap<ComputeCore, unknown>();
let keepAlive: NodeJS.Timeout | undefined;
/** Captured at load so that fake timers installed later (tests) never replace them. */
const realSetInterval = globalThis.setInterval;
const realSetImmediate = globalThis.setImmediate;

/** Completions handed over by HCS threads, processed in batches by `drainCompletions`. */
let completed: number[] = [];
/** The array `completed` was before the drain running or last run (reused: no array per drain). */
let spareCompleted: number[] = [];
let drainScheduled = false;
/**
 * Completions processed per event-loop turn. Each one may start the next call, whose completion
 * then arrives in a later turn: a bounded batch bounds the work between two runs of the timers.
 */
export const COMPLETION_BATCH = 16;

function drainCompletions(): void {
  drainScheduled = false;
  let batch = completed;
  if (batch.length <= COMPLETION_BATCH) {
    // (A completion recorded while the batch runs, e.g. by a callback HCS made on this thread from
    // a call the batch started, goes to the other array.)
    completed = spareCompleted;
    spareCompleted = batch;
  } else {
    batch = completed.slice(0, COMPLETION_BATCH);
    completed = completed.slice(COMPLETION_BATCH);
    scheduleDrain();
  }
  for (let i = 0; i < batch.length; i++) {
    try {
      pendingEntry(batch[i])?.complete();
    } catch {
      // a completion never throws; nothing sensible to do otherwise
    }
  }
  if (batch === spareCompleted) batch.length = 0;
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

/** The library `completionCallback` was last asked for, and its callback (no lookup per call). */
let lastCallbackLib: ComputeCore | undefined;
let lastCallback: unknown;

function completionCallback(lib: ComputeCore): unknown {
  if (lib === lastCallbackLib) return lastCallback;
  let callback = registeredCallbacks.get(lib);
  if (callback === undefined) {
    callback = lib.registerCompletion(onCompletion);
    registeredCallbacks.set(lib, callback);
  }
  lastCallbackLib = lib;
  lastCallback = callback;
  return callback;
}

/** The operation that context id `id` names, if it is still pending. */
function pendingEntry(id: number): PendingEntry | undefined {
  const slot = (id - 1) % CONTEXT_SLOTS;
  return slotIds[slot] === id ? slots[slot] : undefined;
}

let blockingInFlight = 0;

function holdProcess(): void {
  if (pendingOperationCount() + blockingInFlight === 1) {
    // One long timer for the life of the process, ref'd only while calls are outstanding
    // (ref/unref is cheaper than creating a timer per operation).
    keepAlive ??= realSetInterval(() => undefined, 1 << 30);
    keepAlive.ref();
  }
}

function releaseProcess(): void {
  if (pendingOperationCount() + blockingInFlight === 0) keepAlive?.unref();
}

/** Records `entry` as pending and returns its context id. */
function track(entry: PendingEntry, op: string, systemId: string | undefined): number {
  let slot = freeSlots.pop();
  let generation = 0;
  if (slot === undefined) {
    slot = slots.length;
    if (slot >= CONTEXT_SLOTS) {
      throw new HcsError({ op, systemId, hresult: HResult.E_OUTOFMEMORY, text: `more than ${CONTEXT_SLOTS} HCS operations pending in this process` });
    }
    slots.push(undefined);
    slotIds.push(0);
  } else {
    generation = (Math.floor((slotIds[slot] - 1) / CONTEXT_SLOTS) + 1) % CONTEXT_GENERATIONS;
  }
  const id = generation * CONTEXT_SLOTS + slot + 1;
  slots[slot] = entry;
  slotIds[slot] = id;
  holdProcess();
  return id;
}

/** The operation with context id `id` is closed: its slot is free for reuse (under a new id). */
function untrack(id: number): void {
  const slot = (id - 1) % CONTEXT_SLOTS;
  if (id <= 0 || slotIds[slot] !== id || slots[slot] === undefined) return;
  slots[slot] = undefined;
  freeSlots.push(slot);
  releaseProcess();
}

/** Operations created and not yet closed in this process (for leak checks and diagnostics). */
export function pendingOperationCount(): number {
  // Every slot is either pending or free.
  return slots.length - freeSlots.length;
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

/** Something with a deadline: `onDeadline` runs once when it passes, unless disarmed before. */
interface DeadlineWaiter {
  onDeadline(): void;
  /** Set by `armDeadline`: the waiter's own timer or the shared group it joined. */
  deadline: NodeJS.Timeout | DeadlineGroup | undefined;
  /** The waiter's index in its group's `entries` (set by `armDeadline`). */
  deadlineIndex: number;
}

class DeadlineGroup {
  timer: NodeJS.Timeout | undefined;
  /** Its waiters (an array and each waiter's index in it cost less per call than a Set). */
  readonly entries: DeadlineWaiter[] = [];
  /** Waiting for `sweepIdle` (its last waiter left while it was still open). */
  idle = false;
  constructor(
    readonly ms: number,
    readonly openUntil: number,
  ) {}
}

// Its map survives full collections (core/retained-shapes.ts).
retainShape(new DeadlineGroup(0, 0));

/** The group still taking deadlines, per length. */
const openGroups = new Map<number, DeadlineGroup>();
/** The group `armDeadline` last used (most calls have the same length: no lookup). */
let lastGroup: DeadlineGroup | undefined;

function fireWaiter(waiter: DeadlineWaiter): void {
  waiter.deadline = undefined;
  waiter.onDeadline();
}

function fireGroup(group: DeadlineGroup): void {
  if (openGroups.get(group.ms) === group) openGroups.delete(group.ms);
  if (lastGroup === group) lastGroup = undefined;
  group.timer = undefined;
  const waiters = group.entries.splice(0);
  for (const waiter of waiters) fireWaiter(waiter);
}

/** Calls `waiter.onDeadline()` after `ms` (up to DEADLINE_JOIN_MS later when `ms` ≥ 1 s). */
function armDeadline(ms: number, waiter: DeadlineWaiter): void {
  if (ms < SHARED_DEADLINE_MIN_MS) {
    waiter.deadline = setTimeout(fireWaiter, ms, waiter);
    return;
  }
  const now = performance.now();
  let group = lastGroup !== undefined && lastGroup.ms === ms ? lastGroup : openGroups.get(ms);
  if (group === undefined || group.openUntil < now) {
    group = new DeadlineGroup(ms, now + DEADLINE_JOIN_MS);
    group.timer = setTimeout(fireGroup, ms + DEADLINE_JOIN_MS, group);
    openGroups.set(ms, group);
  }
  lastGroup = group;
  waiter.deadlineIndex = group.entries.length;
  group.entries.push(waiter);
  waiter.deadline = group;
}

/** Removes `waiter` from `group` (the last waiter takes its place); false if it is not there. */
function leaveGroup(group: DeadlineGroup, waiter: DeadlineWaiter): boolean {
  const entries = group.entries;
  const i = waiter.deadlineIndex;
  if (entries[i] !== waiter) return false;
  const last = entries.pop()!;
  if (last !== waiter) {
    entries[i] = last;
    last.deadlineIndex = i;
  }
  return true;
}

/**
 * Cancels the deadline armed for `waiter`, if any. When the last waiter of a group leaves, the group
 * and its timer go — at the next `sweepIdle` if the group still takes deadlines (the caller's next
 * call, started from its continuation, usually joins it: one call after another then costs no
 * timer each), at once otherwise.
 */
function disarmDeadline(waiter: DeadlineWaiter): void {
  const armed = waiter.deadline;
  if (armed === undefined) return;
  waiter.deadline = undefined;
  if (!(armed instanceof DeadlineGroup)) {
    clearTimeout(armed);
    return;
  }
  if (!leaveGroup(armed, waiter) || armed.entries.length > 0) return;
  if (openGroups.get(armed.ms) !== armed) dropGroup(armed);
  else if (!armed.idle) {
    armed.idle = true;
    idleGroups.push(armed);
    scheduleSweep();
  }
}

function dropGroup(group: DeadlineGroup): void {
  if (group.timer !== undefined) clearTimeout(group.timer);
  group.timer = undefined;
  if (openGroups.get(group.ms) === group) openGroups.delete(group.ms);
  if (lastGroup === group) lastGroup = undefined;
}

/** Open deadline groups whose last waiter left, and lanes with nothing running or queued: see `sweepIdle`. */
const idleGroups: DeadlineGroup[] = [];
const idleLanes: { scheduler: SlotScheduler; lane: Lane }[] = [];
let sweepScheduled = false;

function scheduleSweep(): void {
  if (!sweepScheduled) {
    sweepScheduled = true;
    realSetImmediate(sweepIdle);
  }
}

/**
 * In the event-loop turn after they went idle: groups and lanes still idle are dropped (a finished
 * call leaves no timer and no lane behind); those that a new call took up meanwhile stay.
 */
function sweepIdle(): void {
  sweepScheduled = false;
  for (let i = 0; i < idleGroups.length; i++) {
    const group = idleGroups[i];
    group.idle = false;
    if (group.entries.length === 0) dropGroup(group);
  }
  idleGroups.length = 0;
  // (forgetIfIdle never makes another lane idle.)
  for (let i = 0; i < idleLanes.length; i++) idleLanes[i].scheduler.forgetIfIdle(idleLanes[i].lane);
  idleLanes.length = 0;
}

/** The deadline and abort signal of one blocking call. */
class Deadline implements DeadlineWaiter {
  reason: CancelReason | undefined;
  deadline: NodeJS.Timeout | DeadlineGroup | undefined;
  deadlineIndex = 0;
  readonly #signal: AbortSignal | undefined;
  #listeners: (() => void)[] = [];

  constructor(options: HcsCallOptions | undefined) {
    const signal = options?.signal;
    if (signal?.aborted) {
      this.reason = 'abort';
      return;
    }
    if (signal) {
      this.#signal = signal;
      signal.addEventListener('abort', this, { once: true });
    }
    const t = options?.timeoutMs;
    if (t !== undefined) armDeadline(Math.max(0, t), this);
  }

  /** The signal's abort event. */
  handleEvent(): void {
    this.fire('abort');
  }

  onDeadline(): void {
    this.fire('timeout');
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
    disarmDeadline(this);
    this.#signal?.removeEventListener('abort', this);
    this.#listeners = [];
  }
}

// Its map survives full collections (core/retained-shapes.ts).
retainShape(new Deadline(undefined));

function cancelledError(call: { op: string; systemId?: string }, timeoutMs: number | undefined, reason: CancelReason, started: boolean): HcsError {
  const timeout = reason === 'timeout';
  const what = timeout ? `timed out after ${timeoutMs} ms` : 'aborted';
  const outcome = started
    ? 'the call is still running in HCS (HCS cannot cancel it); its outcome is handled when it completes'
    : 'the call was not started';
  return new HcsError({
    op: call.op,
    systemId: call.systemId,
    hresult: timeout ? HResult.HCS_E_OPERATION_TIMEOUT : HResult.E_ABORT,
    code: timeout ? 'TIMEOUT' : 'ABORTED',
    text: `${what}; ${outcome}`,
  });
}

/** An INVALID_ARGUMENT error when `timeoutMs` is given and not a finite number ≥ 0. */
function badTimeout(timeoutMs: number | undefined): UvmError | undefined {
  if (timeoutMs !== undefined && (!Number.isFinite(timeoutMs) || timeoutMs < 0)) {
    return new UvmError('INVALID_ARGUMENT', `timeoutMs must be a finite number >= 0, got ${timeoutMs}`);
  }
  return undefined;
}

// ---- the scheduler --------------------------------------------------------------------------

/**
 * How many rounds of every slot a queued call can be overtaken by calls of higher priority. A
 * pod's teardown queues about two priority calls per single call (50 containers: 100 unmounts and
 * unplugs ahead of 200 single removals) and its start more; with one round (64 of 68 slots) the
 * first single removals stopped the unplugs after about 20, and the chains waited again.
 */
const OVERTAKE_ROUNDS = 4;

/** Work waiting for a slot. */
interface Task {
  readonly lane: string;
  readonly teardown: boolean;
  /** Among its lane's queued tasks, higher runs first (`HcsCallOptions.priority`); 0 for most. */
  readonly priority: number;
  /** How many later tasks of higher priority were queued ahead of it (at most `OVERTAKE_ROUNDS × max`). */
  overtaken: number;
  /** True while queued. */
  queued: boolean;
  /** Runs the task in a slot of `lane`; whoever ends the task gives it back with `release(lane)`. */
  run(lane: Lane): void;
}

interface Lane {
  readonly name: string;
  normal: Task[];
  teardown: Task[];
  active: number;
  /** Waiting for `sweepIdle`. */
  idle: boolean;
}

function isIdle(lane: Lane): boolean {
  return lane.active === 0 && lane.normal.length === 0 && lane.teardown.length === 0;
}

/** Slots shared by lanes: a global bound, a per-lane share and a reserve for teardown tasks. */
class SlotScheduler {
  #active = 0;
  readonly #overtakeLimit: number;
  readonly #lanes = new Map<string, Lane>();
  /** Lanes with queued tasks, in the order they are served. */
  #turns: string[] = [];
  #pumping = false;
  #pumpAgain = false;

  constructor(
    private readonly max: number,
    private readonly perLane: number,
    private readonly reserve: number,
  ) {
    this.#overtakeLimit = OVERTAKE_ROUNDS * max;
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    let n = 0;
    for (const lane of this.#lanes.values()) n += lane.normal.length + lane.teardown.length;
    return n;
  }

  /**
   * Takes a slot of `laneName` at once when that lane has nothing queued and a slot is free (the
   * common case: no task, no queue); undefined otherwise. The caller gives it back with `release`.
   */
  acquire(laneName: string, teardown: boolean): Lane | undefined {
    const lane = this.#lanes.get(laneName);
    if (lane !== undefined && (teardown ? lane.teardown : lane.normal).length > 0) return undefined;
    if (!this.#fits(teardown, lane?.active ?? 0)) return undefined;
    const taken = lane ?? this.#lane(laneName);
    this.#active++;
    taken.active++;
    return taken;
  }

  /**
   * Queues `task` (after `acquire` failed); it runs when a slot of its lane is free. A task of
   * priority p goes behind the lane's queued tasks of priority p or more, ahead of those of less,
   * but never ahead of a task that has already been overtaken `OVERTAKE_ROUNDS × max` times: a
   * steady stream of higher-priority calls delays a call by at most that many calls (a few rounds
   * of every slot).
   */
  enqueue(task: Task): void {
    const lane = this.#lane(task.lane);
    task.queued = true;
    task.overtaken = 0;
    const list = task.teardown ? lane.teardown : lane.normal;
    let at = list.length;
    if (task.priority > 0) {
      while (at > 0 && list[at - 1]!.priority < task.priority && list[at - 1]!.overtaken < this.#overtakeLimit) at--;
      for (let i = at; i < list.length; i++) list[i]!.overtaken++;
    }
    if (at === list.length) list.push(task);
    else list.splice(at, 0, task);
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
      this.#forgetIfIdle(lane);
    }
    return true;
  }

  /**
   * Gives back one slot of `lane` and starts what may start now. A lane left idle is forgotten at
   * the next `sweepIdle`, unless a call took it up meanwhile (one call after another on a system
   * then reuses its lane).
   */
  release(lane: Lane): void {
    this.#active--;
    lane.active--;
    if (!lane.idle && isIdle(lane)) {
      lane.idle = true;
      idleLanes.push({ scheduler: this, lane });
      scheduleSweep();
    }
    if (this.#turns.length > 0) this.#pump();
  }

  /** `sweepIdle`: forgets `lane` if it is still idle. */
  forgetIfIdle(lane: Lane): void {
    lane.idle = false;
    if (this.#lanes.get(lane.name) === lane) this.#forgetIfIdle(lane);
  }

  #lane(name: string): Lane {
    let lane = this.#lanes.get(name);
    if (!lane) {
      lane = { name, normal: [], teardown: [], active: 0, idle: false };
      this.#lanes.set(name, lane);
    }
    return lane;
  }

  /** Whether a slot is free for a task of a lane with `laneActive` slots taken (teardown: the reserve too, no per-lane share). */
  #fits(teardown: boolean, laneActive: number): boolean {
    if (teardown) return this.#active < this.max;
    return this.#active < this.max - this.reserve && laneActive < this.perLane;
  }

  /** Starts queued tasks while slots allow; a task that ends at once (and releases) while started here is handled by the loop, not by recursion. */
  #pump(): void {
    if (this.#pumping) {
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    try {
      do {
        this.#pumpAgain = false;
        this.#pumpOnce();
      } while (this.#pumpAgain);
    } finally {
      this.#pumping = false;
    }
  }

  #pumpOnce(): void {
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
        if (!this.#fits(next.teardown, lane.active)) continue;
        (next.teardown ? lane.teardown : lane.normal).shift();
        // Served: to the back of the line.
        this.#turns = this.#turns.filter((n) => n !== name);
        if (lane.teardown.length + lane.normal.length > 0) this.#turns.push(name);
        next.queued = false;
        this.#active++;
        lane.active++;
        next.run(lane);
        progress = true;
      }
    }
  }

  #forgetIfIdle(lane: Lane): void {
    if (isIdle(lane)) {
      this.#lanes.delete(lane.name);
      if (this.#turns.length > 0) this.#turns = this.#turns.filter((n) => n !== lane.name);
    }
  }
}

// ---- one HCS operation ----------------------------------------------------------------------

/**
 * Issues the HCS call of an operation: `target` and `input` are what the caller gave (kept
 * referenced until HCS is done with the operation); returns the call's HRESULT.
 */
export type OperationCall = (lib: ComputeCore, target: unknown, operation: OperationHandle, input: unknown) => number;

/** `OperationDriver.operation` flags: terminate / shut down (reserved slots, no per-system share). */
export const OP_TEARDOWN = 1;
/** Resolve the caller with undefined instead of the result document. */
export const OP_DISCARD = 2;
/** The input is a `wideDocument` buffer: hand it back (`recycleWide`) once HCS is done with it. */
export const OP_RECYCLE_INPUT = 4;
/** `flags` from this bit on: the call's priority (`HcsCallOptions.priority`, see `priorityFlags`). */
const OP_PRIORITY_SHIFT = 8;

/** The `flags` bits of `HcsCallOptions.priority` (undefined: 0), or the INVALID_ARGUMENT error of an ill-typed one. */
export function priorityFlags(priority: number | undefined): number | UvmError {
  if (priority === undefined) return 0;
  return invalidPriority(priority) ?? priority << OP_PRIORITY_SHIFT;
}

/** Hands back `input` when `flags` say it is a `wideDocument` buffer (nothing native uses it any more). */
function recycleInput(flags: number, input: unknown): void {
  if ((flags & OP_RECYCLE_INPUT) !== 0 && input) recycleWide(input as WideString);
}

/** `OperationRequest.call` as an `OperationCall` (the request's function is the target). */
const callRequest: OperationCall = (_lib, target, operation) => (target as OperationRequest['call'])(operation);

const WAITING = 0;
const RUNNING = 1;
const CLOSED = 2;

/** Callers' promises of operations not settled yet (`pendingPromises` kind 'hcs-operation'). */
const operationPromises = pendingPromises.counter('hcs-operation');

/** The resolving functions of the promise `captureResolvers` last ran for (taken at once by `Operation.promise`). */
let capturedResolve: ((value: string | undefined) => void) | undefined;
let capturedReject: ((error: unknown) => void) | undefined;
function captureResolvers(resolve: (value: string | undefined) => void, reject: (error: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/**
 * One HCS operation from the call to its close: queued for a slot, then running in HCS (tracked
 * by its context id until the completion is drained), then closed. One object per call holds
 * every piece of state (no closures, no promise chains): the caller's promise is the only promise
 * unless the caller gives up while HCS still runs the operation (then a late-outcome promise).
 */
class Operation implements PendingEntry, DeadlineWaiter, Task {
  queued = false;
  overtaken = 0;
  deadline: NodeJS.Timeout | DeadlineGroup | undefined = undefined;
  deadlineIndex = 0;
  #state = WAITING;
  #context = 0;
  #handle: OperationHandle | null = null;
  #slot: Lane | undefined = undefined;
  /** The caller's promise has settled (result, failure, or given up at its deadline / abort). */
  #answered = false;
  #resolve!: (value: string | undefined) => void;
  #reject!: (error: unknown) => void;
  /** Set once the caller gave up while HCS runs the operation: settles the late outcome. */
  #late: ((outcome: LateOutcome) => void) | undefined = undefined;

  constructor(
    private readonly lib: ComputeCore,
    private readonly scheduler: SlotScheduler,
    readonly op: string,
    readonly systemId: string | undefined,
    private readonly flags: number,
    private readonly call: OperationCall,
    /** What `call` uses; both stay referenced until HCS is done with the operation. */
    private target: unknown,
    private input: unknown,
    readonly timeoutMs: number | undefined,
    private readonly signal: AbortSignal | undefined,
    /** Called once when nothing of the call is left in HCS (closed, or never started). */
    private onDone: (() => void) | undefined,
  ) {}

  get lane(): string {
    return this.systemId ?? '';
  }

  get teardown(): boolean {
    return (this.flags & OP_TEARDOWN) !== 0;
  }

  get priority(): number {
    return this.flags >>> OP_PRIORITY_SHIFT;
  }

  /** The caller's promise (call once, before `begin`). */
  promise(): Promise<string | undefined> {
    // One shared executor instead of a closure per call.
    const promise = new Promise<string | undefined>(captureResolvers);
    this.#resolve = capturedResolve!;
    this.#reject = capturedReject!;
    capturedResolve = capturedReject = undefined;
    return promise;
  }

  /** Arms the deadline and the abort listener, then runs at once or waits for a slot. */
  begin(): void {
    operationPromises.n++;
    if (this.timeoutMs !== undefined) armDeadline(Math.max(0, this.timeoutMs), this);
    this.signal?.addEventListener('abort', this, { once: true });
    const lane = this.scheduler.acquire(this.lane, this.teardown);
    if (lane !== undefined) this.run(lane);
    else this.scheduler.enqueue(this);
  }

  /** In a slot: creates the HCS operation and issues the call. */
  run(lane: Lane): void {
    this.#state = RUNNING;
    this.#slot = lane;
    const lib = this.lib;
    try {
      const context = track(this, this.op, this.systemId);
      this.#context = context;
      const handle = lib.createOperation(context, completionCallback(lib));
      if (handle === null) {
        throw new HcsError({ op: this.op, systemId: this.systemId, hresult: HResult.E_OUTOFMEMORY, text: 'HcsCreateOperation failed' });
      }
      this.#handle = handle;
      const hr = this.call(lib, this.target, handle, this.input);
      if (hr < 0) {
        // The call itself failed: the operation never started and will not complete. Its result
        // (if any) carries the error document, as hcsshim reads it.
        const r = lib.getOperationResult(handle);
        throw hcsErrorFromResult(this.op, hr, r.hr < 0 ? r.document : undefined, this.systemId);
      }
    } catch (err) {
      try {
        this.#close();
      } finally {
        this.#settle(false, err);
      }
    }
  }

  /** HCS completed the operation (drained on the main thread): read its result, close it, answer. */
  complete(): void {
    if (this.#state !== RUNNING) return;
    let ok = true;
    let value: unknown;
    try {
      const r = this.lib.getOperationResult(this.#handle!);
      if (r.hr >= 0) value = r.document === '' ? undefined : r.document;
      else {
        ok = false;
        value = hcsErrorFromResult(this.op, r.hr, r.document, this.systemId);
      }
    } catch (err) {
      ok = false;
      value = err;
    }
    try {
      this.#close();
    } finally {
      // (A close that throws still answers the caller; the error goes to the drain, which drops it.)
      this.#settle(ok, value);
    }
  }

  /** The deadline passed. */
  onDeadline(): void {
    this.#giveUp('timeout');
  }

  /** The signal's abort event. */
  handleEvent(): void {
    this.#giveUp('abort');
  }

  /** Closes the HCS operation; its inputs stay referenced until here, after HCS is done with it. */
  #close(): void {
    this.#state = CLOSED;
    const handle = this.#handle;
    this.#handle = null;
    try {
      if (handle !== null) this.lib.closeOperation(handle);
      this.#dropInputs();
    } finally {
      // Even if the close threw: the pending entry, the slot and the handle's count are let go (the
      // inputs are then left to the GC, not reused).
      this.input = undefined;
      this.target = undefined;
      untrack(this.#context);
      const slot = this.#slot;
      this.#slot = undefined;
      if (slot !== undefined) this.scheduler.release(slot);
      this.#done();
    }
  }

  /** Nothing native uses the inputs any more: dropped, a reusable document buffer handed back. */
  #dropInputs(): void {
    const input = this.input;
    this.target = undefined;
    this.input = undefined;
    recycleInput(this.flags, input);
  }

  #done(): void {
    const onDone = this.onDone;
    this.onDone = undefined;
    onDone?.();
  }

  #settle(ok: boolean, value: unknown): void {
    const late = this.#late;
    if (late !== undefined) {
      this.#late = undefined;
      late(ok ? { applied: true, value: value as string | undefined } : { applied: false, error: value });
      return;
    }
    if (this.#answered) return;
    this.#answer();
    if (ok) this.#resolve((this.flags & OP_DISCARD) !== 0 ? undefined : (value as string | undefined));
    else this.#reject(value);
  }

  /** The caller's promise settles now: the deadline and the abort listener go. */
  #answer(): void {
    this.#answered = true;
    disarmDeadline(this);
    this.signal?.removeEventListener('abort', this);
    operationPromises.n--;
  }

  /**
   * The caller gives up at its deadline / abort: rejects at once. A queued call is withdrawn
   * (nothing reached HCS); a running one keeps its handle, inputs and slot until HCS completes it,
   * and the error carries its late outcome.
   */
  #giveUp(reason: CancelReason): void {
    if (this.#answered) return;
    if (this.#state === WAITING) {
      this.scheduler.withdraw(this);
      this.#state = CLOSED;
      this.#dropInputs();
      this.#answer();
      this.#done();
      this.#reject(cancelledError(this, this.timeoutMs, reason, false));
      return;
    }
    if (this.#state !== RUNNING) return;
    this.#answer();
    // Best effort and documented as E_NOTIMPL: HCS completes the operation either way.
    try {
      if (this.#handle !== null) this.lib.cancelOperation(this.#handle);
    } catch {
      // ignored, like its result
    }
    const late = new Promise<LateOutcome>((resolve) => (this.#late = resolve));
    this.#reject(withLateOutcome(cancelledError(this, this.timeoutMs, reason, true), late));
  }
}

// Its map survives full collections (core/retained-shapes.ts). A dummy: its constructor only sets fields.
retainShape(new Operation(undefined as unknown as ComputeCore, undefined as unknown as SlotScheduler, '', undefined, 0, undefined as unknown as OperationCall, undefined, undefined, undefined, undefined, undefined));

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
    const priority = priorityFlags(options?.priority);
    if (typeof priority !== 'number') return Promise.reject(priority);
    return this.operation(req.op, req.systemId, callRequest, req.call, req.inputs, options?.timeoutMs, options?.signal, (req.teardown === true ? OP_TEARDOWN : 0) | priority);
  }

  /**
   * `run` without a request object, for callers on the hot path (ComputeSystem): `call(lib,
   * target, operation, input)` issues the HCS call; `target` and `input` stay referenced until HCS
   * is done with the operation. `flags`: `OP_TEARDOWN`, `OP_DISCARD`, `OP_RECYCLE_INPUT`. `onDone`
   * is called exactly once, when nothing of this call is left in HCS (at once when the call is
   * refused or withdrawn).
   */
  operation(
    op: string,
    systemId: string | undefined,
    call: OperationCall,
    target: unknown,
    input: unknown,
    timeoutMs: number | undefined,
    signal: AbortSignal | undefined,
    flags: number,
    onDone?: () => void,
  ): Promise<string | undefined> {
    const invalid = badTimeout(timeoutMs);
    if (invalid !== undefined || signal?.aborted) {
      recycleInput(flags, input);
      onDone?.();
      return Promise.reject(invalid ?? cancelledError({ op, systemId }, timeoutMs, 'abort', false));
    }
    const operation = new Operation(this.#lib, this.#operations, op, systemId, flags, call, target, input, timeoutMs, signal, onDone);
    const promise = operation.promise();
    operation.begin();
    return promise;
  }

  /** Runs one blocking call (grant, revoke, open) under the same rules as `run`. */
  async runBlocking<T>(req: BlockingRequest<T>): Promise<T> {
    const invalid = badTimeout(req.options?.timeoutMs);
    if (invalid !== undefined) throw invalid;
    return pendingPromises.track('hcs-blocking-call', this.#schedule(this.#blocking, req, () => {
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
   * Queues a blocking call on `scheduler`; the caller's promise settles with its result, or at the
   * deadline / abort: before the start without anything reaching native code, after it with the
   * late outcome attached while the slot stays taken until the native call is done.
   */
  #schedule<T>(scheduler: SlotScheduler, req: { op: string; systemId?: string; options?: HcsCallOptions }, begin: () => Started<T>): Promise<T> {
    const deadline = new Deadline(req.options);
    const timeoutMs = req.options?.timeoutMs;
    if (deadline.reason) {
      deadline.dispose();
      return Promise.reject(cancelledError(req, timeoutMs, deadline.reason, false));
    }
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        deadline.dispose();
        fn();
      };
      const start = (lane: Lane): void => {
        const started = begin();
        void started.settled.then(() => scheduler.release(lane));
        started.result.then(
          (v) => finish(() => resolve(v)),
          (e: unknown) => finish(() => reject(e)),
        );
        deadline.onFire(() =>
          finish(() => {
            if (started.undoLate) {
              const undo = started.undoLate;
              void started.settled.then((o) => {
                if (o.applied) undo(o.value);
              });
            }
            reject(withLateOutcome(cancelledError(req, timeoutMs, deadline.reason!, true), started.settled));
          }),
        );
      };
      const lane = req.systemId ?? '';
      const slot = scheduler.acquire(lane, false);
      if (slot !== undefined) {
        start(slot);
        return;
      }
      const task: Task = { lane, teardown: false, priority: 0, overtaken: 0, queued: false, run: start };
      deadline.onFire(() => {
        if (scheduler.withdraw(task)) finish(() => reject(cancelledError(req, timeoutMs, deadline.reason!, false)));
      });
      scheduler.enqueue(task);
    });
  }
}

interface Started<T> {
  /** The caller's result. */
  result: Promise<T>;
  /** Settles (never rejects) when the native call is done and its slot may be reused. */
  settled: Promise<LateOutcome<T>>;
  undoLate?: (value: T) => void;
}

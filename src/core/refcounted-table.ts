import { UvmAggregateError, UvmError } from './errors.js';
import { ReleasableLease, type Lease } from './lease.js';
import { leakTracker, type TrackedTable } from './leak-tracker.js';
import { pendingPromises } from './pending-promises.js';
import { attempt } from './attempt.js';

/**
 * Lifecycle of one entry:
 *
 * ```
 *  acquire (new key)        create ok              last release           destroy ok
 * ───────────────► creating ─────────► live ───────────────► destroying ────────────► (gone)
 *                     │ create fails                              │ destroy fails
 *                     ▼                                           ▼
 *                  (gone; every waiter        release() again  teardown-failed
 *                   rejects with the error)   ◄───────────────────┘ (acquire → TEARDOWN_FAILED)
 * ```
 *
 * `reserve()` adds a state before `creating`: the key is placed (slot, name) synchronously and
 * nothing is sent until `commit()`; `cancel()` of the last reservation forgets it with no call.
 * With `keepAtZero`, the last release of a value the policy keeps moves it to `kept` (refcount 0,
 * still attached, reused by the next acquire) instead of destroying it; `purge()` forgets kept
 * entries once the VM is gone.
 */
export type EntryState = 'reserved' | 'creating' | 'live' | 'destroying' | 'teardown-failed' | 'kept';

/** A diagnostic snapshot of one entry. */
export interface EntryInfo<K, V> {
  key: K;
  state: EntryState;
  refCount: number;
  value: V | undefined;
  error?: unknown;
}

export interface RefCountedTableOptions<K, V> {
  /** Name used in errors and leak reports, e.g. `scsi-attach`. */
  name: string;
  /** Tears down a value after its last release. Rejecting leaves the entry in `teardown-failed`. */
  destroy: (value: V, key: K) => Promise<void>;
  /** Renders a key in errors and leak reports (default: `String(key)`). */
  describeKey?: (key: K) => string;
  /** True for a value that must stay attached at refcount 0 until the VM exits (`kept`). */
  keepAtZero?: (value: V, key: K) => boolean;
  /**
   * Frees what placing the value took (its slot, path, device), in the same step as the entry
   * leaves the table: after its teardown, after a failed creation that left nothing, on `purge()`.
   * So `entries()` never shows a slot the allocator has already handed to someone else.
   */
  forget?: (value: V, key: K) => void;
}

/**
 * What a policy's synchronous placement returns: the value with its slot/name taken, the effects
 * that make it real, and how to give the slot back if the reservation is cancelled first.
 */
export interface Placed<V> {
  readonly value: V;
  /**
   * The HCS calls. On rejection the table forgets the entry (and calls the table's `forget`). A
   * failure that left something behind resolves with a `Residue` instead: the table keeps the
   * entry in `teardown-failed` and the commit rejects with the residue's error.
   */
  commit(): Promise<void | Residue<V>>;
  /** Gives back what placing took when the reservation is cancelled before any commit. */
  cancel(): void;
}

/** One reference to a key taken synchronously; exactly one of `commit` or `cancel` must follow. */
export interface Reservation<V> {
  /** The placement; undefined only when the key was being torn down (it is placed at commit then). */
  readonly value: V | undefined;
  /** True when the key was already present (reserved, live or kept): no new slot was taken. */
  readonly shared: boolean;
  /**
   * Makes the value real (the first committer of a key runs the effects) and returns the lease.
   * An abort before the effects start cancels the reservation and nothing is sent; after they
   * start, the current effect finishes and is undone before this rejects with ABORTED.
   */
  commit(options?: AcquireOptions): Promise<Lease<V>>;
  /** Drops the reservation (no-op once committed). The last one of an uncommitted key frees it. */
  cancel(): void;
}

export interface AcquireOptions {
  /**
   * Stops waiting for a creation started by someone else (or by this call). The creation itself
   * goes on for the other waiters; this caller's reference is dropped once it settles.
   */
  signal?: AbortSignal;
}

/** Table creates and teardowns under way, counted as pending promises (no closure per call). */
const tableCreates = pendingPromises.counter('table-create');
const tableTeardowns = pendingPromises.counter('table-teardown');

/**
 * The outcome of a creation that failed and left something behind (e.g. the host half of a
 * combined add whose guest half failed, when undoing the host half failed too), returned by a
 * policy's `commit` / `create` as a value. The table keeps the key in `teardown-failed` with
 * `value` instead of forgetting it: it shows in `entries()`, acquires of the key are refused, and
 * `retryFailedTeardowns()` destroys it. The acquire or commit rejects with `error`.
 */
export class Residue<V> {
  constructor(
    readonly error: unknown,
    readonly value: V,
  ) {}
}

/** An uncommitted reservation's state: its entry, whether it was used, and its caller's view. */
interface Reserved<K, V, W, A> {
  entry: Entry<K, V>;
  done: boolean;
  view: ((value: V, arg?: A) => W) | undefined;
  arg: A | undefined;
}

/** Starts a placed value's effects. */
const commitPlaced = <V>(placed: Placed<V>): Promise<void | Residue<V>> => placed.commit();

/** A rejection handler that ignores the reason. */
const ignore = (): undefined => undefined;

interface Entry<K, V> {
  readonly key: K;
  state: EntryState | 'gone';
  refs: number;
  value: V | undefined;
  ready: Promise<V>;
  teardown: Promise<void> | undefined;
  error: unknown;
  /** While `reserved`: the policy's effects and cancel. */
  placed?: Placed<V>;
}

/**
 * One refcounted resource per key. The first `acquire` of a key creates the value; later acquires
 * share it; the last release destroys it. All bookkeeping is synchronous; a slow create or destroy
 * of one key never delays another key.
 *
 * Caller contract:
 * - If `acquire` rejects, the caller holds no reference and nothing was kept on its behalf.
 * - Every resolved `acquire` must be matched by one `lease.release()`; repeat calls are harmless.
 * - If a release rejects (destroy failed), call `release()` on the same lease again, or
 *   `retryFailedTeardowns()`, until it resolves; until then acquires of that key reject with
 *   TEARDOWN_FAILED instead of reusing a half-removed resource.
 */
export class RefCountedTable<K, V> implements TrackedTable {
  readonly name: string;
  readonly epoch = leakTracker.epoch;
  readonly #entries = new Map<K, Entry<K, V>>();
  readonly #destroy: (value: V, key: K) => Promise<void>;
  readonly #describeKey: (key: K) => string;
  readonly #keepAtZero: ((value: V, key: K) => boolean) | undefined;
  readonly #forget: ((value: V, key: K) => void) | undefined;

  constructor(options: RefCountedTableOptions<K, V>) {
    this.name = options.name;
    this.#destroy = options.destroy;
    this.#describeKey = options.describeKey ?? ((k) => String(k));
    this.#keepAtZero = options.keepAtZero;
    this.#forget = options.forget;
  }

  /** True when `key` is present in any state. */
  has(key: K): boolean {
    return this.#entries.has(key);
  }

  /**
   * Reserves one reference to `key` synchronously: an existing entry is shared, a new key is
   * placed by `place` (which may throw, e.g. NO_SLOT: then nothing is reserved). No I/O happens
   * until `commit()`. TEARDOWN_FAILED for a key whose teardown failed. A key being torn down is
   * placed again at commit time (after the teardown), so its slot depends on that timing.
   */
  reserve(key: K, place: (key: K) => Placed<V>): Reservation<V>;
  /**
   * The same, seen through `view`: the reservation's value and its lease's value are `view(value)`
   * (one lease and promise per commit, not a second wrapping the table's).
   */
  reserve<W>(key: K, place: (key: K) => Placed<V>, view: (value: V) => W): Reservation<W>;
  /** The same, with `arg` passed to `place` and `view` (a caller's functions made once, not a closure per reservation). */
  reserve<W, A>(key: K, place: (key: K, arg: A) => Placed<V>, view: (value: V, arg: A) => W, arg: A): Reservation<W>;
  reserve<W, A>(key: K, place: (key: K, arg?: A) => Placed<V>, view?: (value: V, arg?: A) => W, arg?: A): Reservation<W> {
    const existing = this.#entries.get(key);
    if (existing?.state === 'teardown-failed') throw this.#teardownFailed(existing);
    if (existing?.state === 'destroying') return this.#deferredReservation(key, place, view, arg);
    let entry: Entry<K, V>;
    const shared = existing !== undefined;
    if (existing) {
      if (existing.state === 'kept') existing.state = 'live';
      existing.refs += 1;
      entry = existing;
    } else {
      const placed = place(key, arg);
      entry = {
        key,
        state: 'reserved',
        refs: 1,
        value: placed.value,
        ready: undefined as unknown as Promise<V>,
        teardown: undefined,
        error: undefined,
        placed,
      };
      this.#set(key, entry);
    }
    const value = entry.value;
    const held: Reserved<K, V, W, A> = { entry, done: false, view, arg };
    return {
      value: (view === undefined || value === undefined ? value : view(value, arg)) as W | undefined,
      shared,
      // The table's methods bound to this reservation, not closures made per reservation: V8 keeps
      // optimized code only while a function object using it is alive (docs/performance.md,
      // "Session 11"). Not an async function: a pod commits hundreds, each one promise fewer.
      cancel: (this.#cancelReserved<W, A>).bind(this, held),
      commit: (this.#commitReserved<W, A>).bind(this, held),
    };
  }

  #cancelReserved<W, A>(held: Reserved<K, V, W, A>): void {
    if (held.done) return;
    held.done = true;
    this.#unreserve(held.entry);
  }

  #commitReserved<W, A>(held: Reserved<K, V, W, A>, options: AcquireOptions = {}): Promise<Lease<W>> {
    try {
      const entry = held.entry;
      if (held.done) throw new UvmError('INVALID_STATE', `${this.name} ${this.#describeKey(entry.key)}: reservation already used`);
      if (options.signal?.aborted) {
        held.done = true;
        this.#unreserve(entry);
        throw abortError(options.signal);
      }
      held.done = true;
      if (entry.state === 'gone') throw entry.error;
      if (entry.state === 'reserved') this.#commitPlaced(entry);
      return this.#settle(entry, options.signal, held.view, held.arg);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  /** True while `key` is being torn down or its teardown failed (see `whenTornDown`). */
  tearingDown(key: K): boolean {
    const state = this.#entries.get(key)?.state;
    return state === 'destroying' || state === 'teardown-failed';
  }

  /**
   * Resolves once `key` is not being torn down: true when it is gone or held (live, kept, being
   * placed or created), false when its teardown failed (it stays `teardown-failed` until retried).
   * For a caller that must not let go of what the key depends on while it may still exist.
   */
  async whenTornDown(key: K): Promise<boolean> {
    const entry = this.#entries.get(key);
    if (entry?.state === 'destroying') await entry.teardown!.catch(() => undefined);
    return this.#entries.get(key)?.state !== 'teardown-failed';
  }

  /** Forgets every `kept` entry (the VM they were attached to is gone). */
  purge(): void {
    for (const e of [...this.#entries.values()]) {
      if (e.state === 'kept') {
        e.state = 'gone';
        this.#delete(e);
        this.#forget?.(e.value as V, e.key);
      }
    }
  }

  /** Number of keys present in any state. */
  get size(): number {
    return this.#entries.size;
  }

  /** Acquires one reference to `key`, creating the value with `create` if the key is absent. */
  async acquire(key: K, create: (key: K) => Promise<V | Residue<V>>, options: AcquireOptions = {}): Promise<Lease<V>> {
    const { signal } = options;
    if (signal?.aborted) throw abortError(signal);
    let entry: Entry<K, V>;
    for (;;) {
      const existing = this.#entries.get(key);
      if (!existing) {
        entry = this.#create(key, create);
        break;
      }
      if (existing.state === 'teardown-failed') throw this.#teardownFailed(existing);
      if (existing.state === 'destroying') {
        await waitFor(existing.teardown!.catch(() => undefined), signal);
        continue;
      }
      if (existing.state === 'reserved') {
        // Reserved by someone else and not committed yet: this acquire commits it.
        this.#commitPlaced(existing);
      }
      if (existing.state === 'kept') existing.state = 'live';
      existing.refs += 1;
      entry = existing;
      break;
    }
    let value: V;
    try {
      value = entry.state === 'live' ? entry.value! : await waitFor(entry.ready, signal);
    } catch (err) {
      if (entry.state === 'creating' || entry.state === 'live') {
        // Aborted while the creation goes on: drop our reference once it settles.
        entry.ready.then(
          () => this.#drop(entry).catch(() => undefined),
          () => undefined,
        );
      }
      throw err;
    }
    return this.#lease(entry, value);
  }

  /** Retries the teardown of every entry in `teardown-failed`; rejects with all failures left. */
  async retryFailedTeardowns(): Promise<void> {
    const failed = [...this.#entries.values()].filter((e) => e.state === 'teardown-failed');
    const results = await Promise.allSettled(failed.map((e) => this.#teardown(e)));
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
    if (errors.length > 0) throw new UvmAggregateError('TEARDOWN_FAILED', `${this.name}: teardown failed`, errors);
  }

  /** A snapshot of every entry, for diagnostics and tests. */
  entries(): EntryInfo<K, V>[] {
    return [...this.#entries.values()].map((e) => ({
      key: e.key,
      state: e.state as EntryState,
      refCount: e.refs,
      value: e.value,
      ...(e.state === 'teardown-failed' ? { error: e.error } : {}),
    }));
  }

  /** The value of every entry that has one, in any state (no snapshot objects: for placement checks). */
  *values(): IterableIterator<V> {
    for (const e of this.#entries.values()) if (e.value !== undefined) yield e.value;
  }

  /**
   * The value a reservation of `key` would share now (an entry reserved, being created, live or
   * kept), if any: not one being torn down (a reservation then places it anew) or whose teardown
   * failed.
   */
  sharable(key: K): V | undefined {
    const e = this.#entries.get(key);
    return e === undefined || e.state === 'destroying' || e.state === 'teardown-failed' || e.state === 'gone' ? undefined : e.value;
  }

  /** The live value of `key`, if any. */
  peek(key: K): V | undefined {
    const e = this.#entries.get(key);
    return e?.state === 'live' ? e.value : undefined;
  }

  describeLive(): string[] {
    return [...this.#entries.values()].map((e) => `${this.#describeKey(e.key)} (${e.state}, refs=${e.refs})`);
  }

  #teardownFailed(entry: Entry<K, V>): UvmError {
    return new UvmError('TEARDOWN_FAILED', `${this.name} ${this.#describeKey(entry.key)}: an earlier teardown failed; release it again before reuse`, {
      cause: entry.error,
      details: { table: this.name, key: this.#describeKey(entry.key) },
    });
  }

  /** A reservation of a key being torn down: placed and committed once the teardown is over. */
  #deferredReservation<W, A>(
    key: K,
    place: (key: K, arg?: A) => Placed<V>,
    view: ((value: V, arg?: A) => W) | undefined,
    arg: A | undefined,
  ): Reservation<W> {
    let done = false;
    return {
      value: undefined,
      shared: false,
      cancel: () => {
        done = true;
      },
      commit: async (options: AcquireOptions = {}) => {
        if (done) throw new UvmError('INVALID_STATE', `${this.name} ${this.#describeKey(key)}: reservation already used`);
        done = true;
        if (options.signal?.aborted) throw abortError(options.signal);
        const existing = this.#entries.get(key);
        if (existing?.state === 'destroying') await existing.teardown!.catch(() => undefined);
        return (view === undefined ? this.reserve(key, place) : this.reserve(key, place, view, arg)).commit(options) as Promise<Lease<W>>;
      },
    };
  }

  /** Drops an uncommitted reservation's reference; the last one of a reserved key frees its slot. */
  #unreserve(entry: Entry<K, V>): void {
    if (entry.state === 'gone' || entry.state === 'teardown-failed') return;
    if (entry.state === 'reserved') {
      entry.refs -= 1;
      if (entry.refs === 0) {
        entry.state = 'gone';
        this.#delete(entry);
        entry.placed!.cancel();
      }
      return;
    }
    // Committed by another holder meanwhile: an ordinary reference.
    this.#drop(entry).catch(() => undefined);
  }

  /**
   * Waits for `entry` to settle and returns this caller's lease. An abort does not cut the wait
   * short: the running effect finishes, then this reference is released (awaited) and ABORTED thrown.
   */
  #settle<W, A>(entry: Entry<K, V>, signal: AbortSignal | undefined, view: ((value: V, arg?: A) => W) | undefined, arg: A | undefined): Promise<Lease<W>> {
    if (entry.state === 'live') return this.#settled(entry, signal, view, arg, entry.value as V);
    return entry.ready.then((this.#settled<W, A>).bind(this, entry, signal, view, arg));
  }

  /** `#settle` once the value is there: this caller's lease, or ABORTED once it is released again. */
  #settled<W, A>(
    entry: Entry<K, V>,
    signal: AbortSignal | undefined,
    view: ((value: V, arg?: A) => W) | undefined,
    arg: A | undefined,
    value: V,
  ): Promise<Lease<W>> {
    const lease = this.#lease(entry, (view === undefined ? value : view(value, arg)) as W);
    if (signal?.aborted) {
      // A failed teardown stays retryable in the table.
      return lease.release().then(
        () => Promise.reject(abortError(signal)),
        () => Promise.reject(abortError(signal)),
      );
    }
    return Promise.resolve(lease);
  }

  #create(key: K, create: (key: K) => Promise<V | Residue<V>>): Entry<K, V> {
    const entry: Entry<K, V> = {
      key,
      state: 'creating',
      refs: 1,
      value: undefined,
      ready: undefined as unknown as Promise<V>,
      teardown: undefined,
      error: undefined,
    };
    this.#set(key, entry);
    this.#start(entry, () => create(key));
    return entry;
  }

  /** Starts the effects of a `reserved` entry. */
  #commitPlaced(entry: Entry<K, V>): void {
    const placed = entry.placed!;
    this.#creating(entry);
    this.#await(entry, attempt(commitPlaced<V>, placed).then(this.#placedOutcome.bind(this, entry)));
  }

  /** A placed entry's commit outcome: a residue, or its value (the placed one unless commit gave another). */
  #placedOutcome(entry: Entry<K, V>, outcome: void | Residue<V>): V | Residue<V> {
    return outcome ?? (entry.value as V);
  }

  /** Runs the effects of `entry` (state `creating`): `live` on success, forgotten on failure, `teardown-failed` on a `Residue`. */
  #start(entry: Entry<K, V>, create: () => Promise<V | Residue<V>>): void {
    this.#creating(entry);
    this.#await(entry, attempt(create));
  }

  /**
   * Marks `entry` as being created, before its effects start: what their synchronous part does with
   * the same key (a reservation, an acquire) shares this creation instead of committing it again.
   */
  #creating(entry: Entry<K, V>): void {
    entry.state = 'creating';
    entry.placed = undefined;
    tableCreates.n++;
  }

  /** Makes `entry` (state `creating`) wait for `created`. (Bound methods, not closures per entry: see `reserve`.) */
  #await(entry: Entry<K, V>, created: Promise<V | Residue<V>>): void {
    entry.ready = created.then(this.#created.bind(this, entry), this.#createFailed.bind(this, entry));
    // Waiters observe the rejection; this keeps an abandoned creation from being "unhandled".
    entry.ready.catch(ignore);
  }

  #created(entry: Entry<K, V>, outcome: V | Residue<V>): V {
    tableCreates.n--;
    if (outcome instanceof Residue) {
      // Nobody holds it, but it exists: keep it until a retried teardown removes it.
      entry.refs = 0;
      entry.value = outcome.value;
      entry.state = 'teardown-failed';
      entry.error = outcome.error;
      throw outcome.error;
    }
    entry.value = outcome;
    entry.state = 'live';
    return outcome;
  }

  #createFailed(entry: Entry<K, V>, err: unknown): never {
    tableCreates.n--;
    entry.refs = 0;
    entry.state = 'gone';
    entry.error = err;
    this.#delete(entry);
    if (entry.value !== undefined) this.#forget?.(entry.value, entry.key);
    throw err;
  }

  /** The lease of one reference to `entry`, holding `value` (the entry's value, or a caller's view of it). */
  #lease<W>(entry: Entry<K, V>, value: W): Lease<W> {
    return new ReleasableLease(value, this.#releaseRef.bind(this, { entry, dropped: false }));
  }

  /** A lease's release: drops its reference once; called again (after a failure), resumes the teardown. */
  #releaseRef(ref: { entry: Entry<K, V>; dropped: boolean }): Promise<void> {
    const entry = ref.entry;
    if (!ref.dropped) {
      ref.dropped = true;
      return this.#drop(entry);
    }
    if (entry.state === 'teardown-failed') return this.#teardown(entry);
    if (entry.state === 'destroying') return entry.teardown!;
    return Promise.resolve();
  }

  #drop(entry: Entry<K, V>): Promise<void> {
    if (entry.refs <= 0) {
      return Promise.reject(new UvmError('INVALID_STATE', `${this.name}: reference count would go below zero`));
    }
    entry.refs -= 1;
    if (entry.refs > 0) return Promise.resolve();
    if (entry.state === 'live' && this.#keepAtZero?.(entry.value as V, entry.key)) {
      entry.state = 'kept';
      return Promise.resolve();
    }
    return this.#teardown(entry);
  }

  #teardown(entry: Entry<K, V>): Promise<void> {
    if (entry.state === 'destroying') return entry.teardown!;
    entry.state = 'destroying';
    entry.error = undefined;
    tableTeardowns.n++;
    const teardown = attempt(() => this.#destroy(entry.value as V, entry.key)).then(
      () => {
        tableTeardowns.n--;
        entry.state = 'gone';
        this.#delete(entry);
        this.#forget?.(entry.value as V, entry.key);
      },
      (err: unknown) => {
        tableTeardowns.n--;
        entry.state = 'teardown-failed';
        entry.error = err;
        throw new UvmError('TEARDOWN_FAILED', `${this.name} ${this.#describeKey(entry.key)}: teardown failed`, {
          cause: err,
          details: { table: this.name, key: this.#describeKey(entry.key) },
        });
      },
    );
    teardown.catch(() => undefined);
    entry.teardown = teardown;
    return teardown;
  }

  #set(key: K, entry: Entry<K, V>): void {
    this.#entries.set(key, entry);
    if (this.#entries.size === 1) leakTracker.markNonEmpty(this);
  }

  #delete(entry: Entry<K, V>): void {
    if (this.#entries.get(entry.key) !== entry) return;
    this.#entries.delete(entry.key);
    if (this.#entries.size === 0) leakTracker.markEmpty(this);
  }
}

/** The ABORTED error of `signal`. */
export function abortError(signal: AbortSignal): UvmError {
  return new UvmError('ABORTED', 'the operation was aborted', { cause: signal.reason });
}

/** Awaits `promise`, rejecting early with ABORTED when `signal` fires. */
export function waitFor<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(abortError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

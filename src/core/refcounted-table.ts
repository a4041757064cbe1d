import { UvmAggregateError, UvmError } from './errors.js';
import { ReleasableLease, type Lease } from './lease.js';
import { leakTracker, type TrackedTable } from './leak-tracker.js';
import { pendingPromises } from './pending-promises.js';

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
 */
export type EntryState = 'creating' | 'live' | 'destroying' | 'teardown-failed';

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
}

export interface AcquireOptions {
  /**
   * Stops waiting for a creation started by someone else (or by this call). The creation itself
   * goes on for the other waiters; this caller's reference is dropped once it settles.
   */
  signal?: AbortSignal;
}

const RESIDUE = Symbol.for('uvm-orchestrator.residue');

/**
 * Marks a creation failure that left something behind (e.g. the host half of a combined add whose
 * guest half failed, when undoing the host half failed too). The table then keeps the key in
 * `teardown-failed` with `residue` as its value instead of forgetting it: it shows in `entries()`,
 * acquires of the key are refused, and `retryFailedTeardowns()` destroys it. Returns `err`.
 */
export function withResidue<E, V>(err: E, residue: V): E {
  if (err !== null && typeof err === 'object') (err as Record<symbol, unknown>)[RESIDUE] = { residue };
  return err;
}

function residueOf<V>(err: unknown): { residue: V } | undefined {
  return err !== null && typeof err === 'object' ? ((err as Record<symbol, unknown>)[RESIDUE] as { residue: V } | undefined) : undefined;
}

interface Entry<K, V> {
  readonly key: K;
  state: EntryState | 'gone';
  refs: number;
  value: V | undefined;
  ready: Promise<V>;
  teardown: Promise<void> | undefined;
  error: unknown;
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

  constructor(options: RefCountedTableOptions<K, V>) {
    this.name = options.name;
    this.#destroy = options.destroy;
    this.#describeKey = options.describeKey ?? ((k) => String(k));
  }

  /** Number of keys present in any state. */
  get size(): number {
    return this.#entries.size;
  }

  /** Acquires one reference to `key`, creating the value with `create` if the key is absent. */
  async acquire(key: K, create: (key: K) => Promise<V>, options: AcquireOptions = {}): Promise<Lease<V>> {
    const { signal } = options;
    if (signal?.aborted) throw abortError(signal);
    let entry: Entry<K, V>;
    for (;;) {
      const existing = this.#entries.get(key);
      if (!existing) {
        entry = this.#create(key, create);
        break;
      }
      if (existing.state === 'teardown-failed') {
        throw new UvmError(
          'TEARDOWN_FAILED',
          `${this.name} ${this.#describeKey(key)}: an earlier teardown failed; release it again before reuse`,
          { cause: existing.error, details: { table: this.name, key: this.#describeKey(key) } },
        );
      }
      if (existing.state === 'destroying') {
        await waitFor(existing.teardown!.catch(() => undefined), signal);
        continue;
      }
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

  /** The live value of `key`, if any. */
  peek(key: K): V | undefined {
    const e = this.#entries.get(key);
    return e?.state === 'live' ? e.value : undefined;
  }

  describeLive(): string[] {
    return [...this.#entries.values()].map((e) => `${this.#describeKey(e.key)} (${e.state}, refs=${e.refs})`);
  }

  #create(key: K, create: (key: K) => Promise<V>): Entry<K, V> {
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
    entry.ready = pendingPromises.track('table-create', (async () => create(key))()).then(
      (value) => {
        entry.value = value;
        entry.state = 'live';
        return value;
      },
      (err: unknown) => {
        entry.refs = 0;
        const left = residueOf<V>(err);
        if (left) {
          // Nobody holds it, but it exists: keep it until a retried teardown removes it.
          entry.value = left.residue;
          entry.state = 'teardown-failed';
          entry.error = err;
        } else {
          entry.state = 'gone';
          this.#delete(entry);
        }
        throw err;
      },
    );
    // Waiters observe the rejection; this keeps an abandoned creation from being "unhandled".
    entry.ready.catch(() => undefined);
    return entry;
  }

  #lease(entry: Entry<K, V>, value: V): Lease<V> {
    let dropped = false;
    return new ReleasableLease(value, async () => {
      if (!dropped) {
        dropped = true;
        await this.#drop(entry);
      } else if (entry.state === 'teardown-failed') {
        await this.#teardown(entry);
      } else if (entry.state === 'destroying') {
        await entry.teardown;
      }
    });
  }

  #drop(entry: Entry<K, V>): Promise<void> {
    if (entry.refs <= 0) {
      return Promise.reject(new UvmError('INVALID_STATE', `${this.name}: reference count would go below zero`));
    }
    entry.refs -= 1;
    if (entry.refs > 0) return Promise.resolve();
    return this.#teardown(entry);
  }

  #teardown(entry: Entry<K, V>): Promise<void> {
    if (entry.state === 'destroying') return entry.teardown!;
    entry.state = 'destroying';
    entry.error = undefined;
    const teardown = pendingPromises.track('table-teardown', (async () => this.#destroy(entry.value as V, entry.key))()).then(
      () => {
        entry.state = 'gone';
        this.#delete(entry);
      },
      (err: unknown) => {
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

function abortError(signal: AbortSignal): UvmError {
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

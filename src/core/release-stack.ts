import { UvmAggregateError } from './errors.js';
import { retainShape } from './retained-shapes.js';

/** Anything that can be released (a Lease, a composite of leases, …). */
export interface Releasable {
  release(): Promise<void>;
}

export interface ReleaseStackOptions<T extends Releasable> {
  /**
   * Groups items into phases released one after another, lowest first; the items of one phase
   * are released concurrently (newest first in start order). Use it where the only ordering that
   * matters is between kinds of items, e.g. "guest overlay before the disks under it", so a
   * teardown takes as many round trips as it has phases instead of one per item.
   * Default: every item is its own phase, in LIFO order.
   *
   * With phases, a phase in which any release failed stops the later phases: they depend on it
   * (a disk cannot be unmounted while the overlay on it is still there), so their items stay on
   * the stack, untouched, for the next `releaseAll()`.
   */
  phase?: (item: T) => number;
}

/**
 * Leases pushed in acquisition order and released in reverse (LIFO), continuing past failures.
 * Used to roll back a half-built composition and as the teardown list of a container.
 *
 * `releaseAll()` rejects with a `UvmAggregateError` (code RELEASE_FAILED) naming every failure;
 * the items that failed stay on the stack, in order, so calling `releaseAll()` again retries
 * exactly those.
 */
export class ReleaseStack<T extends Releasable = Releasable> implements AsyncDisposable {
  #items: T[] = [];
  #running: Promise<void> | undefined;
  readonly #phase: ((item: T) => number) | undefined;

  constructor(options: ReleaseStackOptions<T> = {}) {
    this.#phase = options.phase;
  }

  /** Pushes an item and returns it, so `const lease = stack.push(await mgr.acquire(...))` reads well. */
  push<U extends T>(item: U): U {
    this.#items.push(item);
    return item;
  }

  /** Removes an item without releasing it (its owner released it). Returns false if absent. */
  remove(item: T): boolean {
    const i = this.#items.lastIndexOf(item);
    if (i < 0) return false;
    this.#items.splice(i, 1);
    return true;
  }

  get size(): number {
    return this.#items.length;
  }

  /** The items, oldest first. */
  items(): readonly T[] {
    return [...this.#items];
  }

  releaseAll(): Promise<void> {
    this.#running ??= this.#releaseAll().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  async #releaseAll(): Promise<void> {
    const errors: unknown[] = [];
    const failed = new Set<T>();
    const taken = this.#items;
    this.#items = [];
    for (const batch of this.#batches(taken)) {
      if (errors.length > 0 && this.#phase) {
        for (const item of batch) failed.add(item); // blocked by a failed earlier phase
        continue;
      }
      const results = await Promise.allSettled(batch.map((item) => item.release()));
      results.forEach((r, i) => {
        if (r.status === 'rejected') {
          errors.push(r.reason);
          failed.add(batch[i]!);
        }
      });
    }
    // Items pushed while releasing are released on the next call; failed ones keep their order.
    this.#items = [...taken.filter((item) => failed.has(item)), ...this.#items];
    if (errors.length > 0) {
      throw new UvmAggregateError('RELEASE_FAILED', `${errors.length} release(s) failed`, errors);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.releaseAll();
  }

  /** The release order: batches of items released together, newest first within a batch. */
  #batches(items: T[]): T[][] {
    const newestFirst = [...items].reverse();
    if (!this.#phase) return newestFirst.map((item) => [item]);
    const byPhase = new Map<number, T[]>();
    for (const item of newestFirst) {
      const p = this.#phase(item);
      const batch = byPhase.get(p);
      if (batch) batch.push(item);
      else byPhase.set(p, [item]);
    }
    return [...byPhase.keys()].sort((a, b) => a - b).map((p) => byPhase.get(p)!);
  }
}

// Its map survives full collections (core/retained-shapes.ts).
retainShape(new ReleaseStack());

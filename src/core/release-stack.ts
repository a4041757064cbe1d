import { UvmAggregateError } from './errors.js';

/** Anything that can be released (a Lease, a composite of leases, …). */
export interface Releasable {
  release(): Promise<void>;
}

/**
 * Leases pushed in acquisition order and released in reverse (LIFO), continuing past failures.
 * Used to roll back a half-built composition and as the teardown list of a container.
 *
 * `releaseAll()` rejects with a `UvmAggregateError` (code RELEASE_FAILED) naming every failure;
 * the items that failed stay on the stack, in order, so calling `releaseAll()` again retries
 * exactly those.
 */
export class ReleaseStack implements AsyncDisposable {
  #items: Releasable[] = [];
  #running: Promise<void> | undefined;

  /** Pushes an item and returns it, so `const lease = stack.push(await mgr.acquire(...))` reads well. */
  push<T extends Releasable>(item: T): T {
    this.#items.push(item);
    return item;
  }

  /** Removes an item without releasing it (its owner released it). Returns false if absent. */
  remove(item: Releasable): boolean {
    const i = this.#items.lastIndexOf(item);
    if (i < 0) return false;
    this.#items.splice(i, 1);
    return true;
  }

  get size(): number {
    return this.#items.length;
  }

  /** The items, oldest first. */
  items(): readonly Releasable[] {
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
    const failed: Releasable[] = [];
    while (this.#items.length > 0) {
      const item = this.#items.pop()!;
      try {
        await item.release();
      } catch (err) {
        errors.push(err);
        failed.unshift(item);
      }
    }
    // Items pushed while releasing are released on the next call; failed ones keep their order.
    this.#items = [...failed, ...this.#items];
    if (errors.length > 0) {
      throw new UvmAggregateError('RELEASE_FAILED', `${errors.length} release(s) failed`, errors);
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.releaseAll();
  }
}

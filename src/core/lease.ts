import { attempt } from './attempt.js';
import { UvmError } from './errors.js';
import { retainShape } from './retained-shapes.js';

/**
 * A handle on one reference to a shared resource.
 *
 * Contract: `release()` drops this reference exactly once. While a release is in flight or after it
 * succeeded, further calls return the same promise and never decrement twice. If a release
 * rejects, the resource is left in a state from which calling `release()` again resumes the
 * teardown where it stopped.
 */
export interface Lease<T> extends AsyncDisposable {
  readonly value: T;
  /** True once a release has completed successfully. */
  readonly released: boolean;
  release(): Promise<void>;
}

/** A Lease whose release runs a given (resumable) function with the idempotency rules above. */
export class ReleasableLease<T> implements Lease<T> {
  readonly #value: T;
  readonly #releaseFn: () => Promise<void>;
  #pending: Promise<void> | undefined;
  #released = false;

  /**
   * @param value what the holder of the lease uses.
   * @param releaseFn drops the reference; it is called again only after it rejected, and must
   *   then resume from where it failed.
   */
  constructor(value: T, releaseFn: () => Promise<void>) {
    this.#value = value;
    this.#releaseFn = releaseFn;
  }

  get value(): T {
    return this.#value;
  }

  get released(): boolean {
    return this.#released;
  }

  release(): Promise<void> {
    if (this.#pending) return this.#pending;
    // Bound methods, not closures per release (docs/performance.md, "Session 11").
    this.#pending = attempt(this.#releaseFn).then(this.#done.bind(this), this.#failed.bind(this));
    return this.#pending;
  }

  #done(): void {
    this.#released = true;
  }

  #failed(err: unknown): never {
    // Allow a retry: the next release() call runs the release function again.
    this.#pending = undefined;
    throw err;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /** Throws ALREADY_RELEASED when the lease was released. */
  assertLive(what = 'lease'): void {
    if (this.#released) throw new UvmError('ALREADY_RELEASED', `${what} was already released`);
  }
}

// Its map survives full collections (retained-shapes.ts).
retainShape(new ReleasableLease(undefined, () => Promise.resolve()));

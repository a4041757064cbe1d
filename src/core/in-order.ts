import { pendingPromises } from './pending-promises.js';

/**
 * Lets concurrent asynchronous calls finish one short synchronous step (e.g. "allocate a slot")
 * in the order the calls STARTED, while whatever comes before that step (a stat of the host
 * file) runs concurrently.
 *
 * Why: a manager that stats a layer and then takes the lowest free slot would otherwise hand out
 * slots in the order the stats happen to complete, so the same sequence of calls could produce
 * different guest paths from run to run. A caller waits only for earlier callers' pre-steps (local
 * file metadata), never for an HCS call.
 *
 * ```ts
 * const turn = this.#order.take();          // synchronously, when the call starts
 * try {
 *   const { size } = await hostFs.stat(path); // concurrent
 *   const slot = await turn.run(() => slots.allocate()); // in call order
 * } finally {
 *   turn.done();                            // always: lets later callers through
 * }
 * ```
 */
export class InOrder {
  #tail: Promise<void> = Promise.resolve();

  /** Takes the next place in line. Call `done()` on every path, `run` at most once. */
  take(): Turn {
    const previous = this.#tail;
    let release!: () => void;
    this.#tail = new Promise<void>((resolve) => (release = resolve));
    const settled = pendingPromises.open('in-order-turn');
    let finished = false;
    const done = (): void => {
      if (finished) return;
      finished = true;
      // Release only after every earlier place is done, so order holds even if this one skipped `run`.
      void previous.then(() => {
        release();
        settled();
      });
    };
    return {
      run: async <T>(step: () => T): Promise<T> => {
        await previous;
        try {
          return step();
        } finally {
          done();
        }
      },
      done,
    };
  }
}

/** A place in an `InOrder` line. */
export interface Turn {
  /** Runs `step` once every earlier place is done, then frees this place. */
  run<T>(step: () => T): Promise<T>;
  /** Frees this place without running a step (idempotent). */
  done(): void;
}

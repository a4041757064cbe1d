import { UvmError } from './errors.js';
import { retainShape } from './retained-shapes.js';

/** Codes a reservation throws when the UVM cannot take the item now (not bad input). */
const UNFIT_CODES = ['NO_SLOT', 'MOUNT_CONFLICT', 'TEARDOWN_FAILED'] as const;

/** Why an item could not be reserved (a plan that does not fit). */
export interface Unfit {
  code: (typeof UNFIT_CODES)[number];
  message: string;
  details: Record<string, unknown>;
}

/**
 * The reservations of one allocation, taken in order and cancelled together (newest first, so
 * counters and slot allocators end as they began). Two modes:
 * - `allocate`: the first failure cancels everything taken and is thrown.
 * - `plan`: an item the UVM cannot take now (NO_SLOT, MOUNT_CONFLICT, TEARDOWN_FAILED) is skipped
 *   (`take` returns undefined) and its reason kept in `unfit`; the items after it are still
 *   reserved, so the plan shows every placement that is possible. Bad input still throws.
 */
export class ReservationBatch {
  readonly #taken: { cancel(): void }[] = [];
  /** Plan mode: the items that could not be reserved, in order. */
  readonly unfit: Unfit[] = [];

  constructor(readonly mode: 'allocate' | 'plan' = 'allocate') {}

  /** Reserves one item (see the modes); the batch cancels it with the others. */
  take<R extends { cancel(): void }>(reserve: () => R): R | undefined {
    try {
      return this.add(reserve());
    } catch (err) {
      if (this.mode === 'plan' && UvmError.is(err, ...UNFIT_CODES)) {
        this.unfit.push({ code: err.code as Unfit['code'], message: err.message, details: { ...err.details } });
        return undefined;
      }
      throw err;
    }
  }

  /** Adds a reservation already taken (nothing left to fail); the batch cancels it with the others. */
  add<R extends { cancel(): void }>(reservation: R): R {
    this.#taken.push(reservation);
    return reservation;
  }

  /** Runs `reserveAll` (which calls `take`); if it throws, everything taken is cancelled. */
  run<T>(reserveAll: () => T): T {
    try {
      return reserveAll();
    } catch (err) {
      this.cancel();
      throw err;
    }
  }

  /** Cancels every reservation taken (newest first); a committed one ignores it. */
  cancel(): void {
    for (const r of this.#taken.splice(0).reverse()) r.cancel();
  }
}

// Its map survives full collections (core/retained-shapes.ts).
retainShape(new ReservationBatch());

/** In allocate mode `take` never returns undefined: this narrows it (INVALID_STATE otherwise). */
export function taken<R>(r: R | undefined, what: string): R {
  if (r === undefined) throw new UvmError('INVALID_STATE', `${what} was not reserved`);
  return r;
}

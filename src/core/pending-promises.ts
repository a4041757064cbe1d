/**
 * Counts, by kind, the promises the library creates and must settle itself: an HCS operation
 * waiting for its completion callback, a call on a libuv pool thread, a dispose waiting for the
 * operations in flight, a refcount table's creation or teardown. A shim runs for months: none of these may be
 * left pending once the work it waits for is over. The soak test asserts the total is back to its
 * starting value (docs/reliability.md). Reachable only from `uvm-orchestrator/testing`.
 *
 * Costs one Map update when such a promise is created and one when it settles.
 */
const counts = new Map<string, number>();
let total = 0;
/** Counters handed out by `pendingPromises.counter`, by kind. */
const counters = new Map<string, PendingCounter>();

/** A count of pending promises of one kind that its owner updates directly (`n++` / `n--`). */
export interface PendingCounter {
  n: number;
}

function add(kind: string, delta: number): void {
  const n = (counts.get(kind) ?? 0) + delta;
  if (n === 0) counts.delete(kind);
  else counts.set(kind, n);
  total += delta;
}

/** The library-created promises not settled yet, by kind (HCS operations, pool calls, waiters). */
export const pendingPromises = {
  /**
   * Counts one pending promise of `kind` and returns the function to call once it settles
   * (idempotent: a second call does nothing).
   */
  open(kind: string): () => void {
    add(kind, 1);
    let open = true;
    return () => {
      if (!open) return;
      open = false;
      add(kind, -1);
    };
  },

  /** `promise`, counted as pending of `kind` until it settles. */
  track<T>(kind: string, promise: Promise<T>): Promise<T> {
    return promise.finally(pendingPromises.open(kind));
  },

  /**
   * The counter of `kind` for a hot path (one per kind, shared): `n++` when such a promise is
   * created, `n--` when it settles, no Map update per call. Counted in `total` and `byKind()`.
   */
  counter(kind: string): PendingCounter {
    let c = counters.get(kind);
    if (c === undefined) {
      c = { n: 0 };
      counters.set(kind, c);
    }
    return c;
  },

  /** Library-created promises not settled yet. */
  get total(): number {
    let n = total;
    for (const c of counters.values()) n += c.n;
    return n;
  },

  /** The same, by kind (kinds with none pending are absent). */
  byKind(): Record<string, number> {
    const out: Record<string, number> = Object.fromEntries(counts);
    for (const [kind, c] of counters) if (c.n !== 0) out[kind] = (out[kind] ?? 0) + c.n;
    return out;
  },
};

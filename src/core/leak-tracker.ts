/**
 * Test support: remembers which refcount tables hold entries, so a root mocha hook can fail a
 * passing test that left something attached in a table it created. Costs one Set insert/delete
 * when a table goes from empty to non-empty and back.
 */
export interface TrackedTable {
  readonly name: string;
  readonly epoch: number;
  /** Human-readable descriptions of the entries still present. */
  describeLive(): string[];
}

let currentEpoch = 0;
const nonEmpty = new Set<TrackedTable>();

export const leakTracker = {
  /** Starts a new epoch (a new test); tables created from now on carry it. */
  nextEpoch(): number {
    currentEpoch += 1;
    return currentEpoch;
  },
  get epoch(): number {
    return currentEpoch;
  },
  markNonEmpty(table: TrackedTable): void {
    nonEmpty.add(table);
  },
  markEmpty(table: TrackedTable): void {
    nonEmpty.delete(table);
  },
  /** Tables created in `epoch` that still hold entries. */
  liveTablesOf(epoch: number): TrackedTable[] {
    return [...nonEmpty].filter((t) => t.epoch === epoch);
  },
};

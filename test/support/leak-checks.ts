/**
 * Extra per-test leak checks. A test (or a fixture) registers a check that returns the
 * problems it finds (empty when clean); the root hook runs and clears them after each test.
 */
import { leakTracker } from '../../src/core/leak-tracker.js';

export type LeakCheck = () => string[] | Promise<string[]>;

let checks: LeakCheck[] = [];

/** Registers a check for the current test; it runs once, after the test, if the test passed. */
export function checkAfterTest(check: LeakCheck): void {
  checks.push(check);
}

export async function runLeakChecks(): Promise<string[]> {
  const current = checks;
  checks = [];
  const out: string[] = [];
  for (const check of current) {
    try {
      out.push(...(await check()));
    } catch (err) {
      out.push(`leak check threw: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return out;
}

/**
 * For a test that simulates a process dying (a UtilityVm `close()`d with leases still held, whose
 * next owner re-opens the journal): tables built from now on in this test are not checked by the
 * root table check (the dead process's bookkeeping can never be released). Register an HCS-level
 * check (`checkAfterTest`) instead: what is attached is what must end empty.
 */
export function detachTablesFromLeakCheck(): void {
  leakTracker.nextEpoch();
}

/**
 * Extra per-test leak checks. A test (or a fixture) registers a check that returns the
 * problems it finds (empty when clean); the root hook runs and clears them after each test.
 */
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

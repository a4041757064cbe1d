// Root mocha hooks: quiet logs, and the leak check after every test (a passing test that left
// entries in a refcount table it created, or anything registered in `afterEachChecks`, fails).
import 'reflect-metadata';
import { leakTracker } from '../src/core/leak-tracker.js';
import { runLeakChecks } from './support/leak-checks.js';

if (!process.env.UVM_LOG_LEVEL) process.env.UVM_LOG_LEVEL = 'silent';

let epoch = 0;

export const mochaHooks = {
  beforeEach(): void {
    epoch = leakTracker.nextEpoch();
  },
  async afterEach(this: Mocha.Context): Promise<void> {
    // Registered checks always run (they may also clean up), but only a passing test is failed by them.
    const checked = await runLeakChecks();
    if (this.currentTest?.state !== 'passed') return;
    const leaked = leakTracker.liveTablesOf(epoch);
    const problems: string[] = leaked.map((t) => `table ${t.name} still holds: ${t.describeLive().join(', ')}`);
    problems.push(...checked);
    if (problems.length > 0) {
      // A failing root hook is reported as a failure of this test's "after each" hook.
      throw new Error(`leak check failed after "${this.currentTest.fullTitle()}":\n  ${problems.join('\n  ')}`);
    }
  },
};

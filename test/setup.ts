// Root mocha hooks: quiet logs, and the leak check after every test (a passing test that left
// entries in a refcount table it created, or anything registered in `afterEachChecks`, fails).
import 'reflect-metadata';
import { leakTracker } from '../src/core/leak-tracker.js';
import { runLeakChecks } from './support/leak-checks.js';
import { loadedComputeCore } from '../src/hcs/computecore.js';
import { simulatorStats } from '../src/hcs/simulator-controls.js';

/**
 * Suites (test file paths) allowed to query the simulator's device inventory (SimulatorState)
 * from library code. Real HCS has no such property, so no library code path may ask for it:
 * `undefined` = every suite enforces the rule (recovery works from its journal alone). A suite
 * that must be exempted while a library path still queries it goes here, e.g. `/recovery/`.
 */
const INVENTORY_QUERIES_ALLOWED_IN = undefined as RegExp | undefined;

/** Library (not test-helper) inventory queries so far, when the simulator is loaded. */
function libraryInventoryQueries(): number | undefined {
  const lib = loadedComputeCore();
  return lib?.isSimulator ? simulatorStats().InventoryQueries.Library : undefined;
}

let inventoryQueriesBefore = 0;

if (!process.env.UVM_LOG_LEVEL) process.env.UVM_LOG_LEVEL = 'silent';

let epoch = 0;

export const mochaHooks = {
  beforeEach(): void {
    epoch = leakTracker.nextEpoch();
    inventoryQueriesBefore = libraryInventoryQueries() ?? 0;
  },
  async afterEach(this: Mocha.Context): Promise<void> {
    // Registered checks always run (they may also clean up), but only a passing test is failed by them.
    const checked = await runLeakChecks();
    if (this.currentTest?.state !== 'passed') return;
    const leaked = leakTracker.liveTablesOf(epoch);
    const problems: string[] = leaked.map((t) => `table ${t.name} still holds: ${t.describeLive().join(', ')}`);
    problems.push(...checked);
    const queries = (libraryInventoryQueries() ?? 0) - inventoryQueriesBefore;
    if (queries > 0 && !INVENTORY_QUERIES_ALLOWED_IN?.test(this.currentTest.file ?? '')) {
      problems.push(`library code queried the simulator's device inventory (SimulatorState) ${queries} time(s); real HCS has no such property`);
    }
    if (problems.length > 0) {
      // A failing root hook is reported as a failure of this test's "after each" hook.
      throw new Error(`leak check failed after "${this.currentTest.fullTitle()}":\n  ${problems.join('\n  ')}`);
    }
  },
};

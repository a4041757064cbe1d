// The soak (issue 16; test/support/soak.ts): short in `npm test` (120 containers, 20 UVMs), full in
// `npm run test:soak` (10,000 containers, 1,000 UVMs). Seeded: UVM_SEED=<n> replays a run.
import { expect } from 'chai';
import { rmSync } from 'node:fs';
import { runSoak } from '../support/soak.js';
import { runSeed, SOAK, tempDir } from './fault-support.js';

const MiB = 1024 * 1024;
/** Heap growth allowed between the start and the end (after forced GCs): noise, not a per-container cost. */
const HEAP_BOUND = 8 * MiB;
/** Open fds allowed above the start. */
const FD_BOUND = 4;
/**
 * Threads allowed above the start: the simulator keeps up to 16 idle worker threads
 * (native/src/scheduler.cpp, more exit after 5 s idle), a pool the warm-up may not have filled.
 */
const THREAD_BOUND = 16;

describe('integration: soak (a shim that runs for months)', function () {
  this.timeout(SOAK ? 3_600_000 : 120_000);
  const containers = SOAK ? 10_000 : 120;
  const uvms = SOAK ? 1_000 : 20;
  let root: string | undefined;

  afterEach(() => {
    if (root) rmSync(root, { recursive: true, force: true });
    root = undefined;
  });

  it(`${containers} containers in one UVM, then ${uvms} UVMs in sequence: everything back to its starting size`, async function () {
    const seed = runSeed();
    root = tempDir('uvm-soak-');
    const r = await runSoak({ containers, uvms, root, seed, log: SOAK ? (l) => console.log(`      ${l}`) : undefined });
    const mb = (b: number): string => (b / MiB).toFixed(1);
    console.log(
      `      soak: seed=${seed} (replay with UVM_SEED=${seed}) containers=${containers} uvms=${uvms} ${JSON.stringify(r.counts)} ` +
        `heap ${mb(r.start.heapBytes)}→${mb(r.afterContainers.heapBytes)}→${mb(r.end.heapBytes)} MiB, fds ${r.start.fds}→${r.end.fds}, ` +
        `threads ${r.start.threads}→${r.end.threads}, ${Math.round(r.durationMs)} ms`,
    );
    expect(r.problems.length, `${r.problems.length} problems (seed ${seed}):\n${r.problems.slice(0, 20).join('\n')}\n`).to.equal(0);
    // The run did what it says: containers allocated, aborted, failed and hot-plugged, UVMs cycled.
    expect(r.counts.allocated, 'containers allocated').to.be.greaterThan(containers / 2);
    expect(r.counts.uvms, 'UVMs created').to.equal(uvms);
    expect(r.counts.hotAdds, 'hot adds').to.be.greaterThan(0);
    expect(r.counts.journaledUvms, 'UVMs with a journal').to.be.greaterThan(0);
    expect(r.end.pendingPromises, 'library promises pending').to.be.at.most(r.start.pendingPromises);
    expect(r.end.pendingOperations, 'HCS operations pending').to.be.at.most(r.start.pendingOperations);
    expect(r.end.heapBytes - r.start.heapBytes, 'heap growth (bytes)').to.be.below(HEAP_BOUND);
    expect(r.end.fds - r.start.fds, 'open fds growth').to.be.at.most(FD_BOUND);
    expect(r.end.threads - r.start.threads, 'threads growth').to.be.at.most(THREAD_BOUND);
  });
});

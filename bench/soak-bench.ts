// bench/soak: the soak of test/support/soak.ts (issue 16) at full size — one UVM allocating and
// releasing 10,000 containers, then 1,000 UVMs created and terminated in sequence, on the simulator
// through the FFI — and the process's figures before and after (heap after a forced GC, open fds,
// threads). Prints one line:
//   soak: containers=10000 heap_start_mb=… heap_end_mb=… fds_start=… fds_end=… threads_start=… threads_end=…
// then the details (UVMs, failures injected, figures after the container phase, time).
//
// Env: SOAK_CONTAINERS (10000), SOAK_UVMS (1000), SOAK_SEED (derived from the clock).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runSoak } from '../test/support/soak.js';

const env = (name: string, def: number): number => (process.env[name] ? Number(process.env[name]) : def);

export async function run(): Promise<void> {
  const containers = env('SOAK_CONTAINERS', 10_000);
  const uvms = env('SOAK_UVMS', 1_000);
  const seed = env('SOAK_SEED', (Date.now() ^ (process.pid << 16)) >>> 0);
  const root = mkdtempSync(join(tmpdir(), 'uvm-soak-bench-'));
  try {
    const r = await runSoak({ containers, uvms, root, seed });
    const mb = (b: number): string => (b / (1024 * 1024)).toFixed(1);
    console.log(
      `soak: containers=${containers} heap_start_mb=${mb(r.start.heapBytes)} heap_end_mb=${mb(r.end.heapBytes)} ` +
        `fds_start=${r.start.fds} fds_end=${r.end.fds} threads_start=${r.start.threads} threads_end=${r.end.threads}`,
    );
    console.log(
      `  uvms=${uvms} seed=${seed} heap_after_containers_mb=${mb(r.afterContainers.heapBytes)} ` +
        `pending_promises=${r.start.pendingPromises}->${r.end.pendingPromises} time_s=${(r.durationMs / 1000).toFixed(1)} ${JSON.stringify(r.counts)}`,
    );
    if (r.problems.length > 0) {
      console.log(`  PROBLEMS (${r.problems.length}):\n    ${r.problems.slice(0, 20).join('\n    ')}`);
      process.exitCode = 1;
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

// `npm run bench journal`: what the recovery journal (write-ahead, docs/recovery.md) costs. The pod
// of bench/pod-bench.ts (same POD_* env) is started and stopped with and without a journal (in the
// OS temp dir, fsync'd), alternating, JOURNAL_ROUNDS (3) times each after a warm-up; medians are compared. Prints
// `journal: plain_start_ms=… journaled_start_ms=… ratio=… plain_stop_ms=… journaled_stop_ms=…
// stop_ratio=…`; target ratio ≤ 1.05 (the journal must not move the pod bench by more than 5%).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makePod, runPod, type RunResult } from './pod-bench.js';
import { median } from './stats.js';

const ROUNDS = process.env.JOURNAL_ROUNDS ? Number(process.env.JOURNAL_ROUNDS) : 3;
const TARGET_RATIO = 1.05;

export async function run(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'uvm-journal-bench-'));
  try {
    const pod = makePod(root);
    // Warm-up (JIT, file caches), not counted.
    await runPod(root, pod, 64, 'warmup', true);
    const plain: RunResult[] = [];
    const journaled: RunResult[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      plain.push(await runPod(root, pod, 64, `plain-${i}`));
      journaled.push(await runPod(root, pod, 64, `journaled-${i}`, true));
    }
    const m = (rs: RunResult[], k: 'startMs' | 'stopMs'): number => median(rs.map((r) => r[k]));
    const [ps, js, pt, jt] = [m(plain, 'startMs'), m(journaled, 'startMs'), m(plain, 'stopMs'), m(journaled, 'stopMs')];
    console.log(
      `journal: plain_start_ms=${ps.toFixed(0)} journaled_start_ms=${js.toFixed(0)} ratio=${(js / ps).toFixed(3)} ` +
        `plain_stop_ms=${pt.toFixed(0)} journaled_stop_ms=${jt.toFixed(0)} stop_ratio=${(jt / pt).toFixed(3)} ` +
        `rounds=${ROUNDS} target_ratio=${TARGET_RATIO}`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

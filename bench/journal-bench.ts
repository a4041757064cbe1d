// `npm run bench journal`: what the recovery journal (write-ahead, docs/recovery.md) costs. The pod
// of bench/pod-bench.ts (same POD_* env) is started and stopped with and without a journal (in the
// OS temp dir, fsync'd), in pairs, JOURNAL_ROUNDS (7) pairs after a warm-up, the order within a pair
// alternating (plain first, then journaled first) so that a drift of the machine's load weighs on
// both. Prints `journal: plain_start_ms=… journaled_start_ms=… ratio=… pair_ratio=… plain_stop_ms=…
// journaled_stop_ms=… stop_ratio=… pair_stop_ratio=… load=…`: `ratio` compares the medians,
// `pair_ratio` is the median of the per-pair ratios (less sensitive to a busy moment); `load` is the
// 1-minute load average before and after (the machine is shared). Target ratio ≤ 1.05 (the journal
// must not move the pod bench by more than 5%).
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DRIVER_SLOTS, makePod, runPod, type RunResult } from './pod-bench.js';
import { median } from './stats.js';

const ROUNDS = process.env.JOURNAL_ROUNDS ? Number(process.env.JOURNAL_ROUNDS) : 7;
const TARGET_RATIO = 1.05;

export async function run(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'uvm-journal-bench-'));
  try {
    const pod = makePod(root);
    const loadBefore = loadavg()[0];
    // Warm-up (JIT, file caches), not counted.
    await runPod(root, pod, DRIVER_SLOTS, 'warmup', true);
    await runPod(root, pod, DRIVER_SLOTS, 'warmup-plain');
    const plain: RunResult[] = [];
    const journaled: RunResult[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const runPlain = async (): Promise<void> => void plain.push(await runPod(root, pod, DRIVER_SLOTS, `plain-${i}`));
      const runJournaled = async (): Promise<void> => void journaled.push(await runPod(root, pod, DRIVER_SLOTS, `journaled-${i}`, true));
      if (i % 2 === 0) {
        await runPlain();
        await runJournaled();
      } else {
        await runJournaled();
        await runPlain();
      }
    }
    const m = (rs: RunResult[], k: 'startMs' | 'stopMs'): number => median(rs.map((r) => r[k]));
    const pairs = (k: 'startMs' | 'stopMs'): number => median(plain.map((p, i) => journaled[i]![k] / p[k]));
    const [ps, js, pt, jt] = [m(plain, 'startMs'), m(journaled, 'startMs'), m(plain, 'stopMs'), m(journaled, 'stopMs')];
    console.log(
      `journal: plain_start_ms=${ps.toFixed(0)} journaled_start_ms=${js.toFixed(0)} ratio=${(js / ps).toFixed(3)} pair_ratio=${pairs('startMs').toFixed(3)} ` +
        `plain_stop_ms=${pt.toFixed(0)} journaled_stop_ms=${jt.toFixed(0)} stop_ratio=${(jt / pt).toFixed(3)} pair_stop_ratio=${pairs('stopMs').toFixed(3)} ` +
        `rounds=${ROUNDS} target_ratio=${TARGET_RATIO} load=${loadBefore.toFixed(1)}→${loadavg()[0].toFixed(1)}`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** Small helpers shared by the benchmarks: medians of repeated samples, formatting, CPU time. */
import { readFileSync } from 'node:fs';

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs `fn` `rounds` times and returns the median of what it returns. */
export async function medianOf(rounds: number, fn: () => Promise<number> | number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) samples.push(await fn());
  return median(samples);
}

export function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells.map((r) => r.map((c, i) => c.padStart(widths[i])).join('  ')).join('\n');
}

/**
 * CPU time the main thread has used (ns), from the scheduler's per-thread statistics in /proc
 * (Linux); undefined elsewhere. Time on CPU whatever the machine's load (a wall time on a loaded
 * machine mostly measures the other processes).
 */
export function mainThreadCpuNs(): number | undefined {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return undefined;
  }
}

// bench/core: cost of the refcount core. "hit" = acquire + release of a key that stays live
// (another lease holds it); "fresh" = acquire + release of a new key with no-op create/destroy
// (a create and a destroy each time). Measured with N other live entries in the table.
import { RefCountedTable } from '../src/core/refcounted-table.js';
import type { Lease } from '../src/core/lease.js';
import { median, table } from './stats.js';

const ROUNDS = 7;
const OPS = 20_000;

async function measure(live: number): Promise<{ hit: number; fresh: number }> {
  const t = new RefCountedTable<string, number>({ name: 'bench', destroy: async () => undefined });
  const holders: Lease<number>[] = [];
  for (let i = 0; i < live; i++) holders.push(await t.acquire(`live-${i}`, async () => i));
  const hits: number[] = [];
  const freshes: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let start = process.hrtime.bigint();
    for (let i = 0; i < OPS; i++) {
      const lease = await t.acquire(`live-${i % live}`, async () => -1);
      await lease.release();
    }
    hits.push(Number(process.hrtime.bigint() - start) / OPS);
    start = process.hrtime.bigint();
    for (let i = 0; i < OPS; i++) {
      const lease = await t.acquire(`fresh-${r}-${i}`, async () => i);
      await lease.release();
    }
    freshes.push(Number(process.hrtime.bigint() - start) / OPS);
  }
  for (const h of holders) await h.release();
  return { hit: median(hits), fresh: median(freshes) };
}

export async function run(): Promise<void> {
  await measure(10); // warm-up
  const rows: (string | number)[][] = [];
  for (const live of [10, 1_000, 10_000]) {
    const { hit, fresh } = await measure(live);
    rows.push([live, hit.toFixed(0), fresh.toFixed(0)]);
  }
  console.log(`median of ${ROUNDS} rounds × ${OPS} ops (targets: hit ≤ 2000 ns, fresh ≤ 20000 ns, flat across sizes)`);
  console.log(table(['live entries', 'hit ns/op', 'fresh ns/op'], rows));
}

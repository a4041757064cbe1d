import { expect } from 'chai';
import fc from 'fast-check';
import { RefCountedTable } from '../../../src/core/refcounted-table.js';
import type { Lease } from '../../../src/core/lease.js';

/** Waits `n` macrotask turns: delays that interleave deterministically for a given schedule. */
async function ticks(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
}

interface Op {
  key: 'a' | 'b' | 'c';
  kind: 'acquire' | 'release';
  start: number;
  delay: number;
  fail: boolean;
}

const opArb: fc.Arbitrary<Op> = fc.record({
  key: fc.constantFrom('a' as const, 'b' as const, 'c' as const),
  kind: fc.constantFrom('acquire' as const, 'release' as const),
  start: fc.nat(12),
  delay: fc.nat(4),
  fail: fc.boolean().chain((b) => (b ? fc.boolean() : fc.constant(false))), // ~25% failures
});

describe('RefCountedTable (model-based, random interleavings)', () => {
  it('never creates a key twice at once, never goes negative, and balances at quiescence', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), async (ops) => {
        const alive = new Map<string, number>(); // creating or created, not yet destroyed
        let creates = 0;
        let destroys = 0;
        let failuresOn = true;
        const destroyFail = new Map<string, boolean>();
        const table = new RefCountedTable<string, string>({
          name: 'model',
          destroy: async (_v, key) => {
            await ticks(1);
            if (failuresOn && destroyFail.get(key)) {
              destroyFail.set(key, false);
              throw new Error('destroy failed');
            }
            alive.set(key, (alive.get(key) ?? 0) - 1);
            destroys++;
          },
        });
        const held = new Map<string, Lease<string>[]>();
        const failedReleases: Lease<string>[] = [];
        const checkInvariants = (): void => {
          for (const e of table.entries()) expect(e.refCount).to.be.at.least(0);
          for (const [k, n] of alive) expect(n, `alive ${k}`).to.be.within(0, 1);
        };

        await Promise.all(
          ops.map(async (op) => {
            await ticks(op.start);
            if (op.kind === 'acquire') {
              try {
                const lease = await table.acquire(op.key, async (key) => {
                  expect(alive.get(key) ?? 0, `second concurrent create of ${key}`).to.equal(0);
                  alive.set(key, 1);
                  await ticks(op.delay);
                  if (op.fail) {
                    alive.set(key, 0);
                    throw new Error('create failed');
                  }
                  creates++;
                  return `${key}${creates}`;
                });
                held.set(op.key, [...(held.get(op.key) ?? []), lease]);
              } catch {
                // create failure or TEARDOWN_FAILED: the caller holds nothing
              }
            } else {
              const list = held.get(op.key) ?? [];
              const lease = list.pop();
              if (!lease) return;
              destroyFail.set(op.key, op.fail);
              try {
                await lease.release();
              } catch {
                failedReleases.push(lease);
              }
            }
            checkInvariants();
          }),
        );

        // Quiescent: what was created and not destroyed is exactly what the table holds.
        checkInvariants();
        expect(creates - destroys).to.equal(table.size);
        const heldCount = [...held.values()].reduce((n, l) => n + l.length, 0);
        expect(table.entries().reduce((n, e) => n + e.refCount, 0)).to.equal(heldCount);

        failuresOn = false;
        for (const lease of failedReleases) await lease.release();
        for (const list of held.values()) for (const lease of list) await lease.release();
        expect(table.size).to.equal(0);
        expect(creates).to.equal(destroys);
      }),
      { numRuns: 150 },
    );
  });
});

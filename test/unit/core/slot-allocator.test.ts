import { expect } from 'chai';
import fc from 'fast-check';
import { SlotAllocator } from '../../../src/core/slot-allocator.js';
import { UvmError } from '../../../src/core/errors.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return UvmError.is(err) ? err.code : 'not a UvmError';
  }
  return undefined;
}

describe('SlotAllocator', () => {
  it('hands out the lowest free slot, skipping reserved ones', () => {
    const a = new SlotAllocator(256, [0, 2]);
    expect([a.allocate(), a.allocate(), a.allocate()]).to.deep.equal([1, 3, 4]);
    expect(a.freeCount).to.equal(256 - 2 - 3);
  });

  it('is exhausted after every slot is taken, then reuses the lowest freed slot', () => {
    const a = new SlotAllocator(5, [1]);
    const got = [a.allocate(), a.allocate(), a.allocate(), a.allocate()];
    expect(got).to.deep.equal([0, 2, 3, 4]);
    expect(a.allocate()).to.equal(undefined);
    a.free(4);
    a.free(2);
    expect(a.allocate()).to.equal(2);
    expect(a.allocate()).to.equal(4);
  });

  it('claims specific slots and refuses taken ones', () => {
    const a = new SlotAllocator(8);
    a.claim(3);
    expect(codeOf(() => a.claim(3))).to.equal('NO_SLOT');
    expect(a.allocate()).to.equal(0);
    expect(a.isFree(3)).to.equal(false);
  });

  it('rejects freeing reserved or free slots, and out-of-range slots', () => {
    const a = new SlotAllocator(4, [0]);
    expect(codeOf(() => a.free(0))).to.equal('INVALID_STATE');
    expect(codeOf(() => a.free(1))).to.equal('INVALID_STATE');
    expect(codeOf(() => a.free(4))).to.equal('INVALID_ARGUMENT');
    expect(codeOf(() => new SlotAllocator(0))).to.equal('INVALID_ARGUMENT');
    expect(codeOf(() => new SlotAllocator(4, [9]))).to.equal('INVALID_ARGUMENT');
  });

  it('always returns the lowest free slot (property, against a simple model)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 300 }),
        fc.array(fc.integer({ min: 0, max: 299 }), { maxLength: 10 }),
        fc.array(fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 299 })), { maxLength: 400 }),
        (size, reservedRaw, ops) => {
          const reserved = [...new Set(reservedRaw.filter((r) => r < size))];
          const a = new SlotAllocator(size, reserved);
          const used = new Set<number>(reserved);
          for (const op of ops) {
            if (op === -1) {
              let expected: number | undefined;
              for (let i = 0; i < size; i++) if (!used.has(i)) { expected = i; break; }
              const got = a.allocate();
              expect(got).to.equal(expected);
              if (got !== undefined) used.add(got);
            } else if (op < size && used.has(op) && !reserved.includes(op)) {
              a.free(op);
              used.delete(op);
            }
          }
          expect(a.freeCount).to.equal(size - used.size);
        },
      ),
      { numRuns: 200 },
    );
  });
});

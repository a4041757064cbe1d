import { expect } from 'chai';
import fc from 'fast-check';
import { UvmError } from '../../../src/core/errors.js';
import { BuddyAllocator, classOf, classSize, GiB, MiB } from '../../../src/devices/vpmem-buddy-allocator.js';

const code = (fn: () => unknown): string | undefined => {
  try {
    fn();
  } catch (err) {
    return UvmError.is(err) ? err.code : 'not a UvmError';
  }
  return undefined;
};

describe('BuddyAllocator (hcsshim internal/memory pool_test cases)', () => {
  it('class/size tables: 1 MiB→0, 6 MiB→2, 2 GiB→6, 4 GiB→6, 4 GiB+1→7; class 7 is invalid', () => {
    expect([classOf(1), classOf(MiB), classOf(MiB + 1), classOf(6 * MiB), classOf(16 * MiB), classOf(2 * GiB), classOf(4 * GiB), classOf(4 * GiB + 1)]).to.deep.equal([
      0, 0, 1, 2, 2, 6, 6, 7,
    ]);
    expect([0, 1, 2, 3, 4, 5, 6].map(classSize)).to.deep.equal([MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB, GiB, 4 * GiB]);
    expect(code(() => classSize(7))).to.equal('INVALID_ARGUMENT');
    expect(code(() => classOf(0))).to.equal('INVALID_ARGUMENT');
  });

  it('allocates the whole surface without a split, then is out of space', () => {
    const a = new BuddyAllocator();
    expect(a.allocate(4 * GiB)).to.deep.equal({ offset: 0, cls: 6, size: 4 * GiB });
    expect(code(() => a.allocate(MiB))).to.equal('NO_SLOT');
  });

  it('rejects regions over 4 GiB with NO_SLOT', () => {
    expect(code(() => new BuddyAllocator().allocate(4 * GiB + 1))).to.equal('NO_SLOT');
  });

  it('tryAllocate answers undefined where allocate throws NO_SLOT, and changes nothing then', () => {
    const a = new BuddyAllocator();
    expect(a.tryAllocate(4 * GiB + 1)).to.equal(undefined);
    expect(a.tryAllocate(GiB)).to.deep.equal({ offset: 0, cls: 5, size: GiB });
    for (let i = 1; i < 4; i++) expect(a.tryAllocate(GiB)?.offset).to.equal(i * GiB);
    expect(a.tryAllocate(MiB)).to.equal(undefined);
    expect(a.allocatedCount).to.equal(4);
    a.release(2 * GiB);
    expect(a.tryAllocate(MiB)?.offset).to.equal(2 * GiB);
  });

  it('splits down to the class and leaves the siblings free at every level', () => {
    const a = new BuddyAllocator();
    expect(a.allocate(MiB).offset).to.equal(0);
    expect(a.freeOffsets(0)).to.deep.equal([MiB, 2 * MiB, 3 * MiB]);
    expect(a.freeOffsets(1)).to.deep.equal([4 * MiB, 8 * MiB, 12 * MiB]);
    expect(a.freeOffsets(5)).to.deep.equal([GiB, 2 * GiB, 3 * GiB]);
    expect(a.freeOffsets(6)).to.deep.equal([]);
  });

  it('takes the lowest free offset of the class, and expands (splits) when the class is empty', () => {
    const a = new BuddyAllocator();
    const offsets = Array.from({ length: 5 }, () => a.allocate(MiB).offset);
    expect(offsets).to.deep.equal([0, MiB, 2 * MiB, 3 * MiB, 4 * MiB]);
    a.release(MiB);
    expect(a.allocate(MiB).offset).to.equal(MiB);
    expect(a.allocate(5 * MiB).offset).to.equal(16 * MiB);
  });

  it('merges four free siblings back, up to the whole surface', () => {
    const a = new BuddyAllocator();
    const regions = Array.from({ length: 4 }, () => a.allocate(MiB));
    for (const r of regions) a.release(r.offset);
    expect(a.freeOffsets(0)).to.deep.equal([]);
    expect(a.freeOffsets(6)).to.deep.equal([0]);
    expect(a.allocate(4 * GiB).offset).to.equal(0);
  });

  it('does not merge while a sibling is busy', () => {
    const a = new BuddyAllocator();
    const r = [a.allocate(MiB), a.allocate(MiB)];
    a.release(r[0].offset);
    expect(a.freeOffsets(0)).to.deep.equal([0, 2 * MiB, 3 * MiB]);
  });

  it('release of an offset that is not allocated → INVALID_STATE', () => {
    const a = new BuddyAllocator();
    a.allocate(MiB);
    expect(code(() => a.release(MiB))).to.equal('INVALID_STATE');
    expect(code(() => a.release(12345))).to.equal('INVALID_STATE');
  });

  it('fills 4096 × 1 MiB, then is full; releasing everything restores 4 GiB', () => {
    const a = new BuddyAllocator();
    const offsets = new Set<number>();
    for (let i = 0; i < 4096; i++) offsets.add(a.allocate(MiB).offset);
    expect(offsets.size).to.equal(4096);
    expect(Math.max(...offsets)).to.equal(4 * GiB - MiB);
    expect(code(() => a.allocate(MiB))).to.equal('NO_SLOT');
    for (const o of offsets) a.release(o);
    expect(a.allocate(4 * GiB).offset).to.equal(0);
  });

  it('property: regions are aligned, inside 4 GiB, never overlap, and everything merges back', () => {
    const sizes = fc.constantFrom(1, MiB, MiB + 1, 3 * MiB, 5 * MiB, 16 * MiB, 100 * MiB, 300 * MiB, GiB, 2 * GiB);
    const op = fc.oneof(fc.record({ alloc: sizes }), fc.record({ free: fc.nat() }));
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const a = new BuddyAllocator();
        const live: { offset: number; size: number }[] = [];
        for (const o of ops) {
          if ('alloc' in o) {
            try {
              const r = a.allocate(o.alloc);
              expect(r.size).to.be.at.least(o.alloc);
              expect(r.offset % r.size).to.equal(0);
              expect(r.offset + r.size).to.be.at.most(4 * GiB);
              for (const l of live) expect(r.offset + r.size <= l.offset || l.offset + l.size <= r.offset).to.equal(true);
              live.push(r);
            } catch (err) {
              if (!UvmError.is(err, 'NO_SLOT')) throw err;
              // Out of space is only allowed when no aligned free gap of that class exists.
              const size = classSize(classOf(o.alloc));
              for (let off = 0; off < 4 * GiB; off += size) {
                const free = live.every((l) => off + size <= l.offset || l.offset + l.size <= off);
                expect(free, `free gap at ${off} of ${size}`).to.equal(false);
              }
            }
          } else if (live.length > 0) {
            const [r] = live.splice(o.free % live.length, 1);
            a.release(r.offset);
          }
        }
        for (const l of live) a.release(l.offset);
        expect(a.allocatedCount).to.equal(0);
        expect(a.allocate(4 * GiB).offset).to.equal(0);
      }),
      { numRuns: 200 },
    );
  });
});

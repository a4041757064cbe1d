// VPMEM adoption (crash recovery, docs/recovery.md) in both modes, and the buddy allocator's claim.
import { expect } from 'chai';
import { BuddyAllocator, GiB, MiB } from '../../../src/devices/vpmem-buddy-allocator.js';
import { forgetFirstProcess, restartedManagers } from './adopt-kit.js';
import { deviceKit, rejectsWithCode } from './device-test-kit.js';

describe('VpmemManager.adopt (recovery)', () => {
  it('default mode: claims the recorded devices with no HCS call; new layers take the others', async () => {
    const kit = await deviceKit({ os: 'linux', vpmemCount: 3 });
    kit.hostFs.file('/l/a.vhd', MiB).file('/l/b.vhd', MiB).file('/l/c.vhd', MiB).file('/l/d.vhd', MiB);
    const a = await kit.vpmem.acquire({ hostPath: '/l/a.vhd' });
    const b = await kit.vpmem.acquire({ hostPath: '/l/b.vhd' });
    await a.release(); // device 0 is free again: b stays on device 1
    const calls = kit.hcs.calls.length;
    const { vpmem } = restartedManagers(kit);
    const adopted = await vpmem.adopt({ hostPath: '/l/b.vhd' }, b.value);
    expect(kit.hcs.calls.length).to.equal(calls);
    expect(adopted.value).to.deep.equal({ device: 1, hostPath: '/l/b.vhd', guestPath: '/run/layers/p1' });
    expect(vpmem.heldFile('/l/b.vhd')).to.equal(undefined); // restored: its size was never stat'ed here
    const c = await vpmem.acquire({ hostPath: '/l/c.vhd' });
    const d = await vpmem.acquire({ hostPath: '/l/d.vhd' });
    expect([c.value.device, d.value.device]).to.deep.equal([0, 2]);
    await rejectsWithCode(vpmem.acquire({ hostPath: '/l/a.vhd' }), 'NO_SLOT');
    for (const l of [c, d, adopted]) await l.release();
    expect(kit.system.attached()).to.deep.equal([]);
    await forgetFirstProcess(kit, [b]);
  });

  it('multi-mapping mode: claims the recorded buddy regions; new mappings never overlap them', async () => {
    const kit = await deviceKit({ os: 'linux', vpmemCount: 2, vpmemMultiMapping: true });
    const paths = ['/l/1.vhd', '/l/2.vhd', '/l/3.vhd', '/l/4.vhd', '/l/5.vhd'];
    kit.hostFs.file(paths[0]!, 3 * MiB).file(paths[1]!, 100 * 1024).file(paths[2]!, 20 * MiB).file(paths[3]!, MiB).file(paths[4]!, 2 * MiB);
    const first = [];
    for (const p of paths.slice(0, 3)) first.push(await kit.vpmem.acquire({ hostPath: p }));
    const { vpmem } = restartedManagers(kit);
    const calls = kit.hcs.calls.length;
    const adopted = [];
    for (const l of first) adopted.push(await vpmem.adopt({ hostPath: l.value.hostPath }, l.value));
    expect(kit.hcs.calls.length).to.equal(calls);
    expect(adopted.map((l) => l.value)).to.deep.equal(first.map((l) => l.value));
    const more = [await vpmem.acquire({ hostPath: paths[3]! }), await vpmem.acquire({ hostPath: paths[4]! })];
    // Regions (device, offset, class size) of every mapping are disjoint.
    const regions = [...adopted, ...more].map((l) => {
      const size = 4 ** Math.ceil(Math.log(Math.max(l.value.size!, MiB) / MiB) / Math.log(4)) * MiB;
      return [l.value.device, l.value.offset!, l.value.offset! + size] as const;
    });
    for (const [i, r] of regions.entries()) {
      for (const q of regions.slice(i + 1)) expect(r[0] !== q[0] || r[2] <= q[1] || q[2] <= r[1], `${r} overlaps ${q}`).to.equal(true);
    }
    for (const l of [...more, ...adopted]) await l.release();
    expect(kit.system.attached()).to.deep.equal([]);
    await forgetFirstProcess(kit, first);
  });

  it('rejects a recorded place that does not fit this UVM or disagrees with an adopted one', async () => {
    const kit = await deviceKit({ os: 'linux', vpmemCount: 2 });
    kit.hostFs.file('/l/a.vhd', MiB);
    const a = await kit.vpmem.acquire({ hostPath: '/l/a.vhd' });
    const { vpmem } = restartedManagers(kit);
    await rejectsWithCode(vpmem.adopt({ hostPath: '/l/a.vhd' }, { ...a.value, device: 5 }), 'RECOVERY_FAILED');
    await rejectsWithCode(vpmem.adopt({ hostPath: '/l/a.vhd' }, { ...a.value, offset: 0, size: MiB }), 'RECOVERY_FAILED');
    const adopted = await vpmem.adopt({ hostPath: '/l/a.vhd' }, a.value);
    await rejectsWithCode(vpmem.adopt({ hostPath: '/l/a.vhd' }, { ...a.value, device: 1 }), 'RECOVERY_FAILED');
    await rejectsWithCode(vpmem.adopt({ hostPath: '/l/other.vhd' }, { ...a.value, hostPath: '/l/other.vhd' }), 'NO_SLOT');
    expect(vpmem.describe().map((r) => [r.slot, r.refCount])).to.deep.equal([['0', 1]]);
    await adopted.release();
    expect(kit.system.attached()).to.deep.equal([]);
    await forgetFirstProcess(kit, [a]);
  });
});

describe('BuddyAllocator.claim', () => {
  it('claims a region, which allocate then skips, and merges back on release', () => {
    const b = new BuddyAllocator();
    expect(b.claim(4 * MiB, 4 * MiB)).to.deep.equal({ offset: 4 * MiB, cls: 1, size: 4 * MiB });
    expect(b.allocate(4 * MiB).offset).to.equal(0);
    expect(b.allocate(4 * MiB).offset).to.equal(8 * MiB);
    expect(b.allocate(MiB).offset).to.equal(12 * MiB);
    b.release(0);
    b.release(8 * MiB);
    b.release(12 * MiB);
    b.release(4 * MiB);
    expect(b.allocate(4 * GiB).offset).to.equal(0);
  });

  it('claims the same regions allocate handed out, in any order', () => {
    const first = new BuddyAllocator();
    const sizes = [MiB, 16 * MiB, MiB, 4 * MiB, 64 * MiB, MiB];
    const regions = sizes.map((s) => first.allocate(s));
    const second = new BuddyAllocator();
    for (const r of [...regions].reverse()) expect(second.claim(r.offset, r.size)).to.deep.equal(r);
    expect(second.allocatedCount).to.equal(sizes.length);
    // Both now hand out the same next region.
    expect(second.allocate(MiB)).to.deep.equal(first.allocate(MiB));
  });

  it('rejects an overlapping or misaligned claim, changing nothing', () => {
    const b = new BuddyAllocator();
    b.claim(16 * MiB, 16 * MiB);
    for (const [offset, size] of [
      [16 * MiB, MiB], // inside a claimed region
      [0, 64 * MiB], // containing it
      [16 * MiB, 16 * MiB], // the same one again
    ] as const) {
      expect(() => b.claim(offset, size), `${offset}/${size}`).to.throw().with.property('code', 'NO_SLOT');
    }
    expect(() => b.claim(MiB / 2, MiB)).to.throw().with.property('code', 'INVALID_ARGUMENT');
    expect(() => b.claim(0, 8 * GiB)).to.throw().with.property('code', 'NO_SLOT');
    expect(b.allocatedCount).to.equal(1);
    b.release(16 * MiB);
    expect(b.allocate(4 * GiB).offset).to.equal(0);
  });
});

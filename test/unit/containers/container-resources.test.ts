import { expect } from 'chai';
import { UvmAggregateError } from '../../../src/core/errors.js';
import type { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { allocateContainer } from '../../../src/containers/allocate-container.js';
import type { OciSpec } from '../../../src/oci/oci-spec.js';
import { expectCode } from '../../fakes/expect-code.js';
import { failModify, upperUvm, type KitUvm } from '../devices/device-test-kit.js';

const files = (fs: FakeHostFs): FakeHostFs => fs.file('/l/1/layer.vhd', 1000).file('/s/sandbox.vhdx').file('/s2/sandbox.vhdx').dir('/data').dir('/more').file('/disks/d.vhdx');

function lcow(options: { terminationAware?: boolean; leakCheck?: boolean } = {}): Promise<KitUvm> {
  return upperUvm('linux', { hostFs: files, ...options });
}

const spec = (scratch = '/s'): OciSpec => ({
  windows: { layerFolders: ['/l/1', scratch] },
  mounts: [
    { destination: '/data', type: 'bind', source: '/data' },
    { destination: '/disk', type: 'virtual-disk', source: '/disks/d.vhdx' },
  ],
});

const removals = (u: KitUvm, mark = 0): string[] => u.ops(mark).filter((o) => /^(guest )?Remove/.test(o));
const adds = (u: KitUvm, mark = 0): string[] => u.ops(mark).filter((o) => /^(guest )?Add/.test(o));

/** The disk mount's removal: guest unmount, unplug, detach (it is LUN 1: the scratch took LUN 0). */
const DISK = ['guest Remove MappedVirtualDisk /run/mounts/scsi/m0', 'guest Remove SCSIDevice 0:1', 'Remove Scsi/0/Attachments/1'];
const DATA = ['Remove Plan9/Shares 0 + Remove MappedDirectory /run/mounts/plan9/0'];
const OVERLAY = ['guest Remove CombinedLayers /run/gcs/c/c1/rootfs'];
const SCRATCH = ['guest Remove MappedVirtualDisk /run/gcs/c/c1', 'guest Remove SCSIDevice 0:0', 'Remove Scsi/0/Attachments/0'];
const LAYER = ['Remove VirtualPMem/Devices/0 + Remove VPMemDevice /run/layers/p0'];

describe('ContainerResources', () => {
  it('releases the overlay, then the disks under it and the mounts together, once; a second release makes no call', async () => {
    const u = await lcow();
    const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
    const mark = u.mark();
    await resources.release();
    const removed = removals(u, mark);
    expect(removed.slice(0, 1)).to.deep.equal(OVERLAY);
    expect(removed.slice(1)).to.have.members([...DISK, ...DATA, ...SCRATCH, ...LAYER]);
    // Each disk's chain in order: unmount, unplug, detach.
    for (const chain of [DISK, SCRATCH]) expect(removed.filter((r) => chain.includes(r))).to.deep.equal(chain);
    expect(resources.released).to.equal(true);
    expect(resources.held).to.deep.equal([]);
    const after = u.mark();
    await resources.release();
    expect(u.mark()).to.equal(after);
    expect(u.held()).to.deep.equal([]);
  });

  it('keeps going past failed releases of one phase, reports each, and retries exactly those', async () => {
    const u = await lcow();
    const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
    // Phase 0 (the overlay) fails: phase 1 (the disks under it, the mounts) does not start.
    failModify(u, /CombinedLayers/);
    const first = await resources.release().catch((e: unknown) => e);
    expect((first as UvmAggregateError).code).to.equal('RELEASE_FAILED');
    expect((first as UvmAggregateError).errors).to.have.length(1);
    expect(resources.held).to.have.length(5);
    // Retry: the overlay goes; in phase 1 the plan9 mount and the VPMEM layer fail, the rest goes.
    failModify(u, /^Remove Plan9/);
    failModify(u, /^Remove VirtualPMem/);
    const err = await resources.release().catch((e: unknown) => e);
    expect(err).to.be.instanceOf(UvmAggregateError);
    expect((err as UvmAggregateError).code).to.equal('RELEASE_FAILED');
    expect((err as UvmAggregateError).errors).to.have.length(2);
    expect(resources.released).to.equal(false);
    expect(resources.held.map((h) => `${h.kind}:${h.source}`)).to.deep.equal(['layer:vpmem', 'mount:plan9']);
    expect(u.held()).to.include('vpmem-device /l/1/layer.vhd teardown-failed');
    // Retry: exactly those two.
    await resources.release();
    expect(resources.released).to.equal(true);
    expect(u.held()).to.deep.equal([]);
  });

  it('is AsyncDisposable: `await using` releases it at the end of the block', async () => {
    const u = await lcow();
    {
      await using alloc = (await allocateContainer(u, spec(), { containerId: 'c1' })).resources;
      expect(alloc.held).to.have.length(5);
      expect(u.held()).to.not.deep.equal([]);
    }
    expect(u.held()).to.deep.equal([]);
  });

  describe('release({ uvmTerminating: true })', () => {
    it('skips the removals through a UVM that supports it, while every refcount balances', async () => {
      const u = await lcow({ terminationAware: true, leakCheck: false });
      const a = await allocateContainer(u, spec(), { containerId: 'a' });
      const b = await allocateContainer(u, spec('/s2'), { containerId: 'b' });
      const attached = u.kit.system.attached();
      const held = u.held();
      const mark = u.mark();
      await a.resources.release({ uvmTerminating: true });
      expect(a.resources.removalsSkipped).to.equal(true);
      // Shared resources (layer, /data, disk) stay for b; a's own scratch (LUN 0) is dropped with no removal call.
      const aScratch = (h: string): boolean => h.includes('"/s/sandbox.vhdx"') || h.startsWith('scsi-mount [0,0,');
      expect(held.filter(aScratch)).to.have.length(2);
      expect(u.held()).to.deep.equal(held.filter((h) => !aScratch(h)));
      await b.resources.release({ uvmTerminating: true });
      expect(u.mark(), 'no HCS call at all').to.equal(mark);
      expect(u.held()).to.deep.equal([]);
      // What stays attached goes with the VM.
      expect(u.kit.system.attached()).to.deep.equal(attached);
    });

    it('removes everything normally through a UVM that cannot skip removals', async () => {
      const u = await lcow();
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      await resources.release({ uvmTerminating: true });
      expect(resources.removalsSkipped).to.equal(false);
      expect(removals(u)).to.have.members([...DISK, ...DATA, ...OVERLAY, ...SCRATCH, ...LAYER]);
      expect(u.held()).to.deep.equal([]);
    });
  });

  describe('hot add / remove', () => {
    it('adds a mount through the planner and applier, sharing the UVM refcounts, and removes it', async () => {
      const u = await lcow();
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      const added = await resources.addMount({ destination: '/data2', type: 'bind', source: '/more', options: ['ro'] });
      expect(added).to.deep.equal({ destination: '/data2', type: 'bind', source: '/run/mounts/plan9/1', options: ['ro'] });
      // The same directory read-only while it is shared read-write: a second share (as hcsshim).
      const ro = await resources.addMount({ destination: '/data3', type: 'bind', source: '/data', options: ['ro'] });
      expect(ro.source).to.equal('/run/mounts/plan9/2');
      const mark = u.mark();
      const other = await resources.addMount({ destination: '/disk2', type: 'virtual-disk', source: '/disks/d.vhdx' });
      expect(other.source).to.equal('/run/mounts/scsi/m0');
      expect(u.ops(mark), 'the disk is shared: no call').to.deep.equal([]);
      expect(resources.mounts().map((m) => m.destination)).to.deep.equal(['/data', '/disk', '/data2', '/data3', '/disk2']);
      expect(resources.held.at(-1)).to.deep.include({ kind: 'mount', destination: '/disk2', mountIndex: 4 });

      await resources.removeMount('/disk2');
      expect(u.ops(mark)).to.deep.equal([]);
      await resources.removeMount('/disk');
      expect(u.ops(mark)).to.deep.equal(DISK);
      expect(resources.mounts().map((m) => m.destination)).to.deep.equal(['/data', '/data2', '/data3']);
      await resources.release();
      expect(u.held()).to.deep.equal([]);
    });

    it('rejects a second mount at one destination (MOUNT_CONFLICT) and an unknown removal (NOT_FOUND)', async () => {
      const u = await lcow();
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      const mark = u.mark();
      await expectCode(resources.addMount({ destination: '/data', type: 'bind', source: '/more' }), 'MOUNT_CONFLICT');
      await expectCode(resources.removeMount('/nope'), 'NOT_FOUND');
      expect(u.mark()).to.equal(mark);
      await resources.release();
    });

    it('names the hot-add index in a planning error and holds nothing after a failed add', async () => {
      const u = await lcow();
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      const err = await expectCode(resources.addMount({ destination: '/h', type: 'bind', source: 'hugepages://2M' }), 'INVALID_SPEC');
      expect(err.details.mountIndex).to.equal(2);
      failModify(u, /^Add Plan9/);
      const err2 = await expectCode(resources.addMount({ destination: '/m', type: 'bind', source: '/more' }), 'HCS_ERROR');
      expect(err2.details.mountIndex).to.equal(3);
      expect(resources.mounts().map((m) => m.destination)).to.deep.equal(['/data', '/disk']);
      expect(resources.held).to.have.length(5);
      expect(u.held().filter((h) => h.includes('/more'))).to.deep.equal([]);
      // The destination is free again.
      await resources.addMount({ destination: '/m', type: 'bind', source: '/more' });
      await resources.release();
      expect(u.held()).to.deep.equal([]);
    });

    it('keeps a mount whose removal failed, and removes it on retry', async () => {
      const u = await lcow();
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      failModify(u, /^Remove Plan9/);
      const mark = u.mark();
      await expectCode(resources.removeMount('/data'), 'TEARDOWN_FAILED');
      expect(resources.mounts().map((m) => m.destination)).to.deep.equal(['/data', '/disk']);
      await resources.removeMount('/data');
      expect(resources.mounts().map((m) => m.destination)).to.deep.equal(['/disk']);
      // The retry removes each half on its own (the failed call may have applied one of them).
      expect(u.ops(mark)).to.deep.equal([...DATA, 'guest Remove MappedDirectory /run/mounts/plan9/0', 'Remove Plan9/Shares 0']);
      await resources.release();
    });

    it('refuses hot add / remove once released (ALREADY_RELEASED)', async () => {
      const u = await lcow();
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      await resources.release();
      const mark = u.mark();
      await expectCode(resources.addMount({ destination: '/m', type: 'bind', source: '/more' }), 'ALREADY_RELEASED');
      await expectCode(resources.removeMount('/data'), 'ALREADY_RELEASED');
      expect(u.mark()).to.equal(mark);
    });

    it('adds WCOW mounts with their container entries', async () => {
      const u = await upperUvm('windows', { hostFs: (fs) => fs.dir('C:\\l\\a').file('C:\\s\\sandbox.vhdx').dir('C:\\data') });
      const { resources } = await allocateContainer(u, { windows: { layerFolders: ['C:\\l\\a', 'C:\\s'] } }, { containerId: 'w1' });
      await resources.addMount({ destination: '\\\\.\\pipe\\p', source: 'uvm://\\\\.\\pipe\\p' });
      await resources.addMount({ destination: 'C:\\d', source: 'C:\\data', options: ['ro'] });
      expect(resources.containerEntries().map((e) => e.kind)).to.deep.equal(['mapped-pipe', 'mapped-directory']);
      await resources.removeMount('\\\\.\\pipe\\p');
      expect(resources.containerEntries().map((e) => e.kind)).to.deep.equal(['mapped-directory']);
      await resources.release();
      expect(u.held()).to.deep.equal([]);
    });
  });
});

describe('ContainerResources: duplicate and relative destinations are refused alike by allocateContainer and addMount', () => {
  const twoAtM = {
    windows: { layerFolders: ['/l/1', '/s'] },
    mounts: [
      { destination: '/m', type: 'bind', source: '/data' },
      { destination: '/m', type: 'bind', source: '/more' },
    ],
  };

  it('a spec with two mounts at one destination → MOUNT_CONFLICT naming the second, nothing attached', async () => {
    const u = await lcow();
    const err = await expectCode(allocateContainer(u, twoAtM, { containerId: 'c1' }), 'MOUNT_CONFLICT');
    expect(err.details).to.include({ field: 'mounts[1].destination', mountIndex: 1, otherMountIndex: 0 });
    expect(u.ops()).to.deep.equal([]);
    expect(u.held()).to.deep.equal([]);
  });

  it('addMount at a taken destination → MOUNT_CONFLICT, nothing more attached', async () => {
    const u = await lcow();
    const { resources } = await allocateContainer(u, { ...twoAtM, mounts: twoAtM.mounts.slice(0, 1) }, { containerId: 'c1' });
    const before = adds(u).length;
    await expectCode(resources.addMount({ destination: '/m', type: 'bind', source: '/more' }), 'MOUNT_CONFLICT');
    expect(adds(u)).to.have.length(before);
    await resources.release();
    expect(u.held()).to.deep.equal([]);
  });

  it('a relative destination → INVALID_ARGUMENT naming it, from allocateContainer and from addMount', async () => {
    const u = await lcow();
    const relative = { destination: 'm', type: 'bind', source: '/data' };
    const err = await expectCode(allocateContainer(u, { ...twoAtM, mounts: [relative] }, { containerId: 'c1' }), 'INVALID_ARGUMENT');
    expect(err.details).to.include({ field: 'mounts[0].destination', mountIndex: 0 });
    expect(u.held()).to.deep.equal([]);
    const { resources } = await allocateContainer(u, { ...twoAtM, mounts: [] }, { containerId: 'c1' });
    await expectCode(resources.addMount(relative), 'INVALID_ARGUMENT');
    await resources.release();
    expect(u.held()).to.deep.equal([]);
  });
});

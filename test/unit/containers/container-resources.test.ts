import { expect } from 'chai';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { UvmAggregateError } from '../../../src/core/errors.js';
import { allocateContainer } from '../../../src/containers/allocate-container.js';
import type { OciSpec } from '../../../src/oci/oci-spec.js';
import { FakeUvmDevices, type FakeUvmOptions } from '../../fakes/fake-uvm-devices.js';
import { expectCode } from '../../fakes/expect-code.js';

function lcow(options: FakeUvmOptions = {}): FakeUvmDevices {
  const fs = new FakeHostFs()
    .file('/l/1/layer.vhd', 1000)
    .file('/s/sandbox.vhdx')
    .file('/s2/sandbox.vhdx')
    .dir('/data')
    .dir('/more')
    .file('/disks/d.vhdx');
  return new FakeUvmDevices({ os: 'linux', hostFs: fs, ...options });
}

const spec = (scratch = '/s'): OciSpec => ({
  windows: { layerFolders: ['/l/1', scratch] },
  mounts: [
    { destination: '/data', type: 'bind', source: '/data' },
    { destination: '/disk', type: 'virtual-disk', source: '/disks/d.vhdx' },
  ],
});

describe('ContainerResources', () => {
  it('releases in reverse acquisition order, once; a second release makes no call', async () => {
    const u = lcow();
    const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
    const mark = u.calls.length;
    await resources.release();
    expect(u.calls.slice(mark)).to.deep.equal([
      'remove scsi VirtualDisk:/disks/d.vhdx',
      'remove plan9 /data',
      'guest Remove CombinedLayers',
      'remove scsi VirtualDisk:/s/sandbox.vhdx',
      'remove vpmem /l/1/layer.vhd',
    ]);
    expect(resources.released).to.equal(true);
    expect(resources.held).to.deep.equal([]);
    const after = u.calls.length;
    await resources.release();
    expect(u.calls.length).to.equal(after);
  });

  it('keeps going past failed releases of one phase, reports each, and retries exactly those', async () => {
    const u = lcow();
    const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
    // Phase 0 (overlay and mounts): the plan9 mount fails; the overlay is removed. Phase 1 (the
    // disks under the overlay) does not start after a failed phase: its items wait for the retry.
    u.fail('plan9', 'remove', 'HCS_ERROR').fail('vpmem', 'remove', 'TIMEOUT');
    const err = await resources.release().catch((e: unknown) => e);
    expect(err).to.be.instanceOf(UvmAggregateError);
    expect((err as UvmAggregateError).code).to.equal('RELEASE_FAILED');
    expect((err as UvmAggregateError).errors).to.have.length(1);
    expect(resources.released).to.equal(false);
    expect(resources.held.map((h) => `${h.kind}:${h.source}`)).to.deep.equal(['layer:vpmem', 'scratch:scsi', 'mount:plan9']);
    // Retry: the mount goes; then the disks, where the VPMEM removal fails once more.
    const again = await resources.release().catch((e: unknown) => e);
    expect((again as UvmAggregateError).errors).to.have.length(1);
    expect(resources.held.map((h) => `${h.kind}:${h.source}`)).to.deep.equal(['layer:vpmem']);
    expect(u.held()).to.have.length(1);
    await resources.release();
    expect(resources.released).to.equal(true);
    expect(u.held()).to.deep.equal([]);
  });

  it('is AsyncDisposable: `await using` releases it at the end of the block', async () => {
    const u = lcow();
    {
      await using alloc = (await allocateContainer(u, spec(), { containerId: 'c1' })).resources;
      expect(alloc.held).to.have.length(5);
      expect(u.held()).to.have.length(4);
    }
    expect(u.held()).to.deep.equal([]);
  });

  describe('release({ uvmTerminating: true })', () => {
    it('skips the removals through a UVM that supports it, while every refcount balances', async () => {
      const u = lcow();
      const a = await allocateContainer(u, spec(), { containerId: 'a' });
      const b = await allocateContainer(u, spec('/s2'), { containerId: 'b' });
      const mark = u.calls.length;
      await a.resources.release({ uvmTerminating: true });
      expect(a.resources.removalsSkipped).to.equal(true);
      // Shared resources (layer, /data, disk) stay for b; a's own scratch is dropped with no removal call.
      expect(u.calls.slice(mark)).to.deep.equal(['prepare-for-termination', 'skip scsi VirtualDisk:/s/sandbox.vhdx']);
      expect(u.held().map((h) => h.replace(/ \(.*/, '')).sort()).to.deep.equal([
        'plan9 /data',
        'scsi VirtualDisk:/disks/d.vhdx',
        'scsi VirtualDisk:/s2/sandbox.vhdx',
        'vpmem /l/1/layer.vhd',
      ]);
      await b.resources.release({ uvmTerminating: true });
      expect(u.events('remove')).to.deep.equal([]);
      expect(u.events('skip')).to.have.length(5);
      expect(u.guestRequests.filter((r) => r.RequestType === 'Remove')).to.deep.equal([]);
      expect(u.calls).to.not.include('guest Remove CombinedLayers');
      expect(u.held()).to.deep.equal([]);
    });

    it('removes everything normally through a UVM that cannot skip removals', async () => {
      const u = lcow({ terminationAware: false });
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      await resources.release({ uvmTerminating: true });
      expect(resources.removalsSkipped).to.equal(false);
      expect(u.events('remove')).to.have.length(4);
      expect(u.events('skip')).to.deep.equal([]);
      expect(u.calls).to.include('guest Remove CombinedLayers');
      expect(u.held()).to.deep.equal([]);
    });
  });

  describe('hot add / remove', () => {
    it('adds a mount through the planner and applier, sharing the UVM refcounts, and removes it', async () => {
      const u = lcow();
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      const added = await resources.addMount({ destination: '/data2', type: 'bind', source: '/more', options: ['ro'] });
      expect(added).to.deep.equal({ destination: '/data2', type: 'bind', source: '/run/mounts/plan9/1', options: ['ro'] });
      // The same directory read-only while it is shared read-write: the manager's CONFIG_CONFLICT, nothing held.
      await expectCode(resources.addMount({ destination: '/data3', type: 'bind', source: '/data', options: ['ro'] }), 'CONFIG_CONFLICT');
      const other = await resources.addMount({ destination: '/disk2', type: 'virtual-disk', source: '/disks/d.vhdx' });
      expect(other.source).to.equal('/run/mounts/scsi/m0');
      expect(u.events('add').filter((e) => e.includes('/disks/'))).to.have.length(1);
      expect(resources.mounts().map((m) => m.destination)).to.deep.equal(['/data', '/disk', '/data2', '/disk2']);
      expect(resources.held.at(-1)).to.deep.include({ kind: 'mount', destination: '/disk2', mountIndex: 4 });

      await resources.removeMount('/disk2');
      expect(u.events('remove')).to.deep.equal([]);
      await resources.removeMount('/disk');
      expect(u.events('remove')).to.deep.equal(['remove scsi VirtualDisk:/disks/d.vhdx']);
      expect(resources.mounts().map((m) => m.destination)).to.deep.equal(['/data', '/data2']);
      await resources.release();
      expect(u.held()).to.deep.equal([]);
    });

    it('rejects a second mount at one destination (MOUNT_CONFLICT) and an unknown removal (NOT_FOUND)', async () => {
      const u = lcow();
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      const calls = u.calls.length;
      await expectCode(resources.addMount({ destination: '/data', type: 'bind', source: '/more' }), 'MOUNT_CONFLICT');
      await expectCode(resources.removeMount('/nope'), 'NOT_FOUND');
      expect(u.calls.length).to.equal(calls);
      await resources.release();
    });

    it('names the hot-add index in a planning error and holds nothing after a failed add', async () => {
      const u = lcow();
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      const err = await expectCode(resources.addMount({ destination: '/h', type: 'bind', source: 'hugepages://2M' }), 'INVALID_SPEC');
      expect(err.details.mountIndex).to.equal(2);
      u.fail('plan9', 'acquire', 'HCS_ERROR');
      const err2 = await expectCode(resources.addMount({ destination: '/m', type: 'bind', source: '/more' }), 'HCS_ERROR');
      expect(err2.details.mountIndex).to.equal(3);
      expect(resources.mounts().map((m) => m.destination)).to.deep.equal(['/data', '/disk']);
      expect(resources.held).to.have.length(5);
      // The destination is free again.
      await resources.addMount({ destination: '/m', type: 'bind', source: '/more' });
      await resources.release();
      expect(u.held()).to.deep.equal([]);
    });

    it('keeps a mount whose removal failed, and removes it on retry', async () => {
      const u = lcow();
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      u.fail('plan9', 'remove', 'HCS_ERROR');
      await expectCode(resources.removeMount('/data'), 'TEARDOWN_FAILED');
      expect(resources.mounts().map((m) => m.destination)).to.deep.equal(['/data', '/disk']);
      await resources.removeMount('/data');
      expect(resources.mounts().map((m) => m.destination)).to.deep.equal(['/disk']);
      expect(u.events('remove')).to.deep.equal(['remove plan9 /data']);
      await resources.release();
    });

    it('refuses hot add / remove once released (ALREADY_RELEASED)', async () => {
      const u = lcow();
      const { resources } = await allocateContainer(u, spec(), { containerId: 'c1' });
      await resources.release();
      await expectCode(resources.addMount({ destination: '/m', type: 'bind', source: '/more' }), 'ALREADY_RELEASED');
      await expectCode(resources.removeMount('/data'), 'ALREADY_RELEASED');
    });

    it('adds WCOW mounts with their container entries', async () => {
      const fs = new FakeHostFs().dir('C:\\l\\a').file('C:\\s\\sandbox.vhdx').dir('C:\\data');
      const u = new FakeUvmDevices({ os: 'windows', hostFs: fs });
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
    const u = lcow();
    const err = await expectCode(allocateContainer(u, twoAtM, { containerId: 'c1' }), 'MOUNT_CONFLICT');
    expect(err.details).to.include({ field: 'mounts[1].destination', mountIndex: 1, otherMountIndex: 0 });
    expect(u.events('add')).to.deep.equal([]);
    expect(u.held()).to.deep.equal([]);
  });

  it('addMount at a taken destination → MOUNT_CONFLICT, nothing more attached', async () => {
    const u = lcow();
    const { resources } = await allocateContainer(u, { ...twoAtM, mounts: twoAtM.mounts.slice(0, 1) }, { containerId: 'c1' });
    const before = u.events('add').length;
    await expectCode(resources.addMount({ destination: '/m', type: 'bind', source: '/more' }), 'MOUNT_CONFLICT');
    expect(u.events('add')).to.have.length(before);
    await resources.release();
    expect(u.held()).to.deep.equal([]);
  });

  it('a relative destination → INVALID_ARGUMENT naming it, from allocateContainer and from addMount', async () => {
    const u = lcow();
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

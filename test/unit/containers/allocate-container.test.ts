import { expect } from 'chai';
import sinon from 'sinon';
import type { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { allocateContainer, planContainer } from '../../../src/containers/allocate-container.js';
import type { OciSpec } from '../../../src/oci/oci-spec.js';
import { expectCode } from '../../fakes/expect-code.js';
import type { UvmDeviceConfig } from '../../../src/devices/device-config.js';
import { deviceKit, failModify, kitUvm, upperUvm, type KitUvm } from '../devices/device-test-kit.js';

const VSMB = '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}';

const lcowFiles = (fs: FakeHostFs): FakeHostFs =>
  fs.file('/l/1/layer.vhd', 1000).file('/l/2/layer.vhd', 2 * 1024 * 1024).file('/s/sandbox.vhdx').dir('/data').file('/cfg/app.conf').file('/disks/d.vhdx').dir('/rootdir');

function lcow(config: Partial<UvmDeviceConfig> = {}): Promise<KitUvm> {
  return upperUvm('linux', { config, hostFs: lcowFiles });
}

function lcowSpec(): OciSpec {
  return {
    ociVersion: '1.1.0',
    root: { path: 'rootfs', readonly: false },
    process: { args: ['sh'] },
    windows: { layerFolders: ['/l/1', '/l/2', '/s'] },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/data', type: 'bind', source: '/data', options: ['rbind', 'rw'] },
      { destination: '/etc/app.conf', type: 'bind', source: '/cfg/app.conf', options: ['rbind', 'ro'] },
      { destination: '/disk', type: 'virtual-disk', source: '/disks/d.vhdx' },
    ],
  };
}

const removals = (u: KitUvm, mark = 0): string[] => u.ops(mark).filter((o) => /^(guest )?Remove/.test(o));
const adds = (u: KitUvm, mark = 0): string[] => u.ops(mark).filter((o) => /^(guest )?Add/.test(o));

describe('allocateContainer', () => {
  it('allocates a LCOW container and returns a rewritten copy of its spec', async () => {
    const u = await lcow();
    const input = lcowSpec();
    const before = structuredClone(input);
    const { spec, resources, containerEntries } = await allocateContainer(u, input, { containerId: 'c1' });
    expect(input, 'the input spec is not mutated').to.deep.equal(before);
    expect(spec).to.deep.equal({
      ...before,
      root: { path: '/run/gcs/c/c1/rootfs', readonly: false },
      mounts: [
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/data', type: 'bind', source: '/run/mounts/plan9/0', options: ['rbind', 'rw'] },
        { destination: '/etc/app.conf', type: 'bind', source: '/run/mounts/plan9/1/app.conf', options: ['rbind', 'ro'] },
        // m1: the too-large layer's SCSI fallback is reserved before the mounts (hcsshim's order),
        // so it takes m0 (and LUN 0, the scratch LUN 1, the disk LUN 2) whatever the timing.
        { destination: '/disk', type: 'none', source: '/run/mounts/scsi/m1' },
      ],
    });
    expect(containerEntries).to.deep.equal([]);
    expect(resources.rootfsPath).to.equal('/run/gcs/c/c1/rootfs');
    expect(resources.layers!.layers.map((l) => [l.target, l.reason])).to.deep.equal([
      ['vpmem', undefined],
      ['scsi', 'too-large'],
    ]);
    expect(resources.held.map((h) => `${h.kind}:${h.source}`)).to.deep.equal([
      'layer:vpmem',
      'layer:scsi',
      'scratch:scsi',
      'combined-layers:guest',
      'mount:plan9',
      'mount:plan9',
      'mount:scsi',
    ]);
    expect(adds(u).filter((o) => o.startsWith('Add'))).to.have.members([
      'Add VirtualPMem/Devices/0 + Add VPMemDevice /run/layers/p0',
      'Add Scsi/0/Attachments/0',
      'Add Scsi/0/Attachments/1',
      'Add Scsi/0/Attachments/2',
      'Add Plan9/Shares 0 + Add MappedDirectory /run/mounts/plan9/0',
      'Add Plan9/Shares 1 + Add MappedDirectory /run/mounts/plan9/1',
    ]);
    const mark = u.mark();
    await resources.release();
    const removed = removals(u, mark);
    // Phase 0: the overlay; phase 1: everything else (the disks and layers under it, the mounts).
    expect(removed[0]).to.equal('guest Remove CombinedLayers /run/gcs/c/c1/rootfs');
    expect(removed.slice(1)).to.have.members([
      'guest Remove MappedVirtualDisk /run/mounts/scsi/m1',
      'guest Remove SCSIDevice 0:2',
      'Remove Scsi/0/Attachments/2',
      'Remove Plan9/Shares 1 + Remove MappedDirectory /run/mounts/plan9/1',
      'Remove Plan9/Shares 0 + Remove MappedDirectory /run/mounts/plan9/0',
      'guest Remove MappedVirtualDisk /run/gcs/c/c1',
      'guest Remove SCSIDevice 0:1',
      'Remove Scsi/0/Attachments/1',
      'guest Remove MappedVirtualDisk /run/mounts/scsi/m0',
      'guest Remove SCSIDevice 0:0',
      'Remove Scsi/0/Attachments/0',
      'Remove VirtualPMem/Devices/0 + Remove VPMemDevice /run/layers/p0',
    ]);
    expect(u.held()).to.deep.equal([]);
  });

  it("allocations and releases started together complete while a caller's fake timers are installed (a shim's unit test)", async () => {
    const u = await lcow();
    const clock = sinon.useFakeTimers();
    try {
      const spec = (): OciSpec => ({ ...lcowSpec(), mounts: [] });
      const [a, b] = await Promise.all(['c1', 'c2'].map((id) => allocateContainer(u, spec(), { containerId: id })));
      expect([a.spec.root?.path, b.spec.root?.path]).to.deep.equal(['/run/gcs/c/c1/rootfs', '/run/gcs/c/c2/rootfs']);
      await Promise.all([a.resources.release(), b.resources.release()]);
    } finally {
      clock.restore();
    }
    expect(u.held()).to.deep.equal([]);
  });

  it('takes the layers from an lcow-layer rootfs mount', async () => {
    const u = await lcow();
    const { spec, resources } = await allocateContainer(
      u,
      { root: { path: 'rootfs' } },
      { containerId: 'c1', rootfs: [{ type: 'lcow-layer', source: '/s', options: ['parentLayerPaths=["/l/1"]'] }] },
    );
    expect(spec.root!.path).to.equal('/run/gcs/c/c1/rootfs');
    expect(spec).to.not.have.property('mounts');
    await resources.release();
  });

  it('shares root.path through Plan9 when a LCOW container has no layers; root.path becomes the share path', async () => {
    const u = await lcow();
    const { spec, resources } = await allocateContainer(u, { root: { path: '/rootdir', readonly: true }, mounts: [] }, { containerId: 'c1' });
    expect(spec.root).to.deep.equal({ path: '/run/mounts/plan9/0', readonly: true });
    expect(resources.rootfsPath).to.equal('/run/mounts/plan9/0');
    expect(u.plan9.describe()).to.deep.equal([
      { kind: 'plan9-share', hostPath: '/rootdir', slot: '0', guestPath: '/run/mounts/plan9/0', key: '["/rootdir",true,false]', state: 'live', refCount: 1 },
    ]);
    expect(resources.held.map((h) => h.kind)).to.deep.equal(['root-share']);
    expect(u.ops(), 'no overlay').to.deep.equal(['Add Plan9/Shares 0 + Add MappedDirectory /run/mounts/plan9/0']);
    await resources.release();
    expect(u.held()).to.deep.equal([]);
  });

  it('rejects a root.path that is not a directory, and a LCOW spec with no rootfs at all', async () => {
    const u = await lcow();
    await expectCode(allocateContainer(u, { root: { path: '/cfg/app.conf' } }, { containerId: 'c1' }), 'INVALID_ARGUMENT');
    await expectCode(allocateContainer(u, { root: { path: 'relative' } }, { containerId: 'c1' }), 'INVALID_ARGUMENT');
    await expectCode(allocateContainer(u, {}, { containerId: 'c1' }), 'INVALID_SPEC');
    expect(u.ops()).to.deep.equal([]);
  });

  it('allocates a WCOW container with its MappedDirectory and MappedPipe entries', async () => {
    const u = await upperUvm('windows', { hostFs: (fs) => fs.dir('C:\\l\\base').file('C:\\s\\sandbox.vhdx').dir('C:\\data').file('C:\\d.vhdx') });
    const { spec, resources, containerEntries } = await allocateContainer(
      u,
      {
        root: { path: '' },
        windows: { layerFolders: ['C:\\l\\base', 'C:\\s'] },
        mounts: [
          { destination: 'C:\\data', source: 'C:\\data', options: ['ro'] },
          { destination: 'C:\\disk', type: 'virtual-disk', source: 'C:\\d.vhdx' },
          { destination: '\\\\.\\pipe\\p', source: '\\\\.\\pipe\\host' },
        ],
      },
      { containerId: 'w1' },
    );
    expect(spec.root!.path).to.equal('c:\\mounts\\scsi\\m0');
    expect(spec.mounts).to.deep.equal([
      { destination: 'C:\\data', source: `${VSMB}\\s2`, options: ['ro'] },
      { destination: 'C:\\disk', source: 'c:\\mounts\\scsi\\m1' },
      { destination: '\\\\.\\pipe\\p', source: `${VSMB}\\IPC$\\host` },
    ]);
    expect(containerEntries).to.deep.equal([
      { kind: 'mapped-directory', value: { HostPath: `${VSMB}\\s2`, ContainerPath: 'C:\\data', ReadOnly: true } },
      { kind: 'mapped-directory', value: { HostPath: 'c:\\mounts\\scsi\\m1', ContainerPath: 'C:\\disk' } },
      { kind: 'mapped-pipe', value: { ContainerPipeName: 'p', HostPath: `${VSMB}\\IPC$\\host` } },
    ]);
    await resources.release();
    expect(u.held()).to.deep.equal([]);
  });

  it('plans every mount before acquiring anything: a bad mount fails with no call at all', async () => {
    const u = await lcow();
    const spec = lcowSpec();
    spec.mounts!.push({ destination: '/h', type: 'bind', source: 'hugepages://1G/x' });
    const err = await expectCode(allocateContainer(u, spec, { containerId: 'c1' }), 'INVALID_SPEC');
    expect(err.details.mountIndex).to.equal(4);
    expect(u.ops()).to.deep.equal([]);
  });

  it('releases the layers and earlier mounts when a mount cannot be attached', async () => {
    const u = await lcow();
    failModify(u, /^Add Scsi\/0\/Attachments\/2$/);
    const err = await expectCode(allocateContainer(u, lcowSpec(), { containerId: 'c1' }), 'HCS_ERROR');
    expect(err.details.mountIndex).to.equal(3);
    // Every Add that succeeded is undone (the failed attach changed nothing).
    expect(removals(u).filter((o) => o.startsWith('Remove')).length).to.equal(adds(u).filter((o) => o.startsWith('Add')).length - 1);
    expect(u.held()).to.deep.equal([]);
  });

  it('fails with NO_SLOT before any call when the disk mount has no slot', async () => {
    const u = await lcow({ reservedScsiSlots: Array.from({ length: 62 }, (_, i) => i) });
    const err = await expectCode(allocateContainer(u, lcowSpec(), { containerId: 'c1' }), 'NO_SLOT');
    expect(err.details.mountIndex).to.equal(3);
    expect(u.ops()).to.deep.equal([]);
    expect(u.held()).to.deep.equal([]);
  });

  for (const containerId of ['', '../x', 'a/b', 'a\\b', 'a:b', 'a..b', 'x'.repeat(200), 'tab\there']) {
    it(`rejects the container id ${JSON.stringify(containerId.slice(0, 10))} with INVALID_ARGUMENT before any call`, async () => {
      const u = await lcow();
      await expectCode(allocateContainer(u, lcowSpec(), { containerId }), 'INVALID_ARGUMENT');
      expect(u.ops()).to.deep.equal([]);
    });
  }

  it('rejects a spec that is not an object with INVALID_SPEC', async () => {
    await expectCode(allocateContainer(await lcow(), null as unknown as OciSpec, { containerId: 'c1' }), 'INVALID_SPEC');
  });
});

describe('planContainer (the reservation, over the real managers)', () => {
  async function kitLcow(config: Partial<UvmDeviceConfig> = {}): Promise<{ u: KitUvm; hcsCalls: () => number }> {
    const kit = await deviceKit({ os: 'linux', vpmemCount: 4, vpmemMaxSizeBytes: 1024 * 1024, ...config });
    kit.hostFs
      .file('/l/1/layer.vhd', 1000)
      .file('/l/2/layer.vhd', 2 * 1024 * 1024)
      .file('/s/sandbox.vhdx')
      .dir('/data')
      .file('/cfg/app.conf')
      .file('/disks/d.vhdx')
      .dir('/rootdir');
    return { u: kitUvm(kit), hcsCalls: () => kit.hcs.calls.length };
  }

  it('shows the places the allocation then takes, with no call: layers, scratch, mounts, slots left', async () => {
    const { u, hcsCalls } = await kitLcow({ vpmemCount: 1 });
    const calls = hcsCalls();
    const plan = await planContainer(u, lcowSpec(), { containerId: 'c1' });
    expect(hcsCalls(), 'no HCS call').to.equal(calls);
    expect(u.scsi.describe().concat(u.vpmem.describe(), u.plan9.describe()), 'everything cancelled').to.deep.equal([]);
    expect(plan.containerId).to.equal('c1');
    const lp = plan.rootfs.kind === 'layers' && plan.rootfs.plan.os === 'linux' ? plan.rootfs.plan : undefined;
    expect(lp!.layers.map((l) => [l.target, l.reason ?? null, l.slot, l.guestPath])).to.deep.equal([
      ['vpmem', null, '0', '/run/layers/p0'],
      ['scsi', 'too-large', '0:0', '/run/mounts/scsi/m0'],
    ]);
    expect(lp!.scratch).to.deep.include({ slot: '0:1', mountPath: '/run/gcs/c/c1', shared: false });
    expect(plan.mounts.map((m) => [m.kind === 'device' ? m.device : m.kind, m.slot ?? null, m.guestPath ?? null])).to.deep.equal([
      ['keep', null, null],
      ['plan9', '0', '/run/mounts/plan9/0'],
      ['plan9', '1', '/run/mounts/plan9/1/app.conf'],
      ['scsi', '0:2', '/run/mounts/scsi/m1'],
    ]);
    // 64 LUNs - big layer - scratch - disk mount.
    expect(plan.slotsLeft).to.deep.equal({ vpmem: 0, scsi: 61 });
    expect(plan.fits).to.equal(true);
    const { spec, resources } = await allocateContainer(u, lcowSpec(), { containerId: 'c1' });
    expect(spec.mounts!.map((m) => m.source)).to.deep.equal(['proc', ...plan.mounts.slice(1).map((m) => m.guestPath)]);
    await resources.release();
  });

  it('a container the UVM cannot take is fits: false with the reasons, and its allocation fails with that code', async () => {
    const { u } = await kitLcow({ vpmemCount: 0, reservedScsiSlots: Array.from({ length: 62 }, (_, i) => i) });
    const plan = await planContainer(u, lcowSpec(), { containerId: 'c1' });
    expect(plan.fits).to.equal(false);
    // Two layers fit; the scratch and the disk mount do not.
    expect(plan.unfit!.map((x) => x.code)).to.deep.equal(['NO_SLOT', 'NO_SLOT']);
    expect(plan.unfit![1]!.details.mountIndex).to.equal(3);
    const lp = plan.rootfs.kind === 'layers' && plan.rootfs.plan.os === 'linux' ? plan.rootfs.plan : undefined;
    expect(lp!.layers.map((l) => l.slot)).to.deep.equal(['0:62', '0:63']);
    expect(lp!.scratch.slot).to.equal(undefined);
    await expectCode(allocateContainer(u, lcowSpec(), { containerId: 'c1' }), 'NO_SLOT');
  });

  it('counts the SCSI slots taken at boot as not free (slotsLeft)', async () => {
    const { u } = await kitLcow({ vpmemCount: 1, reservedScsiSlots: [0, 1, 2] });
    const plan = await planContainer(u, lcowSpec(), { containerId: 'c1' });
    const lp = plan.rootfs.kind === 'layers' && plan.rootfs.plan.os === 'linux' ? plan.rootfs.plan : undefined;
    expect(lp!.layers[1]!.slot, 'the first free LUN').to.equal('0:3');
    // 64 LUNs - 3 taken at boot - big layer - scratch - disk mount.
    expect(plan.slotsLeft).to.deep.equal({ vpmem: 0, scsi: 58 });
    // The same count the SCSI manager's own allocator has left after the allocation.
    const { resources } = await allocateContainer(u, lcowSpec(), { containerId: 'c1' });
    expect(u.scsi.describe().filter((i) => i.kind === 'scsi-attachment')).to.have.length(3);
    await resources.release();
  });

  it('plans a Plan9 root share for a LCOW container without layers', async () => {
    const { u } = await kitLcow();
    const plan = await planContainer(u, { root: { path: '/rootdir' } }, { containerId: 'c1' });
    expect(plan.rootfs).to.deep.equal({ kind: 'plan9-root', hostPath: '/rootdir', readOnly: false, shared: false, slot: '0', guestPath: '/run/mounts/plan9/0' });
    expect(plan.slotsLeft).to.deep.equal({ vpmem: 4, scsi: 64 });
  });

  it('rejects what allocateContainer rejects, with the same codes', async () => {
    const { u } = await kitLcow();
    const spec = lcowSpec();
    spec.mounts!.push({ destination: '/x/../y', type: 'bind', source: '/data' });
    const err = await expectCode(planContainer(u, spec, { containerId: 'c1' }), 'INVALID_ARGUMENT');
    expect(err.details.mountIndex).to.equal(4);
    await expectCode(planContainer(u, lcowSpec(), { containerId: '..' }), 'INVALID_ARGUMENT');
  });
});

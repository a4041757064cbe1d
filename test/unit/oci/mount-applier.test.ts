import { expect } from 'chai';
import { applyMountPlan } from '../../../src/oci/mount-applier.js';
import { planMounts } from '../../../src/oci/mount-planner.js';
import type { OciMount } from '../../../src/oci/oci-spec.js';
import type { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { expectCode } from '../../fakes/expect-code.js';
import { failModify, upperUvm, type KitUvm } from '../devices/device-test-kit.js';

const VSMB = '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}';

function files(fs: FakeHostFs): FakeHostFs {
  return fs.dir('/data').file('/cfg/app.conf').dir('C:\\data').file('C:\\cfg\\app.json').file('/disks/d.vhdx').file('/disks/v.vhdx').file('/x.vhdx').file('C:\\disks\\v.vhdx');
}

const lcow = (): Promise<KitUvm> => upperUvm('linux', { hostFs: files });

async function apply(uvm: KitUvm, mounts: OciMount[]) {
  const spec = { ociVersion: '1.1.0', mounts };
  const plan = await planMounts(spec, uvm.facts, 'c1', uvm.hostFs);
  const result = await applyMountPlan(uvm, spec, plan);
  expect(result.spec.mounts).to.deep.equal(result.mounts.map((m) => m.mount));
  expect(result.spec.ociVersion).to.equal('1.1.0');
  expect(result.held).to.deep.equal(result.mounts.flatMap((m) => (m.held ? [m.held] : [])));
  return result.mounts;
}

async function releaseAll(applied: { held?: { release(): Promise<void> } }[]): Promise<void> {
  for (const a of [...applied].reverse()) await a.held?.release();
}

const adds = (u: KitUvm, mark = 0): string[] => u.ops(mark).filter((o) => /^(guest )?Add/.test(o));
const removals = (u: KitUvm, mark = 0): string[] => u.ops(mark).filter((o) => /^(guest )?Remove/.test(o));

describe('applyMountPlan', () => {
  it('rewrites LCOW mounts to the guest paths the managers hand out', async () => {
    const uvm = await lcow();
    const mounts: OciMount[] = [
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid'] },
      { destination: '/d', type: 'bind', source: '/data', options: ['rbind'] },
      { destination: '/etc/app.conf', type: 'bind', source: '/cfg/app.conf', options: ['ro'] },
      { destination: '/v', type: 'virtual-disk', source: '/disks/d.vhdx', options: ['ro'] },
      { destination: 'blockdev:///dev/b', type: 'physical-disk', source: '\\\\.\\PHYSICALDRIVE1' },
      { destination: '/s', type: 'bind', source: 'sandbox://cache' },
    ];
    const applied = await apply(uvm, mounts);
    expect(applied.map((a) => a.mount)).to.deep.equal([
      mounts[0],
      { destination: '/d', type: 'bind', source: '/run/mounts/plan9/0', options: ['rbind'] },
      { destination: '/etc/app.conf', type: 'bind', source: '/run/mounts/plan9/1/app.conf', options: ['ro'] },
      { destination: '/v', type: 'none', source: '/run/mounts/scsi/m0', options: ['ro'] },
      { destination: 'blockdev:///dev/b', type: 'bind', source: '/run/mounts/scsi/m1' },
      mounts[5],
    ]);
    expect(applied.map((a) => a.containerEntry)).to.deep.equal(new Array(6).fill(undefined));
    expect(applied[1]!.mount).to.not.equal(mounts[1]);
    expect(mounts[1]!.source, 'the input is not mutated').to.equal('/data');
    // Two Plan9 shares and two disks (attach + guest mount each); slots in spec order.
    expect(adds(uvm)).to.have.members([
      'Add Plan9/Shares 0 + Add MappedDirectory /run/mounts/plan9/0',
      'Add Plan9/Shares 1 + Add MappedDirectory /run/mounts/plan9/1',
      'Add Scsi/0/Attachments/0',
      'guest Add MappedVirtualDisk /run/mounts/scsi/m0',
      'Add Scsi/0/Attachments/1',
      'guest Add MappedVirtualDisk /run/mounts/scsi/m1',
    ]);
    await releaseAll(applied);
    expect(uvm.held()).to.deep.equal([]);
  });

  it('rewrites WCOW mounts and builds the MappedDirectory / MappedPipe entries', async () => {
    const uvm = await upperUvm('windows', { hostFs: files });
    const applied = await apply(uvm, [
      { destination: 'C:\\d', source: 'C:\\data' },
      { destination: 'C:\\app.json', source: 'C:\\cfg\\app.json', options: ['ro'] },
      { destination: 'C:\\v', type: 'virtual-disk', source: 'C:\\disks\\v.vhdx' },
      { destination: 'C:\\s', source: 'sandbox://x' },
      { destination: '\\\\.\\pipe\\in', source: '\\\\.\\pipe\\docker_engine' },
      { destination: '\\\\.\\pipe\\u', source: 'uvm://\\\\.\\pipe\\u' },
    ]);
    expect(applied.map((a) => a.mount.source)).to.deep.equal([
      `${VSMB}\\s1`,
      `${VSMB}\\s2\\app.json`,
      'c:\\mounts\\scsi\\m0',
      'C:\\SandboxMounts\\x',
      `${VSMB}\\IPC$\\docker_engine`,
      '\\\\.\\pipe\\uvm-w\\u',
    ]);
    expect(applied[2]!.mount).to.not.have.property('type');
    expect(applied.map((a) => a.containerEntry)).to.deep.equal([
      { kind: 'mapped-directory', value: { HostPath: `${VSMB}\\s1`, ContainerPath: 'C:\\d' } },
      { kind: 'mapped-directory', value: { HostPath: `${VSMB}\\s2\\app.json`, ContainerPath: 'C:\\app.json', ReadOnly: true } },
      { kind: 'mapped-directory', value: { HostPath: 'c:\\mounts\\scsi\\m0', ContainerPath: 'C:\\v' } },
      { kind: 'mapped-directory', value: { HostPath: 'C:\\SandboxMounts\\x', ContainerPath: 'C:\\s' } },
      { kind: 'mapped-pipe', value: { ContainerPipeName: 'in', HostPath: `${VSMB}\\IPC$\\docker_engine` } },
      { kind: 'mapped-pipe', value: { ContainerPipeName: 'u', HostPath: '\\\\.\\pipe\\uvm-w\\u' } },
    ]);
    // Mounts are acquired concurrently: every one is added, in no particular completion order.
    expect(adds(uvm)).to.have.members([
      'Add VirtualSmb/Shares s1',
      'Add VirtualSmb/Shares s2',
      'Add Scsi/0/Attachments/0',
      'guest Add MappedVirtualDisk c:\\mounts\\scsi\\m0',
      'Add MappedPipes/\\\\.\\pipe\\docker_engine',
    ]);
    // The single-file share exposes only that file.
    expect((uvm.kit.docs() as { Settings?: { Name?: string } }[]).find((d) => d.Settings?.Name === 's2')).to.deep.nested.include({
      'Settings.Path': 'C:\\cfg',
      'Settings.AllowedFiles': ['C:\\cfg\\app.json'],
    });
    await releaseAll(applied);
    expect(uvm.held()).to.deep.equal([]);
  });

  it('shares one resource between two mounts of the same source (refcount)', async () => {
    const uvm = await lcow();
    const applied = await apply(uvm, [
      { destination: '/a', type: 'bind', source: '/data' },
      { destination: '/b', type: 'bind', source: '/data' },
    ]);
    expect(applied[0]!.mount.source).to.equal(applied[1]!.mount.source);
    expect(uvm.plan9.describe().map((i) => i.refCount)).to.deep.equal([2]);
    expect(adds(uvm)).to.deep.equal(['Add Plan9/Shares 0 + Add MappedDirectory /run/mounts/plan9/0']);
    await applied[0]!.held!.release();
    expect(removals(uvm)).to.deep.equal([]);
    await applied[1]!.held!.release();
    expect(removals(uvm)).to.deep.equal(['Remove Plan9/Shares 0 + Remove MappedDirectory /run/mounts/plan9/0']);
  });

  it('releases what it acquired when a disk cannot be attached (HCS), and names the mount', async () => {
    const uvm = await lcow();
    failModify(uvm, /^Add Scsi/);
    const spec = {
      mounts: [
        { destination: '/a', type: 'bind', source: '/data' },
        { destination: '/b', type: 'bind', source: '/cfg/app.conf' },
        { destination: '/v', type: 'virtual-disk', source: '/disks/v.vhdx' },
      ],
    };
    const plan = await planMounts(spec, uvm.facts, 'c1', uvm.hostFs);
    const err = await expectCode(applyMountPlan(uvm, spec, plan), 'HCS_ERROR');
    expect(err.details.mountIndex).to.equal(2);
    expect(err.details.destination).to.equal('/v');
    expect(removals(uvm)).to.have.members([
      'Remove Plan9/Shares 1 + Remove MappedDirectory /run/mounts/plan9/1',
      'Remove Plan9/Shares 0 + Remove MappedDirectory /run/mounts/plan9/0',
    ]);
    expect(uvm.held()).to.deep.equal([]);
  });

  it('fails with NO_SLOT before any call when SCSI is full, and names the mount', async () => {
    const uvm = await upperUvm('linux', { hostFs: files, config: { reservedScsiSlots: Array.from({ length: 64 }, (_, i) => i) } });
    const spec = { mounts: [{ destination: '/a', type: 'bind', source: '/data' }, { destination: '/v', type: 'virtual-disk', source: '/disks/v.vhdx' }] };
    const plan = await planMounts(spec, uvm.facts, 'c1', uvm.hostFs);
    const err = await expectCode(applyMountPlan(uvm, spec, plan), 'NO_SLOT');
    expect(err.details.mountIndex).to.equal(1);
    expect(uvm.ops()).to.deep.equal([]);
    expect(uvm.held()).to.deep.equal([]);
  });

  it('reports a failed rollback on the error and leaves the failed release retryable', async () => {
    const uvm = await lcow();
    failModify(uvm, /^Add Scsi/);
    failModify(uvm, /^Remove Plan9/);
    const spec = { mounts: [{ destination: '/a', type: 'bind', source: '/data' }, { destination: '/v', type: 'virtual-disk', source: '/x.vhdx' }] };
    const plan = await planMounts(spec, uvm.facts, 'c1', uvm.hostFs);
    const err = await expectCode(applyMountPlan(uvm, spec, plan), 'HCS_ERROR');
    expect(err.details.mountIndex).to.equal(1);
    expect(err.details.rollbackError).to.have.property('code', 'RELEASE_FAILED');
    expect(uvm.held()).to.deep.equal(['plan9-share ["/data",false,false] teardown-failed']);
    expect(uvm.leftovers, 'handed to the UVM for retryFailedTeardowns').to.have.length(1);
    await uvm.retryLeftovers();
    expect(uvm.held()).to.deep.equal([]);
  });
});

// The SCSI manager's adoption path (crash recovery, docs/recovery.md): a second manager over the
// same compute system (a restarted shim) rebuilds the leases of disks the first one attached,
// with no HCS call, then refcounts and releases them exactly as if it had attached them.
import { expect } from 'chai';
import type { ScsiDiskRequest } from '../../../src/devices/device-types.js';
import { forgetFirstProcess, restartedManagers } from './adopt-kit.js';
import { deviceKit, rejectsWithCode } from './device-test-kit.js';

const layer: ScsiDiskRequest = { hostPath: '/l/big/layer.vhd', readOnly: true, mount: { options: ['ro'] } };
const scratch: ScsiDiskRequest = { hostPath: '/c/sandbox.vhdx', readOnly: false, grantVmAccess: true, guestPath: '/run/gcs/c/c1', mount: { ensureFilesystem: true, filesystem: 'ext4' } };
const tools: ScsiDiskRequest = { hostPath: '/d/tools.vhdx', readOnly: true };


describe('ScsiManager.adopt (recovery)', () => {
  it('rebuilds leases with no HCS call, then shares, allocates around and releases them like its own', async () => {
    const kit = await deviceKit({ os: 'linux', scsiControllers: 2 });
    const before = [await kit.scsi.acquire(layer), await kit.scsi.acquire(scratch), await kit.scsi.acquire(tools)];
    const described = kit.scsi.describe();
    const calls = kit.hcs.calls.length;

    const { scsi } = restartedManagers(kit);
    const adopted = [];
    for (const [i, request] of [layer, scratch, tools].entries()) adopted.push(await scsi.adopt(request, before[i]!.value));
    expect(kit.hcs.calls.length, 'HCS calls made by adoption').to.equal(calls);
    expect(adopted.map((l) => l.value)).to.deep.equal(before.map((l) => l.value));
    expect(scsi.describe()).to.deep.equal(described);

    // Refcounting goes on: the same layer is shared, a new disk avoids the adopted slots and paths.
    const shared = await scsi.acquire(layer);
    expect(shared.value).to.deep.equal(before[0]!.value);
    const fresh = await scsi.acquire({ hostPath: '/d/new.vhdx', readOnly: true, mount: {} });
    expect([fresh.value.controller, fresh.value.lun, fresh.value.guestPath]).to.deep.equal([0, 3, '/run/mounts/scsi/m1']);

    const start = kit.docs().length;
    await shared.release();
    expect(kit.docs().length, 'a shared release removes nothing').to.equal(start);
    for (const lease of [fresh, ...adopted]) await lease.release();
    // Every disk leaves as it would have: guest unmount, guest unplug, host removal.
    const removals = kit.docs().slice(start) as { ResourcePath?: string; GuestRequest?: { ResourceType: string } }[];
    expect(removals.map((d) => d.GuestRequest?.ResourceType ?? d.ResourcePath!.replace(/.*Attachments\//, 'host lun '))).to.deep.equal([
      'MappedVirtualDisk',
      'SCSIDevice',
      'host lun 3',
      'MappedVirtualDisk',
      'SCSIDevice',
      'host lun 0',
      'MappedVirtualDisk',
      'SCSIDevice',
      'host lun 1',
      'SCSIDevice',
      'host lun 2',
    ]);
    expect(kit.system.attached()).to.deep.equal([]);
    await forgetFirstProcess(kit, before);
  });

  it('adopting the same disk twice shares one entry (refcount 2)', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const lease = await kit.scsi.acquire(layer);
    const { scsi } = restartedManagers(kit);
    const a = await scsi.adopt(layer, lease.value);
    const b = await scsi.adopt(layer, lease.value);
    expect(scsi.describe().map((r) => [r.kind, r.refCount])).to.deep.equal([
      ['scsi-attachment', 2],
      ['scsi-mount', 2],
    ]);
    await a.release();
    await b.release();
    expect(kit.system.attached()).to.deep.equal([]);
    await forgetFirstProcess(kit, [lease]);
  });

  it('rejects a journal that disagrees with itself or with the UVM, adopting nothing', async () => {
    const kit = await deviceKit({ os: 'linux' });
    const lease = await kit.scsi.acquire(layer);
    const toolsLease = await kit.scsi.acquire(tools);
    const { scsi } = restartedManagers(kit, { reservedScsiSlots: [5] });
    const first = await scsi.adopt(layer, lease.value);
    const toolsValue = toolsLease.value;
    const second = await scsi.adopt(tools, toolsValue);
    // The same disk recorded at another slot.
    await rejectsWithCode(scsi.adopt(tools, { ...toolsValue, lun: 7 }), 'RECOVERY_FAILED');
    // Another disk recorded at a slot that is taken, or reserved.
    await rejectsWithCode(scsi.adopt({ hostPath: '/d/other.vhdx', readOnly: true }, { ...toolsValue, lun: 0, hostPath: '/d/other.vhdx' }), 'NO_SLOT');
    await rejectsWithCode(scsi.adopt({ hostPath: '/d/other.vhdx', readOnly: true }, { ...toolsValue, lun: 5, hostPath: '/d/other.vhdx' }), 'NO_SLOT');
    // A mounted disk without a recorded guest path; a mount path another mount has (nothing attached then).
    await rejectsWithCode(scsi.adopt(layer, { ...lease.value, guestPath: undefined }), 'RECOVERY_FAILED');
    await rejectsWithCode(scsi.adopt({ hostPath: '/d/other.vhdx', readOnly: true, mount: {} }, { ...toolsValue, lun: 9, hostPath: '/d/other.vhdx', guestPath: '/run/mounts/scsi/m0' }), 'MOUNT_CONFLICT');
    // Bad input is still bad input.
    await rejectsWithCode(scsi.adopt({ hostPath: 'relative', readOnly: true }, lease.value), 'INVALID_ARGUMENT');
    expect(scsi.describe().map((r) => [r.kind, r.slot, r.refCount])).to.deep.equal([
      ['scsi-attachment', '0:0', 1],
      ['scsi-attachment', '0:1', 1],
      ['scsi-mount', '0:0', 1],
    ]);
    expect(kit.hcs.calls.filter((c) => c.fn === 'modify')).to.have.length(3);
    await second.release();
    await first.release();
    expect(kit.system.attached()).to.deep.equal([]);
    await forgetFirstProcess(kit, [lease, toolsLease]);
  });
});

// scsi.acquire grants VM access by default for a writable virtual disk, as hcsshim does; a
// read-only disk (layers: the VM-group grant) or a pass-through disk only when asked.
import { expect } from 'chai';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { createUvmOrchestrator } from '../../../src/di/uvm-orchestrator.js';
import { FakeHcs } from '../../../src/hcs/fake-hcs.js';
import { grantsVmAccess } from '../../../src/devices/scsi-parse.js';
import { HCS_DELIVERY } from '../../fakes/fake-gcs.js';

describe('SCSI: VM access granted by default for writable disks', () => {
  it('the rule', () => {
    expect(grantsVmAccess({ readOnly: false })).to.equal(true);
    expect(grantsVmAccess({ readOnly: false, type: 'VirtualDisk' })).to.equal(true);
    expect(grantsVmAccess({ readOnly: true })).to.equal(false);
    expect(grantsVmAccess({ readOnly: false, type: 'PassThru' })).to.equal(false);
    expect(grantsVmAccess({ readOnly: true, grantVmAccess: true })).to.equal(true);
    expect(grantsVmAccess({ readOnly: false, grantVmAccess: false })).to.equal(false);
  });

  it('acquire on a UVM: a writable disk is granted before it is attached, a read-only one is not', async () => {
    const hcs = new FakeHcs();
    const { createUtilityVm } = createUvmOrchestrator({ ...HCS_DELIVERY, hcs, hostFs: new FakeHostFs().file('/vhd/rw.vhdx').file('/vhd/ro.vhdx') });
    const uvm = await createUtilityVm({ id: 'grant', os: 'linux' });
    await uvm.start();
    const rw = await uvm.scsi.acquire({ hostPath: '/vhd/rw.vhdx', readOnly: false });
    const ro = await uvm.scsi.acquire({ hostPath: '/vhd/ro.vhdx', readOnly: true });
    const grants = hcs.calls.filter((c) => c.fn === 'grant').map((c) => (c.doc as { path: string }).path);
    expect(grants).to.deep.equal(['/vhd/rw.vhdx']);
    const firstGrant = hcs.calls.findIndex((c) => c.fn === 'grant');
    const firstModify = hcs.calls.findIndex((c) => c.fn === 'modify');
    expect(firstGrant).to.be.lessThan(firstModify);
    await ro.release();
    await rw.release();
    expect(uvm.describe()).to.deep.equal([]);
    await uvm.terminate();
    uvm.close();
  });
});

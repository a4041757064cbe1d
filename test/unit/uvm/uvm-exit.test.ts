import { expect } from 'chai';
import sinon from 'sinon';
import { UvmError } from '../../../src/core/errors.js';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { createLogger } from '../../../src/core/logger.js';
import { createUvmOrchestrator } from '../../../src/di/uvm-orchestrator.js';
import { FakeComputeSystem, FakeHcs } from '../../../src/hcs/fake-hcs.js';
import { describeExit } from '../../../src/uvm/uvm-exit.js';
import type { UtilityVm } from '../../../src/uvm/utility-vm.js';
import type { UtilityVmOptions } from '../../../src/uvm/uvm-options.js';
import { rejectsWithCode } from '../devices/device-test-kit.js';
import { HCS_DELIVERY } from '../../fakes/fake-gcs.js';

async function started(options: Partial<UtilityVmOptions> = {}): Promise<{ hcs: FakeHcs; hostFs: FakeHostFs; uvm: UtilityVm; system: FakeComputeSystem }> {
  const hcs = new FakeHcs();
  const hostFs = new FakeHostFs().file('/l/a.vhd', 1024).file('/l/b.vhd', 1024);
  const o = createUvmOrchestrator({ ...HCS_DELIVERY, hcs, hostFs, logger: createLogger({ level: 'silent' }) });
  const uvm = await o.createUtilityVm({ id: 'vm', os: 'linux', vpmem: { count: 4 }, ...options });
  await uvm.start();
  return { hcs, hostFs, uvm, system: hcs.systems.get('vm') as FakeComputeSystem };
}

describe('UtilityVm: an unexpected exit (FakeHcs SystemExited)', () => {
  it('rejects the call in flight at once with UVM_EXITED, later calls before HCS, and releases without HCS calls', async () => {
    const { hcs, uvm, system } = await started();
    const held = await uvm.vpmem.acquire({ hostPath: '/l/a.vhd' });
    const gate = hcs.gate((c) => c.fn === 'modify');
    const inFlight = uvm.scsi.acquire({ hostPath: '/d/x.vhdx', readOnly: false });
    await Promise.resolve();
    system.crash();
    const err = await rejectsWithCode(inFlight, 'UVM_EXITED');
    expect(err.message).to.match(/UVM vm exited unexpectedly: UnexpectedExit, status 0x80370106 \(SystemExit UnexpectedExit, initiator Internal\)/);
    const exit = await uvm.exited;
    expect(exit).to.deep.include({ exitType: 'UnexpectedExit', status: 0x80370106 | 0, unexpected: true });
    expect(uvm.phase).to.equal('terminated');
    const before = hcs.calls.length;
    await rejectsWithCode(uvm.vpmem.acquire({ hostPath: '/l/b.vhd' }), 'UVM_EXITED');
    await rejectsWithCode(uvm.start(), 'UVM_EXITED');
    await held.release();
    expect(hcs.calls.length).to.equal(before);
    expect(uvm.describe()).to.deep.equal([]);
    await uvm.terminate();
    expect(hcs.calls.length).to.equal(before);
    gate.open();
    uvm.close();
  });

  it('a guest-connection call in flight rejects with UVM_EXITED too', async () => {
    let release!: () => void;
    const connection = { modifySettings: sinon.stub().returns(new Promise<void>((r) => (release = r))) };
    const { uvm, system } = await started({ guestConnection: connection });
    const inFlight = uvm.sendGuestRequest({ RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/c', Layers: [] } });
    await Promise.resolve();
    system.crash({ GuestCrash: {} });
    await rejectsWithCode(inFlight, 'UVM_EXITED');
    expect((await uvm.exited).message).to.equal('UVM vm exited unexpectedly: UnexpectedExit, status 0x80370106 (GuestCrash)');
    release();
    uvm.close();
  });

  it('a guest-connection call that fails with BRIDGE_FAILED before the exit event arrives rejects with UVM_EXITED (the VM is stopped)', async () => {
    let fail!: (err: unknown) => void;
    const connection = { modifySettings: sinon.stub().returns(new Promise<void>((_, reject) => (fail = reject))) };
    const { uvm, system } = await started({ guestConnection: connection });
    const inFlight = uvm.sendGuestRequest({ RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/c', Layers: [] } });
    await Promise.resolve();
    // The guest's connection drops with the VM before HCS's SystemExited is delivered.
    fail(new UvmError('BRIDGE_FAILED', 'GCS bridge of vm failed: connection closed'));
    system.crash();
    const err = await rejectsWithCode(inFlight, 'UVM_EXITED');
    expect(UvmError.is(err.cause, 'BRIDGE_FAILED')).to.equal(true);
    uvm.close();
  });

  it('a guest-connection call that throws BRIDGE_FAILED synchronously is classified like a rejection (UVM_EXITED: the VM is stopped)', async () => {
    const connection = {
      modifySettings: sinon.stub().callsFake(() => {
        throw new UvmError('BRIDGE_FAILED', 'GCS bridge of vm failed: connection closed');
      }),
    };
    const { uvm, system } = await started({ guestConnection: connection });
    const inFlight = uvm.sendGuestRequest({ RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/c', Layers: [] } });
    system.crash();
    const err = await rejectsWithCode(inFlight, 'UVM_EXITED');
    expect(UvmError.is(err.cause, 'BRIDGE_FAILED')).to.equal(true);
    uvm.close();
  });

  it('a BRIDGE_FAILED while the VM runs stays BRIDGE_FAILED', async () => {
    const connection = { modifySettings: sinon.stub().rejects(new UvmError('BRIDGE_FAILED', 'GCS bridge of vm failed: connection closed')) };
    const { uvm } = await started({ guestConnection: connection });
    await rejectsWithCode(uvm.sendGuestRequest({ RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/c', Layers: [] } }), 'BRIDGE_FAILED');
    await uvm.terminate();
    uvm.close();
  });

  it('terminate: the exit is expected (ForcedExit), nothing rejects with UVM_EXITED', async () => {
    const { uvm } = await started();
    const lease = await uvm.vpmem.acquire({ hostPath: '/l/a.vhd' });
    await lease.release();
    await uvm.terminate();
    const exit = await uvm.exited;
    expect(exit).to.deep.include({ exitType: 'ForcedExit', unexpected: false });
    expect(exit.message).to.equal('UVM vm exited: ForcedExit (SystemExit Terminate, initiator Client)');
    uvm.close();
  });

  it('describeExit names the exit type, status and attribution', () => {
    expect(describeExit('p', { exitType: 'GracefulExit', status: 0, attribution: [], document: undefined }, false)).to.equal('UVM p exited: GracefulExit');
    expect(describeExit('p', { exitType: 'ServiceDisconnect', status: 0, attribution: [], document: undefined }, true)).to.equal(
      'UVM p exited unexpectedly: ServiceDisconnect',
    );
  });
});

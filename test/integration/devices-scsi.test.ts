import { expect } from 'chai';
import { UvmError } from '../../src/core/errors.js';
import { configureSimulator } from '../../src/hcs/simulator-controls.js';
import { disposeUvms, hcs, modifyCalls, expectEmpty, expectInSync, randomSoak, simulatorState, SOAK, startUvm } from './devices-support.js';

describe('integration: SCSI through the simulator', function () {
  this.timeout(60000);
  afterEach(disposeUvms);

  it('attaches, shares between two owners, releases both; HotAdded 0', async () => {
    const uvm = await startUvm({ os: 'linux' });
    const req = { hostPath: '/disks/layer.vhd', readOnly: true, mount: { options: ['ro'] } };
    const a = await uvm.scsi.acquire(req);
    const b = await uvm.scsi.acquire(req);
    expect(b.value).to.deep.equal(a.value);
    const state = await simulatorState(uvm);
    expect(state.HotAdded).to.equal(2);
    await expectInSync(uvm);
    await a.release();
    await expectInSync(uvm);
    await b.release();
    await expectEmpty(uvm);
  });

  it('WCOW: attach + ContainerPath mount, no unplug; grant recorded', async () => {
    const uvm = await startUvm({ os: 'windows' });
    const a = await uvm.scsi.acquire({ hostPath: 'C:\\s\\sandbox.vhdx', readOnly: false, mount: {}, grantVmAccess: true });
    expect(a.value.guestPath).to.equal('c:\\mounts\\scsi\\m0');
    const state = await simulatorState(uvm);
    expect(state.VmAccess).to.deep.equal([{ VmId: uvm.id, Path: 'C:\\s\\sandbox.vhdx' }]);
    await a.release();
    await expectEmpty(uvm);
  });

  it('fills 4 × 64 minus reserved slots, then NO_SLOT', async () => {
    const reserved = [
      { controller: 0, lun: 0 },
      { controller: 3, lun: 63 },
    ];
    const uvm = await startUvm({ os: 'linux', scsiControllers: 4, reservedScsiSlots: reserved });
    const leases = await Promise.all(Array.from({ length: 254 }, (_, i) => uvm.scsi.acquire({ hostPath: `/disks/${i}.vhd`, readOnly: true })));
    const slots = new Set(leases.map((l) => `${l.value.controller}:${l.value.lun}`));
    expect(slots.size).to.equal(254);
    expect(slots.has('0:0') || slots.has('3:63')).to.equal(false);
    let err: unknown;
    await uvm.scsi.acquire({ hostPath: '/disks/one-too-many.vhd', readOnly: true }).catch((e: unknown) => (err = e));
    expect(UvmError.is(err, 'NO_SLOT')).to.equal(true);
    await expectInSync(uvm);
    await Promise.all(leases.map((l) => l.release()));
    await expectEmpty(uvm);
  });

  it('a failed host remove is retried without a second unplug (the simulator would reject it)', async () => {
    const uvm = await startUvm({ os: 'linux' });
    const a = await uvm.scsi.acquire({ hostPath: '/disks/a.vhd', readOnly: true, mount: {} });
    configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', resourcePath: 'VirtualMachine/Devices/Scsi/*', nth: 1 }] });
    let err: unknown;
    await a.release().catch((e: unknown) => (err = e));
    expect(UvmError.is(err, 'TEARDOWN_FAILED')).to.equal(true);
    configureSimulator({ clearFaults: true });
    await a.release();
    await expectEmpty(uvm);
  });

  it('a VM stopped behind our back (another handle terminates it): the UVM sees the exit, releases need no HCS call', async () => {
    const uvm = await startUvm({ os: 'linux' });
    const a = await uvm.scsi.acquire({ hostPath: '/disks/a.vhd', readOnly: true, mount: {} });
    const other = await hcs.openComputeSystem(uvm.id);
    await other.terminate();
    other.close();
    // The SystemExited event (ForcedExit, not asked for by this UVM) makes it an unexpected exit.
    const exit = await uvm.exited;
    expect(exit).to.deep.include({ exitType: 'ForcedExit', unexpected: true });
    expect(uvm.phase).to.equal('terminated');
    const before = modifyCalls(uvm.id);
    await a.release();
    expect(modifyCalls(uvm.id)).to.equal(before);
    expect(uvm.describe()).to.deep.equal([]);
    await rejectsCode(uvm.scsi.acquire({ hostPath: '/disks/b.vhd', readOnly: true }), 'UVM_EXITED');
    await uvm.terminate(); // already gone: counts as terminated
  });

  it(`random concurrency: 64 workers × ${SOAK ? 1000 : 200} acquire/release, in sync at every quiescent point`, async () => {
    const uvm = await startUvm({ os: 'linux', scsiControllers: 4 });
    configureSimulator({ latency: { HcsModifyComputeSystem: { ms: 0, jitterMs: 1 } }, seed: 7 });
    const before = modifyCalls(uvm.id);
    const { acquires } = await randomSoak(
      uvm,
      (rand) => {
        const disk = Math.floor(rand() * 160);
        const mount = rand() < 0.7 ? { options: rand() < 0.5 ? ['ro'] : [] } : undefined;
        return uvm.scsi.acquire({ hostPath: `/disks/soak-${disk}.vhd`, readOnly: disk % 3 !== 0, mount });
      },
      { opsPerWorker: SOAK ? 1000 : 200, rounds: SOAK ? 20 : 8, seed: 1 },
    );
    configureSimulator({ latency: {} });
    const modifies = modifyCalls(uvm.id) - before;
    // Keys are created and destroyed many times over (not just held): real churn through HCS.
    expect(modifies).to.be.greaterThan(acquires / 5);
  });
});

async function rejectsCode(promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(UvmError.is(err) ? err.code : String(err)).to.equal(code);
}

// `openUtilityVm` (re-open after a shim restart, docs/recovery.md) of a UVM created in bridge mode,
// through the FFI and the simulator's guest: the re-opened UVM listens for the GCS again, the
// running guest redials (it does after any drop), and every guest half after the open goes over
// the new bridge while HCS modifies carry host halves only. Bridge mode whatever
// UVM_TEST_GUEST_DELIVERY says: the journal, not the orchestrator's default, keeps the mode.
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeHostFs } from '../../src/core/fake-host-fs.js';
import { createLogger } from '../../src/core/logger.js';
import { createUvmOrchestrator } from '../../src/di/uvm-orchestrator.js';
import { configureSimulator, readSimulatorState } from '../../src/hcs/simulator-controls.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import { detachTablesFromLeakCheck } from '../support/leak-checks.js';
import { expectedWire, traceDuring, wireRequests } from '../support/guest-halves.js';
import { hcs, resetTestSimulator, uniqueId } from './simulator-fixture.js';

const silent = createLogger({ level: 'silent' });
const vpmemHost = (requestType: 'Add' | 'Remove', device: number, hostPath?: string) => ({
  ResourcePath: `VirtualMachine/Devices/VirtualPMem/Devices/${device}`,
  RequestType: requestType,
  ...(hostPath !== undefined && { Settings: { HostPath: hostPath, ReadOnly: true, ImageFormat: 'Vhd1' } }),
});
const vpmemGuest = (requestType: 'Add' | 'Remove', device: number) => ({
  RequestType: requestType,
  ResourceType: 'VPMemDevice' as const,
  Settings: { ...(device !== 0 && { DeviceNumber: device }), MountPath: `/run/layers/p${device}` },
});

describe('integration: openUtilityVm of a bridge-mode UVM (the guest redials, guest halves over the new bridge)', function () {
  this.timeout(60_000);
  let dir: string;
  const open: UtilityVm[] = [];
  beforeEach(() => {
    resetTestSimulator();
    dir = mkdtempSync(join(tmpdir(), 'uvm-open-bridge-'));
  });
  afterEach(async () => {
    configureSimulator({ clearFaults: true, releaseHangs: true });
    for (const uvm of open.splice(0)) {
      if (uvm.phase !== 'terminated') await uvm.terminate().catch(() => undefined);
      await uvm.close();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('re-opens a running VM, adopts its lease, and delivers guest halves over the redialled bridge; ends empty', async () => {
    const hostFs = new FakeHostFs().file('/ob/a.vhd', 1 << 22).file('/ob/b.vhd', 1 << 22);
    const id = uniqueId('open-bridge');
    const journal = { path: join(dir, 'uvm.journal') };
    // The first shim's tables die with it (never released): this test checks what is attached instead.
    detachTablesFromLeakCheck();
    const first = await createUvmOrchestrator({ guestDelivery: 'bridge', hcs, hostFs, logger: silent }).createUtilityVm({ id, os: 'linux', vpmem: { count: 4 }, journal });
    await first.start();
    await first.vpmem.acquire({ hostPath: '/ob/a.vhd' });
    // The shim "dies": its handle and its end of the bridge close, the VM runs on (a journaled UVM
    // is not terminated on the last handle's close).
    await first.close();

    // A new shim whose default is HCS-owned delivery: the journal says bridge.
    const { result: uvm, trace: openTrace } = await traceDuring(() =>
      createUvmOrchestrator({ guestDelivery: 'hcs', hcs, hostFs, logger: silent }).openUtilityVm(id, { journal }),
    );
    open.push(uvm);
    expect(openTrace.filter((l) => l.id === id && l.fn === 'bridge:NegotiateProtocol').map((l) => l.hr), 'the redialled guest negotiated again').to.deep.equal([0]);
    const restored = uvm.restoredLeases();
    expect(restored.map((r) => r.kind)).to.deep.equal(['vpmem']);

    const { trace } = await traceDuring(async () => {
      const b = await uvm.vpmem.acquire({ hostPath: '/ob/b.vhd' });
      expect(b.value.device).to.equal(1);
      await restored[0]!.lease.release();
      await b.release();
    });
    const wire = wireRequests(trace, id, 'bridge').map(({ hr, ...w }) => {
      expect(hr).to.equal(0);
      return w;
    });
    const forDevice = (n: number) => wire.filter((w) => JSON.stringify(w).includes(`Devices/${n}"`) || JSON.stringify(w).includes(`/run/layers/p${n}"`));
    // Device 0 (adopted): removed guest first, then host; device 1: added host first, then guest, and removed.
    expect(forDevice(0)).to.deep.equal(expectedWire(vpmemHost('Remove', 0), vpmemGuest('Remove', 0), 'bridge'));
    expect(forDevice(1)).to.deep.equal([
      ...expectedWire(vpmemHost('Add', 1, '/ob/b.vhd'), vpmemGuest('Add', 1), 'bridge'),
      ...expectedWire(vpmemHost('Remove', 1), vpmemGuest('Remove', 1), 'bridge'),
    ]);
    expect(wire).to.have.length(6);
    expect(uvm.describe()).to.deep.equal([]);
    const observer = await hcs.openComputeSystem(id);
    try {
      expect((await readSimulatorState(observer)).HotAdded).to.equal(0);
    } finally {
      observer.close();
    }
  });

  it('re-opens a VM that was created but never started at once (no guest to wait for); start() then boots it and connects the bridge', async () => {
    const hostFs = new FakeHostFs().file('/ob/c.vhd', 1 << 22);
    const id = uniqueId('open-bridge-created');
    const journal = { path: join(dir, 'uvm.journal') };
    const first = await createUvmOrchestrator({ guestDelivery: 'bridge', hcs, hostFs, logger: silent }).createUtilityVm({ id, os: 'linux', vpmem: { count: 2 }, journal });
    // The shim "dies" between create and start.
    await first.close();
    // Without the fix this waited for a guest that cannot dial (the accept deadline, 2 minutes by
    // default); here a short deadline would fail the open instead of hanging the test.
    const uvm = await createUvmOrchestrator({ guestDelivery: 'hcs', hcs, hostFs, logger: silent }).openUtilityVm(id, { journal });
    open.push(uvm);
    expect(uvm.recoveryReport).to.deep.include({ adopted: [], removed: [] });
    const { trace } = await traceDuring(async () => {
      await uvm.start();
      const c = await uvm.vpmem.acquire({ hostPath: '/ob/c.vhd' });
      await c.release();
    });
    expect(trace.filter((l) => l.id === id && l.fn === 'bridge:NegotiateProtocol').map((l) => l.hr)).to.deep.equal([0]);
    expect(wireRequests(trace, id, 'bridge').map((w) => w.fn)).to.deep.equal([
      'HcsModifyComputeSystem',
      'bridge:ModifySettings',
      'bridge:ModifySettings',
      'HcsModifyComputeSystem',
    ]);
    expect(uvm.describe()).to.deep.equal([]);
  });
});

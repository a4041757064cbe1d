// The simulator's HCS-faithful defaults that a shim meets on Windows (docs/hcs.md "Real HCS and
// the simulator"): documents with an older SchemaVersion than their fields are accepted, and the
// library's teardown works whatever HCS answers for removing something not attached.
import { expect } from 'chai';
import { UvmError } from '../../src/core/errors.js';
import { FakeHostFs } from '../../src/core/fake-host-fs.js';
import { createLogger } from '../../src/core/logger.js';
import { createUvmOrchestrator } from '../../src/di/uvm-orchestrator.js';
import { ComputeCoreHcs } from '../../src/hcs/computecore-hcs.js';
import { configureSimulator, readSimulatorState, simulatorStats, type SimulatorConfig } from '../../src/hcs/simulator-controls.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import { createTestSystem, hcs, resetTestSimulator, systemConfig, uniqueId } from './simulator-fixture.js';
import { testGuestDelivery } from '../support/guest-delivery.js';
import { failGuestHalf } from '../support/guest-halves.js';

const E_FAIL = 0x80004005 | 0;
const MODES: NonNullable<SimulatorConfig['removeNotAttached']>[] = ['notFound', 'invalidState', 'success'];

describe('hcs binding: HCS as it really is', function () {
  this.timeout(60_000);
  beforeEach(() => resetTestSimulator());
  afterEach(() => configureSimulator({ clearFaults: true, releaseHangs: true, removeNotAttached: 'notFound' }));

  it('accepts a SchemaVersion 2.1 document using fields of later schema versions', async () => {
    const doc = systemConfig();
    const vm = doc.VirtualMachine as Record<string, unknown>;
    (vm.ComputeTopology as { Memory: Record<string, unknown> }).Memory.LowMmioGapInMB = 256; // 2.3
    expect(doc.SchemaVersion).to.deep.equal({ Major: 2, Minor: 1 });
    const system = await hcs.createComputeSystem(uniqueId('schema-21'), doc);
    try {
      await system.start();
    } finally {
      await system.terminate();
      system.close();
    }
  });

  it('readSimulatorState is counted as a test helper’s query, never as the library’s', async () => {
    const system = await createTestSystem();
    const before = simulatorStats().InventoryQueries;
    await readSimulatorState(system);
    const after = simulatorStats().InventoryQueries;
    expect(after.TestHelper - before.TestHelper).to.equal(1);
    expect(after.Library).to.equal(before.Library);
  });

  for (const mode of MODES) {
    describe(`removing something not attached answers "${mode}"`, () => {
      let uvm: UtilityVm | undefined;
      const hostFs = new FakeHostFs().file('/rw/layer.vhd', 1 << 20).dir('/rw/share');
      const orchestrator = createUvmOrchestrator({ guestDelivery: testGuestDelivery, hcs: new ComputeCoreHcs({ modifyTimeoutMs: 150 }), hostFs, logger: createLogger({ level: 'silent' }) });
      beforeEach(async () => {
        configureSimulator({ removeNotAttached: mode });
        uvm = await orchestrator.createUtilityVm({ id: uniqueId(`rw-${mode}`), os: 'linux', vpmem: { count: 2 } });
        await uvm.start();
      });
      afterEach(async () => {
        configureSimulator({ clearFaults: true, releaseHangs: true });
        await uvm?.settled();
        if (uvm) {
          expect(uvm.describe()).to.deep.equal([]);
          const observer = await hcs.openComputeSystem(uvm.id);
          expect((await readSimulatorState(observer)).HotAdded).to.equal(0);
          observer.close();
          await uvm.terminate();
          await uvm.close();
        }
        uvm = undefined;
      });

      it('a removal whose guest half failed is retried half by half and completes', async () => {
        const lease = await uvm!.vpmem.acquire({ hostPath: '/rw/layer.vhd' });
        // HCS-owned: HCS removes the host half, then the guest half fails, so the retry finds the host
        // half gone. Bridge: the guest half goes first and fails, the host half stays for the retry.
        failGuestHalf({ nth: 1, hr: E_FAIL });
        const err = await lease.release().then(() => undefined, (e: unknown) => e);
        expect(err, 'the first release fails').to.be.instanceOf(Error);
        configureSimulator({ clearFaults: true });
        await lease.release();
      });

      it('an add whose guest half failed is compensated', async () => {
        failGuestHalf({ nth: 1, hr: E_FAIL });
        const err = await uvm!.plan9.acquire({ hostPath: '/rw/share', readOnly: true }).then(() => undefined, (e: unknown) => e);
        expect(UvmError.is(err), String(err)).to.equal(true);
        configureSimulator({ clearFaults: true });
        await uvm!.retryFailedTeardowns();
      });

      it('a removal applied after its deadline: the retried release is answered without HCS', async () => {
        const lease = await uvm!.vpmem.acquire({ hostPath: '/rw/layer.vhd' });
        configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hang: true }] });
        const err = await lease.release().then(() => undefined, (e: unknown) => e);
        expect(err, 'the first release times out').to.be.instanceOf(Error);
        configureSimulator({ clearFaults: true, releaseHangs: true });
        await uvm!.settled();
        await lease.release();
      });
    });
  }
});

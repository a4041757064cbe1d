// A shim bounds every device-manager HCS call with the binding's `modifyTimeoutMs`: a hung attach
// rejects TIMEOUT at its deadline; its late success is undone by the UVM; nothing stays attached.
import { expect } from 'chai';
import { createUvmOrchestrator } from '../../src/di/uvm-orchestrator.js';
import { ComputeCoreHcs } from '../../src/hcs/computecore-hcs.js';
import { configureSimulator, readSimulatorState } from '../../src/hcs/simulator-controls.js';
import { FakeHostFs } from '../../src/core/fake-host-fs.js';
import { createLogger } from '../../src/core/logger.js';
import { UvmError } from '../../src/core/errors.js';
import { testGuestDelivery } from '../support/guest-delivery.js';

describe('integration: modifyTimeoutMs bounds the managers’ HCS calls', function () {
  this.timeout(20_000);
  afterEach(() => configureSimulator({ clearFaults: true }));

  it('a hung VPMEM add times out, its late success is undone, nothing stays attached, and the next acquire works', async () => {
    const hostFs = new FakeHostFs().file('/l/a/layer.vhd', 1 << 20);
    const hcs = new ComputeCoreHcs({ modifyTimeoutMs: 200 });
    const orchestrator = createUvmOrchestrator({ guestDelivery: testGuestDelivery, hcs, hostFs, logger: createLogger({ level: 'silent' }) });
    const uvm = await orchestrator.createUtilityVm({ id: `modify-timeout-${process.pid}`, os: 'linux', vpmem: { count: 2 } });
    try {
      await uvm.start();
      configureSimulator({ clearFaults: true, faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hang: true }] });
      let err: unknown;
      await uvm.vpmem.acquire({ hostPath: '/l/a/layer.vhd' }).catch((e: unknown) => (err = e));
      expect(UvmError.is(err, 'TIMEOUT'), String(err)).to.equal(true);
      // HCS cannot cancel: the add is in doubt until it completes, and listed meanwhile.
      expect(uvm.describe().map((r) => r.leftover)).to.deep.equal([true]);
      configureSimulator({ clearFaults: true, releaseHangs: true });
      await uvm.settled();
      expect(uvm.describe()).to.deep.equal([]);
      const observer = await hcs.openComputeSystem(uvm.id);
      expect((await readSimulatorState(observer)).HotAdded).to.equal(0);
      const lease = await uvm.vpmem.acquire({ hostPath: '/l/a/layer.vhd' });
      expect(lease.value.guestPath).to.equal('/run/layers/p0');
      await lease.release();
      expect((await readSimulatorState(observer)).HotAdded).to.equal(0);
      observer.close();
    } finally {
      await uvm.terminate().catch(() => undefined);
      uvm.close();
    }
  });
});

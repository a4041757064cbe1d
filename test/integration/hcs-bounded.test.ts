// Every native call that may wait goes through one bounded driver (docs/hcs.md "One bounded
// driver"): koffi's asynchronous-call limit is never reached, one UVM's hung operations cannot
// block another UVM, and a UVM can always be terminated.
import { expect } from 'chai';
import { allocateContainer } from '../../src/containers/allocate-container.js';
import { FakeHostFs } from '../../src/core/fake-host-fs.js';
import { createLogger } from '../../src/core/logger.js';
import { createUvmOrchestrator } from '../../src/di/uvm-orchestrator.js';
import { ComputeCoreHcs } from '../../src/hcs/computecore-hcs.js';
import { pendingBlockingCallCount, pendingOperationCount } from '../../src/hcs/operation-driver.js';
import { configureSimulator, readSimulatorState, simulatorStats } from '../../src/hcs/simulator-controls.js';
import type { OciSpec } from '../../src/oci/oci-spec.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import { createTestSystem, hcs, resetTestSimulator } from './simulator-fixture.js';
import { testGuestDelivery } from '../support/guest-delivery.js';

const MiB = 1024 * 1024;
const UVMS = 100;
const CONTAINERS = 10;

function containerSpec(c: number): OciSpec {
  return {
    ociVersion: '1.1.0',
    root: { path: 'rootfs' },
    windows: { layerFolders: ['/bounded/l/base', `/bounded/scratch/${c}`] },
    mounts: [{ destination: '/data', type: 'bind', source: '/bounded/data', options: ['rbind', 'ro'] }],
  };
}

async function hotAdded(id: string): Promise<{ hotAdded: number; grants: number }> {
  const system = await hcs.openComputeSystem(id);
  try {
    const state = await readSimulatorState(system);
    return { hotAdded: state.HotAdded, grants: state.VmAccess.length };
  } finally {
    system.close();
  }
}

describe('hcs binding: one bounded driver', function () {
  this.timeout(600_000);
  beforeEach(() => resetTestSimulator());
  afterEach(() => configureSimulator({ clearFaults: true, releaseHangs: true }));

  it(`${UVMS} UVMs × ${CONTAINERS} containers allocated at once through the FFI, then released: every UVM ends empty`, async () => {
    const hostFs = new FakeHostFs().file('/bounded/l/base/layer.vhd', 8 * MiB).dir('/bounded/data');
    for (let c = 0; c < CONTAINERS; c++) hostFs.file(`/bounded/scratch/${c}/sandbox.vhdx`, 64 * MiB);
    const orchestrator = createUvmOrchestrator({ guestDelivery: testGuestDelivery, hcs, hostFs, logger: createLogger({ level: 'silent' }) });
    const uvms: UtilityVm[] = [];
    try {
      const created = await Promise.allSettled(
        Array.from({ length: UVMS }, async (_, u) => {
          const uvm = await orchestrator.createUtilityVm({ id: `bounded-${process.pid}-${u}`, os: 'linux', vpmem: { count: 4 } });
          uvms.push(uvm);
          await uvm.start();
          return uvm;
        }),
      );
      expect(created.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).to.deep.equal([]);
      const allocations = await Promise.allSettled(
        uvms.flatMap((uvm) => Array.from({ length: CONTAINERS }, (_, c) => allocateContainer(uvm, containerSpec(c), { containerId: `c${c}` }))),
      );
      const failed = allocations.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason));
      expect(failed, 'every allocation completes (or fails with a typed error)').to.deep.equal([]);
      const sample = await hotAdded(uvms[0].id);
      expect(sample.grants, 'one grant per scratch').to.equal(CONTAINERS);
      await Promise.all(allocations.map((r) => (r.status === 'fulfilled' ? r.value.resources.release() : undefined)));
      for (const uvm of uvms) expect(uvm.describe(), uvm.id).to.deep.equal([]);
      const states = await Promise.all(uvms.map((u) => hotAdded(u.id)));
      // Grants stay with the VM (as in hcsshim): only attachments must be gone.
      expect(states.filter((s) => s.hotAdded !== 0)).to.deep.equal([]);
    } finally {
      await Promise.all(uvms.map(async (uvm) => uvm.terminate().catch(() => undefined)));
      for (const uvm of uvms) uvm.close();
    }
    expect(pendingOperationCount()).to.equal(0);
  });

  it('1,100 concurrent grants (and revokes) end without a crash', async () => {
    const system = await createTestSystem();
    const paths = Array.from({ length: 1100 }, (_, i) => `C:\\bounded\\grants\\${i}.vhdx`);
    await Promise.all(paths.map((p) => hcs.grantVmAccess(system.id, p)));
    expect((await readSimulatorState(system)).VmAccess).to.have.length(1100);
    await Promise.all(paths.map((p) => hcs.revokeVmAccess(system.id, p)));
    expect((await readSimulatorState(system)).VmAccess).to.have.length(0);
    expect(pendingBlockingCallCount()).to.equal(0);
    // Opens are blocking calls too.
    const opened = await Promise.all(Array.from({ length: 300 }, () => hcs.openComputeSystem(system.id)));
    for (const o of opened) o.close();
  });

  it('with 64 operations hung on one UVM, another UVM still attaches a disk and terminates in normal time', async () => {
    const hostFs = new FakeHostFs().file('/bounded/b/disk.vhdx', 64 * MiB);
    for (let i = 0; i < 64; i++) hostFs.dir(`/bounded/a/share-${i}`);
    // No modify timeout at all: the hung operations stay in HCS for the whole test.
    const binding = new ComputeCoreHcs({ modifyTimeoutMs: 3_600_000 });
    const orchestrator = createUvmOrchestrator({ guestDelivery: testGuestDelivery, hcs: binding, hostFs, logger: createLogger({ level: 'silent' }) });
    const a = await orchestrator.createUtilityVm({ id: `bounded-hung-a-${process.pid}`, os: 'linux', vpmem: { count: 1 } });
    const b = await orchestrator.createUtilityVm({ id: `bounded-hung-b-${process.pid}`, os: 'linux', vpmem: { count: 1 } });
    try {
      await Promise.all([a.start(), b.start()]);
      configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', resourcePath: '*Plan9*', hang: true }] });
      const hung = Array.from({ length: 64 }, (_, i) => a.plan9.acquire({ hostPath: `/bounded/a/share-${i}`, readOnly: true }));
      // Wait (without sleeping) until all 64 are parked in the simulator.
      for (let i = 0; i < 10_000; i++) {
        const { Operations } = simulatorStats();
        if (Operations.Hung >= 64) break;
        await new Promise((r) => setImmediate(r));
      }
      const started = Date.now();
      const lease = await b.scsi.acquire({ hostPath: '/bounded/b/disk.vhdx', readOnly: true, mount: {} }, { signal: AbortSignal.timeout(20_000) });
      await lease.release();
      await b.terminate({ timeoutMs: 20_000 });
      const elapsed = Date.now() - started;
      expect(elapsed, 'B is not held up by A').to.be.below(20_000);
      // A itself can still be terminated while its share is taken by hung operations (terminate
      // ignores the per-system share and may use the teardown reserve).
      await a.terminate({ timeoutMs: 20_000 });
      configureSimulator({ clearFaults: true, releaseHangs: true });
      // Released after the VM stopped, the hung adds fail; nothing stays pending in HCS.
      const settled = await Promise.allSettled(hung);
      expect(settled.filter((r) => r.status === 'fulfilled')).to.deep.equal([]);
      await a.settled();
      // The failed adds left residues; the VM is gone, so retrying their teardown just forgets them.
      await a.retryFailedTeardowns();
      expect(a.describe()).to.deep.equal([]);
      for (let i = 0; i < 10_000 && pendingOperationCount() > 0; i++) await new Promise((r) => setImmediate(r));
      expect(pendingOperationCount()).to.equal(0);
    } finally {
      configureSimulator({ clearFaults: true, releaseHangs: true });
      await a.terminate().catch(() => undefined);
      await b.terminate().catch(() => undefined);
      a.close();
      b.close();
    }
  });
});

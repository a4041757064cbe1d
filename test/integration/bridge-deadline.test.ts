// A UtilityVm's own GCS bridge (bridge delivery) when a guest call passes its deadline
// (`guestRpcTimeoutMs`) or the guest answers with a body that is not JSON (the simulator's
// `badJson` bridge fault): the bridge fails as a whole, as hcsshim's does — every pending and later
// guest call rejects BRIDGE_FAILED with one reason, the UVM says why (`guestConnectionFailure`),
// describe() still lists everything the VM holds, and terminating leaves nothing. Through the FFI
// and the simulator's guest; bridge mode only (HCS-owned delivery has no bridge).
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UvmError } from '../../src/core/errors.js';
import { FakeHostFs } from '../../src/core/fake-host-fs.js';
import { createLogger } from '../../src/core/logger.js';
import { createUvmOrchestrator } from '../../src/di/uvm-orchestrator.js';
import { UnixHvSocketTransport } from '../../src/hcs/hvsocket-unix.js';
import { configureSimulator, readSimulatorProperties, type SimulatorFault } from '../../src/hcs/simulator-controls.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import { describedResources, simulatorResources } from './devices-support.js';
import { hcs, resetTestSimulator, uniqueId } from './simulator-fixture.js';

/** Generous against a loaded machine, short enough for a test: the hung call certainly passes it. */
const RPC_TIMEOUT_MS = 2000;

describe('integration: a UtilityVm’s GCS bridge fails as a whole (deadline, bad JSON)', function () {
  this.timeout(60_000);
  const hostFs = new FakeHostFs().file('/bd/a.vhd', 1 << 22).file('/bd/b.vhd', 1 << 22);
  let dir: string;
  let uvm: UtilityVm | undefined;

  beforeEach(() => {
    resetTestSimulator();
    dir = mkdtempSync(join(tmpdir(), 'uvm-bd-'));
    configureSimulator({ hvsockDir: dir });
  });
  afterEach(async () => {
    configureSimulator({ clearFaults: true, releaseHangs: true, hvsockDir: null });
    if (uvm) {
      if (uvm.phase !== 'terminated') await uvm.terminate().catch(() => undefined);
      await uvm.close();
      uvm = undefined;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  async function started(): Promise<UtilityVm> {
    const transport = new UnixHvSocketTransport({ env: { UVM_HVSOCK_DIR: dir } });
    const orchestrator = createUvmOrchestrator({ guestDelivery: 'bridge', hcs, hostFs, hvSocket: transport, logger: createLogger({ level: process.env.UVM_LOG_LEVEL ?? 'silent' }) });
    uvm = await orchestrator.createUtilityVm({ id: uniqueId('bridge-deadline'), os: 'linux', vpmem: { count: 4 }, guestRpcTimeoutMs: RPC_TIMEOUT_MS });
    await uvm.start();
    return uvm;
  }

  /** How each settled promise ended: 'ok', or `<code> <details.reason>`. */
  async function outcomes(promises: Promise<unknown>[]): Promise<string[]> {
    const settled = await Promise.allSettled(promises);
    return settled.map((s) => (s.status === 'fulfilled' ? 'ok' : UvmError.is(s.reason) ? `${s.reason.code} ${String(s.reason.details.reason)}` : String(s.reason)));
  }

  /** What the simulator holds for `vm` that describe() does not list. */
  async function untracked(vm: UtilityVm): Promise<string[]> {
    const observer = await hcs.openComputeSystem(vm.id);
    try {
      const described = new Set(describedResources(vm.describe()));
      return simulatorResources((await readSimulatorProperties(observer)).SimulatorState).filter((r) => !described.has(r));
    } finally {
      observer.close();
    }
  }

  for (const [name, faults, reason] of [
    // Both guest halves hang: the first to pass guestRpcTimeoutMs fails the bridge, the other with it.
    ['a guest call passing guestRpcTimeoutMs', [{ fn: 'bridge:ModifySettings', hang: true }], 'deadline'],
    // The first guest half is parked; the second is answered with a body that is not JSON.
    ['an answer that is not JSON', [{ fn: 'bridge:ModifySettings', nth: 1, hang: true }, { fn: 'bridge:ModifySettings', nth: 2, badJson: true }], 'bad-json'],
  ] as [string, SimulatorFault[], string][]) {
    it(`${name} fails the bridge as a whole (${reason}): every pending and later guest call rejects BRIDGE_FAILED; nothing is lost; terminate leaves nothing`, async () => {
      const vm = await started();
      configureSimulator({ faults });
      const codes = await outcomes([vm.vpmem.acquire({ hostPath: '/bd/a.vhd' }), vm.vpmem.acquire({ hostPath: '/bd/b.vhd' })]);
      expect(codes).to.deep.equal([`BRIDGE_FAILED ${reason}`, `BRIDGE_FAILED ${reason}`]);
      expect(vm.guestConnectionFailure?.code).to.equal('BRIDGE_FAILED');
      expect(vm.guestConnectionFailure?.details.reason).to.equal(reason);
      expect(await outcomes([vm.sendGuestRequest({ RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: {} })])).to.deep.equal([`BRIDGE_FAILED ${reason}`]);
      expect(await untracked(vm), 'attached in the VM but unknown to the library').to.deep.equal([]);
      await vm.terminate();
      await vm.retryFailedTeardowns();
      expect(vm.describe()).to.deep.equal([]);
    });
  }
});

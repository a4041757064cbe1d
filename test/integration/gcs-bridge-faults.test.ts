// The library's GCS bridge against the simulator's guest through the FFI, when the guest misbehaves
// (gcs-bridge.md §3, hcsshim `internal/gcs/bridge.go`): a response with an unknown id, an oversized
// message, a body that is not JSON, a connection dropped mid-RPC and a call passing its deadline
// (the client's, or a UtilityVm's `guestRpcTimeoutMs`) each fail the bridge as a whole — every
// pending and later call rejects BRIDGE_FAILED with one reason — and a guest that never dials
// fails `start()` with GUEST_CONNECT_TIMEOUT and the VM is terminated. The unit tests
// (test/unit/hcs/gcs-bridge.test.ts, test/unit/uvm/guest-bridge.test.ts) check the same rules
// against in-process fakes; here the frames cross a real socket from the simulator's fake GCS.
// Bridge mode only (whatever UVM_TEST_GUEST_DELIVERY says): HCS-owned mode has no bridge.
import { expect } from 'chai';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UvmError } from '../../src/core/errors.js';
import { FakeHostFs } from '../../src/core/fake-host-fs.js';
import { createLogger } from '../../src/core/logger.js';
import { createUvmOrchestrator } from '../../src/di/uvm-orchestrator.js';
import { GcsBridge } from '../../src/hcs/gcs-bridge.js';
import { NULL_CONTAINER_ID } from '../../src/hcs/gcs-bridge-protocol.js';
import { WCOW_GCS_SERVICE_ID } from '../../src/hcs/hvsocket.js';
import { UnixHvSocketTransport } from '../../src/hcs/hvsocket-unix.js';
import type { GuestRequest } from '../../src/hcs/schema.js';
import { configureSimulator, readSimulatorProperties, simulatorStats, type SimulatorFault } from '../../src/hcs/simulator-controls.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import { describedResources, simulatorResources } from './devices-support.js';
import { createTestSystem, hcs, resetTestSimulator, uniqueId } from './simulator-fixture.js';

const silent = createLogger({ level: 'silent' });
/** A guest request the fake GCS refuses (E_FAIL): only the bridge's handling of the answer matters here. */
const BOGUS: GuestRequest = { RequestType: 'Add', ResourceType: 'Bogus' as GuestRequest['ResourceType'], Settings: {} };
/** The nth bridge ModifySettings is parked (answered only when hangs are released). */
const parkNth = (nth: number): SimulatorFault => ({ fn: 'bridge:ModifySettings', nth, hang: true });

/** How each settled promise ended: 'ok', or `<code> <details.reason>`. */
async function outcomes(promises: Promise<unknown>[]): Promise<string[]> {
  const settled = await Promise.allSettled(promises);
  return settled.map((s) => {
    if (s.status === 'fulfilled') return 'ok';
    const e = s.reason as unknown;
    return UvmError.is(e) ? `${e.code} ${String(e.details.reason)}` : String(e);
  });
}

describe('integration: GCS bridge faults through the FFI (the simulator’s guest)', function () {
  this.timeout(60_000);
  let dir: string;
  let transport: UnixHvSocketTransport;

  beforeEach(() => {
    resetTestSimulator();
    dir = mkdtempSync(join(tmpdir(), 'uvm-hvsock-it-'));
    configureSimulator({ hvsockDir: dir });
    transport = new UnixHvSocketTransport({ env: { UVM_HVSOCK_DIR: dir } });
  });
  afterEach(() => {
    configureSimulator({ clearFaults: true, releaseHangs: true, guestDial: 'auto', hvsockDir: null });
    rmSync(dir, { recursive: true, force: true });
  });

  describe('the bridge client (src/hcs/gcs-bridge.ts) over a socket the simulator’s WCOW guest dialled', () => {
    /** A raw WCOW system without GuestConnection: listen after create, start, accept, negotiate. */
    async function connect(): Promise<{ bridge: GcsBridge; failures: UvmError[] }> {
      const system = await createTestSystem({ os: 'windows', start: false, guestConnection: false });
      const { RuntimeId } = await readSimulatorProperties(system);
      const listener = await transport.listen(RuntimeId, WCOW_GCS_SERVICE_ID);
      await system.start();
      const stream = await listener.accept({ timeoutMs: 30_000 });
      await listener.close();
      const bridge = new GcsBridge(stream, { uvmId: system.id, logger: silent });
      const failures: UvmError[] = [];
      bridge.onFailure((err) => failures.push(err));
      expect((await bridge.negotiate()).SendHostCreateMessage).to.equal(true);
      return { bridge, failures };
    }

    /** Two calls in flight (the first parked by the guest); the second is answered with `fault`. */
    async function twoPendingThen(fault: Omit<SimulatorFault, 'fn'>): Promise<{ codes: string[]; bridge: GcsBridge; failures: UvmError[] }> {
      const { bridge, failures } = await connect();
      configureSimulator({ faults: [parkNth(1), { fn: 'bridge:ModifySettings', nth: 2, ...fault }] });
      const codes = await outcomes([bridge.modifySettings(BOGUS), bridge.modifySettings(BOGUS)]);
      return { codes, bridge, failures };
    }

    /** The bridge failed once, for `reason`, and refuses every later call with the same code. */
    async function expectFailedAsAWhole(bridge: GcsBridge, failures: UvmError[], reason: string): Promise<void> {
      expect(failures.map((f) => `${f.code} ${String(f.details.reason)}`)).to.deep.equal([`BRIDGE_FAILED ${reason}`]);
      expect(bridge.pendingCount).to.equal(0);
      expect(await outcomes([bridge.modifySettings(BOGUS)])).to.deep.equal([`BRIDGE_FAILED ${reason}`]);
    }

    it('a response with an id the host never sent fails the bridge: every pending call rejects BRIDGE_FAILED (unknown-id)', async () => {
      const { codes, bridge, failures } = await twoPendingThen({ unknownId: true });
      expect(codes).to.deep.equal(['BRIDGE_FAILED unknown-id', 'BRIDGE_FAILED unknown-id']);
      await expectFailedAsAWhole(bridge, failures, 'unknown-id');
    });

    it('a message over 64 KiB is refused before its body is read and fails the bridge (oversized)', async () => {
      const { codes, bridge, failures } = await twoPendingThen({ oversized: true });
      expect(codes).to.deep.equal(['BRIDGE_FAILED oversized', 'BRIDGE_FAILED oversized']);
      await expectFailedAsAWhole(bridge, failures, 'oversized');
    });

    it('the guest dropping the connection mid-RPC fails the bridge (eof)', async () => {
      const { codes, bridge, failures } = await twoPendingThen({ drop: true });
      expect(codes).to.deep.equal(['BRIDGE_FAILED eof', 'BRIDGE_FAILED eof']);
      await expectFailedAsAWhole(bridge, failures, 'eof');
    });

    it('a call passing its deadline fails the whole bridge, not just that call (deadline)', async () => {
      const { bridge, failures } = await connect();
      configureSimulator({ faults: [{ fn: 'bridge:ModifySettings', hang: true }] });
      const codes = await outcomes([bridge.modifySettings(BOGUS), bridge.modifySettings(BOGUS, { timeoutMs: 100 })]);
      expect(codes).to.deep.equal(['BRIDGE_FAILED deadline', 'BRIDGE_FAILED deadline']);
      await expectFailedAsAWhole(bridge, failures, 'deadline');
    });

    it('a guest refusal rejects only its call (HCS_ERROR with the guest’s HRESULT); the bridge stays up', async () => {
      const { bridge, failures } = await connect();
      configureSimulator({ faults: [{ fn: 'bridge:ModifySettings', nth: 1, hr: 0x80070057 }] });
      const err = await bridge.modifySettings(BOGUS).then(() => undefined, (e: unknown) => e);
      expect(UvmError.is(err, 'HCS_ERROR')).to.equal(true);
      expect((err as UvmError).details.hresult).to.equal('0x80070057');
      const hv = { RequestType: 'Update', ResourceType: 'HvSocket', Settings: { LocalAddress: 'nope', ParentAddress: NULL_CONTAINER_ID } } as unknown as GuestRequest;
      const refused = await bridge.modifySettings(hv).then(() => undefined, (e: unknown) => e);
      expect(UvmError.is(refused, 'HCS_ERROR'), String(refused)).to.equal(true);
      expect(failures).to.deep.equal([]);
      bridge.close();
    });
  });

  describe('a UtilityVm in bridge mode', () => {
    const hostFs = new FakeHostFs().file('/bf/a.vhd', 1 << 22).file('/bf/b.vhd', 1 << 22);
    let uvms: UtilityVm[] = [];
    async function create(options: { guestConnectTimeoutMs?: number; guestRpcTimeoutMs?: number } = {}): Promise<UtilityVm> {
      const orchestrator = createUvmOrchestrator({ guestDelivery: 'bridge', hcs, hostFs, hvSocket: transport, logger: silent });
      const uvm = await orchestrator.createUtilityVm({ id: uniqueId('bridge-faults'), os: 'linux', vpmem: { count: 4 }, ...options });
      uvms.push(uvm);
      return uvm;
    }
    afterEach(async () => {
      configureSimulator({ clearFaults: true, releaseHangs: true });
      for (const uvm of uvms.splice(0)) {
        if (uvm.phase !== 'terminated') await uvm.terminate().catch(() => undefined);
        await uvm.close();
      }
      uvms = [];
    });

    /** What the simulator holds for `uvm` that describe() does not list (must be nothing). */
    async function untracked(uvm: UtilityVm): Promise<string[]> {
      const observer = await hcs.openComputeSystem(uvm.id);
      try {
        const described = new Set(describedResources(uvm.describe()));
        return simulatorResources((await readSimulatorProperties(observer)).SimulatorState).filter((r) => !described.has(r));
      } finally {
        observer.close();
      }
    }

    /**
     * Two VPMEM adds whose guest halves `faults` break: both reject BRIDGE_FAILED `reason`, the UVM
     * says why, a later guest call fails the same way, describe() still lists all that is attached,
     * and after terminate (a retried teardown makes no call) nothing is left.
     */
    async function expectBridgeFailsAsAWhole(uvm: UtilityVm, faults: SimulatorFault[], reason: string): Promise<void> {
      configureSimulator({ faults });
      const codes = await outcomes([uvm.vpmem.acquire({ hostPath: '/bf/a.vhd' }), uvm.vpmem.acquire({ hostPath: '/bf/b.vhd' })]);
      expect(codes).to.deep.equal([`BRIDGE_FAILED ${reason}`, `BRIDGE_FAILED ${reason}`]);
      expect(uvm.guestConnectionFailure?.code).to.equal('BRIDGE_FAILED');
      expect(uvm.guestConnectionFailure?.details.reason).to.equal(reason);
      expect(await outcomes([uvm.sendGuestRequest({ RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: {} })])).to.deep.equal([`BRIDGE_FAILED ${reason}`]);
      expect(await untracked(uvm), 'attached in the VM but unknown to the library').to.deep.equal([]);
      await uvm.terminate();
      // What the dead bridge could not undo goes with the VM: a retried teardown makes no call now.
      await uvm.retryFailedTeardowns();
      expect(uvm.describe()).to.deep.equal([]);
    }

    for (const [fault, reason] of [
      [{ unknownId: true }, 'unknown-id'],
      [{ oversized: true }, 'oversized'],
      [{ drop: true }, 'eof'],
      [{ badJson: true }, 'bad-json'],
    ] as const) {
      it(`the bridge failing mid-allocation (${reason}) rejects every pending guest call with BRIDGE_FAILED; describe() still lists all that is attached; terminate leaves nothing`, async () => {
        const uvm = await create();
        await uvm.start();
        // Two VPMEM adds: each host half applies, the first guest half is parked, the second is answered badly.
        await expectBridgeFailsAsAWhole(uvm, [parkNth(1), { fn: 'bridge:ModifySettings', nth: 2, ...fault }], reason);
      });
    }

    it('a guest call passing guestRpcTimeoutMs fails the UVM’s bridge as a whole (deadline), the other pending call with it', async () => {
      // Generous against a loaded machine; the hung calls certainly pass it.
      const uvm = await create({ guestRpcTimeoutMs: 2000 });
      await uvm.start();
      await expectBridgeFailsAsAWhole(uvm, [{ fn: 'bridge:ModifySettings', hang: true }], 'deadline');
    });

    it('the accept deadline: a guest that never dials fails start() with GUEST_CONNECT_TIMEOUT; the VM is terminated, no listener left', async () => {
      configureSimulator({ guestDial: 'never' });
      const uvm = await create({ guestConnectTimeoutMs: 300 });
      const dialsBefore = simulatorStats().Guest.Dials;
      const err = await uvm.start().then(() => undefined, (e: unknown) => e);
      expect(UvmError.is(err, 'GUEST_CONNECT_TIMEOUT'), String(err)).to.equal(true);
      expect(uvm.phase).to.equal('terminated');
      expect(simulatorStats().Guest.Dials).to.equal(dialsBefore);
      // Terminated: stopped, or already gone (ShouldTerminateOnLastHandleClosed).
      const observer = await hcs.openComputeSystem(uvm.id).catch(() => undefined);
      if (observer) {
        try {
          expect((await readSimulatorProperties(observer)).State).to.equal('Stopped');
        } finally {
          observer.close();
        }
      }
      expect(readdirSync(dir).filter((f) => f.endsWith('.sock')), 'hvsocket listeners left').to.deep.equal([]);
      expect(simulatorStats().Guest.Dialing).to.equal(0);
    });
  });
});

// Timeouts and aborts without cancel (docs/hcs.md "Timeouts without cancel"): HcsCancelOperation
// answers E_NOTIMPL as documented, so a call given up at its deadline keeps running in HCS. The
// caller's promise rejects at once; the operation handle and its slot are kept until HCS completes;
// a late success is undone by the UVM itself (listed by describe() meanwhile); a late failure
// frees the resource.
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { UvmError } from '../../src/core/errors.js';
import { FakeHostFs } from '../../src/core/fake-host-fs.js';
import { createLogger } from '../../src/core/logger.js';
import { createUvmOrchestrator } from '../../src/di/uvm-orchestrator.js';
import { ComputeCoreHcs } from '../../src/hcs/computecore-hcs.js';
import { HcsError, HResult, isTimeout } from '../../src/hcs/hcs-error.js';
import { lateOutcomeOf, pendingOperationCount } from '../../src/hcs/operation-driver.js';
import { configureSimulator, readSimulatorState, simulatorStats } from '../../src/hcs/simulator-controls.js';
import type { ModifySettingRequest } from '../../src/hcs/schema.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import { createTestSystem, hcs, rejection, resetTestSimulator, SCSI_CONTROLLERS, systemConfig } from './simulator-fixture.js';
import { testGuestDelivery } from '../support/guest-delivery.js';

const C0 = SCSI_CONTROLLERS[0];
const add = (lun: number): ModifySettingRequest => ({
  ResourcePath: `VirtualMachine/Devices/Scsi/${C0}/Attachments/${lun}`,
  RequestType: 'Add',
  Settings: { Type: 'VirtualDisk', Path: `C:\\disks\\${lun}.vhdx` },
});


describe('hcs binding: timeouts and aborts without cancel', function () {
  this.timeout(30_000);
  let dir: string;
  let trace: string;
  beforeEach(() => {
    resetTestSimulator();
    dir = mkdtempSync(join(tmpdir(), 'hcs-timeouts-'));
    trace = join(dir, 'trace.jsonl');
    configureSimulator({ trace });
  });
  afterEach(() => {
    configureSimulator({ trace: null, releaseHangs: true, clearFaults: true });
    rmSync(dir, { recursive: true, force: true });
  });

  function traced(fn: string): { fn: string; hr: number }[] {
    if (!existsSync(trace)) return [];
    return readFileSync(trace, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { fn: string; hr: number })
      .filter((l) => l.fn === fn);
  }

  describe('a UVM whose attach hangs', () => {
    let uvm: UtilityVm | undefined;
    const hostFs = new FakeHostFs().file('/l/a/layer.vhd', 1 << 20).file('/l/b/layer.vhd', 1 << 20);
    const bounded = new ComputeCoreHcs({ modifyTimeoutMs: 150 });
    const orchestrator = createUvmOrchestrator({ guestDelivery: testGuestDelivery, hcs: bounded, hostFs, logger: createLogger({ level: 'silent' }) });
    afterEach(async () => {
      configureSimulator({ releaseHangs: true, clearFaults: true });
      if (uvm) {
        await uvm.terminate().catch(() => undefined);
        uvm.close();
        uvm = undefined;
      }
    });

    async function observe(id: string): Promise<{ hotAdded: () => Promise<number>; close: () => void }> {
      const observer = await hcs.openComputeSystem(id);
      return { hotAdded: async () => (await readSimulatorState(observer)).HotAdded, close: () => observer.close() };
    }

    it('TIMEOUT at its deadline while cancel answers E_NOTIMPL; released later, the late attachment is removed', async () => {
      uvm = await orchestrator.createUtilityVm({ id: `timeouts-late-ok-${process.pid}`, os: 'linux', vpmem: { count: 2 } });
      await uvm.start();
      configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hang: true }] });
      const started = Date.now();
      const err = await rejection(uvm.vpmem.acquire({ hostPath: '/l/a/layer.vhd' }));
      expect(UvmError.is(err, 'TIMEOUT'), String(err)).to.equal(true);
      expect(isTimeout(err)).to.equal(true);
      expect(Date.now() - started, 'rejected at the deadline, not after the operation').to.be.below(10_000);
      expect(traced('HcsCancelOperation').map((l) => l.hr)).to.deep.equal([HResult.E_NOTIMPL]);
      // HCS still holds the operation: its handle stays open, and the resource stays taken.
      expect(pendingOperationCount()).to.equal(1);
      expect(simulatorStats().Operations.Hung).to.equal(1);
      const inDoubt = uvm.describe();
      expect(inDoubt).to.have.length(1);
      expect(inDoubt[0]).to.include({ kind: 'vpmem-device', state: 'creating', leftover: true, refCount: 0 });

      const observer = await observe(uvm.id);
      try {
        configureSimulator({ releaseHangs: true });
        await uvm.settled();
        expect(uvm.describe()).to.deep.equal([]);
        expect(await observer.hotAdded()).to.equal(0);
        // The late Add was applied, then removed by the UVM itself.
        const modifies = traced('HcsModifyComputeSystem');
        expect(modifies.filter((l) => l.hr === 0)).to.have.length(2);
        expect(pendingOperationCount()).to.equal(0);
        // And the resource is usable again.
        const lease = await uvm.vpmem.acquire({ hostPath: '/l/a/layer.vhd' });
        await lease.release();
        expect(await observer.hotAdded()).to.equal(0);
      } finally {
        observer.close();
      }
      expect(uvm.describe()).to.deep.equal([]);
    });

    it('a late failure frees the resource without any removal', async () => {
      uvm = await orchestrator.createUtilityVm({ id: `timeouts-late-fail-${process.pid}`, os: 'linux', vpmem: { count: 2 } });
      await uvm.start();
      configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hang: true, hr: HResult.E_FAIL }] });
      const err = await rejection(uvm.vpmem.acquire({ hostPath: '/l/b/layer.vhd' }));
      expect(UvmError.is(err, 'TIMEOUT'), String(err)).to.equal(true);
      expect(uvm.describe()).to.have.length(1);
      configureSimulator({ releaseHangs: true });
      await uvm.settled();
      expect(uvm.describe()).to.deep.equal([]);
      expect(traced('HcsModifyComputeSystem').map((l) => l.hr)).to.deep.equal([HResult.E_FAIL]);
      const observer = await observe(uvm.id);
      expect(await observer.hotAdded()).to.equal(0);
      observer.close();
    });

    it('an Add of the same resource waits for the outcome, bounded by its own deadline', async () => {
      uvm = await orchestrator.createUtilityVm({ id: `timeouts-wait-${process.pid}`, os: 'linux', vpmem: { count: 1 } });
      await uvm.start();
      configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hang: true }] });
      expect(UvmError.is(await rejection(uvm.vpmem.acquire({ hostPath: '/l/a/layer.vhd' })), 'TIMEOUT')).to.equal(true);
      // Device 0 is the only one: the second acquire targets the same ResourcePath and waits.
      const second = (await rejection(uvm.vpmem.acquire({ hostPath: '/l/b/layer.vhd' }))) as HcsError;
      expect(second.code).to.equal('TIMEOUT');
      expect(second.message).to.match(/whose outcome is not known yet/);
      expect(traced('HcsModifyComputeSystem'), 'the waiting Add never reached HCS').to.have.length(0);
      configureSimulator({ releaseHangs: true });
      await uvm.settled();
      const lease = await uvm.vpmem.acquire({ hostPath: '/l/b/layer.vhd' });
      await lease.release();
      expect(uvm.describe()).to.deep.equal([]);
    });

    it('terminate ends the wait for a hung attach; the late completion after it changes nothing', async () => {
      uvm = await orchestrator.createUtilityVm({ id: `timeouts-terminate-${process.pid}`, os: 'linux', vpmem: { count: 2 } });
      await uvm.start();
      configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hang: true }] });
      expect(UvmError.is(await rejection(uvm.vpmem.acquire({ hostPath: '/l/a/layer.vhd' })), 'TIMEOUT')).to.equal(true);
      await uvm.terminate();
      await uvm.settled();
      expect(uvm.describe()).to.deep.equal([]);
      configureSimulator({ releaseHangs: true });
      uvm.close();
      uvm = undefined;
    });
  });

  it('the driver rejects a hung operation at once, keeps its handle until HCS completes it, then closes it', async function () {
    const system = await createTestSystem();
    configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hang: true }] });
    const e = (await rejection(system.modify(add(1), { timeoutMs: 50 }))) as HcsError;
    expect(e.code).to.equal('TIMEOUT');
    expect(e.hresult).to.equal(HResult.HCS_E_OPERATION_TIMEOUT);
    expect(e.message).to.match(/still running in HCS/);
    const late = lateOutcomeOf(e);
    expect(late).to.not.equal(undefined);
    expect(pendingOperationCount()).to.equal(1);
    expect(simulatorStats().Operations.Open).to.be.at.least(1);
    configureSimulator({ releaseHangs: true });
    expect((await late!).applied).to.equal(true);
    expect(pendingOperationCount()).to.equal(0);
    // Applied late (the bare binding undoes nothing; a UtilityVm does): remove it by hand.
    expect((await readSimulatorState(system)).HotAdded).to.equal(1);
    await system.modify({ ...add(1), RequestType: 'Remove' });
  });

  it('an AbortSignal rejects ABORTED at once; the late failure is reported through the late outcome', async function () {
    const system = await createTestSystem();
    configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hang: true, hr: HResult.E_FAIL }] });
    const controller = new AbortController();
    const p = rejection(system.modify(add(4), { signal: controller.signal }));
    setTimeout(() => controller.abort(), 20);
    const e = (await p) as HcsError;
    expect(e.code).to.equal('ABORTED');
    expect(e.hresult).to.equal(HResult.E_ABORT);
    configureSimulator({ releaseHangs: true });
    const outcome = await lateOutcomeOf(e)!;
    expect(outcome.applied).to.equal(false);
    expect(((outcome as { error: unknown }).error as HcsError).hresult).to.equal(HResult.E_FAIL);
    expect(pendingOperationCount()).to.equal(0);
    expect((await readSimulatorState(system)).HotAdded).to.equal(0);
  });

  it('an already-aborted signal rejects before anything reaches HCS', async function () {
    const system = await createTestSystem();
    const e = (await rejection(system.modify(add(4), { signal: AbortSignal.abort() }))) as HcsError;
    expect(e.code).to.equal('ABORTED');
    expect(lateOutcomeOf(e)).to.equal(undefined);
    await system.properties({}); // flushes: a traced call after the aborted one
    expect(traced('HcsGetComputeSystemProperties')).to.have.length(1);
    expect(traced('HcsModifyComputeSystem')).to.have.length(0);
  });

  it('a timeout while waiting for a slot rejects without an HCS call; hung operations keep their slots', async function () {
    const small = new ComputeCoreHcs({ perSystemOperations: 4 });
    configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', hang: true }] });
    const system = await small.createComputeSystem(`hcs-slots-${process.pid}`, systemConfig());
    try {
      await system.start();
      const hung = await Promise.all(Array.from({ length: 4 }, (_, lun) => rejection(system.modify(add(lun), { timeoutMs: 30 }))));
      for (const e of hung) expect(UvmError.is(e, 'TIMEOUT')).to.equal(true);
      // The 4 abandoned operations still occupy the system's share: the next call waits, and times out unstarted.
      const queued = (await rejection(system.modify(add(10), { timeoutMs: 30 }))) as HcsError;
      expect(queued.code).to.equal('TIMEOUT');
      expect(lateOutcomeOf(queued)).to.equal(undefined);
      configureSimulator({ clearFaults: true, releaseHangs: true });
      await Promise.all(hung.map((e) => lateOutcomeOf(e)));
      // Traced at completion: the 4 released operations, never the one that timed out unstarted.
      expect(traced('HcsModifyComputeSystem')).to.have.length(4);
      await system.properties({}, { timeoutMs: 10_000 });
    } finally {
      configureSimulator({ clearFaults: true, releaseHangs: true });
      await system.terminate().catch(() => undefined);
      await system[Symbol.asyncDispose]();
    }
    expect(pendingOperationCount()).to.equal(0);
  });

  it('the "cancel: honoured" control (a deviation from HCS, off by default) completes a hung operation with E_ABORT', async function () {
    const system = await createTestSystem();
    configureSimulator({ cancel: 'honoured', faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hang: true }] });
    const e = (await rejection(system.modify(add(2), { timeoutMs: 30 }))) as HcsError;
    expect(e.code).to.equal('TIMEOUT');
    const outcome = await lateOutcomeOf(e)!;
    expect(outcome.applied).to.equal(false);
    expect(((outcome as { error: unknown }).error as HcsError).hresult).to.equal(HResult.E_ABORT);
    expect(traced('HcsCancelOperation').map((l) => l.hr)).to.deep.equal([0]);
    resetTestSimulator();
    configureSimulator({ trace });
  });

  it('a create that times out is terminated and its handle closed once HCS completes it', async function () {
    configureSimulator({ faults: [{ fn: 'HcsCreateComputeSystem', nth: 1, hang: true }] });
    const id = `hcs-timeout-create-${process.pid}`;
    const e = (await rejection(hcs.createComputeSystem(id, systemConfig(), { timeoutMs: 30 }))) as HcsError;
    expect(e.code).to.equal('TIMEOUT');
    configureSimulator({ releaseHangs: true });
    await lateOutcomeOf(e);
    // The late-created system is terminated and its only handle closed, so HCS forgets it.
    for (let i = 0; i < 1000 && (await hcs.enumerateComputeSystems()).some((s) => s.Id === id); i++) {
      await new Promise((r) => setImmediate(r));
    }
    expect((await hcs.enumerateComputeSystems()).map((s) => s.Id)).not.to.include(id);
    expect(pendingOperationCount()).to.equal(0);
  });

  it('defaultTimeoutMs bounds start when the caller gives no timeout', async function () {
    const bounded = new ComputeCoreHcs({ defaultTimeoutMs: 60 });
    configureSimulator({ faults: [{ fn: 'HcsStartComputeSystem', nth: 1, hang: true, hr: HResult.E_FAIL }] });
    const system = await bounded.createComputeSystem(`hcs-default-timeout-${process.pid}`, systemConfig());
    try {
      const e = (await rejection(system.start())) as HcsError;
      expect(e.code).to.equal('TIMEOUT');
      configureSimulator({ releaseHangs: true });
      await lateOutcomeOf(e);
      await system.start();
      await system.terminate();
    } finally {
      await system[Symbol.asyncDispose]();
    }
    expect(() => new ComputeCoreHcs({ defaultTimeoutMs: -1 }))
      .to.throw(UvmError)
      .with.property('code', 'INVALID_ARGUMENT');
  });
});

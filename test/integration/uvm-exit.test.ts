import { expect } from 'chai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UvmError } from '../../src/core/errors.js';
import { FakeHostFs } from '../../src/core/fake-host-fs.js';
import { createLogger } from '../../src/core/logger.js';
import { createUvmOrchestrator } from '../../src/di/uvm-orchestrator.js';
import type { ComputeSystem } from '../../src/hcs/compute-system.js';
import { ComputeCoreHcs } from '../../src/hcs/computecore-hcs.js';
import type { HcsCallOptions } from '../../src/hcs/hcs-api.js';
import { pendingOperationCount } from '../../src/hcs/operation-driver.js';
import { configureSimulator } from '../../src/hcs/simulator-controls.js';
import { activeEventSubscriptions } from '../../src/hcs/system-events.js';
import { checkAfterTest } from '../support/leak-checks.js';
import { REPO, runCli } from './cli-support.js';
import { createTestSystem, disposeTestSystem, hcs, resetTestSimulator, uniqueId } from './simulator-fixture.js';
import { testGuestDelivery } from '../support/guest-delivery.js';

/** The binding, remembering the systems it created (to wait for their operations at the end). */
class RecordingHcs extends ComputeCoreHcs {
  readonly created: ComputeSystem[] = [];
  override async createComputeSystem(id: string, configuration: Record<string, unknown>, options?: HcsCallOptions): Promise<ComputeSystem> {
    const system = await super.createComputeSystem(id, configuration, options);
    this.created.push(system);
    checkAfterTest(() => disposeTestSystem(system));
    return system;
  }
}

const UNEXPECTED = { SystemExit: { Detail: 'UnexpectedExit', Initiator: 'Internal' } };

async function traced<T>(fn: () => Promise<T>): Promise<{ value: T; fns: string[] }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'uvm-exit-'));
  const file = path.join(dir, 'trace.jsonl');
  configureSimulator({ trace: file });
  try {
    const value = await fn();
    configureSimulator({ trace: null });
    const text = await readFile(file, 'utf8').catch(() => '');
    return { value, fns: text.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { fn: string }).fn) };
  } finally {
    configureSimulator({ trace: null });
    await rm(dir, { recursive: true, force: true });
  }
}

describe('system events through the simulator (HcsSetComputeSystemCallback)', function () {
  this.timeout(30_000);
  beforeEach(() => resetTestSimulator());

  it('terminate raises SystemExited (ForcedExit) on every handle with a callback; a closed handle gets nothing', async () => {
    const system = await createTestSystem();
    const other = await hcs.openComputeSystem(system.id);
    const closed = await hcs.openComputeSystem(system.id);
    closed.close();
    const subscriptions = activeEventSubscriptions();
    await system.terminate();
    const [a, b] = await Promise.all([system.exited, other.exited]);
    for (const exit of [a, b]) {
      expect(exit).to.deep.include({ exitType: 'ForcedExit', status: 0, attribution: [{ SystemExit: { Detail: 'Terminate', Initiator: 'Client' } }] });
      expect(JSON.parse(exit.document!)).to.deep.equal({ Status: 0, ExitType: 'ForcedExit', Attribution: [{ SystemExit: { Detail: 'Terminate', Initiator: 'Client' } }] });
    }
    expect(closed.exit).to.equal(undefined);
    other.close();
    expect(activeEventSubscriptions()).to.equal(subscriptions - 1);
  });

  it('the crash control stops the VM and raises SystemExited (UnexpectedExit, 0x80370106, attribution); unknown systems are refused', async () => {
    const system = await createTestSystem();
    configureSimulator({ crash: { systemId: system.id, attribution: 'GuestCrash' } });
    const exit = await system.exited;
    expect(exit).to.deep.include({ exitType: 'UnexpectedExit', status: 0x80370106 | 0, attribution: [{ GuestCrash: {} }] });
    expect(((await system.properties({})) as { State: string }).State).to.equal('Stopped');
    expect(() => configureSimulator({ crash: { systemId: system.id } })).to.throw(/0x80070057/);
    expect(() => configureSimulator({ crash: { systemId: 'no-such-vm' } })).to.throw(/0x80070057/);
  });
});

describe('UtilityVm: an unexpected exit through the simulator', function () {
  this.timeout(30_000);
  beforeEach(() => resetTestSimulator());

  async function startedUvm(binding: RecordingHcs) {
    const orchestrator = createUvmOrchestrator({ guestDelivery: testGuestDelivery, hcs: binding, hostFs: new FakeHostFs(), logger: createLogger({ level: 'silent' }) });
    const uvm = await orchestrator.createUtilityVm({ id: uniqueId('uvm-exit'), os: 'linux', scsiControllers: 1 });
    await uvm.start();
    return uvm;
  }

  it('a call in flight rejects UVM_EXITED at once; later calls and releases make no HCS call; exited names the exit', async () => {
    const binding = new RecordingHcs();
    const uvm = await startedUvm(binding);
    const held = await uvm.scsi.acquire({ hostPath: '/disks/held.vhdx', readOnly: true, mount: {} });
    // The next attach stays in HCS for 2 s: the crash must not wait for it.
    configureSimulator({ latency: { HcsModifyComputeSystem: { ms: 2000 } } });
    const inFlight = uvm.scsi.acquire({ hostPath: '/disks/slow.vhdx', readOnly: true });
    const rejected = inFlight.then(
      () => expect.fail('the attach resolved'),
      (err: unknown) => ({ err, pending: pendingOperationCount() }),
    );
    configureSimulator({ crash: { systemId: uvm.id } });
    const { err, pending } = await rejected;
    expect(UvmError.is(err, 'UVM_EXITED'), String(err)).to.equal(true);
    expect(pending, 'rejected while HCS still had the attach').to.be.greaterThan(0);
    const exit = await uvm.exited;
    expect(exit).to.deep.include({ exitType: 'UnexpectedExit', status: 0x80370106 | 0, unexpected: true, attribution: [UNEXPECTED] });
    expect(exit.message).to.equal(`UVM ${uvm.id} exited unexpectedly: UnexpectedExit, status 0x80370106 (SystemExit UnexpectedExit, initiator Internal)`);
    expect(uvm.phase).to.equal('terminated');
    configureSimulator({ latency: {} });
    const { fns } = await traced(async () => {
      await expectCode(uvm.scsi.acquire({ hostPath: '/disks/later.vhdx', readOnly: true }), 'UVM_EXITED');
      await held.release();
      await uvm.terminate();
    });
    expect(fns).to.deep.equal([]);
    expect(uvm.describe()).to.deep.equal([]);
    uvm.close();
    await binding.created[0]![Symbol.asyncDispose]();
  });

  it('a call that crashes the VM as it arrives rejects UVM_EXITED whichever arrives first, the failure or the event', async () => {
    const binding = new RecordingHcs();
    const uvm = await startedUvm(binding);
    configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, crash: true }] });
    await expectCode(uvm.scsi.acquire({ hostPath: '/disks/a.vhdx', readOnly: true }), 'UVM_EXITED');
    expect((await uvm.exited).unexpected).to.equal(true);
    expect(uvm.describe()).to.deep.equal([]);
    await uvm.terminate();
    uvm.close();
  });

  it('terminate: the SystemExited that follows is expected (ForcedExit), nothing rejects', async () => {
    const binding = new RecordingHcs();
    const uvm = await startedUvm(binding);
    await uvm.terminate();
    expect(await uvm.exited).to.deep.include({ exitType: 'ForcedExit', unexpected: false });
    uvm.close();
  });
});

describe('uvmctl run: the VM killed through the simulator control mid-run', function () {
  this.timeout(60_000);

  it('exits 1 with one line naming the exit', async () => {
    const scenario = path.join(REPO, 'examples', 'lcow-pod', 'scenario.json');
    // The 4th modify of the run (while the containers are being allocated) crashes the VM.
    const result = await runCli(['run', scenario], { HCSSIM_CONFIG: JSON.stringify({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 4, crash: true }] }) });
    expect(result.code, result.stderr).to.equal(1);
    const lines = result.stderr.split('\n').filter((l) => l.startsWith('uvmctl:'));
    expect(lines, result.stderr).to.have.length(1);
    expect(lines[0]).to.match(/^uvmctl: UVM_EXITED: .*UVM lcow-pod exited unexpectedly: UnexpectedExit, status 0x80370106 \(SystemExit UnexpectedExit, initiator Internal\)/);
  });
});

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  try {
    await promise;
  } catch (err) {
    expect((err as UvmError).code, String(err)).to.equal(code);
    return;
  }
  expect.fail(`expected ${code}`);
}

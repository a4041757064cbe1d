// Timeouts and AbortSignals through the real FFI path: a never-completing ("hang") operation is
// cancelled with HcsCancelOperation, its completion is still awaited, nothing crashes, later
// operations work; an operation that completed despite the cancel resolves normally.
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { UvmError } from '../../src/core/errors.js';
import { HcsError, HResult, isTimeout } from '../../src/hcs/hcs-error.js';
import { pendingOperationCount } from '../../src/hcs/operation-driver.js';
import { configureSimulator, readSimulatorState } from '../../src/hcs/simulator-controls.js';
import type { ModifySettingRequest } from '../../src/hcs/schema.js';
import { ComputeCoreHcs } from '../../src/hcs/computecore-hcs.js';
import { createTestSystem, hcs, resetTestSimulator, SCSI_CONTROLLERS, systemConfig } from './simulator-fixture.js';

const C0 = SCSI_CONTROLLERS[0];
const add = (lun: number): ModifySettingRequest => ({
  ResourcePath: `VirtualMachine/Devices/Scsi/${C0}/Attachments/${lun}`,
  RequestType: 'Add',
  Settings: { Type: 'VirtualDisk', Path: `C:\\disks\\${lun}.vhdx` },
});

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

function busyWait(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // keep the main thread (and so every completion callback) blocked
  }
}

describe('hcs binding: cancellation and timeouts', function () {
  let dir: string;
  beforeEach(() => {
    resetTestSimulator();
    dir = mkdtempSync(join(tmpdir(), 'hcs-cancel-'));
  });
  afterEach(() => {
    configureSimulator({ trace: null });
    rmSync(dir, { recursive: true, force: true });
  });

  function traced(fn: string): { fn: string; hr: number }[] {
    const file = join(dir, 'trace.jsonl');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { fn: string; hr: number })
      .filter((l) => l.fn === fn);
  }

  it('a hung operation times out, is cancelled and completes with E_ABORT; later operations work', async function () {
    const system = await createTestSystem();
    configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hang: true }] });
    const started = Date.now();
    const e = await rejection(system.modify(add(1), { timeoutMs: 80 }));
    expect(Date.now() - started).to.be.at.least(70);
    expect(e).to.be.instanceOf(HcsError);
    const err = e as HcsError;
    expect(err.code).to.equal('TIMEOUT');
    expect(isTimeout(err)).to.equal(true);
    expect(err.hresult).to.equal(HResult.E_ABORT);
    expect(err.cause).to.be.instanceOf(HcsError);
    expect((err.cause as HcsError).code).to.equal('HCS_ERROR');
    expect((err.cause as HcsError).hresult).to.equal(HResult.E_ABORT);
    expect(pendingOperationCount()).to.equal(0);

    // Not applied, and the system keeps working.
    expect((await readSimulatorState(system)).HotAdded).to.equal(0);
    await system.modify(add(1));
    await system.modify(add(2), { timeoutMs: 5000 });
    expect((await readSimulatorState(system)).HotAdded).to.equal(2);
  });

  it('many hung operations time out together without crashing', async function () {
    const system = await createTestSystem();
    configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', hang: true }] });
    const errors = await Promise.all(Array.from({ length: 40 }, (_, lun) => rejection(system.modify(add(lun), { timeoutMs: 30 }))));
    for (const e of errors) expect(UvmError.is(e, 'TIMEOUT')).to.equal(true);
    expect(pendingOperationCount()).to.equal(0);
    configureSimulator({ clearFaults: true });
    await system.modify(add(0));
    expect((await readSimulatorState(system)).HotAdded).to.equal(1);
  });

  it('an AbortSignal cancels a hung operation → ABORTED with the HCS failure as cause', async function () {
    const system = await createTestSystem();
    configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hang: true }] });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 20);
    const e = (await rejection(system.modify(add(4), { signal: controller.signal }))) as HcsError;
    expect(e.code).to.equal('ABORTED');
    expect((e.cause as HcsError).hresult).to.equal(HResult.E_ABORT);
    expect(pendingOperationCount()).to.equal(0);
    expect((await readSimulatorState(system)).HotAdded).to.equal(0);
  });

  it('an already-aborted signal rejects before anything reaches HCS', async function () {
    const system = await createTestSystem();
    configureSimulator({ trace: join(dir, 'trace.jsonl') });
    const e = (await rejection(system.modify(add(4), { signal: AbortSignal.abort() }))) as HcsError;
    expect(e.code).to.equal('ABORTED');
    expect(e.cause).to.equal(undefined);
    await system.properties({}); // flushes: a traced call after the aborted one
    expect(traced('HcsGetComputeSystemProperties')).to.have.length(1);
    expect(traced('HcsModifyComputeSystem')).to.have.length(0);
  });

  it('a timeout while waiting in the queue rejects without an HCS call', async function () {
    const system = await createTestSystem();
    configureSimulator({ trace: join(dir, 'trace.jsonl'), faults: [{ fn: 'HcsModifyComputeSystem', hang: true }] });
    // Fill every slot of the driver with hung operations, then queue one more with a short timeout.
    const slots = 64;
    const hung = Array.from({ length: slots }, (_, lun) => rejection(system.modify(add(lun), { timeoutMs: 400 })));
    const queued = (await rejection(system.modify(add(63), { timeoutMs: 20 }))) as HcsError;
    expect(queued.code).to.equal('TIMEOUT');
    expect(queued.cause).to.equal(undefined);
    for (const e of await Promise.all(hung)) expect(UvmError.is(e, 'TIMEOUT')).to.equal(true);
    expect(traced('HcsModifyComputeSystem')).to.have.length(slots);
    expect(pendingOperationCount()).to.equal(0);
  });

  it('an operation applied before the cancel took effect resolves normally (the change is in effect)', async function () {
    const system = await createTestSystem();
    configureSimulator({ trace: join(dir, 'trace.jsonl') });
    const started = Date.now();
    const p = system.modify(add(9), { timeoutMs: 5 });
    // Block the main thread until the simulator has applied the request (its trace line is
    // written after the apply, before the completion callback, which now waits for this thread)
    // and the timeout is due: when the loop resumes, timers run before the callback is
    // delivered, so HcsCancelOperation arrives after the apply.
    for (let i = 0; i < 10; i++) await Promise.resolve();
    while (traced('HcsModifyComputeSystem').length === 0 && Date.now() - started < 10_000) busyWait(1);
    busyWait(10);
    expect(traced('HcsModifyComputeSystem'), 'the modify was applied while the main thread was blocked').to.have.length(1);
    await p;
    const state = await readSimulatorState(system);
    expect(state.Devices.Scsi[C0].Attachments['9']?.Path).to.equal('C:\\disks\\9.vhdx');
  });

  it('defaultTimeoutMs bounds create and start when the caller gives no timeout', async function () {
    const bounded = new ComputeCoreHcs({ defaultTimeoutMs: 60 });
    configureSimulator({ faults: [{ fn: 'HcsStartComputeSystem', nth: 1, hang: true }] });
    const system = await bounded.createComputeSystem(`hcs-default-timeout-${process.pid}`, systemConfig());
    try {
      const e = (await rejection(system.start({ signal: AbortSignal.timeout(5000) }))) as HcsError;
      expect(e.code).to.equal('TIMEOUT');
      await system.start(); // the fault fired once; the system starts now
      await system.terminate();
    } finally {
      system.close();
    }
    expect(() => new ComputeCoreHcs({ defaultTimeoutMs: -1 }))
      .to.throw(UvmError)
      .with.property('code', 'INVALID_ARGUMENT');
  });

  it('a create that times out releases its handle and the system is not left behind', async function () {
    configureSimulator({ faults: [{ fn: 'HcsCreateComputeSystem', nth: 1, hang: true }] });
    const id = `hcs-cancel-create-${process.pid}`;
    const e = (await rejection(
      hcs.createComputeSystem(id, { SchemaVersion: { Major: 2, Minor: 1 }, VirtualMachine: {} }, { timeoutMs: 30 }),
    )) as HcsError;
    expect(e.code).to.equal('TIMEOUT');
    const listed = await hcs.enumerateComputeSystems();
    expect(listed.map((s) => s.Id)).not.to.include(id);
  });
});

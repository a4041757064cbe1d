// The computecore binding through the real FFI path against the native simulator: lifecycle,
// UTF-16 round trips, concurrency, error documents, use after close, NameToGuid.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { UvmError } from '../../src/core/errors.js';
import { ComputeCoreHcs } from '../../src/hcs/computecore-hcs.js';
import {
  HcsError,
  HResult,
  isAlreadyStopped,
  isInvalidState,
  isNotExist,
  isNotSupported,
} from '../../src/hcs/hcs-error.js';
import { pendingOperationCount } from '../../src/hcs/operation-driver.js';
import { configureSimulator, isSimulator, readSimulatorProperties, readSimulatorState, simulatorStats } from '../../src/hcs/simulator-controls.js';
import type { ModifySettingRequest } from '../../src/hcs/schema.js';
import { createTestSystem, hcs, rejection, resetTestSimulator, SCSI_CONTROLLERS, systemConfig, uniqueId } from './simulator-fixture.js';

const C0 = SCSI_CONTROLLERS[0];

function scsiPath(controller: string, lun: number): string {
  return `VirtualMachine/Devices/Scsi/${controller}/Attachments/${lun}`;
}
function addDisk(controller: string, lun: number, path: string): ModifySettingRequest {
  return { ResourcePath: scsiPath(controller, lun), RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: path } };
}
function removeDisk(controller: string, lun: number): ModifySettingRequest {
  return { ResourcePath: scsiPath(controller, lun), RequestType: 'Remove' };
}


/** RFC 4122 v5 UUID of the UTF-8 name in the DNS namespace, computed independently of the simulator. */
function uuidV5(name: string): string {
  const ns = Buffer.from('6ba7b8109dad11d180b400c04fd430c8', 'hex');
  const h = createHash('sha1').update(ns).update(Buffer.from(name, 'utf8')).digest().subarray(0, 16);
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/**
 * Strings over every plane: ASCII (weighted up), JSON-significant characters, C0 controls incl.
 * NUL, the rest of the BMP without surrogates, and astral code points (surrogate pairs in UTF-16).
 */
const hostPathArbitrary = fc
  .array(
    fc.oneof(
      { arbitrary: fc.integer({ min: 0x20, max: 0x7e }), weight: 4 },
      { arbitrary: fc.constantFrom(0x5c, 0x22, 0x2f, 0x0a, 0x00, 0x7f, 0xfeff), weight: 2 },
      { arbitrary: fc.integer({ min: 0x01, max: 0x1f }), weight: 1 },
      { arbitrary: fc.integer({ min: 0x80, max: 0xd7ff }), weight: 2 },
      { arbitrary: fc.integer({ min: 0xe000, max: 0xfffd }), weight: 1 },
      { arbitrary: fc.integer({ min: 0x10000, max: 0x10ffff }), weight: 2 },
    ),
    { minLength: 1, maxLength: 40 },
  )
  .map((codePoints) => String.fromCodePoint(...codePoints));

describe('hcs binding (FFI → simulator)', function () {
  beforeEach(() => resetTestSimulator());

  it('loads the simulator library', function () {
    expect(isSimulator()).to.equal(true);
    expect(hcs.library.path).to.match(/libhcssim[^/]*\.so$/);
  });

  it('creates, starts, modifies, queries, terminates and closes a system', async function () {
    const id = uniqueId();
    const system = await hcs.createComputeSystem(id, systemConfig({ scsiControllers: 2 }));
    try {
      expect(system.id).to.equal(id);
      expect((await readSimulatorProperties(system)).State).to.equal('Created');

      await system.start();
      const running = await readSimulatorProperties(system);
      expect(running.State).to.equal('Running');
      expect(running.Owner).to.equal('uvm-orchestrator-tests');
      expect(Object.keys(running.SimulatorState.Devices.Scsi).sort()).to.deep.equal([C0, SCSI_CONTROLLERS[1]].sort());

      await system.modify(addDisk(SCSI_CONTROLLERS[1], 5, 'C:\\scratch\\sandbox.vhdx'));
      let state = await readSimulatorState(system);
      expect(state.HotAdded).to.equal(1);
      expect(state.Devices.Scsi[SCSI_CONTROLLERS[1]].Attachments['5']).to.deep.equal({
        Type: 'VirtualDisk',
        Path: 'C:\\scratch\\sandbox.vhdx',
      });

      const listed = await hcs.enumerateComputeSystems();
      expect(listed.map((s) => s.Id)).to.include(id);
      expect(listed.find((s) => s.Id === id)?.State).to.equal('Running');

      const other = await hcs.openComputeSystem(id);
      try {
        expect((await other.properties({})) as { State: string }).to.include({ Id: id, State: 'Running' });
      } finally {
        other.close();
      }

      await system.modify(removeDisk(SCSI_CONTROLLERS[1], 5));
      state = await readSimulatorState(system);
      expect(state.HotAdded).to.equal(0);

      await system.terminate();
      expect((await readSimulatorProperties(system)).State).to.equal('Stopped');
    } finally {
      system.close();
    }
    // A stopped system leaves the registry once its last handle is closed.
    expect(isNotExist(await rejection(hcs.openComputeSystem(id)))).to.equal(true);
    expect(pendingOperationCount()).to.equal(0);
  });

  it('shuts a system down', async function () {
    const system = await createTestSystem();
    await system.shutdown();
    expect((await readSimulatorProperties(system)).State).to.equal('Stopped');
  });

  describe('host paths round-trip exactly through UTF-16', function () {
    const tricky = [
      'C:\\Program Files\\layer one\\layer.vhdx',
      'C:\\quote"d\\it\'s\\sandbox.vhdx',
      '\\\\?\\Volume{0b1c1b9e-0000-0000-0000-100000000000}\\a\\b.vhdx',
      '\\\\server\\share\\trailing\\',
      'C:\\données\\ÆØÅ\\Ωμέγα\\日本語\\слой.vhdx',
      'C:\\emoji\\😀\\𝄞\\𠜎\\layer.vhdx',
      'C:\\ctl\\tab\there\\nl\nhere\\bell\u0007.vhdx',
      'C:\\json\\{"ResourcePath":"x"}\\[1,2]\\\\\\end',
      '\\\\.\\PHYSICALDRIVE3',
    ];

    it('for a fixed set of awkward paths', async function () {
      const system = await createTestSystem({ scsiControllers: 1 });
      await Promise.all(tricky.map((p, lun) => system.modify(addDisk(C0, lun, p))));
      const state = await readSimulatorState(system);
      tricky.forEach((p, lun) => expect(state.Devices.Scsi[C0].Attachments[String(lun)].Path).to.equal(p));
      await Promise.all(tricky.map((_, lun) => system.modify(removeDisk(C0, lun))));
      expect((await readSimulatorState(system)).HotAdded).to.equal(0);
    });

    it('for arbitrary strings of any Unicode code point (property)', async function () {
      const system = await createTestSystem({ scsiControllers: 1 });
      await fc.assert(
        fc.asyncProperty(hostPathArbitrary, async (path) => {
          await system.modify(addDisk(C0, 7, path));
          try {
            const state = await readSimulatorState(system);
            expect(state.Devices.Scsi[C0].Attachments['7'].Path).to.equal(path);
          } finally {
            await system.modify(removeDisk(C0, 7));
          }
        }),
        { numRuns: 60 },
      );
    });
  });

  it('runs 200 concurrent modifies', async function () {
    const system = await createTestSystem({ scsiControllers: 4 });
    const slots = SCSI_CONTROLLERS.flatMap((c) => Array.from({ length: 50 }, (_, lun) => ({ c, lun })));
    expect(slots).to.have.length(200);
    await Promise.all(slots.map(({ c, lun }) => system.modify(addDisk(c, lun, `C:\\disks\\${c}\\${lun}.vhdx`))));
    const state = await readSimulatorState(system);
    expect(state.HotAdded).to.equal(200);
    for (const { c, lun } of slots) {
      expect(state.Devices.Scsi[c].Attachments[String(lun)].Path).to.equal(`C:\\disks\\${c}\\${lun}.vhdx`);
    }
    await Promise.all(slots.map(({ c, lun }) => system.modify(removeDisk(c, lun))));
    expect((await readSimulatorState(system)).HotAdded).to.equal(0);
    expect(hcs.driver.size).to.equal(0);
  });

  it('bounds the operations in HCS at once and still completes them all', async function () {
    configureSimulator({ latencyMs: 2 });
    const small = new ComputeCoreHcs({ maxConcurrentOperations: 4 });
    const id = uniqueId();
    const system = await small.createComputeSystem(id, systemConfig());
    try {
      await system.start();
      const all = Promise.all(Array.from({ length: 24 }, (_, lun) => system.modify(addDisk(C0, lun, `C:\\${lun}.vhdx`))));
      // Right after issuing: at most 4 are in HCS, the rest wait in the queue.
      expect(small.driver.size).to.equal(24);
      expect(pendingOperationCount()).to.be.at.most(4);
      await all;
      expect((await readSimulatorState(system)).HotAdded).to.equal(24);
      await system.terminate();
    } finally {
      system.close();
    }
  });

  describe('error documents become HcsError', function () {
    it('an unknown ResourcePath → HCS_E_INVALID_JSON with the events', async function () {
      const system = await createTestSystem();
      const e = await rejection(system.modify({ ResourcePath: 'VirtualMachine/Devices/Nope', RequestType: 'Add' }));
      expect(e).to.be.instanceOf(HcsError);
      const err = e as HcsError;
      expect(err.code).to.equal('HCS_ERROR');
      expect(err.op).to.equal('HcsModifyComputeSystem');
      expect(err.systemId).to.equal(system.id);
      expect(err.hresult).to.equal(HResult.HCS_E_INVALID_JSON);
      expect(isNotSupported(err)).to.equal(true);
      expect(err.errorMessage).to.be.a('string').and.not.equal('');
      expect(err.events).to.have.length.greaterThan(0);
      expect(err.events[0]).to.include({ Provider: 'hcssim', Source: 'HcsModifyComputeSystem', EventId: 0x010d });
      expect(err.message.startsWith(`HcsModifyComputeSystem ${system.id}: `)).to.equal(true);
      expect(err.message).to.include('[Event Detail: ');
    });

    it('occupied LUN, empty LUN, not running, duplicate id, already stopped, unknown id', async function () {
      const system = await createTestSystem({ start: false });
      expect(isInvalidState(await rejection(system.modify(addDisk(C0, 1, 'C:\\a.vhdx'))))).to.equal(true);
      await system.start();
      expect(isInvalidState(await rejection(system.start()))).to.equal(true);

      await system.modify(addDisk(C0, 1, 'C:\\a.vhdx'));
      const occupied = (await rejection(system.modify(addDisk(C0, 1, 'C:\\b.vhdx')))) as HcsError;
      expect(occupied.hresult).to.equal(0x800700b7 | 0);
      expect(isNotExist(await rejection(system.modify(removeDisk(C0, 2))))).to.equal(true);

      const dup = (await rejection(hcs.createComputeSystem(system.id, systemConfig()))) as HcsError;
      expect(dup.hresult).to.equal(HResult.HCS_E_SYSTEM_ALREADY_EXISTS);

      await system.terminate();
      expect(isAlreadyStopped(await rejection(system.terminate()))).to.equal(true);
      expect(isNotExist(await rejection(hcs.openComputeSystem(uniqueId('missing'))))).to.equal(true);
    });

    it('an injected fault with a vmcompute-form HRESULT and a message is classified like the documented form', async function () {
      const system = await createTestSystem();
      configureSimulator({
        faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hr: 0xc037010e, message: 'gone fishing' }],
      });
      const err = (await rejection(system.modify(addDisk(C0, 3, 'C:\\x.vhdx')))) as HcsError;
      expect(err.hresult).to.equal(0xc037010e | 0);
      expect(err.errorMessage).to.equal('gone fishing');
      expect(isNotExist(err)).to.equal(true);
      // The fault fired once: the same request now succeeds.
      await system.modify(addDisk(C0, 3, 'C:\\x.vhdx'));
    });

    it('result documents come through one reused out slot: an error document, none, a properties document, in turn', async function () {
      const system = await createTestSystem();
      for (let i = 0; i < 3; i++) {
        configureSimulator({ faults: [{ fn: 'HcsModifyComputeSystem', nth: 1, hr: 0x80370118, message: `ü ${i} — ✓` }] });
        const err = (await rejection(system.modify(addDisk(C0, 4, 'C:\\x.vhdx')))) as HcsError;
        expect(err.errorMessage).to.equal(`ü ${i} — ✓`);
        expect(await system.modify(addDisk(C0, 4, 'C:\\x.vhdx'))).to.equal(undefined);
        expect(await system.modify(removeDisk(C0, 4))).to.equal(undefined);
        const props = (await system.properties({ PropertyTypes: [] })) as { Id?: string };
        expect(props.Id).to.equal(system.id);
      }
    });

    it('a create whose document is invalid fails and releases its handle', async function () {
      const id = uniqueId();
      const err = (await rejection(
        hcs.createComputeSystem(id, { SchemaVersion: { Major: 2, Minor: 1 }, VirtualMachine: { Chipset: { Uefi: {} }, Devices: { VirtualPMem: { MaximumCount: 999 } } } }),
      )) as HcsError;
      expect(err).to.be.instanceOf(HcsError);
      expect(err.op).to.equal('HcsCreateComputeSystem');
      expect(err.hresult).to.equal(HResult.E_INVALIDARG);
      expect(isNotExist(await rejection(hcs.openComputeSystem(id)))).to.equal(true);
    });

    it('grant and revoke report HRESULTs of synchronous calls', async function () {
      const system = await createTestSystem();
      await hcs.grantVmAccess(system.id, 'C:\\ü\\scratch.vhdx');
      expect((await readSimulatorState(system)).VmAccess).to.deep.equal([{ VmId: system.id, Path: 'C:\\ü\\scratch.vhdx' }]);
      await hcs.revokeVmAccess(system.id, 'C:\\ü\\scratch.vhdx');
      const e = (await rejection(hcs.revokeVmAccess(system.id, 'C:\\ü\\scratch.vhdx'))) as HcsError;
      expect(e.op).to.equal('HcsRevokeVmAccess');
      expect(isNotExist(e)).to.equal(true);
    });
  });

  describe('the simulator counts the calls it receives', function () {
    /** The calls counted since `before`, by function (only those that moved). */
    function callsSince(before: Record<string, number>): Record<string, number> {
      const now = simulatorStats().Calls;
      return Object.fromEntries(Object.entries(now).flatMap(([fn, n]) => (n - (before[fn] ?? 0) > 0 ? [[fn, n - (before[fn] ?? 0)]] : [])));
    }

    /** Modifies (one refused: the LUN is taken), a grant, a refused revoke, a properties query. */
    async function someCalls(system: Awaited<ReturnType<typeof createTestSystem>>): Promise<void> {
      await system.modify(addDisk(C0, 1, 'C:\\a.vhdx'));
      expect(((await rejection(system.modify(addDisk(C0, 1, 'C:\\b.vhdx')))) as HcsError).hresult).to.equal(0x800700b7 | 0);
      await system.modify(removeDisk(C0, 1));
      await hcs.grantVmAccess(system.id, 'C:\\a.vhdx');
      await rejection(hcs.revokeVmAccess(system.id, 'C:\\never-granted.vhdx'));
      await system.properties({});
    }

    const EXPECTED = { HcsModifyComputeSystem: 3, HcsGrantVmAccess: 1, HcsRevokeVmAccess: 1, HcsGetComputeSystemProperties: 1 };

    it('without a trace file: one per call, failed calls included', async function () {
      const system = await createTestSystem();
      const before = simulatorStats().Calls;
      await someCalls(system);
      expect(callsSince(before)).to.deep.equal(EXPECTED);
    });

    it('with a trace file: the same counts as the trace has lines, kept by a reset', async function () {
      const dir = mkdtempSync(join(tmpdir(), 'hcs-calls-'));
      try {
        const trace = join(dir, 'trace.jsonl');
        const system = await createTestSystem();
        const before = simulatorStats().Calls;
        configureSimulator({ trace });
        await someCalls(system);
        configureSimulator({ trace: null });
        const lines = readFileSync(trace, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { fn: string }).fn);
        const traced: Record<string, number> = {};
        for (const fn of lines) traced[fn] = (traced[fn] ?? 0) + 1;
        expect(traced).to.deep.equal(EXPECTED);
        expect(callsSince(before)).to.deep.equal(EXPECTED);
        const counted = simulatorStats().Calls;
        configureSimulator({ reset: true });
        expect(simulatorStats().Calls).to.deep.equal(counted);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });

  describe('use after close', function () {
    it('every call rejects with HANDLE_CLOSED and close is idempotent', async function () {
      const system = await createTestSystem();
      system.close();
      system.close();
      for (const call of [
        () => system.start(),
        () => system.shutdown(),
        () => system.terminate(),
        () => system.modify(addDisk(C0, 0, 'C:\\a.vhdx')),
        () => system.properties({}),
      ]) {
        const e = await rejection(call());
        expect(UvmError.is(e, 'HANDLE_CLOSED')).to.equal(true);
      }
      // The handle is gone but the system still runs; open a new handle to stop it.
      const again = await hcs.openComputeSystem(system.id);
      await again.terminate();
      again.close();
    });

    it('closes the native handle only after the operations in flight on it', async function () {
      const system = await createTestSystem();
      configureSimulator({ latency: { HcsTerminateComputeSystem: { ms: 40 } } });
      const terminating = system.terminate();
      system.close();
      expect(system.inFlight).to.equal(1);
      expect(UvmError.is(await rejection(system.properties({})), 'HANDLE_CLOSED')).to.equal(true);
      await terminating; // would be HCS_E_HANDLE if the handle had been closed under it
      expect(system.inFlight).to.equal(0);
      // Stopped + last handle closed → gone from the registry: the deferred close did happen.
      expect(isNotExist(await rejection(hcs.openComputeSystem(system.id)))).to.equal(true);
    });

    it('asyncDispose closes and waits for operations in flight', async function () {
      const id = uniqueId();
      configureSimulator({ latency: { HcsStartComputeSystem: { ms: 30 } } });
      let started = false;
      {
        await using system = await hcs.createComputeSystem(id, systemConfig());
        void system.start().then(() => (started = true));
      }
      expect(started).to.equal(true);
      const again = await hcs.openComputeSystem(id);
      await again.terminate();
      again.close();
    });
  });

  describe('NameToGuid', function () {
    it('returns the RFC 4122 v5 UUID of the UTF-8 name', function () {
      expect(hcs.nameToGuid('hello')).to.equal('9342d47a-1bab-5709-9869-c840b2eac501');
      expect(hcs.nameToGuid('C:\\ProgramData\\ü😀')).to.equal('dfde88ab-f3d4-5eb5-91e4-c74aac971cc0');
      for (const name of ['', 'layer', 'C:\\layers\\sha256-0123', 'Ωμέγα 𝄞']) {
        expect(hcs.nameToGuid(name)).to.equal(uuidV5(name));
      }
    });
  });

  it('rejects bad input before any HCS call', async function () {
    expect(UvmError.is(await rejection(hcs.createComputeSystem('', systemConfig())), 'INVALID_ARGUMENT')).to.equal(true);
    expect(UvmError.is(await rejection(hcs.openComputeSystem('a\0b')), 'INVALID_ARGUMENT')).to.equal(true);
    const system = await createTestSystem();
    const e = await rejection(system.modify(addDisk(C0, 0, 'C:\\a.vhdx'), { timeoutMs: -1 }));
    expect(UvmError.is(e, 'INVALID_ARGUMENT')).to.equal(true);
  });
});

// A model test of every manager at once: 1–64 concurrent workers acquire (reserve, then commit)
// and release shared keys on one UVM, with aborts at random steps (before the commit, or after
// any number of turns into it) and injected HCS failures (adds, guest halves, removals; through a
// guest connection also guest adds that apply and then report a failure). After
// each run it checks, over the real managers and FakeHcs:
// - slots are hcsshim's: a new SCSI disk takes the lowest free LUN, a new VPMEM layer the lowest
//   free device, at the moment it is reserved; a new share takes a name no entry has;
// - describe() == the fake's state: every live entry is attached, and nothing is attached that no
//   entry (live, kept, or a failed teardown) accounts for;
// - after every lease is released and failed teardowns retried, nothing is attached but the kept
//   direct-mapped VSMB shares (which go with the VM), and describe() lists only those.
// `UVM_MODEL_RUNS` raises the number of runs (default 200).
import { expect } from 'chai';
import fc from 'fast-check';
import { UvmError } from '../../../src/core/errors.js';
import type { Lease } from '../../../src/core/lease.js';
import type { Reservation } from '../../../src/core/refcounted-table.js';
import type { ResourceInfo } from '../../../src/devices/device-types.js';
import { resourcePaths, SCSI_LUNS_PER_CONTROLLER } from '../../../src/devices/resource-paths.js';
import type { FakeHcsCall } from '../../../src/hcs/fake-hcs.js';
import { prng } from '../../support/prng.js';
import type { GuestConnection } from '../../../src/uvm/guest-connection.js';
import { deviceKit, type DeviceKit } from './device-test-kit.js';

interface ModelRun {
  os: 'linux' | 'windows';
  workers: number;
  opsPerWorker: number;
  /** Per mille of HCS modify calls that fail. */
  faultPerMille: number;
  /** Per mille of acquisitions aborted. */
  abortPerMille: number;
  multiMapping: boolean;
  directMap: boolean;
  /**
   * Guest halves through a guest connection (else inside HcsModifyComputeSystem), where a guest
   * call may apply and still report a failure (the ambiguous case).
   */
  guestConnection: boolean;
  seed: number;
}

const runArb: fc.Arbitrary<ModelRun> = fc.record({
  os: fc.constantFrom('linux' as const, 'windows' as const),
  workers: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 9, max: 64 })),
  opsPerWorker: fc.integer({ min: 1, max: 6 }),
  faultPerMille: fc.constantFrom(0, 30, 120),
  abortPerMille: fc.constantFrom(0, 150, 400),
  multiMapping: fc.boolean(),
  directMap: fc.boolean(),
  guestConnection: fc.boolean(),
  seed: fc.integer(),
});

/** Codes an acquisition may end with under aborts and faults (anything else is a defect). */
const EXPECTED_CODES = new Set(['ABORTED', 'HCS_ERROR', 'TEARDOWN_FAILED', 'NO_SLOT', 'MOUNT_CONFLICT']);

type AnyLease = Lease<unknown>;

/** One random acquisition: its reservation, and what to check about its placement. */
function reserveRandom(kit: DeviceKit, run: ModelRun, rnd: () => number): { reservation: Reservation<unknown>; check: (before: ResourceInfo[]) => void } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const linux = run.os === 'linux';
  const kind = pick(linux ? (['scsi', 'scsi', 'vpmem', 'plan9'] as const) : (['scsi', 'vsmb', 'vsmb', 'pipe'] as const));
  switch (kind) {
    case 'scsi': {
      const i = Math.floor(rnd() * 6);
      const hostPath = linux ? `/d/${i}.vhdx` : `C:\\d\\${i}.vhdx`;
      const r = kit.scsi.reserve({ hostPath, readOnly: i % 2 === 0, ...(rnd() < 0.8 ? { mount: {} } : {}) });
      return {
        reservation: r as Reservation<unknown>,
        check: (before) => {
          if (r.shared || !r.value) return;
          const used = new Set(before.filter((e) => e.kind === 'scsi-attachment').map((e) => e.slot));
          const reserved = new Set(kit.config.reservedScsiSlots);
          let lowest = 0;
          while (reserved.has(lowest) || used.has(`${Math.floor(lowest / SCSI_LUNS_PER_CONTROLLER)}:${lowest % SCSI_LUNS_PER_CONTROLLER}`)) lowest++;
          expect(`${r.value.controller}:${r.value.lun}`, `SCSI ${hostPath}: the lowest free LUN`).to.equal(
            `${Math.floor(lowest / SCSI_LUNS_PER_CONTROLLER)}:${lowest % SCSI_LUNS_PER_CONTROLLER}`,
          );
        },
      };
    }
    case 'vpmem': {
      const i = Math.floor(rnd() * 6);
      const placed = kit.vpmem.reserve({ hostPath: `/l/${i}.vhd` }, (1 + i) * 300 * 1024);
      if (!placed.ok) throw placed.error;
      const r = placed.reservation;
      return {
        reservation: r as Reservation<unknown>,
        check: (before) => {
          if (r.shared || !r.value || run.multiMapping) return;
          const used = new Set(before.filter((e) => e.kind === 'vpmem-device').map((e) => e.slot));
          let lowest = 0;
          while (used.has(String(lowest))) lowest++;
          expect(r.value.device, `VPMEM: the lowest free device ${JSON.stringify(before.filter((e) => e.kind === 'vpmem-device'))}`).to.equal(lowest);
        },
      };
    }
    case 'plan9':
    case 'vsmb': {
      const i = Math.floor(rnd() * 4);
      const file = i === 3;
      const hostPath = linux ? (file ? '/p/2/f.conf' : `/p/${i}`) : file ? 'C:\\p\\2\\f.conf' : `C:\\p\\${i}`;
      const readOnly = rnd() < 0.5;
      const r = (linux ? kit.plan9 : kit.vsmb).reserve({ hostPath, readOnly }, file ? 'file' : 'directory') as Reservation<{ name: string }>;
      return {
        reservation: r as Reservation<unknown>,
        check: (before) => {
          if (r.shared || !r.value) return;
          const shares = before.filter((e) => e.kind === (linux ? 'plan9-share' : 'vsmb-share'));
          // A file share joins its directory's restricted share, which may exist.
          if (!file) expect(shares.map((e) => e.slot), `${kind} ${hostPath}: a fresh name`).not.to.include(r.value.name);
        },
      };
    }
    case 'pipe': {
      const r = kit.pipes.reserve({ hostPath: `\\\\.\\pipe\\p${Math.floor(rnd() * 3)}` });
      return { reservation: r as Reservation<unknown>, check: () => undefined };
    }
  }
}

function describeAll(kit: DeviceKit): ResourceInfo[] {
  return [kit.scsi, kit.vpmem, kit.plan9, kit.vsmb, kit.pipes].flatMap((m) => m.describe());
}

/** What the fake holds for one entry (host and guest keys), from its describe() line. */
function fakeKeys(e: ResourceInfo, os: 'linux' | 'windows'): string[] {
  const slot = e.slot ?? '';
  switch (e.kind) {
    case 'scsi-attachment': {
      const [c, l] = slot.split(':').map(Number);
      return [`host ${resourcePaths.scsiAttachment(c!, l!)}`];
    }
    case 'scsi-mount':
      return [`guest MappedVirtualDisk:${e.guestPath}`];
    case 'vpmem-device':
      return [`host ${resourcePaths.vpmemDevice(Number(slot))}`, `guest VPMemDevice:${e.guestPath}`];
    case 'vpmem-mapping': {
      const [d, off] = slot.split('@').map(Number);
      return [`host ${resourcePaths.vpmemMapping(d!, off!)}`, `guest VPMemDevice:${e.guestPath}`];
    }
    case 'plan9-share':
      return [`host ${resourcePaths.plan9Shares}/${slot}`, `guest MappedDirectory:${e.guestPath}`];
    case 'vsmb-share':
      return [`host ${resourcePaths.vsmbShares}/${slot}`];
    case 'mapped-pipe':
      return [`host ${resourcePaths.mappedPipe(e.hostPath!)}`];
    default:
      void os;
      return [];
  }
}

/** describe() == the fake's state, at a quiescent point. */
function checkDescribeMatchesFake(kit: DeviceKit, os: 'linux' | 'windows'): void {
  const entries = describeAll(kit);
  const attached = new Set(kit.system.attached());
  const certain = new Set(entries.filter((e) => e.state === 'live' || e.state === 'kept').flatMap((e) => fakeKeys(e, os)));
  const possible = new Set(entries.flatMap((e) => fakeKeys(e, os)));
  for (const k of certain) expect(attached.has(k), `${k} is live in describe() but not attached`).to.equal(true);
  for (const k of attached) expect(possible.has(k), `${k} is attached but no describe() entry accounts for it`).to.equal(true);
  for (const e of entries) expect(['live', 'kept', 'teardown-failed'], `${e.kind} ${e.key} at rest`).to.include(e.state);
}

async function releaseUntilDone(release: () => Promise<void>): Promise<void> {
  for (let i = 0; ; i++) {
    try {
      await release();
      return;
    } catch (err) {
      if (i >= 5) throw err;
    }
  }
}

async function runModel(run: ModelRun): Promise<{ acquired: number; failed: number }> {
  const linux = run.os === 'linux';
  const rnd = prng(run.seed);
  const box: { system?: DeviceKit['system'] } = {};
  const guestConnection: GuestConnection = {
    // Applied through the fake's guest model; sometimes applied AND reported failed.
    modifySettings: async (request) => {
      await box.system!.modify({ GuestRequest: request });
      if (request.RequestType === 'Add' && rnd() * 1000 < run.faultPerMille / 2) throw new UvmError('HCS_ERROR', 'guest applied the add, then reported a failure');
    },
  };
  const kit = await deviceKit(
    {
      os: run.os,
      vpmemCount: linux ? 3 : 0,
      vpmemMultiMapping: run.multiMapping,
      vpmemMaxSizeBytes: 4 * 1024 * 1024,
      vsmbNoDirectMap: !run.directMap,
      // Few free LUNs, so that NO_SLOT and the VPMEM → SCSI pressure happen.
      reservedScsiSlots: Array.from({ length: 58 }, (_, i) => i),
    },
    { leakCheck: false, ...(run.guestConnection ? { guestConnection } : {}) },
  );
  box.system = kit.system;
  const fs = kit.hostFs;
  if (linux) fs.dir('/p/0').dir('/p/1').dir('/p/2').file('/p/2/f.conf');
  else fs.dir('C:\\p\\0').dir('C:\\p\\1').dir('C:\\p\\2').file('C:\\p\\2\\f.conf');
  kit.hcs.failWhen((c: FakeHcsCall) =>
    c.fn === 'modify' && rnd() * 1000 < run.faultPerMille ? new UvmError('HCS_ERROR', `injected failure of ${JSON.stringify(c.doc).slice(0, 80)}`) : undefined,
  );
  const held: AnyLease[] = [];
  const failedReleases: AnyLease[] = [];
  let acquired = 0;
  let failed = 0;

  const worker = async (): Promise<void> => {
    const mine: AnyLease[] = [];
    for (let op = 0; op < run.opsPerWorker; op++) {
      if (mine.length > 0 && rnd() < 0.4) {
        const lease = mine.splice(Math.floor(rnd() * mine.length), 1)[0]!;
        await lease.release().catch(() => failedReleases.push(lease));
        continue;
      }
      const before = describeAll(kit);
      let reserved: ReturnType<typeof reserveRandom>;
      try {
        reserved = reserveRandom(kit, run, rnd);
      } catch (err) {
        if (!UvmError.is(err) || !EXPECTED_CODES.has(err.code)) throw err;
        failed++;
        continue;
      }
      reserved.check(before);
      const aborted = rnd() * 1000 < run.abortPerMille;
      const ac = new AbortController();
      if (aborted) {
        const turns = Math.floor(rnd() * 12);
        if (turns === 0) ac.abort();
        else
          void (async () => {
            for (let t = 0; t < turns; t++) await new Promise<void>((resolve) => setImmediate(resolve));
            ac.abort();
          })();
      }
      try {
        mine.push(await reserved.reservation.commit({ signal: ac.signal }));
        acquired++;
      } catch (err) {
        if (!UvmError.is(err) || !EXPECTED_CODES.has(err.code)) throw err;
        failed++;
      }
    }
    held.push(...mine);
  };

  await Promise.all(Array.from({ length: run.workers }, worker));
  // Quiescent: every acquisition and release has settled (aborted ones included).
  await new Promise<void>((resolve) => setImmediate(resolve));
  checkDescribeMatchesFake(kit, run.os);

  kit.hcs.clearFaults();
  for (const lease of [...held, ...failedReleases]) await releaseUntilDone(() => lease.release());
  for (const m of [kit.scsi, kit.vpmem, kit.plan9, kit.vsmb, kit.pipes]) await releaseUntilDone(() => m.retryFailedTeardowns());
  const left = describeAll(kit);
  expect(left.filter((e) => e.state !== 'kept').map((e) => `${e.kind} ${e.key} ${e.state}`), 'nothing left after release').to.deep.equal([]);
  expect(left.every((e) => e.kind === 'vsmb-share' && run.directMap)).to.equal(true);
  expect(kit.system.attached().sort(), 'attached == the kept direct-mapped shares').to.deep.equal(left.flatMap((e) => fakeKeys(e, run.os)).sort());
  // They go with the VM.
  await kit.system.terminate();
  kit.lifecycle.markTerminated();
  expect(describeAll(kit)).to.deep.equal([]);
  return { acquired, failed };
}

describe('device model: every manager, 1–64 workers, aborts and faults (property)', () => {
  it('no leak, describe() == HCS state, hcsshim slots, in every run', async function () {
    this.timeout(300_000);
    let acquired = 0;
    let failed = 0;
    await fc.assert(
      fc.asyncProperty(runArb, async (run) => {
        const r = await runModel(run);
        acquired += r.acquired;
        failed += r.failed;
      }),
      { numRuns: Number(process.env.UVM_MODEL_RUNS ?? 200), seed: process.env.UVM_MODEL_SEED ? Number(process.env.UVM_MODEL_SEED) : undefined },
    );
    expect(acquired).to.be.greaterThan(0);
    expect(failed).to.be.greaterThan(0);
  });
});

import { expect } from 'chai';
import { UvmError } from '../../src/core/errors.js';
import { configureSimulator } from '../../src/hcs/simulator-controls.js';
import { failGuestHalf } from '../support/guest-halves.js';
import { disposeUvms, expectEmpty, expectInSync, hostFs, modifyCalls, randomSoak, simulatorState, SOAK, startUvm } from './devices-support.js';

interface SimShare {
  Name: string;
  Path: string;
  AllowedFiles?: string[];
  Options?: Record<string, boolean>;
  Flags?: number;
}
const vsmbShares = async (uvm: Parameters<typeof simulatorState>[0]): Promise<SimShare[]> =>
  (await simulatorState(uvm)).Devices.VirtualSmb.Shares as unknown as SimShare[];

const OPS = SOAK ? 1000 : 200;
const ROUNDS = SOAK ? 20 : 8;

describe('integration: VSMB, Plan9 and mapped pipes through the simulator', function () {
  this.timeout(60000);
  afterEach(disposeUvms);
  before(() => {
    for (let d = 0; d < 20; d++) {
      hostFs.dir(`C:\\share\\d${d}`);
      hostFs.dir(`/srv/d${d}`);
      for (let f = 0; f < 4; f++) {
        hostFs.file(`C:\\share\\d${d}\\f${f}.txt`);
        hostFs.file(`/srv/d${d}/f${f}.txt`);
      }
    }
  });

  describe('VSMB', () => {
    it('shares a directory between two owners, releases both; HotAdded 0', async () => {
      const uvm = await startUvm({ os: 'windows', vsmbNoDirectMap: true });
      const a = await uvm.vsmb.acquire({ hostPath: 'C:\\share\\d0', readOnly: true, layer: true });
      const b = await uvm.vsmb.acquire({ hostPath: 'C:\\share\\d0', readOnly: true, layer: true });
      expect(b.value.name).to.equal(a.value.name);
      expect((await simulatorState(uvm)).HotAdded).to.equal(1);
      await a.release();
      await expectInSync(uvm);
      await b.release();
      await expectEmpty(uvm);
    });

    it('single files: AllowedFiles grows through Update and shrinks when a file is released', async () => {
      const uvm = await startUvm({ os: 'windows', vsmbNoDirectMap: true });
      const f0 = await uvm.vsmb.acquire({ hostPath: 'C:\\share\\d1\\f0.txt', readOnly: true });
      const f1 = await uvm.vsmb.acquire({ hostPath: 'C:\\share\\d1\\f1.txt', readOnly: true });
      expect((await vsmbShares(uvm))[0].AllowedFiles).to.deep.equal(['C:\\share\\d1\\f0.txt', 'C:\\share\\d1\\f1.txt']);
      await f0.release();
      expect((await vsmbShares(uvm))[0].AllowedFiles).to.deep.equal(['C:\\share\\d1\\f1.txt']);
      await f1.release();
      await expectEmpty(uvm);
    });

    it('direct-mapped shares stay (kept, listed) after the last release, are reused, and are never removed while the VM runs', async () => {
      const uvm = await startUvm({ os: 'windows' });
      const a = await uvm.vsmb.acquire({ hostPath: 'C:\\share\\d2', readOnly: true });
      await a.release();
      await expectInSync(uvm);
      expect(uvm.vsmb.describe().map((r) => [r.slot, r.state, r.refCount])).to.deep.equal([[a.value.name, 'kept', 0]]);
      expect(await vsmbShares(uvm)).to.have.length(1);
      const calls = modifyCalls(uvm.id);
      const b = await uvm.vsmb.acquire({ hostPath: 'C:\\share\\d2', readOnly: true });
      expect(b.value.name).to.equal(a.value.name);
      await b.release();
      await uvm.retryFailedTeardowns();
      expect(modifyCalls(uvm.id), 'no Add for the reuse, no Remove while the VM runs').to.equal(calls);
      await expectEmpty(uvm);
    });

    it('the same directory read-only and read-write is two shares', async () => {
      const uvm = await startUvm({ os: 'windows', vsmbNoDirectMap: true });
      const [ro, rw] = await Promise.all([
        uvm.vsmb.acquire({ hostPath: 'C:\\share\\d4', readOnly: true }),
        uvm.vsmb.acquire({ hostPath: 'C:\\share\\d4', readOnly: false }),
      ]);
      expect([ro.value.name, rw.value.name]).to.deep.equal(['s1', 's2']);
      await expectInSync(uvm);
      await Promise.all([ro.release(), rw.release()]);
      await expectEmpty(uvm);
    });

    it('writable shares are ACCESS_DENIED when noWritableFileShares', async () => {
      const uvm = await startUvm({ os: 'windows', noWritableFileShares: true });
      const err = await uvm.vsmb.acquire({ hostPath: 'C:\\share\\d3', readOnly: false }).catch((e: unknown) => e);
      expect(UvmError.is(err, 'ACCESS_DENIED')).to.equal(true);
      await expectEmpty(uvm);
    });

    it(`random concurrency: 64 workers × ${OPS} (dirs RO/RW, files), in sync at every quiescent point`, async () => {
      const uvm = await startUvm({ os: 'windows', vsmbNoDirectMap: true });
      configureSimulator({ latency: { HcsModifyComputeSystem: { ms: 0, jitterMs: 1 } }, seed: 5 });
      const before = modifyCalls(uvm.id);
      const { acquires } = await randomSoak(
        uvm,
        (rand) => {
          const d = Math.floor(rand() * 20);
          const hostPath = rand() < 0.5 ? `C:\\share\\d${d}` : `C:\\share\\d${d}\\f${Math.floor(rand() * 4)}.txt`;
          return uvm.vsmb.acquire({ hostPath, readOnly: rand() < 0.7 });
        },
        { opsPerWorker: OPS, rounds: ROUNDS, seed: 4 },
      );
      expect(modifyCalls(uvm.id) - before).to.be.greaterThan(acquires / 5);
    });
  });

  describe('Plan9', () => {
    it('shares a directory between two owners, releases both; a single file is a restricted share', async () => {
      const uvm = await startUvm({ os: 'linux' });
      const a = await uvm.plan9.acquire({ hostPath: '/srv/d0', readOnly: true });
      const b = await uvm.plan9.acquire({ hostPath: '/srv/d0', readOnly: true });
      const f = await uvm.plan9.acquire({ hostPath: '/srv/d1/f2.txt', readOnly: false });
      expect(b.value.name).to.equal(a.value.name);
      expect(f.value.guestPath).to.equal(`/run/mounts/plan9/${f.value.name}/f2.txt`);
      const shares = (await simulatorState(uvm)).Devices.Plan9.Shares as unknown as SimShare[];
      expect(shares.map((s) => [s.Path, s.Flags, s.AllowedFiles])).to.deep.equal([
        ['/srv/d0', 5, undefined],
        ['/srv/d1/', 0x84, ['f2.txt']],
      ]);
      await expectInSync(uvm);
      await a.release();
      await b.release();
      await f.release();
      await expectEmpty(uvm);
    });

    it('a guest mount failing after the share was added is compensated', async () => {
      const uvm = await startUvm({ os: 'linux' });
      failGuestHalf({ nth: 1 });
      const err = await uvm.plan9.acquire({ hostPath: '/srv/d5/f1.txt', readOnly: true }).catch((e: unknown) => e);
      expect(UvmError.is(err, 'HCS_ERROR')).to.equal(true);
      await expectEmpty(uvm);
    });

    it('a different readOnly is a second share; ACCESS_DENIED for writable when denied', async () => {
      const uvm = await startUvm({ os: 'linux', noWritableFileShares: true });
      const a = await uvm.plan9.acquire({ hostPath: '/srv/d0', readOnly: true });
      const errs = await Promise.all([
        uvm.plan9.acquire({ hostPath: '/srv/d0', readOnly: false }).catch((e: unknown) => e),
        uvm.plan9.acquire({ hostPath: '/srv/d1', readOnly: false }).catch((e: unknown) => e),
      ]);
      expect(errs.map((e) => (UvmError.is(e) ? e.code : e))).to.deep.equal(['ACCESS_DENIED', 'ACCESS_DENIED']);
      await a.release();
      const uvm2 = await startUvm({ os: 'linux' });
      const b = await uvm2.plan9.acquire({ hostPath: '/srv/d0', readOnly: true });
      const rw = await uvm2.plan9.acquire({ hostPath: '/srv/d0', readOnly: false });
      expect([b.value.name, rw.value.name, rw.value.readOnly]).to.deep.equal(['0', '1', false]);
      await expectInSync(uvm2);
      await b.release();
      await rw.release();
      await expectEmpty(uvm);
      await expectEmpty(uvm2);
    });

    it(`random concurrency: 64 workers × ${OPS} (dirs and files), in sync at every quiescent point`, async () => {
      const uvm = await startUvm({ os: 'linux' });
      configureSimulator({ latency: { HcsModifyComputeSystem: { ms: 0, jitterMs: 1 } }, seed: 6 });
      const before = modifyCalls(uvm.id);
      const { acquires } = await randomSoak(
        uvm,
        (rand) => {
          const d = Math.floor(rand() * 20);
          // readOnly is fixed per path, so the soak never asks for a conflicting config.
          return rand() < 0.5
            ? uvm.plan9.acquire({ hostPath: `/srv/d${d}`, readOnly: d % 2 === 0 })
            : uvm.plan9.acquire({ hostPath: `/srv/d${d}/f${Math.floor(rand() * 4)}.txt`, readOnly: d % 3 === 0 });
        },
        { opsPerWorker: OPS, rounds: ROUNDS, seed: 8 },
      );
      expect(modifyCalls(uvm.id) - before).to.be.greaterThan(acquires / 5);
    });
  });

  describe('mapped pipes', () => {
    it('maps a pipe for two owners, releases both; random concurrency stays in sync', async () => {
      const uvm = await startUvm({ os: 'windows' });
      const a = await uvm.pipes.acquire({ hostPath: '\\\\.\\pipe\\docker_engine' });
      const b = await uvm.pipes.acquire({ hostPath: '\\\\.\\pipe\\docker_engine' });
      expect((await simulatorState(uvm)).HotAdded).to.equal(1);
      await a.release();
      await b.release();
      await expectEmpty(uvm);
      configureSimulator({ latency: { HcsModifyComputeSystem: { ms: 0, jitterMs: 1 } }, seed: 9 });
      await randomSoak(uvm, (rand) => uvm.pipes.acquire({ hostPath: `\\\\.\\pipe\\p${Math.floor(rand() * 30)}` }), {
        opsPerWorker: OPS,
        rounds: ROUNDS,
        seed: 10,
      });
    });
  });
});

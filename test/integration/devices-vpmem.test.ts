import { expect } from 'chai';
import { UvmError } from '../../src/core/errors.js';
import { configureSimulator } from '../../src/hcs/simulator-controls.js';
import { failGuestHalf } from '../support/guest-halves.js';
import { disposeUvms, expectEmpty, expectInSync, hostFs, modifyCalls, randomSoak, simulatorState, SOAK, startUvm } from './devices-support.js';

const MiB = 1024 * 1024;

describe('integration: VPMEM through the simulator', function () {
  this.timeout(60000);
  afterEach(disposeUvms);
  before(() => {
    for (let i = 0; i < 200; i++) hostFs.file(`/layers/${i}/layer.vhd`, (1 + (i % 7)) * MiB + 123);
    hostFs.file('/layers/big.vhd', 5 * 1024 * MiB);
  });

  it('attaches a layer, shares it between two owners, releases both; HotAdded 0', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 4 } });
    const a = await uvm.vpmem.acquire({ hostPath: '/layers/1/layer.vhd' });
    const b = await uvm.vpmem.acquire({ hostPath: '/layers/1/layer.vhd' });
    expect(b.value).to.deep.equal({ device: 0, hostPath: '/layers/1/layer.vhd', guestPath: '/run/layers/p0' });
    expect((await simulatorState(uvm)).HotAdded).to.equal(2);
    await expectInSync(uvm);
    await a.release();
    await b.release();
    await expectEmpty(uvm);
  });

  it('fills 128 devices, then NO_SLOT; LAYER_TOO_LARGE for a file bigger than a device', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 128 } });
    const leases = await Promise.all(Array.from({ length: 128 }, (_, i) => uvm.vpmem.acquire({ hostPath: `/layers/${i}/layer.vhd` })));
    expect(new Set(leases.map((l) => l.value.device)).size).to.equal(128);
    const errors = await Promise.all(
      ['/layers/128/layer.vhd', '/layers/big.vhd'].map((p) => uvm.vpmem.acquire({ hostPath: p }).then(() => undefined, (e: unknown) => e)),
    );
    expect(errors.map((e) => (UvmError.is(e) ? e.code : e))).to.deep.equal(['NO_SLOT', 'LAYER_TOO_LARGE']);
    await expectInSync(uvm);
    await Promise.all(leases.map((l) => l.release()));
    await expectEmpty(uvm);
  });

  it('multi-mapping packs many small layers into one device', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 2, multiMapping: true } });
    const leases = await Promise.all(Array.from({ length: 150 }, (_, i) => uvm.vpmem.acquire({ hostPath: `/layers/${i}/layer.vhd` })));
    expect(new Set(leases.map((l) => l.value.device))).to.deep.equal(new Set([0]));
    const state = await simulatorState(uvm);
    const devices = state.Devices.VirtualPMem.Devices;
    expect(Object.keys(devices)).to.deep.equal(['0']);
    expect(Object.keys(devices['0'].Mappings ?? {})).to.have.length(150);
    await expectInSync(uvm);
    await Promise.all(leases.map((l) => l.release()));
    await expectEmpty(uvm);
  });

  it('a guest half that fails after the host half was applied is compensated', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 4 } });
    failGuestHalf({ nth: 1 });
    const err = await uvm.vpmem.acquire({ hostPath: '/layers/2/layer.vhd' }).catch((e: unknown) => e);
    expect(UvmError.is(err, 'HCS_ERROR')).to.equal(true);
    await expectEmpty(uvm);
    const again = await uvm.vpmem.acquire({ hostPath: '/layers/2/layer.vhd' });
    expect(again.value.device).to.equal(0);
    await again.release();
    await expectEmpty(uvm);
  });

  it('a combined remove whose guest half fails is retried half by half', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 4, multiMapping: true } });
    const a = await uvm.vpmem.acquire({ hostPath: '/layers/3/layer.vhd' });
    failGuestHalf({ nth: 1 });
    const err = await a.release().catch((e: unknown) => e);
    expect(UvmError.is(err, 'TEARDOWN_FAILED')).to.equal(true);
    configureSimulator({ clearFaults: true });
    await a.release();
    await expectEmpty(uvm);
  });

  for (const multiMapping of [false, true]) {
    it(`random concurrency (${multiMapping ? 'multi-mapping' : 'one layer per device'}): 64 workers × ${SOAK ? 1000 : 200}, in sync at every quiescent point`, async () => {
      const uvm = await startUvm({ os: 'linux', vpmem: { count: 128, multiMapping } });
      configureSimulator({ latency: { HcsModifyComputeSystem: { ms: 0, jitterMs: 1 } }, seed: 11 });
      const before = modifyCalls(uvm.id);
      const { acquires } = await randomSoak(uvm, (rand) => uvm.vpmem.acquire({ hostPath: `/layers/${Math.floor(rand() * 120)}/layer.vhd` }), {
        opsPerWorker: SOAK ? 1000 : 200,
        rounds: SOAK ? 20 : 8,
        seed: multiMapping ? 3 : 2,
      });
      expect(modifyCalls(uvm.id) - before).to.be.greaterThan(acquires / 5);
    });
  }
});

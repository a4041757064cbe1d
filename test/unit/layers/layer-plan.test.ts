import { expect } from 'chai';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import type { UvmFacts } from '../../../src/devices/device-types.js';
import { composeLcowLayers } from '../../../src/layers/lcow-layer-composer.js';
import { planLcowLayers, planWcowLayers, vpmemMappingSize } from '../../../src/layers/layer-plan.js';
import type { LcowLayerInputs } from '../../../src/layers/layer-inputs.js';
import { FakeUvmDevices } from '../../fakes/fake-uvm-devices.js';

const MIB = 1024 * 1024;

function uvm(facts: Partial<UvmFacts> = {}): FakeUvmDevices {
  const fs = new FakeHostFs()
    .file('/l/1/layer.vhd', 100_000)
    .file('/l/2/layer.vhd', 200_000)
    .file('/l/3/layer.vhd', 300_000)
    .file('/l/big/layer.vhd', 2 * MIB)
    .file('/s0/sandbox.vhdx')
    .file('/s/sandbox.vhdx');
  return new FakeUvmDevices({ os: 'linux', facts, hostFs: fs });
}

const inputs = (folders: string[], scratch = '/s/sandbox.vhdx'): LcowLayerInputs => ({
  os: 'linux',
  layers: folders.map((f) => ({ hostPath: `/l/${f}/layer.vhd` })),
  scratchVhd: scratch,
});

describe('layer plan (dry run)', () => {
  it('predicts VPMEM, the fallbacks and their reasons, and the slots left, with no call', async () => {
    const u = uvm({ vpmemCount: 2 });
    const plan = await planLcowLayers(u, inputs(['1', 'big', '2', '3']), 'c1');
    expect(plan.layers.map((l) => [l.hostPath, l.target, l.reason ?? null])).to.deep.equal([
      ['/l/1/layer.vhd', 'vpmem', null],
      ['/l/big/layer.vhd', 'scsi', 'too-large'],
      ['/l/2/layer.vhd', 'vpmem', null],
      ['/l/3/layer.vhd', 'scsi', 'no-slot'],
    ]);
    expect(plan.scratch).to.deep.equal({ hostPath: '/s/sandbox.vhdx', resolvedPath: '/s/sandbox.vhdx', shared: false, mountPath: '/run/gcs/c/c1' });
    expect(plan.rootfsPath).to.equal('/run/gcs/c/c1/rootfs');
    expect(plan.scratchPath).to.equal('/run/gcs/c/c1/scratch/c1');
    expect(plan.slotsLeft).to.deep.equal({ vpmem: 0, scsi: 64 - 3 });
    expect(plan.fits).to.equal(true);
    expect(u.calls).to.deep.equal([]);
  });

  it('agrees with what the composer then does', async () => {
    const u = uvm({ vpmemCount: 2 });
    const plan = await planLcowLayers(u, inputs(['1', 'big', '2', '3']), 'c1');
    const composed = await composeLcowLayers(u, 'c1', inputs(['1', 'big', '2', '3']));
    expect(composed.info.layers.map((l) => [l.target, l.reason])).to.deep.equal(plan.layers.map((l) => [l.target, l.reason]));
    await composed.release();
  });

  it('reports the reasons a layer skips VPMEM', async () => {
    for (const [facts, reason] of [
      [{ fullyPhysicallyBacked: true }, 'physically-backed'],
      [{ vpmemCount: 0 }, 'vpmem-disabled'],
    ] as const) {
      const plan = await planLcowLayers(uvm(facts), inputs(['1']), 'c1');
      expect(plan.layers[0]).to.deep.include({ target: 'scsi', reason, shared: false });
    }
    const plan = await planLcowLayers(uvm(), { os: 'linux', layers: [{ hostPath: '/l/1/layer.vhd', partition: 1 }], scratchVhd: '/s/sandbox.vhdx' }, 'c1');
    expect(plan.layers[0]).to.deep.include({ target: 'scsi', reason: 'partitioned', partition: 1 });
  });

  it('sees layers and a scratch already attached as shared (no new slot)', async () => {
    const u = uvm({ vpmemCount: 2 });
    u.hostFs.symlink('/s1/sandbox.vhdx', '/s0/sandbox.vhdx');
    const pause = await composeLcowLayers(u, 'pause', inputs(['1', 'big'], '/s0/sandbox.vhdx'));
    const calls = u.calls.length;
    const plan = await planLcowLayers(u, inputs(['1', 'big', '2'], '/s1/sandbox.vhdx'), 'app');
    expect(plan.layers.map((l) => [l.target, l.shared])).to.deep.equal([
      ['vpmem', true],
      ['scsi', true],
      ['vpmem', false],
    ]);
    expect(plan.scratch).to.deep.include({ resolvedPath: '/s0/sandbox.vhdx', shared: true, mountPath: '/run/gcs/c/pause' });
    expect(plan.scratchPath).to.equal('/run/gcs/c/pause/scratch/app');
    expect(plan.slotsLeft).to.deep.equal({ vpmem: 0, scsi: 62 });
    expect(u.calls.length).to.equal(calls);
    await pause.release();
  });

  it('estimates multi-mapped VPMEM by size class on 4 GiB devices (no too-large in that mode)', async () => {
    expect(vpmemMappingSize(1)).to.equal(MIB);
    expect(vpmemMappingSize(MIB + 1)).to.equal(4 * MIB);
    expect(vpmemMappingSize(5 * MIB)).to.equal(16 * MIB);
    expect(vpmemMappingSize(5 * 1024 * MIB)).to.equal(Infinity);
    const u = uvm({ vpmemCount: 2, vpmemMultiMapping: true, vpmemMaxSizeBytes: MIB });
    for (const n of ['x', 'y', 'z']) u.hostFs.file(`/l/${n}/layer.vhd`, 1536 * MIB);
    // Small layers pack onto device 0 (which a 4 GiB-class layer then no longer fits), device 1 takes one
    // 4 GiB-class layer; the others have no room left.
    const plan = await planLcowLayers(u, inputs(['1', '2', 'big', 'x', 'y', 'z']), 'c1');
    expect(plan.layers.map((l) => [l.target, l.reason ?? null])).to.deep.equal([
      ['vpmem', null],
      ['vpmem', null],
      ['vpmem', null],
      ['vpmem', null],
      ['scsi', 'no-slot'],
      ['scsi', 'no-slot'],
    ]);
    expect(plan.slotsLeft.vpmem).to.equal(0);
  });

  it('flags a plan whose SCSI attachments do not fit', async () => {
    const u = uvm({ vpmemCount: 0, scsiControllers: 0 });
    const plan = await planLcowLayers(u, inputs(['1']), 'c1');
    expect(plan.fits).to.equal(false);
    expect(plan.slotsLeft.scsi).to.equal(0);
  });

  it('plans WCOW shares and flags a scratch already in use', async () => {
    const fs = new FakeHostFs().dir('C:\\l\\a').file('C:\\s\\sandbox.vhdx');
    const u = new FakeUvmDevices({ os: 'windows', hostFs: fs });
    const wcow = { os: 'windows' as const, layerFolders: ['C:\\l\\a'], scratchFolder: 'C:\\s', scratchVhd: 'C:\\s\\sandbox.vhdx' };
    const plan = await planWcowLayers(u, wcow);
    expect(plan.layers).to.deep.equal([{ index: 0, folder: 'C:\\l\\a', id: u.nameToGuid('a'), target: 'vsmb', shared: false }]);
    expect(plan).to.deep.include({ fits: true, slotsLeft: { vpmem: 0, scsi: 63 } });
    const lease = await u.scsi.acquire({ hostPath: 'C:\\s\\sandbox.vhdx', readOnly: false, mount: {} });
    expect((await planWcowLayers(u, wcow)).fits).to.equal(false);
    await lease.release();
  });
});

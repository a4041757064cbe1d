import { expect } from 'chai';
import { allocateContainer, planContainer } from '../../../src/containers/allocate-container.js';
import type { UvmDeviceConfig } from '../../../src/devices/device-config.js';
import type { LcowLayerPlan, WcowLayerPlan } from '../../../src/layers/layer-plan.js';
import type { OciSpec } from '../../../src/oci/oci-spec.js';
import { deviceKit, kitUvm, type KitUvm } from '../devices/device-test-kit.js';

const MIB = 1024 * 1024;

async function lcow(config: Partial<UvmDeviceConfig> = {}): Promise<{ u: KitUvm; calls: () => number }> {
  const kit = await deviceKit({ os: 'linux', vpmemCount: 2, vpmemMaxSizeBytes: MIB, ...config });
  kit.hostFs
    .file('/l/1/layer.vhd', 100_000)
    .file('/l/2/layer.vhd', 200_000)
    .file('/l/3/layer.vhd', 300_000)
    .file('/l/big/layer.vhd', 2 * MIB)
    .file('/s0/sandbox.vhdx')
    .file('/s/sandbox.vhdx');
  return { u: kitUvm(kit), calls: () => kit.hcs.calls.length };
}

const spec = (folders: string[], scratch = '/s'): OciSpec => ({ root: { path: 'rootfs' }, windows: { layerFolders: [...folders.map((f) => `/l/${f}`), scratch] } });

async function lcowPlan(u: KitUvm, folders: string[], id = 'c1', scratch = '/s'): Promise<LcowLayerPlan> {
  const plan = await planContainer(u, spec(folders, scratch), { containerId: id });
  if (plan.rootfs.kind !== 'layers' || plan.rootfs.plan.os !== 'linux') throw new Error('expected a LCOW layer plan');
  return plan.rootfs.plan;
}

describe('layer plan (the reservation, read and cancelled)', () => {
  it('shows VPMEM, the fallbacks with their reasons, the slots and the slots left, with no call', async () => {
    const { u, calls } = await lcow();
    const before = calls();
    const plan = await lcowPlan(u, ['1', 'big', '2', '3']);
    expect(plan.layers.map((l) => [l.hostPath, l.target, l.reason ?? null, l.slot])).to.deep.equal([
      ['/l/1/layer.vhd', 'vpmem', null, '0'],
      ['/l/big/layer.vhd', 'scsi', 'too-large', '0:0'],
      ['/l/2/layer.vhd', 'vpmem', null, '1'],
      ['/l/3/layer.vhd', 'scsi', 'no-slot', '0:1'],
    ]);
    expect(plan.scratch).to.deep.equal({ hostPath: '/s/sandbox.vhdx', resolvedPath: '/s/sandbox.vhdx', shared: false, mountPath: '/run/gcs/c/c1', slot: '0:2' });
    expect(plan.rootfsPath).to.equal('/run/gcs/c/c1/rootfs');
    expect(plan.scratchPath).to.equal('/run/gcs/c/c1/scratch/c1');
    expect(plan.slotsLeft).to.deep.equal({ vpmem: 0, scsi: 64 - 3 });
    expect(plan.fits).to.equal(true);
    expect(calls()).to.equal(before);
  });

  it('reports the reasons a layer skips VPMEM', async () => {
    for (const [config, reason] of [
      [{ fullyPhysicallyBacked: true }, 'physically-backed'],
      [{ vpmemCount: 0 }, 'vpmem-disabled'],
    ] as const) {
      const plan = await lcowPlan((await lcow(config)).u, ['1']);
      expect(plan.layers[0]).to.deep.include({ target: 'scsi', reason, shared: false });
    }
  });

  it('sees layers and a scratch already attached as shared (no new slot)', async () => {
    const { u, calls } = await lcow();
    u.hostFs.symlink('/s1/sandbox.vhdx', '/s0/sandbox.vhdx');
    const pause = await allocateContainer(u, spec(['1', 'big'], '/s0'), { containerId: 'pause' });
    const before = calls();
    const plan = await lcowPlan(u, ['1', 'big', '2'], 'app', '/s1');
    expect(plan.layers.map((l) => [l.target, l.shared])).to.deep.equal([
      ['vpmem', true],
      ['scsi', true],
      ['vpmem', false],
    ]);
    expect(plan.scratch).to.deep.include({ resolvedPath: '/s0/sandbox.vhdx', shared: true, mountPath: '/run/gcs/c/pause' });
    expect(plan.scratchPath).to.equal('/run/gcs/c/pause/scratch/app');
    expect(plan.slotsLeft).to.deep.equal({ vpmem: 0, scsi: 62 });
    expect(calls()).to.equal(before);
    await pause.resources.release();
  });

  it('packs multi-mapped VPMEM with the allocator itself (no estimate)', async () => {
    const { u } = await lcow({ vpmemMultiMapping: true, vpmemMaxSizeBytes: 4 * MIB });
    // 1 MiB classes: 1, 2, 3 pack onto device 0; big (4 MiB class) takes device 1; 3 more fall back.
    for (const n of ['x', 'y']) u.hostFs.file(`/l/${n}/layer.vhd`, 3 * MIB);
    const plan = await lcowPlan(u, ['1', '2', '3', 'big', 'x', 'y']);
    expect(plan.layers.map((l) => [l.target, l.reason ?? null, l.slot])).to.deep.equal([
      ['vpmem', null, '0@0'],
      ['vpmem', null, `0@${MIB}`],
      ['vpmem', null, `0@${2 * MIB}`],
      ['vpmem', null, '1@0'],
      ['scsi', 'no-slot', '0:0'],
      ['scsi', 'no-slot', '0:1'],
    ]);
    expect(plan.slotsLeft.vpmem).to.equal(0);
  });

  it('flags a plan whose SCSI attachments do not fit', async () => {
    const { u } = await lcow({ vpmemCount: 0, reservedScsiSlots: Array.from({ length: 64 }, (_, i) => i) });
    const plan = await planContainer(u, spec(['1']), { containerId: 'c1' });
    expect(plan.fits).to.equal(false);
    expect(plan.unfit!.map((x) => x.code)).to.deep.equal(['NO_SLOT', 'NO_SLOT']);
  });

  it('plans WCOW shares (names) and flags a scratch already in use', async () => {
    const kit = await deviceKit({ os: 'windows' });
    kit.hostFs.dir('C:\\l\\a').file('C:\\s\\sandbox.vhdx');
    const u = kitUvm(kit);
    const wspec: OciSpec = { root: { path: '' }, windows: { layerFolders: ['C:\\l\\a', 'C:\\s'] } };
    const plan = await planContainer(u, wspec, { containerId: 'w' });
    const wp = (plan.rootfs.kind === 'layers' ? plan.rootfs.plan : undefined) as WcowLayerPlan;
    expect(wp.layers).to.deep.equal([
      {
        index: 0,
        folder: 'C:\\l\\a',
        id: u.nameToGuid('a'),
        target: 'vsmb',
        shared: false,
        slot: 's1',
        guestPath: '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\\s1',
      },
    ]);
    expect(wp.scratch).to.deep.include({ slot: '0:0', mountPath: 'c:\\mounts\\scsi\\m0', shared: false });
    expect(plan).to.deep.include({ fits: true, slotsLeft: { vpmem: 0, scsi: 63 } });
    const lease = await u.scsi.acquire({ hostPath: 'C:\\s\\sandbox.vhdx', readOnly: false, mount: {} });
    const again = await planContainer(u, wspec, { containerId: 'w' });
    expect(again.fits).to.equal(false);
    expect(again.unfit!.map((x) => x.code)).to.deep.equal(['MOUNT_CONFLICT']);
    expect((again.rootfs.kind === 'layers' ? again.rootfs.plan : undefined)?.scratch.shared).to.equal(true);
    await lease.release();
  });
});

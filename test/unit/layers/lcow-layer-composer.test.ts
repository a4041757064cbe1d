import { expect } from 'chai';
import { UvmAggregateError } from '../../../src/core/errors.js';
import type { UvmDeviceConfig } from '../../../src/devices/device-config.js';
import { composeLcowLayers } from '../../../src/layers/lcow-layer-composer.js';
import type { LcowLayerInputs } from '../../../src/layers/layer-inputs.js';
import { expectCode } from '../../fakes/expect-code.js';
import { failModify, upperUvm, type KitUvm } from '../devices/device-test-kit.js';

const MIB = 1024 * 1024;

function uvm(config: Partial<UvmDeviceConfig> = {}, os: 'linux' | 'windows' = 'linux'): Promise<KitUvm> {
  return upperUvm(os, {
    config,
    hostFs: (fs) =>
      fs
        .file('/l/1/layer.vhd', 100_000)
        .file('/l/2/layer.vhd', 200_000)
        .file('/l/3/layer.vhd', 300_000)
        .file('/l/big/layer.vhd', 2 * MIB)
        .file('/s0/sandbox.vhdx', 20 * MIB)
        .file('/s/sandbox.vhdx', 20 * MIB),
  });
}

function inputs(folders: string[], scratch = '/s/sandbox.vhdx'): LcowLayerInputs {
  return { os: 'linux', layers: folders.map((f) => ({ hostPath: `/l/${f}/layer.vhd` })), scratchVhd: scratch };
}

/** The wire documents that attach `hostPath` (host half) and mount it (guest half), by path. */
function docsOf(u: KitUvm, hostPath: string): unknown[] {
  const docs = u.kit.docs() as { Settings?: { Path?: string; HostPath?: string } }[];
  return docs.filter((d) => d.Settings?.Path === hostPath || d.Settings?.HostPath === hostPath);
}

/** Rendered removals (host and guest) since `mark`. */
function removals(u: KitUvm, mark: number): string[] {
  return u.ops(mark).filter((o) => /^(guest )?Remove/.test(o));
}

describe('composeLcowLayers (spec §5.2)', () => {
  it('puts layers on VPMEM, the scratch on SCSI, and sends CombinedLayers Add (top-most first)', async () => {
    const u = await uvm();
    const composed = await composeLcowLayers(u, 'c1', inputs(['1', '2']));
    expect(composed.info).to.deep.equal({
      os: 'linux',
      containerId: 'c1',
      rootfsPath: '/run/gcs/c/c1/rootfs',
      scratchMountPath: '/run/gcs/c/c1',
      scratchPath: '/run/gcs/c/c1/scratch/c1',
      scratchHostPath: '/s/sandbox.vhdx',
      layers: [
        { index: 0, hostPath: '/l/1/layer.vhd', target: 'vpmem', guestPath: '/run/layers/p0' },
        { index: 1, hostPath: '/l/2/layer.vhd', target: 'vpmem', guestPath: '/run/layers/p1' },
      ],
    });
    expect(u.ops()).to.deep.equal([
      'Add VirtualPMem/Devices/0 + Add VPMemDevice /run/layers/p0',
      'Add VirtualPMem/Devices/1 + Add VPMemDevice /run/layers/p1',
      'Add Scsi/0/Attachments/0',
      'guest Add MappedVirtualDisk /run/gcs/c/c1',
      'guest Add CombinedLayers /run/gcs/c/c1/rootfs',
    ]);
    expect(u.kit.docs()[3]).to.deep.equal({
      GuestRequest: { RequestType: 'Add', ResourceType: 'MappedVirtualDisk', Settings: { MountPath: '/run/gcs/c/c1', EnsureFilesystem: true, Filesystem: 'ext4' } },
    });
    expect([...u.kit.hcs.grants], 'the writable scratch is granted').to.deep.equal(['uvm-l|/s/sandbox.vhdx']);
    expect(u.kit.docs()[4]).to.deep.equal({
      GuestRequest: {
        RequestType: 'Add',
        ResourceType: 'CombinedLayers',
        Settings: {
          ContainerID: 'c1',
          ContainerRootPath: '/run/gcs/c/c1/rootfs',
          Layers: [{ Path: '/run/layers/p0' }, { Path: '/run/layers/p1' }],
          ScratchPath: '/run/gcs/c/c1/scratch/c1',
        },
      },
    });
    expect(composed.held.map((h) => h.kind)).to.deep.equal(['layer', 'layer', 'scratch', 'combined-layers']);
    const mark = u.mark();
    await composed.release();
    const removed = removals(u, mark);
    expect(removed[0]).to.equal('guest Remove CombinedLayers /run/gcs/c/c1/rootfs');
    expect(removed).to.have.members([
      'guest Remove CombinedLayers /run/gcs/c/c1/rootfs',
      'guest Remove MappedVirtualDisk /run/gcs/c/c1',
      'guest Remove SCSIDevice 0:0',
      'Remove Scsi/0/Attachments/0',
      'Remove VirtualPMem/Devices/1 + Remove VPMemDevice /run/layers/p1',
      'Remove VirtualPMem/Devices/0 + Remove VPMemDevice /run/layers/p0',
    ]);
    expect(u.kit.docs()[5]).to.deep.equal({ GuestRequest: { RequestType: 'Remove', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/run/gcs/c/c1/rootfs' } } });
    expect(u.held()).to.deep.equal([]);
  });

  describe('VPMEM → SCSI fallback matrix (H12)', () => {
    /** A read-only layer on SCSI: no grant, `ReadOnly`, mounted with options ["ro"]. */
    const scsiLayerDocs = (lun: number, hostPath: string, mountPath: string, partition?: number): unknown[] => [
      { ResourcePath: `VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments/${lun}`, RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: hostPath, ReadOnly: true } },
      {
        GuestRequest: {
          RequestType: 'Add',
          ResourceType: 'MappedVirtualDisk',
          Settings: { MountPath: mountPath, ...(lun === 0 ? {} : { Lun: lun }), ...(partition ? { Partition: partition } : {}), ReadOnly: true, Options: ['ro'] },
        },
      },
    ];
    /** The host attach of `hostPath` and the guest mount at `mountPath`, as sent. */
    const layerDocs = (u: KitUvm, hostPath: string, mountPath: string): unknown[] => {
      const mount = (u.kit.docs() as { GuestRequest?: { Settings?: { MountPath?: string } } }[]).find((d) => d.GuestRequest?.Settings?.MountPath === mountPath);
      return [...docsOf(u, hostPath), mount];
    };

    it('falls back to SCSI (read-only, options ["ro"], no grant) when VPMEM is full', async () => {
      const u = await uvm({ vpmemCount: 1 });
      const composed = await composeLcowLayers(u, 'c1', inputs(['1', '2']));
      expect(composed.info.layers.map((l) => [l.target, l.reason, l.guestPath])).to.deep.equal([
        ['vpmem', undefined, '/run/layers/p0'],
        ['scsi', 'no-slot', '/run/mounts/scsi/m0'],
      ]);
      expect(layerDocs(u, '/l/2/layer.vhd', '/run/mounts/scsi/m0')).to.deep.equal(scsiLayerDocs(0, '/l/2/layer.vhd', '/run/mounts/scsi/m0'));
      expect([...u.kit.hcs.grants]).to.deep.equal(['uvm-l|/s/sandbox.vhdx']);
      await composed.release();
    });

    it('falls back to SCSI when the layer is too large for a VPMEM device; the next layer still takes VPMEM', async () => {
      const u = await uvm();
      const composed = await composeLcowLayers(u, 'c1', inputs(['big', '1']));
      expect(composed.info.layers.map((l) => [l.target, l.reason])).to.deep.equal([
        ['scsi', 'too-large'],
        ['vpmem', undefined],
      ]);
      // Decided at reservation: no VPMEM call for the big layer; hcsshim's slots (layer LUN 0, scratch LUN 1).
      expect(u.ops().filter((o) => o.startsWith('Add'))).to.deep.equal([
        'Add Scsi/0/Attachments/0',
        'Add VirtualPMem/Devices/0 + Add VPMemDevice /run/layers/p0',
        'Add Scsi/0/Attachments/1',
      ]);
      expect(docsOf(u, '/l/big/layer.vhd')).to.have.length(1);
      await composed.release();
    });

    it('aborts on any other VPMEM error, without trying SCSI for that layer, and rolls back', async () => {
      const u = await uvm();
      failModify(u, /^Add VirtualPMem\/Devices\/1 /);
      await expectCode(composeLcowLayers(u, 'c1', inputs(['1', '2', '3'])), 'HCS_ERROR');
      // Layers and the scratch are acquired concurrently; the failed layer never tries SCSI and
      // everything its siblings got is released.
      expect(u.ops().filter((o) => o.includes('Scsi/0/Attachments/1')), 'no SCSI for the failed layer').to.deep.equal([]);
      expect(removals(u, 0)).to.have.members([
        // The failed Add's host half is removed in case HCS applied it before failing.
        'Remove VirtualPMem/Devices/1',
        'Remove VirtualPMem/Devices/0 + Remove VPMemDevice /run/layers/p0',
        'Remove VirtualPMem/Devices/2 + Remove VPMemDevice /run/layers/p2',
        'guest Remove MappedVirtualDisk /run/gcs/c/c1',
        'guest Remove SCSIDevice 0:0',
        'Remove Scsi/0/Attachments/0',
      ]);
      expect(u.held()).to.deep.equal([]);
    });

    for (const [what, config, reason] of [
      ['fully physically backed', { fullyPhysicallyBacked: true }, 'physically-backed'],
      ['without VPMEM devices', { vpmemCount: 0 }, 'vpmem-disabled'],
    ] as const) {
      it(`goes straight to SCSI on a UVM ${what}`, async () => {
        const u = await uvm(config);
        const composed = await composeLcowLayers(u, 'c1', inputs(['1']));
        expect(composed.info.layers.map((l) => [l.target, l.reason])).to.deep.equal([['scsi', reason]]);
        expect(u.ops().filter((o) => o.includes('VirtualPMem'))).to.deep.equal([]);
        await composed.release();
      });
    }

    it('goes straight to SCSI with the partition for a partitioned layer', async () => {
      const u = await uvm();
      const composed = await composeLcowLayers(u, 'c1', {
        os: 'linux',
        layers: [{ hostPath: '/l/1/layer.vhd', partition: 2 }, { hostPath: '/l/2/layer.vhd' }],
        scratchVhd: '/s/sandbox.vhdx',
      });
      expect(composed.info.layers.map((l) => [l.target, l.reason, l.partition])).to.deep.equal([
        ['scsi', 'partitioned', 2],
        ['vpmem', undefined, undefined],
      ]);
      expect(layerDocs(u, '/l/1/layer.vhd', '/run/mounts/scsi/m0')).to.deep.equal(scsiLayerDocs(0, '/l/1/layer.vhd', '/run/mounts/scsi/m0', 2));
      await composed.release();
    });
  });

  it('formats an encrypted scratch as xfs', async () => {
    const u = await uvm();
    const composed = await composeLcowLayers(u, 'c1', inputs(['1']), { encryptScratch: true });
    expect(u.kit.docs()).to.deep.include({
      GuestRequest: { RequestType: 'Add', ResourceType: 'MappedVirtualDisk', Settings: { MountPath: '/run/gcs/c/c1', Encrypted: true, EnsureFilesystem: true, Filesystem: 'xfs' } },
    });
    await composed.release();
  });

  it('shares a symlinked scratch: the existing mount path, a per-container scratch dir, one attachment', async () => {
    const u = await uvm();
    u.hostFs.symlink('/s1/sandbox.vhdx', '/s0/sandbox.vhdx');
    const pause = await composeLcowLayers(u, 'pause', inputs(['1'], '/s0/sandbox.vhdx'));
    const app = await composeLcowLayers(u, 'app', inputs(['1', '2'], '/s1/sandbox.vhdx'));
    expect(app.info.scratchHostPath).to.equal('/s0/sandbox.vhdx');
    expect(app.info.scratchMountPath).to.equal('/run/gcs/c/pause');
    expect(app.info.scratchPath).to.equal('/run/gcs/c/pause/scratch/app');
    expect(app.info.rootfsPath).to.equal('/run/gcs/c/app/rootfs');
    expect(docsOf(u, '/s0/sandbox.vhdx')).to.have.length(1);
    expect(docsOf(u, '/l/1/layer.vhd')).to.have.length(1);
    const mark = u.mark();
    await app.release();
    expect(removals(u, mark)).to.deep.equal(['guest Remove CombinedLayers /run/gcs/c/app/rootfs', 'Remove VirtualPMem/Devices/1 + Remove VPMemDevice /run/layers/p1']);
    await pause.release();
    expect(u.held()).to.deep.equal([]);
  });

  it('fails with NOT_FOUND and makes no call when the scratch does not exist', async () => {
    const u = await uvm();
    await expectCode(composeLcowLayers(u, 'c1', inputs(['1'], '/nope/sandbox.vhdx')), 'NOT_FOUND');
    expect(u.kit.hcs.calls.length - u.mark()).to.equal(0);
    expect(u.ops()).to.deep.equal([]);
  });

  it('rejects a bad container id and a Windows UVM before any call', async () => {
    const u = await uvm();
    await expectCode(composeLcowLayers(u, 'a/b', inputs(['1'])), 'INVALID_ARGUMENT');
    const w = await uvm({}, 'windows');
    await expectCode(composeLcowLayers(w, 'c1', inputs(['1'])), 'NOT_SUPPORTED');
    expect([...u.ops(), ...w.ops()]).to.deep.equal([]);
  });

  describe('rollback when a step fails', () => {
    const SCRATCH = ['guest Remove MappedVirtualDisk /run/gcs/c/c1', 'guest Remove SCSIDevice 0:1', 'Remove Scsi/0/Attachments/1'];
    const LAYER2 = ['guest Remove MappedVirtualDisk /run/mounts/scsi/m0', 'guest Remove SCSIDevice 0:0', 'Remove Scsi/0/Attachments/0'];
    const LAYER1 = ['Remove VirtualPMem/Devices/0 + Remove VPMemDevice /run/layers/p0'];
    // One VPMEM device: layer 1 reserves it, so layer 2 falls back to SCSI (LUN 0) at reservation,
    // and the scratch takes LUN 1.
    const steps: [string, RegExp, string[]][] = [
      // (The failed Add's host half is removed in case HCS applied it before failing.)
      ['the first layer', /^Add VirtualPMem/, [...SCRATCH, ...LAYER2, 'Remove VirtualPMem/Devices/0']],
      ['a layer falling back to SCSI (attach)', /^Add Scsi\/0\/Attachments\/0$/, [...SCRATCH, ...LAYER1]],
      ['a layer falling back to SCSI (guest mount)', /^guest Add MappedVirtualDisk \/run\/mounts\/scsi\/m0$/, [...SCRATCH, ...LAYER1, 'guest Remove SCSIDevice 0:0', 'Remove Scsi/0/Attachments/0']],
      ['the scratch', /^Add Scsi\/0\/Attachments\/1$/, [...LAYER2, ...LAYER1]],
      ['CombinedLayers Add', /^guest Add CombinedLayers/, [...SCRATCH, ...LAYER2, ...LAYER1]],
    ];
    for (const [step, pattern, removed] of steps) {
      // Layers and the scratch are acquired at once, so a failure also releases the siblings that
      // succeeded.
      it(`releases everything when ${step} fails`, async () => {
        const u = await uvm({ vpmemCount: 1 });
        failModify(u, pattern);
        const err = await expectCode(composeLcowLayers(u, 'c1', inputs(['1', '2'])), 'HCS_ERROR');
        expect(err.details.rollbackError).to.equal(undefined);
        expect(removals(u, 0)).to.have.members(removed);
        expect(u.held()).to.deep.equal([]);
      });
    }

    it('sends nothing when SCSI has no slot for the scratch (decided at reservation)', async () => {
      const u = await uvm({ vpmemCount: 1, reservedScsiSlots: Array.from({ length: 63 }, (_, i) => i) });
      await expectCode(composeLcowLayers(u, 'c1', inputs(['1', '2'])), 'NO_SLOT');
      expect(u.ops()).to.deep.equal([]);
      expect(u.held()).to.deep.equal([]);
    });
  });

  it('keeps the disks while the overlay on them could not be removed; retries finish the job', async () => {
    const u = await uvm({ vpmemCount: 1 });
    const composed = await composeLcowLayers(u, 'c1', inputs(['1', '2']));
    failModify(u, /^guest Remove CombinedLayers/);
    failModify(u, /^guest Remove MappedVirtualDisk \/run\/gcs\/c\/c1$/);
    const mark = u.mark();
    let caught: unknown;
    await composed.release().catch((e: unknown) => (caught = e));
    expect(caught).to.be.instanceOf(UvmAggregateError);
    expect((caught as UvmAggregateError).code).to.equal('RELEASE_FAILED');
    expect((caught as UvmAggregateError).errors).to.have.length(1);
    // The guest still uses the layers and the scratch through the overlay: nothing under it moved.
    expect(u.ops(mark)).to.deep.equal(['guest Remove CombinedLayers /run/gcs/c/c1/rootfs']);
    expect(composed.held.map((h) => h.kind)).to.deep.equal(['layer', 'layer', 'scratch', 'combined-layers']);

    caught = undefined;
    const mark2 = u.mark();
    await composed.release().catch((e: unknown) => (caught = e));
    expect((caught as UvmAggregateError).errors).to.have.length(1);
    expect(removals(u, mark2)).to.have.members([
      'guest Remove CombinedLayers /run/gcs/c/c1/rootfs',
      'guest Remove MappedVirtualDisk /run/gcs/c/c1',
      ...LAYERS_GONE,
    ]);
    expect(composed.held.map((h) => h.kind)).to.deep.equal(['scratch']);

    const mark3 = u.mark();
    await composed.release();
    expect(removals(u, mark3)).to.deep.equal(['guest Remove MappedVirtualDisk /run/gcs/c/c1', 'guest Remove SCSIDevice 0:1', 'Remove Scsi/0/Attachments/1']);
    expect(composed.held).to.deep.equal([]);
    expect(u.held()).to.deep.equal([]);
  });
});

const LAYERS_GONE = [
  'guest Remove MappedVirtualDisk /run/mounts/scsi/m0',
  'guest Remove SCSIDevice 0:0',
  'Remove Scsi/0/Attachments/0',
  'Remove VirtualPMem/Devices/0 + Remove VPMemDevice /run/layers/p0',
];

import { expect } from 'chai';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { UvmAggregateError } from '../../../src/core/errors.js';
import type { UvmFacts } from '../../../src/devices/device-types.js';
import { composeLcowLayers } from '../../../src/layers/lcow-layer-composer.js';
import type { LcowLayerInputs } from '../../../src/layers/layer-inputs.js';
import { FakeUvmDevices } from '../../fakes/fake-uvm-devices.js';
import { expectCode } from '../../fakes/expect-code.js';

const MIB = 1024 * 1024;

function hostFs(): FakeHostFs {
  return new FakeHostFs()
    .file('/l/1/layer.vhd', 100_000)
    .file('/l/2/layer.vhd', 200_000)
    .file('/l/3/layer.vhd', 300_000)
    .file('/l/big/layer.vhd', 2 * MIB)
    .file('/s0/sandbox.vhdx', 20 * MIB)
    .file('/s/sandbox.vhdx', 20 * MIB);
}

function uvm(facts: Partial<UvmFacts> = {}): FakeUvmDevices {
  return new FakeUvmDevices({ os: 'linux', facts, hostFs: hostFs() });
}

function inputs(folders: string[], scratch = '/s/sandbox.vhdx'): LcowLayerInputs {
  return { os: 'linux', layers: folders.map((f) => ({ hostPath: `/l/${f}/layer.vhd` })), scratchVhd: scratch };
}

describe('composeLcowLayers (spec §5.2)', () => {
  it('puts layers on VPMEM, the scratch on SCSI, and sends CombinedLayers Add (top-most first)', async () => {
    const u = uvm();
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
    expect(u.scsi.created).to.deep.equal([
      {
        hostPath: '/s/sandbox.vhdx',
        readOnly: false,
        grantVmAccess: true,
        guestPath: '/run/gcs/c/c1',
        mount: { ensureFilesystem: true, filesystem: 'ext4' },
      },
    ]);
    expect(u.guestRequests).to.deep.equal([
      {
        RequestType: 'Add',
        ResourceType: 'CombinedLayers',
        Settings: {
          ContainerID: 'c1',
          ContainerRootPath: '/run/gcs/c/c1/rootfs',
          Layers: [{ Path: '/run/layers/p0' }, { Path: '/run/layers/p1' }],
          ScratchPath: '/run/gcs/c/c1/scratch/c1',
        },
      },
    ]);
    expect(composed.held.map((h) => h.kind)).to.deep.equal(['layer', 'layer', 'scratch', 'combined-layers']);
    await composed.release();
    expect(u.calls.slice(-4)).to.deep.equal([
      'guest Remove CombinedLayers',
      'remove scsi VirtualDisk:/s/sandbox.vhdx',
      'remove vpmem /l/2/layer.vhd',
      'remove vpmem /l/1/layer.vhd',
    ]);
    expect(u.guestRequests[1]).to.deep.equal({
      RequestType: 'Remove',
      ResourceType: 'CombinedLayers',
      Settings: { ContainerRootPath: '/run/gcs/c/c1/rootfs' },
    });
    expect(u.held()).to.deep.equal([]);
  });

  describe('VPMEM → SCSI fallback matrix (H12)', () => {
    const scsiLayer = (hostPath: string, partition?: number) => ({
      hostPath,
      readOnly: true,
      mount: { ...(partition ? { partition } : {}), options: ['ro'] },
    });

    it('falls back to SCSI (read-only, options ["ro"], no grant) when VPMEM is full', async () => {
      const u = uvm({ vpmemCount: 1 });
      const composed = await composeLcowLayers(u, 'c1', inputs(['1', '2']));
      expect(composed.info.layers.map((l) => [l.target, l.reason, l.guestPath])).to.deep.equal([
        ['vpmem', undefined, '/run/layers/p0'],
        ['scsi', 'no-slot', '/run/mounts/scsi/m0'],
      ]);
      expect(u.scsi.created.find((r) => r.hostPath === '/l/2/layer.vhd')).to.deep.equal(scsiLayer('/l/2/layer.vhd'));
      await composed.release();
    });

    it('falls back to SCSI when the layer is too large for a VPMEM device', async () => {
      const u = uvm();
      const composed = await composeLcowLayers(u, 'c1', inputs(['big', '1']));
      expect(composed.info.layers.map((l) => [l.target, l.reason])).to.deep.equal([
        ['scsi', 'too-large'],
        ['vpmem', undefined],
      ]);
      // The big layer tries VPMEM first, then SCSI (other layers and the scratch run concurrently).
      expect(u.events('acquire').filter((e) => e.includes('/l/big/'))).to.deep.equal(['acquire vpmem /l/big/layer.vhd', 'acquire scsi VirtualDisk:/l/big/layer.vhd:ro']);
      await composed.release();
    });

    it('aborts on any other VPMEM error, without trying SCSI for that layer, and rolls back', async () => {
      const u = uvm();
      u.fail('vpmem', 'acquire', 'HCS_ERROR', { match: (k) => k === '/l/2/layer.vhd' });
      await expectCode(composeLcowLayers(u, 'c1', inputs(['1', '2', '3'])), 'HCS_ERROR');
      // Layers and the scratch are acquired concurrently; the failed layer never tries SCSI and
      // everything its siblings got is released.
      expect(u.events('acquire')).to.not.include('acquire scsi VirtualDisk:/l/2/layer.vhd:ro');
      expect(u.events('remove')).to.have.members(['remove vpmem /l/1/layer.vhd', 'remove vpmem /l/3/layer.vhd', 'remove scsi VirtualDisk:/s/sandbox.vhdx']);
      expect(u.held()).to.deep.equal([]);
    });

    for (const [what, facts, reason] of [
      ['fully physically backed', { fullyPhysicallyBacked: true }, 'physically-backed'],
      ['without VPMEM devices', { vpmemCount: 0 }, 'vpmem-disabled'],
    ] as const) {
      it(`goes straight to SCSI on a UVM ${what}`, async () => {
        const u = uvm(facts);
        const composed = await composeLcowLayers(u, 'c1', inputs(['1']));
        expect(composed.info.layers.map((l) => [l.target, l.reason])).to.deep.equal([['scsi', reason]]);
        expect(u.events('acquire').filter((c) => c.includes('vpmem'))).to.deep.equal([]);
        await composed.release();
      });
    }

    it('goes straight to SCSI with the partition for a partitioned layer', async () => {
      const u = uvm();
      const composed = await composeLcowLayers(u, 'c1', {
        os: 'linux',
        layers: [{ hostPath: '/l/1/layer.vhd', partition: 2 }, { hostPath: '/l/2/layer.vhd' }],
        scratchVhd: '/s/sandbox.vhdx',
      });
      expect(composed.info.layers.map((l) => [l.target, l.reason, l.partition])).to.deep.equal([
        ['scsi', 'partitioned', 2],
        ['vpmem', undefined, undefined],
      ]);
      expect(u.scsi.created[0]).to.deep.equal(scsiLayer('/l/1/layer.vhd', 2));
      await composed.release();
    });
  });

  it('formats an encrypted scratch as xfs', async () => {
    const u = uvm();
    const composed = await composeLcowLayers(u, 'c1', inputs(['1']), { encryptScratch: true });
    expect(u.scsi.created[0]!.mount).to.deep.equal({ encrypted: true, ensureFilesystem: true, filesystem: 'xfs' });
    await composed.release();
  });

  it('shares a symlinked scratch: the existing mount path, a per-container scratch dir, one attachment', async () => {
    const u = uvm();
    u.hostFs.symlink('/s1/sandbox.vhdx', '/s0/sandbox.vhdx');
    const pause = await composeLcowLayers(u, 'pause', inputs(['1'], '/s0/sandbox.vhdx'));
    const app = await composeLcowLayers(u, 'app', inputs(['1', '2'], '/s1/sandbox.vhdx'));
    expect(app.info.scratchHostPath).to.equal('/s0/sandbox.vhdx');
    expect(app.info.scratchMountPath).to.equal('/run/gcs/c/pause');
    expect(app.info.scratchPath).to.equal('/run/gcs/c/pause/scratch/app');
    expect(app.info.rootfsPath).to.equal('/run/gcs/c/app/rootfs');
    expect(u.events('add').filter((c) => c.includes('sandbox'))).to.have.length(1);
    expect(u.events('add').filter((c) => c.includes('/l/1/'))).to.have.length(1);
    await app.release();
    expect(u.events('remove')).to.deep.equal(['remove vpmem /l/2/layer.vhd']);
    await pause.release();
    expect(u.held()).to.deep.equal([]);
  });

  it('fails with NOT_FOUND and makes no call when the scratch does not exist', async () => {
    const u = uvm();
    await expectCode(composeLcowLayers(u, 'c1', inputs(['1'], '/nope/sandbox.vhdx')), 'NOT_FOUND');
    expect(u.calls).to.deep.equal([]);
  });

  it('rejects a bad container id and a Windows UVM before any call', async () => {
    const u = uvm();
    await expectCode(composeLcowLayers(u, 'a/b', inputs(['1'])), 'INVALID_ARGUMENT');
    const w = new FakeUvmDevices({ os: 'windows', hostFs: hostFs() });
    await expectCode(composeLcowLayers(w, 'c1', inputs(['1'])), 'NOT_SUPPORTED');
    expect([...u.calls, ...w.calls]).to.deep.equal([]);
  });

  describe('rollback when a step fails', () => {
    const steps: [string, (u: FakeUvmDevices) => void, string[]][] = [
      // One VPMEM device: layer 1 reserved it, so layer 2 falls back to SCSI at reservation.
      ['the first layer', (u) => u.fail('vpmem', 'acquire', 'HCS_ERROR'), ['remove scsi VirtualDisk:/s/sandbox.vhdx', 'remove scsi VirtualDisk:/l/2/layer.vhd:ro']],
      [
        'a layer falling back to SCSI',
        (u) => u.fail('scsi', 'acquire', 'NO_SLOT', { match: (k) => k.includes('/l/2/') }),
        ['remove scsi VirtualDisk:/s/sandbox.vhdx', 'remove vpmem /l/1/layer.vhd'],
      ],
      [
        'the scratch',
        (u) => u.fail('scsi', 'acquire', 'HCS_ERROR', { match: (k) => k.includes('sandbox') }),
        ['remove scsi VirtualDisk:/l/2/layer.vhd:ro', 'remove vpmem /l/1/layer.vhd'],
      ],
      [
        'CombinedLayers Add',
        (u) => u.fail('guest', 'send', 'HCS_ERROR', { match: (d) => d === 'Add CombinedLayers' }),
        ['remove scsi VirtualDisk:/s/sandbox.vhdx', 'remove scsi VirtualDisk:/l/2/layer.vhd:ro', 'remove vpmem /l/1/layer.vhd'],
      ],
    ];
    for (const [step, inject, removals] of steps) {
      // Layers and the scratch are acquired at once, so a failure also releases the siblings that
      // succeeded: newest first in acquisition order (layers top-most first, then the scratch).
      it(`releases everything, newest first, when ${step} fails`, async () => {
        const u = uvm({ vpmemCount: 1 });
        inject(u);
        const err = await expectCode(composeLcowLayers(u, 'c1', inputs(['1', '2'])), step === 'a layer falling back to SCSI' ? 'NO_SLOT' : 'HCS_ERROR');
        expect(err.details.rollbackError).to.equal(undefined);
        expect(u.events('remove')).to.deep.equal(removals);
        expect(u.calls).to.not.include('guest Remove CombinedLayers');
        expect(u.held()).to.deep.equal([]);
      });
    }
  });

  it('keeps the disks while the overlay on them could not be removed; retries finish the job', async () => {
    const u = uvm({ vpmemCount: 1 });
    const composed = await composeLcowLayers(u, 'c1', inputs(['1', '2']));
    u.fail('guest', 'send', 'HCS_ERROR', { match: (d) => d === 'Remove CombinedLayers' });
    u.fail('scsi', 'remove', 'HCS_ERROR', { match: (k) => k.includes('sandbox') });
    let caught: unknown;
    await composed.release().catch((e: unknown) => (caught = e));
    expect(caught).to.be.instanceOf(UvmAggregateError);
    expect((caught as UvmAggregateError).code).to.equal('RELEASE_FAILED');
    expect((caught as UvmAggregateError).errors).to.have.length(1);
    // The guest still uses the layers and the scratch through the overlay: nothing under it moved.
    expect(u.events('remove')).to.deep.equal([]);
    expect(composed.held.map((h) => h.kind)).to.deep.equal(['layer', 'layer', 'scratch', 'combined-layers']);

    caught = undefined;
    await composed.release().catch((e: unknown) => (caught = e));
    expect((caught as UvmAggregateError).errors).to.have.length(1);
    expect(u.events('remove')).to.deep.equal(['remove scsi VirtualDisk:/l/2/layer.vhd:ro', 'remove vpmem /l/1/layer.vhd']);
    expect(composed.held.map((h) => h.kind)).to.deep.equal(['scratch']);

    await composed.release();
    expect(u.calls.slice(-1)).to.deep.equal(['remove scsi VirtualDisk:/s/sandbox.vhdx']);
    expect(composed.held).to.deep.equal([]);
    expect(u.held()).to.deep.equal([]);
  });
});

import { expect } from 'chai';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allocateContainer } from '../../../src/containers/allocate-container.js';
import { prepareUvmForTermination } from '../../../src/containers/uvm-termination.js';
import { readJournalFile, RecoveryJournal } from '../../../src/recovery/journal.js';
import { isJournaledLease, journaledDevices } from '../../../src/recovery/journaled-devices.js';
import { UvmRecovery } from '../../../src/recovery/uvm-recovery.js';
import { createLogger } from '../../../src/core/logger.js';
import type { ResourceDelivery } from '../../../src/devices/guest-delivery.js';
import { expectCode } from '../../fakes/expect-code.js';
import { failModify, upperUvm } from '../devices/device-test-kit.js';

describe('journaled devices (the journaling decorator)', () => {
  let dir: string;
  let journal: RecoveryJournal;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'uvm-jdev-'));
    mkdirSync(join(dir, 'j'));
    journal = await RecoveryJournal.create(join(dir, 'j', 'journal.json'), 'uvm-l', {});
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const onDisk = async () => (await readJournalFile(journal.path))!;

  it('journals an acquire after it succeeded, with owner, request and value', async () => {
    const fake = await upperUvm('linux', { hostFs: (fs) => fs.file('/l/a/layer.vhd', 4096) });
    const view = journaledDevices(fake, { journal }, 'c1');
    const lease = await view.vpmem.acquire({ hostPath: '/l/a/layer.vhd' });
    expect(isJournaledLease(lease)).to.equal(true);
    const doc = await onDisk();
    expect(doc.records).to.deep.equal([{ id: 1, kind: 'vpmem', owner: 'c1', request: { hostPath: '/l/a/layer.vhd' }, value: JSON.parse(JSON.stringify(lease.value)) }]);
    await lease.release();
    expect((await onDisk()).records).to.deep.equal([]);
  });

  it('UvmRecovery keeps one view per live container only: forgotten on release or a failed allocation (soak, issue 16)', async () => {
    const devices = await upperUvm('linux');
    const recovery = new UvmRecovery({
      os: 'linux',
      journal,
      devices,
      restore: undefined,
      assertOpen: () => undefined,
      delivery: {} as ResourceDelivery,
      logger: createLogger({ level: 'silent' }),
    });
    const c1 = recovery.containerDevices('c1');
    expect(recovery.containerDevices('c1'), 'the same view while c1 lives').to.equal(c1);
    await recovery.forgetContainer('c1');
    expect(recovery.containerDevices('c1'), 'a released container’s view is not kept').to.not.equal(c1);
    const c2 = recovery.containerDevices('c2');
    recovery.dropContainerDevices('c2');
    expect(recovery.containerDevices('c2'), 'a failed allocation’s view is not kept').to.not.equal(c2);
  });

  it('keeps every other member of each manager (retryFailedTeardowns, describe)', async () => {
    const fake = await upperUvm('linux');
    const view = journaledDevices(fake, { journal }, undefined);
    for (const m of [view.scsi, view.vsmb, view.vpmem, view.plan9, view.pipes]) {
      expect(typeof m.retryFailedTeardowns).to.equal('function');
      await m.retryFailedTeardowns();
      expect(m.describe()).to.deep.equal([]);
    }
  });

  it('a failed acquire journals nothing', async () => {
    const fake = await upperUvm('linux', { config: { reservedScsiSlots: Array.from({ length: 64 }, (_, i) => i) } });
    const view = journaledDevices(fake, { journal }, undefined);
    await expectCode(view.scsi.acquire({ hostPath: '/d/x.vhdx', readOnly: true }), 'NO_SLOT');
    expect((await onDisk()).records).to.deep.equal([]);
    expect(fake.ops()).to.deep.equal([]);
  });

  it('drops the record before the release starts: a failed removal leaves no record, and a retry completes it', async () => {
    const fake = await upperUvm('linux');
    const view = journaledDevices(fake, { journal }, undefined);
    const lease = await view.scsi.acquire({ hostPath: '/d/x.vhdx', readOnly: true });
    failModify(fake, /^Remove Scsi/);
    await expectCode(lease.release(), 'TEARDOWN_FAILED');
    expect((await onDisk()).records).to.deep.equal([]);
    expect(fake.held()).to.deep.equal(['scsi-attachment ["/d/x.vhdx",true,"VirtualDisk",""] teardown-failed']);
    await lease.release();
    expect(fake.held()).to.deep.equal([]);
  });

  it('when the journal cannot be written, the acquire rejects with RECOVERY_FAILED and nothing stays held', async () => {
    const fake = await upperUvm('linux');
    const view = journaledDevices(fake, { journal }, 'c1');
    rmSync(join(dir, 'j'), { recursive: true });
    await expectCode(view.scsi.acquire({ hostPath: '/d/x.vhdx', readOnly: true }), 'RECOVERY_FAILED');
    expect(fake.held()).to.deep.equal([]);
    expect(fake.ops()).to.deep.equal(['Add Scsi/0/Attachments/0', 'guest Remove SCSIDevice 0:0', 'Remove Scsi/0/Attachments/0']);
  });

  it('journals CombinedLayers Add after it succeeded and drops it before the Remove is sent', async () => {
    const fake = await upperUvm('linux');
    const view = journaledDevices(fake, { journal }, 'c1');
    const settings = { ContainerID: 'c1', ContainerRootPath: '/run/gcs/c/c1/rootfs', Layers: [{ Path: '/run/layers/p0' }] };
    await view.sendGuestRequest({ RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: settings });
    expect((await onDisk()).records).to.deep.equal([
      { id: 1, kind: 'combined-layers', owner: 'c1', request: settings, value: { ContainerRootPath: '/run/gcs/c/c1/rootfs' } },
    ]);
    failModify(fake, /^guest Remove CombinedLayers/);
    await expectCode(view.sendGuestRequest({ RequestType: 'Remove', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/run/gcs/c/c1/rootfs' } }), 'HCS_ERROR');
    expect((await onDisk()).records).to.deep.equal([]);
    // Other guest requests pass through unjournaled.
    await view.sendGuestRequest({ RequestType: 'Add', ResourceType: 'MappedDirectory', Settings: { MountPath: '/x' } });
    expect((await onDisk()).records).to.deep.equal([]);
    // (Nothing else holds what this test added by hand: take it away.)
    await view.sendGuestRequest({ RequestType: 'Remove', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/run/gcs/c/c1/rootfs' } });
    await view.sendGuestRequest({ RequestType: 'Remove', ResourceType: 'MappedDirectory', Settings: { MountPath: '/x' } });
  });

  it('a failed CombinedLayers Add journals nothing', async () => {
    const fake = await upperUvm('linux');
    failModify(fake, /^guest Add CombinedLayers/);
    const view = journaledDevices(fake, { journal }, 'c1');
    await expectCode(view.sendGuestRequest({ RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/r' } }), 'HCS_ERROR');
    expect((await onDisk()).records).to.deep.equal([]);
  });

  it('forwards the termination capability of the UVM (and only when it has it)', async () => {
    const aware = await upperUvm('linux', { terminationAware: true });
    const view = journaledDevices(aware, { journal }, 'c1');
    expect(prepareUvmForTermination(view)).to.equal(true);
    expect(aware.kit.lifecycle.phase).to.equal('terminated');
    const unaware = journaledDevices(await upperUvm('linux'), { journal }, 'c1');
    expect(prepareUvmForTermination(unaware)).to.equal(false);
  });

  it('a container allocated through its view has every lease journaled under its id, and none after release', async () => {
    const fake = await upperUvm('linux', { hostFs: (fs) => fs.file('/l/top/layer.vhd', 4096).file('/l/base/layer.vhd', 4096).file('/c/sandbox.vhdx', 1 << 30).dir('/data') });
    const view = journaledDevices(fake, { journal }, 'c1');
    const { resources } = await allocateContainer(
      view,
      { root: { path: 'rootfs' }, windows: { layerFolders: ['/l/top', '/l/base', '/c'] }, mounts: [{ destination: '/data', type: 'bind', source: '/data', options: ['rw'] }] },
      { containerId: 'c1' },
    );
    const doc = await onDisk();
    // Layers, scratch and mounts may be acquired concurrently: compare without order, except that
    // the overlay comes after its layers and scratch.
    expect(doc.records.map((r) => `${r.kind} ${r.owner}`).sort()).to.deep.equal(['combined-layers c1', 'plan9 c1', 'scsi c1', 'vpmem c1', 'vpmem c1']);
    const combined = doc.records.findIndex((r) => r.kind === 'combined-layers');
    const before = doc.records.slice(0, combined).map((r) => r.kind);
    expect(before.filter((k) => k !== 'plan9').sort()).to.deep.equal(['scsi', 'vpmem', 'vpmem']);
    expect(resources.held.map((h) => isJournaledLease(h.lease) || h.kind === 'combined-layers')).to.deep.equal([true, true, true, true, true]);
    await resources.release();
    expect((await onDisk()).records).to.deep.equal([]);
  });
});

// UtilityVm with a journal, and UtilityVm.open over FakeHcs (standard properties only, as real
// HCS: reconcile trusts the journal). The native simulator path is covered by
// test/integration/recovery-*.test.ts.
import { expect } from 'chai';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { createLogger } from '../../../src/core/logger.js';
import { createUvmOrchestrator } from '../../../src/di/uvm-orchestrator.js';
import { FakeHcs, type FakeComputeSystem } from '../../../src/hcs/fake-hcs.js';
import { readJournalFile } from '../../../src/recovery/journal.js';
import type { UtilityVm } from '../../../src/uvm/utility-vm.js';
import { expectCode } from '../../fakes/expect-code.js';
import { checkAfterTest, detachTablesFromLeakCheck } from '../../support/leak-checks.js';
import { HCS_DELIVERY } from '../../fakes/fake-gcs.js';

const MiB = 1024 * 1024;

describe('UtilityVm journal and open (FakeHcs)', () => {
  let dir: string;
  let hcs: FakeHcs;
  let hostFs: FakeHostFs;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'uvm-open-'));
    hcs = new FakeHcs();
    hostFs = new FakeHostFs()
      .file('/l/base/layer.vhd', MiB)
      .file('/c1/sandbox.vhdx', 1024 * MiB)
      .dir('/data')
      .file('/d/tools.vhdx', MiB);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const orchestrator = () => createUvmOrchestrator({ ...HCS_DELIVERY, hcs, hostFs, logger: createLogger({ level: 'silent' }) });
  const journal = () => ({ path: join(dir, 'vm.journal') });
  const spec = {
    root: { path: 'rootfs' },
    windows: { layerFolders: ['/l/base', '/c1'] },
    mounts: [{ destination: '/data', type: 'bind', source: '/data', options: ['rw'] }],
  };

  /** The first process lets go of the UVM (as if it died): everything stays attached and journaled. */
  async function crash(uvm: UtilityVm): Promise<void> {
    await uvm.close();
  }

  it('journals the UVM options, the leases and the containers; a new process restores them and releases them', async () => {
    detachTablesFromLeakCheck();
    checkAfterTest(() => [...hcs.systems.values()].flatMap((s) => (s.state === 'Stopped' ? [] : s.attached())));
    const first = await orchestrator().createUtilityVm({ id: 'vm-1', os: 'linux', vpmem: { count: 2 }, journal: journal() });
    await first.start();
    const tools = await first.scsi.acquire({ hostPath: '/d/tools.vhdx', readOnly: true });
    const { resources } = await first.allocateContainer(spec, { containerId: 'c1' });
    const doc = (await readJournalFile(journal().path))!;
    expect(doc.uvmOptions).to.deep.equal({ id: 'vm-1', os: 'linux', vpmem: { count: 2 }, guestDelivery: 'hcs' });
    expect(doc.records.map((r) => `${r.kind} ${r.owner ?? 'uvm'}`).sort()).to.deep.equal([
      'combined-layers c1',
      'plan9 c1',
      'scsi c1',
      'scsi uvm',
      'vpmem c1',
    ]);
    expect(doc.containers.map((c) => [c.id, c.held.length, c.mounts.map((m) => m.mount.destination)])).to.deep.equal([['c1', 3, ['/data']]]);
    const attached = (hcs.systems.get('vm-1') as FakeComputeSystem).attached();
    const described = first.describe();
    // Reconcile never runs on a created UVM (it would count every reference twice).
    await expectCode(first.reconcile(), 'INVALID_STATE');
    // Owned: neither a second UtilityVm of this process nor another orchestrator may open it.
    await expectCode(orchestrator().openUtilityVm('vm-1', { journal: journal() }), 'UVM_EXISTS');
    await crash(first);
    // After close() the first UtilityVm refuses everything; its leases stay (and stay journaled).
    await expectCode(tools.release(), 'HANDLE_CLOSED');
    await expectCode(resources.release(), 'HANDLE_CLOSED');
    expect((hcs.systems.get('vm-1') as FakeComputeSystem).attached()).to.deep.equal(attached);
    expect((await readJournalFile(journal().path))!.records).to.have.length(5);
    const calls = hcs.calls.length;

    const second = await orchestrator().openUtilityVm('vm-1', { journal: journal() });
    expect(hcs.calls.slice(calls).map((c) => c.fn)).to.deep.equal(['open', 'properties']);
    expect(second.recoveryReport).to.deep.include({ inventory: 'journal', adopted: [1, 2, 3, 4, 5], removed: [], containers: ['c1'] });
    expect(second.facts.vpmemCount).to.equal(2);
    expect(second.describe()).to.deep.equal(described);
    const [restored] = second.containers();
    expect(restored!.containerId).to.equal('c1');
    expect(restored!.rootfsPath).to.equal('/run/gcs/c/c1/rootfs');
    expect(restored!.mounts()).to.deep.equal(resources.mounts());
    expect(second.restoredLeases().map((l) => l.kind)).to.deep.equal(['scsi']);
    // Reconcile runs once (again would count every reference twice).
    await expectCode(second.reconcile(), 'INVALID_STATE');
    await expectCode(first.reconcile(), 'HANDLE_CLOSED');
    expect((hcs.systems.get('vm-1') as FakeComputeSystem).attached()).to.deep.equal(attached);

    // Refcounting goes on, then everything is released through the restored objects.
    await restored!.removeMount('/data');
    await restored!.release();
    for (const l of second.restoredLeases()) await l.lease.release();
    expect(second.describe()).to.deep.equal([]);
    expect((hcs.systems.get('vm-1') as FakeComputeSystem).attached()).to.deep.equal([]);
    expect((await readJournalFile(journal().path))!.records).to.deep.equal([]);
    await second.terminate();
    expect(existsSync(journal().path), 'journal deleted with the VM').to.equal(false);
    await second.close();
  });

  it('rejects a missing, corrupt or foreign journal with RECOVERY_FAILED, and bad options with INVALID_ARGUMENT', async () => {
    const uvm = await orchestrator().createUtilityVm({ id: 'vm-2', os: 'linux', journal: journal() });
    await expectCode(orchestrator().openUtilityVm('vm-3', { journal: journal() }), 'JOURNAL_IN_USE');
    await uvm.close();
    await expectCode(orchestrator().openUtilityVm('vm-3', { journal: journal() }), 'RECOVERY_FAILED');
    await expectCode(orchestrator().openUtilityVm('vm-2', { journal: { path: join(dir, 'missing') } }), 'RECOVERY_FAILED');
    writeFileSync(join(dir, 'bad'), '{"version":1,');
    await expectCode(orchestrator().openUtilityVm('vm-2', { journal: { path: join(dir, 'bad') } }), 'RECOVERY_FAILED');
    await expectCode(orchestrator().openUtilityVm('vm-2', { journal: { path: 'relative' } }), 'INVALID_ARGUMENT');
    await expectCode(orchestrator().createUtilityVm({ id: 'vm-4', os: 'linux', journal: { path: '' } }), 'INVALID_ARGUMENT');
    expect(hcs.systems.has('vm-4')).to.equal(false);
    expect(readdirSync(dir).sort(), 'no lock left behind').to.deep.equal(['bad', 'vm.journal']);
  });

  it('a UVM without a journal has no recovery (reconcile → NOT_SUPPORTED) and still tracks its containers', async () => {
    const uvm = await orchestrator().createUtilityVm({ id: 'vm-5', os: 'linux', vpmem: { count: 2 } });
    await uvm.start();
    await expectCode(uvm.reconcile(), 'NOT_SUPPORTED');
    const { resources } = await uvm.allocateContainer(spec, { containerId: 'c1' });
    expect(uvm.containerResources('c1')).to.equal(resources);
    await resources.release();
    expect(uvm.containers()).to.deep.equal([]);
    expect(existsSync(journal().path)).to.equal(false);
    await uvm.close();
  });
});

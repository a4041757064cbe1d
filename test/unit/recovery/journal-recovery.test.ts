// Recovery from the journal alone (FakeHcs answers standard properties only, as real HCS):
// write-ahead parts, a journal of the previous format version (fixture), restricted VSMB shares
// whose AllowedFiles ran ahead of the leases (issue 11, finding 3).
import { expect } from 'chai';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { createLogger } from '../../../src/core/logger.js';
import { createUvmOrchestrator } from '../../../src/di/uvm-orchestrator.js';
import { FakeHcs, type FakeComputeSystem } from '../../../src/hcs/fake-hcs.js';
import { JOURNAL_VERSION, parseJournal } from '../../../src/recovery/journal-format.js';
import { readJournalFile } from '../../../src/recovery/journal.js';
import type { UtilityVm } from '../../../src/uvm/utility-vm.js';
import { checkAfterTest, detachTablesFromLeakCheck } from '../../support/leak-checks.js';
import { HCS_DELIVERY } from '../../fakes/fake-gcs.js';

const MiB = 1024 * 1024;
/** test/unit/recovery/fixtures (the build keeps sources next to the compiled tests' parent). */
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'test', 'unit', 'recovery', 'fixtures');

describe('recovery from the journal alone (FakeHcs, no device list)', () => {
  let dir: string;
  let hcs: FakeHcs;
  let hostFs: FakeHostFs;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'uvm-jrec-'));
    hcs = new FakeHcs();
    hostFs = new FakeHostFs()
      .file('/l/base/layer.vhd', MiB)
      .file('/l/mid/layer.vhd', MiB)
      .file('/c1/sandbox.vhdx', 1024 * MiB)
      .dir('/data')
      .file('/d/tools.vhdx', MiB)
      .file('/d/scratch.vhdx', MiB)
      .file('/cfg/app.conf', 10)
      .file('C:\\cfg\\a.json', 10)
      .file('C:\\cfg\\b.json', 10)
      .file('C:\\cfg\\c.json', 10);
    detachTablesFromLeakCheck();
    const fake = hcs;
    checkAfterTest(() => [...fake.systems.values()].flatMap((s) => (s.state === 'Stopped' ? [] : s.attached())));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const orchestrator = () => createUvmOrchestrator({ ...HCS_DELIVERY, hcs, hostFs, logger: createLogger({ level: 'silent' }) });
  const journalPath = () => join(dir, 'vm.journal');
  const system = (id: string) => hcs.systems.get(id) as FakeComputeSystem;

  async function releaseAll(uvm: UtilityVm): Promise<void> {
    for (const c of uvm.containers()) await c.release();
    for (const l of uvm.restoredLeases()) await l.lease.release();
  }

  it('journals every Add durably ahead of its call and settles it after: the parts match what HCS holds', async () => {
    const uvm = await orchestrator().createUtilityVm({ id: 'vm-1', os: 'linux', vpmem: { count: 2 }, journal: { path: journalPath() } });
    await uvm.start();
    // Each Add's modify sees its part already journaled (durably) as "adding".
    const seen: string[] = [];
    hcs.failWhen((call) => {
      if (call.fn !== 'modify') return undefined;
      const doc = parseJournal(readFileSync(journalPath(), 'utf8'));
      seen.push(...doc.parts.filter((p) => p.state !== 'attached').map((p) => `${p.state} ${p.key}`));
      return undefined;
    });
    const tools = await uvm.scsi.acquire({ hostPath: '/d/tools.vhdx', readOnly: true });
    const { resources } = await uvm.allocateContainer(
      { root: { path: 'rootfs' }, windows: { layerFolders: ['/l/mid', '/l/base', '/c1'] }, mounts: [{ destination: '/data', type: 'bind', source: '/data' }] },
      { containerId: 'c1' },
    );
    expect(seen).to.include.members(['adding scsi:0:0', 'adding vpmem:0', 'adding mount:/run/layers/p0', 'adding combined:/run/gcs/c/c1/rootfs', 'adding plan9:0']);
    const doc = (await readJournalFile(journalPath()))!;
    expect(doc.parts.map((p) => p.state)).to.satisfy((states: string[]) => states.every((s) => s === 'attached'));
    // (VM access grants are journaled too, but are not in the VM: grants-journal.test.ts.)
    expect(doc.parts.filter((p) => p.kind !== 'vm-access')).to.have.length(system('vm-1').attached().length);
    // Removals are journaled ahead too, but not waited for (docs/recovery.md): nothing to see here.
    await resources.release();
    await tools.release();
    hcs.clearFaults();
    // The next durable write carries the earlier outcomes: only the new disk's parts are left.
    const again = await uvm.scsi.acquire({ hostPath: '/d/tools.vhdx', readOnly: true });
    expect((await readJournalFile(journalPath()))!.parts.map((p) => `${p.state} ${p.key}`)).to.deep.equal(['attached grant:/c1/sandbox.vhdx', 'attached scsi:0:0']);
    await again.release();
    await uvm.terminate();
    await uvm.close();
  });

  it("announces a container's Adds in one write before its first call: no Add waits for a write of its own, nothing is withdrawn", async () => {
    const uvm = await orchestrator().createUtilityVm({ id: 'vm-a', os: 'linux', vpmem: { count: 2 }, journal: { path: journalPath() } });
    await uvm.start();
    // What the file holds at each call of the allocation (grants and modifies).
    const atCall: string[] = [];
    hcs.failWhen((call) => {
      if (call.fn === 'modify' || call.fn === 'grant') atCall.push(readFileSync(journalPath(), 'utf8'));
      return undefined;
    });
    const { resources } = await uvm.allocateContainer(FIXTURE_POD_SPEC, { containerId: 'c1' });
    hcs.clearFaults();
    // Every call found its part journaled by the announcement, and the file did not change while
    // the calls ran (outcomes and the documents' settings ride with the container record).
    expect(new Set(atCall).size).to.equal(1);
    const announced = parseJournal(atCall[0]!).parts.map((p) => `${p.state} ${p.key}`);
    expect(announced).to.include.members(['adding grant:/c1/sandbox.vhdx', 'adding scsi:0:0', 'adding mount:/run/gcs/c/c1', 'adding vpmem:0', 'adding combined:/run/gcs/c/c1/rootfs', 'adding plan9:0']);
    // Each announced part was claimed by its call's intent (the derivation matches the documents).
    const ops = readFileSync(journalPath(), 'utf8').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as { op?: string });
    expect(ops.filter((o) => o.op === 'unpart')).to.deep.equal([]);
    const doc = (await readJournalFile(journalPath()))!;
    expect(doc.parts.filter((p) => p.kind !== 'vm-access')).to.have.length(system('vm-a').attached().length);
    expect(doc.parts.every((p) => p.state === 'attached')).to.equal(true);
    await resources.release();
    await uvm.terminate();
    await uvm.close();
  });

  /** The container the format fixtures were written from (test/unit/recovery/fixtures). */
  const FIXTURE_POD_SPEC = {
    root: { path: 'rootfs' },
    windows: { layerFolders: ['/l/mid', '/l/base', '/c1'] },
    mounts: [
      { destination: '/data', type: 'bind', source: '/data', options: ['rw'] },
      { destination: '/etc/app.conf', type: 'bind', source: '/cfg/app.conf', options: ['ro'] },
      { destination: '/proc', type: 'proc', source: 'proc' },
    ],
  };

  /** The fixture pod recovered whole: its container's mounts, then released, terminated, the journal gone. */
  async function expectFixturePodReleased(uvm: UtilityVm): Promise<void> {
    expect(uvm.containerResources('c1')!.mounts().map((m) => m.destination)).to.deep.equal(['/data', '/etc/app.conf', '/proc']);
    await releaseAll(uvm);
    expect(system(uvm.id).attached()).to.deep.equal([]);
    await uvm.terminate();
    await uvm.close();
    expect(existsSync(journalPath())).to.equal(false);
  }

  it('reads a journal written in the previous format version (1) and recovers from it', async () => {
    // The same pod the fixture was written from (test/unit/recovery/fixtures/journal-v1.json, by
    // the version-1 code), so that HCS holds what the fixture journaled.
    const first = await orchestrator().createUtilityVm({ id: 'vm-v1', os: 'linux', vpmem: { count: 2 }, scsiControllers: 1, journal: { path: journalPath() } });
    await first.start();
    await first.scsi.acquire({ hostPath: '/d/tools.vhdx', readOnly: true });
    await first.allocateContainer(FIXTURE_POD_SPEC, { containerId: 'c1' });
    await first.close();
    copyFileSync(join(FIXTURES, 'journal-v1.json'), journalPath());
    expect(JSON.parse(readFileSync(journalPath(), 'utf8')).version).to.equal(1);

    const second = await orchestrator().openUtilityVm('vm-v1', { journal: { path: journalPath() } });
    expect(second.recoveryReport).to.deep.include({ adopted: [1, 2, 3, 4, 5, 6, 7], removed: [], forgotten: [], containers: ['c1'] });
    // Rewritten in the current format, with the parts the version-1 records stand for.
    const doc = (await readJournalFile(journalPath()))!;
    expect(doc.version).to.equal(JOURNAL_VERSION);
    expect(JSON.parse(readFileSync(journalPath(), 'utf8').split('\n')[0]!).version).to.equal(JOURNAL_VERSION);
    expect(doc.parts).to.have.length(system('vm-v1').attached().length);
    await expectFixturePodReleased(second);
  });

  it('reads a journal written in the previous format version (2: a log with part, state, lease, container ops) and recovers from it', async () => {
    // The same pod the fixture was written from (test/unit/recovery/fixtures/journal-v2.jsonl,
    // by the version-2 code, closed without a compaction: a snapshot line then 44 op lines), so
    // that HCS holds what the fixture journaled.
    const first = await orchestrator().createUtilityVm({ id: 'vm-v2', os: 'linux', vpmem: { count: 2 }, scsiControllers: 1, journal: { path: journalPath() } });
    await first.start();
    await first.scsi.acquire({ hostPath: '/d/tools.vhdx', readOnly: true });
    await (await first.scsi.acquire({ hostPath: '/d/scratch.vhdx', readOnly: false })).release();
    await first.allocateContainer(FIXTURE_POD_SPEC, { containerId: 'c1' });
    await first.close();
    copyFileSync(join(FIXTURES, 'journal-v2.jsonl'), journalPath());
    const lines = readFileSync(journalPath(), 'utf8').split('\n').filter((l) => l.length > 0);
    expect(JSON.parse(lines[0]!).version).to.equal(2);
    expect(new Set(lines.slice(1).map((l) => (JSON.parse(l) as { op: string }).op))).to.include.keys('part', 'state', 'unpart', 'lease', 'unlease', 'container');

    const second = await orchestrator().openUtilityVm('vm-v2', { journal: { path: journalPath() } });
    // (Record 2, the disk released before the close, is gone: its unlease and unpart ops were replayed.)
    expect(second.recoveryReport).to.deep.include({ adopted: [1, 3, 4, 5, 6, 7, 8], removed: [], forgotten: [], containers: ['c1'] });
    // Rewritten in the current format at once (one snapshot line).
    const rewritten = readFileSync(journalPath(), 'utf8').split('\n').filter((l) => l.length > 0);
    expect(rewritten).to.have.length(1);
    expect(JSON.parse(rewritten[0]!).version).to.equal(JOURNAL_VERSION);
    const doc = (await readJournalFile(journalPath()))!;
    expect(doc.parts.filter((p) => p.kind !== 'vm-access')).to.have.length(system('vm-v2').attached().length);
    await expectFixturePodReleased(second);
  });

  for (const direction of ['a file added by an Update whose lease was never journaled', 'a file whose lease was dropped before the shrinking Update']) {
    it(`finding 3: a restricted VSMB share gets its AllowedFiles re-asserted from the surviving leases (${direction})`, async () => {
      const first = await orchestrator().createUtilityVm({ id: 'vm-w', os: 'windows', vsmbNoDirectMap: true, journal: { path: journalPath() } });
      await first.start();
      const a = await first.vsmb.acquire({ hostPath: 'C:\\cfg\\a.json', readOnly: true });
      const b = await first.vsmb.acquire({ hostPath: 'C:\\cfg\\b.json', readOnly: true });
      expect(a.value.name).to.equal(b.value.name);
      const shareKey = `VirtualMachine/Devices/VirtualSmb/Shares/${a.value.name}`;
      const settings = system('vm-w').host.get(shareKey) as { AllowedFiles: string[] };
      expect(settings.AllowedFiles).to.deep.equal(['C:\\cfg\\a.json', 'C:\\cfg\\b.json']);
      if (direction.startsWith('a file added')) {
        // The crash hit between the Update (HCS allows c.json) and c.json's lease record.
        system('vm-w').host.set(shareKey, { ...settings, AllowedFiles: [...settings.AllowedFiles, 'C:\\cfg\\c.json'] });
      } else {
        // b.json's record was dropped (release started), the crash hit before the shrinking Update.
        await b.release();
        system('vm-w').host.set(shareKey, settings);
      }
      await first.close();

      const second = await orchestrator().openUtilityVm('vm-w', { journal: { path: journalPath() } });
      expect(second.recoveryReport!.reassertedShares).to.equal(1);
      const held = second.restoredLeases().map((l) => (l.request as { hostPath: string }).hostPath);
      expect((system('vm-w').host.get(shareKey) as { AllowedFiles: string[] }).AllowedFiles, 'only what a lease holds').to.deep.equal(held);
      await releaseAll(second);
      expect(system('vm-w').attached()).to.deep.equal([]);
      await second.terminate();
      await second.close();
    });
  }
});

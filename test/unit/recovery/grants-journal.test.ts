// VM access grants in the recovery journal (FakeHcs): journaled ahead of HcsGrantVmAccess, kept
// by recovery, revoked by terminate() once the VM is gone.
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { createLogger } from '../../../src/core/logger.js';
import { createUvmOrchestrator } from '../../../src/di/uvm-orchestrator.js';
import { FakeHcs, type FakeComputeSystem } from '../../../src/hcs/fake-hcs.js';
import { parseJournal } from '../../../src/recovery/journal-format.js';
import { readJournalFile } from '../../../src/recovery/journal.js';
import { checkAfterTest, detachTablesFromLeakCheck } from '../../support/leak-checks.js';

const MiB = 1024 * 1024;

describe('VM access grants in the recovery journal (FakeHcs)', () => {
  let dir: string;
  let hcs: FakeHcs;
  let hostFs: FakeHostFs;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'uvm-jgrant-'));
    hcs = new FakeHcs();
    hostFs = new FakeHostFs().file('/l/base/layer.vhd', MiB).file('/c1/sandbox.vhdx', 1024 * MiB).file('/d/data.vhdx', MiB);
    detachTablesFromLeakCheck();
    const fake = hcs;
    checkAfterTest(() => [...fake.systems.values()].flatMap((s) => (s.state === 'Stopped' ? [] : (s as FakeComputeSystem).attached())));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const orchestrator = () => createUvmOrchestrator({ hcs, hostFs, logger: createLogger({ level: 'silent' }) });
  const journalPath = () => join(dir, 'vm.journal');
  const grantsOf = (id: string) => [...hcs.grants].filter((g) => g.startsWith(`${id}|`)).map((g) => g.slice(id.length + 1)).sort();

  it('a grant is journaled durably before HcsGrantVmAccess, once per path; terminate() revokes every grant', async () => {
    const uvm = await orchestrator().createUtilityVm({ id: 'vm-g', os: 'linux', journal: { path: journalPath() } });
    await uvm.start();
    const seen: string[] = [];
    hcs.failWhen((call) => {
      if (call.fn === 'grant') {
        const doc = parseJournal(readFileSync(journalPath(), 'utf8'));
        seen.push(...doc.parts.filter((p) => p.kind === 'vm-access').map((p) => `${p.state} ${p.key}`));
      }
      return undefined;
    });
    const { resources } = await uvm.allocateContainer({ root: { path: 'rootfs' }, windows: { layerFolders: ['/l/base', '/c1'] } }, { containerId: 'c1' });
    const disk = await uvm.scsi.acquire({ hostPath: '/d/data.vhdx', readOnly: false });
    // Granted again (hcsshim grants on every attach): nothing new to journal.
    const again = await uvm.scsi.acquire({ hostPath: '/d/data.vhdx', readOnly: false });
    expect(seen).to.deep.equal(['adding grant:/c1/sandbox.vhdx', 'attached grant:/c1/sandbox.vhdx', 'adding grant:/d/data.vhdx', 'attached grant:/c1/sandbox.vhdx', 'attached grant:/d/data.vhdx']);
    expect(grantsOf('vm-g')).to.deep.equal(['/c1/sandbox.vhdx', '/d/data.vhdx']);
    await again.release();
    await disk.release();
    await resources.release();
    // Releases revoke nothing (as hcsshim): the grants stay journaled until the VM is gone.
    expect((await readJournalFile(journalPath()))!.parts.filter((p) => p.kind === 'vm-access').map((p) => p.key)).to.deep.equal(['grant:/c1/sandbox.vhdx', 'grant:/d/data.vhdx']);
    hcs.clearFaults();
    await uvm.terminate();
    await uvm.close();
    expect(grantsOf('vm-g')).to.deep.equal([]);
  });

  it('the WCOW scratch is granted after its journal exists, journaled ahead of HcsGrantVmAccess; a crash right after the grant leaves it known', async () => {
    const boot = { osLayerPath: '/wl/servercore', scratchPath: '/wp/vm/sandbox.vhdx' };
    hostFs.dir(boot.osLayerPath).dir(`${boot.osLayerPath}/UtilityVM/Files`).file(boot.scratchPath, 1024 * MiB);
    // What the journal file holds when the grant is made (the file must exist already).
    const seen: string[] = [];
    let atGrant = '';
    hcs.failWhen((call) => {
      if (call.fn === 'grant') {
        atGrant = readFileSync(journalPath(), 'utf8');
        seen.push(...parseJournal(atGrant).parts.filter((p) => p.kind === 'vm-access').map((p) => `${p.state} ${p.key}`));
      }
      return undefined;
    });
    const uvm = await orchestrator().createUtilityVm({ id: 'vm-w', os: 'windows', boot, journal: { path: journalPath() } });
    expect(seen).to.deep.equal([`adding grant:${boot.scratchPath}`]);
    expect(hcs.calls.map((c) => c.fn).slice(0, 2)).to.deep.equal(['grant', 'create']);
    expect(grantsOf('vm-w')).to.deep.equal([boot.scratchPath]);
    // The process "dies" at the grant (the journal as it was then: the outcome unknown): the
    // next owner knows the grant and revokes it with the VM.
    await uvm.start();
    await uvm.close();
    writeFileSync(journalPath(), atGrant);
    const reopened = await orchestrator().openUtilityVm('vm-w', { journal: { path: journalPath() } });
    expect((await readJournalFile(journalPath()))!.parts.map((p) => `${p.state} ${p.key}`)).to.deep.equal([`attached grant:${boot.scratchPath}`]);
    hcs.clearFaults();
    await reopened.terminate();
    await reopened.close();
    expect(grantsOf('vm-w')).to.deep.equal([]);
  });

  it('recovery keeps the grants (an unknown outcome included) and the next terminate() revokes them', async () => {
    const first = await orchestrator().createUtilityVm({ id: 'vm-h', os: 'linux', journal: { path: journalPath() } });
    await first.start();
    await first.scsi.acquire({ hostPath: '/d/data.vhdx', readOnly: false });
    // A grant whose call failed (its outcome unknown to the journal): kept as well.
    hcs.failWhen((call) => (call.fn === 'grant' ? new Error('grant failed') : undefined));
    await first.scsi.acquire({ hostPath: '/c1/sandbox.vhdx', readOnly: false }).catch(() => undefined);
    hcs.clearFaults();
    await first.close(); // the process "dies": everything stays
    const uvm = await orchestrator().openUtilityVm('vm-h', { journal: { path: journalPath() } });
    expect((await readJournalFile(journalPath()))!.parts.filter((p) => p.kind === 'vm-access').map((p) => `${p.state} ${p.key}`)).to.deep.equal([
      'attached grant:/d/data.vhdx',
      'attached grant:/c1/sandbox.vhdx',
    ]);
    for (const l of uvm.restoredLeases()) await l.lease.release();
    await uvm.terminate();
    await uvm.close();
    expect(grantsOf('vm-h')).to.deep.equal([]);
  });
});

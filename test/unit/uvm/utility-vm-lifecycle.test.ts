// The UtilityVm lifecycle refuses misuse with codes (issue 11, findings 1, 2, 4 and 5): a failed
// duplicate create never touches an existing journal, duplicate container ids, every call after
// close(), adds after terminate(), a live id created again.
import { expect } from 'chai';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { createLogger } from '../../../src/core/logger.js';
import { createUvmOrchestrator } from '../../../src/di/uvm-orchestrator.js';
import { FakeHcs, type FakeComputeSystem } from '../../../src/hcs/fake-hcs.js';
import type { OciSpec } from '../../../src/oci/oci-spec.js';
import type { UtilityVm } from '../../../src/uvm/utility-vm.js';
import { expectCode } from '../../fakes/expect-code.js';
import { checkAfterTest, detachTablesFromLeakCheck } from '../../support/leak-checks.js';
import { HCS_DELIVERY } from '../../fakes/fake-gcs.js';

const MiB = 1024 * 1024;

describe('UtilityVm lifecycle (misuse refused with codes)', () => {
  let dir: string;
  let hcs: FakeHcs;
  let hostFs: FakeHostFs;
  const open: UtilityVm[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'uvm-life-'));
    hcs = new FakeHcs();
    hostFs = new FakeHostFs()
      .file('/l/base/layer.vhd', MiB)
      .file('/c1/sandbox.vhdx', 1024 * MiB)
      .file('/c2/sandbox.vhdx', 1024 * MiB)
      .dir('/rootfs')
      .dir('/data')
      .file('/d/tools.vhdx', MiB)
      .dir('C:\\l\\base')
      .file('C:\\s1\\sandbox.vhdx', 1024 * MiB)
      .file('C:\\s2\\sandbox.vhdx', 1024 * MiB);
    const fake = hcs;
    checkAfterTest(() => [...fake.systems.values()].flatMap((s) => (s.state === 'Stopped' ? [] : s.attached())));
  });
  afterEach(async () => {
    for (const uvm of open.splice(0)) {
      if (uvm.phase === 'running') await uvm.terminate().catch(() => undefined);
      await uvm.close();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const orchestrator = () => createUvmOrchestrator({ ...HCS_DELIVERY, hcs, hostFs, logger: createLogger({ level: 'silent' }) });
  const journalPath = () => join(dir, 'vm.journal');
  const track = (uvm: UtilityVm): UtilityVm => {
    open.push(uvm);
    return uvm;
  };
  const lcowSpec = (scratch: string): OciSpec => ({ root: { path: 'rootfs' }, windows: { layerFolders: ['/l/base', scratch] } });
  const creates = () => hcs.calls.filter((c) => c.fn === 'create').length;
  const system = (id: string) => hcs.systems.get(id) as FakeComputeSystem;

  describe('finding 1: a failed create never changes an existing journal', () => {
    it('same id in this process → UVM_EXISTS; another id → JOURNAL_IN_USE (locked); after close → JOURNAL_IN_USE (exists); bytes unchanged, no HCS create', async () => {
      detachTablesFromLeakCheck();
      const uvm = track(await orchestrator().createUtilityVm({ id: 'vm-1', os: 'linux', vpmem: { count: 2 }, journal: { path: journalPath() } }));
      await uvm.start();
      await uvm.allocateContainer(lcowSpec('/c1'), { containerId: 'c1' });
      const bytes = readFileSync(journalPath());
      const before = creates();

      await expectCode(orchestrator().createUtilityVm({ id: 'vm-1', os: 'linux', journal: { path: journalPath() } }), 'UVM_EXISTS');
      const locked = await expectCode(orchestrator().createUtilityVm({ id: 'vm-x', os: 'linux', journal: { path: journalPath() } }), 'JOURNAL_IN_USE');
      expect(locked.details.reason).to.equal('locked');
      expect(creates()).to.equal(before);
      expect(readFileSync(journalPath()).equals(bytes)).to.equal(true);

      // The first owner lets go (a crash, as far as the journal knows): the file stays and is never replaced.
      await uvm.close();
      const err = await expectCode(orchestrator().createUtilityVm({ id: 'vm-1', os: 'linux', journal: { path: journalPath() } }), 'JOURNAL_IN_USE');
      expect(err.details.reason).to.equal('exists');
      expect(creates()).to.equal(before);
      expect(readFileSync(journalPath()).equals(bytes)).to.equal(true);
      expect(readdirSync(dir)).to.deep.equal(['vm.journal']);

      // Opening it adopts everything (nothing was lost), and releasing ends empty.
      const reopened = track(await orchestrator().openUtilityVm('vm-1', { journal: { path: journalPath() } }));
      expect(reopened.recoveryReport!.containers).to.deep.equal(['c1']);
      await reopened.containerResources('c1')!.release();
      expect(system('vm-1').attached()).to.deep.equal([]);
    });

    it('a live id → UVM_EXISTS before HCS or the journal is touched; a create that HCS refuses leaves no journal or lock behind', async () => {
      const o = orchestrator();
      const uvm = track(await o.createUtilityVm({ id: 'vm-1', os: 'linux' }));
      const before = hcs.calls.length;
      await expectCode(o.createUtilityVm({ id: 'vm-1', os: 'linux', journal: { path: journalPath() } }), 'UVM_EXISTS');
      await expectCode(o.openUtilityVm('vm-1', { journal: { path: journalPath() } }), 'UVM_EXISTS');
      expect(hcs.calls.length).to.equal(before);
      expect(readdirSync(dir)).to.deep.equal([]);

      hcs.failNext((c) => c.fn === 'create');
      await expectCode(o.createUtilityVm({ id: 'vm-2', os: 'linux', journal: { path: journalPath() } }), 'HCS_ERROR');
      expect(readdirSync(dir)).to.deep.equal([]);
      // The failed id is free again, and a closed one too.
      track(await o.createUtilityVm({ id: 'vm-2', os: 'linux', journal: { path: journalPath() } }));
      await uvm.close();
      await expectCode(o.createUtilityVm({ id: 'vm-1', os: 'linux' }), 'HCS_ERROR'); // HCS still has it: not refused locally
    });
  });

  describe('finding 2: duplicate container ids', () => {
    it('LCOW (Plan9 root and layers) and WCOW (different scratches): CONTAINER_EXISTS before any HCS call, sequential and concurrent; the first keeps its resources', async () => {
      const lcow = track(await orchestrator().createUtilityVm({ id: 'lcow', os: 'linux', vpmem: { count: 2 }, journal: { path: journalPath() } }));
      const wcow = track(await orchestrator().createUtilityVm({ id: 'wcow', os: 'windows', vsmbNoDirectMap: true }));
      await lcow.start();
      await wcow.start();
      const plan9Root: OciSpec = { root: { path: '/rootfs' } };
      const first = await lcow.allocateContainer(plan9Root, { containerId: 'c1' });
      let calls = hcs.calls.length;
      await expectCode(lcow.allocateContainer(plan9Root, { containerId: 'c1' }), 'CONTAINER_EXISTS');
      await expectCode(lcow.allocateContainer(lcowSpec('/c2'), { containerId: 'c1' }), 'CONTAINER_EXISTS');
      expect(hcs.calls.length).to.equal(calls);
      // Concurrent: exactly one wins.
      const both = await Promise.allSettled([lcow.allocateContainer(lcowSpec('/c1'), { containerId: 'c2' }), lcow.allocateContainer(lcowSpec('/c2'), { containerId: 'c2' })]);
      expect(both.map((r) => r.status).sort()).to.deep.equal(['fulfilled', 'rejected']);
      await expectCode(Promise.reject((both.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason), 'CONTAINER_EXISTS');

      const w1 = await wcow.allocateContainer({ root: { path: '' }, windows: { layerFolders: ['C:\\l\\base', 'C:\\s1'] } }, { containerId: 'w' });
      calls = hcs.calls.length;
      await expectCode(wcow.allocateContainer({ root: { path: '' }, windows: { layerFolders: ['C:\\l\\base', 'C:\\s2'] } }, { containerId: 'w' }), 'CONTAINER_EXISTS');
      expect(hcs.calls.length).to.equal(calls);

      // The first allocation is intact; once released, the id can be used again.
      expect(lcow.containerResources('c1')).to.equal(first.resources);
      await first.resources.release();
      const again = await lcow.allocateContainer(plan9Root, { containerId: 'c1' });
      await again.resources.release();
      await lcow.containerResources('c2')!.release();
      await w1.resources.release();
      expect(system('lcow').attached()).to.deep.equal([]);
      expect(system('wcow').attached()).to.deep.equal([]);
    });
  });

  describe('finding 4: every call after close() → HANDLE_CLOSED', () => {
    it('terminate, start, acquires, releases, allocations, hot adds, guest requests, retries; the VM keeps running and the journal stays', async () => {
      detachTablesFromLeakCheck();
      const uvm = await orchestrator().createUtilityVm({ id: 'vm-1', os: 'linux', vpmem: { count: 2 }, journal: { path: journalPath() } });
      await uvm.start();
      const tools = await uvm.scsi.acquire({ hostPath: '/d/tools.vhdx', readOnly: true });
      const { resources } = await uvm.allocateContainer(lcowSpec('/c1'), { containerId: 'c1' });
      const attached = system('vm-1').attached();
      const bytes = readFileSync(journalPath());
      await uvm.close();
      await uvm.close(); // idempotent
      const calls = hcs.calls.length;
      await expectCode(uvm.terminate(), 'HANDLE_CLOSED');
      await expectCode(uvm.start(), 'HANDLE_CLOSED');
      await expectCode(uvm.scsi.acquire({ hostPath: '/d/tools.vhdx', readOnly: true }), 'HANDLE_CLOSED');
      await expectCode(uvm.vpmem.acquire({ hostPath: '/l/base/layer.vhd' }), 'HANDLE_CLOSED');
      await expectCode(tools.release(), 'HANDLE_CLOSED');
      await expectCode(resources.release(), 'HANDLE_CLOSED');
      await expectCode(resources.addMount({ destination: '/data', type: 'bind', source: '/data' }), 'HANDLE_CLOSED');
      await expectCode(resources.removeMount('/data'), 'HANDLE_CLOSED');
      await expectCode(uvm.allocateContainer(lcowSpec('/c2'), { containerId: 'c2' }), 'HANDLE_CLOSED');
      await expectCode(uvm.sendGuestRequest({ RequestType: 'Remove', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/x' } }), 'HANDLE_CLOSED');
      await expectCode(uvm.retryFailedTeardowns(), 'HANDLE_CLOSED');
      await expectCode(uvm.reconcile(), 'HANDLE_CLOSED');
      expect(hcs.calls.length, 'no HCS call').to.equal(calls);
      expect(system('vm-1').state).to.equal('Running');
      expect(system('vm-1').attached()).to.deep.equal(attached);
      expect(readFileSync(journalPath()).equals(bytes), 'journal unchanged').to.equal(true);
      expect(uvm.containerResources('c1')).to.equal(resources);

      // The next owner takes everything back.
      const next = track(await orchestrator().openUtilityVm('vm-1', { journal: { path: journalPath() } }));
      await next.containerResources('c1')!.release();
      for (const l of next.restoredLeases()) await l.lease.release();
      expect(system('vm-1').attached()).to.deep.equal([]);
      await next.terminate();
      expect(existsSync(journalPath())).to.equal(false);
    });
  });

  describe('finding 5: adds after terminate() → UVM_TERMINATED with nothing recorded', () => {
    for (const journaled of [false, true]) {
      it(`every manager, allocateContainer, hot add, guest Add${journaled ? ' (journaled)' : ''}; a second try gets the same code; releases still work`, async () => {
        const uvm = track(
          await orchestrator().createUtilityVm({ id: 'vm-1', os: 'linux', vpmem: { count: 2 }, ...(journaled ? { journal: { path: journalPath() } } : {}) }),
        );
        await uvm.start();
        const tools = await uvm.scsi.acquire({ hostPath: '/d/tools.vhdx', readOnly: true });
        const { resources } = await uvm.allocateContainer(lcowSpec('/c1'), { containerId: 'c1' });
        await uvm.terminate();
        const calls = hcs.calls.length;
        for (let attempt = 0; attempt < 2; attempt++) {
          await expectCode(uvm.vpmem.acquire({ hostPath: '/l/base/layer.vhd' }), 'UVM_TERMINATED'); // a key held: no refcount taken either
          await expectCode(uvm.scsi.acquire({ hostPath: '/d/tools.vhdx', readOnly: true }), 'UVM_TERMINATED');
          await expectCode(uvm.plan9.acquire({ hostPath: '/data', readOnly: true }), 'UVM_TERMINATED');
          await expectCode(uvm.vsmb.acquire({ hostPath: '/data', readOnly: true }), 'UVM_TERMINATED');
          await expectCode(uvm.pipes.acquire({ hostPath: '\\\\.\\pipe\\p' }), 'UVM_TERMINATED');
          await expectCode(uvm.allocateContainer(lcowSpec('/c2'), { containerId: 'c2' }), 'UVM_TERMINATED');
          await expectCode(resources.addMount({ destination: '/data', type: 'bind', source: '/data' }), 'UVM_TERMINATED');
          await expectCode(uvm.sendGuestRequest({ RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/x', Layers: [] } }), 'UVM_TERMINATED');
          await expectCode(uvm.start(), 'UVM_TERMINATED');
        }
        expect(hcs.calls.length, 'no HCS call').to.equal(calls);
        expect(uvm.describe().filter((r) => r.state !== 'live')).to.deep.equal([]);
        await resources.release();
        await tools.release();
        expect(uvm.describe()).to.deep.equal([]);
      });
    }
  });
});

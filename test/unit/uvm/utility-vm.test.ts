import { expect } from 'chai';
import sinon from 'sinon';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { createLogger } from '../../../src/core/logger.js';
import { createUvmOrchestrator } from '../../../src/di/uvm-orchestrator.js';
import { FakeComputeSystem, FakeHcs } from '../../../src/hcs/fake-hcs.js';
import { buildCreateDocument } from '../../../src/uvm/create-document.js';
import { UtilityVm } from '../../../src/uvm/utility-vm.js';
import { resolveUvmOptions, type UtilityVmOptions } from '../../../src/uvm/uvm-options.js';
import { checkAfterTest } from '../../support/leak-checks.js';
import { forceGc } from '../../support/gc.js';
import { rejectsWithCode } from '../devices/device-test-kit.js';
import { HCS_DELIVERY } from '../../fakes/fake-gcs.js';

const C = [
  'df6d0690-79e5-55b6-a5ec-c1e2f77f580a',
  '0110f83b-de10-5172-a266-78bca56bf50a',
  'b5d2d8d4-3a75-51bf-945b-3444dc6b8579',
  '305891a9-b251-5dfe-91a2-c25d9212275b',
];

function orchestrator(): { hcs: FakeHcs; hostFs: FakeHostFs; create: (o: UtilityVmOptions) => Promise<UtilityVm> } {
  const hcs = new FakeHcs();
  const hostFs = new FakeHostFs();
  const o = createUvmOrchestrator({ ...HCS_DELIVERY, hcs, hostFs, logger: createLogger({ level: 'silent' }) });
  checkAfterTest(() => [...hcs.systems.values()].flatMap((s) => (s.state === 'Stopped' ? [] : s.attached())));
  return { hcs, hostFs, create: o.createUtilityVm };
}

describe('UtilityVm options', () => {
  it('fills the defaults', () => {
    const r = resolveUvmOptions({ id: 'pod-1', os: 'linux' });
    expect(r).to.deep.include({
      id: 'pod-1',
      os: 'linux',
      scsiControllers: 1,
      reservedScsiSlots: [],
      vpmemCount: 0,
      vpmemMaxSizeBytes: 4 * 1024 ** 3,
      vpmemMultiMapping: false,
      fullyPhysicallyBacked: false,
      noWritableFileShares: false,
      vsmbNoDirectMap: false,
    });
  });

  const bad: [string, Record<string, unknown>, string][] = [
    ['empty id', { id: '', os: 'linux' }, 'id'],
    ['id with a slash', { id: 'a/b', os: 'linux' }, 'id'],
    ['id with a backslash', { id: 'a\\b', os: 'linux' }, 'id'],
    ['id with ..', { id: 'a..b', os: 'linux' }, 'id'],
    ['id ..', { id: '..', os: 'linux' }, 'id'],
    ['id with NUL', { id: 'a\0', os: 'linux' }, 'id'],
    ['id that is a number', { id: 5, os: 'linux' }, 'id'],
    ['unknown os', { id: 'a', os: 'freebsd' }, 'os'],
    ['no os', { id: 'a' }, 'os'],
    ['LCOW 0 controllers', { id: 'a', os: 'linux', scsiControllers: 0 }, 'scsiControllers'],
    ['LCOW 5 controllers', { id: 'a', os: 'linux', scsiControllers: 5 }, 'scsiControllers'],
    ['controllers as a string', { id: 'a', os: 'linux', scsiControllers: '2' }, 'scsiControllers'],
    ['WCOW 2 controllers', { id: 'a', os: 'windows', scsiControllers: 2 }, 'scsiControllers'],
    ['129 VPMEM devices', { id: 'a', os: 'linux', vpmem: { count: 129 } }, 'vpmem.count'],
    ['VPMEM count as a string', { id: 'a', os: 'linux', vpmem: { count: '4' } }, 'vpmem.count'],
    ['VPMEM that is an array', { id: 'a', os: 'linux', vpmem: [] }, 'vpmem'],
    ['VPMEM size not a multiple of 4096', { id: 'a', os: 'linux', vpmem: { count: 1, maxSizeBytes: 4097 } }, 'vpmem.maxSizeBytes'],
    ['VPMEM on WCOW', { id: 'a', os: 'windows', vpmem: { count: 1 } }, 'vpmem.count'],
    ['misspelt VPMEM member', { id: 'a', os: 'linux', vpmem: { cuont: 4 } }, 'vpmem.cuont'],
    ['misspelt option', { id: 'a', os: 'linux', vpmemCount: 4 }, 'vpmemCount'],
    ['reserved slot on a missing controller', { id: 'a', os: 'linux', reservedScsiSlots: [{ controller: 1, lun: 0 }] }, 'reservedScsiSlots[0].controller'],
    ['reserved LUN 64', { id: 'a', os: 'linux', reservedScsiSlots: [{ controller: 0, lun: 64 }] }, 'reservedScsiSlots[0].lun'],
    ['reserved slots not an array', { id: 'a', os: 'linux', reservedScsiSlots: { controller: 0, lun: 1 } }, 'reservedScsiSlots'],
    ['non-boolean flag', { id: 'a', os: 'linux', noWritableFileShares: 'yes' }, 'noWritableFileShares'],
    ['flag 1 for true', { id: 'a', os: 'linux', fullyPhysicallyBacked: 1 }, 'fullyPhysicallyBacked'],
    ['memory as a string', { id: 'a', os: 'linux', memoryMb: '2048' }, 'memoryMb'],
    ['guest connection without modifySettings', { id: 'a', os: 'linux', guestConnection: {} }, 'guestConnection'],
    ['relative journal path', { id: 'a', os: 'linux', journal: { path: 'j.journal' } }, 'journal.path'],
    ['assigned devices not an array', { id: 'a', os: 'linux', assignedDevices: 'PCIP\\x' }, 'assignedDevices'],
    ['owner that is empty', { id: 'a', os: 'linux', owner: '' }, 'owner'],
    ['boot that is a string', { id: 'a', os: 'linux', boot: '/boot' }, 'boot'],
    ['LCOW boot option on WCOW', { id: 'a', os: 'windows', boot: { osLayerPath: '/l', scratchPath: '/s', mode: 'uefi' } }, 'boot.mode'],
    ['boot flag as a string', { id: 'a', os: 'linux', boot: { bootFilesPath: '/b', vpciEnabled: 'true' } }, 'boot.vpciEnabled'],
    ['HvSocket entry member of the wrong type', { id: 'a', os: 'linux', hvSocketServices: { [C[0]]: { Disabled: 'no' } } }, `hvSocketServices.${C[0]}.Disabled`],
    ['processor weight 0', { id: 'a', os: 'linux', processor: { weight: 0 } }, 'processor.weight'],
    ['overcommit with physical backing', { id: 'a', os: 'linux', fullyPhysicallyBacked: true, memory: { allowOvercommit: true } }, 'memory.allowOvercommit'],
  ];
  for (const [name, options, field] of bad) {
    it(`${name} → INVALID_ARGUMENT naming ${field}, no HCS call`, async () => {
      const { hcs, create } = orchestrator();
      const err = await rejectsWithCode(create(options as never), 'INVALID_ARGUMENT');
      expect((err as unknown as { details: Record<string, unknown> }).details.field).to.equal(field);
      expect(hcs.calls).to.deep.equal([]);
    });
  }

  it('options that are not an object → INVALID_ARGUMENT, no HCS call', async () => {
    for (const options of [null, 'pod', [], 5]) {
      const { hcs, create } = orchestrator();
      await rejectsWithCode(create(options as never), 'INVALID_ARGUMENT');
      expect(hcs.calls).to.deep.equal([]);
    }
  });
});

describe('UtilityVm create document (no boot)', () => {
  it('LCOW: schema 2.1, firmware-only chipset, SCSI controllers by GUID, VirtualPMem when count > 0, HvSocket, Plan9', () => {
    const doc = buildCreateDocument(resolveUvmOptions({ id: 'a', os: 'linux', scsiControllers: 4, vpmem: { count: 64, maxSizeBytes: 1 << 30 } }));
    expect(doc).to.deep.equal({
      SchemaVersion: { Major: 2, Minor: 1 },
      Owner: 'uvm-orchestrator',
      ShouldTerminateOnLastHandleClosed: true,
      VirtualMachine: {
        StopOnReset: true,
        Chipset: { Uefi: {} },
        ComputeTopology: { Memory: { SizeInMB: 1024, AllowOvercommit: true }, Processor: { Count: 2 } },
        Devices: {
          Scsi: Object.fromEntries(C.map((g) => [g, {}])),
          VirtualPMem: { MaximumCount: 64, MaximumSizeBytes: 1 << 30 },
          HvSocket: { HvSocketConfig: { DefaultBindSecurityDescriptor: 'D:P(A;;FA;;;SY)(A;;FA;;;BA)' } },
          Plan9: {},
        },
      },
    });
  });

  it('LCOW without VPMEM has no VirtualPMem; WCOW has VirtualSmb {DirectFileMappingInMB: 1024} and the gns registry value', () => {
    const lcow = buildCreateDocument(resolveUvmOptions({ id: 'a', os: 'linux' })) as { VirtualMachine: { Devices: Record<string, unknown> } };
    expect(Object.keys(lcow.VirtualMachine.Devices)).to.deep.equal(['Scsi', 'HvSocket', 'Plan9']);
    const wcow = buildCreateDocument(resolveUvmOptions({ id: 'a', os: 'windows' })) as { VirtualMachine: Record<string, any> };
    expect(wcow.VirtualMachine.Devices).to.deep.equal({
      Scsi: { [C[0]]: {} },
      HvSocket: { HvSocketConfig: { DefaultBindSecurityDescriptor: 'D:P(A;;FA;;;SY)(A;;FA;;;BA)' } },
      VirtualSmb: { DirectFileMappingInMB: 1024 },
    });
    expect(wcow.VirtualMachine.ComputeTopology.Memory).to.deep.equal({ SizeInMB: 1024, AllowOvercommit: true, EnableHotHint: true });
    expect(wcow.VirtualMachine.RegistryChanges.AddValues).to.have.length(1);
    expect(wcow.VirtualMachine).to.not.have.property('GuestConnection');
  });

  it("GuestConnection only when HCS owns the guest connection (hcsshim's values: LCOW vsock, WCOW {}); HvSocket bind SDDL in both modes", () => {
    const connection = { modifySettings: () => Promise.resolve() };
    for (const os of ['linux', 'windows'] as const) {
      for (const options of [{ guestConnection: connection }, { guestDelivery: 'bridge' as const }, {}]) {
        const doc = buildCreateDocument(resolveUvmOptions({ id: 'a', os, ...options })) as { VirtualMachine: Record<string, unknown> };
        expect(doc.VirtualMachine).to.not.have.property('GuestConnection');
        expect(doc.VirtualMachine.Devices).to.have.nested.property('HvSocket.HvSocketConfig.DefaultBindSecurityDescriptor', 'D:P(A;;FA;;;SY)(A;;FA;;;BA)');
      }
      const owned = buildCreateDocument(resolveUvmOptions({ id: 'a', os, guestDelivery: 'hcs' })) as { VirtualMachine: Record<string, unknown> };
      expect(owned.VirtualMachine.GuestConnection).to.deep.equal(os === 'linux' ? { UseVsock: true, UseConnectedSuspend: true } : {});
      expect(owned.VirtualMachine.Devices).to.have.nested.property('HvSocket.HvSocketConfig.DefaultBindSecurityDescriptor', 'D:P(A;;FA;;;SY)(A;;FA;;;BA)');
    }
  });
});

describe('UtilityVm (through the composition root)', () => {
  it('creates the compute system, starts it, and exposes facts and managers', async () => {
    const { hcs, create } = orchestrator();
    const uvm = await create({ id: 'pod-1', os: 'linux', scsiControllers: 2, vpmem: { count: 4, multiMapping: true } });
    expect(hcs.calls[0]).to.deep.include({ fn: 'create', id: 'pod-1' });
    await uvm.start();
    expect((hcs.systems.get('pod-1') as FakeComputeSystem).state).to.equal('Running');
    expect(uvm.facts).to.deep.equal({
      id: 'pod-1',
      os: 'linux',
      fullyPhysicallyBacked: false,
      noWritableFileShares: false,
      vpmemCount: 4,
      vpmemMaxSizeBytes: 4 * 1024 ** 3,
      vpmemMultiMapping: true,
      scsiControllers: 2,
      reservedScsiSlotCount: 0,
    });
    expect(uvm.nameToGuid('layer1')).to.equal(hcs.nameToGuid('layer1'));
    const disk = await uvm.scsi.acquire({ hostPath: '/d/a.vhd', readOnly: true, mount: {} });
    expect(uvm.describe().map((r) => r.kind)).to.deep.equal(['scsi-attachment', 'scsi-mount']);
    await disk.release();
    expect(uvm.describe()).to.deep.equal([]);
    await rejectsWithCode(uvm.vsmb.acquire({ hostPath: '/x', readOnly: true }), 'NOT_SUPPORTED');
  });

  it('two UVMs share no manager state', async () => {
    const { create } = orchestrator();
    const a = await create({ id: 'a', os: 'linux' });
    const b = await create({ id: 'b', os: 'linux' });
    await a.start();
    await b.start();
    expect(a.scsi).to.not.equal(b.scsi);
    const la = await a.scsi.acquire({ hostPath: '/d/x.vhd', readOnly: true });
    const lb = await b.scsi.acquire({ hostPath: '/d/y.vhd', readOnly: true });
    expect([la.value.lun, lb.value.lun]).to.deep.equal([0, 0]);
    expect(a.describe()).to.have.length(1);
    await la.release();
    await lb.release();
  });

  it('sendGuestRequest goes through HCS, or through the GuestConnection when one is given', async () => {
    const { hcs, create } = orchestrator();
    const req = { RequestType: 'Add', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: '/run/gcs/c/x/rootfs', Layers: [] } } as const;
    const plain = await create({ id: 'a', os: 'linux' });
    await plain.start();
    await plain.sendGuestRequest(req);
    await plain.sendGuestRequest({ ...req, RequestType: 'Remove' });
    expect(hcs.docs().slice(-2)).to.deep.equal([{ GuestRequest: req }, { GuestRequest: { ...req, RequestType: 'Remove' } }]);
    const connection = { modifySettings: sinon.stub().resolves() };
    const bridged = await create({ id: 'b', os: 'linux', guestConnection: connection });
    await bridged.start();
    await bridged.sendGuestRequest(req);
    expect(connection.modifySettings.args[0][0]).to.deep.equal(req);
    await rejectsWithCode(bridged.sendGuestRequest({} as never), 'INVALID_ARGUMENT');
  });

  it('terminate: leases released afterwards make no HCS call', async () => {
    const { hcs, create, hostFs } = orchestrator();
    hostFs.file('/l/a.vhd', 1024);
    const uvm = await create({ id: 'a', os: 'linux', vpmem: { count: 2 } });
    await uvm.start();
    const layer = await uvm.vpmem.acquire({ hostPath: '/l/a.vhd' });
    await uvm.terminate();
    expect(uvm.phase).to.equal('terminated');
    const before = hcs.calls.length;
    await layer.release();
    expect(hcs.calls.length).to.equal(before);
    expect(uvm.describe()).to.deep.equal([]);
    uvm.close();
  });

  it('without a journal, a released container is no longer retained by the UVM (issue 16)', async () => {
    const { create, hostFs } = orchestrator();
    hostFs.file('/l/base/layer.vhd', 1024 * 1024).dir('/data');
    const uvm = await create({ id: 'a', os: 'linux', vpmem: { count: 2 } });
    await uvm.start();
    const changes: string[] = [];
    // In its own frame: a finished frame holds no stale reference to the last container.
    const cycle = async (i: number): Promise<WeakRef<object>> => {
      hostFs.file(`/s/c${i}/sandbox.vhdx`, 1024 * 1024 * 1024);
      const spec = {
        root: { path: 'rootfs' },
        windows: { layerFolders: ['/l/base', `/s/c${i}`] },
        mounts: [{ destination: '/data', type: 'bind', source: '/data', options: ['rbind', 'ro'] }],
      };
      // A caller's own onChange hook is still called.
      const { resources } = await uvm.allocateContainer(spec, { containerId: `c${i}`, onChange: async (r) => void changes.push(`${r.containerId} ${r.released}`) });
      expect(uvm.containerResources(`c${i}`)).to.equal(resources);
      await resources.release();
      expect(uvm.containerResources(`c${i}`)).to.equal(undefined);
      return new WeakRef(resources);
    };
    const refs = [await cycle(0), await cycle(1), await cycle(2)];
    expect(changes).to.deep.equal(['c0 true', 'c1 true', 'c2 true']);
    expect(uvm.containers()).to.deep.equal([]);
    expect(uvm.describe()).to.deep.equal([]);
    await forceGc();
    expect(refs.map((r) => r.deref() === undefined), 'released containers garbage-collected').to.deep.equal([true, true, true]);
    await uvm.terminate();
    uvm.close();
  });

  it('a failed create rejects and builds nothing', async () => {
    const { hcs, create } = orchestrator();
    hcs.failNext((c) => c.fn === 'create');
    await rejectsWithCode(create({ id: 'a', os: 'linux' }), 'HCS_ERROR');
    expect(hcs.systems.size).to.equal(0);
  });

  it('UtilityVm.create is the same factory', async () => {
    const hcs = new FakeHcs();
    const uvm = await UtilityVm.create({ id: 'w', os: 'windows' }, { ...HCS_DELIVERY, hcs, hostFs: new FakeHostFs(), logger: createLogger({ level: 'silent' }) });
    expect(uvm.facts.os).to.equal('windows');
    expect(hcs.calls.map((c) => c.fn)).to.deep.equal(['create']);
  });
});

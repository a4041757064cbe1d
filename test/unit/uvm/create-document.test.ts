import { expect } from 'chai';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { createLogger } from '../../../src/core/logger.js';
import { createUvmOrchestrator } from '../../../src/di/uvm-orchestrator.js';
import { FakeHcs } from '../../../src/hcs/fake-hcs.js';
import { checkBootFiles } from '../../../src/uvm/boot-options.js';
import { buildCreateDocument, mergePatch } from '../../../src/uvm/create-document.js';
import { resolveUvmOptions, type UtilityVmOptions } from '../../../src/uvm/uvm-options.js';
import { rejectsWithCode } from '../devices/device-test-kit.js';
import { HCS_DELIVERY } from '../../fakes/fake-gcs.js';

const SCSI0 = 'df6d0690-79e5-55b6-a5ec-c1e2f77f580a';
const SDDL = 'D:P(A;;FA;;;SY)(A;;FA;;;BA)';
const BOOT = '/lcow/boot';

/** The resolved options after the boot-file check, as the factory hands them to the builder. */
async function docOf(options: UtilityVmOptions, hostFs: FakeHostFs): Promise<Record<string, any>> {
  const resolved = resolveUvmOptions(options);
  if (resolved.boot) resolved.boot = await checkBootFiles(resolved.boot, hostFs);
  return buildCreateDocument(resolved);
}

function lcowFiles(...names: string[]): FakeHostFs {
  const fs = new FakeHostFs().dir(BOOT);
  for (const n of names) fs.file(`${BOOT}/${n}`);
  return fs;
}

describe('create document: LCOW boot (hcsshim MakeLCOWDoc)', () => {
  it("defaults, kernel-direct, initrd: hcsshim's composed document field for field", async () => {
    const doc = await docOf({ id: 'p', os: 'linux', boot: { bootFilesPath: BOOT }, vpmem: { count: 64 } }, lcowFiles('kernel', 'initrd.img'));
    expect(doc).to.deep.equal({
      Owner: 'uvm-orchestrator',
      SchemaVersion: { Major: 2, Minor: 1 },
      ShouldTerminateOnLastHandleClosed: true,
      VirtualMachine: {
        StopOnReset: true,
        Chipset: {
          LinuxKernelDirect: {
            KernelFilePath: `${BOOT}/kernel`,
            InitRdPath: `${BOOT}/initrd.img`,
            KernelCmdLine:
              ' initcall_blacklist=virtio_vsock_init 8250_core.nr_uarts=0 panic=-1 quiet pci=off nr_cpus=2 brd.rd_nr=0 pmtmr=0 -- -e 1 /bin/vsockexec -e 109 /bin/gcs -v4 -log-format json -loglevel info',
          },
        },
        ComputeTopology: { Memory: { SizeInMB: 1024, AllowOvercommit: true }, Processor: { Count: 2 } },
        Devices: {
          Scsi: { [SCSI0]: {} },
          VirtualPMem: { MaximumCount: 64, MaximumSizeBytes: 4294967296 },
          HvSocket: { HvSocketConfig: { DefaultBindSecurityDescriptor: SDDL } },
          Plan9: {},
        },
      },
    });
  });

  it('kernel-direct prefers vmlinux when present; UEFI boots `\\kernel` over VmbFs with initrd= on the command line', async () => {
    const fs = lcowFiles('kernel', 'vmlinux', 'initrd.img');
    const direct = await docOf({ id: 'p', os: 'linux', boot: { bootFilesPath: BOOT } }, fs);
    expect(direct.VirtualMachine.Chipset.LinuxKernelDirect.KernelFilePath).to.equal(`${BOOT}/vmlinux`);
    const uefi = await docOf({ id: 'p', os: 'linux', processorCount: 4, boot: { bootFilesPath: BOOT, mode: 'uefi' } }, fs);
    expect(uefi.VirtualMachine.Chipset).to.deep.equal({
      Uefi: {
        BootThis: {
          DevicePath: '\\kernel',
          DeviceType: 'VmbFs',
          VmbFsRootPath: BOOT,
          OptionalData:
            'initrd=/initrd.img initcall_blacklist=virtio_vsock_init 8250_core.nr_uarts=0 panic=-1 quiet pci=off nr_cpus=4 brd.rd_nr=0 pmtmr=0 -- -e 1 /bin/vsockexec -e 109 /bin/gcs -v4 -log-format json -loglevel info',
        },
      },
    });
  });

  it('root VHD on SCSI 0:0 (read-only, slot reserved); console, user options, vPCI, log level and time sync on the command line', async () => {
    const options: UtilityVmOptions = {
      id: 'p',
      os: 'linux',
      memoryMb: 1023,
      console: { pipe: '\\\\.\\pipe\\p-console' },
      boot: { bootFilesPath: BOOT, rootfs: 'vhd', kernelBootOptions: 'debug', vpciEnabled: true, gcsLogLevel: 'debug', disableTimeSync: true },
    };
    const doc = await docOf(options, lcowFiles('kernel', 'rootfs.vhd'));
    const vm = doc.VirtualMachine;
    expect(vm.Chipset.LinuxKernelDirect).to.deep.equal({
      KernelFilePath: `${BOOT}/kernel`,
      KernelCmdLine:
        'root=/dev/sda ro rootwait init=/init initcall_blacklist=virtio_vsock_init 8250_core.nr_uarts=1 8250_core.skip_txen_test=1 console=ttyS0,115200 debug nr_cpus=2 brd.rd_nr=0 pmtmr=0 -- -e 1 sh -c "/bin/vsockexec -e 109 /bin/gcs -v4 -log-format json -loglevel debug -disable-time-sync & exec sh"',
    });
    expect(vm.Devices.Scsi).to.deep.equal({ [SCSI0]: { Attachments: { '0': { Type: 'VirtualDisk', Path: `${BOOT}/rootfs.vhd`, ReadOnly: true } } } });
    expect(vm.Devices.ComPorts).to.deep.equal({ '0': { NamedPipe: '\\\\.\\pipe\\p-console' } });
    expect(vm.ComputeTopology.Memory.SizeInMB).to.equal(1024); // rounded up to even, as hcsshim
    expect(resolveUvmOptions(options).reservedScsiSlots).to.deep.equal([0]);
  });

  it('memory, processor, HvSocket services, owner, and the merge-patch hook', async () => {
    const doc = await docOf(
      {
        id: 'p',
        os: 'linux',
        owner: 'containerd-shim-runhcs-v1.exe',
        memory: { enableDeferredCommit: true },
        processor: { limit: 50_000, weight: 200 },
        hvSocketServices: { '0000006D-FACB-11E6-BD58-64006A7986D3': { BindSecurityDescriptor: 'D:P', AllowWildcardBinds: true } },
        createDocumentPatch: { VirtualMachine: { StorageQoS: { IopsMaximum: 5000 }, Devices: { Plan9: null } } },
        boot: { bootFilesPath: BOOT },
      },
      lcowFiles('kernel', 'initrd.img'),
    );
    expect(doc.Owner).to.equal('containerd-shim-runhcs-v1.exe');
    expect(doc.VirtualMachine.ComputeTopology).to.deep.equal({
      Memory: { SizeInMB: 1024, AllowOvercommit: true, EnableDeferredCommit: true },
      Processor: { Count: 2, Limit: 50_000, Weight: 200 },
    });
    expect(doc.VirtualMachine.Devices.HvSocket.HvSocketConfig.ServiceTable).to.deep.equal({
      '0000006d-facb-11e6-bd58-64006a7986d3': { BindSecurityDescriptor: 'D:P', AllowWildcardBinds: true },
    });
    expect(doc.VirtualMachine.StorageQoS).to.deep.equal({ IopsMaximum: 5000 });
    expect(doc.VirtualMachine.Devices).to.not.have.property('Plan9');
    expect(doc.VirtualMachine.Chipset).to.have.property('LinuxKernelDirect');
  });

  it('fully physically backed: no overcommit; a journal keeps the VM past the last handle', () => {
    const pb = buildCreateDocument(resolveUvmOptions({ id: 'p', os: 'linux', fullyPhysicallyBacked: true }));
    expect((pb.VirtualMachine as any).ComputeTopology.Memory).to.deep.equal({ SizeInMB: 1024, AllowOvercommit: false });
    const journaled = buildCreateDocument(resolveUvmOptions({ id: 'p', os: 'linux', journal: { path: '/j/p.journal' } }));
    expect(journaled.ShouldTerminateOnLastHandleClosed).to.equal(false);
  });

  it('mergePatch follows RFC 7386', () => {
    expect(mergePatch({ a: 'b', c: { d: 'e', f: 'g' } }, { a: 'z', c: { f: null } })).to.deep.equal({ a: 'z', c: { d: 'e' } });
    expect(mergePatch({ a: [1, 2] }, { a: [3] })).to.deep.equal({ a: [3] });
    expect(mergePatch({ a: { b: 1 } }, { a: 'x' })).to.deep.equal({ a: 'x' });
  });
});

describe('create document: WCOW boot (hcsshim prepareConfigDoc)', () => {
  const LAYER = '/layers/servercore';
  const SCRATCH = '/pods/w/vm/sandbox.vhdx';
  const fs = (): FakeHostFs => new FakeHostFs().dir(LAYER).dir(`${LAYER}/UtilityVM/Files`).file(SCRATCH);

  it("hcsshim's composed document field for field", async () => {
    const doc = await docOf({ id: 'w', os: 'windows', boot: { osLayerPath: LAYER, scratchPath: SCRATCH } }, fs());
    expect(doc).to.deep.equal({
      Owner: 'uvm-orchestrator',
      SchemaVersion: { Major: 2, Minor: 1 },
      ShouldTerminateOnLastHandleClosed: true,
      VirtualMachine: {
        StopOnReset: true,
        Chipset: { Uefi: { BootThis: { DeviceType: 'VmbFs', DevicePath: '\\EFI\\Microsoft\\Boot\\bootmgfw.efi' } } },
        ComputeTopology: { Memory: { SizeInMB: 1024, AllowOvercommit: true, EnableHotHint: true }, Processor: { Count: 2 } },
        Devices: {
          Scsi: { [SCSI0]: { Attachments: { '0': { Type: 'VirtualDisk', Path: SCRATCH } } } },
          HvSocket: {
            HvSocketConfig: {
              DefaultBindSecurityDescriptor: SDDL,
              ServiceTable: {
                '172dad59-976d-45f2-8b6c-6d1b13f2ac4d': { BindSecurityDescriptor: SDDL, ConnectSecurityDescriptor: SDDL, AllowWildcardBinds: true },
              },
            },
          },
          VirtualSmb: {
            DirectFileMappingInMB: 1024,
            Shares: [
              {
                Name: 'os',
                Path: `${LAYER}/UtilityVM/Files`,
                Options: { ReadOnly: true, ShareRead: true, CacheIo: true, TakeBackupPrivilege: true, PseudoOplocks: true },
              },
            ],
          },
        },
        RegistryChanges: {
          AddValues: [{ Key: { Hive: 'System', Name: 'CurrentControlSet\\Services\\gns' }, Name: 'EnableCompartmentNamespace', Type: 'DWord', DWordValue: 1 }],
        },
      },
    });
  });

  it('no log forwarding, NoDirectmap share, console; the factory grants the scratch before create and keeps 0:0', async () => {
    const hcs = new FakeHcs();
    const o = createUvmOrchestrator({ ...HCS_DELIVERY, hcs, hostFs: fs(), logger: createLogger({ level: 'silent' }) });
    const uvm = await o.createUtilityVm({
      id: 'w',
      os: 'windows',
      vsmbNoDirectMap: true,
      console: { pipe: '\\\\.\\pipe\\w' },
      boot: { osLayerPath: LAYER, scratchPath: SCRATCH, logForwarding: false },
    });
    expect(hcs.calls.map((c) => c.fn)).to.deep.equal(['grant', 'create']);
    const doc = hcs.calls[1]!.doc as Record<string, any>;
    expect(doc.VirtualMachine.Devices.HvSocket).to.deep.equal({ HvSocketConfig: { DefaultBindSecurityDescriptor: SDDL } });
    expect(doc.VirtualMachine.Devices.VirtualSmb.Shares[0].Options.NoDirectmap).to.equal(true);
    expect(doc.VirtualMachine.Devices.ComPorts).to.deep.equal({ '0': { NamedPipe: '\\\\.\\pipe\\w' } });
    await uvm.start();
    const scratch = await uvm.scsi.acquire({ hostPath: '/pods/w/c1/sandbox.vhdx', readOnly: false });
    expect([scratch.value.controller, scratch.value.lun]).to.deep.equal([0, 1]);
    await scratch.release();
    await uvm.terminate();
    uvm.close();
  });
});

describe('boot files are checked before HCS is called', () => {
  const cases: [string, UtilityVmOptions, FakeHostFs, string][] = [
    ['missing boot folder', { id: 'p', os: 'linux', boot: { bootFilesPath: BOOT } }, new FakeHostFs(), 'bootFiles'],
    ['missing kernel', { id: 'p', os: 'linux', boot: { bootFilesPath: BOOT } }, lcowFiles('initrd.img'), 'kernel'],
    ['kernel is a folder', { id: 'p', os: 'linux', boot: { bootFilesPath: BOOT } }, lcowFiles('initrd.img').dir(`${BOOT}/kernel`), 'kernel'],
    ['missing initrd', { id: 'p', os: 'linux', boot: { bootFilesPath: BOOT } }, lcowFiles('kernel'), 'rootfs'],
    ['missing root VHD', { id: 'p', os: 'linux', boot: { bootFilesPath: BOOT, rootfs: 'vhd' } }, lcowFiles('kernel', 'initrd.img'), 'rootfs'],
    ['OS layer without UtilityVM\\Files', { id: 'w', os: 'windows', boot: { osLayerPath: '/l', scratchPath: '/s.vhdx' } }, new FakeHostFs().dir('/l').file('/s.vhdx'), 'osFiles'],
    ['missing WCOW scratch', { id: 'w', os: 'windows', boot: { osLayerPath: '/l', scratchPath: '/s.vhdx' } }, new FakeHostFs().dir('/l').dir('/l/UtilityVM/Files'), 'scratch'],
  ];
  for (const [name, options, hostFs, bootFile] of cases) {
    it(`${name} → NOT_FOUND naming the ${bootFile} file, no HCS call`, async () => {
      const hcs = new FakeHcs();
      const o = createUvmOrchestrator({ ...HCS_DELIVERY, hcs, hostFs, logger: createLogger({ level: 'silent' }) });
      const err = await rejectsWithCode(o.createUtilityVm(options), 'NOT_FOUND');
      expect((err as unknown as { details: Record<string, unknown> }).details.bootFile).to.equal(bootFile);
      expect(hcs.calls).to.deep.equal([]);
    });
  }

  const bad: [string, Record<string, unknown>, string][] = [
    ['WCOW boot options on LCOW', { id: 'p', os: 'linux', boot: { osLayerPath: '/l', scratchPath: '/s' } }, 'INVALID_ARGUMENT'],
    ['relative boot folder', { id: 'p', os: 'linux', boot: { bootFilesPath: 'boot' } }, 'INVALID_ARGUMENT'],
    ['unknown boot mode', { id: 'p', os: 'linux', boot: { bootFilesPath: BOOT, mode: 'pxe' } }, 'INVALID_ARGUMENT'],
    ['kernel file with a separator', { id: 'p', os: 'linux', boot: { bootFilesPath: BOOT, kernelFile: '../k' } }, 'INVALID_ARGUMENT'],
    ['root VHD with VPMEM', { id: 'p', os: 'linux', vpmem: { count: 2 }, boot: { bootFilesPath: BOOT, rootfs: 'vhd' } }, 'NOT_SUPPORTED'],
    ['console that is not a pipe', { id: 'p', os: 'linux', console: { pipe: 'C:\\x' } }, 'INVALID_ARGUMENT'],
    ['deferred commit without overcommit', { id: 'p', os: 'linux', memory: { allowOvercommit: false, enableDeferredCommit: true } }, 'INVALID_ARGUMENT'],
    ['processor limit 0', { id: 'p', os: 'linux', processor: { limit: 0 } }, 'INVALID_ARGUMENT'],
    ['HvSocket service that is not a GUID', { id: 'p', os: 'linux', hvSocketServices: { x: {} } }, 'INVALID_ARGUMENT'],
    ['patch that is an array', { id: 'p', os: 'linux', createDocumentPatch: [] }, 'INVALID_ARGUMENT'],
  ];
  for (const [name, options, code] of bad) {
    it(`${name} → ${code}, no HCS call`, async () => {
      const hcs = new FakeHcs();
      const o = createUvmOrchestrator({ ...HCS_DELIVERY, hcs, hostFs: new FakeHostFs(), logger: createLogger({ level: 'silent' }) });
      await rejectsWithCode(o.createUtilityVm(options as never), code as never);
      expect(hcs.calls).to.deep.equal([]);
    });
  }
});

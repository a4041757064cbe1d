import { SCSI_CONTROLLER_GUIDS } from '../devices/resource-paths.js';
import { vpciCreateSection } from '../devices/vpci-manager.js';
import { joinHost, wcowOsFilesPath, type ResolvedLcowBoot, type ResolvedWcowBoot } from './boot-options.js';
import type { ResolvedUvmOptions } from './uvm-options.js';

/** hcsshim's default HvSocket bind security descriptor: SYSTEM and Administrators, full access. */
export const HVSOCKET_DEFAULT_SDDL = 'D:P(A;;FA;;;SY)(A;;FA;;;BA)';
/** The WCOW log-forwarding HvSocket service hcsshim registers by default. */
export const WCOW_LOG_FORWARD_SERVICE = '172dad59-976d-45f2-8b6c-6d1b13f2ac4d';
/** The UEFI boot manager of a Windows UVM, relative to the OS files (hcsshim `wclayer.BootDirRelativePath`). */
const WCOW_BOOT_MANAGER = '\\EFI\\Microsoft\\Boot\\bootmgfw.efi';
/** hcsshim's vsock ports: entropy 1, log 109. */
const ENTROPY_PORT = 1;
const LOG_PORT = 109;

/**
 * The `HcsCreateComputeSystem` document of a Utility VM, composed field for field as hcsshim's
 * `MakeLCOWDoc` / WCOW `prepareConfigDoc` (docs/uvm-boot.md lists every field and every
 * deliberate difference): schema 2.1, Owner, ShouldTerminateOnLastHandleClosed, StopOnReset, the
 * boot configuration (`Chipset`), memory and processor topology, and the devices — SCSI
 * controllers, VirtualPMem (LCOW with VPMEM on), Plan9 (LCOW), VirtualSmb (WCOW), HvSocket and
 * the COM1 console — and `GuestConnection` when HCS owns the guest connection (no shim bridge). `createDocumentPatch` is merged last (RFC 7386).
 *
 * `o.boot` must have passed `checkBootFiles` (the kernel file decided); without a boot the
 * chipset is firmware only (`{"Uefi":{}}`).
 */
export function buildCreateDocument(o: ResolvedUvmOptions): Record<string, unknown> {
  const lcowBoot = o.boot?.os === 'linux' ? o.boot : undefined;
  const wcowBoot = o.boot?.os === 'windows' ? o.boot : undefined;

  const scsi: Record<string, Record<string, unknown>> = {};
  for (let c = 0; c < o.scsiControllers; c++) scsi[SCSI_CONTROLLER_GUIDS[c]] = {};
  const boot0 = lcowBoot?.rootfs === 'vhd'
    ? { Type: 'VirtualDisk', Path: joinHost(lcowBoot.bootFilesPath, lcowBoot.rootfsFile), ReadOnly: true }
    : wcowBoot
      ? { Type: 'VirtualDisk', Path: wcowBoot.scratchPath }
      : undefined;
  if (boot0) scsi[SCSI_CONTROLLER_GUIDS[0]] = { Attachments: { '0': boot0 } };

  const serviceTable: Record<string, unknown> = {};
  if (wcowBoot?.logForwarding) {
    serviceTable[WCOW_LOG_FORWARD_SERVICE] = {
      BindSecurityDescriptor: HVSOCKET_DEFAULT_SDDL,
      ConnectSecurityDescriptor: HVSOCKET_DEFAULT_SDDL,
      AllowWildcardBinds: true,
    };
  }
  Object.assign(serviceTable, o.hvSocketServices);
  const hvSocketConfig: Record<string, unknown> = { DefaultBindSecurityDescriptor: HVSOCKET_DEFAULT_SDDL };
  if (Object.keys(serviceTable).length > 0) hvSocketConfig.ServiceTable = serviceTable;

  const devices: Record<string, unknown> = { Scsi: scsi };
  if (o.os === 'linux') {
    if (o.vpmemCount > 0) devices.VirtualPMem = { MaximumCount: o.vpmemCount, MaximumSizeBytes: o.vpmemMaxSizeBytes };
    devices.HvSocket = { HvSocketConfig: hvSocketConfig };
    devices.Plan9 = {};
  } else {
    devices.HvSocket = { HvSocketConfig: hvSocketConfig };
    devices.VirtualSmb = wcowBoot
      ? { DirectFileMappingInMB: 1024, Shares: [osShare(o, wcowBoot)] }
      : { DirectFileMappingInMB: 1024 };
  }
  if (o.consolePipe !== undefined) devices.ComPorts = { '0': { NamedPipe: o.consolePipe } };
  if (o.bootVpciDevices.length > 0) devices.VirtualPci = vpciCreateSection(o.bootVpciDevices);

  const memory: Record<string, unknown> = { SizeInMB: o.memoryMb + (o.memoryMb % 2), AllowOvercommit: o.allowOvercommit };
  if (o.enableDeferredCommit) memory.EnableDeferredCommit = true;
  if (o.os === 'windows') memory.EnableHotHint = o.allowOvercommit;
  const processor: Record<string, unknown> = { Count: o.processorCount };
  if (o.processorLimit !== undefined) processor.Limit = o.processorLimit;
  if (o.processorWeight !== undefined) processor.Weight = o.processorWeight;

  const vm: Record<string, unknown> = {
    StopOnReset: true,
    Chipset: lcowBoot ? lcowChipset(o, lcowBoot) : wcowBoot ? { Uefi: { BootThis: { DeviceType: 'VmbFs', DevicePath: WCOW_BOOT_MANAGER } } } : { Uefi: {} },
    ComputeTopology: { Memory: memory, Processor: processor },
    Devices: devices,
  };
  // HCS-owned guest connection (no shim bridge): HCS accepts the GCS and forwards GuestRequests;
  // hcsshim's values until it dropped the mode (2021): LCOW over vsock, WCOW the defaults.
  if (o.guestDelivery === 'hcs') vm.GuestConnection = o.os === 'linux' ? { UseVsock: true, UseConnectedSuspend: true } : {};
  if (o.os === 'windows') {
    vm.RegistryChanges = {
      AddValues: [
        { Key: { Hive: 'System', Name: 'CurrentControlSet\\Services\\gns' }, Name: 'EnableCompartmentNamespace', Type: 'DWord', DWordValue: 1 },
      ],
    };
  }
  const doc: Record<string, unknown> = {
    Owner: o.owner,
    SchemaVersion: { Major: 2, Minor: 1 },
    ShouldTerminateOnLastHandleClosed: o.terminateOnLastHandleClosed,
    VirtualMachine: vm,
  };
  return o.createDocumentPatch ? (mergePatch(doc, o.createDocumentPatch) as Record<string, unknown>) : doc;
}

/** The read-only VSMB share `os` a WCOW UVM boots from (hcsshim's options, NoDirectmap as for any share). */
function osShare(o: ResolvedUvmOptions, boot: ResolvedWcowBoot): Record<string, unknown> {
  const options: Record<string, unknown> = { ReadOnly: true, ShareRead: true, CacheIo: true, TakeBackupPrivilege: true, PseudoOplocks: true };
  if (o.fullyPhysicallyBacked || o.vsmbNoDirectMap) options.NoDirectmap = true;
  return { Name: 'os', Path: wcowOsFilesPath(boot), Options: options };
}

function lcowChipset(o: ResolvedUvmOptions, boot: ResolvedLcowBoot): Record<string, unknown> {
  const kernelFile = boot.kernelFile ?? 'kernel';
  const cmdline = lcowKernelCommandLine(o, boot);
  if (boot.mode === 'kernel-direct') {
    const direct: Record<string, unknown> = { KernelFilePath: joinHost(boot.bootFilesPath, kernelFile) };
    if (boot.rootfs === 'initrd') direct.InitRdPath = joinHost(boot.bootFilesPath, boot.rootfsFile);
    direct.KernelCmdLine = cmdline;
    return { LinuxKernelDirect: direct };
  }
  return {
    Uefi: {
      BootThis: { DevicePath: `\\${kernelFile}`, DeviceType: 'VmbFs', VmbFsRootPath: boot.bootFilesPath, OptionalData: cmdline },
    },
  };
}

/**
 * The LCOW kernel command line, in hcsshim's order (the leading space is hcsshim's too): root file
 * system, vsock init blacklist, console, panic/quiet (no console), user options, `pci=off`,
 * `nr_cpus` (the requested count), then `--` and the init arguments (entropy port, vsockexec
 * running the GCS with its log on port 109; under `sh -c` with a console).
 */
export function lcowKernelCommandLine(o: ResolvedUvmOptions, boot: ResolvedLcowBoot): string {
  let args = '';
  if (boot.rootfs === 'vhd') args += 'root=/dev/sda ro rootwait init=/init';
  else if (boot.mode === 'uefi') args += `initrd=/${boot.rootfsFile}`;
  args += ' initcall_blacklist=virtio_vsock_init';
  const console = o.consolePipe !== undefined;
  args += console ? ' 8250_core.nr_uarts=1 8250_core.skip_txen_test=1 console=ttyS0,115200' : ' 8250_core.nr_uarts=0';
  if (!console) args += ' panic=-1 quiet';
  if (boot.kernelBootOptions !== undefined) args += ` ${boot.kernelBootOptions}`;
  if (!boot.vpciEnabled) args += ' pci=off';
  args += ` nr_cpus=${o.processorCount} brd.rd_nr=0 pmtmr=0 -- `;
  let gcs = `/bin/vsockexec -e ${LOG_PORT} /bin/gcs -v4 -log-format json -loglevel ${boot.gcsLogLevel}`;
  if (boot.disableTimeSync) gcs += ' -disable-time-sync';
  if (console) gcs = `sh -c "${gcs} & exec sh"`;
  return `${args}-e ${ENTROPY_PORT} ${gcs}`;
}

/** RFC 7386 JSON Merge Patch: objects merge recursively, `null` deletes, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return structuredClone(patch);
  const base: Record<string, unknown> =
    target !== null && typeof target === 'object' && !Array.isArray(target) ? { ...(target as Record<string, unknown>) } : {};
  for (const [key, value] of Object.entries(patch as Record<string, unknown>)) {
    if (value === null) delete base[key];
    else base[key] = mergePatch(base[key], value);
  }
  return base;
}

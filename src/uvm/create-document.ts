import { SCSI_CONTROLLER_GUIDS } from '../devices/resource-paths.js';
import { vpciCreateSection } from '../devices/vpci-manager.js';
import type { ResolvedUvmOptions } from './uvm-options.js';

/**
 * The `HcsCreateComputeSystem` document of a Utility VM (schema 2.1): the SCSI controllers (GUIDs
 * of spec §1.1, no attachments), VirtualPMem when VPMEM is on, VirtualSmb for WCOW, Plan9 for
 * LCOW, and a minimal ComputeTopology. Boot configuration (kernel, boot VHDs) is out of scope.
 */
export function buildCreateDocument(o: ResolvedUvmOptions): Record<string, unknown> {
  const scsi: Record<string, unknown> = {};
  for (let c = 0; c < o.scsiControllers; c++) scsi[SCSI_CONTROLLER_GUIDS[c]] = { Attachments: {} };
  const devices: Record<string, unknown> = { Scsi: scsi };
  if (o.os === 'linux') {
    if (o.vpmemCount > 0) devices.VirtualPMem = { MaximumCount: o.vpmemCount, MaximumSizeBytes: o.vpmemMaxSizeBytes };
    devices.Plan9 = {};
  } else {
    devices.VirtualSmb = { DirectFileMappingInMB: 1024 };
  }
  if (o.bootVpciDevices.length > 0) devices.VirtualPci = vpciCreateSection(o.bootVpciDevices);
  return {
    SchemaVersion: { Major: 2, Minor: 1 },
    Owner: 'uvm-orchestrator',
    VirtualMachine: {
      StopOnReset: true,
      ComputeTopology: { Memory: { SizeInMB: o.memoryMb }, Processor: { Count: o.processorCount } },
      Devices: devices,
    },
  };
}

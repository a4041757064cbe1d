/** SCSI controller GUIDs, index 0..3 (UUIDv5 of "0".."3" in namespace d422512d-2bf2-4752-809d-7b82b5fcb1b4). */
export const SCSI_CONTROLLER_GUIDS = [
  'df6d0690-79e5-55b6-a5ec-c1e2f77f580a',
  '0110f83b-de10-5172-a266-78bca56bf50a',
  'b5d2d8d4-3a75-51bf-945b-3444dc6b8579',
  '305891a9-b251-5dfe-91a2-c25d9212275b',
] as const;

/** LUNs per SCSI controller (fixed by Hyper-V). */
export const SCSI_LUNS_PER_CONTROLLER = 64;

/** HCS `ResourcePath`s of the host halves, in one place. */
export const resourcePaths = {
  scsiAttachment(controller: number, lun: number): string {
    return `VirtualMachine/Devices/Scsi/${SCSI_CONTROLLER_GUIDS[controller]}/Attachments/${lun}`;
  },
  vsmbShares: 'VirtualMachine/Devices/VirtualSmb/Shares',
  vpmemDevice(device: number): string {
    return `VirtualMachine/Devices/VirtualPMem/Devices/${device}`;
  },
  vpmemMapping(device: number, offset: number): string {
    return `VirtualMachine/Devices/VirtualPMem/Devices/${device}/Mappings/${offset}`;
  },
  plan9Shares: 'VirtualMachine/Devices/Plan9/Shares',
  mappedPipe(hostPipePath: string): string {
    return `VirtualMachine/Devices/MappedPipes/${hostPipePath}`;
  },
} as const;

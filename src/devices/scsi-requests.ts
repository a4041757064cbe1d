import type { GuestRequest } from '../hcs/schema.js';
import type { GuestOs, ScsiAttachType } from './device-types.js';
import { resourcePaths } from './resource-paths.js';
import { guestRequest, hostRequest, type HostRequest } from './wire-requests.js';

/** What is attached to a SCSI slot (hcsshim `attachConfig`); the attachment refcount key. */
export interface ScsiAttachConfig {
  /** The path HCS gets (for an EVD: the part after `evd://<type>/`). */
  path: string;
  readOnly: boolean;
  type: ScsiAttachType;
  /** ExtensibleVirtualDisk provider, e.g. `space`. */
  evdType?: string;
}

/** A guest mount configuration, normalised for comparison (options sorted, defaults filled). */
export interface ScsiMountSettings {
  readOnly: boolean;
  partition: number;
  encrypted: boolean;
  /** Sorted copy of the caller's options. */
  options: string[];
  ensureFilesystem: boolean;
  filesystem: string;
  blockDev: boolean;
}

/** The SCSI wire documents of spec §1.2 and §1.7, zero values omitted. */
export const scsiRequests = {
  attach(controller: number, lun: number, cfg: ScsiAttachConfig): HostRequest {
    return hostRequest(resourcePaths.scsiAttachment(controller, lun), 'Add', {
      Type: cfg.type,
      Path: cfg.path,
      ReadOnly: cfg.readOnly,
      ExtensibleVirtualDiskType: cfg.evdType,
    });
  },

  detach(controller: number, lun: number): HostRequest {
    return hostRequest(resourcePaths.scsiAttachment(controller, lun), 'Remove');
  },

  /** LCOW guest-side unplug before the host removal. */
  unplug(controller: number, lun: number): GuestRequest {
    return guestRequest('Remove', 'SCSIDevice', { Controller: controller, Lun: lun });
  },

  mount(os: GuestOs, controller: number, lun: number, path: string, m: ScsiMountSettings): GuestRequest {
    if (os === 'windows') return guestRequest('Add', 'MappedVirtualDisk', { ContainerPath: path, Lun: lun });
    return guestRequest('Add', 'MappedVirtualDisk', {
      MountPath: path,
      Lun: lun,
      Controller: controller,
      Partition: m.partition,
      ReadOnly: m.readOnly,
      Encrypted: m.encrypted,
      Options: m.options,
      BlockDev: m.blockDev,
      EnsureFilesystem: m.ensureFilesystem,
      Filesystem: m.filesystem,
    });
  },

  /** LCOW unmount carries only MountPath, ReadOnly, Lun, Partition, Controller, BlockDev. */
  unmount(os: GuestOs, controller: number, lun: number, path: string, m: ScsiMountSettings): GuestRequest {
    if (os === 'windows') return guestRequest('Remove', 'MappedVirtualDisk', { ContainerPath: path, Lun: lun });
    return guestRequest('Remove', 'MappedVirtualDisk', {
      MountPath: path,
      Lun: lun,
      Controller: controller,
      Partition: m.partition,
      ReadOnly: m.readOnly,
      BlockDev: m.blockDev,
    });
  },
} as const;

import { invalidArgument } from '../core/errors.js';
import type { UvmDeviceConfig } from '../devices/device-config.js';
import type { GuestOs } from '../devices/device-types.js';
import { SCSI_CONTROLLER_GUIDS, SCSI_LUNS_PER_CONTROLLER } from '../devices/resource-paths.js';
import { validate } from '../devices/validation.js';
import { DEFAULT_VPMEM_SIZE_BYTES, MAX_VPMEM_COUNT } from '../devices/vpmem-manager.js';
import { resolveBootDevices, type VpciDevice, type VpciDeviceRequest } from '../devices/vpci-manager.js';
import { resolveJournalOptions, type JournalOptions } from '../recovery/journal.js';
import type { GuestConnection } from './guest-connection.js';

/** A SCSI slot pre-attached at boot. */
export interface ScsiSlot {
  controller: number;
  lun: number;
}

/** VPMEM configuration (LCOW only). */
export interface VpmemOptions {
  /** Number of devices, 0..128. @default 0 (VPMEM off) */
  count?: number;
  /** Bytes per device, a multiple of 4096. @default 4 GiB */
  maxSizeBytes?: number;
  /** Pack several layers per device (buddy allocator). @default false */
  multiMapping?: boolean;
}

/**
 * What a Utility VM is created from.
 * @example { id: 'pod-1', os: 'linux', scsiControllers: 4, vpmem: { count: 64, multiMapping: true } }
 */
export interface UtilityVmOptions {
  /** Compute system id: no path separators, no `..`, no NUL. */
  id: string;
  os: GuestOs;
  /** LCOW 1–4, WCOW exactly 1. @default 1 */
  scsiControllers?: number;
  /** Slots pre-attached at boot (rootfs, WCOW scratch…), never handed out. @default [] */
  reservedScsiSlots?: readonly ScsiSlot[];
  vpmem?: VpmemOptions;
  /** No VPMEM for layers, VSMB NoDirectmap. @default false */
  fullyPhysicallyBacked?: boolean;
  /** Writable VSMB/Plan9 shares are denied. @default false */
  noWritableFileShares?: boolean;
  /** VSMB shares get NoDirectmap. @default false */
  vsmbNoDirectMap?: boolean;
  /** Memory of the VM in MiB. @default 1024 */
  memoryMb?: number;
  /** Virtual processors. @default 2 */
  processorCount?: number;
  /** Guest delivery through the shim's own GCS bridge; absent = through HcsModifyComputeSystem. */
  guestConnection?: GuestConnection;
  /**
   * Journal every acquired lease to this file, so that `UtilityVm.open` can recover after a shim
   * restart (docs/recovery.md). @default undefined (no journal)
   */
  journal?: JournalOptions;
  /**
   * Host PCI devices assigned at boot (`Devices.VirtualPci` of the create document, a new VMBus
   * GUID each). They stay until the VM dies; a container asking for one shares it. @default []
   */
  assignedDevices?: readonly VpciDeviceRequest[];
}

/** Validated options with every default filled in. */
export interface ResolvedUvmOptions extends UvmDeviceConfig {
  memoryMb: number;
  processorCount: number;
  guestConnection: GuestConnection | undefined;
  journal: JournalOptions | undefined;
  /** `assignedDevices` with their VMBus GUIDs. */
  bootVpciDevices: readonly VpciDevice[];
}

/** Validates `options` (INVALID_ARGUMENT on the first problem) and fills the defaults. */
export function resolveUvmOptions(options: UtilityVmOptions): ResolvedUvmOptions {
  if (options === null || typeof options !== 'object') throw invalidArgument('UtilityVm options must be an object');
  const id = validate.name(options.id, 'UVM id');
  if (id.includes('..')) throw invalidArgument(`UVM id must not contain "..": ${id}`);
  if (options.os !== 'linux' && options.os !== 'windows') throw invalidArgument(`unsupported os type: ${String(options.os)}`);
  const os = options.os;
  const scsiControllers =
    os === 'windows'
      ? validate.integer(options.scsiControllers, 'exactly 1 SCSI controller is required for WCOW; scsiControllers', 1, 1, 1)
      : validate.integer(options.scsiControllers, 'scsiControllers', 1, SCSI_CONTROLLER_GUIDS.length, 1);
  const reservedScsiSlots = (options.reservedScsiSlots ?? []).map((s) => {
    if (s === null || typeof s !== 'object') throw invalidArgument('a reserved SCSI slot must be {controller, lun}');
    const controller = validate.integer(s.controller, 'reserved slot controller', 0, scsiControllers - 1);
    const lun = validate.integer(s.lun, 'reserved slot lun', 0, SCSI_LUNS_PER_CONTROLLER - 1);
    return controller * SCSI_LUNS_PER_CONTROLLER + lun;
  });
  const vpmem = options.vpmem ?? {};
  if (vpmem === null || typeof vpmem !== 'object') throw invalidArgument('vpmem must be an object');
  if (os === 'windows' && (vpmem.count ?? 0) > 0) throw invalidArgument('VPMEM is only supported for LCOW');
  const vpmemCount = validate.integer(vpmem.count, 'vpmem.count', 0, MAX_VPMEM_COUNT, 0);
  const vpmemMaxSizeBytes = validate.integer(vpmem.maxSizeBytes, 'vpmem.maxSizeBytes', 4096, Number.MAX_SAFE_INTEGER, DEFAULT_VPMEM_SIZE_BYTES);
  if (vpmemMaxSizeBytes % 4096 !== 0) throw invalidArgument('vpmem.maxSizeBytes must be a multiple of 4096');
  if (options.guestConnection !== undefined && typeof options.guestConnection?.modifySettings !== 'function') {
    throw invalidArgument('guestConnection must implement modifySettings');
  }
  return {
    id,
    os,
    scsiControllers,
    reservedScsiSlots,
    vpmemCount,
    vpmemMaxSizeBytes,
    vpmemMultiMapping: validate.boolean(vpmem.multiMapping, 'vpmem.multiMapping', false),
    fullyPhysicallyBacked: validate.boolean(options.fullyPhysicallyBacked, 'fullyPhysicallyBacked', false),
    noWritableFileShares: validate.boolean(options.noWritableFileShares, 'noWritableFileShares', false),
    vsmbNoDirectMap: validate.boolean(options.vsmbNoDirectMap, 'vsmbNoDirectMap', false),
    memoryMb: validate.integer(options.memoryMb, 'memoryMb', 64, 1024 * 1024, 1024),
    processorCount: validate.integer(options.processorCount, 'processorCount', 1, 1024, 2),
    guestConnection: options.guestConnection,
    journal: resolveJournalOptions(options.journal),
    bootVpciDevices: resolveBootDevices(options.assignedDevices),
  };
}

/** The public facts part of resolved options. */
export function deviceConfigOf(o: ResolvedUvmOptions): UvmDeviceConfig {
  return {
    id: o.id,
    os: o.os,
    fullyPhysicallyBacked: o.fullyPhysicallyBacked,
    noWritableFileShares: o.noWritableFileShares,
    vpmemCount: o.vpmemCount,
    vpmemMaxSizeBytes: o.vpmemMaxSizeBytes,
    vpmemMultiMapping: o.vpmemMultiMapping,
    scsiControllers: o.scsiControllers,
    reservedScsiSlots: o.reservedScsiSlots,
    vsmbNoDirectMap: o.vsmbNoDirectMap,
  };
}

/** The options a journal keeps to re-open the UVM: everything but the guest connection and the journal itself. */
export function journaledUvmOptions(options: UtilityVmOptions): Record<string, unknown> {
  const { guestConnection: _connection, journal: _journal, ...rest } = options;
  return JSON.parse(JSON.stringify(rest)) as Record<string, unknown>;
}

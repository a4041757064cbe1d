import { invalidArgument } from '../core/errors.js';
import type { UvmDeviceConfig } from '../devices/device-config.js';
import type { GuestOs } from '../devices/device-types.js';
import { SCSI_CONTROLLER_GUIDS, SCSI_LUNS_PER_CONTROLLER } from '../devices/resource-paths.js';
import { validate } from '../devices/validation.js';
import { DEFAULT_VPMEM_SIZE_BYTES, MAX_VPMEM_COUNT } from '../devices/vpmem-manager.js';
import { resolveBootDevices, type VpciDevice, type VpciDeviceRequest } from '../devices/vpci-manager.js';
import { resolveJournalOptions, type JournalOptions } from '../recovery/journal.js';
import { resolveBootOptions, type ResolvedBoot, type UvmBootOptions } from './boot-options.js';
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
  /**
   * How the VM boots: `LcowBootOptions` (kernel-direct or UEFI) or `WcowBootOptions` (UEFI from the
   * OS layer). The boot files are checked before HCS is called (NOT_FOUND). Without it the
   * document has a firmware-only `Chipset` (`{"Uefi":{}}`, Microsoft's smallest VM document): HCS
   * creates and starts the VM but no guest ever boots (docs/uvm-boot.md).
   * @default undefined
   */
  boot?: UvmBootOptions;
  /** `Owner` of the compute system (hcsshim: the shim's executable name). @default 'uvm-orchestrator' */
  owner?: string;
  /** COM1 of the VM to this named pipe (`\\.\pipe\<name>`); LCOW also gets a serial console on its kernel command line. */
  console?: { pipe: string };
  /** Memory options besides the size (`memoryMb`). */
  memory?: {
    /** Memory backed by virtual (overcommittable) memory. @default true (false when fullyPhysicallyBacked) */
    allowOvercommit?: boolean;
    /** Commit memory only when the guest touches it (needs allowOvercommit). @default false */
    enableDeferredCommit?: boolean;
  };
  /** Processor options besides the count (`processorCount`). */
  processor?: {
    /** Cap, in 1/1000 of a percent of the processors (1..100000). @default none */
    limit?: number;
    /** Relative weight (1..10000). @default none */
    weight?: number;
  };
  /**
   * Extra HvSocket services (`HvSocketConfig.ServiceTable`, hcsshim's `AdditionalHyperVConfig`), by
   * service GUID, in HCS's own field names.
   */
  hvSocketServices?: Record<string, HvSocketServiceConfig>;
  /**
   * `ShouldTerminateOnLastHandleClosed`: HCS kills the VM when the last handle closes (e.g. the
   * shim dies). @default true, but false with a `journal` (recovery needs the VM to outlive the process)
   */
  terminateOnLastHandleClosed?: boolean;
  /**
   * The hook for fields this library does not model: a JSON Merge Patch (RFC 7386) applied to the
   * finished create document — objects merge key by key, `null` deletes a key, anything else
   * replaces. Journaled and logged like the other options (plain JSON only).
   * @example { VirtualMachine: { StorageQoS: { IopsMaximum: 5000 } } }
   */
  createDocumentPatch?: Record<string, unknown>;
}

/** One `HvSocketConfig.ServiceTable` entry (HCS `HvSocketServiceConfig`). */
export interface HvSocketServiceConfig {
  BindSecurityDescriptor?: string;
  ConnectSecurityDescriptor?: string;
  AllowWildcardBinds?: boolean;
  Disabled?: boolean;
}

/** Validated options with every default filled in. */
export interface ResolvedUvmOptions extends UvmDeviceConfig {
  memoryMb: number;
  processorCount: number;
  guestConnection: GuestConnection | undefined;
  journal: JournalOptions | undefined;
  /** `assignedDevices` with their VMBus GUIDs. */
  bootVpciDevices: readonly VpciDevice[];
  boot: ResolvedBoot | undefined;
  owner: string;
  consolePipe: string | undefined;
  allowOvercommit: boolean;
  enableDeferredCommit: boolean;
  processorLimit: number | undefined;
  processorWeight: number | undefined;
  hvSocketServices: Record<string, HvSocketServiceConfig>;
  terminateOnLastHandleClosed: boolean;
  createDocumentPatch: Record<string, unknown> | undefined;
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
  const reserved = (options.reservedScsiSlots ?? []).map((s) => {
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
  const boot = resolveBootOptions(os, options.boot, vpmemCount);
  // The WCOW scratch and an LCOW root VHD sit on SCSI 0:0 from boot: never handed out.
  const bootSlot = boot?.os === 'windows' || boot?.rootfs === 'vhd' ? [0] : [];
  const reservedScsiSlots = [...new Set([...bootSlot, ...reserved])];
  const fullyPhysicallyBacked = validate.boolean(options.fullyPhysicallyBacked, 'fullyPhysicallyBacked', false);
  const journal = resolveJournalOptions(options.journal);
  const memory = optionalObject(options.memory, 'memory', ['allowOvercommit', 'enableDeferredCommit']);
  const allowOvercommit = validate.boolean(memory.allowOvercommit, 'memory.allowOvercommit', !fullyPhysicallyBacked);
  if (allowOvercommit && fullyPhysicallyBacked) throw invalidArgument('memory.allowOvercommit cannot be true when fullyPhysicallyBacked');
  const enableDeferredCommit = validate.boolean(memory.enableDeferredCommit, 'memory.enableDeferredCommit', false);
  if (enableDeferredCommit && !allowOvercommit) throw invalidArgument('memory.enableDeferredCommit needs memory.allowOvercommit');
  const processor = optionalObject(options.processor, 'processor', ['limit', 'weight']);
  const consoleOptions = options.console === undefined ? undefined : optionalObject(options.console, 'console', ['pipe']);
  return {
    id,
    os,
    scsiControllers,
    reservedScsiSlots,
    vpmemCount,
    vpmemMaxSizeBytes,
    vpmemMultiMapping: validate.boolean(vpmem.multiMapping, 'vpmem.multiMapping', false),
    fullyPhysicallyBacked,
    noWritableFileShares: validate.boolean(options.noWritableFileShares, 'noWritableFileShares', false),
    vsmbNoDirectMap: validate.boolean(options.vsmbNoDirectMap, 'vsmbNoDirectMap', false),
    memoryMb: validate.integer(options.memoryMb, 'memoryMb', 64, 1024 * 1024, 1024),
    processorCount: validate.integer(options.processorCount, 'processorCount', 1, 1024, 2),
    guestConnection: options.guestConnection,
    journal,
    bootVpciDevices: resolveBootDevices(options.assignedDevices),
    boot,
    owner: options.owner === undefined ? 'uvm-orchestrator' : validate.nonEmpty(options.owner, 'owner'),
    consolePipe: consoleOptions === undefined ? undefined : namedPipe(consoleOptions.pipe, 'console.pipe'),
    allowOvercommit,
    enableDeferredCommit,
    processorLimit: processor.limit === undefined ? undefined : validate.integer(processor.limit, 'processor.limit', 1, 100_000),
    processorWeight: processor.weight === undefined ? undefined : validate.integer(processor.weight, 'processor.weight', 1, 10_000),
    hvSocketServices: resolveHvSocketServices(options.hvSocketServices),
    terminateOnLastHandleClosed: validate.boolean(options.terminateOnLastHandleClosed, 'terminateOnLastHandleClosed', journal === undefined),
    createDocumentPatch: resolvePatch(options.createDocumentPatch),
  };
}

function optionalObject(value: unknown, what: string, keys: readonly string[]): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalidArgument(`${what} must be an object`);
  for (const key of Object.keys(value)) if (!keys.includes(key)) throw invalidArgument(`${what}.${key} is not an option`);
  return value as Record<string, unknown>;
}

function namedPipe(value: unknown, what: string): string {
  const s = validate.nonEmpty(value, what);
  if (!/^\\\\[.?]\\pipe\\[^\\]/i.test(s)) throw invalidArgument(`${what} must be a named pipe path \\\\.\\pipe\\<name>: ${s}`);
  return s;
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const HVSOCKET_FIELDS: Record<string, 'string' | 'boolean'> = {
  BindSecurityDescriptor: 'string',
  ConnectSecurityDescriptor: 'string',
  AllowWildcardBinds: 'boolean',
  Disabled: 'boolean',
};

function resolveHvSocketServices(value: unknown): Record<string, HvSocketServiceConfig> {
  const table = optionalObject(value, 'hvSocketServices', Object.keys(value ?? {}));
  const out: Record<string, HvSocketServiceConfig> = {};
  for (const [id, entry] of Object.entries(table)) {
    if (!GUID.test(id)) throw invalidArgument(`hvSocketServices: ${JSON.stringify(id)} is not a service GUID`);
    const e = optionalObject(entry, `hvSocketServices[${id}]`, Object.keys(HVSOCKET_FIELDS));
    for (const [k, v] of Object.entries(e)) {
      if (typeof v !== HVSOCKET_FIELDS[k]) throw invalidArgument(`hvSocketServices[${id}].${k} must be a ${HVSOCKET_FIELDS[k]}`);
    }
    out[id.toLowerCase()] = { ...e } as HvSocketServiceConfig;
  }
  return out;
}

function resolvePatch(value: unknown): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw invalidArgument('createDocumentPatch must be a JSON object');
  let copy: unknown;
  try {
    copy = JSON.parse(JSON.stringify(value));
  } catch (err) {
    throw invalidArgument(`createDocumentPatch must be plain JSON: ${(err as Error).message}`);
  }
  return copy as Record<string, unknown>;
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

import { isAbsolute } from 'node:path';
import * as v from 'valibot';
import { invalidArgument } from '../core/errors.js';
import { checkSchema, isPlainObject, strictRecord } from '../core/schema.js';
import type { UvmDeviceConfig } from '../devices/device-config.js';
import type { GuestOs } from '../devices/device-types.js';
import { SCSI_CONTROLLER_GUIDS, SCSI_LUNS_PER_CONTROLLER } from '../devices/resource-paths.js';
import { DEFAULT_VPMEM_SIZE_BYTES, MAX_VPMEM_COUNT } from '../devices/vpmem-manager.js';
import { resolveBootDevices, type VpciDevice, type VpciDeviceRequest } from '../devices/vpci-manager.js';
import type { JournalOptions } from '../recovery/journal.js';
import {
  FileNameString,
  integerIn,
  LcowBootSchema,
  NonEmptyString,
  OptionalFlag,
  resolveLcowBoot,
  resolveWcowBoot,
  WcowBootSchema,
  type ResolvedBoot,
  type SameType,
  type UvmBootOptions,
} from './boot-options.js';
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
  /**
   * How guest requests reach the guest agent (GCS): `bridge` — the library listens on hvsocket,
   * accepts the GCS during `start()` and sends each guest half over its own bridge, as hcsshim
   * does — or `hcs` — the create document carries `VirtualMachine.GuestConnection` and HCS
   * forwards `GuestRequest`s (a legacy mode; docs/hcs.md "Guest delivery").
   * @default the orchestrator's `guestDelivery` ('bridge')
   */
  guestDelivery?: 'bridge' | 'hcs';
  /**
   * How long `start()` waits for the guest to connect (GCS bridge, LCOW entropy and log) before
   * it fails with GUEST_CONNECT_TIMEOUT and terminates the VM. @default 120000 (hcsshim's 2 minutes)
   */
  guestConnectTimeoutMs?: number;
  /**
   * Bridge mode: the deadline of each guest call over the library's GCS bridge. A call that
   * passes it fails the bridge as a whole (BRIDGE_FAILED, as hcsshim's bridge does) and the UVM is
   * unusable until terminated. @default 300000 (hcsshim's 5 minutes)
   */
  guestRpcTimeoutMs?: number;
  /**
   * WCOW, bridge delivery: give the guest UTC instead of the host's time zone (hcsshim's
   * `NoInheritHostTimezone`). Off Windows the host has no Windows time zone and UTC is given
   * anyway. @default false
   */
  noInheritHostTimeZone?: boolean;
  /** The shim's own GCS bridge (bridge mode without the library's listener). */
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
  /** Undefined until the orchestrator applies its default. */
  guestDelivery: 'bridge' | 'hcs' | undefined;
  guestConnectTimeoutMs: number | undefined;
  guestRpcTimeoutMs: number | undefined;
  noInheritHostTimeZone: boolean;
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

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The members both guest OSes share; `os`, `scsiControllers`, `vpmem` and `boot` differ. */
const commonEntries = {
  id: v.pipe(FileNameString, v.check((s) => !s.includes('..'), 'must not contain ".."')),
  reservedScsiSlots: v.optional(
    v.pipe(
      v.array(strictRecord({ controller: integerIn(0, SCSI_CONTROLLER_GUIDS.length - 1), lun: integerIn(0, SCSI_LUNS_PER_CONTROLLER - 1) })),
      v.readonly(),
    ),
  ),
  fullyPhysicallyBacked: OptionalFlag,
  noWritableFileShares: OptionalFlag,
  vsmbNoDirectMap: OptionalFlag,
  memoryMb: v.optional(integerIn(64, 1024 * 1024)),
  processorCount: v.optional(integerIn(1, 1024)),
  guestDelivery: v.optional(v.picklist(['bridge', 'hcs'], 'expected "bridge" or "hcs"')),
  guestConnectTimeoutMs: v.optional(integerIn(1, 24 * 3600 * 1000)),
  guestRpcTimeoutMs: v.optional(integerIn(1, 24 * 3600 * 1000)),
  noInheritHostTimeZone: OptionalFlag,
  guestConnection: v.optional(
    v.custom<GuestConnection>(
      (x) => x !== null && typeof x === 'object' && typeof (x as { modifySettings?: unknown }).modifySettings === 'function',
      'expected a GuestConnection (an object with a modifySettings method)',
    ),
  ),
  journal: v.optional(strictRecord({ path: v.pipe(NonEmptyString, v.check((s) => isAbsolute(s), 'expected an absolute file path')) })),
  assignedDevices: v.optional(
    v.pipe(
      v.array(
        strictRecord({
          instancePath: NonEmptyString,
          virtualFunction: v.optional(integerIn(0, 0xffff)),
          propagateNumaAffinity: OptionalFlag,
        }),
      ),
      v.readonly(),
    ),
  ),
  owner: v.optional(NonEmptyString),
  console: v.optional(
    strictRecord({ pipe: v.pipe(NonEmptyString, v.regex(/^\\\\[.?]\\pipe\\[^\\]/i, 'expected a named pipe path \\\\.\\pipe\\<name>')) }),
  ),
  memory: v.optional(strictRecord({ allowOvercommit: OptionalFlag, enableDeferredCommit: OptionalFlag })),
  processor: v.optional(strictRecord({ limit: v.optional(integerIn(1, 100_000)), weight: v.optional(integerIn(1, 10_000)) })),
  hvSocketServices: v.optional(
    v.pipe(
      v.custom<Record<string, unknown>>(isPlainObject, 'expected an object keyed by service GUID'),
      v.record(
        v.pipe(v.string(), v.regex(GUID, 'expected a service GUID')),
        strictRecord({
          BindSecurityDescriptor: v.optional(v.string('expected a string')),
          ConnectSecurityDescriptor: v.optional(v.string('expected a string')),
          AllowWildcardBinds: OptionalFlag,
          Disabled: OptionalFlag,
        }),
      ),
    ),
  ),
  terminateOnLastHandleClosed: OptionalFlag,
  createDocumentPatch: v.optional(v.custom<Record<string, unknown>>(isPlainObject, 'expected a JSON object')),
};

/**
 * The schema of `UtilityVmOptions` (docs/decisions.md D3): by `os`, since LCOW and WCOW differ in
 * their SCSI controllers, VPMEM and boot options. Unknown members are refused.
 */
export const UtilityVmOptionsSchema = v.pipe(
  v.custom<Record<string, unknown>>(isPlainObject, 'UtilityVm options must be an object'),
  v.variant(
    'os',
    [
      v.strictObject(
        {
          ...commonEntries,
          os: v.literal('linux'),
          scsiControllers: v.optional(integerIn(1, SCSI_CONTROLLER_GUIDS.length)),
          vpmem: v.optional(
            strictRecord({
              count: v.optional(integerIn(0, MAX_VPMEM_COUNT)),
              maxSizeBytes: v.optional(v.pipe(integerIn(4096, Number.MAX_SAFE_INTEGER), v.multipleOf(4096, 'expected a multiple of 4096'))),
              multiMapping: OptionalFlag,
            }),
          ),
          boot: v.optional(LcowBootSchema),
        },
      ),
      v.strictObject(
        {
          ...commonEntries,
          os: v.literal('windows'),
          scsiControllers: v.optional(integerIn(1, 1, 'WCOW has exactly 1 SCSI controller')),
          vpmem: v.optional(
            strictRecord({
              count: v.optional(integerIn(0, 0, 'VPMEM is only supported for LCOW')),
              maxSizeBytes: v.optional(v.pipe(integerIn(4096, Number.MAX_SAFE_INTEGER), v.multipleOf(4096, 'expected a multiple of 4096'))),
              multiMapping: OptionalFlag,
            }),
          ),
          boot: v.optional(WcowBootSchema),
        },
      ),
    ],
    'expected os "linux" or "windows"',
  ),
);

// Every member of UtilityVmOptions is in the schema, and what the schema accepts is a UtilityVmOptions.
type SchemaOptions = v.InferOutput<typeof UtilityVmOptionsSchema>;
const schemaIsOptions: SchemaOptions extends UtilityVmOptions ? true : false = true;
const sameMembers: SameType<keyof (SchemaOptions & { os: 'linux' }), keyof UtilityVmOptions> = true;
void schemaIsOptions;
void sameMembers;

/**
 * Checks `options` against `UtilityVmOptionsSchema` and the rules that span members; throws
 * INVALID_ARGUMENT naming the first offending field (`details.field`, e.g. `vpmem.count`;
 * NOT_SUPPORTED for a root VHD with VPMEM on) and fills the defaults.
 */
export function resolveUvmOptions(options: UtilityVmOptions): ResolvedUvmOptions {
  const o = checkSchema(UtilityVmOptionsSchema, options, 'INVALID_ARGUMENT', 'UtilityVm options');
  const os = o.os;
  const scsiControllers = o.scsiControllers ?? 1;
  const reserved = (o.reservedScsiSlots ?? []).map((s, i) => {
    if (s.controller >= scsiControllers) {
      throw invalidArgument(`reservedScsiSlots[${i}].controller: the UVM has ${scsiControllers} SCSI controller(s)`, { field: `reservedScsiSlots[${i}].controller` });
    }
    return s.controller * SCSI_LUNS_PER_CONTROLLER + s.lun;
  });
  const vpmemCount = o.vpmem?.count ?? 0;
  const boot: ResolvedBoot | undefined =
    o.boot === undefined ? undefined : o.os === 'windows' ? resolveWcowBoot(o.boot) : resolveLcowBoot(o.boot, vpmemCount);
  // The WCOW scratch and an LCOW root VHD sit on SCSI 0:0 from boot: never handed out.
  const bootSlot = boot?.os === 'windows' || boot?.rootfs === 'vhd' ? [0] : [];
  const reservedScsiSlots = [...new Set([...bootSlot, ...reserved])];
  const fullyPhysicallyBacked = o.fullyPhysicallyBacked ?? false;
  const journal = o.journal === undefined ? undefined : { path: o.journal.path };
  const allowOvercommit = o.memory?.allowOvercommit ?? !fullyPhysicallyBacked;
  if (allowOvercommit && fullyPhysicallyBacked) {
    throw invalidArgument('memory.allowOvercommit cannot be true when fullyPhysicallyBacked', { field: 'memory.allowOvercommit' });
  }
  const enableDeferredCommit = o.memory?.enableDeferredCommit ?? false;
  if (enableDeferredCommit && !allowOvercommit) {
    throw invalidArgument('memory.enableDeferredCommit needs memory.allowOvercommit', { field: 'memory.enableDeferredCommit' });
  }
  return {
    id: o.id,
    os,
    scsiControllers,
    reservedScsiSlots,
    vpmemCount,
    vpmemMaxSizeBytes: o.vpmem?.maxSizeBytes ?? DEFAULT_VPMEM_SIZE_BYTES,
    vpmemMultiMapping: o.vpmem?.multiMapping ?? false,
    fullyPhysicallyBacked,
    noWritableFileShares: o.noWritableFileShares ?? false,
    vsmbNoDirectMap: o.vsmbNoDirectMap ?? false,
    memoryMb: o.memoryMb ?? 1024,
    processorCount: o.processorCount ?? 2,
    guestConnection: o.guestConnection,
    guestDelivery: o.guestDelivery,
    guestConnectTimeoutMs: o.guestConnectTimeoutMs,
    guestRpcTimeoutMs: o.guestRpcTimeoutMs,
    noInheritHostTimeZone: o.noInheritHostTimeZone ?? false,
    journal,
    bootVpciDevices: resolveBootDevices(o.assignedDevices),
    boot,
    owner: o.owner ?? 'uvm-orchestrator',
    consolePipe: o.console?.pipe,
    allowOvercommit,
    enableDeferredCommit,
    processorLimit: o.processor?.limit,
    processorWeight: o.processor?.weight,
    hvSocketServices: Object.fromEntries(Object.entries(o.hvSocketServices ?? {}).map(([id, entry]) => [id.toLowerCase(), { ...entry }])),
    terminateOnLastHandleClosed: o.terminateOnLastHandleClosed ?? journal === undefined,
    createDocumentPatch: plainJsonCopy(o.createDocumentPatch),
  };
}

function plainJsonCopy(value: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (value === undefined) return undefined;
  try {
    return JSON.parse(JSON.stringify(value)) as Record<string, unknown>;
  } catch (err) {
    throw invalidArgument(`createDocumentPatch must be plain JSON: ${(err as Error).message}`, { field: 'createDocumentPatch' });
  }
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

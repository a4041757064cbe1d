/**
 * The public contract of the device managers of one Utility VM. Implementations live beside this
 * file (one per manager). The upper modules do not take the managers whole: each declares the
 * narrow port it uses (src/layers/layer-ports.ts, src/oci/mount-applier.ts `MountPort`,
 * src/containers/container-ports.ts), built from `Pick`s of these interfaces.
 *
 * Common rules for every `acquire`:
 * - If it rejects, nothing is attached on the caller's behalf and no lease exists.
 * - Bad input (empty/relative host path, NUL characters, a guest path that is not absolute or
 *   contains `..`, a name with separators) rejects with INVALID_ARGUMENT before any HCS call.
 * - The same key shares one resource (refcount); the last `lease.release()` removes it.
 * - `lease.release()` is idempotent and retryable (a failed removal resumes on the next call).
 */
import type { ServiceIdentifier } from 'inversify';
import type { HostStat } from '../core/host-fs.js';
import type { Lease } from '../core/lease.js';
import type { EntryState, Reservation } from '../core/refcounted-table.js';
import type { UvmError } from '../core/errors.js';

export type { Reservation } from '../core/refcounted-table.js';

/** The guest operating system of a UVM. */
export type GuestOs = 'linux' | 'windows';

/** Options of every `acquire`. */
export interface DeviceAcquireOptions {
  /** Stop waiting; a creation shared with other callers goes on for them. */
  signal?: AbortSignal;
}

/** One live resource, for `describe()`. */
export interface ResourceInfo {
  kind: 'scsi-attachment' | 'scsi-mount' | 'vsmb-share' | 'vsmb-file' | 'vpmem-device' | 'vpmem-mapping' | 'plan9-share' | 'mapped-pipe' | 'vpci-device';
  /** The refcount key, rendered. */
  key: string;
  state: EntryState;
  refCount: number;
  hostPath?: string;
  /** Where it sits: `c:l` (SCSI), device number or `device@offset` (VPMEM), share name (VSMB/Plan9). */
  slot?: string;
  guestPath?: string;
  /**
   * Set on an HCS change given up at its deadline whose outcome is not known yet (`creating` /
   * `destroying`) or whose late success is being undone (`destroying`, `teardown-failed` between
   * retries); `key` is its ResourcePath (src/hcs/late-outcomes.ts). No manager holds it.
   */
  leftover?: true;
}

/** Every manager can list what it holds, and retry what it failed to remove. */
export interface DescribableManager {
  describe(): ResourceInfo[];
  /**
   * Retries every removal that failed and that no holder may retry any more (a failed teardown, a
   * resource a failed add left behind, a release that stopped part-way in a rolled-back
   * allocation). Rejects with the failures left; call again to retry those.
   */
  retryFailedTeardowns(): Promise<void>;
}

// ---------------------------------------------------------------- SCSI

/** How HCS attaches a SCSI disk. */
export type ScsiAttachType = 'VirtualDisk' | 'PassThru' | 'ExtensibleVirtualDisk';

/** Guest mount configuration of a SCSI disk (spec §1.3). WCOW accepts none of these but `blockDev`. */
export interface ScsiMountConfig {
  /** 1-based partition (LCOW); 0/absent = whole disk. */
  partition?: number;
  encrypted?: boolean;
  options?: string[];
  ensureFilesystem?: boolean;
  filesystem?: string;
  blockDev?: boolean;
}

/** A disk to attach over SCSI, and how to mount it in the guest. */
export interface ScsiDiskRequest {
  /** VHD/VHDX path, `\\.\PHYSICALDRIVEn` (PassThru), or `evd://<type>/<path>` (ExtensibleVirtualDisk). */
  hostPath: string;
  /** Default `VirtualDisk`. */
  type?: ScsiAttachType;
  readOnly: boolean;
  /**
   * Grant this UVM access to the file (HcsGrantVmAccess) before attaching. Never for EVDs.
   * @default true for a writable virtual disk, false otherwise (see docs/devices.md "VM access")
   */
  grantVmAccess?: boolean;
  /** Guest mount; absent = attach only (no guest mount, `guestPath` undefined). */
  mount?: ScsiMountConfig;
  /** Caller-chosen guest mount path; default `/run/mounts/scsi/m<i>` or `c:\mounts\scsi\m<i>`. */
  guestPath?: string;
}

/** Where an acquired SCSI disk landed. */
export interface ScsiDisk {
  controller: number;
  lun: number;
  hostPath: string;
  readOnly: boolean;
  type: ScsiAttachType;
  /** The guest mount path (an existing mount's path when the mount was shared). */
  guestPath: string | undefined;
}

/** Refcounted SCSI disks of one UVM (attachment + optional guest mount per lease). */
export interface ScsiManager extends DescribableManager {
  acquire(request: ScsiDiskRequest, options?: DeviceAcquireOptions): Promise<Lease<ScsiDisk>>;
  /**
   * Reserves synchronously, no I/O: the slot (NO_SLOT) and the guest mount path (MOUNT_CONFLICT)
   * are taken now, so a sequence of reservations gets the same slots whatever the HCS timing.
   * `commit` makes the calls; see `Reservation` for abort and cancel.
   */
  reserve(request: ScsiDiskRequest): Reservation<ScsiDisk>;
}
/** DI token of the `ScsiManager`. */
export const ScsiManager: ServiceIdentifier<ScsiManager> = Symbol.for('uvm-orchestrator.ScsiManager');

// ---------------------------------------------------------------- VSMB (WCOW)

/** `VirtualSmbShareOptions` (all optional booleans, omitted when false). */
export interface VsmbShareOptions {
  ReadOnly?: boolean;
  ShareRead?: boolean;
  CacheIo?: boolean;
  NoOplocks?: boolean;
  TakeBackupPrivilege?: boolean;
  UseShareRootIdentity?: boolean;
  NoDirectmap?: boolean;
  NoLocks?: boolean;
  NoDirnotify?: boolean;
  VmSharedMemory?: boolean;
  RestrictFileAccess?: boolean;
  ForceLevelIIOplocks?: boolean;
  ReparseBaseLayer?: boolean;
  PseudoOplocks?: boolean;
  NonCacheIo?: boolean;
  PseudoDirnotify?: boolean;
  SingleFileMapping?: boolean;
}

/** A host directory or file to share over VSMB. */
export interface VsmbShareRequest {
  /** A directory, or a single file (then the parent directory is shared, restricted to the file). */
  hostPath: string;
  readOnly: boolean;
  /** A container layer: read-only defaults + TakeBackupPrivilege. */
  layer?: boolean;
}

/** Where an acquired VSMB share is in the guest. */
export interface VsmbShare {
  /** `s<hex>`. */
  name: string;
  hostPath: string;
  readOnly: boolean;
  /** `\\?\VMSMB\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\<name>`. */
  sharePath: string;
  /** What the container uses: the share path, or `<share path>\<file>` for a single file. */
  guestPath: string;
}

/** What a host path is (from a stat): shares reserve with it, since a file is shared through its directory. */
export type HostPathKind = 'file' | 'directory';

/** Refcounted VSMB shares of one WCOW UVM (a directory, or a single file through AllowedFiles). */
export interface VsmbManager extends DescribableManager {
  /**
   * Direct-mapped shares (no NoDirectmap) stay attached after their last release, listed by
   * `describe()` in state `kept`, until the VM exits: hcsshim never removes them while it runs.
   */
  acquire(request: VsmbShareRequest, options?: DeviceAcquireOptions): Promise<Lease<VsmbShare>>;
  /** Reserves synchronously, no I/O: the share name is taken now. */
  reserve(request: VsmbShareRequest, hostKind: HostPathKind): Reservation<VsmbShare>;
}
/** DI token of the `VsmbManager`. */
export const VsmbManager: ServiceIdentifier<VsmbManager> = Symbol.for('uvm-orchestrator.VsmbManager');

// ---------------------------------------------------------------- VPMEM (LCOW)

/** A read-only layer VHD to expose over VPMEM. */
export interface VpmemLayerRequest {
  /** A read-only layer VHD. */
  hostPath: string;
}

/** Where an acquired VPMEM layer landed. */
export interface VpmemLayer {
  device: number;
  /** Multi-mapping mode: byte offset and size of the mapping. */
  offset?: number;
  size?: number;
  hostPath: string;
  /** `/run/layers/p<n>` or `/run/layers/p<n>-<offset>-<size>`. */
  guestPath: string;
}

/** What `VpmemManager.reserve` returns: a reservation, or why VPMEM cannot take the layer. */
export type VpmemPlacement =
  | { ok: true; reservation: Reservation<VpmemLayer> }
  | { ok: false; code: 'NO_SLOT' | 'LAYER_TOO_LARGE'; error: UvmError };

/** Refcounted VPMEM devices (or mappings) of one LCOW UVM, for read-only layers. */
export interface VpmemManager extends DescribableManager {
  /** Rejects with NO_SLOT when full and LAYER_TOO_LARGE when the file exceeds a device (the fallback codes). */
  acquire(request: VpmemLayerRequest, options?: DeviceAcquireOptions): Promise<Lease<VpmemLayer>>;
  /**
   * Reserves synchronously, no I/O: shares the layer of the same host path, or places a new one
   * given its file `size` (stat first). `ok: false` when VPMEM cannot take it (NO_SLOT,
   * LAYER_TOO_LARGE); throws on bad input.
   */
  reserve(request: VpmemLayerRequest, size: number | undefined): VpmemPlacement;
  /**
   * What a stat of `hostPath` said when this UVM placed the layer it holds there (a regular file
   * and its size), or undefined when it holds none that a reservation would share (none reserved,
   * being added, live or kept; or one restored by recovery, whose size is not known). No I/O. An
   * allocation asks this before stat'ing a layer: a shared layer is not stat'ed again (hcsshim
   * likewise counts one more reference to a mapped layer without a stat).
   */
  heldFile(hostPath: string): HostStat | undefined;
}
/** DI token of the `VpmemManager`. */
export const VpmemManager: ServiceIdentifier<VpmemManager> = Symbol.for('uvm-orchestrator.VpmemManager');

// ---------------------------------------------------------------- Plan9 (LCOW)

export interface Plan9ShareRequest {
  /** A directory, or a single file (then the parent directory is shared, restricted to that file name). */
  hostPath: string;
  readOnly: boolean;
}

export interface Plan9Share {
  /** Decimal counter from "0". */
  name: string;
  hostPath: string;
  readOnly: boolean;
  /** Where the share is mounted in the guest: `/run/mounts/plan9/<name>`. */
  mountPath: string;
  /** What the container uses: the mount path, or `<mount path>/<file>` for a single file. */
  guestPath: string;
}

export interface Plan9Manager extends DescribableManager {
  acquire(request: Plan9ShareRequest, options?: DeviceAcquireOptions): Promise<Lease<Plan9Share>>;
  /** Reserves synchronously, no I/O: the share name is taken now. */
  reserve(request: Plan9ShareRequest, hostKind: HostPathKind): Reservation<Plan9Share>;
}
export const Plan9Manager: ServiceIdentifier<Plan9Manager> = Symbol.for('uvm-orchestrator.Plan9Manager');

// ---------------------------------------------------------------- Mapped pipes (WCOW)

/** A host named pipe mapped into the UVM. */
export interface MappedPipe {
  /** `\\.\pipe\<name>` on the host. */
  hostPath: string;
  /** `\\?\VMSMB\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\IPC$\<name>`. */
  guestPath: string;
}

/** Refcounted mapped named pipes of one WCOW UVM. */
export interface PipeManager extends DescribableManager {
  acquire(request: { hostPath: string }, options?: DeviceAcquireOptions): Promise<Lease<MappedPipe>>;
  /** Reserves synchronously, no I/O. */
  reserve(request: { hostPath: string }): Reservation<MappedPipe>;
}
/** DI token of the `PipeManager`. */
export const PipeManager: ServiceIdentifier<PipeManager> = Symbol.for('uvm-orchestrator.PipeManager');

// ---------------------------------------------------------------- What container allocation needs

/** Sends a guest-only request (e.g. CombinedLayers) through the UVM's guest delivery path. */
export interface GuestRequestSender {
  sendGuestRequest(request: import('../hcs/schema.js').GuestRequest, options?: DeviceAcquireOptions): Promise<void>;
}

/** Facts about a UVM that planning decisions depend on. */
export interface UvmFacts {
  id: string;
  os: GuestOs;
  /** No VPMEM for layers; VSMB NoDirectmap. */
  fullyPhysicallyBacked: boolean;
  /** Writable VSMB/Plan9 shares are denied (ACCESS_DENIED). */
  noWritableFileShares: boolean;
  /** Number of VPMEM devices (0 = VPMEM off). */
  vpmemCount: number;
  /** Bytes per VPMEM device. */
  vpmemMaxSizeBytes: number;
  vpmemMultiMapping: boolean;
  scsiControllers: number;
  /** SCSI slots taken at boot (the WCOW scratch, an LCOW root VHD, `reservedScsiSlots`): never handed out. Default 0. */
  reservedScsiSlotCount?: number;
}

/**
 * Takes what a failed rollback could not release (no holder is left to retry it): the UVM's
 * `retryFailedTeardowns()` releases it again, before the managers' own retries.
 */
export interface LeftoverSink {
  retryLater(leftover: import('../core/release-stack.js').Releasable): void;
}

/**
 * The layer plan (`planContainer`'s dry run) and the VPMEM eligibility rule the composers share.
 *
 * The plan is not a prediction: it is read off the composers' own reservations (the same tables,
 * allocators and counters an allocation commits), taken and then cancelled with no I/O in
 * between. So every slot, device, offset, share name and mount path it shows is the one an
 * allocation started next would get, and "fits" means the reservations succeeded.
 */
import type { ResourceInfo, ScsiDisk, UvmFacts, VpmemLayer, VsmbShare } from '../devices/device-types.js';
import type { SlotsPort } from './layer-ports.js';
import type { Reservation } from '../core/refcounted-table.js';
import { SCSI_LUNS_PER_CONTROLLER } from '../devices/resource-paths.js';
import { lcowRootfsPath, lcowScratchDir } from '../oci/container-paths.js';
import type { LcowLayerInput } from './layer-inputs.js';
import type { ReservedLcowLayers } from './lcow-layer-composer.js';
import type { ReservedWcowLayers } from './wcow-layer-composer.js';

/** Why a layer goes straight to SCSI without trying VPMEM. */
export type VpmemSkipReason = 'physically-backed' | 'vpmem-disabled' | 'partitioned';
/** Why a layer is on SCSI. */
export type ScsiLayerReason = VpmemSkipReason | 'no-slot' | 'too-large';

/**
 * The guard of the VPMEM → SCSI fallback (habit H12): VPMEM is tried only when the UVM is not fully
 * physically backed, has VPMEM devices, and the layer is not partitioned. Returns the reason to
 * skip VPMEM, or undefined to try it.
 */
export function vpmemSkipReason(facts: UvmFacts, layer: LcowLayerInput): VpmemSkipReason | undefined {
  if (facts.fullyPhysicallyBacked) return 'physically-backed';
  if (facts.vpmemCount <= 0) return 'vpmem-disabled';
  if ((layer.partition ?? 0) > 0) return 'partitioned';
  return undefined;
}

/** Where one LCOW layer would land, and why. */
export interface LcowLayerPlanEntry {
  /** Position in the layer list (0 = top-most). */
  index: number;
  hostPath: string;
  partition?: number;
  /** Size in bytes (stat), when VPMEM was considered. */
  sizeBytes?: number;
  target: 'vpmem' | 'scsi';
  /** For `scsi`: why not VPMEM. */
  reason?: ScsiLayerReason;
  /** The layer is already attached (refcount reuse, no new slot). */
  shared: boolean;
  /**
   * Where it lands: `c:l` on SCSI, the device `n` or `n@offset` on VPMEM. Absent when SCSI could
   * not take it (the plan does not fit) or its key was being torn down (placed after that).
   */
  slot?: string;
  /** Where it is mounted in the guest (same conditions as `slot`). */
  guestPath?: string;
}

/** Where the scratch disk would be mounted. */
export interface ScratchPlan {
  /** As given. */
  hostPath: string;
  /** Symlinks resolved: what is attached and refcounted. */
  resolvedPath: string;
  /** Already attached and mounted (shared scratch): its existing mount path is reused. */
  shared: boolean;
  /** Where the scratch is (or will be) mounted in the guest. */
  mountPath: string | undefined;
  /** `c:l`; absent when SCSI could not take it. */
  slot?: string;
}

/** Free VPMEM devices and SCSI slots after a container. */
export interface SlotsLeft {
  /** Free VPMEM devices (default mode) after this container. */
  vpmem: number;
  /** Free SCSI slots after this container: LUNs of every controller, less those taken at boot and those in use. */
  scsi: number;
}

/** LCOW layer placement: VPMEM or SCSI per layer, the scratch, slots left. */
export interface LcowLayerPlan {
  os: 'linux';
  layers: LcowLayerPlanEntry[];
  scratch: ScratchPlan;
  /** `/run/gcs/c/<id>/rootfs`. */
  rootfsPath: string;
  /** `<scratch mount>/scratch/<id>`. */
  scratchPath: string | undefined;
  slotsLeft: SlotsLeft;
  /** False when a layer or the scratch could not be reserved. */
  fits: boolean;
}

/** Where one WCOW layer folder would be shared. */
export interface WcowLayerPlanEntry {
  index: number;
  folder: string;
  /** NameToGuid(basename(folder)). */
  id: string;
  target: 'vsmb';
  shared: boolean;
  /** The share name (`s<hex>`); absent when its key was being torn down. */
  slot?: string;
  guestPath?: string;
}

/** WCOW layer placement: VSMB shares and the SCSI scratch. */
export interface WcowLayerPlan {
  os: 'windows';
  layers: WcowLayerPlanEntry[];
  scratch: ScratchPlan;
  slotsLeft: SlotsLeft;
  fits: boolean;
}

/** The placement of a container's layers (LCOW or WCOW). */
export type LayerPlan = LcowLayerPlan | WcowLayerPlan;

/** `c:l` of a SCSI disk, `n` or `n@offset` of a VPMEM layer (as `describe()` renders slots). */
export function slotOf(value: ScsiDisk | VpmemLayer): string {
  return 'lun' in value ? `${value.controller}:${value.lun}` : value.offset === undefined ? `${value.device}` : `${value.device}@${value.offset}`;
}

function placement(r: Reservation<ScsiDisk | VpmemLayer> | undefined): { slot?: string; guestPath?: string } {
  const v = r?.value;
  return v ? { slot: slotOf(v), ...(v.guestPath === undefined ? {} : { guestPath: v.guestPath }) } : {};
}

/** Free VPMEM devices and SCSI slots with every reservation held (call before cancelling). */
export function slotsLeft(uvm: SlotsPort): SlotsLeft {
  const vpmemUsed = new Set(uvm.vpmem.describe().map((i: ResourceInfo) => (i.slot ?? '').split('@')[0]));
  const scsiUsed = uvm.scsi.describe().filter((i) => i.kind === 'scsi-attachment').length;
  return {
    vpmem: Math.max(uvm.facts.vpmemCount - vpmemUsed.size, 0),
    scsi: Math.max(uvm.facts.scsiControllers * SCSI_LUNS_PER_CONTROLLER - (uvm.facts.reservedScsiSlotCount ?? 0) - scsiUsed, 0),
  };
}

/** The LCOW layer plan, read off the reservations (held: call before cancelling them). */
export function lcowLayerPlan(uvm: SlotsPort, reserved: ReservedLcowLayers, scratchVhd: string): LcowLayerPlan {
  const { prepared } = reserved;
  const layers = reserved.layers.map((r): LcowLayerPlanEntry => {
    const fit = prepared.vpmem[r.index]!;
    return {
      index: r.index,
      hostPath: r.input.hostPath,
      ...(r.input.partition ? { partition: r.input.partition } : {}),
      ...('size' in fit ? { sizeBytes: fit.size } : {}),
      target: r.target,
      ...(r.reason ? { reason: r.reason } : {}),
      shared: r.reservation?.shared ?? false,
      ...placement(r.reservation as Reservation<ScsiDisk | VpmemLayer> | undefined),
    };
  });
  const scratch = reserved.scratch;
  const mountPath = scratch?.value?.guestPath;
  return {
    os: 'linux',
    layers,
    scratch: {
      hostPath: scratchVhd,
      resolvedPath: prepared.scratchHostPath,
      shared: scratch?.shared ?? false,
      mountPath,
      ...(scratch?.value ? { slot: slotOf(scratch.value) } : {}),
    },
    rootfsPath: lcowRootfsPath(prepared.containerId),
    scratchPath: mountPath === undefined ? undefined : lcowScratchDir(mountPath, prepared.containerId),
    slotsLeft: slotsLeft(uvm),
    fits: reserved.scratch !== undefined && reserved.layers.every((r) => r.reservation !== undefined),
  };
}

/** The WCOW layer plan, read off the reservations (held: call before cancelling them). */
export function wcowLayerPlan(uvm: SlotsPort, reserved: ReservedWcowLayers, scratchVhd: string, scratchShared: boolean): WcowLayerPlan {
  const { prepared } = reserved;
  const layers = prepared.inputs.layerFolders.map((folder, index): WcowLayerPlanEntry => {
    const r: Reservation<VsmbShare> | undefined = reserved.layers[index];
    return {
      index,
      folder,
      id: prepared.ids[index]!,
      target: 'vsmb',
      shared: r?.shared ?? false,
      ...(r?.value ? { slot: r.value.name, guestPath: r.value.guestPath } : {}),
    };
  });
  const scratch = reserved.scratch;
  return {
    os: 'windows',
    layers,
    scratch: {
      hostPath: scratchVhd,
      resolvedPath: prepared.scratchHostPath,
      shared: scratchShared,
      mountPath: scratch?.value?.guestPath,
      ...(scratch?.value ? { slot: slotOf(scratch.value) } : {}),
    },
    slotsLeft: { ...slotsLeft(uvm), vpmem: 0 },
    fits: scratch !== undefined && reserved.layers.every((r) => r !== undefined),
  };
}

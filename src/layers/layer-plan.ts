/**
 * Layer decisions, computed without any HCS call (`plan` mode), and the VPMEM eligibility rule the
 * composers share with it. The only inputs are the UVM facts, the managers' `describe()` and
 * stat/realpath through the UVM's HostFs.
 *
 * The plan is a prediction: VPMEM "no slot" / "too large" are decided by the VPMEM manager at
 * acquire time; here they are estimated from the devices in use and the layer sizes. In
 * multi-mapping mode the estimate packs each layer's size class first-fit by total bytes, which
 * can be optimistic when the device allocator is fragmented.
 */
import type { ResourceInfo, UvmDevices, UvmFacts } from '../devices/device-types.js';
import { hostPaths } from '../devices/host-paths.js';
import { SCSI_LUNS_PER_CONTROLLER } from '../devices/resource-paths.js';
import { CLASS_COUNT, MAX_CLASS_SIZE, classOf, classSize } from '../devices/vpmem-buddy-allocator.js';
import { lcowContainerRoot, lcowRootfsPath, lcowScratchDir } from '../oci/container-paths.js';
import type { LcowLayerInput, LcowLayerInputs, WcowLayerInputs } from './layer-inputs.js';

const PAGE = 4096;

/** Why a layer goes straight to SCSI without trying VPMEM. */
export type VpmemSkipReason = 'physically-backed' | 'vpmem-disabled' | 'partitioned';
/** Why a layer is (predicted to be) on SCSI. */
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
}

/** Free VPMEM devices and SCSI slots after a container. */
export interface SlotsLeft {
  /** Free VPMEM devices (default mode) after this container. */
  vpmem: number;
  /** Free SCSI slots after this container (LUNs of every controller, reserved slots not counted). */
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
  /** False when the predicted SCSI attachments exceed the free slots. */
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
}

/** WCOW layer placement: VSMB shares and the SCSI scratch. */
export interface WcowLayerPlan {
  os: 'windows';
  layers: WcowLayerPlanEntry[];
  scratch: ScratchPlan;
  slotsLeft: SlotsLeft;
  fits: boolean;
}

/** The predicted placement of a container's layers (LCOW or WCOW). */
export type LayerPlan = LcowLayerPlan | WcowLayerPlan;

/**
 * The VPMEM surface a multi-mapped layer of `size` bytes takes: page-aligned, rounded up to its
 * buddy class (spec §3.3); Infinity above the largest class (4 GiB).
 */
export function vpmemMappingSize(size: number): number {
  const cls = classOf(Math.max(PAGE, Math.ceil(size / PAGE) * PAGE));
  return cls < CLASS_COUNT ? classSize(cls) : Infinity;
}

function scsiUsed(infos: ResourceInfo[]): number {
  return infos.filter((i) => i.kind === 'scsi-attachment').length;
}

function scsiAttached(infos: ResourceInfo[], hostPath: string): boolean {
  return infos.some((i) => i.kind === 'scsi-attachment' && i.hostPath === hostPath);
}

async function planScratch(uvm: UvmDevices, scratchVhd: string, defaultMount: string | undefined): Promise<ScratchPlan> {
  const resolvedPath = await uvm.hostFs.realpath(scratchVhd);
  const mount = uvm.scsi.describe().find((i) => i.kind === 'scsi-mount' && i.hostPath === resolvedPath);
  return mount
    ? { hostPath: scratchVhd, resolvedPath, shared: true, mountPath: mount.guestPath }
    : { hostPath: scratchVhd, resolvedPath, shared: false, mountPath: defaultMount };
}

/** VPMEM occupancy as the plan sees it. */
interface VpmemState {
  onVpmem: Set<string>;
  /** Default mode: free devices. Multi-mapping: bytes used per device. */
  freeDevices: number;
  usedBytes: number[];
}

async function vpmemState(uvm: UvmDevices): Promise<VpmemState> {
  const infos = uvm.vpmem.describe();
  const onVpmem = new Set(infos.flatMap((i) => (i.hostPath ? [i.hostPath] : [])));
  const usedBytes = new Array<number>(Math.max(uvm.facts.vpmemCount, 0)).fill(0);
  const devices = new Set<string>();
  for (const info of infos) {
    const device = Number.parseInt((info.slot ?? '').split('@')[0]!, 10);
    if (!Number.isInteger(device)) continue;
    devices.add(String(device));
    if (info.kind === 'vpmem-mapping' && info.hostPath && device < usedBytes.length) {
      usedBytes[device]! += vpmemMappingSize((await uvm.hostFs.stat(info.hostPath)).size);
    }
  }
  return { onVpmem, freeDevices: Math.max(uvm.facts.vpmemCount - devices.size, 0), usedBytes };
}

/** Predicts where each LCOW layer lands and where the scratch is mounted. No HCS call. */
export async function planLcowLayers(uvm: UvmDevices, inputs: LcowLayerInputs, containerId: string): Promise<LcowLayerPlan> {
  const { facts } = uvm;
  const scsiInfos = uvm.scsi.describe();
  const scratch = await planScratch(uvm, inputs.scratchVhd, lcowContainerRoot(containerId));
  const vpmem = await vpmemState(uvm);
  const newScsi = new Set<string>();
  const layers: LcowLayerPlanEntry[] = [];
  for (const [index, layer] of inputs.layers.entries()) {
    const base = { index, hostPath: layer.hostPath, ...(layer.partition ? { partition: layer.partition } : {}) };
    const toScsi = (reason: ScsiLayerReason, sizeBytes?: number): LcowLayerPlanEntry => {
      const shared = scsiAttached(scsiInfos, layer.hostPath) || newScsi.has(layer.hostPath);
      newScsi.add(layer.hostPath);
      return { ...base, ...(sizeBytes === undefined ? {} : { sizeBytes }), target: 'scsi', reason, shared };
    };
    const skip = vpmemSkipReason(facts, layer);
    if (skip) {
      layers.push(toScsi(skip));
      continue;
    }
    const sizeBytes = (await uvm.hostFs.stat(layer.hostPath)).size;
    if (vpmem.onVpmem.has(layer.hostPath)) {
      layers.push({ ...base, sizeBytes, target: 'vpmem', shared: true });
      continue;
    }
    const placed = facts.vpmemMultiMapping ? placeMapped(vpmem, sizeBytes) : placeDefault(vpmem, facts, sizeBytes);
    if (placed === 'vpmem') {
      vpmem.onVpmem.add(layer.hostPath);
      layers.push({ ...base, sizeBytes, target: 'vpmem', shared: false });
    } else layers.push(toScsi(placed, sizeBytes));
  }
  if (!scratch.shared) newScsi.add(scratch.resolvedPath);
  const attachedNow = [...newScsi].filter((p) => !scsiAttached(scsiInfos, p)).length;
  const scsiFree = facts.scsiControllers * SCSI_LUNS_PER_CONTROLLER - scsiUsed(scsiInfos);
  return {
    os: 'linux',
    layers,
    scratch,
    rootfsPath: lcowRootfsPath(containerId),
    scratchPath: scratch.mountPath === undefined ? undefined : lcowScratchDir(scratch.mountPath, containerId),
    slotsLeft: { vpmem: vpmem.freeDevices, scsi: Math.max(scsiFree - attachedNow, 0) },
    fits: attachedNow <= scsiFree,
  };
}

function placeDefault(state: VpmemState, facts: UvmFacts, size: number): 'vpmem' | 'no-slot' | 'too-large' {
  if (size > facts.vpmemMaxSizeBytes) return 'too-large';
  if (state.freeDevices <= 0) return 'no-slot';
  state.freeDevices -= 1;
  return 'vpmem';
}

/** Multi-mapping: each device is a 4 GiB buddy surface; no LAYER_TOO_LARGE in this mode (spec §3.3). */
function placeMapped(state: VpmemState, size: number): 'vpmem' | 'no-slot' {
  const cls = vpmemMappingSize(size);
  const device = state.usedBytes.findIndex((used) => used + cls <= MAX_CLASS_SIZE);
  if (device < 0) return 'no-slot';
  if (state.usedBytes[device] === 0) state.freeDevices = Math.max(state.freeDevices - 1, 0);
  state.usedBytes[device]! += cls;
  return 'vpmem';
}

/** Predicts the VSMB shares and the scratch disk of a WCOW container. No HCS call. */
export async function planWcowLayers(uvm: UvmDevices, inputs: WcowLayerInputs): Promise<WcowLayerPlan> {
  const scsiInfos = uvm.scsi.describe();
  const vsmbInfos = uvm.vsmb.describe();
  await uvm.hostFs.stat(inputs.scratchVhd);
  const scratch = await planScratch(uvm, inputs.scratchVhd, undefined);
  const layers = inputs.layerFolders.map(
    (folder, index): WcowLayerPlanEntry => ({
      index,
      folder,
      id: uvm.nameToGuid(hostPaths.basename(folder)),
      target: 'vsmb',
      shared: vsmbInfos.some((i) => i.kind === 'vsmb-share' && i.hostPath === folder),
    }),
  );
  const attachedNow = scsiAttached(scsiInfos, scratch.resolvedPath) ? 0 : 1;
  const scsiFree = uvm.facts.scsiControllers * SCSI_LUNS_PER_CONTROLLER - scsiUsed(scsiInfos);
  return {
    os: 'windows',
    layers,
    scratch,
    slotsLeft: { vpmem: 0, scsi: Math.max(scsiFree - attachedNow, 0) },
    // A WCOW scratch is the container root: it cannot be shared with another container.
    fits: attachedNow <= scsiFree && !scratch.shared,
  };
}

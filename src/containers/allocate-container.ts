/**
 * Container allocation: "give this container its rootfs and its mounts inside this UVM, rewrite
 * its OCI spec to guest paths — and later take all of it away".
 *
 * Order: validate and plan everything first (container id, layer inputs, every mount: no HCS call,
 * so bad input fails with nothing attached), then acquire the rootfs, then the mounts. Any failure
 * releases everything acquired so far.
 */
import { UvmError } from '../core/errors.js';
import { withOwn } from '../core/plain-copy.js';
import type { Logger } from '../core/logger.js';
import { oncePerPath, withKnownFiles, type HostFs } from '../core/host-fs.js';
import { ReleaseStack } from '../core/release-stack.js';
import { nextTurn } from '../core/event-loop-turns.js';
import type { DeviceAcquireOptions, GuestOs, Plan9Share, Reservation, ResourceInfo, ScsiDisk } from '../devices/device-types.js';
import type { ContainerUvm } from './container-ports.js';
import { validate } from '../devices/validation.js';
import type { ComposedLayersInfo } from '../layers/composed-layers.js';
import { hasLayerInputs, parseLayerInputs, type LayerInputs } from '../layers/layer-inputs.js';
import { lcowLayerPlan, slotsLeft, wcowLayerPlan, type LayerPlan, type SlotsLeft } from '../layers/layer-plan.js';
import { ReservationBatch, taken, type Unfit } from '../core/reservation-batch.js';
import { commitLcowLayers, prepareLcowLayers, reserveLcowLayers, type PreparedLcowLayers, type ReservedLcowLayers } from '../layers/lcow-layer-composer.js';
import { commitWcowLayers, prepareWcowLayers, reserveWcowLayers, scratchInUse, type PreparedWcowLayers, type ReservedWcowLayers } from '../layers/wcow-layer-composer.js';
import { addErrorDetails } from '../oci/container-paths.js';
import { commitMounts, reserveMounts, type ContainerEntry, type ReservedMount } from '../oci/mount-applier.js';
import { planMounts, type PlannedMount } from '../oci/mount-planner.js';
import type { OciSpec, RootfsMount } from '../oci/oci-spec.js';
import {
  acquireDevices,
  containerDocumentDevices,
  markSharedDevices,
  planDevices,
  rewriteDevices,
  type AssignedDevice,
  type ContainerDocumentDevice,
  type PlannedDevice,
} from './assigned-devices.js';
import { validateContainerId } from './container-id.js';
import { checkAllocateOptions } from './allocate-options-schema.js';
import { allInOrder, checkLayerFiles, checkMountFiles } from './host-files.js';
import { checkOciSpec } from '../oci/spec-schema.js';
import { ContainerResources, type ContainerResourcesInit } from './container-resources.js';
import { heldResource, teardownPhase, type HeldResource } from './held-resource.js';

/** Options of `allocateContainer`. */
export interface AllocateContainerOptions extends DeviceAcquireOptions {
  containerId: string;
  /** containerd rootfs mounts (`lcow-layer`, `lcow-partitioned-layer`, `windows-layer`), instead of `windows.layerFolders`. */
  rootfs?: RootfsMount[];
  /** LCOW: dm-crypt the scratch (formatted xfs). */
  encryptScratch?: boolean;
  logger?: Logger;
  /** Passed to the container's resources (`ContainerResourcesInit.onChange`): a recovery journal's hook. */
  onChange?: ContainerResourcesInit['onChange'];
  /** Passed to the container's resources (`ContainerResourcesInit.beforeCall`): the UVM's lifecycle gate. */
  beforeCall?: ContainerResourcesInit['beforeCall'];
}

/** What `allocateContainer` returns: the rewritten spec and the resources to release. */
export interface AllocatedContainer {
  /**
   * A deep copy of the input spec with `root.path` set to the guest rootfs and each attached
   * mount's `source` set to its guest path (LCOW disk mounts: `type` `none`, or `bind` for a
   * `blockdev://` destination; WCOW device mounts: `type` removed). Everything else is unchanged.
   */
  spec: OciSpec;
  resources: ContainerResources;
  /** WCOW: MappedDirectory / MappedPipe entries for the shim's container document (empty on LCOW). */
  containerEntries: ContainerEntry[];
  /** `windows.devices` assigned to the UVM over vPCI (released with `resources`), in spec order. */
  assignedDevices: AssignedDevice[];
  /** WCOW: `AssignedDevices` entries for the shim's container document (location-path and class devices). */
  containerDevices: ContainerDocumentDevice[];
}

/** How the rootfs is provided. */
export type RootfsSource =
  | { kind: 'layers'; inputs: LayerInputs }
  /** LCOW without layers: `root.path` shared through Plan9. */
  | { kind: 'plan9-root'; hostPath: string; readOnly: boolean };

/**
 * Decides the rootfs source (pure): layers when the spec or `rootfs` carry them; on LCOW without
 * layers, a Plan9 share of `root.path`; otherwise INVALID_SPEC.
 */
export function rootfsSource(os: GuestOs, spec: OciSpec, rootfs: readonly RootfsMount[] = []): RootfsSource {
  const rootPath = spec.root?.path;
  if (os === 'linux' && !hasLayerInputs(spec, rootfs) && rootPath !== undefined && rootPath !== '') {
    return { kind: 'plan9-root', hostPath: validate.hostPath(rootPath, 'root.path'), readOnly: spec.root?.readonly === true };
  }
  // Layers, or INVALID_SPEC "must pass either …" when there are none.
  return { kind: 'layers', inputs: parseLayerInputs(os, spec, rootfs) };
}

/** A UVM is required: a process-isolated container (no UVM) is `allocateProcessIsolatedContainer`'s. */
function checkUvm(uvm: ContainerUvm | undefined): asserts uvm is ContainerUvm {
  if (uvm === null || typeof uvm !== 'object' || typeof uvm.facts !== 'object' || uvm.facts === null) {
    throw new UvmError('INVALID_ARGUMENT', 'a Hyper-V container needs a UVM; mount a process-isolated container\'s layers with allocateProcessIsolatedContainer', {
      details: { field: 'uvm' },
    });
  }
}

/** Checks the spec's and the options' types (schemas: INVALID_SPEC / INVALID_ARGUMENT naming the field). */
function checkInputs(spec: unknown, options: unknown): asserts spec is OciSpec {
  checkAllocateOptions(options);
  checkOciSpec(spec);
}

/**
 * Allocates a container's rootfs and mounts in `uvm` and returns its rewritten spec and the
 * resources to release later. If this rejects, nothing is held on the container's behalf (a
 * failed rollback is attached as `details.rollbackError`).
 *
 * LCOW without layers: `root.path` is shared through Plan9 (read-only per `root.readonly`) and
 * `root.path` becomes the share's guest path, `/run/mounts/plan9/<name>` — the Plan9 manager
 * decides where a share is mounted and mounts each share once (a share cannot also be mounted at
 * `/run/gcs/c/<id>/rootfs`).
 *
 * Allocations started together begin one per turn of the event loop (a lone one at once): `spec`
 * and `options` are read in that turn and later, so they must not change until this settles.
 */
export async function allocateContainer(uvm: ContainerUvm, spec: OciSpec, options: AllocateContainerOptions): Promise<AllocatedContainer> {
  // Allocations started together begin one per turn of the event loop (src/core/event-loop-turns.ts):
  // the first validates, asks the file system and reaches its first HCS call while the others
  // wait, instead of after every allocation of the pod has been validated and has asked; the
  // completions of earlier allocations' calls are handled in between.
  await nextTurn();
  const prepared = await prepareContainer(uvm, spec, options);
  const { containerId, os, mountPlan, devicePlan } = prepared;
  const signal = options.signal;

  // Reserve everything synchronously, in hcsshim's order (layers with their fallbacks decided,
  // the scratch, then the mounts in spec order): slots and names do not depend on HCS timing.
  const { rootfs: reserved, mounts: mountReservations } = reserveContainer(uvm, prepared, new ReservationBatch());
  // Then commit: the rootfs and the mounts do not depend on each other, so everything runs at
  // once. Each half rolls back its own partial work; if one half fails, what the other half got
  // is released too.
  const rootfsTask = commitRootfs(uvm, reserved, { signal, logger: options.logger });
  const mountsTask = commitMounts(uvm, spec, mountReservations, { signal, logger: options.logger });
  // Devices come after the rootfs and mounts (hcsshim's order), so they are released first.
  const devicesTask = Promise.all([rootfsTask, mountsTask]).then(() => acquireDevices(os, uvm.vpci, devicePlan, { signal }));
  const [rootfs, applied, devices] = await Promise.allSettled([rootfsTask, mountsTask, devicesTask]);
  if (rootfs.status === 'rejected' || applied.status === 'rejected' || devices.status === 'rejected') {
    const failed = [rootfs, applied, devices].find((r): r is PromiseRejectedResult => r.status === 'rejected')!;
    const err: unknown = failed.reason;
    const rollback = new ReleaseStack<HeldResource>({ phase: teardownPhase });
    if (rootfs.status === 'fulfilled') rootfs.value.held.forEach((h) => rollback.push(h));
    if (applied.status === 'fulfilled') applied.value.held.forEach((h) => rollback.push(h));
    if (devices.status === 'fulfilled') devices.value.held.forEach((h) => rollback.push(h));
    await rollback.releaseAll().catch((rollbackError: unknown) => {
      uvm.retryLater({ release: () => rollback.releaseAll() }); // nobody else holds these leases
      addErrorDetails(err, { rollbackError });
      options.logger?.warn('rolling back a container allocation failed', { containerId, error: String(rollbackError) });
    });
    throw err;
  }

  const { rootfsPath, layers, held } = rootfs.value;
  const rewritten = applied.value.spec;
  rewritten.root = withOwn(rewritten.root ?? {}, 'path', rootfsPath);
  rewriteDevices(rewritten, devices.value.assigned);
  const resources = new ContainerResources(uvm, {
    containerId,
    rootfsPath,
    layers,
    held: [...held, ...devices.value.held],
    mounts: applied.value.mounts,
    nextMountIndex: mountPlan.length,
    logger: options.logger,
    onChange: options.onChange,
    beforeCall: options.beforeCall,
  });
  return {
    spec: rewritten,
    resources,
    containerEntries: resources.containerEntries(),
    assignedDevices: devices.value.assigned,
    containerDevices: containerDocumentDevices(devicePlan),
  };
}

/** Everything an allocation decides before its reservations: inputs validated, their I/O done. */
interface PreparedContainer {
  containerId: string;
  os: GuestOs;
  rootfs: PreparedRootfs;
  mountPlan: PlannedMount[];
  devicePlan: PlannedDevice[];
}

/** Validates and does the I/O (stats, symlinks) of `allocateContainer` and `planContainer`; no HCS call. */
async function prepareContainer(
  uvm: ContainerUvm,
  spec: OciSpec,
  options: Pick<AllocateContainerOptions, 'containerId' | 'rootfs' | 'encryptScratch'>,
): Promise<PreparedContainer> {
  checkUvm(uvm);
  const containerId = validateContainerId(options?.containerId);
  checkInputs(spec, options);
  const os = uvm.facts.os;
  const source = rootfsSource(os, spec, options.rootfs);
  // A layer is stat'ed for its kind and for its size (LCOW) or kind (WCOW): one fs.stat. A layer
  // the UVM holds on VPMEM already is not stat'ed at all: what its placement's stat said is the
  // answer (shared layers are most of a pod's paths; hcsshim does not stat a mapped layer either).
  const heldFile = uvm.vpmem.heldFile?.bind(uvm.vpmem);
  const hostFs = oncePerPath(heldFile === undefined ? uvm.hostFs : withKnownFiles(uvm.hostFs, heldFile));
  // The layers, the rootfs and the mounts need no answer from each other: their stats run at once
  // (one round trip to the file system, not one per step: under load, every container's first
  // HCS call waited for every other container's earlier steps); the first failure in this order wins.
  const [, rootfs, mountPlan] = await allInOrder([
    source.kind !== 'plan9-root' ? checkLayerFiles(hostFs, source.inputs, spec) : Promise.resolve(),
    prepareRootfs(uvm, containerId, source, { encryptScratch: options.encryptScratch, hostFs }),
    planMounts(spec, uvm.facts, containerId, hostFs, true), // checkInputs checked the spec's mounts
  ]);
  const devicePlan = planDevices(os, spec);
  await checkMountFiles(hostFs, mountPlan);
  return { containerId, os, rootfs, mountPlan, devicePlan };
}

/**
 * The reserve step of an allocation, shared by `planContainer`: the rootfs (layers with their
 * fallbacks, the scratch) then the mounts in spec order, synchronously, in `batch`.
 */
function reserveContainer(
  uvm: ContainerUvm,
  prepared: Pick<PreparedContainer, 'rootfs' | 'mountPlan'>,
  batch: ReservationBatch,
): { rootfs: ReservedRootfs; mounts: ReservedMount[] } {
  return batch.run(() => ({ rootfs: reserveRootfs(uvm, prepared.rootfs, batch), mounts: reserveMounts(uvm, prepared.mountPlan, batch) }));
}

/** The rootfs's I/O done (stats, symlinks), ready to reserve. */
type PreparedRootfs =
  | { kind: 'lcow'; prepared: PreparedLcowLayers }
  | { kind: 'wcow'; prepared: PreparedWcowLayers }
  | { kind: 'plan9-root'; hostPath: string; readOnly: boolean };

type ReservedRootfs = (
  | { kind: 'lcow'; reserved: ReservedLcowLayers }
  | { kind: 'wcow'; reserved: ReservedWcowLayers }
  /** `reservation` is undefined only in a plan batch that could not take it. */
  | { kind: 'plan9-root'; hostPath: string; reservation: Reservation<Plan9Share> | undefined }
) & { cancel(): void };

interface CommittedRootfs {
  rootfsPath: string;
  layers?: ComposedLayersInfo;
  held: HeldResource[];
}

async function prepareRootfs(
  uvm: ContainerUvm,
  containerId: string,
  source: RootfsSource,
  options: { encryptScratch?: boolean; hostFs: HostFs },
): Promise<PreparedRootfs> {
  if (source.kind === 'plan9-root') {
    await checkRootDirectory(uvm, source.hostPath);
    return source;
  }
  return source.inputs.os === 'linux'
    ? { kind: 'lcow', prepared: await prepareLcowLayers({ facts: uvm.facts, hostFs: options.hostFs }, containerId, source.inputs, options) }
    : { kind: 'wcow', prepared: await prepareWcowLayers({ facts: uvm.facts, hostFs: options.hostFs, nameToGuid: (name) => uvm.nameToGuid(name) }, containerId, source.inputs) };
}

function reserveRootfs(uvm: ContainerUvm, prepared: PreparedRootfs, batch: ReservationBatch): ReservedRootfs {
  const cancel = (): void => batch.cancel();
  switch (prepared.kind) {
    case 'lcow':
      return { kind: 'lcow', reserved: reserveLcowLayers(uvm, prepared.prepared, batch), cancel };
    case 'wcow':
      return { kind: 'wcow', reserved: reserveWcowLayers(uvm, prepared.prepared, batch), cancel };
    case 'plan9-root': {
      const reservation = batch.take(() => uvm.plan9.reserve({ hostPath: prepared.hostPath, readOnly: prepared.readOnly }, 'directory'));
      return { kind: 'plan9-root', hostPath: prepared.hostPath, reservation, cancel };
    }
  }
}

async function commitRootfs(uvm: ContainerUvm, reserved: ReservedRootfs, options: DeviceAcquireOptions & { logger?: Logger }): Promise<CommittedRootfs> {
  if (reserved.kind === 'plan9-root') {
    const lease = await taken(reserved.reservation, 'the root share').commit({ signal: options.signal });
    const rootfsPath = lease.value.guestPath;
    return { rootfsPath, held: [heldResource({ kind: 'root-share', source: 'plan9', hostPath: reserved.hostPath, guestPath: rootfsPath, lease })] };
  }
  const composed = reserved.kind === 'lcow' ? await commitLcowLayers(uvm, reserved.reserved, options) : await commitWcowLayers(uvm, reserved.reserved, options);
  return { rootfsPath: composed.info.rootfsPath, layers: composed.info, held: composed.held };
}

async function checkRootDirectory(uvm: ContainerUvm, hostPath: string): Promise<void> {
  const st = await uvm.hostFs.stat(hostPath);
  if (!st.isDirectory) throw new UvmError('INVALID_ARGUMENT', `root.path must be a directory: ${hostPath}`, { details: { field: 'root.path' } });
}

// ---------------------------------------------------------------- plan (dry run)

/** How the rootfs would be provided (planContainer). */
export type RootfsPlan =
  | { kind: 'layers'; plan: LayerPlan }
  /** The share is mounted where the Plan9 manager decides: `/run/mounts/plan9/<name>`. */
  | { kind: 'plan9-root'; hostPath: string; readOnly: boolean; shared: boolean; slot?: string; guestPath?: string };

/** Where a planned device mount lands (absent fields: not a device mount, or it could not be reserved). */
export interface MountPlacement {
  /** `c:l` (SCSI) or the share name (Plan9, VSMB); pipes have none. */
  slot?: string;
  /** The mount's rewritten source. */
  guestPath?: string;
  /** Joins a resource the UVM already has (or an earlier mount of this container): no new slot. */
  shared?: boolean;
}

/** What `planContainer` reserved for one container (and then cancelled). */
export interface ContainerPlan {
  containerId: string;
  os: GuestOs;
  rootfs: RootfsPlan;
  /** One per `spec.mounts` entry, same order, with where it lands. */
  mounts: (PlannedMount & MountPlacement)[];
  /** One per `windows.devices` entry, same order. */
  devices: PlannedDevice[];
  /** After this container's layers and SCSI mounts (the slots taken at boot are not free). */
  slotsLeft: SlotsLeft;
  /** True when every reservation succeeded: `allocateContainer` started next gets exactly these places. */
  fits: boolean;
  /** Why it does not fit: each item the UVM could not take (NO_SLOT, MOUNT_CONFLICT, TEARDOWN_FAILED). */
  unfit?: Unfit[];
  /**
   * Every manager's `describe()` while the reservations were held: what the UVM holds once the
   * container is allocated (its new resources in state `reserved`).
   */
  resources: ResourceInfo[];
}

/** Options of `planContainer`. */
export type PlanContainerOptions = Pick<AllocateContainerOptions, 'containerId' | 'rootfs' | 'encryptScratch'>;

/**
 * The dry run of `allocateContainer`: the same validation and I/O (stat/realpath through HostFs),
 * then the allocation's own reserve step on the UVM's tables, read, and cancelled — so which
 * layer lands on VPMEM or falls back to SCSI (and why), every slot, share name and mount path are
 * those an allocation started next gets. No HCS call. Rejects with the allocation's codes for bad
 * input; a UVM that cannot take the container is `fits: false` with the reasons in `unfit`.
 */
export async function planContainer(uvm: ContainerUvm, spec: OciSpec, options: PlanContainerOptions): Promise<ContainerPlan> {
  const { containerId, os, rootfs: prepared, mountPlan, devicePlan } = await prepareContainer(uvm, spec, options);
  const devices = markSharedDevices(devicePlan, uvm.vpci?.describe() ?? []);
  const scratchShared = prepared.kind === 'wcow' && scratchInUse(uvm, prepared.prepared.scratchHostPath);
  const batch = new ReservationBatch('plan');
  const reserved = reserveContainer(uvm, { rootfs: prepared, mountPlan }, batch);
  try {
    const r = reserved.rootfs;
    let rootfs: RootfsPlan;
    if (r.kind === 'plan9-root') {
      const share = r.reservation?.value;
      rootfs = {
        kind: 'plan9-root',
        hostPath: r.hostPath,
        readOnly: prepared.kind === 'plan9-root' && prepared.readOnly,
        shared: r.reservation?.shared ?? false,
        ...(share ? { slot: share.name, guestPath: share.guestPath } : {}),
      };
    } else {
      const scratchVhd = r.reserved.prepared.inputs.scratchVhd;
      rootfs = { kind: 'layers', plan: r.kind === 'lcow' ? lcowLayerPlan(uvm, r.reserved, scratchVhd) : wcowLayerPlan(uvm, r.reserved, scratchVhd, scratchShared) };
    }
    const mounts = reserved.mounts.map((m) => ({ ...m.planned, ...mountPlacement(m) }));
    const resources = [uvm.scsi, uvm.vpmem, uvm.plan9, uvm.vsmb, uvm.pipes].flatMap((manager) => manager.describe());
    const fits = batch.unfit.length === 0;
    return { containerId, os, rootfs, mounts, devices, slotsLeft: slotsLeft(uvm), fits, ...(fits ? {} : { unfit: batch.unfit }), resources };
  } finally {
    batch.cancel();
  }
}

function mountPlacement(m: ReservedMount): MountPlacement {
  const r = m.reservation;
  const v = r?.value as Partial<ScsiDisk & { name: string }> | undefined;
  if (!r || !v) return {};
  const slot = v.lun !== undefined ? `${v.controller}:${v.lun}` : v.name;
  return { ...(slot === undefined ? {} : { slot }), ...(v.guestPath === undefined ? {} : { guestPath: v.guestPath }), shared: r.shared };
}

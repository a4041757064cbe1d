/**
 * Container allocation: "give this container its rootfs and its mounts inside this UVM, rewrite
 * its OCI spec to guest paths — and later take all of it away".
 *
 * Order: validate and plan everything first (container id, layer inputs, every mount: no HCS call,
 * so bad input fails with nothing attached), then acquire the rootfs, then the mounts. Any failure
 * releases everything acquired so far.
 */
import { UvmError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { ReleaseStack } from '../core/release-stack.js';
import type { DeviceAcquireOptions, GuestOs, Plan9Share, Reservation, UvmDevices } from '../devices/device-types.js';
import { validate } from '../devices/validation.js';
import type { ComposedLayersInfo } from '../layers/composed-layers.js';
import { hasLayerInputs, parseLayerInputs, type LayerInputs } from '../layers/layer-inputs.js';
import { SCSI_LUNS_PER_CONTROLLER } from '../devices/resource-paths.js';
import { planLcowLayers, planWcowLayers, type LayerPlan, type SlotsLeft } from '../layers/layer-plan.js';
import { commitLcowLayers, prepareLcowLayers, reserveLcowLayers, type PreparedLcowLayers, type ReservedLcowLayers } from '../layers/lcow-layer-composer.js';
import { commitWcowLayers, prepareWcowLayers, reserveWcowLayers, type PreparedWcowLayers, type ReservedWcowLayers } from '../layers/wcow-layer-composer.js';
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
import { checkLayerFiles, checkMountFiles } from './host-files.js';
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
function checkUvm(uvm: UvmDevices | undefined): asserts uvm is UvmDevices {
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
 */
export async function allocateContainer(uvm: UvmDevices, spec: OciSpec, options: AllocateContainerOptions): Promise<AllocatedContainer> {
  checkUvm(uvm);
  const containerId = validateContainerId(options?.containerId);
  checkInputs(spec, options);
  const os = uvm.facts.os;
  const source = rootfsSource(os, spec, options.rootfs);
  if (source.kind !== 'plan9-root') await checkLayerFiles(uvm.hostFs, source.inputs, spec);
  const prepared = await prepareRootfs(uvm, containerId, source, options);
  const mountPlan = await planMounts(spec, uvm.facts, containerId, uvm.hostFs);
  const devicePlan = planDevices(os, spec);
  await checkMountFiles(uvm.hostFs, mountPlan);
  const signal = options.signal;

  // Reserve everything synchronously, in hcsshim's order (layers with their fallbacks decided,
  // the scratch, then the mounts in spec order): slots and names do not depend on HCS timing.
  const reserved = reserveRootfs(uvm, prepared);
  let mountReservations: ReservedMount[];
  try {
    mountReservations = reserveMounts(uvm, mountPlan);
  } catch (err) {
    reserved.cancel();
    throw err;
  }
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
  rewritten.root = { ...(rewritten.root ?? {}), path: rootfsPath };
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

/** The rootfs's I/O done (stats, symlinks), ready to reserve. */
type PreparedRootfs =
  | { kind: 'lcow'; prepared: PreparedLcowLayers }
  | { kind: 'wcow'; prepared: PreparedWcowLayers }
  | { kind: 'plan9-root'; hostPath: string; readOnly: boolean };

type ReservedRootfs = (
  | { kind: 'lcow'; reserved: ReservedLcowLayers }
  | { kind: 'wcow'; reserved: ReservedWcowLayers }
  | { kind: 'plan9-root'; hostPath: string; reservation: Reservation<Plan9Share> }
) & { cancel(): void };

interface CommittedRootfs {
  rootfsPath: string;
  layers?: ComposedLayersInfo;
  held: HeldResource[];
}

async function prepareRootfs(uvm: UvmDevices, containerId: string, source: RootfsSource, options: { encryptScratch?: boolean }): Promise<PreparedRootfs> {
  if (source.kind === 'plan9-root') {
    await checkRootDirectory(uvm, source.hostPath);
    return source;
  }
  return source.inputs.os === 'linux'
    ? { kind: 'lcow', prepared: await prepareLcowLayers(uvm, containerId, source.inputs, options) }
    : { kind: 'wcow', prepared: await prepareWcowLayers(uvm, containerId, source.inputs) };
}

function reserveRootfs(uvm: UvmDevices, prepared: PreparedRootfs): ReservedRootfs {
  switch (prepared.kind) {
    case 'lcow': {
      const reserved = reserveLcowLayers(uvm, prepared.prepared);
      return { kind: 'lcow', reserved, cancel: () => reserved.cancel() };
    }
    case 'wcow': {
      const reserved = reserveWcowLayers(uvm, prepared.prepared);
      return { kind: 'wcow', reserved, cancel: () => reserved.cancel() };
    }
    case 'plan9-root': {
      const reservation = uvm.plan9.reserve({ hostPath: prepared.hostPath, readOnly: prepared.readOnly }, 'directory');
      return { kind: 'plan9-root', hostPath: prepared.hostPath, reservation, cancel: () => reservation.cancel() };
    }
  }
}

async function commitRootfs(uvm: UvmDevices, reserved: ReservedRootfs, options: DeviceAcquireOptions & { logger?: Logger }): Promise<CommittedRootfs> {
  if (reserved.kind === 'plan9-root') {
    const lease = await reserved.reservation.commit({ signal: options.signal });
    const rootfsPath = lease.value.guestPath;
    return { rootfsPath, held: [heldResource({ kind: 'root-share', source: 'plan9', hostPath: reserved.hostPath, guestPath: rootfsPath, lease })] };
  }
  const composed = reserved.kind === 'lcow' ? await commitLcowLayers(uvm, reserved.reserved, options) : await commitWcowLayers(uvm, reserved.reserved, options);
  return { rootfsPath: composed.info.rootfsPath, layers: composed.info, held: composed.held };
}

async function checkRootDirectory(uvm: UvmDevices, hostPath: string): Promise<void> {
  const st = await uvm.hostFs.stat(hostPath);
  if (!st.isDirectory) throw new UvmError('INVALID_ARGUMENT', `root.path must be a directory: ${hostPath}`, { details: { field: 'root.path' } });
}

// ---------------------------------------------------------------- plan (dry run)

/** How the rootfs would be provided (planContainer). */
export type RootfsPlan =
  | { kind: 'layers'; plan: LayerPlan }
  /** The share is mounted where the Plan9 manager decides: `/run/mounts/plan9/<name>`. */
  | { kind: 'plan9-root'; hostPath: string; readOnly: boolean; shared: boolean };

/** What `planContainer` predicts for one container. */
export interface ContainerPlan {
  containerId: string;
  os: GuestOs;
  rootfs: RootfsPlan;
  /** One per `spec.mounts` entry, same order. */
  mounts: PlannedMount[];
  /** One per `windows.devices` entry, same order. */
  devices: PlannedDevice[];
  /** After this container's layers and SCSI mounts (an estimate: reserved slots are not known). */
  slotsLeft: SlotsLeft;
  /** False when the predicted SCSI attachments exceed the free slots, or a WCOW scratch is already in use. */
  fits: boolean;
}

/** Options of `planContainer`. */
export type PlanContainerOptions = Pick<AllocateContainerOptions, 'containerId' | 'rootfs'>;

/**
 * The dry run of `allocateContainer`: the same validation and decisions — which layer lands on
 * VPMEM, which falls back to SCSI and why, where each mount goes, slots left — with no HCS call
 * (only HostFs stat/realpath and the managers' `describe()`). Rejects with the same codes.
 */
export async function planContainer(uvm: UvmDevices, spec: OciSpec, options: PlanContainerOptions): Promise<ContainerPlan> {
  checkUvm(uvm);
  const containerId = validateContainerId(options?.containerId);
  checkInputs(spec, options);
  const os = uvm.facts.os;
  const source = rootfsSource(os, spec, options.rootfs);
  let rootfs: RootfsPlan;
  let slotsLeft: SlotsLeft;
  let fits: boolean;
  if (source.kind === 'layers') {
    await checkLayerFiles(uvm.hostFs, source.inputs, spec);
    const plan = source.inputs.os === 'linux' ? await planLcowLayers(uvm, source.inputs, containerId) : await planWcowLayers(uvm, source.inputs);
    rootfs = { kind: 'layers', plan };
    slotsLeft = { ...plan.slotsLeft };
    fits = plan.fits;
  } else {
    await checkRootDirectory(uvm, source.hostPath);
    const shared = uvm.plan9.describe().some((i) => i.hostPath === source.hostPath);
    rootfs = { ...source, shared };
    const scsiUsed = uvm.scsi.describe().filter((i) => i.kind === 'scsi-attachment').length;
    slotsLeft = {
      vpmem: Math.max(uvm.facts.vpmemCount - new Set(uvm.vpmem.describe().map((i) => (i.slot ?? '').split('@')[0])).size, 0),
      scsi: Math.max(uvm.facts.scsiControllers * SCSI_LUNS_PER_CONTROLLER - scsiUsed, 0),
    };
    fits = true;
  }
  const mounts = await planMounts(spec, uvm.facts, containerId, uvm.hostFs);
  const devices = markSharedDevices(planDevices(os, spec), uvm.vpci?.describe() ?? []);
  await checkMountFiles(uvm.hostFs, mounts);
  const attached = new Set(uvm.scsi.describe().flatMap((i) => (i.kind === 'scsi-attachment' && i.hostPath ? [i.hostPath] : [])));
  const newDisks = new Set(
    mounts.flatMap((m) => (m.kind === 'device' && m.device === 'scsi' && !attached.has(m.request.hostPath) ? [m.request.hostPath] : [])),
  );
  if (newDisks.size > slotsLeft.scsi) fits = false;
  slotsLeft.scsi = Math.max(slotsLeft.scsi - newDisks.size, 0);
  return { containerId, os, rootfs, mounts, devices, slotsLeft, fits };
}

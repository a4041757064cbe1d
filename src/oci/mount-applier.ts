/**
 * OCI mount conversion, doing half (habit H17): acquires what `planMounts` planned, through the
 * device managers, and rewrites each mount to its guest path. One generic path for every device:
 * a table maps the planned device to its manager's `acquire`, and every lease value has a
 * `guestPath` that becomes the mount's source.
 */
import type { Logger } from '../core/logger.js';
import type { Lease } from '../core/lease.js';
import { ReleaseStack } from '../core/release-stack.js';
import type {
  DeviceAcquireOptions,
  HostPathKind,
  LeftoverSink,
  PipeManager,
  Plan9Manager,
  Reservation,
  ScsiManager,
  VsmbManager,
} from '../devices/device-types.js';
import { heldResource, teardownPhase, type HeldResource } from '../containers/held-resource.js';
import { PIPE_PREFIX, addErrorDetails } from './container-paths.js';
import type { DeviceMount, MountDevice, PlannedMount } from './mount-planner.js';
import type { OciMount, OciSpec } from './oci-spec.js';
import { UvmError } from '../core/errors.js';
import { ReservationBatch } from '../core/reservation-batch.js';
import { plainCopy } from '../core/plain-copy.js';

/** `MappedDirectory` of a WCOW container document (HCS schema). */
export interface ContainerMappedDirectory {
  HostPath: string;
  ContainerPath: string;
  ReadOnly?: boolean;
}

/** `MappedPipe` of a WCOW container document (HCS schema). */
export interface ContainerMappedPipe {
  ContainerPipeName: string;
  HostPath: string;
}

/** A WCOW container document entry (MappedDirectory or MappedPipe) for the shim's container. */
export type ContainerEntry = { kind: 'mapped-directory'; value: ContainerMappedDirectory } | { kind: 'mapped-pipe'; value: ContainerMappedPipe };

/** One applied mount. */
export interface AppliedMount {
  index: number;
  planned: PlannedMount;
  /** The mount with `source` (and `type`) rewritten for the guest; a copy. */
  mount: OciMount;
  /** The lease behind it (device mounts only). */
  held?: HeldResource;
  /** WCOW: the MappedDirectory / MappedPipe entry the shim's container document needs. */
  containerEntry?: ContainerEntry;
}

export interface ApplyMountsOptions extends DeviceAcquireOptions {
  logger?: Logger;
}

/** What reserving mounts uses from one UVM: the reservation of each device a mount can take. */
export interface MountDevicesPort {
  readonly scsi: Pick<ScsiManager, 'reserve'>;
  readonly plan9: Pick<Plan9Manager, 'reserve'>;
  readonly vsmb: Pick<VsmbManager, 'reserve'>;
  readonly pipes: Pick<PipeManager, 'reserve'>;
}

/** What mount conversion uses from one UVM: the reservations, and where a failed rollback goes. */
export interface MountPort extends MountDevicesPort, LeftoverSink {}

type GuestPathLease = Lease<{ guestPath: string | undefined }>;
type GuestPathReservation = Reservation<{ guestPath: string | undefined }>;

/** How each device is reserved: the only per-device code of the applier. */
const RESERVE: { [D in MountDevice]: (uvm: MountDevicesPort, planned: DeviceMount & { device: D }) => GuestPathReservation } = {
  scsi: (uvm, planned) => uvm.scsi.reserve(planned.request),
  plan9: (uvm, planned) => uvm.plan9.reserve(planned.request, hostKindOf(planned)),
  vsmb: (uvm, planned) => uvm.vsmb.reserve(planned.request, hostKindOf(planned)),
  pipe: (uvm, planned) => uvm.pipes.reserve(planned.request),
};

function hostKindOf(planned: DeviceMount): HostPathKind {
  if (planned.hostKind === undefined) throw new UvmError('INVALID_STATE', `mount ${planned.index}: a share was planned without a stat of its source`);
  return planned.hostKind;
}

function reserveDevice(uvm: MountDevicesPort, planned: DeviceMount): GuestPathReservation {
  const reserve = RESERVE[planned.device] as (uvm: MountDevicesPort, planned: DeviceMount) => GuestPathReservation;
  return reserve(uvm, planned);
}

/** One planned mount with its device reserved (device mounts), ready to commit. */
export interface ReservedMount {
  planned: PlannedMount;
  reservation?: GuestPathReservation;
}

/**
 * Reserves one planned mount synchronously (no I/O) in `batch`: its slot or share name is taken
 * now. Errors carry `details.mountIndex` (e.g. NO_SLOT or MOUNT_CONFLICT); in a plan batch such a
 * mount is left unreserved (see `ReservationBatch`).
 */
export function reserveMount(uvm: MountDevicesPort, planned: PlannedMount, batch: ReservationBatch = new ReservationBatch()): ReservedMount {
  if (planned.kind !== 'device') return { planned };
  const reservation = batch.take(() => {
    try {
      return reserveDevice(uvm, planned);
    } catch (err) {
      throw addErrorDetails(err, { mountIndex: planned.index, destination: planned.mount.destination });
    }
  });
  return { planned, reservation };
}

/**
 * Reserves every planned mount in order (spec order: slots and names follow it), in `batch`. If
 * one throws, everything the batch took is cancelled and the error (with `details.mountIndex`)
 * is thrown.
 */
export function reserveMounts(uvm: MountDevicesPort, plan: readonly PlannedMount[], batch: ReservationBatch = new ReservationBatch()): ReservedMount[] {
  return batch.run(() => plan.map((planned) => reserveMount(uvm, planned, batch)));
}

function rewrite(mount: OciMount, source: string, type: string | undefined): OciMount {
  const copy: OciMount = plainCopy(mount);
  copy.source = source;
  if (type === undefined) delete copy.type;
  else copy.type = type;
  return copy;
}

function containerEntry(planned: PlannedMount, guestPath: string, readOnly: boolean): ContainerEntry | undefined {
  if (planned.kind === 'keep' || planned.containerEntry === undefined) return undefined;
  const destination = planned.mount.destination;
  if (planned.containerEntry === 'mapped-pipe') {
    return { kind: 'mapped-pipe', value: { ContainerPipeName: destination.slice(PIPE_PREFIX.length), HostPath: guestPath } };
  }
  return {
    kind: 'mapped-directory',
    value: { HostPath: guestPath, ContainerPath: destination, ...(readOnly ? { ReadOnly: true } : {}) },
  };
}

/** Applies one planned mount (reserve, then commit). If it rejects, nothing was acquired for it. */
export async function applyMount(uvm: MountDevicesPort, planned: PlannedMount, options: DeviceAcquireOptions = {}): Promise<AppliedMount> {
  return commitMount(reserveMount(uvm, planned), options);
}

/** Commits one reserved mount. If it rejects, nothing was acquired for it. */
export async function commitMount(reserved: ReservedMount, options: DeviceAcquireOptions = {}): Promise<AppliedMount> {
  const { planned } = reserved;
  const { index } = planned;
  switch (planned.kind) {
    case 'keep':
      return { index, planned, mount: plainCopy(planned.mount) };
    case 'guest':
      return {
        index,
        planned,
        mount: rewrite(planned.mount, planned.source, undefined),
        containerEntry: containerEntry(planned, planned.source, planned.readOnly),
      };
    case 'device': {
      const lease: GuestPathLease = await reserved.reservation!.commit(options);
      const guestPath = lease.value.guestPath;
      if (guestPath === undefined) {
        await lease.release();
        throw new UvmError('INVALID_STATE', `the ${planned.device} manager returned no guest path for mount ${index}`);
      }
      const held = heldResource({
        kind: 'mount',
        source: planned.device,
        hostPath: planned.request.hostPath,
        guestPath,
        destination: planned.mount.destination,
        mountIndex: index,
        lease,
      });
      return {
        index,
        planned,
        mount: rewrite(planned.mount, guestPath, planned.rewriteType),
        held,
        containerEntry: containerEntry(planned, guestPath, planned.readOnly),
      };
    }
  }
}

/** What `applyMountPlan` returns. */
export interface AppliedMountPlan {
  /** A deep copy of the spec with `mounts` rewritten (one per planned mount, same order); nothing else changed. */
  spec: OciSpec;
  /** Each mount as applied, in order. */
  mounts: AppliedMount[];
  /** The leases, in acquisition order (device mounts only). */
  held: HeldResource[];
}

/**
 * Applies a plan of `spec`'s mounts (all at once; results in plan order) and returns the rewritten copy of the spec and
 * the leases. On failure, releases what this call acquired (newest first) and rejects with the
 * failing mount's error, `details.mountIndex` set; a failed rollback is attached as
 * `details.rollbackError` (the leases left behind stay retryable in their managers).
 */
export async function applyMountPlan(
  uvm: MountPort,
  spec: OciSpec,
  plan: readonly PlannedMount[],
  options: ApplyMountsOptions = {},
): Promise<AppliedMountPlan> {
  return commitMounts(uvm, spec, reserveMounts(uvm, plan), options);
}

/**
 * Commits reserved mounts (all at once; results in plan order); see `applyMountPlan`. An abort
 * before the calls cancels every reservation.
 */
export async function commitMounts(
  uvm: LeftoverSink,
  spec: OciSpec,
  reserved: readonly ReservedMount[],
  options: ApplyMountsOptions = {},
): Promise<AppliedMountPlan> {
  const plan = reserved.map((r) => r.planned);
  // Mounts are independent: commit them all at once. Slots and names were taken at reservation
  // and results are kept in plan order, so nothing depends on which call finishes first.
  const results = await Promise.allSettled(reserved.map((r) => commitMount(r, options)));
  const mounts: AppliedMount[] = [];
  const stack = new ReleaseStack<HeldResource>({ phase: teardownPhase });
  let failure: { reason: unknown; planned: PlannedMount } | undefined;
  results.forEach((result, i) => {
    if (result.status === 'rejected') failure ??= { reason: result.reason, planned: plan[i]! };
    else {
      if (result.value.held) stack.push(result.value.held);
      mounts.push(result.value);
    }
  });
  if (failure) {
    const err = failure.reason;
    addErrorDetails(err, { mountIndex: failure.planned.index, destination: failure.planned.mount.destination });
    await stack.releaseAll().catch((rollbackError: unknown) => {
      uvm.retryLater({ release: () => stack.releaseAll() }); // nobody else holds these leases
      addErrorDetails(err, { rollbackError });
      options.logger?.warn('rolling back mounts failed', { error: String(rollbackError) });
    });
    throw err;
  }
  const rewritten = plainCopy(spec);
  if (Array.isArray(spec.mounts) || mounts.length > 0) rewritten.mounts = mounts.map((m) => plainCopy(m.mount));
  return { spec: rewritten, mounts, held: [...stack.items()] };
}

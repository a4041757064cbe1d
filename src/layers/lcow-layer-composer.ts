/**
 * LCOW layer composition (spec §5.2): read-only layers on VPMEM with a SCSI fallback, the scratch
 * on SCSI, and a guest overlay (`CombinedLayers`) at `/run/gcs/c/<id>/rootfs`.
 */
import { UvmError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Lease } from '../core/lease.js';
import type { DeviceAcquireOptions, Reservation, ScsiDisk, VpmemLayer } from '../devices/device-types.js';
import type { CompositionPort, LcowLayersPort } from './layer-ports.js';
import { ReservationBatch, taken } from '../core/reservation-batch.js';
import { validateContainerId } from '../containers/container-id.js';
import { lcowContainerRoot, lcowRootfsPath, lcowScratchDir } from '../oci/container-paths.js';
import type { HeldResource } from '../containers/held-resource.js';
import { assertGuestOs, commitComposition, type ComposedLayer, type ComposedLayers, type CompositionBuilder } from './composed-layers.js';
import type { LcowLayerInput, LcowLayerInputs } from './layer-inputs.js';
import { vpmemSkipReason, type ScsiLayerReason, type VpmemSkipReason } from './layer-plan.js';

export interface ComposeLcowLayersOptions extends DeviceAcquireOptions {
  /** dm-crypt the scratch (then formatted xfs instead of ext4). */
  encryptScratch?: boolean;
  logger?: Logger;
}

/** Mount options of a read-only layer on SCSI. */
export const SCSI_LAYER_OPTIONS: readonly string[] = ['ro'];

/** What composing needs from I/O, gathered before anything is reserved. */
export interface PreparedLcowLayers {
  containerId: string;
  inputs: LcowLayerInputs;
  /** The scratch with symlinks resolved. */
  scratchHostPath: string;
  /** Per layer: its file size when VPMEM may take it, else why VPMEM is skipped. */
  vpmem: ({ size: number } | { skip: VpmemSkipReason })[];
  encrypted: boolean;
}

/** One layer's reservation: VPMEM, or SCSI with the reason. */
export interface ReservedLcowLayer {
  index: number;
  input: LcowLayerInput;
  target: 'vpmem' | 'scsi';
  reason?: ScsiLayerReason;
  /** Undefined only in a plan batch, for a layer SCSI could not take (see `ReservationBatch`). */
  reservation: Reservation<VpmemLayer> | Reservation<ScsiDisk> | undefined;
}

/** A container's layer and scratch reservations, taken in hcsshim's order. */
export interface ReservedLcowLayers {
  prepared: PreparedLcowLayers;
  layers: ReservedLcowLayer[];
  /** Undefined only in a plan batch, when SCSI could not take the scratch. */
  scratch: Reservation<ScsiDisk> | undefined;
  /** Cancels every reservation of the batch (before commit only). */
  cancel(): void;
}

/**
 * The I/O half of placement: validates, resolves the scratch's symlinks (a shared scratch is a
 * symlink to the sandbox container's VHDX: the target is attached, so SCSI's refcount sees one
 * disk) and stats each layer VPMEM may take. NOT_FOUND for a missing scratch or layer; no HCS call.
 */
export async function prepareLcowLayers(
  uvm: Pick<LcowLayersPort, 'facts' | 'hostFs'>,
  containerId: string,
  inputs: LcowLayerInputs,
  options: { encryptScratch?: boolean } = {},
): Promise<PreparedLcowLayers> {
  validateContainerId(containerId);
  assertGuestOs(uvm, 'linux', 'LCOW layers');
  // The scratch's realpath and the layers' stats at once (the scratch's failure first).
  const scratch = uvm.hostFs.realpath(inputs.scratchVhd);
  const fits: Promise<{ size: number } | { skip: VpmemSkipReason }>[] = [];
  for (const layer of inputs.layers) fits.push(vpmemFit(uvm, layer));
  const sizes = Promise.all(fits);
  sizes.catch(() => undefined); // reported after the scratch's failure, if any
  const scratchHostPath = await scratch;
  const vpmem = await sizes;
  return { containerId, inputs, scratchHostPath, vpmem, encrypted: options.encryptScratch === true };
}

/** A layer's size when VPMEM may take it (stat'ed), else why VPMEM is skipped. */
async function vpmemFit(uvm: Pick<LcowLayersPort, 'facts' | 'hostFs'>, layer: LcowLayerInput): Promise<{ size: number } | { skip: VpmemSkipReason }> {
  const skip = vpmemSkipReason(uvm.facts, layer);
  if (skip) return { skip };
  return { size: (await uvm.hostFs.stat(layer.hostPath)).size };
}

/**
 * Reserves a container's layers and scratch synchronously, in hcsshim's order: each read-only
 * layer top-most first (VPMEM, or SCSI when VPMEM is skipped or cannot take it — decided now,
 * from the sizes and free slots), then the scratch. Slots, devices, offsets and mount paths are
 * therefore the same whatever the HCS timing. Throws (with nothing reserved) on NO_SLOT etc.
 */
export function reserveLcowLayers(uvm: Pick<LcowLayersPort, 'scsi' | 'vpmem'>, prepared: PreparedLcowLayers, batch: ReservationBatch = new ReservationBatch()): ReservedLcowLayers {
  return batch.run(() => {
    const layers = prepared.inputs.layers.map((input, index): ReservedLcowLayer => {
      const fit = prepared.vpmem[index]!;
      let reason: ScsiLayerReason;
      if ('size' in fit) {
        const placed = uvm.vpmem.reserve({ hostPath: input.hostPath }, fit.size);
        if (placed.ok) return { index, input, target: 'vpmem', reservation: batch.add(placed.reservation) };
        reason = placed.code === 'NO_SLOT' ? 'no-slot' : 'too-large';
      } else reason = fit.skip;
      // Read-only layers get no per-VM grant: they rely on the VM-group grant (spec §0.4).
      const reservation = batch.take(() =>
        uvm.scsi.reserve({
          hostPath: input.hostPath,
          readOnly: true,
          mount: input.partition ? { partition: input.partition, options: [...SCSI_LAYER_OPTIONS] } : { options: [...SCSI_LAYER_OPTIONS] },
        }),
      );
      return { index, input, target: 'scsi', reason, reservation };
    });
    const encrypted = prepared.encrypted;
    const scratch = batch.take(() =>
      uvm.scsi.reserve({
        hostPath: prepared.scratchHostPath,
        readOnly: false,
        grantVmAccess: true,
        guestPath: lcowContainerRoot(prepared.containerId),
        mount: encrypted ? { encrypted, ensureFilesystem: true, filesystem: 'xfs' } : { ensureFilesystem: true, filesystem: 'ext4' },
      }),
    );
    return { prepared, layers, scratch, cancel: () => batch.cancel() };
  });
}

/**
 * Attaches what `reserveLcowLayers` reserved (all at once) and composes the rootfs in the guest
 * (CombinedLayers after every layer and the scratch are mounted). If this rejects, everything was
 * released (a failed rollback is attached to the error as `details.rollbackError`). An abort
 * before the first call cancels the reservations; after it, the calls in flight finish and are
 * undone (CombinedLayers Remove first).
 */
export async function commitLcowLayers(uvm: CompositionPort, reserved: ReservedLcowLayers, options: ComposeLcowLayersOptions = {}): Promise<ComposedLayers> {
  const { containerId } = reserved.prepared;
  const { signal } = options;
  const rootfsPath = lcowRootfsPath(containerId);
  const compose = async (builder: CompositionBuilder): Promise<ComposedLayers> => {
    const commitOptions = { signal };
    const pieces: Promise<Piece>[] = [];
    for (const r of reserved.layers) pieces.push(commitLayer(r, commitOptions));
    pieces.push(commitScratch(reserved, commitOptions));
    const attached = await builder.holdAll<Piece>(pieces, heldOf);
    const scratch = attached.pop()!.held.lease as Lease<ScsiDisk>;
    const layers: ComposedLayer[] = [];
    const paths: { Path: string }[] = [];
    let unmounted = false;
    for (const a of attached) {
      layers.push(a.layer!);
      paths.push({ Path: a.layer!.guestPath });
      if (a.layer!.guestPath === '') unmounted = true;
    }
    const scratchMountPath = scratch.value.guestPath;
    if (scratchMountPath === undefined || unmounted) {
      throw new UvmError('INVALID_STATE', 'a layer or the scratch disk has no guest mount path');
    }
    const scratchPath = lcowScratchDir(scratchMountPath, containerId);
    await builder.combineLayers(
      {
        ContainerID: containerId,
        ContainerRootPath: rootfsPath,
        Layers: paths,
        ScratchPath: scratchPath,
      },
      { ContainerRootPath: rootfsPath },
      { signal },
    );
    const scratchHostPath = reserved.prepared.scratchHostPath;
    return builder.finish({ os: 'linux', containerId, rootfsPath, scratchMountPath, scratchPath, scratchHostPath, layers });
  };
  return commitComposition(uvm, reserved, options, compose, rootfsPath);
}

/** A layer or the scratch, acquired but not yet held by the composition. */
interface Piece {
  layer?: ComposedLayer;
  held: Omit<HeldResource, 'release'>;
}

// The steps of a commit are module functions, not closures made per container: V8 keeps a
// function's optimized code only while a function object using it is alive, and closures made for
// one container are gone at the next full collection — the next pod would run them unoptimized
// and compile them again (docs/performance.md, "Session 11").

/** Commits one reserved layer: its piece, or the commit's failure. */
async function commitLayer(r: ReservedLcowLayer, options: { signal?: AbortSignal }): Promise<Piece> {
  // (the name is built only when the layer was not reserved)
  const reservation = (r.reservation ?? taken(r.reservation, `layer ${r.index}`)) as Reservation<VpmemLayer | ScsiDisk>;
  const lease = await reservation.commit(options);
  const guestPath = lease.value.guestPath;
  // Built field by field in the order reports print (no intermediate spread objects).
  const layer = { index: r.index, hostPath: r.input.hostPath } as ComposedLayer;
  if (r.input.partition) layer.partition = r.input.partition;
  layer.target = r.target;
  if (r.reason) layer.reason = r.reason;
  layer.guestPath = guestPath ?? '';
  return { layer, held: { kind: 'layer', source: r.target, hostPath: r.input.hostPath, guestPath, lease } };
}

/** Commits the reserved scratch: its piece, or the commit's failure. */
async function commitScratch(reserved: ReservedLcowLayers, options: { signal?: AbortSignal }): Promise<Piece> {
  const lease = await taken(reserved.scratch, 'the scratch').commit(options);
  return { held: { kind: 'scratch', source: 'scsi', hostPath: reserved.prepared.scratchHostPath, guestPath: lease.value.guestPath, lease } };
}

const heldOf = (piece: Piece): Piece['held'] => piece.held;

/**
 * Attaches a LCOW container's layers and scratch and composes its rootfs in the guest: prepare
 * (I/O), reserve (synchronous, hcsshim's slots), commit (HCS calls, concurrent).
 *
 * If this rejects, everything it acquired was released (a failed rollback is attached to the
 * error as `details.rollbackError`). A missing scratch fails with NOT_FOUND and no HCS call.
 */
export async function composeLcowLayers(
  uvm: LcowLayersPort,
  containerId: string,
  inputs: LcowLayerInputs,
  options: ComposeLcowLayersOptions = {},
): Promise<ComposedLayers> {
  const prepared = await prepareLcowLayers(uvm, containerId, inputs, options);
  return commitLcowLayers(uvm, reserveLcowLayers(uvm, prepared), options);
}

/**
 * LCOW layer composition (spec §5.2): read-only layers on VPMEM with a SCSI fallback, the scratch
 * on SCSI, and a guest overlay (`CombinedLayers`) at `/run/gcs/c/<id>/rootfs`.
 */
import { UvmError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Lease } from '../core/lease.js';
import type { DeviceAcquireOptions, ScsiDisk, UvmDevices } from '../devices/device-types.js';
import { validateContainerId } from '../containers/container-id.js';
import { lcowContainerRoot, lcowRootfsPath, lcowScratchDir } from '../oci/container-paths.js';
import type { HeldResource } from '../containers/held-resource.js';
import { assertGuestOs, CompositionBuilder, type ComposedLayer, type ComposedLayers } from './composed-layers.js';
import type { LcowLayerInput, LcowLayerInputs } from './layer-inputs.js';
import { vpmemSkipReason, type ScsiLayerReason } from './layer-plan.js';

export interface ComposeLcowLayersOptions extends DeviceAcquireOptions {
  /** dm-crypt the scratch (then formatted xfs instead of ext4). */
  encryptScratch?: boolean;
  logger?: Logger;
  /**
   * Called once every slot the composition takes is decided (VPMEM layers placed, the scratch and
   * any SCSI fallback issued), so a caller issuing its own acquisitions after it gets the same
   * slots whatever the timing, while everything runs concurrently. Not called if composing fails
   * before that (the caller also waits for the composition to settle).
   */
  onIssued?: () => void;
}

/** Mount options of a read-only layer on SCSI. */
export const SCSI_LAYER_OPTIONS: readonly string[] = ['ro'];

/** A layer or the scratch, acquired but not yet held by the composition. */
interface Piece {
  layer?: ComposedLayer;
  held: Omit<HeldResource, 'release'>;
}

/** A layer attached but not yet held by the composition. */
interface AttachedLayer extends Piece {
  layer: ComposedLayer;
  held: Omit<HeldResource, 'release'>;
}

/**
 * Places one read-only layer. `decided` is called once its placement is fixed: VPMEM took it, or
 * its SCSI fallback acquisition has been issued (or it failed), so a caller can issue later
 * acquisitions after it and keep slot assignment independent of timing.
 */
async function addLayer(
  uvm: UvmDevices,
  layer: LcowLayerInput,
  index: number,
  options: DeviceAcquireOptions,
  decided: () => void,
): Promise<AttachedLayer> {
  try {
    return await placeLayer(uvm, layer, index, options, decided);
  } finally {
    decided();
  }
}

async function placeLayer(
  uvm: UvmDevices,
  layer: LcowLayerInput,
  index: number,
  options: DeviceAcquireOptions,
  decided: () => void,
): Promise<AttachedLayer> {
  const base = { index, hostPath: layer.hostPath, ...(layer.partition ? { partition: layer.partition } : {}) };
  let reason: ScsiLayerReason | undefined = vpmemSkipReason(uvm.facts, layer);
  if (reason === undefined) {
    try {
      const lease = await uvm.vpmem.acquire({ hostPath: layer.hostPath }, options);
      decided();
      const guestPath = lease.value.guestPath;
      return {
        layer: { ...base, target: 'vpmem', guestPath },
        held: { kind: 'layer', source: 'vpmem', hostPath: layer.hostPath, guestPath, lease },
      };
    } catch (err) {
      // Fallback precondition: a rejected acquire left nothing attached (manager contract), and
      // these two codes mean "VPMEM cannot take this layer" — SCSI can. Anything else aborts.
      if (!UvmError.is(err, 'NO_SLOT', 'LAYER_TOO_LARGE')) throw err;
      reason = err.code === 'NO_SLOT' ? 'no-slot' : 'too-large';
    }
  }
  // Read-only layers get no per-VM grant: they rely on the VM-group grant (spec §0.4).
  const acquiring = uvm.scsi.acquire(
    {
      hostPath: layer.hostPath,
      readOnly: true,
      mount: { ...(layer.partition ? { partition: layer.partition } : {}), options: [...SCSI_LAYER_OPTIONS] },
    },
    options,
  );
  decided();
  const lease = await acquiring;
  const guestPath = lease.value.guestPath;
  if (guestPath === undefined) {
    await lease.release();
    throw new UvmError('INVALID_STATE', `SCSI layer ${layer.hostPath} has no guest mount path`);
  }
  return {
    layer: { ...base, target: 'scsi', reason, guestPath },
    held: { kind: 'layer', source: 'scsi', hostPath: layer.hostPath, guestPath, lease },
  };
}

/**
 * Attaches a LCOW container's layers and scratch and composes its rootfs in the guest.
 *
 * If this rejects, everything it acquired was released (a failed rollback is attached to the
 * error as `details.rollbackError`). The scratch path is resolved (symlinks) before anything is
 * attached, so a missing scratch fails with NOT_FOUND and no HCS call.
 */
export async function composeLcowLayers(
  uvm: UvmDevices,
  containerId: string,
  inputs: LcowLayerInputs,
  options: ComposeLcowLayersOptions = {},
): Promise<ComposedLayers> {
  validateContainerId(containerId);
  assertGuestOs(uvm, 'linux', 'LCOW layers');
  const acquireOptions = { signal: options.signal };
  // A shared scratch is a symlink to the sandbox container's VHDX: attach the target, so the SCSI
  // manager's refcount sees one disk and returns its existing mount.
  const scratchHostPath = await uvm.hostFs.realpath(inputs.scratchVhd);
  const builder = new CompositionBuilder(uvm, options.logger);
  try {
    // The layers and the scratch do not depend on each other: acquire them all at once. The
    // managers hand out slots and names in call order and the leases are held in input order,
    // so placement, rollback and teardown do not depend on which HCS call finishes first.
    const encrypted = options.encryptScratch === true;
    const scratchRequest = {
      hostPath: scratchHostPath,
      readOnly: false,
      grantVmAccess: true,
      guestPath: lcowContainerRoot(containerId),
      mount: { ...(encrypted ? { encrypted } : {}), ensureFilesystem: true, filesystem: encrypted ? 'xfs' : 'ext4' },
    };
    // Issued in hcsshim's order (layers top-most first, then the scratch): slots follow call order.
    const decisions: Promise<void>[] = [];
    const layerPieces = inputs.layers.map((layer, index) => {
      let decided!: () => void;
      decisions.push(new Promise<void>((resolve) => (decided = resolve)));
      return addLayer(uvm, layer, index, acquireOptions, decided);
    });
    const scratchPiece = uvm.scsi.acquire(scratchRequest, acquireOptions).then(
      (lease): Piece => ({ held: { kind: 'scratch', source: 'scsi', hostPath: scratchHostPath, guestPath: lease.value.guestPath, lease } }),
    );
    const pending = builder.holdAll<Piece>([...layerPieces, scratchPiece], (piece) => piece.held);
    // Mounts go after every layer's placement is fixed (VPMEM layers, the scratch, SCSI fallbacks).
    void Promise.all(decisions).then(() => options.onIssued?.());
    const attached = await pending;
    const scratch = attached.pop()!.held.lease as Lease<ScsiDisk>;
    const layers = attached.map((a) => a.layer!);
    const scratchMountPath = scratch.value.guestPath;
    if (scratchMountPath === undefined) throw new UvmError('INVALID_STATE', 'the scratch disk has no guest mount path');

    const rootfsPath = lcowRootfsPath(containerId);
    const scratchPath = lcowScratchDir(scratchMountPath, containerId);
    await builder.combineLayers(
      {
        ContainerID: containerId,
        ContainerRootPath: rootfsPath,
        Layers: layers.map((l) => ({ Path: l.guestPath })),
        ScratchPath: scratchPath,
      },
      { ContainerRootPath: rootfsPath },
      acquireOptions,
    );
    return builder.finish({ os: 'linux', containerId, rootfsPath, scratchMountPath, scratchPath, scratchHostPath, layers });
  } catch (err) {
    throw await builder.rollback(err);
  }
}

/**
 * WCOW (Hyper-V, WCIFS) layer composition (spec §5.3): read-only layer folders as VSMB shares,
 * the scratch on SCSI at `c:\mounts\scsi\m<i>` (the container root), and `CombinedLayers`.
 */
import { UvmError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { HeldResource } from '../containers/held-resource.js';
import type { DeviceAcquireOptions, HostPathKind, Reservation, ScsiDisk, VsmbShare } from '../devices/device-types.js';
import type { CompositionPort, WcowLayersPort } from './layer-ports.js';
import { ReservationBatch, taken } from '../core/reservation-batch.js';
import { statKind } from '../devices/validation.js';
import { hostPaths } from '../devices/host-paths.js';
import { validateContainerId } from '../containers/container-id.js';
import { assertGuestOs, commitComposition, type ComposedLayer, type ComposedLayers, type CompositionBuilder } from './composed-layers.js';
import type { WcowLayerInputs } from './layer-inputs.js';

export interface ComposeWcowLayersOptions extends DeviceAcquireOptions {
  logger?: Logger;
}

/** What composing needs from I/O, gathered before anything is reserved. */
export interface PreparedWcowLayers {
  containerId: string;
  inputs: WcowLayerInputs;
  /** NameToGuid(basename(folder)) per layer. */
  ids: string[];
  /** What each layer folder is (a stat). */
  kinds: HostPathKind[];
  scratchHostPath: string;
}

/** A container's layer shares and scratch reservations, in hcsshim's order. */
export interface ReservedWcowLayers {
  prepared: PreparedWcowLayers;
  /** Undefined entries (and scratch) only in a plan batch, for what could not be reserved. */
  layers: (Reservation<VsmbShare> | undefined)[];
  scratch: Reservation<ScsiDisk> | undefined;
  cancel(): void;
}

/**
 * The I/O half: validates, resolves the scratch's symlinks and stats the layer folders. No HCS
 * call. (The scratch is the container's root, so it cannot be shared: reserving a scratch that is
 * already attached is MOUNT_CONFLICT.)
 */
export async function prepareWcowLayers(uvm: Pick<WcowLayersPort, 'facts' | 'hostFs' | 'nameToGuid'>, containerId: string, inputs: WcowLayerInputs): Promise<PreparedWcowLayers> {
  validateContainerId(containerId);
  assertGuestOs(uvm, 'windows', 'WCOW layers');
  const ids = inputs.layerFolders.map((folder) => uvm.nameToGuid(hostPaths.basename(folder)));
  const scratchHostPath = await uvm.hostFs.realpath(inputs.scratchVhd);
  const kinds = await Promise.all(inputs.layerFolders.map(async (folder) => statKind(uvm.hostFs, folder, 'VSMB host path')));
  return { containerId, inputs, ids, kinds, scratchHostPath };
}

/** True when the scratch is attached already (then it cannot be this container's root). */
export function scratchInUse(uvm: { readonly scsi: Pick<WcowLayersPort['scsi'], 'describe'> }, scratchHostPath: string): boolean {
  return uvm.scsi.describe().some((i) => i.kind === 'scsi-attachment' && i.hostPath === scratchHostPath);
}

/** Reserves the layer shares (in order) then the scratch, synchronously, in `batch`. */
export function reserveWcowLayers(uvm: Pick<WcowLayersPort, 'scsi' | 'vsmb'>, prepared: PreparedWcowLayers, batch: ReservationBatch = new ReservationBatch()): ReservedWcowLayers {
  const { scratchHostPath, containerId } = prepared;
  return batch.run(() => {
    // Checked first, so that a conflicting scratch takes no share name.
    const scratchFree = batch.take(() => {
      if (scratchInUse(uvm, scratchHostPath)) {
        throw new UvmError('MOUNT_CONFLICT', `the scratch ${scratchHostPath} is already attached: a WCOW scratch cannot be shared`, {
          details: { hostPath: scratchHostPath, containerId },
        });
      }
      return { cancel: () => undefined };
    });
    const layers = prepared.inputs.layerFolders.map((folder, i) =>
      batch.take(() => uvm.vsmb.reserve({ hostPath: folder, readOnly: true, layer: true }, prepared.kinds[i]!)),
    );
    // No mount options for the scratch: the manager mounts it at c:\mounts\scsi\m<i>.
    const scratch = scratchFree && batch.take(() => uvm.scsi.reserve({ hostPath: scratchHostPath, readOnly: false, grantVmAccess: true, mount: {} }));
    return { prepared, layers, scratch, cancel: () => batch.cancel() };
  });
}

/** Commits the reservations (all at once) and sends CombinedLayers; see `commitLcowLayers`. */
export async function commitWcowLayers(uvm: CompositionPort, reserved: ReservedWcowLayers, options: ComposeWcowLayersOptions = {}): Promise<ComposedLayers> {
  const { containerId, inputs, ids, scratchHostPath } = reserved.prepared;
  const { signal } = options;
  const compose = async (builder: CompositionBuilder): Promise<ComposedLayers> => {
    const pieces = await builder.holdAll<Omit<HeldResource, 'release'>>(
      [
        ...reserved.layers.map((r, index) =>
          taken(r, `layer ${index}`).commit({ signal }).then((lease) => ({
            kind: 'layer' as const,
            source: 'vsmb' as const,
            hostPath: inputs.layerFolders[index]!,
            guestPath: lease.value.guestPath,
            lease,
          })),
        ),
        taken(reserved.scratch, 'the scratch')
          .commit({ signal })
          .then((lease) => ({ kind: 'scratch' as const, source: 'scsi' as const, hostPath: scratchHostPath, guestPath: lease.value.guestPath, lease })),
      ],
      (held) => held,
    );
    const scratch = pieces.pop()!;
    const layers: ComposedLayer[] = pieces.map((share, index) => ({
      index,
      hostPath: inputs.layerFolders[index]!,
      target: 'vsmb',
      guestPath: share.guestPath!,
      id: ids[index]!,
    }));
    const rootfsPath = scratch.guestPath;
    if (rootfsPath === undefined) throw new UvmError('INVALID_STATE', 'the scratch disk has no guest mount path');

    // FilterType (WCIFS) is left out: older inbox GCS rejects the field (hcsshim #2714).
    await builder.combineLayers(
      { ContainerRootPath: rootfsPath, Layers: layers.map((l) => ({ Id: l.id, Path: l.guestPath })) },
      { ContainerRootPath: rootfsPath },
      { signal },
    );
    return builder.finish({ os: 'windows', containerId, rootfsPath, scratchMountPath: rootfsPath, scratchHostPath, layers });
  };
  // The overlay's root is the scratch's mount path, placed when it was reserved.
  return commitComposition(uvm, reserved, options, compose, reserved.scratch?.value?.guestPath);
}

/**
 * Attaches a WCOW container's layers and scratch and combines them in the guest: prepare,
 * reserve (synchronous, hcsshim's names and slots), commit. If this rejects, everything it
 * acquired was released.
 */
export async function composeWcowLayers(
  uvm: WcowLayersPort,
  containerId: string,
  inputs: WcowLayerInputs,
  options: ComposeWcowLayersOptions = {},
): Promise<ComposedLayers> {
  const prepared = await prepareWcowLayers(uvm, containerId, inputs);
  return commitWcowLayers(uvm, reserveWcowLayers(uvm, prepared), options);
}

/**
 * WCOW (Hyper-V, WCIFS) layer composition (spec §5.3): read-only layer folders as VSMB shares,
 * the scratch on SCSI at `c:\mounts\scsi\m<i>` (the container root), and `CombinedLayers`.
 */
import { UvmError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { HeldResource } from '../containers/held-resource.js';
import type { DeviceAcquireOptions, UvmDevices } from '../devices/device-types.js';
import { hostPaths } from '../devices/host-paths.js';
import { validateContainerId } from '../containers/container-id.js';
import { assertGuestOs, CompositionBuilder, type ComposedLayer, type ComposedLayers } from './composed-layers.js';
import type { WcowLayerInputs } from './layer-inputs.js';

export interface ComposeWcowLayersOptions extends DeviceAcquireOptions {
  logger?: Logger;
  /** See ComposeLcowLayersOptions.onIssued. */
  onIssued?: () => void;
}

/**
 * Attaches a WCOW container's layers and scratch and combines them in the guest.
 *
 * The scratch is the container's root, so it cannot be shared: a scratch that is already attached
 * (after symlinks are resolved) is MOUNT_CONFLICT. If this rejects, everything it acquired was
 * released.
 */
export async function composeWcowLayers(
  uvm: UvmDevices,
  containerId: string,
  inputs: WcowLayerInputs,
  options: ComposeWcowLayersOptions = {},
): Promise<ComposedLayers> {
  validateContainerId(containerId);
  assertGuestOs(uvm, 'windows', 'WCOW layers');
  const acquireOptions: DeviceAcquireOptions = { signal: options.signal };
  const ids = inputs.layerFolders.map((folder) => uvm.nameToGuid(hostPaths.basename(folder)));
  const scratchHostPath = await uvm.hostFs.realpath(inputs.scratchVhd);
  if (uvm.scsi.describe().some((i) => i.kind === 'scsi-attachment' && i.hostPath === scratchHostPath)) {
    throw new UvmError('MOUNT_CONFLICT', `the scratch ${scratchHostPath} is already attached: a WCOW scratch cannot be shared`, {
      details: { hostPath: scratchHostPath, containerId },
    });
  }
  const builder = new CompositionBuilder(uvm, options.logger);
  try {
    // The layer shares and the scratch do not depend on each other: acquire them all at once
    // (names and slots are still handed out in call order; leases are held in input order).
    // No mount options for the scratch: the manager mounts it at c:\mounts\scsi\m<i>.
    const pending = builder.holdAll<Omit<HeldResource, 'release'>>(
      [
        ...inputs.layerFolders.map((folder) =>
          uvm.vsmb.acquire({ hostPath: folder, readOnly: true, layer: true }, acquireOptions).then((lease) => ({
            kind: 'layer' as const,
            source: 'vsmb' as const,
            hostPath: folder,
            guestPath: lease.value.guestPath,
            lease,
          })),
        ),
        uvm.scsi
          .acquire({ hostPath: scratchHostPath, readOnly: false, grantVmAccess: true, mount: {} }, acquireOptions)
          .then((lease) => ({ kind: 'scratch' as const, source: 'scsi' as const, hostPath: scratchHostPath, guestPath: lease.value.guestPath, lease })),
      ],
      (held) => held,
    );
    options.onIssued?.();
    const pieces = await pending;
    const scratch = pieces.pop()!;
    const shares = pieces;
    const layers: ComposedLayer[] = shares.map((share, index) => ({
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
      acquireOptions,
    );
    return builder.finish({ os: 'windows', containerId, rootfsPath, scratchMountPath: rootfsPath, scratchHostPath, layers });
  } catch (err) {
    throw await builder.rollback(err);
  }
}

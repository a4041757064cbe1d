import { inject, injectable } from 'inversify';
import { UvmError } from '../core/errors.js';
import { HostFs, type HostStat } from '../core/host-fs.js';
import type { Lease } from '../core/lease.js';
import { Logger } from '../core/logger.js';
import { THEN_ONE_MORE } from './call-priority.js';
import { commitCombinedAdd } from './combined-add.js';
import { DeviceCore } from './device-core.js';
import { UvmDeviceConfig } from './device-config.js';
import type { DeviceAcquireOptions, ResourceInfo, VpmemLayer, VpmemLayerRequest, VpmemManager, VpmemPlacement } from './device-types.js';
import { newRemovalProgress, ResourceDelivery, type RemovalProgress } from './guest-delivery.js';
import { guestPaths } from './guest-paths.js';
import { resourcePaths } from './resource-paths.js';
import { validate } from './validation.js';
import { VpmemSlots, type VpmemPlace } from './vpmem-placement.js';
import { guestRequest, hostRequest, type HostRequest } from './wire-requests.js';
import type { GuestRequest } from '../hcs/schema.js';

export { MAX_MAPPINGS_PER_DEVICE } from './vpmem-placement.js';

/** Most VPMEM devices a UVM can have. */
export const MAX_VPMEM_COUNT = 128;
/** Default (and largest useful) bytes per device. */
export const DEFAULT_VPMEM_SIZE_BYTES = 4 * 1024 * 1024 * 1024;

/** A validated request: the layer and its file size (from a stat; needed only to place a new one). */
interface VpmemParams {
  readonly hostPath: string;
  readonly size: number | undefined;
}

/** One VPMEM layer: a whole device (default mode) or a mapping on a device (multi-mapping). */
interface VpmemEntry extends VpmemPlace {
  readonly hostPath: string;
  /** The file's size when this UVM placed it (undefined for a layer restored by recovery). */
  readonly fileSize: number | undefined;
  readonly guestPath: string;
  readonly host: HostRequest;
  readonly guest: GuestRequest;
  readonly guestRemoval: GuestRequest;
  /** Where a removal stopped (shared with a failed add's compensation). */
  readonly removal: RemovalProgress;
}

/**
 * VPMEM layers of one LCOW UVM (spec §3), refcounted by host path; a policy over the device core
 * (device-core.ts) whose placement is `VpmemSlots` (vpmem-placement.ts).
 *
 * Default mode: one layer per device `n` at `/run/layers/p<n>`; LAYER_TOO_LARGE when the file
 * exceeds `vpmemMaxSizeBytes`, NO_SLOT when every device is used (or VPMEM is off). Multi-mapping
 * mode: layers packed by a buddy allocator per device, at `Devices/<n>/Mappings/<offset>` and
 * `/run/layers/p<n>-<offset>-<size>`; NO_SLOT when nothing fits (including layers over 4 GiB).
 * Host and guest halves travel in one combined document (or host then guest through a
 * GuestConnection).
 */
@injectable()
export class VpmemManagerImpl implements VpmemManager {
  readonly #core: DeviceCore<VpmemParams, VpmemEntry, VpmemLayer>;

  constructor(
    @inject(UvmDeviceConfig) private readonly config: UvmDeviceConfig,
    @inject(ResourceDelivery) private readonly delivery: ResourceDelivery,
    @inject(HostFs) private readonly hostFs: HostFs,
    @inject(Logger) logger: Logger,
  ) {
    const slots = new VpmemSlots(config.vpmemCount, config.vpmemMaxSizeBytes, config.vpmemMultiMapping);
    this.#core = new DeviceCore(config.id, config.os, logger, {
      device: 'vpmem',
      kind: config.vpmemMultiMapping ? 'vpmem-mapping' : 'vpmem-device',
      only: { os: 'linux', message: 'VPMEM is only supported in LCOW UVMs' },
      key: (p) => p.hostPath,
      place: ({ hostPath, size }) => {
        if (size === undefined) throw new UvmError('INVALID_STATE', `the size of ${hostPath} is needed to place it on VPMEM`);
        const e = entry(hostPath, slots.place(hostPath, size), size);
        // Something may still be attached after a failed Add: the slot is kept for a retried teardown.
        return { value: e, commit: () => commitCombinedAdd(this.delivery, { host: e.host, guest: e.guest, removal: e.removal, guestRemoval: e.guestRemoval, value: e, options: THEN_ONE_MORE }) };
      },
      remove: (e) => this.delivery.removeCombined(hostRequest(e.host.ResourcePath, 'Remove'), e.guestRemoval, e.removal),
      forget: (e) => slots.free(e),
      where: (e) => ({ hostPath: e.hostPath, slot: e.offset === undefined ? `${e.device}` : `${e.device}@${e.offset}`, guestPath: e.guestPath }),
      view: layerOf,
      claim: ({ hostPath }, layer) => {
        if (!slots.claim(layer)) {
          throw new UvmError('RECOVERY_FAILED', `layer ${hostPath}: the recorded VPMEM place does not fit this UVM`, { details: { hostPath } });
        }
        return entry(hostPath, layer.offset === undefined ? { device: layer.device } : { device: layer.device, offset: layer.offset, size: layer.size ?? 0 }, undefined);
      },
      conflict: (e, layer) => (e.device === layer.device && e.offset === layer.offset ? undefined : `layer ${e.hostPath} is recorded on two VPMEM places`),
    });
  }

  async acquire(request: VpmemLayerRequest, options: DeviceAcquireOptions = {}): Promise<Lease<VpmemLayer>> {
    const hostPath = this.#validate(request);
    if (this.config.vpmemCount === 0) throw noVpmem(hostPath);
    const placed = this.reserve({ hostPath }, (await this.hostFs.stat(hostPath)).size);
    if (!placed.ok) throw placed.error;
    return placed.reservation.commit(options);
  }

  /**
   * Reserves a layer synchronously (no I/O): an existing layer of the same host path is shared;
   * a new one is placed now on the lowest free device (or mapping), given the file's `size`
   * (stat it first). A layer VPMEM cannot take is a result, not an exception: `ok: false` with
   * NO_SLOT or LAYER_TOO_LARGE (the SCSI-fallback codes). Bad input throws.
   */
  reserve(request: VpmemLayerRequest, size: number | undefined): VpmemPlacement {
    const hostPath = this.#validate(request);
    try {
      if (this.config.vpmemCount === 0) throw noVpmem(hostPath);
      return { ok: true, reservation: this.#core.reserve({ hostPath, size }) };
    } catch (err) {
      if (UvmError.is(err, 'NO_SLOT', 'LAYER_TOO_LARGE')) return { ok: false, code: err.code as 'NO_SLOT' | 'LAYER_TOO_LARGE', error: err };
      throw err;
    }
  }

  heldFile(hostPath: string): HostStat | undefined {
    const size = typeof hostPath === 'string' ? this.#core.sharable({ hostPath, size: undefined })?.fileSize : undefined;
    // Placed from a stat of a regular file (HCS attached it, or is attaching it, as a VHD).
    return size === undefined ? undefined : { isFile: true, isDirectory: false, size };
  }

  #validate(request: VpmemLayerRequest): string {
    return validate.hostPath(this.#core.check(request, 'VPMEM request').hostPath, 'VPMEM host path');
  }

  /**
   * Recovery (docs/recovery.md): rebuilds the lease of a layer that is already on
   * `layer.device` (at `layer.offset` in multi-mapping mode), with no HCS call: a new entry claims
   * that device (or buddy region); an existing one must be at the same place (RECOVERY_FAILED).
   */
  async adopt(request: VpmemLayerRequest, layer: VpmemLayer): Promise<Lease<VpmemLayer>> {
    return this.#core.adopt({ hostPath: this.#validate(request), size: undefined }, layer);
  }

  describe(): ResourceInfo[] {
    return this.#core.describe();
  }

  retryFailedTeardowns(): Promise<void> {
    return this.#core.retryFailedTeardowns();
  }
}

function noVpmem(hostPath: string): UvmError {
  return new UvmError('NO_SLOT', 'this UVM has no VPMEM devices', { details: { hostPath } });
}

/** The entry of a layer at `place`: its documents (a whole device, or a mapping). */
function entry(hostPath: string, place: VpmemPlace, fileSize: number | undefined): VpmemEntry {
  const { device, offset, size } = place;
  const mapped = offset !== undefined;
  const guestPath = mapped ? guestPaths.vpmemMapping(device, offset, size!) : guestPaths.vpmemDevice(device);
  const mapping = mapped ? { MappingInfo: { DeviceOffsetInBytes: offset, DeviceSizeInBytes: size } } : {};
  const guest = guestRequest('Add', 'VPMemDevice', { DeviceNumber: device, MountPath: guestPath, ...mapping });
  const guestRemoval = guestRequest('Remove', 'VPMemDevice', { DeviceNumber: device, MountPath: guestPath, ...mapping });
  const removal = newRemovalProgress();
  // Field by field, `place`'s own fields in its order (a spread followed by more properties takes
  // V8's slow path): a whole device has no offset and size.
  if (!mapped) {
    const host = hostRequest(resourcePaths.vpmemDevice(device), 'Add', { HostPath: hostPath, ReadOnly: true, ImageFormat: 'Vhd1' });
    return { hostPath, fileSize, device, guestPath, host, guest, guestRemoval, removal };
  }
  const host = hostRequest(resourcePaths.vpmemMapping(device, offset), 'Add', { HostPath: hostPath, ImageFormat: 'Vhd1' });
  return { hostPath, fileSize, device, offset, size, guestPath, host, guest, guestRemoval, removal };
}

function layerOf(e: VpmemEntry, p: VpmemParams): VpmemLayer {
  const layer: VpmemLayer = { device: e.device, hostPath: p.hostPath, guestPath: e.guestPath };
  if (e.offset !== undefined) {
    layer.offset = e.offset;
    layer.size = e.size;
  }
  return layer;
}

import { inject, injectable } from 'inversify';
import { invalidArgument, UvmError } from '../core/errors.js';
import { HostFs } from '../core/host-fs.js';
import { ReleasableLease, type Lease } from '../core/lease.js';
import { LogField, Logger, withFields } from '../core/logger.js';
import { mapReservation, RefCountedTable, type Placed, type Reservation } from '../core/refcounted-table.js';
import { commitCombinedAdd } from './combined-add.js';
import { SlotAllocator } from '../core/slot-allocator.js';
import { describeEntries } from './describe-entries.js';
import { UvmDeviceConfig } from './device-config.js';
import type { DeviceAcquireOptions, ResourceInfo, VpmemLayer, VpmemLayerRequest, VpmemManager, VpmemPlacement } from './device-types.js';
import { newRemovalProgress, ResourceDelivery, type RemovalProgress } from './guest-delivery.js';
import { guestPaths } from './guest-paths.js';
import { resourcePaths } from './resource-paths.js';
import { validate } from './validation.js';
import { BuddyAllocator, MAX_CLASS_SIZE } from './vpmem-buddy-allocator.js';
import { guestRequest, hostRequest, type HostRequest } from './wire-requests.js';
import type { GuestRequest } from '../hcs/schema.js';

/** Most VPMEM devices a UVM can have. */
export const MAX_VPMEM_COUNT = 128;
/** Default (and largest useful) bytes per device. */
export const DEFAULT_VPMEM_SIZE_BYTES = 4 * 1024 * 1024 * 1024;
/** Most mappings packed onto one device in multi-mapping mode. */
export const MAX_MAPPINGS_PER_DEVICE = 1024;
const PAGE_SIZE = 4096;

/** `adding` (combined Add in flight) → `added` → `removed`; a failed removal stays `added`. */
export type VpmemState = 'adding' | 'added' | 'removed';

/** One VPMEM layer: a whole device (default mode) or a mapping on a device (multi-mapping). */
interface VpmemEntry {
  readonly hostPath: string;
  readonly device: number;
  /** Multi-mapping only. */
  readonly offset?: number;
  readonly size?: number;
  readonly guestPath: string;
  readonly host: HostRequest;
  readonly guest: GuestRequest;
  readonly guestRemoval: GuestRequest;
  state: VpmemState;
  readonly removal: RemovalProgress;
}

/** Per-device state in multi-mapping mode. Devices are never removed from the VM. */
interface MappedDevice {
  readonly allocator: BuddyAllocator;
}

/**
 * VPMEM layers of one LCOW UVM (spec §3), refcounted by host path.
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
  readonly #logger: Logger;
  readonly #table: RefCountedTable<string, VpmemEntry>;
  readonly #slots: SlotAllocator | undefined;
  readonly #mapped: MappedDevice[] = [];

  constructor(
    @inject(UvmDeviceConfig) private readonly config: UvmDeviceConfig,
    @inject(ResourceDelivery) private readonly delivery: ResourceDelivery,
    @inject(HostFs) private readonly hostFs: HostFs,
    @inject(Logger) logger: Logger,
  ) {
    this.#logger = withFields(logger, { [LogField.uvmId]: config.id, [LogField.kind]: 'vpmem' });
    this.#slots = config.vpmemCount > 0 && !config.vpmemMultiMapping ? new SlotAllocator(config.vpmemCount) : undefined;
    this.#table = new RefCountedTable({
      name: config.vpmemMultiMapping ? 'vpmem-mapping' : 'vpmem-device',
      destroy: (e) => this.#remove(e),
      forget: (e) => this.#free(e),
    });
  }

  async acquire(request: VpmemLayerRequest, options: DeviceAcquireOptions = {}): Promise<Lease<VpmemLayer>> {
    const hostPath = this.#validate(request);
    if (this.config.vpmemCount === 0) throw new UvmError('NO_SLOT', 'this UVM has no VPMEM devices', { details: { hostPath } });
    const { size } = await this.hostFs.stat(hostPath);
    const placed = this.reserve({ hostPath }, size);
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
      if (this.config.vpmemCount === 0) {
        throw new UvmError('NO_SLOT', 'this UVM has no VPMEM devices', { details: { hostPath } });
      }
      const reservation = this.#table.reserve(hostPath, () => this.#place(hostPath, size));
      return { ok: true, reservation: layerReservation(hostPath, reservation) };
    } catch (err) {
      if (UvmError.is(err, 'NO_SLOT', 'LAYER_TOO_LARGE')) return { ok: false, code: err.code as 'NO_SLOT' | 'LAYER_TOO_LARGE', error: err };
      throw err;
    }
  }

  #validate(request: VpmemLayerRequest): string {
    if (this.config.os !== 'linux') throw new UvmError('NOT_SUPPORTED', 'VPMEM is only supported in LCOW UVMs');
    if (request === null || typeof request !== 'object') throw invalidArgument('VPMEM request must be an object');
    return validate.hostPath(request.hostPath, 'VPMEM host path');
  }

  /**
   * Recovery (docs/recovery.md): rebuilds the lease of a layer that is already on
   * `layer.device` (at `layer.offset` in multi-mapping mode), with no HCS call: a new entry claims
   * that device (or buddy region); an existing one must be at the same place (RECOVERY_FAILED).
   */
  async adopt(request: VpmemLayerRequest, layer: VpmemLayer): Promise<Lease<VpmemLayer>> {
    if (this.config.os !== 'linux') throw new UvmError('NOT_SUPPORTED', 'VPMEM is only supported in LCOW UVMs');
    if (request === null || typeof request !== 'object') throw invalidArgument('VPMEM request must be an object');
    const hostPath = validate.hostPath(request.hostPath, 'VPMEM host path');
    const lease = await this.#table.acquire(hostPath, async () => this.#claim(hostPath, layer));
    const e = lease.value;
    if (e.device !== layer.device || e.offset !== layer.offset) {
      await lease.release();
      throw new UvmError('RECOVERY_FAILED', `layer ${hostPath} is recorded on two VPMEM places`, { details: { hostPath } });
    }
    return layerLease(hostPath, lease);
  }

  describe(): ResourceInfo[] {
    const kind = this.config.vpmemMultiMapping ? 'vpmem-mapping' : 'vpmem-device';
    return describeEntries(this.#table, kind, (e) =>
      e
        ? { hostPath: e.hostPath, slot: e.offset === undefined ? `${e.device}` : `${e.device}@${e.offset}`, guestPath: e.guestPath }
        : {},
    );
  }

  retryFailedTeardowns(): Promise<void> {
    return this.#table.retryFailedTeardowns();
  }

  #place(hostPath: string, size: number | undefined): Placed<VpmemEntry> {
    if (size === undefined) throw new UvmError('INVALID_STATE', `the size of ${hostPath} is needed to place it on VPMEM`);
    const entry = this.config.vpmemMultiMapping ? this.#placeMapping(hostPath, size) : this.#placeDevice(hostPath, size);
    return {
      value: entry,
      cancel: () => this.#free(entry),
      // Something may still be attached after a failed Add: the slot is kept for a retried teardown.
      commit: () =>
        commitCombinedAdd(this.delivery, {
          host: entry.host,
          guest: entry.guest,
          removal: entry.removal,
          guestRemoval: entry.guestRemoval,
          value: entry,
          added: () => {
            entry.state = 'added';
            this.#log('debug', entry, 'added');
          },
          log: (level, message, err) => this.#log(level, entry, message, err),
        }),
    };
  }

  async #remove(e: VpmemEntry): Promise<void> {
    const host = hostRequest(e.host.ResourcePath, 'Remove');
    try {
      await this.delivery.removeCombined(host, e.guestRemoval, e.removal);
    } catch (err) {
      this.#log('warn', e, 'remove failed; release() again to resume', err);
      throw err;
    }
    e.state = 'removed';
    this.#log('debug', e, 'removed');
  }

  /** Recovery: the entry of a layer already at `layer`'s place, which is claimed. */
  #claim(hostPath: string, layer: VpmemLayer): VpmemEntry {
    const mapped = layer.offset !== undefined;
    if (mapped !== this.config.vpmemMultiMapping || !Number.isInteger(layer.device) || layer.device < 0 || layer.device >= this.config.vpmemCount) {
      throw new UvmError('RECOVERY_FAILED', `layer ${hostPath}: the recorded VPMEM place does not fit this UVM`, { details: { hostPath } });
    }
    let entry: VpmemEntry;
    if (layer.offset === undefined) {
      this.#slots!.claim(layer.device);
      entry = deviceEntry(hostPath, layer.device);
    } else {
      const size = layer.size ?? 0;
      const dev = (this.#mapped[layer.device] ??= { allocator: new BuddyAllocator() });
      dev.allocator.claim(layer.offset, size);
      entry = mappingEntry(hostPath, layer.device, layer.offset, size);
    }
    entry.state = 'added';
    this.#log('debug', entry, 'adopted');
    return entry;
  }

  /** Default mode: the lowest free device, whole. */
  #placeDevice(hostPath: string, size: number): VpmemEntry {
    if (size > this.config.vpmemMaxSizeBytes) {
      throw new UvmError('LAYER_TOO_LARGE', `layer ${hostPath} (${size} bytes) is larger than a VPMEM device`, {
        details: { hostPath, size },
      });
    }
    const device = this.#slots!.allocate();
    if (device === undefined) throw new UvmError('NO_SLOT', `no free VPMEM device for ${hostPath}`, { details: { hostPath } });
    return deviceEntry(hostPath, device);
  }

  /** Multi-mapping mode: the first device (lowest number) with room for the page-aligned file. */
  #placeMapping(hostPath: string, fileSize: number): VpmemEntry {
    const size = Math.max(PAGE_SIZE, Math.ceil(fileSize / PAGE_SIZE) * PAGE_SIZE);
    if (size <= MAX_CLASS_SIZE) {
      for (let device = 0; device < this.config.vpmemCount; device++) {
        const dev = (this.#mapped[device] ??= { allocator: new BuddyAllocator() });
        if (dev.allocator.allocatedCount >= MAX_MAPPINGS_PER_DEVICE) continue;
        const region = dev.allocator.tryAllocate(size);
        if (region === undefined) continue;
        const offset = region.offset;
        if (offset + size > this.config.vpmemMaxSizeBytes) {
          dev.allocator.release(offset);
          continue;
        }
        return mappingEntry(hostPath, device, offset, size);
      }
    }
    throw new UvmError('NO_SLOT', `no VPMEM device has room for ${hostPath} (${size} bytes)`, { details: { hostPath, size } });
  }

  #free(e: VpmemEntry): void {
    if (e.offset === undefined) this.#slots!.free(e.device);
    else this.#mapped[e.device].allocator.release(e.offset);
  }

  #log(level: 'debug' | 'warn', e: VpmemEntry, msg: string, err?: unknown): void {
    this.#logger[level](msg, {
      [LogField.hostPath]: e.hostPath,
      [LogField.device]: e.device,
      ...(e.offset === undefined ? {} : { [LogField.offset]: e.offset }),
      [LogField.guestPath]: e.guestPath,
      [LogField.state]: e.state,
      ...(err === undefined ? {} : { error: String(err) }),
    });
  }
}

/** The entry of a whole-device layer (default mode). */
function deviceEntry(hostPath: string, device: number): VpmemEntry {
  const guestPath = guestPaths.vpmemDevice(device);
  return {
    hostPath,
    device,
    guestPath,
    host: hostRequest(resourcePaths.vpmemDevice(device), 'Add', { HostPath: hostPath, ReadOnly: true, ImageFormat: 'Vhd1' }),
    guest: guestRequest('Add', 'VPMemDevice', { DeviceNumber: device, MountPath: guestPath }),
    guestRemoval: guestRequest('Remove', 'VPMemDevice', { DeviceNumber: device, MountPath: guestPath }),
    state: 'adding',
    removal: newRemovalProgress(),
  };
}

/** The entry of a mapped layer (multi-mapping mode). */
function mappingEntry(hostPath: string, device: number, offset: number, size: number): VpmemEntry {
  const guestPath = guestPaths.vpmemMapping(device, offset, size);
  return {
    hostPath,
    device,
    offset,
    size,
    guestPath,
    host: hostRequest(resourcePaths.vpmemMapping(device, offset), 'Add', { HostPath: hostPath, ImageFormat: 'Vhd1' }),
    guest: guestRequest('Add', 'VPMemDevice', {
      DeviceNumber: device,
      MountPath: guestPath,
      MappingInfo: { DeviceOffsetInBytes: offset, DeviceSizeInBytes: size },
    }),
    guestRemoval: guestRequest('Remove', 'VPMemDevice', {
      DeviceNumber: device,
      MountPath: guestPath,
      MappingInfo: { DeviceOffsetInBytes: offset, DeviceSizeInBytes: size },
    }),
    state: 'adding',
    removal: newRemovalProgress(),
  };
}

function layerOf(hostPath: string, e: VpmemEntry): VpmemLayer {
  const layer: VpmemLayer = { device: e.device, hostPath, guestPath: e.guestPath };
  if (e.offset !== undefined) {
    layer.offset = e.offset;
    layer.size = e.size;
  }
  return layer;
}

/** The caller's lease of one layer. */
function layerLease(hostPath: string, lease: Lease<VpmemEntry>): Lease<VpmemLayer> {
  return new ReleasableLease(layerOf(hostPath, lease.value), () => lease.release());
}

/** The caller's reservation of one layer. */
function layerReservation(hostPath: string, r: Reservation<VpmemEntry>): Reservation<VpmemLayer> {
  return mapReservation(r, (e) => layerOf(hostPath, e));
}

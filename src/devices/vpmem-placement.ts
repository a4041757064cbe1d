import { UvmError } from '../core/errors.js';
import { SlotAllocator } from '../core/slot-allocator.js';
import { BuddyAllocator, MAX_CLASS_SIZE } from './vpmem-buddy-allocator.js';

/** Most mappings packed onto one device in multi-mapping mode. */
export const MAX_MAPPINGS_PER_DEVICE = 1024;
const PAGE_SIZE = 4096;

/** Where one VPMEM layer sits: a whole device, or (multi-mapping) a region of a device. */
export interface VpmemPlace {
  readonly device: number;
  /** Multi-mapping only: byte offset and (page-aligned) size of the mapping. */
  readonly offset?: number;
  readonly size?: number;
}

/**
 * The VPMEM slots of one UVM, the placement helper of the VPMEM policy. Default mode: the lowest
 * free device, whole (LAYER_TOO_LARGE over `maxSizeBytes`, NO_SLOT when every device is used).
 * Multi-mapping mode: the first device (lowest number) whose buddy allocator has room for the
 * page-aligned file and fewer than MAX_MAPPINGS_PER_DEVICE mappings (NO_SLOT when none has, also
 * for a layer over 4 GiB). Devices are never removed from the VM. Synchronous, no I/O.
 */
export class VpmemSlots {
  readonly #devices: SlotAllocator | undefined;
  readonly #mapped: BuddyAllocator[] = [];

  constructor(
    private readonly count: number,
    private readonly maxSizeBytes: number,
    readonly multiMapping: boolean,
  ) {
    this.#devices = count > 0 && !multiMapping ? new SlotAllocator(count) : undefined;
  }

  /** Takes a place for `hostPath` of `fileSize` bytes (throws NO_SLOT / LAYER_TOO_LARGE). */
  place(hostPath: string, fileSize: number): VpmemPlace {
    return this.multiMapping ? this.#placeMapping(hostPath, fileSize) : this.#placeDevice(hostPath, fileSize);
  }

  /** Recovery: takes exactly `place` (NO_SLOT when it is taken). True when it exists in this mode. */
  claim(place: VpmemPlace): boolean {
    if ((place.offset !== undefined) !== this.multiMapping || !Number.isInteger(place.device) || place.device < 0 || place.device >= this.count) return false;
    if (place.offset === undefined) this.#devices!.claim(place.device);
    else this.#allocator(place.device).claim(place.offset, place.size ?? 0);
    return true;
  }

  /** Gives `place` back. */
  free(place: VpmemPlace): void {
    if (place.offset === undefined) this.#devices!.free(place.device);
    else this.#mapped[place.device].release(place.offset);
  }

  #placeDevice(hostPath: string, size: number): VpmemPlace {
    if (size > this.maxSizeBytes) {
      throw new UvmError('LAYER_TOO_LARGE', `layer ${hostPath} (${size} bytes) is larger than a VPMEM device`, { details: { hostPath, size } });
    }
    const device = this.#devices?.allocate();
    if (device === undefined) throw new UvmError('NO_SLOT', `no free VPMEM device for ${hostPath}`, { details: { hostPath } });
    return { device };
  }

  #placeMapping(hostPath: string, fileSize: number): VpmemPlace {
    const size = Math.max(PAGE_SIZE, Math.ceil(fileSize / PAGE_SIZE) * PAGE_SIZE);
    if (size <= MAX_CLASS_SIZE) {
      for (let device = 0; device < this.count; device++) {
        const allocator = this.#allocator(device);
        if (allocator.allocatedCount >= MAX_MAPPINGS_PER_DEVICE) continue;
        const region = allocator.tryAllocate(size);
        if (region === undefined) continue;
        if (region.offset + size > this.maxSizeBytes) {
          allocator.release(region.offset);
          continue;
        }
        return { device, offset: region.offset, size };
      }
    }
    throw new UvmError('NO_SLOT', `no VPMEM device has room for ${hostPath} (${size} bytes)`, { details: { hostPath, size } });
  }

  #allocator(device: number): BuddyAllocator {
    return (this.#mapped[device] ??= new BuddyAllocator());
  }
}

import { invalidArgument, UvmError } from '../core/errors.js';

export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;

/** Smallest class: 1 MiB. */
export const MIN_CLASS_SIZE = MiB;
/** Largest class and the whole surface: 4 GiB. */
export const MAX_CLASS_SIZE = 4 * GiB;
/** 1 MiB, 4 MiB, 16 MiB, 64 MiB, 256 MiB, 1 GiB, 4 GiB. */
export const CLASS_COUNT = 7;

/** The size of a class: 1 MiB × 4^class. */
export function classSize(cls: number): number {
  if (!Number.isInteger(cls) || cls < 0 || cls >= CLASS_COUNT) throw invalidArgument(`invalid memory class ${cls}`);
  return MIN_CLASS_SIZE * 4 ** cls;
}

/**
 * The class of a size (hcsshim `GetMemoryClassType`): how many times `(size - 1) >> 20` can be
 * shifted right by 2 before reaching 0. May return CLASS_COUNT or more for sizes > 4 GiB.
 */
export function classOf(size: number): number {
  if (!Number.isSafeInteger(size) || size <= 0) throw invalidArgument(`invalid region size ${size}`);
  let s = Math.floor((size - 1) / MiB);
  let cls = 0;
  while (s > 0) {
    s = Math.floor(s / 4);
    cls++;
  }
  return cls;
}

/** An allocated region. */
export interface BuddyRegion {
  readonly offset: number;
  readonly cls: number;
  /** The class size (≥ the size asked for). */
  readonly size: number;
}

/**
 * A buddy allocator over a 4 GiB surface with 7 size classes (hcsshim `internal/memory`
 * PoolAllocator, spec §3.3): a request takes the lowest free offset of its class; when the class
 * has no free region, the lowest free region of the nearest larger class that has one is split
 * into 4 children (recursively); releasing merges a region with its 3 siblings when all 4 are
 * free. Pure data structure, no I/O.
 */
export class BuddyAllocator {
  /** Free region offsets per class. */
  readonly #free: Set<number>[] = Array.from({ length: CLASS_COUNT }, () => new Set<number>());
  /** Busy (allocated or split) region offsets per class. */
  readonly #busy: Set<number>[] = Array.from({ length: CLASS_COUNT }, () => new Set<number>());
  /** Allocated (not split) regions: offset → class. */
  readonly #allocated = new Map<number, number>();

  constructor() {
    this.#free[CLASS_COUNT - 1].add(0);
  }

  /** Number of regions handed out and not released. */
  get allocatedCount(): number {
    return this.#allocated.size;
  }

  /** Allocates a region for `size` bytes; NO_SLOT when it does not fit (or is over 4 GiB). */
  allocate(size: number): BuddyRegion {
    const region = this.tryAllocate(size);
    if (region !== undefined) return region;
    const cls = classOf(size);
    if (cls >= CLASS_COUNT) throw new UvmError('NO_SLOT', `region of ${size} bytes is larger than ${MAX_CLASS_SIZE}`);
    throw new UvmError('NO_SLOT', `no free region of ${classSize(cls)} bytes`);
  }

  /** `allocate` without the error: undefined when `size` does not fit (a full device is an expected outcome). */
  tryAllocate(size: number): BuddyRegion | undefined {
    const cls = classOf(size);
    if (cls >= CLASS_COUNT) return undefined;
    if (this.#free[cls].size === 0 && !this.#split(cls + 1)) return undefined;
    const offset = lowest(this.#free[cls])!;
    this.#free[cls].delete(offset);
    this.#busy[cls].add(offset);
    this.#allocated.set(offset, cls);
    return { offset, cls, size: classSize(cls) };
  }

  /**
   * Takes the region of `size` bytes at `offset` (recovery: a mapping that is already in the
   * device), splitting the regions above it as `allocate` would have. NO_SLOT when that region,
   * or a region containing or inside it, is already allocated; INVALID_ARGUMENT when `offset` is
   * not aligned to the class of `size`.
   */
  claim(offset: number, size: number): BuddyRegion {
    const cls = classOf(size);
    if (cls >= CLASS_COUNT) throw new UvmError('NO_SLOT', `region of ${size} bytes is larger than ${MAX_CLASS_SIZE}`);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % classSize(cls) !== 0 || offset + classSize(cls) > MAX_CLASS_SIZE) {
      throw invalidArgument(`offset ${offset} is not a region of class ${cls}`);
    }
    // Walk down from the whole surface: split free ancestors, pass through split ones.
    for (let c = CLASS_COUNT - 1; c > cls; c--) {
      const ancestor = offset - (offset % classSize(c));
      if (this.#free[c].has(ancestor)) {
        this.#free[c].delete(ancestor);
        this.#busy[c].add(ancestor);
        const child = classSize(c - 1);
        for (let i = 0; i < 4; i++) this.#free[c - 1].add(ancestor + i * child);
      } else if (!this.#busy[c].has(ancestor) || this.#allocated.get(ancestor) === c) {
        throw new UvmError('NO_SLOT', `region ${offset} (${classSize(cls)} bytes) overlaps an allocated region`);
      }
    }
    if (!this.#free[cls].has(offset)) throw new UvmError('NO_SLOT', `region ${offset} (${classSize(cls)} bytes) is not free`);
    this.#free[cls].delete(offset);
    this.#busy[cls].add(offset);
    this.#allocated.set(offset, cls);
    return { offset, cls, size: classSize(cls) };
  }

  /** Releases an allocated region; INVALID_STATE when `offset` is not one. */
  release(offset: number): void {
    const cls = this.#allocated.get(offset);
    if (cls === undefined) throw new UvmError('INVALID_STATE', `no allocated region at offset ${offset}`);
    this.#allocated.delete(offset);
    this.#markFree(cls, offset);
  }

  /** Free offsets of a class, sorted (diagnostics and tests). */
  freeOffsets(cls: number): number[] {
    classSize(cls);
    return [...this.#free[cls]].sort((a, b) => a - b);
  }

  /** Makes a free region of class `cls - 1` by splitting one of class `cls` (splitting larger first). */
  #split(cls: number): boolean {
    if (cls >= CLASS_COUNT) return false;
    if (this.#free[cls].size === 0 && !this.#split(cls + 1)) return false;
    const offset = lowest(this.#free[cls])!;
    this.#free[cls].delete(offset);
    this.#busy[cls].add(offset);
    const child = classSize(cls - 1);
    for (let i = 0; i < 4; i++) this.#free[cls - 1].add(offset + i * child);
    return true;
  }

  #markFree(cls: number, offset: number): void {
    this.#busy[cls].delete(offset);
    this.#free[cls].add(offset);
    if (cls === CLASS_COUNT - 1) return;
    const parentSize = classSize(cls + 1);
    const parent = offset - (offset % parentSize);
    const child = classSize(cls);
    for (let i = 0; i < 4; i++) if (!this.#free[cls].has(parent + i * child)) return;
    for (let i = 0; i < 4; i++) this.#free[cls].delete(parent + i * child);
    this.#markFree(cls + 1, parent);
  }
}

function lowest(set: ReadonlySet<number>): number | undefined {
  let min: number | undefined;
  for (const v of set) if (min === undefined || v < min) min = v;
  return min;
}

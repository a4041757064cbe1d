import { invalidArgument, UvmError } from './errors.js';

/**
 * Hands out the lowest free slot among `size` slots (e.g. SCSI controller-major over
 * controllers × 64 LUNs, or VPMEM devices). Reserved slots are never handed out.
 * A segment tree of free counts makes `allocate`, `claim` and `free` O(log n).
 */
export class SlotAllocator {
  readonly size: number;
  readonly #leaves: number;
  readonly #free: Int32Array;
  readonly #reserved: ReadonlySet<number>;

  /**
   * @param size number of slots, at least 1.
   * @param reserved slots that are never handed out nor freed (pre-attached at boot).
   */
  constructor(size: number, reserved: Iterable<number> = []) {
    if (!Number.isInteger(size) || size < 1) throw invalidArgument(`slot count must be a positive integer, got ${size}`);
    this.size = size;
    let leaves = 1;
    while (leaves < size) leaves *= 2;
    this.#leaves = leaves;
    this.#free = new Int32Array(2 * leaves);
    for (let i = 0; i < size; i++) this.#free[leaves + i] = 1;
    for (let n = leaves - 1; n >= 1; n--) this.#free[n] = this.#free[2 * n] + this.#free[2 * n + 1];
    const res = new Set<number>();
    for (const slot of reserved) {
      this.#check(slot);
      res.add(slot);
      this.#set(slot, 0);
    }
    this.#reserved = res;
  }

  /** Number of slots that can still be handed out. */
  get freeCount(): number {
    return this.#free[1];
  }

  /** Takes the lowest free slot, or returns undefined when every slot is taken. */
  allocate(): number | undefined {
    if (this.#free[1] === 0) return undefined;
    let node = 1;
    while (node < this.#leaves) node = this.#free[2 * node] > 0 ? 2 * node : 2 * node + 1;
    const slot = node - this.#leaves;
    this.#set(slot, 0);
    return slot;
  }

  /** Takes a specific slot (recovery, caller-chosen slots). Throws NO_SLOT if it is taken. */
  claim(slot: number): void {
    this.#check(slot);
    if (!this.isFree(slot)) throw new UvmError('NO_SLOT', `slot ${slot} is already in use`, { details: { slot } });
    this.#set(slot, 0);
  }

  /** Returns a slot. Freeing a reserved or already-free slot is a bug and throws INVALID_STATE. */
  free(slot: number): void {
    this.#check(slot);
    if (this.#reserved.has(slot)) throw new UvmError('INVALID_STATE', `slot ${slot} is reserved`);
    if (this.isFree(slot)) throw new UvmError('INVALID_STATE', `slot ${slot} is not in use`);
    this.#set(slot, 1);
  }

  isFree(slot: number): boolean {
    this.#check(slot);
    return this.#free[this.#leaves + slot] === 1;
  }

  isReserved(slot: number): boolean {
    return this.#reserved.has(slot);
  }

  #set(slot: number, value: 0 | 1): void {
    let node = this.#leaves + slot;
    const delta = value - this.#free[node];
    if (delta === 0) return;
    while (node >= 1) {
      this.#free[node] += delta;
      node >>= 1;
    }
  }

  #check(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.size) {
      throw invalidArgument(`slot ${slot} is out of range 0..${this.size - 1}`);
    }
  }
}

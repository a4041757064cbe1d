/**
 * Hands out the lowest free non-negative integer, without an upper bound (SCSI generated mount
 * indexes `m<i>`, which hcsshim recycles). Freed indexes are reused lowest first.
 */
export class IndexPool {
  #next = 0;
  readonly #freed: number[] = [];

  /** Takes the lowest free index for which `usable` (default: always) is true. */
  allocate(usable: (index: number) => boolean = () => true): number {
    this.#freed.sort((a, b) => a - b);
    for (let i = 0; i < this.#freed.length; i++) {
      const index = this.#freed[i];
      if (usable(index)) {
        this.#freed.splice(i, 1);
        return index;
      }
    }
    for (;;) {
      const index = this.#next++;
      if (usable(index)) return index;
      this.#freed.push(index);
    }
  }

  /** Returns an index to the pool. */
  free(index: number): void {
    this.#freed.push(index);
  }
}

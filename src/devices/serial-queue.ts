/**
 * Runs tasks one after another (per owner, e.g. one VSMB share whose Updates each carry the whole
 * AllowedFiles list). A failed task does not stop the ones queued after it.
 */
export class SerialQueue {
  #tail: Promise<void> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

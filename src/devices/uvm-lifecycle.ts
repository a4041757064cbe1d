import { injectable } from 'inversify';
import { isVmUnavailable } from '../hcs/hcs-error.js';

/** `running` → `terminating` (terminate requested) → `terminated` (the VM is gone). */
export type UvmLifecyclePhase = 'running' | 'terminating' | 'terminated';

/**
 * The lifecycle phase of one UVM, shared by its managers. It decides how a removal that fails
 * because the VM is gone is treated:
 * - `running`: it is a failure; the entry stays in `teardown-failed` and `release()` can retry.
 * - `terminating`: errors meaning "the VM is not available" (HCS not-exist, already stopped,
 *   invalid state, closed handle) count as removed.
 * - `terminated`: removals make no HCS call at all; the bookkeeping is dropped.
 *
 * The class itself is the DI service identifier (one instance per UVM scope).
 */
@injectable()
export class UvmLifecycle {
  #phase: UvmLifecyclePhase = 'running';
  readonly #onTerminated: (() => void)[] = [];

  get phase(): UvmLifecyclePhase {
    return this.#phase;
  }

  get terminating(): boolean {
    return this.#phase !== 'running';
  }

  markTerminating(): void {
    if (this.#phase === 'running') this.#phase = 'terminating';
  }

  markTerminated(): void {
    if (this.#phase === 'terminated') return;
    this.#phase = 'terminated';
    for (const listener of this.#onTerminated.splice(0)) listener();
  }

  /** Runs `listener` once, when the UVM is terminated (e.g. VSMB forgets its idle shares). */
  onTerminated(listener: () => void): void {
    if (this.#phase === 'terminated') listener();
    else this.#onTerminated.push(listener);
  }

  /** True when a failed removal may count as done (the VM is going away and reports it gone). */
  removalMayBeSkipped(err: unknown): boolean {
    return this.terminating && isVmUnavailable(err);
  }
}

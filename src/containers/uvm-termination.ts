/**
 * The "UVM is about to be terminated" release mode (hcsshim: `UnmountOperation` flags, and the
 * pause container of a pod skipping layer cleanup). Releases then drop every refcount as usual,
 * but the guest and host removals that destroying the UVM makes moot are not sent.
 *
 * Only the device managers can skip their own removals. They opt in through the optional
 * `prepareForTermination()` of the UVM (see `UvmTerminationAware`). A UVM without it gets full,
 * normal removals: nothing is skipped on its behalf, so no bookkeeping ever disagrees with the VM.
 */
/** Optional capability of the port a container's resources were given (see container-ports.ts). */
export interface UvmTerminationAware {
  /**
   * Declares that the UVM will be terminated: from now on, releases of this UVM's leases drop
   * their references (and entries) without guest or host removal calls, and guest `Remove`
   * requests are not sent. Idempotent and irreversible; the caller must terminate the UVM.
   */
  prepareForTermination(): void;
}

const prepared = new WeakSet<object>();

/** True when `uvm` implements `prepareForTermination()`. */
export function isTerminationAware(uvm: object): uvm is UvmTerminationAware {
  return typeof (uvm as Partial<UvmTerminationAware>).prepareForTermination === 'function';
}

/**
 * Puts `uvm` in the termination mode when it supports it. Returns true when removals will be
 * skipped, false when the UVM cannot skip them (releases then remove everything normally).
 */
export function prepareUvmForTermination(uvm: object): boolean {
  if (!isTerminationAware(uvm)) return false;
  uvm.prepareForTermination();
  prepared.add(uvm);
  return true;
}

/** True once `prepareUvmForTermination(uvm)` succeeded: guest-only removals of this library are skipped. */
export function isPreparedForTermination(uvm: object): boolean {
  return prepared.has(uvm);
}

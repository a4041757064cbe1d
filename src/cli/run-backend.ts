import type { GuestOs, ResourceInfo } from '../devices/device-types.js';
import type { ContainerEntry } from '../oci/mount-applier.js';
import type { OciSpec } from '../oci/oci-spec.js';
import type { ScenarioUvmOptions } from './scenario.js';

/** One allocated container, as the run command holds it. */
export interface RunContainer {
  /** The rewritten spec (guest paths). */
  readonly spec: OciSpec;
  /** WCOW: the MappedDirectory / MappedPipe entries of the shim's container document. */
  readonly containerEntries: readonly ContainerEntry[];
  /** Releases every resource of the container (reverse order, retryable). */
  release(): Promise<void>;
}

/** A created and started UVM, as the run command drives it. */
export interface RunUvm {
  readonly id: string;
  readonly os: GuestOs;
  /** Every live resource of every manager. */
  describe(): ResourceInfo[];
  /**
   * `signal` aborts what is in flight (the allocation then rolls itself back). `isolation:
   * 'process'`: no UVM, the layers are mounted on the host at `<bundle>/rootfs`.
   */
  allocateContainer(spec: OciSpec, containerId: string, signal?: AbortSignal, options?: { isolation?: 'process'; bundle?: string }): Promise<RunContainer>;
  /**
   * How many shares a manager keeps after their last release (direct-mapped VSMB shares, state
   * `kept` in describe()): they stay attached until the VM exits, as hcsshim does.
   */
  keptShares(): number;
  /** The simulator's `SimulatorState.HotAdded` when asked for (`--check-simulator`); else null. */
  hotAdded(): Promise<number | null>;
  /**
   * Terminates the UVM (when `terminate`) and closes its handle. Without `terminate` the compute
   * system keeps running: on real HCS until someone terminates it, on the in-process simulator
   * until the process exits.
   */
  close(options: { terminate: boolean }): Promise<void>;
}

/** How the run command gets a UVM: the library over HCS (or the simulator), or a fake in unit tests. */
export interface RunBackend {
  readonly kind: 'simulator' | 'hcs';
  /**
   * Creates and starts a UVM; `journal` journals it to that file, `signal` aborts the start (the
   * UVM is then terminated before this rejects).
   */
  createUvm(options: ScenarioUvmOptions, extra?: { journal?: string; signal?: AbortSignal }): Promise<RunUvm>;
}

/** What `uvmctl down` did. */
export interface DownReport {
  command: 'down';
  journal: string;
  uvm: { id: string };
  /** Containers restored from the journal and released. */
  released: string[];
  /** The UVM's own journaled leases released. */
  releasedLeases: number;
  /** Left in describe() before the termination (released by it). */
  remaining: number;
  terminated: boolean;
}

/** How `uvmctl down` re-opens a journaled UVM (the library, or a fake in unit tests). */
export interface DownBackend {
  /** Re-opens the UVM of `journal`, releases everything it holds and terminates it. */
  down(journal: string, progress: { line(message: string): void }): Promise<DownReport>;
}

import type { ResourceInfo } from '../devices/device-types.js';
import type { ContainerUvm } from '../containers/container-ports.js';
import type { ScenarioUvmOptions } from './scenario.js';

/** A UVM that exists only in memory (its HCS makes no call), for the dry run. */
export interface PlanUvm {
  readonly uvm: ContainerUvm & { describe(): ResourceInfo[] };
  close(): Promise<void>;
}

/** How `uvmctl plan` gets its in-memory UVM. */
export interface PlanBackend {
  createUvm(options: ScenarioUvmOptions): Promise<PlanUvm>;
}

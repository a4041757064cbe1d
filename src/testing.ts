/**
 * `uvm-orchestrator/testing`: fakes and simulator controls for testing code that embeds this library.
 */
export { leakTracker, type TrackedTable } from './core/leak-tracker.js';
export { pendingPromises } from './core/pending-promises.js';
export { FakeHcs, FakeComputeSystem, type FakeHcsCall, type FakeFault } from './hcs/fake-hcs.js';
export { FakeHostFs } from './core/fake-host-fs.js';
export { ComputeCoreHcs, type ComputeCoreHcsOptions } from './hcs/computecore-hcs.js';
export {
  configureSimulator,
  resetSimulator,
  readSimulatorState,
  readSimulatorProperties,
  simulatorStats,
  isSimulator,
  type SimulatorConfig,
  type SimulatorFault,
  type SimulatorCrashAttribution,
  type SimulatorLatency,
  type SimulatedFunction,
  type BridgeFunction,
  type SimulatorState,
  type SimulatorProperties,
  type SimulatorSettings,
  type SimulatorStats,
} from './hcs/simulator-controls.js';
export { readSimulatorHostLayers, type SimulatorHostLayers } from './hcs/host-layers.js';

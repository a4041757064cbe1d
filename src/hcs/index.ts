/**
 * The HCS binding: computecore.dll (or the simulator) through koffi, the operation driver,
 * `ComputeSystem`, `ComputeCoreHcs` (the `HcsApi` implementation), HRESULT classification and the
 * simulator controls. See docs/hcs.md.
 */
export * from './hcs-api.js';
export * from './schema.js';
export * from './hcs-error.js';
export {
  loadComputeCore,
  loadedComputeCore,
  resolveLibraryPath,
  formatGuid,
  HCS_GENERIC_ALL,
  type ComputeCore,
  type ComputeCoreLoadOptions,
  type Guid,
} from './computecore.js';
export { OperationDriver, DEFAULT_MAX_CONCURRENT_OPERATIONS, pendingOperationCount, isKeepingProcessAlive, type OperationDriverOptions } from './operation-driver.js';
export { ComputeSystem } from './compute-system.js';
export { ComputeCoreHcs, ComputeCoreHcsOptions, defaultComputeCoreHcsOptions } from './computecore-hcs.js';
export { HcsModule, hcsModule } from './hcs-module.js';
export * from './simulator-controls.js';

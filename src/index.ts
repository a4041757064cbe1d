/**
 * uvm-orchestrator: refcounted SCSI, VSMB, VPMEM and Plan9 resources of a Utility VM, layer
 * composition and OCI mount conversion, over HCS through FFI.
 */
export * from './core/index.js';
export * from './hcs/schema.js';
export * from './hcs/hcs-api.js';

// ---- Device managers, UtilityVm and DI (devices helper)
export * from './devices/device-types.js';
export { UvmDeviceConfig } from './devices/device-config.js';
export { ResourceDelivery, ModifyDelivery, GuestConnectionDelivery, createResourceDelivery, newRemovalProgress, type RemovalProgress } from './devices/guest-delivery.js';
export { UvmLifecycle, type UvmLifecyclePhase } from './devices/uvm-lifecycle.js';
export { guestPaths, VSMB_GUEST_PREFIX } from './devices/guest-paths.js';
export { resourcePaths, SCSI_CONTROLLER_GUIDS, SCSI_LUNS_PER_CONTROLLER } from './devices/resource-paths.js';
export { ScsiManagerImpl, parseEvdPath } from './devices/scsi-manager.js';
export type { ScsiAttachmentState } from './devices/scsi-attach-tracker.js';
export type { ScsiMountState } from './devices/scsi-mount-tracker.js';
export { VsmbManagerImpl } from './devices/vsmb-manager.js';
export { vsmbShareOptions } from './devices/vsmb-options.js';
export { VpmemManagerImpl, MAX_VPMEM_COUNT, DEFAULT_VPMEM_SIZE_BYTES, MAX_MAPPINGS_PER_DEVICE, type VpmemState } from './devices/vpmem-manager.js';
export { BuddyAllocator, classOf as vpmemClassOf, classSize as vpmemClassSize, type BuddyRegion } from './devices/vpmem-buddy-allocator.js';
export { Plan9ManagerImpl, PLAN9_PORT, Plan9Flags, type Plan9State } from './devices/plan9-manager.js';
export { PipeManagerImpl } from './devices/pipe-manager.js';
export { VpciManager, VpciManagerImpl, type VpciDevice, type VpciDeviceRequest } from './devices/vpci-manager.js';
export { GuestConnection } from './uvm/guest-connection.js';
export { HcsSystem } from './uvm/hcs-system-token.js';
export { UtilityVm } from './uvm/utility-vm.js';
export type { UvmExit } from './uvm/uvm-exit.js';
export type { SystemExit } from './hcs/system-events.js';
export type { LcowBootOptions, WcowBootOptions, UvmBootOptions } from './uvm/boot-options.js';
export { resolveUvmOptions, type UtilityVmOptions, type VpmemOptions, type ScsiSlot, type ResolvedUvmOptions } from './uvm/uvm-options.js';
export { buildCreateDocument } from './uvm/create-document.js';
export { createUvmOrchestrator, UtilityVmFactory, type UvmOrchestrator, type UvmOrchestratorOptions } from './di/uvm-orchestrator.js';
export { UvmModule } from './di/uvm-module.js';
export { ScsiModule } from './di/scsi-module.js';
export { VsmbModule } from './di/vsmb-module.js';
export { VpmemModule } from './di/vpmem-module.js';
export { Plan9Module } from './di/plan9-module.js';
export { PipeModule } from './di/pipe-module.js';

// ---- Container allocation: layers, OCI mounts, container resources (containers helper)
export { isReadOnlyMount, type OciSpec, type OciMount, type OciRoot, type OciWindows, type RootfsMount } from './oci/oci-spec.js';
export { LCOW_ROOT_PREFIX, WCOW_SANDBOX_MOUNT_PATH, SANDBOX_MOUNT_PREFIX, SANDBOX_TMPFS_MOUNT_PREFIX, HUGEPAGES_MOUNT_PREFIX, BLOCKDEV_MOUNT_PREFIX, UVM_MOUNT_PREFIX, PIPE_PREFIX, lcowContainerRoot, lcowRootfsPath, lcowScratchDir, wcowSandboxMountPath, uvmPipePath } from './oci/container-paths.js';
export { planMounts, planMount, DISK_MOUNT_TYPES, HUGEPAGE_SIZE, type PlannedMount, type KeptMount, type GuestSourceMount, type DeviceMount, type DeviceRequests, type MountDevice, type ContainerEntryKind } from './oci/mount-planner.js';
export { applyMountPlan, applyMount, type AppliedMount, type AppliedMountPlan, type ApplyMountsOptions, type ContainerEntry, type ContainerMappedDirectory, type ContainerMappedPipe } from './oci/mount-applier.js';
export { parseLayerInputs, hasLayerInputs, LCOW_LAYER_VHD, SCRATCH_VHDX, type LayerInputs, type LcowLayerInputs, type WcowLayerInputs, type LcowLayerInput } from './layers/layer-inputs.js';
export { planLcowLayers, planWcowLayers, vpmemSkipReason, vpmemMappingSize, type LayerPlan, type LcowLayerPlan, type WcowLayerPlan, type LcowLayerPlanEntry, type WcowLayerPlanEntry, type ScratchPlan, type SlotsLeft, type VpmemSkipReason, type ScsiLayerReason } from './layers/layer-plan.js';
export { ComposedLayers, type ComposedLayer, type ComposedLayersInfo } from './layers/composed-layers.js';
export { composeLcowLayers, SCSI_LAYER_OPTIONS, type ComposeLcowLayersOptions } from './layers/lcow-layer-composer.js';
export { composeWcowLayers, type ComposeWcowLayersOptions } from './layers/wcow-layer-composer.js';
export { type HeldResource, type HeldResourceKind, type HeldResourceSource } from './containers/held-resource.js';
export { isTerminationAware, type UvmTerminationAware } from './containers/uvm-termination.js';
export { validateContainerId, MAX_CONTAINER_ID_LENGTH } from './containers/container-id.js';
export { ContainerResources, type ReleaseContainerOptions, type ContainerResourcesInit } from './containers/container-resources.js';
export { allocateContainer, planContainer, rootfsSource, type AllocateContainerOptions, type AllocatedContainer, type ContainerPlan, type PlanContainerOptions, type RootfsPlan, type RootfsSource } from './containers/allocate-container.js';
export { CONTAINER_MAPPED_DIRECTORIES, type ContainerModifier, type ContainerMountOptions, type ContainerMountRequest, type ContainerMountResult } from './containers/running-container-mounts.js';
export { allocateProcessIsolatedContainer, ProcessIsolatedResources, type AllocateProcessIsolatedOptions, type ProcessIsolatedContainer } from './containers/process-isolated.js';
export { WindowsLayerMounts, parseWindowsLayerMount, streamSourceStore, type MountSourceStore, type WindowsLayerMountRecord, type WindowsLayerMountsOptions } from './hcs/host-layer-mounts.js';
export { loadHostLayerApi, type HostLayerApi } from './hcs/host-layers.js';
export { planDevices, type AssignedDevice, type ContainerDocumentDevice, type PlannedDevice } from './containers/assigned-devices.js';

// ---- HCS binding (computecore through koffi; HRESULT classification) (hcs helper)
export {
  HcsError,
  HResult,
  normalizeHresult,
  formatHresult,
  hresultName,
  parseResultError,
  hcsErrorFromResult,
  renderEvent,
  isNotExist,
  isAlreadyStopped,
  isInvalidState,
  isTimeout,
  isAccessDenied,
  isNotSupported,
  isPending,
  isVmUnavailable,
  type HcsErrorInit,
  type NormalizedHresult,
} from './hcs/hcs-error.js';
export { loadComputeCore, resolveLibraryPath, HCS_GENERIC_ALL, type ComputeCoreLoadOptions } from './hcs/computecore.js';
export { OperationDriver, DEFAULT_MAX_CONCURRENT_OPERATIONS, pendingOperationCount, isKeepingProcessAlive, lateOutcomeOf, type LateOutcome, type OperationDriverOptions } from './hcs/operation-driver.js';
export { ComputeSystem } from './hcs/compute-system.js';
export { ComputeCoreHcs, ComputeCoreHcsOptions, defaultComputeCoreHcsOptions } from './hcs/computecore-hcs.js';
export { HcsModule, hcsModule } from './hcs/hcs-module.js';

// ---- Crash recovery: journal, reconcile, UtilityVm.open (recovery helper; docs/recovery.md)
export { RecoveryJournal, readJournalFile, writeFileAtomic, resolveJournalOptions, type JournalOptions, type NewLeaseRecord } from './recovery/journal.js';
export { JOURNAL_VERSION, parseJournal, type JournalDocument, type LeaseRecord, type LeaseRecordKind, type ContainerRecord } from './recovery/journal-format.js';
export { planReconcile, expectedParts, type ReconcilePlan, type ReconcileInput, type ForgottenRecord, type HcsObservation } from './recovery/reconcile.js';
export { partKeys, type HcsPart, type PartKind } from './recovery/parts.js';
export { isAdoptable, type Adoptable, type AdoptableDevices, type NameReserving, type RecoveryReport } from './recovery/apply-reconcile.js';
export { journaledDevices, isJournaledLease, type JournaledLease } from './recovery/journaled-devices.js';
export { UtilityVmOpener, type OpenUtilityVmOptions } from './di/uvm-orchestrator.js';

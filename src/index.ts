/**
 * uvm-orchestrator: refcounted SCSI, VSMB, VPMEM, Plan9, pipe and vPCI resources of a Hyper-V
 * Utility VM, layer composition and OCI mount conversion, over HCS through FFI.
 *
 * The curated public API: what a shim embeds. Fakes and simulator controls for a shim's own tests
 * are in `uvm-orchestrator/testing`. Everything else is internal and may change without notice.
 *
 * ## By topic
 *
 * - **Entry point and Utility VMs:** {@link createUvmOrchestrator}, {@link UvmOrchestrator},
 *   {@link UtilityVm}, {@link UtilityVmOptions}, {@link OpenUtilityVmOptions}, {@link GuestConnection}.
 * - **Device managers and leases:** {@link ScsiManager}, {@link VsmbManager}, {@link VpmemManager},
 *   {@link Plan9Manager}, {@link PipeManager}, {@link VpciManager}, {@link Lease}, {@link ResourceInfo},
 *   {@link LeftoverSink}.
 * - **Containers:** {@link ContainerUvm} (what allocation takes from a UVM), {@link allocateContainer}, {@link planContainer}, {@link AllocatedContainer},
 *   {@link ContainerResources}, {@link ContainerPlan}, {@link validateContainerId}.
 * - **Process-isolated containers:** {@link allocateProcessIsolatedContainer}, {@link WindowsLayerMounts},
 *   {@link loadHostLayerApi}.
 * - **OCI runtime spec:** {@link OciSpec}, {@link OciMount}, {@link RootfsMount}, {@link OciSpecSchema},
 *   {@link isReadOnlyMount}.
 * - **Errors:** {@link UvmError}, {@link UvmAggregateError}, {@link UvmErrorCode}, {@link HcsError},
 *   and for a containerd shim {@link ERROR_KINDS} / {@link errorKind} (errdefs kind + gRPC status).
 * - **Logging:** {@link Logger}, {@link createLogger}, {@link withFields}, {@link logLevelEnabled}, {@link LogField}.
 * - **HCS and host ports:** {@link HcsApi}, {@link ComputeCoreHcs}, {@link HostFs}, {@link NodeHostFs}.
 * - **Crash recovery:** {@link JournalOptions}, {@link RecoveryReport} (`UtilityVm.open`).
 *
 * @packageDocumentation
 */

// ---- Entry point and Utility VMs
export { createUvmOrchestrator, type UvmOrchestrator, type UvmOrchestratorOptions, type OpenUtilityVmOptions, type UtilityVmFactory, type UtilityVmOpener } from './di/uvm-orchestrator.js';
export { UtilityVm } from './uvm/utility-vm.js';
export type { UtilityVmOptions, VpmemOptions, ScsiSlot, HvSocketServiceConfig } from './uvm/uvm-options.js';
export type { UvmExit } from './uvm/uvm-exit.js';
export type { SystemExit } from './hcs/system-events.js';
export type { LcowBootOptions, WcowBootOptions, UvmBootOptions } from './uvm/boot-options.js';
export type { GuestConnection } from './uvm/guest-connection.js';

// ---- Device managers and their leases
export type { Lease } from './core/lease.js';
export type { ContainerUvm, ContainerResourcesPort } from './containers/container-ports.js';
export type { Reservation, AcquireOptions as ReservationCommitOptions } from './core/refcounted-table.js';
export type { VpmemPlacement, HostPathKind } from './devices/device-types.js';
export type { Releasable } from './core/release-stack.js';
export type { EntryState } from './core/refcounted-table.js';
export type { UvmLifecyclePhase } from './devices/uvm-lifecycle.js';
export type {
  GuestOs,
  DeviceAcquireOptions,
  ResourceInfo,
  DescribableManager,
  UvmFacts,
  LeftoverSink,
  GuestRequestSender,
  ScsiManager,
  ScsiDiskRequest,
  ScsiDisk,
  ScsiMountConfig,
  ScsiAttachType,
  VsmbManager,
  VsmbShareRequest,
  VsmbShareOptions,
  VsmbShare,
  VpmemManager,
  VpmemLayerRequest,
  VpmemLayer,
  Plan9Manager,
  Plan9ShareRequest,
  Plan9Share,
  PipeManager,
  MappedPipe,
} from './devices/device-types.js';
export type { VpciManager, VpciDevice, VpciDeviceRequest } from './devices/vpci-manager.js';
export { SCSI_LUNS_PER_CONTROLLER } from './devices/resource-paths.js';
export { MAX_VPMEM_COUNT } from './devices/vpmem-manager.js';

// ---- Containers: rootfs, OCI mounts, assigned devices
export {
  allocateContainer,
  planContainer,
  type AllocateContainerOptions,
  type AllocatedContainer,
  type ContainerPlan,
  type PlanContainerOptions,
  type RootfsPlan,
  type RootfsSource,
} from './containers/allocate-container.js';
export type { ContainerResources, ContainerResourcesSnapshot, ReleaseContainerOptions } from './containers/container-resources.js';
export type { HeldResource, HeldResourceKind, HeldResourceSource } from './containers/held-resource.js';
export { validateContainerId, MAX_CONTAINER_ID_LENGTH } from './containers/container-id.js';
export { CONTAINER_MAPPED_DIRECTORIES, type ContainerModifier, type ContainerMountOptions, type ContainerMountRequest, type ContainerMountResult } from './containers/running-container-mounts.js';
export type { AssignedDevice, ContainerDocumentDevice, PlannedDevice } from './containers/assigned-devices.js';
export type { AppliedMount, ContainerEntry, ContainerMappedDirectory, ContainerMappedPipe } from './oci/mount-applier.js';
export type { PlannedMount, KeptMount, GuestSourceMount, DeviceMount, DeviceMountBase, PlannedBase, DeviceRequests, MountDevice, ContainerEntryKind } from './oci/mount-planner.js';
export type { ComposedLayersInfo, ComposedLayer } from './layers/composed-layers.js';
export type { LayerPlan, LcowLayerPlan, WcowLayerPlan, LcowLayerPlanEntry, WcowLayerPlanEntry, ScratchPlan, SlotsLeft, VpmemSkipReason, ScsiLayerReason } from './layers/layer-plan.js';
export type { LayerInputs, LcowLayerInputs, WcowLayerInputs, LcowLayerInput } from './layers/layer-inputs.js';

// ---- Process-isolated (Argon) containers: host layer mounts
export { allocateProcessIsolatedContainer, type ProcessIsolatedResources, type AllocateProcessIsolatedOptions, type ProcessIsolatedContainer } from './containers/process-isolated.js';
export { WindowsLayerMounts, parseWindowsLayerMount, streamSourceStore, type MountSourceStore, type WindowsLayerMountRecord, type WindowsLayerMountSpec, type WindowsLayerMountsOptions } from './hcs/host-layer-mounts.js';
export { loadHostLayerApi, type HostLayerApi, type HostLayerCallOptions } from './hcs/host-layers.js';

// ---- OCI runtime spec: types and their schemas
export { isReadOnlyMount, type OciSpec, type OciMount, type OciRoot, type OciWindows, type RootfsMount } from './oci/oci-spec.js';
export { OciSpecSchema, OciMountSchema, OciRootSchema, OciWindowsSchema, RootfsMountSchema } from './oci/spec-schema.js';

// ---- Errors, and their containerd errdefs / gRPC mapping
export { UvmError, UvmAggregateError, type UvmErrorCode, type UvmErrorDetails } from './core/errors.js';
export { ERROR_KINDS, errorKind, GrpcCode, type ErrdefsKind, type ErrorKind } from './core/error-kinds.js';
export { lateOutcomeOf, type LateOutcome } from './hcs/operation-driver.js';
export { HcsError, HResult, isNotExist, isAlreadyStopped, isInvalidState, isTimeout, isAccessDenied, isVmUnavailable, isGuestRefusal, type HcsErrorInit } from './hcs/hcs-error.js';

// ---- Logging
export { createLogger, withFields, logLevelEnabled, LogField, type Logger, type LogFields, type LogLevel, type LoggerOptions } from './core/logger.js';

// ---- HCS and the host file system (ports a shim may replace)
export { ComputeCoreHcs, type ComputeCoreHcsOptions } from './hcs/computecore-hcs.js';
export type { HcsApi, HcsSystem, HcsSystemSummary, HcsCallOptions } from './hcs/hcs-api.js';
export { MAX_CALL_PRIORITY } from './hcs/hcs-api.js';
export type { ComputeSystem } from './hcs/compute-system.js';
export type { ComputeCoreLoadOptions } from './hcs/computecore.js';
export type { GuestRequest, ModifySettingRequest, HcsErrorEvent, RequestType, GuestResourceType } from './hcs/schema.js';
export { NodeHostFs, type HostFs, type HostStat, type NodeHostFsOptions } from './core/host-fs.js';
export type { FsCalls, FsDone } from './core/host-fs-worker.js';
export type { HvSocketTransport, HvSocketListener } from './hcs/hvsocket.js';

// ---- Crash recovery (docs/recovery.md): UtilityVm.open / UvmOrchestrator.openUtilityVm
export type { JournalOptions } from './recovery/journal.js';
export type { RecoveryReport, RestoredLease } from './recovery/apply-reconcile.js';
export type { JournaledLease } from './recovery/journaled-devices.js';
export type { LeaseRecord, LeaseRecordKind, JsonObject, JsonValue } from './recovery/journal-format.js';

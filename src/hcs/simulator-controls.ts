/**
 * Controls of the native HCS simulator (build/native/libhcssim.so): latency, concurrency, fault
 * injection, tracing and reset through its extra export `HcsSimConfigure`, and the simulator's
 * `SimulatorState` property type. The simulator's model and every field are documented in
 * native/README.md; a summary is in docs/hcs.md.
 */
import { UvmError } from '../core/errors.js';
import type { HcsSystem } from './hcs-api.js';
import { HcsError } from './hcs-error.js';
import { loadComputeCore, type ComputeCoreLoadOptions } from './computecore.js';

/** Names of the HCS functions a latency or fault rule can target (native/README.md, Controls). */
export type SimulatedFunction =
  | 'HcsCreateComputeSystem'
  | 'HcsOpenComputeSystem'
  | 'HcsCloseComputeSystem'
  | 'HcsStartComputeSystem'
  | 'HcsShutDownComputeSystem'
  | 'HcsTerminateComputeSystem'
  | 'HcsGetComputeSystemProperties'
  | 'HcsModifyComputeSystem'
  | 'HcsSetComputeSystemCallback'
  | 'HcsEnumerateComputeSystems'
  | 'HcsGrantVmAccess'
  | 'HcsRevokeVmAccess'
  | 'NameToGuid'
  | 'ActivateLayer'
  | 'PrepareLayer'
  | 'GetLayerMountPath'
  | 'UnprepareLayer'
  | 'DeactivateLayer'
  | 'BfSetupFilter'
  | 'BfRemoveMapping'
  | BridgeFunction
  | (string & {});

/**
 * A GCS bridge request type the simulator's guest receives, as a fault / latency target
 * (`bridge:<MessageType>`; the trace names each bridge message the same way).
 */
export type BridgeFunction =
  | 'bridge:NegotiateProtocol'
  | 'bridge:ModifySettings'
  | 'bridge:Create'
  | 'bridge:Start'
  | 'bridge:ShutdownGraceful'
  | 'bridge:ShutdownForced'
  | 'bridge:ExecuteProcess'
  | 'bridge:WaitForProcess'
  | 'bridge:SignalProcess'
  | 'bridge:ResizeConsole'
  | 'bridge:GetProperties'
  | 'bridge:DumpStacks'
  | 'bridge:DeleteContainerState'
  | 'bridge:UpdateContainer'
  | 'bridge:LifecycleNotification'
  | 'bridge:ModifyServiceSettings';

/** One injected fault. */
export interface SimulatorFault {
  /** The HCS function whose calls fail. */
  fn: SimulatedFunction;
  /** Fail only the Nth matching call (1-based, counted from when the fault list was set); every matching call when omitted. */
  nth?: number;
  /** Glob (`*` = any characters) on the modify request's ResourcePath; Modify only. */
  resourcePath?: string;
  /** HRESULT to fail with (signed or unsigned 32-bit). */
  hr?: number;
  /** ErrorMessage of the result document. */
  message?: string;
  /** Apply the host half, then fail the guest half. */
  guestOnly?: boolean;
  /**
   * Park the operation (it never completes, like a hung HCS call) until `releaseHangs` or a
   * reset. Released, it fails with `hr` when one is given, else it is applied normally.
   */
  hang?: boolean;
  /** Instead of failing the call: crash the call's VM as the call arrives (see `SimulatorConfig.crash`); the call then runs against the stopped VM. */
  crash?: boolean;
  /** The crash's attribution (with `crash`). @default 'UnexpectedExit' */
  attribution?: SimulatorCrashAttribution;
  /**
   * Bridge faults (`fn: 'bridge:<MessageType>'`, the simulator's guest; native/README.md "Guest
   * connection"). A bridge fault with `hr` (or none of the actions below) makes the guest refuse
   * the request with that HRESULT, nothing applied. `hang` parks the answer until `releaseHangs`.
   */
  /** Glob on a `bridge:ModifySettings` request's `Request.ResourceType` (e.g. `MappedVirtualDisk`). */
  resourceType?: string;
  /** Answer after this many milliseconds (later requests overtake it: responses match by id). */
  delayMs?: number;
  /** Close the bridge connection instead of answering (the request is not applied); the guest redials. */
  drop?: boolean;
  /** Answer with an id the host never sent. */
  unknownId?: boolean;
  /** Answer with a message above the host's 64 KiB limit. */
  oversized?: boolean;
  /** Answer with a body that is not JSON (cut short; the request itself was applied). */
  badJson?: boolean;
}

/** What a simulated crash says stopped the VM (`Attribution` of its SystemExited event). */
export type SimulatorCrashAttribution = 'UnexpectedExit' | 'GuestCrash' | 'TripleFault' | 'WorkerExit';

/** Per-function latency. */
export interface SimulatorLatency {
  ms: number;
  jitterMs?: number;
}

/** The document `configureSimulator` sends to `HcsSimConfigure`; omitted fields are left as they are. */
export interface SimulatorConfig {
  /** Fixed latency of every operation (ms). */
  latencyMs?: number;
  /** Random extra latency, uniform in [0, jitterMs]. */
  jitterMs?: number;
  /** Per-function latency overrides. */
  latency?: Partial<Record<SimulatedFunction, SimulatorLatency>>;
  /** Operations executing at once in the simulator; 0 = unlimited. */
  concurrency?: number;
  /** Append one JSON line per API call to this file; null stops tracing. */
  trace?: string | null;
  /** Replaces the fault list. */
  faults?: SimulatorFault[];
  /** Remove every fault first. */
  clearFaults?: boolean;
  /** Drop every system, grant, fault and fault counter first (queued operations complete with HCS_E_TERMINATED); keeps latency, concurrency, trace and stateFile. */
  reset?: boolean;
  /** Persist the simulator's systems in this file (shared between processes). */
  stateFile?: string | null;
  /** Seed of the jitter random generator. */
  seed?: number;
  /**
   * Crash a running VM now (a test control, no HCS equivalent): it stops behind everybody's back
   * and every handle with an event callback gets SystemExited with ExitType `UnexpectedExit`,
   * Status 0x80370106 and the attribution (default `SystemExit` UnexpectedExit by Internal),
   * delivered on a simulator thread. INVALIDARG when no such VM is running.
   */
  crash?: { systemId: string; attribution?: SimulatorCrashAttribution };
  /**
   * `HcsCancelOperation`: `notImplemented` (default, as documented: always E_NOTIMPL) or
   * `honoured` (a DEVIATION from HCS, for tests only: a queued operation completes with E_ABORT).
   * A reset restores the default.
   */
  cancel?: 'notImplemented' | 'honoured';
  /**
   * What removing something that is not attached answers (the real code is undocumented):
   * `notFound` (default, HRESULT_FROM_WIN32(ERROR_NOT_FOUND) 0x80070490), `invalidState`
   * (HCS_E_INVALID_STATE 0x80370105) or `success`. A reset restores the default.
   */
  removeNotAttached?: 'notFound' | 'invalidState' | 'success';
  /** Let every operation and every bridge answer parked by a `hang` fault run now. */
  releaseHangs?: boolean;
  /**
   * Whether the simulator's guests dial the library's hvsocket listeners after start: `auto`
   * (default, as a booting guest does; retried every 100 ms until connected or the VM stops) or
   * `never` (for accept-deadline tests). A reset restores `auto`.
   */
  guestDial?: 'auto' | 'never';
  /**
   * Directory of the local hvsocket endpoints (`<dir>/<RuntimeId>-<ServiceId>.sock`) for VMs
   * started afterwards; null = the environment (`$UVM_HVSOCK_DIR`, else `$TMPDIR/uvm-hvsock`).
   * A reset restores null.
   */
  hvsockDir?: string | null;
  /**
   * Send an unsolicited ContainerNotification (`0x30100101`, id 0) on the system's GCS bridge now;
   * INVALIDARG when that bridge is not connected. Defaults: the all-zero container id, `UnexpectedExit`.
   */
  guestNotify?: { systemId: string; containerId?: string; type?: string };
  /**
   * `HcsModifyComputeSystem` with a `GuestRequest` on a VM whose create document had no
   * `VirtualMachine.GuestConnection`: `refuse` (default, as real HCS, which holds no guest
   * connection then: HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION 0x80370120, nothing applied) or
   * `accept` (a deviation, for tests). A reset restores the default.
   */
  guestRequestWithoutGuestConnection?: 'accept' | 'refuse';
}

/** The simulator's counters (`HcsSimQuery`). */
export interface SimulatorStats {
  /**
   * `SimulatorState` (device inventory) queries: `Library` = not flagged as a test helper's, which
   * no library code path may make (real HCS has no such property); `TestHelper` = `readSimulatorState`.
   */
  InventoryQueries: { Library: number; TestHelper: number };
  Operations: { Executing: number; Waiting: number; Hung: number; Open: number };
  /**
   * The simulator's guests: VMs with a guest, guests still dialling, connected GCS bridges,
   * connection attempts and bridge messages received (the last two count since load).
   */
  Guest: { Vms: number; Dialing: number; Bridges: number; Dials: number; Messages: number };
  /**
   * API calls received since the library was loaded, by function name — one per line a trace file
   * would get (`trace`), counted whether or not one is set; a reset keeps them. For counting calls
   * without the trace's cost (a JSON line and a write per call); read it twice and subtract.
   */
  Calls: Record<string, number>;
}

/** Settings objects are echoed exactly as they were sent (see native/README.md). */
export type SimulatorSettings = Record<string, unknown>;

/** The simulator's view of one compute system (`{"PropertyTypes":["SimulatorState"]}`). Every key is always present. */
export interface SimulatorState {
  Devices: {
    /** controller GUID (lower-case) → attachments by decimal LUN. */
    Scsi: Record<string, { Attachments: Record<string, SimulatorSettings> }>;
    VirtualSmb: { Shares: SimulatorSettings[] };
    /** device number → the device settings (absent for implicit devices) and its mappings by offset. */
    VirtualPMem: { Devices: Record<string, SimulatorSettings & { Mappings: Record<string, SimulatorSettings> }> };
    Plan9: { Shares: SimulatorSettings[] };
    MappedPipes: { Name: string; HostPath?: string }[];
    /** VMBus GUID (lower-case) → the VirtualPciDevice settings and whether the LCOW guest added it. */
    VirtualPci: Record<string, { Settings: SimulatorSettings; Guest: boolean }>;
  };
  Guest: {
    MappedVirtualDisks: SimulatorSettings[];
    VPMemDevices: SimulatorSettings[];
    MappedDirectories: SimulatorSettings[];
    CombinedLayers: SimulatorSettings[];
  };
  VmAccess: { VmId: string; Path: string }[];
  /** Host and guest resources added after create and still present. */
  HotAdded: number;
}

/** The standard properties document plus `SimulatorState`. */
export interface SimulatorProperties {
  Id: string;
  State: 'Created' | 'Running' | 'Stopped';
  SystemType: string;
  /** A fresh GUID per create, as real HCS reports it: the VM id hvsocket endpoints are bound to (never equal to `Id`). */
  RuntimeId: string;
  Owner?: string;
  SimulatorState: SimulatorState;
}

/** Whether the loaded HCS library is the simulator (loads the library). */
export function isSimulator(options: ComputeCoreLoadOptions = {}): boolean {
  return loadComputeCore(options).isSimulator;
}

/** Sends `config` to the simulator. NOT_SUPPORTED against real HCS; HcsError if the simulator rejects it. */
export function configureSimulator(config: SimulatorConfig, options: ComputeCoreLoadOptions = {}): void {
  if (config === null || typeof config !== 'object') {
    throw new UvmError('INVALID_ARGUMENT', 'configureSimulator: the config must be an object');
  }
  const lib = loadComputeCore(options);
  if (!lib.simConfigure) {
    throw new UvmError('NOT_SUPPORTED', `the HCS library ${lib.path} is not the simulator (no HcsSimConfigure)`);
  }
  const wire = {
    ...config,
    faults: config.faults?.map((f) => (f.hr === undefined ? f : { ...f, hr: f.hr | 0 })),
  };
  const hr = lib.simConfigure(JSON.stringify(wire));
  if (hr < 0) throw new HcsError({ op: 'HcsSimConfigure', hresult: hr });
}

/** The simulator's counters. NOT_SUPPORTED against real HCS. */
export function simulatorStats(options: ComputeCoreLoadOptions = {}): SimulatorStats {
  const lib = loadComputeCore(options);
  if (!lib.simQuery) throw new UvmError('NOT_SUPPORTED', `the HCS library ${lib.path} is not the simulator (no HcsSimQuery)`);
  const { hr, document } = lib.simQuery();
  if (hr < 0 || document === undefined) throw new HcsError({ op: 'HcsSimQuery', hresult: hr < 0 ? hr : -1 });
  return JSON.parse(document) as SimulatorStats;
}

/** Resets the simulator: no systems, no faults, zero latency, no trace. */
export function resetSimulator(options: ComputeCoreLoadOptions = {}): void {
  configureSimulator(
    { reset: true, clearFaults: true, latencyMs: 0, jitterMs: 0, latency: {}, concurrency: 0, trace: null },
    options,
  );
}

/** Reads the simulator's `SimulatorState` of `system`. */
export async function readSimulatorState(system: HcsSystem): Promise<SimulatorState> {
  return (await readSimulatorProperties(system)).SimulatorState;
}

/** The properties document of `system` including `SimulatorState`. */
export async function readSimulatorProperties(system: HcsSystem): Promise<SimulatorProperties> {
  // Flagged as a test helper's read: the simulator counts unflagged inventory queries, which no
  // library code path may make (SimulatorStats.InventoryQueries.Library).
  const doc = await system.properties({ PropertyTypes: ['SimulatorState'], PropertyQueries: { SimulatorState: { Caller: 'TestHelper' } } });
  const state = (doc as { SimulatorState?: unknown } | null)?.SimulatorState;
  if (state === null || typeof state !== 'object') {
    throw new UvmError('NOT_SUPPORTED', `compute system ${system.id} reported no SimulatorState (not the simulator?)`);
  }
  return doc as SimulatorProperties;
}

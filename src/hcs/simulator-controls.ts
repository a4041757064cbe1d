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

/** Names of the HCS functions a latency or fault rule can target. */
export type SimulatedFunction =
  | 'HcsCreateComputeSystem'
  | 'HcsOpenComputeSystem'
  | 'HcsStartComputeSystem'
  | 'HcsShutDownComputeSystem'
  | 'HcsTerminateComputeSystem'
  | 'HcsGetComputeSystemProperties'
  | 'HcsModifyComputeSystem'
  | 'HcsEnumerateComputeSystems'
  | 'HcsGrantVmAccess'
  | 'HcsRevokeVmAccess'
  | 'HcsCancelOperation'
  | 'HcsGetOperationResult'
  | 'HcsWaitForOperationResult'
  | 'NameToGuid'
  | (string & {});

/** One injected fault. */
export interface SimulatorFault {
  /** The HCS function whose calls fail. */
  fn: SimulatedFunction;
  /** Fail only the Nth matching call (1-based); every matching call when omitted. */
  nth?: number;
  /** Only modify requests whose ResourcePath matches this pattern (see native/README.md). */
  resourcePath?: string;
  /** HRESULT to fail with (signed or unsigned 32-bit). */
  hr?: number;
  /** ErrorMessage of the result document. */
  message?: string;
  /** Apply the host half, then fail the guest half. */
  guestOnly?: boolean;
  /** Never complete the operation until it is cancelled. */
  hang?: boolean;
}

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
  /** Operations the simulated HCS works on at once. */
  concurrency?: number;
  /** Append one JSON line per API call to this file; null stops tracing. */
  trace?: string | null;
  /** Faults to add. */
  faults?: SimulatorFault[];
  /** Remove every fault first. */
  clearFaults?: boolean;
  /** Forget every compute system and restore default settings first. */
  reset?: boolean;
  /** Persist the simulator's systems in this file (shared between processes). */
  stateFile?: string | null;
  /** Seed of the jitter random generator. */
  seed?: number;
}

/** One SCSI attachment in the simulator's device tree. */
export interface SimulatorScsiAttachment {
  Type?: string;
  Path?: string;
  ReadOnly?: boolean;
  [field: string]: unknown;
}

/**
 * The simulator's view of one compute system (`{"PropertyTypes":["SimulatorState"]}`). The
 * fields named here are the ones this library relies on; everything else the simulator reports
 * is kept (see native/README.md for the full shape).
 */
export interface SimulatorState {
  /** Device tree (host half) and guest model, as the simulator reports them. */
  [field: string]: unknown;
  /** Devices hot-added and not removed. */
  HotAdded?: number;
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

/** Resets the simulator: no systems, no faults, zero latency, no trace. */
export function resetSimulator(options: ComputeCoreLoadOptions = {}): void {
  configureSimulator({ reset: true, clearFaults: true, latencyMs: 0, jitterMs: 0, trace: null }, options);
}

/** Reads the simulator's `SimulatorState` of `system`. */
export async function readSimulatorState(system: HcsSystem): Promise<SimulatorState> {
  const doc = await system.properties({ PropertyTypes: ['SimulatorState'] });
  const state = (doc as { SimulatorState?: unknown } | null)?.SimulatorState;
  if (state === null || typeof state !== 'object') {
    throw new UvmError('NOT_SUPPORTED', `compute system ${system.id} reported no SimulatorState (not the simulator?)`);
  }
  return state as SimulatorState;
}

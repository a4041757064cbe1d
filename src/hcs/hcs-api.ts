import type { ServiceIdentifier } from 'inversify';
import { UvmError } from '../core/errors.js';
import type { ModifySettingRequest } from './schema.js';
import type { SystemExit } from './system-events.js';
import type { HvSocketTransport } from './hvsocket.js';

/** Per-call options of every HCS call. */
export interface HcsCallOptions {
  /**
   * Abort the wait: the call rejects with ABORTED at once. HCS cannot cancel an operation
   * (`HcsCancelOperation` is documented as not implemented), so one that reached HCS keeps its
   * slot until it completes; its late outcome is handled (docs/hcs.md, "Timeouts without cancel").
   */
  signal?: AbortSignal;
  /** Milliseconds before the call rejects with code TIMEOUT (same rules as `signal`). */
  timeoutMs?: number;
  /**
   * 0 (default) to 7: among the calls of one compute system that wait for a slot of the binding
   * (`maxConcurrentOperations`, `perSystemOperations`), higher ones start first; equal ones in
   * order of arrival. A waiting call is overtaken at most 4 × `maxConcurrentOperations` times, so
   * none starves, and systems still take turns whatever their priorities. The device managers
   * give a step that other calls follow the number of calls still to come in its chain (SCSI
   * attach 2, mount 1, unmount 2, unplug 1, a VPMEM Add 1), so that single calls, not chains,
   * wait. Other implementations may ignore it (`FakeHcs` checks and records it).
   */
  priority?: number;
}

/** The highest `HcsCallOptions.priority`. */
export const MAX_CALL_PRIORITY = 7;

/** The INVALID_ARGUMENT error of a `priority` that is not an integer in 0..MAX_CALL_PRIORITY; undefined when it is one. */
export function invalidPriority(priority: unknown): UvmError | undefined {
  if (typeof priority === 'number' && Number.isInteger(priority) && priority >= 0 && priority <= MAX_CALL_PRIORITY) return undefined;
  return new UvmError('INVALID_ARGUMENT', `priority must be an integer in 0..${MAX_CALL_PRIORITY}, got ${String(priority)}`);
}

/**
 * One compute system (a Utility VM) as the device managers see it. Implemented by the FFI binding
 * (`ComputeSystem`, owning one HCS_SYSTEM handle) and by the in-memory `FakeHcs` for unit tests.
 *
 * Every method rejects with `UvmError` code HANDLE_CLOSED after `close()`, and with an `HcsError`
 * (code HCS_ERROR, or TIMEOUT / ABORTED) when HCS reports a failure.
 */
export interface HcsSystem {
  /** The compute system id. */
  readonly id: string;
  start(options?: HcsCallOptions): Promise<void>;
  shutdown(options?: HcsCallOptions): Promise<void>;
  terminate(options?: HcsCallOptions): Promise<void>;
  /** `HcsModifyComputeSystem` with the serialized request. */
  modify(request: ModifySettingRequest, options?: HcsCallOptions): Promise<void>;
  /** `HcsGetComputeSystemProperties` with the serialized query; resolves with the parsed result document. */
  properties(query: Record<string, unknown>, options?: HcsCallOptions): Promise<unknown>;
  /** Releases the handle. Idempotent; waits for nothing (operations in flight keep their own references). */
  close(): void;
  /**
   * Resolves with the system's exit (the first SystemExited event, or the loss of the HCS service)
   * while the handle is open. Absent when the implementation has no events.
   */
  readonly exited?: Promise<SystemExit>;
}

/** A compute system as listed by `HcsEnumerateComputeSystems`. */
export interface HcsSystemSummary {
  Id: string;
  State?: string;
  SystemType?: string;
  [field: string]: unknown;
}

/** The Host Compute Service, as far as this library uses it. */
export interface HcsApi {
  /** `HcsCreateComputeSystem` with the serialized configuration document. */
  createComputeSystem(id: string, configuration: Record<string, unknown>, options?: HcsCallOptions): Promise<HcsSystem>;
  /** `HcsOpenComputeSystem(id, GENERIC_ALL)`. */
  openComputeSystem(id: string): Promise<HcsSystem>;
  /** `HcsEnumerateComputeSystems`. */
  enumerateComputeSystems(query?: Record<string, unknown>): Promise<HcsSystemSummary[]>;
  /** `HcsGrantVmAccess(vmId, path)`. */
  grantVmAccess(vmId: string, path: string): Promise<void>;
  /** `HcsRevokeVmAccess(vmId, path)`. */
  revokeVmAccess(vmId: string, path: string): Promise<void>;
  /** `NameToGuid`: the deterministic GUID (lower-case, no braces) HCS derives from a name. */
  nameToGuid(name: string): string;
  /**
   * For a fake whose guests live in this process: the delivery its UVMs default to, and the
   * transport their guests connect through (the orchestrator's own options win). Real HCS and the
   * simulator binding leave both unset.
   */
  readonly defaultGuestDelivery?: 'bridge' | 'hcs';
  readonly guestHvSocket?: HvSocketTransport;
}
/** DI token of the `HcsApi` port. */
export const HcsApi: ServiceIdentifier<HcsApi> = Symbol.for('uvm-orchestrator.HcsApi');

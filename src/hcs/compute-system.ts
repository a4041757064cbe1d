import { UvmError } from '../core/errors.js';
import { pendingPromises } from '../core/pending-promises.js';
import type { HcsCallOptions, HcsSystem } from './hcs-api.js';
import { HCS_GENERIC_ALL, toWide, wideDocument, type SystemHandle, type WideString } from './computecore.js';
import { HcsError, HResult } from './hcs-error.js';
import { lateOutcomeOf, OP_DISCARD, OP_RECYCLE_INPUT, OP_TEARDOWN, priorityFlags, withLateOutcome, type OperationCall, type OperationDriver } from './operation-driver.js';
import type { ModifySettingRequest } from './schema.js';
import { subscribeSystemEvents, systemExitOf, type EventSubscription, type HcsSystemEvent, type SystemExit } from './system-events.js';

/**
 * One HCS_SYSTEM handle. Every call runs as an HCS operation through the `OperationDriver`.
 *
 * After `close()` every call rejects with UvmError HANDLE_CLOSED. `close()` is idempotent and
 * returns at once; the native `HcsCloseComputeSystem` runs when no operation on the handle is in
 * flight any more (in-flight operations complete normally). Closing the handle does not stop the
 * system (see `ShouldTerminateOnLastHandleClosed` in the configuration).
 */
/** Default timeouts of one handle's calls (ms), used when a call gives no `timeoutMs`. */
export interface SystemTimeouts {
  /** start, shutdown, terminate and properties. */
  startTimeoutMs?: number;
  modifyTimeoutMs?: number;
}

/** One compute system opened or created through the FFI binding. */
export class ComputeSystem implements HcsSystem, AsyncDisposable {
  readonly id: string;
  readonly #driver: OperationDriver;
  readonly #startTimeoutMs: number | undefined;
  readonly #modifyTimeoutMs: number | undefined;
  #handle: SystemHandle | undefined;
  #closed = false;
  #inFlight = 0;
  /** Every `[Symbol.asyncDispose]()` waiting for the in-flight operations to finish. */
  #drained: (() => void)[] = [];
  /** Resolves with the first SystemExited (or ServiceDisconnect) event; stays pending after close. */
  readonly exited: Promise<SystemExit>;
  #resolveExited!: (exit: SystemExit) => void;
  #exit: SystemExit | undefined;
  #events: EventSubscription | undefined;

  /**
   * Takes ownership of `handle` (from HcsCreateComputeSystem or HcsOpenComputeSystem).
   * `options.startTimeoutMs` bounds `start()` and `options.modifyTimeoutMs` bounds `modify()` when
   * the caller gives no `timeoutMs`.
   */
  constructor(id: string, handle: SystemHandle, driver: OperationDriver, options: SystemTimeouts = {}) {
    this.id = id;
    this.#handle = handle;
    this.#driver = driver;
    this.#startTimeoutMs = options.startTimeoutMs;
    this.#modifyTimeoutMs = options.modifyTimeoutMs;
    this.exited = new Promise((resolve) => (this.#resolveExited = resolve));
  }

  /**
   * Registers this handle's event callback (`HcsSetComputeSystemCallback`), as hcsshim does right
   * after create or open. On failure the handle is closed (after a terminate when `created`, as
   * hcsshim treats any failure after create) and the call throws.
   */
  async #listen(created: boolean): Promise<void> {
    const { hr, subscription } = subscribeSystemEvents(this.#driver.library, this.#handle!, (event) => this.#onEvent(event));
    if (hr >= 0) {
      this.#events = subscription;
      return;
    }
    if (created) await this.terminate().catch(() => undefined);
    this.close();
    throw new HcsError({ op: 'HcsSetComputeSystemCallback', systemId: this.id, hresult: hr });
  }

  #onEvent(event: HcsSystemEvent): void {
    const exit = systemExitOf(event);
    if (!exit || this.#exit) return; // first exit wins (hcsshim)
    this.#exit = exit;
    this.#resolveExited(exit);
  }

  /** The exit reported by HCS, once its event arrived. */
  get exit(): SystemExit | undefined {
    return this.#exit;
  }

  /**
   * `HcsCreateComputeSystem` as an operation. On failure (or a cancel that HCS honoured) the handle
   * it returned is closed and the call rejects; a create that completed despite a cancel resolves.
   */
  static async create(
    driver: OperationDriver,
    id: string,
    configuration: Record<string, unknown>,
    options: { call?: HcsCallOptions } & SystemTimeouts = {},
  ): Promise<ComputeSystem> {
    const lib = driver.library;
    const idW = toWide(id);
    const configW = toWide(JSON.stringify(configuration));
    let handle: SystemHandle | null = null;
    try {
      await driver.run({
        op: 'HcsCreateComputeSystem',
        systemId: id,
        call: (operation) => {
          const r = lib.createComputeSystem(idW, configW, operation);
          handle = r.system;
          return r.hr;
        },
        inputs: [idW, configW],
        options: options.call,
      });
    } catch (e) {
      const late = lateOutcomeOf(e);
      const created: SystemHandle | null = handle;
      if (created && late) {
        // HCS is still creating it: the handle stays open until the outcome is known; a late
        // success is undone (terminated, as hcsshim does after any create failure), then closed.
        // The error's late outcome settles once that is done.
        withLateOutcome(
          e as object,
          late.then(async (o) => {
            if (o.applied) {
              await driver
                .run({ op: 'HcsTerminateComputeSystem', systemId: id, teardown: true, call: (op) => lib.terminateComputeSystem(created, op, null), options: { timeoutMs: options.startTimeoutMs } })
                .catch(() => undefined);
            }
            lib.closeComputeSystem(created);
            return o;
          }),
        );
      } else if (created) {
        lib.closeComputeSystem(created);
      }
      throw e;
    }
    if (!handle) {
      throw new HcsError({ op: 'HcsCreateComputeSystem', systemId: id, hresult: HResult.E_POINTER, text: 'no handle returned' });
    }
    const system = new ComputeSystem(id, handle, driver, { startTimeoutMs: options.startTimeoutMs, modifyTimeoutMs: options.modifyTimeoutMs });
    await system.#listen(true);
    return system;
  }

  /** `HcsOpenComputeSystem(id, GENERIC_ALL)` (a blocking call, run off the main thread by the driver). */
  static async open(driver: OperationDriver, id: string, options: SystemTimeouts & { call?: HcsCallOptions } = {}): Promise<ComputeSystem> {
    const lib = driver.library;
    const { hr, system } = await driver.runBlocking({
      op: 'HcsOpenComputeSystem',
      systemId: id,
      call: () => lib.openComputeSystem(id, HCS_GENERIC_ALL),
      options: options.call,
      // Opened after the caller gave up: nobody owns the handle.
      undoLate: (r) => {
        if (r.system) lib.closeComputeSystem(r.system);
      },
    });
    if (hr < 0 || !system) {
      if (system) lib.closeComputeSystem(system);
      throw new HcsError({ op: 'HcsOpenComputeSystem', systemId: id, hresult: hr < 0 ? hr : HResult.E_POINTER });
    }
    const opened = new ComputeSystem(id, system, driver, { startTimeoutMs: options.startTimeoutMs, modifyTimeoutMs: options.modifyTimeoutMs });
    await opened.#listen(false);
    return opened;
  }

  /** The default timeout of `modify` (ms), used when a call gives none. */
  get modifyTimeoutMs(): number | undefined {
    return this.#modifyTimeoutMs;
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Operations on this handle not finished yet. */
  get inFlight(): number {
    return this.#inFlight;
  }

  start(options?: HcsCallOptions): Promise<void> {
    return this.#void('HcsStartComputeSystem', START, undefined, options, this.#startTimeoutMs, 0);
  }

  shutdown(options?: HcsCallOptions): Promise<void> {
    return this.#void('HcsShutDownComputeSystem', SHUT_DOWN, undefined, options, this.#startTimeoutMs, OP_TEARDOWN);
  }

  terminate(options?: HcsCallOptions): Promise<void> {
    return this.#void('HcsTerminateComputeSystem', TERMINATE, undefined, options, this.#startTimeoutMs, OP_TEARDOWN);
  }

  modify(request: ModifySettingRequest, options?: HcsCallOptions): Promise<void> {
    if (request === null || typeof request !== 'object') {
      return Promise.reject(new UvmError('INVALID_ARGUMENT', 'modify: the request must be an object'));
    }
    return this.#void('HcsModifyComputeSystem', MODIFY, JSON.stringify(request), options, this.#modifyTimeoutMs, 0);
  }

  async properties(query: Record<string, unknown>, options?: HcsCallOptions): Promise<unknown> {
    if (query === null || typeof query !== 'object') {
      throw new UvmError('INVALID_ARGUMENT', 'properties: the query must be an object');
    }
    const document = await this.#run(
      'HcsGetComputeSystemProperties',
      PROPERTIES,
      JSON.stringify(query),
      options,
      this.#startTimeoutMs,
      0,
    );
    if (document === undefined) return {};
    try {
      return JSON.parse(document) as unknown;
    } catch (e) {
      throw new UvmError('HCS_ERROR', `HcsGetComputeSystemProperties ${this.id}: unparseable result document`, {
        cause: e,
        details: { document },
      });
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#inFlight === 0) this.#release();
  }

  /** Closes the handle and waits until no operation on it is in flight. */
  async [Symbol.asyncDispose](): Promise<void> {
    this.close();
    if (this.#inFlight > 0) await pendingPromises.track('dispose-waiter', new Promise<void>((resolve) => this.#drained.push(resolve)));
  }

  #release(): void {
    const handle = this.#handle;
    this.#handle = undefined;
    if (handle) this.#driver.library.closeComputeSystem(handle);
    // HCS delivers no event after close; one already on its way is dropped.
    this.#events?.cancel();
    this.#events = undefined;
    for (const drained of this.#drained.splice(0)) drained();
  }

  /** `#run` of a call whose result document is not wanted (resolves with undefined). */
  #void(
    op: string,
    call: OperationCall,
    document: string | undefined,
    options: HcsCallOptions | undefined,
    defaultTimeoutMs: number | undefined,
    flags: number,
  ): Promise<void> {
    return this.#run(op, call, document, options, defaultTimeoutMs, flags | OP_DISCARD) as Promise<unknown> as Promise<void>;
  }

  /**
   * One operation on the handle (`call(lib, handle, operation, document)`). The hot path of every
   * modify: no async function, no closure per call, the document in a reused buffer; the handle
   * (and the buffer) stay while the operation is in HCS (even after its caller gave up), then
   * `#operationDone` counts it out. `defaultTimeoutMs` applies when `options` give no timeout.
   */
  #run(
    op: string,
    call: OperationCall,
    document: string | undefined,
    options: HcsCallOptions | undefined,
    defaultTimeoutMs: number | undefined,
    flags: number,
  ): Promise<string | undefined> {
    const handle = this.#handle;
    if (this.#closed || !handle) {
      return Promise.reject(
        new UvmError('HANDLE_CLOSED', `${op} ${this.id}: the compute system handle has already been closed`, {
          details: { systemId: this.id, op },
        }),
      );
    }
    const priority = priorityFlags(options?.priority);
    if (typeof priority !== 'number') return Promise.reject(priority);
    this.#inFlight++;
    const timeoutMs = options?.timeoutMs ?? defaultTimeoutMs;
    const signal = options?.signal;
    const input = document === undefined ? null : wideDocument(document);
    return this.#driver.operation(op, this.id, call, handle, input, timeoutMs, signal, (input === null ? flags : flags | OP_RECYCLE_INPUT) | priority, this.#operationDone);
  }

  /** One operation on the handle is over in HCS. */
  readonly #operationDone = (): void => {
    this.#inFlight--;
    if (this.#closed && this.#inFlight === 0) this.#release();
  };
}

// The HCS calls on a system handle (`target`: the handle; `input`: the UTF-16 document or null).
const START: OperationCall = (lib, h, op, doc) => lib.startComputeSystem(h as SystemHandle, op, doc as WideString | null);
const SHUT_DOWN: OperationCall = (lib, h, op, doc) => lib.shutDownComputeSystem(h as SystemHandle, op, doc as WideString | null);
const TERMINATE: OperationCall = (lib, h, op, doc) => lib.terminateComputeSystem(h as SystemHandle, op, doc as WideString | null);
const MODIFY: OperationCall = (lib, h, op, doc) => lib.modifyComputeSystem(h as SystemHandle, op, doc as WideString);
const PROPERTIES: OperationCall = (lib, h, op, doc) => lib.getComputeSystemProperties(h as SystemHandle, op, doc as WideString | null);

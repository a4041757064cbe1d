
import { UvmError } from '../core/errors.js';
import { retainShape } from '../core/retained-shapes.js';
import type { HcsCallOptions, HcsSystem } from '../hcs/hcs-api.js';
import { formatHresult, isAlreadyStopped, isInvalidState, isNotExist } from '../hcs/hcs-error.js';
import type { ModifySettingRequest, GuestRequest } from '../hcs/schema.js';
import type { SystemExit } from '../hcs/system-events.js';
import type { GuestConnection } from './guest-connection.js';

/** How a Utility VM exited, as `UtilityVm.exited` reports it. */
export interface UvmExit extends SystemExit {
  /** True when this UtilityVm did not ask for it (no `terminate()` was in progress): a crash, a kill, a guest power-off. */
  unexpected: boolean;
  /** One line naming the exit, e.g. `UVM pod-1 exited unexpectedly: UnexpectedExit, status 0x80370106 (SystemExit UnexpectedExit, initiator Internal)`. */
  message: string;
}

/**
 * How long a call that HCS failed with "VM not running" waits for the SystemExited event once a
 * properties query has shown the VM stopped (the event is on its way on an HCS thread). A safety
 * net only: the event normally follows within milliseconds.
 */
const EXIT_EVENT_GRACE_MS = 10_000;

/** One line for people naming an exit. */
export function describeExit(uvmId: string, exit: SystemExit, unexpected: boolean): string {
  const by = exit.attribution
    .map((record) =>
      Object.entries(record)
        .map(([kind, v]) => {
          const d = (v ?? {}) as Record<string, unknown>;
          const parts = [d.Detail, d.Initiator === undefined ? undefined : `initiator ${String(d.Initiator)}`].filter((p) => p !== undefined);
          return parts.length > 0 ? `${kind} ${parts.join(', ')}` : kind;
        })
        .join(', '),
    )
    .join('; ');
  const status = exit.status !== 0 ? `, status ${formatHresult(exit.status)}` : '';
  return `UVM ${uvmId} exited${unexpected ? ' unexpectedly' : ''}: ${exit.exitType}${status}${by ? ` (${by})` : ''}`;
}

/**
 * Watches one UVM's compute system for its exit (SystemExited, or the loss of the HCS service) and
 * guards the calls made on it. After an unexpected exit — one that no `terminate()` asked for —
 * every call in flight rejects at once with UVM_EXITED and every later call rejects with it before
 * reaching HCS or the guest; the UVM's hooks (`onUnexpectedExit`) run first, so the managers are
 * already in the `terminated` phase (releases then make no HCS call). A call that fails with "VM
 * not running" (HCS) or BRIDGE_FAILED (the guest connection dropped with the VM) before the event
 * has arrived asks HCS for the VM's state and, if it is stopped, waits for the event (bounded) so
 * that it too rejects with UVM_EXITED.
 *
 * The class itself is the DI service identifier (one instance per UVM scope).
 */
export class UvmExitMonitor {
  readonly exited: Promise<UvmExit>;
  #resolveExited!: (exit: UvmExit) => void;
  #exit: UvmExit | undefined;
  #terminateRequested = false;
  readonly #inFlight = new Set<GuardedCall>();
  readonly #hooks: (() => void)[] = [];

  constructor(
    readonly uvmId: string,
    private readonly system: HcsSystem,
  ) {
    this.exited = new Promise((resolve) => (this.#resolveExited = resolve));
    void system.exited?.then((exit) => this.#onExit(exit));
  }

  /** The exit, once it is known. */
  get exit(): UvmExit | undefined {
    return this.#exit;
  }

  /** The unexpected exit, if one happened. */
  get unexpectedExit(): UvmExit | undefined {
    return this.#exit?.unexpected ? this.#exit : undefined;
  }

  /** From now on an exit is the one the caller asked for (terminate). */
  expectExit(): void {
    this.#terminateRequested = true;
  }

  /** Runs `hook` once, before in-flight calls are rejected, if the VM exits unexpectedly. */
  onUnexpectedExit(hook: () => void): void {
    if (this.unexpectedExit) hook();
    else this.#hooks.push(hook);
  }

  #onExit(systemExit: SystemExit): void {
    if (this.#exit) return;
    const unexpected = !this.#terminateRequested;
    const exit: UvmExit = { ...systemExit, unexpected, message: describeExit(this.uvmId, systemExit, unexpected) };
    this.#exit = exit;
    if (unexpected) {
      for (const hook of this.#hooks.splice(0)) hook();
      for (const call of [...this.#inFlight]) call.reject(this.#exitedError(call.op, exit));
      this.#inFlight.clear();
    }
    this.#resolveExited(exit);
  }

  /** The compute system with every call guarded (what the UVM's managers get). */
  guardSystem(): HcsSystem {
    const s = this.system;
    const guarded: HcsSystem = {
      id: s.id,
      start: (o?: HcsCallOptions) => this.#guard('HcsStartComputeSystem', () => s.start(o)),
      shutdown: (o?: HcsCallOptions) => this.#guard('HcsShutDownComputeSystem', () => s.shutdown(o)),
      terminate: (o?: HcsCallOptions) => this.#guard('HcsTerminateComputeSystem', () => s.terminate(o)),
      modify: (r: ModifySettingRequest, o?: HcsCallOptions) => this.#guard('HcsModifyComputeSystem', () => s.modify(r, o)),
      properties: (q: Record<string, unknown>, o?: HcsCallOptions) => this.#guard('HcsGetComputeSystemProperties', () => s.properties(q, o)),
      close: () => s.close(),
      exited: s.exited,
    };
    return guarded;
  }

  /** The shim's guest connection with every call guarded. */
  guardConnection(connection: GuestConnection): GuestConnection {
    return {
      modifySettings: (request: GuestRequest, options?: HcsCallOptions) => this.#guard('ModifySettings', () => connection.modifySettings(request, options)),
    };
  }

  /** The UVM_EXITED error for `op` after an unexpected exit, else undefined. */
  failureFor(op: string): UvmError | undefined {
    const exit = this.unexpectedExit;
    return exit ? this.#exitedError(op, exit) : undefined;
  }

  #exitedError(op: string, exit: UvmExit, cause?: unknown): UvmError {
    return new UvmError('UVM_EXITED', `${op} ${this.uvmId}: ${exit.message}`, {
      cause,
      details: { uvmId: this.uvmId, op, exitType: exit.exitType, status: formatHresult(exit.status) },
    });
  }

  #guard<T>(op: string, call: () => Promise<T>): Promise<T> {
    const failed = this.unexpectedExit;
    if (failed) return Promise.reject(this.#exitedError(op, failed));
    // One object per call and a method, not closures made per call (their optimized code would
    // not survive a full collection between bursts).
    const guarded = new GuardedCall(op);
    this.#inFlight.add(guarded);
    void this.#settle(guarded, call);
    return guarded.promise as Promise<T>;
  }

  /** Runs `call` and settles `guarded` with its outcome (a failure classified), unless an exit did first. */
  async #settle(guarded: GuardedCall, call: () => Promise<unknown>): Promise<void> {
    let value: unknown;
    try {
      value = await call();
    } catch (err) {
      this.#inFlight.delete(guarded);
      this.#classify(guarded.op, err).then(guarded.reject, guarded.reject);
      return;
    }
    this.#inFlight.delete(guarded);
    guarded.resolve(value);
  }

  /** The error a failed call rejects with: UVM_EXITED when the failure is the VM's unexpected exit. */
  async #classify(op: string, err: unknown): Promise<unknown> {
    const known = this.unexpectedExit;
    if (known) return this.#exitedError(op, known, err);
    if (this.#terminateRequested || this.system.exited === undefined) return err;
    // "Not running" from HCS, or the guest's bridge gone (the guest dies with the VM; its
    // connection can drop before HCS's SystemExited event has been delivered).
    if (!(isInvalidState(err) || isAlreadyStopped(err) || isNotExist(err) || UvmError.is(err, 'BRIDGE_FAILED'))) return err;
    if (!(await this.#stopped())) return err;
    const exit = await this.#waitForExit();
    return exit?.unexpected ? this.#exitedError(op, exit, err) : err;
  }

  /** Whether HCS reports the VM stopped (or gone). */
  async #stopped(): Promise<boolean> {
    try {
      const props = (await this.system.properties({})) as { State?: unknown } | null;
      return props?.State === 'Stopped';
    } catch (e) {
      return isNotExist(e);
    }
  }

  async #waitForExit(): Promise<UvmExit | undefined> {
    if (this.#exit) return this.#exit;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([this.exited, new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), EXIT_EVENT_GRACE_MS)))]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** The resolving functions the shared executor last captured (taken at once by `GuardedCall`). */
let capturedResolve: ((value: unknown) => void) | undefined;
let capturedReject: ((error: unknown) => void) | undefined;
function captureResolvers(resolve: (value: unknown) => void, reject: (error: unknown) => void): void {
  capturedResolve = resolve;
  capturedReject = reject;
}

/** One guarded call in flight: its caller's promise, settled by the call's outcome or by an unexpected exit. */
class GuardedCall {
  readonly promise: Promise<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;

  constructor(readonly op: string) {
    // One shared executor instead of a closure per call.
    this.promise = new Promise(captureResolvers);
    this.resolve = capturedResolve!;
    this.reject = capturedReject!;
    capturedResolve = capturedReject = undefined;
  }
}
// Its map survives full collections (core/retained-shapes.ts); the promise it holds never settles.
retainShape(new GuardedCall(''));

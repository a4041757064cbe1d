/**
 * What to do about `modify` calls that were given up at their deadline (or abort) while HCS was
 * still working on them. HCS cannot cancel: such a call may still be applied later. This wrapper
 * of one UVM's `HcsSystem` keeps the resource it touches (its ResourcePath, or the guest path of a
 * guest-only request) taken until the outcome is known (docs/hcs.md, "Timeouts without cancel"):
 *
 * - a late **success of an Add** is undone: the same document with `RequestType: "Remove"` is sent
 *   by the wrapper itself, with retries, until it succeeds or the resource is reported gone;
 * - a late **failure** frees the resource;
 * - meanwhile `describe()` lists the resource (`leftover: true`), a later Add of it waits for
 *   the outcome (bounded by its own deadline), a Remove of it is taken over (the wrapper undoes a
 *   late success anyway) and a retried Remove of an in-doubt removal is answered by its outcome.
 */
import { UvmError } from '../core/errors.js';
import type { EntryState } from '../core/refcounted-table.js';
import type { HcsCallOptions, HcsSystem } from './hcs-api.js';
import type { SystemExit } from './system-events.js';
import { HcsError, HResult, isNotExist, isVmUnavailable } from './hcs-error.js';
import { lateOutcomeOf } from './operation-driver.js';
import type { GuestRequest, ModifySettingRequest } from './schema.js';

/** One resource whose last operation's outcome is unknown, or whose late success is being undone. */
export interface LeftoverInfo {
  /** The kind of resource the request touches (as the device managers name them). */
  kind: LeftoverKind;
  /** The ResourcePath (`/<Name>` added for a share), or `guest:<ResourceType>:<path>` for a guest-only request. */
  key: string;
  /** `creating`: an Add in doubt; `destroying`: a removal in doubt or the undo running; `teardown-failed`: the undo failed, retried later. */
  state: EntryState;
  refCount: 0;
  leftover: true;
  /** Undo attempts so far. */
  attempts: number;
  error?: string;
}

export type LeftoverKind = 'scsi-attachment' | 'scsi-mount' | 'vsmb-share' | 'vpmem-device' | 'vpmem-mapping' | 'plan9-share' | 'mapped-pipe';

/** The kind of resource a request touches, from its ResourcePath or guest ResourceType. */
function kindOf(request: ModifySettingRequest): LeftoverKind {
  const path = request.ResourcePath;
  if (typeof path === 'string') {
    if (path.includes('/Scsi/')) return 'scsi-attachment';
    if (path.includes('/VirtualSmb/')) return 'vsmb-share';
    if (path.includes('/VirtualPMem/')) return path.includes('/Mappings/') ? 'vpmem-mapping' : 'vpmem-device';
    if (path.includes('/Plan9/')) return 'plan9-share';
    if (path.includes('MappedPipes')) return 'mapped-pipe';
  }
  switch (request.GuestRequest?.ResourceType) {
    case 'VPMemDevice':
      return 'vpmem-device';
    case 'MappedDirectory':
      return 'plan9-share';
    default:
      return 'scsi-mount';
  }
}

interface LateRecord {
  key: string;
  request: ModifySettingRequest;
  state: EntryState;
  attempts: number;
  error: unknown;
  /** Settles when the key is free again; `removed` tells whether the resource is known to be gone. */
  done: Promise<{ removed: boolean }>;
}

/** Retry delays of an undo (ms): doubling from the first, capped. */
export interface LeftoverRetryPolicy {
  firstDelayMs: number;
  maxDelayMs: number;
}

const DEFAULT_RETRY: LeftoverRetryPolicy = { firstDelayMs: 50, maxDelayMs: 5_000 };

function guestKey(g: GuestRequest | undefined): string | undefined {
  if (!g || typeof g !== 'object') return undefined;
  const s = (g.Settings ?? {}) as { [k: string]: unknown };
  const path = s.MountPath ?? s.ContainerPath ?? s.ContainerRootPath ?? `${String(s.Controller ?? 0)}:${String(s.Lun ?? 0)}`;
  return `guest:${g.ResourceType}:${String(path)}`;
}

/** The host resource: the ResourcePath, plus the share name for collections (VSMB / Plan9 `Shares`). */
function hostKey(request: ModifySettingRequest): string | undefined {
  if (typeof request.ResourcePath !== 'string') return undefined;
  const name = request.Settings?.Name;
  return typeof name === 'string' ? `${request.ResourcePath}/${name}` : request.ResourcePath;
}

/** The resource a modify request touches. */
export function resourceKeyOf(request: ModifySettingRequest): string | undefined {
  return hostKey(request) ?? guestKey(request.GuestRequest);
}

/** Every resource a request touches: its host half and its guest half. */
function keysOf(request: ModifySettingRequest): string[] {
  const keys: string[] = [];
  const host = hostKey(request);
  if (host !== undefined) keys.push(host);
  const guest = guestKey(request.GuestRequest);
  if (guest !== undefined) keys.push(guest);
  return keys;
}

function requestTypeOf(request: ModifySettingRequest): string | undefined {
  return request.RequestType ?? request.GuestRequest?.RequestType;
}

/** The document that undoes an applied Add: both halves with RequestType Remove. */
export function undoOf(request: ModifySettingRequest): ModifySettingRequest {
  const undo: ModifySettingRequest = { ...request };
  if (undo.RequestType !== undefined) undo.RequestType = 'Remove';
  if (undo.GuestRequest) undo.GuestRequest = { ...undo.GuestRequest, RequestType: 'Remove' };
  return undo;
}

/** Awaits `p`, bounded by the caller's deadline / abort (nothing was sent to HCS then). */
function waitBounded<T>(p: Promise<T>, request: ModifySettingRequest, systemId: string, options: HcsCallOptions | undefined): Promise<T> {
  if (!options?.signal && options?.timeoutMs === undefined) return p;
  return new Promise<T>((resolve, reject) => {
    const fail = (timeout: boolean): void => {
      cleanup();
      reject(
        new HcsError({
          op: 'HcsModifyComputeSystem',
          systemId,
          hresult: timeout ? HResult.HCS_E_OPERATION_TIMEOUT : HResult.E_ABORT,
          code: timeout ? 'TIMEOUT' : 'ABORTED',
          text: `${timeout ? `timed out after ${options.timeoutMs} ms` : 'aborted'} waiting for an earlier operation on ${resourceKeyOf(request)} whose outcome is not known yet; the call was not started`,
        }),
      );
    };
    const onAbort = (): void => fail(false);
    const timer = options.timeoutMs !== undefined ? setTimeout(() => fail(true), options.timeoutMs) : undefined;
    const cleanup = (): void => {
      if (timer) clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
    };
    if (options.signal?.aborted) return fail(false);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        cleanup();
        resolve(v);
      },
      (e: unknown) => {
        cleanup();
        reject(e);
      },
    );
  });
}

/** `HcsSystem` of one UVM with late outcomes handled (see the module comment). */
export class LateOutcomeSystem implements HcsSystem {
  readonly #system: HcsSystem;
  readonly #records = new Map<string, LateRecord>();
  /**
   * Resources removed by a removal applied after its caller gave up: the caller's retry of that
   * removal is answered from here (HCS would answer "not attached"), until the resource is added again.
   */
  readonly #removedLate = new Set<string>();
  readonly #retry: LeftoverRetryPolicy;
  #stopped = false;
  #idle: { promise: Promise<void>; resolve: () => void } | undefined;

  readonly #defaultModifyTimeoutMs: number | undefined;

  /**
   * `options.defaultModifyTimeoutMs` bounds a wait for an earlier outcome when the caller gives no
   * timeout (default: the wrapped system's `modifyTimeoutMs`, if it has one).
   */
  constructor(system: HcsSystem, options: { retry?: LeftoverRetryPolicy; defaultModifyTimeoutMs?: number } = {}) {
    this.#system = system;
    this.#retry = options.retry ?? DEFAULT_RETRY;
    const own = (system as { modifyTimeoutMs?: unknown }).modifyTimeoutMs;
    this.#defaultModifyTimeoutMs = options.defaultModifyTimeoutMs ?? (typeof own === 'number' ? own : undefined);
  }

  get id(): string {
    return this.#system.id;
  }

  /** The wrapped system. */
  get inner(): HcsSystem {
    return this.#system;
  }

  /** The wrapped system's exit (undefined when it has no events). */
  get exited(): Promise<SystemExit> | undefined {
    return this.#system.exited;
  }

  start(options?: HcsCallOptions): Promise<void> {
    return this.#system.start(options);
  }

  shutdown(options?: HcsCallOptions): Promise<void> {
    return this.#system.shutdown(options);
  }

  terminate(options?: HcsCallOptions): Promise<void> {
    return this.#system.terminate(options);
  }

  properties(query: Record<string, unknown>, options?: HcsCallOptions): Promise<unknown> {
    return this.#system.properties(query, options);
  }

  close(): void {
    this.stop();
    this.#system.close();
  }

  /** The VM is gone (terminated or closed): nothing is left to undo; pending records are dropped. */
  stop(): void {
    this.#stopped = true;
    this.#checkIdle();
  }

  async modify(request: ModifySettingRequest, options?: HcsCallOptions): Promise<void> {
    const object = request !== null && typeof request === 'object';
    // The resource's key matters only while something applied late is pending (rare) or once this
    // call ends late: the usual call computes none (no strings, arrays or lookups per call).
    if (object && (this.#records.size > 0 || this.#removedLate.size > 0)) {
      const key = resourceKeyOf(request);
      if (key !== undefined) {
        const type = requestTypeOf(request);
        if (type === 'Remove' && this.#removedLate.delete(key)) return;
        if (type === 'Add') for (const k of keysOf(request)) this.#removedLate.delete(k);
        const busy = this.#records.get(key);
        if (busy) {
          // The wrapper removes a late-applied Add itself: a removal of it is taken over.
          if (type === 'Remove' && requestTypeOf(busy.request) === 'Add') return;
          const { removed } = await waitBounded(busy.done, request, this.id, this.#bounded(options));
          if (type === 'Remove' && removed) {
            for (const k of keysOf(busy.request)) this.#removedLate.delete(k);
            return;
          }
        }
      }
    }
    try {
      await this.#system.modify(request, options);
    } catch (err) {
      const late = lateOutcomeOf(err);
      const key = late && !this.#stopped && object ? resourceKeyOf(request) : undefined;
      if (key !== undefined) this.#track(key, request, late!);
      throw err;
    }
  }

  /** The caller's options, with the wrapped system's default modify timeout when they give none. */
  #bounded(options: HcsCallOptions | undefined): HcsCallOptions | undefined {
    const fallback = this.#defaultModifyTimeoutMs;
    return options?.timeoutMs === undefined && fallback !== undefined ? { ...options, timeoutMs: fallback } : options;
  }

  /** Resources in doubt or being undone (none once the VM is gone). */
  describe(): LeftoverInfo[] {
    if (this.#stopped) return [];
    return [...this.#records.values()].map((r) => ({
      kind: kindOf(r.request),
      key: r.key,
      state: r.state,
      refCount: 0,
      leftover: true,
      attempts: r.attempts,
      ...(r.error !== undefined ? { error: String(r.error) } : {}),
    }));
  }

  /** Resolves once no outcome is in doubt and no late success is waiting to be undone. */
  settled(): Promise<void> {
    if (this.#records.size === 0 || this.#stopped) return Promise.resolve();
    if (!this.#idle) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#idle = { promise, resolve };
    }
    return this.#idle.promise;
  }

  #track(key: string, request: ModifySettingRequest, late: Promise<{ applied: boolean }>): void {
    const isAdd = requestTypeOf(request) === 'Add';
    const record: LateRecord = {
      key,
      request,
      state: isAdd ? 'creating' : 'destroying',
      attempts: 0,
      error: undefined,
      done: undefined as unknown as Promise<{ removed: boolean }>,
    };
    record.done = (async () => {
      const outcome = await late;
      if (!outcome.applied) return { removed: false };
      if (!isAdd) {
        const removed = requestTypeOf(request) === 'Remove';
        if (removed && !this.#stopped) for (const k of keysOf(request)) this.#removedLate.add(k);
        return { removed };
      }
      await this.#undo(record);
      return { removed: true };
    })().finally(() => {
      if (this.#records.get(key) === record) this.#records.delete(key);
      this.#checkIdle();
    });
    this.#records.set(key, record);
  }

  /** Removes a late-applied Add, retrying until it is gone or the VM is. */
  async #undo(record: LateRecord): Promise<void> {
    const undo = undoOf(record.request);
    let delay = this.#retry.firstDelayMs;
    for (;;) {
      if (this.#stopped) return;
      record.state = 'destroying';
      record.attempts++;
      try {
        await this.#system.modify(undo);
        return;
      } catch (err) {
        const late = lateOutcomeOf(err);
        if (late && (await late).applied) return;
        if (isNotExist(err) || isVmUnavailable(err) || UvmError.is(err, 'HANDLE_CLOSED') || UvmError.is(err, 'UVM_EXITED')) return;
        record.state = 'teardown-failed';
        record.error = err;
      }
      await new Promise<void>((resolve) => setTimeout(resolve, delay).unref());
      delay = Math.min(delay * 2, this.#retry.maxDelayMs);
    }
  }

  #checkIdle(): void {
    if ((this.#records.size === 0 || this.#stopped) && this.#idle) {
      const idle = this.#idle;
      this.#idle = undefined;
      idle.resolve();
    }
  }
}

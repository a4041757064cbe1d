import { randomUUID } from 'node:crypto';
import { UvmError } from '../core/errors.js';
import type { HvSocketTransport } from './hvsocket.js';
import { DrainingGuestTransport } from './in-process-guest.js';
import { invalidPriority, type HcsApi, type HcsCallOptions, type HcsSystem, type HcsSystemSummary } from './hcs-api.js';
import type { SystemExit } from './system-events.js';
import { HcsError } from './hcs-error.js';
import type { ModifySettingRequest } from './schema.js';

/** One call the fake received, in arrival order. */
export interface FakeHcsCall {
  fn: 'create' | 'open' | 'start' | 'shutdown' | 'terminate' | 'modify' | 'properties' | 'grant' | 'revoke';
  id: string;
  /** A deep copy (via JSON) of the document argument, as it would go on the wire. */
  doc: unknown;
  /** The call's `HcsCallOptions.priority`, when one was given (checked as the binding checks it, recorded: the fake has no queue). */
  priority?: number;
}

/** Decides whether a call fails: return an Error to fail it, undefined to let it through. */
export type FakeFault = (call: FakeHcsCall) => Error | undefined;

/**
 * A pure TypeScript, in-memory stand-in for HCS, for unit tests of code that depends on `HcsApi`.
 *
 * It records every call (`calls`), keeps a small stateful model of what is attached (host
 * resources by ResourcePath [+ share Name], guest resources by type + path) so a test can assert
 * that nothing leaked, rejects an Add of something present and a Remove of something absent with
 * the HcsError and HRESULT HCS uses (ERROR_ALREADY_EXISTS, ERROR_NOT_FOUND), and lets tests inject failures (`failWhen`) or hold calls until released (`gate`).
 * It does not validate documents; the native simulator does that for integration tests.
 */
export class FakeHcs implements HcsApi {
  /** FakeHcs applies GuestRequests itself: its UVMs default to HCS-owned delivery. */
  readonly defaultGuestDelivery = 'hcs' as const;
  /** Its guests answer at once (LCOW entropy and log) from this process. */
  readonly guestHvSocket: HvSocketTransport = new DrainingGuestTransport();
  readonly calls: FakeHcsCall[] = [];
  readonly systems = new Map<string, FakeComputeSystem>();
  readonly grants = new Set<string>();
  #faults: FakeFault[] = [];
  #gates: { match: (c: FakeHcsCall) => boolean; promise: Promise<void> }[] = [];

  /** Fails every call for which `fault` returns an error (until `clearFaults`). */
  failWhen(fault: FakeFault): void {
    this.#faults.push(fault);
  }

  /** Fails the next call matching `match` once, with `error` (default: an HcsError-like UvmError). */
  failNext(match: (c: FakeHcsCall) => boolean, error?: Error): void {
    let fired = false;
    this.failWhen((c) => {
      if (fired || !match(c)) return undefined;
      fired = true;
      return error ?? new UvmError('HCS_ERROR', `injected failure of ${c.fn}`);
    });
  }

  clearFaults(): void {
    this.#faults = [];
  }

  /**
   * Holds every call matching `match` until the returned `open()` is called. Calls are recorded
   * when they arrive, before they wait.
   */
  gate(match: (c: FakeHcsCall) => boolean): { open: () => void } {
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    const gate = { match, promise };
    this.#gates.push(gate);
    return {
      open: () => {
        this.#gates = this.#gates.filter((g) => g !== gate);
        open();
      },
    };
  }

  /** Calls of `fn` (default modify) in order, as wire documents. */
  docs(fn: FakeHcsCall['fn'] = 'modify'): unknown[] {
    return this.calls.filter((c) => c.fn === fn).map((c) => c.doc);
  }

  /** @internal */
  async enter(call: FakeHcsCall): Promise<void> {
    this.calls.push(call);
    for (const g of this.#gates) if (g.match(call)) await g.promise;
    await Promise.resolve();
    for (const f of this.#faults) {
      const err = f(call);
      if (err) throw err;
    }
  }

  async createComputeSystem(id: string, configuration: Record<string, unknown>, options?: HcsCallOptions): Promise<HcsSystem> {
    const priority = checkedPriority(options);
    await this.enter(withPriority({ fn: 'create', id, doc: clone(configuration) }, priority));
    if (this.systems.has(id)) throw new UvmError('HCS_ERROR', `system ${id} already exists`);
    const system = new FakeComputeSystem(this, id, clone(configuration));
    this.systems.set(id, system);
    return system;
  }

  async openComputeSystem(id: string): Promise<HcsSystem> {
    await this.enter({ fn: 'open', id, doc: null });
    const system = this.systems.get(id);
    if (!system) throw new UvmError('NOT_FOUND', `system ${id} does not exist`);
    return system.reopen();
  }

  async enumerateComputeSystems(): Promise<HcsSystemSummary[]> {
    return [...this.systems.values()].map((s) => ({ Id: s.id, State: s.state, SystemType: 'VirtualMachine' }));
  }

  async grantVmAccess(vmId: string, path: string): Promise<void> {
    await this.enter({ fn: 'grant', id: vmId, doc: { path } });
    this.grants.add(`${vmId}|${path}`);
  }

  async revokeVmAccess(vmId: string, path: string): Promise<void> {
    await this.enter({ fn: 'revoke', id: vmId, doc: { path } });
    if (!this.grants.delete(`${vmId}|${path}`)) throw new UvmError('NOT_FOUND', `no grant of ${path} to ${vmId}`);
  }

  /** Not the real v5 GUID: a stable fake derived from the name (tests compare against this method). */
  nameToGuid(name: string): string {
    let h = 0x811c9dc5;
    for (const ch of name) h = Math.imul(h ^ ch.codePointAt(0)!, 0x01000193) >>> 0;
    const hex = h.toString(16).padStart(8, '0');
    return `${hex}-0000-5000-8000-${hex}0000`;
  }
}

/** The fake's compute system: a state machine plus host and guest resource maps. */
export class FakeComputeSystem implements HcsSystem {
  readonly #model: {
    state: 'Created' | 'Running' | 'Stopped';
    /** A fresh GUID per create, as HCS reports it (the hvsocket VM id). */
    runtimeId: string;
    host: Map<string, unknown>;
    guest: Map<string, unknown>;
    /** Open handles' SystemExited listeners. */
    listeners: Set<(exit: SystemExit) => void>;
  };
  #closed = false;
  /** Resolves with the first SystemExited this handle sees (terminate, shutdown, `crash()`); never after `close()`. */
  readonly exited: Promise<SystemExit>;
  readonly #onExit: (exit: SystemExit) => void;

  constructor(
    private readonly hcs: FakeHcs,
    readonly id: string,
    readonly configuration: Record<string, unknown>,
    model?: FakeComputeSystem,
  ) {
    this.#model = model ? model.#model : { state: 'Created', runtimeId: randomUUID(), host: new Map(), guest: new Map(), listeners: new Set() };
    let resolve!: (exit: SystemExit) => void;
    this.exited = new Promise((r) => (resolve = r));
    this.#onExit = resolve;
    this.#model.listeners.add(resolve);
  }

  /**
   * The VM dies behind everybody's back: state Stopped, and every open handle gets SystemExited
   * with ExitType UnexpectedExit (asynchronously, as from an HCS thread).
   */
  crash(attribution: Record<string, unknown> = { SystemExit: { Detail: 'UnexpectedExit', Initiator: 'Internal' } }): void {
    this.state = 'Stopped';
    this.#raiseExit({ exitType: 'UnexpectedExit', status: 0x80370106 | 0, attribution: [attribution], document: undefined });
  }

  #raiseExit(exit: SystemExit): void {
    const listeners = [...this.#model.listeners];
    queueMicrotask(() => listeners.forEach((l) => l(exit)));
  }

  /** The system's `RuntimeId` (a fresh GUID per create). */
  get runtimeId(): string {
    return this.#model.runtimeId;
  }

  get state(): 'Created' | 'Running' | 'Stopped' {
    return this.#model.state;
  }
  set state(value: 'Created' | 'Running' | 'Stopped') {
    this.#model.state = value;
  }
  /** Host resources: key → Settings of the Add (or Update). */
  get host(): Map<string, unknown> {
    return this.#model.host;
  }
  /** Guest resources: key → Settings of the Add. */
  get guest(): Map<string, unknown> {
    return this.#model.guest;
  }

  /** A new handle on the same system (what `openComputeSystem` returns). */
  reopen(): FakeComputeSystem {
    return new FakeComputeSystem(this.hcs, this.id, this.configuration, this);
  }

  /** What is attached beyond the create document: empty means nothing leaked. */
  attached(): string[] {
    return [...[...this.host.keys()].map((k) => `host ${k}`), ...[...this.guest.keys()].map((k) => `guest ${k}`)];
  }

  async start(options?: HcsCallOptions): Promise<void> {
    await this.#call('start', null, options);
    this.state = 'Running';
  }

  async shutdown(options?: HcsCallOptions): Promise<void> {
    await this.#call('shutdown', null, options);
    this.#stop('GracefulExit', 'Shutdown');
  }

  async terminate(options?: HcsCallOptions): Promise<void> {
    await this.#call('terminate', null, options);
    this.#stop('ForcedExit', 'Terminate');
  }

  #stop(exitType: string, detail: string): void {
    const wasRunning = this.state !== 'Stopped';
    this.state = 'Stopped';
    if (wasRunning) this.#raiseExit({ exitType, status: 0, attribution: [{ SystemExit: { Detail: detail, Initiator: 'Client' } }], document: undefined });
  }

  async properties(query: Record<string, unknown>, options?: HcsCallOptions): Promise<unknown> {
    await this.#call('properties', query, options);
    return {
      Id: this.id,
      RuntimeId: this.#model.runtimeId,
      State: this.state,
      SystemType: 'VirtualMachine',
      FakeState: { Host: Object.fromEntries(this.host), Guest: Object.fromEntries(this.guest) },
    };
  }

  async modify(request: ModifySettingRequest, options?: HcsCallOptions): Promise<void> {
    await this.#call('modify', request, options);
    if (this.state !== 'Running') throw new UvmError('HCS_ERROR', `modify of ${this.id} in state ${this.state}`);
    const req = clone(request);
    // Validate both halves before applying either, so a rejected request changes nothing.
    const hostKey = req.ResourcePath ? hostKeyOf(req) : undefined;
    const guestKey = req.GuestRequest ? guestKeyOf(req.GuestRequest.ResourceType, req.GuestRequest.Settings) : undefined;
    if (hostKey) check(this.host, hostKey, req.RequestType ?? 'Add');
    if (guestKey) check(this.guest, guestKey, req.GuestRequest!.RequestType);
    if (hostKey) apply(this.host, hostKey, req.RequestType ?? 'Add', req.Settings);
    if (guestKey) apply(this.guest, guestKey, req.GuestRequest!.RequestType, req.GuestRequest!.Settings);
  }

  close(): void {
    this.#closed = true;
    this.#model.listeners.delete(this.#onExit);
  }

  async #call(fn: FakeHcsCall['fn'], doc: unknown, options: HcsCallOptions | undefined): Promise<void> {
    const priority = checkedPriority(options);
    if (this.#closed) throw new UvmError('HANDLE_CLOSED', `compute system ${this.id} handle is closed`);
    await this.hcs.enter(withPriority({ fn, id: this.id, doc: clone(doc) }, priority));
  }
}

/** `options.priority`, checked as the binding checks it (INVALID_ARGUMENT, thrown). */
function checkedPriority(options: HcsCallOptions | undefined): number | undefined {
  const priority = options?.priority;
  const invalid = priority === undefined ? undefined : invalidPriority(priority);
  if (invalid) throw invalid;
  return priority;
}

/** The call as recorded: with its priority when one was given. */
function withPriority(call: FakeHcsCall, priority: number | undefined): FakeHcsCall {
  return priority === undefined ? call : { ...call, priority };
}

function hostKeyOf(req: ModifySettingRequest): string {
  const name = (req.Settings as { Name?: string } | undefined)?.Name;
  return name !== undefined && /\/Shares$/.test(req.ResourcePath!) ? `${req.ResourcePath}/${name}` : req.ResourcePath!;
}

function guestKeyOf(type: string, settings: Record<string, unknown> | undefined): string | undefined {
  const s = settings ?? {};
  if (type === 'SCSIDevice') return undefined; // an unplug, not a tracked resource
  if (type === 'VPCIDevice') return undefined; // the guest's view of an assigned device leaves with its host Remove
  const path = s.MountPath ?? s.ContainerPath ?? s.ContainerRootPath;
  return `${type}:${String(path)}`;
}

/** ERROR_ALREADY_EXISTS and ERROR_NOT_FOUND as HRESULTs, as HCS and the simulator report them. */
const HR_ALREADY_EXISTS = 0x800700b7 | 0;
const HR_NOT_FOUND = 0x80070490 | 0;

function check(map: Map<string, unknown>, key: string, type: string): void {
  const fail = (hresult: number, text: string): HcsError =>
    new HcsError({ op: 'HcsModifyComputeSystem', hresult, errorMessage: text });
  if (type === 'Add' && map.has(key)) throw fail(HR_ALREADY_EXISTS, `${key} is already present`);
  if ((type === 'Remove' || type === 'Update') && !map.has(key)) throw fail(HR_NOT_FOUND, `${key} is not present`);
}

function apply(map: Map<string, unknown>, key: string, type: string, settings: unknown): void {
  if (type === 'Remove') map.delete(key);
  else map.set(key, settings);
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

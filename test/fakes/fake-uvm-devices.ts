/**
 * In-memory UvmDevices for unit tests: five stateful fake managers over RefCountedTable (so the
 * root hook's leak check covers them), slots and guest paths handed out the way the spec says,
 * every call recorded in order, faults injected by code, and a termination mode.
 *
 * Recorded events (`calls`), in order:
 * - `acquire <manager> <key>`: every acquire call, shared or not;
 * - `add <manager> <key>`: a new resource was created (the HCS Add);
 * - `remove <manager> <key>`: the last reference was released and the resource removed;
 * - `skip <manager> <key>`: same, in termination mode (no removal call);
 * - `guest <RequestType> <ResourceType>`: a guest-only request (`guestRequests` keeps the documents).
 */
import type { Releasable } from '../../src/core/release-stack.js';
import { UvmError, type UvmErrorCode } from '../../src/core/errors.js';
import { FakeHostFs } from '../../src/core/fake-host-fs.js';
import type { Lease } from '../../src/core/lease.js';
import { RefCountedTable } from '../../src/core/refcounted-table.js';
import { SlotAllocator } from '../../src/core/slot-allocator.js';
import type {
  DeviceAcquireOptions,
  GuestOs,
  MappedPipe,
  Plan9Share,
  Plan9ShareRequest,
  Reservation,
  ResourceInfo,
  ScsiDisk,
  ScsiDiskRequest,
  UvmDevices,
  UvmFacts,
  VpmemLayer,
  VpmemLayerRequest,
  VpmemPlacement,
  VsmbShare,
  VsmbShareRequest,
} from '../../src/devices/device-types.js';
import { guestPaths } from '../../src/devices/guest-paths.js';
import { hostPaths } from '../../src/devices/host-paths.js';
import type { GuestRequest } from '../../src/hcs/schema.js';
import { checkAfterTest } from '../support/leak-checks.js';

export type FakeManagerName = 'scsi' | 'vpmem' | 'vsmb' | 'plan9' | 'pipes';
export type FakeFaultOp = 'acquire' | 'remove';

interface Fault {
  manager: FakeManagerName | 'guest';
  op: FakeFaultOp | 'send';
  code: UvmErrorCode;
  times: number;
  match?: (detail: string) => boolean;
}

/** What a fake manager needs from its UVM. */
interface FakeContext {
  readonly facts: UvmFacts;
  readonly hostFs: FakeHostFs;
  record(event: string): void;
  /** Throws an injected fault (only one of `codes`, when given). */
  takeFault(manager: FakeManagerName | 'guest', op: FakeFaultOp | 'send', detail: string, codes?: readonly UvmErrorCode[]): void;
  readonly terminating: boolean;
}

function notSupported(ctx: FakeContext, what: string): UvmError {
  return new UvmError('NOT_SUPPORTED', `${what} is not supported on a ${ctx.facts.os} UVM`);
}

/** One fake manager: a RefCountedTable plus a create/destroy policy. */
abstract class FakeManager<Req, K, V> {
  protected readonly table: RefCountedTable<K, V>;
  protected constructor(
    readonly name: FakeManagerName,
    protected readonly ctx: FakeContext,
  ) {
    this.table = new RefCountedTable<K, V>({
      name: `fake-${name}`,
      destroy: async (value, key) => {
        const k = this.render(key);
        this.ctx.takeFault(this.name, 'remove', k);
        this.ctx.record(`${this.ctx.terminating ? 'skip' : 'remove'} ${this.name} ${k}`);
        this.free(value);
      },
      describeKey: (key) => this.render(key),
    });
  }

  protected abstract keyOf(request: Req): K;
  protected abstract render(key: K): string;
  protected abstract create(request: Req): Promise<V>;
  protected abstract free(value: V): void;
  protected abstract info(value: V | undefined, key: K): Omit<ResourceInfo, 'key' | 'state' | 'refCount'>;
  /** Checks a request against an existing entry (CONFIG_CONFLICT etc.). */
  protected checkShared(_request: Req, _value: V): void {}

  async acquire(request: Req, options: DeviceAcquireOptions = {}): Promise<Lease<V>> {
    return this.reserve(request).commit(options);
  }

  /**
   * The fake's reservation: records the acquire now (synchronously, in call order); injected
   * `acquire` faults fire at commit (they model HCS failures); the value is only known at commit.
   */
  reserve(request: Req, ..._facts: unknown[]): Reservation<V> {
    const key = this.keyOf(request);
    const k = this.render(key);
    this.ctx.record(`acquire ${this.name} ${k}`);
    const existing = this.table.peek(key);
    if (existing) this.checkShared(request, existing);
    return { value: undefined, shared: existing !== undefined, cancel: () => undefined, commit: (options) => this.#commit(request, key, k, options) };
  }

  async #commit(request: Req, key: K, k: string, options: DeviceAcquireOptions = {}): Promise<Lease<V>> {
    this.ctx.takeFault(this.name, 'acquire', k);
    return this.table.acquire(
      key,
      async () => {
        const value = await this.create(request);
        this.ctx.record(`add ${this.name} ${k}`);
        return value;
      },
      options,
    );
  }

  describe(): ResourceInfo[] {
    return this.table.entries().map((e) => ({
      ...this.info(e.value, e.key),
      key: this.render(e.key),
      state: e.state,
      refCount: e.refCount,
    }));
  }

  /** Retries every failed removal (as the real managers' tables allow). */
  retryFailedTeardowns(): Promise<void> {
    return this.table.retryFailedTeardowns();
  }

  /** `key (refs=n)` of every entry still present. */
  held(): string[] {
    return this.table.entries().map((e) => `${this.render(e.key)} (refs=${e.refCount}, ${e.state})`);
  }
}

const LUNS = 64;

export class FakeScsiManager extends FakeManager<ScsiDiskRequest, string, ScsiDisk & { slot: number; mountIndex?: number }> {
  readonly #slots: SlotAllocator;
  readonly #mountIndices = new Set<number>();
  /** Every request that created an attachment, in order. */
  readonly created: ScsiDiskRequest[] = [];

  constructor(ctx: FakeContext) {
    super('scsi', ctx);
    this.#slots = new SlotAllocator(Math.max(ctx.facts.scsiControllers, 1) * LUNS);
  }

  protected keyOf(r: ScsiDiskRequest): string {
    return JSON.stringify([r.type ?? 'VirtualDisk', r.hostPath, r.readOnly, r.mount ?? null]);
  }
  protected render(key: string): string {
    const [type, hostPath, ro] = JSON.parse(key) as [string, string, boolean];
    return `${type}:${hostPath}${ro ? ':ro' : ''}`;
  }
  protected async create(r: ScsiDiskRequest): Promise<ScsiDisk & { slot: number; mountIndex?: number }> {
    const slot = this.#slots.allocate();
    if (slot === undefined) throw new UvmError('NO_SLOT', 'no free SCSI slot');
    let guestPath: string | undefined;
    let mountIndex: number | undefined;
    if (r.mount) {
      if (r.guestPath) guestPath = r.guestPath;
      else {
        mountIndex = 0;
        while (this.#mountIndices.has(mountIndex)) mountIndex++;
        this.#mountIndices.add(mountIndex);
        guestPath = guestPaths.scsiMount(this.ctx.facts.os, mountIndex);
      }
    }
    this.created.push(structuredClone(r));
    return {
      controller: Math.floor(slot / LUNS),
      lun: slot % LUNS,
      hostPath: r.hostPath,
      readOnly: r.readOnly,
      type: r.type ?? 'VirtualDisk',
      guestPath,
      slot,
      ...(mountIndex === undefined ? {} : { mountIndex }),
    };
  }
  protected free(v: ScsiDisk & { slot: number; mountIndex?: number }): void {
    this.#slots.free(v.slot);
    if (v.mountIndex !== undefined) this.#mountIndices.delete(v.mountIndex);
  }
  protected info(v: (ScsiDisk & { slot: number }) | undefined, key: string): Omit<ResourceInfo, 'key' | 'state' | 'refCount'> {
    const [, hostPath] = JSON.parse(key) as [string, string];
    return { kind: 'scsi-attachment', hostPath, slot: v ? `${v.controller}:${v.lun}` : undefined, guestPath: v?.guestPath };
  }
  /** Also lists a `scsi-mount` for each mounted attachment (as the real manager's mount tracker does). */
  override describe(): ResourceInfo[] {
    const attachments = super.describe();
    return [...attachments, ...attachments.filter((a) => a.guestPath !== undefined).map((a) => ({ ...a, kind: 'scsi-mount' as const }))];
  }
}

export class FakeVpmemManager extends FakeManager<VpmemLayerRequest, string, VpmemLayer> {
  readonly #slots: SlotAllocator | undefined;
  /** New layers reserved and not committed yet (they will take a device). */
  readonly #pending = new Set<string>();

  constructor(ctx: FakeContext) {
    super('vpmem', ctx);
    this.#slots = ctx.facts.vpmemCount > 0 ? new SlotAllocator(ctx.facts.vpmemCount) : undefined;
  }
  protected keyOf(r: VpmemLayerRequest): string {
    return r.hostPath;
  }
  protected render(key: string): string {
    return key;
  }
  protected async create(r: VpmemLayerRequest): Promise<VpmemLayer> {
    if (this.ctx.facts.os !== 'linux') throw notSupported(this.ctx, 'VPMEM');
    const { size } = await this.ctx.hostFs.stat(r.hostPath);
    if (size > this.ctx.facts.vpmemMaxSizeBytes) throw new UvmError('LAYER_TOO_LARGE', `${r.hostPath} is too large for VPMEM`);
    const device = this.#slots?.allocate();
    if (device === undefined) throw new UvmError('NO_SLOT', 'no free VPMEM device');
    return { device, hostPath: r.hostPath, guestPath: guestPaths.vpmemDevice(device) };
  }
  protected free(v: VpmemLayer): void {
    this.#slots!.free(v.device);
  }
  /** Decides VPMEM or not now, from the size and the free devices (faults NO_SLOT/LAYER_TOO_LARGE too). */
  override reserve(r: VpmemLayerRequest, size?: unknown): Reservation<VpmemLayer> & VpmemPlacement {
    if (this.ctx.facts.os !== 'linux') throw notSupported(this.ctx, 'VPMEM');
    let reservation: Reservation<VpmemLayer>;
    try {
      // "VPMEM cannot take it" is a reservation result: these faults fire now.
      this.ctx.takeFault('vpmem', 'acquire', r.hostPath, ['NO_SLOT', 'LAYER_TOO_LARGE']);
      const shared = this.table.peek(r.hostPath) !== undefined || this.#pending.has(r.hostPath);
      if (!shared && typeof size === 'number' && size > this.ctx.facts.vpmemMaxSizeBytes) {
        throw new UvmError('LAYER_TOO_LARGE', `${r.hostPath} is too large for VPMEM`);
      }
      if (!shared && (this.#slots?.freeCount ?? 0) - this.#pending.size <= 0) throw new UvmError('NO_SLOT', 'no free VPMEM device');
      const inner = super.reserve(r);
      if (!shared) this.#pending.add(r.hostPath);
      const done = (): void => {
        if (!shared) this.#pending.delete(r.hostPath);
      };
      reservation = {
        value: undefined,
        shared,
        cancel: () => {
          done();
          inner.cancel();
        },
        commit: (options) => inner.commit(options).finally(done),
      };
    } catch (err) {
      if (UvmError.is(err, 'NO_SLOT', 'LAYER_TOO_LARGE')) {
        this.ctx.record(`acquire vpmem ${r.hostPath}`);
        const failed = { ok: false as const, code: err.code as 'NO_SLOT' | 'LAYER_TOO_LARGE', error: err };
        return { ...failed, value: undefined, shared: false, cancel: () => undefined, commit: () => Promise.reject(err) };
      }
      throw err;
    }
    return { ok: true, reservation, ...reservation };
  }
  protected info(v: VpmemLayer | undefined, key: string): Omit<ResourceInfo, 'key' | 'state' | 'refCount'> {
    return { kind: 'vpmem-device', hostPath: key, slot: v ? String(v.device) : undefined, guestPath: v?.guestPath };
  }
}

export class FakePlan9Manager extends FakeManager<Plan9ShareRequest, string, Plan9Share> {
  #counter = 0;
  constructor(ctx: FakeContext) {
    super('plan9', ctx);
  }
  protected keyOf(r: Plan9ShareRequest): string {
    return r.hostPath;
  }
  protected render(key: string): string {
    return key;
  }
  protected override checkShared(r: Plan9ShareRequest, v: Plan9Share): void {
    if (r.readOnly !== v.readOnly) throw new UvmError('CONFIG_CONFLICT', `${r.hostPath} is shared with another read-only setting`);
  }
  protected async create(r: Plan9ShareRequest): Promise<Plan9Share> {
    if (this.ctx.facts.os !== 'linux') throw notSupported(this.ctx, 'Plan9');
    if (!r.readOnly && this.ctx.facts.noWritableFileShares) throw new UvmError('ACCESS_DENIED', 'writable shares are denied');
    const st = await this.ctx.hostFs.stat(r.hostPath);
    const name = String(this.#counter++);
    const mountPath = guestPaths.plan9Mount(name);
    const guestPath = st.isFile ? guestPaths.join('linux', mountPath, hostPaths.basename(r.hostPath)) : mountPath;
    return { name, hostPath: r.hostPath, readOnly: r.readOnly, mountPath, guestPath };
  }
  protected free(): void {}
  protected info(v: Plan9Share | undefined, key: string): Omit<ResourceInfo, 'key' | 'state' | 'refCount'> {
    return { kind: 'plan9-share', hostPath: key, slot: v?.name, guestPath: v?.guestPath };
  }
}

export class FakeVsmbManager extends FakeManager<VsmbShareRequest, string, VsmbShare> {
  #counter = 0;
  readonly created: VsmbShareRequest[] = [];
  constructor(ctx: FakeContext) {
    super('vsmb', ctx);
  }
  protected keyOf(r: VsmbShareRequest): string {
    return `${r.hostPath}-${r.readOnly}`;
  }
  protected render(key: string): string {
    return key;
  }
  protected async create(r: VsmbShareRequest): Promise<VsmbShare> {
    if (this.ctx.facts.os !== 'windows') throw notSupported(this.ctx, 'VSMB');
    if (!r.readOnly && this.ctx.facts.noWritableFileShares) throw new UvmError('ACCESS_DENIED', 'writable shares are denied');
    const st = await this.ctx.hostFs.stat(r.hostPath);
    this.#counter += 1;
    const name = `s${this.#counter.toString(16)}`;
    const sharePath = guestPaths.vsmbShare(name);
    const guestPath = st.isFile ? guestPaths.vsmbFile(name, hostPaths.basename(r.hostPath)) : sharePath;
    this.created.push(structuredClone(r));
    return { name, hostPath: r.hostPath, readOnly: r.readOnly, sharePath, guestPath };
  }
  protected free(): void {}
  protected info(v: VsmbShare | undefined, key: string): Omit<ResourceInfo, 'key' | 'state' | 'refCount'> {
    return { kind: 'vsmb-share', hostPath: key.replace(/-(true|false)$/, ''), slot: v?.name, guestPath: v?.guestPath };
  }
}

export class FakePipeManager extends FakeManager<{ hostPath: string }, string, MappedPipe> {
  constructor(ctx: FakeContext) {
    super('pipes', ctx);
  }
  protected keyOf(r: { hostPath: string }): string {
    return r.hostPath;
  }
  protected render(key: string): string {
    return key;
  }
  protected async create(r: { hostPath: string }): Promise<MappedPipe> {
    if (this.ctx.facts.os !== 'windows') throw notSupported(this.ctx, 'mapped pipes');
    return { hostPath: r.hostPath, guestPath: guestPaths.vsmbPipe(r.hostPath.slice('\\\\.\\pipe\\'.length)) };
  }
  protected free(): void {}
  protected info(v: MappedPipe | undefined, key: string): Omit<ResourceInfo, 'key' | 'state' | 'refCount'> {
    return { kind: 'mapped-pipe', hostPath: key, guestPath: v?.guestPath };
  }
}

export interface FakeUvmOptions {
  os?: GuestOs;
  facts?: Partial<UvmFacts>;
  hostFs?: FakeHostFs;
  /** Implement `prepareForTermination()` (default true). */
  terminationAware?: boolean;
  /** Register a leak check that fails the test if anything is still held (default true). */
  leakCheck?: boolean;
}

/** Default facts: 4 VPMEM devices of 1 MiB (easy to overflow in tests), one SCSI controller. */
export function fakeFacts(os: GuestOs, overrides: Partial<UvmFacts> = {}): UvmFacts {
  return {
    id: os === 'linux' ? 'uvm-l' : 'uvm-w@vm',
    os,
    fullyPhysicallyBacked: false,
    noWritableFileShares: false,
    vpmemCount: os === 'linux' ? 4 : 0,
    vpmemMaxSizeBytes: 1024 * 1024,
    vpmemMultiMapping: false,
    scsiControllers: 1,
    ...overrides,
  };
}

export class FakeUvmDevices implements UvmDevices {
  readonly facts: UvmFacts;
  readonly hostFs: FakeHostFs;
  readonly scsi: FakeScsiManager;
  readonly vsmb: FakeVsmbManager;
  readonly vpmem: FakeVpmemManager;
  readonly plan9: FakePlan9Manager;
  readonly pipes: FakePipeManager;
  /** Every event, in order (see the file comment). */
  readonly calls: string[] = [];
  /** Every guest-only request document, in order. */
  readonly guestRequests: GuestRequest[] = [];
  readonly #faults: Fault[] = [];
  #terminating = false;
  declare prepareForTermination?: () => void;

  constructor(options: FakeUvmOptions = {}) {
    const os = options.os ?? 'linux';
    this.facts = fakeFacts(os, options.facts);
    this.hostFs = options.hostFs ?? new FakeHostFs();
    const isTerminating = (): boolean => this.#terminating;
    const ctx: FakeContext = {
      facts: this.facts,
      hostFs: this.hostFs,
      record: (e) => this.calls.push(e),
      takeFault: (m, op, d, codes) => this.#takeFault(m, op, d, codes),
      get terminating() {
        return isTerminating();
      },
    };
    this.scsi = new FakeScsiManager(ctx);
    this.vsmb = new FakeVsmbManager(ctx);
    this.vpmem = new FakeVpmemManager(ctx);
    this.plan9 = new FakePlan9Manager(ctx);
    this.pipes = new FakePipeManager(ctx);
    if (options.terminationAware ?? true) {
      this.prepareForTermination = () => {
        this.#terminating = true;
        this.calls.push('prepare-for-termination');
      };
    }
    if (options.leakCheck ?? true) checkAfterTest(() => this.held().map((h) => `fake UVM ${this.facts.id} still holds ${h}`));
  }

  get terminating(): boolean {
    return this.#terminating;
  }

  async sendGuestRequest(request: GuestRequest): Promise<void> {
    const detail = `${request.RequestType} ${request.ResourceType}`;
    this.calls.push(`guest ${detail}`);
    this.#takeFault('guest', 'send', detail);
    if (this.#terminating && request.RequestType === 'Remove') return;
    this.guestRequests.push(structuredClone(request));
  }

  /** What failed rollbacks handed over (see UvmDevices.retryLater); `retryLeftovers()` releases them. */
  readonly leftovers: Releasable[] = [];

  retryLater(leftover: Releasable): void {
    this.leftovers.push(leftover);
  }

  /** Releases every leftover (as UtilityVm.retryFailedTeardowns does first). */
  async retryLeftovers(): Promise<void> {
    for (const l of this.leftovers.splice(0)) await l.release();
  }

  nameToGuid(name: string): string {
    // Deterministic, GUID-shaped, distinct per name.
    let h = 0x811c9dc5;
    for (const ch of name) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
    const hex = h.toString(16).padStart(8, '0');
    return `${hex}-0000-5000-8000-${Buffer.from(name).toString('hex').padEnd(12, '0').slice(0, 12)}`;
  }

  /**
   * Makes the next `times` matching operations fail with `code`: `acquire` rejects before anything
   * is created; `remove` fails the removal (the entry stays, a retry resumes); `send` fails a
   * guest request (`match` gets e.g. `Add CombinedLayers`).
   */
  fail(manager: FakeManagerName | 'guest', op: FakeFaultOp | 'send', code: UvmErrorCode, options: { times?: number; match?: (detail: string) => boolean } = {}): this {
    this.#faults.push({ manager, op, code, times: options.times ?? 1, match: options.match });
    return this;
  }

  /** Everything still held, per manager. */
  held(): string[] {
    return (['scsi', 'vpmem', 'vsmb', 'plan9', 'pipes'] as const).flatMap((m) => this[m].held().map((h) => `${m} ${h}`));
  }

  /** Events of one kind (`add`, `remove`, `acquire`, `skip`, `guest`). */
  events(kind: string): string[] {
    return this.calls.filter((c) => c.startsWith(`${kind} `));
  }

  #takeFault(manager: FakeManagerName | 'guest', op: FakeFaultOp | 'send', detail: string, codes?: readonly UvmErrorCode[]): void {
    const i = this.#faults.findIndex(
      (f) => f.manager === manager && f.op === op && (f.match?.(detail) ?? true) && (codes === undefined || codes.includes(f.code)),
    );
    if (i < 0) return;
    const fault = this.#faults[i]!;
    fault.times -= 1;
    if (fault.times <= 0) this.#faults.splice(i, 1);
    throw new UvmError(fault.code, `injected ${fault.code} on ${manager} ${op} ${detail}`, { details: { injected: true } });
  }
}

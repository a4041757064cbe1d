import { inject, injectable, optional } from 'inversify';
import { invalidArgument, UvmAggregateError, UvmError } from '../core/errors.js';
import { withOwn } from '../core/plain-copy.js';
import { ReleaseStack, type Releasable } from '../core/release-stack.js';
import { HostFs } from '../core/host-fs.js';
import { LogField, Logger, withFields } from '../core/logger.js';
import { HcsApi, type HcsCallOptions } from '../hcs/hcs-api.js';
import { isVmUnavailable } from '../hcs/hcs-error.js';
import { LateOutcomeSystem } from '../hcs/late-outcomes.js';
import type { GuestRequest } from '../hcs/schema.js';
import { UvmDeviceConfig } from '../devices/device-config.js';
import {
  PipeManager,
  Plan9Manager,
  ScsiManager,
  VpmemManager,
  VsmbManager,
  type DeviceAcquireOptions,
  type ResourceInfo,
  type UvmFacts,
} from '../devices/device-types.js';
import { ResourceDelivery } from '../devices/guest-delivery.js';
import { UvmLifecycle } from '../devices/uvm-lifecycle.js';
import { VpciManager } from '../devices/vpci-manager.js';
import type { OpenUtilityVmOptions, UvmOrchestratorOptions } from '../di/uvm-orchestrator.js';
import { allocateContainer, type AllocateContainerOptions, type AllocatedContainer } from '../containers/allocate-container.js';
import { ContainerResources } from '../containers/container-resources.js';
import type { UvmTerminationAware } from '../containers/uvm-termination.js';
import type { OciSpec } from '../oci/oci-spec.js';
import type { Lease } from '../core/lease.js';
import type { RecoveryReport } from '../recovery/apply-reconcile.js';
import type { JsonObject, LeaseRecordKind } from '../recovery/journal-format.js';
import { RecoveryJournal } from '../recovery/journal.js';
import { revokeJournaledGrants } from '../recovery/journaled-grants.js';
import { UvmRecovery } from '../recovery/uvm-recovery.js';
import type { UvmDeviceSet } from '../recovery/journaled-devices.js';
import { DeviceRestore } from '../devices/device-restore.js';
import { HcsSystem } from './hcs-system-token.js';
import { UvmGate } from './uvm-gate.js';
import { UvmIdRelease } from './live-uvm-ids.js';
import type { UtilityVmOptions } from './uvm-options.js';
import { UvmExitMonitor, type UvmExit } from './uvm-exit.js';
import { GuestChannels } from './guest-channels.js';

/**
 * One Utility VM and its device managers. Built by the per-UVM DI scope
 * (`createUvmOrchestrator().createUtilityVm(options)`), which creates the compute system first;
 * two UtilityVms share no manager state.
 *
 * Lifecycle: `start()` → (acquire/release devices) → `terminate()` → `close()`. Once terminate
 * is requested, removals that fail because the VM is gone count as done; once it is terminated,
 * releases make no HCS call.
 */
@injectable()
export class UtilityVm implements UvmDeviceSet {
  /** What failed rollbacks left for `retryFailedTeardowns()` (see `retryLater`). */
  readonly #leftovers = new ReleaseStack();
  readonly facts: UvmFacts;
  readonly scsi: ScsiManager;
  readonly vsmb: VsmbManager;
  readonly vpmem: VpmemManager;
  readonly plan9: Plan9Manager;
  readonly pipes: PipeManager;
  /** Assigned devices (vPCI); journaled like the other managers when the UVM has a journal. */
  readonly vpci: VpciManager;
  readonly #logger: Logger;
  readonly #managers: { scsi: ScsiManager; vsmb: VsmbManager; vpmem: VpmemManager; plan9: Plan9Manager; pipes: PipeManager };
  /** Present when the `journal` option is set (docs/recovery.md). */
  readonly #recovery: UvmRecovery | undefined;
  /** Containers allocated (or restored) and not released yet. */
  readonly #containers = new Map<string, ContainerResources>();
  /** Container ids being allocated (CONTAINER_EXISTS for a second allocation meanwhile). */
  readonly #allocating = new Set<string>();
  /** Refuses calls after close / terminate. */
  readonly #gate: UvmGate;
  /** The managers behind the gate (what the UVM exposes without a journal). */
  readonly #gated: UvmDeviceSet;
  /** Gives the UVM id back to the live-id registry. */
  readonly #releaseId: UvmIdRelease | undefined;
  /** Set when the GCS bridge failed (BRIDGE_FAILED). */
  #guestFailure: UvmError | undefined;

  constructor(
    @inject(UvmDeviceConfig) config: UvmDeviceConfig,
    @inject(HcsSystem) private readonly system: HcsSystem,
    @inject(HcsApi) private readonly hcs: HcsApi,
    @inject(ResourceDelivery) private readonly delivery: ResourceDelivery,
    @inject(UvmLifecycle) private readonly lifecycle: UvmLifecycle,
    @inject(HostFs) readonly hostFs: HostFs,
    @inject(Logger) logger: Logger,
    @inject(ScsiManager) scsi: ScsiManager,
    @inject(VsmbManager) vsmb: VsmbManager,
    @inject(VpmemManager) vpmem: VpmemManager,
    @inject(Plan9Manager) plan9: Plan9Manager,
    @inject(PipeManager) pipes: PipeManager,
    @inject(RecoveryJournal) @optional() journal?: RecoveryJournal,
    @inject(VpciManager) @optional() vpci?: VpciManager,
    @inject(UvmIdRelease) @optional() releaseId?: UvmIdRelease,
    @inject(UvmExitMonitor) @optional() private readonly exits?: UvmExitMonitor,
    @inject(GuestChannels) @optional() private readonly channels?: GuestChannels,
    @inject(DeviceRestore) @optional() restore?: DeviceRestore,
  ) {
    this.#releaseId = releaseId;
    this.facts = Object.freeze({
      id: config.id,
      os: config.os,
      fullyPhysicallyBacked: config.fullyPhysicallyBacked,
      noWritableFileShares: config.noWritableFileShares,
      vpmemCount: config.vpmemCount,
      vpmemMaxSizeBytes: config.vpmemMaxSizeBytes,
      vpmemMultiMapping: config.vpmemMultiMapping,
      scsiControllers: config.scsiControllers,
      reservedScsiSlotCount: config.reservedScsiSlots.length,
    });
    this.#logger = withFields(logger, { [LogField.uvmId]: config.id, [LogField.kind]: 'uvm' });
    // An unexpected exit ends the VM's life: releases make no HCS call from then on.
    exits?.onUnexpectedExit(() => {
      this.lifecycle.markTerminated();
      this.#logger.warn('the UVM exited unexpectedly', { exit: exits.exit?.message });
    });
    this.#managers = { scsi, vsmb, vpmem, plan9, pipes };
    this.#gate = new UvmGate(config.id, lifecycle);
    if (exits) this.#gate.watchExit((op) => exits.failureFor(op));
    // The GCS bridge failed as a whole: every guest call rejects BRIDGE_FAILED from now on.
    channels?.onFailure((err) => {
      this.#guestFailure = err;
      if (!this.lifecycle.terminating) this.#logger.error('the guest connection failed; guest requests fail until the UVM is terminated', { error: err.message });
    });
    const raw = this.#rawDevices(vpci);
    const gated = (this.#gated = this.#gate.devices(raw));
    // With a journal, the public managers are the UVM's journaled view: every lease the shim takes
    // through them is recorded (owner: the UVM itself).
    this.#recovery = journal
      ? new UvmRecovery({
          os: config.os,
          journal,
          devices: gated,
          restore,
          assertOpen: (op) => this.#gate.assertOpen(op),
          delivery,
          logger: this.#logger,
        })
      : undefined;
    const exposed = this.#recovery?.uvmDevices ?? gated;
    this.scsi = exposed.scsi;
    this.vsmb = exposed.vsmb;
    this.vpmem = exposed.vpmem;
    this.plan9 = exposed.plan9;
    this.pipes = exposed.pipes;
    this.vpci = exposed.vpci ?? this.#gate.manager(unsupportedVpci, 'vpci');
  }

  /**
   * Validates `options`, creates the compute system and builds this UVM's DI scope (through the
   * composition root's factory). Same as `createUvmOrchestrator(deps).createUtilityVm(options)`.
   */
  static async create(options: UtilityVmOptions, deps: UvmOrchestratorOptions = {}): Promise<UtilityVm> {
    const { createUvmOrchestrator } = await import('../di/uvm-orchestrator.js');
    return createUvmOrchestrator(deps).createUtilityVm(options);
  }

  /**
   * Re-opens the existing compute system `id` after a shim restart, from the journal it was
   * created with, and reconciles (docs/recovery.md): what is journaled and present in HCS is
   * adopted (refcounts and leases rebuilt with no HCS call), what is present but unknown is
   * removed, what is journaled but gone is forgotten. Restored containers are in `containers()`,
   * the UVM's own restored leases in `restoredLeases()`. RECOVERY_FAILED when the journal is
   * missing, corrupt or of another UVM, or when a removal fails (open again to retry).
   */
  static async open(id: string, options: OpenUtilityVmOptions, deps: UvmOrchestratorOptions = {}): Promise<UtilityVm> {
    const { createUvmOrchestrator } = await import('../di/uvm-orchestrator.js');
    return createUvmOrchestrator(deps).openUtilityVm(id, options);
  }

  get id(): string {
    return this.facts.id;
  }

  /** The lifecycle phase: `running`, `terminating` or `terminated`. */
  get phase(): UvmLifecycle['phase'] {
    return this.lifecycle.phase;
  }

  /**
   * Resolves when the VM exits, with how (`UvmExit`: HCS's ExitType, Status and Attribution, and
   * `unexpected` when no `terminate()` asked for it). After an unexpected exit every call in
   * flight and every later call rejects with UVM_EXITED, and releases make no HCS call. Stays
   * pending when the HCS implementation has no events (e.g. a fake without them) or after `close()`.
   */
  get exited(): Promise<UvmExit> {
    return this.exits?.exited ?? new Promise<UvmExit>(() => undefined);
  }

  /** The exit, once it is known. */
  get exit(): UvmExit | undefined {
    return this.exits?.exit;
  }

  /**
   * Starts the VM, then (bridge mode, and for LCOW in either mode) accepts the guest's hvsocket
   * connections within the accept deadline and negotiates the GCS bridge: the UVM is ready when
   * this resolves. A UVM with guest channels is terminated (as hcsshim tears down a UVM whose start
   * failed) and `start` rejects when HcsStartComputeSystem fails or times out (a late start would
   * find nobody accepting its guest's connections), when the guest does not connect
   * (GUEST_CONNECT_TIMEOUT), when the handshake fails, or when the VM exits meanwhile. Without
   * guest channels (WCOW, HCS-owned delivery) a failed start leaves the VM as HCS left it.
   */
  async start(options?: HcsCallOptions): Promise<void> {
    this.#gate.assertRunning('start');
    if (!this.channels) return this.system.start(options);
    const exited = new AbortController();
    void this.exits?.exited.then(() => exited.abort(new Error(`UVM ${this.id} exited`)));
    try {
      await this.system.start(options);
      await this.channels.connect(options?.signal ? AbortSignal.any([options.signal, exited.signal]) : exited.signal);
    } catch (err) {
      this.#logger.warn('the UVM did not start or its guest did not connect; terminating the UVM', { error: String(err) });
      this.lifecycle.markTerminating();
      this.exits?.expectExit();
      await this.system.terminate().catch(() => undefined);
      this.lifecycle.markTerminated();
      throw (UvmError.is(err, 'ABORTED') && exited.signal.aborted && this.exits?.failureFor('start')) || err;
    }
  }

  /** The failure of this UVM's GCS bridge (BRIDGE_FAILED), once it failed as a whole. */
  get guestConnectionFailure(): UvmError | undefined {
    return this.#guestFailure;
  }

  /**
   * Terminates the VM. Marks the managers terminating first (removals failing because the VM is
   * gone count as done), then terminated once HCS confirms (releases then make no HCS call, and
   * VSMB forgets its idle direct-mapped shares). A VM that is already gone counts as terminated.
   */
  async terminate(options?: HcsCallOptions): Promise<void> {
    this.#gate.assertOpen('terminate');
    this.lifecycle.markTerminating();
    this.exits?.expectExit();
    try {
      await this.system.terminate(options);
    } catch (err) {
      if (!isVmUnavailable(err)) throw err;
    }
    this.lifecycle.markTerminated();
    await this.channels?.close();
    if (this.system instanceof LateOutcomeSystem) this.system.stop();
    // The VM is gone: so are its access grants (docs/recovery.md), and nothing is left to recover.
    if (this.#recovery) {
      await revokeJournaledGrants(this.#recovery.journal, this.hcs, this.#logger);
      await this.#recovery.journal.discard();
    }
    this.#logger.debug('terminated');
  }

  /**
   * Reconciles the journal with HCS (called by `open`; see docs/recovery.md). Rejects with
   * NOT_SUPPORTED without a journal.
   */
  async reconcile(): Promise<RecoveryReport> {
    this.#gate.assertOpen('reconcile');
    if (!this.#recovery) throw new UvmError('NOT_SUPPORTED', 'this UtilityVm has no journal');
    const { report, containers } = await this.#recovery.reconcile(this.system);
    for (const c of containers) {
      this.#track(new ContainerResources(c.devices, { ...c.init, logger: this.#logger, onChange: (r) => this.#containerChanged(r), beforeCall: this.#containerGate }));
    }
    return report;
  }

  /** The report of the reconcile `open` ran, if any. */
  get recoveryReport(): RecoveryReport | undefined {
    return this.#recovery?.report;
  }

  /** The UVM's own leases (taken through `uvm.scsi` etc. before the restart) restored by `open`, not yet released. */
  restoredLeases(): { kind: LeaseRecordKind; request: JsonObject; lease: Lease<unknown> }[] {
    return this.#recovery?.restoredLeases() ?? [];
  }

  /**
   * Allocates a container's rootfs and mounts in this UVM (see `allocateContainer`). With a
   * journal, its leases are journaled under its id and the container is recorded, so that `open`
   * can restore it.
   */
  async allocateContainer(spec: OciSpec, options: AllocateContainerOptions): Promise<AllocatedContainer> {
    this.#gate.assertRunning('allocateContainer');
    const id = options?.containerId;
    if (typeof id === 'string' && (this.#allocating.has(id) || this.containerResources(id))) {
      throw new UvmError('CONTAINER_EXISTS', `container ${id} is already allocated in UVM ${this.id}`, { details: { uvmId: this.id, containerId: id } });
    }
    if (typeof id === 'string') this.#allocating.add(id);
    try {
      return await this.#allocate(spec, options);
    } finally {
      if (typeof id === 'string') this.#allocating.delete(id);
    }
  }

  async #allocate(spec: OciSpec, options: AllocateContainerOptions): Promise<AllocatedContainer> {
    const devices = this.#recovery && typeof options?.containerId === 'string' ? this.#recovery.containerDevices(options.containerId) : this;
    const callerOnChange = options?.onChange;
    // The caller's options (its logger, else the UVM's) with the gate and the change hook set: a
    // copy key by key (a spread followed by more properties takes V8's slow path).
    const own: AllocateContainerOptions = withOwn(options ?? {}, 'beforeCall', this.#containerGate);
    if (own.logger === undefined) own.logger = this.#logger;
    // Always: a released container leaves the map (and, with a journal, the journal).
    own.onChange = async (r: ContainerResources) => {
      await this.#containerChanged(r);
      await callerOnChange?.(r);
    };
    const allocated = await allocateContainer(devices, spec, own).catch((err: unknown) => {
      if (devices !== this && !this.#containers.has(options.containerId)) this.#recovery?.dropContainerDevices(options.containerId);
      throw err;
    });
    // Its leases are journaled already; the record adds what they are for. A failed write fails
    // the allocation (after releasing it); a crash before it makes reconcile release the leases.
    if (this.#recovery) {
      try {
        await this.#recovery.recordContainer(allocated.resources.snapshot());
      } catch (err) {
        await allocated.resources.release().catch(() => undefined);
        throw err;
      }
    }
    this.#track(allocated.resources);
    return allocated;
  }

  /** Containers allocated or restored and not released yet. */
  containers(): ContainerResources[] {
    return [...this.#containers.values()].filter((c) => !c.released);
  }

  /** The resources of container `id`, if it is allocated (or restored) and not released. */
  containerResources(id: string): ContainerResources | undefined {
    const c = this.#containers.get(id);
    return c && !c.released ? c : undefined;
  }

  /** A container's calls follow the UVM's lifecycle: HANDLE_CLOSED after close; no hot add once terminating. */
  readonly #containerGate = (op: 'release' | 'addMount' | 'removeMount'): void => {
    if (op === 'addMount') this.#gate.assertRunning(`container ${op}`);
    else this.#gate.assertOpen(`container ${op}`);
  };

  #track(resources: ContainerResources): void {
    this.#containers.set(resources.containerId, resources);
  }

  async #containerChanged(resources: ContainerResources): Promise<void> {
    if (resources.released && this.#containers.get(resources.containerId) === resources) this.#containers.delete(resources.containerId);
    // After close() the journal belongs to the UVM's next owner.
    if (!this.#recovery || this.#gate.closed) return;
    if (resources.released) {
      await this.#recovery.forgetContainer(resources.containerId);
    } else {
      await this.#recovery.recordContainer(resources.snapshot());
    }
  }

  /** The managers without the journal (what adoption and the journaled views wrap). */
  #rawDevices(vpci: VpciManager | undefined): UvmDeviceSet {
    const self = this as unknown as Partial<UvmTerminationAware>;
    return {
      facts: this.facts,
      hostFs: this.hostFs,
      ...this.#managers,
      ...(vpci ? { vpci } : {}),
      sendGuestRequest: (request, options) => this.#sendGuestRequest(request, options),
      nameToGuid: (name) => this.nameToGuid(name),
      retryLater: (leftover) => this.retryLater(leftover),
      // The termination mode (containers/uvm-termination.ts) is a capability of the UVM.
      ...(typeof self.prepareForTermination === 'function' ? { prepareForTermination: () => self.prepareForTermination!() } : {}),
    };
  }

  /**
   * Releases the HCS handle and gives up the journal (its lock; the file stays for the next owner)
   * and the UVM id. Every later call rejects with HANDLE_CLOSED — releases included: what is
   * attached stays attached (and journaled) for whoever opens the UVM next. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#gate.closed) return;
    this.#gate.markClosed();
    // The HCS handle and the id go at once, in the caller's turn (a caller that does not await
    // close() still sees the handle closed); the guest channels use no HCS handle.
    this.system.close();
    this.#releaseId?.();
    await this.channels?.close();
    await this.#recovery?.journal.close();
  }

  /**
   * Retries, in every manager, each removal that failed and that no holder may retry any more
   * (e.g. after a container allocation whose rollback failed: its leases were dropped). Rejects
   * with a RELEASE_FAILED aggregate of what still fails; call again to retry those.
   */
  async retryFailedTeardowns(): Promise<void> {
    this.#gate.assertOpen('retryFailedTeardowns');
    // First what failed rollbacks left (e.g. an overlay still on the disks), then the managers'.
    const errors: unknown[] = [];
    await this.#leftovers.releaseAll().catch((err: unknown) => errors.push(err));
    const results = await Promise.allSettled([this.scsi, this.vsmb, this.vpmem, this.plan9, this.pipes, this.vpci].map((m) => m.retryFailedTeardowns()));
    errors.push(...results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : [])));
    if (errors.length > 0) throw new UvmAggregateError('RELEASE_FAILED', `retrying failed teardowns of ${this.id}`, errors);
  }

  retryLater(leftover: Releasable): void {
    this.#leftovers.push(leftover);
  }

  describe(): ResourceInfo[] {
    return [
      ...this.scsi.describe(),
      ...this.vsmb.describe(),
      ...this.vpmem.describe(),
      ...this.plan9.describe(),
      ...this.pipes.describe(),
      ...this.vpci.describe(),
      // HCS changes given up at their deadline whose outcome is not known yet, or being undone.
      ...(this.system instanceof LateOutcomeSystem ? this.system.describe() : []),
    ];
  }

  /**
   * Resolves once no HCS change of this UVM given up at its deadline (or abort) is still in doubt
   * or being undone (see docs/hcs.md, "Timeouts without cancel"); `describe()` lists them meanwhile.
   */
  settled(): Promise<void> {
    return this.system instanceof LateOutcomeSystem ? this.system.settled() : Promise.resolve();
  }

  /** Sends a guest-only request (e.g. CombinedLayers) through this UVM's guest delivery. */
  sendGuestRequest(request: GuestRequest, options: DeviceAcquireOptions = {}): Promise<void> {
    return (this.#recovery?.uvmDevices ?? this.#gated).sendGuestRequest(request, options);
  }

  #sendGuestRequest(request: GuestRequest, options: DeviceAcquireOptions = {}): Promise<void> {
    if (request === null || typeof request !== 'object' || typeof request.RequestType !== 'string' || typeof request.ResourceType !== 'string') {
      return Promise.reject(invalidArgument('a guest request needs RequestType and ResourceType'));
    }
    return this.delivery.guest(request, { signal: options.signal });
  }

  nameToGuid(name: string): string {
    return this.hcs.nameToGuid(name);
  }

}

/** Where no VpciManager is bound (a DI scope built without VpciModule). */
const unsupportedVpci: VpciManager = {
  acquire: () => Promise.reject(new UvmError('NOT_SUPPORTED', 'this UtilityVm has no vPCI manager')),
  describe: () => [],
  retryFailedTeardowns: () => Promise.resolve(),
};

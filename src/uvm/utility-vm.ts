import { inject, injectable } from 'inversify';
import { invalidArgument } from '../core/errors.js';
import { HostFs } from '../core/host-fs.js';
import { LogField, Logger } from '../core/logger.js';
import { HcsApi, type HcsCallOptions } from '../hcs/hcs-api.js';
import { isVmUnavailable } from '../hcs/hcs-error.js';
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
  type UvmDevices,
  type UvmFacts,
} from '../devices/device-types.js';
import { ResourceDelivery } from '../devices/guest-delivery.js';
import { UvmLifecycle } from '../devices/uvm-lifecycle.js';
import type { UvmOrchestratorOptions } from '../di/uvm-orchestrator.js';
import { HcsSystem } from './hcs-system-token.js';
import type { UtilityVmOptions } from './uvm-options.js';

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
export class UtilityVm implements UvmDevices {
  readonly facts: UvmFacts;
  readonly #logger: Logger;

  constructor(
    @inject(UvmDeviceConfig) config: UvmDeviceConfig,
    @inject(HcsSystem) private readonly system: HcsSystem,
    @inject(HcsApi) private readonly hcs: HcsApi,
    @inject(ResourceDelivery) private readonly delivery: ResourceDelivery,
    @inject(UvmLifecycle) private readonly lifecycle: UvmLifecycle,
    @inject(HostFs) readonly hostFs: HostFs,
    @inject(Logger) logger: Logger,
    @inject(ScsiManager) readonly scsi: ScsiManager,
    @inject(VsmbManager) readonly vsmb: VsmbManager,
    @inject(VpmemManager) readonly vpmem: VpmemManager,
    @inject(Plan9Manager) readonly plan9: Plan9Manager,
    @inject(PipeManager) readonly pipes: PipeManager,
  ) {
    this.facts = Object.freeze({
      id: config.id,
      os: config.os,
      fullyPhysicallyBacked: config.fullyPhysicallyBacked,
      noWritableFileShares: config.noWritableFileShares,
      vpmemCount: config.vpmemCount,
      vpmemMaxSizeBytes: config.vpmemMaxSizeBytes,
      vpmemMultiMapping: config.vpmemMultiMapping,
      scsiControllers: config.scsiControllers,
    });
    this.#logger = logger.child({ [LogField.uvmId]: config.id, [LogField.kind]: 'uvm' });
  }

  /**
   * Validates `options`, creates the compute system and builds this UVM's DI scope (through the
   * composition root's factory). Same as `createUvmOrchestrator(deps).createUtilityVm(options)`.
   */
  static async create(options: UtilityVmOptions, deps: UvmOrchestratorOptions = {}): Promise<UtilityVm> {
    const { createUvmOrchestrator } = await import('../di/uvm-orchestrator.js');
    return createUvmOrchestrator(deps).createUtilityVm(options);
  }

  get id(): string {
    return this.facts.id;
  }

  /** The lifecycle phase: `running`, `terminating` or `terminated`. */
  get phase(): UvmLifecycle['phase'] {
    return this.lifecycle.phase;
  }

  start(options?: HcsCallOptions): Promise<void> {
    return this.system.start(options);
  }

  /**
   * Terminates the VM. Marks the managers terminating first (removals failing because the VM is
   * gone count as done), then terminated once HCS confirms (releases then make no HCS call, and
   * VSMB forgets its idle direct-mapped shares). A VM that is already gone counts as terminated.
   */
  async terminate(options?: HcsCallOptions): Promise<void> {
    this.lifecycle.markTerminating();
    try {
      await this.system.terminate(options);
    } catch (err) {
      if (!isVmUnavailable(err)) throw err;
    }
    this.lifecycle.markTerminated();
    this.#logger.debug('terminated');
  }

  /** Releases the HCS handle. Device removals after this count as done (the handle is gone). */
  close(): void {
    this.lifecycle.markTerminating();
    this.system.close();
  }

  /** Every live resource of every manager. */
  describe(): ResourceInfo[] {
    return [
      ...this.scsi.describe(),
      ...this.vsmb.describe(),
      ...this.vpmem.describe(),
      ...this.plan9.describe(),
      ...this.pipes.describe(),
    ];
  }

  /** Sends a guest-only request (e.g. CombinedLayers) through this UVM's guest delivery. */
  sendGuestRequest(request: GuestRequest, options: DeviceAcquireOptions = {}): Promise<void> {
    if (request === null || typeof request !== 'object' || typeof request.RequestType !== 'string' || typeof request.ResourceType !== 'string') {
      return Promise.reject(invalidArgument('a guest request needs RequestType and ResourceType'));
    }
    return this.delivery.guest(request, { signal: options.signal });
  }

  nameToGuid(name: string): string {
    return this.hcs.nameToGuid(name);
  }

  // allocateContainer(...) — container resource allocation is wired here by the lead (not part
  // of the device managers); intentionally absent.
}

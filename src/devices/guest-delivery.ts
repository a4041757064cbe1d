import { invalidArgument } from '../core/errors.js';
import type { ServiceIdentifier } from 'inversify';
import type { Logger } from '../core/logger.js';
import { LogField } from '../core/logger.js';
import type { HcsCallOptions, HcsSystem } from '../hcs/hcs-api.js';
import { isGuestRefusal, isInvalidState, isNotExist } from '../hcs/hcs-error.js';
import type { GuestRequest } from '../hcs/schema.js';
import type { GuestConnection } from '../uvm/guest-connection.js';
import type { UvmLifecycle } from './uvm-lifecycle.js';
import { combinedRequest, withRequestType, type HostRequest } from './wire-requests.js';

/**
 * Where a combined removal stopped, so `release()` can resume it. Managers keep one per resource
 * and pass the same object to every attempt.
 */
export interface RemovalProgress {
  guestDone: boolean;
  hostDone: boolean;
  /**
   * A combined (single document) removal failed: HCS may have applied either half, so later
   * attempts go half by half and a "not found" of a half counts as already removed.
   */
  split: boolean;
}

/** A fresh RemovalProgress. */
export function newRemovalProgress(): RemovalProgress {
  return { guestDone: false, hostDone: false, split: false };
}

/** True when `progress` says both halves are gone (nothing is left to remove). */
export function fullyRemoved(progress: RemovalProgress): boolean {
  return progress.guestDone && progress.hostDone;
}

/**
 * How the managers of one UVM deliver host and guest halves (spec §0.2). Two implementations:
 * `ModifyDelivery` (everything through `HcsModifyComputeSystem`, the default) and
 * `GuestConnectionDelivery` (guest halves through an injected `GuestConnection`).
 *
 * Every removal (`RequestType: "Remove"`) follows the UVM lifecycle rules of `UvmLifecycle`.
 */
export interface ResourceDelivery {
  /** A host-only request (SCSI attach/detach, VSMB Add/Update/Remove, mapped pipes). */
  host(request: HostRequest, options?: HcsCallOptions): Promise<void>;
  /** A guest-only request (SCSI mount/unmount/unplug, CombinedLayers, …). */
  guest(request: GuestRequest, options?: HcsCallOptions): Promise<void>;
  /**
   * Adds a resource that has both halves (VPMEM, Plan9). If this rejects, it tried to undo the
   * halves (`guestRemoval`, when the guest half has one, undoes a guest half that applied and
   * reported a failure) and `progress` (a fresh one) says the outcome: `fullyRemoved(progress)`
   * when nothing is left, else where a retried teardown (`removeCombined` with the same
   * `progress`) starts. `options` go with the Add (its host half, when the halves are split).
   */
  addCombined(host: HostRequest, guest: GuestRequest, progress: RemovalProgress, guestRemoval?: GuestRequest, options?: HcsCallOptions): Promise<void>;
  /** Removes both halves; retry with the same `progress` after a rejection. */
  removeCombined(host: HostRequest, guest: GuestRequest, progress: RemovalProgress): Promise<void>;
  /**
   * Present when a guest add can fail after it applied (a guest connection): sends `removal`, the
   * Remove of a guest add that reported a failure, where "not found" means it was never applied.
   */
  undoFailedGuestAdd?(removal: GuestRequest): Promise<void>;
}
export const ResourceDelivery: ServiceIdentifier<ResourceDelivery> = Symbol.for('uvm-orchestrator.ResourceDelivery');

/** Shared removal rules of both delivery modes. */
abstract class DeliveryBase implements ResourceDelivery {
  constructor(
    protected readonly system: HcsSystem,
    protected readonly lifecycle: UvmLifecycle,
    protected readonly logger: Logger,
  ) {}

  abstract guest(request: GuestRequest, options?: HcsCallOptions): Promise<void>;
  abstract addCombined(host: HostRequest, guest: GuestRequest, progress: RemovalProgress, guestRemoval?: GuestRequest, options?: HcsCallOptions): Promise<void>;
  abstract removeCombined(host: HostRequest, guest: GuestRequest, progress: RemovalProgress): Promise<void>;

  host(request: HostRequest, options?: HcsCallOptions): Promise<void> {
    return request.RequestType === 'Remove' ? this.removal(() => this.system.modify(request, options)) : this.system.modify(request, options);
  }

  /**
   * Runs one removal step: skipped once the VM is terminated; a "VM not available" failure while
   * terminating counts as done; `alreadyGoneOk` also accepts "not found" (a retry after a
   * combined removal whose outcome is unknown).
   */
  protected async removal(step: () => Promise<void>, alreadyGoneOk = false): Promise<void> {
    if (this.lifecycle.phase === 'terminated') return;
    try {
      await step();
    } catch (err) {
      if (this.lifecycle.removalMayBeSkipped(err)) {
        this.logger.debug('removal skipped: the UVM is going away', { error: String(err) });
        return;
      }
      // HCS's answer for removing what is not attached is undocumented: not-found or invalid-state.
      if (alreadyGoneOk && (isNotExist(err) || isInvalidState(err))) return;
      throw err;
    }
  }

  /**
   * Undoes the host half of a failed Add (the guest half is gone) and records the outcome in
   * `progress`: both done, or the host half left for a retried teardown.
   */
  protected async compensate(host: HostRequest, cause: unknown, progress: RemovalProgress): Promise<void> {
    try {
      await this.system.modify(withRequestType(host, 'Remove'));
      Object.assign(progress, { split: true, guestDone: true, hostDone: true });
    } catch (err) {
      // Gone (not-found or invalid-state: HCS's answer is undocumented), or the VM is gone
      // (terminated, exited): nothing is left to undo.
      const gone = isNotExist(err) || isInvalidState(err) || this.lifecycle.removalMayBeSkipped(err);
      Object.assign(progress, { split: true, guestDone: true, hostDone: gone });
      if (gone) return;
      this.logger.warn('compensating host removal failed; the host half stays until a retried teardown', {
        [LogField.operation]: 'compensate',
        resourcePath: host.ResourcePath,
        error: String(err),
        cause: String(cause),
      });
    }
  }
}

/**
 * Default mode (no external guest bridge): every document goes to `HcsModifyComputeSystem`,
 * which forwards a `GuestRequest` over HCS's own bridge. Combined resources are one document.
 */
export class ModifyDelivery extends DeliveryBase {
  guest(request: GuestRequest, options?: HcsCallOptions): Promise<void> {
    const send = (): Promise<void> => this.system.modify({ GuestRequest: request }, options);
    return request.RequestType === 'Remove' ? this.removal(send) : send();
  }

  async addCombined(host: HostRequest, guest: GuestRequest, progress: RemovalProgress, _guestRemoval?: GuestRequest, options?: HcsCallOptions): Promise<void> {
    try {
      await this.system.modify(combinedRequest(host, guest), options);
    } catch (err) {
      // HCS may have applied the host half before the guest half failed.
      await this.compensate(host, err, progress);
      throw err;
    }
  }

  async removeCombined(host: HostRequest, guest: GuestRequest, progress: RemovalProgress): Promise<void> {
    if (!progress.split) {
      try {
        await this.removal(() => this.system.modify(combinedRequest(host, guest)));
        progress.guestDone = progress.hostDone = true;
        return;
      } catch (err) {
        progress.split = true;
        throw err;
      }
    }
    if (!progress.guestDone) {
      await this.removal(() => this.system.modify({ GuestRequest: guest }), true);
      progress.guestDone = true;
    }
    if (!progress.hostDone) {
      await this.removal(() => this.system.modify(host), true);
      progress.hostDone = true;
    }
  }
}

/**
 * External-bridge mode: host halves through `HcsModifyComputeSystem`, guest halves through the
 * injected `GuestConnection`. Add: host, then guest, host rolled back if the guest fails.
 * Remove: guest first, then host.
 */
export class GuestConnectionDelivery extends DeliveryBase {
  constructor(
    system: HcsSystem,
    lifecycle: UvmLifecycle,
    logger: Logger,
    private readonly connection: GuestConnection,
  ) {
    super(system, lifecycle, logger);
  }

  /**
   * A guest Remove that gets "not found" counts as done: a guest call can apply and still report
   * a failure, so a retried Remove may find the resource already gone.
   */
  guest(request: GuestRequest, options?: HcsCallOptions): Promise<void> {
    const send = (): Promise<void> => this.connection.modifySettings(request, options);
    return request.RequestType === 'Remove' ? this.removal(send, true) : send();
  }

  /**
   * The guest refusing this Remove means it does not hold the resource: the add did not apply
   * (hcsshim never sends this Remove and assumes as much). The GCS has no distinct "not found"
   * (`isGuestRefusal`); if the guest did hold it after all, the host removal that follows is
   * refused and the resource stays for a retried teardown.
   */
  async undoFailedGuestAdd(removal: GuestRequest): Promise<void> {
    try {
      await this.removal(() => this.connection.modifySettings(removal), true);
    } catch (err) {
      if (!isGuestRefusal(err)) throw err;
      this.logger.debug('the guest refused to undo a failed add: it did not apply', {
        [LogField.operation]: 'compensate',
        resourceType: removal.ResourceType,
        error: String(err),
      });
    }
  }

  async addCombined(host: HostRequest, guest: GuestRequest, progress: RemovalProgress, guestRemoval?: GuestRequest, options?: HcsCallOptions): Promise<void> {
    // Only an Add splits into host then guest; hcsshim's modify() silently drops the host half of a
    // combined Update (only Add/Remove reach HCS): refuse it rather than lose half of it.
    if (host.RequestType !== 'Add' || guest.RequestType !== 'Add') {
      Object.assign(progress, { guestDone: true, hostDone: true });
      throw invalidArgument(`a combined request with both halves must be an Add (host ${host.RequestType}, guest ${guest.RequestType})`, {
        resourcePath: host.ResourcePath,
      });
    }
    try {
      await this.system.modify(host, options);
    } catch (err) {
      Object.assign(progress, { guestDone: true, hostDone: true });
      throw err;
    }
    try {
      await this.connection.modifySettings(guest);
    } catch (err) {
      // The guest may have applied the add before reporting the failure: remove it first
      // (resources whose guest half has no Remove, e.g. vPCI, pass none).
      try {
        if (guestRemoval) await this.undoFailedGuestAdd(guestRemoval);
      } catch (undoErr) {
        Object.assign(progress, { split: true, guestDone: false, hostDone: false });
        this.logger.warn('undoing a failed guest add failed; both halves stay until a retried teardown', {
          [LogField.operation]: 'compensate',
          error: String(undoErr),
          cause: String(err),
        });
        throw err;
      }
      await this.compensate(host, err, progress);
      throw err;
    }
  }

  async removeCombined(host: HostRequest, guest: GuestRequest, progress: RemovalProgress): Promise<void> {
    if (!progress.guestDone) {
      await this.removal(() => this.connection.modifySettings(guest), true);
      progress.guestDone = true;
    }
    if (!progress.hostDone) {
      await this.removal(() => this.system.modify(host));
      progress.hostDone = true;
    }
  }
}

/** The delivery for a UVM: through `connection` when given, else through HCS alone. */
export function createResourceDelivery(
  system: HcsSystem,
  lifecycle: UvmLifecycle,
  logger: Logger,
  connection?: GuestConnection,
): ResourceDelivery {
  return connection ? new GuestConnectionDelivery(system, lifecycle, logger, connection) : new ModifyDelivery(system, lifecycle, logger);
}

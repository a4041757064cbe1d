import { inject, injectable } from 'inversify';
import { attempt } from '../core/attempt.js';
import { invalidArgument, UvmAggregateError, UvmError } from '../core/errors.js';
import type { Reservation } from '../core/refcounted-table.js';
import { ReleasableLease, type Lease } from '../core/lease.js';
import { Logger } from '../core/logger.js';
import { HcsApi } from '../hcs/hcs-api.js';
import { DeviceCore } from './device-core.js';
import { UvmDeviceConfig } from './device-config.js';
import type { DeviceAcquireOptions, ResourceInfo, ScsiDisk, ScsiDiskRequest, ScsiManager } from './device-types.js';
import { ResourceDelivery } from './guest-delivery.js';
import { grantsVmAccess, parseScsiRequest } from './scsi-parse.js';
import {
  scsiAttachPolicy,
  scsiMountAdoptProblem,
  scsiMountKey,
  scsiMountPolicy,
  type ScsiAttachment,
  type ScsiMount,
  type ScsiMountParams,
} from './scsi-policies.js';
import type { ScsiAttachConfig, ScsiMountSettings } from './scsi-requests.js';

export { grantsVmAccess } from './scsi-parse.js';

/**
 * SCSI disks of one UVM (spec §1, hcsshim G2): a host attachment (refcounted by
 * `(path, readOnly, type, evdType)`) plus, optionally, a guest mount (refcounted by
 * `(controller, lun, mount settings)`). `acquire` takes one reference of each; the lease's
 * release drops the mount reference, then the attach reference.
 *
 * Caller contract: if `acquire` rejects, this call holds no reference (an attach reference taken
 * before a failed mount has been released). A rejected `release()` may be called again; it
 * resumes where it stopped (guest unmount, guest unplug, host removal).
 */
@injectable()
export class ScsiManagerImpl implements ScsiManager {
  readonly #attachments: DeviceCore<ScsiAttachConfig, ScsiAttachment, ScsiAttachment>;
  readonly #mounts: DeviceCore<ScsiMountParams, ScsiMount, ScsiMount>;
  /** Releases that stopped part-way and whose holder may never retry them. */
  readonly #interrupted = new Set<Lease<ScsiDisk>>();
  /** Attach references let go of only once a mount whose teardown failed is gone (`#dropInOrder`). */
  readonly #behindMounts: { mount: ScsiMountParams; dropAttach: () => Promise<unknown> }[] = [];

  constructor(
    @inject(UvmDeviceConfig) private readonly config: UvmDeviceConfig,
    @inject(ResourceDelivery) delivery: ResourceDelivery,
    @inject(HcsApi) private readonly hcs: HcsApi,
    @inject(Logger) logger: Logger,
  ) {
    const { id, os } = config;
    this.#attachments = new DeviceCore(id, os, logger, scsiAttachPolicy(os, config.scsiControllers, config.reservedScsiSlots, delivery));
    this.#mounts = new DeviceCore(id, os, logger, scsiMountPolicy(os, delivery, () => this.#mounts.entries(), () => this.#mounts.values()));
  }

  async acquire(request: ScsiDiskRequest, options: DeviceAcquireOptions = {}): Promise<Lease<ScsiDisk>> {
    return this.reserve(request).commit(options);
  }

  /**
   * Reserves a disk synchronously, no I/O: its slot (shared by the same attach key, else the
   * lowest free one; NO_SLOT) and, with a mount, its guest path (shared by the same mount key,
   * else the requested one or the lowest free `m<i>`; MOUNT_CONFLICT). Throws on bad input.
   *
   * `commit` grants VM access (when asked), attaches, then mounts. An abort before the first
   * call frees the reservation with nothing sent; after it, the step in flight finishes and what
   * was done is undone in order (unmount, then unplug and detach) before it rejects with ABORTED.
   */
  reserve(request: ScsiDiskRequest): Reservation<ScsiDisk> {
    const { attach, mount, guestPath } = parseScsiRequest(this.config.os, request);
    const grant =
      grantsVmAccess(request) && attach.type !== 'ExtensibleVirtualDisk'
        ? () => this.hcs.grantVmAccess(this.config.id, attach.path)
        : undefined;
    const attachRes = this.#attachments.reserve(attach);
    let mountParams: ScsiMountParams | undefined;
    let mountRes: Reservation<ScsiMount> | undefined;
    try {
      if (mount && attachRes.value) {
        mountParams = this.#mountParams(attachRes.value, mount, guestPath);
        mountRes = this.#mounts.reserve(mountParams);
      }
    } catch (err) {
      attachRes.cancel();
      throw err;
    }
    let used = false;
    // Drops the attach reservation; settles once the teardown that may start is over.
    const cancelAttach = (): Promise<unknown> => {
      attachRes.cancel();
      return this.#attachments.whenTornDown(attach);
    };
    return {
      value: attachRes.value && diskOf(request, attachRes.value, mountRes?.value?.path),
      shared: attachRes.shared,
      cancel: () => {
        used = true;
        void this.#dropInOrder(mountRes, mountParams, cancelAttach);
      },
      commit: async (options: DeviceAcquireOptions = {}) => {
        if (used) throw new UvmError('INVALID_STATE', 'SCSI reservation already used');
        used = true;
        let attachLease: Lease<ScsiAttachment>;
        try {
          // hcsshim grants on every call, even when the disk is already attached.
          if (grant && !options.signal?.aborted) await grant();
        } catch (err) {
          await this.#dropInOrder(mountRes, mountParams, cancelAttach);
          throw err;
        }
        try {
          // A shared mount reservation may hold the mount's last reference (its other holders
          // released meanwhile): then the attach reference goes only after the unmount, here,
          // not inside the table at an abort.
          attachLease = await attachRes.commit(mountRes?.shared ? {} : options);
        } catch (err) {
          mountRes?.cancel();
          throw err;
        }
        let mountLease: Lease<ScsiMount> | undefined;
        if (mount) {
          try {
            mountParams ??= this.#mountParams(attachLease.value, mount, guestPath);
            mountRes ??= this.#mounts.reserve(mountParams);
            mountLease = await mountRes.commit(options);
          } catch (err) {
            // A failed detach stays in the attachment table, retried by retryFailedTeardowns().
            await this.#dropInOrder(mountRes, mountParams, () => attachLease.release()).catch((releaseErr: unknown) => {
              this.#attachments.log('warn', attachLease.value, 'releasing the attachment after a failed mount failed', releaseErr);
            });
            throw err;
          }
        }
        return diskLease(request, attachLease, mountLease, this.#interrupted);
      },
    };
  }

  #mountParams(a: ScsiAttachment, settings: ScsiMountSettings, path: string | undefined): ScsiMountParams {
    if (this.config.os === 'windows' && a.controller !== 0) {
      throw invalidArgument('WCOW only supports SCSI controller 0 for guest mounts');
    }
    return { controller: a.controller, lun: a.lun, settings, path };
  }

  /**
   * Cancels a disk's mount reservation (a no-op once committed), then lets go of its attach
   * reference (`dropAttach`) once that mount is gone: the reservation may have held the mount's
   * last reference, and the guest must not get the unplug while the disk is still mounted. At
   * once when no unmount is under way (the usual case: a reservation's cancel stays synchronous);
   * when the unmount fails, the attach reference stays until retryFailedTeardowns() removed it.
   */
  #dropInOrder(mountRes: Reservation<ScsiMount> | undefined, mount: ScsiMountParams | undefined, dropAttach: () => Promise<unknown>): Promise<unknown> {
    mountRes?.cancel();
    if (mount === undefined || !this.#mounts.tearingDown(mount)) return dropAttach();
    return this.#mounts.whenTornDown(mount).then((gone) => {
      if (gone) return dropAttach();
      this.#behindMounts.push({ mount, dropAttach });
      return undefined;
    });
  }

  /**
   * Recovery (docs/recovery.md): rebuilds the lease of `request` for a disk that is already
   * attached at `disk.controller:disk.lun` and mounted at `disk.guestPath`, with no HCS call and no
   * VM access grant. The same validation as `acquire`; RECOVERY_FAILED when the recorded value
   * disagrees with what is already adopted.
   */
  async adopt(request: ScsiDiskRequest, disk: ScsiDisk): Promise<Lease<ScsiDisk>> {
    const { attach, mount } = parseScsiRequest(this.config.os, request);
    const { controller, lun, guestPath } = disk;
    if (mount && guestPath === undefined) {
      throw new UvmError('RECOVERY_FAILED', `the mounted disk ${attach.path} has no recorded guest path`, { details: { hostPath: attach.path } });
    }
    const mounted = mount && { controller, lun, path: guestPath!, settings: mount, state: 'mounted' as const };
    // Checked before the attachment is adopted: dropping an adopted attachment would remove it.
    const problem = mounted && scsiMountAdoptProblem(this.#mounts.entries(), scsiMountKey(mounted), mounted.path);
    if (problem) throw problem;
    const attachLease = await this.#attachments.adopt(attach, { controller, lun, config: attach, state: 'attached' });
    const mountLease = mounted && (await this.#mounts.adopt(mounted, mounted));
    return diskLease(request, attachLease, mountLease, this.#interrupted);
  }

  describe(): ResourceInfo[] {
    return [...this.#attachments.describe(), ...this.#mounts.describe()];
  }

  /**
   * Retries every failed removal: first the releases that stopped part-way (each resumes where it
   * stopped: unmount, then the attach reference), then failed mount and attachment teardowns.
   * Rejects with every failure left (TEARDOWN_FAILED / RELEASE_FAILED); call again to retry those.
   */
  async retryFailedTeardowns(): Promise<void> {
    const results = await Promise.allSettled([...this.#interrupted].map((lease) => lease.release()));
    const errors: unknown[] = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
    await this.#mounts.retryFailedTeardowns().catch((err: unknown) => errors.push(err));
    for (const held of this.#behindMounts.splice(0)) {
      if (!this.#mounts.tearingDown(held.mount)) await attempt(held.dropAttach).catch((err: unknown) => errors.push(err));
      else this.#behindMounts.push(held);
    }
    await this.#attachments.retryFailedTeardowns().catch((err: unknown) => errors.push(err));
    if (errors.length > 0) throw new UvmAggregateError('TEARDOWN_FAILED', 'SCSI teardown failed', errors);
  }
}

/** The caller's lease of one disk: releases the mount reference, then the attach reference. */
function diskLease(
  request: ScsiDiskRequest,
  attachLease: Lease<ScsiAttachment>,
  mountLease: Lease<{ path: string }> | undefined,
  interrupted: Set<Lease<ScsiDisk>>,
): Lease<ScsiDisk> {
  const lease: Lease<ScsiDisk> = new ReleasableLease(diskOf(request, attachLease.value, mountLease?.value.path), async () => {
    try {
      if (mountLease) await mountLease.release();
      await attachLease.release();
      interrupted.delete(lease);
    } catch (err) {
      // Stopped part-way (e.g. the unmount failed, so the attach reference is still held): if the
      // holder never retries (a rolled-back allocation), retryFailedTeardowns() finishes it.
      interrupted.add(lease);
      throw err;
    }
  });
  return lease;
}

function diskOf(request: ScsiDiskRequest, { controller, lun, config }: ScsiAttachment, guestPath: string | undefined): ScsiDisk {
  return { controller, lun, hostPath: request.hostPath, readOnly: config.readOnly, type: config.type, guestPath };
}

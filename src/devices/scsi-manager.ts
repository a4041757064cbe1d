import { inject, injectable } from 'inversify';
import { invalidArgument, UvmAggregateError, UvmError } from '../core/errors.js';
import type { Reservation } from '../core/refcounted-table.js';
import { ReleasableLease, type Lease } from '../core/lease.js';
import { LogField, Logger, withFields } from '../core/logger.js';
import { HcsApi } from '../hcs/hcs-api.js';
import { UvmDeviceConfig } from './device-config.js';
import type {
  DeviceAcquireOptions,
  ResourceInfo,
  ScsiAttachType,
  ScsiDisk,
  ScsiDiskRequest,
  ScsiManager,
  ScsiMountConfig,
} from './device-types.js';
import { ResourceDelivery } from './guest-delivery.js';
import { ScsiAttachTracker, type ScsiAttachment } from './scsi-attach-tracker.js';
import { ScsiMountTracker, type ScsiMount } from './scsi-mount-tracker.js';
import type { ScsiAttachConfig, ScsiMountSettings } from './scsi-requests.js';
import { validate } from './validation.js';

const ATTACH_TYPES: readonly ScsiAttachType[] = ['VirtualDisk', 'PassThru', 'ExtensibleVirtualDisk'];
const EVD_PREFIX = 'evd://';

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
  readonly #attachments: ScsiAttachTracker;
  readonly #mounts: ScsiMountTracker;
  /** Releases that stopped part-way and whose holder may never retry them. */
  readonly #interrupted = new Set<Lease<ScsiDisk>>();
  readonly #logger: Logger;

  constructor(
    @inject(UvmDeviceConfig) private readonly config: UvmDeviceConfig,
    @inject(ResourceDelivery) delivery: ResourceDelivery,
    @inject(HcsApi) private readonly hcs: HcsApi,
    @inject(Logger) logger: Logger,
  ) {
    this.#logger = withFields(logger, { [LogField.uvmId]: config.id, [LogField.kind]: 'scsi' });
    this.#attachments = new ScsiAttachTracker(
      config.os,
      config.scsiControllers,
      config.reservedScsiSlots,
      delivery,
      this.#logger,
    );
    this.#mounts = new ScsiMountTracker(config.os, delivery, this.#logger);
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
    const { attach, mount, guestPath } = this.#parse(request);
    const grant =
      grantsVmAccess(request) && attach.type !== 'ExtensibleVirtualDisk'
        ? () => this.hcs.grantVmAccess(this.config.id, attach.path)
        : undefined;
    const attachRes = this.#attachments.reserve(attach);
    let mountRes: Reservation<ScsiMount> | undefined;
    try {
      if (mount && attachRes.value) mountRes = this.#reserveMount(attachRes.value, mount, guestPath);
    } catch (err) {
      attachRes.cancel();
      throw err;
    }
    let used = false;
    const value: ScsiDisk | undefined = attachRes.value && {
      controller: attachRes.value.controller,
      lun: attachRes.value.lun,
      hostPath: request.hostPath,
      readOnly: attach.readOnly,
      type: attach.type,
      guestPath: mountRes?.value?.path,
    };
    return {
      value,
      shared: attachRes.shared,
      cancel: () => {
        used = true;
        mountRes?.cancel();
        attachRes.cancel();
      },
      commit: async (options: DeviceAcquireOptions = {}) => {
        if (used) throw new UvmError('INVALID_STATE', 'SCSI reservation already used');
        used = true;
        let attachLease: Lease<ScsiAttachment>;
        try {
          // hcsshim grants on every call, even when the disk is already attached.
          if (grant && !options.signal?.aborted) await grant();
        } catch (err) {
          mountRes?.cancel();
          attachRes.cancel();
          throw err;
        }
        try {
          attachLease = await attachRes.commit(options);
        } catch (err) {
          mountRes?.cancel();
          throw err;
        }
        let mountLease: Lease<ScsiMount> | undefined;
        if (mount) {
          try {
            mountRes ??= this.#reserveMount(attachLease.value, mount, guestPath);
            mountLease = await mountRes.commit(options);
          } catch (err) {
            // A failed detach stays in the attachment table, retried by retryFailedTeardowns().
            await attachLease.release().catch((releaseErr: unknown) => {
              this.#logger.warn('releasing the attachment after a failed mount failed', {
                [LogField.hostPath]: attach.path,
                error: String(releaseErr),
              });
            });
            throw err;
          }
        }
        return diskLease(request, attachLease, mountLease, this.#interrupted);
      },
    };
  }

  #reserveMount(a: ScsiAttachment, mount: ScsiMountSettings, guestPath: string | undefined): Reservation<ScsiMount> {
    if (this.config.os === 'windows' && a.controller !== 0) {
      throw invalidArgument('WCOW only supports SCSI controller 0 for guest mounts');
    }
    return this.#mounts.reserve(a.controller, a.lun, mount, guestPath);
  }

  /**
   * Recovery (docs/recovery.md): rebuilds the lease of `request` for a disk that is already
   * attached at `disk.controller:disk.lun` and mounted at `disk.guestPath`, with no HCS call and no
   * VM access grant. The same validation as `acquire`; RECOVERY_FAILED when the recorded value
   * disagrees with what is already adopted.
   */
  async adopt(request: ScsiDiskRequest, disk: ScsiDisk): Promise<Lease<ScsiDisk>> {
    const { attach, mount } = this.#parse(request);
    if (mount && disk.guestPath === undefined) {
      throw new UvmError('RECOVERY_FAILED', `the mounted disk ${attach.path} has no recorded guest path`, { details: { hostPath: attach.path } });
    }
    // Checked before the attachment is adopted: dropping an adopted attachment would remove it.
    if (mount) this.#mounts.checkAdoptable(disk.controller, disk.lun, mount, disk.guestPath!);
    const attachLease = await this.#attachments.adopt(attach, disk.controller, disk.lun);
    const mountLease = mount ? await this.#mounts.adopt(disk.controller, disk.lun, mount, disk.guestPath!) : undefined;
    return diskLease(request, attachLease, mountLease, this.#interrupted);
  }

  describe(): ResourceInfo[] {
    return [...this.#attachments.describe(), ...this.#mounts.describe()];
  }

  /** Retries every teardown that failed and has no lease left to retry it (e.g. after a failed acquire). */
  /**
   * Retries every failed removal: first the releases that stopped part-way (each resumes where it
   * stopped: unmount, then the attach reference), then failed mount and attachment teardowns.
   * Rejects with every failure left (TEARDOWN_FAILED / RELEASE_FAILED); call again to retry those.
   */
  async retryFailedTeardowns(): Promise<void> {
    const results = await Promise.allSettled([...this.#interrupted].map((lease) => lease.release()));
    const errors: unknown[] = results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
    for (const table of [this.#mounts, this.#attachments]) {
      await table.retryFailedTeardowns().catch((err: unknown) => errors.push(err));
    }
    if (errors.length > 0) throw new UvmAggregateError('TEARDOWN_FAILED', 'SCSI teardown failed', errors);
  }

  /** Validates and normalises a request; throws INVALID_ARGUMENT before any HCS call. */
  #parse(request: ScsiDiskRequest): { attach: ScsiAttachConfig; mount?: ScsiMountSettings; guestPath?: string } {
    if (request === null || typeof request !== 'object') throw invalidArgument('SCSI request must be an object');
    const hostPath = validate.nonEmpty(request.hostPath, 'SCSI host path');
    const readOnly = validate.boolean(request.readOnly, 'readOnly');
    const isEvdPath = hostPath.startsWith(EVD_PREFIX);
    const type = request.type ?? (isEvdPath ? 'ExtensibleVirtualDisk' : 'VirtualDisk');
    if (!ATTACH_TYPES.includes(type)) throw invalidArgument(`unknown SCSI attach type: ${String(type)}`);
    if (request.grantVmAccess !== undefined) validate.boolean(request.grantVmAccess, 'grantVmAccess');
    let attach: ScsiAttachConfig;
    if (type === 'ExtensibleVirtualDisk') {
      attach = { ...parseEvdPath(hostPath), readOnly, type };
    } else {
      if (isEvdPath) throw invalidArgument(`an evd:// path needs type ExtensibleVirtualDisk: ${hostPath}`);
      attach = { path: validate.hostPath(hostPath, 'SCSI host path'), readOnly, type };
    }
    if (request.mount === undefined) {
      if (request.guestPath !== undefined) throw invalidArgument('a SCSI guestPath needs a mount configuration');
      return { attach };
    }
    const guestPath =
      request.guestPath === undefined ? undefined : validate.guestPath(this.config.os, request.guestPath, 'SCSI guest path');
    return { attach, mount: this.#mountSettings(request.mount, readOnly), guestPath };
  }

  #mountSettings(cfg: ScsiMountConfig, readOnly: boolean): ScsiMountSettings {
    if (cfg === null || typeof cfg !== 'object') throw invalidArgument('SCSI mount configuration must be an object');
    const options = cfg.options ?? [];
    if (!Array.isArray(options)) throw invalidArgument('mount options must be an array of strings');
    for (const o of options) validate.nonEmpty(o, 'mount option');
    if (cfg.filesystem !== undefined && typeof cfg.filesystem !== 'string') throw invalidArgument('filesystem must be a string');
    if (cfg.filesystem?.includes('\0')) throw invalidArgument('filesystem must not contain NUL characters');
    const settings: ScsiMountSettings = {
      readOnly,
      partition: validate.integer(cfg.partition, 'partition', 0, Number.MAX_SAFE_INTEGER, 0),
      encrypted: validate.boolean(cfg.encrypted, 'encrypted', false),
      options: [...options].sort(),
      ensureFilesystem: validate.boolean(cfg.ensureFilesystem, 'ensureFilesystem', false),
      filesystem: cfg.filesystem ?? '',
      blockDev: validate.boolean(cfg.blockDev, 'blockDev', false),
    };
    if (
      this.config.os === 'windows' &&
      (settings.partition !== 0 ||
        settings.encrypted ||
        settings.options.length > 0 ||
        settings.ensureFilesystem ||
        settings.filesystem !== '')
    ) {
      throw invalidArgument(
        'WCOW does not support encrypted, verity, guest options, partitions, specifying mount filesystem, or ensuring filesystem on mounts',
      );
    }
    return settings;
  }
}

/** The caller's lease of one disk: releases the mount reference, then the attach reference. */
function diskLease(
  request: ScsiDiskRequest,
  attachLease: Lease<ScsiAttachment>,
  mountLease: Lease<{ path: string }> | undefined,
  interrupted: Set<Lease<ScsiDisk>>,
): Lease<ScsiDisk> {
  const { controller, lun, config } = attachLease.value;
  const disk: ScsiDisk = {
    controller,
    lun,
    hostPath: request.hostPath,
    readOnly: config.readOnly,
    type: config.type,
    guestPath: mountLease?.value.path,
  };
  const lease: Lease<ScsiDisk> = new ReleasableLease(disk, async () => {
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

/** `evd://<type>/<path>` → `{evdType, path}` (spec §1.3); anything else is INVALID_ARGUMENT. */
export function parseEvdPath(hostPath: string): { evdType: string; path: string } {
  const rest = hostPath.startsWith(EVD_PREFIX) ? hostPath.slice(EVD_PREFIX.length) : hostPath;
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) throw invalidArgument(`invalid extensible vhd path: ${hostPath}`);
  const evdType = rest.slice(0, slash);
  if (/[\\\s]/.test(evdType)) throw invalidArgument(`invalid extensible vhd type in ${hostPath}`);
  return { evdType, path: validate.nonEmpty(rest.slice(slash + 1), 'extensible vhd path') };
}

/**
 * Whether `acquire` grants the UVM access to the file (docs/devices.md "VM access"): as asked by
 * `grantVmAccess`; by default for a writable virtual disk (as hcsshim does for every disk it
 * attaches writable), not for a read-only one, which relies on the VM-group grant of layers, nor
 * for a pass-through or extensible disk.
 */
export function grantsVmAccess(request: Pick<ScsiDiskRequest, 'grantVmAccess' | 'readOnly' | 'type'>): boolean {
  return request.grantVmAccess ?? (!request.readOnly && (request.type ?? 'VirtualDisk') === 'VirtualDisk');
}

import { UvmError } from '../core/errors.js';
import type { Lease } from '../core/lease.js';
import { LogField, type Logger } from '../core/logger.js';
import { RefCountedTable, Residue, type AcquireOptions, type Placed, type Reservation } from '../core/refcounted-table.js';
import { describeEntries } from './describe-entries.js';
import type { GuestOs, ResourceInfo } from './device-types.js';
import type { ResourceDelivery } from './guest-delivery.js';
import { guestPaths } from './guest-paths.js';
import { IndexPool } from './index-pool.js';
import { scsiRequests, type ScsiMountSettings } from './scsi-requests.js';

/** `reserved` (path taken, guest Add in flight) → `mounted` → `unmounted`. */
export type ScsiMountState = 'reserved' | 'mounted' | 'unmounted';

/** One guest mount of an attached SCSI disk. */
export interface ScsiMount {
  readonly controller: number;
  readonly lun: number;
  readonly path: string;
  /** The generated-path index (`m<i>`), when the path was generated. */
  readonly index: number | undefined;
  readonly settings: ScsiMountSettings;
  state: ScsiMountState;
}

/**
 * Guest mounts keyed by `(controller, lun, full mount settings)` (hcsshim G2). A second acquire
 * of the same key shares the mount and gets its EXISTING path, whatever path it asked for. A new
 * mount uses the caller's path (MOUNT_CONFLICT if another mount has it) or the lowest free
 * generated `m<i>` path (indexes are recycled).
 */
export class ScsiMountTracker {
  readonly #table: RefCountedTable<string, ScsiMount>;
  readonly #pathOwners = new Map<string, string>();
  readonly #indexes = new IndexPool();

  constructor(
    private readonly os: GuestOs,
    private readonly delivery: ResourceDelivery,
    private readonly logger: Logger,
  ) {
    this.#table = new RefCountedTable({ name: 'scsi-mount', destroy: (m, key) => this.#unmount(m, key), forget: (m) => this.#forget(m) });
  }

  /** One mount reference of `(controller, lun, settings)`, at `requestedPath` if it is new. */
  acquire(
    controller: number,
    lun: number,
    settings: ScsiMountSettings,
    requestedPath: string | undefined,
    options: AcquireOptions = {},
  ): Promise<Lease<ScsiMount>> {
    return this.reserve(controller, lun, settings, requestedPath).commit(options);
  }

  /**
   * Reserves one mount reference synchronously: the same key shares its mount (and path); a new
   * key takes its path now (MOUNT_CONFLICT if another mount has it, else the lowest free `m<i>`).
   */
  reserve(controller: number, lun: number, settings: ScsiMountSettings, requestedPath: string | undefined): Reservation<ScsiMount> {
    const key = JSON.stringify([controller, lun, settings]);
    return this.#table.reserve(key, () => this.#place(key, controller, lun, settings, requestedPath));
  }

  /**
   * Recovery: one reference to the mount of `(controller, lun, settings)`, already mounted at
   * `path`. A new entry takes that path with no HCS call (MOUNT_CONFLICT if another mount has it);
   * an existing entry must have the same path (RECOVERY_FAILED otherwise).
   */
  async adopt(controller: number, lun: number, settings: ScsiMountSettings, path: string): Promise<Lease<ScsiMount>> {
    this.checkAdoptable(controller, lun, settings, path);
    const key = JSON.stringify([controller, lun, settings]);
    const lease = await this.#table.acquire(key, async () => {
      if (this.#pathOwners.has(path)) {
        throw new UvmError('MOUNT_CONFLICT', `cannot adopt ${path}: another mount has it`, { details: { guestPath: path } });
      }
      this.#pathOwners.set(path, key);
      // Adopted like a caller-chosen path: the generated-index pool skips it while it is in use.
      const m: ScsiMount = { controller, lun, path, index: undefined, settings, state: 'mounted' };
      this.#log('debug', m, 'adopted');
      return m;
    });
    if (lease.value.path !== path) {
      await lease.release();
      throw new UvmError('RECOVERY_FAILED', `the mount of ${controller}:${lun} is recorded at ${path} and at ${lease.value.path}`, {
        details: { guestPath: path },
      });
    }
    return lease;
  }

  /** Throws what `adopt` would reject with, without taking anything (so a caller can check first). */
  checkAdoptable(controller: number, lun: number, settings: ScsiMountSettings, path: string): void {
    const existing = this.#table.peek(JSON.stringify([controller, lun, settings]));
    if (existing && existing.path !== path) {
      throw new UvmError('RECOVERY_FAILED', `the mount of ${controller}:${lun} is recorded at ${path} and at ${existing.path}`, {
        details: { guestPath: path },
      });
    }
    if (!existing && this.#pathOwners.has(path)) {
      throw new UvmError('MOUNT_CONFLICT', `cannot adopt ${path}: another mount has it`, { details: { guestPath: path } });
    }
  }

  describe(): ResourceInfo[] {
    return describeEntries(this.#table, 'scsi-mount', (m) =>
      m ? { slot: `${m.controller}:${m.lun}`, guestPath: m.path } : {},
    );
  }

  retryFailedTeardowns(): Promise<void> {
    return this.#table.retryFailedTeardowns();
  }

  #place(key: string, controller: number, lun: number, settings: ScsiMountSettings, requestedPath: string | undefined): Placed<ScsiMount> {
    let index: number | undefined;
    let path: string;
    if (requestedPath !== undefined) {
      if (this.#pathOwners.has(requestedPath)) {
        throw new UvmError('MOUNT_CONFLICT', `cannot mount over an existing mountpoint: ${requestedPath}`, {
          details: { guestPath: requestedPath },
        });
      }
      path = requestedPath;
    } else {
      index = this.#indexes.allocate((i) => !this.#pathOwners.has(guestPaths.scsiMount(this.os, i)));
      path = guestPaths.scsiMount(this.os, index);
    }
    this.#pathOwners.set(path, key);
    const m: ScsiMount = { controller, lun, path, index, settings, state: 'reserved' };
    return {
      value: m,
      cancel: () => this.#forget(m),
      commit: async () => {
        try {
          await this.delivery.guest(scsiRequests.mount(this.os, controller, lun, path, settings));
        } catch (err) {
          this.#log('warn', m, 'mount failed', err);
          // The guest may have applied it before reporting the failure (a guest connection):
          // undo it; "not found" means it was not applied. If that fails too, keep it for a retry.
          const left = await this.#undoFailedMount(m, err);
          if (left) return left;
          throw err;
        }
        m.state = 'mounted';
        this.#log('debug', m, 'mounted');
      },
    };
  }

  /** Undoes a guest mount that failed (it may have applied); a `Residue` when that fails too. */
  async #undoFailedMount(m: ScsiMount, cause: unknown): Promise<Residue<ScsiMount> | undefined> {
    if (!this.delivery.undoFailedGuestAdd) return undefined;
    try {
      await this.delivery.undoFailedGuestAdd(scsiRequests.unmount(this.os, m.controller, m.lun, m.path, m.settings));
      return undefined;
    } catch (err) {
      m.state = 'mounted';
      this.#log('warn', m, 'undoing a failed mount failed; kept for a retried teardown', err);
      return new Residue(cause, m);
    }
  }

  async #unmount(m: ScsiMount, _key: string): Promise<void> {
    try {
      await this.delivery.guest(scsiRequests.unmount(this.os, m.controller, m.lun, m.path, m.settings));
    } catch (err) {
      this.#log('warn', m, 'unmount failed; release() again to resume', err);
      throw err;
    }
    m.state = 'unmounted';
    this.#log('debug', m, 'unmounted');
  }

  #forget(m: ScsiMount): void {
    this.#pathOwners.delete(m.path);
    if (m.index !== undefined) this.#indexes.free(m.index);
  }

  #log(level: 'debug' | 'warn', m: ScsiMount, msg: string, err?: unknown): void {
    this.logger[level](msg, {
      [LogField.controller]: m.controller,
      [LogField.lun]: m.lun,
      [LogField.guestPath]: m.path,
      [LogField.state]: m.state,
      ...(err === undefined ? {} : { error: String(err) }),
    });
  }
}

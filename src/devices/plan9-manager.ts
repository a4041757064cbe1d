import { inject, injectable } from 'inversify';
import { invalidArgument, UvmError } from '../core/errors.js';
import { HostFs } from '../core/host-fs.js';
import { ReleasableLease, type Lease } from '../core/lease.js';
import { LogField, Logger, withFields } from '../core/logger.js';
import { mapReservation, RefCountedTable, type Placed, type Reservation } from '../core/refcounted-table.js';
import { commitCombinedAdd } from './combined-add.js';
import type { GuestRequest } from '../hcs/schema.js';
import { describeEntries } from './describe-entries.js';
import { UvmDeviceConfig } from './device-config.js';
import type { DeviceAcquireOptions, Plan9Manager, Plan9Share, Plan9ShareRequest, ResourceInfo } from './device-types.js';
import { newRemovalProgress, ResourceDelivery, type RemovalProgress } from './guest-delivery.js';
import { guestPaths } from './guest-paths.js';
import { hostPaths } from './host-paths.js';
import { resourcePaths } from './resource-paths.js';
import { statKind, validate } from './validation.js';
import { guestRequest, hostRequest, type HostRequest } from './wire-requests.js';

/** The Plan9 server port in the UVM. */
export const PLAN9_PORT = 564;

/** Plan9 share flags (spec §4.1). */
export const Plan9Flags = {
  ReadOnly: 0x1,
  LinuxMetadata: 0x4,
  CaseSensitive: 0x8,
  UseShareRootIdentity: 0x10,
  RestrictFileAccess: 0x80,
  UnlimitedConnections: 0x100,
} as const;

/** `adding` → `added` → `removed`; a failed removal stays `added` and resumes on retry. */
export type Plan9State = 'adding' | 'added' | 'removed';

interface Plan9Entry {
  readonly name: string;
  readonly hostPath: string;
  readonly readOnly: boolean;
  /** Single file: its name (the share is its directory, restricted to it). */
  readonly fileName: string | undefined;
  readonly mountPath: string;
  state: Plan9State;
  readonly removal: RemovalProgress;
}

/**
 * Plan9 shares of one LCOW UVM (spec §4): refcounted by (requested host path, read-only,
 * single-file restriction) — a directory, or a single file whose directory is shared restricted
 * to that file name. The same path read-only and read-write is two shares (as hcsshim, which makes
 * a share per mount); two files of one directory are two shares. Names are a decimal counter from
 * "0", never reused; each share is mounted once at `/run/mounts/plan9/<name>`.
 */
@injectable()
export class Plan9ManagerImpl implements Plan9Manager {
  readonly #logger: Logger;
  readonly #table: RefCountedTable<string, Plan9Entry>;
  #counter = 0;

  constructor(
    @inject(UvmDeviceConfig) private readonly config: UvmDeviceConfig,
    @inject(ResourceDelivery) private readonly delivery: ResourceDelivery,
    @inject(HostFs) private readonly hostFs: HostFs,
    @inject(Logger) logger: Logger,
  ) {
    this.#logger = withFields(logger, { [LogField.uvmId]: config.id, [LogField.kind]: 'plan9' });
    this.#table = new RefCountedTable({ name: 'plan9-share', destroy: (e) => this.#remove(e) });
  }

  async acquire(request: Plan9ShareRequest, options: DeviceAcquireOptions = {}): Promise<Lease<Plan9Share>> {
    const { hostPath } = this.#validate(request);
    return this.reserve(request, await statKind(this.hostFs, hostPath, 'Plan9 host path')).commit(options);
  }

  /**
   * Reserves a share synchronously, no I/O: the same (host path, read-only, file or directory)
   * shares its share; a new one takes the next name now. `hostKind` comes from a stat of the path.
   */
  reserve(request: Plan9ShareRequest, hostKind: 'file' | 'directory'): Reservation<Plan9Share> {
    const { hostPath, readOnly } = this.#validate(request);
    const restricted = hostKind === 'file';
    const r = this.#table.reserve(keyOf(hostPath, readOnly, restricted), () => this.#place(hostPath, readOnly, restricted));
    return mapReservation(r, (e) => shareOf(hostPath, e));
  }

  #validate(request: Plan9ShareRequest): { hostPath: string; readOnly: boolean } {
    if (this.config.os !== 'linux') throw new UvmError('NOT_SUPPORTED', 'Plan9 shares are only supported in LCOW UVMs');
    if (request === null || typeof request !== 'object') throw invalidArgument('Plan9 request must be an object');
    const hostPath = validate.hostPath(request.hostPath, 'Plan9 host path');
    const readOnly = validate.boolean(request.readOnly, 'readOnly');
    if (!readOnly && this.config.noWritableFileShares) {
      throw new UvmError('ACCESS_DENIED', 'adding writable shares is denied', { details: { hostPath } });
    }
    return { hostPath, readOnly };
  }

  /**
   * Recovery (docs/recovery.md): rebuilds the lease of a share that is already added and mounted
   * as `share.name`, with no HCS call; the name counter moves past it (names are never reused).
   * RECOVERY_FAILED when an adopted share of the same host path has another name.
   */
  async adopt(request: Plan9ShareRequest, share: Plan9Share): Promise<Lease<Plan9Share>> {
    if (this.config.os !== 'linux') throw new UvmError('NOT_SUPPORTED', 'Plan9 shares are only supported in LCOW UVMs');
    if (request === null || typeof request !== 'object') throw invalidArgument('Plan9 request must be an object');
    const hostPath = validate.hostPath(request.hostPath, 'Plan9 host path');
    const readOnly = validate.boolean(request.readOnly, 'readOnly');
    const name = validate.name(share.name, 'Plan9 share name');
    if (!/^\d+$/.test(name)) throw new UvmError('RECOVERY_FAILED', `not a Plan9 share name of this library: ${name}`);
    const mountPath = guestPaths.plan9Mount(name);
    // A single-file share's guest path is `<mount path>/<file>` (as recorded).
    const recordedMount = typeof share.mountPath === 'string' ? share.mountPath : mountPath;
    const restricted = share.guestPath !== undefined && share.guestPath !== recordedMount;
    const lease = await this.#table.acquire(keyOf(hostPath, readOnly, restricted), async () => {
      this.reserveNames(Number(name) + 1);
      const e: Plan9Entry = {
        name,
        hostPath,
        readOnly,
        fileName: restricted ? hostPaths.basename(hostPath) : undefined,
        mountPath,
        state: 'added',
        removal: newRemovalProgress(),
      };
      this.#log('debug', e, 'adopted');
      return e;
    });
    if (lease.value.name !== name) {
      await lease.release();
      throw new UvmError('RECOVERY_FAILED', `${hostPath} is recorded as Plan9 shares ${name} and ${lease.value.name}`, { details: { hostPath } });
    }
    return shareLease(hostPath, lease);
  }

  /** Recovery: the next share name is at least `next` (names seen in HCS or the journal are never reused). */
  reserveNames(next: number): void {
    if (Number.isSafeInteger(next)) this.#counter = Math.max(this.#counter, next);
  }

  describe(): ResourceInfo[] {
    return describeEntries(this.#table, 'plan9-share', (e, key) =>
      e ? { hostPath: e.hostPath, slot: e.name, guestPath: e.mountPath } : { hostPath: key },
    );
  }

  retryFailedTeardowns(): Promise<void> {
    return this.#table.retryFailedTeardowns();
  }

  #place(hostPath: string, readOnly: boolean, restricted: boolean): Placed<Plan9Entry> {
    const n = this.#counter++;
    const name = String(n);
    const fileName = restricted ? hostPaths.basename(hostPath) : undefined;
    const e: Plan9Entry = {
      name,
      hostPath,
      readOnly,
      fileName,
      mountPath: guestPaths.plan9Mount(name),
      state: 'adding',
      removal: newRemovalProgress(),
    };
    const flags =
      Plan9Flags.LinuxMetadata | (readOnly ? Plan9Flags.ReadOnly : 0) | (fileName === undefined ? 0 : Plan9Flags.RestrictFileAccess);
    const host = hostRequest(resourcePaths.plan9Shares, 'Add', {
      Name: name,
      AccessName: name,
      Path: fileName === undefined ? hostPath : hostPaths.withTrailingSeparator(hostPaths.dirname(hostPath)),
      Port: PLAN9_PORT,
      Flags: flags,
      AllowedFiles: fileName === undefined ? undefined : [fileName],
    });
    const guest = guestRequest('Add', 'MappedDirectory', { MountPath: e.mountPath, ShareName: name, Port: PLAN9_PORT, ReadOnly: readOnly });
    return {
      value: e,
      // A failed add leaves a gap (as hcsshim's counter); a reservation cancelled before any
      // call gives its name back when it is the newest (a plan cancels newest first).
      cancel: () => {
        if (this.#counter === n + 1) this.#counter = n;
      },
      commit: () =>
        commitCombinedAdd(this.delivery, {
          host,
          guest,
          removal: e.removal,
          guestRemoval: removalRequests(e).guest,
          value: e,
          added: () => {
            e.state = 'added';
            this.#log('debug', e, 'added');
          },
          log: (level, message, err) => this.#log(level, e, message, err),
        }),
    };
  }

  async #remove(e: Plan9Entry): Promise<void> {
    const { host, guest } = removalRequests(e);
    try {
      await this.delivery.removeCombined(host, guest, e.removal);
    } catch (err) {
      this.#log('warn', e, 'remove failed; release() again to resume', err);
      throw err;
    }
    e.state = 'removed';
    this.#log('debug', e, 'removed');
  }

  #log(level: 'debug' | 'warn', e: Plan9Entry, msg: string, err?: unknown): void {
    this.#logger[level](msg, {
      [LogField.hostPath]: e.hostPath,
      [LogField.share]: e.name,
      [LogField.guestPath]: e.mountPath,
      [LogField.state]: e.state,
      ...(err === undefined ? {} : { error: String(err) }),
    });
  }
}

function keyOf(hostPath: string, readOnly: boolean, restricted: boolean): string {
  return JSON.stringify([hostPath, readOnly, restricted]);
}

/** The host and guest Remove of a share. */
function removalRequests(e: Plan9Entry): { host: HostRequest; guest: GuestRequest } {
  return {
    host: hostRequest(resourcePaths.plan9Shares, 'Remove', { Name: e.name, AccessName: e.name, Port: PLAN9_PORT }),
    guest: guestRequest('Remove', 'MappedDirectory', { MountPath: e.mountPath, ShareName: e.name, Port: PLAN9_PORT }),
  };
}

function shareOf(hostPath: string, e: Plan9Entry): Plan9Share {
  return {
    name: e.name,
    hostPath,
    readOnly: e.readOnly,
    mountPath: e.mountPath,
    guestPath: e.fileName === undefined ? e.mountPath : guestPaths.join('linux', e.mountPath, e.fileName),
  };
}

/** The caller's lease of one share. */
function shareLease(hostPath: string, lease: Lease<Plan9Entry>): Lease<Plan9Share> {
  return new ReleasableLease(shareOf(hostPath, lease.value), () => lease.release());
}

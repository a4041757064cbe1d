import { inject, injectable } from 'inversify';
import { UvmError } from '../core/errors.js';
import { HostFs } from '../core/host-fs.js';
import type { Lease } from '../core/lease.js';
import { Logger } from '../core/logger.js';
import type { Reservation } from '../core/refcounted-table.js';
import { commitCombinedAdd } from './combined-add.js';
import { DeviceCore, NameCounter, type DevicePlacement } from './device-core.js';
import { UvmDeviceConfig } from './device-config.js';
import type { DeviceAcquireOptions, HostPathKind, Plan9Manager, Plan9Share, Plan9ShareRequest, ResourceInfo } from './device-types.js';
import { newRemovalProgress, ResourceDelivery, type RemovalProgress } from './guest-delivery.js';
import { guestPaths } from './guest-paths.js';
import { hostPaths } from './host-paths.js';
import { resourcePaths } from './resource-paths.js';
import { statKind, validate } from './validation.js';
import { guestRequest, hostRequest, type HostRequest } from './wire-requests.js';
import type { GuestRequest } from '../hcs/schema.js';

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

/** A validated request: what keys a share. */
interface Plan9Params {
  readonly hostPath: string;
  readonly readOnly: boolean;
  /** A single file: its directory is shared, restricted to it. */
  readonly restricted: boolean;
}

interface Plan9Entry extends Plan9Params {
  readonly name: string;
  readonly mountPath: string;
  /** Where a removal stopped (shared with a failed add's compensation). */
  readonly removal: RemovalProgress;
}

/**
 * Plan9 shares of one LCOW UVM (spec §4): refcounted by (requested host path, read-only,
 * single-file restriction) — a directory, or a single file whose directory is shared restricted
 * to that file name. The same path read-only and read-write is two shares (as hcsshim, which makes
 * a share per mount); two files of one directory are two shares. Names are a decimal counter from
 * "0", never reused; each share is mounted once at `/run/mounts/plan9/<name>`. A policy over the
 * device core (device-core.ts).
 */
@injectable()
export class Plan9ManagerImpl implements Plan9Manager {
  readonly #core: DeviceCore<Plan9Params, Plan9Entry, Plan9Share>;
  readonly #names = new NameCounter(0);

  constructor(
    @inject(UvmDeviceConfig) private readonly config: UvmDeviceConfig,
    @inject(ResourceDelivery) private readonly delivery: ResourceDelivery,
    @inject(HostFs) private readonly hostFs: HostFs,
    @inject(Logger) logger: Logger,
  ) {
    this.#core = new DeviceCore(config.id, config.os, logger, {
      device: 'plan9',
      kind: 'plan9-share',
      only: { os: 'linux', message: 'Plan9 shares are only supported in LCOW UVMs' },
      key: (p) => JSON.stringify([p.hostPath, p.readOnly, p.restricted]),
      place: (p) => this.#place(p),
      remove: (e) => this.delivery.removeCombined(...removal(e), e.removal),
      where: (e) => ({ hostPath: e.hostPath, slot: e.name, guestPath: e.mountPath }),
      view: shareOf,
      claim: (p, share) => {
        this.reserveNames(Number(share.name) + 1);
        return entry(p, share.name);
      },
      conflict: (e, share) => (e.name === share.name ? undefined : `${e.hostPath} is recorded as Plan9 shares ${share.name} and ${e.name}`),
    });
  }

  async acquire(request: Plan9ShareRequest, options: DeviceAcquireOptions = {}): Promise<Lease<Plan9Share>> {
    const { hostPath } = this.#validate(request);
    return this.reserve(request, await statKind(this.hostFs, hostPath, 'Plan9 host path')).commit(options);
  }

  /**
   * Reserves a share synchronously, no I/O: the same (host path, read-only, file or directory)
   * shares its share; a new one takes the next name now. `hostKind` comes from a stat of the path.
   */
  reserve(request: Plan9ShareRequest, hostKind: HostPathKind): Reservation<Plan9Share> {
    const { hostPath, readOnly } = this.#validate(request);
    if (!readOnly && this.config.noWritableFileShares) {
      throw new UvmError('ACCESS_DENIED', 'adding writable shares is denied', { details: { hostPath } });
    }
    return this.#core.reserve({ hostPath, readOnly, restricted: hostKind === 'file' });
  }

  #validate(request: Plan9ShareRequest): { hostPath: string; readOnly: boolean } {
    this.#core.check(request, 'Plan9 request');
    return { hostPath: validate.hostPath(request.hostPath, 'Plan9 host path'), readOnly: validate.boolean(request.readOnly, 'readOnly') };
  }

  /**
   * Recovery (docs/recovery.md): rebuilds the lease of a share that is already added and mounted
   * as `share.name`, with no HCS call; the name counter moves past it (names are never reused).
   * RECOVERY_FAILED when an adopted share of the same host path has another name.
   */
  async adopt(request: Plan9ShareRequest, share: Plan9Share): Promise<Lease<Plan9Share>> {
    const { hostPath, readOnly } = this.#validate(request);
    const name = validate.name(share.name, 'Plan9 share name');
    if (!/^\d+$/.test(name)) throw new UvmError('RECOVERY_FAILED', `not a Plan9 share name of this library: ${name}`);
    // A single-file share's guest path is `<mount path>/<file>` (as recorded).
    const recordedMount = typeof share.mountPath === 'string' ? share.mountPath : guestPaths.plan9Mount(name);
    const restricted = share.guestPath !== undefined && share.guestPath !== recordedMount;
    return this.#core.adopt({ hostPath, readOnly, restricted }, { ...share, name });
  }

  /** Recovery: the next share name is at least `next` (names seen in HCS or the journal are never reused). */
  reserveNames(next: number): void {
    this.#names.atLeast(next);
  }

  describe(): ResourceInfo[] {
    return this.#core.describe();
  }

  retryFailedTeardowns(): Promise<void> {
    return this.#core.retryFailedTeardowns();
  }

  #place(p: Plan9Params): DevicePlacement<Plan9Entry> {
    const { n, giveBack } = this.#names.take();
    const e = entry(p, String(n));
    const fileName = p.restricted ? hostPaths.basename(p.hostPath) : undefined;
    const flags = Plan9Flags.LinuxMetadata | (p.readOnly ? Plan9Flags.ReadOnly : 0) | (p.restricted ? Plan9Flags.RestrictFileAccess : 0);
    const host = hostRequest(resourcePaths.plan9Shares, 'Add', {
      Name: e.name,
      AccessName: e.name,
      Path: p.restricted ? hostPaths.withTrailingSeparator(hostPaths.dirname(p.hostPath)) : p.hostPath,
      Port: PLAN9_PORT,
      Flags: flags,
      AllowedFiles: fileName === undefined ? undefined : [fileName],
    });
    const guest = guestRequest('Add', 'MappedDirectory', { MountPath: e.mountPath, ShareName: e.name, Port: PLAN9_PORT, ReadOnly: p.readOnly });
    return {
      value: e,
      cancel: giveBack,
      commit: () => commitCombinedAdd(this.delivery, { host, guest, removal: e.removal, guestRemoval: removal(e)[1], value: e }),
    };
  }
}

function entry(p: Plan9Params, name: string): Plan9Entry {
  // Field by field, not `{ ...p }`: one hidden class for every entry, and no generic object copy.
  return { hostPath: p.hostPath, readOnly: p.readOnly, restricted: p.restricted, name, mountPath: guestPaths.plan9Mount(name), removal: newRemovalProgress() };
}

/** The host and guest Remove of a share. */
function removal(e: Plan9Entry): [HostRequest, GuestRequest] {
  return [
    hostRequest(resourcePaths.plan9Shares, 'Remove', { Name: e.name, AccessName: e.name, Port: PLAN9_PORT }),
    guestRequest('Remove', 'MappedDirectory', { MountPath: e.mountPath, ShareName: e.name, Port: PLAN9_PORT }),
  ];
}

function shareOf(e: Plan9Entry, p: Plan9Params): Plan9Share {
  return {
    name: e.name,
    hostPath: p.hostPath,
    readOnly: e.readOnly,
    mountPath: e.mountPath,
    guestPath: e.restricted ? guestPaths.join('linux', e.mountPath, hostPaths.basename(e.hostPath)) : e.mountPath,
  };
}

import { inject, injectable } from 'inversify';
import { invalidArgument, UvmError } from '../core/errors.js';
import { HostFs } from '../core/host-fs.js';
import { ReleasableLease, type Lease } from '../core/lease.js';
import { LogField, Logger, withFields } from '../core/logger.js';
import { mapReservation, RefCountedTable, type Placed, type Reservation } from '../core/refcounted-table.js';
import { describeEntries } from './describe-entries.js';
import { UvmDeviceConfig } from './device-config.js';
import type {
  DeviceAcquireOptions,
  ResourceInfo,
  VsmbManager,
  VsmbShare,
  VsmbShareOptions,
  VsmbShareRequest,
} from './device-types.js';
import { ResourceDelivery } from './guest-delivery.js';
import { guestPaths } from './guest-paths.js';
import { hostPaths } from './host-paths.js';
import { resourcePaths } from './resource-paths.js';
import { SerialQueue } from './serial-queue.js';
import { UvmLifecycle } from './uvm-lifecycle.js';
import { statKind, validate } from './validation.js';
import { vsmbShareOptions } from './vsmb-options.js';
import { hostRequest, type HostRequest } from './wire-requests.js';
import { omitEmpty } from '../hcs/schema.js';

/** One VSMB share on the host (a directory share, or a restricted share of a file's directory). */
interface ShareEntry {
  readonly name: string;
  /** The shared (cleaned) directory. */
  readonly dir: string;
  readonly readOnly: boolean;
  readonly options: VsmbShareOptions;
  readonly restricted: boolean;
  /** Files currently in use (restricted shares), in first-use order. */
  live: string[];
  /** The AllowedFiles HCS has (restricted shares). */
  applied: string[];
  /** Serialises Updates: each carries the whole AllowedFiles list. */
  readonly updates: SerialQueue;
}

/** One file of a restricted share, holding a reference to that share. */
interface FileEntry {
  readonly file: string;
  /** Known at reservation, except for a share that was being removed then (known at commit). */
  share: ShareEntry | undefined;
  shareLease: Lease<ShareEntry> | undefined;
}

/**
 * VSMB shares of one WCOW UVM (spec §2). Directory shares are keyed by `(clean dir, readOnly)`;
 * a single file shares its parent directory (restricted share keyed the same way in a separate
 * table) with AllowedFiles listing the full host paths of the files in use.
 *
 * Deliberate differences from hcsshim (docs/devices.md):
 * - When the last user of one file goes away but the restricted share stays, an Update removes
 *   that file from AllowedFiles: a single-file share exposes only the files currently in use.
 * - Bookkeeping never waits on another share's HCS call (hcsshim holds the UVM lock).
 *
 * Direct-mapped shares (NoDirectmap false) are kept on last release (state `kept`, refcount 0,
 * listed by `describe()`) and reused by a later acquire; they are never removed while the VM runs:
 * removing one while guest handles are open would unmap files from guest memory (it can crash the
 * UVM), and HCS only purges guest handles under conditions the shim cannot detect (spec §2.4).
 * They go with the VM; `purge()` forgets them when the UVM goes away.
 */
@injectable()
export class VsmbManagerImpl implements VsmbManager {
  readonly #logger: Logger;
  readonly #dirShares: RefCountedTable<string, ShareEntry>;
  readonly #fileShares: RefCountedTable<string, ShareEntry>;
  readonly #files: RefCountedTable<string, FileEntry>;
  #counter = 0;

  constructor(
    @inject(UvmDeviceConfig) private readonly config: UvmDeviceConfig,
    @inject(ResourceDelivery) private readonly delivery: ResourceDelivery,
    @inject(HostFs) private readonly hostFs: HostFs,
    @inject(Logger) logger: Logger,
    @inject(UvmLifecycle) private readonly lifecycle: UvmLifecycle,
  ) {
    this.#logger = withFields(logger, { [LogField.uvmId]: config.id, [LogField.kind]: 'vsmb' });
    lifecycle.onTerminated(() => this.purge());
    const keepAtZero = (share: ShareEntry): boolean => !share.options.NoDirectmap;
    this.#dirShares = new RefCountedTable({ name: 'vsmb-dir-share', destroy: (s) => this.#destroyShare(s), keepAtZero });
    this.#fileShares = new RefCountedTable({ name: 'vsmb-file-share', destroy: (s) => this.#destroyShare(s), keepAtZero });
    this.#files = new RefCountedTable({ name: 'vsmb-file', destroy: (f) => this.#destroyFile(f) });
  }

  async acquire(request: VsmbShareRequest, options: DeviceAcquireOptions = {}): Promise<Lease<VsmbShare>> {
    const { hostPath } = this.#validate(request);
    return this.reserve(request, await statKind(this.hostFs, hostPath, 'VSMB host path')).commit(options);
  }

  /**
   * Reserves a share synchronously, no I/O: a directory share keyed by (clean dir, read-only), or
   * for a file its directory's restricted share (same key in the file-share table) plus the file.
   * A new share takes the next name now. `hostKind` comes from a stat of the path.
   */
  reserve(request: VsmbShareRequest, hostKind: 'file' | 'directory'): Reservation<VsmbShare> {
    const { hostPath, readOnly, layer } = this.#validate(request);
    const noDirectMap = this.config.fullyPhysicallyBacked || this.config.vsmbNoDirectMap;
    if (hostKind === 'directory') {
      const dir = hostPaths.clean(hostPath);
      const opts = vsmbShareOptions({ readOnly, noDirectMap, layer });
      const r = this.#dirShares.reserve(JSON.stringify([dir, readOnly]), () => this.#placeShare(dir, readOnly, opts, undefined));
      const view = (share: ShareEntry): VsmbShare => {
        const sharePath = guestPaths.vsmbShare(share.name);
        return { name: share.name, hostPath, readOnly, sharePath, guestPath: sharePath };
      };
      return mapReservation(r, view);
    }
    const file = hostPaths.clean(hostPath);
    const dir = hostPaths.dirname(file);
    const opts = vsmbShareOptions({ readOnly, noDirectMap, layer, singleFile: true });
    const r = this.#files.reserve(JSON.stringify([dir, readOnly, file]), () => this.#placeFile(dir, readOnly, file, opts));
    const view = (share: ShareEntry): VsmbShare => ({
      name: share.name,
      hostPath,
      readOnly,
      sharePath: guestPaths.vsmbShare(share.name),
      guestPath: guestPaths.vsmbFile(share.name, hostPaths.basename(file)),
    });
    return {
      value: r.value?.share && view(r.value.share),
      shared: r.shared,
      cancel: () => r.cancel(),
      commit: async (options) => {
        const lease = await r.commit(options);
        return new ReleasableLease(view(lease.value.share!), () => lease.release());
      },
    };
  }

  #validate(request: VsmbShareRequest): { hostPath: string; readOnly: boolean; layer: boolean } {
    if (this.config.os !== 'windows') throw new UvmError('NOT_SUPPORTED', 'VSMB shares are only supported in WCOW UVMs');
    if (request === null || typeof request !== 'object') throw invalidArgument('VSMB request must be an object');
    const hostPath = validate.hostPath(request.hostPath, 'VSMB host path');
    const readOnly = validate.boolean(request.readOnly, 'readOnly');
    const layer = validate.boolean(request.layer, 'layer', false);
    if (layer && !readOnly) throw invalidArgument('a VSMB layer share must be read-only');
    if (!readOnly && this.config.noWritableFileShares) {
      throw new UvmError('ACCESS_DENIED', 'adding writable shares is denied', { details: { hostPath } });
    }
    return { hostPath, readOnly, layer };
  }

  /**
   * Recovery (docs/recovery.md): rebuilds the lease of a share that HCS already has as
   * `share.name` (a directory share, or the restricted share of a single file when
   * `share.guestPath` differs from `share.sharePath`), with no HCS call and no host file system
   * access; the name counter moves past it. The AllowedFiles of an adopted restricted share are
   * taken to be its adopted files; the next Update sends the exact list.
   */
  async adopt(request: VsmbShareRequest, share: VsmbShare): Promise<Lease<VsmbShare>> {
    if (this.config.os !== 'windows') throw new UvmError('NOT_SUPPORTED', 'VSMB shares are only supported in WCOW UVMs');
    if (request === null || typeof request !== 'object') throw invalidArgument('VSMB request must be an object');
    const hostPath = validate.hostPath(request.hostPath, 'VSMB host path');
    const readOnly = validate.boolean(request.readOnly, 'readOnly');
    const layer = validate.boolean(request.layer, 'layer', false);
    const name = validate.name(share.name, 'VSMB share name');
    if (!/^s[0-9a-f]+$/.test(name)) throw new UvmError('RECOVERY_FAILED', `not a VSMB share name of this library: ${name}`);
    const noDirectMap = this.config.fullyPhysicallyBacked || this.config.vsmbNoDirectMap;
    const claim = (restricted: boolean, dir: string, options: VsmbShareOptions) => async (): Promise<ShareEntry> => {
      this.reserveNames(parseInt(name.slice(1), 16) + 1);
      const entry: ShareEntry = { name, dir, readOnly, options, restricted, live: [], applied: [], updates: new SerialQueue() };
      this.#log('debug', entry, 'share adopted');
      return entry;
    };
    const mismatch = async (lease: Lease<unknown>, other: string): Promise<never> => {
      await lease.release();
      throw new UvmError('RECOVERY_FAILED', `${hostPath} is recorded as VSMB shares ${name} and ${other}`, { details: { hostPath } });
    };
    if (share.guestPath === share.sharePath) {
      const dir = hostPaths.clean(hostPath);
      const key = JSON.stringify([dir, readOnly]);
      const lease = await this.#dirShares.acquire(key, claim(false, dir, vsmbShareOptions({ readOnly, noDirectMap, layer })));
      if (lease.value.name !== name) await mismatch(lease, lease.value.name);
      const sharePath = guestPaths.vsmbShare(name);
      return new ReleasableLease({ name, hostPath, readOnly, sharePath, guestPath: sharePath }, () => lease.release());
    }
    const file = hostPaths.clean(hostPath);
    const dir = hostPaths.dirname(file);
    const options = vsmbShareOptions({ readOnly, noDirectMap, layer, singleFile: true });
    const shareKey = JSON.stringify([dir, readOnly]);
    const lease = await this.#files.acquire(JSON.stringify([dir, readOnly, file]), async () => {
      const shareLease = await this.#fileShares.acquire(shareKey, claim(true, dir, options));
      const entry = shareLease.value;
      if (entry.name !== name) await mismatch(shareLease, entry.name);
      entry.live.push(file);
      entry.applied = [...entry.live];
      return { file, share: entry, shareLease };
    });
    if (lease.value.share!.name !== name) await mismatch(lease, lease.value.share!.name);
    return new ReleasableLease(
      { name, hostPath, readOnly, sharePath: guestPaths.vsmbShare(name), guestPath: guestPaths.vsmbFile(name, hostPaths.basename(file)) },
      () => lease.release(),
    );
  }

  /** Recovery: the next share name is at least `s<hex next>` (names are never reused). */
  reserveNames(next: number): void {
    if (Number.isSafeInteger(next)) this.#counter = Math.max(this.#counter, next - 1);
  }

  describe(): ResourceInfo[] {
    const share = (s: ShareEntry | undefined): Omit<ResourceInfo, 'kind' | 'key' | 'state' | 'refCount'> =>
      s ? { hostPath: s.dir, slot: s.name, guestPath: guestPaths.vsmbShare(s.name) } : {};
    return [
      ...describeEntries(this.#dirShares, 'vsmb-share', share),
      ...describeEntries(this.#fileShares, 'vsmb-share', share),
      ...describeEntries(this.#files, 'vsmb-file', (f) =>
        f?.share ? { hostPath: f.file, slot: f.share.name, guestPath: guestPaths.vsmbFile(f.share.name, hostPaths.basename(f.file)) } : {},
      ),
    ];
  }

  /** Forgets the direct-mapped shares kept at refcount 0 (the UVM is gone, and they with it). */
  purge(): void {
    this.#dirShares.purge();
    this.#fileShares.purge();
  }

  async retryFailedTeardowns(): Promise<void> {
    await this.#files.retryFailedTeardowns();
    await this.#fileShares.retryFailedTeardowns();
    await this.#dirShares.retryFailedTeardowns();
  }

  #placeShare(dir: string, readOnly: boolean, options: VsmbShareOptions, firstFile: string | undefined): Placed<ShareEntry> {
    const n = ++this.#counter;
    const share: ShareEntry = {
      name: `s${n.toString(16)}`,
      dir,
      readOnly,
      options,
      restricted: firstFile !== undefined,
      live: [],
      applied: firstFile === undefined ? [] : [firstFile],
      updates: new SerialQueue(),
    };
    return {
      value: share,
      // A failed add leaves a gap (as hcsshim's counter); a reservation cancelled before any
      // call gives its name back when it is the newest (a plan cancels newest first).
      cancel: () => {
        if (this.#counter === n) this.#counter = n - 1;
      },
      commit: async () => {
        await this.delivery.host(this.#request('Add', share, share.applied));
        this.#log('debug', share, 'share added');
      },
    };
  }

  /** Only shares with NoDirectmap get here: direct-mapped ones are kept at refcount 0. */
  async #destroyShare(share: ShareEntry): Promise<void> {
    await this.delivery.host(hostRequest(resourcePaths.vsmbShares, 'Remove', { Name: share.name }));
    this.#log('debug', share, 'share removed');
  }

  #placeFile(dir: string, readOnly: boolean, file: string, options: VsmbShareOptions): Placed<FileEntry> {
    const shareKey = JSON.stringify([dir, readOnly]);
    const shareRes = this.#fileShares.reserve(shareKey, () => this.#placeShare(dir, readOnly, options, file));
    const entry: FileEntry = { file, share: shareRes.value, shareLease: undefined };
    return {
      value: entry,
      cancel: () => shareRes.cancel(),
      commit: async () => {
        const shareLease = await shareRes.commit();
        const share = shareLease.value;
        entry.share = share;
        entry.shareLease = shareLease;
        share.live.push(file);
        try {
          await this.#syncAllowedFiles(share);
        } catch (err) {
          share.live = share.live.filter((f) => f !== file);
          await shareLease.release().catch((e: unknown) => this.#log('warn', share, 'releasing the share failed', e));
          throw err;
        }
      },
    };
  }

  async #destroyFile(f: FileEntry): Promise<void> {
    const share = f.share!;
    share.live = share.live.filter((x) => x !== f.file);
    // Other files still use the share: shrink AllowedFiles (deliberate improvement over hcsshim).
    // Moot once the UVM is going away, like every other removal.
    if (share.live.length > 0 && this.lifecycle.phase === 'running') await this.#syncAllowedFiles(share);
    await f.shareLease!.release();
  }

  /** Brings HCS's AllowedFiles to the files in use (one Update at a time per share). */
  #syncAllowedFiles(share: ShareEntry): Promise<void> {
    return share.updates.run(async () => {
      const target = [...share.live];
      if (target.length === 0 || sameList(target, share.applied)) return;
      await this.delivery.host(this.#request('Update', share, target));
      share.applied = target;
      this.#log('debug', share, 'allowed files updated');
    });
  }

  /** An Add or Update: `Options` is always sent, `{}` when no option is set (a non-nil pointer in hcsshim). */
  #request(type: 'Add' | 'Update', share: ShareEntry, allowedFiles: string[]): HostRequest {
    const request = hostRequest(resourcePaths.vsmbShares, type, { Name: share.name, Path: share.dir, AllowedFiles: allowedFiles });
    request.Settings = { ...request.Settings, Options: omitEmpty(share.options) };
    return request;
  }

  #log(level: 'debug' | 'warn', share: ShareEntry, msg: string, err?: unknown): void {
    this.#logger[level](msg, {
      [LogField.share]: share.name,
      [LogField.hostPath]: share.dir,
      [LogField.guestPath]: guestPaths.vsmbShare(share.name),
      ...(err === undefined ? {} : { error: String(err) }),
    });
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

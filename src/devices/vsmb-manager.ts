import { inject, injectable } from 'inversify';
import { invalidArgument, UvmError } from '../core/errors.js';
import { HostFs } from '../core/host-fs.js';
import { ReleasableLease, type Lease } from '../core/lease.js';
import { LogField, Logger } from '../core/logger.js';
import { InOrder } from '../core/in-order.js';
import { RefCountedTable } from '../core/refcounted-table.js';
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
import { validate } from './validation.js';
import { vsmbShareOptions } from './vsmb-options.js';
import { hostRequest } from './wire-requests.js';

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
  readonly share: ShareEntry;
  readonly shareLease: Lease<ShareEntry>;
}

type ShareTableKind = 'dir' | 'file';

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
 * Direct-mapped shares (NoDirectmap false) are kept on last release (refcount 0) and reused by a
 * later acquire: removing one while guest handles are open would unmap files from guest memory,
 * and HCS only purges guest handles under conditions the shim cannot detect (spec §2.4).
 * `purge()` forgets them when the UVM goes away; `removeIdle()` removes them explicitly.
 */
@injectable()
export class VsmbManagerImpl implements VsmbManager {
  readonly #logger: Logger;
  readonly #dirShares: RefCountedTable<string, ShareEntry>;
  readonly #fileShares: RefCountedTable<string, ShareEntry>;
  readonly #files: RefCountedTable<string, FileEntry>;
  /** Direct-mapped shares kept at refcount 0, by table kind + key. */
  readonly #idle = new Map<string, { kind: ShareTableKind; key: string; share: ShareEntry }>();
  #counter = 0;
  readonly #order = new InOrder();

  constructor(
    @inject(UvmDeviceConfig) private readonly config: UvmDeviceConfig,
    @inject(ResourceDelivery) private readonly delivery: ResourceDelivery,
    @inject(HostFs) private readonly hostFs: HostFs,
    @inject(Logger) logger: Logger,
    @inject(UvmLifecycle) private readonly lifecycle: UvmLifecycle,
  ) {
    this.#logger = logger.child({ [LogField.uvmId]: config.id, [LogField.kind]: 'vsmb' });
    lifecycle.onTerminated(() => this.purge());
    this.#dirShares = new RefCountedTable({ name: 'vsmb-dir-share', destroy: (s, k) => this.#destroyShare('dir', k, s) });
    this.#fileShares = new RefCountedTable({ name: 'vsmb-file-share', destroy: (s, k) => this.#destroyShare('file', k, s) });
    this.#files = new RefCountedTable({ name: 'vsmb-file', destroy: (f) => this.#destroyFile(f) });
  }

  async acquire(request: VsmbShareRequest, options: DeviceAcquireOptions = {}): Promise<Lease<VsmbShare>> {
    if (this.config.os !== 'windows') throw new UvmError('NOT_SUPPORTED', 'VSMB shares are only supported in WCOW UVMs');
    if (request === null || typeof request !== 'object') throw invalidArgument('VSMB request must be an object');
    const hostPath = validate.hostPath(request.hostPath, 'VSMB host path');
    const readOnly = validate.boolean(request.readOnly, 'readOnly');
    const layer = validate.boolean(request.layer, 'layer', false);
    if (layer && !readOnly) throw invalidArgument('a VSMB layer share must be read-only');
    if (!readOnly && this.config.noWritableFileShares) {
      throw new UvmError('ACCESS_DENIED', 'adding writable shares is denied', { details: { hostPath } });
    }
    const noDirectMap = this.config.fullyPhysicallyBacked || this.config.vsmbNoDirectMap;
    // Stats run concurrently; share names are handed out in call order, so they are deterministic.
    const turn = this.#order.take();
    let stat: Awaited<ReturnType<HostFs['stat']>>;
    try {
      stat = await this.hostFs.stat(hostPath);
    } catch (err) {
      turn.done();
      throw err;
    }
    if (stat.isDirectory) {
      const dir = hostPaths.clean(hostPath);
      const key = JSON.stringify([dir, readOnly]);
      const opts = vsmbShareOptions({ readOnly, noDirectMap, layer });
      const lease = await turn.run(() => this.#dirShares.acquire(key, () => this.#createShare('dir', key, dir, readOnly, opts), options));
      const share = lease.value;
      const sharePath = guestPaths.vsmbShare(share.name);
      return new ReleasableLease({ name: share.name, hostPath, readOnly, sharePath, guestPath: sharePath }, () => lease.release());
    }
    if (!stat.isFile) {
      turn.done();
      throw invalidArgument(`VSMB host path is neither a file nor a directory: ${hostPath}`);
    }
    const file = hostPaths.clean(hostPath);
    const dir = hostPaths.dirname(file);
    const opts = vsmbShareOptions({ readOnly, noDirectMap, layer, singleFile: true });
    const fileKey = JSON.stringify([dir, readOnly, file]);
    const lease = await turn.run(() => this.#files.acquire(fileKey, () => this.#createFile(dir, readOnly, file, opts), options));
    const name = lease.value.share.name;
    return new ReleasableLease(
      {
        name,
        hostPath,
        readOnly,
        sharePath: guestPaths.vsmbShare(name),
        guestPath: guestPaths.vsmbFile(name, hostPaths.basename(file)),
      },
      () => lease.release(),
    );
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
    const claim = (kind: ShareTableKind, dir: string, options: VsmbShareOptions) => async (): Promise<ShareEntry> => {
      this.reserveNames(parseInt(name.slice(1), 16) + 1);
      const entry: ShareEntry = { name, dir, readOnly, options, restricted: kind === 'file', live: [], applied: [], updates: new SerialQueue() };
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
      const lease = await this.#dirShares.acquire(key, claim('dir', dir, vsmbShareOptions({ readOnly, noDirectMap, layer })));
      if (lease.value.name !== name) await mismatch(lease, lease.value.name);
      const sharePath = guestPaths.vsmbShare(name);
      return new ReleasableLease({ name, hostPath, readOnly, sharePath, guestPath: sharePath }, () => lease.release());
    }
    const file = hostPaths.clean(hostPath);
    const dir = hostPaths.dirname(file);
    const options = vsmbShareOptions({ readOnly, noDirectMap, layer, singleFile: true });
    const shareKey = JSON.stringify([dir, readOnly]);
    const lease = await this.#files.acquire(JSON.stringify([dir, readOnly, file]), async () => {
      const shareLease = await this.#fileShares.acquire(shareKey, claim('file', dir, options));
      const entry = shareLease.value;
      if (entry.name !== name) await mismatch(shareLease, entry.name);
      entry.live.push(file);
      entry.applied = [...entry.live];
      return { file, share: entry, shareLease };
    });
    if (lease.value.share.name !== name) await mismatch(lease, lease.value.share.name);
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
      ...[...this.#idle.values()].map(
        ({ key, share: s }): ResourceInfo => ({ kind: 'vsmb-share', key, state: 'live', refCount: 0, ...share(s) }),
      ),
      ...describeEntries(this.#files, 'vsmb-file', (f) =>
        f ? { hostPath: f.file, slot: f.share.name, guestPath: guestPaths.vsmbFile(f.share.name, hostPaths.basename(f.file)) } : {},
      ),
    ];
  }

  /** Forgets the direct-mapped shares kept at refcount 0 (the UVM is going away). */
  purge(): void {
    if (this.#idle.size > 0) this.#logger.debug('forgetting idle direct-mapped shares', { count: this.#idle.size });
    this.#idle.clear();
  }

  /**
   * Removes the direct-mapped shares kept at refcount 0 from the VM. Only safe when the caller
   * knows no guest handle on them is open. Rejects with the failures; the failed ones stay idle.
   */
  async removeIdle(): Promise<void> {
    const errors: unknown[] = [];
    const idle = [...this.#idle];
    // Taken out first, so a concurrent acquire of the same key creates a new share instead of
    // reviving one that is being removed.
    this.#idle.clear();
    for (const [id, entry] of idle) {
      try {
        await this.delivery.host(hostRequest(resourcePaths.vsmbShares, 'Remove', { Name: entry.share.name }));
      } catch (err) {
        errors.push(err);
        this.#idle.set(id, entry);
      }
    }
    if (errors.length > 0) throw new UvmError('TEARDOWN_FAILED', 'removing idle VSMB shares failed', { cause: errors[0] });
  }

  async retryFailedTeardowns(): Promise<void> {
    await this.#files.retryFailedTeardowns();
    await this.#fileShares.retryFailedTeardowns();
    await this.#dirShares.retryFailedTeardowns();
  }

  async #createShare(
    kind: ShareTableKind,
    key: string,
    dir: string,
    readOnly: boolean,
    options: VsmbShareOptions,
    firstFile?: string,
  ): Promise<ShareEntry> {
    const idle = this.#idle.get(`${kind}|${key}`);
    if (idle) {
      this.#idle.delete(`${kind}|${key}`);
      this.#log('debug', idle.share, 'reusing idle direct-mapped share');
      return idle.share;
    }
    const share: ShareEntry = {
      name: `s${(++this.#counter).toString(16)}`,
      dir,
      readOnly,
      options,
      restricted: kind === 'file',
      live: [],
      applied: firstFile === undefined ? [] : [firstFile],
      updates: new SerialQueue(),
    };
    await this.delivery.host(hostRequest(resourcePaths.vsmbShares, 'Add', this.#settings(share, share.applied)));
    this.#log('debug', share, 'share added');
    return share;
  }

  async #destroyShare(kind: ShareTableKind, key: string, share: ShareEntry): Promise<void> {
    if (!share.options.NoDirectmap) {
      this.#idle.set(`${kind}|${key}`, { kind, key, share });
      this.#log('debug', share, 'direct-mapped share kept (refcount 0)');
      return;
    }
    await this.delivery.host(hostRequest(resourcePaths.vsmbShares, 'Remove', { Name: share.name }));
    this.#log('debug', share, 'share removed');
  }

  async #createFile(dir: string, readOnly: boolean, file: string, options: VsmbShareOptions): Promise<FileEntry> {
    const shareKey = JSON.stringify([dir, readOnly]);
    const shareLease = await this.#fileShares.acquire(shareKey, () =>
      this.#createShare('file', shareKey, dir, readOnly, options, file),
    );
    const share = shareLease.value;
    share.live.push(file);
    try {
      await this.#syncAllowedFiles(share);
    } catch (err) {
      share.live = share.live.filter((f) => f !== file);
      await shareLease.release().catch((e: unknown) => this.#log('warn', share, 'releasing the share failed', e));
      throw err;
    }
    return { file, share, shareLease };
  }

  async #destroyFile(f: FileEntry): Promise<void> {
    const { share } = f;
    share.live = share.live.filter((x) => x !== f.file);
    // Other files still use the share: shrink AllowedFiles (deliberate improvement over hcsshim).
    // Moot once the UVM is going away, like every other removal.
    if (share.live.length > 0 && this.lifecycle.phase === 'running') await this.#syncAllowedFiles(share);
    await f.shareLease.release();
  }

  /** Brings HCS's AllowedFiles to the files in use (one Update at a time per share). */
  #syncAllowedFiles(share: ShareEntry): Promise<void> {
    return share.updates.run(async () => {
      const target = [...share.live];
      if (target.length === 0 || sameList(target, share.applied)) return;
      await this.delivery.host(hostRequest(resourcePaths.vsmbShares, 'Update', this.#settings(share, target)));
      share.applied = target;
      this.#log('debug', share, 'allowed files updated');
    });
  }

  #settings(share: ShareEntry, allowedFiles: string[]): Record<string, unknown> {
    return { Name: share.name, Path: share.dir, Options: share.options, AllowedFiles: allowedFiles };
  }

  #log(level: 'debug' | 'warn', share: ShareEntry, msg: string, err?: unknown): void {
    this.#logger.log(level, msg, {
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

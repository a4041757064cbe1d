import { inject, injectable } from 'inversify';
import { invalidArgument, UvmError } from '../core/errors.js';
import { HostFs } from '../core/host-fs.js';
import { ReleasableLease, type Lease } from '../core/lease.js';
import { Logger } from '../core/logger.js';
import type { Reservation } from '../core/refcounted-table.js';
import { DeviceCore, NameCounter } from './device-core.js';
import { UvmDeviceConfig } from './device-config.js';
import type { DeviceAcquireOptions, ResourceInfo, VsmbManager, VsmbShare, VsmbShareRequest } from './device-types.js';
import { ResourceDelivery } from './guest-delivery.js';
import { guestPaths } from './guest-paths.js';
import { hostPaths } from './host-paths.js';
import { UvmLifecycle } from './uvm-lifecycle.js';
import { statKind, validate } from './validation.js';
import { vsmbShareOptions } from './vsmb-options.js';
import { shareEntry, vsmbFilePolicy, vsmbSharePolicy, type FileEntry, type ShareEntry, type ShareParams } from './vsmb-policies.js';

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
  readonly #dirShares: DeviceCore<ShareParams, ShareEntry, VsmbShare>;
  readonly #fileShares: DeviceCore<ShareParams, ShareEntry, ShareEntry>;
  readonly #files: DeviceCore<ShareParams & { file: string }, FileEntry, FileEntry>;
  readonly #names = new NameCounter(1);

  constructor(
    @inject(UvmDeviceConfig) private readonly config: UvmDeviceConfig,
    @inject(ResourceDelivery) delivery: ResourceDelivery,
    @inject(HostFs) private readonly hostFs: HostFs,
    @inject(Logger) logger: Logger,
    @inject(UvmLifecycle) lifecycle: UvmLifecycle,
  ) {
    lifecycle.onTerminated(() => this.purge());
    const { id, os } = config;
    this.#dirShares = new DeviceCore(id, os, logger, vsmbSharePolicy('vsmb-dir-share', this.#names, delivery, (share, p) => shareOf(share, p.hostPath)));
    this.#fileShares = new DeviceCore(id, os, logger, vsmbSharePolicy('vsmb-file-share', this.#names, delivery, (share) => share));
    this.#files = new DeviceCore(id, os, logger, vsmbFilePolicy(this.#fileShares, delivery, () => lifecycle.phase === 'running'));
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
    if (hostKind === 'directory') return this.#dirShares.reserve(this.#params(hostPath, readOnly, layer, false));
    const p = this.#params(hostPath, readOnly, layer, true);
    const r = this.#files.reserve(p);
    return {
      value: r.value?.share && shareOf(r.value.share, hostPath, p.file),
      shared: r.shared,
      cancel: () => r.cancel(),
      commit: async (options) => {
        const lease = await r.commit(options);
        return new ReleasableLease(shareOf(lease.value.share!, hostPath, p.file), () => lease.release());
      },
    };
  }

  /** The checks of a request shared by `reserve` and `adopt`. */
  #parse(request: VsmbShareRequest): { hostPath: string; readOnly: boolean; layer: boolean } {
    this.#dirShares.check(request, 'VSMB request');
    const hostPath = validate.hostPath(request.hostPath, 'VSMB host path');
    const readOnly = validate.boolean(request.readOnly, 'readOnly');
    const layer = validate.boolean(request.layer, 'layer', false);
    return { hostPath, readOnly, layer };
  }

  #validate(request: VsmbShareRequest): { hostPath: string; readOnly: boolean; layer: boolean } {
    const parsed = this.#parse(request);
    if (parsed.layer && !parsed.readOnly) throw invalidArgument('a VSMB layer share must be read-only');
    if (!parsed.readOnly && this.config.noWritableFileShares) {
      throw new UvmError('ACCESS_DENIED', 'adding writable shares is denied', { details: { hostPath: parsed.hostPath } });
    }
    return parsed;
  }

  /** What a share of `hostPath` is made of: its directory (for a file, the file's), read-only, options. */
  #params(hostPath: string, readOnly: boolean, layer: boolean, singleFile: true): ShareParams & { file: string };
  #params(hostPath: string, readOnly: boolean, layer: boolean, singleFile: false): ShareParams;
  #params(hostPath: string, readOnly: boolean, layer: boolean, singleFile: boolean): ShareParams {
    const noDirectMap = this.config.fullyPhysicallyBacked || this.config.vsmbNoDirectMap;
    const options = vsmbShareOptions({ readOnly, noDirectMap, layer, singleFile });
    const clean = hostPaths.clean(hostPath);
    return singleFile ? { hostPath, dir: hostPaths.dirname(clean), readOnly, options, file: clean } : { hostPath, dir: clean, readOnly, options };
  }

  /**
   * Recovery (docs/recovery.md): rebuilds the lease of a share that HCS already has as
   * `share.name` (a directory share, or the restricted share of a single file when
   * `share.guestPath` differs from `share.sharePath`), with no HCS call and no host file system
   * access; the name counter moves past it. The AllowedFiles of an adopted restricted share are
   * taken to be its adopted files; the next Update sends the exact list.
   */
  async adopt(request: VsmbShareRequest, share: VsmbShare): Promise<Lease<VsmbShare>> {
    const { hostPath, readOnly, layer } = this.#parse(request);
    const name = validate.name(share.name, 'VSMB share name');
    if (!/^s[0-9a-f]+$/.test(name)) throw new UvmError('RECOVERY_FAILED', `not a VSMB share name of this library: ${name}`);
    if (share.guestPath === share.sharePath) {
      return this.#dirShares.adopt(this.#params(hostPath, readOnly, layer, false), share);
    }
    const p = this.#params(hostPath, readOnly, layer, true);
    const lease = await this.#files.adopt(p, { file: p.file, share: shareEntry(name, p), shareLease: undefined });
    return new ReleasableLease(shareOf(lease.value.share!, hostPath, p.file), () => lease.release());
  }

  /** Recovery: the next share name is at least `s<hex next>` (names are never reused). */
  reserveNames(next: number): void {
    this.#names.atLeast(next);
  }

  describe(): ResourceInfo[] {
    return [...this.#dirShares.describe(), ...this.#fileShares.describe(), ...this.#files.describe()];
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
}

/** The caller's view of `share` for `hostPath` (for a single file, `file` inside the share). */
function shareOf(share: ShareEntry, hostPath: string, file?: string): VsmbShare {
  const sharePath = guestPaths.vsmbShare(share.name);
  const guestPath = file === undefined ? sharePath : guestPaths.vsmbFile(share.name, hostPaths.basename(file));
  return { name: share.name, hostPath, readOnly: share.readOnly, sharePath, guestPath };
}

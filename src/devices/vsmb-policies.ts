/**
 * VSMB over the device core: one policy for shares (directory shares, and the restricted shares
 * of single files, each kind in its own table with the same key) and one for the files of
 * restricted shares, each file holding a reference to its share.
 */
import type { Lease } from '../core/lease.js';
import { omitEmpty } from '../hcs/schema.js';
import type { DeviceCore, DevicePolicy, NameCounter } from './device-core.js';
import type { VsmbShareOptions } from './device-types.js';
import type { ResourceDelivery } from './guest-delivery.js';
import { guestPaths } from './guest-paths.js';
import { hostPaths } from './host-paths.js';
import { resourcePaths } from './resource-paths.js';
import { SerialQueue } from './serial-queue.js';
import { hostRequest, type HostRequest } from './wire-requests.js';

const WCOW_ONLY = { os: 'windows', message: 'VSMB shares are only supported in WCOW UVMs' } as const;

/** What a share is made of: the shared (cleaned) directory, read-only, options; a file's share also `file`. */
export interface ShareParams {
  /** The caller's host path (what its lease shows); not part of the key. */
  readonly hostPath: string;
  readonly dir: string;
  readonly readOnly: boolean;
  readonly options: VsmbShareOptions;
  /** A single file (full cleaned host path): the share is its directory, restricted to the files in use. */
  readonly file?: string;
}

/** One VSMB share on the host (a directory share, or a restricted share of a file's directory). */
export interface ShareEntry {
  readonly name: string;
  readonly dir: string;
  readonly readOnly: boolean;
  readonly options: VsmbShareOptions;
  /** Files currently in use (restricted shares), in first-use order. */
  live: string[];
  /** The AllowedFiles HCS has (restricted shares). */
  applied: string[];
  /** Serialises Updates: each carries the whole AllowedFiles list. */
  readonly updates: SerialQueue;
}

/** One file of a restricted share, holding a reference to that share. */
export interface FileEntry {
  readonly file: string;
  /** Known at reservation, except for a share that was being removed then (known at commit). */
  share: ShareEntry | undefined;
  shareLease: Lease<ShareEntry> | undefined;
}

/** The share named `name` made of `p` (AllowedFiles: the first file of a restricted share). */
export function shareEntry(name: string, p: ShareParams): ShareEntry {
  const { dir, readOnly, options, file } = p;
  return { name, dir, readOnly, options, live: [], applied: file === undefined ? [] : [file], updates: new SerialQueue() };
}

/**
 * Shares keyed by `(clean dir, readOnly)`, named `s<hex>` from `names` (never reused; a failed add
 * leaves a gap, as hcsshim's counter; a reservation cancelled before any call gives its name back
 * when it is the newest). Direct-mapped shares (NoDirectmap false) are kept at refcount 0.
 */
export function vsmbSharePolicy<W extends { readonly name: string }>(
  table: 'vsmb-dir-share' | 'vsmb-file-share',
  names: NameCounter,
  delivery: ResourceDelivery,
  /** What a caller's reservation and lease hold (a recorded share, for `adopt`, has at least its name). */
  view: (share: ShareEntry, p: ShareParams) => W,
): DevicePolicy<ShareParams, ShareEntry, W> {
  return {
    device: 'vsmb',
    kind: 'vsmb-share',
    table,
    only: WCOW_ONLY,
    key: (p) => JSON.stringify([p.dir, p.readOnly]),
    place(p) {
      const { n, giveBack } = names.take();
      const share = shareEntry(`s${n.toString(16)}`, p);
      return { value: share, cancel: giveBack, commit: () => delivery.host(shareRequest('Add', share, share.applied)) };
    },
    // Only shares with NoDirectmap get here: direct-mapped ones are kept at refcount 0.
    remove: (share) => delivery.host(hostRequest(resourcePaths.vsmbShares, 'Remove', { Name: share.name })),
    keepAtZero: (share) => !share.options.NoDirectmap,
    where: (share) => ({ hostPath: share.dir, slot: share.name, guestPath: guestPaths.vsmbShare(share.name) }),
    view,
    claim(p, recorded) {
      names.atLeast(parseInt(recorded.name.slice(1), 16) + 1);
      return shareEntry(recorded.name, p);
    },
    conflict: (share, recorded) =>
      share.name === recorded.name ? undefined : `${share.dir} is recorded as VSMB shares ${recorded.name} and ${share.name}`,
  };
}

/**
 * Files keyed by `(clean dir, readOnly, file)`, each holding a reference to its directory's
 * restricted share (in `shares`), whose AllowedFiles list the files in use. When the last user of
 * one file goes away but the share stays, an Update removes that file from AllowedFiles (a
 * deliberate difference from hcsshim, docs/devices.md) while the UVM is `running`.
 */
export function vsmbFilePolicy(
  shares: DeviceCore<ShareParams, ShareEntry, ShareEntry>,
  delivery: ResourceDelivery,
  running: () => boolean,
): DevicePolicy<ShareParams & { file: string }, FileEntry, FileEntry> {
  return {
    device: 'vsmb',
    kind: 'vsmb-file',
    table: 'vsmb-file',
    only: WCOW_ONLY,
    key: (p) => JSON.stringify([p.dir, p.readOnly, p.file]),
    place(p) {
      const shareRes = shares.reserve(p);
      const entry: FileEntry = { file: p.file, share: shareRes.value, shareLease: undefined };
      return {
        value: entry,
        cancel: () => shareRes.cancel(),
        commit: async () => {
          const shareLease = await shareRes.commit();
          const share = shareLease.value;
          entry.share = share;
          entry.shareLease = shareLease;
          share.live.push(p.file);
          try {
            await syncAllowedFiles(delivery, share);
          } catch (err) {
            share.live = share.live.filter((f) => f !== p.file);
            await shareLease.release().catch((e: unknown) => shares.log('warn', share, 'releasing the share failed', e));
            throw err;
          }
        },
      };
    },
    async remove(f) {
      const share = f.share!;
      share.live = share.live.filter((x) => x !== f.file);
      // Other files still use the share: shrink AllowedFiles. Moot once the UVM is going away.
      if (share.live.length > 0 && running()) await syncAllowedFiles(delivery, share);
      await f.shareLease!.release();
    },
    where: (f) =>
      f.share ? { hostPath: f.file, slot: f.share.name, guestPath: guestPaths.vsmbFile(f.share.name, hostPaths.basename(f.file)) } : {},
    view: (f) => f,
    async claim(p, recorded) {
      const shareLease = await shares.adopt(p, recorded.share!);
      const share = shareLease.value;
      share.live.push(p.file);
      share.applied = [...share.live];
      return { file: p.file, share, shareLease };
    },
    conflict: (f, recorded) =>
      f.share!.name === recorded.share!.name ? undefined : `${f.file} is recorded as VSMB shares ${recorded.share!.name} and ${f.share!.name}`,
  };
}

/** Brings HCS's AllowedFiles to the files in use (one Update at a time per share). */
function syncAllowedFiles(delivery: ResourceDelivery, share: ShareEntry): Promise<void> {
  return share.updates.run(async () => {
    const target = [...share.live];
    if (target.length === 0 || sameList(target, share.applied)) return;
    await delivery.host(shareRequest('Update', share, target));
    share.applied = target;
  });
}

/** An Add or Update: `Options` is always sent, `{}` when no option is set (a non-nil pointer in hcsshim). */
function shareRequest(type: 'Add' | 'Update', share: ShareEntry, allowedFiles: string[]): HostRequest {
  const request = hostRequest(resourcePaths.vsmbShares, type, { Name: share.name, Path: share.dir, AllowedFiles: allowedFiles });
  request.Settings = { ...request.Settings, Options: omitEmpty(share.options) };
  return request;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * SCSI over the device core: two policies, one for host attachments and one for guest mounts.
 * What a placement takes is in the table's value (the attachment's slot, the mount's path), so a
 * free slot or path is whatever no entry of the table holds.
 */
import { UvmError } from '../core/errors.js';
import type { EntryInfo } from '../core/refcounted-table.js';
import { Residue } from '../core/refcounted-table.js';
import { SlotAllocator } from '../core/slot-allocator.js';
import { THEN_ONE_MORE, THEN_TWO_MORE } from './call-priority.js';
import type { DevicePolicy } from './device-core.js';
import type { GuestOs } from './device-types.js';
import type { ResourceDelivery } from './guest-delivery.js';
import { guestPaths } from './guest-paths.js';
import { SCSI_LUNS_PER_CONTROLLER } from './resource-paths.js';
import { scsiRequests, type ScsiAttachConfig, type ScsiMountSettings } from './scsi-requests.js';

/**
 * Lifecycle of a SCSI attachment (H8):
 *
 * ```
 * reserved ──host Add──► attached ──guest SCSIDevice Remove (LCOW)──► ejected ──host Remove──► detached
 *    │ Add fails                │ (WCOW: no unplug) ────────────────────────────────┘
 *    ▼                          │ unplug fails: stays attached;  host remove fails: stays ejected
 * (slot freed)                  ▼ a retried release resumes from the state it stopped in
 * ```
 */
export type ScsiAttachmentState = 'reserved' | 'attached' | 'ejected' | 'detached';

/** One occupied SCSI slot. */
export interface ScsiAttachment {
  readonly controller: number;
  readonly lun: number;
  readonly config: ScsiAttachConfig;
  state: ScsiAttachmentState;
}

/**
 * Host attachments keyed by `(path, readOnly, type, evdType)` (hcsshim G2): the same key shares
 * one slot; a new key takes the lowest free slot, controller-major, never a reserved one (NO_SLOT
 * when none). Restore claims exactly the recorded slot.
 */
export function scsiAttachPolicy(
  os: GuestOs,
  controllers: number,
  reservedSlots: readonly number[],
  delivery: ResourceDelivery,
): DevicePolicy<ScsiAttachConfig, ScsiAttachment, ScsiAttachment> {
  const slots = new SlotAllocator(controllers * SCSI_LUNS_PER_CONTROLLER, reservedSlots);
  const at = (slot: number, config: ScsiAttachConfig, state: ScsiAttachmentState): ScsiAttachment => ({
    controller: Math.floor(slot / SCSI_LUNS_PER_CONTROLLER),
    lun: slot % SCSI_LUNS_PER_CONTROLLER,
    config,
    state,
  });
  return {
    device: 'scsi',
    kind: 'scsi-attachment',
    table: 'scsi-attach',
    key: (cfg) => JSON.stringify([cfg.path, cfg.readOnly, cfg.type, cfg.evdType ?? '']),
    place(cfg) {
      const slot = slots.allocate();
      if (slot === undefined) throw new UvmError('NO_SLOT', `no free SCSI slot for ${cfg.path}`, { details: { hostPath: cfg.path } });
      const a = at(slot, cfg, 'reserved');
      return {
        value: a,
        commit: async () => {
          // A mount usually follows, then what needs it (a container's overlay).
          await delivery.host(scsiRequests.attach(a.controller, a.lun, cfg), THEN_TWO_MORE);
          a.state = 'attached';
        },
      };
    },
    forget: (a) => slots.free(a.controller * SCSI_LUNS_PER_CONTROLLER + a.lun),
    async remove(a) {
      if (a.state === 'attached' && os === 'linux') {
        await delivery.guest(scsiRequests.unplug(a.controller, a.lun), THEN_ONE_MORE);
        a.state = 'ejected';
      }
      if (a.state === 'attached' || a.state === 'ejected') {
        await delivery.host(scsiRequests.detach(a.controller, a.lun));
        a.state = 'detached';
      }
    },
    where: (a) => ({ hostPath: a.config.path, slot: `${a.controller}:${a.lun}` }),
    fields: (a) => ({ controller: a.controller, lun: a.lun, state: a.state }),
    view: (a) => a,
    claim(cfg, recorded) {
      const slot = recorded.controller * SCSI_LUNS_PER_CONTROLLER + recorded.lun;
      slots.claim(slot);
      return at(slot, cfg, 'attached');
    },
    conflict: (a, recorded) =>
      a.controller === recorded.controller && a.lun === recorded.lun
        ? undefined
        : `${a.config.path} is recorded at ${recorded.controller}:${recorded.lun} and at ${a.controller}:${a.lun}`,
  };
}

/** `reserved` (path taken, guest Add in flight) → `mounted` → `unmounted`. */
export type ScsiMountState = 'reserved' | 'mounted' | 'unmounted';

/** One guest mount of an attached SCSI disk. */
export interface ScsiMount {
  readonly controller: number;
  readonly lun: number;
  readonly path: string;
  readonly settings: ScsiMountSettings;
  state: ScsiMountState;
}

/** A mount request: the disk's slot, its settings, and the caller's path (else a generated one). */
export interface ScsiMountParams {
  readonly controller: number;
  readonly lun: number;
  readonly settings: ScsiMountSettings;
  readonly path?: string;
}

/** The mount refcount key: `(controller, lun, full mount settings)` (hcsshim G2). */
export function scsiMountKey(p: Pick<ScsiMountParams, 'controller' | 'lun' | 'settings'>): string {
  return JSON.stringify([p.controller, p.lun, p.settings]);
}

/**
 * Guest mounts keyed by `(controller, lun, full mount settings)`. A second acquire of the same key
 * shares the mount and gets its EXISTING path, whatever path it asked for. A new mount uses the
 * caller's path (MOUNT_CONFLICT if another mount has it) or the lowest generated `m<i>` path no
 * mount has (so indexes are recycled). `entries` are the mount table's entries, `values` its values.
 */
export function scsiMountPolicy(
  os: GuestOs,
  delivery: ResourceDelivery,
  entries: () => EntryInfo<string, ScsiMount>[],
  values: () => Iterable<ScsiMount>,
): DevicePolicy<ScsiMountParams, ScsiMount, ScsiMount> {
  const unmount = (m: ScsiMount) => scsiRequests.unmount(os, m.controller, m.lun, m.path, m.settings);
  return {
    device: 'scsi',
    kind: 'scsi-mount',
    key: scsiMountKey,
    place(p) {
      let path = p.path;
      if (path !== undefined) {
        // A given path (a container's scratch): one scan, no set of every path.
        for (const m of values()) {
          if (m.path === path) throw new UvmError('MOUNT_CONFLICT', `cannot mount over an existing mountpoint: ${path}`, { details: { guestPath: path } });
        }
      } else {
        const used = pathsInUse(values());
        for (let i = 0; path === undefined; i++) if (!used.has(guestPaths.scsiMount(os, i))) path = guestPaths.scsiMount(os, i);
      }
      const m: ScsiMount = { controller: p.controller, lun: p.lun, path, settings: p.settings, state: 'reserved' };
      return {
        value: m,
        commit: async () => {
          try {
            await delivery.guest(scsiRequests.mount(os, m.controller, m.lun, m.path, m.settings), THEN_ONE_MORE);
          } catch (err) {
            // The guest may have applied it before reporting the failure (a guest connection):
            // undo it; "not found" means it was not applied. If that fails too, keep it for a retry.
            if (!delivery.undoFailedGuestAdd) throw err;
            const undone = await delivery.undoFailedGuestAdd(unmount(m)).then(() => true, () => false);
            if (undone) throw err;
            m.state = 'mounted';
            return new Residue(err, m);
          }
          m.state = 'mounted';
        },
      };
    },
    async remove(m) {
      // The disk's removal usually follows (its last mount): unplug (LCOW) and detach.
      await delivery.guest(unmount(m), os === 'linux' ? THEN_TWO_MORE : THEN_ONE_MORE);
      m.state = 'unmounted';
    },
    where: (m) => ({ slot: `${m.controller}:${m.lun}`, guestPath: m.path }),
    fields: (m) => ({ controller: m.controller, lun: m.lun, state: m.state }),
    view: (m) => m,
    claim(p, recorded) {
      const problem = scsiMountAdoptProblem(entries(), scsiMountKey(p), recorded.path);
      if (problem) throw problem;
      return { controller: p.controller, lun: p.lun, path: recorded.path, settings: p.settings, state: 'mounted' };
    },
    conflict: (m, recorded) =>
      m.path === recorded.path ? undefined : `the mount of ${m.controller}:${m.lun} is recorded at ${recorded.path} and at ${m.path}`,
  };
}

/**
 * What restoring the mount `key` at `path` would be refused with, checked before anything is
 * taken: RECOVERY_FAILED when the live mount of that key is elsewhere, MOUNT_CONFLICT when another
 * mount has the path.
 */
export function scsiMountAdoptProblem(entries: EntryInfo<string, ScsiMount>[], key: string, path: string): UvmError | undefined {
  const existing = entries.find((e) => e.key === key && e.state === 'live')?.value;
  if (existing && existing.path !== path) {
    return new UvmError('RECOVERY_FAILED', `the mount of ${existing.controller}:${existing.lun} is recorded at ${path} and at ${existing.path}`, {
      details: { guestPath: path },
    });
  }
  if (!existing && pathsInUse(entries.flatMap((e) => (e.value ? [e.value] : []))).has(path)) {
    return new UvmError('MOUNT_CONFLICT', `cannot adopt ${path}: another mount has it`, { details: { guestPath: path } });
  }
  return undefined;
}

function pathsInUse(mounts: Iterable<ScsiMount>): Set<string> {
  const used = new Set<string>();
  for (const m of mounts) used.add(m.path);
  return used;
}

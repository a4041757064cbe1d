/**
 * Applies a reconcile plan (reconcile.ts) to a freshly opened UVM: removes the unknown parts
 * through the UVM's delivery (guest first, then host), rewrites the journal to what is adopted,
 * adopts the records into the managers (refcount entries and leases rebuilt without HCS calls,
 * claiming the recorded slots and names), rolls back incomplete container allocations, and hands
 * back the restored leases grouped by owner.
 */
import { UvmAggregateError, UvmError } from '../core/errors.js';
import { ReleasableLease, type Lease } from '../core/lease.js';
import { LogField, type Logger } from '../core/logger.js';
import type { GuestOs, GuestRequestSender } from '../devices/device-types.js';
import type { DeviceRestore, RestoreKind, RestoreKinds } from '../devices/device-restore.js';
import { hostPaths } from '../devices/host-paths.js';
import { vpciResourcePath } from '../devices/vpci-manager.js';
import { decodeLease, type LeaseCodec } from './records/codec.js';
import { combinedLayersCodec } from './records/combined-layers.js';
import { isRestrictedFile, vsmbCodec } from './records/vsmb.js';
import type { ResourceDelivery } from '../devices/guest-delivery.js';
import { resourcePaths } from '../devices/resource-paths.js';
import { scsiRequests } from '../devices/scsi-requests.js';
import { guestRequest, hostRequest } from '../devices/wire-requests.js';
import { isGuestRefusal, isInvalidState, isNotExist } from '../hcs/hcs-error.js';
import type { HcsPart, PartRecord } from './parts.js';
import { LEASE_CODECS, type JsonObject, type LeaseRecord, type LeaseRecordKind } from './journal-format.js';
import type { RecoveryJournal } from './journal.js';
import { journaledLease, type JournaledLease } from './journaled-devices.js';
import type { ReconcilePlan } from './reconcile.js';

/** One restored lease. */
export interface RestoredLease {
  readonly record: LeaseRecord;
  readonly lease: JournaledLease<unknown>;
}

/** What a reconcile did (also logged). */
export interface RecoveryReport {
  inventory: ReconcilePlan['inventory'];
  /** Record ids adopted (including the rolled-back ones). */
  adopted: number[];
  /** Keys of the parts removed. */
  removed: string[];
  forgotten: { id: number; kind: LeaseRecordKind; owner?: string; missing: string[] }[];
  /** Record ids of incomplete container allocations that were adopted and released. */
  rolledBack: number[];
  /** Containers restored. */
  containers: string[];
  /** Restricted VSMB shares whose AllowedFiles were re-asserted. */
  reassertedShares: number;
}

export interface ApplyReconcileTarget {
  os: GuestOs;
  /** The devices' restore hook (leases rebuilt with no HCS call). */
  restore: DeviceRestore;
  /** Guest requests not journaled (the CombinedLayers Remove of the UVM's own restored overlay). */
  guest: GuestRequestSender;
  delivery: ResourceDelivery;
  journal: RecoveryJournal;
  logger: Logger;
  /**
   * The CombinedLayers Remove of a restored container (the composer's overlay lease): `owner` is the
   * container id. Called by the restored lease's release, after its record was dropped.
   */
  removeCombinedLayers(owner: string, removeSettings: JsonObject): Promise<void>;
  /** Throws HANDLE_CLOSED once the UVM is closed (restored leases then keep their records). */
  assertOpen?: (op: string) => void;
}

export interface AppliedReconcile {
  report: RecoveryReport;
  /** Restored leases by owner (`undefined` = the UVM itself), each list in record id order. */
  leases: Map<string | undefined, RestoredLease[]>;
}

// ---------------------------------------------------------------- removals

/** The removal document of one unknown part (the same builders the managers use). */
function removalOf(part: HcsPart, os: GuestOs): { send: (d: ResourceDelivery) => Promise<void> } {
  const s = part.settings;
  const num = (v: unknown): number => (typeof v === 'number' ? v : 0);
  switch (part.kind) {
    case 'combined-layers':
      return { send: (d) => d.guest(guestRequest('Remove', 'CombinedLayers', { ContainerRootPath: s.ContainerRootPath })) };
    case 'scsi-mount': {
      const path = String(s.MountPath ?? s.ContainerPath);
      const settings = {
        readOnly: s.ReadOnly === true,
        partition: num(s.Partition),
        encrypted: s.Encrypted === true,
        options: [],
        ensureFilesystem: false,
        filesystem: '',
        blockDev: s.BlockDev === true,
      };
      return { send: (d) => d.guest(scsiRequests.unmount(os, num(s.Controller), num(s.Lun), path, settings)) };
    }
    case 'vpmem-mount': {
      const settings: Record<string, unknown> = { DeviceNumber: s.DeviceNumber, MountPath: s.MountPath };
      if (s.MappingInfo !== undefined) settings.MappingInfo = s.MappingInfo;
      return { send: (d) => d.guest(guestRequest('Remove', 'VPMemDevice', settings)) };
    }
    case 'plan9-mount':
      return { send: (d) => d.guest(guestRequest('Remove', 'MappedDirectory', { MountPath: s.MountPath, ShareName: s.ShareName, Port: s.Port })) };
    case 'guest-directory':
      return { send: (d) => d.guest(guestRequest('Remove', 'MappedDirectory', { ContainerPath: s.ContainerPath, MountPath: s.MountPath })) };
    case 'scsi-attachment':
      return { send: (d) => d.host(scsiRequests.detach(num(s.Controller), num(s.Lun))) };
    case 'vpmem-device':
      return { send: (d) => d.host(hostRequest(resourcePaths.vpmemDevice(num(s.DeviceNumber)), 'Remove')) };
    case 'vpmem-mapping':
      return { send: (d) => d.host(hostRequest(resourcePaths.vpmemMapping(num(s.DeviceNumber), num(s.Offset)), 'Remove')) };
    case 'plan9-share':
      return { send: (d) => d.host(hostRequest(resourcePaths.plan9Shares, 'Remove', { Name: s.Name, AccessName: s.AccessName ?? s.Name, Port: s.Port })) };
    case 'vsmb-share':
      return { send: (d) => d.host(hostRequest(resourcePaths.vsmbShares, 'Remove', { Name: s.Name })) };
    case 'mapped-pipe':
      return { send: (d) => d.host(hostRequest(resourcePaths.mappedPipe(String(s.Name)), 'Remove')) };
    case 'vm-access':
      // Never planned for removal (reconcile.ts); revoked when the VM is terminated.
      return { send: () => Promise.resolve() };
    case 'vpci-device':
      // Host-only: the device leaves the guest with its host removal (vpci-manager.ts).
      return { send: (d) => d.host(hostRequest(vpciResourcePath(String(s.VMBusGUID)), 'Remove')) };
  }
}

async function settleAll(tasks: (() => Promise<void>)[]): Promise<unknown[]> {
  const results = await Promise.allSettled(tasks.map((t) => t()));
  return results.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
}

/**
 * The HRESULTs that mean "not attached" when removing something (hcs-real-world.md §1.6):
 * ERROR_NOT_FOUND / HCS_E_SYSTEM_NOT_FOUND, and HCS_E_INVALID_STATE.
 */
export function isNotAttached(err: unknown): boolean {
  return isNotExist(err) || isInvalidState(err);
}

/**
 * A guest part recovery removes and whose Remove the guest refuses (a GCS answer over the bridge,
 * not a failed bridge): taken as "the guest does not hold it". The GCS cannot say "not found" in a
 * way the host can tell apart: its refusals are plain E_FAIL (a VPMEM mapping whose device-mapper
 * target does not exist, the Windows GCS's unmount of a path it does not have). And the journal
 * cannot say either: an `adding` part may never have reached the guest, a `removing` one may be
 * gone, and even an `attached` one may be gone, since removals are journaled ahead without waiting
 * for the write (a crash can lose the intent of a removal that the guest applied). The host half
 * is removed next; if the guest did hold the device after all, that removal is refused and
 * recovery reports it.
 */
function guestDoesNotHoldIt(part: HcsPart, err: unknown): boolean {
  return part.half === 'guest' && isGuestRefusal(err);
}

/**
 * Removes the plan's unknown parts, stage by stage (CombinedLayers; guest mounts; LCOW SCSI
 * unplugs; host halves), the parts of one stage concurrently. "Not found" counts as removed.
 * Rejects with RECOVERY_FAILED listing every failure (nothing is retried here; open again).
 */
export async function removeUnknownParts(parts: readonly HcsPart[], target: Pick<ApplyReconcileTarget, 'os' | 'delivery' | 'logger'>): Promise<void> {
  const { os, delivery, logger } = target;
  const removeOne = async (part: HcsPart, send: () => Promise<void>): Promise<void> => {
    try {
      await send();
      logger.info('recovery: removed a resource no journal record claims', { [LogField.kind]: part.kind, key: part.key });
    } catch (err) {
      // "Not attached" (the Add never happened, or the removal already did): done.
      if (isNotAttached(err)) return;
      if (guestDoesNotHoldIt(part, err)) {
        logger.warn('recovery: the guest refused to remove a part; counted as not held', {
          [LogField.kind]: part.kind,
          key: part.key,
          error: String(err),
        });
        return;
      }
      logger.warn('recovery: removing an unknown resource failed', { [LogField.kind]: part.kind, key: part.key, error: String(err) });
      throw err;
    }
  };
  const stageOf = (p: HcsPart): number =>
    p.kind === 'combined-layers' ? 0 : p.half === 'guest' ? 1 : 3;
  const errors: unknown[] = [];
  for (const stage of [0, 1]) {
    errors.push(...(await settleAll(parts.filter((p) => stageOf(p) === stage).map((p) => () => removeOne(p, () => removalOf(p, os).send(delivery))))));
  }
  if (os === 'linux') {
    // An LCOW disk is unplugged in the guest before its host removal; one that is already
    // unplugged (the crash hit between the two) reports an invalid state.
    const unplugs = parts
      .filter((p) => p.kind === 'scsi-attachment')
      .map((p) => () => removeOne(p, () => delivery.guest(scsiRequests.unplug(Number(p.settings.Controller), Number(p.settings.Lun)))));
    errors.push(...(await settleAll(unplugs)));
  }
  errors.push(...(await settleAll(parts.filter((p) => stageOf(p) === 3).map((p) => () => removeOne(p, () => removalOf(p, os).send(delivery))))));
  if (errors.length > 0) throw new UvmAggregateError('RECOVERY_FAILED', 'recovery: removing unknown resources failed', errors);
}

// ---------------------------------------------------------------- adoption

/** Name counters implied by every share name HCS reports (names are never reused). */
export function nameCountersFromParts(parts: readonly HcsPart[] | undefined): { vsmb: number; plan9: number } {
  const counters = { vsmb: 0, plan9: 0 };
  for (const p of parts ?? []) {
    const name = String(p.settings.Name ?? '');
    if (p.kind === 'plan9-share' && /^\d+$/.test(name)) counters.plan9 = Math.max(counters.plan9, Number(name) + 1);
    if (p.kind === 'vsmb-share' && /^s[0-9a-f]+$/.test(name)) counters.vsmb = Math.max(counters.vsmb, parseInt(name.slice(1), 16) + 1);
  }
  return counters;
}

/**
 * Rebuilds the lease of one record: a device through the devices' restore hook (the record's
 * codec decodes request and value), the guest-only CombinedLayers as a lease whose release sends
 * its Remove.
 */
async function adoptRecord(record: LeaseRecord, target: ApplyReconcileTarget): Promise<Lease<unknown>> {
  if (record.kind === 'combined-layers') {
    const { value } = decodeLease(combinedLayersCodec, record);
    const owner = record.owner;
    const remove = { ContainerRootPath: value.ContainerRootPath };
    return new ReleasableLease<unknown>(remove, async () => {
      if (owner === undefined) await target.guest.sendGuestRequest(guestRequest('Remove', 'CombinedLayers', remove));
      else await target.removeCombinedLayers(owner, remove);
    });
  }
  return restoreDevice(record.kind, record, target.restore);
}

function restoreDevice<K extends RestoreKind>(kind: K, record: LeaseRecord, restore: DeviceRestore): Promise<Lease<unknown>> {
  const codec = LEASE_CODECS[kind] as unknown as LeaseCodec<RestoreKinds[K]['request'], RestoreKinds[K]['value']>;
  const { request, value } = decodeLease(codec, record);
  return restore.restore(kind, request, value);
}

/**
 * Restricted (single-file) VSMB shares: HCS's AllowedFiles may be ahead of or behind the journal
 * (a crash between an Update and the lease record, in either direction). Re-asserts, for each
 * adopted restricted share, exactly the files its surviving leases hold (in record order, as the
 * manager lists them), with the share's journaled settings.
 */
export async function reassertAllowedFiles(adopted: readonly LeaseRecord[], parts: readonly HcsPart[], target: Pick<ApplyReconcileTarget, 'delivery' | 'logger'>): Promise<number> {
  const files = new Map<string, string[]>();
  for (const record of adopted) {
    if (record.kind !== 'vsmb') continue;
    const { request, value } = decodeLease(vsmbCodec, record);
    if (!isRestrictedFile(value)) continue;
    const list = files.get(value.name) ?? [];
    const file = hostPaths.clean(request.hostPath);
    if (!list.includes(file)) list.push(file);
    files.set(value.name, list);
  }
  let sent = 0;
  for (const [name, allowed] of files) {
    const share = parts.find((p) => p.kind === 'vsmb-share' && p.settings.Name === name);
    if (!share) continue;
    await target.delivery.host(hostRequest(resourcePaths.vsmbShares, 'Update', { ...share.settings, AllowedFiles: allowed }));
    target.logger.info('recovery: AllowedFiles re-asserted from the surviving leases', { share: name, files: allowed.length });
    sent++;
  }
  return sent;
}

/**
 * Applies `plan`: removals, journal rewrite, adoption, rollback of incomplete allocations.
 * Rejects with RECOVERY_FAILED when a removal fails (nothing was adopted; opening again retries)
 * or when a record cannot be adopted (an inconsistent journal).
 */
export async function applyReconcilePlan(plan: ReconcilePlan, target: ApplyReconcileTarget, parts: readonly HcsPart[]): Promise<AppliedReconcile> {
  const { logger, journal } = target;
  await removeUnknownParts(plan.remove, target);
  for (const f of plan.forget) {
    logger.warn('recovery: forgetting a journaled resource that HCS no longer has', {
      [LogField.kind]: f.record.kind,
      [LogField.containerId]: f.record.owner,
      record: f.record.id,
      missing: f.missing,
    });
  }
  // What stays journaled: the adopted records and the parts they claim (now known attached), and
  // the VM access grants (revoked when the VM is terminated; one whose outcome was unknown too).
  const removed = new Set(plan.remove.map((p) => p.key));
  const kept = parts
    .filter((p) => (plan.inventory === 'not-running' ? p.kind === 'vm-access' : !removed.has(p.key)))
    .map((p): PartRecord => ({ key: p.key, kind: p.kind, half: p.half, settings: p.settings, state: 'attached' }));
  await journal.rewrite(plan.adopt, plan.containers.adopt, kept, nameCountersFromParts(parts));
  target.restore.reserveNames(journal.snapshot().nameCounters);

  const leases = new Map<string | undefined, RestoredLease[]>();
  const all = new Map<number, RestoredLease>();
  for (const record of plan.adopt) {
    let inner: Lease<unknown>;
    try {
      inner = await adoptRecord(record, target);
    } catch (err) {
      throw new UvmError('RECOVERY_FAILED', `recovery: cannot adopt journal record ${record.id} (${record.kind})`, {
        cause: err,
        details: { reason: 'adopt', record: record.id, kind: record.kind },
      });
    }
    const restored: RestoredLease = { record, lease: journaledLease(journal, inner, record.id, target.assertOpen) };
    all.set(record.id, restored);
    const list = leases.get(record.owner) ?? [];
    list.push(restored);
    leases.set(record.owner, list);
  }

  const reasserted = plan.inventory === 'not-running' ? 0 : await reassertAllowedFiles(plan.adopt, kept, target);

  // Allocations that never completed: nobody will release them, so release them now (newest first).
  const rollbackErrors: unknown[] = [];
  for (const record of [...plan.rollback].reverse()) {
    const restored = all.get(record.id)!;
    try {
      await restored.lease.release();
    } catch (err) {
      rollbackErrors.push(err);
      continue;
    }
    const list = leases.get(record.owner)!;
    list.splice(list.indexOf(restored), 1);
    if (list.length === 0) leases.delete(record.owner);
  }
  if (rollbackErrors.length > 0) {
    throw new UvmAggregateError('RECOVERY_FAILED', 'recovery: releasing an incomplete container allocation failed', rollbackErrors);
  }

  const report: RecoveryReport = {
    inventory: plan.inventory,
    adopted: plan.adopt.map((r) => r.id),
    removed: plan.remove.map((p) => p.key),
    forgotten: plan.forget.map((f) => ({ id: f.record.id, kind: f.record.kind, ...(f.record.owner === undefined ? {} : { owner: f.record.owner }), missing: f.missing })),
    rolledBack: plan.rollback.map((r) => r.id),
    containers: plan.containers.adopt.map((c) => c.id),
    reassertedShares: reasserted,
  };
  logger.info('recovery: reconciled', {
    inventory: report.inventory,
    adopted: report.adopted.length,
    removed: report.removed.length,
    forgotten: report.forgotten.length,
    rolledBack: report.rolledBack.length,
    containers: report.containers.length,
  });
  return { report, leases };
}


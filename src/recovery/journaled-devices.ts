/**
 * The journal's owner ports: a port to a UVM's devices (`UvmDeviceSet`, plain objects, no Proxy)
 * whose every acquire and reservation commit calls the journaling hook (`LeaseJournalHook`) once
 * it succeeded, and whose every release drops its record before the release starts. One port per
 * owner: the UVM itself (the shim's own leases) or one container, so the journal knows which
 * leases make up which container. The managers know nothing about the journal; restoring goes
 * through the devices' own restore hook (src/devices/device-restore.ts).
 *
 * Crash consistency (docs/recovery.md): a crash between the HCS calls of an acquire and its
 * journal write leaves a resource "present but unknown" (reconcile removes it); a crash after a
 * record was dropped and before its release finished leaves it "present but unknown" too, or
 * "journaled but gone" if the removal finished — never a journaled lease whose resource someone
 * else removed.
 */
import { UvmError } from '../core/errors.js';
import { ReleasableLease, type Lease } from '../core/lease.js';
import type { Logger } from '../core/logger.js';
import type {
  DescribableManager,
  DeviceAcquireOptions,
  MappedPipe,
  PipeManager,
  Plan9Manager,
  Plan9Share,
  Plan9ShareRequest,
  Reservation,
  ScsiDisk,
  ScsiDiskRequest,
  ScsiManager,
  VpmemLayer,
  VpmemLayerRequest,
  VpmemManager,
  VsmbManager,
  VsmbShare,
  VsmbShareRequest,
} from '../devices/device-types.js';
import type { VpciDevice, VpciDeviceRequest, VpciManager } from '../devices/vpci-manager.js';
import type { GuestRequest } from '../hcs/schema.js';
import type { ContainerUvm } from '../containers/container-ports.js';
import { LEASE_CODECS, type LeaseRecordKind } from './journal-format.js';
import { plain, type LeaseCodec } from './records/codec.js';
import { combinedLayersCodec } from './records/combined-layers.js';
import type { Announcement, RecoveryJournal } from './journal.js';
import { managerView, type ManagerView } from '../devices/manager-view.js';
import { grantsVmAccess } from '../devices/scsi-manager.js';
import type { GuestOs } from '../devices/device-types.js';
import { partKeys, type HcsPart } from './parts.js';
import { derivedParts } from './reconcile.js';

/**
 * A UVM's whole device set, managers in full: what the UVM exposes to the shim and what its gate
 * and journal wrap. Container allocation gets the narrower `ContainerUvm` (which this satisfies).
 */
export interface UvmDeviceSet extends ContainerUvm {
  readonly scsi: ScsiManager;
  readonly vsmb: VsmbManager;
  readonly vpmem: VpmemManager;
  readonly plan9: Plan9Manager;
  readonly pipes: PipeManager;
  readonly vpci?: VpciManager;
}

/** A lease that knows its journal record. */
export interface JournaledLease<T> extends Lease<T> {
  readonly recordId: number;
}

/** True when `lease` came from a journaled view (or was restored by reconcile). */
export function isJournaledLease<T>(lease: Lease<T>): lease is JournaledLease<T> {
  return typeof (lease as Partial<JournaledLease<T>>).recordId === 'number';
}

/**
 * Wraps an acquired lease: its release drops the journal record first, then releases. Retrying a
 * failed release retries the inner release (the record is already gone).
 */
export function journaledLease<T>(journal: RecoveryJournal, lease: Lease<T>, recordId: number, assertOpen?: (op: string) => void): JournaledLease<T> {
  const wrapped = new ReleasableLease(lease.value, async () => {
    // After close() the record must stay: the resource stays attached for the next owner.
    assertOpen?.('release');
    await journal.removeLease(recordId);
    await lease.release();
  }) as ReleasableLease<T> & { recordId: number };
  Object.defineProperty(wrapped, 'recordId', { value: recordId, enumerable: true });
  return wrapped;
}

/** Everything the views of one UVM share. */
export interface JournalContext {
  readonly journal: RecoveryJournal;
  readonly logger?: Logger;
  /** Throws (HANDLE_CLOSED) once the UVM is closed: releases then keep their records. */
  readonly assertOpen?: (op: string) => void;
  /**
   * True while `owner`'s record is not journaled yet (a container being allocated): its lease
   * records need not be durable on their own, the owner's record (written after them) makes them so.
   */
  readonly deferDurable?: (owner: string | undefined) => boolean;
}

/** Copies the UVM's termination capability (containers/uvm-termination.ts) from `devices` onto `view`. */
export function forwardTermination(view: UvmDeviceSet, devices: UvmDeviceSet): UvmDeviceSet {
  const aware = devices as UvmDeviceSet & { prepareForTermination?: () => void };
  if (typeof aware.prepareForTermination === 'function') {
    Object.assign(view, { prepareForTermination: () => aware.prepareForTermination!() });
  }
  return view;
}

/**
 * The journaling hook: what the journal does with a lease an owner committed, called after the
 * commit's HCS calls succeeded (those calls were journaled ahead by JournaledDelivery). It records
 * kind, owner, request and value, and returns the lease the owner holds, whose release drops the
 * record before it starts. If the record cannot be written, it releases the lease and rejects, so
 * the caller holds nothing, as for any failed acquire.
 */
export interface LeaseJournalHook {
  committed<R, V>(kind: LeaseRecordKind, codec: LeaseCodec<R, V>, request: R, lease: Lease<V>, owner: string | undefined): Promise<Lease<V>>;
}

/** The journaling hook over `ctx`'s journal. */
export function leaseJournalHook(ctx: JournalContext): LeaseJournalHook {
  return {
    async committed(kind, codec, request, lease, owner) {
      let id: number;
      try {
        id = await ctx.journal.addLease({ kind, ...(owner === undefined ? {} : { owner }), ...codec.encode(request, lease.value) }, { durable: !ctx.deferDurable?.(owner) });
      } catch (err) {
        // Not durable: give the lease back so that the caller holds nothing, as for any failed acquire.
        await lease.release().catch((releaseErr: unknown) => {
          ctx.logger?.warn('releasing a lease whose journal write failed also failed', { error: String(releaseErr) });
        });
        throw err;
      }
      return journaledLease(ctx.journal, lease, id, ctx.assertOpen);
    },
  };
}

/**
 * The parts a new reservation's commit adds (docs/recovery.md "Announcements"): its record's
 * parts (`derivedParts`, with settings a removal can be built from) and, for a disk the SCSI
 * manager grants VM access to, the grant.
 */
export function reservedParts<R, V>(kind: LeaseRecordKind, codec: LeaseCodec<R, V>, request: R, value: V, os: GuestOs): HcsPart[] {
  const parts = derivedParts({ id: 0, kind, ...codec.encode(request, value) }, os);
  const scsi = request as Partial<ScsiDiskRequest>;
  if (kind === 'scsi' && typeof scsi.hostPath === 'string' && grantsVmAccess(scsi as ScsiDiskRequest) && scsi.type !== 'ExtensibleVirtualDisk') {
    parts.unshift({ key: partKeys.grant(scsi.hostPath), kind: 'vm-access', half: 'host', settings: { Path: scsi.hostPath } });
  }
  return parts;
}

/**
 * The announcements of one owner's view: each new (not shared) reservation's parts wait here
 * until the first commit of the view, which announces every waiting reservation's parts in one
 * journal write before its own calls (a container's whole allocation: one write ahead of its
 * first HCS call instead of one per step). A cancelled reservation's parts are dropped (a plan
 * reserves and cancels: nothing is journaled); a reservation's announcement is withdrawn once its
 * commit settled (what no call claimed goes).
 */
class ViewAnnouncements {
  readonly #waiting = new Map<object, HcsPart[]>();
  readonly #announced = new Map<object, Announcement>();

  constructor(
    private readonly journal: RecoveryJournal,
    private readonly os: GuestOs,
  ) {}

  reserved<R, V>(token: object, kind: LeaseRecordKind, codec: LeaseCodec<R, V>, request: R, r: Reservation<V>): void {
    if (r.shared || r.value === undefined) return;
    this.#waiting.set(token, reservedParts(kind, codec, request, r.value, this.os));
  }

  /** A composition's CombinedLayers Add, announced with the reservations (`CompositionPort.announceOverlay`). */
  overlay(containerRootPath: string): () => void {
    const token = {};
    this.#waiting.set(token, [
      { key: partKeys.combined(containerRootPath), kind: 'combined-layers', half: 'guest', settings: { ContainerRootPath: containerRootPath } },
    ]);
    return () => this.done(token);
  }

  /** Before a commit: announces everything waiting in the view. */
  committing(): void {
    if (this.#waiting.size === 0) return;
    const tokens = [...this.#waiting.keys()];
    const announcements = this.journal.announce([...this.#waiting.values()]);
    this.#waiting.clear();
    tokens.forEach((t, i) => this.#announced.set(t, announcements[i]!));
  }

  /** `token` was cancelled, or its commit settled. */
  done(token: object): void {
    this.#waiting.delete(token);
    this.#announced.get(token)?.withdraw();
    this.#announced.delete(token);
  }
}

/**
 * An owner's port to one manager: `acquire` and each reservation's `commit` tell the hook when
 * they succeeded (a failed one journals nothing); a reservation's parts are announced at the
 * view's first commit (`ViewAnnouncements`); `describe` and `retryFailedTeardowns` are the
 * manager's own.
 */
function journaledManager<M extends DescribableManager & { acquire(request: R, options?: DeviceAcquireOptions): Promise<Lease<V>> }, R, V>(
  inner: M,
  kind: LeaseRecordKind,
  codec: LeaseCodec<R, V>,
  hook: LeaseJournalHook,
  owner: string | undefined,
  announcements: ViewAnnouncements,
): ManagerView<M> {
  const record = async (request: R, committing: Promise<Lease<V>>): Promise<Lease<V>> => hook.committed(kind, codec, request, await committing, owner);
  const journaledReservation = (request: R, r: Reservation<V>): Reservation<V> => {
    const token = {};
    announcements.reserved(token, kind, codec, request, r);
    const cancel = (): void => {
      r.cancel();
      announcements.done(token);
    };
    return {
      value: r.value,
      shared: r.shared,
      cancel,
      commit: (options) => {
        try {
          announcements.committing();
        } catch (err) {
          // The journal is closed: nothing may be sent.
          cancel();
          return Promise.reject(err);
        }
        const committing = r.commit(options);
        // Once the calls are over (whatever the outcome), what they did not claim is withdrawn.
        void committing.then(
          () => announcements.done(token),
          () => announcements.done(token),
        );
        return record(request, committing);
      },
    };
  };
  const own = (inner as { reserve?: (request: R, ...rest: unknown[]) => Reservation<V> | VpmemPlacementLike<V> }).reserve;
  return managerView(inner, {
    acquire: (request: R, options?: DeviceAcquireOptions) => record(request, inner.acquire(request, options)),
    // (A manager without reservations, vPCI, gets none.)
    ...(own === undefined
      ? {}
      : {
          reserve: (request: R, ...rest: unknown[]) => {
            const result = own.call(inner, request, ...rest);
            if (!('ok' in result)) return journaledReservation(request, result);
            return result.ok ? { ...result, reservation: journaledReservation(request, result.reservation) } : result;
          },
        }),
  });
}

/** VPMEM's `reserve` result (a reservation, or why VPMEM cannot take the layer). */
type VpmemPlacementLike<V> = { ok: true; reservation: Reservation<V> } | { ok: false };

/**
 * A journaled view of `devices` for one owner (`undefined` = the UVM itself). Also journals the
 * CombinedLayers Add / Remove guest requests sent through it (the only guest-only resource the
 * library creates).
 */
export function journaledDevices(devices: UvmDeviceSet, ctx: JournalContext, owner: string | undefined): UvmDeviceSet {
  const hook = leaseJournalHook(ctx);
  const announcements = new ViewAnnouncements(ctx.journal, devices.facts.os);
  const view: UvmDeviceSet = {
    facts: devices.facts,
    hostFs: devices.hostFs,
    scsi: journaledManager<ScsiManager, ScsiDiskRequest, ScsiDisk>(devices.scsi, 'scsi', LEASE_CODECS.scsi, hook, owner, announcements),
    vsmb: journaledManager<VsmbManager, VsmbShareRequest, VsmbShare>(devices.vsmb, 'vsmb', LEASE_CODECS.vsmb, hook, owner, announcements),
    vpmem: journaledManager<VpmemManager, VpmemLayerRequest, VpmemLayer>(devices.vpmem, 'vpmem', LEASE_CODECS.vpmem, hook, owner, announcements),
    plan9: journaledManager<Plan9Manager, Plan9ShareRequest, Plan9Share>(devices.plan9, 'plan9', LEASE_CODECS.plan9, hook, owner, announcements),
    pipes: journaledManager<PipeManager, { hostPath: string }, MappedPipe>(devices.pipes, 'pipe', LEASE_CODECS.pipe, hook, owner, announcements),
    ...(devices.vpci ? { vpci: journaledManager<VpciManager, VpciDeviceRequest, VpciDevice>(devices.vpci, 'vpci', LEASE_CODECS.vpci, hook, owner, announcements) } : {}),
    nameToGuid: (name) => devices.nameToGuid(name),
    retryLater: (leftover) => devices.retryLater(leftover),
    announceOverlay: (containerRootPath) => announcements.overlay(containerRootPath),
    async sendGuestRequest(request: GuestRequest, options?: DeviceAcquireOptions): Promise<void> {
      if (request?.ResourceType !== 'CombinedLayers') return devices.sendGuestRequest(request, options);
      const settings = request.Settings ?? {};
      const root = settings.ContainerRootPath;
      if (request.RequestType === 'Remove') {
        ctx.assertOpen?.('sendGuestRequest');
        const record = ctx.journal.findRecord((r) => r.kind === 'combined-layers' && r.owner === owner && r.value.ContainerRootPath === root);
        if (record) await ctx.journal.removeLease(record.id);
        return devices.sendGuestRequest(request, options);
      }
      await devices.sendGuestRequest(request, options);
      if (request.RequestType === 'Add') {
        if (typeof root !== 'string') {
          throw new UvmError('INVALID_ARGUMENT', 'a CombinedLayers request needs a ContainerRootPath');
        }
        try {
          await ctx.journal.addLease(
            {
              kind: 'combined-layers',
              ...(owner === undefined ? {} : { owner }),
              ...combinedLayersCodec.encode(plain(settings), { ContainerRootPath: root }),
            },
            { durable: !ctx.deferDurable?.(owner) },
          );
        } catch (err) {
          // Not durable: undo the overlay so that the caller holds nothing.
          await devices.sendGuestRequest({ ...request, RequestType: 'Remove', Settings: { ContainerRootPath: root } }).catch((removeErr: unknown) => {
            ctx.logger?.warn('removing combined layers whose journal write failed also failed', { error: String(removeErr) });
          });
          throw err;
        }
      }
    },
  };
  return forwardTermination(view, devices);
}

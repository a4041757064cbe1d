/**
 * The journaling decorator: a view of a UVM's devices (`UvmDeviceSet`) whose every acquire is
 * journaled after it succeeded and whose every release drops its record before the release
 * starts. One view per owner: the UVM itself (the shim's own leases) or one container, so the
 * journal knows which leases make up which container. The managers themselves know nothing about
 * the journal.
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
  DeviceAcquireOptions,
  MappedPipe,
  PipeManager,
  Plan9Manager,
  Plan9Share,
  Plan9ShareRequest,
  Reservation,
  ResourceInfo,
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
import type { RecoveryJournal } from './journal.js';

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

interface Acquirer<R, V> {
  acquire(request: R, options?: DeviceAcquireOptions): Promise<Lease<V>>;
  describe(): ResourceInfo[];
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

/** `inner` with another `acquire`; every other member is the manager's own (bound to it). */
export function withAcquire<M extends object>(inner: M, acquire: unknown, reserve?: unknown): M {
  return new Proxy(inner, {
    get(target, property) {
      if (property === 'acquire') return acquire;
      if (property === 'reserve' && reserve !== undefined) return reserve;
      const member: unknown = Reflect.get(target, property, target);
      return typeof member === 'function' ? (member as (...args: unknown[]) => unknown).bind(target) : member;
    },
  });
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
 * `inner` with a journaling `acquire` and `reserve` (journaled when the commit succeeds); every
 * other member (describe, retryFailedTeardowns, …) is the manager's own, so the view has exactly
 * the manager's contract.
 */
function journaledManager<M extends Acquirer<R, V>, R, V>(inner: M, kind: LeaseRecordKind, codec: LeaseCodec<R, V>, ctx: JournalContext, owner: string | undefined): M {
  const acquire = (request: R, options?: DeviceAcquireOptions): Promise<Lease<V>> => record(request, inner.acquire(request, options));
  const record = async (request: R, acquiring: Promise<Lease<V>>): Promise<Lease<V>> => {
    const lease = await acquiring;
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
  };
  // A reservation is journaled when its commit succeeds, like an acquire.
  const journaledReservation = (request: R, r: Reservation<V>): Reservation<V> => ({
    value: r.value,
    shared: r.shared,
    cancel: () => r.cancel(),
    commit: (options) => record(request, r.commit(options)),
  });
  const reserve = (request: R, ...rest: unknown[]): unknown => {
    const result = (inner as unknown as { reserve(r: R, ...rest: unknown[]): unknown }).reserve(request, ...rest);
    const placement = result as { ok?: boolean; reservation?: Reservation<V> };
    if (placement.ok === true && placement.reservation) return { ...placement, reservation: journaledReservation(request, placement.reservation) };
    if (placement.ok === false) return result;
    return journaledReservation(request, result as Reservation<V>);
  };
  // (A manager without reservations, vPCI, gets none.)
  return withAcquire(inner, acquire, typeof (inner as { reserve?: unknown }).reserve === 'function' ? reserve : undefined);
}

/**
 * A journaled view of `devices` for one owner (`undefined` = the UVM itself). Also journals the
 * CombinedLayers Add / Remove guest requests sent through it (the only guest-only resource the
 * library creates).
 */
export function journaledDevices(devices: UvmDeviceSet, ctx: JournalContext, owner: string | undefined): UvmDeviceSet {
  const view: UvmDeviceSet = {
    facts: devices.facts,
    hostFs: devices.hostFs,
    scsi: journaledManager<ScsiManager, ScsiDiskRequest, ScsiDisk>(devices.scsi, 'scsi', LEASE_CODECS.scsi, ctx, owner),
    vsmb: journaledManager<VsmbManager, VsmbShareRequest, VsmbShare>(devices.vsmb, 'vsmb', LEASE_CODECS.vsmb, ctx, owner),
    vpmem: journaledManager<VpmemManager, VpmemLayerRequest, VpmemLayer>(devices.vpmem, 'vpmem', LEASE_CODECS.vpmem, ctx, owner),
    plan9: journaledManager<Plan9Manager, Plan9ShareRequest, Plan9Share>(devices.plan9, 'plan9', LEASE_CODECS.plan9, ctx, owner),
    pipes: journaledManager<PipeManager, { hostPath: string }, MappedPipe>(devices.pipes, 'pipe', LEASE_CODECS.pipe, ctx, owner),
    ...(devices.vpci ? { vpci: journaledManager<VpciManager, VpciDeviceRequest, VpciDevice>(devices.vpci, 'vpci', LEASE_CODECS.vpci, ctx, owner) } : {}),
    nameToGuid: (name) => devices.nameToGuid(name),
    retryLater: (leftover) => devices.retryLater(leftover),
    async sendGuestRequest(request: GuestRequest, options?: DeviceAcquireOptions): Promise<void> {
      if (request?.ResourceType !== 'CombinedLayers') return devices.sendGuestRequest(request, options);
      const settings = request.Settings ?? {};
      const root = settings.ContainerRootPath;
      if (request.RequestType === 'Remove') {
        ctx.assertOpen?.('sendGuestRequest');
        const record = ctx.journal
          .records()
          .find((r) => r.kind === 'combined-layers' && r.owner === owner && r.value.ContainerRootPath === root);
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

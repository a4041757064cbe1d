/**
 * The restore hook of a UVM's devices (recovery, docs/recovery.md): rebuilds a lease for a
 * resource a journal says is attached, with no HCS call, through the policy of its kind — each
 * manager's `adopt`: a new entry claims exactly the recorded slot or name; an existing entry must
 * hold the same one (else RECOVERY_FAILED) — and keeps VSMB / Plan9 names from being reused.
 *
 * The hook is explicit: recovery is given a `DeviceRestore` (DI token below, bound over the
 * managers' implementations) instead of probing the public managers for an adoption path. The
 * public manager interfaces have no `adopt`: a shim cannot take a reference without a resource.
 */
import type { ServiceIdentifier } from 'inversify';
import type { Lease } from '../core/lease.js';
import type { MappedPipe, Plan9Share, Plan9ShareRequest, ScsiDisk, ScsiDiskRequest, VpmemLayer, VpmemLayerRequest, VsmbShare, VsmbShareRequest } from './device-types.js';
import type { VpciDevice, VpciDeviceRequest } from './vpci-manager.js';
import { UvmError } from '../core/errors.js';

/** What each restorable kind takes (the journaled request) and rebuilds (the lease value). */
export interface RestoreKinds {
  scsi: { request: ScsiDiskRequest; value: ScsiDisk };
  vsmb: { request: VsmbShareRequest; value: VsmbShare };
  vpmem: { request: VpmemLayerRequest; value: VpmemLayer };
  plan9: { request: Plan9ShareRequest; value: Plan9Share };
  pipe: { request: { hostPath: string }; value: MappedPipe };
  vpci: { request: VpciDeviceRequest; value: VpciDevice };
}
export type RestoreKind = keyof RestoreKinds;

/** A device policy's restore path (the managers' `adopt`). */
export interface Restorable<R, V> {
  /** Takes one reference to what `request` maps to, recorded as `value`, with no HCS call. */
  adopt(request: R, value: V): Promise<Lease<V>>;
}

/** A policy whose names are never reused (VSMB, Plan9). */
export interface NameReserving {
  /** The next name handed out is at least number `next`. */
  reserveNames(next: number): void;
}

/** The restore hook of one UVM's devices. */
export interface DeviceRestore {
  /** Rebuilds one lease of `kind` (see the file comment). NOT_SUPPORTED for vPCI on a UVM without it. */
  restore<K extends RestoreKind>(kind: K, request: RestoreKinds[K]['request'], value: RestoreKinds[K]['value']): Promise<Lease<RestoreKinds[K]['value']>>;
  /** Raises the VSMB / Plan9 name counters to at least these (names seen in HCS or the journal). */
  reserveNames(counters: { vsmb: number; plan9: number }): void;
}
/** DI token of a UVM's `DeviceRestore`. */
export const DeviceRestore: ServiceIdentifier<DeviceRestore> = Symbol.for('uvm-orchestrator.DeviceRestore');

/** The policies a `DeviceRestore` dispatches to. */
export type RestorePolicies = { [K in Exclude<RestoreKind, 'vpci'>]: Restorable<RestoreKinds[K]['request'], RestoreKinds[K]['value']> } & {
  vsmb: NameReserving;
  plan9: NameReserving;
  vpci?: Restorable<VpciDeviceRequest, VpciDevice>;
};

/** The restore hook over the managers' own restore paths. */
export function deviceRestore(policies: RestorePolicies): DeviceRestore {
  return {
    restore<K extends RestoreKind>(kind: K, request: RestoreKinds[K]['request'], value: RestoreKinds[K]['value']): Promise<Lease<RestoreKinds[K]['value']>> {
      const policy = policies[kind] as Restorable<RestoreKinds[K]['request'], RestoreKinds[K]['value']> | undefined;
      if (!policy) return Promise.reject(new UvmError('NOT_SUPPORTED', `this UVM has no ${kind} manager to restore into`, { details: { kind } }));
      return policy.adopt(request, value);
    },
    reserveNames(counters) {
      policies.vsmb.reserveNames(counters.vsmb);
      policies.plan9.reserveNames(counters.plan9);
    },
  };
}

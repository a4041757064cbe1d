import type { ServiceIdentifier } from 'inversify';
import type { HcsCallOptions } from '../hcs/hcs-api.js';
import type { GuestRequest } from '../hcs/schema.js';

/**
 * A connection to the guest agent (GCS) owned by the embedding shim (hcsshim's external bridge,
 * RPC `ModifySettings`). When a UtilityVm is given one, every guest half goes through it instead of
 * `HcsModifyComputeSystem`: adds host first then guest (host rolled back if the guest half
 * fails), removals guest first then host.
 */
export interface GuestConnection {
  /** Sends one guest modification request; rejects when the guest reports a failure. */
  modifySettings(request: GuestRequest, options?: HcsCallOptions): Promise<void>;
}
/** DI token of the `GuestConnection`. */
export const GuestConnection: ServiceIdentifier<GuestConnection> = Symbol.for('uvm-orchestrator.GuestConnection');

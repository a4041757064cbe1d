/**
 * The commit step of a resource with a host and a guest half in one Add (VPMEM, Plan9, LCOW vPCI),
 * shared by their policies: the combined Add; on failure, a `Residue` (the table keeps the entry
 * in `teardown-failed` for a retried teardown) when something may still be attached because the
 * compensating removal failed too, else the error. The device core logs either outcome.
 */
import { Residue } from '../core/refcounted-table.js';
import { fullyRemoved, type RemovalProgress, type ResourceDelivery } from './guest-delivery.js';
import type { HcsCallOptions } from '../hcs/hcs-api.js';
import type { GuestRequest } from '../hcs/schema.js';
import type { HostRequest } from './wire-requests.js';

export interface CombinedAdd<V> {
  host: HostRequest;
  guest: GuestRequest;
  /** Shared with the later removal: a removal resumes where the compensation stopped. */
  removal: RemovalProgress;
  guestRemoval?: GuestRequest;
  /** The table's value (kept as the residue). */
  value: V;
  /** Of the Add (e.g. its priority). */
  options?: HcsCallOptions;
}

export async function commitCombinedAdd<V>(delivery: ResourceDelivery, add: CombinedAdd<V>): Promise<void | Residue<V>> {
  try {
    await delivery.addCombined(add.host, add.guest, add.removal, add.guestRemoval, add.options);
  } catch (err) {
    if (!fullyRemoved(add.removal)) return new Residue(err, add.value);
    throw err;
  }
}

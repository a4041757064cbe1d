/**
 * The commit step of a resource with a host and a guest half in one Add (VPMEM, Plan9, LCOW vPCI),
 * shared by their policies: the combined Add; on failure, a `Residue` (the table keeps the entry
 * in `teardown-failed` for a retried teardown) when something may still be attached because the
 * compensating removal failed too, else the error.
 */
import { Residue } from '../core/refcounted-table.js';
import { fullyRemoved, type RemovalProgress, type ResourceDelivery } from './guest-delivery.js';
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
  /** After the Add succeeded (a policy over the device core leaves it out: the core logs). */
  added?(): void;
  log?(level: 'warn', message: string, err: unknown): void;
}

export async function commitCombinedAdd<V>(delivery: ResourceDelivery, add: CombinedAdd<V>): Promise<void | Residue<V>> {
  try {
    await delivery.addCombined(add.host, add.guest, add.removal, add.guestRemoval);
  } catch (err) {
    if (!fullyRemoved(add.removal)) {
      add.log?.('warn', 'add failed and could not be undone; kept for a retried teardown', err);
      return new Residue(err, add.value);
    }
    add.log?.('warn', 'add failed', err);
    throw err;
  }
  add.added?.();
}

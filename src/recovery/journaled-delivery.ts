/**
 * The write-ahead half of the journal (docs/recovery.md "Write-ahead protocol"): a
 * `ResourceDelivery` decorator through which every mutating HCS call of the managers goes. Before
 * a call, the parts it adds, updates or removes are journaled (durably) as an intent; after it, the
 * outcome is journaled (in memory, made durable by the next write: a lost outcome only leaves the
 * part "unknown", which recovery converges). The managers know nothing about it.
 */
import type { GuestOs } from '../devices/device-types.js';
import type { RemovalProgress, ResourceDelivery } from '../devices/guest-delivery.js';
import { combinedRequest, type HostRequest } from '../devices/wire-requests.js';
import type { HcsCallOptions } from '../hcs/hcs-api.js';
import type { GuestRequest } from '../hcs/schema.js';
import type { RecoveryJournal } from './journal.js';
import { partChangesOf, type PartChange } from './parts.js';

export class JournaledDelivery implements ResourceDelivery {
  constructor(
    private readonly inner: ResourceDelivery,
    private readonly journal: RecoveryJournal,
    private readonly os: GuestOs,
  ) {}

  host(request: HostRequest): Promise<void> {
    return this.#around(partChangesOf(request, this.os), () => this.inner.host(request));
  }

  guest(request: GuestRequest, options?: HcsCallOptions): Promise<void> {
    return this.#around(partChangesOf({ GuestRequest: request }, this.os), () => this.inner.guest(request, options));
  }

  addCombined(host: HostRequest, guest: GuestRequest, progress: RemovalProgress, guestRemoval?: GuestRequest): Promise<void> {
    return this.#around(partChangesOf(combinedRequest(host, guest), this.os), () => this.inner.addCombined(host, guest, progress, guestRemoval));
  }

  async removeCombined(host: HostRequest, guest: GuestRequest, progress: RemovalProgress): Promise<void> {
    const hostChanges = partChangesOf(host, this.os);
    const guestChanges = partChangesOf({ GuestRequest: guest }, this.os);
    await this.journal.intend([...(progress.guestDone ? [] : guestChanges), ...(progress.hostDone ? [] : hostChanges)]);
    try {
      await this.inner.removeCombined(host, guest, progress);
    } finally {
      // Whatever half is confirmed done is settled; the rest stays "removing" (unknown).
      if (progress.guestDone) this.journal.settle(guestChanges);
      if (progress.hostDone) this.journal.settle(hostChanges);
    }
  }

  async #around(changes: PartChange[], call: () => Promise<void>): Promise<void> {
    if (changes.length === 0) return call();
    await this.journal.intend(changes);
    await call();
    this.journal.settle(changes);
  }
}

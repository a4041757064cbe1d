/**
 * The narrow ports the layer composers use from one UVM: only the manager methods they call
 * (reservations, a `describe()` for slot counts), the guest overlay request and the leftover
 * sink. `UtilityVm` satisfies every one of them; unit tests pass the real managers over FakeHcs.
 */
import type { HostFs } from '../core/host-fs.js';
import type { GuestRequestSender, LeftoverSink, ScsiManager, UvmFacts, VpmemManager, VsmbManager } from '../devices/device-types.js';

/** What composing (CombinedLayers, rollback) needs: the guest overlay and where failed rollbacks go. */
export interface CompositionPort extends GuestRequestSender, LeftoverSink {
  readonly facts: Pick<UvmFacts, 'id' | 'os'>;
  /**
   * A journaled port's (docs/recovery.md "Announcements"): the CombinedLayers Add of
   * `containerRootPath` that the composition sends once its reservations are committed, journaled
   * ahead together with them. Called before the first commit; the returned function once the
   * composition is over (an Add not sent is dropped from the journal).
   */
  announceOverlay?(containerRootPath: string): () => void;
}

/** What the slot counts of a plan read: the VPMEM devices and SCSI slots in use. */
export interface SlotsPort {
  readonly facts: Pick<UvmFacts, 'vpmemCount' | 'scsiControllers' | 'reservedScsiSlotCount'>;
  readonly scsi: Pick<ScsiManager, 'describe'>;
  readonly vpmem: Pick<VpmemManager, 'describe'>;
}

/** What LCOW layer composition uses: layer sizes, VPMEM / SCSI reservations, the overlay. */
export interface LcowLayersPort extends CompositionPort {
  readonly facts: UvmFacts;
  readonly hostFs: HostFs;
  readonly scsi: Pick<ScsiManager, 'reserve'>;
  readonly vpmem: Pick<VpmemManager, 'reserve'>;
}

/** What WCOW layer composition uses: layer ids, VSMB / SCSI reservations, the overlay. */
export interface WcowLayersPort extends CompositionPort {
  readonly facts: UvmFacts;
  readonly hostFs: HostFs;
  /** HCS NameToGuid (the layer ids). */
  nameToGuid(name: string): string;
  /** `describe` tells whether the scratch is attached already. */
  readonly scsi: Pick<ScsiManager, 'reserve' | 'describe'>;
  readonly vsmb: Pick<VsmbManager, 'reserve'>;
}

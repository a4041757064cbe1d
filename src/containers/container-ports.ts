/**
 * The ports the container modules use from one UVM: only what allocation, planning and a
 * container's resources call. No manager is taken whole: the device managers appear as `Pick`s of
 * their reservations and `describe()`, vPCI as its `acquire`. `UtilityVm` satisfies both ports
 * (as does a journaled container view); unit tests build them from the real managers over FakeHcs.
 */
import type { HostFs } from '../core/host-fs.js';
import type { Plan9Manager, PipeManager, ScsiManager, UvmFacts, VpmemManager, VsmbManager } from '../devices/device-types.js';
import type { VpciManager } from '../devices/vpci-manager.js';
import type { LcowLayersPort, SlotsPort, WcowLayersPort } from '../layers/layer-ports.js';
import type { MountPort } from '../oci/mount-applier.js';

/** What a container's resources use after allocation: hot-added mounts and failed-rollback leftovers. */
export interface ContainerResourcesPort extends MountPort {
  readonly facts: UvmFacts;
  readonly hostFs: HostFs;
}

/**
 * What `allocateContainer` and `planContainer` use from one UVM: the layer and mount ports, each
 * manager's `describe()` (plans list what the UVM would hold) and the vPCI assignments.
 */
export interface ContainerUvm extends LcowLayersPort, WcowLayersPort, SlotsPort, ContainerResourcesPort {
  readonly facts: UvmFacts;
  readonly hostFs: HostFs;
  readonly scsi: Pick<ScsiManager, 'reserve' | 'describe'>;
  readonly vsmb: Pick<VsmbManager, 'reserve' | 'describe'>;
  /** `heldFile`, when present, spares the stat of a layer the UVM already holds. */
  readonly vpmem: Pick<VpmemManager, 'reserve' | 'describe'> & Partial<Pick<VpmemManager, 'heldFile'>>;
  readonly plan9: Pick<Plan9Manager, 'reserve' | 'describe'>;
  readonly pipes: Pick<PipeManager, 'reserve' | 'describe'>;
  /** Assigned devices (vPCI); absent where container devices are not supported (a journaled UVM's container view). */
  readonly vpci?: Pick<VpciManager, 'acquire' | 'describe'>;
}

import { ContainerModule } from 'inversify';
import { Logger } from '../core/logger.js';
import { createResourceDelivery, ResourceDelivery } from '../devices/guest-delivery.js';
import { UvmLifecycle } from '../devices/uvm-lifecycle.js';
import { GuestConnection } from '../uvm/guest-connection.js';
import { HcsSystem } from '../uvm/hcs-system-token.js';
import { UtilityVm } from '../uvm/utility-vm.js';
import { UvmDeviceConfig } from '../devices/device-config.js';
import { JournaledDelivery } from '../recovery/journaled-delivery.js';
import { RecoveryJournal } from '../recovery/journal.js';
import { DeviceRestore, deviceRestore } from '../devices/device-restore.js';
import { ScsiManagerImpl } from '../devices/scsi-manager.js';
import { VsmbManagerImpl } from '../devices/vsmb-manager.js';
import { VpmemManagerImpl } from '../devices/vpmem-manager.js';
import { Plan9ManagerImpl } from '../devices/plan9-manager.js';
import { PipeManagerImpl } from '../devices/pipe-manager.js';
import { VpciManagerImpl } from '../devices/vpci-manager.js';

/**
 * The per-UVM services besides the managers: the lifecycle, the guest delivery (through the
 * scope's `GuestConnection` when one is bound, else through HCS), the managers' restore hook
 * (recovery) and the UtilityVm itself.
 * Expects `HcsSystem` and `UvmDeviceConfig` bound in the same scope.
 */
export const UvmModule = new ContainerModule(({ bind }) => {
  bind(UvmLifecycle).toSelf().inSingletonScope();
  bind(ResourceDelivery)
    .toDynamicValue((ctx) => {
      const delivery = createResourceDelivery(ctx.get(HcsSystem), ctx.get(UvmLifecycle), ctx.get(Logger), ctx.get(GuestConnection, { optional: true }));
      // With a journal, every mutating call is journaled ahead (write-ahead, docs/recovery.md).
      const journal = ctx.get(RecoveryJournal, { optional: true });
      return journal ? new JournaledDelivery(delivery, journal, ctx.get(UvmDeviceConfig).os) : delivery;
    })
    .inSingletonScope();
  bind(DeviceRestore)
    .toDynamicValue((ctx) =>
      deviceRestore({
        scsi: ctx.get(ScsiManagerImpl),
        vsmb: ctx.get(VsmbManagerImpl),
        vpmem: ctx.get(VpmemManagerImpl),
        plan9: ctx.get(Plan9ManagerImpl),
        pipe: ctx.get(PipeManagerImpl),
        vpci: ctx.get(VpciManagerImpl, { optional: true }),
      }),
    )
    .inSingletonScope();
  bind(UtilityVm).toSelf().inSingletonScope();
});

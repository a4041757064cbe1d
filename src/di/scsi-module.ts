import { ContainerModule } from 'inversify';
import { ScsiManager } from '../devices/device-types.js';
import { ScsiManagerImpl } from '../devices/scsi-manager.js';

/** Binds `ScsiManager` in a per-UVM scope (one instance per UtilityVm). */
export const ScsiModule = new ContainerModule(({ bind }) => {
  bind(ScsiManagerImpl).toSelf().inSingletonScope();
  bind(ScsiManager).toService(ScsiManagerImpl);
});

import { ContainerModule } from 'inversify';
import { VsmbManager } from '../devices/device-types.js';
import { VsmbManagerImpl } from '../devices/vsmb-manager.js';

/** Binds `VsmbManager` in a per-UVM scope (one instance per UtilityVm). */
export const VsmbModule = new ContainerModule(({ bind }) => {
  bind(VsmbManagerImpl).toSelf().inSingletonScope();
  bind(VsmbManager).toService(VsmbManagerImpl);
});

import { ContainerModule } from 'inversify';
import { VpciManager, VpciManagerImpl } from '../devices/vpci-manager.js';

/** Binds `VpciManager` in a per-UVM scope (one instance per UtilityVm). */
export const VpciModule = new ContainerModule(({ bind }) => {
  bind(VpciManagerImpl).toSelf().inSingletonScope();
  bind(VpciManager).toService(VpciManagerImpl);
});

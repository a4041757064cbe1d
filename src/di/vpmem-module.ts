import { ContainerModule } from 'inversify';
import { VpmemManager } from '../devices/device-types.js';
import { VpmemManagerImpl } from '../devices/vpmem-manager.js';

/** Binds `VpmemManager` in a per-UVM scope (one instance per UtilityVm). */
export const VpmemModule = new ContainerModule(({ bind }) => {
  bind(VpmemManagerImpl).toSelf().inSingletonScope();
  bind(VpmemManager).toService(VpmemManagerImpl);
});

import { ContainerModule } from 'inversify';
import { PipeManager } from '../devices/device-types.js';
import { PipeManagerImpl } from '../devices/pipe-manager.js';

/** Binds `PipeManager` in a per-UVM scope (one instance per UtilityVm). */
export const PipeModule = new ContainerModule(({ bind }) => {
  bind(PipeManagerImpl).toSelf().inSingletonScope();
  bind(PipeManager).toService(PipeManagerImpl);
});

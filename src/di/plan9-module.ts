import { ContainerModule } from 'inversify';
import { Plan9Manager } from '../devices/device-types.js';
import { Plan9ManagerImpl } from '../devices/plan9-manager.js';

/** Binds `Plan9Manager` in a per-UVM scope (one instance per UtilityVm). */
export const Plan9Module = new ContainerModule(({ bind }) => {
  bind(Plan9ManagerImpl).toSelf().inSingletonScope();
  bind(Plan9Manager).toService(Plan9ManagerImpl);
});

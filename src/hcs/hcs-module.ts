import { ContainerModule } from 'inversify';
import { HcsApi } from './hcs-api.js';
import { ComputeCoreHcs, ComputeCoreHcsOptions, defaultComputeCoreHcsOptions } from './computecore-hcs.js';

/**
 * Binds `HcsApi` to the FFI binding (`ComputeCoreHcs`) in singleton scope, and
 * `ComputeCoreHcsOptions` to the defaults unless the container already has options.
 */
export const HcsModule = new ContainerModule((options) => {
  if (!options.isBound(ComputeCoreHcsOptions)) {
    options.bind(ComputeCoreHcsOptions).toConstantValue(defaultComputeCoreHcsOptions());
  }
  options.bind(HcsApi).to(ComputeCoreHcs).inSingletonScope();
});

/** An `HcsModule` that binds the given options (the container must not bind options itself). */
export function hcsModule(hcsOptions: ComputeCoreHcsOptions): ContainerModule {
  return new ContainerModule((options) => {
    options.bind(ComputeCoreHcsOptions).toConstantValue({ ...hcsOptions });
    options.bind(HcsApi).to(ComputeCoreHcs).inSingletonScope();
  });
}

import 'reflect-metadata';
import { Container, type ServiceIdentifier } from 'inversify';
import { HostFs, NodeHostFs } from '../core/host-fs.js';
import { createLogger, Logger } from '../core/logger.js';
import { UvmDeviceConfig } from '../devices/device-config.js';
import { HcsApi } from '../hcs/hcs-api.js';
import { HcsModule } from '../hcs/hcs-module.js';
import { buildCreateDocument } from '../uvm/create-document.js';
import { GuestConnection } from '../uvm/guest-connection.js';
import { HcsSystem } from '../uvm/hcs-system-token.js';
import { UtilityVm } from '../uvm/utility-vm.js';
import { deviceConfigOf, resolveUvmOptions, type UtilityVmOptions } from '../uvm/uvm-options.js';
import { PipeModule } from './pipe-module.js';
import { Plan9Module } from './plan9-module.js';
import { ScsiModule } from './scsi-module.js';
import { UvmModule } from './uvm-module.js';
import { VpmemModule } from './vpmem-module.js';
import { VsmbModule } from './vsmb-module.js';

/** Creates a UtilityVm: validates the options, creates the compute system, builds its DI scope. */
export type UtilityVmFactory = (options: UtilityVmOptions) => Promise<UtilityVm>;
export const UtilityVmFactory: ServiceIdentifier<UtilityVmFactory> = Symbol.for('uvm-orchestrator.UtilityVmFactory');

export interface UvmOrchestratorOptions {
  /** The HCS implementation; default: the FFI binding (`HcsModule`). */
  hcs?: HcsApi;
  /** Default: node:fs. */
  hostFs?: HostFs;
  /** Default: `createLogger()`. */
  logger?: Logger;
}

/** The library's entry point. */
export interface UvmOrchestrator {
  readonly hcs: HcsApi;
  /** Creates (but does not start) a Utility VM with its own device managers. */
  createUtilityVm: UtilityVmFactory;
}

/** The device modules loaded into every UVM scope. */
const UVM_SCOPE_MODULES = [UvmModule, ScsiModule, VsmbModule, VpmemModule, Plan9Module, PipeModule];

/**
 * The composition root: the only place that calls `container.get`. The root container holds the
 * process-wide services (HCS, host file system, logger); every UtilityVm gets a child container
 * with its own managers, so two UVMs share no manager state.
 */
export function createUvmOrchestrator(options: UvmOrchestratorOptions = {}): UvmOrchestrator {
  const root = new Container();
  if (options.hcs) root.bind(HcsApi).toConstantValue(options.hcs);
  else root.load(HcsModule);
  root.bind(HostFs).toConstantValue(options.hostFs ?? new NodeHostFs());
  root.bind(Logger).toConstantValue(options.logger ?? createLogger());
  root.bind(UtilityVmFactory).toFactory((ctx) => async (uvmOptions: UtilityVmOptions): Promise<UtilityVm> => {
    const resolved = resolveUvmOptions(uvmOptions);
    const hcs = ctx.get(HcsApi);
    const system = await hcs.createComputeSystem(resolved.id, buildCreateDocument(resolved));
    try {
      const scope = new Container({ parent: root });
      scope.bind(UvmDeviceConfig).toConstantValue(deviceConfigOf(resolved));
      scope.bind(HcsSystem).toConstantValue(system);
      if (resolved.guestConnection) scope.bind(GuestConnection).toConstantValue(resolved.guestConnection);
      scope.load(...UVM_SCOPE_MODULES);
      return scope.get(UtilityVm);
    } catch (err) {
      await system.terminate().catch(() => undefined);
      system.close();
      throw err;
    }
  });
  return { hcs: root.get(HcsApi), createUtilityVm: root.get(UtilityVmFactory) };
}

import type { ServiceIdentifier } from 'inversify';
import type { HcsSystem as HcsSystemApi } from '../hcs/hcs-api.js';

/** The compute system of the current UVM scope (bound once per UtilityVm). */
export type HcsSystem = HcsSystemApi;
export const HcsSystem: ServiceIdentifier<HcsSystem> = Symbol.for('uvm-orchestrator.HcsSystem');

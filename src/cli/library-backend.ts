import { UvmError } from '../core/errors.js';
import { allocateContainer } from '../containers/allocate-container.js';
import { createUvmOrchestrator } from '../di/uvm-orchestrator.js';
import { configureSimulator, isSimulator, readSimulatorState } from '../hcs/simulator-controls.js';
import type { UtilityVmOptions } from '../uvm/uvm-options.js';
import { DryRunHcs } from './dry-run-hcs.js';
import type { PlanBackend } from './plan-backend.js';
import type { RunBackend, RunUvm } from './run-backend.js';
import type { ScenarioUvmOptions } from './scenario.js';

/** Scenario `uvm` section → UtilityVm options (same field names; copied so nothing is shared). */
export function utilityVmOptions(options: ScenarioUvmOptions): UtilityVmOptions {
  return structuredClone(options);
}


/**
 * Points the simulator's call trace at `trace` (NOT_SUPPORTED against real HCS). Loads the HCS
 * library but makes no HCS call.
 */
function setTrace(trace: string | undefined): boolean {
  const simulator = isSimulator();
  if (trace !== undefined) {
    if (!simulator) throw new UvmError('NOT_SUPPORTED', '--trace needs the HCS simulator (this is real HCS)');
    configureSimulator({ trace });
  }
  return simulator;
}

/**
 * The run backend over the library: the composition root with the FFI binding, which loads the
 * simulator everywhere but Windows (env `UVM_HCS_LIBRARY` overrides). `trace` makes the simulator
 * append its call trace there.
 */
export async function createLibraryRunBackend(options: { trace: string | undefined }): Promise<RunBackend> {
  const simulator = setTrace(options.trace);
  const orchestrator = createUvmOrchestrator();
  return {
    kind: simulator ? 'simulator' : 'hcs',
    async createUvm(scenarioOptions): Promise<RunUvm> {
      const vm = await orchestrator.createUtilityVm(utilityVmOptions(scenarioOptions));
      try {
        await vm.start();
      } catch (err) {
        await vm.terminate().catch(() => undefined);
        vm.close();
        throw err;
      }
      return {
        id: vm.id,
        os: vm.facts.os,
        describe: () => vm.describe(),
        async allocateContainer(spec, containerId) {
          const allocated = await allocateContainer(vm, spec, { containerId });
          return {
            spec: allocated.spec,
            containerEntries: allocated.containerEntries,
            release: () => allocated.resources.release(),
          };
        },
        async removeIdleShares() {
          const idle = vm.vsmb.describe().filter((r) => r.kind === 'vsmb-share' && r.refCount === 0).length;
          if (idle === 0) return 0;
          await vm.vsmb.removeIdle();
          return idle;
        },
        async hotAdded() {
          if (!simulator) return null;
          const system = await orchestrator.hcs.openComputeSystem(vm.id);
          try {
            const state = await readSimulatorState(system);
            if (typeof state.HotAdded !== 'number') {
              throw new UvmError('NOT_SUPPORTED', `the simulator's SimulatorState of ${vm.id} has no HotAdded count`);
            }
            return state.HotAdded;
          } finally {
            system.close();
          }
        },
        async close({ terminate }) {
          try {
            if (terminate) await vm.terminate();
          } finally {
            vm.close();
          }
        },
      };
    },
  };
}

/**
 * The plan backend: the same composition root over an in-memory `DryRunHcs`, so no HCS call is
 * made (the HCS library is loaded only when `trace` is given, to point the simulator's trace at it
 * — a stray HCS call would then show there).
 */
export async function createLibraryPlanBackend(options: { trace: string | undefined }): Promise<PlanBackend> {
  if (options.trace !== undefined) setTrace(options.trace);
  const hcs = new DryRunHcs();
  const orchestrator = createUvmOrchestrator({ hcs });
  return {
    async createUvm(scenarioOptions) {
      const vm = await orchestrator.createUtilityVm(utilityVmOptions(scenarioOptions));
      await vm.start();
      return {
        uvm: vm,
        async close() {
          try {
            await vm.terminate();
          } finally {
            vm.close();
          }
        },
      };
    },
  };
}

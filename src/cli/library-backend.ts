import { UvmError } from '../core/errors.js';
import path from 'node:path';
import { allocateProcessIsolatedContainer } from '../containers/process-isolated.js';
import { WindowsLayerMounts } from '../hcs/host-layer-mounts.js';
import { createLogger } from '../core/logger.js';
import { createUvmOrchestrator } from '../di/uvm-orchestrator.js';
import { configureSimulator, isSimulator, readSimulatorState } from '../hcs/simulator-controls.js';
import type { UtilityVmOptions } from '../uvm/uvm-options.js';
import { DryRunHcs } from './dry-run-hcs.js';
import type { PlanBackend } from './plan-backend.js';
import type { DownBackend, DownReport, RunBackend, RunUvm } from './run-backend.js';
import { readJournalFile } from '../recovery/journal.js';
import type { ScenarioUvmOptions } from './scenario.js';

/** uvmctl reports failures itself (one line each): the library's own warnings only with UVM_LOG_LEVEL. */
function cliLogger(): ReturnType<typeof createLogger> {
  return createLogger({ level: process.env.UVM_LOG_LEVEL ?? 'error' });
}

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
 * append its call trace there. Only with `checkSimulator` does the teardown check read the
 * simulator's `SimulatorState` (a simulator-only test control; NOT_SUPPORTED against real HCS):
 * by default the library path uses nothing real HCS lacks.
 */
export async function createLibraryRunBackend(options: { trace: string | undefined; checkSimulator?: boolean }): Promise<RunBackend> {
  const simulator = setTrace(options.trace);
  const checkSimulator = options.checkSimulator ?? false;
  if (checkSimulator && !simulator) throw new UvmError('NOT_SUPPORTED', '--check-simulator needs the HCS simulator (this is real HCS)');
  const orchestrator = createUvmOrchestrator({ logger: cliLogger() });
  let layers: WindowsLayerMounts | undefined;
  return {
    kind: simulator ? 'simulator' : 'hcs',
    async createUvm(scenarioOptions, extra = {}): Promise<RunUvm> {
      const options = utilityVmOptions(scenarioOptions);
      const vm = await orchestrator.createUtilityVm(extra.journal === undefined ? options : { ...options, journal: { path: extra.journal } });
      try {
        extra.signal?.throwIfAborted();
        await vm.start({ signal: extra.signal });
      } catch (err) {
        await vm.terminate().catch(() => undefined);
        vm.close();
        throw err;
      }
      return {
        id: vm.id,
        os: vm.facts.os,
        describe: () => vm.describe(),
        async allocateContainer(spec, containerId, signal, options) {
          if (options?.isolation === 'process') {
            layers ??= new WindowsLayerMounts();
            const argon = await allocateProcessIsolatedContainer(spec, { containerId, target: path.join(options.bundle ?? '.', 'rootfs'), layers });
            return { spec: argon.spec, containerEntries: argon.containerEntries, release: () => argon.resources.release() };
          }
          const allocated = await vm.allocateContainer(spec, { containerId, signal });
          return {
            spec: allocated.spec,
            containerEntries: allocated.containerEntries,
            release: () => allocated.resources.release(),
          };
        },
        keptShares() {
          return vm.vsmb.describe().filter((r) => r.state === 'kept').length;
        },
        async hotAdded() {
          if (!checkSimulator) return null;
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
  // The dry run's guest lives in memory and a plan sends it nothing (placement does not depend on
  // the delivery): HCS-owned delivery, whatever the scenario says, so no bridge is negotiated.
  const orchestrator = createUvmOrchestrator({ hcs, guestDelivery: 'hcs' });
  return {
    async createUvm(scenarioOptions) {
      const vm = await orchestrator.createUtilityVm({ ...utilityVmOptions(scenarioOptions), guestDelivery: 'hcs' });
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

/**
 * `uvmctl down`: re-opens the UVM a journal describes (`UtilityVm.open` reconciles it with HCS),
 * starts it if it was created but never started, releases every restored container and the
 * UVM's own leases, removes idle VSMB shares, and terminates it (which discards the journal).
 * Releases that fail are reported; the termination takes whatever they left with the VM.
 */
export async function createLibraryDownBackend(): Promise<DownBackend> {
  const orchestrator = createUvmOrchestrator({ logger: cliLogger() });
  return {
    async down(journal, progress) {
      const doc = await readJournalFile(journal);
      if (doc === undefined) throw new UvmError('NOT_FOUND', `no journal at ${journal}`, { details: { path: journal } });
      progress.line(`re-opening UVM ${doc.uvmId} from ${journal}`);
      const vm = await orchestrator.openUtilityVm(doc.uvmId, { journal: { path: journal } });
      const report: DownReport = { command: 'down', journal, uvm: { id: vm.id }, released: [], releasedLeases: 0, remaining: 0, terminated: false };
      const failures: unknown[] = [];
      try {
        for (const c of vm.containers().reverse()) {
          progress.line(`releasing container ${c.containerId}`);
          try {
            await c.release();
            report.released.push(c.containerId);
          } catch (err) {
            failures.push(err);
          }
        }
        for (const { lease } of vm.restoredLeases()) {
          try {
            await lease.release();
            report.releasedLeases += 1;
          } catch (err) {
            failures.push(err);
          }
        }
        // Kept direct-mapped VSMB shares are never removed while the VM runs: they go with it.
        report.remaining = vm.describe().filter((r) => r.state !== 'kept').length;
        progress.line(`terminating UVM ${vm.id}`);
        await vm.terminate();
        report.terminated = true;
      } finally {
        vm.close();
      }
      if (failures.length > 0) progress.line(`${failures.length} release(s) failed; the termination took what they held`);
      return report;
    },
  };
}

import { describedResources, simulatorResources } from './devices-support.js';
import { prng } from '../support/prng.js';
// Helpers of the robustness suites (fault matrix, bad-input corpus, load): an instrumented HCS
// binding (per-call timeout, call counting), pod scenarios built from the example bundles or in
// code, the simulator's state as comparable strings, a seeded PRNG, and a trace reader.
import { expect } from 'chai';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readBundleSpec } from '../../src/cli/bundle.js';
import { ensureFixtures } from '../../src/cli/fixtures.js';
import { readScenarioFile, type ScenarioFixture } from '../../src/cli/scenario.js';
import type { HostFs } from '../../src/core/host-fs.js';
import { createLogger } from '../../src/core/logger.js';
import type { ResourceInfo } from '../../src/devices/device-types.js';
import { lateOutcomeOf } from '../../src/hcs/operation-driver.js';
import { createUvmOrchestrator, type UvmOrchestrator } from '../../src/di/uvm-orchestrator.js';
import { ComputeCoreHcs } from '../../src/hcs/computecore-hcs.js';
import type { HcsApi, HcsCallOptions, HcsSystem } from '../../src/hcs/hcs-api.js';
import { readSimulatorState, type SimulatorState } from '../../src/hcs/simulator-controls.js';
import type { OciSpec } from '../../src/oci/oci-spec.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import type { UtilityVmOptions } from '../../src/uvm/uvm-options.js';
import { testGuestDelivery } from '../support/guest-delivery.js';

/** UVM_SOAK=1: the full sweeps (every index for every fault kind, more load rounds). */
export const SOAK = process.env.UVM_SOAK === '1';

/** The repository root (this file is build/test/integration/fault-support.js once compiled). */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The FFI binding over the simulator (loaded once per process). */
export const binding = new ComputeCoreHcs();

// ---------------------------------------------------------------- instrumented HCS

/** HCS calls one UVM made through the instrumented binding, by kind. */
export interface CallCounts {
  modify: number;
  grant: number;
  revoke: number;
  lifecycle: number;
}

/**
 * The FFI binding with two test knobs, as a plain decorator (nothing is faked):
 * - a per-call timeout (the binding's `HcsCallOptions.timeoutMs`; the library's own
 *   `defaultTimeoutMs` covers only create/start, and the device managers pass none): `timeoutMs`
 *   for every operation-driven call, or `armTimeout(fn, nth, ms, othersMs)` for the nth call of
 *   one HCS function (counted from the arming, in call order, like the simulator's fault `nth`);
 * - per-system counts of the calls that change a UVM (modify, grant, revoke, start/terminate…).
 */
export class InstrumentedHcs implements HcsApi {
  timeoutMs: number | undefined;
  #armed: { fn: string; nth: number; ms: number; othersMs: number; seen: Map<string, number> } | undefined;
  readonly #counts = new Map<string, CallCounts>();

  constructor(readonly inner: HcsApi = binding) {}

  /** The nth call of `fn` from now on gets `ms`, every other operation `othersMs`. */
  armTimeout(fn: string, nth: number, ms: number, othersMs: number): void {
    this.#armed = { fn, nth, ms, othersMs, seen: new Map() };
  }

  disarmTimeout(): void {
    this.#armed = undefined;
  }

  counts(id: string): CallCounts {
    let c = this.#counts.get(id);
    if (!c) this.#counts.set(id, (c = { modify: 0, grant: 0, revoke: 0, lifecycle: 0 }));
    return c;
  }

  /** Total mutating calls for `id`. */
  total(id: string): number {
    const c = this.counts(id);
    return c.modify + c.grant + c.revoke + c.lifecycle;
  }

  #opts(fn: string, options: HcsCallOptions | undefined): HcsCallOptions | undefined {
    if (options?.timeoutMs !== undefined) return options;
    const armed = this.#armed;
    if (armed) {
      const n = (armed.seen.get(fn) ?? 0) + 1;
      armed.seen.set(fn, n);
      return { ...options, timeoutMs: fn === armed.fn && n === armed.nth ? armed.ms : armed.othersMs };
    }
    if (this.timeoutMs === undefined) return options;
    return { ...options, timeoutMs: this.timeoutMs };
  }

  async createComputeSystem(id: string, configuration: Record<string, unknown>, options?: HcsCallOptions): Promise<HcsSystem> {
    this.counts(id).lifecycle++;
    const system = await this.inner.createComputeSystem(id, configuration, this.#opts('HcsCreateComputeSystem', options));
    const s = system as HcsSystem & Record<string, unknown>;
    const fns = { start: 'HcsStartComputeSystem', shutdown: 'HcsShutDownComputeSystem', terminate: 'HcsTerminateComputeSystem' } as const;
    for (const name of ['start', 'shutdown', 'terminate'] as const) {
      const original = system[name].bind(system);
      s[name] = (o?: HcsCallOptions) => {
        this.counts(id).lifecycle++;
        return original(this.#opts(fns[name], o));
      };
    }
    const modify = system.modify.bind(system);
    s.modify = (request: Parameters<HcsSystem['modify']>[0], o?: HcsCallOptions) => {
      this.counts(id).modify++;
      return modify(request, this.#opts('HcsModifyComputeSystem', o));
    };
    const properties = system.properties.bind(system);
    s.properties = (query: Record<string, unknown>, o?: HcsCallOptions) => properties(query, this.#opts('HcsGetComputeSystemProperties', o));
    return system;
  }

  openComputeSystem(id: string): Promise<HcsSystem> {
    return this.inner.openComputeSystem(id);
  }

  enumerateComputeSystems(query?: Record<string, unknown>): ReturnType<HcsApi['enumerateComputeSystems']> {
    return this.inner.enumerateComputeSystems(query);
  }

  grantVmAccess(vmId: string, hostPath: string): Promise<void> {
    this.counts(vmId).grant++;
    return this.inner.grantVmAccess(vmId, hostPath);
  }

  revokeVmAccess(vmId: string, hostPath: string): Promise<void> {
    this.counts(vmId).revoke++;
    return this.inner.revokeVmAccess(vmId, hostPath);
  }

  nameToGuid(name: string): string {
    return this.inner.nameToGuid(name);
  }
}

/** A composition root over an instrumented binding. */
export function orchestratorOver(hcs: InstrumentedHcs, hostFs?: HostFs, guestDelivery: 'bridge' | 'hcs' = testGuestDelivery): UvmOrchestrator {
  return createUvmOrchestrator({ guestDelivery, hcs, ...(hostFs ? { hostFs } : {}), logger: createLogger({ level: 'silent' }) });
}

// ---------------------------------------------------------------- simulator state

/** The simulator's state of `id`, through a second handle (Open, GetProperties, Close). */
export async function simulatorStateOf(id: string): Promise<SimulatorState> {
  const system = await binding.openComputeSystem(id);
  try {
    return await readSimulatorState(system);
  } finally {
    system.close();
  }
}

/** True while the simulator still has a compute system `id`. */
export async function systemExists(id: string): Promise<boolean> {
  const list = await binding.enumerateComputeSystems({ Ids: [id] });
  return list.some((s) => s.Id === id);
}




/** describe() entries that somebody holds (refcount > 0), as `kind key slot refcount` strings. */
export function heldEntries(infos: readonly ResourceInfo[]): string[] {
  return infos
    .filter((r) => r.refCount > 0)
    .map((r) => `${r.kind} ${r.key} ${r.slot ?? ''} ${r.refCount}`)
    .sort();
}

/** What a UVM held right after it started (its boot devices: a WCOW scratch, the `os` share): not a leak. */
const bootResources = new WeakMap<UtilityVm, string[]>();

/** The simulator's resources of `uvm` besides its boot devices. */
function hotResources(uvm: UtilityVm, state: SimulatorState): string[] {
  const boot = bootResources.get(uvm) ?? [];
  return simulatorResources(state).filter((r) => !boot.includes(r));
}

/** At a quiescent point: every entry is live (or kept) and the simulator holds exactly what describe() lists. */
export async function expectInSync(uvm: UtilityVm, context = ''): Promise<SimulatorState> {
  const infos = uvm.describe();
  expect(
    infos.filter((r) => r.state !== 'live' && r.state !== 'kept').map((r) => `${r.kind} ${r.key} ${r.state}`),
    `${context}: entries not live at a quiescent point`,
  ).to.deep.equal([]);
  const state = await simulatorStateOf(uvm.id);
  expect(hotResources(uvm, state), `${context}: simulator vs describe()`).to.deep.equal(describedResources(infos));
  return state;
}

/** Nothing attached: describe() empty, the simulator holds nothing and reports HotAdded 0. */
/**
 * Nothing is left after a teardown but the direct-mapped VSMB shares the manager keeps (state
 * `kept`: never removed while the VM runs, as hcsshim); the simulator holds exactly those.
 */
export async function expectEmpty(uvm: UtilityVm, context = ''): Promise<SimulatorState> {
  const infos = uvm.describe();
  const kept = infos.filter((r) => r.state === 'kept');
  expect(infos.filter((r) => r.state !== 'kept'), `${context}: describe() after teardown`).to.deep.equal([]);
  const state = await simulatorStateOf(uvm.id);
  expect(hotResources(uvm, state), `${context}: simulator resources after teardown`).to.have.members(describedResources(kept));
  expect((state.Guest as unknown as { CombinedLayers: unknown[] }).CombinedLayers, `${context}: CombinedLayers`).to.deep.equal([]);
  expect(state.HotAdded, `${context}: HotAdded`).to.equal(kept.length);
  return state;
}

// ---------------------------------------------------------------- PRNG

export { prng, describedResources, simulatorResources };


/** The seed of a run: env UVM_SEED, else derived from the clock (printed by the suites). */
export function runSeed(): number {
  const fromEnv = process.env.UVM_SEED;
  if (fromEnv !== undefined && /^\d+$/.test(fromEnv)) return Number(fromEnv) >>> 0;
  return (Date.now() ^ (process.pid << 16)) >>> 0;
}

// ---------------------------------------------------------------- trace

/** One line of the simulator's trace. */
export interface TraceLine {
  fn: string;
  id: string | null;
  doc: unknown;
  hr: number;
}

/** The trace file's lines, parsed; [] when it does not exist. */
export function readTrace(file: string): TraceLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as TraceLine);
}

// ---------------------------------------------------------------- pods

export interface PodContainer {
  id: string;
  spec: OciSpec;
}

/** A pod: the UVM options (without id) and its containers, allocated in order. */
export interface PodScenario {
  name: string;
  uvm: Omit<UtilityVmOptions, 'id'>;
  containers: PodContainer[];
}

/** A fresh temporary folder under the OS temp dir. */
export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/**
 * An example pod (examples/<name>): its scenario.json and bundles are copied to a temporary
 * folder, the scenario's fixtures created there (sparse files, folders), and the bundles read
 * exactly as `uvmctl run` reads them (relative paths resolved against each bundle).
 */
export async function examplePod(name: string, root: string): Promise<PodScenario> {
  const src = path.join(REPO, 'examples', name);
  const dst = path.join(root, name);
  mkdirSync(dst, { recursive: true });
  cpSync(path.join(src, 'scenario.json'), path.join(dst, 'scenario.json'));
  cpSync(path.join(src, 'bundles'), path.join(dst, 'bundles'), { recursive: true });
  const scenario = await readScenarioFile(path.join(dst, 'scenario.json'));
  await ensureFixtures(scenario.fixtures);
  const containers: PodContainer[] = [];
  for (const [i, c] of scenario.containers.entries()) {
    containers.push({ id: c.id, spec: await readBundleSpec(c.bundle, scenario.uvm.os, `containers[${i}]`) });
  }
  const { id: _id, ...uvm } = scenario.uvm;
  void _id;
  return { name, uvm: uvm as Omit<UtilityVmOptions, 'id'>, containers };
}

/**
 * The 10-container LCOW pod of the fault matrix, with its host files created (sparse) under
 * `root`: 7 shared read-only layers (one larger than a VPMEM device, and more layers than VPMEM
 * devices, so both fallback reasons occur), a scratch per container, a shared data folder (rw
 * Plan9), a shared config file (ro, single-file Plan9 share), and a virtual disk two containers
 * mount.
 */
export async function tenContainerPod(root: string): Promise<PodScenario> {
  const dir = path.join(root, 'pod10');
  const MiB = 1024 * 1024;
  const layerSizes = [8, 16, 24, 32, 40, 48, 96]; // MiB; 96 > the 64 MiB devices
  const fixtures: ScenarioFixture[] = [];
  layerSizes.forEach((mb, i) =>
    fixtures.push({ type: 'sparse-file', path: path.join(dir, 'layers', `l${i}`, 'layer.vhd'), sizeBytes: mb * MiB }),
  );
  for (let c = 0; c < 10; c++) {
    fixtures.push({ type: 'sparse-file', path: path.join(dir, 'scratch', `c${c}`, 'sandbox.vhdx'), sizeBytes: 1024 * MiB });
  }
  fixtures.push({ type: 'directory', path: path.join(dir, 'data') });
  fixtures.push({ type: 'file', path: path.join(dir, 'config', 'app.conf'), content: 'x=1\n' });
  fixtures.push({ type: 'sparse-file', path: path.join(dir, 'disks', 'shared.vhdx'), sizeBytes: 256 * MiB });
  await ensureFixtures(fixtures);
  const layer = (i: number): string => path.join(dir, 'layers', `l${i}`);
  const containers: PodContainer[] = [];
  for (let c = 0; c < 10; c++) {
    // Top-most first: a per-group app layer over a shared base stack.
    const stack = [layer(3 + (c % 4)), layer(c % 3), layer(0)].filter((p, i, all) => all.indexOf(p) === i);
    const mounts: OciSpec['mounts'] = [{ destination: '/proc', type: 'proc', source: 'proc' }];
    if (c % 2 === 0) mounts.push({ destination: '/data', type: 'bind', source: path.join(dir, 'data'), options: ['rbind', 'rw'] });
    if (c % 3 === 0) {
      mounts.push({ destination: '/etc/app.conf', type: 'bind', source: path.join(dir, 'config', 'app.conf'), options: ['rbind', 'ro'] });
    }
    if (c === 4 || c === 7) mounts.push({ destination: '/cache', type: 'virtual-disk', source: path.join(dir, 'disks', 'shared.vhdx'), options: ['ro'] });
    containers.push({
      id: `c${c}`,
      spec: { ociVersion: '1.2.0', root: { path: 'rootfs' }, mounts, windows: { layerFolders: [...stack, path.join(dir, 'scratch', `c${c}`)] } },
    });
  }
  return { name: 'lcow-10', uvm: { os: 'linux', scsiControllers: 1, vpmem: { count: 4, maxSizeBytes: 64 * MiB } }, containers };
}

// ---------------------------------------------------------------- fault-tolerant pod run

/** One failure the pod run observed (and recovered from). */
export interface ObservedFailure {
  step: string;
  code: string;
  message: string;
}

/** Hooks the pod run calls while it may make no HCS call of its own (trace pausing, fault clearing). */
export interface PodRunHooks {
  /** Called after an observed failure, before the run checks the rollback and retries: clear the fault. */
  clearFault(): void;
  /** Runs `fn` (the run's own state checks) outside the measured/traced window. */
  unmeasured<T>(fn: () => Promise<T>): Promise<T>;
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : `non-UvmError ${String(err)}`;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Runs a pod end to end — create and start the UVM, allocate every container in order, release
 * them in reverse, remove idle VSMB shares, terminate — recovering from every failure the way a
 * shim would: the fault is cleared (`hooks.clearFault`), the rollback is checked (after a failed
 * allocation the held entries of describe() are exactly those before it, the simulator agrees
 * with describe(), and no CombinedLayers of the failed container exists), and the failed step is
 * retried, which must then succeed. Before terminating, describe() must be empty and the
 * simulator must report HotAdded 0. Returns the failures observed and the final SimulatorState.
 */
export async function runPodWithRecovery(
  orchestrator: UvmOrchestrator,
  pod: PodScenario,
  uvmId: string,
  hooks: PodRunHooks,
  allocate: (uvm: UtilityVm, c: PodContainer) => Promise<{ release(): Promise<void> }>,
): Promise<{ failures: ObservedFailure[]; finalState: SimulatorState }> {
  const failures: ObservedFailure[] = [];
  const record = (step: string, err: unknown): void => {
    failures.push({ step, code: codeOf(err), message: messageOf(err) });
    hooks.clearFault();
  };
  const ctx = (step: string): string => `${pod.name} ${uvmId} ${step}`;

  // A call given up at its deadline may still complete in HCS: wait for its outcome (and for the
  // UVM to undo a late success) before looking at what is attached.
  const outcome = async (err: unknown): Promise<boolean> => (await lateOutcomeOf(err))?.applied ?? false;
  let uvm: UtilityVm;
  try {
    uvm = await orchestrator.createUtilityVm({ ...pod.uvm, id: uvmId });
  } catch (err) {
    record('create', err);
    await outcome(err);
    expect(await hooks.unmeasured(() => systemExists(uvmId)), ctx('a failed create left a compute system')).to.equal(false);
    uvm = await orchestrator.createUtilityVm({ ...pod.uvm, id: uvmId });
  }
  let terminated = false;
  try {
    try {
      await uvm.start();
    } catch (err) {
      record('start', err);
      const applied = await outcome(err);
      if (uvm.phase === 'terminated') {
        // A UVM with guest channels is torn down when its start fails (LCOW, bridge mode): nothing
        // may be left of it, and a new one with the same id starts.
        await uvm.close();
        expect(await hooks.unmeasured(() => systemExists(uvmId)), ctx('a failed start left a compute system')).to.equal(false);
        uvm = await orchestrator.createUtilityVm({ ...pod.uvm, id: uvmId });
        await uvm.start();
      } else if (!applied) {
        await uvm.start();
      }
    }
    const started = uvm;
    bootResources.set(uvm, simulatorResources(await hooks.unmeasured(() => simulatorStateOf(started.id))));

    const live: { id: string; resources: { release(): Promise<void> } }[] = [];
    for (const c of pod.containers) {
      const before = heldEntries(uvm.describe());
      try {
        live.push({ id: c.id, resources: await allocate(uvm, c) });
      } catch (err) {
        record(`allocate ${c.id}`, err);
        await uvm.settled();
        await hooks.unmeasured(async () => {
          expect(heldEntries(uvm.describe()), ctx(`allocate ${c.id}: held entries after the rollback`)).to.deep.equal(before);
          const state = await expectInSync(uvm, ctx(`allocate ${c.id} rolled back`));
          const combined = (state.Guest as unknown as { CombinedLayers: { ContainerRootPath?: string }[] }).CombinedLayers;
          expect(combined.length, ctx(`allocate ${c.id}: CombinedLayers after the rollback`)).to.equal(live.length);
        });
        live.push({ id: c.id, resources: await allocate(uvm, c) });
      }
    }

    for (const c of [...live].reverse()) {
      try {
        await c.resources.release();
      } catch (err) {
        record(`release ${c.id}`, err);
        await uvm.settled();
        // The library has not lost track of anything: whatever the simulator still holds is
        // still listed by describe() (so the retry below can remove it).
        await hooks.unmeasured(async () => {
          const described = new Set(describedResources(uvm.describe()));
          const untracked = hotResources(uvm, await simulatorStateOf(uvm.id)).filter((r) => !described.has(r));
          expect(untracked, ctx(`release ${c.id} failed: attached but not in describe()`)).to.deep.equal([]);
        });
        await c.resources.release();
      }
    }
    await uvm.settled();
    const finalState = await hooks.unmeasured(() => expectEmpty(uvm, ctx('teardown')));

    try {
      await uvm.terminate();
    } catch (err) {
      record('terminate', err);
      await uvm.terminate();
    }
    terminated = true;
    return { failures, finalState };
  } finally {
    if (!terminated) {
      hooks.clearFault();
      await uvm.terminate().catch(() => undefined);
    }
    uvm.close();
  }
}

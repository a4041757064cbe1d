import { UvmAggregateError, UvmError } from '../core/errors.js';
import type { ContainerEntry } from '../oci/mount-applier.js';
import type { OciSpec } from '../oci/oci-spec.js';
import type { Progress } from './progress.js';
import type { RunBackend, RunContainer, RunUvm } from './run-backend.js';
import { groupResources, type ContainerSummary, type MountSummary, type RunReport } from './run-report.js';
import type { Scenario } from './scenario.js';

export interface RunOptions {
  /** Skip the teardown even when the scenario asks for it (`--keep`). */
  keep: boolean;
  /** Journal the UVM to this file (`--journal`). */
  journal?: string;
  /** Aborts the run (a signal): what is in flight is aborted, what was allocated is released, the UVM terminated. */
  signal?: AbortSignal;
}

/** The outcome of a run: the report, and the teardown failure when a release failed. */
export interface RunOutcome {
  report: RunReport;
  /** A RELEASE_FAILED error when one or more container releases failed (the report shows what is left). */
  teardownError: UvmError | UvmAggregateError | undefined;
}

/**
 * `uvmctl run`: creates and starts the UVM, allocates every container in scenario order, takes
 * the summary (rewritten rootfs and mounts, `describe()` per manager), then — unless the scenario
 * says `"teardown": false` or `keep` — releases the containers in reverse order, continuing past
 * failures, removes the idle direct-mapped VSMB shares (no container is left to hold a guest
 * handle on them), and checks that the managers hold nothing and, when asked, that the simulator has nothing
 * hot-added (`SimulatorState.HotAdded` 0; only with `--check-simulator`, a simulator test control).
 * The UVM is terminated at the end (kept running, handle closed, when the teardown is skipped).
 *
 * If an allocation fails, the containers allocated so far are released in reverse order, the UVM
 * is terminated, and the allocation error is rethrown (with the container id in its details).
 *
 * @param specs the bundles' specs, in the order of `scenario.containers`.
 */
export async function runScenario(
  scenario: Scenario,
  specs: readonly OciSpec[],
  backend: RunBackend,
  progress: Progress,
  options: RunOptions,
): Promise<RunOutcome> {
  progress.line(`creating and starting UVM ${scenario.uvm.id} (${scenario.uvm.os}, ${backend.kind === 'simulator' ? 'HCS simulator' : 'HCS'})`);
  const uvm = await backend.createUvm(scenario.uvm, { journal: options.journal, signal: options.signal });
  const state: RunState = { allocated: [], terminate: true };
  let outcome: RunOutcome;
  try {
    outcome = await allocateReportAndTearDown(uvm, scenario, specs, backend, progress, scenario.teardown && !options.keep, state, options.signal);
  } catch (err) {
    // Never hide the error that got us here behind a failing termination (it goes in details.cleanupError).
    await finish(uvm, state, progress).catch((closeError: unknown) => {
      if (UvmError.is(err)) Object.assign(err.details, { cleanupError: closeError });
      progress.line(`terminating UVM ${uvm.id} failed too: ${closeError instanceof Error ? closeError.message : String(closeError)}`);
    });
    throw err;
  }
  await finish(uvm, state, progress);
  return outcome;
}

/** What `finish` must undo: containers still allocated (after a failure), and whether to terminate. */
interface RunState {
  allocated: { id: string; container: RunContainer }[];
  terminate: boolean;
}

async function allocateReportAndTearDown(
  uvm: RunUvm,
  scenario: Scenario,
  specs: readonly OciSpec[],
  backend: RunBackend,
  progress: Progress,
  teardown: boolean,
  state: RunState,
  signal: AbortSignal | undefined,
): Promise<RunOutcome> {
  const n = scenario.containers.length;
  const containers: ContainerSummary[] = [];
  for (const [i, c] of scenario.containers.entries()) {
    signal?.throwIfAborted();
    progress.line(`allocating container ${c.id} (${i + 1}/${n})`);
    const spec = specs[i]!;
    let container: RunContainer;
    try {
      container = await uvm.allocateContainer(spec, c.id, signal, c.isolation === 'process' ? { isolation: 'process', bundle: c.bundle } : undefined);
    } catch (err) {
      if (UvmError.is(err)) Object.assign(err.details, { containerId: c.id });
      throw err;
    }
    state.allocated.push({ id: c.id, container });
    signal?.throwIfAborted();
    containers.push(summarizeContainer(c.id, c.bundle, spec, container.spec, container.containerEntries));
  }
  const report: RunReport = {
    command: 'run',
    scenario: scenario.file,
    uvm: { id: uvm.id, os: uvm.os, backend: backend.kind },
    containers,
    resources: groupResources(uvm.describe()),
    teardown: { performed: false, released: [], sharesKept: 0, remaining: [], hotAdded: null },
    ok: true,
  };
  if (!teardown) {
    state.terminate = false;
    progress.line(`teardown skipped: ${state.allocated.length} container(s) left allocated, UVM ${uvm.id} left running`);
    state.allocated = [];
    return { report, teardownError: undefined };
  }
  const allocated = state.allocated;
  state.allocated = [];
  const failures = await releaseAll(allocated, progress);
  report.teardown.performed = true;
  report.teardown.released = allocated
    .filter((a) => !failures.some((f) => f.id === a.id))
    .map((a) => a.id)
    .reverse();
  // Kept direct-mapped shares are expected: never removed while the VM runs, they go with it.
  report.teardown.sharesKept = uvm.keptShares();
  if (report.teardown.sharesKept > 0) progress.line(`${report.teardown.sharesKept} direct-mapped VSMB share(s) kept until the VM exits`);
  report.teardown.remaining = uvm.describe().filter((r) => r.state !== 'kept');
  report.teardown.hotAdded = await uvm.hotAdded();
  report.ok = failures.length === 0 && report.teardown.remaining.length === 0 && (report.teardown.hotAdded ?? 0) === report.teardown.sharesKept;
  const teardownError =
    failures.length === 0
      ? undefined
      : new UvmAggregateError(
          'RELEASE_FAILED',
          `teardown of ${failures.map((f) => f.id).join(', ')} failed`,
          failures.map((f) => f.error),
          { containerIds: failures.map((f) => f.id) },
        );
  return { report, teardownError };
}

/** Rolls back what is still allocated (after a failure), then terminates (or just closes) the UVM. */
async function finish(uvm: RunUvm, state: RunState, progress: Progress): Promise<void> {
  if (state.allocated.length > 0) {
    progress.line(`rolling back ${state.allocated.length} allocated container(s)`);
    const allocated = state.allocated;
    state.allocated = [];
    await releaseAll(allocated, progress);
  }
  progress.line(`${state.terminate ? 'terminating' : 'closing the handle of'} UVM ${uvm.id}`);
  await uvm.close({ terminate: state.terminate });
}

/** Releases in reverse order, continuing past failures. */
async function releaseAll(
  allocated: readonly { id: string; container: RunContainer }[],
  progress: Progress,
): Promise<{ id: string; error: unknown }[]> {
  const failures: { id: string; error: unknown }[] = [];
  for (const { id, container } of [...allocated].reverse()) {
    progress.line(`releasing container ${id}`);
    try {
      await container.release();
    } catch (error) {
      failures.push({ id, error });
      progress.line(`releasing container ${id} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  return failures;
}

/** Pairs the bundle's mounts with the rewritten ones (same index). */
export function summarizeContainer(
  id: string,
  bundle: string,
  original: OciSpec,
  rewritten: OciSpec,
  containerEntries: readonly ContainerEntry[] = [],
): ContainerSummary {
  const before = original.mounts ?? [];
  const after = rewritten.mounts ?? [];
  const mounts: MountSummary[] = before.map((m, index) => {
    const out: MountSummary = { index, destination: m.destination };
    if (m.type !== undefined) out.type = m.type;
    const guestType = after[index]?.type;
    if (guestType !== undefined && guestType !== m.type) out.guestType = guestType;
    if (m.source !== undefined) out.source = m.source;
    const guestSource = after[index]?.source;
    if (guestSource !== undefined) out.guestSource = guestSource;
    return out;
  });
  return { id, bundle, rootfs: rewritten.root?.path, mounts, containerEntries: structuredClone([...containerEntries]) };
}

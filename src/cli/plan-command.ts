import { UvmError } from '../core/errors.js';
import { allocateContainer, planContainer, type ContainerPlan } from '../containers/allocate-container.js';
import type { ContainerResources } from '../containers/container-resources.js';
import type { GuestOs } from '../devices/device-types.js';
import type { OciSpec } from '../oci/oci-spec.js';
import type { PlanBackend } from './plan-backend.js';
import type { Progress } from './progress.js';
import { groupResources, type ResourceTables } from './run-report.js';
import type { Scenario } from './scenario.js';

/** What `uvmctl plan` prints (the `--json` document; the text form renders the same). */
export interface PlanReport {
  command: 'plan';
  scenario: string;
  uvm: { id: string; os: GuestOs };
  /** One per container, in scenario order; stops after the first that does not fit. */
  containers: ContainerPlan[];
  /** What the managers would hold once every planned container is allocated. */
  resources: ResourceTables;
  /** True when every container fits. */
  fits: boolean;
}

/**
 * `uvmctl plan`: the dry run. Each container is planned with `planContainer` (which layer lands on
 * VPMEM, which falls back to SCSI and why, where each mount goes, slots left) against the state
 * the containers before it would leave — they are allocated on an in-memory UVM whose HCS makes
 * no call (see `DryRunHcs`), so shared layers and used slots carry over as in a real run.
 * Planning stops at the first container that does not fit. Everything is released at the end.
 */
export async function planScenario(
  scenario: Scenario,
  specs: readonly OciSpec[],
  backend: PlanBackend,
  progress: Progress,
): Promise<PlanReport> {
  const n = scenario.containers.length;
  progress.line(`planning UVM ${scenario.uvm.id} (${scenario.uvm.os}) in memory; no HCS call`);
  const { uvm, close } = await backend.createUvm(scenario.uvm);
  const held: ContainerResources[] = [];
  try {
    const containers: ContainerPlan[] = [];
    let fits = true;
    for (const [i, c] of scenario.containers.entries()) {
      progress.line(`planning container ${c.id} (${i + 1}/${n})`);
      const spec = specs[i]!;
      if (c.isolation === 'process') {
        progress.line(`container ${c.id} is process-isolated: its layers are mounted on the host at run time, nothing in the UVM`);
        continue;
      }
      try {
        const plan = await planContainer(uvm, spec, { containerId: c.id });
        containers.push(plan);
        if (!plan.fits) {
          fits = false;
          progress.line(`container ${c.id} does not fit; not planning further`);
          break;
        }
        held.push((await allocateContainer(uvm, spec, { containerId: c.id })).resources);
      } catch (err) {
        if (UvmError.is(err)) Object.assign(err.details, { containerId: c.id });
        throw err;
      }
    }
    return {
      command: 'plan',
      scenario: scenario.file,
      uvm: { id: uvm.facts.id, os: uvm.facts.os },
      containers,
      resources: groupResources(uvm.describe()),
      fits,
    };
  } finally {
    for (const resources of held.reverse()) await resources.release();
    await close();
  }
}

import { prng } from '../support/prng.js';
// Crash recovery end to end: a child process builds a journaled LCOW pod on the simulator (whose
// state survives the process, HCSSIM stateFile) with 2–5 ms per HCS call, and is killed with
// SIGKILL at a random point of allocation or teardown (often with HCS operations in flight); a new
// process opens the UVM from its journal, reconciles, keeps refcounting, tears everything down,
// and the simulator and every manager end empty. Default: 24 kill points; UVM_SOAK=1: 200.
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RecoveryReport } from '../../src/recovery/apply-reconcile.js';
import type { RecoveryRun } from './fixtures/recovery-pod.js';
import { buildAndKill, pool, recover, RECOVERY_TMP as TMP, type BuildOutcome } from './recovery-support.js';

const SOAK = process.env.UVM_SOAK === '1';
const KILL_POINTS = SOAK ? 200 : 24;
/** Steps the build child announces before work (see recovery-pod.ts): create … release uvm-lease (then `done`). */
const STEPS = 8;
const PARALLEL = 6;

describe('integration: crash recovery (SIGKILL, reconcile, teardown)', function () {
  this.timeout(SOAK ? 1_200_000 : 120_000);
  let dir = '';
  before(() => {
    dir = mkdtempSync(join(TMP, 'uvm-recovery-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function newRun(i: number, rand: () => number): { run: RecoveryRun; file: string } {
    const run: RecoveryRun = {
      id: `recovery-${process.pid}-${i}`,
      // Every fourth run is a WCOW pod (VSMB layers and shares, pipes); the LCOW ones alternate
      // between VPMEM's default and multi-mapping modes.
      os: i % 4 === 3 ? 'windows' : 'linux',
      stateFile: join(dir, `state-${i}.json`),
      journal: join(dir, `journal-${i}.json`),
      multiMapping: i % 2 === 1,
      latencyMs: 2,
      jitterMs: 3,
      seed: Math.floor(rand() * 2 ** 31),
    };
    const file = join(dir, `run-${i}.json`);
    writeFileSync(file, JSON.stringify(run));
    return { run, file };
  }

  it(`recovers from ${KILL_POINTS} SIGKILLs during allocation and teardown and ends empty`, async () => {
    const rand = prng(SOAK ? Date.now() : 20261121);
    const runs = Array.from({ length: KILL_POINTS }, (_, i) => {
      // Spread the kill points over every step, then a random delay into it (HCS calls take 2–5 ms).
      const killStep = i % STEPS;
      const delayMs = Math.floor(rand() * 60);
      return { ...newRun(i, rand), killStep, delayMs, outcome: undefined as BuildOutcome | undefined };
    });
    await pool(runs, PARALLEL, async (r) => {
      r.outcome = await buildAndKill(r.file, r.killStep, r.delayMs);
    });
    const batches: string[][] = [[], [], [], []];
    runs.forEach((r, i) => batches[i % batches.length]!.push(r.file));
    const results = (await Promise.all(batches.map((b) => recover(b)))).flat();

    const byId = new Map(results.map((r) => [r.id, r]));
    let killed = 0;
    let adopted = 0;
    let removed = 0;
    let rolledBack = 0;
    let restoredContainers = 0;
    const failures: string[] = [];
    for (const r of runs) {
      const res = byId.get(r.run.id)!;
      if (r.outcome!.killed) killed++;
      const report = res.report as RecoveryReport | undefined;
      adopted += report?.adopted.length ?? 0;
      removed += report?.removed.length ?? 0;
      rolledBack += report?.rolledBack.length ?? 0;
      restoredContainers += res.restoredContainers?.length ?? 0;
      const where = `run ${r.run.id} (${r.run.os}, kill at step ${r.killStep} + ${r.delayMs} ms, last step ${r.outcome!.lastStep}, seed ${r.run.seed})`;
      if (!res.ok) failures.push(`${where}: ${res.error ?? JSON.stringify(res)}`);
      else if (res.afterReconcile && JSON.stringify(res.afterReconcile.simulator) !== JSON.stringify(res.afterReconcile.described)) {
        failures.push(`${where}: after reconcile HCS ${JSON.stringify(res.afterReconcile.simulator)} != describe ${JSON.stringify(res.afterReconcile.described)}`);
      } else if (res.journalExists) failures.push(`${where}: the journal is still there after terminate`);
    }
    console.log(
      `      recovery: runs=${runs.length} killed=${killed} passed=${runs.length - failures.length} adopted=${adopted} removed=${removed} rolledBack=${rolledBack} restoredContainers=${restoredContainers}`,
    );
    expect(failures).to.deep.equal([]);
    // The sweep must exercise every path, or it proves nothing.
    expect(killed, 'runs actually killed (kill points)').to.be.at.least(Math.min(20, runs.length));
    expect(adopted, 'records adopted').to.be.greaterThan(0);
    expect(restoredContainers, 'containers restored').to.be.greaterThan(0);
    expect(removed, 'unknown resources removed').to.be.greaterThan(0);
  });
});

// The crash sweep (issue 11): SIGKILL right before or right after every HcsModifyComputeSystem of
// a journaled pod's life (allocation, hot add, teardown), then a second SIGKILL during the
// recovery, then a recovery that must converge — for LCOW (VPMEM default and multi-mapping) and
// WCOW (direct-mapped and NoDirectmap VSMB), and both with assigned devices (vPCI). The library reads no device list (the simulator's
// state is read only here, to check): after re-open the simulator holds exactly what describe()
// says, no restricted share allows a file no lease holds, no removal fails, and releasing
// everything ends empty with the journal gone.
//
// Default: a spread sample of kill points per configuration (UVM_SWEEP_SAMPLE, 3); UVM_SOAK=1:
// every call, both sides.
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KillPoint, RecoveryRun } from './fixtures/recovery-pod.js';
import { pool, recover, RECOVERY_TMP, runChild } from './recovery-support.js';

const SOAK = process.env.UVM_SOAK === '1';
/** Kill points per configuration in the default run. */
const SAMPLE = Number(process.env.UVM_SWEEP_SAMPLE ?? 3);
const PARALLEL = 4;

interface Config {
  name: string;
  os: 'linux' | 'windows';
  multiMapping: boolean;
  directMap: boolean;
  /** Assigned devices too (a UVM-held NIC, a GPU shared by two containers). */
  vpci?: boolean;
}

const CONFIGS: Config[] = [
  { name: 'LCOW default', os: 'linux', multiMapping: false, directMap: false },
  { name: 'LCOW multi-mapping', os: 'linux', multiMapping: true, directMap: false },
  { name: 'WCOW direct-mapped', os: 'windows', multiMapping: false, directMap: true },
  { name: 'WCOW NoDirectmap', os: 'windows', multiMapping: false, directMap: false },
  { name: 'LCOW vPCI', os: 'linux', multiMapping: true, directMap: false, vpci: true },
  { name: 'WCOW vPCI', os: 'windows', multiMapping: false, directMap: false, vpci: true },
];

/** `n` kill points spread over calls 1..total, alternating before/after; all of them when soaking. */
function killPoints(total: number, n: number): KillPoint[] {
  const all: KillPoint[] = [];
  for (let call = 1; call <= total; call++) for (const when of ['before', 'after'] as const) all.push({ call, when });
  if (SOAK || n >= all.length) return all;
  return Array.from({ length: n }, (_, i) => all[Math.min(all.length - 1, Math.round((i * (all.length - 1)) / (n - 1)))]!);
}

describe('integration: crash sweep (SIGKILL at every HCS modify, second crash during recovery)', function () {
  this.timeout(SOAK ? 3_600_000 : 300_000);
  let dir = '';
  let counter = 0;
  before(() => {
    dir = mkdtempSync(join(RECOVERY_TMP, 'uvm-sweep-'));
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  function newRun(config: Config, extra: Partial<RecoveryRun> = {}): { run: RecoveryRun; file: string } {
    const i = ++counter;
    const run: RecoveryRun = {
      id: `sweep-${process.pid}-${i}`,
      os: config.os,
      stateFile: join(dir, `state-${i}.json`),
      journal: join(dir, `journal-${i}.json`),
      multiMapping: config.multiMapping,
      directMap: config.directMap,
      vpci: config.vpci === true,
      latencyMs: 0,
      jitterMs: 0,
      seed: i,
      ...extra,
    };
    const file = join(dir, `run-${i}.json`);
    writeFileSync(file, JSON.stringify(run));
    return { run, file };
  }

  for (const config of CONFIGS) {
    it(`${config.name}: every kill point recovers (through a second crash) and ends empty`, async () => {
      // A run without a kill counts the modify calls of the pod's life.
      const dry = newRun(config);
      const counted = await runChild('build', dry.file);
      const total = Number(/modify-calls (\d+)/.exec(counted.stdout)?.[1]);
      expect(total, 'modify calls counted').to.be.greaterThan(10);

      const points = killPoints(total, SAMPLE);
      const runs = points.map((killAt, i) => ({ ...newRun(config, { killAt, recoverKillAt: { call: 1 + (i % 3), when: i % 2 === 0 ? 'after' : 'before' } }), killAt }));
      let killedBuild = 0;
      let killedRecovery = 0;
      await pool(runs, PARALLEL, async (r) => {
        let built = await runChild('build', r.file);
        const made = Number(/modify-calls (\d+)/.exec(built.stdout)?.[1]);
        if (!built.killed && made < r.killAt.call) {
          // The pod's life is not a fixed number of calls (how a restricted share's AllowedFiles
          // Updates coalesce depends on timing): a point past this life's last call moves to it.
          Object.assign(r, newRun(config, { killAt: { call: made, when: r.killAt.when }, recoverKillAt: r.run.recoverKillAt }), { killAt: { call: made, when: r.killAt.when } });
          built = await runChild('build', r.file);
        }
        if (!built.killed) throw new Error(`build of ${r.run.id} was not killed at ${JSON.stringify(r.killAt)}: ${built.stdout}`);
        killedBuild++;
        // The second crash, during the recovery (open + reconcile, or the teardown after it).
        const second = await runChild('recover-crash', r.file).catch((err: unknown) => ({ killed: false, stdout: String(err), stderr: '' }));
        if (second.killed) killedRecovery++;
      });
      const results = await recover(runs.map((r) => r.file));
      const failures: string[] = [];
      for (const [i, res] of results.entries()) {
        const where = `${runs[i]!.run.id} (kill ${JSON.stringify(runs[i]!.killAt)}, second ${JSON.stringify(runs[i]!.run.recoverKillAt)})`;
        if (!res.ok) failures.push(`${where}: ${res.error ?? JSON.stringify(res)}`);
        else if (res.afterReconcile && JSON.stringify(res.afterReconcile.simulator) !== JSON.stringify(res.afterReconcile.described)) {
          failures.push(`${where}: after reconcile HCS ${JSON.stringify(res.afterReconcile.simulator)} != describe ${JSON.stringify(res.afterReconcile.described)}`);
        } else if (res.journalExists) failures.push(`${where}: the journal is still there after terminate`);
      }
      console.log(`      sweep ${config.name}: modify calls=${total} kill points=${runs.length} second crashes=${killedRecovery} passed=${runs.length - failures.length}`);
      expect(failures).to.deep.equal([]);
      expect(killedBuild).to.equal(runs.length);
      expect(killedRecovery, 'second crashes that hit').to.be.greaterThan(0);
    });
  }
});

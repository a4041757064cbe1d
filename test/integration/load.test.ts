import { sparseFile } from '../support/sparse-file.js';
// Load (issue 6): 64 LCOW containers over 20 shared layers (plus shared bind folders and disks)
// allocated and released concurrently with random overlap, on the simulator with random latency
// (jitter) and an HCS-side concurrency limit. While it runs, describe() and the SimulatorState are
// sampled: no slot is given twice, no host file is attached twice, and every refcount lies between
// the containers known to hold the resource and those that may (allocating or releasing); at
// quiescent points the refcounts equal the live owners exactly and the simulator equals
// describe(). The UVM ends empty. Seeded: UVM_SEED=<n> replays a run (the seed is printed).
import { expect } from 'chai';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { allocateContainer } from '../../src/containers/allocate-container.js';
import type { ContainerResources } from '../../src/containers/container-resources.js';
import type { ResourceInfo } from '../../src/devices/device-types.js';
import { configureSimulator, type SimulatorFault } from '../../src/hcs/simulator-controls.js';
import type { OciMount, OciSpec } from '../../src/oci/oci-spec.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import {
  InstrumentedHcs,
  SOAK,
  expectEmpty,
  expectInSync,
  orchestratorOver,
  prng,
  runSeed,
  simulatorResources,
  simulatorStateOf,
  tempDir,
} from './fault-support.js';

const MiB = 1024 * 1024;
const E_FAIL = 0x80004005 | 0;
const CONTAINERS = 64;
const LAYERS = 20;
const ROUNDS = SOAK ? 6 : 2;
/** Simulator: 1 ms + [0, 4) ms per operation, at most 4 operations at once. */
const SIM = { latencyMs: 1, jitterMs: 4, concurrency: 4 };

type Phase = 'allocating' | 'live' | 'releasing' | 'done';

interface Ctr {
  id: string;
  spec: OciSpec;
  /** Host paths whose refcount this container contributes to (layer VHDs, share folders, disks). */
  uses: string[];
  phase: Phase;
  resources?: ContainerResources;
  /** What happened to it (failures), for the diagnostics of a violation. */
  history: string[];
}


/** An error with its nested causes / aggregated errors, on one line. */
function causes(err: unknown, depth = 0): string {
  if (depth > 4 || err === undefined || err === null) return '';
  const e = err as { message?: string; code?: string; cause?: unknown; errors?: unknown[] };
  const own = `${e.code ?? ''} ${e.message ?? String(err)}`.replace(/\s+/g, ' ').trim();
  const inner = Array.isArray(e.errors) ? e.errors.map((x) => causes(x, depth + 1)) : e.cause !== undefined ? [causes(e.cause, depth + 1)] : [];
  return inner.length > 0 ? `${own} ⟵ (${inner.join('; ')})` : own;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The refcount describe() reports for a host path (summed over VPMEM and SCSI, where a layer may sit on both). */
function refCountOf(infos: readonly ResourceInfo[], hostPath: string): number {
  return infos
    .filter((r) => r.hostPath === hostPath && (r.kind === 'vpmem-device' || r.kind === 'vpmem-mapping' || r.kind === 'scsi-attachment' || r.kind === 'plan9-share'))
    .reduce((n, r) => n + r.refCount, 0);
}

/**
 * Problems with one describe() snapshot, given who holds what. `exact`: refcount = live owners
 * (quiescent points). `bounds`: live owners ≤ refcount ≤ live + in-flight owners. `lower`: live
 * owners ≤ refcount (runs with faults, where a failed teardown legitimately keeps a reference in
 * limbo until it is retried).
 */
function checkSnapshot(infos: readonly ResourceInfo[], ctrs: readonly Ctr[], mode: 'exact' | 'bounds' | 'lower'): string[] {
  const problems: string[] = [];
  const unique = (kind: string, values: (string | undefined)[]): void => {
    const seen = new Set<string>();
    for (const v of values) {
      if (v === undefined) continue;
      if (seen.has(v)) problems.push(`${kind} ${v} given twice`);
      seen.add(v);
    }
  };
  unique('SCSI slot', infos.filter((r) => r.kind === 'scsi-attachment').map((r) => r.slot));
  unique('VPMEM slot', infos.filter((r) => r.kind === 'vpmem-device' || r.kind === 'vpmem-mapping').map((r) => r.slot));
  unique('Plan9 share', infos.filter((r) => r.kind === 'plan9-share').map((r) => r.slot));
  unique('guest mount path', infos.filter((r) => r.kind !== 'scsi-attachment' && r.kind !== 'vsmb-file').map((r) => r.guestPath));
  unique('SCSI host file', infos.filter((r) => r.kind === 'scsi-attachment').map((r) => r.hostPath));
  const paths = new Set(ctrs.flatMap((c) => c.uses));
  for (const p of paths) {
    const users = ctrs.filter((c) => c.uses.includes(p));
    const definite = users.filter((c) => c.phase === 'live').length;
    const maybe = users.filter((c) => c.phase === 'allocating' || c.phase === 'releasing').length;
    const rc = refCountOf(infos, p);
    if (mode === 'exact' ? rc !== definite : rc < definite || (mode === 'bounds' && rc > definite + maybe)) {
      problems.push(`${path.basename(path.dirname(p))}/${path.basename(p)}: refcount ${rc}, live owners ${definite}, in flight ${maybe}`);
    }
  }
  return problems;
}

/** Problems with one SimulatorState sample: the same host file attached twice. */
function checkSimulator(state: Awaited<ReturnType<typeof simulatorStateOf>>): string[] {
  const problems: string[] = [];
  const scsi = Object.values(state.Devices.Scsi).flatMap((c) => Object.values(c.Attachments).map((a) => String(a.Path)));
  const vpmem = Object.values(state.Devices.VirtualPMem.Devices).flatMap((d) => (d.HostPath === undefined ? [] : [String(d.HostPath)]));
  for (const [what, list] of [['SCSI', scsi], ['VPMEM', vpmem]] as const) {
    const dup = list.filter((p, i) => list.indexOf(p) !== i);
    if (dup.length > 0) problems.push(`simulator: ${what} host file attached twice: ${dup.join(', ')}`);
  }
  return problems;
}

describe('integration: load (64 containers over 20 shared layers, jitter, HCS concurrency limit)', function () {
  this.timeout(SOAK ? 600_000 : 90_000);
  const hcs = new InstrumentedHcs();
  const orchestrator = orchestratorOver(hcs);
  let root: string;
  let uvm: UtilityVm | undefined;

  before(() => {
    root = tempDir('uvm-load-');
  });

  afterEach(async () => {
    configureSimulator({ latencyMs: 0, jitterMs: 0, latency: {}, concurrency: 0, clearFaults: true });
    if (uvm) {
      await uvm.terminate().catch(() => undefined);
      uvm.close();
      uvm = undefined;
    }
  });

  after(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** One load run; with `faults`, random modify calls fail (plain and guest-half) and the run recovers. */
  async function runLoad(faults: boolean): Promise<void> {
    const seed = runSeed();
    console.log(`      load${faults ? ' with faults' : ''}: seed=${seed} (replay with UVM_SEED=${seed}), rounds=${ROUNDS}${SOAK ? ' (soak)' : ' (UVM_SOAK=1: 6 rounds)'}, simulator ${JSON.stringify(SIM)}`);
    const rand = prng(seed);
    const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));

    // 20 shared layers, 8..96 MiB (those above 64 MiB never fit a VPMEM device), and more layers
    // than VPMEM devices, so both SCSI fallbacks happen under contention.
    const layers = Array.from({ length: LAYERS }, (_, i) => {
      const dir = path.join(root, 'layers', `l${i}`);
      sparseFile(path.join(dir, 'layer.vhd'), int(1, 12) * 8 * MiB);
      return dir;
    });
    const dataDirs = Array.from({ length: 4 }, (_, i) => {
      const dir = path.join(root, 'data', `d${i}`);
      mkdirSync(dir, { recursive: true });
      return dir;
    });
    const disks = Array.from({ length: 2 }, (_, i) => {
      const file = path.join(root, 'disks', `disk${i}.vhdx`);
      sparseFile(file, 256 * MiB);
      return file;
    });

    configureSimulator({ ...SIM, latency: {}, seed, clearFaults: true, trace: null });
    uvm = await orchestrator.createUtilityVm({
      id: `load-${process.pid}-${seed}-${faults ? 'f' : 'n'}`,
      os: 'linux',
      scsiControllers: 2,
      vpmem: { count: 8, maxSizeBytes: 64 * MiB },
    });
    await uvm.start();
    const vm = uvm;

    let samples = 0;
    let simSamples = 0;
    let maxLive = 0;
    const problems: string[] = [];
    /** Problems found by the checks made as each allocation or release completes. */
    const events: string[] = [];
    const during = faults ? 'lower' : 'bounds';
    let injected = 0;
    let failedAllocations = 0;
    let failedReleases = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const ctrs: Ctr[] = Array.from({ length: CONTAINERS }, (_, c) => {
        const picked = new Set<number>();
        const want = int(2, 5);
        while (picked.size < want) picked.add(int(0, LAYERS - 1));
        const stack = [...picked].map((i) => layers[i]!);
        const scratch = path.join(root, 'scratch', `r${round}c${c}`);
        sparseFile(path.join(scratch, 'sandbox.vhdx'), 1024 * MiB);
        const mounts: OciMount[] = [{ destination: '/proc', type: 'proc', source: 'proc' }];
        const uses = stack.map((d) => path.join(d, 'layer.vhd'));
        if (rand() < 0.5) {
          const d = int(0, dataDirs.length - 1);
          // Each folder has one fixed read-only setting (the same host path with another setting is CONFIG_CONFLICT).
          mounts.push({ destination: '/data', type: 'bind', source: dataDirs[d]!, options: d % 2 === 0 ? ['rbind', 'ro'] : ['rbind', 'rw'] });
          uses.push(dataDirs[d]!);
        }
        if (rand() < 0.2) {
          const k = int(0, disks.length - 1);
          mounts.push({ destination: '/cache', type: 'virtual-disk', source: disks[k]!, options: ['ro'] });
          uses.push(disks[k]!);
        }
        return { id: `r${round}c${c}`, spec: { root: { path: 'rootfs' }, mounts, windows: { layerFolders: [...stack, scratch] } }, uses, phase: 'done' as Phase, history: [] };
      });

      if (faults) {
        // ~1.5% of the round's modify calls fail with E_FAIL, and ~2% of those with a guest half
        // fail in the guest half only (the host half applied).
        const list: SimulatorFault[] = [];
        for (let k = 0; k < 8; k++) list.push({ fn: 'HcsModifyComputeSystem', nth: int(1, 550), hr: E_FAIL });
        for (let k = 0; k < 6; k++) list.push({ fn: 'HcsModifyComputeSystem', nth: int(1, 300), guestOnly: true, hr: E_FAIL });
        configureSimulator({ clearFaults: true, faults: list });
        injected += list.length;
      }
      const releaseFailed: Ctr[] = [];
      let running = true;
      const sampler = (async () => {
        while (running) {
          const infos = vm.describe();
          problems.push(...checkSnapshot(infos, ctrs, during).map((p) => `round ${round} sample ${samples}: ${p}`));
          maxLive = Math.max(maxLive, ctrs.filter((c) => c.phase === 'live').length);
          samples++;
          if (samples % 4 === 0) {
            problems.push(...checkSimulator(await simulatorStateOf(vm.id)).map((p) => `round ${round}: ${p}`));
            simSamples++;
          }
          await sleep(int(2, 15));
        }
      })();

      // Odd rounds: everything allocates at once, a quiescent check while all 64 are held, then
      // everything releases at once. Even rounds: each container starts, holds and releases on its own random clock.
      const allocate = async (c: Ctr): Promise<void> => {
        c.phase = 'allocating';
        try {
          c.resources = (await allocateContainer(vm, c.spec, { containerId: c.id })).resources;
          c.phase = 'live';
          maxLive = Math.max(maxLive, ctrs.filter((x) => x.phase === 'live').length);
          events.push(...checkSnapshot(vm.describe(), ctrs, during).map((p) => `round ${round} after allocating ${c.id}: ${p}`));
        } catch (err) {
          c.phase = 'done';
          const rb = (err as { details?: { rollbackError?: unknown } }).details?.rollbackError;
          c.history.push(`allocate: ${(err as { code?: string }).code} ${(err as Error).message}${rb ? ` (rollback failed: ${String(rb)})` : ''}`);
          // TEARDOWN_FAILED: the key's earlier teardown failed and was not retried yet (by design).
          if (faults && ['HCS_ERROR', 'TEARDOWN_FAILED'].includes((err as { code?: string }).code ?? '')) failedAllocations++;
          else problems.push(`round ${round}: allocating ${c.id} failed: ${(err as { code?: string }).code ?? ''} ${String(err)}`);
        }
      };
      const release = async (c: Ctr): Promise<void> => {
        if (c.phase !== 'live') return;
        c.phase = 'releasing';
        try {
          await c.resources!.release();
          c.phase = 'done';
          events.push(...checkSnapshot(vm.describe(), ctrs, during).map((p) => `round ${round} after releasing ${c.id}: ${p}`));
        } catch (err) {
          // Stays 'releasing' (a possible owner) until retried once the faults are cleared.
          if (faults) {
            c.history.push(`release: ${String(err)}`);
            failedReleases++;
            releaseFailed.push(c);
          } else problems.push(`round ${round}: releasing ${c.id} failed: ${String(err)}`);
        }
      };
      try {
        if (round % 2 === 1) {
          await Promise.all(ctrs.map(async (c) => (await sleep(int(0, 20)), allocate(c))));
          problems.push(...checkSnapshot(vm.describe(), ctrs, faults ? during : 'exact').map((p) => `round ${round} all allocated: ${p}`));
          if (!faults) await expectInSync(vm, `round ${round}, all ${CONTAINERS} allocated`);
          await Promise.all(ctrs.map(async (c) => (await sleep(int(0, 20)), release(c))));
        } else {
          await Promise.all(
            ctrs.map(async (c) => {
              await sleep(int(0, 150));
              await allocate(c);
              await sleep(int(0, 60));
              await release(c);
            }),
          );
        }
      } finally {
        running = false;
        await sampler;
      }
      if (faults) {
        // The shim's recovery: clear the faults, retry every failed release, then the teardowns a
        // failed rollback left behind (no lease is left to retry them).
        configureSimulator({ clearFaults: true });
        for (const c of releaseFailed) {
          try {
            await c.resources!.release();
            c.phase = 'done';
          } catch (err) {
            problems.push(`round ${round}: retrying the release of ${c.id} failed: ${causes(err)} [history: ${c.history.join(' | ')}]`);
          }
        }
        await vm.retryFailedTeardowns().catch((err: unknown) => problems.push(`round ${round}: retryFailedTeardowns: ${causes(err)}`));
      }
      problems.push(...checkSnapshot(vm.describe(), ctrs, 'exact').map((p) => `round ${round} end: ${p}`));
      try {
        await expectEmpty(vm, `round ${round} end`);
      } catch (err) {
        const state = await simulatorStateOf(vm.id);
        const left = vm.describe().map((r) => `${r.kind} ${r.key} slot=${r.slot ?? ''} state=${r.state} refs=${r.refCount}`);
        const combined = state.Guest.CombinedLayers.map((c) => String((c as { ContainerRootPath?: unknown }).ContainerRootPath));
        const involved = ctrs.filter((c) => c.history.length > 0 && left.some((l) => l.includes(`/${c.id}/`) || c.uses.some((u) => l.includes(u))));
        left.push(...involved.map((c) => `[${c.id}: ${c.history.join(' | ')}]`));
        problems.push(
          `${err instanceof Error ? err.message : String(err)} — describe(): ${left.join('; ')} — simulator: ${simulatorResources(state).join(', ')}; CombinedLayers: ${combined.join(', ')}`,
        );
        break;
      }
    }
    if (faults) console.log(`      load with faults: ${injected} faults injected, ${failedAllocations} allocations failed (rolled back), ${failedReleases} releases failed (retried)`);
    console.log(`      load: ${ROUNDS} rounds × ${CONTAINERS} containers, ${samples} describe() samples + ${ROUNDS * CONTAINERS * 2} at completions, ${simSamples} SimulatorState samples, up to ${maxLive} containers live at once, ${hcs.counts(vm.id).modify} modify calls`);
    problems.push(...events);
    expect(problems.slice(0, 20), `${problems.length} invariant violations (seed ${seed}):\n${problems.slice(0, 20).join('\n')}\n`).to.deep.equal([]);
    expect(samples, 'the sampler ran').to.be.greaterThan(ROUNDS * 5);
  }

  it('keeps every invariant throughout and ends empty', () => runLoad(false));

  it('with random injected faults: failed allocations roll back, failed releases are retried, and it still ends empty', () => runLoad(true));
});

// The soak (issue 16): what a pod's shim does over months, compressed. One UVM allocates and
// releases N containers (random layers from a pool, random mounts, hot add/remove, some aborted,
// some failing through injected simulator faults), then M UVMs are created and terminated in
// sequence (some with a journal, some with a container, some with a failed start), all through the
// FFI and the simulator. It returns the process figures (heap after a forced GC, open fds, threads)
// and every problem found: something left attached, a journal not empty, a listener, a pending
// library promise or an HCS operation left over, a released container still retained.
//
// Used by test/integration/soak.test.ts (short in `npm test`, full in `npm run test:soak`) and by
// bench/soak-bench.ts (the `soak:` line). It makes no assertion itself: the caller decides.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { getEventListeners, setMaxListeners } from 'node:events';
import path from 'node:path';
import type { ContainerResources } from '../../src/containers/container-resources.js';
import { createLogger } from '../../src/core/logger.js';
import { pendingPromises } from '../../src/core/pending-promises.js';
import { createUvmOrchestrator } from '../../src/di/uvm-orchestrator.js';
import { ComputeCoreHcs } from '../../src/hcs/computecore-hcs.js';
import { pendingOperationCount } from '../../src/hcs/operation-driver.js';
import { configureSimulator, readSimulatorState, type SimulatorFault } from '../../src/hcs/simulator-controls.js';
import type { OciMount, OciSpec } from '../../src/oci/oci-spec.js';
import { readJournalFile } from '../../src/recovery/journal.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import { forceGc, heapAfterGc } from './gc.js';
import { prng } from './prng.js';
import { sparseFile } from './sparse-file.js';
import { testGuestDelivery } from './guest-delivery.js';

const MiB = 1024 * 1024;
const E_FAIL = 0x80004005 | 0;

export interface SoakOptions {
  /** Containers allocated and released in the first UVM. */
  containers: number;
  /** UVMs created and terminated in sequence afterwards. */
  uvms: number;
  /** A scratch folder (emptied by the soak, removed by the caller). */
  root: string;
  seed: number;
  /** Containers in flight at once (default 6). */
  workers?: number;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** Process figures at one point. */
export interface ProcessProbe {
  heapBytes: number;
  fds: number;
  threads: number;
  /** Library-created promises not settled (`pendingPromises.total`). */
  pendingPromises: number;
  /** HCS operations created and not closed. */
  pendingOperations: number;
  /** Listeners on `process`, every event summed. */
  processListeners: number;
}

export interface SoakResult {
  start: ProcessProbe;
  /** After the container phase (its UVM terminated). */
  afterContainers: ProcessProbe;
  end: ProcessProbe;
  counts: {
    allocated: number;
    aborted: number;
    failedAllocations: number;
    failedReleases: number;
    hotAdds: number;
    hotRemoves: number;
    faultBatches: number;
    uvms: number;
    journaledUvms: number;
    failedStarts: number;
  };
  durationMs: number;
  /** Everything found wrong (empty when clean). */
  problems: string[];
}

/** Open file descriptors of this process. */
export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

/** Threads of this process (`Threads:` of /proc/self/status). */
export function threadCount(): number {
  const m = /^Threads:\s+(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : -1;
}

function processListeners(): number {
  return process.eventNames().reduce((n, e) => n + process.listenerCount(e), 0);
}

export async function probe(): Promise<ProcessProbe> {
  const heapBytes = await heapAfterGc();
  return {
    heapBytes,
    fds: openFds(),
    threads: threadCount(),
    pendingPromises: pendingPromises.total,
    pendingOperations: pendingOperationCount(),
    processListeners: processListeners(),
  };
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : `non-UvmError ${String(err)}`;
}

/** A macrotask turn (random abort points; never used to wait for the library). */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** The shared host files: a layer pool, data folders (fixed ro/rw each), a config file, disks. */
function layout(root: string, int: (lo: number, hi: number) => number): { layers: string[]; dataDirs: { dir: string; ro: boolean }[]; config: string; disks: string[] } {
  // 12 layers of 8..96 MiB: those above 64 MiB never fit a VPMEM device, and more layers than
  // VPMEM devices, so both SCSI fallbacks happen.
  const layers = Array.from({ length: 12 }, (_, i) => {
    const dir = path.join(root, 'layers', `l${i}`);
    sparseFile(path.join(dir, 'layer.vhd'), int(1, 12) * 8 * MiB);
    return dir;
  });
  const dataDirs = Array.from({ length: 4 }, (_, i) => {
    const dir = path.join(root, 'data', `d${i}`);
    mkdirSync(dir, { recursive: true });
    return { dir, ro: i % 2 === 0 };
  });
  const config = path.join(root, 'config', 'app.conf');
  mkdirSync(path.dirname(config), { recursive: true });
  writeFileSync(config, 'x=1\n');
  const disks = Array.from({ length: 2 }, (_, i) => {
    const file = path.join(root, 'disks', `disk${i}.vhdx`);
    sparseFile(file, 256 * MiB);
    return file;
  });
  return { layers, dataDirs, config, disks };
}

/**
 * Problems of a UVM at a quiescent point: anything still described or attached in the simulator.
 * (VM access grants are never revoked, as in hcsshim: they go with the file or the VM; see
 * docs/reliability.md.)
 */
async function quiescentProblems(uvm: UtilityVm, where: string): Promise<string[]> {
  const problems: string[] = [];
  const described = uvm.describe();
  if (described.length > 0) problems.push(`${where}: describe() holds ${described.map((r) => `${r.kind} ${r.key} ${r.state} refs=${r.refCount}`).join('; ')}`);
  if (uvm.containers().length > 0) problems.push(`${where}: containers() holds ${uvm.containers().map((c) => c.containerId).join(', ')}`);
  const hcs = new ComputeCoreHcs();
  const system = await hcs.openComputeSystem(uvm.id);
  try {
    const state = await readSimulatorState(system);
    if (state.HotAdded !== 0) problems.push(`${where}: the simulator reports HotAdded ${state.HotAdded}`);
    const guest = Object.entries(state.Guest).filter(([, list]) => list.length > 0);
    if (guest.length > 0) problems.push(`${where}: the guest still has ${guest.map(([k, l]) => `${k}×${l.length}`).join(', ')}`);
  } finally {
    system.close();
  }
  return problems;
}

/** Problems of a journal once everything was released: any lease or container record left. */
async function journalProblems(file: string, what: string): Promise<string[]> {
  const doc = await readJournalFile(file);
  if (!doc) return [`${what}: journal ${file} missing`];
  return doc.records.length > 0 || doc.containers.length > 0
    ? [`${what}: journal holds ${doc.records.length} lease records and ${doc.containers.length} containers after every release`]
    : [];
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const t0 = performance.now();
  const log = options.log ?? ((): void => undefined);
  const rand = prng(options.seed);
  const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  const workers = options.workers ?? 6;
  const problems: string[] = [];
  const counts: SoakResult['counts'] = {
    allocated: 0,
    aborted: 0,
    failedAllocations: 0,
    failedReleases: 0,
    hotAdds: 0,
    hotRemoves: 0,
    faultBatches: 0,
    uvms: 0,
    journaledUvms: 0,
    failedStarts: 0,
  };
  const files = layout(options.root, int);
  const journals = path.join(options.root, 'journals');
  mkdirSync(journals, { recursive: true });
  const hcs = new ComputeCoreHcs();
  const orchestrator = createUvmOrchestrator({ guestDelivery: testGuestDelivery, hcs, logger: createLogger({ level: 'silent' }) });
  const prefix = `soak-${process.pid}-${options.seed}`;
  // Every non-aborted call shares one long-lived signal, as a shim passes its own: the library
  // must remove each listener it adds.
  const shared = new AbortController();
  // Each call in flight listens to it (and removes its listener when done): more than Node's
  // default warning threshold of 10 at once is normal here.
  setMaxListeners(0, shared.signal);

  // ------------------------------------------------------------------ one container
  let faultsArmed = false;
  const retryReleases: ContainerResources[] = [];
  /** A sample of released containers, to check that nothing retains them. */
  const released: WeakRef<ContainerResources>[] = [];

  const spec = (id: string, scratch: string): OciSpec => {
    const picked = new Set<number>();
    const want = int(1, 4);
    while (picked.size < want) picked.add(int(0, files.layers.length - 1));
    const mounts: OciMount[] = [{ destination: '/proc', type: 'proc', source: 'proc' }];
    if (rand() < 0.4) {
      const d = files.dataDirs[int(0, files.dataDirs.length - 1)]!;
      mounts.push({ destination: '/data', type: 'bind', source: d.dir, options: ['rbind', d.ro ? 'ro' : 'rw'] });
    }
    if (rand() < 0.2) mounts.push({ destination: '/etc/app.conf', type: 'bind', source: files.config, options: ['rbind', 'ro'] });
    if (rand() < 0.15) mounts.push({ destination: '/cache', type: 'virtual-disk', source: files.disks[int(0, files.disks.length - 1)]!, options: ['ro'] });
    return { ociVersion: '1.2.0', root: { path: 'rootfs' }, mounts, windows: { layerFolders: [...[...picked].map((i) => files.layers[i]!), scratch] } };
  };

  const expected = (err: unknown, aborting: boolean): boolean => {
    const code = codeOf(err);
    if (aborting && code === 'ABORTED') return true;
    // TEARDOWN_FAILED: the key's earlier teardown failed and is retried at the batch's end.
    return faultsArmed && (code === 'HCS_ERROR' || code === 'TEARDOWN_FAILED');
  };

  async function oneContainer(uvm: UtilityVm, i: number): Promise<void> {
    const id = `c${i}`;
    const scratch = path.join(options.root, 'scratch', id);
    sparseFile(path.join(scratch, 'sandbox.vhdx'), 1024 * MiB);
    const aborting = rand() < 0.06;
    const controller = aborting ? new AbortController() : undefined;
    if (controller) {
      const after = int(0, 12);
      void (async () => {
        for (let k = 0; k < after; k++) await turn();
        controller.abort(new Error('soak abort'));
      })();
    }
    let resources: ContainerResources;
    try {
      resources = (await uvm.allocateContainer(spec(id, scratch), { containerId: id, signal: (controller ?? shared).signal })).resources;
    } catch (err) {
      if (!expected(err, aborting)) problems.push(`allocate ${id}: ${codeOf(err)} ${String(err)}`);
      else if (codeOf(err) === 'ABORTED') counts.aborted++;
      else counts.failedAllocations++;
      return;
    }
    counts.allocated++;
    if (rand() < 0.3) {
      const d = files.dataDirs[int(0, files.dataDirs.length - 1)]!;
      try {
        await resources.addMount({ destination: '/hot', type: 'bind', source: d.dir, options: ['rbind', d.ro ? 'ro' : 'rw'] }, { signal: shared.signal });
        counts.hotAdds++;
        if (rand() < 0.6) {
          await resources.removeMount('/hot');
          counts.hotRemoves++;
        }
      } catch (err) {
        // A failed hot add holds nothing; a failed hot remove is retried by the release.
        if (!expected(err, false)) problems.push(`hot add/remove ${id}: ${codeOf(err)} ${String(err)}`);
      }
    }
    try {
      await resources.release();
    } catch (err) {
      if (!expected(err, false) && codeOf(err) !== 'RELEASE_FAILED') problems.push(`release ${id}: ${codeOf(err)} ${String(err)}`);
      counts.failedReleases++;
      retryReleases.push(resources);
      return;
    }
    if (i % 50 === 0) released.push(new WeakRef(resources));
    rmSync(scratch, { recursive: true, force: true });
  }

  /** Clears the faults and retries what failed; then the UVM must be empty. */
  async function settle(uvm: UtilityVm, where: string): Promise<void> {
    configureSimulator({ clearFaults: true });
    faultsArmed = false;
    for (const r of retryReleases.splice(0)) {
      try {
        await r.release();
        rmSync(path.join(options.root, 'scratch', r.containerId), { recursive: true, force: true });
      } catch (err) {
        problems.push(`${where}: retrying the release of ${r.containerId}: ${codeOf(err)} ${String(err)}`);
      }
    }
    await uvm.retryFailedTeardowns().catch((err: unknown) => problems.push(`${where}: retryFailedTeardowns: ${codeOf(err)} ${String(err)}`));
    problems.push(...(await quiescentProblems(uvm, where)));
  }

  async function containerPhase(uvm: UtilityVm, total: number, first: number): Promise<void> {
    const batch = 100;
    for (let b = 0; b * batch < total; b++) {
      const lo = b * batch;
      const hi = Math.min(total, lo + batch);
      if (rand() < 0.5) {
        // ~0.5–1% of the batch's modify calls fail (plain, or in the guest half only).
        const faults: SimulatorFault[] = [];
        for (let k = 0; k < 3; k++) faults.push({ fn: 'HcsModifyComputeSystem', nth: int(1, 600), hr: E_FAIL });
        faults.push({ fn: 'HcsModifyComputeSystem', nth: int(1, 600), guestOnly: true, hr: E_FAIL });
        configureSimulator({ clearFaults: true, faults });
        faultsArmed = true;
        counts.faultBatches++;
      }
      let next = lo;
      await Promise.all(
        Array.from({ length: workers }, async () => {
          while (next < hi) await oneContainer(uvm, first + next++);
        }),
      );
      await settle(uvm, `containers ${first + lo}..${first + hi - 1}`);
      if (hi % 1000 === 0 || hi === total) log(`containers: ${hi}/${total} (${Math.round(performance.now() - t0)} ms)`);
    }
  }

  const containerUvmOptions = { os: 'linux' as const, scsiControllers: 2, vpmem: { count: 4, maxSizeBytes: 64 * MiB } };

  // ------------------------------------------------------------------ one UVM of the sequence
  async function oneUvm(u: number): Promise<void> {
    const id = `${prefix}-u${u}`;
    const journal = u % 3 === 0 ? { path: path.join(journals, `${id}.journal`) } : undefined;
    const uvm = await orchestrator.createUtilityVm({ id, os: 'linux', vpmem: { count: 2, maxSizeBytes: 64 * MiB }, ...(journal ? { journal } : {}) });
    counts.uvms++;
    if (journal) counts.journaledUvms++;
    try {
      const failStart = u % 10 === 5;
      if (failStart) configureSimulator({ clearFaults: true, faults: [{ fn: 'HcsStartComputeSystem', nth: 1, hr: E_FAIL }] });
      try {
        await uvm.start();
      } catch (err) {
        if (!failStart || codeOf(err) !== 'HCS_ERROR') problems.push(`start ${id}: ${codeOf(err)} ${String(err)}`);
        counts.failedStarts++;
        return;
      } finally {
        if (failStart) configureSimulator({ clearFaults: true });
      }
      if (u % 4 === 0) {
        const scratch = path.join(options.root, 'scratch', id);
        sparseFile(path.join(scratch, 'sandbox.vhdx'), 1024 * MiB);
        const { resources } = await uvm.allocateContainer(spec('c', scratch), { containerId: 'c', signal: shared.signal });
        await resources.release();
        rmSync(scratch, { recursive: true, force: true });
      }
      problems.push(...(await quiescentProblems(uvm, id)));
      if (journal) problems.push(...(await journalProblems(journal.path, id)));
    } finally {
      await uvm.terminate().catch((err: unknown) => problems.push(`terminate ${id}: ${codeOf(err)} ${String(err)}`));
      await uvm.close();
    }
  }

  // ------------------------------------------------------------------ the run
  configureSimulator({ latencyMs: 0, jitterMs: 0, latency: {}, concurrency: 0, clearFaults: true, trace: null, seed: options.seed });
  // Warm-up (lazy modules, JIT, the simulator's and libuv's thread pools) before the baseline.
  {
    const uvm = await orchestrator.createUtilityVm({ ...containerUvmOptions, id: `${prefix}-warmup` });
    try {
      await uvm.start();
      await containerPhase(uvm, Math.min(Math.ceil(options.containers / 4), 200), -100_000);
    } finally {
      await uvm.terminate().catch(() => undefined);
      await uvm.close();
    }
    for (let u = 0; u < Math.min(options.uvms, 5); u++) await oneUvm(-1 - u);
    Object.assign(counts, { allocated: 0, aborted: 0, failedAllocations: 0, failedReleases: 0, hotAdds: 0, hotRemoves: 0, faultBatches: 0, uvms: 0, journaledUvms: 0, failedStarts: 0 });
    released.length = 0;
  }
  const start = await probe();
  log(`start: ${JSON.stringify(start)}`);

  // The pod's UVM keeps a recovery journal: it too must not grow with the containers it ran.
  const podJournal = path.join(journals, 'pod.journal');
  const uvm = await orchestrator.createUtilityVm({ ...containerUvmOptions, id: `${prefix}-pod`, journal: { path: podJournal } });
  try {
    await uvm.start();
    await containerPhase(uvm, options.containers, 0);
    problems.push(...(await journalProblems(podJournal, 'the pod')));
  } finally {
    configureSimulator({ clearFaults: true });
    await uvm.terminate().catch((err: unknown) => problems.push(`terminate the pod UVM: ${codeOf(err)} ${String(err)}`));
    await uvm.close();
  }
  await forceGc();
  const retained = released.filter((r) => r.deref() !== undefined).length;
  if (retained > 0) problems.push(`${retained} of ${released.length} released containers sampled are still reachable after a forced GC`);
  const afterContainers = await probe();
  log(`after ${options.containers} containers: ${JSON.stringify(afterContainers)}`);

  for (let u = 0; u < options.uvms; u++) {
    await oneUvm(u);
    if ((u + 1) % 100 === 0) log(`uvms: ${u + 1}/${options.uvms} (${Math.round(performance.now() - t0)} ms)`);
  }

  const live = (await hcs.enumerateComputeSystems({})).filter((s) => s.Id.startsWith(prefix));
  if (live.length > 0) problems.push(`compute systems left in the simulator: ${live.map((s) => s.Id).join(', ')}`);
  const leftJournals = readdirSync(journals);
  if (leftJournals.length > 0) problems.push(`journal files left: ${leftJournals.join(', ')}`);
  const listeners = getEventListeners(shared.signal, 'abort').length;
  if (listeners > 0) problems.push(`${listeners} abort listeners left on the shim's shared signal`);
  const end = await probe();
  log(`end: ${JSON.stringify(end)}`);
  // Compared with the start, not with 0: in a mocha run, an earlier test may have left something
  // that settles on its own clock (its own leak check reports it).
  if (end.pendingPromises > start.pendingPromises) {
    problems.push(`library promises pending: ${end.pendingPromises} (start ${start.pendingPromises}): ${JSON.stringify(pendingPromises.byKind())}`);
  }
  if (end.pendingOperations > start.pendingOperations) problems.push(`HCS operations not closed: ${end.pendingOperations} (start ${start.pendingOperations})`);
  if (end.processListeners > start.processListeners) problems.push(`process listeners: ${end.processListeners} (start ${start.processListeners})`);
  return { start, afterContainers, end, counts, durationMs: performance.now() - t0, problems };
}

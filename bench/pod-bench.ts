// bench/pod: a pod of N containers × K layers (S shared by all) + B bind mounts each, started and
// stopped on the simulator with L ms latency per HCS call and HCS-side concurrency C, through the
// real FFI path. Compares HCS calls with the minimum for the pod, and wall times with the
// critical-path lower bounds; then runs the same pod with the library fully serialized (one HCS
// operation at a time) as the baseline.
//
// Env: POD_CONTAINERS (50), POD_LAYERS (10), POD_SHARED (8), POD_BINDS (2), POD_LATENCY_MS (5), POD_WARMUP (15),
// POD_HCS_CONCURRENCY (8), POD_SKIP_SERIAL=1 to skip the baseline, POD_SKIP_C64=1 to skip the run
// at HCS concurrency 64 (line `pod_c64:`); BENCH_QUICK=1 skips the baseline. (The same pod with a
// recovery journal: bench/journal-bench.ts.)
//
// Measurement: POD_WARMUP warm-up pods at C = 64 and one at C (not reported: cold JIT and caches;
// see WARMUP_PODS), then POD_ROUNDS rounds (3),
// each running the `pod:` pod, the `pod_c64:` pod and the `pod_hcsshim:` pod one after the other
// (interleaved, so a change of machine load hits all three alike); every line prints medians, and
// `pod_rounds:` the rounds themselves. Main-thread CPU per phase (`*_cpu_ms`) is read from
// /proc/self/task/<pid>/schedstat (Linux; `n/a` elsewhere): time on CPU, whatever the load. Each
// round starts with a full garbage collection (rounds are independent: an hcsshim round's garbage
// is not collected in the middle of the next round's start), then runs its pod once untimed
// ("re-warm": a full collection throws away optimized code whose embedded objects died, and the
// first run after it is V8 recompiling; `pod_c64_after_gc:` prints those untimed runs), then the
// measured run.
//
// Line `pod_hcsshim:` (POD_SKIP_HCSSHIM=1 skips it): the same pod and latency with our managers
// under hcsshim's locking discipline, in rounds interleaved with our own (medians): one mutex per
// UVM held across each container's whole release (every
// detach of the UVM waits for the one before), and container allocations one at a time. The
// library has no per-layer entry point, so "layers one by one" is modelled as whole container
// allocations serialized (within one allocation our layers still attach concurrently).
import { mkdtempSync, mkdirSync, openSync, closeSync, ftruncateSync, rmSync, existsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createUvmOrchestrator } from '../src/di/uvm-orchestrator.js';
import { ComputeCoreHcs } from '../src/hcs/computecore-hcs.js';
import { configureSimulator, readSimulatorState, simulatorStats } from '../src/hcs/simulator-controls.js';
import { allocateContainer } from '../src/containers/allocate-container.js';
import type { ContainerResources } from '../src/containers/container-resources.js';
import type { OciSpec } from '../src/oci/oci-spec.js';
import type { ResourceInfo } from '../src/devices/device-types.js';
import { mainThreadCpuNs, median } from './stats.js';

const env = (name: string, def: number): number => (process.env[name] ? Number(process.env[name]) : def);
const N = env('POD_CONTAINERS', 50);
const K = env('POD_LAYERS', 10);
const S = env('POD_SHARED', 8);
const B = env('POD_BINDS', 2);
const L = env('POD_LATENCY_MS', 5);
const C = env('POD_HCS_CONCURRENCY', 8);

/**
 * The binding's `maxConcurrentOperations` in the concurrent runs. The pod's UVM may use all of it
 * but the slots kept for terminate / shut down (max / 16, see `bindingSlots`): 128 calls at once,
 * twice HCS's concurrency in the `pod_c64` runs. A binding slot is held from the call until the
 * main thread has handled its completion, so with exactly HCS's 64 every moment the main thread is
 * behind leaves an HCS slot idle; with 128 the next calls already wait in HCS (30 in-process pairs,
 * bench mode: start 44.6 → 42.0 ms, stop 40.0 → 37.0 ms; docs/performance.md, "Session 13").
 */
export const DRIVER_SLOTS = 136;

/** The binding's options for `maxConcurrentOperations`: the pod's UVM gets every slot but the teardown reserve. */
function bindingSlots(maxConcurrentOperations: number): { maxConcurrentOperations: number; reservedForTeardown: number; perSystemOperations: number } {
  const reservedForTeardown = Math.floor(maxConcurrentOperations / 16);
  return { maxConcurrentOperations, reservedForTeardown, perSystemOperations: maxConcurrentOperations - reservedForTeardown };
}

/**
 * Pods run (at HCS concurrency 64, ~0.1 s each) before the measured rounds. With `--trace-opt`,
 * a process running C = 64 pods one after another (session 8, no forced GC) had TurboFan compile
 * 13–19 functions during each start in its first pods, 8 in the 6th, 4 in the 11th and 1–4 from
 * the 16th on: until then the start runs much of the library in unoptimized code and V8's
 * background threads compile during it. A shim runs pods for hours; the bench measures that.
 */
const WARMUP_PODS = 15;

function sparse(path: string, bytes: number): void {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, bytes);
  closeSync(fd);
}

/** Lays out the pod on disk and returns one OCI spec per container. */
export function makePod(root: string): { id: string; spec: OciSpec }[] {
  const layer = (name: string): string => {
    const dir = join(root, 'layers', name);
    if (!existsSync(dir)) {
      mkdirSync(dir, { recursive: true });
      sparse(join(dir, 'layer.vhd'), 1 << 20);
    }
    return dir;
  };
  const shared = Array.from({ length: S }, (_, i) => layer(`shared-${i}`));
  return Array.from({ length: N }, (_, c) => {
    const id = `c${c}`;
    const own = Array.from({ length: K - S }, (_, i) => layer(`${id}-own-${i}`));
    const scratch = join(root, 'scratch', id);
    mkdirSync(scratch, { recursive: true });
    sparse(join(scratch, 'sandbox.vhdx'), 1 << 30);
    const mounts = Array.from({ length: B }, (_, b) => {
      const src = join(root, 'binds', id, `b${b}`);
      mkdirSync(src, { recursive: true });
      return { destination: `/data/b${b}`, type: 'bind', source: src, options: ['rbind', 'ro'] };
    });
    // moby order: top-most first … base, then the scratch folder.
    const spec: OciSpec = { ociVersion: '1.1.0', root: { path: 'rootfs' }, mounts, windows: { layerFolders: [...own, ...shared.slice().reverse(), scratch] } } as OciSpec;
    return { id, spec };
  });
}

/** Modify calls a phase cannot do without: every live resource added (start) or removed (stop) once. */
function minimumCalls(live: ResourceInfo[], containers: number): { start: number; stop: number } {
  let start = containers; // CombinedLayers Add per container
  let stop = containers; // CombinedLayers Remove per container
  for (const r of live) {
    if (r.kind === 'scsi-attachment') {
      start += 1;
      stop += 2; // guest unplug + host remove (LCOW)
    } else if (r.kind === 'vpmem-device' && r.refCount === 0) {
      // an implicit multi-mapping device record: no call of its own
    } else {
      start += 1;
      stop += 1;
    }
  }
  return { start, stop };
}

/**
 * The longest chain of calls that must follow each other in one container (critical path):
 * start: scratch attach → scratch mount → CombinedLayers Add (a SCSI layer is attach → mount too);
 * stop: CombinedLayers Remove → scratch unmount → unplug → host remove.
 */
const CRITICAL_CHAIN = { start: 3, stop: 4 };

/**
 * HcsModifyComputeSystem calls the simulator has received since it was loaded. Counted by the
 * simulator itself (SimulatorStats.Calls), not from a trace file: a trace costs a JSON line and a
 * write(2) per call on the simulator's threads, inside the timed window.
 */
function modifyCalls(): number {
  return simulatorStats().Calls.HcsModifyComputeSystem ?? 0;
}

export interface RunResult {
  calls: number;
  min: number;
  startMs: number;
  stopMs: number;
  startLbMs: number;
  stopLbMs: number;
  startCalls: number;
  stopCalls: number;
  /** Main-thread CPU time of each phase (ms), undefined where /proc is not available. */
  startCpuMs: number | undefined;
  stopCpuMs: number | undefined;
  /** With `rewarm`: the untimed run right after the round's full garbage collection. */
  afterGc?: RunResult;
}

/** A full garbage collection, between rounds (V8's `gc`, exposed for this process at load time). */
const collectGarbage: () => void = (() => {
  v8.setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
})();

/** CPU time the main thread has used (ms; undefined where /proc is not available). */
function mainThreadCpuMs(): number | undefined {
  const ns = mainThreadCpuNs();
  return ns === undefined ? undefined : ns / 1e6;
}

const cpuSince = (from: number | undefined): number | undefined => {
  const to = mainThreadCpuMs();
  return from === undefined || to === undefined ? undefined : to - from;
};

/** A FIFO async mutex: `run` waits for every earlier holder, then runs `fn` alone. */
class UvmLock {
  #tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

/** `ours`: the library's own concurrency; `hcsshim`: hcsshim's locking around the same calls (see the header). */
export type PodDiscipline = 'ours' | 'hcsshim';

export async function runPod(
  root: string,
  pod: { id: string; spec: OciSpec }[],
  maxConcurrentOperations: number,
  tag: string,
  journal = false,
  hcsConcurrency = C,
  discipline: PodDiscipline = 'ours',
  rewarm = false,
): Promise<RunResult> {
  // A round starts on a collected heap: the garbage of the round before (an hcsshim-discipline
  // round makes seconds' worth) is not collected in the middle of this one.
  collectGarbage();
  // A full collection also throws away optimized code whose embedded objects died with the round
  // before (V8 "weak objects" / "code dependencies" deoptimization: maps of short-lived objects,
  // contexts of the previous UVM), so the run right after it measures TurboFan recompiling much
  // of the library on V8's background threads, which take the second vCPU from the simulator. With
  // `rewarm` the same pod runs once untimed after the collection (its figures are kept as
  // `afterGc`), and the measured run sees the JIT state of a process that has been running pods.
  const afterGc = rewarm ? await podOnce(root, pod, maxConcurrentOperations, `${tag}-after-gc`, journal, hcsConcurrency, discipline) : undefined;
  const measured = await podOnce(root, pod, maxConcurrentOperations, tag, journal, hcsConcurrency, discipline);
  return afterGc ? { ...measured, afterGc } : measured;
}

async function podOnce(
  root: string,
  pod: { id: string; spec: OciSpec }[],
  maxConcurrentOperations: number,
  tag: string,
  journal: boolean,
  hcsConcurrency: number,
  discipline: PodDiscipline,
): Promise<RunResult> {
  configureSimulator({ reset: true, clearFaults: true, latencyMs: 0, jitterMs: 0, concurrency: 0, trace: null });
  // HCS-owned delivery: the minimum and the critical-path bounds count every guest half as an HCS
  // modify costing the simulated latency; over the bridge (the library's default) guest halves are
  // bridge calls the simulator answers without latency, which these bounds do not model.
  const orchestrator = createUvmOrchestrator({ hcs: new ComputeCoreHcs(bindingSlots(maxConcurrentOperations)), guestDelivery: 'hcs' });
  const uvm = await orchestrator.createUtilityVm({
    id: `pod-bench-${tag}`,
    os: 'linux',
    scsiControllers: 4,
    vpmem: { count: 64, multiMapping: true },
    ...(journal ? { journal: { path: join(root, `journal-${tag}`) } } : {}),
  });
  await uvm.start();
  configureSimulator({ latencyMs: L, jitterMs: 0, concurrency: hcsConcurrency });
  const calls0 = modifyCalls();

  // hcsshim discipline: one lock per UVM over every container allocation and every container release.
  const lock = new UvmLock();
  const guarded = <T>(fn: () => Promise<T>): Promise<T> => (discipline === 'hcsshim' ? lock.run(fn) : fn());
  const c0 = mainThreadCpuMs();
  const t0 = performance.now();
  // With a journal, through the UVM (its containers are journaled too).
  const allocated = await Promise.all(
    pod.map(({ id, spec }) => guarded(() => (journal ? uvm.allocateContainer(spec, { containerId: id }) : allocateContainer(uvm, spec, { containerId: id })))),
  );
  const t1 = performance.now();
  const startCpuMs = cpuSince(c0);
  const live = uvm.describe();
  const calls1 = modifyCalls();

  const c2 = mainThreadCpuMs();
  const t2 = performance.now();
  await Promise.all(allocated.map((a) => guarded(() => (a.resources as ContainerResources).release())));
  const t3 = performance.now();
  const stopCpuMs = cpuSince(c2);
  const calls2 = modifyCalls();

  configureSimulator({ latencyMs: 0, concurrency: 0 });
  const observer = await orchestrator.hcs.openComputeSystem(uvm.id);
  const state = await readSimulatorState(observer);
  observer.close();
  if (state.HotAdded !== 0 || uvm.describe().length !== 0) throw new Error(`pod bench leaked: HotAdded=${state.HotAdded}`);
  await uvm.terminate();
  await uvm.close();

  const min = minimumCalls(live, pod.length);
  const chains = CRITICAL_CHAIN;
  return {
    calls: calls2 - calls0,
    min: min.start + min.stop,
    startCalls: calls1 - calls0,
    stopCalls: calls2 - calls1,
    startMs: t1 - t0,
    stopMs: t3 - t2,
    startLbMs: L * Math.max(Math.ceil(min.start / hcsConcurrency), chains.start),
    stopLbMs: L * Math.max(Math.ceil(min.stop / hcsConcurrency), chains.stop),
    startCpuMs,
    stopCpuMs,
  };
}

/** The medians of a set of rounds of one pod (calls: the round furthest from the minimum). */
interface PodMedians extends RunResult {
  rounds: RunResult[];
}

function medians(rounds: RunResult[]): PodMedians {
  const m = (pick: (r: RunResult) => number | undefined): number | undefined => {
    const values = rounds.map(pick).filter((v): v is number => v !== undefined);
    return values.length === rounds.length ? median(values) : undefined;
  };
  const worst = rounds.reduce((a, b) => (b.calls - b.min > a.calls - a.min ? b : a));
  return {
    ...worst,
    startMs: m((r) => r.startMs)!,
    stopMs: m((r) => r.stopMs)!,
    startCpuMs: m((r) => r.startCpuMs),
    stopCpuMs: m((r) => r.stopCpuMs),
    rounds,
  };
}

export async function run(): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'uvm-pod-bench-'));
  try {
    const pod = makePod(root);
    const load0 = loadavg()[0];
    console.log(`pod: ${N} containers × ${K} layers (${S} shared) + ${B} bind mounts each; L=${L} ms, C=${C}; load ${load0.toFixed(1)}`);
    // Warm-up, not reported: the first pods of a process pay for JIT compilation and cold caches.
    // A function called once per container runs 50 times per pod, and V8 optimizes it only after
    // a few pods (see WARMUP_PODS).
    const warmups = env('POD_WARMUP', WARMUP_PODS);
    for (let i = 0; i < warmups; i++) await runPod(root, pod, DRIVER_SLOTS, `warmup-${i}`, false, 64);
    await runPod(root, pod, DRIVER_SLOTS, 'warmup');
    const rounds = env('POD_ROUNDS', 3);
    const ours: RunResult[] = [];
    const wide: RunResult[] = [];
    const hcsshim: RunResult[] = [];
    for (let r = 0; r < rounds; r++) {
      ours.push(await runPod(root, pod, DRIVER_SLOTS, `ours-${r}`, false, C, 'ours', true));
      // The same pod with HCS-side concurrency 64: the library's own cost per call, not HCS, bounds it.
      if (!process.env.POD_SKIP_C64) wide.push(await runPod(root, pod, DRIVER_SLOTS, `c64-${r}`, false, 64, 'ours', true));
      // ours vs hcsshim's locking, in the same rounds.
      if (!process.env.POD_SKIP_HCSSHIM) hcsshim.push(await runPod(root, pod, DRIVER_SLOTS, `hcsshim-${r}`, false, C, 'hcsshim', true));
    }
    const serial = process.env.POD_SKIP_SERIAL || process.env.BENCH_QUICK === '1' ? undefined : await runPod(root, pod, 1, 'serial');
    const load = `load ${load0.toFixed(1)}→${loadavg()[0].toFixed(1)}`;
    const f = (x: number): string => x.toFixed(0);
    const cpu = (x: number | undefined): string => (x === undefined ? 'n/a' : x.toFixed(0));
    const fast = medians(ours);
    console.log(
      `pod: calls=${fast.calls} min=${fast.min} start_ms=${f(fast.startMs)} start_lb_ms=${f(fast.startLbMs)} ` +
        `stop_ms=${f(fast.stopMs)} stop_lb_ms=${f(fast.stopLbMs)} ` +
        `serial_start_ms=${serial ? f(serial.startMs) : 'skipped'} serial_stop_ms=${serial ? f(serial.stopMs) : 'skipped'}`,
    );
    console.log(
      `pod: start calls=${fast.startCalls} ratio=${(fast.startMs / fast.startLbMs).toFixed(3)}; ` +
        `stop calls=${fast.stopCalls} ratio=${(fast.stopMs / fast.stopLbMs).toFixed(3)}` +
        (serial ? `; serial/concurrent start ${(serial.startMs / fast.startMs).toFixed(1)}×, stop ${(serial.stopMs / fast.stopMs).toFixed(1)}×` : '') +
        `; main-thread start_cpu_ms=${cpu(fast.startCpuMs)} stop_cpu_ms=${cpu(fast.stopCpuMs)}; medians of ${rounds} rounds after a warm-up, ${load}`,
    );
    if (hcsshim.length > 0) {
      const h = medians(hcsshim);
      console.log(
        `pod_hcsshim: start_ms=${f(h.startMs)} stop_ms=${f(h.stopMs)} ours/hcsshim-discipline start=${(fast.startMs / h.startMs).toFixed(3)} ` +
          `stop=${(fast.stopMs / h.stopMs).toFixed(3)} (ours start_ms=${f(fast.startMs)} stop_ms=${f(fast.stopMs)}; medians of ${hcsshim.length} interleaved rounds, ` +
          `C=${C}, ${load}; hcsshim discipline = one UVM lock over each container's release and over ` +
          `each whole container allocation: no per-layer entry point)`,
      );
    }
    if (wide.length > 0) {
      const w = medians(wide);
      console.log(
        `pod_c64: calls=${w.calls} min=${w.min} start_ms=${f(w.startMs)} start_lb_ms=${f(w.startLbMs)} ` +
          `stop_ms=${f(w.stopMs)} stop_lb_ms=${f(w.stopLbMs)} start_ratio=${(w.startMs / w.startLbMs).toFixed(2)} ` +
          `stop_ratio=${(w.stopMs / w.stopLbMs).toFixed(2)} start_cpu_ms=${cpu(w.startCpuMs)} stop_cpu_ms=${cpu(w.stopCpuMs)} (targets: start ≤ 1.5, stop ≤ 1.2)`,
      );
      const g = medians(wide.map((r) => r.afterGc).filter((r): r is RunResult => r !== undefined));
      console.log(
        `pod_c64_after_gc: start_ms=${f(g.startMs)} stop_ms=${f(g.stopMs)} start_ratio=${(g.startMs / g.startLbMs).toFixed(2)} ` +
          `stop_ratio=${(g.stopMs / g.stopLbMs).toFixed(2)} start_cpu_ms=${cpu(g.startCpuMs)} stop_cpu_ms=${cpu(g.stopCpuMs)} ` +
          `(the untimed run right after each round's full GC: V8 recompiling what the GC deoptimized; not a target)`,
      );
    }
    const list = (rs: RunResult[], pick: (r: RunResult) => number): string => rs.map((r) => f(pick(r))).join(',');
    console.log(
      `pod_rounds: pod start_ms=${list(ours, (r) => r.startMs)} stop_ms=${list(ours, (r) => r.stopMs)}` +
        (wide.length > 0 ? `; pod_c64 start_ms=${list(wide, (r) => r.startMs)} stop_ms=${list(wide, (r) => r.stopMs)}` : '') +
        (hcsshim.length > 0 ? `; pod_hcsshim start_ms=${list(hcsshim, (r) => r.startMs)} stop_ms=${list(hcsshim, (r) => r.stopMs)}` : ''),
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

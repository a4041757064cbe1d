// `npm run bench ffi`: the cost of one HCS operation through the real FFI path (koffi → simulator
// → completion callback on a simulator thread → HcsGetOperationResult → LocalFree → close), at
// zero simulated latency, one at a time and with 64 in flight — and, interleaved with it in the
// same process, the floor: the same shape of call on a native library that does nothing
// (bench/ffi-floor.ts). Prints
// `ffi: serial_cpu_us=… floor_cpu_us=… ratio=… inflight64_ops=… floor_inflight64_ops=…`
// (CPU time of all threads per round trip; ratio = median of the per-round ratios).
import { loadavg } from 'node:os';
import { ComputeCoreHcs } from '../src/hcs/computecore-hcs.js';
import { toWide } from '../src/hcs/computecore.js';
import type { ModifySettingRequest } from '../src/hcs/schema.js';
import { configureSimulator, resetSimulator } from '../src/hcs/simulator-controls.js';
import { loadFloor } from './ffi-floor.js';
import { mainThreadCpuNs, median, medianOf, table } from './stats.js';

const CONTROLLERS = [
  'df6d0690-79e5-55b6-a5ec-c1e2f77f580a',
  '0110f83b-de10-5172-a266-78bca56bf50a',
  'b5d2d8d4-3a75-51bf-945b-3444dc6b8579',
  '305891a9-b251-5dfe-91a2-c25d9212275b',
];
const TARGET_ROUND_TRIP_US = 30;
const TARGET_RATIO = 1.3;
const TARGET_INFLIGHT = 0.9;
/** The simulator's worker pool size (native/src/scheduler.cpp); the floor gets as many threads. */
const WORKERS = Number(process.env.HCSSIM_WORKER_THREADS ?? 4);
const QUICK = process.env.BENCH_QUICK === '1';

function add(controller: number, lun: number): ModifySettingRequest {
  return {
    ResourcePath: `VirtualMachine/Devices/Scsi/${CONTROLLERS[controller]}/Attachments/${lun}`,
    RequestType: 'Add',
    Settings: { Type: 'VirtualDisk', Path: `C:\\bench\\layers\\${controller}-${lun}\\layer.vhdx` },
  };
}
function remove(controller: number, lun: number): ModifySettingRequest {
  return { ResourcePath: `VirtualMachine/Devices/Scsi/${CONTROLLERS[controller]}/Attachments/${lun}`, RequestType: 'Remove' };
}
// The requests, built once: the line measures the binding (JSON.stringify, UTF-16, driver, FFI),
// not the caller formatting its request objects (the floor gets its document prebuilt too).
const ADD = CONTROLLERS.map((_, c) => Array.from({ length: 16 }, (_, lun) => add(c, lun)));
const REMOVE = CONTROLLERS.map((_, c) => Array.from({ length: 16 }, (_, lun) => remove(c, lun)));

export async function run(): Promise<void> {
  const hcs = new ComputeCoreHcs();
  resetSimulator();
  configureSimulator({ latencyMs: 0, jitterMs: 0, concurrency: 0 });
  const scsi = Object.fromEntries(CONTROLLERS.map((g) => [g, { Attachments: {} }]));
  const id = `ffi-bench-${process.pid}`;
  const system = await hcs.createComputeSystem(id, {
    SchemaVersion: { Major: 2, Minor: 1 },
    VirtualMachine: { Chipset: { Uefi: {} }, Devices: { Scsi: scsi, Plan9: {} } },
  });
  try {
    await system.start();

    // Warm-up: JIT, koffi's call paths, the simulator's worker pool.
    for (let i = 0; i < 300; i++) {
      await system.modify(ADD[0][1]);
      await system.modify(REMOVE[0][1]);
    }

    const floor = loadFloor(WORKERS);
    const floorDoc = toWide(JSON.stringify(add(0, 1)));
    for (let i = 0; i < 600; i++) await floor.roundTrip(floorDoc);

    // 1. Serial: one Add + one Remove = 2 round trips; report per round trip. Wall time and CPU
    //    time of all threads of the process (main thread + native workers), interleaved with the
    //    floor round by round so that both see the same machine load.
    const pairs = QUICK ? 200 : 500;
    const rounds = QUICK ? 5 : 9;
    const serialWall: number[] = [];
    const serialCpu: number[] = [];
    const floorCpu: number[] = [];
    const ratios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const c0 = process.cpuUsage();
      const t = process.hrtime.bigint();
      for (let i = 0; i < pairs; i++) {
        await system.modify(ADD[0][1]);
        await system.modify(REMOVE[0][1]);
      }
      serialWall.push(Number(process.hrtime.bigint() - t) / 1000 / (pairs * 2));
      const c1 = process.cpuUsage(c0);
      const simUs = (c1.user + c1.system) / (pairs * 2);
      const f0 = process.cpuUsage();
      for (let i = 0; i < pairs * 2; i++) await floor.roundTrip(floorDoc);
      const f1 = process.cpuUsage(f0);
      const floorUs = (f1.user + f1.system) / (pairs * 2);
      serialCpu.push(simUs);
      floorCpu.push(floorUs);
      ratios.push(simUs / floorUs);
    }
    const serialUs = median(serialWall);
    const cpuUs = median(serialCpu);

    // Per-call latency distribution of single round trips (p50 / p90).
    const singles: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const t = process.hrtime.bigint();
      await system.modify(i % 2 === 0 ? ADD[0][2] : REMOVE[0][2]);
      singles.push(Number(process.hrtime.bigint() - t) / 1000);
    }
    singles.sort((a, b) => a - b);

    // 2. 64 in flight: 64 workers on distinct LUNs, each Add/Remove in a loop; the floor with 64
    //    calls in flight the same way, interleaved.
    const workers = 64;
    const perWorker = QUICK ? 15 : 40; // pairs
    const inflight: number[] = [];
    const floorInflight: number[] = [];
    const mainUs: number[] = [];
    const floorMainUs: number[] = [];
    const ops = workers * perWorker * 2;
    for (let r = 0; r < (QUICK ? 3 : 5); r++) {
      let m = mainThreadCpuNs();
      let t = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: workers }, async (_, w) => {
          const c = w % 4;
          const lun = Math.floor(w / 4);
          for (let i = 0; i < perWorker; i++) {
            await system.modify(ADD[c][lun]);
            await system.modify(REMOVE[c][lun]);
          }
        }),
      );
      inflight.push(ops / (Number(process.hrtime.bigint() - t) / 1e9));
      if (m !== undefined) mainUs.push((mainThreadCpuNs()! - m) / 1000 / ops);
      m = mainThreadCpuNs();
      t = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: workers }, async () => {
          for (let i = 0; i < perWorker * 2; i++) await floor.roundTrip(floorDoc);
        }),
      );
      floorInflight.push(ops / (Number(process.hrtime.bigint() - t) / 1e9));
      if (m !== undefined) floorMainUs.push((mainThreadCpuNs()! - m) / 1000 / ops);
    }
    const opsPerSec = median(inflight);
    const floorOps = median(floorInflight);

    // 3. For scale: a synchronous FFI call with a UTF-16 argument and an _Out_ struct (NameToGuid),
    //    which has no operation and no cross-thread callback.
    const syncUs = await medianOf(5, () => {
      const n = 20000;
      const t = process.hrtime.bigint();
      for (let i = 0; i < n; i++) hcs.nameToGuid('C:\\bench\\layers\\layer');
      return Number(process.hrtime.bigint() - t) / 1000 / n;
    });

    console.log(
      table(
        ['measure', 'value', 'unit'],
        [
          [`modify round trip, serial (median of ${rounds} × ${pairs * 2})`, serialUs.toFixed(1), 'µs'],
          ['CPU time per serial round trip (all threads)', cpuUs.toFixed(1), 'µs'],
          ['floor: CPU time per serial round trip', median(floorCpu).toFixed(1), 'µs'],
          ['single round trip p50', median(singles).toFixed(1), 'µs'],
          ['single round trip p90', singles[Math.floor(singles.length * 0.9)].toFixed(1), 'µs'],
          [`modify with 64 in flight (median of ${inflight.length})`, Math.round(opsPerSec), 'ops/s'],
          ['floor: 64 in flight', Math.round(floorOps), 'ops/s'],
          ...(mainUs.length > 0
            ? [
                ['main-thread CPU per operation, 64 in flight', median(mainUs).toFixed(1), 'µs'],
                ['floor: main-thread CPU per operation, 64 in flight', median(floorMainUs).toFixed(1), 'µs'],
              ]
            : []),
          ['NameToGuid sync FFI call', syncUs.toFixed(2), 'µs'],
        ],
      ),
    );
    const ratio = median(ratios);
    const inflightRatio = opsPerSec / floorOps;
    console.log(
      `ffi: serial_cpu_us=${cpuUs.toFixed(1)} floor_cpu_us=${median(floorCpu).toFixed(1)} ratio=${ratio.toFixed(2)} ` +
        `inflight64_ops=${Math.round(opsPerSec)} floor_inflight64_ops=${Math.round(floorOps)} workers=${WORKERS} load=${loadavg()[0].toFixed(1)}`,
    );
    const verdict = (ok: boolean): string => (ok ? 'met' : 'NOT met');
    console.log(
      `targets: ratio ≤ ${TARGET_RATIO} ${verdict(ratio <= TARGET_RATIO)}; 64 in flight ≥ ${TARGET_INFLIGHT}× floor ` +
        `${verdict(inflightRatio >= TARGET_INFLIGHT)} (${inflightRatio.toFixed(2)}×); serial wall ≤ ${TARGET_ROUND_TRIP_US} µs ${verdict(serialUs <= TARGET_ROUND_TRIP_US)}`,
    );
    await system.terminate();
  } finally {
    system.close();
  }
}

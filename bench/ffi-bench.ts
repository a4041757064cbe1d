// `npm run bench ffi`: the cost of one HCS operation through the real FFI path (koffi → simulator
// → completion callback on a simulator thread → HcsGetOperationResult → LocalFree → close), at
// zero simulated latency, one at a time and with 64 in flight.
import { ComputeCoreHcs } from '../src/hcs/computecore-hcs.js';
import type { ModifySettingRequest } from '../src/hcs/schema.js';
import { configureSimulator, resetSimulator } from '../src/hcs/simulator-controls.js';
import { median, medianOf, table } from './stats.js';

const CONTROLLERS = [
  'df6d0690-79e5-55b6-a5ec-c1e2f77f580a',
  '0110f83b-de10-5172-a266-78bca56bf50a',
  'b5d2d8d4-3a75-51bf-945b-3444dc6b8579',
  '305891a9-b251-5dfe-91a2-c25d9212275b',
];
const TARGET_ROUND_TRIP_US = 30;

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
      await system.modify(add(0, 1));
      await system.modify(remove(0, 1));
    }

    // 1. Serial: one Add + one Remove = 2 round trips; report per round trip.
    const pairs = 500;
    const serialUs = await medianOf(9, async () => {
      const t = process.hrtime.bigint();
      for (let i = 0; i < pairs; i++) {
        await system.modify(add(0, 1));
        await system.modify(remove(0, 1));
      }
      return Number(process.hrtime.bigint() - t) / 1000 / (pairs * 2);
    });

    // CPU time per round trip, all threads of the process (main thread + simulator workers):
    // less sensitive than wall time to other load on the machine.
    const cpuBefore = process.cpuUsage();
    for (let i = 0; i < pairs; i++) {
      await system.modify(add(0, 1));
      await system.modify(remove(0, 1));
    }
    const cpu = process.cpuUsage(cpuBefore);
    const cpuUs = (cpu.user + cpu.system) / (pairs * 2);

    // Per-call latency distribution of single round trips (p50 / p90).
    const singles: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const t = process.hrtime.bigint();
      await system.modify(i % 2 === 0 ? add(0, 2) : remove(0, 2));
      singles.push(Number(process.hrtime.bigint() - t) / 1000);
    }
    singles.sort((a, b) => a - b);

    // 2. 64 in flight: 64 workers on distinct LUNs, each Add/Remove in a loop.
    const workers = 64;
    const perWorker = 40; // pairs
    const opsPerSec = await medianOf(5, async () => {
      const t = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: workers }, async (_, w) => {
          const c = w % 4;
          const lun = Math.floor(w / 4);
          for (let i = 0; i < perWorker; i++) {
            await system.modify(add(c, lun));
            await system.modify(remove(c, lun));
          }
        }),
      );
      const seconds = Number(process.hrtime.bigint() - t) / 1e9;
      return (workers * perWorker * 2) / seconds;
    });

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
          ['modify round trip, serial (median of 9 × 1000)', serialUs.toFixed(1), 'µs'],
          ['CPU time per serial round trip (all threads)', cpuUs.toFixed(1), 'µs'],
          ['single round trip p50', median(singles).toFixed(1), 'µs'],
          ['single round trip p90', singles[Math.floor(singles.length * 0.9)].toFixed(1), 'µs'],
          ['modify with 64 in flight (median of 5)', Math.round(opsPerSec), 'ops/s'],
          ['NameToGuid sync FFI call', syncUs.toFixed(2), 'µs'],
        ],
      ),
    );
    console.log(
      `target ≤ ${TARGET_ROUND_TRIP_US} µs per serial round trip: ${serialUs <= TARGET_ROUND_TRIP_US ? 'met' : 'NOT met'} ` +
        `(machine load average ${(await import('node:os')).loadavg()[0].toFixed(2)})`,
    );
    await system.terminate();
  } finally {
    system.close();
  }
}

// `npm run bench scale`: does the simulator's cost per operation stay flat as a UVM fills up? One
// Plan9 share (host Add with its guest MappedDirectory in one modify, then guest Remove, host
// Remove) with 50 and with 5,000 other shares attached and mounted; one VPMEM multi-mapping
// (mapping Add with its guest VPMemDevice, guest Remove, mapping Remove) with 1 and with 8,192
// other mappings. Through the real FFI path at zero latency; CPU µs (all threads) per modify,
// serial, median of rounds (the small and the large VM measured in alternating rounds) (CPU time: wall time on a loaded machine mostly measures the others). Prints `scale: plan9_50_us=… plan9_5000_us=… vpmem_1_us=… vpmem_8192_us=…`; target: the
// large case within 1.5× of the small one.
import { loadavg } from 'node:os';
import { ComputeCoreHcs } from '../src/hcs/computecore-hcs.js';
import type { HcsSystem } from '../src/hcs/hcs-api.js';
import type { ModifySettingRequest } from '../src/hcs/schema.js';
import { configureSimulator, resetSimulator } from '../src/hcs/simulator-controls.js';
import { median } from './stats.js';

const QUICK = process.env.BENCH_QUICK === '1';
const TARGET = 1.5;
const PLAN9_PORT = 564;
const MIB = 1 << 20;
const MAPPINGS_PER_DEVICE = 130; // 64 devices hold the 8,192 + 1 mappings

const plan9 = {
  add: (i: number): ModifySettingRequest => ({
    ResourcePath: 'VirtualMachine/Devices/Plan9/Shares',
    RequestType: 'Add',
    Settings: { Name: `s${i}`, AccessName: `s${i}`, Path: `/srv/bench/share-${i}`, Port: PLAN9_PORT, Flags: 4 },
    GuestRequest: { RequestType: 'Add', ResourceType: 'MappedDirectory', Settings: { MountPath: `/run/mounts/m${i}`, ShareName: `s${i}`, Port: PLAN9_PORT } },
  }),
  removeGuest: (i: number): ModifySettingRequest => ({
    GuestRequest: { RequestType: 'Remove', ResourceType: 'MappedDirectory', Settings: { MountPath: `/run/mounts/m${i}`, ShareName: `s${i}`, Port: PLAN9_PORT } },
  }),
  removeHost: (i: number): ModifySettingRequest => ({
    ResourcePath: 'VirtualMachine/Devices/Plan9/Shares',
    RequestType: 'Remove',
    Settings: { Name: `s${i}`, AccessName: `s${i}`, Port: PLAN9_PORT },
  }),
};

function mapping(i: number): { device: number; offset: number; guest: Record<string, unknown> } {
  const device = Math.floor(i / MAPPINGS_PER_DEVICE);
  const offset = (i % MAPPINGS_PER_DEVICE) * MIB;
  return {
    device,
    offset,
    guest: { DeviceNumber: device, MountPath: `/run/layers/p${device}-${offset}-${MIB}`, MappingInfo: { DeviceOffsetInBytes: offset, DeviceSizeInBytes: MIB } },
  };
}
const vpmem = {
  add: (i: number): ModifySettingRequest => {
    const m = mapping(i);
    return {
      ResourcePath: `VirtualMachine/Devices/VirtualPMem/Devices/${m.device}/Mappings/${m.offset}`,
      RequestType: 'Add',
      Settings: { HostPath: `/srv/bench/layer-${i}.vhd`, ImageFormat: 'Vhd1' },
      GuestRequest: { RequestType: 'Add', ResourceType: 'VPMemDevice', Settings: m.guest },
    };
  },
  removeGuest: (i: number): ModifySettingRequest => ({ GuestRequest: { RequestType: 'Remove', ResourceType: 'VPMemDevice', Settings: mapping(i).guest } }),
  removeHost: (i: number): ModifySettingRequest => {
    const m = mapping(i);
    return { ResourcePath: `VirtualMachine/Devices/VirtualPMem/Devices/${m.device}/Mappings/${m.offset}`, RequestType: 'Remove' };
  },
};
type Kind = typeof plan9;

/** A running VM holding `others` resources of `kind` (filled in parallel, 64 at a time). */
async function filled(hcs: ComputeCoreHcs, name: string, kind: Kind, others: number): Promise<HcsSystem> {
  const system: HcsSystem = await hcs.createComputeSystem(`scale-${name}-${others}-${process.pid}`, {
    SchemaVersion: { Major: 2, Minor: 1 },
    // GuestConnection: HCS owns the guest connection, so a modify may carry its GuestRequest.
    VirtualMachine: {
      Chipset: { Uefi: {} },
      GuestConnection: { UseVsock: true, UseConnectedSuspend: true },
      Devices: { Plan9: {}, VirtualPMem: { MaximumCount: 64, MaximumSizeBytes: 4294967296 } },
    },
  });
  try {
    await system.start();
    for (let i = 0; i < others; i += 64) await Promise.all(Array.from({ length: Math.min(64, others - i) }, (_, k) => system.modify(kind.add(i + k))));
    return system;
  } catch (err) {
    system.close();
    throw err;
  }
}

/** CPU µs per modify of one more resource added and removed (3 modifies), `cycles` times, serially. */
async function round(system: HcsSystem, kind: Kind, probe: number, cycles: number): Promise<number> {
  const t = process.cpuUsage();
  for (let c = 0; c < cycles; c++) {
    await system.modify(kind.add(probe));
    await system.modify(kind.removeGuest(probe));
    await system.modify(kind.removeHost(probe));
  }
  const used = process.cpuUsage(t);
  return (used.user + used.system) / (cycles * 3);
}

/**
 * The small and the large case, both VMs filled first, then measured in alternating rounds (so
 * drift — JIT warm-up, GC after a fill, other processes — hits both alike): medians of the rounds.
 */
async function measurePair(hcs: ComputeCoreHcs, name: string, kind: Kind, small: number, large: number): Promise<[number, number]> {
  const systems: HcsSystem[] = [];
  try {
    systems.push(await filled(hcs, name, kind, small));
    systems.push(await filled(hcs, name, kind, large));
    const cycles = QUICK ? 30 : 100;
    const samples: [number[], number[]] = [[], []];
    for (let r = 0; r < (QUICK ? 5 : 9); r++) {
      samples[0].push(await round(systems[0], kind, small, cycles));
      samples[1].push(await round(systems[1], kind, large, cycles));
    }
    for (const system of systems) await system.terminate();
    return [median(samples[0]), median(samples[1])];
  } finally {
    for (const system of systems) system.close();
  }
}

export async function run(): Promise<void> {
  const hcs = new ComputeCoreHcs();
  resetSimulator();
  configureSimulator({ latencyMs: 0, jitterMs: 0, concurrency: 0 });
  await measurePair(hcs, 'warmup', plan9, 10, 20);
  const [p50, p5000] = await measurePair(hcs, 'plan9', plan9, 50, 5000);
  const [v1, v8192] = await measurePair(hcs, 'vpmem', vpmem, 1, 8192);
  console.log(
    `scale: plan9_50_us=${p50.toFixed(1)} plan9_5000_us=${p5000.toFixed(1)} vpmem_1_us=${v1.toFixed(1)} vpmem_8192_us=${v8192.toFixed(1)} load=${loadavg()[0].toFixed(1)}`,
  );
  const verdict = (small: number, large: number): string => `${(large / small).toFixed(2)}× ${large / small <= TARGET ? 'met' : 'NOT met'}`;
  console.log(`targets (large ≤ ${TARGET}× small): plan9 ${verdict(p50, p5000)}; vpmem ${verdict(v1, v8192)}`);
}

import { prng } from '../support/prng.js';
// Helpers of the device-manager integration tests: UtilityVms over the FFI binding and the native
// simulator, and a comparison of the simulator's SimulatorState with `UtilityVm.describe()`.
import { expect } from 'chai';
import { FakeHostFs } from '../../src/core/fake-host-fs.js';
import { createLogger } from '../../src/core/logger.js';
import type { ResourceInfo } from '../../src/devices/device-types.js';
import { SCSI_CONTROLLER_GUIDS } from '../../src/devices/resource-paths.js';
import { createUvmOrchestrator } from '../../src/di/uvm-orchestrator.js';
import { BRIDGE_HEADER_SIZE, requestType } from '../../src/hcs/gcs-bridge-protocol.js';
import type { HcsApi } from '../../src/hcs/hcs-api.js';
import type { HvSocketTransport } from '../../src/hcs/hvsocket.js';
import { UnixHvSocketTransport } from '../../src/hcs/hvsocket-unix.js';
import { configureSimulator, readSimulatorState, type SimulatorState } from '../../src/hcs/simulator-controls.js';
import type { UtilityVm } from '../../src/uvm/utility-vm.js';
import type { UtilityVmOptions } from '../../src/uvm/uvm-options.js';
import { hcs } from './simulator-fixture.js';
import { testGuestDelivery } from '../support/guest-delivery.js';

/** Scale of the random-concurrency tests: the default run does 64 × 200 per manager; UVM_SOAK=1 does 64 × 1000. */
export const SOAK = process.env.UVM_SOAK === '1';
export { prng };

let counter = 0;

/** The FFI binding every integration test shares (simulator-fixture.ts). */
export { hcs };

const modifyCounts = new Map<string, number>();
/** HcsModifyComputeSystem calls made for a UVM so far. */
export function modifyCalls(uvmId: string): number {
  return modifyCounts.get(uvmId) ?? 0;
}

const callHooks = new Map<string, (call: string) => void>();
/**
 * Calls `hook` as each modify, VM-access grant or (bridge mode) guest `ModifySettings` of `uvmId`
 * starts (before it reaches the binding or the bridge), e.g. to abort an operation at a given
 * step; `undefined` removes it. A guest call is reported as `guest <bridge body JSON>`.
 */
export function onHcsCall(uvmId: string, hook: ((call: string) => void) | undefined): void {
  if (hook) callHooks.set(uvmId, hook);
  else callHooks.delete(uvmId);
}

/** UVM id by RuntimeId (the VM id its hvsocket endpoints are bound to), learnt from its properties. */
const uvmByRuntimeId = new Map<string, string>();

/** The binding, counting modify calls per system (a plain decorator; nothing is faked). */
const countingHcs: HcsApi = {
  async createComputeSystem(id, configuration, options) {
    const system = await hcs.createComputeSystem(id, configuration, options);
    const modify = system.modify.bind(system);
    system.modify = (request, opts) => {
      modifyCounts.set(id, modifyCalls(id) + 1);
      callHooks.get(id)?.(`modify ${JSON.stringify(request)}`);
      return modify(request, opts);
    };
    const properties = system.properties.bind(system);
    system.properties = async (query, opts) => {
      const doc = await properties(query, opts);
      const runtimeId = (doc as { RuntimeId?: unknown } | null)?.RuntimeId;
      if (typeof runtimeId === 'string') uvmByRuntimeId.set(runtimeId.toLowerCase(), id);
      return doc;
    };
    return system;
  },
  openComputeSystem: (id) => hcs.openComputeSystem(id),
  enumerateComputeSystems: (query) => hcs.enumerateComputeSystems(query),
  grantVmAccess: (vmId, path) => {
    callHooks.get(vmId)?.(`grant ${path}`);
    return hcs.grantVmAccess(vmId, path);
  },
  revokeVmAccess: (vmId, path) => hcs.revokeVmAccess(vmId, path),
  nameToGuid: (name) => hcs.nameToGuid(name),
};

const MODIFY_SETTINGS = requestType('ModifySettings');

/**
 * The platform's hvsocket transport (a Unix socket the simulator's guest dials), reporting each
 * bridge ModifySettings the library writes to the UVM's call hook (a decorator of the accepted
 * stream's `write`; the bytes are passed on unchanged).
 */
const observedHvSocket: HvSocketTransport = {
  async listen(vmId, serviceId) {
    const listener = await new UnixHvSocketTransport().listen(vmId, serviceId);
    return {
      async accept(options) {
        const stream = await listener.accept(options);
        const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
        stream.write = ((chunk: unknown, ...rest: unknown[]): boolean => {
          if (Buffer.isBuffer(chunk) && chunk.length >= BRIDGE_HEADER_SIZE && chunk.readUInt32LE(0) === MODIFY_SETTINGS) {
            const uvmId = uvmByRuntimeId.get(vmId.toLowerCase());
            if (uvmId !== undefined) callHooks.get(uvmId)?.(`guest ${chunk.subarray(BRIDGE_HEADER_SIZE).toString('utf8')}`);
          }
          return write(chunk, ...rest);
        }) as typeof stream.write;
        return stream;
      },
      close: () => listener.close(),
    };
  },
};
export const hostFs = new FakeHostFs();
const orchestrator = createUvmOrchestrator({ guestDelivery: testGuestDelivery, hcs: countingHcs, hvSocket: observedHvSocket, hostFs, logger: createLogger({ level: 'silent' }) });

/** Creates and starts a UVM with a unique id; `disposeUvms()` terminates and closes them. */
const live: UtilityVm[] = [];
export async function startUvm(options: Omit<UtilityVmOptions, 'id'>): Promise<UtilityVm> {
  const uvm = await orchestrator.createUtilityVm({ ...options, id: `devices-it-${process.pid}-${++counter}` });
  live.push(uvm);
  await uvm.start();
  return uvm;
}

export async function disposeUvms(): Promise<void> {
  configureSimulator({ clearFaults: true, latency: {} });
  for (const uvm of live.splice(0)) {
    await uvm.terminate().catch(() => undefined);
    uvm.close();
  }
}

/** The simulator's state of a UVM (through a second handle). */
export async function simulatorState(uvm: UtilityVm): Promise<SimulatorState> {
  const system = await hcs.openComputeSystem(uvm.id);
  try {
    return await readSimulatorState(system);
  } finally {
    system.close();
  }
}

/** What the simulator holds, as comparable strings. */
export function simulatorResources(state: SimulatorState): string[] {
  const d = state.Devices;
  const g = state.Guest;
  const out: string[] = [];
  for (const [guid, c] of Object.entries(d.Scsi)) {
    const index = SCSI_CONTROLLER_GUIDS.indexOf(guid as (typeof SCSI_CONTROLLER_GUIDS)[number]);
    for (const lun of Object.keys(c.Attachments)) out.push(`scsi ${index}:${lun}`);
  }
  for (const s of d.VirtualSmb.Shares) out.push(`vsmb ${String(s.Name)}`);
  for (const [n, dev] of Object.entries(d.VirtualPMem.Devices)) {
    if (dev.HostPath !== undefined) out.push(`vpmem ${n}`);
    for (const off of Object.keys(dev.Mappings ?? {})) out.push(`vpmem ${n}@${off}`);
  }
  for (const s of d.Plan9.Shares) out.push(`plan9 ${String(s.Name)}`);
  for (const p of d.MappedPipes) out.push(`pipe ${p.Name}`);
  for (const [guid, v] of Object.entries(d.VirtualPci ?? {})) out.push(`vpci ${guid}${v.Guest ? ' (guest)' : ''}`);
  for (const m of g.MappedVirtualDisks) out.push(`guest ${String(m.MountPath ?? m.ContainerPath)}`);
  for (const m of g.VPMemDevices) out.push(`guest ${String(m.MountPath)}`);
  for (const m of g.MappedDirectories) out.push(`guest ${String(m.MountPath ?? m.ContainerPath)}`);
  return out.sort();
}

/** What `describe()` says should be in the simulator, as the same strings. */
export function describedResources(infos: readonly ResourceInfo[]): string[] {
  const out: string[] = [];
  for (const r of infos) {
    switch (r.kind) {
      case 'scsi-attachment':
        out.push(`scsi ${r.slot}`);
        break;
      case 'scsi-mount':
        out.push(`guest ${r.guestPath}`);
        break;
      case 'vsmb-share':
        out.push(`vsmb ${r.slot}`);
        break;
      case 'vsmb-file':
        break;
      case 'vpmem-device':
      case 'vpmem-mapping':
        out.push(`vpmem ${r.slot}`, `guest ${r.guestPath}`);
        break;
      case 'plan9-share':
        out.push(`plan9 ${r.slot}`, `guest ${r.guestPath}`);
        break;
      case 'mapped-pipe':
        out.push(`pipe ${r.hostPath}`);
        break;
      case 'vpci-device':
        out.push(`vpci ${r.slot}${r.guestPath === undefined ? '' : ' (guest)'}`);
        break;
    }
  }
  return out.sort();
}

/** At a quiescent point: every entry is live and the simulator holds exactly what describe() lists. */
export async function expectInSync(uvm: UtilityVm): Promise<void> {
  const infos = uvm.describe();
  expect(infos.filter((r) => r.state !== 'live' && r.state !== 'kept'), 'entries not live (or kept) at a quiescent point').to.deep.equal([]);
  expect(simulatorResources(await simulatorState(uvm))).to.deep.equal(describedResources(infos));
}

/** Nothing attached but the kept direct-mapped VSMB shares (they go with the VM). */
export async function expectEmpty(uvm: UtilityVm): Promise<void> {
  const infos = uvm.describe();
  const kept = infos.filter((r) => r.state === 'kept');
  expect(infos.filter((r) => r.state !== 'kept')).to.deep.equal([]);
  const state = await simulatorState(uvm);
  expect(simulatorResources(state)).to.have.members(describedResources(kept));
  expect(state.HotAdded).to.equal(kept.length);
}


/**
 * 64 workers × `opsPerWorker` random acquire/release of keys drawn by `pick`, in rounds; after
 * every round (a quiescent point) the simulator must equal describe(); at the end everything is
 * released and the simulator is empty.
 */
export async function randomSoak<L extends { release(): Promise<void> }>(
  uvm: UtilityVm,
  acquire: (rand: () => number) => Promise<L>,
  options: { workers?: number; opsPerWorker: number; rounds: number; seed: number },
): Promise<{ acquires: number; releases: number }> {
  const workers = options.workers ?? 64;
  const rand = prng(options.seed);
  const held: L[][] = Array.from({ length: workers }, () => []);
  let acquires = 0;
  let releases = 0;
  const perRound = Math.ceil(options.opsPerWorker / options.rounds);
  for (let round = 0; round < options.rounds; round++) {
    await Promise.all(
      held.map(async (mine) => {
        for (let i = 0; i < perRound; i++) {
          // Release more often the more this worker holds (keeps holdings small, so keys churn).
          if (rand() < mine.length / (mine.length + 1)) {
            const [lease] = mine.splice(Math.floor(rand() * mine.length), 1);
            await lease.release();
            releases++;
          } else {
            mine.push(await acquire(rand));
            acquires++;
          }
        }
      }),
    );
    await expectInSync(uvm);
  }
  await Promise.all(held.flat().map((l) => l.release()));
  releases += held.flat().length;
  await expectEmpty(uvm);
  return { acquires, releases };
}

// Fixture of the FFI integration tests (and any later suite): the real binding loaded against the
// native simulator, a reset simulator, and minimal LCOW / WCOW compute systems that are terminated
// and closed after the test by a registered leak check.
import { ComputeCoreHcs } from '../../src/hcs/computecore-hcs.js';
import type { ComputeSystem } from '../../src/hcs/compute-system.js';
import { isAlreadyStopped, isNotExist } from '../../src/hcs/hcs-error.js';
import { pendingOperationCount } from '../../src/hcs/operation-driver.js';
import { configureSimulator, resetSimulator } from '../../src/hcs/simulator-controls.js';
import { UvmError } from '../../src/core/errors.js';
import { checkAfterTest } from '../support/leak-checks.js';

/** Controller GUIDs of hcsshim (UUIDv5 of "0".."3"), spec §1.1. */
export const SCSI_CONTROLLERS = [
  'df6d0690-79e5-55b6-a5ec-c1e2f77f580a',
  '0110f83b-de10-5172-a266-78bca56bf50a',
  'b5d2d8d4-3a75-51bf-945b-3444dc6b8579',
  '305891a9-b251-5dfe-91a2-c25d9212275b',
] as const;

/** The binding every integration test shares (the library is loaded once per process). */
export const hcs = new ComputeCoreHcs();

export interface TestSystemOptions {
  /** `linux` (LCOW: VirtualPMem + Plan9) or `windows` (WCOW: VirtualSmb). @default 'linux' */
  os?: 'linux' | 'windows';
  /** SCSI controllers (1..4), hcsshim's GUIDs in order. @default 1 */
  scsiControllers?: number;
  /** VirtualPMem MaximumCount. @default 64 for linux, none for windows */
  vpmemCount?: number;
  /** Also give the system VirtualSmb (windows always has it). @default false */
  vsmb?: boolean;
  /** Also give the system Plan9 (linux always has it). @default false */
  plan9?: boolean;
  /** `VirtualMachine.GuestConnection` (HCS owns the guest connection); false = the guest dials the GCS bridge instead. @default true */
  guestConnection?: boolean;
  /** Start the system. @default true */
  start?: boolean;
  /** Id prefix. */
  prefix?: string;
}

let counter = 0;

/** A unique compute system id for this process. */
export function uniqueId(prefix = 'hcs-it'): string {
  return `${prefix}-${process.pid}-${++counter}`;
}

/** The create document of a minimal LCOW or WCOW Utility VM. */
export function systemConfig(options: TestSystemOptions = {}): Record<string, unknown> {
  const os = options.os ?? 'linux';
  const controllers = options.scsiControllers ?? 1;
  if (controllers < 0 || controllers > SCSI_CONTROLLERS.length) throw new RangeError(`scsiControllers ${controllers}`);
  const scsi: Record<string, unknown> = {};
  for (const guid of SCSI_CONTROLLERS.slice(0, controllers)) scsi[guid] = { Attachments: {} };
  const devices: Record<string, unknown> = { Scsi: scsi };
  const vpmemCount = options.vpmemCount ?? (os === 'linux' ? 64 : 0);
  if (vpmemCount > 0) devices.VirtualPMem = { MaximumCount: vpmemCount, MaximumSizeBytes: 4 * 1024 * 1024 * 1024 };
  if (os === 'windows' || options.vsmb) devices.VirtualSmb = { Shares: [], DirectFileMappingInMB: 1024 };
  if (os === 'linux' || options.plan9) devices.Plan9 = { Shares: [] };
  return {
    Owner: 'uvm-orchestrator-tests',
    SchemaVersion: { Major: 2, Minor: 1 },
    ShouldTerminateOnLastHandleClosed: true,
    VirtualMachine: {
      StopOnReset: true,
      Chipset: os === 'linux' ? { LinuxKernelDirect: { KernelFilePath: 'C:\\uvm\\kernel', InitRdPath: 'C:\\uvm\\initrd.img' } } : { Uefi: {} },
      ComputeTopology: { Memory: { SizeInMB: 1024 }, Processor: { Count: 2 } },
      Devices: devices,
      // HCS owns the guest connection: these raw systems get GuestRequests through HcsModifyComputeSystem.
      ...((options.guestConnection ?? true) && { GuestConnection: os === 'linux' ? { UseVsock: true, UseConnectedSuspend: true } : {} }),
    },
  };
}

/** Resets the simulator (no systems, no faults, zero latency). Call in `beforeEach`. */
export function resetTestSimulator(): void {
  resetSimulator();
}

/**
 * Creates (and by default starts) a compute system; after the test it is terminated and closed,
 * and the test fails if it leaked a pending HCS operation.
 */
export async function createTestSystem(options: TestSystemOptions = {}): Promise<ComputeSystem> {
  const id = uniqueId(options.prefix);
  const system = await hcs.createComputeSystem(id, systemConfig(options));
  checkAfterTest(async () => disposeTestSystem(system));
  if (options.start ?? true) await system.start();
  return system;
}

/** Terminates (ignoring "already stopped" / "closed") and closes a system; returns the problems found. */
export async function disposeTestSystem(system: ComputeSystem): Promise<string[]> {
  const problems: string[] = [];
  // Hung operations are not cancellable (as in HCS): let them complete so nothing stays pending.
  configureSimulator({ clearFaults: true, releaseHangs: true });
  if (!system.closed) {
    try {
      await system.terminate({ timeoutMs: 5000 });
    } catch (e) {
      if (!isAlreadyStopped(e) && !isNotExist(e) && !UvmError.is(e, 'HANDLE_CLOSED')) {
        problems.push(`terminate ${system.id}: ${(e as Error).message}`);
      }
    }
  }
  await system[Symbol.asyncDispose]();
  const pending = pendingOperationCount();
  if (pending > 0) problems.push(`${pending} HCS operation(s) still pending after the test`);
  return problems;
}

/** The rejection of `p` (fails the test if `p` resolves). */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { createLogger } from '../../../src/core/logger.js';
import type { Releasable } from '../../../src/core/release-stack.js';
import type { UvmDeviceConfig } from '../../../src/devices/device-config.js';
import type { GuestOs, UvmFacts } from '../../../src/devices/device-types.js';
import { createResourceDelivery, type ResourceDelivery } from '../../../src/devices/guest-delivery.js';
import { SCSI_CONTROLLER_GUIDS } from '../../../src/devices/resource-paths.js';
import { PipeManagerImpl } from '../../../src/devices/pipe-manager.js';
import { Plan9ManagerImpl } from '../../../src/devices/plan9-manager.js';
import { ScsiManagerImpl } from '../../../src/devices/scsi-manager.js';
import { UvmLifecycle } from '../../../src/devices/uvm-lifecycle.js';
import { VpmemManagerImpl } from '../../../src/devices/vpmem-manager.js';
import { VsmbManagerImpl } from '../../../src/devices/vsmb-manager.js';
import { FakeComputeSystem, FakeHcs } from '../../../src/hcs/fake-hcs.js';
import type { GuestConnection } from '../../../src/uvm/guest-connection.js';
import type { UvmDeviceSet } from '../../../src/recovery/journaled-devices.js';
import { checkAfterTest } from '../../support/leak-checks.js';

export const silentLogger = createLogger({ level: 'silent' });

export interface DeviceKit {
  hcs: FakeHcs;
  system: FakeComputeSystem;
  hostFs: FakeHostFs;
  lifecycle: UvmLifecycle;
  delivery: ResourceDelivery;
  config: UvmDeviceConfig;
  scsi: ScsiManagerImpl;
  vsmb: VsmbManagerImpl;
  vpmem: VpmemManagerImpl;
  plan9: Plan9ManagerImpl;
  pipes: PipeManagerImpl;
  /** Modify documents sent after setup, in order. */
  docs(): unknown[];
}

/**
 * Every manager of one fake UVM, built with `new` over FakeHcs + FakeHostFs. Registers a leak
 * check: after the test, nothing may be attached to the fake compute system.
 */
export async function deviceKit(
  overrides: Partial<UvmDeviceConfig> & { os: UvmDeviceConfig['os'] },
  extra: { guestConnection?: GuestConnection; leakCheck?: boolean } = {},
): Promise<DeviceKit> {
  const config: UvmDeviceConfig = {
    id: 'uvm1',
    fullyPhysicallyBacked: false,
    noWritableFileShares: false,
    vpmemCount: overrides.os === 'linux' ? 8 : 0,
    vpmemMaxSizeBytes: 4 * 1024 * 1024 * 1024,
    vpmemMultiMapping: false,
    scsiControllers: 1,
    reservedScsiSlots: [],
    vsmbNoDirectMap: true,
    ...overrides,
  };
  const hcs = new FakeHcs();
  const system = (await hcs.createComputeSystem(config.id, {})) as FakeComputeSystem;
  await system.start();
  const start = hcs.calls.length;
  const hostFs = new FakeHostFs();
  const lifecycle = new UvmLifecycle();
  const delivery = createResourceDelivery(system, lifecycle, silentLogger, extra.guestConnection);
  if (extra.leakCheck !== false) checkAfterTest(() => system.attached().map((a) => `still attached: ${a}`));
  return {
    hcs,
    system,
    hostFs,
    lifecycle,
    delivery,
    config,
    scsi: new ScsiManagerImpl(config, delivery, hcs, silentLogger),
    vsmb: new VsmbManagerImpl(config, delivery, hostFs, silentLogger, lifecycle),
    vpmem: new VpmemManagerImpl(config, delivery, hostFs, silentLogger),
    plan9: new Plan9ManagerImpl(config, delivery, hostFs, silentLogger),
    pipes: new PipeManagerImpl(config, delivery, silentLogger),
    docs: () => hcs.calls.slice(start).filter((c) => c.fn === 'modify').map((c) => c.doc),
  };
}

/**
 * The upper modules' ports (`ContainerUvm`, the layer and mount ports) over a kit's real managers
 * (no fake of the managers), plus what tests read: what the managers hold and the HCS calls made.
 */
export interface KitUvm extends UvmDeviceSet {
  readonly kit: DeviceKit;
  readonly hostFs: FakeHostFs;
  readonly scsi: ScsiManagerImpl;
  readonly vsmb: VsmbManagerImpl;
  readonly vpmem: VpmemManagerImpl;
  readonly plan9: Plan9ManagerImpl;
  readonly pipes: PipeManagerImpl;
  /** What failed rollbacks handed over (`retryLater`); `retryLeftovers()` releases them. */
  readonly leftovers: Releasable[];
  retryLeftovers(): Promise<void>;
  /** Every entry the managers hold, rendered `<kind> <key> <state>`. */
  held(): string[];
  /** The modify calls made since `mark` (default: since the kit was built), rendered by `renderModify`. */
  ops(mark?: number): string[];
  /** A mark for `ops` (the number of HCS calls so far). */
  mark(): number;
  /** The UVM's termination mode (containers/uvm-termination.ts): the lifecycle is `terminated`, releases make no HCS call. */
  prepareForTermination?: () => void;
}

/** The upper modules' port over a kit's real managers. */
export function kitUvm(kit: DeviceKit, options: { terminationAware?: boolean } = {}): KitUvm {
  const c = kit.config;
  const leftovers: Releasable[] = [];
  const managers = [kit.scsi, kit.vsmb, kit.vpmem, kit.plan9, kit.pipes];
  const start = kit.hcs.calls.length;
  return {
    kit,
    facts: {
      id: c.id,
      os: c.os,
      fullyPhysicallyBacked: c.fullyPhysicallyBacked,
      noWritableFileShares: c.noWritableFileShares,
      vpmemCount: c.vpmemCount,
      vpmemMaxSizeBytes: c.vpmemMaxSizeBytes,
      vpmemMultiMapping: c.vpmemMultiMapping,
      scsiControllers: c.scsiControllers,
      reservedScsiSlotCount: c.reservedScsiSlots.length,
    },
    scsi: kit.scsi,
    vsmb: kit.vsmb,
    vpmem: kit.vpmem,
    plan9: kit.plan9,
    pipes: kit.pipes,
    hostFs: kit.hostFs,
    leftovers,
    sendGuestRequest: (request, options) => kit.delivery.guest(request, options),
    nameToGuid: (name) => kit.hcs.nameToGuid(name),
    retryLater: (leftover) => void leftovers.push(leftover),
    retryLeftovers: async () => {
      for (const l of leftovers.splice(0)) await l.release();
    },
    held: () => managers.flatMap((m) => m.describe()).map((i) => `${i.kind} ${i.key} ${i.state}`),
    ops: (mark = start) => kit.hcs.calls.slice(mark).filter((call) => call.fn === 'modify').map((call) => renderModify(call.doc)),
    mark: () => kit.hcs.calls.length,
    ...(options.terminationAware ? { prepareForTermination: () => kit.lifecycle.markTerminated() } : {}),
  };
}

/**
 * A modify document in one line: `<Add|Remove> <ResourcePath>[ <share name>]` for a host change
 * (without `VirtualMachine/Devices/`, SCSI controllers by index; `+ <Type> <ResourceType>` when it
 * carries a guest request), `guest <Type> <ResourceType> <path>` for a guest-only request.
 */
export function renderModify(doc: unknown): string {
  const d = doc as {
    RequestType?: string;
    ResourcePath?: string;
    Settings?: { Name?: string };
    GuestRequest?: { RequestType: string; ResourceType: string; Settings?: Record<string, unknown> };
  };
  const g = d.GuestRequest;
  const guestPath = g?.Settings?.MountPath ?? g?.Settings?.ContainerPath ?? g?.Settings?.ContainerRootPath;
  // A SCSI unplug names its slot (a zero Controller / Lun is left out of the document).
  const where = guestPath ?? (g?.ResourceType === 'SCSIDevice' ? `${String(g.Settings?.Controller ?? 0)}:${String(g.Settings?.Lun ?? 0)}` : undefined);
  const guest = g ? `${g.RequestType} ${g.ResourceType}${where === undefined ? '' : ` ${String(where)}`}` : '';
  if (!d.ResourcePath) return `guest ${guest}`;
  const path = d.ResourcePath.replace(/^VirtualMachine\/Devices\//, '').replace(/Scsi\/([^/]+)/, (_, guid: string) => `Scsi/${SCSI_CONTROLLER_GUIDS.indexOf(guid as never)}`);
  const name = d.Settings?.Name === undefined || !d.ResourcePath.endsWith('/Shares') ? '' : ` ${d.Settings.Name}`;
  return `${d.RequestType ?? 'Add'} ${path}${name}${guest ? ` + ${guest}` : ''}`;
}

/**
 * A fake UVM for the upper modules' tests: the real managers over FakeHcs with small defaults
 * (4 VPMEM devices of 1 MiB, easy to overflow; one SCSI controller), the given host files, and
 * the leak check (nothing attached to the fake compute system after the test).
 */
export async function upperUvm(
  os: UvmDeviceConfig['os'],
  options: { config?: Partial<UvmDeviceConfig>; hostFs?: (fs: FakeHostFs) => void; terminationAware?: boolean; leakCheck?: boolean } = {},
): Promise<KitUvm> {
  const kit = await deviceKit(
    {
      os,
      id: os === 'linux' ? 'uvm-l' : 'uvm-w@vm',
      vpmemCount: os === 'linux' ? 4 : 0,
      vpmemMaxSizeBytes: 1024 * 1024,
      ...options.config,
    },
    { leakCheck: options.leakCheck },
  );
  options.hostFs?.(kit.hostFs);
  return kitUvm(kit, { terminationAware: options.terminationAware });
}

/** Fails the next modify whose rendered document (`renderModify`) matches `pattern`, once. */
export function failModify(u: KitUvm, pattern: RegExp, error?: Error): void {
  u.kit.hcs.failNext((call) => call.fn === 'modify' && pattern.test(renderModify(call.doc)), error);
}

/** Facts of a test UVM: 4 VPMEM devices of 1 MiB (easy to overflow in tests), one SCSI controller (as `upperUvm`). */
export function fakeFacts(os: GuestOs, overrides: Partial<UvmFacts> = {}): UvmFacts {
  return {
    id: os === 'linux' ? 'uvm-l' : 'uvm-w@vm',
    os,
    fullyPhysicallyBacked: false,
    noWritableFileShares: false,
    vpmemCount: os === 'linux' ? 4 : 0,
    vpmemMaxSizeBytes: 1024 * 1024,
    vpmemMultiMapping: false,
    scsiControllers: 1,
    ...overrides,
  };
}

/** Resolves after pending microtasks and a macrotask turn (lets gated calls arrive). */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Asserts `promise` rejects with a UvmError of `code`; returns the error. */
export async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<Error & { code: string }> {
  try {
    await promise;
  } catch (err) {
    const e = err as Error & { code: string };
    if (e.code !== code) throw new Error(`expected code ${code}, got ${e.code}: ${e.message}`, { cause: err });
    return e;
  }
  throw new Error(`expected a rejection with code ${code}, but it resolved`);
}

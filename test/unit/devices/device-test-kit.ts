import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { createLogger } from '../../../src/core/logger.js';
import type { Releasable } from '../../../src/core/release-stack.js';
import type { UvmDeviceConfig } from '../../../src/devices/device-config.js';
import type { UvmDevices } from '../../../src/devices/device-types.js';
import { createResourceDelivery, type ResourceDelivery } from '../../../src/devices/guest-delivery.js';
import { PipeManagerImpl } from '../../../src/devices/pipe-manager.js';
import { Plan9ManagerImpl } from '../../../src/devices/plan9-manager.js';
import { ScsiManagerImpl } from '../../../src/devices/scsi-manager.js';
import { UvmLifecycle } from '../../../src/devices/uvm-lifecycle.js';
import { VpmemManagerImpl } from '../../../src/devices/vpmem-manager.js';
import { VsmbManagerImpl } from '../../../src/devices/vsmb-manager.js';
import { FakeComputeSystem, FakeHcs } from '../../../src/hcs/fake-hcs.js';
import type { GuestConnection } from '../../../src/uvm/guest-connection.js';
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

/** The `UvmDevices` port of a kit: its real managers, guest requests through its delivery. */
export interface KitUvm extends UvmDevices {
  readonly hostFs: FakeHostFs;
  /** What failed rollbacks handed over (`retryLater`). */
  readonly leftovers: Releasable[];
}

/** The upper modules' port over a kit's real managers (no fake of the managers). */
export function kitUvm(kit: DeviceKit): KitUvm {
  const c = kit.config;
  const leftovers: Releasable[] = [];
  return {
    facts: {
      id: c.id,
      os: c.os,
      fullyPhysicallyBacked: c.fullyPhysicallyBacked,
      noWritableFileShares: c.noWritableFileShares,
      vpmemCount: c.vpmemCount,
      vpmemMaxSizeBytes: c.vpmemMaxSizeBytes,
      vpmemMultiMapping: c.vpmemMultiMapping,
      scsiControllers: c.scsiControllers,
    },
    scsi: kit.scsi,
    vsmb: kit.vsmb,
    vpmem: kit.vpmem,
    plan9: kit.plan9,
    pipes: kit.pipes,
    hostFs: kit.hostFs,
    leftovers,
    sendGuestRequest: (request) => kit.delivery.guest(request),
    nameToGuid: (name) => kit.hcs.nameToGuid(name),
    retryLater: (leftover) => void leftovers.push(leftover),
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

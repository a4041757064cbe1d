// Helpers of the adoption tests: the managers of a restarted shim over the same (fake) UVM.
import type { Lease } from '../../../src/core/lease.js';
import { createResourceDelivery } from '../../../src/devices/guest-delivery.js';
import { PipeManagerImpl } from '../../../src/devices/pipe-manager.js';
import { Plan9ManagerImpl } from '../../../src/devices/plan9-manager.js';
import { ScsiManagerImpl } from '../../../src/devices/scsi-manager.js';
import { UvmLifecycle } from '../../../src/devices/uvm-lifecycle.js';
import { VpmemManagerImpl } from '../../../src/devices/vpmem-manager.js';
import { VsmbManagerImpl } from '../../../src/devices/vsmb-manager.js';
import type { UvmDeviceConfig } from '../../../src/devices/device-config.js';
import { silentLogger, type DeviceKit } from './device-test-kit.js';

export interface RestartedManagers {
  scsi: ScsiManagerImpl;
  vsmb: VsmbManagerImpl;
  vpmem: VpmemManagerImpl;
  plan9: Plan9ManagerImpl;
  pipes: PipeManagerImpl;
}

/** New managers (own lifecycle and delivery) over the kit's compute system and host file system. */
export function restartedManagers(kit: DeviceKit, config: Partial<UvmDeviceConfig> = {}): RestartedManagers {
  const cfg = { ...kit.config, ...config };
  const lifecycle = new UvmLifecycle();
  const delivery = createResourceDelivery(kit.system, lifecycle, silentLogger);
  return {
    scsi: new ScsiManagerImpl(cfg, delivery, kit.hcs, silentLogger),
    vsmb: new VsmbManagerImpl(cfg, delivery, kit.hostFs, silentLogger, lifecycle),
    vpmem: new VpmemManagerImpl(cfg, delivery, kit.hostFs, silentLogger),
    plan9: new Plan9ManagerImpl(cfg, delivery, kit.hostFs, silentLogger),
    pipes: new PipeManagerImpl(cfg, delivery, silentLogger),
  };
}

/**
 * The first process "died": its bookkeeping is dropped without any HCS call (its lifecycle is
 * marked terminated, so releases only clear its tables).
 */
export async function forgetFirstProcess(kit: DeviceKit, leases: Lease<unknown>[]): Promise<void> {
  kit.lifecycle.markTerminated();
  for (const lease of leases) await lease.release();
}

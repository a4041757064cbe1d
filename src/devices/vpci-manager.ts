/**
 * Assigned devices (vPCI): host PCI devices (GPU, NIC …) assigned into one Utility VM over
 * VirtualPci (hcs-real-world.md §4). Refcounted by (device instance path, virtual function): the
 * first acquire picks a random v4 VMBus GUID and sends the Add; later acquires of the same
 * function share it; the last release sends the host-only Remove (the Linux guest agent does not
 * handle a VPCIDevice Remove: the device leaves the guest with its host removal).
 *
 * Documents (hcsshim's `AssignDevice`, field for field):
 * ```json
 * {"ResourcePath":"VirtualMachine/Devices/VirtualPci/<guid>","RequestType":"Add",
 *  "Settings":{"Functions":[{"DeviceInstancePath":"PCIP\\VEN_…","VirtualFunction":2}]},
 *  "GuestRequest":{"RequestType":"Add","ResourceType":"VPCIDevice","Settings":{"VMBusGUID":"<guid>"}}}
 * {"ResourcePath":"VirtualMachine/Devices/VirtualPci/<guid>","RequestType":"Remove"}
 * ```
 * `GuestRequest` only on LCOW; `VirtualFunction` 0 omitted; `PropagateNumaAffinity` only when asked.
 */
import { randomUUID } from 'node:crypto';
import { inject, injectable, optional, type ServiceIdentifier } from 'inversify';
import { invalidArgument } from '../core/errors.js';
import type { Lease } from '../core/lease.js';
import { Logger } from '../core/logger.js';
import { commitCombinedAdd } from './combined-add.js';
import { DeviceCore, type DevicePlacement } from './device-core.js';
import { UvmDeviceConfig } from './device-config.js';
import type { DescribableManager, DeviceAcquireOptions, ResourceInfo } from './device-types.js';
import { newRemovalProgress, ResourceDelivery } from './guest-delivery.js';
import { UvmLifecycle } from './uvm-lifecycle.js';
import { guestRequest, hostRequest } from './wire-requests.js';

/** One function of a host PCI device. */
export interface VpciDeviceRequest {
  /** Device instance path, e.g. `PCIP\VEN_10DE&DEV_1EB8&SUBSYS_12A210DE&REV_A1\6&1a2b3c4d&0&0`. */
  instancePath: string;
  /** Virtual function index (SR-IOV). @default 0 */
  virtualFunction?: number;
  /** Sets `PropagateNumaAffinity: true` (hosts from Windows Server 25H1 on). Only the first acquire's value counts. @default false */
  propagateNumaAffinity?: boolean;
}

/** A device assigned to the UVM. */
export interface VpciDevice {
  instancePath: string;
  virtualFunction: number;
  /** The VirtualPci key and what the guest finds the device under (`/sys/bus/vmbus/devices/<guid>`). */
  vmbusGuid: string;
  /** Present at boot (create document): never removed while the UVM lives. */
  boot: boolean;
}

/** Refcounted assigned PCI devices (vPCI) of one UVM. */
export interface VpciManager extends DescribableManager {
  /**
   * Assigns the function (or shares its existing assignment). INVALID_ARGUMENT for a malformed
   * request, NOT_SUPPORTED when the UVM has no vPCI (never on a real UVM: both OSes have it).
   */
  acquire(request: VpciDeviceRequest, options?: DeviceAcquireOptions): Promise<Lease<VpciDevice>>;
}
/** DI token of the `VpciManager`. */
export const VpciManager: ServiceIdentifier<VpciManager> = Symbol.for('uvm-orchestrator.VpciManager');

/** Devices written into the UVM's create document (`Devices.VirtualPci`), with their GUIDs. */
export type VpciBootDevices = readonly VpciDevice[];
export const VpciBootDevices: ServiceIdentifier<VpciBootDevices> = Symbol.for('uvm-orchestrator.VpciBootDevices');

/** `VirtualMachine/Devices/VirtualPci/<guid>`. */
export function vpciResourcePath(vmbusGuid: string): string {
  return `VirtualMachine/Devices/VirtualPci/${vmbusGuid}`;
}

/** The `VirtualPciDevice` settings of one function (hcsshim omits VF 0 and an unset affinity). */
export function vpciSettings(instancePath: string, virtualFunction: number, propagateNumaAffinity = false): Record<string, unknown> {
  const fn: Record<string, unknown> = { DeviceInstancePath: instancePath };
  if (virtualFunction !== 0) fn.VirtualFunction = virtualFunction;
  return propagateNumaAffinity ? { Functions: [fn], PropagateNumaAffinity: true } : { Functions: [fn] };
}

/** Validates a device request (INVALID_ARGUMENT): a non-empty instance path without NUL or `/`, a VF in 0..65535. */
export function validateVpciRequest(request: VpciDeviceRequest, what = 'device'): { instancePath: string; virtualFunction: number } {
  if (request === null || typeof request !== 'object') throw invalidArgument(`${what} must be an object {instancePath, virtualFunction?}`);
  const { instancePath, virtualFunction = 0 } = request;
  if (typeof instancePath !== 'string' || instancePath.trim() === '' || instancePath.includes('\0') || instancePath.includes('/')) {
    throw invalidArgument(`${what}: instancePath must be a device instance path: ${String(instancePath)}`, { field: 'instancePath' });
  }
  if (!Number.isInteger(virtualFunction) || virtualFunction < 0 || virtualFunction > 0xffff) {
    throw invalidArgument(`${what}: virtualFunction must be an integer in 0..65535: ${String(virtualFunction)}`, { field: 'virtualFunction' });
  }
  if (request.propagateNumaAffinity !== undefined && typeof request.propagateNumaAffinity !== 'boolean') {
    throw invalidArgument(`${what}: propagateNumaAffinity must be a boolean`, { field: 'propagateNumaAffinity' });
  }
  return { instancePath, virtualFunction };
}

/** Validates `UtilityVmOptions.assignedDevices` (INVALID_ARGUMENT) and gives each a VMBus GUID. */
export function resolveBootDevices(devices: readonly VpciDeviceRequest[] | undefined): VpciDevice[] {
  if (devices === undefined) return [];
  if (!Array.isArray(devices)) throw invalidArgument('assignedDevices must be an array', { field: 'assignedDevices' });
  const seen = new Set<string>();
  return devices.map((d, i) => {
    const { instancePath, virtualFunction } = validateVpciRequest(d, `assignedDevices[${i}]`);
    if (seen.has(keyOf(instancePath, virtualFunction))) throw invalidArgument(`assignedDevices[${i}]: ${instancePath} function ${virtualFunction} is listed twice`);
    seen.add(keyOf(instancePath, virtualFunction));
    return { instancePath, virtualFunction, vmbusGuid: randomUUID(), boot: true };
  });
}

/** `Devices.VirtualPci` of a create document: VMBus GUID → VirtualPciDevice. */
export function vpciCreateSection(devices: readonly VpciDevice[]): Record<string, unknown> {
  return Object.fromEntries(devices.map((d) => [d.vmbusGuid, vpciSettings(d.instancePath, d.virtualFunction)]));
}

const keyOf = (instancePath: string, vf: number): string => `${instancePath}/${vf}`;

/** A validated request. */
interface VpciParams {
  readonly instancePath: string;
  readonly virtualFunction: number;
  readonly numa: boolean;
}

/** A policy over the device core (device-core.ts); boot devices are restored entries. */
@injectable()
export class VpciManagerImpl implements VpciManager {
  readonly #core: DeviceCore<VpciParams, VpciDevice, VpciDevice>;
  /** Boot devices keep one reference for the UVM's lifetime (hcsshim: refCount starts at 1). */
  readonly #bootLeases: Lease<VpciDevice>[] = [];
  readonly #booting: Promise<void>;

  constructor(
    @inject(UvmDeviceConfig) private readonly config: UvmDeviceConfig,
    @inject(ResourceDelivery) private readonly delivery: ResourceDelivery,
    @inject(Logger) logger: Logger,
    @inject(UvmLifecycle) lifecycle: UvmLifecycle,
    @inject(VpciBootDevices) @optional() boot: VpciBootDevices = [],
  ) {
    this.#core = new DeviceCore(config.id, config.os, logger, {
      device: 'vpci',
      kind: 'vpci-device',
      key: (p) => keyOf(p.instancePath, p.virtualFunction),
      place: (p) => this.#place(p),
      remove: (d) => this.delivery.host(hostRequest(vpciResourcePath(d.vmbusGuid), 'Remove')),
      // LCOW: where the guest finds a hot-added device (boot devices get no guest request).
      where: (d) => ({ hostPath: d.instancePath, slot: d.vmbusGuid, guestPath: config.os === 'linux' && !d.boot ? `/sys/bus/vmbus/devices/${d.vmbusGuid}` : undefined }),
      fields: (d) => ({ virtualFunction: d.virtualFunction }),
      view: (d) => ({ ...d }),
      claim: (p, d) => ({ instancePath: p.instancePath, virtualFunction: p.virtualFunction, vmbusGuid: d.vmbusGuid, boot: d.boot }),
      conflict: (d, recorded) =>
        d.boot || d.vmbusGuid === recorded.vmbusGuid
          ? undefined
          : `cannot adopt ${d.instancePath} function ${d.virtualFunction} as ${recorded.vmbusGuid}: it is assigned as ${d.vmbusGuid}`,
    });
    this.#booting = Promise.all(
      boot.map(async (d) => {
        this.#bootLeases.push(await this.#core.adopt({ ...d, numa: false }, { ...d, boot: true }));
      }),
    ).then(() => undefined);
    // The VM is gone: the boot references go (their Remove makes no HCS call once terminated).
    lifecycle.onTerminated(() => {
      for (const lease of this.#bootLeases.splice(0)) void lease.release().catch(() => undefined);
    });
  }

  async acquire(request: VpciDeviceRequest, options: DeviceAcquireOptions = {}): Promise<Lease<VpciDevice>> {
    const { instancePath, virtualFunction } = validateVpciRequest(request);
    await this.#booting;
    return this.#core.acquire({ instancePath, virtualFunction, numa: request.propagateNumaAffinity === true }, options);
  }

  /**
   * Recovery (docs/recovery.md): rebuilds the lease of a function that is already assigned (as
   * `device`, its VMBus GUID), with no HCS call. A boot device shares its boot entry.
   * RECOVERY_FAILED when the function is held already under another VMBus GUID.
   */
  async adopt(request: VpciDeviceRequest, device: VpciDevice): Promise<Lease<VpciDevice>> {
    const { instancePath, virtualFunction } = validateVpciRequest(request);
    await this.#booting;
    return this.#core.adopt({ instancePath, virtualFunction, numa: false }, device);
  }

  describe(): ResourceInfo[] {
    return this.#core.describe();
  }

  retryFailedTeardowns(): Promise<void> {
    return this.#core.retryFailedTeardowns();
  }

  /** A new assignment: a random v4 VMBus GUID; the Add (with its guest half on LCOW, kept as a residue when it cannot be undone). */
  #place({ instancePath, virtualFunction, numa }: VpciParams): DevicePlacement<VpciDevice> {
    const device: VpciDevice = { instancePath, virtualFunction, vmbusGuid: randomUUID(), boot: false };
    const host = hostRequest(vpciResourcePath(device.vmbusGuid), 'Add', vpciSettings(instancePath, virtualFunction, numa));
    const guest = guestRequest('Add', 'VPCIDevice', { VMBusGUID: device.vmbusGuid });
    return {
      value: device,
      commit: () =>
        this.config.os === 'windows'
          ? this.delivery.host(host)
          : commitCombinedAdd(this.delivery, { host, guest, removal: newRemovalProgress(), value: device }),
    };
  }
}

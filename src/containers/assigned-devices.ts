/**
 * A container's `windows.devices` (hcs-real-world.md §4.1), handled per `idType` as hcsshim does:
 *
 * | idType | LCOW / WCOW Hyper-V | process-isolated WCOW |
 * |---|---|---|
 * | `vpci-instance-id`, `vpci`, `gpu` | assigned to the UVM over vPCI (refcounted); the spec entry's `id` becomes the VMBus GUID | INVALID_SPEC |
 * | `vpci-location-path` | WCOW: container document `{Type:"DeviceInstance", LocationPath}`; LCOW: INVALID_SPEC | container document |
 * | `class`, `vpci-class-guid` | WCOW: container document `{InterfaceClassGuid}`; LCOW: INVALID_SPEC | container document |
 * | anything else | INVALID_SPEC | INVALID_SPEC |
 *
 * Every entry is classified (pure, no HCS call) before anything is attached, so an unsupported
 * entry fails the allocation with nothing held; INVALID_SPEC names the entry (`details.field`
 * `windows.devices[<i>]`).
 */
import { UvmError } from '../core/errors.js';
import type { DeviceAcquireOptions, GuestOs, ResourceInfo } from '../devices/device-types.js';
import type { VpciDevice, VpciManager } from '../devices/vpci-manager.js';
import type { OciSpec } from '../oci/oci-spec.js';
import { heldResource, type HeldResource } from './held-resource.js';

/** `idType`s assigned to the UVM over vPCI. */
export const VPCI_ID_TYPES: readonly string[] = ['vpci-instance-id', 'vpci', 'gpu'];
/** `idType`s only a WCOW container document takes. */
export const CONTAINER_DOCUMENT_ID_TYPES: readonly string[] = ['vpci-location-path', 'class', 'vpci-class-guid'];

/** Where the container runs, as far as its devices are concerned. */
export type DeviceHost = GuestOs | 'process-isolated';

/** One `AssignedDevices` entry of a WCOW container document (HCS schema `Device`). */
export interface ContainerDocumentDevice {
  Type?: 'DeviceInstance';
  LocationPath?: string;
  InterfaceClassGuid?: string;
}

/** What happens to one `windows.devices` entry. */
export type PlannedDevice =
  | {
      kind: 'vpci';
      /** Index in `windows.devices`. */
      index: number;
      idType: string;
      id: string;
      instancePath: string;
      virtualFunction: number;
      /** Plan only: the function is assigned to the UVM already (shared by refcount, no HCS call). */
      shared?: boolean;
    }
  | { kind: 'container-document'; index: number; idType: string; id: string; entry: ContainerDocumentDevice };

/** A device assigned for a container. */
export interface AssignedDevice extends VpciDevice {
  /** Index in `windows.devices`. */
  index: number;
  idType: string;
  /**
   * WCOW: the VMBus node's device instance id, `VMBUS\{44c4f61d-4444-4400-9d52-802e27ede19f}\{<guid>}`,
   * whose children's location paths the shim resolves in the UVM (hcsshim's device-util step).
   */
  vmbusNodeInstanceId?: string;
}

const VMBUS_DEVICE_CLASS = '44c4f61d-4444-4400-9d52-802e27ede19f';

function invalidEntry(index: number, message: string): UvmError {
  return new UvmError('INVALID_SPEC', `windows.devices[${index}]: ${message}`, { details: { field: `windows.devices[${index}]` } });
}

/**
 * Splits an `id` into (instance path, virtual function): a numeric last `/` element is the VF
 * (hcsshim's `GetDeviceInfoFromPath`); otherwise the whole id with VF 0.
 */
export function parseDeviceId(id: string): { instancePath: string; virtualFunction: number } {
  const slash = id.lastIndexOf('/');
  if (slash > 0) {
    const tail = id.slice(slash + 1);
    if (/^\d{1,5}$/.test(tail) && Number(tail) <= 0xffff) return { instancePath: id.slice(0, slash), virtualFunction: Number(tail) };
  }
  return { instancePath: id, virtualFunction: 0 };
}

/** Classifies every `windows.devices` entry (pure). INVALID_SPEC naming the first bad entry. */
export function planDevices(host: DeviceHost, spec: OciSpec): PlannedDevice[] {
  const windows = spec.windows;
  if (windows === undefined || windows === null) return [];
  if (typeof windows !== 'object' || Array.isArray(windows)) {
    throw new UvmError('INVALID_SPEC', 'windows must be an object', { details: { field: 'windows' } });
  }
  const devices = (windows as Record<string, unknown>).devices;
  if (devices === undefined || devices === null) return [];
  if (!Array.isArray(devices)) throw new UvmError('INVALID_SPEC', 'windows.devices must be an array', { details: { field: 'windows.devices' } });
  return devices.map((raw: unknown, index): PlannedDevice => {
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw invalidEntry(index, 'must be an object {id, idType}');
    const { id, idType } = raw as { id?: unknown; idType?: unknown };
    if (typeof id !== 'string' || id.trim() === '' || id.includes('\0')) throw invalidEntry(index, 'id must be a non-empty string');
    if (typeof idType !== 'string') throw invalidEntry(index, 'idType must be a string');
    const unsupported = (): UvmError => invalidEntry(index, `specified device ${id} has unsupported type ${JSON.stringify(idType)}${host === 'process-isolated' ? ' for a process-isolated container' : host === 'linux' ? ' for LCOW' : ''}`);
    if (VPCI_ID_TYPES.includes(idType)) {
      if (host === 'process-isolated') throw unsupported();
      const { instancePath, virtualFunction } = parseDeviceId(id);
      return { kind: 'vpci', index, idType, id, instancePath, virtualFunction };
    }
    if (CONTAINER_DOCUMENT_ID_TYPES.includes(idType) && host !== 'linux') {
      const entry: ContainerDocumentDevice = idType === 'vpci-location-path' ? { Type: 'DeviceInstance', LocationPath: id } : { InterfaceClassGuid: id };
      return { kind: 'container-document', index, idType, id, entry };
    }
    throw unsupported();
  });
}

/** Marks the planned assignments whose function the UVM already has (for `planContainer`). */
export function markSharedDevices(planned: PlannedDevice[], assigned: readonly ResourceInfo[]): PlannedDevice[] {
  const live = new Set(assigned.filter((i) => i.kind === 'vpci-device').map((i) => i.key));
  return planned.map((d) => (d.kind === 'vpci' ? { ...d, shared: live.has(`${d.instancePath}/${d.virtualFunction}`) } : d));
}

export interface AcquiredDevices {
  assigned: AssignedDevice[];
  held: HeldResource[];
}

/**
 * Assigns the planned vPCI devices (all at once; hcsshim assigns them one by one). If one fails,
 * the others are released and the error is rethrown. NOT_SUPPORTED when `vpci` is absent (a
 * journaled UVM: vPCI leases are not journaled yet).
 */
export async function acquireDevices(
  os: GuestOs,
  vpci: Pick<VpciManager, 'acquire'> | undefined,
  planned: readonly PlannedDevice[],
  options: DeviceAcquireOptions,
): Promise<AcquiredDevices> {
  const toAssign = planned.filter((d): d is Extract<PlannedDevice, { kind: 'vpci' }> => d.kind === 'vpci');
  if (toAssign.length === 0) return { assigned: [], held: [] };
  if (!vpci) {
    throw new UvmError('NOT_SUPPORTED', 'this UVM cannot assign vPCI devices to containers (vPCI leases are not journaled)', {
      details: { field: `windows.devices[${toAssign[0]!.index}]` },
    });
  }
  const results = await Promise.allSettled(toAssign.map((d) => vpci.acquire({ instancePath: d.instancePath, virtualFunction: d.virtualFunction }, options)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.allSettled(results.flatMap((r) => (r.status === 'fulfilled' ? [r.value.release()] : [])));
    const err: unknown = failed.reason;
    if (UvmError.is(err)) Object.assign(err.details, { field: err.details.field ?? `windows.devices[${toAssign[results.indexOf(failed)]!.index}]` });
    throw err;
  }
  const assigned: AssignedDevice[] = [];
  const held: HeldResource[] = [];
  results.forEach((r, i) => {
    const lease = (r as PromiseFulfilledResult<Awaited<ReturnType<VpciManager['acquire']>>>).value;
    const d = toAssign[i]!;
    assigned.push({
      ...lease.value,
      index: d.index,
      idType: d.idType,
      ...(os === 'windows' ? { vmbusNodeInstanceId: `VMBUS\\{${VMBUS_DEVICE_CLASS}}\\{${lease.value.vmbusGuid}}` } : {}),
    });
    held.push(heldResource({ kind: 'device', source: 'vpci', hostPath: d.instancePath, guestPath: lease.value.vmbusGuid, lease }));
  });
  return { assigned, held };
}

/**
 * Rewrites `spec.windows.devices` in place: assigned entries get `id` = their VMBus GUID (idType
 * unchanged), as hcsshim sends the LCOW spec to the guest.
 */
export function rewriteDevices(spec: OciSpec, assigned: readonly AssignedDevice[]): void {
  const devices = (spec.windows as { devices?: { id: string; idType: string }[] } | undefined)?.devices;
  if (!devices) return;
  for (const a of assigned) devices[a.index] = { ...devices[a.index]!, id: a.vmbusGuid };
}

/** The container-document entries of the planned devices. */
export function containerDocumentDevices(planned: readonly PlannedDevice[]): ContainerDocumentDevice[] {
  return planned.flatMap((d) => (d.kind === 'container-document' ? [{ ...d.entry }] : []));
}

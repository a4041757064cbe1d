/**
 * The reconcile planner: a pure function from (journal, what HCS reports) to what to do.
 *
 * - adopt: records whose every part is present in HCS with the recorded identity (a SCSI slot
 *   holding the recorded disk, a share with the recorded name, …). Their refcounts and leases
 *   are rebuilt without any HCS call.
 * - remove: parts HCS reports that no adopted record claims (an acquisition that crashed before
 *   it was journaled, a release that crashed after its record was dropped, the other half of a
 *   record that is only partly there). Ordered for removal: guest entries first (CombinedLayers,
 *   then guest mounts), then SCSI unplugs, then host halves.
 * - forget: records with a part missing (a release that finished but whose record removal did
 *   not, or a VM that lost the resource). Their present parts, if unclaimed, are removed.
 * - rollback: adopted records of a container whose allocation never completed (no container
 *   record): adopted, then released through the managers (shared resources survive).
 *
 * Without an inventory (real HCS) every record is adopted and nothing can be found to remove;
 * when the system is not running nothing can be attached and every record is forgotten.
 */
import type { GuestOs } from '../devices/device-types.js';
import { hostPaths } from '../devices/host-paths.js';
import { PLAN9_PORT } from '../devices/plan9-manager.js';
import { partKeys, type HcsPart, type PartKind } from './parts.js';
import type { ContainerRecord, JsonObject, LeaseRecord } from './journal-format.js';

/** What reconcile compares the journal's records with. */
export interface HcsObservation {
  /** `Running`, `Created`, `Stopped`… from HCS's standard properties. */
  state: string;
  /** The journaled parts: what the library sent to HCS and did not remove (write-ahead, parts.ts). */
  parts: readonly HcsPart[];
}

export interface ReconcileInput {
  os: GuestOs;
  records: readonly LeaseRecord[];
  containers: readonly ContainerRecord[];
  hcs: HcsObservation;
}

export interface ForgottenRecord {
  record: LeaseRecord;
  /** The keys of the parts that were missing or held something else. */
  missing: string[];
}

export interface ReconcilePlan {
  /** `journal`: records compared with the journaled parts; `not-running`: nothing can be attached. */
  inventory: 'journal' | 'not-running';
  /** In record id order. */
  adopt: LeaseRecord[];
  /** In removal order. */
  remove: HcsPart[];
  forget: ForgottenRecord[];
  /** Adopted records to release right after adoption (in reverse id order), see above. */
  rollback: LeaseRecord[];
  containers: { adopt: ContainerRecord[]; forget: ContainerRecord[] };
}

/** A part a record needs, and how to tell that the part present under that key is the recorded one. */
interface ExpectedPart {
  key: string;
  kind: PartKind;
  matches(settings: JsonObject): boolean;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/** The path HCS gets for a SCSI request: an `evd://<type>/<path>` host path loses its prefix. */
function scsiAttachPath(request: JsonObject): string {
  const hostPath = String(request.hostPath);
  if (!hostPath.startsWith('evd://')) return hostPath;
  const rest = hostPath.slice('evd://'.length);
  return rest.slice(rest.indexOf('/') + 1);
}

/** `<instance path>/<virtual function>` of the first function of a VirtualPci Add's settings. */
function vpciFunctionOf(settings: JsonObject): string | undefined {
  const fn = Array.isArray(settings.Functions) ? (settings.Functions[0] as JsonObject | undefined) : undefined;
  if (!fn || typeof fn !== 'object') return undefined;
  return `${String(fn.DeviceInstancePath)}/${num(fn.VirtualFunction) ?? 0}`;
}

/** The parts a record needs present to be adopted. */
export function expectedParts(record: LeaseRecord, os: GuestOs): ExpectedPart[] {
  const { request, value } = record;
  switch (record.kind) {
    case 'scsi': {
      const controller = num(value.controller)!;
      const lun = num(value.lun)!;
      const parts: ExpectedPart[] = [
        {
          key: partKeys.scsi(controller, lun),
          kind: 'scsi-attachment',
          matches: (s) => s.Path === scsiAttachPath(request) && (s.ReadOnly === true) === (request.readOnly === true),
        },
      ];
      const guestPath = str(value.guestPath);
      if (guestPath !== undefined) {
        parts.push({
          key: partKeys.guestMount(guestPath),
          kind: 'scsi-mount',
          // LCOW: Controller absent = 0; WCOW mounts carry only the LUN (controller 0).
          matches: (s) => (num(s.Lun) ?? 0) === lun && (os === 'windows' ? controller === 0 : (num(s.Controller) ?? 0) === controller),
        });
      }
      return parts;
    }
    case 'vpmem': {
      const device = num(value.device)!;
      const offset = num(value.offset);
      const guestPath = str(value.guestPath)!;
      return [
        offset === undefined
          ? { key: partKeys.vpmemDevice(device), kind: 'vpmem-device', matches: (s) => s.HostPath === request.hostPath }
          : { key: partKeys.vpmemMapping(device, offset), kind: 'vpmem-mapping', matches: (s) => s.HostPath === request.hostPath },
        { key: partKeys.guestMount(guestPath), kind: 'vpmem-mount', matches: (s) => (num(s.DeviceNumber) ?? 0) === device },
      ];
    }
    case 'plan9': {
      const name = str(value.name)!;
      const mountPath = str(value.mountPath) ?? str(value.guestPath)!;
      return [
        { key: partKeys.plan9(name), kind: 'plan9-share', matches: () => true },
        { key: partKeys.guestMount(mountPath), kind: 'plan9-mount', matches: (s) => s.ShareName === name },
      ];
    }
    case 'vsmb': {
      const name = str(value.name)!;
      const hostPath = String(request.hostPath);
      const isFile = value.guestPath !== value.sharePath;
      return [
        {
          key: partKeys.vsmb(name),
          kind: 'vsmb-share',
          matches: (s) => {
            if (typeof s.Path !== 'string') return false;
            const dir = isFile ? hostPaths.dirname(hostPath) : hostPaths.clean(hostPath);
            return hostPaths.clean(s.Path) === dir;
          },
        },
      ];
    }
    case 'pipe':
      return [{ key: partKeys.pipe(String(request.hostPath)), kind: 'mapped-pipe', matches: () => true }];
    case 'vpci':
      // A boot device is in the create document: there as long as the VM is.
      if (value.boot === true) return [];
      return [{ key: partKeys.vpci(String(value.vmbusGuid)), kind: 'vpci-device', matches: (s) => vpciFunctionOf(s) === `${String(value.instancePath)}/${num(value.virtualFunction) ?? 0}` }];
    case 'combined-layers':
      return [{ key: partKeys.combined(String(value.ContainerRootPath)), kind: 'combined-layers', matches: () => true }];
  }
}

/** Removal stage of a part: guest overlays, guest mounts, host halves. */
function stage(part: HcsPart): number {
  switch (part.kind) {
    case 'combined-layers':
      return 0;
    case 'scsi-mount':
    case 'vpmem-mount':
    case 'plan9-mount':
    case 'guest-directory':
      return 1;
    default:
      return 2;
  }
}

/** Plans a reconcile. Pure: no I/O, no clock, deterministic order. */
export function planReconcile(input: ReconcileInput): ReconcilePlan {
  const records = [...input.records].sort((a, b) => a.id - b.id);
  const ownersWithRecord = new Set(input.containers.map((c) => c.id));
  if (input.hcs.state !== 'Running') {
    return {
      inventory: 'not-running',
      adopt: [],
      remove: [],
      forget: records.map((record) => ({ record, missing: expectedParts(record, input.os).map((p) => p.key) })),
      rollback: [],
      containers: { adopt: [], forget: [...input.containers] },
    };
  }
  const adopt: LeaseRecord[] = [];
  const forget: ForgottenRecord[] = [];
  const byKey = new Map(input.hcs.parts.map((p) => [p.key, p]));
  const claimed = new Set<string>();
  for (const record of records) {
    const expected = expectedParts(record, input.os);
    const missing = expected.filter((e) => {
      const part = byKey.get(e.key);
      return part === undefined || part.kind !== e.kind || !e.matches(part.settings);
    });
    if (missing.length === 0) {
      adopt.push(record);
      for (const e of expected) claimed.add(e.key);
    } else {
      forget.push({ record, missing: missing.map((m) => m.key) });
    }
  }
  // VM access grants are not in the VM: kept (revoked when it is terminated, journaled-grants.ts).
  const remove = input.hcs.parts
    .filter((p) => !claimed.has(p.key) && p.kind !== 'vm-access')
    .sort((a, b) => stage(a) - stage(b) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const adoptedOwners = new Set(adopt.flatMap((r) => (r.owner === undefined ? [] : [r.owner])));
  const rollback = adopt.filter((r) => r.owner !== undefined && !ownersWithRecord.has(r.owner));
  return {
    inventory: 'journal',
    adopt,
    remove,
    forget,
    rollback,
    containers: {
      adopt: input.containers.filter((c) => adoptedOwners.has(c.id)),
      forget: input.containers.filter((c) => !adoptedOwners.has(c.id)),
    },
  };
}

/**
 * The parts a record stands for, with settings a removal can be built from: what a version-1
 * journal (which had no write-ahead parts) is taken to have attached. Each part matches its
 * record (`expectedParts`).
 */
export function derivedParts(record: LeaseRecord, os: GuestOs): HcsPart[] {
  const { request, value } = record;
  const host = (key: string, kind: HcsPart['kind'], settings: JsonObject): HcsPart => ({ key, kind, half: 'host', settings });
  const guest = (key: string, kind: HcsPart['kind'], settings: JsonObject): HcsPart => ({ key, kind, half: 'guest', settings });
  switch (record.kind) {
    case 'scsi': {
      const controller = num(value.controller)!;
      const lun = num(value.lun)!;
      const readOnly = request.readOnly === true;
      const parts = [host(partKeys.scsi(controller, lun), 'scsi-attachment', { Path: scsiAttachPath(request), Type: String(value.type ?? 'VirtualDisk'), ReadOnly: readOnly, Controller: controller, Lun: lun })];
      const guestPath = str(value.guestPath);
      if (guestPath !== undefined) {
        // (LCOW: what an unmount carries, from the mount request when it is recorded.)
        const mount = (request.mount ?? {}) as JsonObject;
        const lcowMount: JsonObject = { MountPath: guestPath, Controller: controller, Lun: lun, ReadOnly: readOnly };
        if (num(mount.partition)) lcowMount.Partition = num(mount.partition)!;
        if (mount.encrypted === true) lcowMount.Encrypted = true;
        if (mount.blockDev === true) lcowMount.BlockDev = true;
        parts.push(guest(partKeys.guestMount(guestPath), 'scsi-mount', os === 'windows' ? { ContainerPath: guestPath, Lun: lun } : lcowMount));
      }
      return parts;
    }
    case 'vpmem': {
      const device = num(value.device)!;
      const offset = num(value.offset);
      const size = num(value.size);
      const guestPath = str(value.guestPath)!;
      const hostPath = String(request.hostPath);
      return [
        offset === undefined
          ? host(partKeys.vpmemDevice(device), 'vpmem-device', { HostPath: hostPath, ReadOnly: true, ImageFormat: 'Vhd1', DeviceNumber: device })
          : host(partKeys.vpmemMapping(device, offset), 'vpmem-mapping', { HostPath: hostPath, ImageFormat: 'Vhd1', DeviceNumber: device, Offset: offset }),
        guest(partKeys.guestMount(guestPath), 'vpmem-mount', {
          DeviceNumber: device,
          MountPath: guestPath,
          ...(offset === undefined ? {} : { MappingInfo: { DeviceOffsetInBytes: offset, DeviceSizeInBytes: size ?? 0 } }),
        }),
      ];
    }
    case 'plan9': {
      const name = str(value.name)!;
      const mountPath = str(value.mountPath) ?? str(value.guestPath)!;
      return [
        host(partKeys.plan9(name), 'plan9-share', { Name: name, AccessName: name, Path: String(request.hostPath), Port: PLAN9_PORT }),
        guest(partKeys.guestMount(mountPath), 'plan9-mount', { MountPath: mountPath, ShareName: name, Port: PLAN9_PORT }),
      ];
    }
    case 'vsmb': {
      const name = str(value.name)!;
      const hostPath = String(request.hostPath);
      const dir = value.guestPath !== value.sharePath ? hostPaths.dirname(hostPath) : hostPaths.clean(hostPath);
      return [host(partKeys.vsmb(name), 'vsmb-share', { Name: name, Path: dir })];
    }
    case 'pipe':
      return [host(partKeys.pipe(String(request.hostPath)), 'mapped-pipe', { Name: String(request.hostPath) })];
    case 'vpci': {
      // (Version 1 had no vPCI records; exhaustive for the record kinds.)
      if (value.boot === true) return [];
      const guid = String(value.vmbusGuid);
      const fn: JsonObject = { DeviceInstancePath: String(value.instancePath) };
      if ((num(value.virtualFunction) ?? 0) !== 0) fn.VirtualFunction = num(value.virtualFunction)!;
      return [host(partKeys.vpci(guid), 'vpci-device', { Functions: [fn], VMBusGUID: guid.toLowerCase() })];
    }
    case 'combined-layers':
      return [guest(partKeys.combined(String(value.ContainerRootPath)), 'combined-layers', { ContainerRootPath: String(value.ContainerRootPath) })];
  }
}

/**
 * What the journal knows is attached to a UVM, as a flat list of "parts": one host half (a SCSI
 * attachment, a VPMEM device or mapping, a Plan9 / VSMB share, a mapped pipe) or one guest entry
 * (a guest mount, a CombinedLayers) each. Real HCS cannot list them (docs/recovery.md): every part
 * is derived from a document the library itself sent (`partChangesOf`), journaled before the call
 * (write-ahead) and settled after it. Reconcile compares the lease records with the parts, and
 * removes the parts nobody claims.
 */
import type { GuestOs } from '../devices/device-types.js';
import { SCSI_CONTROLLER_GUIDS } from '../devices/resource-paths.js';
import type { ModifySettingRequest } from '../hcs/schema.js';
import type { JsonObject } from './journal-format.js';

export type HostPartKind = 'scsi-attachment' | 'vpmem-device' | 'vpmem-mapping' | 'plan9-share' | 'vsmb-share' | 'mapped-pipe' | 'vpci-device' | 'vm-access';
export type GuestPartKind = 'scsi-mount' | 'vpmem-mount' | 'plan9-mount' | 'guest-directory' | 'combined-layers';
export type PartKind = HostPartKind | GuestPartKind;

/** One unit of HCS state. `key` is its identity (at most one part per key). */
export interface HcsPart {
  key: string;
  kind: PartKind;
  half: 'host' | 'guest';
  /** The settings of the Add (or last Update) document, plus the slot taken from its path: what a removal is built from. */
  settings: JsonObject;
}

/**
 * A journaled part and where its write-ahead protocol stands:
 * - `adding`: the Add was journaled and sent; its outcome is unknown (or it failed).
 * - `attached`: HCS confirmed the Add.
 * - `removing`: the Remove was journaled and sent; its outcome is unknown (or it failed).
 */
export type PartState = 'adding' | 'attached' | 'removing';

export interface PartRecord extends HcsPart {
  state: PartState;
}

/** Part keys, in one place (the planner derives a record's expected keys with the same functions). */
export const partKeys = {
  scsi: (controller: number, lun: number): string => `scsi:${controller}:${lun}`,
  vpmemDevice: (device: number): string => `vpmem:${device}`,
  vpmemMapping: (device: number, offset: number): string => `vpmem:${device}@${offset}`,
  plan9: (name: string): string => `plan9:${name}`,
  vsmb: (name: string): string => `vsmb:${name}`,
  pipe: (name: string): string => `pipe:${name}`,
  /** A VM access grant (`HcsGrantVmAccess(vm, path)`) by file path: not in the VM, kept until it is terminated. */
  grant: (path: string): string => `grant:${path}`,
  /** An assigned device by its VMBus GUID (lowercase). */
  vpci: (vmbusGuid: string): string => `vpci:${vmbusGuid.toLowerCase()}`,
  /** Guest mount paths are unique across MappedVirtualDisk, VPMemDevice and MappedDirectory. */
  guestMount: (path: string): string => `mount:${path}`,
  combined: (containerRootPath: string): string => `combined:${containerRootPath}`,
} as const;

/** One change a document makes to the parts. */
export type PartChange =
  | { op: 'add'; part: HcsPart }
  | { op: 'update'; part: HcsPart }
  | { op: 'remove'; key: string; kind: PartKind; half: 'host' | 'guest' };

/** The settings object of a request (the library builds a fresh one per request and never changes it). */
function json(v: unknown): JsonObject {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as JsonObject) : {};
}

const SCSI = /^VirtualMachine\/Devices\/Scsi\/([0-9a-fA-F-]+)\/Attachments\/(\d+)$/;
const VPMEM = /^VirtualMachine\/Devices\/VirtualPMem\/Devices\/(\d+)(?:\/Mappings\/(\d+))?$/;
const PIPE = 'VirtualMachine/Devices/MappedPipes/';
const VPCI = /^VirtualMachine\/Devices\/VirtualPci\/([0-9a-fA-F-]{36})$/;

/** The host part a host request addresses (undefined: not a part, e.g. another resource path). */
function hostPartOf(path: string, settings: JsonObject): HcsPart | undefined {
  const scsi = SCSI.exec(path);
  if (scsi) {
    const controller = (SCSI_CONTROLLER_GUIDS as readonly string[]).indexOf(scsi[1]!.toLowerCase());
    if (controller < 0) return undefined;
    const lun = Number(scsi[2]);
    return { key: partKeys.scsi(controller, lun), kind: 'scsi-attachment', half: 'host', settings: { ...settings, Controller: controller, Lun: lun } };
  }
  const vpmem = VPMEM.exec(path);
  if (vpmem) {
    const device = Number(vpmem[1]);
    if (vpmem[2] === undefined) return { key: partKeys.vpmemDevice(device), kind: 'vpmem-device', half: 'host', settings: { ...settings, DeviceNumber: device } };
    const offset = Number(vpmem[2]);
    return { key: partKeys.vpmemMapping(device, offset), kind: 'vpmem-mapping', half: 'host', settings: { ...settings, DeviceNumber: device, Offset: offset } };
  }
  const vpci = VPCI.exec(path);
  if (vpci) {
    const guid = vpci[1]!.toLowerCase();
    return { key: partKeys.vpci(guid), kind: 'vpci-device', half: 'host', settings: { ...settings, VMBusGUID: guid } };
  }
  if (path.startsWith(PIPE)) {
    const name = path.slice(PIPE.length);
    return { key: partKeys.pipe(name), kind: 'mapped-pipe', half: 'host', settings: { ...settings, Name: name } };
  }
  const name = typeof settings.Name === 'string' ? settings.Name : undefined;
  if (name === undefined) return undefined;
  if (path === 'VirtualMachine/Devices/Plan9/Shares') return { key: partKeys.plan9(name), kind: 'plan9-share', half: 'host', settings };
  if (path === 'VirtualMachine/Devices/VirtualSmb/Shares') return { key: partKeys.vsmb(name), kind: 'vsmb-share', half: 'host', settings };
  return undefined;
}

/** The guest part a guest request addresses (undefined: not a part, e.g. a SCSI unplug). */
function guestPartOf(resourceType: string, settings: JsonObject, os: GuestOs): HcsPart | undefined {
  const path = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  switch (resourceType) {
    case 'MappedVirtualDisk': {
      const p = path(settings.MountPath) ?? path(settings.ContainerPath);
      return p === undefined ? undefined : { key: partKeys.guestMount(p), kind: 'scsi-mount', half: 'guest', settings };
    }
    case 'VPMemDevice': {
      const p = path(settings.MountPath);
      return p === undefined ? undefined : { key: partKeys.guestMount(p), kind: 'vpmem-mount', half: 'guest', settings };
    }
    case 'MappedDirectory': {
      if (os === 'linux' && path(settings.MountPath) !== undefined) {
        return { key: partKeys.guestMount(path(settings.MountPath)!), kind: 'plan9-mount', half: 'guest', settings };
      }
      const p = path(settings.ContainerPath) ?? path(settings.MountPath);
      return p === undefined ? undefined : { key: partKeys.guestMount(p), kind: 'guest-directory', half: 'guest', settings };
    }
    case 'CombinedLayers': {
      const p = path(settings.ContainerRootPath);
      return p === undefined ? undefined : { key: partKeys.combined(p), kind: 'combined-layers', half: 'guest', settings };
    }
    default:
      return undefined;
  }
}

function changeOf(requestType: unknown, part: HcsPart | undefined): PartChange[] {
  if (!part) return [];
  if (requestType === 'Remove') return [{ op: 'remove', key: part.key, kind: part.kind, half: part.half }];
  if (requestType === 'Update') return [{ op: 'update', part }];
  return [{ op: 'add', part }];
}

/**
 * The part changes of one HcsModifyComputeSystem document (host half, guest half, or both), in
 * the library's own wire format (src/devices/wire-requests.ts).
 */
export function partChangesOf(request: ModifySettingRequest, os: GuestOs): PartChange[] {
  const changes: PartChange[] = [];
  if (typeof request.ResourcePath === 'string') {
    changes.push(...changeOf(request.RequestType ?? 'Add', hostPartOf(request.ResourcePath, json(request.Settings))));
  }
  const guest = request.GuestRequest;
  if (guest && typeof guest.ResourceType === 'string') {
    changes.push(...changeOf(guest.RequestType, guestPartOf(guest.ResourceType, json(guest.Settings), os)));
  }
  return changes;
}

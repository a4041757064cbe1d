/**
 * What HCS reports as attached to a UVM, as a flat list of "parts": one host half (a SCSI
 * attachment, a VPMEM device or mapping, a Plan9 / VSMB share, a mapped pipe) or one guest entry
 * (a guest mount, a CombinedLayers) each. Parts are what reconcile compares the journal with, and
 * what it removes when nobody journaled them.
 *
 * On the simulator the inventory comes from the `SimulatorState` property type (native/README.md).
 * Real HCS has no property that lists the device tree: then there is no inventory and reconcile
 * trusts the journal (see docs/recovery.md).
 */
import type { GuestOs } from '../devices/device-types.js';
import { SCSI_CONTROLLER_GUIDS, SCSI_LUNS_PER_CONTROLLER } from '../devices/resource-paths.js';
import type { JsonObject } from './journal-format.js';

export type HostPartKind = 'scsi-attachment' | 'vpmem-device' | 'vpmem-mapping' | 'plan9-share' | 'vsmb-share' | 'mapped-pipe';
export type GuestPartKind = 'scsi-mount' | 'vpmem-mount' | 'plan9-mount' | 'guest-directory' | 'combined-layers';
export type PartKind = HostPartKind | GuestPartKind;

/** One unit of HCS state. `key` is its identity (at most one part per key). */
export interface HcsPart {
  key: string;
  kind: PartKind;
  half: 'host' | 'guest';
  /** The settings as HCS echoes them (what a removal document is built from). */
  settings: JsonObject;
}

/** Part keys, in one place (the planner derives a record's expected keys with the same functions). */
export const partKeys = {
  scsi: (controller: number, lun: number): string => `scsi:${controller}:${lun}`,
  vpmemDevice: (device: number): string => `vpmem:${device}`,
  vpmemMapping: (device: number, offset: number): string => `vpmem:${device}@${offset}`,
  plan9: (name: string): string => `plan9:${name}`,
  vsmb: (name: string): string => `vsmb:${name}`,
  pipe: (name: string): string => `pipe:${name}`,
  /** Guest mount paths are unique across MappedVirtualDisk, VPMemDevice and MappedDirectory. */
  guestMount: (path: string): string => `mount:${path}`,
  combined: (containerRootPath: string): string => `combined:${containerRootPath}`,
} as const;

/** The HCS view of a compute system that reconcile needs. */
export interface HcsObservation {
  /** `Running`, `Created`, `Stopped`… from the standard properties. */
  state: string;
  /** Every part HCS reports; undefined when HCS cannot list them (real HCS). */
  parts: HcsPart[] | undefined;
}

function record(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

function list(v: unknown): Record<string, unknown>[] {
  return Array.isArray(v) ? v.map(record) : [];
}

function json(v: Record<string, unknown>): JsonObject {
  return JSON.parse(JSON.stringify(v)) as JsonObject;
}

/**
 * The parts of a simulator `SimulatorState` (see native/README.md "Properties"). SCSI slots in
 * `reservedScsiSlots` (`controller * 64 + lun`, attached at boot) are never parts: the library
 * does not own them. Attachments on controllers the library does not know are skipped likewise.
 */
export function partsFromSimulatorState(state: unknown, os: GuestOs, reservedScsiSlots: readonly number[] = []): HcsPart[] {
  const s = record(state);
  const devices = record(s.Devices);
  const guest = record(s.Guest);
  const parts: HcsPart[] = [];
  const reserved = new Set(reservedScsiSlots);
  const host = (key: string, kind: HostPartKind, settings: Record<string, unknown>): void => {
    parts.push({ key, kind, half: 'host', settings: json(settings) });
  };
  const guestPart = (key: string, kind: GuestPartKind, settings: Record<string, unknown>): void => {
    parts.push({ key, kind, half: 'guest', settings: json(settings) });
  };

  for (const [guid, controller] of Object.entries(record(devices.Scsi))) {
    const index = (SCSI_CONTROLLER_GUIDS as readonly string[]).indexOf(guid.toLowerCase().replace(/[{}]/g, ''));
    if (index < 0) continue;
    for (const [lun, attachment] of Object.entries(record(record(controller).Attachments))) {
      if (reserved.has(index * SCSI_LUNS_PER_CONTROLLER + Number(lun))) continue;
      host(partKeys.scsi(index, Number(lun)), 'scsi-attachment', { ...record(attachment), Controller: index, Lun: Number(lun) });
    }
  }
  for (const [n, device] of Object.entries(record(record(devices.VirtualPMem).Devices))) {
    const d = record(device);
    const { Mappings: mappings, ...settings } = d;
    if (settings.HostPath !== undefined) host(partKeys.vpmemDevice(Number(n)), 'vpmem-device', { ...settings, DeviceNumber: Number(n) });
    for (const [offset, mapping] of Object.entries(record(mappings))) {
      host(partKeys.vpmemMapping(Number(n), Number(offset)), 'vpmem-mapping', { ...record(mapping), DeviceNumber: Number(n), Offset: Number(offset) });
    }
  }
  for (const share of list(record(devices.Plan9).Shares)) host(partKeys.plan9(String(share.Name)), 'plan9-share', share);
  for (const share of list(record(devices.VirtualSmb).Shares)) host(partKeys.vsmb(String(share.Name)), 'vsmb-share', share);
  for (const pipe of list(devices.MappedPipes)) host(partKeys.pipe(String(pipe.Name)), 'mapped-pipe', pipe);

  for (const m of list(guest.MappedVirtualDisks)) {
    guestPart(partKeys.guestMount(String(m.MountPath ?? m.ContainerPath)), 'scsi-mount', m);
  }
  for (const m of list(guest.VPMemDevices)) guestPart(partKeys.guestMount(String(m.MountPath)), 'vpmem-mount', m);
  for (const m of list(guest.MappedDirectories)) {
    if (os === 'linux' && m.MountPath !== undefined) guestPart(partKeys.guestMount(String(m.MountPath)), 'plan9-mount', m);
    else guestPart(partKeys.guestMount(String(m.ContainerPath ?? m.MountPath)), 'guest-directory', m);
  }
  for (const c of list(guest.CombinedLayers)) guestPart(partKeys.combined(String(c.ContainerRootPath)), 'combined-layers', c);
  return parts;
}

/**
 * Test support: the parts of a simulator `SimulatorState` (native/README.md "Properties"), to
 * check what recovery did against what the simulator really holds. Library code never reads the
 * simulator's device list (real HCS has none): recovery works from the journal alone.
 */
import type { GuestOs } from '../../src/devices/device-types.js';
import { SCSI_CONTROLLER_GUIDS, SCSI_LUNS_PER_CONTROLLER } from '../../src/devices/resource-paths.js';
import type { JsonObject } from '../../src/recovery/journal-format.js';
import { partKeys, type GuestPartKind, type HcsPart, type HostPartKind } from '../../src/recovery/parts.js';

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

import path from 'node:path';
import type { ResourceInfo } from '../devices/device-types.js';
import { displayPath } from './display-path.js';
import { MANAGERS, type ManagerName, type RunReport } from './run-report.js';
import { textTable } from './text-table.js';

export const MANAGER_TITLES: Record<ManagerName, string> = {
  vpmem: 'VPMEM',
  scsi: 'SCSI',
  plan9: 'Plan9',
  vsmb: 'VSMB',
  pipes: 'Mapped pipes',
  vpci: 'Assigned devices (vPCI)',
};

/**
 * The readable form of a run report: per container its rootfs and each mount's source → guest
 * path; then one table per manager (resource, slot/name, guest path, refcount); then the teardown
 * verdict. Host paths inside the scenario's folder are shown relative to it.
 */
export function formatRunReport(report: RunReport): string {
  const base = path.dirname(report.scenario);
  const out: string[] = [];
  out.push(`UVM ${report.uvm.id} (${report.uvm.os}, ${report.uvm.backend === 'simulator' ? 'HCS simulator' : 'HCS'})`);
  out.push(`Host paths are relative to ${base}`);

  for (const c of report.containers) {
    out.push('', `Container ${c.id}`, `  rootfs  ${c.rootfs ?? '(none)'}`);
    if (c.mounts.length === 0) {
      out.push('  mounts  (none)');
      continue;
    }
    const rows = c.mounts.map((m) => [
      m.destination,
      m.guestType === undefined ? (m.type ?? '') : `${m.type ?? ''} -> ${m.guestType}`,
      displayPath(m.source, base),
      m.guestSource === m.source ? '(unchanged)' : `-> ${m.guestSource ?? ''}`,
    ]);
    out.push(indent(textTable(['destination', 'type', 'source', 'guest path'], rows), '  '));
    for (const e of c.containerEntries) {
      out.push(
        e.kind === 'mapped-directory'
          ? `  container document: MappedDirectory ${e.value.ContainerPath} <- ${e.value.HostPath}${e.value.ReadOnly ? ' (ro)' : ''}`
          : `  container document: MappedPipe ${e.value.ContainerPipeName} <- ${e.value.HostPath}`,
      );
    }
  }

  for (const manager of MANAGERS) {
    const resources = report.resources[manager];
    if (resources.length === 0) continue;
    out.push('', `${MANAGER_TITLES[manager]} (${resources.length})`);
    out.push(indent(resourceTable(resources, base), '  '));
  }
  if (MANAGERS.every((m) => report.resources[m].length === 0)) out.push('', 'No device resources.');

  out.push('', teardownLine(report, base));
  return out.join('\n');
}

/** A table of `describe()` entries: resource, kind, slot/name, guest path, refcount (and state when not live). */
export function resourceTable(resources: readonly ResourceInfo[], base: string | undefined): string {
  // A SCSI guest mount has no host path of its own: show the disk attached at its slot.
  const diskAt = new Map(resources.flatMap((r) => (r.kind === 'scsi-attachment' && r.slot && r.hostPath ? [[r.slot, r.hostPath] as const] : [])));
  const resourceOf = (r: ResourceInfo): string => r.hostPath ?? (r.kind === 'scsi-mount' && r.slot ? diskAt.get(r.slot) : undefined) ?? r.key;
  const showState = resources.some((r) => r.state !== 'live');
  const headers = ['resource', 'kind', 'slot/name', 'guest path', 'refs', ...(showState ? ['state'] : [])];
  const rows = resources.map((r) => [
    displayPath(resourceOf(r), base),
    r.kind,
    r.slot ?? '',
    r.guestPath ?? '',
    String(r.refCount),
    ...(showState ? [r.state] : []),
  ]);
  return textTable(headers, rows);
}

function teardownLine(report: RunReport, base: string): string {
  const t = report.teardown;
  if (!t.performed) return 'Teardown: skipped (kept as requested); nothing was checked.';
  const idle = t.sharesKept > 0 ? `, ${t.sharesKept} direct-mapped VSMB share${t.sharesKept === 1 ? '' : 's'} kept until the VM exits` : '';
  const released = `released ${t.released.length} container${t.released.length === 1 ? '' : 's'}${idle}`;
  const sim = t.hotAdded === null ? '' : `, simulator HotAdded ${t.hotAdded}`;
  if (t.remaining.length === 0 && (t.hotAdded ?? 0) === t.sharesKept) return `Teardown: ${released}; nothing left${sim}.`;
  const lines = [`Teardown: ${released}; LEFT BEHIND: ${t.remaining.length} resource(s)${sim}`];
  if (t.remaining.length > 0) lines.push(indent(resourceTable(t.remaining, base), '  '));
  return lines.join('\n');
}

function indent(text: string, prefix: string): string {
  return text
    .split('\n')
    .map((l) => (l === '' ? l : prefix + l))
    .join('\n');
}

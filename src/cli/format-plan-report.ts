import path from 'node:path';
import type { ContainerPlan } from '../containers/allocate-container.js';
import type { PlannedMount } from '../oci/mount-planner.js';
import { displayPath } from './display-path.js';
import { MANAGER_TITLES, resourceTable } from './format-run-report.js';
import type { PlanReport } from './plan-command.js';
import { MANAGERS } from './run-report.js';
import { textTable } from './text-table.js';

const SCSI_REASONS: Record<string, string> = {
  'too-large': 'larger than a VPMEM device',
  'no-slot': 'no free VPMEM device',
  'physically-backed': 'UVM fully physically backed',
  'vpmem-disabled': 'no VPMEM devices',
  partitioned: 'partitioned layer',
};

/** The readable form of a plan: per container its layers, scratch, rootfs and mounts; then the predicted tables. */
export function formatPlanReport(report: PlanReport): string {
  const base = path.dirname(report.scenario);
  const out: string[] = [`Plan for UVM ${report.uvm.id} (${report.uvm.os}); dry run, no HCS call`, `Host paths are relative to ${base}`];
  for (const plan of report.containers) out.push('', ...containerLines(plan, base));
  const predicted = MANAGERS.filter((m) => report.resources[m].length > 0);
  if (predicted.length > 0) {
    out.push('', 'Predicted resources once every planned container is allocated:');
    for (const m of predicted) out.push('', `${MANAGER_TITLES[m]} (${report.resources[m].length})`, indent(resourceTable(report.resources[m], base)));
  }
  out.push('', report.fits ? 'Every container fits.' : `Container ${report.containers.at(-1)?.containerId ?? '?'} does NOT fit.`);
  return out.join('\n');
}

function containerLines(plan: ContainerPlan, base: string): string[] {
  const vpmem = plan.os === 'linux' ? `VPMEM ${plan.slotsLeft.vpmem}, ` : '';
  const out = [`Container ${plan.containerId}: ${plan.fits ? 'fits' : 'DOES NOT FIT'}; slots left after it: ${vpmem}SCSI ${plan.slotsLeft.scsi}`];
  const root = plan.rootfs;
  if (root.kind === 'plan9-root') {
    out.push(`  rootfs  Plan9 share of ${displayPath(root.hostPath, base)}${root.readOnly ? ' (ro)' : ''}${root.shared ? ', shared' : ''}`);
  } else {
    const lp = root.plan;
    if (lp.os === 'linux') {
      out.push(`  rootfs  ${lp.rootfsPath}`, '  layers (top-most first)');
      const rows = lp.layers.map((l) => [
        String(l.index),
        displayPath(l.hostPath, base),
        l.sizeBytes === undefined ? '' : formatBytes(l.sizeBytes),
        l.target === 'vpmem' ? 'VPMEM' : `SCSI (${SCSI_REASONS[l.reason ?? ''] ?? l.reason ?? ''})`,
        l.shared ? 'shared' : 'new',
      ]);
      out.push(indent(textTable(['#', 'layer', 'size', 'target', 'status'], rows), '    '));
      out.push(`  scratch ${scratchLine(lp.scratch, base)}`, `  upper/work ${lp.scratchPath ?? '(where the scratch is mounted)'}`);
    } else {
      out.push('  layers (top-most first)');
      const rows = lp.layers.map((l) => [String(l.index), displayPath(l.folder, base), 'VSMB', l.id, l.shared ? 'shared' : 'new']);
      out.push(indent(textTable(['#', 'layer folder', 'target', 'layer id', 'status'], rows), '    '));
      out.push(`  scratch ${scratchLine(lp.scratch, base)} (the container root)`);
    }
  }
  if (plan.mounts.length > 0) {
    out.push('  mounts');
    out.push(indent(textTable(['destination', 'plan'], plan.mounts.map((m) => [m.mount.destination, mountPlanText(m, base)])), '    '));
  }
  if (plan.devices.length > 0) {
    out.push('  devices');
    const rows = plan.devices.map((d) =>
      d.kind === 'vpci'
        ? [String(d.index), d.idType, d.instancePath, `vPCI function ${d.virtualFunction}${d.shared ? ', shared' : ', new'}`]
        : [String(d.index), d.idType, d.id, 'container document'],
    );
    out.push(indent(textTable(['#', 'idType', 'device', 'plan'], rows), '    '));
  }
  return out;
}

function scratchLine(s: { hostPath: string; resolvedPath: string; shared: boolean; mountPath: string | undefined }, base: string): string {
  const resolved = s.resolvedPath === s.hostPath ? '' : ` (-> ${displayPath(s.resolvedPath, base)})`;
  return `${displayPath(s.hostPath, base)}${resolved} on SCSI at ${s.mountPath ?? 'the next c:\\mounts\\scsi\\m<i>'}${s.shared ? ', shared' : ''}`;
}

/** One line per planned mount. */
export function mountPlanText(m: PlannedMount, base: string): string {
  switch (m.kind) {
    case 'keep':
      return m.reason === 'guest-source' ? `kept: ${m.mount.source ?? ''} (resolved in the guest)` : 'kept (not a host mount)';
    case 'guest':
      return `guest path ${m.source}${m.readOnly ? ' (ro)' : ''}`;
    case 'device': {
      const what = m.hostKind === undefined ? '' : ` ${m.hostKind}`;
      const ro = m.readOnly ? ' (ro)' : '';
      switch (m.device) {
        case 'scsi':
          return `SCSI ${m.request.type ?? 'VirtualDisk'} ${displayPath(m.request.hostPath, base)}${ro}`;
        case 'plan9':
          return `Plan9 share of${what} ${displayPath(m.request.hostPath, base)}${ro}`;
        case 'vsmb':
          return `VSMB share of${what} ${displayPath(m.request.hostPath, base)}${ro}`;
        case 'pipe':
          return `mapped pipe ${m.request.hostPath}`;
      }
    }
  }
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1 && v % 1024 === 0) {
    v /= 1024;
    u += 1;
  }
  return `${v} ${units[u]}`;
}

function indent(text: string, prefix = '  '): string {
  return text
    .split('\n')
    .map((l) => (l === '' ? l : prefix + l))
    .join('\n');
}

import { expect } from 'chai';
import { formatPlanReport } from '../../../src/cli/format-plan-report.js';
import type { PlanReport } from '../../../src/cli/plan-command.js';
import { groupResources } from '../../../src/cli/run-report.js';

const MIB = 1024 * 1024;

function lcowPlan(): PlanReport {
  return {
    command: 'plan',
    scenario: '/pods/p/scenario.json',
    uvm: { id: 'pod', os: 'linux' },
    containers: [
      {
        containerId: 'web',
        os: 'linux',
        rootfs: {
          kind: 'layers',
          plan: {
            os: 'linux',
            layers: [
              { index: 0, hostPath: '/pods/p/host/web/layer.vhd', sizeBytes: 4 * MIB, target: 'vpmem', shared: false },
              { index: 1, hostPath: '/pods/p/host/big/layer.vhd', sizeBytes: 96 * MIB, target: 'scsi', reason: 'too-large', shared: true },
            ],
            scratch: { hostPath: '/pods/p/host/s/sandbox.vhdx', resolvedPath: '/pods/p/host/s/sandbox.vhdx', shared: false, mountPath: '/run/gcs/c/web' },
            rootfsPath: '/run/gcs/c/web/rootfs',
            scratchPath: '/run/gcs/c/web/scratch/web',
            slotsLeft: { vpmem: 3, scsi: 61 },
            fits: true,
          },
        },
        devices: [],
        resources: [],
        mounts: [
          { index: 0, mount: { destination: '/proc', type: 'proc', source: 'proc' }, kind: 'keep', reason: 'not-a-host-mount' },
          {
            index: 1,
            mount: { destination: '/etc/a.conf', type: 'bind', source: '/pods/p/host/a.conf', options: ['ro'] },
            kind: 'device',
            device: 'plan9',
            request: { hostPath: '/pods/p/host/a.conf', readOnly: true },
            readOnly: true,
            rewriteType: 'bind',
            hostKind: 'file',
          },
          {
            index: 2,
            mount: { destination: '/d', type: 'virtual-disk', source: '/disks/d.vhdx' },
            kind: 'device',
            device: 'scsi',
            request: { hostPath: '/disks/d.vhdx', readOnly: false, type: 'VirtualDisk' },
            readOnly: false,
            rewriteType: 'none',
          },
        ],
        slotsLeft: { vpmem: 3, scsi: 60 },
        fits: true,
      },
    ],
    resources: groupResources([
      { kind: 'plan9-share', key: '/pods/p/host/a.conf', state: 'live', refCount: 1, hostPath: '/pods/p/host/a.conf', slot: '0', guestPath: '/run/mounts/plan9/0' },
    ]),
    fits: true,
  };
}

describe('cli/format-plan-report', () => {
  it('renders layers with target and reason, scratch, mounts and the predicted tables', () => {
    const text = formatPlanReport(lcowPlan());
    const lines = text.split('\n');
    expect(lines[0]).to.equal('Plan for UVM pod (linux); dry run, no HCS call');
    expect(lines).to.include('Container web: fits; slots left after it: VPMEM 3, SCSI 60');
    expect(text).to.match(/0 +host\/web\/layer\.vhd +4 MiB +VPMEM +new/);
    expect(text).to.match(/1 +host\/big\/layer\.vhd +96 MiB +SCSI \(larger than a VPMEM device\) +shared/);
    expect(lines).to.include('  scratch host/s/sandbox.vhdx on SCSI at /run/gcs/c/web');
    expect(text).to.match(/\/proc +kept \(not a host mount\)/);
    expect(text).to.match(/\/etc\/a\.conf +Plan9 share of file host\/a\.conf \(ro\)/);
    expect(text).to.match(/\/d +SCSI VirtualDisk \/disks\/d\.vhdx$/m);
    expect(lines).to.include('Plan9 (1)');
    expect(lines.at(-1)).to.equal('Every container fits.');
  });

  it('says which container does not fit', () => {
    const plan = lcowPlan();
    plan.fits = false;
    plan.containers[0]!.fits = false;
    const lines = formatPlanReport(plan).split('\n');
    expect(lines).to.include('Container web: DOES NOT FIT; slots left after it: VPMEM 3, SCSI 60');
    expect(lines.at(-1)).to.equal('Container web does NOT fit.');
  });
});

import { expect } from 'chai';
import { formatRunReport } from '../../../src/cli/format-run-report.js';
import { groupResources, type RunReport } from '../../../src/cli/run-report.js';
import { textTable } from '../../../src/cli/text-table.js';

function report(): RunReport {
  return {
    command: 'run',
    scenario: '/pods/p/scenario.json',
    uvm: { id: 'pod', os: 'linux', backend: 'simulator' },
    containers: [
      {
        id: 'web',
        bundle: '/pods/p/bundles/web',
        rootfs: '/run/gcs/c/web/rootfs',
        mounts: [
          { index: 0, destination: '/etc/a.conf', type: 'bind', source: '/pods/p/host/a.conf', guestSource: '/run/gcs/c/web/mounts/m0/a.conf' },
          { index: 1, destination: '/proc', type: 'proc', source: 'proc', guestSource: 'proc' },
          { index: 2, destination: '/d', type: 'virtual-disk', guestType: 'none', source: '/elsewhere/d.vhdx', guestSource: '/run/mounts/scsi/m1' },
        ],
        containerEntries: [],
      },
    ],
    resources: groupResources([
      { kind: 'vpmem-device', key: '/pods/p/host/l1/layer.vhd', state: 'live', refCount: 2, hostPath: '/pods/p/host/l1/layer.vhd', slot: '0', guestPath: '/run/layers/p0' },
      { kind: 'scsi-attachment', key: 'k', state: 'live', refCount: 1, hostPath: '/pods/p/host/l2/layer.vhd', slot: '0:0' },
      { kind: 'scsi-mount', key: 'k2', state: 'live', refCount: 1, hostPath: '/pods/p/host/l2/layer.vhd', slot: '0:0', guestPath: '/run/mounts/scsi/m0' },
    ]),
    teardown: { performed: true, released: ['web'], sharesKept: 0, remaining: [], hotAdded: 0 },
    ok: true,
  };
}

describe('cli/format-run-report', () => {
  it('renders containers, one table per non-empty manager, and the teardown verdict', () => {
    const text = formatRunReport(report());
    const lines = text.split('\n');
    expect(lines[0]).to.equal('UVM pod (linux, HCS simulator)');
    expect(lines).to.include('Container web');
    expect(lines).to.include('  rootfs  /run/gcs/c/web/rootfs');
    // Host paths inside the scenario's folder are relative; others stay absolute.
    expect(text).to.match(/\/etc\/a\.conf +bind +host\/a\.conf +-> \/run\/gcs\/c\/web\/mounts\/m0\/a\.conf/);
    expect(text).to.match(/\/proc +proc +proc +\(unchanged\)/);
    expect(text).to.match(/\/d +virtual-disk -> none +\/elsewhere\/d\.vhdx +-> \/run\/mounts\/scsi\/m1/);
    expect(lines).to.include('VPMEM (1)');
    expect(lines).to.include('SCSI (2)');
    expect(lines).to.not.include('Plan9 (0)');
    expect(text).to.match(/host\/l1\/layer\.vhd +vpmem-device +0 +\/run\/layers\/p0 +2/);
    // A SCSI guest mount shows the disk attached at its slot.
    expect(text).to.match(/host\/l2\/layer\.vhd +scsi-mount +0:0 +\/run\/mounts\/scsi\/m0 +1/);
    expect(lines.indexOf('VPMEM (1)')).to.be.lessThan(lines.indexOf('SCSI (2)'));
    expect(lines.at(-1)).to.equal('Teardown: released 1 container; nothing left, simulator HotAdded 0.');
  });

  it('lists what is left behind', () => {
    const r = report();
    r.ok = false;
    r.teardown.remaining = [{ kind: 'plan9-share', key: '/pods/p/host/data', state: 'teardown-failed', refCount: 0, hostPath: '/pods/p/host/data', slot: '0' }];
    const text = formatRunReport(r);
    expect(text).to.include('LEFT BEHIND: 1 resource(s)');
    expect(text).to.match(/host\/data +plan9-share +0 +0 +teardown-failed/);
  });

  it('says when the teardown was skipped', () => {
    const r = report();
    r.teardown = { performed: false, released: [], sharesKept: 0, remaining: [], hotAdded: null };
    expect(formatRunReport(r).split('\n').at(-1)).to.match(/^Teardown: skipped/);
  });

  it('pads table columns to the widest cell', () => {
    expect(textTable(['a', 'bb'], [['xxx', 'y'], ['', 'zzz']])).to.equal('a    bb\n---  ---\nxxx  y\n     zzz');
  });
});

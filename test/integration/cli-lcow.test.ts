import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { RunReport } from '../../src/cli/run-report.js';
import type { PlanReport } from '../../src/cli/plan-command.js';
import { expectBalanced, expectInOrder, modifyDocs, readTrace, REPO, runCli, type TraceLine } from './cli-support.js';

const POD = path.join(REPO, 'examples', 'lcow-pod');
const SCENARIO = path.join(POD, 'scenario.json');
const SCSI0 = 'VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments';
const host = (rel: string): string => path.join(POD, 'host', rel);

/** VPMEM Add (host + guest in one document); device 0 omits DeviceNumber (omitempty). */
function vpmemAdd(device: number, layer: string): unknown {
  return {
    ResourcePath: `VirtualMachine/Devices/VirtualPMem/Devices/${device}`,
    RequestType: 'Add',
    Settings: { HostPath: host(`layers/${layer}/layer.vhd`), ReadOnly: true, ImageFormat: 'Vhd1' },
    GuestRequest: { RequestType: 'Add', ResourceType: 'VPMemDevice', Settings: { ...(device ? { DeviceNumber: device } : {}), MountPath: `/run/layers/p${device}` } },
  };
}

function vpmemRemove(device: number): unknown {
  return {
    ResourcePath: `VirtualMachine/Devices/VirtualPMem/Devices/${device}`,
    RequestType: 'Remove',
    GuestRequest: { RequestType: 'Remove', ResourceType: 'VPMemDevice', Settings: { ...(device ? { DeviceNumber: device } : {}), MountPath: `/run/layers/p${device}` } },
  };
}

const guest = (RequestType: string, ResourceType: string, Settings: unknown): unknown => ({ GuestRequest: { RequestType, ResourceType, Settings } });

describe('uvmctl on the simulator: the LCOW pod example', function () {
  this.timeout(30000);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'uvmctl-lcow-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('run --json --trace', () => {
    let report: RunReport;
    let trace: TraceLine[];
    let docs: any[];
    before(async () => {
      const traceFile = path.join(dir, 'run.jsonl');
      const result = await runCli(['run', SCENARIO, '--json', '--trace', traceFile]);
      expect(result.code, result.stderr).to.equal(0);
      report = JSON.parse(result.stdout) as RunReport;
      trace = await readTrace(traceFile);
      docs = modifyDocs(trace);
      expect(result.stderr).to.include('[uvmctl] allocating container web (2/3)');
    });

    it('reports every container with its rootfs and rewritten mounts', () => {
      expect(report.ok).to.equal(true);
      expect(report.uvm).to.deep.equal({ id: 'lcow-pod', os: 'linux', backend: 'simulator' });
      expect(report.containers.map((c) => [c.id, c.rootfs])).to.deep.equal([
        ['pause', '/run/gcs/c/pause/rootfs'],
        ['web', '/run/gcs/c/web/rootfs'],
        ['api', '/run/gcs/c/api/rootfs'],
      ]);
      const web = report.containers[1]!;
      expect(web.mounts.map((m) => [m.destination, m.source, m.guestSource])).to.deep.equal([
        ['/proc', 'proc', 'proc'],
        ['/etc/web/web.conf', host('config/web.conf'), '/run/mounts/plan9/0/web.conf'],
        ['/var/lib/web', host('data'), '/run/mounts/plan9/1'],
        ['/var/cache/web', host('disks/cache.vhdx'), '/run/mounts/scsi/m1'],
      ]);
      expect(web.mounts[3]!.guestType).to.equal('none');
    });

    it('lists each manager with the shared layers refcounted', () => {
      const vpmem = report.resources.vpmem.map((r) => [r.hostPath, r.slot, r.guestPath, r.refCount]);
      expect(vpmem).to.deep.equal([
        [host('layers/pause/layer.vhd'), '0', '/run/layers/p0', 1],
        [host('layers/web/layer.vhd'), '1', '/run/layers/p1', 1],
        [host('layers/base3/layer.vhd'), '2', '/run/layers/p2', 2],
        [host('layers/base1/layer.vhd'), '3', '/run/layers/p3', 2],
        [host('layers/api/layer.vhd'), '4', '/run/layers/p4', 1],
      ]);
      const base2 = report.resources.scsi.find((r) => r.kind === 'scsi-attachment' && r.hostPath === host('layers/base2/layer.vhd'));
      expect(base2).to.include({ slot: '0:1', refCount: 2 });
      expect(report.resources.plan9.map((r) => [r.hostPath, r.refCount])).to.deep.equal([
        [host('config/web.conf'), 1],
        [host('data'), 2],
      ]);
    });

    it('sends the key documents in order: VPMEM, SCSI fallback, scratch, CombinedLayers (top-most first)', () => {
      expect(trace[0]!.fn).to.equal('HcsCreateComputeSystem');
      expect(trace[0]!.doc.VirtualMachine.Devices.VirtualPMem).to.deep.equal({ MaximumCount: 8, MaximumSizeBytes: 67108864 });
      expect(trace.every((t) => t.hr === 0)).to.equal(true);
      expectInOrder(docs, [
        vpmemAdd(0, 'pause'),
        vpmemAdd(1, 'web'),
        vpmemAdd(2, 'base3'),
        // base2 (96 MiB) exceeds the 64 MiB VPMEM device: read-only SCSI, host half then guest mount.
        { ResourcePath: `${SCSI0}/1`, RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: host('layers/base2/layer.vhd'), ReadOnly: true } },
        guest('Add', 'MappedVirtualDisk', { MountPath: '/run/mounts/scsi/m0', Lun: 1, ReadOnly: true, Options: ['ro'] }),
        vpmemAdd(3, 'base1'),
        // web's scratch: read-write, formatted, mounted at the container root.
        { ResourcePath: `${SCSI0}/2`, RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: host('scratch/web/sandbox.vhdx') } },
        guest('Add', 'MappedVirtualDisk', { MountPath: '/run/gcs/c/web', Lun: 2, EnsureFilesystem: true, Filesystem: 'ext4' }),
        guest('Add', 'CombinedLayers', {
          ContainerID: 'web',
          ContainerRootPath: '/run/gcs/c/web/rootfs',
          Layers: [{ Path: '/run/layers/p1' }, { Path: '/run/layers/p2' }, { Path: '/run/mounts/scsi/m0' }, { Path: '/run/layers/p3' }],
          ScratchPath: '/run/gcs/c/web/scratch/web',
        }),
        // api reuses base3, base2 and base1: only its own layer is added.
        vpmemAdd(4, 'api'),
        guest('Add', 'CombinedLayers', {
          ContainerID: 'api',
          ContainerRootPath: '/run/gcs/c/api/rootfs',
          Layers: [{ Path: '/run/layers/p4' }, { Path: '/run/layers/p2' }, { Path: '/run/mounts/scsi/m0' }, { Path: '/run/layers/p3' }],
          ScratchPath: '/run/gcs/c/api/scratch/api',
        }),
      ]);
      // The scratch is granted to the VM before it is attached; layers are not.
      const grants = trace.filter((t) => t.fn === 'HcsGrantVmAccess').map((t) => t.doc.Path);
      expect(grants).to.have.members([host('scratch/pause/sandbox.vhdx'), host('scratch/web/sandbox.vhdx'), host('scratch/api/sandbox.vhdx'), host('disks/cache.vhdx')]);
    });

    it('tears down in reverse: CombinedLayers Remove, then scratch, then layers; shared layers last', () => {
      const base2Remove = { ResourcePath: `${SCSI0}/1`, RequestType: 'Remove' };
      expectInOrder(docs, [
        guest('Remove', 'CombinedLayers', { ContainerRootPath: '/run/gcs/c/api/rootfs' }),
        guest('Remove', 'MappedVirtualDisk', { MountPath: '/run/gcs/c/api', Lun: 4 }),
        guest('Remove', 'SCSIDevice', { Lun: 4 }),
        { ResourcePath: `${SCSI0}/4`, RequestType: 'Remove' },
        vpmemRemove(4),
        guest('Remove', 'CombinedLayers', { ContainerRootPath: '/run/gcs/c/web/rootfs' }),
        guest('Remove', 'MappedVirtualDisk', { MountPath: '/run/gcs/c/web', Lun: 2 }),
        { ResourcePath: `${SCSI0}/2`, RequestType: 'Remove' },
        // The layers api and web shared go with their last user, web.
        vpmemRemove(3),
        guest('Remove', 'MappedVirtualDisk', { MountPath: '/run/mounts/scsi/m0', Lun: 1, ReadOnly: true }),
        base2Remove,
        vpmemRemove(2),
        vpmemRemove(1),
        guest('Remove', 'CombinedLayers', { ContainerRootPath: '/run/gcs/c/pause/rootfs' }),
        vpmemRemove(0),
      ]);
      expectBalanced(docs);
      const terminate = trace.findIndex((t) => t.fn === 'HcsTerminateComputeSystem');
      const lastModify = trace.map((t) => t.fn).lastIndexOf('HcsModifyComputeSystem');
      expect(terminate).to.be.greaterThan(lastModify);
    });

    it('checked the simulator after the teardown: nothing hot-added, nothing described', () => {
      expect(report.teardown).to.deep.equal({ performed: true, released: ['api', 'web', 'pause'], idleSharesRemoved: 0, remaining: [], hotAdded: 0 });
      const query = trace.findIndex((t) => t.fn === 'HcsGetComputeSystemProperties' && t.doc?.PropertyTypes?.[0] === 'SimulatorState');
      expect(query).to.be.greaterThan(trace.map((t) => t.fn).lastIndexOf('HcsModifyComputeSystem'));
    });
  });

  it('plan makes no HCS call and predicts the same placement', async () => {
    const traceFile = path.join(dir, 'plan.jsonl');
    const result = await runCli(['plan', SCENARIO, '--json', '--trace', traceFile], { HCSSIM_TRACE: traceFile });
    expect(result.code, result.stderr).to.equal(0);
    expect(await readTrace(traceFile)).to.deep.equal([]);
    const plan = JSON.parse(result.stdout) as PlanReport;
    expect(plan.fits).to.equal(true);
    const layers = plan.containers.map((c) => (c.rootfs.kind === 'layers' && c.rootfs.plan.os === 'linux' ? c.rootfs.plan.layers : []));
    expect(layers[1]!.map((l) => [path.basename(path.dirname(l.hostPath)), l.target, l.reason ?? null, l.shared])).to.deep.equal([
      ['web', 'vpmem', null, false],
      ['base3', 'vpmem', null, false],
      ['base2', 'scsi', 'too-large', false],
      ['base1', 'vpmem', null, false],
    ]);
    expect(layers[2]!.map((l) => l.shared)).to.deep.equal([false, true, true, true]);
    expect(plan.containers[2]!.slotsLeft).to.deep.equal({ vpmem: 3, scsi: 59 });
  });

  it('--keep leaves everything attached: no removal and no terminate in the trace', async () => {
    const traceFile = path.join(dir, 'keep.jsonl');
    const result = await runCli(['run', SCENARIO, '--json', '--keep', '--trace', traceFile]);
    expect(result.code, result.stderr).to.equal(0);
    const report = JSON.parse(result.stdout) as RunReport;
    expect(report.teardown.performed).to.equal(false);
    const trace = await readTrace(traceFile);
    expect(modifyDocs(trace).filter((d) => d.RequestType === 'Remove' || d.GuestRequest?.RequestType === 'Remove')).to.deep.equal([]);
    expect(trace.some((t) => t.fn === 'HcsTerminateComputeSystem')).to.equal(false);
  });
});

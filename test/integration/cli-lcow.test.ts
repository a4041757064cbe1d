import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ResourceInfo } from '../../src/devices/device-types.js';
import type { PlanReport } from '../../src/cli/plan-command.js';
import type { RunReport } from '../../src/cli/run-report.js';
import { expectBalanced, expectBefore, expectInOrder, modifyDocs, readTrace, REPO, runCli, split, type TraceLine } from './cli-support.js';

const POD = path.join(REPO, 'examples', 'lcow-pod');
const SCENARIO = path.join(POD, 'scenario.json');
const SCSI0 = 'VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments';
const host = (rel: string): string => path.join(POD, 'host', rel);
const layerVhd = (layer: string): string => host(`layers/${layer}/layer.vhd`);
const guest = (RequestType: string, ResourceType: string, Settings: unknown): unknown => ({ GuestRequest: { RequestType, ResourceType, Settings } });
/** Zero values are omitted from the wire (omitempty): Lun 0, DeviceNumber 0. */
const nonZero = <K extends string>(key: K, n: number): Partial<Record<K, number>> => (n === 0 ? {} : ({ [key]: n } as Record<K, number>));

/** VPMEM Add: the host half, then the guest half. */
function vpmemAdd(device: number, layer: string): unknown[] {
  return split({
    ResourcePath: `VirtualMachine/Devices/VirtualPMem/Devices/${device}`,
    RequestType: 'Add',
    Settings: { HostPath: layerVhd(layer), ReadOnly: true, ImageFormat: 'Vhd1' },
    GuestRequest: { RequestType: 'Add', ResourceType: 'VPMemDevice', Settings: { ...nonZero('DeviceNumber', device), MountPath: `/run/layers/p${device}` } },
  });
}

/** VPMEM Remove: the guest half, then the host half. */
function vpmemRemove(device: number): unknown[] {
  return split({
    ResourcePath: `VirtualMachine/Devices/VirtualPMem/Devices/${device}`,
    RequestType: 'Remove',
    GuestRequest: { RequestType: 'Remove', ResourceType: 'VPMemDevice', Settings: { ...nonZero('DeviceNumber', device), MountPath: `/run/layers/p${device}` } },
  });
}

const combinedRemove = (id: string): unknown => guest('Remove', 'CombinedLayers', { ContainerRootPath: `/run/gcs/c/${id}/rootfs` });

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
      const result = await runCli(['run', SCENARIO, '--json', '--check-simulator', '--trace', traceFile]);
      expect(result.code, result.stderr).to.equal(0);
      report = JSON.parse(result.stdout) as RunReport;
      trace = await readTrace(traceFile);
      docs = modifyDocs(trace);
      expect(result.stderr).to.include('[uvmctl] allocating container web (2/3)');
    });

    // Slots, LUNs and generated mount paths are handed out as acquisitions happen (containers
    // allocate their layers, scratch and mounts at once): read them from the report, then check
    // that the trace carries exactly the documents they imply.
    const find = (rs: ResourceInfo[], pred: (r: ResourceInfo) => boolean, what: string): ResourceInfo => {
      const hits = rs.filter(pred);
      expect(hits, what).to.have.length(1);
      return hits[0]!;
    };
    const device = (layer: string): number => Number(find(report.resources.vpmem, (r) => r.hostPath === layerVhd(layer), `VPMEM ${layer}`).slot);
    const attachment = (file: string): ResourceInfo => find(report.resources.scsi, (r) => r.kind === 'scsi-attachment' && r.hostPath === file, `SCSI ${file}`);
    const lun = (file: string): number => Number(attachment(file).slot!.split(':')[1]);
    const scsiMount = (file: string): ResourceInfo => find(report.resources.scsi, (r) => r.kind === 'scsi-mount' && r.slot === attachment(file).slot, `mount of ${file}`);
    const plan9Name = (file: string): string => find(report.resources.plan9, (r) => r.hostPath === file, `Plan9 ${file}`).slot!;
    /** Where each layer is in the guest, top-most first. */
    const layerPaths = (layers: string[]): string[] =>
      layers.map((l) => (l === 'base2' ? scsiMount(layerVhd('base2')).guestPath! : `/run/layers/p${device(l)}`));
    const combinedAdd = (id: string, layers: string[]): unknown =>
      guest('Add', 'CombinedLayers', {
        ContainerID: id,
        ContainerRootPath: `/run/gcs/c/${id}/rootfs`,
        Layers: layerPaths(layers).map((Path) => ({ Path })),
        ScratchPath: `/run/gcs/c/${id}/scratch/${id}`,
      });
    const scratchAdds = (id: string): unknown[] => {
      const file = host(`scratch/${id}/sandbox.vhdx`);
      return [
        { ResourcePath: `${SCSI0}/${lun(file)}`, RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: file } },
        guest('Add', 'MappedVirtualDisk', { MountPath: `/run/gcs/c/${id}`, ...nonZero('Lun', lun(file)), EnsureFilesystem: true, Filesystem: 'ext4' }),
      ];
    };
    /** A disk's removal: guest unmount, guest unplug, host removal. */
    const diskRemoves = (file: string, mount: Record<string, unknown>): unknown[] => [
      guest('Remove', 'MappedVirtualDisk', { ...mount, ...nonZero('Lun', lun(file)) }),
      guest('Remove', 'SCSIDevice', nonZero('Lun', lun(file))),
      { ResourcePath: `${SCSI0}/${lun(file)}`, RequestType: 'Remove' },
    ];
    const scratchRemoves = (id: string): unknown[] => diskRemoves(host(`scratch/${id}/sandbox.vhdx`), { MountPath: `/run/gcs/c/${id}` });
    const base2Removes = (): unknown[] => diskRemoves(layerVhd('base2'), { MountPath: scsiMount(layerVhd('base2')).guestPath, ReadOnly: true });
    const WEB = ['web', 'base3', 'base2', 'base1'];
    const API = ['api', 'base3', 'base2', 'base1'];

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
        ['/etc/web/web.conf', host('config/web.conf'), `/run/mounts/plan9/${plan9Name(host('config/web.conf'))}/web.conf`],
        ['/var/lib/web', host('data'), `/run/mounts/plan9/${plan9Name(host('data'))}`],
        ['/var/cache/web', host('disks/cache.vhdx'), scsiMount(host('disks/cache.vhdx')).guestPath],
      ]);
      expect(web.mounts[3]!.guestType).to.equal('none');
      expect(report.containers[2]!.mounts[2]!.guestSource).to.equal(`/run/mounts/plan9/${plan9Name(host('data'))}`);
    });

    it('lists each manager with the shared layers refcounted once', () => {
      const vpmem = report.resources.vpmem.map((r) => [r.hostPath, r.guestPath, r.refCount]);
      expect(vpmem).to.have.deep.members([
        [layerVhd('pause'), `/run/layers/p${device('pause')}`, 1],
        [layerVhd('web'), `/run/layers/p${device('web')}`, 1],
        [layerVhd('base3'), `/run/layers/p${device('base3')}`, 2],
        [layerVhd('base1'), `/run/layers/p${device('base1')}`, 2],
        [layerVhd('api'), `/run/layers/p${device('api')}`, 1],
      ]);
      expect(new Set(report.resources.vpmem.map((r) => r.slot)).size).to.equal(5);
      // base2 is too large for a 64 MiB device: one read-only SCSI attachment and mount, shared.
      expect(attachment(layerVhd('base2')).refCount).to.equal(2);
      expect(scsiMount(layerVhd('base2')).refCount).to.equal(2);
      expect(scsiMount(layerVhd('base2')).guestPath).to.match(/^\/run\/mounts\/scsi\/m\d+$/);
      expect(report.resources.scsi.filter((r) => r.kind === 'scsi-attachment')).to.have.length(5);
      expect(report.resources.plan9.map((r) => [r.hostPath, r.refCount])).to.have.deep.members([
        [host('config/web.conf'), 1],
        [host('data'), 2],
      ]);
    });

    it('sends the key documents in order: layers (VPMEM, SCSI fallback) and scratch, then CombinedLayers top-most first', () => {
      expect(trace[0]!.fn).to.equal('HcsCreateComputeSystem');
      expect(trace[0]!.doc.VirtualMachine.Devices.VirtualPMem).to.deep.equal({ MaximumCount: 8, MaximumSizeBytes: 67108864 });
      // The example boots kernel-direct from its fixture boot files (docs/uvm-boot.md).
      expect(trace[0]!.doc.VirtualMachine.Chipset).to.deep.equal({
        LinuxKernelDirect: {
          KernelFilePath: host('boot/kernel'),
          InitRdPath: host('boot/initrd.img'),
          KernelCmdLine:
            ' initcall_blacklist=virtio_vsock_init 8250_core.nr_uarts=0 panic=-1 quiet pci=off nr_cpus=2 brd.rd_nr=0 pmtmr=0 -- -e 1 /bin/vsockexec -e 109 /bin/gcs -v4 -log-format json -loglevel info',
        },
      });
      expect(trace.every((t) => t.hr === 0)).to.equal(true);
      const base2 = layerVhd('base2');
      const webCombined = combinedAdd('web', WEB);
      // The SCSI fallback layer: host half, then the guest mount (read-only, options ["ro"]), then the overlay.
      expectInOrder(docs, [
        { ResourcePath: `${SCSI0}/${lun(base2)}`, RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: base2, ReadOnly: true } },
        guest('Add', 'MappedVirtualDisk', { MountPath: scsiMount(base2).guestPath, ...nonZero('Lun', lun(base2)), ReadOnly: true, Options: ['ro'] }),
        webCombined,
      ]);
      expectInOrder(docs, [...scratchAdds('web'), webCombined]);
      expectBefore(docs, [...vpmemAdd(device('web'), 'web'), ...vpmemAdd(device('base3'), 'base3'), ...vpmemAdd(device('base1'), 'base1')], [webCombined]);
      // Containers one after another; api reuses base3, base2 and base1: only its own layer is added.
      expectInOrder(docs, [...vpmemAdd(device('pause'), 'pause'), combinedAdd('pause', ['pause']), ...vpmemAdd(device('web'), 'web')]);
      expectInOrder(docs, [webCombined, ...vpmemAdd(device('api'), 'api'), combinedAdd('api', API)]);
      expectInOrder(docs, [...scratchAdds('api'), combinedAdd('api', API)]);
      // The scratch and the OCI disk are granted to the VM before they are attached; layers are not.
      const grants = trace.filter((t) => t.fn === 'HcsGrantVmAccess').map((t) => t.doc.Path);
      expect(grants).to.have.members([host('scratch/pause/sandbox.vhdx'), host('scratch/web/sandbox.vhdx'), host('scratch/api/sandbox.vhdx'), host('disks/cache.vhdx')]);
      const grantWeb = trace.findIndex((t) => t.fn === 'HcsGrantVmAccess' && t.doc.Path === host('scratch/web/sandbox.vhdx'));
      const attachWeb = trace.findIndex((t) => t.fn === 'HcsModifyComputeSystem' && t.doc.Settings?.Path === host('scratch/web/sandbox.vhdx'));
      expect(grantWeb).to.be.lessThan(attachWeb);
    });

    it('tears down in reverse: CombinedLayers Remove before the scratch and layers; shared layers with their last user', () => {
      expectInOrder(docs, [combinedRemove('api'), combinedRemove('web'), combinedRemove('pause')]);
      for (const id of ['api', 'web', 'pause']) expectInOrder(docs, [combinedRemove(id), ...scratchRemoves(id)]);
      expectInOrder(docs, [combinedRemove('web'), ...base2Removes()]);
      // api's own layer goes with api; the shared ones (base3, base2, base1) with web, their last user.
      expectBefore(docs, [combinedRemove('api')], [...vpmemRemove(device('api'))]);
      expectBefore(docs, [...vpmemRemove(device('api')), ...scratchRemoves('api')], [combinedRemove('web')]);
      const webLayerRemoves = [...vpmemRemove(device('web')), ...vpmemRemove(device('base3')), ...vpmemRemove(device('base1')), ...base2Removes()];
      expectBefore(docs, [combinedRemove('web')], webLayerRemoves);
      expectBefore(docs, [...webLayerRemoves, ...scratchRemoves('web')], [combinedRemove('pause')]);
      expectBefore(docs, [combinedRemove('pause')], [...vpmemRemove(device('pause'))]);
      expectBalanced(docs);
      const terminate = trace.findIndex((t) => t.fn === 'HcsTerminateComputeSystem');
      expect(terminate).to.be.greaterThan(trace.map((t) => t.fn).lastIndexOf('HcsModifyComputeSystem'));
    });

    it('checked the simulator after the teardown: nothing hot-added, nothing described', () => {
      expect(report.teardown).to.deep.equal({ performed: true, released: ['api', 'web', 'pause'], sharesKept: 0, remaining: [], hotAdded: 0 });
      const query = trace.findIndex((t) => t.fn === 'HcsGetComputeSystemProperties' && t.doc?.PropertyTypes?.[0] === 'SimulatorState');
      expect(query).to.be.greaterThan(trace.map((t) => t.fn).lastIndexOf('HcsModifyComputeSystem'));
    });
  });

  it('plan makes no HCS call and predicts the placement', async () => {
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

  it('a scenario can ask for HCS-owned delivery: GuestConnection in the create document, GuestRequests inside the modifies, no bridge', async () => {
    // A sibling of the example's scenario (its paths are relative to the file), removed afterwards.
    const scenario = JSON.parse(await readFile(SCENARIO, 'utf8')) as { uvm: Record<string, unknown> };
    scenario.uvm.guestDelivery = 'hcs';
    const file = path.join(POD, `.hcs-owned-${process.pid}.scenario.json`);
    await writeFile(file, JSON.stringify(scenario));
    try {
      const traceFile = path.join(dir, 'hcs-owned.jsonl');
      const result = await runCli(['run', file, '--json', '--check-simulator', '--trace', traceFile]);
      expect(result.code, result.stderr).to.equal(0);
      const report = JSON.parse(result.stdout) as RunReport;
      expect(report.teardown.remaining).to.deep.equal([]);
      expect(report.teardown.hotAdded).to.equal(0);
      const trace = await readTrace(traceFile);
      expect(trace[0]!.doc.VirtualMachine.GuestConnection).to.deep.equal({ UseVsock: true, UseConnectedSuspend: true });
      expect(trace.filter((t) => t.fn.startsWith('bridge:'))).to.deep.equal([]);
      const modifies = trace.filter((t) => t.fn === 'HcsModifyComputeSystem').map((t) => t.doc);
      // VPMEM layers are one combined document each way: host and guest halves together.
      expect(modifies.filter((d) => d.ResourcePath?.includes('/VirtualPMem/') && d.GuestRequest?.ResourceType === 'VPMemDevice')).to.have.length(10);
      expect(modifies.filter((d) => d.GuestRequest?.ResourceType === 'CombinedLayers')).to.have.length(6);
    } finally {
      await rm(file, { force: true });
    }
  });
});

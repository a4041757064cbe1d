import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { ResourceInfo } from '../../src/devices/device-types.js';
import type { PlanReport } from '../../src/cli/plan-command.js';
import type { RunReport } from '../../src/cli/run-report.js';
import { expectBefore, expectInOrder, indexOnce, modifyDocs, readTrace, REPO, runCli, type TraceLine } from './cli-support.js';

const POD = path.join(REPO, 'examples', 'wcow-pod');
const SCENARIO = path.join(POD, 'scenario.json');
const SCSI0 = 'VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments';
const VSMB = '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}';
const SHARES = 'VirtualMachine/Devices/VirtualSmb/Shares';
const PIPE = 'VirtualMachine/Devices/MappedPipes/\\\\.\\pipe\\docker_engine';
const LAYER_OPTIONS = { ReadOnly: true, ShareRead: true, CacheIo: true, PseudoOplocks: true, TakeBackupPrivilege: true };
const host = (rel: string): string => path.join(POD, 'host', rel);
const guest = (RequestType: string, ResourceType: string, Settings: unknown): unknown => ({ GuestRequest: { RequestType, ResourceType, Settings } });
const nonZero = <K extends string>(key: K, n: number): Partial<Record<K, number>> => (n === 0 ? {} : ({ [key]: n } as Record<K, number>));
const M0 = 'c:\\mounts\\scsi\\m0';
const M1 = 'c:\\mounts\\scsi\\m1';

describe('uvmctl on the simulator: the WCOW pod example', function () {
  this.timeout(30000);
  let dir: string;
  let report: RunReport;
  let trace: TraceLine[];
  let docs: any[];
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'uvmctl-wcow-'));
    const traceFile = path.join(dir, 'run.jsonl');
    const result = await runCli(['run', SCENARIO, '--json', '--check-simulator', '--trace', traceFile]);
    expect(result.code, result.stderr).to.equal(0);
    report = JSON.parse(result.stdout) as RunReport;
    trace = await readTrace(traceFile);
    docs = modifyDocs(trace);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  // Share names and LUNs are handed out as acquisitions happen (layers, scratch and mounts are
  // acquired at once): read them from the report, then check the documents they imply.
  const find = (rs: ResourceInfo[], pred: (r: ResourceInfo) => boolean, what: string): ResourceInfo => {
    const hits = rs.filter(pred);
    expect(hits, what).to.have.length(1);
    return hits[0]!;
  };
  const share = (dir: string): string => find(report.resources.vsmb, (r) => r.kind === 'vsmb-share' && r.hostPath === dir, `share of ${dir}`).slot!;
  const layerShare = (layer: string): string => share(host(`layers/${layer}`));
  const lun = (file: string): number =>
    Number(find(report.resources.scsi, (r) => r.kind === 'scsi-attachment' && r.hostPath === file, `SCSI ${file}`).slot!.split(':')[1]);
  const layerAdd = (layer: string): unknown => ({
    ResourcePath: SHARES,
    RequestType: 'Add',
    Settings: { Name: layerShare(layer), Path: host(`layers/${layer}`), Options: LAYER_OPTIONS },
  });
  const scratchAdds = (id: string, root: string): unknown[] => {
    const file = host(`scratch/${id}/sandbox.vhdx`);
    return [
      { ResourcePath: `${SCSI0}/${lun(file)}`, RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: file } },
      guest('Add', 'MappedVirtualDisk', { ContainerPath: root, ...nonZero('Lun', lun(file)) }),
    ];
  };
  const scratchRemoves = (id: string, root: string): unknown[] => {
    const file = host(`scratch/${id}/sandbox.vhdx`);
    // WCOW has no guest unplug.
    return [guest('Remove', 'MappedVirtualDisk', { ContainerPath: root, ...nonZero('Lun', lun(file)) }), { ResourcePath: `${SCSI0}/${lun(file)}`, RequestType: 'Remove' }];
  };
  const combinedRemove = (root: string): unknown => guest('Remove', 'CombinedLayers', { ContainerRootPath: root });

  it('reports the scratch as rootfs, the VSMB and pipe mounts and the container document entries', () => {
    expect(report.ok).to.equal(true);
    expect(report.containers.map((c) => [c.id, c.rootfs])).to.deep.equal([
      ['web', M0],
      ['worker', M1],
    ]);
    const data = `${VSMB}\\${share(host('data'))}`;
    expect(report.containers[0]!.mounts.map((m) => [m.destination, m.guestSource])).to.deep.equal([
      ['C:\\data', data],
      ['\\\\.\\pipe\\docker_engine', `${VSMB}\\IPC$\\docker_engine`],
    ]);
    expect(report.containers[0]!.containerEntries).to.deep.equal([
      { kind: 'mapped-directory', value: { HostPath: data, ContainerPath: 'C:\\data' } },
      { kind: 'mapped-pipe', value: { ContainerPipeName: 'docker_engine', HostPath: `${VSMB}\\IPC$\\docker_engine` } },
    ]);
    expect(report.containers[1]!.mounts[0]!.guestSource).to.equal(`${VSMB}\\${share(host('config'))}\\worker.json`);
    const shared = report.resources.vsmb.filter((r) => r.kind === 'vsmb-share' && r.refCount === 2).map((r) => r.hostPath);
    expect(shared).to.have.members([host('layers/servercore-update'), host('layers/servercore-base')]);
    expect(new Set(report.resources.vsmb.filter((r) => r.kind === 'vsmb-share').map((r) => r.slot)).size).to.equal(6);
  });

  it('boots UEFI from the base layer (VSMB share "os"), with the UVM scratch granted and on SCSI 0:0, COM1 to a pipe', () => {
    expect(trace.slice(0, 2).map((t) => [t.fn, t.hr])).to.deep.equal([['HcsGrantVmAccess', 0], ['HcsCreateComputeSystem', 0]]);
    expect(trace[0]!.doc.Path).to.equal(host('uvm/sandbox.vhdx'));
    const vm = trace[1]!.doc.VirtualMachine;
    expect(vm.Chipset).to.deep.equal({ Uefi: { BootThis: { DeviceType: 'VmbFs', DevicePath: '\\EFI\\Microsoft\\Boot\\bootmgfw.efi' } } });
    expect(vm.Devices.Scsi).to.deep.equal({ 'df6d0690-79e5-55b6-a5ec-c1e2f77f580a': { Attachments: { '0': { Type: 'VirtualDisk', Path: host('uvm/sandbox.vhdx') } } } });
    expect(vm.Devices.VirtualSmb.Shares).to.deep.equal([
      {
        Name: 'os',
        Path: host('layers/servercore-base/UtilityVM/Files'),
        Options: { ReadOnly: true, ShareRead: true, CacheIo: true, TakeBackupPrivilege: true, PseudoOplocks: true },
      },
    ]);
    expect(vm.Devices.ComPorts).to.deep.equal({ '0': { NamedPipe: '\\\\.\\pipe\\wcow-pod-com1' } });
    // The boot scratch holds 0:0: the containers' scratch disks start at LUN 1.
    const luns = report.resources.scsi.filter((r) => r.kind === 'scsi-attachment').map((r) => r.slot);
    expect(luns).to.not.include('0:0');
  });

  it('bridge startup as hcsshim does it: the null container Create with the time zone (UTC off Windows), Start, then the HvSocket update', () => {
    const bridge = trace.filter((t) => t.fn.startsWith('bridge:')).map((t) => t.fn);
    expect(bridge.slice(0, 4)).to.deep.equal(['bridge:NegotiateProtocol', 'bridge:Create', 'bridge:Start', 'bridge:ModifySettings']);
    const create = trace.find((t) => t.fn === 'bridge:Create')!;
    expect(create.doc.ContainerId).to.equal('00000000-0000-0000-0000-000000000000');
    // hcsshim's UTC zone; its Bias 0 is left out (omitempty).
    expect(JSON.parse(create.doc.ContainerConfig as string)).to.deep.equal({
      SystemType: 'Container',
      TimeZoneInformation: { StandardName: 'Coordinated Universal Time', DaylightName: 'Coordinated Universal Time' },
    });
    expect(trace.find((t) => t.fn === 'bridge:ModifySettings')!.doc.Request.ResourceType).to.equal('HvSocket');
  });

  it('shares the layers over VSMB and composes them on the SCSI scratch, top-most first', () => {
    const web = ['web-app', 'servercore-update', 'servercore-base'];
    const worker = ['worker-app', 'servercore-update', 'servercore-base'];
    const names = trace.filter((t) => t.fn === 'NameToGuid').map((t) => t.doc.Name as string);
    expect([...new Set(names)]).to.have.members([...web, 'worker-app']);
    const combined = docs.filter((d) => d.GuestRequest?.ResourceType === 'CombinedLayers' && d.GuestRequest.RequestType === 'Add');
    expect(combined).to.have.length(2);
    const ids = (i: number): string[] => (combined[i].GuestRequest.Settings.Layers as { Id: string }[]).map((l) => l.Id);
    // No FilterType: older inbox GCS rejects it.
    const combinedAdd = (root: string, layers: string[], layerIds: string[]): unknown =>
      guest('Add', 'CombinedLayers', { ContainerRootPath: root, Layers: layers.map((l, i) => ({ Id: layerIds[i], Path: `${VSMB}\\${layerShare(l)}` })) });
    const webCombined = combinedAdd(M0, web, ids(0));
    const workerCombined = combinedAdd(M1, worker, ids(1));
    // The layer shares and the scratch are acquired at once: any order among them, all before the overlay.
    expectBefore(docs, web.map(layerAdd), [webCombined]);
    expectInOrder(docs, [...scratchAdds('web', M0), webCombined]);
    const webMounts = [
      // hcsshim sends "Options": {} for a share with no option set (a non-nil options pointer).
      { ResourcePath: SHARES, RequestType: 'Add', Settings: { Name: share(host('data')), Path: host('data'), Options: {} } },
      { ResourcePath: PIPE, RequestType: 'Add' },
    ];
    // worker comes after web and reuses its two base layers.
    expectBefore(docs, [webCombined, ...webMounts], [layerAdd('worker-app'), ...scratchAdds('worker', M1)]);
    expectBefore(docs, [layerAdd('worker-app'), ...scratchAdds('worker', M1)], [workerCombined]);
    expect(ids(1).slice(1)).to.deep.equal(ids(0).slice(1));
    expect(new Set([...ids(0), ...ids(1)]).size).to.equal(4);
    // worker's single read-only file: a restricted share of its folder.
    indexOnce(docs, {
      ResourcePath: SHARES,
      RequestType: 'Add',
      Settings: {
        Name: share(host('config')),
        Path: host('config'),
        Options: { ReadOnly: true, ShareRead: true, CacheIo: true, PseudoOplocks: true, RestrictFileAccess: true, SingleFileMapping: true },
        AllowedFiles: [host('config/worker.json')],
      },
    });
  });

  it('tears down in reverse and keeps the direct-mapped shares (no Remove while the VM runs); they go with the VM', () => {
    const pipeRemove = { ResourcePath: PIPE, RequestType: 'Remove' };
    expectInOrder(docs, [combinedRemove(M1), ...scratchRemoves('worker', M1)]);
    expectBefore(docs, scratchRemoves('worker', M1), [combinedRemove(M0), pipeRemove]);
    expectInOrder(docs, [combinedRemove(M0), ...scratchRemoves('web', M0)]);
    // The overlay goes first (first round); the pipe with the scratch (second round).
    expectBefore(docs, [combinedRemove(M0)], [pipeRemove]);
    // hcsshim never removes a direct-mapped share while the VM runs (guest handles may be open).
    expect(docs.filter((d) => d.ResourcePath === SHARES && d.RequestType === 'Remove')).to.deep.equal([]);
    expect(report.teardown).to.deep.equal({ performed: true, released: ['worker', 'web'], sharesKept: 6, remaining: [], hotAdded: 6 });
  });

  it('plan makes no HCS call and predicts the same VSMB layers and layer ids', async () => {
    const traceFile = path.join(dir, 'plan.jsonl');
    const result = await runCli(['plan', SCENARIO, '--json', '--trace', traceFile]);
    expect(result.code, result.stderr).to.equal(0);
    expect(await readTrace(traceFile)).to.deep.equal([]);
    const plan = JSON.parse(result.stdout) as PlanReport;
    const layers = plan.containers.map((c) => (c.rootfs.kind === 'layers' && c.rootfs.plan.os === 'windows' ? c.rootfs.plan.layers : []));
    expect(layers[1]!.map((l) => [path.basename(l.folder), l.target, l.shared])).to.deep.equal([
      ['worker-app', 'vsmb', false],
      ['servercore-update', 'vsmb', true],
      ['servercore-base', 'vsmb', true],
    ]);
    // The dry run's NameToGuid is the simulator's.
    const combined = docs.filter((d) => d.GuestRequest?.ResourceType === 'CombinedLayers' && d.GuestRequest.RequestType === 'Add');
    expect(layers.map((ls) => ls.map((l) => l.id))).to.deep.equal(combined.map((d) => d.GuestRequest.Settings.Layers.map((l: { Id: string }) => l.Id)));
    expect(plan.containers[0]!.mounts.map((m) => (m.kind === 'device' ? m.device : m.kind))).to.deep.equal(['vsmb', 'pipe']);
  });
});

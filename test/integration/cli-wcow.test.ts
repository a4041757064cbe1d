import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { PlanReport } from '../../src/cli/plan-command.js';
import type { RunReport } from '../../src/cli/run-report.js';
import { expectBalanced, expectInOrder, modifyDocs, readTrace, REPO, runCli, type TraceLine } from './cli-support.js';

const POD = path.join(REPO, 'examples', 'wcow-pod');
const SCENARIO = path.join(POD, 'scenario.json');
const SCSI0 = 'VirtualMachine/Devices/Scsi/df6d0690-79e5-55b6-a5ec-c1e2f77f580a/Attachments';
const VSMB = '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}';
const SHARES = 'VirtualMachine/Devices/VirtualSmb/Shares';
const PIPE = 'VirtualMachine/Devices/MappedPipes/\\\\.\\pipe\\docker_engine';
const LAYER_OPTIONS = { ReadOnly: true, ShareRead: true, CacheIo: true, PseudoOplocks: true, TakeBackupPrivilege: true };
const host = (rel: string): string => path.join(POD, 'host', rel);
const guest = (RequestType: string, ResourceType: string, Settings: unknown): unknown => ({ GuestRequest: { RequestType, ResourceType, Settings } });
const layerShare = (name: string, layer: string): unknown => ({
  ResourcePath: SHARES,
  RequestType: 'Add',
  Settings: { Name: name, Path: host(`layers/${layer}`), Options: LAYER_OPTIONS },
});

describe('uvmctl on the simulator: the WCOW pod example', function () {
  this.timeout(30000);
  let dir: string;
  let report: RunReport;
  let trace: TraceLine[];
  let docs: any[];
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'uvmctl-wcow-'));
    const traceFile = path.join(dir, 'run.jsonl');
    const result = await runCli(['run', SCENARIO, '--json', '--trace', traceFile]);
    expect(result.code, result.stderr).to.equal(0);
    report = JSON.parse(result.stdout) as RunReport;
    trace = await readTrace(traceFile);
    docs = modifyDocs(trace);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reports the scratch as rootfs, the VSMB and pipe mounts and the container document entries', () => {
    expect(report.ok).to.equal(true);
    expect(report.containers.map((c) => [c.id, c.rootfs])).to.deep.equal([
      ['web', 'c:\\mounts\\scsi\\m0'],
      ['worker', 'c:\\mounts\\scsi\\m1'],
    ]);
    expect(report.containers[0]!.mounts.map((m) => [m.destination, m.guestSource])).to.deep.equal([
      ['C:\\data', `${VSMB}\\s4`],
      ['\\\\.\\pipe\\docker_engine', `${VSMB}\\IPC$\\docker_engine`],
    ]);
    expect(report.containers[0]!.containerEntries).to.deep.equal([
      { kind: 'mapped-directory', value: { HostPath: `${VSMB}\\s4`, ContainerPath: 'C:\\data' } },
      { kind: 'mapped-pipe', value: { ContainerPipeName: 'docker_engine', HostPath: `${VSMB}\\IPC$\\docker_engine` } },
    ]);
    expect(report.containers[1]!.mounts[0]!.guestSource).to.equal(`${VSMB}\\s6\\worker.json`);
    const shared = report.resources.vsmb.filter((r) => r.kind === 'vsmb-share' && r.refCount === 2).map((r) => r.hostPath);
    expect(shared).to.deep.equal([host('layers/servercore-update'), host('layers/servercore-base')]);
  });

  it('shares the layers over VSMB and composes them on the SCSI scratch, in order', () => {
    const web = ['web-app', 'servercore-update', 'servercore-base'];
    const ids = Object.fromEntries(trace.filter((t) => t.fn === 'NameToGuid').map((t, i) => [t.doc.Name, i]));
    expect(Object.keys(ids)).to.have.members([...web, 'worker-app']);
    const combined = docs.filter((d) => d.GuestRequest?.ResourceType === 'CombinedLayers' && d.GuestRequest.RequestType === 'Add');
    expect(combined).to.have.length(2);
    const webLayers = combined[0].GuestRequest.Settings.Layers as { Id: string; Path: string }[];
    expectInOrder(docs, [
      layerShare('s1', 'web-app'),
      layerShare('s2', 'servercore-update'),
      layerShare('s3', 'servercore-base'),
      { ResourcePath: `${SCSI0}/0`, RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: host('scratch/web/sandbox.vhdx') } },
      guest('Add', 'MappedVirtualDisk', { ContainerPath: 'c:\\mounts\\scsi\\m0' }),
      // No FilterType: older inbox GCS rejects it.
      guest('Add', 'CombinedLayers', {
        ContainerRootPath: 'c:\\mounts\\scsi\\m0',
        Layers: [
          { Id: webLayers[0]!.Id, Path: `${VSMB}\\s1` },
          { Id: webLayers[1]!.Id, Path: `${VSMB}\\s2` },
          { Id: webLayers[2]!.Id, Path: `${VSMB}\\s3` },
        ],
      }),
      { ResourcePath: SHARES, RequestType: 'Add', Settings: { Name: 's4', Path: host('data') } },
      { ResourcePath: PIPE, RequestType: 'Add' },
      // worker reuses s2 and s3.
      layerShare('s5', 'worker-app'),
      { ResourcePath: `${SCSI0}/1`, RequestType: 'Add', Settings: { Type: 'VirtualDisk', Path: host('scratch/worker/sandbox.vhdx') } },
      guest('Add', 'MappedVirtualDisk', { ContainerPath: 'c:\\mounts\\scsi\\m1', Lun: 1 }),
      {
        ResourcePath: SHARES,
        RequestType: 'Add',
        Settings: {
          Name: 's6',
          Path: host('config'),
          Options: { ReadOnly: true, ShareRead: true, CacheIo: true, PseudoOplocks: true, RestrictFileAccess: true, SingleFileMapping: true },
          AllowedFiles: [host('config/worker.json')],
        },
      },
    ]);
    const workerLayers = combined[1].GuestRequest.Settings.Layers as { Id: string; Path: string }[];
    expect(workerLayers.map((l) => l.Path)).to.deep.equal([`${VSMB}\\s5`, `${VSMB}\\s2`, `${VSMB}\\s3`]);
    expect(workerLayers.slice(1)).to.deep.equal(webLayers.slice(1));
  });

  it('tears down in reverse, then removes the idle direct-mapped shares; the simulator is empty', () => {
    expectInOrder(docs, [
      guest('Remove', 'CombinedLayers', { ContainerRootPath: 'c:\\mounts\\scsi\\m1' }),
      guest('Remove', 'MappedVirtualDisk', { ContainerPath: 'c:\\mounts\\scsi\\m1', Lun: 1 }),
      { ResourcePath: `${SCSI0}/1`, RequestType: 'Remove' },
      { ResourcePath: PIPE, RequestType: 'Remove' },
      guest('Remove', 'CombinedLayers', { ContainerRootPath: 'c:\\mounts\\scsi\\m0' }),
      guest('Remove', 'MappedVirtualDisk', { ContainerPath: 'c:\\mounts\\scsi\\m0' }),
      { ResourcePath: `${SCSI0}/0`, RequestType: 'Remove' },
    ]);
    const lastCombinedRemove = docs.map((d) => d.GuestRequest?.ResourceType).lastIndexOf('CombinedLayers');
    const shareRemoves = docs.flatMap((d, i) => (d.ResourcePath === SHARES && d.RequestType === 'Remove' ? [[i, d.Settings.Name]] : []));
    expect(shareRemoves.map(([, name]) => name)).to.have.members(['s1', 's2', 's3', 's4', 's5', 's6']);
    expect(shareRemoves.every(([i]) => (i as number) > lastCombinedRemove)).to.equal(true);
    expectBalanced(docs);
    expect(report.teardown).to.deep.equal({ performed: true, released: ['worker', 'web'], idleSharesRemoved: 6, remaining: [], hotAdded: 0 });
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

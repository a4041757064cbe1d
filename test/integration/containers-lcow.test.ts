// Container allocation through the real UtilityVm, the FFI binding and the native simulator (LCOW).
import { expect } from 'chai';
import { UvmError } from '../../src/core/errors.js';
import { allocateContainer, planContainer } from '../../src/containers/allocate-container.js';
import { configureSimulator } from '../../src/hcs/simulator-controls.js';
import type { OciSpec } from '../../src/oci/oci-spec.js';
import { failGuestHalf, traceDuring, wireRequests } from '../support/guest-halves.js';
import { testGuestDelivery } from '../support/guest-delivery.js';
import { disposeUvms, expectEmpty, expectInSync, hostFs, simulatorState, startUvm } from './devices-support.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function appSpec(): OciSpec {
  return {
    ociVersion: '1.1.0',
    root: { path: 'rootfs' },
    windows: { layerFolders: ['/ctr-it/l/top', '/ctr-it/l/base', '/ctr-it/app'] },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/data', type: 'bind', source: '/ctr-it/data', options: ['rbind', 'rw'] },
      { destination: '/etc/app.conf', type: 'bind', source: '/ctr-it/cfg/app.conf', options: ['rbind', 'ro'] },
      { destination: '/disk', type: 'virtual-disk', source: '/ctr-it/disks/d.vhdx' },
    ],
  };
}

interface SimGuest {
  CombinedLayers: { ContainerRootPath: string; ScratchPath?: string; Layers: { Path: string }[] }[];
}

describe('integration: LCOW container allocation on the simulator', function () {
  this.timeout(60000);
  afterEach(disposeUvms);
  before(() => {
    hostFs
      .file('/ctr-it/l/top/layer.vhd', 3 * MiB)
      .file('/ctr-it/l/base/layer.vhd', 6 * GiB)
      .file('/ctr-it/pause/sandbox.vhdx', 20 * GiB)
      .symlink('/ctr-it/app/sandbox.vhdx', '/ctr-it/pause/sandbox.vhdx')
      .file('/ctr-it/solo/sandbox.vhdx', 20 * GiB)
      .dir('/ctr-it/data')
      .file('/ctr-it/cfg/app.conf', 100)
      .file('/ctr-it/disks/d.vhdx', GiB)
      .dir('/ctr-it/rootdir');
  });

  it('allocates a pod (pause + app sharing its scratch), agrees with the plan, and releases to an empty simulator', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 4 } });
    const pause = await allocateContainer(uvm, { root: { path: 'rootfs' }, windows: { layerFolders: ['/ctr-it/l/top', '/ctr-it/pause'] } }, { containerId: 'pause' });
    const plan = await planContainer(uvm, appSpec(), { containerId: 'app' });
    const app = await allocateContainer(uvm, appSpec(), { containerId: 'app' });

    expect(pause.spec.root!.path).to.equal('/run/gcs/c/pause/rootfs');
    expect(app.spec.root!.path).to.equal('/run/gcs/c/app/rootfs');
    expect(app.spec.mounts).to.deep.equal([
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/data', type: 'bind', source: '/run/mounts/plan9/0', options: ['rbind', 'rw'] },
      { destination: '/etc/app.conf', type: 'bind', source: '/run/mounts/plan9/1/app.conf', options: ['rbind', 'ro'] },
      // Mounts are issued once every layer's placement is decided, so the too-large layer's SCSI
      // fallback takes m0 and the disk m1, whatever the timing.
      { destination: '/disk', type: 'none', source: '/run/mounts/scsi/m1' },
    ]);
    const layers = app.resources.layers!;
    expect(layers.layers.map((l) => [l.target, l.reason ?? null, l.guestPath])).to.deep.equal([
      ['vpmem', null, '/run/layers/p0'],
      ['scsi', 'too-large', '/run/mounts/scsi/m0'],
    ]);
    expect(plan.rootfs.kind === 'layers' && plan.rootfs.plan.os === 'linux' ? plan.rootfs.plan.layers.map((l) => [l.target, l.reason ?? null]) : []).to.deep.equal([
      ['vpmem', null],
      ['scsi', 'too-large'],
    ]);
    expect(layers.scratchMountPath).to.equal('/run/gcs/c/pause');
    expect(layers.scratchPath).to.equal('/run/gcs/c/pause/scratch/app');

    const state = await simulatorState(uvm);
    expect((state.Guest as unknown as SimGuest).CombinedLayers.map((c) => [c.ContainerRootPath, c.ScratchPath, c.Layers.map((l) => l.Path)])).to.deep.equal([
      ['/run/gcs/c/pause/rootfs', '/run/gcs/c/pause/scratch/pause', ['/run/layers/p0']],
      ['/run/gcs/c/app/rootfs', '/run/gcs/c/pause/scratch/app', ['/run/layers/p0', '/run/mounts/scsi/m0']],
    ]);
    await expectInSync(uvm);

    await app.resources.release();
    await pause.resources.release();
    await expectEmpty(uvm);
  });

  it('sends the documents in the expected order (trace) and removes in reverse', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 4 } });
    const { trace } = await traceDuring(async () => {
      const { resources } = await allocateContainer(
        uvm,
        { root: { path: 'rootfs' }, windows: { layerFolders: ['/ctr-it/l/top', '/ctr-it/solo'] }, mounts: [{ destination: '/data', type: 'bind', source: '/ctr-it/data' }] },
        { containerId: 'solo' },
      );
      await resources.release();
    });
    const lines = trace.filter((l) => l.id === uvm.id && (l.fn === 'HcsModifyComputeSystem' || l.fn === 'HcsGrantVmAccess' || l.fn === 'bridge:ModifySettings'));
    // Each line as "<host half> + <guest half>" (a combined HCS modify), "<host half>" or "<guest half>".
    const summary = lines.map((l) => {
      if (l.fn === 'HcsGrantVmAccess') return `grant ${String((l.doc as { Path: string }).Path)}`;
      const [w] = wireRequests([l], uvm.id);
      const host = w!.host ? `${String(w!.host.RequestType)} ${String(w!.host.ResourcePath).replace(/Scsi\/[^/]+/, 'Scsi/<c0>')}` : '';
      const guest = w!.guest ? `${w!.guest.RequestType} ${w!.guest.ResourceType}` : '';
      return [host, guest].filter(Boolean).join(' + ');
    });
    // A request with both halves: one combined HCS document, or (bridge) its host half and its
    // guest half, Add host first, Remove guest first.
    const both = (host: string, guest: string): { host: string; guest: string } =>
      testGuestDelivery === 'bridge' ? { host, guest } : { host: `${host} + ${guest}`, guest: `${host} + ${guest}` };
    // Independent pieces run concurrently, so the trace (completion order) is checked against
    // the set of documents and the orderings that matter, not one total order.
    const ADD_VPMEM = both('Add VirtualMachine/Devices/VirtualPMem/Devices/0', 'Add VPMemDevice');
    const GRANT = 'grant /ctr-it/solo/sandbox.vhdx';
    const ATTACH = 'Add VirtualMachine/Devices/Scsi/<c0>/Attachments/0';
    const MOUNT = 'Add MappedVirtualDisk';
    const COMBINE = 'Add CombinedLayers';
    const ADD_P9 = both('Add VirtualMachine/Devices/Plan9/Shares', 'Add MappedDirectory');
    const REMOVE_P9 = both('Remove VirtualMachine/Devices/Plan9/Shares', 'Remove MappedDirectory');
    const UNCOMBINE = 'Remove CombinedLayers';
    const UNMOUNT = 'Remove MappedVirtualDisk';
    const UNPLUG = 'Remove SCSIDevice';
    const DETACH = 'Remove VirtualMachine/Devices/Scsi/<c0>/Attachments/0';
    const REMOVE_VPMEM = both('Remove VirtualMachine/Devices/VirtualPMem/Devices/0', 'Remove VPMemDevice');
    const halves = [ADD_VPMEM, ADD_P9, REMOVE_P9, REMOVE_VPMEM].flatMap((r) => [r.host, r.guest]);
    expect(summary).to.have.members([...new Set([...halves, GRANT, ATTACH, MOUNT, COMBINE, UNCOMBINE, UNMOUNT, UNPLUG, DETACH])]);
    const at = (entry: string): number => summary.indexOf(entry);
    const ordered: [string, string][] = [
      [GRANT, ATTACH], // the VM may open the scratch before it is attached
      [ATTACH, MOUNT],
      [ADD_VPMEM.guest, COMBINE], // the overlay needs every layer and the scratch mounted
      [MOUNT, COMBINE],
      [COMBINE, UNCOMBINE],
      [ADD_P9.guest, REMOVE_P9.guest],
      [UNCOMBINE, UNMOUNT], // the overlay goes before the disks under it
      [UNCOMBINE, REMOVE_VPMEM.guest],
      [UNMOUNT, UNPLUG], // LCOW SCSI removal: unmount → unplug → host remove
      [UNPLUG, DETACH],
    ];
    if (testGuestDelivery === 'bridge') {
      // hcsshim's split (gcs-bridge.md §5.2): Add host then guest, Remove guest then host.
      ordered.push([ADD_VPMEM.host, ADD_VPMEM.guest], [ADD_P9.host, ADD_P9.guest], [REMOVE_P9.guest, REMOVE_P9.host], [REMOVE_VPMEM.guest, REMOVE_VPMEM.host]);
    }
    for (const [first, then] of ordered) expect(at(first), `${first} before ${then}`).to.be.lessThan(at(then));
    expect(lines.every((l) => l.hr === 0)).to.equal(true);
    // The overlay is a guest-only request: alone in its HCS document, or a bridge ModifySettings.
    const combine = wireRequests(lines, uvm.id).find((w) => w.guest?.ResourceType === 'CombinedLayers');
    expect(combine).to.deep.equal({
      fn: testGuestDelivery === 'bridge' ? 'bridge:ModifySettings' : 'HcsModifyComputeSystem',
      guest: {
        RequestType: 'Add',
        ResourceType: 'CombinedLayers',
        Settings: {
          ContainerID: 'solo',
          ContainerRootPath: '/run/gcs/c/solo/rootfs',
          Layers: [{ Path: '/run/layers/p0' }],
          ScratchPath: '/run/gcs/c/solo/scratch/solo',
        },
      },
      hr: 0,
    });
    await expectEmpty(uvm);
  });

  it('rolls everything back when the guest refuses CombinedLayers, leaving the simulator empty', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 4 } });
    // The 3rd guest request of this allocation: VPMEM add, scratch mount (either order), CombinedLayers.
    failGuestHalf({ nth: 3 });
    const { result: err, trace } = await traceDuring(() =>
      allocateContainer(uvm, { windows: { layerFolders: ['/ctr-it/l/top', '/ctr-it/solo'] } }, { containerId: 'solo' }).catch((e: unknown) => e),
    );
    expect(UvmError.is(err, 'HCS_ERROR'), String(err)).to.equal(true);
    const refused = wireRequests(trace, uvm.id).filter((w) => w.hr !== 0);
    expect(refused.map((w) => w.guest && `${w.guest.RequestType} ${w.guest.ResourceType}`)).to.deep.equal(['Add CombinedLayers']);
    configureSimulator({ clearFaults: true });
    await expectEmpty(uvm);
  });

  it('shares root.path over Plan9 for a container without layers', async () => {
    const uvm = await startUvm({ os: 'linux' });
    const { spec, resources } = await allocateContainer(uvm, { root: { path: '/ctr-it/rootdir', readonly: true } }, { containerId: 'plain' });
    expect(spec.root).to.deep.equal({ path: '/run/mounts/plan9/0', readonly: true });
    await expectInSync(uvm);
    await resources.release();
    await expectEmpty(uvm);
  });

  it('hot-adds and removes a mount in a running container', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 4 } });
    const { resources } = await allocateContainer(uvm, { windows: { layerFolders: ['/ctr-it/l/top', '/ctr-it/solo'] } }, { containerId: 'solo' });
    const added = await resources.addMount({ destination: '/more', type: 'virtual-disk', source: '/ctr-it/disks/d.vhdx', options: ['ro'] });
    expect(added).to.deep.equal({ destination: '/more', type: 'none', source: '/run/mounts/scsi/m0', options: ['ro'] });
    await expectInSync(uvm);
    await resources.removeMount('/more');
    expect(uvm.describe().filter((r) => r.hostPath === '/ctr-it/disks/d.vhdx')).to.deep.equal([]);
    await resources.release();
    await expectEmpty(uvm);
  });

  it('releases after the UVM was terminated without any HCS call, every refcount balanced', async () => {
    const uvm = await startUvm({ os: 'linux', vpmem: { count: 4 } });
    const { resources } = await allocateContainer(uvm, appSpec(), { containerId: 'app' });
    expect(uvm.describe()).to.not.deep.equal([]);
    await uvm.terminate();
    await resources.release({ uvmTerminating: true });
    expect(resources.released).to.equal(true);
    expect(uvm.describe()).to.deep.equal([]);
  });
});

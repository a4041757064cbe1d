// Adding a host directory to a running WCOW container (hcs-real-world.md §5) through the real
// UtilityVm, the FFI binding and the simulator. The container-level request goes to the shim's
// port for the container (its compute system or its GCS bridge): here a recorder that can fail.
import { expect } from 'chai';
import { allocateContainer } from '../../src/containers/allocate-container.js';
import type { ContainerModifier } from '../../src/containers/running-container-mounts.js';
import { UvmError } from '../../src/core/errors.js';
import type { ModifySettingRequest } from '../../src/hcs/schema.js';
import { expectCode } from '../fakes/expect-code.js';
import { disposeUvms, expectEmpty, expectInSync, hostFs, modifyCalls, simulatorState, startUvm } from './devices-support.js';

const VSMB = '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}';

class Recorder implements ContainerModifier {
  readonly requests: ModifySettingRequest[] = [];
  failNext = false;
  modify(request: ModifySettingRequest): Promise<void> {
    if (this.failNext) {
      this.failNext = false;
      return Promise.reject(new UvmError('HCS_ERROR', 'the container refused the request'));
    }
    this.requests.push(structuredClone(request));
    return Promise.resolve();
  }
}

describe('integration: hot-adding a host directory to a running WCOW container', function () {
  this.timeout(60000);
  afterEach(disposeUvms);
  before(() => {
    hostFs
      .dir('C:\\hot-it\\l\\base')
      .file('C:\\hot-it\\w\\sandbox.vhdx', 1 << 30)
      .dir('C:\\hot-it\\data')
      .file('C:\\hot-it\\file.txt', 10);
  });

  async function running(): Promise<Awaited<ReturnType<typeof allocateContainer>> & { uvm: Awaited<ReturnType<typeof startUvm>> }> {
    const uvm = await startUvm({ os: 'windows', vsmbNoDirectMap: true });
    const allocated = await allocateContainer(uvm, { windows: { layerFolders: ['C:\\hot-it\\l\\base', 'C:\\hot-it\\w'] } }, { containerId: 'w' });
    return { ...allocated, uvm };
  }

  it('adds a VSMB share and sends the MappedDirectory Add to the container; removes both explicitly', async () => {
    const { uvm, resources } = await running();
    const container = new Recorder();
    const added = await resources.addContainerMount({ hostPath: 'C:\\hot-it\\data', containerPath: 'C:\\data', readOnly: true }, { container });
    const share = (await simulatorState(uvm)).Devices.VirtualSmb.Shares.find((s) => s.Path === 'C:\\hot-it\\data')!;
    const add = {
      ResourcePath: 'Container/MappedDirectories',
      RequestType: 'Add',
      Settings: { HostPath: `${VSMB}\\${String(share.Name)}`, ContainerPath: 'C:\\data', ReadOnly: true },
    };
    expect(added).to.deep.equal({ request: add, sent: true });
    expect(container.requests).to.deep.equal([add]);
    expect(resources.containerEntries().map((e) => e.value)).to.deep.include(add.Settings);
    await expectInSync(uvm);

    const removed = await resources.removeContainerMount('C:\\data', { container });
    expect(removed).to.deep.equal({ request: { ...add, RequestType: 'Remove' }, sent: true });
    expect(container.requests.at(-1)).to.deep.equal({ ...add, RequestType: 'Remove' });
    expect((await simulatorState(uvm)).Devices.VirtualSmb.Shares.some((s) => s.Path === 'C:\\hot-it\\data')).to.equal(false);
    await resources.release();
    await expectEmpty(uvm);
  });

  it('without a container port the request is returned for the shim; a failed send releases the share', async () => {
    const { uvm, resources } = await running();
    const returned = await resources.addContainerMount({ hostPath: 'C:\\hot-it\\data', containerPath: 'C:\\d2' });
    expect(returned.sent).to.equal(false);
    expect(returned.request.Settings).to.not.have.property('ReadOnly');
    await resources.removeContainerMount('C:\\d2');
    const container = new Recorder();
    container.failNext = true;
    await expectCode(resources.addContainerMount({ hostPath: 'C:\\hot-it\\data', containerPath: 'C:\\d3' }, { container }), 'HCS_ERROR');
    expect(resources.mounts()).to.deep.equal([]);
    expect((await simulatorState(uvm)).Devices.VirtualSmb.Shares.some((s) => s.Path === 'C:\\hot-it\\data')).to.equal(false);
    // A failed Remove keeps everything for a retry.
    await resources.addContainerMount({ hostPath: 'C:\\hot-it\\data', containerPath: 'C:\\d4' }, { container });
    container.failNext = true;
    await expectCode(resources.removeContainerMount('C:\\d4', { container }), 'HCS_ERROR');
    expect(resources.mounts().map((m) => m.destination)).to.deep.equal(['C:\\d4']);
    await resources.removeContainerMount('C:\\d4', { container });
    await resources.release();
    await expectEmpty(uvm);
  });

  it('refuses files, typed mounts, special sources and LCOW with a code, before any HCS call', async () => {
    const { uvm, resources } = await running();
    const calls = modifyCalls(uvm.id);
    await expectCode(resources.addContainerMount({ hostPath: 'C:\\hot-it\\file.txt', containerPath: 'C:\\f' }), 'INVALID_ARGUMENT');
    await expectCode(resources.addContainerMount({ hostPath: 'C:\\hot-it\\data', containerPath: 'C:\\f', type: 'virtual-disk' }), 'INVALID_ARGUMENT');
    await expectCode(resources.addContainerMount({ hostPath: 'sandbox://x', containerPath: 'C:\\f' }), 'INVALID_ARGUMENT');
    await expectCode(resources.addContainerMount({ hostPath: '\\\\.\\pipe\\p', containerPath: 'C:\\f' }), 'INVALID_ARGUMENT');
    await expectCode(resources.addContainerMount({ hostPath: 'C:\\hot-it\\data', containerPath: '' }), 'INVALID_ARGUMENT');
    await expectCode(resources.addContainerMount({ hostPath: 'C:\\hot-it\\missing', containerPath: 'C:\\f' }), 'NOT_FOUND');
    await expectCode(resources.removeContainerMount('C:\\none'), 'NOT_FOUND');
    expect(modifyCalls(uvm.id)).to.equal(calls);
    await resources.release();

    const lcow = await startUvm({ os: 'linux' });
    hostFs.dir('/hot-it/root');
    const l = await allocateContainer(lcow, { root: { path: '/hot-it/root' } }, { containerId: 'l' });
    await expectCode(l.resources.addContainerMount({ hostPath: '/hot-it/root', containerPath: '/data' }), 'NOT_SUPPORTED');
    await l.resources.release();
    await expectEmpty(lcow);
    await expectEmpty(uvm);
  });
});

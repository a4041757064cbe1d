// Container allocation through the real UtilityVm, the FFI binding and the native simulator (WCOW).
import { expect } from 'chai';
import { allocateContainer } from '../../src/containers/allocate-container.js';
import type { OciSpec } from '../../src/oci/oci-spec.js';
import { disposeUvms, expectEmpty, expectInSync, hcs, hostFs, simulatorState, startUvm } from './devices-support.js';

const VSMB = '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}';

interface SimGuest {
  CombinedLayers: { ContainerRootPath: string; Layers: { Id: string; Path: string }[]; FilterType?: string }[];
  MappedVirtualDisks: { ContainerPath: string }[];
}

describe('integration: WCOW container allocation on the simulator', function () {
  this.timeout(60000);
  afterEach(disposeUvms);
  before(() => {
    hostFs
      .dir('C:\\ctr-it\\l\\top')
      .dir('C:\\ctr-it\\l\\base')
      .file('C:\\ctr-it\\w1\\sandbox.vhdx', 1 << 30)
      .file('C:\\ctr-it\\w2\\sandbox.vhdx', 1 << 30)
      .dir('C:\\ctr-it\\data')
      .file('C:\\ctr-it\\cfg\\app.json', 100);
  });

  it('allocates two containers sharing layers, with mounts and a pipe, and releases to an empty simulator', async () => {
    // NoDirectmap: direct-mapped VSMB shares are never removed (spec §2.4), so "empty" needs it off.
    const uvm = await startUvm({ os: 'windows', vsmbNoDirectMap: true });
    const spec = (scratch: string): OciSpec => ({
      root: { path: '' },
      windows: { layerFolders: ['C:\\ctr-it\\l\\top', 'C:\\ctr-it\\l\\base', scratch] },
      mounts: [
        { destination: 'C:\\data', source: 'C:\\ctr-it\\data' },
        { destination: 'C:\\app.json', source: 'C:\\ctr-it\\cfg\\app.json', options: ['ro'] },
        { destination: '\\\\.\\pipe\\engine', source: '\\\\.\\pipe\\docker_engine' },
        { destination: 'C:\\cache', source: 'sandbox://cache' },
      ],
    });
    const w1 = await allocateContainer(uvm, spec('C:\\ctr-it\\w1'), { containerId: 'w1' });
    const w2 = await allocateContainer(uvm, spec('C:\\ctr-it\\w2'), { containerId: 'w2' });
    expect(w1.spec.root!.path).to.equal('c:\\mounts\\scsi\\m0');
    expect(w2.spec.root!.path).to.equal('c:\\mounts\\scsi\\m1');
    expect(w1.spec.mounts!.map((m) => m.source)).to.deep.equal([
      `${VSMB}\\s3`,
      `${VSMB}\\s4\\app.json`,
      `${VSMB}\\IPC$\\docker_engine`,
      'C:\\SandboxMounts\\cache',
    ]);
    expect(w1.containerEntries.map((e) => e.kind)).to.deep.equal(['mapped-directory', 'mapped-directory', 'mapped-pipe', 'mapped-directory']);

    const guest = (await simulatorState(uvm)).Guest as unknown as SimGuest;
    expect(guest.CombinedLayers).to.deep.equal([
      {
        ContainerRootPath: 'c:\\mounts\\scsi\\m0',
        Layers: [
          { Id: hcs.nameToGuid('top'), Path: `${VSMB}\\s1` },
          { Id: hcs.nameToGuid('base'), Path: `${VSMB}\\s2` },
        ],
      },
      {
        ContainerRootPath: 'c:\\mounts\\scsi\\m1',
        Layers: [
          { Id: hcs.nameToGuid('top'), Path: `${VSMB}\\s1` },
          { Id: hcs.nameToGuid('base'), Path: `${VSMB}\\s2` },
        ],
      },
    ]);
    await expectInSync(uvm);
    await w1.resources.release();
    await w2.resources.release();
    await expectEmpty(uvm);
  });

  it('keeps direct-mapped VSMB shares idle (refcount 0) after release, as the VSMB manager does', async () => {
    const uvm = await startUvm({ os: 'windows' });
    const { resources } = await allocateContainer(
      uvm,
      { windows: { layerFolders: ['C:\\ctr-it\\l\\top', 'C:\\ctr-it\\w1'] } },
      { containerId: 'w1' },
    );
    await resources.release();
    expect(uvm.describe().map((r) => [r.kind, r.hostPath, r.refCount])).to.deep.equal([['vsmb-share', 'C:\\ctr-it\\l\\top', 0]]);
    const guest = (await simulatorState(uvm)).Guest as unknown as SimGuest;
    expect(guest.CombinedLayers).to.deep.equal([]);
    expect(guest.MappedVirtualDisks).to.deep.equal([]);
  });
});

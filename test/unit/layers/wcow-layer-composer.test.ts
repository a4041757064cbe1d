import { expect } from 'chai';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { composeWcowLayers } from '../../../src/layers/wcow-layer-composer.js';
import type { WcowLayerInputs } from '../../../src/layers/layer-inputs.js';
import { FakeUvmDevices } from '../../fakes/fake-uvm-devices.js';
import { expectCode } from '../../fakes/expect-code.js';

const VSMB = '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}';

function uvm(): FakeUvmDevices {
  const fs = new FakeHostFs().dir('C:\\l\\top').dir('C:\\l\\base').file('C:\\s\\sandbox.vhdx').file('C:\\s2\\sandbox.vhdx');
  return new FakeUvmDevices({ os: 'windows', hostFs: fs });
}

const inputs = (scratch = 'C:\\s'): WcowLayerInputs => ({
  os: 'windows',
  layerFolders: ['C:\\l\\top', 'C:\\l\\base'],
  scratchFolder: scratch,
  scratchVhd: `${scratch}\\sandbox.vhdx`,
});

describe('composeWcowLayers (spec §5.3)', () => {
  it('shares layers over VSMB, mounts the scratch on SCSI as the container root, and combines them', async () => {
    const u = uvm();
    const composed = await composeWcowLayers(u, 'c1', inputs());
    expect(u.vsmb.created).to.deep.equal([
      { hostPath: 'C:\\l\\top', readOnly: true, layer: true },
      { hostPath: 'C:\\l\\base', readOnly: true, layer: true },
    ]);
    expect(u.scsi.created).to.deep.equal([{ hostPath: 'C:\\s\\sandbox.vhdx', readOnly: false, grantVmAccess: true, mount: {} }]);
    expect(composed.info.rootfsPath).to.equal('c:\\mounts\\scsi\\m0');
    expect(u.guestRequests).to.deep.equal([
      {
        RequestType: 'Add',
        ResourceType: 'CombinedLayers',
        Settings: {
          ContainerRootPath: 'c:\\mounts\\scsi\\m0',
          Layers: [
            { Id: u.nameToGuid('top'), Path: `${VSMB}\\s1` },
            { Id: u.nameToGuid('base'), Path: `${VSMB}\\s2` },
          ],
        },
      },
    ]);
    expect(u.nameToGuid('top')).to.not.equal(u.nameToGuid('base'));
    await composed.release();
    expect(u.calls.slice(-4)).to.deep.equal([
      'guest Remove CombinedLayers',
      'remove scsi VirtualDisk:C:\\s\\sandbox.vhdx',
      'remove vsmb C:\\l\\base-true',
      'remove vsmb C:\\l\\top-true',
    ]);
    expect(u.guestRequests[1]!.Settings).to.deep.equal({ ContainerRootPath: 'c:\\mounts\\scsi\\m0' });
  });

  it('gives two containers sharing layers one share per layer and their own roots', async () => {
    const u = uvm();
    const a = await composeWcowLayers(u, 'a', inputs());
    const b = await composeWcowLayers(u, 'b', inputs('C:\\s2'));
    expect(b.info.rootfsPath).to.equal('c:\\mounts\\scsi\\m1');
    expect(u.events('add').filter((e) => e.includes('vsmb'))).to.have.length(2);
    await a.release();
    await b.release();
    expect(u.held()).to.deep.equal([]);
  });

  it('refuses a scratch already in use (it is the container root) with MOUNT_CONFLICT', async () => {
    const u = uvm();
    u.hostFs.symlink('C:\\s3\\sandbox.vhdx', 'C:\\s\\sandbox.vhdx');
    const a = await composeWcowLayers(u, 'a', inputs());
    const before = u.calls.length;
    await expectCode(composeWcowLayers(u, 'b', inputs('C:\\s3')), 'MOUNT_CONFLICT');
    expect(u.calls.length).to.equal(before);
    await a.release();
  });

  for (const [step, inject, code] of [
    ['a layer share', (u: FakeUvmDevices) => u.fail('vsmb', 'acquire', 'HCS_ERROR', { match: (k) => k.includes('base') }), 'HCS_ERROR'],
    ['the scratch', (u: FakeUvmDevices) => u.fail('scsi', 'acquire', 'NO_SLOT'), 'NO_SLOT'],
    ['CombinedLayers Add', (u: FakeUvmDevices) => u.fail('guest', 'send', 'HCS_ERROR'), 'HCS_ERROR'],
  ] as const) {
    it(`rolls back everything when ${step} fails`, async () => {
      const u = uvm();
      inject(u);
      await expectCode(composeWcowLayers(u, 'c1', inputs()), code);
      expect(u.events('remove').length).to.equal(u.events('add').length);
      expect(u.held()).to.deep.equal([]);
    });
  }

  it('rejects a Linux UVM with NOT_SUPPORTED and a missing scratch with NOT_FOUND, before any call', async () => {
    const l = new FakeUvmDevices({ os: 'linux' });
    await expectCode(composeWcowLayers(l, 'c1', inputs()), 'NOT_SUPPORTED');
    const u = uvm();
    await expectCode(composeWcowLayers(u, 'c1', inputs('C:\\none')), 'NOT_FOUND');
    expect([...l.calls, ...u.calls]).to.deep.equal([]);
  });
});

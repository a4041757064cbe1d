import { expect } from 'chai';
import { composeWcowLayers } from '../../../src/layers/wcow-layer-composer.js';
import type { WcowLayerInputs } from '../../../src/layers/layer-inputs.js';
import type { UvmDeviceConfig } from '../../../src/devices/device-config.js';
import { expectCode } from '../../fakes/expect-code.js';
import { failModify, upperUvm, type KitUvm } from '../devices/device-test-kit.js';

const VSMB = '\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}';

function uvm(config: Partial<UvmDeviceConfig> = {}): Promise<KitUvm> {
  return upperUvm('windows', { config, hostFs: (fs) => fs.dir('C:\\l\\top').dir('C:\\l\\base').file('C:\\s\\sandbox.vhdx').file('C:\\s2\\sandbox.vhdx') });
}

const inputs = (scratch = 'C:\\s'): WcowLayerInputs => ({
  os: 'windows',
  layerFolders: ['C:\\l\\top', 'C:\\l\\base'],
  scratchFolder: scratch,
  scratchVhd: `${scratch}\\sandbox.vhdx`,
});

const LAYER_OPTIONS = { NoDirectmap: true, ReadOnly: true, ShareRead: true, CacheIo: true, PseudoOplocks: true, TakeBackupPrivilege: true };

describe('composeWcowLayers (spec §5.3)', () => {
  it('shares layers over VSMB, mounts the scratch on SCSI as the container root, and combines them', async () => {
    const u = await uvm();
    const composed = await composeWcowLayers(u, 'c1', inputs());
    const docs = u.kit.docs();
    expect(docs.slice(0, 2)).to.deep.equal([
      { ResourcePath: 'VirtualMachine/Devices/VirtualSmb/Shares', RequestType: 'Add', Settings: { Name: 's1', Path: 'C:\\l\\top', Options: LAYER_OPTIONS } },
      { ResourcePath: 'VirtualMachine/Devices/VirtualSmb/Shares', RequestType: 'Add', Settings: { Name: 's2', Path: 'C:\\l\\base', Options: LAYER_OPTIONS } },
    ]);
    expect(u.ops().slice(2)).to.deep.equal(['Add Scsi/0/Attachments/0', 'guest Add MappedVirtualDisk c:\\mounts\\scsi\\m0', 'guest Add CombinedLayers c:\\mounts\\scsi\\m0']);
    expect(u.kit.hcs.grants.size, 'the writable scratch is granted').to.equal(1);
    expect(composed.info.rootfsPath).to.equal('c:\\mounts\\scsi\\m0');
    expect(docs[4]).to.deep.equal({
      GuestRequest: {
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
    });
    expect(u.nameToGuid('top')).to.not.equal(u.nameToGuid('base'));
    const mark = u.mark();
    await composed.release();
    const removes = u.ops(mark);
    // CombinedLayers first; then the scratch's unmount before its detach, the shares in any order.
    expect(removes[0]).to.equal('guest Remove CombinedLayers c:\\mounts\\scsi\\m0');
    expect(removes).to.have.members([
      'guest Remove CombinedLayers c:\\mounts\\scsi\\m0',
      'guest Remove MappedVirtualDisk c:\\mounts\\scsi\\m0',
      'Remove Scsi/0/Attachments/0',
      'Remove VirtualSmb/Shares s2',
      'Remove VirtualSmb/Shares s1',
    ]);
    expect(removes.indexOf('guest Remove MappedVirtualDisk c:\\mounts\\scsi\\m0')).to.be.lessThan(removes.indexOf('Remove Scsi/0/Attachments/0'));
    expect(u.kit.docs()[5], 'the Remove carries only the root').to.deep.equal({ GuestRequest: { RequestType: 'Remove', ResourceType: 'CombinedLayers', Settings: { ContainerRootPath: 'c:\\mounts\\scsi\\m0' } } });
    expect(u.held()).to.deep.equal([]);
  });

  it('gives two containers sharing layers one share per layer and their own roots', async () => {
    const u = await uvm();
    const a = await composeWcowLayers(u, 'a', inputs());
    const b = await composeWcowLayers(u, 'b', inputs('C:\\s2'));
    expect(b.info.rootfsPath).to.equal('c:\\mounts\\scsi\\m1');
    expect(u.ops().filter((o) => o.startsWith('Add VirtualSmb'))).to.deep.equal(['Add VirtualSmb/Shares s1', 'Add VirtualSmb/Shares s2']);
    await a.release();
    await b.release();
    expect(u.held()).to.deep.equal([]);
  });

  it('refuses a scratch already in use (it is the container root) with MOUNT_CONFLICT', async () => {
    const u = await uvm();
    u.hostFs.symlink('C:\\s3\\sandbox.vhdx', 'C:\\s\\sandbox.vhdx');
    const a = await composeWcowLayers(u, 'a', inputs());
    const before = u.mark();
    await expectCode(composeWcowLayers(u, 'b', inputs('C:\\s3')), 'MOUNT_CONFLICT');
    expect(u.mark()).to.equal(before);
    await a.release();
  });

  for (const [step, inject, code] of [
    ['a layer share', (u: KitUvm) => failModify(u, /^Add VirtualSmb\/Shares s2$/), 'HCS_ERROR'],
    ['the scratch (no slot)', () => undefined, 'NO_SLOT'],
    ['the scratch (attach)', (u: KitUvm) => failModify(u, /^Add Scsi/), 'HCS_ERROR'],
    ['the scratch (guest mount)', (u: KitUvm) => failModify(u, /^guest Add MappedVirtualDisk/), 'HCS_ERROR'],
    ['CombinedLayers Add', (u: KitUvm) => failModify(u, /^guest Add CombinedLayers/), 'HCS_ERROR'],
  ] as const) {
    it(`rolls back everything when ${step} fails`, async () => {
      // No slot: every LUN is reserved at boot; nothing is sent at all.
      const u = await uvm(code === 'NO_SLOT' ? { reservedScsiSlots: Array.from({ length: 64 }, (_, i) => i) } : {});
      inject(u);
      await expectCode(composeWcowLayers(u, 'c1', inputs()), code);
      const ops = u.ops();
      if (code === 'NO_SLOT') expect(ops).to.deep.equal([]);
      // Every Add that succeeded is undone (the failed one changed nothing).
      else expect(ops.filter((o) => /^(guest )?Remove/.test(o)).length, ops.join('\n')).to.equal(ops.filter((o) => /^(guest )?Add/.test(o)).length - 1);
      expect(u.held()).to.deep.equal([]);
      expect(u.kit.system.attached()).to.deep.equal([]);
    });
  }

  it('rejects a Linux UVM with NOT_SUPPORTED and a missing scratch with NOT_FOUND, before any call', async () => {
    const l = await upperUvm('linux');
    await expectCode(composeWcowLayers(l, 'c1', inputs()), 'NOT_SUPPORTED');
    const u = await uvm();
    await expectCode(composeWcowLayers(u, 'c1', inputs('C:\\none')), 'NOT_FOUND');
    expect([...l.ops(), ...u.ops()]).to.deep.equal([]);
  });
});

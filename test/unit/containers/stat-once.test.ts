import { expect } from 'chai';
import { allocateContainer } from '../../../src/containers/allocate-container.js';
import type { OciSpec } from '../../../src/oci/oci-spec.js';
import type { HostFs } from '../../../src/core/host-fs.js';
import { deviceKit, kitUvm, settle } from '../devices/device-test-kit.js';

const lcowSpec = (layers: string[], scratch: string): OciSpec => ({ ociVersion: '1.1.0', root: { path: 'rootfs' }, windows: { layerFolders: [...layers, scratch] } });

describe('allocateContainer asks the host file system once per path', () => {
  it('each layer is stat’ed once (its kind and its size), the scratch stat’ed and resolved once', async () => {
    const kit = await deviceKit({ os: 'linux', vpmemCount: 4 });
    kit.hostFs.file('/l/1/layer.vhd', 1000).file('/l/2/layer.vhd', 2000).file('/s/sandbox.vhdx').dir('/data');
    const u = kitUvm(kit);
    const spec: OciSpec = {
      ociVersion: '1.1.0',
      root: { path: 'rootfs' },
      windows: { layerFolders: ['/l/1', '/l/2', '/s'] },
      mounts: [{ destination: '/data', type: 'bind', source: '/data', options: ['rbind', 'ro'] }],
    };
    const { resources } = await allocateContainer(u, spec, { containerId: 'c1' });
    const counts = new Map<string, number>();
    for (const p of kit.hostFs.lookups) counts.set(p, (counts.get(p) ?? 0) + 1);
    // The scratch: one stat (its kind) and one realpath (its target).
    expect(Object.fromEntries(counts)).to.deep.equal({ '/l/1/layer.vhd': 1, '/l/2/layer.vhd': 1, '/s/sandbox.vhdx': 2, '/data': 1 });
    await resources.release();
    expect([u.scsi, u.vpmem, u.plan9].flatMap((m) => m.describe())).to.deep.equal([]);
  });

  it('WCOW: each layer folder is stat’ed once (its kind, then its VSMB share kind)', async () => {
    const kit = await deviceKit({ os: 'windows' });
    kit.hostFs.dir('C:\\l\\base').dir('C:\\l\\top').file('C:\\s\\sandbox.vhdx');
    const u = kitUvm(kit);
    const spec: OciSpec = { ociVersion: '1.1.0', root: { path: 'rootfs' }, windows: { layerFolders: ['C:\\l\\top', 'C:\\l\\base', 'C:\\s'] } };
    const { resources } = await allocateContainer(u, spec, { containerId: 'c1' });
    const counts = new Map<string, number>();
    for (const p of kit.hostFs.lookups) counts.set(p, (counts.get(p) ?? 0) + 1);
    expect(counts.get('C:\\l\\top')).to.equal(1);
    expect(counts.get('C:\\l\\base')).to.equal(1);
    await resources.release();
    expect([u.scsi, u.vsmb].flatMap((m) => m.describe())).to.deep.equal([]);
  });

  it('a layer the UVM holds on VPMEM already is not stat’ed again (hcsshim does not stat a mapped layer either)', async () => {
    const kit = await deviceKit({ os: 'linux', vpmemCount: 4, vpmemMultiMapping: true });
    kit.hostFs.file('/l/shared/layer.vhd', 5000).file('/l/own/layer.vhd', 6000).file('/s1/sandbox.vhdx').file('/s2/sandbox.vhdx');
    const u = kitUvm(kit);
    const first = await allocateContainer(u, lcowSpec(['/l/shared'], '/s1'), { containerId: 'c1' });
    const before = kit.hostFs.lookups.length;
    const second = await allocateContainer(u, lcowSpec(['/l/own', '/l/shared'], '/s2'), { containerId: 'c2' });
    expect(kit.hostFs.lookups.slice(before)).to.have.members(['/l/own/layer.vhd', '/s2/sandbox.vhdx', '/s2/sandbox.vhdx']);
    expect(u.held().filter((h) => h.startsWith('vpmem'))).to.have.length(2);
    await second.resources.release();
    await first.resources.release();
    expect(u.held()).to.deep.equal([]);
  });

  it('a held layer released before the reservation is placed anew with what its stat said: the Add c1 had', async () => {
    // The race: c2 learns the shared layer from the UVM (no stat), c1 lets go of it while c2 waits
    // for its scratch, and c2's reservation places the layer again from the recorded size.
    const kit = await deviceKit({ os: 'linux', vpmemCount: 4, vpmemMultiMapping: true });
    kit.hostFs.file('/l/shared/layer.vhd', 5 * 1024 * 1024).file('/s1/sandbox.vhdx').file('/s2/sandbox.vhdx');
    const u = kitUvm(kit);
    const first = await allocateContainer(u, lcowSpec(['/l/shared'], '/s1'), { containerId: 'c1' });
    const firstAdd = u.ops().filter((op) => op.includes('VirtualPMem'));
    expect(firstAdd).to.have.length(1);
    let openScratch!: () => void;
    const scratchGate = new Promise<void>((resolve) => (openScratch = resolve));
    const gated: HostFs = {
      stat: (path) => kit.hostFs.stat(path),
      realpath: (path) => (path === '/s2/sandbox.vhdx' ? scratchGate.then(() => kit.hostFs.realpath(path)) : kit.hostFs.realpath(path)),
    };
    const mark = u.mark();
    const before = kit.hostFs.lookups.length;
    const second = allocateContainer({ ...u, hostFs: gated }, lcowSpec(['/l/shared'], '/s2'), { containerId: 'c2' });
    await settle();
    expect(u.vpmem.heldFile('/l/shared/layer.vhd')).to.not.equal(undefined);
    await first.resources.release();
    expect(u.vpmem.heldFile('/l/shared/layer.vhd')).to.equal(undefined);
    openScratch();
    const { resources } = await second;
    expect(kit.hostFs.lookups.slice(before)).to.not.include('/l/shared/layer.vhd');
    // Removed for c1, then added again for c2 exactly as for c1 (device, offset and the size).
    const ops = u.ops(mark).filter((op) => op.includes('VirtualPMem'));
    expect(ops).to.have.length(2);
    expect(ops[1]).to.equal(firstAdd[0]);
    await resources.release();
    expect(u.held()).to.deep.equal([]);
    expect(kit.system.attached()).to.deep.equal([]);
  });
});

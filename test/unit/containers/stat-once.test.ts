import { expect } from 'chai';
import { allocateContainer } from '../../../src/containers/allocate-container.js';
import type { OciSpec } from '../../../src/oci/oci-spec.js';
import { deviceKit, kitUvm } from '../devices/device-test-kit.js';

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
});

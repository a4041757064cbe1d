import { expect } from 'chai';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readBundleSpec, resolveBundlePaths } from '../../../src/cli/bundle.js';
import { ScenarioError } from '../../../src/cli/scenario-error.js';

const BUNDLE = path.resolve('/pods/p/bundles/web');
const at = (rel: string): string => path.resolve(BUNDLE, rel);

describe('cli/bundle', () => {
  it('resolves root.path, layer folders and LCOW host mount sources against the bundle', () => {
    const raw = {
      ociVersion: '1.2.0',
      process: { args: ['/x'] },
      root: { path: 'rootfs', readonly: true },
      windows: { layerFolders: ['../../host/l2', '/abs/l1', '../../host/scratch'] },
      mounts: [
        { destination: '/etc/a.conf', type: 'bind', source: 'conf/a.conf', options: ['ro'] },
        { destination: '/data', type: 'bind', source: '/abs/data' },
        { destination: '/disk', type: 'virtual-disk', source: '../../host/d.vhdx' },
        { destination: '/pd', type: 'physical-disk', source: '\\\\.\\PHYSICALDRIVE1' },
        { destination: '/evd', type: 'extensible-virtual-disk', source: 'evd://space/x.vhdx' },
        { destination: '/proc', type: 'proc', source: 'proc' },
        { destination: '/notype', source: 'relative' },
        { destination: '/sb', type: 'bind', source: 'sandbox://cache' },
        { destination: '/hp', type: 'bind', source: 'hugepages://2M/hp' },
      ],
    };
    const spec = resolveBundlePaths(raw, BUNDLE, 'linux');
    expect(spec.root).to.deep.equal({ path: at('rootfs'), readonly: true });
    expect(spec.windows!.layerFolders).to.deep.equal([at('../../host/l2'), '/abs/l1', at('../../host/scratch')]);
    expect(spec.mounts!.map((m) => m.source)).to.deep.equal([
      at('conf/a.conf'),
      '/abs/data',
      at('../../host/d.vhdx'),
      '\\\\.\\PHYSICALDRIVE1',
      'evd://space/x.vhdx',
      'proc',
      'relative',
      'sandbox://cache',
      'hugepages://2M/hp',
    ]);
    expect(spec.process).to.deep.equal(raw.process);
    // The input is not modified.
    expect(raw.mounts[0]!.source).to.equal('conf/a.conf');
  });

  it('leaves an empty root.path as is (hcsshim accepts it together with layer folders)', () => {
    const spec = resolveBundlePaths({ root: { path: '' }, windows: { layerFolders: ['l', 's'] } }, BUNDLE, 'linux');
    expect(spec.root).to.deep.equal({ path: '' });
  });

  it('resolves WCOW type-less sources but not pipes, Windows paths or uvm:// sources', () => {
    const spec = resolveBundlePaths(
      {
        mounts: [
          { destination: 'C:\\data', source: '../../host/data' },
          { destination: 'C:\\data2', type: '', source: 'data2' },
          { destination: '\\\\.\\pipe\\p', source: '\\\\.\\pipe\\p' },
          { destination: 'C:\\w', source: 'C:\\host\\w' },
          { destination: '\\\\.\\pipe\\q', source: 'uvm://\\\\.\\pipe\\q' },
          { destination: 'C:\\b', type: 'bind', source: 'b' },
        ],
      },
      BUNDLE,
      'windows',
    );
    expect(spec.mounts!.map((m) => m.source)).to.deep.equal([
      at('../../host/data'),
      at('data2'),
      '\\\\.\\pipe\\p',
      'C:\\host\\w',
      'uvm://\\\\.\\pipe\\q',
      'b',
    ]);
  });

  const bad: [string, unknown, string][] = [
    ['a non-object spec', [], 'config'],
    ['a string layer folder list', { windows: { layerFolders: 'a,b' } }, 'windows.layerFolders'],
    ['a numeric layer folder', { windows: { layerFolders: ['a', 3] } }, 'windows.layerFolders[1]'],
    ['a mount that is not an object', { mounts: [{ destination: '/a', type: 'bind', source: 'x' }, 'y'] }, 'mounts[1]'],
    ['a numeric mount source', { mounts: [{ destination: '/a', type: 'bind', source: 1 }] }, 'mounts[0].source'],
    ['a numeric root.path', { root: { path: 1 } }, 'root.path'],
  ];
  for (const [name, raw, field] of bad) {
    it(`rejects ${name}, naming ${field}`, () => {
      let err: unknown;
      try {
        resolveBundlePaths(raw, BUNDLE, 'linux');
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(ScenarioError);
      expect((err as ScenarioError).field).to.equal(field);
      expect((err as ScenarioError).code).to.equal('INVALID_SPEC');
    });
  }

  describe('readBundleSpec', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'uvmctl-bundle-'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('names the bundle field when config.json is missing', async () => {
      let err: unknown;
      await readBundleSpec(path.join(dir, 'nope'), 'linux', 'scenario.containers[2].bundle').catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(ScenarioError);
      expect((err as ScenarioError).field).to.equal('scenario.containers[2].bundle');
      expect((err as ScenarioError).file).to.equal(undefined);
    });

    it('names the bundle field when config.json is not JSON', async () => {
      await writeFile(path.join(dir, 'config.json'), '{ nope');
      let err: unknown;
      await readBundleSpec(dir, 'linux', 'scenario.containers[0].bundle').catch((e: unknown) => (err = e));
      expect((err as ScenarioError).field).to.equal('scenario.containers[0].bundle');
    });

    it('names config.json and the field for a wrong-typed field', async () => {
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'config.json'), JSON.stringify({ windows: { layerFolders: [1] } }));
      let err: unknown;
      await readBundleSpec(dir, 'linux', 'scenario.containers[0].bundle').catch((e: unknown) => (err = e));
      expect((err as ScenarioError).file).to.equal(path.join(dir, 'config.json'));
      expect((err as ScenarioError).field).to.equal('windows.layerFolders[0]');
    });

    it('reads and resolves a valid config.json', async () => {
      await writeFile(path.join(dir, 'config.json'), JSON.stringify({ windows: { layerFolders: ['l', 's'] } }));
      const spec = await readBundleSpec(dir, 'linux', 'scenario.containers[0].bundle');
      expect(spec.windows!.layerFolders).to.deep.equal([path.join(dir, 'l'), path.join(dir, 's')]);
    });
  });
});

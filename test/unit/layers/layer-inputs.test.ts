import { expect } from 'chai';
import type { UvmErrorCode } from '../../../src/core/errors.js';
import { hasLayerInputs, parseLayerInputs } from '../../../src/layers/layer-inputs.js';
import type { OciSpec, RootfsMount } from '../../../src/oci/oci-spec.js';
import { expectCodeSync } from '../../fakes/expect-code.js';

describe('parseLayerInputs (spec §5.1)', () => {
  it('takes LCOW layers from windows.layerFolders, top-most first, scratch last', () => {
    const spec: OciSpec = { windows: { layerFolders: ['/l/top', '/l/base', '/s'] } };
    expect(parseLayerInputs('linux', spec)).to.deep.equal({
      os: 'linux',
      layers: [{ hostPath: '/l/top/layer.vhd' }, { hostPath: '/l/base/layer.vhd' }],
      scratchVhd: '/s/sandbox.vhdx',
    });
  });

  it('joins Windows folders with backslashes', () => {
    const spec: OciSpec = { windows: { layerFolders: ['C:\\snap\\12', 'C:\\snap\\13'] } };
    expect(parseLayerInputs('linux', spec)).to.deep.equal({
      os: 'linux',
      layers: [{ hostPath: 'C:\\snap\\12\\layer.vhd' }],
      scratchVhd: 'C:\\snap\\13\\sandbox.vhdx',
    });
  });

  it('takes WCOW layer folders and the scratch folder', () => {
    const spec: OciSpec = { windows: { layerFolders: ['C:\\l\\a', 'C:\\l\\b', 'C:\\s'] } };
    expect(parseLayerInputs('windows', spec)).to.deep.equal({
      os: 'windows',
      layerFolders: ['C:\\l\\a', 'C:\\l\\b'],
      scratchFolder: 'C:\\s',
      scratchVhd: 'C:\\s\\sandbox.vhdx',
    });
  });

  it('takes an lcow-layer rootfs mount with parentLayerPaths', () => {
    const rootfs: RootfsMount[] = [{ type: 'lcow-layer', source: '/snap/9', options: ['rw', 'parentLayerPaths=["/snap/8","/snap/7"]'] }];
    expect(parseLayerInputs('linux', {}, rootfs)).to.deep.equal({
      os: 'linux',
      layers: [{ hostPath: '/snap/8/layer.vhd' }, { hostPath: '/snap/7/layer.vhd' }],
      scratchVhd: '/snap/9/sandbox.vhdx',
    });
  });

  it('takes a windows-layer rootfs mount with parentLayerPaths', () => {
    const rootfs: RootfsMount[] = [{ type: 'windows-layer', source: 'C:\\s', options: ['parentLayerPaths=["C:\\\\l\\\\a"]'] }];
    expect(parseLayerInputs('windows', {}, rootfs)).to.deep.equal({
      os: 'windows',
      layerFolders: ['C:\\l\\a'],
      scratchFolder: 'C:\\s',
      scratchVhd: 'C:\\s\\sandbox.vhdx',
    });
  });

  it('takes an lcow-partitioned-layer rootfs mount (partition 0 = whole disk)', () => {
    const rootfs: RootfsMount[] = [
      {
        type: 'lcow-partitioned-layer',
        source: '',
        options: ['scratch=/s/sandbox.vhdx', 'parent-partitioned-layers=[{"Path":"/img.vhdx","Partition":2},{"Path":"/base.vhd","Partition":0}]'],
      },
    ];
    expect(parseLayerInputs('linux', {}, rootfs)).to.deep.equal({
      os: 'linux',
      layers: [{ hostPath: '/img.vhdx', partition: 2 }, { hostPath: '/base.vhd' }],
      scratchVhd: '/s/sandbox.vhdx',
    });
  });

  it('tells whether a spec carries layers', () => {
    expect(hasLayerInputs({ root: { path: '/r' } })).to.equal(false);
    expect(hasLayerInputs({ windows: { layerFolders: ['/a', '/b'] } })).to.equal(true);
    expect(hasLayerInputs({}, [{ type: 'lcow-layer', source: '/s' }])).to.equal(true);
  });

  const lcowLayer = (options: string[], extra: Partial<RootfsMount> = {}): RootfsMount[] => [{ type: 'lcow-layer', source: '/s', options, ...extra }];
  const cases: [string, 'linux' | 'windows', OciSpec, RootfsMount[], UvmErrorCode, string][] = [
    ['both inputs', 'linux', { windows: { layerFolders: ['/a', '/s'] } }, lcowLayer(['parentLayerPaths=["/a"]']), 'INVALID_SPEC', 'rootfs'],
    ['neither input', 'linux', {}, [], 'INVALID_SPEC', 'rootfs'],
    ['two rootfs mounts', 'linux', {}, [...lcowLayer(['parentLayerPaths=["/a"]']), ...lcowLayer(['parentLayerPaths=["/a"]'])], 'INVALID_SPEC', 'rootfs'],
    ['a rootfs target', 'linux', {}, lcowLayer(['parentLayerPaths=["/a"]'], { target: '/mnt' }), 'INVALID_SPEC', 'rootfs[0].target'],
    ['one layer folder', 'linux', { windows: { layerFolders: ['/s'] } }, [], 'INVALID_SPEC', 'windows.layerFolders'],
    ['layerFolders not an array', 'linux', { windows: { layerFolders: '/a' as unknown as string[] } }, [], 'INVALID_SPEC', 'windows.layerFolders'],
    ['a relative layer folder', 'linux', { windows: { layerFolders: ['a', '/s'] } }, [], 'INVALID_ARGUMENT', 'windows.layerFolders[0]'],
    ['an empty scratch folder', 'windows', { windows: { layerFolders: ['C:\\a', ''] } }, [], 'INVALID_ARGUMENT', 'windows.layerFolders[1]'],
    ['an unknown rootfs type', 'linux', {}, [{ type: 'overlay', source: '/s' }], 'INVALID_SPEC', 'rootfs[0].type'],
    ['a windows-layer on LCOW', 'linux', {}, [{ type: 'windows-layer', source: '/s', options: ['parentLayerPaths=["/a"]'] }], 'INVALID_SPEC', 'rootfs[0].type'],
    ['an lcow-layer on WCOW', 'windows', {}, lcowLayer(['parentLayerPaths=["/a"]']), 'INVALID_SPEC', 'rootfs[0].type'],
    ['bad parentLayerPaths JSON', 'linux', {}, lcowLayer(['parentLayerPaths=[/a']), 'INVALID_SPEC', 'rootfs[0].options'],
    ['no parentLayerPaths', 'linux', {}, lcowLayer(['rw']), 'INVALID_SPEC', 'rootfs[0].options'],
    ['empty parentLayerPaths', 'linux', {}, lcowLayer(['parentLayerPaths=[]']), 'INVALID_SPEC', 'rootfs[0].options'],
    ['a relative parent layer', 'linux', {}, lcowLayer(['parentLayerPaths=["a"]']), 'INVALID_ARGUMENT', 'rootfs[0].options'],
    ['a relative rootfs source', 'linux', {}, lcowLayer(['parentLayerPaths=["/a"]'], { source: 's' }), 'INVALID_ARGUMENT', 'rootfs[0].source'],
    [
      'an unknown partitioned option',
      'linux',
      {},
      [{ type: 'lcow-partitioned-layer', source: '', options: ['scratch=/s.vhdx', 'parent-partitioned-layers=[{"Path":"/a"}]', 'x=y'] }],
      'INVALID_SPEC',
      'rootfs[0].options',
    ],
    [
      'a negative partition',
      'linux',
      {},
      [{ type: 'lcow-partitioned-layer', source: '', options: ['scratch=/s.vhdx', 'parent-partitioned-layers=[{"Path":"/a","Partition":-1}]'] }],
      'INVALID_SPEC',
      'rootfs[0].options',
    ],
    [
      'a partitioned mount without scratch',
      'linux',
      {},
      [{ type: 'lcow-partitioned-layer', source: '', options: ['parent-partitioned-layers=[{"Path":"/a"}]'] }],
      'INVALID_ARGUMENT',
      'rootfs[0].options',
    ],
  ];
  for (const [what, os, spec, rootfs, code, field] of cases) {
    it(`rejects ${what} with ${code} naming ${field}`, () => {
      const err = expectCodeSync(() => parseLayerInputs(os, spec, rootfs), code);
      expect(err.details.field).to.equal(field);
    });
  }
});

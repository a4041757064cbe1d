// Issue 12, finding 2: ill-typed input fails closed. Each input is rejected with a UvmError naming
// the field and nothing attached (no call reaches the devices); a property test feeds random JSON
// to allocateContainer and planContainer.
import { expect } from 'chai';
import fc from 'fast-check';
import * as v from 'valibot';
import { UvmError } from '../../../src/core/errors.js';
import { allocateContainer, planContainer } from '../../../src/containers/allocate-container.js';
import { OciSpecSchema, RootfsMountSchema } from '../../../src/oci/spec-schema.js';
import type { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import type { UvmDeviceConfig } from '../../../src/devices/device-config.js';
import { expectCode } from '../../fakes/expect-code.js';
import { upperUvm, type KitUvm } from '../devices/device-test-kit.js';

function hostFs(fs: FakeHostFs): FakeHostFs {
  return fs
    .file('/l/1/layer.vhd', 1000)
    .dir('/l/dirvhd/layer.vhd')
    .dir('/l/novhd')
    .file('/s/sandbox.vhdx')
    .dir('/data')
    .file('/cfg/app.conf')
    .file('/disks/d.vhdx');
}

function lcow(config: Partial<UvmDeviceConfig> = {}): Promise<KitUvm> {
  return upperUvm('linux', { config, hostFs });
}

/** Nothing reached HCS (no modify, no grant) and the managers hold nothing. */
function untouched(u: KitUvm): void {
  expect(u.ops(), 'no device call').to.deep.equal([]);
  expect([...u.kit.hcs.grants]).to.deep.equal([]);
  expect(u.held()).to.deep.equal([]);
}

const LAYERS = { layerFolders: ['/l/1', '/s'] };
const bind = (extra: Record<string, unknown>): Record<string, unknown> => ({ destination: '/data', type: 'bind', source: '/data', ...extra });

/** [what, spec, code, field, UVM config] */
const CASES: [string, unknown, string, string, Partial<UvmDeviceConfig>?][] = [
  ['options "ro" (a string)', { windows: LAYERS, mounts: [bind({ options: 'ro' })] }, 'INVALID_SPEC', 'mounts[0].options'],
  ['options as an object', { windows: LAYERS, mounts: [bind({ options: { ro: true } })] }, 'INVALID_SPEC', 'mounts[0].options'],
  ['options as a number', { windows: LAYERS, mounts: [bind({ options: 3 })] }, 'INVALID_SPEC', 'mounts[0].options'],
  ['options [1]', { windows: LAYERS, mounts: [bind({ options: [1] })] }, 'INVALID_SPEC', 'mounts[0].options[0]'],
  ['options [["ro"]]', { windows: LAYERS, mounts: [bind({ options: [['ro']] })] }, 'INVALID_SPEC', 'mounts[0].options[0]'],
  ['root.readonly "true"', { root: { path: '/data', readonly: 'true' } }, 'INVALID_SPEC', 'root.readonly'],
  ['root.readonly 1', { root: { path: '/data', readonly: 1 } }, 'INVALID_SPEC', 'root.readonly'],
  ['root.readonly "yes"', { root: { path: '/data', readonly: 'yes' } }, 'INVALID_SPEC', 'root.readonly'],
  ['destination 5', { windows: LAYERS, mounts: [bind({ destination: 5 })] }, 'INVALID_SPEC', 'mounts[0].destination'],
  ['a relative destination', { windows: LAYERS, mounts: [bind({ destination: 'data' })] }, 'INVALID_ARGUMENT', 'mounts[0].destination'],
  ['a duplicate destination', { windows: LAYERS, mounts: [bind({ options: ['ro'] }), bind({ source: '/cfg/app.conf', options: ['ro'] })] }, 'MOUNT_CONFLICT', 'mounts[1].destination'],
  ['a layer.vhd that is a directory', { windows: { layerFolders: ['/l/dirvhd', '/s'] } }, 'INVALID_ARGUMENT', 'windows.layerFolders[0]'],
  ['VPMEM off and a layer folder without layer.vhd', { windows: { layerFolders: ['/l/novhd', '/s'] } }, 'NOT_FOUND', 'windows.layerFolders[0]', { vpmemCount: 0 }],
  ['a virtual-disk mount whose VHDX does not exist', { windows: LAYERS, mounts: [{ destination: '/d', type: 'virtual-disk', source: '/disks/none.vhdx' }] }, 'NOT_FOUND', 'mounts[0].source'],
  ['a virtual-disk mount whose source is a directory', { windows: LAYERS, mounts: [{ destination: '/d', type: 'virtual-disk', source: '/data' }] }, 'INVALID_ARGUMENT', 'mounts[0].source'],
  ['layerFolders with a number', { windows: { layerFolders: [42, '/s'] } }, 'INVALID_SPEC', 'windows.layerFolders[0]'],
  ['an annotation that is not a string', { windows: LAYERS, annotations: { a: 1 } }, 'INVALID_SPEC', 'annotations.a'],
  ['mounts as an object', { windows: LAYERS, mounts: { 0: bind({}) } }, 'INVALID_SPEC', 'mounts'],
];

describe('input schemas: ill-typed input fails closed (issue 12, finding 2)', () => {
  for (const [what, spec, code, field, facts] of CASES) {
    it(`${what} → ${code} naming ${field}, nothing attached, from allocateContainer and planContainer`, async () => {
      const u = await lcow(facts);
      const err = await expectCode(allocateContainer(u, spec as never, { containerId: 'c1' }), code as never);
      expect(err.details.field, err.message).to.equal(field);
      const planned = await expectCode(planContainer(u, spec as never, { containerId: 'c1' }), code as never);
      expect(planned.details.field).to.equal(field);
      untouched(u);
    });
  }

  it('mount types that are Object.prototype members are not disk types: LCOW keeps them for the guest, WCOW refuses them', async () => {
    for (const type of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      const u = await lcow();
      const plan = await planContainer(u, { windows: LAYERS, mounts: [{ destination: '/x', type, source: '/data' }] }, { containerId: 'c1' });
      expect(plan.mounts[0]).to.include({ kind: 'keep', reason: 'not-a-host-mount' });
      const w = await upperUvm('windows', { hostFs: (fs) => fs.dir('C:\\l').file('C:\\s\\sandbox.vhdx').dir('C:\\d') });
      const err = await expectCode(
        allocateContainer(w, { windows: { layerFolders: ['C:\\l', 'C:\\s'] }, mounts: [{ destination: 'C:\\x', type, source: 'C:\\d' }] }, { containerId: 'c1' }),
        'INVALID_SPEC',
      );
      expect(err.details.field).to.equal('mounts[0].type');
      untouched(w);
    }
  });

  it('ill-typed options: INVALID_ARGUMENT naming the option; ill-typed rootfs mounts: INVALID_SPEC naming the field', async () => {
    const u = await lcow();
    const spec = { windows: LAYERS };
    const bad: [Record<string, unknown>, string, string][] = [
      [{ encryptScratch: 'yes' }, 'INVALID_ARGUMENT', 'options.encryptScratch'],
      [{ signal: {} }, 'INVALID_ARGUMENT', 'options.signal'],
      [{ logger: console.log }, 'INVALID_ARGUMENT', 'options.logger'],
      [{ onChange: 1 }, 'INVALID_ARGUMENT', 'options.onChange'],
      [{ rootfs: 'lcow-layer' }, 'INVALID_SPEC', 'rootfs'],
      [{ rootfs: [{ type: 'lcow-layer', source: 5 }] }, 'INVALID_SPEC', 'rootfs[0].source'],
      [{ rootfs: [{ type: 'lcow-layer', source: '/s', options: ['parentLayerPaths=[]', 2] }] }, 'INVALID_SPEC', 'rootfs[0].options[1]'],
    ];
    for (const [options, code, field] of bad) {
      const err = await expectCode(allocateContainer(u, spec, { containerId: 'c1', ...options } as never), code as never);
      expect(err.details.field, JSON.stringify(options)).to.equal(field);
    }
    untouched(u);
  });

  it('property: random JSON specs → either a valid spec that allocates and releases, or a UvmError with nothing attached', async () => {
    // Random values where the library reads typed fields, inside otherwise plausible specs.
    const anyJson = fc.jsonValue({ maxDepth: 3 });
    const pathLike = fc.constantFrom('/data', '/cfg/app.conf', '/disks/d.vhdx', '/l/1', '/l/novhd', '/s', 'rel', '', '/x/../y');
    const field = <T>(arb: fc.Arbitrary<T>) => fc.oneof({ weight: 3, arbitrary: arb }, { weight: 1, arbitrary: anyJson });
    const mount = fc.record(
      {
        destination: field(fc.constantFrom('/m1', '/m2', 'rel', '/data', 'blockdev:///b', '/a/../b')),
        type: field(fc.constantFrom('bind', 'virtual-disk', 'physical-disk', 'tmpfs', 'constructor', '__proto__', 'toString')),
        source: field(pathLike),
        options: field(fc.array(fc.constantFrom('ro', 'rw', 'rbind'), { maxLength: 3 })),
      },
      { requiredKeys: [] },
    );
    const spec = fc.oneof(
      { weight: 1, arbitrary: anyJson },
      {
        weight: 6,
        arbitrary: fc.record(
          {
            root: field(fc.record({ path: field(pathLike), readonly: field(fc.boolean()) }, { requiredKeys: [] })),
            windows: field(fc.record({ layerFolders: field(fc.array(field(pathLike), { maxLength: 3 })) }, { requiredKeys: [] })),
            mounts: field(fc.array(field(mount), { maxLength: 3 })),
            annotations: field(fc.dictionary(fc.string({ maxLength: 3 }), field(fc.string({ maxLength: 3 })), { maxKeys: 2 })),
          },
          { requiredKeys: [] },
        ),
      },
    );
    const rootfs = fc.option(fc.oneof(anyJson, fc.array(fc.record({ type: field(fc.constantFrom('lcow-layer', 'windows-layer')), source: field(pathLike) }), { maxLength: 2 })), { nil: undefined });

    await fc.assert(
      fc.asyncProperty(spec, rootfs, fc.boolean(), async (input, rootfsInput, plan) => {
        const u = await lcow();
        const options = { containerId: 'c1', ...(rootfsInput === undefined ? {} : { rootfs: rootfsInput }) } as never;
        let outcome: unknown;
        try {
          if (plan) await planContainer(u, input as never, options);
          else {
            const { resources } = await allocateContainer(u, input as never, options);
            await resources.release();
          }
          outcome = 'ok';
        } catch (err) {
          outcome = err;
        }
        if (outcome !== 'ok') {
          expect(UvmError.is(outcome), `a rejection must be a UvmError, got ${String(outcome)}`).to.equal(true);
        } else {
          // Fail closed: nothing ill-typed is ever accepted (no default for a wrong-typed boolean or option).
          expect(v.is(OciSpecSchema, input), `accepted an ill-typed spec ${JSON.stringify(input)}`).to.equal(true);
          if (rootfsInput !== undefined) expect(v.is(v.array(RootfsMountSchema), rootfsInput)).to.equal(true);
        }
        expect(u.held()).to.deep.equal([]);
        expect(u.kit.system.attached()).to.deep.equal([]);
      }),
      { numRuns: 300 },
    );
  });
});

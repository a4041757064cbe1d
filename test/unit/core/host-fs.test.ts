import { expect } from 'chai';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { oncePerPath } from '../../../src/core/host-fs.js';
import { UvmError } from '../../../src/core/errors.js';

describe('oncePerPath (one allocation asks the file system once per path)', () => {
  it('stats and resolves each path once, concurrent callers included', async () => {
    const inner = new FakeHostFs().file('/l/layer.vhd', 7).symlink('/s/link.vhdx', '/l/layer.vhd');
    const fs = oncePerPath(inner);
    const sizes = await Promise.all([fs.stat('/l/layer.vhd'), fs.stat('/l/layer.vhd'), fs.stat('/l/layer.vhd')]);
    expect(sizes.map((s) => s.size)).to.deep.equal([7, 7, 7]);
    expect(await fs.realpath('/s/link.vhdx')).to.equal('/l/layer.vhd');
    expect(await fs.realpath('/s/link.vhdx')).to.equal('/l/layer.vhd');
    expect(await fs.stat('/s/link.vhdx')).to.include({ isFile: true, size: 7 });
    expect(inner.lookups).to.deep.equal(['/l/layer.vhd', '/s/link.vhdx', '/s/link.vhdx']);
  });

  it('does not share a failure: each caller gets its own error object', async () => {
    const inner = new FakeHostFs();
    const fs = oncePerPath(inner);
    const errors = await Promise.all([fs.stat('/missing'), fs.stat('/missing')].map((p) => p.then(() => undefined, (err: unknown) => err)));
    expect(errors.every((e) => UvmError.is(e, 'NOT_FOUND'))).to.equal(true);
    expect(errors[0]).to.not.equal(errors[1]);
  });
});

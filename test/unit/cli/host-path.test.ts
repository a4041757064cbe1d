import { expect } from 'chai';
import path from 'node:path';
import { displayPath } from '../../../src/cli/display-path.js';
import { isAbsoluteHostPath, resolveHostPath } from '../../../src/cli/host-path.js';

describe('cli/host-path', () => {
  it('treats POSIX, drive, UNC and device paths as absolute', () => {
    for (const p of ['/x', 'C:\\x', 'c:/x', '\\\\server\\share', '\\\\.\\pipe\\p', '\\\\.\\PHYSICALDRIVE0']) {
      expect(isAbsoluteHostPath(p), p).to.equal(true);
    }
    for (const p of ['x', './x', '../x', 'host\\x']) expect(isAbsoluteHostPath(p), p).to.equal(false);
  });

  it('resolves only relative paths against the base', () => {
    expect(resolveHostPath('/base/b', '../host/x')).to.equal(path.resolve('/base/host/x'));
    expect(resolveHostPath('/base/b', 'C:\\l\\x')).to.equal('C:\\l\\x');
  });

  it('shows paths inside the base relative to it, others unchanged', () => {
    const base = path.resolve('/pods/p');
    expect(displayPath(path.join(base, 'host', 'a.vhd'), base)).to.equal(path.join('host', 'a.vhd'));
    expect(displayPath(path.resolve('/pods/other/a.vhd'), base)).to.equal(path.resolve('/pods/other/a.vhd'));
    expect(displayPath(path.resolve('/pods/p2/a'), base)).to.equal(path.resolve('/pods/p2/a'));
    expect(displayPath('\\\\.\\pipe\\p', base)).to.equal('\\\\.\\pipe\\p');
    expect(displayPath(undefined, base)).to.equal('');
  });
});

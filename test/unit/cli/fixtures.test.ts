import { expect } from 'chai';
import { mkdtemp, readFile, rm, stat, writeFile, readdir, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureFixtures } from '../../../src/cli/fixtures.js';

describe('cli/fixtures', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'uvmctl-fixtures-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates sparse files, files and folders with their parents, and reports them', async () => {
    const vhd = path.join(dir, 'host', 'layers', 'a', 'layer.vhd');
    const conf = path.join(dir, 'host', 'cfg', 'a.conf');
    const data = path.join(dir, 'host', 'data');
    const created = await ensureFixtures([
      { type: 'sparse-file', path: vhd, sizeBytes: 96 * 1024 * 1024 },
      { type: 'file', path: conf, content: 'x=1\n' },
      { type: 'directory', path: data },
    ]);
    expect(created).to.deep.equal([vhd, conf, data]);
    const s = await stat(vhd);
    expect(s.size).to.equal(96 * 1024 * 1024);
    // Sparse: (almost) no blocks allocated.
    expect(s.blocks * 512).to.be.lessThan(1024 * 1024);
    expect(await readFile(conf, 'utf8')).to.equal('x=1\n');
    expect((await stat(data)).isDirectory()).to.equal(true);
    // No temporary files left next to them.
    expect(await readdir(path.dirname(vhd))).to.deep.equal(['layer.vhd']);
  });

  it('leaves existing paths alone (no overwrite, no resize)', async () => {
    const conf = path.join(dir, 'a.conf');
    const vhd = path.join(dir, 'layer.vhd');
    await writeFile(conf, 'mine');
    await writeFile(vhd, 'tiny');
    await mkdir(path.join(dir, 'd'));
    const created = await ensureFixtures([
      { type: 'file', path: conf, content: 'theirs' },
      { type: 'sparse-file', path: vhd, sizeBytes: 4096 },
      { type: 'directory', path: path.join(dir, 'd') },
    ]);
    expect(created).to.deep.equal([]);
    expect(await readFile(conf, 'utf8')).to.equal('mine');
    expect((await stat(vhd)).size).to.equal(4);
  });

  it('two concurrent runs create each file once, whole', async () => {
    const vhd = path.join(dir, 'l', 'layer.vhd');
    const fixtures = [{ type: 'sparse-file' as const, path: vhd, sizeBytes: 8192 }];
    const [a, b] = await Promise.all([ensureFixtures(fixtures), ensureFixtures(fixtures)]);
    expect(a.length + b.length).to.equal(1);
    expect((await stat(vhd)).size).to.equal(8192);
    expect(await readdir(path.dirname(vhd))).to.deep.equal(['layer.vhd']);
  });
});

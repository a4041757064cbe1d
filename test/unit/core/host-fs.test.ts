import { expect } from 'chai';
import { FakeHostFs } from '../../../src/core/fake-host-fs.js';
import { NodeHostFs, oncePerPath } from '../../../src/core/host-fs.js';
import fs, { mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sinon from 'sinon';
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

describe('NodeHostFs with one node:fs call per request (worker: false; the same path asked while its call is in flight: one fs call)', () => {
  let dir: string;
  let stat: sinon.SinonSpy;
  let realpath: sinon.SinonSpy;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'host-fs-'));
    stat = sinon.spy(fs, 'stat');
    realpath = sinon.spy(fs.realpath, 'native');
  });
  afterEach(() => {
    sinon.restore();
    rmSync(dir, { recursive: true, force: true });
  });

  it('asks once per path and batch; each caller gets its own result', async () => {
    const file = join(dir, 'layer.vhd');
    writeFileSync(file, 'abc');
    const hostFs = new NodeHostFs({ worker: false });
    const [a, b, c] = await Promise.all([hostFs.stat(file), hostFs.stat(file), hostFs.stat(dir)]);
    expect(a).to.deep.equal({ isFile: true, isDirectory: false, size: 3 });
    expect(b).to.deep.equal(a);
    expect(b).to.not.equal(a);
    expect(c.isDirectory).to.equal(true);
    expect(await Promise.all([hostFs.realpath(file), hostFs.realpath(file)])).to.deep.equal([file, file].map((p) => realpathSync(p)));
    expect(stat.callCount).to.equal(2);
    expect(realpath.callCount).to.equal(1);
  });

  it('answers with the path as it was after the first request sharing the call; a failure is each caller’s own error', async () => {
    const file = join(dir, 'late.vhd');
    const hostFs = new NodeHostFs({ worker: false });
    writeFileSync(file, 'x');
    const first = hostFs.stat(file); // the call is made now, while the run goes on
    const second = hostFs.stat(file); // shares the call in flight
    expect(stat.callCount).to.equal(1);
    expect(await Promise.all([first, second])).to.deep.equal([
      { isFile: true, isDirectory: false, size: 1 },
      { isFile: true, isDirectory: false, size: 1 },
    ]);
    rmSync(file);
    // The batch above is over: this asks again and sees the file gone, each caller with its own error.
    const errors = await Promise.all([hostFs.stat(file), hostFs.stat(file), hostFs.realpath(file)].map((p) => p.then(() => undefined, (err: unknown) => err)));
    expect(errors.every((e) => UvmError.is(e, 'NOT_FOUND'))).to.equal(true);
    expect(errors[0]).to.not.equal(errors[1]);
    expect(stat.callCount).to.equal(2);
  });

  it('a path node:fs refuses synchronously (a NUL byte) is NOT_FOUND for every caller, and the next call asks again', async () => {
    const hostFs = new NodeHostFs({ worker: false });
    const bad = join(dir, 'a\0b');
    const errors = await Promise.all([hostFs.stat(bad), hostFs.realpath(bad)].map((p) => p.then(() => undefined, (err: unknown) => err)));
    expect(errors.every((e) => UvmError.is(e, 'NOT_FOUND'))).to.equal(true);
    const file = join(dir, 'ok.vhd');
    writeFileSync(file, 'ab');
    expect(await hostFs.stat(file)).to.deep.equal({ isFile: true, isDirectory: false, size: 2 });
  });
});

describe('NodeHostFs over the caller\'s own FsCalls (the `worker` option takes the narrow port)', () => {
  it('asks the given calls, one per path in flight, and turns their errors into NOT_FOUND', async () => {
    const asked: string[] = [];
    const calls = {
      stat(path: string, done: (err: NodeJS.ErrnoException | null, result?: { isFile: boolean; isDirectory: boolean; size: number }) => void) {
        asked.push(`stat ${path}`);
        setImmediate(() =>
          path === '/l/layer.vhd'
            ? done(null, { isFile: true, isDirectory: false, size: 5 })
            : done(Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' })),
        );
      },
      realpath(path: string, done: (err: NodeJS.ErrnoException | null, result?: string) => void) {
        asked.push(`realpath ${path}`);
        setImmediate(() => done(null, `/real${path}`));
      },
    };
    const hostFs = new NodeHostFs({ worker: calls });
    const [a, b, r] = await Promise.all([hostFs.stat('/l/layer.vhd'), hostFs.stat('/l/layer.vhd'), hostFs.realpath('/s/x')]);
    expect(a).to.deep.equal({ isFile: true, isDirectory: false, size: 5 });
    expect(b).to.deep.equal(a);
    expect(r).to.equal('/real/s/x');
    const err = await hostFs.stat('/missing').then(() => undefined, (e: unknown) => e);
    expect(UvmError.is(err, 'NOT_FOUND')).to.equal(true);
    expect((err as UvmError).details).to.deep.equal({ hostPath: '/missing' });
    expect(asked).to.deep.equal(['stat /l/layer.vhd', 'realpath /s/x', 'stat /missing']);
  });

  it('refuses a worker option that is neither false nor calls (INVALID_ARGUMENT), before any I/O', () => {
    for (const worker of [true, null, {}, { stat() {} }, 'thread']) {
      expect(() => new NodeHostFs({ worker: worker as never }), String(worker)).to.throw(UvmError).with.property('code', 'INVALID_ARGUMENT');
    }
  });
});

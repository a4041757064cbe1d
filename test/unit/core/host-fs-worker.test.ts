import { expect } from 'chai';
import { execFile } from 'node:child_process';
import fs, { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sinon from 'sinon';
import { UvmError } from '../../../src/core/errors.js';
import { HostFsWorker, type FsDone, type HostFsWorkerOptions } from '../../../src/core/host-fs-worker.js';
import { NodeHostFs, type HostStat } from '../../../src/core/host-fs.js';

const fakeEntry = (name: string): URL => new URL(`../../support/${name}.js`, import.meta.url);

/** One request's outcome as a promise (rejects with the error node:fs or the worker reported). */
const ask = <R>(call: (done: FsDone<R>) => void): Promise<R> =>
  new Promise((resolve, reject) => call((err, result) => (err ? reject(err) : resolve(result as R))));

const failure = (p: Promise<unknown>): Promise<NodeJS.ErrnoException> =>
  p.then(
    () => expect.fail('expected a failure'),
    (err: unknown) => err as NodeJS.ErrnoException,
  );

describe('HostFsWorker (stat and realpath in batches on a worker thread)', () => {
  let dir: string;
  let file: string;
  let workers: HostFsWorker[];
  const make = (options?: HostFsWorkerOptions): HostFsWorker => {
    const worker = new HostFsWorker(options);
    workers.push(worker);
    return worker;
  };
  const fileStat: HostStat = { isFile: true, isDirectory: false, size: 3 };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'host-fs-worker-'));
    file = join(dir, 'layer.vhd');
    writeFileSync(file, 'abc');
    workers = [];
  });
  afterEach(async () => {
    sinon.restore();
    await Promise.all(workers.map((w) => w.close()));
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers one turn's requests with one batch, as node:fs would (kind, size, resolved path, failures)", async () => {
    const sub = join(dir, 'share');
    mkdirSync(sub);
    const link = join(dir, 'link.vhd');
    symlinkSync(file, link);
    const worker = make();
    expect(await worker.start()).to.equal(true);
    const stat = sinon.spy(fs, 'stat');
    const realpath = sinon.spy(fs.realpath, 'native');
    const missing = join(dir, 'missing.vhd');
    const [a, b, c, d, e] = await Promise.all([
      ask<HostStat>((done) => worker.stat(file, done)),
      ask<HostStat>((done) => worker.stat(sub, done)),
      ask<string>((done) => worker.realpath(link, done)),
      failure(ask<HostStat>((done) => worker.stat(missing, done))),
      failure(ask<string>((done) => worker.realpath(join(dir, 'a\0b'), done))),
    ]);
    expect(a).to.deep.equal(fileStat);
    expect(b).to.include({ isFile: false, isDirectory: true });
    expect(c).to.equal(realpathSync(file));
    expect(d).to.be.instanceOf(Error);
    expect(d).to.include({ code: 'ENOENT', syscall: 'stat', path: missing });
    expect(d.message).to.contain('ENOENT');
    expect(e).to.include({ code: 'ERR_INVALID_ARG_VALUE', syscall: 'realpath' });
    expect(worker.counts).to.deep.equal({ batches: 1, answered: 5, direct: 0, reissued: 0, starts: 1 });
    expect(stat.callCount + realpath.callCount).to.equal(0);
  });

  it('asks node:fs until the worker is up, and starts it with the first request', async () => {
    const worker = make();
    const stat = sinon.spy(fs, 'stat');
    expect(await ask<HostStat>((done) => worker.stat(file, done))).to.deep.equal(fileStat);
    expect(stat.callCount).to.equal(1);
    expect(worker.counts).to.deep.include({ direct: 1, batches: 0, starts: 1 });
    expect(await worker.start()).to.equal(true);
    expect(await ask<HostStat>((done) => worker.stat(file, done))).to.deep.equal(fileStat);
    expect(stat.callCount).to.equal(1);
    expect(worker.counts).to.deep.include({ direct: 1, batches: 1, answered: 1, starts: 1 });
  });

  it("answers while a caller's fake timers are installed", async () => {
    const worker = make({ stallMs: 60_000 });
    expect(await worker.start()).to.equal(true);
    const clock = sinon.useFakeTimers({ toFake: ['setImmediate', 'setTimeout', 'clearTimeout'] });
    try {
      expect(await ask<HostStat>((done) => worker.stat(file, done))).to.deep.equal(fileStat);
    } finally {
      clock.restore();
    }
    expect(worker.counts).to.deep.include({ batches: 1, answered: 1 });
  });

  it('a batch unanswered for stallMs is asked of node:fs, and new requests go there while it stays unanswered', async () => {
    const worker = make({ entry: fakeEntry('hung-fs-thread'), stallMs: 20 });
    expect(await worker.start()).to.equal(true);
    const stat = sinon.spy(fs, 'stat');
    const realpath = sinon.spy(fs.realpath, 'native');
    const [s, r] = await Promise.all([ask<HostStat>((done) => worker.stat(file, done)), ask<string>((done) => worker.realpath(file, done))]);
    expect(s).to.deep.equal(fileStat);
    expect(r).to.equal(realpathSync(file));
    expect(worker.counts).to.deep.include({ batches: 1, answered: 0, reissued: 2, direct: 0 });
    expect(stat.callCount + realpath.callCount).to.equal(2);

    expect(await ask<HostStat>((done) => worker.stat(file, done))).to.deep.equal(fileStat);
    expect(worker.counts).to.deep.include({ batches: 1, direct: 1 });
  });

  it('what a dying worker owed is asked of node:fs; a new worker starts for later requests, three times at most', async () => {
    const worker = make({ entry: fakeEntry('exiting-fs-thread'), stallMs: 60_000 });
    for (let i = 1; i <= 3; i++) {
      expect(await worker.start()).to.equal(true);
      expect(await ask<HostStat>((done) => worker.stat(file, done))).to.deep.equal(fileStat);
      expect(worker.counts).to.deep.include({ batches: i, reissued: i, answered: 0, starts: i });
    }
    expect(await worker.start()).to.equal(false);
    expect(await ask<HostStat>((done) => worker.stat(file, done))).to.deep.equal(fileStat);
    expect(worker.counts).to.deep.include({ batches: 3, direct: 1, starts: 3 });
  });

  it('the worker does not keep the process alive unless it owes an answer (a hung one neither, once its requests are answered elsewhere)', async () => {
    const module = new URL('../../../src/core/host-fs-worker.js', import.meta.url).href;
    const report = 'console.log(JSON.stringify({ err: err?.code, s, counts: worker.counts }))';
    /** Runs `lines` in a child process: its exit code and what it printed last. */
    const child = (lines: string[], options = '{}'): Promise<{ code: number | null; last: Record<string, unknown> }> =>
      new Promise((resolve) => {
        const script = [`const { HostFsWorker } = await import(${JSON.stringify(module)});`, `const worker = new HostFsWorker(${options});`, ...lines].join('\n');
        const proc = execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 10_000 }, (err, stdout) =>
          resolve({ code: proc.exitCode ?? (err ? -1 : 0), last: JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown> }),
        );
      });
    // The first request goes to node:fs and starts the worker, which is never used.
    const started = await child([`worker.stat(${JSON.stringify(file)}, (err, s) => ${report});`]);
    expect(started.code).to.equal(0);
    expect(started.last).to.deep.include({ s: fileStat });
    expect(started.last.counts).to.deep.include({ direct: 1, starts: 1 });
    // A request the worker answered.
    const answered = await child(["if (!(await worker.start())) throw new Error('no worker');", `worker.stat(${JSON.stringify(file)}, (err, s) => ${report});`]);
    expect(answered.code).to.equal(0);
    expect(answered.last).to.deep.include({ s: fileStat });
    expect(answered.last.counts).to.deep.include({ batches: 1, answered: 1 });
    // A worker that never answers: its request is answered by node:fs after stallMs, and the hung thread holds nothing.
    const hung = await child(
      ["if (!(await worker.start())) throw new Error('no worker');", `worker.stat(${JSON.stringify(file)}, (err, s) => ${report});`],
      `{ entry: new URL(${JSON.stringify(fakeEntry('hung-fs-thread').href)}), stallMs: 20 }`,
    );
    expect(hung.code).to.equal(0);
    expect(hung.last).to.deep.include({ s: fileStat });
    expect(hung.last.counts).to.deep.include({ batches: 1, answered: 0, reissued: 1 });
  });

  it('close(): what the worker owed is asked of node:fs', async () => {
    const worker = make({ entry: fakeEntry('hung-fs-thread'), stallMs: 60_000 });
    expect(await worker.start()).to.equal(true);
    const pending = ask<HostStat>((done) => worker.stat(file, done));
    // The batch goes out on the next turn; close once it has.
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(worker.counts.batches).to.equal(1);
    await worker.close();
    expect(await pending).to.deep.equal(fileStat);
    expect(worker.counts).to.deep.include({ reissued: 1, answered: 0 });
  });
});

describe('NodeHostFs over a HostFsWorker', () => {
  let dir: string;
  let worker: HostFsWorker;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'node-host-fs-worker-'));
    worker = new HostFsWorker();
  });
  afterEach(async () => {
    await worker.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends the worker one request per path in flight; each caller gets its own answer or error', async () => {
    const file = join(dir, 'layer.vhd');
    writeFileSync(file, 'abcd');
    expect(await worker.start()).to.equal(true);
    const hostFs = new NodeHostFs({ worker });
    const missing = join(dir, 'missing');
    const [a, b, c, e1, e2] = await Promise.all([
      hostFs.stat(file),
      hostFs.stat(file),
      hostFs.realpath(file),
      failure(hostFs.stat(missing)),
      failure(hostFs.stat(missing)),
    ]);
    expect(a).to.deep.equal({ isFile: true, isDirectory: false, size: 4 });
    expect(b).to.deep.equal(a);
    expect(b).to.not.equal(a);
    expect(c).to.equal(realpathSync(file));
    expect(UvmError.is(e1, 'NOT_FOUND') && UvmError.is(e2, 'NOT_FOUND')).to.equal(true);
    expect(e1).to.not.equal(e2);
    expect((e1 as unknown as UvmError).details).to.deep.equal({ hostPath: missing });
    expect(((e1 as unknown as UvmError).cause as NodeJS.ErrnoException).code).to.equal('ENOENT');
    expect(worker.counts).to.deep.include({ batches: 1, answered: 3, direct: 0 });
  });
});

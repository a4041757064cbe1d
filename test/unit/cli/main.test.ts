import { expect } from 'chai';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { UvmError } from '../../../src/core/errors.js';
import { errorLine, main, type CliEnvironment } from '../../../src/cli/main.js';
import type { PlanBackend } from '../../../src/cli/plan-backend.js';
import type { RunBackend, RunUvm } from '../../../src/cli/run-backend.js';
import type { RunReport } from '../../../src/cli/run-report.js';

/** Captured streams plus a run backend whose UVM holds nothing and can be told to misbehave. */
function environment(options: { hotAdded?: number; failRelease?: boolean; failCreate?: UvmError } = {}) {
  const out = { stdout: '', stderr: '', traces: [] as (string | undefined)[], checks: [] as (boolean | undefined)[], created: 0 };
  const uvm: RunUvm = {
    id: 'pod',
    os: 'linux',
    describe: () => [],
    allocateContainer: async (spec) => ({
      spec: { ...spec, root: { path: '/run/gcs/c/x/rootfs' } },
      containerEntries: [],
      release: async () => {
        if (options.failRelease) throw new UvmError('HCS_ERROR', 'release failed');
      },
    }),
    keptShares: () => 0,
    hotAdded: async () => options.hotAdded ?? 0,
    close: async () => undefined,
  };
  const runBackend: RunBackend = {
    kind: 'simulator',
    createUvm: async () => {
      out.created += 1;
      if (options.failCreate) throw options.failCreate;
      return uvm;
    },
  };
  const env: CliEnvironment = {
    stdout: { write: (s: string) => (out.stdout += s) },
    stderr: { write: (s: string) => (out.stderr += s) },
    runBackend: async ({ trace, checkSimulator }) => {
      out.traces.push(trace);
      out.checks.push(checkSimulator);
      return runBackend;
    },
    planBackend: async (): Promise<PlanBackend> => {
      throw new Error('not used');
    },
  };
  return { env, out };
}

describe('cli/main', () => {
  let dir: string;
  let scenario: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'uvmctl-main-'));
    await mkdir(path.join(dir, 'b'));
    await writeFile(path.join(dir, 'b', 'config.json'), JSON.stringify({ windows: { layerFolders: ['l', 's'] } }));
    scenario = path.join(dir, 'scenario.json');
    await writeFile(scenario, JSON.stringify({ uvm: { id: 'pod', os: 'linux' }, containers: [{ id: 'a', bundle: 'b' }] }));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('run: exit 0, the text report on stdout, progress on stderr', async () => {
    const { env, out } = environment();
    expect(await main(['run', scenario], env)).to.equal(0);
    expect(out.stdout).to.match(/^UVM pod \(linux, HCS simulator\)/);
    expect(out.stderr).to.include('[uvmctl] allocating container a (1/1)\n');
    expect(out.checks, 'no simulator check unless asked').to.deep.equal([false]);
  });

  it('run --check-simulator asks the backend for the simulator check', async () => {
    const { env, out } = environment();
    expect(await main(['run', scenario, '-q', '--check-simulator'], env)).to.equal(0);
    expect(out.checks).to.deep.equal([true]);
  });

  it('run --json -q --trace: one JSON document, no progress, the trace path made absolute', async () => {
    const { env, out } = environment();
    const rel = path.relative(process.cwd(), path.join(dir, 't.jsonl'));
    expect(await main(['run', scenario, '--json', '-q', '--trace', rel], env)).to.equal(0);
    const report = JSON.parse(out.stdout) as RunReport;
    expect(report.containers[0]!.rootfs).to.equal('/run/gcs/c/x/rootfs');
    expect(out.stderr).to.equal('');
    expect(out.traces).to.deep.equal([path.join(dir, 't.jsonl')]);
  });

  it('exit 1 with RELEASE_FAILED when something is left after the teardown', async () => {
    const { env, out } = environment({ hotAdded: 1 });
    expect(await main(['run', scenario, '-q'], env)).to.equal(1);
    expect(out.stderr).to.match(/^uvmctl: RELEASE_FAILED: .*HotAdded 1\)\n$/);
  });

  it('exit 1 with RELEASE_FAILED when a release fails, after printing the report', async () => {
    const { env, out } = environment({ failRelease: true });
    expect(await main(['run', scenario, '-q', '--json'], env)).to.equal(1);
    expect((JSON.parse(out.stdout) as RunReport).ok).to.equal(false);
    expect(out.stderr.split('\n').filter(Boolean)).to.have.length(1);
    expect(out.stderr).to.match(/^uvmctl: RELEASE_FAILED: /);
  });

  it('exit 1 with the code of a library error, one line', async () => {
    const { env, out } = environment({ failCreate: new UvmError('INVALID_ARGUMENT', 'bad\noptions') });
    expect(await main(['run', scenario, '-q'], env)).to.equal(1);
    expect(out.stderr).to.equal('uvmctl: INVALID_ARGUMENT: bad options\n');
  });

  it('exit 2 naming the field for a bad scenario, before any backend is made', async () => {
    await writeFile(scenario, JSON.stringify({ uvm: { id: 'pod', os: 'linux' }, containers: [{ id: 'a', bundle: 'b' }, { id: 'c', bundle: false }] }));
    const { env, out } = environment();
    expect(await main(['run', scenario], env)).to.equal(2);
    expect(out.stderr).to.match(/^uvmctl: scenario\.containers\[1\]\.bundle: expected a string/);
    expect(out.stderr.split('\n').filter(Boolean)).to.have.length(1);
    expect(out.traces).to.deep.equal([]);
  });

  it('exit 2 for an unreadable scenario and for a bundle without config.json', async () => {
    const { env, out } = environment();
    expect(await main(['plan', path.join(dir, 'nope.json')], env)).to.equal(2);
    expect(out.stderr).to.match(/^uvmctl: scenario: cannot read /);
    await rm(path.join(dir, 'b', 'config.json'));
    out.stderr = '';
    expect(await main(['run', scenario], env)).to.equal(2);
    expect(out.stderr).to.match(/^uvmctl: scenario\.containers\[0\]\.bundle: cannot read /);
  });

  it('exit 2 with the usage for a bad command line; help on stdout with exit 0', async () => {
    const { env, out } = environment();
    expect(await main(['frobnicate'], env)).to.equal(2);
    expect(out.stderr).to.match(/^uvmctl: unknown command "frobnicate"/);
    expect(await main(['help'], env)).to.equal(0);
    expect(out.stdout).to.match(/^Usage:/);
  });

  it('--json failures: one JSON error object on stdout with the code (and the field), the line on stderr', async () => {
    const { env, out } = environment({ failCreate: new UvmError('NO_SLOT', 'full', { details: { hostPath: '/x', cause: new Error('e') } }) });
    expect(await main(['run', scenario, '-q', '--json'], env)).to.equal(1);
    expect(JSON.parse(out.stdout)).to.deep.equal({ ok: false, error: { code: 'NO_SLOT', message: 'full', details: { hostPath: '/x', cause: { code: 'INTERNAL', message: 'e' } } } });
    expect(out.stderr).to.equal('uvmctl: NO_SLOT: full\n');
    await writeFile(scenario, JSON.stringify({ uvm: { id: 'pod', os: 'linux' }, containers: [] }));
    out.stdout = '';
    expect(await main(['plan', scenario, '--json'], env)).to.equal(2);
    expect(JSON.parse(out.stdout)).to.deep.include({ ok: false });
    expect((JSON.parse(out.stdout) as { error: { field: string } }).error).to.include({ code: 'INVALID_SPEC', field: 'scenario.containers' });
  });

  it('--trace to an unwritable path and --journal over an existing file: exit 2 naming the option, no backend made', async () => {
    const { env, out } = environment();
    expect(await main(['run', scenario, '--trace', path.join(dir, 'no', 'such', 'dir', 't.jsonl')], env)).to.equal(2);
    expect(out.stderr).to.match(/^uvmctl: --trace: cannot write .*\(ENOENT\)\n$/);
    out.stderr = '';
    expect(await main(['run', scenario, '-q', '--journal', scenario], env)).to.equal(2);
    expect(out.stderr).to.match(/^uvmctl: --journal: .* exists/);
    expect(out.traces).to.deep.equal([]);
    expect(out.created).to.equal(0);
  });

  it('bare uvmctl prints the whole usage (exit 2); --version prints the package version', async () => {
    const { env, out } = environment();
    expect(await main([], env)).to.equal(2);
    expect(out.stderr).to.include('uvmctl down <journal>').and.include('Exit codes:');
    expect(await main(['--version'], env)).to.equal(0);
    expect(out.stdout).to.match(/^uvmctl \d+\.\d+\.\d+/);
  });

  it('a signal during run aborts the allocation, releases and terminates, one line, exit 130; a second one exits at once', async () => {
    const { env, out } = environment();
    let fire: (name: string) => void = () => undefined;
    let removed = false;
    const released: string[] = [];
    let closed: boolean | undefined;
    let exited: number | undefined;
    const uvm: RunUvm = {
      id: 'pod',
      os: 'linux',
      describe: () => [],
      allocateContainer: (spec, id, signal) =>
        new Promise((resolve, reject) => {
          if (id === 'a') return resolve({ spec, containerEntries: [], release: async () => void released.push(id) });
          signal!.addEventListener('abort', () => reject(signal!.reason as Error));
          fire('SIGINT'); // mid-allocation of the second container
        }),
      keptShares: () => 0,
      hotAdded: async () => 0,
      close: async ({ terminate }) => void (closed = terminate),
    };
    await writeFile(scenario, JSON.stringify({ uvm: { id: 'pod', os: 'linux' }, containers: [{ id: 'a', bundle: 'b' }, { id: 'c', bundle: 'b' }] }));
    env.runBackend = async () => ({ kind: 'simulator', createUvm: async () => uvm });
    env.onSignal = (handler) => {
      fire = handler;
      return () => void (removed = true);
    };
    env.exit = ((code: number) => {
      exited = code;
    }) as never;
    expect(await main(['run', scenario, '-q', '--journal', path.join(dir, 'j.json')], env)).to.equal(130);
    expect(released).to.deep.equal(['a']);
    expect(closed).to.equal(true);
    expect(removed).to.equal(true);
    expect(out.stdout).to.equal('');
    expect(out.stderr).to.equal('uvmctl: SIGINT: interrupted; everything allocated was released and UVM pod terminated\n');
    // A second signal (while the teardown would still run) exits at once, naming what may be left.
    fire('SIGINT');
    fire('SIGTERM');
    expect(exited).to.equal(130);
    expect(out.stderr).to.match(/SIGTERM again: exiting now; UVM pod and what it holds may be left \(run `uvmctl down .*j\.json` to clean up\)\n$/);
  });

  it('LIBRARY_LOAD_FAILED says how to build the simulator or point UVM_HCS_LIBRARY elsewhere', () => {
    expect(errorLine(new UvmError('LIBRARY_LOAD_FAILED', 'cannot load x.so'))).to.match(/npm run build:native.*UVM_HCS_LIBRARY/);
  });

  it('formats errors on one line with their code and container', () => {
    expect(errorLine(new UvmError('NO_SLOT', 'full', { details: { containerId: 'web' } }))).to.equal('NO_SLOT: full (container web)');
    expect(errorLine(new Error('x\n  y'))).to.equal('INTERNAL: x y');
  });
});

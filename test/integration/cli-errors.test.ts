import { expect } from 'chai';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ensureFixtures } from '../../src/cli/fixtures.js';
import { readScenarioFile } from '../../src/cli/scenario.js';
import { expectBalanced, modifyDocs, readTrace, REPO, runCli } from './cli-support.js';

const LCOW_BUNDLES = path.join(REPO, 'examples', 'lcow-pod', 'bundles');
const LCOW_HOST = path.join(REPO, 'examples', 'lcow-pod', 'host');

/** The one line a failing uvmctl prints on stderr (progress lines aside). */
function errorLines(stderr: string): string[] {
  return stderr.split('\n').filter((l) => l.startsWith('uvmctl: '));
}

describe('uvmctl failures', function () {
  this.timeout(30000);
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'uvmctl-errors-'));
    // The LCOW example's host files, which these scenarios borrow.
    await ensureFixtures((await readScenarioFile(path.join(REPO, 'examples', 'lcow-pod', 'scenario.json'))).fixtures);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function scenarioFile(name: string, content: unknown): Promise<string> {
    const file = path.join(dir, name);
    await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
    return file;
  }

  it('a wrong-typed scenario field: exit 2, one line naming the field, no HCS call', async () => {
    const file = await scenarioFile('bad-bundle.json', {
      uvm: { id: 'bad', os: 'linux' },
      containers: [
        { id: 'a', bundle: 'x' },
        { id: 'b', bundle: 3 },
      ],
    });
    const traceFile = path.join(dir, 'bad-bundle.jsonl');
    const result = await runCli(['run', file, '--trace', traceFile], { HCSSIM_TRACE: traceFile });
    expect(result.code).to.equal(2);
    expect(result.stdout).to.equal('');
    expect(result.stderr.split('\n').filter((l) => l !== '')).to.have.length(1);
    expect(errorLines(result.stderr)[0]).to.match(/^uvmctl: scenario\.containers\[1\]\.bundle: /);
    expect(await readTrace(traceFile)).to.deep.equal([]);
  });

  it('a bad field in a bundle config.json: exit 2, naming the file and the field', async () => {
    const bundle = path.join(dir, 'bundle-bad');
    await mkdir(bundle, { recursive: true });
    await writeFile(path.join(bundle, 'config.json'), JSON.stringify({ windows: { layerFolders: ['l', 7] } }));
    const file = await scenarioFile('bad-config.json', { uvm: { id: 'bad', os: 'linux' }, containers: [{ id: 'a', bundle: 'bundle-bad' }] });
    const result = await runCli(['plan', file]);
    expect(result.code).to.equal(2);
    expect(errorLines(result.stderr)).to.deep.equal([`uvmctl: ${path.join(bundle, 'config.json')}: windows.layerFolders[1]: expected a string, got a number (7)`]);
  });

  it('UVM options createUtilityVm would reject: exit 2 naming the scenario field (checked when the scenario is read), nothing created', async () => {
    const file = await scenarioFile('bad-vpmem.json', {
      uvm: { id: 'bad-vpmem', os: 'linux', vpmem: { count: 2, maxSizeBytes: 1000 } },
      containers: [{ id: 'pause', bundle: path.join(LCOW_BUNDLES, 'pause') }],
    });
    const traceFile = path.join(dir, 'bad-vpmem.jsonl');
    const result = await runCli(['run', file, '--trace', traceFile]);
    expect(result.code).to.equal(2);
    expect(errorLines(result.stderr)).to.deep.equal(['uvmctl: scenario.uvm.vpmem.maxSizeBytes: expected an integer in 4096..9007199254740991']);
    expect((await readTrace(traceFile)).filter((t) => t.fn === 'HcsCreateComputeSystem')).to.deep.equal([]);
  });

  it('a container that cannot be allocated: exit 1 naming the code and container; the others are rolled back', async () => {
    const bundle = path.join(dir, 'bundle-missing-bind');
    await mkdir(bundle, { recursive: true });
    await writeFile(
      path.join(bundle, 'config.json'),
      JSON.stringify({
        windows: { layerFolders: [path.join(LCOW_HOST, 'layers', 'pause'), path.join(LCOW_HOST, 'scratch', 'pause')] },
        mounts: [{ destination: '/data', type: 'bind', source: 'does-not-exist' }],
      }),
    );
    const file = await scenarioFile('missing-bind.json', {
      uvm: { id: 'missing-bind', os: 'linux', vpmem: { count: 4, maxSizeBytes: 67108864 } },
      containers: [
        { id: 'web', bundle: path.join(LCOW_BUNDLES, 'web') },
        { id: 'broken', bundle: 'bundle-missing-bind' },
      ],
    });
    const traceFile = path.join(dir, 'missing-bind.jsonl');
    const result = await runCli(['run', file, '--trace', traceFile]);
    expect(result.code).to.equal(1);
    expect(result.stdout).to.equal('');
    expect(errorLines(result.stderr)).to.have.length(1);
    expect(errorLines(result.stderr)[0]).to.match(/^uvmctl: NOT_FOUND: .*\(container broken\)$/);
    expect(result.stderr).to.include('[uvmctl] rolling back 1 allocated container(s)');
    const trace = await readTrace(traceFile);
    expect(modifyDocs(trace).length).to.be.greaterThan(0);
    expectBalanced(modifyDocs(trace));
    expect(trace.at(-2)?.fn).to.equal('HcsTerminateComputeSystem');
  });
});

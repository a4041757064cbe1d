// The package round trip a shim author makes (issue 12): `npm pack` → install the tarball into an
// empty project, offline → type-check a file made of the README's examples (skipLibCheck: false)
// → run a pod through the simulator the install script built → `npx uvmctl run` → a consumer
// unit test with FakeHcs.
//
// One pack and one install serve every case. The simulator is compiled by the consumer's install
// script from the shipped sources, reusing this checkout's object cache for objects whose compiler,
// flags, source and headers are the same in every byte (scripts/build-native.mjs).
//
// Offline: the consumer's dependencies come from the npm cache that `npm ci` filled. `npm ci`
// fetches tarballs only (no registry metadata), so the consumer gets a lockfile made from ours
// (the production closure, same resolved URLs and integrities) and installs with `npm ci --offline`.
import { execFile, type ExecFileOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { REPO } from './cli-support.js';
import { sparseFile } from '../support/sparse-file.js';

const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const TSC = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], options: ExecFileOptions & { cwd: string }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      { maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', ...options, env: { ...cleanEnv(), ...options.env } },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** The environment without npm's per-script variables (npm test sets them; they would leak the repo's config). */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.toLowerCase().startsWith('npm_')) env[k] = v;
  }
  env.UVM_LOG_LEVEL = 'silent';
  delete env.UVM_HCS_LIBRARY;
  delete env.HCSSIM_STATE_FILE;
  return env;
}

function ok(r: Run, what: string): Run {
  if (r.code !== 0) expect.fail(`${what} exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r;
}

interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  dev?: boolean;
  link?: boolean;
  [key: string]: unknown;
}

/** The consumer's lockfile: the tarball plus our lockfile's production entries. */
function consumerLock(ours: { packages: Record<string, LockEntry> }, pkg: Record<string, unknown>, tarball: string, integrity: string) {
  const packages: Record<string, unknown> = {
    '': { name: 'consumer', version: '1.0.0', dependencies: { 'uvm-orchestrator': `file:${tarball}` } },
    'node_modules/uvm-orchestrator': {
      version: pkg.version,
      resolved: `file:${tarball}`,
      integrity,
      hasInstallScript: true,
      license: pkg.license,
      dependencies: pkg.dependencies,
      bin: pkg.bin,
      engines: pkg.engines,
    },
  };
  for (const [key, entry] of Object.entries(ours.packages)) {
    if (key === '' || entry.dev === true || entry.link === true || !key.startsWith('node_modules/')) continue;
    packages[key] = entry;
  }
  return { name: 'consumer', version: '1.0.0', lockfileVersion: 3, requires: true, packages };
}

/** The README's TypeScript examples under "Using the library", as one module (imports first). */
async function readmeExamples(): Promise<string> {
  const readme = await readFile(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Using the library'));
  const blocks = [...section.slice(0, section.indexOf('\n## ', 3)).matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
  expect(blocks.length, 'TypeScript examples in README "Using the library"').to.be.greaterThan(0);
  const lines = blocks.join('\n').split('\n');
  const imports = lines.filter((l) => l.startsWith('import '));
  const body = lines.filter((l) => !l.startsWith('import '));
  return [
    ...imports,
    "import type { OciSpec } from 'uvm-orchestrator';",
    'declare const ociSpec: OciSpec;',
    'export async function readmeExamples(): Promise<void> {',
    ...body.map((l) => `  ${l}`),
    '}',
    '',
  ].join('\n');
}

const POD = `import { createUvmOrchestrator } from 'uvm-orchestrator';
import { readSimulatorState } from 'uvm-orchestrator/testing';

const [layer, scratch, data] = process.argv.slice(2) as [string, string, string];
const orchestrator = createUvmOrchestrator();
const uvm = await orchestrator.createUtilityVm({ id: 'consumer-pod', os: 'linux', vpmem: { count: 4 } });
await uvm.start();
try {
  const { spec, resources } = await uvm.allocateContainer(
    { root: { path: '' }, windows: { layerFolders: [layer, scratch] }, mounts: [{ destination: '/data', type: 'bind', source: data, options: ['ro'] }] },
    { containerId: 'app' },
  );
  const held = uvm.describe().length;
  await resources.release();
  const system = await orchestrator.hcs.openComputeSystem(uvm.id);
  const state = await readSimulatorState(system);
  system.close();
  console.log(JSON.stringify({ rootfs: spec.root?.path, data: spec.mounts?.[0]?.source, held, left: uvm.describe().length, hotAdded: state.HotAdded }));
} finally {
  await uvm.terminate();
  uvm.close();
}
`;

const UNIT = `import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createUvmOrchestrator, UvmError } from 'uvm-orchestrator';
import { FakeHcs, FakeHostFs } from 'uvm-orchestrator/testing';

test('a shim unit test over FakeHcs', async () => {
  const hostFs = new FakeHostFs().file('/layers/l1/layer.vhd', 1 << 20).file('/scratch/sandbox.vhdx', 1 << 30);
  const orchestrator = createUvmOrchestrator({ hcs: new FakeHcs(), hostFs });
  const uvm = await orchestrator.createUtilityVm({ id: 'unit', os: 'linux' });
  await uvm.start();
  const { spec, resources } = await uvm.allocateContainer({ windows: { layerFolders: ['/layers/l1', '/scratch'] } }, { containerId: 'c1' });
  assert.equal(spec.root?.path, '/run/gcs/c/c1/rootfs');
  await resources.release();
  assert.deepEqual(uvm.describe(), []);
  await assert.rejects(uvm.allocateContainer({ windows: { layerFolders: ['relative', '/scratch'] } }, { containerId: 'c2' }), (err: unknown) =>
    UvmError.is(err, 'INVALID_ARGUMENT'),
  );
  await uvm.terminate();
  uvm.close();
});
`;

describe('package: npm pack → install offline into an empty project → import, types, pod, CLI, FakeHcs', function () {
  this.timeout(900_000); // a safety net: packing, installing and compiling the simulator on a loaded machine

  let dir: string;
  let files: string[];
  let consumer: string;
  let installOutput: string;
  // One pack and one install, shared by the cases below (each checks one promise of the package).
  before(async function () {
    dir = await mkdtemp(path.join(tmpdir(), 'uvm-pack-'));
    // Pack (build/ is fresh: npm test compiles before mocha; `prepare` builds it for a real pack).
    const packed = ok(await run(NPM, ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: REPO }), 'npm pack');
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    files = info!.files.map((f) => f.path);

    // Install into an empty project, offline, running the package's install script (it builds the
    // simulator from the shipped sources; objects identical in every byte of compiler, flags,
    // source and headers come from this checkout's object cache, scripts/build-native.mjs).
    consumer = path.join(dir, 'consumer');
    await mkdir(path.join(consumer, 'src'), { recursive: true });
    const tarball = `../${info!.filename}`;
    const integrity = `sha512-${createHash('sha512')
      .update(await readFile(path.join(dir, info!.filename)))
      .digest('base64')}`;
    const pkg = JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')) as Record<string, unknown>;
    const ours = JSON.parse(await readFile(path.join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
    await writeFile(
      path.join(consumer, 'package.json'),
      JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module', dependencies: { 'uvm-orchestrator': `file:${tarball}` } }, null, 2),
    );
    await writeFile(path.join(consumer, 'package-lock.json'), JSON.stringify(consumerLock(ours, pkg, tarball, integrity), null, 2));
    const install = ok(
      await run(NPM, ['ci', '--offline', '--no-audit', '--no-fund', '--foreground-scripts'], {
        cwd: consumer,
        env: { UVM_NATIVE_CACHE: path.join(REPO, 'build', 'native', 'cache') },
      }),
      'npm ci --offline (consumer)',
    );
    installOutput = install.stdout + install.stderr;
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('the tarball holds the build output, types, CLI, install script, native sources and docs — no tests', () => {
    for (const required of [
      'build/src/index.js',
      'build/src/index.d.ts',
      'build/src/testing.js',
      'build/src/testing.d.ts',
      'build/src/cli/main.js',
      'bin/uvmctl.js',
      'scripts/install.mjs',
      'scripts/build-native.mjs',
      'native/include/computecore.h',
      'README.md',
      'CHANGELOG.md',
      'docs/errors.md',
    ]) {
      expect(files, required).to.include(required);
    }
    expect(files.some((f) => f.startsWith('native/src/') && f.endsWith('.cpp')), 'native sources').to.equal(true);
    const stray = files.filter((f) => /^(test|build\/test|build\/bench|build\/native|bench|src)\//.test(f) || f.endsWith('.map') || f.includes('/host/'));
    expect(stray, 'tests, corpus, sources maps, build artefacts').to.deep.equal([]);
  });

  it('the install script built the simulator', () => {
    const installed = path.join(consumer, 'node_modules', 'uvm-orchestrator');
    expect(existsSync(path.join(installed, 'build', 'native', 'libhcssim.so')), `the install script built the simulator\n${installOutput}`).to.equal(true);
    expect(existsSync(path.join(installed, 'build', 'native', 'obj')), 'objects of the shipped sources').to.equal(true);
  });

  it("the README's examples, a pod script and a unit test type-check against the installed types (skipLibCheck: false)", async () => {
    await writeFile(path.join(consumer, 'src', 'readme-examples.ts'), await readmeExamples());
    await writeFile(path.join(consumer, 'src', 'pod.ts'), POD);
    await writeFile(path.join(consumer, 'src', 'unit.test.ts'), UNIT);
    await writeFile(
      path.join(consumer, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          lib: ['ES2023', 'ESNext.Disposable'],
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          skipLibCheck: false,
          outDir: 'out',
          rootDir: 'src',
          types: ['node'],
          typeRoots: [path.join(REPO, 'node_modules', '@types')],
        },
        include: ['src/**/*.ts'],
      }),
    );
    ok(await run(process.execPath, [TSC, '-p', 'tsconfig.json'], { cwd: consumer }), 'tsc (consumer, skipLibCheck: false)');
  });

  it('a pod runs through the simulator from the installed package', async function () {
    if (!existsSync(path.join(consumer, 'out', 'pod.js'))) this.skip(); // the type-check case failed
    const host = path.join(dir, 'host');
    await mkdir(path.join(host, 'data'), { recursive: true });
    sparseFile(path.join(host, 'layer', 'layer.vhd'), 4 << 20);
    sparseFile(path.join(host, 'scratch', 'sandbox.vhdx'), 1 << 30);
    const pod = ok(
      await run(process.execPath, ['out/pod.js', path.join(host, 'layer'), path.join(host, 'scratch'), path.join(host, 'data')], { cwd: consumer }),
      'consumer pod',
    );
    const result = JSON.parse(pod.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
    expect(result).to.include({ rootfs: '/run/gcs/c/app/rootfs', left: 0, hotAdded: 0 });
    expect(result.held).to.be.greaterThan(0);
    expect(result.data).to.match(/^\/run\/mounts\/plan9\//);
  });

  it('npx uvmctl run works through the consumer\'s bin link', async () => {
    await writeFile(
      path.join(consumer, 'scenario.json'),
      JSON.stringify({
        uvm: { id: 'consumer-cli', os: 'linux' },
        containers: [{ id: 'web', bundle: 'bundle' }],
        fixtures: [
          { type: 'sparse-file', path: 'host/layer/layer.vhd', sizeBytes: 4 << 20 },
          { type: 'sparse-file', path: 'host/scratch/sandbox.vhdx', sizeBytes: 1 << 30 },
        ],
      }),
    );
    await mkdir(path.join(consumer, 'bundle'));
    await writeFile(
      path.join(consumer, 'bundle', 'config.json'),
      JSON.stringify({ ociVersion: '1.1.0', windows: { layerFolders: ['../host/layer', '../host/scratch'] } }),
    );
    const cli = ok(
      await run(NPM, ['exec', '--offline', '--', 'uvmctl', 'run', 'scenario.json', '--json', '--quiet', '--check-simulator'], { cwd: consumer }),
      'npx uvmctl run',
    );
    const report = JSON.parse(cli.stdout) as { ok: boolean; teardown: { hotAdded: number | null } };
    expect(report.ok).to.equal(true);
    expect(report.teardown.hotAdded).to.equal(0);
  });

  it('a consumer unit test with FakeHcs passes (node:test)', async function () {
    if (!existsSync(path.join(consumer, 'out', 'unit.test.js'))) this.skip(); // the type-check case failed
    ok(await run(process.execPath, ['--test', 'out/unit.test.js'], { cwd: consumer }), 'consumer unit test');
  });

  it('install script without a C++ compiler: one line, exit 0, nothing built', async () => {
    const r = await run(process.execPath, [path.join(REPO, 'scripts', 'install.mjs')], {
      cwd: REPO,
      env: { CXX: path.join(dir, 'no-such-compiler') },
    });
    expect(r.code).to.equal(0);
    expect(r.stdout).to.equal('');
    expect(r.stderr.trim().split('\n')).to.have.length(1);
    expect(r.stderr).to.match(/^uvm-orchestrator: no C\+\+ compiler found \(tried CXX=.*\): the HCS simulator is not built; /);
  });
});

import { runCli } from './cli-support.js';
import { sparseFile } from '../support/sparse-file.js';
// The bad-input corpus (issue 6): every case in test/corpus/*.json runs through the public API on
// the simulator (or through the `uvmctl` CLI for scenario files) and must end with its documented
// error code — or succeed, for the inputs that must work — with nothing left attached. Bad input
// (INVALID_ARGUMENT / INVALID_SPEC) must also be rejected before any HCS call. The case format is
// described in test/corpus/README.md.
import { expect } from 'chai';

import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { allocateContainer } from '../../src/containers/allocate-container.js';
import { FakeHostFs } from '../../src/core/fake-host-fs.js';
import { UvmError } from '../../src/core/errors.js';
import { configureSimulator } from '../../src/hcs/simulator-controls.js';
import type { OciSpec, RootfsMount } from '../../src/oci/oci-spec.js';
import type { UtilityVmOptions } from '../../src/uvm/uvm-options.js';
import {
  InstrumentedHcs,
  REPO,
  expectEmpty,
  orchestratorOver,
  readTrace,
  simulatorStateOf,
  systemExists,
  tempDir,
} from './fault-support.js';

const CORPUS = path.join(REPO, 'test', 'corpus');
const MiB = 1024 * 1024;

type Fixture = { file: string; sizeBytes?: number } | { dir: string };

interface CorpusCase {
  name: string;
  kind: 'oci-spec' | 'layers' | 'container-id' | 'host-path' | 'capacity' | 'uvm-options' | 'scenario';
  os: 'linux' | 'windows';
  description: string;
  input: {
    spec?: unknown;
    /** Do not add the default layer folders. */
    bare?: boolean;
    rootfs?: RootfsMount[];
    containerId?: unknown;
    options?: Record<string, unknown>;
    layerCount?: number;
    layerSizeBytes?: number;
    scenario?: unknown;
    scenarioText?: string;
    files?: Record<string, string>;
  };
  expect: {
    code?: string;
    /** The error's `details.field`; the rejection must then come before any HCS call. */
    field?: string;
    ok?: boolean;
    exit?: number;
    /** Strings that must occur verbatim among the SimulatorState's string values while allocated. */
    strings?: string[];
    /** [target, reason] per layer, top-most first. */
    layers?: [string, string | null][];
    vpmemAdds?: number;
    scsiAdds?: number;
  };
  uvm?: Partial<UtilityVmOptions>;
  fixtures?: Fixture[];
  hostFs?: 'fake';
}

const BAD_INPUT = new Set(['INVALID_ARGUMENT', 'INVALID_SPEC']);

function loadCorpus(): CorpusCase[] {
  return readdirSync(CORPUS)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(path.join(CORPUS, f), 'utf8')) as CorpusCase);
}

/** Replaces `${ROOT}` and `${SCRATCH}` in every string of `value`. */
function substitute<T>(value: T, vars: Record<string, string>): T {
  if (typeof value === 'string') return value.replace(/\$\{(ROOT|SCRATCH)\}/g, (_, k: string) => vars[k]!) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => substitute(v, vars)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substitute(v, vars)])) as T;
  }
  return value;
}


/** Every string value (not key) in a JSON value. */
function stringsOf(value: unknown, out: Set<string> = new Set()): Set<string> {
  if (typeof value === 'string') out.add(value);
  else if (Array.isArray(value)) value.forEach((v) => stringsOf(v, out));
  else if (value !== null && typeof value === 'object') Object.values(value).forEach((v) => stringsOf(v, out));
  return out;
}


const cases = loadCorpus();

describe('integration: bad-input corpus (test/corpus)', function () {
  this.timeout(60_000);
  const hcs = new InstrumentedHcs();
  const orchestrator = orchestratorOver(hcs);
  let root: string;
  let counter = 0;
  const cliResults = new Map<string, Promise<{ code: number | null; stdout: string; stderr: string; trace: string }>>();

  before(() => {
    // Whatever an earlier suite left configured: no faults, no latency, no limit.
    configureSimulator({ clearFaults: true, latencyMs: 0, jitterMs: 0, latency: {}, concurrency: 0, trace: null });
    root = tempDir('uvm-corpus-');
    sparseFile(path.join(root, 'layers', 'base', 'layer.vhd'), 8 * MiB);
    sparseFile(path.join(root, 'layers', 'huge', 'layer.vhd'), 128 * MiB);
    mkdirSync(path.join(root, 'layers', 'novhd'), { recursive: true });
    mkdirSync(path.join(root, 'wlayers', 'base'), { recursive: true });
    mkdirSync(path.join(root, 'noscratch'), { recursive: true });
    mkdirSync(path.join(root, 'data'), { recursive: true });
    sparseFile(path.join(root, 'disks', 'd.vhdx'), 256 * MiB);
    // The CLI cases spawn processes; start them all at once (they never reach HCS) and await each in its test.
    const limit = 3;
    let running = 0;
    const queue: (() => void)[] = [];
    const slot = async (): Promise<() => void> => {
      if (running >= limit) await new Promise<void>((r) => queue.push(r));
      running++;
      return () => {
        running--;
        queue.shift()?.();
      };
    };
    for (const c of cases.filter((k) => k.kind === 'scenario')) {
      const dir = path.join(root, 'cli', c.name);
      mkdirSync(dir, { recursive: true });
      for (const [rel, content] of Object.entries(c.input.files ?? {})) {
        mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
        writeFileSync(path.join(dir, rel), content);
      }
      const file = path.join(dir, 'scenario.json');
      writeFileSync(file, c.input.scenarioText ?? JSON.stringify(c.input.scenario, null, 2));
      const trace = path.join(dir, 'hcs.trace');
      cliResults.set(
        c.name,
        (async () => {
          const done = await slot();
          try {
            return { ...(await runCli(['run', file, '--quiet', '--trace', trace])), trace };
          } finally {
            done();
          }
        })(),
      );
    }
    // Keep unhandled-rejection noise away if a test is skipped.
    for (const p of cliResults.values()) p.catch(() => undefined);
  });

  after(() => {
    configureSimulator({ clearFaults: true, trace: null });
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it(`has at least 60 cases, each with a kind, an OS and an expectation (${cases.length} cases)`, () => {
    expect(cases.length).to.be.at.least(60);
    for (const c of cases) {
      expect(c.name, c.name).to.match(/^[a-z0-9-]+$/);
      expect(['oci-spec', 'layers', 'container-id', 'host-path', 'capacity', 'uvm-options', 'scenario'], c.name).to.include(c.kind);
      expect(['linux', 'windows'], c.name).to.include(c.os);
      const e = c.expect;
      expect([e.code !== undefined, e.ok === true, e.exit !== undefined].filter(Boolean), `${c.name}: exactly one of code/ok/exit`).to.have.length(1);
    }
  });

  for (const c of cases) {
    it(`${c.kind} ${c.name}: ${c.description} → ${c.expect.code ?? (c.expect.ok ? 'works' : `exit ${c.expect.exit}`)}`, async () => {
      const scratch = path.join(root, 'scratch', c.name);
      const vars = { ROOT: root, SCRATCH: scratch };
      if (c.kind === 'scenario') return runScenarioCase(c);
      if (c.kind === 'uvm-options') return runUvmOptionsCase(c);

      sparseFile(path.join(scratch, 'sandbox.vhdx'), 1024 * MiB);
      const fixtures = substitute(c.fixtures ?? [], vars);
      let fake: FakeHostFs | undefined;
      if (c.hostFs === 'fake') {
        fake = new FakeHostFs();
        for (const f of fixtures) {
          if ('dir' in f) fake.dir(f.dir);
          else fake.file(f.file, f.sizeBytes ?? 4 * MiB);
        }
      } else {
        for (const f of fixtures) {
          if ('dir' in f) mkdirSync(f.dir, { recursive: true });
          else sparseFile(f.file, f.sizeBytes ?? 4 * MiB);
        }
      }
      const orch = fake ? orchestratorOver(hcs, fake) : orchestrator;
      const defaults: Omit<UtilityVmOptions, 'id'> =
        c.os === 'linux' ? { os: 'linux', scsiControllers: 1, vpmem: { count: 2, maxSizeBytes: 64 * MiB } } : { os: 'windows' };
      const uvm = await orch.createUtilityVm({ ...defaults, ...(c.uvm ?? {}), id: `corpus-${process.pid}-${++counter}` } as UtilityVmOptions);
      const trace = path.join(root, `${c.name}.trace`);
      try {
        await uvm.start();
        let spec: OciSpec;
        let rootfs: RootfsMount[] | undefined;
        if (c.kind === 'capacity' && c.input.layerCount !== undefined) {
          const folders: string[] = [];
          for (let i = 0; i < c.input.layerCount; i++) {
            const dir = path.join(root, 'many', `l${i}`);
            sparseFile(path.join(dir, 'layer.vhd'), c.input.layerSizeBytes ?? 4 * MiB);
            folders.push(dir);
          }
          spec = { windows: { layerFolders: [...folders, scratch] } };
        } else {
          spec = structuredClone(substitute(c.input.spec ?? {}, vars)) as OciSpec;
          rootfs = c.input.rootfs === undefined ? undefined : substitute(c.input.rootfs, vars);
          const s = spec as Record<string, unknown>;
          if (!c.input.bare && s !== null && typeof s === 'object' && !Array.isArray(s) && s.windows === undefined && s.root === undefined && !rootfs) {
            s.windows = { layerFolders: [path.join(root, c.os === 'linux' ? 'layers' : 'wlayers', 'base'), scratch] };
          }
        }
        const containerId = (c.input.containerId === undefined ? 'ctr' : c.input.containerId) as string;
        if (c.expect.vpmemAdds !== undefined) configureSimulator({ trace });
        const before = hcs.total(uvm.id);
        let result: Awaited<ReturnType<typeof allocateContainer>> | undefined;
        let error: unknown;
        try {
          result = await allocateContainer(uvm, spec, { containerId, ...(rootfs ? { rootfs } : {}) });
        } catch (err) {
          error = err;
        }
        configureSimulator({ trace: null });

        if (c.expect.ok) {
          expect(error, `${c.name} must work: ${String(error)}`).to.equal(undefined);
          const state = await simulatorStateOf(uvm.id);
          const strings = stringsOf(state);
          for (const want of c.expect.strings ?? []) {
            const s = substitute(want, vars);
            expect(strings.has(s), `the exact path ${JSON.stringify(s)} reached the simulator (SimulatorState)`).to.equal(true);
          }
          if (c.expect.layers) {
            const got = result!.resources.layers?.layers.map((l) => [l.target, l.reason ?? null]);
            expect(got).to.deep.equal(c.expect.layers);
          }
          await result!.resources.release();
        } else {
          expect(UvmError.is(error), `${c.name}: expected a UvmError ${c.expect.code}, got ${String(error)}`).to.equal(true);
          expect((error as UvmError).code, String(error)).to.equal(c.expect.code);
          if (c.expect.field !== undefined) expect((error as UvmError).details.field, String(error)).to.equal(c.expect.field);
          if (BAD_INPUT.has(c.expect.code!) || c.expect.field !== undefined) {
            expect(hcs.total(uvm.id) - before, `${c.name}: bad input must be rejected before any HCS call`).to.equal(0);
          }
          if (c.expect.vpmemAdds !== undefined || c.expect.scsiAdds !== undefined) {
            const docs = readTrace(trace)
              .filter((l) => l.id === uvm.id && l.fn === 'HcsModifyComputeSystem' && l.hr === 0)
              .map((l) => l.doc as { ResourcePath?: string; RequestType?: string });
            const count = (re: RegExp, type: string): number => docs.filter((d) => d.RequestType === type && re.test(d.ResourcePath ?? '')).length;
            const vpmem = /^VirtualMachine\/Devices\/VirtualPMem\/Devices\/\d+$/;
            const scsi = /^VirtualMachine\/Devices\/Scsi\/[^/]+\/Attachments\/\d+$/;
            expect(count(vpmem, 'Add'), 'VPMEM devices added before falling back').to.equal(c.expect.vpmemAdds);
            expect(count(scsi, 'Add'), 'SCSI attachments added until SCSI was full').to.equal(c.expect.scsiAdds);
            expect(count(vpmem, 'Remove'), 'every VPMEM device removed again').to.equal(c.expect.vpmemAdds);
            expect(count(scsi, 'Remove'), 'every SCSI attachment removed again').to.equal(c.expect.scsiAdds);
          }
        }
        await expectEmpty(uvm, c.name);
      } finally {
        configureSimulator({ trace: null });
        rmSync(trace, { force: true });
        await uvm.terminate().catch(() => undefined);
        uvm.close();
      }
    });
  }

  async function runUvmOptionsCase(c: CorpusCase): Promise<void> {
    const options = c.input.options as unknown as UtilityVmOptions;
    const id = typeof options.id === 'string' ? options.id : '';
    const before = hcs.counts(id).lifecycle;
    let error: unknown;
    try {
      const vm = await orchestrator.createUtilityVm(options);
      await vm.terminate().catch(() => undefined);
      vm.close();
    } catch (err) {
      error = err;
    }
    expect(UvmError.is(error), `expected ${c.expect.code}, got ${String(error)}`).to.equal(true);
    expect((error as UvmError).code, String(error)).to.equal(c.expect.code);
    expect(hcs.counts(id).lifecycle - before, 'no compute system was created').to.equal(0);
    if (id !== '' && !id.includes('\0')) expect(await systemExists(id)).to.equal(false);
  }

  async function runScenarioCase(c: CorpusCase): Promise<void> {
    const r = await cliResults.get(c.name)!;
    expect(r.code, `uvmctl exit code (stderr: ${r.stderr})`).to.equal(c.expect.exit);
    const lines = r.stderr.split('\n').filter((l) => l !== '');
    expect(lines.length, `exactly one error line: ${r.stderr}`).to.equal(1);
    expect(lines[0]).to.match(/^uvmctl: /);
    // Rejected while reading the scenario: the simulator saw no call at all.
    expect(readTrace(r.trace), 'HCS calls made by a rejected scenario').to.deep.equal([]);
  }
});

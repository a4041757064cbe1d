import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseScenario, readScenarioFile } from '../../../src/cli/scenario.js';
import { ScenarioError } from '../../../src/cli/scenario-error.js';

const FILE = path.resolve('/scenarios/pod/scenario.json');

function valid(): Record<string, any> {
  return {
    uvm: { id: 'pod', os: 'linux', scsiControllers: 2, vpmem: { count: 4, maxSizeBytes: 67108864, multiMapping: false } },
    containers: [
      { id: 'pause', bundle: 'bundles/pause' },
      { id: 'web', bundle: '/abs/bundles/web' },
    ],
  };
}

/** The ScenarioError `fn` throws. */
function scenarioError(fn: () => unknown): ScenarioError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ScenarioError);
    return err as ScenarioError;
  }
  expect.fail('expected a ScenarioError');
}

describe('cli/scenario', () => {
  it('accepts a valid scenario, resolves bundles against its folder and defaults teardown to true', () => {
    const s = parseScenario(valid(), FILE);
    expect(s.file).to.equal(FILE);
    expect(s.dir).to.equal(path.dirname(FILE));
    expect(s.uvm).to.deep.equal(valid().uvm);
    expect(s.containers).to.deep.equal([
      { id: 'pause', bundle: path.resolve('/scenarios/pod/bundles/pause') },
      { id: 'web', bundle: '/abs/bundles/web' },
    ]);
    expect(s.teardown).to.equal(true);
    expect(s.fixtures).to.deep.equal([]);
  });

  it('keeps teardown false and the optional uvm fields', () => {
    const raw = valid();
    raw.teardown = false;
    raw.uvm = { ...raw.uvm, fullyPhysicallyBacked: true, noWritableFileShares: false, vsmbNoDirectMap: true, reservedScsiSlots: [{ controller: 0, lun: 1 }] };
    const s = parseScenario(raw, FILE);
    expect(s.teardown).to.equal(false);
    expect(s.uvm.fullyPhysicallyBacked).to.equal(true);
    expect(s.uvm.noWritableFileShares).to.equal(false);
    expect(s.uvm.vsmbNoDirectMap).to.equal(true);
    expect(s.uvm.reservedScsiSlots).to.deep.equal([{ controller: 0, lun: 1 }]);
  });

  it('resolves relative boot paths against the scenario folder before checking the uvm section', () => {
    const raw = valid();
    raw.uvm.boot = { bootFilesPath: 'boot', mode: 'uefi' };
    expect(parseScenario(raw, FILE).uvm.boot).to.deep.equal({ bootFilesPath: path.resolve('/scenarios/pod/boot'), mode: 'uefi' });
    expect(raw.uvm.boot.bootFilesPath, 'the input is not modified').to.equal('boot');
  });

  it('parses fixtures with paths resolved inside the scenario folder', () => {
    const raw = valid();
    raw.fixtures = [
      { type: 'sparse-file', path: 'host/l/layer.vhd', sizeBytes: 1024 },
      { type: 'file', path: 'host/a.conf', content: '' },
      { type: 'directory', path: 'host/data' },
    ];
    expect(parseScenario(raw, FILE).fixtures).to.deep.equal([
      { type: 'sparse-file', path: path.resolve('/scenarios/pod/host/l/layer.vhd'), sizeBytes: 1024 },
      { type: 'file', path: path.resolve('/scenarios/pod/host/a.conf'), content: '' },
      { type: 'directory', path: path.resolve('/scenarios/pod/host/data') },
    ]);
  });

  // [mutation of a valid scenario, the field the error must name, a word of the problem]
  const cases: [string, (raw: Record<string, any>) => unknown, string, RegExp][] = [
    ['a non-object document', () => [], 'scenario', /expected an object/],
    ['an unknown top-level field', (r) => ((r.teardwn = true), r), 'scenario.teardwn', /unknown field/],
    ['a missing uvm', (r) => (delete r.uvm, r), 'scenario.uvm', /missing field/],
    ['a missing uvm.id', (r) => (delete r.uvm.id, r), 'scenario.uvm.id', /missing/],
    ['a numeric uvm.id', (r) => ((r.uvm.id = 7), r), 'scenario.uvm.id', /expected a non-empty string/],
    ['an empty uvm.id', (r) => ((r.uvm.id = ''), r), 'scenario.uvm.id', /non-empty/],
    ['a bad os', (r) => ((r.uvm.os = 'freebsd'), r), 'scenario.uvm.os', /expected os "linux" or "windows"/],
    ['an unknown uvm field', (r) => ((r.uvm.memorySize = 1024), r), 'scenario.uvm.memorySize', /unknown member/],
    ['a string memoryMb', (r) => ((r.uvm.memoryMb = '1G'), r), 'scenario.uvm.memoryMb', /expected an integer in 64\.\.1048576/],
    ['a fractional scsiControllers', (r) => ((r.uvm.scsiControllers = 1.5), r), 'scenario.uvm.scsiControllers', /expected an integer in 1\.\.4/],
    ['a string vpmem.count', (r) => ((r.uvm.vpmem.count = '4'), r), 'scenario.uvm.vpmem.count', /expected an integer in 0\.\.128/],
    ['a negative vpmem.maxSizeBytes', (r) => ((r.uvm.vpmem.maxSizeBytes = -1), r), 'scenario.uvm.vpmem.maxSizeBytes', /expected an integer/],
    ['a string multiMapping', (r) => ((r.uvm.vpmem.multiMapping = 'yes'), r), 'scenario.uvm.vpmem.multiMapping', /expected a boolean/],
    ['an unknown vpmem field', (r) => ((r.uvm.vpmem.size = 1), r), 'scenario.uvm.vpmem.size', /unknown member/],
    ['a reserved slot without lun', (r) => ((r.uvm.reservedScsiSlots = [{ controller: 0 }]), r), 'scenario.uvm.reservedScsiSlots[0].lun', /missing/],
    ['a string fullyPhysicallyBacked', (r) => ((r.uvm.fullyPhysicallyBacked = 'true'), r), 'scenario.uvm.fullyPhysicallyBacked', /expected a boolean/],
    ['a range the UVM refuses', (r) => ((r.uvm.vpmem.count = 129), r), 'scenario.uvm.vpmem.count', /expected an integer in 0\.\.128/],
    ['a rule across members', (r) => ((r.uvm.reservedScsiSlots = [{ controller: 3, lun: 0 }]), r), 'scenario.uvm.reservedScsiSlots[0].controller', /2 SCSI controller/],
    ['a journal in the scenario', (r) => ((r.uvm.journal = { path: '/j' }), r), 'scenario.uvm.journal', /--journal/],
    ['a relative boot path that resolves, with a bad mode', (r) => ((r.uvm.boot = { bootFilesPath: 'boot', mode: 'pxe' }), r), 'scenario.uvm.boot.mode', /uefi/],
    ['containers not an array', (r) => ((r.containers = {}), r), 'scenario.containers', /expected an array/],
    ['no containers', (r) => ((r.containers = []), r), 'scenario.containers', /at least one/],
    ['a container that is not an object', (r) => ((r.containers[1] = 'web'), r), 'scenario.containers[1]', /expected an object/],
    ['a numeric bundle', (r) => ((r.containers[1].bundle = 3), r), 'scenario.containers[1].bundle', /expected a string/],
    ['a missing bundle', (r) => (delete r.containers[0].bundle, r), 'scenario.containers[0].bundle', /missing field/],
    ['an unknown container field', (r) => ((r.containers[1].image = 'x'), r), 'scenario.containers[1].image', /unknown field/],
    ['a duplicate container id', (r) => ((r.containers[1].id = 'pause'), r), 'scenario.containers[1].id', /duplicate/],
    ['a string teardown', (r) => ((r.teardown = 'no'), r), 'scenario.teardown', /expected a boolean/],
    ['a fixture of unknown type', (r) => ((r.fixtures = [{ type: 'fifo', path: 'x' }]), r), 'scenario.fixtures[0].type', /expected one of/],
    ['a fixture leaving the folder', (r) => ((r.fixtures = [{ type: 'directory', path: '../x' }]), r), 'scenario.fixtures[0].path', /inside the scenario/],
    ['an absolute fixture path', (r) => ((r.fixtures = [{ type: 'directory', path: '/tmp/x' }]), r), 'scenario.fixtures[0].path', /inside the scenario/],
    ['a sparse file without size', (r) => ((r.fixtures = [{ type: 'sparse-file', path: 'x' }]), r), 'scenario.fixtures[0].sizeBytes', /missing field/],
    ['a directory fixture with content', (r) => ((r.fixtures = [{ type: 'directory', path: 'x', content: '' }]), r), 'scenario.fixtures[0].content', /unknown field/],
  ];
  for (const [name, mutate, field, problem] of cases) {
    it(`rejects ${name}, naming ${field}`, () => {
      const err = scenarioError(() => parseScenario(mutate(valid()), FILE));
      expect(err.code).to.equal('INVALID_SPEC');
      expect(err.field).to.equal(field);
      expect(err.problem).to.match(problem);
      expect(err.message).to.not.include('\n');
    });
  }

  describe('readScenarioFile', () => {
    let dir: string;
    beforeEach(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'uvmctl-scenario-'));
    });
    afterEach(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('reads a file and anchors relative paths at its folder', async () => {
      const file = path.join(dir, 'scenario.json');
      await writeFile(file, JSON.stringify(valid()));
      const s = await readScenarioFile(path.relative(process.cwd(), file));
      expect(s.file).to.equal(file);
      expect(s.containers[0]!.bundle).to.equal(path.join(dir, 'bundles', 'pause'));
    });

    it('names the scenario for an unreadable file', async () => {
      let err: unknown;
      await readScenarioFile(path.join(dir, 'missing.json')).catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(ScenarioError);
      expect((err as ScenarioError).field).to.equal('scenario');
      expect((err as ScenarioError).problem).to.match(/cannot read .*ENOENT/);
    });

    it('names the scenario for bad JSON, on one line', async () => {
      const file = path.join(dir, 'bad.json');
      await writeFile(file, '{\n  "uvm": {,\n}');
      let err: unknown;
      await readScenarioFile(file).catch((e: unknown) => (err = e));
      expect(err).to.be.instanceOf(ScenarioError);
      expect((err as ScenarioError).field).to.equal('scenario');
      expect((err as ScenarioError).problem).to.match(/not valid JSON/);
    });
  });
});

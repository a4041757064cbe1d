import { expect } from 'chai';
import { parseCommandLine } from '../../../src/cli/command-line.js';
import { UsageError } from '../../../src/cli/usage-error.js';

function usageError(argv: string[]): UsageError {
  try {
    parseCommandLine(argv);
  } catch (err) {
    expect(err).to.be.instanceOf(UsageError);
    return err as UsageError;
  }
  expect.fail(`expected a UsageError for ${argv.join(' ')}`);
}

describe('cli/command-line', () => {
  it('parses run with every option', () => {
    expect(parseCommandLine(['run', 's.json', '--json', '--trace', 't.jsonl', '--keep', '-q', '--check-simulator'])).to.deep.equal({
      command: 'run',
      scenario: 's.json',
      json: true,
      trace: 't.jsonl',
      keep: true,
      quiet: true,
      journal: undefined,
      checkSimulator: true,
    });
  });

  it('parses run with defaults, options before the command too', () => {
    expect(parseCommandLine(['--trace=x', 'run', 's.json'])).to.deep.equal({
      command: 'run',
      scenario: 's.json',
      json: false,
      trace: 'x',
      keep: false,
      quiet: false,
      journal: undefined,
      checkSimulator: false,
    });
  });

  it('parses plan', () => {
    expect(parseCommandLine(['plan', 's.json', '--json'])).to.include({ command: 'plan', scenario: 's.json', json: true });
  });

  it('parses help in its three forms', () => {
    for (const argv of [['help'], ['--help'], ['run', 'x', '-h']]) expect(parseCommandLine(argv)).to.deep.equal({ command: 'help' });
  });

  it('parses run --journal, down, and --version in its forms', () => {
    expect(parseCommandLine(['run', 's.json', '--journal', 'j.json'])).to.include({ command: 'run', journal: 'j.json' });
    expect(parseCommandLine(['down', 'j.json', '--json', '-q'])).to.deep.equal({ command: 'down', journal: 'j.json', json: true, quiet: true });
    for (const argv of [['--version'], ['-V'], ['version'], ['run', 'x', '--version']]) expect(parseCommandLine(argv)).to.deep.equal({ command: 'version' });
  });

  const bad: [string[], RegExp][] = [
    [[], /missing command/],
    [['down'], /down: missing the journal/],
    [['down', 'j.json', '--keep'], /--keep does not apply/],
    [['plan', 's.json', '--journal', 'j'], /--journal only applies to run/],
    [['plan', 's.json', '--check-simulator'], /--check-simulator only applies to run/],
    [['down', 'j.json', '--check-simulator'], /--check-simulator does not apply/],
    [['run', 's.json', '--journal='], /--journal/],
    [['start', 's.json'], /unknown command "start"/],
    [['run'], /missing the scenario/],
    [['run', 'a.json', 'b.json'], /unexpected argument "b.json"/],
    [['run', 's.json', '--jsn'], /--jsn/],
    [['run', 's.json', '--trace'], /--trace/],
    [['run', 's.json', '--trace='], /--trace/],
    [['plan', 's.json', '--keep'], /--keep/],
  ];
  for (const [argv, message] of bad) {
    it(`rejects "${argv.join(' ')}"`, () => {
      const err = usageError(argv);
      expect(err.code).to.equal('INVALID_ARGUMENT');
      expect(err.message).to.match(message);
    });
  }
});

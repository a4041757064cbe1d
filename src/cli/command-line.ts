import { parseArgs } from 'node:util';
import { UsageError } from './usage-error.js';

/** What the command line asks for. */
export type CommandLine =
  | { command: 'help' }
  | {
      command: 'run' | 'plan';
      /** The scenario file, as given. */
      scenario: string;
      /** Print the report as one JSON document instead of text. */
      json: boolean;
      /** Make the simulator append its call trace to this file. */
      trace: string | undefined;
      /** Leave everything allocated (overrides the scenario's `"teardown": true`). `run` only. */
      keep: boolean;
      /** No progress lines on stderr. */
      quiet: boolean;
    };

export const USAGE = `Usage:
  uvmctl run <scenario.json> [--json] [--trace <file>] [--keep] [--quiet]
      Create and start a Utility VM (the HCS simulator, or real HCS on Windows), allocate every
      container of the scenario, print what landed where, then tear it all down and check that
      nothing is left (exit 1 if anything is).
  uvmctl plan <scenario.json> [--json] [--trace <file>] [--quiet]
      The dry run: which layer goes to VPMEM, SCSI or VSMB and which mount becomes what, without
      any HCS call.
  uvmctl help

Options:
  --json          print the report as one JSON document on stdout
  --trace <file>  make the simulator append one JSON line per HCS call to <file>
  --keep          do not tear down (same as "teardown": false in the scenario)
  -q, --quiet     no progress lines on stderr
  -h, --help      this text

Exit codes: 0 success; 1 a failure (the line names its error code) or resources left behind;
2 a bad command line or scenario file (the line names the field).`;

/** Parses `argv` (without node and the script). Throws `UsageError` for anything it cannot run. */
export function parseCommandLine(argv: readonly string[]): CommandLine {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { command: 'help' };
  const [command, ...rest] = positionals;
  if (command === undefined) throw new UsageError('missing command (run, plan or help)');
  if (command === 'help') return { command: 'help' };
  if (command !== 'run' && command !== 'plan') throw new UsageError(`unknown command ${JSON.stringify(command)} (run, plan or help)`);
  if (rest.length === 0) throw new UsageError(`${command}: missing the scenario file`);
  if (rest.length > 1) throw new UsageError(`${command}: unexpected argument ${JSON.stringify(rest[1])}`);
  if (values.trace !== undefined && values.trace === '') throw new UsageError('--trace: expected a file name');
  if (command === 'plan' && values.keep) throw new UsageError('plan: --keep only applies to run');
  return {
    command,
    scenario: rest[0]!,
    json: values.json ?? false,
    trace: values.trace,
    keep: values.keep ?? false,
    quiet: values.quiet ?? false,
  };
}

function parse(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      json: { type: 'boolean' },
      trace: { type: 'string' },
      keep: { type: 'boolean' },
      quiet: { type: 'boolean', short: 'q' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

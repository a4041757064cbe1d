import { parseArgs } from 'node:util';
import { UsageError } from './usage-error.js';

/** What the command line asks for. */
export type CommandLine =
  | { command: 'help' }
  | { command: 'version' }
  | {
      command: 'down';
      /** The journal file a `run --journal` left. */
      journal: string;
      json: boolean;
      quiet: boolean;
    }
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
      /** `run` only: journal the UVM to this file (so that `uvmctl down <file>` can clean up after a crash). */
      journal: string | undefined;
      /**
       * `run` only: after the teardown, also read the simulator's `SimulatorState` and require that
       * it holds nothing (a test control of the simulator: refused against real HCS).
       */
      checkSimulator: boolean;
    };

export const USAGE = `Usage:
  uvmctl run <scenario.json> [--json] [--trace <file>] [--keep] [--journal <file>] [--check-simulator] [--quiet]
      Create and start a Utility VM (the HCS simulator, or real HCS on Windows), allocate every
      container of the scenario, print what landed where, then tear it all down and check that
      nothing is left (exit 1 if anything is). Ctrl-C (SIGINT) or SIGTERM aborts what is in
      flight, releases what was allocated and terminates the UVM (exit 130); a second signal
      exits at once.
  uvmctl down <journal> [--json] [--quiet]
      Re-open the UVM a \`run --journal\` left behind (killed, or --keep), release everything it
      holds and terminate it.
  uvmctl plan <scenario.json> [--json] [--trace <file>] [--quiet]
      The dry run: which layer goes to VPMEM, SCSI or VSMB and which mount becomes what, without
      any HCS call.
  uvmctl help | uvmctl --version

Options:
  --json          print the report as one JSON document on stdout
  --trace <file>  make the simulator append one JSON line per HCS call to <file>
  --keep          do not tear down (same as "teardown": false in the scenario)
  --journal <file>  journal the UVM and every lease to <file> (for \`uvmctl down\`)
  --check-simulator  after the teardown, also check the simulator's own state holds nothing
                  (HotAdded; needs the HCS simulator)
  -q, --quiet     no progress lines on stderr
  -h, --help      this text
  -V, --version   the version

Exit codes: 0 success; 1 a failure (the line names its error code) or resources left behind;
2 a bad command line or scenario file (the line names the field); 130 interrupted by a signal.
With --json a failure is also one JSON object on stdout: {"ok": false, "error": {"code", "message", …}}.`;

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
  if (values.version) return { command: 'version' };
  const [command, ...rest] = positionals;
  if (command === undefined) throw new UsageError('missing command (run, plan, down or help)');
  if (command === 'help') return { command: 'help' };
  if (command === 'version') return { command: 'version' };
  if (command !== 'run' && command !== 'plan' && command !== 'down') {
    throw new UsageError(`unknown command ${JSON.stringify(command)} (run, plan, down or help)`);
  }
  if (rest.length === 0) throw new UsageError(`${command}: missing the ${command === 'down' ? 'journal' : 'scenario'} file`);
  if (rest.length > 1) throw new UsageError(`${command}: unexpected argument ${JSON.stringify(rest[1])}`);
  for (const name of ['trace', 'journal'] as const) {
    if (values[name] !== undefined && values[name] === '') throw new UsageError(`--${name}: expected a file name`);
  }
  const json = values.json ?? false;
  const quiet = values.quiet ?? false;
  if (command === 'down') {
    for (const name of ['keep', 'trace', 'journal', 'check-simulator'] as const) {
      if (values[name] !== undefined) throw new UsageError(`down: --${name} does not apply`);
    }
    return { command, journal: rest[0]!, json, quiet };
  }
  if (command === 'plan' && values.keep) throw new UsageError('plan: --keep only applies to run');
  if (command === 'plan' && values.journal !== undefined) throw new UsageError('plan: --journal only applies to run');
  if (command === 'plan' && values['check-simulator']) throw new UsageError('plan: --check-simulator only applies to run');
  return {
    command,
    scenario: rest[0]!,
    json,
    trace: values.trace,
    keep: values.keep ?? false,
    quiet,
    journal: values.journal,
    checkSimulator: values['check-simulator'] ?? false,
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
      version: { type: 'boolean', short: 'V' },
      journal: { type: 'string' },
      'check-simulator': { type: 'boolean' },
    },
  });
}

// The `uvmctl` entry point (bin/uvmctl.js imports this module). reflect-metadata is loaded
// before any module with decorators.
import 'reflect-metadata';
import { constants as fsConstants, readFileSync } from 'node:fs';
import { access, appendFile } from 'node:fs/promises';
import path from 'node:path';
import { UvmError } from '../core/errors.js';
import type { OciSpec } from '../oci/oci-spec.js';
import { readBundleSpec } from './bundle.js';
import { parseCommandLine, USAGE, type CommandLine } from './command-line.js';
import { ensureFixtures } from './fixtures.js';
import { formatPlanReport } from './format-plan-report.js';
import { formatRunReport } from './format-run-report.js';
import type { PlanBackend } from './plan-backend.js';
import { planScenario } from './plan-command.js';
import { Progress, type ProgressSink } from './progress.js';
import type { DownBackend, DownReport, RunBackend } from './run-backend.js';
import type { ContainerPlan } from '../containers/allocate-container.js';
import { runScenario } from './run-command.js';
import { readScenarioFile, type Scenario } from './scenario.js';
import { ScenarioError } from './scenario-error.js';
import { UsageError } from './usage-error.js';

/** Exit codes. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Exit code after a signal (128 + SIGINT's number, as shells report it). */
export const EXIT_INTERRUPTED = 130;

/** Where the CLI writes, and how it reaches HCS (replaced in unit tests). */
export interface CliEnvironment {
  stdout: ProgressSink;
  stderr: ProgressSink;
  /**
   * The run backend; `trace` is an absolute file the simulator must append its trace to;
   * `checkSimulator` makes the teardown check read the simulator's state too (`--check-simulator`).
   */
  runBackend(options: { trace: string | undefined; checkSimulator?: boolean }): Promise<RunBackend>;
  /** The plan backend (no HCS call). `trace` as for run: set so that a stray HCS call would show. */
  planBackend(options: { trace: string | undefined }): Promise<PlanBackend>;
  /** The `down` backend (the library over HCS or the simulator). */
  downBackend?(): Promise<DownBackend>;
  /**
   * Calls `handler` with the signal's name on SIGINT/SIGTERM while a run is in progress; returns
   * the function that removes the handlers. Absent: no signal handling (unit tests).
   */
  onSignal?(handler: (signal: string) => void): () => void;
  /** Exits the process at once (a second signal). */
  exit?(code: number): never;
}

/** The environment of the real CLI: process streams, the library over HCS or its simulator. */
export function defaultEnvironment(): CliEnvironment {
  // A closed pipe (`uvmctl … | head -c0`) is not an error worth a stack trace: stop writing quietly.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
    });
  }
  const safe = (stream: NodeJS.WriteStream): ProgressSink => ({
    write: (chunk: string) => (stream.writable && !stream.destroyed ? stream.write(chunk) : false),
  });
  return {
    stdout: safe(process.stdout),
    stderr: safe(process.stderr),
    // Loaded on demand: parsing and validation never load the HCS library.
    runBackend: async (options) => (await import('./library-backend.js')).createLibraryRunBackend(options),
    planBackend: async (options) => (await import('./library-backend.js')).createLibraryPlanBackend(options),
    downBackend: async () => (await import('./library-backend.js')).createLibraryDownBackend(),
    onSignal(handler) {
      const onInt = (): void => handler('SIGINT');
      const onTerm = (): void => handler('SIGTERM');
      process.on('SIGINT', onInt);
      process.on('SIGTERM', onTerm);
      return () => {
        process.off('SIGINT', onInt);
        process.off('SIGTERM', onTerm);
      };
    },
    exit: (code) => process.exit(code),
  };
}

/** The package version (package.json two folders above build/src/cli). */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : 'unknown';
  } catch {
    return 'unknown';
  }
}

/**
 * Runs `uvmctl` with `argv` (without node and the script) and resolves with the exit code:
 * 0 success; 1 a failure (one line `uvmctl: <CODE>: <message>` on stderr, and with `--json` a
 * JSON error object on stdout) or resources left after the teardown; 2 a bad command line or
 * scenario file (one line naming the field); 130 interrupted by SIGINT/SIGTERM.
 */
export async function main(argv: readonly string[], env: CliEnvironment = defaultEnvironment()): Promise<number> {
  let cmd: CommandLine;
  try {
    cmd = parseCommandLine(argv);
  } catch (err) {
    const usage = argv.length === 0 ? USAGE : `${USAGE.split('\n').slice(0, 5).join('\n')}\nRun "uvmctl help" for more.`;
    env.stderr.write(`uvmctl: ${oneLine((err as Error).message)}\n${usage}\n`);
    return EXIT_USAGE;
  }
  if (cmd.command === 'help') {
    env.stdout.write(`${USAGE}\n`);
    return EXIT_OK;
  }
  if (cmd.command === 'version') {
    env.stdout.write(`uvmctl ${packageVersion()}\n`);
    return EXIT_OK;
  }
  const progress = new Progress(cmd.quiet ? undefined : env.stderr);
  const fail = (code: number, line: string, err: unknown): number => {
    env.stderr.write(`uvmctl: ${line}\n`);
    if (cmd.json) env.stdout.write(`${JSON.stringify({ ok: false, error: errorObject(err) }, null, 2)}\n`);
    return code;
  };
  if (cmd.command === 'down') {
    try {
      if (!env.downBackend) throw new UvmError('NOT_SUPPORTED', 'this environment has no down backend');
      const report = await (await env.downBackend()).down(path.resolve(cmd.journal), progress);
      env.stdout.write(cmd.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDownReport(report)}\n`);
      return EXIT_OK;
    } catch (err) {
      return fail(EXIT_FAILURE, errorLine(err), err);
    }
  }
  const interrupt = new Interrupt(env, cmd.command === 'run' ? cmd.journal : undefined);
  try {
    const scenario = await readScenarioFile(cmd.scenario);
    const created = await ensureFixtures(scenario.fixtures);
    if (created.length > 0) progress.line(`created ${created.length} missing fixture(s) of ${path.basename(scenario.file)}`);
    const specs = await readSpecs(scenario);
    const trace = cmd.trace === undefined ? undefined : await writableFile(cmd.trace, '--trace');
    if (cmd.command === 'plan') {
      const report = await planScenario(scenario, specs, await env.planBackend({ trace }), progress);
      env.stdout.write(cmd.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatPlanReport(report)}\n`);
      if (!report.fits) {
        const last = report.containers.at(-1);
        env.stderr.write(`uvmctl: NO_SLOT: container ${last?.containerId ?? '?'} does not fit in UVM ${report.uvm.id}: ${noFitReason(last, scenario)}\n`);
        return EXIT_FAILURE;
      }
      return EXIT_OK;
    }
    const journal = cmd.journal === undefined ? undefined : await writableFile(cmd.journal, '--journal', { mustNotExist: true });
    interrupt.arm(scenario.uvm.id);
    const { report, teardownError } = await runScenario(scenario, specs, await env.runBackend({ trace, checkSimulator: cmd.checkSimulator }), progress, {
      keep: cmd.keep,
      journal,
      signal: interrupt.signal,
    });
    if (interrupt.signalName !== undefined) return interrupt.report(undefined);
    env.stdout.write(cmd.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatRunReport(report)}\n`);
    if (teardownError) {
      env.stderr.write(`uvmctl: ${errorLine(teardownError)}\n`);
      return EXIT_FAILURE;
    }
    if (!report.ok) {
      const n = report.teardown.remaining.length;
      env.stderr.write(
        `uvmctl: RELEASE_FAILED: resources left after the teardown (${n} in describe(), simulator HotAdded ${report.teardown.hotAdded ?? 'n/a'})\n`,
      );
      return EXIT_FAILURE;
    }
    return EXIT_OK;
  } catch (err) {
    if (interrupt.signalName !== undefined) return interrupt.report(err);
    if (err instanceof ScenarioError || err instanceof UsageError) return fail(EXIT_USAGE, oneLine(err.message), err);
    return fail(EXIT_FAILURE, errorLine(err), err);
  } finally {
    interrupt.disarm();
  }
}

/**
 * Signal handling of `run`: the first SIGINT/SIGTERM aborts the run (what is in flight is aborted,
 * what was allocated released, the UVM terminated) and the run ends with one line and exit 130;
 * a second one exits at once, saying what may be left.
 */
class Interrupt {
  readonly #controller = new AbortController();
  readonly #env: CliEnvironment;
  readonly #journal: string | undefined;
  #uvmId = '?';
  #remove: (() => void) | undefined;
  signalName: string | undefined;

  constructor(env: CliEnvironment, journal: string | undefined) {
    this.#env = env;
    this.#journal = journal;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  arm(uvmId: string): void {
    this.#uvmId = uvmId;
    this.#remove = this.#env.onSignal?.((name) => this.#received(name));
  }

  disarm(): void {
    this.#remove?.();
    this.#remove = undefined;
  }

  #received(name: string): void {
    if (this.signalName === undefined) {
      this.signalName = name;
      this.#controller.abort(new UvmError('ABORTED', `interrupted by ${name}`));
      return;
    }
    const cleanup = this.#journal ? `run \`uvmctl down ${this.#journal}\` to clean up` : 'without --journal only HCS can terminate it';
    this.#env.stderr.write(`uvmctl: ${name} again: exiting now; UVM ${this.#uvmId} and what it holds may be left (${cleanup})\n`);
    (this.#env.exit ?? ((code: number) => process.exit(code)))(EXIT_INTERRUPTED);
  }

  /** The one line after an interrupted run; `err` is how the run ended (undefined: it finished anyway). */
  report(err: unknown): number {
    const cleanupError = UvmError.is(err) ? err.details.cleanupError : undefined;
    const why = UvmError.is(err) && !UvmError.is(err, 'ABORTED') ? ` (the run had failed: ${errorLine(err)})` : '';
    const line =
      cleanupError === undefined
        ? `${this.signalName}: interrupted; everything allocated was released and UVM ${this.#uvmId} terminated${why}`
        : `${this.signalName}: interrupted; tearing down failed, UVM ${this.#uvmId} may be left: ${errorLine(cleanupError)}${
            this.#journal ? ` (run \`uvmctl down ${this.#journal}\`)` : ''
          }`;
    this.#env.stderr.write(`uvmctl: ${line}\n`);
    return EXIT_INTERRUPTED;
  }
}

/** Resolves `file` and checks it can be written (created if missing, appended to otherwise) — a usage error if not. */
async function writableFile(file: string, option: string, options: { mustNotExist?: boolean } = {}): Promise<string> {
  const abs = path.resolve(file);
  try {
    if (options.mustNotExist) {
      await access(abs).then(
        () => {
          throw new UsageError(`${option}: ${abs} exists (a journal of an earlier run? \`uvmctl down ${abs}\` cleans it up)`);
        },
        () => undefined,
      );
      await access(path.dirname(abs), fsConstants.W_OK);
    } else {
      await appendFile(abs, '');
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`${option}: cannot write ${abs} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  return abs;
}

/** Why the last planned container did not fit, naming the device. */
function noFitReason(plan: ContainerPlan | undefined, scenario: Scenario): string {
  if (plan?.rootfs.kind === 'layers' && plan.rootfs.plan.os === 'windows' && plan.rootfs.plan.scratch.shared) {
    return 'its scratch disk is already attached to another container (SCSI; a WCOW scratch cannot be shared)';
  }
  const controllers = scenario.uvm.scsiControllers ?? 1;
  return `SCSI has no free LUN for its layers and disks (${controllers} controller(s) x 64 LUNs${
    scenario.uvm.reservedScsiSlots?.length ? `, ${scenario.uvm.reservedScsiSlots.length} reserved` : ''
  }; VPMEM devices left: ${plan?.slotsLeft.vpmem ?? 0})`;
}

/** The text of `uvmctl down`. */
function formatDownReport(report: DownReport): string {
  return [
    `UVM ${report.uvm.id} (journal ${report.journal})`,
    `released: ${report.released.length === 0 ? 'no container' : report.released.join(', ')}; ${report.releasedLeases} UVM lease(s)`,
    `terminated: ${report.terminated ? 'yes' : 'no'}`,
  ].join('\n');
}

/** A JSON-safe error object for `--json` failures. */
export function errorObject(err: unknown): Record<string, unknown> {
  const code = UvmError.is(err) ? err.code : err instanceof ScenarioError || err instanceof UsageError ? err.code : 'INTERNAL';
  const out: Record<string, unknown> = { code, message: err instanceof Error ? err.message : String(err) };
  if (err instanceof ScenarioError) out.field = err.field;
  if (UvmError.is(err)) {
    const details: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(err.details)) {
      if (v === null || ['string', 'number', 'boolean'].includes(typeof v)) details[k] = v;
      else if (UvmError.is(v) || v instanceof Error) details[k] = errorObject(v);
    }
    if (Object.keys(details).length > 0) out.details = details;
  }
  return out;
}

/** Reads every bundle's config.json (all input errors surface before any HCS call). */
async function readSpecs(scenario: Scenario): Promise<OciSpec[]> {
  const specs: OciSpec[] = [];
  for (const [i, c] of scenario.containers.entries()) {
    specs.push(await readBundleSpec(c.bundle, scenario.uvm.os, `scenario.containers[${i}].bundle`));
  }
  return specs;
}

/** What to do about a library that does not load. */
export const LIBRARY_HINT =
  'build the HCS simulator with `npm run build:native` (or `npm rebuild uvm-orchestrator` where it is installed; needs a C++17 compiler), or set UVM_HCS_LIBRARY to the HCS library to load';

/** `CODE: message (container web)` on one line; errors without a code are INTERNAL. */
export function errorLine(err: unknown): string {
  if (UvmError.is(err)) {
    const containerId = err.details.containerId;
    const where = typeof containerId === 'string' ? ` (container ${containerId})` : '';
    const hint = err.code === 'LIBRARY_LOAD_FAILED' ? ` — ${LIBRARY_HINT}` : '';
    return `${err.code}: ${oneLine(err.message)}${where}${hint}`;
  }
  return `INTERNAL: ${oneLine(err instanceof Error ? err.message : String(err))}`;
}

/** Collapses whitespace runs (newlines included) so an error is one line. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

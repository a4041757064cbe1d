// The `uvmctl` entry point (bin/uvmctl.js imports this module). reflect-metadata is loaded
// before any module with decorators.
import 'reflect-metadata';
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
import type { RunBackend } from './run-backend.js';
import { runScenario } from './run-command.js';
import { readScenarioFile, type Scenario } from './scenario.js';
import { ScenarioError } from './scenario-error.js';
import { UsageError } from './usage-error.js';

/** Exit codes. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** Where the CLI writes, and how it reaches HCS (replaced in unit tests). */
export interface CliEnvironment {
  stdout: ProgressSink;
  stderr: ProgressSink;
  /** The run backend; `trace` is an absolute file the simulator must append its trace to. */
  runBackend(options: { trace: string | undefined }): Promise<RunBackend>;
  /** The plan backend (no HCS call). `trace` as for run: set so that a stray HCS call would show. */
  planBackend(options: { trace: string | undefined }): Promise<PlanBackend>;
}

/** The environment of the real CLI: process streams, the library over HCS or its simulator. */
export function defaultEnvironment(): CliEnvironment {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    // Loaded on demand: parsing and validation never load the HCS library.
    runBackend: async (options) => (await import('./library-backend.js')).createLibraryRunBackend(options),
    planBackend: async (options) => (await import('./library-backend.js')).createLibraryPlanBackend(options),
  };
}

/**
 * Runs `uvmctl` with `argv` (without node and the script) and resolves with the exit code:
 * 0 success; 1 a failure (one line `uvmctl: <CODE>: <message>` on stderr) or resources left after
 * the teardown; 2 a bad command line or scenario file (one line naming the field).
 */
export async function main(argv: readonly string[], env: CliEnvironment = defaultEnvironment()): Promise<number> {
  let cmd: CommandLine;
  try {
    cmd = parseCommandLine(argv);
  } catch (err) {
    env.stderr.write(`uvmctl: ${oneLine((err as Error).message)}\n${USAGE.split('\n').slice(0, 5).join('\n')}\nRun "uvmctl help" for more.\n`);
    return EXIT_USAGE;
  }
  if (cmd.command === 'help') {
    env.stdout.write(`${USAGE}\n`);
    return EXIT_OK;
  }
  const progress = new Progress(cmd.quiet ? undefined : env.stderr);
  try {
    const scenario = await readScenarioFile(cmd.scenario);
    const created = await ensureFixtures(scenario.fixtures);
    if (created.length > 0) progress.line(`created ${created.length} missing fixture(s) of ${path.basename(scenario.file)}`);
    const specs = await readSpecs(scenario);
    const trace = cmd.trace === undefined ? undefined : path.resolve(cmd.trace);
    if (cmd.command === 'plan') {
      const report = await planScenario(scenario, specs, await env.planBackend({ trace }), progress);
      env.stdout.write(cmd.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatPlanReport(report)}\n`);
      if (!report.fits) {
        env.stderr.write(`uvmctl: NO_SLOT: container ${report.containers.at(-1)?.containerId ?? '?'} does not fit in UVM ${report.uvm.id}\n`);
        return EXIT_FAILURE;
      }
      return EXIT_OK;
    }
    const { report, teardownError } = await runScenario(scenario, specs, await env.runBackend({ trace }), progress, {
      keep: cmd.keep,
    });
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
    if (err instanceof ScenarioError || err instanceof UsageError) {
      env.stderr.write(`uvmctl: ${oneLine(err.message)}\n`);
      return EXIT_USAGE;
    }
    env.stderr.write(`uvmctl: ${errorLine(err)}\n`);
    return EXIT_FAILURE;
  }
}

/** Reads every bundle's config.json (all input errors surface before any HCS call). */
async function readSpecs(scenario: Scenario): Promise<OciSpec[]> {
  const specs: OciSpec[] = [];
  for (const [i, c] of scenario.containers.entries()) {
    specs.push(await readBundleSpec(c.bundle, scenario.uvm.os, `scenario.containers[${i}].bundle`));
  }
  return specs;
}

/** `CODE: message (container web)` on one line; errors without a code are INTERNAL. */
export function errorLine(err: unknown): string {
  if (UvmError.is(err)) {
    const containerId = err.details.containerId;
    const where = typeof containerId === 'string' ? ` (container ${containerId})` : '';
    return `${err.code}: ${oneLine(err.message)}${where}`;
  }
  return `INTERNAL: ${oneLine(err instanceof Error ? err.message : String(err))}`;
}

/** Collapses whitespace runs (newlines included) so an error is one line. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

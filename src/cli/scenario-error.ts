import * as v from 'valibot';
import { UvmError } from '../core/errors.js';
import { firstIssue, issuePath } from '../core/schema.js';

/**
 * A scenario file (or a bundle's config.json it names) that cannot be used: unreadable, not JSON,
 * a missing, wrong-typed or unknown field. `field` names the offending place, e.g.
 * `scenario.containers[1].bundle`; the CLI prints `uvmctl: <field>: <problem>` and exits with 2.
 * Its code is INVALID_SPEC, like every other "input that cannot be honoured" error.
 */
export class ScenarioError extends UvmError {
  /** Where the problem is, as a path from the document's root (`scenario.uvm.vpmem.count`). */
  readonly field: string;
  /** What is wrong with it (`expected a string`). */
  readonly problem: string;
  /** The file the field is in when it is not the scenario file itself (a bundle's config.json). */
  readonly file: string | undefined;

  constructor(field: string, problem: string, options: { cause?: unknown; file?: string } = {}) {
    super('INVALID_SPEC', `${options.file === undefined ? '' : `${options.file}: `}${field}: ${problem}`, {
      cause: options.cause,
      details: { field, file: options.file },
    });
    this.name = 'ScenarioError';
    this.field = field;
    this.problem = problem;
    this.file = options.file;
  }
}

/**
 * Checks `input` against a valibot `schema` (docs/decisions.md D3) and returns it typed; otherwise
 * throws a `ScenarioError` naming the first offending field under `root` (`scenario.uvm.os`). A
 * member that is absent is a "missing field", one the schema does not know an "unknown field"; a
 * value of the wrong type says what it got (`expected a string, got a number (7)`).
 */
export function checkScenarioSchema<S extends v.GenericSchema>(schema: S, input: unknown, root: string, rootName = root): v.InferOutput<S> {
  const issue = firstIssue(schema, input);
  if (issue === undefined) return input as v.InferOutput<S>;
  throw new ScenarioError(issuePath(issue, root) || rootName, problemOf(issue));
}

function problemOf(issue: v.BaseIssue<unknown>): string {
  if (issue.kind === 'schema' && issue.expected === 'never') return 'unknown field';
  if (issue.kind === 'schema' && issue.input === undefined && (issue.path?.length ?? 0) > 0) return 'missing field';
  if (issue.kind === 'schema' && issue.type !== 'custom') return `${issue.message}, got ${describeJson(issue.input)}`;
  return issue.message;
}

/** A short description of a JSON value for error messages: `a number (3)`, `null`, `an array`. */
export function describeJson(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  switch (typeof value) {
    case 'string':
      return `a string (${truncate(JSON.stringify(value))})`;
    case 'number':
      return `a number (${value})`;
    case 'boolean':
      return `a boolean (${value})`;
    case 'object':
      return 'an object';
    default:
      return typeof value;
  }
}

function truncate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

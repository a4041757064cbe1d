import { UvmError } from '../core/errors.js';

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

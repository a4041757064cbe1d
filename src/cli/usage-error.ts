import { UvmError } from '../core/errors.js';

/** A command line the CLI cannot run (unknown command or option, missing argument); exit code 2. */
export class UsageError extends UvmError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
    this.name = 'UsageError';
  }
}

/**
 * The schema of `allocateContainer` / `planContainer` options: their runtime check (INVALID_ARGUMENT
 * naming the option; the rootfs mounts are spec input, INVALID_SPEC, see spec-schema.ts). The
 * container id is checked by `validateContainerId`.
 */
import * as v from 'valibot';
import { checkSchema, looseRecord } from '../core/schema.js';
import { checkRootfsMounts } from '../oci/spec-schema.js';

const isFunction = (x: unknown): boolean => typeof x === 'function';

/** The option members other than `containerId` and `rootfs`. */
export const AllocateOptionsSchema = looseRecord({
  encryptScratch: v.optional(v.boolean()),
  signal: v.optional(v.custom<AbortSignal>((x) => x instanceof AbortSignal, 'expected an AbortSignal')),
  logger: v.optional(
    v.custom<object>(
      (x) => x !== null && typeof x === 'object' && ['debug', 'info', 'warn', 'error'].every((m) => isFunction((x as Record<string, unknown>)[m])),
      'expected a Logger (debug, info, warn and error methods)',
    ),
  ),
  onChange: v.optional(v.custom<() => unknown>(isFunction, 'expected a function')),
});

/** INVALID_ARGUMENT naming the first ill-typed option; INVALID_SPEC for ill-typed rootfs mounts. */
export function checkAllocateOptions(options: unknown): void {
  checkSchema(AllocateOptionsSchema, options, 'INVALID_ARGUMENT', 'allocateContainer options', 'options');
  checkRootfsMounts((options as { rootfs?: unknown }).rootfs);
}

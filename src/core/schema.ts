/**
 * Runtime checks from valibot schemas (docs/decisions.md D3): one schema per input gives both its
 * TypeScript type (`v.InferOutput`) and its check. A failed check is a `UvmError` whose
 * `details.field` is the path of the first offending value (`mounts[0].options[1]`) — never a
 * default, never a plain `TypeError` later on.
 */
import * as v from 'valibot';
import { UvmError, type UvmErrorCode, type UvmErrorDetails } from './errors.js';

const NOT_AN_OBJECT = 'expected an object (not an array or null)';
/** A plain object: not null, not an array. */
export const isPlainObject = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === 'object' && !Array.isArray(x);

/** A schema of a plain object (not an array, not null) that keeps its unknown members. */
export function looseRecord<const E extends v.ObjectEntries>(entries: E) {
  return v.pipe(v.custom<Record<string, unknown>>(isPlainObject, NOT_AN_OBJECT), v.looseObject(entries));
}

/** A schema of a plain object (not an array, not null) with exactly `entries` (unknown members rejected). */
export function strictRecord<const E extends v.ObjectEntries>(entries: E) {
  return v.pipe(v.custom<Record<string, unknown>>(isPlainObject, NOT_AN_OBJECT), v.strictObject(entries));
}

/** `a.b[0].c` from an issue's path, under `root` (`spec`, `options`…; '' for none). */
export function issuePath(issue: v.BaseIssue<unknown>, root = ''): string {
  let out = root;
  for (const item of issue.path ?? []) {
    const key = item.key as unknown;
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out;
}

/** The most specific issue: valibot reports a union's failure at its top; its sub-issues go deeper. */
function deepest(issue: v.BaseIssue<unknown>): v.BaseIssue<unknown> {
  let best = issue;
  for (const sub of issue.issues ?? []) {
    const candidate = deepest(sub);
    if ((candidate.path?.length ?? 0) > (best.path?.length ?? 0)) best = candidate;
  }
  return best;
}

/**
 * The issue's message, with the two object issues put plainly: a member the schema does not know
 * is `unknown member`, a required member that is absent is `missing`.
 */
export function issueMessage(issue: v.BaseIssue<unknown>): string {
  if (issue.kind !== 'schema' || !/object$/.test(issue.type)) return issue.message;
  if (issue.expected === 'never') return 'unknown member';
  if (issue.input === undefined) return 'missing';
  return issue.message;
}

/** Parse configuration: stop at the first issue (one object for every check). */
const FIRST_ISSUE_ONLY = { abortEarly: true } as const;

/** The most specific issue of the first problem `schema` finds in `input`; undefined when it passes. */
export function firstIssue(schema: v.GenericSchema, input: unknown): v.BaseIssue<unknown> | undefined {
  const result = v.safeParse(schema, input, FIRST_ISSUE_ONLY);
  return result.success ? undefined : deepest(result.issues[0]);
}

/**
 * Checks `input` against `schema` and returns it typed; otherwise throws a `UvmError` with `code`
 * naming the first offending field (`details.field`, and `details.mountIndex` for `mounts[i]…`).
 * @param what what the input is, for the message ("OCI spec", "allocateContainer options").
 * @param root the prefix of every field path ('' for a spec, `rootfs`, `options`…).
 */
export function checkSchema<S extends v.GenericSchema>(
  schema: S,
  input: unknown,
  code: UvmErrorCode,
  what: string,
  root = '',
  details: UvmErrorDetails = {},
): v.InferOutput<S> {
  const issue = firstIssue(schema, input);
  if (issue === undefined) return input as v.InferOutput<S>;
  const field = issuePath(issue, root);
  const mountIndex = /^mounts\[(\d+)\]/.exec(field);
  throw new UvmError(code, `invalid ${what}: ${field === '' ? 'the value' : field}: ${issueMessage(issue)}`, {
    details: {
      ...details,
      field,
      ...(mountIndex ? { mountIndex: Number(mountIndex[1]) } : {}),
    },
  });
}

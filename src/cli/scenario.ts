import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as v from 'valibot';
import { UvmError } from '../core/errors.js';
import { isPlainObject, strictRecord } from '../core/schema.js';
import { resolveUvmOptions, type UtilityVmOptions } from '../uvm/uvm-options.js';
import { resolveHostPath } from './host-path.js';
import { checkScenarioSchema, ScenarioError } from './scenario-error.js';

/**
 * The `uvm` section: the `UtilityVmOptions` a scenario may set — all but `guestConnection` (not
 * JSON), `journal` (`uvmctl run --journal`) and `assignedDevices`. It is checked when the scenario
 * is read, by the checks `createUtilityVm` runs (exit 2 naming `scenario.uvm.<field>`); relative
 * boot paths resolve against the scenario's folder first.
 */
export type ScenarioUvmOptions = Omit<UtilityVmOptions, (typeof NOT_IN_SCENARIO)[number]>;

/** One container of a scenario; `bundle` is absolute (resolved against the scenario's folder). */
export interface ScenarioContainer {
  id: string;
  bundle: string;
  /** `process`: a process-isolated (Argon) container, its layers mounted on the host at `<bundle>/rootfs`. Default: in the UVM. */
  isolation?: 'process';
}

/**
 * A host file or folder the scenario needs, created by the CLI when missing (never overwritten).
 * `path` is relative to the scenario's folder and may not leave it.
 */
export type ScenarioFixture =
  | { type: 'sparse-file'; path: string; sizeBytes: number }
  | { type: 'file'; path: string; content: string }
  | { type: 'directory'; path: string };

/** A validated scenario file. */
export interface Scenario {
  /** Absolute path of the scenario file. */
  file: string;
  /** Its folder, against which relative paths resolve. */
  dir: string;
  description?: string;
  uvm: ScenarioUvmOptions;
  containers: ScenarioContainer[];
  /** Release every container and check that nothing is left. Default true. */
  teardown: boolean;
  fixtures: ScenarioFixture[];
}

const NOT_IN_SCENARIO = ['guestConnection', 'journal', 'assignedDevices'] as const;
/** Boot members that are host paths (relative ones resolve against the scenario's folder). */
const BOOT_PATHS = ['bootFilesPath', 'osLayerPath', 'scratchPath'] as const;
const ROOT = 'scenario';

const text = v.pipe(v.string('expected a string'), v.nonEmpty('expected a non-empty string'));

/** One entry of `fixtures`; `path` relative to the scenario's folder. */
const FixtureSchema = v.pipe(
  v.custom<Record<string, unknown>>(isPlainObject, 'expected an object'),
  v.variant(
    'type',
    [
      v.strictObject({ type: v.literal('sparse-file'), path: text, sizeBytes: v.pipe(v.number('expected a non-negative integer'), v.safeInteger('expected a non-negative integer'), v.minValue(0, 'expected a non-negative integer')) }),
      v.strictObject({ type: v.literal('file'), path: text, content: v.string('expected a string') }),
      v.strictObject({ type: v.literal('directory'), path: text }),
    ],
    'expected one of "sparse-file", "file", "directory"',
  ),
);

/**
 * The schema of a scenario file (docs/cli.md). The `uvm` section is checked by `resolveUvmOptions`
 * (the options' own schema and rules), after its relative boot paths are resolved.
 */
export const ScenarioSchema = strictRecord({
  description: v.optional(v.string('expected a string')),
  uvm: v.custom<Record<string, unknown>>(isPlainObject, 'expected an object'),
  containers: v.pipe(
    v.array(
      strictRecord({
        id: text,
        bundle: text,
        // `process`: a process-isolated (Argon) container, its layers mounted on the host at `<bundle>/rootfs`.
        isolation: v.optional(v.picklist(['hyperv', 'process'], 'expected one of "hyperv", "process"')),
      }),
      'expected an array',
    ),
    v.minLength(1, 'expected at least one container'),
  ),
  teardown: v.optional(v.boolean('expected a boolean')),
  fixtures: v.optional(v.array(FixtureSchema, 'expected an array')),
});

/** Reads and validates a scenario file. Every problem is a `ScenarioError` naming the field. */
export async function readScenarioFile(file: string): Promise<Scenario> {
  const abs = path.resolve(file);
  let content: string;
  try {
    content = await readFile(abs, 'utf8');
  } catch (err) {
    throw new ScenarioError(ROOT, `cannot read ${abs} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(content);
  } catch (err) {
    throw new ScenarioError(ROOT, `${abs} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  return parseScenario(raw, abs);
}

/** Validates a parsed scenario document; `file` (absolute) anchors its relative paths. */
export function parseScenario(raw: unknown, file: string): Scenario {
  const dir = path.dirname(file);
  const top = checkScenarioSchema(ScenarioSchema, raw, ROOT);
  const scenario: Scenario = {
    file,
    dir,
    uvm: parseUvm(top.uvm, `${ROOT}.uvm`, dir),
    containers: parseContainers(top.containers, `${ROOT}.containers`, dir),
    teardown: top.teardown ?? true,
    fixtures: (top.fixtures ?? []).map((f, i) => ({ ...f, path: fixturePath(dir, f.path, `${ROOT}.fixtures[${i}].path`) })),
  };
  if (top.description !== undefined) scenario.description = top.description;
  return scenario;
}

/** The `uvm` section with its boot paths resolved, checked as `createUtilityVm` checks it. */
function parseUvm(raw: Record<string, unknown>, field: string, dir: string): ScenarioUvmOptions {
  for (const key of NOT_IN_SCENARIO) {
    if (key in raw) throw new ScenarioError(`${field}.${key}`, key === 'journal' ? 'unknown field (use uvmctl run --journal <file>)' : 'unknown field');
  }
  const uvm: Record<string, unknown> = structuredClone(raw);
  if (isPlainObject(uvm.boot)) {
    const boot = uvm.boot;
    for (const key of BOOT_PATHS) if (typeof boot[key] === 'string' && boot[key] !== '') boot[key] = resolveHostPath(dir, boot[key]);
  }
  try {
    resolveUvmOptions(uvm as unknown as UtilityVmOptions);
  } catch (err) {
    const at = UvmError.is(err) ? err.details?.field : undefined;
    if (typeof at !== 'string') throw err;
    const message = (err as Error).message;
    const marker = at === '' ? -1 : message.indexOf(`${at}: `);
    throw new ScenarioError(at === '' ? field : `${field}.${at}`, marker < 0 ? message : message.slice(marker + at.length + 2), { cause: err });
  }
  return uvm as unknown as ScenarioUvmOptions;
}

function parseContainers(list: readonly { id: string; bundle: string; isolation?: 'hyperv' | 'process' }[], field: string, dir: string): ScenarioContainer[] {
  const seen = new Map<string, number>();
  return list.map((c, i) => {
    const first = seen.get(c.id);
    if (first !== undefined) throw new ScenarioError(`${field}[${i}].id`, `duplicate container id ${JSON.stringify(c.id)} (also ${field}[${first}].id)`);
    seen.set(c.id, i);
    return { id: c.id, bundle: resolveHostPath(dir, c.bundle), ...(c.isolation === 'process' ? { isolation: c.isolation } : {}) };
  });
}

/** `rel` resolved in `dir`; it must stay inside it. */
function fixturePath(dir: string, rel: string, field: string): string {
  const resolved = path.resolve(dir, rel);
  const inside = path.relative(dir, resolved);
  if (path.isAbsolute(rel) || inside === '' || inside === '..' || inside.startsWith(`..${path.sep}`) || path.isAbsolute(inside)) {
    throw new ScenarioError(field, "expected a relative path inside the scenario's folder");
  }
  return resolved;
}

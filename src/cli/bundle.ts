import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as v from 'valibot';
import type { GuestOs } from '../devices/device-types.js';

import { resolveHostPath } from './host-path.js';
import { checkScenarioSchema, ScenarioError } from './scenario-error.js';
import { looseRecord } from '../core/schema.js';
import type { OciSpec } from '../oci/oci-spec.js';

/** Mount types whose `source` is a host path the library attaches, per guest OS (spec §6.2, §6.3). */
const HOST_SOURCE_TYPES: Record<GuestOs, ReadonlySet<string>> = {
  linux: new Set(['bind', 'virtual-disk', 'physical-disk']),
  windows: new Set(['', 'virtual-disk', 'physical-disk']),
};

/**
 * Reads `<bundleDir>/config.json` and resolves its relative host paths against the bundle folder
 * (see `resolveBundlePaths`). Problems are `ScenarioError`s naming the file and the field.
 */
export async function readBundleSpec(bundleDir: string, os: GuestOs, bundleField: string): Promise<OciSpec> {
  const file = path.join(bundleDir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ScenarioError(bundleField, `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ScenarioError(bundleField, `${file} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  try {
    return resolveBundlePaths(raw, bundleDir, os);
  } catch (err) {
    if (err instanceof ScenarioError && err.file === undefined) {
      throw new ScenarioError(err.field, err.problem, { file, cause: err.cause });
    }
    throw err;
  }
}

/**
 * A copy of the OCI spec `raw` with relative host paths resolved against `bundleDir`, as the OCI
 * runtime spec defines them (relative to the bundle):
 * - `root.path`;
 * - every entry of `windows.layerFolders`;
 * - the `source` of each mount the library attaches from the host — LCOW: `bind`, `virtual-disk`,
 *   `physical-disk`; WCOW: type-less, `virtual-disk`, `physical-disk` — unless it has a scheme
 *   (`sandbox://`, `uvm://`, `hugepages://`, `evd://`) or is already absolute on either kind of
 *   host (`/x`, `C:\x`, `\\.\pipe\x`).
 * Other fields are copied untouched. The field types this needs are checked (`ScenarioError`).
 */
export function resolveBundlePaths(raw: unknown, bundleDir: string, os: GuestOs): OciSpec {
  const spec = structuredClone(checkScenarioSchema(BundlePathsSchema, raw, '', 'config')) as OciSpec;
  // An empty root.path (with layer folders) is left as is, as hcsshim accepts it.
  if (spec.root?.path !== undefined && spec.root.path !== '') spec.root.path = resolveHostPath(bundleDir, spec.root.path);
  if (spec.windows?.layerFolders !== undefined) spec.windows.layerFolders = spec.windows.layerFolders.map((folder) => resolveHostPath(bundleDir, folder));
  for (const mount of spec.mounts ?? []) {
    const source = mount.source;
    if (source !== undefined && source !== '' && HOST_SOURCE_TYPES[os].has(mount.type ?? '') && !source.includes('://')) {
      mount.source = resolveHostPath(bundleDir, source);
    }
  }
  return spec;
}

const STRING = v.string('expected a string');

/**
 * The fields of config.json the CLI rewrites, with the types it needs (other fields are the
 * library's to check: `OciSpecSchema`).
 */
const BundlePathsSchema = looseRecord({
  root: v.optional(looseRecord({ path: v.optional(STRING) })),
  windows: v.optional(looseRecord({ layerFolders: v.optional(v.array(STRING, 'expected an array')) })),
  mounts: v.optional(v.array(looseRecord({ type: v.optional(STRING), source: v.optional(STRING) }), 'expected an array')),
});

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { GuestOs } from '../devices/device-types.js';
import { JsonFields as F } from './json-fields.js';
import { resolveHostPath } from './host-path.js';
import { ScenarioError } from './scenario-error.js';
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
  const spec = structuredClone(F.anyObject(raw, 'config')) as OciSpec;
  if (spec.root !== undefined) {
    const root = F.anyObject(spec.root, 'root');
    // An empty root.path (with layer folders) is left as is, as hcsshim accepts it.
    if (root.path !== undefined && root.path !== '') root.path = resolveHostPath(bundleDir, F.string(root.path, 'root.path'));
  }
  if (spec.windows !== undefined) {
    const windows = F.anyObject(spec.windows, 'windows');
    if (windows.layerFolders !== undefined) {
      windows.layerFolders = F.array(windows.layerFolders, 'windows.layerFolders').map((folder, i) =>
        resolveHostPath(bundleDir, F.string(folder, `windows.layerFolders[${i}]`)),
      );
    }
  }
  if (spec.mounts !== undefined) {
    F.array(spec.mounts, 'mounts').forEach((item, i) => {
      const mount = F.anyObject(item, `mounts[${i}]`);
      const type = mount.type === undefined ? '' : F.string(mount.type, `mounts[${i}].type`, { allowEmpty: true });
      if (mount.source === undefined) return;
      const source = F.string(mount.source, `mounts[${i}].source`, { allowEmpty: true });
      if (source !== '' && HOST_SOURCE_TYPES[os].has(type) && !source.includes('://')) {
        mount.source = resolveHostPath(bundleDir, source);
      }
    });
  }
  return spec;
}

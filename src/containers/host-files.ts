/**
 * Host files are checked for the kind they must be before any HCS call (issue 12): an LCOW layer
 * (`layer.vhd`, or a partitioned layer's disk) and a scratch VHDX are regular files, a WCOW layer
 * or scratch folder is a directory, a `virtual-disk` mount's source is a regular file and a
 * `physical-disk` source is left to HCS. Whatever the placement (VPMEM or SCSI): with VPMEM off, a
 * layer folder without `layer.vhd` is refused just the same.
 *
 * Errors: NOT_FOUND when the path does not exist, INVALID_ARGUMENT when it is of the wrong kind;
 * `details.field` names the input (`windows.layerFolders[0]`, `rootfs[0]`, `mounts[2].source`).
 */
import { UvmError, type UvmErrorDetails } from '../core/errors.js';
import { attempt } from '../core/attempt.js';
import type { HostFs } from '../core/host-fs.js';
import type { LayerInputs } from '../layers/layer-inputs.js';
import { addErrorDetails } from '../oci/container-paths.js';
import type { PlannedMount } from '../oci/mount-planner.js';
import type { OciSpec } from '../oci/oci-spec.js';

type Kind = 'file' | 'directory';

/**
 * Stats `path` and checks its kind. `describe` gives the input's name and error details; it is
 * called only on a failure (a pod's allocations check hundreds of paths that are fine).
 */
function expectKind(hostFs: HostFs, path: string, kind: Kind, describe: () => [what: string, details: UvmErrorDetails]): Promise<void> {
  const notFound = (err: unknown): never => {
    throw addErrorDetails(err, { ...describe()[1], hostPath: path });
  };
  return attempt(() => hostFs.stat(path)).then((st) => {
    const ok = kind === 'file' ? st.isFile : st.isDirectory;
    if (!ok) {
      const [what, details] = describe();
      throw new UvmError('INVALID_ARGUMENT', `${what} must be a ${kind === 'file' ? 'regular file' : 'directory'}: ${path}`, {
        details: { ...details, hostPath: path },
      });
    }
  }, notFound);
}

/** Checks the layer files or folders of `inputs` (from `spec.windows.layerFolders` or the rootfs mounts). */
export function checkLayerFiles(hostFs: HostFs, inputs: LayerInputs, spec: OciSpec): Promise<void> {
  const folders = spec.windows?.layerFolders ?? [];
  const fromFolders = folders.length > 0;
  const layerField = (i: number): string => (fromFolders ? `windows.layerFolders[${i}]` : 'rootfs[0]');
  const scratchField = fromFolders ? `windows.layerFolders[${folders.length - 1}]` : 'rootfs[0]';
  const checks: Promise<void>[] = [];
  if (inputs.os === 'linux') {
    inputs.layers.forEach((layer, i) => checks.push(expectKind(hostFs, layer.hostPath, 'file', () => [`layer ${i}`, { field: layerField(i), layerIndex: i }])));
  } else {
    inputs.layerFolders.forEach((folder, i) =>
      checks.push(expectKind(hostFs, folder, 'directory', () => [`layer folder ${i}`, { field: layerField(i), layerIndex: i }])),
    );
    checks.push(expectKind(hostFs, inputs.scratchFolder, 'directory', () => ['the scratch folder', { field: scratchField }]));
  }
  checks.push(expectKind(hostFs, inputs.scratchVhd, 'file', () => ['the scratch disk', { field: scratchField }]));
  return firstFailure(checks);
}

/** Checks the host sources of the planned disk mounts (shares were stat'ed by the planner). */
export function checkMountFiles(hostFs: HostFs, mounts: readonly PlannedMount[]): Promise<void> {
  const checks: Promise<void>[] = [];
  for (const m of mounts) {
    if (m.kind !== 'device' || m.device !== 'scsi') continue;
    // A physical disk (`\\.\PhysicalDrive1`) is not a regular file and a stat of it can fail; HCS checks it.
    if (m.request.type === 'VirtualDisk') {
      checks.push(expectKind(hostFs, m.request.hostPath, 'file', () => ['a virtual-disk mount source', { field: `mounts[${m.index}].source`, mountIndex: m.index }]));
    }
  }
  return firstFailure(checks);
}

/** Waits for every check, then throws the first failure in input order (deterministic). */
function firstFailure(checks: Promise<void>[]): Promise<void> {
  return checks.length === 0 ? Promise.resolve() : allInOrder(checks).then(() => undefined);
}

/**
 * Waits for every promise, then resolves with their values, or throws the first failure in input
 * order: I/O that does not depend on each other runs at once with the errors of running it one
 * step after the other.
 */
export function allInOrder<T extends readonly unknown[]>(tasks: readonly [...{ [K in keyof T]: Promise<T[K]> }]): Promise<T> {
  return Promise.allSettled(tasks).then((results) => {
    const values: unknown[] = [];
    for (const r of results) {
      if (r.status === 'rejected') throw r.reason;
      values.push(r.value);
    }
    return values as unknown as T;
  });
}

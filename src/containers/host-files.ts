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
import type { HostFs, HostStat } from '../core/host-fs.js';
import type { LayerInputs } from '../layers/layer-inputs.js';
import { addErrorDetails } from '../oci/container-paths.js';
import type { PlannedMount } from '../oci/mount-planner.js';
import type { OciSpec } from '../oci/oci-spec.js';

type Kind = 'file' | 'directory';

/**
 * One path to check: its kind, and (only on a failure) the input's name and error details. A
 * pod's allocations check hundreds of paths that are fine: nothing per path but this record.
 */
interface KindCheck {
  path: string;
  kind: Kind;
  /** The input's name and error details, built only for a failure. */
  describe(this: void, check: KindCheck): [what: string, details: UvmErrorDetails];
  /** The layer or mount index `describe` names (-1: none). */
  index: number;
}

/**
 * Stats every path at once, then checks them in input order: the first failure in that order is
 * thrown (NOT_FOUND from the stat with the input's details added, or INVALID_ARGUMENT for the
 * wrong kind), after every stat has settled.
 */
async function expectKinds(hostFs: HostFs, checks: readonly KindCheck[]): Promise<void> {
  if (checks.length === 0) return;
  const stats: Promise<HostStat>[] = [];
  for (const c of checks) stats.push(statOf(hostFs, c.path));
  const results = await Promise.allSettled(stats);
  for (let i = 0; i < results.length; i++) {
    const result = results[i]!;
    const check = checks[i]!;
    if (result.status === 'rejected') throw addErrorDetails(result.reason, { ...check.describe(check)[1], hostPath: check.path });
    const ok = check.kind === 'file' ? result.value.isFile : result.value.isDirectory;
    if (!ok) {
      const [what, details] = check.describe(check);
      throw new UvmError('INVALID_ARGUMENT', `${what} must be a ${check.kind === 'file' ? 'regular file' : 'directory'}: ${check.path}`, {
        details: { ...details, hostPath: check.path },
      });
    }
  }
}

/**
 * `hostFs.stat(path)`, a synchronous throw made a rejection. (A module function, not a closure
 * per path: see `commitLayer` in layers/lcow-layer-composer.ts.)
 */
async function statOf(hostFs: HostFs, path: string): Promise<HostStat> {
  return hostFs.stat(path);
}

/** Checks the layer files or folders of `inputs` (from `spec.windows.layerFolders` or the rootfs mounts). */
export function checkLayerFiles(hostFs: HostFs, inputs: LayerInputs, spec: OciSpec): Promise<void> {
  const folders = spec.windows?.layerFolders ?? [];
  const fromFolders = folders.length > 0;
  const scratchField = fromFolders ? `windows.layerFolders[${folders.length - 1}]` : 'rootfs[0]';
  const layer = (what: string) => (check: KindCheck): [string, UvmErrorDetails] => [
    `${what} ${check.index}`,
    { field: fromFolders ? `windows.layerFolders[${check.index}]` : 'rootfs[0]', layerIndex: check.index },
  ];
  const scratch = (what: string) => (): [string, UvmErrorDetails] => [what, { field: scratchField }];
  const checks: KindCheck[] = [];
  if (inputs.os === 'linux') {
    const describe = layer('layer');
    for (let index = 0; index < inputs.layers.length; index++) checks.push({ path: inputs.layers[index]!.hostPath, kind: 'file', describe, index });
  } else {
    const describe = layer('layer folder');
    for (let index = 0; index < inputs.layerFolders.length; index++) checks.push({ path: inputs.layerFolders[index]!, kind: 'directory', describe, index });
    checks.push({ path: inputs.scratchFolder, kind: 'directory', describe: scratch('the scratch folder'), index: -1 });
  }
  checks.push({ path: inputs.scratchVhd, kind: 'file', describe: scratch('the scratch disk'), index: -1 });
  return expectKinds(hostFs, checks);
}

const diskMountSource = (check: KindCheck): [string, UvmErrorDetails] => [
  'a virtual-disk mount source',
  { field: `mounts[${check.index}].source`, mountIndex: check.index },
];

/** Checks the host sources of the planned disk mounts (shares were stat'ed by the planner). */
export function checkMountFiles(hostFs: HostFs, mounts: readonly PlannedMount[]): Promise<void> {
  const checks: KindCheck[] = [];
  for (const m of mounts) {
    if (m.kind !== 'device' || m.device !== 'scsi') continue;
    // A physical disk (`\\.\PhysicalDrive1`) is not a regular file and a stat of it can fail; HCS checks it.
    if (m.request.type === 'VirtualDisk') checks.push({ path: m.request.hostPath, kind: 'file', describe: diskMountSource, index: m.index });
  }
  return expectKinds(hostFs, checks);
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

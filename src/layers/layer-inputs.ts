/**
 * Parsing and validation of a container's layer inputs (spec §5.1): OCI `windows.layerFolders`
 * (`[top-most … base, scratch]`) or a single containerd rootfs mount (`lcow-layer`,
 * `lcow-partitioned-layer`, `windows-layer`). Pure: no I/O.
 *
 * Errors: a structural problem (both/neither inputs, several rootfs mounts, a rootfs target, fewer
 * than two folders, an unknown type or option, bad JSON) is INVALID_SPEC; a bad path (empty,
 * relative, NUL) is INVALID_ARGUMENT. `details.field` names the offending input.
 */
import { UvmError, type UvmErrorDetails } from '../core/errors.js';
import type { GuestOs } from '../devices/device-types.js';
import type { OciSpec, RootfsMount } from '../oci/oci-spec.js';
import { hostPaths } from '../devices/host-paths.js';
import { validate } from '../devices/validation.js';
import { withErrorDetails } from '../oci/container-paths.js';

/** INVALID_ARGUMENT unless `path` is a non-empty absolute host path; `details` name the input. */
function assertHostPath(path: unknown, what: string, details: UvmErrorDetails): asserts path is string {
  withErrorDetails(details, () => validate.hostPath(path, what));
}

/** File names inside a layer folder. */
export const LCOW_LAYER_VHD = 'layer.vhd';
export const SCRATCH_VHDX = 'sandbox.vhdx';
/** Option prefixes of the containerd rootfs mounts. */
export const PARENT_LAYER_PATHS_OPTION = 'parentLayerPaths=';
export const PARTITIONED_SCRATCH_OPTION = 'scratch=';
export const PARENT_PARTITIONED_LAYERS_OPTION = 'parent-partitioned-layers=';

/** One read-only LCOW layer. */
export interface LcowLayerInput {
  /** The layer VHD (`<folder>/layer.vhd`, or the path given by `lcow-partitioned-layer`). */
  hostPath: string;
  /** 1-based partition; absent or 0 = whole disk. A partitioned layer never goes to VPMEM. */
  partition?: number;
}

/** LCOW layers: read-only layer VHDs (top-most first) and the scratch VHDX. */
export interface LcowLayerInputs {
  os: 'linux';
  /** Top-most first. */
  layers: LcowLayerInput[];
  /** The scratch VHDX as given (symlinks are resolved by the layer planner). */
  scratchVhd: string;
}

/** WCOW layers: read-only layer folders (top-most first) and the scratch folder. */
export interface WcowLayerInputs {
  os: 'windows';
  /** Read-only layer folders, top-most first. */
  layerFolders: string[];
  /** The scratch layer folder. */
  scratchFolder: string;
  /** `<scratch folder>\sandbox.vhdx`. */
  scratchVhd: string;
}

/** A container's parsed layer inputs (LCOW or WCOW). */
export type LayerInputs = LcowLayerInputs | WcowLayerInputs;

function invalidSpec(message: string, details: UvmErrorDetails): UvmError {
  return new UvmError('INVALID_SPEC', message, { details });
}

/** True when the spec or the rootfs mounts carry layers (so `root.path` is not the rootfs source). */
export function hasLayerInputs(spec: OciSpec, rootfs: readonly RootfsMount[] = []): boolean {
  return rootfs.length > 0 || (spec.windows?.layerFolders?.length ?? 0) > 0;
}

/**
 * Parses the layer inputs of a container for a UVM of `os`.
 * @param rootfs the rootfs mounts handed to the shim (containerd's `CreateTaskRequest.Rootfs`).
 */
export function parseLayerInputs(os: GuestOs, spec: OciSpec, rootfs: readonly RootfsMount[] = []): LayerInputs {
  const folders = spec.windows?.layerFolders;
  if (folders !== undefined && !Array.isArray(folders)) {
    throw invalidSpec('windows.layerFolders must be an array of paths', { field: 'windows.layerFolders' });
  }
  const hasFolders = (folders?.length ?? 0) > 0;
  if (hasFolders && rootfs.length > 0) {
    throw invalidSpec('cannot pass both a rootfs mount and windows.layerFolders', { field: 'rootfs' });
  }
  if (!hasFolders && rootfs.length === 0) {
    throw invalidSpec('must pass either a rootfs mount or windows.layerFolders', { field: 'rootfs' });
  }
  if (hasFolders) return fromFolders(os, folders!);
  if (rootfs.length > 1) throw invalidSpec(`expected a single rootfs mount, got ${rootfs.length}`, { field: 'rootfs' });
  return fromRootfsMount(os, rootfs[0]!);
}

function fromFolders(os: GuestOs, folders: readonly unknown[]): LayerInputs {
  if (folders.length < 2) {
    throw invalidSpec('must pass at least two windows.layerFolders (a layer and the scratch)', {
      field: 'windows.layerFolders',
    });
  }
  for (let i = 0; i < folders.length; i++) {
    const f = folders[i];
    if (!validate.isHostPath(f)) assertHostPath(f, `windows.layerFolders[${i}]`, { field: `windows.layerFolders[${i}]` });
  }
  const paths = folders as string[];
  return build(os, paths.slice(0, -1), paths[paths.length - 1]!);
}

/** A LCOW layer folder's `layer.vhd`. (Module functions, not closures made per call, on the paths a pod runs per layer: see `commitLayer` in lcow-layer-composer.ts.) */
const layerVhdOf = (folder: string): LcowLayerInput => ({ hostPath: hostPaths.join(folder, LCOW_LAYER_VHD) });

function build(os: GuestOs, roFolders: string[], scratchFolder: string): LayerInputs {
  if (os === 'linux') {
    return {
      os,
      layers: roFolders.map(layerVhdOf),
      scratchVhd: hostPaths.join(scratchFolder, SCRATCH_VHDX),
    };
  }
  return { os, layerFolders: roFolders, scratchFolder, scratchVhd: hostPaths.join(scratchFolder, SCRATCH_VHDX) };
}

function fromRootfsMount(os: GuestOs, m: RootfsMount): LayerInputs {
  const field = 'rootfs[0]';
  if (m === null || typeof m !== 'object' || typeof m.type !== 'string') {
    throw invalidSpec('a rootfs mount must be an object with a type', { field });
  }
  if (m.target !== undefined && m.target !== '') {
    throw invalidSpec(`a rootfs mount must not have a target, got ${m.target}`, { field: `${field}.target` });
  }
  const options = m.options ?? [];
  if (!Array.isArray(options) || options.some((o) => typeof o !== 'string')) {
    throw invalidSpec('rootfs mount options must be strings', { field: `${field}.options` });
  }
  const expected = os === 'linux' ? ['lcow-layer', 'lcow-partitioned-layer'] : ['windows-layer'];
  if (!expected.includes(m.type)) {
    throw invalidSpec(`unrecognized rootfs mount type for a ${os} UVM: ${m.type}`, { field: `${field}.type`, type: m.type });
  }
  if (m.type === 'lcow-partitioned-layer') return fromPartitioned(m, options);

  assertHostPath(m.source, `${field}.source`, { field: `${field}.source` });
  let parents: unknown;
  for (const opt of options) {
    if (opt.startsWith(PARENT_LAYER_PATHS_OPTION)) {
      parents = parseJsonOption(opt.slice(PARENT_LAYER_PATHS_OPTION.length), `${field}.options`);
    }
  }
  if (!Array.isArray(parents) || parents.length === 0) {
    throw invalidSpec(`${m.type} needs ${PARENT_LAYER_PATHS_OPTION}<JSON array> with at least one layer`, {
      field: `${field}.options`,
    });
  }
  parents.forEach((p, i) => {
    if (!validate.isHostPath(p)) assertHostPath(p, `parentLayerPaths[${i}]`, { field: `${field}.options`, layerIndex: i });
  });
  return build(os, parents as string[], m.source);
}

function fromPartitioned(m: RootfsMount, options: string[]): LcowLayerInputs {
  const field = 'rootfs[0].options';
  let scratch: string | undefined;
  let layers: unknown;
  for (const opt of options) {
    if (opt.startsWith(PARTITIONED_SCRATCH_OPTION)) scratch = opt.slice(PARTITIONED_SCRATCH_OPTION.length);
    else if (opt.startsWith(PARENT_PARTITIONED_LAYERS_OPTION)) {
      layers = parseJsonOption(opt.slice(PARENT_PARTITIONED_LAYERS_OPTION.length), field);
    } else throw invalidSpec(`unrecognized lcow-partitioned-layer mount option: ${opt}`, { field, option: opt });
  }
  assertHostPath(scratch, 'the scratch= option', { field });
  if (!Array.isArray(layers) || layers.length === 0) {
    throw invalidSpec(`lcow-partitioned-layer needs ${PARENT_PARTITIONED_LAYERS_OPTION}<JSON array> with at least one layer`, { field });
  }
  const parsed = layers.map((l: unknown, i): LcowLayerInput => {
    const entry = l as { Path?: unknown; Partition?: unknown } | null;
    if (entry === null || typeof entry !== 'object') throw invalidSpec(`partitioned layer ${i} must be an object`, { field, layerIndex: i });
    assertHostPath(entry.Path, `partitioned layer ${i} Path`, { field, layerIndex: i });
    const partition = entry.Partition ?? 0;
    if (typeof partition !== 'number' || !Number.isInteger(partition) || partition < 0) {
      throw invalidSpec(`partitioned layer ${i} Partition must be a non-negative integer`, { field, layerIndex: i });
    }
    return partition > 0 ? { hostPath: entry.Path, partition } : { hostPath: entry.Path };
  });
  return { os: 'linux', layers: parsed, scratchVhd: scratch };
}

function parseJsonOption(text: string, field: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new UvmError('INVALID_SPEC', `mount option is not valid JSON: ${text}`, { cause: err, details: { field } });
  }
}

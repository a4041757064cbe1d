/**
 * The subset of the OCI runtime spec (config.json) that container allocation reads and rewrites.
 * Unknown fields are carried through untouched: the rewritten spec is a deep copy of the input
 * with only `root.path` and the attached mounts' `source`/`type` changed.
 */

/** One entry of `mounts`. */
export interface OciMount {
  /** Path inside the container (`\\.\pipe\…` for a WCOW named pipe, `blockdev://…` for a LCOW block device). */
  destination: string;
  /** `bind`, `physical-disk`, `virtual-disk`, `extensible-virtual-disk`, `tmpfs`, … (LCOW: absent = not a host mount). */
  type?: string;
  /** Host path, `evd://<type>/<path>`, `sandbox://…`, `sandbox-tmp://…`, `uvm://…`, `hugepages://…`. */
  source?: string;
  options?: string[];
  [key: string]: unknown;
}

export interface OciRoot {
  /** Host path of the root file system (LCOW without layers), or the guest rootfs after allocation. */
  path?: string;
  readonly?: boolean;
  [key: string]: unknown;
}

export interface OciWindows {
  /** `[top-most layer … base layer, scratch]` (moby convention). */
  layerFolders?: string[];
  [key: string]: unknown;
}

export interface OciSpec {
  ociVersion?: string;
  root?: OciRoot;
  mounts?: OciMount[];
  windows?: OciWindows;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

/**
 * A rootfs mount as containerd hands it to a shim (`types.Mount`): `lcow-layer`,
 * `lcow-partitioned-layer` or `windows-layer`.
 */
export interface RootfsMount {
  type: string;
  /** The scratch layer directory. */
  source: string;
  /** Must be empty: the shim decides where the rootfs lands. */
  target?: string;
  options?: string[];
}

/** True when one of the mount's options equals `ro` (case-insensitive). */
export function isReadOnlyMount(mount: Pick<OciMount, 'options'>): boolean {
  return (mount.options ?? []).some((o) => typeof o === 'string' && o.toLowerCase() === 'ro');
}

/**
 * The subset of the OCI runtime spec (config.json) that container allocation reads and rewrites.
 * Unknown fields are carried through untouched: the rewritten spec is a deep copy of the input
 * with only `root.path` and the attached mounts' `source`/`type` changed. The types come from the
 * schemas in spec-schema.ts, which also check them at run time.
 */
import type * as v from 'valibot';
import type { OciMountSchema, OciRootSchema, OciSpecSchema, OciWindowsSchema, RootfsMountSchema } from './spec-schema.js';

/** One entry of `mounts` (schema: `OciMountSchema`). */
export type OciMount = v.InferOutput<typeof OciMountSchema>;

/** The spec's `root` (schema: `OciRootSchema`). */
export type OciRoot = v.InferOutput<typeof OciRootSchema>;

/** The spec's `windows` section; only `layerFolders` is read (schema: `OciWindowsSchema`). */
export type OciWindows = v.InferOutput<typeof OciWindowsSchema>;

/** The part of an OCI runtime spec that allocation reads (schema: `OciSpecSchema`); other members are kept as given. */
export type OciSpec = v.InferOutput<typeof OciSpecSchema>;

/**
 * A rootfs mount as containerd hands it to a shim (`types.Mount`): `lcow-layer`,
 * `lcow-partitioned-layer` or `windows-layer` (schema: `RootfsMountSchema`).
 */
export type RootfsMount = v.InferOutput<typeof RootfsMountSchema>;

/** True when one of the mount's options equals `ro` (case-insensitive). */
export function isReadOnlyMount(mount: Pick<OciMount, 'options'>): boolean {
  return (mount.options ?? []).some((o) => o.toLowerCase() === 'ro');
}

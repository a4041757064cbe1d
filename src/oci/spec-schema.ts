/**
 * The schemas of the OCI runtime spec fields this library reads (config.json), and of the
 * containerd rootfs mounts. They are the single description of these inputs: `oci-spec.ts` takes
 * its types from them, and `checkOciSpec` / `checkOciMount` / `checkRootfsMounts` reject an
 * ill-typed field with INVALID_SPEC naming its path, before anything is planned or attached.
 * Fields the library does not read are carried through unchecked.
 */
import * as v from 'valibot';
import { checkSchema, looseRecord, strictRecord } from '../core/schema.js';

/** One entry of `mounts`. */
export const OciMountSchema = looseRecord({
  // Path inside the container (`\\.\pipe\…` for a WCOW named pipe, `blockdev://…` for a LCOW block device).
  destination: v.string(),
  // `bind`, `physical-disk`, `virtual-disk`, `extensible-virtual-disk`, `tmpfs`, … (LCOW: absent = not a host mount).
  type: v.optional(v.string()),
  // Host path, `evd://<type>/<path>`, `sandbox://…`, `sandbox-tmp://…`, `uvm://…`, `hugepages://…`.
  source: v.optional(v.string()),
  options: v.optional(v.array(v.string())),
});

/** Schema of the spec's `root`. */
export const OciRootSchema = looseRecord({
  // Host path of the root file system (LCOW without layers), or the guest rootfs after allocation.
  path: v.optional(v.string()),
  readonly: v.optional(v.boolean()),
});

/** Schema of the spec's `windows` section (`layerFolders`). */
export const OciWindowsSchema = looseRecord({
  // `[top-most layer … base layer, scratch]` (moby convention).
  layerFolders: v.optional(v.array(v.string())),
});

/** The subset of the OCI runtime spec that container allocation reads and rewrites. */
export const OciSpecSchema = looseRecord({
  ociVersion: v.optional(v.string()),
  root: v.optional(OciRootSchema),
  mounts: v.optional(v.array(OciMountSchema)),
  windows: v.optional(OciWindowsSchema),
  annotations: v.optional(v.record(v.string(), v.string())),
});

/**
 * A rootfs mount as containerd hands it to a shim (`types.Mount`): `lcow-layer`,
 * `lcow-partitioned-layer` or `windows-layer`.
 */
export const RootfsMountSchema = strictRecord({
  type: v.string(),
  // The scratch layer directory.
  source: v.string(),
  // Must be empty: the shim decides where the rootfs lands.
  target: v.optional(v.string()),
  options: v.optional(v.array(v.string())),
});

/** INVALID_SPEC naming the first ill-typed field (`root.readonly`, `mounts[1].options[0]`…). */
export function checkOciSpec(spec: unknown): asserts spec is v.InferOutput<typeof OciSpecSchema> {
  checkSchema(OciSpecSchema, spec, 'INVALID_SPEC', 'OCI spec');
}

/** INVALID_SPEC naming the first ill-typed field of `mounts[index]` (also for a hot-added mount). */
export function checkOciMount(mount: unknown, index: number): asserts mount is v.InferOutput<typeof OciMountSchema> {
  checkSchema(OciMountSchema, mount, 'INVALID_SPEC', 'OCI mount', `mounts[${index}]`, { mountIndex: index });
}

/** The rootfs mounts of an allocation: absent, or an array of rootfs mounts. */
const RootfsMountsSchema = v.optional(v.array(RootfsMountSchema));

/** INVALID_SPEC naming the first ill-typed field of the rootfs mounts (`rootfs[0].options`…). */
export function checkRootfsMounts(rootfs: unknown): asserts rootfs is v.InferOutput<typeof RootfsMountSchema>[] | undefined {
  checkSchema(RootfsMountsSchema, rootfs, 'INVALID_SPEC', 'rootfs mounts', 'rootfs');
}

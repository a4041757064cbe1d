/**
 * Journal codec of container records: what a container holds besides its lease records — its
 * rootfs, the composed layers, what each rootfs lease is for, and each mount as planned and as
 * applied — each validated by its own schema (docs/recovery.md "Format").
 */
import * as v from 'valibot';
import type { ContainerResourcesSnapshot } from '../../containers/container-resources.js';
import type { HeldResource } from '../../containers/held-resource.js';
import type { ComposedLayersInfo } from '../../layers/composed-layers.js';
import type { ContainerEntry } from '../../oci/mount-applier.js';
import type { PlannedMount } from '../../oci/mount-planner.js';
import type { OciMount } from '../../oci/oci-spec.js';
import { count, text } from './codec.js';
import { pipeRequestSchema } from './pipe.js';
import { plan9RequestSchema } from './plan9.js';
import { scsiRequestSchema } from './scsi.js';
import { vsmbRequestSchema } from './vsmb.js';

const ociMountSchema = v.looseObject({
  destination: text,
  type: v.optional(v.string()),
  source: v.optional(v.string()),
  options: v.optional(v.array(v.string())),
});

const entryKind = v.picklist(['mapped-directory', 'mapped-pipe']);
const plannedBase = { index: count, mount: ociMountSchema };
const deviceBase = {
  ...plannedBase,
  kind: v.literal('device'),
  readOnly: v.boolean(),
  rewriteType: v.optional(v.string()),
  containerEntry: v.optional(entryKind),
  hostKind: v.optional(v.picklist(['file', 'directory'])),
};

/** `rewriteType` is always present in a planned device mount (undefined: the field is removed), absent in JSON. */
function deviceMount<S extends v.GenericSchema<unknown, { rewriteType?: string | undefined }>>(schema: S) {
  return v.pipe(schema, v.transform((o) => ({ ...o, rewriteType: o.rewriteType })));
}

const plannedMountSchema = v.union([
  v.object({ ...plannedBase, kind: v.literal('keep'), reason: v.picklist(['not-a-host-mount', 'guest-source']) }),
  v.object({ ...plannedBase, kind: v.literal('guest'), source: v.string(), readOnly: v.boolean(), containerEntry: entryKind }),
  deviceMount(v.object({ ...deviceBase, device: v.literal('scsi'), request: scsiRequestSchema })),
  deviceMount(v.object({ ...deviceBase, device: v.literal('plan9'), request: plan9RequestSchema })),
  deviceMount(v.object({ ...deviceBase, device: v.literal('vsmb'), request: vsmbRequestSchema })),
  deviceMount(v.object({ ...deviceBase, device: v.literal('pipe'), request: pipeRequestSchema })),
]);

const containerEntrySchema = v.variant('kind', [
  v.object({ kind: v.literal('mapped-directory'), value: v.object({ HostPath: text, ContainerPath: text, ReadOnly: v.optional(v.boolean()) }) }),
  v.object({ kind: v.literal('mapped-pipe'), value: v.object({ ContainerPipeName: text, HostPath: text }) }),
]);

const layersSchema = v.object({
  os: v.picklist(['linux', 'windows']),
  containerId: text,
  rootfsPath: text,
  scratchMountPath: text,
  scratchPath: v.optional(text),
  scratchHostPath: text,
  layers: v.array(
    v.object({
      index: count,
      hostPath: text,
      partition: v.optional(count),
      target: v.picklist(['vpmem', 'scsi', 'vsmb']),
      reason: v.optional(v.picklist(['physically-backed', 'vpmem-disabled', 'partitioned', 'no-slot', 'too-large'])),
      guestPath: text,
      id: v.optional(text),
    }),
  ),
});

/** What a held rootfs lease is for (`HeldResource` without the lease). */
const heldFieldsSchema = v.object({
  kind: v.picklist(['layer', 'scratch', 'combined-layers', 'root-share', 'mount', 'device']),
  source: v.picklist(['scsi', 'vpmem', 'vsmb', 'plan9', 'pipe', 'guest', 'vpci']),
  hostPath: v.optional(text),
  guestPath: v.optional(text),
  destination: v.optional(text),
  mountIndex: v.optional(count),
});
export type HeldFields = Omit<HeldResource, 'release' | 'lease'>;

export const containerRecordSchema = v.object({
  id: text,
  rootfsPath: text,
  layers: v.optional(layersSchema),
  /** Rootfs leases in acquisition order: the lease record and what it is for. */
  held: v.array(v.object({ record: v.pipe(count, v.minValue(1)), fields: heldFieldsSchema })),
  mounts: v.array(
    v.object({
      index: count,
      planned: plannedMountSchema,
      mount: ociMountSchema,
      containerEntry: v.optional(containerEntrySchema),
      /** The lease record behind it (device mounts only). */
      record: v.optional(v.pipe(count, v.minValue(1))),
    }),
  ),
  nextMountIndex: count,
});

/** A container record as journaled and as read back (validated, typed). */
export type ContainerRecord = v.InferOutput<typeof containerRecordSchema>;

// Compile-time checks that what the schemas produce is what the containers module takes.
const _types = (r: ContainerRecord): [PlannedMount, OciMount, ContainerEntry | undefined, ComposedLayersInfo | undefined, HeldFields] => [
  r.mounts[0]!.planned,
  r.mounts[0]!.mount,
  r.mounts[0]!.containerEntry,
  r.layers,
  r.held[0]!.fields,
];
void _types;

/**
 * The container record of `snapshot`; `recordOf` names the lease record behind a held resource
 * (undefined: not journaled, left out). Built from the containers module's types, which the
 * compiler checks against the schema (no validation on this hot path: the record is validated
 * when it is read back).
 */
export function encodeContainer(
  snapshot: ContainerResourcesSnapshot,
  recordOf: (held: HeldResource) => number | undefined,
): ContainerRecord {
  const held: ContainerRecord['held'] = [];
  for (const h of snapshot.held) {
    const record = recordOf(h);
    if (record === undefined) continue;
    held.push({ record, fields: { kind: h.kind, source: h.source, hostPath: h.hostPath, guestPath: h.guestPath, destination: h.destination, mountIndex: h.mountIndex } });
  }
  return {
    id: snapshot.containerId,
    rootfsPath: snapshot.rootfsPath,
    layers: snapshot.layers,
    held,
    mounts: snapshot.mounts.map((m) => ({
      index: m.index,
      planned: m.planned,
      mount: m.mount,
      containerEntry: m.containerEntry,
      record: m.held ? recordOf(m.held) : undefined,
    })),
    nextMountIndex: snapshot.nextMountIndex,
  };
}

/** Journal codec of SCSI leases (`ScsiManager.acquire`: `ScsiDiskRequest` → `ScsiDisk`). */
import * as v from 'valibot';
import type { ScsiDisk, ScsiDiskRequest } from '../../devices/device-types.js';
import { count, plain, text, type LeaseCodec } from './codec.js';

const attachType = v.picklist(['VirtualDisk', 'PassThru', 'ExtensibleVirtualDisk']);

export const scsiMountSchema = v.object({
  partition: v.optional(count),
  encrypted: v.optional(v.boolean()),
  options: v.optional(v.array(v.string())),
  ensureFilesystem: v.optional(v.boolean()),
  filesystem: v.optional(v.string()),
  blockDev: v.optional(v.boolean()),
});

export const scsiRequestSchema = v.object({
  hostPath: text,
  type: v.optional(attachType),
  readOnly: v.boolean(),
  grantVmAccess: v.optional(v.boolean()),
  mount: v.optional(scsiMountSchema),
  guestPath: v.optional(text),
});

const scsiValueSchema = v.object({
  controller: count,
  lun: count,
  hostPath: text,
  readOnly: v.boolean(),
  type: attachType,
  guestPath: v.optional(text),
});

export const scsiCodec: LeaseCodec<ScsiDiskRequest, ScsiDisk> = {
  schema: v.pipe(
    v.object({ request: scsiRequestSchema, value: scsiValueSchema }),
    v.transform(({ request, value }) => ({ request, value: { ...value, guestPath: value.guestPath } })),
  ),
  encode: (r, d) => ({
    request: plain({ hostPath: r.hostPath, type: r.type, readOnly: r.readOnly, grantVmAccess: r.grantVmAccess, mount: r.mount, guestPath: r.guestPath }),
    value: plain({ controller: d.controller, lun: d.lun, hostPath: d.hostPath, readOnly: d.readOnly, type: d.type, guestPath: d.guestPath }),
  }),
};

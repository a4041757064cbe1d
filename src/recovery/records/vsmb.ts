/** Journal codec of VSMB leases (`VsmbManager.acquire`: `VsmbShareRequest` → `VsmbShare`). */
import * as v from 'valibot';
import type { VsmbShare, VsmbShareRequest } from '../../devices/device-types.js';
import { plain, text, type LeaseCodec } from './codec.js';

export const vsmbRequestSchema = v.object({ hostPath: text, readOnly: v.boolean(), layer: v.optional(v.boolean()) });

export const vsmbCodec: LeaseCodec<VsmbShareRequest, VsmbShare> = {
  schema: v.object({
    request: vsmbRequestSchema,
    value: v.object({ name: v.pipe(text, v.regex(/^s[0-9a-f]+$/)), hostPath: text, readOnly: v.boolean(), sharePath: text, guestPath: text }),
  }),
  encode: (r, s) => ({
    request: plain({ hostPath: r.hostPath, readOnly: r.readOnly, layer: r.layer }),
    value: plain({ name: s.name, hostPath: s.hostPath, readOnly: s.readOnly, sharePath: s.sharePath, guestPath: s.guestPath }),
  }),
};

/** True when the lease is one file of a restricted (single-file) share. */
export function isRestrictedFile(share: VsmbShare): boolean {
  return share.guestPath !== share.sharePath;
}

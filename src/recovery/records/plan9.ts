/** Journal codec of Plan9 leases (`Plan9Manager.acquire`: `Plan9ShareRequest` → `Plan9Share`). */
import * as v from 'valibot';
import type { Plan9Share, Plan9ShareRequest } from '../../devices/device-types.js';
import { plain, text, type LeaseCodec } from './codec.js';

export const plan9RequestSchema = v.object({ hostPath: text, readOnly: v.boolean() });

export const plan9Codec: LeaseCodec<Plan9ShareRequest, Plan9Share> = {
  schema: v.object({
    request: plan9RequestSchema,
    value: v.object({ name: text, hostPath: text, readOnly: v.boolean(), mountPath: text, guestPath: text }),
  }),
  encode: (r, s) => ({
    request: plain({ hostPath: r.hostPath, readOnly: r.readOnly }),
    value: plain({ name: s.name, hostPath: s.hostPath, readOnly: s.readOnly, mountPath: s.mountPath, guestPath: s.guestPath }),
  }),
};

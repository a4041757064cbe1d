/** Journal codec of VPMEM leases (`VpmemManager.acquire`: `VpmemLayerRequest` → `VpmemLayer`). */
import * as v from 'valibot';
import type { VpmemLayer, VpmemLayerRequest } from '../../devices/device-types.js';
import { count, plain, text, type LeaseCodec } from './codec.js';

export const vpmemRequestSchema = v.object({ hostPath: text });

export const vpmemCodec: LeaseCodec<VpmemLayerRequest, VpmemLayer> = {
  schema: v.object({
    request: vpmemRequestSchema,
    value: v.object({
      device: count,
      offset: v.optional(count),
      size: v.optional(v.pipe(count, v.minValue(1))),
      hostPath: text,
      guestPath: text,
    }),
  }),
  encode: (r, l) => ({
    request: plain({ hostPath: r.hostPath }),
    value: plain({ device: l.device, offset: l.offset, size: l.size, hostPath: l.hostPath, guestPath: l.guestPath }),
  }),
};

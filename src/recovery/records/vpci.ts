/** Journal codec of assigned-device leases (`VpciManager.acquire`: `VpciDeviceRequest` → `VpciDevice`). */
import * as v from 'valibot';
import type { VpciDevice, VpciDeviceRequest } from '../../devices/vpci-manager.js';
import { count, plain, text, type LeaseCodec } from './codec.js';

const virtualFunction = v.pipe(count, v.maxValue(0xffff));

export const vpciRequestSchema = v.object({
  instancePath: text,
  virtualFunction: v.optional(virtualFunction),
  propagateNumaAffinity: v.optional(v.boolean()),
});

export const vpciCodec: LeaseCodec<VpciDeviceRequest, VpciDevice> = {
  schema: v.object({
    request: vpciRequestSchema,
    value: v.object({ instancePath: text, virtualFunction, vmbusGuid: v.pipe(v.string(), v.uuid()), boot: v.boolean() }),
  }),
  encode: (r, d) => ({
    request: plain({ instancePath: r.instancePath, virtualFunction: r.virtualFunction, propagateNumaAffinity: r.propagateNumaAffinity }),
    value: plain({ instancePath: d.instancePath, virtualFunction: d.virtualFunction, vmbusGuid: d.vmbusGuid, boot: d.boot }),
  }),
};

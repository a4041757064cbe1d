/** Journal codec of mapped pipe leases (`PipeManager.acquire`: `{hostPath}` → `MappedPipe`). */
import * as v from 'valibot';
import type { MappedPipe } from '../../devices/device-types.js';
import { plain, text, type LeaseCodec } from './codec.js';

export const pipeRequestSchema = v.object({ hostPath: text });

export const pipeCodec: LeaseCodec<{ hostPath: string }, MappedPipe> = {
  schema: v.object({ request: pipeRequestSchema, value: v.object({ hostPath: text, guestPath: text }) }),
  encode: (r, p) => ({ request: plain({ hostPath: r.hostPath }), value: plain({ hostPath: p.hostPath, guestPath: p.guestPath }) }),
};

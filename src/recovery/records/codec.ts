/**
 * What a journal record codec is: the schema of one record kind's journaled form, and the
 * conversion from and to the manager's types. Each device's codec lives in its own module
 * (scsi.ts, vsmb.ts, …): a manager's internal types are never stored verbatim, and a record read
 * back is validated field by field (docs/recovery.md "Format").
 */
import * as v from 'valibot';
import type { JsonObject } from '../journal-format.js';

/** Non-empty string. */
export const text = v.pipe(v.string(), v.minLength(1));
/** Integer ≥ 0. */
export const count = v.pipe(v.number(), v.integer(), v.minValue(0));

export interface LeaseCodec<R, V> {
  /** The schema of `{ request, value }` as journaled. */
  readonly schema: v.GenericSchema<unknown, { request: R; value: V }>;
  /** The journaled form of an acquired lease (only the fields recovery needs, as plain JSON). */
  encode(request: R, value: V): { request: JsonObject; value: JsonObject };
}

/** Plain JSON of `o` without its undefined fields. */
export function plain(o: object): JsonObject {
  return JSON.parse(JSON.stringify(o)) as JsonObject;
}

/** Decodes `{request, value}` with `codec` (throws valibot's error naming the field). */
export function decodeLease<R, V>(codec: LeaseCodec<R, V>, raw: { request: unknown; value: unknown }): { request: R; value: V } {
  return v.parse(codec.schema, raw);
}

/**
 * What a journal record codec is: the schema of one record kind's journaled form, and the
 * conversion from and to the manager's types. Each device's codec lives in its own module
 * (scsi.ts, vsmb.ts, …): a manager's internal types are never stored verbatim, and a record read
 * back is validated field by field (docs/recovery.md "Format").
 */
import * as v from 'valibot';
import { setOwn } from '../../core/plain-copy.js';
import type { JsonObject, JsonValue } from '../journal-format.js';

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

/**
 * Plain JSON of `o` without its undefined fields: what `JSON.parse(JSON.stringify(o))` gives for
 * the plain data records carry, copied directly (it runs for every journaled lease).
 */
export function plain(o: object): JsonObject {
  return jsonCopy(o) as JsonObject;
}

function jsonCopy(value: unknown): JsonValue | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) ? value : null;
    case 'object': {
      if (value === null) return null;
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return JSON.parse(JSON.stringify(value)) as JsonValue;
      if (Array.isArray(value)) return value.map((item) => jsonCopy(item) ?? null);
      const out: { [key: string]: JsonValue } = {};
      // (for…in over own keys: Object.entries would allocate a pair per field, for every lease.)
      for (const key in value) {
        if (!Object.hasOwn(value, key)) continue;
        const copy = jsonCopy((value as Record<string, unknown>)[key]);
        if (copy !== undefined) setOwn(out, key, copy);
      }
      return out;
    }
    default:
      // undefined, functions and symbols are dropped (as JSON.stringify does); a bigint throws there too.
      if (typeof value === 'bigint') throw new TypeError('a journal record cannot hold a bigint');
      return undefined;
  }
}

/** Decodes `{request, value}` with `codec` (throws valibot's error naming the field). */
export function decodeLease<R, V>(codec: LeaseCodec<R, V>, raw: { request: unknown; value: unknown }): { request: R; value: V } {
  return v.parse(codec.schema, raw);
}

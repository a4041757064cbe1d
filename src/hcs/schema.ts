/**
 * HCS wire documents (schema v2) that the managers send. Field names and shapes follow
 * hcsshim's Go structs; every field is optional and omitted when empty ("omitempty").
 */
import { setOwn } from '../core/plain-copy.js';

/** `RequestType` of a host ModifySettingRequest or a guest ModificationRequest. */
export type RequestType = 'Add' | 'Remove' | 'Update';

/** Guest resource types the managers send inside a `GuestRequest`. */
export type GuestResourceType =
  | 'MappedVirtualDisk'
  | 'SCSIDevice'
  | 'VPMemDevice'
  | 'MappedDirectory'
  | 'CombinedLayers'
  | 'VPCIDevice'
  /** WCOW: the GCS's hvsocket addresses, sent once after the bridge handshake. */
  | 'HvSocket';

/** A request forwarded to the guest agent (GCS). */
export interface GuestRequest {
  RequestType: RequestType;
  ResourceType: GuestResourceType;
  Settings?: Record<string, unknown>;
}

/** The document passed to `HcsModifyComputeSystem`. */
export interface ModifySettingRequest {
  ResourcePath?: string;
  RequestType?: RequestType;
  Settings?: Record<string, unknown>;
  GuestRequest?: GuestRequest;
}

/** `{"Error": hr, "ErrorMessage": ..., "ErrorEvents": [...]}`: what HCS returns on failure. */
export interface HcsResultError {
  Error?: number;
  ErrorMessage?: string;
  ErrorEvents?: HcsErrorEvent[];
}

/** One event of an HCS result document (the detail of a failure). */
export interface HcsErrorEvent {
  Message?: string;
  StackTrace?: string;
  Provider?: string;
  EventId?: number;
  Flags?: number;
  Source?: string;
  Data?: unknown;
}

/**
 * Removes `undefined`, `false`, `0`, `""`, empty arrays and empty objects from a document, the way
 * Go's `omitempty` does, recursively. Wire documents are always built as objects and passed
 * through this and `JSON.stringify`, never assembled from strings.
 */
export function omitEmpty<T>(value: T): T {
  if (Array.isArray(value)) {
    return value.map(omitEmptyItem) as unknown as T;
  }
  if (value !== null && typeof value === 'object') {
    // for…in over own keys and no Object.entries / Object.keys arrays: this runs for every
    // document the managers send (allocation-free apart from the result).
    const out: Record<string, unknown> = {};
    const source = value as Record<string, unknown>;
    for (const k in source) {
      if (!Object.hasOwn(source, k)) continue;
      const cleaned = omitEmpty(source[k]);
      if (isEmpty(cleaned)) continue;
      setOwn(out, k, cleaned);
    }
    return out as T;
  }
  return value;
}

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') {
    for (const k in v) if (Object.hasOwn(v, k)) return false;
    return true;
  }
  return false;
}

/** `omitEmpty` of one array item (a module function, not a closure per array: docs/performance.md, "Session 11"). */
function omitEmptyItem(item: unknown): unknown {
  return omitEmpty(item);
}

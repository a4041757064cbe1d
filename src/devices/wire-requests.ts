import { omitEmpty, type GuestRequest, type GuestResourceType, type ModifySettingRequest, type RequestType } from '../hcs/schema.js';

/** The host half of a resource change: always has a ResourcePath, never a GuestRequest. */
export interface HostRequest {
  ResourcePath: string;
  RequestType: RequestType;
  Settings?: Record<string, unknown>;
}

/**
 * Builds a host request. `Settings` go through `omitEmpty` (Go's omitempty on the settings
 * struct's fields); absent settings are left out entirely.
 */
export function hostRequest(resourcePath: string, requestType: RequestType, settings?: Record<string, unknown>): HostRequest {
  const req: HostRequest = { ResourcePath: resourcePath, RequestType: requestType };
  if (settings !== undefined) req.Settings = omitEmpty(settings);
  return req;
}

/**
 * Builds a guest request. Zero-valued settings fields are omitted; the `Settings` object itself is
 * kept even when it ends up empty, as Go does for a struct value in an `interface{}` field
 * (e.g. an unplug of controller 0 LUN 0 is `"Settings":{}`).
 */
export function guestRequest(requestType: RequestType, resourceType: GuestResourceType, settings: Record<string, unknown>): GuestRequest {
  return { RequestType: requestType, ResourceType: resourceType, Settings: omitEmpty(settings) };
}

/** The same host request with another RequestType (the compensation of an Add). */
export function withRequestType(req: HostRequest, requestType: RequestType): HostRequest {
  // Field by field (as below): a spread followed by another property takes V8's slow path.
  const out: HostRequest = { ResourcePath: req.ResourcePath, RequestType: requestType };
  if (req.Settings !== undefined) out.Settings = req.Settings;
  return out;
}

/** A host request and a guest request in one `HcsModifyComputeSystem` document. */
export function combinedRequest(host: HostRequest, guest: GuestRequest): ModifySettingRequest {
  const out: ModifySettingRequest = withRequestType(host, host.RequestType);
  out.GuestRequest = guest;
  return out;
}

import type { Lease } from '../core/lease.js';
import type { Releasable } from '../core/release-stack.js';

/** What a held resource is for in a container. */
export type HeldResourceKind = 'layer' | 'scratch' | 'combined-layers' | 'root-share' | 'mount' | 'device';

/** Which manager (or the guest, for CombinedLayers) the lease came from. */
export type HeldResourceSource = 'scsi' | 'vpmem' | 'vsmb' | 'plan9' | 'pipe' | 'guest' | 'vpci';

/**
 * One lease a container holds, with what it is for. Releasing it releases the lease (idempotent,
 * retryable, as every Lease).
 */
export interface HeldResource extends Releasable {
  readonly kind: HeldResourceKind;
  readonly source: HeldResourceSource;
  readonly hostPath?: string;
  readonly guestPath?: string;
  /** Mounts: the container destination and the index the mount was planned with. */
  readonly destination?: string;
  readonly mountIndex?: number;
  readonly lease: Lease<unknown>;
}

/** Builds a HeldResource around `lease`. */
export function heldResource(fields: Omit<HeldResource, 'release'>): HeldResource {
  // Copied key by key (no entries arrays): every lease of every container goes through here.
  const held: Record<string, unknown> = {};
  for (const key in fields) {
    const value = (fields as unknown as Record<string, unknown>)[key];
    if (value !== undefined) held[key] = value;
  }
  const lease = fields.lease;
  held.release = () => lease.release();
  return held as unknown as HeldResource;
}

/**
 * Teardown phase of a held resource: the guest overlay (CombinedLayers) goes first, because the
 * scratch and the read-only layers are under it; then everything else at once — the scratch and
 * the layers, the mounts, the root share, assigned devices. Nothing orders those among themselves
 * (hcsshim releases mounts and devices after the layers, one after the other, but no guest or host
 * state depends on that order), so a container's teardown is the overlay's Remove and then one
 * round of removals, in which the longest is a disk's unmount → unplug → detach: the four calls of
 * the critical chain, not more (a mount in the first round would add its own removal chain to it).
 */
export function teardownPhase(resource: HeldResource): number {
  return resource.kind === 'combined-layers' ? 0 : 1;
}

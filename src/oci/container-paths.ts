/**
 * Container-level guest path formats and OCI source/destination prefixes (spec §6.1). Device paths
 * (`/run/mounts/scsi/m<i>`, `/run/layers/p<n>`, `/run/mounts/plan9/<name>`, VSMB share paths) are
 * in `src/devices/guest-paths.ts` and come back in the managers' leases; this module adds only what
 * belongs to a container. Separators follow the guest OS (`guestPaths.join`).
 */
import type { GuestOs } from '../devices/device-types.js';
import { guestPaths } from '../devices/guest-paths.js';
import { UvmError, type UvmErrorDetails } from '../core/errors.js';

/** `/run/gcs/c`: LCOW container roots are `/run/gcs/c/<containerId>`. */
export const LCOW_ROOT_PREFIX = '/run/gcs/c';
/** `C:\SandboxMounts`: where WCOW `sandbox://` mounts land. */
export const WCOW_SANDBOX_MOUNT_PATH = 'C:\\SandboxMounts';
export const SANDBOX_MOUNT_PREFIX = 'sandbox://';
export const SANDBOX_TMPFS_MOUNT_PREFIX = 'sandbox-tmp://';
export const HUGEPAGES_MOUNT_PREFIX = 'hugepages://';
/** On the mount **destination** (LCOW): expose the block device itself. */
export const BLOCKDEV_MOUNT_PREFIX = 'blockdev://';
export const UVM_MOUNT_PREFIX = 'uvm://';
/** Windows named pipes: `\\.\pipe\<name>`. */
export const PIPE_PREFIX = '\\\\.\\pipe\\';
/** Directory names under a container root. */
export const ROOTFS_DIR = 'rootfs';
export const SCRATCH_DIR = 'scratch';

/** Joins guest path segments with the guest OS's separator. */
export function joinGuest(os: GuestOs, first: string, ...rest: string[]): string {
  return guestPaths.join(os, first, ...rest);
}

/** `/run/gcs/c/<containerId>`: the LCOW container root, also where its scratch disk is mounted. */
export function lcowContainerRoot(containerId: string): string {
  return joinGuest('linux', LCOW_ROOT_PREFIX, containerId);
}

/** `/run/gcs/c/<containerId>/rootfs`: where the guest composes the LCOW overlay. */
export function lcowRootfsPath(containerId: string): string {
  return joinGuest('linux', lcowContainerRoot(containerId), ROOTFS_DIR);
}

/** `<scratch mount>/scratch/<containerId>`: per-container upper/work dir (unique even when the scratch is shared). */
export function lcowScratchDir(scratchMountPath: string, containerId: string): string {
  return joinGuest('linux', scratchMountPath, SCRATCH_DIR, containerId);
}

/** `C:\SandboxMounts\<rest>` for a WCOW `sandbox://<rest>` source. */
export function wcowSandboxMountPath(rest: string): string {
  return joinGuest('windows', WCOW_SANDBOX_MOUNT_PATH, rest);
}

/** `\\.\pipe\<podId>\<name>`: a pipe inside the UVM; podId is the UVM id without a trailing `@vm`. */
export function uvmPipePath(uvmId: string, pipeName: string): string {
  const podId = uvmId.endsWith('@vm') ? uvmId.slice(0, -3) : uvmId;
  return `${PIPE_PREFIX}${podId}\\${pipeName}`;
}

/** True for `\\.\pipe\<name>` (case-insensitive prefix). */
export function isPipePath(path: string): boolean {
  return path.toLowerCase().startsWith(PIPE_PREFIX.toLowerCase()) && path.length > PIPE_PREFIX.length;
}

/** True when a path, split on `/` and `\`, has a `..` component. */
export function hasTraversal(path: string): boolean {
  return path.split(/[\\/]+/).includes('..');
}

/**
 * Runs `fn`; a UvmError it throws gets `details` merged into its own details (same error object,
 * same class and code), so e.g. a path validation error names the mount it came from.
 */
export function withErrorDetails<T>(details: UvmErrorDetails, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw addErrorDetails(err, details);
  }
}

/** Merges `details` into a UvmError's (or UvmAggregateError's) details and returns it; other values unchanged. */
export function addErrorDetails(err: unknown, details: UvmErrorDetails): unknown {
  if (UvmError.is(err)) Object.assign(err.details, details);
  return err;
}

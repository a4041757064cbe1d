/**
 * OCI mount conversion, planning half (spec §6.2 LCOW, §6.3 WCOW; habit H17). `planMounts` turns
 * `spec.mounts` into a list of planned mounts, one per entry and in the same order, without
 * acquiring anything: its only I/O is `stat` through the injected HostFs. `applyMountPlan`
 * (mount-applier.ts) acquires the planned devices and rewrites the mounts.
 *
 * Every error carries `details.mountIndex`:
 * - INVALID_SPEC: a mount that is malformed or unsupported (missing source/destination, a type the
 *   OS does not take, a bad `hugepages://` source, an unsupported `uvm://` source, a pipe mismatch).
 * - INVALID_ARGUMENT: a bad path (relative/empty host path, NUL, `..` in a destination or guest source).
 * - NOT_FOUND: a bind source that does not exist on the host.
 * - ACCESS_DENIED: a writable file share on a UVM that denies them.
 */
import { invalidArgument, UvmError, type UvmErrorDetails } from '../core/errors.js';
import type { HostFs } from '../core/host-fs.js';
import type {
  GuestOs,
  Plan9ShareRequest,
  ScsiAttachType,
  ScsiDiskRequest,
  UvmFacts,
  VsmbShareRequest,
} from '../devices/device-types.js';
import { validate } from '../devices/validation.js';
import { validateContainerId } from '../containers/container-id.js';
import {
  BLOCKDEV_MOUNT_PREFIX,
  HUGEPAGES_MOUNT_PREFIX,
  PIPE_PREFIX,
  SANDBOX_MOUNT_PREFIX,
  SANDBOX_TMPFS_MOUNT_PREFIX,
  UVM_MOUNT_PREFIX,
  addErrorDetails,
  hasTraversal,
  isPipePath,
  uvmPipePath,
  wcowSandboxMountPath,
} from './container-paths.js';
import { isReadOnlyMount, type OciMount, type OciSpec } from './oci-spec.js';
import { checkOciMount } from './spec-schema.js';

/** The only supported hugepage size. */
export const HUGEPAGE_SIZE = '2M';

/** The mount types that name a host disk, and how each is attached. */
export const DISK_MOUNT_TYPES: Readonly<Record<string, ScsiAttachType>> = Object.freeze({
  'physical-disk': 'PassThru',
  'virtual-disk': 'VirtualDisk',
  'extensible-virtual-disk': 'ExtensibleVirtualDisk',
});

/** How a mount `type` is attached as a disk; undefined when it is not a disk type (own members only: never `constructor`, `__proto__`…). */
function diskAttachType(type: string): ScsiAttachType | undefined {
  return Object.hasOwn(DISK_MOUNT_TYPES, type) ? DISK_MOUNT_TYPES[type] : undefined;
}

/** What the shim's WCOW container document needs for a mount (the applier builds the entry). */
export type ContainerEntryKind = 'mapped-directory' | 'mapped-pipe';

/** What every planned mount has. */
export interface PlannedBase {
  /** Index in `spec.mounts` (or the hot-add index). */
  index: number;
  /** The mount as given. */
  mount: OciMount;
}

/** Left exactly as given: not a host mount (LCOW tmpfs, proc, empty type…), or a source the guest resolves. */
export interface KeptMount extends PlannedBase {
  kind: 'keep';
  reason: 'not-a-host-mount' | 'guest-source';
}

/** Rewritten to a path inside the UVM with no host resource (WCOW `sandbox://`, UVM pipes). */
export interface GuestSourceMount extends PlannedBase {
  kind: 'guest';
  source: string;
  readOnly: boolean;
  containerEntry: ContainerEntryKind;
}

/** The requests each device manager takes. */
export interface DeviceRequests {
  scsi: ScsiDiskRequest;
  plan9: Plan9ShareRequest;
  vsmb: VsmbShareRequest;
  pipe: { hostPath: string };
}
/** The device manager a mount is attached through. */
export type MountDevice = keyof DeviceRequests;

/** What every device mount has. */
export interface DeviceMountBase extends PlannedBase {
  kind: 'device';
  readOnly: boolean;
  /** The rewritten mount's `type` (undefined: the field is removed). */
  rewriteType: string | undefined;
  containerEntry?: ContainerEntryKind;
  /** For shares: what the host path is. */
  hostKind?: 'file' | 'directory';
}

/** Attached through one device manager; the rewritten source is the lease's guest path. */
export type DeviceMount = { [D in MountDevice]: DeviceMountBase & { device: D; request: DeviceRequests[D] } }[MountDevice];

/** One planned OCI mount: kept as given, rewritten to a guest path, or attached through a device manager. */
export type PlannedMount = KeptMount | GuestSourceMount | DeviceMount;

/**
 * Plans every mount of `spec` for a UVM with `facts`. Pure apart from `hostFs.stat` of bind sources.
 * @param containerId validated (a plain name); planned paths do not depend on it, since shares
 *   and disks are mounted where their managers put them.
 */
export async function planMounts(
  spec: OciSpec,
  facts: UvmFacts,
  containerId: string,
  hostFs: HostFs,
  /** True when `checkOciSpec(spec)` passed (its mounts are well typed: not checked again one by one). */
  specChecked = false,
): Promise<PlannedMount[]> {
  validateContainerId(containerId);
  const mounts = spec.mounts ?? [];
  if (!Array.isArray(mounts)) throw new UvmError('INVALID_SPEC', 'mounts must be an array', { details: { field: 'mounts' } });
  const planned: PlannedMount[] = [];
  const seen = new Map<string, number>();
  // Every mount's stat at once; then in spec order, so the first bad mount is reported as before.
  const plans = await Promise.allSettled(mounts.map((mount, index) => planMount(mount, index, facts, hostFs, specChecked)));
  for (const [index, plan] of plans.entries()) {
    if (plan.status === 'rejected') throw plan.reason;
    const plannedMount = plan.value;
    const first = seen.get(plannedMount.mount.destination);
    if (first !== undefined) {
      throw new UvmError('MOUNT_CONFLICT', `mounts[${first}] and mounts[${index}] have the same destination ${plannedMount.mount.destination}`, {
        details: { field: `mounts[${index}].destination`, mountIndex: index, destination: plannedMount.mount.destination, otherMountIndex: first },
      });
    }
    seen.set(plannedMount.mount.destination, index);
    planned.push(plannedMount);
  }
  return planned;
}

/** Plans one mount (also used for hot add). */
export async function planMount(mount: OciMount, index: number, facts: UvmFacts, hostFs: HostFs, checked = false): Promise<PlannedMount> {
  const details = { mountIndex: index, destination: (mount as Partial<OciMount> | null)?.destination };
  try {
    if (mount === null || typeof mount !== 'object') throw invalidSpec('a mount must be an object', details);
    if (!checked) checkOciMount(mount, index);
    checkDestination(mount.destination, facts.os, index);
    const rules = facts.os === 'linux' ? LCOW_RULES : WCOW_RULES;
    return await rules(mount, index, facts, hostFs);
  } catch (err) {
    if (UvmError.is(err) && err.details.field === undefined) err.details.field = `mounts[${index}]`;
    throw addErrorDetails(err, details);
  }
}

type PlanRules = (mount: OciMount, index: number, facts: UvmFacts, hostFs: HostFs) => Promise<PlannedMount>;

function invalidSpec(message: string, details: UvmErrorDetails = {}): UvmError {
  return new UvmError('INVALID_SPEC', message, { details });
}

function badPath(message: string): UvmError {
  return new UvmError('INVALID_ARGUMENT', message);
}

/** Both source and destination are non-empty strings (the destination is checked by `checkDestination`). */
function requireEnds(mount: OciMount): { source: string; destination: string } {
  const { source, destination } = mount;
  if (typeof source !== 'string' || source === '' || destination === '') {
    throw invalidSpec('invalid OCI spec - a mount must have both source and a destination');
  }
  return { source, destination };
}

/**
 * A destination has no NUL and no `..`, and is absolute in the guest's flavour: LCOW `/x` (or a
 * `blockdev://` destination), WCOW `C:\x` or a `\\.\pipe\` path. Empty is left to `requireEnds`.
 */
function checkDestination(destination: string, os: GuestOs, index: number): void {
  const field = { field: `mounts[${index}].destination` };
  if (destination.includes('\0')) throw invalidArgument(`mount destination contains a NUL character`, field);
  if (hasTraversal(destination)) throw invalidArgument(`mount destination must not contain "..": ${destination}`, field);
  if (destination === '') return;
  const absolute =
    os === 'linux'
      ? destination.startsWith('/') || destination.startsWith(BLOCKDEV_MOUNT_PREFIX)
      : /^[A-Za-z]:[\\/]/.test(destination) || isPipePath(destination);
  if (!absolute) {
    throw invalidArgument(`mount destination must be an absolute ${os === 'linux' ? 'Linux' : 'Windows'} path: ${destination}`, field);
  }
}

/** A guest-resolved source (`sandbox://x`, `uvm://x`, …): the rest must not climb out with `..`. */
function checkGuestSource(source: string, prefix: string): string {
  const rest = source.slice(prefix.length);
  if (rest.includes('\0') || hasTraversal(rest)) throw badPath(`mount source must not contain "..": ${source}`);
  return rest;
}

/**
 * `[evd://]<type>/<path>`: INVALID_ARGUMENT unless both parts are present. The `evd://` prefix is
 * optional, as in hcsshim (it strips the prefix when present and splits at the first `/`).
 */
function checkEvdSource(source: string): string {
  const rest = source.startsWith('evd://') ? source.slice('evd://'.length) : source;
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) {
    throw badPath(`invalid extensible virtual disk source, expected evd://<type>/<path>: ${source}`);
  }
  return source;
}

function diskRequest(os: GuestOs, mount: OciMount, source: string, readOnly: boolean, blockDev: boolean): ScsiDiskRequest {
  const type = diskAttachType(mount.type ?? '')!;
  const hostPath = type === 'ExtensibleVirtualDisk' ? checkEvdSource(source) : validate.hostPath(source, 'disk mount source');
  return {
    hostPath,
    type,
    readOnly,
    // The UVM is granted access to disks the container names; never to EVDs (spec §0.4).
    grantVmAccess: type !== 'ExtensibleVirtualDisk',
    mount: os === 'linux' ? diskMountOptions(mount.options, blockDev) : {},
  };
}

/** A Linux disk mount's options: the OCI options (when any) and `blockDev`, field by field. */
function diskMountOptions(options: string[] | undefined, blockDev: boolean): { options?: string[]; blockDev?: boolean } {
  const out: { options?: string[]; blockDev?: boolean } = {};
  if (options?.length) out.options = [...options];
  if (blockDev) out.blockDev = true;
  return out;
}

/** Stats a host share source; a writable share on a UVM that denies them is ACCESS_DENIED. */
async function shareSource(source: string, readOnly: boolean, facts: UvmFacts, hostFs: HostFs): Promise<'file' | 'directory'> {
  validate.hostPath(source, 'mount source');
  const st = await hostFs.stat(source);
  if (!st.isFile && !st.isDirectory) throw badPath(`mount source is neither a file nor a directory: ${source}`);
  if (!readOnly && facts.noWritableFileShares) {
    throw new UvmError('ACCESS_DENIED', `writable file shares are denied on UVM ${facts.id}`, { details: { hostPath: source } });
  }
  return st.isFile ? 'file' : 'directory';
}

/** LCOW bind sources the guest resolves (kept as given). */
const LCOW_GUEST_SOURCE_PREFIXES = [SANDBOX_MOUNT_PREFIX, SANDBOX_TMPFS_MOUNT_PREFIX, UVM_MOUNT_PREFIX] as const;

/** Spec §6.2. */
const LCOW_RULES: PlanRules = async (mount, index, facts, hostFs) => {
  const type = mount.type ?? '';
  if (type !== 'bind' && diskAttachType(type) === undefined) return { kind: 'keep', index, mount, reason: 'not-a-host-mount' };
  const { source, destination } = requireEnds(mount);
  const readOnly = isReadOnlyMount(mount);
  const blockDev = destination.startsWith(BLOCKDEV_MOUNT_PREFIX);
  if (diskAttachType(type) !== undefined) {
    return {
      kind: 'device',
      device: 'scsi',
      index,
      mount,
      readOnly,
      request: diskRequest('linux', mount, source, readOnly, blockDev),
      rewriteType: blockDev ? 'bind' : 'none',
    };
  }
  if (blockDev) throw invalidSpec(`a ${BLOCKDEV_MOUNT_PREFIX} destination needs a disk mount type, got ${type}`);
  for (const prefix of LCOW_GUEST_SOURCE_PREFIXES) {
    if (source.startsWith(prefix)) {
      checkGuestSource(source, prefix);
      return { kind: 'keep', index, mount, reason: 'guest-source' };
    }
  }
  if (source.startsWith(HUGEPAGES_MOUNT_PREFIX)) {
    const parts = checkGuestSource(source, HUGEPAGES_MOUNT_PREFIX).split('/');
    if (parts.length < 2) {
      throw invalidSpec(`${source} mount path is invalid, expected format: hugepages://<hugepage-size>/<hugepage-src-location>`);
    }
    if (parts[0] !== HUGEPAGE_SIZE) throw invalidSpec(`only ${HUGEPAGE_SIZE} (megabytes) pagesize is supported, got ${parts[0]}`);
    return { kind: 'keep', index, mount, reason: 'guest-source' };
  }
  const hostKind = await shareSource(source, readOnly, facts, hostFs);
  return {
    kind: 'device',
    device: 'plan9',
    index,
    mount,
    readOnly,
    hostKind,
    request: { hostPath: source, readOnly },
    rewriteType: type,
  };
};

/** Mount types a Hyper-V WCOW container takes (`""` = a directory mapping). */
const WCOW_TYPES = new Set(['', ...Object.keys(DISK_MOUNT_TYPES)]);

/** Spec §6.3. */
const WCOW_RULES: PlanRules = async (mount, index, facts, hostFs) => {
  const type = mount.type ?? '';
  const { source, destination } = requireEnds(mount);
  if (!WCOW_TYPES.has(type)) throw invalidSpec(`invalid OCI spec - Type '${type}' not supported`, { field: `mounts[${index}].type` });
  const readOnly = isReadOnlyMount(mount);
  if (type !== '') {
    return {
      kind: 'device',
      device: 'scsi',
      index,
      mount,
      readOnly,
      request: diskRequest('windows', mount, source, readOnly, false),
      rewriteType: undefined,
      containerEntry: 'mapped-directory',
    };
  }
  if (isPipePath(destination)) {
    if (isPipePath(source)) {
      return {
        kind: 'device',
        device: 'pipe',
        index,
        mount,
        readOnly,
        request: { hostPath: source },
        rewriteType: undefined,
        containerEntry: 'mapped-pipe',
      };
    }
    const inUvm = source.startsWith(UVM_MOUNT_PREFIX) ? source.slice(UVM_MOUNT_PREFIX.length) : '';
    if (!isPipePath(inUvm)) throw invalidSpec(`a named pipe mount needs a host pipe or uvm://\\\\.\\pipe\\<name> source: ${source}`);
    const name = checkGuestSource(inUvm.slice(PIPE_PREFIX.length), '');
    return { kind: 'guest', index, mount, readOnly, source: uvmPipePath(facts.id, name), containerEntry: 'mapped-pipe' };
  }
  if (isPipePath(source)) throw invalidSpec(`a named pipe source needs a \\\\.\\pipe\\ destination: ${destination}`);
  if (source.startsWith(SANDBOX_MOUNT_PREFIX)) {
    const rest = checkGuestSource(source, SANDBOX_MOUNT_PREFIX);
    if (rest === '') throw invalidSpec(`a ${SANDBOX_MOUNT_PREFIX} source needs a path: ${source}`);
    return { kind: 'guest', index, mount, readOnly, source: wcowSandboxMountPath(rest), containerEntry: 'mapped-directory' };
  }
  if (source.startsWith(UVM_MOUNT_PREFIX)) throw invalidSpec(`unsupported UVM mount source ${source}`);
  const hostKind = await shareSource(source, readOnly, facts, hostFs);
  return {
    kind: 'device',
    device: 'vsmb',
    index,
    mount,
    readOnly,
    hostKind,
    request: { hostPath: source, readOnly },
    rewriteType: undefined,
    containerEntry: 'mapped-directory',
  };
};

/** SCSI request validation: a `ScsiDiskRequest` becomes an attach config and mount settings, or INVALID_ARGUMENT. */
import { invalidArgument } from '../core/errors.js';
import type { GuestOs, ScsiAttachType, ScsiDiskRequest, ScsiMountConfig } from './device-types.js';
import type { ScsiAttachConfig, ScsiMountSettings } from './scsi-requests.js';
import { validate } from './validation.js';

const ATTACH_TYPES: readonly ScsiAttachType[] = ['VirtualDisk', 'PassThru', 'ExtensibleVirtualDisk'];
const EVD_PREFIX = 'evd://';

/** A validated, normalised SCSI request. */
export interface ParsedScsiRequest {
  attach: ScsiAttachConfig;
  mount?: ScsiMountSettings;
  guestPath?: string;
}

/** Validates and normalises a request; throws INVALID_ARGUMENT before any HCS call. */
export function parseScsiRequest(os: GuestOs, request: ScsiDiskRequest): ParsedScsiRequest {
  if (request === null || typeof request !== 'object') throw invalidArgument('SCSI request must be an object');
  const hostPath = validate.nonEmpty(request.hostPath, 'SCSI host path');
  const readOnly = validate.boolean(request.readOnly, 'readOnly');
  const isEvdPath = hostPath.startsWith(EVD_PREFIX);
  const type = request.type ?? (isEvdPath ? 'ExtensibleVirtualDisk' : 'VirtualDisk');
  if (!ATTACH_TYPES.includes(type)) throw invalidArgument(`unknown SCSI attach type: ${String(type)}`);
  if (request.grantVmAccess !== undefined) validate.boolean(request.grantVmAccess, 'grantVmAccess');
  let attach: ScsiAttachConfig;
  if (type === 'ExtensibleVirtualDisk') {
    attach = { ...parseEvdPath(hostPath), readOnly, type };
  } else {
    if (isEvdPath) throw invalidArgument(`an evd:// path needs type ExtensibleVirtualDisk: ${hostPath}`);
    attach = { path: validate.hostPath(hostPath, 'SCSI host path'), readOnly, type };
  }
  if (request.mount === undefined) {
    if (request.guestPath !== undefined) throw invalidArgument('a SCSI guestPath needs a mount configuration');
    return { attach };
  }
  const guestPath = request.guestPath === undefined ? undefined : validate.guestPath(os, request.guestPath, 'SCSI guest path');
  return { attach, mount: mountSettings(os, request.mount, readOnly), guestPath };
}

function mountSettings(os: GuestOs, cfg: ScsiMountConfig, readOnly: boolean): ScsiMountSettings {
  if (cfg === null || typeof cfg !== 'object') throw invalidArgument('SCSI mount configuration must be an object');
  const options = cfg.options ?? [];
  if (!Array.isArray(options)) throw invalidArgument('mount options must be an array of strings');
  for (const o of options) validate.nonEmpty(o, 'mount option');
  if (cfg.filesystem !== undefined && typeof cfg.filesystem !== 'string') throw invalidArgument('filesystem must be a string');
  if (cfg.filesystem?.includes('\0')) throw invalidArgument('filesystem must not contain NUL characters');
  const settings: ScsiMountSettings = {
    readOnly,
    partition: validate.integer(cfg.partition, 'partition', 0, Number.MAX_SAFE_INTEGER, 0),
    encrypted: validate.boolean(cfg.encrypted, 'encrypted', false),
    options: [...options].sort(),
    ensureFilesystem: validate.boolean(cfg.ensureFilesystem, 'ensureFilesystem', false),
    filesystem: cfg.filesystem ?? '',
    blockDev: validate.boolean(cfg.blockDev, 'blockDev', false),
  };
  if (
    os === 'windows' &&
    (settings.partition !== 0 || settings.encrypted || settings.options.length > 0 || settings.ensureFilesystem || settings.filesystem !== '')
  ) {
    throw invalidArgument(
      'WCOW does not support encrypted, verity, guest options, partitions, specifying mount filesystem, or ensuring filesystem on mounts',
    );
  }
  return settings;
}

/** `evd://<type>/<path>` → `{evdType, path}` (spec §1.3); anything else is INVALID_ARGUMENT. */
export function parseEvdPath(hostPath: string): { evdType: string; path: string } {
  const rest = hostPath.startsWith(EVD_PREFIX) ? hostPath.slice(EVD_PREFIX.length) : hostPath;
  const slash = rest.indexOf('/');
  if (slash <= 0 || slash === rest.length - 1) throw invalidArgument(`invalid extensible vhd path: ${hostPath}`);
  const evdType = rest.slice(0, slash);
  if (/[\\\s]/.test(evdType)) throw invalidArgument(`invalid extensible vhd type in ${hostPath}`);
  return { evdType, path: validate.nonEmpty(rest.slice(slash + 1), 'extensible vhd path') };
}

/**
 * Whether `acquire` grants the UVM access to the file (docs/devices.md "VM access"): as asked by
 * `grantVmAccess`; by default for a writable virtual disk (as hcsshim does for every disk it
 * attaches writable), not for a read-only one, which relies on the VM-group grant of layers, nor
 * for a pass-through or extensible disk.
 */
export function grantsVmAccess(request: Pick<ScsiDiskRequest, 'grantVmAccess' | 'readOnly' | 'type'>): boolean {
  return request.grantVmAccess ?? (!request.readOnly && (request.type ?? 'VirtualDisk') === 'VirtualDisk');
}

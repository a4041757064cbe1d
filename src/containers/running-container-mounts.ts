/**
 * Adding a host directory to a running WCOW container (hcs-real-world.md §5, hcsshim's
 * `updateWCOWContainerMount`): for a Hyper-V container, a VSMB share into the UVM and then the
 * container-level request
 * ```json
 * {"ResourcePath":"Container/MappedDirectories","RequestType":"Add",
 *  "Settings":{"HostPath":"\\\\?\\VMSMB\\VSMB-{…}\\s12","ContainerPath":"C:\\data","ReadOnly":true}}
 * ```
 * sent to the container (its compute system or the shim's GCS bridge: the `container` port); for
 * a process-isolated container the same request with the host path itself (symlinks resolved).
 * Without a `container` port the request is returned for the shim to send.
 *
 * Only WCOW (LCOW: NOT_SUPPORTED, as in both hcsshim shims) and only host directories
 * (INVALID_ARGUMENT otherwise: no `type`, no `sandbox://`, `uvm://`, `hugepages://`, pipes or files).
 *
 * Removal is explicit: `RequestType: "Remove"` with the same settings, sent (or returned) before
 * the share is released. hcsshim has no removal at all; whether HCS and the Windows guest honour a
 * `Container/MappedDirectories` Remove is unverified, so a failed send keeps the share and the mount
 * listed, and the removal can be retried.
 */
import { invalidArgument, UvmError } from '../core/errors.js';
import type { HostFs } from '../core/host-fs.js';
import type { DeviceAcquireOptions, GuestOs } from '../devices/device-types.js';
import type { HcsCallOptions } from '../hcs/hcs-api.js';
import type { ModifySettingRequest } from '../hcs/schema.js';
import type { ContainerMappedDirectory } from '../oci/mount-applier.js';

/** containerd's `ContainerMount` task-update payload (hcsshim `ctrdtaskapi.ContainerMount`). */
export interface ContainerMountRequest {
  hostPath: string;
  containerPath: string;
  readOnly?: boolean;
  /** Must be empty: only host directories can be added to a running container. */
  type?: string;
}

/** Where container-level requests go: the container's compute system (an `HcsSystem`) or the shim's GCS bridge for it. */
export interface ContainerModifier {
  modify(request: ModifySettingRequest, options?: HcsCallOptions): Promise<void>;
}

/** Options of a hot add to a running container. */
export interface ContainerMountOptions extends DeviceAcquireOptions {
  /** Sends the container-level request; absent = it is returned (`sent: false`) for the shim to send. */
  container?: ContainerModifier;
}

/** What a hot add to a running container did (and the container request to send, when no port was given). */
export interface ContainerMountResult {
  /** The `Container/MappedDirectories` request. */
  request: ModifySettingRequest;
  /** True when it was sent through `options.container`. */
  sent: boolean;
}

/** The container-level ResourcePath of hot-added mapped directories (WCOW). */
export const CONTAINER_MAPPED_DIRECTORIES = 'Container/MappedDirectories';

const REFUSED_PREFIXES = ['sandbox://', 'sandbox-tmp://', 'hugepages://', '\\\\.\\pipe', 'uvm://'];

/** The container-level request. */
export function mappedDirectoryRequest(requestType: 'Add' | 'Remove', settings: ContainerMappedDirectory): ModifySettingRequest {
  return { ResourcePath: CONTAINER_MAPPED_DIRECTORIES, RequestType: requestType, Settings: { ...settings } };
}

/**
 * Validates a hot-add request (pure checks, then the host path must be a directory):
 * NOT_SUPPORTED on LCOW, INVALID_ARGUMENT for anything but a host directory.
 */
export async function checkContainerMount(os: GuestOs, request: ContainerMountRequest, hostFs: HostFs): Promise<Required<Omit<ContainerMountRequest, 'type'>>> {
  if (os !== 'windows') {
    throw new UvmError('NOT_SUPPORTED', 'mounts can be added to running WCOW containers only (LCOW takes resource updates only)');
  }
  if (request === null || typeof request !== 'object') throw invalidArgument('a container mount must be an object {hostPath, containerPath, readOnly?}');
  const { hostPath, containerPath, readOnly = false, type } = request;
  if (typeof hostPath !== 'string' || hostPath === '' || hostPath.includes('\0')) throw invalidArgument('hostPath must be a non-empty path', { field: 'hostPath' });
  if (typeof containerPath !== 'string' || containerPath === '' || containerPath.includes('\0')) {
    throw invalidArgument('containerPath must be a non-empty path', { field: 'containerPath' });
  }
  if (typeof readOnly !== 'boolean') throw invalidArgument('readOnly must be a boolean', { field: 'readOnly' });
  const onlyDirectories = 'only host volumes/directories can be mounted to running containers';
  if (type !== undefined && type !== '') throw invalidArgument(`${onlyDirectories}; type ${JSON.stringify(type)} is not`, { field: 'type' });
  if (REFUSED_PREFIXES.some((p) => hostPath.toLowerCase().startsWith(p))) throw invalidArgument(`${onlyDirectories}: ${hostPath}`, { field: 'hostPath' });
  const st = await hostFs.stat(hostPath);
  if (!st.isDirectory) throw invalidArgument(`${onlyDirectories}; ${hostPath} is not a directory`, { field: 'hostPath' });
  return { hostPath, containerPath, readOnly };
}

/** Sends `request` through `container` when given. */
export async function deliverContainerRequest(request: ModifySettingRequest, options: ContainerMountOptions): Promise<ContainerMountResult> {
  if (!options.container) return { request, sent: false };
  await options.container.modify(request, { signal: options.signal });
  return { request, sent: true };
}

/**
 * A process-isolated (Argon) WCOW container: no Utility VM. Its layers are mounted on the host
 * (containerd's `windows-layer` mount: activate, prepare over the parents, bind the volume to a
 * target folder; hcs-real-world.md §3) and `root.path` becomes that target. Its mounts and devices
 * are left for the container document the shim builds (`containerEntries`, `containerDevices`):
 * nothing is shared into a UVM. Releasing the resources unmounts the target.
 */
import { realpath } from 'node:fs/promises';
import { invalidArgument, UvmError } from '../core/errors.js';
import { withOwn } from '../core/plain-copy.js';
import { NodeHostFs, type HostFs } from '../core/host-fs.js';
import type { Logger } from '../core/logger.js';
import type { WindowsLayerMountRecord, WindowsLayerMounts } from '../hcs/host-layer-mounts.js';
import { parseLayerInputs } from '../layers/layer-inputs.js';
import { PIPE_PREFIX } from '../oci/container-paths.js';
import type { ContainerEntry } from '../oci/mount-applier.js';
import { isReadOnlyMount, type OciSpec, type RootfsMount } from '../oci/oci-spec.js';
import { containerDocumentDevices, planDevices, type ContainerDocumentDevice } from './assigned-devices.js';
import { validateContainerId } from './container-id.js';
import { checkContainerMount, deliverContainerRequest, mappedDirectoryRequest, type ContainerMountOptions, type ContainerMountRequest, type ContainerMountResult } from './running-container-mounts.js';

/** Options of `allocateProcessIsolatedContainer`. */
export interface AllocateProcessIsolatedOptions {
  containerId: string;
  /** The folder the layers are bound to (containerd: the bundle's `rootfs`); its parent is created. */
  target: string;
  /** containerd's `windows-layer` rootfs mount, instead of `windows.layerFolders`. */
  rootfs?: RootfsMount[];
  /** The host layer mounts (`new WindowsLayerMounts()` over the real or simulated host API). */
  layers: WindowsLayerMounts;
  logger?: Logger;
}

/** What `allocateProcessIsolatedContainer` returns: the rewritten spec and the resources to release. */
export interface ProcessIsolatedContainer {
  /** A deep copy of the spec with `root.path` = the target; mounts and devices unchanged. */
  spec: OciSpec;
  resources: ProcessIsolatedResources;
  /** MappedDirectory / MappedPipe entries of the container document, one per host mount. */
  containerEntries: ContainerEntry[];
  /** `AssignedDevices` of the container document (location-path and class devices). */
  containerDevices: ContainerDocumentDevice[];
}

/** The mount record for the container's layers: containerd's, or built from `windows.layerFolders` ([top … base, scratch]). */
export function layerMountRecord(spec: OciSpec, rootfs: readonly RootfsMount[] = []): WindowsLayerMountRecord {
  const inputs = parseLayerInputs('windows', spec, rootfs);
  if (inputs.os !== 'windows') throw new UvmError('INVALID_SPEC', 'process-isolated containers have Windows layers');
  if (rootfs.length === 1) return { type: rootfs[0]!.type, source: rootfs[0]!.source, options: rootfs[0]!.options };
  const options = ['rw', ...(inputs.layerFolders.length > 0 ? [`parentLayerPaths=${JSON.stringify(inputs.layerFolders)}`] : [])];
  return { type: 'windows-layer', source: inputs.scratchFolder, options };
}

/** The container-document entries of a process-isolated container's mounts (INVALID_SPEC naming the mount). */
export function processIsolatedEntries(spec: OciSpec): ContainerEntry[] {
  const mounts = spec.mounts ?? [];
  if (!Array.isArray(mounts)) throw new UvmError('INVALID_SPEC', 'mounts must be an array', { details: { field: 'mounts' } });
  return mounts.map((m, i): ContainerEntry => {
    const bad = (why: string): UvmError => new UvmError('INVALID_SPEC', `mounts[${i}]: ${why}`, { details: { field: `mounts[${i}]`, mountIndex: i } });
    if (m === null || typeof m !== 'object' || typeof m.destination !== 'string' || m.destination === '') throw bad('needs a destination');
    if (typeof m.source !== 'string' || m.source === '') throw bad('needs a host source');
    if (m.type !== undefined && m.type !== '' && m.type !== 'bind') throw bad(`type ${JSON.stringify(m.type)} is not supported for a process-isolated container`);
    if (m.destination.toLowerCase().startsWith(PIPE_PREFIX.toLowerCase())) {
      return { kind: 'mapped-pipe', value: { ContainerPipeName: m.destination.slice(PIPE_PREFIX.length), HostPath: m.source } };
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(m.source)) throw bad(`source ${m.source} is not a host path`);
    return { kind: 'mapped-directory', value: { HostPath: m.source, ContainerPath: m.destination, ...(isReadOnlyMount(m) ? { ReadOnly: true } : {}) } };
  });
}

/**
 * Mounts a process-isolated container's layers on `options.target` and returns the rewritten spec
 * and the resources whose `release()` unmounts. Everything is validated first (container id,
 * layers, mounts, devices: INVALID_SPEC / INVALID_ARGUMENT with no host call); a failed mount
 * leaves nothing mounted, activated or prepared.
 */
export async function allocateProcessIsolatedContainer(spec: OciSpec, options: AllocateProcessIsolatedOptions): Promise<ProcessIsolatedContainer> {
  if (options === null || typeof options !== 'object') throw invalidArgument('options must be an object');
  const containerId = validateContainerId(options.containerId);
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) throw new UvmError('INVALID_SPEC', 'the OCI spec must be an object', { details: { field: '' } });
  if (typeof options.target !== 'string' || options.target === '') throw invalidArgument('target must be the folder to mount the layers on', { field: 'target' });
  const record = layerMountRecord(spec, options.rootfs);
  const containerEntries = processIsolatedEntries(spec);
  const containerDevices = containerDocumentDevices(planDevices('process-isolated', spec));
  await options.layers.mount(record, options.target);
  const rewritten = structuredClone(spec);
  rewritten.root = withOwn(rewritten.root ?? {}, 'path', options.target);
  const resources = new ProcessIsolatedResources(containerId, options.target, options.layers, options.logger);
  return { spec: rewritten, resources, containerEntries, containerDevices };
}

/** What a process-isolated container holds on the host: its layer mount. */
export class ProcessIsolatedResources implements AsyncDisposable {
  #released = false;
  #releasing: Promise<void> | undefined;

  constructor(
    readonly containerId: string,
    /** Where the layers are mounted (`root.path`). */
    readonly target: string,
    private readonly layers: WindowsLayerMounts,
    private readonly logger?: Logger,
    private readonly hostFs: HostFs = new NodeHostFs(),
  ) {}

  get released(): boolean {
    return this.#released;
  }

  /**
   * Adds a host directory to the running container (hcs-real-world.md §5): the
   * `Container/MappedDirectories` Add with the host path (symlinks resolved: HCS mis-resolves file
   * paths through them), sent on `options.container` (the container's compute system) or returned.
   */
  async addContainerMount(request: ContainerMountRequest, options: ContainerMountOptions = {}): Promise<ContainerMountResult> {
    const checked = await checkContainerMount('windows', request, this.hostFs);
    const hostPath = await realpath(checked.hostPath);
    return deliverContainerRequest(mappedDirectoryRequest('Add', { HostPath: hostPath, ContainerPath: checked.containerPath, ...(checked.readOnly ? { ReadOnly: true } : {}) }), options);
  }

  /** The explicit removal of `addContainerMount` (same settings, `RequestType: "Remove"`). */
  async removeContainerMount(request: ContainerMountRequest, options: ContainerMountOptions = {}): Promise<ContainerMountResult> {
    const hostPath = await realpath(request.hostPath);
    return deliverContainerRequest(
      mappedDirectoryRequest('Remove', { HostPath: hostPath, ContainerPath: request.containerPath, ...(request.readOnly ? { ReadOnly: true } : {}) }),
      options,
    );
  }

  /** Unmounts the layers (`unmount(target)`); idempotent; retry after a rejection. */
  release(): Promise<void> {
    if (this.#released) return Promise.resolve();
    this.#releasing ??= this.layers.unmount(this.target).then(
      () => {
        this.#released = true;
      },
      (err: unknown) => {
        this.#releasing = undefined;
        this.logger?.warn('unmounting a process-isolated container failed', { containerId: this.containerId, error: String(err) });
        throw err;
      },
    );
    return this.#releasing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

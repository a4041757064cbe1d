/**
 * Everything one container holds in a UVM, in acquisition order: its layers (or root share),
 * scratch, combined layers, and mounts. Released in reverse (habit H7), continuing past failures;
 * a failed release can be retried and resumes with exactly what is still held.
 */
import { UvmError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { ReleaseStack } from '../core/release-stack.js';
import { nextTurn } from '../core/event-loop-turns.js';
import type { DeviceAcquireOptions } from '../devices/device-types.js';
import type { ContainerResourcesPort } from './container-ports.js';
import type { ComposedLayersInfo } from '../layers/composed-layers.js';
import { applyMount, type AppliedMount, type ContainerEntry } from '../oci/mount-applier.js';
import { planMount, type PlannedMount } from '../oci/mount-planner.js';
import { checkMountFiles } from './host-files.js';
import type { OciMount } from '../oci/oci-spec.js';
import { teardownPhase, type HeldResource } from './held-resource.js';
import {
  checkContainerMount,
  deliverContainerRequest,
  mappedDirectoryRequest,
  type ContainerMountOptions,
  type ContainerMountRequest,
  type ContainerMountResult,
} from './running-container-mounts.js';
import { prepareUvmForTermination } from './uvm-termination.js';
import { plainCopy } from '../core/plain-copy.js';

/** Options of `ContainerResources.release`. */
export interface ReleaseContainerOptions {
  /**
   * The UVM is about to be terminated: skip the guest and host removals its destruction makes
   * moot, while every refcount still balances. Takes effect only when the UVM implements
   * `prepareForTermination()` (see `UvmTerminationAware`), which then applies to the whole UVM;
   * otherwise everything is removed normally. `removalsSkipped` tells which happened.
   */
  uvmTerminating?: boolean;
}

export interface ContainerResourcesInit {
  containerId: string;
  /** The container's rootfs in the guest (what `root.path` became). */
  rootfsPath: string;
  /** Present when the rootfs was composed from layers. */
  layers?: ComposedLayersInfo;
  /** Rootfs leases (layers, scratch, combined layers, or the Plan9 root share), acquisition order. */
  held: HeldResource[];
  /** The spec's mounts as applied, in order. */
  mounts: AppliedMount[];
  /** Index the next hot-added mount is planned with (mount indices are never reused). */
  nextMountIndex: number;
  logger?: Logger;
  /**
   * Called after every change a recovery journal records (docs/recovery.md): a mount added or
   * removed, and the release completed (`released` true). A rejection is logged, not thrown: the
   * journal's lease records alone keep recovery safe.
   */
  onChange?: (resources: ContainerResources) => Promise<void>;
  /**
   * Called first by `release`, `addMount` and `removeMount`; throwing refuses the call with
   * nothing changed (the UVM's lifecycle: HANDLE_CLOSED after close, UVM_TERMINATED for an add).
   */
  beforeCall?: (op: 'release' | 'addMount' | 'removeMount') => void;
}

/** What a container holds, as a recovery journal records it (`ContainerResourcesInit` without the hooks). */
export interface ContainerResourcesSnapshot {
  containerId: string;
  rootfsPath: string;
  layers?: ComposedLayersInfo;
  /** Rootfs leases still held, acquisition order. */
  held: HeldResource[];
  /** Current mounts, in the order they were added. */
  mounts: AppliedMount[];
  nextMountIndex: number;
}

interface MountRecord {
  destination: string;
  /** Undefined while a hot add is in flight. */
  applied: AppliedMount | undefined;
}

/** Everything one container holds in a UVM; `release()` gives it back in reverse order (retryable). */
export class ContainerResources implements AsyncDisposable {
  readonly containerId: string;
  readonly rootfsPath: string;
  readonly layers: ComposedLayersInfo | undefined;
  readonly #uvm: ContainerResourcesPort;
  readonly #stack = new ReleaseStack<HeldResource>({ phase: teardownPhase });
  /** The container's mounts in the order they were added (a spec may stack two at one destination). */
  #mounts: MountRecord[] = [];
  readonly #logger: Logger | undefined;
  readonly #onChange: ((resources: ContainerResources) => Promise<void>) | undefined;
  readonly #beforeCall: ContainerResourcesInit['beforeCall'];
  #nextMountIndex: number;
  /** Hot adds in flight: `release()` waits for them (each undoes itself once it sees the release). */
  readonly #adding = new Set<Promise<unknown>>();
  #closing = false;
  #released = false;
  #removalsSkipped = false;

  constructor(uvm: ContainerResourcesPort, init: ContainerResourcesInit) {
    this.#uvm = uvm;
    this.containerId = init.containerId;
    this.rootfsPath = init.rootfsPath;
    this.layers = init.layers;
    this.#logger = init.logger;
    this.#onChange = init.onChange;
    this.#beforeCall = init.beforeCall;
    this.#nextMountIndex = init.nextMountIndex;
    for (const held of init.held) this.#stack.push(held);
    for (const applied of init.mounts) {
      if (applied.held) this.#stack.push(applied.held);
      this.#mounts.push({ destination: applied.mount.destination, applied });
    }
  }

  /** Every lease still held, in acquisition order. */
  get held(): readonly HeldResource[] {
    return this.#stack.items() as HeldResource[];
  }

  /** True once `release()` completed. */
  get released(): boolean {
    return this.#released;
  }

  /** True when the last release ran in the UVM's termination mode (removals skipped by the managers). */
  get removalsSkipped(): boolean {
    return this.#removalsSkipped;
  }

  /** The container's current mounts, rewritten to guest paths, in the order they were added. */
  mounts(): OciMount[] {
    return this.#mounts.flatMap((r) => (r.applied ? [plainCopy(r.applied.mount)] : []));
  }

  /** WCOW: the MappedDirectory / MappedPipe entries the shim's container document needs. */
  containerEntries(): ContainerEntry[] {
    return this.#mounts.flatMap((r) => (r.applied?.containerEntry ? [plainCopy(r.applied.containerEntry)] : []));
  }

  /**
   * Hot-adds a mount to the running container: plans it with the same rules as the spec's mounts
   * and acquires it through the UVM's managers (sharing their refcounts). Returns the rewritten
   * mount; bind-mounting it inside the container's namespace is the caller's step.
   *
   * Rejects with MOUNT_CONFLICT when the destination is already mounted, ALREADY_RELEASED after
   * `release()`, and the planner's codes (with `details.mountIndex`); nothing is held then.
   */
  async addMount(mount: OciMount, options: DeviceAcquireOptions = {}): Promise<OciMount> {
    this.#beforeCall?.('addMount');
    this.#assertOpen();
    const destination = (mount as Partial<OciMount> | null)?.destination;
    if (typeof destination === 'string' && this.#find(destination)) {
      throw new UvmError('MOUNT_CONFLICT', `container ${this.containerId} already has a mount at ${destination}`, {
        details: { containerId: this.containerId, destination },
      });
    }
    const index = this.#nextMountIndex++;
    const planned = await planMount(mount, index, this.#uvm.facts, this.#uvm.hostFs);
    await checkMountFiles(this.#uvm.hostFs, [planned]);
    if (this.#find(planned.mount.destination)) {
      throw new UvmError('MOUNT_CONFLICT', `container ${this.containerId} already has a mount at ${planned.mount.destination}`, {
        details: { containerId: this.containerId, destination: planned.mount.destination, mountIndex: index },
      });
    }
    this.#assertOpen();
    const record: MountRecord = { destination: planned.mount.destination, applied: undefined };
    this.#mounts.push(record);
    const adding = this.#apply(record, planned, options);
    this.#adding.add(adding);
    try {
      await adding;
    } finally {
      this.#adding.delete(adding);
    }
    await this.#changed();
    return plainCopy(record.applied!.mount);
  }

  async #apply(record: MountRecord, planned: PlannedMount, options: DeviceAcquireOptions): Promise<void> {
    try {
      record.applied = await applyMount(this.#uvm, planned, options);
    } catch (err) {
      this.#drop(record);
      if (UvmError.is(err)) Object.assign(err.details, { mountIndex: planned.index });
      throw err;
    }
    if (this.#closing) {
      // release() started meanwhile: it must not miss this lease, and the caller gets nothing.
      this.#drop(record);
      await record.applied.held?.release().catch((err: unknown) => {
        this.#uvm.retryLater(record.applied!.held!); // nobody else holds this lease
        this.#logger?.warn('undoing a hot add that raced release() failed', { containerId: this.containerId, error: String(err) });
      });
      this.#assertOpen();
    }
    if (record.applied.held) this.#stack.push(record.applied.held);
  }

  /**
   * Hot-removes the mount at `destination` (as given in the spec, e.g. `/data`; the latest one if
   * the spec stacked several there) and releases its lease. NOT_FOUND when there is none; if the
   * release fails the mount stays listed and calling `removeMount` again retries it.
   */
  async removeMount(destination: string): Promise<void> {
    this.#beforeCall?.('removeMount');
    this.#assertOpen();
    const record = this.#find(destination);
    if (!record) {
      throw new UvmError('NOT_FOUND', `container ${this.containerId} has no mount at ${destination}`, {
        details: { containerId: this.containerId, destination },
      });
    }
    if (!record.applied) throw new UvmError('INVALID_STATE', `the mount at ${destination} is still being added`, { details: { destination } });
    const held = record.applied.held;
    if (held) {
      await held.release();
      this.#stack.remove(held);
    }
    this.#drop(record);
    await this.#changed();
  }

  /**
   * Adds a host directory to this running WCOW Hyper-V container (hcs-real-world.md §5): a VSMB
   * share into the UVM (as `addMount`, refcounted) and the container-level
   * `Container/MappedDirectories` Add with the share path, sent through `options.container` (the
   * container's compute system or the shim's GCS bridge) or returned for the shim to send. If the
   * send fails the share is released again. NOT_SUPPORTED on LCOW; INVALID_ARGUMENT for anything
   * but a host directory (a file, a `type`, `sandbox://` …); MOUNT_CONFLICT when `containerPath`
   * is mounted already. See `removeContainerMount`.
   */
  async addContainerMount(request: ContainerMountRequest, options: ContainerMountOptions = {}): Promise<ContainerMountResult> {
    this.#beforeCall?.('addMount');
    this.#assertOpen();
    const { hostPath, containerPath, readOnly } = await checkContainerMount(this.#uvm.facts.os, request, this.#uvm.hostFs);
    await this.addMount({ destination: containerPath, source: hostPath, ...(readOnly ? { options: ['ro'] } : {}) }, options);
    const entry = this.#find(containerPath)?.applied?.containerEntry;
    try {
      if (entry?.kind !== 'mapped-directory') throw new UvmError('INVALID_STATE', `the mount at ${containerPath} has no MappedDirectory entry`);
      return await deliverContainerRequest(mappedDirectoryRequest('Add', entry.value), options);
    } catch (err) {
      await this.removeMount(containerPath).catch((rollbackError: unknown) => {
        Object.assign((err as { details?: object }).details ?? {}, { rollbackError });
        this.#logger?.warn('releasing a hot-added share after a failed container request failed', { containerId: this.containerId, error: String(rollbackError) });
      });
      throw err;
    }
  }

  /**
   * Removes a directory added with `addContainerMount` (or a spec mount): the container-level
   * `Container/MappedDirectories` Remove (the Add's settings) is sent through `options.container`,
   * then the share is released. Without `options.container` the shim sends that Remove itself
   * **before** calling this (the add's request with `RequestType: "Remove"`, also returned here),
   * which then only releases the share. hcsshim has no such removal; if the send fails nothing is
   * released and the call can be retried. NOT_FOUND when nothing is mounted at `containerPath`.
   */
  async removeContainerMount(containerPath: string, options: ContainerMountOptions = {}): Promise<ContainerMountResult> {
    this.#beforeCall?.('removeMount');
    this.#assertOpen();
    if (this.#uvm.facts.os !== 'windows') throw new UvmError('NOT_SUPPORTED', 'container-level mounts exist on WCOW only');
    const entry = this.#find(containerPath)?.applied?.containerEntry;
    if (entry?.kind !== 'mapped-directory') {
      throw new UvmError('NOT_FOUND', `container ${this.containerId} has no mapped directory at ${containerPath}`, {
        details: { containerId: this.containerId, destination: containerPath },
      });
    }
    const result = await deliverContainerRequest(mappedDirectoryRequest('Remove', entry.value), options);
    await this.removeMount(containerPath);
    return result;
  }

  /**
   * Releases everything in reverse acquisition order, continuing past failures. Rejects with
   * RELEASE_FAILED (a UvmAggregateError listing each failure); the failed items stay held and
   * calling `release()` again retries exactly those. Resolves immediately once released.
   */
  async release(options: ReleaseContainerOptions = {}): Promise<void> {
    if (this.#released) return;
    this.#beforeCall?.('release');
    this.#closing = true;
    // A hot add in flight undoes itself once it sees #closing: wait for it, so nothing it attached
    // outlives this release.
    while (this.#adding.size > 0) await Promise.allSettled([...this.#adding]);
    // Releases started together issue their removals one per turn of the event loop, so the
    // completions of earlier releases' calls are handled in between (src/core/event-loop-turns.ts).
    await nextTurn();
    if (options.uvmTerminating) {
      this.#removalsSkipped = prepareUvmForTermination(this.#uvm) || this.#removalsSkipped;
      if (!this.#removalsSkipped) {
        this.#logger?.info('the UVM cannot skip removals; releasing normally', { containerId: this.containerId });
      }
    }
    await this.#stack.releaseAll();
    this.#mounts = [];
    this.#released = true;
    await this.#changed();
  }

  /** What the container holds now (for a recovery journal). */
  snapshot(): ContainerResourcesSnapshot {
    const mounts = this.#mounts.flatMap((r) => (r.applied ? [r.applied] : []));
    const mountLeases = new Set(mounts.flatMap((m) => (m.held ? [m.held] : [])));
    return {
      containerId: this.containerId,
      rootfsPath: this.rootfsPath,
      ...(this.layers ? { layers: this.layers } : {}),
      held: this.held.filter((h) => !mountLeases.has(h)),
      mounts,
      nextMountIndex: this.#nextMountIndex,
    };
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }

  /** The latest mount at `destination`. */
  #find(destination: string): MountRecord | undefined {
    for (let i = this.#mounts.length - 1; i >= 0; i--) if (this.#mounts[i]!.destination === destination) return this.#mounts[i];
    return undefined;
  }

  #drop(record: MountRecord): void {
    this.#mounts = this.#mounts.filter((r) => r !== record);
  }

  async #changed(): Promise<void> {
    if (!this.#onChange) return;
    try {
      await this.#onChange(this);
    } catch (err) {
      this.#logger?.warn('recording a container change failed', { containerId: this.containerId, error: String(err) });
    }
  }

  #assertOpen(): void {
    if (this.#closing) throw new UvmError('ALREADY_RELEASED', `container ${this.containerId}'s resources are being or were released`);
  }
}

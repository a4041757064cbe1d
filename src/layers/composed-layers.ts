/**
 * The result of composing a container's layers, and the rollback list both composers build it with
 * (habit H7): every lease is pushed as it is acquired; any failure releases what was pushed,
 * newest first, and rethrows the failure; `release()` tears the composition down in the same LIFO
 * order (CombinedLayers Remove → scratch → layers), continuing past errors and reporting them all.
 */
import { UvmError } from '../core/errors.js';
import { ReleasableLease } from '../core/lease.js';
import { abortError } from '../core/refcounted-table.js';
import type { Logger } from '../core/logger.js';
import { ReleaseStack, type Releasable } from '../core/release-stack.js';
import type { DeviceAcquireOptions } from '../devices/device-types.js';
import { omitEmpty, type GuestRequest } from '../hcs/schema.js';
import { heldResource, teardownPhase, type HeldResource } from '../containers/held-resource.js';
import { isPreparedForTermination } from '../containers/uvm-termination.js';
import { addErrorDetails } from '../oci/container-paths.js';
import type { ScsiLayerReason } from './layer-plan.js';
import type { CompositionPort } from './layer-ports.js';

/** Where one read-only layer landed. */
export interface ComposedLayer {
  /** 0 = top-most. */
  index: number;
  hostPath: string;
  partition?: number;
  target: 'vpmem' | 'scsi' | 'vsmb';
  /** For a LCOW layer on SCSI: why not VPMEM. */
  reason?: ScsiLayerReason;
  guestPath: string;
  /** WCOW: NameToGuid(basename(folder)). */
  id?: string;
}

/** What a container's composed layers are: its rootfs guest path and where each layer landed. */
export interface ComposedLayersInfo {
  os: 'linux' | 'windows';
  containerId: string;
  /** What the container's `root.path` becomes: `/run/gcs/c/<id>/rootfs` (LCOW) or the scratch mount (WCOW). */
  rootfsPath: string;
  /** The scratch disk's guest mount path (the existing one when the scratch is shared). */
  scratchMountPath: string;
  /** LCOW: `<scratch mount>/scratch/<id>`. */
  scratchPath?: string;
  /** The scratch VHDX with symlinks resolved. */
  scratchHostPath: string;
  /** Top-most first. */
  layers: ComposedLayer[];
}

/** A composed rootfs: its description plus every lease behind it. */
export class ComposedLayers implements Releasable, AsyncDisposable {
  readonly info: ComposedLayersInfo;
  readonly #stack: ReleaseStack<HeldResource>;

  constructor(info: ComposedLayersInfo, stack: ReleaseStack<HeldResource>) {
    this.info = info;
    this.#stack = stack;
  }

  /** Every lease still held, in acquisition order (layers, scratch, combined layers). */
  get held(): HeldResource[] {
    return [...this.#stack.items()];
  }

  /**
   * Releases the CombinedLayers first, then the scratch and the layers together (see
   * `teardownPhase`); rejects with RELEASE_FAILED listing every failure; call again to retry those.
   */
  release(): Promise<void> {
    return this.#stack.releaseAll();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.release();
  }
}

/** Collects leases while composing; rolls them back on failure. */
export class CompositionBuilder {
  readonly #stack = new ReleaseStack<HeldResource>({ phase: teardownPhase });
  readonly #uvm: CompositionPort;
  readonly #logger: Logger | undefined;

  constructor(uvm: CompositionPort, logger?: Logger) {
    this.#uvm = uvm;
    this.#logger = logger;
  }

  hold(fields: Omit<HeldResource, 'release'>): HeldResource {
    return this.#stack.push(heldResource(fields));
  }

  /**
   * Acquires independent pieces at once and holds what succeeded in input order (so rollback and
   * teardown lists do not depend on timing). If any piece failed, everything that succeeded is
   * held (the caller's rollback releases it) and the first failure in input order is thrown.
   */
  async holdAll<T>(acquires: readonly Promise<T>[], held: (value: T) => Omit<HeldResource, 'release'>): Promise<T[]> {
    const results = await Promise.allSettled(acquires);
    const values: T[] = [];
    // Every piece has settled before anything is thrown: nothing is acquired after a rollback.
    let failure: { reason: unknown } | undefined;
    for (const result of results) {
      if (result.status === 'rejected') failure ??= { reason: result.reason };
      else {
        this.hold(held(result.value));
        values.push(result.value);
      }
    }
    if (failure) throw failure.reason;
    return values;
  }

  /**
   * Sends `CombinedLayers` Add and holds a lease whose release sends the Remove with
   * `removeSettings` (skipped once the UVM is prepared for termination: the overlay dies with it).
   */
  async combineLayers(addSettings: Record<string, unknown>, removeSettings: Record<string, unknown>, options: DeviceAcquireOptions): Promise<void> {
    const uvm = this.#uvm;
    const request = (RequestType: 'Add' | 'Remove', Settings: Record<string, unknown>): GuestRequest =>
      omitEmpty({ RequestType, ResourceType: 'CombinedLayers', Settings });
    const { signal } = options;
    if (signal?.aborted) throw abortError(signal);
    // Not cut short by an abort: the Add finishes, then the rollback sends its Remove.
    await uvm.sendGuestRequest(request('Add', addSettings));
    const lease = new ReleasableLease(removeSettings, async () => {
      if (isPreparedForTermination(uvm)) return;
      await uvm.sendGuestRequest(request('Remove', removeSettings));
    });
    this.hold({ kind: 'combined-layers', source: 'guest', guestPath: String(removeSettings.ContainerRootPath), lease });
    if (signal?.aborted) throw abortError(signal);
  }

  /** Releases everything held so far and returns `err` (with `details.rollbackError` if that failed). */
  async rollback(err: unknown): Promise<unknown> {
    try {
      await this.#stack.releaseAll();
    } catch (rollbackError) {
      // Nobody holds these leases any more: the UVM retries them in retryFailedTeardowns().
      this.#uvm.retryLater({ release: () => this.#stack.releaseAll() });
      addErrorDetails(err, { rollbackError });
      this.#logger?.warn('rolling back a layer composition failed', { error: String(rollbackError) });
    }
    return err;
  }

  finish(info: ComposedLayersInfo): ComposedLayers {
    return new ComposedLayers(info, this.#stack);
  }
}

/**
 * The commit step both composers share: an abort before the first call cancels the reservations
 * (nothing is sent); otherwise `compose` runs with a builder, and if it fails everything the
 * builder holds is released (newest first) before the error is rethrown.
 */
export async function commitComposition(
  uvm: CompositionPort,
  reserved: { cancel(): void },
  options: DeviceAcquireOptions & { logger?: Logger },
  compose: (builder: CompositionBuilder) => Promise<ComposedLayers>,
  containerRootPath?: string,
): Promise<ComposedLayers> {
  const { signal } = options;
  if (signal?.aborted) {
    reserved.cancel();
    throw abortError(signal);
  }
  const builder = new CompositionBuilder(uvm, options.logger);
  const announced = containerRootPath === undefined ? undefined : uvm.announceOverlay?.(containerRootPath);
  try {
    return await compose(builder);
  } catch (err) {
    throw await builder.rollback(err);
  } finally {
    announced?.();
  }
}

/** NOT_SUPPORTED unless the UVM runs `os`. */
export function assertGuestOs(uvm: Pick<CompositionPort, 'facts'>, os: 'linux' | 'windows', what: string): void {
  if (uvm.facts.os !== os) {
    throw new UvmError('NOT_SUPPORTED', `${what} needs a ${os} UVM; ${uvm.facts.id} is ${uvm.facts.os}`, {
      details: { uvmId: uvm.facts.id },
    });
  }
}

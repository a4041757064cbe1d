import { UvmError } from '../core/errors.js';
import type { Lease } from '../core/lease.js';
import { LogField, type Logger } from '../core/logger.js';
import { RefCountedTable, type AcquireOptions, type Placed, type Reservation } from '../core/refcounted-table.js';
import { SlotAllocator } from '../core/slot-allocator.js';
import { describeEntries } from './describe-entries.js';
import type { GuestOs, ResourceInfo } from './device-types.js';
import type { ResourceDelivery } from './guest-delivery.js';
import { SCSI_LUNS_PER_CONTROLLER } from './resource-paths.js';
import { scsiRequests, type ScsiAttachConfig } from './scsi-requests.js';

/**
 * Lifecycle of a SCSI attachment (H8):
 *
 * ```
 * reserved ──host Add──► attached ──guest SCSIDevice Remove (LCOW)──► ejected ──host Remove──► detached
 *    │ Add fails                │ (WCOW: no unplug) ────────────────────────────────┘
 *    ▼                          │ unplug fails: stays attached;  host remove fails: stays ejected
 * (slot freed)                  ▼ a retried release resumes from the state it stopped in
 * ```
 */
export type ScsiAttachmentState = 'reserved' | 'attached' | 'ejected' | 'detached';

/** One occupied SCSI slot. */
export interface ScsiAttachment {
  readonly controller: number;
  readonly lun: number;
  readonly config: ScsiAttachConfig;
  state: ScsiAttachmentState;
}

/**
 * Host attachments keyed by `(path, readOnly, type, evdType)` (hcsshim G2): the same key shares
 * one slot; a new key takes the lowest free slot, controller-major, never a reserved one.
 */
export class ScsiAttachTracker {
  readonly #table: RefCountedTable<string, ScsiAttachment>;
  readonly #slots: SlotAllocator;

  constructor(
    private readonly os: GuestOs,
    controllers: number,
    reservedSlots: readonly number[],
    private readonly delivery: ResourceDelivery,
    private readonly logger: Logger,
  ) {
    this.#slots = new SlotAllocator(controllers * SCSI_LUNS_PER_CONTROLLER, reservedSlots);
    this.#table = new RefCountedTable({
      name: 'scsi-attach',
      destroy: (a) => this.#detach(a),
      forget: (a) => this.#slots.free(a.controller * SCSI_LUNS_PER_CONTROLLER + a.lun),
    });
  }

  /** One attach reference. Rejects with NO_SLOT when every slot is taken. */
  acquire(cfg: ScsiAttachConfig, options: AcquireOptions = {}): Promise<Lease<ScsiAttachment>> {
    return this.reserve(cfg).commit(options);
  }

  /**
   * Reserves one attach reference synchronously: the same key shares its slot, a new key takes
   * the lowest free slot now (NO_SLOT when none).
   */
  reserve(cfg: ScsiAttachConfig): Reservation<ScsiAttachment> {
    return this.#table.reserve(keyOf(cfg), () => this.#place(cfg));
  }

  /**
   * Recovery: one reference to `cfg`, already attached at `controller:lun`. A new entry claims that
   * slot with no HCS call (NO_SLOT if it is taken or reserved); an existing entry must be at the
   * same slot (RECOVERY_FAILED otherwise).
   */
  async adopt(cfg: ScsiAttachConfig, controller: number, lun: number): Promise<Lease<ScsiAttachment>> {
    const lease = await this.#table.acquire(keyOf(cfg), async () => {
      this.#slots.claim(controller * SCSI_LUNS_PER_CONTROLLER + lun);
      const a: ScsiAttachment = { controller, lun, config: cfg, state: 'attached' };
      this.#log('debug', a, 'adopted');
      return a;
    });
    if (lease.value.controller !== controller || lease.value.lun !== lun) {
      await lease.release();
      throw new UvmError('RECOVERY_FAILED', `${cfg.path} is recorded at ${controller}:${lun} and at ${lease.value.controller}:${lease.value.lun}`, {
        details: { hostPath: cfg.path },
      });
    }
    return lease;
  }

  describe(): ResourceInfo[] {
    return describeEntries(this.#table, 'scsi-attachment', (a) =>
      a ? { hostPath: a.config.path, slot: `${a.controller}:${a.lun}` } : {},
    );
  }

  /** Number of slots still free (for tests and diagnostics). */
  get freeSlots(): number {
    return this.#slots.freeCount;
  }

  retryFailedTeardowns(): Promise<void> {
    return this.#table.retryFailedTeardowns();
  }

  #place(cfg: ScsiAttachConfig): Placed<ScsiAttachment> {
    const slot = this.#slots.allocate();
    if (slot === undefined) {
      throw new UvmError('NO_SLOT', `no free SCSI slot for ${cfg.path}`, { details: { hostPath: cfg.path } });
    }
    const a: ScsiAttachment = {
      controller: Math.floor(slot / SCSI_LUNS_PER_CONTROLLER),
      lun: slot % SCSI_LUNS_PER_CONTROLLER,
      config: cfg,
      state: 'reserved',
    };
    return {
      value: a,
      cancel: () => this.#slots.free(slot),
      commit: async () => {
        try {
          await this.delivery.host(scsiRequests.attach(a.controller, a.lun, cfg));
        } catch (err) {
          this.#log('warn', a, 'attach failed', err);
          throw err;
        }
        a.state = 'attached';
        this.#log('debug', a, 'attached');
      },
    };
  }

  async #detach(a: ScsiAttachment): Promise<void> {
    try {
      if (a.state === 'attached' && this.os === 'linux') {
        await this.delivery.guest(scsiRequests.unplug(a.controller, a.lun));
        a.state = 'ejected';
        this.#log('debug', a, 'ejected');
      }
      if (a.state === 'attached' || a.state === 'ejected') {
        await this.delivery.host(scsiRequests.detach(a.controller, a.lun));
        a.state = 'detached';
        this.#log('debug', a, 'detached');
      }
    } catch (err) {
      this.#log('warn', a, 'detach failed; release() again to resume', err);
      throw err;
    }
  }

  #log(level: 'debug' | 'warn', a: ScsiAttachment, msg: string, err?: unknown): void {
    this.logger[level](msg, {
      [LogField.hostPath]: a.config.path,
      [LogField.controller]: a.controller,
      [LogField.lun]: a.lun,
      [LogField.state]: a.state,
      ...(err === undefined ? {} : { error: String(err) }),
    });
  }
}

function keyOf(cfg: ScsiAttachConfig): string {
  return JSON.stringify([cfg.path, cfg.readOnly, cfg.type, cfg.evdType ?? '']);
}

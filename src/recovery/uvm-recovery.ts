/**
 * Everything the journal does for one UtilityVm: the journaled views of its devices (one for the
 * UVM itself, one per container), the container records, and the reconcile after a restart
 * (read HCS, plan, apply, restore the leases and the containers). The UtilityVm owns one when its
 * `journal` option is set; docs/recovery.md describes the design.
 */
import { UvmError } from '../core/errors.js';
import type { Lease } from '../core/lease.js';
import { LogField, type Logger } from '../core/logger.js';
import type { ContainerResourcesSnapshot } from '../containers/container-resources.js';
import { heldResource, type HeldResource, type HeldResourceSource } from '../containers/held-resource.js';
import { isPreparedForTermination } from '../containers/uvm-termination.js';
import type { GuestOs } from '../devices/device-types.js';
import type { ResourceDelivery } from '../devices/guest-delivery.js';
import { guestRequest } from '../devices/wire-requests.js';
import type { HcsSystem } from '../hcs/hcs-api.js';
import type { AppliedMount } from '../oci/mount-applier.js';
import { applyReconcilePlan, type RecoveryReport, type RestoredLease } from './apply-reconcile.js';
import type { DeviceRestore } from '../devices/device-restore.js';
import type { ContainerRecord, JsonObject, LeaseRecordKind } from './journal-format.js';
import { encodeContainer } from './records/container.js';
import type { RecoveryJournal } from './journal.js';
import { isJournaledLease, journaledDevices, type JournalContext, type UvmDeviceSet } from './journaled-devices.js';
import { planReconcile } from './reconcile.js';

/** A container as restored by reconcile: what `new ContainerResources(devices, init)` takes. */
export interface RestoredContainer {
  /** The container's journaled view (its future acquisitions are journaled under its id). */
  devices: UvmDeviceSet;
  init: ContainerResourcesSnapshot;
}

export interface UvmRecoveryInit {
  os: GuestOs;
  journal: RecoveryJournal;
  /** The UVM's devices as the shim uses them (behind the UVM's gate): what the journaled views wrap. */
  devices: UvmDeviceSet;
  /** The devices' restore hook (reconcile only; without it, reconcile is NOT_SUPPORTED). */
  restore: DeviceRestore | undefined;
  /** Throws HANDLE_CLOSED once the UVM is closed (journaled releases then keep their records). */
  assertOpen: (op: string) => void;
  delivery: ResourceDelivery;
  logger: Logger;
}

const SOURCE_OF: Record<LeaseRecordKind, HeldResourceSource> = {
  scsi: 'scsi',
  vsmb: 'vsmb',
  vpmem: 'vpmem',
  plan9: 'plan9',
  pipe: 'pipe',
  vpci: 'vpci',
  'combined-layers': 'guest',
};

/**
 * The only thing reconcile asks HCS: the system's state (standard properties). What is attached
 * comes from the journal alone: real HCS cannot list a VM's devices (hcs-real-world.md §1.5).
 */
export async function systemState(system: HcsSystem): Promise<string> {
  const doc = (await system.properties({})) as { State?: unknown } | null;
  return String(doc?.State ?? 'Unknown');
}

export class UvmRecovery {
  readonly journal: RecoveryJournal;
  /** The journaled view for the UVM's own leases. */
  readonly uvmDevices: UvmDeviceSet;
  readonly #init: UvmRecoveryInit;
  readonly #views = new Map<string, UvmDeviceSet>();
  /** Containers whose record is durable (their later leases are durable on their own). */
  readonly #recorded = new Set<string>();
  #restored: RestoredLease[] = [];
  #report: RecoveryReport | undefined;
  #reconciling = false;

  constructor(init: UvmRecoveryInit) {
    this.#init = init;
    this.journal = init.journal;
    this.uvmDevices = journaledDevices(init.devices, this.#context(), undefined);
  }

  /** The journaled view of a container's devices (the same object for the same id). */
  containerDevices(containerId: string): UvmDeviceSet {
    let view = this.#views.get(containerId);
    if (!view) {
      view = journaledDevices(this.#init.devices, this.#context(), containerId);
      this.#views.set(containerId, view);
    }
    return view;
  }

  #context(): JournalContext {
    return {
      journal: this.#init.journal,
      logger: this.#init.logger,
      assertOpen: this.#init.assertOpen,
      // A container's leases are made durable by its record, until it is recorded.
      deferDurable: (owner) => owner !== undefined && !this.#recorded.has(owner),
    };
  }

  /** The report of the last reconcile, if any. */
  get report(): RecoveryReport | undefined {
    return this.#report;
  }

  /** The UVM's own leases restored by reconcile (not released yet), in record order. */
  restoredLeases(): { kind: LeaseRecordKind; request: JsonObject; lease: Lease<unknown> }[] {
    return this.#restored.filter((r) => !r.lease.released).map((r) => ({ kind: r.record.kind, request: r.record.request, lease: r.lease }));
  }

  /** Journals a container once it is allocated (its leases are journaled already). */
  async recordContainer(snapshot: ContainerResourcesSnapshot): Promise<void> {
    const owner = snapshot.containerId;
    const recordOf = (h: HeldResource): number | undefined => {
      if (isJournaledLease(h.lease)) return h.lease.recordId;
      if (h.kind !== 'combined-layers') return undefined;
      return this.journal.findRecord((r) => r.kind === 'combined-layers' && r.owner === owner && r.value.ContainerRootPath === h.guestPath)?.id;
    };
    await this.journal.putContainer(encodeContainer(snapshot, recordOf));
    this.#recorded.add(owner);
  }

  /** Drops a container's record (its resources were released). */
  async forgetContainer(containerId: string): Promise<void> {
    this.dropContainerDevices(containerId);
    await this.journal.removeContainer(containerId);
  }

  /** Forgets the journaled view of `containerId` (released, or its allocation failed): one per live container only. */
  dropContainerDevices(containerId: string): void {
    this.#views.delete(containerId);
    this.#recorded.delete(containerId);
  }

  /**
   * Reconciles the journal with `system` (docs/recovery.md): removes what HCS has but nobody
   * journaled, forgets what was journaled but is gone, adopts the rest into the managers, releases
   * incomplete container allocations, and returns the restored containers.
   */
  async reconcile(system: HcsSystem): Promise<{ report: RecoveryReport; containers: RestoredContainer[] }> {
    const { os, restore, devices, delivery, logger } = this.#init;
    if (!restore) throw new UvmError('NOT_SUPPORTED', 'these device managers have no restore hook');
    // Only a freshly opened journal can be reconciled: adopting records this process made (or
    // adopted already) would count their references twice.
    if (this.#reconciling || this.journal.writes > 0) {
      throw new UvmError('INVALID_STATE', 'reconcile runs once, right after the UVM is opened', { details: { uvmId: this.journal.uvmId } });
    }
    this.#reconciling = true;
    const doc = this.journal.snapshot();
    const hcs = { state: await systemState(system), parts: doc.parts };
    const plan = planReconcile({ os, records: doc.records, containers: doc.containers, hcs });
    const applied = await applyReconcilePlan(
      plan,
      {
        os,
        restore,
        guest: devices,
        delivery,
        journal: this.journal,
        logger,
        assertOpen: this.#init.assertOpen,
        removeCombinedLayers: async (owner, settings) => {
          if (isPreparedForTermination(this.containerDevices(owner))) return;
          await devices.sendGuestRequest(guestRequest('Remove', 'CombinedLayers', settings));
        },
      },
      doc.parts,
    );
    this.#restored = applied.leases.get(undefined) ?? [];
    const containers = plan.containers.adopt.map((c) => this.#restoreContainer(c, applied.leases.get(c.id) ?? []));
    for (const c of plan.containers.adopt) this.#recorded.add(c.id);
    this.#report = applied.report;
    return { report: applied.report, containers };
  }

  #restoreContainer(c: ContainerRecord, leases: RestoredLease[]): RestoredContainer {
    const byRecord = new Map(leases.map((l) => [l.record.id, l]));
    const used = new Set<number>();
    const held: HeldResource[] = [];
    for (const h of c.held) {
      const restored = byRecord.get(h.record);
      if (!restored) continue;
      used.add(h.record);
      held.push(heldResource({ ...h.fields, lease: restored.lease }));
    }
    const mounts: AppliedMount[] = [];
    for (const m of c.mounts) {
      const base: AppliedMount = {
        index: m.index,
        planned: m.planned,
        mount: m.mount,
        ...(m.containerEntry ? { containerEntry: m.containerEntry } : {}),
      };
      if (m.record === undefined) {
        mounts.push(base);
        continue;
      }
      const restored = byRecord.get(m.record);
      if (!restored) continue; // its lease was released before the crash
      used.add(m.record);
      const value = restored.lease.value as { guestPath?: string };
      mounts.push({
        ...base,
        held: heldResource({
          kind: 'mount',
          source: SOURCE_OF[restored.record.kind],
          hostPath: typeof restored.record.request.hostPath === 'string' ? restored.record.request.hostPath : undefined,
          guestPath: value.guestPath,
          destination: base.mount.destination,
          mountIndex: m.index,
          lease: restored.lease,
        }),
      });
    }
    // Leases of the container that its record does not list (a hot add that crashed before the
    // record was updated): held too, so that releasing the container releases them.
    for (const l of leases) {
      if (used.has(l.record.id)) continue;
      const value = l.lease.value as { guestPath?: string };
      held.push(
        heldResource({
          kind: l.record.kind === 'combined-layers' ? 'combined-layers' : 'mount',
          source: SOURCE_OF[l.record.kind],
          hostPath: typeof l.record.request.hostPath === 'string' ? l.record.request.hostPath : undefined,
          guestPath: value.guestPath ?? (typeof l.record.value.ContainerRootPath === 'string' ? l.record.value.ContainerRootPath : undefined),
          lease: l.lease,
        }),
      );
    }
    this.#init.logger.info('recovery: container restored', { [LogField.containerId]: c.id, held: held.length, mounts: mounts.length });
    return {
      devices: this.containerDevices(c.id),
      init: {
        containerId: c.id,
        rootfsPath: c.rootfsPath,
        ...(c.layers ? { layers: c.layers } : {}),
        held,
        mounts,
        nextMountIndex: c.nextMountIndex,
      },
    };
  }
}

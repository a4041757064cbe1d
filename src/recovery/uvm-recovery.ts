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
import type { GuestOs, UvmDevices } from '../devices/device-types.js';
import type { ResourceDelivery } from '../devices/guest-delivery.js';
import { guestRequest } from '../devices/wire-requests.js';
import type { HcsSystem } from '../hcs/hcs-api.js';
import { HcsError } from '../hcs/hcs-error.js';
import type { AppliedMount, ContainerEntry } from '../oci/mount-applier.js';
import type { PlannedMount } from '../oci/mount-planner.js';
import type { OciMount } from '../oci/oci-spec.js';
import type { ComposedLayersInfo } from '../layers/composed-layers.js';
import { applyReconcilePlan, isAdoptable, type RecoveryReport, type RestoredLease } from './apply-reconcile.js';
import { partsFromSimulatorState, type HcsObservation } from './hcs-inventory.js';
import { toJson, type ContainerRecord, type JsonObject, type LeaseRecordKind } from './journal-format.js';
import type { RecoveryJournal } from './journal.js';
import { isJournaledLease, journaledDevices, type JournalContext } from './journaled-devices.js';
import { planReconcile } from './reconcile.js';

/** A container as restored by reconcile: what `new ContainerResources(devices, init)` takes. */
export interface RestoredContainer {
  /** The container's journaled view (its future acquisitions are journaled under its id). */
  devices: UvmDevices;
  init: ContainerResourcesSnapshot;
}

export interface UvmRecoveryInit {
  os: GuestOs;
  journal: RecoveryJournal;
  /** The UVM's devices as the shim uses them (behind the UVM's gate): what the journaled views wrap. */
  devices: UvmDevices;
  /** The raw managers, with their adoption paths (reconcile only). */
  adoptable: UvmDevices;
  /** Throws HANDLE_CLOSED once the UVM is closed (journaled releases then keep their records). */
  assertOpen: (op: string) => void;
  delivery: ResourceDelivery;
  logger: Logger;
  reservedScsiSlots: readonly number[];
}

const SOURCE_OF: Record<LeaseRecordKind, HeldResourceSource> = {
  scsi: 'scsi',
  vsmb: 'vsmb',
  vpmem: 'vpmem',
  plan9: 'plan9',
  pipe: 'pipe',
  'combined-layers': 'guest',
};

/** Reads what reconcile needs from HCS: the state, and the device inventory when HCS can list it. */
export async function observeHcs(system: HcsSystem, os: GuestOs, reservedScsiSlots: readonly number[]): Promise<HcsObservation> {
  let doc: Record<string, unknown> | null;
  try {
    doc = (await system.properties({ PropertyTypes: ['SimulatorState'] })) as Record<string, unknown> | null;
  } catch (err) {
    // Real HCS does not know the simulator's property type: standard properties only.
    if (!(err instanceof HcsError)) throw err;
    doc = (await system.properties({})) as Record<string, unknown> | null;
  }
  const state = String(doc?.State ?? 'Unknown');
  const sim = doc?.SimulatorState;
  return { state, parts: sim !== null && typeof sim === 'object' ? partsFromSimulatorState(sim, os, reservedScsiSlots) : undefined };
}

export class UvmRecovery {
  readonly journal: RecoveryJournal;
  /** The journaled view for the UVM's own leases. */
  readonly uvmDevices: UvmDevices;
  readonly #init: UvmRecoveryInit;
  readonly #views = new Map<string, UvmDevices>();
  #restored: RestoredLease[] = [];
  #report: RecoveryReport | undefined;
  #reconciling = false;

  constructor(init: UvmRecoveryInit) {
    this.#init = init;
    this.journal = init.journal;
    this.uvmDevices = journaledDevices(init.devices, this.#context(), undefined);
  }

  /** The journaled view of a container's devices (the same object for the same id). */
  containerDevices(containerId: string): UvmDevices {
    let view = this.#views.get(containerId);
    if (!view) {
      view = journaledDevices(this.#init.devices, this.#context(), containerId);
      this.#views.set(containerId, view);
    }
    return view;
  }

  #context(): JournalContext {
    return { journal: this.#init.journal, logger: this.#init.logger, assertOpen: this.#init.assertOpen };
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
    const recordOf = (lease: Lease<unknown>, kind: HeldResource['kind'], guestPath: string | undefined): number | undefined => {
      if (isJournaledLease(lease)) return lease.recordId;
      if (kind !== 'combined-layers') return undefined;
      return this.journal.records().find((r) => r.kind === 'combined-layers' && r.owner === owner && r.value.ContainerRootPath === guestPath)?.id;
    };
    const held: ContainerRecord['held'] = [];
    for (const h of snapshot.held) {
      const record = recordOf(h.lease, h.kind, h.guestPath);
      if (record === undefined) continue;
      const { lease: _lease, release: _release, ...fields } = h;
      held.push({ record, fields: toJson(fields) });
    }
    const container: ContainerRecord = {
      id: owner,
      rootfsPath: snapshot.rootfsPath,
      held,
      mounts: snapshot.mounts.map((m) => {
        const record = m.held ? recordOf(m.held.lease, 'mount', m.held.guestPath) : undefined;
        return {
          index: m.index,
          planned: toJson(m.planned),
          mount: toJson(m.mount),
          ...(m.containerEntry ? { containerEntry: toJson(m.containerEntry) } : {}),
          ...(record === undefined ? {} : { record }),
        };
      }),
      nextMountIndex: snapshot.nextMountIndex,
    };
    if (snapshot.layers) container.layers = toJson(snapshot.layers);
    await this.journal.putContainer(container);
  }

  /** Drops a container's record (its resources were released). */
  async forgetContainer(containerId: string): Promise<void> {
    this.dropContainerDevices(containerId);
    await this.journal.removeContainer(containerId);
  }

  /** Forgets the journaled view of `containerId` (released, or its allocation failed): one per live container only. */
  dropContainerDevices(containerId: string): void {
    this.#views.delete(containerId);
  }

  /**
   * Reconciles the journal with `system` (docs/recovery.md): removes what HCS has but nobody
   * journaled, forgets what was journaled but is gone, adopts the rest into the managers, releases
   * incomplete container allocations, and returns the restored containers.
   */
  async reconcile(system: HcsSystem): Promise<{ report: RecoveryReport; containers: RestoredContainer[] }> {
    const { os, adoptable: devices, delivery, logger, reservedScsiSlots } = this.#init;
    if (!isAdoptable(devices)) throw new UvmError('NOT_SUPPORTED', 'these device managers have no adoption path');
    // Only a freshly opened journal can be reconciled: adopting records this process made (or
    // adopted already) would count their references twice.
    if (this.#reconciling || this.journal.writes > 0) {
      throw new UvmError('INVALID_STATE', 'reconcile runs once, right after the UVM is opened', { details: { uvmId: this.journal.uvmId } });
    }
    this.#reconciling = true;
    const hcs = await observeHcs(system, os, reservedScsiSlots);
    const doc = this.journal.snapshot();
    const plan = planReconcile({ os, records: doc.records, containers: doc.containers, hcs });
    if (plan.inventory === 'unavailable') {
      logger.warn('recovery: HCS cannot list the attached devices; trusting the journal (resources attached but never journaled cannot be found)');
    }
    const applied = await applyReconcilePlan(
      plan,
      {
        os,
        devices,
        delivery,
        journal: this.journal,
        logger,
        assertOpen: this.#init.assertOpen,
        removeCombinedLayers: async (owner, settings) => {
          if (isPreparedForTermination(this.containerDevices(owner))) return;
          await devices.sendGuestRequest(guestRequest('Remove', 'CombinedLayers', settings));
        },
      },
      hcs.parts,
    );
    this.#restored = applied.leases.get(undefined) ?? [];
    const containers = plan.containers.adopt.map((c) => this.#restoreContainer(c, applied.leases.get(c.id) ?? []));
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
      held.push(heldResource({ ...(h.fields as unknown as Omit<HeldResource, 'release' | 'lease'>), lease: restored.lease }));
    }
    const mounts: AppliedMount[] = [];
    for (const m of c.mounts) {
      const planned = m.planned as unknown as PlannedMount;
      const base = {
        index: m.index,
        planned,
        mount: m.mount as unknown as OciMount,
        ...(m.containerEntry ? { containerEntry: m.containerEntry as unknown as ContainerEntry } : {}),
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
        ...(c.layers ? { layers: c.layers as unknown as ComposedLayersInfo } : {}),
        held,
        mounts,
        nextMountIndex: c.nextMountIndex,
      },
    };
  }
}

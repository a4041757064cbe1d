/**
 * The guest halves of device requests in either delivery mode (test/support/guest-delivery.ts), so a
 * test states once what it injects and what it reads:
 *
 * - HCS-owned (`hcs`): a guest half is the `GuestRequest` inside an `HcsModifyComputeSystem`
 *   document (alone, or next to the host half of a combined request).
 * - bridge: a guest half is the `Request` of a GCS bridge `ModifySettings` addressed to the
 *   all-zero container id (gcs-bridge.md §5.1); HCS modify documents carry host halves only.
 *
 * The simulator traces both (`HcsModifyComputeSystem` and `bridge:ModifySettings` lines, native/README.md).
 */
import { expect } from 'chai';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NULL_CONTAINER_ID } from '../../src/hcs/gcs-bridge-protocol.js';
import type { GuestRequest } from '../../src/hcs/schema.js';
import { configureSimulator, type SimulatorFault } from '../../src/hcs/simulator-controls.js';
import { testGuestDelivery } from './guest-delivery.js';

export type GuestDeliveryMode = 'bridge' | 'hcs';

export interface GuestHalfFaultOptions {
  /** The Nth guest request (1-based, counted over every VM from when the fault list is set) fails; every one when omitted. */
  nth?: number;
  /** HRESULT the guest half fails with. @default E_FAIL (the simulator's default) */
  hr?: number;
  message?: string;
}

/**
 * The fault "the guest half of the Nth guest request fails" in `delivery`:
 * - hcs: a `guestOnly` fault of `HcsModifyComputeSystem` (counting documents with a GuestRequest);
 *   HCS applies the host half of a combined document, then refuses the guest half.
 * - bridge: the guest refuses the Nth bridge `ModifySettings` (nothing applied in the guest); the
 *   host half of an Add was applied before it, the host half of a Remove is not sent.
 */
export function guestHalfFault(options: GuestHalfFaultOptions = {}, delivery: GuestDeliveryMode = testGuestDelivery): SimulatorFault {
  const common = {
    ...(options.nth !== undefined && { nth: options.nth }),
    ...(options.hr !== undefined && { hr: options.hr }),
    ...(options.message !== undefined && { message: options.message }),
  };
  return delivery === 'bridge' ? { fn: 'bridge:ModifySettings', ...common } : { fn: 'HcsModifyComputeSystem', guestOnly: true, ...common };
}

/** Replaces the simulator's faults with `guestHalfFault(options, delivery)`. */
export function failGuestHalf(options: GuestHalfFaultOptions = {}, delivery: GuestDeliveryMode = testGuestDelivery): void {
  configureSimulator({ faults: [guestHalfFault(options, delivery)] });
}

/** One line of the simulator's trace. */
export interface TraceLine {
  fn: string;
  id: string;
  doc: unknown;
  hr: number;
}

/** The lines of a trace file. */
export function readTrace(path: string): TraceLine[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as TraceLine);
}

/** Traces the simulator while `fn` runs; resolves with `fn`'s result and the trace lines. */
export async function traceDuring<T>(fn: () => Promise<T>): Promise<{ result: T; trace: TraceLine[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'guest-halves-'));
  const path = join(dir, 'hcs.trace');
  try {
    configureSimulator({ trace: path });
    const result = await fn();
    configureSimulator({ trace: null });
    return { result, trace: readTrace(path) };
  } finally {
    configureSimulator({ trace: null });
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The host half of a modify document (`GuestRequest` removed). */
export type HostHalf = Record<string, unknown> & { ResourcePath?: string; RequestType?: string; Settings?: unknown };

/**
 * One device request of a VM on the wire, in trace order: an HCS modify (its host half, and in
 * HCS-owned mode its `GuestRequest`) or, in bridge mode, a bridge ModifySettings (guest only).
 */
export interface WireRequest {
  fn: 'HcsModifyComputeSystem' | 'bridge:ModifySettings';
  /** The modify document without its GuestRequest; undefined for a guest-only request. */
  host?: HostHalf;
  guest?: GuestRequest;
  hr: number;
}

/**
 * The device requests of `systemId` in `trace`, checking the delivery's wire rules on the way:
 * bridge → no HCS modify carries a GuestRequest and every bridge ModifySettings is addressed to the
 * all-zero container id with the all-zero activity id (hcsshim's `nullContainerID`); hcs → the
 * guest sent nothing over a bridge.
 */
export function wireRequests(trace: readonly TraceLine[], systemId: string, delivery: GuestDeliveryMode = testGuestDelivery): WireRequest[] {
  const out: WireRequest[] = [];
  for (const line of trace) {
    if (line.id !== systemId) continue;
    if (line.fn === 'HcsModifyComputeSystem') {
      const { GuestRequest: guest, ...host } = line.doc as HostHalf & { GuestRequest?: GuestRequest };
      if (delivery === 'bridge') expect(guest, `bridge mode: an HCS modify carries no GuestRequest: ${JSON.stringify(line.doc)}`).to.equal(undefined);
      out.push({ fn: line.fn, ...(Object.keys(host).length > 0 && { host }), ...(guest !== undefined && { guest }), hr: line.hr });
    } else if (line.fn === 'bridge:ModifySettings') {
      expect(delivery, `hcs mode: nothing goes over a bridge: ${JSON.stringify(line.doc)}`).to.equal('bridge');
      const doc = line.doc as { ContainerId?: unknown; ActivityId?: unknown; Request?: GuestRequest };
      expect(Object.keys(doc).sort(), JSON.stringify(doc)).to.deep.equal(['ActivityId', 'ContainerId', 'Request']);
      expect(doc.ContainerId, 'ModifySettings addresses the UVM as the all-zero container id').to.equal(NULL_CONTAINER_ID);
      expect(doc.ActivityId).to.equal(NULL_CONTAINER_ID);
      out.push({ fn: line.fn, guest: doc.Request, hr: line.hr });
    }
  }
  return out;
}

/** The guest requests of `systemId` in `trace`, in trace order (see `wireRequests`). */
export function guestRequests(trace: readonly TraceLine[], systemId: string, delivery: GuestDeliveryMode = testGuestDelivery): GuestRequest[] {
  return wireRequests(trace, systemId, delivery).flatMap((w) => (w.guest ? [w.guest] : []));
}

/** The host halves (HCS modify documents without GuestRequest) of `systemId` in `trace`, in trace order. */
export function hostRequests(trace: readonly TraceLine[], systemId: string, delivery: GuestDeliveryMode = testGuestDelivery): HostHalf[] {
  return wireRequests(trace, systemId, delivery).flatMap((w) => (w.host ? [w.host] : []));
}

/**
 * What `delivery` puts on the wire for a request with both halves, as `WireRequest`s in order:
 * one combined HCS modify (hcs), or — bridge — Add: host then guest; Remove: guest then host.
 */
export function expectedWire(host: HostHalf, guest: GuestRequest, delivery: GuestDeliveryMode = testGuestDelivery): Omit<WireRequest, 'hr'>[] {
  if (delivery === 'hcs') return [{ fn: 'HcsModifyComputeSystem', host, guest }];
  const h: Omit<WireRequest, 'hr'> = { fn: 'HcsModifyComputeSystem', host };
  const g: Omit<WireRequest, 'hr'> = { fn: 'bridge:ModifySettings', guest };
  return guest.RequestType === 'Remove' ? [g, h] : [h, g];
}

/**
 * HCS system events (`HcsSetComputeSystemCallback`). HCS calls one registered callback on one of
 * its own threads; koffi hands the call to the main thread and parks the HCS thread until the
 * JavaScript function returns, so that function only copies the event out (type and a copy of
 * its JSON) and queues the handler — it never waits, never throws. As in hcsshim, the callback's
 * context is a small integer id looked up in a table (never a pointer to a JS object), one
 * callback is registered per process and library, forever, and an event for an id no longer in
 * the table (its handle was closed meanwhile) is dropped.
 */
import type { ComputeCore, SystemHandle } from './computecore.js';

/** HCS_EVENT_TYPE values the library reacts to ([D] HCS_EVENT_TYPE.md). */
export const HcsEventType = {
  SystemExited: 0x1,
  SystemCrashInitiated: 0x2,
  SystemCrashReport: 0x3,
  ServiceDisconnect: 0x2000000,
} as const;

/** One event as it arrived: its type and its JSON document (parsed, or the raw text if it is not JSON). */
export interface HcsSystemEvent {
  type: number;
  /** The parsed EventData; undefined when there was none. */
  data: unknown;
  /** The EventData text as HCS sent it. */
  raw: string | undefined;
}

/**
 * How a compute system exited (`SystemExitStatus` of the SystemExited event, or the loss of the
 * HCS service).
 */
export interface SystemExit {
  /** `GracefulExit` (shutdown), `ForcedExit` (terminate), `UnexpectedExit`, `Unknown`, `None`, or `ServiceDisconnect` (no event document: the connection to HCS was lost). */
  exitType: string;
  /** HRESULT of the exit (`Status`), 0 when absent. */
  status: number;
  /** `Attribution` records as HCS sent them (who or what stopped the VM). */
  attribution: readonly Record<string, unknown>[];
  /** The event document. */
  document: string | undefined;
}

/** Reads a SystemExited / ServiceDisconnect event; undefined for other events. */
export function systemExitOf(event: HcsSystemEvent): SystemExit | undefined {
  if (event.type === HcsEventType.ServiceDisconnect) {
    return { exitType: 'ServiceDisconnect', status: 0, attribution: [], document: event.raw };
  }
  if (event.type !== HcsEventType.SystemExited) return undefined;
  const d = (event.data !== null && typeof event.data === 'object' ? event.data : {}) as Record<string, unknown>;
  const attribution = Array.isArray(d.Attribution)
    ? d.Attribution.filter((r): r is Record<string, unknown> => r !== null && typeof r === 'object')
    : [];
  return {
    exitType: typeof d.ExitType === 'string' ? d.ExitType : 'Unknown',
    status: typeof d.Status === 'number' ? d.Status | 0 : 0,
    attribution,
    document: event.raw,
  };
}

type Handler = (event: HcsSystemEvent) => void;

const handlers = new Map<number, Handler>();
const registered = new WeakMap<ComputeCore, unknown>();
let nextContext = 1;

function onEvent(lib: ComputeCore, eventPtr: unknown, context: number | bigint): void {
  // On the main thread while an HCS thread waits: copy, queue, return.
  try {
    const handler = handlers.get(Number(context));
    if (!handler) return;
    const { type, data } = lib.decodeEvent!(eventPtr);
    let parsed: unknown;
    if (data !== undefined && data !== '') {
      try {
        parsed = JSON.parse(data);
      } catch {
        parsed = undefined;
      }
    }
    const event: HcsSystemEvent = { type, data: parsed, raw: data === '' ? undefined : data };
    queueMicrotask(() => handler(event));
  } catch {
    // nothing sensible to do on an HCS thread's behalf
  }
}

function eventCallback(lib: ComputeCore): unknown {
  let callback = registered.get(lib);
  if (callback === undefined) {
    callback = lib.registerEventCallback!((ptr, context) => onEvent(lib, ptr, context));
    registered.set(lib, callback);
  }
  return callback;
}

/** One handle's subscription; `cancel()` drops its later events (idempotent). */
export interface EventSubscription {
  cancel(): void;
}

/**
 * Registers `handler` for the events of `system` (`HcsSetComputeSystemCallback`, options None).
 * Returns the HRESULT and, on success, the subscription. The handler runs on the main thread,
 * outside the native callback. A library without events (a scripted test library) gives hr 0
 * and no subscription.
 */
export function subscribeSystemEvents(lib: ComputeCore, system: SystemHandle, handler: Handler): { hr: number; subscription?: EventSubscription } {
  if (!lib.setComputeSystemCallback || !lib.registerEventCallback || !lib.decodeEvent) return { hr: 0 };
  const callback = eventCallback(lib);
  let id = nextContext;
  while (handlers.has(id)) id = id >= 0x7fffffff ? 1 : id + 1;
  nextContext = id >= 0x7fffffff ? 1 : id + 1;
  handlers.set(id, handler);
  const hr = lib.setComputeSystemCallback(system, 0, id, callback);
  if (hr < 0) {
    handlers.delete(id);
    return { hr };
  }
  return { hr, subscription: { cancel: () => void handlers.delete(id) } };
}

/** Subscriptions not cancelled yet (diagnostics and leak checks). */
export function activeEventSubscriptions(): number {
  return handlers.size;
}

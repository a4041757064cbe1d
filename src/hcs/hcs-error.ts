import { UvmError, type UvmErrorCode } from '../core/errors.js';
import type { HcsErrorEvent, HcsResultError } from './schema.js';

/**
 * HRESULTs the binding produces or branches on. HCS documents the `0x8037xxxx` form (facility
 * 0x37 with the error bit); older vmcompute-era code uses `0xC037xxxx` for the same conditions.
 * Every value is kept as a signed 32-bit integer, the way HCS returns it.
 */
export const HResult = {
  S_OK: 0,
  E_NOTIMPL: 0x80004001 | 0,
  E_POINTER: 0x80004003 | 0,
  E_ABORT: 0x80004004 | 0,
  E_FAIL: 0x80004005 | 0,
  E_ACCESSDENIED: 0x80070005 | 0,
  E_HANDLE: 0x80070006 | 0,
  E_OUTOFMEMORY: 0x8007000e | 0,
  E_INVALIDARG: 0x80070057 | 0,
  E_NOT_FOUND: 0x80070490 | 0,
  HCS_E_TERMINATED_DURING_START: 0x80370100 | 0,
  HCS_E_INVALID_STATE: 0x80370105 | 0,
  HCS_E_UNEXPECTED_EXIT: 0x80370106 | 0,
  HCS_E_TERMINATED: 0x80370107 | 0,
  HCS_E_CONNECTION_TIMEOUT: 0x80370109 | 0,
  HCS_E_UNKNOWN_MESSAGE: 0x8037010b | 0,
  HCS_E_INVALID_JSON: 0x8037010d | 0,
  HCS_E_SYSTEM_NOT_FOUND: 0x8037010e | 0,
  HCS_E_SYSTEM_ALREADY_EXISTS: 0x8037010f | 0,
  HCS_E_SYSTEM_ALREADY_STOPPED: 0x80370110 | 0,
  HCS_E_OPERATION_NOT_STARTED: 0x80370115 | 0,
  HCS_E_OPERATION_ALREADY_STARTED: 0x80370116 | 0,
  HCS_E_OPERATION_PENDING: 0x80370117 | 0,
  HCS_E_OPERATION_TIMEOUT: 0x80370118 | 0,
  HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET: 0x80370119 | 0,
  HCS_E_ACCESS_DENIED: 0x8037011b | 0,
  HCS_E_GUEST_CRITICAL_ERROR: 0x8037011c | 0,
  HCS_E_PROCESS_ALREADY_STOPPED: 0x8037011f | 0,
  HCS_E_SYSTEM_NOT_CONFIGURED_FOR_OPERATION: 0x80370120 | 0,
} as const;

/** Low words of the facility-0x37 (HCS / vmcompute) codes used by the predicates. */
const HcsLow = {
  OPERATION_PENDING_V1: 0x0103,
  INVALID_STATE: 0x0105,
  CONNECTION_TIMEOUT: 0x0109,
  UNKNOWN_MESSAGE: 0x010b,
  INVALID_JSON: 0x010d,
  SYSTEM_NOT_FOUND: 0x010e,
  SYSTEM_ALREADY_STOPPED: 0x0110,
  OPERATION_PENDING: 0x0117,
  OPERATION_TIMEOUT: 0x0118,
  ACCESS_DENIED: 0x011b,
  PROCESS_ALREADY_STOPPED: 0x011f,
} as const;

/** Win32 error codes (the low word of a facility-7 HRESULT) used by the predicates. */
const Win32 = {
  ACCESS_DENIED: 0x5,
  INVALID_HANDLE: 0x6,
  INVALID_DATA: 0xd,
  NOT_SUPPORTED: 0x32,
  NOT_FOUND: 0x490,
  TIMEOUT: 0x5b4,
} as const;

const FACILITY_MASK = 0x1fff0000;
const FACILITY_WIN32 = 0x00070000;
const FACILITY_HCS = 0x00370000;

/** An HRESULT reduced to what it means: an HCS (facility 0x37) code, a Win32 code, or anything else. */
export type NormalizedHresult =
  | { readonly kind: 'success' }
  | { readonly kind: 'hcs'; readonly code: number }
  | { readonly kind: 'win32'; readonly code: number }
  | { readonly kind: 'other'; readonly hresult: number };

/**
 * Classifies an HRESULT the way hcsshim does, but accepting both spellings of HCS errors:
 * `0x8037xxxx` and `0xC037xxxx` → `{kind:'hcs', code: xxxx}`; `0x8007xxxx` (facility WIN32) →
 * `{kind:'win32', code: xxxx}`; a small positive number is taken as a bare Win32 error code
 * (the form hcsshim's sentinels such as `0x490` use). Accepts signed or unsigned 32-bit values.
 */
export function normalizeHresult(hr: number): NormalizedHresult {
  const s = hr | 0;
  if (s === 0) return { kind: 'success' };
  if (s > 0) return s <= 0xffff ? { kind: 'win32', code: s } : { kind: 'other', hresult: s };
  const facility = s & FACILITY_MASK;
  if (facility === FACILITY_HCS) return { kind: 'hcs', code: s & 0xffff };
  if (facility === FACILITY_WIN32) return { kind: 'win32', code: s & 0xffff };
  return { kind: 'other', hresult: s };
}

/** `0x8037010E`-style rendering of an HRESULT (unsigned, upper-case hex, 8 digits). */
export function formatHresult(hr: number): string {
  return `0x${(hr >>> 0).toString(16).toUpperCase().padStart(8, '0')}`;
}

const NAMES = new Map<number, string>(Object.entries(HResult).map(([name, value]) => [value, name]));

/** The symbolic name of a known HRESULT (either HCS spelling), or undefined. */
export function hresultName(hr: number): string | undefined {
  const direct = NAMES.get(hr | 0);
  if (direct !== undefined) return direct;
  const n = normalizeHresult(hr);
  if (n.kind === 'hcs') return NAMES.get((0x80370000 | n.code) | 0);
  return undefined;
}

function hresultOf(errOrHr: unknown): number | undefined {
  if (typeof errOrHr === 'number') return errOrHr;
  if (errOrHr instanceof HcsError) return errOrHr.hresult;
  return undefined;
}

function matches(errOrHr: unknown, hcs: readonly number[], win32: readonly number[]): boolean {
  const hr = hresultOf(errOrHr);
  if (hr === undefined) return false;
  const n = normalizeHresult(hr);
  if (n.kind === 'hcs') return hcs.includes(n.code);
  if (n.kind === 'win32') return win32.includes(n.code);
  return false;
}

/** The system (or element) does not exist: HCS_E_SYSTEM_NOT_FOUND (either form) or ERROR_NOT_FOUND. */
export function isNotExist(errOrHr: unknown): boolean {
  return matches(errOrHr, [HcsLow.SYSTEM_NOT_FOUND], [Win32.NOT_FOUND]);
}

/** Already stopped: HCS_E_SYSTEM_ALREADY_STOPPED, HCS_E_PROCESS_ALREADY_STOPPED or ERROR_NOT_FOUND. */
export function isAlreadyStopped(errOrHr: unknown): boolean {
  return matches(errOrHr, [HcsLow.SYSTEM_ALREADY_STOPPED, HcsLow.PROCESS_ALREADY_STOPPED], [Win32.NOT_FOUND]);
}

/** The system is not in a state that allows the call: HCS_E_INVALID_STATE (either form). */
export function isInvalidState(errOrHr: unknown): boolean {
  return matches(errOrHr, [HcsLow.INVALID_STATE], []);
}

/**
 * A timeout: HCS_E_OPERATION_TIMEOUT / HCS_E_CONNECTION_TIMEOUT (either form), ERROR_TIMEOUT, or
 * an HcsError with code TIMEOUT (the binding's own timeout, which cancelled the operation).
 */
export function isTimeout(errOrHr: unknown): boolean {
  if (errOrHr instanceof HcsError && errOrHr.code === 'TIMEOUT') return true;
  return matches(errOrHr, [HcsLow.OPERATION_TIMEOUT, HcsLow.CONNECTION_TIMEOUT], [Win32.TIMEOUT]);
}

/** Access denied: HCS_E_ACCESS_DENIED (either form) or ERROR_ACCESS_DENIED. */
export function isAccessDenied(errOrHr: unknown): boolean {
  return matches(errOrHr, [HcsLow.ACCESS_DENIED], [Win32.ACCESS_DENIED]);
}

/**
 * The request is not supported by this HCS / guest: HCS_E_INVALID_JSON, HCS_E_UNKNOWN_MESSAGE
 * (either form), ERROR_INVALID_DATA or ERROR_NOT_SUPPORTED.
 */
export function isNotSupported(errOrHr: unknown): boolean {
  return matches(errOrHr, [HcsLow.INVALID_JSON, HcsLow.UNKNOWN_MESSAGE], [Win32.INVALID_DATA, Win32.NOT_SUPPORTED]);
}

/** An operation is still pending: HCS_E_OPERATION_PENDING or the v1 0xC0370103. */
export function isPending(errOrHr: unknown): boolean {
  return matches(errOrHr, [HcsLow.OPERATION_PENDING, HcsLow.OPERATION_PENDING_V1], []);
}

/**
 * "The VM is not available": teardown of it can be treated as done (hcsshim's rule):
 * not-exist, already-stopped, invalid-state, a closed handle, the UVM's unexpected exit, or its
 * GCS bridge gone (the guest dies with the VM).
 */
export function isVmUnavailable(err: unknown): boolean {
  return isNotExist(err) || isAlreadyStopped(err) || isInvalidState(err) || UvmError.is(err, 'HANDLE_CLOSED', 'UVM_EXITED', 'BRIDGE_FAILED');
}

/** What an `HcsError` is built from. */
export interface HcsErrorInit {
  /** The HCS function or logical operation, e.g. `HcsModifyComputeSystem`. */
  op: string;
  /** The failing HRESULT (signed 32-bit). */
  hresult: number;
  /** The compute system id, when the call concerns one. */
  systemId?: string;
  /** `ErrorMessage` of the result document. */
  errorMessage?: string;
  /** `ErrorEvents` of the result document. */
  events?: readonly HcsErrorEvent[];
  /** HCS_ERROR (default), or TIMEOUT / ABORTED when the binding cancelled the operation. */
  code?: Extract<UvmErrorCode, 'HCS_ERROR' | 'TIMEOUT' | 'ABORTED'>;
  cause?: unknown;
  /** Overrides the text after `<op> <systemId>: ` (default: ErrorMessage, else the HRESULT). */
  text?: string;
}

/**
 * A failure reported by HCS, with the result document's message and events. `message` is
 * `<op> <systemId>: <text>` followed by one `[Event Detail: …]` line per event, like hcsshim.
 */
export class HcsError extends UvmError {
  readonly op: string;
  readonly hresult: number;
  readonly systemId: string | undefined;
  readonly errorMessage: string | undefined;
  readonly events: readonly HcsErrorEvent[];

  constructor(init: HcsErrorInit) {
    const hresult = init.hresult | 0;
    const events = init.events ?? [];
    super(init.code ?? 'HCS_ERROR', renderMessage(init, hresult, events), {
      cause: init.cause,
      details: { op: init.op, hresult: formatHresult(hresult), systemId: init.systemId },
    });
    this.name = 'HcsError';
    this.op = init.op;
    this.hresult = hresult;
    this.systemId = init.systemId;
    this.errorMessage = init.errorMessage;
    this.events = events;
  }
}

function renderMessage(init: HcsErrorInit, hresult: number, events: readonly HcsErrorEvent[]): string {
  const name = hresultName(hresult);
  const hrText = `HRESULT ${formatHresult(hresult)}${name ? ` (${name})` : ''}`;
  const text = init.text ?? (init.errorMessage ? `${init.errorMessage} (${hrText})` : hrText);
  const head = init.systemId ? `${init.op} ${init.systemId}: ${text}` : `${init.op}: ${text}`;
  return [head, ...events.map(renderEvent)].join('\n');
}

/** hcsshim's event rendering: parts present only when non-empty. */
export function renderEvent(e: HcsErrorEvent): string {
  const parts: string[] = [];
  if (e.Message) parts.push(e.Message);
  if (e.StackTrace) parts.push(`Stack Trace: ${e.StackTrace}`);
  if (e.Provider) parts.push(`Provider: ${e.Provider}`);
  if (e.EventId) parts.push(`EventID: ${e.EventId}`);
  if (e.Flags) parts.push(`flags: ${e.Flags}`);
  if (e.Source) parts.push(`Source: ${e.Source}`);
  return `[Event Detail: ${parts.join(' ')}]`;
}

/**
 * Parses an HCS result document (`{"Error","ErrorMessage","ErrorEvents"}`). Returns undefined for
 * an empty, unparseable or non-object document, and drops fields of the wrong type, so a
 * malformed document never hides the HRESULT.
 */
export function parseResultError(document: string | undefined): HcsResultError | undefined {
  if (document === undefined || document.trim() === '') return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(document);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return undefined;
  const doc = parsed as Record<string, unknown>;
  const out: HcsResultError = {};
  if (typeof doc.Error === 'number') out.Error = doc.Error;
  if (typeof doc.ErrorMessage === 'string') out.ErrorMessage = doc.ErrorMessage;
  if (Array.isArray(doc.ErrorEvents)) {
    out.ErrorEvents = doc.ErrorEvents.filter((e): e is Record<string, unknown> => e !== null && typeof e === 'object').map(
      (e) => {
        const ev: HcsErrorEvent = {};
        if (typeof e.Message === 'string') ev.Message = e.Message;
        if (typeof e.StackTrace === 'string') ev.StackTrace = e.StackTrace;
        if (typeof e.Provider === 'string') ev.Provider = e.Provider;
        if (typeof e.EventId === 'number') ev.EventId = e.EventId;
        if (typeof e.Flags === 'number') ev.Flags = e.Flags;
        if (typeof e.Source === 'string') ev.Source = e.Source;
        if (e.Data !== undefined) ev.Data = e.Data;
        return ev;
      },
    );
  }
  return out;
}

/**
 * The error for a failed HCS call: the HRESULT returned by HCS plus whatever the result document
 * says. An unparseable document yields an HcsError carrying only the raw HRESULT.
 */
export function hcsErrorFromResult(op: string, hresult: number, document: string | undefined, systemId?: string): HcsError {
  const parsed = parseResultError(document);
  return new HcsError({
    op,
    hresult,
    systemId,
    errorMessage: parsed?.ErrorMessage,
    events: parsed?.ErrorEvents,
  });
}

/**
 * A refusal by the guest over the GCS bridge (`bridge:<Message>` with the guest's HRESULT), as
 * opposed to a failed bridge (BRIDGE_FAILED) or an HCS call. The GCS gives no distinct "not
 * found": removing what it does not have is either a success (the Linux GCS's unmount and unplug)
 * or a plain E_FAIL (a VPMEM mapping's device-mapper target, the Windows GCS).
 */
export function isGuestRefusal(err: unknown): err is HcsError {
  return err instanceof HcsError && err.code === 'HCS_ERROR' && err.op.startsWith('bridge:');
}

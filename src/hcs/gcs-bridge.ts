/**
 * The host side of the GCS bridge (hcsshim `internal/gcs`): RPCs to the guest agent over one
 * byte stream (an accepted hvsocket connection). See docs/hcs.md ("Guest delivery").
 *
 * - Requests are numbered from 0 and matched to responses by id (the guest may answer out of order).
 * - A response's `Result` (HRESULT) other than 0 rejects that call with an `HcsError` (code
 *   HCS_ERROR; `details.records` = the guest's `ErrorRecords`, `errorMessage` its `ErrorMessage`).
 * - The bridge fails as a whole — every pending and later call rejects with BRIDGE_FAILED and the
 *   `onFailure` listeners run once — on EOF or a socket error, a response with an unknown id, a body
 *   that is not a JSON object, a message over 64 KiB or under 16 bytes, a guest request, or a call
 *   passing its deadline (hcsshim's 5-minute `bridgeFailureTimeout` by default).
 * - Notifications are logged and dropped (this library runs no container through the bridge).
 */
import type { Duplex } from 'node:stream';
import { UvmError } from '../core/errors.js';
import { LogField, type Logger } from '../core/logger.js';
import { HcsError } from './hcs-error.js';
import type { HcsCallOptions } from './hcs-api.js';
import {
  BRIDGE_MAX_MESSAGE_SIZE,
  BRIDGE_PROTOCOL_VERSION,
  encodeFrame,
  FrameError,
  FrameReader,
  messageKind,
  NULL_ACTIVITY_ID,
  NULL_CONTAINER_ID,
  requestType,
  responseType,
  rpcName,
  type BridgeFrame,
  type BridgeRpcName,
} from './gcs-bridge-protocol.js';
import type { GuestRequest, HcsErrorEvent } from './schema.js';

/** hcsshim's `bridgeFailureTimeout`: a call not answered by then fails the whole bridge. */
export const DEFAULT_BRIDGE_RPC_TIMEOUT_MS = 5 * 60 * 1000;

/** Why a bridge failed (`details.reason` of BRIDGE_FAILED). */
export type BridgeFailureReason =
  | 'closed'
  | 'eof'
  | 'socket-error'
  | 'write-error'
  | 'unknown-id'
  | 'bad-json'
  | 'bad-response'
  | 'oversized'
  | 'bad-size'
  | 'unexpected-message'
  | 'deadline';

/** One `ErrorRecords` entry of a failed response. */
export interface GuestErrorRecord {
  Result?: number;
  Message?: string;
  StackTrace?: string;
  ModuleName?: string;
  FileName?: string;
  Line?: number;
  FunctionName?: string;
}

/** The guest's capabilities from NegotiateProtocol (hcsshim `GcsCapabilities`). */
export interface GuestCapabilities {
  SendHostCreateMessage?: boolean;
  SendHostStartMessage?: boolean;
  HvSocketConfigOnStartup?: boolean;
  SupportedSchemaVersions?: { Major: number; Minor: number }[];
  RuntimeOsType?: string;
  GuestDefinedCapabilities?: Record<string, unknown>;
  [field: string]: unknown;
}

export interface GcsBridgeOptions {
  /** For errors and logs. */
  uvmId: string;
  logger: Logger;
  /** Deadline of a call that names none; passing it fails the whole bridge. @default 5 minutes */
  rpcTimeoutMs?: number;
  /** Largest incoming message. @default 64 KiB */
  maxMessageSize?: number;
}

/** Per-call options of a bridge RPC. */
export interface BridgeCallOptions {
  /** Deadline of this call; passing it fails the whole bridge (hcsshim's rule). */
  timeoutMs?: number;
  /**
   * Honoured before the request is sent (ABORTED, nothing sent). After that only when the RPC may
   * be abandoned (`cancellable`; hcsshim's `allowCancel`): ModifySettings is not, since the guest
   * may apply it whatever the host does.
   */
  signal?: AbortSignal;
}

interface PendingCall {
  readonly rpc: BridgeRpcName;
  readonly type: number;
  /** Undefined once the caller gave up (abandoned): the response is still matched and dropped. */
  settle?: { resolve: (body: Record<string, unknown>) => void; reject: (err: unknown) => void };
  timer?: NodeJS.Timeout;
}

/** The host end of one GCS bridge connection. */
export class GcsBridge {
  readonly #stream: Duplex;
  readonly #uvmId: string;
  readonly #logger: Logger;
  readonly #rpcTimeoutMs: number;
  readonly #reader: FrameReader;
  readonly #pending = new Map<bigint, PendingCall>();
  readonly #failureListeners: ((err: UvmError) => void)[] = [];
  #nextId = 0n;
  #failure: UvmError | undefined;

  constructor(stream: Duplex, options: GcsBridgeOptions) {
    this.#stream = stream;
    this.#uvmId = options.uvmId;
    this.#logger = options.logger;
    this.#rpcTimeoutMs = options.rpcTimeoutMs ?? DEFAULT_BRIDGE_RPC_TIMEOUT_MS;
    this.#reader = new FrameReader(options.maxMessageSize ?? BRIDGE_MAX_MESSAGE_SIZE);
    stream.on('data', (chunk: Buffer) => this.#onData(chunk));
    stream.on('end', () => this.#fail('eof', 'the guest closed the bridge'));
    stream.on('close', () => this.#fail('eof', 'the bridge connection closed'));
    stream.on('error', (err) => this.#fail('socket-error', `bridge connection error: ${err.message}`, err));
  }

  /** The failure, once the bridge has failed (or was closed). */
  get failure(): UvmError | undefined {
    return this.#failure;
  }

  /** Runs `listener` once when the bridge fails (not on `close()`). */
  onFailure(listener: (err: UvmError) => void): void {
    this.#failureListeners.push(listener);
  }

  /** Calls still waiting for their response. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /**
   * NegotiateProtocol with min = max = 4: resolves with the guest's capabilities; HCS_ERROR when
   * the guest refuses, INVALID_STATE (and the bridge closed) when it answers another version.
   */
  async negotiate(options: BridgeCallOptions = {}): Promise<GuestCapabilities> {
    const reply = await this.rpc('NegotiateProtocol', { ContainerId: '', MinimumVersion: BRIDGE_PROTOCOL_VERSION, MaximumVersion: BRIDGE_PROTOCOL_VERSION }, { ...options, cancellable: true });
    if (reply.Version !== BRIDGE_PROTOCOL_VERSION) {
      const err = new UvmError('INVALID_STATE', `the guest of ${this.#uvmId} negotiated bridge protocol ${String(reply.Version)}, not ${BRIDGE_PROTOCOL_VERSION}`, {
        details: { uvmId: this.#uvmId, version: reply.Version },
      });
      this.close();
      throw err;
    }
    const caps = reply.Capabilities;
    return caps !== null && typeof caps === 'object' && !Array.isArray(caps) ? (caps as GuestCapabilities) : {};
  }

  /**
   * ModifySettings addressed to the UVM (the all-zero container id, as hcsshim sends it). Not
   * cancellable once sent: the guest may apply it whatever the host does.
   */
  async modifySettings(request: GuestRequest, options: HcsCallOptions = {}): Promise<void> {
    await this.rpc('ModifySettings', { ContainerId: NULL_CONTAINER_ID, Request: request }, { timeoutMs: options.timeoutMs, signal: options.signal });
  }

  /**
   * Sends one request (`ContainerId`, `ActivityId` = zero GUID unless given, then `body`) and
   * resolves with the response body.
   */
  rpc(rpc: BridgeRpcName, body: Record<string, unknown>, options: BridgeCallOptions & { cancellable?: boolean } = {}): Promise<Record<string, unknown>> {
    if (this.#failure) return Promise.reject(this.#failedCall(rpc));
    if (options.signal?.aborted) return Promise.reject(aborted(rpc, this.#uvmId, options.signal.reason));
    const id = this.#nextId++;
    const type = requestType(rpc);
    const frame = encodeFrame(type, id, { ContainerId: NULL_CONTAINER_ID, ActivityId: NULL_ACTIVITY_ID, ...body });
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const call: PendingCall = { rpc, type, settle: { resolve, reject } };
      this.#pending.set(id, call);
      const timeoutMs = options.timeoutMs ?? this.#rpcTimeoutMs;
      call.timer = setTimeout(() => this.#fail('deadline', `${rpc} (id ${id}) got no response within ${timeoutMs} ms`, undefined, { op: rpc, id: Number(id) }), timeoutMs);
      call.timer.unref();
      if (options.cancellable && options.signal) {
        const signal = options.signal;
        const onAbort = (): void => {
          const settle = call.settle;
          if (!settle) return;
          call.settle = undefined;
          clearTimeout(call.timer);
          settle.reject(aborted(rpc, this.#uvmId, signal.reason));
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      this.#logger.debug('bridge request', { [LogField.uvmId]: this.#uvmId, [LogField.operation]: rpc, id: Number(id) });
      this.#stream.write(frame, (err) => {
        if (err) this.#fail('write-error', `writing ${rpc} to the bridge failed: ${err.message}`, err);
      });
    });
  }

  /** Closes the connection: pending and later calls reject with BRIDGE_FAILED (reason `closed`). */
  close(): void {
    this.#fail('closed', 'the bridge was closed', undefined, undefined, false);
    this.#stream.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#failure) return;
    let frames: BridgeFrame[];
    try {
      frames = this.#reader.push(chunk);
    } catch (err) {
      if (err instanceof FrameError) this.#fail(err.reason, err.message);
      else this.#fail('bad-size', String(err), err);
      return;
    }
    for (const frame of frames) {
      if (this.#failure) return;
      this.#onFrame(frame);
    }
  }

  #onFrame(frame: BridgeFrame): void {
    const kind = messageKind(frame.type);
    if (kind !== 'response' && kind !== 'notification') {
      this.#fail('unexpected-message', `the guest sent a message of type 0x${(frame.type >>> 0).toString(16)} (only responses and notifications are expected)`);
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse(frame.body.toString('utf8'));
    } catch {
      this.#fail('bad-json', `bridge message id ${frame.id} of type 0x${(frame.type >>> 0).toString(16)} is not JSON`);
      return;
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      this.#fail('bad-json', `bridge message id ${frame.id} is not a JSON object`);
      return;
    }
    const doc = body as Record<string, unknown>;
    if (kind === 'notification') {
      this.#logger.info('guest notification dropped', {
        [LogField.uvmId]: this.#uvmId,
        type: `0x${(frame.type >>> 0).toString(16)}`,
        containerId: doc.ContainerId,
        notification: doc.Type,
      });
      return;
    }
    const call = this.#pending.get(frame.id);
    if (!call) {
      this.#fail('unknown-id', `the guest answered unknown request id ${frame.id}`, undefined, { id: Number(frame.id) });
      return;
    }
    if (frame.type >>> 0 !== responseType(call.type)) {
      this.#fail('bad-response', `the guest answered ${call.rpc} (id ${frame.id}) with message type 0x${(frame.type >>> 0).toString(16)} (${rpcName(frame.type) ?? 'unknown'})`, undefined, {
        op: call.rpc,
        id: Number(frame.id),
      });
      return;
    }
    this.#pending.delete(frame.id);
    clearTimeout(call.timer);
    const settle = call.settle;
    if (!settle) return;
    const result = typeof doc.Result === 'number' ? doc.Result | 0 : 0;
    if (result === 0) {
      settle.resolve(doc);
      return;
    }
    settle.reject(this.#guestError(call.rpc, result, doc));
  }

  #guestError(rpc: BridgeRpcName, result: number, doc: Record<string, unknown>): HcsError {
    const records: GuestErrorRecord[] = Array.isArray(doc.ErrorRecords) ? (doc.ErrorRecords.filter((r) => r !== null && typeof r === 'object') as GuestErrorRecord[]) : [];
    const message = typeof doc.ErrorMessage === 'string' && doc.ErrorMessage !== '' ? doc.ErrorMessage : undefined;
    const events: HcsErrorEvent[] = records.map((r) => {
      const e: HcsErrorEvent = {};
      if (typeof r.Message === 'string') e.Message = r.Message;
      if (typeof r.StackTrace === 'string') e.StackTrace = r.StackTrace;
      if (typeof r.ModuleName === 'string') e.Source = r.ModuleName;
      return e;
    });
    const err = new HcsError({ op: `bridge:${rpc}`, hresult: result, systemId: this.#uvmId, errorMessage: message, events });
    Object.assign(err.details, { message, records });
    for (const r of records) this.#logger.debug('guest error record', { [LogField.uvmId]: this.#uvmId, [LogField.operation]: rpc, record: r });
    return err;
  }

  #failedCall(rpc: BridgeRpcName): UvmError {
    const f = this.#failure!;
    return new UvmError('BRIDGE_FAILED', `${rpc} ${this.#uvmId}: ${f.message}`, { cause: f, details: { ...f.details, op: rpc } });
  }

  #fail(reason: BridgeFailureReason, message: string, cause?: unknown, extra: Record<string, unknown> = {}, notify = true): void {
    if (this.#failure) return;
    const failure = (this.#failure = new UvmError('BRIDGE_FAILED', `GCS bridge of ${this.#uvmId} failed: ${message}`, {
      cause,
      details: { uvmId: this.#uvmId, reason, ...extra },
    }));
    const pending = [...this.#pending.values()];
    this.#pending.clear();
    for (const call of pending) {
      clearTimeout(call.timer);
      call.settle?.reject(this.#failedCall(call.rpc));
    }
    if (reason !== 'closed' && reason !== 'eof') this.#stream.destroy();
    if (!notify) return;
    this.#logger.warn('GCS bridge failed', { [LogField.uvmId]: this.#uvmId, reason, error: failure.message, pending: pending.length });
    for (const listener of this.#failureListeners.splice(0)) listener(failure);
  }
}

function aborted(rpc: string, uvmId: string, reason: unknown): UvmError {
  return new UvmError('ABORTED', `${rpc} ${uvmId}: aborted`, { cause: reason, details: { uvmId, op: rpc } });
}

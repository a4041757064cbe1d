/**
 * The hvsocket channels between the host and one UVM's guest (hcsshim `internal/uvm/start.go`):
 * opened after create and before start, accepted during `start()`.
 *
 * - LCOW, both delivery modes: entropy (the host writes 512 random bytes and closes) and the GCS
 *   log (JSON lines forwarded to the logger with the UVM id). The guest's init needs both.
 * - Bridge mode: the GCS bridge (LCOW vsock port 0x40000000, WCOW `acef5661-…`): NegotiateProtocol
 *   v4, then for WCOW the null-container Create/Start when the guest asks and the HvSocket Update.
 *
 * Entropy and log are accepted in parallel, then the GCS, all under one deadline (hcsshim's
 * `GCSConnectionTimeout`, 2 minutes), aborted when the VM exits.
 */
import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { UvmError } from '../core/errors.js';
import { LogField, logLevelEnabled, type Logger } from '../core/logger.js';
import type { GuestOs } from '../devices/device-types.js';
import { GcsBridge, type GuestCapabilities } from '../hcs/gcs-bridge.js';
import { NULL_CONTAINER_ID } from '../hcs/gcs-bridge-protocol.js';
import type { HcsCallOptions } from '../hcs/hcs-api.js';
import {
  LCOW_ENTROPY_SERVICE_ID,
  LCOW_GCS_SERVICE_ID,
  LCOW_LOG_SERVICE_ID,
  WCOW_GCS_HOST_ID,
  WCOW_GCS_SERVICE_ID,
  type HvSocketListener,
  type HvSocketTransport,
} from '../hcs/hvsocket.js';
import { UTC_TIME_ZONE, type TimeZoneInformation } from '../hcs/host-time-zone.js';
import type { GuestRequest } from '../hcs/schema.js';
import type { GuestConnection } from './guest-connection.js';

/** hcsshim `vmutils.LinuxEntropyBytes`. */
export const LINUX_ENTROPY_BYTES = 512;
/** The longest guest log line forwarded whole (longer lines are cut). */
const MAX_LOG_LINE = 64 * 1024;

export interface GuestChannelsInit {
  uvmId: string;
  os: GuestOs;
  /** The compute system's `RuntimeId` (the hvsocket VM id). */
  runtimeId: string;
  /** Listen for the GCS and speak the bridge (shim-owned delivery). */
  bridge: boolean;
  /** The VM boots now: an LCOW guest dials entropy and log too. @default true for LCOW */
  boot?: boolean;
  transport: HvSocketTransport;
  logger: Logger;
  /** Deadline of all accepts together. */
  connectTimeoutMs: number;
  /** Per-RPC deadline of the bridge (default: hcsshim's 5 minutes). */
  rpcTimeoutMs?: number;
  /** WCOW: the time zone the null container's Create gives the guest. @default UTC */
  timeZone?: TimeZoneInformation;
}

/** The listeners, then the connections, of one UVM's guest. Also the UVM's `GuestConnection` in bridge mode. */
export class GuestChannels implements GuestConnection {
  readonly #init: GuestChannelsInit;
  readonly #logger: Logger;
  readonly #listeners = new Map<string, HvSocketListener>();
  readonly #streams = new Set<Duplex>();
  readonly #failureListeners: ((err: UvmError) => void)[] = [];
  #bridge: GcsBridge | undefined;
  #capabilities: GuestCapabilities | undefined;
  #closed = false;

  /** Use `GuestChannels.listen`. */
  constructor(init: GuestChannelsInit) {
    this.#init = init;
    this.#logger = init.logger;
  }

  /** The services this UVM's guest dials. */
  static services(os: GuestOs, bridge: boolean, boot = true): string[] {
    const lcow = os === 'linux';
    return [...(lcow && boot ? [LCOW_ENTROPY_SERVICE_ID, LCOW_LOG_SERVICE_ID] : []), ...(bridge ? [lcow ? LCOW_GCS_SERVICE_ID : WCOW_GCS_SERVICE_ID] : [])];
  }

  /** Opens the listeners (after create, before start). Nothing stays open when one fails. */
  static async listen(init: GuestChannelsInit): Promise<GuestChannels> {
    const channels = new GuestChannels(init);
    try {
      for (const service of GuestChannels.services(init.os, init.bridge, init.boot ?? true)) {
        channels.#listeners.set(service, await init.transport.listen(init.runtimeId, service));
      }
    } catch (err) {
      await channels.close();
      throw err;
    }
    return channels;
  }

  /** True when guest requests go over this UVM's own bridge. */
  get bridged(): boolean {
    return this.#init.bridge;
  }

  /** The guest's capabilities from NegotiateProtocol (bridge mode, once connected). */
  get capabilities(): GuestCapabilities | undefined {
    return this.#capabilities;
  }

  /** Runs `listener` once if the bridge fails after it was connected. */
  onFailure(listener: (err: UvmError) => void): void {
    this.#failureListeners.push(listener);
  }

  /**
   * Accepts the guest's connections (during `start()`, after HcsStartComputeSystem): entropy and
   * log in parallel, then the GCS, under one deadline; then the handshake. Rejects
   * GUEST_CONNECT_TIMEOUT at the deadline, ABORTED when `signal` fires (the VM exited); every
   * listener is closed either way.
   */
  async connect(signal?: AbortSignal): Promise<void> {
    if (this.#closed) throw new UvmError('INVALID_STATE', `the guest channels of ${this.#init.uvmId} are closed`);
    const deadline = Date.now() + this.#init.connectTimeoutMs;
    // One failed accept (or the VM's exit) stops the others at once.
    const stop = new AbortController();
    const onAbort = (): void => stop.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    const accept = async (service: string): Promise<Duplex> => {
      const listener = this.#listeners.get(service)!;
      try {
        const stream = await listener.accept({ timeoutMs: Math.max(0, deadline - Date.now()), signal: stop.signal });
        this.#streams.add(stream);
        stream.once('close', () => this.#streams.delete(stream));
        return stream;
      } catch (err) {
        stop.abort(err);
        throw UvmError.is(err, 'GUEST_CONNECT_TIMEOUT')
          ? new UvmError('GUEST_CONNECT_TIMEOUT', `UVM ${this.#init.uvmId}: ${err.message}`, { cause: err, details: { uvmId: this.#init.uvmId, ...err.details } })
          : err;
      } finally {
        this.#listeners.delete(service);
        await listener.close().catch(() => undefined);
      }
    };
    try {
      if (this.#listeners.has(LCOW_ENTROPY_SERVICE_ID)) {
        // Each is served as soon as it is accepted: the guest's init reads its entropy to EOF
        // before the log connection is dialled (hcsshim serves both from their own goroutines).
        const entropy = accept(LCOW_ENTROPY_SERVICE_ID).then((stream) => {
          stream.on('error', () => undefined);
          stream.end(randomBytes(LINUX_ENTROPY_BYTES));
        });
        const log = accept(LCOW_LOG_SERVICE_ID).then((stream) => this.#forwardLog(stream));
        const accepted = await Promise.allSettled([entropy, log]);
        const failed = accepted.find((r) => r.status === 'rejected' && !UvmError.is(r.reason, 'ABORTED'));
        const first = failed ?? accepted.find((r) => r.status === 'rejected');
        if (first) throw (first as PromiseRejectedResult).reason;
      }
      if (this.#init.bridge) await this.#connectBridge(await accept(this.#init.os === 'linux' ? LCOW_GCS_SERVICE_ID : WCOW_GCS_SERVICE_ID), stop.signal);
    } catch (err) {
      await this.close();
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async #connectBridge(stream: Duplex, signal: AbortSignal | undefined): Promise<void> {
    const { uvmId, os, runtimeId, rpcTimeoutMs, connectTimeoutMs } = this.#init;
    const bridge = (this.#bridge = new GcsBridge(stream, { uvmId, logger: this.#logger, rpcTimeoutMs }));
    bridge.onFailure((err) => {
      if (this.#closed) return;
      for (const listener of this.#failureListeners.splice(0)) listener(err);
    });
    // The handshake calls are cancellable (hcsshim allowCancel) and bounded by the connect deadline.
    const handshake = { timeoutMs: Math.min(connectTimeoutMs, rpcTimeoutMs ?? connectTimeoutMs), signal, cancellable: true };
    const caps = (this.#capabilities = await bridge.negotiate(handshake));
    // The WCOW startup extras run once per boot (a re-opened UVM's guest has them already).
    if (os === 'windows' && this.#init.boot !== false) {
      if (caps.SendHostCreateMessage) {
        await bridge.rpc('Create', { ContainerId: NULL_CONTAINER_ID, ContainerConfig: JSON.stringify({ SystemType: 'Container', TimeZoneInformation: this.#init.timeZone ?? UTC_TIME_ZONE }) }, handshake);
        if (caps.SendHostStartMessage) await bridge.rpc('Start', { ContainerId: NULL_CONTAINER_ID }, handshake);
      }
      // What HCS does itself when it owns the connection (hcsshim configureHvSocketForGCS).
      await bridge.modifySettings({ RequestType: 'Update', ResourceType: 'HvSocket', Settings: { LocalAddress: runtimeId, ParentAddress: WCOW_GCS_HOST_ID } });
    }
    this.#logger.debug('GCS bridge connected', { [LogField.uvmId]: uvmId, runtimeOsType: caps.RuntimeOsType });
  }

  /** Forwards the guest's JSON log lines (logrus format) to the logger. */
  #forwardLog(stream: Duplex): void {
    let partial = '';
    stream.setEncoding('utf8');
    stream.on('error', () => undefined);
    stream.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      if (partial.length > MAX_LOG_LINE) {
        lines.push(partial.slice(0, MAX_LOG_LINE));
        partial = '';
      }
      for (const line of lines) if (line.trim() !== '') this.#logLine(line);
    });
    stream.on('end', () => {
      if (partial.trim() !== '') this.#logLine(partial);
      partial = '';
    });
  }

  #logLine(line: string): void {
    // Nothing parsed for a logger that writes no level (the default, silent): every lower level is off too.
    if (!logLevelEnabled(this.#logger, 'error')) return;
    const fields: Record<string, unknown> = { [LogField.uvmId]: this.#init.uvmId, source: 'gcs' };
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = undefined;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      this.#logger.info(line.slice(0, MAX_LOG_LINE), fields);
      return;
    }
    const { msg, level, ...rest } = parsed as Record<string, unknown>;
    const message = typeof msg === 'string' ? msg : line;
    const entry = { ...rest, ...fields };
    switch (typeof level === 'string' ? level.toLowerCase() : 'info') {
      case 'panic':
      case 'fatal':
      case 'error':
        this.#logger.error(message, entry);
        return;
      case 'warning':
      case 'warn':
        this.#logger.warn(message, entry);
        return;
      case 'debug':
      case 'trace':
        this.#logger.debug(message, entry);
        return;
      default:
        this.#logger.info(message, entry);
        return;
    }
  }

  /** ModifySettings over the bridge (bridge mode, once started). */
  modifySettings(request: GuestRequest, options?: HcsCallOptions): Promise<void> {
    if (!this.#bridge) {
      return Promise.reject(
        new UvmError('INVALID_STATE', `UVM ${this.#init.uvmId}: no guest connection yet (start the UVM first)`, { details: { uvmId: this.#init.uvmId } }),
      );
    }
    return this.#bridge.modifySettings(request, options);
  }

  /** Closes the listeners, the bridge and the log and entropy connections. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#bridge?.close();
    for (const stream of this.#streams) stream.destroy();
    this.#streams.clear();
    const listeners = [...this.#listeners.values()];
    this.#listeners.clear();
    await Promise.all(listeners.map((l) => l.close().catch(() => undefined)));
  }
}

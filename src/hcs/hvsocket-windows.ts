/**
 * The Windows hvsocket transport: AF_HYPERV listeners through ws2_32 (koffi), with every
 * blocking Winsock call on a worker thread so no Node thread blocks.
 *
 * One worker per listener, which then serves the one connection it accepts (hcsshim closes each
 * listener after its first accept). Why per listener and not per UVM: the listeners of one UVM
 * (LCOW: GCS, entropy, log) have independent lifetimes and outcomes, a stuck or failing
 * connection cannot delay another one, and a worker's whole life is one synchronous select loop
 * with a single owner for each socket. The cost is one thread (a few MB) per open hvsocket;
 * a shim usually serves one UVM per process, i.e. up to three.
 *
 * The accepted connection is a node:stream Duplex: byte chunks come from the worker as
 * transferred ArrayBuffers; reading pauses when the readable side is full; each write completes
 * once the worker has handed all of it to `send`; `end()` is `shutdown(SD_SEND)`; a failed
 * Winsock call destroys the stream with HVSOCKET_ERROR (`details.call`, `details.wsaError`).
 *
 * Not run on Windows yet: see docs/hcs.md "Windows hvsocket transport".
 */
import dgram from 'node:dgram';
import { Duplex } from 'node:stream';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort, type Transferable } from 'node:worker_threads';
import { UvmError, invalidArgument } from '../core/errors.js';
import type { HvSocketListener, HvSocketTransport } from './hvsocket.js';
import type { HostMessage, LoopMessage } from './hvsocket-windows-loop.js';
import type { HvSocketWorkerData, LoadFailedMessage } from './hvsocket-windows-worker.js';
import { isGuid } from './hvsocket-windows-winsock.js';

/** One worker's Winsock, as the transport sets it up per listener. */
export interface WinsockSession {
  /** Passed to the module's `createWinsock(data)` in the worker (structured-cloned). */
  readonly data?: unknown;
  /** Transferred with `data` (e.g. a MessagePort of a test fake). */
  readonly transfer?: readonly Transferable[];
  /** Wakes the worker's `select` (it is given the port of the worker's wake socket). */
  wake(wakePort: number): void;
  /** Called once the worker has exited. */
  close(): void;
}

/** Which Winsock the workers load. Default: ws2_32.dll through koffi (Windows only). */
export interface WinsockProvider {
  /** URL of a module exporting `createWinsock(data): Winsock`, imported in the worker. */
  readonly module: URL;
  /** Called once per listener, before its worker starts. */
  open(): WinsockSession;
}

/** Options of `WindowsHvSocketTransport`. */
export interface WindowsHvSocketTransportOptions {
  /** Default `process.platform`. Without `winsock`, anything but `win32` is NOT_SUPPORTED. */
  platform?: NodeJS.Platform;
  /** Replaces ws2_32 (tests run the whole call sequence against a fake Winsock this way). */
  winsock?: WinsockProvider;
}

const WORKER_URL = new URL('./hvsocket-windows-worker.js', import.meta.url);

/** ws2_32.dll through koffi; the worker wakes on a datagram to its loopback wake socket. */
export const ws2WinsockProvider: WinsockProvider = {
  module: new URL('./hvsocket-windows-ws2.js', import.meta.url),
  open(): WinsockSession {
    const udp = dgram.createSocket('udp4');
    udp.on('error', () => {}); // a lost wake-up only delays the worker to its next IDLE_WAKE_MS
    udp.unref();
    const one = Buffer.of(1);
    let closed = false;
    return {
      wake: (port) => {
        if (!closed) udp.send(one, port, '127.0.0.1', () => {});
      },
      close: () => {
        if (closed) return;
        closed = true;
        udp.close();
      },
    };
  },
};

let liveWorkers = 0;

/** hvsocket worker threads currently running in this process (tests assert 0 after each test). */
export function liveHvSocketWorkers(): number {
  return liveWorkers;
}

type LinkEvent = LoopMessage | LoadFailedMessage | { t: 'exit'; error?: unknown };

/** The main thread's end of one worker: messages in, messages out with a wake-up, its exit. */
class WorkerLink {
  handler: (event: LinkEvent) => void = () => {};
  private wakePort: number | undefined;
  private exitedFlag = false;
  private workerError: unknown;
  readonly exited: Promise<void>;

  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    private readonly session: WinsockSession,
  ) {
    liveWorkers++;
    const dispatch = (m: LoopMessage | LoadFailedMessage): void => {
      if (m.t === 'listening') this.wakePort = m.wakePort;
      this.handler(m);
    };
    port.on('message', dispatch);
    worker.on('error', (e) => {
      this.workerError = e;
    });
    this.exited = new Promise((resolve) => {
      worker.once('exit', () => {
        // 'exit' may overtake the worker's last messages: deliver them first.
        for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
          dispatch(m.message as LoopMessage | LoadFailedMessage);
        }
        this.exitedFlag = true;
        liveWorkers--;
        port.close();
        session.close();
        resolve();
        this.handler({ t: 'exit', error: this.workerError });
      });
    });
  }

  static start(provider: WinsockProvider, vmId: string, serviceId: string): WorkerLink {
    const session = provider.open();
    const { port1, port2 } = new MessageChannel();
    const workerData: HvSocketWorkerData = {
      vmId,
      serviceId,
      winsockModule: provider.module.href,
      winsockData: session.data,
      port: port2,
    };
    let worker: Worker;
    try {
      worker = new Worker(WORKER_URL, { workerData, transferList: [port2, ...(session.transfer ?? [])] });
    } catch (e) {
      port1.close();
      session.close();
      throw hvSocketError('worker', 0, { vmId, serviceId }, e);
    }
    return new WorkerLink(worker, port1, session);
  }

  get alive(): boolean {
    return !this.exitedFlag;
  }

  post(message: HostMessage, transfer: ArrayBuffer[] = []): void {
    if (this.exitedFlag) return;
    this.port.postMessage(message, transfer);
    if (this.wakePort !== undefined) this.session.wake(this.wakePort);
  }

  /** Asks the loop to close everything; resolves once the worker has exited. */
  shutdown(): Promise<void> {
    this.post({ t: 'close' });
    return this.exited;
  }
}

interface Address {
  vmId: string;
  serviceId: string;
}

function hvSocketError(call: string, wsaError: number, address: Address, cause?: unknown, message?: string): UvmError {
  const what = message !== undefined ? `failed: ${message}` : wsaError === 0 ? 'failed' : `failed: WSA error ${wsaError}`;
  return new UvmError('HVSOCKET_ERROR', `hvsocket ${call} ${what} (vm ${address.vmId}, service ${address.serviceId})`, {
    cause,
    details: { call, wsaError, ...address },
  });
}

/** An outcome the loop ended with, as the error the caller sees. */
function loopError(event: LinkEvent, address: Address): UvmError {
  switch (event.t) {
    case 'error':
      return hvSocketError(event.call, event.wsaError, address, undefined, event.message);
    case 'load-failed':
      return new UvmError(event.code, event.message, { details: { ...event.details, ...address } });
    case 'exit':
      return hvSocketError('worker', 0, address, event.error);
    default:
      return hvSocketError(`worker (unexpected ${event.t})`, 0, address);
  }
}

/** AF_HYPERV hvsocket listeners (Windows), one worker thread each. */
export class WindowsHvSocketTransport implements HvSocketTransport {
  private readonly provider: WinsockProvider | undefined;
  private readonly platform: NodeJS.Platform;

  constructor(options: WindowsHvSocketTransportOptions = {}) {
    this.platform = options.platform ?? process.platform;
    this.provider = options.winsock;
  }

  async listen(vmId: string, serviceId: string): Promise<HvSocketListener> {
    if (!isGuid(vmId)) throw invalidArgument(`hvsocket VM id is not a GUID: ${JSON.stringify(vmId)}`, { vmId });
    if (!isGuid(serviceId)) {
      throw invalidArgument(`hvsocket service id is not a GUID: ${JSON.stringify(serviceId)}`, { serviceId });
    }
    const provider = this.provider ?? (this.platform === 'win32' ? ws2WinsockProvider : undefined);
    if (provider === undefined) {
      throw new UvmError('NOT_SUPPORTED', `AF_HYPERV sockets need Windows (this host is ${this.platform})`, {
        details: { platform: this.platform },
      });
    }
    const address = { vmId: vmId.toLowerCase(), serviceId: serviceId.toLowerCase() };
    const link = WorkerLink.start(provider, address.vmId, address.serviceId);
    const first = await new Promise<LinkEvent>((resolve) => {
      link.handler = resolve;
    });
    if (first.t === 'listening') return new WindowsHvSocketListener(link, address);
    link.handler = () => {};
    await link.shutdown();
    throw loopError(first, address);
  }
}

type ListenerState = 'ready' | 'accepting' | 'accepted' | 'closed';

class WindowsHvSocketListener implements HvSocketListener {
  private state: ListenerState = 'ready';
  /** Set while an accept waits: how the loop's outcome settles it. */
  private settle: ((event: LinkEvent) => void) | undefined;
  /** The loop's end, when it came while no accept was waiting. */
  private early: LinkEvent | undefined;

  constructor(
    private readonly link: WorkerLink,
    private readonly address: Address,
  ) {
    link.handler = (event) => {
      if (this.settle !== undefined) this.settle(event);
      else if (event.t !== 'closed') this.early ??= event;
    };
  }

  async accept(options: { timeoutMs: number; signal?: AbortSignal }): Promise<Duplex> {
    if (this.state !== 'ready') {
      throw new UvmError('INVALID_STATE', `hvsocket listener is ${this.state}: accept is allowed once, before close`, {
        details: { state: this.state, ...this.address },
      });
    }
    const { timeoutMs, signal } = options;
    if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0) || !Number.isFinite(timeoutMs)) {
      throw invalidArgument(`accept timeoutMs must be a finite number >= 0, got ${String(timeoutMs)}`, { timeoutMs });
    }
    const aborted = (): UvmError =>
      new UvmError('ABORTED', `hvsocket accept aborted (vm ${this.address.vmId}, service ${this.address.serviceId})`, {
        cause: signal?.reason,
        details: { ...this.address },
      });
    if (signal?.aborted) {
      await this.close();
      throw aborted();
    }
    if (this.early !== undefined) {
      const early = this.early;
      await this.close();
      throw loopError(early, this.address);
    }
    this.state = 'accepting';
    const onAbort = (): void => this.link.post({ t: 'abort' });
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const { event, stream } = await new Promise<{ event: LinkEvent; stream?: HvSocketStream }>((resolve) => {
        this.settle = (e) => {
          this.settle = undefined;
          if (e.t !== 'accepted') return resolve({ event: e });
          // At once, in this callback: the stream takes the worker's next messages (its data).
          this.state = 'accepted';
          resolve({ event: e, stream: new HvSocketStream(this.link, this.address) });
        };
        this.link.post({ t: 'accept', timeoutMs });
      });
      if (stream !== undefined) {
        if (!signal?.aborted) return stream;
        // The guest connected just as the caller gave up: the caller never sees this connection.
        stream.destroy();
        await this.link.exited;
        throw aborted();
      }
      this.state = 'closed';
      await this.link.shutdown();
      switch (event.t) {
        case 'aborted':
          throw aborted();
        case 'timeout':
          throw new UvmError(
            'GUEST_CONNECT_TIMEOUT',
            `the guest did not connect to hvsocket service ${this.address.serviceId} of vm ${this.address.vmId} within ${timeoutMs} ms`,
            { details: { timeoutMs, ...this.address } },
          );
        case 'closed':
          throw new UvmError('ABORTED', 'hvsocket listener closed while accepting', {
            details: { reason: 'closed', ...this.address },
          });
        default:
          throw loopError(event, this.address);
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async close(): Promise<void> {
    if (this.state === 'accepted') return; // the listener closed at accept; the stream owns the worker
    this.state = 'closed';
    await this.link.shutdown();
  }
}

/** The accepted connection: a Duplex over the worker's socket. */
class HvSocketStream extends Duplex {
  private nextWriteId = 1;
  private readonly writeCallbacks = new Map<number, (err?: Error | null) => void>();
  private finalCallback: ((err?: Error | null) => void) | undefined;
  private paused = false;

  constructor(
    private readonly link: WorkerLink,
    private readonly address: Address,
  ) {
    super({ allowHalfOpen: true });
    link.handler = (event) => this.onLoop(event);
  }

  private onLoop(event: LinkEvent): void {
    switch (event.t) {
      case 'data':
        if (!this.push(Buffer.from(event.buf)) && !this.paused) {
          this.paused = true;
          this.link.post({ t: 'pause' });
        }
        return;
      case 'eof':
        this.push(null);
        return;
      case 'written': {
        const cb = this.writeCallbacks.get(event.id);
        this.writeCallbacks.delete(event.id);
        cb?.();
        return;
      }
      case 'ended': {
        const cb = this.finalCallback;
        this.finalCallback = undefined;
        cb?.();
        return;
      }
      case 'closed':
        return; // the worker exits next
      case 'exit':
        // After `closed`, the worker only exits when the stream asked it to (destroy).
        if (!this.destroyed) this.destroy(loopError(event, this.address));
        return;
      default:
        this.destroy(loopError(event, this.address));
    }
  }

  override _read(): void {
    if (!this.paused) return;
    this.paused = false;
    this.link.post({ t: 'resume' });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    const buf = new ArrayBuffer(chunk.length);
    new Uint8Array(buf).set(chunk);
    const id = this.nextWriteId++;
    this.writeCallbacks.set(id, callback);
    this.link.post({ t: 'write', id, buf }, [buf]);
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.finalCallback = callback;
    this.link.post({ t: 'end' });
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    // Writes (and an end) still in the worker fail: their bytes may not all have been sent.
    const unfinished = [...this.writeCallbacks.values(), ...(this.finalCallback ? [this.finalCallback] : [])];
    this.writeCallbacks.clear();
    this.finalCallback = undefined;
    if (unfinished.length > 0) {
      const failed =
        err ?? new UvmError('HANDLE_CLOSED', 'hvsocket connection destroyed before the write completed', { details: { ...this.address } });
      for (const cb of unfinished) cb(failed);
    }
    void this.link.shutdown().then(() => callback(err));
  }
}

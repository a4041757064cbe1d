/**
 * An in-process guest agent (GCS) speaking the bridge protocol, for unit tests of the bridge client
 * and the UVM wiring without the simulator. It dials like the real guest (through a socket) and
 * answers NegotiateProtocol, ModifySettings and (WCOW profile) Create/Start; fault knobs cover the
 * bridge's failure rules.
 */
import { connect, createServer, type Socket } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { duplexPair } from '../../src/hcs/in-process-guest.js';
import { UvmError } from '../../src/core/errors.js';
import { LCOW_GCS_SERVICE_ID, LCOW_LOG_SERVICE_ID, WCOW_GCS_SERVICE_ID, type HvSocketListener, type HvSocketTransport } from '../../src/hcs/hvsocket.js';
import {
  BRIDGE_HEADER_SIZE,
  BridgeRpc,
  CONTAINER_NOTIFICATION_TYPE,
  encodeFrame,
  FrameReader,
  responseType,
  rpcName,
  type BridgeFrame,
  type BridgeRpcName,
} from '../../src/hcs/gcs-bridge-protocol.js';

export const E_NOTIMPL = 0x80004001 | 0;
export const E_FAIL = 0x80004005 | 0;

/** What the fake does with one request (first matching rule wins; default: answer). */
export type FakeGcsAction =
  | { kind: 'answer' }
  | { kind: 'fail'; hresult?: number; message?: string }
  | { kind: 'hold' }
  | { kind: 'drop' }
  | { kind: 'unknown-id' }
  | { kind: 'bad-json' }
  | { kind: 'oversized' };

export interface FakeGcsRule {
  rpc?: BridgeRpcName;
  /** Matches `Request.ResourceType` of a ModifySettings. */
  resourceType?: string;
  requestType?: string;
  action: FakeGcsAction;
  /** Applies this many times (default: always). */
  times?: number;
}

export interface ReceivedMessage {
  rpc: BridgeRpcName | undefined;
  type: number;
  id: bigint;
  body: Record<string, any>;
}

export interface FakeGcsOptions {
  profile?: 'linux' | 'windows';
}

export class FakeGcs {
  readonly received: ReceivedMessage[] = [];
  readonly rules: FakeGcsRule[] = [];
  /** Held requests (action `hold`): answer them with `release()`. */
  readonly held: ReceivedMessage[] = [];
  readonly #reader = new FrameReader(1 << 30);
  readonly profile: 'linux' | 'windows';
  #socket: Duplex | undefined;
  #closedByHost = false;
  #waiters: { n: number; resolve: () => void }[] = [];

  constructor(options: FakeGcsOptions = {}) {
    this.profile = options.profile ?? 'linux';
  }

  /** Serves the guest end of `socket`. */
  attach(socket: Duplex): this {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.#reader.push(chunk)) this.#onFrame(frame);
    });
    socket.on('end', () => {
      this.#closedByHost = true;
      socket.end();
    });
    socket.on('close', () => (this.#closedByHost = true));
    socket.on('error', () => undefined);
    return this;
  }

  /** True once the host closed its end. */
  get closedByHost(): boolean {
    return this.#closedByHost;
  }

  /** The ModifySettings requests received (their `Request`). */
  get modifications(): Record<string, any>[] {
    return this.received.filter((m) => m.rpc === 'ModifySettings').map((m) => m.body.Request as Record<string, any>);
  }

  /** Resolves once `n` messages were received in all. */
  receivedCount(n: number): Promise<void> {
    if (this.received.length >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }

  on(rule: FakeGcsRule): this {
    this.rules.push(rule);
    return this;
  }

  /** Answers every held request normally. */
  release(): void {
    for (const m of this.held.splice(0)) this.#answer(m, 0);
  }

  /** Sends a container notification (guest → host). */
  notify(body: Record<string, unknown> = { ContainerId: 'c', ActivityId: '00000000-0000-0000-0000-000000000000', Type: 'UnexpectedExit', Operation: 'None', Result: 0 }): void {
    this.#socket?.write(encodeFrame(CONTAINER_NOTIFICATION_TYPE, 0n, body));
  }

  /** Writes raw bytes to the host. */
  writeRaw(bytes: Buffer): void {
    this.#socket?.write(bytes);
  }

  /** Drops the connection. */
  drop(): void {
    this.#socket?.destroy();
  }

  #onFrame(frame: BridgeFrame): void {
    const body = JSON.parse(frame.body.toString('utf8')) as Record<string, any>;
    const m: ReceivedMessage = { rpc: rpcName(frame.type), type: frame.type, id: frame.id, body };
    this.received.push(m);
    for (const w of this.#waiters.filter((x) => this.received.length >= x.n)) {
      this.#waiters.splice(this.#waiters.indexOf(w), 1);
      w.resolve();
    }
    const rule = this.rules.find(
      (r) =>
        (r.rpc === undefined || r.rpc === m.rpc) &&
        (r.resourceType === undefined || r.resourceType === body.Request?.ResourceType) &&
        (r.requestType === undefined || r.requestType === body.Request?.RequestType) &&
        (r.times === undefined || r.times > 0),
    );
    if (rule?.times !== undefined) rule.times--;
    const action = rule?.action ?? { kind: 'answer' };
    switch (action.kind) {
      case 'answer':
        return this.#answer(m, 0);
      case 'fail':
        return this.#answer(m, action.hresult ?? E_FAIL, action.message ?? 'injected failure');
      case 'hold':
        this.held.push(m);
        return;
      case 'drop':
        this.drop();
        return;
      case 'unknown-id':
        this.#socket?.write(encodeFrame(responseType(m.type), m.id + 1000n, { Result: 0, ActivityId: body.ActivityId }));
        return;
      case 'bad-json': {
        const frame = Buffer.concat([Buffer.alloc(BRIDGE_HEADER_SIZE), Buffer.from('{not json')]);
        frame.writeUInt32LE(responseType(m.type), 0);
        frame.writeUInt32LE(frame.length, 4);
        frame.writeBigUInt64LE(m.id, 8);
        this.#socket?.write(frame);
        return;
      }
      case 'oversized':
        this.#socket?.write(encodeFrame(responseType(m.type), m.id, { Result: 0, ActivityId: body.ActivityId, Padding: 'x'.repeat(70_000) }));
        return;
    }
  }

  #answer(m: ReceivedMessage, result: number, message?: string): void {
    const base: Record<string, unknown> = { Result: result, ActivityId: m.body.ActivityId };
    if (result !== 0) {
      base.ErrorMessage = message;
      base.ErrorRecords = [{ Result: result, Message: message, ModuleName: 'gcs', FileName: 'fake-gcs.ts', Line: 4294967295 }];
    } else if (m.rpc === 'NegotiateProtocol') {
      Object.assign(base, { Version: 4, Capabilities: this.#capabilities() });
    } else if (m.rpc !== 'ModifySettings' && !(this.profile === 'windows' && (m.rpc === 'Create' || m.rpc === 'Start'))) {
      base.Result = E_NOTIMPL;
      base.ErrorMessage = `bridge: function not supported, header type: ${m.type}`;
    }
    this.#socket?.write(encodeFrame(responseType(m.type), m.id, base));
  }

  #capabilities(): Record<string, unknown> {
    return this.profile === 'linux'
      ? {
          SupportedSchemaVersions: [{ Major: 2, Minor: 1 }],
          RuntimeOsType: 'Linux',
          GuestDefinedCapabilities: { NamespaceAddRequestSupported: true, SignalProcessSupported: true, DumpStacksSupported: true, DeleteContainerStateSupported: true },
        }
      : { SendHostCreateMessage: true, SendHostStartMessage: true, HvSocketConfigOnStartup: true, SupportedSchemaVersions: [{ Major: 2, Minor: 1 }] };
  }
}

/** A connected pair of Unix sockets (host end, guest end) in a fresh temporary directory. */
export async function socketPair(): Promise<{ host: Socket; guest: Socket; dispose: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'fake-gcs-'));
  const path = join(dir, 's.sock');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const hostP = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const guest = connect(path);
  const host = await hostP;
  // Stops listening (its callback would wait for the connection to end).
  server.close();
  return {
    host,
    guest,
    dispose: async () => {
      host.destroy();
      guest.destroy();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export { BridgeRpc };

/**
 * An `HvSocketTransport` whose guest is this process: every accept resolves at once (unless the
 * service is in `neverDial`), with a `FakeGcs` on the guest end of a GCS service; entropy and log
 * ends are drained (`entropyBytes` counts what the host wrote).
 */
export class FakeHvSocketTransport implements HvSocketTransport {
  readonly gcs = new Map<string, FakeGcs>();
  readonly listening: { vmId: string; serviceId: string }[] = [];
  readonly neverDial = new Set<string>();
  entropyBytes = 0;
  /** Lines the fake guest writes on the log connection. */
  logLines: string[] = [];
  openListeners = 0;

  constructor(private readonly profile: 'linux' | 'windows' = 'linux') {}

  listen(vmId: string, serviceId: string): Promise<HvSocketListener> {
    this.listening.push({ vmId, serviceId });
    this.openListeners++;
    let closed = false;
    const close = (): Promise<void> => {
      if (!closed) this.openListeners--;
      closed = true;
      return Promise.resolve();
    };
    return Promise.resolve({
      accept: (options: { timeoutMs: number; signal?: AbortSignal }): Promise<Duplex> => {
        if (this.neverDial.has(serviceId)) {
          return new Promise<Duplex>((_resolve, reject) => {
            const timer = setTimeout(() => {
              void close();
              reject(new UvmError('GUEST_CONNECT_TIMEOUT', `no guest on ${serviceId}`, { details: { vmId, serviceId, timeoutMs: options.timeoutMs } }));
            }, options.timeoutMs);
            options.signal?.addEventListener('abort', () => {
              clearTimeout(timer);
              void close();
              reject(new UvmError('ABORTED', 'aborted'));
            });
          });
        }
        const [host, guest] = duplexPair();
        if (serviceId === LCOW_GCS_SERVICE_ID || serviceId === WCOW_GCS_SERVICE_ID) {
          this.gcs.set(vmId, new FakeGcs({ profile: this.profile }).attach(guest));
        } else {
          guest.on('data', (b: Buffer) => (this.entropyBytes += b.length));
          if (serviceId === LCOW_LOG_SERVICE_ID) for (const line of this.logLines) guest.write(`${line}\n`);
        }
        void close();
        return Promise.resolve(host);
      },
      close,
    });
  }
}

/**
 * Orchestrator options for unit tests over `FakeHcs` in HCS-owned delivery (the fake applies
 * `GuestRequest`s itself); LCOW entropy and log are answered by an in-process fake guest.
 */
export const HCS_DELIVERY: { guestDelivery: 'hcs'; hvSocket: HvSocketTransport } = {
  guestDelivery: 'hcs',
  get hvSocket(): HvSocketTransport {
    return new FakeHvSocketTransport();
  },
};

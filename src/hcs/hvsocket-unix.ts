/**
 * The hvsocket transport off Windows: a Unix domain socket per (VM id, service id) at
 * `localHvSocketPath` (the convention the simulator's dialing guest follows). Same semantics as
 * AF_HYPERV listeners: listen after create, accept the first connection within the deadline, then
 * the listener is closed.
 */
import { lstat, mkdir, unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Duplex } from 'node:stream';
import { UvmError } from '../core/errors.js';
import { localHvSocketPath, type HvSocketListener, type HvSocketTransport } from './hvsocket.js';

export interface UnixHvSocketTransportOptions {
  /** Where `UVM_HVSOCK_DIR` / `TMPDIR` are read. @default process.env */
  env?: NodeJS.ProcessEnv;
}

/** `HvSocketTransport` over Unix domain sockets (every non-Windows host, the simulator's guest). */
export class UnixHvSocketTransport implements HvSocketTransport {
  readonly #env: NodeJS.ProcessEnv;

  constructor(options: UnixHvSocketTransportOptions = {}) {
    this.#env = options.env ?? process.env;
  }

  async listen(vmId: string, serviceId: string): Promise<HvSocketListener> {
    let path: string;
    try {
      path = localHvSocketPath(vmId, serviceId, this.#env);
    } catch (err) {
      throw new UvmError('INVALID_ARGUMENT', (err as Error).message, { details: { vmId, serviceId } });
    }
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    // A socket file left by a listener of a crashed process: the ids are fresh GUIDs, so it is ours to replace.
    const stale = await lstat(path).catch(() => undefined);
    if (stale?.isSocket()) await unlink(path).catch(() => undefined);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return new UnixHvSocketListener(server, path, vmId, serviceId);
  }
}

class UnixHvSocketListener implements HvSocketListener {
  #first: Socket | undefined;
  #handedOut = false;
  #waiter: ((socket: Socket) => void) | undefined;
  #closed: Promise<void> | undefined;

  constructor(
    private readonly server: Server,
    private readonly path: string,
    private readonly vmId: string,
    private readonly serviceId: string,
  ) {
    server.on('connection', (socket) => {
      if (this.#first || this.#closed) {
        socket.destroy();
        return;
      }
      this.#first = socket;
      this.#waiter?.(socket);
    });
    // An accept error after listening: the pending accept sees the listener closed at its deadline.
    server.on('error', () => undefined);
  }

  accept(options: { timeoutMs: number; signal?: AbortSignal }): Promise<Duplex> {
    if (this.#closed && !this.#first) return Promise.reject(new UvmError('INVALID_STATE', `hvsocket listener ${this.path} is closed`));
    return new Promise<Duplex>((resolve, reject) => {
      const deadline: { timer?: NodeJS.Timeout } = {};
      const finish = (outcome: { socket: Socket } | { error: UvmError }): void => {
        clearTimeout(deadline.timer);
        options.signal?.removeEventListener('abort', onAbort);
        this.#waiter = undefined;
        if ('socket' in outcome) this.#handedOut = true;
        // The listener closes after its first connection (or its failure) either way.
        void this.close().then(() => ('socket' in outcome ? resolve(outcome.socket) : reject(outcome.error)));
      };
      const onAbort = (): void =>
        finish({
          error: new UvmError('ABORTED', `accepting the guest on hvsocket (${this.vmId}, ${this.serviceId}) was aborted`, {
            cause: options.signal?.reason,
            details: { vmId: this.vmId, serviceId: this.serviceId },
          }),
        });
      if (this.#first) {
        finish({ socket: this.#first });
        return;
      }
      if (options.signal?.aborted) {
        onAbort();
        return;
      }
      options.signal?.addEventListener('abort', onAbort, { once: true });
      deadline.timer = setTimeout(
        () =>
          finish({
            error: new UvmError('GUEST_CONNECT_TIMEOUT', `the guest did not connect to hvsocket (${this.vmId}, ${this.serviceId}) within ${options.timeoutMs} ms`, {
              details: { vmId: this.vmId, serviceId: this.serviceId, timeoutMs: options.timeoutMs },
            }),
          }),
        options.timeoutMs,
      );
      this.#waiter = (socket) => finish({ socket });
    });
  }

  close(): Promise<void> {
    if (this.#first && !this.#handedOut) this.#first.destroy();
    // Stop listening (close()'s callback would wait for accepted connections to end) and remove
    // the socket file; a connection already handed out stays open.
    if (!this.#closed) {
      this.server.close();
      this.#closed = unlink(this.path).catch(() => undefined);
    }
    return this.#closed;
  }
}

// A minimal, test-only host side of the GCS bridge (gcs-bridge.md §2–§3): Unix-socket listeners at
// the local hvsocket endpoints the simulator's guest dials, and a frame codec with request/response
// matching. Tests use it to speak to the simulator's fake GCS directly, without the library.
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SERVICE = {
  lcowGcs: '40000000-facb-11e6-bd58-64006a7986d3',
  wcowGcs: 'acef5661-84a1-4e44-856b-6245e69f4620',
  entropy: '00000001-facb-11e6-bd58-64006a7986d3',
  log: '0000006d-facb-11e6-bd58-64006a7986d3',
} as const;

export const NULL_ID = '00000000-0000-0000-0000-000000000000';

/** Request types (`0x10000000 | RPC code`). */
export const RPC = {
  Create: 0x10100101,
  Start: 0x10100201,
  ExecuteProcess: 0x10100501,
  ModifySettings: 0x10100a01,
  NegotiateProtocol: 0x10100b01,
} as const;

export const CONTAINER_NOTIFICATION = 0x30100101;

export interface Frame {
  type: number;
  id: bigint;
  /** Total size from the header (16 + body bytes). */
  size: number;
  body: string;
}

/** Header (16 bytes, little-endian: type, total size, id) + UTF-8 body. */
export function encodeFrame(type: number, id: bigint, body: string): Buffer {
  const payload = Buffer.from(body, 'utf8');
  const header = Buffer.alloc(16);
  header.writeUInt32LE(type >>> 0, 0);
  header.writeUInt32LE(16 + payload.length, 4);
  header.writeBigUInt64LE(id, 8);
  return Buffer.concat([header, payload]);
}

/** Splits a byte stream into frames. */
export class FrameDecoder {
  #buf = Buffer.alloc(0);
  push(chunk: Buffer): Frame[] {
    this.#buf = Buffer.concat([this.#buf, chunk]);
    const out: Frame[] = [];
    while (this.#buf.length >= 16) {
      const size = this.#buf.readUInt32LE(4);
      if (size < 16) throw new Error(`frame size ${size} below the header size`);
      if (this.#buf.length < size) break;
      out.push({ type: this.#buf.readUInt32LE(0), size, id: this.#buf.readBigUInt64LE(8), body: this.#buf.subarray(16, size).toString('utf8') });
      this.#buf = this.#buf.subarray(size);
    }
    return out;
  }
}

/** One accepted bridge connection: send requests, await frames. */
export class BridgeConnection {
  readonly #socket: Socket;
  readonly #frames: Frame[] = [];
  readonly #waiters: ((f: Frame | undefined) => void)[] = [];
  #closed = false;
  readonly closed: Promise<void>;

  constructor(socket: Socket) {
    this.#socket = socket;
    const decoder = new FrameDecoder();
    socket.on('data', (chunk: Buffer) => {
      for (const f of decoder.push(chunk)) {
        const w = this.#waiters.shift();
        if (w) w(f);
        else this.#frames.push(f);
      }
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.#closed = true;
        for (const w of this.#waiters.splice(0)) w(undefined);
        resolve();
      });
    });
    socket.on('error', () => undefined);
  }

  send(type: number, id: bigint, body: unknown): void {
    this.#socket.write(encodeFrame(type, id, typeof body === 'string' ? body : JSON.stringify(body)));
  }

  /** The next frame from the guest; undefined once the connection closed. */
  next(): Promise<Frame | undefined> {
    const f = this.#frames.shift();
    if (f || this.#closed) return Promise.resolve(f);
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Sends a request and returns the parsed body of the next frame (which must answer it). */
  async rpc(type: number, id: bigint, body: unknown): Promise<Record<string, unknown> & { Result: number }> {
    this.send(type, id, body);
    const f = await this.next();
    if (!f) throw new Error('the bridge closed before the response');
    if (f.id !== id) throw new Error(`response id ${f.id} for request ${id}`);
    if (f.type !== ((0x20000000 | (type & 0x0fffffff)) >>> 0)) throw new Error(`response type 0x${f.type.toString(16)}`);
    return JSON.parse(f.body) as Record<string, unknown> & { Result: number };
  }

  /** NegotiateProtocol v4 (id 0, as hcsshim). */
  negotiate(): Promise<Record<string, unknown> & { Result: number }> {
    return this.rpc(RPC.NegotiateProtocol, 0n, { ContainerId: '', ActivityId: NULL_ID, MinimumVersion: 4, MaximumVersion: 4 });
  }

  /** ModifySettings on the all-zero container id. */
  modify(id: bigint, request: Record<string, unknown>): Promise<Record<string, unknown> & { Result: number }> {
    return this.rpc(RPC.ModifySettings, id, { ContainerId: NULL_ID, ActivityId: NULL_ID, Request: request });
  }

  close(): void {
    this.#socket.destroy();
  }
}

/** The hvsocket endpoint directory of one test, with listeners keyed by (RuntimeId, service). */
export class HvSockDir {
  readonly path = mkdtempSync(join(tmpdir(), 'uvm-hvsock-test-'));
  readonly #servers: Server[] = [];
  readonly #sockets: Socket[] = [];

  /** Listens on `<dir>/<vmId>-<serviceId>.sock`; resolves with a function returning its first (only) connection. */
  async listen(vmId: string, serviceId: string): Promise<{ accept(): Promise<Socket> }> {
    const server = createServer();
    this.#servers.push(server);
    // As hcsshim: the listener closes after its first connection (its socket file goes with it).
    const first = once(server, 'connection').then(([s]) => {
      const socket = s as Socket;
      this.#sockets.push(socket);
      server.close();
      return socket;
    });
    server.listen(join(this.path, `${vmId.toLowerCase()}-${serviceId}.sock`));
    await once(server, 'listening');
    return { accept: () => first };
  }

  /** Closes every listener and connection and removes the directory. */
  async dispose(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await Promise.all(this.#servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))));
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** Reads a socket until `predicate(text)` holds or it closes; resolves with the text. */
export async function readUntil(socket: Socket, predicate: (text: string) => boolean): Promise<string> {
  let text = '';
  for await (const chunk of socket) {
    text += (chunk as Buffer).toString('utf8');
    if (predicate(text)) break;
  }
  return text;
}

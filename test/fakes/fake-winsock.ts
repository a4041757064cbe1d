/**
 * A fake Winsock for the Windows hvsocket transport (src/hcs/hvsocket-windows*.ts), with a guest
 * on the other end of the hvsocket.
 *
 * `FakeWinsock` models what the transport relies on: sockets as handles (closing twice or using a
 * closed one fails with WSAENOTSOCK), bind checks the SOCKADDR_HV bytes, select rewrites the
 * fd_sets in place and waits up to its timeval, blocking vs non-blocking recv/send/accept, a send
 * buffer of limited capacity (WOULDBLOCK when full), EOF, resets, and injected failures of the
 * nth call of any function. Every call is traced (`fn(args)=result`).
 *
 * Two ways to run it:
 * - synchronously in the test's thread (`new FakeWinsock(...)` + `runHvSocketLoop`), with a
 *   virtual clock and scripted steps that run whenever the loop would wait;
 * - inside the transport's worker thread: the worker imports this module and calls
 *   `createWinsock(data)`; the test drives the guest through `fakeWinsockProvider()` (a
 *   MessagePort plus an Atomics wake-up), and the fake reports its trace back.
 */
import { performance } from 'node:perf_hooks';
import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { WinsockProvider, WinsockSession } from '../../src/hcs/hvsocket-windows.js';
import {
  AF_HYPERV,
  AF_INET,
  FIONBIO,
  SD_SEND,
  SOCKADDR_HV_SIZE,
  SOCKADDR_IN_SIZE,
  SOCKET_ERROR,
  WSAEWOULDBLOCK,
  decodeFdSet,
  decodeSockaddrHv,
  decodeSockaddrIn,
  decodeTimeval,
  encodeFdSet,
  invalidSocket,
  type WinSocket,
  type Winsock,
} from '../../src/hcs/hvsocket-windows-winsock.js';

export const WSAENOTSOCK = 10038;
export const WSAEINVAL = 10022;
export const WSAEFAULT = 10014;
export const WSAECONNRESET = 10054;
export const WSAEACCES = 10013;

/** Fail the `nth` (1-based, default 1) call of `call` with `wsaError`. */
export interface InjectedFailure {
  call: string;
  nth?: number;
  wsaError: number;
}

/** What the guest does (sent to the fake by the test). */
export type GuestAction =
  | { a: 'dial' }
  | { a: 'send'; buf: ArrayBuffer }
  | { a: 'eof' }
  | { a: 'reset'; wsaError: number }
  /** The guest reads everything the host sent so far (frees the send buffer). */
  | { a: 'drain' }
  | { a: 'wake' };

/** What the fake reports (worker mode). */
export type FakeEvent =
  | { e: 'trace'; line: string }
  | { e: 'sent'; buf: ArrayBuffer }
  | { e: 'disposed'; open: string[] };

export interface FakeWinsockOptions {
  pointerSize?: 4 | 8;
  failures?: InjectedFailure[];
  /** Bytes the host may have sent and the guest not yet read before send would block. */
  sendCapacity?: number;
  /** The port getsockname reports for the UDP wake socket. */
  wakePort?: number;
}

interface FakeSocket {
  id: WinSocket;
  af: number;
  role: 'wake' | 'listener' | 'conn' | 'new';
  bound?: string;
  listening?: boolean;
  nonBlocking?: boolean;
  shutdownSend?: boolean;
}

const hex = (s: WinSocket): string => `0x${s.toString(16)}`;

export class FakeWinsock implements Winsock {
  readonly pointerSize: 4 | 8;
  readonly trace: string[] = [];
  /** Host → guest bytes the guest has not read yet (counted against sendCapacity). */
  unread = 0;
  readonly sentChunks: Buffer[] = [];
  disposed = false;

  private readonly sockets = new Map<WinSocket, FakeSocket>();
  private nextId = 0x100n;
  private lastError = 0;
  private readonly calls = new Map<string, number>();
  private readonly failures: InjectedFailure[];
  private readonly sendCapacity: number;
  private readonly wakePort: number;

  // guest state
  private dialed = false;
  private readonly inbound: Buffer[] = [];
  private guestEof = false;
  private resetError: number | undefined;
  private wakes = 0;

  constructor(
    options: FakeWinsockOptions,
    /** Waits up to `ms` (null: without limit) for guest actions, applying them. */
    private readonly idle: (fake: FakeWinsock, ms: number | null) => void,
    private readonly clock: () => number,
    private readonly report: (event: FakeEvent, transfer?: ArrayBuffer[]) => void = () => {},
  ) {
    this.pointerSize = options.pointerSize ?? 8;
    this.failures = options.failures ?? [];
    this.sendCapacity = options.sendCapacity ?? Number.POSITIVE_INFINITY;
    this.wakePort = options.wakePort ?? 50000;
  }

  // ---- the guest ----
  apply(action: GuestAction): void {
    switch (action.a) {
      case 'dial':
        this.dialed = true;
        break;
      case 'send':
        this.inbound.push(Buffer.from(action.buf));
        break;
      case 'eof':
        this.guestEof = true;
        break;
      case 'reset':
        this.resetError = action.wsaError;
        break;
      case 'drain':
        this.unread = 0;
        break;
      case 'wake':
        this.wakes++;
        break;
    }
  }

  /** Sockets not closed yet, as hex handles with their role. */
  openSockets(): string[] {
    return [...this.sockets.values()].map((s) => `${hex(s.id)}:${s.role}`);
  }

  // ---- Winsock ----
  private log(line: string): void {
    this.trace.push(line);
    this.report({ e: 'trace', line });
  }

  private injected(call: string): number | undefined {
    const n = (this.calls.get(call) ?? 0) + 1;
    this.calls.set(call, n);
    return this.failures.find((f) => f.call === call && (f.nth ?? 1) === n)?.wsaError;
  }

  private err(call: string, args: string, wsa: number): number {
    this.lastError = wsa;
    this.log(`${call}(${args})=SOCKET_ERROR/${wsa}`);
    return SOCKET_ERROR;
  }

  private ok(call: string, args: string, rc: number): number {
    this.log(`${call}(${args})=${rc}`);
    return rc;
  }

  private lookup(s: WinSocket): FakeSocket | undefined {
    return this.sockets.get(s);
  }

  private newSocket(af: number, role: FakeSocket['role']): WinSocket {
    const id = this.nextId++;
    this.sockets.set(id, { id, af, role });
    return id;
  }

  now(): number {
    return this.clock();
  }

  WSAGetLastError(): number {
    return this.lastError;
  }

  socket(af: number, type: number, protocol: number): WinSocket {
    const args = `${af},${type},${protocol}`;
    const wsa = this.injected('socket');
    if (wsa !== undefined) {
      this.err('socket', args, wsa);
      return invalidSocket(this.pointerSize);
    }
    const valid = (af === AF_HYPERV && type === 1 && protocol === 1) || (af === AF_INET && type === 2 && protocol === 17);
    if (!valid) {
      this.err('socket', args, WSAEINVAL);
      return invalidSocket(this.pointerSize);
    }
    const s = this.newSocket(af, af === AF_INET ? 'wake' : 'new');
    this.log(`socket(${args})=${hex(s)}`);
    return s;
  }

  bind(s: WinSocket, addr: Uint8Array, len: number): number {
    const sock = this.lookup(s);
    if (!sock) return this.err('bind', hex(s), WSAENOTSOCK);
    let what: string;
    if (sock.af === AF_HYPERV) {
      if (len !== SOCKADDR_HV_SIZE || addr.length < SOCKADDR_HV_SIZE) return this.err('bind', `${hex(s)},len ${len}`, WSAEFAULT);
      const a = decodeSockaddrHv(addr);
      if (a.family !== AF_HYPERV || a.reserved !== 0) return this.err('bind', `${hex(s)},family ${a.family}`, WSAEINVAL);
      what = `hv:${a.vmId}/${a.serviceId}`;
    } else {
      if (len !== SOCKADDR_IN_SIZE) return this.err('bind', `${hex(s)},len ${len}`, WSAEFAULT);
      const a = decodeSockaddrIn(addr);
      what = `in:${a.address}:${a.port}`;
    }
    const wsa = this.injected('bind');
    if (wsa !== undefined) return this.err('bind', `${hex(s)},${what}`, wsa);
    sock.bound = what;
    return this.ok('bind', `${hex(s)},${what}`, 0);
  }

  listen(s: WinSocket, backlog: number): number {
    const sock = this.lookup(s);
    if (!sock) return this.err('listen', hex(s), WSAENOTSOCK);
    if (!sock.bound || sock.af !== AF_HYPERV) return this.err('listen', hex(s), WSAEINVAL);
    const wsa = this.injected('listen');
    if (wsa !== undefined) return this.err('listen', `${hex(s)},${backlog}`, wsa);
    sock.listening = true;
    sock.role = 'listener';
    return this.ok('listen', `${hex(s)},${backlog}`, 0);
  }

  accept(s: WinSocket): WinSocket {
    const sock = this.lookup(s);
    const wsa = sock ? (sock.listening ? this.injected('accept') : WSAEINVAL) : WSAENOTSOCK;
    if (wsa !== undefined) {
      this.err('accept', hex(s), wsa);
      return invalidSocket(this.pointerSize);
    }
    while (!this.dialed) {
      if (sock!.nonBlocking) {
        this.err('accept', hex(s), WSAEWOULDBLOCK);
        return invalidSocket(this.pointerSize);
      }
      this.idle(this, null);
    }
    this.dialed = false;
    const c = this.newSocket(AF_HYPERV, 'conn');
    this.log(`accept(${hex(s)})=${hex(c)}`);
    return c;
  }

  recv(s: WinSocket, buf: Uint8Array, len: number, flags: number): number {
    const sock = this.lookup(s);
    if (!sock) return this.err('recv', hex(s), WSAENOTSOCK);
    const wsa = this.injected('recv');
    if (wsa !== undefined) return this.err('recv', hex(s), wsa);
    if (sock.role === 'wake') {
      if (this.wakes > 0) {
        this.wakes--;
        buf[0] = 1;
        return this.ok('recv', `${hex(s)},wake`, 1);
      }
      return sock.nonBlocking ? this.err('recv', `${hex(s)},wake`, WSAEWOULDBLOCK) : this.err('recv', hex(s), WSAEINVAL);
    }
    if (sock.role !== 'conn') return this.err('recv', hex(s), WSAEINVAL);
    for (;;) {
      if (this.resetError !== undefined) return this.err('recv', `${hex(s)},${len},${flags}`, this.resetError);
      const head = this.inbound[0];
      if (head !== undefined) {
        const n = Math.min(len, head.length);
        buf.set(head.subarray(0, n));
        if (n === head.length) this.inbound.shift();
        else this.inbound[0] = head.subarray(n);
        return this.ok('recv', `${hex(s)},${len},${flags}`, n);
      }
      if (this.guestEof) return this.ok('recv', `${hex(s)},${len},${flags}`, 0);
      if (sock.nonBlocking) return this.err('recv', `${hex(s)},${len},${flags}`, WSAEWOULDBLOCK);
      this.idle(this, null);
    }
  }

  send(s: WinSocket, buf: Uint8Array, len: number, flags: number): number {
    const sock = this.lookup(s);
    if (!sock) return this.err('send', hex(s), WSAENOTSOCK);
    if (sock.role !== 'conn' || sock.shutdownSend) return this.err('send', hex(s), WSAEINVAL);
    const wsa = this.injected('send');
    if (wsa !== undefined) return this.err('send', hex(s), wsa);
    for (;;) {
      if (this.resetError !== undefined) return this.err('send', `${hex(s)},${len},${flags}`, this.resetError);
      const room = this.sendCapacity - this.unread;
      if (room > 0) {
        const n = Math.min(room, len);
        const copy = Buffer.from(buf.subarray(0, n));
        this.sentChunks.push(copy);
        this.unread += n;
        const ab = copy.buffer.slice(copy.byteOffset, copy.byteOffset + n) as ArrayBuffer;
        this.report({ e: 'sent', buf: ab }, [ab]);
        return this.ok('send', `${hex(s)},${len},${flags}`, n);
      }
      if (sock.nonBlocking) return this.err('send', `${hex(s)},${len},${flags}`, WSAEWOULDBLOCK);
      this.idle(this, null);
    }
  }

  shutdown(s: WinSocket, how: number): number {
    const sock = this.lookup(s);
    if (!sock) return this.err('shutdown', hex(s), WSAENOTSOCK);
    const wsa = this.injected('shutdown');
    if (wsa !== undefined) return this.err('shutdown', `${hex(s)},${how}`, wsa);
    if (how === SD_SEND) sock.shutdownSend = true;
    return this.ok('shutdown', `${hex(s)},${how}`, 0);
  }

  closesocket(s: WinSocket): number {
    if (!this.sockets.delete(s)) return this.err('closesocket', hex(s), WSAENOTSOCK);
    return this.ok('closesocket', hex(s), 0);
  }

  ioctlsocket(s: WinSocket, cmd: number, arg: Uint8Array): number {
    const sock = this.lookup(s);
    if (!sock) return this.err('ioctlsocket', hex(s), WSAENOTSOCK);
    if (cmd !== FIONBIO || arg.length !== 4) return this.err('ioctlsocket', `${hex(s)},${cmd}`, WSAEINVAL);
    const wsa = this.injected('ioctlsocket');
    if (wsa !== undefined) return this.err('ioctlsocket', hex(s), wsa);
    sock.nonBlocking = Buffer.from(arg.buffer, arg.byteOffset, 4).readUInt32LE(0) !== 0;
    return this.ok('ioctlsocket', `${hex(s)},FIONBIO,${sock.nonBlocking ? 1 : 0}`, 0);
  }

  getsockname(s: WinSocket, addr: Uint8Array, len: Int32Array): number {
    const sock = this.lookup(s);
    if (!sock) return this.err('getsockname', hex(s), WSAENOTSOCK);
    if (sock.af !== AF_INET || !sock.bound || len[0]! < SOCKADDR_IN_SIZE) return this.err('getsockname', hex(s), WSAEINVAL);
    const wsa = this.injected('getsockname');
    if (wsa !== undefined) return this.err('getsockname', hex(s), wsa);
    const out = Buffer.from(addr.buffer, addr.byteOffset, addr.byteLength);
    out.fill(0, 0, SOCKADDR_IN_SIZE);
    out.writeUInt16LE(AF_INET, 0);
    out.writeUInt16BE(this.wakePort, 2);
    out.writeUInt32BE(0x7f000001, 4);
    len[0] = SOCKADDR_IN_SIZE;
    return this.ok('getsockname', hex(s), 0);
  }

  private readable(sock: FakeSocket): boolean {
    if (sock.role === 'wake') return this.wakes > 0;
    if (sock.role === 'listener') return this.dialed;
    if (sock.role === 'conn') return this.inbound.length > 0 || this.guestEof || this.resetError !== undefined;
    return false;
  }

  private writable(sock: FakeSocket): boolean {
    return sock.role === 'conn' && (this.unread < this.sendCapacity || this.resetError !== undefined);
  }

  select(readfds: Uint8Array | null, writefds: Uint8Array | null, timeout: Uint8Array | null): number {
    const reads = readfds ? decodeFdSet(readfds, this.pointerSize) : [];
    const writes = writefds ? decodeFdSet(writefds, this.pointerSize) : [];
    const ms = timeout ? decodeTimeval(timeout) : null;
    const args = `r[${reads.map(hex).join(' ')}],w[${writes.map(hex).join(' ')}],${ms === null ? 'inf' : `${ms}ms`}`;
    for (const s of [...reads, ...writes]) if (!this.sockets.has(s)) return this.err('select', args, WSAENOTSOCK);
    const wsa = this.injected('select');
    if (wsa !== undefined) return this.err('select', args, wsa);
    const start = this.clock();
    for (;;) {
      const r = reads.filter((s) => this.readable(this.sockets.get(s)!));
      const w = writes.filter((s) => this.writable(this.sockets.get(s)!));
      const left = ms === null ? null : start + ms - this.clock();
      if (r.length + w.length > 0 || (left !== null && left <= 0)) {
        if (readfds) Buffer.from(readfds.buffer, readfds.byteOffset).set(encodeFdSet(r, this.pointerSize));
        if (writefds) Buffer.from(writefds.buffer, writefds.byteOffset).set(encodeFdSet(w, this.pointerSize));
        return this.ok('select', args, r.length + w.length);
      }
      this.idle(this, left);
    }
  }

  dispose(): void {
    this.disposed = true;
    this.log('dispose');
    this.report({ e: 'disposed', open: this.openSockets() });
  }
}

// ---- synchronous use: virtual time and scripted steps ----

/** A step runs when the loop would wait; it may act as the guest, the host, or both. */
export type Step = (fake: FakeWinsock) => void;

/**
 * A FakeWinsock on a virtual clock. Whenever a call would wait, the next step runs; with no
 * steps left, time jumps to the end of the wait (a wait without limit then fails the test).
 */
export function scriptedWinsock(options: FakeWinsockOptions, steps: Step[]): FakeWinsock & { clockMs: number } {
  const state = { clockMs: 0, idleJumps: 0 };
  const fake = new FakeWinsock(
    options,
    (f, ms) => {
      const step = steps.shift();
      if (step) return step(f);
      if (ms === null) throw new Error('fake winsock: the loop waits without limit and the script is over');
      if (++state.idleJumps > 100_000) throw new Error('fake winsock: the loop never ends');
      state.clockMs += ms;
    },
    () => state.clockMs,
  );
  return Object.defineProperty(fake, 'clockMs', { get: () => state.clockMs }) as FakeWinsock & { clockMs: number };
}

// ---- worker use: the module interface and the test's controller ----

interface WorkerFakeData {
  options: FakeWinsockOptions;
  port: MessagePort;
  signal: SharedArrayBuffer;
}

/** Called by the transport's worker (this module is its `winsock.module`). */
export function createWinsock(data: unknown): Winsock {
  const { options, port, signal } = data as WorkerFakeData;
  const seq = new Int32Array(signal);
  let seen = Atomics.load(seq, 0);
  return new FakeWinsock(
    options,
    (fake, ms) => {
      if (ms === null || ms > 0) Atomics.wait(seq, 0, seen, ms ?? undefined);
      seen = Atomics.load(seq, 0);
      for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
        fake.apply(m.message as GuestAction);
      }
    },
    () => performance.now(),
    (event, transfer) => port.postMessage(event, transfer ?? []),
  );
}

/** The test's end of one fake (one listener's worker). */
export class FakeGuest {
  readonly trace: string[] = [];
  readonly received: Buffer[] = [];
  disposedWithOpen: string[] | undefined;
  /** The worker's end of the port is gone (after its last report). */
  portClosed = false;
  wakes = 0;
  private readonly seq: Int32Array;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly port: MessagePort,
    signal: SharedArrayBuffer,
  ) {
    this.seq = new Int32Array(signal);
    port.on('close', () => {
      this.portClosed = true;
      this.notify();
    });
    port.on('message', (event: FakeEvent) => {
      if (event.e === 'trace') this.trace.push(event.line);
      else if (event.e === 'sent') this.received.push(Buffer.from(event.buf));
      else {
        this.disposedWithOpen = event.open;
        port.close();
      }
      this.notify();
    });
    port.unref(); // never what keeps a test process alive
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  do(action: GuestAction, transfer: ArrayBuffer[] = []): void {
    this.port.postMessage(action, transfer);
    Atomics.add(this.seq, 0, 1);
    Atomics.notify(this.seq, 0);
  }

  dial(): void {
    this.do({ a: 'dial' });
  }

  send(bytes: Uint8Array): void {
    const buf = new ArrayBuffer(bytes.length);
    new Uint8Array(buf).set(bytes);
    this.do({ a: 'send', buf }, [buf]);
  }

  /** Resolves once `predicate` holds (checked after every report of the fake). */
  async until(predicate: (guest: FakeGuest) => boolean): Promise<void> {
    while (!predicate(this)) await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  receivedBytes(): Buffer {
    return Buffer.concat(this.received);
  }

  calls(): string[] {
    return this.trace.map((l) => l.replace(/\(.*$/, ''));
  }
}

/** A WinsockProvider whose workers load this fake; `guests` gets one FakeGuest per listener. */
export function fakeWinsockProvider(options: FakeWinsockOptions = {}): WinsockProvider & { guests: FakeGuest[] } {
  const guests: FakeGuest[] = [];
  return {
    module: new URL(import.meta.url),
    guests,
    open(): WinsockSession {
      const { port1, port2 } = new MessageChannel();
      const signal = new SharedArrayBuffer(4);
      const guest = new FakeGuest(port1, signal);
      guests.push(guest);
      let closed = false;
      return {
        data: { options, port: port2, signal } satisfies WorkerFakeData,
        transfer: [port2],
        wake: () => {
          if (closed) return;
          guest.wakes++;
          guest.do({ a: 'wake' });
        },
        close: () => {
          closed = true; // port1 closes itself once the fake reports its disposal
        },
      };
    },
  };
}

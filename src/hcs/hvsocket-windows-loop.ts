/**
 * What the hvsocket worker thread runs: one listener and the one connection it accepts, driven
 * by blocking Winsock calls in a single `select` loop. Nothing here touches Node's event loop,
 * so the same function runs in the worker (production) and synchronously in unit tests against
 * a fake `Winsock`.
 *
 * The loop owns every socket it opens (listener, connection, wake socket) and is the only code
 * that closes them, so no socket is closed while another thread may still use it.
 *
 * Waking: the main thread posts a message, then sends one datagram to the loop's wake socket (a
 * UDP socket on 127.0.0.1, in every `select`), so `select` returns and the loop drains its
 * messages at once; there is no polling interval on the data path. `select` still returns at
 * least every `IDLE_WAKE_MS` so a worker being terminated (process exit) gets back to JavaScript.
 */
import {
  AF_HYPERV,
  AF_INET,
  FIONBIO,
  HVSOCKET_BACKLOG,
  HV_PROTOCOL_RAW,
  IPPROTO_UDP,
  SD_SEND,
  SOCKADDR_IN_SIZE,
  SOCKET_ERROR,
  SOCK_DGRAM,
  SOCK_STREAM,
  WSAEWOULDBLOCK,
  decodeFdSet,
  decodeSockaddrIn,
  encodeFdSet,
  encodeLoopbackSockaddrIn,
  encodeSockaddrHv,
  encodeTimeval,
  invalidSocket,
  type WinSocket,
  type Winsock,
} from './hvsocket-windows-winsock.js';

/** Main thread → loop. */
export type HostMessage =
  /** Accept the first connection within `timeoutMs` (measured from receipt). */
  | { t: 'accept'; timeoutMs: number }
  /** Stop accepting: close the listener, answer `aborted`. */
  | { t: 'abort' }
  /** Close everything and end the loop (answer: `closed`). */
  | { t: 'close' }
  /** Send these bytes; answered with `written` once all were handed to `send`. */
  | { t: 'write'; id: number; buf: ArrayBuffer }
  /** After the queued writes: `shutdown(SD_SEND)`, answered with `ended`. */
  | { t: 'end' }
  /** Stop / restart reading (the readable side is full / drained). */
  | { t: 'pause' }
  | { t: 'resume' };

/** Loop → main thread. */
export type LoopMessage =
  | { t: 'listening'; wakePort: number }
  | { t: 'accepted' }
  | { t: 'timeout' }
  | { t: 'aborted' }
  | { t: 'data'; buf: ArrayBuffer }
  | { t: 'eof' }
  | { t: 'written'; id: number }
  | { t: 'ended' }
  /** A Winsock call failed (or, `call` = `worker`, the loop itself: `message`); everything is closed next. */
  | { t: 'error'; call: string; wsaError: number; message?: string }
  /** Last message: every socket is closed. */
  | { t: 'closed' };

/** How the loop talks to the main thread. */
export interface LoopChannel {
  /** The next message from the main thread, or undefined; never blocks. */
  receive(): HostMessage | undefined;
  post(message: LoopMessage, transfer?: ArrayBuffer[]): void;
}

/** The longest `select` wait (ms) while nothing has a deadline. */
export const IDLE_WAKE_MS = 1000;
/** The largest chunk one `recv` reads. */
export const RECV_CHUNK = 64 * 1024;

class WinsockCallError extends Error {
  constructor(
    readonly call: string,
    readonly wsaError: number,
  ) {
    super(`${call} failed: WSA error ${wsaError}`);
  }
}

type Phase = 'listening' | 'accepting' | 'connected';

/**
 * Listens on (vmId, serviceId), then serves the host's messages until `close`, an accept
 * outcome other than success, or an error (an exception of the Winsock port included: it is
 * reported as the call `worker`); every socket is closed before it returns, and the last
 * message posted is `closed`.
 */
export function runHvSocketLoop(ws: Winsock, channel: LoopChannel, address: { vmId: string; serviceId: string }): void {
  const INVALID = invalidSocket(ws.pointerSize);
  const open = new Set<WinSocket>();

  const fail = (call: string): never => {
    throw new WinsockCallError(call, ws.WSAGetLastError());
  };
  const check = (call: string, rc: number): number => (rc === SOCKET_ERROR ? fail(call) : rc);
  const newSocket = (call: string, s: WinSocket): WinSocket => {
    if (s === INVALID) fail(call);
    open.add(s);
    return s;
  };
  const close = (s: WinSocket | undefined): void => {
    if (s === undefined || !open.delete(s)) return;
    ws.closesocket(s); // nothing useful to do with a failure: the handle is released either way
  };

  let wake: WinSocket | undefined;
  let listener: WinSocket | undefined;
  let conn: WinSocket | undefined;
  let phase: Phase = 'listening';
  let deadline = 0;
  let paused = false;
  let eof = false;
  let endRequested = false;
  let shutDown = false;
  const writes: { id: number; bytes: Uint8Array; offset: number }[] = [];
  const recvBuf = new Uint8Array(RECV_CHUNK);
  const drain = new Uint8Array(64);

  const nonBlocking = (s: WinSocket, call: string): void => {
    const arg = new Uint8Array(4);
    arg[0] = 1;
    check(call, ws.ioctlsocket(s, FIONBIO, arg));
  };

  try {
    // The wake socket: UDP on 127.0.0.1, any port; the main thread learns the port.
    wake = newSocket('socket(AF_INET)', ws.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP));
    const loopback = encodeLoopbackSockaddrIn(0);
    check('bind(AF_INET)', ws.bind(wake, loopback, loopback.length));
    const name = new Uint8Array(SOCKADDR_IN_SIZE);
    const nameLen = new Int32Array([SOCKADDR_IN_SIZE]);
    check('getsockname', ws.getsockname(wake, name, nameLen));
    nonBlocking(wake, 'ioctlsocket(wake)');

    listener = newSocket('socket', ws.socket(AF_HYPERV, SOCK_STREAM, HV_PROTOCOL_RAW));
    const addr = encodeSockaddrHv(address.vmId, address.serviceId);
    check('bind', ws.bind(listener, addr, addr.length));
    check('listen', ws.listen(listener, HVSOCKET_BACKLOG));
    channel.post({ t: 'listening', wakePort: decodeSockaddrIn(name).port });

    for (;;) {
      // 1. The host's messages.
      for (let m = channel.receive(); m !== undefined; m = channel.receive()) {
        switch (m.t) {
          case 'close':
            return;
          case 'abort':
            if (phase !== 'connected') {
              close(listener);
              channel.post({ t: 'aborted' });
              return;
            }
            break;
          case 'accept':
            if (phase === 'listening') {
              phase = 'accepting';
              deadline = ws.now() + Math.max(0, m.timeoutMs);
            }
            break;
          case 'write':
            if (m.buf.byteLength > 0) writes.push({ id: m.id, bytes: new Uint8Array(m.buf), offset: 0 });
            else channel.post({ t: 'written', id: m.id });
            break;
          case 'end':
            endRequested = true;
            break;
          case 'pause':
            paused = true;
            break;
          case 'resume':
            paused = false;
            break;
        }
      }

      // 2. Writes that can go now, then the half-close once they are all out.
      if (conn !== undefined) {
        while (writes.length > 0) {
          const w = writes[0]!;
          const view = w.bytes.subarray(w.offset);
          const n = ws.send(conn, view, view.length, 0);
          if (n === SOCKET_ERROR) {
            const err = ws.WSAGetLastError();
            if (err === WSAEWOULDBLOCK) break;
            throw new WinsockCallError('send', err);
          }
          w.offset += n;
          if (w.offset < w.bytes.length) continue;
          writes.shift();
          channel.post({ t: 'written', id: w.id });
        }
        if (endRequested && !shutDown && writes.length === 0) {
          check('shutdown', ws.shutdown(conn, SD_SEND));
          shutDown = true;
          channel.post({ t: 'ended' });
        }
      }

      // 3. Wait for something to do.
      let waitMs = IDLE_WAKE_MS;
      if (phase === 'accepting') {
        const left = deadline - ws.now();
        if (left <= 0) {
          close(listener);
          channel.post({ t: 'timeout' });
          return;
        }
        waitMs = Math.min(waitMs, left);
      }
      const readable: WinSocket[] = [wake];
      if (phase === 'accepting' && listener !== undefined) readable.push(listener);
      if (conn !== undefined && !paused && !eof) readable.push(conn);
      const readSet = encodeFdSet(readable, ws.pointerSize);
      const writeSet = conn !== undefined && writes.length > 0 ? encodeFdSet([conn], ws.pointerSize) : null;
      const ready = check('select', ws.select(readSet, writeSet, encodeTimeval(waitMs)));
      if (ready === 0) continue;
      const readyToRead = new Set(decodeFdSet(readSet, ws.pointerSize));

      // 4. What became ready. (Writable sockets are served at the top of the loop.)
      if (readyToRead.has(wake)) {
        while (ws.recv(wake, drain, drain.length, 0) > 0) {
          // wake-ups carry no data; the messages are read at the top of the loop
        }
      }
      if (listener !== undefined && readyToRead.has(listener)) {
        conn = newSocket('accept', ws.accept(listener));
        close(listener); // the first connection only, as hcsshim does
        listener = undefined;
        nonBlocking(conn, 'ioctlsocket');
        phase = 'connected';
        channel.post({ t: 'accepted' });
      } else if (conn !== undefined && readyToRead.has(conn)) {
        const n = ws.recv(conn, recvBuf, recvBuf.length, 0);
        if (n > 0) {
          const chunk = recvBuf.buffer.slice(recvBuf.byteOffset, recvBuf.byteOffset + n) as ArrayBuffer;
          channel.post({ t: 'data', buf: chunk }, [chunk]);
        } else if (n === 0) {
          eof = true;
          channel.post({ t: 'eof' });
        } else {
          const err = ws.WSAGetLastError();
          if (err !== WSAEWOULDBLOCK) throw new WinsockCallError('recv', err);
        }
      }
    }
  } catch (err) {
    if (err instanceof WinsockCallError) channel.post({ t: 'error', call: err.call, wsaError: err.wsaError });
    else channel.post({ t: 'error', call: 'worker', wsaError: 0, message: err instanceof Error ? err.message : String(err) });
  } finally {
    close(listener);
    close(conn);
    close(wake);
    channel.post({ t: 'closed' });
  }
}

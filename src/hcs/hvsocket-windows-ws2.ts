/**
 * The real `Winsock` port: ws2_32.dll through koffi, loaded inside the hvsocket worker thread.
 * Windows only: off Windows `createWinsock` fails with NOT_SUPPORTED before koffi is loaded.
 *
 * No koffi named types are declared (they are process-global and every worker loads this
 * module again): buffers go in as plain pointers, SOCKET as `uintptr_t`.
 *
 * NOT RUN ON WINDOWS YET (docs/hcs.md "Windows hvsocket transport"): the prototypes follow
 * winsock2.h, and everything above this file is tested against a fake.
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { UvmError } from '../core/errors.js';
import type { Winsock, WinsockModule, WinSocket } from './hvsocket-windows-winsock.js';

/** What `createWinsock` needs from its surroundings (tests replace both). */
export interface Ws2Environment {
  platform: NodeJS.Platform;
  arch: string;
  /** Loads the koffi module; called only on Windows. */
  loadKoffi: () => typeof import('koffi');
}

const defaultEnvironment = (): Ws2Environment => ({
  platform: process.platform,
  arch: process.arch,
  loadKoffi: () => createRequire(import.meta.url)('koffi') as typeof import('koffi'),
});

type Fn = (...args: unknown[]) => unknown;

/** Binds ws2_32.dll (Windows only) and returns it as a `Winsock`. */
export function createWinsock(_data: unknown, env: Ws2Environment = defaultEnvironment()): Winsock {
  if (env.platform !== 'win32') {
    throw new UvmError('NOT_SUPPORTED', `AF_HYPERV sockets need Windows (this host is ${env.platform})`, {
      details: { platform: env.platform },
    });
  }
  const koffi = env.loadKoffi();
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load('ws2_32.dll');
  } catch (e) {
    throw new UvmError('LIBRARY_LOAD_FAILED', `cannot load ws2_32.dll: ${(e as Error).message}`, { cause: e });
  }
  const f = (proto: string): Fn => lib.func(proto) as Fn;
  const socket = f('uintptr_t __stdcall socket(int af, int type, int protocol)');
  const bind = f('int __stdcall bind(uintptr_t s, const void *name, int namelen)');
  const listen = f('int __stdcall listen(uintptr_t s, int backlog)');
  const accept = f('uintptr_t __stdcall accept(uintptr_t s, void *addr, void *addrlen)');
  const recv = f('int __stdcall recv(uintptr_t s, void *buf, int len, int flags)');
  const send = f('int __stdcall send(uintptr_t s, const void *buf, int len, int flags)');
  const shutdown = f('int __stdcall shutdown(uintptr_t s, int how)');
  const closesocket = f('int __stdcall closesocket(uintptr_t s)');
  const select = f('int __stdcall select(int nfds, void *readfds, void *writefds, void *exceptfds, const void *timeout)');
  const ioctlsocket = f('int __stdcall ioctlsocket(uintptr_t s, int32_t cmd, void *argp)');
  const getsockname = f('int __stdcall getsockname(uintptr_t s, void *name, void *namelen)');
  const WSAGetLastError = f('int __stdcall WSAGetLastError()');
  const WSAStartup = f('int __stdcall WSAStartup(uint16_t version, void *data)');
  const WSACleanup = f('int __stdcall WSACleanup()');

  // libuv has started Winsock for the process already; our own reference keeps it ours too.
  const rc = WSAStartup(0x0202, Buffer.alloc(512)) as number;
  if (rc !== 0) throw new UvmError('HVSOCKET_ERROR', `WSAStartup failed: WSA error ${rc}`, { details: { call: 'WSAStartup', wsaError: rc } });

  const sock = (v: unknown): WinSocket => BigInt(v as number | bigint);
  let disposed = false;
  return {
    pointerSize: env.arch === 'ia32' ? 4 : 8,
    socket: (af, type, protocol) => sock(socket(af, type, protocol)),
    bind: (s, addr, len) => bind(s, addr, len) as number,
    listen: (s, backlog) => listen(s, backlog) as number,
    accept: (s) => sock(accept(s, null, null)),
    recv: (s, buf, len, flags) => recv(s, buf, len, flags) as number,
    send: (s, buf, len, flags) => send(s, buf, len, flags) as number,
    shutdown: (s, how) => shutdown(s, how) as number,
    closesocket: (s) => closesocket(s) as number,
    select: (readfds, writefds, timeout) => select(0, readfds, writefds, null, timeout) as number,
    ioctlsocket: (s, cmd, arg) => ioctlsocket(s, cmd, arg) as number,
    getsockname: (s, addr, len) => getsockname(s, addr, len) as number,
    WSAGetLastError: () => WSAGetLastError() as number,
    now: () => performance.now(),
    dispose: () => {
      if (disposed) return;
      disposed = true;
      WSACleanup();
    },
  };
}

/** The module shape the worker expects. */
export const ws2Module: WinsockModule = { createWinsock };

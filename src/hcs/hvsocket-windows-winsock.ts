/**
 * The Winsock surface the Windows hvsocket transport uses, as a small port (`Winsock`) so the
 * whole call sequence runs against a fake on any host, and the byte layouts it passes to ws2_32:
 * SOCKADDR_HV, sockaddr_in, fd_set and timeval.
 *
 * The port mirrors the C functions one for one (buffers in, numbers out, failures as
 * `SOCKET_ERROR` / `INVALID_SOCKET` plus `WSAGetLastError()`), so the koffi binding
 * (hvsocket-windows-ws2.ts) is a pass-through and every decision lives in tested code.
 */
import { UvmError } from '../core/errors.js';

/** A SOCKET (UINT_PTR), always as a bigint here. */
export type WinSocket = bigint;

/** ws2_32 functions the transport calls (Windows prototypes; buffers are passed as pointers). */
export interface Winsock {
  /** Size of a pointer (and of SOCKET) in bytes: 8 on x64/arm64, 4 on x86. */
  readonly pointerSize: 4 | 8;
  socket(af: number, type: number, protocol: number): WinSocket;
  bind(s: WinSocket, addr: Uint8Array, addrLen: number): number;
  listen(s: WinSocket, backlog: number): number;
  /** `accept(s, NULL, NULL)`. */
  accept(s: WinSocket): WinSocket;
  recv(s: WinSocket, buf: Uint8Array, len: number, flags: number): number;
  send(s: WinSocket, buf: Uint8Array, len: number, flags: number): number;
  shutdown(s: WinSocket, how: number): number;
  closesocket(s: WinSocket): number;
  /** `select(0, readfds, writefds, NULL, timeout)`; a null timeout waits without limit. */
  select(readfds: Uint8Array | null, writefds: Uint8Array | null, timeout: Uint8Array | null): number;
  /** `ioctlsocket(s, cmd, &arg)`; `arg` is the 4-byte u_long. */
  ioctlsocket(s: WinSocket, cmd: number, arg: Uint8Array): number;
  /** `getsockname(s, addr, &len)`; `len` is the in/out int. */
  getsockname(s: WinSocket, addr: Uint8Array, len: Int32Array): number;
  WSAGetLastError(): number;
  /** A monotonic clock in milliseconds (the accept deadline is measured on it). */
  now(): number;
  /** Releases what creating the port took (WSACleanup); called once, last. */
  dispose(): void;
}

/** What the worker imports from a Winsock module (`hvsocket-windows-ws2.js` or a test fake). */
export interface WinsockModule {
  createWinsock(data: unknown): Winsock;
}

export const AF_INET = 2;
export const AF_HYPERV = 34;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const IPPROTO_UDP = 17;
/** Protocol 1 of AF_HYPERV: HV_PROTOCOL_RAW. */
export const HV_PROTOCOL_RAW = 1;
export const SD_SEND = 1;
export const SOCKET_ERROR = -1;
/** `FIONBIO` as the signed 32-bit `long` ioctlsocket takes. */
export const FIONBIO = 0x8004667e | 0;
export const WSAEWOULDBLOCK = 10035;
export const FD_SETSIZE = 64;
/** hcsshim's listen backlog for hvsockets. */
export const HVSOCKET_BACKLOG = 16;
export const SOCKADDR_HV_SIZE = 36;
export const SOCKADDR_IN_SIZE = 16;

/** INVALID_SOCKET (~0) for a pointer size. */
export function invalidSocket(pointerSize: 4 | 8): WinSocket {
  return pointerSize === 8 ? 0xffffffffffffffffn : 0xffffffffn;
}

const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a GUID in canonical form (`xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, any case). */
export function isGuid(s: unknown): s is string {
  return typeof s === 'string' && GUID_RE.test(s);
}

/**
 * Writes a GUID as Windows lays it out: Data1 u32 LE, Data2 u16 LE, Data3 u16 LE, then Data4's
 * eight bytes as written.
 */
export function writeGuid(guid: string, out: Buffer, offset: number): void {
  if (!isGuid(guid)) throw new UvmError('INVALID_ARGUMENT', `not a GUID: ${JSON.stringify(guid)}`, { details: { guid } });
  const hex = guid.replace(/-/g, '');
  out.writeUInt32LE(Number.parseInt(hex.slice(0, 8), 16), offset);
  out.writeUInt16LE(Number.parseInt(hex.slice(8, 12), 16), offset + 4);
  out.writeUInt16LE(Number.parseInt(hex.slice(12, 16), 16), offset + 6);
  out.write(hex.slice(16), offset + 8, 8, 'hex');
}

/** Reads a GUID written by `writeGuid` (lowercase canonical form). */
export function readGuid(buf: Uint8Array, offset: number): string {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const h = (n: number, width: number): string => n.toString(16).padStart(width, '0');
  const d4 = b.toString('hex', offset + 8, offset + 16);
  return `${h(b.readUInt32LE(offset), 8)}-${h(b.readUInt16LE(offset + 4), 4)}-${h(b.readUInt16LE(offset + 6), 4)}-${d4.slice(0, 4)}-${d4.slice(4)}`;
}

/** SOCKADDR_HV (36 bytes): u16 Family = AF_HYPERV, u16 Reserved = 0, GUID VmId, GUID ServiceId. */
export function encodeSockaddrHv(vmId: string, serviceId: string): Buffer {
  const buf = Buffer.alloc(SOCKADDR_HV_SIZE);
  buf.writeUInt16LE(AF_HYPERV, 0);
  writeGuid(vmId, buf, 4);
  writeGuid(serviceId, buf, 20);
  return buf;
}

/** The fields of a SOCKADDR_HV. */
export function decodeSockaddrHv(buf: Uint8Array): { family: number; reserved: number; vmId: string; serviceId: string } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return { family: b.readUInt16LE(0), reserved: b.readUInt16LE(2), vmId: readGuid(buf, 4), serviceId: readGuid(buf, 20) };
}

/** sockaddr_in for 127.0.0.1:`port` (port 0: any free port). */
export function encodeLoopbackSockaddrIn(port: number): Buffer {
  const buf = Buffer.alloc(SOCKADDR_IN_SIZE);
  buf.writeUInt16LE(AF_INET, 0);
  buf.writeUInt16BE(port, 2);
  buf.writeUInt32BE(0x7f000001, 4);
  return buf;
}

/** The family, port and IPv4 address of a sockaddr_in. */
export function decodeSockaddrIn(buf: Uint8Array): { family: number; port: number; address: string } {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return { family: b.readUInt16LE(0), port: b.readUInt16BE(2), address: [...b.subarray(4, 8)].join('.') };
}

/** The header of an fd_set: u_int fd_count, padded to the alignment of SOCKET. */
function fdSetHeader(pointerSize: 4 | 8): number {
  return pointerSize;
}

/** A Winsock fd_set (`u_int fd_count; SOCKET fd_array[FD_SETSIZE]`) holding `sockets`. */
export function encodeFdSet(sockets: readonly WinSocket[], pointerSize: 4 | 8): Buffer {
  if (sockets.length > FD_SETSIZE) throw new UvmError('INVALID_ARGUMENT', `an fd_set holds at most ${FD_SETSIZE} sockets`);
  const header = fdSetHeader(pointerSize);
  const buf = Buffer.alloc(header + FD_SETSIZE * pointerSize);
  buf.writeUInt32LE(sockets.length, 0);
  sockets.forEach((s, i) => {
    if (pointerSize === 8) buf.writeBigUInt64LE(s, header + i * 8);
    else buf.writeUInt32LE(Number(s), header + i * 4);
  });
  return buf;
}

/** The sockets an fd_set holds (after select: the ready ones). */
export function decodeFdSet(buf: Uint8Array, pointerSize: 4 | 8): WinSocket[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const header = fdSetHeader(pointerSize);
  const count = Math.min(b.readUInt32LE(0), FD_SETSIZE);
  const out: WinSocket[] = [];
  for (let i = 0; i < count; i++) {
    out.push(pointerSize === 8 ? b.readBigUInt64LE(header + i * 8) : BigInt(b.readUInt32LE(header + i * 4)));
  }
  return out;
}

/** A timeval (`long tv_sec; long tv_usec`, 32-bit longs on Windows) for `ms` milliseconds. */
export function encodeTimeval(ms: number): Buffer {
  const whole = Math.max(0, Math.ceil(ms));
  const buf = Buffer.alloc(8);
  buf.writeInt32LE(Math.floor(whole / 1000), 0);
  buf.writeInt32LE((whole % 1000) * 1000, 4);
  return buf;
}

/** The milliseconds a timeval written by `encodeTimeval` holds. */
export function decodeTimeval(buf: Uint8Array): number {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return b.readInt32LE(0) * 1000 + b.readInt32LE(4) / 1000;
}
